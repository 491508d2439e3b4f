//! Claude Code integration: install / uninstall (MCP server + status hooks), launch, doctor.

use std::io::Write;
use std::path::{Path, PathBuf};

use argh::{ArgsInfo, FromArgs};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::output::{self, outln};
use super::{CliError, CliResult, print_json};
use crate::client::http;
use crate::identity::{ConfigDir, sync_dir, write_private};
use crate::protocol::time;

/// The hooks `install` adds: Claude Code event → status.
const HOOKS: [(&str, &str); 2] = [("UserPromptSubmit", "working"), ("Stop", "idle")];

fn home() -> Result<PathBuf, CliError> {
    dirs::home_dir().ok_or_else(|| CliError::failed("cannot find the home directory ($HOME)"))
}

fn this_binary() -> Result<String, CliError> {
    std::env::current_exe()
        .and_then(|p| p.canonicalize())
        .map(|p| p.display().to_string())
        .map_err(|e| CliError::failed(format!("cannot find this program's path: {e}")))
}

/// What one file looked like before `install` touched it, so `uninstall` can put it back.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct FileRecord {
    path: String,
    /// The bytes before the first install (`None`: the file did not exist).
    original: Option<String>,
    /// sha256 of what install last wrote; when the file still matches, uninstall restores
    /// `original` byte for byte, otherwise it removes only our entries.
    written_sha256: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct InstallRecord {
    files: Vec<FileRecord>,
}

fn record_path() -> PathBuf {
    ConfigDir::from_env().path.join("install.json")
}

fn load_record() -> InstallRecord {
    std::fs::read_to_string(record_path())
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

fn read_json(path: &Path) -> Result<(Option<String>, Value), CliError> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let v: Value = serde_json::from_str(&text).map_err(|e| {
                CliError::failed(format!(
                    "{} is not valid JSON ({e}); fix it or move it away, then run this again",
                    path.display()
                ))
            })?;
            Ok((Some(text), v))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok((None, json!({}))),
        Err(e) => Err(CliError::failed(format!(
            "cannot read {}: {e}",
            path.display()
        ))),
    }
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default() + "\n"
}

fn sha(text: &str) -> String {
    hex::encode(crate::crypto::sha256(text.as_bytes()))
}

