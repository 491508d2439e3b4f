//! MCP tools for messages: send_message, check_messages, message_status.

use std::sync::Arc;

use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::CallToolResult;
use rmcp::{schemars, tool, tool_router};
use serde::Deserialize;

use super::{MeshTools, fail, ok};
use crate::client::{MeshClient, Target};

/// One mesh's client and the targets a `send_message` names in it (as typed, resolved).
type MeshTargets = (String, Arc<MeshClient>, Vec<(String, Target)>);

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
pub struct MessageIdArgs {
    /// The message id (or a unique prefix of 8+ characters).
    pub id: String,
    /// Mesh slug, when several meshes are joined.
    #[serde(default)]
    pub mesh: Option<String>,
}

#[tool_router(router = messaging_router, vis = "pub")]
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
}
