//! The handshake over a raw WebSocket (PROTOCOL.md §1, §3): every refusal with its error code and
//! close code, session takeover, frame handling before and after hello, MessagePack, capacity.

use crate::common;

use claudemesh::crypto::SignKeyPair;
use claudemesh::protocol::{canonical, ids, time};
use common::*;
use serde_json::{Value, json};

const HOUR_MS: i64 = 3600 * 1000;

/// A broker with mesh "team": alice owns it, bob has joined.
fn setup(extra: &[&str]) -> (BrokerProc, Person, Person) {
    let broker = BrokerProc::start(extra);
    let (alice, bob) = alice_and_bob(&broker);
    (broker, alice, bob)
}

/// Replaces a session hello's attestation with one signed by `signer` over the given fields.
fn set_attestation(v: &mut Value, signer: &SignKeyPair, parent: &str, session: &str, exp: i64) {
    let signed = canonical::session_attestation(parent, session, exp);
    v["parentAttestation"] = json!({
        "sessionPubkey": session,
        "parentMemberPubkey": parent,
        "expiresAt": exp,
        "signature": hex::encode(signer.sign(signed.as_bytes())),
    });
}

/// A `list_members` request answered on `ws`, proving the socket still works.
async fn still_served(ws: &mut Ws, req_id: &str) {
    ws_send(ws, &json!({"type": "list_members", "_reqId": req_id})).await;
    let v = ws_recv_reply(ws).await;
    assert_eq!(v["type"], "members_list", "{v}");
    assert_eq!(v["_reqId"], req_id, "{v}");
}

#[tokio::test(flavor = "multi_thread")]
async fn valid_member_and_session_hellos_are_acknowledged() {
    let (broker, _alice, bob) = setup(&[]);
    let entry = bob.entry();

    let (mut ws, ack) = ws_hello(&broker, &member_hello(&entry)).await;
    assert!(!ack["presenceId"].as_str().unwrap().is_empty(), "{ack}");
    assert_eq!(ack["memberDisplayName"], "bob");
    still_served(&mut ws, "m1").await;

    let session = SignKeyPair::generate();
    let (mut ws2, ack2) = ws_hello(&broker, &session_hello(&entry, &session)).await;
    assert!(!ack2["presenceId"].as_str().unwrap().is_empty(), "{ack2}");
    assert_ne!(ack["presenceId"], ack2["presenceId"]);
    assert_eq!(ack2["memberDisplayName"], "bob");
    still_served(&mut ws2, "s1").await;
}

#[tokio::test(flavor = "multi_thread")]

async fn a_bad_signature_is_refused() {
    let (broker, _alice, bob) = setup(&[]);
    let mut v = member_hello(&bob.entry());
    let sig = v["signature"].as_str().unwrap().to_string();
    let flipped = if sig.starts_with('0') { "1" } else { "0" };
    v["signature"] = format!("{flipped}{}", &sig[1..]).into();
    ws_refused(&broker, &v, "bad_signature", 1008).await;
}

#[tokio::test(flavor = "multi_thread")]

async fn a_stale_timestamp_is_refused() {
    let (broker, _alice, bob) = setup(&[]);
    let entry = bob.entry();
    let mut v = member_hello(&entry);
    v["timestamp"] = (time::now_ms() - 61_000).into();
    sign_member_hello(&mut v, &entry.member_keys().unwrap());
    ws_refused(&broker, &v, "timestamp_skew", 1008).await;
    // The future is no better (far enough ahead that a slow connect does not bring it
    // within the minute).
    v["timestamp"] = (time::now_ms() + 90_000).into();
    sign_member_hello(&mut v, &entry.member_keys().unwrap());
    ws_refused(&broker, &v, "timestamp_skew", 1008).await;
    // Nor is a session hello exempt, though its attestation is fresh.
    let session = SignKeyPair::generate();
    for skew in [-61_000, 90_000] {
        let mut v = session_hello(&entry, &session);
        v["timestamp"] = (time::now_ms() + skew).into();
        sign_session_hello(&mut v, &session);
        ws_refused(&broker, &v, "timestamp_skew", 1008).await;
    }
    ws_hello(&broker, &session_hello(&entry, &session)).await;
}

#[tokio::test(flavor = "multi_thread")]

