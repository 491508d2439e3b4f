//! The invite claim over HTTP (`POST /invites/<code>/claim`, PROTOCOL.md §9): every refusal with
//! its status and code, what a success returns (no root key), and the use counter under
//! concurrency. The attacks on claims are in `tests/invites.rs`.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use claudemesh::crypto::{self, BoxKeyPair, SignKeyPair};
use claudemesh::protocol::{canonical, time};
use claudemesh::store::Store;
use common::*;
use serde_json::{Value, json};

/// A well-formed claim body for a member key, signed by it for invite `code`.
fn claim_body_for(code: &str, member: &SignKeyPair, x25519: &BoxKeyPair, name: &str) -> Value {
    let x = URL_SAFE_NO_PAD.encode(x25519.public);
    let timestamp = time::now_ms();
    let signed = canonical::invite_claim(code, &x, &member.public_hex(), timestamp);
    json!({
        "recipient_x25519_pubkey": x,
        "display_name": name,
        "member_pubkey": member.public_hex(),
        "timestamp": timestamp,
        "signature": hex::encode(member.sign(signed.as_bytes())),
    })
}

fn fresh_body(code: &str, name: &str) -> Value {
    claim_body_for(
        code,
        &SignKeyPair::generate(),
        &BoxKeyPair::generate(),
        name,
    )
}

async fn claim_bytes(base: &str, code: &str, body: impl Into<Vec<u8>>) -> (u16, Value) {
    let resp = http_post(&format!("{base}/invites/{code}/claim"), body).await;
    (resp.status, resp.json())
}

async fn claim(base: &str, code: &str, body: &Value) -> (u16, Value) {
    claim_bytes(base, code, body.to_string()).await
}

/// Asserts a refusal: HTTP status and `error` code.
fn refused(answer: &(u16, Value), status: u16, code: &str) {
    assert_eq!(answer.0, status, "status for {code}: {}", answer.1);
    assert_eq!(answer.1["error"], code, "{}", answer.1);
    assert!(answer.1["message"].as_str().is_some_and(|m| !m.is_empty()));
}

