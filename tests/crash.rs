//! Crash safety (DESIGN.md, delivery contract): peers keep sending while the broker is killed
//! with SIGKILL again and again. Every message whose sender got `ack{queued:true}` reaches its
//! recipient afterwards, under one `messageId`, whether the recipient was connected through the
//! crashes or offline the whole time; a connected recipient gets a message again only when a
//! crash ate its acknowledgement.

use crate::common;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use claudemesh::client::{MeshClient, Target};
use claudemesh::protocol::ServerMessage;
use common::*;

/// Broker kills in one run.
const KILLS: usize = 4;
/// Concurrent send loops per sender (each waits for its ack before the next send).
const LOOPS_PER_SENDER: usize = 2;
/// Acknowledged sends each sender must see after a (re)start before the next kill, so every
/// crash lands in the middle of traffic.
const ACKS_PER_ROUND: usize = 25;

/// What became of one send.
#[derive(Debug, Clone)]
enum Outcome {
    /// `ack{queued:true}` with this message id.
    Acked(String),
    /// `ack{queued:false}` (e.g. the store refused); never counted as sent.
    Refused(String),
    /// The connection died (or was down) before an ack came.
    Unacked,
}

/// One send attempt: its `client_message_id` (also its text), recipient and outcome.
#[derive(Debug, Clone)]
struct Attempt {
    cmid: String,
    to: &'static str,
    outcome: Outcome,
}

