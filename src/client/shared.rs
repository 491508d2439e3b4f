//! Typed requests for the shared data (PROTOCOL.md §6): state, memory, contexts, tasks,
//! streams, reminders and the mesh overview. Stream data arrives on the push stream
//! ([`MeshClient::next_push`]) as `ServerMessage::StreamData`.

use super::{ClientError, MeshClient};
use crate::protocol::messages::{
    ContextEntry, CreateTask, MemoryEntry, MeshInfo, Recall, Remember, Schedule, ScheduledAck,
    ScheduledEntry, SetState, ShareContext, StateEntry, StreamEntry, TaskEntry,
};
use crate::protocol::{ClientMessage, ServerMessage};

/// What `recall` returns when no limit is given, and the most it returns (the broker's).
const DEFAULT_RECALL: usize = 20;
const MAX_RECALL: usize = 100;

fn unexpected(other: ServerMessage) -> ClientError {
    ClientError::Protocol(format!("{other:?}"))
}

fn task_page(answer: ServerMessage) -> Result<(Vec<TaskEntry>, Option<String>), ClientError> {
    match answer {
        ServerMessage::TaskList { tasks, next_cursor } => Ok((tasks, next_cursor)),
        other => Err(unexpected(other)),
    }
}

impl MeshClient {
    /// Sets a state key (`null` deletes it); every other live peer is told.
    pub async fn set_state(
        &self,
        key: &str,
        value: serde_json::Value,
    ) -> Result<StateEntry, ClientError> {
        let req = ClientMessage::SetState(SetState {
            key: key.into(),
            value,
        });
        match self.request(req).await? {
            ServerMessage::StateResult(e) => Ok(e),
            other => Err(unexpected(other)),
        }
    }

    /// A state key; `value` is `null` when it is not set.
    pub async fn get_state(&self, key: &str) -> Result<StateEntry, ClientError> {
        match self
            .request(ClientMessage::GetState { key: key.into() })
            .await?
        {
            ServerMessage::StateResult(e) => Ok(e),
            other => Err(unexpected(other)),
        }
    }

    /// Every state key, in key order (all pages).
    pub async fn list_state(&self) -> Result<Vec<StateEntry>, ClientError> {
        self.all_pages(
            |cursor| ClientMessage::ListState {
                cursor,
                limit: None,
            },
            |answer| match answer {
                ServerMessage::StateList {
                    entries,
                    next_cursor,
                } => Ok((entries, next_cursor)),
                other => Err(unexpected(other)),
            },
        )
        .await
    }

    /// Stores a memory; returns its id once `recall` can find it.
    pub async fn remember(&self, content: &str, tags: Vec<String>) -> Result<String, ClientError> {
        let req = ClientMessage::Remember(Remember {
            content: content.into(),
            tags: Some(tags),
        });
        match self.request(req).await? {
            ServerMessage::MemoryStored { id } => Ok(id),
            other => Err(unexpected(other)),
        }
    }

