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
    /// Owner or admin revokes an invite by code or by id; later claims get 410 `revoked`.
    RevokeInvite {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        code: Option<String>,
        #[serde(rename = "inviteId", default, skip_serializing_if = "Option::is_none")]
        invite_id: Option<String>,
    },
    /// Owner or admin lists the mesh's invites (this broker's addition).
    ListInvites {},
    /// Proof that this client holds the mesh root key, sent when `hello_ack.rootKeyHeld` says
    /// the broker still keeps a copy from before it stopped holding root keys: the check value
    /// `HMAC-SHA256(root_key, "claudemesh-root-key-check")` in hex. A match deletes the copy.
    RootKeyProof {
        check: String,
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
        /// Paging (PROTOCOL.md "Pages"): where the previous page stopped, and the most
        /// entries wanted in this one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cursor: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<usize>,
    },
    SetStatus {
        status: String,
        /// This broker's addition: `jsonl` when inferred from a session transcript; `manual`
        /// (the default) otherwise. Hooks report over HTTP.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        source: Option<String>,
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
    /// This broker's addition: a short-lived token for one `POST /upload` (PROTOCOL.md §7, §8).
    FileToken(FileTokenRequest),
    GetFile(FileRef),
    ListFiles(ListFiles),
    FileStatus(FileRef),
    DeleteFile(FileRef),
    GrantFileAccess(GrantFileAccess),
    // Shared data (PROTOCOL.md §6).
    SetState(SetState),
    GetState {
        key: String,
    },
    ListState {
        /// Paging (PROTOCOL.md "Pages"): where the previous page stopped, and the most
        /// entries wanted in this one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cursor: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<usize>,
    },
    Remember(Remember),
    Recall(Recall),
    Forget {
        #[serde(rename = "memoryId")]
        memory_id: String,
    },
    ShareContext(ShareContext),
    GetContext {
        query: String,
    },
    ListContexts {
        /// Paging (PROTOCOL.md "Pages"): where the previous page stopped, and the most
        /// entries wanted in this one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cursor: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<usize>,
    },
    CreateTask(CreateTask),
    ClaimTask {
        #[serde(rename = "taskId")]
        task_id: String,
    },
    CompleteTask {
        #[serde(rename = "taskId")]
        task_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        result: Option<String>,
    },
    /// This broker's addition: gives a claimed task back (claimed → open).
    ReleaseTask {
        #[serde(rename = "taskId")]
        task_id: String,
    },
    ListTasks {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        status: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        assignee: Option<String>,
        /// Paging (PROTOCOL.md "Pages"): where the previous page stopped, and the most
        /// entries wanted in this one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cursor: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<usize>,
    },
    CreateStream {
        name: String,
    },
    Subscribe {
        stream: String,
    },
    Unsubscribe {
        stream: String,
    },
    ListStreams {},
    Publish {
        stream: String,
        #[serde(default)]
        data: serde_json::Value,
    },
    Schedule(Box<Schedule>),
    ListScheduled {},
    CancelScheduled {
        #[serde(rename = "scheduledId")]
        scheduled_id: String,
    },
    MeshInfo {},
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
    /// This broker: target specs (keys, `@group`, `*`) whose recipients a group or broadcast
    /// `targetSpec` leaves out, because another send of the same message reached them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<String>,
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
            ClientMessage::ListInvites {} => "list_invites",
            ClientMessage::RootKeyProof { .. } => "root_key_proof",
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
            ClientMessage::FileToken(_) => "file_token",
            ClientMessage::GetFile(_) => "get_file",
            ClientMessage::ListFiles(_) => "list_files",
            ClientMessage::FileStatus(_) => "file_status",
            ClientMessage::DeleteFile(_) => "delete_file",
            ClientMessage::GrantFileAccess(_) => "grant_file_access",
            ClientMessage::SetState(_) => "set_state",
            ClientMessage::GetState { .. } => "get_state",
            ClientMessage::ListState { .. } => "list_state",
            ClientMessage::Remember(_) => "remember",
            ClientMessage::Recall(_) => "recall",
            ClientMessage::Forget { .. } => "forget",
            ClientMessage::ShareContext(_) => "share_context",
            ClientMessage::GetContext { .. } => "get_context",
            ClientMessage::ListContexts { .. } => "list_contexts",
            ClientMessage::CreateTask(_) => "create_task",
            ClientMessage::ClaimTask { .. } => "claim_task",
            ClientMessage::CompleteTask { .. } => "complete_task",
            ClientMessage::ReleaseTask { .. } => "release_task",
            ClientMessage::ListTasks { .. } => "list_tasks",
            ClientMessage::CreateStream { .. } => "create_stream",
            ClientMessage::Subscribe { .. } => "subscribe",
            ClientMessage::Unsubscribe { .. } => "unsubscribe",
            ClientMessage::ListStreams {} => "list_streams",
            ClientMessage::Publish { .. } => "publish",
            ClientMessage::Schedule(_) => "schedule",
            ClientMessage::ListScheduled {} => "list_scheduled",
            ClientMessage::CancelScheduled { .. } => "cancel_scheduled",
            ClientMessage::MeshInfo {} => "mesh_info",
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
    /// True when the broker still keeps this mesh's root key from before it stopped holding
    /// them and this member may prove it holds the same key (`root_key_proof`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub root_key_held: bool,
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
    InviteList {
        invites: Vec<InviteEntry>,
        /// More invites exist than one answer lists (newest and still valid ones come first).
        #[serde(default)]
        truncated: bool,
    },
    Push(Box<Push>),
    PeersList {
        peers: Vec<PeerEntry>,
        /// Where the next page starts; absent on the last page.
        #[serde(
            rename = "nextCursor",
            default,
            skip_serializing_if = "Option::is_none"
        )]
        next_cursor: Option<String>,
    },
    MessageStatusResult(MessageStatusResult),
    /// Answers `drain` after the pushes it made (at most a window of the queue). `more`: the
    /// queue holds entries not pushed yet; they follow as the pushes are acknowledged, and
    /// another `drain` after acknowledging reports again.
    Drained {
        count: usize,
        #[serde(default)]
        more: bool,
    },
    FileTokenResult(FileTokenResult),
    FileUrl(FileUrl),
    FileList {
        files: Vec<FileEntry>,
        /// Where the next page starts; absent on the last page.
        #[serde(
            rename = "nextCursor",
            default,
            skip_serializing_if = "Option::is_none"
        )]
        next_cursor: Option<String>,
    },
    FileStatusResult(FileStatusResult),
    GrantFileAccessOk(GrantFileAccessOk),
    // Shared data (PROTOCOL.md §6).
    StateResult(StateEntry),
    StateChange(StateChange),
    StateList {
        entries: Vec<StateEntry>,
        /// Where the next page starts; absent on the last page.
        #[serde(
            rename = "nextCursor",
            default,
            skip_serializing_if = "Option::is_none"
        )]
        next_cursor: Option<String>,
    },
    MemoryStored {
        id: String,
    },
    MemoryResults {
        memories: Vec<MemoryEntry>,
        /// Where the next page starts; absent on the last page.
        #[serde(
            rename = "nextCursor",
            default,
            skip_serializing_if = "Option::is_none"
        )]
        next_cursor: Option<String>,
    },
    ContextShared {
        id: String,
    },
    ContextResults {
        contexts: Vec<ContextEntry>,
    },
    ContextList {
        contexts: Vec<ContextEntry>,
        /// Where the next page starts; absent on the last page.
        #[serde(
            rename = "nextCursor",
            default,
            skip_serializing_if = "Option::is_none"
        )]
        next_cursor: Option<String>,
    },
    TaskCreated {
        id: String,
    },
    TaskList {
        tasks: Vec<TaskEntry>,
        /// Where the next page starts; absent on the last page.
        #[serde(
            rename = "nextCursor",
            default,
            skip_serializing_if = "Option::is_none"
        )]
        next_cursor: Option<String>,
    },
    StreamCreated {
        id: String,
        name: String,
    },
    Subscribed {
        stream: String,
    },
    StreamList {
        streams: Vec<StreamEntry>,
    },
    StreamData(StreamData),
    ScheduledAck(ScheduledAck),
    ScheduledList {
        messages: Vec<ScheduledEntry>,
    },
    CancelScheduledAck {
        #[serde(rename = "scheduledId")]
        scheduled_id: String,
        ok: bool,
    },
    MeshInfoResult(Box<MeshInfo>),
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
    /// `delivered` (pushed to one of its connections, or acknowledged), `held` or
    /// `disconnected`.
    pub status: String,
    /// This broker: the recipient acknowledged it (`client_ack`).
    #[serde(default)]
    pub acknowledged: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageStatusResult {
    pub message_id: String,
    pub target_spec: String,
    pub delivered: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered_at: Option<String>,
    /// This broker: every recipient acknowledged it.
    #[serde(default)]
    pub acknowledged: bool,
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

// --- Files (PROTOCOL.md §7) ---

/// `file_token{purpose:"upload"}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FileTokenRequest {
    pub purpose: String,
}

