//! The Telegram bridge (PROTOCOL.md §24): `telegram_connect`, `telegram_invite`,
//! `telegram_disconnect`, `telegram_status`. Direct messages only: the broker holds each
//! Telegram user's key, never the mesh's root key.

use serde::{Deserialize, Serialize};

/// `telegram_connect`: the bot token (checked with `getMe`, stored sealed to the broker's
/// service key) and where Telegram users' messages go.
#[derive(Clone, Default, Serialize, Deserialize)]
pub struct TelegramConnect {
    pub token: String,
    /// A member pubkey, `@group` or `*` (the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

impl std::fmt::Debug for TelegramConnect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TelegramConnect")
            .field("token", &"<redacted>")
            .field("target", &self.target)
            .finish()
    }
}

/// One Telegram user who joined, as `telegram_status` lists them.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TelegramUser {
    /// `tg:<username>`, the peer's display name.
    pub name: String,
    pub pubkey: String,
    pub joined_at: String,
}

/// Answers `telegram_connect`, `telegram_disconnect` and `telegram_status`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TelegramStatus {
    /// A token is stored and the broker polls with it.
    pub connected: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bot_username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// When `getUpdates` last answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_poll_at: Option<String>,
    /// The last polling error, cleared by the next good poll.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(default)]
    pub users: Vec<TelegramUser>,
}
