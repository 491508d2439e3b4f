//! `claudemesh mcp` as Claude Code runs it: a child process on stdio, driven by rmcp's client.

use crate::common;

use std::process::Command as StdCommand;
use std::time::Duration;

use rmcp::ServiceExt;
use rmcp::service::{RoleClient, RunningService};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use common::mcp::{Recorder, call, mcp_process};
use common::*;

mod connection;
mod delivery;
mod setup;

type Mcp = RunningService<RoleClient, Recorder>;

/// Every tool the issue lists for the MCP server.
const ALL_TOOLS: [&str; 67] = [
    "send_message",
    "list_peers",
    "check_messages",
    "message_status",
    "set_summary",
    "set_status",
    "set_visible",
    "join_group",
    "leave_group",
    "set_state",
    "get_state",
    "list_state",
    "remember",
    "recall",
    "forget",
    "create_task",
    "claim_task",
    "complete_task",
    "list_tasks",
    "schedule_reminder",
    "list_scheduled",
    "cancel_scheduled",
    "share_context",
    "get_context",
    "list_contexts",
    "create_stream",
    "publish",
    "subscribe",
    "list_streams",
    "share_file",
    "get_file",
    "list_files",
    "file_status",
    "delete_file",
    "grant_file_access",
    "mesh_info",
    "ping_mesh",
    "block_peer",
    "unblock_peer",
    "set_grants",
    "list_grants",
    "mesh_stats",
    "set_profile",
    "rotate_key",
    "audit_query",
    "audit_verify",
    // Vectors (issue 16).
    "vector_store",
    "vector_search",
    "vector_delete",
    "list_collections",
    "vector_create",
    "vector_delete_collection",
    // SQL, graph (issue 16); watches, webhooks, clock (issue 17).
    "mesh_query",
    "mesh_execute",
    "mesh_schema",
    "graph_query",
    "graph_execute",
    "mesh_watch",
    "mesh_unwatch",
    "mesh_watches",
    "create_webhook",
    "list_webhooks",
    "delete_webhook",
    "mesh_clock",
    "mesh_set_clock",
    "mesh_pause_clock",
    "mesh_resume_clock",
];

async fn start_mcp(person: &Person) -> (Mcp, mpsc::UnboundedReceiver<(String, Value)>) {
    let transport = mcp_process(person);
    let (tx, rx) = mpsc::unbounded_channel();
    let client = Recorder { tx }
        .serve(transport)
        .await
        .expect("MCP handshake with claudemesh mcp");
    (client, rx)
}

/// Waits for the next channel notification.
async fn next_channel(rx: &mut mpsc::UnboundedReceiver<(String, Value)>) -> Value {
    loop {
        let (method, params) = tokio::time::timeout(WAIT, rx.recv())
            .await
            .expect("a notification within the wait")
            .expect("notification stream open");
        if method == "notifications/claude/channel" {
            return params;
        }
    }
}

