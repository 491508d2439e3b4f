//! Root-key rotation on removal (PROTOCOL.md §12.4, issue 13 item 4), against real broker
//! processes: after a member is revoked and the key rotated, a broadcast sent afterwards is
//! unreadable with the removed member's keys, even when the exact pushed frame is replayed to
//! its client, while everyone else reads it and older messages stay readable; a member away
//! during the rotation gets its sealed copy at its next connection; a body under an old epoch
//! is refused, and a live client whose send is refused so fetches the key and sends again.

use crate::common;

mod races;
mod trust;

use base64::Engine;
use claudemesh::client::{KeyRing, MeshClient, decrypt_push};
use claudemesh::crypto::SignKeyPair;
use claudemesh::identity::MeshEntry;
use claudemesh::protocol::messages::{
    AdminList, Push, RotateKey, RotationProof, Schedule, SealedFor, SendMessage,
};
use claudemesh::protocol::{ClientMessage, ServerMessage};
use common::*;
use serde_json::Value;

/// The messages `person`'s `inbox --json` prints: (from, text) pairs.
fn inbox(person: &Person) -> Vec<(String, String)> {
    let out = person.run(&["inbox", "--json"]);
    assert_eq!(out.code, 0, "{} inbox: {}", person.name, out.stderr);
    out.stdout
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("inbox line is JSON");
            (
                v["from"].as_str().unwrap_or_default().to_string(),
                v["text"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

fn send(person: &Person, to: &str, text: &str) {
    let out = person.run(&["send", to, text]);
    assert_eq!(out.code, 0, "{} send: {}", person.name, out.stderr);
}

/// The next message push (not a system event) on a live client, within the wait.
async fn next_message(client: &MeshClient) -> Push {
    next_push_where(client, "a message push", |p| {
        p.subtype.as_deref() != Some("system")
    })
    .await
}

/// alice (owner), bob and carol in mesh "team".
fn team(broker: &BrokerProc) -> (Person, Person, Person) {
    let (alice, bob) = alice_and_bob(broker);
    let carol = invited(&alice, "carol");
    (alice, bob, carol)
}

#[tokio::test(flavor = "multi_thread")]
async fn after_revocation_a_broadcast_is_unreadable_with_the_removed_members_keys() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob, carol) = team(&broker);
    // bob and carol have sessions open, as agents would; carol's is the socket whose traffic
    // she keeps.
    let bob_live = bob.client().await;
    let carol_live = carol.client().await;

    // Before: everyone reads the mesh's broadcasts, carol included.
    send(&alice, "*", "before the rotation, from alice");
    send(&bob, "*", "before the rotation, from bob");
    let seen = next_message(&carol_live).await;
    assert_eq!(
        carol_live.decrypt(&seen).as_deref(),
        Ok("before the rotation, from alice")
    );
    // An invite nobody used yet: its link carries the key that is about to go.
    let (_, unused_link) = invite(&alice, &[]);

    // Revoke carol: the CLI rotates the key afterwards and says what it did.
    let out = alice.json(&["revoke", "carol", "--json"]);
    assert_eq!(out["rotated"]["keyEpoch"], 1, "{out}");
    assert_eq!(
        out["rotated"]["members"], 2,
        "alice and bob get the key: {out}"
    );
    assert_eq!(out["rotated"]["invitesRevoked"], 1, "{out}");
    let eve = Person::new("eve");
    let refused = eve.run(&["join", &unused_link, "--name", "eve"]);
    assert_ne!(refused.code, 0, "the old link no longer lets anyone in");
    assert!(refused.stderr.contains("revoked"), "{}", refused.stderr);
    assert_eq!(alice.entry().key_epoch, 1, "alice saved the new key");

    // After: alice broadcasts; bob's live session reads it with the key it was handed.
    send(&alice, "*", "after the rotation");
    let mut after = next_message(&bob_live).await;
    while after.key_epoch == 0 {
        after = next_message(&bob_live).await;
    }
    assert_eq!(after.key_epoch, 1, "the push names its key epoch");
    assert_eq!(
        bob_live.decrypt(&after).as_deref(),
        Ok("after the rotation")
    );

    // carol replays that exact frame into her client's decryption (the client that was
    // connected, and one built from her saved config): it names the epoch she lacks.
    let carol_entry = carol.entry();
    assert_eq!(carol_entry.key_epoch, 0, "carol never got the new key");
    let from_config = KeyRing::from_entry(&carol_entry);
    for opened in [
        carol_live.decrypt(&after),
        decrypt_push(&carol_entry, &from_config, None, &after),
    ] {
        let why = opened.expect_err("carol must not read what was sent after her removal");
        assert!(
            why.contains("key epoch 1, which this member does not hold"),
            "{why}"
        );
    }
    // Relabelled as epoch 0 (the key carol holds), the body does not open either.
    let mut relabelled = after.clone();
    relabelled.key_epoch = 0;
    let why = decrypt_push(&carol_entry, &from_config, None, &relabelled)
        .expect_err("the old key does not open a body sealed under the new one");
    assert!(!why.contains("after the rotation"), "{why}");
    carol_live.close().await;
    // The new key reached alice and bob sealed; the broker never had it, nor the message.
    let new_key = alice.entry().root_key().expect("alice holds the new key");
    assert_broker_never_saw(&broker, &new_key);
    assert_broker_never_saw(&broker, b"after the rotation");

    // bob (a CLI that has not run since) reads everything, old and new; alice reads bob's
    // message from before the rotation.
    let bob_got = inbox(&bob);
    for text in ["before the rotation, from alice", "after the rotation"] {
        assert!(
            bob_got.iter().any(|(from, t)| from == "alice" && t == text),
            "bob reads {text:?}: {bob_got:?}"
        );
    }
    let alice_got = inbox(&alice);
    assert!(
        alice_got
            .iter()
            .any(|(from, t)| from == "bob" && t == "before the rotation, from bob"),
        "alice still reads what came before: {alice_got:?}"
    );
    bob_live.close().await;
}

/// A plain member's `rotate-key` is refused as what it asked for, not as a step of it.
#[tokio::test(flavor = "multi_thread")]
async fn only_the_owner_or_an_admin_rotates_the_key() {
    let broker = BrokerProc::start(&[]);
    let (_alice, bob) = alice_and_bob(&broker);
    let out = bob.run(&["rotate-key"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("only the owner or an admin can rotate the mesh root key (forbidden)"),
        "{}",
        out.stderr
    );
    assert_eq!(bob.entry().key_epoch, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_member_away_during_rotations_gets_its_keys_at_its_next_connection() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob, carol) = team(&broker);
    let out = alice.run(&["revoke", "carol", "--no-rotate"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("not rotated"),
        "a warning: {}",
        out.stderr
    );
    // Two rotations while bob is away, a broadcast under each.
    let first = alice.json(&["rotate-key", "--json"]);
    assert_eq!(first["keyEpoch"], 1, "{first}");
    send(&alice, "*", "under epoch one");
    let second = alice.json(&["rotate-key", "--json"]);
    assert_eq!(second["keyEpoch"], 2, "{second}");
    send(&alice, "*", "under epoch two");

    let got = inbox(&bob);
    for text in ["under epoch one", "under epoch two"] {
        assert!(
            got.iter().any(|(from, t)| from == "alice" && t == text),
            "bob reads {text:?}: {got:?}"
        );
    }
    // bob's config kept every key it was given.
    let entry = bob.entry();
    assert_eq!(entry.key_epoch, 2);
    let ring = KeyRing::from_entry(&entry);
    assert!(ring.get(0).is_some() && ring.get(1).is_some() && ring.get(2).is_some());
    // bob sends to the group under the current key without being told anything.
    send(&bob, "*", "bob under epoch two");
    assert!(
        inbox(&alice)
            .iter()
            .any(|(from, t)| from == "bob" && t == "bob under epoch two")
    );
    // carol's config never got a newer key.
    assert_eq!(carol.entry().key_epoch, 0);

    // A link made now carries the current key; a newcomer reads what is sent from now on.
    let (_, url) = invite(&alice, &[]);
    assert!(url.contains("~2."), "the link names its key epoch: {url}");
    let dave = Person::new("dave");
    join(&dave, &url);
    assert_eq!(dave.entry().key_epoch, 2);
    send(&alice, "*", "welcome dave");
    assert!(
        inbox(&dave)
            .iter()
            .any(|(from, t)| from == "alice" && t == "welcome dave")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bodies_and_rotations_under_a_stale_epoch_are_refused() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob, _carol) = team(&broker);
    let rotated = alice.json(&["rotate-key", "--json"]);
    assert_eq!(rotated["keyEpoch"], 1);

    // A group body sealed under epoch 0 (what a client that missed the rotation, or the
    // removed member with its old key, would send) is refused.
    let old = bob.client().await;
    let nonce = "A".repeat(32);
    let ciphertext = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldY".to_string();
    for to in ["*"] {
        let answer = old
            .request(ClientMessage::Send(Box::new(SendMessage {
                target_spec: to.into(),
                priority: "next".into(),
                nonce: nonce.clone(),
                ciphertext: ciphertext.clone(),
                body_version: Some(2),
                ..Default::default()
            })))
            .await
            .expect("an answer");
        let ServerMessage::Ack(ack) = answer else {
            panic!("expected an ack, got {answer:?}");
        };
        assert_eq!(ack.queued, Some(false), "{to}");
        let error = ack.error.unwrap_or_default();
        assert!(
            error.starts_with("stale_key_epoch") && error.contains("reconnect"),
            "{to}: {error}"
        );
    }
    // So is a group reminder.
    let refused = old
        .request(ClientMessage::Schedule(Box::new(Schedule {
            to: "*".into(),
            message: ciphertext.clone(),
            deliver_at: Some(claudemesh::protocol::messages::When::Ms(
                claudemesh::protocol::time::now_ms() + 60_000,
            )),
            nonce: Some(nonce.clone()),
            body_version: Some(2),
            ..Default::default()
        })))
        .await
        .expect_err("a reminder under an old epoch is refused");
    assert_eq!(refused.code(), Some("stale_key_epoch"), "{refused}");
    // The current epoch is accepted (the body is opaque to the broker).
    let answer = old
        .request(ClientMessage::Send(Box::new(SendMessage {
            target_spec: "*".into(),
            priority: "next".into(),
            nonce,
            ciphertext,
            body_version: Some(2),
            key_epoch: 1,
            ..Default::default()
        })))
        .await
        .expect("an answer");
    assert!(
        matches!(answer, ServerMessage::Ack(ref a) if a.queued == Some(true)),
        "{answer:?}"
    );

    // Rotations the broker refuses: by a plain member, a skipped epoch, a member left out.
    let copy = |member_id: &str| SealedFor {
        member_id: member_id.into(),
        sealed: format!("{}=", "A".repeat(107)),
    };
    let alice_client = alice.client().await;
    let holders = match alice_client
        .request(ClientMessage::ListKeyHolders {})
        .await
        .expect("holders")
    {
        ServerMessage::KeyHolders { epoch, members } => {
            assert_eq!(epoch, 1);
            members
        }
        other => panic!("{other:?}"),
    };
    assert_eq!(holders.len(), 3);
    let all: Vec<SealedFor> = holders.iter().map(|h| copy(&h.member_id)).collect();
    let check = "0".repeat(64);
    let entry = alice.entry();
    let owner = entry
        .owner_keys()
        .expect("alice holds the owner key")
        .expect("usable");
    let signed = |epoch, keys: Vec<SealedFor>, signer: &SignKeyPair| {
        let proof = RotationProof::sign(signer, &entry.mesh_id, epoch, &check, unique_now_ms());
        RotateKey {
            epoch,
            check: check.clone(),
            keys,
            signer: proof.signer,
            signed_at: proof.signed_at,
            signature: proof.signature,
        }
    };
    let attempt = |epoch, keys| ClientMessage::RotateKey(signed(epoch, keys, &owner));
    // Unsigned, or signed by someone clients do not trust: refused, naming why.
    let mut forged = signed(2, all.clone(), &owner);
    forged.signed_at += 1;
    let e = alice_client
        .request(ClientMessage::RotateKey(forged))
        .await
        .expect_err("a signature over other fields is refused");
    assert_eq!(e.code(), Some("unsigned_rotation"), "{e}");
    assert!(e.to_string().contains("no valid signature"), "{e}");
    let member_key = entry.member_keys().expect("alice's member key");
    let e = alice_client
        .request(ClientMessage::RotateKey(signed(
            2,
            all.clone(),
            &member_key,
        )))
        .await
        .expect_err("the owner's member key is on no admin list");
    assert_eq!(e.code(), Some("unsigned_rotation"), "{e}");
    assert!(
        e.to_string().contains("perms set alice --role admin"),
        "{e}"
    );
    let e = old
        .request(attempt(2, all.clone()))
        .await
        .expect_err("a member cannot rotate");
    assert_eq!(e.code(), Some("forbidden"), "{e}");
    let e = alice_client
        .request(attempt(3, all.clone()))
        .await
        .expect_err("epochs are not skipped");
    assert_eq!(e.code(), Some("stale_key_epoch"), "{e}");
    let e = alice_client
        .request(attempt(2, all[1..].to_vec()))
        .await
        .expect_err("every member must get a copy");
    assert_eq!(e.code(), Some("membership_changed"), "{e}");
    let mut with_stranger = all.clone();
    with_stranger.push(copy("not-a-member"));
    let e = alice_client
        .request(attempt(2, with_stranger))
        .await
        .expect_err("no copy for a stranger");
    assert_eq!(e.code(), Some("membership_changed"), "{e}");
    // Nothing of these was stored: the epoch is still 1, for a new connection too.
    let fresh = bob.client().await;
    assert_eq!(fresh.hello_ack().key_epoch, 1);
    fresh.close().await;
    old.close().await;
    alice_client.close().await;
}

/// A long-lived client (as the MCP server is) takes the new key from the `key_rotated` event
/// and saves it in its member's config, without anyone running a command on that machine.
#[tokio::test(flavor = "multi_thread")]
async fn a_connected_session_saves_the_new_key_as_it_is_rotated() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    let options = claudemesh::client::ConnectOptions {
        config_dir: Some(claudemesh::identity::ConfigDir::new(bob.config_dir())),
        reconnect: true,
        ..claudemesh::client::ConnectOptions::new(bob.entry(), peer_info("bob"))
    };
    let live = MeshClient::connect(options).await.expect("bob connects");
    let rotated = alice.json(&["rotate-key", "--json"]);
    assert_eq!(rotated["keyEpoch"], 1);
    eventually("bob's config holds epoch 1", || async {
        bob.entry().key_epoch == 1
    })
    .await;
    assert_eq!(live.key_ring().current_epoch(), 1);
    // Its next group message goes under the new key, and alice reads it.
    let target = live.resolve_targets("*").await.expect("targets");
    let acks = live
        .send_each(&target, "from a live session", "next")
        .await
        .expect("sent");
    assert_eq!(acks[0].queued, Some(true), "{:?}", acks[0]);
    assert!(
        inbox(&alice)
            .iter()
            .any(|(from, t)| from == "bob" && t == "from a live session")
    );
    live.close().await;
}

/// A long-lived client that lost its connection while the key was rotated asks for its sealed
/// copy when it is back (the broker's `hello_ack.keyEpoch` is ahead of it).
#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_reconnects_after_a_rotation_fetches_the_key() {
    let mut broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    let options = claudemesh::client::ConnectOptions {
        reconnect: true,
        ..claudemesh::client::ConnectOptions::new(bob.entry(), peer_info("bob"))
    };
    let live = MeshClient::connect(options).await.expect("bob connects");
    // Down through the first two reconnection attempts (1 s and 3 s after the loss): the
    // next comes at 7 s, after the rotation below. 5 s leaves 2 s on either side for a slow
    // machine.
    broker.kill9();
    tokio::time::sleep(std::time::Duration::from_millis(5000)).await;
    broker.restart();
    let rotated = alice.json(&["rotate-key", "--json"]);
    assert_eq!(rotated["keyEpoch"], 1);
    assert_ne!(
        *live.link().borrow(),
        claudemesh::client::Link::Up,
        "bob must still be away when the key is rotated (a slow machine?)"
    );
    eventually("bob's client fetched epoch 1 when it came back", || async {
        live.key_ring().get(1).is_some()
    })
    .await;
    assert_eq!(live.key_ring().current_epoch(), 1);
    live.close().await;
}

/// A live client that seals a group message under the epoch it holds while the mesh has moved
/// on (the newer `key_rotated` event is still unread: its connection is busy saving the key
/// before, waiting on the config lock another process of the same member holds) still gets the
/// message out: the broker refuses the body as stale, the client fetches the new key and seals
/// again, and the sender sees it queued, with no error, and the recipient reads it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_sealed_a_rotation_behind_fetches_the_key_and_goes_out() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    let config = claudemesh::identity::ConfigDir::new(bob.config_dir());
    let options = claudemesh::client::ConnectOptions {
        config_dir: Some(config.clone()),
        ..claudemesh::client::ConnectOptions::new(bob.entry(), peer_info("bob"))
    };
    let live = MeshClient::connect(options).await.expect("bob connects");
    let everyone = live.resolve_targets("*").await.expect("targets");

    // Another process of bob's (a CLI command, say) holds his config lock for a while. bob's
    // connection task waits for it on the worker running it (hence two workers).
    let (locked_tx, locked) = std::sync::mpsc::channel();
    let (release, released) = std::sync::mpsc::channel::<()>();
    let holder = std::thread::spawn(move || {
        config.update(|_| {
            locked_tx.send(()).expect("the test waits");
            // Until the test says so (or is gone).
            let _ = released.recv();
            Ok(())
        })
    });
    locked
        .recv_timeout(WAIT)
        .expect("bob's config lock is held");
    // Epoch 1: bob's client takes the key, then waits for the lock to save it.
    assert_eq!(alice.json(&["rotate-key", "--json"])["keyEpoch"], 1);
    eventually("bob's client holds epoch 1", || async {
        live.key_ring().current_epoch() == 1
    })
    .await;
    // Epoch 2: its event waits, unread, behind that save.
    assert_eq!(alice.json(&["rotate-key", "--json"])["keyEpoch"], 2);

    // bob sends to the group: the first poll seals (under epoch 1) and queues the frame.
    let ack = {
        let mut sending =
            std::pin::pin!(live.send_text(&everyone[0], "sealed a rotation behind", "now", None));
        let first =
            std::future::poll_fn(|cx| std::task::Poll::Ready(sending.as_mut().poll(cx))).await;
        assert!(
            first.is_pending(),
            "the send waits for the broker: {first:?}"
        );
        assert_eq!(
            live.key_ring().current_epoch(),
            1,
            "sealed while bob's client held epoch 1 only"
        );
        release.send(()).expect("the lock holder waits");
        holder
            .join()
            .expect("the lock holder ends")
            .expect("bob's config written");
        sending.await.expect("an answer")
    };
    assert_eq!(ack.queued, Some(true), "{ack:?}");
    assert_eq!(ack.error, None, "{ack:?}");
    assert_eq!(
        metric(
            &broker,
            r#"claudemesh_errors_total{code="stale_key_epoch"}"#
        )
        .await,
        Some(1.0),
        "the first try was refused as stale, the second went out"
    );
    assert_eq!(live.key_ring().current_epoch(), 2);
    assert!(
        inbox(&alice)
            .iter()
            .any(|(from, t)| from == "bob" && t == "sealed a rotation behind"),
        "alice reads bob's message"
    );
    live.close().await;
}

