//! Contexts (PROTOCOL.md §6): what each member currently knows; `share_context`,
//! `get_context`, `list_contexts`.

use super::reply::{MAX_TEXT, answer, list, me, tags, text};
use crate::broker::connection::Conn;
use crate::broker::page::{Pager, decode_cursor};
use crate::protocol::messages::{ContextEntry, ShareContext};
use crate::protocol::{ServerMessage, ids, time};
use crate::store::ContextRecord;

const MAX_LIST_ITEMS: usize = 100;
const MAX_LIST_ITEM: usize = 1000;

fn context_entry(c: ContextRecord) -> ContextEntry {
    ContextEntry {
        id: c.id,
        peer_name: c.peer_name,
        member_pubkey: c.member_pubkey,
        summary: c.summary,
        files_read: c.files_read,
        key_findings: c.key_findings,
        tags: c.tags,
        updated_at: time::iso(c.updated_at_ms),
    }
}

pub fn share_context(conn: &Conn, req_id: Option<String>, req: ShareContext) {
    let Some((broker, peer)) = me(conn) else {
        return;
    };
    answer(conn, req_id, async move {
        let context = ContextRecord {
            id: ids::new_id(),
            member_id: peer.member_id.clone(),
            peer_name: peer.display_name.clone(),
            member_pubkey: peer.member_pubkey.to_hex(),
            summary: text("summary", &req.summary, MAX_TEXT)?,
            files_read: list("filesRead", req.files_read, MAX_LIST_ITEMS, MAX_LIST_ITEM)?,
            key_findings: list(
                "keyFindings",
                req.key_findings,
                MAX_LIST_ITEMS,
                MAX_LIST_ITEM,
            )?,
            tags: tags(req.tags)?,
            updated_at_ms: time::now_ms(),
        };
        let id = context.id.clone();
        broker
            .store
            .share_context(peer.mesh_id.clone(), context, broker.config.quotas.contexts)
            .await??;
        Ok(Some(ServerMessage::ContextShared { id }))
    });
}

/// How many of the query's words a context mentions (case-insensitive, anywhere in it).
fn context_score(c: &ContextRecord, words: &[String]) -> usize {
    let haystack = [
        c.summary.as_str(),
        &c.files_read.join("\n"),
        &c.key_findings.join("\n"),
        &c.tags.join("\n"),
        &c.peer_name,
    ]
    .join("\n")
    .to_lowercase();
    words
        .iter()
        .filter(|w| haystack.contains(w.as_str()))
        .count()
}

pub fn get_context(conn: &Conn, req_id: Option<String>, query: String) {
    let Some((broker, peer)) = me(conn) else {
        return;
    };
    answer(conn, req_id, async move {
        let words: Vec<String> = query.split_whitespace().map(str::to_lowercase).collect();
        let mut scored: Vec<(usize, ContextRecord)> = broker
            .store
            .contexts(&peer.mesh_id)?
            .into_iter()
            .map(|c| (context_score(&c, &words), c))
            .filter(|(score, _)| *score > 0 || words.is_empty())
            .collect();
        // Stable: among equal scores the most recent (the store's order) stays first.
        scored.sort_by_key(|(score, _)| std::cmp::Reverse(*score));
        Ok(Some(ServerMessage::ContextResults {
            contexts: scored.into_iter().map(|(_, c)| context_entry(c)).collect(),
        }))
    });
}

/// One page of the members' contexts, in member-id order (our client sorts them by time).
pub fn list_contexts(
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
            .scan_contexts(&peer.mesh_id, after.as_deref(), |member_id, c| {
                page.offer(member_id, Some(context_entry(c)))
            })?;
        let (contexts, next_cursor) = page.finish();
        Ok(Some(ServerMessage::ContextList {
            contexts,
            next_cursor,
        }))
    });
}
