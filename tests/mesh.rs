//! Meshes end to end: create, invite, join, list, leave, members, restart, shutdown, the admin
//! token, the HTTP endpoints and usage errors — all against a real broker process.

use crate::common;

use common::*;
use serde_json::Value;

/// Members by display name → the `online` flag, from `members --json`.
fn online_by_name(members: &Value) -> Vec<(String, bool)> {
    let mut out: Vec<(String, bool)> = members["members"]
        .as_array()
        .expect("members array")
        .iter()
        .map(|m| {
            (
                m["displayName"].as_str().unwrap().to_string(),
                m["online"].as_bool().unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn create_invite_join_and_members_show_who_is_online() {
    let broker = BrokerProc::start(&[]);
    let alice = Person::new("alice");
    let bob = Person::new("bob");
    let mesh_id = create_mesh(&broker, &alice, "team");
    let (code, url) = invite(&alice, &[]);
    // The link carries the mesh root key after `#`, which no HTTP client sends to a server
    // (and, after it, the owner key's fingerprint).
    assert!(
        url.starts_with(&format!(
            "{}/i/{code}#{}.",
            broker.http_url(),
            alice.entry().root_key
        )),
        "{url}"
    );
    let joined = join(&bob, &url);
    assert_eq!(joined["meshId"], mesh_id.as_str());
    assert_eq!(joined["slug"], "team");
    assert!(!joined["memberId"].as_str().unwrap().is_empty());

    // bob got the same mesh root key, from the link; only alice holds the owner key.
    let (a, b) = (alice.entry(), bob.entry());
    assert_eq!(a.root_key, b.root_key);
    assert_eq!(a.owner_pubkey, b.owner_pubkey);
    assert!(a.owner_secret_key.is_some() && b.owner_secret_key.is_none());
    assert_eq!((a.role.as_str(), b.role.as_str()), ("owner", "member"));

    // Nobody is online: each CLI's own connection does not count.
    let members = alice.json(&["members", "--json"]);
    assert_eq!(
        online_by_name(&members),
        [("alice".to_string(), false), ("bob".to_string(), false)]
    );
    let ids: Vec<&str> = members["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["memberId"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&joined["memberId"].as_str().unwrap()));

    // While bob holds a live connection, alice sees him online (and herself not).
    let bob_client = bob.client().await;
    let members = alice.json(&["members", "--json"]);
    assert_eq!(
        online_by_name(&members),
        [("alice".to_string(), false), ("bob".to_string(), true)]
    );
    let text = alice.run(&["members"]);
    assert_eq!(text.code, 0, "{}", text.stderr);
    let bob_line = text
        .stdout
        .lines()
        .find(|l| l.starts_with("bob"))
        .expect("bob listed");
    assert!(bob_line.contains("yes"), "bob online in: {bob_line}");
    let alice_line = text
        .stdout
        .lines()
        .find(|l| l.starts_with("alice (you)"))
        .expect("alice listed as you");
    assert!(
        alice_line.contains("no"),
        "alice not online in: {alice_line}"
    );
    // bob's own view: his live client counts, his CLI connection does not.
    assert_eq!(
        online_by_name(&bob.json(&["members", "--json"])),
        [("alice".to_string(), false), ("bob".to_string(), true)]
    );
    bob_client.close().await;
}

#[test]
fn list_leave_permissions_and_non_owner_invite() {
    let broker = BrokerProc::start(&[]);
    let alice = Person::new("alice");
    let bob = Person::new("bob");
    let mesh_id = create_mesh(&broker, &alice, "Side Project");

    let list = alice.json(&["list", "--json"]);
    let meshes = list["meshes"].as_array().unwrap();
    assert_eq!(meshes.len(), 1);
    assert_eq!(meshes[0]["meshId"], mesh_id.as_str());
    assert_eq!(meshes[0]["slug"], "side-project");
    assert_eq!(meshes[0]["name"], "Side Project");
    assert_eq!(meshes[0]["role"], "owner");
    assert_eq!(meshes[0]["displayName"], "alice");
    assert_eq!(meshes[0]["brokerUrl"], broker.ws_url().as_str());

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&alice.config_dir()), 0o700, "config dir mode");
        assert_eq!(
            mode(&alice.config_dir().join("config.json")),
            0o600,
            "config.json mode"
        );
    }

    let (_, url) = invite(&alice, &[]);
    join(&bob, &url);
    let list = bob.json(&["list", "--json"]);
    assert_eq!(list["meshes"][0]["role"], "member");
    assert_eq!(list["meshes"][0]["meshId"], mesh_id.as_str());

    // A member lacks the invite capability, and the refusal names it.
    let out = bob.run(&["invite"]);
    assert_eq!(out.code, 1, "non-owner invite: {out:?}");
    assert!(
        out.stderr.contains("lacks the \"invite\" capability"),
        "stderr says why: {}",
        out.stderr
    );
    assert!(out.stdout.is_empty(), "nothing on stdout: {}", out.stdout);

    // leave forgets the mesh and its keys.
    let out = bob.run(&["leave", "side-project"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(bob.config().meshes.is_empty());
    let list = bob.json(&["list", "--json"]);
    assert_eq!(list["meshes"].as_array().unwrap().len(), 0);
    let config_text = std::fs::read_to_string(bob.config_dir().join("config.json")).unwrap();
    assert!(!config_text.contains(&mesh_id), "no trace of the mesh left");
    let out = bob.run(&["members"]);
    assert_eq!(out.code, 1, "members after leave: {out:?}");

    // Leaving a mesh one has not joined fails and names the joined ones.
    let out = alice.run(&["leave", "nope"]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("side-project"), "{}", out.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn meshes_members_and_invites_survive_a_restart() {
    let mut broker = BrokerProc::start(&[]);
    let alice = Person::new("alice");
    let bob = Person::new("bob");
    let carol = Person::new("carol");
    let mesh_id = create_mesh(&broker, &alice, "team");
    let (_, url) = invite(&alice, &[]);
    join(&bob, &url);
    let (spare_code, spare_url) = invite(&alice, &["--uses", "2"]);
    let port = broker.port;

    let status = broker.terminate();
    assert_eq!(status.code(), Some(0), "exit status on SIGTERM");
    broker.restart();
    assert_eq!(broker.port, port, "restarted on the same port");

    let members = alice.json(&["members", "--json"]);
    assert_eq!(
        online_by_name(&members),
        [("alice".to_string(), false), ("bob".to_string(), false)]
    );

    let landing = http_get(&format!("{}/i/{spare_code}?format=json", broker.http_url())).await;
    assert_eq!(landing.status, 200);
    let landing = landing.json();
    assert_eq!(landing["mesh_id"], mesh_id.as_str());
    assert_eq!(landing["status"], "valid");
    assert_eq!(landing["uses_left"], 2);

    // The invite made before the restart still works after it, and keeps its use count.
    let joined = join(&carol, &spare_url);
    assert_eq!(joined["meshId"], mesh_id.as_str());
    let landing = http_get(&format!("{}/i/{spare_code}?format=json", broker.http_url())).await;
    assert_eq!(landing.json()["uses_left"], 1);
    let names: Vec<String> = online_by_name(&carol.json(&["members", "--json"]))
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(names, ["alice", "bob", "carol"]);

    // And the owner can still make invites (the owner key is hers, not the broker's).
    invite(&alice, &[]);
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_closes_clients_with_1001_and_exits_0() {
    let mut broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    let (mut raw, _) = ws_hello(&broker, &member_hello(&bob.entry())).await;
    let client = alice.client().await;
    let mut link = client.link();

    broker.sigterm();
    let (code, reason) = ws_recv_close(&mut raw).await;
    assert_eq!(code, 1001, "close code on shutdown (reason {reason:?})");
    // The library client notices too, and does not pretend to be connected.
    tokio::time::timeout(WAIT, link.wait_for(|l| *l != claudemesh::client::Link::Up))
        .await
        .expect("client noticed the shutdown")
        .expect("link watch");
    let status = broker.wait_exit();
    assert_eq!(status.code(), Some(0), "exit status on SIGTERM");
    broker.assert_stopped_cleanly();
    client.close().await;
}

/// A broker whose output is not a terminal (a service's journal, a log file) names where its
/// new admin token is saved and never prints the token itself.
#[test]
fn the_admin_token_is_not_printed_into_a_log() {
    let broker = BrokerProc::start(&[]);
    let deadline = std::time::Instant::now() + WAIT;
    let said = || broker.stdout_lines().join("\n");
    while !said().contains("admin token") && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let out = said();
    assert!(out.contains("admin.token"), "where it is saved: {out}");
    assert!(
        !out.contains(&broker.admin_token()),
        "the token in the output: {out}"
    );
}

#[test]
fn create_needs_the_admin_token_unless_open() {
    let broker = BrokerProc::start(&[]);
    let alice = Person::new("alice");
    let url = broker.ws_url();

    let out = alice.run(&["create", "team", "--broker", &url]);
    assert_eq!(out.code, 1, "create without token: {out:?}");
    assert!(out.stderr.contains("admin token"), "stderr: {}", out.stderr);
    assert!(alice.config().meshes.is_empty(), "nothing saved on failure");

    let out = alice.run(&["create", "team", "--broker", &url, "--admin-token", "wrong"]);
    assert_eq!(out.code, 1, "create with a wrong token: {out:?}");
    assert!(out.stderr.contains("admin token"), "stderr: {}", out.stderr);

    let token_file = broker.data_dir().join("admin.token");
    let v = alice.json(&[
        "create",
        "team",
        "--broker",
        &url,
        "--admin-token-file",
        token_file.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(v["slug"], "team");
    assert_eq!(v["brokerUrl"], url.as_str());
    assert_eq!(alice.entry().mesh_id, v["meshId"].as_str().unwrap());

    let out = alice.run(&[
        "create",
        "other",
        "--broker",
        &url,
        "--admin-token-file",
        "/nonexistent/admin.token",
    ]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("/nonexistent/admin.token"),
        "{}",
        out.stderr
    );

    // An --open broker lets anyone create.
    let open = BrokerProc::start(&["--open"]);
    let carol = Person::new("carol");
    let v = carol.json(&["create", "free", "--broker", &open.ws_url(), "--json"]);
    assert_eq!(v["slug"], "free");
    assert_eq!(carol.entry().display_name, "carol");
    // The same name again gets the next free suffix, in order.
    for (name, slug) in [("dave", "free-2"), ("erin", "free-3"), ("frank", "free-4")] {
        let v = Person::new(name).json(&["create", "Free!", "--broker", &open.ws_url(), "--json"]);
        assert_eq!(v["slug"], slug);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn http_endpoints() {
    let broker = BrokerProc::start(&[]);
    let base = broker.http_url();

    let health = http_get(&format!("{base}/health")).await;
    assert_eq!(health.status, 200);
    let health = health.json();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["version"], env!("CARGO_PKG_VERSION"));
    assert!(health["uptime"].is_u64());

    assert_eq!(http_get(&format!("{base}/health/ready")).await.status, 200);

    let alice = Person::new("alice");
    create_mesh(&broker, &alice, "Team <b>");
    let (code, _) = invite(&alice, &["--role", "admin"]);

    let metrics = http_get(&format!("{base}/metrics")).await;
    assert_eq!(metrics.status, 200);
    let text = String::from_utf8_lossy(&metrics.body);
    assert!(text.contains("claudemesh_connections"), "{text}");
    assert!(text.contains("claudemesh_invite_claims_total"), "{text}");
    // Creating the mesh and the invite committed: the commit-duration histogram counts them,
    // its buckets cumulative up to +Inf, which equals the count.
    let value = |line: &str| line.rsplit(' ').next().unwrap().parse::<f64>().unwrap();
    let buckets: Vec<f64> = text
        .lines()
        .filter(|l| l.starts_with("claudemesh_store_commit_seconds_bucket{le="))
        .map(value)
        .collect();
    let count = text
        .lines()
        .find(|l| l.starts_with("claudemesh_store_commit_seconds_count "))
        .map(value)
        .expect("a commit-duration count");
    assert_eq!(buckets.len(), 11, "{text}");
    assert!(count >= 2.0, "{text}");
    assert!(buckets.windows(2).all(|w| w[0] <= w[1]), "{text}");
    assert_eq!(buckets.last(), Some(&count), "{text}");
    assert!(
        text.contains("claudemesh_store_commit_seconds_bucket{le=\"+Inf\"}"),
        "{text}"
    );

    // The landing page: HTML for people (escaped), JSON for clients; never a secret.
    let html = http_get(&format!("{base}/i/{code}")).await;
    assert_eq!(html.status, 200);
    let html = String::from_utf8_lossy(&html.body).into_owned();
    assert!(html.to_lowercase().starts_with("<!doctype html"), "{html}");
    assert!(
        html.contains("Team &lt;b&gt;") && !html.contains("Team <b>"),
        "{html}"
    );
    assert!(html.contains("alice") && html.contains("admin"), "{html}");
    assert!(
        html.contains("claudemesh join") && html.contains(&format!("{base}/i/{code}")),
        "{html}"
    );

    let json = http_get(&format!("{base}/i/{code}?format=json")).await;
    assert_eq!(json.status, 200);
    let raw = String::from_utf8_lossy(&json.body).into_owned();
    let json = json.json();
    let entry = alice.entry();
    assert_eq!(json["mesh_name"], "Team <b>");
    assert_eq!(json["inviter"], "alice");
    assert_eq!(json["role"], "admin");
    let expires = json["expires_at"].as_i64().expect("expires_at");
    let week = claudemesh::protocol::time::now_ms() / 1000 + 7 * 24 * 3600;
    assert!(
        (week - 60..=week + 60).contains(&expires),
        "expires in 7 days: {expires}"
    );
    for secret in [
        entry.root_key.as_str(),
        entry.member_secret_key.as_str(),
        entry.owner_secret_key.as_deref().unwrap(),
        &entry.owner_secret_key.as_deref().unwrap()[..64],
        &entry.member_secret_key[..64],
        broker.admin_token().as_str(),
    ] {
        assert!(!raw.contains(secret), "landing JSON leaks a secret: {raw}");
    }
    assert!(
        json.get("root_key").is_none() && json.get("sealed_root_key").is_none(),
        "no root key field: {raw}"
    );

    // Unknown codes: 404 in both forms.
    assert_eq!(
        http_get(&format!("{base}/i/ZZZZZZZZ?format=json"))
            .await
            .status,
        404
    );
    assert_eq!(http_get(&format!("{base}/i/ZZZZZZZZ")).await.status, 404);
    assert_eq!(http_get(&format!("{base}/nope")).await.status, 404);
}

#[test]
fn usage_errors_exit_2() {
    let someone = Person::new("someone");
    for args in [
        &["invite", "--role", "boss"][..],
        &["frobnicate"],
        &["invite", "--uses", "0"],
        &["invite", "--expires", "soon"],
        &["join", "not-an-invite"],
        &["join", "AbC123xy"],
        &["create"],
        &["broker", "--listen", "nowhere"],
        &["members", "--bogus-flag"],
    ] {
        let out = someone.run(args);
        assert_eq!(out.code, 2, "`claudemesh {}`: {out:?}", args.join(" "));
        assert!(
            !out.stderr.trim().is_empty(),
            "`{}` explains itself",
            args.join(" ")
        );
    }
    let out = someone.run(&["invite", "--role", "boss"]);
    assert!(out.stderr.contains("--role"), "{}", out.stderr);
}

/// A join storm is bounded per connection: a session sees the first joins (the budget's burst),
/// not one push per join, and `list_peers` still lists everyone (PROTOCOL.md §4.3).
#[tokio::test]
async fn a_join_storm_sends_each_session_a_bounded_number_of_presence_pushes() {
    use claudemesh::crypto::SignKeyPair;
    let broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    let (mut bob_ws, _) = ws_hello(
        &broker,
        &session_hello(&bob.entry(), &SignKeyPair::generate()),
    )
    .await;

    // 80 sessions join as fast as they can say hello: far more than the burst (32), far
    // faster than the refill (8 per second) could cover.
    let storm = 80;
    let started = std::time::Instant::now();
    let mut sessions = Vec::new();
    for _ in 0..storm {
        let (ws, _) = ws_hello(
            &broker,
            &session_hello(&alice.entry(), &SignKeyPair::generate()),
        )
        .await;
        sessions.push(ws);
    }
    let took = started.elapsed().as_secs_f64();

    // Every session is listed, page after page; pushes that come meanwhile are counted.
    let (mut joins, mut listed, mut cursor) = (0, 0, None::<String>);
    loop {
        let mut ask = serde_json::json!({"type": "list_peers", "_reqId": "p"});
        if let Some(c) = &cursor {
            ask["cursor"] = c.as_str().into();
        }
        ws_send(&mut bob_ws, &ask).await;
        let page = loop {
            let v = ws_recv(&mut bob_ws).await;
            if v["type"] == "push" {
                assert_eq!(v["event"], "peer_joined", "{v}");
                joins += 1;
            } else {
                break v;
            }
        };
        listed += page["peers"].as_array().expect("peers").len();
        match page["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(listed, storm + 1, "every session is listed");
    let allowed = 32 + (8.0 * took).ceil() as usize + 1;
    assert!(
        joins >= 32 && joins <= allowed.min(storm),
        "{joins} peer_joined pushes for {storm} joins in {took:.2} s (burst 32, then 8/s)"
    );
    if allowed < storm {
        assert!(joins < storm, "some joins must have been dropped");
        let dropped = metric(&broker, "claudemesh_events_dropped_total")
            .await
            .unwrap_or(0.0);
        assert!(dropped >= (storm - joins) as f64, "dropped: {dropped}");
    }
}
