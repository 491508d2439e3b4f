//! Per-mesh SQL (PROTOCOL.md §18): one SQLite database per mesh, `<data>/sql/<mesh-id>.db`,
//! opened by the bundled SQLite. Every limit is SQLite's own:
//!
//! - isolation: the authorizer ([`policy`]) refuses ATTACH, DETACH, PRAGMAs but
//!   a few read-only ones, `load_extension` and anything in the `temp` schema;
//!   `SQLITE_LIMIT_ATTACHED` is 0 and extension loading is switched off in the C API, so a
//!   mesh's connection can reach no other file;
//! - size: `sqlite3_limit` on string/BLOB length, SQL length, columns, expression depth,
//!   compound terms, VM program size, function arguments, LIKE patterns, parameters and
//!   trigger depth; `max_page_count` (set by the broker, never by members: the authorizer
//!   refuses the PRAGMA) is the per-mesh size quota;
//! - time: a progress handler interrupts a statement past its time budget;
//! - reads: `mesh_query` runs on a connection in `query_only` mode and refuses a statement that
//!   SQLite does not call read-only (`sqlite3_stmt_readonly`);
//! - durability: WAL with `synchronous=FULL`, so an acknowledged write is on disk.
//!
//! Each mesh has a writer and a reader connection; the blocking work runs on tokio's blocking
//! pool, a few calls at a time ([`MAX_RUNNING`]).

mod policy;
mod values;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rusqlite::limits::Limit;
use rusqlite::{Batch, Connection, ErrorCode, OpenFlags, Statement};

pub use policy::ALLOWED_PRAGMAS;
pub use values::{BLOB_KEY, MAX_PARAMS, PageSpec, Params, SqlRows};

use super::turns::Turns;
use policy::Guard;

/// Default per-mesh database size (`--max-sql-bytes`): 64 MiB.
pub const DEFAULT_MAX_SQL_BYTES: u64 = 64 << 20;
/// Default time budget of one statement (`--sql-timeout`).
pub const DEFAULT_SQL_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest SQL text (`SQLITE_LIMIT_SQL_LENGTH`); a frame is 64 KiB anyway.
pub const MAX_SQL_TEXT: usize = 32 * 1024;
/// Largest string or BLOB, and row (`SQLITE_LIMIT_LENGTH`).
pub const MAX_VALUE_BYTES: usize = 1 << 20;
/// Statements running at once, all meshes together; others wait their turn.
const MAX_RUNNING: usize = 4;
/// Meshes whose connections stay open; past it idle ones are closed.
const MAX_OPEN_MESHES: usize = 64;
/// VM instructions between two looks at the clock.
const PROGRESS_EVERY: i32 = 1000;
const PAGE_SIZE: u64 = 4096;

/// The limits every mesh database gets.
#[derive(Debug, Clone, Copy)]
pub struct SqlLimits {
    /// Largest database file, in bytes (rounded down to whole pages).
    pub max_bytes: u64,
    /// Longest a statement may run.
    pub time_budget: Duration,
}

impl Default for SqlLimits {
    fn default() -> Self {
        SqlLimits {
            max_bytes: DEFAULT_MAX_SQL_BYTES,
            time_budget: DEFAULT_SQL_TIMEOUT,
        }
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum SqlError {
    /// The authorizer refused the statement.
    #[error("not allowed: {0}")]
    NotAllowed(String),
    #[error(
        "mesh_query runs read-only statements and this one writes; use mesh_execute (claudemesh sql --execute)"
    )]
    NotReadOnly,
    #[error(
        "one statement per call: the SQL goes on after the first statement (remove the rest, or send it in another call)"
    )]
    MultipleStatements,
    #[error("no SQL statement given")]
    Empty,
    #[error("the statement ran past its time budget of {0:?} and was stopped")]
    TimeBudget(Duration),
    #[error(
        "quota: this mesh's SQL database may hold at most {0} bytes (--max-sql-bytes on this broker); delete rows or drop tables first"
    )]
    Quota(u64),
    /// Bad arguments: parameters, SQL too long.
    #[error("{0}")]
    Invalid(String),
    /// SQLite's own error (syntax, constraint, a limit): its message.
    #[error("SQL error: {0}")]
    Sql(String),
    /// The file could not be opened or written.
    #[error("SQL storage: {0}")]
    Storage(String),
    /// The audit record could not be written, so the change was rolled back.
    #[error("the change was not made: {0}")]
    Audit(String),
    /// SQLite refused for lack of room (`SQLITE_FULL`): the quota or the disk.
    #[error("SQL storage is full: {0}")]
    Full(String),
    /// The progress handler stopped the statement (`SQLITE_INTERRUPT`).
    #[error("the statement was interrupted")]
    Interrupted,
    /// The authorizer denied the statement (`SQLITE_AUTH`).
    #[error("not authorized")]
    Denied,
}

