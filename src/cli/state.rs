//! The state board (CLI.md "Shared data"): `state get|set|list`.

use argh::{ArgsInfo, FromArgs};
use serde_json::json;

use super::output::outln;
use super::{CliError, CliResult, json_or_text, print_json, show_value, with_client};
use crate::client::MeshClient;
use crate::protocol::messages::StateEntry;

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "state", help_triggers("-h", "--help"))]
#[argh(example = "claudemesh state set deploy '{{\"ok\": true}}'")]
#[argh(example = "claudemesh state get deploy --json")]
/// the mesh's shared key-value board: get, set, list
pub struct StateCmd {
    #[argh(subcommand)]
    action: StateAction,
}

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand)]
enum StateAction {
    Get(StateGetCmd),
    Set(StateSetCmd),
    List(StateListCmd),
}

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "get", help_triggers("-h", "--help"))]
#[argh(example = "claudemesh state get deploy --json")]
#[argh(error_code(3, "the key is not set (with --json, its value is null)"))]
/// print one key's value, who set it and when
struct StateGetCmd {
    /// the key
    #[argh(positional)]
    key: String,
    /// mesh slug or id (needed when several are joined)
    #[argh(option)]
    mesh: Option<String>,
    /// print JSON: {key, value, updatedBy, updatedAt}
    #[argh(switch)]
    json: bool,
}

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "set", help_triggers("-h", "--help"))]
#[argh(example = "claudemesh state set build green")]
#[argh(example = "claudemesh state set build null")]
/// set a key to a JSON value or, if it is not JSON, to the text (null deletes the key)
struct StateSetCmd {
    /// the key
    #[argh(positional)]
    key: String,
    /// the value: JSON, or text
    #[argh(positional)]
    value: String,
    /// mesh slug or id (needed when several are joined)
    #[argh(option)]
    mesh: Option<String>,
    /// print JSON
    #[argh(switch)]
    json: bool,
}

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "list", help_triggers("-h", "--help"))]
#[argh(example = "claudemesh state list --json")]
/// print every key
struct StateListCmd {
    /// mesh slug or id (needed when several are joined)
    #[argh(option)]
    mesh: Option<String>,
    /// print JSON: {entries: [...]}
    #[argh(switch)]
    json: bool,
}

fn state_line(e: &StateEntry) -> String {
    if e.updated_by.is_empty() {
        return format!("{} is not set", e.key);
    }
    format!(
        "{} = {}  (by {}, {})",
        e.key,
        show_value(&e.value),
        e.updated_by,
        e.updated_at
    )
}

impl StateCmd {
    pub async fn run(self) -> CliResult {
        match self.action {
            StateAction::Get(c) => {
                let entry = with_client(c.mesh.as_deref(), async |client: &MeshClient| {
                    Ok(client.get_state(&c.key).await?)
                })
                .await?;
                let missing = entry.updated_by.is_empty();
                if c.json {
                    print_json(&entry);
                } else if !missing {
                    outln!("{}", state_line(&entry));
                }
                if missing {
                    // Exit 3, not 0: a script can tell "not set" from a value, and from a
                    // failure to ask (1).
                    return Err(CliError::NotFound(format!(
                        "{} is not set (set it with `claudemesh state set {} VALUE`)",
                        c.key, c.key
                    )));
                }
            }
            StateAction::Set(c) => {
                let value = json_or_text(&c.value);
                let entry = with_client(c.mesh.as_deref(), async |client: &MeshClient| {
                    Ok(client.set_state(&c.key, value).await?)
                })
                .await?;
                if c.json {
                    print_json(&entry);
                } else if entry.value.is_null() {
                    outln!("deleted {}", entry.key);
                } else {
                    outln!("{}", state_line(&entry));
                }
            }
            StateAction::List(c) => {
                let entries = with_client(c.mesh.as_deref(), async |client: &MeshClient| {
                    Ok(client.list_state().await?)
                })
                .await?;
                if c.json {
                    print_json(&json!({ "entries": entries }));
                } else if entries.is_empty() {
                    outln!("no state keys");
                } else {
                    for e in &entries {
                        outln!("{}", state_line(e));
                    }
                }
            }
        }
        Ok(())
    }
}
