//! `claudemesh broker`: run the broker in the foreground.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;

use argh::{ArgsInfo, FromArgs};

use super::logging::LogFormat;
use super::output::outln;
use super::{CliError, CliResult};
use crate::broker::{BrokerConfig, BrokerError, RunningBroker, TlsSource, shutdown_signal};

/// The longest `--retention`: a century (of 365.25-day years, as the flag reads `100y`).
const MAX_RETENTION_SECS: u64 = 100 * 31_557_600;

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "broker", help_triggers("-h", "--help"))]
#[argh(example = "claudemesh broker --listen 127.0.0.1:7900 --data /var/lib/claudemesh")]
/// run the broker (HTTP + WebSocket on one port, storage in the data directory)
pub struct BrokerCmd {
    /// address to listen on, host:port (default 127.0.0.1:7900; port 0 picks a free one); off
    /// loopback it needs TLS (--tls-cert/--tls-key or --acme) or --insecure-plaintext
    #[argh(option, default = "String::from(\"127.0.0.1:7900\")")]
    listen: String,
    /// PEM certificate chain (leaf first) to serve TLS with; read again when it changes
    #[argh(option)]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert
    #[argh(option)]
    tls_key: Option<PathBuf>,
    /// obtain and renew a certificate for this domain over ACME (TLS-ALPN-01 on this port,
    /// which the CA reaches on 443); repeat for more names; cached in <data>/acme
    #[argh(option)]
    acme: Vec<String>,
    /// contact e-mail for the ACME account
    #[argh(option)]
    acme_email: Option<String>,
    /// ACME directory URL (default: Let's Encrypt production)
    #[argh(option)]
    acme_directory: Option<String>,
    /// PEM CA that the ACME directory's HTTPS certificate must chain to (a test CA such as
    /// pebble's; default: the public roots)
    #[argh(option)]
    acme_ca_file: Option<PathBuf>,
    /// listen without TLS on an address other machines can reach: the admin token, invite
    /// codes and file tokens then travel in clear text
    #[argh(switch)]
    insecure_plaintext: bool,
    /// run deployed MCP services without a sandbox when bubblewrap is missing or fails: they
    /// then run as this broker's user, with its files and network
    #[argh(switch)]
    allow_unsandboxed_services: bool,
    /// services one mesh may have deployed at once (default 20)
    #[argh(option, default = "crate::store::MAX_DEPLOYMENTS")]
    max_services: usize,
    /// let URL watches reach loopback, private, link-local and other non-public addresses
    /// (refused by default: a watch is a request made from inside the broker's network)
    #[argh(switch)]
    allow_private_watch_targets: bool,
    /// the Telegram Bot API's base URL (default https://api.telegram.org); its bridge's calls
    /// are not subject to the watches' address rule
    #[argh(option)]
    telegram_api_url: Option<String>,
    /// data directory (default $CLAUDEMESH_DATA_DIR or ~/.local/share/claudemesh)
    #[argh(option)]
    data: Option<PathBuf>,
    /// let anyone create meshes without the admin token
    #[argh(switch)]
    open: bool,
    /// URL people reach this broker at, used in links, e.g. https://mesh.example.com (default:
    /// https://<ACME domain>, else the listen address, with a wildcard replaced by this
    /// machine's outward address)
    #[argh(option)]
    public_url: Option<String>,
    /// largest WebSocket frame / request body accepted (default 65536)
    #[argh(option, default = "crate::protocol::MAX_MESSAGE_BYTES")]
    max_message_bytes: usize,
    /// most live connections per mesh (default 100)
    #[argh(option, default = "100")]
    max_connections_per_mesh: usize,
    /// how long messages wait for offline recipients, e.g. 12h, 7d (default 7d; at most 100y)
    #[argh(option, default = "String::from(\"7d\")")]
    retention: String,
    /// sustained messages per second each member may send (default 1000)
    #[argh(option, default = "1000.0")]
    send_rate: f64,
    /// messages a member may send in a burst before the rate applies (default 5000)
    #[argh(option, default = "5000.0")]
    send_burst: f64,
    /// sustained audited changes per second each member may make: state writes, tasks, blocks,
    /// renames… (default 50)
    #[argh(option, default = "50.0")]
    audit_rate: f64,
    /// audited changes a member may make in a burst before the rate applies (default 2000)
    #[argh(option, default = "2000.0")]
    audit_burst: f64,
    /// push unacknowledged messages again after this long (default 30s)
    #[argh(option, default = "String::from(\"30s\")")]
    redeliver_after: String,
    /// a `working` status with no fresh report reverts to idle after this long, e.g. 30m,
    /// 90s (default 10m; 1s to 365d)
    #[argh(option, default = "String::from(\"10m\")")]
    working_ttl: String,
    /// where file bytes go: s3://bucket/prefix (AWS S3 or MinIO, set up by AWS_* variables);
    /// default <data>/files
    #[argh(option)]
    files: Option<String>,
    /// largest file an upload may be, in bytes (default 52428800, 50 MB)
    #[argh(option, default = "crate::broker::DEFAULT_MAX_UPLOAD_BYTES")]
    max_upload_bytes: u64,
    /// how long ephemeral files live, e.g. 24h, 30m (default 24h)
    #[argh(option)]
    ephemeral_ttl: Option<String>,
    /// drop a WebSocket silent (no frames, no pongs) for this long, e.g. 75s, 10s (default 75s)
    #[argh(option, default = "String::from(\"75s\")")]
    idle_timeout: String,
    /// most state keys one mesh may hold (default 10000)
    #[argh(option, default = "crate::store::MeshQuotas::default().state_keys")]
    max_state_keys: u64,
    /// most bytes of state (keys + values as JSON) one mesh may hold (default 67108864, 64 MiB)
    #[argh(option, default = "crate::store::MeshQuotas::default().state_bytes")]
    max_state_bytes: u64,
    /// most memories one mesh may hold (default 100000)
    #[argh(option, default = "crate::store::MeshQuotas::default().memories")]
    max_memories: u64,
    /// most tasks (done ones included) one mesh may hold (default 10000)
    #[argh(option, default = "crate::store::MeshQuotas::default().tasks")]
    max_tasks: u64,
    /// most files one mesh may hold (default 10000)
    #[argh(option, default = "crate::store::MeshQuotas::default().files")]
    max_files: u64,
    /// most bytes of files one mesh may hold (default 5368709120, 5 GiB)
    #[argh(option, default = "crate::store::MeshQuotas::default().file_bytes")]
    max_file_bytes: u64,
    /// most streams one mesh may hold (default 1000)
    #[argh(option, default = "crate::store::MeshQuotas::default().streams")]
    max_streams: u64,
    /// most shared contexts (one per member) one mesh may hold (default 1000)
    #[argh(option, default = "crate::store::MeshQuotas::default().contexts")]
    max_contexts: u64,
    /// largest SQL database one mesh may have, in bytes (default 67108864, 64 MiB)
    #[argh(option, default = "crate::store::sql::DEFAULT_MAX_SQL_BYTES")]
    max_sql_bytes: u64,
    /// most bytes of vector records (vectors at 4 bytes a number, ids, metadata, text) one
    /// mesh may hold (default 536870912, 512 MiB)
    #[argh(option, default = "crate::store::DEFAULT_MAX_VECTOR_BYTES")]
    max_vector_bytes: u64,
    /// stop an SQL statement that runs longer than this, e.g. 2s, 500ms (default 2s)
    #[argh(option, default = "String::from(\"2s\")")]
    sql_timeout: String,
    /// bytes of replies and pushes that may wait for one connection before it is cut off as a
    /// slow consumer (default 8388608, 8 MiB)
    #[argh(option, default = "crate::broker::DEFAULT_MAX_OUTBOX_BYTES")]
    max_outbox_bytes: usize,
    /// messages that may wait for one recipient; sends past it are refused (default 100000)
    #[argh(option, default = "crate::broker::DEFAULT_MAX_QUEUED_PER_RECIPIENT")]
    max_queued_per_recipient: u64,
    /// file holding a bearer token that GET /metrics must present (Authorization: Bearer);
    /// without it /metrics answers loopback clients only
    #[argh(option)]
    metrics_token_file: Option<PathBuf>,
    /// most open TCP connections, all clients together (default 10000)
    #[argh(option, default = "10_000")]
    max_connections: usize,
    /// most open TCP connections from one IP address (default 256)
    #[argh(option, default = "256")]
    max_connections_per_ip: usize,
    /// uploads streamed at once (default 8)
    #[argh(option, default = "8")]
    upload_slots: usize,
    /// end an upload that sends less than 16 KiB in this long, e.g. 20s (default 20s)
    #[argh(option, default = "String::from(\"20s\")")]
    upload_idle_timeout: String,
    /// refuse (503) an upload that waited this long for a free slot, e.g. 30s (default 30s)
    #[argh(option, default = "String::from(\"30s\")")]
    upload_slot_wait: String,
    /// announce this broker on the local network (mDNS, _claudemesh._tcp) so `claudemesh
    /// discover` finds it; needs a --listen address others can reach
    #[argh(switch)]
    lan: bool,
    /// the name the LAN advert carries, for `create --broker lan:NAME` (default: the host name)
    #[argh(option)]
    lan_name: Option<String>,
    /// log lines as text (coloured only on a terminal) or json, one object per line
    #[argh(option, default = "LogFormat::Text")]
    pub log_format: LogFormat,
}

