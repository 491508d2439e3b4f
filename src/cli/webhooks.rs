//! Inbound webhooks (README "Watches and webhooks"): `webhook create|list|delete`.

use argh::{ArgsInfo, FromArgs};
use serde_json::json;

use super::output::{self, outln};
use super::{CliResult, print_json, with_client};
use crate::client::MeshClient;
use crate::protocol::messages::CreateWebhook;

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "webhook", help_triggers("-h", "--help"))]
#[argh(example = "claudemesh webhook create github --to @backend")]
#[argh(example = "claudemesh webhook list")]
/// URLs that GitHub, CI or monitoring POST signed JSON to, delivered as mesh messages
pub struct WebhookCmd {
    #[argh(subcommand)]
    action: WebhookAction,
}

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand)]
enum WebhookAction {
    Create(WebhookCreateCmd),
    List(WebhookListCmd),
    Delete(WebhookDeleteCmd),
}

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "create", help_triggers("-h", "--help"))]
#[argh(example = "claudemesh webhook create github --to @backend")]
/// make a webhook: prints its URL and its signing secret, shown this once
struct WebhookCreateCmd {
    /// the name: letters, digits, '-', '_' or '.'
    #[argh(positional)]
    name: String,
    /// who gets the deliveries: a name, pubkey, @group or * (default: *)
    #[argh(option)]
    to: Option<String>,
    /// mesh slug or id (needed when several are joined)
    #[argh(option)]
    mesh: Option<String>,
    /// print JSON: {url, secret, name}
    #[argh(switch)]
    json: bool,
}

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "list", help_triggers("-h", "--help"))]
#[argh(example = "claudemesh webhook list --json")]
/// list the mesh's webhooks (never their secrets)
struct WebhookListCmd {
    /// mesh slug or id (needed when several are joined)
    #[argh(option)]
    mesh: Option<String>,
    /// print JSON: {webhooks: [{name, url, active, createdAt, target, createdBy}]}
    #[argh(switch)]
    json: bool,
}

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "delete", help_triggers("-h", "--help"))]
#[argh(example = "claudemesh webhook delete github")]
/// delete a webhook by name; its URL stops accepting deliveries
struct WebhookDeleteCmd {
    /// the name
    #[argh(positional)]
    name: String,
    /// mesh slug or id (needed when several are joined)
    #[argh(option)]
    mesh: Option<String>,
    /// print JSON: {name, deleted}
    #[argh(switch)]
    json: bool,
}

impl WebhookCmd {
    pub async fn run(self) -> CliResult {
        match self.action {
            WebhookAction::Create(c) => {
                let (mesh, to) =
                    super::target::unqualify_option(c.to.as_deref(), c.mesh.as_deref())?;
                let created = with_client(mesh.as_deref(), async |client: &MeshClient| {
                    let target = match to.as_deref() {
                        None => None,
                        Some(t) => Some(super::target::one_spec(client, t).await?),
                    };
                    Ok(client
                        .create_webhook(CreateWebhook {
                            name: c.name.clone(),
                            target,
                            secret: None,
                        })
                        .await?)
                })
                .await?;
                if c.json {
                    print_json(&json!({
                        "url": created.url,
                        "secret": created.secret,
                        "name": created.name,
                    }));
                } else {
                    outln!("webhook {}: POST {}", created.name, created.url);
                    outln!(
                        "secret (shown only now; sign each delivery with it, e.g. GitHub's \"Secret\" field): {}",
                        created.secret
                    );
                }
            }
            WebhookAction::List(c) => {
                let hooks = with_client(c.mesh.as_deref(), async |client: &MeshClient| {
                    Ok(client.list_webhooks().await?)
                })
                .await?;
                output::list(c.json, "webhooks", &hooks, "no webhooks", |h| {
                    format!(
                        "{}  {} → {}  (by {}, {})",
                        h.name, h.url, h.target, h.created_by, h.created_at
                    )
                });
            }
            WebhookAction::Delete(c) => {
                with_client(c.mesh.as_deref(), async |client: &MeshClient| {
                    Ok(client.delete_webhook(&c.name).await?)
                })
                .await?;
                if c.json {
                    print_json(&json!({ "name": c.name, "deleted": true }));
                } else {
                    outln!("deleted webhook {}", c.name);
                }
            }
        }
        Ok(())
    }
}
