//! Messaging end to end: delivery, durability, groups, priorities, acknowledgements, limits.

use crate::common;

mod hook;
mod observers;
mod status;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use claudemesh::client::{ConnectOptions, MeshClient, Target};
use claudemesh::identity::ConfigDir;
use claudemesh::protocol::messages::SendMessage;
use claudemesh::protocol::{ClientMessage, ServerMessage};
use common::*;

/// Waits until alice's `peers` shows bob with `status`.
async fn bob_comes_to_be(alice: &Person, status: &str, what: &str) {
    comes_to_be(alice, "bob", status, what).await;
}

/// Waits until `watcher`'s `peers` shows `name` with `status`.
async fn comes_to_be(watcher: &Person, name: &str, status: &str, what: &str) {
    eventually(what, || async {
        watcher.json(&["peers", "--json"])["peers"]
            .as_array()
            .is_some_and(|p| {
                p.iter()
                    .any(|p| p["displayName"] == name && p["status"] == status)
            })
    })
    .await;
}

fn send(person: &Person, to: &str, text: &str, extra: &[&str]) -> Value {
    let mut args = vec!["send", to, text, "--json"];
    args.extend_from_slice(extra);
    person.json(&args)
}

#[tokio::test(flavor = "multi_thread")]
async fn waiting_inbox_gets_decrypted_text_and_broker_never_sees_it() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    let secret = "the-launch-code-is-swordfish-4711";
    let bob_dir = bob.config_dir();
    let bin = BIN.to_string();
    let waiting = std::thread::spawn(move || {
        Command::new(bin)
            .args(["inbox", "--wait", "20", "--json"])
            .env("CLAUDEMESH_CONFIG_DIR", bob_dir)
            .output()
            .unwrap()
    });
    // Let bob's inbox connect and ask for its queue before alice sends.
    eventually("bob's inbox to connect", || async {
        metric(&broker, "claudemesh_peers").await == Some(1.0)
    })
    .await;
    let sent = send(&alice, "bob", secret, &[]);
    assert_eq!(sent["results"][0]["queued"], true, "{sent}");
    let out = waiting.join().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line: Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().next().unwrap()).unwrap();
    assert_eq!(line["text"], secret);
    assert_eq!(line["from"], "alice");
    assert_eq!(line["priority"], "next");
    assert_eq!(line["messageId"], sent["results"][0]["messageId"]);
    // A direct and a group message (under the root key) wait on the broker's disk for bob,
    // who is offline now: neither is there in any spelling, and both open for him.
    let direct = format!("{secret}-direct");
    let group = format!("{secret}-group");
    send(&alice, "bob", &direct, &[]);
    send(&alice, "@all", &group, &[]);
    for text in [secret, &direct, &group] {
        assert_broker_never_saw(&broker, text.as_bytes());
    }
    assert_eq!(texts(&inbox(&bob, &[])), vec![direct, group]);
}

#[tokio::test(flavor = "multi_thread")]
async fn offline_message_survives_a_restart_and_arrives_once() {
    let mut broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    send(&alice, "bob", "while you were away", &[]);
    let status = broker.terminate();
    assert!(status.success(), "broker exits 0 on SIGTERM");
    broker.restart();
    assert_eq!(texts(&inbox(&bob, &[])), vec!["while you were away"]);
    assert!(inbox(&bob, &[]).is_empty(), "delivered exactly once");
}

