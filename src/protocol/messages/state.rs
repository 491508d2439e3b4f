//! The state board (PROTOCOL.md §6): `set_state`, its entries and change pushes.

use serde::{Deserialize, Serialize};

/// `set_state`: any JSON value; `null` deletes the key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SetState {
    pub key: String,
    #[serde(default)]
    pub value: serde_json::Value,
}

/// One key of the state board (`state_result`, `state_list` entries).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StateEntry {
    pub key: String,
    pub value: serde_json::Value,
    #[serde(default)]
    pub updated_by: String,
    #[serde(default)]
    pub updated_at: String,
}

/// Pushed to every other live peer when a key changes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StateChange {
    pub key: String,
    pub value: serde_json::Value,
    pub updated_by: String,
}
