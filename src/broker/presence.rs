//! Who is connected right now, per mesh. Rebuilt from connections; nothing here is stored.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::Message;

use super::connection::to_ws;
use crate::protocol::messages::{Envelope, PeerInfo};
use crate::protocol::{Encoding, Pubkey, ServerMessage};
use crate::store::MemberRole;

/// How a connection proved itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerKind {
    /// Member hello: the member key itself.
    Member,
    /// Session hello: a session key attested by the member key.
    Session,
}

/// Why and how a connection must end, told to its connection loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseOrder {
    pub code: u16,
    pub reason: String,
}

/// A proven, live connection.
pub struct Peer {
    pub conn_id: u64,
    pub presence_id: String,
    pub mesh_id: String,
    pub member_id: String,
    pub member_pubkey: Pubkey,
    /// The proven session key of a session hello.
    pub session_pubkey: Option<Pubkey>,
    pub kind: PeerKind,
    pub role: MemberRole,
    pub display_name: String,
    pub info: PeerInfo,
    pub connected_at_ms: i64,
    pub out: ConnHandle,
}

/// The write side of one connection: its frame queue and its close order.
#[derive(Clone)]
pub struct ConnHandle {
    pub encoding: Encoding,
    pub outbox: mpsc::Sender<Message>,
    pub closer: watch::Sender<Option<CloseOrder>>,
}

impl ConnHandle {
    /// Queues a frame. A connection whose queue is full does not read its socket; it is
    /// disconnected rather than allowed to grow the broker's memory.
    pub fn send(&self, frame: &Envelope<ServerMessage>) -> bool {
        match self.outbox.try_send(to_ws(frame, self.encoding)) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.close(1008, "slow_consumer");
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    /// Orders the connection closed with `code`; the first order wins.
    pub fn close(&self, code: u16, reason: &str) {
        self.closer.send_if_modified(|c| {
            if c.is_some() {
                return false;
            }
            *c = Some(CloseOrder {
                code,
                reason: reason.to_string(),
            });
            true
        });
    }
}

impl Peer {
    pub fn send(&self, frame: &Envelope<ServerMessage>) -> bool {
        self.out.send(frame)
    }

    pub fn close(&self, code: u16, reason: &str) {
        self.out.close(code, reason)
    }
}

#[derive(Default)]
pub struct Presence {
    meshes: Mutex<HashMap<String, HashMap<u64, Arc<Peer>>>>,
    next_conn_id: AtomicU64,
}

impl Presence {
    pub fn next_conn_id(&self) -> u64 {
        self.next_conn_id.fetch_add(1, Ordering::Relaxed) + 1
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, HashMap<u64, Arc<Peer>>>> {
        self.meshes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Live connections in a mesh.
    pub fn count(&self, mesh_id: &str) -> usize {
        self.lock().get(mesh_id).map_or(0, HashMap::len)
    }

    /// Adds a peer, if the mesh still has room. A session hello with the session key of a live
    /// connection takes it over: the old one is returned so it can be closed.
    pub fn register(&self, peer: Arc<Peer>, capacity: usize) -> Result<Option<Arc<Peer>>, ()> {
        let mut meshes = self.lock();
        let peers = meshes.entry(peer.mesh_id.clone()).or_default();
        let replaced = match (peer.kind, peer.session_pubkey) {
            (PeerKind::Session, Some(key)) => {
                let old = peers
                    .values()
                    .find(|p| p.kind == PeerKind::Session && p.session_pubkey == Some(key))
                    .map(|p| p.conn_id);
                old.and_then(|id| peers.remove(&id))
            }
            _ => None,
        };
        if replaced.is_none() && peers.len() >= capacity {
            return Err(());
        }
        peers.insert(peer.conn_id, peer);
        Ok(replaced)
    }

    /// Removes a connection; true when it was still registered (not taken over).
    pub fn remove(&self, mesh_id: &str, conn_id: u64) -> bool {
        let mut meshes = self.lock();
        let Some(peers) = meshes.get_mut(mesh_id) else {
            return false;
        };
        let removed = peers.remove(&conn_id).is_some();
        if peers.is_empty() {
            meshes.remove(mesh_id);
        }
        removed
    }

    pub fn peers(&self, mesh_id: &str) -> Vec<Arc<Peer>> {
        self.lock()
            .get(mesh_id)
            .map(|p| p.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Members with at least one live connection other than `except`.
    pub fn online_members(&self, mesh_id: &str, except: u64) -> HashSet<String> {
        self.lock()
            .get(mesh_id)
            .map(|p| {
                p.values()
                    .filter(|peer| peer.conn_id != except)
                    .map(|peer| peer.member_id.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Closes every connection of a member (e.g. when it is revoked).
    pub fn close_member(&self, mesh_id: &str, member_id: &str, code: u16, reason: &str) {
        for peer in self.peers(mesh_id) {
            if peer.member_id == member_id {
                peer.close(code, reason);
            }
        }
    }

    pub fn total(&self) -> usize {
        self.lock().values().map(HashMap::len).sum()
    }
}
