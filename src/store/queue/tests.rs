use super::*;
use crate::store::Priority;
use crate::store::test_store;
use redb::ReadableTableMetadata;

const MESH: &str = "mesh1";

fn key(member: &str) -> String {
    format!("m/{MESH}/{member}")
}

fn message(id: &str, to: &[&str]) -> MessageRecord {
    MessageRecord {
        id: id.into(),
        mesh_id: MESH.into(),
        sender_member_id: "alice".into(),
        sender_pubkey: "aa".into(),
        sender_member_pubkey: "aa".into(),
        sender_name: "alice".into(),
        target_spec: "*".into(),
        priority: Priority::Now,
        nonce: String::new(),
        ciphertext: "x".into(),
        body_version: None,
        reply_to_id: None,
        mentions: None,
        client_message_id: None,
        request_fingerprint: None,
        subtype: None,
        created_at_ms: 1,
        expires_at_ms: i64::MAX,
        recipients: to.iter().map(|m| (key(m), m.to_string())).collect(),
        key_epoch: 0,
    }
}

/// `(seq, id)` of what a walk of `keys` from `from` visits, at most `max_rows` entries.
fn walk(
    store: &Store,
    keys: &[String],
    from: u64,
    max_rows: usize,
) -> (Vec<(u64, String)>, Walked) {
    let mut seen = Vec::new();
    let walked = store
        .walk_queue(keys, from, 0, max_rows, |_, seq, r| {
            seen.push((seq, r.id));
            Visit::Next
        })
        .unwrap();
    (seen, walked)
}

fn count_row(store: &Store, k: &str) -> Option<u64> {
    let rt = store.read().unwrap();
    let counts = rt.open_table(QUEUE_COUNTS).unwrap();
    counts.get(k).unwrap().map(|v| v.value())
}

/// A member's and its session's queues are read as one, in the order messages were
/// stored; a window stops after `max_rows` entries and says where the next walk starts.
#[tokio::test]
async fn two_queues_are_walked_in_sequence_order_a_window_at_a_time() {
    let (_dir, store) = test_store();
    for (id, to) in [
        ("m1", "a"),
        ("m2", "b"),
        ("m3", "a"),
        ("m4", "b"),
        ("m5", "b"),
    ] {
        store.enqueue(message(id, &[to])).await.unwrap();
    }
    let keys = [key("a"), key("b")];
    let (all, walked) = walk(&store, &keys, 0, 100);
    let ids: Vec<&str> = all.iter().map(|(_, id)| id.as_str()).collect();
    assert_eq!(ids, ["m1", "m2", "m3", "m4", "m5"]);
    assert!(walked.end);
    assert!(all.windows(2).all(|w| w[0].0 < w[1].0), "{all:?}");

    let (first, walked) = walk(&store, &keys, 0, 2);
    assert_eq!(first, all[..2], "a window of two entries");
    assert!(!walked.end);
    assert_eq!(
        walked.next, all[2].0,
        "the next walk starts at the third entry"
    );
    let (rest, walked) = walk(&store, &keys, walked.next, 2);
    assert_eq!(rest, all[2..4]);
    assert_eq!(walked.next, all[4].0);
    let (last, walked) = walk(&store, &keys, walked.next, 2);
    assert_eq!(last, all[4..]);
    assert!(walked.end);
}

