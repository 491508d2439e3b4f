//! A queue stored by schema 3, kept as a file (`tests/fixtures/store-v3/mesh.redb`) so that a
//! later schema's migration is tested against what this code wrote, not against a copy of it
//! kept alive (docs/store-layout.md §6, 12). It holds each state a migration must carry over:
//! direct messages waiting, one with a client message id; a broadcast one recipient has
//! acknowledged; a broadcast from before `WAITING`; a held `low` message; a message to a
//! session key; a message acknowledged by everyone (its status and client id kept); client ids
//! still waiting to be written (the store was stopped as a crash stops it); and a record naming
//! one recipient twice (a state `send` cannot make, which schema 3 leaves with a stray queue
//! row).
//!
//! It was written by schema 3's code (the ignored test `write_the_fixture` at commit f2541ee,
//! which only schema 3 can run); the test below says what a store opened from it must show,
//! through schema 4's migration (`queue::migrate`).

use super::*;

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/store-v3/mesh.redb"
);

/// Messages to `b`, each with a client id (`cid-<n>`), sent at once just before the crash.
const FRANKS: usize = 200;

/// The session key messages are sent to: `s/<mesh>/<64 hex>`.
fn session_key() -> String {
    format!("s/{MESH}/{}", "5e".repeat(32))
}

/// Message `n` of the fixture (ids sort as they were sent), from alice to `to`.
fn fixture_message(n: u32, to: &[&str]) -> MessageRecord {
    let mut m = message(&format!("v3-{n:02}"), to);
    m.created_at_ms = 1_000 + i64::from(n);
    m
}

/// Opens a copy of the fixture (it is never written in place).
fn open_fixture() -> (tempfile::TempDir, Store) {
    let dir = fixture_copy();
    let store = Store::open(dir.path()).expect("the v3 store opens");
    (dir, store)
}

/// What a store opened from the schema 3 fixture shows: every queue in the order it was
/// stored, each message's status, resends recognised by client id (also the ids the crash
/// left unwritten), and acknowledgements finishing what was left.
#[tokio::test]
async fn a_schema_3_store_opens_with_its_queues_statuses_and_client_ids() {
    let (_dir, store) = open_fixture();
    assert_eq!(
        ids(&store, &[key("bob"), session_key()]),
        ["v3-01", "v3-02", "v3-03", "v3-04", "v3-06"],
        "bob and his session, merged in stored order"
    );
    assert_eq!(ids(&store, &[key("carol")]), ["v3-04"]);
    assert_eq!(ids(&store, &[key("dave")]), ["v3-03", "v3-05"]);
    assert_eq!(
        ids(&store, &[key("erin")]),
        ["v3-08"],
        "a key named twice is queued once (schema 3 queued it twice)"
    );

    let acks = |t: Tracked| -> Vec<(String, Option<i64>)> {
        t.recipients.into_iter().map(|(k, _, at)| (k, at)).collect()
    };
    assert_eq!(
        acks(tracked(&store, "v3-03")),
        [
            (key("bob"), None),
            (key("carol"), Some(2_000)),
            (key("dave"), None)
        ]
    );
    let done = tracked(&store, "v3-07");
    assert_eq!(done.recipients.len(), 1);
    assert_eq!(done.recipients[0].1, "carol");
    assert_eq!(done.recipients[0].2, Some(2_100));
    assert!(matches!(
        store.find_message(MESH, "v3-99").unwrap(),
        PrefixLookup::NotFound
    ));

    assert_eq!(ids(&store, &[key("b")]).len(), FRANKS);

    // Resends: waiting, delivered, and ones whose index entries the crash left unwritten.
    let last = format!("v3-50-{:04}", FRANKS - 1);
    let recent = [
        ("cid-0".to_string(), "v3-50-0000".to_string()),
        (format!("cid-{}", FRANKS - 1), last),
    ];
    let others = [("cid-direct", "v3-01"), ("cid-done", "v3-07")]
        .map(|(c, f)| (c.to_string(), f.to_string()));
    for (cid, first) in others.into_iter().chain(recent) {
        let mut again = fixture_message(20, &["bob"]);
        again.client_message_id = Some(cid.clone());
        let e = store.enqueue(again).await.unwrap();
        assert!(!e.fresh, "{cid} stored twice");
        assert_eq!(e.record.id, first, "{cid}");
    }

    // The old broadcast needs both acknowledgements; the acknowledged one needs bob's and dave's.
    store
        .mark_delivered(
            vec![
                (key("bob"), "v3-04".into()),
                (key("bob"), "v3-03".into()),
                (key("dave"), "v3-03".into()),
            ],
            3_000,
        )
        .await
        .unwrap();
    assert_eq!(rows(&store, MESH, "v3-03"), (false, true), "v3-03 done");
    assert_eq!(
        rows(&store, MESH, "v3-04"),
        (true, false),
        "carol has not read v3-04"
    );
    store
        .mark_delivered(vec![(key("carol"), "v3-04".into())], 3_100)
        .await
        .unwrap();
    assert_eq!(rows(&store, MESH, "v3-04"), (false, true));
    // New messages queue behind the old ones.
    store.enqueue(fixture_message(30, &["bob"])).await.unwrap();
    assert_eq!(ids(&store, &[key("bob")]), ["v3-01", "v3-02", "v3-30"]);
}

/// A copy of the fixture, opened as a raw redb file, for the migration to run on by hand.
fn raw_fixture() -> (tempfile::TempDir, redb::Database) {
    let dir = fixture_copy();
    let db = redb::Database::open(dir.path().join("mesh.redb")).unwrap();
    (dir, db)
}

