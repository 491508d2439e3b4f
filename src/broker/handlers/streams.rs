//! Streams (PROTOCOL.md §6): named live channels. `publish` reaches the presences subscribed at
//! that moment; nothing published is stored.

use super::reply::{Refusal, answer, ok_if_asked, refuse};
use crate::broker::connection::Conn;
use crate::broker::state::Broker;
use crate::protocol::messages::{Envelope, StreamData, StreamEntry};
use crate::protocol::{ServerMessage, ids, time};
use crate::store::{AuditActor, StreamRecord};

const MAX_STREAM_NAME: usize = 64;

fn stream_name(name: &str) -> Result<String, Refusal> {
    let ok = !name.is_empty()
        && name.len() <= MAX_STREAM_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':' | b'/'));
    if ok {
        Ok(name.to_string())
    } else {
        Err(refuse(
            "invalid_argument",
            format!(
                "a stream name is 1-{MAX_STREAM_NAME} of [A-Za-z0-9-_.:/], got \"{}\"",
                name.chars().take(80).collect::<String>()
            ),
        ))
    }
}

/// The stored stream of that name, or a refusal that says how to make it.
fn existing(broker: &Broker, mesh_id: &str, name: &str) -> Result<StreamRecord, Refusal> {
    let name = stream_name(name)?;
    broker.store.stream(mesh_id, &name)?.ok_or_else(|| {
        refuse(
            "not_found",
            format!("no stream \"{name}\" in this mesh; create it first (create_stream)"),
        )
    })
}

pub fn create_stream(conn: &Conn, req_id: Option<String>, name: String) {
    let Some(peer) = conn.peer.clone() else {
        return;
    };
    let broker = conn.broker.clone();
    answer(conn, req_id, async move {
        let record = StreamRecord {
            id: ids::new_id(),
            name: stream_name(&name)?,
            created_by: peer.display_name.clone(),
            created_at_ms: time::now_ms(),
        };
        let stream = broker
            .store
            .create_stream(
                peer.mesh_id.clone(),
                record,
                broker.config.quotas.streams,
                AuditActor::member(&peer.member_id, &peer.display_name),
            )
            .await??;
        Ok(Some(ServerMessage::StreamCreated {
            id: stream.id,
            name: stream.name,
        }))
    });
}

pub fn subscribe(conn: &Conn, req_id: Option<String>, stream: String) {
    let Some(peer) = conn.peer.clone() else {
        return;
    };
    let broker = conn.broker.clone();
    answer(conn, req_id, async move {
        let stream = existing(&broker, &peer.mesh_id, &stream)?;
        broker.subscriptions.subscribe(&peer, &stream.name);
        Ok(Some(ServerMessage::Subscribed {
            stream: stream.name,
        }))
    });
}

pub fn unsubscribe(conn: &Conn, req_id: Option<String>, stream: String) {
    let Some(peer) = conn.peer.clone() else {
        return;
    };
    let broker = conn.broker.clone();
    answer(conn, req_id.clone(), async move {
        broker.subscriptions.unsubscribe(&peer, &stream);
        Ok(ok_if_asked(&req_id))
    });
}

pub fn list_streams(conn: &Conn, req_id: Option<String>) {
    let Some(peer) = conn.peer.clone() else {
        return;
    };
    let broker = conn.broker.clone();
    answer(conn, req_id, async move {
        let streams = broker
            .store
            .streams(&peer.mesh_id)?
            .into_iter()
            .map(|s| StreamEntry {
                subscriber_count: broker
                    .subscriptions
                    .subscribers(&broker.presence, &peer.mesh_id, &s.name)
                    .iter()
                    .filter(|p| p.is_live())
                    .count(),
                id: s.id,
                name: s.name,
                created_by: s.created_by,
                created_at: time::iso(s.created_at_ms),
            })
            .collect();
        Ok(Some(ServerMessage::StreamList { streams }))
    });
}

pub fn publish(conn: &Conn, req_id: Option<String>, stream: String, data: serde_json::Value) {
    let Some(peer) = conn.peer.clone() else {
        return;
    };
    let broker = conn.broker.clone();
    answer(conn, req_id.clone(), async move {
        let stream = existing(&broker, &peer.mesh_id, &stream)?;
        let frame = Envelope::new(ServerMessage::StreamData(StreamData {
            stream: stream.name.clone(),
            data,
            published_by: peer.display_name.clone(),
        }));
        for subscriber in
            broker
                .subscriptions
                .subscribers(&broker.presence, &peer.mesh_id, &stream.name)
        {
            if subscriber.presence_id != peer.presence_id {
                subscriber.send(&frame);
            }
        }
        Ok(ok_if_asked(&req_id))
    });
}
