//! Typed calls for inbound webhooks (PROTOCOL.md §22).

use super::{ClientError, MeshClient, unexpected};
use crate::protocol::messages::{CreateWebhook, WebhookEntry};
use crate::protocol::{ClientMessage, ServerMessage};

/// What `create_webhook` answered: the URL and the secret, shown this once.
#[derive(Debug, Clone)]
pub struct WebhookCreated {
    pub name: String,
    pub url: String,
    pub secret: String,
}

impl MeshClient {
    pub async fn create_webhook(&self, req: CreateWebhook) -> Result<WebhookCreated, ClientError> {
        match self.request(ClientMessage::CreateWebhook(req)).await? {
            ServerMessage::WebhookAck { name, url, secret } => {
                Ok(WebhookCreated { name, url, secret })
            }
            other => Err(unexpected(other)),
        }
    }

    pub async fn list_webhooks(&self) -> Result<Vec<WebhookEntry>, ClientError> {
        match self.request(ClientMessage::ListWebhooks {}).await? {
            ServerMessage::WebhookList { webhooks } => Ok(webhooks),
            other => Err(unexpected(other)),
        }
    }

    pub async fn delete_webhook(&self, name: &str) -> Result<(), ClientError> {
        self.request_ack(ClientMessage::DeleteWebhook { name: name.into() })
            .await
    }
}
