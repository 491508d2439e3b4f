//! The queues kept in memory (`queue::index`): what a walk sees while a batch is written, the
//! quota inside one batch, a failed batch, and random rounds of sends, acknowledgements,
//! sweeps, failures and crashes checked against a model.

use std::collections::HashMap;

use super::client_ids::{blocking_job, hold_writer, wait_queued};
use super::*;

/// Sends applied but not committed yet are not walked (their rows are not in any snapshot),
/// nor is an acknowledgement seen before its commit; both are once the batch commits.
#[tokio::test]
async fn a_walk_sees_only_what_has_committed() {
    let (_dir, store) = test_store();
    store.enqueue(message("m1", &["b"])).await.unwrap();
    // One batch applies m2 and the acknowledgement of m1, then blocks before its commit.
    let (first, holder) = hold_writer(&store).await;
    let send = store.enqueue(message("m2", &["b", "c"]));
    let ack = store.mark_delivered(vec![(key("b"), "m1".into())], 5);
    let (started, release, blocker) = blocking_job(&store, Ok(()));
    wait_queued(&store, 4).await;
    first.send(()).unwrap();
    holder.await.unwrap();
    started.recv().unwrap();
    let (seen, walked) = ids_from(&store, &[key("b")], 0);
    assert_eq!(seen, ["m1"], "the batch is not committed");
    assert!(ids(&store, &[key("c")]).is_empty());
    release.send(()).unwrap();
    blocker.await.unwrap();
    send.await.unwrap();
    assert_eq!(ack.await.unwrap(), 1);
    assert_eq!(ids(&store, &[key("b")]), ["m2"]);
    assert_eq!(ids(&store, &[key("c")]), ["m2"]);
    // A walk resumed where the one during the batch stopped reaches m2: that walk did not
    // step over the place m2 was about to take.
    assert_eq!(ids_from(&store, &[key("b")], walked.next).0, ["m2"]);
}

/// The quota counts what the same batch queued before: sends waiting together for the
/// writer take a full queue's places once, not once each.
#[tokio::test]
async fn the_quota_counts_sends_of_the_same_batch() {
    const LIMIT: u64 = 10;
    let (_dir, store) = test_store();
    let (release, holder) = hold_writer(&store).await;
    let sends: Vec<_> = (0..LIMIT + 5)
        .map(|i| store.enqueue_within(message(&format!("m{i:02}"), &["b"]), LIMIT))
        .collect();
    wait_queued(&store, 1 + sends.len()).await;
    release.send(()).unwrap();
    holder.await.unwrap();
    let mut taken = 0;
    for s in sends {
        let e = s.await.unwrap();
        if e.fresh {
            taken += 1;
        } else {
            assert_eq!(e.full.as_deref(), Some("b"));
        }
    }
    assert_eq!(taken, LIMIT);
    assert_eq!(ids(&store, &[key("b")]).len() as u64, LIMIT);
}

/// A batch that fails leaves the queues as the last commit left them: its sends are not
/// queued (nor counted), its acknowledgements not taken; the next batch works on that.
#[tokio::test]
async fn a_failed_batch_leaves_the_queues_as_they_were() {
    let (_dir, store) = test_store();
    store.enqueue(message("m1", &["b", "c"])).await.unwrap();
    let (release, holder) = hold_writer(&store).await;
    let send = store.enqueue_within(message("m2", &["b"]), 3);
    let ack = store.mark_delivered(vec![(key("b"), "m1".into())], 5);
    let failing = store.submit(|_| Err::<(), _>(StoreError::Db("boom".into())));
    wait_queued(&store, 4).await;
    release.send(()).unwrap();
    holder.await.unwrap();
    assert!(send.await.is_err() && ack.await.is_err() && failing.await.is_err());
    assert_eq!(ids(&store, &[key("b")]), ["m1"]);
    // m2 took no place: a quota of 3 beside m1 still has room for two.
    for id in ["m3", "m4"] {
        let e = store.enqueue_within(message(id, &["b"]), 3).await.unwrap();
        assert!(e.fresh, "{id} refused: the failed send was counted");
    }
    assert_eq!(ids(&store, &[key("b")]), ["m1", "m3", "m4"]);
    // m1's acknowledgement by b was not taken: it takes now, and c's retires it.
    let n = store
        .mark_delivered(vec![(key("b"), "m1".into()), (key("c"), "m1".into())], 6)
        .await
        .unwrap();
    assert_eq!(n, 2);
    assert_eq!(rows(&store, MESH, "m1"), (false, true));
}