/// A queue holds at most `max_queued` entries, counted as they are added and delivered
/// (or from the queue itself when no count is kept); an emptied queue keeps no count row.
#[tokio::test]
async fn a_full_queue_refuses_until_an_entry_is_delivered() {
    let (_dir, store) = test_store();
    for id in ["m1", "m2", "m3"] {
        let e = store.enqueue_within(message(id, &["b"]), 3).await.unwrap();
        assert!(e.fresh && e.full.is_none(), "{id} was refused");
    }
    assert_eq!(count_row(&store, &key("b")), Some(3));
    let refused = store
        .enqueue_within(message("m4", &["b"]), 3)
        .await
        .unwrap();
    assert_eq!(refused.full.as_deref(), Some("b"));
    assert!(!refused.fresh && refused.seqs.is_empty());

    // Without its count row (a store from before counts were kept) the queue is counted.
    store
        .write(|tx| {
            tx.open_table(QUEUE_COUNTS)?.remove(key("b").as_str())?;
            Ok(())
        })
        .await
        .unwrap();
    let refused = store
        .enqueue_within(message("m4", &["b"]), 3)
        .await
        .unwrap();
    assert_eq!(refused.full.as_deref(), Some("b"), "counted from the queue");

    let n = store
        .mark_delivered(vec![(key("b"), "m1".into())], 5)
        .await
        .unwrap();
    assert_eq!(n, 1);
    assert_eq!(count_row(&store, &key("b")), Some(2));
    let e = store
        .enqueue_within(message("m4", &["b"]), 3)
        .await
        .unwrap();
    assert!(e.full.is_none(), "room again after a delivery");
    assert_eq!(count_row(&store, &key("b")), Some(3));

    let pairs = ["m2", "m3", "m4"]
        .map(|id| (key("b"), id.to_string()))
        .to_vec();
    assert_eq!(store.mark_delivered(pairs, 6).await.unwrap(), 3);
    assert_eq!(
        count_row(&store, &key("b")),
        None,
        "no row kept for an empty queue"
    );
    let (left, _) = walk(&store, &[key("b")], 0, 100);
    assert!(left.is_empty(), "{left:?}");
}

fn rows(store: &Store, mesh_id: &str, id: &str) -> (bool, bool) {
    let rt = store.read().unwrap();
    let waiting = rt
        .open_table(MESSAGES)
        .unwrap()
        .get((mesh_id, id))
        .unwrap()
        .is_some();
    let done = rt
        .open_table(DELIVERED)
        .unwrap()
        .get((mesh_id, id))
        .unwrap()
        .is_some();
    (waiting, done)
}

fn tracked(store: &Store, id: &str) -> Tracked {
    match store.find_message(MESH, id).unwrap() {
        PrefixLookup::Found(t) => *t,
        other => panic!("{id}: {other:?}"),
    }
}

/// A store from before `WAITING` counts nothing down: the first of two acknowledgements
/// leaves the message whole (body and all) for the other recipient.
#[tokio::test]
async fn without_a_waiting_count_one_acknowledgement_of_two_keeps_the_message() {
    let (_dir, store) = test_store();
    let m = message("msg-old", &["b", "c"]);
    store.enqueue(m.clone()).await.unwrap();
    store
        .submit(|tx| {
            tx.open_table(WAITING)?.remove((MESH, "msg-old"))?;
            Ok(())
        })
        .await
        .unwrap();
    store
        .mark_delivered(vec![(key("b"), m.id.clone())], 5)
        .await
        .unwrap();
    assert_eq!(
        rows(&store, MESH, &m.id),
        (true, false),
        "c has not acknowledged"
    );
    let rt = store.read().unwrap();
    let kept: MessageRecord = decode_opt(
        rt.open_table(MESSAGES)
            .unwrap()
            .get((MESH, "msg-old"))
            .unwrap(),
    )
    .unwrap()
    .expect("still stored");
    assert_eq!(kept.ciphertext, m.ciphertext);
    drop(rt);
    store
        .mark_delivered(vec![(key("c"), m.id.clone())], 6)
        .await
        .unwrap();
    assert_eq!(rows(&store, MESH, &m.id), (false, true));
}

