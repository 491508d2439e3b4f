//! The graph worker: the process that owns one mesh's graphdblite database, started by
//! [`super::Graphs`] as `claudemesh graph-worker DB MAX_BYTES BUDGET_MS IDLE_MS` (not a
//! command people run). It reads jobs on stdin and writes one answer for each on stdout, each
//! frame a little-endian `u32` length and that many bytes of JSON, one job at a time.
//!
//! A process, not a thread, because graphdblite cannot be interrupted: the broker stops a query
//! past its time budget by killing its worker (SQLite rolls back whatever it had not
//! committed). Its database may not grow past the file cap (SQLite's `max_page_count`, set on
//! every connection it opens), no file it writes past it either (RLIMIT_FSIZE, set by the
//! broker with its memory limit), so one statement cannot fill the disk. Should the broker die
//! mid-query, the worker's CPU limit (its budget and a little more a job) ends the query.
//!
//! It exits when stdin closes, or with [`IDLE_EXIT`] after its idle time without a job: a job
//! it has started is always answered first, so a broker that sees that code may send the job
//! again.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use graphdblite::{Config, Database, SyncMode, Value};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};

use super::{
    GraphAnswer, GraphError, GraphMode, MAX_ENGINE_ROWS, MAX_GRAPH_ANSWER_BYTES, MAX_GRAPH_RECORDS,
    MAX_MATERIALIZED_BYTES,
};

/// The exit code of a worker that stopped for want of jobs, having left none unanswered.
pub const IDLE_EXIT: i32 = 75;
/// Parsing deeply nested queries recurses; this stack holds the engine's own nesting limits.
const WORKER_STACK: usize = 16 << 20;
/// The longest frame either side reads: a job holds a statement of at most 16 KiB and its
/// parameters (a request frame's worth), an answer at most 56 KiB of records.
pub(super) const MAX_FRAME: usize = 8 << 20;
/// CPU seconds a job may use past its budget before the kernel ends the worker (only a worker
/// whose broker is gone ever gets there: the broker kills it at the budget).
const CPU_GRACE_SECS: u64 = 5;

/// One query for the worker.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Job {
    pub mode: GraphMode,
    pub cypher: String,
    pub params: Option<Map<String, Json>>,
}

/// What the worker answers a job.
pub(super) type Answer = Result<GraphAnswer, GraphError>;

/// The largest file a worker of a graph with quota `max_bytes` may write: the quota and a
/// quarter more (at least 16 MiB more: SQLite's WAL grows to ~4 MiB between checkpoints), so a
/// statement that starts just under the quota can finish, but no statement can write much past
/// it.
pub fn file_limit(max_bytes: u64) -> u64 {
    max_bytes.saturating_add((max_bytes / 4).max(16 << 20))
}

/// The frame a worker sends when a write is about to commit, and the broker's answer to let it:
/// an empty one both ways (a job or an answer is never empty). SQLite's commit hook asks; the
/// broker says go only within the query's budget, and waits for the answer from then on; a
/// worker told nothing rolls back. So a write is answered, or stopped and kept nowhere.
pub(super) const COMMITTING: &[u8] = b"";

/// `claudemesh graph-worker DB MAX_BYTES BUDGET_MS IDLE_MS [COMMIT_DELAY_MS]`: serves jobs
/// until stdin closes (0), or until it has none for IDLE_MS ([`IDLE_EXIT`]); 2 for bad
/// arguments. COMMIT_DELAY_MS (tests) holds every commit that long.
pub fn main(args: &[&str]) -> i32 {
    let number = |s: &str| s.parse::<u64>().ok();
    let parsed = match args {
        [db, max_bytes, budget_ms, idle_ms, delay @ ..] if delay.len() <= 1 => Some((
            PathBuf::from(db),
            number(max_bytes),
            number(budget_ms),
            number(idle_ms),
            delay.first().map_or(Some(0), |d| number(d)),
        )),
        _ => None,
    };
    let Some((path, Some(max_bytes), Some(budget_ms), Some(idle_ms), Some(delay_ms))) = parsed
    else {
        eprintln!(
            "claudemesh graph-worker: expected DB MAX_BYTES BUDGET_MS IDLE_MS [COMMIT_DELAY_MS] (the broker starts it)"
        );
        return 2;
    };
    if let Err(e) = cap_pages(file_limit(max_bytes)) {
        eprintln!("claudemesh graph-worker: cannot cap the graph's size: {e}");
        return 1;
    }
    let (jobs, inbox) = mpsc::sync_channel(1);
    let _ = INBOX.set(Mutex::new(inbox));
    // Reads frames as they come; the jobs are run on a thread with a deep enough stack.
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        while let Ok(Some(frame)) = read_frame(&mut stdin) {
            if jobs.send(frame).is_err() {
                break;
            }
        }
    });
    let worker = Worker {
        dir: path.parent().map(Path::to_path_buf).unwrap_or_default(),
        path,
        max_bytes,
        budget: Duration::from_millis(budget_ms),
        idle: Duration::from_millis(idle_ms),
        db: None,
    };
    COMMIT_DELAY_MS.store(delay_ms, Ordering::Relaxed);
    std::thread::Builder::new()
        .name("graph-worker".into())
        .stack_size(WORKER_STACK)
        .spawn(move || worker.serve())
        .map_or(1, |t| t.join().unwrap_or(1))
}

