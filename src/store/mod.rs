//! Embedded storage. redb (`<data>/mesh.redb`) is the source of truth; values are rmp-serde
//! structs with named fields so records can grow fields without a migration.
//!
//! All writes go through one writer thread that takes every pending job, applies them in one
//! transaction and commits once (durably) before answering any of them: group commit, one fsync
//! for many requests. Reads open their own read transactions and never wait for the writer.

pub mod audit;
mod cache;
mod clock;
mod contexts;
mod deployments;
mod files;
mod grants;
mod keys;
mod members;
mod memory;
mod meshes;
mod perms;
mod profile;
mod queue;
mod quotas;
mod records;
mod rows;
mod schedules;
mod shared_tools;
mod skills;
mod state;
mod streams;
mod tasks;
mod turns;
mod vault;
// Per-mesh SQL on SQLite (issue 16).
pub mod sql;
// Graph (issue 16): per-mesh Cypher graphs, each in its own SQLite file.
pub mod graph;
// Vectors (issue 16).
mod vectors;
// URL watches and inbound webhooks (issue 17).
mod watches;
mod webhooks;
// Telegram bridge (issue 17).
mod telegram;
// Remote approval of tool use (issue 18).
mod approvals;
mod writer;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, mpsc as std_mpsc};
use std::thread::JoinHandle;

use redb::{Database, ReadableTable, TableDefinition, WriteTransaction};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::oneshot;

use crate::protocol::codec::in_scratch;

pub use approvals::{
    ApprovalCopy, ApprovalDecided, ApprovalRow, DecideOutcome, MAX_PENDING_APPROVALS,
};
pub use audit::{AuditActor, AuditEvent, AuditNote};
pub use clock::{ClockRecord, PAUSED_DUE_MS, TICK_SIM_MS};
pub use contexts::ContextRecord;
pub use deployments::{Deployed, DeploymentRow, MAX_DEPLOYMENTS};
pub use files::{FileAccess, FileRecord, GrantOutcome, UploadRefusal};
pub use grants::{GrantChange, GrantRow, MAX_GRANT_ROWS, Right};
pub use keys::{
    AdminListRefusal, MAX_KEYS_RETURNED, Rotated, Rotation, RotationRefusal, holds_keys,
};
pub use members::{BanRecord, BanRefusal, MAX_BAN_REASON};
pub use memory::{Forgotten, MAX_RECALL, MemoryError, MemoryIndex, MemoryRecord, Recalled};
pub use meshes::{
    ClaimError, ClaimOk, CreateMesh, InviteRef, InviteRefusal, MAX_UNEXPIRED_INVITES, RevokeError,
    RootKeyProof, SettingsRefusal,
};
pub use perms::{MemberPerms, Overrides, PermsChange, PermsRefusal};
pub use profile::ProfileRefusal;
use queue::QueueTables;
pub use queue::{Enqueued, PrefixLookup, Tracked, Visit, Walked};
pub use quotas::{MeshQuotas, Quota, QuotaExceeded};
pub use records::*;
pub use schedules::ScheduleRecord;
pub use shared_tools::{MAX_MCP_SERVERS, McpRegistered, McpRemoved, McpServerRow, McpToolRow};
pub use skills::{
    MAX_SKILL_VERSIONS, MAX_SKILLS, SkillBundleRecord, SkillRecord, SkillRefusal, SkillRemoved,
};
pub use sql::{SqlDatabases, SqlError, SqlLimits};
pub use state::StateRecord;
pub use streams::StreamRecord;
pub use tasks::{Actor, TaskCounts, TaskRecord, TaskRefusal, TaskStatus};
pub use telegram::{BridgeKeyRefusal, BridgeRootKey};
pub use telegram::{TelegramInvite, TelegramJoinRefusal, TelegramRecord, TelegramUserRecord};
pub use vault::{ServiceSeal, VaultRecord, VaultRefusal};
pub use vectors::DEFAULT_MAX_VECTOR_BYTES;
pub use vectors::{
    CollectionRecord, EF_SEARCH, MAX_DIMENSION, MAX_FILTER_BYTES, MAX_METADATA_BYTES,
    MAX_SEARCH_LIMIT, Metric, NewPoint, PointRecord, VectorError, VectorHit, VectorIndex,
    VectorRefusal, check_collection_name, check_dimension, check_record_id, check_vector,
    set_ef_search, vector_from_json,
};
pub use vectors::{EXACT_UP_TO, set_exact_up_to};
pub use watches::{PollOutcome, WatchRecord};
pub use webhooks::{WebhookRecord, WebhookRefusal};
use writer::{Batch, TypedJob, Writer, WriterMsg, WriterShared};
pub use writer::{Snapshot, avoid_huge_pages, collect_freed_memory};

