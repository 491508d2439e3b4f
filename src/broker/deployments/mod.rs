//! Broker-hosted MCP services (issue 15 tier 2): the running side. Each deployment is a child
//! process in the [`sandbox`], driven over stdio with rmcp's client side, watched by its own
//! [`supervisor`] task that restarts it with backoff. This part never sees `Broker`: the
//! handlers (`handlers/deployments.rs`) decide what runs; this runs it, keeps its log tail and
//! answers calls. A service limited to named [`hosts`] reaches them through its own [`proxy`],
//! relayed inside the sandbox by [`service_net`].

pub mod cgroup;
pub mod hosts;
mod proxy;
pub mod sandbox;
pub mod service_net;
pub mod source;
mod supervisor;
mod tunnel;

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::Value;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use zeroize::Zeroizing;

use crate::client::shared_tools::StdioServer;
use crate::protocol::messages::McpToolSpec;
use sandbox::{Isolation, Network};

/// Lines of a service's stderr (and of the supervisor's notes) kept for `mcp_logs`.
pub const LOG_LINES: usize = 1000;
/// The longest line kept.
const LOG_LINE_CHARS: usize = 2000;

/// A vault entry opened for a service.
pub enum Secret {
    /// Becomes the value of the environment variable that references it.
    Env(Zeroizing<Vec<u8>>),
    /// Becomes a read-only file at `mount_path` inside the sandbox; the variable holds the path.
    File {
        mount_path: String,
        value: Zeroizing<Vec<u8>>,
    },
}

/// Where `$vault:NAME` references are opened: the deployer's vault entry `NAME`, sealed to the
/// broker's service key. Wired to the vault where it exists; [`NoVault`] until then.
pub trait SecretSource: Send + Sync {
    fn open(&self, mesh_id: &str, deployer_member_id: &str, name: &str) -> Result<Secret, String>;
}

/// No vault on this broker: every `$vault:` reference fails.
pub struct NoVault;

impl SecretSource for NoVault {
    fn open(&self, _: &str, _: &str, name: &str) -> Result<Secret, String> {
        Err(format!(
            "vault not available on this broker: cannot resolve $vault:{name}"
        ))
    }
}

/// Where a service is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Starting,
    Running,
    /// Ended or failed to start; starts again after a backoff.
    Restarting,
    /// The last start failed (it is retried after a backoff).
    Failed,
    Stopped,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Starting => "building",
            Status::Running => "running",
            Status::Restarting => "restarting",
            Status::Failed => "failed",
            Status::Stopped => "stopped",
        }
    }
}

/// What to start, worked out by the handlers from a deployment.
#[derive(Clone)]
pub struct Launch {
    pub mesh_id: String,
    pub name: String,
    pub deployer_member_id: String,
    pub program: Vec<String>,
    /// As deployed: plain values and `$vault:` references (opened at each start).
    pub env: Vec<(String, String)>,
    pub memory_mb: u64,
    /// CPUs' worth of time it may use (`config.cpus`); enforced where cgroups can be made.
    pub cpus: Option<f64>,
    pub network: Network,
}

#[derive(Default)]
struct ServiceState {
    status: Option<Status>,
    tools: Vec<McpToolSpec>,
    server: Option<Arc<StdioServer>>,
    restarts: u32,
    error: Option<String>,
    sandboxed: bool,
    /// The service's own cgroups, when it runs in some.
    cgroups: Vec<String>,
    /// Bumped at each settled start attempt, so a waiter sees a fresh outcome.
    attempts: u64,
}

/// A snapshot of a service for answers.
#[derive(Debug, Clone)]
pub struct ServiceView {
    pub status: Status,
    pub tools: Vec<McpToolSpec>,
    pub restarts: u32,
    pub error: Option<String>,
    pub sandboxed: bool,
    /// The cgroup directories that hold it and its limits; empty: per-process rlimits only.
    pub cgroups: Vec<String>,
}

/// What a caller of a service that is not running is told: the command that shows why.
pub fn not_running(name: &str) -> String {
    format!(
        "the service \"{name}\" is not running now (claudemesh deployments status {name} shows why)"
    )
}

/// One deployed service while the broker runs.
pub struct Service {
    /// Its name in its mesh, for what it says to callers.
    name: String,
    state: Mutex<ServiceState>,
    logs: Mutex<VecDeque<String>>,
    stop: CancellationToken,
    settled: watch::Sender<u64>,
}

