//! Typed calls for the mesh's memory (PROTOCOL.md §6): remember, recall and forget.

use super::{ClientError, MeshClient, unexpected};
use crate::protocol::messages::{MemoryEntry, Recall, Remember};
use crate::protocol::{ClientMessage, ServerMessage};

/// What `recall` returns when no limit is given, and the most it returns (the broker's).
const DEFAULT_RECALL: usize = 20;
const MAX_RECALL: usize = 100;

impl MeshClient {
    /// Stores a memory; returns its id once `recall` can find it.
    pub async fn remember(&self, content: &str, tags: Vec<String>) -> Result<String, ClientError> {
        let req = ClientMessage::Remember(Remember {
            content: content.into(),
            tags: Some(tags),
        });
        match self.request(req).await? {
            ServerMessage::MemoryStored { id } => Ok(id),
            other => Err(unexpected(other)),
        }
    }

    /// The mesh's memories that best match `query`, best first: the best `limit` (default
    /// 20, at most 100), over as many pages as that takes.
    pub async fn recall(
        &self,
        query: &str,
        limit: Option<usize>,
    ) -> Result<Vec<MemoryEntry>, ClientError> {
        let wanted = limit.unwrap_or(DEFAULT_RECALL).clamp(1, MAX_RECALL);
        let mut found: Vec<MemoryEntry> = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let req = ClientMessage::Recall(Recall {
                query: query.into(),
                limit: Some(wanted - found.len()),
                cursor: cursor.clone(),
            });
            let next = match self.request(req).await? {
                ServerMessage::MemoryResults {
                    memories,
                    next_cursor,
                } => {
                    found.extend(memories);
                    next_cursor
                }
                other => return Err(unexpected(other)),
            };
            if found.len() >= wanted || next.is_none() || next == cursor {
                found.truncate(wanted);
                return Ok(found);
            }
            cursor = next;
        }
    }

    pub async fn forget(&self, memory_id: &str) -> Result<(), ClientError> {
        self.request_ack(ClientMessage::Forget {
            memory_id: memory_id.into(),
        })
        .await
    }
}
