//! A deployment's code: fetched from its source into a staging directory beside the service,
//! checked to have an entry point, then moved in place of the old code.

use super::*;

/// Whether `program` can be found inside the sandbox (under /usr or /bin).
fn installed(program: &str) -> bool {
    ["/usr/local/bin", "/usr/bin", "/bin"]
        .iter()
        .any(|d| std::path::Path::new(d).join(program).is_file())
}

/// Brings the source's code into `staging` (a path that does not exist yet).
async fn fetch(
    broker: &Broker,
    peer: &Peer,
    deployer: &str,
    src: &DeploySource,
    config: &DeployConfig,
    staging: &std::path::Path,
) -> Result<(), Refusal> {
    let failed = |e: String| refuse("deploy_failed", e);
    match src {
        DeploySource::Zip { file_id } => {
            if !ids::is_id(file_id) {
                return Err(refuse(
                    "invalid_argument",
                    "file_id must be 1-64 characters of [A-Za-z0-9_-]",
                ));
            }
            let record = broker
                .store
                .file(&peer.mesh_id, file_id)?
                .ok_or_else(|| refuse("not_found", format!("no file {file_id}")))?;
            if record.encrypted {
                return Err(refuse(
                    "invalid_argument",
                    format!(
                        "file {file_id} is encrypted (shared with --to): the broker cannot read it; share the archive without --to to deploy it"
                    ),
                ));
            }
            // The deployer's own archive stays readable for the service, also when an owner
            // or admin fetches it again (`deploy --dir` shares it for its uploader alone).
            let deployers = record.uploader_member_id == deployer
                && !record.is_expired(crate::protocol::time::now_ms());
            if !deployers {
                endpoints::readable_by(broker, &record, peer).map_err(|(c, m)| refuse(c, m))?;
            }
            if record.size > source::MAX_ARCHIVE_BYTES {
                return Err(refuse(
                    "payload_too_large",
                    format!(
                        "file {file_id} is {} bytes; a service archive may be at most {}",
                        record.size,
                        source::MAX_ARCHIVE_BYTES
                    ),
                ));
            }
            let bytes = broker
                .files
                .blobs
                .get(&files::object_path(&peer.mesh_id, file_id))
                .await
                .map_err(|e| refuse("internal", format!("cannot read file {file_id}: {e}")))?
                .bytes()
                .await
                .map_err(|e| refuse("internal", format!("cannot read file {file_id}: {e}")))?;
            let dest = staging.to_path_buf();
            tokio::task::spawn_blocking(move || {
                std::fs::create_dir_all(&dest).map_err(|e| e.to_string())?;
                source::install_archive(&bytes, &dest)
            })
            .await
            .map_err(|e| failed(e.to_string()))?
            .map_err(|e| refuse("invalid_argument", format!("file {file_id}: {e}")))
        }
        DeploySource::Git { url, branch } => {
            source::check_git_url(url).map_err(|e| refuse("invalid_argument", e))?;
            source::git_clone(url, branch.as_deref(), staging)
                .await
                .map_err(failed)
        }
        DeploySource::Npm { package } | DeploySource::Pypi { package } => {
            source::check_package(package).map_err(|e| refuse("invalid_argument", e))?;
            // npx fetches through the proxy of a service limited to named hosts (tested with
            // registry.npmjs.org alone); uvx through it is untried, so it takes the host's.
            let (tool, reach) = if matches!(src, DeploySource::Npm { .. }) {
                (
                    "npx",
                    "network_allow [\"*\"] (--allow-net '*') or the registry's host (--allow-net registry.npmjs.org)",
                )
            } else {
                (
                    "uvx",
                    "network_allow [\"*\"] (--allow-net '*'); named hosts are not supported for PyPI packages yet",
                )
            };
            if !installed(tool) {
                return Err(refuse(
                    "not_supported",
                    format!("{tool} is not installed on the broker host (under /usr)"),
                ));
            }
            let reaches = match src {
                DeploySource::Npm { .. } => !config.network_allow.is_empty(),
                _ => config.network_allow == ["*"],
            };
            if !reaches {
                return Err(refuse(
                    "invalid_argument",
                    format!(
                        "{tool} fetches the package when the service starts, so it needs the network: give {reach}"
                    ),
                ));
            }
            std::fs::create_dir_all(staging).map_err(|e| failed(e.to_string()))
        }
    }
}

/// Replaces a service's code with `staging` and makes sure it has its work directory.
async fn install(
    broker: &Broker,
    row: &DeploymentRow,
    staging: std::path::PathBuf,
) -> Result<(), Refusal> {
    broker.services.stop(&row.mesh_id, &row.name).await;
    let dir = broker.services.dir(&row.mesh_id, &row.name);
    tokio::task::spawn_blocking(move || {
        let app = dir.join("app");
        if app.exists() {
            std::fs::remove_dir_all(&app).map_err(|e| format!("{}: {e}", app.display()))?;
        }
        std::fs::rename(&staging, &app).map_err(|e| format!("{}: {e}", app.display()))?;
        let work = dir.join("work");
        std::fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
        sandbox::prepare_work_dir(&work)
    })
    .await
    .map_err(|e| refuse("internal", e.to_string()))?
    .map_err(|e| refuse("internal", e))
}

/// A fresh staging path for new code, beside the service's directory.
fn staging(broker: &Broker, mesh_id: &str, name: &str) -> Result<std::path::PathBuf, Refusal> {
    let dir = broker.services.dir(mesh_id, name);
    std::fs::create_dir_all(&dir)
        .map_err(|e| refuse("internal", format!("{}: {e}", dir.display())))?;
    let path = dir.join(format!(
        "app.new-{}",
        hex::encode(crate::crypto::random_bytes::<6>())
    ));
    Ok(path)
}

/// Fetches a source into staging and moves it in place; the staging copy is removed on error.
pub(super) async fn fetch_and_install(
    broker: &Broker,
    peer: &Peer,
    row: &DeploymentRow,
    src: &DeploySource,
    config: &DeployConfig,
) -> Result<(), Refusal> {
    let staged = staging(broker, &row.mesh_id, &row.name)?;
    let fetched = fetch(broker, peer, &row.deployer_member_id, src, config, &staged).await;
    let checked = fetched.and_then(|_| {
        source::entry_command(&staged, src, config)
            .map(|_| ())
            .map_err(|e| refuse("invalid_argument", e))
    });
    if let Err(e) = checked {
        let _ = std::fs::remove_dir_all(&staged);
        return Err(e);
    }
    install(broker, row, staged).await
}
