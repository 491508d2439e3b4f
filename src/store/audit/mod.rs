//! The audit log (PROTOCOL.md §12.5): per mesh, an append-only, hash-chained list of who
//! changed what, metadata only.
//!
//! # Recording a mutation
//! Call [`append`] **inside the store closure that makes the change**, after the change and only
//! on the path that commits it:
//!
//! ```ignore
//! self.write(move |tx| {
//!     // … checks; a refusal returns before this point and leaves no record …
//!     table.insert(key, value)?;
//!     audit::append(tx, &mesh_id, &AuditNote::new(AuditEvent::StateSet, by).with("key", &key), now_ms)?;
//!     Ok(Ok(record))
//! })
//! ```
//!
//! The record then commits in the same transaction as the change: an acknowledged mutation is
//! always in the log, a refused (or failed) one never. A new kind of mutation gets a variant of
//! [`AuditEvent`] (a dotted name, `area.verb`) and a line in PROTOCOL.md §12.5's table. Payloads
//! hold ids, keys, names, sizes and roles, never message bodies, state values or file contents:
//! they are shown to every owner and admin and kept for the life of the mesh.
//!
//! # The chain
//! Each record holds the hash of the one before (32 zero bytes before the first); its own hash
//! is SHA-256 over [`canonical_bytes`]. A head row per mesh holds the last seq and hash, so a
//! record cut from the end is found too. `chain.rs` holds the encoding and
//! [`Store::verify_audit`], which walks the chain in one read transaction, one record at a time.

mod chain;

pub use chain::{AuditBreak, AuditVerdict, CHAIN_TAG, canonical_bytes, record_hash};

use std::collections::BTreeMap;

use redb::{ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::{Store, StoreError, decode, decode_opt, encode};
use chain::genesis;

/// `(mesh_id, seq) → AuditRecord`, seq from 1 per mesh.
pub(crate) const AUDIT: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("audit");
/// `mesh_id → AuditHead`: the chain's tip.
pub(crate) const AUDIT_HEADS: TableDefinition<&str, &[u8]> = TableDefinition::new("audit_heads");
/// `(mesh_id, event type) → records of that type`, for `audit_result.total` without a scan.
pub(crate) const AUDIT_COUNTS: TableDefinition<(&str, &str), u64> =
    TableDefinition::new("audit_counts");

/// Most payload fields one record holds; more are dropped.
pub const MAX_PAYLOAD_FIELDS: usize = 12;
/// Longest payload value, in characters; longer ones are cut.
pub const MAX_PAYLOAD_VALUE: usize = 256;
/// Most records one `audit_query` answer holds.
pub const MAX_QUERY_LIMIT: usize = 500;
/// Most records a mesh's log keeps (a few hundred bytes each): past it, the oldest hundredth is
/// dropped, an `audit.trimmed` record says so, and the head keeps the last dropped record's
/// hash as the anchor the chain starts from.
pub const MAX_RECORDS_PER_MESH: u64 = 1_000_000;

/// Opens the audit tables (called from `records::create_tables`).
pub(crate) fn create_tables(tx: &WriteTransaction) -> Result<(), StoreError> {
    tx.open_table(AUDIT)?;
    tx.open_table(AUDIT_HEADS)?;
    tx.open_table(AUDIT_COUNTS)?;
    Ok(())
}

/// What happened. The wire and the stored record carry [`AuditEvent::as_str`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditEvent {
    MeshCreated,
    MemberJoined,
    MemberRevoked,
    InviteCreated,
    InviteRevoked,
    SettingsChanged,
    /// A manager's client proved it holds the root key; the legacy copy was deleted.
    RootKeyDropped,
    StateSet,
    StateDeleted,
    TaskCreated,
    TaskClaimed,
    TaskCompleted,
    TaskReleased,
    FileShared,
    FileDeleted,
    FileGranted,
    MemoryRemembered,
    MemoryForgotten,
    ContextShared,
    StreamCreated,
    ReminderScheduled,
    ReminderCancelled,
    /// A member changed what another member may do towards it (a block, unblock or grant).
    GrantsChanged,
    /// The mesh root key was rotated (the sealed copies are not logged).
    KeyRotated,
    /// A member took a new display name (its profile).
    MemberRenamed,
    /// A member's role or capability overrides changed (`set_perms`).
    PermsChanged,
    MemberBanned,
    MemberUnbanned,
    /// The owner signed a new admin list (who may rotate the root key).
    AdminsChanged,
    /// A manager closed a member's sessions (`kick`) or one session (`disconnect`).
    MemberKicked,
    SessionDisconnected,
    /// The broker dropped the oldest records at the cap (how many, through which id).
    AuditTrimmed,
    // Skills (issue 15).
    SkillShared,
    SkillRemoved,
    /// A member registered (or re-registered) a peer-hosted MCP server.
    McpRegistered,
    /// A peer-hosted MCP server was removed (by its host, a manager, or the broker).
    McpRemoved,
    /// A member called a tool of a peer-hosted server or a deployed service (names, outcome
    /// and duration; never arguments or result).
    McpCalled,
    /// A member read a file of another member's shared directory (path and size only).
    PeerFileRead,
    /// A member listed another member's shared directory.
    PeerFilesListed,
    /// A broker-hosted MCP service was deployed, updated, rescoped or undeployed.
    McpDeployed,
    McpUpdated,
    McpScopeChanged,
    McpUndeployed,
    // Vault (issue 15): the key name and type only, never a value.
    VaultSet,
    VaultDeleted,
    // Per-mesh SQL (issue 16): what a statement wrote, never its SQL or values.
    SqlExecuted,
    /// A `graph_execute` committed (the statement's size and the records it returned, never
    /// its text: it holds data).
    GraphWritten,
    // Vectors (issue 16): collection names and record ids only, never vectors or metadata.
    VectorCollectionCreated,
    VectorStored,
    VectorDeleted,
    VectorCollectionDeleted,
    // URL watches and webhooks (issue 17): ids, names, modes and targets, never a secret.
    WatchCreated,
    WatchRemoved,
    WebhookCreated,
    WebhookDeleted,
    /// A mesh's simulation clock was set, paused or resumed (issue 17).
    ClockChanged,
    /// A Telegram bridge was connected or disconnected (issue 17): the bot's name and the
    /// target, never the token.
    TelegramConnected,
    TelegramDisconnected,
    /// Remote approval (issue 18): a member's approver list changed, a permission prompt was
    /// forwarded (ids and approvers, never the tool or its input), a prompt was answered.
    ApproversChanged,
    ApprovalRequested,
    ApprovalDecided,
}

