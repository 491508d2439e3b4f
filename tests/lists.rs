//! Lists cannot be poisoned (issue 10, items 4 and 5): every list reply comes in pages that fit
//! a client's frame limit, what one member makes others list is bounded in size, and
//! hello-and-close cycles cannot grow the peer list or slip past the connection cap. Each
//! attack runs as a hostile member would run it while an honest pair in another mesh keeps
//! messaging.

use crate::common;

use std::collections::HashSet;

use serde_json::{Value, json};

use claudemesh::client::files::ShareOptions;
use claudemesh::client::{ClientError, ConnectOptions, MeshClient};
use claudemesh::protocol::messages::{
    CreateTask, GroupRef, ListFiles, Profile, Recall, ShareContext,
};
use claudemesh::protocol::{ClientMessage, MAX_MESSAGE_BYTES, ServerMessage};
use common::*;

/// Reads a list page by page through raw requests; returns every entry and the number of
/// pages. Every page must fit the frame limit, and every cursor must move on.
async fn paged<T>(
    client: &MeshClient,
    ask: impl Fn(Option<String>) -> ClientMessage,
    read: impl Fn(ServerMessage) -> Option<(Vec<T>, Option<String>)>,
) -> (Vec<T>, usize) {
    let mut all = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let answer = client.request(ask(cursor.clone())).await.expect("a page");
        let bytes = serde_json::to_vec(&answer).expect("encode").len();
        assert!(
            bytes < MAX_MESSAGE_BYTES,
            "a page of {bytes} bytes does not fit a {MAX_MESSAGE_BYTES}-byte frame"
        );
        let (items, next) = read(answer).expect("the list's own reply");
        pages += 1;
        all.extend(items);
        match next {
            None => return (all, pages),
            Some(next) => {
                assert_ne!(Some(&next), cursor.as_ref(), "the cursor moved on");
                cursor = Some(next);
            }
        }
        assert!(pages < 10_000, "the list never ends");
    }
}

