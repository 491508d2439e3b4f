//! Mesh members (PROTOCOL.md §9): `members_list` entries.

use super::hello::GroupRef;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MemberEntry {
    pub member_id: String,
    pub pubkey: String,
    pub display_name: String,
    pub role: String,
    pub joined_at: String,
    pub online: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen_at: Option<String>,
    #[serde(default)]
    pub groups: Vec<GroupRef>,
}

/// One ban in a `bans` answer (PROTOCOL.md §12.2). Times are ISO 8601.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BanEntry {
    pub member_id: String,
    pub pubkey: String,
    pub display_name: String,
    pub reason: String,
    /// The member id of who banned.
    pub banned_by: String,
    pub banned_at: String,
}
