//! What a member's SQL may do, decided by SQLite's authorizer as each statement is prepared
//! (and re-prepared), never by reading the SQL text: no ATTACH or DETACH (nor the ATTACH of a
//! VACUUM INTO's output file), no `load_extension`, no PRAGMA but a short list of read-only
//! ones, no transaction control, nothing in the `temp` schema, virtual tables of the full-text
//! and R-tree modules only.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use rusqlite::hooks::{AuthAction, AuthContext, Authorization};

/// PRAGMAs a member may run: they only read the schema.
pub const ALLOWED_PRAGMAS: [&str; 8] = [
    "table_info",
    "table_xinfo",
    "table_list",
    "index_list",
    "index_info",
    "index_xinfo",
    "foreign_key_list",
    "foreign_key_check",
];

/// Virtual-table modules a member may create tables of.
const ALLOWED_MODULES: [&str; 5] = ["fts5", "fts4", "fts3", "rtree", "rtree_i32"];

/// The authorizer's state, shared with the connection that owns it: whether a member's
/// statement is being prepared or run (the broker's own statements are not checked), the first
/// refusal's reason, and what the statement writes (for the audit log).
#[derive(Clone, Default)]
pub struct Guard {
    armed: Arc<AtomicBool>,
    seen: Arc<Mutex<Seen>>,
}

#[derive(Default)]
struct Seen {
    refusal: Option<String>,
    writes: BTreeSet<String>,
}

impl Guard {
    /// The callback to install with `Connection::authorizer`.
    pub fn authorizer(&self) -> impl FnMut(AuthContext<'_>) -> Authorization + Send + 'static {
        let guard = self.clone();
        move |ctx| {
            if !guard.armed.load(Ordering::Acquire) {
                return Authorization::Allow;
            }
            match decide(&ctx) {
                Ok(write) => {
                    if let Some(w) = write.filter(|_| ctx.accessor.is_none()) {
                        guard.seen().writes.insert(w);
                    }
                    Authorization::Allow
                }
                Err(why) => {
                    guard.seen().refusal.get_or_insert(why);
                    Authorization::Deny
                }
            }
        }
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Checks every statement from now until [`Guard::disarm`].
    pub fn arm(&self) {
        *self.seen() = Seen::default();
        self.armed.store(true, Ordering::Release);
    }

    pub fn disarm(&self) {
        self.armed.store(false, Ordering::Release);
    }

    /// Why the authorizer refused, if it did since [`Guard::arm`].
    pub fn refusal(&self) -> Option<String> {
        self.seen().refusal.clone()
    }

    /// What the statement writes, as `verb table` entries (`insert notes`), sorted.
    pub fn writes(&self) -> Vec<String> {
        self.seen().writes.iter().cloned().collect()
    }
}

/// `Ok(Some(write))` for an allowed write, `Ok(None)` for an allowed read, `Err(why)` for a
/// refusal.
fn decide(ctx: &AuthContext<'_>) -> Result<Option<String>, String> {
    use AuthAction as A;
    if let Some(db) = ctx.database_name.filter(|db| *db != "main") {
        return Err(format!(
            "only this mesh's own database (\"main\") may be used; \"{db}\" is not allowed"
        ));
    }
    // SQLite's own bookkeeping (`sqlite_master` on CREATE) is not what the member wrote.
    let write = |verb: &str, name: &str| {
        Ok((!name.starts_with("sqlite_")).then(|| format!("{verb} {name}")))
    };
    match ctx.action {
        A::Select | A::Recursive | A::Read { .. } => Ok(None),
        A::Function { function_name } => {
            if function_name.eq_ignore_ascii_case("load_extension") {
                Err("load_extension is not allowed: no extension can be loaded".into())
            } else {
                Ok(None)
            }
        }
        A::Pragma { pragma_name, .. } => {
            let name = pragma_name.to_ascii_lowercase();
            if ALLOWED_PRAGMAS.contains(&name.as_str()) {
                Ok(None)
            } else {
                Err(format!(
                    "PRAGMA {pragma_name} is not allowed; the allowed pragmas are {}",
                    ALLOWED_PRAGMAS.join(", ")
                ))
            }
        }
        A::Attach { .. } | A::Detach { .. } => Err(
            "ATTACH and DETACH are not allowed: a mesh sees only its own database"
                .into(),
        ),
        A::Transaction { .. } | A::Savepoint { .. } => Err(
            "BEGIN, COMMIT, ROLLBACK and SAVEPOINT are not allowed: each call is one statement, run in a transaction of its own"
                .into(),
        ),
        A::CreateTempIndex { .. }
        | A::CreateTempTable { .. }
        | A::CreateTempTrigger { .. }
        | A::CreateTempView { .. }
        | A::DropTempIndex { .. }
        | A::DropTempTable { .. }
        | A::DropTempTrigger { .. }
        | A::DropTempView { .. } => Err(
            "temporary tables, indexes, views and triggers are not allowed; create ordinary ones"
                .into(),
        ),
        A::CreateVtable {
            table_name,
            module_name,
        } => {
            if ALLOWED_MODULES
                .iter()
                .any(|m| m.eq_ignore_ascii_case(module_name))
            {
                write("create_virtual_table", table_name)
            } else {
                Err(format!(
                    "virtual tables of module {module_name} are not allowed; the allowed modules are {}",
                    ALLOWED_MODULES.join(", ")
                ))
            }
        }
        A::DropVtable { table_name, .. } => write("drop_virtual_table", table_name),
        A::Insert { table_name } => write("insert", table_name),
        A::Update { table_name, .. } => write("update", table_name),
        A::Delete { table_name } => write("delete", table_name),
        A::CreateTable { table_name } => write("create_table", table_name),
        A::DropTable { table_name } => write("drop_table", table_name),
        A::CreateIndex { table_name, .. } => write("create_index", table_name),
        A::DropIndex { table_name, .. } => write("drop_index", table_name),
        A::CreateView { view_name } => write("create_view", view_name),
        A::DropView { view_name } => write("drop_view", view_name),
        A::CreateTrigger { table_name, .. } => write("create_trigger", table_name),
        A::DropTrigger { table_name, .. } => write("drop_trigger", table_name),
        A::AlterTable { table_name, .. } => write("alter_table", table_name),
        A::Analyze { table_name } => write("analyze", table_name),
        A::Reindex { index_name } => write("reindex", index_name),
        _ => Err("this kind of statement is not allowed".into()),
    }
}
