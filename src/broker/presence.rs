//! Who is in each mesh right now. A presence outlives its socket by a 90 s lease so a quick
//! reconnect reattaches silently; nothing here is stored (members' groups and last-seen are).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;

use super::connection::{Outbox, Refused, encoded, to_ws};
use super::status::StatusState;
use crate::protocol::messages::{Envelope, GroupRef, PeerEntry, PeerInfo, Profile};
use crate::protocol::{Encoding, Pubkey, ServerMessage, codec, time};
use crate::store::{MemberRole, RecipientKey};
use crate::{HashMap, HashSet};

/// How long a presence outlives its socket.
pub const LEASE_MS: i64 = 90_000;

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

/// The write side of one connection: its frame queue and its close order.
#[derive(Clone)]
pub struct ConnHandle {
    pub conn_id: u64,
    pub encoding: Encoding,
    pub outbox: Outbox,
    pub closer: watch::Sender<Option<CloseOrder>>,
}

impl ConnHandle {
    /// Queues a frame. A connection whose queue is full (in bytes) does not read its socket;
    /// it is disconnected rather than allowed to grow the broker's memory.
    pub fn send(&self, frame: &Envelope<ServerMessage>) -> bool {
        let message = match (&frame.body, self.encoding) {
            // Acks (every `send` gets one) written without serde's byte-by-byte escaping, the
            // same bytes.
            (ServerMessage::Ack(ack), Encoding::Json) => encoded(
                codec::written(|out| ack.write_json(frame.req_id.as_deref(), out)),
                Encoding::Json,
            ),
            _ => to_ws(frame, self.encoding),
        };
        self.send_message(message)
    }

