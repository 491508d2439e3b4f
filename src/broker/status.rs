//! The status engine (PROTOCOL.md §5.1): sources ranked hook > manual > jsonl, a working TTL,
//! and hook reports that arrive before their peer connects.

use std::collections::HashMap;
use std::sync::Mutex;

/// How long `working` lasts without a fresh report.
pub const WORKING_TTL_MS: i64 = 10 * 60 * 1000;
/// A recorded source counts as fresh this long.
pub const SOURCE_FRESH_MS: i64 = 60_000;
/// A hook report for a peer that has not connected yet is kept this long.
pub const PENDING_TTL_MS: i64 = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Idle,
    Working,
    Dnd,
}

impl Status {
    pub fn parse(s: &str) -> Option<Status> {
        match s {
            "idle" => Some(Status::Idle),
            "working" => Some(Status::Working),
            "dnd" => Some(Status::Dnd),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Idle => "idle",
            Status::Working => "working",
            Status::Dnd => "dnd",
        }
    }
}

/// Where a status report came from; a higher source wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum StatusSource {
    Jsonl = 1,
    Manual = 2,
    Hook = 3,
}

impl StatusSource {
    pub fn parse(s: &str) -> Option<StatusSource> {
        match s {
            "jsonl" => Some(StatusSource::Jsonl),
            "manual" => Some(StatusSource::Manual),
            "hook" => Some(StatusSource::Hook),
            _ => None,
        }
    }
}

/// A peer's current status and where it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusState {
    pub status: Status,
    pub source: StatusSource,
    pub at_ms: i64,
}

impl StatusState {
    pub fn new(now_ms: i64) -> Self {
        StatusState {
            status: Status::Idle,
            source: StatusSource::Jsonl,
            at_ms: now_ms,
        }
    }

    /// Applies a report; true when the status changed.
    pub fn report(&mut self, status: Status, source: StatusSource, now_ms: i64) -> bool {
        if source == StatusSource::Hook && self.status == Status::Dnd && status != Status::Dnd {
            return false; // a hook never clears dnd
        }
        if status != self.status {
            *self = StatusState {
                status,
                source,
                at_ms: now_ms,
            };
            return true;
        }
        let fresh = now_ms - self.at_ms < SOURCE_FRESH_MS;
        if source >= self.source || !fresh {
            self.source = source;
        }
        self.at_ms = now_ms;
        false
    }

    /// Reverts a stale `working` to `idle`; true when it did.
    pub fn expire(&mut self, now_ms: i64) -> bool {
        if self.status == Status::Working && now_ms - self.at_ms > WORKING_TTL_MS {
            self.status = Status::Idle;
            self.at_ms = now_ms;
            return true;
        }
        false
    }

    /// Whether a message of this priority may be pushed now (PROTOCOL.md §4.5).
    pub fn admits(&self, priority: crate::store::Priority) -> bool {
        self.status == Status::Idle || priority == crate::store::Priority::Now
    }
}

/// Identifies the Claude Code session a hook speaks for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HookTarget {
    pub mesh_id: String,
    pub member_id: String,
    pub session_id: Option<String>,
    pub pid: Option<u32>,
    pub cwd: String,
}

/// Hook reports waiting for their peer to connect.
#[derive(Default)]
pub struct PendingStatuses {
    entries: Mutex<HashMap<HookTarget, (Status, i64)>>,
}

/// Hook reports kept waiting at most, per member and in all.
const PENDING_PER_MEMBER: usize = 32;
const PENDING_TOTAL: usize = 4096;

/// What a waiting report keeps of a peer-chosen string (a `cwd` may be 64 kB): its digest.
fn digest(s: &str) -> String {
    hex::encode(crate::crypto::sha256(s.as_bytes()))
}

impl PendingStatuses {
    /// Keeps a report for a peer not connected yet; bounded per member and in all, the oldest
    /// reports giving way.
    pub fn put(&self, target: HookTarget, status: Status, now_ms: i64) {
        let target = HookTarget {
            session_id: target.session_id.as_deref().map(digest),
            cwd: digest(&target.cwd),
            ..target
        };
        let mut e = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        e.retain(|_, (_, at)| now_ms - *at < PENDING_TTL_MS);
        let same_member =
            |t: &HookTarget| t.mesh_id == target.mesh_id && t.member_id == target.member_id;
        for (bound, mine) in [(PENDING_PER_MEMBER, true), (PENDING_TOTAL, false)] {
            let held = e.keys().filter(|t| !mine || same_member(t)).count();
            if held >= bound
                && let Some(oldest) = e
                    .iter()
                    .filter(|(t, _)| !mine || same_member(t))
                    .min_by_key(|(_, (_, at))| *at)
                    .map(|(t, _)| t.clone())
            {
                e.remove(&oldest);
            }
        }
        e.insert(target, (status, now_ms));
    }

    /// Takes a fresh report matching a peer that just connected.
    pub fn take(
        &self,
        mesh_id: &str,
        member_id: &str,
        session_id: &str,
        pid: u32,
        cwd: &str,
        now_ms: i64,
    ) -> Option<Status> {
        let (session_id, cwd) = (digest(session_id), digest(cwd));
        let mut e = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        e.retain(|_, (_, at)| now_ms - *at < PENDING_TTL_MS);
        let key = e
            .keys()
            .find(|t| {
                t.mesh_id == mesh_id
                    && t.member_id == member_id
                    && (t.session_id.as_deref() == Some(session_id.as_str())
                        || (t.session_id.is_none() && t.pid == Some(pid))
                        || (t.session_id.is_none() && t.pid.is_none() && t.cwd == cwd))
            })
            .cloned()?;
        e.remove(&key).map(|(s, _)| s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Priority;

    #[test]
    fn higher_sources_win_and_hooks_never_clear_dnd() {
        let mut s = StatusState::new(0);
        assert!(s.report(Status::Working, StatusSource::Hook, 1_000));
        // same status from a lower source while the hook is fresh: source kept
        assert!(!s.report(Status::Working, StatusSource::Jsonl, 2_000));
        assert_eq!(s.source, StatusSource::Hook);
        // ...and once the hook is stale the lower source takes over
        assert!(!s.report(
            Status::Working,
            StatusSource::Jsonl,
            2_000 + SOURCE_FRESH_MS + 1
        ));
        assert_eq!(s.source, StatusSource::Jsonl);
        assert!(s.report(Status::Dnd, StatusSource::Manual, 100_000));
        assert!(!s.report(Status::Idle, StatusSource::Hook, 100_001));
        assert_eq!(s.status, Status::Dnd);
        assert!(s.report(Status::Idle, StatusSource::Manual, 100_002));
    }

    #[test]
    fn working_expires_and_gates_priorities() {
        let mut s = StatusState::new(0);
        s.report(Status::Working, StatusSource::Manual, 0);
        assert!(s.admits(Priority::Now));
        assert!(!s.admits(Priority::Next));
        assert!(!s.expire(WORKING_TTL_MS));
        assert!(s.expire(WORKING_TTL_MS + 1));
        assert!(s.admits(Priority::Low));
    }
}
