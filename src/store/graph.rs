//! Per-mesh graphs (issue 16, PROTOCOL.md §19): one graphdblite database (openCypher over
//! SQLite) per mesh in `<data>/graph/<mesh-id>.db`. The engine stays behind this module.
//!
//! Each mesh's database is owned by one thread of its own, so engine work never runs on a tokio
//! worker and one mesh's queries never wait for another's. graphdblite has no cancel hook: a
//! query that outlives its time budget is answered `timeout` and its thread is left to finish
//! on its own (the engine's row, traversal and memory caps end most queries; a streaming
//! cross product may run much longer). While it runs, that mesh's graph calls are refused as
//! `busy`; other meshes are not affected. The next call after it ends opens a fresh handle.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use graphdblite::{Config, Database, SyncMode, Value};
use serde_json::{Map, Value as Json};
use tokio::sync::oneshot;

/// How long one query may take, from the request to the answer.
pub const GRAPH_TIME_BUDGET: Duration = Duration::from_secs(10);
/// Most records one answer carries; more set `truncated`.
pub const MAX_GRAPH_RECORDS: usize = 1000;
/// Most bytes of records (as JSON) one answer carries, so it fits a frame.
pub const MAX_GRAPH_ANSWER_BYTES: usize = 56 * 1024;
/// Rows past which the engine aborts a query (memory stays bounded however many match).
const MAX_ENGINE_ROWS: usize = 10_000;
/// What one query may keep in memory at once (joins, sorts, aggregations).
const MAX_MATERIALIZED_BYTES: u64 = 256 << 20;
/// Threads past their budget that may still run, broker-wide: the engine cannot be stopped, so
/// each burns a core until it ends; past this many every graph query waits (`busy`).
const MAX_OVERRAN: usize = 2;
/// A mesh's graph file (with its WAL) past this size takes no more writes.
pub const MAX_GRAPH_BYTES: u64 = 256 << 20;
/// A mesh's thread closes its database after this long without a query.
const IDLE: Duration = Duration::from_secs(60);
/// Parsing deeply nested queries recurses; this stack holds the engine's own nesting limits.
const WORKER_STACK: usize = 16 << 20;

#[derive(Debug, thiserror::Error)]
pub enum GraphError {
    /// The query is not valid Cypher, names something missing, or failed at run time.
    #[error("{0}")]
    Query(String),
    /// A write reached `graph_query`: the engine's read transaction refused its plan.
    #[error("graph_query is read-only ({0}); use graph_execute to write")]
    ReadOnly(String),
    #[error("a parameter: {0}")]
    Param(String),
    #[error("the query ran past its time budget of {}s and was abandoned", .0.as_secs())]
    Timeout(Duration),
    #[error(
        "an earlier query on this mesh's graph overran its time budget and is still running; try again later"
    )]
    Busy,
    #[error(
        "the broker is still finishing {0} graph queries that overran their time budget; try again later"
    )]
    Overloaded(usize),
    #[error(
        "quota: this mesh's graph holds {0} bytes, the most it may hold is {1}; only deletions run until it is smaller (DETACH DELETE, REMOVE)"
    )]
    Quota(u64, u64),
    /// Past one of the engine's limits (rows, memory, traversal work, sizes).
    #[error("{0}")]
    Limit(String),
    #[error("graph storage: {0}")]
    Storage(String),
}

/// Whether a query may write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GraphMode {
    /// Runs in a read transaction: the engine refuses any plan that writes.
    Read,
    /// Runs in its own write transaction, committed (fsync'd) before the answer.
    Write,
}

/// The records of one query, as JSON objects (column name → value).
#[derive(Debug, Clone, Default)]
pub struct GraphAnswer {
    pub records: Vec<Map<String, Json>>,
    /// Some records were left out (past [`MAX_GRAPH_RECORDS`] or [`MAX_GRAPH_ANSWER_BYTES`]).
    pub truncated: bool,
}

struct Job {
    mode: GraphMode,
    cypher: String,
    params: HashMap<String, Value>,
    reply: oneshot::Sender<Result<GraphAnswer, GraphError>>,
}

