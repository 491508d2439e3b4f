//! The MCP tools. Each one is a thin layer over `MeshClient`; every result ends with how many
//! messages are waiting, because many MCP clients never show notifications.
//! One file an area (`tools/<area>.rs`); the data tools take an optional `mesh` slug.

mod audit;
mod clock;
mod contexts;
mod files;
mod info;
mod keys;
mod members;
mod memory;
mod messaging;
mod peers;
mod perms;
mod reminders;
mod state;
mod streams;
mod tasks;
// Governance (issue 13).
mod grants;
mod profile;
mod stats;
// Skills (issue 15).
mod skills;
// Peer-hosted MCP tools (issue 15).
mod peer_files;
mod shared_tools;
// Broker-hosted MCP services (issue 15).
mod deployments;
// Vault (issue 15).
mod vault;
// Per-mesh SQL (issue 16).
mod sql;
// Graph (issue 16).
mod graph;
// Vectors (issue 16).
mod vectors;
// URL watches and inbound webhooks (issue 17).
mod watches;
mod webhooks;

use std::sync::Arc;

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::model::{
    CallToolResult, ContentBlock, CustomNotification, GetPromptRequestParams, GetPromptResponse,
    Implementation, ListPromptsResult, ListResourcesResult, PaginatedRequestParams,
    ReadResourceRequestParams, ReadResourceResponse, ServerCapabilities, ServerConfig,
};
use rmcp::service::{NotificationContext, RequestContext, RoleServer};
use rmcp::{ErrorData as McpError, ServerHandler, schemars, tool_handler};
use serde::Deserialize;
use serde_json::Map;

use super::hub::Hub;
use crate::client::MeshClient;

const INSTRUCTIONS: &str = include_str!("../../../data/mcp-instructions.md");

/// The mesh a tool works on, when several are joined.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
pub struct MeshArg {
    /// Mesh slug (needed only when several meshes are joined).
    #[serde(default)]
    pub mesh: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct QueryArgs {
    /// Words to search for (full text, ranked).
    pub query: String,
    #[serde(default)]
    pub mesh: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct IdArgs {
    pub id: String,
    #[serde(default)]
    pub mesh: Option<String>,
}

#[derive(Clone)]
pub struct MeshTools {
    pub hub: Arc<Hub>,
    pub tool_router: ToolRouter<MeshTools>,
}

pub(super) fn ok(hub: &Hub, text: String) -> CallToolResult {
    hub.tool_called();
    CallToolResult::success(vec![ContentBlock::text(with_footer(hub, text))])
}

pub(super) fn fail(hub: &Hub, text: String) -> CallToolResult {
    hub.tool_called();
    CallToolResult::error(vec![ContentBlock::text(with_footer(hub, text))])
}

fn with_footer(hub: &Hub, text: String) -> String {
    match hub.waiting() {
        0 => text,
        1 => format!("{text}\n\n[1 message waiting: call check_messages]"),
        n => format!("{text}\n\n[{n} messages waiting: call check_messages]"),
    }
}

/// The one target spec `to` names (a name, pubkey, `@group` or `*`) for what goes to a single
/// target; `what` says what, in the refusal.
async fn one_target(c: &MeshClient, to: &str, what: &str) -> Result<String, String> {
    match c
        .resolve_targets(to)
        .await
        .map_err(|e| e.to_string())?
        .as_slice()
    {
        [one] => Ok(one.spec.clone()),
        _ => Err(format!("{what} goes to one target")),
    }
}

fn json_text(v: &impl serde::Serialize) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

impl MeshTools {
    pub fn new(hub: Arc<Hub>) -> Self {
        MeshTools {
            hub,
            tool_router: Self::messaging_router()
                + Self::peers_router()
                + Self::state_router()
                + Self::memory_router()
                + Self::tasks_router()
                + Self::contexts_router()
                + Self::streams_router()
                + Self::reminders_router()
                + Self::files_router()
                + Self::info_router()
                + Self::grants_router()
                + Self::stats_router()
                + Self::profile_router()
                + Self::keys_router()
                + Self::audit_router()
                + Self::perms_router()
                + Self::members_router()
                + Self::skills_router()
                + Self::shared_tools_router()
                + Self::peer_files_router()
                + Self::deployments_router()
                + Self::vault_router()
                + Self::sql_router()
                + Self::graph_router()
                + Self::vectors_router()
                + Self::watches_router()
                + Self::webhooks_router()
                + Self::clock_router(),
        }
    }

    fn client_for(&self, mesh: Option<&str>) -> Result<Arc<MeshClient>, String> {
        self.hub.link(mesh).map(|(_, c)| c)
    }

    /// Runs `f` on the mesh's client and turns its outcome into a tool result.
    async fn with_client<T, F, Fut>(&self, mesh: Option<&str>, f: F) -> CallToolResult
    where
        F: FnOnce(Arc<MeshClient>) -> Fut,
        Fut: Future<Output = Result<T, String>>,
        T: Into<String>,
    {
        match self.client_for(mesh) {
            Ok(c) => match f(c).await {
                Ok(text) => ok(&self.hub, text.into()),
                Err(e) => fail(&self.hub, e),
            },
            Err(e) => fail(&self.hub, e),
        }
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for MeshTools {
    fn get_info(&self) -> ServerConfig {
        // Prompts and resources: the mesh's skills (mcp/prompts.rs).
        let mut capabilities = ServerCapabilities::builder()
            .enable_prompts()
            .enable_prompts_list_changed()
            .enable_resources()
            .enable_resources_list_changed()
            .enable_tools()
            .build();
        let mut experimental = std::collections::BTreeMap::new();
        experimental.insert("claude/channel".to_string(), Map::new());
        // Claude Code relays its permission prompts (mcp/approvals.rs).
        experimental.insert(crate::mcp::approvals::CAPABILITY.to_string(), Map::new());
        capabilities.experimental = Some(experimental);
        ServerConfig::new(capabilities)
            .with_server_info(Implementation::new("claudemesh", env!("CARGO_PKG_VERSION")))
            .with_instructions(self.instructions())
    }

    async fn on_initialized(&self, context: NotificationContext<RoleServer>) {
        self.hub.set_notifier(context.peer.clone());
    }

    async fn on_custom_notification(
        &self,
        notification: CustomNotification,
        _context: NotificationContext<RoleServer>,
    ) {
        if notification.method == crate::mcp::approvals::PERMISSION_REQUEST {
            let params = notification.params.unwrap_or_default();
            tokio::spawn(crate::mcp::approvals::forward(self.hub.clone(), params));
        }
    }

    async fn list_prompts(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, McpError> {
        crate::mcp::prompts::list_prompts(&self.hub).await
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, McpError> {
        crate::mcp::prompts::get_prompt(&self.hub, &request.name, request.arguments)
            .await
            .map(Into::into)
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, McpError> {
        crate::mcp::prompts::list_resources(&self.hub).await
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, McpError> {
        crate::mcp::prompts::read_resource(&self.hub, &request.uri)
            .await
            .map(Into::into)
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
