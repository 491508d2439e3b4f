//! MCP tools for the mesh's own SQL database: mesh_query, mesh_execute, mesh_schema.

use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::CallToolResult;
use rmcp::{schemars, tool, tool_router};
use serde::Deserialize;
use serde_json::Value;

use super::{MeshArg, MeshTools, json_text};

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct QuerySqlArgs {
    /// One read-only SQL statement (SQLite dialect), e.g. SELECT.
    pub sql: String,
    /// Values for the statement's parameters: an array for ? (in order), an object for :name.
    /// Bound by SQLite, never spliced into the text.
    #[serde(default)]
    pub params: Option<Value>,
    /// Rows to skip: the nextOffset of the previous answer.
    #[serde(default)]
    pub offset: Option<u64>,
    /// Most rows wanted (default 100, at most 500).
    #[serde(default)]
    pub limit: Option<usize>,
    #[serde(default)]
    pub mesh: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct ExecuteSqlArgs {
    /// One SQL statement (SQLite dialect): CREATE TABLE, INSERT, UPDATE, DELETE, DROP …
    pub sql: String,
    /// Values for the statement's parameters: an array for ? (in order), an object for :name.
    #[serde(default)]
    pub params: Option<Value>,
    #[serde(default)]
    pub mesh: Option<String>,
}

#[tool_router(router = sql_router, vis = "pub")]
impl MeshTools {
    #[tool(
        description = "Run one read-only SQL statement (SQLite) on the mesh's shared database and get a page of rows {columns, rows, rowCount, nextOffset?, note?}. Writes are refused: use mesh_execute. Pass values as params, not in the SQL text."
    )]
    async fn mesh_query(&self, Parameters(a): Parameters<QuerySqlArgs>) -> CallToolResult {
        self.with_client(a.mesh.as_deref(), |c| async move {
            let r = c
                .mesh_query(&a.sql, a.params, a.offset, a.limit)
                .await
                .map_err(|e| e.to_string())?;
            Ok(json_text(&r))
        })
        .await
    }

    #[tool(
        description = "Run one SQL statement that changes the mesh's shared database (SQLite): CREATE TABLE, INSERT, UPDATE, DELETE, DROP. Every member sees the result; it is on disk when this answers. Pass values as params."
    )]
    async fn mesh_execute(&self, Parameters(a): Parameters<ExecuteSqlArgs>) -> CallToolResult {
        self.with_client(a.mesh.as_deref(), |c| async move {
            let r = c
                .mesh_execute(&a.sql, a.params)
                .await
                .map_err(|e| e.to_string())?;
            Ok(json_text(&r))
        })
        .await
    }

    #[tool(
        description = "List the tables of the mesh's shared SQL database with their columns (name, type, nullable)."
    )]
    async fn mesh_schema(&self, Parameters(a): Parameters<MeshArg>) -> CallToolResult {
        self.with_client(a.mesh.as_deref(), |c| async move {
            let r = c.mesh_schema().await.map_err(|e| e.to_string())?;
            Ok(if r.tables.is_empty() {
                "The mesh's SQL database has no tables yet (create one with mesh_execute)."
                    .to_string()
            } else {
                json_text(&r)
            })
        })
        .await
    }
}
