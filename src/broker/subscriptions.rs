//! Who listens to which stream right now. Streams themselves are stored; subscriptions are
//! live-only: they belong to presences and end with them (a quick reconnect inside the
//! presence lease keeps them).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use super::presence::{Peer, Presence};

#[derive(Default)]
pub struct Subscriptions {
    /// (mesh_id, stream name) → presence ids.
    streams: Mutex<HashMap<(String, String), HashSet<String>>>,
}

impl Subscriptions {
    fn lock(&self) -> MutexGuard<'_, HashMap<(String, String), HashSet<String>>> {
        self.streams.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn subscribe(&self, peer: &Peer, stream: &str) {
        self.lock()
            .entry((peer.mesh_id.clone(), stream.to_string()))
            .or_default()
            .insert(peer.presence_id.clone());
    }

    pub fn unsubscribe(&self, peer: &Peer, stream: &str) {
        let mut streams = self.lock();
        let key = (peer.mesh_id.clone(), stream.to_string());
        if let Some(set) = streams.get_mut(&key) {
            set.remove(&peer.presence_id);
            if set.is_empty() {
                streams.remove(&key);
            }
        }
    }

    /// The stream's subscribers that still have a presence; forgets those that are gone.
    pub fn subscribers(&self, presence: &Presence, mesh_id: &str, stream: &str) -> Vec<Arc<Peer>> {
        let peers = presence.peers(mesh_id);
        let mut streams = self.lock();
        let key = (mesh_id.to_string(), stream.to_string());
        let Some(set) = streams.get_mut(&key) else {
            return Vec::new();
        };
        set.retain(|id| peers.iter().any(|p| &p.presence_id == id));
        let out = peers
            .into_iter()
            .filter(|p| set.contains(&p.presence_id))
            .collect();
        if set.is_empty() {
            streams.remove(&key);
        }
        out
    }
}
