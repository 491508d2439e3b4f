//! Presence and groups (PROTOCOL.md §5): `peers_list` entries and `set_profile`.

use super::hello::GroupRef;
use serde::{Deserialize, Serialize};

/// What a member tells about itself (`set_profile`): the original's avatar, title, bio and
/// capabilities, and (this broker, issue 13) its display name, role tag and message mode. Kept
/// per member across sessions; `set_profile` changes only the fields it carries.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    #[serde(
        rename = "displayName",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub display_name: Option<String>,
    #[serde(rename = "roleTag", default, skip_serializing_if = "Option::is_none")]
    pub role_tag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub avatar: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bio: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<Vec<String>>,
    /// `push` (live, the default), `inbox` (held until drained) or `off` (direct messages
    /// refused, group and broadcast messages skip this member).
    #[serde(
        rename = "messageMode",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub message_mode: Option<String>,
}

impl Profile {
    /// One line for people: `🦀 reviewer Title · bio · can: a, b · messages: inbox`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        let head: Vec<&str> = [
            self.avatar.as_deref(),
            self.role_tag.as_deref(),
            self.title.as_deref(),
        ]
        .into_iter()
        .flatten()
        .collect();
        if !head.is_empty() {
            parts.push(head.join(" "));
        }
        if let Some(bio) = &self.bio {
            parts.push(bio.clone());
        }
        if let Some(c) = self.capabilities.as_ref().filter(|c| !c.is_empty()) {
            parts.push(format!("can: {}", c.join(", ")));
        }
        if let Some(mode) = self.message_mode.as_deref().filter(|m| *m != "push") {
            parts.push(format!("messages: {mode}"));
        }
        parts.join(" · ")
    }
}

/// One entry of `peers_list` (PROTOCOL.md §5).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerEntry {
    pub pubkey: String,
    pub member_pubkey: String,
    pub display_name: String,
    pub status: String,
    /// This broker: where the status came from (`hook`, `manual`, `jsonl`, §5.1) and since
    /// when (ISO-8601).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_since: Option<String>,
    #[serde(default)]
    pub summary: Option<String>,
    #[serde(default)]
    pub groups: Vec<GroupRef>,
    #[serde(default)]
    pub session_id: String,
    #[serde(default)]
    pub connected_at: String,
    #[serde(default)]
    pub cwd: String,
    /// The original's name for `peer_role` (its CLI reads this one).
    #[serde(default)]
    pub role: String,
    pub peer_role: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visible: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<Profile>,
    pub online: bool,
    /// What the broker counted on this connection (issue 13).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats: Option<super::stats::PeerStats>,
    /// What the client last reported with `set_stats` (its own counts, e.g. tool calls).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reported: Option<super::stats::ReportedStats>,
}

/// One line of a `status_history` answer (PROTOCOL.md §5.3): a session's status changed, or
/// it went `offline`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusChange {
    /// ISO 8601.
    pub at: String,
    /// The same instant in Unix milliseconds (for drawing).
    pub at_ms: i64,
    pub presence_id: String,
    /// The session's display name then.
    pub name: String,
    pub member_pubkey: String,
    /// `idle`, `working`, `dnd` or `offline`.
    pub status: String,
    /// `hook`, `manual`, `jsonl`, or `connect` / `ttl` / `disconnect` when the broker set it.
    pub source: String,
}
