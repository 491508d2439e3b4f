//! `claudemesh mcp`: the MCP server Claude Code starts over stdio. It joins every mesh of this
//! machine as its own session (session hello), exposes the mesh as tools, and turns incoming
//! messages into `notifications/claude/channel`.

mod approvals;
mod hub;
mod prompts;
pub mod session;
mod tools;

use rmcp::ServiceExt;

use crate::identity::ConfigDir;
use hub::Hub;
pub use hub::take_share_env;
use session::Session;
use tools::MeshTools;

/// Runs the MCP server on stdin/stdout until the client goes away.
pub async fn run() -> Result<(), String> {
    let dir = ConfigDir::from_env();
    let config = dir.load().map_err(|e| e.to_string())?;
    let only = std::env::var("CLAUDEMESH_MESH")
        .ok()
        .filter(|m| !m.is_empty());
    let meshes: Vec<_> = config
        .meshes
        .into_iter()
        .filter(|m| {
            only.as_deref()
                .is_none_or(|o| m.slug == o || m.mesh_id == o)
        })
        .collect();
    let session = Session::load_or_create(&dir).map_err(|e| e.to_string())?;
    let hub = Hub::start(session, meshes);
    let server = MeshTools::new(hub)
        .serve(rmcp::transport::stdio())
        .await
        .map_err(|e| format!("MCP handshake failed: {e}"))?;
    let _ = server.waiting().await;
    Ok(())
}
