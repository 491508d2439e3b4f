//! MCP tools for URL watches: mesh_watch, mesh_unwatch, mesh_watches (the original's names).

use std::collections::BTreeMap;

use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::CallToolResult;
use rmcp::{schemars, tool, tool_router};
use serde::Deserialize;

use super::{MeshArg, MeshTools, json_text, one_target};
use crate::protocol::messages::Watch;

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct WatchArgs {
    /// The URL to poll (http or https; public addresses only, unless the broker allows private ones).
    pub url: String,
    /// "hash" (SHA-256 of the body, the default), "json" (the value at `extract`) or "status" (the HTTP status code).
    #[serde(default)]
    pub mode: Option<String>,
    /// For mode "json": a JSONPath such as "$.status".
    #[serde(default)]
    pub extract: Option<String>,
    /// Seconds between polls, 5 to 86400 (default 30).
    #[serde(default)]
    pub interval: Option<u64>,
    /// "change" (the default), "match:<value>" or "not_match:<value>".
    #[serde(default)]
    pub notify_on: Option<String>,
    /// Request headers sent with each poll (kept sealed on the broker).
    #[serde(default)]
    pub headers: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub label: Option<String>,
    /// Who is told: a name, pubkey, @group or * (default: you).
    #[serde(default)]
    pub to: Option<String>,
    #[serde(default)]
    pub mesh: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct UnwatchArgs {
    pub watch_id: String,
    #[serde(default)]
    pub mesh: Option<String>,
}

#[tool_router(router = watches_router, vis = "pub")]
impl MeshTools {
    #[tool(
        description = "Watch a URL: the broker polls it and sends a message (subtype watch, with the old and new value) when it changes. Modes: hash (SHA-256 of the body), json (a JSONPath value), status (HTTP code). notify_on: change | match:<v> | not_match:<v>. Interval 5 s to 24 h."
    )]
    async fn mesh_watch(&self, Parameters(a): Parameters<WatchArgs>) -> CallToolResult {
        self.with_client(a.mesh.as_deref(), |c| async move {
            let target = match a.to.as_deref() {
                None => None,
                Some(t) => Some(one_target(&c, t, "a watch").await?),
            };
            let created = c
                .watch(Watch {
                    url: a.url,
                    mode: a.mode,
                    extract: a.extract,
                    interval: a.interval,
                    notify_on: a.notify_on,
                    headers: a.headers,
                    label: a.label,
                    target,
                })
                .await
                .map_err(|e| e.to_string())?;
            Ok(format!(
                "Watching {} ({}, every {} s); watch_id {}.",
                created.url, created.mode, created.interval, created.watch_id
            ))
        })
        .await
    }

    #[tool(description = "Stop a URL watch by its watch_id.")]
    async fn mesh_unwatch(&self, Parameters(a): Parameters<UnwatchArgs>) -> CallToolResult {
        self.with_client(a.mesh.as_deref(), |c| async move {
            c.unwatch(&a.watch_id).await.map_err(|e| e.to_string())?;
            Ok(format!("Stopped watch {}.", a.watch_id))
        })
        .await
    }

    #[tool(description = "List the mesh's URL watches with their last value.")]
    async fn mesh_watches(&self, Parameters(a): Parameters<MeshArg>) -> CallToolResult {
        self.with_client(a.mesh.as_deref(), |c| async move {
            let watches = c.watches().await.map_err(|e| e.to_string())?;
            Ok(if watches.is_empty() {
                "No watches.".to_string()
            } else {
                json_text(&watches)
            })
        })
        .await
    }
}
