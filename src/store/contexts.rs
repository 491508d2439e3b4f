//! The contexts table (PROTOCOL.md §6): one current context per member and mesh.

use redb::{ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::audit::{self, AuditActor, AuditEvent, AuditNote};
use super::quotas::{self, Quota, QuotaExceeded};
use super::rows::{mesh_rows, scan_mesh_rows};
use super::{Store, StoreError, encode};

/// `(mesh_id, member_id) → ContextRecord`: one current context per member.
pub(crate) const CONTEXTS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("contexts");

/// Opens the contexts table (called from `records::create_tables`).
pub(crate) fn create_tables(tx: &WriteTransaction) -> Result<(), StoreError> {
    tx.open_table(CONTEXTS)?;
    Ok(())
}

/// What one member currently knows about the codebase.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContextRecord {
    pub id: String,
    pub member_id: String,
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
    pub updated_at_ms: i64,
}

impl Store {
    /// The members' contexts in member-id order, from just after member `after`, while
    /// `visit` wants more.
    pub fn scan_contexts(
        &self,
        mesh_id: &str,
        after: Option<&str>,
        visit: impl FnMut(&str, ContextRecord) -> bool,
    ) -> Result<(), StoreError> {
        let rt = self.read()?;
        scan_mesh_rows(&rt.open_table(CONTEXTS)?, mesh_id, after, visit)
    }

    /// Stores a member's context, replacing the one it shared before; a member's first context
    /// counts against `max_contexts`.
    pub async fn share_context(
        &self,
        mesh_id: String,
        context: ContextRecord,
        max_contexts: u64,
    ) -> Result<Result<(), QuotaExceeded>, StoreError> {
        self.write(move |tx| {
            let mut table = tx.open_table(CONTEXTS)?;
            let key = (mesh_id.as_str(), context.member_id.as_str());
            if table.get(key)?.is_none()
                && let Err(e) = quotas::charge(tx, &mesh_id, Quota::Contexts, 1, max_contexts)?
            {
                return Ok(Err(e));
            }
            table.insert(key, encode(&context).as_slice())?;
            drop(table);
            // The id only: the summary and findings are the context's content.
            let by = AuditActor::member(&context.member_id, &context.peer_name);
            let note = AuditNote::new(AuditEvent::ContextShared, by).with("contextId", &context.id);
            audit::append(tx, &mesh_id, &note, context.updated_at_ms)?;
            Ok(Ok(()))
        })
        .await
    }

    /// Every member's current context, most recently updated first.
    pub fn contexts(&self, mesh_id: &str) -> Result<Vec<ContextRecord>, StoreError> {
        let rt = self.read()?;
        let mut out: Vec<ContextRecord> = mesh_rows(&rt.open_table(CONTEXTS)?, mesh_id)?;
        out.sort_by_key(|c| std::cmp::Reverse(c.updated_at_ms));
        Ok(out)
    }
}
