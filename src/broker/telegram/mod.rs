//! The Telegram bridge (PROTOCOL.md §24). Per mesh with a connected bot, one task long-polls
//! `getUpdates` (its offset kept in redb, so an update is handled once, across restarts too);
//! a `/join <code>` makes the Telegram user a member `tg:<username>` whose key the broker
//! keeps (sealed to its service key); their texts become `subtype:"telegram"` messages from
//! that member to the bridge's target. Each joined user is a presence in the mesh while the
//! bridge is connected: messages for it are pushed to a task here, which opens them with the
//! user's key and posts them with `sendMessage`, acknowledging each once Telegram took it.
//!
//! Group and broadcast messages (bodyVersion 2) are opened with the mesh's root key of their
//! epoch, which the bridge holds only when the connecting client handed it over (sealed to the
//! service key); after a rotation the bridge takes the new epoch's key from a Telegram user's
//! sealed copy, checked against the rotation's check value. Without a key for the epoch the
//! message is acknowledged and dropped (a plain-text one, bodyVersion 1, is forwarded).

pub mod api;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use tokio::sync::watch;
use tokio::task::AbortHandle;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use zeroize::Zeroizing;

use self::api::{ApiError, BotApi, Update};
use super::connection::Outbox;
use super::on_behalf::{self, Outgoing};
use super::presence::{Arrival, ConnHandle, Peer, PeerKind, Registered};
use super::router;
use super::state::Broker;
use crate::crypto::{self, SignKeyPair};
use crate::identity::root_key_check;
use crate::protocol::messages::{PeerInfo, Push};
use crate::protocol::{Encoding, Envelope, Pubkey, ServerMessage, ids, time};
use crate::store::{
    BridgeRootKey, Member, MemberRole, TelegramJoinRefusal, TelegramRecord, TelegramUserRecord,
};

pub const DEFAULT_API_URL: &str = "https://api.telegram.org";
/// How long a `telegram invite` code may be used.
pub const INVITE_TTL_MS: i64 = 24 * 3600 * 1000;
/// The longest wait between failed polls.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Answers to people who are not in the mesh (the hint, `/join` replies) per Telegram user: a
/// burst, then one per period; so a stranger cannot make the bot post without end (and get it
/// rate-limited by Telegram). At most `MAX_STRANGERS` users are remembered.
const STRANGER_BURST: f64 = 3.0;
const STRANGER_PERIOD_MS: f64 = 600_000.0;
const MAX_STRANGERS: usize = 4096;
/// What an unknown Telegram user is told.
const HINT: &str = "This bot relays a claudemesh mesh. To take part, send /join <code> with a code from the mesh's owner (claudemesh telegram invite).";

/// The bridges' running tasks, by mesh: the poller and one forwarder per joined user.
#[derive(Default)]
pub struct Bridges {
    running: Mutex<HashMap<String, Vec<AbortHandle>>>,
}

impl Bridges {
    fn add(&self, mesh_id: &str, task: AbortHandle) {
        if let Ok(mut map) = self.running.lock() {
            map.entry(mesh_id.to_string()).or_default().push(task);
        }
    }

    /// Stops a mesh's polling and forwarding at once.
    fn stop(&self, mesh_id: &str) {
        if let Ok(mut map) = self.running.lock() {
            for task in map.remove(mesh_id).unwrap_or_default() {
                task.abort();
            }
        }
    }
}

/// The display name of a Telegram user in the mesh.
pub fn peer_name(username: &str) -> String {
    format!("tg:{username}")
}

/// The bot token of a connected bridge, opened with the service key.
fn token_of(broker: &Broker, record: &TelegramRecord) -> Result<Zeroizing<String>, String> {
    let sealed = record
        .sealed_token
        .as_ref()
        .ok_or("the bridge is disconnected")?;
    let key = broker
        .service_key
        .as_ref()
        .ok_or("the broker has no service key to open the token with")?;
    let opened = key
        .open(sealed)
        .map_err(|_| "the stored token cannot be opened (service.key was replaced?)")?;
    String::from_utf8(opened.to_vec())
        .map(Zeroizing::new)
        .map_err(|_| "the stored token is unreadable".into())
}

