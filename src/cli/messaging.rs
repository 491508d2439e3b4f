//! Messaging and presence: peers, send, inbox, msg-status, status, summary, group.

use std::time::Duration;

use argh::{ArgsInfo, FromArgs};
use serde_json::json;

use super::output::{self, outln};
use super::{CliError, CliResult, connect, print_json, select_mesh};
use crate::client::{Incoming, MeshClient};
use crate::protocol::messages::{GroupRef, PeerEntry};
use crate::protocol::{ClientMessage, ServerMessage};

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "peers", help_triggers("-h", "--help"))]
#[argh(example = "claudemesh peers --group backend")]
/// list who is here, one line per member: id, online, live sessions, status, groups, summary
pub struct PeersCmd {
    /// mesh slug or id (needed when several are joined)
    #[argh(option)]
    mesh: Option<String>,
    /// only peers in this group
    #[argh(option)]
    group: Option<String>,
    /// print JSON
    #[argh(switch)]
    json: bool,
}

impl PeersCmd {
    pub async fn run(self) -> CliResult {
        let entry = select_mesh(self.mesh.as_deref())?;
        let client = connect(&entry).await?;
        let peers = client.list_peers(self.group).await;
        client.close().await;
        let peers: Vec<_> = peers?
            .into_iter()
            .filter(|p| p.peer_role != "control-plane")
            .collect();
        let members = by_member(&peers);
        if self.json {
            let grouped: Vec<_> = members
                .iter()
                .map(|m| {
                    json!({
                        "memberPubkey": m.pubkey,
                        "displayName": m.name,
                        "online": !m.sessions.is_empty(),
                        "sessions": m.sessions.iter().map(|s| &s.pubkey).collect::<Vec<_>>(),
                    })
                })
                .collect();
            print_json(&json!({ "peers": peers, "members": grouped }));
            return Ok(());
        }
        if members.is_empty() {
            outln!("no peers online in {}", entry.slug);
            return Ok(());
        }
        outln!(
            "{:<20} {:<9} {:<7} {:<9} {:<8} {:<24} SUMMARY",
            "NAME",
            "ID",
            "ONLINE",
            "SESSIONS",
            "STATUS",
            "GROUPS"
        );
        for m in &members {
            let live = &m.sessions;
            // The member's line speaks for its live sessions (or, with none, its last one).
            let shown: Vec<&PeerEntry> = if live.is_empty() {
                m.all.iter().take(1).copied().collect()
            } else {
                live.clone()
            };
            let mut statuses: Vec<&str> = shown.iter().map(|p| p.status.as_str()).collect();
            statuses.sort();
            statuses.dedup();
            let mut groups: Vec<String> = shown
                .iter()
                .flat_map(|p| p.groups.iter().map(group_label))
                .collect();
            groups.sort();
            groups.dedup();
            let summary = shown.iter().find_map(|p| p.summary.clone());
            outln!(
                "{:<20} {:<9} {:<7} {:<9} {:<8} {:<24} {}",
                m.name,
                m.pubkey.get(..8).unwrap_or(""),
                if live.is_empty() { "no" } else { "yes" },
                live.len(),
                statuses.join(","),
                groups.join(","),
                summary.unwrap_or_default()
            );
            if let Some(profile) = shown.iter().find_map(|p| p.profile.as_ref()) {
                let line = profile.describe();
                if !line.is_empty() {
                    outln!("  {line}");
                }
            }
            if live.len() > 1 {
                for s in live {
                    outln!(
                        "  session {:<9} {:<8} {}",
                        s.pubkey.get(..8).unwrap_or(""),
                        s.status,
                        s.summary.clone().unwrap_or_default()
                    );
                }
            }
        }
        Ok(())
    }
}

/// One member in `peers`: its presences in the list, and which of them are live sessions.
struct MemberPeers<'a> {
    pubkey: &'a str,
    name: &'a str,
    all: Vec<&'a PeerEntry>,
    sessions: Vec<&'a PeerEntry>,
}

