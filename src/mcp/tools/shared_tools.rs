//! MCP tools for peer-hosted MCP servers (issue 15 tier 1): `mesh_mcp_register` (this
//! session starts a local stdio MCP server and hosts it for the mesh), `mesh_mcp_list`,
//! `mesh_tool_call`, `mesh_mcp_remove`.

use std::sync::Arc;
use std::time::Duration;

use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::CallToolResult;
use rmcp::{schemars, tool, tool_router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{MeshArg, MeshTools, fail, json_text, ok};
use crate::client::shared_tools::{StdioServer, keep_registered};
use crate::protocol::messages::{McpRegister, reports_error};

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct RegisterArgs {
    /// The local stdio MCP server's command and its arguments, e.g. ["npx", "-y", "@modelcontextprotocol/server-filesystem", "."].
    pub command: Vec<String>,
    /// The name to register it under (default: the server's own serverInfo.name).
    #[serde(default)]
    pub server_name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    /// Keep the registration (shown offline) when this session ends or the broker restarts.
    #[serde(default)]
    pub persistent: bool,
    #[serde(default)]
    pub mesh: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct ToolCallArgs {
    /// The registered server's name (see mesh_mcp_list).
    pub server_name: String,
    pub tool_name: String,
    /// The tool's arguments, a JSON object.
    #[serde(default)]
    pub args: Option<Value>,
    /// Seconds to wait for the host (default 30, at most 120).
    #[serde(default)]
    pub timeout_seconds: Option<u64>,
    #[serde(default)]
    pub mesh: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct ServerNameArgs {
    pub server_name: String,
    #[serde(default)]
    pub mesh: Option<String>,
}

#[tool_router(router = shared_tools_router, vis = "pub")]
impl MeshTools {
    #[tool(
        description = "Share a local stdio MCP server with the mesh: this session starts it, reads its tools and answers the mesh's calls to them for as long as it runs. Other peers call them with mesh_tool_call."
    )]
    async fn mesh_mcp_register(&self, Parameters(a): Parameters<RegisterArgs>) -> CallToolResult {
        let client = match self.client_for(a.mesh.as_deref()) {
            Ok(c) => c,
            Err(e) => return fail(&self.hub, e),
        };
        let server = match StdioServer::start(&a.command).await {
            Ok(s) => Arc::new(s),
            Err(e) => return fail(&self.hub, e),
        };
        let name = match a
            .server_name
            .or_else(|| Some(server.server_name.clone()).filter(|n| !n.is_empty()))
        {
            Some(n) => n,
            None => {
                return fail(
                    &self.hub,
                    "the MCP server gave no serverInfo.name; give server_name".into(),
                );
            }
        };
        let registration = McpRegister {
            server_name: name.clone(),
            description: a.description.unwrap_or_default(),
            tools: server.tools.clone(),
            persistent: a.persistent,
        };
        // Hosted before the broker hears of it, so no forwarded call finds it missing.
        let replaced = self.hub.hosted.add(&name, server.clone());
        let (hosted, kept, shown) = (self.hub.hosted.clone(), server.clone(), name.clone());
        let kept_registered = keep_registered(
            client,
            registration,
            move || hosted.hosts(&shown, &kept),
            |again| {
                if let Err(e) = again {
                    eprintln!(
                        "claudemesh: cannot register a shared MCP server again after reconnecting: {e}"
                    );
                }
            },
        );
        match kept_registered.await {
            Ok(count) => {
                if let Some(old) = replaced.and_then(|o| Arc::try_unwrap(o).ok()) {
                    old.stop().await;
                }
                ok(
                    &self.hub,
                    format!("sharing MCP server \"{name}\" with the mesh ({count} tools)"),
                )
            }
            Err(e) => {
                self.hub.hosted.remove(&name);
                if let Ok(s) = Arc::try_unwrap(server) {
                    s.stop().await;
                }
                fail(&self.hub, e.to_string())
            }
        }
    }

    #[tool(
        description = "List the MCP servers peers share in the mesh, with their tools (and input schemas), host and whether the host is online."
    )]
    async fn mesh_mcp_list(&self, Parameters(a): Parameters<MeshArg>) -> CallToolResult {
        self.with_client(a.mesh.as_deref(), |c| async move {
            let servers = c.mcp_list().await.map_err(|e| e.to_string())?;
            if servers.is_empty() {
                return Ok("no MCP servers are shared in this mesh".to_string());
            }
            Ok(json_text(&json!({ "servers": servers })))
        })
        .await
    }

    #[tool(
        description = "Call a tool of an MCP server a peer shares in the mesh (see mesh_mcp_list). The call goes to the hosting peer through the broker, sealed end to end; 30 s timeout by default."
    )]
    async fn mesh_tool_call(&self, Parameters(a): Parameters<ToolCallArgs>) -> CallToolResult {
        self.with_client(a.mesh.as_deref(), |c| async move {
            let args = a.args.unwrap_or_else(|| json!({}));
            if !args.is_object() {
                return Err("args must be a JSON object".to_string());
            }
            let timeout = a
                .timeout_seconds
                .map(|s| Duration::from_secs(s.clamp(1, 120)));
            let result = c
                .tool_call(&a.server_name, &a.tool_name, args, timeout)
                .await
                .map_err(|e| e.to_string())?;
            let text: Vec<&str> = result["content"]
                .as_array()
                .map(|b| b.iter().filter_map(|b| b["text"].as_str()).collect())
                .unwrap_or_default();
            let body = if text.is_empty() {
                json_text(&result)
            } else {
                text.join("\n")
            };
            if reports_error(&result) {
                return Err(format!(
                    "{} {} reported an error: {body}",
                    a.server_name, a.tool_name
                ));
            }
            Ok(body)
        })
        .await
    }

    #[tool(
        description = "Unregister a shared MCP server (its host, the owner or an admin); stops hosting it if this session hosts it."
    )]
    async fn mesh_mcp_remove(&self, Parameters(a): Parameters<ServerNameArgs>) -> CallToolResult {
        let hosted = self.hub.hosted.clone();
        self.with_client(a.mesh.as_deref(), |c| async move {
            c.mcp_remove(&a.server_name)
                .await
                .map_err(|e| e.to_string())?;
            if let Some(s) = hosted
                .remove(&a.server_name)
                .and_then(|s| Arc::try_unwrap(s).ok())
            {
                s.stop().await;
            }
            Ok(format!("removed MCP server {}", a.server_name))
        })
        .await
    }
}
