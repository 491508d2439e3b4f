//! Mesh info (PROTOCOL.md §6): `mesh_info_result`, the mesh at a glance.

use super::hello::GroupRef;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskCountsEntry {
    pub open: u64,
    pub claimed: u64,
    pub done: u64,
}

/// `mesh_info_result`: the mesh at a glance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MeshInfo {
    /// The mesh's name.
    pub mesh: String,
    #[serde(default)]
    pub mesh_id: String,
    #[serde(default)]
    pub slug: String,
    /// Live peers (sessions; not short-lived tool connections).
    pub peers: usize,
    /// Group names in use, sorted.
    pub groups: Vec<String>,
    pub state_keys: Vec<String>,
    pub memory_count: u64,
    pub file_count: u64,
    pub tasks: TaskCountsEntry,
    /// Stream names.
    pub streams: Vec<String>,
    pub your_name: String,
    pub your_groups: Vec<GroupRef>,
    /// `sealed` or `plain` (PROTOCOL.md §4.2; this broker).
    #[serde(default)]
    pub group_bodies: String,
    /// The mesh's SQL tables and views (PROTOCOL.md §18), by name.
    #[serde(default)]
    pub tables: Vec<String>,
    /// The mesh's vector collections (PROTOCOL.md §20), by name.
    #[serde(default)]
    pub collections: Vec<String>,
}