/// Groups the broker's per-presence list by member, in the list's order (by name). A
/// member is online when one of its sessions is connected: what `members` counts too.
fn by_member(peers: &[PeerEntry]) -> Vec<MemberPeers<'_>> {
    let mut out: Vec<MemberPeers<'_>> = Vec::new();
    for p in peers {
        let at = match out.iter().position(|m| m.pubkey == p.member_pubkey) {
            Some(at) => at,
            None => {
                out.push(MemberPeers {
                    pubkey: &p.member_pubkey,
                    name: &p.display_name,
                    all: Vec::new(),
                    sessions: Vec::new(),
                });
                out.len() - 1
            }
        };
        out[at].all.push(p);
        if p.online {
            out[at].sessions.push(p);
        }
    }
    out
}

fn group_label(g: &GroupRef) -> String {
    match &g.role {
        Some(r) => format!("@{}:{r}", g.name),
        None => format!("@{}", g.name),
    }
}

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "send", help_triggers("-h", "--help"))]
#[argh(example = "claudemesh send bob can you review my branch?")]
#[argh(example = "claudemesh send team:alice,@backend --priority now deploy is starting")]
/// send a message: to a name, pubkey (or 8+ hex prefix), @group, @all or *; comma-separate several
pub struct SendCmd {
    /// recipients; `mesh:name` picks the mesh too (e.g. team:bob)
    #[argh(positional)]
    to: String,
    /// the message: the rest of the words (no quotes needed)
    #[argh(positional)]
    message: Vec<String>,
    /// now (interrupts), next (default: when idle) or low (on the next check)
    #[argh(option, default = "String::from(\"next\")")]
    priority: String,
    /// mesh slug or id (needed when several are joined)
    #[argh(option)]
    mesh: Option<String>,
    /// print JSON
    #[argh(switch)]
    json: bool,
}

impl SendCmd {
    pub async fn run(self) -> CliResult {
        if !matches!(self.priority.as_str(), "now" | "next" | "low") {
            return Err(CliError::Usage(
                "--priority must be now, next or low".into(),
            ));
        }
        let message = super::words("message", &self.message)?;
        let (mesh, to) = super::target::unqualify(&self.to, self.mesh.as_deref())?;
        let entry = select_mesh(mesh.as_deref())?;
        let client = connect(&entry).await?;
        let result = send_all(&client, &to, &message, &self.priority).await;
        client.close().await;
        let results = result?;
        let failed = results.iter().filter(|r| r["queued"] != true).count();
        if self.json {
            print_json(&json!({ "results": results }));
        } else {
            for r in &results {
                match r["error"].as_str() {
                    Some(e) => output::error(&format!(
                        "not sent to {}: {e}",
                        r["to"].as_str().unwrap_or("")
                    )),
                    None => outln!(
                        "sent to {} ({})",
                        r["to"].as_str().unwrap_or(""),
                        r["messageId"].as_str().unwrap_or("")
                    ),
                }
            }
        }
        if failed > 0 {
            return Err(CliError::failed(format!(
                "{failed} of {} recipient(s) did not get the message",
                results.len()
            )));
        }
        Ok(())
    }
}

async fn send_all(
    client: &MeshClient,
    to: &str,
    text: &str,
    priority: &str,
) -> Result<Vec<serde_json::Value>, CliError> {
    let targets = client.resolve_targets(to).await?;
    let acks = client.send_each(&targets, text, priority).await?;
    let mut results = Vec::new();
    for (t, ack) in targets.into_iter().zip(acks) {
        let mut r = json!({
            "to": t.label,
            "messageId": ack.message_id.unwrap_or_default(),
            "queued": ack.queued.unwrap_or(false),
        });
        if let Some(e) = ack.error {
            r["error"] = json!(e);
        }
        results.push(r);
    }
    Ok(results)
}

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "inbox", help_triggers("-h", "--help"))]
#[argh(example = "claudemesh inbox --wait 60 --json")]
/// print (and acknowledge) messages waiting for you; --wait waits for one
pub struct InboxCmd {
    /// wait up to SECONDS (default: forever) for a message when none is waiting
    #[argh(option)]
    wait: Option<String>,
    /// print at most N messages (the rest stay queued)
    #[argh(option)]
    limit: Option<usize>,
    /// mesh slug or id (needed when several are joined)
    #[argh(option)]
    mesh: Option<String>,
    /// print JSON, one object per message per line
    #[argh(switch)]
    json: bool,
}

