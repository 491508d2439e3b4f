//! Wire fidelity with the original claudemesh CLI (1.37): frames shaped as it sends them (a
//! member `hello` with a fresh `sessionPubkey`, direct bodies sealed with that session key,
//! `set_state` without `_reqId`, `set_stats`, broadcasts in `bodyVersion` 1), from a raw
//! WebSocket client against the real broker, asserting what the original client would see —
//! and that our own CLI reads what it sends.

use crate::common;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use claudemesh::crypto::{self, SignKeyPair};
use claudemesh::identity::MeshEntry;
use claudemesh::protocol::Pubkey;
use common::*;

/// A connection as the original CLI opens one: a member hello with a fresh session key, no
/// `peerRole`, and direct bodies sealed with that session key.
struct Original {
    ws: Ws,
    session: SignKeyPair,
}

fn original_hello(entry: &MeshEntry, session_pubkey: &str) -> Value {
    let mut v = json!({
        "type": "hello",
        "meshId": entry.mesh_id,
        "memberId": entry.member_id,
        "pubkey": entry.member_pubkey,
        "sessionPubkey": session_pubkey,
        "displayName": entry.display_name,
        "sessionId": format!("original-{}", unique_now_ms()),
        "pid": 4242,
        "cwd": "/home/user/project",
        "timestamp": unique_now_ms(),
    });
    sign_member_hello(&mut v, &entry.member_keys().expect("member key"));
    v
}

impl Original {
    async fn connect(broker: &BrokerProc, person: &Person) -> Original {
        let session = SignKeyPair::generate();
        let (ws, _) = ws_hello(
            broker,
            &original_hello(&person.entry(), &session.public_hex()),
        )
        .await;
        Original { ws, session }
    }

    fn key(&self) -> String {
        self.session.public_hex()
    }

    /// A direct `send` sealed with the session key, as the original's direct path sends it.
    async fn send_direct(&mut self, to: &str, text: &str) -> Value {
        let to = Pubkey::parse(to).expect("a pubkey");
        let their = crypto::ed25519_pk_to_x25519(&to.0).expect("x25519 of the target");
        let nonce: [u8; 24] = crypto::random_bytes();
        let body = crypto::box_easy(
            text.as_bytes(),
            &nonce,
            &their,
            &self.session.to_x25519().secret,
        )
        .expect("crypto_box");
        self.send(json!({
            "type": "send",
            "id": format!("o-{}", unique_now_ms()),
            "targetSpec": to.to_hex(),
            "priority": "now",
            "nonce": STANDARD.encode(nonce),
            "ciphertext": STANDARD.encode(body),
        }))
        .await
    }

    /// A broadcast or group `send` as the original writes it: base64 plaintext, bodyVersion 1.
    async fn send_plain(&mut self, to: &str, text: &str) -> Value {
        self.send(json!({
            "type": "send",
            "id": format!("o-{}", unique_now_ms()),
            "targetSpec": to,
            "priority": "now",
            "nonce": "",
            "ciphertext": STANDARD.encode(text),
            "bodyVersion": 1,
        }))
        .await
    }

    async fn send(&mut self, frame: Value) -> Value {
        ws_send(&mut self.ws, &frame).await;
        let ack = ws_recv_reply(&mut self.ws).await;
        assert_eq!(ack["type"], "ack", "send answered with {ack}");
        assert_eq!(ack["queued"], true, "send refused: {ack}");
        // The original correlates a send's ack by the send's `id`, not `_reqId`.
        assert_eq!(ack["id"], frame["id"], "the ack must name the send: {ack}");
        ack
    }

    /// The next message push (system events skipped).
    async fn next_message(&mut self) -> Value {
        loop {
            let v = ws_recv(&mut self.ws).await;
            if v["type"] == "push" && v["subtype"] != "system" {
                return v;
            }
        }
    }

    /// Opens a direct push sealed to this session key.
    fn open_direct(&self, push: &Value) -> String {
        let sender = Pubkey::parse(push["senderPubkey"].as_str().unwrap()).expect("sender key");
        let their = crypto::ed25519_pk_to_x25519(&sender.0).unwrap();
        let nonce: [u8; 24] = STANDARD
            .decode(push["nonce"].as_str().unwrap())
            .unwrap()
            .try_into()
            .expect("a 24-byte nonce");
        let body = STANDARD
            .decode(push["ciphertext"].as_str().unwrap())
            .unwrap();
        let plain = crypto::box_open_easy(&body, &nonce, &their, &self.session.to_x25519().secret)
            .expect("sealed to the session key");
        String::from_utf8(plain).unwrap()
    }
}

