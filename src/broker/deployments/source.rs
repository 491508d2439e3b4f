//! Getting a service's code onto the broker host and finding how to start it: an archive from
//! the files area unpacked with [`crate::archive`] (no path leaves its directory), a git
//! repository cloned (depth 1, outside the sandbox, with a time limit), or a package that
//! `npx` / `uvx` fetch when the service starts.

use std::path::Path;
use std::time::Duration;

use crate::archive::{self, Limits};
use crate::protocol::messages::{DeployConfig, DeploySource};

/// Largest archive read from the files area.
pub const MAX_ARCHIVE_BYTES: u64 = 64 << 20;
const LIMITS: Limits = Limits {
    file_bytes: 32 << 20,
    files: 20_000,
    unpacked_bytes: 256 << 20,
};
/// How long a `git clone` may take.
const CLONE_TIMEOUT: Duration = Duration::from_secs(120);

/// Unpacks an archive into `dest` (a fresh directory). One top directory shared by every file
/// is taken off (`srv/server.py` → `server.py`).
pub fn install_archive(bytes: &[u8], dest: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let mut files = archive::unpack(bytes, &LIMITS).map_err(|e| e.0)?;
    if files.is_empty() {
        return Err("the archive holds no files".into());
    }
    archive::strip_top(&mut files, |fs| fs.iter().any(|f| !f.path.contains('/')));
    for f in files {
        // `path` is plain and relative (checked by `archive`): it stays under `dest`.
        let to = dest.join(&f.path);
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        std::fs::write(&to, &f.bytes).map_err(|e| format!("{}: {e}", to.display()))?;
        let mode = if f.executable { 0o755 } else { 0o644 };
        std::fs::set_permissions(&to, std::fs::Permissions::from_mode(mode))
            .map_err(|e| format!("{}: {e}", to.display()))?;
    }
    Ok(())
}

/// A URL `git clone` may fetch: a network URL, never a local path, `file://` or a transport
/// helper (`ext::`, `fd::`), and nothing git would read as an option. Nor one that carries
/// credentials (`https://user:token@host/…`): the broker keeps the URL in its data and hands it
/// to git on the command line, where every local user can read it.
pub fn check_git_url(url: &str) -> Result<(), String> {
    let lower = url.to_ascii_lowercase();
    let Some(scheme) = ["https://", "http://", "ssh://", "git://"]
        .into_iter()
        .find(|p| lower.starts_with(p))
    else {
        return Err(not_allowed(url));
    };
    if url.chars().any(char::is_whitespace) {
        return Err(not_allowed(url));
    }
    let rest = &url[scheme.len()..];
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    if let Some((userinfo, _)) = authority.rsplit_once('@') {
        // `ssh://git@host/…` names the remote user, no secret; anything else before an `@`
        // is a credential.
        if scheme != "ssh://" || userinfo.contains(':') {
            return Err(
                "the git URL carries credentials (user:token@): the broker would keep them in its data and show them in process lists. Deploy from a URL anyone may clone, or share the code as an archive (`claudemesh deploy --dir` / `--file`)"
                    .into(),
            );
        }
    }
    Ok(())
}

fn not_allowed(url: &str) -> String {
    format!(
        "git URL \"{}\" is not allowed: give an https://, http://, ssh:// or git:// URL (local paths, file:// and ext:: are refused)",
        url.chars().take(200).collect::<String>()
    )
}

fn check_branch(branch: &str) -> Result<(), String> {
    let ok = !branch.is_empty()
        && !branch.starts_with('-')
        && branch.len() <= 200
        && branch
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'));
    if ok {
        Ok(())
    } else {
        Err("branch must be letters, digits, '-', '_', '.' or '/' (and not start with '-')".into())
    }
}

/// `git clone --depth 1` of `url` into `dest` (which must not exist yet).
pub async fn git_clone(url: &str, branch: Option<&str>, dest: &Path) -> Result<(), String> {
    check_git_url(url)?;
    let mut cmd = tokio::process::Command::new("git");
    cmd.args([
        "-c",
        "protocol.file.allow=never",
        "-c",
        "protocol.ext.allow=never",
        "clone",
        "--depth",
        "1",
        "--quiet",
    ]);
    if let Some(b) = branch {
        check_branch(b)?;
        cmd.args(["--branch", b]);
    }
    cmd.arg("--").arg(url).arg(dest);
    // None of the broker host's own git setup, credentials or ssh keys: a clean environment,
    // an empty home, no system config, ssh with no key and no config (a deployer must not clone
    // what only the broker host's identity may read).
    let home = dest.with_extension("git-home");
    std::fs::create_dir_all(&home).map_err(|e| format!("{}: {e}", home.display()))?;
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", &home)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_ASKPASS", "/bin/false")
        .env("SSH_ASKPASS", "/bin/false")
        .env(
            "GIT_SSH_COMMAND",
            "ssh -F /dev/null -o BatchMode=yes -o IdentitiesOnly=yes -o IdentityFile=/dev/null -o StrictHostKeyChecking=accept-new -o UserKnownHostsFile=/dev/null",
        )
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let out = tokio::time::timeout(CLONE_TIMEOUT, cmd.output()).await;
    let _ = std::fs::remove_dir_all(&home);
    let out = out
        .map_err(|_| format!("git clone of {url} took longer than {CLONE_TIMEOUT:?}"))?
        .map_err(|e| format!("cannot run git: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "git clone of {url} failed: {}",
            String::from_utf8_lossy(&out.stderr)
                .trim()
                .chars()
                .take(500)
                .collect::<String>()
        ));
    }
    Ok(())
}

fn interpreter(runtime: &str) -> Result<&'static str, String> {
    match runtime {
        "node" => Ok("node"),
        "python" => Ok("python3"),
        "bun" => Ok("bun"),
        other => Err(format!(
            "runtime \"{other}\" is not one of node, python, bun"
        )),
    }
}