fn api_for(broker: &Broker, record: &TelegramRecord) -> Result<BotApi, String> {
    Ok(BotApi::new(
        &broker.config.telegram_api_url,
        token_of(broker, record)?,
    ))
}

/// Checks a token with `getMe`: the bot's username.
pub async fn check_token(broker: &Broker, token: Zeroizing<String>) -> Result<String, ApiError> {
    let me = BotApi::new(&broker.config.telegram_api_url, token)
        .get_me()
        .await?;
    Ok(me.username.unwrap_or_else(|| me.id.to_string()))
}

/// Starts every connected bridge (at broker start).
pub fn resume_all(broker: &Arc<Broker>) {
    match broker.store.telegram_bridges() {
        Ok(bridges) => {
            for b in bridges.iter().filter(|b| b.sealed_token.is_some()) {
                start(broker, b);
            }
        }
        Err(e) => tracing::warn!("cannot read the Telegram bridges; none runs: {e}"),
    }
}

/// Starts (or restarts) a mesh's bridge: its poller and a presence for each joined user.
pub fn start(broker: &Arc<Broker>, record: &TelegramRecord) {
    stop(broker, &record.mesh_id);
    for user in &record.users {
        attach(broker, &record.mesh_id, user);
    }
    let task = broker
        .tasks
        .spawn(poll_loop(broker.clone(), record.mesh_id.clone()));
    broker.telegram.add(&record.mesh_id, task.abort_handle());
}

/// Stops a mesh's bridge at once: no more polls, and its users' presences leave the mesh.
pub fn stop(broker: &Broker, mesh_id: &str) {
    broker.telegram.stop(mesh_id);
    let users: Vec<String> = broker
        .store
        .telegram(mesh_id)
        .ok()
        .flatten()
        .map(|r| r.users.into_iter().map(|u| u.member_id).collect())
        .unwrap_or_default();
    if users.is_empty() {
        return;
    }
    let gone = broker.presence.close_where(
        mesh_id,
        |p| p.is_telegram_user() && users.contains(&p.member_id),
        &ServerMessage::error("disconnected", "the Telegram bridge was disconnected"),
        "telegram bridge disconnected",
    );
    for peer in gone {
        router::announce(broker, &peer, "peer_left");
    }
}

/// Registers a joined user's presence and starts forwarding what is pushed to it.
fn attach(broker: &Arc<Broker>, mesh_id: &str, user: &TelegramUserRecord) {
    // Not for a removed or banned member: a bridge started again (a broker restart, a new
    // connect) would otherwise forward the mesh's messages to a banned user's chat.
    if !matches!(
        broker.store.is_active_member(mesh_id, &user.member_id),
        Ok(true)
    ) {
        return;
    }
    let member = match broker.store.member(mesh_id, &user.member_id) {
        Ok(Some(m)) => m,
        _ => return,
    };
    let (outbox, rx) = Outbox::new(broker.config.max_outbox_bytes);
    let (closer, closed) = watch::channel(None);
    let conn = ConnHandle {
        conn_id: broker.presence.next_conn_id(),
        encoding: Encoding::Json,
        outbox,
        closer,
    };
    let info = PeerInfo {
        peer_role: Some("session".into()),
        peer_type: Some(BRIDGE_PEER_TYPE.into()),
        ..Default::default()
    };
    let registered = broker.presence.register(
        Arrival {
            mesh_id,
            member_id: &member.id,
            session: None,
            label: None,
            session_id: "",
        },
        conn.clone(),
        broker.config.max_connections_per_mesh,
        || {
            Peer::new(
                ids::new_id(),
                mesh_id.to_string(),
                member.id.clone(),
                member.pubkey,
                None,
                PeerKind::Member,
                member.role,
                member.display_name.clone(),
                info,
                member.groups.clone(),
                conn,
            )
        },
    );
    let peer = match registered {
        Ok(Registered::New(p)) => p,
        Ok(Registered::Reattached { peer, .. }) => peer,
        Err(why) => {
            tracing::warn!(mesh = %mesh_id, "a Telegram user's presence was refused: {why:?}");
            return;
        }
    };
    router::announce(broker, &peer, "peer_joined");
    let task = broker.tasks.spawn(forward(
        broker.clone(),
        peer.clone(),
        user.user_id,
        rx,
        closed,
    ));
    broker.telegram.add(mesh_id, task.abort_handle());
    router::deliver_pending(broker, &peer, false);
}

