//! The shared board (PROTOCOL.md §6): state keys, contexts and tasks, plus what every
//! shared-data handler needs: input limits and an ordered reply.

use std::sync::Arc;

use crate::broker::connection::Conn;
use crate::broker::limits::{MAX_STATE_KEY_BYTES, MAX_STATE_VALUE_BYTES};
use crate::broker::page::{BadCursor, Pager, decode_cursor};
use crate::broker::presence::Peer;
use crate::broker::state::Broker;
use crate::protocol::messages::{
    ContextEntry, CreateTask, Envelope, SetState, ShareContext, StateChange, StateEntry, TaskEntry,
};
use crate::protocol::{ServerMessage, ids, time};
use crate::store::{
    Actor, ContextRecord, MemoryError, QuotaExceeded, StateRecord, StoreError, TaskRecord,
    TaskRefusal, TaskStatus,
};

const MAX_KEY: usize = MAX_STATE_KEY_BYTES;
/// Largest state value, as JSON text.
const MAX_VALUE_BYTES: usize = MAX_STATE_VALUE_BYTES;
pub(super) const MAX_TEXT: usize = 32 * 1024;
const MAX_TITLE: usize = 500;
const MAX_NAME: usize = 64;
const MAX_LIST_ITEMS: usize = 100;
const MAX_LIST_ITEM: usize = 1000;
const MAX_TAGS: usize = 32;
const MAX_TAG: usize = 64;

/// Why a request was refused: the error code and a sentence.
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
    let broker = conn.broker.clone();
    let out = conn.out.clone();
    conn.then(async move {
        let frame = match work.await {
            Ok(Some(frame)) => frame,
            Ok(None) => return,
            Err(Refusal { code, message }) => {
                broker.metrics.error(code);
                ServerMessage::error(code, message)
            }
        };
        out.send(&Envelope::reply(req_id, frame));
    });
}

/// `ack{ok:true}`, sent only when the request asked for an answer.
pub(super) fn ok_if_asked(req_id: &Option<String>) -> Option<ServerMessage> {
    req_id.as_ref().map(|_| {
        ServerMessage::Ack(crate::protocol::messages::Ack {
            ok: Some(true),
            ..Default::default()
        })
    })
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

fn me(conn: &Conn) -> Option<(Arc<Broker>, Arc<Peer>)> {
    Some((conn.broker.clone(), conn.peer.clone()?))
}

pub(super) fn actor(peer: &Peer) -> Actor {
    Actor {
        member_id: peer.member_id.clone(),
        name: peer.display_name.clone(),
        manages: peer.role.can_manage(),
    }
}

// --- State -------------------------------------------------------------------------------

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
            if other.presence_id != peer.presence_id && !other.control_plane {
                other.send(&change);
            }
        }
        Ok(Some(ServerMessage::StateResult(state_entry(&record))))
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

// --- Contexts ----------------------------------------------------------------------------

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

// --- Tasks -------------------------------------------------------------------------------

fn task_entry(t: TaskRecord) -> TaskEntry {
    TaskEntry {
        id: t.id,
        title: t.title,
        assignee: t.assignee,
        claimed_by: t.claimed_by,
        status: t.status.as_str().into(),
        priority: t.priority,
        created_by: t.created_by,
        tags: t.tags,
        result: t.result,
        created_at: time::iso(t.created_at_ms),
    }
}

fn optional_name(what: &str, v: Option<String>) -> Result<Option<String>, Refusal> {
    match v.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(s) if s.chars().count() > MAX_NAME => Err(refuse(
            "invalid_argument",
            format!("{what} may be at most {MAX_NAME} characters"),
        )),
        Some(s) => Ok(Some(s.to_string())),
    }
}

pub fn create_task(conn: &Conn, req_id: Option<String>, req: CreateTask) {
    let Some((broker, peer)) = me(conn) else {
        return;
    };
    answer(conn, req_id, async move {
        let task = TaskRecord {
            id: ids::new_id(),
            title: text("title", req.title.trim(), MAX_TITLE)?,
            assignee: task_assignee(&broker, &peer, req.assignee)?,
            claimed_by: None,
            claimed_by_member_id: None,
            status: TaskStatus::Open,
            priority: task_priority(req.priority)?,
            created_by: peer.display_name.clone(),
            created_by_member_id: peer.member_id.clone(),
            tags: tags(req.tags)?,
            result: None,
            created_at_ms: time::now_ms(),
            claimed_at_ms: None,
            completed_at_ms: None,
        };
        let id = task.id.clone();
        broker
            .store
            .create_task(peer.mesh_id.clone(), task, broker.config.quotas.tasks)
            .await??;
        Ok(Some(ServerMessage::TaskCreated { id }))
    });
}

fn task_outcome(id: &str, outcome: Result<TaskRecord, TaskRefusal>) -> Reply {
    match outcome {
        Ok(task) => Ok(Some(ServerMessage::TaskList {
            tasks: vec![task_entry(task)],
            next_cursor: None,
        })),
        Err(TaskRefusal::NotFound) => Err(refuse(
            "task_not_found",
            format!("no task {id} in this mesh"),
        )),
        Err(TaskRefusal::NotClaimable(status)) => Err(refuse(
            "task_not_claimable",
            match status {
                TaskStatus::Done => format!("task {id} is already done"),
                _ => format!("task {id} is already {}", status.as_str()),
            },
        )),
        Err(TaskRefusal::NotYours(claimer)) => Err(refuse(
            "forbidden",
            format!(
                "task {id} is claimed by {claimer}: only its claimer, its creator or a mesh owner or admin may complete or release it"
            ),
        )),
        Err(TaskRefusal::NotClaimed) => Err(refuse(
            "task_not_claimed",
            format!("task {id} is open: there is no claim to release"),
        )),
    }
}

