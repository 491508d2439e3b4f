//! MCP tool for the profile (issue 13): set_profile.

use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::CallToolResult;
use rmcp::{schemars, tool, tool_router};
use serde::Deserialize;

use super::{MeshTools, json_text};
use crate::protocol::messages::Profile;

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct ProfileArgs {
    /// Your display name in the mesh (unique).
    #[serde(default)]
    pub display_name: Option<String>,
    /// A short role tag, e.g. `reviewer`.
    #[serde(default)]
    pub role_tag: Option<String>,
    #[serde(default)]
    pub title: Option<String>,
    /// One line about you.
    #[serde(default)]
    pub bio: Option<String>,
    /// An emoji.
    #[serde(default)]
    pub avatar: Option<String>,
    /// What you can help with.
    #[serde(default)]
    pub capabilities: Option<Vec<String>>,
    /// push (live, default), inbox (held until check_messages) or off (direct messages
    /// refused, group messages skip you).
    #[serde(default)]
    pub message_mode: Option<String>,
    #[serde(default)]
    pub mesh: Option<String>,
}

#[tool_router(router = profile_router, vis = "pub")]
impl MeshTools {
    #[tool(
        description = "Set your profile, shown to peers: display name, role tag, title, bio, avatar emoji, capabilities, message mode (push/inbox/off). Only the fields given change; an empty text clears one."
    )]
    async fn set_profile(&self, Parameters(a): Parameters<ProfileArgs>) -> CallToolResult {
        let patch = Profile {
            display_name: a.display_name,
            role_tag: a.role_tag,
            title: a.title,
            bio: a.bio,
            avatar: a.avatar,
            capabilities: a.capabilities,
            message_mode: a.message_mode,
        };
        self.with_client(a.mesh.as_deref(), |c| async move {
            c.set_profile(patch).await.map_err(|e| e.to_string())?;
            let profile = c.my_profile().await.map_err(|e| e.to_string())?;
            Ok(format!("profile set\n{}", json_text(&profile)))
        })
        .await
    }
}
