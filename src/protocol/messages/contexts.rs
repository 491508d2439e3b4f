//! Contexts (PROTOCOL.md §6): `share_context` and its entries.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShareContext {
    pub summary: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files_read: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_findings: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContextEntry {
    pub id: String,
    pub peer_name: String,
    #[serde(default)]
    pub member_pubkey: String,
    pub summary: String,
    #[serde(default)]
    pub files_read: Vec<String>,
    #[serde(default)]
    pub key_findings: Vec<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    pub updated_at: String,
}
