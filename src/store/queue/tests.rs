use super::*;
use crate::store::Priority;
use crate::store::encode_by_position;
use crate::store::test_store;
use index::queued_row;
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
    walk_at(store, keys, from, 0, max_rows)
}

/// [`walk`] at time `now_ms` (expired messages are not visited).
fn walk_at(
    store: &Store,
    keys: &[String],
    from: u64,
    now_ms: i64,
    max_rows: usize,
) -> (Vec<(u64, String)>, Walked) {
    let mut seen = Vec::new();
    let walked = store
        .walk_queue(keys, from, now_ms, max_rows, |_, seq, r| {
            seen.push((seq, r.id));
            Visit::Next
        })
        .unwrap();
    (seen, walked)
}

/// The ids a walk of `keys` from the start visits.
fn ids(store: &Store, keys: &[String]) -> Vec<String> {
    ids_from(store, keys, 0).0
}

/// The ids a walk of `keys` from `from` visits, and where it ended.
fn ids_from(store: &Store, keys: &[String], from: u64) -> (Vec<String>, Walked) {
    let (seen, walked) = walk(store, keys, from, 100_000);
    (seen.into_iter().map(|(_, id)| id).collect(), walked)
}

/// A xorshift generator from `seed`: `rand(n)` is below `n`; the same seed, the same rounds.
fn xorshift(mut seed: u64) -> impl FnMut(u64) -> u64 {
    move |n| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    }
}

fn count_row(store: &Store, k: &str) -> u64 {
    index::lock(&store.shared.queue_index).len(k)
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

/// A queue holds at most `max_queued` entries, counted as they are added and delivered.
#[tokio::test]
async fn a_full_queue_refuses_until_an_entry_is_delivered() {
    let (_dir, store) = test_store();
    for id in ["m1", "m2", "m3"] {
        let e = store.enqueue_within(message(id, &["b"]), 3).await.unwrap();
        assert!(e.fresh && e.full.is_none(), "{id} was refused");
    }
    assert_eq!(count_row(&store, &key("b")), 3);
    let refused = store
        .enqueue_within(message("m4", &["b"]), 3)
        .await
        .unwrap();
    assert_eq!(refused.full.as_deref(), Some("b"));
    assert!(!refused.fresh);

    let n = store
        .mark_delivered(vec![(key("b"), "m1".into())], 5)
        .await
        .unwrap();
    assert_eq!(n, 1);
    assert_eq!(count_row(&store, &key("b")), 2);
    let e = store
        .enqueue_within(message("m4", &["b"]), 3)
        .await
        .unwrap();
    assert!(e.full.is_none(), "room again after a delivery");
    assert_eq!(count_row(&store, &key("b")), 3);

    let pairs = ["m2", "m3", "m4"]
        .map(|id| (key("b"), id.to_string()))
        .to_vec();
    assert_eq!(store.mark_delivered(pairs, 6).await.unwrap(), 3);
    assert_eq!(count_row(&store, &key("b")), 0);
    let (left, _) = walk(&store, &[key("b")], 0, 100);
    assert!(left.is_empty(), "{left:?}");
}

fn rows(store: &Store, mesh_id: &str, id: &str) -> (bool, bool) {
    let rt = store.read().unwrap();
    let waiting = rt
        .open_table(QUEUED)
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

/// The `ACKS` rows of message `id`: (recipient without the mesh, acknowledged at).
fn ack_rows(store: &Store, id: &str) -> Vec<(String, i64)> {
    let rt = store.read().unwrap();
    let acks = rt.open_table(ACKS).unwrap();
    acks.range((MESH, id, "")..=(MESH, id, "\u{10FFFF}"))
        .unwrap()
        .map(|row| {
            let (k, v) = row.unwrap();
            (k.value().2.to_string(), v.value())
        })
        .collect()
}

fn tracked(store: &Store, id: &str) -> Tracked {
    match store.find_message(MESH, id).unwrap() {
        PrefixLookup::Found(t) => *t,
        other => panic!("{id}: {other:?}"),
    }
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
    assert_eq!(ack_rows(&store, &m.id), [("m/b".to_string(), 5)]);
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
    assert_eq!(
        ack_rows(&store, &m.id),
        [],
        "acknowledgement rows left behind"
    );
    let t = tracked(&store, "msg-abcd");
    assert_eq!(t.id, m.id);
    assert_eq!(
        t.target_spec,
        "ab".repeat(32),
        "a key target is kept as bytes"
    );
    let acked: Vec<_> = t.recipients.iter().map(|r| (r.1.as_str(), r.2)).collect();
    assert_eq!(acked, [("b", Some(5)), ("c", Some(6))]);
    let keys: Vec<&str> = t.recipients.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(
        keys,
        [key("b"), key("c")],
        "kept without the mesh, read back whole"
    );
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

/// Retention survives a restart: the queues built at open know when each message expires,
/// and the sweep drops the expired ones only.
#[tokio::test]
async fn messages_expire_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        let mut m = message("old", &["b", "c"]);
        m.expires_at_ms = 10;
        store.enqueue(m).await.unwrap();
        store.enqueue(message("kept", &["b"])).await.unwrap();
        store.close();
    }
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.sweep_expired(100).await.unwrap(), 2);
    assert_eq!(ids(&store, &[key("b"), key("c")]), ["kept"]);
    assert_eq!(rows(&store, MESH, "old"), (false, false));
}

