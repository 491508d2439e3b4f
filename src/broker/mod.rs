//! The broker: one TCP port serving HTTP and the WebSocket, storage in the data directory.

mod auth;
mod clock;
mod connection;
mod cron;
// The status page (issue 18).
mod dashboard;
pub mod deployments;
mod files;
pub(crate) mod handlers;
mod hook;
pub mod http;
mod invites;
mod key;
mod lan;
mod limits;
mod metrics;
mod page;
mod peer_files;
mod presence;
mod refusals;
mod router;
mod scheduler;
// Messages sent for a member while it may be away (reminders, watches, webhooks).
mod on_behalf;
// URL watches and inbound webhooks (issue 17).
mod shared_tools;
mod state;
mod stats;
mod status;
mod status_history;
mod subscriptions;
pub mod tls;
pub mod vault;
pub(crate) mod watches;
mod webhooks;
// Telegram bridge (issue 17).
pub(crate) mod telegram;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

pub use files::{DEFAULT_EPHEMERAL_TTL, DEFAULT_MAX_UPLOAD_BYTES};
pub use lan::loopback_refusal as lan_refusal;
pub use state::Broker;
pub use tls::TlsSource;

use crate::store::{Store, StoreError};

/// The pure parsers of what peers send over HTTP, public so the fuzz targets in `fuzz/` can
/// reach them.
pub mod parsers {
    pub use super::auth::{SignedHeaders, parse_signed_headers};
    pub use super::files::endpoints::{UploadMeta, parse_upload_headers};
    pub use super::files::{FileGrant, TokenPurpose};
}

/// Default for [`BrokerConfig::max_outbox_bytes`]: 8 MiB.
pub const DEFAULT_MAX_OUTBOX_BYTES: usize = 8 << 20;
/// Default for [`BrokerConfig::max_queued_per_recipient`].
pub const DEFAULT_MAX_QUEUED_PER_RECIPIENT: u64 = 100_000;

/// Everything `claudemesh broker` can be told.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// Anyone may create meshes (no admin token needed).
    pub open: bool,
    /// The URL people reach this broker at, used in invite links.
    pub public_url: Option<String>,
    pub max_message_bytes: usize,
    pub max_connections_per_mesh: usize,
    /// How long a queued message waits for an offline recipient.
    pub retention: Duration,
    /// Sustained sends per second per member.
    pub send_rate: f64,
    /// Sends a member may make at once before the rate applies.
    pub send_burst: f64,
    /// Sustained audited changes per second per member (state writes, blocks, renames…), so
    /// no member can push the audit log's older records out at will.
    pub audit_rate: f64,
    pub audit_burst: f64,
    /// A push not acknowledged within this time is pushed again.
    pub redeliver_after: Duration,
    /// A `working` status with no fresh report reverts to `idle` after this long.
    pub working_ttl: Duration,
    /// Where file bytes go: `s3://bucket/prefix`; `None` is `<data>/files`.
    pub files_url: Option<String>,
    /// Largest file `POST /upload` accepts.
    pub max_upload_bytes: u64,
    /// How long an ephemeral file lives.
    pub ephemeral_ttl: Duration,
    /// A WebSocket that shows no sign of life (no frame, no pong) for this long is dropped.
    pub idle_timeout: Duration,
    /// How much shared data one mesh may hold.
    pub quotas: crate::store::MeshQuotas,
    /// Bytes of frames that may wait for one socket before its peer is cut off as a slow
    /// consumer.
    pub max_outbox_bytes: usize,
    /// Messages that may wait in one recipient's queue; a send past it is refused.
    pub max_queued_per_recipient: u64,
    /// A file holding the bearer token `GET /metrics` requires; without it metrics are served
    /// to loopback clients only.
    pub metrics_token_file: Option<PathBuf>,
    /// Open TCP connections (HTTP and WebSocket) at most, all clients together.
    pub max_connections: usize,
    /// Open TCP connections at most from one IP address.
    pub max_connections_per_ip: usize,
    /// Uploads streamed at once.
    pub upload_slots: usize,
    /// An upload that makes no progress (16 KiB) for this long is ended, freeing its slot.
    pub upload_idle_timeout: Duration,
    /// How long an upload may wait for a free slot before it is refused with 503.
    pub upload_slot_wait: Duration,
    /// Announce the broker on the LAN (mDNS / DNS-SD) under this name (`--lan`).
    pub lan_name: Option<String>,
    /// TLS on the port: certificate files or ACME; `None` is plain text.
    pub tls: Option<TlsSource>,
    /// Plain text on an address that is not loopback (`--insecure-plaintext`).
    pub insecure_plaintext: bool,
    /// Deployed services may run without a sandbox (`--allow-unsandboxed-services`).
    pub allow_unsandboxed_services: bool,
    /// Services one mesh may have deployed (`--max-services`).
    pub max_services: usize,
    /// Per-mesh SQL: database size and statement time budget (`--max-sql-bytes`,
    /// `--sql-timeout`).
    pub sql: crate::store::SqlLimits,
    /// URL watches may reach loopback, private and link-local addresses
    /// (`--allow-private-watch-targets`).
    pub allow_private_watch_targets: bool,
    /// The Telegram Bot API's base URL (`--telegram-api-url`).
    pub telegram_api_url: String,
    /// Bytes one mesh's vector records may hold (`--max-vector-bytes`).
    pub max_vector_bytes: u64,
}

