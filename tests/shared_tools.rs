//! Peer-hosted MCP tools (issue 15 tier 1): alice hosts a real stdio MCP server
//! (`tests/fixtures/echo_mcp.py`) with `claudemesh mcp-share`; bob calls its tools through the
//! broker from the CLI, from his MCP server (rmcp client) and from the client library.

use crate::common;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;

use rmcp::ServiceExt;
use rmcp::service::{RoleClient, RunningService};
use serde_json::{Value, json};

use claudemesh::client::ClientError;
use claudemesh::protocol::messages::McpCall;
use claudemesh::protocol::{ClientMessage, ServerMessage};
use common::mcp::{call, mcp_process};
use common::*;

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/echo_mcp.py")
}

/// A running `claudemesh mcp-share`; dropping it kills the process.
struct Sharing {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Sharing {
    /// Starts `claudemesh mcp-share EXTRA -- python3 echo_mcp.py` as `person` and waits for
    /// its "sharing" line.
    fn start(person: &Person, extra: &[&str]) -> Sharing {
        let mut child = Command::new(BIN)
            .arg("mcp-share")
            .args(extra)
            .arg("--")
            .arg("python3")
            .arg(fixture())
            .env("CLAUDEMESH_CONFIG_DIR", person.config_dir())
            .env("USER", &person.name)
            .env_remove("CLAUDEMESH_BROKER_URL")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start claudemesh mcp-share");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let sharing = Sharing { child, lines };
        let first = sharing.next_line();
        assert!(first.starts_with("sharing MCP server"), "{first}");
        sharing
    }

