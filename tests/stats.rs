//! Stats (issue 13): what the broker counts per session matches what was sent, refusals are
//! counted, and what a client reports with `set_stats` is shown beside (not mixed into) them.

use crate::common;

use std::time::Duration;

use claudemesh::client::Target;
use claudemesh::protocol::ClientMessage;
use claudemesh::protocol::messages::ReportedStats;
use common::*;
use serde_json::Value;

/// The `stats --json --all` entry of the session called `session_id`.
fn entry(person: &Person, session_id: &str) -> Value {
    let v = person.json(&["stats", "--json", "--all"]);
    v["peers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["sessionId"] == session_id)
        .cloned()
        .unwrap_or_else(|| panic!("no {session_id} in {v}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn stats_count_what_was_sent_received_and_refused() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    let alice_live = alice.client().await;
    let bob_live = bob.client().await;
    let to_bob = Target {
        label: "bob".into(),
        spec: bob.entry().member_pubkey.clone(),
    };

    const N: u64 = 5;
    for i in 0..N {
        let ack = alice_live
            .send_text(&to_bob, &format!("message {i}"), "now", None)
            .await
            .expect("sent");
        assert_eq!(ack.queued, Some(true), "{ack:?}");
    }
    for _ in 0..N {
        let push = next_message(&bob_live, Duration::from_secs(10))
            .await
            .expect("bob gets each message");
        bob_live.ack(&push.message_id).unwrap();
    }
    // One refusal of alice's: a list page with a cursor the broker never handed out.
    let err = alice_live
        .request(ClientMessage::ListPeers {
            group: None,
            cursor: Some("not-a-cursor".into()),
            limit: None,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("invalid_argument"));

    let a = entry(&bob, "test-alice");
    let b = entry(&bob, "test-bob");
    assert_eq!(a["stats"]["messagesOut"], N, "{a}");
    assert_eq!(a["stats"]["messagesIn"], 0, "{a}");
    assert_eq!(a["stats"]["errors"], 1, "{a}");
    assert_eq!(b["stats"]["messagesIn"], N, "{b}");
    assert_eq!(b["stats"]["messagesOut"], 0, "{b}");
    assert_eq!(b["stats"]["errors"], 0, "{b}");
    assert!(a["stats"]["uptime"].as_u64().is_some(), "{a}");

    // The same counts are in `peers` entries.
    let peers = bob.json(&["peers", "--json"]);
    let listed = peers["peers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["sessionId"] == "test-bob")
        .cloned()
        .unwrap();
    assert_eq!(listed["stats"]["messagesIn"], N, "{listed}");

    // What a client reports is kept apart from what the broker counted.
    bob_live
        .report_stats(ReportedStats {
            tool_calls: Some(7),
            messages_in: Some(999),
            ..Default::default()
        })
        .unwrap();
    eventually("bob's report is shown", || async {
        entry(&alice, "test-bob")["reported"]["toolCalls"] == 7
    })
    .await;
    let b = entry(&alice, "test-bob");
    assert_eq!(b["reported"]["messagesIn"], 999, "{b}");
    assert_eq!(
        b["stats"]["messagesIn"], N,
        "a report must not change the counts: {b}"
    );

    // The table for people.
    let out = alice.run(&["stats"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let bob_line = out
        .stdout
        .lines()
        .find(|l| l.starts_with("bob"))
        .unwrap_or_else(|| panic!("no bob line:\n{}", out.stdout));
    let cols: Vec<&str> = bob_line.split_whitespace().collect();
    assert_eq!(&cols[2..6], ["5", "0", "0", "7"], "{bob_line}");
}
