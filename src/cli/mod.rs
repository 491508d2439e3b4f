//! The command line (CLI.md). Parsing with argh; every command that prints data accepts
//! `--json`; errors are one sentence on stderr with exit code 1 (2 for usage errors). All output
//! goes through `output`, which makes peer-provided text harmless and ends quietly when the
//! reader of stdout goes away.

// Printing around `output` would bypass both.
#![deny(clippy::print_stdout, clippy::print_stderr)]

mod admin_token;
mod agent;
mod audit;
mod bench;
mod broker;
mod completions;
mod contexts;
mod discover;
mod files;
mod help;
mod hook;
mod info;
mod invites;
mod join;
mod keys;
mod logging;
mod members;
mod memory;
mod mesh;
mod messaging;
pub mod output;
mod perms;
mod reminders;
mod service;
mod settings;
mod state;
mod streams;
mod target;
mod tasks;
// Governance (issue 13).
mod grants;
mod profile;
mod stats;
// Skills (issue 15).
mod skills;
// Peer-hosted MCP tools (issue 15).
mod peer_files;
mod shared_tools;
// Broker-hosted MCP services (issue 15).
mod deployments;
// Vault (issue 15).
mod vault;
// Per-mesh SQL (issue 16).
mod sql;
// Graph (issue 16).
mod graph;
// Vectors (issue 16).
mod vectors;
// URL watches and inbound webhooks (issue 17).
mod watches;
mod webhooks;
// Simulation clock (issue 17).
mod clock;
// Telegram bridge (issue 17).
mod telegram;
// Remote approval of tool use (issue 18).
mod approvals;
// The local web dashboard (issue 18).
mod dashboard;

use argh::{ArgsInfo, FromArgs};
use serde::Serialize;

pub use mesh::{InviteLink, parse_invite};

use crate::client::{ClientError, ConnectOptions, MeshClient};
use crate::identity::{ConfigDir, IdentityError, MeshEntry};
use crate::protocol::messages::PeerInfo;

#[derive(FromArgs, ArgsInfo)]
/// claudemesh: a peer mesh for AI coding-agent sessions — broker, CLI and MCP server in one.
#[argh(help_triggers("-h", "--help"))]
pub struct Cli {
    /// print the version
    #[argh(switch, short = 'V')]
    version: bool,
    #[argh(subcommand)]
    command: Option<Command>,
}

// Parsed once per run; boxing a variant is not something argh's subcommands support.
#[allow(clippy::large_enum_variant)]
#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand)]
enum Command {
    Broker(broker::BrokerCmd),
    Create(mesh::CreateCmd),
    Invite(mesh::InviteCmd),
    Join(mesh::JoinCmd),
    List(mesh::ListCmd),
    Leave(mesh::LeaveCmd),
    Members(mesh::MembersCmd),
    Revoke(mesh::RevokeCmd),
    Peers(messaging::PeersCmd),
    Send(messaging::SendCmd),
    Inbox(messaging::InboxCmd),
    MsgStatus(messaging::MsgStatusCmd),
    Status(messaging::StatusCmd),
    Summary(messaging::SummaryCmd),
    Group(messaging::GroupCmd),
    Hook(hook::HookCmd),
    File(files::FileCmd),
    Mcp(McpCmd),
    Install(agent::InstallCmd),
    Uninstall(agent::UninstallCmd),
    Launch(agent::LaunchCmd),
    Doctor(agent::DoctorCmd),
    Discover(discover::DiscoverCmd),
    Service(service::ServiceCmd),
    Bench(bench::BenchCmd),
    State(state::StateCmd),
    Remember(memory::RememberCmd),
    Recall(memory::RecallCmd),
    Forget(memory::ForgetCmd),
    Task(tasks::TaskCmd),
    Remind(reminders::RemindCmd),
    Stream(streams::StreamCmd),
    Context(contexts::ContextCmd),
    Info(info::InfoCmd),
    Settings(settings::SettingsCmd),
    Completions(completions::CompletionsCmd),
    Block(grants::BlockCmd),
    Unblock(grants::UnblockCmd),
    Grants(grants::GrantsCmd),
    Stats(stats::StatsCmd),
    Profile(profile::ProfileCmd),
    RotateKey(keys::RotateKeyCmd),
    Audit(audit::AuditCmd),
    Perms(perms::PermsCmd),
    Kick(members::KickCmd),
    Disconnect(members::DisconnectCmd),
    Ban(members::BanCmd),
    Unban(members::UnbanCmd),
    Bans(members::BansCmd),
    Skill(skills::SkillCmd),
    McpShare(shared_tools::McpShareCmd),
    Tools(shared_tools::ToolsCmd),
    ShareDir(peer_files::ShareDirCmd),
    PeerFiles(peer_files::PeerFilesCmd),
    Deploy(deployments::DeployCmd),
    Undeploy(deployments::UndeployCmd),
    Deployments(deployments::DeploymentsCmd),
    Vault(vault::VaultCmd),
    Sql(sql::SqlCmd),
    Graph(graph::GraphCmd),
    Vector(vectors::VectorCmd),
    Watch(watches::WatchCmd),
    Webhook(webhooks::WebhookCmd),
    Clock(clock::ClockCmd),
    Telegram(telegram::TelegramCmd),
    Approvers(approvals::ApproversCmd),
    Approvals(approvals::ApprovalsCmd),
    Approve(approvals::ApproveCmd),
    Deny(approvals::DenyCmd),
    Dashboard(dashboard::DashboardCmd),
}

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "mcp", help_triggers("-h", "--help"))]
#[argh(example = "claudemesh mcp   (Claude Code runs this; see `claudemesh install`)")]
/// MCP server on stdio (started by Claude Code, not by people)
struct McpCmd {}

