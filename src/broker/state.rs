//! The broker's shared state: one `Arc<Broker>` reaches every connection and HTTP handler.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::BrokerConfig;
use super::limits::RateLimiter;
use super::metrics::Metrics;
use super::presence::Presence;
use super::status::PendingStatuses;
use crate::identity::{IdentityError, write_private};
use crate::protocol::{MAX_SKEW_MS, time};
use crate::store::Store;

pub struct Broker {
    pub config: BrokerConfig,
    pub store: Store,
    pub admin_token: String,
    pub local_addr: SocketAddr,
    /// The base URL of links, worked out once at start.
    pub link_url: Option<String>,
    pub presence: Presence,
    /// Acknowledgements received and not committed yet, per member, across its connections.
    pub committing: super::router::Committing,
    pub metrics: Metrics,
    /// Refusals, logged at `info`, rate-limited.
    pub refusals: super::refusals::RefusalLog,
    pub replay: ReplayGuard,
    /// Signatures of member-signed HTTP requests already used.
    pub signed_requests: super::auth::SignedRequestCache,
    /// Open connections, in total and per IP.
    pub connections: std::sync::Arc<super::limits::ConnectionLimits>,
    /// The bearer token `GET /metrics` requires (`--metrics-token-file`).
    pub metrics_token: Option<super::metrics::MetricsToken>,
    /// `<data>/broker.key`, which `GET /broker-key` proves this broker holds.
    pub key: Option<crate::crypto::SignKeyPair>,
    /// Per-member send rate.
    pub send_limit: RateLimiter,
    /// Audited changes per member (`--audit-rate`, `--audit-burst`).
    pub audit_limit: RateLimiter,
    /// Per (pid, cwd) status-hook rate: 30 a minute.
    pub hook_limit: RateLimiter,
    /// Hook reports for peers that have not connected yet.
    pub pending_status: PendingStatuses,
    /// Every peer's status changes over the last hours (`status_history`).
    pub status_history: super::status_history::StatusHistory,
    /// Cancelled when the broker shuts down; every connection watches it.
    pub shutdown: CancellationToken,
    /// Every connection task, so shutdown can wait for them.
    pub tasks: TaskTracker,
    pub started: Instant,
    /// File bytes and the tokens that reach them.
    pub files: super::files::Files,
    /// The memory search index (beside redb, which holds the memories).
    pub memory: crate::store::MemoryIndex,
    /// The vector collections' search graphs (beside redb, which holds the records).
    pub vectors: std::sync::Arc<crate::store::VectorIndex>,
    /// Wakes the scheduler when a message is scheduled.
    pub scheduler: super::scheduler::Scheduler,
    /// Simulation clocks that are set, for their heartbeat ticks.
    pub clocks: super::clock::Clocks,
    /// Live stream subscriptions.
    pub subscriptions: super::subscriptions::Subscriptions,
    /// Peer-hosted MCP tool calls waiting for their hosts.
    pub tool_calls: super::shared_tools::ToolCalls,
    /// Presences sharing a directory, and the peer-file requests waiting for them.
    pub file_shares: super::peer_files::Shares,
    pub file_requests: super::peer_files::FileRequests,
    /// Broker-hosted MCP services (deployments) while they run.
    pub services: super::deployments::Services,
    /// `<data>/service.key`: what vault entries for deployed services are sealed to.
    pub service_key: Option<super::vault::ServiceKey>,
    /// Per-mesh SQL databases, `<data>/sql/<mesh-id>.db`.
    pub sql: crate::store::SqlDatabases,
    /// Every mesh's graph (`<data>/graph`), each in a worker process of its own.
    pub graphs: crate::store::graph::Graphs,
    /// URL watches' polling tasks.
    pub watches: super::watches::Watches,
    /// Webhook deliveries: signatures already used and the per-webhook rate.
    pub webhooks: super::webhooks::Deliveries,
    /// Telegram bridges' polling tasks and their users' presences.
    pub telegram: super::telegram::Bridges,
}

