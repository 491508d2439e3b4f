//! MCP tools for the mesh's memory: remember, recall, forget.

use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::CallToolResult;
use rmcp::{schemars, tool, tool_router};
use serde::Deserialize;

use super::{IdArgs, MeshTools, QueryArgs};

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

#[tool_router(router = memory_router, vis = "pub")]
impl MeshTools {
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
}