/// Once every recipient acknowledged a message its body is dropped: `message_status` still
/// finds it (by prefix too) with each acknowledgement time, a resend of its
/// `client_message_id` still gets the same id and stores nothing, and when retention
/// ends nothing of it is left.
#[tokio::test]
async fn a_message_acknowledged_by_everyone_keeps_only_its_status() {
    let (_dir, store) = test_store();
    let mut m = message("msg-abcdefgh", &["b", "c"]);
    m.client_message_id = Some("cid-1".into());
    m.expires_at_ms = 1000;
    m.target_spec = "ab".repeat(32);
    store.enqueue(m.clone()).await.unwrap();

    let n = store
        .mark_delivered(vec![(key("b"), m.id.clone())], 5)
        .await
        .unwrap();
    assert_eq!(n, 1);
    assert_eq!(
        rows(&store, MESH, &m.id),
        (true, false),
        "c has not acknowledged"
    );
    let rt = store.read().unwrap();
    let left = rt
        .open_table(WAITING)
        .unwrap()
        .get((MESH, m.id.as_str()))
        .unwrap();
    assert_eq!(
        left.map(|v| v.value()),
        Some(1),
        "one recipient left, counted"
    );
    drop(rt);
    let t = tracked(&store, &m.id);
    assert_eq!(t.recipients[0].2, Some(5));
    assert_eq!(t.recipients[1].2, None);

    store
        .mark_delivered(vec![(key("c"), m.id.clone())], 6)
        .await
        .unwrap();
    assert_eq!(
        rows(&store, MESH, &m.id),
        (false, true),
        "the body is dropped"
    );
    let rt = store.read().unwrap();
    let deliveries = rt.open_table(DELIVERIES).unwrap();
    for who in ["b", "c"] {
        let row = deliveries.get((key(who).as_str(), m.id.as_str())).unwrap();
        assert!(row.is_none(), "{who}'s delivery row is left behind");
    }
    drop((deliveries, rt));
    let t = tracked(&store, "msg-abcd");
    assert_eq!(t.id, m.id);
    assert_eq!(
        t.target_spec,
        "ab".repeat(32),
        "a key target is kept as bytes"
    );
    let acked: Vec<_> = t.recipients.iter().map(|r| (r.1.as_str(), r.2)).collect();
    assert_eq!(acked, [("b", Some(5)), ("c", Some(6))]);
    let again = store
        .mark_delivered(vec![(key("c"), m.id.clone())], 7)
        .await
        .unwrap();
    assert_eq!(again, 0, "a second acknowledgement changes nothing");

    let mut resent = m.clone();
    resent.id = "msg-other".into();
    let e = store.enqueue(resent.clone()).await.unwrap();
    assert!(
        !e.fresh,
        "a resend of a delivered message is not stored again"
    );
    assert_eq!(e.record.id, m.id);
    let (left, _) = walk(&store, &[key("b"), key("c")], 0, 100);
    assert!(left.is_empty(), "{left:?}");

    assert_eq!(store.sweep_expired(2000).await.unwrap(), 0);
    assert_eq!(rows(&store, MESH, &m.id), (false, false));
    assert!(matches!(
        store.find_message(MESH, &m.id).unwrap(),
        PrefixLookup::NotFound
    ));
    let e = store.enqueue(resent).await.unwrap();
    assert!(e.fresh, "its client id went with it");
}

/// A data directory from before the `delivered` table opens; its messages are delivered
/// and reported as before.
#[tokio::test]
async fn a_store_without_the_delivered_table_opens_and_delivers() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        store.enqueue(message("old-message", &["b"])).await.unwrap();
        store
            .write(|tx| {
                tx.delete_table(DELIVERED)?;
                Ok(())
            })
            .await
            .unwrap();
        store.close();
    }
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(tracked(&store, "old-message").recipients[0].2, None);
    store
        .mark_delivered(vec![(key("b"), "old-message".into())], 9)
        .await
        .unwrap();
    assert_eq!(rows(&store, MESH, "old-message"), (false, true));
    assert_eq!(tracked(&store, "old-message").recipients[0].2, Some(9));
}

/// Client message ids stored by an older version (three strings in `client_ids`) still
/// stop a resend, and go when their message does.
#[tokio::test]
async fn client_ids_from_an_older_store_still_stop_resends() {
    let (_dir, store) = test_store();
    let mut m = message("first", &["b"]);
    m.client_message_id = Some("cid-old".into());
    m.expires_at_ms = 1000;
    store.enqueue(m.clone()).await.unwrap();
    store
        .write(|tx| {
            tx.open_table(CLIENT_KEYS)?
                .remove(client_key(MESH, "alice", "cid-old"))?;
            tx.open_table(CLIENT_IDS)?
                .insert((MESH, "alice", "cid-old"), "first")?;
            Ok(())
        })
        .await
        .unwrap();
    let mut again = m.clone();
    again.id = "second".into();
    let e = store.enqueue(again.clone()).await.unwrap();
    assert!(!e.fresh);
    assert_eq!(e.record.id, "first");
    store.sweep_expired(2000).await.unwrap();
    let rt = store.read().unwrap();
    let old = rt.open_table(CLIENT_IDS).unwrap();
    assert!(old.get((MESH, "alice", "cid-old")).unwrap().is_none());
    drop((old, rt));
    assert!(store.enqueue(again).await.unwrap().fresh);
}

