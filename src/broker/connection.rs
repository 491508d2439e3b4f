//! One WebSocket connection: a reader loop that decodes and dispatches frames and drops a silent
//! socket (the watchdog), and a writer task that owns the socket's write half, sends queued
//! frames and pings.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self, Message};

use super::handlers;
use super::metrics::Metrics;
use super::presence::{CloseOrder, ConnHandle, Peer};
use super::state::Broker;
use crate::protocol::codec::Received;
use crate::protocol::messages::ErrorFrame;
use crate::protocol::{ClientMessage, DecodeError, Encoding, Envelope, ServerMessage, codec, time};

/// Requests of one connection whose work (a commit, then the reply) may be pending at once;
/// with this many the reader stops reading the socket until one finishes.
const MAX_PENDING_STEPS: usize = 64;
/// What a queued frame costs beyond its bytes (the message and channel slot).
const FRAME_OVERHEAD: usize = 64;
/// The broker pings at most this often; a socket that has shown no sign of life for
/// `BrokerConfig::idle_timeout` (default 75 s) is dropped.
const PING_EVERY: Duration = Duration::from_secs(30);
/// A connection must say hello within this time.
const HELLO_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the goodbye (queued frames, then the close frame) may take on a socket that
/// is not being read.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Pings (and watchdog checks) often enough that an idle socket is noticed within about
/// 1.4 × `idle`: every 30 s for the default 75 s.
fn ping_every(idle: Duration) -> Duration {
    (idle * 2 / 5).clamp(Duration::from_millis(50), PING_EVERY)
}

/// Ephemeral pushes (presence events, clock ticks) a connection is sent in a burst, and per
/// second after it. The rest are dropped: they are ephemeral (PROTOCOL.md §4.3, a peer that
/// misses one sees the current list on its next `list_peers`), and without a bound a join storm
/// of N peers is N² pushes.
pub const EVENT_BURST: f64 = 32.0;
pub const EVENTS_PER_SECOND: f64 = 8.0;

/// A token bucket for one connection's ephemeral pushes.
struct EventBudget {
    tokens: f64,
    at: Instant,
}

impl EventBudget {
    fn take(&mut self, now: Instant) -> bool {
        let refill = now.saturating_duration_since(self.at).as_secs_f64() * EVENTS_PER_SECOND;
        self.tokens = (self.tokens + refill).min(EVENT_BURST);
        self.at = now;
        if self.tokens < 1.0 {
            return false;
        }
        self.tokens -= 1.0;
        true
    }
}

/// Encodes a frame for the socket in the connection's encoding.
pub fn to_ws<T: serde::Serialize>(frame: &T, encoding: Encoding) -> Message {
    encoded(codec::encode(frame, encoding), encoding)
}

/// A frame encoded for `encoding`, as its WebSocket message.
pub fn encoded(bytes: Vec<u8>, encoding: Encoding) -> Message {
    match encoding {
        Encoding::Json => match String::from_utf8(bytes) {
            Ok(text) => Message::text(text),
            Err(e) => Message::binary(e.into_bytes()),
        },
        Encoding::MsgPack => Message::binary(bytes),
    }
}

/// Why a frame was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The bytes waiting for the socket would pass the cap: the peer is not reading.
    Full,
    /// The connection is gone.
    Closed,
}

/// The frames waiting for one socket, capped in bytes (not frames): a peer that stops reading
/// costs the broker at most the cap, then it is cut off.
#[derive(Clone)]
pub struct Outbox {
    tx: mpsc::UnboundedSender<Message>,
    queued: Arc<AtomicUsize>,
    cap: usize,
    events: Arc<Mutex<EventBudget>>,
}

fn cost(m: &Message) -> usize {
    m.len() + FRAME_OVERHEAD
}

impl Outbox {
    pub fn new(cap: usize) -> (Outbox, OutboxRx) {
        let (tx, rx) = mpsc::unbounded_channel();
        let queued = Arc::new(AtomicUsize::new(0));
        (
            Outbox {
                tx,
                queued: queued.clone(),
                cap,
                events: Arc::new(Mutex::new(EventBudget {
                    tokens: EVENT_BURST,
                    at: Instant::now(),
                })),
            },
            OutboxRx { rx, queued },
        )
    }

