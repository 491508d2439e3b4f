//! The Telegram bridge (PROTOCOL.md §24): `telegram_connect`, `telegram_invite`,
//! `telegram_disconnect` (owner and admins only) and `telegram_status` (anyone in the mesh).
//! The polling and forwarding are `broker::telegram`.

use zeroize::Zeroizing;

use super::reply::{Refusal, answer, me, refuse};
use crate::broker::presence::Peer;
use crate::broker::state::Broker;
use crate::broker::telegram::{self, api};
use crate::broker::vault::ServiceKey;
use crate::crypto;
use crate::identity::root_key_check;
use crate::protocol::messages::{TelegramConnect, TelegramRootKey, TelegramStatus, TelegramUser};
use crate::protocol::{ServerMessage, time};
use crate::store::{AuditActor, BridgeKeyRefusal, BridgeRootKey, TelegramInvite};

/// Most root keys one `telegram_connect` hands over (as many as `get_keys` answers).
const MAX_ROOT_KEYS: usize = crate::store::MAX_KEYS_RETURNED;

fn managers_only(broker: &Broker, peer: &Peer, what: &str) -> Result<(), Refusal> {
    if super::perms::is_manager(broker, &peer.mesh_id, &peer.member_id) {
        Ok(())
    } else {
        Err(refuse(
            "forbidden",
            format!("only the mesh's owner or an admin may {what} a Telegram bridge"),
        ))
    }
}

/// What `telegram_status` shows of a mesh's bridge.
fn status(broker: &Broker, mesh_id: &str) -> Result<TelegramStatus, Refusal> {
    let Some(r) = broker.store.telegram(mesh_id)? else {
        return Ok(TelegramStatus::default());
    };
    let key_epochs = broker.store.telegram_key_epochs(mesh_id)?;
    Ok(TelegramStatus {
        group_keys: !key_epochs.is_empty(),
        key_epochs,
        connected: r.sealed_token.is_some(),
        bot_username: r.bot_username,
        target: Some(r.target),
        last_poll_at: r.last_poll_ms.map(time::iso),
        last_error: r.last_error,
        users: r
            .users
            .iter()
            .map(|u| TelegramUser {
                name: telegram::peer_name(&u.username),
                pubkey: broker
                    .store
                    .member(mesh_id, &u.member_id)
                    .ok()
                    .flatten()
                    .map(|m| m.pubkey.to_hex())
                    .unwrap_or_default(),
                joined_at: time::iso(u.joined_at_ms),
            })
            .collect(),
    })
}

/// Opens each root key handed over to compute its check value (the key itself is dropped at
/// once; the sealed copy is what is stored). The store then compares it with the epoch's.
fn open_root_keys(
    key: &ServiceKey,
    keys: &[TelegramRootKey],
) -> Result<Vec<BridgeRootKey>, Refusal> {
    if keys.len() > MAX_ROOT_KEYS {
        return Err(refuse(
            "invalid_argument",
            format!("at most {MAX_ROOT_KEYS} root keys are handed to a bridge"),
        ));
    }
    let mut out = Vec::with_capacity(keys.len());
    for k in keys {
        let unreadable = || {
            refuse(
                "invalid_argument",
                format!(
                    "the root key of epoch {} is not a 32-byte key sealed to this broker's service key",
                    k.epoch
                ),
            )
        };
        let sealed = crypto::decode_base64(&k.sealed).map_err(|_| unreadable())?;
        let opened = key.open(&sealed).map_err(|_| unreadable())?;
        let root: Zeroizing<[u8; 32]> =
            Zeroizing::new(opened.as_slice().try_into().map_err(|_| unreadable())?);
        let check = root_key_check(&root);
        if !crypto::constant_time_eq(check.as_bytes(), k.check.as_bytes()) {
            return Err(refuse(
                "invalid_argument",
                format!(
                    "the root key of epoch {} does not match the check value sent with it",
                    k.epoch
                ),
            ));
        }
        out.push(BridgeRootKey {
            epoch: k.epoch,
            check,
            sealed,
        });
    }
    Ok(out)
}

