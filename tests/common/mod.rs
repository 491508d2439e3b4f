//! The end-to-end harness: a real `claudemesh broker` process on a free port with its own data
//! dir, people who run the real CLI with their own config dirs, and raw WebSocket helpers for
//! frames no well-behaved client would send. Every area of the suite (tests/suite.rs) reaches it
//! as `crate::common`.

#![allow(dead_code)]

pub mod browser;
pub mod mcp;
pub mod secrets;
pub mod sees;
pub mod ws;
#[allow(unused_imports)]
pub use secrets::{assert_broker_never_saw, files_under};
#[allow(unused_imports)]
pub use sees::*;
pub use ws::*;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use claudemesh::client::http::{self, HttpResponse};
use claudemesh::client::{ConnectOptions, MeshClient};
use claudemesh::crypto::SignKeyPair;
use claudemesh::identity::{Config, ConfigDir, MeshEntry};
use claudemesh::protocol::messages::PeerInfo;
use claudemesh::protocol::{ClientMessage, Envelope, canonical, time};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_claudemesh");

/// How long any single wait (a CLI run, a frame, a broker start) may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------------
// The broker process
// ---------------------------------------------------------------------------------------------

/// A running `claudemesh broker`. Dropping it kills the process (and removes its temp data dir).
pub struct BrokerProc {
    pub port: u16,
    child: Option<Child>,
    data_dir: PathBuf,
    _temp: Option<tempfile::TempDir>,
    extra_args: Vec<String>,
    env: Vec<(String, String)>,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
    /// The threads reading the process's stdout and stderr.
    drains: Vec<std::thread::JoinHandle<()>>,
}

impl BrokerProc {
    /// Starts a broker on a free port with a fresh temp data dir.
    pub fn start(extra_args: &[&str]) -> BrokerProc {
        BrokerProc::start_with_env(extra_args, &[])
    }

    /// Like [`BrokerProc::start`], with these environment variables set for the broker (and
    /// kept for its restarts).
    pub fn start_with_env(extra_args: &[&str], env: &[(&str, &str)]) -> BrokerProc {
        let temp = tempfile::tempdir().expect("temp data dir");
        let mut broker = BrokerProc::unstarted(temp.path(), extra_args);
        broker.env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        broker._temp = Some(temp);
        broker
            .spawn("127.0.0.1:0")
            .unwrap_or_else(|e| panic!("the broker did not start: {e}"));
        broker
    }

    /// Starts a broker listening on `listen` (e.g. a port chosen beforehand) with a fresh temp
    /// data dir; the error says why it did not start (its stderr).
    pub fn start_listening(listen: &str, extra_args: &[&str]) -> Result<BrokerProc, String> {
        let temp = tempfile::tempdir().expect("temp data dir");
        let mut broker = BrokerProc::unstarted(temp.path(), extra_args);
        broker._temp = Some(temp);
        broker.spawn(listen)?;
        Ok(broker)
    }

    /// Starts a broker on a free port with the given data dir (kept after the broker ends).
    pub fn start_in(data_dir: &Path, extra_args: &[&str]) -> BrokerProc {
        let mut broker = BrokerProc::unstarted(data_dir, extra_args);
        broker
            .spawn("127.0.0.1:0")
            .unwrap_or_else(|e| panic!("the broker did not start: {e}"));
        broker
    }

    fn unstarted(data_dir: &Path, extra_args: &[&str]) -> BrokerProc {
        BrokerProc {
            port: 0,
            child: None,
            data_dir: data_dir.to_path_buf(),
            _temp: None,
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            env: Vec::new(),
            stdout: Arc::default(),
            stderr: Arc::default(),
            drains: Vec::new(),
        }
    }

