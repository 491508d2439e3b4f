//! Remote approval of agents' tool use (issue 18 item 5): an rmcp client stands in for Claude
//! Code on alice's side of `claudemesh mcp`, sends `permission_request` notifications, and
//! receives `notifications/claude/channel/permission` when bob answers from the CLI.

use crate::common;

use rmcp::ServiceExt;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use common::mcp::{Recorder, call, log_line_with, mcp_process, mcp_process_with_log};
use common::*;

use common::mcp::{Mcp, Notes, ask, next_decision};

async fn serve(transport: rmcp::transport::TokioChildProcess) -> (Mcp, Notes) {
    let (tx, rx) = mpsc::unbounded_channel();
    let mcp = Recorder { tx }
        .serve(transport)
        .await
        .expect("MCP handshake with claudemesh mcp");
    connected(&mcp).await;
    (mcp, rx)
}

/// Waits until the MCP server's session is connected (it connects in the background).
async fn connected(mcp: &Mcp) {
    eventually("the MCP server's session to connect", || async {
        !call(mcp, "mesh_info", json!({}))
            .await
            .1
            .contains("connecting")
    })
    .await;
}

/// `person`'s pending request with Claude Code's `request_id`, once it is there.
async fn pending(person: &Person, request_id: &str) -> Value {
    let mut found = Value::Null;
    eventually("the request to reach the approver", || {
        let list = person.json(&["approvals", "--json"]);
        let hit = list["approvals"]
            .as_array()
            .and_then(|a| a.iter().find(|e| e["requestId"] == request_id).cloned());
        let done = hit.is_some();
        if let Some(h) = hit {
            found = h;
        }
        async move { done }
    })
    .await;
    found
}

fn declares_permission_relay(mcp: &Mcp) -> bool {
    let info = mcp.peer_info().expect("server info");
    let experimental = info.capabilities.experimental.clone().unwrap_or_default();
    experimental.contains_key("claude/channel")
        && experimental.contains_key("claude/channel/permission")
}

/// The whole round: alice's agent asks, bob (her approver) reads the prompt decrypted and
/// answers from the CLI, alice's Claude Code gets the decision; carol (no approver) is
/// refused; a second answer is refused; the broker never holds the prompt in clear; both the
/// request and the decision are in the audit log.
#[tokio::test(flavor = "multi_thread")]
async fn an_approver_answers_a_sealed_permission_prompt_and_the_agent_gets_the_decision() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    let carol = invited(&alice, "carol");
    let set = alice.json(&["approvers", "set", "bob", "--json"]);
    assert_eq!(set["resolved"][0]["displayName"], "bob", "{set:#}");
    assert_eq!(
        alice.json(&["approvers", "--json"])["approvers"],
        set["approvers"]
    );

    let (mcp, mut rx) = serve(mcp_process(&alice)).await;
    assert!(declares_permission_relay(&mcp));

    let preview = "rm -rf build && ./deploy --token preview-secret-8c1f2e";
    let description = "Run the deploy script, description-secret-51a9";
    ask(&mcp, "kqzvb", "Bash", description, preview).await;
    let seen = pending(&bob, "kqzvb").await;
    assert_eq!(seen["toolName"], "Bash", "{seen:#}");
    assert_eq!(seen["description"], description);
    assert_eq!(seen["inputPreview"], preview);
    assert_eq!(seen["requester"], "alice");
    let id = seen["id"].as_str().expect("an id").to_string();

    // Not an approver: refused, and the request still waits.
    let refused = carol.refused(&["approve", &id]);
    assert!(refused.contains("forbidden"), "{refused}");
    assert!(
        carol.json(&["approvals", "--json"])["approvals"]
            .as_array()
            .is_some_and(|a| a.is_empty()),
        "carol holds no copy"
    );

    bob.ok(&["approve", &id]);
    let decision = next_decision(&mut rx).await;
    assert_eq!(
        decision,
        json!({"request_id": "kqzvb", "behavior": "allow"})
    );

    // First answer wins.
    let again = bob.refused(&["deny", &id]);
    assert!(again.contains("already answered"), "{again}");

    ask(
        &mcp,
        "mfpta",
        "Write",
        "Write a file",
        "/etc/passwd preview-secret-8c1f2e",
    )
    .await;
    let second = pending(&bob, "mfpta").await;
    bob.ok(&["deny", second["id"].as_str().unwrap()]);
    let decision = next_decision(&mut rx).await;
    assert_eq!(decision, json!({"request_id": "mfpta", "behavior": "deny"}));

    let log = alice.json(&["audit", "--json"]);
    let text = log.to_string();
    assert!(text.contains("approval.requested"), "{log:#}");
    assert!(text.contains("approval.decided"), "{log:#}");
    assert!(
        text.contains("\"deny\"") && text.contains("\"allow\""),
        "{log:#}"
    );

    mcp.cancel().await.ok();
    assert_broker_never_saw(&broker, b"preview-secret-8c1f2e");
    assert_broker_never_saw(&broker, b"description-secret-51a9");
}

