//! MCP tools for the shared data and files: the state board, memory, tasks, contexts,
//! streams, reminders, files and the mesh overview. Each takes an optional `mesh` slug.

use std::path::PathBuf;
use std::sync::Arc;

use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::CallToolResult;
use rmcp::{schemars, tool, tool_router};
use serde::Deserialize;
use serde_json::Value;

use super::tools::{MeshTools, fail, ok};
use crate::client::MeshClient;
use crate::client::files::ShareOptions;
use crate::protocol::Pubkey;
use crate::protocol::messages::{CreateTask, Schedule, ShareContext, When};

/// The mesh a tool works on, when several are joined.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
pub struct MeshArg {
    /// Mesh slug (needed only when several meshes are joined).
    #[serde(default)]
    pub mesh: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct SetStateArgs {
    /// The key.
    pub key: String,
    /// Any JSON value; null deletes the key.
    pub value: Value,
    #[serde(default)]
    pub mesh: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct KeyArgs {
    pub key: String,
    #[serde(default)]
    pub mesh: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct RememberArgs {
    /// What to remember (a fact, a decision, a gotcha).
    pub content: String,
    /// Tags to find it by.
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    #[serde(default)]
    pub mesh: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct QueryArgs {
    /// Words to search for (full text, ranked).
    pub query: String,
    #[serde(default)]
    pub mesh: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct IdArgs {
    pub id: String,
    #[serde(default)]
    pub mesh: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct CreateTaskArgs {
    pub title: String,
    /// Who should do it: the name (or pubkey) of a member or peer of the mesh.
    #[serde(default)]
    pub assignee: Option<String>,
    /// low, normal (the default), high or urgent.
    #[serde(default)]
    pub priority: Option<String>,
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    #[serde(default)]
    pub mesh: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct CompleteTaskArgs {
    pub id: String,
    /// What came of it.
    #[serde(default)]
    pub result: Option<String>,
    #[serde(default)]
    pub mesh: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct ListTasksArgs {
    /// open, claimed or done.
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub assignee: Option<String>,
    #[serde(default)]
    pub mesh: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct ReminderArgs {
    /// The reminder text.
    pub message: String,
    /// Fire once after this many seconds.
    #[serde(default)]
    pub in_seconds: Option<u64>,
    /// Fire once at this time (ISO-8601).
    #[serde(default)]
    pub deliver_at: Option<String>,
    /// Fire repeatedly on this 5-field cron expression, e.g. "*/30 * * * *".
    #[serde(default)]
    pub cron: Option<String>,
    /// Who gets it (a name, pubkey, @group, *); default: you.
    #[serde(default)]
    pub to: Option<String>,
    #[serde(default)]
    pub mesh: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct ShareContextArgs {
    /// What you learned, in a few sentences.
    pub summary: String,
    #[serde(default)]
    pub files_read: Option<Vec<String>>,
    #[serde(default)]
    pub key_findings: Option<Vec<String>>,
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    #[serde(default)]
    pub mesh: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct StreamArgs {
    /// Stream name.
    pub name: String,
    #[serde(default)]
    pub mesh: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct PublishArgs {
    /// Stream name.
    pub stream: String,
    /// Any JSON value.
    pub data: Value,
    #[serde(default)]
    pub mesh: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct ShareFileArgs {
    /// Path of the file to share.
    pub path: String,
    /// The name others see.
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    /// Encrypt end to end for this peer (name or pubkey) only.
    #[serde(default)]
    pub to: Option<String>,
    #[serde(default)]
    pub mesh: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct GetFileArgs {
    /// The file id.
    pub id: String,
    /// Where to save it: a directory or a file path.
    pub save_to: String,
    #[serde(default)]
    pub mesh: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct ListFilesArgs {
    /// Match names and tags.
    #[serde(default)]
    pub query: Option<String>,
    /// Only files from this uploader (name).
    #[serde(default)]
    pub from: Option<String>,
    #[serde(default)]
    pub mesh: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct GrantArgs {
    /// The file id.
    pub id: String,
    /// The peer to give access to (name or pubkey).
    pub peer: String,
    #[serde(default)]
    pub mesh: Option<String>,
}

fn json_text(v: &impl serde::Serialize) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

impl MeshTools {
    fn client_for(&self, mesh: Option<&str>) -> Result<Arc<MeshClient>, String> {
        self.hub.link(mesh).map(|(_, c)| c)
    }

    /// Runs `f` on the mesh's client and turns its outcome into a tool result.
    async fn with_client<T, F, Fut>(&self, mesh: Option<&str>, f: F) -> CallToolResult
    where
        F: FnOnce(Arc<MeshClient>) -> Fut,
        Fut: Future<Output = Result<T, String>>,
        T: Into<String>,
    {
        match self.client_for(mesh) {
            Ok(c) => match f(c).await {
                Ok(text) => ok(&self.hub, text.into()),
                Err(e) => fail(&self.hub, e),
            },
            Err(e) => fail(&self.hub, e),
        }
    }

    /// Resolves one peer (name or key) to its pubkey.
    async fn one_peer(client: &MeshClient, who: &str) -> Result<Pubkey, String> {
        let targets = client
            .resolve_targets(who)
            .await
            .map_err(|e| e.to_string())?;
        match targets.as_slice() {
            [t] if t.is_direct() => Pubkey::parse(&t.spec).map_err(|e| e.to_string()),
            _ => Err(format!(
                "\"{who}\" must name one peer (a name or pubkey), not a group"
            )),
        }
    }
}

#[tool_router(router = data_router, vis = "pub")]
impl MeshTools {
    #[tool(
        description = "Set a key on the mesh's shared state board (any JSON value; null deletes). Every other peer is told at once."
    )]
    async fn set_state(&self, Parameters(a): Parameters<SetStateArgs>) -> CallToolResult {
        self.with_client(a.mesh.as_deref(), |c| async move {
            let e = c
                .set_state(&a.key, a.value)
                .await
                .map_err(|e| e.to_string())?;
            Ok(format!("{} = {} (set by {})", e.key, e.value, e.updated_by))
        })
        .await
    }

    #[tool(description = "Read a key of the shared state board.")]
    async fn get_state(&self, Parameters(a): Parameters<KeyArgs>) -> CallToolResult {
        self.with_client(a.mesh.as_deref(), |c| async move {
            let e = c.get_state(&a.key).await.map_err(|e| e.to_string())?;
            Ok(if e.value.is_null() {
                format!("{} is not set", e.key)
            } else {
                format!(
                    "{} = {} (set by {} at {})",
                    e.key, e.value, e.updated_by, e.updated_at
                )
            })
        })
        .await
    }

    #[tool(description = "List every key of the shared state board with its value.")]
    async fn list_state(&self, Parameters(a): Parameters<MeshArg>) -> CallToolResult {
        self.with_client(a.mesh.as_deref(), |c| async move {
            let entries = c.list_state().await.map_err(|e| e.to_string())?;
            Ok(if entries.is_empty() {
                "The state board is empty.".to_string()
            } else {
                json_text(&entries)
            })
        })
        .await
    }

    #[tool(
        description = "Store a memory the whole mesh can recall later (facts, decisions, gotchas)."
    )]
    async fn remember(&self, Parameters(a): Parameters<RememberArgs>) -> CallToolResult {
        self.with_client(a.mesh.as_deref(), |c| async move {
            let id = c
                .remember(&a.content, a.tags.unwrap_or_default())
                .await
                .map_err(|e| e.to_string())?;
            Ok(format!("remembered ({id})"))
        })
        .await
    }

    #[tool(description = "Search the mesh's memories (full text, best matches first).")]
    async fn recall(&self, Parameters(a): Parameters<QueryArgs>) -> CallToolResult {
        self.with_client(a.mesh.as_deref(), |c| async move {
            let found = c.recall(&a.query, None).await.map_err(|e| e.to_string())?;
            Ok(if found.is_empty() {
                format!("Nothing remembered matches \"{}\".", a.query)
            } else {
                found
                    .iter()
                    .map(|m| {
                        format!(
                            "- [{}] {} (tags: {}; by {}, {}; score {:.2})",
                            m.id,
                            m.content,
                            m.tags.join(", "),
                            m.remembered_by,
                            m.remembered_at,
                            m.score
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            })
        })
        .await
    }

    #[tool(description = "Forget a memory by id.")]
    async fn forget(&self, Parameters(a): Parameters<IdArgs>) -> CallToolResult {
        self.with_client(a.mesh.as_deref(), |c| async move {
            c.forget(&a.id).await.map_err(|e| e.to_string())?;
            Ok(format!("forgot {}", a.id))
        })
        .await
    }

    #[tool(description = "Create a task on the mesh's task board.")]
    async fn create_task(&self, Parameters(a): Parameters<CreateTaskArgs>) -> CallToolResult {
        self.with_client(a.mesh.as_deref(), |c| async move {
            let id = c
                .create_task(CreateTask {
                    title: a.title,
                    assignee: a.assignee,
                    priority: a.priority,
                    tags: a.tags,
                })
                .await
                .map_err(|e| e.to_string())?;
            Ok(format!("task created ({id})"))
        })
        .await
    }

    #[tool(
        description = "Claim an open task (atomic: if someone else claimed it first, you are told)."
    )]
    async fn claim_task(&self, Parameters(a): Parameters<IdArgs>) -> CallToolResult {
        self.with_client(a.mesh.as_deref(), |c| async move {
            let tasks = c.claim_task(&a.id).await.map_err(|e| e.to_string())?;
            Ok(format!("claimed {}\n{}", a.id, json_text(&tasks)))
        })
        .await
    }

    #[tool(description = "Mark a task you claimed as done, with its result.")]
    async fn complete_task(&self, Parameters(a): Parameters<CompleteTaskArgs>) -> CallToolResult {
        self.with_client(a.mesh.as_deref(), |c| async move {
            c.complete_task(&a.id, a.result)
                .await
                .map_err(|e| e.to_string())?;
            Ok(format!("completed {}", a.id))
        })
        .await
    }

    #[tool(
        description = "Give back a task you claimed (claimed → open) so someone else can take it. Its claimer, its creator or a mesh admin may."
    )]
    async fn release_task(&self, Parameters(a): Parameters<IdArgs>) -> CallToolResult {
        self.with_client(a.mesh.as_deref(), |c| async move {
            c.release_task(&a.id).await.map_err(|e| e.to_string())?;
            Ok(format!("released {}: it is open again", a.id))
        })
        .await
    }

    #[tool(description = "List tasks, optionally by status (open, claimed, done) or assignee.")]
    async fn list_tasks(&self, Parameters(a): Parameters<ListTasksArgs>) -> CallToolResult {
        self.with_client(a.mesh.as_deref(), |c| async move {
            let tasks = c
                .list_tasks(a.status, a.assignee)
                .await
                .map_err(|e| e.to_string())?;
            Ok(if tasks.is_empty() {
                "No tasks.".to_string()
            } else {
                json_text(&tasks)
            })
        })
        .await
    }

    #[tool(
        description = "Schedule a reminder: once (in_seconds or deliver_at) or repeating (5-field cron). Delivered as a message, even if you are offline then."
    )]
    async fn schedule_reminder(&self, Parameters(a): Parameters<ReminderArgs>) -> CallToolResult {
        let when = match (a.in_seconds, a.deliver_at.clone(), &a.cron) {
            (Some(s), None, None) => Some(When::Ms(
                crate::protocol::time::now_ms() + (s as i64) * 1000,
            )),
            (None, Some(at), None) => Some(When::Iso(at)),
            (None, None, Some(_)) => None,
            _ => {
                return fail(
                    &self.hub,
                    "give exactly one of in_seconds, deliver_at or cron".into(),
                );
            }
        };
        self.with_client(a.mesh.as_deref(), |c| async move {
            let to = match a.to.as_deref() {
                Some(t) => {
                    let targets = c.resolve_targets(t).await.map_err(|e| e.to_string())?;
                    match targets.as_slice() {
                        [one] => one.spec.clone(),
                        _ => return Err("a reminder goes to one target".to_string()),
                    }
                }
                None => String::new(),
            };
            let ack = c
                .schedule(Schedule {
                    to,
                    message: a.message,
                    deliver_at: when,
                    subtype: None,
                    cron: a.cron,
                    recurring: None,
                    ..Default::default()
                })
                .await
                .map_err(|e| e.to_string())?;
            Ok(format!(
                "scheduled {} for {}{}",
                ack.scheduled_id,
                crate::protocol::time::iso(ack.deliver_at),
                ack.cron.map(|c| format!(" (cron {c})")).unwrap_or_default()
            ))
        })
        .await
    }

    #[tool(description = "List your scheduled reminders.")]
    async fn list_scheduled(&self, Parameters(a): Parameters<MeshArg>) -> CallToolResult {
        self.with_client(a.mesh.as_deref(), |c| async move {
            let list = c.list_scheduled().await.map_err(|e| e.to_string())?;
            Ok(if list.is_empty() {
                "Nothing scheduled.".to_string()
            } else {
                json_text(&list)
            })
        })
        .await
    }

    #[tool(description = "Cancel a scheduled reminder by id.")]
    async fn cancel_scheduled(&self, Parameters(a): Parameters<IdArgs>) -> CallToolResult {
        self.with_client(a.mesh.as_deref(), |c| async move {
            let done = c.cancel_scheduled(&a.id).await.map_err(|e| e.to_string())?;
            if done {
                Ok(format!("cancelled {}", a.id))
            } else {
                Err(format!("no scheduled reminder {}", a.id))
            }
        })
        .await
    }

    #[tool(
        description = "Share what you learned (summary, files read, key findings) so peers need not redo it. Replaces your previous context."
    )]
    async fn share_context(&self, Parameters(a): Parameters<ShareContextArgs>) -> CallToolResult {
        self.with_client(a.mesh.as_deref(), |c| async move {
            let id = c
                .share_context(ShareContext {
                    summary: a.summary,
                    files_read: a.files_read,
                    key_findings: a.key_findings,
                    tags: a.tags,
                })
                .await
                .map_err(|e| e.to_string())?;
            Ok(format!("context shared ({id})"))
        })
        .await
    }

    #[tool(description = "Search the contexts peers shared.")]
    async fn get_context(&self, Parameters(a): Parameters<QueryArgs>) -> CallToolResult {
        self.with_client(a.mesh.as_deref(), |c| async move {
            let found = c.get_context(&a.query).await.map_err(|e| e.to_string())?;
            Ok(if found.is_empty() {
                "No context matches.".to_string()
            } else {
                json_text(&found)
            })
        })
        .await
    }

    #[tool(description = "List every peer's current context.")]
    async fn list_contexts(&self, Parameters(a): Parameters<MeshArg>) -> CallToolResult {
        self.with_client(a.mesh.as_deref(), |c| async move {
            let all = c.list_contexts().await.map_err(|e| e.to_string())?;
            Ok(if all.is_empty() {
                "No contexts shared yet.".to_string()
            } else {
                json_text(&all)
            })
        })
        .await
    }

    #[tool(description = "Create a named data stream peers can subscribe to.")]
    async fn create_stream(&self, Parameters(a): Parameters<StreamArgs>) -> CallToolResult {
        self.with_client(a.mesh.as_deref(), |c| async move {
            let id = c.create_stream(&a.name).await.map_err(|e| e.to_string())?;
            Ok(format!("stream {} created ({id})", a.name))
        })
        .await
    }

    #[tool(description = "Publish a JSON value on a stream; live subscribers get it at once.")]
    async fn publish(&self, Parameters(a): Parameters<PublishArgs>) -> CallToolResult {
        self.with_client(a.mesh.as_deref(), |c| async move {
            c.publish(&a.stream, a.data)
                .await
                .map_err(|e| e.to_string())?;
            Ok(format!("published on {}", a.stream))
        })
        .await
    }

    #[tool(description = "Subscribe to a stream: its data arrives as notifications.")]
    async fn subscribe(&self, Parameters(a): Parameters<StreamArgs>) -> CallToolResult {
        self.with_client(a.mesh.as_deref(), |c| async move {
            c.subscribe(&a.name).await.map_err(|e| e.to_string())?;
            Ok(format!("subscribed to {}", a.name))
        })
        .await
    }

    #[tool(description = "List the mesh's streams.")]
    async fn list_streams(&self, Parameters(a): Parameters<MeshArg>) -> CallToolResult {
        self.with_client(a.mesh.as_deref(), |c| async move {
            let list = c.list_streams().await.map_err(|e| e.to_string())?;
            Ok(if list.is_empty() {
                "No streams.".to_string()
            } else {
                json_text(&list)
            })
        })
        .await
    }

    #[tool(
        description = "Share a file with the mesh (or, with `to`, end-to-end encrypted for one peer)."
    )]
    async fn share_file(&self, Parameters(a): Parameters<ShareFileArgs>) -> CallToolResult {
        self.with_client(a.mesh.as_deref(), |c| async move {
            let recipients = match a.to.as_deref() {
                Some(who) => vec![Self::one_peer(&c, who).await?],
                None => Vec::new(),
            };
            let opts = ShareOptions {
                name: a.name,
                tags: a.tags.unwrap_or_default(),
                ephemeral: false,
                recipients,
                target_spec: None,
            };
            let shared = c
                .share_file(&PathBuf::from(&a.path), opts, &|_, _| {})
                .await
                .map_err(|e| e.to_string())?;
            Ok(format!(
                "shared {} ({} bytes) as {}",
                shared.name, shared.size, shared.file_id
            ))
        })
        .await
    }

    #[tool(description = "Download a shared file (decrypting it if it was encrypted for you).")]
    async fn get_file(&self, Parameters(a): Parameters<GetFileArgs>) -> CallToolResult {
        self.with_client(a.mesh.as_deref(), |c| async move {
            let out = PathBuf::from(&a.save_to);
            let got = c
                .fetch_file(&a.id, Some(&out), &|_, _| {})
                .await
                .map_err(|e| e.to_string())?;
            Ok(format!(
                "saved {} bytes to {}",
                got.size,
                got.path.display()
            ))
        })
        .await
    }

    #[tool(description = "List files shared in the mesh, by name/tag or uploader.")]
    async fn list_files(&self, Parameters(a): Parameters<ListFilesArgs>) -> CallToolResult {
        self.with_client(a.mesh.as_deref(), |c| async move {
            let files = c
                .list_files(a.query, a.from)
                .await
                .map_err(|e| e.to_string())?;
            Ok(if files.is_empty() {
                "No files.".to_string()
            } else {
                json_text(&files)
            })
        })
        .await
    }

    #[tool(description = "Show who downloaded a file, and when.")]
    async fn file_status(&self, Parameters(a): Parameters<IdArgs>) -> CallToolResult {
        self.with_client(a.mesh.as_deref(), |c| async move {
            let s = c.file_status(&a.id).await.map_err(|e| e.to_string())?;
            Ok(if s.accesses.is_empty() {
                format!("{}: nobody downloaded it yet", s.file_id)
            } else {
                json_text(&s)
            })
        })
        .await
    }

    #[tool(description = "Delete a file you shared (admins may delete any).")]
    async fn delete_file(&self, Parameters(a): Parameters<IdArgs>) -> CallToolResult {
        self.with_client(a.mesh.as_deref(), |c| async move {
            c.delete_file(&a.id).await.map_err(|e| e.to_string())?;
            Ok(format!("deleted {}", a.id))
        })
        .await
    }

    #[tool(description = "Give another peer access to an encrypted file you shared.")]
    async fn grant_file_access(&self, Parameters(a): Parameters<GrantArgs>) -> CallToolResult {
        self.with_client(a.mesh.as_deref(), |c| async move {
            let peer = Self::one_peer(&c, &a.peer).await?;
            c.grant_file_access(&a.id, &peer)
                .await
                .map_err(|e| e.to_string())?;
            Ok(format!("{} can now read {}", a.peer, a.id))
        })
        .await
    }

    #[tool(
        description = "The mesh at a glance: peers, groups, state keys, memories, files, tasks, streams, and you."
    )]
    async fn mesh_info(&self, Parameters(a): Parameters<MeshArg>) -> CallToolResult {
        self.with_client(a.mesh.as_deref(), |c| async move {
            let info = c.mesh_info().await.map_err(|e| e.to_string())?;
            Ok(json_text(&info))
        })
        .await
    }
}