impl BrokerConfig {
    /// When a message stored at `now_ms` stops waiting for its recipients: `now_ms` plus the
    /// retention (saturating: a retention past the millisecond clock's end never expires).
    pub fn expiry_of(&self, now_ms: i64) -> i64 {
        now_ms.saturating_add(i64::try_from(self.retention.as_millis()).unwrap_or(i64::MAX))
    }

    pub fn new(listen: SocketAddr, data_dir: PathBuf) -> Self {
        BrokerConfig {
            listen,
            data_dir,
            open: false,
            public_url: None,
            max_message_bytes: crate::protocol::MAX_MESSAGE_BYTES,
            max_connections_per_mesh: 100,
            retention: Duration::from_secs(7 * 24 * 3600),
            send_rate: 1000.0,
            send_burst: 5000.0,
            audit_rate: 50.0,
            audit_burst: 2000.0,
            redeliver_after: Duration::from_secs(30),
            working_ttl: Duration::from_millis(status::WORKING_TTL_MS as u64),
            files_url: None,
            max_upload_bytes: files::DEFAULT_MAX_UPLOAD_BYTES,
            ephemeral_ttl: files::DEFAULT_EPHEMERAL_TTL,
            idle_timeout: Duration::from_secs(75),
            quotas: crate::store::MeshQuotas::default(),
            max_outbox_bytes: DEFAULT_MAX_OUTBOX_BYTES,
            max_queued_per_recipient: DEFAULT_MAX_QUEUED_PER_RECIPIENT,
            metrics_token_file: None,
            max_connections: 10_000,
            max_connections_per_ip: 256,
            upload_slots: 8,
            upload_idle_timeout: Duration::from_secs(20),
            upload_slot_wait: Duration::from_secs(30),
            lan_name: None,
            tls: None,
            insecure_plaintext: false,
            allow_unsandboxed_services: false,
            max_services: crate::store::MAX_DEPLOYMENTS,
            sql: crate::store::SqlLimits::default(),
            allow_private_watch_targets: false,
            telegram_api_url: telegram::DEFAULT_API_URL.into(),
            max_vector_bytes: crate::store::DEFAULT_MAX_VECTOR_BYTES,
        }
    }

    /// The checks [`RunningBroker::bind`] makes first, which start nothing and write nothing:
    /// plain text off loopback, `--lan` on loopback, the TLS files (or ACME's CA file), the
    /// `--files` URL and the metrics token file. `service install` runs them too, so that a
    /// service that could not start is refused rather than restarted in a loop.
    pub fn preflight(&self) -> Result<(), BrokerError> {
        self.check_plaintext()?;
        if self.lan_name.is_some()
            && let Some(why) = lan::loopback_refusal(self.listen)
        {
            return Err(BrokerError::Lan(why));
        }
        if let Some(source) = &self.tls {
            tls::Tls::check(source).map_err(BrokerError::Tls)?;
        }
        if let Some(url) = self.files_url.as_deref().filter(|u| !u.trim().is_empty()) {
            files::parse_files_url(url).map_err(BrokerError::Files)?;
        }
        metrics::load_token(self.metrics_token_file.as_deref())
            .map_err(BrokerError::MetricsToken)?;
        Ok(())
    }

    /// Refuses plain text off loopback unless `insecure_plaintext` says so.
    pub fn check_plaintext(&self) -> Result<(), BrokerError> {
        if self.tls.is_none()
            && !self.insecure_plaintext
            && !crate::net::is_loopback(self.listen.ip())
        {
            return Err(BrokerError::Plaintext(self.listen));
        }
        Ok(())
    }
}