/// A mesh's thread: where its jobs go, and whether it still runs.
struct Worker {
    id: u64,
    jobs: mpsc::Sender<Job>,
    alive: Arc<AtomicBool>,
}

#[derive(Default)]
struct Workers {
    live: HashMap<String, Worker>,
    /// Threads abandoned at their time budget, until they end.
    overran: HashMap<String, Arc<AtomicBool>>,
}

/// Every mesh's graph.
pub struct Graphs {
    dir: PathBuf,
    budget: Duration,
    max_bytes: u64,
    workers: Arc<Mutex<Workers>>,
    next_id: AtomicU64,
}

impl Graphs {
    /// Graphs under `dir` (created 0700 at the first query).
    pub fn new(dir: PathBuf) -> Graphs {
        Graphs::with_budget(dir, GRAPH_TIME_BUDGET)
    }

    pub fn with_budget(dir: PathBuf, budget: Duration) -> Graphs {
        Graphs {
            dir,
            budget,
            max_bytes: MAX_GRAPH_BYTES,
            workers: Arc::default(),
            next_id: AtomicU64::new(1),
        }
    }

    /// The same graphs with another size quota (tests).
    pub fn with_max_bytes(mut self, max_bytes: u64) -> Graphs {
        self.max_bytes = max_bytes;
        self
    }

    /// Runs `cypher` on `mesh_id`'s graph with `params` (a JSON object, bound as Cypher
    /// parameters), within the time budget.
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
        let params = match params {
            Some(map) => map
                .iter()
                .map(|(k, v)| Ok((k.clone(), from_json(v).map_err(GraphError::Param)?)))
                .collect::<Result<_, GraphError>>()?,
            None => HashMap::new(),
        };
        let (reply, answer) = oneshot::channel();
        let job = Job {
            mode,
            cypher: cypher.to_owned(),
            params,
            reply,
        };
        let worker_id = self.submit(mesh_id, job)?;
        match tokio::time::timeout(self.budget, answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(GraphError::Storage(
                "the graph's thread ended without answering".into(),
            )),
            Err(_) => {
                self.abandon(mesh_id, worker_id);
                Err(GraphError::Timeout(self.budget))
            }
        }
    }

    /// Hands `job` to the mesh's thread (starting one if needed); returns the thread's id.
    fn submit(&self, mesh_id: &str, job: Job) -> Result<u64, GraphError> {
        let mut workers = self.workers.lock().unwrap_or_else(|e| e.into_inner());
        workers
            .overran
            .retain(|_, alive| alive.load(Ordering::Acquire));
        if workers.overran.contains_key(mesh_id) {
            return Err(GraphError::Busy);
        }
        if workers.overran.len() >= MAX_OVERRAN {
            return Err(GraphError::Overloaded(workers.overran.len()));
        }
        let job = match workers.live.get(mesh_id) {
            Some(w) => match w.jobs.send(job) {
                Ok(()) => return Ok(w.id),
                // Its thread ended (a failed open); start another.
                Err(mpsc::SendError(job)) => job,
            },
            None => job,
        };
        let worker = self.spawn(mesh_id)?;
        let id = worker.id;
        worker
            .jobs
            .send(job)
            .map_err(|_| GraphError::Storage("the graph's thread did not start".into()))?;
        workers.live.insert(mesh_id.to_owned(), worker);
        Ok(id)
    }

    /// Moves the mesh's thread `worker_id`, past its budget, aside: later calls are refused
    /// until it ends, then get a fresh thread.
    fn abandon(&self, mesh_id: &str, worker_id: u64) {
        let mut workers = self.workers.lock().unwrap_or_else(|e| e.into_inner());
        if workers.live.get(mesh_id).is_some_and(|w| w.id == worker_id)
            && let Some(w) = workers.live.remove(mesh_id)
        {
            tracing::warn!(mesh_id, "a graph query overran its time budget");
            workers.overran.insert(mesh_id.to_owned(), w.alive);
        }
    }

    fn spawn(&self, mesh_id: &str) -> Result<Worker, GraphError> {
        let (jobs, inbox) = mpsc::channel();
        let alive = Arc::new(AtomicBool::new(true));
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let thread = Thread {
            id,
            mesh_id: mesh_id.to_owned(),
            path: self.dir.join(format!("{mesh_id}.db")),
            dir: self.dir.clone(),
            max_bytes: self.max_bytes,
            inbox,
            alive: alive.clone(),
            workers: self.workers.clone(),
        };
        std::thread::Builder::new()
            .name(format!("graph-{mesh_id}"))
            .stack_size(WORKER_STACK)
            .spawn(move || thread.serve())
            .map_err(|e| GraphError::Storage(format!("cannot start the graph's thread: {e}")))?;
        Ok(Worker { id, jobs, alive })
    }
}

