//! MCP tools for capabilities: `get_perms`, `set_perms`.

use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::CallToolResult;
use rmcp::{schemars, tool, tool_router};
use serde::Deserialize;

use super::{MeshTools, json_text};
use crate::protocol::messages::SetPerms;

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct GetPermsArgs {
    /// A member's display name, id or pubkey; omit for everyone.
    #[serde(default)]
    pub member: Option<String>,
    #[serde(default)]
    pub mesh: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct SetPermsArgs {
    /// The member's display name, id or pubkey.
    pub member: String,
    /// Capabilities to grant: invite, send, state, files, tools, deploy, vault, watches,
    /// webhooks, perms, delete-mesh.
    #[serde(default)]
    pub grant: Vec<String>,
    /// Capabilities to deny.
    #[serde(default)]
    pub deny: Vec<String>,
    /// Capabilities to set back to the role's default.
    #[serde(default)]
    pub reset: Vec<String>,
    /// New role: member or admin (the owner only).
    #[serde(default)]
    pub role: Option<String>,
    #[serde(default)]
    pub mesh: Option<String>,
}

#[tool_router(router = perms_router, vis = "pub")]
impl MeshTools {
    #[tool(
        description = "Show what members may do: role, effective capabilities, and the capabilities granted or denied beyond the role's defaults. One member, or everyone."
    )]
    async fn get_perms(&self, Parameters(a): Parameters<GetPermsArgs>) -> CallToolResult {
        self.with_client(a.mesh.as_deref(), |c| async move {
            let entries = c
                .get_perms(a.member.as_deref())
                .await
                .map_err(|e| e.to_string())?;
            Ok(json_text(&entries))
        })
        .await
    }

    #[tool(
        description = "Change a member's capabilities (grant, deny, or reset to the role's default) or role. Needs the `perms` capability; you cannot give what you do not hold; only the owner changes roles; nobody changes the owner's."
    )]
    async fn set_perms(&self, Parameters(a): Parameters<SetPermsArgs>) -> CallToolResult {
        self.with_client(a.mesh.as_deref(), |c| async move {
            let entry = c
                .set_perms(SetPerms {
                    member: a.member,
                    grant: a.grant,
                    deny: a.deny,
                    reset: a.reset,
                    role: a.role,
                })
                .await
                .map_err(|e| e.to_string())?;
            Ok(json_text(&entry))
        })
        .await
    }
}