/// A ban rotates the key like a revocation: what is sent during the ban is unreadable with the
/// banned member's keys; `unban` rotates again with the member among the holders, so it reads
/// what is sent after it came back (not what was sent while it was banned).
#[tokio::test(flavor = "multi_thread")]
async fn a_ban_and_an_unban_each_rotate_the_key() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob, carol) = team(&broker);
    let bob_live = bob.client().await;

    let out = alice.run(&["ban", "carol", "--reason", "spam"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout
            .contains("rotated the mesh root key to epoch 1: sealed to 2 member(s)"),
        "alice and bob get the key, not carol: {}",
        out.stdout
    );
    send(&alice, "*", "while carol is banned");
    let during = next_message(&bob_live).await;
    assert_eq!(during.key_epoch, 1);
    assert_eq!(
        bob_live.decrypt(&during).as_deref(),
        Ok("while carol is banned")
    );
    let carol_entry = carol.entry();
    let why = decrypt_push(
        &carol_entry,
        &KeyRing::from_entry(&carol_entry),
        None,
        &during,
    )
    .expect_err("a banned member must not read what is sent during the ban");
    assert!(
        why.contains("key epoch 1, which this member does not hold"),
        "{why}"
    );

    let out = alice.run(&["unban", "carol"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains("epoch 2: sealed to 3 member(s)"),
        "carol is a holder again: {}",
        out.stdout
    );
    send(&alice, "*", "carol is back");
    let got = inbox(&carol);
    assert!(
        got.iter().any(|(_, t)| t == "carol is back"),
        "carol reads what is sent after the unban: {got:?}"
    );
    assert!(
        !got.iter().any(|(_, t)| t == "while carol is banned"),
        "nothing sent during the ban reads for carol: {got:?}"
    );
    assert_eq!(carol.entry().key_epoch, 2);
    bob_live.close().await;
}

/// Finding 3: an invite link that names the current key as a later epoch (`KEY_N~(N+1)`, as
/// a member about to be removed could hand out) is refused by `join`, for a member of the mesh
/// too: the landing says the mesh's epoch, and a link's key is taken only under it.
#[tokio::test(flavor = "multi_thread")]
async fn a_link_that_names_the_current_key_as_a_later_epoch_is_refused() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob, _carol) = team(&broker);
    let key0 = bob.entry().root_key().expect("bob holds epoch 0");
    let root = claudemesh::identity::encode_root_key(&key0);
    let (_, url) = invite(&alice, &[]);
    assert!(url.contains(&format!("#{root}.")), "{url}");
    let planted = url.replace(&format!("#{root}."), &format!("#{root}~1."));
    let refused = bob.run(&["join", &planted]);
    assert_ne!(
        refused.code, 0,
        "the planted link is refused: {}",
        refused.stdout
    );
    assert!(
        refused.stderr.contains("epoch 1") && refused.stderr.contains("key epoch 0"),
        "{}",
        refused.stderr
    );
    let entry = bob.entry();
    assert_eq!(entry.key_epoch, 0, "nothing was saved");
    assert_eq!(entry.root_key_at(1), None);
    assert!(entry.old_root_keys.is_empty());
    // Nobody new joins with it either, and the invite is not used up.
    let eve = Person::new("eve");
    assert_ne!(eve.run(&["join", &planted, "--name", "eve"]).code, 0);
    // A link naming the epoch the mesh is at still works, after a rotation too.
    alice.json(&["rotate-key", "--json"]);
    let (_, url) = invite(&alice, &[]);
    assert!(url.contains("~1."), "{url}");
    join(&eve, &url);
    assert_eq!(eve.entry().key_epoch, 1);
    // An old-epoch link: refused now (revoked or not current), whatever epoch it names.
    let back = url.replace("~1.", "~0.");
    assert_ne!(
        Person::new("zed")
            .run(&["join", &back, "--name", "zed"])
            .code,
        0
    );
}