#[tokio::test(flavor = "multi_thread")]
async fn groups_reach_members_and_subgroups_but_not_the_sender() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    let carol = Person::new("carol");
    let dave = Person::new("dave");
    for p in [&carol, &dave] {
        let (_, url) = invite(&alice, &[]);
        join(p, &url);
    }
    for (p, g) in [
        (&alice, "backend"),
        (&bob, "backend"),
        (&carol, "backend/api"),
        (&dave, "frontend"),
    ] {
        let out = p.run(&["group", "join", g]);
        assert_eq!(out.code, 0, "{}", out.stderr);
    }
    send(&alice, "@backend", "backend standup", &[]);
    assert_eq!(texts(&inbox(&bob, &[])), vec!["backend standup"]);
    assert_eq!(
        texts(&inbox(&carol, &[])),
        vec!["backend standup"],
        "subgroup member"
    );
    assert!(inbox(&dave, &[]).is_empty(), "not in the group");
    assert!(inbox(&alice, &[]).is_empty(), "not the sender");
    // A live group member gets it pushed.
    let live_carol = carol.client().await;
    send(&alice, "@backend/api", "api only", &[]);
    let got = next_message(&live_carol, WAIT)
        .await
        .expect("pushed to carol");
    assert_eq!(live_carol.decrypt(&got).unwrap(), "api only");
    assert!(
        inbox(&bob, &[]).is_empty(),
        "@backend/api does not reach @backend"
    );
    send(&alice, "*", "everyone", &[]);
    for p in [&bob, &dave] {
        assert_eq!(texts(&inbox(p, &[])), vec!["everyone"], "{}", p.name);
    }
    let got = next_message(&live_carol, WAIT)
        .await
        .expect("broadcast to carol");
    assert_eq!(live_carol.decrypt(&got).unwrap(), "everyone");
    assert!(
        inbox(&alice, &[]).is_empty(),
        "the sender does not get its broadcast"
    );
}