/// A schema 4 store (with its expiry index) opens as schema 5 (and on): the index is gone and what it
/// held still expires.
#[tokio::test]
async fn a_schema_4_store_loses_its_expiry_index_and_still_expires() {
    use crate::store::records::v4::EXPIRY;
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        let mut m = message("old", &["b"]);
        m.expires_at_ms = 10;
        store.enqueue(m).await.unwrap();
        store.enqueue(message("kept", &["b"])).await.unwrap();
        store
            .write(|tx| {
                tx.open_table(EXPIRY)?.insert((10u64, MESH, "old"), ())?;
                let mut meta = tx.open_table(META)?;
                meta.insert("schema_version", encode(&4u32).as_slice())?;
                meta.insert("expiry_indexed", encode(&true).as_slice())?;
                Ok(())
            })
            .await
            .unwrap();
        store.close();
    }
    let store = Store::open(dir.path()).unwrap();
    let rt = store.read().unwrap();
    let tables: Vec<String> = rt
        .list_tables()
        .unwrap()
        .map(|t| redb::TableHandle::name(&t).to_string())
        .collect();
    assert!(!tables.contains(&"expiry".to_string()), "{tables:?}");
    let meta = rt.open_table(META).unwrap();
    assert!(meta.get("expiry_indexed").unwrap().is_none());
    let version = meta.get("schema_version").unwrap().unwrap();
    assert_eq!(
        decode::<u32>(version.value()).unwrap(),
        super::super::SCHEMA_VERSION
    );
    drop((version, meta, rt));
    assert_eq!(store.sweep_expired(100).await.unwrap(), 1);
    assert_eq!(ids(&store, &[key("b")]), ["kept"]);
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

/// A delivered record that holds whole recipient keys (as well as short ones) reads back the
/// same whole keys.
#[tokio::test]
async fn a_delivered_record_holding_whole_keys_reads_them_as_they_are() {
    let (_dir, store) = test_store();
    let kept = DeliveredRecord {
        sender_member_id: "alice".into(),
        target_spec: "*".into(),
        client_message_id: None,
        recipients: vec![
            (key("b"), "b".into(), 5),
            (format!("s/{MESH}/sess-c"), "c".into(), 6),
            ("m/d".into(), "d".into(), 7),
        ],
        keep_until_ms: i64::MAX,
    };
    store
        .submit(move |tx| {
            let mut delivered = tx.open_table(DELIVERED)?;
            delivered.insert((MESH, "msg-whole"), encode_by_position(&kept).as_slice())?;
            Ok(())
        })
        .await
        .unwrap();
    let t = tracked(&store, "msg-whole");
    let keys: Vec<&str> = t.recipients.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(keys, [key("b"), format!("s/{MESH}/sess-c"), key("d")]);
}

/// A prefix finds the one delivered message it starts, and a prefix no id starts finds
/// nothing, whatever ids follow it.
#[tokio::test]
async fn a_prefix_finds_only_delivered_messages_it_starts() {
    let (_dir, store) = test_store();
    for id in ["msg-aaa1", "msg-bbb2"] {
        store.enqueue(message(id, &["b"])).await.unwrap();
        store
            .mark_delivered(vec![(key("b"), id.to_string())], 5)
            .await
            .unwrap();
        assert_eq!(rows(&store, MESH, id), (false, true));
    }
    assert_eq!(tracked(&store, "msg-a").id, "msg-aaa1");
    assert_eq!(tracked(&store, "msg-b").id, "msg-bbb2");
    for none in ["msg-0", "msg-ab"] {
        assert!(
            matches!(
                store.find_message(MESH, none).unwrap(),
                PrefixLookup::NotFound
            ),
            "{none}"
        );
    }
}