impl AuditEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditEvent::MeshCreated => "mesh.created",
            AuditEvent::MemberJoined => "member.joined",
            AuditEvent::MemberRevoked => "member.revoked",
            AuditEvent::InviteCreated => "invite.created",
            AuditEvent::InviteRevoked => "invite.revoked",
            AuditEvent::SettingsChanged => "settings.changed",
            AuditEvent::RootKeyDropped => "mesh.root_key_dropped",
            AuditEvent::StateSet => "state.set",
            AuditEvent::StateDeleted => "state.deleted",
            AuditEvent::TaskCreated => "task.created",
            AuditEvent::TaskClaimed => "task.claimed",
            AuditEvent::TaskCompleted => "task.completed",
            AuditEvent::TaskReleased => "task.released",
            AuditEvent::FileShared => "file.shared",
            AuditEvent::FileDeleted => "file.deleted",
            AuditEvent::FileGranted => "file.granted",
            AuditEvent::MemoryRemembered => "memory.remembered",
            AuditEvent::MemoryForgotten => "memory.forgotten",
            AuditEvent::ContextShared => "context.shared",
            AuditEvent::StreamCreated => "stream.created",
            AuditEvent::ReminderScheduled => "reminder.scheduled",
            AuditEvent::ReminderCancelled => "reminder.cancelled",
            AuditEvent::GrantsChanged => "grants.changed",
            AuditEvent::KeyRotated => "key.rotated",
            AuditEvent::MemberRenamed => "member.renamed",
            AuditEvent::PermsChanged => "perms.changed",
            AuditEvent::MemberBanned => "member.banned",
            AuditEvent::MemberUnbanned => "member.unbanned",
            AuditEvent::AdminsChanged => "admins.changed",
            AuditEvent::MemberKicked => "member.kicked",
            AuditEvent::SessionDisconnected => "session.disconnected",
            AuditEvent::AuditTrimmed => "audit.trimmed",
            AuditEvent::SkillShared => "skill.shared",
            AuditEvent::SkillRemoved => "skill.removed",
            AuditEvent::McpRegistered => "mcp.registered",
            AuditEvent::McpRemoved => "mcp.removed",
            AuditEvent::McpCalled => "mcp.called",
            AuditEvent::PeerFileRead => "peer_file.read",
            AuditEvent::PeerFilesListed => "peer_file.listed",
            AuditEvent::McpDeployed => "mcp.deployed",
            AuditEvent::McpUpdated => "mcp.updated",
            AuditEvent::McpScopeChanged => "mcp.scope_changed",
            AuditEvent::McpUndeployed => "mcp.undeployed",
            AuditEvent::VaultSet => "vault.set",
            AuditEvent::VaultDeleted => "vault.deleted",
            AuditEvent::SqlExecuted => "sql.executed",
            AuditEvent::GraphWritten => "graph.written",
            AuditEvent::VectorCollectionCreated => "vector.collection_created",
            AuditEvent::VectorStored => "vector.stored",
            AuditEvent::VectorDeleted => "vector.deleted",
            AuditEvent::VectorCollectionDeleted => "vector.collection_deleted",
            AuditEvent::WatchCreated => "watch.created",
            AuditEvent::WatchRemoved => "watch.removed",
            AuditEvent::WebhookCreated => "webhook.created",
            AuditEvent::WebhookDeleted => "webhook.deleted",
            AuditEvent::ClockChanged => "clock.changed",
            AuditEvent::TelegramConnected => "telegram.connected",
            AuditEvent::TelegramDisconnected => "telegram.disconnected",
            AuditEvent::ApproversChanged => "approvers.changed",
            AuditEvent::ApprovalRequested => "approval.requested",
            AuditEvent::ApprovalDecided => "approval.decided",
        }
    }
}