/// Replaces one of Claude Code's files atomically (temp file, fsync, rename, directory fsync),
/// keeping what its owner chose: its mode and owner stay; a file that did not exist is made
/// 0600 (these files hold other tools' API keys); a symlink (a dotfile manager's) stays a link
/// and the file it points to is replaced.
fn write_file(path: &Path, text: &str) -> Result<(), CliError> {
    let fail =
        |e: std::io::Error| CliError::failed(format!("cannot write {}: {e}", path.display()));
    let target = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let dir = target.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)
        .map_err(|e| CliError::failed(format!("cannot create {}: {e}", dir.display())))?;
    let before = std::fs::metadata(&target).ok();
    let tmp = dir.join(format!(
        ".{}.claudemesh.{}.tmp",
        target
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("file"),
        crate::protocol::ids::base62(8)
    ));
    let result = (|| {
        let mut file = create_owner_only(&tmp)?;
        file.write_all(text.as_bytes())?;
        if let Some(before) = &before {
            keep_mode_and_owner(&file, before)?;
        }
        file.sync_all()?;
        std::fs::rename(&tmp, &target)?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(fail)
}

#[cfg(unix)]
fn create_owner_only(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

#[cfg(not(unix))]
fn create_owner_only(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
}

/// Gives the replacement the original's owner (where we may: as root, or for a group we are
/// in) and then its mode (chown may clear set-id bits, so the mode comes second).
#[cfg(unix)]
fn keep_mode_and_owner(file: &std::fs::File, before: &std::fs::Metadata) -> std::io::Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let _ = std::os::unix::fs::fchown(file, Some(before.uid()), Some(before.gid()));
    file.set_permissions(std::fs::Permissions::from_mode(before.mode() & 0o7777))
}

#[cfg(not(unix))]
fn keep_mode_and_owner(file: &std::fs::File, before: &std::fs::Metadata) -> std::io::Result<()> {
    file.set_permissions(before.permissions())
}

/// A copy of a file as it was, 0600 in the 0700 config dir whatever the original's mode: it
/// may hold API keys, and only its owner restores it.
fn backup(name: &str, text: &str) -> Result<PathBuf, CliError> {
    let dir = ConfigDir::from_env().path.join("backups");
    let file = format!("{name}.{}", time::now_ms());
    write_private(&dir, &file, text.as_bytes())?;
    Ok(dir.join(file))
}

fn hook_command(bin: &str, status: &str) -> String {
    format!("{bin} hook {status}")
}

/// Adds our MCP server to a `~/.claude.json` value; true when something changed.
fn add_mcp(v: &mut Value, bin: &str) -> bool {
    let want = json!({"type": "stdio", "command": bin, "args": ["mcp"], "env": {}});
    if !v.is_object() {
        *v = json!({});
    }
    let servers = v
        .as_object_mut()
        .map(|o| o.entry("mcpServers").or_insert_with(|| json!({})))
        .filter(|s| s.is_object());
    let Some(servers) = servers.and_then(Value::as_object_mut) else {
        return false;
    };
    if servers.get("claudemesh") == Some(&want) {
        return false;
    }
    servers.insert("claudemesh".into(), want);
    true
}

/// Adds our status hooks to a `~/.claude/settings.json` value; true when something changed.
fn add_hooks(v: &mut Value, bin: &str) -> bool {
    if !v.is_object() {
        *v = json!({});
    }
    let mut changed = false;
    let Some(hooks) = v
        .as_object_mut()
        .map(|o| o.entry("hooks").or_insert_with(|| json!({})))
        .and_then(Value::as_object_mut)
    else {
        return false;
    };
    for (event, status) in HOOKS {
        let command = hook_command(bin, status);
        let list = hooks.entry(event).or_insert_with(|| json!([]));
        let Some(list) = list.as_array_mut() else {
            continue;
        };
        let present = list.iter().any(|m| {
            m["hooks"]
                .as_array()
                .is_some_and(|hs| hs.iter().any(|h| h["command"] == command))
        });
        if !present {
            list.push(json!({"hooks": [{"type": "command", "command": command, "timeout": 2}]}));
            changed = true;
        }
    }
    changed
}

/// Removes exactly our entries (used when a file changed since install), and the containers
/// our entries leave empty (`"mcpServers": {}`, a hook event with no matcher left).
fn remove_ours(v: &mut Value, bin: &str) {
    let Some(obj) = v.as_object_mut() else {
        return;
    };
    if let Some(servers) = obj.get_mut("mcpServers").and_then(Value::as_object_mut)
        && servers.remove("claudemesh").is_some()
        && servers.is_empty()
    {
        obj.remove("mcpServers");
    }
    if let Some(hooks) = obj.get_mut("hooks").and_then(Value::as_object_mut) {
        let events = hooks.len();
        for (event, status) in HOOKS {
            let command = hook_command(bin, status);
            if let Some(list) = hooks.get_mut(event).and_then(Value::as_array_mut) {
                let before = list.len();
                list.retain(|m| {
                    !m["hooks"]
                        .as_array()
                        .is_some_and(|hs| hs.iter().all(|h| h["command"] == command))
                });
                if list.len() < before && list.is_empty() {
                    hooks.remove(event);
                }
            }
        }
        if hooks.is_empty() && events > 0 {
            obj.remove("hooks");
        }
    }
}

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "install", help_triggers("-h", "--help"))]
#[argh(example = "claudemesh install")]
#[argh(example = "claudemesh install --no-hooks")]
/// register the claudemesh MCP server and status hooks with Claude Code
pub struct InstallCmd {
    /// do not add the status hooks
    #[argh(switch)]
    no_hooks: bool,
}

