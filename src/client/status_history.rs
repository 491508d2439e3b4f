//! Typed call for the mesh's status history (PROTOCOL.md §5.3).

use super::{ClientError, MeshClient, unexpected};
use crate::protocol::messages::StatusChange;
use crate::protocol::{ClientMessage, ServerMessage};

impl MeshClient {
    /// Every status change of the mesh's sessions since `since` (ISO 8601; `None`: as far back
    /// as the broker keeps, 6 hours), oldest first.
    pub async fn status_history(
        &self,
        since: Option<String>,
    ) -> Result<Vec<StatusChange>, ClientError> {
        match self.request(ClientMessage::StatusHistory { since }).await? {
            ServerMessage::StatusHistoryResult { changes } => Ok(changes),
            other => Err(unexpected(other)),
        }
    }
}