/// The batch after a failed one rebuilds the queues and goes on marking what it adds as its
/// own: a walk while it is in flight does not step over the place of a send it holds.
#[tokio::test]
async fn after_a_rebuild_a_walk_still_sees_only_what_has_committed() {
    let (_dir, store) = test_store();
    store.enqueue(message("m1", &["b"])).await.unwrap();
    // A batch that fails once the next jobs are queued behind it.
    let boom = Err(StoreError::Db("boom".into()));
    let (failing_running, fail_now, failing) = blocking_job(&store, boom);
    failing_running.recv().unwrap();
    // The next batch (which rebuilds first) applies m2, then blocks before its commit.
    let send = store.enqueue(message("m2", &["b"]));
    let (started, release, blocker) = blocking_job(&store, Ok(()));
    wait_queued(&store, 3).await;
    fail_now.send(()).unwrap();
    assert!(failing.await.is_err());
    started.recv().unwrap();
    let (seen, walked) = ids_from(&store, &[key("b")], 0);
    assert_eq!(seen, ["m1"]);
    release.send(()).unwrap();
    blocker.await.unwrap();
    send.await.unwrap();
    assert_eq!(ids_from(&store, &[key("b")], walked.next).0, ["m2"]);
}

/// An acknowledgement repeated within one batch (two connections of one member, or one list
/// naming a message twice) counts once: the message still waits for its other recipient.
#[tokio::test]
async fn a_repeated_acknowledgement_in_one_batch_counts_once() {
    let (_dir, store) = test_store();
    store.enqueue(message("m1", &["b", "c"])).await.unwrap();
    store.enqueue(message("m2", &["b"])).await.unwrap();
    let twice = vec![(key("b"), "m1".to_string()), (key("b"), "m1".to_string())];
    assert_eq!(store.mark_delivered(twice, 5).await.unwrap(), 1);
    assert_eq!(
        rows(&store, MESH, "m1"),
        (true, false),
        "c has not acknowledged"
    );
    assert_eq!(ids(&store, &[key("c")]), ["m1"]);
    assert_eq!(ids(&store, &[key("b")]), ["m2"]);
}

/// A stored row that cannot be read does not stop the store's open or the retention sweep:
/// the queues leave it out (it is kept as it was, with a warning at each open), and every
/// other expired message goes.
#[tokio::test]
async fn an_unreadable_row_does_not_stop_the_sweep() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        let mut m = message("m2", &["b"]);
        m.expires_at_ms = 20;
        store.enqueue(m).await.unwrap();
        store.enqueue(message("m3", &["b"])).await.unwrap();
        store
            .submit(|tx| {
                tx.open_table(QUEUED)?
                    .insert((MESH, "m1"), b"not a record".as_slice())?;
                Ok(())
            })
            .await
            .unwrap();
        store.close();
    }
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(ids(&store, &[key("b")]), ["m2", "m3"]);
    assert_eq!(store.sweep_expired(100).await.unwrap(), 1);
    assert_eq!(rows(&store, MESH, "m2"), (false, false));
    assert_eq!(ids(&store, &[key("b")]), ["m3"]);
    assert_eq!(rows(&store, MESH, "m1"), (true, false), "kept as it was");
}