struct Target {
    path: PathBuf,
    edit: fn(&mut Value, &str) -> bool,
}

fn targets(with_hooks: bool) -> Result<Vec<Target>, CliError> {
    let home = home()?;
    let mut t = vec![Target {
        path: home.join(".claude.json"),
        edit: add_mcp,
    }];
    if with_hooks {
        t.push(Target {
            path: home.join(".claude").join("settings.json"),
            edit: add_hooks,
        });
    }
    Ok(t)
}

impl InstallCmd {
    pub fn run(self) -> CliResult {
        let bin = this_binary()?;
        let mut record = load_record();
        for target in targets(!self.no_hooks)? {
            let (text, mut value) = read_json(&target.path)?;
            if !(target.edit)(&mut value, &bin) {
                outln!("{}: already set up", target.path.display());
                continue;
            }
            let path_str = target.path.display().to_string();
            if let Some(text) = &text {
                let name = target
                    .path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or("file");
                let saved = backup(name, text)?;
                outln!("backed up {} to {}", target.path.display(), saved.display());
            }
            let new = pretty(&value);
            write_file(&target.path, &new)?;
            match record.files.iter_mut().find(|f| f.path == path_str) {
                Some(f) => f.written_sha256 = sha(&new),
                None => record.files.push(FileRecord {
                    path: path_str,
                    original: text,
                    written_sha256: sha(&new),
                }),
            }
            outln!("updated {}", target.path.display());
        }
        let dir = ConfigDir::from_env();
        write_private(
            &dir.path,
            "install.json",
            pretty(&serde_json::to_value(&record).unwrap_or_default()).as_bytes(),
        )?;
        outln!("claudemesh is installed for Claude Code; start it with `claudemesh launch`");
        Ok(())
    }
}

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "uninstall", help_triggers("-h", "--help"))]
#[argh(example = "claudemesh uninstall")]
/// remove exactly what `install` added to Claude Code's settings
pub struct UninstallCmd {}

impl UninstallCmd {
    pub fn run(self) -> CliResult {
        let bin = this_binary()?;
        let record = load_record();
        let mut paths: Vec<PathBuf> = record
            .files
            .iter()
            .map(|f| PathBuf::from(&f.path))
            .collect();
        for t in targets(true)? {
            if !paths.contains(&t.path) {
                paths.push(t.path);
            }
        }
        for path in paths {
            let path_str = path.display().to_string();
            let rec = record.files.iter().find(|f| f.path == path_str);
            let current = std::fs::read_to_string(&path).ok();
            match (rec, current) {
                (Some(rec), Some(now)) if sha(&now) == rec.written_sha256 => {
                    match &rec.original {
                        Some(orig) => write_file(&path, orig)?,
                        None => std::fs::remove_file(&path).map_err(|e| {
                            CliError::failed(format!("cannot remove {}: {e}", path.display()))
                        })?,
                    }
                    outln!("restored {}", path.display());
                }
                (_, Some(now)) => {
                    let Ok(mut v) = serde_json::from_str::<Value>(&now) else {
                        continue;
                    };
                    let before = v.clone();
                    remove_ours(&mut v, &bin);
                    if v != before {
                        backup(
                            path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
                            &now,
                        )?;
                        write_file(&path, &pretty(&v))?;
                        outln!("removed claudemesh from {}", path.display());
                    }
                }
                _ => {}
            }
        }
        let _ = std::fs::remove_file(record_path());
        outln!("claudemesh is uninstalled from Claude Code");
        Ok(())
    }
}

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "launch", help_triggers("-h", "--help"))]
#[argh(example = "claudemesh launch --name alice --groups backend:lead -y")]
/// start Claude Code connected to the mesh (arguments after -- go to claude)
pub struct LaunchCmd {
    /// your display name for this session
    #[argh(option)]
    name: Option<String>,
    /// your role for this session (e.g. reviewer)
    #[argh(option)]
    role: Option<String>,
    /// groups to join, e.g. backend:lead,qa
    #[argh(option)]
    groups: Option<String>,
    /// only this mesh (slug or id)
    #[argh(option)]
    mesh: Option<String>,
    /// join this invite first
    #[argh(option)]
    join: Option<String>,
    /// skip the question and let Claude run without permission prompts
    #[argh(switch, short = 'y')]
    yes: bool,
    /// no banner
    #[argh(switch)]
    quiet: bool,
    /// let the mesh list and read files under the directory Claude starts in (read only)
    #[argh(switch)]
    share_dir: bool,
    /// arguments passed to claude
    #[argh(positional, greedy)]
    claude_args: Vec<String>,
}

