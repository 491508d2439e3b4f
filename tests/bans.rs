//! Kick, disconnect, ban (issue 13, item 3): a kicked member is told why and may come back; a
//! banned one is told why, and its hellos (member and session) and a fresh claim with its key
//! are refused with the reason until `unban`; nobody bans or kicks the owner.

use crate::common;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use claudemesh::crypto::{BoxKeyPair, SignKeyPair};
use claudemesh::protocol::{canonical, time};
use common::*;
use serde_json::{Value, json};

/// A claim of invite `code` with `member`'s key, over HTTP as `join` makes it.
async fn claim_with(broker: &BrokerProc, code: &str, member: &SignKeyPair) -> (u16, Value) {
    claim_as(broker, code, member, "bob").await
}

/// A claim of invite `code` with `member`'s key under display name `name`.
async fn claim_as(
    broker: &BrokerProc,
    code: &str,
    member: &SignKeyPair,
    name: &str,
) -> (u16, Value) {
    let x = URL_SAFE_NO_PAD.encode(BoxKeyPair::generate().public);
    let timestamp = time::now_ms();
    let signed = canonical::invite_claim(code, &x, &member.public_hex(), timestamp);
    let body = json!({
        "recipient_x25519_pubkey": x,
        "display_name": name,
        "member_pubkey": member.public_hex(),
        "timestamp": timestamp,
        "signature": hex::encode(member.sign(signed.as_bytes())),
    });
    let resp = http_post(
        &format!("{}/invites/{code}/claim", broker.http_url()),
        body.to_string(),
    )
    .await;
    (resp.status, resp.json())
}

