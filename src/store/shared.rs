//! A mesh's shared board: state keys, tasks, contexts and streams (PROTOCOL.md §6). Memories
//! live in `memory.rs` (they have a search index beside them), reminders in `schedules.rs`.

use redb::{ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::quotas::{self, Quota, QuotaExceeded};
use super::{MeshQuotas, Store, StoreError, decode, decode_opt, encode};

/// `(mesh_id, key) → StateRecord`
pub(crate) const STATE: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("state");
/// `(mesh_id, task_id) → TaskRecord`
pub(crate) const TASKS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("tasks");
/// `(mesh_id, member_id) → ContextRecord`: one current context per member.
pub(crate) const CONTEXTS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("contexts");
/// `(mesh_id, stream name) → StreamRecord`
pub(crate) const STREAMS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("streams");

/// Opens the shared-board tables (called from `records::create_tables`).
pub(crate) fn create_tables(tx: &WriteTransaction) -> Result<(), StoreError> {
    tx.open_table(STATE)?;
    tx.open_table(TASKS)?;
    tx.open_table(CONTEXTS)?;
    tx.open_table(STREAMS)?;
    super::memory::create_tables(tx)?;
    super::schedules::create_tables(tx)?;
    Ok(())
}

/// Every row of one mesh in a `(mesh_id, …)` table, decoded.
pub(crate) fn mesh_rows<T: serde::de::DeserializeOwned>(
    table: &impl ReadableTable<(&'static str, &'static str), &'static [u8]>,
    mesh_id: &str,
) -> Result<Vec<T>, StoreError> {
    let mut out = Vec::new();
    for row in table.range((mesh_id, "")..)? {
        let (k, v) = row?;
        if k.value().0 != mesh_id {
            break;
        }
        out.push(decode(v.value())?);
    }
    Ok(out)
}

/// Visits one mesh's rows of a `(mesh_id, key)` table in key order, starting just after key
/// `after`, until `visit` returns false: a page is read by key range, never the whole mesh.
pub(crate) fn scan_mesh_rows<T: serde::de::DeserializeOwned>(
    table: &impl ReadableTable<(&'static str, &'static str), &'static [u8]>,
    mesh_id: &str,
    after: Option<&str>,
    mut visit: impl FnMut(&str, T) -> bool,
) -> Result<(), StoreError> {
    use std::ops::Bound;
    let start = match after {
        Some(key) => Bound::Excluded((mesh_id, key)),
        None => Bound::Included((mesh_id, "")),
    };
    for row in table.range((start, Bound::Unbounded))? {
        let (k, v) = row?;
        let (mesh, key) = k.value();
        if mesh != mesh_id {
            break;
        }
        if !visit(key, decode(v.value())?) {
            break;
        }
    }
    Ok(())
}

/// How many rows one mesh has in a `(mesh_id, …)` table.
pub(crate) fn mesh_row_count<V: redb::Value + 'static>(
    table: &impl ReadableTable<(&'static str, &'static str), V>,
    mesh_id: &str,
) -> Result<u64, StoreError> {
    let mut n = 0;
    for row in table.range((mesh_id, "")..)? {
        let (k, _) = row?;
        if k.value().0 != mesh_id {
            break;
        }
        n += 1;
    }
    Ok(n)
}

/// One key of the state board. The value is kept as JSON text: any JSON value round-trips
/// exactly, whatever encoding the client spoke.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StateRecord {
    pub key: String,
    pub value_json: String,
    pub updated_by: String,
    pub updated_by_member_id: String,
    pub updated_at_ms: i64,
}

