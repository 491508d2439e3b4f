//! What every shared-data handler (PROTOCOL.md §6) needs: input limits and checks, the
//! acting member, and an ordered reply or refusal.

use std::sync::Arc;

use crate::broker::connection::Conn;
use crate::broker::page::BadCursor;
use crate::broker::presence::Peer;
use crate::broker::router;
use crate::broker::state::Broker;
use crate::protocol::ServerMessage;
use crate::protocol::messages::Envelope;
use crate::store::{Actor, MemoryError, QuotaExceeded, StoreError};

pub(super) const MAX_TEXT: usize = 32 * 1024;
const MAX_TAGS: usize = 32;
const MAX_TAG: usize = 64;

/// Why a request was refused: the error code and a sentence.
#[derive(Debug)]
pub(super) struct Refusal {
    pub code: &'static str,
    pub message: String,
}

pub(super) fn refuse(code: &'static str, message: impl Into<String>) -> Refusal {
    Refusal {
        code,
        message: message.into(),
    }
}

impl From<StoreError> for Refusal {
    fn from(e: StoreError) -> Self {
        refuse("internal", e.to_string())
    }
}

impl From<BadCursor> for Refusal {
    fn from(e: BadCursor) -> Self {
        refuse("invalid_argument", e.to_string())
    }
}

/// A quota refusal names the limit, its value and the flag that sets it.
impl From<QuotaExceeded> for Refusal {
    fn from(e: QuotaExceeded) -> Self {
        refuse("quota_exceeded", e.to_string())
    }
}

impl From<MemoryError> for Refusal {
    fn from(e: MemoryError) -> Self {
        refuse("internal", e.to_string())
    }
}

/// What a handler answers: a frame, nothing (requests that only answer when asked), or a
/// refusal that becomes an `error` frame.
pub(super) type Reply = Result<Option<ServerMessage>, Refusal>;

/// Runs `work` in this connection's frame order (after earlier writes are committed, so a read
/// sees what the same connection just wrote) and sends its answer.
pub(super) fn answer(
    conn: &Conn,
    req_id: Option<String>,
    work: impl Future<Output = Reply> + Send + 'static,
) {
    conn.then(replying(conn, req_id, work));
}

/// Runs `work` beside the connection's other frames (for work that waits long, such as a
/// deploy starting a process) and sends its answer.
pub(super) fn aside(
    conn: &Conn,
    req_id: Option<String>,
    work: impl Future<Output = Reply> + Send + 'static,
) {
    tokio::spawn(replying(conn, req_id, work));
}

/// `work`, then its answer or refusal sent to this connection.
fn replying(
    conn: &Conn,
    req_id: Option<String>,
    work: impl Future<Output = Reply> + Send + 'static,
) -> impl Future<Output = ()> + Send + 'static {
    let broker = conn.broker.clone();
    let out = conn.out.clone();
    let (who, what) = (conn.who(), conn.frame);
    let mesh_id = conn.peer.as_ref().map(|p| p.mesh_id.clone());
    async move {
        let done = work.await;
        if done.is_ok()
            && let Some(mesh_id) = mesh_id
        {
            router::changed(&broker, &mesh_id, what);
        }
        let frame = match done {
            Ok(Some(frame)) => frame,
            Ok(None) => return,
            Err(Refusal { code, message }) => {
                broker.metrics.error(code);
                broker.refusals.refused(&who, what, code, &message);
                ServerMessage::error(code, message)
            }
        };
        out.send(&Envelope::reply(req_id, frame));
    }
}

/// `ack{ok:true}`.
pub(super) fn ok_ack() -> ServerMessage {
    ServerMessage::Ack(crate::protocol::messages::Ack {
        ok: Some(true),
        ..Default::default()
    })
}

/// `ack{ok:true}`, sent only when the request asked for an answer.
pub(super) fn ok_if_asked(req_id: &Option<String>) -> Option<ServerMessage> {
    req_id.as_ref().map(|_| ok_ack())
}

/// Answers `ack{ok:true}` only when the request asked for an answer (`_reqId`).
pub(super) fn maybe_ack(conn: &Conn, req_id: Option<String>) {
    if let Some(ack) = ok_if_asked(&req_id) {
        conn.reply(req_id, ack);
    }
}

/// Required free text: not blank, at most `max` characters.
pub(super) fn text(what: &str, value: &str, max: usize) -> Result<String, Refusal> {
    if value.trim().is_empty() {
        return Err(refuse(
            "invalid_argument",
            format!("{what} must not be empty"),
        ));
    }
    if value.chars().count() > max {
        return Err(refuse(
            "invalid_argument",
            format!("{what} is longer than {max} characters"),
        ));
    }
    Ok(value.to_string())
}

/// A list of short strings: trimmed, blanks dropped, duplicates removed, bounded.
pub(super) fn list(
    what: &str,
    items: Option<Vec<String>>,
    max_items: usize,
    max_len: usize,
) -> Result<Vec<String>, Refusal> {
    let mut out: Vec<String> = Vec::new();
    for item in items.unwrap_or_default() {
        let item = item.trim();
        if item.is_empty() || out.iter().any(|x| x == item) {
            continue;
        }
        if item.chars().count() > max_len {
            return Err(refuse(
                "invalid_argument",
                format!("each of {what} may be at most {max_len} characters"),
            ));
        }
        out.push(item.to_string());
    }
    if out.len() > max_items {
        return Err(refuse(
            "invalid_argument",
            format!("at most {max_items} {what}"),
        ));
    }
    Ok(out)
}

pub(super) fn tags(items: Option<Vec<String>>) -> Result<Vec<String>, Refusal> {
    list("tags", items, MAX_TAGS, MAX_TAG)
}

pub(super) fn me(conn: &Conn) -> Option<(Arc<Broker>, Arc<Peer>)> {
    Some((conn.broker.clone(), conn.peer.clone()?))
}

/// Who acts, with its role as it is now (it may have changed since its hello).
pub(super) fn actor(broker: &Broker, peer: &Peer) -> Actor {
    Actor {
        member_id: peer.member_id.clone(),
        name: peer.display_name.clone(),
        manages: super::perms::is_manager(broker, &peer.mesh_id, &peer.member_id),
    }
}
