//! Which Claude Code session this MCP server serves: its session key (one per session, kept
//! across restarts of the server within that session), its peer description, and its status as
//! read from the session transcript.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::crypto::SignKeyPair;
use crate::identity::{ConfigDir, IdentityError, write_private};
use crate::protocol::messages::{GroupRef, PeerInfo};
use crate::protocol::time;

/// Session key files older than this are removed.
const SESSION_FILE_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// A transcript written within this long means the session is working.
const ACTIVE_WINDOW: Duration = Duration::from_secs(20);

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SessionFile {
    session_id: String,
    secret_key: String,
    created_at: String,
}

/// The identity of this agent session.
pub struct Session {
    pub id: String,
    pub key: SignKeyPair,
    /// The Claude Code process (our parent).
    pub claude_pid: u32,
}

/// `CLAUDEMESH_SESSION_ID` (set by `claudemesh launch`), else one derived from the parent
/// process and its start time, so a restarted MCP server in the same Claude window keeps its
/// key while a new window gets a new one.
pub fn session_id() -> (String, u32) {
    let parent = std::os::unix::process::parent_id();
    if let Ok(id) = std::env::var("CLAUDEMESH_SESSION_ID")
        && !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return (id, parent);
    }
    let started = std::fs::read_to_string(format!("/proc/{parent}/stat"))
        .ok()
        .and_then(|s| {
            let rest = s.get(s.rfind(')')? + 2..)?.to_string();
            rest.split_whitespace().nth(19).map(str::to_string)
        })
        .unwrap_or_default();
    (format!("cc-{parent}-{started}"), parent)
}

impl Session {
    /// Loads this session's key, or makes and saves one.
    pub fn load_or_create(dir: &ConfigDir) -> Result<Session, IdentityError> {
        let (id, claude_pid) = session_id();
        let sessions = dir.path.join("sessions");
        prune(&sessions);
        let path = sessions.join(format!("{id}.json"));
        if let Ok(text) = std::fs::read_to_string(&path)
            && let Ok(file) = serde_json::from_str::<SessionFile>(&text)
            && let Ok(key) = SignKeyPair::from_secret_hex(&file.secret_key)
        {
            return Ok(Session {
                id,
                key,
                claude_pid,
            });
        }
        let key = SignKeyPair::generate();
        let file = SessionFile {
            session_id: id.clone(),
            secret_key: key.secret_hex(),
            created_at: time::iso(time::now_ms()),
        };
        let text = serde_json::to_string_pretty(&file).unwrap_or_default();
        write_private(&sessions, &format!("{id}.json"), text.as_bytes())?;
        Ok(Session {
            id,
            key,
            claude_pid,
        })
    }

    /// How this session describes itself in hellos; `CLAUDEMESH_NAME`, `CLAUDEMESH_GROUPS`
    /// (`g1:lead,g2`) and `CLAUDEMESH_ROLE` come from `claudemesh launch`.
    pub fn peer_info(&self, default_name: &str) -> PeerInfo {
        let groups = std::env::var("CLAUDEMESH_GROUPS")
            .ok()
            .filter(|g| !g.trim().is_empty())
            .map(|g| parse_groups(&g));
        PeerInfo {
            display_name: Some(
                std::env::var("CLAUDEMESH_NAME")
                    .ok()
                    .filter(|n| !n.trim().is_empty())
                    .unwrap_or_else(|| default_name.to_string()),
            ),
            session_id: self.id.clone(),
            pid: self.claude_pid,
            cwd: std::env::current_dir()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            hostname: crate::cli::hostname(),
            peer_type: Some("ai".into()),
            channel: Some("claude-code".into()),
            model: std::env::var("ANTHROPIC_MODEL")
                .ok()
                .filter(|m| !m.is_empty()),
            groups,
            peer_role: None,
        }
    }
}

/// `g1:lead,g2` → groups with optional roles.
pub fn parse_groups(s: &str) -> Vec<GroupRef> {
    s.split(',')
        .map(str::trim)
        .filter(|g| !g.is_empty())
        .map(|g| match g.split_once(':') {
            Some((name, role)) => GroupRef {
                name: name.trim_start_matches('@').to_string(),
                role: Some(role.to_string()).filter(|r| !r.is_empty()),
            },
            None => GroupRef {
                name: g.trim_start_matches('@').to_string(),
                role: None,
            },
        })
        .collect()
}

fn prune(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let now = SystemTime::now();
    for e in entries.flatten() {
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|m| now.duration_since(m).ok())
            .is_some_and(|age| age > SESSION_FILE_TTL);
        if old {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Claude Code keeps each session's transcript as `~/.claude/projects/<cwd with / → ->/*.jsonl`.
/// The most recently written one in our working directory's project is ours.
pub fn transcript_dir(cwd: &Path) -> Option<PathBuf> {
    let home = std::env::var_os("CLAUDE_CONFIG_DIR")
        .map(PathBuf::from)
        .or_else(|| dirs::home_dir().map(|h| h.join(".claude")))?;
    Some(transcript_dir_in(&home, cwd))
}

/// The transcript directory of a session started in `cwd`, under Claude Code's config dir
/// `claude_dir`: `projects/` and `cwd` with every character but letters, digits and `-` made `-`.
pub fn transcript_dir_in(claude_dir: &Path, cwd: &Path) -> PathBuf {
    let mangled: String = cwd
        .display()
        .to_string()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    claude_dir.join("projects").join(mangled)
}

/// `Some(true)` while the newest transcript was written in the last few seconds, `Some(false)`
/// when it has been quiet, `None` when there is no transcript to read.
pub fn transcript_busy(dir: &Path) -> Option<bool> {
    let newest = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "jsonl"))
        .filter_map(|e| e.metadata().and_then(|m| m.modified()).ok())
        .max()?;
    let age = SystemTime::now().duration_since(newest).unwrap_or_default();
    Some(age < ACTIVE_WINDOW)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_parse_with_roles() {
        let g = parse_groups("backend:lead, @qa ,");
        assert_eq!(g.len(), 2);
        assert_eq!(g[0].role.as_deref(), Some("lead"));
        assert_eq!(g[1].name, "qa");
    }

    #[test]
    fn a_transcript_dir_is_the_cwd_with_every_other_character_made_a_dash() {
        assert_eq!(
            transcript_dir_in(Path::new("/c"), Path::new("/home/ann/my proj.v2-x")),
            Path::new("/c/projects/-home-ann-my-proj-v2-x")
        );
    }

    #[test]
    fn transcript_activity_follows_mtime() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(transcript_busy(dir.path()), None);
        std::fs::write(dir.path().join("s.jsonl"), "{}\n").unwrap();
        assert_eq!(transcript_busy(dir.path()), Some(true));
    }
}