    /// Queues a frame unless the bytes waiting would pass the cap; a frame larger than the cap
    /// still goes when nothing else waits, so one big reply cannot wedge a connection.
    pub fn push(&self, m: Message) -> Result<(), Refused> {
        let n = cost(&m);
        let before = self.queued.fetch_add(n, Ordering::AcqRel);
        if before > 0 && before + n > self.cap {
            self.queued.fetch_sub(n, Ordering::AcqRel);
            return Err(Refused::Full);
        }
        self.tx.send(m).map_err(|_| {
            self.queued.fetch_sub(n, Ordering::AcqRel);
            Refused::Closed
        })
    }

    /// Whether the connection's budget for ephemeral pushes allows one more now (and spends
    /// it); see [`EVENT_BURST`].
    pub fn take_event(&self) -> bool {
        self.events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take(Instant::now())
    }

    /// Bytes waiting for the socket.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Acquire)
    }
}

/// The writer's end of an [`Outbox`].
pub struct OutboxRx {
    rx: mpsc::UnboundedReceiver<Message>,
    queued: Arc<AtomicUsize>,
}

impl OutboxRx {
    pub async fn recv(&mut self) -> Option<Message> {
        let m = self.rx.recv().await?;
        self.queued.fetch_sub(cost(&m), Ordering::AcqRel);
        Some(m)
    }

    fn try_recv(&mut self) -> Option<Message> {
        let m = self.rx.try_recv().ok()?;
        self.queued.fetch_sub(cost(&m), Ordering::AcqRel);
        Some(m)
    }

    /// Drops everything still queued (the socket is being abandoned) and refuses more.
    fn discard(&mut self) {
        self.rx.close();
        while self.try_recv().is_some() {}
    }
}

type Step = std::pin::Pin<Box<dyn Future<Output = ()> + Send>>;

/// What a handler sees of the connection it serves.
pub struct Conn {
    pub broker: Arc<Broker>,
    pub conn_id: u64,
    /// The address the connection comes from (for the log).
    pub remote: SocketAddr,
    /// The type of the frame being handled (for the log).
    pub frame: &'static str,
    pub out: ConnHandle,
    /// Set by a successful hello.
    pub peer: Option<Arc<Peer>>,
    /// Work that must finish in frame order (acks after durable commits), run one at a time
    /// while the reader goes on reading.
    steps: mpsc::UnboundedSender<Step>,
    /// The budget slot of the frame being dispatched. A step takes it and gives it back when
    /// done, so at most [`MAX_PENDING_STEPS`] requests wait at once and the reader stops
    /// reading the socket when they do (backpressure, not buffering).
    slot: Mutex<Option<OwnedSemaphorePermit>>,
}

impl Conn {
    /// Runs `step` after every step queued before it, without holding up the reader.
    pub fn then(&self, step: impl Future<Output = ()> + Send + 'static) {
        let slot = self.slot.lock().ok().and_then(|mut s| s.take());
        let step = authorised_step(self.peer.clone(), step);
        let _ = self.steps.send(Box::pin(async move {
            step.await;
            drop(slot);
        }));
    }

    pub fn reply(&self, req_id: Option<String>, body: ServerMessage) {
        if let Some(peer) = &self.peer
            && !matches!(body, ServerMessage::Error(_))
        {
            super::router::changed(&self.broker, &peer.mesh_id, self.frame);
        }
        self.out.send(&Envelope::reply(req_id, body));
    }

    /// Sends `error{code, message}`, counted in the metrics and logged.
    pub fn error(&self, req_id: Option<String>, code: &'static str, message: impl Into<String>) {
        let message = message.into();
        self.refused(code, &message);
        self.reply(
            req_id,
            ServerMessage::Error(ErrorFrame {
                code: code.to_string(),
                message,
                id: None,
            }),
        );
    }

    /// Counts and logs a refusal of the frame being handled (the answer is the caller's).
    pub fn refused(&self, code: &'static str, reason: &str) {
        self.broker.metrics.error(code);
        if let Some(peer) = &self.peer {
            peer.counters.error();
        }
        self.broker
            .refusals
            .refused(self.who(), self.frame, code, reason);
    }

    /// Who this connection is, for the log: the peer once it said hello, and its address.
    /// Written out only when a line shows it (a send keeps one for a refusal it rarely makes).
    pub fn who(&self) -> Who {
        Who {
            peer: self.peer.clone(),
            remote: self.remote,
        }
    }

    /// Refuses the connection: error frame, then close with `close_code`.
    pub fn refuse(&self, code: &'static str, message: impl Into<String>, close_code: u16) {
        self.error(None, code, message);
        self.out.close(close_code, code);
    }
}

