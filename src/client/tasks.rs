//! Typed calls for the task board (PROTOCOL.md §6): create, claim, complete, release, list.

use super::{ClientError, MeshClient, unexpected};
use crate::protocol::messages::{CreateTask, TaskEntry};
use crate::protocol::{ClientMessage, ServerMessage};

fn task_page(answer: ServerMessage) -> Result<(Vec<TaskEntry>, Option<String>), ClientError> {
    match answer {
        ServerMessage::TaskList { tasks, next_cursor } => Ok((tasks, next_cursor)),
        other => Err(unexpected(other)),
    }
}

impl MeshClient {
    /// Creates an open task; returns its id.
    pub async fn create_task(&self, task: CreateTask) -> Result<String, ClientError> {
        match self.request(ClientMessage::CreateTask(task)).await? {
            ServerMessage::TaskCreated { id } => Ok(id),
            other => Err(unexpected(other)),
        }
    }

    /// Claims an open task; `task_not_claimable` when someone else was first.
    pub async fn claim_task(&self, task_id: &str) -> Result<Vec<TaskEntry>, ClientError> {
        self.tasks(ClientMessage::ClaimTask {
            task_id: task_id.into(),
        })
        .await
    }

    pub async fn complete_task(
        &self,
        task_id: &str,
        result: Option<String>,
    ) -> Result<Vec<TaskEntry>, ClientError> {
        self.tasks(ClientMessage::CompleteTask {
            task_id: task_id.into(),
            result,
        })
        .await
    }

    /// Gives a claimed task back (claimed → open): its claimer, its creator or an admin.
    pub async fn release_task(&self, task_id: &str) -> Result<Vec<TaskEntry>, ClientError> {
        self.tasks(ClientMessage::ReleaseTask {
            task_id: task_id.into(),
        })
        .await
    }

    /// The tasks that match, oldest first (all pages).
    pub async fn list_tasks(
        &self,
        status: Option<String>,
        assignee: Option<String>,
    ) -> Result<Vec<TaskEntry>, ClientError> {
        let mut tasks = self
            .all_pages(
                |cursor| ClientMessage::ListTasks {
                    status: status.clone(),
                    assignee: assignee.clone(),
                    cursor,
                    limit: None,
                },
                task_page,
            )
            .await?;
        // ISO-8601 in one format: text order is time order.
        tasks.sort_by(|a, b| (&a.created_at, &a.id).cmp(&(&b.created_at, &b.id)));
        Ok(tasks)
    }

    async fn tasks(&self, req: ClientMessage) -> Result<Vec<TaskEntry>, ClientError> {
        task_page(self.request(req).await?).map(|(tasks, _)| tasks)
    }
}
