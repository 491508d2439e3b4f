//! Hostile members against per-mesh quotas and the authority rules inside a mesh (issue 10,
//! items 7 and 8), each written as the attack: a member of alice's mesh exhausts a quota of a
//! broker started with small limits and gets an error that names the limit, its value and the
//! flag; bystanders in another mesh (and alice's other members) keep working; deleting frees
//! room; the counters survive a restart. Then: members completing, releasing or forgetting what
//! is not theirs, bad task fields, and direct reminders that must never reach the broker's disk
//! in clear.

use crate::common;

use std::path::Path;

use base64::Engine;
use claudemesh::client::files::ShareOptions;
use claudemesh::client::{ClientError, MeshClient};
use claudemesh::protocol::messages::{CreateTask, Schedule, ShareContext, When};
use claudemesh::protocol::{ClientMessage, ServerMessage, time};
use common::*;
use serde_json::{Value, json};

/// Alice owns mesh "team"; bob and mallory are members.
fn team(broker: &BrokerProc) -> (Person, Person, Person) {
    let (alice, bob) = alice_and_bob(broker);
    let mallory = invited(&alice, "mallory");
    (alice, bob, mallory)
}

/// A refusal for the quota set by `flag` at `limit`: code `quota_exceeded`, and a message that
/// names the limit's value and the flag.
fn assert_quota(e: &ClientError, flag: &str, limit: u64) {
    assert_eq!(e.code(), Some("quota_exceeded"), "{e}");
    let text = e.to_string();
    assert!(
        text.contains(&format!("at most {limit} ")) && text.contains(flag),
        "the refusal should name {limit} and {flag}: {text}"
    );
}