/// `telegram_connect{token, target?, rootKeys?}` → `telegram_status_result`: the token is
/// checked with `getMe` and stored sealed to the service key, the root keys (already sealed to
/// it) are checked against each epoch's stored check value and kept, and polling starts.
pub fn telegram_connect(
    conn: &crate::broker::connection::Conn,
    req_id: Option<String>,
    req: TelegramConnect,
) {
    let Some((broker, peer)) = me(conn) else {
        return;
    };
    answer(conn, req_id, async move {
        managers_only(&broker, &peer, "connect")?;
        let token = Zeroizing::new(req.token.trim().to_string());
        if !api::token_shape_ok(&token) {
            return Err(refuse(
                "invalid_argument",
                "that is not a bot token (BotFather gives one like 123456789:AAE…, digits, a colon and 20 or more letters, digits, '-' or '_')",
            ));
        }
        let target =
            super::watches::target(&broker, &peer, Some(req.target.as_deref().unwrap_or("*")))?;
        let key = broker.service_key.as_ref().ok_or_else(|| {
            refuse(
                "unavailable",
                "this broker has no service key to seal the token to",
            )
        })?;
        let sealed = key
            .seal(token.as_bytes())
            .map_err(|e| refuse("internal", e.to_string()))?;
        let root_keys = open_root_keys(key, &req.root_keys)?;
        let bot = telegram::check_token(&broker, token)
            .await
            .map_err(token_refusal)?;
        telegram::stop(&broker, &peer.mesh_id);
        let stored = broker
            .store
            .connect_telegram(
                peer.mesh_id.clone(),
                sealed,
                Some(bot),
                target,
                root_keys,
                AuditActor::member(&peer.member_id, &peer.display_name),
                time::now_ms(),
            )
            .await?;
        // Running again what ran before, on a refusal too.
        if let Some(record) = broker.store.telegram(&peer.mesh_id)?
            && record.sealed_token.is_some()
        {
            telegram::start(&broker, &record);
        }
        if let Err(BridgeKeyRefusal::Mismatch { epoch }) = stored {
            return Err(refuse(
                "invalid_argument",
                format!(
                    "the root key of epoch {epoch} is not this mesh's (its check value differs from the one the broker stores); nothing was changed"
                ),
            ));
        }
        Ok(Some(ServerMessage::TelegramStatusResult(status(
            &broker,
            &peer.mesh_id,
        )?)))
    });
}

/// Why `getMe` did not prove the token: rejected by the Bot API (`bad_token`), or never
/// checked because the API could not be reached or did not answer as documented, or was
/// failing (`unavailable`: trying again later may work).
fn token_refusal(e: api::ApiError) -> Refusal {
    match e {
        api::ApiError::Refused { status, .. } if status != 429 && status < 500 => {
            refuse("bad_token", format!("the token was not accepted: {e}"))
        }
        other => refuse("unavailable", format!("{other}; the token was not checked")),
    }
}

/// `telegram_invite` → `telegram_invite_result{code, expiresAt}`: a one-time code, kept hashed,
/// that a Telegram user sends to the bot as `/join <code>` within 24 hours.
pub fn telegram_invite(conn: &crate::broker::connection::Conn, req_id: Option<String>) {
    let Some((broker, peer)) = me(conn) else {
        return;
    };
    answer(conn, req_id, async move {
        managers_only(&broker, &peer, "invite to")?;
        let code = hex::encode(crypto::random_bytes::<10>());
        let now = time::now_ms();
        let expires_at_ms = now + telegram::INVITE_TTL_MS;
        let invite = TelegramInvite {
            code_hash: hex::encode(crypto::sha256(code.as_bytes())),
            expires_at_ms,
            created_by: Some(peer.member_id.clone()),
        };
        if !broker
            .store
            .add_telegram_invite(peer.mesh_id.clone(), invite, now)
            .await?
        {
            return Err(refuse(
                "not_connected",
                "this mesh has no Telegram bridge; connect one first: claudemesh telegram connect --token-file FILE",
            ));
        }
        let bot_username = broker
            .store
            .telegram(&peer.mesh_id)?
            .and_then(|r| r.bot_username);
        Ok(Some(ServerMessage::TelegramInviteResult {
            code,
            expires_at: time::iso(expires_at_ms),
            bot_username,
        }))
    });
}

/// `telegram_disconnect` → `telegram_status_result`: polling stops at once and the token is
/// deleted; joined users stay members, off line until a bridge is connected again.
pub fn telegram_disconnect(conn: &crate::broker::connection::Conn, req_id: Option<String>) {
    let Some((broker, peer)) = me(conn) else {
        return;
    };
    answer(conn, req_id, async move {
        managers_only(&broker, &peer, "disconnect")?;
        telegram::stop(&broker, &peer.mesh_id);
        let was = broker
            .store
            .disconnect_telegram(
                peer.mesh_id.clone(),
                AuditActor::member(&peer.member_id, &peer.display_name),
                time::now_ms(),
            )
            .await?;
        if !was {
            return Err(refuse("not_connected", "this mesh has no Telegram bridge"));
        }
        Ok(Some(ServerMessage::TelegramStatusResult(status(
            &broker,
            &peer.mesh_id,
        )?)))
    });
}

/// `telegram_status` → `telegram_status_result`.
pub fn telegram_status(conn: &crate::broker::connection::Conn, req_id: Option<String>) {
    let Some((broker, peer)) = me(conn) else {
        return;
    };
    answer(conn, req_id, async move {
        Ok(Some(ServerMessage::TelegramStatusResult(status(
            &broker,
            &peer.mesh_id,
        )?)))
    });
}