    /// Spawns the process and waits for its `listening on` line; the port comes from it.
    fn spawn(&mut self, listen: &str) -> Result<(), String> {
        let mut child = Command::new(BIN)
            .arg("broker")
            .args(["--listen", listen])
            .arg("--data")
            .arg(&self.data_dir)
            .args(&self.extra_args)
            .env("CLAUDEMESH_DATA_DIR", &self.data_dir)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run {BIN}: {e}"))?;
        let (first_tx, first_rx) = mpsc::channel();
        self.drains = [
            drain(child.stdout.take(), self.stdout.clone(), Some(first_tx)),
            drain(child.stderr.take(), self.stderr.clone(), None),
        ]
        .into_iter()
        .flatten()
        .collect();
        let line = first_rx.recv_timeout(WAIT);
        let port = line.as_ref().ok().and_then(|l| parse_listen_port(l));
        match port {
            Some(port) => {
                self.port = port;
                self.child = Some(child);
                Ok(())
            }
            None => {
                let _ = child.kill();
                let status = child.wait().ok();
                self.drained();
                Err(format!(
                    "first stdout line {line:?}, exit {status:?}, stderr:\n{}",
                    self.stderr_lines().join("\n")
                ))
            }
        }
    }

    pub fn ws_url(&self) -> String {
        format!("ws://127.0.0.1:{}/ws", self.port)
    }

