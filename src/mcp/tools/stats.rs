//! MCP tool for stats (issue 13): mesh_stats.

use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::CallToolResult;
use rmcp::{tool, tool_router};
use serde_json::json;

use super::{MeshArg, MeshTools, json_text};

#[tool_router(router = stats_router, vis = "pub")]
impl MeshTools {
    #[tool(
        description = "Per-session stats of the mesh: messages in and out, errors and uptime counted by the broker, and tool calls each session reported."
    )]
    async fn mesh_stats(&self, Parameters(a): Parameters<MeshArg>) -> CallToolResult {
        self.with_client(a.mesh.as_deref(), |c| async move {
            let peers = c.mesh_stats().await.map_err(|e| e.to_string())?;
            let peers: Vec<_> = peers
                .into_iter()
                .filter(|p| p.peer_role != "control-plane")
                .collect();
            Ok(json_text(&json!({ "peers": peers })))
        })
        .await
    }
}