impl Broker {
    pub fn new(
        config: BrokerConfig,
        store: Store,
        admin_token: String,
        local_addr: SocketAddr,
        files: super::files::Files,
        memory: crate::store::MemoryIndex,
    ) -> Broker {
        let shutdown = CancellationToken::new();
        Broker {
            services: super::deployments::Services::new(
                &config.data_dir,
                config.allow_unsandboxed_services,
                config.max_services,
                shutdown.clone(),
            ),
            link_url: super::link_url(&config, local_addr),
            store,
            admin_token,
            local_addr,
            presence: Presence::default(),
            metrics: Metrics::default(),
            refusals: Default::default(),
            replay: ReplayGuard::default(),
            signed_requests: Default::default(),
            connections: super::limits::ConnectionLimits::new(
                config.max_connections,
                config.max_connections_per_ip,
            ),
            metrics_token: None,
            key: None,
            send_limit: RateLimiter::new(config.send_rate, config.send_burst),
            audit_limit: RateLimiter::new(config.audit_rate, config.audit_burst),
            hook_limit: RateLimiter::bounded(0.5, 30.0, super::hook::LIMITER_KEYS),
            pending_status: PendingStatuses::default(),
            status_history: Default::default(),
            shutdown,
            tasks: TaskTracker::new(),
            started: Instant::now(),
            files,
            memory,
            vectors: std::sync::Arc::new(
                crate::store::VectorIndex::new(config.data_dir.join("vectors"))
                    .with_max_bytes(config.max_vector_bytes),
            ),
            scheduler: Default::default(),
            clocks: Default::default(),
            subscriptions: Default::default(),
            tool_calls: Default::default(),
            file_shares: Default::default(),
            committing: Default::default(),
            file_requests: Default::default(),
            service_key: None,
            sql: crate::store::SqlDatabases::new(config.data_dir.join("sql"), config.sql),
            graphs: crate::store::graph::Graphs::new(config.data_dir.join("graph")),
            watches: Default::default(),
            webhooks: Default::default(),
            telegram: Default::default(),
            config,
        }
    }

    /// How long a push may stay unacknowledged before it is pushed again.
    pub fn redeliver_ms(&self) -> i64 {
        self.config.redeliver_after.as_millis() as i64
    }

    /// The base URL of links (invites): `--public-url`, else the one worked out at start (see
    /// [`super::link_url`]); `None` when no address others could reach is known.
    pub fn link_url(&self) -> Option<String> {
        self.link_url.clone()
    }

    /// The base URL for upload and download URLs: the link URL, else the address we listen
    /// on (clients replace a wildcard host by the address they reached the broker at).
    pub fn public_url(&self) -> String {
        self.link_url.clone().unwrap_or_else(|| {
            let scheme = if self.config.tls.is_some() {
                "https"
            } else {
                "http"
            };
            format!("{scheme}://{}", self.local_addr)
        })
    }
}

/// Reads `<data>/admin.token`, creating it (0600) on first start. Returns the token and whether
/// it was just created.
pub fn load_or_create_admin_token(dir: &Path) -> Result<(String, bool), IdentityError> {
    let path = dir.join("admin.token");
    match std::fs::read_to_string(&path) {
        Ok(t) if !t.trim().is_empty() => return Ok((t.trim().to_string(), false)),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => return Err(IdentityError::Read { path, source }),
    }
    let token = hex::encode(crate::crypto::random_bytes::<32>());
    write_private(dir, "admin.token", format!("{token}\n").as_bytes())?;
    Ok((token, true))
}

/// Remembers signatures of accepted hellos for twice the skew window, so the exact same hello
/// cannot be played again while its timestamp would still pass.
#[derive(Default)]
pub struct ReplayGuard {
    seen: Mutex<HashMap<[u8; 64], i64>>,
}

impl ReplayGuard {
    /// Records `signature`; false when it was already seen (a replay).
    pub fn first_use(&self, signature: &[u8; 64], timestamp_ms: i64) -> bool {
        let now = time::now_ms();
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.len() > 4096 {
            seen.retain(|_, expires| *expires > now);
        }
        if seen.get(signature).is_some_and(|expires| *expires > now) {
            return false;
        }
        seen.insert(*signature, timestamp_ms.max(now) + 2 * MAX_SKEW_MS);
        true
    }
}