/// `--listen`: `host:port`, where host is an address or a name (`localhost:7900`), which must
/// resolve; a name listens on its first address.
async fn parse_listen(listen: &str) -> Result<SocketAddr, CliError> {
    if let Ok(addr) = listen.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let usage = |why: String| {
        CliError::Usage(format!(
            "--listen must be host:port, e.g. 127.0.0.1:7900, localhost:7900 or 0.0.0.0:443 (got \"{listen}\": {why})"
        ))
    };
    let (host, port) = listen
        .rsplit_once(':')
        .ok_or_else(|| usage("no port".into()))?;
    let port: u16 = port
        .parse()
        .map_err(|_| usage("the port is not a number".into()))?;
    let mut found: Vec<SocketAddr> = tokio::net::lookup_host((host.trim_matches(['[', ']']), port))
        .await
        .map_err(|e| usage(format!("cannot resolve {host}: {e}")))?
        .collect();
    // localhost may come as ::1 first; either is loopback, 127.0.0.1 is what most expect.
    found.sort_by_key(|a| !a.is_ipv4());
    found
        .first()
        .copied()
        .ok_or_else(|| usage(format!("{host} has no address")))
}

/// A DNS name an ACME CA can issue for: dot-separated labels of letters, digits and `-`.
fn is_domain_name(name: &str) -> bool {
    name.len() <= 253
        && name.parse::<std::net::IpAddr>().is_err()
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

/// `$CLAUDEMESH_DATA_DIR`, else the per-user data directory.
pub fn default_data_dir() -> PathBuf {
    std::env::var_os("CLAUDEMESH_DATA_DIR")
        .map(PathBuf::from)
        .or_else(|| dirs::data_dir().map(|d| d.join("claudemesh")))
        .unwrap_or_else(|| PathBuf::from("claudemesh-data"))
}

impl BrokerCmd {
    /// The connection, upload and metrics flags.
    fn apply_limits(&self, config: &mut BrokerConfig) -> CliResult {
        if self.max_connections == 0 || self.max_connections_per_ip == 0 || self.upload_slots == 0 {
            return Err(CliError::Usage(
                "--max-connections, --max-connections-per-ip and --upload-slots must be above 0"
                    .into(),
            ));
        }
        let duration = |flag: &str, value: &str| {
            crate::protocol::time::parse_duration(value)
                .map_err(|e| CliError::Usage(format!("--{flag}: {e}")))
                .map(|d| d.max(std::time::Duration::from_millis(100)))
        };
        config.metrics_token_file = self.metrics_token_file.clone();
        config.max_connections = self.max_connections;
        config.max_connections_per_ip = self.max_connections_per_ip;
        config.upload_slots = self.upload_slots;
        config.upload_idle_timeout = duration("upload-idle-timeout", &self.upload_idle_timeout)?;
        config.upload_slot_wait = duration("upload-slot-wait", &self.upload_slot_wait)?;
        Ok(())
    }

    /// Where the certificate comes from, if anywhere.
    fn tls_source(&self) -> Result<Option<TlsSource>, CliError> {
        match (&self.tls_cert, &self.tls_key, self.acme.is_empty()) {
            (None, None, true) => {
                if self.acme_email.is_some()
                    || self.acme_directory.is_some()
                    || self.acme_ca_file.is_some()
                {
                    return Err(CliError::Usage(
                        "--acme-email, --acme-directory and --acme-ca-file go with --acme DOMAIN"
                            .into(),
                    ));
                }
                Ok(None)
            }
            (Some(cert), Some(key), true) => Ok(Some(TlsSource::Files {
                cert: cert.clone(),
                key: key.clone(),
            })),
            (None, None, false) => {
                if let Some(bad) = self.acme.iter().find(|d| !is_domain_name(d)) {
                    return Err(CliError::Usage(format!(
                        "--acme needs a DNS name that resolves to this machine, e.g. mesh.example.com (got \"{bad}\")"
                    )));
                }
                Ok(Some(TlsSource::Acme {
                    domains: self.acme.clone(),
                    email: self.acme_email.clone(),
                    directory: self.acme_directory.clone().unwrap_or_else(|| {
                        rustls_acme::acme::LETS_ENCRYPT_PRODUCTION_DIRECTORY.into()
                    }),
                    directory_ca: self.acme_ca_file.clone(),
                }))
            }
            (_, _, false) => Err(CliError::Usage(
                "give either --tls-cert/--tls-key or --acme, not both".into(),
            )),
            _ => Err(CliError::Usage(
                "--tls-cert and --tls-key go together".into(),
            )),
        }
    }

    /// The broker's configuration from the flags (checked; nothing is started).
    async fn config(&self) -> Result<BrokerConfig, CliError> {
        let listen = parse_listen(&self.listen).await?;
        if self.max_message_bytes < 1024 {
            return Err(CliError::Usage(
                "--max-message-bytes must be at least 1024".into(),
            ));
        }
        let retention = crate::protocol::time::parse_duration(&self.retention)
            .map_err(|e| CliError::Usage(format!("--retention: {e}")))?;
        // No message lives on the broker for more than a century: a longer retention is a typo
        // (and one of hundreds of millions of years, which humantime reads, would reach the end
        // of the millisecond clock).
        if retention.is_zero() || retention > std::time::Duration::from_secs(MAX_RETENTION_SECS) {
            return Err(CliError::Usage(format!(
                "--retention must be above 0 and at most 100 years, not {}",
                self.retention
            )));
        }
        if !(self.send_rate > 0.0 && self.send_burst >= 1.0) {
            return Err(CliError::Usage(
                "--send-rate must be above 0 and --send-burst at least 1".into(),
            ));
        }
        if !(self.audit_rate > 0.0 && self.audit_burst >= 1.0) {
            return Err(CliError::Usage(
                "--audit-rate must be above 0 and --audit-burst at least 1".into(),
            ));
        }
        let ephemeral_ttl = match &self.ephemeral_ttl {
            Some(ttl) => crate::protocol::time::parse_duration(ttl)
                .map_err(|e| CliError::Usage(format!("--ephemeral-ttl: {e}")))?,
            None => crate::broker::DEFAULT_EPHEMERAL_TTL,
        };
        if ephemeral_ttl.is_zero() || self.max_upload_bytes == 0 {
            return Err(CliError::Usage(
                "--ephemeral-ttl and --max-upload-bytes must be above 0".into(),
            ));
        }
        let data_dir = self.data.clone().unwrap_or_else(default_data_dir);
        let mut config = BrokerConfig::new(listen, data_dir);
        config.tls = self.tls_source()?;
        config.insecure_plaintext = self.insecure_plaintext;
        config.allow_unsandboxed_services = self.allow_unsandboxed_services;
        config.max_services = self.max_services;
        config.sql = crate::store::SqlLimits {
            max_bytes: self.max_sql_bytes.max(64 * 1024),
            time_budget: crate::protocol::time::parse_duration(&self.sql_timeout)
                .map_err(|e| CliError::Usage(format!("--sql-timeout: {e}")))?
                .max(std::time::Duration::from_millis(10)),
        };
        config.allow_private_watch_targets = self.allow_private_watch_targets;
        config.max_vector_bytes = self.max_vector_bytes;
        if let Some(url) = &self.telegram_api_url {
            config.telegram_api_url = url.trim_end_matches('/').to_string();
        }
        self.apply_limits(&mut config)?;
        config.open = self.open;
        config.lan_name = (self.lan || self.lan_name.is_some()).then(|| {
            self.lan_name
                .clone()
                .or_else(super::hostname)
                .unwrap_or_else(|| "claudemesh".into())
        });
        config.public_url = self.public_url.clone();
        config.max_message_bytes = self.max_message_bytes;
        config.max_connections_per_mesh = self.max_connections_per_mesh.max(1);
        config.retention = retention;
        config.send_rate = self.send_rate;
        config.send_burst = self.send_burst;
        config.audit_rate = self.audit_rate;
        config.audit_burst = self.audit_burst;
        config.redeliver_after = crate::protocol::time::parse_duration(&self.redeliver_after)
            .map_err(|e| CliError::Usage(format!("--redeliver-after: {e}")))?
            .max(std::time::Duration::from_millis(200));
        config.working_ttl = crate::protocol::time::parse_duration(&self.working_ttl)
            .map_err(|e| CliError::Usage(format!("--working-ttl: {e}")))?
            .clamp(
                std::time::Duration::from_secs(1),
                std::time::Duration::from_secs(365 * 24 * 3600),
            );
        config.files_url = self.files.clone();
        config.max_upload_bytes = self.max_upload_bytes;
        config.ephemeral_ttl = ephemeral_ttl;
        config.idle_timeout = crate::protocol::time::parse_duration(&self.idle_timeout)
            .map_err(|e| CliError::Usage(format!("--idle-timeout: {e}")))?
            .max(std::time::Duration::from_millis(200));
        config.quotas = crate::store::MeshQuotas {
            state_keys: self.max_state_keys,
            state_bytes: self.max_state_bytes,
            memories: self.max_memories,
            tasks: self.max_tasks,
            files: self.max_files,
            file_bytes: self.max_file_bytes,
            streams: self.max_streams,
            contexts: self.max_contexts,
        };
        if self.max_outbox_bytes < 64 * 1024 || self.max_queued_per_recipient == 0 {
            return Err(CliError::Usage(
                "--max-outbox-bytes must be at least 65536 and --max-queued-per-recipient at least 1"
                    .into(),
            ));
        }
        config.max_outbox_bytes = self.max_outbox_bytes;
        config.max_queued_per_recipient = self.max_queued_per_recipient;
        if let Some(url) = &config.public_url
            && !(url.starts_with("https://") || url.starts_with("http://"))
        {
            return Err(CliError::Usage(format!(
                "--public-url must start with https:// or http:// (got \"{url}\")"
            )));
        }
        Ok(config)
    }

    /// The broker's configuration from these flags, with the checks the broker makes before it
    /// starts ([`BrokerConfig::preflight`]); nothing is started or written.
    pub async fn preflight(&self) -> Result<BrokerConfig, CliError> {
        let config = self.config().await?;
        config
            .preflight()
            .map_err(|e| CliError::Usage(e.to_string()))?;
        Ok(config)
    }

    pub async fn run(self) -> CliResult {
        crate::store::avoid_huge_pages();
        match crate::broker::deployments::sandbox::raise_fd_limit() {
            Ok(n) => tracing::debug!("open files: up to {n}"),
            Err(e) => tracing::debug!("cannot raise the limit on open files: {e}"),
        }
        let config = self.config().await?;
        let data_dir = config.data_dir.clone();
        let config_lan_name = config.lan_name.clone();
        let broker = RunningBroker::bind(config).await.map_err(|e| match e {
            BrokerError::Plaintext(_) => CliError::Failed(e.to_string()),
            e => CliError::failed(format!("cannot start the broker: {e}")),
        })?;
        let addr = broker.local_addr();
        let ws = if broker.is_tls() { "wss" } else { "ws" };
        outln!("claudemesh broker listening on {addr} (WebSocket {ws}://{addr}/ws)");
        match broker.link_url() {
            Some(url) => outln!("links use {url}"),
            None => outln!("links: none can be made until --public-url is given"),
        }
        outln!("data directory: {}", data_dir.display());
        outln!("broker key fingerprint: {}", broker.key_fingerprint);
        if let Some(name) = &config_lan_name {
            outln!(
                "announced on the LAN as \"{name}\": `claudemesh discover` lists it (a hint only: compare the fingerprint)"
            );
        }
        if self.open {
            outln!("open mode: anyone who can reach this port may create meshes");
        } else if broker.admin_token_created && std::io::stdout().is_terminal() {
            outln!(
                "admin token (needed by `claudemesh create`): {}",
                broker.admin_token()
            );
            outln!("  saved in {}", broker.admin_token_path().display());
        } else if broker.admin_token_created {
            // Not a terminal: a service's journal or a log file, where a secret must not land.
            outln!(
                "admin token (needed by `claudemesh create`): made and saved in {} (printed only to a terminal)",
                broker.admin_token_path().display()
            );
        } else {
            outln!("admin token: in {}", broker.admin_token_path().display());
        }
        use std::io::Write;
        let _ = std::io::stdout().flush();
        broker.serve(shutdown_signal()).await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn listen_takes_addresses_and_names() {
        assert_eq!(
            parse_listen("0.0.0.0:7900").await.unwrap().to_string(),
            "0.0.0.0:7900"
        );
        assert_eq!(
            parse_listen("[::1]:1").await.unwrap().to_string(),
            "[::1]:1"
        );
        let local = parse_listen("localhost:7900").await.unwrap();
        assert!(local.ip().is_loopback() && local.port() == 7900, "{local}");
        for bad in ["7900", "localhost:http", "localhost:70000"] {
            assert!(parse_listen(bad).await.is_err(), "{bad}");
        }
    }

    /// `claudemesh broker` with no flags runs the broker the library's defaults describe: a
    /// default changed on one side only shows here.
    #[tokio::test]
    async fn the_flags_defaults_are_the_brokers_defaults() {
        use argh::FromArgs;
        let cmd = BrokerCmd::from_args(&["broker"], &["--data", "/tmp/cm-defaults"])
            .expect("no flag is required");
        let config = cmd.config().await.expect("the defaults are valid");
        let expected =
            BrokerConfig::new("127.0.0.1:7900".parse().unwrap(), "/tmp/cm-defaults".into());
        assert_eq!(format!("{config:#?}"), format!("{expected:#?}"));
    }

    #[test]
    fn acme_names_are_dns_names() {
        assert!(is_domain_name("mesh.example.com") && is_domain_name("localhost"));
        for bad in ["", "127.0.0.1", "a..b", "-a.b", "a_b.c", "ex ample.com"] {
            assert!(!is_domain_name(bad), "{bad}");
        }
    }
}