/// One send to several targets reaches each member once: bob, named and in the group, gets one
/// copy, and carol, in the group only, hers.
#[tokio::test(flavor = "multi_thread")]
async fn a_member_named_and_in_a_group_of_the_same_send_gets_it_once() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    let carol = invited(&alice, "carol");
    for p in [&bob, &carol] {
        let out = p.run(&["group", "join", "ops"]);
        assert_eq!(out.code, 0, "{}", out.stderr);
    }
    send(&alice, "@ops,bob", "once each", &[]);
    assert_eq!(texts(&inbox(&bob, &[])), vec!["once each"]);
    assert_eq!(texts(&inbox(&carol, &[])), vec!["once each"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn unacknowledged_pushes_come_back_and_acknowledged_ones_do_not() {
    let broker = BrokerProc::start(&["--redeliver-after", "1s"]);
    let (alice, bob) = alice_and_bob(&broker);
    let live = bob.client().await;
    let id = send(&alice, "bob", "ack me", &[])["results"][0]["messageId"]
        .as_str()
        .unwrap()
        .to_string();
    let first = next_message(&live, WAIT).await.expect("pushed");
    assert_eq!(first.message_id, id);
    // Within a few redelivery periods (1 s), not at the 30 s look every queue gets anyway.
    let again = next_message(&live, Duration::from_secs(10))
        .await
        .expect("pushed again without an ack");
    assert_eq!(again.message_id, id);
    live.ack(&id).unwrap();
    // Once the broker has the ack, a copy already on its way may still land; after that,
    // nothing more for 2.5 redelivery periods.
    eventually("the ack to count", || async {
        alice.json(&["msg-status", &id, "--json"])["acknowledged"] == true
    })
    .await;
    while live.try_next_push().await.is_some() {}
    assert!(
        next_message(&live, Duration::from_millis(2500))
            .await
            .is_none(),
        "no redelivery after the ack"
    );
    let acked = send(&alice, "bob", "acked at once", &[])["results"][0]["messageId"]
        .as_str()
        .unwrap()
        .to_string();
    let got = next_message(&live, WAIT).await.unwrap();
    assert_eq!(got.message_id, acked);
    live.ack(&acked).unwrap();
    // As above: a copy sent before the ack arrived (a slow machine) may land; none after.
    eventually("the second ack to count", || async {
        alice.json(&["msg-status", &acked, "--json"])["acknowledged"] == true
    })
    .await;
    while live.try_next_push().await.is_some() {}
    assert!(
        next_message(&live, Duration::from_millis(2500))
            .await
            .is_none(),
        "no redelivery after an ack sent at once"
    );
    let s = alice.json(&["msg-status", &acked, "--json"]);
    assert_eq!(s["delivered"], true, "{s}");
    assert_eq!(s["recipients"][0]["status"], "delivered");
}

/// Sends `n` texts `{tag}{i}` from `sender` to `whom`, all at once; each is queued.
async fn queue_texts(sender: &MeshClient, whom: &Person, tag: &str, n: usize) -> Vec<String> {
    let target = to(whom);
    let texts: Vec<String> = (0..n).map(|i| format!("{tag}{i}")).collect();
    let sends = texts
        .iter()
        .map(|t| sender.send_text(&target, t, "low", None));
    for ack in futures_util::future::join_all(sends).await {
        assert_eq!(ack.expect("served").queued, Some(true));
    }
    texts
}

/// A connection that acknowledges what it read and closes leaves the broker committing those
/// acknowledgements; the member's next connection, opened at once, must not get them again.
#[tokio::test(flavor = "multi_thread")]
async fn what_a_closed_connection_acknowledged_is_not_pushed_to_the_next() {
    const ROUNDS: usize = 40;
    let broker = BrokerProc::start(&["--send-rate", "100000", "--send-burst", "100000"]);
    let (alice, bob) = alice_and_bob(&broker);
    let sender = alice.client().await;
    for round in 0..ROUNDS {
        let texts = queue_texts(&sender, &bob, &format!("r{round}-"), 20).await;
        let reader = bob.client().await;
        reader.drain().await.expect("drained");
        let (mut got, mut ids) = (Vec::new(), Vec::new());
        while got.len() < texts.len() {
            let push = next_message(&reader, WAIT).await.expect("pushed");
            reader.ack(&push.message_id).unwrap();
            ids.push(push.message_id.clone());
            got.push(reader.open(push).text.expect("readable"));
        }
        assert_eq!(got, texts, "round {round}");
        reader.close().await;
        let next = bob.client().await;
        let pushed = next.drain().await.expect("drained");
        let again = next_message(&next, Duration::from_millis(100)).await;
        assert!(
            pushed == 0 && again.is_none(),
            "round {round}: {pushed} pushed again, e.g. {again:?}"
        );
        next.close().await;
        // Not hidden and lost either: every acknowledgement sent before the close is committed.
        eventually(
            &format!("round {round}'s acknowledgements committed"),
            || async {
                for id in &ids {
                    if !sender
                        .message_status(id)
                        .await
                        .expect("status")
                        .acknowledged
                    {
                        return false;
                    }
                }
                true
            },
        )
        .await;
    }
}

/// What `reader` has been pushed (message ids) by the time a drain returns, and whether the
/// broker says more wait.
async fn window(reader: &MeshClient) -> (Vec<String>, bool) {
    let (_, more) = reader.drain_window().await.expect("drained");
    let mut ids = Vec::new();
    while let Some(m) = reader.try_next_push().await {
        if let ServerMessage::Push(p) = m
            && p.subtype.is_none()
        {
            ids.push(p.message_id);
        }
    }
    (ids, more)
}

/// Live pushes stop at the window too (PROTOCOL.md §4.4): with 256 unacknowledged, the next
/// message waits in the queue, and goes out once acknowledgements make room.
#[tokio::test(flavor = "multi_thread")]
async fn live_pushes_stop_at_the_window_until_acknowledgements_make_room() {
    let broker = BrokerProc::start(&["--send-rate", "100000", "--send-burst", "100000"]);
    let (alice, bob) = alice_and_bob(&broker);
    let reader = bob.client().await;
    let sender = alice.client().await;
    let live = queue_texts(&sender, &bob, "live", 256).await;
    let mut ids = Vec::new();
    while ids.len() < live.len() {
        let m = next_message(&reader, WAIT).await.expect("pushed live");
        ids.push(m.message_id);
    }
    queue_texts(&sender, &bob, "over", 1).await;
    // The broker never pushes it unacknowledged; two seconds are ample for a push to arrive.
    let early = next_message(&reader, Duration::from_secs(2)).await;
    assert!(
        early.is_none(),
        "a 257th push went out with 256 unacknowledged"
    );
    for id in &ids {
        reader.ack(id).unwrap();
    }
    let m = next_message(&reader, WAIT)
        .await
        .expect("pushed once acknowledgements make room");
    assert_eq!(reader.decrypt(&m).unwrap(), "over0");
}

/// A backlog is pushed a window at a time (PROTOCOL.md §4.4): 256 messages, or about 4 MiB of
/// large ones, then `more` as they are acknowledged — each push once, however many times a
/// client acknowledges it.
#[tokio::test(flavor = "multi_thread")]
async fn a_backlog_is_pushed_256_messages_or_4_mib_at_a_time() {
    let broker = BrokerProc::start(&["--send-rate", "100000", "--send-burst", "100000"]);
    let (alice, bob) = alice_and_bob(&broker);
    let sender = alice.client().await;
    queue_texts(&sender, &bob, "small", 600).await;
    let reader = bob.client().await;
    let (first, more) = window(&reader).await;
    assert_eq!((first.len(), more), (256, true));
    for id in &first[..128] {
        reader.ack(id).unwrap();
        reader.ack(id).unwrap(); // a repeat frees no second place
    }
    let (next, more) = window(&reader).await;
    assert_eq!(
        (next.len(), more),
        (128, true),
        "128 acknowledged: 128 more"
    );

    let broker = BrokerProc::start(&["--send-rate", "100000", "--send-burst", "100000"]);
    let (alice, bob) = alice_and_bob(&broker);
    let sender = alice.client().await;
    let big = "b".repeat(40_000);
    let target = to(&bob);
    for _ in 0..150 {
        let ack = sender.send_text(&target, &big, "low", None).await.unwrap();
        assert_eq!(ack.queued, Some(true));
    }
    let (pushed, more) = window(&bob.client().await).await;
    let count = pushed.len();
    // A 40 000-character body is about 53 kB encrypted and base64-encoded: 78 fill 4 MiB.
    assert!(
        more && (70..=90).contains(&count),
        "{count} pushed, more: {more}"
    );
}

/// `inbox` run twice in a row shows each message once, round after round.
#[tokio::test(flavor = "multi_thread")]
async fn inbox_run_again_at_once_shows_nothing_twice() {
    const ROUNDS: usize = 15;
    let broker = BrokerProc::start(&["--send-rate", "100000", "--send-burst", "100000"]);
    let (alice, bob) = alice_and_bob(&broker);
    let sender = alice.client().await;
    for round in 0..ROUNDS {
        let texts = queue_texts(&sender, &bob, &format!("r{round}-"), 30).await;
        let shown = |out: &CmdOutput| -> Vec<String> {
            assert_eq!(out.code, 0, "inbox failed: {}", out.stderr);
            out.stdout
                .lines()
                .map(|l| {
                    let v: Value = serde_json::from_str(l).expect("a JSON line");
                    v["text"].as_str().expect("text").to_string()
                })
                .collect()
        };
        assert_eq!(
            shown(&bob.run(&["inbox", "--json"])),
            texts,
            "round {round}"
        );
        let again = shown(&bob.run(&["inbox", "--json"]));
        assert!(again.is_empty(), "round {round}: shown twice: {again:?}");
    }
}

/// Our CLI's connections (`peerRole:"control-plane"`) are pushed queued messages only once
/// they ask (`drain`, as `inbox` does): any other command takes nothing from the queue.
#[tokio::test(flavor = "multi_thread")]
async fn a_cli_connection_is_pushed_queued_messages_only_once_it_drains() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    let sender = alice.client().await;
    let ack = sender
        .send_text(&to(&bob), "for bob's inbox", "next", None)
        .await
        .expect("sent");
    let cli = connect_as(&bob, "bob-cli", "control-plane").await;
    // A push goes out as soon as a connection may have it: two seconds of nothing mean it.
    let unasked = next_message(&cli, Duration::from_secs(2)).await;
    assert!(
        unasked.is_none(),
        "pushed to a CLI connection that did not ask: {unasked:?}"
    );
    assert_eq!(cli.drain_window().await.expect("drain"), (1, false));
    let pushed = next_message(&cli, WAIT).await.expect("pushed once asked");
    assert_eq!(Some(&pushed.message_id), ack.message_id.as_ref());
}

/// A session that reconnects within its lease takes up its presence again, and what it had
/// not acknowledged is pushed again at once, not after the 30 s redelivery.
#[tokio::test(flavor = "multi_thread")]
async fn a_reconnected_session_gets_what_it_had_not_acknowledged_at_once() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    let first = bob.client().await;
    let sender = alice.client().await;
    let ack = sender
        .send_text(&to(&bob), "not acknowledged", "now", None)
        .await
        .expect("sent");
    let pushed = next_message(&first, WAIT).await.expect("pushed");
    assert_eq!(Some(&pushed.message_id), ack.message_id.as_ref());
    first.close().await;
    let again = bob.client().await;
    // (Without the presence's delivery state reset on the new socket it comes after ~10 s.)
    let repushed = next_message(&again, Duration::from_secs(5))
        .await
        .expect("pushed again on the new socket, well before the 30 s redelivery");
    assert_eq!(repushed.message_id, pushed.message_id);
}

