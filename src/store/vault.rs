//! The vault's table (PROTOCOL.md "Vault"): each member's encrypted entries. The broker stores
//! what the client sealed; it never holds a value in clear.

use redb::{ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::audit::{self, AuditActor, AuditEvent, AuditNote};
use super::{Store, StoreError, decode, decode_opt, encode};
use crate::protocol::messages::VaultEntryType;

/// `(mesh_id, member_id, key) → VaultRecord`
pub(crate) const VAULT: TableDefinition<(&str, &str, &str), &[u8]> = TableDefinition::new("vault");

/// Opens the vault table (called from `records::create_tables`).
pub(crate) fn create_tables(tx: &WriteTransaction) -> Result<(), StoreError> {
    tx.open_table(VAULT)?;
    Ok(())
}

/// One stored entry: the value in a secretbox, its key sealed to the member (and perhaps to the
/// broker's service key). `ciphertext`, `nonce` and `sealed_key` are kept exactly as the client
/// sent them (base64 of the client's flavour: the original's clients use URL-safe unpadded) and
/// handed back unchanged by `vault_get`; only the member's client reads them.
#[derive(Clone, Serialize, Deserialize)]
pub struct VaultRecord {
    pub key: String,
    pub ciphertext: String,
    pub nonce: String,
    pub sealed_key: String,
    /// For entries meant for deployed services (this broker's clients only).
    #[serde(default)]
    pub service: Option<ServiceSeal>,
    pub entry_type: VaultEntryType,
    #[serde(default)]
    pub mount_path: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    pub updated_at_ms: i64,
}

/// The value key sealed to the broker's service key, checked and decoded at the edge.
#[derive(Clone, Serialize, Deserialize)]
pub struct ServiceSeal {
    pub sealed_key: Vec<u8>,
    /// The service public key it was sealed to: after `service.key` is replaced, the entry is
    /// no longer usable by services, and `vault_list` says so.
    pub service_public: [u8; 32],
}

/// Why a `vault_set` was not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VaultRefusal {
    /// The member already keeps this many entries.
    TooMany(usize),
}

impl Store {
    /// Stores (or replaces) `record` as one of `member_id`'s entries, unless that member keeps
    /// `max_entries` already and this is a new key. Audited with the key name only.
    pub async fn vault_set(
        &self,
        mesh_id: String,
        member_id: String,
        member_name: String,
        record: VaultRecord,
        max_entries: usize,
    ) -> Result<Result<(), VaultRefusal>, StoreError> {
        self.write(move |tx| {
            let mut table = tx.open_table(VAULT)?;
            let id = (mesh_id.as_str(), member_id.as_str(), record.key.as_str());
            let exists = table.get(id)?.is_some();
            if !exists && count(&table, &mesh_id, &member_id)? >= max_entries {
                return Ok(Err(VaultRefusal::TooMany(max_entries)));
            }
            table.insert(id, encode(&record).as_slice())?;
            let note = AuditNote::new(
                AuditEvent::VaultSet,
                AuditActor::member(&member_id, &member_name),
            )
            .with("key", &record.key)
            .with("type", record.entry_type.as_str());
            audit::append(tx, &mesh_id, &note, record.updated_at_ms)?;
            Ok(Ok(()))
        })
        .await
    }

    /// Deletes one of `member_id`'s entries; whether it existed.
    pub async fn vault_delete(
        &self,
        mesh_id: String,
        member_id: String,
        member_name: String,
        key: String,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        self.write(move |tx| {
            let mut table = tx.open_table(VAULT)?;
            let removed = table
                .remove((mesh_id.as_str(), member_id.as_str(), key.as_str()))?
                .is_some();
            if removed {
                let note = AuditNote::new(
                    AuditEvent::VaultDeleted,
                    AuditActor::member(&member_id, &member_name),
                )
                .with("key", &key);
                audit::append(tx, &mesh_id, &note, now_ms)?;
            }
            Ok(removed)
        })
        .await
    }

    /// One of `member_id`'s entries.
    pub fn vault_entry(
        &self,
        mesh_id: &str,
        member_id: &str,
        key: &str,
    ) -> Result<Option<VaultRecord>, StoreError> {
        let rt = self.read()?;
        decode_opt(rt.open_table(VAULT)?.get((mesh_id, member_id, key))?)
    }

    /// Every entry of `member_id`, in key order.
    pub fn vault_entries(
        &self,
        mesh_id: &str,
        member_id: &str,
    ) -> Result<Vec<VaultRecord>, StoreError> {
        let rt = self.read()?;
        let table = rt.open_table(VAULT)?;
        let mut out = Vec::new();
        for row in table.range((mesh_id, member_id, "")..)? {
            let (k, v) = row?;
            let (mesh, member, _) = k.value();
            if mesh != mesh_id || member != member_id {
                break;
            }
            out.push(decode(v.value())?);
        }
        Ok(out)
    }
}

/// Deletes every entry of `member_id` (when the member is revoked), in the caller's write
/// transaction; how many there were.
pub(crate) fn purge_member(
    tx: &WriteTransaction,
    mesh_id: &str,
    member_id: &str,
) -> Result<usize, StoreError> {
    let mut table = tx.open_table(VAULT)?;
    let mut keys = Vec::new();
    for row in table.range((mesh_id, member_id, "")..)? {
        let (k, _) = row?;
        let (mesh, member, key) = k.value();
        if mesh != mesh_id || member != member_id {
            break;
        }
        keys.push(key.to_string());
    }
    for key in &keys {
        table.remove((mesh_id, member_id, key.as_str()))?;
    }
    Ok(keys.len())
}

/// How many entries `member_id` keeps (bounded by the per-member cap, so the scan is short).
fn count(
    table: &impl ReadableTable<(&'static str, &'static str, &'static str), &'static [u8]>,
    mesh_id: &str,
    member_id: &str,
) -> Result<usize, StoreError> {
    let mut n = 0;
    for row in table.range((mesh_id, member_id, "")..)? {
        let (k, _) = row?;
        let (mesh, member, _) = k.value();
        if mesh != mesh_id || member != member_id {
            break;
        }
        n += 1;
    }
    Ok(n)
}
