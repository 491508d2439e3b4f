//! Hostile input (DESIGN.md, security model): peers that flood garbage, never read, go silent
//! without closing, or come by the thousand; replayed hellos; names built to mislead; file
//! names that try to climb out of their directory. The broker answers, stays up, keeps its
//! memory bounded and keeps serving everyone else.

use crate::common;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;

use claudemesh::client::Target;
use claudemesh::protocol::ServerMessage;
use claudemesh::protocol::ids;
use common::*;

/// The broker's resident memory, from its own metrics.
async fn broker_rss(broker: &BrokerProc) -> f64 {
    metric(broker, "claudemesh_process_resident_memory_bytes")
        .await
        .expect("the broker reports its memory")
}

/// Waits until the broker counts exactly `n` open WebSockets and `peers` proven peers.
async fn wait_connections(broker: &BrokerProc, n: usize, peers: usize) {
    eventually(&format!("{n} connections and {peers} peers"), || async {
        metric(broker, "claudemesh_connections").await == Some(n as f64)
            && metric(broker, "claudemesh_peers").await == Some(peers as f64)
    })
    .await;
}

/// `person` joins `alice`'s mesh with a fresh invite.
fn invite_in(alice: &Person, person: &Person) {
    let (_, url) = invite(alice, &[]);
    join(person, &url);
}

/// A MessagePack value nested `depth` arrays deep: `[[[…nil…]]]`.
fn nested_msgpack(depth: usize) -> Vec<u8> {
    let mut bytes = vec![0x91; depth]; // fixarray of one element
    bytes.push(0xc0); // nil
    bytes
}

/// `{"type":"publish","data":[[[…]]]}` in MessagePack, `depth` arrays deep (no stream, so it is
/// refused only once the whole value has been read).
fn deep_publish(depth: usize) -> Vec<u8> {
    let mut bytes = vec![0x82, 0xa4];
    bytes.extend_from_slice(b"type");
    bytes.push(0xa7);
    bytes.extend_from_slice(b"publish");
    bytes.push(0xa4);
    bytes.extend_from_slice(b"data");
    bytes.extend(nested_msgpack(depth));
    bytes
}

