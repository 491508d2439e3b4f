//! Typed calls for the Telegram bridge (PROTOCOL.md §24).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::{ClientError, MeshClient, unexpected};
use crate::crypto;
use crate::identity::root_key_check;
use crate::protocol::messages::{TelegramConnect, TelegramRootKey, TelegramStatus};
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

    /// Every root key this client holds, each sealed to the broker's service key with its
    /// epoch and check value: what `telegram_connect` hands the bridge so that it can open
    /// group and broadcast messages. Empty when this client holds no root key.
    pub async fn telegram_root_keys(&self) -> Result<Vec<TelegramRootKey>, ClientError> {
        let ring = self.key_ring();
        if ring.all().next().is_none() {
            return Ok(Vec::new());
        }
        let service = self.vault_service_key().await?;
        ring.all()
            .map(|(epoch, key)| {
                let sealed = crypto::seal(&key, &service).map_err(|e| {
                    ClientError::Protocol(format!("cannot seal to the service key: {e}"))
                })?;
                Ok(TelegramRootKey {
                    epoch,
                    sealed: STANDARD.encode(sealed),
                    check: root_key_check(&key),
                })
            })
            .collect()
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
