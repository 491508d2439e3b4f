//! `claudemesh hook idle|working|dnd`: called by Claude Code hooks. Reads the hook's JSON on
//! stdin and reports the status for every joined mesh. It never blocks Claude: everything is
//! bounded to one second and it always exits 0.

use std::time::Duration;

use argh::{ArgsInfo, FromArgs};
use serde_json::json;

use super::CliResult;
use crate::client::http;
use crate::client::tls::Trust;
use crate::identity::{ConfigDir, sign_request};

/// The whole hook, stdin included, finishes within this.
const BUDGET: Duration = Duration::from_millis(900);

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "hook", help_triggers("-h", "--help"))]
#[argh(example = "echo '{{}}' | claudemesh hook working")]
/// report a status from a Claude Code hook (reads the hook JSON on stdin)
pub struct HookCmd {
    /// idle, working or dnd
    #[argh(positional)]
    status: String,
}

impl HookCmd {
    pub async fn run(self) -> CliResult {
        if tokio::time::timeout(BUDGET, self.report()).await.is_err() {
            tracing::debug!("hook gave up after {BUDGET:?}");
        }
        Ok(())
    }

    async fn report(&self) -> Result<(), String> {
        if !matches!(self.status.as_str(), "idle" | "working" | "dnd") {
            return Err(format!("unknown status {}", self.status));
        }
        let input = read_stdin().await;
        let hook: serde_json::Value = serde_json::from_str(&input).unwrap_or(json!({}));
        let cwd = hook["cwd"]
            .as_str()
            .map(str::to_string)
            .or_else(|| {
                std::env::current_dir()
                    .ok()
                    .map(|p| p.display().to_string())
            })
            .unwrap_or_default();
        let body = json!({
            "cwd": cwd,
            "pid": claude_pid(),
            "status": self.status,
            "session_id": hook["session_id"].as_str(),
        })
        .to_string()
        .into_bytes();
        let config = ConfigDir::from_env().load().map_err(|e| e.to_string())?;
        let mut calls = Vec::new();
        for entry in config.meshes {
            let Ok(keys) = entry.member_keys() else {
                continue;
            };
            let body = body.clone();
            calls.push(tokio::spawn(async move {
                let path = "/hook/set-status";
                let headers = sign_request(&keys, &entry.mesh_id, "POST", path, &body);
                let url = format!("{}{path}", entry.http_base());
                let trust = Trust::resolve(None, entry.ca_file.as_deref());
                if let Err(e) = http::request_with("POST", &url, &headers, Some(body), &trust).await
                {
                    tracing::debug!("hook for {}: {e}", entry.slug);
                }
            }));
        }
        for c in calls {
            let _ = c.await;
        }
        Ok(())
    }
}

/// Claude Code's hook JSON, if any arrives quickly; an interactive stdin gives nothing.
async fn read_stdin() -> String {
    use std::io::IsTerminal;
    if std::io::stdin().is_terminal() {
        return String::new();
    }
    let read = tokio::task::spawn_blocking(|| {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut std::io::stdin().lock(), &mut s);
        s
    });
    tokio::time::timeout(Duration::from_millis(300), read)
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default()
}

/// The Claude Code process this hook runs under: the parent, or the grandparent when a shell
/// sits between. Our MCP server reports the same pid, so the broker can match them.
pub fn claude_pid() -> u32 {
    let parent = parent_of(std::process::id());
    match parent {
        Some(p)
            if process_name(p)
                .is_some_and(|n| matches!(n.as_str(), "sh" | "bash" | "zsh" | "dash")) =>
        {
            parent_of(p).unwrap_or(p)
        }
        Some(p) => p,
        None => 0,
    }
}

fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces; fields resume after its closing parenthesis.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

fn process_name(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|s| s.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_child_names_its_parent_and_its_program() {
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .expect("run sleep");
        let id = child.id();
        let found = (parent_of(id), process_name(id));
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(found, (Some(std::process::id()), Some("sleep".to_string())));
        assert_eq!(parent_of(u32::MAX), None);
        assert_eq!(process_name(u32::MAX), None);
    }
}