/// What `peerType` a Telegram user's presence shows in `list_peers`.
pub const BRIDGE_PEER_TYPE: &str = "telegram";

impl Peer {
    /// A Telegram user's presence, held by the bridge.
    pub fn is_telegram_user(&self) -> bool {
        self.info.peer_type.as_deref() == Some(BRIDGE_PEER_TYPE)
    }
}

async fn poll_loop(broker: Arc<Broker>, mesh_id: String) {
    let mut failures: u32 = 0;
    let mut strangers = Strangers::default();
    loop {
        let record = match broker.store.telegram(&mesh_id) {
            Ok(Some(r)) if r.sealed_token.is_some() => r,
            Ok(_) => return,
            Err(e) => {
                tracing::warn!(mesh = %mesh_id, "cannot read the Telegram bridge: {e}");
                failures += 1;
                if !pause(&broker, failures).await {
                    return;
                }
                continue;
            }
        };
        let api = match api_for(&broker, &record) {
            Ok(api) => api,
            Err(why) => {
                tracing::warn!(mesh = %mesh_id, "the Telegram bridge stops: {why}");
                let _ = broker
                    .store
                    .telegram_polled(mesh_id.clone(), None, Some(why), time::now_ms())
                    .await;
                return;
            }
        };
        let polled = tokio::select! {
            _ = broker.shutdown.cancelled() => return,
            p = api.get_updates(record.offset) => p,
        };
        let (next, error) = match polled {
            Ok(updates) => {
                failures = 0;
                let mut next = None;
                for update in updates {
                    let id = update.update_id;
                    handle(&broker, &mesh_id, &api, &record, &mut strangers, update).await;
                    next = Some(id + 1);
                }
                (next, None)
            }
            Err(e) => {
                failures += 1;
                tracing::info!(mesh = %mesh_id, "Telegram poll failed: {e}");
                (None, Some(e.to_string()))
            }
        };
        if let Err(e) = broker
            .store
            .telegram_polled(mesh_id.clone(), next, error, time::now_ms())
            .await
        {
            tracing::warn!(mesh = %mesh_id, "cannot record the Telegram poll: {e}");
            failures = failures.max(1);
        }
        if failures > 0 && !pause(&broker, failures).await {
            return;
        }
    }
}

/// Waits before the next poll after `failures` failures in a row (1 s doubled, at most a
/// minute); false on shutdown.
async fn pause(broker: &Broker, failures: u32) -> bool {
    let wait = Duration::from_secs(1 << failures.min(6)).min(MAX_BACKOFF);
    tokio::select! {
        _ = broker.shutdown.cancelled() => false,
        _ = tokio::time::sleep(wait) => true,
    }
}

/// How many answers each stranger may still get: tokens and when they were last counted.
#[derive(Default)]
struct Strangers(HashMap<i64, (f64, i64)>);

impl Strangers {
    fn tokens(&(tokens, at): &(f64, i64), now_ms: i64) -> f64 {
        (tokens + (now_ms - at).max(0) as f64 / STRANGER_PERIOD_MS).min(STRANGER_BURST)
    }

    /// Whether `user` may be answered now (and counts the answer).
    fn may_answer(&mut self, user: i64, now_ms: i64) -> bool {
        if self.0.len() >= MAX_STRANGERS && !self.0.contains_key(&user) {
            // Forget whoever has a full budget again; while everyone is still spent, the
            // newcomer waits.
            self.0
                .retain(|_, spent| Self::tokens(spent, now_ms) < STRANGER_BURST);
            if self.0.len() >= MAX_STRANGERS {
                return false;
            }
        }
        let entry = self.0.entry(user).or_insert((STRANGER_BURST, now_ms));
        let tokens = Self::tokens(entry, now_ms);
        let allowed = tokens >= 1.0;
        *entry = (if allowed { tokens - 1.0 } else { tokens }, now_ms);
        allowed
    }
}

