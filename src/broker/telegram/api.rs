//! The few Telegram Bot API methods the bridge calls (`getMe`, `getUpdates`, `sendMessage`),
//! as HTTPS POSTs of JSON over the watches' hyper + rustls client. The token is part of every
//! method URL (`<base>/bot<token>/<method>`), so no error made here names the URL, and any
//! text that could echo it has the token cut out.

use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};
use zeroize::Zeroizing;

use crate::broker::watches::fetch::{self, FetchError};

/// `getUpdates` waits this long for an update before answering with none.
pub const LONG_POLL_S: u64 = 20;
/// A call other than a long poll.
const CALL_TIMEOUT: Duration = Duration::from_secs(15);
/// Longest text one `sendMessage` carries (Telegram's limit is 4096 characters).
pub const MAX_TEXT_CHARS: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No answer, or not HTTP: the connection, TLS, a timeout (never with the URL).
    #[error("the Telegram Bot API cannot be reached: {0}")]
    Unreachable(String),
    /// Telegram answered `ok: false`.
    #[error("the Bot API refused {method}: {description}")]
    Refused {
        method: &'static str,
        status: u16,
        description: String,
    },
    #[error("the Bot API's answer to {0} is not what its documentation describes")]
    Unreadable(&'static str),
}

/// A bot, reached with its token through a base URL (`https://api.telegram.org`, or a test's
/// local server).
pub struct BotApi {
    base: String,
    token: Zeroizing<String>,
}

#[derive(Debug, Deserialize)]
pub struct User {
    pub id: i64,
    #[serde(default)]
    pub is_bot: bool,
    #[serde(default)]
    pub username: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct Chat {
    pub id: i64,
}

#[derive(Debug, Deserialize)]
pub struct Message {
    #[serde(default)]
    pub from: Option<User>,
    pub chat: Chat,
    #[serde(default)]
    pub text: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct Update {
    pub update_id: i64,
    #[serde(default)]
    pub message: Option<Message>,
}

#[derive(Deserialize)]
struct Answer {
    ok: bool,
    #[serde(default)]
    result: Option<Value>,
    #[serde(default)]
    description: Option<String>,
}

/// The shape of a token as BotFather gives it: `<bot id>:<secret>`.
pub fn token_shape_ok(token: &str) -> bool {
    match token.split_once(':') {
        Some((id, secret)) => {
            !id.is_empty()
                && id.bytes().all(|b| b.is_ascii_digit())
                && (20..=100).contains(&secret.len())
                && secret
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        }
        None => false,
    }
}

impl BotApi {
    pub fn new(base: &str, token: Zeroizing<String>) -> BotApi {
        BotApi {
            base: base.trim_end_matches('/').to_string(),
            token,
        }
    }

    /// `text` with the token cut out, should anything echo it.
    fn scrub(&self, text: &str) -> String {
        text.replace(self.token.as_str(), "<token>")
    }

    async fn call(
        &self,
        method: &'static str,
        params: Value,
        timeout: Duration,
    ) -> Result<Value, ApiError> {
        let url = Zeroizing::new(format!("{}/bot{}/{method}", self.base, self.token.as_str()));
        let body = serde_json::to_vec(&params).unwrap_or_default();
        let got = fetch::post_json(&url, body, timeout)
            .await
            .map_err(|e| match e {
                // Its text holds the URL, and with it the token.
                FetchError::BadUrl { .. } => {
                    ApiError::Unreachable("the Bot API base URL is not a usable URL".into())
                }
                other => ApiError::Unreachable(self.scrub(&other.to_string())),
            })?;
        let answer: Answer =
            serde_json::from_slice(&got.body).map_err(|_| ApiError::Unreadable(method))?;
        if !answer.ok {
            return Err(ApiError::Refused {
                method,
                status: got.status,
                description: self.scrub(
                    answer
                        .description
                        .as_deref()
                        .unwrap_or("no description given"),
                ),
            });
        }
        answer.result.ok_or(ApiError::Unreadable(method))
    }

    /// `getMe`: the bot, which proves the token.
    pub async fn get_me(&self) -> Result<User, ApiError> {
        let result = self.call("getMe", json!({}), CALL_TIMEOUT).await?;
        serde_json::from_value(result).map_err(|_| ApiError::Unreadable("getMe"))
    }

    /// `getUpdates` from `offset` (which confirms every earlier update to Telegram), waiting up
    /// to [`LONG_POLL_S`] for one. Updates that are not messages come back with no message.
    pub async fn get_updates(&self, offset: i64) -> Result<Vec<Update>, ApiError> {
        let params = json!({
            "offset": offset,
            "timeout": LONG_POLL_S,
            // 50 texts of 4096 characters stay well under the 1 MiB a response may be.
            "limit": 50,
            "allowed_updates": ["message"],
        });
        let wait = Duration::from_secs(LONG_POLL_S) + CALL_TIMEOUT;
        let result = self.call("getUpdates", params, wait).await?;
        let Value::Array(items) = result else {
            return Err(ApiError::Unreadable("getUpdates"));
        };
        // One odd update must not stall the bridge: it is skipped, its id still counted.
        Ok(items
            .into_iter()
            .filter_map(|item| {
                let id = item.get("update_id")?.as_i64()?;
                Some(serde_json::from_value(item).unwrap_or(Update {
                    update_id: id,
                    message: None,
                }))
            })
            .collect())
    }

    /// `sendMessage` of `text` (cut to [`MAX_TEXT_CHARS`]) to `chat_id`.
    pub async fn send_message(&self, chat_id: i64, text: &str) -> Result<(), ApiError> {
        let text: String = text.chars().take(MAX_TEXT_CHARS).collect();
        self.call(
            "sendMessage",
            json!({"chat_id": chat_id, "text": text}),
            CALL_TIMEOUT,
        )
        .await
        .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_shapes() {
        assert!(token_shape_ok("123456:ABC-DEF1234ghIkl-zyx57W2v1u123ew11"));
        assert!(!token_shape_ok("123456"));
        assert!(!token_shape_ok("abc:ABC-DEF1234ghIkl-zyx57W2v1u123ew11"));
        assert!(!token_shape_ok("123:short"));
        assert!(!token_shape_ok("123:ABC-DEF1234ghIkl-zyx57W2v1u12/ew11"));
    }
}