impl Service {
    fn new(name: &str) -> Service {
        Service {
            name: name.to_string(),
            state: Mutex::new(ServiceState::default()),
            logs: Mutex::new(VecDeque::new()),
            stop: CancellationToken::new(),
            settled: watch::channel(0).0,
        }
    }

    fn state(&self) -> MutexGuard<'_, ServiceState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn view(&self) -> ServiceView {
        let s = self.state();
        // Between its end and the supervisor noticing, a service is not running any more.
        let ended = s.server.as_ref().is_some_and(|srv| srv.is_closed());
        ServiceView {
            status: match s.status.unwrap_or(Status::Starting) {
                Status::Running if ended => Status::Restarting,
                other => other,
            },
            tools: s.tools.clone(),
            restarts: s.restarts,
            error: s.error.clone(),
            sandboxed: s.sandboxed,
            cgroups: s.cgroups.clone(),
        }
    }

    /// Appends a line to the log tail, cut to a bounded length.
    pub fn log(&self, line: &str) {
        let line: String = line.chars().take(LOG_LINE_CHARS).collect();
        let mut logs = self.logs.lock().unwrap_or_else(|p| p.into_inner());
        if logs.len() >= LOG_LINES {
            logs.pop_front();
        }
        logs.push_back(line);
    }

    /// The last `n` log lines, oldest first.
    pub fn tail(&self, n: usize) -> Vec<String> {
        let logs = self.logs.lock().unwrap_or_else(|p| p.into_inner());
        logs.iter()
            .skip(logs.len().saturating_sub(n))
            .cloned()
            .collect()
    }

    /// Waits until a start attempt after `after` has settled (running or failed); returns the
    /// attempt count to wait past next time.
    pub async fn settled_after(&self, after: u64) -> u64 {
        let mut rx = self.settled.subscribe();
        match rx.wait_for(|n| *n > after).await {
            Ok(n) => *n,
            Err(_) => after,
        }
    }

    pub fn attempts(&self) -> u64 {
        self.state().attempts
    }

    /// Calls a tool of the running server; `Err` says why it could not be called.
    pub async fn call(&self, tool: &str, args: &Value, caller: Value) -> Result<Value, String> {
        let server = self.state().server.clone();
        match server {
            Some(server) if !server.is_closed() => server.call_tool(tool, args, caller).await,
            _ => Err(not_running(&self.name)),
        }
    }
}

/// Every deployed service this broker runs.
pub struct Services {
    data_dir: PathBuf,
    allow_unsandboxed: bool,
    /// Services one mesh may have deployed (`--max-services`).
    pub max_per_mesh: usize,
    /// One lock per mesh, held by a deploy from its quota check to its stored row, so
    /// concurrent deploys cannot all pass the check.
    deploying: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    isolation: tokio::sync::OnceCell<Result<Isolation, String>>,
    cgroups: std::sync::OnceLock<Option<Arc<cgroup::Cgroups>>>,
    running: Mutex<HashMap<(String, String), Arc<Service>>>,
    secrets: Mutex<Arc<dyn SecretSource>>,
    shutdown: CancellationToken,
}