impl SqlError {
    /// The wire error code.
    pub fn code(&self) -> &'static str {
        match self {
            SqlError::NotAllowed(_) => "not_allowed",
            SqlError::NotReadOnly => "read_only",
            SqlError::MultipleStatements | SqlError::Empty | SqlError::Invalid(_) => {
                "invalid_argument"
            }
            SqlError::TimeBudget(_) => "timeout",
            SqlError::Quota(_) => "quota_exceeded",
            SqlError::Sql(_) => "sql_error",
            SqlError::Storage(_) | SqlError::Audit(_) | SqlError::Full(_) => "internal",
            SqlError::Interrupted => "timeout",
            SqlError::Denied => "not_allowed",
        }
    }
}

impl From<rusqlite::Error> for SqlError {
    fn from(e: rusqlite::Error) -> Self {
        match e.sqlite_error_code() {
            Some(
                ErrorCode::CannotOpen | ErrorCode::SystemIoFailure | ErrorCode::DatabaseCorrupt,
            ) => SqlError::Storage(e.to_string()),
            Some(ErrorCode::DiskFull) => SqlError::Full(e.to_string()),
            Some(ErrorCode::OperationInterrupted) => SqlError::Interrupted,
            Some(ErrorCode::AuthorizationForStatementDenied) => SqlError::Denied,
            _ => SqlError::Sql(e.to_string()),
        }
    }
}

/// A table or view and its columns, for `mesh_schema`.
#[derive(Debug, Clone, PartialEq)]
pub struct TableSchema {
    pub name: String,
    /// `table` or `view`.
    pub kind: String,
    pub columns: Vec<ColumnSchema>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ColumnSchema {
    pub name: String,
    /// The declared type (may be empty: SQLite columns need none).
    pub decl_type: String,
    pub nullable: bool,
    pub primary_key: bool,
}

/// A mesh's tables and how much room they take.
#[derive(Debug, Clone, PartialEq)]
pub struct MeshSchema {
    pub tables: Vec<TableSchema>,
    pub bytes: u64,
    pub max_bytes: u64,
}

/// What `mesh_execute` did.
#[derive(Debug, Clone, PartialEq)]
pub struct Executed {
    /// Rows inserted, updated or deleted (0 for DDL).
    pub changes: u64,
    pub last_insert_rowid: i64,
    /// Rows of `RETURNING` (or of a read-only statement), capped like a query page.
    pub rows: SqlRows,
    /// What it wrote, as `verb table` entries (empty for a read-only statement).
    pub writes: Vec<String>,
}

/// Every mesh's database; cheap to share (`Arc` inside).
#[derive(Clone)]
pub struct SqlDatabases {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    limits: SqlLimits,
    open: Mutex<HashMap<String, Arc<MeshDb>>>,
    turns: Turns,
}

/// One mesh's two connections.
struct MeshDb {
    writer: Mutex<Guarded>,
    reader: Mutex<Guarded>,
}

/// A connection and its authorizer's state.
struct Guarded {
    conn: Connection,
    guard: Guard,
}

impl SqlDatabases {
    /// Databases under `dir` (created, 0700, when the first one is).
    pub fn new(dir: PathBuf, limits: SqlLimits) -> SqlDatabases {
        SqlDatabases {
            inner: Arc::new(Inner {
                dir,
                limits,
                open: Mutex::new(HashMap::new()),
                turns: Turns::new(MAX_RUNNING),
            }),
        }
    }

    pub fn limits(&self) -> SqlLimits {
        self.inner.limits
    }

