//! MCP tool for root-key rotation (PROTOCOL.md §12.4): rotate_key.

use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::CallToolResult;
use rmcp::{tool, tool_router};

use super::{MeshArg, MeshTools};

#[tool_router(router = keys_router, vis = "pub")]
impl MeshTools {
    #[tool(
        description = "Owner or admin: give the mesh a new root key, sealed on this machine to every remaining member (do it after removing someone, so they cannot read group messages sent from now on). Unused invites are revoked: their links carried the old key."
    )]
    async fn rotate_key(&self, Parameters(a): Parameters<MeshArg>) -> CallToolResult {
        self.with_client(a.mesh.as_deref(), |c| async move {
            let r = c.rotate_root_key().await.map_err(|e| e.to_string())?;
            Ok(format!(
                "rotated the mesh root key to epoch {}: sealed to {} member(s); {} unused invite(s) revoked",
                r.epoch, r.members, r.invites_revoked
            ))
        })
        .await
    }
}
