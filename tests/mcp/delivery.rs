//! How the MCP server hands the mesh to the session: under `launch`'s channel, from the
//! session's transcript, and from the streams it subscribed to.

use std::time::{Duration, Instant, SystemTime};

use claudemesh::mcp::session::transcript_dir_in;
use rmcp::ServiceExt;
use rmcp::transport::TokioChildProcess;
use serde_json::json;
use tokio::sync::mpsc;

use super::{Mcp, alice_sends, bob_on_mcp, bobs_session_appears_to, delivered, next_channel};
use crate::common::mcp::{Recorder, call, mcp_command};
use crate::common::*;

/// `claudemesh mcp` started by `cmd`, running but not initialised by any MCP client yet.
fn server(cmd: tokio::process::Command) -> TokioChildProcess {
    TokioChildProcess::new(cmd).expect("spawn claudemesh mcp")
}

/// The server on `transport` served to a recording client (the MCP handshake done).
async fn serve(
    transport: TokioChildProcess,
) -> (Mcp, mpsc::UnboundedReceiver<(String, serde_json::Value)>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let mcp = Recorder { tx }
        .serve(transport)
        .await
        .expect("MCP handshake with claudemesh mcp");
    (mcp, rx)
}

/// Waits until the server holds one message for `check_messages` (tool results say so).
async fn one_waiting(mcp: &Mcp) {
    eventually("a message to wait for check_messages", || async {
        call(mcp, "ping_mesh", json!({}))
            .await
            .1
            .contains("[1 message waiting: call check_messages]")
    })
    .await;
}

/// Under `claudemesh launch` Claude Code shows channel notifications to the model: an
/// announced message counts as delivered at once and `check_messages` does not hand it over
/// again, while a `low` one, never announced, still waits for `check_messages`.
#[tokio::test(flavor = "multi_thread")]
async fn in_channel_mode_an_announced_message_is_delivered_at_once_and_not_handed_over_again() {
    // No repeat from the broker within the test: an acknowledgement can only be the server's.
    let broker = BrokerProc::start(&["--redeliver-after", "1h"]);
    let (alice, bob) = alice_and_bob(&broker);
    let mut cmd = mcp_command(&bob);
    cmd.env("CLAUDEMESH_CHANNEL", "1");
    let (mcp, mut notes) = serve(server(cmd)).await;
    bobs_session_appears_to(&alice).await;

    let id = alice_sends(&alice, "read in the channel");
    let note = next_channel(&mut notes).await;
    assert_eq!(note["content"], "alice: read in the channel", "{note}");
    let (_, text) = call(&mcp, "check_messages", json!({})).await;
    assert!(
        text.contains("No new messages"),
        "handed over again: {text}"
    );
    delivered(&alice, &id, "the announced message to count as delivered").await;

    alice.json(&[
        "send",
        "bob",
        "fyi: not urgent",
        "--priority",
        "low",
        "--json",
    ]);
    one_waiting(&mcp).await;
    let (_, text) = call(&mcp, "check_messages", json!({})).await;
    assert!(text.contains("fyi: not urgent"), "{text}");
    mcp.cancel().await.ok();
}

