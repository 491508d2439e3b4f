//! Shared data end to end (PROTOCOL.md §6, CLI.md "Shared data"): the state board, the
//! searchable memory, tasks, contexts, streams, reminders and `info` — through the real CLI and
//! the client library against a real broker process, across restarts.

use crate::common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use claudemesh::client::MeshClient;
use claudemesh::protocol::ServerMessage;
use claudemesh::protocol::messages::CreateTask;
use common::*;
use serde_json::{Value, json};

/// The next push `pick` accepts, skipping others; fails the test after [`WAIT`].
async fn next_push<T>(client: &MeshClient, mut pick: impl FnMut(ServerMessage) -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let push = tokio::time::timeout_at(deadline, client.next_push())
            .await
            .expect("timed out waiting for a push")
            .expect("the client ended");
        if let Some(found) = pick(push) {
            return found;
        }
    }
}

fn recall(person: &Person, query: &str) -> Vec<Value> {
    person.json(&["recall", query, "--json"])["memories"]
        .as_array()
        .expect("memories array")
        .clone()
}

fn contents(memories: &[Value]) -> Vec<&str> {
    memories
        .iter()
        .map(|m| m["content"].as_str().expect("content"))
        .collect()
}

/// Every line of `inbox --json` (after waiting up to `wait` seconds for one).
fn inbox(person: &Person, wait: &str) -> Vec<Value> {
    let out = person.run(&["inbox", "--wait", wait, "--json"]);
    assert_eq!(out.code, 0, "inbox failed: {}", out.stderr);
    out.stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("inbox prints JSON lines"))
        .collect()
}

