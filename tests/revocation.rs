//! Revocation against a member who keeps coming back (issue 10, item 9): hellos racing the
//! revocation, and frames already on their way, cannot leave the revoked member connected,
//! listed or able to send once the revocation has returned.

use crate::common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use common::*;
use serde_json::json;

use claudemesh::client::MeshClient;
use claudemesh::protocol::{ClientMessage, ServerMessage};

/// What the attacker saw after the revocation had returned.
#[derive(Default)]
struct AfterRevoke {
    /// Hellos sent after it.
    hellos: AtomicUsize,
    /// ...of which were accepted (must stay 0).
    hellos_accepted: AtomicUsize,
    /// Messages sent after it on a connection that was already in.
    sends: AtomicUsize,
    /// ...of which the broker queued (must stay 0).
    sends_queued: AtomicUsize,
}

/// Waits for the answer to a `send` on `ws`: true when the broker queued it.
async fn queued(ws: &mut Ws) -> bool {
    loop {
        match ws_next(ws).await {
            Frame::Json(v) if v["type"] == "ack" => return v["queued"] == true,
            Frame::Json(v) if v["type"] == "error" => return false,
            Frame::Json(_) | Frame::MsgPack(_) => continue,
            Frame::Close(..) | Frame::Ended => return false,
        }
    }
}

