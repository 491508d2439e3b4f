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
//! record cut from the end is found too. [`Store::verify_audit`] walks the chain from seq 1 in
//! one read transaction, one record at a time.

use std::collections::BTreeMap;

use redb::{ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::{Store, StoreError, decode, decode_opt, encode};
use crate::crypto;

/// `(mesh_id, seq) → AuditRecord`, seq from 1 per mesh.
pub(crate) const AUDIT: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("audit");
/// `mesh_id → AuditHead`: the chain's tip.
pub(crate) const AUDIT_HEADS: TableDefinition<&str, &[u8]> = TableDefinition::new("audit_heads");
/// `(mesh_id, event type) → records of that type`, for `audit_result.total` without a scan.
pub(crate) const AUDIT_COUNTS: TableDefinition<(&str, &str), u64> =
    TableDefinition::new("audit_counts");

/// The domain tag that starts every record's canonical bytes (the encoding's version).
pub const CHAIN_TAG: &str = "claudemesh-audit-v1";
/// Most payload fields one record holds; more are dropped.
pub const MAX_PAYLOAD_FIELDS: usize = 12;
/// Longest payload value, in characters; longer ones are cut.
pub const MAX_PAYLOAD_VALUE: usize = 256;
/// Most records one `audit_query` answer holds.
pub const MAX_QUERY_LIMIT: usize = 500;

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

/// The tip of a mesh's chain.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct AuditHead {
    seq: u64,
    hash: String,
    at_ms: i64,
}

fn field(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// The bytes a record's hash covers (PROTOCOL.md §12.5), with `f(s)` = 4-byte big-endian
/// length of `s`'s UTF-8 bytes, then those bytes:
/// `f(CHAIN_TAG) ‖ f(mesh_id) ‖ seq u64be ‖ at_ms i64be ‖ f(event) ‖ f(actor_member_id) ‖
/// f(actor_name) ‖ n u32be ‖ n × (f(key) ‖ f(value)) in key byte order ‖ prev 32 bytes`.
/// `None` when `prev_hash` is not 64 hex.
pub fn canonical_bytes(mesh_id: &str, r: &AuditRecord) -> Option<Vec<u8>> {
    let prev = hex::decode(&r.prev_hash).ok().filter(|p| p.len() == 32)?;
    let mut out = Vec::with_capacity(256);
    field(&mut out, CHAIN_TAG);
    field(&mut out, mesh_id);
    out.extend_from_slice(&r.seq.to_be_bytes());
    out.extend_from_slice(&r.at_ms.to_be_bytes());
    field(&mut out, &r.event);
    field(&mut out, &r.actor_member_id);
    field(&mut out, &r.actor_name);
    out.extend_from_slice(&(r.payload.len() as u32).to_be_bytes());
    // A BTreeMap<String, _> iterates in byte order of its keys.
    for (k, v) in &r.payload {
        field(&mut out, k);
        field(&mut out, v);
    }
    out.extend_from_slice(&prev);
    Some(out)
}

/// The hash a record should carry, as 64 hex (`None`: its `prev_hash` is malformed).
pub fn record_hash(mesh_id: &str, r: &AuditRecord) -> Option<String> {
    canonical_bytes(mesh_id, r).map(|b| hex::encode(crypto::sha256(&b)))
}

fn genesis() -> String {
    "0".repeat(64)
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
    let mut heads = tx.open_table(AUDIT_HEADS)?;
    let head: AuditHead = decode_opt(heads.get(mesh_id)?)?.unwrap_or_default();
    let mut record = AuditRecord {
        seq: head.seq + 1,
        at_ms: now_ms.max(head.at_ms),
        event: note.event.as_str().to_string(),
        actor_member_id: note.actor.member_id.clone(),
        actor_name: note.actor.name.clone(),
        payload: note.payload.clone(),
        prev_hash: if head.seq == 0 { genesis() } else { head.hash },
        hash: String::new(),
    };
    record.hash = record_hash(mesh_id, &record)
        .ok_or_else(|| StoreError::Decode("the audit head's hash is not 64 hex".into()))?;
    tx.open_table(AUDIT)?
        .insert((mesh_id, record.seq), encode(&record).as_slice())?;
    let new_head = AuditHead {
        seq: record.seq,
        hash: record.hash.clone(),
        at_ms: record.at_ms,
    };
    heads.insert(mesh_id, encode(&new_head).as_slice())?;
    let mut counts = tx.open_table(AUDIT_COUNTS)?;
    let key = (mesh_id, record.event.as_str());
    let n = counts.get(key)?.map_or(0, |v| v.value());
    counts.insert(key, n + 1)?;
    Ok(record)
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

/// Why a chain does not verify, at [`AuditVerdict::broken_at`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditBreak {
    /// The record's contents do not hash to its stored hash (edited).
    Hash,
    /// The record's `prev_hash` is not the previous record's hash.
    Link,
    /// No record with this seq, though later ones (or the head) exist (deleted).
    Missing,
    /// The stored bytes do not decode as a record, or name another seq.
    Unreadable,
}

impl AuditBreak {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditBreak::Hash => "hash_mismatch",
            AuditBreak::Link => "broken_link",
            AuditBreak::Missing => "missing",
            AuditBreak::Unreadable => "unreadable",
        }
    }
}

/// What [`Store::verify_audit`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditVerdict {
    /// Records found sound: all of them when valid, else those before the broken one.
    pub entries: u64,
    /// The first broken record's seq, why, and its event type when it could be read.
    pub broken: Option<(u64, AuditBreak, Option<String>)>,
    /// The last record's hash (what an operator can note down elsewhere to anchor the chain).
    pub head_hash: Option<String>,
}

