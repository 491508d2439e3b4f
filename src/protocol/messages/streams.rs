//! Streams (PROTOCOL.md §6): stream entries and `stream_data` pushes.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StreamEntry {
    pub id: String,
    pub name: String,
    pub created_by: String,
    pub created_at: String,
    /// Live subscribers right now.
    pub subscriber_count: usize,
}

/// Pushed to a stream's live subscribers for every `publish`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StreamData {
    pub stream: String,
    pub data: serde_json::Value,
    pub published_by: String,
}
