//! `store::graph` on its own: the engine through [`Graphs`], each mesh's graph in a worker
//! process of the binary under test (what the broker runs), without the network.

use std::time::Duration;

use claudemesh::store::graph::{GraphError, GraphMode, Graphs, MAX_GRAPH_RECORDS};
use serde_json::{Map, Value as Json};

use crate::common::BIN;

/// Graphs under `dir`, their workers run from the `claudemesh` binary under test.
fn graphs_in(dir: &tempfile::TempDir) -> Graphs {
    Graphs::new(dir.path().join("graph")).with_worker(BIN)
}

/// The error `cypher` on m1 is refused with.
async fn refused(
    g: &Graphs,
    mode: GraphMode,
    cypher: &str,
    params: Option<&Map<String, Json>>,
) -> GraphError {
    g.run("m1", mode, cypher, params).await.unwrap_err()
}

/// Parameters holding one string.
fn param(name: &str, value: String) -> Map<String, Json> {
    Map::from_iter([(name.to_owned(), Json::String(value))])
}

fn graphs() -> (tempfile::TempDir, Graphs) {
    let dir = tempfile::tempdir().unwrap();
    let graphs = graphs_in(&dir);
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

/// Whether process `pid` has ended (gone, or a zombie not yet reaped).
fn ended(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name in parentheses.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
        Err(_) => true,
    }
}

/// Past its budget a query is answered `Timeout` and stopped: its worker process ends, the
/// mesh answers at once with a fresh one, a write stopped mid-way leaves nothing, and other
/// meshes answer while it runs.
#[tokio::test]
async fn an_overrun_is_stopped_and_its_mesh_answers_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let g =
        Graphs::with_budget(dir.path().join("graph"), Duration::from_millis(700)).with_worker(BIN);
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
    let pid = |mesh: &str| {
        g.worker_pids()
            .into_iter()
            .find(|(m, _)| m == mesh)
            .map(|(_, pid)| pid)
    };
    let first = pid("m1").expect("m1's worker");
    // Ten billion comparisons, a million a row (the engine caps rows, lists and memory, not
    // work done within a row): hours, unless stopped.
    let endless = "UNWIND range(1, 10000) AS a WITH a \
                   WHERE size([x IN range(1, 1000000) WHERE x < 0]) > 0 RETURN count(*) AS n";
    let (slow, other) = tokio::join!(g.run("m1", GraphMode::Read, endless, None), async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        g.run("m2", GraphMode::Read, "RETURN 2 AS two", None).await
    });
    assert!(matches!(slow, Err(GraphError::Timeout(_))), "{slow:?}");
    assert_eq!(other.unwrap().records[0]["two"], 2);
    crate::common::eventually("the overrun worker to end", || {
        std::future::ready(ended(first))
    })
    .await;
    let back = g
        .run("m1", GraphMode::Read, "RETURN 1 AS one", None)
        .await
        .unwrap();
    assert_eq!(back.records[0]["one"], 1);
    assert_ne!(pid("m1"), Some(first), "a fresh worker answers");
    // A write stopped at its budget: rolled back, nothing of it kept.
    let slow_write = "UNWIND range(1, 300) AS a WITH a \
                      WHERE size([x IN range(1, 1000000) WHERE x < 0]) = 0 CREATE (:Slow {a: a})";
    let e = g
        .run("m1", GraphMode::Write, slow_write, None)
        .await
        .unwrap_err();
    assert!(matches!(e, GraphError::Timeout(_)), "{e:?}");
    let n = rows(&g, GraphMode::Read, "MATCH (s:Slow) RETURN count(s) AS n").await;
    assert_eq!(n[0]["n"], 0);
}

