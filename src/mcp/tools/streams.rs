//! MCP tools for streams: create_stream, publish, subscribe, list_streams.

use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::CallToolResult;
use rmcp::{schemars, tool, tool_router};
use serde::Deserialize;
use serde_json::Value;

use super::{MeshArg, MeshTools, json_text};

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

#[tool_router(router = streams_router, vis = "pub")]
impl MeshTools {
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
}
