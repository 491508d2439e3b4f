//! Per-mesh SQL (issue 16, PROTOCOL.md §18): `mesh_query`, `mesh_execute`, `mesh_schema`. The
//! original's frame names and result fields (`columns`, `rows`, `rowCount`; schema `tables`
//! with `name`, `columns[{name, type, nullable}]`); `params`, `offset`, `limit` and the page
//! fields are this broker's additions.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// `mesh_query` (read-only) and `mesh_execute` (DDL and DML): one SQL statement.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SqlStatement {
    pub sql: String,
    /// Bound, never spliced: an array for `?`/`?NNN`, an object for `:name`/`@name`/`$name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<Value>,
    /// `mesh_query` only: rows to skip (from the previous answer's `nextOffset`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    /// `mesh_query` only: most rows wanted (default 100, at most 500).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
}

/// Rows of an answer: the original's `columns`, `rows` (one object per row, keyed by column)
/// and `rowCount` (rows in this answer), with the page's end.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SqlRowsEntry {
    pub columns: Vec<String>,
    pub rows: Vec<Map<String, Value>>,
    pub row_count: usize,
    /// Where the next page starts; absent when this page ends the result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_offset: Option<u64>,
    /// Rows were left out to keep the answer within its size (the note says how to get them).
    #[serde(default)]
    pub truncated: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// `mesh_query_result`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MeshQueryResult {
    #[serde(flatten)]
    pub rows: SqlRowsEntry,
    /// The offset this page starts at.
    #[serde(default)]
    pub offset: u64,
}

/// `mesh_execute_result`: what the statement changed, and its `RETURNING` rows.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MeshExecuteResult {
    /// Rows inserted, updated or deleted (0 for DDL).
    pub changes: u64,
    pub last_insert_rowid: i64,
    #[serde(flatten)]
    pub rows: SqlRowsEntry,
}

/// A column of `mesh_schema_result`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SqlColumnEntry {
    pub name: String,
    /// The declared type (may be empty).
    #[serde(rename = "type")]
    pub decl_type: String,
    pub nullable: bool,
    #[serde(default)]
    pub primary_key: bool,
}

/// A table (or view) of `mesh_schema_result`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SqlTableEntry {
    pub name: String,
    /// `table` or `view`.
    #[serde(default)]
    pub kind: String,
    pub columns: Vec<SqlColumnEntry>,
}

/// `mesh_schema_result`: the mesh's tables, and how much of its quota they use.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MeshSchemaResult {
    pub tables: Vec<SqlTableEntry>,
    #[serde(default)]
    pub bytes: u64,
    #[serde(default)]
    pub max_bytes: u64,
    /// More tables exist than fit one answer (32 KiB); the first ones by name are listed.
    #[serde(default)]
    pub truncated: bool,
}
