//! The store writer's tests: batches and their commits, the queue's room, failures, the idle release of the page cache.

use super::*;
use crate::store::test_store;
use crate::store::{META, Store};

async fn set(store: &Store, value: &'static str) {
    store
        .write(move |txn| {
            txn.open_table(META)?
                .insert("idle-test", value.as_bytes())?;
            Ok(())
        })
        .await
        .unwrap();
}

fn get(snapshot: &Snapshot) -> Result<String, StoreError> {
    let table = snapshot.open_table(META)?;
    let value = table.get("idle-test")?.map(|v| v.value().to_vec());
    Ok(String::from_utf8(value.unwrap_or_default()).unwrap())
}

fn releases(store: &Store) -> u64 {
    store.stats.cache_releases.load(Ordering::Relaxed)
}

/// Within one batch a job that opens its own tables may follow a queue job, and a queue
/// job may follow it: the queue's tables are closed for it and opened again after.
#[test]
fn a_batch_closes_the_queue_tables_for_a_job_that_opens_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let db = open_database(&dir.path().join("t.redb")).unwrap();
    let txn = db.begin_write().unwrap();
    let pending = Mutex::new(PendingKeys::default());
    let index = Mutex::new(QueueIndex::default());
    {
        let mut batch = Batch::new(&txn, &pending, &index);
        batch.queue().unwrap();
        batch
            .txn()
            .unwrap()
            .open_table(crate::store::records::QUEUED)
            .unwrap()
            .insert(("mesh", "id"), b"x".as_slice())
            .unwrap();
        batch.queue().unwrap();
        assert!(batch.queue.is_some());
    }
    txn.commit().unwrap();
}

