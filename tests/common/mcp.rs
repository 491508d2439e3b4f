//! Calling our MCP server's tools from a real MCP client (rmcp's client side), for the test
//! files that drive `claudemesh mcp`.

use rmcp::model::CallToolRequestParams;
use rmcp::service::{RoleClient, RunningService, Service};
use rmcp::transport::TokioChildProcess;
use serde_json::{Map, Value};

use super::{BIN, Person};

/// `claudemesh mcp` as `person` runs it (its config dir as HOME too, session id
/// `test-NAME`, no channel), ready for an MCP client to serve on.
pub fn mcp_process(person: &Person) -> TokioChildProcess {
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.arg("mcp")
        .env("CLAUDEMESH_CONFIG_DIR", person.config_dir())
        .env("CLAUDEMESH_SESSION_ID", format!("test-{}", person.name))
        .env("HOME", person.config_dir())
        .env_remove("CLAUDEMESH_CHANNEL");
    TokioChildProcess::new(cmd).expect("spawn claudemesh mcp")
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
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.arg("mcp")
        .env("CLAUDEMESH_CONFIG_DIR", person.config_dir())
        .env("CLAUDEMESH_SESSION_ID", format!("test-{}", person.name))
        .env("HOME", person.config_dir())
        .env_remove("CLAUDEMESH_CHANNEL");
    let (transport, stderr) = TokioChildProcess::builder(cmd)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn claudemesh mcp");
    (transport, stderr.expect("piped stderr"))
}