impl StateRecord {
    pub fn value(&self) -> serde_json::Value {
        serde_json::from_str(&self.value_json).unwrap_or(serde_json::Value::Null)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskStatus {
    Open,
    Claimed,
    Done,
}

impl TaskStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Open => "open",
            TaskStatus::Claimed => "claimed",
            TaskStatus::Done => "done",
        }
    }
    pub fn parse(s: &str) -> Option<TaskStatus> {
        match s {
            "open" => Some(TaskStatus::Open),
            "claimed" => Some(TaskStatus::Claimed),
            "done" => Some(TaskStatus::Done),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskRecord {
    pub id: String,
    pub title: String,
    #[serde(default)]
    pub assignee: Option<String>,
    #[serde(default)]
    pub claimed_by: Option<String>,
    #[serde(default)]
    pub claimed_by_member_id: Option<String>,
    pub status: TaskStatus,
    pub priority: String,
    pub created_by: String,
    pub created_by_member_id: String,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub result: Option<String>,
    pub created_at_ms: i64,
    #[serde(default)]
    pub claimed_at_ms: Option<i64>,
    #[serde(default)]
    pub completed_at_ms: Option<i64>,
}

/// Why a claim or completion was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskRefusal {
    NotFound,
    /// The task is not in a state that allows the change; carries its status.
    NotClaimable(TaskStatus),
    /// Someone else claimed it: only they, the task's creator or an owner/admin may change it.
    /// Carries the claimer's name.
    NotYours(String),
    /// `release_task` on a task nobody claimed.
    NotClaimed,
}

/// Who acts on a task.
#[derive(Debug, Clone)]
pub struct Actor {
    pub member_id: String,
    pub name: String,
    /// An owner or admin of the mesh.
    pub manages: bool,
}

impl TaskRecord {
    /// Whether `by` may complete or release this task once it is claimed: its claimer, its
    /// creator, or an owner or admin.
    pub fn may_settle(&self, by: &Actor) -> bool {
        by.manages
            || self.created_by_member_id == by.member_id
            || self.claimed_by_member_id.as_deref() == Some(by.member_id.as_str())
    }
}

/// What one member currently knows about the codebase.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContextRecord {
    pub id: String,
    pub member_id: String,
    pub peer_name: String,
    #[serde(default)]
    pub member_pubkey: String,
    pub summary: String,
    #[serde(default)]
    pub files_read: Vec<String>,
    #[serde(default)]
    pub key_findings: Vec<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    pub updated_at_ms: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StreamRecord {
    pub id: String,
    pub name: String,
    pub created_by: String,
    pub created_at_ms: i64,
}

/// The task counts `mesh_info` shows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TaskCounts {
    pub open: u64,
    pub claimed: u64,
    pub done: u64,
}

impl Store {
    /// Sets (or, with `delete`, deletes) a state key; returns the stored record, or the quota
    /// the change would break (then nothing changes).
    pub async fn set_state(
        &self,
        mesh_id: String,
        record: StateRecord,
        delete: bool,
        limits: MeshQuotas,
    ) -> Result<Result<StateRecord, QuotaExceeded>, StoreError> {
        self.write(move |tx| {
            let key = (mesh_id.as_str(), record.key.as_str());
            let old: Option<StateRecord> = decode_opt(tx.open_table(STATE)?.get(key)?)?;
            let old_bytes = old
                .as_ref()
                .map_or(0, |r| quotas::state_bytes(&r.key, &r.value_json));
            let mut table = tx.open_table(STATE)?;
            if delete {
                if old.is_some() {
                    table.remove(key)?;
                    quotas::free(tx, &mesh_id, Quota::StateKeys, 1)?;
                    quotas::free(tx, &mesh_id, Quota::StateBytes, old_bytes)?;
                }
                return Ok(Ok(record));
            }
            let new_bytes = quotas::state_bytes(&record.key, &record.value_json);
            if old.is_none()
                && let Err(e) =
                    quotas::charge(tx, &mesh_id, Quota::StateKeys, 1, limits.state_keys)?
            {
                return Ok(Err(e));
            }
            let delta = new_bytes as i64 - old_bytes as i64;
            if let Err(e) =
                quotas::charge(tx, &mesh_id, Quota::StateBytes, delta, limits.state_bytes)?
            {
                if old.is_none() {
                    quotas::free(tx, &mesh_id, Quota::StateKeys, 1)?;
                }
                return Ok(Err(e));
            }
            table.insert(key, encode(&record).as_slice())?;
            Ok(Ok(record))
        })
        .await
    }

    pub fn state(&self, mesh_id: &str, key: &str) -> Result<Option<StateRecord>, StoreError> {
        let rt = self.read()?;
        decode_opt(rt.open_table(STATE)?.get((mesh_id, key))?)
    }