/// `release_task{taskId}`: claimed → open, by the claimer, the creator or an owner/admin.
pub fn release_task(conn: &Conn, req_id: Option<String>, task_id: String) {
    let Some((broker, peer)) = me(conn) else {
        return;
    };
    answer(conn, req_id, async move {
        let outcome = broker
            .store
            .release_task(peer.mesh_id.clone(), task_id.clone(), actor(&peer))
            .await?;
        task_outcome(&task_id, outcome)
    });
}

/// The priorities a task may have (CLI.md `task create --priority`); default `normal`.
const TASK_PRIORITIES: [&str; 4] = ["low", "normal", "high", "urgent"];

fn task_priority(given: Option<String>) -> Result<String, Refusal> {
    let given = given.map(|p| p.trim().to_lowercase()).unwrap_or_default();
    if given.is_empty() {
        return Ok("normal".into());
    }
    if TASK_PRIORITIES.contains(&given.as_str()) {
        return Ok(given);
    }
    Err(refuse(
        "invalid_argument",
        format!(
            "unknown task priority \"{}\" (one of {})",
            given.chars().take(MAX_NAME).collect::<String>(),
            TASK_PRIORITIES.join(", ")
        ),
    ))
}

/// An assignee names someone in the mesh: the display name of a member that is not revoked or
/// of a live peer (case-insensitive), or a member's or live peer's public key, which is stored
/// as that member's display name.
fn task_assignee(
    broker: &Broker,
    peer: &Peer,
    given: Option<String>,
) -> Result<Option<String>, Refusal> {
    let Some(name) = optional_name("assignee", given)? else {
        return Ok(None);
    };
    let members = broker.store.members(&peer.mesh_id)?;
    let live = broker.presence.peers(&peer.mesh_id);
    let wanted = name.to_lowercase();
    let member = members
        .iter()
        .filter(|m| m.revoked_at_ms.is_none())
        .find(|m| m.display_name.to_lowercase() == wanted || m.pubkey.to_hex() == wanted);
    if let Some(m) = member {
        return Ok(Some(if m.pubkey.to_hex() == wanted {
            m.display_name.clone()
        } else {
            name
        }));
    }
    let session = live
        .iter()
        .find(|p| p.display_name.to_lowercase() == wanted || p.pubkey().to_hex() == wanted);
    if let Some(p) = session {
        return Ok(Some(if p.pubkey().to_hex() == wanted {
            p.display_name.clone()
        } else {
            name
        }));
    }
    Err(refuse(
        "invalid_argument",
        format!("no member or peer of this mesh is called \"{name}\" (assignee)"),
    ))
}

pub fn claim_task(conn: &Conn, req_id: Option<String>, task_id: String) {
    let Some((broker, peer)) = me(conn) else {
        return;
    };
    answer(conn, req_id, async move {
        let outcome = broker
            .store
            .claim_task(
                peer.mesh_id.clone(),
                task_id.clone(),
                actor(&peer),
                time::now_ms(),
            )
            .await?;
        task_outcome(&task_id, outcome)
    });
}

pub fn complete_task(conn: &Conn, req_id: Option<String>, task_id: String, result: Option<String>) {
    let Some((broker, peer)) = me(conn) else {
        return;
    };
    answer(conn, req_id, async move {
        let result = match result.filter(|r| !r.trim().is_empty()) {
            Some(r) => Some(text("result", &r, MAX_TEXT)?),
            None => None,
        };
        let outcome = broker
            .store
            .complete_task(
                peer.mesh_id.clone(),
                task_id.clone(),
                actor(&peer),
                result,
                time::now_ms(),
            )
            .await?;
        task_outcome(&task_id, outcome)
    });
}

/// One page of the tasks that match, in id order (our client sorts them by time).
pub fn list_tasks(
    conn: &Conn,
    req_id: Option<String>,
    status: Option<String>,
    assignee: Option<String>,
    cursor: Option<String>,
    limit: Option<usize>,
) {
    let Some((broker, peer)) = me(conn) else {
        return;
    };
    answer(conn, req_id, async move {
        let status = match status.as_deref().map(str::trim) {
            None | Some("") | Some("all") => None,
            Some(s) => Some(TaskStatus::parse(s).ok_or_else(|| {
                refuse(
                    "invalid_argument",
                    format!("unknown task status \"{s}\" (open, claimed or done)"),
                )
            })?),
        };
        let assignee = assignee
            .map(|a| a.trim().to_lowercase())
            .filter(|a| !a.is_empty());
        let after = decode_cursor(cursor.as_deref())?;
        let mut page = Pager::new(limit);
        broker
            .store
            .scan_tasks(&peer.mesh_id, after.as_deref(), |id, t| {
                let wanted = status.is_none_or(|s| t.status == s)
                    && assignee.as_deref().is_none_or(|a| {
                        t.assignee.as_deref().is_some_and(|x| x.to_lowercase() == a)
                    });
                page.offer(id, wanted.then(|| task_entry(t)))
            })?;
        let (tasks, next_cursor) = page.finish();
        Ok(Some(ServerMessage::TaskList { tasks, next_cursor }))
    });
}
