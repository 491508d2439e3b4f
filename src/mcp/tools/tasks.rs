//! MCP tools for the task board: create, claim, complete, release and list tasks.

use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::CallToolResult;
use rmcp::{schemars, tool, tool_router};
use serde::Deserialize;

use super::{IdArgs, MeshTools, json_text};
use crate::protocol::messages::CreateTask;

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

#[tool_router(router = tasks_router, vis = "pub")]
impl MeshTools {
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
}
