//! Every frame of the wire contract, as serde types. Field names are the original claudemesh's
//! (camelCase unless noted) so its clients interoperate with this broker.

use serde::{Deserialize, Serialize};

/// A frame with the optional `_reqId` correlation field around its body.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Envelope<T> {
    #[serde(rename = "_reqId", default, skip_serializing_if = "Option::is_none")]
    pub req_id: Option<String>,
    #[serde(flatten)]
    pub body: T,
}

impl<T> Envelope<T> {
    pub fn new(body: T) -> Self {
        Envelope { req_id: None, body }
    }
    pub fn reply(req_id: Option<String>, body: T) -> Self {
        Envelope { req_id, body }
    }
}

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

/// The owner-signed v2 capability of an invite (PROTOCOL.md §9).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapabilityV2 {
    pub canonical: String,
    pub signature: String,
}

/// Registers an invite that the owner signed locally (this broker's extension).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateInvite {
    pub invite_id: String,
    pub code: String,
    pub role: String,
    pub max_uses: u32,
    /// Unix seconds, as in the canonical string.
    pub expires_at: i64,
    pub capability_v2: CapabilityV2,
}

/// Frames a client sends to the broker.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMessage {
    Hello(Hello),
    SessionHello(SessionHello),
    CreateInvite(CreateInvite),
    ListMembers {},
    /// Owner or admin revokes a member by id or pubkey; its sockets close with 4002.
    RevokeMember {
        member: String,
    },
    /// Owner or admin revokes an invite by code; later claims get 410 `revoked`.
    RevokeInvite {
        code: String,
    },
}

impl ClientMessage {
    pub fn type_name(&self) -> &'static str {
        match self {
            ClientMessage::Hello(_) => "hello",
            ClientMessage::SessionHello(_) => "session_hello",
            ClientMessage::CreateInvite(_) => "create_invite",
            ClientMessage::ListMembers {} => "list_members",
            ClientMessage::RevokeMember { .. } => "revoke_member",
            ClientMessage::RevokeInvite { .. } => "revoke_invite",
        }
    }
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
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorFrame {
    pub code: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MemberEntry {
    pub member_id: String,
    pub pubkey: String,
    pub display_name: String,
    pub role: String,
    pub joined_at: String,
    pub online: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen_at: Option<String>,
    #[serde(default)]
    pub groups: Vec<GroupRef>,
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

/// A generic acknowledgement. `send` fills `id`/`messageId`/`queued`; other requests use `ok`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Ack {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queued: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ok: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Frames the broker sends to a client.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    HelloAck(Box<HelloAck>),
    Error(ErrorFrame),
    Ack(Ack),
    MembersList { members: Vec<MemberEntry> },
    InviteCreated(InviteCreated),
}

impl ServerMessage {
    pub fn error(code: &str, message: impl Into<String>) -> Self {
        ServerMessage::Error(ErrorFrame {
            code: code.to_string(),
            message: message.into(),
            id: None,
        })
    }
}