    pub fn http_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The token `create` needs, from `<data>/admin.token`.
    pub fn admin_token(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("admin.token"))
            .expect("admin.token in the broker's data dir")
            .trim()
            .to_string()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("broker is running").id()
    }

    /// Sends SIGTERM without waiting (so a test can watch its clients while it shuts down).
    pub fn sigterm(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
    }

    /// Waits for the process to end (after [`sigterm`](Self::sigterm)).
    pub fn wait_exit(&mut self) -> ExitStatus {
        let child = self.child.as_mut().expect("broker is running");
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = child.try_wait().expect("wait for the broker") {
                self.child = None;
                self.drained();
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                self.child = None;
                panic!(
                    "the broker did not exit within {WAIT:?}; stderr:\n{}",
                    self.stderr_lines().join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// After the process ended: waits (a little) until its last output lines are read, so
    /// [`stderr_lines`](Self::stderr_lines) has them. A pipe a child process of the broker
    /// still holds open does not end; that wait gives up after two seconds.
    fn drained(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(2);
        while self.drains.iter().any(|d| !d.is_finished()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        self.drains.clear();
    }

    /// SIGTERM, then wait for the exit.
    pub fn terminate(&mut self) -> ExitStatus {
        self.sigterm();
        self.wait_exit()
    }

    /// SIGKILL: no chance to close anything.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the broker (SIGTERM) if it runs and starts it again on the same data dir and, if at
    /// all possible, the same port, so clients' configs still point at it. If the port cannot be
    /// bound again it starts on a new one (then `port` changes and saved broker URLs are stale).
    pub fn restart(&mut self) {
        if self.child.is_some() {
            let status = self.terminate();
            assert!(status.success(), "broker exited with {status} on SIGTERM");
        }
        let same = format!("127.0.0.1:{}", self.port);
        let mut last = String::new();
        for _ in 0..50 {
            match self.spawn(&same) {
                Ok(()) => return,
                Err(e) => last = e,
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!(
            "port {} cannot be reused ({last}); restarting on a new port",
            self.port
        );
        self.spawn("127.0.0.1:0")
            .unwrap_or_else(|e| panic!("the broker did not restart: {e}"));
    }

    /// [`BrokerProc::restart`] with other flags (kept for later restarts).
    pub fn restart_with(&mut self, extra_args: &[&str]) {
        self.extra_args = extra_args.iter().map(|s| s.to_string()).collect();
        self.restart();
    }

    /// Waits (with the harness's bound) until a line of the broker's log contains `needle`.
    pub async fn logged(&self, what: &str, needle: &str) {
        eventually(what, || async {
            self.stderr_lines().iter().any(|l| l.contains(needle))
        })
        .await;
    }

    /// After its exit: every task stopped when asked (none kept the broker for its 10 s grace)
    /// and the storage was closed, as the log says.
    pub fn assert_stopped_cleanly(&self) {
        let stderr = self.stderr_lines().join("\n");
        assert!(
            !stderr.contains("did not close") && stderr.contains("storage committed and closed"),
            "the broker did not stop cleanly:\n{stderr}"
        );
    }

    /// Everything the broker wrote to stderr so far (its log), for debugging.
    pub fn stderr_lines(&self) -> Vec<String> {
        self.stderr.lock().unwrap().clone()
    }

    pub fn stdout_lines(&self) -> Vec<String> {
        self.stdout.lock().unwrap().clone()
    }
}

impl Drop for BrokerProc {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            eprintln!(
                "--- broker on port {} stderr ---\n{}",
                self.port,
                self.stderr_lines().join("\n")
            );
        }
    }
}

/// Reads a child's pipe line by line into `sink` until it closes, so the child never blocks on a
/// full pipe; the first line also goes to `first`.
fn drain(
    pipe: Option<impl Read + Send + 'static>,
    sink: Arc<Mutex<Vec<String>>>,
    first: Option<mpsc::Sender<String>>,
) -> Option<std::thread::JoinHandle<()>> {
    let pipe = pipe?;
    Some(std::thread::spawn(move || {
        let mut first = first;
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            if let Some(tx) = first.take() {
                let _ = tx.send(line.clone());
            }
            sink.lock().unwrap().push(line);
        }
    }))
}

/// `claudemesh broker listening on 127.0.0.1:PORT (...)` → PORT.
fn parse_listen_port(line: &str) -> Option<u16> {
    let rest = line.strip_prefix("claudemesh broker listening on ")?;
    let addr = rest.split_whitespace().next()?;
    addr.rsplit(':').next()?.parse().ok()
}

// ---------------------------------------------------------------------------------------------
// People running the CLI
// ---------------------------------------------------------------------------------------------

/// What one CLI run left behind.
#[derive(Debug)]
pub struct CmdOutput {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// A simulated person on their own machine: their own config dir (and an empty broker data dir,
/// so `create` never finds an admin token on the developer's machine).
pub struct Person {
    pub name: String,
    config: tempfile::TempDir,
    empty_data: tempfile::TempDir,
}

impl Person {
    pub fn new(name: &str) -> Person {
        Person {
            name: name.to_string(),
            config: tempfile::tempdir().expect("temp config dir"),
            empty_data: tempfile::tempdir().expect("temp data dir"),
        }
    }

    /// Where `config.json` lives (`CLAUDEMESH_CONFIG_DIR`); created by the first save.
    pub fn config_dir(&self) -> PathBuf {
        self.config.path().join("claudemesh")
    }

    /// Runs `claudemesh ARGS` as this person.
    /// Runs a command that must succeed; returns its stdout.
    #[allow(dead_code)]
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert_eq!(
            out.code,
            0,
            "`claudemesh {}` ({}) failed:\n{}",
            args.join(" "),
            self.name,
            out.stderr
        );
        out.stdout
    }

    /// Runs a command that must fail with exit `code` (README: 1 failed, 2 usage, 3 not
    /// there); returns its stderr.
    #[allow(dead_code)]
    pub fn fails(&self, args: &[&str], code: i32) -> String {
        let out = self.run(args);
        assert_eq!(
            out.code,
            code,
            "`claudemesh {}` ({}) should exit {code}; stdout:\n{}\nstderr:\n{}",
            args.join(" "),
            self.name,
            out.stdout,
            out.stderr
        );
        out.stderr
    }

    /// Runs a command that must be refused; returns its stderr.
    #[allow(dead_code)]
    pub fn refused(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert_ne!(
            out.code,
            0,
            "`claudemesh {}` ({}) should have been refused:\n{}",
            args.join(" "),
            self.name,
            out.stdout
        );
        out.stderr
    }

    pub fn run(&self, args: &[&str]) -> CmdOutput {
        self.run_fed(args, None)
    }

    /// Runs `claudemesh ARGS` with `input` on its stdin.
    #[allow(dead_code)]
    pub fn run_with_stdin(&self, args: &[&str], input: &[u8]) -> CmdOutput {
        self.run_fed(args, Some(input))
    }

    /// `claudemesh ARGS` as this person runs it, not started (for long-running commands).
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .env("CLAUDEMESH_CONFIG_DIR", self.config_dir())
            .env("CLAUDEMESH_DATA_DIR", self.empty_data.path())
            .env("USER", &self.name)
            .env_remove("CLAUDEMESH_BROKER_URL")
            .env_remove("CLAUDEMESH_ADMIN_TOKEN");
        cmd
    }

    fn run_fed(&self, args: &[&str], input: Option<&[u8]>) -> CmdOutput {
        let mut child = self
            .command(args)
            .stdin(if input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run claudemesh");
        if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
            let input = input.to_vec();
            std::thread::spawn(move || {
                use std::io::Write;
                let _ = stdin.write_all(&input);
            });
        }
        let pid = child.id();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait_with_output());
        });
        let out = match rx.recv_timeout(WAIT) {
            Ok(out) => out.expect("collect claudemesh output"),
            Err(_) => {
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
                panic!(
                    "`claudemesh {}` ({}) took over {WAIT:?}",
                    args.join(" "),
                    self.name
                );
            }
        };
        CmdOutput {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Runs a command that must succeed and print one JSON document.
    pub fn json(&self, args: &[&str]) -> Value {
        let out = self.run(args);
        assert_eq!(
            out.code,
            0,
            "`claudemesh {}` ({}) failed:\n{}",
            args.join(" "),
            self.name,
            out.stderr
        );
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "`claudemesh {}` printed no JSON ({e}):\n{}",
                args.join(" "),
                out.stdout
            )
        })
    }

    pub fn config(&self) -> Config {
        ConfigDir::new(self.config_dir())
            .load()
            .expect("readable config")
    }

    /// The one mesh this person has joined.
    pub fn entry(&self) -> MeshEntry {
        let config = self.config();
        assert_eq!(config.meshes.len(), 1, "{} has joined one mesh", self.name);
        config.meshes[0].clone()
    }

    /// A live `MeshClient` connection (member hello) for this person's only mesh.
    pub async fn client(&self) -> MeshClient {
        self.connect(false).await
    }

    /// [`Person::client`] that reconnects by itself (after a broker crash or restart).
    pub async fn reconnecting_client(&self) -> MeshClient {
        self.connect(true).await
    }

    async fn connect(&self, reconnect: bool) -> MeshClient {
        let mut options = ConnectOptions::new(self.entry(), peer_info(&self.name));
        options.reconnect = reconnect;
        MeshClient::connect(options)
            .await
            .unwrap_or_else(|e| panic!("{} cannot connect: {e}", self.name))
    }
}

