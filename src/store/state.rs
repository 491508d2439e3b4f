//! The state board's table (PROTOCOL.md §6): one JSON value per key and mesh.

use redb::{ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::audit::{self, AuditActor, AuditEvent, AuditNote};
use super::quotas::{self, Quota, QuotaExceeded};
use super::rows::scan_mesh_rows;
use super::{MeshQuotas, Store, StoreError, decode_opt, encode};

/// `(mesh_id, key) → StateRecord`
pub(crate) const STATE: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("state");

/// Opens the state table (called from `records::create_tables`).
pub(crate) fn create_tables(tx: &WriteTransaction) -> Result<(), StoreError> {
    tx.open_table(STATE)?;
    Ok(())
}

/// One key of the state board. The value is kept as JSON text: any JSON value round-trips
/// exactly, whatever encoding the client spoke.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StateRecord {
    pub key: String,
    pub value_json: String,
    pub updated_by: String,
    pub updated_by_member_id: String,
    pub updated_at_ms: i64,
}

impl StateRecord {
    pub fn value(&self) -> serde_json::Value {
        serde_json::from_str(&self.value_json).unwrap_or(serde_json::Value::Null)
    }
}

impl Store {
    /// Sets (or, with `delete`, deletes) a state key; returns the stored record, or the quota
    /// the change would break (then nothing changes).
    pub async fn set_state(
        &self,
        mesh_id: String,
        record: StateRecord,
        delete: bool,
        limits: MeshQuotas,
    ) -> Result<Result<StateRecord, QuotaExceeded>, StoreError> {
        self.write(move |tx| {
            let key = (mesh_id.as_str(), record.key.as_str());
            let old: Option<StateRecord> = decode_opt(tx.open_table(STATE)?.get(key)?)?;
            let old_bytes = old
                .as_ref()
                .map_or(0, |r| quotas::state_bytes(&r.key, &r.value_json));
            let mut table = tx.open_table(STATE)?;
            // The key and the value's size, never the value.
            let actor = AuditActor::member(&record.updated_by_member_id, &record.updated_by);
            if delete {
                if old.is_some() {
                    table.remove(key)?;
                    quotas::free(tx, &mesh_id, Quota::StateKeys, 1)?;
                    quotas::free(tx, &mesh_id, Quota::StateBytes, old_bytes)?;
                    let note =
                        AuditNote::new(AuditEvent::StateDeleted, actor).with("key", &record.key);
                    audit::append(tx, &mesh_id, &note, record.updated_at_ms)?;
                }
                return Ok(Ok(record));
            }
            let new_bytes = quotas::state_bytes(&record.key, &record.value_json);
            if old.is_none()
                && let Err(e) =
                    quotas::charge(tx, &mesh_id, Quota::StateKeys, 1, limits.state_keys)?
            {
                return Ok(Err(e));
            }
            let delta = new_bytes as i64 - old_bytes as i64;
            if let Err(e) =
                quotas::charge(tx, &mesh_id, Quota::StateBytes, delta, limits.state_bytes)?
            {
                if old.is_none() {
                    quotas::free(tx, &mesh_id, Quota::StateKeys, 1)?;
                }
                return Ok(Err(e));
            }
            table.insert(key, encode(&record).as_slice())?;
            let note = AuditNote::new(AuditEvent::StateSet, actor)
                .with("key", &record.key)
                .with("bytes", record.value_json.len());
            audit::append(tx, &mesh_id, &note, record.updated_at_ms)?;
            Ok(Ok(record))
        })
        .await
    }

    pub fn state(&self, mesh_id: &str, key: &str) -> Result<Option<StateRecord>, StoreError> {
        let rt = self.read()?;
        decode_opt(rt.open_table(STATE)?.get((mesh_id, key))?)
    }

    /// The first `max` state keys of a mesh, in key order, without reading their values.
    pub fn state_keys(&self, mesh_id: &str, max: usize) -> Result<Vec<String>, StoreError> {
        let rt = self.read()?;
        let table = rt.open_table(STATE)?;
        let mut out = Vec::new();
        for row in table.range((mesh_id, "")..)? {
            let (k, _) = row?;
            let (mesh, key) = k.value();
            if mesh != mesh_id || out.len() >= max {
                break;
            }
            out.push(key.to_string());
        }
        Ok(out)
    }

    /// A mesh's state keys in key order, from just after `after`, while `visit` wants more.
    pub fn scan_state(
        &self,
        mesh_id: &str,
        after: Option<&str>,
        visit: impl FnMut(&str, StateRecord) -> bool,
    ) -> Result<(), StoreError> {
        let rt = self.read()?;
        scan_mesh_rows(&rt.open_table(STATE)?, mesh_id, after, visit)
    }
}
