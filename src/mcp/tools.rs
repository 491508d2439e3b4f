//! The MCP tools. Each one is a thin layer over `MeshClient`; every result ends with how many
//! messages are waiting, because many MCP clients never show notifications.

use std::sync::Arc;
use std::time::Instant;

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, ContentBlock};
use rmcp::{schemars, tool, tool_router};
use serde::Deserialize;

use super::hub::Hub;
use crate::client::{MeshClient, Target};

/// One mesh's client and the targets a `send_message` names in it (as typed, resolved).
type MeshTargets = (String, Arc<MeshClient>, Vec<(String, Target)>);
use crate::protocol::ClientMessage;
use crate::protocol::messages::GroupRef;

/// One recipient or several.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct SendMessageArgs {
    /// Recipient(s): a peer's display name, a pubkey or unique hex prefix (8+), `@group`
    /// (reaches subgroups too), `@all` or `*`. With several meshes joined, prefix with
    /// `<mesh-slug>:`. A list sends to each, once per distinct recipient.
    pub to: OneOrMany,
    /// The message text.
    pub message: String,
    /// `now` interrupts (blocking issues only), `next` (default) arrives when the recipient is
    /// idle, `low` waits until it checks its messages.
    #[serde(default)]
    pub priority: Option<String>,
}

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
pub struct MessageIdArgs {
    /// The message id (or a unique prefix of 8+ characters).
    pub id: String,
    /// Mesh slug, when several meshes are joined.
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

#[derive(Clone)]
pub struct MeshTools {
    pub hub: Arc<Hub>,
    pub tool_router: ToolRouter<MeshTools>,
}

pub(super) fn ok(hub: &Hub, text: String) -> CallToolResult {
    CallToolResult::success(vec![ContentBlock::text(with_footer(hub, text))])
}

pub(super) fn fail(hub: &Hub, text: String) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(with_footer(hub, text))])
}

fn with_footer(hub: &Hub, text: String) -> String {
    match hub.waiting() {
        0 => text,
        1 => format!("{text}\n\n[1 message waiting: call check_messages]"),
        n => format!("{text}\n\n[{n} messages waiting: call check_messages]"),
    }
}

