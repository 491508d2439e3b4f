//! MCP tools for the mesh's graph: graph_query, graph_execute (the original's names and
//! `cypher` field).

use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::CallToolResult;
use rmcp::{schemars, tool, tool_router};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::{MeshTools, json_text};

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct CypherArgs {
    /// The Cypher statement.
    pub cypher: String,
    /// Parameters, used as $name in the statement (pass values here, not in the text).
    #[serde(default)]
    pub params: Option<Map<String, Value>>,
    #[serde(default)]
    pub mesh: Option<String>,
}

#[tool_router(router = graph_router, vis = "pub")]
impl MeshTools {
    #[tool(
        description = "Run a read-only Cypher query (MATCH … RETURN) on the mesh's shared graph. Writes are refused: use graph_execute."
    )]
    async fn graph_query(&self, Parameters(a): Parameters<CypherArgs>) -> CallToolResult {
        self.with_client(a.mesh.as_deref(), |c| async move {
            let r = c
                .graph_query(&a.cypher, a.params)
                .await
                .map_err(|e| e.to_string())?;
            Ok(json_text(&r))
        })
        .await
    }

    #[tool(
        description = "Run a Cypher statement that writes (CREATE, MERGE, SET, DELETE) on the mesh's shared graph."
    )]
    async fn graph_execute(&self, Parameters(a): Parameters<CypherArgs>) -> CallToolResult {
        self.with_client(a.mesh.as_deref(), |c| async move {
            let r = c
                .graph_execute(&a.cypher, a.params)
                .await
                .map_err(|e| e.to_string())?;
            Ok(json_text(&r))
        })
        .await
    }
}