/// Random rounds of sends to one to three recipients, acknowledgements, expiry sweeps,
/// failing batches and crashes: after each round every recipient's walk is what a model of
/// the queues says, in order, and the stored statuses agree.
#[tokio::test]
async fn random_rounds_keep_every_queue_as_the_model_says() {
    let who = ["p", "q", "r", "s"];
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    // recipient → ids waiting, in stored order
    let mut model: HashMap<&str, Vec<String>> = HashMap::new();
    let mut n = 0usize;
    let mut rand = xorshift(0x2545_F491_4F6C_DD1D);
    for round in 0..40 {
        let (release, holder) = hold_writer(&store).await;
        let mut jobs = 0;
        let mut sends = Vec::new();
        for _ in 0..rand(30) {
            n += 1;
            let first = rand(4) as usize;
            let to: Vec<&str> = (0..1 + rand(3) as usize)
                .map(|i| who[(first + i) % 4])
                .collect();
            let id = format!("m{n:06}");
            sends.push((id.clone(), to.clone(), store.enqueue(message(&id, &to))));
            jobs += 1;
        }
        let mut acks = Vec::new();
        for r in who {
            let waiting = model.get(r).cloned().unwrap_or_default();
            let picked: Vec<String> = waiting.into_iter().filter(|_| rand(3) == 0).collect();
            if !picked.is_empty() {
                let pairs = picked.iter().map(|id| (key(r), id.clone())).collect();
                acks.push((r, picked, store.mark_delivered(pairs, 10)));
                jobs += 1;
            }
        }
        // Some stored messages' retention ends (in the same batch).
        let mut expired = Vec::new();
        if rand(3) == 0 {
            let mut all: Vec<&String> = model.values().flatten().collect();
            all.sort();
            all.dedup();
            for id in all.into_iter().filter(|_| rand(8) == 0) {
                expired.push((MESH.to_string(), id.clone()));
            }
        }
        let swept = !expired.is_empty();
        let sweep = swept.then(|| {
            let s = store.clone();
            let expired = expired.clone();
            tokio::spawn(async move { s.drop_messages(expired).await })
        });
        jobs += usize::from(swept);
        let fail = rand(5) == 0;
        let failing = fail.then(|| store.submit(|_| Err::<(), _>(StoreError::Db("boom".into()))));
        wait_queued(&store, 1 + jobs + usize::from(fail)).await;
        release.send(()).unwrap();
        let _ = holder.await;
        for (id, to, f) in sends {
            let e = f.await;
            assert_eq!(e.is_err(), fail, "round {round}: {id}");
            if !fail {
                for r in to {
                    model.entry(r).or_default().push(id.clone());
                }
            }
        }
        for (r, picked, f) in acks {
            let a = f.await;
            assert_eq!(a.is_err(), fail, "round {round}: {r}'s acknowledgements");
            if !fail {
                assert_eq!(a.unwrap(), picked.len(), "round {round}: {r} took");
                model
                    .entry(r)
                    .or_default()
                    .retain(|id| !picked.contains(id));
            }
        }
        if let Some(sweep) = sweep {
            let dropped = sweep.await.unwrap();
            assert_eq!(dropped.is_err(), fail, "round {round}: the sweep");
        }
        if !fail && swept {
            let gone: Vec<&String> = expired.iter().map(|(_, id)| id).collect();
            for q in model.values_mut() {
                q.retain(|id| !gone.contains(&id));
            }
        }
        if let Some(f) = failing {
            assert!(f.await.is_err());
        }
        if rand(4) == 0 {
            store.crash();
            drop(store);
            store = Store::open(dir.path()).unwrap();
        }
        for r in who {
            let want = model.get(r).cloned().unwrap_or_default();
            assert_eq!(ids(&store, &[key(r)]), want, "round {round}: {r}'s queue");
        }
        // The counts a failed batch left are rebuilt before the next batch's jobs run.
        store.write(|_| Ok(())).await.unwrap();
        for r in who {
            let want = model.get(r).cloned().unwrap_or_default();
            assert_eq!(ids(&store, &[key(r)]), want, "round {round}: {r}'s queue");
            assert_eq!(
                index::lock(&store.shared.queue_index).len(&key(r)),
                want.len() as u64,
                "round {round}: {r}'s count"
            );
        }
        // A status agrees: a message still waiting for someone is stored whole.
        for q in model.values() {
            for id in q {
                assert!(rows(&store, MESH, id).0, "round {round}: {id}");
            }
        }
    }
}

/// A message every recipient acknowledged leaves the retention order with its queues: the
/// sweep's candidates are the messages still waiting, earliest retention end first.
#[tokio::test]
async fn only_waiting_messages_are_candidates_for_the_sweep() {
    let (_dir, store) = test_store();
    for (id, ends) in [("m1", 30), ("m2", 20), ("m3", 10)] {
        let mut m = message(id, &["b", "c"]);
        m.expires_at_ms = ends;
        store.enqueue(m).await.unwrap();
    }
    let acked = [("b", "m1"), ("c", "m1"), ("b", "m3")];
    let acked = acked.map(|(k, id)| (key(k), id.to_string())).to_vec();
    store.mark_delivered(acked, 5).await.unwrap();
    let candidates = |now_ms| -> Vec<String> {
        let index = index::lock(&store.shared.queue_index);
        index
            .expired(now_ms, 10)
            .into_iter()
            .map(|(_, id)| id)
            .collect()
    };
    assert_eq!(candidates(100), ["m3", "m2"]);
    assert_eq!(candidates(15), ["m3"]);
    assert_eq!(
        store.sweep_expired(100).await.unwrap(),
        3,
        "c's m3, b's and c's m2"
    );
    assert!(candidates(100).is_empty());
}