    /// Runs `f` for `mesh_id` on the blocking pool when the mesh's place and a shared one are
    /// free.
    async fn run<T: Send + 'static>(
        &self,
        mesh_id: &str,
        f: impl FnOnce(&Inner) -> Result<T, SqlError> + Send + 'static,
    ) -> Result<T, SqlError> {
        let _turn = self
            .inner
            .turns
            .take(mesh_id)
            .await
            .map_err(|_| SqlError::Storage("the broker is shutting down".into()))?;
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || f(&inner))
            .await
            .map_err(|e| SqlError::Storage(format!("the SQL worker failed: {e}")))?
    }

    /// Runs one read-only statement and returns one page of its rows.
    pub async fn query(
        &self,
        mesh_id: &str,
        sql: String,
        params: Params,
        page: PageSpec,
    ) -> Result<SqlRows, SqlError> {
        let owned = mesh_id.to_string();
        self.run(mesh_id, move |inner| {
            let mesh_id = owned;
            let db = inner.mesh_created(&mesh_id)?;
            let reader = lock(&db.reader);
            inner.member_statement(&reader, &sql, |stmt| {
                if !stmt.readonly() {
                    return Err(SqlError::NotReadOnly);
                }
                params.bind(stmt)?;
                let columns = values::column_names(stmt);
                values::collect(stmt.raw_query(), columns, page, false)
            })
        })
        .await
    }

    /// Runs one statement (DDL or DML) in a transaction of its own. `audit` is called with what
    /// it wrote before the commit; when it fails the change is rolled back. Answers after the
    /// commit is on disk.
    pub async fn execute(
        &self,
        mesh_id: &str,
        sql: String,
        params: Params,
        page: PageSpec,
        audit: impl FnOnce(&Executed) -> Result<(), String> + Send + 'static,
    ) -> Result<Executed, SqlError> {
        let owned = mesh_id.to_string();
        self.run(mesh_id, move |inner| {
            let mesh_id = owned;
            let db = inner.mesh_created(&mesh_id)?;
            let writer = lock(&db.writer);
            let conn = &writer.conn;
            if !conn.is_autocommit() {
                // Left open by a worker that panicked; nothing of it was acknowledged.
                conn.execute_batch("ROLLBACK").map_err(SqlError::from)?;
            }
            conn.execute_batch("BEGIN IMMEDIATE")
                .map_err(SqlError::from)?;
            let ran = inner.member_statement(&writer, &sql, |stmt| {
                params.bind(stmt)?;
                let readonly = stmt.readonly();
                let columns = values::column_names(stmt);
                let rows = values::collect(stmt.raw_query(), columns, page, true)?;
                Ok((readonly, rows))
            });
            let outcome = ran.and_then(|(readonly, rows)| {
                let executed = Executed {
                    changes: conn.changes(),
                    last_insert_rowid: conn.last_insert_rowid(),
                    rows,
                    writes: if readonly {
                        Vec::new()
                    } else {
                        writer.guard.writes()
                    },
                };
                if !readonly {
                    audit(&executed).map_err(SqlError::Audit)?;
                }
                Ok(executed)
            });
            match outcome {
                Ok(executed) => match conn.execute_batch("COMMIT") {
                    Ok(()) => Ok(executed),
                    Err(e) => {
                        let _ = conn.execute_batch("ROLLBACK");
                        Err(match SqlError::from(e) {
                            SqlError::Full(why) => inner.quota_or_disk(why),
                            other => other,
                        })
                    }
                },
                Err(e) => {
                    let _ = conn.execute_batch("ROLLBACK");
                    Err(e)
                }
            }
        })
        .await
    }

    /// The mesh's tables and views with their columns, and its size.
    pub async fn schema(&self, mesh_id: &str) -> Result<MeshSchema, SqlError> {
        let owned = mesh_id.to_string();
        self.run(mesh_id, move |inner| {
            let mesh_id = owned;
            let max_bytes = inner.max_pages() * PAGE_SIZE;
            let Some(db) = inner.mesh(&mesh_id, false)? else {
                return Ok(MeshSchema {
                    tables: Vec::new(),
                    bytes: 0,
                    max_bytes,
                });
            };
            let reader = lock(&db.reader);
            let conn = &reader.conn;
            let mut tables = Vec::new();
            for (name, kind) in table_names(conn)? {
                let mut stmt = conn
                    .prepare("SELECT name, type, \"notnull\", pk FROM pragma_table_info(?1)")
                    .map_err(SqlError::from)?;
                let columns = stmt
                    .query_map([&name], |r| {
                        Ok(ColumnSchema {
                            name: r.get(0)?,
                            decl_type: r.get(1)?,
                            nullable: r.get::<_, i64>(2)? == 0,
                            primary_key: r.get::<_, i64>(3)? > 0,
                        })
                    })
                    .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
                    .map_err(SqlError::from)?;
                tables.push(TableSchema {
                    name,
                    kind,
                    columns,
                });
            }
            let pages: u64 = conn
                .query_row("PRAGMA page_count", [], |r| r.get(0))
                .map_err(SqlError::from)?;
            Ok(MeshSchema {
                tables,
                bytes: pages * PAGE_SIZE,
                max_bytes,
            })
        })
        .await
    }

    /// The names of the mesh's tables and views (for `mesh_info`); none, and no file created,
    /// when the mesh never used SQL.
    pub async fn tables(&self, mesh_id: &str) -> Result<Vec<String>, SqlError> {
        let owned = mesh_id.to_string();
        self.run(mesh_id, move |inner| {
            let mesh_id = owned;
            let Some(db) = inner.mesh(&mesh_id, false)? else {
                return Ok(Vec::new());
            };
            let reader = lock(&db.reader);
            Ok(table_names(&reader.conn)?
                .into_iter()
                .map(|(name, _)| name)
                .collect())
        })
        .await
    }
}

