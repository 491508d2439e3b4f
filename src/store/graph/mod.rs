//! Per-mesh graphs (issue 16, PROTOCOL.md §19): one graphdblite database (openCypher over
//! SQLite) per mesh in `<data>/graph/<mesh-id>.db`. The engine stays behind this module.
//!
//! Each mesh's database is owned by a process of its own ([`worker`], the same binary), so
//! engine work never runs on a tokio worker, one mesh's queries never wait for another's, and a
//! query can be stopped: graphdblite has no cancel hook, so a query past its time budget is
//! answered `timeout` and its worker killed (SQLite rolls back what it had not committed); the
//! mesh's next query starts a fresh one. A write's commit waits for the broker's go-ahead
//! (SQLite's commit hook, [`worker::COMMITTING`]), given only within the budget; a write let
//! commit is waited for, so `timeout` always means that nothing was kept. SQLite and the
//! kernel cap the size of the files a worker may write ([`worker::file_limit`]), so no
//! statement can write far past the quota; its memory is capped too ([`WORKER_MEMORY`]). Two
//! queries run at once, broker-wide.

pub mod worker;

use std::collections::HashMap;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use super::turns::Turns;

/// How long one query may take, from the request to the answer.
pub const GRAPH_TIME_BUDGET: Duration = Duration::from_secs(10);
/// How long a write let commit within its budget is still waited for past it (its fsync and the
/// checkpoint after it; past this the disk is in trouble).
const COMMIT_GRACE: Duration = Duration::from_secs(10);
/// Most records one answer carries; more set `truncated`.
pub const MAX_GRAPH_RECORDS: usize = 1000;
/// Most bytes of records (as JSON) one answer carries, so it fits a frame.
pub const MAX_GRAPH_ANSWER_BYTES: usize = 56 * 1024;
/// Rows past which the engine aborts a query (memory stays bounded however many match).
const MAX_ENGINE_ROWS: usize = 10_000;
/// What one query may keep in memory at once (joins, sorts, aggregations).
const MAX_MATERIALIZED_BYTES: u64 = 256 << 20;
/// A mesh's graph file (with its WAL) past this size takes no more writes.
pub const MAX_GRAPH_BYTES: u64 = 256 << 20;
/// A mesh's worker ends after this long without a query (the next one starts another).
const IDLE: Duration = Duration::from_secs(60);
/// Queries running at once, broker-wide (each may keep a core busy for its whole budget).
const MAX_RUNNING: usize = 2;
/// Memory a worker may map (RLIMIT_DATA): the engine's cap on what one query materializes,
/// several times over, and its SQLite cache. Past it, its allocation fails and it ends.
pub const WORKER_MEMORY: u64 = 1 << 30;
/// Workers alive at once, broker-wide (each holds a SQLite handle and its cache; a query up to
/// the engine's memory cap): past it, an idle one of another mesh is ended to make room.
pub const MAX_WORKERS: usize = 32;

#[derive(Debug, thiserror::Error, Serialize, Deserialize)]
pub enum GraphError {
    /// The query is not valid Cypher, names something missing, or failed at run time.
    #[error("{0}")]
    Query(String),
    /// A write reached `graph_query`: the engine's read transaction refused its plan.
    #[error("graph_query is read-only ({0}); use graph_execute to write")]
    ReadOnly(String),
    #[error("a parameter: {0}")]
    Param(String),
    #[error("the query ran past its time budget of {}s and was stopped; nothing it wrote was kept", .0.as_secs())]
    Timeout(Duration),
    #[error(
        "quota: this mesh's graph holds {0} bytes, the most it may hold is {1}; only deletions run until it is smaller (DETACH DELETE, REMOVE)"
    )]
    Quota(u64, u64),
    /// A statement stopped by the kernel's file size cap ([`worker::file_limit`]).
    #[error(
        "quota: the statement would grow this mesh's graph files past {0} bytes and was rolled back; nothing of it was kept"
    )]
    TooBig(u64),
    /// Past one of the engine's limits (rows, memory, traversal work, sizes).
    #[error("{0}")]
    Limit(String),
    #[error("graph storage: {0}")]
    Storage(String),
    /// Every worker the broker allows ([`MAX_WORKERS`]) is running a query.
    #[error("the broker is running {0} graph queries, its most at once; try again shortly")]
    Busy(usize),
}