impl LaunchCmd {
    pub async fn run(self) -> CliResult {
        // Before the invite is claimed: a launch that cannot start should use nothing up.
        let root_refuses_skip = root_refuses_skip_permissions();
        if self.yes && root_refuses_skip {
            return Err(CliError::failed(
                "-y asks Claude Code for --dangerously-skip-permissions, which it refuses to run as root (\"cannot be used with root/sudo privileges\"): run claudemesh launch as a normal user, or leave out -y (Claude then asks before each tool); in a throw-away container, Claude Code accepts it as root with IS_SANDBOX=1 in the environment",
            ));
        }
        if let Some(url) = &self.join {
            super::mesh::join_invite(url, None, self.name.clone(), false).await?;
        }
        let config = ConfigDir::from_env().load()?;
        if config.meshes.is_empty() {
            return Err(CliError::failed(
                "no mesh joined yet: `claudemesh join <invite-url>` (or launch --join URL)",
            ));
        }
        if let Some(m) = &self.mesh {
            config.select(Some(m))?;
        }
        let skip_permissions =
            self.yes || (!self.quiet && !root_refuses_skip && confirm_skip_permissions());
        let bin = this_binary()?;
        let mut args: Vec<String> = vec![
            "--dangerously-load-development-channels".into(),
            "server:claudemesh".into(),
        ];
        let (_, claude_json) = read_json(&home()?.join(".claude.json"))?;
        if claude_json["mcpServers"]["claudemesh"].is_null() {
            // Not installed: hand Claude the server for this session only.
            let config = json!({"mcpServers": {"claudemesh": {"type": "stdio", "command": bin, "args": ["mcp"]}}});
            args.push("--mcp-config".into());
            args.push(config.to_string());
        }
        if skip_permissions {
            args.push("--dangerously-skip-permissions".into());
        }
        args.extend(self.claude_args.iter().cloned());
        let session_id = format!("cl-{}", crate::protocol::ids::new_id());
        let mut cmd = std::process::Command::new("claude");
        cmd.args(&args)
            .env("CLAUDEMESH_SESSION_ID", &session_id)
            .env("CLAUDEMESH_CHANNEL", "1")
            .env("CLAUDEMESH_CONFIG_DIR", ConfigDir::from_env().path);
        // The MCP server Claude starts shares this directory with the launch mesh only
        // (mcp/hub.rs); without --share-dir, nothing inherited may make it share.
        cmd.env_remove("CLAUDEMESH_SHARE_DIR")
            .env_remove("CLAUDEMESH_SHARE_MESH");
        let shared = match self.share_dir {
            true => Some(share_dir_for_launch(&config, self.mesh.as_deref())?),
            false => None,
        };
        if let Some((dir, mesh)) = &shared {
            cmd.env("CLAUDEMESH_SHARE_DIR", dir)
                .env("CLAUDEMESH_SHARE_MESH", mesh);
        }
        for (var, value) in [
            ("CLAUDEMESH_NAME", &self.name),
            ("CLAUDEMESH_ROLE", &self.role),
            ("CLAUDEMESH_GROUPS", &self.groups),
            ("CLAUDEMESH_MESH", &self.mesh),
        ] {
            if let Some(v) = value {
                cmd.env(var, v);
            }
        }
        if !self.quiet {
            let meshes: Vec<&str> = config.meshes.iter().map(|m| m.slug.as_str()).collect();
            output::error(&format!(
                "claudemesh: launching Claude Code as {} in {}",
                self.name.as_deref().unwrap_or("your member name"),
                meshes.join(", ")
            ));
        }
        if let Some((dir, mesh)) = &shared {
            output::error(&format!(
                "claudemesh: sharing {} (read only) with the members of mesh {mesh} holding the files capability and your grant",
                dir.display()
            ));
        }
        hand_over(cmd)
    }
}