/// Who did it: a member (id and display name at the time), or the broker itself (empty id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditActor {
    pub member_id: String,
    pub name: String,
}

impl AuditActor {
    pub fn member(member_id: impl Into<String>, name: impl Into<String>) -> AuditActor {
        AuditActor {
            member_id: member_id.into(),
            name: name.into(),
        }
    }

    /// The broker acting on its own (an ephemeral file expiring).
    pub fn broker() -> AuditActor {
        AuditActor {
            member_id: String::new(),
            name: "broker".into(),
        }
    }
}

impl From<&super::Actor> for AuditActor {
    fn from(a: &super::Actor) -> Self {
        AuditActor::member(a.member_id.clone(), a.name.clone())
    }
}

impl From<&super::Member> for AuditActor {
    fn from(m: &super::Member) -> Self {
        AuditActor::member(m.id.clone(), m.display_name.clone())
    }
}

/// One record to append: the event, its actor and a bounded payload of metadata.
#[derive(Debug, Clone)]
pub struct AuditNote {
    pub event: AuditEvent,
    pub actor: AuditActor,
    payload: BTreeMap<String, String>,
}

impl AuditNote {
    pub fn new(event: AuditEvent, actor: impl Into<AuditActor>) -> AuditNote {
        AuditNote {
            event,
            actor: actor.into(),
            payload: BTreeMap::new(),
        }
    }

    /// Adds a metadata field. Values longer than [`MAX_PAYLOAD_VALUE`] characters are cut;
    /// fields past [`MAX_PAYLOAD_FIELDS`] are dropped. Never pass a message body, a state value
    /// or file contents.
    pub fn with(mut self, key: &'static str, value: impl ToString) -> AuditNote {
        if self.payload.len() < MAX_PAYLOAD_FIELDS || self.payload.contains_key(key) {
            let value: String = value.to_string().chars().take(MAX_PAYLOAD_VALUE).collect();
            self.payload.insert(key.to_string(), value);
        }
        self
    }

    /// Adds the field only when there is a value.
    pub fn with_opt(self, key: &'static str, value: Option<impl ToString>) -> AuditNote {
        match value {
            Some(v) => self.with(key, v),
            None => self,
        }
    }
}