/// A store written before the expiry index existed has its messages indexed when it is
/// opened, so the retention sweep (which reads only the index) still drops them.
#[tokio::test]
async fn messages_stored_before_the_expiry_index_are_swept_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        let mut m = message("old", &["b"]);
        m.expires_at_ms = 10;
        store.enqueue(m).await.unwrap();
        store.enqueue(message("kept", &["b"])).await.unwrap();
        store
            .write(|tx| {
                tx.delete_table(EXPIRY)?;
                tx.open_table(EXPIRY)?;
                tx.open_table(META)?.remove("expiry_indexed")?;
                Ok(())
            })
            .await
            .unwrap();
        assert_eq!(store.sweep_expired(100).await.unwrap(), 0, "not indexed");
        store.close();
    }
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.sweep_expired(100).await.unwrap(), 1);
    let (left, _) = walk(&store, &[key("b")], 0, 100);
    let ids: Vec<&str> = left.iter().map(|(_, id)| id.as_str()).collect();
    assert_eq!(ids, ["kept"]);
}

/// Expired messages are dropped from the store (all of them, past one page of candidates),
/// unexpired ones stay; a message is found by its id or a unique prefix of it.
#[tokio::test]
async fn expired_messages_are_swept_and_prefixes_find_one_message() {
    let (_dir, store) = test_store();
    let mut old = Vec::new();
    for i in 0..1500 {
        let mut m = message(&format!("old{i:04}"), &["b"]);
        m.expires_at_ms = 10;
        old.push(store.enqueue(m));
    }
    for f in old {
        f.await.unwrap();
    }
    store.enqueue(message("ab1", &["b"])).await.unwrap();
    store.enqueue(message("ac2", &["b"])).await.unwrap();

    let found = |id: &str| match store.find_message(MESH, id).unwrap() {
        PrefixLookup::Found(r) => Some(r.id),
        PrefixLookup::NotFound => None,
        PrefixLookup::Ambiguous => Some("ambiguous".into()),
    };
    assert_eq!(found("ab").as_deref(), Some("ab1"));
    assert_eq!(found("a").as_deref(), Some("ambiguous"));
    assert_eq!(found("old0001").as_deref(), Some("old0001"));

    assert_eq!(store.sweep_expired(100).await.unwrap(), 1500);
    assert_eq!(found("old0001"), None);
    assert_eq!(found("old1499"), None);
    let (left, _) = walk(&store, &[key("b")], 0, 10_000);
    let ids: Vec<&str> = left.iter().map(|(_, id)| id.as_str()).collect();
    assert_eq!(ids, ["ab1", "ac2"]);
    assert_eq!(
        store.sweep_expired(100).await.unwrap(),
        0,
        "nothing left to sweep"
    );
}

/// Sequence numbers go on growing across a restart, whether the batch that took the last one
/// ended with queue jobs or with a write of another kind: a message stored after the restart
/// is queued after the ones before it, and replaces none.
#[tokio::test]
async fn queue_order_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        store.enqueue(message("first", &["b"])).await.unwrap();
        store.enqueue(message("second", &["b"])).await.unwrap();
        store.close();
    }
    {
        let store = Store::open(dir.path()).unwrap();
        store.enqueue(message("third", &["b"])).await.unwrap();
        // Queued together: the queue job's tables close for the general job in one batch.
        let queued = store.enqueue(message("fourth", &["b"]));
        let general = store.submit(|tx| {
            tx.open_table(META)?.insert("other", b"x".as_slice())?;
            Ok(())
        });
        queued.await.unwrap();
        general.await.unwrap();
        store.close();
    }
    let store = Store::open(dir.path()).unwrap();
    store.enqueue(message("fifth", &["b"])).await.unwrap();
    let (seen, _) = walk(&store, &[key("b")], 0, 100);
    let ids: Vec<&str> = seen.iter().map(|(_, id)| id.as_str()).collect();
    assert_eq!(ids, ["first", "second", "third", "fourth", "fifth"]);
}