fn quota_err<T: std::fmt::Debug>(r: Result<T, ClientError>, flag: &str, limit: u64) {
    match r {
        Ok(v) => panic!("expected a {flag} refusal, got {v:?}"),
        Err(e) => assert_quota(&e, flag, limit),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn state_quota_exhaustion_is_refused_and_deleting_frees_room() {
    let mut broker = BrokerProc::start(&["--max-state-keys", "5", "--max-state-bytes", "4000"]);
    let mut bystanders = Bystanders::start(&broker).await;
    bystanders.exchange(3).await;
    let (alice, bob, mallory) = team(&broker);
    let m = mallory.client().await;

    // The attack: fill the board.
    for i in 0..5 {
        m.set_state(&format!("junk-{i}"), json!(i)).await.unwrap();
    }
    quota_err(m.set_state("junk-5", json!(5)).await, "--max-state-keys", 5);
    bystanders.exchange(3).await;
    // The CLI says the same, in words.
    let err = bob.fails(&["state", "set", "mine", "1"], 1);
    assert!(
        err.contains("5 state keys") && err.contains("--max-state-keys"),
        "{err}"
    );
    // Another mesh is not touched by this mesh's quota.
    bystanders
        .carol_client
        .set_state("ours", json!("fine"))
        .await
        .unwrap();
    // Overwriting a key adds no key; one value too big for the bytes left is refused.
    alice.json(&["state", "set", "junk-0", "\"taken back\"", "--json"]);
    let big = "x".repeat(3990);
    quota_err(
        m.set_state("junk-1", json!(big)).await,
        "--max-state-bytes",
        4000,
    );
    assert_eq!(
        alice.json(&["state", "get", "junk-1", "--json"])["value"],
        json!(1),
        "a refused write changes nothing"
    );

    // Deleting frees room, for keys and bytes.
    m.set_state("junk-4", Value::Null).await.unwrap();
    bob.json(&["state", "set", "mine", "1", "--json"]);
    quota_err(m.set_state("junk-6", json!(6)).await, "--max-state-keys", 5);
    m.close().await;

    // The count survives a restart: still full, still freed by a delete.
    bystanders.carol_client.close().await;
    bystanders.dave_client.close().await;
    broker.restart();
    let err = mallory.fails(&["state", "set", "junk-7", "7"], 1);
    assert!(err.contains("--max-state-keys"), "{err}");
    mallory.json(&["state", "set", "junk-3", "null", "--json"]);
    mallory.json(&["state", "set", "junk-7", "7", "--json"]);
    Bystanders::start(&broker).await.exchange(3).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn memory_quota_exhaustion_is_refused_and_forgetting_frees_room() {
    let broker = BrokerProc::start(&["--max-memories", "3"]);
    let mut bystanders = Bystanders::start(&broker).await;
    let (alice, _bob, mallory) = team(&broker);
    let m = mallory.client().await;
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(m.remember(&format!("junk {i}"), vec![]).await.unwrap());
    }
    quota_err(m.remember("junk 3", vec![]).await, "--max-memories", 3);
    bystanders.exchange(3).await;
    let err = alice.fails(&["remember", "the deploy needs the admin token"], 1);
    assert!(
        err.contains("3 memories") && err.contains("--max-memories"),
        "{err}"
    );
    bystanders
        .carol_client
        .remember("other meshes are not full", vec![])
        .await
        .unwrap();
    m.forget(&ids[0]).await.unwrap();
    alice.json(&["remember", "the deploy needs the admin token", "--json"]);
    quota_err(m.remember("junk 4", vec![]).await, "--max-memories", 3);
    bystanders.exchange(3).await;
    m.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn task_stream_and_context_quotas_are_refused_per_mesh() {
    let mut broker = BrokerProc::start(&[
        "--max-tasks",
        "3",
        "--max-streams",
        "2",
        "--max-contexts",
        "2",
    ]);
    let mut bystanders = Bystanders::start(&broker).await;
    let (alice, bob, mallory) = team(&broker);
    let m = mallory.client().await;
    let task = |i: usize| CreateTask {
        title: format!("junk {i}"),
        ..Default::default()
    };
    for i in 0..3 {
        m.create_task(task(i)).await.unwrap();
    }
    quota_err(m.create_task(task(3)).await, "--max-tasks", 3);
    m.create_stream("junk-a").await.unwrap();
    m.create_stream("junk-b").await.unwrap();
    quota_err(m.create_stream("junk-c").await, "--max-streams", 2);
    // An existing stream is found, not created again.
    m.create_stream("junk-a").await.unwrap();
    let context = |s: &str| ShareContext {
        summary: s.into(),
        ..Default::default()
    };
    m.share_context(context("junk")).await.unwrap();
    bob.json(&["context", "share", "bob's findings", "--json"]);
    let err = alice.fails(&["context", "share", "alice's findings"], 1);
    assert!(err.contains("--max-contexts"), "{err}");
    // Replacing one's own context takes no new room.
    m.share_context(context("junk again")).await.unwrap();
    bystanders.exchange(3).await;

    // Another mesh on the same broker is not touched.
    let c = &bystanders.carol_client;
    for i in 0..3 {
        c.create_task(task(i)).await.unwrap();
    }
    c.create_stream("ours").await.unwrap();
    c.share_context(context("ours")).await.unwrap();
    let err = alice.fails(&["task", "create", "real work"], 1);
    assert!(
        err.contains("3 tasks") && err.contains("--max-tasks"),
        "{err}"
    );
    m.close().await;

    // The counts survive a restart.
    bystanders.carol_client.close().await;
    bystanders.dave_client.close().await;
    broker.restart();
    let m = mallory.client().await;
    quota_err(m.create_task(task(9)).await, "--max-tasks", 3);
    quota_err(m.create_stream("junk-d").await, "--max-streams", 2);
    m.close().await;
    Bystanders::start(&broker).await.exchange(3).await;
}

fn write_file(dir: &Path, name: &str, len: usize) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, vec![b'z'; len]).unwrap();
    path
}

async fn share(
    client: &MeshClient,
    path: &Path,
    ephemeral: bool,
) -> Result<String, claudemesh::client::files::FileError> {
    let opts = ShareOptions {
        ephemeral,
        ..Default::default()
    };
    client
        .share_file(path, opts, &|_, _| {})
        .await
        .map(|s| s.file_id)
}

fn file_quota(r: Result<String, claudemesh::client::files::FileError>, flag: &str, limit: u64) {
    match r {
        Ok(id) => panic!("expected a {flag} refusal, got file {id}"),
        Err(claudemesh::client::files::FileError::Client(e)) => assert_quota(&e, flag, limit),
        Err(other) => panic!("expected a {flag} refusal, got {other}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn file_quotas_are_checked_at_upload_and_freed_by_delete_and_expiry() {
    let broker = BrokerProc::start(&[
        "--max-files",
        "3",
        "--max-file-bytes",
        "30000",
        "--ephemeral-ttl",
        "2s",
    ]);
    let mut bystanders = Bystanders::start(&broker).await;
    let (_alice, bob, mallory) = team(&broker);
    let dir = tempfile::tempdir().unwrap();
    let small = write_file(dir.path(), "small.bin", 1000);
    let big = write_file(dir.path(), "big.bin", 25_000);
    let m = mallory.client().await;
    let b = bob.client().await;

    // Bytes: 25 000 fit; another 25 000 do not, though each is far below the upload cap.
    let first_big = share(&m, &big, false).await.unwrap();
    file_quota(share(&m, &big, false).await, "--max-file-bytes", 30000);
    // Count: two more small files, then the mesh holds its three.
    share(&m, &small, false).await.unwrap();
    share(&m, &small, false).await.unwrap();
    file_quota(share(&b, &small, false).await, "--max-files", 3);
    bystanders.exchange(3).await;
    let listed = b.list_files(None, None).await.unwrap();
    assert_eq!(listed.len(), 3, "nothing of the refused uploads was stored");
    // Another mesh uploads as usual.
    share(&bystanders.carol_client, &big, false).await.unwrap();

    // Deleting frees both.
    m.delete_file(&first_big).await.unwrap();
    let ephemeral = share(&b, &small, true).await.unwrap();
    file_quota(share(&b, &small, false).await, "--max-files", 3);
    // An ephemeral file's room comes back when it expires.
    eventually("the ephemeral file's room to come back", || async {
        share(&b, &small, false).await.is_ok()
    })
    .await;
    assert!(b.get_file(&ephemeral).await.is_err(), "it expired");
    bystanders.exchange(3).await;
    m.close().await;
    b.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn only_the_claimer_creator_or_an_admin_settles_a_claimed_task() {
    let broker = BrokerProc::start(&[]);
    let mut bystanders = Bystanders::start(&broker).await;
    let (alice, bob, mallory) = team(&broker);
    let admin = Person::new("ada");
    let (_, url) = invite(&alice, &["--role", "admin"]);
    join(&admin, &url);
    let (b, m) = (bob.client().await, mallory.client().await);

    // Bob creates and claims; mallory tries to take the credit, or to free it for herself.
    let id = b
        .create_task(CreateTask {
            title: "ship the release".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    b.claim_task(&id).await.unwrap();
    let e = m
        .complete_task(&id, Some("mine now".into()))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some("forbidden"), "{e}");
    assert!(e.to_string().contains("claimed by bob"), "{e}");
    let e = m.release_task(&id).await.unwrap_err();
    assert_eq!(e.code(), Some("forbidden"), "{e}");
    let err = mallory.fails(&["task", "release", &id], 1);
    assert!(err.contains("only its claimer"), "{err}");
    bystanders.exchange(3).await;
    let task = &b.list_tasks(None, None).await.unwrap()[0];
    assert_eq!(
        (
            task.status.as_str(),
            task.claimed_by.as_deref(),
            &task.result
        ),
        ("claimed", Some("bob"), &None)
    );

    // The claimer releases; then another claim is possible, and that claimer completes.
    let released = bob.json(&["task", "release", &id, "--json"]);
    assert_eq!(released["tasks"][0]["status"], "open");
    let e = b.release_task(&id).await.unwrap_err();
    assert_eq!(e.code(), Some("task_not_claimed"), "{e}");
    m.claim_task(&id).await.unwrap();
    let done = mallory.json(&["task", "complete", &id, "--result", "shipped", "--json"]);
    assert_eq!(done["tasks"][0]["status"], "done");

    // The creator (who is not the claimer) and an admin may settle a claim too.
    let id2 = b
        .create_task(CreateTask {
            title: "write the notes".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    m.claim_task(&id2).await.unwrap();
    b.release_task(&id2).await.unwrap();
    m.claim_task(&id2).await.unwrap();
    let done = admin.json(&["task", "complete", &id2, "--json"]);
    assert_eq!(done["tasks"][0]["status"], "done");
    bystanders.exchange(3).await;
    b.close().await;
    m.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn only_the_author_or_an_admin_forgets_a_memory() {
    let broker = BrokerProc::start(&[]);
    let mut bystanders = Bystanders::start(&broker).await;
    let (alice, bob, mallory) = team(&broker);
    let first = bob.json(&["remember", "the staging password rotates monthly", "--json"])["id"]
        .as_str()
        .unwrap()
        .to_string();
    let second = bob.json(&["remember", "the release train leaves on friday", "--json"])["id"]
        .as_str()
        .unwrap()
        .to_string();

    // The attack: mallory erases the mesh's memory.
    let m = mallory.client().await;
    let e = m.forget(&first).await.unwrap_err();
    assert_eq!(e.code(), Some("forbidden"), "{e}");
    assert!(e.to_string().contains("remembered by bob"), "{e}");
    let err = mallory.fails(&["forget", &second], 1);
    assert!(err.contains("only its author"), "{err}");
    bystanders.exchange(3).await;
    let found = bob.json(&["recall", "staging password", "--json"]);
    assert_eq!(found["memories"][0]["id"], first.as_str(), "still there");

    // Its author may, and so may the owner.
    bob.json(&["forget", &first, "--json"]);
    alice.json(&["forget", &second, "--json"]);
    let found = bob.json(&["recall", "release train", "--json"]);
    assert!(found["memories"].as_array().unwrap().is_empty(), "{found}");
    bystanders.exchange(3).await;
    m.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn task_create_checks_priority_and_assignee() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob, _mallory) = team(&broker);
    let err = alice.fails(&["task", "create", "x", "--priority", "critical"], 1);
    assert!(
        err.contains("unknown task priority \"critical\"")
            && err.contains("low, normal, high, urgent"),
        "{err}"
    );
    let err = alice.fails(&["task", "create", "x", "--assignee", "nobody"], 1);
    assert!(
        err.contains("no member or peer of this mesh is called \"nobody\""),
        "{err}"
    );
    assert!(
        alice.json(&["task", "list", "--json"])["tasks"]
            .as_array()
            .unwrap()
            .is_empty(),
        "nothing was created"
    );
    // Names are matched case-insensitively; a pubkey is stored as its member's name.
    alice.json(&[
        "task",
        "create",
        "a",
        "--assignee",
        "BOB",
        "--priority",
        "Urgent",
        "--json",
    ]);
    let bob_key = bob.entry().member_pubkey;
    alice.json(&["task", "create", "b", "--assignee", &bob_key, "--json"]);
    let tasks = alice.json(&["task", "list", "--assignee", "bob", "--json"]);
    let tasks = tasks["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 2, "{tasks:?}");
    assert_eq!(tasks[0]["priority"], "urgent");
    assert_eq!(tasks[1]["assignee"], "bob");
    assert_eq!(tasks[1]["priority"], "normal");
}

/// Every place the text could hide in the data dir: raw, base64 (both alphabets, with and

#[tokio::test(flavor = "multi_thread")]
async fn direct_reminders_are_sealed_end_to_end() {
    let broker = BrokerProc::start(&[]);
    let mut bystanders = Bystanders::start(&broker).await;
    let (alice, bob, _mallory) = team(&broker);
    let secret = "rotate the prod database password tonight 7f3a";
    let to_self = "call the bank about the wire 91c2";
    let to_group = "everyone: the freeze starts now 44d0";
    alice.json(&["remind", secret, "--in", "1s", "--to", "bob", "--json"]);
    alice.json(&["remind", to_self, "--in", "1s", "--json"]);
    alice.json(&["remind", to_group, "--in", "1s", "--to", "*", "--json"]);
    let weekly = alice.json(&[
        "remind",
        secret,
        "--cron",
        "0 9 * * MON",
        "--to",
        "bob",
        "--json",
    ]);
    // While stored: the scheduler holds ciphertext only; its author still reads it.
    let listed = alice.json(&["remind", "list", "--json"]);
    let cron = listed["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == weekly["scheduledId"])
        .expect("the weekly reminder is listed")
        .clone();
    assert_eq!(cron["message"], secret);

    // Bob gets it, opened, from alice; so does alice's own and the broadcast.
    let lines = eventually_inbox(&bob, 2).await;
    let texts: Vec<&str> = lines.iter().map(|l| l["text"].as_str().unwrap()).collect();
    assert!(
        texts.contains(&secret) && texts.contains(&to_group),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .all(|l| l["subtype"] == "reminder" && l["from"] == "alice")
    );
    let mine = eventually_inbox(&alice, 1).await;
    assert_eq!(mine[0]["text"], to_self);
    bystanders.exchange(3).await;

    // Nowhere on the broker's disk, in any form.
    for text in [secret, to_self, to_group] {
        assert_broker_never_saw(&broker, text.as_bytes());
    }
}

/// Reads `person`'s inbox until `n` reminders have come (each run waits a little).
async fn eventually_inbox(person: &Person, n: usize) -> Vec<Value> {
    let mut got: Vec<Value> = Vec::new();
    let deadline = std::time::Instant::now() + WAIT;
    while got.len() < n {
        assert!(
            std::time::Instant::now() < deadline,
            "{} got {got:?}, wanted {n} reminders",
            person.name
        );
        let out = person.run(&["inbox", "--wait", "5", "--json"]);
        assert_eq!(out.code, 0, "inbox failed: {}", out.stderr);
        got.extend(
            out.stdout
                .lines()
                .map(|l| serde_json::from_str::<Value>(l).expect("inbox prints JSON lines")),
        );
    }
    got
}

#[tokio::test(flavor = "multi_thread")]
async fn reminders_in_clear_from_older_clients_still_arrive() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob, _mallory) = team(&broker);
    let a = alice.client().await;
    // What the original client (and this one before sealing) sends: the text itself.
    let asked = a
        .request(ClientMessage::Schedule(Box::new(Schedule {
            to: bob.entry().member_pubkey,
            message: "plain old reminder".into(),
            deliver_at: Some(When::Ms(time::now_ms() + 500)),
            ..Default::default()
        })))
        .await
        .unwrap();
    assert!(matches!(asked, ServerMessage::ScheduledAck(_)), "{asked:?}");
    // A sealed one whose nonce is not a nonce is refused.
    let bad = a
        .request(ClientMessage::Schedule(Box::new(Schedule {
            to: bob.entry().member_pubkey,
            message: base64::engine::general_purpose::STANDARD.encode([7u8; 40]),
            deliver_at: Some(When::Ms(time::now_ms() + 500)),
            nonce: Some("c2hvcnQ=".into()),
            ..Default::default()
        })))
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Some("invalid_argument"), "{bad}");
    a.close().await;
    let lines = eventually_inbox(&bob, 1).await;
    assert_eq!(lines[0]["text"], "plain old reminder");
}
