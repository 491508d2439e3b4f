//! `remember`, `recall`, `forget` (PROTOCOL.md §6): the mesh's searchable memory.

use super::reply::{MAX_TEXT, Reply, actor, answer, refuse, tags, text};
use crate::broker::connection::Conn;
use crate::broker::page::{BadCursor, Pager, decode_cursor, page_items};
use crate::protocol::messages::{Ack, MemoryEntry, Recall, Remember};
use crate::protocol::{ServerMessage, ids, time};
use crate::store::{Forgotten, MAX_RECALL, MemoryRecord};

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
        // The cursor is how many of the ranked matches earlier pages went through.
        let offset = match decode_cursor(req.cursor.as_deref())? {
            Some(n) => n.parse::<usize>().map_err(|_| BadCursor)?,
            None => 0,
        };
        let end = (offset + page_items(req.limit, DEFAULT_RECALL)).min(MAX_RECALL);
        let mut page = Pager::with_items(end.saturating_sub(offset));
        if offset < end {
            // One match beyond the page tells whether there is a next one.
            let probe = usize::from(end < MAX_RECALL);
            let found = broker.memory.recall_page(
                &broker.store,
                &peer.mesh_id,
                &req.query,
                offset,
                end - offset + probe,
            )?;
            for (i, r) in found.into_iter().enumerate() {
                let entry = MemoryEntry {
                    id: r.memory.id,
                    content: r.memory.content,
                    tags: r.memory.tags,
                    remembered_by: r.memory.remembered_by,
                    remembered_at: time::iso(r.memory.remembered_at_ms),
                    score: r.score,
                };
                if !page.offer(&(offset + i + 1).to_string(), Some(entry)) {
                    break;
                }
            }
        }
        let (memories, next_cursor) = page.finish();
        Ok(Some(ServerMessage::MemoryResults {
            memories,
            next_cursor,
        }))
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
            .forget(&broker.store, &peer.mesh_id, id, actor(broker, peer))
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
