//! Every frame of the wire contract, as serde types. Field names are the original claudemesh's
//! (camelCase unless noted) so its clients interoperate with this broker.

mod audit;
mod contexts;
mod files;
mod hello;
mod info;
mod invites;
mod keys;
mod members;
mod memory;
mod messaging;
mod peers;
mod perms;
mod reminders;
mod settings;
mod state;
mod streams;
mod tasks;
// Governance (issue 13): grants and blocks, stats.
mod grants;
mod stats;
// Skills (issue 15).
mod skills;
// Peer-hosted MCP tools (issue 15).
mod shared_tools;
// Peer files (issue 15).
mod peer_files;
// Broker-hosted MCP services (issue 15 tier 2).
mod deployments;
// Vault (issue 15).
mod vault;
// Per-mesh SQL (issue 16).
mod sql;
// Graph (issue 16).
mod graph;
// Vectors (issue 16).
mod vectors;
// URL watches and inbound webhooks (issue 17).
mod watches;
mod webhooks;
// Simulation clock (issue 17).
mod clock;
// Telegram bridge (issue 17).
mod telegram;
// Remote approval of tool use (issue 18).
mod approvals;

pub use approvals::{
    ApprovalDecision, ApprovalEntry, ApproverEntry, DEFAULT_APPROVAL_TTL_SECS,
    MAX_APPROVAL_CIPHERTEXT, MAX_APPROVAL_TTL_SECS, MAX_APPROVERS, MAX_REQUEST_ID_CHARS,
    MIN_APPROVAL_TTL_SECS, RequestApproval, SealedApproval,
};
pub use audit::{AuditEntry, AuditQuery, AuditResult, AuditVerifyResult};
pub use clock::{ClockStatus, MAX_CLOCK_SPEED, MIN_CLOCK_SPEED};
pub use contexts::{ContextEntry, ShareContext};
pub use deployments::{
    CatalogEntry, DeployConfig, DeploySource, McpDeploy, McpDeployCheck, McpDeployStatus,
    McpUpdate, Scope, ScopeSpec,
};
pub use files::{
    FileAccessEntry, FileEntry, FileRef, FileStatusResult, FileTokenRequest, FileTokenResult,
    FileUrl, GrantFileAccess, GrantFileAccessOk, ListFiles,
};
pub use grants::{GrantEntry, SetGrants};
pub use graph::{GraphRequest, GraphResult, MAX_CYPHER_BYTES};
pub use hello::{
    Attestation, GroupRef, Hello, HelloAck, MemberProfile, MeshPolicy, PeerInfo, SessionHello,
};
pub use info::{MeshInfo, TaskCountsEntry};
pub use invites::{Capability, CreateInvite, InviteCreated, InviteEntry};
pub use keys::{
    AdminList, EpochKey, KeyHolder, MAX_ADMINS, RotateKey, RotateKeyOk, RotationProof, SealedFor,
    is_epoch_zero,
};
pub use members::{BanEntry, MemberEntry};
pub use memory::{MemoryEntry, Recall, Remember};
pub use messaging::{Ack, ClientAck, MessageStatusResult, Push, RecipientStatus, SendMessage};
pub use peer_files::{
    DEFAULT_LIST_DEPTH, DEFAULT_PEER_FILES_TIMEOUT_MS, MAX_LIST_DEPTH, MAX_LIST_ENTRIES,
    MAX_PEER_FILE_BYTES, MAX_PEER_FILES_ANSWER_BYTES, PeerDirRequest, PeerDirRequestForward,
    PeerDirResponse, PeerFileRequest, PeerFileRequestForward, PeerFileResponse, PeerFilesAnswer,
    PeerFilesShare, PeerListing, Requester, path_problem,
};
pub use peer_files::{
    MAX_PEER_CHUNK_BYTES, MAX_PEER_PATTERN_BYTES, MAX_PEER_REQUEST_SKEW_MS, SealedPeerRequest,
};
pub use peers::{PeerEntry, Profile, StatusChange};
pub use perms::{Permission, PermsEntry, SetPerms};
pub use reminders::{Schedule, ScheduledAck, ScheduledEntry, When};
pub use settings::{GroupBodies, GroupBodiesProof, MeshSettings};
pub use shared_tools::{
    DEFAULT_TOOL_TIMEOUT_MS, MAX_TOOL_ARGS_BYTES, MAX_TOOL_RESULT_BYTES, McpCall, McpCallForward,
    McpCallResult, McpRegister, McpServerEntry, McpToolSpec, SealedPayload, reports_error,
};
pub use skills::{ShareSkill, SkillBundle, SkillChanged, SkillEntry};
pub use sql::{
    MeshExecuteResult, MeshQueryResult, MeshSchemaResult, SqlColumnEntry, SqlRowsEntry,
    SqlStatement, SqlTableEntry,
};
pub use state::{SetState, StateChange, StateEntry};
pub use stats::{MeshStatsEntry, PeerStats, ReportedStats};
pub use streams::{StreamData, StreamEntry};
pub use tasks::{CreateTask, TaskEntry};
pub use telegram::{TelegramConnect, TelegramRootKey, TelegramStatus, TelegramUser};
pub use vault::{
    MAX_VAULT_DESCRIPTION_CHARS, MAX_VAULT_ENTRIES, MAX_VAULT_GET_KEYS, MAX_VAULT_VALUE_BYTES,
    VaultEntryType, VaultListEntry, VaultSealedEntry, VaultSet, check_vault_key, check_vault_mount,
    relative_mount_path, vault_context,
};
pub use vectors::{CollectionEntry, VectorCreate, VectorResult, VectorSearch, VectorStore};
pub use watches::{
    DEFAULT_WATCH_INTERVAL_S, MAX_WATCH_INTERVAL_S, MIN_WATCH_INTERVAL_S, Watch, WatchEntry,
    WatchTriggered,
};
pub use webhooks::{CreateWebhook, WebhookDelivery, WebhookEntry};

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
    /// This broker's addition (PROTOCOL.md §5.3): every status change in the mesh over the
    /// last hours (at most 6), oldest first.
    StatusHistory {
        /// ISO 8601; absent: as far back as kept.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        since: Option<String>,
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
    /// Reads the mesh's settings, or (owner only) changes `groupBodies` (PROTOCOL.md §5.2).
    SetMeshSettings {
        #[serde(
            rename = "groupBodies",
            default,
            skip_serializing_if = "Option::is_none"
        )]
        group_bodies: Option<String>,
        /// The owner's signature over the new value (PROTOCOL.md §5.2); required with
        /// `groupBodies`.
        #[serde(
            rename = "groupBodiesSignature",
            default,
            skip_serializing_if = "Option::is_none"
        )]
        signature: Option<String>,
        #[serde(
            rename = "groupBodiesSignedAt",
            default,
            skip_serializing_if = "Option::is_none"
        )]
        signed_at: Option<i64>,
    },
    /// The original client's request for an API key, which this broker does not mint:
    /// answered with `not_supported` at once (PROTOCOL.md §1).
    ApikeyCreate {},
    // Grants and blocks (issue 13, PROTOCOL.md §12.3).
    Block {
        peer: String,
    },
    Unblock {
        peer: String,
    },
    SetGrants(SetGrants),
    ListGrants {},
    // Stats (issue 13, PROTOCOL.md §12.6).
    SetStats {
        #[serde(default)]
        stats: ReportedStats,
    },
    MeshStats {},
    // Root-key rotation (PROTOCOL.md §12.4).
    RotateKey(RotateKey),
    /// This member's sealed copies of the root keys of epochs after `since`.
    GetKeys {
        #[serde(default)]
        since: u64,
    },
    /// Owner or admin: the current key epoch and every member that must hold its key.
    ListKeyHolders {},
    /// The owner-signed admin list (anyone in the mesh).
    GetAdmins {},
    /// Owner: a new signed admin list (its version one more than the stored one).
    SetAdmins(AdminList),
    /// A page of the audit log (owner and admins; PROTOCOL.md §12.5).
    AuditQuery(AuditQuery),
    /// Recomputes the audit chain (owner and admins).
    AuditVerify {},
    // Governance (PROTOCOL.md §12).
    /// One member's capabilities, or every member's.
    GetPerms {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        member: Option<String>,
    },
    SetPerms(SetPerms),
    /// Owner or admin closes every connection of a member (close 4001); it may come back.
    Kick {
        member: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Closes one connection, named by presence id, session key or session id.
    Disconnect {
        session: String,
    },
    /// Owner or admin bans a member until `unban`: connections close (4002), hellos and claims
    /// are refused with `banned`.
    Ban {
        member: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    Unban {
        member: String,
    },
    ListBans {},
    // Skills (issue 15, PROTOCOL.md §13).
    ShareSkill(Box<ShareSkill>),
    /// A skill's current version, or `version` (also written `name@version`).
    GetSkill {
        name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        version: Option<u32>,
    },
    /// The mesh's skills: by name, or ranked by `query`.
    ListSkills {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        query: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cursor: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<usize>,
    },
    RemoveSkill {
        name: String,
    },
    // Peer-hosted MCP tools (PROTOCOL.md §14).
    McpRegister(McpRegister),
    McpUnregister {
        #[serde(rename = "serverName")]
        server_name: String,
    },
    McpList {},
    McpCall(Box<McpCall>),
    McpCallResponse(Box<McpCallResult>),
    // Peer files (PROTOCOL.md §15).
    PeerFilesShare(PeerFilesShare),
    PeerFilesUnshare {},
    PeerFileRequest(Box<PeerFileRequest>),
    PeerDirRequest(Box<PeerDirRequest>),
    PeerFileResponse(Box<PeerFileResponse>),
    PeerDirResponse(Box<PeerDirResponse>),
    // Broker-hosted MCP services (issue 15 tier 2).
    McpDeploy(Box<McpDeploy>),
    McpDeployCheck(Box<McpDeployCheck>),
    McpUndeploy {
        server_name: String,
    },
    McpUpdate(Box<McpUpdate>),
    McpLogs {
        server_name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        lines: Option<usize>,
    },
    McpScope {
        server_name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        scope: Option<ScopeSpec>,
    },
    McpSchema {
        server_name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tool_name: Option<String>,
    },
    McpCatalog {},
    /// Asks a service's status now; answered with the same frame type.
    McpDeployStatus {
        server_name: String,
    },
    // Vault (PROTOCOL.md §17).
    VaultSet(Box<VaultSet>),
    /// This member's entries, metadata only.
    VaultList {},
    VaultDelete {
        key: String,
    },
    /// This member's entries named in `keys`, sealed (entries of other members are never
    /// returned).
    VaultGet {
        keys: Vec<String>,
    },
    /// The broker's service key, to seal entries meant for deployed services to.
    VaultServiceKey {},
    // Per-mesh SQL (PROTOCOL.md §18).
    /// One read-only statement; answered with a page of its rows.
    MeshQuery(SqlStatement),
    /// One DDL or DML statement, in a transaction of its own.
    MeshExecute(SqlStatement),
    MeshSchema {},
    // Graph (PROTOCOL.md §19).
    GraphQuery(GraphRequest),
    GraphExecute(GraphRequest),
    // Vectors (PROTOCOL.md §20).
    VectorCreate(VectorCreate),
    VectorStore(Box<VectorStore>),
    VectorSearch(Box<VectorSearch>),
    VectorDelete {
        collection: String,
        id: String,
    },
    ListCollections {},
    /// Deletes a collection with all its records (this broker's addition).
    VectorDeleteCollection {
        collection: String,
    },
    // URL watches (PROTOCOL.md §21).
    Watch(Box<Watch>),
    Unwatch {
        #[serde(rename = "watchId")]
        watch_id: String,
    },
    WatchList {},
    // Inbound webhooks (PROTOCOL.md §22).
    CreateWebhook(CreateWebhook),
    ListWebhooks {},
    DeleteWebhook {
        name: String,
    },
    // Simulation clock (PROTOCOL.md §23).
    SetClock {
        speed: f64,
    },
    PauseClock {},
    ResumeClock {},
    GetClock {},
    // Telegram bridge (PROTOCOL.md §24).
    TelegramConnect(TelegramConnect),
    TelegramInvite {},
    TelegramDisconnect {},
    TelegramStatus {},
    // Remote approval of tool use (PROTOCOL.md §25).
    /// Replaces this member's approver list (member ids, member keys or `@group`); empty
    /// clears it.
    SetApprovers {
        approvers: Vec<String>,
    },
    GetApprovers {},
    RequestApproval(Box<RequestApproval>),
    /// The pending requests this member may answer.
    ListApprovals {},
    AnswerApproval {
        id: String,
        behavior: String,
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
            ClientMessage::ListInvites {} => "list_invites",
            ClientMessage::RootKeyProof { .. } => "root_key_proof",
            ClientMessage::Send(_) => "send",
            ClientMessage::ClientAck(_) => "client_ack",
            ClientMessage::Drain {} => "drain",
            ClientMessage::MessageStatus { .. } => "message_status",
            ClientMessage::ListPeers { .. } => "list_peers",
            ClientMessage::StatusHistory { .. } => "status_history",
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
            ClientMessage::SetMeshSettings { .. } => "set_mesh_settings",
            ClientMessage::ApikeyCreate {} => "apikey_create",
            ClientMessage::Block { .. } => "block",
            ClientMessage::Unblock { .. } => "unblock",
            ClientMessage::SetGrants(_) => "set_grants",
            ClientMessage::ListGrants {} => "list_grants",
            ClientMessage::SetStats { .. } => "set_stats",
            ClientMessage::MeshStats {} => "mesh_stats",
            ClientMessage::RotateKey(_) => "rotate_key",
            ClientMessage::GetKeys { .. } => "get_keys",
            ClientMessage::ListKeyHolders {} => "list_key_holders",
            ClientMessage::GetAdmins {} => "get_admins",
            ClientMessage::SetAdmins(_) => "set_admins",
            ClientMessage::AuditQuery(_) => "audit_query",
            ClientMessage::AuditVerify {} => "audit_verify",
            ClientMessage::GetPerms { .. } => "get_perms",
            ClientMessage::SetPerms(_) => "set_perms",
            ClientMessage::Kick { .. } => "kick",
            ClientMessage::Disconnect { .. } => "disconnect",
            ClientMessage::Ban { .. } => "ban",
            ClientMessage::Unban { .. } => "unban",
            ClientMessage::ListBans {} => "list_bans",
            ClientMessage::ShareSkill(_) => "share_skill",
            ClientMessage::GetSkill { .. } => "get_skill",
            ClientMessage::ListSkills { .. } => "list_skills",
            ClientMessage::RemoveSkill { .. } => "remove_skill",
            ClientMessage::McpRegister(_) => "mcp_register",
            ClientMessage::McpUnregister { .. } => "mcp_unregister",
            ClientMessage::McpList {} => "mcp_list",
            ClientMessage::McpCall(_) => "mcp_call",
            ClientMessage::McpCallResponse(_) => "mcp_call_response",
            ClientMessage::PeerFilesShare(_) => "peer_files_share",
            ClientMessage::PeerFilesUnshare {} => "peer_files_unshare",
            ClientMessage::PeerFileRequest(_) => "peer_file_request",
            ClientMessage::PeerDirRequest(_) => "peer_dir_request",
            ClientMessage::PeerFileResponse(_) => "peer_file_response",
            ClientMessage::PeerDirResponse(_) => "peer_dir_response",
            ClientMessage::McpDeploy(_) => "mcp_deploy",
            ClientMessage::McpDeployCheck(_) => "mcp_deploy_check",
            ClientMessage::McpUndeploy { .. } => "mcp_undeploy",
            ClientMessage::McpUpdate(_) => "mcp_update",
            ClientMessage::McpLogs { .. } => "mcp_logs",
            ClientMessage::McpScope { .. } => "mcp_scope",
            ClientMessage::McpSchema { .. } => "mcp_schema",
            ClientMessage::McpCatalog {} => "mcp_catalog",
            ClientMessage::McpDeployStatus { .. } => "mcp_deploy_status",
            ClientMessage::VaultSet(_) => "vault_set",
            ClientMessage::VaultList {} => "vault_list",
            ClientMessage::SetClock { .. } => "set_clock",
            ClientMessage::PauseClock {} => "pause_clock",
            ClientMessage::ResumeClock {} => "resume_clock",
            ClientMessage::GetClock {} => "get_clock",
            ClientMessage::VaultDelete { .. } => "vault_delete",
            ClientMessage::VaultGet { .. } => "vault_get",
            ClientMessage::VaultServiceKey {} => "vault_service_key",
            ClientMessage::MeshQuery(_) => "mesh_query",
            ClientMessage::MeshExecute(_) => "mesh_execute",
            ClientMessage::MeshSchema {} => "mesh_schema",
            ClientMessage::GraphQuery(_) => "graph_query",
            ClientMessage::GraphExecute(_) => "graph_execute",
            ClientMessage::VectorCreate(_) => "vector_create",
            ClientMessage::VectorStore(_) => "vector_store",
            ClientMessage::VectorSearch(_) => "vector_search",
            ClientMessage::VectorDelete { .. } => "vector_delete",
            ClientMessage::VectorDeleteCollection { .. } => "vector_delete_collection",
            ClientMessage::ListCollections {} => "list_collections",
            ClientMessage::Watch(_) => "watch",
            ClientMessage::Unwatch { .. } => "unwatch",
            ClientMessage::WatchList {} => "watch_list",
            ClientMessage::CreateWebhook(_) => "create_webhook",
            ClientMessage::ListWebhooks {} => "list_webhooks",
            ClientMessage::DeleteWebhook { .. } => "delete_webhook",
            ClientMessage::TelegramConnect(_) => "telegram_connect",
            ClientMessage::TelegramInvite {} => "telegram_invite",
            ClientMessage::TelegramDisconnect {} => "telegram_disconnect",
            ClientMessage::TelegramStatus {} => "telegram_status",
            ClientMessage::SetApprovers { .. } => "set_approvers",
            ClientMessage::GetApprovers {} => "get_approvers",
            ClientMessage::RequestApproval(_) => "request_approval",
            ClientMessage::ListApprovals {} => "list_approvals",
            ClientMessage::AnswerApproval { .. } => "answer_approval",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorFrame {
    pub code: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

impl crate::protocol::codec::Frame for ClientMessage {
    fn read_rest<'de, A: serde::de::MapAccess<'de>>(
        kind: &str,
        rest: A,
    ) -> Result<Option<Self>, A::Error> {
        use crate::protocol::codec::read_struct;
        Ok(Some(match kind {
            "send" => ClientMessage::Send(Box::new(read_struct(rest)?)),
            "client_ack" => ClientMessage::ClientAck(read_struct(rest)?),
            _ => return Ok(None),
        }))
    }
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
    /// Answers `status_history`.
    StatusHistoryResult {
        changes: Vec<StatusChange>,
    },
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
    MeshSettings(MeshSettings),
    /// Answers `block`, `unblock`, `set_grants` (the one peer's entry) and `list_grants`.
    Grants {
        grants: Vec<GrantEntry>,
        /// More entries exist than one answer lists.
        #[serde(default)]
        truncated: bool,
    },
    MeshStatsResult {
        peers: Vec<MeshStatsEntry>,
    },
    // Root-key rotation (PROTOCOL.md §12.4).
    KeyRotated(RotateKeyOk),
    Keys {
        current: u64,
        keys: Vec<EpochKey>,
        /// The owner-signed admin list as stored now, so clients learn the newest version.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        admins: Option<AdminList>,
    },
    KeyHolders {
        epoch: u64,
        members: Vec<KeyHolder>,
    },
    /// Answers `get_admins` and `set_admins`; `None` before the owner signed any list.
    Admins {
        list: Option<AdminList>,
    },
    AuditResult(AuditResult),
    AuditVerifyResult(AuditVerifyResult),
    // Governance (PROTOCOL.md §12).
    Perms {
        entries: Vec<PermsEntry>,
    },
    Bans {
        bans: Vec<BanEntry>,
        /// More bans exist than one answer lists (newest first).
        #[serde(default)]
        truncated: bool,
    },
    // Skills (issue 15, PROTOCOL.md §13).
    /// Answers `share_skill` (`action:"shared"`, the new `version`) and `remove_skill`
    /// (`removed` or `not_found`).
    SkillAck {
        name: String,
        action: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        version: Option<u32>,
    },
    /// Answers `get_skill`; `skill: null` when there is no such skill (or version).
    SkillData {
        skill: Option<Box<SkillEntry>>,
    },
    SkillList {
        skills: Vec<SkillEntry>,
        /// Where the next page starts; absent on the last page.
        #[serde(
            rename = "nextCursor",
            default,
            skip_serializing_if = "Option::is_none"
        )]
        next_cursor: Option<String>,
    },
    SkillChanged(SkillChanged),
    // Peer-hosted MCP tools (PROTOCOL.md §14).
    McpRegisterAck {
        #[serde(rename = "serverName")]
        server_name: String,
        #[serde(rename = "toolCount")]
        tool_count: usize,
    },
    McpListResult {
        servers: Vec<McpServerEntry>,
    },
    McpCallResult(Box<McpCallResult>),
    McpCallForward(Box<McpCallForward>),
    // Peer files (PROTOCOL.md §15).
    PeerFileRequestForward(Box<PeerFileRequestForward>),
    PeerDirRequestForward(Box<PeerDirRequestForward>),
    PeerFileResponseForward(Box<PeerFileResponse>),
    PeerDirResponseForward(Box<PeerDirResponse>),
    // Broker-hosted MCP services (issue 15 tier 2).
    McpDeployStatus(Box<McpDeployStatus>),
    McpLogsResult {
        server_name: String,
        lines: Vec<String>,
    },
    McpScopeResult {
        server_name: String,
        scope: Scope,
        deployed_by: String,
    },
    McpSchemaResult {
        server_name: String,
        tools: Vec<McpToolSpec>,
    },
    McpCatalogResult {
        services: Vec<CatalogEntry>,
    },
    // Vault (PROTOCOL.md §17).
    /// Answers `vault_set` (`stored`) and `vault_delete` (`deleted` or `not_found`).
    VaultAck {
        key: String,
        action: String,
    },
    VaultListResult {
        entries: Vec<VaultListEntry>,
    },
    VaultGetResult {
        entries: Vec<VaultSealedEntry>,
    },
    /// Answers `vault_service_key`: the broker's X25519 service key, 64 hex.
    VaultServiceKeyResult {
        #[serde(rename = "publicKey")]
        public_key: String,
    },
    // Per-mesh SQL (PROTOCOL.md §18).
    MeshQueryResult(Box<MeshQueryResult>),
    MeshExecuteResult(Box<MeshExecuteResult>),
    MeshSchemaResult(MeshSchemaResult),
    // Graph (PROTOCOL.md §19): answers `graph_query` and `graph_execute`.
    GraphResult(GraphResult),
    // Vectors (PROTOCOL.md §20).
    /// Answers `vector_create`: the collection as it now exists.
    VectorCollection(CollectionEntry),
    VectorStored {
        id: String,
    },
    VectorResults {
        results: Vec<VectorResult>,
    },
    /// Answers `list_collections`: the names (as the original), and each one's details.
    CollectionList {
        collections: Vec<String>,
        #[serde(default)]
        details: Vec<CollectionEntry>,
    },
    // URL watches (PROTOCOL.md §21).
    WatchAck {
        #[serde(rename = "watchId")]
        watch_id: String,
        url: String,
        mode: String,
        interval: u64,
    },
    WatchListResult {
        watches: Vec<WatchEntry>,
    },
    // Inbound webhooks (PROTOCOL.md §22).
    /// Answers `create_webhook`: the only time the secret is shown.
    WebhookAck {
        name: String,
        url: String,
        secret: String,
    },
    WebhookList {
        webhooks: Vec<WebhookEntry>,
    },
    // Simulation clock (PROTOCOL.md §23).
    ClockStatus(ClockStatus),
    // Telegram bridge (PROTOCOL.md §24).
    TelegramStatusResult(TelegramStatus),
    /// Answers `telegram_invite`: the one-time code, shown this once.
    TelegramInviteResult {
        code: String,
        #[serde(rename = "expiresAt")]
        expires_at: String,
        #[serde(rename = "botUsername", default)]
        bot_username: Option<String>,
    },
    // Remote approval of tool use (PROTOCOL.md §25).
    /// Answers `set_approvers` and `get_approvers`: the list as stored, and whom it names now.
    Approvers {
        approvers: Vec<String>,
        resolved: Vec<ApproverEntry>,
    },
    /// Answers `request_approval`.
    ApprovalRequested {
        id: String,
        #[serde(rename = "expiresAt")]
        expires_at: i64,
        approvers: usize,
    },
    /// Answers `list_approvals`.
    Approvals {
        approvals: Vec<ApprovalEntry>,
    },
    /// Answers `answer_approval`; pushed to the asking session.
    ApprovalDecided(ApprovalDecision),
    /// Pushed to approvers: `event` is `requested` or `decided`.
    ApprovalEvent {
        event: String,
        approval: Box<ApprovalEntry>,
    },
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

impl crate::protocol::codec::Frame for ServerMessage {
    fn read_rest<'de, A: serde::de::MapAccess<'de>>(
        kind: &str,
        rest: A,
    ) -> Result<Option<Self>, A::Error> {
        use crate::protocol::codec::read_struct;
        Ok(Some(match kind {
            "push" => ServerMessage::Push(Box::new(read_struct(rest)?)),
            "ack" => ServerMessage::Ack(read_struct(rest)?),
            _ => return Ok(None),
        }))
    }
}