    /// [`ConnHandle::send`] of a frame already encoded for this connection's encoding.
    pub fn send_message(&self, message: Message) -> bool {
        match self.outbox.push(message) {
            Ok(()) => true,
            Err(Refused::Full) => {
                self.close(1008, "slow_consumer");
                false
            }
            Err(Refused::Closed) => false,
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

/// What changes about a presence while it lives.
pub struct PeerState {
    /// The live socket, or `None` while the lease runs.
    pub conn: Option<ConnHandle>,
    pub offline_since_ms: Option<i64>,
    pub status: StatusState,
    pub summary: Option<String>,
    pub groups: Vec<GroupRef>,
    pub visible: bool,
    /// The member's profile (issue 13: kept per member, loaded at hello).
    pub profile: Option<Profile>,
    /// What the client last reported with `set_stats`.
    pub reported: Option<crate::protocol::messages::ReportedStats>,
    /// Pushes in flight and how far the queue was walked (windowed by acknowledgements).
    pub delivery: super::router::Delivery,
    /// A control-plane connection gets pushes only once it asked (`drain`).
    pub subscribed: bool,
}

impl PeerState {
    /// The member asked for its messages to wait until it drains them (`messageMode: inbox`):
    /// no live pushes, as a status gate that admits nothing.
    pub fn holds_messages(&self) -> bool {
        self.profile
            .as_ref()
            .and_then(|p| p.message_mode.as_deref())
            == Some("inbox")
    }
}

/// One presence in a mesh.
pub struct Peer {
    pub presence_id: String,
    pub mesh_id: String,
    pub member_id: String,
    pub member_pubkey: Pubkey,
    /// The session key this presence is addressed by: proven by a session hello, or only a
    /// label in a member hello (see [`Peer::proven_session`]).
    pub session_pubkey: Option<Pubkey>,
    pub kind: PeerKind,
    pub role: MemberRole,
    pub control_plane: bool,
    /// `peerRole:"observer"` (a dashboard): hidden like a control-plane connection, hears
    /// events, never takes queued messages, gets mirror copies instead (PROTOCOL.md §3.1).
    pub observer: bool,
    pub display_name: String,
    pub info: PeerInfo,
    pub connected_at_ms: i64,
    /// Messages in and out and refusals, counted by the broker (`mesh_stats`).
    pub counters: super::stats::PeerCounters,
    state: Mutex<PeerState>,
    /// Set once when the member is revoked; never cleared.
    revoked: AtomicBool,
    /// [`Peer::recipient_keys`], made once with the presence (every push and acknowledgement
    /// asks).
    recipient_keys: Vec<String>,
    /// Held (shared) by every frame and queued step while it runs; revocation takes it
    /// exclusively, so nothing of this presence still runs once a revocation has it.
    authority: tokio::sync::RwLock<()>,
}

impl Peer {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        presence_id: String,
        mesh_id: String,
        member_id: String,
        member_pubkey: Pubkey,
        session_pubkey: Option<Pubkey>,
        kind: PeerKind,
        role: MemberRole,
        display_name: String,
        info: PeerInfo,
        groups: Vec<GroupRef>,
        conn: ConnHandle,
    ) -> Peer {
        let now = time::now_ms();
        let asked = info.peer_role.as_deref();
        let observer = asked == Some("observer");
        // As the original broker does, a member hello is a tool's connection (a CLI call, a
        // daemon), not a session, unless it says it is one.
        let control_plane = observer
            || match kind {
                PeerKind::Session => asked == Some("control-plane"),
                PeerKind::Member => !matches!(asked, Some("session" | "service")),
            };
        // Only a connection that calls itself control-plane (our CLI) waits for `drain`; the
        // original's member connections expect live pushes.
        let subscribed = asked != Some("control-plane");
        let mut recipient_keys = vec![
            RecipientKey::Member {
                mesh_id: mesh_id.clone(),
                member_id: member_id.clone(),
            }
            .encode(),
        ];
        if let Some(session) = session_pubkey {
            recipient_keys.push(
                RecipientKey::Session {
                    mesh_id: mesh_id.clone(),
                    session,
                }
                .encode(),
            );
        }
        Peer {
            presence_id,
            mesh_id,
            member_id,
            member_pubkey,
            session_pubkey,
            kind,
            role,
            control_plane,
            observer,
            display_name,
            info,
            connected_at_ms: now,
            counters: Default::default(),
            state: Mutex::new(PeerState {
                conn: Some(conn),
                offline_since_ms: None,
                status: StatusState::new(now),
                summary: None,
                groups,
                visible: true,
                profile: None,
                reported: None,
                delivery: Default::default(),
                subscribed,
            }),
            revoked: AtomicBool::new(false),
            recipient_keys,
            authority: tokio::sync::RwLock::new(()),
        }
    }

    pub fn state(&self) -> MutexGuard<'_, PeerState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The key this presence speaks and is addressed with: its session key, else the member key.
    pub fn pubkey(&self) -> Pubkey {
        self.session_pubkey.unwrap_or(self.member_pubkey)
    }

    /// Whether queued messages may be pushed to this presence now: never to an observer (it
    /// gets mirror copies), to a control-plane connection only once it asked (`drain`).
    pub fn takes_queued(&self, st: &PeerState) -> bool {
        !self.observer && (!self.control_plane || st.subscribed)
    }

    /// `control-plane`, `observer`, `session` or `service`, as `peers_list` names it.
    pub fn role_name(&self) -> &'static str {
        if self.observer {
            "observer"
        } else if self.control_plane {
            "control-plane"
        } else if self.info.peer_role.as_deref() == Some("service") {
            "service"
        } else {
            "session"
        }
    }

    /// Whether events (`peer_joined`, `state_change` …) are pushed to this presence as they
    /// happen: to sessions, and to the original's member connections (its daemon listens for
    /// them), not to our CLI's control-plane connections.
    pub fn hears_events(&self) -> bool {
        !self.control_plane || self.info.peer_role.as_deref() != Some("control-plane")
    }

    /// The session key a session hello proved. A member hello's `sessionPubkey` routes
    /// messages and names the sender, but proves nothing: file access and the record of known
    /// sessions go by this.
    pub fn proven_session(&self) -> Option<Pubkey> {
        self.session_pubkey
            .filter(|_| self.kind == PeerKind::Session)
    }

    /// The queues this presence drains: its member's, and its own session's.
    pub fn recipient_keys(&self) -> &[String] {
        &self.recipient_keys
    }

    /// Sends on the live connection, if any.
    pub fn send(&self, frame: &Envelope<ServerMessage>) -> bool {
        let conn = self.state().conn.clone();
        conn.is_some_and(|c| c.send(frame))
    }

    pub fn close(&self, code: u16, reason: &str) {
        if let Some(c) = self.state().conn.clone() {
            c.close(code, reason);
        }
    }

    /// Whether `viewer` sees this presence in peer lists, and counts its member as online: a
    /// visible session (a CLI's short control-plane connection is no session), or the
    /// viewer's own presence. `peers` and `members` both go by it, so they agree.
    pub fn shown_to(&self, viewer: &Peer) -> bool {
        self.presence_id == viewer.presence_id || (!self.control_plane && self.state().visible)
    }

    pub fn is_live(&self) -> bool {
        self.state().conn.is_some()
    }

    pub fn conn_id(&self) -> Option<u64> {
        self.state().conn.as_ref().map(|c| c.conn_id)
    }

    /// True when the presence is in group `name` or one of its subgroups (`name/…`).
    pub fn in_group(&self, name: &str) -> bool {
        in_group(&self.state().groups, name)
    }

    /// The name others see: the one the member set in its profile, else the hello's.
    pub fn shown_name(&self) -> String {
        self.state()
            .profile
            .as_ref()
            .and_then(|p| p.display_name.clone())
            .unwrap_or_else(|| self.display_name.clone())
    }

    /// The `peers_list` entry for this presence.
    pub fn entry(&self) -> PeerEntry {
        let st = self.state();
        let now = time::now_ms();
        PeerEntry {
            pubkey: self.pubkey().to_hex(),
            member_pubkey: self.member_pubkey.to_hex(),
            display_name: st
                .profile
                .as_ref()
                .and_then(|p| p.display_name.clone())
                .unwrap_or_else(|| self.display_name.clone()),
            status: st.status.status.as_str().into(),
            status_source: Some(st.status.source.as_str().into()),
            status_since: Some(time::iso(st.status.at_ms)),
            summary: st.summary.clone(),
            groups: st.groups.clone(),
            session_id: self.info.session_id.clone(),
            connected_at: time::iso(self.connected_at_ms),
            cwd: self.info.cwd.clone(),
            role: self.role_name().into(),
            peer_role: self.role_name().into(),
            hostname: self.info.hostname.clone(),
            peer_type: self.info.peer_type.clone(),
            channel: self.info.channel.clone(),
            model: self.info.model.clone(),
            visible: Some(st.visible),
            profile: st.profile.clone(),
            online: st.conn.is_some(),
            stats: Some(self.counters.snapshot(self.connected_at_ms, now)),
            reported: st.reported.clone(),
        }
    }
}

/// Group membership with subgroups: `@a` reaches `a` and `a/b`.
pub fn in_group(groups: &[GroupRef], name: &str) -> bool {
    groups.iter().any(|g| {
        g.name == name
            || (g.name.len() > name.len()
                && g.name.starts_with(name)
                && g.name.as_bytes()[name.len()] == b'/')
    })
}

/// Who is connecting, as far as finding an earlier presence of theirs goes.
pub struct Arrival<'a> {
    pub mesh_id: &'a str,
    pub member_id: &'a str,
    /// The proven session key of a session hello.
    pub session: Option<Pubkey>,
    /// The unproven `sessionPubkey` of a member hello, which must not be another member's.
    pub label: Option<Pubkey>,
    pub session_id: &'a str,
}

