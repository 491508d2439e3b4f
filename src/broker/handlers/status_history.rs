//! `status_history` (PROTOCOL.md §5.3): the mesh's status changes over the last hours, for
//! any member (statuses are visible to members anyway). The record is
//! [`crate::broker::status_history`].

use crate::broker::connection::Conn;
use crate::protocol::{ServerMessage, time};

pub fn status_history(conn: &Conn, req_id: Option<String>, since: Option<String>) {
    let Some(me) = conn.peer.as_ref() else { return };
    let since_ms = match since.as_deref().map(time::parse_iso) {
        None => i64::MIN,
        Some(Some(ms)) => ms,
        Some(None) => {
            return conn.error(
                req_id,
                "invalid_argument",
                "since is an ISO 8601 time, e.g. 2026-01-02T03:04:05Z".to_string(),
            );
        }
    };
    let changes = conn
        .broker
        .status_history
        .since(&me.mesh_id, since_ms, time::now_ms());
    conn.reply(req_id, ServerMessage::StatusHistoryResult { changes });
}