/// What is kept of delivered messages stays until their retention ends, and one sweep then
/// drops all of it.
#[tokio::test]
async fn delivered_messages_keep_their_status_until_retention_ends() {
    let (_dir, store) = test_store();
    let ids = ["msg-d1", "msg-d2", "msg-d3"];
    for id in ids {
        let mut m = message(id, &["b"]);
        m.expires_at_ms = 1000;
        store.enqueue(m).await.unwrap();
        store
            .mark_delivered(vec![(key("b"), id.to_string())], 5)
            .await
            .unwrap();
    }
    store.sweep_expired(500).await.unwrap();
    for id in ids {
        assert_eq!(rows(&store, MESH, id), (false, true), "{id} kept at 500");
    }
    store.sweep_expired(1000).await.unwrap();
    for id in ids {
        assert_eq!(
            rows(&store, MESH, id),
            (false, false),
            "{id} dropped at 1000"
        );
    }
}

/// A message some of its recipients acknowledged leaves nothing behind when its retention
/// ends: not its body, not the acknowledgements kept for the others.
#[tokio::test]
async fn an_expired_message_leaves_no_acknowledgement_behind() {
    let (_dir, store) = test_store();
    let mut m = message("msg-half", &["b", "c"]);
    m.expires_at_ms = 10;
    store.enqueue(m).await.unwrap();
    store
        .mark_delivered(vec![(key("b"), "msg-half".into())], 5)
        .await
        .unwrap();
    assert_eq!(ack_rows(&store, "msg-half"), [("m/b".to_string(), 5)]);
    assert_eq!(store.sweep_expired(100).await.unwrap(), 1);
    assert_eq!(rows(&store, MESH, "msg-half"), (false, false));
    assert_eq!(ack_rows(&store, "msg-half"), []);
}

/// Messages dropped when their retention ends free their places in a full queue.
#[tokio::test]
async fn expired_messages_free_their_places_in_a_full_queue() {
    let (_dir, store) = test_store();
    for id in ["old1", "old2", "old3"] {
        let mut m = message(id, &["b"]);
        m.expires_at_ms = 10;
        let e = store.enqueue_within(m, 3).await.unwrap();
        assert!(e.fresh && e.full.is_none(), "{id} was refused");
    }
    assert_eq!(store.sweep_expired(100).await.unwrap(), 3);
    assert_eq!(count_row(&store, &key("b")), 0, "nothing counted");
    for id in ["new1", "new2", "new3"] {
        let e = store.enqueue_within(message(id, &["b"]), 3).await.unwrap();
        assert!(
            e.fresh && e.full.is_none(),
            "{id} was refused after the sweep"
        );
    }
}

