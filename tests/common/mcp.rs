//! Calling our MCP server's tools from a real MCP client (rmcp's client side), for the test
//! files that drive `claudemesh mcp`.

use rmcp::ClientHandler;
use rmcp::model::{
    CallToolRequestParams, ClientConfig, ClientNotification, CustomNotification, ProtocolVersion,
};
use rmcp::service::{NotificationContext, RoleClient, RunningService, Service};
use rmcp::transport::TokioChildProcess;
use serde_json::{Map, Value};

use super::{BIN, Person};

/// The command that starts `claudemesh mcp` as `person` runs it (its config dir as HOME too,
/// session id `test-NAME`, no channel); a test may add to it.
pub fn mcp_command(person: &Person) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.arg("mcp")
        .env("CLAUDEMESH_CONFIG_DIR", person.config_dir())
        .env("CLAUDEMESH_SESSION_ID", format!("test-{}", person.name))
        .env("HOME", person.config_dir())
        .env_remove("CLAUDEMESH_CHANNEL");
    cmd
}

/// `claudemesh mcp` as `person` runs it, ready for an MCP client to serve on.
pub fn mcp_process(person: &Person) -> TokioChildProcess {
    TokioChildProcess::new(mcp_command(person)).expect("spawn claudemesh mcp")
}

/// Calls `tool` with `args` (a JSON object); returns whether it succeeded and its text.
pub async fn call<S: Service<RoleClient>>(
    mcp: &RunningService<RoleClient, S>,
    tool: &str,
    args: Value,
) -> (bool, String) {
    let args: Map<String, Value> = match args {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    let result = mcp
        .call_tool(CallToolRequestParams::new(tool.to_string()).with_arguments(args))
        .await
        .unwrap_or_else(|e| panic!("tools/call {tool}: {e}"));
    let text = result
        .content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect::<Vec<_>>()
        .join("\n");
    (result.is_error != Some(true), text)
}

/// [`mcp_process`] with its stderr (the server's log, as Claude Code keeps it) readable.
#[allow(dead_code)]
pub fn mcp_process_with_log(person: &Person) -> (TokioChildProcess, tokio::process::ChildStderr) {
    let (transport, stderr) = TokioChildProcess::builder(mcp_command(person))
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn claudemesh mcp");
    (transport, stderr.expect("piped stderr"))
}

/// The first line of an MCP server's log ([`mcp_process_with_log`]) that contains `needle`,
/// each line awaited for at most [`WAIT`](super::WAIT).
#[allow(dead_code)]
pub async fn log_line_with(log: tokio::process::ChildStderr, needle: &str) -> String {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let mut lines = BufReader::new(log).lines();
    loop {
        let line = tokio::time::timeout(super::WAIT, lines.next_line())
            .await
            .expect("a log line within the wait")
            .expect("readable log")
            .expect("the log to go on");
        if line.contains(needle) {
            return line;
        }
    }
}

/// A Claude-Code-like MCP client: it records every custom notification (method, params).
pub struct Recorder {
    pub tx: tokio::sync::mpsc::UnboundedSender<(String, Value)>,
}

impl ClientHandler for Recorder {
    fn get_info(&self) -> ClientConfig {
        ClientConfig::default().with_protocol_version(ProtocolVersion::LATEST_WITH_INITIALIZE)
    }

    async fn on_custom_notification(
        &self,
        notification: CustomNotification,
        _context: NotificationContext<RoleClient>,
    ) {
        let _ = self.tx.send((
            notification.method,
            notification.params.unwrap_or(Value::Null),
        ));
    }
}

/// `claudemesh mcp` served to a [`Recorder`], and the notifications it records.
pub type Mcp = RunningService<RoleClient, Recorder>;
pub type Notes = tokio::sync::mpsc::UnboundedReceiver<(String, Value)>;

const PERMISSION_REQUEST: &str = "notifications/claude/channel/permission_request";
const PERMISSION: &str = "notifications/claude/channel/permission";

/// Sends a permission prompt as Claude Code does.
pub async fn ask(mcp: &Mcp, request_id: &str, tool: &str, description: &str, preview: &str) {
    mcp.send_notification(ClientNotification::CustomNotification(
        CustomNotification::new(
            PERMISSION_REQUEST,
            Some(serde_json::json!({
                "request_id": request_id,
                "tool_name": tool,
                "description": description,
                "input_preview": preview,
            })),
        ),
    ))
    .await
    .expect("send permission_request");
}

/// The next `notifications/claude/channel/permission` the server sends.
pub async fn next_decision(rx: &mut Notes) -> Value {
    loop {
        let (method, params) = tokio::time::timeout(super::WAIT, rx.recv())
            .await
            .expect("a permission notification within the wait")
            .expect("notification stream open");
        if method == PERMISSION {
            return params;
        }
    }
}

/// A `claude` stand-in first on a PATH: it writes each argument it is given (`ARG …`) and
/// the `CLAUDEMESH_*` environment to `record`, so a test sees what `launch` started.
pub struct FakeClaude {
    _dir: tempfile::TempDir,
    pub record: std::path::PathBuf,
    /// PATH with the stand-in's directory first.
    pub path: String,
}

impl FakeClaude {
    pub fn new() -> FakeClaude {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let record = dir.path().join("record.txt");
        let fake = dir.path().join("claude");
        std::fs::write(
            &fake,
            format!(
                "#!/bin/sh\n{{ for a in \"$@\"; do echo \"ARG $a\"; done; env | grep ^CLAUDEMESH_ | sort; }} > {}\n",
                record.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = format!(
            "{}:{}",
            dir.path().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        FakeClaude {
            _dir: dir,
            record,
            path,
        }
    }
}
