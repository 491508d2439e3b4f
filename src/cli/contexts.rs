//! Shared contexts (CLI.md "Shared data"): `context share|get|list`.

use argh::{ArgsInfo, FromArgs};
use serde_json::json;

use super::output::{self, outln};
use super::{CliResult, print_json, split_list, with_client, words};
use crate::client::MeshClient;
use crate::protocol::messages::{ContextEntry, ShareContext};

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "context", help_triggers("-h", "--help"))]
#[argh(example = "claudemesh context share \"auth lives in src/auth\" --files src/auth/mod.rs")]
/// what each member knows about the codebase: share, get, list
pub struct ContextCmd {
    #[argh(subcommand)]
    action: ContextAction,
}

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand)]
enum ContextAction {
    Share(ContextShareCmd),
    Get(ContextGetCmd),
    List(ContextListCmd),
}

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "share", help_triggers("-h", "--help"))]
#[argh(
    example = "claudemesh context share \"auth lives in src/auth\" --files src/auth/mod.rs --tags auth"
)]
/// share your current understanding (replaces what you shared before)
struct ContextShareCmd {
    /// a summary of what you know
    #[argh(positional)]
    summary: Vec<String>,
    /// files you read, comma-separated
    #[argh(option)]
    files: Option<String>,
    /// key findings, comma-separated
    #[argh(option)]
    findings: Option<String>,
    /// tags, comma-separated
    #[argh(option)]
    tags: Option<String>,
    /// mesh slug or id (needed when several are joined)
    #[argh(option)]
    mesh: Option<String>,
    /// print JSON: {id}
    #[argh(switch)]
    json: bool,
}

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "get", help_triggers("-h", "--help"))]
#[argh(example = "claudemesh context get src/auth")]
/// find contexts that mention these words (a file path, a topic)
struct ContextGetCmd {
    /// what to look for
    #[argh(positional)]
    query: Vec<String>,
    /// mesh slug or id (needed when several are joined)
    #[argh(option)]
    mesh: Option<String>,
    /// print JSON: {contexts: [...]}
    #[argh(switch)]
    json: bool,
}

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "list", help_triggers("-h", "--help"))]
#[argh(example = "claudemesh context list --json")]
/// every member's current context, newest first
struct ContextListCmd {
    /// mesh slug or id (needed when several are joined)
    #[argh(option)]
    mesh: Option<String>,
    /// print JSON: {contexts: [...]}
    #[argh(switch)]
    json: bool,
}

fn print_contexts(contexts: &[ContextEntry]) {
    if contexts.is_empty() {
        outln!("no contexts");
    }
    for c in contexts {
        output::block(&format!("{} ({}): ", c.peer_name, c.updated_at), &c.summary);
        if !c.files_read.is_empty() {
            outln!("  files: {}", c.files_read.join(", "));
        }
        for f in &c.key_findings {
            outln!("  - {f}");
        }
        if !c.tags.is_empty() {
            outln!("  tags: {}", c.tags.join(", "));
        }
    }
}

impl ContextCmd {
    pub async fn run(self) -> CliResult {
        match self.action {
            ContextAction::Share(c) => {
                let context = ShareContext {
                    summary: words("summary", &c.summary)?,
                    files_read: Some(split_list(&c.files)),
                    key_findings: Some(split_list(&c.findings)),
                    tags: Some(split_list(&c.tags)),
                };
                let id = with_client(c.mesh.as_deref(), async |client: &MeshClient| {
                    Ok(client.share_context(context).await?)
                })
                .await?;
                if c.json {
                    print_json(&json!({ "id": id }));
                } else {
                    outln!("shared context {id}");
                }
            }
            ContextAction::Get(c) => {
                let query = words("words to look for", &c.query)?;
                let contexts = with_client(c.mesh.as_deref(), async |client: &MeshClient| {
                    Ok(client.get_context(&query).await?)
                })
                .await?;
                if c.json {
                    print_json(&json!({ "contexts": contexts }));
                } else {
                    print_contexts(&contexts);
                }
            }
            ContextAction::List(c) => {
                let contexts = with_client(c.mesh.as_deref(), async |client: &MeshClient| {
                    Ok(client.list_contexts().await?)
                })
                .await?;
                if c.json {
                    print_json(&json!({ "contexts": contexts }));
                } else {
                    print_contexts(&contexts);
                }
            }
        }
        Ok(())
    }
}