/// One update: a `/join`, a joined user's text, or something ignored.
async fn handle(
    broker: &Arc<Broker>,
    mesh_id: &str,
    api: &BotApi,
    record: &TelegramRecord,
    strangers: &mut Strangers,
    update: Update,
) {
    let Some(message) = update.message else {
        return;
    };
    let (Some(from), Some(text)) = (message.from, message.text) else {
        return;
    };
    if from.is_bot {
        return;
    }
    let chat_id = message.chat.id;
    let reply = if let Some(code) = text.strip_prefix("/join") {
        let answer = join(
            broker,
            mesh_id,
            from.id,
            from.username,
            chat_id,
            code.trim(),
        )
        .await;
        // Whoever is in the mesh now is always answered; a refused `/join` counts against
        // the stranger's budget (the join itself is tried regardless).
        let member = matches!(broker.store.telegram(mesh_id),
            Ok(Some(r)) if r.users.iter().any(|u| u.user_id == from.id));
        (member || strangers.may_answer(from.id, time::now_ms())).then_some(answer)
    } else {
        // Fresh: a user who joined earlier in this batch is known.
        let users = match broker.store.telegram(mesh_id) {
            Ok(Some(r)) => r.users,
            _ => record.users.clone(),
        };
        match users.iter().find(|u| u.user_id == from.id) {
            Some(user) => relay(broker, mesh_id, user, &text, update.update_id).await,
            None => strangers
                .may_answer(from.id, time::now_ms())
                .then(|| HINT.to_string()),
        }
    };
    if let Some(reply) = reply
        && let Err(e) = api.send_message(chat_id, &reply).await
    {
        tracing::info!(mesh = %mesh_id, "cannot answer a Telegram user: {e}");
    }
}

/// A `/join <code>`: the answer to send back.
async fn join(
    broker: &Arc<Broker>,
    mesh_id: &str,
    user_id: i64,
    username: Option<String>,
    chat_id: i64,
    code: &str,
) -> String {
    let Some(username) = username else {
        return "Set a Telegram username first (Settings → Username): it becomes your name in the mesh.".into();
    };
    if code.is_empty() {
        return "Send /join <code>, with the code from the mesh's owner.".into();
    }
    let Some(key) = broker.service_key.as_ref() else {
        return "This broker cannot keep keys for Telegram users (it has no service key).".into();
    };
    let keys = SignKeyPair::generate();
    let secret = Zeroizing::new(keys.secret_hex());
    let Ok(sealed_secret) = key.seal(secret.as_bytes()) else {
        return "The broker could not make your key; try again.".into();
    };
    let now = time::now_ms();
    let name = peer_name(&username);
    let member = Member {
        id: ids::new_id(),
        mesh_id: mesh_id.to_string(),
        pubkey: Pubkey(keys.public),
        display_name: name.clone(),
        role: MemberRole::Member,
        joined_at_ms: now,
        revoked_at_ms: None,
        groups: Vec::new(),
        last_seen_at_ms: None,
        last_summary: None,
        invite_code: None,
    };
    let user = TelegramUserRecord {
        user_id,
        chat_id,
        username,
        member_id: member.id.clone(),
        sealed_secret,
        joined_at_ms: now,
    };
    let code_hash = hex::encode(crypto::sha256(code.as_bytes()));
    match broker
        .store
        .join_telegram(code_hash, user.clone(), member, now)
        .await
    {
        Ok(Ok(())) => {
            attach(broker, mesh_id, &user);
            format!(
                "You joined the mesh as {name}. What you write here goes to the mesh; replies to {name} come back here."
            )
        }
        Ok(Err(TelegramJoinRefusal::BadCode)) => {
            "That code is unknown, used or expired; ask for a new one.".into()
        }
        Ok(Err(TelegramJoinRefusal::AlreadyJoined)) => "You are already in this mesh.".into(),
        Ok(Err(TelegramJoinRefusal::NameTaken)) => {
            format!("The mesh already has a member named {name}.")
        }
        Ok(Err(TelegramJoinRefusal::NotConnected)) => "This bridge is disconnected.".into(),
        Err(e) => {
            tracing::warn!(mesh = %mesh_id, "cannot store a Telegram join: {e}");
            "The broker could not store your joining; try again.".into()
        }
    }
}

