//! MCP tools for inbound webhooks: create_webhook, list_webhooks, delete_webhook (the
//! original's names).

use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::CallToolResult;
use rmcp::{schemars, tool, tool_router};
use serde::Deserialize;

use super::{MeshArg, MeshTools, json_text, one_target};
use crate::protocol::messages::CreateWebhook;

#[derive(Deserialize, schemars::JsonSchema)]
pub struct CreateWebhookArgs {
    /// The name: letters, digits, '-', '_' or '.'.
    pub name: String,
    /// Who gets the deliveries: a name, pubkey, @group or * (default: *).
    #[serde(default)]
    pub target: Option<String>,
    /// The signing secret (16 to 256 characters); the broker makes one when left out.
    #[serde(default)]
    pub secret: Option<String>,
    #[serde(default)]
    pub mesh: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct WebhookNameArgs {
    pub name: String,
    #[serde(default)]
    pub mesh: Option<String>,
}

#[tool_router(router = webhooks_router, vis = "pub")]
impl MeshTools {
    #[tool(
        description = "Create an inbound webhook: returns a URL that GitHub, CI or monitoring POST JSON to, and its signing secret (shown once). Deliveries need an HMAC-SHA256 signature (X-Hub-Signature-256, or X-Claudemesh-Signature t=,v1=) and become messages (subtype webhook) to the target."
    )]
    async fn create_webhook(&self, Parameters(a): Parameters<CreateWebhookArgs>) -> CallToolResult {
        self.with_client(a.mesh.as_deref(), |c| async move {
            let target = match a.target.as_deref() {
                None => None,
                Some(t) => Some(one_target(&c, t, "a webhook").await?),
            };
            let created = c
                .create_webhook(CreateWebhook {
                    name: a.name,
                    target,
                    secret: a.secret,
                })
                .await
                .map_err(|e| e.to_string())?;
            Ok(json_text(&serde_json::json!({
                "name": created.name,
                "url": created.url,
                "secret": created.secret,
            })))
        })
        .await
    }

    #[tool(description = "List the mesh's inbound webhooks (names, URLs, targets; never secrets).")]
    async fn list_webhooks(&self, Parameters(a): Parameters<MeshArg>) -> CallToolResult {
        self.with_client(a.mesh.as_deref(), |c| async move {
            let hooks = c.list_webhooks().await.map_err(|e| e.to_string())?;
            Ok(if hooks.is_empty() {
                "No webhooks.".to_string()
            } else {
                json_text(&hooks)
            })
        })
        .await
    }

    #[tool(description = "Delete an inbound webhook by name; its URL stops accepting deliveries.")]
    async fn delete_webhook(&self, Parameters(a): Parameters<WebhookNameArgs>) -> CallToolResult {
        self.with_client(a.mesh.as_deref(), |c| async move {
            c.delete_webhook(&a.name).await.map_err(|e| e.to_string())?;
            Ok(format!("Deleted webhook {}.", a.name))
        })
        .await
    }
}