/// `owner` creates mesh `name` on `broker` (with its admin token); returns the mesh id.
pub fn create_mesh(broker: &BrokerProc, owner: &Person, name: &str) -> String {
    let token = broker.admin_token();
    let v = owner.json(&[
        "create",
        name,
        "--broker",
        &broker.ws_url(),
        "--admin-token",
        &token,
        "--name",
        &owner.name,
        "--json",
    ]);
    v["meshId"].as_str().expect("meshId").to_string()
}

/// `owner` makes an invite (`extra` e.g. `["--uses", "3"]`); returns (code, url).
pub fn invite(owner: &Person, extra: &[&str]) -> (String, String) {
    let mut args = vec!["invite", "--json"];
    args.extend_from_slice(extra);
    let v = owner.json(&args);
    (
        v["code"].as_str().expect("code").to_string(),
        v["url"].as_str().expect("url").to_string(),
    )
}

/// `person` joins with an invite URL under their own name; returns `{meshId, memberId, slug}`.
pub fn join(person: &Person, url: &str) -> Value {
    person.json(&["join", url, "--name", &person.name, "--json"])
}

/// A direct target for `person`'s member key.
#[allow(dead_code)]
pub fn to(person: &Person) -> claudemesh::client::Target {
    claudemesh::client::Target {
        label: person.name.clone(),
        spec: person.entry().member_pubkey,
    }
}