struct Worker {
    path: PathBuf,
    dir: PathBuf,
    max_bytes: u64,
    budget: Duration,
    idle: Duration,
    db: Option<Database>,
}

/// The jobs (and the broker's go-aheads) as they arrive on stdin.
static INBOX: OnceLock<Mutex<mpsc::Receiver<Vec<u8>>>> = OnceLock::new();
/// Whether a commit now needs the broker's go-ahead (while a write job runs).
static GATED: AtomicBool = AtomicBool::new(false);
/// How long to wait for the go-ahead: the broker says it at once or never.
static GO_WAIT_MS: AtomicU64 = AtomicU64::new(0);
/// How long every commit is held once allowed (tests).
static COMMIT_DELAY_MS: AtomicU64 = AtomicU64::new(0);
/// A commit went without the go-ahead (rolled back): the broker has given up on this worker,
/// and a go-ahead it sent late may still be on its way, so the worker answers and ends.
static REFUSED: AtomicBool = AtomicBool::new(false);

/// The next frame from stdin within `wait`.
fn next_frame(wait: Duration) -> Result<Vec<u8>, RecvTimeoutError> {
    let inbox = INBOX.get().ok_or(RecvTimeoutError::Disconnected)?;
    let inbox = inbox.lock().unwrap_or_else(|e| e.into_inner());
    inbox.recv_timeout(wait)
}

/// SQLite's commit hook, on every connection of the worker: 0 lets the commit go on, anything
/// else turns it into a rollback. Outside a write job (opening the database) commits go on.
unsafe extern "C" fn commit_gate(_: *mut std::os::raw::c_void) -> std::os::raw::c_int {
    if !GATED.load(Ordering::Acquire) || broker_lets_commit() {
        0
    } else {
        1
    }
}

/// Tells the broker a write is about to commit and waits for its go-ahead.
fn broker_lets_commit() -> bool {
    let asked = write_frame(&mut std::io::stdout().lock(), COMMITTING).is_ok();
    let wait = Duration::from_millis(GO_WAIT_MS.load(Ordering::Relaxed));
    let go = asked && matches!(next_frame(wait), Ok(f) if f == COMMITTING);
    if !go {
        REFUSED.store(true, Ordering::Release);
    } else {
        std::thread::sleep(Duration::from_millis(
            COMMIT_DELAY_MS.load(Ordering::Relaxed),
        ));
    }
    go
}

impl Worker {
    fn serve(mut self) -> i32 {
        let mut stdout = std::io::stdout().lock();
        GO_WAIT_MS.store(
            (self.budget + Duration::from_secs(CPU_GRACE_SECS)).as_millis() as u64,
            Ordering::Relaxed,
        );
        loop {
            let frame = match next_frame(self.idle) {
                Ok(frame) => frame,
                Err(RecvTimeoutError::Timeout) => return IDLE_EXIT,
                Err(RecvTimeoutError::Disconnected) => return 0,
            };
            let answer = match serde_json::from_slice::<Job>(&frame) {
                Ok(job) => self.answer(&job),
                Err(e) => Err(GraphError::Storage(format!("an unreadable job: {e}"))),
            };
            let Ok(bytes) = serde_json::to_vec(&answer) else {
                return 1;
            };
            if write_frame(&mut stdout, &bytes).is_err() {
                return 0;
            }
            if REFUSED.load(Ordering::Acquire) {
                // The broker's next job (resent when this worker is found ended) goes to a
                // fresh one, which no stray frame reaches.
                return IDLE_EXIT;
            }
        }
    }

