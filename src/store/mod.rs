//! Embedded storage. redb (`<data>/mesh.redb`) is the source of truth; values are rmp-serde
//! structs with named fields so records can grow fields without a migration.
//!
//! All writes go through one writer thread that takes every pending job, applies them in one
//! transaction and commits once (durably) before answering any of them: group commit, one fsync
//! for many requests. Reads open their own read transactions and never wait for the writer.

mod files;
mod memory;
mod meshes;
mod profile;
mod queue;
mod quotas;
mod records;
mod schedules;
mod shared;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use redb::{
    Database, ReadTransaction, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::{mpsc, oneshot};

pub use files::{FileAccess, FileRecord, GrantOutcome};
pub use memory::{Forgotten, MAX_RECALL, MemoryError, MemoryIndex, MemoryRecord, Recalled};
pub use meshes::{
    ClaimError, ClaimOk, CreateMesh, InviteRef, InviteRefusal, MAX_UNEXPIRED_INVITES, RevokeError,
    RootKeyProof,
};
pub use queue::{Enqueued, Pending, PrefixLookup};
pub use quotas::{MeshQuotas, Quota, QuotaExceeded};
pub use records::*;
pub use schedules::ScheduleRecord;
pub use shared::{
    Actor, ContextRecord, StateRecord, StreamRecord, TaskCounts, TaskRecord, TaskRefusal,
    TaskStatus,
};

/// The schema this build writes. Bump it with a migration in [`Store::open`].
/// 2: no root keys held for new meshes, v3 invites indexed by id (see `meshes::migrate_to_v2`).
const SCHEMA_VERSION: u32 = 2;
/// redb's page cache.
const CACHE_BYTES: usize = 64 << 20;
/// Most jobs folded into one transaction; bounds the latency of the first job in a batch.
const MAX_BATCH: usize = 4096;

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
}

macro_rules! db_error_from {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self { StoreError::Db(e.to_string()) }
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
    /// Applies the job; `false` means a storage failure that must abort the batch.
    fn apply(&mut self, txn: &WriteTransaction) -> bool;
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
    fn apply(&mut self, txn: &WriteTransaction) -> bool {
        let Some(f) = self.f.take() else { return true };
        let out = f(txn);
        let ok = out.is_ok();
        self.out = Some(out);
        ok
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

/// Handle to the store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    db: Arc<Database>,
    jobs: mpsc::UnboundedSender<WriterMsg>,
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
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(dir.join("mesh.redb"))?;
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
        let seq = queue::load_seq(&tx)?;
        tx.commit()?;
        let db = Arc::new(db);
        let stats = Arc::new(StoreStats::default());
        let (jobs, rx) = mpsc::unbounded_channel();
        let writer = {
            let db = db.clone();
            let stats = stats.clone();
            std::thread::Builder::new()
                .name("store-writer".into())
                .spawn(move || writer_loop(db, rx, &stats))
                .map_err(|e| StoreError::Db(format!("cannot start the writer thread: {e}")))?
        };
        Ok(Store {
            db,
            jobs,
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
        let sent = self.jobs.send(WriterMsg::Job(Box::new(job))).is_ok();
        async move {
            if !sent {
                return Err(StoreError::Closed);
            }
            rx.await.map_err(|_| StoreError::Closed)?
        }
    }

    /// A read snapshot; never waits for the writer.
    pub fn read(&self) -> Result<ReadTransaction, StoreError> {
        Ok(self.db.begin_read()?)
    }

    /// True when a write can be committed (used by `/health/ready`).
    pub async fn is_writable(&self) -> bool {
        self.write(|_| Ok(())).await.is_ok()
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

fn writer_loop(db: Arc<Database>, mut rx: mpsc::UnboundedReceiver<WriterMsg>, stats: &StoreStats) {
    let mut stop = false;
    while !stop {
        let Some(first) = rx.blocking_recv() else {
            break;
        };
        let mut batch: Vec<Box<dyn Job>> = Vec::new();
        match first {
            WriterMsg::Job(j) => batch.push(j),
            WriterMsg::Stop => stop = true,
        }
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(WriterMsg::Job(j)) => batch.push(j),
                Ok(WriterMsg::Stop) => stop = true,
                Err(_) => break,
            }
        }
        if batch.is_empty() {
            continue;
        }
        let committed = commit_batch(&db, &mut batch);
        stats.commits.fetch_add(1, Ordering::Relaxed);
        stats
            .writes
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        if let Err(e) = &committed {
            tracing::error!("write batch of {} failed: {e}", batch.len());
        }
        for job in batch {
            job.finish(committed.clone());
        }
    }
}

fn commit_batch(db: &Database, batch: &mut [Box<dyn Job>]) -> Result<(), StoreError> {
    let txn = db.begin_write()?;
    for job in batch.iter_mut() {
        if !job.apply(&txn) {
            let _ = txn.abort();
            return Err(StoreError::Db(
                "a write in this batch failed; nothing was stored".into(),
            ));
        }
    }
    txn.commit()?;
    Ok(())
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