/// A message is not handed out from the moment its retention ends: the instant the sweep
/// takes it is already too late.
#[tokio::test]
async fn a_message_is_not_walked_once_its_retention_ends() {
    let (_dir, store) = test_store();
    let mut m = message("msg-ends", &["b"]);
    m.expires_at_ms = 10;
    store.enqueue(m).await.unwrap();
    let walked_at = |now_ms| -> Vec<String> {
        let (seen, _) = walk_at(&store, &[key("b")], 0, now_ms, 10);
        seen.into_iter().map(|(_, id)| id).collect()
    };
    assert_eq!(walked_at(9), ["msg-ends"]);
    assert!(walked_at(10).is_empty(), "expired at 10");
    assert_eq!(
        index::lock(&store.shared.queue_index).expired(10, 10).len(),
        1,
        "and swept at 10"
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

/// Resends recognised by client message id: the index written behind (`client_keys`).
mod client_ids;

/// The queues kept in memory.
mod queues;

/// A schema 3 store kept as a file, for the migrations after it.
mod v3_store;

/// A record with every field set, keys as a send stores them.
fn full_record() -> MessageRecord {
    let mut r = message("full", &["b", "c"]);
    r.sender_pubkey = "0123456789abcdef".repeat(4);
    r.sender_member_pubkey = "fedcba9876543210".repeat(4);
    r.target_spec = "00112233445566778899aabbccddeeff".repeat(2);
    r.nonce = "n".repeat(32);
    r.body_version = Some(2);
    r.reply_to_id = Some("earlier".into());
    r.mentions = Some(vec!["b".into()]);
    r.client_message_id = Some("cid-1".into());
    r.request_fingerprint = Some("fp".into());
    r.subtype = Some("reply".into());
    r.expires_at_ms = 12_345;
    r.key_epoch = 3;
    r
}

/// `r` as a broker of schema 4 before records were stored by position wrote it: a map by
/// field name, keys as hex text.
fn stored_by_name(r: &MessageRecord) -> Vec<u8> {
    let map = serde_json::json!({
        "id": r.id, "mesh_id": r.mesh_id, "sender_member_id": r.sender_member_id,
        "sender_pubkey": r.sender_pubkey, "sender_member_pubkey": r.sender_member_pubkey,
        "sender_name": r.sender_name, "target_spec": r.target_spec, "priority": "now",
        "nonce": r.nonce, "ciphertext": r.ciphertext, "body_version": r.body_version,
        "reply_to_id": r.reply_to_id, "mentions": r.mentions,
        "client_message_id": r.client_message_id, "request_fingerprint": r.request_fingerprint,
        "subtype": r.subtype, "created_at_ms": r.created_at_ms, "expires_at_ms": r.expires_at_ms,
        "recipients": r.recipients, "key_epoch": r.key_epoch,
    });
    rmp_serde::to_vec_named(&map).unwrap()
}

/// A queued row reads back whole, and by its head alone, whether its record is stored by
/// position (as now, keys as bytes) or by name (as before); by position it takes a good
/// deal less room.
#[test]
fn a_queued_row_reads_back_whole_and_by_its_head_in_either_form() {
    let full = full_record();
    let (by_position, by_name) = (encode_by_position(&full), stored_by_name(&full));
    assert!(
        by_position.len() + 300 < by_name.len(),
        "{} bytes by position, {} by name",
        by_position.len(),
        by_name.len()
    );
    // Also a record whose target is not a key and which has no client message id.
    let plain = message("plain", &["b"]);
    for r in [full, plain] {
        let by_position = encode_by_position(&r);
        assert!(
            index::head_by_position(&by_position).is_some(),
            "a record by position has its head read straight"
        );
        check_either_form(&r, &by_position, &stored_by_name(&r));
    }
}

fn check_either_form(r: &MessageRecord, by_position: &[u8], by_name: &[u8]) {
    for bytes in [by_position, by_name] {
        let row = queued_row(7, bytes);
        let (seq, whole) = read_queued(&row).unwrap();
        assert_eq!((seq, format!("{whole:?}")), (7, format!("{r:?}")));
        let (seq, head) = read_head(&row).unwrap();
        assert_eq!(
            (
                seq,
                head.sender_member_id,
                head.target_spec,
                head.client_message_id,
                head.expires_at_ms,
                head.recipients
            ),
            (
                7,
                r.sender_member_id.clone(),
                r.target_spec.clone(),
                r.client_message_id.clone(),
                r.expires_at_ms,
                r.recipients.clone()
            )
        );
    }
}

/// Messages an earlier broker stored by name are still queued after an upgrade: walked,
/// found, delivered, and their status kept.
#[tokio::test]
async fn messages_stored_by_name_before_an_upgrade_are_delivered_and_tracked() {
    let dir = tempfile::tempdir().unwrap();
    let r = full_record();
    {
        let store = Store::open(dir.path()).unwrap();
        let row = queued_row(1, &stored_by_name(&r));
        store
            .write(move |tx| {
                tx.open_table(QUEUED)?
                    .insert((MESH, "full"), row.as_slice())?;
                tx.open_table(META)?
                    .insert("queue_seq", encode(&3u64).as_slice())?;
                Ok(())
            })
            .await
            .unwrap();
        store.close();
    }
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(ids(&store, &[key("b")]), ["full"]);
    assert_eq!(ids(&store, &[key("c")]), ["full"]);
    let PrefixLookup::Found(t) = store.find_message(MESH, "full").unwrap() else {
        panic!("the message is found");
    };
    assert_eq!(t.target_spec, r.target_spec);
    for to in ["b", "c"] {
        store
            .mark_delivered(vec![(key(to), "full".to_string())], 5)
            .await
            .unwrap();
    }
    assert_eq!(rows(&store, MESH, "full"), (false, true));
    let t = tracked(&store, "full");
    let keys: Vec<&str> = t.recipients.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(keys, [key("b"), key("c")]);
}