/// One mesh's thread and the database it owns.
struct Thread {
    id: u64,
    mesh_id: String,
    path: PathBuf,
    dir: PathBuf,
    max_bytes: u64,
    inbox: mpsc::Receiver<Job>,
    alive: Arc<AtomicBool>,
    workers: Arc<Mutex<Workers>>,
}

impl Thread {
    fn serve(self) {
        // Cleared however the thread ends (a panic in the engine included), so a mesh is never
        // left `busy` for good.
        let _alive = Alive(self.alive.clone());
        let mut db: Option<Database> = None;
        loop {
            let job = match self.inbox.recv_timeout(IDLE) {
                Ok(job) => job,
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => match self.retire() {
                    Some(job) => job,
                    None => break,
                },
            };
            // The caller gave up (its budget ran out while the job waited).
            if job.reply.is_closed() {
                continue;
            }
            let result = match written_too_much(&self.path, &job, self.max_bytes) {
                Some(e) => Err(e),
                None => match &mut db {
                    Some(db) => run(db, &job),
                    None => match open(&self.dir, &self.path) {
                        Ok(opened) => run(db.insert(opened), &job),
                        Err(e) => {
                            let _ = job.reply.send(Err(e));
                            self.retire_now();
                            break;
                        }
                    },
                },
            };
            let _ = job.reply.send(result);
        }
    }

    /// Idle: leaves the registry unless a job arrived meanwhile (sends happen under its lock,
    /// so none can be lost after this).
    fn retire(&self) -> Option<Job> {
        let mut workers = self.workers.lock().unwrap_or_else(|e| e.into_inner());
        if let Ok(job) = self.inbox.try_recv() {
            return Some(job);
        }
        if workers
            .live
            .get(&self.mesh_id)
            .is_some_and(|w| w.id == self.id)
        {
            workers.live.remove(&self.mesh_id);
        }
        None
    }

    fn retire_now(&self) {
        let mut workers = self.workers.lock().unwrap_or_else(|e| e.into_inner());
        if workers
            .live
            .get(&self.mesh_id)
            .is_some_and(|w| w.id == self.id)
        {
            workers.live.remove(&self.mesh_id);
        }
    }
}

/// Marks its thread ended when dropped.
struct Alive(Arc<AtomicBool>);