/// bob's session, working, behind `held` held `next` messages from alice (then `urgent`, sent
/// `now`), on a new socket whose walk of the queue has looked at the first 1 024 and yielded
/// (it goes on at each sweep, every 5 s). Returns alice's client, bob's new socket and the
/// held texts.
async fn a_walk_under_way_past_a_held_backlog(
    alice: &Person,
    bob: &Person,
    held: usize,
    urgent: &[&str],
) -> (MeshClient, MeshClient, Vec<String>) {
    let live = bob.client().await;
    bob.ok(&["status", "set", "working"]);
    bob_comes_to_be(alice, "working", "bob to be working").await;
    let sender = alice.client().await;
    let target = to(bob);
    let texts: Vec<String> = (0..held).map(|i| format!("later {i}")).collect();
    // In rounds of 500, so that no send waits behind thousands for its answer.
    for round in texts.chunks(500) {
        let sends = round
            .iter()
            .map(|t| sender.send_text(&target, t, "next", None));
        for ack in futures_util::future::join_all(sends).await {
            ack.expect("sent");
        }
    }
    for text in urgent {
        sender
            .send_text(&target, text, "now", None)
            .await
            .expect("sent");
    }
    // A new socket: the presence walks its queue from the start, through the held entries.
    live.close().await;
    let again = bob.client().await;
    (sender, again, texts)
}

