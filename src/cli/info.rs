//! The mesh overview (CLI.md "Shared data"): `info`.

use argh::{ArgsInfo, FromArgs};

use super::output::outln;
use super::{CliResult, print_json, with_client};
use crate::client::MeshClient;

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "info", help_triggers("-h", "--help"))]
#[argh(example = "claudemesh info --json")]
/// mesh overview: peers, groups, state keys, memories, files, tasks, streams, SQL tables, vectors
pub struct InfoCmd {
    /// mesh slug or id (needed when several are joined)
    #[argh(option)]
    mesh: Option<String>,
    /// print JSON
    #[argh(switch)]
    json: bool,
}

impl InfoCmd {
    pub async fn run(self) -> CliResult {
        let info = with_client(self.mesh.as_deref(), async |client: &MeshClient| {
            Ok(client.mesh_info().await?)
        })
        .await?;
        if self.json {
            print_json(&info);
            return Ok(());
        }
        let none = |v: &[String]| {
            if v.is_empty() {
                "-".to_string()
            } else {
                v.join(", ")
            }
        };
        outln!("mesh        {} ({})", info.mesh, info.slug);
        outln!("you         {}", info.your_name);
        let yours: Vec<String> = info.your_groups.iter().map(|g| g.name.clone()).collect();
        outln!("your groups {}", none(&yours));
        outln!("peers       {} online", info.peers);
        outln!("groups      {}", none(&info.groups));
        outln!("state keys  {}", none(&info.state_keys));
        outln!("memories    {}", info.memory_count);
        outln!("files       {}", info.file_count);
        outln!(
            "tasks       {} open, {} claimed, {} done",
            info.tasks.open,
            info.tasks.claimed,
            info.tasks.done
        );
        outln!("streams     {}", none(&info.streams));
        outln!("sql tables  {}", none(&info.tables));
        outln!("vectors     {}", none(&info.collections));
        outln!(
            "group msgs  {}",
            super::settings::describe_group_bodies(&info.group_bodies)
        );
        Ok(())
    }
}