/// A query's deadline, and the flag set once its write was let commit.
type Commit<'a> = (tokio::time::Instant, &'a AtomicBool);

/// The answer when a write's outcome cannot be told.
fn unknown_outcome(why: &str) -> GraphError {
    GraphError::Storage(format!(
        "the write ran its statement but {why}; it may or may not have been applied: read \
         before writing again"
    ))
}

/// Whether a query may write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum GraphMode {
    /// Runs in a read transaction: the engine refuses any plan that writes.
    Read,
    /// Runs in its own write transaction, committed (fsync'd) before the answer.
    Write,
}

/// The records of one query, as JSON objects (column name → value).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct GraphAnswer {
    pub records: Vec<Map<String, Json>>,
    /// Some records were left out (past [`MAX_GRAPH_RECORDS`] or [`MAX_GRAPH_ANSWER_BYTES`]).
    pub truncated: bool,
}

/// A mesh's worker process and its pipes. Dropping it kills the process.
struct Worker {
    child: Child,
    stdin: ChildStdin,
    stdout: ChildStdout,
    /// When it last answered (the least recently used makes room for another mesh's).
    used: Instant,
}

/// A mesh's worker, if one runs; locked for the length of a query, so a mesh's queries run
/// one at a time, in order.
type Slot = Arc<tokio::sync::Mutex<Option<Worker>>>;
type Slots = HashMap<String, Slot>;

/// Forgets workers that have ended (idle), so they are reaped, and slots no one uses, so the
/// map stays as small as the meshes in use; `keep`'s slot stays whatever its state.
fn sweep(slots: &mut Slots, keep: Option<&str>) {
    slots.retain(|mesh, slot| {
        if Some(mesh.as_str()) == keep {
            return true;
        }
        let Ok(mut held) = slot.try_lock() else {
            return true;
        };
        if let Some(w) = held.as_mut()
            && !matches!(w.child.try_wait(), Ok(None))
        {
            *held = None;
        }
        held.is_some() || Arc::strong_count(slot) > 1
    });
}

/// Every mesh's graph.
pub struct Graphs {
    dir: PathBuf,
    budget: Duration,
    max_bytes: u64,
    idle: Duration,
    max_workers: usize,
    /// How long each worker holds every commit (tests; zero otherwise).
    commit_delay: Duration,
    /// The program run as `graph-worker`: this one.
    exe: PathBuf,
    slots: Arc<Mutex<Slots>>,
    /// Whether the task that reaps ended workers runs.
    reaping: AtomicBool,
    /// One running query per mesh, [`MAX_RUNNING`] in all.
    turns: Turns,
}

impl Graphs {
    /// Graphs under `dir` (created 0700 at the first query).
    pub fn new(dir: PathBuf) -> Graphs {
        Graphs::with_budget(dir, GRAPH_TIME_BUDGET)
    }

    pub fn with_budget(dir: PathBuf, budget: Duration) -> Graphs {
        // /proc/self/exe still runs after the binary was replaced on disk (an upgrade).
        let this = PathBuf::from("/proc/self/exe");
        let exe = if this.exists() {
            this
        } else {
            std::env::current_exe().unwrap_or_else(|_| PathBuf::from("claudemesh"))
        };
        Graphs {
            dir,
            budget,
            max_bytes: MAX_GRAPH_BYTES,
            idle: IDLE,
            max_workers: MAX_WORKERS,
            commit_delay: Duration::ZERO,
            exe,
            slots: Arc::default(),
            reaping: AtomicBool::new(false),
            turns: Turns::new(MAX_RUNNING),
        }
    }

    /// The same graphs with another size quota (tests).
    pub fn with_max_bytes(mut self, max_bytes: u64) -> Graphs {
        self.max_bytes = max_bytes;
        self
    }

    /// The same graphs with at most `max` workers at once (tests).
    pub fn with_max_workers(mut self, max: usize) -> Graphs {
        self.max_workers = max;
        self
    }