    fn next_line(&self) -> String {
        self.lines
            .recv_timeout(WAIT)
            .expect("a line from mcp-share within the wait")
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Sharing {
    fn drop(&mut self) {
        self.kill();
    }
}

fn servers(person: &Person) -> Vec<Value> {
    person.json(&["tools", "list", "--json"])["servers"]
        .as_array()
        .expect("servers")
        .clone()
}

/// `host` registers (not persistently) server `server` with one tool `tool` taking any object:
/// a host the test answers by hand, frame by frame.
async fn register_one(host: &claudemesh::client::MeshClient, server: &str, tool: &str) {
    host.mcp_register(claudemesh::protocol::messages::McpRegister {
        server_name: server.into(),
        description: String::new(),
        tools: vec![claudemesh::protocol::messages::McpToolSpec {
            name: tool.into(),
            description: String::new(),
            input_schema: json!({"type": "object"}),
        }],
        persistent: false,
    })
    .await
    .expect("register");
}

type Mcp = RunningService<RoleClient, ()>;

async fn start_mcp(person: &Person) -> Mcp {
    let transport = mcp_process(person);
    ().serve(transport)
        .await
        .expect("MCP handshake with claudemesh mcp")
}

/// Waits until the MCP server's session is connected (it connects in the background).
async fn connected(mcp: &Mcp) {
    eventually("the MCP server's connection", || async {
        let (_, text) = call(mcp, "mesh_info", json!({})).await;
        !text.contains("connecting")
    })
    .await;
}

/// The whole path: register from a real stdio server, list, call from the CLI and from an MCP
/// client, with the caller's identity reaching the host's server; audit has the registration.
#[tokio::test(flavor = "multi_thread")]
async fn a_shared_stdio_server_answers_bob_from_the_cli_and_from_his_mcp_client() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    let share = Sharing::start(&alice, &[]);

    // Registered under the server's own name, with its four tools and schemas.
    let list = servers(&bob);
    assert_eq!(list.len(), 1, "{list:#?}");
    let echo = &list[0];
    assert_eq!(echo["name"], "echo-server");
    assert_eq!(echo["hostedBy"], "alice");
    assert_eq!(echo["online"], true);
    let tools: Vec<&str> = echo["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(tools, ["echo", "whoami", "big", "fail"]);
    assert_eq!(echo["tools"][0]["inputSchema"]["required"], json!(["text"]));

    // From the CLI.
    let out = bob.ok(&[
        "tools",
        "call",
        "echo-server",
        "echo",
        r#"{"text":"hello mesh"}"#,
    ]);
    assert_eq!(out.trim(), "echo: hello mesh");
    // The host's log names the call, never its arguments.
    let logged = share.next_line();
    assert_eq!(logged, "call from bob: echo-server echo → ok");

    // The host's MCP server learns who called: bob's name and member key, as the broker
    // proved them.
    let who = bob.ok(&["tools", "call", "echo-server", "whoami"]);
    let who: Value = serde_json::from_str(who.trim()).expect("whoami answers JSON");
    assert_eq!(who["name"], "bob");
    assert_eq!(who["memberPubkey"], bob.entry().member_pubkey);

    // From bob's MCP server, through rmcp's client.
    let mcp = start_mcp(&bob).await;
    connected(&mcp).await;
    let (ok, text) = call(&mcp, "mesh_mcp_list", json!({})).await;
    assert!(
        ok && text.contains("echo-server") && text.contains("whoami"),
        "{text}"
    );
    let (ok, text) = call(
        &mcp,
        "mesh_tool_call",
        json!({"server_name": "echo-server", "tool_name": "echo", "args": {"text": "via mcp"}}),
    )
    .await;
    assert!(ok, "{text}");
    assert!(text.contains("echo: via mcp"), "{text}");
    let _ = mcp.cancel().await;

    // Registration is audited with metadata only.
    let log = alice.json(&["audit", "--event", "mcp.registered", "--json"]);
    let entry = &log["entries"][0];
    assert_eq!(entry["actor"], "alice");
    assert_eq!(entry["payload"]["server"], "echo-server");
    assert_eq!(entry["payload"]["tools"], "4");
    // The arguments went sealed: the broker never had them.
    drop(share);
    assert_broker_never_saw(&broker, b"hello mesh");
}

/// Every call is in the audit log with its caller, server, tool, outcome and duration, and
/// never with its arguments: not even those an original client sends in clear.
#[tokio::test(flavor = "multi_thread")]
async fn every_tool_call_is_audited_without_its_arguments() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    let share = Sharing::start(&alice, &[]);
    let secret = "cobalt-heron-argument-5521";
    let out = bob.ok(&[
        "tools",
        "call",
        "echo-server",
        "echo",
        &format!(r#"{{"text":"{secret}"}}"#),
    ]);
    assert_eq!(out.trim(), format!("echo: {secret}"));
    // In clear, as the original's clients send it: the broker sees it, and must not keep it.
    let client = bob.client().await;
    let answered = client
        .request(echo_in_clear(secret))
        .await
        .expect("the clear call's result");
    assert!(
        matches!(answered, ServerMessage::McpCallResult(_)),
        "{answered:?}"
    );
    let refused = bob.refused(&["tools", "call", "echo-server", "no-such-tool", "{}"]);
    assert!(refused.contains("no tool"), "{refused}");
    // A tool that fails: its answer travels sealed, and its host says it failed.
    let failed = bob.refused(&["tools", "call", "echo-server", "fail", "{}"]);
    assert!(failed.contains("this tool always fails"), "{failed}");

    let log = alice.json(&["audit", "--event", "mcp.called", "--json"]);
    let entries = log["entries"].as_array().expect("entries").clone();
    assert_eq!(entries.len(), 4, "{log:#}");
    let alice_id = alice.entry().member_id;
    let (refusals, answered): (Vec<Value>, Vec<Value>) = entries
        .into_iter()
        .partition(|e| e["payload"]["outcome"] == "refused");
    assert_eq!(refusals.len(), 1, "{log:#}");
    assert_eq!(refusals[0]["payload"]["tool"], "no-such-tool");
    assert_eq!(refusals[0]["payload"]["code"], "not_found");
    let (failures, answered): (Vec<Value>, Vec<Value>) = answered
        .into_iter()
        .partition(|e| e["payload"]["tool"] == "fail");
    assert_eq!(failures.len(), 1, "{log:#}");
    assert_eq!(failures[0]["payload"]["outcome"], "error", "{log:#}");
    assert_eq!(failures[0]["payload"]["host"], alice_id.as_str());
    assert_eq!(answered.len(), 2, "{log:#}");
    for entry in &answered {
        assert_eq!(entry["actor"], "bob");
        assert_eq!(entry["actorMemberId"], bob.entry().member_id.as_str());
        let p = &entry["payload"];
        assert_eq!(p["server"], "echo-server");
        assert_eq!(p["tool"], "echo");
        assert_eq!(p["outcome"], "ok");
        assert_eq!(p["host"], alice_id.as_str());
        assert!(
            p["durationMs"]
                .as_str()
                .is_some_and(|d| d.parse::<u64>().is_ok()),
            "{p}"
        );
    }
    let shown = alice.ok(&["audit", "--event", "mcp.called"]);
    assert!(shown.contains("mcp.called"), "{shown}");
    assert!(
        !shown.contains(secret) && !log.to_string().contains(secret),
        "{shown}"
    );
    drop(share);
    assert_broker_never_saw(&broker, secret.as_bytes());
}

/// What the broker relays is ciphertext: the host's connection receives the call sealed, opens
/// it with its key, and its sealed answer comes back to the caller.
#[tokio::test(flavor = "multi_thread")]
async fn arguments_and_results_travel_sealed_between_caller_and_host() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    let host = alice.client().await;
    let tools = vec![claudemesh::protocol::messages::McpToolSpec {
        name: "shout".into(),
        description: "upper-cases".into(),
        input_schema: json!({"type": "object"}),
    }];
    host.mcp_register(claudemesh::protocol::messages::McpRegister {
        server_name: "loud".into(),
        description: String::new(),
        tools,
        persistent: false,
    })
    .await
    .expect("register");
    let caller = bob.client().await;
    let calling = tokio::spawn(async move {
        caller
            .tool_call("loud", "shout", json!({"text": "quiet-secret-words"}), None)
            .await
    });
    let forward = next_forward(&host).await;
    assert!(forward.args.is_none(), "arguments relayed in clear");
    let sealed = forward.sealed.clone().expect("sealed arguments");
    assert!(!sealed.ciphertext.contains("quiet"), "{sealed:?}");
    assert_eq!(forward.caller_name, "bob");
    let incoming = host.open_call(forward).expect("the host opens the call");
    assert_eq!(incoming.args["text"], "quiet-secret-words");
    host.answer_call(
        &incoming,
        Ok(json!({"content": [{"type": "text", "text": "QUIET-SECRET-WORDS"}]})),
    )
    .expect("answer");
    let result = calling.await.unwrap().expect("the call's result");
    assert_eq!(result["content"][0]["text"], "QUIET-SECRET-WORDS");
    assert_broker_never_saw(&broker, b"quiet-secret-words");
}

/// A host that is gone is said at once (the call asks for 120 s, and returns long before the
/// harness's own 30 s limit); a persistent registration stays listed, offline, even across a
/// broker restart; a non-persistent one ends with its host.
#[tokio::test(flavor = "multi_thread")]
async fn a_call_to_an_offline_host_fails_at_once_with_a_clear_error() {
    let mut broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    let mut kept = Sharing::start(&alice, &["--name", "kept", "--persistent"]);
    let mut brief = Sharing::start(&alice, &["--name", "brief"]);
    assert_eq!(servers(&bob).len(), 2);
    kept.kill();
    brief.kill();

    eventually("the hosts to be seen offline", || async {
        servers(&bob).iter().all(|s| s["online"] == false)
    })
    .await;
    let list = servers(&bob);
    assert_eq!(list.len(), 1, "the non-persistent one ended: {list:#?}");
    assert_eq!(list[0]["name"], "kept");

    let err = bob.refused(&[
        "tools",
        "call",
        "kept",
        "echo",
        r#"{"text":"anyone?"}"#,
        "--timeout",
        "120",
    ]);
    assert!(
        err.contains("offline") && err.contains("host_offline"),
        "{err}"
    );
    let err = bob.refused(&["tools", "call", "brief", "echo", r#"{"text":"x"}"#]);
    assert!(err.contains("no MCP server \"brief\""), "{err}");

    broker.restart();
    let list = servers(&bob);
    assert_eq!(list.len(), 1, "{list:#?}");
    assert_eq!(list[0]["name"], "kept");
    assert_eq!(list[0]["online"], false);
    assert_eq!(list[0]["persistent"], true);

    // Its host comes back: the same registration answers again.
    let _back = Sharing::start(&alice, &["--name", "kept", "--persistent"]);
    let out = bob.ok(&["tools", "call", "kept", "echo", r#"{"text":"back"}"#]);
    assert_eq!(out.trim(), "echo: back");
    // Only its host (or a manager) removes it.
    let err = bob.refused(&["tools", "remove", "kept"]);
    assert!(err.contains("only its host"), "{err}");
    alice.ok(&["tools", "remove", "kept"]);
    let removed = alice.json(&["audit", "--event", "mcp.removed", "--json"]);
    assert!(
        removed["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["payload"]["server"] == "kept" && e["actor"] == "alice"),
        "{removed:#}"
    );
}

/// Arguments over the limit are refused by the broker (and before sending by the CLI); a
/// result over the limit comes back as an error, not as a truncated result.
#[tokio::test(flavor = "multi_thread")]
async fn calls_and_results_above_the_size_limits_are_refused() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    let _share = Sharing::start(&alice, &[]);

    // The broker's own check, with arguments in clear as the original's clients send them.
    let client = bob.client().await;
    let huge = "y".repeat(40 * 1024);
    let refused = client.request(echo_in_clear(&huge)).await;
    match refused {
        Err(ClientError::Broker { code, message }) => {
            assert_eq!(code, "payload_too_large");
            assert!(message.contains("the limit is 32768 bytes"), "{message}");
        }
        other => panic!("not refused: {other:?}"),
    }
    // The broker still serves bob.
    assert_eq!(client.mcp_list().await.expect("list").len(), 1);

    let args = json!({ "text": "z".repeat(30 * 1024) }).to_string();
    let err = bob.refused(&["tools", "call", "echo-server", "echo", &args]);
    assert!(err.contains("the limit is 32768 bytes"), "{err}");

    let err = bob.refused(&["tools", "call", "echo-server", "big", r#"{"size":60000}"#]);
    assert!(err.contains("limit"), "{err}");
    let ok = bob.ok(&["tools", "call", "echo-server", "big", r#"{"size":1000}"#]);
    assert_eq!(ok.trim().len(), 1000);
}

/// The host's grants decide: revoking bob's `tools` right, or blocking him, refuses his calls
/// on the broker; granting it back lets them through.
#[tokio::test(flavor = "multi_thread")]
async fn a_host_that_revoked_the_tools_right_or_blocked_the_caller_refuses_him() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    let share = Sharing::start(&alice, &[]);
    let call = ["tools", "call", "echo-server", "echo", r#"{"text":"hi"}"#];

    alice.ok(&["grants", "set", "bob", "-tools"]);
    let err = bob.refused(&call);
    assert!(
        err.contains("alice does not let you call its tools") && err.contains("forbidden"),
        "{err}"
    );
    alice.ok(&["grants", "set", "bob", "+tools"]);
    assert_eq!(bob.ok(&call).trim(), "echo: hi");

    alice.ok(&["block", "bob"]);
    let err = bob.refused(&call);
    assert!(err.contains("does not let you call its tools"), "{err}");
    alice.ok(&["unblock", "bob"]);
    assert_eq!(bob.ok(&call).trim(), "echo: hi");
    // Refused calls never reached the host: it served exactly the two that passed.
    assert_eq!(share.next_line(), "call from bob: echo-server echo → ok");
    assert_eq!(share.next_line(), "call from bob: echo-server echo → ok");
}

/// A member whose `tools` capability is denied cannot call shared tools.
#[tokio::test(flavor = "multi_thread")]
async fn a_member_without_the_tools_capability_is_refused() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    let _share = Sharing::start(&alice, &[]);
    alice.ok(&["perms", "set", "bob", "-tools"]);
    let err = bob.refused(&["tools", "call", "echo-server", "echo", r#"{"text":"hi"}"#]);
    assert!(err.contains("lacks the \"tools\" capability"), "{err}");
    // Sharing needs it too.
    let fixture = fixture().display().to_string();
    let err = bob.refused(&["mcp-share", "--name", "bobs", "--", "python3", &fixture]);
    assert!(err.contains("lacks the \"tools\" capability"), "{err}");
    alice.ok(&["perms", "set", "bob", "+tools"]);
    let out = bob.ok(&["tools", "call", "echo-server", "echo", r#"{"text":"hi"}"#]);
    assert_eq!(out.trim(), "echo: hi");
}

/// A Claude Code session shares a server through its own MCP server (`mesh_mcp_register`):
/// the session hosts it and answers bob's calls; `mesh_mcp_remove` ends it.
#[tokio::test(flavor = "multi_thread")]
async fn a_session_shares_a_server_with_mesh_mcp_register() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    let mcp = start_mcp(&alice).await;
    connected(&mcp).await;
    let (ok, text) = register_session_echo(&mcp, json!({"description": "echoes"})).await;
    assert!(ok, "{text}");
    assert!(text.contains("4 tools"), "{text}");
    let out = bob.ok(&[
        "tools",
        "call",
        "session-echo",
        "echo",
        r#"{"text":"from a session"}"#,
    ]);
    assert_eq!(out.trim(), "echo: from a session");
    let (ok, text) = call(
        &mcp,
        "mesh_mcp_remove",
        json!({"server_name": "session-echo"}),
    )
    .await;
    assert!(ok, "{text}");
    assert!(servers(&bob).is_empty());
    let _ = mcp.cancel().await;
}

/// A server a session registered (not persistent) is gone from a restarted broker; the
/// session registers it again once it reconnects, so bob's calls work again without alice
/// doing anything.
#[tokio::test(flavor = "multi_thread")]
async fn a_sessions_server_is_registered_again_after_the_broker_restarts() {
    let mut broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    let mcp = start_mcp(&alice).await;
    connected(&mcp).await;
    let (ok, text) = register_session_echo(&mcp, json!({})).await;
    assert!(ok, "{text}");
    broker.restart();
    // Bounded: `eventually` gives up after its wait.
    eventually("bob's call to reach alice's session again", || async {
        let out = bob.run(&[
            "tools",
            "call",
            "session-echo",
            "echo",
            r#"{"text":"again"}"#,
        ]);
        out.code == 0 && out.stdout.trim() == "echo: again"
    })
    .await;
    let _ = mcp.cancel().await;
}

/// The broker's own result limit: a host that sends back more than 48 KiB (here in clear, as
/// the original's clients answer) has its answer replaced by `result_too_large`.
#[tokio::test(flavor = "multi_thread")]
async fn the_broker_does_not_relay_a_result_over_the_limit() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    let host = alice.client().await;
    register_one(&host, "flood", "much").await;
    let caller = bob.client().await;
    let calling =
        tokio::spawn(async move { caller.tool_call("flood", "much", json!({}), None).await });
    let forward = next_forward(&host).await;
    host.notify(ClientMessage::McpCallResponse(Box::new(
        claudemesh::protocol::messages::McpCallResult {
            call_id: Some(forward.call_id),
            result: Some(json!("w".repeat(50 * 1024))),
            ..Default::default()
        },
    )))
    .expect("answer");
    match calling.await.unwrap() {
        Err(ClientError::Broker { code, message }) => {
            assert_eq!(code, "result_too_large");
            assert!(message.contains("the limit is 49152 bytes"), "{message}");
        }
        other => panic!("relayed: {other:?}"),
    }
}

/// One caller has at most 16 calls waiting for hosts; the next is refused at once, and a
/// place frees when a call is answered.
#[tokio::test(flavor = "multi_thread")]
async fn a_caller_has_a_bounded_number_of_calls_in_flight() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    let host = alice.client().await;
    register_one(&host, "slow", "wait").await;
    let caller = std::sync::Arc::new(bob.client().await);
    let mut waiting = Vec::new();
    for _ in 0..16 {
        let caller = caller.clone();
        waiting.push(tokio::spawn(async move {
            caller.tool_call("slow", "wait", json!({}), None).await
        }));
    }
    let mut forwards = Vec::new();
    while forwards.len() < 16 {
        forwards.push(next_forward(&host).await);
    }
    match caller.tool_call("slow", "wait", json!({}), None).await {
        Err(ClientError::Broker { code, .. }) => assert_eq!(code, "rate_limited"),
        other => panic!("a 17th call went through: {other:?}"),
    }
    for f in forwards {
        let call = host.open_call(f).expect("open");
        host.answer_call(&call, Ok(json!({"content": []})))
            .expect("answer");
    }
    for w in waiting {
        w.await.unwrap().expect("answered");
    }
    // The places are free again: a new call reaches the host.
    let again =
        tokio::spawn(async move { caller.tool_call("slow", "wait", json!({}), None).await });
    let forward = next_forward(&host).await;
    let call = host.open_call(forward).expect("open");
    host.answer_call(&call, Ok(json!({"content": []})))
        .expect("answer");
    again.await.unwrap().expect("answered");
}

/// A host that does not answer in time gives `timeout`; a host that goes away during the call
/// gives `host_offline` at once, not after the timeout.
#[tokio::test(flavor = "multi_thread")]
async fn a_silent_host_times_out_and_a_vanished_one_is_reported() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    let host = alice.client().await;
    register_one(&host, "mute", "nothing").await;
    let caller = bob.client().await;
    match caller
        .tool_call(
            "mute",
            "nothing",
            json!({}),
            Some(std::time::Duration::from_secs(1)),
        )
        .await
    {
        Err(ClientError::Broker { code, message }) => {
            assert_eq!(code, "timeout");
            assert!(message.contains("did not answer"), "{message}");
        }
        other => panic!("no timeout: {other:?}"),
    }

    // The host did get that call (and never answered it).
    let first = next_forward(&host).await;
    // The next call asks for 120 s; the host leaves while it waits.
    let calling = tokio::spawn(async move {
        caller
            .tool_call(
                "mute",
                "nothing",
                json!({}),
                Some(std::time::Duration::from_secs(120)),
            )
            .await
    });
    let second = next_forward(&host).await;
    assert_ne!(first.call_id, second.call_id);
    host.close().await;
    match tokio::time::timeout(WAIT, calling).await {
        Ok(Ok(Err(ClientError::Broker { code, message }))) => {
            assert_eq!(code, "host_offline");
            assert!(
                message.contains("disconnected during the call"),
                "{message}"
            );
        }
        other => panic!("not reported: {other:?}"),
    }
}

async fn next_forward(
    host: &claudemesh::client::MeshClient,
) -> claudemesh::protocol::messages::McpCallForward {
    loop {
        match tokio::time::timeout(WAIT, host.next_push()).await {
            Ok(Some(ServerMessage::McpCallForward(f))) => return *f,
            Ok(Some(_)) => continue,
            other => panic!("no forwarded call: {other:?}"),
        }
    }
}

/// `mcp-share` keeps serving across a broker restart: it reconnects and registers again.
#[tokio::test(flavor = "multi_thread")]
async fn mcp_share_registers_again_after_the_broker_restarts() {
    let mut broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    let share = Sharing::start(&alice, &[]);
    broker.restart();
    assert_eq!(
        share.next_line(),
        "reconnected; \"echo-server\" is shared again"
    );
    let out = bob.ok(&[
        "tools",
        "call",
        "echo-server",
        "echo",
        r#"{"text":"still here"}"#,
    ]);
    assert_eq!(out.trim(), "echo: still here");
}

/// A call of echo-server's `echo` with its argument in clear, as the original's clients send it.
fn echo_in_clear(text: &str) -> ClientMessage {
    ClientMessage::McpCall(Box::new(McpCall {
        server_name: "echo-server".into(),
        tool_name: "echo".into(),
        args: Some(json!({ "text": text })),
        sealed: None,
        timeout_ms: None,
    }))
}

/// Registers the echo fixture as `session-echo` through the session's `mesh_mcp_register`,
/// with `extra` arguments; the tool call's outcome.
async fn register_session_echo(mcp: &Mcp, mut extra: Value) -> (bool, String) {
    extra["command"] = json!(["python3", fixture().display().to_string()]);
    extra["server_name"] = json!("session-echo");
    call(mcp, "mesh_mcp_register", extra).await
}
