//! Membership as people think of it (issue 11, item 8): one copy per recipient of a send to
//! several targets, `leave` of an owned mesh asks first, `peers` shows members once and agrees
//! with `members` on who is online, `msg-status` says delivered once a push reached a window.

use crate::common;

use std::process::{Command, Stdio};
use std::time::Duration;

use claudemesh::client::{ConnectOptions, MeshClient};
use common::*;

/// alice (owner), bob and carol in mesh "team".
fn team(broker: &BrokerProc) -> (Person, Person, Person) {
    let (alice, bob) = alice_and_bob(broker);
    let carol = invited(&alice, "carol");
    (alice, bob, carol)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_name_and_a_group_she_is_in_give_her_one_copy() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob, carol) = team(&broker);
    for p in [&bob, &carol] {
        assert_eq!(p.run(&["group", "join", "backend"]).code, 0);
    }
    // bob is offline: both copies would wait in his queue.
    let sent = alice.json(&["send", "bob,@backend", "deploy at 3", "--json"]);
    let results = sent["results"].as_array().unwrap();
    assert_eq!(results.len(), 2, "{sent}");
    assert!(results.iter().all(|r| r["queued"] == true), "{sent}");
    assert_eq!(
        texts(&inbox(&bob, &[])),
        ["deploy at 3"],
        "one copy for bob"
    );
    assert_eq!(
        texts(&inbox(&carol, &[])),
        ["deploy at 3"],
        "the group still reaches carol"
    );

    // bob is live: one push, in whatever order the targets are typed; `*` too.
    let live = bob.client().await;
    for to in ["@backend,bob", "*,bob"] {
        let out = alice.run(&["send", to, "live news"]);
        assert_eq!(out.code, 0, "{}", out.stderr);
        let first = next_message(&live, WAIT).await.expect("bob gets it");
        live.ack(&first.message_id).unwrap();
        // A second copy would follow the first at once; wait ten times that long.
        assert!(
            next_message(&live, Duration::from_millis(1000))
                .await
                .is_none(),
            "{to}: bob got a second copy"
        );
        assert_eq!(texts(&inbox(&carol, &[])), ["live news"], "{to}: carol");
    }
    live.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn leaving_a_mesh_you_own_asks_and_says_the_owner_key_goes() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    // Not a terminal (the test's stdin is /dev/null) and no --yes: refused, with the reason.
    let out = alice.run(&["leave", "team"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains("owner key") && out.stderr.contains("--yes"),
        "{}",
        out.stderr
    );
    assert_eq!(alice.config().meshes.len(), 1, "nothing changed");
    assert!(alice.entry().owner_secret_key.is_some());
    // A member has no owner key to lose: no question.
    let out = bob.run(&["leave", "team"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(bob.config().meshes.is_empty());
    let out = alice.run(&["leave", "team", "--yes"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(alice.config().meshes.is_empty());
}

/// Runs `claudemesh leave team` for `person` on a pseudo-terminal (util-linux `script`),
/// typing `answer`; exit code and everything the terminal showed. `None` without `script`.
fn leave_on_a_terminal(person: &Person, answer: &str) -> Option<(i32, String)> {
    use std::io::Write;
    let command = format!("{BIN} leave team");
    let mut child = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env("CLAUDEMESH_CONFIG_DIR", person.config_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    // Kept open until the end: an early EOF could end the session before the question.
    let mut stdin = child.stdin.take().expect("script's stdin");
    stdin.write_all(format!("{answer}\n").as_bytes()).unwrap();
    let out = child.wait_with_output().expect("script runs");
    drop(stdin);
    Some((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    ))
}

#[tokio::test(flavor = "multi_thread")]
async fn leaving_a_mesh_you_own_on_a_terminal_asks_first() {
    let broker = BrokerProc::start(&[]);
    let alice = Person::new("alice");
    create_mesh(&broker, &alice, "team");
    let Some((code, shown)) = leave_on_a_terminal(&alice, "n") else {
        skip_unless_strict("util-linux `script` is not installed (it gives the CLI a terminal)");
        return;
    };
    assert_eq!(code, 1, "{shown}");
    assert!(
        shown.contains("owner key") && shown.contains("[y/N]"),
        "{shown}"
    );
    assert_eq!(alice.config().meshes.len(), 1, "answered no: still in");
    let (code, shown) = leave_on_a_terminal(&alice, "y").unwrap();
    assert_eq!(code, 0, "{shown}");
    assert!(shown.contains("left mesh"), "{shown}");
    assert!(alice.config().meshes.is_empty());
}

/// Members `members --json` shows online, by name.
fn online_members(person: &Person) -> Vec<String> {
    let mut out: Vec<String> = person.json(&["members", "--json"])["members"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["online"] == true)
        .map(|m| m["displayName"].as_str().unwrap().to_string())
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn peers_shows_each_member_once_and_agrees_with_members() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob, carol) = team(&broker);
    // bob has two windows open; carol only a CLI waiting for mail, which is no session.
    let mut windows = Vec::new();
    for session in ["bob-1", "bob-2"] {
        let options = ConnectOptions::new(bob.entry(), peer_info(session));
        windows.push(MeshClient::connect(options).await.expect("bob connects"));
    }
    let mut waiting = Command::new(BIN)
        .args(["inbox", "--wait", "60"])
        .env("CLAUDEMESH_CONFIG_DIR", carol.config_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("carol's inbox");
    eventually("bob's windows and carol's inbox to connect", || async {
        metric(&broker, "claudemesh_peers").await == Some(3.0)
    })
    .await;

    let out = alice.run(&["peers"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(
        lines[0].contains("ID") && lines[0].contains("SESSIONS"),
        "{}",
        out.stdout
    );
    let bob_lines: Vec<&&str> = lines.iter().filter(|l| l.starts_with("bob ")).collect();
    assert_eq!(bob_lines.len(), 1, "bob once:\n{}", out.stdout);
    let bob_key = bob.entry().member_pubkey;
    let cols: Vec<&str> = bob_lines[0].split_whitespace().collect();
    assert_eq!(&cols[1..4], [&bob_key[..8], "yes", "2"], "{}", bob_lines[0]);
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.trim_start().starts_with("session "))
            .count(),
        2,
        "bob's two sessions under his line:\n{}",
        out.stdout
    );
    assert!(!out.stdout.contains("carol"), "{}", out.stdout);

    let v = alice.json(&["peers", "--json"]);
    let grouped = v["members"].as_array().unwrap();
    assert_eq!(grouped.len(), 1, "{v}");
    assert_eq!(grouped[0]["memberPubkey"], bob_key.as_str());
    assert_eq!(grouped[0]["sessions"].as_array().unwrap().len(), 2);
    let mut in_peers: Vec<String> = grouped
        .iter()
        .filter(|m| m["online"] == true)
        .map(|m| m["displayName"].as_str().unwrap().to_string())
        .collect();
    in_peers.sort();
    assert_eq!(
        online_members(&alice),
        in_peers,
        "members agrees with peers"
    );
    assert_eq!(online_members(&alice), ["bob"]);

    // One window closes: still one line, one session.
    windows.pop().unwrap().close().await;
    eventually("bob's second window to go", || async {
        alice.json(&["peers", "--json"])["members"][0]["sessions"]
            .as_array()
            .is_some_and(|s| s.len() == 1)
    })
    .await;
    assert_eq!(online_members(&alice), ["bob"]);
    let _ = waiting.kill();
    let _ = waiting.wait();
}

#[tokio::test(flavor = "multi_thread")]
async fn msg_status_says_delivered_once_the_push_reached_the_window() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    let live = bob.client().await;
    let sent = alice.json(&["send", "bob", "did you get this?", "--json"]);
    let id = sent["results"][0]["messageId"]
        .as_str()
        .unwrap()
        .to_string();
    let push = next_message(&live, WAIT).await.expect("pushed to bob");
    assert_eq!(push.message_id, id);

    // In bob's window, not acknowledged yet: delivered, not acknowledged.
    let s = alice.json(&["msg-status", &id, "--json"]);
    assert_eq!(s["delivered"], true, "{s}");
    assert_eq!(s["recipients"][0]["status"], "delivered", "{s}");
    assert_eq!(s["acknowledged"], false, "{s}");
    assert!(s["deliveredAt"].is_string(), "{s}");
    let text = alice.run(&["msg-status", &id]);
    assert!(text.stdout.contains("delivered"), "{}", text.stdout);
    assert!(!text.stdout.contains("not yet"), "{}", text.stdout);

    live.ack(&id).unwrap();
    eventually("the acknowledgement to count", || async {
        alice.json(&["msg-status", &id, "--json"])["acknowledged"] == true
    })
    .await;
    let s = alice.json(&["msg-status", &id, "--json"]);
    assert_eq!(s["recipients"][0]["acknowledged"], true, "{s}");
    live.close().await;
}