fn valid_meta_key(k: &str) -> bool {
    let mut chars = k.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[tokio::test(flavor = "multi_thread")]
async fn mcp_tools_send_and_channel_notifications() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    let (mcp, mut notes) = start_mcp(&bob).await;

    let tools = mcp.list_all_tools().await.expect("tools/list");
    let names: Vec<String> = tools.iter().map(|t| t.name.to_string()).collect();
    for expected in ALL_TOOLS {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} in {names:?}"
        );
    }
    let send_schema = &tools
        .iter()
        .find(|t| t.name == "send_message")
        .unwrap()
        .input_schema;
    assert!(
        send_schema["properties"]["to"].is_object(),
        "send_message has a `to` schema"
    );

    // The MCP server is a live session peer of bob's: alice sees it.
    bobs_session_appears_to(&alice).await;

    // A tool call reaches alice, encrypted end to end.
    let (ok, text) = call(
        &mcp,
        "send_message",
        json!({"to": "alice", "message": "hello from the MCP side"}),
    )
    .await;
    assert!(ok, "send_message failed: {text}");
    assert!(text.contains("sent"), "{text}");
    let inbox = alice.run(&["inbox", "--wait", "10", "--json"]);
    assert_eq!(inbox.code, 0, "{}", inbox.stderr);
    let line: Value =
        serde_json::from_str(inbox.stdout.lines().next().expect("a message")).unwrap();
    assert_eq!(line["text"], "hello from the MCP side");
    assert_eq!(line["from"], "bob");

    // alice → bob with `next`: a channel notification with string-only meta.
    let sent = alice.json(&["send", "bob", "are you there?", "--json"]);
    assert_eq!(sent["results"][0]["queued"], true);
    let note = next_channel(&mut notes).await;
    assert_eq!(note["content"], "alice: are you there?");
    let meta = note["meta"].as_object().expect("meta object");
    for (k, v) in meta {
        assert!(valid_meta_key(k), "meta key {k:?}");
        assert!(v.is_string(), "meta {k} is a string, got {v}");
    }
    assert_eq!(meta["from_name"], "alice");
    assert_eq!(meta["priority"], "next");
    assert_eq!(meta["kind"], "message");
    assert_eq!(meta["mesh_slug"], "team");
    assert_eq!(meta["message_id"], sent["results"][0]["messageId"]);

    // `now` is marked urgent.
    alice.json(&[
        "send",
        "bob",
        "stop the deploy",
        "--priority",
        "now",
        "--json",
    ]);
    let note = next_channel(&mut notes).await;
    assert!(
        note["content"].as_str().unwrap().contains("urgent"),
        "{note}"
    );

    // `low` does not notify; it waits for check_messages, and tool results say it waits.
    alice.json(&[
        "send",
        "bob",
        "fyi: lunch at noon",
        "--priority",
        "low",
        "--json",
    ]);
    let (_, text) = {
        let mut last = (true, String::new());
        let deadline = std::time::Instant::now() + WAIT;
        while std::time::Instant::now() < deadline {
            last = call(&mcp, "ping_mesh", json!({})).await;
            if last.1.contains("waiting") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        last
    };
    assert!(text.contains("waiting: call check_messages"), "{text}");
    let (ok, text) = call(&mcp, "check_messages", json!({})).await;
    assert!(ok, "{text}");
    assert!(text.contains("fyi: lunch at noon"), "{text}");
    assert!(text.contains("alice"), "{text}");
    // Handed over once: the next check is empty.
    let (_, text) = call(&mcp, "check_messages", json!({})).await;
    assert!(text.contains("No new messages"), "{text}");
    assert!(
        tokio::time::timeout(Duration::from_millis(300), async {
            loop {
                let (m, p) = notes.recv().await.unwrap();
                if m == "notifications/claude/channel"
                    && p["content"].as_str().unwrap_or("").contains("lunch")
                {
                    break;
                }
            }
        })
        .await
        .is_err(),
        "a low message must not notify"
    );

    // Unknown recipients are tool errors, not protocol errors.
    let (ok, text) = call(
        &mcp,
        "send_message",
        json!({"to": "nobody-here", "message": "x"}),
    )
    .await;
    assert!(!ok && text.contains("nobody-here"), "{text}");
    mcp.cancel().await.ok();
}

/// alice and bob in a mesh on `broker`, bob through `claudemesh mcp`, online.
async fn bob_on_mcp(
    broker: &BrokerProc,
) -> (
    Person,
    Person,
    Mcp,
    mpsc::UnboundedReceiver<(String, Value)>,
) {
    let (alice, bob) = alice_and_bob(broker);
    let (mcp, notes) = start_mcp(&bob).await;
    eventually("bob's session online", || async {
        alice.json(&["peers", "--json"])["peers"]
            .as_array()
            .is_some_and(|p| p.iter().any(|p| p["displayName"] == "bob"))
    })
    .await;
    (alice, bob, mcp, notes)
}

