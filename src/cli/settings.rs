//! A mesh's settings (PROTOCOL.md §5.2): `settings` shows them, `settings KEY VALUE` (owner
//! only) changes one.

use argh::{ArgsInfo, FromArgs};
use serde_json::json;

use super::output::outln;
use super::{CliError, CliResult, print_json, with_client};
use crate::client::MeshClient;
use crate::protocol::messages::GroupBodies;

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "settings", help_triggers("-h", "--help"))]
#[argh(example = "claudemesh settings group-bodies plain")]
/// show the mesh's settings, or change one (owner only): group-bodies sealed|plain
pub struct SettingsCmd {
    /// the setting to change and its new value: group-bodies sealed (group and broadcast
    /// messages end-to-end encrypted under the mesh key) or group-bodies plain (base64, so
    /// original claudemesh clients in the mesh can read them, and so can the broker)
    #[argh(positional)]
    setting: Vec<String>,
    /// mesh slug or id (needed when several are joined)
    #[argh(option)]
    mesh: Option<String>,
    /// print JSON
    #[argh(switch)]
    json: bool,
}

/// What a `group-bodies` value means, for people.
pub fn describe_group_bodies(value: &str) -> &'static str {
    match value {
        "plain" => "plain base64: original claudemesh clients can read them, and so can the broker",
        _ => "sealed: end-to-end encrypted under the mesh key",
    }
}

impl SettingsCmd {
    pub async fn run(self) -> CliResult {
        let mut given = self.setting.iter().map(String::as_str);
        let (key, value) = (given.next(), given.next());
        if given.next().is_some() {
            return Err(CliError::Usage(
                "settings takes a setting and its value, e.g. group-bodies plain".into(),
            ));
        }
        let change = match (key, value) {
            (None, _) => None,
            (Some("group-bodies"), Some(v)) if GroupBodies::parse(v).is_some() => {
                GroupBodies::parse(v)
            }
            (Some("group-bodies"), other) => {
                return Err(CliError::Usage(format!(
                    "group-bodies is sealed or plain{}",
                    other.map(|v| format!(", not \"{v}\"")).unwrap_or_default()
                )));
            }
            (Some(key), _) => {
                return Err(CliError::Usage(format!(
                    "no setting \"{key}\"; the one a mesh has is group-bodies"
                )));
            }
        };
        let settings = with_client(self.mesh.as_deref(), async |client: &MeshClient| {
            Ok(match change {
                Some(value) => client.set_group_bodies(value).await?,
                None => client.mesh_settings().await?,
            })
        })
        .await?;
        if self.json {
            print_json(&json!(settings));
            return Ok(());
        }
        outln!(
            "group-bodies   {} ({})",
            settings.group_bodies,
            describe_group_bodies(&settings.group_bodies)
        );
        outln!(
            "self-editable  {}",
            if settings.self_editable { "yes" } else { "no" }
        );
        Ok(())
    }
}