impl Drop for Alive {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// The quota refusal for a write that could add to a graph already at [`MAX_GRAPH_BYTES`]:
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

fn run(db: &mut Database, job: &Job) -> Result<GraphAnswer, GraphError> {
    let rows = match job.mode {
        GraphMode::Read => {
            let tx = db.read_tx().map_err(|e| engine_error(e, job.mode))?;
            let rows = tx
                .query_with_params(&job.cypher, Some(&job.params))
                .map_err(|e| engine_error(e, job.mode))?;
            tx.commit().map_err(|e| engine_error(e, job.mode))?;
            rows
        }
        GraphMode::Write => db
            .execute_with_params(&job.cypher, Some(&job.params))
            .map_err(|e| engine_error(e, job.mode))?,
    };
    let mut answer = GraphAnswer::default();
    let mut bytes = 0;
    for row in rows {
        let record: Map<String, Json> = row.iter().map(|(k, v)| (k.clone(), to_json(v))).collect();
        bytes += Json::Object(record.clone()).to_string().len();
        if answer.records.len() >= MAX_GRAPH_RECORDS || bytes > MAX_GRAPH_ANSWER_BYTES {
            answer.truncated = true;
            break;
        }
        answer.records.push(record);
    }
    Ok(answer)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn graphs() -> (tempfile::TempDir, Graphs) {
        let dir = tempfile::tempdir().unwrap();
        let graphs = Graphs::new(dir.path().join("graph"));
        (dir, graphs)
    }

    async fn rows(g: &Graphs, mode: GraphMode, cypher: &str) -> Vec<Map<String, Json>> {
        g.run("m1", mode, cypher, None).await.unwrap().records
    }

    /// A few queries people write, checked against what openCypher says they return.
    #[tokio::test]
    async fn cypher_the_way_people_write_it() {
        let (_dir, g) = graphs();
        let w = GraphMode::Write;
        let r = GraphMode::Read;
        rows(&g, w, "CREATE (:Person {name: 'Ann', age: 41})-[:KNOWS {since: 2020}]->(:Person {name: 'Bob', age: 35})").await;
        rows(
            &g,
            w,
            "MATCH (b:Person {name: 'Bob'}) CREATE (b)-[:KNOWS]->(:Person {name: 'Cy'})",
        )
        .await;
        // MERGE matches instead of creating twice.
        rows(&g, w, "MERGE (p:Person {name: 'Ann'}) SET p.age = 42").await;
        let all = rows(
            &g,
            r,
            "MATCH (p:Person) RETURN p.name AS name, p.age AS age ORDER BY name",
        )
        .await;
        assert_eq!(all.len(), 3, "{all:?}");
        assert_eq!(all[0]["name"], "Ann");
        assert_eq!(all[0]["age"], 42);
        assert_eq!(all[2]["age"], Json::Null);
        // Two hops, aggregation, OPTIONAL MATCH.
        let hops = rows(
            &g,
            r,
            "MATCH (a:Person {name:'Ann'})-[:KNOWS*1..2]->(x) RETURN count(x) AS n",
        )
        .await;
        assert_eq!(hops[0]["n"], 2);
        let opt = rows(&g, r, "MATCH (p:Person) OPTIONAL MATCH (p)-[:KNOWS]->(q) RETURN p.name AS p, q.name AS q ORDER BY p").await;
        assert_eq!(opt.len(), 3);
        assert_eq!(opt[2]["q"], Json::Null);
        // Nodes and relationships come back as JSON objects.
        let rel = rows(&g, r, "MATCH (a {name:'Ann'})-[k:KNOWS]->(b) RETURN a, k").await;
        assert_eq!(rel[0]["a"]["labels"], serde_json::json!(["Person"]));
        assert_eq!(rel[0]["a"]["properties"]["name"], "Ann");
        assert_eq!(rel[0]["k"]["type"], "KNOWS");
        assert_eq!(rel[0]["k"]["properties"]["since"], 2020);
        // Parameters are bound, not spliced.
        let params: Map<String, Json> =
            serde_json::from_str(r#"{"name": "Bob') DETACH DELETE (n"}"#).unwrap();
        let none = g
            .run(
                "m1",
                r,
                "MATCH (p:Person {name: $name}) RETURN p.name AS name",
                Some(&params),
            )
            .await
            .unwrap();
        assert!(none.records.is_empty());
        rows(&g, w, "MATCH (c:Person {name: 'Cy'}) DETACH DELETE c").await;
        let left = rows(&g, r, "MATCH (p:Person) RETURN count(p) AS n").await;
        assert_eq!(left[0]["n"], 2);
    }

    #[tokio::test]
    async fn a_read_refuses_every_kind_of_write() {
        let (_dir, g) = graphs();
        rows(&g, GraphMode::Write, "CREATE (:T {v: 1})").await;
        for write in [
            "CREATE (:T {v: 2})",
            "MATCH (t:T) SET t.v = 3",
            "MATCH (t:T) DETACH DELETE t",
            "MERGE (:T {v: 4})",
            "MATCH (t:T) REMOVE t.v",
            "MATCH (t:T) WITH t CREATE (:U)",
        ] {
            let e = g.run("m1", GraphMode::Read, write, None).await.unwrap_err();
            assert!(matches!(e, GraphError::ReadOnly(_)), "{write}: {e:?}");
        }
        let v = rows(&g, GraphMode::Read, "MATCH (t:T) RETURN t.v AS v").await;
        assert_eq!(v.len(), 1);
        assert_eq!(v[0]["v"], 1);
    }

    /// Past its budget a query is answered `Timeout`; its mesh is `Busy` until the abandoned
    /// thread ends, other meshes answer meanwhile, and afterwards the mesh works again.
    #[tokio::test]
    async fn an_overrun_holds_up_its_own_mesh_only_and_only_while_it_runs() {
        let dir = tempfile::tempdir().unwrap();
        let g = Graphs::with_budget(dir.path().join("graph"), Duration::from_millis(200));
        // Both databases open first (opening one is not what is measured here).
        for mesh in ["m1", "m2"] {
            while g
                .run(mesh, GraphMode::Read, "RETURN 1 AS one", None)
                .await
                .is_err()
            {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        // Thirty million comparisons: seconds in a debug build, far past 200 ms in any.
        let slow = "UNWIND range(1, 300) AS a WITH a \
                    WHERE size([x IN range(1, 100000) WHERE x < 0]) > 0 RETURN count(*) AS n";
        let e = g.run("m1", GraphMode::Read, slow, None).await.unwrap_err();
        assert!(matches!(e, GraphError::Timeout(_)), "{e:?}");
        let e = g
            .run("m1", GraphMode::Read, "RETURN 1 AS one", None)
            .await
            .unwrap_err();
        assert!(matches!(e, GraphError::Busy), "{e:?}");
        let other = g
            .run("m2", GraphMode::Read, "RETURN 1 AS one", None)
            .await
            .unwrap();
        assert_eq!(other.records[0]["one"], 1);
        let mut waited = 0;
        let back = loop {
            match g.run("m1", GraphMode::Read, "RETURN 1 AS one", None).await {
                Err(GraphError::Busy) if waited < 600 => {
                    waited += 1;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                other => break other,
            }
        };
        assert_eq!(back.unwrap().records[0]["one"], 1);
    }

    #[tokio::test]
    async fn answers_are_capped() {
        let (_dir, g) = graphs();
        let a = g
            .run(
                "m1",
                GraphMode::Read,
                "UNWIND range(1, 5000) AS i RETURN i",
                None,
            )
            .await
            .unwrap();
        assert_eq!(a.records.len(), MAX_GRAPH_RECORDS);
        assert!(a.truncated);
        let e = g
            .run(
                "m1",
                GraphMode::Read,
                "UNWIND range(1, 20000) AS i RETURN i",
                None,
            )
            .await
            .unwrap_err();
        // The engine reports its row cap as a run-time query error naming it.
        assert!(
            matches!(&e, GraphError::Query(m) if m.contains("10000 rows")),
            "{e:?}"
        );
    }

    #[tokio::test]
    async fn a_full_graph_takes_deletions_only() {
        let dir = tempfile::tempdir().unwrap();
        let g = Graphs::new(dir.path().join("graph")).with_max_bytes(256 * 1024);
        let blob = "x".repeat(4000);
        let mut refused = None;
        for _ in 0..200 {
            let mut params = Map::new();
            params.insert("b".into(), Json::String(blob.clone()));
            match g
                .run(
                    "m1",
                    GraphMode::Write,
                    "UNWIND range(1, 10) AS i CREATE (:N {p: $b})",
                    Some(&params),
                )
                .await
            {
                Ok(_) => {}
                Err(e) => {
                    refused = Some(e);
                    break;
                }
            }
        }
        assert!(
            matches!(refused, Some(GraphError::Quota(..))),
            "{refused:?}"
        );
        // Reads and deletions still run; then there is room again.
        assert!(
            !rows(&g, GraphMode::Read, "MATCH (n:N) RETURN count(n) AS c")
                .await
                .is_empty()
        );
        rows(&g, GraphMode::Write, "MATCH (n:N) DETACH DELETE n").await;
        rows(&g, GraphMode::Write, "CREATE (:N {p: 'small'})").await;
    }
}