/// The answer to a hello: `hello_ack` or an error; `None` when the socket closed first.
async fn hello_answer(ws: &mut Ws) -> Option<serde_json::Value> {
    loop {
        match ws_next(ws).await {
            Frame::Json(v) | Frame::MsgPack(v) if v["type"] != "push" => return Some(v),
            Frame::Json(_) | Frame::MsgPack(_) => continue,
            Frame::Close(..) | Frame::Ended => return None,
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn hellos_racing_a_revocation_never_outlive_it() {
    let broker = BrokerProc::start(&[]);
    let mut bystanders = Bystanders::start(&broker).await;
    let (alice, bob) = alice_and_bob(&broker);
    let bob_entry = bob.entry();
    let alice_key = alice.entry().member_pubkey;
    let alice_client = alice.client().await;
    bystanders.exchange(3).await;

    // The attack: bob keeps 32 workers saying hello and sending as fast as they can, so that
    // hellos are being checked while the revocation commits.
    let revoked = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let admitted = Arc::new(AtomicUsize::new(0));
    let after = Arc::new(AfterRevoke::default());
    let mut workers = Vec::new();
    for w in 0..32 {
        let (revoked, stop, admitted, after) = (
            revoked.clone(),
            stop.clone(),
            admitted.clone(),
            after.clone(),
        );
        let (entry, url, alice_key) = (bob_entry.clone(), broker.ws_url(), alice_key.clone());
        workers.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                n += 1;
                let mut ws = ws_connect(&url).await;
                let hello = member_hello(&entry);
                let hello_after = revoked.load(Ordering::SeqCst);
                ws_send(&mut ws, &hello).await;
                let answer = hello_answer(&mut ws).await;
                if hello_after {
                    after.hellos.fetch_add(1, Ordering::SeqCst);
                }
                match answer {
                    Some(v) if v["type"] == "hello_ack" => {}
                    Some(v) => {
                        assert_eq!(v["code"], "revoked", "{v}");
                        assert_eq!(ws_recv_close(&mut ws).await.0, 4002);
                        continue;
                    }
                    None => continue, // cut off by the revocation right after its ack
                }
                if hello_after {
                    after.hellos_accepted.fetch_add(1, Ordering::SeqCst);
                }
                admitted.fetch_add(1, Ordering::SeqCst);
                // In: send until the connection is cut off.
                loop {
                    let send_after = revoked.load(Ordering::SeqCst);
                    let frame = json!({
                        "type": "send", "id": format!("w{w}-{n}"), "targetSpec": alice_key,
                        "priority": "now", "nonce": "AAAA", "ciphertext": "AAAA",
                    });
                    use futures_util::SinkExt;
                    let sent = ws
                        .send(tokio_tungstenite::tungstenite::Message::text(
                            frame.to_string(),
                        ))
                        .await;
                    if sent.is_err() {
                        break;
                    }
                    let ok = queued(&mut ws).await;
                    if send_after {
                        after.sends.fetch_add(1, Ordering::SeqCst);
                        if ok {
                            after.sends_queued.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                    if !ok || stop.load(Ordering::SeqCst) {
                        break;
                    }
                }
            }
        }));
    }
    eventually("bob's workers to be in", || async {
        admitted.load(Ordering::SeqCst) >= 64
    })
    .await;

    let reply = alice_client
        .request(ClientMessage::RevokeMember {
            member: bob_entry.member_id.clone(),
        })
        .await
        .expect("alice revokes bob");
    assert!(matches!(reply, ServerMessage::Ack(_)), "{reply:?}");
    revoked.store(true, Ordering::SeqCst);

    // Right away: no presence of bob is listed, live or lingering.
    let listed = alice_client.list_peers(None).await.expect("peers");
    assert!(
        !listed
            .iter()
            .any(|p| p.member_pubkey == bob_entry.member_pubkey),
        "bob is still listed after his revocation: {listed:?}"
    );
    // Let every worker try again after the revocation, then stop them.
    eventually(
        "bob's workers to try again after the revocation",
        || async { after.hellos.load(Ordering::SeqCst) >= 32 },
    )
    .await;
    stop.store(true, Ordering::SeqCst);
    for w in workers {
        w.await.expect("a worker");
    }
    assert_eq!(
        after.hellos_accepted.load(Ordering::SeqCst),
        0,
        "hellos accepted after the revocation returned"
    );
    assert_eq!(
        after.sends_queued.load(Ordering::SeqCst),
        0,
        "messages from bob queued after his revocation returned (of {} sent)",
        after.sends.load(Ordering::SeqCst)
    );
    let listed = alice_client.list_peers(None).await.expect("peers");
    assert!(
        !listed
            .iter()
            .any(|p| p.member_pubkey == bob_entry.member_pubkey),
        "bob is listed again: {listed:?}"
    );
    let members = alice.json(&["members", "--json"]);
    assert!(
        !members.to_string().contains(&bob_entry.member_pubkey),
        "bob is still a member: {members}"
    );
    // A signed HTTP request of bob's is refused too.
    let body = br#"{"cwd":"/tmp/bob","status":"working"}"#;
    let keys = bob_entry.member_keys().unwrap();
    let headers = claudemesh::identity::sign_request(
        &keys,
        &bob_entry.mesh_id,
        "POST",
        "/hook/set-status",
        body,
    );
    let r = claudemesh::client::http::request(
        "POST",
        &format!("{}/hook/set-status", broker.http_url()),
        &headers,
        Some(body.to_vec()),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 403, "{:?}", r.json());
    assert_eq!(r.json()["error"], "revoked");
    bystanders.exchange(3).await;
}

/// A frame the member sent before its revocation commits before the revocation or not at all:
/// the revocation cuts the member off, lets what is running finish, and only then commits, so
/// the audit log shows nothing of the member's after `member.revoked` however fast it writes.
/// Three members in turn, since each round is a race.
#[tokio::test(flavor = "multi_thread")]
async fn frames_sent_before_a_revocation_commit_before_it_or_never() {
    let broker = BrokerProc::start(&[]);
    let alice = Person::new("alice");
    create_mesh(&broker, &alice, "team");
    let alice_client = alice.client().await;
    for name in ["bob", "carol", "dave"] {
        let member = Person::new(name);
        join(&member, &invite(&alice, &[]).1);
        writes_racing_a_revocation(&alice_client, &member, name).await;
    }
}

/// `member` writes state from 32 connections as fast as it can; `alice` revokes it; nothing of
/// it is audited after the revocation.
async fn writes_racing_a_revocation(alice: &MeshClient, member: &Person, name: &str) {
    let committed = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for w in 0..32 {
        let (client, committed) = (member.client().await, committed.clone());
        workers.push(tokio::spawn(async move {
            for n in 0.. {
                if client.set_state(&format!("w{w}"), json!(n)).await.is_err() {
                    break; // cut off
                }
                committed.fetch_add(1, Ordering::SeqCst);
            }
        }));
    }
    eventually("the member's writes to be committing", || async {
        committed.load(Ordering::SeqCst) >= 200
    })
    .await;
    let reply = alice
        .request(ClientMessage::RevokeMember {
            member: member.entry().member_id,
        })
        .await
        .expect("alice revokes the member");
    assert!(matches!(reply, ServerMessage::Ack(_)), "{reply:?}");
    for w in workers {
        tokio::time::timeout(std::time::Duration::from_secs(30), w)
            .await
            .expect("the member's writers are cut off")
            .expect("a writer");
    }
    let log = alice
        .audit_query(claudemesh::protocol::messages::AuditQuery {
            limit: Some(500),
            ..Default::default()
        })
        .await
        .expect("the audit log");
    // Newest first: the first revocation listed is this one.
    let revoked = log
        .entries
        .iter()
        .find(|e| e.event_type == "member.revoked")
        .expect("the revocation is audited");
    let after: Vec<_> = log
        .entries
        .iter()
        .filter(|e| e.id > revoked.id && e.actor == name)
        .map(|e| (e.id, e.event_type.as_str()))
        .collect();
    assert!(
        after.is_empty(),
        "{name}'s writes committed after the revocation (#{}): {after:?}",
        revoked.id
    );
    let before = log.entries.iter().filter(|e| e.actor == name).count();
    assert!(before > 0, "{name}'s writes are in the log");
}

/// The others see a revoked member's live session leave (`peer_left`), as when it closes.
#[tokio::test(flavor = "multi_thread")]
async fn the_others_see_a_revoked_members_session_leave() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    let alice_client = alice.client().await;
    let _bob_live = bob.client().await;
    let of_bob = |p: &claudemesh::protocol::messages::Push, event: &str| {
        p.event.as_deref() == Some(event)
            && p.event_data.as_ref().is_some_and(|d| d["name"] == "bob")
    };
    next_push_where(&alice_client, "bob's session joining", |p| {
        of_bob(p, "peer_joined")
    })
    .await;
    alice.ok(&["revoke", "bob"]);
    next_push_where(&alice_client, "bob's session leaving", |p| {
        of_bob(p, "peer_left")
    })
    .await;
}

