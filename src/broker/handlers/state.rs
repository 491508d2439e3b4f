//! The state board (PROTOCOL.md §6): `set_state`, `get_state`, `list_state`.

use super::reply::{Refusal, answer, me, refuse};
use crate::broker::connection::Conn;
use crate::broker::limits::{MAX_STATE_KEY_BYTES, MAX_STATE_VALUE_BYTES};
use crate::broker::page::{Pager, decode_cursor};
use crate::protocol::messages::{Envelope, SetState, StateChange, StateEntry};
use crate::protocol::{ServerMessage, time};
use crate::store::StateRecord;

const MAX_KEY: usize = MAX_STATE_KEY_BYTES;
/// Largest state value, as JSON text.
const MAX_VALUE_BYTES: usize = MAX_STATE_VALUE_BYTES;

fn state_entry(r: &StateRecord) -> StateEntry {
    StateEntry {
        key: r.key.clone(),
        value: r.value(),
        updated_by: r.updated_by.clone(),
        updated_at: time::iso(r.updated_at_ms),
    }
}

fn state_key(key: &str) -> Result<String, Refusal> {
    if key.len() > MAX_KEY {
        return Err(refuse(
            "payload_too_large",
            format!(
                "the state key is {} bytes; the limit is {MAX_KEY}",
                key.len()
            ),
        ));
    }
    if key.is_empty() || key.chars().any(char::is_control) {
        return Err(refuse(
            "invalid_argument",
            format!("a state key is 1-{MAX_KEY} bytes, without control characters"),
        ));
    }
    Ok(key.to_string())
}

pub fn set_state(conn: &Conn, req_id: Option<String>, req: SetState) {
    let Some((broker, peer)) = me(conn) else {
        return;
    };
    // The original client takes an unasked `state_result` for the answer to its next
    // `get_state`: answer only when asked.
    let asked = req_id.is_some();
    answer(conn, req_id, async move {
        let key = state_key(&req.key)?;
        let value_json = req.value.to_string();
        if value_json.len() > MAX_VALUE_BYTES {
            return Err(refuse(
                "payload_too_large",
                format!(
                    "the state value is {} bytes as JSON; the limit is {MAX_VALUE_BYTES}",
                    value_json.len()
                ),
            ));
        }
        let record = StateRecord {
            key,
            value_json,
            updated_by: peer.display_name.clone(),
            updated_by_member_id: peer.member_id.clone(),
            updated_at_ms: time::now_ms(),
        };
        let record = broker
            .store
            .set_state(
                peer.mesh_id.clone(),
                record,
                req.value.is_null(),
                broker.config.quotas,
            )
            .await??;
        let change = Envelope::new(ServerMessage::StateChange(StateChange {
            key: record.key.clone(),
            value: req.value,
            updated_by: record.updated_by.clone(),
        }));
        for other in broker.presence.peers(&peer.mesh_id) {
            if other.presence_id != peer.presence_id && other.hears_events() {
                other.send(&change);
            }
        }
        Ok(asked.then(|| ServerMessage::StateResult(state_entry(&record))))
    });
}

pub fn get_state(conn: &Conn, req_id: Option<String>, key: String) {
    let Some((broker, peer)) = me(conn) else {
        return;
    };
    answer(conn, req_id, async move {
        let entry = match broker.store.state(&peer.mesh_id, &key)? {
            Some(r) => state_entry(&r),
            None => StateEntry {
                key,
                value: serde_json::Value::Null,
                updated_by: String::new(),
                updated_at: String::new(),
            },
        };
        Ok(Some(ServerMessage::StateResult(entry)))
    });
}

/// One page of the state board, in key order.
pub fn list_state(
    conn: &Conn,
    req_id: Option<String>,
    cursor: Option<String>,
    limit: Option<usize>,
) {
    let Some((broker, peer)) = me(conn) else {
        return;
    };
    answer(conn, req_id, async move {
        let after = decode_cursor(cursor.as_deref())?;
        let mut page = Pager::new(limit);
        broker
            .store
            .scan_state(&peer.mesh_id, after.as_deref(), |key, r| {
                page.offer(key, Some(state_entry(&r)))
            })?;
        let (entries, next_cursor) = page.finish();
        Ok(Some(ServerMessage::StateList {
            entries,
            next_cursor,
        }))
    });
}
