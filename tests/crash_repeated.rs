//! Crash safety under load (issue 14): many sends in flight at once from several senders while
//! the broker is killed with SIGKILL again and again. Every send is retried with its
//! `client_message_id` until it is acknowledged; afterwards every acknowledged message reaches
//! its recipient exactly once per `client_message_id` (one `messageId`, the one its sender was
//! given), whatever batching of sends and acknowledgements the broker does.

use crate::common;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use claudemesh::client::{MeshClient, Target};
use claudemesh::protocol::ServerMessage;
use common::*;

/// Broker kills in one run.
const KILLS: usize = 3;
/// Send loops per sender, each with one send in flight: many sends share a writer batch.
const LOOPS_PER_SENDER: usize = 16;
/// Acknowledged sends (all senders together) after a (re)start before the next kill.
const ACKS_PER_ROUND: usize = 200;

/// Sends to `target` until `stop`; a send without an ack is sent again with the same
/// `client_message_id` until it is acknowledged. Returns client_message_id → message id of
/// every acknowledged send.
async fn send_loop(
    client: Arc<MeshClient>,
    name: String,
    target: Target,
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicUsize>,
) -> HashMap<String, String> {
    let mut done = HashMap::new();
    let mut n = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let cmid = format!("{name}-{n}");
        match client
            .send_text(&target, &cmid, "now", Some(cmid.clone()))
            .await
        {
            Ok(ack) if ack.queued == Some(true) => {
                let id = ack.message_id.unwrap_or_default();
                assert!(!id.is_empty(), "ack{{queued:true}} without a messageId");
                assert!(
                    done.insert(cmid.clone(), id).is_none(),
                    "{cmid} acknowledged twice"
                );
                acked.fetch_add(1, Ordering::Relaxed);
                n += 1;
            }
            Ok(ack) => panic!("{cmid} refused: {:?}", ack.error),
            // The broker is down: same client_message_id again, without spinning.
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    done
}

/// message id → client_message_ids it arrived with (one per push).
type Received = Arc<Mutex<HashMap<String, Vec<String>>>>;

async fn receive_loop(client: Arc<MeshClient>, received: Received) {
    while let Some(msg) = client.next_push().await {
        let ServerMessage::Push(push) = msg else {
            continue;
        };
        if push.subtype.as_deref() == Some("system") {
            continue;
        }
        let text = client.decrypt(&push).expect("a pushed message decrypts");
        let _ = client.ack(&push.message_id);
        assert_eq!(
            push.client_message_id.as_deref(),
            Some(text.as_str()),
            "a push carries its client_message_id"
        );
        received
            .lock()
            .unwrap()
            .entry(push.message_id.clone())
            .or_default()
            .push(text);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_acknowledged_message_arrives_once_through_repeated_kill_9_under_load() {
    let mut broker = BrokerProc::start(&["--redeliver-after", "2s"]);
    let (alice, bob) = alice_and_bob(&broker);
    let carol = invited(&alice, "carol");
    let to_bob = Target {
        label: bob.name.clone(),
        spec: bob.entry().member_pubkey,
    };

    let bob_client = Arc::new(bob.reconnecting_client().await);
    let received: Received = Arc::default();
    let reader = tokio::spawn(receive_loop(bob_client.clone(), received.clone()));

    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicUsize::new(0));
    let mut loops = Vec::new();
    let mut senders = Vec::new();
    for person in [&alice, &carol] {
        let client = Arc::new(person.reconnecting_client().await);
        for i in 0..LOOPS_PER_SENDER {
            loops.push(tokio::spawn(send_loop(
                client.clone(),
                format!("{}{i}", person.name),
                to_bob.clone(),
                stop.clone(),
                acked.clone(),
            )));
        }
        senders.push(client);
    }

    for round in 0..=KILLS {
        let before = acked.load(Ordering::Relaxed);
        eventually(&format!("{ACKS_PER_ROUND} acks in round {round}"), || {
            let n = acked.load(Ordering::Relaxed);
            async move { n - before >= ACKS_PER_ROUND }
        })
        .await;
        if round < KILLS {
            broker.kill9();
            broker.restart();
        }
    }
    stop.store(true, Ordering::Relaxed);
    let mut sent: HashMap<String, String> = HashMap::new();
    for l in loops {
        sent.extend(l.await.expect("send loop"));
    }

    bob_client.drain().await.expect("bob drains");
    eventually("bob to have every acknowledged message", || {
        let got = received.lock().unwrap();
        let done = sent.values().all(|id| got.contains_key(id));
        async move { done }
    })
    .await;
    let got = received.lock().unwrap().clone();

    // Exactly once per client_message_id: one message id for it, the one its sender was given,
    // and every copy of that id carries it (a repeat push of one id is de-duplicated by id).
    let mut ids_per_cmid: HashMap<&str, HashSet<&str>> = HashMap::new();
    for (id, cmids) in &got {
        for cmid in cmids {
            assert_eq!(cmid, &cmids[0], "{id} arrived as two different messages");
        }
        ids_per_cmid.entry(&cmids[0]).or_default().insert(id);
    }
    for (cmid, id) in &sent {
        let ids = &ids_per_cmid[cmid.as_str()];
        assert_eq!(
            ids.len(),
            1,
            "{cmid} arrived under several message ids: {ids:?}"
        );
        assert!(ids.contains(id.as_str()), "{cmid} arrived under another id");
    }
    // Anything else that arrived is a send cut off by a crash (or the stop) after its commit.
    let extra = ids_per_cmid
        .keys()
        .filter(|c| !sent.contains_key(**c))
        .count();
    eprintln!(
        "{} acknowledged sends over {KILLS} kills, all delivered once; {} more arrived \
         (sent as the run stopped)",
        sent.len(),
        extra
    );

    reader.abort();
    for s in senders {
        if let Ok(s) = Arc::try_unwrap(s) {
            s.close().await;
        }
    }
}
