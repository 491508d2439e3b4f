//! `MeshClient`: the one way this crate talks to a broker over the WebSocket. It connects,
//! proves its identity, reconnects with backoff, correlates requests by `_reqId`, hands pushes
//! over as a stream, and pings / watches the connection (30 s / 75 s). The CLI and the MCP
//! server use only this.

mod api;
mod audit;
mod contexts;
pub mod deployments;
pub mod files;
pub mod http;
mod info;
mod keys;
pub mod lan;
pub mod members;
mod memory;
mod perms;
mod reminders;
mod settings;
mod state;
mod streams;
mod tasks;
pub mod tls;
// Governance (issue 13).
mod clock;
mod grants;
mod profile;
mod stats;
mod status_history;
// Skills (issue 15).
pub mod skills;
// Peer-hosted MCP tools (issue 15).
pub mod peer_files;
pub mod shared_tools;
// Vault (issue 15).
pub mod vault;
// Per-mesh SQL (issue 16).
mod sql;
// Graph (issue 16).
mod graph;
// Vectors (issue 16).
mod vectors;
// URL watches and inbound webhooks (issue 17).
pub mod watches;
pub mod webhooks;
// Telegram bridge (issue 17).
pub mod telegram;
// Remote approval of tool use (issue 18).
pub mod approvals;

pub use api::{Incoming, Sealed, Target, decrypt_push};
pub use keys::{AdminChange, KeyRing, Rotated, missing_epoch};

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::HashMap;
use crate::crypto::SignKeyPair;
use crate::identity::{ConfigDir, IdentityError, MeshEntry, ws_url};
use crate::protocol::codec::Received;
use crate::protocol::messages::{HelloAck, PeerInfo};
use crate::protocol::{ClientMessage, Encoding, Envelope, ServerMessage, codec};

const PING_EVERY: Duration = Duration::from_secs(30);
const IDLE_LIMIT: Duration = Duration::from_secs(75);
const BACKOFF_SECS: [u64; 6] = [1, 2, 4, 8, 16, 30];
const HELLO_TIMEOUT: Duration = Duration::from_secs(15);
/// How long closing waits for the broker to answer the close (within `close`'s own 3 s).
const CLOSE_WAIT: Duration = Duration::from_secs(2);
/// Most frames written before a flush.
const BATCH: usize = 64;
/// How long a request waits for its answer.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest frame the client accepts from the broker (peer lists can be long).
const MAX_INCOMING_BYTES: usize = 16 << 20;

type Ws = WebSocketStream<tls::BrokerStream>;

#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    /// The broker could not be reached (it may not be running).
    #[error("{0}")]
    Connect(String),
    /// A broker that answered was not trusted: TLS failed, or plain text off loopback.
    #[error("{0}")]
    Untrusted(String),
    /// The broker refused the hello; `close_code` 4001/4002 mean do not come back.
    #[error("the broker refused this connection: {message} ({code})")]
    Refused {
        code: String,
        message: String,
        close_code: Option<u16>,
    },
    /// An error frame or HTTP error answering a request.
    #[error("{message} ({code})")]
    Broker { code: String, message: String },
    #[error("no answer from the broker within {0:?}")]
    Timeout(Duration),
    #[error("the connection to the broker was lost")]
    Disconnected,
    #[error("the client is closed")]
    Closed,
    #[error("{0}")]
    Identity(String),
    #[error("unexpected answer from the broker: {0}")]
    Protocol(String),
}

impl From<IdentityError> for ClientError {
    fn from(e: IdentityError) -> Self {
        ClientError::Identity(e.to_string())
    }
}

impl ClientError {
    /// The protocol error code, when the broker gave one.
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Refused { code, .. } | ClientError::Broker { code, .. } => Some(code),
            _ => None,
        }
    }
}

/// Which key the connection proves.
#[derive(Clone)]
pub enum Identity {
    /// Member hello with the member key (CLI commands).
    Member,
    /// Session hello with this session key, attested by the member key (agent sessions).
    Session(SignKeyPair),
}