    fn answer(&mut self, job: &Job) -> Answer {
        let params = match &job.params {
            Some(map) => map
                .iter()
                .map(|(k, v)| Ok((k.clone(), from_json(v).map_err(GraphError::Param)?)))
                .collect::<Result<_, GraphError>>()?,
            None => HashMap::new(),
        };
        if let Some(e) = written_too_much(&self.path, job, self.max_bytes) {
            return Err(e);
        }
        limit_cpu(self.budget);
        let db = match &mut self.db {
            Some(db) => db,
            None => self.db.insert(open(&self.dir, &self.path)?),
        };
        GATED.store(job.mode == GraphMode::Write, Ordering::Release);
        let result = run(db, job, &params);
        GATED.store(false, Ordering::Release);
        if REFUSED.load(Ordering::Acquire) {
            return Err(GraphError::Timeout(self.budget));
        }
        if let Err(e) = &result
            && job.mode == GraphMode::Write
            && (e.to_string().contains(SQLITE_FULL_TEXT)
                || (e.to_string().contains("disk I/O error")
                    && at_limit(&self.path, file_limit(self.max_bytes))))
        {
            // SQLite's page cap (or, behind it, the kernel's file size cap) refused to grow the
            // graph: the statement was rolled back.
            self.db = None;
            return Err(GraphError::TooBig(file_limit(self.max_bytes)));
        }
        if let Err(GraphError::Storage(_)) = &result {
            // Opened afresh for the next job, whatever state the failure left the handle in.
            self.db = None;
        }
        result
    }
}

/// What SQLite says when a database may not grow (`SQLITE_FULL`, here `max_page_count`).
const SQLITE_FULL_TEXT: &str = "database or disk is full";

/// The most pages a graph's database may have (free ones included), set on every connection
/// the worker opens: SQLite refuses a statement that would need more (and rolls it back), so
/// the database never outgrows `limit` bytes — a checkpoint always has room to copy the WAL
/// back, and the WAL is reset — with a little room under the kernel's cap for the WAL.
const PAGE_CAP_MARGIN: u64 = 1 << 20;
static MAX_PAGE_BYTES: AtomicU64 = AtomicU64::new(0);

fn cap_pages(limit: u64) -> rusqlite::Result<()> {
    MAX_PAGE_BYTES.store(limit.saturating_sub(PAGE_CAP_MARGIN), Ordering::Relaxed);
    // SAFETY: the handler opens no database, closes none, and leaves the list of
    // auto-extensions alone (rusqlite's conditions).
    unsafe { rusqlite::auto_extension::register_auto_extension(cap_pages_raw) }
}

/// The raw entry point SQLite calls as each connection opens: the page cap, and the commit
/// gate ([`commit_gate`]).
unsafe extern "C" fn cap_pages_raw(
    db: *mut rusqlite::ffi::sqlite3,
    err: *mut *mut std::os::raw::c_char,
    _: *const rusqlite::ffi::sqlite3_api_routines,
) -> std::os::raw::c_int {
    // SAFETY: SQLite calls this with the connection being opened, as rusqlite's bridge expects;
    // the hook is a plain function with no state behind its argument. (Set after the bridge:
    // the rusqlite handle it lends clears every hook as it is let go.)
    unsafe {
        let done = rusqlite::auto_extension::init_auto_extension(db, err, cap_pages_on);
        rusqlite::ffi::sqlite3_commit_hook(db, Some(commit_gate), std::ptr::null_mut());
        done
    }
}

fn cap_pages_on(c: rusqlite::Connection) -> rusqlite::Result<()> {
    let page: i64 = c.query_row("PRAGMA page_size", [], |r| r.get(0))?;
    let pages = MAX_PAGE_BYTES.load(Ordering::Relaxed) / page.max(512) as u64;
    c.query_row(&format!("PRAGMA max_page_count = {pages}"), [], |_| Ok(()))
}

/// Whether the graph's file or its WAL has grown to (within a few pages of) `limit`: a write
/// that failed then failed for want of room.
fn at_limit(path: &Path, limit: u64) -> bool {
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    [path.to_path_buf(), PathBuf::from(wal)]
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .any(|m| m.len().saturating_add(256 << 10) >= limit)
}

/// Lets this job use its budget and [`CPU_GRACE_SECS`] more of CPU from now (the soft
/// RLIMIT_CPU; the kernel ends the worker past it).
fn limit_cpu(budget: Duration) {
    // SAFETY: getrusage and setrlimit with valid arguments and pointers to live structs.
    unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_SELF, &mut usage) != 0 {
            return;
        }
        let used = (usage.ru_utime.tv_sec + usage.ru_stime.tv_sec).max(0) as u64 + 1;
        let mut l = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_CPU, &mut l) != 0 {
            return;
        }
        l.rlim_cur = (used + budget.as_secs() + CPU_GRACE_SECS).min(l.rlim_max);
        libc::setrlimit(libc::RLIMIT_CPU, &l);
    }
}

