//! Typed requests for the shared data (PROTOCOL.md §6): state, memory, contexts, tasks,
//! streams, reminders and the mesh overview. Stream data arrives on the push stream
//! ([`MeshClient::next_push`]) as `ServerMessage::StreamData`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::api::Target;
use super::{ClientError, Identity, MeshClient};
use crate::crypto;
use crate::protocol::messages::{
    ContextEntry, CreateTask, MemoryEntry, MeshInfo, Recall, Remember, Schedule, ScheduledAck,
    ScheduledEntry, SetState, ShareContext, StateEntry, StreamEntry, TaskEntry,
};
use crate::protocol::{ClientMessage, Pubkey, ServerMessage};

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

    /// Schedules a message (a reminder): one-shot at `deliver_at` or recurring by `cron`. The
    /// text is sealed here, like a message, unless `schedule.nonce` says it already is: to one
    /// key (empty `to` is this member's own key) with crypto_box, to a group or everyone under
    /// the mesh root key. The broker stores and delivers ciphertext only.
    pub async fn schedule(&self, mut schedule: Schedule) -> Result<ScheduledAck, ClientError> {
        if schedule.nonce.is_none() {
            if schedule.to.trim().is_empty() {
                schedule.to = self.entry().member_pubkey.clone();
            }
            let target = Target {
                label: schedule.to.clone(),
                spec: schedule.to.clone(),
            };
            let sealed = self.seal(&target, &schedule.message)?;
            schedule.message = sealed.ciphertext;
            schedule.nonce = Some(sealed.nonce);
            schedule.body_version = sealed.body_version;
        }
        match self
            .request(ClientMessage::Schedule(Box::new(schedule)))
            .await?
        {
            ServerMessage::ScheduledAck(ack) => Ok(ack),
            other => Err(unexpected(other)),
        }
    }

    /// This member's scheduled messages, soonest first. Sealed ones that this client sealed
    /// come back opened (`nonce` cleared); one it cannot open (sealed by another session)
    /// keeps its `nonce` and says so in `message`.
    pub async fn list_scheduled(&self) -> Result<Vec<ScheduledEntry>, ClientError> {
        match self.request(ClientMessage::ListScheduled {}).await? {
            ServerMessage::ScheduledList { messages } => Ok(messages
                .into_iter()
                .map(|mut m| {
                    if m.nonce.is_some() {
                        match self.open_scheduled(&m) {
                            Ok(text) => {
                                m.message = text;
                                m.nonce = None;
                                m.body_version = None;
                            }
                            Err(why) => m.message = format!("[sealed: {why}]"),
                        }
                    }
                    m
                })
                .collect()),
            other => Err(unexpected(other)),
        }
    }

    /// Opens a reminder this member sealed: crypto_box from one of its keys to `to`, or
    /// secretbox under the root key.
    fn open_scheduled(&self, m: &ScheduledEntry) -> Result<String, String> {
        let nonce: [u8; 24] = STANDARD
            .decode(m.nonce.as_deref().unwrap_or_default())
            .ok()
            .and_then(|n| n.try_into().ok())
            .ok_or("its nonce is not 24 bytes")?;
        let body = STANDARD
            .decode(&m.message)
            .map_err(|_| "its ciphertext is not base64")?;
        let text = if m.body_version == Some(2) {
            let root = self.entry().root_key().map_err(|e| e.to_string())?;
            crypto::secretbox_open_easy(&body, &nonce, &root).map_err(|e| e.to_string())?
        } else {
            let to = Pubkey::parse(&m.to).map_err(|e| e.to_string())?;
            let their = crypto::ed25519_pk_to_x25519(&to.0).map_err(|e| e.to_string())?;
            let mut keys = Vec::new();
            if let Identity::Session(k) = &self.options.identity {
                keys.push(k.clone());
            }
            keys.push(self.entry().member_keys().map_err(|e| e.to_string())?);
            keys.iter()
                .find_map(|k| {
                    crypto::box_open_easy(&body, &nonce, &their, &k.to_x25519().secret).ok()
                })
                .ok_or("another session of yours sealed it")?
        };
        String::from_utf8(text).map_err(|_| "it is not UTF-8 text".to_string())
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
