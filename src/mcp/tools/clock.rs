//! MCP tools for the simulation clock (PROTOCOL.md §23): mesh_clock, mesh_set_clock,
//! mesh_pause_clock, mesh_resume_clock.

use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::CallToolResult;
use rmcp::{schemars, tool, tool_router};
use serde::Deserialize;

use super::{MeshArg, MeshTools, json_text};

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct SetClockArgs {
    /// Simulated seconds per real second, from 1 to 100.
    pub speed: f64,
    #[serde(default)]
    pub mesh: Option<String>,
}

#[tool_router(router = clock_router, vis = "pub")]
impl MeshTools {
    #[tool(
        description = "The mesh's simulation clock: speed, paused, tick count (simulated minutes) and simulated time."
    )]
    async fn mesh_clock(&self, Parameters(a): Parameters<MeshArg>) -> CallToolResult {
        self.with_client(a.mesh.as_deref(), |c| async move {
            Ok(json_text(&c.clock().await.map_err(|e| e.to_string())?))
        })
        .await
    }

    #[tool(
        description = "Set the simulation clock's speed (1-100x real time), starting it if unset. Peers get a heartbeat tick every simulated minute; reminders scheduled in simulated time fire on it."
    )]
    async fn mesh_set_clock(&self, Parameters(a): Parameters<SetClockArgs>) -> CallToolResult {
        self.with_client(a.mesh.as_deref(), |c| async move {
            Ok(json_text(
                &c.set_clock(a.speed).await.map_err(|e| e.to_string())?,
            ))
        })
        .await
    }

    #[tool(description = "Pause the simulation clock: simulated time stops, no ticks.")]
    async fn mesh_pause_clock(&self, Parameters(a): Parameters<MeshArg>) -> CallToolResult {
        self.with_client(a.mesh.as_deref(), |c| async move {
            Ok(json_text(
                &c.pause_clock().await.map_err(|e| e.to_string())?,
            ))
        })
        .await
    }

    #[tool(description = "Resume a paused simulation clock from where it stopped.")]
    async fn mesh_resume_clock(&self, Parameters(a): Parameters<MeshArg>) -> CallToolResult {
        self.with_client(a.mesh.as_deref(), |c| async move {
            Ok(json_text(
                &c.resume_clock().await.map_err(|e| e.to_string())?,
            ))
        })
        .await
    }
}
