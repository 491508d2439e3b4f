//! The mesh's graph (issue 16 item 2): Cypher on an embedded engine, one graph per mesh in its
//! own file, driven through the real broker with the CLI and an MCP client.

use crate::common;

mod engine;

use rmcp::ServiceExt;
use serde_json::{Value, json};

use common::mcp::{call, mcp_process};
use common::*;

const TEAM: &str = "CREATE (api:Service {name: 'api'})-[:CALLS {weight: 3}]->(db:Service {name: 'db'}), \
                    (api)-[:CALLS {weight: 1}]->(:Service {name: 'cache'})";
const CALLS: &str = "MATCH (s:Service)-[c:CALLS]->(t:Service) RETURN s.name AS from, t.name AS to, \
                     c.weight AS weight ORDER BY weight DESC";

fn records(v: &Value) -> Vec<Value> {
    v["records"].as_array().expect("records").clone()
}

/// `person`'s `claudemesh mcp`, once its session answers.
async fn graph_mcp(person: &Person) -> rmcp::service::RunningService<rmcp::RoleClient, ()> {
    let mcp = ().serve(mcp_process(person)).await.expect("mcp");
    eventually("the MCP session to answer", || async {
        call(&mcp, "graph_query", json!({"cypher": "RETURN 1 AS one"}))
            .await
            .0
    })
    .await;
    mcp
}

fn count_services(p: &Person) -> Value {
    p.json(&["graph", "MATCH (s:Service) RETURN count(s) AS n", "--json"])["records"][0]["n"]
        .clone()
}

#[tokio::test]
async fn nodes_and_relationships_written_by_a_are_matched_by_b() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    alice.ok(&["graph", "--execute", TEAM, "--json"]);

    let v = bob.json(&["graph", CALLS, "--json"]);
    assert_eq!(
        records(&v),
        vec![
            json!({"from": "api", "to": "db", "weight": 3}),
            json!({"from": "api", "to": "cache", "weight": 1}),
        ],
        "{v}"
    );
    // Parameters are bound by the engine: a value that looks like Cypher stays a value.
    bob.ok(&[
        "graph",
        "--execute",
        "MATCH (s:Service {name: $from}) CREATE (s)-[:CALLS]->(:Service {name: $to})",
        "--params",
        r#"{"from": "db", "to": "x'}) DETACH DELETE (n"}"#,
    ]);
    let odd = alice.json(&[
        "graph",
        "MATCH (:Service {name: 'db'})-->(t) RETURN t.name AS t",
        "--json",
    ]);
    assert_eq!(
        records(&odd),
        vec![json!({"t": "x'}) DETACH DELETE (n"})],
        "{odd}"
    );
    assert_eq!(count_services(&alice), 4);

    // Through MCP, under the original's tool and field names, nodes come back as JSON.
    let mcp = graph_mcp(&bob).await;
    let (ok, text) = call(
        &mcp,
        "graph_query",
        json!({"cypher": "MATCH (s:Service {name: $n}) RETURN s", "params": {"n": "api"}}),
    )
    .await;
    assert!(ok, "{text}");
    let answer: Value = serde_json::from_str(&text[..text.rfind('}').unwrap() + 1]).unwrap();
    assert_eq!(
        answer["records"][0]["s"]["labels"],
        json!(["Service"]),
        "{text}"
    );
    assert_eq!(answer["records"][0]["s"]["properties"]["name"], "api");
    let (ok, text) = call(
        &mcp,
        "graph_execute",
        json!({"cypher": "MATCH (s:Service {name: 'cache'}) SET s.ttl = 60"}),
    )
    .await;
    assert!(ok, "{text}");
    let ttl = alice.json(&[
        "graph",
        "MATCH (s:Service {name:'cache'}) RETURN s.ttl AS ttl",
        "--json",
    ]);
    assert_eq!(records(&ttl), vec![json!({"ttl": 60})]);
    mcp.cancel().await.ok();

    // Each write is in the audit log by size, never by its text.
    let log = alice.json(&["audit", "--event", "graph.written", "--json"]);
    let entries = log["entries"].as_array().expect("entries");
    assert_eq!(entries.len(), 3, "{log}");
    assert!(!log.to_string().contains("Service"), "{log}");
}

