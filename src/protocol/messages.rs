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
    Send(Box<SendMessage>),
    ClientAck(ClientAck),
    /// This broker's addition: push everything queued for this connection now, whatever its
    /// status (what `check_messages` / `inbox` need), then answer `drained`.
    Drain {},
    MessageStatus {
        #[serde(rename = "messageId")]
        message_id: String,
    },
    ListPeers {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        group: Option<String>,
    },
    SetStatus {
        status: String,
    },
    SetSummary {
        summary: String,
    },
    SetVisible {
        visible: bool,
    },
    SetProfile(Profile),
    JoinGroup(GroupRef),
    LeaveGroup {
        name: String,
    },
}

/// `send` (PROTOCOL.md §4.1).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SendMessage {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub target_spec: String,
    #[serde(default = "default_priority")]
    pub priority: String,
    #[serde(default)]
    pub nonce: String,
    pub ciphertext: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_version: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mentions: Option<Vec<String>>,
    #[serde(
        rename = "client_message_id",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub client_message_id: Option<String>,
    #[serde(
        rename = "request_fingerprint",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub request_fingerprint: Option<String>,
}

fn default_priority() -> String {
    "next".into()
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientAck {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broker_message_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_message_id: Option<String>,
}

/// What a peer tells about itself beyond its name (`set_profile`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub avatar: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bio: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<Vec<String>>,
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
            ClientMessage::Send(_) => "send",
            ClientMessage::ClientAck(_) => "client_ack",
            ClientMessage::Drain {} => "drain",
            ClientMessage::MessageStatus { .. } => "message_status",
            ClientMessage::ListPeers { .. } => "list_peers",
            ClientMessage::SetStatus { .. } => "set_status",
            ClientMessage::SetSummary { .. } => "set_summary",
            ClientMessage::SetVisible { .. } => "set_visible",
            ClientMessage::SetProfile(_) => "set_profile",
            ClientMessage::JoinGroup(_) => "join_group",
            ClientMessage::LeaveGroup { .. } => "leave_group",
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
    MembersList {
        members: Vec<MemberEntry>,
    },
    InviteCreated(InviteCreated),
    Push(Box<Push>),
    PeersList {
        peers: Vec<PeerEntry>,
    },
    MessageStatusResult(MessageStatusResult),
    /// Answers `drain` after every queued push for the connection.
    Drained {
        count: usize,
    },
}

/// `push` (PROTOCOL.md §4.3): a message, a reminder or a system event.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Push {
    pub message_id: String,
    pub mesh_id: String,
    pub sender_pubkey: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender_member_pubkey: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender_member_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to_id: Option<String>,
    pub priority: String,
    pub nonce: String,
    pub ciphertext: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_version: Option<u32>,
    pub created_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_spec: Option<String>,
    #[serde(
        rename = "client_message_id",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub client_message_id: Option<String>,
    #[serde(
        rename = "request_fingerprint",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub request_fingerprint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subtype: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_data: Option<serde_json::Value>,
}

/// One entry of `peers_list` (PROTOCOL.md §5).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerEntry {
    pub pubkey: String,
    pub member_pubkey: String,
    pub display_name: String,
    pub status: String,
    #[serde(default)]
    pub summary: Option<String>,
    #[serde(default)]
    pub groups: Vec<GroupRef>,
    #[serde(default)]
    pub session_id: String,
    #[serde(default)]
    pub connected_at: String,
    #[serde(default)]
    pub cwd: String,
    pub peer_role: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visible: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<Profile>,
    pub online: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecipientStatus {
    pub name: String,
    pub pubkey: String,
    /// `delivered`, `held` or `disconnected`.
    pub status: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageStatusResult {
    pub message_id: String,
    pub target_spec: String,
    pub delivered: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered_at: Option<String>,
    pub recipients: Vec<RecipientStatus>,
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
