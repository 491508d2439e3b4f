//! Inbound webhooks' table (PROTOCOL.md §22). The signing secret is kept sealed to the broker's
//! service key, never in clear.

use redb::{TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::audit::{self, AuditActor, AuditEvent, AuditNote};
use super::rows::{mesh_rows, remove_mesh_rows};
use super::{Store, StoreError, decode_opt, encode};

/// `(mesh_id, webhook_id) → WebhookRecord`
pub(crate) const WEBHOOKS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("webhooks");

/// Opens the webhooks table (called from `records::create_tables`).
pub(crate) fn create_tables(tx: &WriteTransaction) -> Result<(), StoreError> {
    tx.open_table(WEBHOOKS)?;
    Ok(())
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WebhookRecord {
    pub id: String,
    pub mesh_id: String,
    /// Unique in its mesh.
    pub name: String,
    pub member_id: String,
    pub member_name: String,
    /// Target spec: a member pubkey, `@group` or `*`.
    pub target: String,
    /// The secret sealed to the broker's service key (`crypto_box_seal`).
    pub sealed_secret: Vec<u8>,
    pub created_at_ms: i64,
}

/// Why a webhook was not created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookRefusal {
    NameTaken,
    TooMany(usize),
}

impl Store {
    /// Stores a new webhook unless its name is taken in the mesh or the mesh has
    /// `max_per_mesh`; audited (name and target, never the secret).
    pub async fn add_webhook(
        &self,
        record: WebhookRecord,
        max_per_mesh: usize,
    ) -> Result<Result<(), WebhookRefusal>, StoreError> {
        self.write(move |tx| {
            let mut table = tx.open_table(WEBHOOKS)?;
            let existing = mesh_rows::<WebhookRecord>(&table, &record.mesh_id)?;
            if existing.iter().any(|w| w.name == record.name) {
                return Ok(Err(WebhookRefusal::NameTaken));
            }
            if existing.len() >= max_per_mesh {
                return Ok(Err(WebhookRefusal::TooMany(max_per_mesh)));
            }
            table.insert(
                (record.mesh_id.as_str(), record.id.as_str()),
                encode(&record).as_slice(),
            )?;
            let note = AuditNote::new(
                AuditEvent::WebhookCreated,
                AuditActor::member(&record.member_id, &record.member_name),
            )
            .with("name", &record.name)
            .with("target", &record.target);
            audit::append(tx, &record.mesh_id, &note, record.created_at_ms)?;
            Ok(Ok(()))
        })
        .await
    }

    /// Deletes the webhook named `name` when `may_delete` allows it; `Ok(None)` when there is
    /// none of that name, `Ok(Some(false))` when `may_delete` refused. Audited.
    pub async fn delete_webhook(
        &self,
        mesh_id: String,
        name: String,
        by: AuditActor,
        may_delete: impl FnOnce(&WebhookRecord) -> bool + Send + 'static,
        now_ms: i64,
    ) -> Result<Option<bool>, StoreError> {
        self.write(move |tx| {
            let mut table = tx.open_table(WEBHOOKS)?;
            let Some(found) = mesh_rows::<WebhookRecord>(&table, &mesh_id)?
                .into_iter()
                .find(|w| w.name == name)
            else {
                return Ok(None);
            };
            if !may_delete(&found) {
                return Ok(Some(false));
            }
            table.remove((mesh_id.as_str(), found.id.as_str()))?;
            let note = AuditNote::new(AuditEvent::WebhookDeleted, by).with("name", &name);
            audit::append(tx, &mesh_id, &note, now_ms)?;
            Ok(Some(true))
        })
        .await
    }

    pub fn webhook(
        &self,
        mesh_id: &str,
        webhook_id: &str,
    ) -> Result<Option<WebhookRecord>, StoreError> {
        let rt = self.read()?;
        decode_opt(rt.open_table(WEBHOOKS)?.get((mesh_id, webhook_id))?)
    }

    /// A mesh's webhooks, in id order.
    pub fn webhooks_of(&self, mesh_id: &str) -> Result<Vec<WebhookRecord>, StoreError> {
        let rt = self.read()?;
        mesh_rows::<WebhookRecord>(&rt.open_table(WEBHOOKS)?, mesh_id)
    }
}

/// Deletes every webhook of `member_id` (when the member is revoked), in the caller's write
/// transaction; how many there were. Their URLs answer 404 from then on.
pub(crate) fn purge_member(
    tx: &WriteTransaction,
    mesh_id: &str,
    member_id: &str,
) -> Result<usize, StoreError> {
    remove_mesh_rows::<WebhookRecord>(&mut tx.open_table(WEBHOOKS)?, mesh_id, |r| {
        r.member_id == member_id
    })
}