/// The schema this build writes. Bump it with a migration in [`Store::open`].
/// 2: no root keys held for new meshes, v3 invites indexed by id (see `meshes::migrate_to_v2`).
/// 3: client-message-id index entries may wait in memory; after a crash, `META` names where
/// the next open rebuilds them from (`queue::client_keys`), which an older build would not do.
/// 4: one `QUEUED` row per waiting message and `ACKS` rows instead of the per-recipient queue
/// tables; the queues are kept in memory (see `queue::index`, `queue::migrate`).
/// 5: no `expiry` table: the queues in memory keep waiting messages in the order their
/// retention ends, and an older build would never expire what this one stores.
/// 6: message records stored by position, keys as bytes (see [`records::MessageRecord`]),
/// which an older build would misread; rows stored by name still read, so nothing migrates.
const SCHEMA_VERSION: u32 = 6;
/// Jobs that may wait for the writer before connections stop reading new requests
/// ([`Store::room`]); a job holds at most one request's data (up to a frame, 64 KiB).
const WRITER_QUEUE: usize = 1024;

pub(crate) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("storage error: {0}")]
    Db(String),
    #[error("stored record is unreadable: {0}")]
    Decode(String),
    #[error(
        "the data directory was written by a newer claudemesh (schema {found}, this build knows {known})"
    )]
    NewerSchema { found: u32, known: u32 },
    #[error("the store is shutting down")]
    Closed,
    /// Writing to disk failed (disk full, I/O error): nothing more is written until the store
    /// has reopened itself.
    #[error("storage failed: {0}")]
    Io(String),
}

impl StoreError {
    fn from_redb(e: redb::Error) -> StoreError {
        match e {
            redb::Error::Io(_)
            | redb::Error::PreviousIo
            | redb::Error::Backend(_)
            | redb::Error::DatabaseClosed => StoreError::Io(e.to_string()),
            other => StoreError::Db(other.to_string()),
        }
    }
}

macro_rules! db_error_from {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self { StoreError::from_redb(e.into()) }
        }
    )*};
}
db_error_from!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// Upper bounds, in microseconds, of the commit-duration histogram's buckets (and one more for
/// everything above the last).
pub const COMMIT_BUCKETS_US: [u64; 10] = [
    250, 500, 1_000, 2_000, 5_000, 10_000, 25_000, 50_000, 100_000, 1_000_000,
];

/// Counters the metrics endpoint reports.
#[derive(Debug, Default)]
pub struct StoreStats {
    pub commits: AtomicU64,
    pub writes: AtomicU64,
    /// Times the idle store gave redb's page cache back.
    pub cache_releases: AtomicU64,
    /// Times the store reopened its database after a failed commit, once storage answered.
    pub recoveries: AtomicU64,
    /// How long each commit took (its page writes and its fsync), counted in the first bucket
    /// of [`COMMIT_BUCKETS_US`] it fits; the last counts those above every bound.
    pub commit_buckets: [AtomicU64; COMMIT_BUCKETS_US.len() + 1],
    /// Sum of the commits' durations, in microseconds.
    pub commit_micros: AtomicU64,
}

impl StoreStats {
    fn record_commit(&self, took: std::time::Duration) {
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        let at = COMMIT_BUCKETS_US
            .iter()
            .position(|&bound| us <= bound)
            .unwrap_or(COMMIT_BUCKETS_US.len());
        self.commit_buckets[at].fetch_add(1, Ordering::Relaxed);
        self.commit_micros.fetch_add(us, Ordering::Relaxed);
    }
}

/// Handle to the store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    /// `None` only while the writer reopens the database after a failure.
    db: Arc<RwLock<Option<Arc<Database>>>>,
    jobs: std_mpsc::Sender<WriterMsg>,
    shared: Arc<WriterShared>,
    pub stats: Arc<StoreStats>,
    writer: Arc<Mutex<Option<JoinHandle<()>>>>,
    /// Next queue sequence number; only the writer thread takes from it.
    seq: Arc<AtomicU64>,
    caches: Arc<cache::Caches>,
}