/// A write is answered once committed, or stopped before its commit and kept nowhere:
/// `timeout` never leaves one half-known (a commit under way when the budget ends is waited for).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_is_either_answered_or_left_out_entirely() {
    let dir = tempfile::tempdir().unwrap();
    // Every commit takes longer than the whole budget.
    let g = Graphs::with_budget(dir.path().join("graph"), Duration::from_millis(800))
        .with_commit_delay(Duration::from_millis(1500))
        .with_worker(BIN);
    let count = |label: &'static str| {
        let g = &g;
        async move {
            let cypher = format!("MATCH (n:{label}) RETURN count(n) AS n");
            rows(g, GraphMode::Read, &cypher).await[0]["n"].clone()
        }
    };
    // Its statement ran within the budget, its commit past it: waited for, and answered.
    let written = g
        .run(
            "m1",
            GraphMode::Write,
            "CREATE (:Kept {v: 1}) RETURN 1 AS done",
            None,
        )
        .await;
    assert_eq!(written.unwrap().records[0]["done"], 1);
    assert_eq!(count("Kept").await, 1);
    // Its statement overran: stopped before its commit, and nothing of it is there.
    let endless = "UNWIND range(1, 10000) AS a WITH a \
                   WHERE size([x IN range(1, 1000000) WHERE x < 0]) >= 0 \
                   CREATE (:Lost {a: a}) RETURN count(*) AS n";
    let stopped = g.run("m1", GraphMode::Write, endless, None).await;
    assert!(
        matches!(stopped, Err(GraphError::Timeout(_))),
        "{stopped:?}"
    );
    assert_eq!(count("Lost").await, 0);
    assert_eq!(count("Kept").await, 1);
    // Let commit, then ended before it finished: the answer says the outcome is unknown.
    let db = dir.path().join("graph").join("m1.db");
    let (ended_mid_commit, ()) = tokio::join!(
        g.run(
            "m1",
            GraphMode::Write,
            "CREATE (:Maybe) RETURN 1 AS done",
            None
        ),
        async {
            tokio::time::sleep(Duration::from_millis(1100)).await;
            for pid in workers_of(&db) {
                // SAFETY: kill with a process id and a signal number.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    );
    let said = format!("{ended_mid_commit:?}");
    assert!(
        matches!(ended_mid_commit, Err(GraphError::Storage(_))) && said.contains("may or may not"),
        "{said}"
    );
}

/// The graph workers serving the database at `db` (their command line names it).
fn workers_of(db: &std::path::Path) -> Vec<i32> {
    let db = db.to_str().unwrap().as_bytes();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| c.split(|b| *b == 0).any(|arg| arg == db))
        })
        .collect()
}

/// One statement cannot write far past the quota: the kernel's cap on the worker's files stops
/// it, it is rolled back, and the graph keeps what it had and takes the next small write.
#[tokio::test]
async fn one_statement_cannot_write_far_past_the_quota() {
    let dir = tempfile::tempdir().unwrap();
    let g = graphs_in(&dir).with_max_bytes(1 << 20);
    rows(&g, GraphMode::Write, "CREATE (:Small {v: 1})").await;
    let params = param("b", "x".repeat(4000));
    // About 36 MB in one statement, into a graph allowed 1 MiB.
    let e = refused(
        &g,
        GraphMode::Write,
        "UNWIND range(1, 9000) AS i CREATE (:N {p: $b})",
        Some(&params),
    )
    .await;
    assert!(matches!(e, GraphError::TooBig(_)), "{e:?}");
    assert!(e.to_string().contains("nothing of it was kept"), "{e}");
    let limit = claudemesh::store::graph::worker::file_limit(1 << 20);
    for f in std::fs::read_dir(dir.path().join("graph")).unwrap() {
        let f = f.unwrap();
        let len = f.metadata().unwrap().len();
        assert!(len <= limit, "{:?} is {len} bytes", f.file_name());
    }
    let n = rows(&g, GraphMode::Read, "MATCH (n:N) RETURN count(n) AS n").await;
    assert_eq!(n[0]["n"], 0);
    rows(&g, GraphMode::Write, "CREATE (:Small {v: 2})").await;
    let small = rows(&g, GraphMode::Read, "MATCH (s:Small) RETURN count(s) AS n").await;
    assert_eq!(small[0]["n"], 2);
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
    let e = refused(
        &g,
        GraphMode::Read,
        "UNWIND range(1, 20000) AS i RETURN i",
        None,
    )
    .await;
    // The engine reports its row cap as a run-time query error naming it.
    assert!(
        matches!(&e, GraphError::Query(m) if m.contains("10000 rows")),
        "{e:?}"
    );
}