/// `--wait` alone means forever; argh needs a value, so `--wait 0` or `--wait forever` do too.
fn parse_wait(v: &str) -> Result<Option<Duration>, CliError> {
    match v {
        "" | "0" | "forever" => Ok(None),
        s => s
            .parse::<u64>()
            .map(|n| Some(Duration::from_secs(n)))
            .or_else(|_| crate::protocol::time::parse_duration(s).map(Some))
            .map_err(|_| CliError::Usage(format!("--wait takes seconds, got \"{s}\""))),
    }
}

impl InboxCmd {
    pub async fn run(self) -> CliResult {
        let wait = match &self.wait {
            Some(v) => Some(parse_wait(v)?),
            None => None,
        };
        let limit = self.limit.unwrap_or(usize::MAX);
        if limit == 0 {
            return Err(CliError::Usage("--limit must be at least 1".into()));
        }
        let entry = select_mesh(self.mesh.as_deref())?;
        let client = connect(&entry).await?;
        let result = self.collect(&client, wait, limit).await;
        client.close().await;
        let shown = result?;
        if shown == 0 && !self.json {
            outln!("no messages");
        }
        Ok(())
    }

    async fn collect(
        &self,
        client: &MeshClient,
        wait: Option<Option<Duration>>,
        limit: usize,
    ) -> Result<usize, CliError> {
        // The broker pushes a backlog a window at a time, the next as these are acknowledged:
        // show and acknowledge what came, then drain again until it says nothing more waits.
        let (mut count, mut more) = client.drain_window().await?;
        let mut shown = 0;
        let mut seen = std::collections::HashSet::new();
        let mut idle_rounds = 0u32;
        loop {
            let mut took = 0;
            while shown < limit {
                let Some(msg) = client.try_next_push().await else {
                    break;
                };
                took += 1;
                if self.show(client, msg, &mut seen)? {
                    shown += 1;
                }
            }
            if !more || shown >= limit {
                break;
            }
            if count == 0 && took == 0 {
                // Nothing moved (e.g. the broker is skipping expired entries): do not spin.
                idle_rounds += 1;
                tokio::time::sleep(Duration::from_millis(10 * u64::from(idle_rounds.min(10))))
                    .await;
            } else {
                idle_rounds = 0;
            }
            (count, more) = client.drain_window().await?;
        }
        if shown == 0
            && let Some(wait) = wait
        {
            let deadline = wait.map(|d| tokio::time::Instant::now() + d);
            while shown == 0 {
                let next = match deadline {
                    Some(d) => match tokio::time::timeout_at(d, client.next_push()).await {
                        Ok(m) => m,
                        Err(_) => break,
                    },
                    None => client.next_push().await,
                };
                let Some(msg) = next else {
                    return Err(CliError::failed(match client.removal() {
                        Some(why) => format!("you were disconnected from the mesh: {why}"),
                        None => "the connection to the broker ended".into(),
                    }));
                };
                if self.show(client, msg, &mut seen)? {
                    shown += 1;
                }
            }
            // Others that arrived together with the first one.
            tokio::time::sleep(Duration::from_millis(50)).await;
            while shown < limit {
                let Some(msg) = client.try_next_push().await else {
                    break;
                };
                if self.show(client, msg, &mut seen)? {
                    shown += 1;
                }
            }
        }
        Ok(shown)
    }

