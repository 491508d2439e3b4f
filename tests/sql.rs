//! Per-mesh SQL end to end (PROTOCOL.md §18, README "Shared SQL"): one SQLite database per
//! mesh, written by one member and read by another through the CLI, the client library and a
//! real MCP client; what `mesh_query` refuses, the time budget, the size quota, isolation
//! between meshes, result caps, and data that outlives a broker crash.

use crate::common;

use claudemesh::client::{ClientError, MeshClient};
use common::mcp::{call, mcp_process};
use common::*;
use rmcp::ServiceExt;
use serde_json::{Value, json};

/// The broker's refusal: `(code, message)`.
fn refusal<T: std::fmt::Debug>(r: Result<T, ClientError>) -> (String, String) {
    match r {
        Err(ClientError::Broker { code, message }) => (code, message),
        other => panic!("expected a refusal from the broker, got {other:?}"),
    }
}

async fn count(client: &MeshClient, table: &str) -> i64 {
    let r = client
        .mesh_query(
            &format!("SELECT count(*) AS n FROM {table}"),
            None,
            None,
            None,
        )
        .await
        .expect("count");
    r.rows.rows[0]["n"].as_i64().expect("n")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_table_created_by_one_member_is_read_by_another() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);

    alice.ok(&[
        "sql",
        "--execute",
        "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL, score REAL)",
    ]);
    let hostile = "'); DROP TABLE notes; --";
    let inserted = alice.json(&[
        "sql",
        "--execute",
        "INSERT INTO notes (body, score) VALUES (?, ?)",
        "--param",
        hostile,
        "--param",
        "2.5",
        "--json",
    ]);
    assert_eq!(inserted["changes"], 1, "{inserted}");
    assert_eq!(inserted["lastInsertRowid"], 1);
    alice.ok(&[
        "sql",
        "--execute",
        "INSERT INTO notes (body) VALUES (:body)",
        "--params",
        r#"{"body": "second"}"#,
    ]);

    // Bob, another member, reads them (the CLI, JSON out).
    let read = bob.json(&[
        "sql",
        "SELECT id, body, score FROM notes ORDER BY id",
        "--json",
    ]);
    assert_eq!(read["columns"], json!(["id", "body", "score"]));
    assert_eq!(read["rowCount"], 2);
    assert_eq!(
        read["rows"],
        json!([
            {"id": 1, "body": hostile, "score": 2.5},
            {"id": 2, "body": "second", "score": null}
        ])
    );
    assert!(read.get("nextOffset").is_none(), "{read}");
    let text = bob.ok(&["sql", "SELECT body FROM notes WHERE id = ?", "--param", "2"]);
    assert!(
        text.contains("second") && text.contains("(1 row(s))"),
        "{text}"
    );

    // The schema, and the overview, name the table.
    let schema = bob.json(&["sql", "schema", "--json"]);
    assert_eq!(schema["tables"][0]["name"], "notes");
    let columns = &schema["tables"][0]["columns"];
    assert_eq!(
        columns[1],
        json!({"name": "body", "type": "TEXT", "nullable": false, "primaryKey": false})
    );
    assert!(schema["bytes"].as_u64().unwrap() > 0);
    assert_eq!(bob.json(&["info", "--json"])["tables"], json!(["notes"]));

    // Through a real MCP client, as Claude Code would.
    let mcp = ().serve(mcp_process(&bob)).await.expect("MCP handshake");
    // The MCP server connects to the broker after its handshake.
    eventually("bob's MCP server to connect", || async {
        call(&mcp, "mesh_schema", json!({})).await.0
    })
    .await;
    let (ok, out) = call(
        &mcp,
        "mesh_query",
        json!({"sql": "SELECT body FROM notes WHERE score > ?", "params": [1]}),
    )
    .await;
    assert!(ok, "{out}");
    let got: Value = serde_json::from_str(out.split("\n\n[").next().unwrap()).expect("JSON");
    assert_eq!(got["rows"], json!([{"body": hostile}]));
    let (ok, out) = call(
        &mcp,
        "mesh_execute",
        json!({"sql": "UPDATE notes SET score = 9 WHERE id = 2"}),
    )
    .await;
    assert!(ok && out.contains("\"changes\": 1"), "{out}");
    let (ok, out) = call(&mcp, "mesh_schema", json!({})).await;
    assert!(ok && out.contains("notes"), "{out}");
    let (ok, out) = call(&mcp, "mesh_info", json!({})).await;
    assert!(
        ok && out.contains("\"tables\"") && out.contains("notes"),
        "{out}"
    );
    let (ok, out) = call(&mcp, "mesh_query", json!({"sql": "DELETE FROM notes"})).await;
    assert!(!ok && out.contains("read_only"), "{out}");
    mcp.cancel().await.ok();

    // Every change is in the audit log: what was written, never the SQL or its values.
    let log = alice.json(&["audit", "--event", "sql.executed", "--json"]);
    let entries = log["entries"].as_array().expect("entries");
    assert_eq!(entries.len(), 4, "{log:#}");
    assert_eq!(entries[0]["payload"]["writes"], "create_table notes");
    assert_eq!(entries[1]["payload"]["writes"], "insert notes");
    assert!(!log.to_string().contains("DROP TABLE notes"), "{log}");
    assert_eq!(count(&alice.client().await, "notes").await, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn mesh_query_refuses_writes_attach_pragmas_and_extensions() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    let a = alice.client().await;
    a.mesh_execute("CREATE TABLE t (x)", None).await.unwrap();
    a.mesh_execute("INSERT INTO t VALUES (1)", None)
        .await
        .unwrap();
    let own_file = broker
        .data_dir()
        .join("sql")
        .join(format!("{}.db", alice.entry().mesh_id));
    assert!(own_file.exists(), "{}", own_file.display());
    let copy = broker.data_dir().join("copy.db");

    let b = bob.client().await;
    for (sql, code, says) in [
        (
            "INSERT INTO t VALUES (2)".to_string(),
            "read_only",
            "mesh_execute",
        ),
        ("DELETE FROM t".to_string(), "read_only", "mesh_execute"),
        (
            "CREATE TABLE u (y)".to_string(),
            "read_only",
            "mesh_execute",
        ),
        (
            format!("ATTACH '{}' AS o", own_file.display()),
            "not_allowed",
            "ATTACH",
        ),
        (
            "PRAGMA writable_schema = 1".into(),
            "not_allowed",
            "writable_schema",
        ),
        (
            "PRAGMA writable_schema".into(),
            "not_allowed",
            "writable_schema",
        ),
        (
            "SELECT load_extension('/usr/lib/x.so')".into(),
            "not_allowed",
            "load_extension",
        ),
        (
            "SELECT 1; DELETE FROM t".into(),
            "invalid_argument",
            "one statement",
        ),
        (format!("VACUUM INTO '{}'", copy.display()), "", ""),
    ] {
        let (got, message) = refusal(b.mesh_query(&sql, None, None, None).await);
        if !code.is_empty() {
            assert_eq!(got, code, "{sql}: {message}");
            assert!(message.contains(says), "{sql}: {message}");
        }
    }
    // mesh_execute may write, but not around the authorizer either.
    for sql in [
        format!("ATTACH '{}' AS o", own_file.display()),
        "PRAGMA max_page_count = 2147483647".into(),
        "PRAGMA writable_schema = 1".into(),
        "SELECT load_extension('/usr/lib/x.so')".into(),
        format!("VACUUM INTO '{}'", copy.display()),
    ] {
        refusal(b.mesh_execute(&sql, None).await);
    }
    assert!(!copy.exists(), "VACUUM INTO wrote a copy");
    assert_eq!(count(&b, "t").await, 1, "nothing was written");
    // The connection and the broker keep serving.
    b.mesh_execute("INSERT INTO t VALUES (?)", Some(json!([2])))
        .await
        .unwrap();
    assert_eq!(count(&a, "t").await, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_runaway_query_is_stopped_by_the_time_budget_and_the_broker_keeps_serving() {
    let broker = BrokerProc::start(&["--sql-timeout", "300ms"]);
    let (alice, bob) = alice_and_bob(&broker);
    let a = alice.client().await;
    let runaway =
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT max(x) FROM c";
    let (code, message) = refusal(a.mesh_query(runaway, None, None, None).await);
    assert_eq!(code, "timeout", "{message}");
    assert!(message.contains("time budget"), "{message}");
    // A write that runs away is stopped too, and leaves nothing.
    a.mesh_execute("CREATE TABLE t (x)", None).await.unwrap();
    let (code, _) = refusal(
        a.mesh_execute(
            "INSERT INTO t WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT x FROM c",
            None,
        )
        .await,
    );
    assert_eq!(code, "timeout");
    // The same connection and another member's get answers at once after.
    assert_eq!(count(&a, "t").await, 0);
    let b = bob.client().await;
    let r = b
        .mesh_query("SELECT 40 + 2 AS answer", None, None, None)
        .await
        .unwrap();
    assert_eq!(r.rows.rows[0]["answer"], 42);
    b.mesh_execute("INSERT INTO t VALUES (1)", None)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_mesh_cannot_see_the_first_meshs_tables_by_any_name() {
    let broker = BrokerProc::start(&[]);
    let (alice, _bob) = alice_and_bob(&broker);
    let a = alice.client().await;
    a.mesh_execute("CREATE TABLE secrets (v TEXT)", None)
        .await
        .unwrap();
    a.mesh_execute("INSERT INTO secrets VALUES ('swordfish')", None)
        .await
        .unwrap();
    let first_file = broker
        .data_dir()
        .join("sql")
        .join(format!("{}.db", alice.entry().mesh_id));

    let carol = Person::new("carol");
    create_mesh(&broker, &carol, "elsewhere");
    let c = carol.client().await;
    for sql in [
        "SELECT * FROM secrets",
        "SELECT * FROM main.secrets",
        "SELECT v FROM \"secrets\"",
    ] {
        let (code, message) = refusal(c.mesh_query(sql, None, None, None).await);
        assert_eq!(code, "sql_error", "{sql}: {message}");
        assert!(message.contains("no such table"), "{sql}: {message}");
    }
    for sql in [
        "SELECT name FROM sqlite_master",
        "SELECT name FROM main.sqlite_schema",
        "SELECT * FROM pragma_table_info('secrets')",
    ] {
        let r = c.mesh_query(sql, None, None, None).await.unwrap();
        assert!(r.rows.rows.is_empty(), "{sql}: {:?}", r.rows.rows);
    }
    let attach = format!("ATTACH '{}' AS other", first_file.display());
    let (code, _) = refusal(c.mesh_query(&attach, None, None, None).await);
    assert_eq!(code, "not_allowed");
    let (code, _) = refusal(c.mesh_execute(&attach, None).await);
    assert_eq!(code, "not_allowed");
    let (code, _) = refusal(
        c.mesh_query("SELECT * FROM other.secrets", None, None, None)
            .await,
    );
    assert_ne!(code, "", "unknown schema refused");
    assert!(c.mesh_schema().await.unwrap().tables.is_empty());
    assert!(
        carol.json(&["info", "--json"])["tables"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    // A table of the same name in the second mesh is its own.
    c.mesh_execute("CREATE TABLE secrets (v TEXT)", None)
        .await
        .unwrap();
    assert_eq!(count(&c, "secrets").await, 0);
    assert_eq!(count(&a, "secrets").await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn sql_data_survives_a_broker_crash_and_restart() {
    let mut broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    {
        let a = alice.client().await;
        a.mesh_execute("CREATE TABLE kept (v TEXT)", None)
            .await
            .unwrap();
        a.mesh_execute("INSERT INTO kept VALUES (?)", Some(json!(["acknowledged"])))
            .await
            .unwrap();
        // SIGKILL right after the acknowledgement: no chance to flush anything more.
        broker.kill9();
    }
    broker.restart();
    let b = bob.client().await;
    let r = b
        .mesh_query("SELECT v FROM kept", None, None, None)
        .await
        .unwrap();
    assert_eq!(
        r.rows.rows,
        vec![json!({"v": "acknowledged"}).as_object().unwrap().clone()]
    );
    assert_eq!(bob.json(&["info", "--json"])["tables"], json!(["kept"]));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_oversize_result_is_capped_with_a_note_and_paged() {
    let broker = BrokerProc::start(&[]);
    let (alice, _bob) = alice_and_bob(&broker);
    let a = alice.client().await;
    a.mesh_execute("CREATE TABLE big (id INTEGER PRIMARY KEY, v TEXT)", None)
        .await
        .unwrap();
    // 40 rows of 2 000 characters: 80 KB, more than one answer carries.
    a.mesh_execute(
        "INSERT INTO big (v) WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c LIMIT 40) SELECT hex(randomblob(1000)) FROM c",
        None,
    )
    .await
    .unwrap();
    let first = a
        .mesh_query("SELECT id, v FROM big ORDER BY id", None, None, None)
        .await
        .unwrap()
        .rows;
    assert!(first.truncated, "{:?}", first.note);
    assert!(
        first.row_count > 0 && first.row_count < 40,
        "{}",
        first.row_count
    );
    let note = first.note.clone().unwrap();
    assert!(note.contains("32768 bytes"), "{note}");
    let next = first.next_offset.expect("nextOffset");
    assert_eq!(next, first.row_count as u64);
    // Paging on with nextOffset reaches every row exactly once.
    let mut seen: Vec<i64> = first
        .rows
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect();
    let mut offset = Some(next);
    while let Some(o) = offset {
        let page = a
            .mesh_query("SELECT id, v FROM big ORDER BY id", None, Some(o), None)
            .await
            .unwrap()
            .rows;
        seen.extend(page.rows.iter().map(|r| r["id"].as_i64().unwrap()));
        offset = page.next_offset;
    }
    assert_eq!(seen, (1..=40).collect::<Vec<_>>());
    // A row larger than an answer is not sent; the note says what to do.
    let huge = a
        .mesh_query("SELECT hex(randomblob(20000)) AS h", None, None, None)
        .await
        .unwrap()
        .rows;
    assert!(huge.rows.is_empty() && huge.truncated);
    assert!(huge.note.unwrap().contains("substr"));
    // `limit` pages by rows.
    let three = a
        .mesh_query("SELECT id FROM big ORDER BY id", None, Some(10), Some(3))
        .await
        .unwrap()
        .rows;
    assert_eq!(three.row_count, 3);
    assert_eq!(three.rows[0]["id"], 11);
    assert_eq!(three.next_offset, Some(13));
    assert!(!three.truncated);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_size_quota_and_the_state_capability_bound_writes() {
    let broker = BrokerProc::start(&["--max-sql-bytes", "131072"]);
    let (alice, bob) = alice_and_bob(&broker);
    let a = alice.client().await;
    a.mesh_execute("CREATE TABLE t (v BLOB)", None)
        .await
        .unwrap();
    a.mesh_execute("INSERT INTO t VALUES ('kept')", None)
        .await
        .unwrap();
    let (code, message) = refusal(
        a.mesh_execute(
            "INSERT INTO t WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c LIMIT 100) SELECT randomblob(4000) FROM c",
            None,
        )
        .await,
    );
    assert_eq!(code, "quota_exceeded", "{message}");
    assert!(message.contains("--max-sql-bytes"), "{message}");
    assert_eq!(count(&a, "t").await, 1);
    let schema = a.mesh_schema().await.unwrap();
    assert_eq!(schema.max_bytes, 131072);

    // Writing needs the `state` capability; reading does not.
    alice.ok(&["perms", "set", "bob", "-state"]);
    let b = bob.client().await;
    let (code, message) = refusal(b.mesh_execute("INSERT INTO t VALUES ('no')", None).await);
    assert_eq!(code, "forbidden", "{message}");
    assert_eq!(count(&b, "t").await, 1);
}
