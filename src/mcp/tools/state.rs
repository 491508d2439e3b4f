//! MCP tools for the state board: set_state, get_state, list_state.

use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::CallToolResult;
use rmcp::{schemars, tool, tool_router};
use serde::Deserialize;
use serde_json::Value;

use super::{MeshArg, MeshTools, json_text};

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct SetStateArgs {
    /// The key.
    pub key: String,
    /// Any JSON value; null deletes the key.
    pub value: Value,
    #[serde(default)]
    pub mesh: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct KeyArgs {
    pub key: String,
    #[serde(default)]
    pub mesh: Option<String>,
}

#[tool_router(router = state_router, vis = "pub")]
impl MeshTools {
    #[tool(
        description = "Set a key on the mesh's shared state board (any JSON value; null deletes). Every other peer is told at once."
    )]
    async fn set_state(&self, Parameters(a): Parameters<SetStateArgs>) -> CallToolResult {
        self.with_client(a.mesh.as_deref(), |c| async move {
            let e = c
                .set_state(&a.key, a.value)
                .await
                .map_err(|e| e.to_string())?;
            Ok(format!("{} = {} (set by {})", e.key, e.value, e.updated_by))
        })
        .await
    }

    #[tool(description = "Read a key of the shared state board.")]
    async fn get_state(&self, Parameters(a): Parameters<KeyArgs>) -> CallToolResult {
        self.with_client(a.mesh.as_deref(), |c| async move {
            let e = c.get_state(&a.key).await.map_err(|e| e.to_string())?;
            Ok(if e.value.is_null() {
                format!("{} is not set", e.key)
            } else {
                format!(
                    "{} = {} (set by {} at {})",
                    e.key, e.value, e.updated_by, e.updated_at
                )
            })
        })
        .await
    }

    #[tool(description = "List every key of the shared state board with its value.")]
    async fn list_state(&self, Parameters(a): Parameters<MeshArg>) -> CallToolResult {
        self.with_client(a.mesh.as_deref(), |c| async move {
            let entries = c.list_state().await.map_err(|e| e.to_string())?;
            Ok(if entries.is_empty() {
                "The state board is empty.".to_string()
            } else {
                json_text(&entries)
            })
        })
        .await
    }
}
