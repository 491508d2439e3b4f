//! Tasks (PROTOCOL.md §6, §6.2): `create_task`, `claim_task`, `complete_task`,
//! `release_task`, `list_tasks`.

use super::reply::{MAX_TEXT, Refusal, Reply, actor, answer, me, refuse, tags, text};
use crate::broker::connection::Conn;
use crate::broker::page::{Pager, decode_cursor};
use crate::broker::presence::Peer;
use crate::broker::state::Broker;
use crate::protocol::messages::{CreateTask, TaskEntry};
use crate::protocol::{ServerMessage, ids, time};
use crate::store::{TaskRecord, TaskRefusal, TaskStatus};

const MAX_TITLE: usize = 500;
const MAX_NAME: usize = 64;

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
            .release_task(
                peer.mesh_id.clone(),
                task_id.clone(),
                actor(&broker, &peer),
                time::now_ms(),
            )
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
                actor(&broker, &peer),
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
                actor(&broker, &peer),
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