/// The script package.json names: `main`, else its (first) `bin`.
fn package_main(app: &Path) -> Option<String> {
    let text = std::fs::read_to_string(app.join("package.json")).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    json.get("main")
        .and_then(|m| m.as_str())
        .or_else(|| match json.get("bin") {
            Some(serde_json::Value::String(s)) => Some(s.as_str()),
            Some(serde_json::Value::Object(m)) => m.values().find_map(|v| v.as_str()),
            _ => None,
        })
        .map(String::from)
}

/// The runtime a service runs on, when it is known: the one given, the one its package
/// source implies, or the one its files tell (not for a `command` of its own).
pub fn runtime(app: &Path, source: &DeploySource, config: &DeployConfig) -> Option<String> {
    if let Some(r) = &config.runtime {
        return Some(r.clone());
    }
    match source {
        DeploySource::Npm { .. } => Some("node".into()),
        DeploySource::Pypi { .. } => Some("python".into()),
        _ if !config.command.is_empty() => None,
        _ => entry_file(app).map(|(r, _)| r.to_string()),
    }
}

/// The runtime and the file a service's files start with, in the README's order.
fn entry_file(app: &Path) -> Option<(&'static str, String)> {
    package_main(app).map(|m| ("node", m)).or_else(|| {
        [
            ("python", "server.py"),
            ("python", "main.py"),
            ("node", "index.js"),
            ("node", "server.js"),
            ("node", "main.js"),
            ("bun", "index.ts"),
        ]
        .into_iter()
        .find(|(_, f)| app.join(f).is_file())
        .map(|(r, f)| (r, f.to_string()))
    })
}

/// How to start the service, run in its code directory: `config.command`; for a package,
/// `npx -y PKG` / `uvx --native-tls PKG`; else the runtime (given, or told by the files) with the entry
/// file found in this order: package.json `main`/`bin`, `server.py`, `main.py`, `index.js`,
/// `server.js`, `main.js`, `index.ts`.
pub fn entry_command(
    app: &Path,
    source: &DeploySource,
    config: &DeployConfig,
) -> Result<Vec<String>, String> {
    if !config.command.is_empty() {
        return Ok(config.command.clone());
    }
    match source {
        DeploySource::Npm { package } => {
            return Ok(vec!["npx".into(), "-y".into(), package.clone()]);
        }
        // `--native-tls`: the host's CA certificates (the sandbox's /etc/ssl/certs), not the
        // ones built into uv, so a proxy the host trusts is trusted here too.
        DeploySource::Pypi { package } => {
            return Ok(vec!["uvx".into(), "--native-tls".into(), package.clone()]);
        }
        _ => {}
    }
    let found = entry_file(app).ok_or(
        "cannot tell how to start this service: give config.command, or include a package.json with \"main\", a server.py or an index.js at the top",
    )?;
    let runtime = config.runtime.as_deref().unwrap_or(found.0);
    Ok(vec![interpreter(runtime)?.to_string(), found.1])
}

/// A package name `npx` / `uvx` may be given: no option, no path, no URL.
pub fn check_package(package: &str) -> Result<(), String> {
    let ok = !package.is_empty()
        && package.len() <= 214
        && !package.starts_with('-')
        && !package.contains("..")
        && !package.contains("://")
        && package.chars().all(|c| {
            c.is_ascii_alphanumeric()
                || matches!(c, '@' | '/' | '-' | '_' | '.' | '=' | '<' | '>' | '~' | '^')
        });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "package \"{}\" is not a plain package name (with an optional version)",
            package.chars().take(100).collect::<String>()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_and_helper_git_urls_are_refused() {
        for bad in [
            "file:///etc",
            "/srv/repo",
            "../repo",
            "ext::sh -c touch% /tmp/x",
            "--upload-pack=touch /tmp/x",
            "fd::3",
        ] {
            assert!(check_git_url(bad).is_err(), "{bad}");
        }
        assert!(check_git_url("https://github.com/a/b").is_ok());
        assert!(check_git_url("ssh://git@github.com/a/b").is_ok());
        assert!(check_git_url("https://github.com/a/b@v2").is_ok());
    }

    /// A token in the URL would sit in the broker's data and in `ps`: refused, and the error
    /// does not repeat it.
    #[test]
    fn git_urls_with_credentials_are_refused_without_echoing_them() {
        for bad in [
            "https://ghp_0123456789secret@github.com/a/b",
            "https://bob:ghp_0123456789secret@github.com/a/b",
            "http://bob:ghp_0123456789secret@example.com:8080/r.git",
            "git://x:ghp_0123456789secret@example.com/r",
            "ssh://git:ghp_0123456789secret@github.com/a/b",
        ] {
            let e = check_git_url(bad).expect_err(bad);
            assert!(e.contains("credentials"), "{e}");
            assert!(!e.contains("ghp_0123456789secret"), "{e}");
        }
    }

    #[test]
    fn the_entry_is_found_from_the_files() {
        let dir = tempfile::tempdir().unwrap();
        let src = DeploySource::Zip {
            file_id: "f".into(),
        };
        let cfg = DeployConfig::default();
        assert!(entry_command(dir.path(), &src, &cfg).is_err());
        std::fs::write(dir.path().join("server.py"), "").unwrap();
        assert_eq!(
            entry_command(dir.path(), &src, &cfg).unwrap(),
            ["python3", "server.py"]
        );
        std::fs::write(dir.path().join("package.json"), r#"{"main":"dist/a.js"}"#).unwrap();
        assert_eq!(
            entry_command(dir.path(), &src, &cfg).unwrap(),
            ["node", "dist/a.js"]
        );
    }
}