/// What a bodyVersion-1 reader makes of a push: base64 of the text.
fn plain_body(push: &Value) -> String {
    let body = STANDARD
        .decode(push["ciphertext"].as_str().unwrap_or_default())
        .expect("base64");
    String::from_utf8_lossy(&body).into_owned()
}

/// The messages `person`'s `claudemesh inbox --json` prints.
fn inbox(person: &Person) -> Vec<Value> {
    let out = person.run(&["inbox", "--json"]);
    assert_eq!(out.code, 0, "inbox failed: {}", out.stderr);
    out.stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[tokio::test]
async fn a_direct_message_sealed_with_the_session_key_is_read_and_answered() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    let mut original = Original::connect(&broker, &alice).await;

    let bob_key = bob.entry().member_pubkey;
    original
        .send_direct(&bob_key, "hello from the original CLI")
        .await;
    let got = inbox(&bob);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["text"], "hello from the original CLI");
    assert_eq!(
        got[0]["fromPubkey"],
        original.key(),
        "senderPubkey is the session key"
    );

    // bob answers the key the message came from; the original connection, which never sends
    // `drain`, gets it live and opens it with its session key.
    let out = bob.run(&["send", &original.key(), "got it"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let push = original.next_message().await;
    assert_eq!(push["senderPubkey"], bob_key);
    assert_eq!(push["targetSpec"], original.key());
    assert_eq!(original.open_direct(&push), "got it");
}

#[tokio::test]
async fn a_reminder_to_ones_own_session_key_fires() {
    let broker = BrokerProc::start(&[]);
    let (alice, _bob) = alice_and_bob(&broker);
    let mut original = Original::connect(&broker, &alice).await;
    let to = original.key();
    ws_send(
        &mut original.ws,
        &json!({
            "type": "schedule",
            "_reqId": "r1",
            "to": to,
            "message": "stand up",
            "deliverAt": claudemesh::protocol::time::now_ms() + 1_000,
        }),
    )
    .await;
    let ack = ws_recv_reply(&mut original.ws).await;
    assert_eq!(ack["type"], "scheduled_ack", "{ack}");
    let push = original.next_message().await;
    assert_eq!(push["subtype"], "reminder", "{push}");
    assert_eq!(push["targetSpec"], to);
    assert_eq!(plain_body(&push), "stand up");
}

#[tokio::test]
async fn frames_without_req_id_get_no_stray_answers() {
    let broker = BrokerProc::start(&[]);
    let (alice, _bob) = alice_and_bob(&broker);
    let mut original = Original::connect(&broker, &alice).await;
    let ws = &mut original.ws;

    // `set_state` without `_reqId`, then the minutely `set_stats` (kept, answered only when
    // asked), then the key-minting request and a request of the original's that has an answer.
    ws_send(
        ws,
        &json!({"type": "set_state", "key": "build", "value": "green"}),
    )
    .await;
    ws_send(
        ws,
        &json!({"type": "set_stats", "stats": {"messagesIn": 3, "messagesOut": 1, "uptime": 60}}),
    )
    .await;
    ws_send(
        ws,
        &json!({"type": "apikey_create", "_reqId": "k1", "label": "cli"}),
    )
    .await;
    ws_send(
        ws,
        &json!({"type": "get_state", "_reqId": "g1", "key": "build"}),
    )
    .await;
    ws_send(ws, &json!({"type": "frobnicate", "_reqId": "x1"})).await;

    // Three answers, each under its own `_reqId` (the original matches them so): nothing for
    // the set_state (no `state_result` its next `get_state` would take for its own), nothing
    // for set_stats.
    let mut answers = std::collections::BTreeMap::new();
    while answers.len() < 3 {
        let v = ws_recv_reply(ws).await;
        let id = v["_reqId"].as_str().unwrap_or_default().to_string();
        assert!(
            ["k1", "g1", "x1"].contains(&id.as_str()),
            "an answer nobody asked for: {v}"
        );
        assert!(answers.insert(id, v).is_none(), "answered twice");
    }
    // The key request is refused at once …
    let refused = &answers["k1"];
    assert_eq!(refused["type"], "error", "{refused}");
    assert_eq!(refused["code"], "not_supported", "{refused}");
    // … the get_state reads what the set_state wrote …
    let state = &answers["g1"];
    assert_eq!(state["type"], "state_result", "{state}");
    assert_eq!(state["value"], "green");
    // … and an unknown type that asks for an answer gets one.
    let unknown = &answers["x1"];
    assert_eq!(unknown["type"], "error", "{unknown}");
    assert_eq!(unknown["code"], "unknown_message_type");
    // Nothing was ignored: set_stats is a known frame now (issue 13).
    assert_eq!(
        metric(&broker, "claudemesh_frames_ignored_total")
            .await
            .unwrap_or(0.0),
        0.0
    );
}

#[tokio::test]
async fn original_connections_are_control_plane_and_still_hear_live_pushes() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    // bob's agent session, which would see peer_joined / peer_left and ghost rows.
    let bob_session = SignKeyPair::generate();
    let (mut bob_ws, _) = ws_hello(&broker, &session_hello(&bob.entry(), &bob_session)).await;

    let mut calls = Vec::new();
    for _ in 0..3 {
        calls.push(Original::connect(&broker, &alice).await);
    }
    ws_send(&mut bob_ws, &json!({"type": "list_peers", "_reqId": "p1"})).await;
    let mut events = Vec::new();
    let peers = loop {
        let v = ws_recv(&mut bob_ws).await;
        if v["type"] == "push" {
            events.push(v);
        } else {
            break v;
        }
    };
    assert!(
        events.is_empty(),
        "no peer_joined for tool connections: {events:?}"
    );
    let rows = peers["peers"].as_array().expect("peers");
    assert_eq!(rows.len(), 1, "only bob's own session is listed: {peers}");
    assert_eq!(
        rows[0]["role"], "session",
        "peers carry the original's `role`"
    );
    assert_eq!(rows[0]["peerRole"], "session");
    let info = bob.json(&["info", "--json"]);
    assert_eq!(info["peers"], 1, "only bob's session is online: {info}");

    // Still a member connection that gets what is sent to its member, live, without `drain`.
    let out = bob.run(&["send", "alice", "to alice's CLI"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let push = calls[0].next_message().await;
    assert_eq!(push["targetSpec"], alice.entry().member_pubkey);

    // Gone at once when they close: no lingering rows, no peer_left.
    drop(calls);
    ws_send(&mut bob_ws, &json!({"type": "list_peers", "_reqId": "p2"})).await;
    let again = loop {
        let v = ws_recv(&mut bob_ws).await;
        if v["type"] == "push" {
            assert_ne!(
                v["subtype"], "system",
                "no peer_left for tool connections: {v}"
            );
        } else {
            break v;
        }
    };
    assert_eq!(again["peers"].as_array().map(Vec::len), Some(1), "{again}");
}

#[tokio::test]
async fn a_broadcast_in_body_version_1_reaches_our_cli() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    let mut original = Original::connect(&broker, &alice).await;
    original.send_plain("*", "all hands at noon").await;
    let got = inbox(&bob);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["text"], "all hands at noon");
}

