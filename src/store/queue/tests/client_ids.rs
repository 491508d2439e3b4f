//! The client-message-id index: resends recognised across crashes, failed commits, sweeps
//! and idle flushes, though its entries are written behind.

use super::*;

/// Sends `n` messages with client message ids `cid-0`… at once (so they share commits), ids
/// `<prefix>-0`…; returns the ids the store gave.
pub(super) async fn send_with_cids(store: &Store, prefix: &str, n: usize) -> Vec<Enqueued> {
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
                let mut queued = tx.open_table(QUEUED)?;
                queued.insert((MESH, "a-0050x"), b"not a record".as_slice())?;
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
    let commits = || {
        store
            .stats
            .commits
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    let sent = commits();
    for _ in 0..200 {
        if stored_client_keys(&store) == 300 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(stored_client_keys(&store), 300);
    // All at once: not a slice an idle period (64 of them for 300 entries).
    assert!(commits() - sent <= 2, "{} commits", commits() - sent);
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
        .map(|i| (MESH.to_string(), format!("a-{i:04}")))
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
pub(super) async fn hold_writer(
    store: &Store,
) -> (
    std::sync::mpsc::Sender<()>,
    impl Future<Output = Result<(), StoreError>> + use<>,
) {
    let (started, release, holder) = blocking_job(store, Ok(()));
    started.recv().unwrap();
    (release, holder)
}

/// Submits a job that, once the writer runs it, says so on the first channel and holds the
/// writer inside its batch until the second is used; it then answers `answer` (an error
/// fails its batch).
pub(super) fn blocking_job(
    store: &Store,
    answer: Result<(), StoreError>,
) -> (
    std::sync::mpsc::Receiver<()>,
    std::sync::mpsc::Sender<()>,
    impl Future<Output = Result<(), StoreError>> + use<>,
) {
    let (release, held) = std::sync::mpsc::channel::<()>();
    let (started, running) = std::sync::mpsc::channel::<()>();
    let job = store.submit(move |_| {
        let _ = started.send(());
        let _ = held.recv();
        answer
    });
    (running, release, job)
}

/// Waits until `n` jobs are queued or being written.
pub(super) async fn wait_queued(store: &Store, n: usize) {
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
    let mut rand = xorshift(0x9E37_79B9_7F4A_7C15);
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
                    expired.push((MESH.to_string(), id.clone()));
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
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
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
        store.close();
    }
    // Reopened, so that the filter in front of the index knows the entry and it is read.
    let store = Store::open(dir.path()).unwrap();
    let mut next = message("a-0002", &["b"]);
    next.client_message_id = Some("cid-x".into());
    let e = store.enqueue(next).await.unwrap();
    assert!(e.fresh, "taken for a resend of {}", e.record.id);
    assert_eq!(e.record.id, "a-0002");
}

/// A store from before `CLIENT_KEYS` keeps client ids in `CLIENT_IDS` only: after a restart,
/// the filter in front of the index knows them too, and a resend is still recognised.
#[tokio::test]
async fn an_older_stores_client_ids_stop_resends_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = message("first", &["b"]);
    m.client_message_id = Some("cid-old".into());
    {
        let store = Store::open(dir.path()).unwrap();
        store.enqueue(m.clone()).await.unwrap();
        store.close();
    }
    {
        let store = Store::open(dir.path()).unwrap();
        store
            .write(|tx| {
                let mut keys = tx.open_table(CLIENT_KEYS)?;
                assert!(keys.remove(client_key(MESH, "alice", "cid-old"))?.is_some());
                drop(keys);
                tx.open_table(CLIENT_IDS)?
                    .insert((MESH, "alice", "cid-old"), "first")?;
                Ok(())
            })
            .await
            .unwrap();
        store.close();
    }
    let store = Store::open(dir.path()).unwrap();
    let mut again = m;
    again.id = "second".into();
    let e = store.enqueue(again).await.unwrap();
    assert!(!e.fresh, "the resend was stored again");
    assert_eq!(e.record.id, "first");
}

/// The filter in front of the index is rebuilt from the table once as many keys were added
/// as it was built for, while most new entries still wait in memory: none of them is lost
/// to it, and every resend is recognised.
#[tokio::test]
async fn a_full_filter_is_rebuilt_and_still_knows_every_waiting_key() {
    const N: usize = 400;
    let (_dir, store) = test_store();
    send_with_cids(&store, "a", N).await;
    let added = client_keys::lock(&store.shared.client_keys).filter_added();
    assert!(
        added.is_some_and(|n| n < N as u64),
        "the filter was not rebuilt ({added:?} keys added since it was built)"
    );
    assert!(
        stored_client_keys(&store) < N as u64,
        "every entry was written already: nothing waited in memory"
    );
    assert_resends_find_the_originals(&store, N, "after the filter was rebuilt").await;
}