/// One stored record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub seq: u64,
    pub at_ms: i64,
    pub event: String,
    pub actor_member_id: String,
    pub actor_name: String,
    pub payload: BTreeMap<String, String>,
    /// 64 hex; 64 zeros for seq 1.
    pub prev_hash: String,
    /// 64 hex: SHA-256 of [`canonical_bytes`].
    pub hash: String,
}

/// The tip of a mesh's chain, and where it starts once old records were dropped.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct AuditHead {
    seq: u64,
    hash: String,
    at_ms: i64,
    /// The oldest record kept (0 or 1: none dropped).
    #[serde(default)]
    first: u64,
    /// The hash of the last dropped record (`prev_hash` of `first`); empty: none dropped.
    #[serde(default)]
    anchor: String,
}

impl AuditHead {
    fn first(&self) -> u64 {
        self.first.max(1)
    }
    fn anchor(&self) -> String {
        if self.anchor.is_empty() {
            genesis()
        } else {
            self.anchor.clone()
        }
    }
    /// Records kept.
    fn len(&self) -> u64 {
        (self.seq + 1).saturating_sub(self.first())
    }
}

/// Appends `note` to `mesh_id`'s chain inside `tx`, the transaction of the change it records.
/// The record's time is `now_ms`, or the previous record's if the clock went back, so times
/// never decrease along the chain. Returns the record.
pub fn append(
    tx: &WriteTransaction,
    mesh_id: &str,
    note: &AuditNote,
    now_ms: i64,
) -> Result<AuditRecord, StoreError> {
    append_within(tx, mesh_id, note, now_ms, MAX_RECORDS_PER_MESH)
}

/// [`append`], keeping at most `max_records` (at least 1).
fn append_within(
    tx: &WriteTransaction,
    mesh_id: &str,
    note: &AuditNote,
    now_ms: i64,
    max_records: u64,
) -> Result<AuditRecord, StoreError> {
    let mut heads = tx.open_table(AUDIT_HEADS)?;
    let head: AuditHead = decode_opt(heads.get(mesh_id)?)?.unwrap_or_default();
    let mut record = AuditRecord {
        seq: head.seq + 1,
        at_ms: now_ms.max(head.at_ms),
        event: note.event.as_str().to_string(),
        actor_member_id: note.actor.member_id.clone(),
        actor_name: note.actor.name.clone(),
        payload: note.payload.clone(),
        prev_hash: if head.seq == 0 {
            genesis()
        } else {
            head.hash.clone()
        },
        hash: String::new(),
    };
    record.hash = record_hash(mesh_id, &record)
        .ok_or_else(|| StoreError::Decode("the audit head's hash is not 64 hex".into()))?;
    let mut table = tx.open_table(AUDIT)?;
    table.insert((mesh_id, record.seq), encode(&record).as_slice())?;
    let mut counts = tx.open_table(AUDIT_COUNTS)?;
    count(&mut counts, mesh_id, &record.event, 1)?;
    let mut new_head = AuditHead {
        seq: record.seq,
        hash: record.hash.clone(),
        at_ms: record.at_ms,
        first: head.first(),
        anchor: head.anchor.clone(),
    };
    let max_records = max_records.max(2);
    if new_head.len() <= max_records {
        heads.insert(mesh_id, encode(&new_head).as_slice())?;
        return Ok(record);
    }
    // Past the cap: drop the oldest batch (never the record just written), then say so in
    // the chain itself, so a log pushed past its cap shows when and how much was dropped.
    let mut dropped_count = 0u64;
    while new_head.len() > trim_floor(max_records) && new_head.first() < record.seq {
        let dropped = table.remove((mesh_id, new_head.first()))?;
        if let Some(old) = dropped
            .map(|v| decode::<AuditRecord>(v.value()))
            .transpose()?
        {
            count(&mut counts, mesh_id, &old.event, -1)?;
            new_head.anchor = old.hash;
        }
        new_head.first = new_head.first() + 1;
        dropped_count += 1;
    }
    heads.insert(mesh_id, encode(&new_head).as_slice())?;
    drop((table, counts, heads));
    let trimmed = AuditNote::new(AuditEvent::AuditTrimmed, AuditActor::broker())
        .with("dropped", dropped_count)
        .with("throughId", new_head.first() - 1)
        .with("cap", max_records);
    append_within(tx, mesh_id, &trimmed, now_ms, max_records)?;
    Ok(record)
}