/// A failed command: what to tell the person, and the exit code.
#[derive(Debug)]
pub enum CliError {
    /// Exit code 2.
    Usage(String),
    /// Exit code 1.
    Failed(String),
    /// Exit code 3 ([`EXIT_NOT_FOUND`]): what was asked for is not there (`state get` of a key
    /// that is not set), as opposed to a failure to ask.
    NotFound(String),
}

/// The exit code of [`CliError::NotFound`].
pub const EXIT_NOT_FOUND: i32 = 3;

impl CliError {
    pub fn failed(message: impl Into<String>) -> Self {
        CliError::Failed(message.into())
    }
}

impl From<ClientError> for CliError {
    fn from(e: ClientError) -> Self {
        match e {
            // The commonest first failure: say what to do about it.
            ClientError::Connect(m) => CliError::Failed(format!(
                "{m}: is the broker running? start it with `claudemesh broker` (or check the broker URL)"
            )),
            // What was asked for is not there: exit 3, whichever command asked.
            ClientError::Broker { ref code, .. } if code == "not_found" => {
                CliError::NotFound(e.to_string())
            }
            e => CliError::Failed(e.to_string()),
        }
    }
}

impl From<IdentityError> for CliError {
    fn from(e: IdentityError) -> Self {
        CliError::Failed(e.to_string())
    }
}

pub type CliResult = Result<(), CliError>;

/// Parses the process arguments, runs the command, and returns the exit code.
pub fn main() -> i32 {
    let args: Vec<String> = std::env::args().collect();
    let name = args
        .first()
        .map(|a| a.rsplit('/').next().unwrap_or(a).to_string())
        .unwrap_or_else(|| "claudemesh".into());
    let rest: Vec<&str> = args.iter().skip(1).map(String::as_str).collect();
    // Not commands people run (so not listed, suggested or completed): the first program in
    // the sandbox of a service limited to named hosts, and the process that holds a mesh's graph.
    match rest.split_first().map(|(c, r)| (*c, r)) {
        Some(("service-net", net_args)) => return deployments::service_net(&name, net_args),
        Some(("graph-worker", args)) => return crate::store::graph::worker::main(args),
        _ => {}
    }
    let rest = help::rewrite_help_word(rest);
    let rest = fill_optional_values(rest);
    let cli = match Cli::from_args(&[&name], &rest) {
        Ok(cli) => cli,
        Err(early) => {
            return match early.status {
                Ok(()) => {
                    output::ours(&early.output);
                    0
                }
                Err(()) => help::usage_error(&name, &rest, &early.output),
            };
        }
    };
    if cli.version {
        output::ours(&help::version());
        return 0;
    }
    let Some(command) = cli.command else {
        return help::bare(&name);
    };
    match &command {
        Command::Broker(b) => logging::init("info", b.log_format),
        Command::Hook(_) => logging::init("off", logging::LogFormat::Text),
        _ => logging::init("warn", logging::LogFormat::Text),
    }
    if let Command::Mcp(_) = &command {
        // Before any thread exists: the share's environment is read and removed here.
        crate::mcp::take_share_env();
    }
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Command::Bench(b) = &command {
        if b.threads == 0 {
            output::error("error: --threads: the load generator needs at least 1");
            return 2;
        }
        builder.worker_threads(b.threads);
    }
    let runtime = match builder
        .enable_all()
        // An idle broker's workers hand freed memory back to the OS (issue 14).
        .on_thread_park(crate::store::collect_freed_memory)
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            output::error(&format!("error: cannot start the async runtime: {e}"));
            return 1;
        }
    };
    let result = match command {
        // The broker runs on a runtime worker, not on this thread: a worker hands the memory
        // it freed back to the OS when it parks (`on_thread_park` above), this thread never
        // would, and the accept loop allocates every connection's task here (issue 14).
        Command::Broker(b) => runtime.block_on(async {
            tokio::spawn(b.run())
                .await
                .unwrap_or_else(|e| Err(CliError::Failed(format!("the broker stopped: {e}"))))
        }),
        command => runtime.block_on(run(command)),
    };
    // Don't wait for stray background tasks (e.g. a reconnecting client) at exit.
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    match result {
        Ok(()) => 0,
        Err(CliError::Usage(m)) => {
            output::error(&format!("error: {m}"));
            2
        }
        Err(CliError::Failed(m)) => {
            output::error_lines(&format!("error: {m}"));
            1
        }
        Err(CliError::NotFound(m)) => {
            output::error_lines(&format!("error: {m}"));
            EXIT_NOT_FOUND
        }
    }
}