    /// The first `max` state keys of a mesh, in key order, without reading their values.
    pub fn state_keys(&self, mesh_id: &str, max: usize) -> Result<Vec<String>, StoreError> {
        let rt = self.read()?;
        let table = rt.open_table(STATE)?;
        let mut out = Vec::new();
        for row in table.range((mesh_id, "")..)? {
            let (k, _) = row?;
            let (mesh, key) = k.value();
            if mesh != mesh_id || out.len() >= max {
                break;
            }
            out.push(key.to_string());
        }
        Ok(out)
    }

    /// A mesh's state keys in key order, from just after `after`, while `visit` wants more.
    pub fn scan_state(
        &self,
        mesh_id: &str,
        after: Option<&str>,
        visit: impl FnMut(&str, StateRecord) -> bool,
    ) -> Result<(), StoreError> {
        let rt = self.read()?;
        scan_mesh_rows(&rt.open_table(STATE)?, mesh_id, after, visit)
    }

    /// A mesh's tasks in id order, from just after id `after`, while `visit` wants more.
    pub fn scan_tasks(
        &self,
        mesh_id: &str,
        after: Option<&str>,
        visit: impl FnMut(&str, TaskRecord) -> bool,
    ) -> Result<(), StoreError> {
        let rt = self.read()?;
        scan_mesh_rows(&rt.open_table(TASKS)?, mesh_id, after, visit)
    }

    /// The members' contexts in member-id order, from just after member `after`, while
    /// `visit` wants more.
    pub fn scan_contexts(
        &self,
        mesh_id: &str,
        after: Option<&str>,
        visit: impl FnMut(&str, ContextRecord) -> bool,
    ) -> Result<(), StoreError> {
        let rt = self.read()?;
        scan_mesh_rows(&rt.open_table(CONTEXTS)?, mesh_id, after, visit)
    }

    /// Stores a new task unless the mesh already holds `max_tasks`.
    pub async fn create_task(
        &self,
        mesh_id: String,
        task: TaskRecord,
        max_tasks: u64,
    ) -> Result<Result<(), QuotaExceeded>, StoreError> {
        self.write(move |tx| {
            if let Err(e) = quotas::charge(tx, &mesh_id, Quota::Tasks, 1, max_tasks)? {
                return Ok(Err(e));
            }
            tx.open_table(TASKS)?.insert(
                (mesh_id.as_str(), task.id.as_str()),
                encode(&task).as_slice(),
            )?;
            Ok(Ok(()))
        })
        .await
    }

    /// Claims an open task. The check and the change happen in one write transaction, so of
    /// several concurrent claimers exactly one wins.
    pub async fn claim_task(
        &self,
        mesh_id: String,
        task_id: String,
        by: Actor,
        now_ms: i64,
    ) -> Result<Result<TaskRecord, TaskRefusal>, StoreError> {
        self.update_task(mesh_id, task_id, move |task| {
            if task.status != TaskStatus::Open {
                return Err(TaskRefusal::NotClaimable(task.status));
            }
            task.status = TaskStatus::Claimed;
            task.claimed_by = Some(by.name);
            task.claimed_by_member_id = Some(by.member_id);
            task.claimed_at_ms = Some(now_ms);
            Ok(())
        })
        .await
    }

    /// Marks an open or claimed task done (an open one counts as claimed by the completer). A
    /// claimed task only by [`TaskRecord::may_settle`].
    pub async fn complete_task(
        &self,
        mesh_id: String,
        task_id: String,
        by: Actor,
        result: Option<String>,
        now_ms: i64,
    ) -> Result<Result<TaskRecord, TaskRefusal>, StoreError> {
        self.update_task(mesh_id, task_id, move |task| {
            if task.status == TaskStatus::Done {
                return Err(TaskRefusal::NotClaimable(task.status));
            }
            if task.status == TaskStatus::Claimed && !task.may_settle(&by) {
                return Err(TaskRefusal::NotYours(
                    task.claimed_by.clone().unwrap_or_default(),
                ));
            }
            if task.claimed_by.is_none() {
                task.claimed_by = Some(by.name);
                task.claimed_by_member_id = Some(by.member_id);
                task.claimed_at_ms = Some(now_ms);
            }
            task.status = TaskStatus::Done;
            task.result = result;
            task.completed_at_ms = Some(now_ms);
            Ok(())
        })
        .await
    }

