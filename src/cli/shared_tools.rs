//! Peer-hosted MCP tools (README "Shared MCP tools"): `mcp-share` hosts a local stdio MCP
//! server for the mesh; `tools list|call|remove` use the mesh's registered servers.

use std::sync::Arc;
use std::time::Duration;

use argh::{ArgsInfo, FromArgs};
use serde_json::{Value, json};

use super::output::outln;
use super::{CliError, CliResult, cli_peer, print_json, select_mesh, with_client};
use crate::client::shared_tools::{Hosted, StdioServer, keep_registered};
use crate::client::{ConnectOptions, Link, MeshClient};
use crate::identity::ConfigDir;
use crate::protocol::ServerMessage;
use crate::protocol::messages::{McpRegister, McpServerEntry, reports_error};

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "mcp-share", help_triggers("-h", "--help"))]
#[argh(
    example = "claudemesh mcp-share --name fs -- npx -y @modelcontextprotocol/server-filesystem ."
)]
/// host a local stdio MCP server for the mesh until Ctrl-C: other members call its tools
pub struct McpShareCmd {
    /// the name it is registered under (default: the server's own serverInfo.name)
    #[argh(option)]
    name: Option<String>,
    /// what it is for, shown by `tools list`
    #[argh(option)]
    description: Option<String>,
    /// keep the registration (shown offline) after this command stops or the broker restarts
    #[argh(switch)]
    persistent: bool,
    /// mesh slug or id (needed when several are joined)
    #[argh(option)]
    mesh: Option<String>,
    /// the server's command and arguments, after `--`
    #[argh(positional, greedy)]
    command: Vec<String>,
}

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "tools", help_triggers("-h", "--help"))]
#[argh(example = "claudemesh tools call fs read_file '{{\"path\":\"README.md\"}}'")]
/// the mesh's shared MCP tools: list, call, remove
pub struct ToolsCmd {
    #[argh(subcommand)]
    action: ToolsAction,
}

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand)]
enum ToolsAction {
    List(ToolsListCmd),
    Call(ToolsCallCmd),
    Remove(ToolsRemoveCmd),
}

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "list", help_triggers("-h", "--help"))]
#[argh(example = "claudemesh tools list")]
/// the registered MCP servers with their tools, hosts and whether they are online
struct ToolsListCmd {
    /// mesh slug or id (needed when several are joined)
    #[argh(option)]
    mesh: Option<String>,
    /// print JSON: {servers: [...]}
    #[argh(switch)]
    json: bool,
}

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "call", help_triggers("-h", "--help"))]
#[argh(example = "claudemesh tools call fs read_file '{{\"path\":\"README.md\"}}'")]
/// call a tool of a registered MCP server; prints its text (the whole result with --json)
struct ToolsCallCmd {
    /// the server's registered name
    #[argh(positional)]
    server: String,
    /// the tool's name
    #[argh(positional)]
    tool: String,
    /// the arguments, a JSON object (default {})
    #[argh(positional)]
    args: Option<String>,
    /// seconds to wait for the host (default 30, at most 120)
    #[argh(option)]
    timeout: Option<u64>,
    /// mesh slug or id (needed when several are joined)
    #[argh(option)]
    mesh: Option<String>,
    /// print the tool's whole result (MCP CallToolResult) as JSON
    #[argh(switch)]
    json: bool,
}

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "remove", help_triggers("-h", "--help"))]
#[argh(example = "claudemesh tools remove fs")]
/// unregister an MCP server: its host, the owner or an admin
struct ToolsRemoveCmd {
    /// the server's registered name
    #[argh(positional)]
    server: String,
    /// mesh slug or id (needed when several are joined)
    #[argh(option)]
    mesh: Option<String>,
}

