//! MCP tools for per-peer grants and blocks (issue 13): block_peer, unblock_peer, set_grants,
//! list_grants.

use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::CallToolResult;
use rmcp::{schemars, tool, tool_router};
use serde::Deserialize;
use serde_json::json;

use super::{MeshArg, MeshTools, json_text};

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct PeerArgs {
    /// The member: display name, key prefix (8+ hex) or member id.
    pub peer: String,
    #[serde(default)]
    pub mesh: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct SetGrantsArgs {
    /// The member: display name, key prefix (8+ hex) or member id.
    pub peer: String,
    /// Rights to give back: message, files, tools.
    #[serde(default)]
    pub grant: Vec<String>,
    /// Rights to take away: message, files, tools.
    #[serde(default)]
    pub revoke: Vec<String>,
    #[serde(default)]
    pub mesh: Option<String>,
}

#[tool_router(router = grants_router, vis = "pub")]
impl MeshTools {
    #[tool(
        description = "Block a member: their direct messages to you are refused (they are told), you get no copy of their group messages, and they may not read your files or call your tools."
    )]
    async fn block_peer(&self, Parameters(a): Parameters<PeerArgs>) -> CallToolResult {
        self.with_client(a.mesh.as_deref(), |c| async move {
            let peer = c.resolve_peer(&a.peer).await.map_err(|e| e.to_string())?;
            let entry = c.block(&peer).await.map_err(|e| e.to_string())?;
            Ok(format!(
                "blocked {}\n{}",
                entry.display_name,
                json_text(&entry)
            ))
        })
        .await
    }

    #[tool(description = "Unblock a member: they may do everything towards you again.")]
    async fn unblock_peer(&self, Parameters(a): Parameters<PeerArgs>) -> CallToolResult {
        self.with_client(a.mesh.as_deref(), |c| async move {
            let peer = c.resolve_peer(&a.peer).await.map_err(|e| e.to_string())?;
            let entry = c.unblock(&peer).await.map_err(|e| e.to_string())?;
            Ok(format!(
                "unblocked {}\n{}",
                entry.display_name,
                json_text(&entry)
            ))
        })
        .await
    }

    #[tool(
        description = "Grant or revoke what one member may do towards you: message (message you), files (read your files), tools (call your tools)."
    )]
    async fn set_grants(&self, Parameters(a): Parameters<SetGrantsArgs>) -> CallToolResult {
        self.with_client(a.mesh.as_deref(), |c| async move {
            let peer = c.resolve_peer(&a.peer).await.map_err(|e| e.to_string())?;
            let entry = c
                .set_grants(&peer, a.grant, a.revoke)
                .await
                .map_err(|e| e.to_string())?;
            Ok(json_text(&entry))
        })
        .await
    }

    #[tool(
        description = "List the members you restrict (everyone not listed may do everything towards you)."
    )]
    async fn list_grants(&self, Parameters(a): Parameters<MeshArg>) -> CallToolResult {
        self.with_client(a.mesh.as_deref(), |c| async move {
            let (grants, truncated) = c.list_grants().await.map_err(|e| e.to_string())?;
            Ok(json_text(
                &json!({ "grants": grants, "truncated": truncated }),
            ))
        })
        .await
    }
}
