//! The store's writer thread: the only one that writes. It folds every pending job into one
//! transaction and answers them once that transaction is durably committed (group commit), reopens
//! the database after a failed write, and gives redb's page cache back once the store has been
//! idle for a while, so a broker's memory falls back after a burst of traffic.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock, mpsc as std_mpsc};
use std::time::{Duration, Instant};

use redb::{Database, ReadTransaction, ReadableDatabase, WriteTransaction};
use tokio::sync::{Notify, oneshot};

use super::queue::QueueTables;
use super::queue::client_keys::{self, PendingKeys};
use super::queue::index::{self, QueueIndex};
use super::{StoreError, StoreStats};

/// redb's page cache.
pub(super) const CACHE_BYTES: usize = 64 << 20;
/// Most jobs folded into one transaction; bounds the latency of the first job in a batch.
const MAX_BATCH: usize = 4096;
/// How often a failed store checks whether it can write again.
const RETRY_EVERY: Duration = Duration::from_secs(1);
/// Free space the store wants to see (a probe file it writes, syncs and deletes) before it
/// reopens the database after a failure.
const PROBE_BYTES: usize = 1 << 20;
/// A store with no reads or writes for this long, after a burst of at least
/// [`BURST_WRITES`] writes, gives its page cache back (closes and reopens the database). Under
/// steady traffic it never idles that long and keeps its cache; the small reads and writes of
/// an idle mesh never make it reopen.
pub(super) const IDLE_RELEASE: Duration = Duration::from_secs(10);
/// After the cache went back, the idle periods in which freed memory is handed back again.
const AFTER_RELEASE_COLLECTS: u32 = 3;
pub(super) const BURST_WRITES: u64 = 10_000;

/// What the writer shares with every handle.
#[derive(Default)]
pub(super) struct WriterShared {
    /// Jobs sent and not yet answered.
    pub(super) queued: AtomicUsize,
    /// Woken when the writer answered a batch.
    pub(super) room: Notify,
    /// Why writes are refused, while they are.
    pub(super) failure: Mutex<Option<String>>,
    /// Read snapshots alive; the database is never closed under one.
    readers: AtomicUsize,
    /// Set by every read and commit; the writer clears it to tell an idle period.
    used: AtomicBool,
    /// Idle time before the cache is given back, in ms (0: the default).
    idle_ms: AtomicU64,
    /// Writes since the cache was last given back that make it worth giving back (0: the
    /// default).
    burst_writes: AtomicU64,
    /// Commits that ran a job outside the queue (anything but `enqueue` and its
    /// acknowledgements), counted before their jobs are answered: what the store's read
    /// caches are keyed by.
    pub(super) general_commits: AtomicU64,
    /// Client-message-id index entries not yet written (see `queue::client_keys`); only the
    /// writer thread's jobs use them.
    pub(super) client_keys: Mutex<PendingKeys>,
    /// Every recipient's queue (see `queue::index`): changed by the writer's jobs, published
    /// after each commit, read by queue walks.
    pub(super) queue_index: Mutex<QueueIndex>,
}