/// Why `register` refused a proven connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unregistered {
    /// The member was revoked (perhaps while its hello was being checked).
    Revoked,
    /// The mesh has no room.
    Full,
    /// A member hello's `sessionPubkey` is a key another member's presence goes by.
    KeyTaken,
}

/// What `register` did.
pub enum Registered {
    /// A new presence.
    New(Arc<Peer>),
    /// An existing presence got this connection back (reconnect inside the lease, or a session
    /// taking over its own key). `replaced` is the socket it displaced, if live.
    Reattached {
        peer: Arc<Peer>,
        replaced: Option<ConnHandle>,
    },
}

/// Removes the presences of `mesh_id` that `which` selects from `meshes`; returns them.
fn take_out(
    meshes: &mut HashMap<String, Room>,
    mesh_id: &str,
    which: impl Fn(&Peer) -> bool,
) -> Vec<Arc<Peer>> {
    let mut gone = Vec::new();
    if let Some(room) = meshes.get_mut(mesh_id) {
        gone = room.retain(|p| !which(p));
        if room.is_empty() {
            meshes.remove(mesh_id);
        }
    }
    gone
}

/// Evicted presences waiting for their `peer_left`; beyond this many only the newest are told.
const MAX_EVICTED_PENDING: usize = 1024;