/// A mesh "team" owned by alice, with bob joined.
pub fn alice_and_bob(broker: &BrokerProc) -> (Person, Person) {
    let alice = Person::new("alice");
    create_mesh(broker, &alice, "team");
    let bob = invited(&alice, "bob");
    (alice, bob)
}

/// `name`, joined as a member with an invite `inviter` made.
pub fn invited(inviter: &Person, name: &str) -> Person {
    let person = Person::new(name);
    let (_, url) = invite(inviter, &[]);
    join(&person, &url);
    person
}

/// What a test connection says about itself: a session (a member hello that says nothing is
/// a tool's connection, as the original broker has it).
/// alice owns mesh "team"; bob joined as a member, carol as an admin.
#[allow(dead_code)]
pub fn team_with_admin(broker: &BrokerProc) -> (Person, Person, Person) {
    let (alice, bob) = alice_and_bob(broker);
    let carol = Person::new("carol");
    let (_, url) = invite(&alice, &["--role", "admin"]);
    join(&carol, &url);
    (alice, bob, carol)
}

/// A member connection of `person` as session `session` that calls itself `role`
/// (`peerRole`: `observer` for a dashboard, `control-plane` for our CLI).
pub async fn connect_as(person: &Person, session: &str, role: &str) -> MeshClient {
    let mut info = peer_info(session);
    info.peer_role = Some(role.into());
    MeshClient::connect(ConnectOptions::new(person.entry(), info))
        .await
        .unwrap_or_else(|e| panic!("{}'s {role} connection: {e}", person.name))
}

/// A session hello of `person`'s session "agent" with session key `key` (as Claude Code's MCP
/// server connects: messages to everyone are queued for it under its session key).
pub async fn session_of(
    person: &Person,
    key: claudemesh::crypto::SignKeyPair,
) -> Result<MeshClient, claudemesh::client::ClientError> {
    MeshClient::connect(ConnectOptions {
        identity: claudemesh::client::Identity::Session(key),
        ..ConnectOptions::new(person.entry(), peer_info(&format!("{}-agent", person.name)))
    })
    .await
}

pub fn peer_info(session: &str) -> PeerInfo {
    PeerInfo {
        session_id: format!("test-{session}"),
        pid: std::process::id(),
        cwd: "/tmp/claudemesh-test".into(),
        peer_type: Some("ai".into()),
        channel: Some("test".into()),
        peer_role: Some("session".into()),
        ..Default::default()
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------------------------

pub async fn http_get(url: &str) -> HttpResponse {
    http::request("GET", url, &[], None)
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
}

pub async fn http_post(url: &str, body: impl Into<Vec<u8>>) -> HttpResponse {
    http::request("POST", url, &[], Some(body.into()))
        .await
        .unwrap_or_else(|e| panic!("POST {url}: {e}"))
}

/// The value of one sample in `GET /metrics`, e.g. `claudemesh_peers` or
/// `claudemesh_invite_claims_total{result="ok"}`; `None` when absent.
pub async fn metric(broker: &BrokerProc, sample: &str) -> Option<f64> {
    let text = String::from_utf8_lossy(
        &http_get(&format!("{}/metrics", broker.http_url()))
            .await
            .body,
    )
    .into_owned();
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (name, value) = l.rsplit_once(' ')?;
        (name == sample).then(|| value.parse().ok()).flatten()
    })
}

/// A test that needs what this machine may lack (a tmpfs mount, strace, moto) calls this when
/// it is missing: the test is skipped with `SKIPPED: why`, unless `CLAUDEMESH_STRICT_TESTS` is
/// set (as `.ci/run` does), where a skip would hide a broken promise and the test fails instead.
pub fn skip_unless_strict(why: &str) {
    if std::env::var_os("CLAUDEMESH_STRICT_TESTS").is_some() {
        panic!("cannot run here, and CLAUDEMESH_STRICT_TESTS is set: {why}");
    }
    eprintln!("SKIPPED: {why}");
}

