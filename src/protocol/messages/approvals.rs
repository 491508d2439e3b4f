//! Remote approval of agents' tool use (issue 18, PROTOCOL.md §25): who may answer a member's
//! permission prompts (`set_approvers`, `get_approvers` → `approvers`), the sealed prompts
//! themselves (`request_approval`, `list_approvals`, `answer_approval`) and the pushes that
//! announce them (`approval_event` to approvers, `approval_decided` to the asking session).
//! The broker sees ids, members and times; the tool name, description and input preview are
//! sealed to each approver's member key.

use serde::{Deserialize, Serialize};

/// How long a request waits for an answer unless it asks otherwise (seconds).
pub const DEFAULT_APPROVAL_TTL_SECS: u64 = 600;
pub const MIN_APPROVAL_TTL_SECS: u64 = 10;
pub const MAX_APPROVAL_TTL_SECS: u64 = 3600;
/// Most entries one member's approver list holds.
pub const MAX_APPROVERS: usize = 32;
/// Most base64 characters of one sealed copy (the prompt is a short preview).
pub const MAX_APPROVAL_CIPHERTEXT: usize = 16 * 1024;
/// Longest `requestId` (Claude Code's are five letters).
pub const MAX_REQUEST_ID_CHARS: usize = 64;

/// One member who may answer, as the approver list resolves now.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApproverEntry {
    pub member_id: String,
    pub display_name: String,
    /// The member key the prompt is sealed to (64 hex).
    pub pubkey: String,
    /// The list entry that names it: its member id, or `@group`.
    pub via: String,
}

/// A prompt sealed to one approver: crypto_box from the asking key to the approver's member
/// key, over the JSON `{requestId, toolName, description, inputPreview}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SealedApproval {
    pub member_id: String,
    pub nonce: String,
    pub ciphertext: String,
}

/// `request_approval`: one permission prompt, one sealed copy per approver.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestApproval {
    /// Claude Code's `request_id`, sent back with the decision.
    pub request_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_secs: Option<u64>,
    pub copies: Vec<SealedApproval>,
}

/// One request as an approver sees it: its own sealed copy and where the request stands.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalEntry {
    /// The broker's id, the one `approve ID` takes.
    pub id: String,
    pub request_id: String,
    pub requester_member_id: String,
    pub requester_name: String,
    /// The key that sealed the copy (the asking session's).
    pub requester_pubkey: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub nonce: String,
    pub ciphertext: String,
    /// `pending`, `allow`, `deny` or `expired`.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
}

/// A decision: the answer to `answer_approval`, and the push to the asking session.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalDecision {
    pub id: String,
    pub request_id: String,
    /// `allow` or `deny`.
    pub behavior: String,
    pub decided_by: String,
    pub decided_by_member_id: String,
}