/// The base URL of links: `--public-url`; else `https://<ACME name>`; else the address we
/// listen on, with a wildcard (`0.0.0.0`, `[::]`) replaced by the address this machine reaches
/// others from; `None` when there is none (links would not work).
pub fn link_url(config: &BrokerConfig, local: SocketAddr) -> Option<String> {
    if let Some(url) = &config.public_url {
        return Some(url.trim_end_matches('/').to_string());
    }
    let port = local.port();
    if let Some(domain) = config.tls.as_ref().and_then(TlsSource::domain) {
        return Some(match port {
            443 => format!("https://{domain}"),
            _ => format!("https://{domain}:{port}"),
        });
    }
    let scheme = if config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let ip = match local.ip() {
        ip if ip.is_unspecified() => crate::net::reachable_address()?,
        ip => ip,
    };
    Some(format!(
        "{scheme}://{}",
        crate::net::url_authority(ip, port)
    ))
}

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("admin token: {0}")]
    AdminToken(String),
    #[error("file storage: {0}")]
    Files(String),
    #[error("{0}")]
    Memory(#[from] crate::store::MemoryError),
    #[error("metrics token: {0}")]
    MetricsToken(String),
    #[error("broker key: {0}")]
    Key(String),
    #[error("service key: {0}")]
    ServiceKey(String),
    #[error("{0}")]
    Lan(String),
    #[error(
        "refusing to listen on {0} without TLS: that address is reachable from other machines, and the admin token, invite codes, file tokens and every frame would cross the network in clear text. Give --tls-cert and --tls-key, or --acme DOMAIN; or listen on 127.0.0.1 behind a TLS reverse proxy (see the README); or pass --insecure-plaintext if this network is trusted"
    )]
    Plaintext(SocketAddr),
    #[error("TLS: {0}")]
    Tls(String),
}

/// The broker, bound and ready; `serve` runs it until shutdown.
pub struct RunningBroker {
    broker: Arc<Broker>,
    listener: TcpListener,
    tls: Option<tls::Tls>,
    /// True when this start created the admin token (so it should be shown).
    pub admin_token_created: bool,
    /// [`crate::protocol::lan::fingerprint`] of `<data>/broker.key`.
    pub key_fingerprint: String,
    lan: Option<lan::LanAdvert>,
}

