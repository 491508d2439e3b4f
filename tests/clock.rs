//! The simulation clock (issue 17 item 4, PROTOCOL.md §23): ticks at the simulated rate, a
//! reminder in simulated time firing on it, pause and resume, a restart, and the capability.

use crate::common;

use std::time::{Duration, Instant};

use common::*;

use claudemesh::client::MeshClient;
use claudemesh::protocol::{ServerMessage, time};

/// What arrived on a connection while listening.
#[derive(Default)]
struct Heard {
    /// (when it arrived, tick, simulated ms)
    ticks: Vec<(Instant, u64, i64)>,
    /// (when it arrived, text)
    reminders: Vec<(Instant, String)>,
}

/// Listens on `client` until `done` says so or `for_at_most` passes.
async fn listen(
    client: &MeshClient,
    for_at_most: Duration,
    done: impl Fn(&Heard) -> bool,
) -> Heard {
    let mut heard = Heard::default();
    let deadline = Instant::now() + for_at_most;
    while !done(&heard) {
        let Ok(push) = tokio::time::timeout_at(deadline.into(), client.next_push()).await else {
            break;
        };
        let Some(ServerMessage::Push(p)) = push else {
            continue;
        };
        let at = Instant::now();
        match p.subtype.as_deref() {
            Some("tick") => {
                let data = p.event_data.clone().unwrap_or_default();
                let sim = time::parse_iso(data["simTime"].as_str().unwrap_or("")).unwrap();
                heard.ticks.push((at, data["tick"].as_u64().unwrap(), sim));
            }
            Some("reminder") => {
                client.ack(&p.message_id).unwrap();
                let text = client.open(*p).text.unwrap();
                heard.reminders.push((at, text));
            }
            _ => {}
        }
    }
    heard
}

/// Seconds between consecutive ticks, each checked to be the next tick, one simulated minute on.
fn tick_gaps(heard: &Heard) -> Vec<f64> {
    heard
        .ticks
        .windows(2)
        .map(|w| {
            assert_eq!(w[1].1, w[0].1 + 1, "ticks come in order, none skipped");
            let sim_gap = w[1].2 - w[0].2;
            assert!(
                (55_000..=65_000).contains(&sim_gap),
                "one simulated minute between ticks, got {sim_gap} ms"
            );
            (w[1].0 - w[0].0).as_secs_f64()
        })
        .collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::test(flavor = "multi_thread")]
async fn a_clock_ticks_at_its_speed_and_fires_simulated_reminders_on_its_time() {
    let mut broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    let bob_client = bob.client().await;

    let unset = alice.json(&["clock", "--json"]);
    assert_eq!(unset["set"], false);
    let refused = alice.refused(&["remind", "early", "--sim", "--in", "60s"]);
    assert!(refused.contains("no simulation clock"), "{refused}");

    // 10x: a simulated minute every 6 s; a reminder 60 simulated seconds ahead comes in ~6 s.
    let set = alice.json(&["clock", "set", "10", "--json"]);
    assert_eq!(
        (set["speed"].as_f64(), set["paused"].as_bool()),
        (Some(10.0), Some(false))
    );
    assert_eq!(set["set"], true);
    let started = Instant::now();
    let ack = alice.json(&[
        "remind",
        "market opens",
        "--sim",
        "--in",
        "60s",
        "--to",
        "bob",
        "--json",
    ]);
    assert_eq!(ack["simulated"], true);
    let heard = listen(&bob_client, Duration::from_secs(25), |h| {
        !h.reminders.is_empty() && h.ticks.len() >= 3
    })
    .await;
    let [(arrived, text)] = heard.reminders.as_slice() else {
        panic!("one reminder, got {:?}", heard.reminders.len());
    };
    assert_eq!(text, "market opens");
    let after = (*arrived - started).as_secs_f64();
    assert!(
        (4.0..=12.0).contains(&after),
        "60 simulated seconds at 10x are about 6 s; it came after {after:.1} s"
    );
    let slow = median(tick_gaps(&heard));
    assert!(
        (4.0..=8.0).contains(&slow),
        "ticks at 10x every ~6 s, got {slow:.2} s"
    );

    // 100x: ten times as often.
    alice.ok(&["clock", "set", "100"]);
    let heard = listen(&bob_client, Duration::from_secs(10), |h| h.ticks.len() >= 6).await;
    let fast = median(tick_gaps(&heard));
    let ratio = slow / fast;
    assert!(
        (6.0..=15.0).contains(&ratio),
        "100x ticks ten times as often as 10x: {slow:.2} s vs {fast:.2} s"
    );

    // Paused: simulated time stands still, no ticks, a simulated reminder waits; resumed, it
    // goes on from there and the reminder comes (30 simulated seconds are 0.3 s at 100x).
    let paused = alice.json(&["clock", "pause", "--json"]);
    assert_eq!(paused["paused"], true);
    alice.ok(&[
        "remind",
        "after the pause",
        "--sim",
        "--in",
        "30s",
        "--to",
        "bob",
    ]);
    // A tick sent just before the pause may still be on its way.
    listen(&bob_client, Duration::from_millis(300), |_| false).await;
    let heard = listen(&bob_client, Duration::from_secs(2), |_| false).await;
    assert!(
        heard.ticks.is_empty(),
        "{} ticks while paused",
        heard.ticks.len()
    );
    assert!(heard.reminders.is_empty(), "a reminder fired while paused");
    let still = alice.json(&["clock", "--json"]);
    assert_eq!(still["simTime"], paused["simTime"]);
    let resumed = alice.json(&["clock", "resume", "--json"]);
    assert_eq!(resumed["paused"], false);
    let heard = listen(&bob_client, Duration::from_secs(10), |h| {
        !h.reminders.is_empty()
    })
    .await;
    assert_eq!(
        heard.reminders.len(),
        1,
        "the reminder comes after the resume"
    );
    assert_eq!(heard.reminders[0].1, "after the pause");

    // Every change is in the audit log.
    let audit = alice.json(&["audit", "--event", "clock.changed", "--json"]);
    assert_eq!(
        audit["entries"].as_array().map(Vec::len),
        Some(4),
        "{audit}"
    );

    // A restart keeps the clock, running at 100x, ticking again.
    drop(bob_client);
    broker.restart();
    let after_restart = alice.json(&["clock", "--json"]);
    assert_eq!(after_restart["speed"].as_f64(), Some(100.0));
    assert_eq!(after_restart["paused"], false);
    let bob_client = bob.client().await;
    let heard = listen(&bob_client, Duration::from_secs(10), |h| h.ticks.len() >= 2).await;
    assert!(heard.ticks.len() >= 2, "ticks after a restart");
    assert!(heard.ticks[0].1 > resumed["tick"].as_u64().unwrap());
}

#[tokio::test(flavor = "multi_thread")]
async fn changing_the_clock_needs_the_state_capability_and_a_sane_speed() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    for bad in ["0.5", "101", "fast"] {
        alice.refused(&["clock", "set", bad]);
    }
    let refused = alice.refused(&["clock", "pause"]);
    assert!(refused.contains("not set"), "{refused}");
    bob.ok(&["clock", "set", "2"]);
    alice.ok(&["perms", "set", "bob", "-state"]);
    let refused = bob.refused(&["clock", "set", "5"]);
    assert!(refused.contains("\"state\" capability"), "{refused}");
    let refused = bob.refused(&["clock", "pause"]);
    assert!(refused.contains("\"state\" capability"), "{refused}");
    // Reading it needs nothing.
    assert_eq!(bob.json(&["clock", "--json"])["speed"].as_f64(), Some(2.0));
}