/// The error code of a request that must be refused.
async fn refused(client: &MeshClient, req: ClientMessage) -> (String, String) {
    match client.request(req).await {
        Err(ClientError::Broker { code, message }) => (code, message),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// A live session of `person` that others see as a peer (not a CLI tool connection).
async fn session(person: &Person, session_id: &str) -> MeshClient {
    let mut info = peer_info(session_id);
    info.session_id = session_id.to_string();
    MeshClient::connect(ConnectOptions::new(person.entry(), info))
        .await
        .unwrap_or_else(|e| panic!("{session_id} cannot connect: {e}"))
}

/// Waits until the broker has exactly `n` live peers (the bystanders are two).
async fn wait_live(broker: &BrokerProc, n: usize) {
    eventually(&format!("{n} live peers"), || async {
        metric(broker, "claudemesh_peers").await == Some(n as f64)
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// Attacks
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn state_list_poisoning_leaves_the_board_readable_for_everyone() {
    let broker = BrokerProc::start(&[]);
    let (alice, mallory) = alice_and_bob(&broker);
    let mut bystanders = Bystanders::start(&broker).await;
    bystanders.exchange(3).await;

    // Mallory fills the board: 600 keys of ~30 kB each (18 MB, more than any client's frame
    // limit in one reply), in batches so the writes share commits.
    let m = mallory.client().await;
    let value = "x".repeat(30_000);
    for batch in 0..12 {
        let writes = (0..50).map(|i| {
            let key = format!("poison/{:04}", batch * 50 + i);
            let m = &m;
            let value = value.clone();
            async move { m.set_state(&key, json!(value)).await }
        });
        for written in futures_util::future::join_all(writes).await {
            written.expect("a key within the limits is stored");
        }
        if batch == 6 {
            bystanders.exchange(3).await;
        }
    }
    // Oversized keys and values are refused, naming the limit.
    let (code, message) = refused(
        &m,
        ClientMessage::SetState(claudemesh::protocol::messages::SetState {
            key: "k".repeat(257),
            value: json!(1),
        }),
    )
    .await;
    assert_eq!(code, "payload_too_large", "{message}");
    assert!(
        message.contains("key") && message.contains("256"),
        "{message}"
    );
    let (code, message) = refused(
        &m,
        ClientMessage::SetState(claudemesh::protocol::messages::SetState {
            key: "big".into(),
            value: json!("y".repeat(40_000)),
        }),
    )
    .await;
    assert_eq!(code, "payload_too_large", "{message}");
    assert!(message.contains("32768"), "{message}");
    m.close().await;

    // Alice still lists the whole board: every key once, in key order, across pages.
    let listed = alice.json(&["state", "list", "--json"]);
    let entries = listed["entries"].as_array().expect("entries");
    let keys: Vec<&str> = entries.iter().map(|e| e["key"].as_str().unwrap()).collect();
    let expected: Vec<String> = (0..600).map(|i| format!("poison/{i:04}")).collect();
    assert_eq!(keys, expected);
    assert!(entries.iter().all(|e| e["value"] == json!(value)));
    // And the first page alone, as the original CLI would ask for it, fits a frame.
    let a = alice.client().await;
    let first = a
        .request(ClientMessage::ListState {
            cursor: None,
            limit: None,
        })
        .await
        .expect("first page");
    assert!(serde_json::to_vec(&first).unwrap().len() < MAX_MESSAGE_BYTES);
    let ServerMessage::StateList { next_cursor, .. } = first else {
        panic!("a state_list");
    };
    assert!(next_cursor.is_some(), "the first page says there is more");
    a.close().await;
    bystanders.exchange(3).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn ghost_session_flood_is_bounded_and_counted_against_the_cap() {
    // A cap of 20 connections per mesh keeps at most 5 sessions in their lease.
    let broker = BrokerProc::start(&["--max-connections-per-mesh", "20"]);
    let (alice, mallory) = alice_and_bob(&broker);
    let mut bystanders = Bystanders::start(&broker).await;
    bystanders.exchange(3).await;
    let entry = mallory.entry();

    // 320 hello-and-close cycles with a 58 kB cwd: each refused, naming the field.
    for i in 0..320 {
        let mut hello = member_hello(&entry);
        hello["sessionId"] = format!("ghost-{i}").into();
        hello["cwd"] = "/".repeat(58_000).into();
        let mut ws = ws_connect(&broker.ws_url()).await;
        ws_send(&mut ws, &hello).await;
        let err = ws_expect_error(&mut ws, "payload_too_large").await;
        let message = err["message"].as_str().unwrap_or_default();
        assert!(message.contains("cwd") && message.contains("4096"), "{err}");
        let (close, _) = ws_recv_close(&mut ws).await;
        assert_eq!(close, 1008);
        if i == 160 {
            bystanders.exchange(3).await;
        }
    }
    // 320 more with a cwd that is allowed: admitted, then gone; their leases stay bounded.
    for i in 0..320 {
        let mut hello = member_hello(&entry);
        hello["sessionId"] = format!("ghost-{i}").into();
        hello["cwd"] = format!("/home/mallory/{}", "d".repeat(4000)).into();
        let (mut ws, _) = ws_hello(&broker, &hello).await;
        ws.close(None).await.expect("close");
        if i == 160 {
            bystanders.exchange(3).await;
        }
    }
    wait_live(&broker, 2).await;

    // Everyone else still lists peers; the ghosts are at most a quarter of the cap.
    let listed = alice.json(&["peers", "--json"]);
    let ghosts = listed["peers"].as_array().expect("peers").len();
    assert!(
        (1..=5).contains(&ghosts),
        "{ghosts} ghosts listed: {listed}"
    );

    // The ghosts count against the cap: only 20 - ghosts live sessions get in.
    wait_live(&broker, 2).await;
    let mut live = Vec::new();
    loop {
        let mut hello = member_hello(&entry);
        hello["sessionId"] = format!("live-{}", live.len()).into();
        let mut ws = ws_connect(&broker.ws_url()).await;
        ws_send(&mut ws, &hello).await;
        let v = ws_recv_reply(&mut ws).await;
        if v["type"] == "hello_ack" {
            live.push(ws);
            assert!(live.len() <= 20, "more than the cap admitted");
            continue;
        }
        assert_eq!(v["code"], "capacity", "{v}");
        assert!(v["message"].as_str().unwrap().contains("90 s"), "{v}");
        break;
    }
    assert_eq!(live.len(), 20 - ghosts, "{ghosts} ghosts hold their slots");
    bystanders.exchange(3).await;

    // Once they close, the lease bound applies again and the mesh has room.
    for mut ws in live {
        ws.close(None).await.expect("close");
    }
    wait_live(&broker, 2).await;
    let listed = alice.json(&["peers", "--json"]);
    assert!(listed["peers"].as_array().unwrap().len() <= 5, "{listed}");
    let mut hello = member_hello(&entry);
    hello["sessionId"] = "after".into();
    ws_hello(&broker, &hello).await;
    bystanders.exchange(3).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn joining_groups_past_the_cap_is_refused() {
    let broker = BrokerProc::start(&[]);
    let (_alice, mallory) = alice_and_bob(&broker);
    let mut bystanders = Bystanders::start(&broker).await;
    let m = session(&mallory, "mallory-groups").await;
    let join = |name: String| ClientMessage::JoinGroup(GroupRef { name, role: None });
    for i in 0..32 {
        m.request_ack(join(format!("g{i}")))
            .await
            .expect("32 groups are allowed");
    }
    bystanders.exchange(2).await;
    let (code, message) = refused(&m, join("g32".into())).await;
    assert_eq!(code, "invalid_argument", "{message}");
    assert!(message.contains("32"), "{message}");
    // Joining one it is already in, or one more after leaving one, is fine.
    m.request_ack(join("g5".into())).await.expect("rejoin");
    m.request_ack(ClientMessage::LeaveGroup { name: "g0".into() })
        .await
        .expect("leave");
    m.request_ack(join("g32".into())).await.expect("room again");
    // Bad names are refused too, saying what a name may be.
    let (code, message) = refused(&m, join("x".repeat(65))).await;
    assert_eq!(code, "invalid_argument", "{message}");
    assert!(message.contains("64"), "{message}");
    // The member's own CLI connection is held to the same cap (it acts for the member).
    let out = mallory.run(&["group", "join", "@one-too-many"]);
    assert_ne!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("32"), "{out:?}");

    // A hello claiming 33 groups is refused.
    let mut hello = member_hello(&mallory.entry());
    hello["groups"] = Value::Array((0..33).map(|i| json!({"name": format!("h{i}")})).collect());
    ws_refused(&broker, &hello, "payload_too_large", 1008).await;
    m.close().await;
    bystanders.exchange(2).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn oversize_summary_profile_and_hello_fields_are_refused() {
    let broker = BrokerProc::start(&[]);
    let (alice, mallory) = alice_and_bob(&broker);
    let mut bystanders = Bystanders::start(&broker).await;
    let m = session(&mallory, "mallory-profile").await;

    let (code, message) = refused(
        &m,
        ClientMessage::SetSummary {
            summary: "s".repeat(1025),
        },
    )
    .await;
    assert_eq!(code, "payload_too_large");
    assert!(
        message.contains("summary") && message.contains("1024"),
        "{message}"
    );
    let profile = |p: Profile| ClientMessage::SetProfile(p);
    for (field, p) in [
        (
            "bio",
            Profile {
                bio: Some("b".repeat(1025)),
                ..Default::default()
            },
        ),
        (
            "avatar",
            Profile {
                avatar: Some("a".repeat(1025)),
                ..Default::default()
            },
        ),
        (
            "title",
            Profile {
                title: Some("t".repeat(257)),
                ..Default::default()
            },
        ),
        (
            "capabilities",
            Profile {
                capabilities: Some((0..33).map(|i| format!("c{i}")).collect()),
                ..Default::default()
            },
        ),
        (
            "capability",
            Profile {
                capabilities: Some(vec!["c".repeat(65)]),
                ..Default::default()
            },
        ),
    ] {
        let (code, message) = refused(&m, profile(p)).await;
        assert_eq!(code, "payload_too_large", "{field}: {message}");
        assert!(message.contains(field), "{field}: {message}");
    }
    bystanders.exchange(2).await;

    // Within the limits, others see what was set.
    m.request_ack(ClientMessage::SetSummary {
        summary: "s".repeat(1024),
    })
    .await
    .expect("a 1 KiB summary");
    m.request_ack(profile(Profile {
        bio: Some("hello".into()),
        ..Default::default()
    }))
    .await
    .expect("a small profile");
    let peers = alice.json(&["peers", "--json"]);
    let me = peers["peers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["sessionId"] == "mallory-profile")
        .cloned()
        .expect("mallory's session is listed");
    assert_eq!(me["summary"], json!("s".repeat(1024)));
    assert_eq!(me["profile"]["bio"], "hello");

    // Hello fields over their limits are refused, naming the field.
    for (field, value) in [
        ("cwd", json!("/".repeat(4097))),
        ("hostname", json!("h".repeat(257))),
        ("model", json!("m".repeat(257))),
        ("sessionId", json!("i".repeat(257))),
    ] {
        let mut hello = member_hello(&mallory.entry());
        hello[field] = value;
        let mut ws = ws_connect(&broker.ws_url()).await;
        ws_send(&mut ws, &hello).await;
        let err = ws_expect_error(&mut ws, "payload_too_large").await;
        assert!(err["message"].as_str().unwrap().contains(field), "{err}");
        assert_eq!(ws_recv_close(&mut ws).await.0, 1008);
    }
    m.close().await;
    bystanders.exchange(2).await;
}

// ---------------------------------------------------------------------------------------------
// One paging test per list: more entries than one page, all come back once, in order
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn state_pages_come_in_key_order_each_key_once() {
    let broker = BrokerProc::start(&[]);
    let (alice, _bob) = alice_and_bob(&broker);
    let a = alice.client().await;
    for i in (0..25).rev() {
        a.set_state(&format!("k{i:02}"), json!(i)).await.unwrap();
    }
    let (entries, pages) = paged(
        &a,
        |cursor| ClientMessage::ListState {
            cursor,
            limit: Some(7),
        },
        |m| match m {
            ServerMessage::StateList {
                entries,
                next_cursor,
            } => Some((entries, next_cursor)),
            _ => None,
        },
    )
    .await;
    assert_eq!(pages, 4);
    let keys: Vec<String> = entries.iter().map(|e| e.key.clone()).collect();
    let expected: Vec<String> = (0..25).map(|i| format!("k{i:02}")).collect();
    assert_eq!(keys, expected);
    // The client library and the CLI follow the pages.
    assert_eq!(a.list_state().await.unwrap().len(), 25);
    let cli = alice.json(&["state", "list", "--json"]);
    assert_eq!(cli["entries"].as_array().unwrap().len(), 25);
    // A cursor the broker never gave is refused.
    let (code, _) = refused(
        &a,
        ClientMessage::ListState {
            cursor: Some("%%%".into()),
            limit: None,
        },
    )
    .await;
    assert_eq!(code, "invalid_argument");
    a.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn peer_pages_come_by_name_each_peer_once() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    let mut sessions = Vec::new();
    for i in 0..12 {
        sessions.push(session(&bob, &format!("bob-{i:02}")).await);
    }
    let a = session(&alice, "alice-main").await;
    let (peers, pages) = paged(
        &a,
        |cursor| ClientMessage::ListPeers {
            group: None,
            cursor,
            limit: Some(5),
        },
        |m| match m {
            ServerMessage::PeersList { peers, next_cursor } => Some((peers, next_cursor)),
            _ => None,
        },
    )
    .await;
    assert_eq!(pages, 3);
    assert_eq!(peers.len(), 13);
    let ids: HashSet<&str> = peers.iter().map(|p| p.session_id.as_str()).collect();
    assert_eq!(ids.len(), 13, "each peer once");
    let names: Vec<&str> = peers.iter().map(|p| p.display_name.as_str()).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "by display name");
    assert_eq!(a.list_peers(None).await.unwrap().len(), 13);
    let cli = alice.json(&["peers", "--json"]);
    assert_eq!(cli["peers"].as_array().unwrap().len(), 13);
    for s in sessions {
        s.close().await;
    }
    a.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn task_pages_come_in_id_order_each_task_once() {
    let broker = BrokerProc::start(&[]);
    let (alice, _bob) = alice_and_bob(&broker);
    let a = alice.client().await;
    let mut created = Vec::new();
    for i in 0..25 {
        let id = a
            .create_task(CreateTask {
                title: format!("task {i}"),
                ..Default::default()
            })
            .await
            .unwrap();
        created.push(id);
    }
    for id in created.iter().take(10) {
        a.claim_task(id).await.unwrap();
    }
    let list = |status: Option<&str>| {
        let status = status.map(str::to_string);
        move |cursor| ClientMessage::ListTasks {
            status: status.clone(),
            assignee: None,
            cursor,
            limit: Some(4),
        }
    };
    let read = |m: ServerMessage| match m {
        ServerMessage::TaskList { tasks, next_cursor } => Some((tasks, next_cursor)),
        _ => None,
    };
    let (tasks, pages) = paged(&a, list(None), read).await;
    assert_eq!(pages, 7);
    let ids: Vec<String> = tasks.iter().map(|t| t.id.clone()).collect();
    let mut expected = created.clone();
    expected.sort();
    assert_eq!(ids, expected, "every task once, in id order");
    let (open, _) = paged(&a, list(Some("open")), read).await;
    assert_eq!(open.len(), 15);
    assert!(open.iter().all(|t| t.status == "open"));
    // Our client shows them oldest first, as before paging.
    let all = a.list_tasks(None, None).await.unwrap();
    let titles: Vec<String> = all.iter().map(|t| t.title.clone()).collect();
    let expected: Vec<String> = (0..25).map(|i| format!("task {i}")).collect();
    assert_eq!(titles, expected);
    let cli = alice.json(&["task", "list", "--json"]);
    assert_eq!(cli["tasks"].as_array().unwrap().len(), 25);
    a.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn file_pages_come_in_id_order_each_file_once() {
    let broker = BrokerProc::start(&[]);
    let (alice, _bob) = alice_and_bob(&broker);
    let a = alice.client().await;
    let dir = tempfile::tempdir().unwrap();
    let mut shared = Vec::new();
    for i in 0..12 {
        let path = dir.path().join(format!("notes-{i:02}.txt"));
        std::fs::write(&path, format!("file {i}")).unwrap();
        let done = a
            .share_file(&path, ShareOptions::default(), &|_, _| {})
            .await
            .expect("upload");
        shared.push(done.file_id);
    }
    let (files, pages) = paged(
        &a,
        |cursor| {
            ClientMessage::ListFiles(ListFiles {
                cursor,
                limit: Some(5),
                ..Default::default()
            })
        },
        |m| match m {
            ServerMessage::FileList { files, next_cursor } => Some((files, next_cursor)),
            _ => None,
        },
    )
    .await;
    assert_eq!(pages, 3);
    let ids: Vec<String> = files.iter().map(|f| f.id.clone()).collect();
    shared.sort();
    assert_eq!(ids, shared);
    let cli = alice.json(&["file", "list", "--json"]);
    assert_eq!(cli["files"].as_array().unwrap().len(), 12);
    a.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn recall_pages_keep_the_ranking_each_memory_once() {
    let broker = BrokerProc::start(&[]);
    let (alice, _bob) = alice_and_bob(&broker);
    let a = alice.client().await;
    // 30 memories of ~3 kB: a page of 32 KiB holds about ten.
    for i in 0..30 {
        let content = format!(
            "deploy {} note {i} {}",
            "deploy ".repeat(i),
            "z".repeat(3000)
        );
        a.remember(&content, vec![]).await.unwrap();
    }
    let (found, pages) = paged(
        &a,
        |cursor| {
            ClientMessage::Recall(Recall {
                query: "deploy".into(),
                limit: Some(100),
                cursor,
            })
        },
        |m| match m {
            ServerMessage::MemoryResults {
                memories,
                next_cursor,
            } => Some((memories, next_cursor)),
            _ => None,
        },
    )
    .await;
    assert!(
        pages >= 3,
        "the byte bound cut the results into pages ({pages})"
    );
    assert_eq!(found.len(), 30);
    let ids: HashSet<&str> = found.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids.len(), 30, "each memory once");
    assert!(
        found.windows(2).all(|w| w[0].score >= w[1].score),
        "best first across pages"
    );
    // The client gathers what was asked for across pages.
    assert_eq!(a.recall("deploy", Some(25)).await.unwrap().len(), 25);
    assert_eq!(a.recall("deploy", None).await.unwrap().len(), 20);
    a.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn context_pages_come_by_member_each_context_once() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    let carol = invited(&alice, "carol");
    for p in [&alice, &bob, &carol] {
        // Each share in a millisecond of its own, so "most recent" is one context (on a fast
        // machine a connect and a share fit in one millisecond).
        let before = claudemesh::protocol::time::now_ms();
        while claudemesh::protocol::time::now_ms() == before {
            tokio::time::sleep(std::time::Duration::from_micros(200)).await;
        }
        let c = p.client().await;
        c.share_context(ShareContext {
            summary: format!("{} knows things", p.name),
            ..Default::default()
        })
        .await
        .unwrap();
        c.close().await;
    }
    let a = alice.client().await;
    let (contexts, pages) = paged(
        &a,
        |cursor| ClientMessage::ListContexts {
            cursor,
            limit: Some(1),
        },
        |m| match m {
            ServerMessage::ContextList {
                contexts,
                next_cursor,
            } => Some((contexts, next_cursor)),
            _ => None,
        },
    )
    .await;
    assert_eq!(pages, 3);
    let names: HashSet<&str> = contexts.iter().map(|c| c.peer_name.as_str()).collect();
    assert_eq!(names, HashSet::from(["alice", "bob", "carol"]));
    // Our client shows the most recent first.
    let all = a.list_contexts().await.unwrap();
    assert_eq!(all[0].peer_name, "carol");
    let cli = alice.json(&["context", "list", "--json"]);
    assert_eq!(cli["contexts"].as_array().unwrap().len(), 3);
    a.close().await;
}
