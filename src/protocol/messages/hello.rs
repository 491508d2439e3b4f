//! Handshake (PROTOCOL.md §3): member and session hellos, what a peer says about itself, and
//! `hello_ack`.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupRef {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
}

/// Member hello (PROTOCOL.md §3.1). Keys stay strings here: the broker checks their shapes in
/// the order the protocol prescribes, so a bad key yields the right error code.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Hello {
    pub mesh_id: String,
    pub member_id: String,
    pub pubkey: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_pubkey: Option<String>,
    #[serde(flatten)]
    pub peer: PeerInfo,
    pub timestamp: i64,
    pub signature: String,
}

/// What a connecting peer says about itself; shared by both hello kinds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerInfo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(default)]
    pub session_id: String,
    #[serde(default)]
    pub pid: u32,
    #[serde(default)]
    pub cwd: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups: Option<Vec<GroupRef>>,
    /// `control-plane` for short-lived tool connections (CLI commands): they are not listed as
    /// peers, cause no join/leave events, and get pushes only after asking (`drain`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_role: Option<String>,
}

/// The member-signed statement that a session key speaks for it (PROTOCOL.md §3.2).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attestation {
    pub session_pubkey: String,
    pub parent_member_pubkey: String,
    pub expires_at: i64,
    pub signature: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionHello {
    pub mesh_id: String,
    pub parent_member_id: String,
    pub parent_member_pubkey: String,
    pub session_pubkey: String,
    pub parent_attestation: Attestation,
    #[serde(flatten)]
    pub peer: PeerInfo,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    pub timestamp: i64,
    pub signature: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MemberProfile {
    pub role_tag: Option<String>,
    pub groups: Vec<GroupRef>,
    pub message_mode: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MeshPolicy {
    pub self_editable: bool,
    /// How group and broadcast bodies are written in this mesh: `sealed` or `plain`
    /// (PROTOCOL.md §4.2; this broker).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_bodies: Option<String>,
    /// The owner's signature over `group_bodies`; clients write plain group bodies only when
    /// it verifies against the owner key they hold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_bodies_signature: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_bodies_signed_at: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HelloAck {
    pub presence_id: String,
    pub member_display_name: String,
    pub member_profile: MemberProfile,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mesh_policy: Option<MeshPolicy>,
    #[serde(default)]
    pub restored: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_summary: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restored_groups: Option<Vec<GroupRef>>,
    // This broker's additions, so a client knows where it landed.
    #[serde(default)]
    pub member_id: String,
    #[serde(default)]
    pub member_role: String,
    #[serde(default)]
    pub mesh_name: String,
    #[serde(default)]
    pub mesh_slug: String,
    /// True when the broker still keeps this mesh's root key from before it stopped holding
    /// them and this member may prove it holds the same key (`root_key_proof`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub root_key_held: bool,
    /// The mesh's current root-key epoch (PROTOCOL.md §12.4); absent means 0. A client holding
    /// an older one asks for its sealed copies with `get_keys`.
    #[serde(default, skip_serializing_if = "super::is_epoch_zero")]
    pub key_epoch: u64,
}