#[derive(Clone)]
pub struct ConnectOptions {
    pub entry: MeshEntry,
    pub identity: Identity,
    pub peer: PeerInfo,
    pub encoding: Encoding,
    /// Reconnect with backoff after a lost connection (long-lived clients); one-shot CLI
    /// commands leave it off.
    pub reconnect: bool,
    /// The config to save root keys of new epochs in (PROTOCOL.md §12.4); `None` keeps them
    /// in memory only.
    pub config_dir: Option<ConfigDir>,
}

impl ConnectOptions {
    /// The certificates this connection accepts (see [`tls::Trust::resolve`]).
    pub fn trust(&self) -> tls::Trust {
        tls::Trust::resolve(None, self.entry.ca_file.as_deref())
    }

    pub fn new(entry: MeshEntry, peer: PeerInfo) -> Self {
        ConnectOptions {
            entry,
            identity: Identity::Member,
            peer,
            encoding: Encoding::Json,
            reconnect: false,
            config_dir: None,
        }
    }
}

enum Command {
    Request {
        body: ClientMessage,
        reply: oneshot::Sender<Result<ServerMessage, ClientError>>,
    },
    Notify(ClientMessage),
    Close,
}

/// Connection state as seen by users of the client.
#[derive(Debug, Clone, PartialEq)]
pub enum Link {
    Up,
    Reconnecting,
    /// Ended for good; the reason: [`CLOSED_HERE`], [`LOST`], or the broker's (what it said
    /// before closing — a kick's or a ban's reason — or its close reason, `revoked`).
    Down(String),
}

/// [`Link::Down`]'s reason when this side closed the client.
pub const CLOSED_HERE: &str = "closed";
/// [`Link::Down`]'s reason when the connection was lost and the client does not reconnect.
pub const LOST: &str = "connection lost";

pub struct MeshClient {
    options: ConnectOptions,
    commands: mpsc::UnboundedSender<Command>,
    pushes: tokio::sync::Mutex<mpsc::Receiver<ServerMessage>>,
    /// For [`MeshClient::mark_pushes`]; weak, so the stream still ends with the connection.
    push_marker: mpsc::WeakSender<ServerMessage>,
    hello: watch::Receiver<HelloAck>,
    link: watch::Receiver<Link>,
    task: JoinHandle<()>,
    /// The root keys by epoch, shared with the connection task.
    keys: keys::Keeper,
}

impl MeshClient {
    /// Connects and says hello. The first connection must succeed; later losses reconnect in
    /// the background when `reconnect` is set.
    pub async fn connect(options: ConnectOptions) -> Result<MeshClient, ClientError> {
        let (ws, ack) = connect_once(&options).await?;
        let (commands, command_rx) = mpsc::unbounded_channel();
        let (push_tx, pushes) = mpsc::channel(65_536);
        let push_marker = push_tx.downgrade();
        let (hello_tx, hello) = watch::channel(ack);
        let (link_tx, link) = watch::channel(Link::Up);
        let keys = keys::Keeper::new(&options.entry, options.config_dir.clone());
        let task = tokio::spawn(run(
            options.clone(),
            ws,
            command_rx,
            push_tx,
            hello_tx,
            link_tx,
            keys.clone(),
        ));
        let client = MeshClient {
            options,
            commands,
            pushes: tokio::sync::Mutex::new(pushes),
            push_marker,
            hello,
            link,
            task,
            keys,
        };
        client.prove_root_key().await;
        // A rotation happened while this member was away: take its sealed copies first, so
        // what this client sends and reads from here on uses the current key (and the current
        // epoch's copy replaces a different key held for it, see `keys_to_ask`).
        let ask = keys::keys_to_ask(
            client.hello.borrow().key_epoch,
            client.keys.ring().current_epoch(),
        );
        if let Some(since) = ask
            && let Err(e) = client.sync_keys_since(since).await
        {
            tracing::warn!("cannot fetch this mesh's new root keys: {e}");
        }
        Ok(client)
    }

