//! Embedded storage. redb (`<data>/mesh.redb`) is the source of truth; values are rmp-serde
//! structs with named fields so records can grow fields without a migration.
//!
//! All writes go through one writer thread that takes every pending job, applies them in one
//! transaction and commits once (durably) before answering any of them: group commit, one fsync
//! for many requests. Reads open their own read transactions and never wait for the writer.

pub mod audit;
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

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock, mpsc as std_mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use redb::{
    Database, ReadTransaction, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::{Notify, oneshot};

pub use approvals::{
    ApprovalCopy, ApprovalDecided, ApprovalRow, DecideOutcome, MAX_PENDING_APPROVALS,
};
pub use audit::{AuditActor, AuditEvent, AuditNote};
pub use clock::{ClockRecord, PAUSED_DUE_MS, TICK_SIM_MS};
pub use contexts::ContextRecord;
pub use deployments::{Deployed, DeploymentRow, MAX_DEPLOYMENTS};
pub use files::{FileAccess, FileRecord, GrantOutcome};
pub use grants::{GrantChange, GrantRow, MAX_GRANT_ROWS, Right};
pub use keys::{
    AdminListRefusal, MAX_KEYS_RETURNED, Rotated, Rotation, RotationRefusal, holds_keys,
};
pub use members::{BanRecord, BanRefusal, MAX_BAN_REASON};
pub use memory::{Forgotten, MAX_RECALL, MemoryError, MemoryIndex, MemoryRecord, Recalled};
pub use meshes::{
    ClaimError, ClaimOk, CreateMesh, InviteRef, InviteRefusal, MAX_UNEXPIRED_INVITES, RevokeError,
    RootKeyProof,
};
pub use perms::{MemberPerms, Overrides, PermsChange, PermsRefusal};
pub use profile::ProfileRefusal;
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

/// The schema this build writes. Bump it with a migration in [`Store::open`].
/// 2: no root keys held for new meshes, v3 invites indexed by id (see `meshes::migrate_to_v2`).
const SCHEMA_VERSION: u32 = 2;
/// redb's page cache.
const CACHE_BYTES: usize = 64 << 20;
/// Most jobs folded into one transaction; bounds the latency of the first job in a batch.
const MAX_BATCH: usize = 4096;
/// Jobs that may wait for the writer before connections stop reading new requests
/// ([`Store::room`]); a job holds at most one request's data (up to a frame, 64 KiB).
const WRITER_QUEUE: usize = 1024;
/// How often a failed store checks whether it can write again.
const RETRY_EVERY: Duration = Duration::from_secs(1);
/// Free space the store wants to see (a probe file it writes, syncs and deletes) before it
/// reopens the database after a failure.
const PROBE_BYTES: usize = 1 << 20;

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

/// One queued write: applied inside the shared transaction, answered after the commit.
trait Job: Send {
    /// Applies the job; an error is a storage failure that must abort the batch.
    fn apply(&mut self, txn: &WriteTransaction) -> Result<(), StoreError>;
    fn finish(self: Box<Self>, committed: Result<(), StoreError>);
}

struct TypedJob<F, R> {
    f: Option<F>,
    out: Option<Result<R, StoreError>>,
    reply: oneshot::Sender<Result<R, StoreError>>,
}

impl<F, R> Job for TypedJob<F, R>
where
    F: FnOnce(&WriteTransaction) -> Result<R, StoreError> + Send,
    R: Send,
{
    fn apply(&mut self, txn: &WriteTransaction) -> Result<(), StoreError> {
        let Some(f) = self.f.take() else {
            return Ok(());
        };
        let out = f(txn);
        let failed = out.as_ref().err().cloned();
        self.out = Some(out);
        failed.map_or(Ok(()), Err)
    }

    fn finish(self: Box<Self>, committed: Result<(), StoreError>) {
        let result = match committed {
            Ok(()) => self.out.unwrap_or(Err(StoreError::Closed)),
            Err(e) => Err(e),
        };
        let _ = self.reply.send(result);
    }
}

enum WriterMsg {
    Job(Box<dyn Job>),
    Stop,
}

/// Counters the metrics endpoint reports.
#[derive(Debug, Default)]
pub struct StoreStats {
    pub commits: AtomicU64,
    pub writes: AtomicU64,
}

/// What the writer shares with every handle: its queue length and whether it can write.
#[derive(Default)]
struct WriterShared {
    /// Jobs sent and not yet answered.
    queued: AtomicUsize,
    /// Woken when the writer answered a batch.
    room: Notify,
    /// Why writes are refused, while they are.
    failure: Mutex<Option<String>>,
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
}

impl Store {
    /// Opens (or creates) `<dir>/mesh.redb` and starts the writer thread.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Db(format!("cannot create {}: {e}", dir.display())))?;
        // redb's default page cache is 1 GiB; a broker for a few teams needs far less, and
        // the OS page cache still holds hot data.
        let path = dir.join("mesh.redb");
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(&path)?;
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
        if found != Some(SCHEMA_VERSION) {
            tx.open_table(META)?
                .insert("schema_version", encode(&SCHEMA_VERSION).as_slice())?;
        }
        quotas::count_once(&tx)?;
        queue::index_expiry_once(&tx)?;
        let seq = queue::load_seq(&tx)?;
        tx.commit()?;
        let db = Arc::new(RwLock::new(Some(Arc::new(db))));
        let stats = Arc::new(StoreStats::default());
        let shared = Arc::new(WriterShared::default());
        let (jobs, rx) = std_mpsc::channel();
        let writer = {
            let writer = Writer {
                db: db.clone(),
                path,
                rx,
                stats: stats.clone(),
                shared: shared.clone(),
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

    /// A read snapshot; never waits for the writer.
    pub fn read(&self) -> Result<ReadTransaction, StoreError> {
        let db = self
            .db
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(|| StoreError::Io("the database is being reopened".into()))?;
        Ok(db.begin_read()?)
    }

    /// True when a write can be committed (used by `/health/ready`).
    pub async fn is_writable(&self) -> bool {
        self.writable().await.is_ok()
    }

    /// Commits an empty write: `Err` says why the store cannot write now.
    pub async fn writable(&self) -> Result<(), StoreError> {
        if let Some(why) = self.failure() {
            return Err(StoreError::Io(why));
        }
        self.write(|_| Ok(())).await
    }

    /// Why writes are refused, while they are (after a failed commit, until the store has
    /// reopened itself).
    pub fn failure(&self) -> Option<String> {
        self.shared
            .failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
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

    /// Commits every job queued so far and stops the writer thread.
    pub fn close(&self) {
        let handle = self.writer.lock().ok().and_then(|mut h| h.take());
        if let Some(handle) = handle {
            let _ = self.jobs.send(WriterMsg::Stop);
            let _ = handle.join();
        }
    }
}

/// The writer thread: the only one that writes; answers every job after its batch committed.
struct Writer {
    db: Arc<RwLock<Option<Arc<Database>>>>,
    path: PathBuf,
    rx: std_mpsc::Receiver<WriterMsg>,
    stats: Arc<StoreStats>,
    shared: Arc<WriterShared>,
}

impl Writer {
    fn run(self) {
        let mut stop = false;
        let mut failed_at: Option<Instant> = None;
        while !stop {
            let first = if failed_at.is_some() {
                match self.rx.recv_timeout(RETRY_EVERY) {
                    Ok(m) => Some(m),
                    Err(std_mpsc::RecvTimeoutError::Timeout) => None,
                    Err(std_mpsc::RecvTimeoutError::Disconnected) => break,
                }
            } else {
                match self.rx.recv() {
                    Ok(m) => Some(m),
                    Err(_) => break,
                }
            };
            if let Some(at) = failed_at
                && at.elapsed() >= RETRY_EVERY
            {
                failed_at = if self.recover() {
                    None
                } else {
                    Some(Instant::now())
                };
            }
            let mut batch: Vec<Box<dyn Job>> = Vec::new();
            match first {
                Some(WriterMsg::Job(j)) => batch.push(j),
                Some(WriterMsg::Stop) => stop = true,
                None => {}
            }
            while batch.len() < MAX_BATCH {
                match self.rx.try_recv() {
                    Ok(WriterMsg::Job(j)) => batch.push(j),
                    Ok(WriterMsg::Stop) => stop = true,
                    Err(_) => break,
                }
            }
            if batch.is_empty() {
                continue;
            }
            let n = batch.len();
            let committed = match self.failure() {
                // redb refuses every write after a failed one; answer at once, never a false ack.
                Some(why) => Err(StoreError::Io(why)),
                None => self.commit(&mut batch),
            };
            self.stats.commits.fetch_add(1, Ordering::Relaxed);
            self.stats.writes.fetch_add(n as u64, Ordering::Relaxed);
            if let Err(e) = &committed {
                if failed_at.is_none()
                    && let StoreError::Io(why) = e
                {
                    tracing::error!(
                        "storage failed: {why}. Writes are refused (requests get an error, \
                         /health/ready answers 503) until {} can be written again; \
                         checking every {}s",
                        self.path.display(),
                        RETRY_EVERY.as_secs()
                    );
                    *self
                        .shared
                        .failure
                        .lock()
                        .unwrap_or_else(|p| p.into_inner()) = Some(why.clone());
                    failed_at = Some(Instant::now());
                } else if failed_at.is_none() {
                    tracing::error!("write batch of {n} failed: {e}");
                }
            }
            for job in batch {
                job.finish(committed.clone());
            }
            self.shared.queued.fetch_sub(n, Ordering::AcqRel);
            self.shared.room.notify_waiters();
        }
    }

    fn failure(&self) -> Option<String> {
        self.shared
            .failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn commit(&self, batch: &mut [Box<dyn Job>]) -> Result<(), StoreError> {
        let db = self
            .db
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(|| StoreError::Io("the database is closed".into()))?;
        let txn = db.begin_write()?;
        for job in batch.iter_mut() {
            if let Err(e) = job.apply(&txn) {
                let _ = txn.abort();
                return Err(match e {
                    StoreError::Io(why) => StoreError::Io(why),
                    _ => StoreError::Db("a write in this batch failed; nothing was stored".into()),
                });
            }
        }
        txn.commit()?;
        Ok(())
    }

    /// After a failed write: once a probe file can be written and synced beside the database,
    /// closes and reopens it (redb refuses every write after an I/O error until then).
    fn recover(&self) -> bool {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        if let Err(e) = probe(dir) {
            tracing::debug!("storage still cannot write: {e}");
            return false;
        }
        let old = self.db.write().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(old) = old {
            // Readers hold the handle only while they begin a transaction.
            let mut old = Some(old);
            for _ in 0..500 {
                match Arc::try_unwrap(old.take().expect("still held")) {
                    Ok(db) => {
                        if let Err(e) = db.close() {
                            tracing::warn!("closing the failed database: {e}");
                        }
                        break;
                    }
                    Err(shared) => {
                        old = Some(shared);
                        std::thread::sleep(Duration::from_millis(2));
                    }
                }
            }
            if let Some(still) = old {
                *self.db.write().unwrap_or_else(|p| p.into_inner()) = Some(still);
                return false;
            }
        }
        match Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(&self.path)
        {
            Ok(db) => {
                *self.db.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(db));
                *self
                    .shared
                    .failure
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()) = None;
                tracing::warn!(
                    "storage recovered: {} reopened, writes accepted again",
                    self.path.display()
                );
                true
            }
            Err(e) => {
                tracing::error!("cannot reopen {}: {e}", self.path.display());
                false
            }
        }
    }
}

/// Writes, syncs and removes a probe file in `dir`.
fn probe(dir: &Path) -> std::io::Result<()> {
    use std::io::Write;
    let path = dir.join(".write-probe");
    let result = (|| {
        let mut f = std::fs::File::create(&path)?;
        f.write_all(&vec![0u8; PROBE_BYTES])?;
        f.sync_all()
    })();
    let _ = std::fs::remove_file(&path);
    result
}

/// Serialises a record for storage.
pub(crate) fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Our records are plain structs of strings, numbers and vectors: they always serialise.
    rmp_serde::to_vec_named(value).unwrap_or_default()
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