fn remember(person: &Person, text: &str, tags: &str) -> String {
    let mut args = vec!["remember", text, "--json"];
    if !tags.is_empty() {
        args.extend(["--tags", tags]);
    }
    person.json(&args)["id"]
        .as_str()
        .expect("remember --json prints {id}")
        .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn state_changes_reach_live_peers_at_once() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    let bob_live = bob.client().await;

    let set = alice.json(&["state", "set", "deploy", r#"{"ok":true,"n":3}"#, "--json"]);
    assert_eq!(set["value"], json!({"ok": true, "n": 3}));
    assert_eq!(set["updatedBy"], "alice");
    let change = next_push(&bob_live, |m| match m {
        ServerMessage::StateChange(c) => Some(c),
        _ => None,
    })
    .await;
    assert_eq!(change.key, "deploy");
    assert_eq!(change.value, json!({"ok": true, "n": 3}));
    assert_eq!(change.updated_by, "alice");

    // The library sets too; text that is not JSON is kept as a string.
    bob_live.set_state("owner", json!("bob")).await.unwrap();
    alice.json(&["state", "set", "note", "hello world", "--json"]);
    let got = alice.json(&["state", "get", "deploy", "--json"]);
    assert_eq!(got["key"], "deploy");
    assert_eq!(got["value"], json!({"ok": true, "n": 3}));
    assert_eq!(got["updatedBy"], "alice");
    assert!(got["updatedAt"].as_str().unwrap().ends_with('Z'));
    assert_eq!(
        alice.json(&["state", "get", "note", "--json"])["value"],
        "hello world"
    );
    let missing = alice.run(&["state", "get", "nothing-here", "--json"]);
    assert_eq!(missing.code, 3, "a key that is not set: {}", missing.stderr);
    let missing: Value = serde_json::from_str(&missing.stdout).unwrap();
    assert_eq!(missing["value"], Value::Null);
    let keys: Vec<String> = alice.json(&["state", "list", "--json"])["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["key"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(keys, ["deploy", "note", "owner"]);
    let text = alice.run(&["state", "get", "owner"]);
    assert!(text.stdout.contains("owner = bob"), "{}", text.stdout);

    // null deletes the key.
    alice.json(&["state", "set", "note", "null", "--json"]);
    assert_eq!(alice.run(&["state", "get", "note"]).code, 3);
    bob_live.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn recall_ranks_stems_and_searches_tags() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    let both = remember(&alice, "the deploy script needs the admin token", "");
    let one = remember(&bob, "token rotation happens every month", "");
    let tagged = remember(&alice, "lunch is at noon", "ops,deployment-notes");

    // Read your writes: found at once; all query terms beat one term.
    let found = recall(&alice, "deploy token");
    assert_eq!(found[0]["id"], both.as_str(), "{found:?}");
    let ids: Vec<&str> = found.iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert!(ids.contains(&one.as_str()) && ids.contains(&tagged.as_str()));
    assert!(found[0]["score"].as_f64().unwrap() > found[1]["score"].as_f64().unwrap());
    assert_eq!(found[0]["rememberedBy"], "alice");
    assert!(found[0]["rememberedAt"].as_str().unwrap().ends_with('Z'));

    // Tags are searched; English stemming ("deploying" finds "deploy", "deployment").
    assert_eq!(contents(&recall(&bob, "ops")), ["lunch is at noon"]);
    assert_eq!(
        recall(&bob, "ops")[0]["tags"],
        json!(["ops", "deployment-notes"])
    );
    let stemmed = recall(&bob, "deploying");
    assert_eq!(stemmed.len(), 2, "{stemmed:?}");
    assert_eq!(
        contents(&recall(&bob, "months")),
        ["token rotation happens every month"]
    );

    // Query syntax works, and what it cannot read is searched as plain words.
    assert_eq!(
        contents(&recall(&alice, "\"admin token\"")),
        ["the deploy script needs the admin token"]
    );
    assert_eq!(recall(&alice, "token -rotation").len(), 1);
    assert_eq!(recall(&alice, "rotation AND (").len(), 1);
    assert_eq!(recall(&alice, "nosuchfield: noon").len(), 1);
    assert!(recall(&alice, "zebra").is_empty());

    // Forgotten is gone; forgetting it again says so.
    let forgot = alice.json(&["forget", &one, "--json"]);
    assert_eq!(forgot["forgotten"], true);
    assert!(recall(&alice, "rotation").is_empty());
    let err = alice.fails(&["forget", &one], 3);
    assert!(err.contains("no memory"), "{err}");

    let text = alice.run(&["recall", "noon"]);
    assert!(text.stdout.contains("lunch is at noon"), "{}", text.stdout);
}

#[tokio::test(flavor = "multi_thread")]
async fn two_concurrent_claims_exactly_one_wins() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);

    // Through the CLI: two processes at once.
    let id = alice.json(&[
        "task",
        "create",
        "fix the flaky test",
        "--assignee",
        "bob",
        "--priority",
        "high",
        "--tags",
        "ci,tests",
        "--json",
    ])["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| alice.run(&["task", "claim", &id, "--json"]));
        let b = s.spawn(|| bob.run(&["task", "claim", &id, "--json"]));
        (a.join().unwrap(), b.join().unwrap())
    });
    let mut codes = [a.code, b.code];
    codes.sort();
    assert_eq!(codes, [0, 1], "alice: {a:?}\nbob: {b:?}");
    let loser = if a.code == 1 { &a } else { &b };
    assert!(
        loser.stderr.contains("task_not_claimable"),
        "{}",
        loser.stderr
    );

    // Through the library: many pairs of simultaneous claims.
    let (ca, cb) = (alice.client().await, bob.client().await);
    for i in 0..10 {
        let id = ca
            .create_task(CreateTask {
                title: format!("task {i}"),
                ..Default::default()
            })
            .await
            .unwrap();
        let (ra, rb) = tokio::join!(ca.claim_task(&id), cb.claim_task(&id));
        assert_eq!(ra.is_ok() as u8 + rb.is_ok() as u8, 1, "{ra:?} {rb:?}");
        let lost = ra.err().or(rb.err()).unwrap();
        assert_eq!(lost.code(), Some("task_not_claimable"));
    }
    let missing = ca.claim_task("NoSuchTask").await.unwrap_err();
    assert_eq!(missing.code(), Some("task_not_found"));
    ca.close().await;
    cb.close().await;

    // open → claimed → done by its claimer, with the result; filters.
    let claimer = if a.code == 0 { &alice } else { &bob };
    let done = claimer.json(&[
        "task",
        "complete",
        &id,
        "--result",
        "retried twice",
        "--json",
    ]);
    let task = &done["tasks"][0];
    assert_eq!(task["status"], "done");
    assert_eq!(task["result"], "retried twice");
    assert_eq!(task["priority"], "high");
    assert_eq!(task["tags"], json!(["ci", "tests"]));
    assert_eq!(task["createdBy"], "alice");
    assert_eq!(task["assignee"], "bob");
    let err = alice.fails(&["task", "claim", &id], 1);
    assert!(err.contains("already done"), "{err}");
    let listed = alice.json(&["task", "list", "--status", "done", "--json"]);
    assert_eq!(listed["tasks"].as_array().unwrap().len(), 1);
    let bobs = alice.json(&["task", "list", "--assignee", "bob", "--json"]);
    assert_eq!(bobs["tasks"][0]["id"], id.as_str());
    let claimed = alice.json(&["task", "list", "--status", "claimed", "--json"]);
    assert_eq!(claimed["tasks"].as_array().unwrap().len(), 10);
    alice.fails(&["task", "list", "--status", "nope"], 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn another_mesh_sees_none_of_it() {
    let broker = BrokerProc::start(&[]);
    let (alice, _bob) = alice_and_bob(&broker);
    let carol = Person::new("carol");
    create_mesh(&broker, &carol, "other");

    alice.json(&["state", "set", "secret", "\"launch code\"", "--json"]);
    let memory = remember(&alice, "the launch code is 1234", "secret");
    let task = alice.json(&["task", "create", "launch", "--json"])["id"]
        .as_str()
        .unwrap()
        .to_string();
    alice.json(&["stream", "create", "launches", "--json"]);
    alice.json(&["context", "share", "launch planning", "--json"]);

    assert_eq!(carol.run(&["state", "get", "secret"]).code, 3);
    assert!(
        carol.json(&["state", "list", "--json"])["entries"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    assert!(recall(&carol, "launch code").is_empty());
    assert!(recall(&carol, "secret").is_empty());
    assert!(
        carol.json(&["task", "list", "--json"])["tasks"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    assert!(
        carol.json(&["context", "list", "--json"])["contexts"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    assert!(carol.fails(&["forget", &memory], 3).contains("no memory"));
    assert!(
        &carol
            .fails(&["task", "claim", &task], 1)
            .contains("task_not_found")
    );
    assert!(
        &carol
            .fails(&["stream", "publish", "launches", "x"], 3)
            .contains("no stream")
    );
    let info = carol.json(&["info", "--json"]);
    assert_eq!(info["memoryCount"], 0);
    assert_eq!(info["stateKeys"], json!([]));
    assert_eq!(info["tasks"], json!({"open": 0, "claimed": 0, "done": 0}));
    assert_eq!(info["streams"], json!([]));

    // …while alice's mesh still has all of it.
    assert_eq!(recall(&alice, "launch code")[0]["id"], memory.as_str());
    let info = alice.json(&["info", "--json"]);
    assert_eq!(info["memoryCount"], 1);
    assert_eq!(info["stateKeys"], json!(["secret"]));
    assert_eq!(info["tasks"]["open"], 1);
    assert_eq!(info["streams"], json!(["launches"]));
    assert_eq!(info["yourName"], "alice");
    assert_eq!(info["mesh"], "team");
    assert_eq!(info["fileCount"], 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn reminders_arrive_and_cron_mistakes_name_the_field() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);

    let ack = alice.json(&["remind", "stand up and stretch", "--in", "2s", "--json"]);
    assert!(!ack["scheduledId"].as_str().unwrap().is_empty());
    assert!(ack["deliverAt"].as_str().unwrap().ends_with('Z'));
    let lines = inbox(&alice, "10");
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["subtype"], "reminder");
    assert_eq!(lines[0]["text"], "stand up and stretch");
    assert_eq!(lines[0]["from"], "alice");

    // To someone else, who is not connected when it fires.
    alice.json(&[
        "remind",
        "review my PR",
        "--in",
        "1s",
        "--to",
        "bob",
        "--json",
    ]);
    // Fired once alice's schedule no longer holds it (the broker stores the message first).
    eventually("the reminder for bob to fire", || async {
        alice.json(&["remind", "list", "--json"])["messages"]
            .as_array()
            .is_some_and(|m| m.is_empty())
    })
    .await;
    let lines = inbox(&bob, "10");
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(
        (&lines[0]["text"], &lines[0]["from"]),
        (&json!("review my PR"), &json!("alice"))
    );
    assert_eq!(lines[0]["subtype"], "reminder");

    // Mistakes.
    let err = alice.fails(&["remind", "x", "--cron", "61 * * * *"], 1);
    assert!(
        err.contains("cron: minute field \"61\" is out of range 0-59"),
        "{err}"
    );
    let err = alice.fails(&["remind", "x", "--cron", "0 9 * * FUNDAY"], 1);
    assert!(err.contains("day-of-week field"), "{err}");
    let err = alice.fails(&["remind", "x", "--cron", "*/5 * * *"], 1);
    assert!(err.contains("expected 5 fields"), "{err}");
    alice.fails(&["remind", "no time given"], 2);
    alice.fails(
        &["remind", "x", "--in", "5m", "--at", "2030-01-01T00:00:00Z"],
        2,
    );
    alice.fails(&["remind", "x", "--in", "soon"], 2);
    let err = alice.fails(&["remind", "x", "--in", "5m", "--to", "nobody"], 1);
    assert!(err.contains("nobody"), "{err}");

    // Cron: listed, then cancelled; only its owner can cancel it.
    let weekly = alice.json(&["remind", "weekly sync", "--cron", "0 9 * * MON", "--json"]);
    assert_eq!(weekly["cron"], "0 9 * * MON");
    let id = weekly["scheduledId"].as_str().unwrap().to_string();
    let listed = alice.json(&["remind", "list", "--json"]);
    assert_eq!(listed["messages"][0]["id"], id.as_str());
    assert_eq!(listed["messages"][0]["cron"], "0 9 * * MON");
    assert!(
        bob.json(&["remind", "list", "--json"])["messages"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    bob.fails(&["remind", "cancel", &id], 1);
    let cancelled = alice.json(&["remind", "cancel", &id, "--json"]);
    assert_eq!(cancelled["ok"], true);
    assert!(
        alice.json(&["remind", "list", "--json"])["messages"]
            .as_array()
            .unwrap()
            .is_empty()
    );
}

/// A reminder push's text, decrypted; `None` for any other push.
fn reminder_text(client: &MeshClient, push: ServerMessage) -> Option<String> {
    match push {
        ServerMessage::Push(p) if p.subtype.as_deref() == Some("reminder") => {
            Some(client.decrypt(&p).expect("a reminder decrypts"))
        }
        _ => None,
    }
}

/// The reminders `client` has received and not yet read, decrypted.
async fn reminders_waiting(client: &MeshClient) -> Vec<String> {
    let mut texts = Vec::new();
    while let Some(push) = client.try_next_push().await {
        texts.extend(reminder_text(client, push));
    }
    texts
}

/// A broadcast reminder leaves out whoever scheduled it, as a broadcast does: scheduled by a
/// session, that session only (its sibling session of the same member gets it); scheduled by
/// the member itself (the CLI), all of that member's sessions.
#[tokio::test(flavor = "multi_thread")]
async fn a_broadcast_reminder_leaves_out_only_whoever_scheduled_it() {
    use claudemesh::client::{ConnectOptions, Identity};
    use claudemesh::crypto::SignKeyPair;
    use claudemesh::protocol::messages::{Schedule, When};

    let broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    let session = |name: &str| {
        let options = ConnectOptions {
            identity: Identity::Session(SignKeyPair::generate()),
            ..ConnectOptions::new(alice.entry(), peer_info(name))
        };
        async move {
            MeshClient::connect(options)
                .await
                .expect("a session connects")
        }
    };
    let first = session("alice-1").await;
    let second = session("alice-2").await;
    let bobs = bob.client().await;

    let soon = claudemesh::protocol::time::now_ms() + 1_000;
    first
        .schedule(Schedule {
            to: "*".into(),
            message: "from the first session".into(),
            deliver_at: Some(When::Ms(soon)),
            subtype: Some("reminder".into()),
            ..Default::default()
        })
        .await
        .expect("the session schedules");
    let got = next_push(&second, |p| reminder_text(&second, p)).await;
    assert_eq!(got, "from the first session", "the sibling session gets it");
    let got = next_push(&bobs, |p| reminder_text(&bobs, p)).await;
    assert_eq!(got, "from the first session", "bob gets it");

    let ack = alice.json(&[
        "remind",
        "from alice herself",
        "--in",
        "1s",
        "--to",
        "*",
        "--json",
    ]);
    assert!(ack["scheduledId"].is_string(), "{ack}");
    let got = next_push(&bobs, |p| reminder_text(&bobs, p)).await;
    assert_eq!(got, "from alice herself", "bob gets the member's reminder");
    // Pushes of one message go out together; give stragglers a moment, then look.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        reminders_waiting(&first).await,
        Vec::<String>::new(),
        "the scheduling session never gets its own broadcast, nor its member's"
    );
    assert_eq!(
        reminders_waiting(&second).await,
        Vec::<String>::new(),
        "no session of alice gets the broadcast alice scheduled herself"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn streams_reach_live_subscribers_only() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    let created = alice.json(&["stream", "create", "builds", "--json"]);
    assert_eq!(created["name"], "builds");
    // Creating it again finds the same stream.
    assert_eq!(
        bob.json(&["stream", "create", "builds", "--json"])["id"],
        created["id"]
    );

    let bob_live = bob.client().await;
    bob_live.subscribe("builds").await.unwrap();
    // The CLI subscriber prints one JSON object per line until it is stopped.
    let mut follower = Command::new(BIN)
        .args(["stream", "subscribe", "builds", "--json"])
        .env("CLAUDEMESH_CONFIG_DIR", alice.config_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run stream subscribe");
    let (line_tx, line_rx) = std::sync::mpsc::channel();
    let stdout = follower.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = line_tx.send(line);
        }
    });
    eventually("two subscribers", || async {
        bob.json(&["stream", "list", "--json"])["streams"][0]["subscriberCount"] == 2
    })
    .await;

    alice.json(&[
        "stream",
        "publish",
        "builds",
        r#"{"status":"green","n":7}"#,
        "--json",
    ]);
    let data = next_push(&bob_live, |m| match m {
        ServerMessage::StreamData(d) => Some(d),
        _ => None,
    })
    .await;
    assert_eq!(data.stream, "builds");
    assert_eq!(data.data, json!({"status": "green", "n": 7}));
    assert_eq!(data.published_by, "alice");
    bob_live
        .publish("builds", json!("plain text"))
        .await
        .unwrap();
    let first: Value = serde_json::from_str(&line_rx.recv_timeout(WAIT).unwrap()).unwrap();
    assert_eq!(
        first,
        json!({"stream": "builds", "data": {"status": "green", "n": 7}, "publishedBy": "alice"})
    );
    let second: Value = serde_json::from_str(&line_rx.recv_timeout(WAIT).unwrap()).unwrap();
    assert_eq!(second["data"], "plain text");
    assert_eq!(second["publishedBy"], "bob");
    let _ = follower.kill();
    let _ = follower.wait();

    // Unsubscribed: nothing more arrives.
    bob_live.unsubscribe("builds").await.unwrap();
    alice.json(&["stream", "publish", "builds", "after", "--json"]);
    let late = tokio::time::timeout(Duration::from_millis(500), async {
        loop {
            match bob_live.next_push().await {
                Some(ServerMessage::StreamData(d)) => return Some(d),
                Some(_) => continue,
                None => return None,
            }
        }
    })
    .await;
    assert!(
        matches!(late, Err(_) | Ok(None)),
        "got {late:?} after unsubscribing"
    );
    let err = bob_live.subscribe("no-such-stream").await.unwrap_err();
    assert_eq!(err.code(), Some("not_found"));
    bob_live.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn one_current_context_per_member() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    alice.json(&[
        "context",
        "share",
        "reading the router",
        "--files",
        "src/broker/router.rs",
        "--findings",
        "fifo per sender",
        "--json",
    ]);
    let second = alice.json(&[
        "context",
        "share",
        "now on the scheduler",
        "--files",
        "src/broker/scheduler.rs",
        "--findings",
        "cron in UTC,one-shots fire late",
        "--tags",
        "scheduling",
        "--json",
    ]);
    bob.json(&[
        "context",
        "share",
        "fixing delivery",
        "--files",
        "src/broker/router.rs",
        "--json",
    ]);

    let all = alice.json(&["context", "list", "--json"])["contexts"].clone();
    let all = all.as_array().unwrap();
    assert_eq!(all.len(), 2, "{all:?}");
    let mine = all.iter().find(|c| c["peerName"] == "alice").unwrap();
    assert_eq!(mine["id"], second["id"]);
    assert_eq!(mine["summary"], "now on the scheduler");
    assert_eq!(
        mine["keyFindings"],
        json!(["cron in UTC", "one-shots fire late"])
    );
    assert_eq!(mine["tags"], json!(["scheduling"]));

    let router = alice.json(&["context", "get", "router.rs", "--json"])["contexts"].clone();
    assert_eq!(router.as_array().unwrap().len(), 1);
    assert_eq!(router[0]["peerName"], "bob");
    let both = alice.json(&["context", "get", "src/broker", "--json"])["contexts"].clone();
    assert_eq!(both.as_array().unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn everything_survives_a_restart_even_without_the_memory_index() {
    let mut broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    alice.json(&[
        "state",
        "set",
        "release",
        r#"{"version":"1.2.0"}"#,
        "--json",
    ]);
    let kept = remember(
        &alice,
        "the release checklist lives in docs/release.md",
        "release",
    );
    let gone = remember(&alice, "the old release process used tarballs", "");
    alice.json(&["forget", &gone, "--json"]);
    let task = alice.json(&["task", "create", "cut the release", "--json"])["id"]
        .as_str()
        .unwrap()
        .to_string();
    bob.json(&["task", "claim", &task, "--json"]);
    alice.json(&["stream", "create", "releases", "--json"]);
    alice.json(&[
        "context",
        "share",
        "preparing 1.2.0",
        "--files",
        "CHANGELOG.md",
        "--json",
    ]);
    let cron = alice.json(&["remind", "nightly check", "--cron", "0 3 * * *", "--json"]);
    // A one-shot for bob that comes due while the broker is down.
    alice.json(&[
        "remind",
        "while you were down",
        "--in",
        "2s",
        "--to",
        "bob",
        "--json",
    ]);

    broker.terminate();
    std::fs::remove_dir_all(broker.data_dir().join("memory")).expect("memory index dir");
    tokio::time::sleep(Duration::from_secs(3)).await;
    broker.restart();

    assert_eq!(
        bob.json(&["state", "get", "release", "--json"])["value"],
        json!({"version": "1.2.0"})
    );
    let found = recall(&bob, "release checklist");
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0]["id"], kept.as_str());
    assert!(
        recall(&bob, "tarballs").is_empty(),
        "a forgotten memory stays gone"
    );
    assert_eq!(
        contents(&recall(&bob, "release")),
        ["the release checklist lives in docs/release.md"]
    );
    let tasks = bob.json(&["task", "list", "--json"]);
    assert_eq!(tasks["tasks"][0]["status"], "claimed");
    assert_eq!(tasks["tasks"][0]["claimedBy"], "bob");
    let streams = bob.json(&["stream", "list", "--json"]);
    assert_eq!(streams["streams"][0]["name"], "releases");
    assert_eq!(streams["streams"][0]["subscriberCount"], 0);
    assert_eq!(
        bob.json(&["context", "list", "--json"])["contexts"][0]["summary"],
        "preparing 1.2.0"
    );
    let scheduled = alice.json(&["remind", "list", "--json"]);
    assert_eq!(scheduled["messages"][0]["id"], cron["scheduledId"]);
    let lines = inbox(&bob, "10");
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["text"], "while you were down");
    assert_eq!(lines[0]["subtype"], "reminder");

    // New memories after the rebuild are found too, and a kill -9 loses none of them.
    let fresh = remember(&bob, "restarted brokers rebuild their index", "");
    broker.kill9();
    broker.restart();
    assert_eq!(recall(&alice, "rebuild index")[0]["id"], fresh.as_str());
    let info = alice.json(&["info", "--json"]);
    assert_eq!(info["memoryCount"], 2);
    assert_eq!(info["tasks"]["claimed"], 1);
}