impl Inner {
    /// The mesh's connections, its database created on first use.
    fn mesh_created(&self, mesh_id: &str) -> Result<Arc<MeshDb>, SqlError> {
        self.mesh(mesh_id, true)?
            .ok_or_else(|| SqlError::Storage(format!("no database for mesh {mesh_id}")))
    }

    fn max_pages(&self) -> u64 {
        (self.limits.max_bytes / PAGE_SIZE).max(1)
    }

    /// The mesh's connections, opened on first use; `None` when `create` is false and the
    /// mesh has no database yet.
    fn mesh(&self, mesh_id: &str, create: bool) -> Result<Option<Arc<MeshDb>>, SqlError> {
        if mesh_id.is_empty()
            || mesh_id.len() > 64
            || !mesh_id.bytes().all(|b| b.is_ascii_alphanumeric())
        {
            return Err(SqlError::Storage(format!(
                "mesh id {mesh_id:?} cannot name a database file"
            )));
        }
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(db) = open.get(mesh_id) {
            return Ok(Some(db.clone()));
        }
        let path = self.dir.join(format!("{mesh_id}.db"));
        let existed = path.exists();
        if !existed && !create {
            return Ok(None);
        }
        crate::identity::create_private_dir(&self.dir)
            .map_err(|e| SqlError::Storage(format!("cannot create {}: {e}", self.dir.display())))?;
        let writer = self.open_connection(&path, false)?;
        if !existed {
            // The new file's name is durable too, not only its contents.
            std::fs::File::open(&self.dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| {
                    SqlError::Storage(format!("cannot sync {}: {e}", self.dir.display()))
                })?;
        }
        let reader = self.open_connection(&path, true)?;
        if open.len() >= MAX_OPEN_MESHES {
            open.retain(|_, db| Arc::strong_count(db) > 1);
        }
        let db = Arc::new(MeshDb {
            writer: Mutex::new(writer),
            reader: Mutex::new(reader),
        });
        open.insert(mesh_id.to_string(), db.clone());
        Ok(Some(db))
    }

    fn open_connection(&self, path: &Path, reader: bool) -> Result<Guarded, SqlError> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags)
            .map_err(|e| SqlError::Storage(format!("cannot open {}: {e}", path.display())))?;
        configure(&conn, reader, self.max_pages())
            .map_err(|e| SqlError::Storage(format!("cannot set up {}: {e}", path.display())))?;
        let guard = Guard::default();
        conn.authorizer(Some(guard.authorizer()));
        Ok(Guarded { conn, guard })
    }

    /// Prepares the member's SQL as one statement under the authorizer and the time budget and
    /// runs `f` on it.
    fn member_statement<T>(
        &self,
        guarded: &Guarded,
        sql: &str,
        f: impl FnOnce(&mut Statement<'_>) -> Result<T, SqlError>,
    ) -> Result<T, SqlError> {
        if sql.len() > MAX_SQL_TEXT {
            return Err(SqlError::Invalid(format!(
                "the SQL is {} bytes; at most {MAX_SQL_TEXT}",
                sql.len()
            )));
        }
        let conn = &guarded.conn;
        let budget = self.limits.time_budget;
        let deadline = Instant::now() + budget;
        guarded.guard.arm();
        conn.progress_handler(PROGRESS_EVERY, Some(move || Instant::now() >= deadline));
        let result = (|| {
            let mut batch = Batch::new(conn, sql);
            let mut stmt = batch
                .next()
                .map_err(SqlError::from)?
                .ok_or(SqlError::Empty)?;
            if batch.next().map_err(SqlError::from)?.is_some() {
                return Err(SqlError::MultipleStatements);
            }
            f(&mut stmt)
        })();
        conn.progress_handler(0, None::<fn() -> bool>);
        guarded.guard.disarm();
        // A refusal may surface as SQLITE_AUTH or, for a function, as a plain SQLITE_ERROR.
        let refusal = guarded.guard.refusal();
        result.map_err(|e| match e {
            _ if refusal.is_some()
                && !matches!(e, SqlError::Invalid(_) | SqlError::NotReadOnly) =>
            {
                SqlError::NotAllowed(refusal.unwrap_or_default())
            }
            SqlError::Denied => SqlError::NotAllowed("the statement was refused".into()),
            SqlError::Interrupted => SqlError::TimeBudget(budget),
            SqlError::Full(why) => self.quota_or_disk(why),
            other => other,
        })
    }

    /// `SQLITE_FULL` says "database or disk is full" either way: the quota (`max_page_count`)
    /// unless the disk itself has less room left than the quota allows.
    fn quota_or_disk(&self, why: String) -> SqlError {
        let free = rustix::fs::statvfs(&self.dir)
            .map(|s| s.f_bavail.saturating_mul(s.f_frsize))
            .unwrap_or(u64::MAX);
        if free < self.limits.max_bytes {
            SqlError::Full(why)
        } else {
            SqlError::Quota(self.max_pages() * PAGE_SIZE)
        }
    }
}

