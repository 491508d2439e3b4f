//! Inbound webhooks (issue 17 item 2): a POST to a webhook's URL on the real broker becomes a
//! message only with a valid HMAC-SHA256 signature under the secret shown once at creation;
//! wrong signatures, replays and oversize bodies are refused with 401, 409 and 413.

use crate::common;

use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use claudemesh::client::MeshClient;
use claudemesh::client::http::{HttpResponse, request};
use common::mcp::{call, mcp_process};
use common::secrets::assert_broker_never_saw;
use common::sees::next_message;
use common::*;

fn hmac_hex(secret: &str, data: &[u8]) -> String {
    let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).unwrap();
    m.update(data);
    hex::encode(m.finalize().into_bytes())
}

async fn post(url: &str, headers: &[(&str, String)], body: &[u8]) -> HttpResponse {
    request("POST", url, headers, Some(body.to_vec()))
        .await
        .expect("the broker answers")
}

/// A POST signed the GitHub way.
async fn github_post(url: &str, secret: &str, event: &str, body: &[u8]) -> HttpResponse {
    let sig = format!("sha256={}", hmac_hex(secret, body));
    post(
        url,
        &[
            ("x-hub-signature-256", sig),
            ("x-github-event", event.to_string()),
        ],
        body,
    )
    .await
}

/// A POST signed with a timestamp (`X-Claudemesh-Signature`), at `t` seconds.
async fn timed_post(url: &str, secret: &str, t: i64, body: &[u8]) -> HttpResponse {
    let signed = [format!("{t}.").as_bytes(), body].concat();
    let sig = format!("t={t},v1={}", hmac_hex(secret, &signed));
    post(url, &[("x-claudemesh-signature", sig)], body).await
}

/// The next webhook message `client` receives (acknowledged), as its decoded JSON text.
async fn next_delivery(client: &MeshClient) -> (Value, Option<String>) {
    let push = next_message(client, Duration::from_secs(30))
        .await
        .expect("a webhook message");
    assert_eq!(push.subtype.as_deref(), Some("webhook"), "{push:?}");
    client.ack(&push.message_id).unwrap();
    let text = client.decrypt(&push).expect("a readable body");
    (
        serde_json::from_str(&text).expect("the message is JSON"),
        push.sender_name,
    )
}

async fn nothing_more(client: &MeshClient) {
    assert!(
        next_message(client, Duration::from_millis(500))
            .await
            .is_none(),
        "a refused delivery became a message"
    );
}