async fn an_exact_replay_is_refused() {
    let (broker, _alice, bob) = setup(&[]);
    let v = member_hello(&bob.entry());
    let (mut first, _) = ws_hello(&broker, &v).await;
    ws_refused(&broker, &v, "replay", 1008).await;
    still_served(&mut first, "after-replay").await;
}

#[tokio::test(flavor = "multi_thread")]

async fn an_unknown_member_is_refused() {
    let (broker, _alice, bob) = setup(&[]);
    let stranger = SignKeyPair::generate();
    let mut v = member_hello(&bob.entry());
    v["pubkey"] = stranger.public_hex().into();
    v["memberId"] = ids::new_id().into();
    sign_member_hello(&mut v, &stranger);
    ws_refused(&broker, &v, "unauthorized", 1008).await;
    // Nor does a right key help in a mesh that does not exist.
    let entry = bob.entry();
    let mut v = member_hello(&entry);
    v["meshId"] = ids::new_id().into();
    sign_member_hello(&mut v, &entry.member_keys().unwrap());
    ws_refused(&broker, &v, "unauthorized", 1008).await;
}

#[tokio::test(flavor = "multi_thread")]

async fn a_member_id_of_another_member_is_refused() {
    let (broker, alice, bob) = setup(&[]);
    let entry = bob.entry();
    let mut v = member_hello(&entry);
    v["memberId"] = alice.entry().member_id.into();
    sign_member_hello(&mut v, &entry.member_keys().unwrap());
    ws_refused(&broker, &v, "unauthorized", 1008).await;
}

#[tokio::test(flavor = "multi_thread")]

async fn a_bad_session_pubkey_in_a_member_hello_is_refused() {
    let (broker, _alice, bob) = setup(&[]);
    let entry = bob.entry();
    for bad in [
        "not-hex".to_string(),
        SignKeyPair::generate().public_hex().to_uppercase(),
        "ab".repeat(31),
    ] {
        let mut v = member_hello(&entry);
        v["sessionPubkey"] = bad.into();
        ws_refused(&broker, &v, "bad_session_pubkey", 1008).await;
    }
    // A well-formed one is only a label and is accepted.
    let mut v = member_hello(&entry);
    v["sessionPubkey"] = SignKeyPair::generate().public_hex().into();
    ws_hello(&broker, &v).await;
}

#[tokio::test(flavor = "multi_thread")]

