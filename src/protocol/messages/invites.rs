//! Invites (PROTOCOL.md §9): signed capabilities, `create_invite` and the invite list.

use serde::{Deserialize, Serialize};

/// A signed invite capability: the canonical string and its signature (PROTOCOL.md §9).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capability {
    pub canonical: String,
    pub signature: String,
}

/// Registers an invite signed on the inviter's machine (this broker's extension), by the owner
/// key or by an admin's own member key. Only the v3 form is accepted.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateInvite {
    pub invite_id: String,
    pub code: String,
    pub role: String,
    pub max_uses: u32,
    /// Unix seconds, as in the canonical string.
    pub expires_at: i64,
    /// Who signed: the owner key or the registering admin's member key (64 hex).
    #[serde(default)]
    pub signer_pubkey: String,
    /// Over `canonical::invite_v3`. Optional on the wire only so that an old client's v2-only
    /// frame gets a clear `bad_signature` instead of `malformed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capability_v3: Option<Capability>,
}

/// One invite in `invite_list` (owner and admins only).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InviteEntry {
    pub code: String,
    pub invite_id: String,
    pub role: String,
    pub max_uses: u32,
    pub used: u32,
    pub uses_left: u32,
    /// Unix seconds.
    pub expires_at: i64,
    /// Member id of who registered it, and that member's name.
    pub created_by: String,
    pub created_by_name: String,
    /// ISO-8601.
    pub created_at: String,
    pub revoked: bool,
    /// `valid`, `revoked`, `expired` or `exhausted`.
    pub status: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InviteCreated {
    pub code: String,
    pub url: String,
    pub invite_id: String,
    /// Unix seconds.
    pub expires_at: i64,
    pub role: String,
    pub max_uses: u32,
}
