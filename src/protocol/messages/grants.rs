//! Per-peer grants and blocks (issue 13, PROTOCOL.md §12.3): what another member may do
//! towards me. `block`, `unblock`, `set_grants`, `list_grants` → `grants`.

use serde::{Deserialize, Serialize};

/// `set_grants{peer, grant?, revoke?}`: rights given back and taken away (`message`, `files`,
/// `tools`); what neither names stays as it was.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SetGrants {
    /// A member id or a member or session pubkey (64 hex).
    pub peer: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoke: Option<Vec<String>>,
}

/// One peer's entry in `grants`: what it may do towards the member asking.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GrantEntry {
    pub member_id: String,
    pub pubkey: String,
    pub display_name: String,
    pub allowed: Vec<String>,
    pub blocked: bool,
}
