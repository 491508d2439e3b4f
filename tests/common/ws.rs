//! Raw WebSocket helpers, for frames no well-behaved client would send: connect, send JSON,
//! text or MessagePack, read frames, replies and closes, and build and sign member and session
//! hellos by hand.

use super::*;

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// One event on a raw socket: a decoded frame (JSON text or MessagePack binary) or the close.
#[derive(Debug)]
pub enum Frame {
    Json(Value),
    MsgPack(Value),
    Close(u16, String),
    /// The stream ended without a close frame.
    Ended,
}

pub async fn ws_connect(url: &str) -> Ws {
    let (ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url))
        .await
        .unwrap_or_else(|_| panic!("connecting to {url} timed out"))
        .unwrap_or_else(|e| panic!("cannot connect to {url}: {e}"));
    ws
}

/// Sends `value` as a JSON text frame.
pub async fn ws_send(ws: &mut Ws, value: &Value) {
    ws_send_text(ws, &value.to_string()).await;
}

/// Sends any text frame, JSON or not.
pub async fn ws_send_text(ws: &mut Ws, text: &str) {
    ws.send(Message::text(text))
        .await
        .expect("send a text frame");
}

/// Sends `value` as a MessagePack binary frame (named fields).
pub async fn ws_send_msgpack(ws: &mut Ws, value: &Value) {
    let bytes = rmp_serde::to_vec_named(value).expect("encode MessagePack");
    ws.send(Message::binary(bytes))
        .await
        .expect("send a binary frame");
}

/// The next frame, skipping pings and pongs; fails the test after [`WAIT`].
pub async fn ws_next(ws: &mut Ws) -> Frame {
    loop {
        let msg = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("timed out waiting for a frame");
        return match msg {
            Some(Ok(Message::Text(t))) => {
                Frame::Json(serde_json::from_str(t.as_str()).expect("a JSON text frame"))
            }
            Some(Ok(Message::Binary(b))) => {
                Frame::MsgPack(rmp_serde::from_slice(&b).expect("a MessagePack binary frame"))
            }
            Some(Ok(Message::Close(c))) => c.map_or(Frame::Close(1005, String::new()), |c| {
                Frame::Close(u16::from(c.code), c.reason.to_string())
            }),
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => Frame::Ended,
        };
    }
}

/// The next data frame as JSON (either encoding); a close instead fails the test.
pub async fn ws_recv(ws: &mut Ws) -> Value {
    match ws_next(ws).await {
        Frame::Json(v) | Frame::MsgPack(v) => v,
        other => panic!("expected a frame, got {other:?}"),
    }
}

/// The next frame that is not a `push` (pushes, e.g. `peer_joined`, come unasked at any time):
/// the answer to a request, an error, a `hello_ack`.
pub async fn ws_recv_reply(ws: &mut Ws) -> Value {
    loop {
        let v = ws_recv(ws).await;
        if v["type"] != "push" {
            return v;
        }
    }
}

/// The close code and reason, skipping any data frames before it.
pub async fn ws_recv_close(ws: &mut Ws) -> (u16, String) {
    loop {
        match ws_next(ws).await {
            Frame::Close(code, reason) => return (code, reason),
            Frame::Ended => return (1006, String::new()),
            Frame::Json(_) | Frame::MsgPack(_) => continue,
        }
    }
}

/// Expects an `error` frame with `code`; returns it.
pub async fn ws_expect_error(ws: &mut Ws, code: &str) -> Value {
    let v = ws_recv_reply(ws).await;
    assert_eq!(v["type"], "error", "expected error {code}, got {v}");
    assert_eq!(v["code"], code, "expected error {code}, got {v}");
    v
}

/// A millisecond timestamp never handed out before in this process, so two hellos signed by
/// one key in the same millisecond are not mistaken for a replay.
pub fn unique_now_ms() -> i64 {
    static LAST: AtomicI64 = AtomicI64::new(0);
    let mut last = LAST.load(Ordering::Relaxed);
    loop {
        let t = time::now_ms().max(last + 1);
        match LAST.compare_exchange(last, t, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return t,
            Err(seen) => last = seen,
        }
    }
}

/// A valid member hello for `entry` as a JSON value (`"type":"hello"`).
pub fn member_hello(entry: &MeshEntry) -> Value {
    let hello = entry
        .member_hello(peer_info(&entry.display_name))
        .expect("member hello");
    let mut v = serde_json::to_value(Envelope::new(ClientMessage::Hello(hello))).unwrap();
    v["timestamp"] = unique_now_ms().into();
    sign_member_hello(&mut v, &entry.member_keys().expect("member key"));
    v
}

/// Signs a member hello value over its own fields with `keys`.
pub fn sign_member_hello(v: &mut Value, keys: &SignKeyPair) {
    let signed = canonical::hello(
        v["meshId"].as_str().unwrap_or_default(),
        v["memberId"].as_str().unwrap_or_default(),
        v["pubkey"].as_str().unwrap_or_default(),
        v["timestamp"].as_i64().unwrap_or_default(),
    );
    v["signature"] = hex::encode(keys.sign(signed.as_bytes())).into();
}

/// A valid session hello for `entry` with `session` as its key (`"type":"session_hello"`).
pub fn session_hello(entry: &MeshEntry, session: &SignKeyPair) -> Value {
    let hello = entry
        .session_hello(session, peer_info(&entry.display_name))
        .expect("session hello");
    let mut v = serde_json::to_value(Envelope::new(ClientMessage::SessionHello(hello))).unwrap();
    v["timestamp"] = unique_now_ms().into();
    sign_session_hello(&mut v, session);
    v
}

/// Signs a session hello value over its own fields with the session key.
pub fn sign_session_hello(v: &mut Value, session: &SignKeyPair) {
    let signed = canonical::session_hello(
        v["meshId"].as_str().unwrap_or_default(),
        v["parentMemberPubkey"].as_str().unwrap_or_default(),
        v["sessionPubkey"].as_str().unwrap_or_default(),
        v["timestamp"].as_i64().unwrap_or_default(),
    );
    v["signature"] = hex::encode(session.sign(signed.as_bytes())).into();
}

/// Connects, sends `hello` and expects `hello_ack`; returns the socket and the ack.
pub async fn ws_hello(broker: &BrokerProc, hello: &Value) -> (Ws, Value) {
    let mut ws = ws_connect(&broker.ws_url()).await;
    ws_send(&mut ws, hello).await;
    let ack = ws_recv_reply(&mut ws).await;
    assert_eq!(ack["type"], "hello_ack", "expected hello_ack, got {ack}");
    (ws, ack)
}

/// Sends `hello` on a fresh socket and expects the refusal: error `code`, then close `close`.
pub async fn ws_refused(broker: &BrokerProc, hello: &Value, code: &str, close: u16) {
    let mut ws = ws_connect(&broker.ws_url()).await;
    ws_send(&mut ws, hello).await;
    ws_expect_error(&mut ws, code).await;
    let (got, reason) = ws_recv_close(&mut ws).await;
    assert_eq!(got, close, "close code after {code} (reason {reason:?})");
    assert_eq!(reason, code, "close reason after {code}");
}