/// Reads `n` messages from `client` (or what comes within [`WAIT`] of each), acknowledging
/// each: their texts in the order they came.
async fn read_acking(client: &MeshClient, n: usize) -> Vec<String> {
    let mut got = Vec::new();
    while got.len() < n {
        let Some(m) = next_message(client, WAIT).await else {
            break;
        };
        got.push(client.decrypt(&m).unwrap());
        client.ack(&m.message_id).unwrap();
    }
    got
}

/// `got` is `sent`, in the same order (a failure shows where they part, not 1 100 lines).
fn in_order(got: &[String], sent: &[String]) {
    let first_difference = got.iter().zip(sent).position(|(g, s)| g != s);
    assert!(
        got == sent,
        "{} of {} came; first out of place: {:?}, got starts {:?}",
        got.len(),
        sent.len(),
        first_difference.map(|i| (i, &got[i])),
        &got[..got.len().min(3)]
    );
}

/// A busy session with more held-back messages queued than one walk looks at (1 024) still
/// gets a `now` message: the walk goes on past them at the next sweep instead of starting over.
#[tokio::test(flavor = "multi_thread")]
async fn a_now_message_reaches_a_busy_session_past_a_long_held_backlog() {
    let broker = BrokerProc::start(&["--send-rate", "100000", "--send-burst", "100000"]);
    let (alice, bob) = alice_and_bob(&broker);
    let (sender, again, _) = a_walk_under_way_past_a_held_backlog(&alice, &bob, 1_100, &[]).await;
    sender
        .send_text(&to(&bob), "production is down", "now", None)
        .await
        .expect("sent");
    let first = next_message(&again, WAIT)
        .await
        .expect("the now message gets through");
    assert_eq!(again.decrypt(&first).unwrap(), "production is down");
}