/// Polls until `check` holds (every 20 ms, up to [`WAIT`]).
/// The next push on a live client that `wanted` accepts (others are skipped), within [`WAIT`];
/// `what` names it in the failure.
pub async fn next_push_where(
    client: &MeshClient,
    what: &str,
    wanted: impl Fn(&claudemesh::protocol::messages::Push) -> bool,
) -> claudemesh::protocol::messages::Push {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let frame = tokio::time::timeout_at(deadline, client.next_push())
            .await
            .unwrap_or_else(|_| panic!("{what}: none within {WAIT:?}"))
            .unwrap_or_else(|| panic!("{what}: the connection ended"));
        if let claudemesh::protocol::ServerMessage::Push(p) = frame
            && wanted(&p)
        {
            return *p;
        }
    }
}

/// Waits for a child with the harness's bound (killing it if it overstays); returns its exit
/// status and what it wrote to stderr (piped; small enough never to fill the pipe).
pub fn finish(mut child: Child, what: &str) -> (ExitStatus, String) {
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for claudemesh") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("`claudemesh {what}` took over {WAIT:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = pipe.read_to_string(&mut stderr);
    }
    (status, stderr)
}

pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + WAIT;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until no connection is proven (e.g. the CLI's short connections have gone).
pub async fn wait_no_peers(broker: &BrokerProc) {
    eventually("no live peers", || async {
        metric(broker, "claudemesh_peers").await == Some(0.0)
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// Bystanders: an honest pair that must keep messaging while an attack runs
// ---------------------------------------------------------------------------------------------

/// Two honest members (carol owns mesh "bystanders", dave joined it) with live connections.
/// Attack tests call [`Bystanders::exchange`] before, during and after the attack to show the
/// broker keeps serving everyone else.
pub struct Bystanders {
    pub carol: Person,
    pub dave: Person,
    pub carol_client: MeshClient,
    pub dave_client: MeshClient,
    sent: usize,
}

impl Bystanders {
    /// Creates the pair's own mesh on `broker` and connects both.
    pub async fn start(broker: &BrokerProc) -> Bystanders {
        let carol = Person::new("carol");
        let dave = Person::new("dave");
        create_mesh(broker, &carol, "bystanders");
        let (_, url) = invite(&carol, &[]);
        join(&dave, &url);
        let carol_client = carol.client().await;
        let dave_client = dave.client().await;
        Bystanders {
            carol,
            dave,
            carol_client,
            dave_client,
            sent: 0,
        }
    }

    /// Carol sends `n` direct messages to dave; each must be acknowledged as queued and arrive,
    /// decrypted, exactly once and in order (within [`WAIT`]).
    pub async fn exchange(&mut self, n: usize) {
        let dave_key = self.dave.entry().member_pubkey.clone();
        let to_dave = claudemesh::client::Target {
            label: "dave".into(),
            spec: dave_key,
        };
        let mut expected = Vec::new();
        for _ in 0..n {
            self.sent += 1;
            let text = format!("bystander message {}", self.sent);
            let ack = self
                .carol_client
                .send_text(&to_dave, &text, "now", None)
                .await
                .unwrap_or_else(|e| panic!("carol could not send to dave: {e}"));
            assert_eq!(
                ack.queued,
                Some(true),
                "carol's message was not queued: {ack:?}"
            );
            let id = ack.message_id.clone().expect("a queued message has an id");
            expected.push((id, text));
        }
        let deadline = Instant::now() + WAIT;
        for (id, text) in expected {
            let incoming = loop {
                let push = tokio::time::timeout_at(deadline.into(), self.dave_client.next_push())
                    .await
                    .unwrap_or_else(|_| panic!("dave did not receive {text:?} in time"))
                    .expect("dave's connection is open");
                if let claudemesh::protocol::ServerMessage::Push(p) = push
                    && p.subtype.is_none()
                {
                    break self.dave_client.open(*p);
                }
            };
            assert_eq!(
                incoming.push.message_id, id,
                "dave got messages out of order"
            );
            assert_eq!(incoming.text.as_deref(), Ok(text.as_str()));
            self.dave_client.ack(&id).expect("dave acks");
        }
    }
}