    /// Gives a claimed task back (claimed → open), by [`TaskRecord::may_settle`].
    pub async fn release_task(
        &self,
        mesh_id: String,
        task_id: String,
        by: Actor,
    ) -> Result<Result<TaskRecord, TaskRefusal>, StoreError> {
        self.update_task(mesh_id, task_id, move |task| {
            match task.status {
                TaskStatus::Claimed => {}
                TaskStatus::Open => return Err(TaskRefusal::NotClaimed),
                TaskStatus::Done => return Err(TaskRefusal::NotClaimable(task.status)),
            }
            if !task.may_settle(&by) {
                return Err(TaskRefusal::NotYours(
                    task.claimed_by.clone().unwrap_or_default(),
                ));
            }
            task.status = TaskStatus::Open;
            task.claimed_by = None;
            task.claimed_by_member_id = None;
            task.claimed_at_ms = None;
            Ok(())
        })
        .await
    }

    async fn update_task(
        &self,
        mesh_id: String,
        task_id: String,
        change: impl FnOnce(&mut TaskRecord) -> Result<(), TaskRefusal> + Send + 'static,
    ) -> Result<Result<TaskRecord, TaskRefusal>, StoreError> {
        self.write(move |tx| {
            let mut table = tx.open_table(TASKS)?;
            let key = (mesh_id.as_str(), task_id.as_str());
            let Some(mut task): Option<TaskRecord> = decode_opt(table.get(key)?)? else {
                return Ok(Err(TaskRefusal::NotFound));
            };
            if let Err(refusal) = change(&mut task) {
                return Ok(Err(refusal));
            }
            table.insert(key, encode(&task).as_slice())?;
            Ok(Ok(task))
        })
        .await
    }

    /// Every task of a mesh, oldest first.
    pub fn tasks(&self, mesh_id: &str) -> Result<Vec<TaskRecord>, StoreError> {
        let rt = self.read()?;
        let mut tasks: Vec<TaskRecord> = mesh_rows(&rt.open_table(TASKS)?, mesh_id)?;
        tasks.sort_by(|a, b| (a.created_at_ms, &a.id).cmp(&(b.created_at_ms, &b.id)));
        Ok(tasks)
    }

    pub fn task_counts(&self, mesh_id: &str) -> Result<TaskCounts, StoreError> {
        let mut counts = TaskCounts::default();
        for t in self.tasks(mesh_id)? {
            match t.status {
                TaskStatus::Open => counts.open += 1,
                TaskStatus::Claimed => counts.claimed += 1,
                TaskStatus::Done => counts.done += 1,
            }
        }
        Ok(counts)
    }

    /// Stores a member's context, replacing the one it shared before; a member's first context
    /// counts against `max_contexts`.
    pub async fn share_context(
        &self,
        mesh_id: String,
        context: ContextRecord,
        max_contexts: u64,
    ) -> Result<Result<(), QuotaExceeded>, StoreError> {
        self.write(move |tx| {
            let mut table = tx.open_table(CONTEXTS)?;
            let key = (mesh_id.as_str(), context.member_id.as_str());
            if table.get(key)?.is_none()
                && let Err(e) = quotas::charge(tx, &mesh_id, Quota::Contexts, 1, max_contexts)?
            {
                return Ok(Err(e));
            }
            table.insert(key, encode(&context).as_slice())?;
            Ok(Ok(()))
        })
        .await
    }

    /// Every member's current context, most recently updated first.
    pub fn contexts(&self, mesh_id: &str) -> Result<Vec<ContextRecord>, StoreError> {
        let rt = self.read()?;
        let mut out: Vec<ContextRecord> = mesh_rows(&rt.open_table(CONTEXTS)?, mesh_id)?;
        out.sort_by_key(|c| std::cmp::Reverse(c.updated_at_ms));
        Ok(out)
    }