async fn a_revoked_member_is_closed_with_4002_and_cannot_return() {
    let (broker, alice, bob) = setup(&[]);
    let entry = bob.entry();
    let (mut live, _) = ws_hello(&broker, &member_hello(&entry)).await;
    let session = SignKeyPair::generate();
    let (mut live_session, _) = ws_hello(&broker, &session_hello(&entry, &session)).await;

    let out = alice.run(&["revoke", "bob"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(ws_recv_close(&mut live).await, (4002, "revoked".into()));
    assert_eq!(
        ws_recv_close(&mut live_session).await,
        (4002, "revoked".into())
    );

    ws_refused(&broker, &member_hello(&entry), "revoked", 4002).await;
    let other_session = SignKeyPair::generate();
    ws_refused(
        &broker,
        &session_hello(&entry, &other_session),
        "revoked",
        4002,
    )
    .await;
    let members = alice.json(&["members", "--json"]);
    let names: Vec<&str> = members["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["displayName"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["alice"], "revoked members are not listed");
}

#[tokio::test(flavor = "multi_thread")]

async fn session_attestations_are_checked() {
    let (broker, alice, bob) = setup(&[]);
    let entry = bob.entry();
    let bob_key = entry.member_keys().unwrap();
    let bob_pub = bob_key.public_hex();
    let alice_key = alice.entry().member_keys().unwrap();
    let session = SignKeyPair::generate();
    let session_pub = session.public_hex();
    let now = time::now_ms();

    let mut v = session_hello(&entry, &session);
    set_attestation(&mut v, &bob_key, &bob_pub, &session_pub, now - 1000);
    ws_refused(&broker, &v, "expired", 1008).await;

    let mut v = session_hello(&entry, &session);
    set_attestation(&mut v, &bob_key, &bob_pub, &session_pub, now + 25 * HOUR_MS);
    ws_refused(&broker, &v, "ttl_too_long", 1008).await;

    // Signed by another member's key over bob's statement.
    let mut v = session_hello(&entry, &session);
    set_attestation(&mut v, &alice_key, &bob_pub, &session_pub, now + HOUR_MS);
    ws_refused(&broker, &v, "bad_signature", 1008).await;

    // Validly signed, but for another session key than the one saying hello.
    let other = SignKeyPair::generate().public_hex();
    let mut v = session_hello(&entry, &session);
    set_attestation(&mut v, &bob_key, &bob_pub, &other, now + HOUR_MS);
    ws_refused(&broker, &v, "attestation_mismatch", 1008).await;

    // …or for another parent key.
    let alice_pub = alice_key.public_hex();
    let mut v = session_hello(&entry, &session);
    set_attestation(&mut v, &alice_key, &alice_pub, &session_pub, now + HOUR_MS);
    ws_refused(&broker, &v, "attestation_mismatch", 1008).await;

    // Everything valid except the parent member id, which names alice.
    let mut v = session_hello(&entry, &session);
    v["parentMemberId"] = alice.entry().member_id.into();
    sign_session_hello(&mut v, &session);
    ws_refused(&broker, &v, "parent_member_id_mismatch", 1008).await;

    // The hello itself must be signed by the session key.
    let mut v = session_hello(&entry, &session);
    sign_session_hello(&mut v, &bob_key);
    ws_refused(&broker, &v, "bad_signature", 1008).await;

    // A malformed session key.
    let mut v = session_hello(&entry, &session);
    v["sessionPubkey"] = "xyz".into();
    ws_refused(&broker, &v, "bad_session_pubkey", 1008).await;

    // And after all that, the genuine article still gets in.
    ws_hello(&broker, &session_hello(&entry, &session)).await;
}

#[tokio::test(flavor = "multi_thread")]

async fn a_second_session_hello_with_the_same_key_takes_over() {
    let (broker, _alice, bob) = setup(&[]);
    let entry = bob.entry();
    let session = SignKeyPair::generate();
    let (mut first, _) = ws_hello(&broker, &session_hello(&entry, &session)).await;
    let (mut second, _) = ws_hello(&broker, &session_hello(&entry, &session)).await;
    assert_eq!(
        ws_recv_close(&mut first).await,
        (1000, "session_replaced".into())
    );
    still_served(&mut second, "after-takeover").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn frames_before_and_after_hello() {
    let (broker, alice, bob) = setup(&[]);
    let (mut other, _) = ws_hello(&broker, &member_hello(&alice.entry())).await;

    // Before hello: no_hello, and the socket stays open for the hello.
    let mut ws = ws_connect(&broker.ws_url()).await;
    ws_send(&mut ws, &json!({"type": "list_members", "_reqId": "early"})).await;
    let e = ws_expect_error(&mut ws, "no_hello").await;
    assert_eq!(e["_reqId"], "early");
    ws_send(&mut ws, &member_hello(&bob.entry())).await;
    assert_eq!(ws_recv_reply(&mut ws).await["type"], "hello_ack");

    // An unknown type: an error naming it, and the socket keeps working.
    ws_send(&mut ws, &json!({"type": "frobnicate", "_reqId": "u1"})).await;
    let e = ws_expect_error(&mut ws, "unknown_message_type").await;
    assert_eq!(e["_reqId"], "u1");
    still_served(&mut ws, "r1").await;

    // Not JSON at all.
    ws_send_text(&mut ws, "{this is not json").await;
    ws_expect_error(&mut ws, "malformed").await;
    still_served(&mut ws, "r2").await;

    // Over MAX_MESSAGE_BYTES: an error, then 1009.
    let big = json!({"type": "list_members", "pad": "x".repeat(70_000)});
    ws_send(&mut ws, &big).await;
    ws_expect_error(&mut ws, "payload_too_large").await;
    let (code, reason) = ws_recv_close(&mut ws).await;
    assert_eq!(code, 1009, "close after an oversized frame ({reason})");

    // The broker kept serving everyone else, and new connections.
    still_served(&mut other, "other").await;
    let mut again = member_hello(&bob.entry());
    again["sessionId"] = "test-bob-again".into();
    ws_hello(&broker, &again).await;
}

/// A plain GET of /ws (curl, a browser) is told it reached the WebSocket endpoint without an
/// upgrade: 426 and the usual JSON error, not "no endpoint".
#[tokio::test(flavor = "multi_thread")]
async fn a_plain_request_to_ws_is_told_to_upgrade() {
    let broker = BrokerProc::start(&[]);
    let resp = http_get(&format!("{}/ws", broker.http_url())).await;
    assert_eq!(resp.status, 426, "{:?}", resp.body);
    let v = resp.json();
    assert_eq!(v["error"], "upgrade_required", "{v}");
    let message = v["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("WebSocket endpoint") && message.contains("Upgrade: websocket"),
        "{v}"
    );
}

/// The next reply on a MessagePack connection; it must come as a binary MessagePack frame.
async fn msgpack_reply(ws: &mut Ws) -> Value {
    loop {
        match ws_next(ws).await {
            Frame::MsgPack(v) if v["type"] == "push" => continue,
            Frame::MsgPack(v) => return v,
            other => panic!("expected a binary MessagePack frame, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_messagepack_hello_is_answered_in_messagepack() {
    let (broker, _alice, bob) = setup(&[]);
    let mut ws = ws_connect(&broker.ws_url()).await;
    ws_send_msgpack(&mut ws, &member_hello(&bob.entry())).await;
    let ack = msgpack_reply(&mut ws).await;
    assert_eq!(ack["type"], "hello_ack", "{ack}");
    assert_eq!(ack["memberDisplayName"], "bob");
    ws_send_msgpack(&mut ws, &json!({"type": "list_members", "_reqId": "p1"})).await;
    let list = msgpack_reply(&mut ws).await;
    assert_eq!(list["type"], "members_list", "{list}");
    assert_eq!(list["_reqId"], "p1");
    assert_eq!(list["members"].as_array().unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread")]

async fn a_full_mesh_refuses_with_capacity() {
    let (broker, alice, bob) = setup(&["--max-connections-per-mesh", "2"]);
    wait_no_peers(&broker).await; // the CLI's own connections are gone
    let (mut first, _) = ws_hello(&broker, &member_hello(&bob.entry())).await;
    let (_second, _) = ws_hello(&broker, &member_hello(&alice.entry())).await;
    ws_refused(&broker, &member_hello(&bob.entry()), "capacity", 1008).await;
    let session = SignKeyPair::generate();
    ws_refused(
        &broker,
        &session_hello(&bob.entry(), &session),
        "capacity",
        1008,
    )
    .await;

    // A closed session keeps its slot through its 90 s lease: a new session is still refused,
    // the same session coming back gets its slot again.
    first.close(None).await.unwrap();
    eventually("bob's session in its lease", || async {
        metric(&broker, "claudemesh_peers").await == Some(1.0)
    })
    .await;
    let mut other = member_hello(&bob.entry());
    other["sessionId"] = "test-bob-again".into();
    ws_refused(&broker, &other, "capacity", 1008).await;
    ws_hello(&broker, &member_hello(&bob.entry())).await;
}

#[tokio::test(flavor = "multi_thread")]

async fn a_dropped_connection_can_say_hello_again() {
    let (broker, alice, bob) = setup(&[]);
    wait_no_peers(&broker).await;
    let entry = bob.entry();

    // A member connection with the same sessionId, within the lease.
    let (mut ws, _) = ws_hello(&broker, &member_hello(&entry)).await;
    ws.close(None).await.unwrap();
    wait_no_peers(&broker).await;
    let (mut ws, _) = ws_hello(&broker, &member_hello(&entry)).await;
    still_served(&mut ws, "member-again").await;

    // A session connection with the same session key.
    let session = SignKeyPair::generate();
    let (mut s1, _) = ws_hello(&broker, &session_hello(&entry, &session)).await;
    s1.close(None).await.unwrap();
    eventually("the session is offline", || async {
        metric(&broker, "claudemesh_peers").await == Some(1.0)
    })
    .await;
    let (mut s2, _) = ws_hello(&broker, &session_hello(&entry, &session)).await;
    still_served(&mut s2, "session-again").await;

    // And everyone else is still served.
    ws_hello(&broker, &member_hello(&alice.entry())).await;
}

/// The ack tells a presence what it gets back: a member's first session nothing; after that
/// session joined a group and dropped, the next one its groups (`restored`) and when the member
/// was last seen, which the drop recorded. An owner of a mesh made by this version is never told
/// the broker holds its root key.
#[tokio::test(flavor = "multi_thread")]
async fn the_ack_says_what_a_returning_member_gets_back() {
    let (broker, alice, bob) = setup(&[]);
    wait_no_peers(&broker).await;
    let entry = bob.entry();
    let (mut ws, ack) = ws_hello(&broker, &session_hello(&entry, &SignKeyPair::generate())).await;
    assert_eq!(ack["restored"], false, "{ack}");
    assert!(ack["restoredGroups"].is_null(), "{ack}");
    ws_send(
        &mut ws,
        &json!({"type": "join_group", "name": "dev", "_reqId": "g"}),
    )
    .await;
    ws_recv_reply(&mut ws).await;
    let before_drop = claudemesh::protocol::time::now_ms();
    ws.close(None).await.unwrap();
    wait_no_peers(&broker).await;

    let last_seen = || async {
        let members = alice.json(&["members", "--json"]);
        members["members"]
            .as_array()
            .and_then(|m| m.iter().find(|m| m["displayName"] == "bob").cloned())
            .and_then(|bob| bob["lastSeenAt"].as_str().map(str::to_string))
    };
    eventually(
        "bob's last-seen time recorded when his session dropped",
        || async {
            last_seen()
                .await
                .and_then(|t| claudemesh::protocol::time::parse_iso(&t))
                .is_some_and(|t| t >= before_drop - 1)
        },
    )
    .await;

    let (_ws, ack) = ws_hello(&broker, &session_hello(&entry, &SignKeyPair::generate())).await;
    assert_eq!(ack["restored"], true, "{ack}");
    assert_eq!(ack["restoredGroups"][0]["name"], "dev", "{ack}");
    assert_eq!(
        ack["lastSeenAt"].as_str(),
        last_seen().await.as_deref(),
        "{ack}"
    );

    let (_ws, ack) = ws_hello(&broker, &member_hello(&alice.entry())).await;
    assert!(ack["rootKeyHeld"].is_null(), "{ack}");
}

/// A session opened again while its first socket is still open takes its presence over; when
/// the displaced socket ends, the session stays online on the new one and messages reach it.
#[tokio::test(flavor = "multi_thread")]
async fn a_session_taken_over_stays_online_when_the_displaced_socket_ends() {
    let (broker, alice, bob) = setup(&[]);
    let key = SignKeyPair::generate();
    let first = session_of(&bob, key.clone())
        .await
        .expect("bob's session says hello");
    let second = session_of(&bob, key.clone())
        .await
        .expect("the same session opened again");
    first.close().await;
    // Once the broker has counted the first socket gone, it has handled its end.
    eventually("the displaced socket's end to be handled", || async {
        metric(&broker, "claudemesh_connections").await == Some(1.0)
    })
    .await;
    assert_eq!(
        metric(&broker, "claudemesh_peers").await,
        Some(1.0),
        "the session went offline with the socket it had left"
    );
    let out = alice.run(&["send", &key.public_hex(), "to the new socket"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let push = next_message(&second, WAIT)
        .await
        .expect("the message reaches the session on its new socket");
    assert_eq!(second.decrypt(&push).as_deref(), Ok("to the new socket"));
}

/// A session key proven by a session hello is remembered, also across a restart: while that
/// session is away, a message to its key is kept for it (not refused as "no member or session"),
/// and the session gets it when it says hello again with the same key.
#[tokio::test(flavor = "multi_thread")]
async fn a_message_to_a_session_that_has_gone_waits_for_its_next_hello() {
    let (mut broker, alice, bob) = setup(&[]);
    let key = SignKeyPair::generate();
    session_of(&bob, key.clone())
        .await
        .expect("bob's session says hello")
        .close()
        .await;
    wait_no_peers(&broker).await;
    broker.restart();

    let out = alice.run(&["send", &key.public_hex(), "while you were out"]);
    assert_eq!(out.code, 0, "a send to the away session: {}", out.stderr);
    let back = session_of(&bob, key.clone())
        .await
        .expect("the session comes back");
    let push = next_message(&back, WAIT)
        .await
        .expect("the message waited for the session");
    assert_eq!(push.target_spec.as_deref(), Some(key.public_hex().as_str()));
    assert_eq!(back.decrypt(&push).as_deref(), Ok("while you were out"));
}