impl Store {
    /// Opens (or creates) `<dir>/mesh.redb` and starts the writer thread.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Db(format!("cannot create {}: {e}", dir.display())))?;
        // redb's default page cache is 1 GiB; a broker for a few teams needs far less, and
        // the OS page cache still holds hot data.
        let path = dir.join("mesh.redb");
        let db = writer::open_database(&path)?;
        let tx = db.begin_write()?;
        let found = match tx.open_table(META)?.get("schema_version")? {
            Some(v) => Some(decode::<u32>(v.value())?),
            None => None,
        };
        if let Some(v) = found.filter(|v| *v > SCHEMA_VERSION) {
            return Err(StoreError::NewerSchema {
                found: v,
                known: SCHEMA_VERSION,
            });
        }
        records::create_tables(&tx)?;
        // Migrations run in the same transaction as the version bump: all or nothing.
        if found.is_some_and(|v| v < 2) {
            meshes::migrate_to_v2(&tx)?;
        }
        if found.is_some_and(|v| v < 4) {
            queue::migrate::to_v4(&tx)?;
        }
        if found.is_some_and(|v| v < 5) {
            queue::migrate::to_v5(&tx)?;
        }
        if found != Some(SCHEMA_VERSION) {
            tx.open_table(META)?
                .insert("schema_version", encode(&SCHEMA_VERSION).as_slice())?;
        }
        quotas::count_once(&tx)?;
        queue::client_keys::recover(&tx)?;
        let client_keys = queue::client_keys::filtered(&tx)?;
        let seq = queue::load_seq(&tx)?;
        let queues = queue::index::build(&tx)?;
        tx.commit()?;
        let db = Arc::new(RwLock::new(Some(Arc::new(db))));
        let stats = Arc::new(StoreStats::default());
        let shared = WriterShared::default();
        *queue::index::lock(&shared.queue_index) = queues;
        *queue::client_keys::lock(&shared.client_keys) = client_keys;
        let shared = Arc::new(shared);
        let (jobs, rx) = std_mpsc::channel();
        let writer = {
            let writer = Writer {
                db: db.clone(),
                path,
                rx,
                stats: stats.clone(),
                shared: shared.clone(),
                runtime: tokio::runtime::Handle::try_current().ok(),
            };
            std::thread::Builder::new()
                .name("store-writer".into())
                .spawn(move || writer.run())
                .map_err(|e| StoreError::Db(format!("cannot start the writer thread: {e}")))?
        };
        Ok(Store {
            db,
            jobs,
            shared,
            stats,
            writer: Arc::new(Mutex::new(Some(writer))),
            seq: Arc::new(AtomicU64::new(seq)),
            caches: Arc::default(),
        })
    }

    /// Runs `f` inside a write transaction and answers once that transaction is durably
    /// committed. `f` may share its transaction with other jobs, so it must only return `Err`
    /// for storage failures (which fail the whole batch); a refusal belongs in `R`.
    pub async fn write<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&WriteTransaction) -> Result<R, StoreError> + Send + 'static,
    {
        self.submit(f).await
    }

    /// Like [`Store::write`], but the job is queued at the call, not at the first poll: jobs
    /// submitted one after another commit in that order, which keeps FIFO promises.
    pub fn submit<R, F>(&self, f: F) -> impl Future<Output = Result<R, StoreError>> + use<R, F>
    where
        R: Send + 'static,
        F: FnOnce(&WriteTransaction) -> Result<R, StoreError> + Send + 'static,
    {
        self.submit_job(move |batch: &mut Batch| f(batch.txn()?))
    }

    /// [`Store::submit`] for a job that writes only the message queue's tables, which stay
    /// open from one such job to the next within a batch.
    fn submit_queue<R, F>(&self, f: F) -> impl Future<Output = Result<R, StoreError>> + use<R, F>
    where
        R: Send + 'static,
        F: FnOnce(&mut QueueTables) -> Result<R, StoreError> + Send + 'static,
    {
        self.submit_job(move |batch: &mut Batch| f(batch.queue()?))
    }

    fn submit_job<R, F>(&self, f: F) -> impl Future<Output = Result<R, StoreError>> + use<R, F>
    where
        R: Send + 'static,
        F: for<'b, 't> FnOnce(&'b mut Batch<'t>) -> Result<R, StoreError> + Send + 'static,
    {
        let (reply, rx) = oneshot::channel();
        let job = TypedJob {
            f: Some(f),
            out: None,
            reply,
        };
        self.shared.queued.fetch_add(1, Ordering::AcqRel);
        let sent = self.jobs.send(WriterMsg::Job(Box::new(job))).is_ok();
        if !sent {
            self.shared.queued.fetch_sub(1, Ordering::AcqRel);
        }
        async move {
            if !sent {
                return Err(StoreError::Closed);
            }
            rx.await.map_err(|_| StoreError::Closed)?
        }
    }

    /// A read snapshot; never waits for the writer's transactions.
    pub fn read(&self) -> Result<Snapshot, StoreError> {
        Snapshot::begin(&self.db, &self.shared)
    }

    /// Commits an empty write: `Err` says why the store cannot write now (`/health/ready`).
    pub async fn writable(&self) -> Result<(), StoreError> {
        if let Some(why) = self.failure() {
            return Err(StoreError::Io(why));
        }
        self.write(|_| Ok(())).await
    }

    /// Why writes are refused, while they are (after a failed commit, until the store has
    /// reopened itself).
    pub fn failure(&self) -> Option<String> {
        self.shared.failure()
    }

    /// Resolves once the writer's queue has room. Connections wait here before they read the
    /// next request, so a flood of writes waits in the peers' sockets, not in our memory.
    pub async fn room(&self) {
        let shared = &self.shared;
        loop {
            let notified = shared.room.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if shared.queued.load(Ordering::Acquire) < WRITER_QUEUE {
                return;
            }
            notified.await;
        }
    }

    /// Stops the writer thread as a crash would: jobs queued are dropped, nothing more is
    /// written.
    #[cfg(test)]
    pub(crate) fn crash(&self) {
        let handle = self.writer.lock().ok().and_then(|mut h| h.take());
        if let Some(handle) = handle {
            let _ = self.jobs.send(WriterMsg::Crash);
            let _ = handle.join();
        }
    }

    /// Commits every job queued so far and stops the writer thread.
    pub fn close(&self) {
        let handle = self.writer.lock().ok().and_then(|mut h| h.take());
        if let Some(handle) = handle {
            let _ = self.jobs.send(WriterMsg::Stop);
            let _ = handle.join();
        }
    }
}