/// Sends `n` messages with client message ids `cid-0`… at once (so they share commits), ids
/// `<prefix>-0`…; returns the ids the store gave.
async fn send_with_cids(store: &Store, prefix: &str, n: usize) -> Vec<Enqueued> {
    let sends: Vec<_> = (0..n)
        .map(|i| {
            let mut m = message(&format!("{prefix}-{i:04}"), &["b"]);
            m.client_message_id = Some(format!("cid-{i}"));
            store.enqueue(m)
        })
        .collect();
    futures_util::future::try_join_all(sends).await.unwrap()
}

fn stored_client_keys(store: &Store) -> u64 {
    store
        .read()
        .unwrap()
        .open_table(CLIENT_KEYS)
        .unwrap()
        .len()
        .unwrap()
}

/// Client message id entries wait in memory and are written a slice a commit; a crash loses
/// those still waiting, and the next open finds them again in the stored messages, waiting
/// or delivered: a resend after the crash is still recognised.
#[tokio::test]
async fn resends_after_a_crash_are_recognised_though_their_index_entries_were_waiting() {
    const N: usize = 400;
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        let first = send_with_cids(&store, "a", N).await;
        assert!(first.iter().all(|e| e.fresh));
        // Half of them acknowledged: only their delivered record keeps their client id.
        let acks = (0..N / 2)
            .map(|i| (key("b"), format!("a-{i:04}")))
            .collect();
        assert_eq!(store.mark_delivered(acks, 5).await.unwrap(), N / 2);
        let written = stored_client_keys(&store);
        assert!(
            written < N as u64,
            "every entry was written already ({written}): nothing waited for the crash to lose"
        );
        store.crash();
    }
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(stored_client_keys(&store), N as u64);
    let again = send_with_cids(&store, "resent", N).await;
    for (i, e) in again.iter().enumerate() {
        assert!(!e.fresh, "cid-{i} was stored a second time after the crash");
        assert_eq!(e.record.id, format!("a-{i:04}"));
    }
}

/// A stored row that cannot be read does not stop the rebuild after a crash (nor the start):
/// the other messages' resends are still recognised.
#[tokio::test]
async fn a_row_that_cannot_be_read_does_not_stop_the_rebuild() {
    const N: usize = 100;
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        send_with_cids(&store, "a", N).await;
        assert!(stored_client_keys(&store) < N as u64, "nothing waited");
        store
            .submit(|tx| {
                let mut messages = tx.open_table(MESSAGES)?;
                messages.insert((MESH, "a-0050x"), b"not a record".as_slice())?;
                Ok(())
            })
            .await
            .unwrap();
        store.crash();
    }
    let store = Store::open(dir.path()).expect("the store opens");
    let again = send_with_cids(&store, "resent", N).await;
    assert!(again.iter().all(|e| !e.fresh), "a resend was stored twice");
}

