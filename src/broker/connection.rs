//! One WebSocket connection: a reader loop that decodes and dispatches frames, and a writer task
//! that owns the socket's write half, sends queued frames, pings and enforces the watchdog.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self, Message};

use super::handlers;
use super::metrics::Metrics;
use super::presence::{CloseOrder, ConnHandle, Peer};
use super::state::Broker;
use crate::protocol::messages::ErrorFrame;
use crate::protocol::{ClientMessage, DecodeError, Encoding, Envelope, ServerMessage, codec, time};

/// Frames queued for one connection before it counts as not reading.
const OUTBOX_CAPACITY: usize = 4096;
/// The broker pings this often…
const PING_EVERY: Duration = Duration::from_secs(30);
/// …and drops a socket that has shown no sign of life for this long.
const IDLE_LIMIT_MS: i64 = 75_000;
/// A connection must say hello within this time.
const HELLO_TIMEOUT: Duration = Duration::from_secs(30);

/// Encodes a frame for the socket in the connection's encoding.
pub fn to_ws(frame: &Envelope<ServerMessage>, encoding: Encoding) -> Message {
    let bytes = codec::encode(frame, encoding);
    match encoding {
        Encoding::Json => match String::from_utf8(bytes) {
            Ok(text) => Message::text(text),
            Err(e) => Message::binary(e.into_bytes()),
        },
        Encoding::MsgPack => Message::binary(bytes),
    }
}

type Step = std::pin::Pin<Box<dyn Future<Output = ()> + Send>>;

/// What a handler sees of the connection it serves.
pub struct Conn {
    pub broker: Arc<Broker>,
    pub conn_id: u64,
    pub out: ConnHandle,
    /// Set by a successful hello.
    pub peer: Option<Arc<Peer>>,
    /// Work that must finish in frame order (acks after durable commits), run one at a time
    /// while the reader goes on reading.
    steps: mpsc::UnboundedSender<Step>,
}

impl Conn {
    /// Runs `step` after every step queued before it, without holding up the reader.
    pub fn then(&self, step: impl Future<Output = ()> + Send + 'static) {
        let _ = self.steps.send(Box::pin(step));
    }

    pub fn reply(&self, req_id: Option<String>, body: ServerMessage) {
        self.out.send(&Envelope::reply(req_id, body));
    }

    /// Sends `error{code, message}`, counted in the metrics.
    pub fn error(&self, req_id: Option<String>, code: &'static str, message: impl Into<String>) {
        self.broker.metrics.error(code);
        self.reply(
            req_id,
            ServerMessage::Error(ErrorFrame {
                code: code.to_string(),
                message: message.into(),
                id: None,
            }),
        );
    }

    /// Refuses the connection: error frame, then close with `close_code`.
    pub fn refuse(&self, code: &'static str, message: impl Into<String>, close_code: u16) {
        self.error(None, code, message);
        self.out.close(close_code, code);
    }
}

