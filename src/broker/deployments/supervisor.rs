//! One task per deployed service: start it in the sandbox, say hello over MCP and read its
//! tools, copy its stderr into the log tail, and when it ends (or cannot start) start it
//! again after an exponential backoff (1 s, 2 s, 4 s … at most 60 s; reset after a minute of
//! running). Ends when the service is stopped or the broker shuts down.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::AsyncBufReadExt;
use tokio_util::sync::CancellationToken;

use super::proxy::Proxy;
use super::sandbox::{self, Isolation, Jail, Network};
use super::{Launch, Secret, SecretSource, Service, Status};
use crate::broker::handlers::shared_tools::{MAX_DESCRIPTION, MAX_TOOL_NAME, MAX_TOOLS};
use crate::client::shared_tools::StdioServer;
use crate::protocol::messages::McpToolSpec;

const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Running this long counts as a good start: the backoff starts over.
const HEALTHY_AFTER: Duration = Duration::from_secs(60);
/// How often a running service is checked for having ended.
const CHECK_EVERY: Duration = Duration::from_millis(200);
/// How long a service that could not start may take to finish printing why.
const STDERR_DRAIN: Duration = Duration::from_secs(1);

pub(super) struct Run {
    pub service: Arc<Service>,
    pub launch: Launch,
    pub isolation: Isolation,
    pub app_dir: std::path::PathBuf,
    pub work_dir: std::path::PathBuf,
    /// Where its network proxy's socket is made (beside `work`, never inside it).
    pub net_dir: std::path::PathBuf,
    /// The proxy of a service limited to named hosts, started with its first start and kept
    /// across restarts; it stops with the supervisor.
    pub proxy: std::sync::Mutex<Option<Proxy>>,
    pub data_dir: std::path::PathBuf,
    pub secrets: Arc<dyn SecretSource>,
    pub shutdown: CancellationToken,
    pub cgroups: Option<Arc<super::cgroup::Cgroups>>,
}

fn backoff(failures: u32) -> Duration {
    Duration::from_secs(1u64 << failures.saturating_sub(1).min(6)).min(MAX_BACKOFF)
}

impl Run {
    fn settle(&self, f: impl FnOnce(&mut super::ServiceState)) {
        let n = {
            let mut s = self.service.state();
            f(&mut s);
            s.attempts += 1;
            s.attempts
        };
        self.service.settled.send_replace(n);
    }

    /// The environment with `$vault:` references opened, and the vault files to mount.
    #[allow(clippy::type_complexity)]
    fn environment(&self) -> Result<(Vec<(String, String)>, Vec<(String, Vec<u8>)>), String> {
        let mut env = Vec::new();
        let mut files = Vec::new();
        for (key, value) in &self.launch.env {
            let Some(name) = value.strip_prefix("$vault:") else {
                env.push((key.clone(), value.clone()));
                continue;
            };
            match self
                .secrets
                .open(&self.launch.mesh_id, &self.launch.deployer_member_id, name)?
            {
                Secret::Env(v) => {
                    let text = String::from_utf8(v.to_vec())
                        .map_err(|_| format!("$vault:{name} is not UTF-8 text (env {key})"))?;
                    env.push((key.clone(), text));
                }
                Secret::File { mount_path, value } => {
                    env.push((key.clone(), mount_path.clone()));
                    files.push((mount_path, value.to_vec()));
                }
            }
        }
        Ok((env, files))
    }

    /// The socket of the service's proxy (started on first use) when it is limited to hosts.
    fn proxy_socket(&self) -> Result<Option<std::path::PathBuf>, String> {
        let Network::Hosts(allow) = &self.launch.network else {
            return Ok(None);
        };
        let mut proxy = self.proxy.lock().unwrap_or_else(|p| p.into_inner());
        if proxy.is_none() {
            let service = self.service.clone();
            let log: super::proxy::Log = Arc::new(move |line: &str| service.log(line));
            *proxy = Some(Proxy::start(&self.net_dir, allow.clone(), log)?);
        }
        Ok(proxy.as_ref().map(|p| p.socket().to_path_buf()))
    }