/// An idle store writes every waiting entry, and a clean close too: nothing is left to
/// rebuild at the next open.
#[tokio::test]
async fn an_idle_store_writes_every_waiting_client_id() {
    let (_dir, store) = test_store();
    store
        .shared
        .set_idle(std::time::Duration::from_millis(50), u64::MAX);
    send_with_cids(&store, "a", 300).await;
    for _ in 0..200 {
        if stored_client_keys(&store) == 300 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(stored_client_keys(&store), 300);
    let meta = store.read().unwrap().open_table(META).unwrap();
    assert!(meta.get("client_keys_unwritten_from").unwrap().is_none());
}

/// A failed commit may have forgotten, written or added index entries in memory that never
/// reached the disk (here: an expiry sweep forgets 400 entries, and its batch fails). The
/// messages are still stored, so their resends must still be recognised.
#[tokio::test]
async fn resends_are_recognised_after_a_failed_commit_forgot_their_entries() {
    const N: usize = 400;
    let (_dir, store) = test_store();
    send_with_cids(&store, "a", N).await;
    sweep_in_a_failing_batch(&store, N, StoreError::Db("a job failed".into())).await;
    assert_resends_find_the_originals(&store, N, "after a failed commit").await;
}

/// Sweeps the `n` messages `a-0000`… in one batch with a job that fails with `failure`,
/// checking first that some of their index entries were still waiting.
async fn sweep_in_a_failing_batch(store: &Store, n: usize, failure: StoreError) {
    assert!(
        stored_client_keys(store) < n as u64,
        "every entry was written already: nothing waited in memory"
    );
    let (release, holder) = hold_writer(store).await;
    let expired = (0..n)
        .map(|i| (0u64, MESH.to_string(), format!("a-{i:04}")))
        .collect();
    let sweeper = store.clone();
    let sweep = tokio::spawn(async move { sweeper.drop_messages(expired).await });
    wait_queued(store, 2).await;
    let fail = store.submit(move |_| Err::<(), _>(failure));
    wait_queued(store, 3).await;
    release.send(()).unwrap();
    holder.await.unwrap();
    assert!(sweep.await.unwrap().is_err(), "the sweep's batch failed");
    assert!(fail.await.is_err());
}

/// Resends client message ids `cid-0`… `n`: each must be recognised as `a-0000`….
async fn assert_resends_find_the_originals(store: &Store, n: usize, when: &str) {
    for i in 0..n {
        let mut m = message(&format!("r-{i:04}"), &["b"]);
        m.client_message_id = Some(format!("cid-{i}"));
        let e = store.enqueue(m).await.unwrap();
        assert!(!e.fresh, "cid-{i} was stored a second time {when}");
        assert_eq!(e.record.id, format!("a-{i:04}"));
    }
}

/// Holds the writer with a job until the returned sender is used; returns once it runs.
async fn hold_writer(
    store: &Store,
) -> (
    std::sync::mpsc::Sender<()>,
    impl Future<Output = Result<(), StoreError>> + use<>,
) {
    let (release, held) = std::sync::mpsc::channel::<()>();
    let (started, holding) = tokio::sync::oneshot::channel::<()>();
    let holder = store.submit(move |_| {
        let _ = started.send(());
        let _ = held.recv();
        Ok(())
    });
    holding.await.unwrap();
    (release, holder)
}

/// Waits until `n` jobs are queued or being written.
async fn wait_queued(store: &Store, n: usize) {
    while store
        .shared
        .queued
        .load(std::sync::atomic::Ordering::Acquire)
        < n
    {
        tokio::task::yield_now().await;
    }
}

/// Random rounds of new sends, resends, failing batches, expiry sweeps and crashes:
/// every resend of a stored message is recognised, and nothing else is.
#[tokio::test]
async fn random_sends_resends_sweeps_failures_and_crashes_never_lose_or_invent_an_entry() {
    use std::collections::HashMap;
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    // cid → the id of its first, stored, send
    let mut stored: HashMap<usize, String> = HashMap::new();
    let mut next_cid = 0usize;
    let mut seq = 0usize;
    let mut rng: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut rand = move |n: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n
    };
    let mut sweeps = Vec::new();
    for round in 0..60 {
        let (release, holder) = hold_writer(&store).await;
        let mut sends = Vec::new();
        let fresh_n = 50 + rand(200) as usize;
        for _ in 0..fresh_n {
            let cid = next_cid;
            next_cid += 1;
            seq += 1;
            let mut m = message(&format!("id-{:06x}-{seq}", rand(1 << 24)), &["b"]);
            m.client_message_id = Some(format!("cid-{cid}"));
            sends.push((cid, m.id.clone(), store.enqueue(m)));
        }
        // resends of stored and (maybe) of the fresh ones in this batch
        for _ in 0..rand(100) {
            let cid = rand(next_cid as u64) as usize;
            seq += 1;
            let mut m = message(&format!("id-{:06x}-{seq}", rand(1 << 24)), &["b"]);
            m.client_message_id = Some(format!("cid-{cid}"));
            sends.push((cid, m.id.clone(), store.enqueue(m)));
        }
        // drop some stored messages (expiry sweep) in the same batch, after the sends
        let mut dropped_cids = Vec::new();
        if rand(2) == 0 && !stored.is_empty() {
            let mut expired = Vec::new();
            for (cid, id) in stored.iter() {
                if rand(10) == 0 {
                    dropped_cids.push(*cid);
                    expired.push((0u64, MESH.to_string(), id.clone()));
                }
            }
            let sweeper = store.clone();
            let n = 1 + sends.len();
            let t = tokio::spawn(async move { sweeper.drop_messages(expired).await });
            wait_queued(&store, n + 1).await;
            sweeps.push(t);
        }
        let fail = rand(4) == 0;
        let failing = fail.then(|| store.submit(|_| Err::<(), _>(StoreError::Db("boom".into()))));
        wait_queued(&store, 1 + sends.len() + sweeps.len() + usize::from(fail)).await;
        release.send(()).unwrap();
        holder.await.unwrap();
        for (cid, id, f) in sends {
            match f.await {
                Ok(e) => {
                    assert!(!fail);
                    match stored.get(&cid) {
                        Some(first) => {
                            assert!(!e.fresh, "round {round}: cid-{cid} stored twice");
                            assert_eq!(&e.record.id, first);
                        }
                        None => {
                            assert!(
                                e.fresh,
                                "round {round}: cid-{cid} matched a phantom {}",
                                e.record.id
                            );
                            assert_eq!(e.record.id, id);
                            stored.insert(cid, id);
                        }
                    }
                }
                Err(_) => assert!(fail),
            }
        }
        if let Some(f) = failing {
            assert!(f.await.is_err());
        }
        for t in sweeps.drain(..) {
            let r = t.await.unwrap();
            assert_eq!(r.is_err(), fail);
        }
        if !fail {
            for cid in dropped_cids {
                stored.remove(&cid);
            }
        }
        if rand(5) == 0 {
            store.crash();
            drop(store);
            store = Store::open(dir.path()).unwrap();
        }
    }
    // every stored one is recognised at the end
    for (cid, first) in &stored {
        seq += 1;
        let mut m = message(&format!("id-{seq:08}"), &["b"]);
        m.client_message_id = Some(format!("cid-{cid}"));
        let e = store.enqueue(m).await.unwrap();
        assert!(!e.fresh, "cid-{cid} lost");
        assert_eq!(&e.record.id, first);
    }
}