    /// Creates a stream, or returns the one of that name that exists; a new one counts against
    /// `max_streams`.
    pub async fn create_stream(
        &self,
        mesh_id: String,
        stream: StreamRecord,
        max_streams: u64,
    ) -> Result<Result<StreamRecord, QuotaExceeded>, StoreError> {
        self.write(move |tx| {
            let key = (mesh_id.as_str(), stream.name.as_str());
            if let Some(existing) = decode_opt::<StreamRecord>(tx.open_table(STREAMS)?.get(key)?)? {
                return Ok(Ok(existing));
            }
            if let Err(e) = quotas::charge(tx, &mesh_id, Quota::Streams, 1, max_streams)? {
                return Ok(Err(e));
            }
            tx.open_table(STREAMS)?
                .insert(key, encode(&stream).as_slice())?;
            Ok(Ok(stream))
        })
        .await
    }

    pub fn stream(&self, mesh_id: &str, name: &str) -> Result<Option<StreamRecord>, StoreError> {
        let rt = self.read()?;
        decode_opt(rt.open_table(STREAMS)?.get((mesh_id, name))?)
    }

    /// Every stream of a mesh, in name order.
    pub fn streams(&self, mesh_id: &str) -> Result<Vec<StreamRecord>, StoreError> {
        let rt = self.read()?;
        mesh_rows(&rt.open_table(STREAMS)?, mesh_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(id: &str) -> TaskRecord {
        TaskRecord {
            id: id.into(),
            title: "fix the build".into(),
            assignee: None,
            claimed_by: None,
            claimed_by_member_id: None,
            status: TaskStatus::Open,
            priority: "normal".into(),
            created_by: "alice".into(),
            created_by_member_id: "m1".into(),
            tags: vec![],
            result: None,
            created_at_ms: 1,
            claimed_at_ms: None,
            completed_at_ms: None,
        }
    }

    fn actor(name: &str) -> Actor {
        Actor {
            member_id: format!("id-{name}"),
            name: name.into(),
            manages: false,
        }
    }

    #[tokio::test]
    async fn a_task_is_claimed_once_and_isolated_by_mesh() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store
            .create_task("A".into(), task("t1"), 10)
            .await
            .unwrap()
            .unwrap();
        let claims: Vec<_> = (0..8)
            .map(|i| store.claim_task("A".into(), "t1".into(), actor(&format!("p{i}")), 5))
            .collect();
        let mut won = 0;
        for c in claims {
            match c.await.unwrap() {
                Ok(t) => {
                    won += 1;
                    assert_eq!(t.status, TaskStatus::Claimed);
                }
                Err(r) => assert_eq!(r, TaskRefusal::NotClaimable(TaskStatus::Claimed)),
            }
        }
        assert_eq!(won, 1);
        let other = store
            .claim_task("B".into(), "t1".into(), actor("x"), 5)
            .await
            .unwrap();
        assert_eq!(other.unwrap_err(), TaskRefusal::NotFound);
        assert!(store.tasks("B").unwrap().is_empty());
        // A bystander may neither complete nor release another's claim; the creator may.
        let theirs = store
            .complete_task("A".into(), "t1".into(), actor("y"), Some("ok".into()), 9)
            .await
            .unwrap();
        assert!(
            matches!(theirs, Err(TaskRefusal::NotYours(_))),
            "{theirs:?}"
        );
        let theirs = store
            .release_task("A".into(), "t1".into(), actor("y"))
            .await
            .unwrap();
        assert!(
            matches!(theirs, Err(TaskRefusal::NotYours(_))),
            "{theirs:?}"
        );
        let creator = Actor {
            member_id: "m1".into(),
            name: "alice".into(),
            manages: false,
        };
        let done = store
            .complete_task("A".into(), "t1".into(), creator, Some("ok".into()), 9)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(done.status, TaskStatus::Done);
        assert!(done.claimed_by.is_some(), "the claimer stays recorded");
        let counts = store.task_counts("A").unwrap();
        assert_eq!((counts.open, counts.claimed, counts.done), (0, 0, 1));
        store.close();
    }
}