/// The directory `launch --share-dir` shares (the current one, canonical) and the one mesh it
/// shares with, or why it must not be shared.
fn share_dir_for_launch(
    config: &crate::identity::Config,
    mesh: Option<&str>,
) -> Result<(PathBuf, String), CliError> {
    let mesh = config.select(mesh).map_err(|e| {
        CliError::failed(format!(
            "--share-dir shares with one mesh: name it with --mesh ({e})"
        ))
    })?;
    let dir = std::env::current_dir()
        .and_then(std::fs::canonicalize)
        .map_err(|e| CliError::failed(format!("--share-dir: the current directory: {e}")))?;
    let problem = crate::client::peer_files::root_problem(
        &dir,
        dirs::home_dir().as_deref(),
        &ConfigDir::from_env().path,
    );
    match problem {
        Some(problem) => Err(CliError::failed(format!("--share-dir: {problem}"))),
        None => Ok((dir, mesh.slug.clone())),
    }
}

/// Asks on the terminal; anything but yes keeps Claude's permission prompts.
/// True when Claude Code would refuse `--dangerously-skip-permissions`: it does as root,
/// unless `IS_SANDBOX=1` declares a throw-away container.
#[cfg(unix)]
fn root_refuses_skip_permissions() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    root && std::env::var_os("IS_SANDBOX").is_none_or(|v| v != "1")
}

#[cfg(not(unix))]
fn root_refuses_skip_permissions() -> bool {
    false
}

fn confirm_skip_permissions() -> bool {
    use std::io::{BufRead, IsTerminal};
    if !std::io::stdin().is_terminal() {
        return false;
    }
    output::prompt(
        "Let Claude run tools without asking (--dangerously-skip-permissions)? Peers can ask it to act. [y/N] ",
    );
    let mut line = String::new();
    let _ = std::io::stdin().lock().read_line(&mut line);
    matches!(line.trim(), "y" | "Y" | "yes")
}

/// Replaces this process with `claude`, so it owns the terminal exactly as if started directly.
#[cfg(unix)]
fn hand_over(mut cmd: std::process::Command) -> CliResult {
    use std::os::unix::process::CommandExt;
    let err = cmd.exec();
    Err(CliError::failed(format!(
        "cannot start `claude` ({err}); is Claude Code installed and on PATH?"
    )))
}

#[cfg(not(unix))]
fn hand_over(mut cmd: std::process::Command) -> CliResult {
    let status = cmd
        .status()
        .map_err(|e| CliError::failed(format!("cannot start `claude`: {e}")))?;
    std::process::exit(status.code().unwrap_or(1));
}

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "doctor", help_triggers("-h", "--help"))]
#[argh(example = "claudemesh doctor --json")]
/// check config, keys and permissions, broker reachability and the Claude Code install
pub struct DoctorCmd {
    /// print JSON
    #[argh(switch)]
    json: bool,
}

#[derive(Serialize)]
struct Check {
    name: String,
    ok: bool,
    detail: String,
}