    /// The same graphs with workers that hold every commit for `delay` (tests: a write still
    /// committing when its budget ends).
    pub fn with_commit_delay(mut self, delay: Duration) -> Graphs {
        self.commit_delay = delay;
        self
    }

    /// The same graphs with workers that end after `idle` without a query (tests).
    pub fn with_idle(mut self, idle: Duration) -> Graphs {
        self.idle = idle;
        self
    }

    /// The same graphs with their workers run from `exe`, a `claudemesh` binary (tests, whose
    /// own program is a test harness).
    pub fn with_worker(mut self, exe: impl Into<PathBuf>) -> Graphs {
        self.exe = exe.into();
        self
    }

    /// The process ids of the workers between queries, by mesh (tests; a worker running a query
    /// is out of its slot until it answers).
    pub fn worker_pids(&self) -> Vec<(String, u32)> {
        let slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        slots
            .iter()
            .filter_map(|(mesh, slot)| {
                let held = slot.try_lock().ok()?;
                Some((mesh.clone(), held.as_ref()?.child.id()?))
            })
            .collect()
    }

    /// Runs `cypher` on `mesh_id`'s graph with `params` (a JSON object, bound as Cypher
    /// parameters), within the time budget (waiting for the mesh's earlier queries included).
    pub async fn run(
        &self,
        mesh_id: &str,
        mode: GraphMode,
        cypher: &str,
        params: Option<&Map<String, Json>>,
    ) -> Result<GraphAnswer, GraphError> {
        if !crate::protocol::ids::is_id(mesh_id) {
            return Err(GraphError::Storage(format!("bad mesh id {mesh_id:?}")));
        }
        let job = worker::Job {
            mode,
            cypher: cypher.to_owned(),
            params: params.cloned(),
        };
        let frame = serde_json::to_vec(&job).map_err(|e| GraphError::Storage(e.to_string()))?;
        if frame.len() > worker::MAX_FRAME {
            return Err(GraphError::Limit(format!(
                "the statement and its parameters are {} bytes; at most {} go to the graph",
                frame.len(),
                worker::MAX_FRAME
            )));
        }
        let slot = self.slot(mesh_id);
        let deadline = tokio::time::Instant::now() + self.budget;
        let committing = AtomicBool::new(false);
        let exchange = self.exchange(mesh_id, slot, &frame, (deadline, &committing));
        tokio::pin!(exchange);
        tokio::select! {
            answer = &mut exchange => return answer,
            () = tokio::time::sleep_until(deadline) => {}
        }
        if !committing.load(Ordering::Acquire) {
            // The exchange is dropped, and with it the worker that was running the query
            // (killed on drop): SQLite rolls back what it had not committed.
            tracing::warn!(
                mesh_id,
                "a graph query overran its time budget and was stopped"
            );
            return Err(GraphError::Timeout(self.budget));
        }
        // A write the broker let commit within the budget is let finish, so its answer says
        // whether it was applied.
        match tokio::time::timeout(COMMIT_GRACE, exchange).await {
            Ok(answer) => answer,
            Err(_) => {
                tracing::error!(mesh_id, "a graph write did not finish committing");
                Err(unknown_outcome(&format!(
                    "its commit did not finish within {}s more",
                    COMMIT_GRACE.as_secs()
                )))
            }
        }
    }

    /// The mesh's slot (sweeping the others on the way).
    fn slot(&self, mesh_id: &str) -> Slot {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        sweep(&mut slots, Some(mesh_id));
        slots.entry(mesh_id.to_owned()).or_default().clone()
    }

