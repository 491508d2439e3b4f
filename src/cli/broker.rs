//! `claudemesh broker`: run the broker in the foreground.

use std::net::SocketAddr;
use std::path::PathBuf;

use argh::FromArgs;

use super::output::outln;
use super::{CliError, CliResult};
use crate::broker::{BrokerConfig, RunningBroker, shutdown_signal};

#[derive(FromArgs)]
#[argh(subcommand, name = "broker")]
/// run the broker (HTTP + WebSocket on one port, storage in the data directory)
pub struct BrokerCmd {
    /// address to listen on (default 127.0.0.1:7900; port 0 picks a free one)
    #[argh(option, default = "String::from(\"127.0.0.1:7900\")")]
    listen: String,
    /// data directory (default $CLAUDEMESH_DATA_DIR or ~/.local/share/claudemesh)
    #[argh(option)]
    data: Option<PathBuf>,
    /// let anyone create meshes without the admin token
    #[argh(switch)]
    open: bool,
    /// URL people reach this broker at, used in invite links (default http://<listen>)
    #[argh(option)]
    public_url: Option<String>,
    /// largest WebSocket frame / request body accepted (default 65536)
    #[argh(option, default = "crate::protocol::MAX_MESSAGE_BYTES")]
    max_message_bytes: usize,
    /// most live connections per mesh (default 100)
    #[argh(option, default = "100")]
    max_connections_per_mesh: usize,
    /// how long messages wait for offline recipients, e.g. 12h, 7d (default 7d)
    #[argh(option, default = "String::from(\"7d\")")]
    retention: String,
    /// sustained messages per second each member may send (default 1000)
    #[argh(option, default = "1000.0")]
    send_rate: f64,
    /// messages a member may send in a burst before the rate applies (default 5000)
    #[argh(option, default = "5000.0")]
    send_burst: f64,
    /// push unacknowledged messages again after this long (default 30s)
    #[argh(option, default = "String::from(\"30s\")")]
    redeliver_after: String,
    /// where file bytes go: s3://bucket/prefix (AWS S3 or MinIO, set up by AWS_* variables);
    /// default <data>/files
    #[argh(option)]
    files: Option<String>,
    /// largest file an upload may be, in bytes (default 52428800, 50 MB)
    #[argh(option, default = "52_428_800")]
    max_upload_bytes: u64,
    /// how long ephemeral files live, e.g. 24h, 30m (default 24h)
    #[argh(option, default = "String::from(\"24h\")")]
    ephemeral_ttl: String,
    /// drop a WebSocket silent (no frames, no pongs) for this long, e.g. 75s, 10s (default 75s)
    #[argh(option, default = "String::from(\"75s\")")]
    idle_timeout: String,
}

/// `$CLAUDEMESH_DATA_DIR`, else the per-user data directory.
pub fn default_data_dir() -> PathBuf {
    std::env::var_os("CLAUDEMESH_DATA_DIR")
        .map(PathBuf::from)
        .or_else(|| dirs::data_dir().map(|d| d.join("claudemesh")))
        .unwrap_or_else(|| PathBuf::from("claudemesh-data"))
}

impl BrokerCmd {
    pub async fn run(self) -> CliResult {
        let listen: SocketAddr = self.listen.parse().map_err(|_| {
            CliError::Usage(format!(
                "--listen must be host:port with a numeric host, e.g. 127.0.0.1:7900 (got \"{}\")",
                self.listen
            ))
        })?;
        if self.max_message_bytes < 1024 {
            return Err(CliError::Usage(
                "--max-message-bytes must be at least 1024".into(),
            ));
        }
        let retention = crate::protocol::time::parse_duration(&self.retention)
            .map_err(|e| CliError::Usage(format!("--retention: {e}")))?;
        if !(self.send_rate > 0.0 && self.send_burst >= 1.0) {
            return Err(CliError::Usage(
                "--send-rate must be above 0 and --send-burst at least 1".into(),
            ));
        }
        let ephemeral_ttl = crate::protocol::time::parse_duration(&self.ephemeral_ttl)
            .map_err(|e| CliError::Usage(format!("--ephemeral-ttl: {e}")))?;
        if ephemeral_ttl.is_zero() || self.max_upload_bytes == 0 {
            return Err(CliError::Usage(
                "--ephemeral-ttl and --max-upload-bytes must be above 0".into(),
            ));
        }
        let data_dir = self.data.unwrap_or_else(default_data_dir);
        let mut config = BrokerConfig::new(listen, data_dir.clone());
        config.open = self.open;
        config.public_url = self.public_url;
        config.max_message_bytes = self.max_message_bytes;
        config.max_connections_per_mesh = self.max_connections_per_mesh.max(1);
        config.retention = retention;
        config.send_rate = self.send_rate;
        config.send_burst = self.send_burst;
        config.redeliver_after = crate::protocol::time::parse_duration(&self.redeliver_after)
            .map_err(|e| CliError::Usage(format!("--redeliver-after: {e}")))?
            .max(std::time::Duration::from_millis(200));
        config.files_url = self.files;
        config.max_upload_bytes = self.max_upload_bytes;
        config.ephemeral_ttl = ephemeral_ttl;
        config.idle_timeout = crate::protocol::time::parse_duration(&self.idle_timeout)
            .map_err(|e| CliError::Usage(format!("--idle-timeout: {e}")))?
            .max(std::time::Duration::from_millis(200));
        let broker = RunningBroker::bind(config)
            .await
            .map_err(|e| CliError::failed(format!("cannot start the broker: {e}")))?;
        let addr = broker.local_addr();
        outln!("claudemesh broker listening on {addr} (WebSocket ws://{addr}/ws)");
        outln!("data directory: {}", data_dir.display());
        if self.open {
            outln!("open mode: anyone who can reach this port may create meshes");
        } else if broker.admin_token_created {
            outln!(
                "admin token (needed by `claudemesh create`): {}",
                broker.admin_token()
            );
            outln!("  saved in {}", broker.admin_token_path().display());
        } else {
            outln!("admin token: in {}", broker.admin_token_path().display());
        }
        use std::io::Write;
        let _ = std::io::stdout().flush();
        broker.serve(shutdown_signal()).await;
        Ok(())
    }
}