impl AuditVerdict {
    pub fn valid(&self) -> bool {
        self.broken.is_none()
    }
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
                Some(head.map_or(0, |h| h.seq))
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

    /// Recomputes `mesh_id`'s chain from seq 1 and reports the first broken record: one whose
    /// hash does not match its contents, whose `prev_hash` is not the previous record's hash, a
    /// seq that is missing (before a later record or the head), or bytes that do not decode.
    /// One read transaction, one record in memory at a time.
    pub fn verify_audit(&self, mesh_id: &str) -> Result<AuditVerdict, StoreError> {
        let rt = self.read()?;
        let head: Option<AuditHead> = decode_opt(rt.open_table(AUDIT_HEADS)?.get(mesh_id)?)?;
        let table = rt.open_table(AUDIT)?;
        let mut verdict = AuditVerdict {
            entries: 0,
            broken: None,
            head_hash: head.as_ref().map(|h| h.hash.clone()),
        };
        let mut prev = genesis();
        let mut expected: u64 = 1;
        for row in table.range((mesh_id, 0)..=(mesh_id, u64::MAX))? {
            let (k, v) = row?;
            let seq = k.value().1;
            if seq != expected {
                verdict.broken = Some((expected, AuditBreak::Missing, None));
                return Ok(verdict);
            }
            let record = match decode::<AuditRecord>(v.value()) {
                Ok(r) if r.seq == seq => r,
                _ => {
                    verdict.broken = Some((seq, AuditBreak::Unreadable, None));
                    return Ok(verdict);
                }
            };
            let why = if record.prev_hash != prev {
                Some(AuditBreak::Link)
            } else if record_hash(mesh_id, &record).as_deref() != Some(record.hash.as_str()) {
                Some(AuditBreak::Hash)
            } else {
                None
            };
            if let Some(why) = why {
                verdict.broken = Some((seq, why, Some(record.event)));
                return Ok(verdict);
            }
            verdict.entries += 1;
            prev = record.hash;
            expected += 1;
        }
        // The head names the last record written: records cut from the end, or added or
        // rewritten past it, show here.
        let last = expected - 1;
        if let Some(head) = head {
            verdict.broken = if head.seq > last {
                Some((last + 1, AuditBreak::Missing, None))
            } else if head.seq < last {
                Some((head.seq + 1, AuditBreak::Link, None))
            } else if last > 0 && head.hash != prev {
                Some((last, AuditBreak::Hash, None))
            } else {
                None
            };
            if let Some((at, _, _)) = verdict.broken {
                verdict.entries = at - 1;
            }
        }
        Ok(verdict)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note(i: u32) -> AuditNote {
        AuditNote::new(AuditEvent::StateSet, AuditActor::member("m1", "alice"))
            .with("key", format!("k{i}"))
    }

    async fn log(store: &Store, mesh: &str, n: u32) {
        for i in 0..n {
            let mesh = mesh.to_string();
            store
                .write(move |tx| append(tx, &mesh, &note(i), 1_000 + i64::from(i)))
                .await
                .unwrap();
        }
    }

    async fn rewrite(
        store: &Store,
        mesh: &str,
        seq: u64,
        change: impl FnOnce(&mut AuditRecord) + Send + 'static,
    ) {
        let mesh = mesh.to_string();
        store
            .write(move |tx| {
                let mut t = tx.open_table(AUDIT)?;
                let mut r: AuditRecord = decode_opt(t.get((mesh.as_str(), seq))?)?.unwrap();
                change(&mut r);
                t.insert((mesh.as_str(), seq), encode(&r).as_slice())?;
                Ok(())
            })
            .await
            .unwrap();
    }

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

    #[tokio::test]
    async fn a_chain_verifies_and_names_its_first_broken_record() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        log(&store, "A", 5).await;
        log(&store, "B", 2).await;
        let ok = store.verify_audit("A").unwrap();
        assert!(ok.valid(), "{ok:?}");
        assert_eq!(ok.entries, 5);
        assert!(store.verify_audit("empty").unwrap().valid());

        // Newest first, filtered, with totals.
        let page = store
            .audit_page(
                "A",
                &AuditFilter {
                    limit: 2,
                    offset: 1,
                    ..Default::default()
                },
            )
            .unwrap();
        assert_eq!(page.total, 5);
        let seqs: Vec<u64> = page.records.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, [4, 3]);
        let since = store
            .audit_page(
                "A",
                &AuditFilter {
                    limit: 10,
                    since_ms: Some(1_003),
                    ..Default::default()
                },
            )
            .unwrap();
        assert_eq!((since.total, since.records.len()), (2, 2));

        rewrite(&store, "A", 3, |r| {
            r.payload.insert("key".into(), "forged".into());
        })
        .await;
        let v = store.verify_audit("A").unwrap();
        assert_eq!(
            v.broken,
            Some((3, AuditBreak::Hash, Some("state.set".into())))
        );
        assert_eq!(v.entries, 2);

        // A record whose hash is recomputed still breaks the next one's link.
        rewrite(&store, "A", 3, |r| r.hash = record_hash("A", r).unwrap()).await;
        let v = store.verify_audit("A").unwrap();
        assert_eq!(v.broken.map(|b| (b.0, b.1)), Some((4, AuditBreak::Link)));

        // A deleted record is named by its seq; so is one cut from the end.
        let cut = |seq: u64| {
            store.write(move |tx| {
                tx.open_table(AUDIT)?.remove(("B", seq))?;
                Ok(())
            })
        };
        cut(2).await.unwrap();
        assert_eq!(
            store.verify_audit("B").unwrap().broken,
            Some((2, AuditBreak::Missing, None))
        );
        cut(1).await.unwrap();
        assert_eq!(
            store.verify_audit("B").unwrap().broken.map(|b| b.0),
            Some(1)
        );
        store.close();
    }
}