    /// Starts, once, the task that sweeps every idle time, so a worker that ended idle is
    /// reaped even if no graph query follows. It ends with these graphs.
    fn start_reaper(&self) {
        if self.reaping.swap(true, Ordering::AcqRel) {
            return;
        }
        let slots = Arc::downgrade(&self.slots);
        let every = self.idle.max(Duration::from_millis(100));
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(slots) = slots.upgrade() else {
                    break;
                };
                sweep(&mut slots.lock().unwrap_or_else(|e| e.into_inner()), None);
            }
        });
    }

    /// Sends the job to the mesh's worker (starting one if none runs) and reads its answer. A
    /// worker that ended idle before reading the job is replaced and the job sent again.
    async fn exchange(
        &self,
        mesh_id: &str,
        slot: Slot,
        frame: &[u8],
        commit: Commit<'_>,
    ) -> Result<GraphAnswer, GraphError> {
        let mut held = slot.lock().await;
        let _turn = self
            .turns
            .take(mesh_id)
            .await
            .map_err(|e| GraphError::Storage(e.to_string()))?;
        for _ in 0..2 {
            // Out of the slot while it works: if this future is dropped (the budget ran out),
            // the worker is dropped, and killed, with it.
            let mut worker = match held.take() {
                Some(w) => w,
                None => {
                    self.make_room(mesh_id)?;
                    self.start_reaper();
                    self.spawn(mesh_id)?
                }
            };
            match worker.ask(frame, commit).await {
                Ok(answer) => {
                    worker.used = Instant::now();
                    *held = Some(worker);
                    return answer;
                }
                Err(e) => {
                    // Ended (idle, or killed), or it answered something unreadable: then end it.
                    let killed = !matches!(
                        e.kind(),
                        std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::BrokenPipe
                    );
                    if killed {
                        let _ = worker.child.start_kill();
                    }
                    drop(worker.stdin);
                    let status = worker.child.wait().await;
                    if commit.1.load(Ordering::Acquire) {
                        // It ended after it was let commit: its commit may have landed.
                        tracing::error!(mesh_id, ?status, "a graph worker ended while committing");
                        return Err(unknown_outcome("its worker ended while committing"));
                    }
                    if matches!(&status, Ok(s) if s.code() == Some(worker::IDLE_EXIT)) {
                        continue;
                    }
                    // Out of memory: its allocator aborts, or the kernel's OOM killer ends it.
                    let signal = status.as_ref().ok().and_then(|s| s.signal());
                    if !killed && matches!(signal, Some(libc::SIGABRT | libc::SIGKILL)) {
                        tracing::warn!(mesh_id, "a graph query ran out of memory and was stopped");
                        return Err(GraphError::Limit(format!(
                            "the query ran out of memory (a graph's worker may use {} MiB) and was stopped; nothing of it was kept",
                            WORKER_MEMORY >> 20
                        )));
                    }
                    let how = match status {
                        Ok(s) => s.to_string(),
                        Err(_) => e.to_string(),
                    };
                    tracing::warn!(mesh_id, how, "a graph worker ended without answering");
                    return Err(GraphError::Storage(format!(
                        "the graph's worker ended without answering ({how})"
                    )));
                }
            }
        }
        Err(GraphError::Storage(
            "the graph's worker ended twice before reading the query".into(),
        ))
    }

    /// Before `mesh_id` starts a worker: if [`MAX_WORKERS`] (or the number set) run, ends the
    /// least recently used idle one of another mesh; `Busy` if all of them are running queries.
    fn make_room(&self, mesh_id: &str) -> Result<(), GraphError> {
        let slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        let mut live = 0;
        let mut idle = Vec::new();
        for (mesh, slot) in slots.iter().filter(|(mesh, _)| *mesh != mesh_id) {
            match slot.try_lock() {
                // Running a query (its worker is out of the slot), or starting one.
                Err(_) => live += 1,
                Ok(held) => {
                    if let Some(w) = held.as_ref() {
                        live += 1;
                        idle.push((w.used, mesh.clone(), slot.clone()));
                    }
                }
            }
        }
        if live < self.max_workers {
            return Ok(());
        }
        idle.sort_by_key(|(used, ..)| *used);
        for (_, mesh, slot) in idle {
            if let Ok(mut held) = slot.try_lock() {
                // Dropped, so killed; reaped by tokio.
                *held = None;
                tracing::debug!(mesh_id = mesh, "a graph worker ended to make room");
                return Ok(());
            }
        }
        Err(GraphError::Busy(live))
    }

    fn spawn(&self, mesh_id: &str) -> Result<Worker, GraphError> {
        let path = self.dir.join(format!("{mesh_id}.db"));
        let mut cmd = Command::new(&self.exe);
        cmd.arg0("claudemesh")
            .arg("graph-worker")
            .arg(&path)
            .arg(self.max_bytes.to_string())
            .arg(self.budget.as_millis().to_string())
            .arg(self.idle.as_millis().to_string())
            .args((!self.commit_delay.is_zero()).then(|| self.commit_delay.as_millis().to_string()))
            // It needs nothing of the broker's environment; SQLite's temporary files go beside
            // the graphs, not to /tmp.
            .env_clear()
            .env("SQLITE_TMPDIR", &self.dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        let fsize = worker::file_limit(self.max_bytes);
        // SAFETY: the closure runs in the forked child before exec and calls only
        // async-signal-safe functions (getrlimit, setrlimit, signal, open, write, close,
        // close_range) with values computed above.
        unsafe {
            cmd.pre_exec(move || {
                for (resource, limit) in [
                    (libc::RLIMIT_FSIZE, fsize),
                    (libc::RLIMIT_DATA, WORKER_MEMORY),
                    (libc::RLIMIT_CORE, 0),
                ] {
                    let mut l = libc::rlimit {
                        rlim_cur: 0,
                        rlim_max: 0,
                    };
                    if libc::getrlimit(resource, &mut l) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    // Never above a lower limit the broker itself runs under.
                    l.rlim_cur = limit.min(l.rlim_max);
                    l.rlim_max = l.rlim_cur;
                    if libc::setrlimit(resource, &l) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                // A write past the size cap fails (EFBIG) and SQLite rolls back, instead of
                // the signal ending the worker mid-commit.
                libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
                // The first process the kernel ends when memory runs out.
                let fd = libc::open(c"/proc/self/oom_score_adj".as_ptr(), libc::O_WRONLY);
                if fd >= 0 {
                    libc::write(fd, b"1000".as_ptr().cast(), 4);
                    libc::close(fd);
                }
                // Only stdin, stdout and stderr: no descriptor another part of the broker
                // opened without close-on-exec (a library's) reaches the worker. (Marked, not
                // closed: the pipe that reports a failed exec must stay open until then.)
                crate::child::close_on_exec_from(3);
                Ok(())
            });
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| GraphError::Storage(format!("cannot start the graph's worker: {e}")))?;
        match (child.stdin.take(), child.stdout.take()) {
            (Some(stdin), Some(stdout)) => Ok(Worker {
                child,
                stdin,
                stdout,
                used: Instant::now(),
            }),
            _ => Err(GraphError::Storage(
                "the graph's worker has no pipes".into(),
            )),
        }
    }
}

impl Worker {
    /// One job out, its answer back; an I/O error if the worker ended first. A write about to
    /// commit is let (and `commit`'s flag set) before the deadline, never after: then this
    /// waits for the kill.
    async fn ask(&mut self, frame: &[u8], commit: Commit<'_>) -> std::io::Result<worker::Answer> {
        let len = u32::try_from(frame.len()).map_err(std::io::Error::other)?;
        self.stdin.write_all(&len.to_le_bytes()).await?;
        self.stdin.write_all(frame).await?;
        self.stdin.flush().await?;
        let mut len = [0u8; 4];
        self.stdout.read_exact(&mut len).await?;
        let mut len = u32::from_le_bytes(len) as usize;
        if len == worker::COMMITTING.len() {
            let (deadline, committing) = commit;
            if tokio::time::Instant::now() >= deadline {
                std::future::pending::<()>().await;
            }
            committing.store(true, Ordering::Release);
            self.stdin.write_all(&0u32.to_le_bytes()).await?;
            self.stdin.flush().await?;
            let mut next = [0u8; 4];
            self.stdout.read_exact(&mut next).await?;
            len = u32::from_le_bytes(next) as usize;
        }
        if len > worker::MAX_FRAME {
            return Err(std::io::Error::other(format!(
                "an answer of {len} bytes (at most {})",
                worker::MAX_FRAME
            )));
        }
        let mut body = vec![0; len];
        self.stdout.read_exact(&mut body).await?;
        serde_json::from_slice(&body).map_err(std::io::Error::other)
    }
}
