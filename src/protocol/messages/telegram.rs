//! The Telegram bridge (PROTOCOL.md §24): `telegram_connect`, `telegram_invite`,
//! `telegram_disconnect`, `telegram_status`. The broker holds each Telegram user's key, and
//! the mesh's root keys only when the connecting client hands them over (`rootKeys`).

use serde::{Deserialize, Serialize};

/// `telegram_connect`: the bot token (checked with `getMe`, stored sealed to the broker's
/// service key), where Telegram users' messages go, and the mesh's root keys for the bridge
/// to open group and broadcast messages with (none: direct messages only).
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TelegramConnect {
    pub token: String,
    /// A member pubkey, `@group` or `*` (the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub root_keys: Vec<TelegramRootKey>,
}

/// One epoch's root key handed to the bridge, sealed to the broker's service key.
#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TelegramRootKey {
    pub epoch: u64,
    /// base64(crypto_box_seal(key, service key)), 80 bytes.
    pub sealed: String,
    /// hex(HMAC-SHA256(key, "claudemesh-root-key-check")): what the broker compares with the
    /// check value it stores for the epoch.
    pub check: String,
}

impl std::fmt::Debug for TelegramRootKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TelegramRootKey")
            .field("epoch", &self.epoch)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for TelegramConnect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TelegramConnect")
            .field("token", &"<redacted>")
            .field("target", &self.target)
            .field("rootKeys", &self.root_keys)
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
    /// The bridge holds root keys: it forwards group and broadcast messages too.
    #[serde(default)]
    pub group_keys: bool,
    /// The epochs whose root key the bridge holds.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub key_epochs: Vec<u64>,
}
