//! The audit log (PROTOCOL.md §12.5): `audit_query` and `audit_verify`, readable by the owner
//! and admins.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `audit_query`: a page of the log, newest first.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditQuery {
    /// Most entries (default 100, at most 500).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
    /// Matching entries to skip, newest first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<usize>,
    /// Only this event type (`member.joined`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_type: Option<String>,
    /// This broker's addition: only entries at or after this ISO-8601 time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
}

/// One record of the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry {
    /// The record's seq in its mesh's chain (from 1).
    pub id: u64,
    pub event_type: String,
    /// The actor's display name at the time (`broker` for the broker itself).
    pub actor: String,
    /// The actor's member id (empty for the broker).
    #[serde(default)]
    pub actor_member_id: String,
    /// Metadata only: ids, keys, names, sizes, roles (all values are strings).
    #[serde(default)]
    pub payload: BTreeMap<String, String>,
    /// 64 hex.
    pub hash: String,
    /// 64 hex: the previous record's hash (64 zeros for id 1).
    #[serde(default)]
    pub prev_hash: String,
    /// ISO-8601 with milliseconds (exactly the time the hash covers).
    pub created_at: String,
}

/// `audit_result`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditResult {
    pub entries: Vec<AuditEntry>,
    /// Entries matching the filter in all.
    pub total: u64,
}

/// `audit_verify_result`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditVerifyResult {
    pub valid: bool,
    /// Records that verified (when broken: those before `brokenAt`).
    pub entries: u64,
    /// This broker's addition: the seq the chain starts at (1 unless the oldest records were
    /// dropped at the per-mesh cap).
    #[serde(default)]
    pub first_id: u64,
    /// The seq of the first broken record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broken_at: Option<u64>,
    /// This broker's addition: the broken record's event type, when it can be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broken_event: Option<String>,
    /// This broker's addition: `hash_mismatch`, `broken_link`, `missing` or `unreadable`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// This broker's addition: the chain's last hash, to note down elsewhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_hash: Option<String>,
}