    /// A broker upgraded from one that kept root keys still holds this mesh's; it deletes it
    /// once the owner's or an admin's client shows, by the key's check value, that it holds
    /// the same key. Failing that, nothing changes (the next connection tries again).
    async fn prove_root_key(&self) {
        if !self.hello.borrow().root_key_held {
            return;
        }
        let Ok(key) = self.options.entry.root_key() else {
            return;
        };
        let check = crate::identity::root_key_check(&key);
        if let Err(e) = self.request(ClientMessage::RootKeyProof { check }).await {
            tracing::warn!("the broker kept this mesh's root key and did not drop it: {e}");
        }
    }

    /// The broker's answer to the latest hello.
    pub fn hello_ack(&self) -> HelloAck {
        self.hello.borrow().clone()
    }

    /// The connection's state, and its changes from now on (the state now counts as seen, so
    /// a first `changed()` is a real change, not the connect that already happened).
    pub fn link(&self) -> watch::Receiver<Link> {
        let mut link = self.link.clone();
        link.mark_unchanged();
        link
    }

    /// Waits until `link` (from [`MeshClient::link`]) is up again after a change — a new
    /// connection, which may be a new presence that must announce what it hosts again; false
    /// once the client has ended for good. An `Up` seen after any change counts: a drop and a
    /// reconnect between two looks show only the `Up`.
    pub async fn reconnected(link: &mut watch::Receiver<Link>) -> bool {
        loop {
            if link.changed().await.is_err() {
                return false;
            }
            let now = link.borrow_and_update().clone();
            match now {
                Link::Up => return true,
                Link::Down(_) => return false,
                Link::Reconnecting => {}
            }
        }
    }

    /// Sends a request and waits for the frame that answers it. An `error` frame becomes
    /// `ClientError::Broker`.
    pub async fn request(&self, body: ClientMessage) -> Result<ServerMessage, ClientError> {
        self.request_timeout(body, REQUEST_TIMEOUT).await
    }

    pub async fn request_timeout(
        &self,
        body: ClientMessage,
        timeout: Duration,
    ) -> Result<ServerMessage, ClientError> {
        self.request_now(body, timeout).await
    }

    /// Queues `body` for the broker at the call, not at the first poll, and returns its
    /// answer's future: a caller holding many of them (`bench`) need not spawn a task each
    /// to have them sent at once.
    pub fn request_now(
        &self,
        body: ClientMessage,
        timeout: Duration,
    ) -> impl Future<Output = Result<ServerMessage, ClientError>> + use<> {
        let (reply, rx) = oneshot::channel();
        let sent = self
            .commands
            .send(Command::Request { body, reply })
            .map_err(|_| ClientError::Closed);
        async move {
            sent?;
            match tokio::time::timeout(timeout, rx).await {
                Ok(Ok(answer)) => answer,
                Ok(Err(_)) => Err(ClientError::Disconnected),
                Err(_) => Err(ClientError::Timeout(timeout)),
            }
        }
    }

    /// Sends a frame that has no answer.
    pub fn notify(&self, body: ClientMessage) -> Result<(), ClientError> {
        self.commands
            .send(Command::Notify(body))
            .map_err(|_| ClientError::Closed)
    }

    /// The next frame the broker sent without being asked (pushes, system events); `None`
    /// once the client has ended for good.
    pub async fn next_push(&self) -> Option<ServerMessage> {
        self.pushes.lock().await.recv().await
    }

    /// Puts `marker` into the push stream behind every frame received so far, so whoever reads
    /// [`MeshClient::next_push`] can tell when it has handled them (after a drain, say). False
    /// when the stream has ended.
    pub async fn mark_pushes(&self, marker: ServerMessage) -> bool {
        match self.push_marker.upgrade() {
            Some(tx) => tx.send(marker).await.is_ok(),
            None => false,
        }
    }