/// A request about one file: `get_file`, `file_status`, `delete_file`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileRef {
    pub file_id: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ListFiles {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GrantFileAccess {
    pub file_id: String,
    pub peer_pubkey: String,
    /// The file key sealed to `peer_pubkey`, standard base64.
    pub sealed_key: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileTokenResult {
    pub token: String,
    pub expires_at: String,
    /// Where to `POST` the file (`Authorization: Bearer <token>`).
    pub url: String,
    /// The broker's upload limit.
    pub max_bytes: u64,
}

/// Answers `get_file`: a one-use download URL, and the file key sealed to the asker if the
/// file is encrypted.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileUrl {
    pub file_id: String,
    pub url: String,
    pub name: String,
    #[serde(default)]
    pub size: u64,
    #[serde(default)]
    pub encrypted: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed_key: Option<String>,
}

/// One entry of `file_list`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileEntry {
    pub id: String,
    pub name: String,
    pub size: u64,
    #[serde(default)]
    pub tags: Vec<String>,
    pub uploaded_by: String,
    pub uploaded_at: String,
    pub persistent: bool,
    #[serde(default)]
    pub encrypted: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileAccessEntry {
    pub peer_name: String,
    pub accessed_at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileStatusResult {
    pub file_id: String,
    pub accesses: Vec<FileAccessEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GrantFileAccessOk {
    pub file_id: String,
    pub peer_pubkey: String,
}

// ---------------------------------------------------------------------------------------------
// Shared data (PROTOCOL.md §6): state, memory, contexts, tasks, streams, reminders, mesh_info.
// ---------------------------------------------------------------------------------------------

/// `set_state`: any JSON value; `null` deletes the key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SetState {
    pub key: String,
    #[serde(default)]
    pub value: serde_json::Value,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Remember {
    pub content: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Recall {
    pub query: String,
    /// This broker's addition: most results wanted in this page (default 20, at most 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
    /// Where the previous page of the same query stopped (its `nextCursor`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

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

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CreateTask {
    pub title: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignee: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
}

/// A point in time as clients give it: milliseconds since the epoch or ISO-8601.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum When {
    Ms(i64),
    Fractional(f64),
    Iso(String),
}

impl When {
    /// Milliseconds since the epoch, or `None` for text that is not ISO-8601.
    pub fn to_ms(&self) -> Option<i64> {
        match self {
            When::Ms(ms) => Some(*ms),
            When::Fractional(f) if f.is_finite() => Some(*f as i64),
            When::Fractional(_) => None,
            When::Iso(s) => s
                .trim()
                .parse::<i64>()
                .ok()
                .or_else(|| super::time::parse_iso(s.trim())),
        }
    }
}

/// `schedule`: a one-shot (`deliverAt`) or recurring (`cron`, 5 fields, UTC) message.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Schedule {
    /// Target spec; empty means the scheduling member itself.
    #[serde(default)]
    pub to: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deliver_at: Option<When>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subtype: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
    /// The original's flag; implied by `cron`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recurring: Option<bool>,
    /// This broker's addition: with a nonce (standard base64, 24 bytes) `message` is ciphertext
    /// (standard base64) sealed like a `send` body to `to`, and is delivered as such.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    /// With `nonce`: `2` for a group or broadcast reminder (secretbox under the root key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_version: Option<u32>,
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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MemoryEntry {
    pub id: String,
    pub content: String,
    #[serde(default)]
    pub tags: Vec<String>,
    pub remembered_by: String,
    pub remembered_at: String,
    #[serde(default)]
    pub score: f32,
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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskEntry {
    pub id: String,
    pub title: String,
    pub assignee: Option<String>,
    pub claimed_by: Option<String>,
    /// `open`, `claimed` or `done`.
    pub status: String,
    pub priority: String,
    pub created_by: String,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
    pub created_at: String,
}

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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScheduledAck {
    pub scheduled_id: String,
    /// When it fires (next), ms since the epoch.
    pub deliver_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScheduledEntry {
    pub id: String,
    pub to: String,
    pub message: String,
    /// When it fires (next), ms since the epoch.
    pub deliver_at: i64,
    pub created_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fired_count: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subtype: Option<String>,
    /// Set when `message` is ciphertext (see [`Schedule::nonce`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_version: Option<u32>,
}

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
}
