//! Disk use per delivered message: `cargo test --lib bytes_per_delivered_message -- --ignored
//! --nocapture` stores and delivers 100 000 bench-like messages (50 members, one
//! recipient each, a client message id each) and prints the file size and each table's share.
//! Memory per waiting entry: `cargo test --lib memory_per_waiting_entry -- --ignored
//! --nocapture` queues 1 000 000 such messages in the queues' index alone and prints how much
//! the process grew.

use redb::ReadableTableMetadata;

use crate::store::test_store;

use super::*;
use crate::protocol::ids;
use crate::store::Priority;

#[tokio::test]
#[ignore]
async fn bytes_per_delivered_message() {
    let (dir, store) = test_store();
    let mesh = ids::new_id();
    let members: Vec<String> = (0..50).map(|_| ids::new_id()).collect();
    let n = 100_000;
    let (mut stored, mut sent) = (Vec::new(), Vec::new());
    for i in 0..n {
        let key = format!("m/{mesh}/{}", members[(i + 1) % 50]);
        let r = MessageRecord {
            id: ids::new_id(),
            mesh_id: mesh.clone(),
            sender_member_id: members[i % 50].clone(),
            sender_pubkey: "a".repeat(64),
            sender_member_pubkey: "a".repeat(64),
            sender_name: format!("bench-{}", i % 50),
            target_spec: "b".repeat(64),
            priority: Priority::Now,
            nonce: "n".repeat(32),
            ciphertext: "c".repeat(192),
            body_version: None,
            reply_to_id: None,
            mentions: None,
            client_message_id: Some(format!("b{}-{}", i % 50, i / 50)),
            request_fingerprint: None,
            subtype: None,
            created_at_ms: 1,
            expires_at_ms: i64::MAX,
            recipients: vec![(key.clone(), format!("bench-{}", (i + 1) % 50))],
            key_epoch: 0,
        };
        sent.push((key, r.id.clone()));
        stored.push(store.enqueue(r));
        if stored.len() == 500 {
            for f in stored.drain(..) {
                f.await.unwrap();
            }
            store
                .mark_delivered(std::mem::take(&mut sent), 5)
                .await
                .unwrap();
            if (i + 1) % 20_000 == 0 {
                let size = std::fs::metadata(dir.path().join("mesh.redb"))
                    .unwrap()
                    .len();
                eprintln!("{:>7} delivered: mesh.redb {size} bytes", i + 1);
            }
        }
    }
    let rt = store.read().unwrap();
    let mut live = 0;
    for (name, stats) in [
        ("queued", rt.open_table(QUEUED).unwrap().stats().unwrap()),
        ("acks", rt.open_table(ACKS).unwrap().stats().unwrap()),
        (
            "delivered",
            rt.open_table(DELIVERED).unwrap().stats().unwrap(),
        ),
        (
            "client_keys",
            rt.open_table(CLIENT_KEYS).unwrap().stats().unwrap(),
        ),
    ] {
        let bytes = stats.stored_bytes() + stats.metadata_bytes() + stats.fragmented_bytes();
        live += bytes;
        eprintln!("{name:>12}: {} bytes per message", bytes / n as u64);
    }
    eprintln!("{:>12}: {} bytes per message", "all", live / n as u64);
}

/// The process's resident memory (bytes).
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split(' ').nth(1).unwrap().parse().unwrap();
    pages * 4096
}

#[test]
#[ignore]
fn memory_per_waiting_entry() {
    let mesh = ids::new_id();
    let keys: Vec<String> = (0..100)
        .map(|_| format!("m/{mesh}/{}", ids::new_id()))
        .collect();
    let n = 1_000_000;
    let before = rss();
    let mut index = index::QueueIndex::default();
    for i in 0..n {
        let to = std::slice::from_ref(&keys[i % keys.len()]);
        index.add((&mesh, &ids::new_id()), to, i as u64, i as i64);
    }
    let grown = rss() - before;
    eprintln!("{} bytes per waiting entry ({n} entries)", grown / n as u64);
    assert_eq!(index.expired(i64::MAX, n).len(), n);
}
