//! `remember`, `recall`, `forget` (PROTOCOL.md §6): the mesh's searchable memory.

use super::shared::{MAX_TEXT, Reply, actor, answer, refuse, tags, text};
use crate::broker::connection::Conn;
use crate::protocol::messages::{Ack, MemoryEntry, Recall, Remember};
use crate::protocol::{ServerMessage, ids, time};
use crate::store::{Forgotten, MemoryRecord};

/// Results a `recall` returns unless it asks for another number.
const DEFAULT_RECALL: usize = 20;

pub fn remember(conn: &Conn, req_id: Option<String>, req: Remember) {
    let Some(peer) = conn.peer.clone() else {
        return;
    };
    let broker = conn.broker.clone();
    answer(conn, req_id, async move {
        let record = MemoryRecord {
            id: ids::new_id(),
            mesh_id: peer.mesh_id.clone(),
            content: text("content", &req.content, MAX_TEXT)?,
            tags: tags(req.tags)?,
            remembered_by: peer.display_name.clone(),
            member_id: peer.member_id.clone(),
            remembered_at_ms: time::now_ms(),
        };
        let id = record.id.clone();
        // Answers only once the memory is durable in redb and searchable.
        broker
            .memory
            .remember_within(&broker.store, record, broker.config.quotas.memories)
            .await??;
        Ok(Some(ServerMessage::MemoryStored { id }))
    });
}

pub fn recall(conn: &Conn, req_id: Option<String>, req: Recall) {
    let Some(peer) = conn.peer.clone() else {
        return;
    };
    let broker = conn.broker.clone();
    answer(conn, req_id, async move {
        if req.query.trim().is_empty() {
            return Err(refuse(
                "invalid_argument",
                "recall needs words to search for",
            ));
        }
        let limit = req.limit.unwrap_or(DEFAULT_RECALL);
        let found = broker
            .memory
            .recall(&broker.store, &peer.mesh_id, &req.query, limit)?;
        let memories = found
            .into_iter()
            .map(|r| MemoryEntry {
                id: r.memory.id,
                content: r.memory.content,
                tags: r.memory.tags,
                remembered_by: r.memory.remembered_by,
                remembered_at: time::iso(r.memory.remembered_at_ms),
                score: r.score,
            })
            .collect();
        Ok(Some(ServerMessage::MemoryResults { memories }))
    });
}

pub fn forget(conn: &Conn, req_id: Option<String>, memory_id: String) {
    let Some(peer) = conn.peer.clone() else {
        return;
    };
    let broker = conn.broker.clone();
    answer(conn, req_id, async move {
        forget_one(&broker, &peer, &memory_id).await
    });
}

/// Only a memory's author or an owner/admin may forget it.
async fn forget_one(
    broker: &crate::broker::state::Broker,
    peer: &crate::broker::presence::Peer,
    id: &str,
) -> Reply {
    let outcome = if ids::is_id(id) {
        broker
            .memory
            .forget(&broker.store, &peer.mesh_id, id, actor(peer))
            .await?
    } else {
        Forgotten::NotFound
    };
    match outcome {
        Forgotten::Done => {}
        Forgotten::NotFound => {
            return Err(refuse("not_found", format!("no memory {id} in this mesh")));
        }
        Forgotten::NotYours(author) => {
            return Err(refuse(
                "forbidden",
                format!(
                    "memory {id} was remembered by {author}: only its author or a mesh owner or admin may forget it"
                ),
            ));
        }
    }
    Ok(Some(ServerMessage::Ack(Ack {
        ok: Some(true),
        ..Default::default()
    })))
}