/// With no approvers set, a prompt leaves alice's machine for nobody: the MCP server says so
/// in its log, bob sees nothing and the broker logs no request.
#[tokio::test(flavor = "multi_thread")]
async fn without_approvers_a_permission_prompt_is_not_forwarded() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    let shown = alice.ok(&["approvers"]);
    assert!(shown.contains("no approvers"), "{shown}");
    let (transport, log) = mcp_process_with_log(&alice);
    let (mcp, _rx) = serve(transport).await;
    ask(
        &mcp,
        "nobdy",
        "Bash",
        "Run a command",
        "echo hello-unforwarded",
    )
    .await;
    let said = log_line_with(log, "nobdy").await;
    assert!(said.contains("not forwarded"), "{said}");
    assert!(
        bob.json(&["approvals", "--json"])["approvals"]
            .as_array()
            .is_some_and(|a| a.is_empty())
    );
    let audit = alice.json(&["audit", "--json"]).to_string();
    assert!(!audit.contains("approval.requested"), "{audit}");
    mcp.cancel().await.ok();
}

/// `approvers clear` takes an approver's power away at once: a pending request can no longer
/// be answered by them; a group's members answer while the group entry stands.
#[tokio::test(flavor = "multi_thread")]
async fn a_removed_approver_cannot_answer_and_a_group_entry_names_its_members() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    // bob in group leads is an approver through @leads.
    bob.ok(&["group", "join", "leads"]);
    let set = alice.json(&["approvers", "set", "@leads", "--json"]);
    assert_eq!(set["resolved"][0]["displayName"], "bob", "{set:#}");
    assert_eq!(set["resolved"][0]["via"], "@leads", "{set:#}");
    let (mcp, _rx) = serve(mcp_process(&alice)).await;
    ask(&mcp, "grpaa", "Bash", "Run a command", "ls").await;
    let first = pending(&bob, "grpaa").await;
    ask(&mcp, "grpbb", "Bash", "Run a command", "ls -la").await;
    let second = pending(&bob, "grpbb").await;
    bob.ok(&["approve", first["id"].as_str().unwrap()]);
    alice.ok(&["approvers", "clear"]);
    let refused = bob.refused(&["approve", second["id"].as_str().unwrap()]);
    assert!(refused.contains("forbidden"), "{refused}");
    mcp.cancel().await.ok();
}