/// Sends to bob and dave in turn until `stop`, recording every attempt. With `retry`, a send
/// that got no ack is sent again with the same `client_message_id` until it is acknowledged.
async fn send_loop(
    client: Arc<MeshClient>,
    name: String,
    targets: [(&'static str, Target); 2],
    retry: bool,
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicUsize>,
) -> Vec<Attempt> {
    let mut attempts = Vec::new();
    let mut n = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let (to, target) = &targets[n % 2];
        let cmid = format!("{name}-{n}");
        // The text is the client_message_id, so what arrives can be matched to what was sent.
        let outcome = match client
            .send_text(target, &cmid, "now", Some(cmid.clone()))
            .await
        {
            Ok(ack) if ack.queued == Some(true) => {
                acked.fetch_add(1, Ordering::Relaxed);
                Outcome::Acked(ack.message_id.unwrap_or_default())
            }
            Ok(ack) => Outcome::Refused(ack.error.unwrap_or_default()),
            Err(_) => Outcome::Unacked,
        };
        if matches!(outcome, Outcome::Unacked) && retry {
            // Same n: the same client_message_id again.
        } else {
            n += 1;
        }
        if !matches!(outcome, Outcome::Acked(_)) {
            // The broker is down or restarting: do not spin.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        attempts.push(Attempt { cmid, to, outcome });
    }
    attempts
}

/// What one recipient got: message id → (text, client_message_id).
type Received = Arc<Mutex<HashMap<String, (String, Option<String>)>>>;
/// How many times each message id was pushed to a recipient.
type Copies = Arc<Mutex<HashMap<String, usize>>>;

/// Messages a crash can catch pushed to bob but not yet acknowledged on disk: the sends in
/// flight (each loop waits for its ack) and acks still in the writer's batch, with room.
const UNACKED_AT_A_CRASH: usize = 16;

/// Records and acknowledges every message pushed to `client` (a live, reconnecting recipient),
/// counting the copies of each.
async fn receive_loop(client: Arc<MeshClient>, received: Received, copies: Copies) {
    while let Some(msg) = client.next_push().await {
        let ServerMessage::Push(push) = msg else {
            continue;
        };
        if push.subtype.as_deref() == Some("system") {
            continue;
        }
        let text = client.decrypt(&push).expect("a pushed message decrypts");
        let _ = client.ack(&push.message_id);
        *copies
            .lock()
            .unwrap()
            .entry(push.message_id.clone())
            .or_default() += 1;
        received.lock().unwrap().insert(
            push.message_id.clone(),
            (text, push.client_message_id.clone()),
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn acknowledged_messages_survive_repeated_kill_9() {
    let mut broker = BrokerProc::start(&["--redeliver-after", "2s"]);
    let (alice, bob) = alice_and_bob(&broker);
    let carol = Person::new("carol");
    let dave = Person::new("dave");
    for p in [&carol, &dave] {
        let (_, url) = invite(&alice, &[]);
        join(p, &url);
    }
    let to = |p: &Person| Target {
        label: p.name.clone(),
        spec: p.entry().member_pubkey,
    };
    let targets = [("bob", to(&bob)), ("dave", to(&dave))];

    // bob stays connected (reconnecting after each crash) and acknowledges what he gets;
    // dave is offline throughout and reads his inbox at the end.
    let bob_client = Arc::new(bob.reconnecting_client().await);
    let bob_got: Received = Arc::default();
    let bob_copies: Copies = Arc::default();
    let bob_reader = tokio::spawn(receive_loop(
        bob_client.clone(),
        bob_got.clone(),
        bob_copies.clone(),
    ));

    let stop = Arc::new(AtomicBool::new(false));
    let mut acked_counts = Vec::new();
    let mut loops = Vec::new();
    let mut senders = Vec::new();
    // alice gives up on a send that got no ack; carol sends it again (same client_message_id)
    // until it is acknowledged, which must not make a second copy.
    for (person, retry) in [(&alice, false), (&carol, true)] {
        let client = Arc::new(person.reconnecting_client().await);
        let acked = Arc::new(AtomicUsize::new(0));
        for i in 0..LOOPS_PER_SENDER {
            loops.push(tokio::spawn(send_loop(
                client.clone(),
                format!("{}{i}", person.name),
                targets.clone(),
                retry,
                stop.clone(),
                acked.clone(),
            )));
        }
        acked_counts.push(acked);
        senders.push(client);
    }

    // Each round: wait until every sender has had acks from the current broker, then kill it
    // mid-traffic and start it again on the same data dir and port.
    let acks_now = || -> Vec<usize> {
        acked_counts
            .iter()
            .map(|a| a.load(Ordering::Relaxed))
            .collect()
    };
    for round in 0..=KILLS {
        let before = acks_now();
        eventually(
            &format!("every sender to be acknowledged in round {round}"),
            || {
                let now = acks_now();
                let before = before.clone();
                async move {
                    now.iter()
                        .zip(&before)
                        .all(|(n, b)| n - b >= ACKS_PER_ROUND)
                }
            },
        )
        .await;
        if round < KILLS {
            broker.kill9();
            broker.restart();
        }
    }
    stop.store(true, Ordering::Relaxed);
    let mut attempts: Vec<Attempt> = Vec::new();
    for l in loops {
        attempts.extend(l.await.expect("send loop"));
    }

    let acked: Vec<(&Attempt, &str)> = attempts
        .iter()
        .filter_map(|a| match &a.outcome {
            Outcome::Acked(id) => Some((a, id.as_str())),
            _ => None,
        })
        .collect();
    let unacked = attempts
        .iter()
        .filter(|a| matches!(a.outcome, Outcome::Unacked))
        .count();
    let refused: Vec<&str> = attempts
        .iter()
        .filter_map(|a| match &a.outcome {
            Outcome::Refused(e) => Some(e.as_str()),
            _ => None,
        })
        .collect();
    assert!(
        acked.iter().all(|(_, id)| !id.is_empty()),
        "an ack{{queued:true}} without a messageId"
    );

    // bob: whatever is still queued is pushed once he asks; wait for every acked message.
    bob_client.drain().await.expect("bob drains");
    let for_bob: HashMap<&str, &str> = acked
        .iter()
        .filter(|(a, _)| a.to == "bob")
        .map(|(a, id)| (*id, a.cmid.as_str()))
        .collect();
    eventually(
        "bob to have every message acknowledged to its sender",
        || {
            let got = bob_got.lock().unwrap();
            let done = for_bob.keys().all(|id| got.contains_key(*id));
            async move { done }
        },
    )
    .await;
    let bob_got: HashMap<String, (String, Option<String>)> = bob_got.lock().unwrap().clone();

    // A copy comes again only when a crash ate its acknowledgement: once everything is
    // acknowledged the pushes stop (two redelivery periods of quiet), there are few repeats in
    // all, and none more often than there were crashes.
    let mut copies = bob_copies.lock().unwrap().clone();
    let mut quiet = false;
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_secs(4)).await;
        let now = bob_copies.lock().unwrap().clone();
        quiet = now == copies;
        copies = now;
        if quiet {
            break;
        }
    }
    assert!(quiet, "acknowledged messages kept being pushed again");
    let repeats: usize = copies.values().map(|n| n - 1).sum();
    eprintln!("bob: {repeats} copies pushed again after crashes");
    assert!(
        repeats <= KILLS * UNACKED_AT_A_CRASH,
        "bob got {repeats} repeated pushes over {KILLS} crashes"
    );
    if let Some((id, n)) = copies.iter().find(|(_, n)| **n > 1 + KILLS) {
        panic!("bob got {id} {n} times over {KILLS} crashes");
    }

    // dave: everything waiting for him, through the CLI.
    let out = dave.run(&["inbox", "--json"]);
    assert_eq!(out.code, 0, "dave's inbox: {}", out.stderr);
    let mut dave_got: HashMap<String, (String, Option<String>)> = HashMap::new();
    for line in out.stdout.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("inbox prints JSON lines");
        let id = v["messageId"].as_str().expect("messageId").to_string();
        let text = v["text"].as_str().expect("text").to_string();
        assert!(
            dave_got.insert(id.clone(), (text, None)).is_none(),
            "inbox printed {id} twice"
        );
    }

    for (who, got) in [("bob", &bob_got), ("dave", &dave_got)] {
        // client_message_id → the message id its sender was given, if any attempt was acked.
        let mut sent_to: HashMap<&str, Option<&str>> = HashMap::new();
        for a in attempts.iter().filter(|a| a.to == who) {
            let entry = sent_to.entry(a.cmid.as_str()).or_default();
            if let Outcome::Acked(id) = &a.outcome {
                assert!(entry.is_none(), "{} was acknowledged twice", a.cmid);
                *entry = Some(id.as_str());
            }
        }
        // Every acknowledged message arrived, under the id its sender was given, unaltered.
        for (cmid, id) in sent_to.iter().filter_map(|(c, id)| Some((c, (*id)?))) {
            let (text, _) = got.get(id).unwrap_or_else(|| {
                panic!("{who} never got {cmid} ({id}), acknowledged to its sender")
            });
            assert_eq!(text, cmid, "{who}: message {id} arrived altered");
        }
        // Nothing arrived that nobody sent, and no message was stored twice under two ids
        // (not even when carol sent it again after a crash had eaten the ack).
        let mut ids_per_text: HashMap<&str, HashSet<&str>> = HashMap::new();
        for (id, (text, cmid)) in got {
            assert!(
                sent_to.contains_key(text.as_str()),
                "{who} got {text:?} ({id}), which was never sent to {who}"
            );
            if let Some(cmid) = cmid {
                assert_eq!(cmid, text, "{who}: {id} carries another client_message_id");
            }
            ids_per_text.entry(text).or_default().insert(id);
        }
        for (text, ids) in &ids_per_text {
            assert_eq!(
                ids.len(),
                1,
                "{who} got {text:?} under several ids: {ids:?}"
            );
        }
        // What arrived without an ack to its sender must be a send cut off by a crash after its
        // commit: stored, so a retry with its client_message_id cannot make a second copy.
        let extra: Vec<&String> = got
            .iter()
            .filter(|(_, (text, _))| sent_to[text.as_str()].is_none())
            .map(|(id, _)| id)
            .collect();
        let mut phantoms = Vec::new();
        for id in &extra {
            if bob_client.message_status(id).await.is_err() {
                phantoms.push(*id);
            }
        }
        assert!(
            phantoms.is_empty(),
            "{who} got messages that were never stored (a crash lost them; their senders got no ack): {phantoms:?}"
        );
        eprintln!(
            "{who}: {} acknowledged messages all delivered once; {} sends cut off after their commit arrived too",
            sent_to.values().filter(|id| id.is_some()).count(),
            extra.len(),
        );
    }
    eprintln!(
        "{} sends over {KILLS} kills: {} acknowledged, {unacked} cut off, {} refused {:?}",
        attempts.len(),
        acked.len(),
        refused.len(),
        refused.iter().take(3).collect::<Vec<_>>()
    );

    bob_reader.abort();
    for s in senders {
        if let Ok(s) = Arc::try_unwrap(s) {
            s.close().await;
        }
    }
}