/// Finding 3, the other end: a member that holds a key for an epoch which is not that epoch's
/// key (planted by a link before this version refused it) takes the sealed copy the rotation
/// hands it instead, connected (`key_rotated`) or away (`get_keys` at its next connection);
/// its next group message is under the real key: everyone reads it, the planted key does not
/// open it.
#[tokio::test(flavor = "multi_thread")]
async fn a_sealed_copy_replaces_a_different_key_held_for_its_epoch() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob, carol) = team(&broker);
    let dave = invited(&alice, "dave");
    // carol's link planted epoch 0's key as epoch 1 in bob's and dave's configs.
    let key0 = bob.entry().root_key().expect("epoch 0");
    for victim in [&bob, &dave] {
        claudemesh::identity::ConfigDir::new(victim.config_dir())
            .update(|c| {
                assert!(c.meshes[0].add_root_key(1, &key0));
                Ok(())
            })
            .unwrap();
        assert_eq!(victim.entry().key_epoch, 1);
    }
    let planted = bob.entry();
    // bob is connected (as an MCP server would be) when carol is removed; dave is away.
    let options = claudemesh::client::ConnectOptions {
        config_dir: Some(claudemesh::identity::ConfigDir::new(bob.config_dir())),
        ..claudemesh::client::ConnectOptions::new(bob.entry(), peer_info("bob"))
    };
    let bob_live = MeshClient::connect(options).await.expect("bob connects");
    let alice_live = alice.client().await;
    let out = alice.json(&["revoke", "carol", "--json"]);
    assert_eq!(out["rotated"]["keyEpoch"], 1, "{out}");
    let key1 = alice.entry().root_key_at(1).expect("alice holds epoch 1");
    assert_ne!(key1, key0);
    eventually("bob's config holds the sealed copy of epoch 1", || async {
        bob.entry().root_key_at(1) == Some(key1)
    })
    .await;
    assert_eq!(bob_live.key_ring().get(1), Some(key1));
    assert_eq!(bob.entry().root_key_at(0), Some(key0), "epoch 0 stays");

    let target = bob_live.resolve_targets("*").await.expect("targets");
    let acks = bob_live
        .send_each(&target, "bob under the real key", "now")
        .await
        .expect("sent");
    assert_eq!(acks[0].queued, Some(true), "{:?}", acks[0]);
    let mut push = next_message(&alice_live).await;
    while push.key_epoch != 1 {
        push = next_message(&alice_live).await;
    }
    assert_eq!(
        alice_live.decrypt(&push).as_deref(),
        Ok("bob under the real key")
    );
    let planted_ring = KeyRing::from_entry(&planted);
    assert_eq!(planted_ring.get(1), Some(key0));
    let why = decrypt_push(&planted, &planted_ring, None, &push)
        .expect_err("the planted key (carol's) does not open it");
    assert!(!why.contains("bob under the real key"), "{why}");
    let carol_entry = carol.entry();
    assert!(
        decrypt_push(
            &carol_entry,
            &KeyRing::from_entry(&carol_entry),
            None,
            &push
        )
        .is_err()
    );

    // dave, away during the rotation, connects at the epoch he (wrongly) holds already: the
    // current epoch's copy is fetched anyway and wins.
    send(&dave, "*", "dave under the real key");
    assert_eq!(dave.entry().root_key_at(1), Some(key1));
    assert!(
        inbox(&alice)
            .iter()
            .any(|(from, t)| from == "dave" && t == "dave under the real key"),
        "alice reads dave's message"
    );
    bob_live.close().await;
    alice_live.close().await;
}

