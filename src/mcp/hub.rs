//! The MCP server's side of the mesh: one session connection per joined mesh, the messages
//! waiting for the model, and the channel notifications that announce them.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rmcp::model::{CustomNotification, ServerNotification};
use rmcp::service::{Peer, RoleServer};
use serde_json::{Map, Value, json};

use super::session::{Session, transcript_busy, transcript_dir};
use crate::client::peer_files::{FileHost, Forwarded, SharedDir};
use crate::client::{ClientError, ConnectOptions, Identity, Incoming, MeshClient};
use crate::identity::MeshEntry;
use crate::protocol::{ClientMessage, Encoding, ServerMessage};

/// Remembered message ids, to drop redeliveries.
const SEEN_CAPACITY: usize = 4096;
const RETRY_SECS: [u64; 6] = [1, 2, 4, 8, 16, 30];
/// The longest `check_messages` waits for a drain's pushes to pass through the pump.
const DRAIN_WAIT: Duration = Duration::from_secs(5);

/// One joined mesh and its connection (absent while the broker cannot be reached).
pub struct Link {
    pub entry: MeshEntry,
    client: Mutex<Option<Arc<MeshClient>>>,
    problem: Mutex<Option<String>>,
    /// The last end-of-drain marker the pump has passed (see [`Hub::check_messages`]).
    marked: tokio::sync::watch::Sender<usize>,
}

impl Link {
    pub fn client(&self) -> Option<Arc<MeshClient>> {
        lock(&self.client).clone()
    }

    /// Why there is no connection, if there is none.
    pub fn problem(&self) -> Option<String> {
        lock(&self.problem).clone()
    }
}

/// A message for the model that it has not seen through a tool yet.
pub struct Waiting {
    pub mesh: String,
    pub message: Incoming,
    /// Where to acknowledge it once the model has it.
    client: Arc<MeshClient>,
}

pub struct Hub {
    pub session: Session,
    pub links: Vec<Arc<Link>>,
    inbox: Mutex<VecDeque<Waiting>>,
    seen: Mutex<(HashSet<String>, VecDeque<String>)>,
    /// End-of-drain markers handed out so far.
    marks: AtomicUsize,
    /// Tool calls answered, reported to every mesh with `set_stats`.
    tool_calls: AtomicUsize,
    notifier: Mutex<Option<Peer<RoleServer>>>,
    /// Set by `claudemesh launch`: Claude Code shows channel notifications, so a notified
    /// message has reached the model and need not wait for `check_messages`.
    channel_mode: bool,
    /// MCP servers this session hosts for the mesh (`mesh_mcp_register`).
    pub hosted: Arc<crate::client::shared_tools::Hosted>,
    /// The directory this session shares (`launch --share-dir`: `CLAUDEMESH_SHARE_DIR`) and
    /// the slug of the one mesh it shares with.
    files: Option<(Arc<FileHost>, String)>,
    /// Permission prompts forwarded and not yet decided (mcp/approvals.rs).
    asked: Mutex<HashSet<String>>,
}

/// What `launch --share-dir` asked this server to share: the directory and the one mesh.
static SHARE_ENV: std::sync::OnceLock<Option<(String, Option<String>)>> =
    std::sync::OnceLock::new();

/// Reads `CLAUDEMESH_SHARE_DIR` / `CLAUDEMESH_SHARE_MESH` and removes them from this
/// process's environment, so that nothing it starts (hosted MCP servers, hooks) inherits the
/// share. Call it before any thread starts (cli::main does, before the runtime).
pub fn take_share_env() {
    let dir = std::env::var("CLAUDEMESH_SHARE_DIR").ok();
    let mesh = std::env::var("CLAUDEMESH_SHARE_MESH").ok();
    // SAFETY: called from `main` before the async runtime or any other thread exists, so no
    // thread reads the environment meanwhile.
    unsafe {
        std::env::remove_var("CLAUDEMESH_SHARE_DIR");
        std::env::remove_var("CLAUDEMESH_SHARE_MESH");
    }
    let _ = SHARE_ENV.set(dir.filter(|d| !d.is_empty() && d != "0").map(|d| (d, mesh)));
}