/// Serialises a record for storage.
pub(crate) fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Our records are plain structs of strings, numbers and vectors: they always serialise.
    in_scratch(
        |b| rmp_serde::encode::write_named(b, value),
        |written| written.map(<[u8]>::to_vec).unwrap_or_default(),
    )
}

/// Serialises a record by position (a MessagePack array, no field names): for the records
/// stored per message, whose types keep their fields' order for it. [`decode`] reads both forms.
pub(crate) fn encode_by_position<T: Serialize>(value: &T) -> Vec<u8> {
    by_position_in_place(value, <[u8]>::to_vec)
}

/// [`encode_by_position`] handing the encoding to `read` where it was written (this thread's
/// scratch buffer), for a caller that only copies it on, into a table.
pub(crate) fn by_position_in_place<T: Serialize, R>(value: &T, read: impl FnOnce(&[u8]) -> R) -> R {
    in_scratch(
        |b| rmp_serde::encode::write(b, value),
        |written| read(written.unwrap_or_default()),
    )
}

/// Reads a stored record.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, StoreError> {
    rmp_serde::from_slice(bytes).map_err(|e| StoreError::Decode(e.to_string()))
}

/// Decodes an optional stored value as returned by `table.get(..)?`.
pub(crate) fn decode_opt<T: DeserializeOwned>(
    guard: Option<redb::AccessGuard<'_, &[u8]>>,
) -> Result<Option<T>, StoreError> {
    guard.map(|g| decode(g.value())).transpose()
}

/// A store in a fresh temporary directory, for unit tests; the directory goes when it drops.
#[cfg(test)]
pub(crate) fn test_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = Store::open(dir.path()).expect("a store in it");
    (dir, store)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store records the schema it is written in, so that an older broker opening it later
    /// refuses it (`NewerSchema`) instead of misreading it.
    #[test]
    fn a_store_records_its_schema_and_a_newer_one_is_refused() {
        let (dir, store) = test_store();
        store.close();
        drop(store);
        let db = Database::open(dir.path().join("mesh.redb")).expect("the store's file");
        let tx = db.begin_write().unwrap();
        let mut meta = tx.open_table(META).unwrap();
        let recorded = meta.get("schema_version").unwrap();
        let recorded = recorded.map(|g| decode::<u32>(g.value()).unwrap());
        assert_eq!(recorded, Some(SCHEMA_VERSION));
        meta.insert("schema_version", encode(&(SCHEMA_VERSION + 1)).as_slice())
            .unwrap();
        drop(meta);
        tx.commit().unwrap();
        drop(db);
        match Store::open(dir.path()) {
            Err(StoreError::NewerSchema { found, known }) => {
                assert_eq!((found, known), (SCHEMA_VERSION + 1, SCHEMA_VERSION));
            }
            other => panic!("a newer schema was not refused: {:?}", other.map(|_| ())),
        }
    }
}