/// An I/O failure (the store reopens its database before writing again) in the batch of a
/// sweep that forgot waiting entries; then the same, closed before it recovers.
#[tokio::test]
async fn an_io_failure_then_recovery_or_close_loses_no_index_entry() {
    const N: usize = 300;
    for close_early in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        send_with_cids(&store, "a", N).await;
        sweep_in_a_failing_batch(&store, N, StoreError::Io("disk gone".into())).await;
        let store = if close_early {
            store.close();
            drop(store);
            Store::open(dir.path()).unwrap()
        } else {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
            while store.failure().is_some() {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the store never recovered"
                );
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            store
        };
        let when = format!("after an I/O failure (closed before recovering: {close_early})");
        assert_resends_find_the_originals(&store, N, &when).await;
    }
}

/// Messages that expire take their client-message-id entries with them, once written too.
#[tokio::test]
async fn expired_messages_leave_no_client_id_entry() {
    const N: usize = 50;
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        let sends: Vec<_> = (0..N)
            .map(|i| {
                let mut m = message(&format!("a-{i:04}"), &["b"]);
                m.client_message_id = Some(format!("cid-{i}"));
                m.expires_at_ms = 5;
                store.enqueue(m)
            })
            .collect();
        futures_util::future::try_join_all(sends).await.unwrap();
        store.close();
    }
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(
        stored_client_keys(&store),
        N as u64,
        "a close writes them all"
    );
    assert_eq!(store.sweep_expired(10_000).await.unwrap(), N as u64);
    assert_eq!(
        stored_client_keys(&store),
        0,
        "entries of expired messages are left"
    );
}

/// An entry naming a message of another client message id (a hash collision, or a damaged
/// index) is not taken for a resend: the send is stored as new.
#[tokio::test]
async fn an_entry_naming_another_client_id_is_not_a_resend() {
    let (_dir, store) = test_store();
    let mut first = message("a-0001", &["b"]);
    first.client_message_id = Some("cid-y".into());
    store.enqueue(first).await.unwrap();
    store
        .submit(|tx| {
            let key = client_key(MESH, "alice", "cid-x");
            tx.open_table(CLIENT_KEYS)?.insert(key, "a-0001")?;
            Ok(())
        })
        .await
        .unwrap();
    let mut next = message("a-0002", &["b"]);
    next.client_message_id = Some("cid-x".into());
    let e = store.enqueue(next).await.unwrap();
    assert!(e.fresh, "taken for a resend of {}", e.record.id);
    assert_eq!(e.record.id, "a-0002");
}