/// A walk longer than the 30 s look every queue gets (7 200 held entries: 8 steps of 1 024, one
/// each 5 s sweep) is not started over by that look, so the `now` message behind them comes.
#[tokio::test(flavor = "multi_thread")]
async fn a_walk_longer_than_thirty_seconds_is_not_started_over_by_the_look() {
    let broker = BrokerProc::start(&["--send-rate", "100000", "--send-burst", "100000"]);
    let (alice, bob) = alice_and_bob(&broker);
    let (_sender, again, _) =
        a_walk_under_way_past_a_held_backlog(&alice, &bob, 7_200, &["production is down"]).await;
    let first = next_message(&again, Duration::from_secs(90))
        .await
        .expect("the now message behind 7 200 held ones gets through");
    assert_eq!(again.decrypt(&first).unwrap(), "production is down");
}

/// A `now` message sent while the walk is under way does not overtake one sent before it
/// that the walk has not reached yet (FIFO per sender).
#[tokio::test(flavor = "multi_thread")]
async fn a_now_message_does_not_overtake_one_the_walk_has_not_reached() {
    let broker = BrokerProc::start(&["--send-rate", "100000", "--send-burst", "100000"]);
    let (alice, bob) = alice_and_bob(&broker);
    let (sender, again, _) =
        a_walk_under_way_past_a_held_backlog(&alice, &bob, 1_100, &["first alarm"]).await;
    sender
        .send_text(&to(&bob), "second alarm", "now", None)
        .await
        .expect("sent");
    let got = read_acking(&again, 2).await;
    assert_eq!(got, ["first alarm", "second alarm"]);
}

/// A drain hands over what the status holds back, all of it and in order, also when it
/// comes while a walk that skipped the held entries is under way.
#[tokio::test(flavor = "multi_thread")]
async fn a_drain_during_a_walk_hands_over_the_whole_held_backlog_in_order() {
    let broker = BrokerProc::start(&["--send-rate", "100000", "--send-burst", "100000"]);
    let (alice, bob) = alice_and_bob(&broker);
    let (_sender, again, held) =
        a_walk_under_way_past_a_held_backlog(&alice, &bob, 1_100, &[]).await;
    again.drain().await.expect("drained");
    in_order(&read_acking(&again, held.len()).await, &held);
}

