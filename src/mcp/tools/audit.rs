//! MCP tools for the audit log: `audit_query` and `audit_verify` (owner and admins).

use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::CallToolResult;
use rmcp::{schemars, tool, tool_router};
use serde::Deserialize;

use super::{MeshArg, MeshTools, json_text};
use crate::protocol::messages::AuditQuery;

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct AuditQueryArgs {
    /// Most entries, newest first (default 100, at most 500).
    #[serde(default)]
    pub limit: Option<usize>,
    /// Matching entries to skip, newest first.
    #[serde(default)]
    pub offset: Option<usize>,
    /// Only this event type, e.g. member.joined, member.revoked, state.set, task.claimed.
    #[serde(default, rename = "eventType")]
    pub event_type: Option<String>,
    /// Only entries at or after this ISO-8601 time.
    #[serde(default)]
    pub since: Option<String>,
    #[serde(default)]
    pub mesh: Option<String>,
}

#[tool_router(router = audit_router, vis = "pub")]
impl MeshTools {
    #[tool(
        description = "Read the mesh's audit log (who joined, was revoked, created invites, set state, moved tasks, shared files…), newest first. Metadata only. Owner and admins only."
    )]
    async fn audit_query(&self, Parameters(a): Parameters<AuditQueryArgs>) -> CallToolResult {
        self.with_client(a.mesh.as_deref(), |c| async move {
            let result = c
                .audit_query(AuditQuery {
                    limit: a.limit,
                    offset: a.offset,
                    event_type: a.event_type,
                    since: a.since,
                })
                .await
                .map_err(|e| e.to_string())?;
            Ok(if result.entries.is_empty() {
                "No audit entries.".to_string()
            } else {
                json_text(&result)
            })
        })
        .await
    }

    #[tool(
        description = "Verify the audit log's hash chain; names the first broken (edited or deleted) record. Owner and admins only."
    )]
    async fn audit_verify(&self, Parameters(a): Parameters<MeshArg>) -> CallToolResult {
        self.with_client(a.mesh.as_deref(), |c| async move {
            let v = c.audit_verify().await.map_err(|e| e.to_string())?;
            match v.broken_at {
                None => Ok(format!(
                    "The audit chain verifies: {} records.\n{}",
                    v.entries,
                    json_text(&v)
                )),
                Some(seq) => Err(format!(
                    "The audit chain is BROKEN at record {seq}{} ({}).\n{}",
                    v.broken_event
                        .as_deref()
                        .map(|e| format!(" ({e})"))
                        .unwrap_or_default(),
                    v.reason.as_deref().unwrap_or("does not verify"),
                    json_text(&v)
                )),
            }
        })
        .await
    }
}