/// A frame: `Ok(None)` at a clean end of input (before a frame's first byte).
fn read_frame(r: &mut impl Read) -> std::io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(std::io::Error::other(format!(
            "a frame of {len} bytes (at most {MAX_FRAME})"
        )));
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body)?;
    Ok(Some(body))
}

fn write_frame(w: &mut impl Write, body: &[u8]) -> std::io::Result<()> {
    let len = u32::try_from(body.len()).map_err(std::io::Error::other)?;
    w.write_all(&len.to_le_bytes())?;
    w.write_all(body)?;
    w.flush()
}

/// The quota refusal for a write that could add to a graph already at its quota
/// ([`super::MAX_GRAPH_BYTES`] unless set otherwise):
/// statements without `CREATE`, `MERGE` or `SET` (deleting, removing) still run, so a full
/// graph can be cleaned up. (Cypher adds data only through those three clauses; the words in
/// a string literal refuse a statement only while the graph is full.)
fn written_too_much(path: &Path, job: &Job, max_bytes: u64) -> Option<GraphError> {
    let upper = job.cypher.to_ascii_uppercase();
    let adds = ["CREATE", "MERGE", "SET"].iter().any(|w| upper.contains(w));
    if job.mode == GraphMode::Read || !adds {
        return None;
    }
    let bytes = used_bytes(path);
    (bytes >= max_bytes).then_some(GraphError::Quota(bytes, max_bytes))
}

/// The bytes of the graph's pages in use (free pages left by deletions do not count), read
/// through SQLite itself; 0 before the file exists.
fn used_bytes(path: &Path) -> u64 {
    use rusqlite::OpenFlags;
    if !path.exists() {
        return 0;
    }
    let read = || -> rusqlite::Result<u64> {
        let c = rusqlite::Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        let pragma =
            |name: &str| c.query_row(&format!("PRAGMA {name}"), [], |r| r.get::<_, i64>(0));
        let pages = pragma("page_count")? - pragma("freelist_count")?;
        Ok((pages.max(0) as u64).saturating_mul(pragma("page_size")?.max(0) as u64))
    };
    // Unreadable: the file size, which counts free pages too.
    read().unwrap_or_else(|_| std::fs::metadata(path).map_or(0, |m| m.len()))
}

fn open(dir: &Path, path: &Path) -> Result<Database, GraphError> {
    let storage = |e: &dyn std::fmt::Display| GraphError::Storage(e.to_string());
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| storage(&e))?;
    }
    let config = Config {
        // An answered write is on disk.
        synchronous: SyncMode::Full,
        max_result_rows: MAX_ENGINE_ROWS,
        max_materialized_bytes: MAX_MATERIALIZED_BYTES,
        // Many meshes may be open at once: no 256 MiB mapping each.
        mmap_size: 0,
        cache_size: -8000,
        ..Config::default()
    };
    // graphdblite creates the file 0600.
    Database::open_with_config(path, config).map_err(|e| storage(&e))
}

/// Runs the job in a transaction of its mode (a write's commit passes [`commit_gate`]).
fn run(
    db: &mut Database,
    job: &Job,
    params: &HashMap<String, Value>,
) -> Result<GraphAnswer, GraphError> {
    let failed = |e| engine_error(e, job.mode);
    let rows = match job.mode {
        GraphMode::Read => {
            let tx = db.read_tx().map_err(failed)?;
            let rows = tx
                .query_with_params(&job.cypher, Some(params))
                .map_err(failed)?;
            tx.commit().map_err(failed)?;
            rows
        }
        GraphMode::Write => db
            .execute_with_params(&job.cypher, Some(params))
            .map_err(failed)?,
    };
    Ok(records(rows))
}

/// The records of an answer, as many as it may carry.
fn records(rows: Vec<graphdblite::Record>) -> GraphAnswer {
    let mut answer = GraphAnswer::default();
    let mut bytes = 0;
    for row in rows {
        let record: Map<String, Json> = row.iter().map(|(k, v)| (k.clone(), to_json(v))).collect();
        bytes += Json::Object(record.clone()).to_string().len();
        if answer.records.len() >= MAX_GRAPH_RECORDS
            || bytes > MAX_GRAPH_ANSWER_BYTES
            || record.values().any(|v| too_deep(v, MAX_DEPTH))
        {
            answer.truncated = true;
            break;
        }
        answer.records.push(record);
    }
    answer
}