/// Going idle releases what was held from the oldest, also while a walk that skipped the
/// held entries is under way (FIFO per sender).
#[tokio::test(flavor = "multi_thread")]
async fn going_idle_during_a_walk_releases_the_held_backlog_from_the_oldest() {
    let broker = BrokerProc::start(&["--send-rate", "100000", "--send-burst", "100000"]);
    let (alice, bob) = alice_and_bob(&broker);
    let (_sender, again, held) =
        a_walk_under_way_past_a_held_backlog(&alice, &bob, 1_100, &[]).await;
    bob.ok(&["status", "set", "idle"]);
    in_order(&read_acking(&again, held.len()).await, &held);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unacknowledged_push_comes_back_after_the_default_30_seconds() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    let live = bob.client().await;
    send(&alice, "bob", "not acknowledged", &[]);
    let first = next_message(&live, WAIT).await.expect("pushed");
    let pushed = std::time::Instant::now();
    let again = next_message(&live, Duration::from_secs(60))
        .await
        .expect("pushed again within a minute without an ack");
    assert_eq!(again.message_id, first.message_id);
    let after = pushed.elapsed();
    assert!(
        after >= Duration::from_secs(25),
        "redelivered after {after:?}, not the default 30 s"
    );
    live.ack(&first.message_id).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_message_past_its_retention_is_not_delivered() {
    // 6 s: the fresh message must still be read within its retention by a new process on a
    // slow machine.
    let broker = BrokerProc::start(&["--retention", "6s"]);
    let (alice, bob) = alice_and_bob(&broker);
    send(&alice, "bob", "stale news", &[]);
    // Time itself is what this test waits for.
    tokio::time::sleep(Duration::from_millis(6500)).await;
    send(&alice, "bob", "fresh news", &[]);
    assert_eq!(texts(&inbox(&bob, &[])), vec!["fresh news"]);
}

/// It also leaves the store: the retention sweep runs once a retention period when that is
/// shorter than its usual 5 minutes, and counts what it dropped.
#[tokio::test(flavor = "multi_thread")]
async fn a_message_past_its_retention_is_swept_from_the_store() {
    let broker = BrokerProc::start(&["--retention", "2s"]);
    let (alice, _bob) = alice_and_bob(&broker);
    send(&alice, "bob", "nobody reads this", &[]);
    eventually("the retention sweep to drop the message", || async {
        metric(&broker, "claudemesh_messages_expired_total").await == Some(1.0)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn acknowledged_send_survives_kill_9() {
    let mut broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    let sent = send(&alice, "bob", "durable before the crash", &[]);
    assert_eq!(sent["results"][0]["queued"], true);
    broker.kill9();
    broker.restart();
    assert_eq!(texts(&inbox(&bob, &[])), vec!["durable before the crash"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn message_status_follows_the_recipient() {
    let mut broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    let id = send(&alice, "bob", "status please", &[])["results"][0]["messageId"]
        .as_str()
        .unwrap()
        .to_string();
    let s = alice.json(&["msg-status", &id, "--json"]);
    assert_eq!(s["recipients"][0]["status"], "disconnected");
    assert_eq!(s["recipients"][0]["name"], "bob");
    assert_eq!(s["delivered"], false);
    // A prefix of 8+ characters works.
    let s = alice.json(&["msg-status", &id[..10], "--json"]);
    assert_eq!(s["messageId"], id.as_str());
    let out = alice.run(&["msg-status", "zzzzzzzzzzzz"]);
    assert_eq!(out.code, 3);
    assert!(
        out.stderr.contains("not_found") || out.stderr.contains("no message"),
        "{}",
        out.stderr
    );
    let live = bob.client().await;
    let got = next_message(&live, WAIT).await.unwrap();
    live.ack(&got.message_id).unwrap();
    eventually("delivered", || async {
        alice.json(&["msg-status", &id, "--json"])["delivered"] == true
    })
    .await;
    // Once acknowledged, the body is dropped but the status stays, with bob gone too.
    eventually("acknowledged", || async {
        alice.json(&["msg-status", &id, "--json"])["acknowledged"] == true
    })
    .await;
    live.close().await;
    broker.restart();
    let s = alice.json(&["msg-status", &id[..10], "--json"]);
    assert_eq!(s["messageId"], id.as_str());
    assert_eq!(s["delivered"], true);
    assert_eq!(s["acknowledged"], true);
    assert_eq!(s["recipients"][0]["name"], "bob");
    assert_eq!(s["recipients"][0]["status"], "delivered");
}

/// Each recipient's status is its own: a message pushed into bob's window counts as delivered
/// to bob before he acknowledges it, while carol's session, working, still holds it — whether
/// the recipient is queued under its member key (bob's connection) or its session key
/// (carol's).
#[tokio::test(flavor = "multi_thread")]
async fn message_status_tells_each_recipient_apart() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    let carol = invited(&alice, "carol");
    let bobs = bob.client().await;
    let carols = session_of(&carol, claudemesh::crypto::SignKeyPair::generate())
        .await
        .expect("carol's session");
    carol.ok(&["status", "set", "working"]);
    comes_to_be(&alice, "carol", "working", "carol to be working").await;
    let id = send(&alice, "*", "to both", &["--priority", "next"])["results"][0]["messageId"]
        .as_str()
        .unwrap()
        .to_string();
    let pushed = next_message(&bobs, WAIT).await.expect("pushed to bob");
    assert_eq!(pushed.message_id, id);
    let s = alice.json(&["msg-status", &id, "--json"]);
    let of = |name: &str| {
        s["recipients"]
            .as_array()
            .and_then(|r| r.iter().find(|r| r["name"] == name))
            .map(|r| r["status"].clone())
    };
    assert_eq!(of("bob"), Some(json!("delivered")), "{s:#}");
    assert_eq!(of("carol"), Some(json!("held")), "{s:#}");
    assert_eq!(s["delivered"], false, "{s:#}");
    assert_eq!(s["acknowledged"], false, "{s:#}");
    drop(carols);
}

#[tokio::test(flavor = "multi_thread")]
async fn limits_refuse_clearly_and_others_keep_working() {
    let broker = BrokerProc::start(&["--send-rate", "0.5", "--send-burst", "3"]);
    let (alice, bob) = alice_and_bob(&broker);
    let a = alice.client().await;
    let to_bob = a.resolve_targets("bob").await.unwrap().remove(0);
    let mut refused = 0;
    for i in 0..6 {
        let ack = a
            .send_text(&to_bob, &format!("burst {i}"), "next", None)
            .await
            .unwrap();
        if let Some(e) = ack.error {
            assert!(e.starts_with("rate_limit"), "{e}");
            assert_eq!(ack.queued, Some(false));
            refused += 1;
        }
    }
    assert_eq!(refused, 3, "a burst of 3 passes, the rest is refused");
    // bob is not limited by alice's bucket.
    let reply = send(&bob, "alice", "I can still talk", &[]);
    assert_eq!(reply["results"][0]["queued"], true);

    // Oversized body (under the frame limit): a clear ack error, the socket stays usable.
    let ack = a
        .request(ClientMessage::Send(Box::new(SendMessage {
            id: Some("big".into()),
            target_spec: to_bob.spec.clone(),
            priority: "now".into(),
            nonce: String::new(),
            ciphertext: "A".repeat(63_000),
            ..Default::default()
        })))
        .await
        .unwrap();
    let ServerMessage::Ack(ack) = ack else {
        panic!("ack expected")
    };
    assert!(ack.error.unwrap().starts_with("payload too large"));
    // Over the frame limit: the broker cannot read the frame and closes; the sender is told
    // the frame's size and the limit, not that the connection was lost.
    let out = alice.run(&["send", "bob", &"x".repeat(60_000)]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("limit of 65536 bytes") && out.stderr.contains("--max-message-bytes"),
        "{}",
        out.stderr
    );

    // Unknown target: a pubkey nobody has.
    let nobody = Target {
        label: "nobody".into(),
        spec: claudemesh::crypto::SignKeyPair::generate().public_hex(),
    };
    let b = bob.client().await;
    let ack = b.send_text(&nobody, "hello?", "next", None).await.unwrap();
    assert!(ack.error.unwrap().starts_with("unknown target"));
    let out = bob.run(&["send", "nobody", "hi"]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("nobody"), "{}", out.stderr);
    // And bob's own messages still flow.
    assert_eq!(texts(&inbox(&alice, &[]))[0], "I can still talk");
}

#[tokio::test(flavor = "multi_thread")]
async fn same_client_message_id_is_stored_once() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    let a = alice.client().await;
    let to_bob = a.resolve_targets("bob").await.unwrap().remove(0);
    let first = a
        .send_text(&to_bob, "once", "next", Some("cmid-1".into()))
        .await
        .unwrap();
    let second = a
        .send_text(&to_bob, "once", "next", Some("cmid-1".into()))
        .await
        .unwrap();
    assert_eq!(first.message_id, second.message_id);
    assert_eq!(texts(&inbox(&bob, &[])), vec!["once"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn fifo_per_sender() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    let a = alice.client().await;
    let to_bob = a.resolve_targets("bob").await.unwrap().remove(0);
    for i in 0..50 {
        a.send_text(&to_bob, &format!("m{i}"), "next", None)
            .await
            .unwrap();
    }
    let expected: Vec<String> = (0..50).map(|i| format!("m{i}")).collect();
    assert_eq!(texts(&inbox(&bob, &[])), expected);
}