impl RunningBroker {
    /// Opens the data directory and binds the port.
    pub async fn bind(config: BrokerConfig) -> Result<RunningBroker, BrokerError> {
        config.preflight()?;
        let tls = match &config.tls {
            Some(source) => {
                Some(tls::Tls::load(source, &config.data_dir).map_err(BrokerError::Tls)?)
            }
            None => None,
        };
        let store = Store::open(&config.data_dir)?;
        // Rebuilt from redb here, before anyone can connect, when missing or behind.
        let memory = crate::store::MemoryIndex::open(&config.data_dir.join("memory"), &store)?;
        let (admin_token, created) = state::load_or_create_admin_token(&config.data_dir)
            .map_err(|e| BrokerError::AdminToken(e.to_string()))?;
        let broker_key =
            key::load_or_create(&config.data_dir).map_err(|e| BrokerError::Key(e.to_string()))?;
        let key_fingerprint = crate::protocol::lan::fingerprint(&broker_key.public);
        let had_service_key = config.data_dir.join(vault::FILE).exists();
        let service_key = vault::ServiceKey::load_or_create(&config.data_dir)
            .map_err(|e| BrokerError::ServiceKey(e.to_string()))?;
        if !had_service_key && store.meshes(0).is_ok_and(|(count, _)| count > 0) {
            // A data directory restored without its service.key: what was sealed to the old
            // one fails later, each time, with "wrong key or tampered data".
            tracing::warn!(
                "{} was missing and a new one was made, but this broker already holds meshes: vault entries for deployed services, webhook secrets and watch headers sealed to the old key cannot be opened. Restore service.key from the backup, or store those vault entries again (vault set) and make the webhooks and watches again",
                vault::FILE
            );
        }
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| BrokerError::Bind {
                    addr: config.listen,
                    source,
                })?;
        let local = listener.local_addr().unwrap_or(config.listen);
        let blobs = files::open_blob_store(&config).map_err(BrokerError::Files)?;
        let metrics_token = metrics::load_token(config.metrics_token_file.as_deref())
            .map_err(BrokerError::MetricsToken)?;
        let files = files::Files::new(blobs);
        files.set_upload_slots(config.upload_slots);
        let mut broker = Broker::new(config, store, admin_token, local, files, memory);
        broker.metrics_token = metrics_token;
        broker.key = Some(broker_key);
        broker.service_key = Some(service_key.clone());
        broker.services.set_secrets(Arc::new(vault::ForServices {
            store: broker.store.clone(),
            key: service_key,
        }));
        let broker = Arc::new(broker);
        let lan = match &broker.config.lan_name {
            Some(name) => Some(
                lan::LanAdvert::start(name, local, &broker.public_url(), &key_fingerprint)
                    .map_err(BrokerError::Lan)?,
            ),
            None => None,
        };
        if broker.config.public_url.is_none() && local.ip().is_unspecified() {
            match broker.link_url() {
                Some(url) => tracing::warn!(
                    "listening on every address without --public-url: links will use {url}; pass --public-url with the address people reach this broker at"
                ),
                None => tracing::warn!(
                    "listening on every address without --public-url, and no address others could reach was found: invites are refused until the broker runs with --public-url"
                ),
            }
        }
        Ok(RunningBroker {
            broker,
            listener,
            tls,
            admin_token_created: created,
            key_fingerprint,
            lan,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.broker.local_addr
    }

    /// Whether the port speaks TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The base URL of links (see [`link_url`]).
    pub fn link_url(&self) -> Option<String> {
        self.broker.link_url()
    }

    pub fn admin_token(&self) -> &str {
        &self.broker.admin_token
    }

    pub fn admin_token_path(&self) -> PathBuf {
        self.broker.config.data_dir.join("admin.token")
    }

    /// Serves until `shutdown` completes, then closes every socket with 1001, waits for the
    /// connection tasks, and commits and closes storage.
    pub async fn serve(self, shutdown: impl std::future::Future<Output = ()>) {
        let RunningBroker {
            broker,
            listener,
            lan,
            tls,
            ..
        } = self;
        let tls = tls.map(|tls| {
            let (acceptor, keeper) = tls.start(broker.shutdown.clone());
            broker.tasks.spawn(keeper);
            acceptor
        });
        broker.tasks.spawn(router::run_sweeper(broker.clone()));
        tokio::spawn(handlers::deployments::start_all(broker.clone()));
        broker
            .tasks
            .spawn(files::endpoints::run_sweeper(broker.clone()));
        broker.tasks.spawn(scheduler::run(broker.clone()));
        broker.tasks.spawn(dashboard::run_sampler(broker.clone()));
        watches::resume_all(&broker);
        telegram::resume_all(&broker);
        broker.tasks.spawn(clock::run(broker.clone()));
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        // Counted before any byte is read: over a cap, the client is told why
                        // and the socket closed, before HTTP or the WebSocket cost anything.
                        let slot = match broker.connections.admit(peer.ip()) {
                            Ok(slot) => slot,
                            Err(refused) => {
                                limits::refuse_connection(&broker, stream, tls.clone(), refused);
                                continue;
                            }
                        };
                        let _ = stream.set_nodelay(true);
                        let broker = broker.clone();
                        match tls.clone() {
                            None => {
                                broker.tasks.spawn(http::serve_connection(broker.clone(), TokioIo::new(stream), peer, slot));
                            }
                            Some(acceptor) => {
                                let tasks = broker.tasks.clone();
                                tasks.spawn(async move {
                                    match acceptor.accept(stream).await {
                                        Ok(Some(tls)) => http::serve_connection(broker, TokioIo::new(tls), peer, slot).await,
                                        Ok(None) => {}
                                        Err(e) => tracing::debug!("TLS handshake with {peer} failed: {e}"),
                                    }
                                });
                            }
                        }
                    }
                    Err(e) => {
                        // Out of file descriptors and the like: wait a moment rather than spin.
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        }
        drop(listener);
        if let Some(lan) = lan {
            lan.stop().await;
        }
        tracing::info!("shutting down: closing connections");
        broker.shutdown.cancel();
        broker.tasks.close();
        if tokio::time::timeout(Duration::from_secs(10), broker.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("some connections did not close within 10 s");
        }
        broker.memory.close();
        // Saves the vector graphs changed since start-up (the next start need not rebuild).
        let vectors = (broker.vectors.clone(), broker.store.clone());
        let _ = tokio::task::spawn_blocking(move || vectors.0.close(&vectors.1)).await;
        broker.store.close();
        tracing::info!("storage committed and closed");
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