/// Shortcuts of CLI.md that argh cannot express: a first argument that is a flag means
/// `launch` (`claudemesh --name A -y`), a bare invite URL means `launch --join URL`, and
/// `inbox --wait` may stand alone (wait forever), and `join -` reads the link from stdin (argh
/// takes a lone `-` for a flag).
fn fill_optional_values(mut args: Vec<&str>) -> Vec<&str> {
    match args.first().copied() {
        Some(first)
            if first.starts_with('-') && !matches!(first, "-h" | "--help" | "--version" | "-V") =>
        {
            args.insert(0, "launch");
        }
        Some(first) if first.contains("/i/") && first.starts_with("http") => {
            args.splice(0..0, ["launch", "--join"]);
        }
        _ => {}
    }
    service::separate_broker_flags(&mut args);
    grants::separate_rights(&mut args);
    perms::separate_denials(&mut args);
    if args.first() == Some(&"join") && !args.contains(&"--") {
        let stdin = (1..args.len()).find(|&i| {
            args[i] == "-" && !matches!(args[i - 1], "--broker" | "--ca-file" | "--name")
        });
        if let Some(i) = stdin {
            args.remove(i);
            args.extend(["--", "-"]);
        }
    }
    if args.first() == Some(&"inbox") {
        let mut i = 0;
        while i < args.len() {
            if args[i] == "--wait" && args.get(i + 1).is_none_or(|next| next.starts_with("--")) {
                args.insert(i + 1, "forever");
            }
            i += 1;
        }
    }
    args
}

async fn run(command: Command) -> CliResult {
    match command {
        Command::Broker(c) => c.run().await,
        Command::Create(c) => c.run().await,
        Command::Invite(c) => c.run().await,
        Command::Join(c) => c.run().await,
        Command::List(c) => c.run(),
        Command::Leave(c) => c.run(),
        Command::Members(c) => c.run().await,
        Command::Revoke(c) => c.run().await,
        Command::Peers(c) => c.run().await,
        Command::Send(c) => c.run().await,
        Command::Inbox(c) => c.run().await,
        Command::MsgStatus(c) => c.run().await,
        Command::Status(c) => c.run().await,
        Command::Summary(c) => c.run().await,
        Command::Group(c) => c.run().await,
        Command::Hook(c) => c.run().await,
        Command::File(c) => c.run().await,
        Command::Mcp(McpCmd {}) => crate::mcp::run().await.map_err(CliError::Failed),
        Command::Install(c) => c.run(),
        Command::Uninstall(c) => c.run(),
        Command::Launch(c) => c.run().await,
        Command::Doctor(c) => c.run().await,
        Command::Discover(c) => c.run().await,
        Command::Service(c) => c.run().await,
        Command::Bench(c) => c.run().await,
        Command::State(c) => c.run().await,
        Command::Remember(c) => c.run().await,
        Command::Recall(c) => c.run().await,
        Command::Forget(c) => c.run().await,
        Command::Task(c) => c.run().await,
        Command::Remind(c) => c.run().await,
        Command::Stream(c) => c.run().await,
        Command::Context(c) => c.run().await,
        Command::Info(c) => c.run().await,
        Command::Settings(c) => c.run().await,
        Command::Completions(c) => c.run(),
        Command::Block(c) => c.run().await,
        Command::Unblock(c) => c.run().await,
        Command::Grants(c) => c.run().await,
        Command::Stats(c) => c.run().await,
        Command::Profile(c) => c.run().await,
        Command::RotateKey(c) => c.run().await,
        Command::Audit(c) => c.run().await,
        Command::Perms(c) => c.run().await,
        Command::Kick(c) => c.run().await,
        Command::Disconnect(c) => c.run().await,
        Command::Ban(c) => c.run().await,
        Command::Unban(c) => c.run().await,
        Command::Bans(c) => c.run().await,
        Command::Skill(c) => c.run().await,
        Command::McpShare(c) => c.run().await,
        Command::Tools(c) => c.run().await,
        Command::ShareDir(c) => c.run().await,
        Command::PeerFiles(c) => c.run().await,
        Command::Deploy(c) => c.run().await,
        Command::Undeploy(c) => c.run().await,
        Command::Deployments(c) => c.run().await,
        Command::Vault(c) => c.run().await,
        Command::Sql(c) => c.run().await,
        Command::Graph(c) => c.run().await,
        Command::Vector(c) => c.run().await,
        Command::Watch(c) => c.run().await,
        Command::Webhook(c) => c.run().await,
        Command::Clock(c) => c.run().await,
        Command::Telegram(c) => c.run().await,
        Command::Approvers(c) => c.run().await,
        Command::Approvals(c) => c.run().await,
        Command::Approve(c) => c.run().await,
        Command::Dashboard(c) => c.run().await,
        Command::Deny(c) => c.run().await,
    }
}

