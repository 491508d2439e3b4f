//! Typed calls for shared contexts (PROTOCOL.md §6): share, search and list them.

use super::{ClientError, MeshClient, unexpected};
use crate::protocol::messages::{ContextEntry, ShareContext};
use crate::protocol::{ClientMessage, ServerMessage};

impl MeshClient {
    /// Shares what this member knows (replacing what it shared before); returns its id.
    pub async fn share_context(&self, context: ShareContext) -> Result<String, ClientError> {
        match self.request(ClientMessage::ShareContext(context)).await? {
            ServerMessage::ContextShared { id } => Ok(id),
            other => Err(unexpected(other)),
        }
    }

    pub async fn get_context(&self, query: &str) -> Result<Vec<ContextEntry>, ClientError> {
        match self
            .request(ClientMessage::GetContext {
                query: query.into(),
            })
            .await?
        {
            ServerMessage::ContextResults { contexts } => Ok(contexts),
            other => Err(unexpected(other)),
        }
    }

    /// Every member's context, most recently updated first (all pages).
    pub async fn list_contexts(&self) -> Result<Vec<ContextEntry>, ClientError> {
        let mut contexts = self
            .all_pages(
                |cursor| ClientMessage::ListContexts {
                    cursor,
                    limit: None,
                },
                |answer| match answer {
                    ServerMessage::ContextList {
                        contexts,
                        next_cursor,
                    } => Ok((contexts, next_cursor)),
                    other => Err(unexpected(other)),
                },
            )
            .await?;
        contexts.sort_by(|a, b| b.updated_at.cmp(&a.updated_at));
        Ok(contexts)
    }
}