    /// Prints one push and acknowledges it; false for what is not a message to show.
    fn show(
        &self,
        client: &MeshClient,
        msg: ServerMessage,
        seen: &mut std::collections::HashSet<String>,
    ) -> Result<bool, CliError> {
        let ServerMessage::Push(push) = msg else {
            return Ok(false);
        };
        // System events and clock ticks are not messages (and need no acknowledgement).
        if matches!(push.subtype.as_deref(), Some("system" | "tick")) {
            return Ok(false);
        }
        if !seen.insert(push.message_id.clone()) {
            // Pushed again (an acknowledgement crossed a redelivery): acknowledge, not print.
            client.ack(&push.message_id)?;
            return Ok(false);
        }
        let Incoming { push, text } = client.open(*push);
        let from = push
            .sender_name
            .clone()
            .unwrap_or_else(|| push.sender_pubkey.clone());
        let text = text.unwrap_or_else(|e| format!("(unreadable: {e})"));
        if self.json {
            let mut line = json!({
                "messageId": push.message_id,
                "from": from,
                "fromPubkey": push.sender_pubkey,
                "to": push.target_spec,
                "priority": push.priority,
                "text": text,
                "createdAt": push.created_at,
            });
            if let Some(s) = &push.subtype {
                line["subtype"] = json!(s);
            }
            output::json_line(&line);
        } else {
            let to = match push.target_spec.as_deref() {
                Some(t) if t.starts_with('@') || t == "*" => format!(" → {t}"),
                _ => String::new(),
            };
            let kind = match push.subtype.as_deref() {
                Some(s) => format!(" [{s}]"),
                None => String::new(),
            };
            output::block(
                &format!(
                    "[{}] {from}{to} ({}){kind}: ",
                    push.created_at, push.priority
                ),
                &text,
            );
        }
        client.ack(&push.message_id)?;
        Ok(true)
    }
}

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "msg-status", help_triggers("-h", "--help"))]
#[argh(example = "claudemesh msg-status 01HZX3QK")]
/// show who a message reached: delivered, held or disconnected per recipient
pub struct MsgStatusCmd {
    /// message id (or a unique prefix of 8+ characters)
    #[argh(positional)]
    id: String,
    /// mesh slug or id (needed when several are joined)
    #[argh(option)]
    mesh: Option<String>,
    /// print JSON
    #[argh(switch)]
    json: bool,
}

impl MsgStatusCmd {
    pub async fn run(self) -> CliResult {
        let entry = select_mesh(self.mesh.as_deref())?;
        let client = connect(&entry).await?;
        let status = client.message_status(&self.id).await;
        client.close().await;
        let status = status?;
        if self.json {
            print_json(&status);
            return Ok(());
        }
        outln!(
            "message {} → {}: {}",
            status.message_id,
            status.target_spec,
            if status.delivered {
                "delivered"
            } else {
                "not yet delivered to everyone"
            }
        );
        for r in status.recipients {
            outln!(
                "  {:<20} {:<13} {}",
                r.name,
                r.status,
                r.pubkey.get(..16).unwrap_or("")
            );
        }
        Ok(())
    }
}

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "status", help_triggers("-h", "--help"))]
#[argh(example = "claudemesh status set dnd")]
#[argh(example = "claudemesh status history --since 1h")]
/// set your status in the mesh (applies to your live sessions), or see everyone's over the last hours
pub struct StatusCmd {
    #[argh(subcommand)]
    action: StatusAction,
}

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand)]
enum StatusAction {
    Set(StatusSetCmd),
    History(StatusHistoryCmd),
}

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "history", help_triggers("-h", "--help"))]
#[argh(example = "claudemesh status history --since 30m")]
/// every session's status changes over the last hours (the broker keeps 6 hours, in memory)
struct StatusHistoryCmd {
    /// only changes since then: a duration back from now (30m, 1h) or an ISO-8601 time
    #[argh(option)]
    since: Option<String>,
    /// mesh slug or id (needed when several are joined)
    #[argh(option)]
    mesh: Option<String>,
    /// print JSON: [{at, atMs, presenceId, name, memberPubkey, status, source}]
    #[argh(switch)]
    json: bool,
}

