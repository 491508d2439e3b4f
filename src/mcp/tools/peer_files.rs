//! MCP tools for peer files (issue 15 item 5): `list_peer_files` and `read_peer_file`, the
//! original's names. Hosting is the hub's (`launch --share-dir`).

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::CallToolResult;
use rmcp::{schemars, tool, tool_router};
use serde::Deserialize;

use super::{MeshTools, json_text};

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct ListPeerFilesArgs {
    /// The peer: its display name, or its member or session key (see list_peers).
    pub peer: String,
    /// A directory inside the peer's share (default: its root).
    #[serde(default)]
    pub path: Option<String>,
    /// Levels to list (default 2, at most 6; 6 with a pattern).
    #[serde(default)]
    pub depth: Option<u32>,
    /// Only paths matching this glob, relative to path: `*` and `?` within one name, `**`
    /// across directories (e.g. `src/**/*.rs`).
    #[serde(default)]
    pub pattern: Option<String>,
    #[serde(default)]
    pub mesh: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct ReadPeerFileArgs {
    /// The peer: its display name, or its member or session key (see list_peers).
    pub peer: String,
    /// The file, relative to the peer's shared directory.
    pub path: String,
    /// Seconds to wait for the peer (default 15, at most 60).
    #[serde(default)]
    pub timeout_seconds: Option<u64>,
    #[serde(default)]
    pub mesh: Option<String>,
}

#[tool_router(router = peer_files_router, vis = "pub")]
impl MeshTools {
    #[tool(
        description = "List the files in a peer's shared directory (names only; directories end with /). The peer must be online and sharing (claudemesh share-dir, or launch --share-dir)."
    )]
    async fn list_peer_files(
        &self,
        Parameters(a): Parameters<ListPeerFilesArgs>,
    ) -> CallToolResult {
        self.with_client(a.mesh.as_deref(), |c| async move {
            let path = a.path.unwrap_or_default();
            let listing = c
                .list_peer_files(&a.peer, &path, a.depth, a.pattern.as_deref(), None)
                .await
                .map_err(|e| e.to_string())?;
            Ok(json_text(&listing))
        })
        .await
    }

    #[tool(
        description = "Read a file from a peer's shared directory (up to 8 MiB, fetched in sealed 40 KiB chunks; sealed end to end to you). The peer must be online and sharing; its grants decide whether you may read."
    )]
    async fn read_peer_file(&self, Parameters(a): Parameters<ReadPeerFileArgs>) -> CallToolResult {
        self.with_client(a.mesh.as_deref(), |c| async move {
            let timeout = a
                .timeout_seconds
                .map(|s| Duration::from_secs(s.clamp(1, 60)));
            let file = c
                .read_peer_file(&a.peer, &a.path, timeout)
                .await
                .map_err(|e| e.to_string())?;
            Ok(match String::from_utf8(file.content) {
                Ok(text) => text,
                Err(e) => {
                    let bytes = e.into_bytes();
                    format!(
                        "{} is binary ({} bytes); base64:\n{}",
                        a.path,
                        bytes.len(),
                        STANDARD.encode(&bytes)
                    )
                }
            })
        })
        .await
    }
}