/// The `i`-th frame of a malformed flood: every kind a broken or hostile client could send.
fn garbage(i: usize) -> Message {
    match i % 10 {
        0 => Message::text("{not json"),
        1 => Message::text("[1, 2, 3]"),
        2 => Message::text(format!(r#"{{"type":"no_such_type_{i}","_reqId":"g{i}"}}"#)),
        3 => Message::text(r#"{"type":"send","targetSpec":42}"#),
        4 => Message::text(format!("{}{}", "[".repeat(5000), "]".repeat(5000))),
        5 => Message::binary(vec![0xc1, 0xff, 0x00, (i % 251) as u8]),
        6 => Message::binary(nested_msgpack(20_000)),
        7 => Message::binary(rmp_serde::to_vec_named(&json!({"type": 7, "x": [i]})).unwrap()),
        8 => Message::text(format!(r#"{{"_reqId":"{i}"}}"#)),
        _ => Message::binary(deep_publish(1000)),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flood_of_malformed_frames_gets_errors_and_bounded_memory() {
    const ROUNDS: usize = 3;
    const FRAMES: usize = 4_000;
    let broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    let (ws, _) = ws_hello(&broker, &member_hello(&bob.entry())).await;
    let (mut flood, mut answers) = ws.split();
    let other = alice.client().await;
    let to_bob = Target {
        label: "bob".into(),
        spec: bob.entry().member_pubkey,
    };

    let mut rss = vec![broker_rss(&broker).await];
    for round in 0..ROUNDS {
        // bob floods while reading the answers: one error for every frame, nothing else.
        let reader = tokio::spawn(async move {
            let mut codes = std::collections::BTreeMap::<String, usize>::new();
            let mut n = 0;
            while n < FRAMES {
                let msg = tokio::time::timeout(WAIT, answers.next())
                    .await
                    .expect("an answer to every malformed frame")
                    .expect("the socket stays open")
                    .expect("a readable frame");
                let Message::Text(t) = msg else { continue };
                let v: Value = serde_json::from_str(t.as_str()).expect("JSON answers");
                if v["type"] == "push" {
                    continue; // alice's messages to bob, below
                }
                assert_eq!(v["type"], "error", "{v}");
                *codes
                    .entry(v["code"].as_str().unwrap().to_string())
                    .or_default() += 1;
                n += 1;
            }
            (answers, codes)
        });
        for i in 0..FRAMES {
            flood
                .send(garbage(i))
                .await
                .expect("the broker keeps reading");
            if i % 1000 == 0 {
                // Meanwhile the mesh goes on: alice's sends are stored and acknowledged.
                let ack = other
                    .send_text(&to_bob, &format!("round {round} frame {i}"), "next", None)
                    .await
                    .expect("alice is served during the flood");
                assert_eq!(ack.queued, Some(true), "{ack:?}");
            }
        }
        let (rest, codes) = reader.await.expect("reader");
        answers = rest;
        assert_eq!(
            codes.keys().map(String::as_str).collect::<Vec<_>>(),
            ["malformed", "unknown_message_type"],
            "{codes:?}"
        );
        rss.push(broker_rss(&broker).await);
    }
    // The flooder's own socket still works, and so does everyone else's.
    flood
        .send(Message::text(r#"{"type":"list_members","_reqId":"after"}"#))
        .await
        .unwrap();
    let mut ws = flood.reunite(answers).expect("one socket");
    let v = ws_recv_reply(&mut ws).await;
    assert_eq!(v["type"], "members_list", "{v}");
    assert_eq!(
        other.list_peers(None).await.expect("alice is served").len(),
        2
    );
    // Memory follows the work in flight, not the number of frames ever received: later rounds
    // add (almost) nothing to what the first one needed.
    eprintln!(
        "broker RSS per round (MiB): {:?}",
        rss.iter()
            .map(|b| (b / 1048576.0).round())
            .collect::<Vec<_>>()
    );
    let first = rss[1];
    let last = rss[ROUNDS];
    assert!(
        last < first + 16.0 * 1048576.0,
        "the broker grew from {first} to {last} bytes over {ROUNDS} equal rounds"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_peer_that_never_reads_is_cut_off_and_others_are_not() {
    const BATCH: usize = 500;
    const CONCURRENCY: usize = 32;
    // Pushes to bob stop at a window of unacknowledged ones (the rest waits in his queue), so
    // what cuts him off is the watchdog: he answers no ping.
    // The watchdog's verdicts are logged, so a failure shows when (and whether) bob was judged
    // silent.
    let broker = BrokerProc::start_with_env(
        &[
            "--send-rate",
            "100000",
            "--send-burst",
            "100000",
            "--idle-timeout",
            "2s",
        ],
        &[("RUST_LOG", "info,claudemesh::broker::connection=debug")],
    );
    let (alice, bob) = alice_and_bob(&broker);
    let carol = Person::new("carol");
    invite_in(&alice, &carol);
    wait_connections(&broker, 0, 0).await;

    // bob says hello and then never reads his socket again.
    let (mut stuck, _) = ws_hello(&broker, &member_hello(&bob.entry())).await;
    let carol_client = carol.client().await;
    let sender = Arc::new(alice.client().await);
    wait_connections(&broker, 3, 3).await;

    // alice broadcasts until the broker gives up on bob; carol reads along.
    let body = "x".repeat(2048);
    let all = Target {
        label: "everyone".into(),
        spec: "*".into(),
    };
    // The promise is about time (silent for over 2 s), not about how many messages a loaded
    // machine gets through meanwhile: the bound is generous for a busy CI machine.
    const CUT_OFF_WITHIN: Duration = Duration::from_secs(30);
    let started = std::time::Instant::now();
    let mut sent = 0usize;
    while metric(&broker, "claudemesh_peers").await == Some(3.0) {
        assert!(
            started.elapsed() < CUT_OFF_WITHIN,
            "bob was never cut off: still connected {:?} into the flood, {sent} broadcasts later",
            started.elapsed()
        );
        let mut batch = JoinSet::new();
        for k in 0..CONCURRENCY {
            let (sender, all, body) = (sender.clone(), all.clone(), body.clone());
            let n = BATCH / CONCURRENCY;
            batch.spawn(async move {
                for i in 0..n {
                    let ack = sender
                        .send_text(&all, &format!("{k}-{i} {body}"), "next", None)
                        .await
                        .expect("alice is served");
                    assert_eq!(ack.queued, Some(true), "{ack:?}");
                }
                n
            });
        }
        while let Some(n) = batch.join_next().await {
            sent += n.expect("send task");
        }
    }
    // bob's connection is gone for good — not only his presence: the socket is closed and its
    // queue freed — while alice and carol stay.
    wait_connections(&broker, 2, 2).await;
    eprintln!(
        "bob was cut off after {sent} broadcasts, {:?}",
        started.elapsed()
    );

    // carol got every broadcast.
    let mut got = std::collections::HashSet::new();
    while got.len() < sent {
        match tokio::time::timeout(WAIT, carol_client.next_push()).await {
            Ok(Some(ServerMessage::Push(p))) if p.subtype.is_none() => {
                // Pushes come a window at a time: carol acknowledges to get the next ones.
                carol_client.ack(&p.message_id).expect("carol acks");
                got.insert(p.message_id.clone());
            }
            Ok(Some(_)) => {}
            other => panic!(
                "carol got {} of {sent} broadcasts, then {other:?}",
                got.len()
            ),
        }
    }
    let online: Vec<String> = sender
        .list_peers(None)
        .await
        .expect("still served")
        .into_iter()
        .filter(|p| p.online)
        .map(|p| p.display_name)
        .collect();
    assert_eq!(online.len(), 2, "{online:?}");
    assert!(!online.contains(&"bob".to_string()), "{online:?}");

    // What bob finds when he reads at last: what was already on its way, then the end (a close
    // when there was room for it, else just the end of the stream).
    let (code, reason) = ws_recv_close(&mut stuck).await;
    assert!(
        matches!(
            (code, reason.as_str()),
            (1008, "slow_consumer") | (1001, "idle_timeout") | (1006, _)
        ),
        "bob's socket ended with {code} {reason:?}"
    );
    // Nothing was lost on him: his queue holds every broadcast, and he gets them all once he
    // reads (a window at a time, as he acknowledges).
    let reader = bob.client().await;
    let mut got = std::collections::HashSet::new();
    while got.len() < sent {
        match tokio::time::timeout(WAIT, reader.next_push()).await {
            Ok(Some(ServerMessage::Push(p))) if p.subtype.is_none() => {
                reader.ack(&p.message_id).expect("ack");
                got.insert(p.message_id.clone());
            }
            Ok(Some(_)) => {}
            other => panic!("bob got {} of {sent} broadcasts, then {other:?}", got.len()),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_silent_half_open_connection_is_dropped_by_the_watchdog() {
    let broker = BrokerProc::start(&["--idle-timeout", "2s"]);
    let (alice, bob) = alice_and_bob(&broker);
    wait_connections(&broker, 0, 0).await;
    // bob's socket says hello, then goes silent without closing: it neither sends nor reads,
    // so it never answers the broker's pings.
    let (mut silent, _) = ws_hello(&broker, &member_hello(&bob.entry())).await;
    // alice's client is idle too, but alive: it answers pings.
    let live = alice.client().await;
    wait_connections(&broker, 2, 2).await;
    wait_connections(&broker, 1, 1).await;
    // alice outlived bob's idle limit and is still served.
    let peers = live
        .list_peers(None)
        .await
        .expect("alice is still connected");
    assert!(
        peers.iter().all(|p| p.display_name != "bob" || !p.online),
        "{peers:?}"
    );
    // Had bob been listening, he would have been told why. (Read below the WebSocket layer:
    // it would answer the pings it finds with pongs, and writing to the closed socket gets a
    // reset that throws away what was still unread.)
    let mut raw = Vec::new();
    let tcp = match silent.get_mut() {
        tokio_tungstenite::MaybeTlsStream::Plain(tcp) => tcp,
        _ => unreachable!("a plain ws:// socket"),
    };
    tokio::time::timeout(WAIT, tcp.read_to_end(&mut raw))
        .await
        .expect("the broker closes the socket")
        .expect("a clean end of stream");
    // An unmasked close frame: 0x88, length, code 1001, reason.
    let close = [&[0x88, 14, 0x03, 0xe9][..], b"idle_timeout"].concat();
    assert!(
        raw.windows(close.len()).any(|w| w == close),
        "no close frame 1001 idle_timeout in what bob was sent: {raw:?}"
    );
}

/// The soft limit on open files of this process (the broker it starts inherits it).
fn open_files_limit() -> usize {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|l| {
            l.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3).map(str::to_string))
        })
        .and_then(|n| n.parse().ok())
        .unwrap_or(1024)
}

/// What became of one of the thousand connections.
enum Arrival {
    Admitted(Box<Ws>),
    Refused(String, u16),
    /// Connected (TCP or WebSocket) and said nothing: held open until the end.
    Silent(Box<dyn std::any::Any + Send>),
}

#[tokio::test(flavor = "multi_thread")]
async fn a_thousand_simultaneous_connections_leave_the_broker_serving() {
    // Every connection is a descriptor here and one in the broker; stay well inside the limit.
    let n = 1000.min(open_files_limit().saturating_sub(200));
    eprintln!(
        "{n} simultaneous connections (open files limit {})",
        open_files_limit()
    );
    // All of them come from 127.0.0.1: lift the per-IP cap (tests/admission.rs covers it).
    let broker = BrokerProc::start(&["--max-connections-per-ip", "5000"]);
    let (alice, bob) = alice_and_bob(&broker);
    let dave = Person::new("dave");
    create_mesh(&broker, &dave, "elsewhere");
    wait_connections(&broker, 0, 0).await;

    // Half say a valid hello as bob (the mesh admits 100 connections), a quarter upgrade to a
    // WebSocket and say nothing, a quarter open TCP and send nothing.
    let hellos: Vec<Value> = (0..n / 2).map(|_| member_hello(&bob.entry())).collect();
    let url = broker.ws_url();
    let port = broker.port;
    let mut all = JoinSet::new();
    for i in 0..n {
        let hello = hellos.get(i / 2).filter(|_| i % 2 == 0).cloned();
        let url = url.clone();
        all.spawn(async move {
            if i % 4 == 3 {
                let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .expect("TCP connect");
                return Arrival::Silent(Box::new(tcp));
            }
            let mut ws = ws_connect(&url).await;
            let Some(hello) = hello else {
                return Arrival::Silent(Box::new(ws));
            };
            ws_send(&mut ws, &hello).await;
            let v = ws_recv_reply(&mut ws).await;
            if v["type"] == "hello_ack" {
                return Arrival::Admitted(Box::new(ws));
            }
            let (close, _) = ws_recv_close(&mut ws).await;
            Arrival::Refused(v["code"].as_str().unwrap_or("?").to_string(), close)
        });
    }
    let mut held = Vec::new();
    let (mut admitted, mut refused) = (0, 0);
    while let Some(a) = all.join_next().await {
        match a.expect("connection task") {
            Arrival::Admitted(ws) => {
                admitted += 1;
                held.push(ws as Box<dyn std::any::Any + Send>);
            }
            Arrival::Refused(code, close) => {
                assert_eq!((code.as_str(), close), ("capacity", 1008));
                refused += 1;
            }
            Arrival::Silent(s) => held.push(s),
        }
    }
    assert_eq!(admitted, 100, "the mesh's capacity");
    assert_eq!(refused, n / 2 - 100);

    // With all of that still open, the broker serves a normal client (in another mesh: this
    // one is full) and its health endpoint.
    let health = http_get(&format!("{}/health", broker.http_url())).await;
    assert_eq!(health.status, 200);
    let d = dave.client().await;
    assert_eq!(d.list_peers(None).await.expect("dave is served").len(), 1);

    // Once they go, the mesh has room again and messages flow.
    drop(held);
    wait_connections(&broker, 1, 1).await;
    let a = alice.client().await;
    let to_bob = a.resolve_targets("bob").await.expect("bob").remove(0);
    let ack = a
        .send_text(&to_bob, "still here", "now", None)
        .await
        .unwrap();
    assert_eq!(ack.queued, Some(true));
    let out = bob.run(&["inbox", "--json"]);
    assert!(out.stdout.contains("still here"), "{out:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replayed_hello_is_refused_however_it_is_dressed() {
    let broker = BrokerProc::start(&[]);
    let (_alice, bob) = alice_and_bob(&broker);
    let hello = member_hello(&bob.entry());
    let (mut first, _) = ws_hello(&broker, &hello).await;

    // Again on the same socket: it has already said hello.
    ws_send(&mut first, &hello).await;
    ws_expect_error(&mut first, "already_authenticated").await;
    // On another socket, as captured, in MessagePack, or with the fields the signature does
    // not cover changed (a name, a session, groups): all the same signature, all refused.
    ws_refused(&broker, &hello, "replay", 1008).await;
    let mut ws = ws_connect(&broker.ws_url()).await;
    ws_send_msgpack(&mut ws, &hello).await;
    ws_expect_error(&mut ws, "replay").await;
    let mut dressed = hello.clone();
    dressed["displayName"] = "mallory".into();
    dressed["sessionId"] = "another-session".into();
    dressed["groups"] = json!([{"name": "admins"}]);
    ws_refused(&broker, &dressed, "replay", 1008).await;
    // Even after the original connection has closed.
    first.close(None).await.unwrap();
    wait_connections(&broker, 0, 0).await;
    ws_refused(&broker, &hello, "replay", 1008).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn names_that_are_too_long_or_carry_control_characters_are_cleaned() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    // Under the 256-byte limit on hello fields, over the 64 characters a name may show.
    let hostile = format!("\u{1b}[2J\u{7}{}\nINJECTED\r", "é".repeat(100));
    let clean = |name: &str| {
        assert!(
            name.chars().count() <= 64,
            "{name:?} is longer than 64 characters"
        );
        assert!(
            !name.chars().any(char::is_control),
            "{name:?} has control characters"
        );
        assert!(!name.is_empty());
    };

    // A name over the 256-byte limit is refused outright, naming the field.
    let mut v = member_hello(&bob.entry());
    v["displayName"] = "é".repeat(300).into();
    sign_member_hello(&mut v, &bob.entry().member_keys().unwrap());
    ws_refused(&broker, &v, "payload_too_large", 1008).await;

    // In a hello: the name others see is cut and cleaned, and so are the groups it claims.
    let mut v = member_hello(&bob.entry());
    v["displayName"] = hostile.clone().into();
    v["groups"] = json!([
        {"name": "ok-group"},
        {"name": "\u{1b}[31mred"},
        {"name": "x".repeat(5000)},
        {"name": "../.."},
    ]);
    sign_member_hello(&mut v, &bob.entry().member_keys().unwrap());
    let (_ws, ack) = ws_hello(&broker, &v).await;
    let shown = ack["memberDisplayName"].as_str().unwrap();
    clean(shown);
    assert_eq!(shown, format!("[2J{}", "é".repeat(61)));
    let peers = alice.json(&["peers", "--json"]);
    let bob_entry = peers["peers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["memberPubkey"] == bob.entry().member_pubkey.as_str())
        .expect("bob in alice's peer list")
        .clone();
    assert_eq!(bob_entry["displayName"], shown);
    let groups: Vec<&str> = bob_entry["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap())
        .collect();
    assert_eq!(groups, ["ok-group"], "{bob_entry}");

    // In an invite claim: the member name everyone sees from then on.
    let carol = Person::new("carol");
    let (_, url) = invite(&alice, &[]);
    carol.json(&["join", &url, "--name", &hostile, "--json"]);
    let members = alice.json(&["members", "--json"]);
    let names: Vec<&str> = members["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["displayName"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 3, "{members}");
    for name in names {
        clean(name);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn file_names_cannot_climb_out_of_the_store_or_the_download_dir() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    let mesh_id = alice.entry().mesh_id;
    let client = alice.client().await;
    let names = [
        "../../etc/passwd",
        "/etc/passwd",
        "..",
        "a/../../../b",
        "..\\..\\windows\\win.ini",
        "%2e%2e%2f%2e%2e%2fpasswd",
        "./.bashrc",
    ];
    let before = files_under(broker.data_dir());
    let mut uploaded = Vec::new();
    for name in names {
        let token = client.file_token().await.expect("upload token").token;
        let resp = claudemesh::client::http::request(
            "POST",
            &format!("{}/upload", broker.http_url()),
            &[
                ("authorization", format!("Bearer {token}")),
                ("x-mesh-id", mesh_id.clone()),
                ("x-file-name", name.to_string()),
            ],
            Some(format!("planted by {name}").into_bytes()),
        )
        .await
        .expect("upload");
        assert_eq!(
            resp.status,
            200,
            "{name}: {}",
            String::from_utf8_lossy(&resp.body)
        );
        let id = resp.json()["fileId"].as_str().expect("fileId").to_string();
        assert!(ids::is_id(&id));
        uploaded.push((name, id));
    }
    // The store keeps bytes under files/mesh/<mesh>/<file id>, whatever the name said.
    let store = broker.data_dir().join("files").join("mesh").join(&mesh_id);
    let mut new: Vec<PathBuf> = files_under(broker.data_dir())
        .into_iter()
        .filter(|p| !before.contains(p) && !p.starts_with(broker.data_dir().join("mesh.redb")))
        .filter(|p| p.starts_with(broker.data_dir().join("files")))
        .collect();
    new.sort();
    let mut expected: Vec<PathBuf> = uploaded.iter().map(|(_, id)| store.join(id)).collect();
    expected.sort();
    assert_eq!(new, expected);
    let outside = broker.data_dir().parent().expect("parent");
    for planted in ["etc/passwd", "b", "windows/win.ini", ".bashrc"] {
        assert!(
            !outside.join(planted).exists(),
            "{planted} next to the data dir"
        );
        assert!(
            !broker.data_dir().join(planted).exists(),
            "{planted} in the data dir"
        );
    }

    // A download saves inside --out, under the last harmless part of the name.
    let dir = tempfile::tempdir().expect("temp dir");
    let downloads = dir.path().join("downloads");
    for (i, (name, id)) in uploaded.iter().enumerate() {
        // One directory each: several names come down to `passwd`.
        let out = downloads.join(i.to_string());
        std::fs::create_dir_all(&out).expect("out dir");
        let got = bob.json(&["file", "get", id, "--out", out.to_str().unwrap(), "--json"]);
        let path = PathBuf::from(got["path"].as_str().expect("path"));
        assert_eq!(
            path.parent(),
            Some(out.as_path()),
            "{name} saved as {}",
            path.display()
        );
        assert_eq!(
            std::fs::read_to_string(&path).expect("saved file"),
            format!("planted by {name}")
        );
    }
    let saved = files_under(dir.path());
    assert_eq!(saved.len(), names.len(), "{saved:?}");
    assert!(saved.iter().all(|p| p.starts_with(&downloads)), "{saved:?}");
    client.close().await;
}