/// A temporary directory holding a copy of the fixture (it is never written in place).
fn fixture_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(FIXTURE, dir.path().join("mesh.redb")).expect("the v3 fixture");
    dir
}

/// What the migration says it did to `db`, run in a transaction left uncommitted.
fn counted(db: &redb::Database) -> migrate::Counts {
    let tx = db.begin_write().unwrap();
    migrate::to_v4(&tx).unwrap()
}

/// What the migration says it found in the fixture: every message and waiting entry, the one
/// acknowledgement, and nothing out of place.
#[test]
fn the_migration_counts_what_it_carried_over() {
    let (_dir, db) = raw_fixture();
    let counts = counted(&db);
    let messages = 7 + FRANKS as u64;
    assert_eq!(
        counts,
        migrate::Counts {
            messages,
            // v3-03 waits for two, v3-04 for two: one entry more each.
            waiting: messages + 2,
            acked: 1,
            ..Default::default()
        }
    );
}

/// A schema 3 store left inconsistent (rows a crash or a bug could leave) still opens, and
/// the migration says what it resolved how: a message whose recipients' places disagree moves
/// to the end of their queues (and a later message queues after it); an unreadable record is
/// kept aside; a queue row whose message is gone is dropped; a recipient with no rows counts
/// as having acknowledged; a message nobody waits for retires with its status.
#[tokio::test]
async fn an_inconsistent_schema_3_store_opens_and_is_resolved() {
    use crate::store::records::v3::{DELIVERIES, MESSAGES, QUEUE};
    let (dir, db) = raw_fixture();
    let tx = db.begin_write().unwrap();
    {
        let mut queue = tx.open_table(QUEUE).unwrap();
        let mut deliveries = tx.open_table(DELIVERIES).unwrap();
        let mut messages = tx.open_table(MESSAGES).unwrap();
        let bob = key("bob");
        let carol = key("carol");
        // v3-04 waits for bob at 6 and carol at 7: carol's row now says 2.
        queue.remove((carol.as_str(), 7)).unwrap();
        queue.insert((carol.as_str(), 2), "v3-04").unwrap();
        // v3-05's record cannot be read.
        messages
            .insert((MESH, "v3-05"), b"\xc1 not msgpack".as_slice())
            .unwrap();
        // v3-02's record is gone; bob's queue row for it stays.
        messages.remove((MESH, "v3-02")).unwrap();
        // Carol's acknowledgement of v3-03 is gone.
        deliveries.remove((carol.as_str(), "v3-03")).unwrap();
        // Bob acknowledged v3-01 (his queue row gone, his delivery row says when).
        queue.remove((bob.as_str(), 1)).unwrap();
        let acked = crate::store::Delivery {
            seq: 1,
            mesh_id: MESH.into(),
            delivered_at_ms: Some(2_500),
        };
        deliveries
            .insert(
                (bob.as_str(), "v3-01"),
                crate::store::encode(&acked).as_slice(),
            )
            .unwrap();
    }
    tx.commit().unwrap();
    // The store's open below migrates for real.
    let counts = counted(&db);
    let messages = 6 + FRANKS as u64;
    assert_eq!(
        counts,
        migrate::Counts {
            messages,
            // v3-01 retired, v3-02 gone, v3-05 unreadable; v3-03 and v3-04 wait for two.
            waiting: messages - 2 + 2,
            acked: 1,
            never_queued: 1,
            retired: 1,
            stray: 1,
            unreadable: 1,
            moved: 1,
        }
    );
    drop(db);

    let store = Store::open(dir.path()).expect("the inconsistent v3 store opens");
    assert_eq!(
        ids(&store, &[key("bob"), session_key()]),
        ["v3-03", "v3-06", "v3-04"],
        "v3-04 moved behind everything bob had"
    );
    assert_eq!(ids(&store, &[key("carol")]), ["v3-04"]);
    assert_eq!(ids(&store, &[key("dave")]), ["v3-03"], "v3-05 kept aside");
    let unreadable: redb::TableDefinition<(&str, &str), &[u8]> =
        redb::TableDefinition::new("unreadable_v3_messages");
    let kept = store.read().unwrap().open_table(unreadable).unwrap();
    assert_eq!(
        kept.get((MESH, "v3-05")).unwrap().unwrap().value(),
        b"\xc1 not msgpack"
    );
    let acked = |id: &str| -> Vec<(String, Option<i64>)> {
        let t = tracked(&store, id);
        t.recipients.into_iter().map(|(k, _, at)| (k, at)).collect()
    };
    assert_eq!(acked("v3-01"), [(key("bob"), Some(2_500))], "v3-01 retired");
    assert_eq!(rows(&store, MESH, "v3-01"), (false, true));
    assert_eq!(
        acked("v3-03"),
        [
            (key("bob"), None),
            (key("carol"), Some(1_003)),
            (key("dave"), None)
        ],
        "carol had no rows: acknowledged when it was sent"
    );
    // A new message queues after the moved one (the next place moved on with it).
    store.enqueue(fixture_message(30, &["bob"])).await.unwrap();
    assert_eq!(ids(&store, &[key("bob")]), ["v3-03", "v3-04", "v3-30"]);
    store
        .mark_delivered(vec![(key("bob"), "v3-04".into())], 3_000)
        .await
        .unwrap();
    assert_eq!(ids(&store, &[key("bob")]), ["v3-03", "v3-30"]);
}
