//! MCP tools for shared contexts: share_context, get_context, list_contexts.

use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::CallToolResult;
use rmcp::{schemars, tool, tool_router};
use serde::Deserialize;

use super::{MeshArg, MeshTools, QueryArgs, json_text};
use crate::protocol::messages::ShareContext;

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

#[tool_router(router = contexts_router, vis = "pub")]
impl MeshTools {
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
}