/// An idle store closes and reopens its database to free redb's cache after a burst of
/// writes, not after a trickle, and never while a read snapshot is alive (its reads would
/// fail); everything stays readable and writable afterwards.
#[tokio::test]
async fn an_idle_store_gives_its_cache_back_but_not_under_a_live_read() {
    let (dir, store) = test_store();
    store.shared.set_idle(Duration::from_millis(40), 3);
    set(&store, "one").await;
    set(&store, "one").await;
    // Two writes are below the burst that makes it worth reopening.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(releases(&store), 0, "reopened after a trickle of writes");
    set(&store, "one").await;
    let held = store.read().unwrap();
    // Ten idle periods with the snapshot held.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(releases(&store), 0, "closed under a live snapshot");
    assert_eq!(get(&held).unwrap(), "one", "the held snapshot still reads");
    drop(held);

    let deadline = Instant::now() + Duration::from_secs(10);
    while releases(&store) == 0 {
        assert!(Instant::now() < deadline, "the idle store kept its cache");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(get(&store.read().unwrap()).unwrap(), "one");
    set(&store, "two").await;
    assert_eq!(get(&store.read().unwrap()).unwrap(), "two");
    assert!(store.failure().is_none());
    store.close();
    drop(store);
    let reopened = Store::open(dir.path()).unwrap();
    assert_eq!(get(&reopened.read().unwrap()).unwrap(), "two");
}

/// A storage error inside a job (not only in the commit) puts the store in its failed
/// state at once: writes refused, `/health/ready` 503, until the disk answers again.
#[tokio::test]
async fn an_io_error_inside_a_job_refuses_writes_until_storage_answers() {
    let (_dir, store) = test_store();
    let failed = store
        .write(|_| Err::<(), _>(StoreError::Io("the disk went away".into())))
        .await;
    assert!(matches!(failed, Err(StoreError::Io(_))), "{failed:?}");
    assert_eq!(store.failure().as_deref(), Some("the disk went away"));
    let deadline = Instant::now() + Duration::from_secs(20);
    while store.failure().is_some() {
        assert!(Instant::now() < deadline, "the store never recovered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    set(&store, "after").await;
    assert_eq!(get(&store.read().unwrap()).unwrap(), "after");
}

/// Every answered job gives its place in the writer's queue back, so connections waiting
/// for room go on.
#[tokio::test]
async fn answered_jobs_leave_room_in_the_queue() {
    let (_dir, store) = test_store();
    for _ in 0..3 {
        set(&store, "x").await;
    }
    // The count drops just after the answers go out.
    let deadline = Instant::now() + Duration::from_secs(5);
    while store.shared.queued.load(Ordering::Acquire) != 0 {
        assert!(
            Instant::now() < deadline,
            "answered jobs still counted as queued"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::timeout(Duration::from_secs(5), store.room())
        .await
        .expect("no room after every job was answered");
}

/// A job that holds the writer until `release` is sent (or dropped), and its answer.
fn held_job(
    store: &Store,
) -> (
    std::sync::mpsc::Sender<()>,
    impl Future<Output = Result<(), StoreError>> + use<>,
) {
    let (release, held) = std::sync::mpsc::channel::<()>();
    let job = store.submit(move |_| {
        let _ = held.recv();
        Ok(())
    });
    (release, job)
}

/// Connections wait for room before they read their next request: with `WRITER_QUEUE`
/// jobs waiting for the writer there is none, and there is again once it answers them.
#[tokio::test]
async fn a_full_writer_queue_has_no_room_until_it_is_answered() {
    use futures_util::FutureExt;
    let full = crate::store::WRITER_QUEUE;
    let (_dir, store) = test_store();
    let (release, first) = held_job(&store);
    let rest: Vec<_> = (1..full).map(|_| store.submit(|_| Ok(()))).collect();
    assert_eq!(store.shared.queued.load(Ordering::Acquire), full);
    assert!(
        store.room().now_or_never().is_none(),
        "room although {full} jobs wait for the writer"
    );
    release.send(()).unwrap();
    first.await.unwrap();
    for job in rest {
        job.await.unwrap();
    }
    tokio::time::timeout(Duration::from_secs(5), store.room())
        .await
        .expect("no room once every job was answered");
}

/// A healthy store that sits idle is left alone: the recovery a failed commit sets off
/// (probe the disk, close and reopen the database, log a warning) never runs when nothing
/// failed.
#[tokio::test]
async fn a_healthy_idle_store_never_recovers_as_if_it_had_failed() {
    let (_dir, store) = test_store();
    store.shared.set_idle(Duration::from_millis(20), u64::MAX);
    set(&store, "one").await;
    // Idle periods for longer than a recovery waits before it tries.
    tokio::time::sleep(RETRY_EVERY + Duration::from_millis(700)).await;
    assert_eq!(store.stats.recoveries.load(Ordering::Relaxed), 0);
    assert!(store.failure().is_none());
    assert_eq!(get(&store.read().unwrap()).unwrap(), "one");
}

/// Group commit: jobs that wait for the writer together are committed together, one
/// transaction and one fsync for all of them.
#[tokio::test]
async fn jobs_waiting_together_share_one_commit() {
    let (_dir, store) = test_store();
    let commits = || store.stats.commits.load(Ordering::Relaxed);
    let (release, first) = held_job(&store);
    let before = commits();
    let waiting: Vec<_> = (0..100).map(|_| store.submit(|_| Ok(()))).collect();
    release.send(()).unwrap();
    first.await.unwrap();
    for job in waiting {
        job.await.unwrap();
    }
    let took = commits() - before;
    assert!(took <= 2, "100 waiting jobs took {took} commits");
}

/// A commit that ran a job outside the queue moves the count the read caches are keyed
/// by; one of queue jobs only does not.
#[tokio::test]
async fn only_commits_outside_the_queue_move_the_cache_count() {
    let (_dir, store) = test_store();
    let count = || store.shared.general_commits.load(Ordering::Acquire);
    let before = count();
    set(&store, "x").await;
    assert_eq!(count(), before + 1);
    store.submit_queue(|_tables| Ok(())).await.unwrap();
    assert_eq!(count(), before + 1, "a queue-only commit moved the count");
}

/// Every live snapshot is counted, and only until it is dropped.
#[test]
fn snapshots_are_counted_while_alive() {
    let (_dir, store) = test_store();
    let readers = || store.shared.readers.load(Ordering::Acquire);
    let a = store.read().unwrap();
    let b = store.read().unwrap();
    assert_eq!(readers(), 2);
    drop(a);
    assert_eq!(readers(), 1);
    drop(b);
    assert_eq!(readers(), 0);
}