/// Records a log keeps at least once it has reached `max_records`: the cap is enforced by
/// dropping the oldest hundredth at a time (one `audit.trimmed` record each time).
fn trim_floor(max_records: u64) -> u64 {
    max_records - (max_records / 100).max(1)
}

impl Store {
    /// Appends `note` in a transaction of its own: for actions that change no stored data
    /// (closing connections), so they are in the log all the same.
    pub async fn record_audit(
        &self,
        mesh_id: &str,
        note: AuditNote,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let mesh_id = mesh_id.to_owned();
        self.write(move |tx| append(tx, &mesh_id, &note, now_ms).map(drop))
            .await
    }
}

fn count(
    counts: &mut redb::Table<(&str, &str), u64>,
    mesh_id: &str,
    event: &str,
    delta: i64,
) -> Result<(), StoreError> {
    let n = counts.get((mesh_id, event))?.map_or(0, |v| v.value());
    counts.insert((mesh_id, event), n.saturating_add_signed(delta))?;
    Ok(())
}

/// Which records `audit_query` wants.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Only records at or after this time.
    pub since_ms: Option<i64>,
    pub event: Option<String>,
    /// Matching records to skip, newest first.
    pub offset: usize,
    /// At most [`MAX_QUERY_LIMIT`].
    pub limit: usize,
}

/// A page of records, newest first, and how many match the filter in all.
#[derive(Debug, Clone, Default)]
pub struct AuditPage {
    pub records: Vec<AuditRecord>,
    pub total: u64,
}

impl Store {
    /// A page of `mesh_id`'s audit log, newest first. Reads back from the newest record; with
    /// `since_ms` it stops at the first older record (times never decrease along the chain).
    /// Records that no longer decode are skipped here (`verify_audit` names them).
    pub fn audit_page(&self, mesh_id: &str, filter: &AuditFilter) -> Result<AuditPage, StoreError> {
        let rt = self.read()?;
        let limit = filter.limit.min(MAX_QUERY_LIMIT);
        // The total without a scan, when the filter allows.
        let known_total = match (&filter.since_ms, &filter.event) {
            (Some(_), _) => None,
            (None, None) => {
                let head: Option<AuditHead> =
                    decode_opt(rt.open_table(AUDIT_HEADS)?.get(mesh_id)?)?;
                Some(head.map_or(0, |h| h.len()))
            }
            (None, Some(event)) => Some(
                rt.open_table(AUDIT_COUNTS)?
                    .get((mesh_id, event.as_str()))?
                    .map_or(0, |v| v.value()),
            ),
        };
        let table = rt.open_table(AUDIT)?;
        let mut page = AuditPage::default();
        let mut matched: u64 = 0;
        for row in table.range((mesh_id, 0)..=(mesh_id, u64::MAX))?.rev() {
            let (_, v) = row?;
            let Ok(record) = decode::<AuditRecord>(v.value()) else {
                continue;
            };
            if filter.since_ms.is_some_and(|since| record.at_ms < since) {
                break;
            }
            if filter.event.as_ref().is_some_and(|e| *e != record.event) {
                continue;
            }
            matched += 1;
            if matched > filter.offset as u64 && page.records.len() < limit {
                page.records.push(record);
            }
            if known_total.is_some() && page.records.len() >= limit {
                break;
            }
        }
        page.total = known_total.unwrap_or(matched);
        Ok(page)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_are_bounded() {
        let mut n = AuditNote::new(AuditEvent::StateSet, AuditActor::broker());
        for k in [
            "a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l", "m", "n",
        ] {
            n = n.with(k, "x".repeat(1000));
        }
        assert_eq!(n.payload.len(), MAX_PAYLOAD_FIELDS);
        assert!(
            n.payload
                .values()
                .all(|v| v.chars().count() == MAX_PAYLOAD_VALUE)
        );
    }
}