impl DoctorCmd {
    pub async fn run(self) -> CliResult {
        let mut checks = Vec::new();
        let mut add = |name: &str, ok: bool, detail: String| {
            checks.push(Check {
                name: name.into(),
                ok,
                detail,
            })
        };
        let dir = ConfigDir::from_env();
        let config = dir.load();
        match &config {
            Ok(c) => add(
                "config",
                true,
                format!(
                    "{} ({} mesh(es))",
                    dir.config_file().display(),
                    c.meshes.len()
                ),
            ),
            Err(e) => add("config", false, e.to_string()),
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| {
                std::fs::metadata(p)
                    .ok()
                    .map(|m| m.permissions().mode() & 0o777)
            };
            if let Some(m) = mode(&dir.path) {
                add(
                    "config dir permissions",
                    m == 0o700,
                    format!("{:o} (want 700)", m),
                );
            }
            if let Some(m) = mode(&dir.config_file()) {
                add(
                    "config file permissions",
                    m == 0o600,
                    format!("{:o} (want 600)", m),
                );
            }
        }
        if let Ok(c) = &config {
            for m in &c.meshes {
                let keys = m.member_keys().and_then(|_| m.root_key());
                add(
                    &format!("keys for {}", m.slug),
                    keys.is_ok(),
                    match &keys {
                        Ok(_) => "member key and root key readable".into(),
                        Err(e) => e.to_string(),
                    },
                );
                let health = tokio::time::timeout(
                    std::time::Duration::from_secs(3),
                    http::request_with(
                        "GET",
                        &format!("{}/health", m.http_base()),
                        &[],
                        None,
                        &crate::client::tls::Trust::resolve(None, m.ca_file.as_deref()),
                    ),
                )
                .await;
                match health {
                    Ok(Ok(r)) if r.is_success() => add(
                        &format!("broker for {}", m.slug),
                        true,
                        m.broker_url.clone(),
                    ),
                    Ok(Ok(r)) => add(
                        &format!("broker for {}", m.slug),
                        false,
                        format!("{} answered HTTP {}", m.broker_url, r.status),
                    ),
                    Ok(Err(e)) => add(&format!("broker for {}", m.slug), false, e.to_string()),
                    Err(_) => add(
                        &format!("broker for {}", m.slug),
                        false,
                        format!("{} did not answer within 3 s", m.broker_url),
                    ),
                }
            }
        }
        if let Ok(home) = home() {
            let (_, cj) = read_json(&home.join(".claude.json")).unwrap_or((None, json!({})));
            let server = &cj["mcpServers"]["claudemesh"];
            let bin = this_binary().unwrap_or_default();
            add(
                "MCP server installed",
                server["command"] == bin.as_str(),
                if server.is_null() {
                    "not in ~/.claude.json: run `claudemesh install`".into()
                } else {
                    format!("{}", server["command"])
                },
            );
            let (_, settings) =
                read_json(&home.join(".claude/settings.json")).unwrap_or((None, json!({})));
            let mut v = settings.clone();
            let hooks_ok = !add_hooks(&mut v, &bin);
            add(
                "status hooks installed",
                hooks_ok,
                if hooks_ok {
                    "UserPromptSubmit and Stop".into()
                } else {
                    "missing: run `claudemesh install`".into()
                },
            );
        }
        let claude = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).any(|d| d.join("claude").is_file()))
            .unwrap_or(false);
        add(
            "claude on PATH",
            claude,
            if claude {
                "found".into()
            } else {
                "Claude Code's `claude` is not on PATH".into()
            },
        );
        let failed = checks.iter().filter(|c| !c.ok).count();
        if self.json {
            print_json(&json!({"ok": failed == 0, "checks": checks}));
        } else {
            for c in &checks {
                outln!(
                    "{} {:<28} {}",
                    if c.ok { "ok  " } else { "FAIL" },
                    c.name,
                    c.detail
                );
            }
        }
        if failed > 0 {
            return Err(CliError::failed(format!("{failed} check(s) failed")));
        }
        Ok(())
    }
}