#[derive(Default)]
pub struct Presence {
    meshes: Mutex<HashMap<String, Room>>,
    next_conn_id: AtomicU64,
    /// Presences evicted before their lease ran out, announced by the next lease sweep.
    evicted: Mutex<Vec<Arc<Peer>>>,
    /// (mesh, member) revoked since start; locked only while `meshes` is held, so a hello
    /// checked before a revocation cannot register after it.
    revoked: Mutex<HashSet<(String, String)>>,
    /// Which member each member-hello `sessionPubkey` (a label) belongs to, kept after its
    /// connection closes, so nobody else picks it up later (and with it what is still queued
    /// or scheduled for it). Locked only while `meshes` is held; at most [`MAX_LABELS`].
    labels: Mutex<HashMap<(String, Pubkey), Label>>,
}

/// Labels remembered at most; beyond it the longest unused are forgotten.
const MAX_LABELS: usize = 65_536;

fn remember_label(
    labels: &mut HashMap<(String, Pubkey), Label>,
    mesh_id: &str,
    key: Pubkey,
    member_id: &str,
) {
    static CLOCK: AtomicU64 = AtomicU64::new(0);
    let used_at = CLOCK.fetch_add(1, Ordering::Relaxed);
    if labels.len() >= MAX_LABELS && !labels.contains_key(&(mesh_id.to_string(), key)) {
        // Forget the longest unused eighth at once, so this scan is rare.
        let mut ages: Vec<u64> = labels.values().map(|l| l.used_at).collect();
        let cut = MAX_LABELS / 8;
        ages.select_nth_unstable(cut);
        let oldest = ages[cut];
        labels.retain(|_, l| l.used_at > oldest);
    }
    labels.insert(
        (mesh_id.to_string(), key),
        Label {
            member_id: member_id.to_string(),
            used_at,
        },
    );
}

struct Label {
    member_id: String,
    used_at: u64,
}

