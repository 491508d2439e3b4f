//! MCP tools for the vault: vault_set, vault_list, vault_get, vault_delete (the original's
//! names). Values are encrypted in this process before they go to the broker. No tool returns
//! a value: what a tool returns enters the model's context and its transcripts, so `vault_get`
//! gives metadata and points to `claudemesh vault get KEY` in a terminal.

use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::CallToolResult;
use rmcp::{schemars, tool, tool_router};
use serde::Deserialize;
use zeroize::Zeroizing;

use super::{MeshArg, MeshTools, json_text};
use crate::client::vault::VaultOptions;
use crate::protocol::messages::VaultEntryType;

/// No `Debug`: it holds the value.
#[derive(Deserialize, schemars::JsonSchema)]
pub struct VaultSetArgs {
    /// The key: letters, digits and _ (referenced by deployed services as $vault:KEY).
    pub key: String,
    /// The secret value (text). It passes through the model's context and transcript; to keep
    /// it out, store it with `claudemesh vault set KEY --value-stdin` in a terminal instead.
    pub value: String,
    /// "env" (an environment variable of the service, the default) or "file".
    #[serde(default, rename = "type")]
    pub entry_type: Option<String>,
    /// For type "file": the absolute path it is mounted at inside the service's sandbox.
    #[serde(default)]
    pub mount_path: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    /// Seal it to the broker's service key so your deployed services can use it (default
    /// true); false keeps it readable by you alone.
    #[serde(default, rename = "forServices")]
    pub for_services: Option<bool>,
    #[serde(default)]
    pub mesh: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct VaultKeyArgs {
    pub key: String,
    #[serde(default)]
    pub mesh: Option<String>,
}

#[tool_router(router = vault_router, vis = "pub")]
impl MeshTools {
    #[tool(
        description = "Store a secret in your vault, encrypted before it leaves this machine: type env (an environment variable) or file (mounted at mount_path) for services you deploy ($vault:KEY). Only you can read it back."
    )]
    async fn vault_set(&self, Parameters(a): Parameters<VaultSetArgs>) -> CallToolResult {
        let value = Zeroizing::new(a.value);
        self.with_client(a.mesh.as_deref(), |c| async move {
            let type_name = a.entry_type.as_deref().unwrap_or("env");
            let entry_type = VaultEntryType::parse(type_name)
                .ok_or_else(|| format!("type is \"env\" or \"file\", not \"{type_name}\""))?;
            let options = VaultOptions {
                entry_type,
                mount_path: a.mount_path,
                description: a.description,
                for_services: a.for_services.unwrap_or(true),
            };
            c.vault_set(&a.key, value.as_bytes(), options)
                .await
                .map_err(|e| e.to_string())?;
            Ok(format!("Stored {} in your vault (encrypted).", a.key))
        })
        .await
    }

    #[tool(
        description = "List your vault entries: keys, types, mount paths, descriptions. Never values."
    )]
    async fn vault_list(&self, Parameters(a): Parameters<MeshArg>) -> CallToolResult {
        self.with_client(a.mesh.as_deref(), |c| async move {
            let entries = c.vault_list().await.map_err(|e| e.to_string())?;
            Ok(if entries.is_empty() {
                "Your vault is empty.".to_string()
            } else {
                json_text(&entries)
            })
        })
        .await
    }

    #[tool(
        description = "Show one of your vault entries' metadata (type, mount path, description). Never the value: read it in a terminal with `claudemesh vault get KEY`, so it stays out of this conversation."
    )]
    async fn vault_get(&self, Parameters(a): Parameters<VaultKeyArgs>) -> CallToolResult {
        self.with_client(a.mesh.as_deref(), |c| async move {
            let entries = c.vault_list().await.map_err(|e| e.to_string())?;
            match entries.into_iter().find(|e| e.key == a.key) {
                Some(entry) => Ok(format!(
                    "{}\nThe value is not shown here (it would enter this conversation). Read it in a terminal: claudemesh vault get {}",
                    json_text(&entry),
                    a.key
                )),
                None => Err(format!("You stored no vault entry \"{}\".", a.key)),
            }
        })
        .await
    }

    #[tool(description = "Delete one of your vault entries.")]
    async fn vault_delete(&self, Parameters(a): Parameters<VaultKeyArgs>) -> CallToolResult {
        self.with_client(a.mesh.as_deref(), |c| async move {
            if c.vault_delete(&a.key).await.map_err(|e| e.to_string())? {
                Ok(format!("Deleted {} from your vault.", a.key))
            } else {
                Err(format!("You stored no vault entry \"{}\".", a.key))
            }
        })
        .await
    }
}