#[tokio::test]
async fn a_mesh_for_original_clients_writes_group_bodies_they_can_read() {
    let broker = BrokerProc::start(&[]);
    let alice = Person::new("alice");
    let bob = Person::new("bob");
    let token = broker.admin_token();
    let out = alice.run(&[
        "create",
        "mixed",
        "--broker",
        &broker.ws_url(),
        "--admin-token",
        &token,
        "--group-bodies",
        "plain",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let (_, url) = invite(&alice, &[]);
    join(&bob, &url);
    let info = alice.json(&["info", "--json"]);
    assert_eq!(info["groupBodies"], "plain", "{info}");
    let text = alice.run(&["info"]);
    assert!(text.stdout.contains("plain"), "{}", text.stdout);

    let mut original = Original::connect(&broker, &bob).await;
    let out = alice.run(&["send", "*", "deploy at five"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let push = original.next_message().await;
    assert_ne!(push["bodyVersion"], 2, "{push}");
    assert_eq!(plain_body(&push), "deploy at five");
    // Reminders to everyone too.
    let out = alice.run(&["remind", "standup", "--in", "1s", "--to", "*"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let push = original.next_message().await;
    assert_eq!(push["subtype"], "reminder", "{push}");
    assert_eq!(plain_body(&push), "standup");
    // Direct messages stay sealed end to end.
    let secret = "a-direct-message-stays-sealed-5d1f";
    let out = bob.run(&["send", "alice", secret]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_broker_never_saw(&broker, secret.as_bytes());
    assert!(
        inbox(&alice).iter().any(|m| m["text"] == secret),
        "alice reads it"
    );

    // The broker takes the setting only with the owner key's signature over it, which no
    // member (nor the broker) can make: a member's own connection cannot flip it.
    let (mut ws, _) = ws_hello(&broker, &member_hello(&bob.entry())).await;
    ws_send(
        &mut ws,
        &json!({"type": "set_mesh_settings", "_reqId": "s1", "groupBodies": "sealed"}),
    )
    .await;
    ws_expect_error(&mut ws, "bad_signature").await;
    // The owner's signature over "plain" is public (every member reads the settings)...
    ws_send(
        &mut ws,
        &json!({"type": "set_mesh_settings", "_reqId": "s0"}),
    )
    .await;
    let plain = ws_recv_reply(&mut ws).await;
    assert_eq!(plain["groupBodies"], "plain", "{plain}");
    assert!(plain["groupBodiesSignature"].is_string(), "{plain}");
    // Only the owner changes it; back to sealed, a reader of bodyVersion 1 no longer can.
    let refused = bob.run(&["settings", "group-bodies", "sealed"]);
    assert_ne!(
        refused.code, 0,
        "a member may not change the mesh's settings"
    );
    assert!(refused.stderr.contains("owner"), "{}", refused.stderr);
    let out = alice.run(&["settings", "group-bodies", "sealed"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    // ... so a member replaying it to turn sealing off is refused: only the owner's own
    // connection may change the setting.
    let replay = json!({
        "type": "set_mesh_settings",
        "_reqId": "s2",
        "groupBodies": "plain",
        "groupBodiesSignature": plain["groupBodiesSignature"],
        "groupBodiesSignedAt": plain["groupBodiesSignedAt"],
    });
    ws_send(&mut ws, &replay).await;
    ws_expect_error(&mut ws, "forbidden").await;
    // Nor may the owner's own connection play it back (a stolen session holds no owner key):
    // only a signature newer than the current one changes the setting.
    let (mut owner_ws, _) = ws_hello(&broker, &member_hello(&alice.entry())).await;
    ws_send(&mut owner_ws, &replay).await;
    ws_expect_error(&mut owner_ws, "stale_signature").await;
    let out = alice.run(&["send", "*", "sealed again"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let push = original.next_message().await;
    assert_eq!(push["bodyVersion"], 2, "{push}");
    assert_ne!(plain_body(&push), "sealed again");
    // Our own CLI reads both.
    drop(original);
    let texts: Vec<Value> = inbox(&bob).into_iter().map(|m| m["text"].clone()).collect();
    assert_eq!(
        texts,
        vec![
            json!("deploy at five"),
            json!("standup"),
            json!("sealed again")
        ]
    );
}

#[tokio::test]
async fn a_session_key_in_a_member_hello_cannot_be_another_members() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    // bob's member key.
    let hello = original_hello(&alice.entry(), &bob.entry().member_pubkey);
    ws_refused(&broker, &hello, "bad_session_pubkey", 1008).await;
    // A key bob's live connection goes by.
    let bobs = Original::connect(&broker, &bob).await;
    let hello = original_hello(&alice.entry(), &bobs.key());
    ws_refused(&broker, &hello, "bad_session_pubkey", 1008).await;
    // A session key bob proved with a session hello, even once that session has gone.
    let session = SignKeyPair::generate();
    let (ws, _) = ws_hello(&broker, &session_hello(&bob.entry(), &session)).await;
    drop(ws);
    let hello = original_hello(&alice.entry(), &session.public_hex());
    ws_refused(&broker, &hello, "bad_session_pubkey", 1008).await;
}

#[tokio::test]
async fn refusals_are_in_the_broker_log_without_secrets() {
    let broker = BrokerProc::start(&[]);
    let (alice, _bob) = alice_and_bob(&broker);
    let mut original = Original::connect(&broker, &alice).await;
    let nobody = SignKeyPair::generate().public_hex();
    ws_send(
        &mut original.ws,
        &json!({"type": "send", "id": "s1", "targetSpec": nobody, "priority": "now",
                "nonce": "", "ciphertext": ""}),
    )
    .await;
    let ack = ws_recv_reply(&mut original.ws).await;
    assert_eq!(
        (&ack["queued"], &ack["id"]),
        (&json!(false), &json!("s1")),
        "{ack}"
    );
    // A reason that quotes what was sent cannot forge a log line.
    ws_send(
        &mut original.ws,
        &json!({"type": "send", "id": "s2", "targetSpec": "*", "priority": "now\nINJECTED line",
                "nonce": "", "ciphertext": ""}),
    )
    .await;
    let ack = ws_recv_reply(&mut original.ws).await;
    assert_eq!(ack["queued"], false, "{ack}");
    let resp = http_post(&format!("{}/meshes", broker.http_url()), "{}").await;
    assert_eq!(resp.status, 401);
    let secret_code = "Zq8secretInviteCode";
    let resp = http_post(
        &format!("{}/invites/{secret_code}/claim", broker.http_url()),
        "{}",
    )
    .await;
    assert!(!resp.is_success());

    eventually("the refusals are logged", || async {
        let log = broker.stderr_lines().join("\n");
        log.contains("refused send from alice")
            && log.contains("unknown_target")
            && log.contains("refused POST /meshes")
            && log.contains("unauthorized")
            && log.contains("refused POST /invites/…")
            && log.contains("INJECTED")
    })
    .await;
    let lines = broker.stderr_lines();
    assert!(
        !lines.iter().any(|l| l.starts_with("INJECTED")),
        "a newline in a refused frame made a log line: {lines:?}"
    );
    assert!(
        !lines.join("\n").contains(secret_code),
        "an invite code reached the log"
    );
}

/// The original broker leaves `targetSpec` off queued pushes. Our client then tells a direct
/// body (crypto_box) from a group one (bodyVersion 2) by the push alone, and reads both.
#[tokio::test(flavor = "multi_thread")]
async fn pushes_without_a_target_spec_as_the_original_broker_sends_them_are_read() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    let live = bob.client().await;
    let entry = bob.entry();
    let ring = claudemesh::client::KeyRing::from_entry(&entry);
    for (to, text) in [
        ("bob", "direct, no target spec"),
        ("*", "broadcast, no target spec"),
    ] {
        alice.ok(&["send", to, text]);
        let mut push = next_push_where(&live, text, |p| p.subtype.is_none()).await;
        live.ack(&push.message_id).expect("ack");
        push.target_spec = None;
        assert_eq!(
            claudemesh::client::decrypt_push(&entry, &ring, None, &push).as_deref(),
            Ok(text),
            "{push:?}"
        );
    }
}

/// A system push carries every field the original client reads (PROTOCOL.md §4.3): a message
/// id, the mesh, `senderPubkey:"system"`, `priority:"low"`, an ISO `createdAt` of now,
/// `subtype:"system"`, the event and its data, and an empty nonce and ciphertext.
#[tokio::test]
async fn a_system_push_has_every_field_the_original_reads() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    let (mut alices, _) = ws_hello(
        &broker,
        &session_hello(&alice.entry(), &SignKeyPair::generate()),
    )
    .await;
    let before = claudemesh::protocol::time::now_ms();
    let (_bobs, _) = ws_hello(
        &broker,
        &session_hello(&bob.entry(), &SignKeyPair::generate()),
    )
    .await;
    let joined = async {
        loop {
            let v = ws_recv(&mut alices).await;
            if v["type"] == "push" && v["event"] == "peer_joined" {
                break v;
            }
        }
    };
    let push = tokio::time::timeout(WAIT, joined)
        .await
        .expect("a peer_joined push within the wait");
    let id = push["messageId"].as_str().unwrap_or_default();
    assert!(id.len() >= 8, "a message id: {push}");
    assert_eq!(push["meshId"], alice.entry().mesh_id, "{push}");
    assert_eq!(push["senderPubkey"], "system", "{push}");
    assert_eq!(push["priority"], "low", "{push}");
    assert_eq!(push["subtype"], "system", "{push}");
    assert_eq!(
        (&push["nonce"], &push["ciphertext"]),
        (&json!(""), &json!(""))
    );
    let at = push["createdAt"]
        .as_str()
        .and_then(claudemesh::protocol::time::parse_iso)
        .unwrap_or_else(|| panic!("createdAt is ISO-8601: {push}"));
    let after = claudemesh::protocol::time::now_ms();
    assert!(
        (before - 1_000..=after + 1_000).contains(&at),
        "createdAt is now: {push}"
    );
    assert_eq!(push["eventData"]["name"], "bob", "{push}");
    assert_eq!(
        push["eventData"]["pubkey"].as_str().map(str::len),
        Some(64),
        "{push}"
    );
}
