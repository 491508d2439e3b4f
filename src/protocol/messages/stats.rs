//! Stats (issue 13, PROTOCOL.md §12.6): what the broker counts per connection, and what a
//! client reports about itself with the original's `set_stats`.

use serde::{Deserialize, Serialize};

/// Counted by the broker on one connection.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerStats {
    /// Messages pushed to it (system events not counted).
    pub messages_in: u64,
    /// Messages it sent that were stored.
    pub messages_out: u64,
    /// Refusals it was sent (error frames, refused sends).
    pub errors: u64,
    /// Seconds since it connected.
    pub uptime: u64,
}

/// `set_stats{stats}` as the original client sends it; every field optional.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReportedStats {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messages_in: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messages_out: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uptime: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errors: Option<u64>,
}

/// One connection in `mesh_stats_result`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MeshStatsEntry {
    pub pubkey: String,
    pub member_pubkey: String,
    pub display_name: String,
    #[serde(default)]
    pub session_id: String,
    pub peer_role: String,
    pub stats: PeerStats,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reported: Option<ReportedStats>,
}