/// A mesh owned by alice on a fresh broker.
fn owned_mesh(broker: &BrokerProc) -> (Person, String) {
    let alice = Person::new("alice");
    let mesh_id = create_mesh(broker, &alice, "team");
    (alice, mesh_id)
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_claims_are_400_and_consume_nothing() {
    let broker = BrokerProc::start(&[]);
    let (alice, _) = owned_mesh(&broker);
    let (code, _) = invite(&alice, &[]);
    let base = broker.http_url();
    let member = SignKeyPair::generate();
    let x = BoxKeyPair::generate();

    refused(
        &claim_bytes(&base, &code, "not json").await,
        400,
        "malformed",
    );
    refused(&claim_bytes(&base, &code, "").await, 400, "malformed");
    let mut bad_key = claim_body_for(&code, &member, &x, "eve");
    bad_key["recipient_x25519_pubkey"] = "abc".into();
    refused(&claim(&base, &code, &bad_key).await, 400, "malformed");
    bad_key["recipient_x25519_pubkey"] = URL_SAFE_NO_PAD.encode([7u8; 31]).into();
    refused(&claim(&base, &code, &bad_key).await, 400, "malformed");
    let mut no_member = claim_body_for(&code, &member, &x, "eve");
    no_member.as_object_mut().unwrap().remove("member_pubkey");
    refused(&claim(&base, &code, &no_member).await, 400, "malformed");
    no_member["member_pubkey"] = member.public_hex().to_uppercase().into();
    refused(&claim(&base, &code, &no_member).await, 400, "malformed");
    let mut no_x = claim_body_for(&code, &member, &x, "eve");
    no_x.as_object_mut()
        .unwrap()
        .remove("recipient_x25519_pubkey");
    refused(&claim(&base, &code, &no_x).await, 400, "malformed");
    refused(
        &claim(
            &base,
            "bad!code",
            &claim_body_for(&code, &member, &x, "eve"),
        )
        .await,
        400,
        "malformed",
    );

    // None of that used the invite up.
    let (status, ok) = claim(&base, &code, &claim_body_for(&code, &member, &x, "bob")).await;
    assert_eq!(status, 200, "{ok}");
    assert_eq!(member_count(&alice), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_revoked_expired_and_exhausted_invites_are_refused() {
    let broker = BrokerProc::start(&[]);
    let (alice, _) = owned_mesh(&broker);
    let base = broker.http_url();

    refused(
        &claim(&base, "ZZZZZZZZ", &fresh_body("ZZZZZZZZ", "eve")).await,
        404,
        "not_found",
    );

    let (revoked, revoked_url) = invite(&alice, &[]);
    let out = alice.run(&["invite", "--revoke", &revoked]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    refused(
        &claim(&base, &revoked, &fresh_body(&revoked, "eve")).await,
        410,
        "revoked",
    );
    let eve = Person::new("eve");
    let out = eve.run(&["join", &revoked_url]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("revoked"), "{}", out.stderr);

    let (used, _) = invite(&alice, &[]);
    let (status, _) = claim(&base, &used, &fresh_body(&used, "bob")).await;
    assert_eq!(status, 200);
    refused(
        &claim(&base, &used, &fresh_body(&used, "eve")).await,
        410,
        "exhausted",
    );

    let v = alice.json(&["invite", "--expires", "1s", "--json"]);
    let expired = v["code"].as_str().unwrap().to_string();
    let expires_ms = time::parse_iso(v["expiresAt"].as_str().unwrap()).expect("ISO expiresAt");
    while time::now_ms() <= expires_ms {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    refused(
        &claim(&base, &expired, &fresh_body(&expired, "eve")).await,
        410,
        "expired",
    );
    let landing = http_get(&format!("{base}/i/{expired}?format=json")).await;
    assert_eq!(landing.json()["status"], "expired");

    // Only bob got in.
    assert_eq!(member_count(&alice), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tampered_invite_signature_is_refused() {
    let mut broker = BrokerProc::start(&[]);
    let (alice, _) = owned_mesh(&broker);
    let (code, url) = invite(&alice, &[]);
    assert_eq!(broker.terminate().code(), Some(0));

    let store = Store::open(broker.data_dir()).expect("open the data dir");
    let mut inv = store.invite(&code).unwrap().expect("the invite is stored");
    let first = inv.signature.remove(0);
    inv.signature
        .insert(0, if first == '0' { '1' } else { '0' });
    store.put_invite(inv).await.unwrap();
    store.close();
    drop(store);

    broker.restart();
    refused(
        &claim(&broker.http_url(), &code, &fresh_body(&code, "eve")).await,
        400,
        "bad_signature",
    );
    let out = Person::new("eve").run(&["join", &url]);
    assert_eq!(out.code, 1, "join of a tampered invite: {out:?}");
    // The refusal used nothing up.
    let landing = http_get(&format!("{}/i/{code}?format=json", broker.http_url())).await;
    assert_eq!(landing.json()["uses_left"], 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_claim_returns_a_verifiable_capability_and_no_root_key() {
    let broker = BrokerProc::start(&[]);
    let (alice, mesh_id) = owned_mesh(&broker);
    let (code, _) = invite(&alice, &["--role", "admin", "--uses", "2"]);
    let member = SignKeyPair::generate();
    let x = BoxKeyPair::generate();

    let (status, v) = claim(
        &broker.http_url(),
        &code,
        &claim_body_for(&code, &member, &x, "dave"),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let entry = alice.entry();
    assert!(v.get("sealed_root_key").is_none(), "{v}");
    assert_eq!(
        v["root_key_check"],
        claudemesh::identity::root_key_check(&entry.root_key().unwrap()).as_str(),
        "the check value lets the joiner verify the key its link carried"
    );

    assert_eq!(v["mesh_id"], mesh_id.as_str());
    assert_eq!(v["owner_pubkey"], entry.owner_pubkey.as_str());
    let member_id = v["member_id"].as_str().expect("member_id");
    assert!(!member_id.is_empty());
    let fields = canonical::parse_invite_v3(v["canonical_v3"].as_str().unwrap()).unwrap();
    assert_eq!(fields.mesh_id, mesh_id);
    assert_eq!(fields.code, code);
    assert_eq!(fields.max_uses, 2);
    assert_eq!(fields.signer_pubkey_hex, entry.owner_pubkey);
    assert_eq!(fields.role, "admin");
    let sig: [u8; 64] = hex::decode(v["signature_v3"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    let owner: [u8; 32] = hex::decode(&entry.owner_pubkey)
        .unwrap()
        .try_into()
        .unwrap();
    let signed = v["canonical_v3"].as_str().unwrap();
    assert!(crypto::verify(&sig, signed.as_bytes(), &owner));

    let members = alice.json(&["members", "--json"]);
    let dave = members["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["memberId"] == member_id)
        .expect("the new member is listed");
    assert_eq!(dave["displayName"], "dave");
    assert_eq!(dave["role"], "admin");
    assert_eq!(dave["pubkey"], member.public_hex().as_str());
}

/// `n` simultaneous claims of `code`, each with its own member key; returns the answers.
async fn claim_concurrently(base: &str, code: &str, n: usize) -> Vec<(u16, Value)> {
    let start = Arc::new(tokio::sync::Barrier::new(n));
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let (base, code, start) = (base.to_string(), code.to_string(), start.clone());
            tokio::spawn(async move {
                // Distinct names across rounds: a taken display name is refused.
                let body = fresh_body(&code, &format!("racer-{code}-{i}"));
                start.wait().await;
                claim(&base, &code, &body).await
            })
        })
        .collect();
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.unwrap());
    }
    answers
}

fn tally(answers: &[(u16, Value)]) -> (usize, usize) {
    let ok = answers.iter().filter(|a| a.0 == 200).count();
    let exhausted = answers
        .iter()
        .filter(|a| a.0 == 410 && a.1["error"] == "exhausted")
        .count();
    (ok, exhausted)
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_claims_never_exceed_the_uses() {
    let broker = BrokerProc::start(&[]);
    let (alice, _) = owned_mesh(&broker);

    let (one, _) = invite(&alice, &[]);
    let answers = claim_concurrently(&broker.http_url(), &one, 20).await;
    assert_eq!(tally(&answers), (1, 19), "{answers:?}");
    assert_eq!(member_count(&alice), 2);

    let (three, _) = invite(&alice, &["--uses", "3"]);
    let answers = claim_concurrently(&broker.http_url(), &three, 10).await;
    assert_eq!(tally(&answers), (3, 7), "{answers:?}");
    assert_eq!(member_count(&alice), 5);
    let ids: std::collections::HashSet<&str> = answers
        .iter()
        .filter_map(|a| a.1["member_id"].as_str())
        .collect();
    assert_eq!(ids.len(), 3, "three distinct members");
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_claims_by_result() {
    let broker = BrokerProc::start(&[]);
    let (alice, _) = owned_mesh(&broker);
    let base = broker.http_url();
    let (code, _) = invite(&alice, &[]);
    let (revoked, _) = invite(&alice, &[]);
    assert_eq!(alice.run(&["invite", "--revoke", &revoked]).code, 0);

    claim_bytes(&base, &code, "{").await;
    claim(&base, "ZZZZZZZZ", &fresh_body("ZZZZZZZZ", "x")).await;
    claim(&base, &code, &fresh_body(&code, "x")).await;
    claim(&base, &code, &fresh_body(&code, "y")).await;
    claim(&base, &code, &fresh_body(&code, "z")).await;
    claim(&base, &revoked, &fresh_body(&revoked, "x")).await;

    for (result, n) in [
        ("malformed", 1.0),
        ("not_found", 1.0),
        ("ok", 1.0),
        ("exhausted", 2.0),
        ("revoked", 1.0),
    ] {
        let sample = format!("claudemesh_invite_claims_total{{result=\"{result}\"}}");
        assert_eq!(metric(&broker, &sample).await, Some(n), "{sample}");
    }
    let expired = "claudemesh_invite_claims_total{result=\"expired\"}";
    assert_eq!(metric(&broker, expired).await, None);
}

#[tokio::test(flavor = "multi_thread")]
async fn display_names_are_cleaned_before_others_see_them() {
    let broker = BrokerProc::start(&[]);
    let (alice, _) = owned_mesh(&broker);
    let (code, _) = invite(&alice, &["--uses", "2"]);
    let base = broker.http_url();

    let hostile = format!("\u{1b}[31mmallory\u{7}\n{}", "x".repeat(200));
    let (status, v) = claim(&base, &code, &fresh_body(&code, &hostile)).await;
    assert_eq!(status, 200, "{v}");
    let member = SignKeyPair::generate();
    let (status, v) = claim(
        &base,
        &code,
        &claim_body_for(&code, &member, &BoxKeyPair::generate(), "  "),
    )
    .await;
    assert_eq!(status, 200, "{v}");

    let members = alice.json(&["members", "--json"]);
    let names: Vec<&str> = members["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["displayName"].as_str().unwrap())
        .collect();
    let mallory = names
        .iter()
        .find(|n| n.contains("mallory"))
        .expect("mallory listed");
    assert!(!mallory.chars().any(char::is_control), "{mallory:?}");
    assert!(mallory.chars().count() <= 64, "{mallory:?}");
    let fallback = format!("member-{}", &member.public_hex()[..8]);
    assert!(names.contains(&fallback.as_str()), "{names:?}");
    let text = alice.run(&["members"]);
    assert!(
        !text.stdout.contains('\u{1b}'),
        "no escape sequences reach a terminal"
    );
}