pub async fn run(broker: Arc<Broker>, io: TokioIo<Upgraded>) {
    let limit = broker.config.max_message_bytes;
    let ws_config = WebSocketConfig::default()
        .max_message_size(Some(limit))
        .max_frame_size(Some(limit));
    let ws = WebSocketStream::from_raw_socket(io, Role::Server, Some(ws_config)).await;
    let (sink, mut stream) = ws.split();

    let (outbox, out_rx) = mpsc::channel(OUTBOX_CAPACITY);
    let (closer, mut close_rx) = watch::channel(None::<CloseOrder>);
    let last_seen = Arc::new(AtomicI64::new(time::now_ms()));
    let writer = tokio::spawn(writer_loop(
        sink,
        out_rx,
        closer.subscribe(),
        last_seen.clone(),
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
        out: ConnHandle {
            conn_id,
            encoding: Encoding::Json,
            outbox,
            closer,
        },
        peer: None,
        broker: broker.clone(),
        steps,
    };
    let hello_deadline = tokio::time::sleep(HELLO_TIMEOUT);
    tokio::pin!(hello_deadline);

    loop {
        tokio::select! {
            _ = broker.shutdown.cancelled() => {
                conn.out.close(1001, "broker_shutdown");
                break;
            }
            _ = close_rx.changed() => break,
            _ = &mut hello_deadline, if conn.peer.is_none() => {
                conn.refuse("no_hello", "no hello within 30 s", 1008);
                break;
            }
            frame = stream.next() => {
                let Some(frame) = frame else { break };
                last_seen.store(time::now_ms(), Ordering::Relaxed);
                match frame {
                    Ok(Message::Text(text)) => on_frame(&mut conn, text.as_bytes(), Encoding::Json).await,
                    Ok(Message::Binary(bytes)) => on_frame(&mut conn, &bytes, Encoding::MsgPack).await,
                    Ok(Message::Close(_)) => break,
                    Ok(_) => {} // ping / pong: liveness only
                    Err(tungstenite::Error::Capacity(e)) => {
                        conn.refuse(
                            "payload_too_large",
                            format!("frame exceeds MAX_MESSAGE_BYTES ({limit}): {e}"),
                            1009,
                        );
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
            }
        }
    }

    // Make sure the writer ends (a normal close unless an order is already given).
    conn.out.close(1000, "");
    if let Some(peer) = conn.peer.take() {
        handlers::hello::disconnected(&broker, &peer, conn.conn_id).await;
    }
    drop(conn);
    let _ = stepper.await;
    let _ = writer.await;
    broker
        .metrics
        .connections_open
        .fetch_sub(1, Ordering::Relaxed);
}

/// Decodes and dispatches one frame. Before a successful hello only hellos are accepted.
async fn on_frame(conn: &mut Conn, bytes: &[u8], encoding: Encoding) {
    Metrics::inc(&conn.broker.metrics.frames_in);
    if conn.peer.is_none() {
        // Answer a peer that has not said hello in the encoding it just used.
        conn.out.encoding = encoding;
    }
    let frame: Envelope<ClientMessage> = match codec::decode(bytes, encoding) {
        Ok(f) => f,
        Err(DecodeError {
            code,
            message,
            req_id,
        }) => {
            conn.error(req_id, code, message);
            return;
        }
    };
    handlers::dispatch(conn, frame).await;
}

async fn writer_loop(
    mut sink: futures_util::stream::SplitSink<WebSocketStream<TokioIo<Upgraded>>, Message>,
    mut out_rx: mpsc::Receiver<Message>,
    mut close_rx: watch::Receiver<Option<CloseOrder>>,
    last_seen: Arc<AtomicI64>,
    broker: Arc<Broker>,
) {
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + PING_EVERY, PING_EVERY);
    let close = loop {
        tokio::select! {
            biased;
            msg = out_rx.recv() => {
                // Every sender is gone: the connection is ending; honour its close order.
                let Some(msg) = msg else { break close_rx.borrow().clone() };
                Metrics::inc(&broker.metrics.frames_out);
                // Send more without flushing while frames are waiting; flush once at the end.
                let mut result = sink.feed(msg).await;
                while result.is_ok() {
                    match out_rx.try_recv() {
                        Ok(m) => {
                            Metrics::inc(&broker.metrics.frames_out);
                            result = sink.feed(m).await;
                        }
                        Err(_) => break,
                    }
                }
                if result.is_err() || sink.flush().await.is_err() {
                    break None;
                }
            }
            changed = close_rx.changed() => {
                if changed.is_err() { break close_rx.borrow().clone(); }
                let order = close_rx.borrow().clone();
                if order.is_some() { break order; }
            }
            _ = ping.tick() => {
                if time::now_ms() - last_seen.load(Ordering::Relaxed) > IDLE_LIMIT_MS {
                    tracing::debug!("closing a connection silent for over 75 s");
                    break Some(CloseOrder { code: 1001, reason: "idle_timeout".into() });
                }
                if sink.send(Message::Ping(Vec::new().into())).await.is_err() {
                    break None;
                }
            }
        }
    };
    if let Some(order) = close {
        // Frames queued before the close order (e.g. the error that explains it) go first.
        while let Ok(m) = out_rx.try_recv() {
            if sink.feed(m).await.is_err() {
                break;
            }
        }
        let frame = CloseFrame {
            code: order.code.into(),
            reason: order.reason.into(),
        };
        let _ = tokio::time::timeout(
            Duration::from_secs(2),
            sink.send(Message::Close(Some(frame))),
        )
        .await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), sink.close()).await;
}