/// A step queued before its member was revoked does not run after: it runs only while the
/// presence still has its authority (and holds it meanwhile, so a revocation waits for it).
async fn authorised_step(peer: Option<Arc<Peer>>, step: impl Future<Output = ()>) {
    let Some(peer) = peer else {
        return step.await;
    };
    let Some(_held) = peer.authorised().await else {
        return;
    };
    step.await
}

pub async fn run(broker: Arc<Broker>, io: TokioIo<Upgraded>, remote: SocketAddr) {
    let limit = broker.config.max_message_bytes;
    // tungstenite's 128 KiB buffers per direction would cost 256 MiB at 1 000 peers; frames
    // here are small, and the buffers still grow for a large one up to the frame limit.
    let ws_config = WebSocketConfig::default()
        .read_buffer_size(8 * 1024)
        .write_buffer_size(8 * 1024)
        .max_message_size(Some(limit))
        .max_frame_size(Some(limit));
    let ws = WebSocketStream::from_raw_socket(io, Role::Server, Some(ws_config)).await;
    let (sink, mut stream) = ws.split();

    let (outbox, out_rx) = Outbox::new(broker.config.max_outbox_bytes);
    let (closer, mut close_rx) = watch::channel(None::<CloseOrder>);
    let idle = broker.config.idle_timeout;
    let idle_ms = idle.as_millis() as i64;
    let every = ping_every(idle);
    let mut last_seen = time::now_ms();
    let writer = tokio::spawn(writer_loop(
        sink,
        out_rx,
        closer.subscribe(),
        every,
        broker.clone(),
    ));

    Metrics::inc(&broker.metrics.connections_total);
    broker
        .metrics
        .connections_open
        .fetch_add(1, Ordering::Relaxed);
    let (steps, mut step_rx) = mpsc::unbounded_channel::<Step>();
    let stepper = tokio::spawn(async move {
        while let Some(step) = step_rx.recv().await {
            step.await;
        }
    });
    let conn_id = broker.presence.next_conn_id();
    let mut conn = Conn {
        conn_id,
        remote,
        frame: "frame",
        out: ConnHandle {
            conn_id,
            encoding: Encoding::Json,
            outbox,
            closer,
        },
        peer: None,
        broker: broker.clone(),
        steps,
        slot: Mutex::new(None),
    };
    let budget = Arc::new(Semaphore::new(MAX_PENDING_STEPS));
    // The slot the reader holds for the next frame; `None` while it waits for one, and then it
    // does not read the socket.
    let mut slot: Option<OwnedSemaphorePermit> = None;
    let hello_deadline = tokio::time::sleep(HELLO_TIMEOUT);
    tokio::pin!(hello_deadline);
    // The watchdog lives here, beside `last_seen`, so a writer stuck on a full socket cannot
    // keep a silent connection alive.
    let mut watchdog = tokio::time::interval_at(tokio::time::Instant::now() + every, every);

    loop {
        tokio::select! {
            _ = broker.shutdown.cancelled() => {
                conn.out.close(1001, "broker_shutdown");
                break;
            }
            _ = close_rx.changed() => {
                let slow = close_rx.borrow().as_ref().is_some_and(|o| o.reason == "slow_consumer");
                if slow {
                    broker.metrics.error("slow_consumer");
                    tracing::info!(
                        "closing connection {} ({}): slow consumer, over {} bytes unread",
                        conn.conn_id,
                        conn.peer.as_ref().map_or("before hello", |p| p.display_name.as_str()),
                        broker.config.max_outbox_bytes,
                    );
                }
                break;
            }
            _ = &mut hello_deadline, if conn.peer.is_none() => {
                conn.refuse("no_hello", "no hello within 30 s", 1008);
                break;
            }
            _ = watchdog.tick() => {
                if slot.is_none() {
                    // Not reading (waiting for our own work): the peer is not the silent one.
                    last_seen = time::now_ms();
                } else if time::now_ms() - last_seen > idle_ms {
                    tracing::debug!("closing connection {}: silent for over {idle:?}", conn.conn_id);
                    conn.out.close(1001, "idle_timeout");
                    break;
                }
            }
            taken = async {
                let permit = budget.clone().acquire_owned().await;
                // Senders wait here while the store writer's queue is full.
                broker.store.room().await;
                permit
            }, if slot.is_none() => {
                match taken {
                    Ok(p) => slot = Some(p),
                    Err(_) => break,
                }
            }
            frame = stream.next(), if slot.is_some() => {
                let Some(frame) = frame else { break };
                last_seen = time::now_ms();
                if let Ok(mut s) = conn.slot.lock() {
                    *s = slot.take();
                }
                match frame {
                    Ok(Message::Text(text)) => on_frame(&mut conn, Received::Text(&text)).await,
                    Ok(Message::Binary(bytes)) => on_frame(&mut conn, Received::Binary(&bytes)).await,
                    Ok(Message::Close(_)) => break,
                    Ok(_) => {} // ping / pong: liveness only
                    Err(tungstenite::Error::Capacity(e)) => {
                        // Not the last frame's operation: this one was never read.
                        conn.frame = "frame";
                        let why = match e {
                            tungstenite::error::CapacityError::MessageTooLong { size, max_size } => format!(
                                "a frame of {size} bytes is over this broker's limit of {max_size} bytes (its --max-message-bytes)"
                            ),
                            other => format!("a frame over this broker's limit of {limit} bytes: {other}"),
                        };
                        conn.refuse("payload_too_large", why, 1009);
                        break;
                    }
                    Err(tungstenite::Error::Utf8(_)) => {
                        conn.refuse("malformed", "text frame is not valid UTF-8", 1007);
                        break;
                    }
                    Err(e) => {
                        tracing::debug!("connection {} read error: {e}", conn.conn_id);
                        break;
                    }
                }
                // A frame that queued no step hands its slot back for the next one.
                slot = conn.slot.lock().ok().and_then(|mut s| s.take());
            }
        }
    }

    // Make sure the writer ends (a normal close unless an order is already given).
    conn.out.close(1000, "");
    if let Some(peer) = conn.peer.take() {
        handlers::hello::disconnected(&broker, &peer, conn.conn_id).await;
    }
    drop(slot);
    drop(conn);
    let _ = stepper.await;
    let _ = writer.await;
    broker
        .metrics
        .connections_open
        .fetch_sub(1, Ordering::Relaxed);
}

