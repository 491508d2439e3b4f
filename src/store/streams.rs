//! The streams table (PROTOCOL.md §6): the named streams of a mesh (what is published on
//! them is never stored).

use redb::{ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::audit::{self, AuditActor, AuditEvent, AuditNote};
use super::quotas::{self, Quota, QuotaExceeded};
use super::rows::mesh_rows;
use super::{Store, StoreError, decode_opt, encode};

/// `(mesh_id, stream name) → StreamRecord`
pub(crate) const STREAMS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("streams");

/// Opens the streams table (called from `records::create_tables`).
pub(crate) fn create_tables(tx: &WriteTransaction) -> Result<(), StoreError> {
    tx.open_table(STREAMS)?;
    Ok(())
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StreamRecord {
    pub id: String,
    pub name: String,
    pub created_by: String,
    pub created_at_ms: i64,
}

impl Store {
    /// Creates a stream, or returns the one of that name that exists; a new one counts against
    /// `max_streams`.
    pub async fn create_stream(
        &self,
        mesh_id: String,
        stream: StreamRecord,
        max_streams: u64,
        by: AuditActor,
    ) -> Result<Result<StreamRecord, QuotaExceeded>, StoreError> {
        self.write(move |tx| {
            let key = (mesh_id.as_str(), stream.name.as_str());
            if let Some(existing) = decode_opt::<StreamRecord>(tx.open_table(STREAMS)?.get(key)?)? {
                return Ok(Ok(existing));
            }
            if let Err(e) = quotas::charge(tx, &mesh_id, Quota::Streams, 1, max_streams)? {
                return Ok(Err(e));
            }
            tx.open_table(STREAMS)?
                .insert(key, encode(&stream).as_slice())?;
            let note = AuditNote::new(AuditEvent::StreamCreated, by)
                .with("streamId", &stream.id)
                .with("name", &stream.name);
            audit::append(tx, &mesh_id, &note, stream.created_at_ms)?;
            Ok(Ok(stream))
        })
        .await
    }

    pub fn stream(&self, mesh_id: &str, name: &str) -> Result<Option<StreamRecord>, StoreError> {
        let rt = self.read()?;
        decode_opt(rt.open_table(STREAMS)?.get((mesh_id, name))?)
    }

    /// Every stream of a mesh, in name order.
    pub fn streams(&self, mesh_id: &str) -> Result<Vec<StreamRecord>, StoreError> {
        let rt = self.read()?;
        mesh_rows(&rt.open_table(STREAMS)?, mesh_id)
    }
}