/// Finding 9: a group reminder sealed before a rotation does not go out after it (its body is
/// under the key the removed member holds): the broker drops it when it comes due, cron or
/// one-shot, while one scheduled under the new key fires.
#[tokio::test(flavor = "multi_thread")]
async fn a_group_reminder_scheduled_before_a_rotation_does_not_fire_after_it() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob, _carol) = team(&broker);
    let bob_live = bob.client().await;
    let cron = alice.json(&[
        "remind",
        "old tick",
        "--cron",
        "* * * * *",
        "--to",
        "*",
        "--json",
    ]);
    let due = cron["deliverAt"].as_str().expect("deliverAt").to_string();
    alice.json(&["remind", "old once", "--in", "15s", "--to", "*", "--json"]);
    // A direct reminder is sealed to its recipient, not under the root key: it still goes out.
    alice.json(&[
        "remind",
        "old direct",
        "--in",
        "15s",
        "--to",
        "bob",
        "--json",
    ]);
    let out = alice.json(&["revoke", "carol", "--json"]);
    assert_eq!(out["rotated"]["keyEpoch"], 1, "{out}");
    alice.json(&["remind", "new once", "--in", "2s", "--to", "*", "--json"]);
    // A reminder in clear (as the original's clients schedule them) is under no key at all.
    let (mut original, _) = ws_hello(&broker, &member_hello(&alice.entry())).await;
    ws_send(
        &mut original,
        &serde_json::json!({
            "type": "schedule",
            "_reqId": "clear",
            "to": "*",
            "message": "in clear",
            "deliverAt": claudemesh::protocol::time::now_ms() + 2_000,
        }),
    )
    .await;
    let ack = ws_recv_reply(&mut original).await;
    assert_eq!(ack["type"], "scheduled_ack", "{ack}");

    // Past the cron's first firing and the old one-shot's time.
    let due_ms = claudemesh::protocol::time::parse_iso(&due).expect("an ISO time");
    let until = due_ms.max(claudemesh::protocol::time::now_ms() + 15_000) + 3_000;
    let (mut reminders, mut seen) = (Vec::new(), Vec::new());
    loop {
        let left = until - claudemesh::protocol::time::now_ms();
        if left <= 0 {
            break;
        }
        let wait = std::time::Duration::from_millis(left as u64);
        let Ok(frame) = tokio::time::timeout(wait, bob_live.next_push()).await else {
            break;
        };
        if let Some(ServerMessage::Push(p)) = frame
            && p.subtype.as_deref() == Some("reminder")
        {
            bob_live.ack(&p.message_id).unwrap();
            // An unacknowledged push may come again: count each message once.
            if !seen.contains(&p.message_id) {
                seen.push(p.message_id.clone());
                reminders.push((p.key_epoch, bob_live.decrypt(&p)));
            }
        }
    }
    reminders.sort_by(|a, b| a.1.cmp(&b.1));
    let texts: Vec<_> = reminders.iter().map(|(_, text)| text.clone()).collect();
    assert_eq!(
        texts,
        [
            Ok("in clear".to_string()),
            Ok("new once".to_string()),
            Ok("old direct".to_string())
        ],
        "only the group reminder under the new key, the one in clear and the direct one went out"
    );
    assert_eq!(reminders[1].0, 1, "the group reminder is under the new key");
    let listed = alice.json(&["remind", "list", "--json"]);
    assert_eq!(
        listed["messages"].as_array().map(Vec::len),
        Some(0),
        "the stale cron reminder was dropped: {listed}"
    );
    let log = broker.stderr_lines().join("\n");
    assert!(
        log.contains("rotated-away root-key epoch"),
        "the broker says why: {log}"
    );
    bob_live.close().await;
}
