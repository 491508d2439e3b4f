//! Per-mesh SQL (README "Shared SQL"): `sql "SELECT …"`, `sql --execute "…"`, `sql schema`.

use argh::{ArgsInfo, FromArgs};
use serde_json::Value;

use super::output::outln;
use super::{CliError, CliResult, json_or_text, print_json, show_value, with_client};
use crate::client::MeshClient;
use crate::protocol::messages::{MeshSchemaResult, SqlRowsEntry};

/// Widest cell of the text table; longer values are cut (use --json for all of it).
const MAX_CELL_CHARS: usize = 60;

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "sql", help_triggers("-h", "--help"))]
#[argh(
    example = "claudemesh sql --execute \"CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)\""
)]
#[argh(example = "claudemesh sql --execute \"INSERT INTO notes (body) VALUES (?)\" --param hello")]
#[argh(example = "claudemesh sql \"SELECT * FROM notes WHERE id > ?\" --param 10 --json")]
#[argh(example = "claudemesh sql schema")]
/// the mesh's own SQL database: read-only queries, --execute for changes, `schema` for tables
pub struct SqlCmd {
    /// a read-only SQL statement, or `schema` to list the tables and their columns
    #[argh(positional)]
    statement: Option<String>,
    /// run this statement (CREATE, INSERT, UPDATE, DELETE …) instead of a read-only one
    #[argh(option)]
    execute: Option<String>,
    /// a value for the next ? parameter (JSON, or else text); repeat for each one
    #[argh(option)]
    param: Vec<String>,
    /// all parameters as JSON: an array for ?, an object for :name
    #[argh(option)]
    params: Option<String>,
    /// rows to skip (from the previous page's next offset)
    #[argh(option)]
    offset: Option<u64>,
    /// most rows in this page (default 100, at most 500)
    #[argh(option)]
    limit: Option<usize>,
    /// mesh slug or id (needed when several are joined)
    #[argh(option)]
    mesh: Option<String>,
    /// print JSON: the broker's answer (mesh_query_result, mesh_execute_result or
    /// mesh_schema_result)
    #[argh(switch)]
    json: bool,
}

enum Action {
    Query(String),
    Execute(String),
    Schema,
}

impl SqlCmd {
    fn action(&self) -> Result<Action, CliError> {
        match (&self.statement, &self.execute) {
            (Some(_), Some(_)) => Err(CliError::Usage(
                "give either a query or --execute STATEMENT, not both".into(),
            )),
            (None, Some(s)) => Ok(Action::Execute(s.clone())),
            (Some(s), None) if s.trim().eq_ignore_ascii_case("schema") => Ok(Action::Schema),
            (Some(s), None) => Ok(Action::Query(s.clone())),
            (None, None) => Err(CliError::Usage(
                "give a statement: claudemesh sql \"SELECT …\", claudemesh sql --execute \"…\", or claudemesh sql schema"
                    .into(),
            )),
        }
    }

    fn parameters(&self) -> Result<Option<Value>, CliError> {
        match (&self.params, self.param.is_empty()) {
            (Some(_), false) => Err(CliError::Usage(
                "give parameters either with --param (repeated) or with --params JSON, not both"
                    .into(),
            )),
            (Some(json), true) => match serde_json::from_str::<Value>(json) {
                Ok(v @ (Value::Array(_) | Value::Object(_))) => Ok(Some(v)),
                _ => Err(CliError::Usage(
                    "--params takes a JSON array (for ?) or object (for :name)".into(),
                )),
            },
            (None, false) => Ok(Some(Value::Array(
                self.param.iter().map(|p| json_or_text(p)).collect(),
            ))),
            (None, true) => Ok(None),
        }
    }

    pub async fn run(self) -> CliResult {
        let action = self.action()?;
        let params = self.parameters()?;
        let (offset, limit, json) = (self.offset, self.limit, self.json);
        match action {
            Action::Query(sql) => {
                let result = with_client(self.mesh.as_deref(), async |c: &MeshClient| {
                    Ok(c.mesh_query(&sql, params, offset, limit).await?)
                })
                .await?;
                if json {
                    print_json(&result);
                } else {
                    print_rows(&result.rows);
                }
            }
            Action::Execute(sql) => {
                let result = with_client(self.mesh.as_deref(), async |c: &MeshClient| {
                    Ok(c.mesh_execute(&sql, params).await?)
                })
                .await?;
                if json {
                    print_json(&result);
                } else {
                    if !result.rows.columns.is_empty() {
                        print_rows(&result.rows);
                    }
                    outln!(
                        "ok: {} row(s) changed (last insert rowid {})",
                        result.changes,
                        result.last_insert_rowid
                    );
                }
            }
            Action::Schema => {
                let schema = with_client(self.mesh.as_deref(), async |c: &MeshClient| {
                    Ok(c.mesh_schema().await?)
                })
                .await?;
                if json {
                    print_json(&schema);
                } else {
                    print_schema(&schema);
                }
            }
        }
        Ok(())
    }
}

fn cell(v: &Value) -> String {
    let text = show_value(v);
    if text.chars().count() > MAX_CELL_CHARS {
        let cut: String = text.chars().take(MAX_CELL_CHARS - 1).collect();
        format!("{cut}…")
    } else {
        text
    }
}

/// An aligned table, then how many rows and where the next page starts.
fn print_rows(r: &SqlRowsEntry) {
    let cells: Vec<Vec<String>> = r
        .rows
        .iter()
        .map(|row| {
            r.columns
                .iter()
                .map(|c| row.get(c).map(cell).unwrap_or_default())
                .collect()
        })
        .collect();
    let widths: Vec<usize> = r
        .columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            cells
                .iter()
                .map(|row| row[i].chars().count())
                .chain([c.chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |values: &[String]| {
        values
            .iter()
            .zip(&widths)
            .map(|(v, w)| format!("{v:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    if !r.columns.is_empty() {
        outln!("{}", line(&r.columns));
        for row in &cells {
            outln!("{}", line(row));
        }
    }
    match r.next_offset {
        Some(next) => outln!("({} row(s); more with --offset {next})", r.row_count),
        None => outln!("({} row(s))", r.row_count),
    }
    if let Some(note) = &r.note {
        outln!("note: {note}");
    }
}

fn print_schema(s: &MeshSchemaResult) {
    if s.tables.is_empty() {
        outln!("no tables (create one with claudemesh sql --execute \"CREATE TABLE …\")");
    }
    for t in &s.tables {
        let kind = if t.kind == "view" { " (view)" } else { "" };
        outln!("{}{kind}", t.name);
        for c in &t.columns {
            let mut traits = Vec::new();
            if c.primary_key {
                traits.push("primary key");
            }
            if !c.nullable {
                traits.push("not null");
            }
            let ty = if c.decl_type.is_empty() {
                "(any)"
            } else {
                &c.decl_type
            };
            outln!("  {}  {ty}  {}", c.name, traits.join(", "));
        }
    }
    if s.truncated {
        outln!(
            "(more tables than one answer holds; use claudemesh sql \"SELECT name FROM sqlite_schema\")"
        );
    }
    outln!("{} of {} bytes used", s.bytes, s.max_bytes);
}