/// Prints one JSON document on stdout.
/// Reads a secret from a file, or from stdin when `path` is `-`: at most `max` bytes, zeroed
/// when dropped (secrets come this way, never as arguments, which other users can see).
pub fn read_secret_text(
    path: &std::path::Path,
    max: u64,
) -> std::io::Result<zeroize::Zeroizing<String>> {
    use std::io::Read;
    let mut text = zeroize::Zeroizing::new(String::new());
    if path.as_os_str() == "-" {
        std::io::stdin().take(max).read_to_string(&mut text)?;
    } else {
        std::fs::File::open(path)?
            .take(max)
            .read_to_string(&mut text)?;
    }
    Ok(text)
}

pub fn print_json(value: &impl Serialize) {
    output::json(value);
}

/// The mesh a command acts on, from the config and `--mesh`.
pub fn select_mesh(mesh: Option<&str>) -> Result<MeshEntry, CliError> {
    let config = ConfigDir::from_env().load()?;
    Ok(config.select(mesh)?.clone())
}

/// What a CLI connection says about itself.
pub fn cli_peer(entry: &MeshEntry) -> PeerInfo {
    PeerInfo {
        display_name: Some(entry.display_name.clone()),
        session_id: format!("cli-{}", std::process::id()),
        pid: std::process::id(),
        cwd: std::env::current_dir()
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        hostname: hostname(),
        peer_type: Some("human".into()),
        channel: Some("cli".into()),
        model: None,
        groups: None,
        peer_role: Some("control-plane".into()),
    }
}

pub fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
}

/// Connects to the mesh's broker as a one-shot CLI client.
pub async fn connect(entry: &MeshEntry) -> Result<MeshClient, CliError> {
    let options = ConnectOptions {
        // Root keys of new epochs (PROTOCOL.md §12.4) are saved in this config.
        config_dir: Some(ConfigDir::from_env()),
        ..ConnectOptions::new(entry.clone(), cli_peer(entry))
    };
    Ok(MeshClient::connect(options).await?)
}

/// Connects to the mesh, runs `f`, and closes the connection whatever `f` returned.
pub(super) async fn with_client<T>(
    mesh: Option<&str>,
    f: impl AsyncFnOnce(&crate::client::MeshClient) -> Result<T, CliError>,
) -> Result<T, CliError> {
    let entry = select_mesh(mesh)?;
    let client = connect(&entry).await?;
    let result = f(&client).await;
    client.close().await;
    result
}

/// `a,b, c` → `["a", "b", "c"]`.
pub(super) fn split_list(v: &Option<String>) -> Vec<String> {
    v.as_deref()
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

/// Words given as several arguments, as one text.
pub(super) fn words(what: &str, args: &[String]) -> Result<String, CliError> {
    let text = args.join(" ");
    if text.trim().is_empty() {
        return Err(CliError::Usage(format!("give the {what}")));
    }
    Ok(text)
}

/// A value typed on the command line: JSON if it reads as JSON, else the text itself.
pub(super) fn json_or_text(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or_else(|_| serde_json::Value::String(s.to_string()))
}

/// A JSON value for people: strings bare, everything else as compact JSON.
pub(super) fn show_value(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}
