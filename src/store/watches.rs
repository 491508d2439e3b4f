//! URL watches' table (PROTOCOL.md §21): each watch with its last value, so polling resumes
//! after a restart where it left off.

use redb::{ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::audit::{self, AuditActor, AuditEvent, AuditNote};
use super::rows::{mesh_row_count, mesh_rows, remove_mesh_rows};
use super::{Store, StoreError, decode, decode_opt, encode};

/// `(mesh_id, watch_id) → WatchRecord`
pub(crate) const WATCHES: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("watches");

/// Opens the watches table (called from `records::create_tables`).
pub(crate) fn create_tables(tx: &WriteTransaction) -> Result<(), StoreError> {
    tx.open_table(WATCHES)?;
    Ok(())
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WatchRecord {
    pub id: String,
    pub mesh_id: String,
    pub member_id: String,
    pub member_name: String,
    pub url: String,
    /// `hash`, `json` or `status`.
    pub mode: String,
    #[serde(default)]
    pub extract: Option<String>,
    pub interval_s: u64,
    /// `change`, `match:<v>` or `not_match:<v>`.
    pub notify_on: String,
    /// The custom headers as JSON, sealed to the broker's service key (they may carry
    /// credentials); empty when there are none.
    #[serde(default)]
    pub sealed_headers: Vec<u8>,
    #[serde(default)]
    pub header_names: Vec<String>,
    #[serde(default)]
    pub label: Option<String>,
    /// Target spec: a member pubkey, `@group` or `*`.
    pub target: String,
    pub created_at_ms: i64,
    #[serde(default)]
    pub last_value: Option<String>,
    #[serde(default)]
    pub last_check_ms: Option<i64>,
    #[serde(default)]
    pub last_error: Option<String>,
    /// Polls that failed in a row (for the back-off).
    #[serde(default)]
    pub failures: u32,
    /// Notifications sent: the next one's id is derived from it, so a notification queued
    /// just before a crash is stored once when the poll after the restart repeats it.
    #[serde(default)]
    pub notified: u64,
}

/// What one poll found, to be stored.
pub enum PollOutcome {
    Value { value: String, notified: bool },
    Failed(String),
}

impl Store {
    /// Stores a new watch unless the mesh has `max_per_mesh` already; audited.
    pub async fn add_watch(
        &self,
        record: WatchRecord,
        max_per_mesh: usize,
    ) -> Result<bool, StoreError> {
        self.write(move |tx| {
            let mut table = tx.open_table(WATCHES)?;
            if mesh_row_count(&table, &record.mesh_id)? >= max_per_mesh as u64 {
                return Ok(false);
            }
            table.insert(
                (record.mesh_id.as_str(), record.id.as_str()),
                encode(&record).as_slice(),
            )?;
            let note = AuditNote::new(
                AuditEvent::WatchCreated,
                AuditActor::member(&record.member_id, &record.member_name),
            )
            .with("watchId", &record.id)
            .with("mode", &record.mode)
            .with("target", &record.target);
            audit::append(tx, &record.mesh_id, &note, record.created_at_ms)?;
            Ok(true)
        })
        .await
    }

    /// Removes a watch; the removed record, if there was one. Audited.
    pub async fn remove_watch(
        &self,
        mesh_id: String,
        watch_id: String,
        by: AuditActor,
        now_ms: i64,
    ) -> Result<Option<WatchRecord>, StoreError> {
        self.write(move |tx| {
            let mut table = tx.open_table(WATCHES)?;
            let removed: Option<WatchRecord> =
                decode_opt(table.remove((mesh_id.as_str(), watch_id.as_str()))?)?;
            if removed.is_some() {
                let note = AuditNote::new(AuditEvent::WatchRemoved, by).with("watchId", &watch_id);
                audit::append(tx, &mesh_id, &note, now_ms)?;
            }
            Ok(removed)
        })
        .await
    }

    /// Records a poll's outcome; `false` when the watch is gone (removed meanwhile).
    pub async fn record_poll(
        &self,
        mesh_id: String,
        watch_id: String,
        outcome: PollOutcome,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        self.write(move |tx| {
            let mut table = tx.open_table(WATCHES)?;
            let key = (mesh_id.as_str(), watch_id.as_str());
            let Some(mut record): Option<WatchRecord> = decode_opt(table.get(key)?)? else {
                return Ok(false);
            };
            record.last_check_ms = Some(now_ms);
            match outcome {
                PollOutcome::Value { value, notified } => {
                    record.last_value = Some(value);
                    record.last_error = None;
                    record.failures = 0;
                    record.notified += u64::from(notified);
                }
                PollOutcome::Failed(why) => {
                    record.last_error = Some(why);
                    record.failures = record.failures.saturating_add(1);
                }
            }
            table.insert(key, encode(&record).as_slice())?;
            Ok(true)
        })
        .await
    }

    pub fn watch(&self, mesh_id: &str, watch_id: &str) -> Result<Option<WatchRecord>, StoreError> {
        let rt = self.read()?;
        decode_opt(rt.open_table(WATCHES)?.get((mesh_id, watch_id))?)
    }

    /// A mesh's watches, in id order.
    pub fn watches_of(&self, mesh_id: &str) -> Result<Vec<WatchRecord>, StoreError> {
        let rt = self.read()?;
        mesh_rows(&rt.open_table(WATCHES)?, mesh_id)
    }

    /// Every stored watch (at start, to resume polling).
    pub fn all_watches(&self) -> Result<Vec<WatchRecord>, StoreError> {
        let rt = self.read()?;
        let table = rt.open_table(WATCHES)?;
        let mut out = Vec::new();
        for row in table.iter()? {
            let (_, v) = row?;
            out.push(decode(v.value())?);
        }
        Ok(out)
    }
}

/// Deletes every watch of `member_id` (when the member is revoked), in the caller's write
/// transaction; how many there were. A removed watch's polling task ends at its next look.
pub(crate) fn purge_member(
    tx: &WriteTransaction,
    mesh_id: &str,
    member_id: &str,
) -> Result<usize, StoreError> {
    remove_mesh_rows::<WatchRecord>(&mut tx.open_table(WATCHES)?, mesh_id, |r| {
        r.member_id == member_id
    })
}