#[tokio::test]
async fn a_full_graph_takes_deletions_only() {
    let dir = tempfile::tempdir().unwrap();
    let g = graphs_in(&dir).with_max_bytes(256 * 1024);
    let blob = "x".repeat(4000);
    let mut refused = None;
    for _ in 0..200 {
        let params = param("b", blob.clone());
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

/// The pages a graph's database has in use, read as the quota reads them.
fn pages_in_use(dir: &tempfile::TempDir) -> u64 {
    let c = rusqlite::Connection::open_with_flags(
        dir.path().join("graph/m1.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let pragma = |name: &str| {
        c.query_row(&format!("PRAGMA {name}"), [], |r| r.get::<_, i64>(0))
            .unwrap() as u64
    };
    (pragma("page_count") - pragma("freelist_count")) * pragma("page_size")
}

/// A statement that starts under the quota and whose pages would not fit the file cap, though
/// its WAL would, is refused before it commits: otherwise it would commit into the WAL, no
/// checkpoint could ever copy it back into the capped database, and the WAL would grow until
/// nothing, deletions included, could be written again. After the refusal deletions and writes
/// run as usual.
#[tokio::test]
async fn a_statement_whose_pages_would_outgrow_the_file_cap_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    // A quota large next to the WAL a statement writes: 64 MiB, files capped at 80.
    let quota = 64 << 20;
    let g = graphs_in(&dir).with_max_bytes(quota);
    let limit = claudemesh::store::graph::worker::file_limit(quota);
    let params = param("b", "x".repeat(60_000));
    let add = |n: u64| {
        let params = params.clone();
        let g = &g;
        async move {
            g.run(
                "m1",
                GraphMode::Write,
                &format!("UNWIND range(1, {n}) AS i CREATE (:N {{p: $b}})"),
                Some(&params),
            )
            .await
        }
    };
    add(1).await.unwrap();
    let before = pages_in_use(&dir);
    add(1).await.unwrap();
    let per_node = pages_in_use(&dir) - before;
    // Just under the quota: every statement so far was allowed.
    add((quota - (1 << 20) - pages_in_use(&dir)) / per_node)
        .await
        .unwrap();
    let used = pages_in_use(&dir);
    assert!(used < quota, "{used} bytes in use, under the quota");
    // Enough that the database would pass the file cap by half a MiB, while the statement's
    // WAL (about a fifth of the cap) would fit under it.
    let n = (limit - used + (512 << 10)) / per_node;
    let e = add(n).await.unwrap_err();
    assert!(matches!(e, GraphError::TooBig(_)), "{e:?}");
    assert_eq!(pages_in_use(&dir), used, "nothing of it was kept");
    rows(&g, GraphMode::Write, "MATCH (n:N) DETACH DELETE n").await;
    add(3).await.unwrap();
    let n = rows(&g, GraphMode::Read, "MATCH (n:N) RETURN count(n) AS n").await;
    assert_eq!(n[0]["n"], 3);
}

/// A worker without queries for its idle time ends and is reaped (no zombie left, though no
/// query follows); the mesh's next query starts another and is answered.
#[tokio::test]
async fn an_idle_worker_ends_and_the_next_query_starts_another() {
    let dir = tempfile::tempdir().unwrap();
    let g = graphs_in(&dir).with_idle(Duration::from_millis(300));
    rows(&g, GraphMode::Write, "CREATE (:T {v: 7})").await;
    let (_, first) = g.worker_pids()[0];
    crate::common::eventually("the idle worker to end and be reaped", || {
        std::future::ready(!std::path::Path::new(&format!("/proc/{first}")).exists())
    })
    .await;
    let v = rows(&g, GraphMode::Read, "MATCH (t:T) RETURN t.v AS v").await;
    assert_eq!(v[0]["v"], 7);
    let (_, second) = g.worker_pids()[0];
    assert_ne!(second, first);
}

/// A record nested deeper than JSON readers take is left out (`truncated`), and the write
/// that returned it stands.
#[tokio::test]
async fn a_record_nested_too_deep_is_left_out_and_its_write_stands() {
    let (_dir, g) = graphs();
    let nest = "WITH [l] AS l ".repeat(130);
    let a = g
        .run(
            "m1",
            GraphMode::Write,
            &format!("CREATE (:X) WITH [] AS l {nest}RETURN l"),
            None,
        )
        .await
        .unwrap();
    assert!(a.truncated && a.records.is_empty(), "{a:?}");
    let n = rows(&g, GraphMode::Read, "MATCH (x:X) RETURN count(x) AS n").await;
    assert_eq!(n[0]["n"], 1);
}

/// A query that would build gigabytes in memory (the engine caps lists and rows, not string
/// length) ends its worker at the worker's memory limit: refused, and the graph still answers.
#[tokio::test]
async fn a_query_past_the_memory_limit_is_stopped() {
    let (_dir, g) = graphs();
    let params = param("s", "a".repeat(60_000));
    let e = refused(
        &g,
        GraphMode::Read,
        "RETURN size(replace($s, 'a', $s)) AS n",
        Some(&params),
    )
    .await;
    assert!(
        matches!(&e, GraphError::Limit(m) if m.contains("out of memory")),
        "{e:?}"
    );
    assert_eq!(
        rows(&g, GraphMode::Read, "RETURN 1 AS one").await[0]["one"],
        1
    );
}

/// Past the most workers at once, a new mesh's query ends the least recently used idle worker;
/// when every worker is running a query, it is refused `Busy` and nothing is ended.
#[tokio::test]
async fn workers_are_capped_and_the_least_recently_used_idle_one_makes_room() {
    let dir = tempfile::tempdir().unwrap();
    let g = Graphs::with_budget(dir.path().join("graph"), Duration::from_millis(1500))
        .with_worker(BIN)
        .with_max_workers(2);
    let pid = |mesh: &str| {
        g.worker_pids()
            .into_iter()
            .find(|(m, _)| m == mesh)
            .map(|(_, pid)| pid)
    };
    for mesh in ["m1", "m2"] {
        g.run(mesh, GraphMode::Write, "CREATE (:T {v: 1})", None)
            .await
            .unwrap();
    }
    let (m1, m2) = (pid("m1").unwrap(), pid("m2").unwrap());
    rows(&g, GraphMode::Read, "RETURN 1 AS one").await; // m1 used last: m2 is the oldest
    g.run("m3", GraphMode::Read, "RETURN 3 AS three", None)
        .await
        .unwrap();
    crate::common::eventually("m2's worker to end", || std::future::ready(ended(m2))).await;
    assert_eq!(
        pid("m1"),
        Some(m1),
        "m1's worker, used more lately, runs on"
    );
    assert!(pid("m3").is_some());
    // With room for one worker, busy with a query, another mesh is refused `Busy` at once (it
    // has a turn to run: two run at once), and the busy worker is not ended.
    let one = Graphs::with_budget(dir.path().join("graph"), Duration::from_millis(1500))
        .with_worker(BIN)
        .with_max_workers(1);
    let endless = "UNWIND range(1, 10000) AS a WITH a \
                   WHERE size([x IN range(1, 1000000) WHERE x < 0]) > 0 RETURN count(*) AS n";
    let (a, c) = tokio::join!(one.run("m1", GraphMode::Read, endless, None), async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        one.run("m2", GraphMode::Read, "RETURN 2 AS two", None)
            .await
    });
    assert!(matches!(c, Err(GraphError::Busy(1))), "{c:?}");
    assert!(matches!(a, Err(GraphError::Timeout(_))), "{a:?}");
    let v = one
        .run("m2", GraphMode::Read, "MATCH (t:T) RETURN t.v AS v", None)
        .await
        .unwrap();
    assert_eq!(v.records[0]["v"], 1);
}

/// Two queries run at once, broker-wide: while two meshes' queries run, a third mesh's waits
/// for a turn (answered only once one of them has been stopped) instead of taking a third core.
#[tokio::test]
async fn two_queries_run_at_once_and_a_third_waits_for_a_turn() {
    let dir = tempfile::tempdir().unwrap();
    let g =
        Graphs::with_budget(dir.path().join("graph"), Duration::from_millis(1200)).with_worker(BIN);
    let endless = "UNWIND range(1, 10000) AS a WITH a \
                   WHERE size([x IN range(1, 1000000) WHERE x < 0]) > 0 RETURN count(*) AS n";
    let timed = |mesh: &'static str, cypher: &'static str, after: u64| {
        let g = &g;
        async move {
            tokio::time::sleep(Duration::from_millis(after)).await;
            let r = g.run(mesh, GraphMode::Read, cypher, None).await;
            (r, std::time::Instant::now())
        }
    };
    let ((a, a_done), (b, b_done), (c, c_done)) = tokio::join!(
        timed("m1", endless, 0),
        timed("m2", endless, 0),
        timed("m3", "RETURN 3 AS three", 300),
    );
    assert!(matches!(a, Err(GraphError::Timeout(_))), "{a:?}");
    assert!(matches!(b, Err(GraphError::Timeout(_))), "{b:?}");
    assert_eq!(c.unwrap().records[0]["three"], 3);
    assert!(
        c_done >= a_done.min(b_done),
        "the third query was answered before either running one was stopped"
    );
}

/// A worker whose write is not let commit (the broker gave up on it, and a late go-ahead may
/// still come) rolls it back, answers that its budget ran out, and ends, so nothing stray on its
/// pipe is ever read as a job.
#[test]
fn a_write_not_let_commit_is_rolled_back_and_its_worker_ends() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("m1.db");
    let mut worker = std::process::Command::new(BIN)
        .args([
            "graph-worker",
            db.to_str().unwrap(),
            "1000000000",
            "100",
            "600000",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (mut to, mut from) = (worker.stdin.take().unwrap(), worker.stdout.take().unwrap());
    let mut read_frame = || -> std::io::Result<String> {
        let mut len = [0u8; 4];
        from.read_exact(&mut len)?;
        let mut body = vec![0; u32::from_le_bytes(len) as usize];
        from.read_exact(&mut body)?;
        Ok(String::from_utf8(body).unwrap())
    };
    // (A worker that has ended refuses it: EPIPE.)
    let mut send = |job: &[u8]| {
        let mut frame = (job.len() as u32).to_le_bytes().to_vec();
        frame.extend_from_slice(job);
        to.write_all(&frame).and_then(|()| to.flush())
    };
    send(br#"{"mode":"Write","cypher":"CREATE (:Lost) RETURN 1 AS n","params":null}"#).unwrap();
    assert_eq!(read_frame().unwrap(), "", "it asks to commit");
    // No go-ahead: after its wait (the budget and a grace) it rolls back.
    let answer = read_frame().unwrap();
    assert!(answer.contains("Timeout"), "{answer}");
    // It takes no other job (one sent now stays unread) and ends, as if idle, so the broker
    // resends that job to a fresh worker.
    let _ = send(br#"{"mode":"Read","cypher":"RETURN 1 AS one","params":null}"#);
    let after = read_frame();
    assert!(after.is_err(), "it answered another job: {after:?}");
    assert_eq!(worker.wait().unwrap().code(), Some(75));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let g = Graphs::new(dir.path().to_path_buf()).with_worker(BIN);
    let n = rt.block_on(rows(
        &g,
        GraphMode::Read,
        "MATCH (n:Lost) RETURN count(n) AS n",
    ));
    assert_eq!(n[0]["n"], 0);
}