/// alice sends `text` to bob from the CLI; the message id.
fn alice_sends(alice: &Person, text: &str) -> String {
    let sent = alice.json(&["send", "bob", text, "--json"]);
    sent["results"][0]["messageId"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Waits until the broker counts message `id` as acknowledged by bob's server.
async fn delivered(alice: &Person, id: &str, what: &str) {
    eventually(what, || async {
        alice.json(&["msg-status", id, "--json"])["acknowledged"] == true
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn mcp_holds_messages_while_working_and_check_messages_drains_them() {
    let broker = BrokerProc::start(&[]);
    let (alice, _bob, mcp, mut notes) = bob_on_mcp(&broker).await;
    let (ok, text) = call(&mcp, "set_status", json!({"status": "working"})).await;
    assert!(ok, "{text}");
    eventually("bob to be working", || async {
        alice.json(&["peers", "--json"])["peers"]
            .as_array()
            .is_some_and(|p| p.iter().any(|p| p["status"] == "working"))
    })
    .await;
    let id = alice_sends(&alice, "held while you work");
    // Held at the broker, by the broker's own account; so nothing reached the model.
    let status = alice.json(&["msg-status", &id, "--json"]);
    assert_eq!(status["recipients"][0]["status"], "held", "{status}");
    let (_, text) = call(&mcp, "ping_mesh", json!({})).await;
    assert!(!text.contains("waiting: call check_messages"), "{text}");
    while let Ok((method, params)) = notes.try_recv() {
        assert!(
            !params.to_string().contains("held while you work"),
            "{method} announced a held message: {params}"
        );
    }
    // check_messages asks for it explicitly, hands it over once, and it counts as delivered.
    let (_, text) = call(&mcp, "check_messages", json!({})).await;
    assert!(text.contains("held while you work"), "{text}");
    let (_, text) = call(&mcp, "check_messages", json!({})).await;
    assert!(text.contains("No new messages"), "{text}");
    delivered(&alice, &id, "the handed-over message to count as delivered").await;
    mcp.cancel().await.ok();
}

#[tokio::test(flavor = "multi_thread")]
async fn mcp_shows_a_redelivered_message_once() {
    let broker = BrokerProc::start(&["--redeliver-after", "1s"]);
    let (alice, _bob, mcp, mut notes) = bob_on_mcp(&broker).await;
    let id = alice_sends(&alice, "say this once");
    let note = next_channel(&mut notes).await;
    assert!(note["content"].as_str().unwrap().contains("say this once"));
    // The model has not taken it, so the MCP server has not acknowledged it and the broker
    // pushes it again after a second; the server knows that id and acknowledges the copy,
    // which is how the broker comes to count it as delivered.
    delivered(&alice, &id, "the repeat to be acknowledged").await;
    let (_, text) = call(&mcp, "check_messages", json!({})).await;
    assert_eq!(text.matches("say this once").count(), 1, "{text}");
    while let Ok((_, params)) = notes.try_recv() {
        assert!(
            !params.to_string().contains("say this once"),
            "announced twice: {params}"
        );
    }
    mcp.cancel().await.ok();
}

#[tokio::test(flavor = "multi_thread")]
async fn mcp_shared_data_and_file_tools_work_against_the_broker() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    let (mcp, mut notes) = start_mcp(&bob).await;
    eventually("bob's session online", || async {
        alice.json(&["peers", "--json"])["peers"]
            .as_array()
            .is_some_and(|p| p.iter().any(|p| p["displayName"] == "bob"))
    })
    .await;

    let (ok, text) = call(
        &mcp,
        "set_state",
        json!({"key": "deploy", "value": {"frozen": true}}),
    )
    .await;
    assert!(ok, "{text}");
    let v = alice.json(&["state", "get", "deploy", "--json"]);
    assert_eq!(v["value"]["frozen"], true, "{v}");
    // A change by alice reaches bob's session as a notification.
    alice.json(&["state", "set", "owner", "\"alice\"", "--json"]);
    let note = next_channel(&mut notes).await;
    assert_eq!(note["meta"]["kind"], "state", "{note}");
    assert_eq!(note["meta"]["key"], "owner");

    let (ok, text) = call(
        &mcp,
        "remember",
        json!({"content": "the staging database lives on port 5433", "tags": ["infra"]}),
    )
    .await;
    assert!(ok, "{text}");
    let (_, text) = call(&mcp, "recall", json!({"query": "staging database port"})).await;
    assert!(text.contains("5433"), "{text}");

    let (ok, text) = call(
        &mcp,
        "create_task",
        json!({"title": "write the release notes"}),
    )
    .await;
    assert!(ok, "{text}");
    let tasks = alice.json(&["task", "list", "--json"]);
    assert_eq!(
        tasks["tasks"][0]["title"], "write the release notes",
        "{tasks}"
    );

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.txt");
    std::fs::write(&path, "shared from the MCP side").unwrap();
    let (ok, text) = call(
        &mcp,
        "share_file",
        json!({"path": path.display().to_string(), "tags": ["docs"]}),
    )
    .await;
    assert!(ok, "{text}");
    let (_, text) = call(&mcp, "list_files", json!({"query": "docs"})).await;
    assert!(text.contains("notes.txt"), "{text}");

    let (ok, text) = call(&mcp, "mesh_info", json!({})).await;
    assert!(ok, "{text}");
    let info: Value = serde_json::from_str(text.split("\n\n[").next().unwrap()).unwrap();
    assert_eq!(info["memoryCount"], 1, "{info}");
    assert!(
        info["stateKeys"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k == "deploy")
    );

    let (ok, text) = call(
        &mcp,
        "schedule_reminder",
        json!({"message": "check the build", "in_seconds": 1}),
    )
    .await;
    assert!(ok, "{text}");
    let note = next_channel(&mut notes).await;
    assert_eq!(note["meta"]["kind"], "reminder", "{note}");
    assert!(
        note["content"]
            .as_str()
            .unwrap()
            .contains("check the build")
    );
    mcp.cancel().await.ok();
}

/// Governance from the MCP side (issue 13): blocking and unblocking a peer, setting the
/// profile, and the session's tool calls reported to `stats`.
#[tokio::test(flavor = "multi_thread")]
async fn mcp_blocks_sets_its_profile_and_reports_its_tool_calls() {
    let broker = BrokerProc::start(&[]);
    let (alice, _bob, mcp, _notes) = bob_on_mcp(&broker).await;

    let (ok, text) = call(&mcp, "block_peer", json!({"peer": "alice"})).await;
    assert!(ok, "{text}");
    let out = alice.run(&["send", "bob", "let me in"]);
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert!(out.stderr.contains("blocked"), "{}", out.stderr);
    let (ok, text) = call(&mcp, "list_grants", json!({})).await;
    assert!(ok && text.contains("\"blocked\": true"), "{text}");
    let (ok, text) = call(&mcp, "unblock_peer", json!({"peer": "alice"})).await;
    assert!(ok, "{text}");
    let out = alice.run(&["send", "bob", "thanks"]);
    assert_eq!(out.code, 0, "{}", out.stderr);

    let (ok, text) = call(
        &mcp,
        "set_profile",
        json!({"role_tag": "mcp-bot", "avatar": "🤖", "capabilities": ["triage"]}),
    )
    .await;
    assert!(ok, "{text}");
    let peers = alice.json(&["peers", "--json"]);
    let bob_session = peers["peers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["displayName"] == "bob" && p["peerRole"] == "session")
        .cloned()
        .unwrap_or_else(|| panic!("no session of bob's in {peers}"));
    assert_eq!(
        bob_session["profile"]["roleTag"], "mcp-bot",
        "{bob_session}"
    );
    let (ok, text) = call(&mcp, "list_peers", json!({})).await;
    assert!(ok && text.contains("🤖 mcp-bot · can: triage"), "{text}");
    let (ok, text) = call(&mcp, "set_profile", json!({"message_mode": "loud"})).await;
    assert!(!ok && text.contains("messageMode"), "{text}");

    let (ok, text) = call(&mcp, "mesh_stats", json!({})).await;
    assert!(ok && text.contains("messagesIn"), "{text}");
    // Seven tool calls so far; the session reports them, and its uptime, within a few seconds.
    eventually("bob's tool calls reported", || async {
        alice.json(&["stats", "--json"])["peers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| {
                p["displayName"] == "bob"
                    && p["reported"]["toolCalls"].as_u64() >= Some(7)
                    && p["reported"]["uptime"].is_u64()
            })
    })
    .await;
}

/// Waits until the MCP server's session is connected (it connects in the background).
async fn connected(mcp: &Mcp) {
    for _ in 0..300 {
        let (_, text) = call(mcp, "mesh_info", json!({})).await;
        if !text.contains("connecting") {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the MCP server never connected");
}

/// The audit tools: the owner's session reads and verifies the log; a member's is refused.
#[tokio::test(flavor = "multi_thread")]
async fn mcp_audit_tools_read_and_verify_the_log() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    alice.json(&["state", "set", "deploy", "\"green\"", "--json"]);
    let (owner, _) = start_mcp(&alice).await;
    connected(&owner).await;
    let (ok, text) = call(&owner, "audit_query", json!({"eventType": "state.set"})).await;
    assert!(ok, "{text}");
    assert!(
        text.contains("\"eventType\": \"state.set\"") && text.contains("\"key\": \"deploy\""),
        "{text}"
    );
    assert!(!text.contains("green"), "the value is not logged: {text}");
    let (ok, text) = call(&owner, "audit_verify", json!({})).await;
    assert!(ok && text.contains("verifies: 4 records"), "{text}");

    let (member, _) = start_mcp(&bob).await;
    connected(&member).await;
    for tool in ["audit_query", "audit_verify"] {
        let (ok, text) = call(&member, tool, json!({})).await;
        assert!(!ok && text.contains("forbidden"), "{tool}: {text}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn perms_and_bans_work_as_mcp_tools() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    let (alice_mcp, _) = start_mcp(&alice).await;
    let (bob_mcp, _) = start_mcp(&bob).await;
    for mcp in [&alice_mcp, &bob_mcp] {
        eventually("the MCP session to connect", || async {
            call(mcp, "get_perms", json!({})).await.0
        })
        .await;
    }

    let (done, text) = call(
        &alice_mcp,
        "set_perms",
        json!({"member": "bob", "deny": ["send"]}),
    )
    .await;
    assert!(done, "{text}");
    assert!(text.contains("\"denied\""), "{text}");

    let (done, text) = call(
        &bob_mcp,
        "send_message",
        json!({"to": "alice", "message": "hi"}),
    )
    .await;
    assert!(!done, "bob may not send: {text}");
    assert!(text.contains("\"send\" capability (canSend)"), "{text}");
    let (done, text) = call(&bob_mcp, "get_perms", json!({"member": "bob"})).await;
    assert!(
        done && text.contains("\"files\"") && !text.contains("\"send\",\n"),
        "{text}"
    );
    let (done, text) = call(
        &bob_mcp,
        "set_perms",
        json!({"member": "bob", "grant": ["send"]}),
    )
    .await;
    assert!(!done && text.contains("\"perms\" capability"), "{text}");

    let (done, text) = call(&bob_mcp, "ban", json!({"member": "alice"})).await;
    assert!(!done && text.contains("owner or an admin"), "{text}");
    let (done, text) = call(&alice_mcp, "list_bans", json!({})).await;
    assert!(done && text.contains("No bans."), "{text}");
    let (done, text) = call(
        &alice_mcp,
        "kick",
        json!({"member": "bob", "reason": "testing"}),
    )
    .await;
    assert!(done, "{text}");
    let _ = alice_mcp.cancel().await;
    let _ = bob_mcp.cancel().await;
}

/// Events the client handles itself (a key rotation, a change of the mesh's settings) reach
/// Claude Code as nothing: the next channel notification after them is alice's message.
#[tokio::test(flavor = "multi_thread")]
async fn plumbing_events_are_not_forwarded_to_the_session() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    let (_mcp, mut notes) = start_mcp(&bob).await;
    bobs_session_appears_to(&alice).await;
    alice.ok(&["settings", "group-bodies", "sealed"]);
    alice.json(&["rotate-key", "--json"]);
    alice.json(&["send", "bob", "after the plumbing", "--json"]);
    let note = next_channel(&mut notes).await;
    assert_eq!(note["content"], "alice: after the plumbing", "{note}");
}

/// Waits until `alice`'s `peers` shows bob online: his MCP server's session is live.
async fn bobs_session_appears_to(alice: &Person) {
    eventually("bob's MCP session to appear", || async {
        let v = alice.json(&["peers", "--json"]);
        v["peers"].as_array().is_some_and(|p| {
            p.iter()
                .any(|p| p["displayName"] == "bob" && p["online"] == true)
        })
    })
    .await;
}
