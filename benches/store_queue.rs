//! The message queue without the network: what the store writer pays per message for the
//! broker's load — direct messages from many senders to many recipients, each acknowledged
//! once it is stored — through the same `Store::enqueue_within` and `Store::mark_delivered`
//! jobs the router submits (group commit, fsync before every answer).
//!
//! `cargo bench --bench store_queue` (or `-- PEERS MESSAGES_PER_PEER [RECIPIENTS]`, default 100
//! 1000 1: RECIPIENTS above 1 sends each message to that many peers, each acknowledging it).
//! Prints one line: messages a second, the `store-writer` thread's CPU per message, the whole
//! process's CPU per message, bytes written per message, commits, and `mesh.redb`'s size.
//! The baseline for issue 14's storage layout (docs/store-layout.md, step 1). Nothing here
//! asserts a timing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use claudemesh::protocol::ids::new_id;
use claudemesh::store::{MessageRecord, Priority, Store};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

#[path = "common/proc.rs"]
mod proc;

/// Unacknowledged sends per sender, as `claudemesh bench` allows.
const IN_FLIGHT: usize = 64;

/// A 128-byte body as the client sends it: base64 of its ciphertext, with a nonce.
fn record(mesh: &str, from: &str, to: &[(String, String)]) -> MessageRecord {
    MessageRecord {
        id: new_id(),
        mesh_id: mesh.into(),
        sender_member_id: from.into(),
        sender_pubkey: "ab".repeat(32),
        sender_member_pubkey: "ab".repeat(32),
        sender_name: format!("peer-{from}"),
        target_spec: "cd".repeat(32),
        priority: Priority::Now,
        nonce: "n".repeat(32),
        ciphertext: "c".repeat(195),
        body_version: Some(2),
        reply_to_id: None,
        mentions: None,
        client_message_id: Some(new_id()),
        request_fingerprint: None,
        subtype: None,
        created_at_ms: now_ms(),
        expires_at_ms: now_ms() + 7 * 24 * 3600 * 1000,
        recipients: to.to_vec(),
        key_epoch: 0,
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// User plus system CPU time from a `/proc/.../stat` file.
fn cpu_of(stat: &std::path::Path) -> Duration {
    let stat = std::fs::read_to_string(stat).unwrap_or_default();
    // Fields after the command's closing parenthesis: utime and stime are the 12th and 13th.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&at| fields.get(at).and_then(|f| f.parse::<u64>().ok()))
        .sum();
    Duration::from_millis(ticks * 10) // USER_HZ is 100 on Linux
}

/// CPU time of the whole process (threads that ended included).
fn process_cpu() -> Duration {
    cpu_of("/proc/self/stat".as_ref())
}

/// CPU time of the thread named `name`.
fn thread_cpu(name: &str) -> Duration {
    std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|t| std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim() == name))
        .map(|t| cpu_of(&t.path().join("stat")))
        .sum()
}

/// Bytes this process has caused to be written to storage.
fn written() -> u64 {
    proc::proc_io().get("write_bytes").copied().unwrap_or(0)
}

#[tokio::main]
async fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let peers = args.first().copied().unwrap_or(100);
    let per_peer = args.get(1).copied().unwrap_or(1000);
    // Recipients a message (a group send); each acknowledges on its own.
    let fanout = args.get(2).copied().unwrap_or(1).clamp(1, peers.max(2) - 1);
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(dir.path()).expect("store");
    let mesh = new_id();
    let members: Arc<Vec<(String, String)>> = Arc::new(
        (0..peers)
            .map(|_| {
                let member = new_id();
                (format!("m/{mesh}/{member}"), member)
            })
            .collect(),
    );

    let (writer0, all0, bytes0, commits0) = (
        thread_cpu("store-writer"),
        process_cpu(),
        written(),
        store
            .stats
            .commits
            .load(std::sync::atomic::Ordering::Relaxed),
    );
    let started = Instant::now();
    let mut senders = JoinSet::new();
    for s in 0..peers {
        let (store, members, mesh) = (store.clone(), members.clone(), mesh.clone());
        senders.spawn(async move {
            let window = Arc::new(Semaphore::new(IN_FLIGHT));
            let mut sends = JoinSet::new();
            for i in 0..per_peer {
                let permit = window.clone().acquire_owned().await.expect("window");
                // Each sender writes to the others in turn.
                let to: Vec<(String, String)> = (0..fanout)
                    .map(|j| members[(s + 1 + (i + j) % (peers - 1).max(1)) % peers].clone())
                    .collect();
                let from = &members[s].1;
                let queued = store.enqueue_within(record(&mesh, from, &to), 10_000);
                let store = store.clone();
                sends.spawn(async move {
                    let stored = queued.await.expect("enqueue");
                    assert!(stored.fresh && stored.full.is_none(), "not queued");
                    drop(permit);
                    // Each recipient's acknowledgement, once it was pushed.
                    let id = stored.record.id;
                    let acks: Vec<_> = to
                        .into_iter()
                        .map(|(key, _)| store.mark_delivered(vec![(key, id.clone())], now_ms()))
                        .collect();
                    for ack in acks {
                        ack.await.expect("ack");
                    }
                });
            }
            while let Some(done) = sends.join_next().await {
                done.expect("a send");
            }
        });
    }
    while let Some(done) = senders.join_next().await {
        done.expect("a sender");
    }
    let took = started.elapsed();

    let n = (peers * per_peer) as f64;
    let per_msg = |d: Duration| d.as_secs_f64() * 1e6 / n;
    let commits = store
        .stats
        .commits
        .load(std::sync::atomic::Ordering::Relaxed)
        - commits0;
    let file = std::fs::metadata(dir.path().join("mesh.redb")).map_or(0, |m| m.len());
    println!(
        "store_queue {peers} × {per_peer} to {fanout}: {:.0} msg/s, store-writer {:.1} µs/msg, process \
         {:.1} µs/msg, {:.0} bytes written/msg, {commits} commits ({:.0} jobs each), mesh.redb \
         {:.1} MB",
        n / took.as_secs_f64(),
        per_msg(thread_cpu("store-writer") - writer0),
        per_msg(process_cpu() - all0),
        (written() - bytes0) as f64 / n,
        (1 + fanout) as f64 * n / commits.max(1) as f64,
        file as f64 / 1e6,
    );
}