    /// A push already received, without waiting.
    pub async fn try_next_push(&self) -> Option<ServerMessage> {
        self.pushes.lock().await.try_recv().ok()
    }

    /// The mesh this client is connected to.
    pub fn entry(&self) -> &MeshEntry {
        &self.options.entry
    }

    /// The certificates this client accepts from its broker.
    pub fn trust(&self) -> tls::Trust {
        self.options.trust()
    }

    /// Closes the connection politely and waits for the background task.
    pub async fn close(self) {
        let _ = self.commands.send(Command::Close);
        let _ = tokio::time::timeout(Duration::from_secs(3), self.task).await;
    }
}

impl MeshClient {
    /// Follows a paged list (PROTOCOL.md "Pages") to its end: asks `ask(cursor)` and reads
    /// each answer with `read` until a page comes without `nextCursor`. A broker without
    /// paging answers one page with no cursor.
    pub(crate) async fn all_pages<T>(
        &self,
        mut ask: impl FnMut(Option<String>) -> ClientMessage,
        mut read: impl FnMut(ServerMessage) -> Result<(Vec<T>, Option<String>), ClientError>,
    ) -> Result<Vec<T>, ClientError> {
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let (items, next) = read(self.request(ask(cursor.clone())).await?)?;
            out.extend(items);
            match next {
                None => return Ok(out),
                Some(next) if cursor.as_ref() == Some(&next) => {
                    return Err(ClientError::Protocol(
                        "the broker handed out the same page cursor twice".into(),
                    ));
                }
                Some(next) => cursor = Some(next),
            }
        }
    }
}

/// The error for an answer a typed call did not expect (the area files share it).
fn unexpected(other: ServerMessage) -> ClientError {
    ClientError::Protocol(format!("{other:?}"))
}

/// Opens the socket, says hello, and waits for `hello_ack` or the refusal. Another process of
/// the same member (a CLI call beside an MCP server) can sign the very same hello in the same
/// millisecond, since signatures are deterministic; the broker refuses the second as a replay,
/// and one fresh hello (a later timestamp, so another signature) gets in.
async fn connect_once(options: &ConnectOptions) -> Result<(Ws, HelloAck), ClientError> {
    match say_hello(options).await {
        Err(ClientError::Refused { code, .. }) if code == "replay" => say_hello(options).await,
        other => other,
    }
}

async fn say_hello(options: &ConnectOptions) -> Result<(Ws, HelloAck), ClientError> {
    let url = ws_url(&options.entry.broker_url);
    let stream = tls::connect(&url, &options.trust(), HELLO_TIMEOUT).await?;
    // tungstenite zeroes its whole read buffer (128 KiB by default) before every socket read:
    // 17% of a busy client's CPU went to that. It still grows for a large frame.
    let config = WebSocketConfig::default()
        .read_buffer_size(8 * 1024)
        .max_message_size(Some(MAX_INCOMING_BYTES));
    let (mut ws, _) = tokio::time::timeout(
        HELLO_TIMEOUT,
        tokio_tungstenite::client_async_with_config(url.as_str(), stream, Some(config)),
    )
    .await
    .map_err(|_| ClientError::Connect(format!("timed out connecting to {url}")))?
    .map_err(|e| ClientError::Connect(format!("cannot connect to {url}: {e}")))?;
    let hello = match &options.identity {
        Identity::Member => ClientMessage::Hello(options.entry.member_hello(options.peer.clone())?),
        Identity::Session(key) => {
            ClientMessage::SessionHello(options.entry.session_hello(key, options.peer.clone())?)
        }
    };
    ws.send(encode(&Envelope::new(hello), options.encoding))
        .await
        .map_err(|e| ClientError::Connect(format!("cannot send hello to {url}: {e}")))?;
    let deadline = Instant::now() + HELLO_TIMEOUT;
    let mut refusal: Option<(String, String)> = None;
    loop {
        let frame = tokio::time::timeout_at(deadline, ws.next())
            .await
            .map_err(|_| ClientError::Connect(format!("{url} did not answer the hello")))?;
        match frame {
            Some(Ok(Message::Close(close))) => {
                let close_code = close.as_ref().map(|c| u16::from(c.code));
                let (code, message) = refusal.take().unwrap_or_else(|| {
                    let reason = close.map(|c| c.reason.to_string()).unwrap_or_default();
                    (reason.clone(), format!("connection closed: {reason}"))
                });
                return Err(ClientError::Refused {
                    code,
                    message,
                    close_code,
                });
            }
            Some(Ok(msg)) => match decode(&msg) {
                Some(ServerMessage::HelloAck(ack)) => return Ok((ws, *ack)),
                Some(ServerMessage::Error(e)) => refusal = Some((e.code, e.message)),
                _ => {}
            },
            Some(Err(e)) => {
                return Err(match refusal {
                    Some((code, message)) => ClientError::Refused {
                        code,
                        message,
                        close_code: None,
                    },
                    None => ClientError::Connect(format!("{url}: {e}")),
                });
            }
            None => {
                return Err(match refusal {
                    Some((code, message)) => ClientError::Refused {
                        code,
                        message,
                        close_code: None,
                    },
                    None => ClientError::Connect(format!("{url} closed the connection")),
                });
            }
        }
    }
}