/// A message that arrives before Claude Code has initialised the server cannot be announced:
/// even under `launch`'s channel it is not taken as seen, and waits for `check_messages`.
#[tokio::test(flavor = "multi_thread")]
async fn in_channel_mode_a_message_that_arrives_before_claude_code_is_ready_waits_for_it() {
    let broker = BrokerProc::start(&["--redeliver-after", "1h"]);
    let (alice, bob) = alice_and_bob(&broker);
    let mut cmd = mcp_command(&bob);
    cmd.env("CLAUDEMESH_CHANNEL", "1");
    let starting = server(cmd);
    bobs_session_appears_to(&alice).await;
    let id = alice_sends(&alice, "before you were ready");
    let status = || alice.json(&["msg-status", &id, "--json"]);
    eventually("the message to be pushed to bob's server", || async {
        status()["recipients"][0]["status"] == "delivered"
    })
    .await;
    // Given a second to be taken as seen, it is not.
    let until = Instant::now() + Duration::from_secs(1);
    while Instant::now() < until {
        assert_eq!(status()["acknowledged"], false, "acknowledged unseen");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (mcp, _notes) = serve(starting).await;
    let (_, text) = call(&mcp, "check_messages", json!({})).await;
    assert!(text.contains("before you were ready"), "{text}");
    delivered(&alice, &id, "the handed-over message to count as delivered").await;
    mcp.cancel().await.ok();
}

/// `check_messages` waits for what its drain brought to pass through the server, and no
/// longer: the server notes its end-of-drain marker going by, so the answer does not wait out
/// the 5 s bound kept for a marker that never comes.
#[tokio::test(flavor = "multi_thread")]
async fn check_messages_answers_once_its_drain_is_through_not_after_its_bound() {
    let broker = BrokerProc::start(&[]);
    let (alice, _bob, mcp, _notes) = bob_on_mcp(&broker).await;
    alice.json(&["send", "bob", "fyi: soon", "--priority", "low", "--json"]);
    one_waiting(&mcp).await;
    let (_, text) = tokio::time::timeout(
        Duration::from_secs(4),
        call(&mcp, "check_messages", json!({})),
    )
    .await
    .expect("check_messages to answer within 4 s");
    assert!(text.contains("fyi: soon"), "{text}");
    mcp.cancel().await.ok();
}

/// Without hooks, the session's status comes from its transcript: `working` (source `jsonl`)
/// while Claude Code writes it — also when it was being written before the session connected
/// — and `idle` once it has been quiet.
#[tokio::test(flavor = "multi_thread")]
async fn the_session_is_working_while_its_transcript_is_written_and_idle_when_it_is_quiet() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    let project = tempfile::tempdir().unwrap();
    let cwd = project.path().canonicalize().unwrap();
    let claude_dir = tempfile::tempdir().unwrap();
    // Written before the server starts: its first read comes before it is connected (the
    // status must still reach the broker then, not a minute later).
    let dir = transcript_dir_in(claude_dir.path(), &cwd);
    std::fs::create_dir_all(&dir).unwrap();
    let transcript = dir.join("session.jsonl");
    std::fs::write(&transcript, "{}\n").unwrap();
    let mut cmd = mcp_command(&bob);
    cmd.current_dir(&cwd)
        .env("CLAUDE_CONFIG_DIR", claude_dir.path());
    let (mcp, _notes) = serve(server(cmd)).await;
    bobs_session_appears_to(&alice).await;

    let watcher = alice.client().await;
    let status = || async {
        watcher
            .list_peers(None)
            .await
            .unwrap()
            .iter()
            .find(|p| p.session_id == "test-bob")
            .map(|p| (p.status.clone(), p.status_source.clone()))
    };
    eventually("bob's session working from its transcript", || async {
        status().await == Some(("working".into(), Some("jsonl".into())))
    })
    .await;
    // Last written an hour ago: quiet.
    std::fs::File::options()
        .write(true)
        .open(&transcript)
        .unwrap()
        .set_modified(SystemTime::now() - Duration::from_secs(3600))
        .unwrap();
    eventually("bob's session idle from its quiet transcript", || async {
        status().await == Some(("idle".into(), Some("jsonl".into())))
    })
    .await;
    mcp.cancel().await.ok();
}

/// A stream the session subscribed to reaches Claude Code as a channel notification that
/// names the stream and who published.
#[tokio::test(flavor = "multi_thread")]
async fn a_stream_the_session_subscribed_to_reaches_it_as_a_channel_notification() {
    let broker = BrokerProc::start(&[]);
    let (alice, _bob, mcp, mut notes) = bob_on_mcp(&broker).await;
    alice.json(&["stream", "create", "builds", "--json"]);
    let (ok, text) = call(&mcp, "subscribe", json!({"name": "builds"})).await;
    assert!(ok, "{text}");
    alice.json(&[
        "stream",
        "publish",
        "builds",
        r#"{"status":"green"}"#,
        "--json",
    ]);
    let note = next_channel(&mut notes).await;
    assert_eq!(
        note["content"], r#"alice on builds: {"status":"green"}"#,
        "{note}"
    );
    let meta = &note["meta"];
    assert_eq!(
        (
            &meta["kind"],
            &meta["stream"],
            &meta["from_name"],
            &meta["mesh_slug"]
        ),
        (
            &json!("stream"),
            &json!("builds"),
            &json!("alice"),
            &json!("team")
        ),
        "{note}"
    );
    mcp.cancel().await.ok();
}
