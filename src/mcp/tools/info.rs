//! MCP tool for the mesh overview: mesh_info.

use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::CallToolResult;
use rmcp::{tool, tool_router};

use super::{MeshArg, MeshTools, json_text};

#[tool_router(router = info_router, vis = "pub")]
impl MeshTools {
    #[tool(
        description = "The mesh at a glance: peers, groups, state keys, memories, files, tasks, streams, SQL tables, vector collections, and you."
    )]
    async fn mesh_info(&self, Parameters(a): Parameters<MeshArg>) -> CallToolResult {
        self.with_client(a.mesh.as_deref(), |c| async move {
            let info = c.mesh_info().await.map_err(|e| e.to_string())?;
            Ok(json_text(&info))
        })
        .await
    }
}