fn encode(frame: &Envelope<ClientMessage>, encoding: Encoding) -> Message {
    let bytes = match (&frame.body, encoding) {
        // The busiest frame, written without serde's byte-by-byte string escaping.
        (ClientMessage::Send(send), Encoding::Json) => {
            codec::written(|out| send.write_json(frame.req_id.as_deref(), out))
        }
        _ => codec::encode(frame, encoding),
    };
    match encoding {
        // (JSON our encoder wrote is UTF-8: no copy.)
        Encoding::Json => match String::from_utf8(bytes) {
            Ok(text) => Message::text(text),
            Err(e) => Message::text(String::from_utf8_lossy(e.as_bytes()).into_owned()),
        },
        Encoding::MsgPack => Message::binary(bytes),
    }
}

fn decode_envelope(msg: &Message) -> Option<Envelope<ServerMessage>> {
    let result = match msg {
        Message::Text(t) => codec::decode_received(Received::Text(t)),
        Message::Binary(b) => codec::decode_received(Received::Binary(b)),
        _ => return None,
    };
    match result {
        Ok(frame) => Some(frame),
        Err(e) => {
            // A newer broker may send frames this client does not know; skip them.
            tracing::debug!("ignoring a frame from the broker: {e}");
            None
        }
    }
}

fn decode(msg: &Message) -> Option<ServerMessage> {
    decode_envelope(msg).map(|e| e.body)
}

/// Why one connection ended.
enum End {
    /// The user closed the client.
    Closed,
    /// The broker said not to come back (4001 kicked, 4002 revoked).
    Final(String),
    Lost,
}