impl Services {
    pub fn new(
        data_dir: &Path,
        allow_unsandboxed: bool,
        max_per_mesh: usize,
        shutdown: CancellationToken,
    ) -> Services {
        // Files a service writes are the broker user's on the host (the sandbox maps its uid to
        // the broker's): `<data>/services` is the broker's alone (0700), so no other local user
        // can reach them, say to run a setuid file a service left in its `work`.
        let root = data_dir.join("services");
        if std::fs::create_dir_all(&root).is_ok() {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o700));
        }
        Services {
            data_dir: data_dir.to_path_buf(),
            allow_unsandboxed,
            max_per_mesh,
            deploying: Default::default(),
            isolation: Default::default(),
            cgroups: Default::default(),
            running: Default::default(),
            secrets: Mutex::new(Arc::new(NoVault)),
            shutdown,
        }
    }

    /// The mesh's deploy lock: held from a deploy's quota check until its row is stored.
    pub async fn deploy_lock(&self, mesh_id: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = self
            .deploying
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(mesh_id.to_string())
            .or_default()
            .clone();
        lock.lock_owned().await
    }

    /// Where `$vault:` references are opened from now on.
    pub fn set_secrets(&self, secrets: Arc<dyn SecretSource>) {
        *self.secrets.lock().unwrap_or_else(|p| p.into_inner()) = secrets;
    }

    fn secrets(&self) -> Arc<dyn SecretSource> {
        self.secrets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn running(&self) -> MutexGuard<'_, HashMap<(String, String), Arc<Service>>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How services run here, found once: bubblewrap if it works; else no sandbox when
    /// allowed (said loudly), else the reason deploys are refused.
    pub async fn isolation(&self) -> Result<Isolation, String> {
        self.isolation
            .get_or_init(|| async {
                let scratch = self.data_dir.join("services").join(".probe");
                let probed = sandbox::probe(&scratch).await;
                let _ = std::fs::remove_dir_all(&scratch);
                match probed {
                    Ok(bwrap) => {
                        tracing::info!("deployed services run in bubblewrap ({})", bwrap.display());
                        Ok(Isolation::Bwrap(bwrap))
                    }
                    Err(why) if self.allow_unsandboxed => {
                        tracing::warn!(
                            "!!! NO SANDBOX for deployed MCP services: {why}. They run as this broker's user with its files and network (--allow-unsandboxed-services) !!!"
                        );
                        Ok(Isolation::Unsandboxed(why.to_string()))
                    }
                    Err(why) => Err(format!(
                        "this broker cannot sandbox services ({why}); {}, or start the broker with --allow-unsandboxed-services",
                        why.remedy()
                    )),
                }
            })
            .await
            .clone()
    }

    /// Where services' cgroups are made, found once (and said once in the log); none when
    /// this host does not let the broker make them.
    fn cgroups(&self) -> Option<Arc<cgroup::Cgroups>> {
        self.cgroups
            .get_or_init(|| match cgroup::Cgroups::probe() {
                Ok(c) => {
                    tracing::info!(
                        "deployed services get memory, CPU and process limits as a whole ({})",
                        c.kind()
                    );
                    Some(Arc::new(c))
                }
                Err(why) => {
                    tracing::info!(
                        "deployed services get per-process limits only (rlimits; --cpus not enforced): no cgroups for the broker here ({why})"
                    );
                    None
                }
            })
            .clone()
    }

    /// `<data>/services/<mesh>/<name>`: `app` (the code) and `work` (its writable directory).
    pub fn dir(&self, mesh_id: &str, name: &str) -> PathBuf {
        self.data_dir.join("services").join(mesh_id).join(name)
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn get(&self, mesh_id: &str, name: &str) -> Option<Arc<Service>> {
        self.running()
            .get(&(mesh_id.to_string(), name.to_string()))
            .cloned()
    }

    /// Starts (or restarts) a service under its supervisor, stopping the one it replaces.
    pub async fn start(&self, launch: Launch, isolation: Isolation) -> Arc<Service> {
        let key = (launch.mesh_id.clone(), launch.name.clone());
        self.stop(&key.0, &key.1).await;
        let service = Arc::new(Service::new(&launch.name));
        self.running().insert(key, service.clone());
        let dir = self.dir(&launch.mesh_id, &launch.name);
        let run = supervisor::Run {
            service: service.clone(),
            launch,
            isolation,
            app_dir: dir.join("app"),
            work_dir: dir.join("work"),
            net_dir: dir.join("net"),
            proxy: Default::default(),
            data_dir: self.data_dir.clone(),
            secrets: self.secrets(),
            shutdown: self.shutdown.clone(),
            cgroups: self.cgroups(),
        };
        tokio::spawn(supervisor::supervise(run));
        service
    }

    /// Stops a service and waits for its process to be gone.
    pub async fn stop(&self, mesh_id: &str, name: &str) {
        let old = self
            .running()
            .remove(&(mesh_id.to_string(), name.to_string()));
        if let Some(old) = old {
            old.stop.cancel();
            let mut rx = old.settled.subscribe();
            let _ = tokio::time::timeout(
                std::time::Duration::from_secs(10),
                rx.wait_for(|_| old.view().status == Status::Stopped),
            )
            .await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_call_to_a_service_that_is_not_running_names_it_in_the_hint() {
        let service = Service::new("weather");
        let said = service
            .call("forecast", &Value::Null, Value::Null)
            .await
            .expect_err("nothing runs");
        assert!(
            said.contains("claudemesh deployments status weather shows why"),
            "{said}"
        );
    }
}