    /// Starts the process and reads its tools.
    async fn start_once(&self) -> Result<Arc<StdioServer>, String> {
        let (env, files) = self.environment()?;
        let proxy = self.proxy_socket()?;
        let group = match &self.cgroups {
            Some(c) => Some(c.service(
                &self.launch.mesh_id,
                &self.launch.name,
                super::cgroup::Limits {
                    memory_mb: self.launch.memory_mb,
                    cpus: self.launch.cpus,
                    processes: sandbox::MAX_PROCESSES,
                },
            )?),
            None => None,
        };
        self.service.state().cgroups = group
            .iter()
            .flat_map(|g| g.dirs.iter().map(|d| d.display().to_string()))
            .collect();
        let jail = Jail {
            app_dir: &self.app_dir,
            work_dir: &self.work_dir,
            data_dir: &self.data_dir,
            program: &self.launch.program,
            env: &env,
            files: &files,
            memory_mb: self.launch.memory_mb,
            network: &self.launch.network,
            proxy: proxy.as_deref(),
            cgroup: group.map(|g| g.procs).unwrap_or_default(),
        };
        let prepared = sandbox::command(&self.isolation, &jail)?;
        let label = self.launch.program.first().cloned().unwrap_or_default();
        let service = self.service.clone();
        let mut reader = None;
        let started = StdioServer::start_command(prepared.command, &label, |stderr| {
            reader = Some(tokio::spawn(async move {
                // Line by line, each cut at LOG_LINE_BYTES: a service that writes one endless
                // line costs the broker that much memory, not more.
                let mut reader = tokio::io::BufReader::new(stderr);
                let mut line = Vec::new();
                while let Ok(true) = read_capped_line(&mut reader, &mut line).await {
                    service.log(&String::from_utf8_lossy(&line));
                }
            }));
        })
        .await;
        drop(prepared.held);
        drop(env);
        let server = match started {
            Ok(server) => server,
            Err(e) => {
                // What it printed on its way out comes before the note saying it failed.
                if let Some(reader) = reader {
                    let _ = tokio::time::timeout(STDERR_DRAIN, reader).await;
                }
                return Err(e);
            }
        };
        Ok(Arc::new(server))
    }

    async fn ended(server: &StdioServer) {
        while !server.is_closed() {
            tokio::time::sleep(CHECK_EVERY).await;
        }
    }
}

