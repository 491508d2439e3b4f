//! Typed calls for the state board (PROTOCOL.md §6): set, get and list its keys.

use super::{ClientError, MeshClient, unexpected};
use crate::protocol::messages::{SetState, StateEntry};
use crate::protocol::{ClientMessage, ServerMessage};

impl MeshClient {
    /// Sets a state key (`null` deletes it); every other live peer is told.
    pub async fn set_state(
        &self,
        key: &str,
        value: serde_json::Value,
    ) -> Result<StateEntry, ClientError> {
        let req = ClientMessage::SetState(SetState {
            key: key.into(),
            value,
        });
        match self.request(req).await? {
            ServerMessage::StateResult(e) => Ok(e),
            other => Err(unexpected(other)),
        }
    }

    /// A state key; `value` is `null` when it is not set.
    pub async fn get_state(&self, key: &str) -> Result<StateEntry, ClientError> {
        match self
            .request(ClientMessage::GetState { key: key.into() })
            .await?
        {
            ServerMessage::StateResult(e) => Ok(e),
            other => Err(unexpected(other)),
        }
    }

    /// Every state key, in key order (all pages).
    pub async fn list_state(&self) -> Result<Vec<StateEntry>, ClientError> {
        self.all_pages(
            |cursor| ClientMessage::ListState {
                cursor,
                limit: None,
            },
            |answer| match answer {
                ServerMessage::StateList {
                    entries,
                    next_cursor,
                } => Ok((entries, next_cursor)),
                other => Err(unexpected(other)),
            },
        )
        .await
    }
}