impl WriterShared {
    pub(super) fn failure(&self) -> Option<String> {
        self.failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn set_failure(&self, why: Option<String>) {
        *self.failure.lock().unwrap_or_else(|p| p.into_inner()) = why;
    }

    #[cfg(test)]
    pub(super) fn set_idle(&self, after: Duration, burst_writes: u64) {
        let ms = u64::try_from(after.as_millis()).unwrap_or(u64::MAX).max(1);
        self.idle_ms.store(ms, Ordering::Relaxed);
        self.burst_writes
            .store(burst_writes.max(1), Ordering::Relaxed);
    }

    fn burst_writes(&self) -> u64 {
        match self.burst_writes.load(Ordering::Relaxed) {
            0 => BURST_WRITES,
            n => n,
        }
    }

    fn idle(&self) -> Duration {
        match self.idle_ms.load(Ordering::Relaxed) {
            0 => IDLE_RELEASE,
            ms => Duration::from_millis(ms),
        }
    }
}

/// Bumped when the idle store has freed memory that threads should hand back to the OS.
static COLLECT_ASKED: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// The last [`COLLECT_ASKED`] this thread collected for.
    static COLLECTED: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Hands this thread's freed memory back to the OS if the store asked since it last did. Cheap
/// otherwise (one atomic load): the broker's runtime calls it each time a worker parks.
pub fn collect_freed_memory() {
    let asked = COLLECT_ASKED.load(Ordering::Acquire);
    if COLLECTED.with(|c| c.replace(asked)) != asked {
        // SAFETY: mi_collect takes no pointers and may be called from any thread; a no-op
        // where mimalloc is not the allocator. Twice: a forced collection gives back what
        // was waiting to be given back before it, and the pages it frees itself only wait
        // (mimalloc's purge delay) until the next one.
        unsafe {
            libmimalloc_sys::mi_collect(true);
            libmimalloc_sys::mi_collect(true);
        }
    }
}

/// Keeps this process's heap in 4 KiB pages. A transparent huge page (2 MiB) stays resident
/// while any byte of it is in use, so after a load the allocator's purges of freed memory gave
/// little back (36 MB anonymous a minute after `bench --peers 100 --messages 1000`, of which 24 MB
/// huge pages, against 15 MB idle). mimalloc is built without its own huge-page advice (the
/// `no_thp` feature); this also covers kernels that use huge pages without being asked
/// (`/sys/kernel/mm/transparent_hugepage/enabled` = `always`). Best effort: an error is ignored.
pub fn avoid_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_THP_DISABLE takes integers only and changes no memory of this process.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

/// Opens `path` with the store's cache settings.
pub(super) fn open_database(path: &Path) -> Result<Database, redb::DatabaseError> {
    Database::builder().set_cache_size(CACHE_BYTES).create(path)
}

/// A read snapshot of the store (it derefs to redb's `ReadTransaction`). While one is alive the
/// writer does not close the database to give its cache back.
pub struct Snapshot {
    txn: ReadTransaction,
    shared: Arc<WriterShared>,
}

impl Snapshot {
    /// Begins a read on the current database. The count goes up under the handle's read lock,
    /// so the writer, which checks it under the write lock, never closes under a new snapshot.
    pub(super) fn begin(
        db: &RwLock<Option<Arc<Database>>>,
        shared: &Arc<WriterShared>,
    ) -> Result<Snapshot, StoreError> {
        let slot = db.read().unwrap_or_else(|p| p.into_inner());
        let db = slot
            .as_ref()
            .ok_or_else(|| StoreError::Io("the database is being reopened".into()))?;
        let txn = db.begin_read()?;
        shared.readers.fetch_add(1, Ordering::AcqRel);
        shared.used.store(true, Ordering::Relaxed);
        Ok(Snapshot {
            txn,
            shared: shared.clone(),
        })
    }
}

impl std::ops::Deref for Snapshot {
    type Target = ReadTransaction;
    fn deref(&self) -> &ReadTransaction {
        &self.txn
    }
}

impl Drop for Snapshot {
    fn drop(&mut self) {
        self.shared.readers.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What the jobs of one batch write through: its transaction, and the message queue's tables
/// kept open from one queue job to the next. Opening a table is a lookup in redb's table tree
/// and closing it writes its root back; per job, that was a third of a `send`'s writer time.
pub(super) struct Batch<'t> {
    txn: &'t WriteTransaction,
    pending: &'t Mutex<PendingKeys>,
    index: &'t Mutex<QueueIndex>,
    queue: Option<QueueTables<'t>>,
    /// A job asked for the whole transaction: it may have changed any table.
    general: bool,
}

impl<'t> Batch<'t> {
    fn new(
        txn: &'t WriteTransaction,
        pending: &'t Mutex<PendingKeys>,
        index: &'t Mutex<QueueIndex>,
    ) -> Batch<'t> {
        Batch {
            txn,
            pending,
            index,
            queue: None,
            general: false,
        }
    }

    /// The transaction, for a job that opens its own tables: the queue's are closed first
    /// (redb has a table open once at a time).
    pub(super) fn txn(&mut self) -> Result<&'t WriteTransaction, StoreError> {
        self.close_queue()?;
        self.general = true;
        Ok(self.txn)
    }

    /// Closes what the batch's jobs left open and writes a slice of the waiting client
    /// message ids (all of them when `all`), before the commit. Returns whether any job asked
    /// for the whole transaction.
    fn finish(mut self, all: bool) -> Result<bool, StoreError> {
        self.close_queue()?;
        client_keys::write_slice(self.txn, &mut client_keys::lock(self.pending), all)?;
        Ok(self.general)
    }

    fn close_queue(&mut self) -> Result<(), StoreError> {
        match self.queue.take() {
            Some(queue) => queue.close(),
            None => Ok(()),
        }
    }