pub(super) async fn supervise(run: Run) {
    let svc = run.service.clone();
    let sandboxed = matches!(run.isolation, Isolation::Bwrap(_));
    if let Isolation::Unsandboxed(why) = &run.isolation {
        svc.log(&format!(
            "[claudemesh] WARNING: running WITHOUT a sandbox ({why})"
        ));
    }
    let mut failures = 0u32;
    loop {
        {
            let mut s = svc.state();
            s.status = Some(if failures == 0 {
                Status::Starting
            } else {
                Status::Restarting
            });
            s.sandboxed = sandboxed;
        }
        let began = Instant::now();
        let started = tokio::select! {
            s = run.start_once() => s,
            _ = svc.stop.cancelled() => break,
            _ = run.shutdown.cancelled() => break,
        };
        match started {
            Ok(server) => {
                svc.log(&format!(
                    "[claudemesh] started: {} tool(s)",
                    server.tools.len()
                ));
                let tools = bounded_tools(&server.tools);
                run.settle(|s| {
                    s.status = Some(Status::Running);
                    s.tools = tools;
                    s.server = Some(server.clone());
                    s.error = None;
                });
                let stopping = tokio::select! {
                    _ = Run::ended(&server) => false,
                    _ = svc.stop.cancelled() => true,
                    _ = run.shutdown.cancelled() => true,
                };
                svc.state().server = None;
                server.shut();
                if stopping {
                    break;
                }
                svc.log("[claudemesh] the service ended");
                if began.elapsed() >= HEALTHY_AFTER {
                    failures = 0;
                }
            }
            Err(e) => {
                svc.log(&format!("[claudemesh] cannot start: {e}"));
                run.settle(|s| {
                    s.status = Some(Status::Failed);
                    s.error = Some(e);
                });
            }
        }
        failures += 1;
        let wait = backoff(failures);
        {
            let mut s = svc.state();
            s.restarts += 1;
            if s.status == Some(Status::Running) {
                s.status = Some(Status::Restarting);
            }
        }
        svc.log(&format!(
            "[claudemesh] starting again in {} s",
            wait.as_secs()
        ));
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = svc.stop.cancelled() => break,
            _ = run.shutdown.cancelled() => break,
        }
    }
    // Its processes are being killed; the groups go once they are empty.
    if let Some(c) = &run.cgroups {
        for _ in 0..50 {
            if c.remove(&run.launch.mesh_id, &run.launch.name) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // Before saying it stopped: a service started next under the same name makes its socket
    // at the same path, which this proxy removes when it goes.
    drop(run.proxy.lock().unwrap_or_else(|p| p.into_inner()).take());
    run.settle(|s| {
        s.status = Some(Status::Stopped);
        s.server = None;
    });
}

/// The tools a service lists, as the mesh sees them: at most as many as a peer-hosted server
/// may register, names and descriptions cut like theirs, a tool whose schema is over 16 KiB or
/// whose name repeats left out (with a note in the service's log).
fn bounded_tools(tools: &[McpToolSpec]) -> Vec<McpToolSpec> {
    const MAX_SCHEMA_BYTES: usize = 16 * 1024;
    let mut seen = std::collections::HashSet::new();
    tools
        .iter()
        .filter(|t| {
            !t.name.is_empty()
                && t.name.chars().count() <= MAX_TOOL_NAME
                && t.input_schema.to_string().len() <= MAX_SCHEMA_BYTES
                && seen.insert(t.name.clone())
        })
        .take(MAX_TOOLS)
        .map(|t| McpToolSpec {
            name: t.name.clone(),
            description: t.description.chars().take(MAX_DESCRIPTION).collect(),
            input_schema: t.input_schema.clone(),
        })
        .collect()
}

/// Most bytes of one stderr line kept; the rest of a longer line is read and dropped.
const LOG_LINE_BYTES: usize = 8 * 1024;

/// Reads one line (without its newline) into `line`, keeping at most [`LOG_LINE_BYTES`];
/// `false` at the end of the stream with nothing read.
async fn read_capped_line<R: tokio::io::AsyncBufRead + Unpin>(
    reader: &mut R,
    line: &mut Vec<u8>,
) -> std::io::Result<bool> {
    line.clear();
    let mut any = false;
    loop {
        let buf = reader.fill_buf().await?;
        if buf.is_empty() {
            return Ok(any);
        }
        any = true;
        let (chunk, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (&buf[..i], Some(i + 1)),
            None => (buf, None),
        };
        let room = LOG_LINE_BYTES.saturating_sub(line.len());
        line.extend_from_slice(&chunk[..chunk.len().min(room)]);
        let used = done.unwrap_or(buf.len());
        reader.consume(used);
        if done.is_some() {
            return Ok(true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(2), Duration::from_secs(2));
        assert_eq!(backoff(4), Duration::from_secs(8));
        assert_eq!(backoff(50), MAX_BACKOFF);
    }

    #[tokio::test]
    async fn an_endless_stderr_line_is_kept_only_up_to_the_cap() {
        let mut input = vec![b'x'; LOG_LINE_BYTES * 3];
        input.extend_from_slice(b"\nshort\nlast");
        let mut reader = tokio::io::BufReader::with_capacity(1024, &input[..]);
        let mut line = Vec::new();
        assert!(read_capped_line(&mut reader, &mut line).await.unwrap());
        assert_eq!(line.len(), LOG_LINE_BYTES, "cut at the cap");
        assert!(read_capped_line(&mut reader, &mut line).await.unwrap());
        assert_eq!(line, b"short", "the next line starts after the newline");
        assert!(read_capped_line(&mut reader, &mut line).await.unwrap());
        assert_eq!(line, b"last");
        assert!(!read_capped_line(&mut reader, &mut line).await.unwrap());
    }

    #[test]
    fn a_services_tool_list_is_bounded_like_a_registration() {
        let tool = |name: &str, schema: serde_json::Value| McpToolSpec {
            name: name.into(),
            description: "d".repeat(5000),
            input_schema: schema,
        };
        let mut tools = vec![
            tool("huge", serde_json::json!({"x": "y".repeat(20_000)})),
            tool("twice", serde_json::json!({})),
            tool("twice", serde_json::json!({})),
        ];
        tools.extend((0..300).map(|i| tool(&format!("t{i}"), serde_json::json!({}))));
        let kept = bounded_tools(&tools);
        assert_eq!(kept.len(), 128);
        assert!(kept.iter().all(|t| t.name != "huge"), "no 20 KB schema");
        assert_eq!(kept.iter().filter(|t| t.name == "twice").count(), 1);
        assert!(kept.iter().all(|t| t.description.len() == 2048));
    }
}