/// Lists and maps nested deeper than this in a record leave it (and the rest) out as
/// `truncated`: JSON readers refuse deep nesting (serde_json at 128, the broker's frames and
/// the answer's own envelope included).
const MAX_DEPTH: usize = 64;

/// Whether `v` nests lists or maps more than `left` deep.
fn too_deep(v: &Json, left: usize) -> bool {
    let inner: Box<dyn Iterator<Item = &Json>> = match v {
        Json::Array(items) => Box::new(items.iter()),
        Json::Object(map) => Box::new(map.values()),
        _ => return false,
    };
    left == 0 || inner.into_iter().any(|i| too_deep(i, left - 1))
}

fn engine_error(e: graphdblite::GraphError, mode: GraphMode) -> GraphError {
    use graphdblite::GraphError as E;
    match e {
        // In a read transaction the engine refuses a plan that writes with this variant.
        E::Transaction { .. } if mode == GraphMode::Read => GraphError::ReadOnly(e.to_string()),
        E::Storage { .. } | E::Serialization { .. } | E::SchemaMismatch { .. } => {
            GraphError::Storage(e.to_string())
        }
        E::SizeLimit { .. } => GraphError::Limit(e.to_string()),
        _ => GraphError::Query(e.to_string()),
    }
}

/// A JSON parameter as a Cypher value (integers that fit i64 stay integers).
fn from_json(v: &Json) -> Result<Value, String> {
    Ok(match v {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => Value::I64(i),
            (None, Some(f)) => Value::F64(f),
            (None, None) => return Err(format!("{n} is not a number Cypher holds")),
        },
        Json::String(s) => Value::String(s.clone()),
        Json::Array(items) => Value::List(items.iter().map(from_json).collect::<Result<_, _>>()?),
        Json::Object(map) => Value::Map(
            map.iter()
                .map(|(k, v)| Ok((k.clone(), from_json(v)?)))
                .collect::<Result<_, String>>()?,
        ),
    })
}

/// A Cypher value as JSON: nodes as `{id, labels, properties}`, relationships as
/// `{type, start, end, properties}`, paths as `{nodes, relationships}`, temporal values as
/// their ISO text. A float that JSON cannot hold (NaN, ±∞) is its text.
fn to_json(v: &Value) -> Json {
    match v {
        Value::Null => Json::Null,
        Value::Bool(b) => Json::Bool(*b),
        Value::I64(i) => Json::from(*i),
        Value::F64(f) => serde_json::Number::from_f64(*f)
            .map(Json::Number)
            .unwrap_or_else(|| Json::String(f.to_string())),
        Value::String(s) => Json::String(s.clone()),
        Value::List(items) => Json::Array(items.iter().map(to_json).collect()),
        Value::Map(map) => Json::Object(map.iter().map(|(k, v)| (k.clone(), to_json(v))).collect()),
        Value::Node(n) => node_json(n),
        Value::Edge(e) => edge_json(e),
        Value::Path(p) => serde_json::json!({
            "nodes": p.nodes.iter().map(node_json).collect::<Vec<_>>(),
            "relationships": p.edges.iter().map(edge_json).collect::<Vec<_>>(),
        }),
        Value::Date(d) => Json::String(d.to_string()),
        Value::LocalTime(t) => Json::String(t.to_string()),
        Value::Time(t) => Json::String(t.to_string()),
        Value::LocalDateTime(t) => Json::String(t.to_string()),
        Value::DateTime(t) => Json::String(t.to_string()),
        Value::Duration(d) => Json::String(d.to_string()),
    }
}

fn properties_json(p: &graphdblite::Properties) -> Json {
    // Sorted, so the same node always prints the same.
    let sorted: std::collections::BTreeMap<_, _> = p.iter().collect();
    Json::Object(
        sorted
            .into_iter()
            .map(|(k, v)| (k.clone(), to_json(v)))
            .collect(),
    )
}

fn node_json(n: &graphdblite::Node) -> Json {
    serde_json::json!({
        "id": n.id.0,
        "labels": n.labels,
        "properties": properties_json(&n.properties),
    })
}

fn edge_json(e: &graphdblite::Edge) -> Json {
    serde_json::json!({
        "type": e.label,
        "start": e.src.0,
        "end": e.dst.0,
        "properties": properties_json(&e.properties),
    })
}