/// A joined user's text: a `subtype:"telegram"` message from their member to the bridge's
/// target. An answer only when it reached nobody.
async fn relay(
    broker: &Broker,
    mesh_id: &str,
    user: &TelegramUserRecord,
    text: &str,
    update_id: i64,
) -> Option<String> {
    let record = broker.store.telegram(mesh_id).ok().flatten()?;
    let member = match broker.store.member(mesh_id, &user.member_id) {
        Ok(Some(m)) if m.revoked_at_ms.is_none() => m,
        _ => return Some("You are no longer a member of this mesh.".into()),
    };
    let (nonce, ciphertext, body_version) = Outgoing::in_clear(text);
    let out = Outgoing {
        member: &member,
        sender_pubkey: member.pubkey.to_hex(),
        sender_name: member.display_name.clone(),
        to: &record.target,
        nonce,
        ciphertext,
        body_version,
        key_epoch: 0,
        subtype: "telegram",
        // The same update stores one message, should it be handled twice (a crash before
        // its offset was kept).
        client_message_id: format!(
            "telegram-{}-{update_id}",
            record.bot_username.as_deref().unwrap_or("")
        ),
    };
    match on_behalf::deliver(broker, out, time::now_ms()).await {
        Ok(Ok(())) => None,
        Ok(Err(why)) => Some(format!("Not delivered: {why}.")),
        Err(e) => {
            tracing::warn!(mesh = %mesh_id, "cannot store a Telegram message: {e}");
            Some("The broker could not store your message; send it again.".into())
        }
    }
}

/// Forwards what is pushed to a Telegram user's presence: each message opened with the user's
/// key and posted with `sendMessage`, then acknowledged (left unacknowledged, and so
/// redelivered, when Telegram did not take it).
async fn forward(
    broker: Arc<Broker>,
    peer: Arc<Peer>,
    user_id: i64,
    mut rx: super::connection::OutboxRx,
    mut closed: watch::Receiver<Option<super::presence::CloseOrder>>,
) {
    loop {
        let frame = tokio::select! {
            _ = broker.shutdown.cancelled() => return,
            _ = closed.changed() => return,
            f = rx.recv() => match f {
                Some(f) => f,
                None => return,
            },
        };
        let WsMessage::Text(text) = frame else {
            continue;
        };
        let Ok(envelope) = serde_json::from_str::<Envelope<ServerMessage>>(text.as_str()) else {
            continue;
        };
        let ServerMessage::Push(push) = envelope.body else {
            continue;
        };
        if push.event.as_deref() == Some("key_rotated") {
            take_rotation(&broker, &peer.mesh_id, user_id, &push).await;
        }
        if push.subtype.as_deref() == Some("tick") || push.event.is_some() {
            continue; // system events are not stored and need no acknowledgement
        }
        match post(&broker, &peer.mesh_id, user_id, &push).await {
            Ok(()) => router::acknowledge(&broker, &peer, &push.message_id),
            Err(why) => tracing::info!(
                mesh = %peer.mesh_id,
                "a message to {} waits: {why}",
                peer.display_name
            ),
        }
    }
}

/// Opens one push and posts it to the user's chat; `Ok` also for what is dropped (a body the
/// broker cannot open), which is then acknowledged.
async fn post(broker: &Broker, mesh_id: &str, user_id: i64, push: &Push) -> Result<(), String> {
    let record = broker
        .store
        .telegram(mesh_id)
        .map_err(|e| e.to_string())?
        .ok_or("the bridge is gone")?;
    let user = record
        .users
        .iter()
        .find(|u| u.user_id == user_id)
        .ok_or("the user is gone")?;
    let Some(text) = open(broker, mesh_id, user, push).await? else {
        tracing::info!(
            mesh = %mesh_id,
            "a message to tg:{} is not forwarded: the bridge cannot open it (bodyVersion {}, key epoch {}; a group or broadcast message needs the root key of its epoch, handed over at `telegram connect`)",
            user.username,
            push.body_version.unwrap_or(0),
            push.key_epoch
        );
        return Ok(());
    };
    let from = push.sender_name.as_deref().unwrap_or("someone");
    api_for(broker, &record)?
        .send_message(user.chat_id, &format!("{from}: {text}"))
        .await
        .map_err(|e| e.to_string())
}