#[tokio::test]
async fn a_write_through_graph_query_is_refused() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    alice.ok(&["graph", "--execute", TEAM]);
    for write in [
        "CREATE (:Service {name: 'evil'})",
        "MATCH (s:Service) SET s.name = 'evil'",
        "MATCH (s:Service) DETACH DELETE s",
        "MERGE (:Service {name: 'evil'})",
        "MATCH (s:Service) REMOVE s.name",
        "MATCH (s:Service) WITH s LIMIT 1 CREATE (:Service {name: 'evil'})",
    ] {
        let err = bob.refused(&["graph", write]);
        assert!(err.contains("read-only"), "{write}: {err}");
        // On the command line the way to write is the flag, not the MCP tool.
        assert!(
            err.contains("--execute") && !err.contains("graph_execute"),
            "{write}: {err}"
        );
    }
    // A syntax error shows the query and a caret under the fault, each on a line of its own.
    let err = bob.refused(&["graph", "MATCH (n RETURN n"]);
    assert!(
        err.lines().any(|l| l.ends_with("| MATCH (n RETURN n")),
        "{err}"
    );
    assert!(!err.contains("\\n"), "{err}");
    let mcp = graph_mcp(&bob).await;
    let (ok, text) = call(
        &mcp,
        "graph_query",
        json!({"cypher": "CREATE (:Service {name: 'evil'})"}),
    )
    .await;
    assert!(!ok, "{text}");
    assert!(text.contains("read-only"), "{text}");
    mcp.cancel().await.ok();

    assert_eq!(count_services(&alice), 3);
    let names = alice.json(&[
        "graph",
        "MATCH (s:Service) RETURN s.name AS n ORDER BY n",
        "--json",
    ]);
    assert!(!names.to_string().contains("evil"), "{names}");

    // A member without the `state` capability may read the graph but not write it.
    alice.ok(&["perms", "set", "bob", "-state"]);
    let err = bob.refused(&["graph", "--execute", "CREATE (:Service {name: 'evil'})"]);
    assert!(err.contains("state"), "{err}");
    assert_eq!(count_services(&bob), 3);
}

#[tokio::test]
async fn the_graph_survives_a_restart() {
    let mut broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    alice.ok(&["graph", "--execute", TEAM]);
    broker.restart();
    let v = bob.json(&["graph", CALLS, "--json"]);
    assert_eq!(records(&v).len(), 2, "{v}");

    // The mesh's graph is one file under the data dir, in a directory only the broker reads.
    use std::os::unix::fs::PermissionsExt;
    let mesh_id = alice.entry().mesh_id.clone();
    let dir = broker.data_dir().join("graph");
    assert!(dir.join(format!("{mesh_id}.db")).is_file());
    let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
}

#[tokio::test]
async fn a_second_mesh_sees_none_of_the_first_meshs_graph() {
    let broker = BrokerProc::start(&[]);
    let (alice, _bob) = alice_and_bob(&broker);
    alice.ok(&["graph", "--execute", TEAM]);
    let carol = Person::new("carol");
    create_mesh(&broker, &carol, "other");

    let everything = "MATCH (n) RETURN count(n) AS n";
    let v = carol.json(&["graph", everything, "--json"]);
    assert_eq!(records(&v), vec![json!({"n": 0})], "{v}");
    carol.ok(&["graph", "--execute", "CREATE (:Service {name: 'carols'})"]);
    assert_eq!(count_services(&alice), 3);
    assert_eq!(count_services(&carol), 1);
    let names = alice.json(&["graph", "MATCH (n) RETURN n.name AS n", "--json"]);
    assert!(!names.to_string().contains("carols"), "{names}");
}

/// A query that would run for days is answered `timeout` at its budget and stopped: the mesh
/// answers the next query at once, and other meshes' graphs keep answering.
#[tokio::test]
async fn a_runaway_query_is_stopped_at_its_budget() {
    let broker = BrokerProc::start(&[]);
    let (alice, _bob) = alice_and_bob(&broker);
    let carol = Person::new("carol");
    create_mesh(&broker, &carol, "other");
    carol.ok(&["graph", "--execute", "CREATE (:Service {name: 'ok'})"]);

    // The engine's caps end big cross products and lists; a comprehension evaluated per row
    // (a billion comparisons) is not capped.
    alice.ok(&[
        "graph",
        "--execute",
        "UNWIND range(1, 1000) AS i CREATE (:N {i: i})",
    ]);
    let runaway = "MATCH (a:N) WITH a WHERE size([x IN range(1, 1000000) WHERE x < 0]) > 0 \
                   RETURN count(*) AS n";
    let err = alice.refused(&["graph", runaway]);
    assert!(err.contains("time budget"), "{err}");
    assert!(err.contains("stopped"), "{err}");
    let one = alice.json(&["graph", "RETURN 1 AS one", "--json"]);
    assert_eq!(one["records"][0]["one"], 1, "{one}");
    assert_eq!(count_services(&carol), 1);
}
