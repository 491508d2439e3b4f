//! Mesh-qualified targets on the command line: `team:bob` is bob in the joined mesh `team` (its
//! slug, name or id), so `send team:bob hi` needs no `--mesh`. A comma list may qualify several
//! targets (`team:alice,team:@backend`, or `team:alice,bob`: bob is in `team` too), all in one
//! mesh: a message goes to one mesh.

use super::CliError;
use crate::client::MeshClient;
use crate::identity::{Config, ConfigDir};

/// `to` with its mesh qualifiers taken off, and the mesh they (or `--mesh`) name.
pub fn unqualify(to: &str, mesh: Option<&str>) -> Result<(Option<String>, String), CliError> {
    if !to.contains(':') {
        return Ok((mesh.map(str::to_string), to.to_string()));
    }
    let config = ConfigDir::from_env().load()?;
    split(&config, to, mesh)
}

/// The one target spec `to` names in `client`'s mesh (a name, pubkey, `@group` or `*`), for
/// what goes to a single target (`--to` of a reminder, a watch, a webhook).
pub async fn one_spec(client: &MeshClient, to: &str) -> Result<String, CliError> {
    match client.resolve_targets(to).await?.as_slice() {
        [one] => Ok(one.spec.clone()),
        _ => Err(CliError::Usage(
            "--to takes one recipient (a name, pubkey, @group or *)".into(),
        )),
    }
}

/// [`unqualify`] for an optional target (`--to`): without one, `--mesh` alone picks the mesh.
pub fn unqualify_option(
    to: Option<&str>,
    mesh: Option<&str>,
) -> Result<(Option<String>, Option<String>), CliError> {
    match to {
        Some(t) => unqualify(t, mesh).map(|(mesh, to)| (mesh, Some(to))),
        None => Ok((mesh.map(str::to_string), None)),
    }
}

fn split(
    config: &Config,
    to: &str,
    mesh: Option<&str>,
) -> Result<(Option<String>, String), CliError> {
    let mut named: Option<String> = None;
    let mut targets = Vec::new();
    for part in to.split(',') {
        let qualified = part
            .split_once(':')
            // `@group:role` and `*` are targets inside a mesh, never a mesh.
            .filter(|(m, _)| !m.starts_with('@') && !m.is_empty())
            .and_then(|(m, peer)| Some((config.select(Some(m)).ok()?, peer)));
        let Some((entry, peer)) = qualified else {
            targets.push(part.to_string());
            continue;
        };
        if let Some(other) = named.as_deref().or(mesh)
            && config.select(Some(other)).ok().map(|e| &e.mesh_id) != Some(&entry.mesh_id)
        {
            return Err(CliError::Usage(format!(
                "\"{part}\" is in mesh {} but this message goes to {other}: one message goes to one mesh",
                entry.slug
            )));
        }
        named = Some(entry.slug.clone());
        targets.push(peer.to_string());
    }
    Ok((named.or(mesh.map(str::to_string)), targets.join(",")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        let mesh = |slug: &str, name: &str| {
            let mut entry =
                serde_json::json!({"meshId": format!("id-{slug}"), "slug": slug, "name": name});
            for field in [
                "memberId",
                "displayName",
                "role",
                "brokerUrl",
                "memberPubkey",
                "memberSecretKey",
                "ownerPubkey",
                "joinedAt",
            ] {
                entry[field] = "".into();
            }
            serde_json::from_value(entry).unwrap()
        };
        Config {
            meshes: vec![mesh("team-x1", "team"), mesh("ops-y2", "ops")],
            ..Config::default()
        }
    }

    #[test]
    fn a_mesh_prefix_picks_the_mesh() {
        let c = config();
        let got = |to, mesh| split(&c, to, mesh).map_err(|e| format!("{e:?}"));
        assert_eq!(
            got("team:bob", None),
            Ok((Some("team-x1".into()), "bob".into()))
        );
        assert_eq!(
            got("ops-y2:bob,@backend,ops:@all", None),
            Ok((Some("ops-y2".into()), "bob,@backend,@all".into()))
        );
        // Not a joined mesh, or a group role: left as it is.
        assert_eq!(got("nope:bob", None), Ok((None, "nope:bob".into())));
        assert_eq!(
            got("@backend:lead", Some("ops")),
            Ok((Some("ops".into()), "@backend:lead".into()))
        );
        assert!(got("team:bob,ops:carol", None).is_err());
        assert!(got("team:bob", Some("ops")).is_err());
        assert_eq!(
            got("team:bob", Some("team-x1")).map(|r| r.1),
            Ok("bob".into())
        );
    }
}