/// The text of a push to `user`: a direct message opened with the user's key, a group or
/// broadcast one opened with the root key of its epoch, or a plain-text one (bodyVersion 1);
/// `None` for what the bridge cannot open.
async fn open(
    broker: &Broker,
    mesh_id: &str,
    user: &TelegramUserRecord,
    push: &Push,
) -> Result<Option<String>, String> {
    let decode = |s: &str| {
        STANDARD
            .decode(s)
            .map_err(|_| "a body that is not base64".to_string())
    };
    let plain = match push.body_version {
        Some(1) => decode(&push.ciphertext)?,
        Some(2) => match open_group(broker, mesh_id, user, push).await {
            Some(p) => p,
            None => return Ok(None),
        },
        Some(v) if v != 0 => return Ok(None),
        _ => {
            let mine = user_keys(broker, user)?;
            let sender = Pubkey::parse(&push.sender_pubkey).map_err(|e| e.to_string())?;
            let their = crypto::ed25519_pk_to_x25519(&sender.0).map_err(|e| e.to_string())?;
            let nonce: [u8; 24] = decode(&push.nonce)?
                .try_into()
                .map_err(|_| "a nonce that is not 24 bytes")?;
            let ct = decode(&push.ciphertext)?;
            match crypto::box_open_easy(&ct, &nonce, &their, &mine.to_x25519().secret) {
                Ok(p) => p,
                // Not sealed to this user's key: nothing Telegram could be shown.
                Err(_) => return Ok(None),
            }
        }
    };
    Ok(Some(String::from_utf8_lossy(&plain).into_owned()))
}

/// A Telegram user's key pair, opened with the service key.
fn user_keys(broker: &Broker, user: &TelegramUserRecord) -> Result<SignKeyPair, String> {
    let key = broker.service_key.as_ref().ok_or("no service key")?;
    let secret = key
        .open(&user.sealed_secret)
        .map_err(|_| "the user's key cannot be opened")?;
    let secret = std::str::from_utf8(&secret).map_err(|_| "the user's key is unreadable")?;
    SignKeyPair::from_secret_hex(secret).map_err(|e| e.to_string())
}

/// A group or broadcast body (secretbox under the root key of the push's `keyEpoch`); `None`
/// when the bridge holds no key of that epoch or the body does not open with it.
async fn open_group(
    broker: &Broker,
    mesh_id: &str,
    user: &TelegramUserRecord,
    push: &Push,
) -> Option<Vec<u8>> {
    let root = root_key(broker, mesh_id, user, push.key_epoch).await?;
    let nonce: [u8; 24] = STANDARD.decode(&push.nonce).ok()?.try_into().ok()?;
    let body = STANDARD.decode(&push.ciphertext).ok()?;
    crypto::secretbox_open_easy(&body, &nonce, &root).ok()
}

/// The root key of `epoch`: the bridge's own, or one it takes now from `user`'s sealed copy
/// (see [`take_rotated`]).
async fn root_key(
    broker: &Broker,
    mesh_id: &str,
    user: &TelegramUserRecord,
    epoch: u64,
) -> Option<Zeroizing<[u8; 32]>> {
    let service = broker.service_key.as_ref()?;
    let sealed = match broker.store.telegram_root_key(mesh_id, epoch) {
        Ok(Some(sealed)) => sealed,
        Ok(None) => take_rotated(broker, mesh_id, user, epoch).await?,
        Err(e) => {
            tracing::warn!(mesh = %mesh_id, "cannot read the bridge's root keys: {e}");
            return None;
        }
    };
    let opened = service.open(&sealed).ok()?;
    Some(Zeroizing::new(opened.as_slice().try_into().ok()?))
}