impl MeshTools {
    pub fn new(hub: Arc<Hub>) -> Self {
        MeshTools {
            hub,
            tool_router: Self::tool_router() + Self::data_router(),
        }
    }

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

#[tool_router(vis = "pub")]
impl MeshTools {
    #[tool(
        description = "Send a message to peers: by name, pubkey, @group, @all or *. Returns one line per recipient with the message id."
    )]
    async fn send_message(&self, Parameters(args): Parameters<SendMessageArgs>) -> CallToolResult {
        let priority = args.priority.unwrap_or_else(|| "next".into());
        if !matches!(priority.as_str(), "now" | "next" | "low") {
            return fail(&self.hub, "priority must be now, next or low".into());
        }
        let targets = match args.to {
            OneOrMany::One(t) => vec![t],
            OneOrMany::Many(v) => v,
        };
        let mut lines = Vec::new();
        let mut failed = false;
        // Resolved first and sent per mesh in one go, so each recipient gets one copy
        // (`alice,@backend`: see MeshClient::send_each).
        let mut per_mesh: Vec<MeshTargets> = Vec::new();
        for raw in targets
            .iter()
            .flat_map(|t| t.split(','))
            .map(str::trim)
            .filter(|t| !t.is_empty())
        {
            let (mesh, to) = self.hub.split_target(raw);
            let resolved = async {
                let (link, client) = self.hub.link(mesh)?;
                let resolved = client
                    .resolve_targets(to)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok::<_, String>((link.entry.slug.clone(), client, resolved))
            }
            .await;
            let (slug, client, resolved) = match resolved {
                Ok(r) => r,
                Err(e) => {
                    failed = true;
                    lines.push(format!("{raw}: {e}"));
                    continue;
                }
            };
            let at = match per_mesh.iter().position(|(s, _, _)| *s == slug) {
                Some(at) => at,
                None => {
                    per_mesh.push((slug, client, Vec::new()));
                    per_mesh.len() - 1
                }
            };
            let list = &mut per_mesh[at].2;
            for t in resolved {
                if !list.iter().any(|(_, known)| known.spec == t.spec) {
                    list.push((raw.to_string(), t));
                }
            }
        }
        for (_, client, list) in per_mesh {
            let just: Vec<Target> = list.iter().map(|(_, t)| t.clone()).collect();
            match client.send_each(&just, &args.message, &priority).await {
                Ok(acks) => {
                    for ((raw, _), ack) in list.iter().zip(acks) {
                        match ack.error {
                            Some(e) => {
                                failed = true;
                                lines.push(format!("{raw}: not sent: {e}"));
                            }
                            None => lines.push(format!(
                                "{raw}: sent ({})",
                                ack.message_id.unwrap_or_default()
                            )),
                        }
                    }
                }
                Err(e) => {
                    failed = true;
                    let raws: Vec<&str> = list.iter().map(|(r, _)| r.as_str()).collect();
                    lines.push(format!("{}: {e}", raws.join(",")));
                }
            }
        }
        if lines.is_empty() {
            return fail(&self.hub, "no recipient given".into());
        }
        if failed {
            fail(&self.hub, lines.join("\n"))
        } else {
            ok(&self.hub, lines.join("\n"))
        }
    }

    #[tool(
        description = "List peers in the mesh: name, status (idle/working/dnd), summary, groups, and whether they are online."
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
                        out.push(format!(
                            "- {}{} [{}{}] {}{} (id {})",
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

    #[tool(
        description = "Return every message waiting for you (including low-priority ones and any held while you were busy), oldest first."
    )]
    async fn check_messages(&self) -> CallToolResult {
        let taken = self.hub.check_messages().await;
        if taken.is_empty() {
            return ok(&self.hub, "No new messages.".into());
        }
        let lines: Vec<String> = taken
            .iter()
            .map(|w| {
                let p = &w.message.push;
                let from = p
                    .sender_name
                    .clone()
                    .unwrap_or_else(|| p.sender_pubkey.clone());
                let text = w
                    .message
                    .text
                    .clone()
                    .unwrap_or_else(|e| format!("(unreadable: {e})"));
                let kind = p
                    .subtype
                    .as_deref()
                    .map(|s| format!(" [{s}]"))
                    .unwrap_or_default();
                let to = match p.target_spec.as_deref() {
                    Some(t) if t.starts_with('@') || t == "*" => format!(" to {t}"),
                    _ => String::new(),
                };
                format!(
                    "[{}] {from}{to} ({}, {}{kind}, id {}): {text}",
                    w.mesh, p.priority, p.created_at, p.message_id
                )
            })
            .collect();
        ok(&self.hub, lines.join("\n"))
    }

    #[tool(
        description = "Show whether a message you sent was delivered, per recipient: delivered, held (recipient busy) or disconnected."
    )]
    async fn message_status(&self, Parameters(args): Parameters<MessageIdArgs>) -> CallToolResult {
        let client = match self.hub.link(args.mesh.as_deref()) {
            Ok((_, c)) => c,
            Err(e) => return fail(&self.hub, e),
        };
        match client.message_status(&args.id).await {
            Ok(s) => {
                let mut lines = vec![format!(
                    "Message {} → {}: {}",
                    s.message_id,
                    s.target_spec,
                    if s.delivered {
                        "delivered"
                    } else {
                        "not yet delivered to everyone"
                    }
                )];
                for r in s.recipients {
                    lines.push(format!("- {}: {}", r.name, r.status));
                }
                ok(&self.hub, lines.join("\n"))
            }
            Err(e) => fail(&self.hub, e.to_string()),
        }
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
