//! Bounds against hostile members (issue 10, items 4, 6 and 7): a member who never reads its
//! replies, floods writes, builds a huge backlog for someone or fills a recipient's queue, and
//! a disk that runs full. Each test performs the attack against a real broker process, shows
//! what the attacker gets (a clear error or a disconnect), that the broker's memory stays
//! bounded (its own `claudemesh_process_resident_memory_bytes`), that nothing acknowledged is
//! lost, and that an honest pair ([`Bystanders`]) keeps messaging before, during and after.

use crate::common;

mod disk;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;

use claudemesh::client::{MeshClient, Target};
use claudemesh::protocol::{ClientMessage, ServerMessage};
use common::*;

const MIB: f64 = 1048576.0;

/// The broker's resident memory, from its own metrics.
async fn broker_rss(broker: &BrokerProc) -> f64 {
    metric(broker, "claudemesh_process_resident_memory_bytes")
        .await
        .expect("the broker reports its memory")
}

/// Samples the broker's RSS every 50 ms until `stop`; returns the highest value seen.
fn watch_rss(broker: &BrokerProc, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<f64> {
    let url = format!("{}/metrics", broker.http_url());
    tokio::spawn(async move {
        let mut peak: f64 = 0.0;
        while !stop.load(Ordering::Relaxed) {
            if let Ok(r) = claudemesh::client::http::request("GET", &url, &[], None).await {
                let text = String::from_utf8_lossy(&r.body).into_owned();
                if let Some(v) = text
                    .lines()
                    .find_map(|l| l.strip_prefix("claudemesh_process_resident_memory_bytes "))
                    .and_then(|v| v.trim().parse::<f64>().ok())
                {
                    peak = peak.max(v);
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        peak
    })
}

/// Sets `n` state keys of `bytes` each (so one unpaged `list_state` reply is large).
async fn fill_state(client: &MeshClient, n: usize, bytes: usize) {
    let value = "s".repeat(bytes);
    for i in 0..n {
        client
            .set_state(&format!("big-{i}"), json!(value))
            .await
            .expect("set_state");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unread_reply_flood_cuts_off_the_reader_not_the_broker() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    let mut bystanders = Bystanders::start(&broker).await;
    bystanders.exchange(3).await;
    let alice_client = alice.client().await;
    fill_state(&alice_client, 40, 30_000).await;
    let base = broker_rss(&broker).await;

    // bob asks for the whole state over and over and never reads a reply.
    let (ws, _) = ws_hello(&broker, &member_hello(&bob.entry())).await;
    let (mut flood, mut unread) = ws.split();
    let stop = Arc::new(AtomicBool::new(false));
    let peak = watch_rss(&broker, stop.clone());
    let flooder = tokio::spawn(async move {
        let mut sent = 0;
        for i in 0..5_000 {
            let frame = json!({"type": "list_state", "_reqId": format!("l{i}")}).to_string();
            match tokio::time::timeout(Duration::from_secs(5), flood.send(Message::text(frame)))
                .await
            {
                Ok(Ok(())) => sent += 1,
                _ => break, // the broker stopped reading or hung up
            }
        }
        (sent, flood)
    });
    // Others are served while it happens.
    bystanders.exchange(5).await;
    eventually("bob is cut off as a slow consumer", || async {
        metric(&broker, r#"claudemesh_errors_total{code="slow_consumer"}"#).await >= Some(1.0)
    })
    .await;
    let (sent, _flood) = flooder.await.expect("flooder");
    // Left: the bystanders' two and alice's.
    eventually("bob's connection is gone", || async {
        metric(&broker, "claudemesh_connections").await == Some(3.0)
    })
    .await;
    bystanders.exchange(5).await;
    stop.store(true, Ordering::Relaxed);
    let peak = peak.await.expect("rss watcher");
    eprintln!(
        "bob sent {sent} list_state requests; RSS {:.0} MiB before, peak {:.0} MiB",
        base / MIB,
        peak / MIB
    );
    // Unbounded, 60 unread replies of 1.2 MB each took this broker past 1 GB; capped, bob
    // costs his outbox (8 MiB) and a few buffers.
    assert!(
        peak < base + 64.0 * MIB,
        "RSS grew from {base} to {peak} bytes while bob did not read"
    );
    // bob finds the replies that were on their way, then the end of the connection.
    let mut frames = 0usize;
    let end = loop {
        match tokio::time::timeout(WAIT, unread.next()).await {
            Ok(Some(Ok(Message::Close(c)))) => {
                break c.map(|c| (u16::from(c.code), c.reason.to_string()));
            }
            Ok(Some(Ok(_))) => frames += 1,
            Ok(Some(Err(_)) | None) => break None,
            Err(_) => panic!("bob's socket neither ended nor closed"),
        }
    };
    eprintln!("bob read {frames} frames, then {end:?}");
    assert!(
        end.as_ref()
            .is_none_or(|(code, reason)| *code == 1008 && reason == "slow_consumer"),
        "bob's socket ended with {end:?}"
    );
    // The state everyone shares is intact and served.
    assert_eq!(alice_client.list_state().await.expect("served").len(), 40);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_set_state_flood_is_read_at_the_pace_of_storage() {
    const FRAMES: usize = 20_000;
    let broker = BrokerProc::start(&[]);
    let (_alice, bob) = alice_and_bob(&broker);
    let mut bystanders = Bystanders::start(&broker).await;
    bystanders.exchange(3).await;
    let base = broker_rss(&broker).await;

    // bob writes 20 000 keys as fast as his socket takes them, reading the answers as they
    // come (a reader that stops reading is the test above).
    let (ws, _) = ws_hello(&broker, &member_hello(&bob.entry())).await;
    let (mut flood, mut answers) = ws.split();
    let stop = Arc::new(AtomicBool::new(false));
    let peak = watch_rss(&broker, stop.clone());
    let started = Instant::now();
    let writer = tokio::spawn(async move {
        for i in 0..FRAMES {
            let frame = json!({
                "type": "set_state",
                "key": format!("flood-{i}"),
                "value": format!("v{i}"),
                "_reqId": format!("s{i}"),
            });
            flood
                .send(Message::text(frame.to_string()))
                .await
                .expect("the broker keeps reading, at its pace");
        }
        flood
    });
    let reader = tokio::spawn(async move {
        let mut acked = Vec::new();
        let mut refused = std::collections::BTreeMap::<String, usize>::new();
        let mut answered = 0;
        while answered < FRAMES {
            let msg = tokio::time::timeout(WAIT, answers.next())
                .await
                .expect("answers keep coming")
                .expect("bob's socket is open")
                .expect("a frame");
            let Message::Text(t) = msg else { continue };
            let v: Value = serde_json::from_str(t.as_str()).expect("JSON");
            let Some(req) = v["_reqId"].as_str() else {
                continue; // a push
            };
            answered += 1;
            let i: usize = req[1..].parse().expect("our own request id");
            match v["type"].as_str() {
                Some("state_result") => {
                    assert_eq!(v["key"], format!("flood-{i}"), "{v}");
                    acked.push(i);
                }
                Some("error") => {
                    *refused
                        .entry(v["code"].as_str().unwrap_or("?").to_string())
                        .or_default() += 1
                }
                _ => panic!("unexpected answer {v}"),
            }
        }
        (acked, refused, answers)
    });
    bystanders.exchange(5).await;
    let flood = writer.await.expect("writer");
    let (acked, refused, answers) = reader.await.expect("reader");
    let took = started.elapsed();
    bystanders.exchange(5).await;
    stop.store(true, Ordering::Relaxed);
    let peak = peak.await.expect("rss watcher");
    eprintln!(
        "{FRAMES} set_state in {took:?}: {} stored, refused {refused:?}; RSS {:.0} MiB before, \
         peak {:.0} MiB",
        acked.len(),
        base / MIB,
        peak / MIB
    );
    assert!(!acked.is_empty(), "nothing was stored");
    // Unbounded, 20 000 frames in 0.8 s took the broker to 600 MB.
    assert!(
        peak < base + 64.0 * MIB,
        "RSS grew from {base} to {peak} bytes during the flood"
    );
    // Every acknowledged write is there.
    let mut ws = flood.reunite(answers).expect("one socket");
    for chunk in acked.chunks(2_000) {
        for i in chunk {
            let frame = json!({"type": "get_state", "key": format!("flood-{i}"), "_reqId": format!("g{i}")});
            ws_send(&mut ws, &frame).await;
        }
        for _ in chunk {
            let v = ws_recv_reply(&mut ws).await;
            let i: usize = v["_reqId"].as_str().expect("reply")[1..]
                .parse()
                .expect("id");
            assert_eq!(
                v["value"],
                format!("v{i}"),
                "acked write flood-{i} is lost: {v}"
            );
        }
    }
}

/// A field of `/proc/PID/<file>` in kB, if the kernel reports it.
fn proc_field(pid: u32, file: &str, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/{file}")).ok()?;
    text.lines().find_map(|l| {
        l.strip_prefix(field)?
            .trim()
            .trim_end_matches(" kB")
            .parse()
            .ok()
    })
}

/// Memory the broker frees after a load can go back to the OS: its heap is kept out of
/// transparent huge pages, where one live byte keeps 2 MiB resident (issue 14: RSS back near
/// idle after a load).
#[tokio::test(flavor = "multi_thread")]
async fn the_brokers_heap_stays_in_small_pages_so_freed_memory_can_go_back() {
    let broker = BrokerProc::start(&[]);
    let mut bystanders = Bystanders::start(&broker).await;
    bystanders.exchange(50).await;
    let pid = broker.pid();
    if let Some(enabled) = proc_field(pid, "status", "THP_enabled:") {
        assert_eq!(
            enabled, 0,
            "the broker turned transparent huge pages off for itself"
        );
    }
    let huge = proc_field(pid, "smaps_rollup", "AnonHugePages:").expect("smaps_rollup");
    assert_eq!(huge, 0, "no anonymous huge pages after traffic");
    bystanders.exchange(1).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backlog_of_100000_messages_arrives_in_order_each_once() {
    const TOTAL: usize = 100_000;
    const BATCH: usize = 1_000;
    let broker = BrokerProc::start(&["--send-rate", "1000000", "--send-burst", "1000000"]);
    let (alice, bob) = alice_and_bob(&broker);
    let mut bystanders = Bystanders::start(&broker).await;
    bystanders.exchange(3).await;

    // alice queues 100 000 messages for bob, who is offline; each batch goes out in order
    // (join_all polls the sends in order, so their frames leave in order).
    let sender = alice.client().await;
    let to_bob = to(&bob);
    let started = Instant::now();
    for batch in 0..TOTAL / BATCH {
        let sends = (0..BATCH).map(|k| {
            let text = format!("{}", batch * BATCH + k);
            let (sender, to_bob) = (&sender, &to_bob);
            async move { sender.send_text(to_bob, &text, "next", None).await }
        });
        for ack in futures_util::future::join_all(sends).await {
            let ack = ack.expect("alice is served");
            assert_eq!(ack.queued, Some(true), "{ack:?}");
        }
        if batch == TOTAL / BATCH / 2 {
            bystanders.exchange(2).await;
        }
    }
    eprintln!("queued {TOTAL} for bob in {:?}", started.elapsed());
    bystanders.exchange(3).await;
    let base = broker_rss(&broker).await;

    // bob connects and reads everything, acknowledging as he goes.
    let stop = Arc::new(AtomicBool::new(false));
    let peak = watch_rss(&broker, stop.clone());
    let started = Instant::now();
    let reader = bob.client().await;
    let mut next = 0usize;
    let mut last_progress = Instant::now();
    while next < TOTAL {
        let push = tokio::time::timeout(WAIT, reader.next_push())
            .await
            .unwrap_or_else(|_| panic!("bob stalled after {next} of {TOTAL}"))
            .expect("bob's connection is open");
        let ServerMessage::Push(p) = push else {
            continue;
        };
        if p.subtype.is_some() {
            continue;
        }
        let m = reader.open(*p);
        let text = m.text.expect("readable");
        // In order, each once: a repeat or a gap shows here.
        assert_eq!(text, next.to_string(), "bob got {text} when {next} was due");
        reader.ack(&m.push.message_id).expect("ack");
        next += 1;
        if next.is_multiple_of(25_000) {
            eprintln!("bob has {next} after {:?}", started.elapsed());
            bystanders.exchange(1).await;
            last_progress = Instant::now();
        }
    }
    let _ = last_progress;
    eprintln!("bob read {TOTAL} in {:?}", started.elapsed());
    // Nothing more comes: no duplicates after the last one.
    let drained = reader.drain_window().await.expect("drain");
    assert_eq!(drained, (0, false), "bob's queue is empty");
    while let Some(extra) = reader.try_next_push().await {
        if let ServerMessage::Push(p) = extra {
            assert!(p.subtype.is_some(), "a message came twice: {p:?}");
        }
    }
    stop.store(true, Ordering::Relaxed);
    let peak = peak.await.expect("rss watcher");
    eprintln!(
        "RSS {:.0} MiB before bob connected, peak {:.0} MiB while he read",
        base / MIB,
        peak / MIB
    );
    // Reading 100 000 records warms redb's page cache (64 MiB, fixed); beyond that nothing
    // grows with the backlog (one run: 88 MiB before, 138 MiB peak).
    assert!(
        peak < base + 96.0 * MIB,
        "RSS grew from {base} to {peak} bytes while bob read his backlog"
    );
    bystanders.exchange(3).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn inbox_reads_a_backlog_larger_than_a_window_in_order() {
    const TOTAL: usize = 1_500;
    let broker = BrokerProc::start(&["--send-rate", "100000", "--send-burst", "100000"]);
    let (alice, bob) = alice_and_bob(&broker);
    let sender = alice.client().await;
    let to_bob = to(&bob);
    let sends = (0..TOTAL).map(|i| {
        let (sender, to_bob) = (&sender, &to_bob);
        async move {
            sender
                .send_text(to_bob, &format!("m{i}"), "low", None)
                .await
        }
    });
    for ack in futures_util::future::join_all(sends).await {
        assert_eq!(ack.expect("served").queued, Some(true));
    }
    // `inbox` prints (and acknowledges) every one, in order, once.
    let out = bob.run(&["inbox", "--json"]);
    assert_eq!(out.code, 0, "inbox failed: {}", out.stderr);
    let texts: Vec<String> = out
        .stdout
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("a JSON line");
            v["text"].as_str().expect("text").to_string()
        })
        .collect();
    let expected: Vec<String> = (0..TOTAL).map(|i| format!("m{i}")).collect();
    assert_eq!(
        texts.len(),
        TOTAL,
        "inbox showed {} of {TOTAL}",
        texts.len()
    );
    assert_eq!(texts, expected, "inbox showed them out of order");
    // Acknowledged: a second look finds nothing.
    let again = bob.run(&["inbox", "--json"]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert_eq!(again.stdout.trim(), "", "shown twice: {}", again.stdout);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_queue_refuses_sends_naming_the_limit() {
    const LIMIT: usize = 50;
    let broker = BrokerProc::start(&["--max-queued-per-recipient", "50"]);
    let (alice, bob) = alice_and_bob(&broker);
    let mut bystanders = Bystanders::start(&broker).await;
    bystanders.exchange(3).await;
    let sender = alice.client().await;
    let to_bob = to(&bob);

    // alice fills bob's queue while he is away...
    for i in 0..LIMIT {
        let ack = sender
            .send_text(&to_bob, &format!("q{i}"), "next", None)
            .await
            .expect("served");
        assert_eq!(ack.queued, Some(true), "message {i}: {ack:?}");
    }
    // ...and the next one is refused, saying which limit and whose queue.
    for _ in 0..3 {
        let ack = sender
            .send_text(&to_bob, "one too many", "next", None)
            .await
            .expect("served");
        assert_eq!(ack.queued, Some(false), "{ack:?}");
        let error = ack.error.clone().unwrap_or_default();
        assert!(
            error.starts_with("quota:") && error.contains("bob") && error.contains("50"),
            "{error}"
        );
    }
    // Everyone else's queues are theirs.
    bystanders.exchange(5).await;
    // bob reads his queue: exactly the ones acknowledged, and he can be written to again.
    let out = bob.run(&["inbox", "--json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout.lines().count(), LIMIT, "{}", out.stdout);
    assert!(!out.stdout.contains("one too many"));
    eventually("bob's queue is counted empty", || async {
        let ack = sender
            .send_text(&to_bob, "room again", "next", None)
            .await
            .expect("served");
        ack.queued == Some(true)
    })
    .await;
    bystanders.exchange(3).await;
}

// ---------------------------------------------------------------------------------------------
// Soak
// ---------------------------------------------------------------------------------------------

/// One hostile member floods (unread `list_state`, `set_state` bursts, sends to an offline
/// member) while 10 honest peers message each other in a ring; every honest message must
/// arrive exactly once, and the broker's memory must stay bounded. Bounded in count (10 × 300
/// messages) and time (each wait is bounded by WAIT).
#[tokio::test(flavor = "multi_thread")]
async fn soak_one_flooder_ten_honest_peers() {
    const HONEST: usize = 10;
    const EACH: usize = 300;
    let broker = BrokerProc::start(&["--send-rate", "100000", "--send-burst", "100000"]);
    let owner = Person::new("owner");
    create_mesh(&broker, &owner, "soak");
    let mut people = Vec::new();
    for i in 0..HONEST {
        let p = Person::new(&format!("honest{i}"));
        let (_, url) = invite(&owner, &[]);
        join(&p, &url);
        people.push(p);
    }
    let hostile = Person::new("hostile");
    let (_, url) = invite(&owner, &[]);
    join(&hostile, &url);
    let victim = Person::new("victim");
    let (_, url) = invite(&owner, &[]);
    join(&victim, &url);
    let owner_client = owner.client().await;
    fill_state(&owner_client, 20, 30_000).await;

    let mut clients = Vec::new();
    for p in &people {
        clients.push(Arc::new(p.client().await));
    }
    let base = broker_rss(&broker).await;
    let stop = Arc::new(AtomicBool::new(false));
    let peak = watch_rss(&broker, stop.clone());

    // The flooder: rounds of unread list_state (until cut off), then set_state and sends to
    // the offline victim as fast as the socket takes them.
    let flood_stop = Arc::new(AtomicBool::new(false));
    let rounds = Arc::new(AtomicU64::new(0));
    let flooder = {
        let (hello_entry, victim_key) = (hostile.entry(), victim.entry().member_pubkey);
        let url = broker.ws_url();
        let (flood_stop, rounds) = (flood_stop.clone(), rounds.clone());
        let hostile_client = hostile.client().await;
        tokio::spawn(async move {
            let to_victim = Target {
                label: "victim".into(),
                spec: victim_key,
            };
            let deadline = Instant::now() + Duration::from_secs(120);
            while !flood_stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                let mut ws = ws_connect(&url).await;
                ws_send(&mut ws, &member_hello(&hello_entry)).await;
                for i in 0..3_000 {
                    let frame = if i % 3 == 0 {
                        json!({"type": "list_state", "_reqId": format!("l{i}")})
                    } else {
                        json!({"type": "set_state", "key": format!("h{}", i % 500), "value": i})
                    };
                    let sent = tokio::time::timeout(
                        Duration::from_secs(2),
                        ws.send(Message::text(frame.to_string())),
                    )
                    .await;
                    if !matches!(sent, Ok(Ok(()))) || flood_stop.load(Ordering::Relaxed) {
                        break;
                    }
                }
                drop(ws);
                let sends = (0..200).map(|i| {
                    let (c, t) = (&hostile_client, &to_victim);
                    async move { c.send_text(t, &format!("spam {i}"), "low", None).await }
                });
                futures_util::future::join_all(sends).await;
                rounds.fetch_add(1, Ordering::Relaxed);
            }
        })
    };

    // The honest ring: i sends EACH numbered messages to i+1, all at once.
    let started = Instant::now();
    let mut senders = JoinSet::new();
    for i in 0..HONEST {
        let client = clients[i].clone();
        let target = to(&people[(i + 1) % HONEST]);
        senders.spawn(async move {
            for k in 0..EACH {
                let ack = client
                    .send_text(&target, &format!("{i}:{k}"), "now", None)
                    .await
                    .expect("an honest peer is served");
                assert_eq!(ack.queued, Some(true), "{ack:?}");
            }
        });
    }
    let mut readers = JoinSet::new();
    for (i, client) in clients.iter().enumerate() {
        let client = client.clone();
        let from = (i + HONEST - 1) % HONEST;
        readers.spawn(async move {
            // Counted per message number, so a duplicate shows as a 2.
            let mut counts = vec![0u32; EACH];
            let mut total = 0;
            while total < EACH {
                let push = tokio::time::timeout(WAIT, client.next_push())
                    .await
                    .unwrap_or_else(|_| panic!("honest{i} has {total} of {EACH}"))
                    .expect("open");
                let ServerMessage::Push(p) = push else {
                    continue;
                };
                if p.subtype.is_some() {
                    continue;
                }
                let m = client.open(*p);
                client.ack(&m.push.message_id).expect("ack");
                let text = m.text.expect("readable");
                let (who, k) = text.split_once(':').expect("i:k");
                assert_eq!(who, from.to_string(), "honest{i} got {text}");
                counts[k.parse::<usize>().expect("k")] += 1;
                total += 1;
            }
            // A moment for a late duplicate to show up.
            if let Ok(Some(ServerMessage::Push(p))) =
                tokio::time::timeout(Duration::from_millis(500), client.next_push()).await
            {
                assert!(p.subtype.is_some(), "honest{i} got an extra message: {p:?}");
            }
            (i, counts)
        });
    }
    while let Some(r) = senders.join_next().await {
        r.expect("sender");
    }
    while let Some(r) = readers.join_next().await {
        let (i, counts) = r.expect("reader");
        assert!(
            counts.iter().all(|&c| c == 1),
            "honest{i}: not every message exactly once: {:?}",
            counts
                .iter()
                .enumerate()
                .filter(|(_, c)| **c != 1)
                .take(10)
                .collect::<Vec<_>>()
        );
    }
    let took = started.elapsed();
    flood_stop.store(true, Ordering::Relaxed);
    flooder.await.expect("flooder");
    stop.store(true, Ordering::Relaxed);
    let peak = peak.await.expect("rss watcher");
    eprintln!(
        "{HONEST} honest peers × {EACH} messages in {took:?} while the flooder ran {} rounds; \
         RSS {:.0} MiB before, peak {:.0} MiB",
        rounds.load(Ordering::Relaxed),
        base / MIB,
        peak / MIB
    );
    // redb's page cache (64 MiB, fixed) plus 11 outboxes' worth of traffic; before the
    // bounds the flooder alone took the broker past 1 GB. One run: 21 → 90 MiB.
    assert!(
        peak < base + 128.0 * MIB,
        "RSS grew from {base} to {peak} bytes during the soak"
    );
}

/// Runs `claudemesh bench` against `broker` (its admin token found in its data dir): `peers`
/// peers in pairs, `messages` each.
fn bench(broker: &BrokerProc, peers: usize, messages: usize) {
    let out = Command::new(BIN)
        .args(["bench", "--broker", &broker.ws_url(), "--json"])
        .args([
            "--peers",
            &peers.to_string(),
            "--messages",
            &messages.to_string(),
        ])
        .env("CLAUDEMESH_DATA_DIR", broker.data_dir())
        .output()
        .expect("claudemesh bench runs");
    assert!(
        out.status.success(),
        "bench failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The broker's anonymous resident memory (its heap: what it can give back), in kB.
fn anon_kb(broker: &BrokerProc) -> u64 {
    proc_field(broker.pid(), "status", "RssAnon:").expect("RssAnon in /proc/PID/status")
}

/// CPU time the broker has used (user and system), in seconds.
fn cpu_seconds(broker: &BrokerProc) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", broker.pid())).expect("stat");
    // The fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .expect("comm")
        .1
        .split_whitespace()
        .collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    // SAFETY: sysconf reads a constant of the system.
    ticks / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

/// A broker with nothing to do leaves the CPU alone: no thread of it polls while it waits
/// (the store writer's idle wait turned to zero spins a core at full speed).
#[tokio::test(flavor = "multi_thread")]
async fn an_idle_broker_leaves_the_cpu_alone() {
    let broker = BrokerProc::start(&[]);
    let mut bystanders = Bystanders::start(&broker).await;
    bystanders.exchange(5).await;
    let before = cpu_seconds(&broker);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let used = cpu_seconds(&broker) - before;
    assert!(
        used < 0.5,
        "an idle broker with two peers connected used {used:.2} s of CPU in 3 s"
    );
    bystanders.exchange(1).await;
}

/// Issue 14's promise: a minute after a burst of traffic, the broker's memory is back near
/// what it was idle — the store frees its page cache once idle, and every thread hands the
/// memory it freed back to the OS.
#[tokio::test(flavor = "multi_thread")]
async fn a_minute_after_a_burst_the_brokers_memory_is_back_near_idle() {
    let broker = BrokerProc::start(&[]);
    // Warm: the code a broker runs is paged in, its first allocations made.
    bench(&broker, 2, 10);
    let idle = anon_kb(&broker);
    bench(&broker, 10, 1500);
    let after = anon_kb(&broker);
    assert!(
        after > idle + 4096,
        "the burst should use memory for this test to show anything: {idle} kB idle, {after} kB after"
    );
    // A debug build's heap gives less back (measured: 12.8 MB idle, 26.8 after, 20.3 from
    // half a minute on; a release build: 9.3, 23.1, 9.2); the suite is meant for release.
    let bound = if cfg!(debug_assertions) {
        after - (after - idle) / 3
    } else {
        idle + idle / 5
    };
    let started = Instant::now();
    let mut seen = Vec::new();
    loop {
        let now = anon_kb(&broker);
        if now <= bound {
            break;
        }
        seen.push(format!("{}s {now}", started.elapsed().as_secs()));
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "a minute after the burst the broker holds {now} kB anonymous memory: {idle} kB \
             idle, {after} kB right after (bound {bound} kB). Seen (kB): {}. Its threads: {}",
            seen.join(", "),
            thread_names(&broker)
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The broker's threads by name, with how many of each.
fn thread_names(broker: &BrokerProc) -> String {
    let mut names = std::collections::BTreeMap::<String, usize>::new();
    let tasks = std::fs::read_dir(format!("/proc/{}/task", broker.pid())).expect("task dir");
    for task in tasks.flatten() {
        let name = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        *names.entry(name.trim().to_string()).or_default() += 1;
    }
    let names: Vec<String> = names.iter().map(|(n, c)| format!("{c} {n}")).collect();
    names.join(", ")
}