    /// The queue's tables, opened by the first queue job of the batch.
    pub(super) fn queue(&mut self) -> Result<&mut QueueTables<'t>, StoreError> {
        let tables = match self.queue.take() {
            Some(tables) => tables,
            None => QueueTables::open(self.txn, self.pending, self.index)?,
        };
        Ok(self.queue.insert(tables))
    }
}

/// One queued write: applied inside the shared transaction, answered after the commit.
pub(super) trait Job: Send {
    /// Applies the job; an error is a storage failure that must abort the batch.
    fn apply(&mut self, batch: &mut Batch) -> Result<(), StoreError>;
    fn finish(self: Box<Self>, committed: Result<(), StoreError>);
}

pub(super) struct TypedJob<F, R> {
    pub(super) f: Option<F>,
    pub(super) out: Option<Result<R, StoreError>>,
    pub(super) reply: oneshot::Sender<Result<R, StoreError>>,
}

impl<F, R> Job for TypedJob<F, R>
where
    F: for<'b, 't> FnOnce(&'b mut Batch<'t>) -> Result<R, StoreError> + Send,
    R: Send,
{
    fn apply(&mut self, batch: &mut Batch) -> Result<(), StoreError> {
        let Some(f) = self.f.take() else {
            return Ok(());
        };
        let out = f(batch);
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

pub(super) enum WriterMsg {
    Job(Box<dyn Job>),
    Stop,
    /// Stops at once, writing nothing more: what a crash leaves on disk.
    #[cfg(test)]
    Crash,
}

/// The writer thread: the only one that writes; answers every job after its batch committed.
pub(super) struct Writer {
    pub(super) db: Arc<RwLock<Option<Arc<Database>>>>,
    pub(super) path: PathBuf,
    pub(super) rx: std_mpsc::Receiver<WriterMsg>,
    pub(super) stats: Arc<StoreStats>,
    pub(super) shared: Arc<WriterShared>,
    /// The runtime whose workers are woken to free memory once the store is idle.
    pub(super) runtime: Option<tokio::runtime::Handle>,
}

impl Writer {
    pub(super) fn run(self) {
        let mut stop = false;
        let mut failed_at: Option<Instant> = None;
        // Writes since the cache was last given back.
        let mut written = 0u64;
        // Idle periods still to hand freed memory back in, after a burst (see below).
        let mut collects_left = 0u32;
        while !stop {
            let wait = if failed_at.is_some() {
                RETRY_EVERY
            } else {
                self.shared.idle()
            };
            let first = match self.rx.recv_timeout(wait) {
                Ok(m) => Some(m),
                Err(std_mpsc::RecvTimeoutError::Timeout) => None,
                Err(std_mpsc::RecvTimeoutError::Disconnected) => break,
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
                #[cfg(test)]
                Some(WriterMsg::Crash) => return,
                None => {}
            }
            while batch.len() < MAX_BATCH {
                match self.rx.try_recv() {
                    Ok(WriterMsg::Job(j)) => batch.push(j),
                    Ok(WriterMsg::Stop) => stop = true,
                    #[cfg(test)]
                    Ok(WriterMsg::Crash) => return,
                    Err(_) => break,
                }
            }
            // An idle (or stopping) store writes its waiting client message ids: a commit
            // with no job, failing as a batch would. It counts neither as use nor as an idle
            // period, so the page cache goes back one idle period later after such a burst.
            let flush = batch.is_empty()
                && failed_at.is_none()
                && self.shared.failure().is_none()
                && !self.pending_keys().is_empty();
            if batch.is_empty() && !flush {
                // A whole idle period with no job; reads count as use too.
                let used = self.shared.used.swap(false, Ordering::Relaxed);
                if !used
                    && written >= self.shared.burst_writes()
                    && failed_at.is_none()
                    && !stop
                    && self.give_cache_back()
                {
                    written = 0;
                    collects_left = AFTER_RELEASE_COLLECTS;
                } else if !used && collects_left > 0 {
                    // Memory freed after the last collection (a connection's last buffers,
                    // a blocking thread that ended) would otherwise stay with the thread that
                    // allocated it for as long as the broker stays idle.
                    collects_left -= 1;
                    self.free_memory();
                }
                if self.shared.failure().is_some() && failed_at.is_none() {
                    failed_at = Some(Instant::now());
                }
                continue;
            }
            let n = batch.len();
            if n > 0 {
                self.shared.used.store(true, Ordering::Relaxed);
            }
            written = written.saturating_add(n as u64);
            let committed = match self.shared.failure() {
                // redb refuses every write after a failed one; answer at once, never a false ack.
                Some(why) => Err(StoreError::Io(why)),
                None => {
                    let started = Instant::now();
                    let committed = self.commit(&mut batch, stop || flush);
                    self.stats.record_commit(started.elapsed());
                    committed
                }
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
                    self.shared.set_failure(Some(why.clone()));
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

    /// Hands freed memory back to the OS. The allocator (mimalloc in the binary) does so only
    /// when the thread that owns a page allocates again, and an idle broker's threads do not:
    /// collect on this thread, and ask every runtime worker to collect before it next parks
    /// ([`collect_freed_memory`]); the small tasks spawned here wake them.
    fn free_memory(&self) {
        COLLECT_ASKED.fetch_add(1, Ordering::AcqRel);
        collect_freed_memory();
        if let Some(rt) = &self.runtime {
            for _ in 0..8 {
                rt.spawn(async {});
            }
        }
    }

    /// Closes and reopens the database so redb's page cache (filled by a burst of traffic and
    /// never shrunk) is freed. Only when no read snapshot is alive: closing would fail their
    /// reads. Readers wait on the handle's lock for the few milliseconds it takes. True when
    /// the cache was given back.
    fn give_cache_back(&self) -> bool {
        let mut slot = self.db.write().unwrap_or_else(|p| p.into_inner());
        if self.shared.readers.load(Ordering::Acquire) != 0 {
            return false;
        }
        let Some(db) = slot.take() else {
            return false;
        };
        match Arc::try_unwrap(db) {
            Ok(db) => {
                if let Err(e) = db.close() {
                    tracing::warn!("closing the database to free its cache: {e}");
                }
            }
            Err(shared) => {
                *slot = Some(shared);
                return false;
            }
        }
        match open_database(&self.path) {
            Ok(db) => {
                *slot = Some(Arc::new(db));
                drop(slot);
                self.stats.cache_releases.fetch_add(1, Ordering::Relaxed);
                self.free_memory();
                tracing::debug!("idle: gave the page cache of {} back", self.path.display());
                true
            }
            Err(e) => {
                // Reads answer "being reopened" and writes fail until recover() reopens it.
                let why = format!("cannot reopen {}: {e}", self.path.display());
                tracing::error!("{why}");
                self.shared.set_failure(Some(why));
                false
            }
        }
    }

    /// Commits `batch` in one transaction, with a slice of the waiting client message ids
    /// (all of them when `all`).
    fn commit(&self, batch: &mut [Box<dyn Job>], all: bool) -> Result<(), StoreError> {
        index::lock(&self.shared.queue_index).begin();
        let committed = self.commit_jobs(batch, all);
        self.pending_keys().committed(committed.is_ok());
        index::lock(&self.shared.queue_index).committed(committed.is_ok());
        committed
    }

    fn pending_keys(&self) -> std::sync::MutexGuard<'_, PendingKeys> {
        client_keys::lock(&self.shared.client_keys)
    }

    fn commit_jobs(&self, batch: &mut [Box<dyn Job>], all: bool) -> Result<(), StoreError> {
        let db = self
            .db
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(|| StoreError::Io("the database is closed".into()))?;
        let txn = db.begin_write()?;
        // (Each lock is let go before the jobs take it.)
        let rebuilt = client_keys::rebuild_if_failed(&txn, &mut self.pending_keys());
        let rebuilt =
            rebuilt.and_then(|()| index::rebuild_if_failed(&txn, &self.shared.queue_index));
        let applied = rebuilt.and_then(|()| {
            let mut tables = Batch::new(&txn, &self.shared.client_keys, &self.shared.queue_index);
            batch
                .iter_mut()
                .try_for_each(|job| job.apply(&mut tables))
                .and_then(|()| tables.finish(all))
        });
        let general = match applied {
            Ok(general) => general,
            Err(e) => {
                let _ = txn.abort();
                return Err(match e {
                    StoreError::Io(why) => StoreError::Io(why),
                    _ => StoreError::Db("a write in this batch failed; nothing was stored".into()),
                });
            }
        };
        txn.commit()?;
        if general {
            self.shared.general_commits.fetch_add(1, Ordering::AcqRel);
        }
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
        match open_database(&self.path) {
            Ok(db) => {
                *self.db.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(db));
                self.shared.set_failure(None);
                self.stats.recoveries.fetch_add(1, Ordering::Relaxed);
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

#[cfg(test)]
mod tests;