    /// The mesh's memories that best match `query`, best first: the best `limit` (default
    /// 20, at most 100), over as many pages as that takes.
    pub async fn recall(
        &self,
        query: &str,
        limit: Option<usize>,
    ) -> Result<Vec<MemoryEntry>, ClientError> {
        let wanted = limit.unwrap_or(DEFAULT_RECALL).clamp(1, MAX_RECALL);
        let mut found: Vec<MemoryEntry> = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let req = ClientMessage::Recall(Recall {
                query: query.into(),
                limit: Some(wanted - found.len()),
                cursor: cursor.clone(),
            });
            let next = match self.request(req).await? {
                ServerMessage::MemoryResults {
                    memories,
                    next_cursor,
                } => {
                    found.extend(memories);
                    next_cursor
                }
                other => return Err(unexpected(other)),
            };
            if found.len() >= wanted || next.is_none() || next == cursor {
                found.truncate(wanted);
                return Ok(found);
            }
            cursor = next;
        }
    }

    pub async fn forget(&self, memory_id: &str) -> Result<(), ClientError> {
        self.request_ack(ClientMessage::Forget {
            memory_id: memory_id.into(),
        })
        .await
    }

    /// Shares what this member knows (replacing what it shared before); returns its id.
    pub async fn share_context(&self, context: ShareContext) -> Result<String, ClientError> {
        match self.request(ClientMessage::ShareContext(context)).await? {
            ServerMessage::ContextShared { id } => Ok(id),
            other => Err(unexpected(other)),
        }
    }

    pub async fn get_context(&self, query: &str) -> Result<Vec<ContextEntry>, ClientError> {
        match self
            .request(ClientMessage::GetContext {
                query: query.into(),
            })
            .await?
        {
            ServerMessage::ContextResults { contexts } => Ok(contexts),
            other => Err(unexpected(other)),
        }
    }

    /// Every member's context, most recently updated first (all pages).
    pub async fn list_contexts(&self) -> Result<Vec<ContextEntry>, ClientError> {
        let mut contexts = self
            .all_pages(
                |cursor| ClientMessage::ListContexts {
                    cursor,
                    limit: None,
                },
                |answer| match answer {
                    ServerMessage::ContextList {
                        contexts,
                        next_cursor,
                    } => Ok((contexts, next_cursor)),
                    other => Err(unexpected(other)),
                },
            )
            .await?;
        contexts.sort_by(|a, b| b.updated_at.cmp(&a.updated_at));
        Ok(contexts)
    }

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

    /// Creates a stream (or finds the one of that name); returns its id.
    pub async fn create_stream(&self, name: &str) -> Result<String, ClientError> {
        match self
            .request(ClientMessage::CreateStream { name: name.into() })
            .await?
        {
            ServerMessage::StreamCreated { id, .. } => Ok(id),
            other => Err(unexpected(other)),
        }
    }

    /// Subscribes this connection; data arrives as pushes until it unsubscribes or goes.
    pub async fn subscribe(&self, stream: &str) -> Result<(), ClientError> {
        match self
            .request(ClientMessage::Subscribe {
                stream: stream.into(),
            })
            .await?
        {
            ServerMessage::Subscribed { .. } => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    pub async fn unsubscribe(&self, stream: &str) -> Result<(), ClientError> {
        self.request_ack(ClientMessage::Unsubscribe {
            stream: stream.into(),
        })
        .await
    }

    pub async fn publish(&self, stream: &str, data: serde_json::Value) -> Result<(), ClientError> {
        self.request_ack(ClientMessage::Publish {
            stream: stream.into(),
            data,
        })
        .await
    }

    pub async fn list_streams(&self) -> Result<Vec<StreamEntry>, ClientError> {
        match self.request(ClientMessage::ListStreams {}).await? {
            ServerMessage::StreamList { streams } => Ok(streams),
            other => Err(unexpected(other)),
        }
    }

    /// Schedules a message (a reminder): one-shot at `deliver_at` or recurring by `cron`.
    pub async fn schedule(&self, schedule: Schedule) -> Result<ScheduledAck, ClientError> {
        match self
            .request(ClientMessage::Schedule(Box::new(schedule)))
            .await?
        {
            ServerMessage::ScheduledAck(ack) => Ok(ack),
            other => Err(unexpected(other)),
        }
    }

    /// This member's scheduled messages, soonest first.
    pub async fn list_scheduled(&self) -> Result<Vec<ScheduledEntry>, ClientError> {
        match self.request(ClientMessage::ListScheduled {}).await? {
            ServerMessage::ScheduledList { messages } => Ok(messages),
            other => Err(unexpected(other)),
        }
    }

    /// Cancels one of this member's scheduled messages; false when there was none by that id.
    pub async fn cancel_scheduled(&self, id: &str) -> Result<bool, ClientError> {
        match self
            .request(ClientMessage::CancelScheduled {
                scheduled_id: id.into(),
            })
            .await?
        {
            ServerMessage::CancelScheduledAck { ok, .. } => Ok(ok),
            other => Err(unexpected(other)),
        }
    }

    pub async fn mesh_info(&self) -> Result<MeshInfo, ClientError> {
        match self.request(ClientMessage::MeshInfo {}).await? {
            ServerMessage::MeshInfoResult(info) => Ok(*info),
            other => Err(unexpected(other)),
        }
    }
}