/// What a dashboard builds on: a live client of bob's hears a new request (opened with his
/// key) and its decision as they happen, and `approvals --wait` returns with the request.
#[tokio::test(flavor = "multi_thread")]
async fn an_approvers_client_hears_requests_and_decisions_live() {
    use claudemesh::client::approvals::ApprovalUpdate;

    let broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    alice.ok(&["approvers", "set", "bob"]);
    let live = bob.client().await;
    let waiter = tokio::process::Command::new(BIN)
        .args(["approvals", "--wait", "--json"])
        .env("CLAUDEMESH_CONFIG_DIR", bob.config_dir())
        .stdin(std::process::Stdio::null())
        .output();
    let waiter = tokio::spawn(waiter);
    let (mcp, mut rx) = serve(mcp_process(&alice)).await;
    ask(&mcp, "livea", "Edit", "Edit src/main.rs", "fn main() {}").await;

    let next_update = async |client: &claudemesh::client::MeshClient| loop {
        let frame = tokio::time::timeout(WAIT, client.next_push())
            .await
            .expect("a push within the wait")
            .expect("the client open");
        if let Some(update) = ApprovalUpdate::from_push(client, &frame) {
            return update;
        }
    };
    let ApprovalUpdate::Requested(request) = next_update(&live).await else {
        panic!("the first approval push announces the request");
    };
    assert_eq!(request.request_id, "livea");
    assert_eq!(request.tool_name.as_deref(), Some("Edit"));
    assert_eq!(request.input_preview.as_deref(), Some("fn main() {}"));
    assert_eq!(request.status, "pending");

    let waited = tokio::time::timeout(WAIT, waiter)
        .await
        .expect("approvals --wait returns once a request is there")
        .unwrap()
        .unwrap();
    assert!(
        waited.status.success(),
        "{}",
        String::from_utf8_lossy(&waited.stderr)
    );
    let listed: Value = serde_json::from_slice(&waited.stdout).unwrap();
    assert_eq!(listed["approvals"][0]["requestId"], "livea", "{listed:#}");

    let decision = live.answer_approval(&request.id, true).await.unwrap();
    assert_eq!(decision.behavior, "allow");
    let ApprovalUpdate::Decided(decided) = next_update(&live).await else {
        panic!("the next approval push announces the decision");
    };
    assert_eq!(
        (decided.id.as_str(), decided.status.as_str()),
        (request.id.as_str(), "allow")
    );
    assert_eq!(decided.decided_by.as_deref(), Some("bob"));
    assert_eq!(
        next_decision(&mut rx).await,
        json!({"request_id": "livea", "behavior": "allow"})
    );
    mcp.cancel().await.ok();
}

/// The broker takes a request only for the member's current approvers, and says what is wrong
/// with a malformed one; it keeps serving.
#[tokio::test(flavor = "multi_thread")]
async fn a_request_goes_only_to_current_approvers_and_bad_ones_are_named() {
    use claudemesh::protocol::messages::{RequestApproval, SealedApproval};
    use claudemesh::protocol::{ClientMessage, ServerMessage};

    let broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    let client = alice.client().await;
    let bob_id = client
        .list_members()
        .await
        .unwrap()
        .into_iter()
        .find(|m| m.display_name == "bob")
        .expect("bob is a member")
        .member_id;
    let copy = SealedApproval {
        member_id: bob_id.clone(),
        nonce: "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".into(),
        ciphertext: "c2VhbGVk".into(),
    };
    let send = async |request_id: &str, copies: Vec<SealedApproval>| {
        let r = RequestApproval {
            request_id: request_id.into(),
            ttl_secs: None,
            copies,
        };
        client
            .request(ClientMessage::RequestApproval(Box::new(r)))
            .await
    };
    // bob is not alice's approver: the broker will not bother him.
    let err = send("abcde", vec![copy.clone()]).await.unwrap_err();
    assert_eq!(err.code(), Some("forbidden"), "{err}");
    alice.ok(&["approvers", "set", "bob"]);
    let err = send("bad id!", vec![copy.clone()]).await.unwrap_err();
    assert!(err.to_string().contains("requestId"), "{err}");
    let err = send("abcde", vec![]).await.unwrap_err();
    assert!(err.to_string().contains("no sealed copies"), "{err}");
    let err = send("abcde", vec![copy.clone(), copy.clone()])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("two copies"), "{err}");
    match send("abcde", vec![copy]).await.unwrap() {
        ServerMessage::ApprovalRequested { approvers, .. } => assert_eq!(approvers, 1),
        other => panic!("{other:?}"),
    }
    let listed = bob.json(&["approvals", "--json"]);
    assert_eq!(listed["approvals"][0]["requestId"], "abcde", "{listed:#}");
    // What bob cannot open is said, not hidden.
    assert!(listed["approvals"][0]["problem"].is_string(), "{listed:#}");
}
