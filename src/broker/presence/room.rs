//! One mesh's presences, found by presence id, and by what a recipient key names (a member, a
//! session key) without a walk over the mesh: a send finds its recipients' presences in
//! constant time, however many peers the mesh has.

use std::sync::Arc;

use super::super::limits::LINGERING_SHARE;
use super::Peer;
use crate::HashMap;
use crate::protocol::Pubkey;
use crate::store::RecipientKey;

#[derive(Default)]
pub(super) struct Room {
    peers: HashMap<String, Arc<Peer>>,
    /// The same presences by member id, and by session key (proven or a label).
    by_member: HashMap<String, Vec<Arc<Peer>>>,
    by_session: HashMap<Pubkey, Vec<Arc<Peer>>>,
    observers: usize,
    /// The connection cap the room was last registered under (the broker's, fixed).
    pub capacity: usize,
}

/// Takes `peer` out of one index list, dropping the list once empty.
fn unlist<K: std::hash::Hash + Eq>(index: &mut HashMap<K, Vec<Arc<Peer>>>, key: &K, peer: &Peer) {
    if let Some(list) = index.get_mut(key) {
        list.retain(|p| p.presence_id != peer.presence_id);
        if list.is_empty() {
            index.remove(key);
        }
    }
}

impl Room {
    pub fn len(&self) -> usize {
        self.peers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }

    pub fn values(&self) -> impl Iterator<Item = &Arc<Peer>> {
        self.peers.values()
    }

    pub fn insert(&mut self, peer: Arc<Peer>) {
        if let Some(old) = self.peers.insert(peer.presence_id.clone(), peer.clone()) {
            self.unindex(&old);
        }
        self.by_member
            .entry(peer.member_id.clone())
            .or_default()
            .push(peer.clone());
        if let Some(session) = peer.session_pubkey {
            self.by_session
                .entry(session)
                .or_default()
                .push(peer.clone());
        }
        self.observers += usize::from(peer.observer);
    }

    pub fn remove(&mut self, presence_id: &str) -> Option<Arc<Peer>> {
        let peer = self.peers.remove(presence_id)?;
        self.unindex(&peer);
        Some(peer)
    }

    /// Keeps the presences `keep` selects; returns the others.
    pub fn retain(&mut self, mut keep: impl FnMut(&Peer) -> bool) -> Vec<Arc<Peer>> {
        let gone: Vec<String> = self
            .peers
            .values()
            .filter(|p| !keep(p))
            .map(|p| p.presence_id.clone())
            .collect();
        gone.iter().filter_map(|id| self.remove(id)).collect()
    }

    fn unindex(&mut self, peer: &Peer) {
        unlist(&mut self.by_member, &peer.member_id, peer);
        if let Some(session) = &peer.session_pubkey {
            unlist(&mut self.by_session, session, peer);
        }
        self.observers -= usize::from(peer.observer);
    }

    /// The presences `key` reaches (see `router::covers`).
    pub fn covering(&self, key: &RecipientKey) -> &[Arc<Peer>] {
        match key {
            RecipientKey::Member { member_id, .. } => {
                self.by_member.get(member_id).map_or(&[], Vec::as_slice)
            }
            RecipientKey::Session { session, .. } => self.speaking_with(session),
        }
    }

    /// The presences that speak with `session` (proven or a label).
    pub fn speaking_with(&self, session: &Pubkey) -> &[Arc<Peer>] {
        self.by_session.get(session).map_or(&[], Vec::as_slice)
    }

    pub fn has_observers(&self) -> bool {
        self.observers > 0
    }

    pub fn live_count(&self) -> usize {
        self.peers.values().filter(|p| p.is_live()).count()
    }

    /// Evicts the oldest presences in their lease beyond this room's share of them; returns
    /// the evicted.
    pub fn bound_lingering(&mut self) -> Vec<Arc<Peer>> {
        let max = (self.capacity / LINGERING_SHARE).max(1);
        let mut lingering: Vec<(i64, String)> = self
            .peers
            .values()
            .filter_map(|p| Some((p.state().offline_since_ms?, p.presence_id.clone())))
            .collect();
        if lingering.len() <= max {
            return Vec::new();
        }
        lingering.sort();
        let excess = lingering.len() - max;
        lingering
            .into_iter()
            .take(excess)
            .filter_map(|(_, id)| self.remove(&id))
            .collect()
    }
}