async fn run(
    options: ConnectOptions,
    ws: Ws,
    mut commands: mpsc::UnboundedReceiver<Command>,
    pushes: mpsc::Sender<ServerMessage>,
    hello: watch::Sender<HelloAck>,
    link: watch::Sender<Link>,
    keys: keys::Keeper,
) {
    let mut ws = Some(ws);
    let mut attempt = 0usize;
    // The first connection's keys are fetched by `connect`; a reconnection fetches its own.
    let mut reconnected = false;
    loop {
        if let Some(socket) = ws.take() {
            attempt = 0;
            let _ = link.send(Link::Up);
            let ask_keys = if reconnected {
                keys::keys_to_ask(hello.borrow().key_epoch, keys.ring().current_epoch())
            } else {
                None
            };
            reconnected = true;
            match session(
                socket,
                &mut commands,
                &pushes,
                &hello,
                &keys,
                ask_keys,
                options.encoding,
            )
            .await
            {
                End::Closed => {
                    let _ = link.send(Link::Down(CLOSED_HERE.into()));
                    return;
                }
                End::Final(reason) => {
                    let _ = link.send(Link::Down(reason));
                    return;
                }
                End::Lost if !options.reconnect => {
                    let _ = link.send(Link::Down(LOST.into()));
                    return;
                }
                End::Lost => {}
            }
        }
        let _ = link.send(Link::Reconnecting);
        let wait = Duration::from_secs(BACKOFF_SECS[attempt.min(BACKOFF_SECS.len() - 1)]);
        attempt += 1;
        // Fail requests made while there is no connection rather than holding them.
        let sleep = tokio::time::sleep(wait);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                _ = &mut sleep => break,
                cmd = commands.recv() => match cmd {
                    None | Some(Command::Close) => {
                        let _ = link.send(Link::Down(CLOSED_HERE.into()));
                        return;
                    }
                    Some(Command::Request { reply, .. }) => {
                        let _ = reply.send(Err(ClientError::Disconnected));
                    }
                    Some(Command::Notify(_)) => {}
                }
            }
        }
        match connect_once(&options).await {
            Ok((socket, ack)) => {
                let _ = hello.send(ack);
                ws = Some(socket);
            }
            Err(ClientError::Refused {
                code, close_code, ..
            }) if matches!(close_code, Some(4001 | 4002)) || code == "revoked" => {
                let _ = link.send(Link::Down(code));
                return;
            }
            Err(e) => tracing::debug!("reconnect failed: {e}"),
        }
    }
}

/// A `mesh_settings` event (the owner changed them) updates what this client goes by, as the
/// next hello would; the owner's signature is checked where it is used ([`MeshClient::plain_group_bodies`]).
fn follow_settings(frame: &ServerMessage, hello: &watch::Sender<HelloAck>) {
    let ServerMessage::Push(push) = frame else {
        return;
    };
    if push.subtype.as_deref() != Some("system") || push.event.as_deref() != Some("mesh_settings") {
        return;
    }
    let Some(settings) = push
        .event_data
        .clone()
        .and_then(|d| serde_json::from_value::<crate::protocol::messages::MeshSettings>(d).ok())
    else {
        return;
    };
    hello.send_modify(|ack| {
        if let Some(policy) = ack.mesh_policy.as_mut() {
            policy.group_bodies = Some(settings.group_bodies);
            policy.group_bodies_signature = settings.group_bodies_signature;
            policy.group_bodies_signed_at = settings.group_bodies_signed_at;
        }
    });
}

/// Writes `frame`, flushing (one system call) once no other command waits or `BATCH` frames
/// are written unflushed: the frames of a burst go out together. A command still waiting is
/// taken at once, and the last of the burst flushes.
async fn write(
    ws: &mut Ws,
    frame: Message,
    unflushed: &mut usize,
    commands: &mpsc::UnboundedReceiver<Command>,
) -> Result<(), tokio_tungstenite::tungstenite::Error> {
    ws.feed(frame).await?;
    *unflushed += 1;
    if *unflushed >= BATCH || commands.is_empty() {
        *unflushed = 0;
        ws.flush().await?;
    }
    Ok(())
}