/// [`Conn::who`]: a connection's peer and address, shown as `name (key prefix…, address)`.
pub struct Who {
    peer: Option<Arc<Peer>>,
    remote: SocketAddr,
}

impl std::fmt::Display for Who {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.peer {
            Some(p) => write!(
                f,
                "{} ({}…, {})",
                p.display_name,
                &p.member_pubkey.to_hex()[..12],
                self.remote
            ),
            None => write!(f, "{}", self.remote),
        }
    }
}

/// Decodes and dispatches one frame. Before a successful hello only hellos are accepted.
async fn on_frame(conn: &mut Conn, incoming: Received<'_>) {
    Metrics::inc(&conn.broker.metrics.frames_in);
    if conn.peer.is_none() {
        // Answer a peer that has not said hello in the encoding it just used.
        conn.out.encoding = incoming.encoding();
    }
    conn.frame = "frame";
    let frame: Envelope<ClientMessage> = match codec::decode_received(incoming) {
        Ok(f) => f,
        // The original broker ignores types it does not know (the original client sends
        // `set_stats` every minute, and would take an error frame for the answer to whatever
        // request it has pending); one that asks for an answer gets one.
        Err(DecodeError {
            code: "unknown_message_type",
            message,
            req_id: None,
        }) => {
            Metrics::inc(&conn.broker.metrics.frames_ignored);
            tracing::debug!("ignored a frame from {}: {message}", conn.who());
            return;
        }
        Err(DecodeError {
            code,
            message,
            req_id,
        }) => {
            conn.error(req_id, code, message);
            return;
        }
    };
    conn.frame = frame.body.type_name();
    handlers::dispatch(conn, frame).await;
}

/// Waits for a close order; `None` when the connection ends without one.
async fn close_ordered(close_rx: &mut watch::Receiver<Option<CloseOrder>>) -> Option<CloseOrder> {
    let ordered = close_rx
        .wait_for(Option::is_some)
        .await
        .map(|order| order.clone());
    ordered.unwrap_or_else(|_| close_rx.borrow().clone())
}

/// Resolves [`CLOSE_GRACE`] after the connection was told to close: a write still pending by
/// then is on a socket nobody reads, and is abandoned.
async fn given_up(close_rx: &mut watch::Receiver<Option<CloseOrder>>) {
    close_ordered(close_rx).await;
    tokio::time::sleep(CLOSE_GRACE).await;
}

