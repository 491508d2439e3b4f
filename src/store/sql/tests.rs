//! The engine's promises on a real SQLite file: what the authorizer, the limits and the time
//! budget refuse, and what a refusal leaves behind (nothing).

use serde_json::json;

use super::*;

const PAGE: PageSpec = PageSpec {
    offset: 0,
    limit: 100,
    max_bytes: 32 * 1024,
};

fn databases(dir: &Path, limits: SqlLimits) -> SqlDatabases {
    SqlDatabases::new(dir.join("sql"), limits)
}

async fn exec(db: &SqlDatabases, mesh: &str, sql: &str) -> Result<Executed, SqlError> {
    db.execute(mesh, sql.into(), Params::None, PAGE, |_| Ok(()))
        .await
}

async fn query(db: &SqlDatabases, mesh: &str, sql: &str) -> Result<SqlRows, SqlError> {
    db.query(mesh, sql.into(), Params::None, PAGE).await
}

#[tokio::test]
async fn refused_statements_name_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let db = databases(dir.path(), SqlLimits::default());
    exec(&db, "m1", "CREATE TABLE t (x)").await.unwrap();
    let other = dir.path().join("sql").join("m2.db");
    for (sql, code) in [
        (format!("ATTACH '{}' AS o", other.display()), "not_allowed"),
        ("PRAGMA writable_schema = 1".to_string(), "not_allowed"),
        (
            "PRAGMA max_page_count = 100000000".to_string(),
            "not_allowed",
        ),
        ("SELECT load_extension('x')".to_string(), "not_allowed"),
        ("BEGIN".to_string(), "not_allowed"),
        ("CREATE TEMP TABLE tt (x)".to_string(), "not_allowed"),
        (
            "SELECT * FROM temp.sqlite_master".to_string(),
            "not_allowed",
        ),
        (
            "INSERT INTO t VALUES (1); DROP TABLE t".to_string(),
            "invalid_argument",
        ),
        ("   -- nothing".to_string(), "invalid_argument"),
    ] {
        let e = exec(&db, "m1", &sql).await.expect_err(&sql);
        assert_eq!(e.code(), code, "{sql}: {e}");
    }
    // VACUUM attaches its output: never through either call.
    let copy = format!("VACUUM INTO '{}'", dir.path().join("copy.db").display());
    assert!(exec(&db, "m1", &copy).await.is_err());
    let e = query(&db, "m1", &copy).await.unwrap_err();
    assert!(matches!(e.code(), "not_allowed" | "read_only"), "{e}");
    assert!(exec(&db, "m1", "VACUUM").await.is_err());
    assert!(!dir.path().join("copy.db").exists());
    // The refused two-statement call ran neither statement.
    let rows = query(&db, "m1", "SELECT count(*) AS n FROM t")
        .await
        .unwrap();
    assert_eq!(rows.rows[0]["n"], json!(0));
    let e = query(&db, "m1", "INSERT INTO t VALUES (1)")
        .await
        .unwrap_err();
    assert_eq!(e.code(), "read_only");
    query(&db, "m1", "PRAGMA table_info(t)").await.unwrap();
}

#[tokio::test]
async fn a_runaway_statement_stops_at_its_budget_and_the_next_one_runs() {
    let dir = tempfile::tempdir().unwrap();
    let limits = SqlLimits {
        time_budget: Duration::from_millis(200),
        ..SqlLimits::default()
    };
    let db = databases(dir.path(), limits);
    let e = query(
        &db,
        "m1",
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT max(x) FROM c",
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), "timeout", "{e}");
    assert_eq!(
        query(&db, "m1", "SELECT 1 AS one").await.unwrap().rows[0]["one"],
        json!(1)
    );
}

#[tokio::test]
async fn the_size_quota_refuses_growth_and_keeps_what_was_there() {
    let dir = tempfile::tempdir().unwrap();
    let limits = SqlLimits {
        max_bytes: 64 * 1024,
        ..SqlLimits::default()
    };
    let db = databases(dir.path(), limits);
    exec(&db, "m1", "CREATE TABLE t (x)").await.unwrap();
    exec(&db, "m1", "INSERT INTO t VALUES ('kept')")
        .await
        .unwrap();
    let e = exec(
        &db,
        "m1",
        "INSERT INTO t WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c LIMIT 200) SELECT randomblob(1000) FROM c",
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), "quota_exceeded", "{e}");
    let rows = query(&db, "m1", "SELECT count(*) AS n FROM t")
        .await
        .unwrap();
    assert_eq!(rows.rows[0]["n"], json!(1));
}

#[tokio::test]
async fn a_failed_audit_rolls_the_change_back() {
    let dir = tempfile::tempdir().unwrap();
    let db = databases(dir.path(), SqlLimits::default());
    exec(&db, "m1", "CREATE TABLE t (x)").await.unwrap();
    let e = db
        .execute(
            "m1",
            "INSERT INTO t VALUES (1)".into(),
            Params::None,
            PAGE,
            |done| {
                assert_eq!(done.writes, vec!["insert t".to_string()]);
                Err("audit log unavailable".into())
            },
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), "internal");
    let rows = query(&db, "m1", "SELECT count(*) AS n FROM t")
        .await
        .unwrap();
    assert_eq!(rows.rows[0]["n"], json!(0));
}

#[tokio::test]
async fn parameters_are_bound_and_pages_are_capped() {
    let dir = tempfile::tempdir().unwrap();
    let db = databases(dir.path(), SqlLimits::default());
    exec(&db, "m1", "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
        .await
        .unwrap();
    for i in 0..10 {
        db.execute(
            "m1",
            "INSERT INTO t (v) VALUES (:v)".into(),
            Params::from_json(Some(json!({"v": format!("'); DROP TABLE t; -- {i}")}))).unwrap(),
            PAGE,
            |_| Ok(()),
        )
        .await
        .unwrap();
    }
    let page = db
        .query(
            "m1",
            "SELECT id, v FROM t ORDER BY id".into(),
            Params::None,
            PageSpec {
                offset: 2,
                limit: 3,
                max_bytes: 32 * 1024,
            },
        )
        .await
        .unwrap();
    assert_eq!(page.rows.len(), 3);
    assert_eq!(page.rows[0]["id"], json!(3));
    assert_eq!(page.next_offset, Some(5));
    let cut = db
        .query(
            "m1",
            "SELECT v FROM t".into(),
            Params::None,
            PageSpec {
                offset: 0,
                limit: 100,
                max_bytes: 100,
            },
        )
        .await
        .unwrap();
    assert!(cut.rows.len() < 10 && cut.note.is_some(), "{cut:?}");
    let e = db
        .query(
            "m1",
            "SELECT ?1, ?2".into(),
            Params::from_json(Some(json!([1]))).unwrap(),
            PAGE,
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), "invalid_argument");
}
