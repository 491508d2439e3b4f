//! `claudemesh mcp`: the MCP server Claude Code starts over stdio. It joins every mesh of this
//! machine as its own session (session hello), exposes the mesh as tools, and turns incoming
//! messages into `notifications/claude/channel`.

mod data_tools;
mod hub;
pub mod session;
mod tools;

use rmcp::model::{Implementation, ServerCapabilities, ServerConfig};
use rmcp::service::{NotificationContext, RoleServer};
use rmcp::{ServerHandler, ServiceExt, tool_handler};
use serde_json::Map;

use crate::identity::ConfigDir;
use hub::Hub;
use session::Session;
use tools::MeshTools;

const INSTRUCTIONS: &str = include_str!("../../data/mcp-instructions.md");

#[tool_handler(router = self.tool_router)]
impl ServerHandler for MeshTools {
    fn get_info(&self) -> ServerConfig {
        let mut capabilities = ServerCapabilities::builder().enable_tools().build();
        let mut experimental = std::collections::BTreeMap::new();
        experimental.insert("claude/channel".to_string(), Map::new());
        capabilities.experimental = Some(experimental);
        ServerConfig::new(capabilities)
            .with_server_info(Implementation::new("claudemesh", env!("CARGO_PKG_VERSION")))
            .with_instructions(self.instructions())
    }

    async fn on_initialized(&self, context: NotificationContext<RoleServer>) {
        self.hub.set_notifier(context.peer.clone());
    }
}

impl MeshTools {
    /// The instructions with this session's identity filled in.
    fn instructions(&self) -> String {
        let hub = &self.hub;
        let name = std::env::var("CLAUDEMESH_NAME")
            .ok()
            .filter(|n| !n.is_empty())
            .or_else(|| hub.links.first().map(|l| l.entry.display_name.clone()))
            .unwrap_or_else(|| "this session".into());
        let meshes = if hub.links.is_empty() {
            "no mesh yet (run `claudemesh join <invite-url>` in a terminal)".to_string()
        } else {
            hub.links
                .iter()
                .map(|l| format!("mesh `{}`", l.entry.slug))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let groups = std::env::var("CLAUDEMESH_GROUPS")
            .ok()
            .filter(|g| !g.is_empty())
            .unwrap_or_else(|| "none yet (join_group adds one)".into());
        let tools: Vec<String> = self
            .tool_router
            .list_all()
            .iter()
            .map(|t| format!("- `{}`", t.name))
            .collect();
        INSTRUCTIONS
            .replace("{name}", &name)
            .replace("{meshes}", &meshes)
            .replace("{groups}", &groups)
            .replace("{tools}", &tools.join("\n"))
    }
}

/// Runs the MCP server on stdin/stdout until the client goes away.
pub async fn run() -> Result<(), String> {
    let dir = ConfigDir::from_env();
    let config = dir.load().map_err(|e| e.to_string())?;
    let only = std::env::var("CLAUDEMESH_MESH")
        .ok()
        .filter(|m| !m.is_empty());
    let meshes: Vec<_> = config
        .meshes
        .into_iter()
        .filter(|m| {
            only.as_deref()
                .is_none_or(|o| m.slug == o || m.mesh_id == o)
        })
        .collect();
    let session = Session::load_or_create(&dir).map_err(|e| e.to_string())?;
    let hub = Hub::start(session, meshes);
    let server = MeshTools::new(hub)
        .serve(rmcp::transport::stdio())
        .await
        .map_err(|e| format!("MCP handshake failed: {e}"))?;
    let _ = server.waiting().await;
    Ok(())
}