type Sink = futures_util::stream::SplitSink<WebSocketStream<TokioIo<Upgraded>>, Message>;

/// Sends `first` and every frame already waiting behind it, then flushes once.
async fn write_batch(
    sink: &mut Sink,
    out_rx: &mut OutboxRx,
    first: Message,
    broker: &Broker,
) -> bool {
    Metrics::inc(&broker.metrics.frames_out);
    if sink.feed(first).await.is_err() {
        return false;
    }
    while let Some(m) = out_rx.try_recv() {
        Metrics::inc(&broker.metrics.frames_out);
        if sink.feed(m).await.is_err() {
            return false;
        }
    }
    sink.flush().await.is_ok()
}

async fn writer_loop(
    mut sink: Sink,
    mut out_rx: OutboxRx,
    mut close_rx: watch::Receiver<Option<CloseOrder>>,
    every: Duration,
    broker: Arc<Broker>,
) {
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    // A write that outlasts a close order by CLOSE_GRACE is abandoned: a peer that stops
    // reading blocks the socket, and must not keep this task, its queue and its socket alive
    // after it is told to go (nor get a goodbye it will not read).
    let close = loop {
        tokio::select! {
            biased;
            msg = out_rx.recv() => {
                // Every sender is gone: the connection is ending; honour its close order.
                let Some(msg) = msg else { break close_rx.borrow().clone() };
                let gave_up = tokio::select! {
                    ok = write_batch(&mut sink, &mut out_rx, msg, &broker) => !ok,
                    () = given_up(&mut close_rx) => true,
                };
                if gave_up {
                    // Nobody reads this socket: free what waits for it now.
                    out_rx.discard();
                    break None;
                }
            }
            order = close_ordered(&mut close_rx) => break order,
            _ = ping.tick() => {
                tokio::select! {
                    sent = sink.send(Message::Ping(Vec::new().into())) => if sent.is_err() { break None },
                    () = given_up(&mut close_rx) => break None,
                }
            }
        }
    };
    if let Some(order) = close {
        // Frames queued before the close order (e.g. the error that explains it) go first.
        let frame = CloseFrame {
            code: order.code.into(),
            reason: order.reason.into(),
        };
        let _ = tokio::time::timeout(CLOSE_GRACE, async {
            while let Some(m) = out_rx.try_recv() {
                sink.feed(m).await?;
            }
            sink.send(Message::Close(Some(frame))).await
        })
        .await;
    }
    out_rx.discard();
    let _ = tokio::time::timeout(CLOSE_GRACE, sink.close()).await;
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    use super::super::presence::tests::{arrive, conn, peer};
    use super::super::presence::{Presence, Registered};
    use super::*;

    /// A step that runs when the revocation comes holds it off until it ends; a step queued
    /// before the revocation and reached after it never runs.
    #[tokio::test]
    async fn work_queued_on_a_revoked_connection_does_not_run() {
        let presence = Arc::new(Presence::default());
        let Ok(Registered::New(alice)) =
            presence.register(arrive("alice"), conn(1), 10, || peer("alice", 1))
        else {
            panic!("alice registers");
        };

        let (started, started_rx) = tokio::sync::oneshot::channel();
        let (finish, finish_rx) = tokio::sync::oneshot::channel::<()>();
        let running = tokio::spawn(authorised_step(Some(alice.clone()), async move {
            let _ = started.send(());
            let _ = finish_rx.await;
        }));
        started_rx.await.expect("the first step starts");
        let revoking = tokio::spawn({
            let (presence, alice) = (presence.clone(), alice.clone());
            async move {
                presence.revoke("mesh", "alice");
                alice.wait_idle().await;
            }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            !revoking.is_finished(),
            "the revocation waits for the running step"
        );
        finish.send(()).expect("the step is still waiting");
        running.await.expect("the step ends");
        revoking.await.expect("the revocation completes");

        let ran = Arc::new(AtomicBool::new(false));
        authorised_step(Some(alice), {
            let ran = ran.clone();
            async move { ran.store(true, Ordering::SeqCst) }
        })
        .await;
        assert!(
            !ran.load(Ordering::SeqCst),
            "a queued step ran after the revocation"
        );

        let unproven = Arc::new(AtomicBool::new(false));
        authorised_step(None, {
            let unproven = unproven.clone();
            async move { unproven.store(true, Ordering::SeqCst) }
        })
        .await;
        assert!(
            unproven.load(Ordering::SeqCst),
            "steps before hello still run"
        );
    }
}
