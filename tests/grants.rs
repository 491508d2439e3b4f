//! Per-peer grants and blocks (issue 13): a member who blocks another refuses its direct
//! messages (the sender is told, nothing is queued) and gets no copy of its group messages,
//! while everyone else still does; unblocking restores it; grants are stored on the broker.

use crate::common;

use std::time::Duration;

use claudemesh::client::{ClientError, ConnectOptions, Identity, MeshClient};
use claudemesh::crypto::SignKeyPair;
use claudemesh::protocol::ClientMessage;
use claudemesh::protocol::messages::SendMessage;
use common::*;

/// alice (owner), bob and carol in one mesh.
fn three(broker: &BrokerProc) -> (Person, Person, Person) {
    let (alice, bob) = alice_and_bob(broker);
    let carol = invited(&alice, "carol");
    (alice, bob, carol)
}

/// A live session of `person` with its own session key.
async fn session(person: &Person, name: &str) -> (MeshClient, String) {
    let key = SignKeyPair::generate();
    let hex = key.public_hex();
    let options = ConnectOptions {
        identity: Identity::Session(key),
        ..ConnectOptions::new(person.entry(), peer_info(name))
    };
    (
        MeshClient::connect(options)
            .await
            .expect("a session connects"),
        hex,
    )
}

/// A `send` that failed (exit code 1) saying bob's block refused it.
fn not_sent_to_bob(out: &CmdOutput) {
    assert_eq!(out.code, 1, "a blocked send must fail: {}", out.stdout);
    assert!(
        out.stderr.contains("not sent to bob") && out.stderr.contains("blocked"),
        "{}",
        out.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_blocked_member_is_refused_and_told_and_unblocking_restores_it() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob, carol) = three(&broker);
    // bob's agent session is live before the block: the block applies to it at once.
    let (bob_live, bob_session) = session(&bob, "bob-live").await;

    let out = bob.run(&["block", "alice", "--json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let entry: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(entry["displayName"], "alice");
    assert_eq!(entry["blocked"], true);
    assert_eq!(entry["allowed"], serde_json::json!([]));

    // alice's direct message: refused, and she sees why (exit code and message).
    not_sent_to_bob(&alice.run(&["send", "bob", "are you there?"]));
    // … to bob's session key too.
    let out = alice.run(&["send", &bob_session, "via your session"]);
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert!(out.stderr.contains("blocked"), "{}", out.stderr);
    // On the wire it is `error{code:"blocked"}` and nothing is queued.
    let alice_client = alice.client().await;
    let refused = alice_client
        .request(ClientMessage::Send(Box::new(SendMessage {
            id: Some("m1".into()),
            target_spec: bob.entry().member_pubkey.clone(),
            priority: "now".into(),
            nonce: "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".into(),
            ciphertext: "AAAA".into(),
            ..Default::default()
        })))
        .await;
    match refused {
        Err(ClientError::Broker { code, message }) => {
            assert_eq!(code, "blocked", "{message}");
            assert!(message.contains("bob"), "{message}");
        }
        other => panic!("a blocked send must be an error frame: {other:?}"),
    }

    // alice's broadcast reaches carol, not bob: he is not even among its recipients.
    let sent = alice.json(&["send", "*", "standup in 5", "--json"]);
    let id = sent["results"][0]["messageId"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(texts(&inbox(&carol, &[])), ["standup in 5"]);
    let status = alice.json(&["msg-status", &id, "--json"]);
    let names: Vec<&str> = status["recipients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["carol"], "{status}");
    // A send to several: bob's refusal is reported for him and does not end it.
    not_sent_to_bob(&alice.run(&["send", "bob,carol", "lunch?"]));
    assert_eq!(texts(&inbox(&carol, &[])), ["lunch?"]);

    // Nothing of alice's reached bob, live or after a drain.
    assert!(
        next_message(&bob_live, Duration::from_millis(1500))
            .await
            .is_none(),
        "bob's live session got a message from the member he blocked"
    );
    assert_eq!(bob_live.drain().await.unwrap(), 0);
    assert!(
        inbox(&bob, &[]).is_empty(),
        "bob's inbox holds alice's messages"
    );

    // bob's messages to alice still arrive.
    let out = bob.run(&["send", "alice", "I blocked you, but here is the log"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        texts(&inbox(&alice, &[])),
        ["I blocked you, but here is the log"]
    );

    // The block is listed …
    let list = bob.json(&["grants", "--json"]);
    let grants = list["grants"].as_array().unwrap();
    assert_eq!(grants.len(), 1, "{list}");
    assert_eq!(grants[0]["displayName"], "alice");
    assert_eq!(grants[0]["blocked"], true);
    // … and carol restricts nobody.
    assert_eq!(
        carol.json(&["grants", "--json"])["grants"],
        serde_json::json!([])
    );

    // Unblocking restores everything.
    let out = bob.run(&["unblock", "alice"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = alice.run(&["send", "bob", "hello again"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let got = next_message(&bob_live, Duration::from_secs(10))
        .await
        .expect("after unblock bob's session gets alice's message");
    assert_eq!(bob_live.open(got).text.unwrap(), "hello again");
    assert_eq!(
        bob.json(&["grants", "--json"])["grants"],
        serde_json::json!([])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn grants_set_takes_one_right_and_gives_it_back_and_survive_a_restart() {
    let mut broker = BrokerProc::start(&[]);
    let (alice, bob, carol) = three(&broker);

    // -message alone: alice may not message bob; files and tools stay allowed.
    let entry = bob.json(&["grants", "set", "alice", "-message", "-files", "--json"]);
    assert_eq!(entry["allowed"], serde_json::json!(["tools"]), "{entry}");
    assert_eq!(entry["blocked"], false);
    let out = alice.run(&["send", "bob", "hi"]);
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert!(out.stderr.contains("blocked"), "{}", out.stderr);

    // bob has no session: his copy of a broadcast is not even queued for later; carol's is.
    let out = alice.run(&["send", "*", "release is out"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(texts(&inbox(&carol, &[])), ["release is out"]);
    assert!(
        inbox(&bob, &[]).is_empty(),
        "bob, offline, got alice's broadcast"
    );

    // Stored on the broker: still in force after a restart.
    broker.restart();
    let out = alice.run(&["send", "bob", "after the restart"]);
    assert_eq!(
        out.code, 1,
        "the grant was lost in the restart: {}",
        out.stdout
    );
    let list = bob.json(&["grants", "--json"]);
    assert_eq!(list["grants"][0]["allowed"], serde_json::json!(["tools"]));

    // +message gives it back; files stays revoked.
    let entry = bob.json(&["grants", "set", "alice", "+message", "--json"]);
    assert_eq!(entry["allowed"], serde_json::json!(["message", "tools"]));
    let out = alice.run(&["send", "bob", "thanks"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(texts(&inbox(&bob, &[])), ["thanks"]);

    // Mistakes are named.
    let out = bob.run(&["grants", "set", "alice", "+launch"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("+launch"), "{}", out.stderr);
    let out = bob.run(&["block", "nobody-here"]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("nobody-here"), "{}", out.stderr);
    let out = bob.run(&["block", "bob"]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("yourself"), "{}", out.stderr);
    let client = bob.client().await;
    let err = client
        .request(ClientMessage::SetGrants(
            claudemesh::protocol::messages::SetGrants {
                peer: alice.entry().member_pubkey.clone(),
                grant: Some(vec!["message".into()]),
                revoke: Some(vec!["message".into()]),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("invalid_argument"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn every_change_of_a_grant_is_audited_and_a_repeat_is_not() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob, _carol) = three(&broker);
    let audited = || {
        let log = alice.json(&["audit", "--event", "grants.changed", "--json"]);
        log["entries"].as_array().expect("entries").len()
    };
    assert_eq!(audited(), 0);
    // A right taken (only `allowed` changes): one record.
    bob.json(&["grants", "set", "alice", "-files", "--json"]);
    assert_eq!(audited(), 1, "a right taken is audited");
    // A block (only `blocked` changes): one more.
    let out = bob.run(&["block", "alice"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(audited(), 2, "a block is audited");
    // The same again, twice: nothing changed, nothing recorded.
    let out = bob.run(&["block", "alice"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    bob.json(&["grants", "set", "alice", "-files", "--json"]);
    assert_eq!(audited(), 2, "a change that changes nothing is not audited");
}
