//! MCP tools for shared files: share, get, list, status, delete and grant access.

use std::path::PathBuf;

use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::CallToolResult;
use rmcp::{schemars, tool, tool_router};
use serde::Deserialize;

use super::{IdArgs, MeshTools, json_text};
use crate::client::MeshClient;
use crate::client::files::ShareOptions;
use crate::protocol::Pubkey;

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

impl MeshTools {
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

#[tool_router(router = files_router, vis = "pub")]
impl MeshTools {
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
}
