//! Typed calls for the Telegram bridge (PROTOCOL.md §24).

use super::{ClientError, MeshClient, unexpected};
use crate::protocol::messages::{TelegramConnect, TelegramStatus};
use crate::protocol::{ClientMessage, ServerMessage};

/// What `telegram_invite` answered: the one-time code, shown this once.
#[derive(Debug, Clone)]
pub struct TelegramInviteCode {
    pub code: String,
    pub expires_at: String,
    pub bot_username: Option<String>,
}

impl MeshClient {
    async fn telegram_status_of(&self, req: ClientMessage) -> Result<TelegramStatus, ClientError> {
        match self.request(req).await? {
            ServerMessage::TelegramStatusResult(s) => Ok(s),
            other => Err(unexpected(other)),
        }
    }

    pub async fn telegram_connect(
        &self,
        req: TelegramConnect,
    ) -> Result<TelegramStatus, ClientError> {
        self.telegram_status_of(ClientMessage::TelegramConnect(req))
            .await
    }

    pub async fn telegram_disconnect(&self) -> Result<TelegramStatus, ClientError> {
        self.telegram_status_of(ClientMessage::TelegramDisconnect {})
            .await
    }

    pub async fn telegram_status(&self) -> Result<TelegramStatus, ClientError> {
        self.telegram_status_of(ClientMessage::TelegramStatus {})
            .await
    }

    pub async fn telegram_invite(&self) -> Result<TelegramInviteCode, ClientError> {
        match self.request(ClientMessage::TelegramInvite {}).await? {
            ServerMessage::TelegramInviteResult {
                code,
                expires_at,
                bot_username,
            } => Ok(TelegramInviteCode {
                code,
                expires_at,
                bot_username,
            }),
            other => Err(unexpected(other)),
        }
    }
}
