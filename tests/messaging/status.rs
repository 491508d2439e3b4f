//! Status and the priority gate end to end (PROTOCOL.md §4.5, §5.1): `working` and `dnd` hold
//! `next` but not `now`, idle releases what was held, and `working` runs out at its TTL.

use super::*;

#[tokio::test(flavor = "multi_thread")]
async fn working_holds_next_but_not_now_and_idle_releases() {
    busy_holds_next_but_not_now_and_idle_releases("working").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn dnd_holds_next_but_not_now_and_idle_releases() {
    busy_holds_next_but_not_now_and_idle_releases("dnd").await;
}

async fn busy_holds_next_but_not_now_and_idle_releases(busy: &str) {
    let broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    // With no session connected there is nothing to set: said, not pretended.
    let alone = bob.run(&["status", "set", busy]);
    assert_ne!(alone.code, 0, "set with no session: {}", alone.stdout);
    assert!(
        alone.stderr.contains("no session of yours"),
        "{}",
        alone.stderr
    );
    let live = bob.client().await;
    assert_eq!(bob.run(&["status", "set", busy]).code, 0);
    bob_comes_to_be(&alice, busy, &format!("bob to be {busy}")).await;
    send(
        &alice,
        "bob",
        "when you have a minute",
        &["--priority", "next"],
    );
    send(&alice, "bob", "production is down", &["--priority", "now"]);
    let first = next_message(&live, WAIT).await.expect("now gets through");
    assert_eq!(live.decrypt(&first).unwrap(), "production is down");
    live.ack(&first.message_id).unwrap();
    let probe_sent = send(&alice, "bob", "probe", &[]);
    let probe_id = probe_sent["results"][0]["messageId"].as_str().unwrap();
    let held = alice.json(&["msg-status", probe_id, "--json"]);
    assert_eq!(held["recipients"][0]["status"], "held", "{held}");
    // (Had the gate let `next` through, it would have been the first push, before `now`.)
    assert_eq!(bob.run(&["status", "set", "idle"]).code, 0);
    let released = next_message(&live, WAIT)
        .await
        .expect("held next arrives once idle");
    assert_eq!(live.decrypt(&released).unwrap(), "when you have a minute");
    live.ack(&released.message_id).unwrap();
    let probe = next_message(&live, WAIT)
        .await
        .expect("the probe follows, in order");
    assert_eq!(live.decrypt(&probe).unwrap(), "probe");
    live.ack(&probe.message_id).unwrap();
    let status = alice.json(&["msg-status", &probe.message_id, "--json"]);
    eventually("the probe to count as delivered", || async {
        alice.json(&["msg-status", &probe.message_id, "--json"])["delivered"] == true
    })
    .await;
    assert_eq!(status["targetSpec"], probe.target_spec.clone().unwrap());
}

/// A `working` status is not expired before its TTL (10 minutes): the sweeps of its first
/// 16 s record no expiry, and bob stays working.
#[tokio::test(flavor = "multi_thread")]
async fn a_working_status_is_not_expired_before_its_ttl() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    let _live = bob.client().await;
    bob.ok(&["status", "set", "working"]);
    bob_comes_to_be(&alice, "working", "bob to be working").await;
    // The broker looks at status expiry every 15 s: time itself is what this test waits for.
    tokio::time::sleep(Duration::from_secs(16)).await;
    let history = alice.json(&["status", "history", "--json"]);
    assert!(
        !history
            .as_array()
            .is_some_and(|h| h.iter().any(|c| c["source"] == "ttl")),
        "a status expired before its TTL: {history:#}"
    );
    bob_comes_to_be(&alice, "working", "bob still working").await;
}

/// A `working` that no report refreshes reverts to idle at the broker's `--working-ttl`
/// (the status history records it with source `ttl`), and the `next` message it held comes
/// then, not before.
#[tokio::test(flavor = "multi_thread")]
async fn a_working_status_reverts_to_idle_at_its_ttl_and_releases_what_it_held() {
    let broker = BrokerProc::start(&["--working-ttl", "8s"]);
    let (alice, bob) = alice_and_bob(&broker);
    let live = bob.client().await;
    bob.ok(&["status", "set", "working"]);
    send(
        &alice,
        "bob",
        "when you have a minute",
        &["--priority", "next"],
    );
    let held = next_message(&live, WAIT)
        .await
        .expect("the next message comes once bob's working runs out");
    assert_eq!(live.decrypt(&held).unwrap(), "when you have a minute");
    bob_comes_to_be(&alice, "idle", "bob to be idle").await;
    let history = alice.json(&["status", "history", "--json"]);
    let expired = history
        .as_array()
        .and_then(|h| {
            h.iter()
                .find(|c| c["source"] == "ttl" && c["status"] == "idle")
        })
        .and_then(|c| c["atMs"].as_i64())
        .unwrap_or_else(|| panic!("the expiry is recorded with source ttl: {history:#}"));
    let sent = claudemesh::protocol::time::parse_iso(&held.created_at).expect("createdAt");
    assert!(
        sent <= expired,
        "held until the TTL ran out: sent at {sent}, expired at {expired}"
    );
}