/// A revoked member's scheduled messages die with its membership: they do not fire.
#[tokio::test(flavor = "multi_thread")]
async fn a_revoked_members_reminders_never_fire() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    // Room for the revocation (and its rotation) to land first on a slow machine.
    let out = bob.run(&["remind", "you were warned", "--in", "10s", "--to", "alice"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = alice.run(&["revoke", "bob"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    // Past the due time, with room for a slow scheduler: the broker drops it, and says so.
    broker
        .logged("the broker to drop bob's reminder", "its member is gone")
        .await;
    let out = alice.run(&["inbox", "--json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(!out.stdout.contains("you were warned"), "{}", out.stdout);
}

/// Waits for a message push on `ws`; fails if the session ended instead.
async fn still_receives(ws: &mut Ws, whose: &str) {
    loop {
        match ws_next(ws).await {
            Frame::Json(v) if v["type"] == "push" && v["subtype"] != "system" => return,
            Frame::Json(_) | Frame::MsgPack(_) => continue,
            other => panic!("{whose}'s session ended: {other:?}"),
        }
    }
}

/// A revocation that is refused cuts nobody off by being tried: a plain member revoking
/// another, an admin revoking the owner. The target's live session stays connected.
#[tokio::test]
async fn a_refused_revocation_cuts_nobody_off() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    let carol = invited(&alice, "carol");
    let dave = Person::new("dave");
    let (_, url) = invite(&alice, &["--role", "admin"]);
    join(&dave, &url);
    let session =
        |p: &Person| session_hello(&p.entry(), &claudemesh::crypto::SignKeyPair::generate());
    let (mut carol_ws, _) = ws_hello(&broker, &session(&carol)).await;
    let (mut alice_ws, _) = ws_hello(&broker, &session(&alice)).await;

    let out = bob.run(&["revoke", "carol"]);
    assert_ne!(out.code, 0, "a plain member may not revoke");
    assert!(out.stderr.contains("owner or an admin"), "{}", out.stderr);
    let out = dave.run(&["revoke", "alice"]);
    assert_ne!(out.code, 0, "nobody revokes the owner");
    assert!(
        out.stderr.contains("owner cannot be revoked"),
        "{}",
        out.stderr
    );

    // Both sessions were left alone: they still get what is sent to them.
    let out = dave.run(&["send", "carol,alice", "still here?"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    still_receives(&mut carol_ws, "carol").await;
    still_receives(&mut alice_ws, "alice").await;
}