fn now_s() -> i64 {
    claudemesh::protocol::time::now_ms() / 1000
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_github_push_becomes_one_message_and_bad_deliveries_are_refused() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    let bob_live = bob.client().await;

    let created = alice.json(&["webhook", "create", "github", "--to", "bob", "--json"]);
    let url = created["url"].as_str().unwrap().to_string();
    let secret = created["secret"].as_str().unwrap().to_string();
    assert_eq!(created["name"], "github");
    assert!(url.contains("/hook/"), "{url}");
    assert!(secret.len() >= 32, "{secret}");

    // A valid GitHub-style delivery: one message, normalised to a line.
    let push = json!({
        "ref": "refs/heads/main",
        "repository": {"full_name": "acme/api"},
        "pusher": {"name": "carol"},
        "commits": [{"id": "a1"}],
        "head_commit": {"message": "Ship the watch feature\n\nDetails"},
    });
    let body = push.to_string().into_bytes();
    let r = github_post(&url, &secret, "push", &body).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let (m, from) = next_delivery(&bob_live).await;
    assert_eq!(m["webhook"], "github");
    assert_eq!(m["event"], "push");
    assert_eq!(
        m["summary"],
        "carol pushed 1 commit to acme/api main: Ship the watch feature"
    );
    assert_eq!(m["payload"], push);
    assert_eq!(from.as_deref(), Some("webhook:github"));

    // A wrong signature (another secret, or the body altered) is 401.
    let r = github_post(&url, "not-the-secret-at-all-000", "push", &body).await;
    assert_eq!(r.status, 401);
    let altered = br#"{"ref":"refs/heads/evil"}"#;
    let sig = format!("sha256={}", hmac_hex(&secret, &body));
    let r = post(&url, &[("x-hub-signature-256", sig)], altered).await;
    assert_eq!(r.status, 401);
    let r = post(&url, &[], &body).await;
    assert_eq!(r.status, 401, "an unsigned delivery");
    nothing_more(&bob_live).await;

    // The timestamped form: accepted once; the same request again is a replay (409); a
    // timestamp outside the five minutes is 401.
    let body = br#"{"alert":"disk 91%"}"#;
    let t = now_s();
    assert_eq!(timed_post(&url, &secret, t, body).await.status, 200);
    let (m, _) = next_delivery(&bob_live).await;
    assert_eq!(m["payload"]["alert"], "disk 91%");
    assert_eq!(timed_post(&url, &secret, t, body).await.status, 409);
    assert_eq!(
        timed_post(&url, &secret, t - 3600, body).await.status,
        401,
        "an old timestamp"
    );
    assert_eq!(
        timed_post(&url, "not-the-secret-at-all-000", t, br#"{"forged":1}"#)
            .await
            .status,
        401,
        "a timestamped delivery under another secret"
    );
    // A replayed GitHub delivery is refused too.
    let gh = br#"{"zen":"Keep it logically awesome."}"#;
    assert_eq!(github_post(&url, &secret, "ping", gh).await.status, 200);
    let _ = next_delivery(&bob_live).await;
    assert_eq!(github_post(&url, &secret, "ping", gh).await.status, 409);

    // An oversize body is 413, signed or not.
    let big = vec![b'x'; 300 * 1024];
    assert_eq!(github_post(&url, &secret, "push", &big).await.status, 413);
    nothing_more(&bob_live).await;

    // The secret is never stored or logged in clear, nor listed.
    let listed = alice.json(&["webhook", "list", "--json"]);
    assert_eq!(listed["webhooks"][0]["name"], "github");
    assert_eq!(listed["webhooks"][0]["url"], url.as_str());
    assert!(!listed.to_string().contains(&secret));
    assert_broker_never_saw(&broker, secret.as_bytes());

    // Deleted: its URL is gone.
    alice.ok(&["webhook", "delete", "github"]);
    let r = github_post(&url, &secret, "push", br#"{"a":1}"#).await;
    assert_eq!(r.status, 404);
}

#[test]
fn making_a_webhook_needs_the_webhooks_capability_and_a_free_name() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    let err = bob.refused(&["webhook", "create", "ci"]);
    assert!(err.contains("\"webhooks\""), "{err}");
    alice.ok(&["webhook", "create", "ci"]);
    let err = alice.refused(&["webhook", "create", "ci"]);
    assert!(err.contains("already has a webhook"), "{err}");
    let err = alice.refused(&["webhook", "create", "bad name"]);
    assert!(err.contains("webhook name"), "{err}");
    let err = bob.refused(&["webhook", "delete", "ci"]);
    assert!(err.contains("\"webhooks\""), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mcp_tools_make_list_and_delete_webhooks_and_watches() {
    use rmcp::ServiceExt;
    let broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    let a = ().serve(mcp_process(&alice)).await.expect("alice's MCP");
    eventually("alice's MCP session to answer", || async {
        call(&a, "list_webhooks", json!({})).await.0
    })
    .await;
    let secret = "an-mcp-chosen-secret-0123456789";
    let (ok, text) = call(
        &a,
        "create_webhook",
        json!({"name": "deploys", "target": "bob", "secret": secret}),
    )
    .await;
    assert!(ok, "{text}");
    let created: Value = serde_json::from_str(&text).unwrap();
    let url = created["url"].as_str().unwrap().to_string();
    assert_eq!(created["secret"], secret);
    let (ok, text) = call(&a, "list_webhooks", json!({})).await;
    assert!(
        ok && text.contains("deploys") && !text.contains(secret),
        "{text}"
    );

    let body = br#"{"deploy":"prod","state":"done"}"#;
    assert_eq!(timed_post(&url, secret, now_s(), body).await.status, 200);
    let got = common::sees::inbox(&bob, &[]);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["subtype"], "webhook");
    let m: Value = serde_json::from_str(got[0]["text"].as_str().unwrap()).unwrap();
    assert_eq!(m["payload"]["state"], "done");

    // A private watch target is refused through MCP as well; nothing is stored.
    let (ok, text) = call(
        &a,
        "mesh_watch",
        json!({"url": "http://169.254.169.254/latest/meta-data/", "interval": 5}),
    )
    .await;
    assert!(!ok && text.contains("link-local"), "{text}");
    let (ok, text) = call(&a, "mesh_watches", json!({})).await;
    assert!(ok && text.contains("No watches"), "{text}");

    let (ok, text) = call(&a, "delete_webhook", json!({"name": "deploys"})).await;
    assert!(ok, "{text}");
    assert_eq!(timed_post(&url, secret, now_s(), b"{}").await.status, 404);
    a.cancel().await.ok();
}

/// A delivery is news for the mesh, not its creator's words: to everyone (the default) it
/// reaches the member who made the webhook too, as a broadcast of their own would not.
#[tokio::test(flavor = "multi_thread")]
async fn a_webhook_to_everyone_tells_its_creator_too() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    let created = alice.json(&["webhook", "create", "alerts", "--json"]);
    let url = created["url"].as_str().unwrap().to_string();
    let secret = created["secret"].as_str().unwrap().to_string();
    let body = br#"{"alert":"disk 91%"}"#;
    assert_eq!(timed_post(&url, &secret, now_s(), body).await.status, 200);
    for who in [&alice, &bob] {
        let got = common::sees::inbox(who, &[]);
        assert_eq!(got.len(), 1, "{}: {got:?}", who.name);
        assert_eq!(got[0]["subtype"], "webhook");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_signed_deliveries_is_rate_limited() {
    let broker = BrokerProc::start(&[]);
    let (alice, _bob) = alice_and_bob(&broker);
    let created = alice.json(&["webhook", "create", "noisy", "--json"]);
    let url = created["url"].as_str().unwrap().to_string();
    let secret = created["secret"].as_str().unwrap().to_string();
    // The burst is 60; 100 deliveries sent back to back cannot all fit.
    let mut statuses = Vec::new();
    for n in 0..100 {
        let body = format!("{{\"n\":{n}}}");
        statuses.push(
            timed_post(&url, &secret, now_s(), body.as_bytes())
                .await
                .status,
        );
    }
    assert!(statuses.contains(&200), "{statuses:?}");
    assert!(statuses.contains(&429), "{statuses:?}");
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 429),
        "{statuses:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_members_webhooks_stop_accepting_deliveries() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    alice.ok(&["perms", "set", "bob", "+webhooks"]);
    let created = bob.json(&["webhook", "create", "bobs", "--json"]);
    let url = created["url"].as_str().unwrap().to_string();
    let secret = created["secret"].as_str().unwrap().to_string();
    assert_eq!(
        timed_post(&url, &secret, now_s(), b"{\"a\":1}")
            .await
            .status,
        200
    );
    alice.ok(&["revoke", "bob"]);
    assert_eq!(
        timed_post(&url, &secret, now_s(), b"{\"a\":2}")
            .await
            .status,
        404
    );
    let listed = alice.json(&["webhook", "list", "--json"]);
    assert_eq!(listed["webhooks"].as_array().unwrap().len(), 0, "{listed}");
}

/// A webhook posts as the member who made it: not once that member may not send.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_of_a_member_who_lost_send_accepts_nothing() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    alice.ok(&["perms", "set", "bob", "+webhooks"]);
    let created = bob.json(&["webhook", "create", "bobs", "--to", "alice", "--json"]);
    let url = created["url"].as_str().unwrap().to_string();
    let secret = created["secret"].as_str().unwrap().to_string();
    alice.ok(&["perms", "set", "bob", "-send"]);
    let r = timed_post(&url, &secret, now_s(), b"{\"muted\":true}").await;
    let answer: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(r.status, 403, "{answer}");
    assert!(
        answer["message"]
            .as_str()
            .is_some_and(|m| m.contains("\"send\" capability")),
        "{answer}"
    );
    assert!(!alice.ok(&["inbox", "--json"]).contains("muted"));
    alice.ok(&["perms", "set", "bob", "=send"]);
    let r = timed_post(&url, &secret, now_s(), b"{\"heard\":true}").await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_to_an_offline_member_stop_at_its_queue_cap() {
    // The cap a member's own `send` is held to holds for messages the broker makes too.
    let broker = BrokerProc::start(&["--max-queued-per-recipient", "2"]);
    let (alice, _bob) = alice_and_bob(&broker);
    let created = alice.json(&["webhook", "create", "ci", "--to", "bob", "--json"]);
    let url = created["url"].as_str().unwrap().to_string();
    let secret = created["secret"].as_str().unwrap().to_string();
    let mut answers = Vec::new();
    for n in 0..3 {
        let body = format!("{{\"n\":{n}}}");
        let r = timed_post(&url, &secret, now_s(), body.as_bytes()).await;
        assert_eq!(r.status, 200);
        answers.push(r.json());
    }
    assert_eq!(answers[0]["queued"], true, "{answers:?}");
    assert_eq!(answers[1]["queued"], true, "{answers:?}");
    assert_eq!(answers[2]["queued"], false, "{answers:?}");
    assert!(
        answers[2]["message"]
            .as_str()
            .is_some_and(|m| m.contains("--max-queued-per-recipient")),
        "{answers:?}"
    );
}
