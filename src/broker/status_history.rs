//! What each peer's status was over the last hours (PROTOCOL.md §5.3), for timelines: a
//! bounded, in-memory record per mesh of every status change and every session that came or
//! went. Lost on restart, which a timeline of the last hours can live with; nothing here is
//! secret from the mesh's members, who see the statuses live anyway.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use super::presence::Peer;
use super::router;
use super::state::Broker;
use crate::protocol::messages::StatusChange;
use crate::protocol::time;

/// How far back the history goes.
pub const KEEP_MS: i64 = 6 * 60 * 60 * 1000;
/// Most changes kept per member (a flapping session cannot push the others out).
pub const PER_MEMBER: usize = 1000;

/// `offline` in a change: the session's connection closed.
pub const OFFLINE: &str = "offline";

/// `peer` is now `status` by `source`: recorded, and told to the mesh's dashboards as the
/// system event `peer_status` (PROTOCOL.md §5.3) so their timelines move as it happens. The
/// sessions are not told: a status change is no news worth a model's context.
pub fn changed(broker: &Broker, peer: &Peer, status: &str, source: &str, at_ms: i64) {
    let Some(change) = broker.status_history.record(peer, status, source, at_ms) else {
        return;
    };
    let data = serde_json::to_value(&change).unwrap_or_default();
    let frame = router::system_event(&peer.mesh_id, PEER_STATUS, data);
    router::send_to_observers(broker, &peer.mesh_id, &frame);
}

/// The system event that carries a [`StatusChange`] to observers.
pub const PEER_STATUS: &str = "peer_status";

/// Changes by mesh, then by member, oldest first.
#[derive(Default)]
pub struct StatusHistory {
    meshes: Mutex<HashMap<String, HashMap<String, VecDeque<StatusChange>>>>,
}

impl StatusHistory {
    /// Records that `peer` is now `status` (`idle`, `working`, `dnd` or [`OFFLINE`]) by
    /// `source`. Tool connections (control-plane, observers) have no status worth a line.
    /// Returns the change as recorded, if it was.
    pub fn record(
        &self,
        peer: &Peer,
        status: &str,
        source: &str,
        at_ms: i64,
    ) -> Option<StatusChange> {
        if peer.control_plane || peer.observer {
            return None;
        }
        let change = StatusChange {
            at: time::iso(at_ms),
            at_ms,
            presence_id: peer.presence_id.clone(),
            name: peer.shown_name(),
            member_pubkey: peer.member_pubkey.to_hex(),
            status: status.to_string(),
            source: source.to_string(),
        };
        let mut meshes = self.meshes.lock().unwrap_or_else(|p| p.into_inner());
        let member = meshes
            .entry(peer.mesh_id.clone())
            .or_default()
            .entry(peer.member_id.clone())
            .or_default();
        member.push_back(change.clone());
        let over = member.len().saturating_sub(PER_MEMBER);
        member.drain(..over);
        while member.front().is_some_and(|c| c.at_ms < at_ms - KEEP_MS) {
            member.pop_front();
        }
        Some(change)
    }

    /// Every change in `mesh_id` since `since_ms` (at most [`KEEP_MS`] ago), oldest first.
    pub fn since(&self, mesh_id: &str, since_ms: i64, now_ms: i64) -> Vec<StatusChange> {
        let from = since_ms.max(now_ms - KEEP_MS);
        let meshes = self.meshes.lock().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<StatusChange> = meshes
            .get(mesh_id)
            .into_iter()
            .flat_map(|members| members.values())
            .flatten()
            .filter(|c| c.at_ms >= from)
            .cloned()
            .collect();
        out.sort_by_key(|c| c.at_ms);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::super::presence::PeerKind;
    use super::super::presence::tests::conn;
    use super::*;
    use crate::protocol::Pubkey;
    use crate::protocol::messages::PeerInfo;
    use crate::store::MemberRole;

    /// A session (a plain member hello is a tool's connection, which is not recorded).
    fn session(name: &str, key: u8) -> Peer {
        let info = PeerInfo {
            peer_role: Some("session".into()),
            ..Default::default()
        };
        let member = format!("member-{name}");
        let presence = format!("presence-of-{name}");
        let (kind, role) = (PeerKind::Member, MemberRole::Member);
        let key = Pubkey([key; 32]);
        Peer::new(
            presence,
            "mesh".into(),
            member,
            key,
            None,
            kind,
            role,
            name.into(),
            info,
            Vec::new(),
            conn(0),
        )
    }

    #[test]
    fn keeps_six_hours_and_a_bounded_number_per_member() {
        let history = StatusHistory::default();
        let alice = session("alice", 1);
        let bob = session("bob", 2);
        let now = 100 * KEEP_MS;
        history.record(&bob, "working", "hook", now - KEEP_MS - 1);
        history.record(&bob, "idle", "manual", now - 10);
        for i in 0..(PER_MEMBER as i64 + 50) {
            history.record(&alice, "working", "hook", now - 5_000 + i);
        }
        let all = history.since(&alice.mesh_id, i64::MIN, now);
        let bobs: Vec<_> = all
            .iter()
            .filter(|c| c.presence_id == bob.presence_id)
            .collect();
        assert_eq!(bobs.len(), 1, "older than 6 h is gone: {bobs:?}");
        assert_eq!(bobs[0].status, "idle");
        let alices = all.iter().filter(|c| c.presence_id == alice.presence_id);
        assert_eq!(alices.count(), PER_MEMBER);
        assert!(
            all.windows(2).all(|w| w[0].at_ms <= w[1].at_ms),
            "oldest first"
        );
        assert!(history.since("another-mesh", i64::MIN, now).is_empty());
        // A tool's connection (a plain member hello) has no status line.
        let tool = Peer::new(
            "cli".into(),
            "mesh".into(),
            "m".into(),
            Pubkey([3; 32]),
            None,
            PeerKind::Member,
            MemberRole::Member,
            "cli".into(),
            PeerInfo::default(),
            Vec::new(),
            conn(0),
        );
        history.record(&tool, "working", "manual", now);
        assert_eq!(history.since("mesh", i64::MIN, now).len(), all.len());
    }
}