impl StatusHistoryCmd {
    async fn run(self) -> CliResult {
        let since = self
            .since
            .as_deref()
            .map(super::audit::since_iso)
            .transpose()?;
        let entry = select_mesh(self.mesh.as_deref())?;
        let client = connect(&entry).await?;
        let changes = client.status_history(since).await;
        client.close().await;
        let changes = changes?;
        if self.json {
            print_json(&changes);
            return Ok(());
        }
        if changes.is_empty() {
            outln!("(no status changes in that time)");
        }
        for c in changes {
            outln!("{}  {:<20} {:<8} {}", c.at, c.name, c.status, c.source);
        }
        Ok(())
    }
}

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "set", help_triggers("-h", "--help"))]
#[argh(example = "claudemesh status set working")]
/// idle, working or dnd
struct StatusSetCmd {
    /// idle, working or dnd
    #[argh(positional)]
    status: String,
    /// mesh slug or id (needed when several are joined)
    #[argh(option)]
    mesh: Option<String>,
}

/// Runs one request that answers `ack`, on a fresh connection.
async fn one_ack(mesh: Option<&str>, body: ClientMessage) -> CliResult {
    let entry = select_mesh(mesh)?;
    let client = connect(&entry).await?;
    let result = client.request_ack(body).await;
    client.close().await;
    Ok(result?)
}

impl StatusCmd {
    pub async fn run(self) -> CliResult {
        let cmd = match self.action {
            StatusAction::Set(cmd) => cmd,
            StatusAction::History(cmd) => return cmd.run().await,
        };
        if !matches!(cmd.status.as_str(), "idle" | "working" | "dnd") {
            return Err(CliError::Usage(
                "status must be idle, working or dnd".into(),
            ));
        }
        one_ack(
            cmd.mesh.as_deref(),
            ClientMessage::SetStatus {
                status: cmd.status.clone(),
                source: None,
            },
        )
        .await?;
        outln!("status: {}", cmd.status);
        Ok(())
    }
}

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "summary", help_triggers("-h", "--help"))]
#[argh(example = "claudemesh summary refactoring the auth middleware")]
/// say what you are working on (shown to peers)
pub struct SummaryCmd {
    /// the summary
    #[argh(positional)]
    text: String,
    /// mesh slug or id (needed when several are joined)
    #[argh(option)]
    mesh: Option<String>,
}

impl SummaryCmd {
    pub async fn run(self) -> CliResult {
        one_ack(
            self.mesh.as_deref(),
            ClientMessage::SetSummary {
                summary: self.text.clone(),
            },
        )
        .await?;
        outln!("summary set");
        Ok(())
    }
}

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "group", help_triggers("-h", "--help"))]
#[argh(example = "claudemesh group join backend --role lead")]
/// join or leave a group (kept for your next sessions)
pub struct GroupCmd {
    #[argh(subcommand)]
    action: GroupAction,
}

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand)]
enum GroupAction {
    Join(GroupJoinCmd),
    Leave(GroupLeaveCmd),
}

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "join", help_triggers("-h", "--help"))]
#[argh(example = "claudemesh group join backend/api --role lead")]
/// join a group (subgroups with /, e.g. backend/api)
struct GroupJoinCmd {
    /// group name
    #[argh(positional)]
    name: String,
    /// your role in it (e.g. lead)
    #[argh(option)]
    role: Option<String>,
    /// mesh slug or id (needed when several are joined)
    #[argh(option)]
    mesh: Option<String>,
}

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "leave", help_triggers("-h", "--help"))]
#[argh(example = "claudemesh group leave backend")]
/// leave a group
struct GroupLeaveCmd {
    /// group name
    #[argh(positional)]
    name: String,
    /// mesh slug or id (needed when several are joined)
    #[argh(option)]
    mesh: Option<String>,
}

impl GroupCmd {
    pub async fn run(self) -> CliResult {
        match self.action {
            GroupAction::Join(c) => {
                let name = c.name.trim_start_matches('@').to_string();
                one_ack(
                    c.mesh.as_deref(),
                    ClientMessage::JoinGroup(GroupRef {
                        name: name.clone(),
                        role: c.role,
                    }),
                )
                .await?;
                outln!("joined @{name}");
            }
            GroupAction::Leave(c) => {
                let name = c.name.trim_start_matches('@').to_string();
                one_ack(
                    c.mesh.as_deref(),
                    ClientMessage::LeaveGroup { name: name.clone() },
                )
                .await?;
                outln!("left @{name}");
            }
        }
        Ok(())
    }
}