impl Presence {
    pub fn next_conn_id(&self) -> u64 {
        self.next_conn_id.fetch_add(1, Ordering::Relaxed) + 1
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Room>> {
        self.meshes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Live connections in a mesh: the hello's quick first check. `register` then counts
    /// presences in their lease too, knowing whether this hello takes one of them back.
    pub fn count(&self, mesh_id: &str) -> usize {
        self.lock().get(mesh_id).map_or(0, Room::live_count)
    }

    /// Registers a proven connection, if the mesh has room. A session hello with a known
    /// session key takes that presence over; a member hello with the `sessionId` of one of
    /// its member's presences in its lease reattaches to it. Otherwise `make` builds a new one.
    pub fn register(
        &self,
        who: Arrival<'_>,
        conn: ConnHandle,
        capacity: usize,
        make: impl FnOnce() -> Peer,
    ) -> Result<Registered, Unregistered> {
        let Arrival {
            mesh_id,
            member_id,
            session,
            label,
            session_id,
        } = who;
        let mut meshes = self.lock();
        if self.revoked_locked(mesh_id, member_id) {
            return Err(Unregistered::Revoked);
        }
        let room = meshes.entry(mesh_id.to_string()).or_default();
        room.capacity = capacity;
        let mut labels = self.labels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(key) = label {
            let held_by_other = labels
                .get(&(mesh_id.to_string(), key))
                .is_some_and(|l| l.member_id != member_id)
                || room
                    .values()
                    .any(|p| p.member_id != member_id && p.session_pubkey == Some(key));
            if held_by_other {
                return Err(Unregistered::KeyTaken);
            }
        }
        if let Some(key) = session {
            // A proven session key wins over anyone else's label of it: that label goes.
            labels.remove(&(mesh_id.to_string(), key));
            for p in room.values() {
                if p.kind == PeerKind::Member
                    && p.member_id != member_id
                    && p.session_pubkey == Some(key)
                {
                    p.close(1008, "bad_session_pubkey");
                }
            }
        }
        let existing = room
            .values()
            .find(|p| match session {
                Some(key) => p.kind == PeerKind::Session && p.session_pubkey == Some(key),
                None => {
                    p.kind == PeerKind::Member
                        && p.member_id == member_id
                        && !session_id.is_empty()
                        && p.info.session_id == session_id
                        && p.session_pubkey == label
                        && !p.control_plane
                        && !p.is_live()
                }
            })
            .cloned();
        if let Some(peer) = existing {
            // Already counted against the cap, live or in its lease.
            let mut st = peer.state();
            let replaced = st.conn.replace(conn);
            st.offline_since_ms = None;
            st.delivery.reset();
            drop(st);
            return Ok(Registered::Reattached { peer, replaced });
        }
        if room.len() >= capacity {
            return Err(Unregistered::Full);
        }
        if let Some(key) = label {
            remember_label(&mut labels, mesh_id, key, member_id);
        }
        let peer = Arc::new(make());
        room.insert(peer.clone());
        Ok(Registered::New(peer))
    }

    /// The socket `conn_id` of `peer` closed. Control-plane presences go at once; others keep
    /// their lease. Returns false when the presence had already moved to another socket.
    pub fn disconnect(&self, peer: &Arc<Peer>, conn_id: u64) -> bool {
        let mut meshes = self.lock();
        let mut st = peer.state();
        if st.conn.as_ref().map(|c| c.conn_id) != Some(conn_id) {
            return false;
        }
        st.conn = None;
        st.offline_since_ms = Some(time::now_ms());
        st.delivery.reset();
        drop(st);
        if let Some(room) = meshes.get_mut(&peer.mesh_id) {
            if peer.control_plane {
                room.remove(&peer.presence_id);
            } else {
                let evicted = room.bound_lingering();
                if !evicted.is_empty() {
                    let mut pending = self.evicted.lock().unwrap_or_else(|p| p.into_inner());
                    pending.extend(evicted);
                    let over = pending.len().saturating_sub(MAX_EVICTED_PENDING);
                    pending.drain(..over);
                }
            }
            if room.is_empty() {
                meshes.remove(&peer.mesh_id);
            }
        }
        true
    }

    /// Removes presences whose lease ran out; returns them, and those evicted early since the
    /// last call (for `peer_left`).
    pub fn expire_leases(&self, now_ms: i64) -> Vec<Arc<Peer>> {
        let mut gone = std::mem::take(&mut *self.evicted.lock().unwrap_or_else(|p| p.into_inner()));
        let mut meshes = self.lock();
        for room in meshes.values_mut() {
            gone.extend(room.retain(|p| {
                p.state()
                    .offline_since_ms
                    .is_none_or(|t| now_ms - t < LEASE_MS)
            }));
        }
        meshes.retain(|_, r| !r.is_empty());
        gone
    }

    /// Every presence in a mesh (live or in its lease).
    pub fn peers(&self, mesh_id: &str) -> Vec<Arc<Peer>> {
        self.lock()
            .get(mesh_id)
            .map(|r| r.values().cloned().collect())
            .unwrap_or_default()
    }

    /// The presences each of `keys` reaches, key after key (a presence reached by two keys is
    /// there twice), and whether the mesh has an observer: found without a walk over the mesh.
    pub fn covering(&self, mesh_id: &str, keys: &[RecipientKey]) -> (Vec<Arc<Peer>>, bool) {
        let meshes = self.lock();
        let Some(room) = meshes.get(mesh_id) else {
            return (Vec::new(), false);
        };
        let reached = keys
            .iter()
            .flat_map(|k| room.covering(k))
            .cloned()
            .collect();
        (reached, room.has_observers())
    }

    /// The member of a presence in `mesh_id` that speaks with `session`, found by key (a
    /// direct send to a session key asks this; no walk over the mesh).
    pub fn session_member(&self, mesh_id: &str, session: &Pubkey) -> Option<String> {
        let meshes = self.lock();
        let peer = meshes.get(mesh_id)?.speaking_with(session).first()?;
        Some(peer.member_id.clone())
    }

    /// Every presence in every mesh.
    pub fn all(&self) -> Vec<Arc<Peer>> {
        self.lock()
            .values()
            .flat_map(|r| r.values().cloned())
            .collect()
    }

    /// Members with at least one live session `viewer` is shown (see [`Peer::shown_to`]).
    pub fn online_members(&self, mesh_id: &str, viewer: &Peer) -> HashSet<String> {
        self.peers(mesh_id)
            .into_iter()
            .filter(|p| !p.control_plane && p.is_live() && p.shown_to(viewer))
            .map(|p| p.member_id.clone())
            .collect()
    }

    /// Live connections in all meshes.
    pub fn total(&self) -> usize {
        self.lock().values().map(Room::live_count).sum()
    }

    /// Marks a member revoked: hellos are refused from now on (checked under the same lock as
    /// registration), its presences leave the mesh at once (not listed, no lease), are flagged
    /// so no frame or queued step of theirs runs again, and their sockets are closed with 4002.
    /// Returns the presences removed.
    pub fn revoke(&self, mesh_id: &str, member_id: &str) -> Vec<Arc<Peer>> {
        self.shut_out(mesh_id, member_id, None)
    }

    /// [`Presence::revoke`] for a ban: the same, but each connection is first told why
    /// (`error{code:"banned"}`).
    pub fn ban(&self, mesh_id: &str, member_id: &str, why: &ServerMessage) -> Vec<Arc<Peer>> {
        self.shut_out(mesh_id, member_id, Some(why))
    }

    fn shut_out(
        &self,
        mesh_id: &str,
        member_id: &str,
        why: Option<&ServerMessage>,
    ) -> Vec<Arc<Peer>> {
        let mut meshes = self.lock();
        self.revoked_set()
            .insert((mesh_id.to_string(), member_id.to_string()));
        let gone = take_out(&mut meshes, mesh_id, |p| p.member_id == member_id);
        drop(meshes);
        for peer in &gone {
            peer.revoked.store(true, Ordering::SeqCst);
            if let Some(why) = why {
                peer.send(&Envelope::new(why.clone()));
            }
            peer.close(4002, if why.is_some() { "banned" } else { "revoked" });
        }
        gone
    }

    /// Closes the presences `which` selects in a mesh (kick, disconnect): each is told why,
    /// then closed with 4001 (the client does not reconnect by itself) and leaves the mesh at
    /// once, without a lease. Nothing is refused afterwards: the member may come back.
    /// Returns the presences removed.
    pub fn close_where(
        &self,
        mesh_id: &str,
        which: impl Fn(&Peer) -> bool,
        why: &ServerMessage,
        reason: &str,
    ) -> Vec<Arc<Peer>> {
        let gone = take_out(&mut self.lock(), mesh_id, which);
        for peer in &gone {
            peer.send(&Envelope::new(why.clone()));
            peer.close(4001, reason);
        }
        gone
    }

    /// Undoes [`Presence::revoke`]'s refusal of hellos when the revocation was not committed.
    pub fn unrevoke(&self, mesh_id: &str, member_id: &str) {
        let _meshes = self.lock();
        self.revoked_set()
            .remove(&(mesh_id.to_string(), member_id.to_string()));
    }

    /// True when the member was revoked since the broker started.
    pub fn is_revoked(&self, mesh_id: &str, member_id: &str) -> bool {
        let _meshes = self.lock();
        self.revoked_locked(mesh_id, member_id)
    }

    fn revoked_set(&self) -> MutexGuard<'_, HashSet<(String, String)>> {
        self.revoked.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Call with `meshes` held.
    fn revoked_locked(&self, mesh_id: &str, member_id: &str) -> bool {
        self.revoked_set()
            .contains(&(mesh_id.to_string(), member_id.to_string()))
    }
}

impl Peer {
    /// True once its member was revoked.
    pub fn is_revoked(&self) -> bool {
        self.revoked.load(Ordering::SeqCst)
    }

    /// The right to act for this presence while the returned guard lives; `None` once revoked.
    pub async fn authorised(&self) -> Option<tokio::sync::RwLockReadGuard<'_, ()>> {
        let held = self.authority.read().await;
        (!self.is_revoked()).then_some(held)
    }

    /// Waits until nothing acting for this presence still runs (after [`Presence::revoke`]).
    pub async fn wait_idle(&self) {
        drop(self.authority.write().await);
    }
}

mod room;
use room::Room;
#[cfg(test)]
pub(super) mod tests;
