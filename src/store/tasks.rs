//! The tasks table (PROTOCOL.md §6, §6.2): tasks and their claims, `open → claimed → done`.

use redb::{ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::audit::{self, AuditActor, AuditEvent, AuditNote};
use super::quotas::{self, Quota, QuotaExceeded};
use super::rows::{mesh_rows, scan_mesh_rows};
use super::{Store, StoreError, decode_opt, encode};

/// `(mesh_id, task_id) → TaskRecord`
pub(crate) const TASKS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("tasks");

/// Opens the tasks table (called from `records::create_tables`).
pub(crate) fn create_tables(tx: &WriteTransaction) -> Result<(), StoreError> {
    tx.open_table(TASKS)?;
    Ok(())
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

/// The task counts `mesh_info` shows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TaskCounts {
    pub open: u64,
    pub claimed: u64,
    pub done: u64,
}

impl Store {
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
            // The title is the task's content: not logged.
            let by = AuditActor::member(&task.created_by_member_id, &task.created_by);
            let note = AuditNote::new(AuditEvent::TaskCreated, by)
                .with("taskId", &task.id)
                .with("priority", &task.priority)
                .with_opt("assignee", task.assignee.as_ref());
            audit::append(tx, &mesh_id, &note, task.created_at_ms)?;
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
        let note = AuditNote::new(AuditEvent::TaskClaimed, &by);
        self.update_task(mesh_id, task_id, note, now_ms, move |task| {
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
        let note = AuditNote::new(AuditEvent::TaskCompleted, &by);
        self.update_task(mesh_id, task_id, note, now_ms, move |task| {
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
        now_ms: i64,
    ) -> Result<Result<TaskRecord, TaskRefusal>, StoreError> {
        let note = AuditNote::new(AuditEvent::TaskReleased, &by);
        self.update_task(mesh_id, task_id, note, now_ms, move |task| {
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

    /// Applies `change` to a task and, when it is made, appends `note` (with the task's id) to
    /// the audit log in the same transaction.
    async fn update_task(
        &self,
        mesh_id: String,
        task_id: String,
        note: AuditNote,
        now_ms: i64,
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
            drop(table);
            audit::append(tx, &mesh_id, &note.with("taskId", &task.id), now_ms)?;
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_store;

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
        let (_dir, store) = test_store();
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
            .release_task("A".into(), "t1".into(), actor("y"), 9)
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