fn lock(m: &Mutex<Guarded>) -> MutexGuard<'_, Guarded> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// User tables and views, by name (SQLite's own `sqlite_*` tables left out).
fn table_names(conn: &Connection) -> Result<Vec<(String, String)>, SqlError> {
    let mut stmt = conn
        .prepare(
            "SELECT name, type FROM sqlite_schema \
             WHERE type IN ('table', 'view') AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' \
             ORDER BY name",
        )
        .map_err(SqlError::from)?;
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .and_then(|rows| rows.collect())
        .map_err(SqlError::from)
}

/// The settings every connection gets before a member's statement can reach it.
fn configure(conn: &Connection, reader: bool, max_pages: u64) -> rusqlite::Result<()> {
    use rusqlite::config::DbConfig;
    // Extension loading off in the C API (it is off by default; this says so).
    // SAFETY: the handle is this open connection's, used on this thread only.
    let rc = unsafe { rusqlite::ffi::sqlite3_enable_load_extension(conn.handle(), 0) };
    if rc != rusqlite::ffi::SQLITE_OK {
        return Err(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rc),
            Some("cannot disable extension loading".into()),
        ));
    }
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_DEFENSIVE, true)?;
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_TRUSTED_SCHEMA, false)?;
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_FTS3_TOKENIZER, false)?;
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_WRITABLE_SCHEMA, false)?;
    let limits = [
        (Limit::SQLITE_LIMIT_LENGTH, MAX_VALUE_BYTES as i32),
        (Limit::SQLITE_LIMIT_SQL_LENGTH, MAX_SQL_TEXT as i32),
        (Limit::SQLITE_LIMIT_COLUMN, 200),
        (Limit::SQLITE_LIMIT_EXPR_DEPTH, 100),
        (Limit::SQLITE_LIMIT_COMPOUND_SELECT, 50),
        (Limit::SQLITE_LIMIT_VDBE_OP, 100_000),
        (Limit::SQLITE_LIMIT_FUNCTION_ARG, 32),
        (Limit::SQLITE_LIMIT_ATTACHED, 0),
        (Limit::SQLITE_LIMIT_LIKE_PATTERN_LENGTH, 1000),
        (Limit::SQLITE_LIMIT_VARIABLE_NUMBER, MAX_PARAMS as i32),
        (Limit::SQLITE_LIMIT_TRIGGER_DEPTH, 10),
        (Limit::SQLITE_LIMIT_WORKER_THREADS, 0),
    ];
    for (limit, value) in limits {
        conn.set_limit(limit, value);
    }
    conn.busy_timeout(Duration::from_secs(5))?;
    if reader {
        conn.pragma_update(None, "query_only", true)?;
    } else {
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |_| Ok(()))?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        // The WAL shrinks back after a checkpoint instead of keeping its largest size.
        conn.pragma_update_and_check(None, "journal_size_limit", 8 << 20, |_| Ok(()))?;
        conn.pragma_update(None, "foreign_keys", true)?;
        conn.pragma_update_and_check(None, "max_page_count", max_pages, |_| Ok(()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
