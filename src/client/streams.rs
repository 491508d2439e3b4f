//! Typed calls for streams (PROTOCOL.md §6); data arrives as `ServerMessage::StreamData` pushes.

use super::{ClientError, MeshClient, unexpected};
use crate::protocol::messages::StreamEntry;
use crate::protocol::{ClientMessage, ServerMessage};

impl MeshClient {
    /// Creates a stream (or finds the one of that name); returns its id.
    pub async fn create_stream(&self, name: &str) -> Result<String, ClientError> {
        match self
            .request(ClientMessage::CreateStream { name: name.into() })
            .await?
        {
            ServerMessage::StreamCreated { id, .. } => Ok(id),
            other => Err(unexpected(other)),
        }
    }

    /// Subscribes this connection; data arrives as pushes until it unsubscribes or goes.
    pub async fn subscribe(&self, stream: &str) -> Result<(), ClientError> {
        match self
            .request(ClientMessage::Subscribe {
                stream: stream.into(),
            })
            .await?
        {
            ServerMessage::Subscribed { .. } => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    pub async fn unsubscribe(&self, stream: &str) -> Result<(), ClientError> {
        self.request_ack(ClientMessage::Unsubscribe {
            stream: stream.into(),
        })
        .await
    }

    pub async fn publish(&self, stream: &str, data: serde_json::Value) -> Result<(), ClientError> {
        self.request_ack(ClientMessage::Publish {
            stream: stream.into(),
            data,
        })
        .await
    }

    pub async fn list_streams(&self) -> Result<Vec<StreamEntry>, ClientError> {
        match self.request(ClientMessage::ListStreams {}).await? {
            ServerMessage::StreamList { streams } => Ok(streams),
            other => Err(unexpected(other)),
        }
    }
}
