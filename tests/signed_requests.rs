//! Member-signed HTTP requests (PROTOCOL.md §8) and the status hook under attack (issue 10,
//! item 9): a captured request cannot be sent again, a signature for one mesh is no good in
//! another, and a flood of hook reports with huge distinct `cwd`s keeps the broker's memory
//! bounded while an honest hook still works.

use crate::common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::*;
use serde_json::json;

use claudemesh::client::http::{self, HttpResponse};
use claudemesh::identity::{MeshEntry, sign_request};

const HOOK: &str = "/hook/set-status";

/// Signs `body` for `entry`'s mesh as a hook report; returns the headers.
fn sign_hook(entry: &MeshEntry, body: &[u8]) -> Vec<(&'static str, String)> {
    let keys = entry.member_keys().expect("member key");
    sign_request(&keys, &entry.mesh_id, "POST", HOOK, body).to_vec()
}

async fn post_hook(
    broker: &BrokerProc,
    headers: &[(&'static str, String)],
    body: &[u8],
) -> HttpResponse {
    http::request(
        "POST",
        &format!("{}{HOOK}", broker.http_url()),
        headers,
        Some(body.to_vec()),
    )
    .await
    .expect("reach the broker")
}

fn header_set(headers: &mut [(&'static str, String)], name: &str, value: &str) {
    for h in headers.iter_mut() {
        if h.0 == name {
            h.1 = value.to_string();
        }
    }
}

/// The resident memory of a process, in bytes (`VmRSS`).
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS");
    kb * 1024
}

/// Runs `claudemesh hook STATUS` as `person`, for the session `session_id`.
fn run_hook(person: &Person, status: &str, session_id: &str) {
    let mut child = Command::new(BIN)
        .args(["hook", status])
        .env("CLAUDEMESH_CONFIG_DIR", person.config_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run claudemesh hook");
    let input = json!({"session_id": session_id, "cwd": "/tmp/claudemesh-test"}).to_string();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success(), "a hook always exits 0");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_captured_signed_request_cannot_be_sent_again() {
    let broker = BrokerProc::start(&[]);
    let mut bystanders = Bystanders::start(&broker).await;
    let (_alice, bob) = alice_and_bob(&broker);
    let entry = bob.entry();
    let body = json!({"cwd": "/tmp/bob", "status": "working"})
        .to_string()
        .into_bytes();
    let headers = sign_hook(&entry, &body);
    let first = post_hook(&broker, &headers, &body).await;
    assert_eq!(first.status, 200, "{:?}", first.json());

    // The attack: the same request, byte for byte, within the timestamp window.
    let again = post_hook(&broker, &headers, &body).await;
    assert_eq!(again.status, 401, "{:?}", again.json());
    assert_eq!(again.json()["error"], "unauthorized");
    let message = again.json()["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(message.contains("already used (replay)"), "{message}");
    bystanders.exchange(3).await;

    // A freshly signed request is fine.
    let fresh = post_hook(&broker, &sign_hook(&entry, &body), &body).await;
    assert_eq!(fresh.status, 200, "{:?}", fresh.json());
    assert!(metric(&broker, "claudemesh_signed_requests_remembered").await >= Some(2.0));
    bystanders.exchange(3).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_signature_for_one_mesh_is_refused_in_another() {
    let broker = BrokerProc::start(&[]);
    let mut bystanders = Bystanders::start(&broker).await;
    let (_alice, bob) = alice_and_bob(&broker);
    let team = bob.entry();
    // Bob's key is a member of the bystanders' mesh too (he claimed an invite with it).
    let (code, _) = invite(&bystanders.carol, &[]);
    let x25519 = claudemesh::crypto::BoxKeyPair::generate();
    let claimed = http::claim_invite(
        &broker.http_url(),
        &code,
        &x25519.public,
        "bob",
        &team.member_keys().expect("bob's member keys"),
    )
    .await
    .expect("claim");
    assert!(claimed.is_success(), "{:?}", claimed.json());
    let other_mesh = bystanders.carol.entry().mesh_id;

    // The attack: a request bob signed for "team", sent with the other mesh's X-Mesh-Id.
    let body = json!({"cwd": "/tmp/bob", "status": "dnd"})
        .to_string()
        .into_bytes();
    let mut headers = sign_hook(&team, &body);
    header_set(&mut headers, "x-mesh-id", &other_mesh);
    let swapped = post_hook(&broker, &headers, &body).await;
    assert_eq!(swapped.status, 401, "{:?}", swapped.json());
    let message = swapped.json()["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(message.contains("signature does not verify"), "{message}");
    // Signed for the other mesh, the same report is accepted there.
    let mut for_other = team.clone();
    for_other.mesh_id = other_mesh.clone();
    let ok = post_hook(&broker, &sign_hook(&for_other, &body), &body).await;
    assert_eq!(ok.status, 200, "{:?}", ok.json());
    bystanders.exchange(3).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flood_of_huge_hook_keys_keeps_memory_bounded() {
    let broker = BrokerProc::start(&[]);
    let mut bystanders = Bystanders::start(&broker).await;
    let (alice, bob) = alice_and_bob(&broker);
    bystanders.exchange(3).await;
    let before = rss(broker.pid());

    // The attack: two members report statuses for 5 000 made-up sessions, each with a
    // distinct 60 kB cwd (300 MB of keys, were they kept).
    let mut flood = Vec::new();
    for (who, entry) in [("alice", alice.entry()), ("bob", bob.entry())] {
        let port = broker.port;
        flood.push(tokio::spawn(async move {
            let url = format!("http://127.0.0.1:{port}{HOOK}");
            let pad = "d".repeat(60_000);
            let mut refused = 0;
            for i in 0..2_500 {
                let body = json!({"cwd": format!("/{who}/{i}/{pad}"), "status": "working"})
                    .to_string()
                    .into_bytes();
                let headers = sign_hook(&entry, &body);
                let r = http::request("POST", &url, &headers, Some(body))
                    .await
                    .expect("reach the broker");
                if r.status != 200 {
                    refused += 1;
                }
            }
            refused
        }));
    }
    for f in flood {
        assert_eq!(
            f.await.unwrap(),
            0,
            "flood requests are well-formed and allowed"
        );
    }
    bystanders.exchange(3).await;

    let keys = metric(&broker, "claudemesh_hook_limiter_keys")
        .await
        .expect("the hook limiter's size");
    assert!(keys <= 4096.0, "the hook limiter holds {keys} keys");
    let grown = rss(broker.pid()).saturating_sub(before);
    assert!(
        grown < 64 << 20,
        "the broker grew by {} MB during the flood",
        grown >> 20
    );

    // An honest hook still works: carol's session turns "working" for dave.
    run_hook(&bystanders.carol, "working", "test-carol");
    let dave = &bystanders.dave_client;
    eventually("carol's hook to set working", || async {
        dave.list_peers(None)
            .await
            .unwrap_or_default()
            .iter()
            .any(|p| p.display_name == "carol" && p.status == "working")
    })
    .await;
    run_hook(&bystanders.carol, "idle", "test-carol");
    bystanders.exchange(3).await;
}