/// The directory `launch --share-dir` named, opened for sharing, and the mesh to share it
/// with; a problem is said on stderr (Claude Code's MCP log) and nothing is shared.
fn shared_dir_from_env(links: &[Arc<Link>]) -> Option<(Arc<FileHost>, String)> {
    let (dir, mesh) = SHARE_ENV.get()?.as_ref()?;
    let mesh = match (mesh, links) {
        (Some(mesh), _) => mesh.clone(),
        (None, [only]) => only.entry.slug.clone(),
        (None, _) => {
            eprintln!(
                "claudemesh: not sharing files: CLAUDEMESH_SHARE_MESH names no mesh and several are joined"
            );
            return None;
        }
    };
    if !links.iter().any(|l| l.entry.slug == mesh) {
        eprintln!("claudemesh: not sharing files: mesh {mesh} is not among this session's meshes");
        return None;
    }
    match SharedDir::open(std::path::Path::new(dir), true) {
        Ok(dir) => {
            eprintln!(
                "claudemesh: sharing {} with mesh {mesh} (read only)",
                dir.path.display()
            );
            Some((Arc::new(FileHost::new(dir)), mesh))
        }
        Err(e) => {
            eprintln!("claudemesh: not sharing files: {e}");
            None
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Hub {
    /// The hub of `meshes`, each still connecting; nothing started, nothing shared.
    fn new(session: Session, meshes: Vec<MeshEntry>, channel_mode: bool) -> Hub {
        let links = meshes
            .into_iter()
            .map(|entry| {
                Arc::new(Link {
                    entry,
                    client: Mutex::new(None),
                    problem: Mutex::new(Some("connecting…".into())),
                    marked: tokio::sync::watch::Sender::new(0),
                })
            })
            .collect();
        Hub {
            session,
            links,
            inbox: Mutex::new(VecDeque::new()),
            seen: Mutex::new((HashSet::new(), VecDeque::new())),
            marks: AtomicUsize::new(0),
            tool_calls: AtomicUsize::new(0),
            notifier: Mutex::new(None),
            channel_mode,
            hosted: Default::default(),
            files: None,
            asked: Mutex::new(HashSet::new()),
        }
    }

    /// Starts one connection loop per mesh; returns at once (brokers may be down).
    pub fn start(session: Session, meshes: Vec<MeshEntry>) -> Arc<Hub> {
        let channel_mode = std::env::var("CLAUDEMESH_CHANNEL").is_ok_and(|v| v == "1");
        let mut hub = Hub::new(session, meshes, channel_mode);
        hub.files = shared_dir_from_env(&hub.links);
        let hub = Arc::new(hub);
        for link in &hub.links {
            tokio::spawn(connect_loop(hub.clone(), link.clone()));
        }
        tokio::spawn(status_from_transcript(hub.clone()));
        tokio::spawn(report_stats(hub.clone()));
        hub
    }

    /// Counts one answered tool call (reported by [`report_stats`]).
    pub fn tool_called(&self) {
        self.tool_calls.fetch_add(1, Ordering::Relaxed);
    }

    pub fn set_notifier(&self, peer: Peer<RoleServer>) {
        *lock(&self.notifier) = Some(peer);
    }

    /// Messages the model has not been shown through a tool.
    pub fn waiting(&self) -> usize {
        lock(&self.inbox).len()
    }

    /// The connected mesh a tool call is for: `slug` if given, else the only mesh.
    pub fn link(&self, slug: Option<&str>) -> Result<(Arc<Link>, Arc<MeshClient>), String> {
        let link = match slug {
            Some(s) => self
                .links
                .iter()
                .find(|l| l.entry.slug == s || l.entry.mesh_id == s)
                .cloned()
                .ok_or_else(|| format!("no joined mesh \"{s}\" (joined: {})", self.slugs()))?,
            None => match self.links.as_slice() {
                [only] => only.clone(),
                [] => {
                    return Err(
                        "no mesh joined: run `claudemesh join <invite-url>` in a terminal".into(),
                    );
                }
                _ => {
                    return Err(format!(
                        "several meshes are joined ({}); prefix the target with `<mesh-slug>:`",
                        self.slugs()
                    ));
                }
            },
        };
        let client = link.client().ok_or_else(|| {
            format!(
                "not connected to mesh {} ({})",
                link.entry.slug,
                link.problem().unwrap_or_else(|| "connecting…".into())
            )
        })?;
        Ok((link, client))
    }

    /// Splits an optional `<mesh-slug>:` prefix off a target.
    pub fn split_target<'a>(&self, to: &'a str) -> (Option<&'a str>, &'a str) {
        if let Some((prefix, rest)) = to.split_once(':')
            && self.links.iter().any(|l| l.entry.slug == prefix)
        {
            return (Some(prefix), rest);
        }
        (None, to)
    }

    pub fn slugs(&self) -> String {
        self.links
            .iter()
            .map(|l| l.entry.slug.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Everything waiting, after asking every broker for what it holds back; each message is
    /// acknowledged as it is handed over.
    pub async fn check_messages(&self) -> Vec<Waiting> {
        for link in &self.links {
            if let Some(client) = link.client() {
                match client.drain().await {
                    Ok(_) => self.pumped(link, &client).await,
                    Err(e) => tracing::debug!("drain on {}: {e}", link.entry.slug),
                }
            }
        }
        let taken: Vec<Waiting> = lock(&self.inbox).drain(..).collect();
        for w in &taken {
            let _ = w.client.ack(&w.message.push.message_id);
        }
        taken
    }

    /// Waits (at most [`DRAIN_WAIT`]) until the pump has filed every push received so far:
    /// a marker goes into the push stream behind them, and the pump reports passing it.
    async fn pumped(&self, link: &Link, client: &MeshClient) {
        let mark = self.marks.fetch_add(1, Ordering::Relaxed) + 1;
        let mut passed = link.marked.subscribe();
        let marker = ServerMessage::Drained {
            count: mark,
            more: false,
        };
        if client.mark_pushes(marker).await {
            let _ = tokio::time::timeout(DRAIN_WAIT, passed.wait_for(|m| *m >= mark)).await;
        }
    }

    fn first_sight(&self, id: &str) -> bool {
        let mut seen = lock(&self.seen);
        let (set, order) = &mut *seen;
        if !set.insert(id.to_string()) {
            return false;
        }
        order.push_back(id.to_string());
        if order.len() > SEEN_CAPACITY
            && let Some(old) = order.pop_front()
        {
            set.remove(&old);
        }
        true
    }

    async fn notify(&self, content: String, meta: Map<String, Value>) -> bool {
        let params = json!({ "content": content, "meta": meta });
        self.send_custom("notifications/claude/channel", params)
            .await
    }

    /// Sends a custom notification to the MCP client; false when none is connected.
    pub async fn send_custom(&self, method: &str, params: Value) -> bool {
        let Some(peer) = lock(&self.notifier).clone() else {
            return false;
        };
        peer.send_notification(ServerNotification::CustomNotification(
            CustomNotification::new(method, Some(params)),
        ))
        .await
        .is_ok()
    }

    /// Remembers a forwarded permission prompt; false when `cap` already wait.
    pub fn ask(&self, request_id: &str, cap: usize) -> bool {
        let mut asked = lock(&self.asked);
        asked.contains(request_id) || (asked.len() < cap && asked.insert(request_id.into()))
    }

    /// Forgets a forwarded prompt; true the first time (its decision is to be passed on).
    pub fn answered(&self, request_id: &str) -> bool {
        lock(&self.asked).remove(request_id)
    }

    /// Tells the MCP client that the prompts and resources (the mesh's skills) changed.
    pub async fn skills_changed(&self) {
        let Some(peer) = lock(&self.notifier).clone() else {
            return;
        };
        let _ = peer.notify_prompt_list_changed().await;
        let _ = peer.notify_resource_list_changed().await;
    }

    async fn on_push(&self, link: &Link, client: &Arc<MeshClient>, frame: ServerMessage) {
        if let Some(forward) = Forwarded::from_push(&frame) {
            let Some((files, _)) = self.files.as_ref().filter(|(_, m)| *m == link.entry.slug)
            else {
                return;
            };
            let (files, client) = (files.clone(), client.clone());
            tokio::spawn(async move {
                // The host's log: Claude Code keeps the MCP server's stderr.
                eprintln!("claudemesh: {}", files.answer(&client, forward).await);
            });
            return;
        }
        let push = match frame {
            ServerMessage::Push(push) => push,
            ServerMessage::McpCallForward(forward) => {
                let (hosted, client) = (self.hosted.clone(), client.clone());
                tokio::spawn(async move { hosted.answer(&client, *forward).await });
                return;
            }
            ServerMessage::StateChange(change) => {
                let mut meta = Map::new();
                for (k, v) in [
                    ("kind", "state"),
                    ("mesh_slug", link.entry.slug.as_str()),
                    ("key", change.key.as_str()),
                    ("from_name", change.updated_by.as_str()),
                ] {
                    meta.insert(k.into(), Value::String(v.into()));
                }
                let text = format!(
                    "claudemesh: {} set {} = {}",
                    change.updated_by, change.key, change.value
                );
                self.notify(text, meta).await;
                return;
            }
            ServerMessage::StreamData(data) => {
                let mut meta = Map::new();
                for (k, v) in [
                    ("kind", "stream"),
                    ("mesh_slug", link.entry.slug.as_str()),
                    ("stream", data.stream.as_str()),
                    ("from_name", data.published_by.as_str()),
                ] {
                    meta.insert(k.into(), Value::String(v.into()));
                }
                let text = format!("{} on {}: {}", data.published_by, data.stream, data.data);
                self.notify(text, meta).await;
                return;
            }
            ServerMessage::ApprovalDecided(decision) => {
                super::approvals::decided(self, decision).await;
                return;
            }
            ServerMessage::SkillChanged(_) => {
                self.skills_changed().await;
                return;
            }
            // Only ours: the broker answers a drain, it never pushes one.
            ServerMessage::Drained { count, .. } => {
                link.marked.send_replace(count);
                return;
            }
            _ => return,
        };
        let mut meta = Map::new();
        let mut put = |k: &str, v: &str| {
            meta.insert(k.to_string(), Value::String(v.to_string()));
        };
        put("mesh_slug", &link.entry.slug);
        put("message_id", &push.message_id);
        put("priority", &push.priority);
        // Clock ticks come every simulated minute (up to 100 a minute): not for the model's
        // context; it asks mesh_clock.
        if push.subtype.as_deref() == Some("tick") {
            return;
        }
        if push.subtype.as_deref() == Some("system") {
            let data = push.event_data.clone().unwrap_or_default();
            let name = data["name"].as_str().unwrap_or("a peer").to_string();
            let event = push.event.clone().unwrap_or_default();
            put("kind", "system");
            put("subtype", "system");
            put("event", &event);
            put("from_name", &name);
            put("from_id", data["pubkey"].as_str().unwrap_or(""));
            let text = match event.as_str() {
                "peer_joined" => format!("{name} joined the mesh"),
                "peer_returned" => format!("{name} is back"),
                "peer_left" => format!("{name} left"),
                "peer_hidden" => format!("{name} is now hidden"),
                "peer_visible" => format!("{name} is visible again"),
                "profile_updated" => format!("{name} updated their profile"),
                // Plumbing the client acts on itself (key_rotated, mesh_settings) and events
                // of later brokers: nothing for the model's context.
                other => {
                    tracing::debug!("system event {other} not forwarded to the session");
                    return;
                }
            };
            self.notify(format!("claudemesh: {text}"), meta).await;
            return;
        }
        if !self.first_sight(&push.message_id) {
            let _ = client.ack(&push.message_id);
            return;
        }
        let message = client.open(*push);
        let p = &message.push;
        let sender = p
            .sender_name
            .clone()
            .unwrap_or_else(|| p.sender_pubkey.clone());
        put(
            "kind",
            if p.subtype.as_deref() == Some("reminder") {
                "reminder"
            } else {
                "message"
            },
        );
        if let Some(s) = &p.subtype {
            put("subtype", s);
        }
        put("from_name", &sender);
        put("from_id", &p.sender_pubkey);
        put(
            "from_pubkey",
            p.sender_member_pubkey
                .as_deref()
                .unwrap_or(&p.sender_pubkey),
        );
        put("created_at", &p.created_at);
        if let Some(t) = &p.target_spec {
            put("to", t);
        }
        let interrupting = p.priority == "now" || p.priority == "next";
        let mut notified = false;
        if interrupting {
            let text = message
                .text
                .clone()
                .unwrap_or_else(|e| format!("(unreadable: {e})"));
            let urgent = if p.priority == "now" { "[urgent] " } else { "" };
            notified = self.notify(format!("{urgent}{sender}: {text}"), meta).await;
        }
        if notified && self.channel_mode {
            let _ = client.ack(&message.push.message_id);
            return;
        }
        lock(&self.inbox).push_back(Waiting {
            mesh: link.entry.slug.clone(),
            message,
            client: client.clone(),
        });
    }
}

/// How long a session waits before it tries to connect again after `failed` attempts: 1, 2,
/// 4, 8 and 16 s, then 30 s however long its broker stays out of reach.
fn retry_delay(failed: usize) -> Duration {
    Duration::from_secs(RETRY_SECS[failed.min(RETRY_SECS.len() - 1)])
}

async fn connect_loop(hub: Arc<Hub>, link: Arc<Link>) {
    let mut attempt = 0;
    loop {
        let options = ConnectOptions {
            entry: link.entry.clone(),
            identity: Identity::Session(hub.session.key.clone()),
            peer: hub.session.peer_info(&link.entry.display_name),
            encoding: Encoding::Json,
            reconnect: true,
            // Root keys of new epochs are saved where this server read its config.
            config_dir: Some(crate::identity::ConfigDir::from_env()),
        };
        match MeshClient::connect(options).await {
            Ok(client) => {
                let client = Arc::new(client);
                *lock(&link.client) = Some(client.clone());
                *lock(&link.problem) = None;
                // The skills may have changed while this mesh was out of reach.
                hub.skills_changed().await;
                if let Some((files, _)) = hub.files.as_ref().filter(|(_, m)| *m == link.entry.slug)
                {
                    tokio::spawn(announce_share(files.clone(), client.clone()));
                }
                while let Some(frame) = client.next_push().await {
                    hub.on_push(&link, &client, frame).await;
                }
                // The client ended for good (revoked, kicked, banned, disconnected): said once
                // in Claude Code's MCP log, and by the tools from now on.
                let problem = match client.removal() {
                    Some(why) => format!("the broker ended this session: {why}"),
                    None => "the broker ended this session".into(),
                };
                eprintln!("claudemesh: mesh {}: {problem}", link.entry.slug);
                *lock(&link.client) = None;
                *lock(&link.problem) = Some(problem);
                return;
            }
            Err(ClientError::Refused { code, message, .. }) if code == "revoked" => {
                *lock(&link.problem) = Some(format!("refused: {message}"));
                return;
            }
            Err(e) => *lock(&link.problem) = Some(e.to_string()),
        }
        tokio::time::sleep(retry_delay(attempt)).await;
        attempt += 1;
    }
}

/// Reports working / idle (source `jsonl`) from the session transcript, when there is one.
async fn status_from_transcript(hub: Arc<Hub>) {
    let Some(dir) = std::env::current_dir()
        .ok()
        .and_then(|d| transcript_dir(&d))
    else {
        return;
    };
    let mut reports = TranscriptReports::default();
    let mut tick = tokio::time::interval(TRANSCRIPT_EVERY);
    loop {
        tick.tick().await;
        let Some(busy) = transcript_busy(&dir) else {
            continue;
        };
        if !reports.due(busy) {
            continue;
        }
        let mut told = false;
        for client in hub.links.iter().filter_map(|l| l.client()) {
            let _ = client.notify(ClientMessage::SetStatus {
                status: if busy { "working" } else { "idle" }.into(),
                source: Some("jsonl".into()),
            });
            told = true;
        }
        // Read while no mesh was connected (at start): not reported, so tried again next time.
        if told {
            reports.sent(busy);
        }
    }
}

/// How often the transcript is read.
const TRANSCRIPT_EVERY: Duration = Duration::from_secs(5);

/// After how many reads an unchanged status is reported again: once a minute, well within the
/// broker's ten-minute lifetime of a `working` status.
const TRANSCRIPT_REFRESH_READS: u32 = 12;

/// When a status read from the transcript goes to the broker: at once when it changed, and
/// the same one again every [`TRANSCRIPT_REFRESH_READS`] reads to keep it fresh.
#[derive(Default)]
struct TranscriptReports {
    last: Option<bool>,
    reads_since: u32,
}

impl TranscriptReports {
    /// Counts one read of `busy`; whether it should be reported.
    fn due(&mut self, busy: bool) -> bool {
        self.reads_since += 1;
        self.last != Some(busy) || self.reads_since >= TRANSCRIPT_REFRESH_READS
    }

    /// `busy` reached the broker.
    fn sent(&mut self, busy: bool) {
        self.last = Some(busy);
        self.reads_since = 0;
    }
}

/// How often the tool-call count is reported at most (only when it changed).
const STATS_EVERY: Duration = Duration::from_secs(5);

/// Reports this session's tool calls and uptime to every mesh with `set_stats` (issue 13),
/// at most every [`STATS_EVERY`] and only when the count moved.
async fn report_stats(hub: Arc<Hub>) {
    let started = std::time::Instant::now();
    let mut reported = 0;
    let mut tick = tokio::time::interval(STATS_EVERY);
    loop {
        tick.tick().await;
        let calls = hub.tool_calls.load(Ordering::Relaxed);
        if calls == reported {
            continue;
        }
        reported = calls;
        for link in &hub.links {
            if let Some(client) = link.client() {
                let _ = client.report_stats(crate::protocol::messages::ReportedStats {
                    tool_calls: Some(calls as u64),
                    uptime: Some(started.elapsed().as_secs()),
                    ..Default::default()
                });
            }
        }
    }
}

/// Tells the broker this session shares its directory, and again after each reconnect (a new
/// connection may be a new presence).
async fn announce_share(files: Arc<FileHost>, client: Arc<MeshClient>) {
    let mut link = client.link();
    loop {
        if let Err(e) = files.announce(&client).await {
            eprintln!("claudemesh: cannot share files with the mesh: {e}");
        }
        if !MeshClient::reconnected(&mut link).await {
            return;
        }
    }
}

#[cfg(test)]
mod tests;
