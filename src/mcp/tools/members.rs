//! MCP tools for removing people: `kick`, `disconnect`, `ban`, `unban`, `list_bans`.

use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::CallToolResult;
use rmcp::{schemars, tool, tool_router};
use serde::Deserialize;

use super::{MeshArg, MeshTools, json_text};

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct RemoveArgs {
    /// The member's display name, id or pubkey.
    pub member: String,
    /// Why (shown to the member).
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub mesh: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct MemberArgs {
    /// The member's display name, id or pubkey.
    pub member: String,
    #[serde(default)]
    pub mesh: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct DisconnectArgs {
    /// The session's pubkey or session id, as list_peers shows them.
    pub session: String,
    #[serde(default)]
    pub mesh: Option<String>,
}

#[tool_router(router = members_router, vis = "pub")]
impl MeshTools {
    #[tool(
        description = "Close every connection of a member, with a reason (owner or admin). They may connect again."
    )]
    async fn kick(&self, Parameters(a): Parameters<RemoveArgs>) -> CallToolResult {
        self.with_client(a.mesh.as_deref(), |c| async move {
            c.kick(&a.member, a.reason)
                .await
                .map_err(|e| e.to_string())?;
            Ok(format!("kicked {}", a.member))
        })
        .await
    }

    #[tool(
        description = "Close one connection, e.g. a ghost session: your own, or anyone's as owner or admin."
    )]
    async fn disconnect(&self, Parameters(a): Parameters<DisconnectArgs>) -> CallToolResult {
        self.with_client(a.mesh.as_deref(), |c| async move {
            c.disconnect(&a.session).await.map_err(|e| e.to_string())?;
            Ok(format!("disconnected {}", a.session))
        })
        .await
    }

    #[tool(
        description = "Ban a member (owner or admin): their connections close and their hellos and invite claims are refused until unban."
    )]
    async fn ban(&self, Parameters(a): Parameters<RemoveArgs>) -> CallToolResult {
        self.with_client(a.mesh.as_deref(), |c| async move {
            c.ban(&a.member, a.reason)
                .await
                .map_err(|e| e.to_string())?;
            rotated(&c, format!("banned {}", a.member)).await
        })
        .await
    }

    #[tool(description = "Lift a member's ban (owner or admin).")]
    async fn unban(&self, Parameters(a): Parameters<MemberArgs>) -> CallToolResult {
        self.with_client(a.mesh.as_deref(), |c| async move {
            c.unban(&a.member).await.map_err(|e| e.to_string())?;
            rotated(&c, format!("unbanned {}", a.member)).await
        })
        .await
    }

    #[tool(description = "List the mesh's bans, newest first (owner or admin).")]
    async fn list_bans(&self, Parameters(a): Parameters<MeshArg>) -> CallToolResult {
        self.with_client(a.mesh.as_deref(), |c| async move {
            let (bans, truncated) = c.list_bans().await.map_err(|e| e.to_string())?;
            Ok(if bans.is_empty() {
                "No bans.".to_string()
            } else if truncated {
                format!("{}\n(more bans than shown)", json_text(&bans))
            } else {
                json_text(&bans)
            })
        })
        .await
    }
}

/// After a ban or an unban: rotates the mesh root key (so a banned member cannot read what is
/// sent from now on, and an unbanned one gets the key again) and says so.
async fn rotated(c: &crate::client::MeshClient, done: String) -> Result<String, String> {
    match c.rotate_root_key().await {
        Ok(r) => Ok(format!(
            "{done}; rotated the mesh root key to epoch {}: sealed to {} member(s); {} unused invite(s) revoked",
            r.epoch, r.members, r.invites_revoked
        )),
        Err(e) => Err(format!(
            "{done}, but rotating the mesh root key failed ({e}): call rotate_key"
        )),
    }
}