/// The error frame `code` on a connection that is being closed, within seconds (the broker's
/// pings would keep [`ws_expect_error`] waiting on a connection left open).
async fn told_within(ws: &mut Ws, code: &str) -> Value {
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        ws_expect_error(ws, code),
    )
    .await
    .unwrap_or_else(|_| panic!("no {code} error within 10 s: the connection was left open"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_kicked_member_is_told_why_and_may_come_back() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob, carol) = team_with_admin(&broker);
    let (mut ws, _) = ws_hello(&broker, &member_hello(&bob.entry())).await;
    // bob's CLI waiting for mail is told too, with the reason.
    let waiting = bob
        .command(&["inbox", "--wait", "25"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("bob's inbox");
    eventually("bob's inbox to connect", || async {
        metric(&broker, "claudemesh_peers").await == Some(2.0)
    })
    .await;

    carol.ok(&["kick", "bob", "--reason", "restart your session"]);
    let told = told_within(&mut ws, "kicked").await;
    assert_eq!(told["message"], "restart your session");
    let (code, reason) = ws_recv_close(&mut ws).await;
    assert_eq!((code, reason.as_str()), (4001, "kicked"));
    let (status, stderr) = finish(waiting, "inbox --wait 25");
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("error: you were disconnected from the mesh: restart your session"),
        "{stderr}"
    );

    // Nothing is held against them: they come back at once.
    bob.ok(&["send", "alice", "back again"]);
    let (_ws, _) = ws_hello(&broker, &member_hello(&bob.entry())).await;
    assert!(
        alice.ok(&["members"]).contains("bob"),
        "bob is still a member"
    );
    // Only the owner or an admin kicks, and nobody kicks the owner.
    let err = bob.refused(&["kick", "carol"]);
    assert!(err.contains("only the owner or an admin"), "{err}");
    let err = carol.refused(&["kick", "alice"]);
    assert!(err.contains("the mesh owner cannot be kicked"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_banned_member_is_refused_with_the_reason_until_unban() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob, carol) = team_with_admin(&broker);
    let bob_entry = bob.entry();
    let (mut ws, _) = ws_hello(&broker, &member_hello(&bob_entry)).await;

    // Without rotation: a rotation revokes unused invites (tests/keys.rs covers that), and
    // this test claims an invite minted below before and after the ban is lifted.
    carol.ok(&["ban", "bob", "--reason", "spamming the mesh", "--no-rotate"]);
    let told = told_within(&mut ws, "banned").await;
    assert!(
        told["message"]
            .as_str()
            .is_some_and(|m| m.contains("spamming the mesh")),
        "{told}"
    );
    assert_eq!(ws_recv_close(&mut ws).await, (4002, "banned".to_string()));

    // Hellos of every kind are refused, with the reason.
    let err = bob.refused(&["peers"]);
    assert!(
        err.contains("banned") && err.contains("spamming the mesh"),
        "{err}"
    );
    ws_refused(&broker, &member_hello(&bob_entry), "banned", 4002).await;
    let session = SignKeyPair::generate();
    ws_refused(
        &broker,
        &session_hello(&bob_entry, &session),
        "banned",
        4002,
    )
    .await;
    // So is a fresh claim with bob's key, of a new and valid invite.
    let (code, _) = invite(&alice, &[]);
    let bob_key = bob_entry.member_keys().expect("bob's key");
    let (status, answer) = claim_with(&broker, &code, &bob_key).await;
    assert_eq!(status, 403, "{answer}");
    assert_eq!(answer["error"], "banned", "{answer}");
    assert!(
        answer["message"]
            .as_str()
            .is_some_and(|m| m.contains("spamming the mesh")),
        "{answer}"
    );

    // `bans` lists it.
    let bans = alice.json(&["bans", "--json"]);
    let list = bans["bans"].as_array().expect("bans");
    assert_eq!(list.len(), 1, "{bans}");
    assert_eq!(list[0]["displayName"], "bob");
    assert_eq!(list[0]["reason"], "spamming the mesh");
    assert_eq!(list[0]["memberId"], bob_entry.member_id.as_str());
    assert_eq!(list[0]["pubkey"], bob_entry.member_pubkey.as_str());
    assert_eq!(list[0]["bannedBy"], carol.entry().member_id.as_str());
    // The table says who banned, by name.
    let table = carol.ok(&["bans"]);
    let row = table
        .lines()
        .find(|l| l.starts_with("bob "))
        .expect("bob's row");
    assert!(
        row.contains("spamming the mesh") && row.contains("carol"),
        "{table}"
    );

    // After unban bob connects, and the claim with his key is his membership again.
    alice.ok(&["unban", "bob", "--no-rotate"]);
    bob.ok(&["send", "alice", "I am back"]);
    let (_ws, _) = ws_hello(&broker, &member_hello(&bob_entry)).await;
    let (status, answer) = claim_with(&broker, &code, &bob_key).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["member_id"], bob_entry.member_id.as_str());
    assert!(
        alice.json(&["bans", "--json"])["bans"]
            .as_array()
            .is_some_and(|b| b.is_empty())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn nobody_bans_the_owner_and_only_managers_ban() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob, carol) = team_with_admin(&broker);
    let err = carol.refused(&["ban", "alice", "--reason", "coup"]);
    assert!(err.contains("the mesh owner cannot be banned"), "{err}");
    alice.ok(&["peers"]);
    let err = bob.refused(&["ban", "carol"]);
    assert!(err.contains("only the owner or an admin"), "{err}");
    let err = bob.refused(&["bans"]);
    assert!(err.contains("only the owner or an admin"), "{err}");
    let err = bob.refused(&["unban", "carol"]);
    assert!(err.contains("only the owner or an admin"), "{err}");
    carol.ok(&["peers"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn disconnect_closes_one_session_of_ones_own_or_as_a_manager() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob, _carol) = team_with_admin(&broker);
    let bob_entry = bob.entry();
    let (one, two) = (SignKeyPair::generate(), SignKeyPair::generate());
    let (mut ws_one, _) = ws_hello(&broker, &session_hello(&bob_entry, &one)).await;
    let (mut ws_two, _) = ws_hello(&broker, &session_hello(&bob_entry, &two)).await;
    let alice_session = SignKeyPair::generate();
    let (_ws_alice, _) = ws_hello(&broker, &session_hello(&alice.entry(), &alice_session)).await;

    // A member may not close someone else's session.
    let err = bob.refused(&["disconnect", &alice_session.public_hex()]);
    assert!(err.contains("its own sessions"), "{err}");
    // Its own: that one closes, the other stays.
    bob.ok(&["disconnect", &one.public_hex()]);
    ws_expect_error(&mut ws_one, "disconnected").await;
    assert_eq!(ws_recv_close(&mut ws_one).await.0, 4001);
    ws_send(&mut ws_two, &json!({"type": "list_peers", "_reqId": "r1"})).await;
    let listed = ws_recv_reply(&mut ws_two).await;
    assert_eq!(
        listed["type"], "peers_list",
        "the other session lives: {listed}"
    );
    // The owner may close anyone's.
    alice.ok(&["disconnect", &two.public_hex()]);
    ws_expect_error(&mut ws_two, "disconnected").await;
    assert_eq!(ws_recv_close(&mut ws_two).await.0, 4001);
    let err = alice.refused(&["disconnect", &two.public_hex()]);
    assert!(err.contains("no connection"), "{err}");
}

/// `disconnect` takes the IDs plain `peers` prints: a member's (when it has one live session)
/// and a session's; an ID that names several sessions, or none, says where to look.
#[tokio::test(flavor = "multi_thread")]
async fn disconnect_takes_the_ids_plain_peers_shows() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    let bob_id = bob.entry().member_pubkey[..8].to_string();
    let (one, two) = (SignKeyPair::generate(), SignKeyPair::generate());
    let (mut ws_one, _) = ws_hello(&broker, &session_hello(&bob.entry(), &one)).await;
    let shown = alice.ok(&["peers"]);
    assert!(shown.contains(&bob_id), "{shown}");

    // Bob's ID names his one live session.
    alice.ok(&["disconnect", &bob_id]);
    ws_expect_error(&mut ws_one, "disconnected").await;
    assert_eq!(ws_recv_close(&mut ws_one).await.0, 4001);

    // With two, his ID names both: refused, pointing at the session lines.
    let (mut ws_one, _) = ws_hello(&broker, &session_hello(&bob.entry(), &one)).await;
    let (_ws_two, _) = ws_hello(&broker, &session_hello(&bob.entry(), &two)).await;
    let err = alice.refused(&["disconnect", &bob_id]);
    assert!(err.contains("names 2 connections"), "{err}");
    assert!(err.contains("`claudemesh peers`"), "{err}");
    // A session's short key from `peers` names that one; a member may not close another's.
    let one_id = one.public_hex()[..8].to_string();
    assert!(alice.ok(&["peers"]).contains(&one_id));
    let alice_session = SignKeyPair::generate();
    let (_ws_alice, _) = ws_hello(&broker, &session_hello(&alice.entry(), &alice_session)).await;
    let alice_id = alice.entry().member_pubkey[..8].to_string();
    let err = bob.refused(&["disconnect", &alice_id]);
    assert!(err.contains("its own sessions"), "{err}");
    alice.ok(&["disconnect", &one_id.to_uppercase()]);
    ws_expect_error(&mut ws_one, "disconnected").await;

    // Nothing named: the message says where the IDs are.
    let err = alice.refused(&["disconnect", "5c548725"]);
    assert!(
        err.contains("`claudemesh peers`") && err.contains("`claudemesh peers --json`"),
        "{err}"
    );

    // Bob has one session left: under 8 characters his key names nothing; its session id
    // (`peers --json`) names it, and so does a prefix longer than 8.
    let err = alice.refused(&["disconnect", &bob_id[..4]]);
    assert!(err.contains("no connection"), "{err}");
    alice.ok(&["disconnect", "test-bob"]);
    let (_ws_three, _) = ws_hello(&broker, &session_hello(&bob.entry(), &one)).await;
    alice.ok(&["disconnect", &bob.entry().member_pubkey[..12]]);
}

/// A banned member is not in the mesh's broadcasts and groups: what was said to everyone
/// during the ban is not waiting for them when the ban is lifted (even without a rotation,
/// and for a bridge that holds the root key), and what is said after reaches them.
#[tokio::test(flavor = "multi_thread")]
async fn a_broadcast_during_a_ban_is_not_kept_for_the_banned_member() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob, carol) = team_with_admin(&broker);
    alice.ok(&["ban", "bob", "--no-rotate"]);
    alice.ok(&["send", "*", "said while bob was banned"]);
    eventually("carol to get the broadcast", || async {
        carol
            .ok(&["inbox", "--json"])
            .contains("said while bob was banned")
    })
    .await;
    alice.ok(&["unban", "bob", "--no-rotate"]);
    alice.ok(&["send", "*", "said after the ban"]);
    // Everything bob's inbox shows, over every read (a read takes what it shows).
    let seen = std::cell::RefCell::new(String::new());
    eventually("bob to get the broadcast after the ban", || {
        seen.borrow_mut().push_str(&bob.ok(&["inbox", "--json"]));
        std::future::ready(seen.borrow().contains("said after the ban"))
    })
    .await;
    let seen = seen.into_inner();
    assert!(!seen.contains("said while bob was banned"), "{seen}");
}

