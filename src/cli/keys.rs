//! Root-key rotation (PROTOCOL.md §12.4): `rotate-key`, and the rotation `revoke` does after
//! removing a member.

use argh::{ArgsInfo, FromArgs};
use serde_json::json;

use super::output::outln;
use super::{CliError, CliResult, print_json, with_client};
use crate::client::{MeshClient, Rotated};

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "rotate-key", help_triggers("-h", "--help"))]
#[argh(example = "claudemesh rotate-key")]
/// give the mesh a new root key (owner or admin): sealed to every member, unused invites revoked
pub struct RotateKeyCmd {
    /// mesh slug or id (needed when several are joined)
    #[argh(option)]
    mesh: Option<String>,
    /// print JSON
    #[argh(switch)]
    json: bool,
}

impl RotateKeyCmd {
    pub async fn run(self) -> CliResult {
        let rotated = with_client(self.mesh.as_deref(), async |client| {
            Ok(client.rotate_root_key().await?)
        })
        .await?;
        if self.json {
            print_json(&rotated_json(&rotated));
        } else {
            say_rotated(&rotated);
        }
        Ok(())
    }
}

/// A rotation as `--json` prints it.
pub fn rotated_json(r: &Rotated) -> serde_json::Value {
    json!({
        "keyEpoch": r.epoch,
        "members": r.members,
        "invitesRevoked": r.invites_revoked,
    })
}

/// Rotates the mesh root key after `done` (a revocation, a ban, an unban) unless `skip`, and
/// says what it did; a failed rotation says how to finish it. `None` when skipped.
pub async fn rotate_after(
    client: &MeshClient,
    done: &str,
    skip: bool,
    json: bool,
) -> Result<Option<Rotated>, CliError> {
    if skip {
        return Ok(None);
    }
    let rotated = client.rotate_root_key().await.map_err(|e| {
        CliError::failed(format!(
            "{done}, but rotating the mesh root key failed ({e}): run `claudemesh rotate-key`"
        ))
    })?;
    if !json {
        say_rotated(&rotated);
    }
    Ok(Some(rotated))
}

/// A rotation as people read it.
pub fn say_rotated(r: &Rotated) {
    outln!(
        "rotated the mesh root key to epoch {}: sealed to {} member(s); group and broadcast messages from now on use it",
        r.epoch,
        r.members
    );
    if r.invites_revoked > 0 {
        outln!(
            "revoked {} unused invite(s): their links carried the old key; make new ones with `claudemesh invite`",
            r.invites_revoked
        );
    }
}