/// The text blocks of an MCP `CallToolResult`, joined; whether it reported an error.
fn result_text(result: &Value) -> (String, bool) {
    let text = result["content"]
        .as_array()
        .map(|blocks| {
            blocks
                .iter()
                .filter_map(|b| b["text"].as_str())
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default();
    let text = if text.is_empty() && !result["structuredContent"].is_null() {
        result["structuredContent"].to_string()
    } else {
        text
    };
    (text, reports_error(result))
}

fn print_servers(servers: &[McpServerEntry]) {
    for s in servers {
        let state = if s.online { "online" } else { "offline" };
        let kept = if s.persistent { ", persistent" } else { "" };
        outln!("{}  hosted by {} ({state}{kept})", s.name, s.hosted_by);
        if !s.description.is_empty() {
            outln!("  {}", s.description);
        }
        for t in &s.tools {
            outln!("  - {}: {}", t.name, t.description);
        }
    }
}

impl ToolsCmd {
    pub async fn run(self) -> CliResult {
        match self.action {
            ToolsAction::List(c) => {
                let servers = with_client(c.mesh.as_deref(), async |client: &MeshClient| {
                    Ok(client.mcp_list().await?)
                })
                .await?;
                if c.json {
                    print_json(&json!({ "servers": servers }));
                } else if servers.is_empty() {
                    outln!(
                        "no MCP servers are shared in this mesh (claudemesh mcp-share adds one)"
                    );
                } else {
                    print_servers(&servers);
                }
            }
            ToolsAction::Call(c) => {
                let args: Value = match c.args.as_deref() {
                    None => json!({}),
                    Some(text) => serde_json::from_str(text).map_err(|e| {
                        CliError::Usage(format!("the arguments must be a JSON object: {e}"))
                    })?,
                };
                if !args.is_object() {
                    return Err(CliError::Usage(
                        "the arguments must be a JSON object, like '{\"path\":\"a.txt\"}'".into(),
                    ));
                }
                let timeout = c.timeout.map(|s| Duration::from_secs(s.clamp(1, 120)));
                let result = with_client(c.mesh.as_deref(), async |client: &MeshClient| {
                    Ok(client.tool_call(&c.server, &c.tool, args, timeout).await?)
                })
                .await?;
                let (text, is_error) = result_text(&result);
                if c.json {
                    print_json(&result);
                } else if !is_error {
                    super::output::lines(&text);
                }
                if is_error {
                    return Err(CliError::failed(format!(
                        "{} {} reported an error: {text}",
                        c.server, c.tool
                    )));
                }
            }
            ToolsAction::Remove(c) => {
                with_client(c.mesh.as_deref(), async |client: &MeshClient| {
                    Ok(client.mcp_remove(&c.server).await?)
                })
                .await?;
                outln!("removed MCP server {}", c.server);
            }
        }
        Ok(())
    }
}

impl McpShareCmd {
    pub async fn run(self) -> CliResult {
        if self.command.is_empty() {
            return Err(CliError::Usage(
                "give the MCP server's command after `--`, like: claudemesh mcp-share -- python3 server.py".into(),
            ));
        }
        let entry = select_mesh(self.mesh.as_deref())?;
        let server = Arc::new(
            StdioServer::start(&self.command)
                .await
                .map_err(CliError::Failed)?,
        );
        let name = match self.name.clone() {
            Some(n) => n,
            None if server.server_name.is_empty() => {
                return Err(CliError::Usage(
                    "the MCP server gave no serverInfo.name; give one with --name".into(),
                ));
            }
            None => server.server_name.clone(),
        };
        let options = ConnectOptions {
            config_dir: Some(ConfigDir::from_env()),
            reconnect: true,
            ..ConnectOptions::new(entry.clone(), cli_peer(&entry))
        };
        let client = Arc::new(MeshClient::connect(options).await?);
        let registration = McpRegister {
            server_name: name.clone(),
            description: self.description.clone().unwrap_or_default(),
            tools: server.tools.clone(),
            persistent: self.persistent,
        };
        let hosted = Arc::new(Hosted::default());
        hosted.add(&name, server.clone());
        let again_name = name.clone();
        let count = keep_registered(
            client.clone(),
            registration,
            || true,
            move |again| match again {
                Ok(_) => outln!("reconnected; \"{again_name}\" is shared again"),
                Err(e) => outln!("reconnected, but cannot register \"{again_name}\" again: {e}"),
            },
        )
        .await?;
        outln!(
            "sharing MCP server \"{name}\" ({count} tools) on mesh {}; Ctrl-C stops",
            entry.slug
        );
        let mut link = client.link();
        let ctrl_c = tokio::signal::ctrl_c();
        tokio::pin!(ctrl_c);
        let mut watch_child = tokio::time::interval(Duration::from_secs(1));
        let ended: CliResult = loop {
            tokio::select! {
                _ = &mut ctrl_c => break Ok(()),
                _ = watch_child.tick() => if server.is_closed() {
                    break Err(CliError::failed(format!("the MCP server \"{name}\" exited")));
                },
                changed = link.changed() => {
                    if changed.is_err() {
                        break Err(CliError::failed("the connection to the broker ended"));
                    }
                    // keep_registered registers again after each reconnect.
                    if let Link::Down(reason) = link.borrow().clone() {
                        break Err(CliError::failed(format!("the broker ended this connection: {reason}")));
                    }
                }
                frame = client.next_push() => match frame {
                    Some(ServerMessage::McpCallForward(forward)) => {
                        let (client, hosted) = (client.clone(), hosted.clone());
                        tokio::spawn(async move {
                            let s = hosted.answer(&client, *forward).await;
                            // Metadata only: never arguments or results.
                            let how = if s.ok { "ok" } else { "error" };
                            outln!("call from {}: {} {} → {how}", s.caller_name, s.server_name, s.tool_name);
                        });
                    }
                    Some(_) => {}
                    None => break Err(CliError::failed("the connection to the broker ended")),
                },
            }
        };
        if !self.persistent {
            let _ = client.mcp_remove(&name).await;
        }
        if let Ok(client) = Arc::try_unwrap(client) {
            client.close().await;
        }
        hosted.remove(&name);
        if let Ok(server) = Arc::try_unwrap(server) {
            server.stop().await;
        }
        ended
    }
}