/// A rotation made after the bridge was handed root keys sealed the new key to each Telegram
/// user (they hold keys like every member, see `store::keys::holders_in`): the bridge opens
/// `user`'s copy of `epoch` with the user's key, compares it with the check value the rotation
/// stored, and keeps it sealed to the service key. Nothing for a bridge that was never handed
/// root keys. The key, sealed to the service key.
async fn take_rotated(
    broker: &Broker,
    mesh_id: &str,
    user: &TelegramUserRecord,
    epoch: u64,
) -> Option<Vec<u8>> {
    // A bridge without root keys takes none (read first: the lookup below is a write).
    if broker
        .store
        .telegram_key_epochs(mesh_id)
        .map_or(true, |held| held.is_empty())
    {
        return None;
    }
    let (copy, check) = match broker
        .store
        .telegram_rotated_key(mesh_id.to_string(), user.member_id.clone(), epoch)
        .await
    {
        Ok(found) => found?,
        Err(e) => {
            tracing::warn!(mesh = %mesh_id, "cannot read a rotated root key: {e}");
            return None;
        }
    };
    let service = broker.service_key.as_ref()?;
    let mine = user_keys(broker, user).ok()?;
    let opened = crypto::decode_base64(&copy)
        .ok()
        .and_then(|c| crypto::seal_open(&c, &mine.to_x25519()).ok())
        .map(Zeroizing::new);
    let key: Option<Zeroizing<[u8; 32]>> = opened
        .as_ref()
        .and_then(|k| k.as_slice().try_into().ok())
        .map(Zeroizing::new);
    let Some(key) =
        key.filter(|k| crypto::constant_time_eq(root_key_check(k).as_bytes(), check.as_bytes()))
    else {
        tracing::warn!(
            mesh = %mesh_id,
            "the root key of epoch {epoch} sealed to tg:{} does not match its rotation's check value; not taken",
            user.username
        );
        return None;
    };
    let sealed = service.seal(key.as_slice()).ok()?;
    let kept = BridgeRootKey {
        epoch,
        check,
        sealed: sealed.clone(),
    };
    match broker
        .store
        .add_telegram_root_key(mesh_id.to_string(), kept)
        .await
    {
        Ok(true) => {
            tracing::info!(mesh = %mesh_id, "the Telegram bridge took the root key of epoch {epoch}");
            Some(sealed)
        }
        Ok(false) => None,
        Err(e) => {
            tracing::warn!(mesh = %mesh_id, "cannot keep the root key of epoch {epoch}: {e}");
            None
        }
    }
}

/// A `key_rotated` event pushed to a Telegram user: the bridge takes the new epoch's key at
/// once (when it holds root keys), so the next group message finds it.
async fn take_rotation(broker: &Broker, mesh_id: &str, user_id: i64, push: &Push) {
    let Some(epoch) = push
        .event_data
        .as_ref()
        .and_then(|d| d.get("epoch"))
        .and_then(|e| e.as_u64())
    else {
        return;
    };
    let user = match broker.store.telegram(mesh_id) {
        Ok(Some(r)) => r.users.into_iter().find(|u| u.user_id == user_id),
        _ => None,
    };
    if let Some(user) = user {
        let _ = root_key(broker, mesh_id, &user, epoch).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strangers_get_a_burst_then_one_answer_per_period_and_are_remembered_within_a_bound() {
        let mut s = Strangers::default();
        let t0 = 1_000_000;
        assert!((0..3).all(|_| s.may_answer(7, t0)));
        assert!(!s.may_answer(7, t0 + 1));
        let period = STRANGER_PERIOD_MS as i64;
        assert!(s.may_answer(7, t0 + period));
        assert!(!s.may_answer(7, t0 + period + 1));

        // The map is full of spent strangers: a newcomer waits, nobody is forgotten early.
        for user in 100..100 + MAX_STRANGERS as i64 - 1 {
            for _ in 0..3 {
                s.may_answer(user, t0);
            }
        }
        assert_eq!(s.0.len(), MAX_STRANGERS);
        assert!(!s.may_answer(-1, t0 + 2));
        // Once their budgets are full again they are forgotten and the newcomer is answered.
        let later = t0 + 3 * period + period;
        assert!(s.may_answer(-1, later));
        assert!(s.0.len() <= 2, "{}", s.0.len());
    }
}
