//! MCP tools for peers and presence: peer list, summary, status, visibility, groups, ping.

use std::sync::Arc;
use std::time::Instant;

use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::CallToolResult;
use rmcp::{schemars, tool, tool_router};
use serde::Deserialize;

use super::{MeshTools, fail, ok};
use crate::protocol::ClientMessage;
use crate::protocol::messages::GroupRef;

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct ListPeersArgs {
    /// Only peers in this group (and its subgroups).
    #[serde(default)]
    pub group: Option<String>,
    /// Mesh slug, when several meshes are joined (default: all of them).
    #[serde(default)]
    pub mesh: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct SummaryArgs {
    /// One or two sentences on what you are working on.
    pub summary: String,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct StatusArgs {
    /// `idle`, `working` or `dnd` (do not disturb: only `now` messages get through).
    pub status: String,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct VisibleArgs {
    /// false hides you from peer lists (you can still be messaged).
    pub visible: bool,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct GroupArgs {
    /// Group name; subgroups with `/`, e.g. `backend/api`.
    pub name: String,
    /// Your role in the group, e.g. `lead` (join only).
    #[serde(default)]
    pub role: Option<String>,
    /// Mesh slug, when several meshes are joined (default: all of them).
    #[serde(default)]
    pub mesh: Option<String>,
}

impl MeshTools {
    /// The meshes a request without a target applies to.
    fn meshes(
        &self,
        slug: Option<&str>,
    ) -> Vec<(String, Result<Arc<crate::client::MeshClient>, String>)> {
        self.hub
            .links
            .iter()
            .filter(|l| slug.is_none_or(|s| l.entry.slug == s))
            .map(|l| {
                let r = self.hub.link(Some(&l.entry.slug)).map(|(_, c)| c);
                (l.entry.slug.clone(), r)
            })
            .collect()
    }

    /// Runs `body` on every mesh in scope and reports per mesh.
    async fn on_each(&self, slug: Option<&str>, body: ClientMessage, done: &str) -> CallToolResult {
        let mut lines = Vec::new();
        let mut failed = false;
        for (mesh, client) in self.meshes(slug) {
            let r = match client {
                Ok(c) => c.request_ack(body.clone()).await.map_err(|e| e.to_string()),
                Err(e) => Err(e),
            };
            match r {
                Ok(()) => lines.push(format!("{mesh}: {done}")),
                Err(e) => {
                    failed = true;
                    lines.push(format!("{mesh}: {e}"));
                }
            }
        }
        if lines.is_empty() {
            return fail(&self.hub, "no mesh matches".into());
        }
        if failed {
            fail(&self.hub, lines.join("\n"))
        } else {
            ok(&self.hub, lines.join("\n"))
        }
    }
}

#[tool_router(router = peers_router, vis = "pub")]
impl MeshTools {
    #[tool(
        description = "List peers in the mesh: name, status (idle/working/dnd), summary, groups, profile (role tag, title, capabilities), and whether they are online."
    )]
    async fn list_peers(&self, Parameters(args): Parameters<ListPeersArgs>) -> CallToolResult {
        let mut out = Vec::new();
        for (mesh, client) in self.meshes(args.mesh.as_deref()) {
            let client = match client {
                Ok(c) => c,
                Err(e) => {
                    out.push(format!("{mesh}: {e}"));
                    continue;
                }
            };
            match client.list_peers(args.group.clone()).await {
                Ok(peers) => {
                    out.push(format!("mesh {mesh}:"));
                    let me = client
                        .speaking_keys()
                        .map(|k| k.public_hex())
                        .unwrap_or_default();
                    for p in peers.iter().filter(|p| p.peer_role != "control-plane") {
                        let groups: Vec<String> =
                            p.groups.iter().map(|g| format!("@{}", g.name)).collect();
                        let profile = p
                            .profile
                            .as_ref()
                            .map(|p| p.describe())
                            .filter(|d| !d.is_empty())
                            .map(|d| format!(" [{d}]"))
                            .unwrap_or_default();
                        out.push(format!(
                            "- {}{} [{}{}] {}{}{profile} (id {})",
                            p.display_name,
                            if p.pubkey == me { " (you)" } else { "" },
                            p.status,
                            if p.online { "" } else { ", away" },
                            if groups.is_empty() {
                                String::new()
                            } else {
                                format!("{} ", groups.join(" "))
                            },
                            p.summary
                                .as_deref()
                                .map(|s| format!("— {s}"))
                                .unwrap_or_default(),
                            &p.pubkey[..16.min(p.pubkey.len())],
                        ));
                    }
                }
                Err(e) => out.push(format!("{mesh}: {e}")),
            }
        }
        ok(&self.hub, out.join("\n"))
    }

    #[tool(description = "Tell peers what you are working on (shown in their peer lists).")]
    async fn set_summary(&self, Parameters(args): Parameters<SummaryArgs>) -> CallToolResult {
        self.on_each(
            None,
            ClientMessage::SetSummary {
                summary: args.summary,
            },
            "summary set",
        )
        .await
    }

    #[tool(
        description = "Set your status: idle, working or dnd. Busy statuses hold back all but `now` messages."
    )]
    async fn set_status(&self, Parameters(args): Parameters<StatusArgs>) -> CallToolResult {
        if !matches!(args.status.as_str(), "idle" | "working" | "dnd") {
            return fail(&self.hub, "status must be idle, working or dnd".into());
        }
        let done = format!("status {}", args.status);
        self.on_each(
            None,
            ClientMessage::SetStatus {
                status: args.status,
                source: None,
            },
            &done,
        )
        .await
    }

    #[tool(
        description = "Show or hide yourself in peer lists (hidden peers can still be messaged)."
    )]
    async fn set_visible(&self, Parameters(args): Parameters<VisibleArgs>) -> CallToolResult {
        let done = if args.visible { "visible" } else { "hidden" };
        self.on_each(
            None,
            ClientMessage::SetVisible {
                visible: args.visible,
            },
            done,
        )
        .await
    }

    #[tool(description = "Join a group (messages to @group reach you; subgroups with /).")]
    async fn join_group(&self, Parameters(args): Parameters<GroupArgs>) -> CallToolResult {
        let name = args.name.trim_start_matches('@').to_string();
        let done = format!("joined @{name}");
        self.on_each(
            args.mesh.as_deref(),
            ClientMessage::JoinGroup(GroupRef {
                name,
                role: args.role,
            }),
            &done,
        )
        .await
    }

    #[tool(description = "Leave a group.")]
    async fn leave_group(&self, Parameters(args): Parameters<GroupArgs>) -> CallToolResult {
        let name = args.name.trim_start_matches('@').to_string();
        let done = format!("left @{name}");
        self.on_each(
            args.mesh.as_deref(),
            ClientMessage::LeaveGroup { name },
            &done,
        )
        .await
    }

    #[tool(
        description = "Check the connection to each mesh: who you are there, round-trip time, peers online."
    )]
    async fn ping_mesh(&self) -> CallToolResult {
        let mut lines = Vec::new();
        for link in &self.hub.links {
            let slug = &link.entry.slug;
            match link.client() {
                None => lines.push(format!(
                    "{slug}: not connected ({})",
                    link.problem().unwrap_or_default()
                )),
                Some(client) => {
                    let started = Instant::now();
                    match client.list_peers(None).await {
                        Ok(peers) => {
                            let ack = client.hello_ack();
                            let online = peers
                                .iter()
                                .filter(|p| p.online && p.peer_role != "control-plane")
                                .count();
                            lines.push(format!(
                                "{slug}: connected to {} as {} ({} ms, {online} peer(s) online)",
                                link.entry.broker_url,
                                ack.member_display_name,
                                started.elapsed().as_millis()
                            ));
                        }
                        Err(e) => lines.push(format!("{slug}: {e}")),
                    }
                }
            }
        }
        ok(&self.hub, lines.join("\n"))
    }
}
