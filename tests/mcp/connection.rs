//! The MCP server's connection to each mesh's broker: what its tools say while there is none,
//! and when it stops trying.

use std::time::Duration;

use rmcp::ServiceExt;
use serde_json::json;

use super::{bobs_session_appears_to, start_mcp};
use crate::common::mcp::{Recorder, call, log_line_with, mcp_process_with_log};
use crate::common::*;

/// A revoked member's session is refused once and stops asking: its tools say why, and the
/// broker refuses no more hellos from it.
#[tokio::test(flavor = "multi_thread")]
async fn a_revoked_members_session_says_why_and_stops_reconnecting() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    alice.ok(&["revoke", "bob"]);
    let (mcp, _notes) = start_mcp(&bob).await;
    eventually("bob's session to say it was refused", || async {
        let (ok, text) = call(&mcp, "mesh_info", json!({})).await;
        !ok && text.contains("revoked")
    })
    .await;
    let refusals = || metric(&broker, "claudemesh_errors_total{code=\"revoked\"}");
    let before = refusals().await;
    assert!(before >= Some(1.0), "{before:?}");
    // A loop that tried again would have done so after 1 s and 2 s more.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(refusals().await, before, "the session asked again");
    let (_, text) = call(&mcp, "mesh_info", json!({})).await;
    assert!(
        text.contains("not connected to mesh team (refused: this member was revoked"),
        "{text}"
    );
    mcp.cancel().await.ok();
}

/// A session started while its broker is down says why it has no connection, keeps trying,
/// and connects once the broker is back.
#[tokio::test(flavor = "multi_thread")]
async fn a_session_started_while_its_broker_is_down_connects_once_it_is_back() {
    let mut broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    broker.terminate();
    let (mcp, _notes) = start_mcp(&bob).await;
    eventually("bob's session to fail its first attempt", || async {
        let (ok, text) = call(&mcp, "mesh_info", json!({})).await;
        !ok && text.contains("not connected to mesh team") && !text.contains("connecting…")
    })
    .await;
    broker.restart();
    bobs_session_appears_to(&alice).await;
    mcp.cancel().await.ok();
}

/// Only a revocation ends a session's attempts: a banned member's session is refused, keeps
/// trying, and connects once the ban is lifted.
#[tokio::test(flavor = "multi_thread")]
async fn a_banned_members_session_connects_once_the_ban_is_lifted() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    alice.ok(&["ban", "bob", "--reason", "a break", "--no-rotate"]);
    let (mcp, _notes) = start_mcp(&bob).await;
    eventually("bob's session to say it was refused", || async {
        let (ok, text) = call(&mcp, "mesh_info", json!({})).await;
        !ok && text.contains("banned")
    })
    .await;
    alice.ok(&["unban", "bob", "--no-rotate"]);
    bobs_session_appears_to(&alice).await;
    mcp.cancel().await.ok();
}

/// A kicked session stops, says why in its log (Claude Code's MCP log) and its tools say it
/// too, with the reason the kicker gave.
#[tokio::test(flavor = "multi_thread")]
async fn a_kicked_session_says_why_in_its_log_and_its_tools() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    let (transport, log) = mcp_process_with_log(&bob);
    let (tx, _notes) = tokio::sync::mpsc::unbounded_channel();
    let mcp = Recorder { tx }
        .serve(transport)
        .await
        .expect("MCP handshake with claudemesh mcp");
    bobs_session_appears_to(&alice).await;

    alice.ok(&["kick", "bob", "--reason", "restart your session"]);
    let said = log_line_with(log, "ended this session").await;
    assert_eq!(
        said,
        "claudemesh: mesh team: the broker ended this session: restart your session"
    );
    let (ok, text) = call(&mcp, "mesh_info", json!({})).await;
    assert!(!ok && text.contains("restart your session"), "{text}");
    mcp.cancel().await.ok();
}
