//! The status engine (PROTOCOL.md §5.1): sources ranked hook > manual > jsonl, a working TTL,
//! and hook reports that arrive before their peer connects.

use std::collections::HashMap;
use std::sync::Mutex;

/// How long `working` lasts without a fresh report, unless the broker is told otherwise
/// (`--working-ttl`).
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
    pub fn as_str(self) -> &'static str {
        match self {
            StatusSource::Jsonl => "jsonl",
            StatusSource::Manual => "manual",
            StatusSource::Hook => "hook",
        }
    }

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

    /// Reverts a `working` older than `ttl_ms` to `idle`; true when it did. No one reported
    /// this `idle`, so it is attributed to the lowest source (`jsonl`, inferred): the source
    /// of the stale `working` (a hook, say) is not shown as having said it, and any report
    /// corrects it at once.
    pub fn expire(&mut self, now_ms: i64, ttl_ms: i64) -> bool {
        if self.status == Status::Working && now_ms - self.at_ms > ttl_ms {
            *self = StatusState::new(now_ms);
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
        assert!(!s.expire(WORKING_TTL_MS, WORKING_TTL_MS));
        assert!(s.expire(WORKING_TTL_MS + 1, WORKING_TTL_MS));
        assert!(s.admits(Priority::Low));
        // The idle is the broker's inference, not the manual report's.
        assert_eq!(s.source, StatusSource::Jsonl);
        assert_eq!(s.at_ms, WORKING_TTL_MS + 1);
        // ...so a fresh manual idle is recorded as manual at once.
        assert!(!s.report(Status::Idle, StatusSource::Manual, WORKING_TTL_MS + 2));
        assert_eq!(s.source, StatusSource::Manual);
    }

    #[test]
    fn statuses_and_sources_read_and_print_their_names() {
        for (name, status) in [
            ("idle", Status::Idle),
            ("working", Status::Working),
            ("dnd", Status::Dnd),
        ] {
            assert_eq!(Status::parse(name), Some(status));
            assert_eq!(status.as_str(), name);
        }
        assert_eq!(Status::parse("busy"), None);
        for (name, source) in [
            ("jsonl", StatusSource::Jsonl),
            ("manual", StatusSource::Manual),
            ("hook", StatusSource::Hook),
        ] {
            assert_eq!(StatusSource::parse(name), Some(source));
        }
        assert_eq!(StatusSource::parse("mcp"), None);
    }

    /// A real clock reading: times are differences from it, never from zero.
    const T: i64 = 1_764_633_600_000;

    /// The documented times (PROTOCOL.md §5.1), in plain milliseconds.
    #[test]
    fn working_lasts_ten_minutes_and_a_source_one_minute() {
        let mut s = StatusState::new(T);
        s.report(Status::Working, StatusSource::Hook, T);
        assert!(!s.expire(T + 600_000, WORKING_TTL_MS));
        assert!(s.expire(T + 600_001, WORKING_TTL_MS));
        assert_eq!(s.status, Status::Idle);
        // A hook's word stands against jsonl for a minute, then jsonl may take over.
        let mut s = StatusState::new(T);
        s.report(Status::Working, StatusSource::Hook, T);
        s.report(Status::Working, StatusSource::Jsonl, T + 59_999);
        assert_eq!(s.source, StatusSource::Hook);
        s.report(Status::Working, StatusSource::Jsonl, T + 59_999 + 60_000);
        assert_eq!(s.source, StatusSource::Jsonl);
        // A same-rank source refreshes it.
        s.report(Status::Working, StatusSource::Manual, T + 200_000);
        assert_eq!((s.source, s.at_ms), (StatusSource::Manual, T + 200_000));
        // Expiry only ever turns working into idle.
        let mut s = StatusState::new(T);
        s.report(Status::Dnd, StatusSource::Manual, T);
        assert!(!s.expire(T + 10 * WORKING_TTL_MS, WORKING_TTL_MS));
        assert_eq!(s.status, Status::Dnd);
    }

    #[test]
    fn busy_statuses_hold_all_but_now_and_idle_admits_all() {
        for busy in [Status::Working, Status::Dnd] {
            let mut s = StatusState::new(0);
            s.report(busy, StatusSource::Manual, 0);
            assert!(s.admits(Priority::Now), "{busy:?}");
            assert!(!s.admits(Priority::Next), "{busy:?}");
            assert!(!s.admits(Priority::Low), "{busy:?}");
        }
        let s = StatusState::new(0);
        for p in [Priority::Now, Priority::Next, Priority::Low] {
            assert!(s.admits(p));
        }
    }

    fn target(member: &str, session: Option<&str>, pid: Option<u32>, cwd: &str) -> HookTarget {
        HookTarget {
            mesh_id: "m".into(),
            member_id: member.into(),
            session_id: session.map(str::to_string),
            pid,
            cwd: cwd.into(),
        }
    }

    #[test]
    fn a_waiting_report_goes_to_the_session_it_names_once_and_only_while_fresh() {
        let p = PendingStatuses::default();
        let long_cwd = "/w/".repeat(20_000);
        p.put(target("a", Some("s1"), Some(7), "/x"), Status::Working, T);
        p.put(target("a", None, Some(8), "/y"), Status::Dnd, T);
        p.put(target("a", None, None, &long_cwd), Status::Idle, T);
        // By session id (pid and cwd do not matter then).
        assert_eq!(
            p.take("m", "a", "s1", 99, "/z", T + 1),
            Some(Status::Working)
        );
        assert_eq!(p.take("m", "a", "s1", 99, "/z", T + 1), None, "taken once");
        // Without a session id, by pid; without either, by cwd.
        assert_eq!(p.take("m", "a", "s9", 8, "/z", T + 1), Some(Status::Dnd));
        assert_eq!(
            p.take("m", "b", "s9", 1, &long_cwd, T + 1),
            None,
            "another member"
        );
        assert_eq!(
            p.take("m", "a", "s9", 1, &long_cwd, T + 1),
            Some(Status::Idle)
        );
        // Reports ten seconds old are gone, whether asked for or pushed out by a newer one.
        p.put(target("a", Some("s2"), None, "/x"), Status::Working, T);
        assert_eq!(p.take("m", "a", "s2", 1, "/x", T + 10_000), None);
        p.put(target("a", Some("s3"), None, "/x"), Status::Working, T);
        assert_eq!(
            p.take("m", "a", "s3", 1, "/x", T + 9_999),
            Some(Status::Working)
        );
        p.put(target("a", Some("s4"), None, "/x"), Status::Working, T);
        p.put(
            target("a", Some("s5"), None, "/x"),
            Status::Working,
            T + 9_999,
        );
        assert_eq!(p.entries.lock().unwrap().len(), 2);
        p.put(
            target("a", Some("s6"), None, "/x"),
            Status::Working,
            T + 10_000,
        );
        assert_eq!(p.entries.lock().unwrap().len(), 2, "s4 went at ten seconds");
    }

    #[test]
    fn waiting_reports_are_bounded_per_member_and_in_all_oldest_first() {
        let p = PendingStatuses::default();
        let per = PENDING_PER_MEMBER as i64;
        for i in 0..per + 1 {
            p.put(
                target("a", Some(&format!("s{i}")), None, "/"),
                Status::Working,
                i,
            );
        }
        assert_eq!(
            p.take("m", "a", "s0", 0, "/", per),
            None,
            "the oldest gave way"
        );
        assert_eq!(p.take("m", "a", "s1", 0, "/", per), Some(Status::Working));
        assert_eq!(
            p.take("m", "a", &format!("s{per}"), 0, "/", per),
            Some(Status::Working)
        );
        // Another member's reports do not count against this one's bound.
        p.put(target("b", Some("b0"), None, "/"), Status::Dnd, 0);
        for i in 0..per {
            p.put(
                target("a", Some(&format!("t{i}")), None, "/"),
                Status::Working,
                1,
            );
        }
        assert_eq!(p.take("m", "b", "b0", 0, "/", 2), Some(Status::Dnd));
        // In all: members each under their own bound still give way at the total.
        let p = PendingStatuses::default();
        for i in 0..PENDING_TOTAL as i64 + 1 {
            p.put(
                target(&format!("u{i}"), Some("s"), None, "/"),
                Status::Working,
                i,
            );
        }
        let now = PENDING_TOTAL as i64 + 1;
        assert_eq!(p.take("m", "u0", "s", 0, "/", now), None);
        assert_eq!(p.take("m", "u1", "s", 0, "/", now), Some(Status::Working));
        let total = p.entries.lock().unwrap().len();
        assert_eq!(total, PENDING_TOTAL - 1);
    }
}