/// What a member scheduled before its ban does not go out while it is banned.
#[tokio::test(flavor = "multi_thread")]
async fn a_banned_members_reminders_do_not_fire() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob, _carol) = team_with_admin(&broker);
    // Room for the ban (and its rotation) to land first on a slow machine.
    bob.ok(&["remind", "you were warned", "--in", "10s", "--to", "alice"]);
    alice.ok(&["ban", "bob"]);
    broker
        .logged(
            "the broker to skip bob's reminder",
            "its member may not send now",
        )
        .await;
    let inbox = alice.ok(&["inbox", "--json"]);
    assert!(!inbox.contains("you were warned"), "{inbox}");
}

/// A banned member's invites let nobody in: a banned admin cannot come back through an invite
/// it registered before the ban, under a fresh key.
#[tokio::test(flavor = "multi_thread")]
async fn a_banned_members_invites_let_nobody_in() {
    let broker = BrokerProc::start(&[]);
    let (alice, _bob, carol) = team_with_admin(&broker);
    let (code, _) = invite(&carol, &[]);
    // Without rotation, which would revoke the invite for another reason.
    alice.ok(&["ban", "carol", "--no-rotate"]);
    let fresh = SignKeyPair::generate();
    let (status, answer) = claim_as(&broker, &code, &fresh, "dave").await;
    assert_ne!(status, 200, "{answer}");
    assert_ne!(answer["error"], "name_taken", "{answer}");
    alice.ok(&["unban", "carol", "--no-rotate"]);
    let (status, answer) = claim_as(&broker, &code, &fresh, "dave").await;
    assert_eq!(
        status, 200,
        "after the unban the invite is carol's again: {answer}"
    );
}
