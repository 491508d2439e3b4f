//! Typed calls for URL watches (PROTOCOL.md §21).

use super::{ClientError, MeshClient, unexpected};
use crate::protocol::messages::{Watch, WatchEntry};
use crate::protocol::{ClientMessage, ServerMessage};

/// What `watch` answered.
#[derive(Debug, Clone)]
pub struct WatchCreated {
    pub watch_id: String,
    pub url: String,
    pub mode: String,
    pub interval: u64,
}

impl MeshClient {
    /// Asks the broker to poll a URL; `watch.target` is a target spec (a pubkey, `@group`,
    /// `*`), or `None` for this member.
    pub async fn watch(&self, watch: Watch) -> Result<WatchCreated, ClientError> {
        match self.request(ClientMessage::Watch(Box::new(watch))).await? {
            ServerMessage::WatchAck {
                watch_id,
                url,
                mode,
                interval,
            } => Ok(WatchCreated {
                watch_id,
                url,
                mode,
                interval,
            }),
            other => Err(unexpected(other)),
        }
    }

    pub async fn unwatch(&self, watch_id: &str) -> Result<(), ClientError> {
        self.request_ack(ClientMessage::Unwatch {
            watch_id: watch_id.into(),
        })
        .await
    }

    /// The mesh's watches.
    pub async fn watches(&self) -> Result<Vec<WatchEntry>, ClientError> {
        match self.request(ClientMessage::WatchList {}).await? {
            ServerMessage::WatchListResult { watches } => Ok(watches),
            other => Err(unexpected(other)),
        }
    }
}