async fn session(
    mut ws: Ws,
    commands: &mut mpsc::UnboundedReceiver<Command>,
    pushes: &mpsc::Sender<ServerMessage>,
    hello: &watch::Sender<HelloAck>,
    keys: &keys::Keeper,
    ask_keys: Option<u64>,
    encoding: Encoding,
) -> End {
    let mut pending: HashMap<String, oneshot::Sender<Result<ServerMessage, ClientError>>> =
        HashMap::default();
    // Sealed copies of the epochs this member missed; the `keys` answer is taken in below.
    if let Some(since) = ask_keys {
        let frame = Envelope {
            req_id: Some("keys-sync".into()),
            body: ClientMessage::GetKeys { since },
        };
        if ws.send(encode(&frame, encoding)).await.is_err() {
            return End::Lost;
        }
    }
    let mut next_id: u64 = 0;
    let mut unflushed = 0;
    let mut last_rx = Instant::now();
    let mut ping = tokio::time::interval_at(Instant::now() + PING_EVERY, PING_EVERY);
    // An error frame that answered no request, with no answer since: when the broker closes
    // after it (an oversized frame, a malformed one), it is why the waiting requests fail.
    let mut refusal: Option<(String, String)> = None;
    let end = loop {
        tokio::select! {
            cmd = commands.recv() => match cmd {
                None | Some(Command::Close) => {
                    let _ = ws.close(None).await;
                    // The broker reads frames in order: once it answers the close (or drops
                    // the socket), it has taken every frame sent before, acknowledgements
                    // included, so a connection opened next cannot race them.
                    let _ = tokio::time::timeout(CLOSE_WAIT, async {
                        while let Some(Ok(m)) = ws.next().await {
                            if matches!(m, Message::Close(_)) {
                                break;
                            }
                        }
                    })
                    .await;
                    break End::Closed;
                }
                Some(Command::Request { body, reply }) => {
                    next_id += 1;
                    let id = format!("r{next_id}");
                    pending.insert(id.clone(), reply);
                    let frame = Envelope { req_id: Some(id), body };
                    if write(&mut ws, encode(&frame, encoding), &mut unflushed, commands).await.is_err() {
                        break End::Lost;
                    }
                }
                Some(Command::Notify(body)) => {
                    let frame = encode(&Envelope::new(body), encoding);
                    if write(&mut ws, frame, &mut unflushed, commands).await.is_err() {
                        break End::Lost;
                    }
                }
            },
            msg = ws.next() => {
                last_rx = Instant::now();
                let msg = match msg {
                    Some(Ok(m)) => m,
                    Some(Err(_)) | None => break End::Lost,
                };
                if let Message::Close(close) = &msg {
                    let code = close.as_ref().map(|c| c.code);
                    if matches!(code, Some(CloseCode::Library(4001) | CloseCode::Library(4002))) {
                        // Why the broker ended it for good: the error it sent just before (a
                        // kick's or a ban's reason), else the close's own reason.
                        let reason = close.as_ref().map(|c| c.reason.to_string()).unwrap_or_default();
                        break End::Final(match &refusal {
                            Some((_, told)) => told.clone(),
                            None if reason.is_empty() => "revoked".into(),
                            None => reason,
                        });
                    }
                    break End::Lost;
                }
                let Some(frame) = decode_envelope(&msg) else { continue };
                match frame.req_id.as_ref().and_then(|id| pending.remove(id)) {
                    Some(reply) => {
                        refusal = None;
                        let answer = match frame.body {
                            ServerMessage::Error(e) => Err(ClientError::Broker { code: e.code, message: e.message }),
                            other => Ok(other),
                        };
                        let _ = reply.send(answer);
                    }
                    None => {
                        if let ServerMessage::Error(e) = &frame.body {
                            refusal = Some((e.code.clone(), e.message.clone()));
                        }
                        follow_settings(&frame.body, hello);
                        if keys.take_frame(&frame.body) {
                            continue;
                        }
                        if pushes.send(frame.body).await.is_err() {
                            break End::Closed;
                        }
                    }
                }
            }
            _ = ping.tick() => {
                if last_rx.elapsed() > IDLE_LIMIT {
                    break End::Lost;
                }
                if ws.send(Message::Ping(Vec::new().into())).await.is_err() {
                    break End::Lost;
                }
            }
        }
    };
    for (_, reply) in pending {
        let _ = reply.send(Err(match &refusal {
            Some((code, message)) => ClientError::Broker {
                code: code.clone(),
                message: message.clone(),
            },
            None => ClientError::Disconnected,
        }));
    }
    end
}
