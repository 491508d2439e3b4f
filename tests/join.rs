//! Joining (issue 11, items 3 and 8): an invite link names the owner's key (a fingerprint
//! after `#`), so an on-path attacker who rewrites the broker's answers cannot swap the owner;
//! joining a mesh one is already in uses nothing; a display name is one member's.
//!
//! The attacker is a small HTTP proxy in this test process between `join` and the real broker:
//! it forwards every request and rewrites the answers.

use crate::common;

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::Value;

use claudemesh::client::http;
use claudemesh::crypto::SignKeyPair;
use claudemesh::identity::key_fingerprint;
use claudemesh::protocol::{Pubkey, canonical};
use common::*;

/// What the proxy changes on the way back.
#[derive(Clone, Copy, PartialEq)]
enum Tamper {
    /// Forwards faithfully.
    Nothing,
    /// The claim answer names the attacker as owner; the capability is left as it was.
    ClaimOwner,
    /// The claim answer names the attacker as owner and carries a capability the attacker
    /// signed: consistent in itself, so only the link can tell.
    ClaimAll,
    /// The same, in the invite landing `join` reads before it claims.
    Landing,
}

/// Starts the attacker in front of `broker` (`http://host:port`); returns its base URL.
async fn start_proxy(broker: String, tamper: Tamper) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the proxy");
    let addr = listener.local_addr().unwrap();
    let attacker = Arc::new(SignKeyPair::generate());
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (broker, attacker) = (broker.clone(), attacker.clone());
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<Incoming>| {
                    let (broker, attacker) = (broker.clone(), attacker.clone());
                    async move { Ok::<_, Infallible>(forward(&broker, req, tamper, &attacker).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    format!("http://{addr}")
}

async fn forward(
    broker: &str,
    req: Request<Incoming>,
    tamper: Tamper,
    attacker: &SignKeyPair,
) -> Response<Full<Bytes>> {
    let method = req.method().to_string();
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_default();
    let body = req.into_body().collect().await.unwrap().to_bytes().to_vec();
    let resp = http::request(
        &method,
        &format!("{broker}{path}"),
        &[],
        (!body.is_empty()).then_some(body),
    )
    .await
    .expect("the broker answers the proxy");
    let is_claim = path.ends_with("/claim");
    let is_landing = path.starts_with("/i/");
    let rewrite = resp.status == 200
        && match tamper {
            Tamper::Nothing => false,
            Tamper::ClaimOwner | Tamper::ClaimAll => is_claim,
            Tamper::Landing => is_landing,
        };
    let bytes = if rewrite {
        let mut v = resp.json();
        if tamper == Tamper::ClaimOwner {
            v["owner_pubkey"] = attacker.public_hex().into();
        } else {
            swap_owner(&mut v, attacker);
        }
        v.to_string().into_bytes()
    } else {
        resp.body.to_vec()
    };
    Response::builder()
        .status(resp.status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(bytes)))
        .unwrap()
}

/// The attacker's answer: itself as owner, and the invite re-signed by its own key.
fn swap_owner(v: &mut Value, attacker: &SignKeyPair) {
    let f = canonical::parse_invite_v3(v["canonical_v3"].as_str().expect("canonical_v3"))
        .expect("a v3 capability");
    let forged = canonical::invite_v3(
        &f.mesh_id,
        &f.invite_id,
        &f.code,
        f.max_uses,
        f.expires_at_unix_seconds,
        &f.role,
        &attacker.public_hex(),
    );
    v["owner_pubkey"] = attacker.public_hex().into();
    v["signature_v3"] = hex::encode(attacker.sign(forged.as_bytes())).into();
    v["canonical_v3"] = forged.into();
}

/// The same link, pointing at `base` instead of the broker.
fn via(url: &str, broker: &BrokerProc, base: &str) -> String {
    url.replacen(&broker.http_url(), base, 1)
}

/// Uses left of the invite `code`, from the owner's `invite list`.
fn uses_left(owner: &Person, code: &str) -> u64 {
    let list = owner.json(&["invite", "list", "--json"]);
    list["invites"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["code"] == code)
        .unwrap_or_else(|| panic!("invite {code} in {list}"))["usesLeft"]
        .as_u64()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tampered_owner_key_in_the_claim_answer_makes_join_fail() {
    let broker = BrokerProc::start(&[]);
    let alice = Person::new("alice");
    create_mesh(&broker, &alice, "team");
    let owner = Pubkey::parse(&alice.entry().owner_pubkey).unwrap();
    let (code, url) = invite(&alice, &["--uses", "9"]);
    let fragment = url.split_once('#').expect("a fragment").1;
    assert_eq!(
        fragment,
        format!("{}.{}", alice.entry().root_key, key_fingerprint(&owner.0)),
        "the link names the owner's key"
    );

    for (tamper, who) in [
        (Tamper::ClaimOwner, "bob"),
        (Tamper::ClaimAll, "carl"),
        (Tamper::Landing, "dora"),
    ] {
        let proxy = start_proxy(broker.http_url(), tamper).await;
        let person = Person::new(who);
        let before = uses_left(&alice, &code);
        let out = person.run(&["join", &via(&url, &broker, &proxy), "--name", who]);
        assert_eq!(
            out.code, 1,
            "{who} joined through a tampering proxy: {out:?}"
        );
        assert!(
            out.stderr.contains("refusing the invite") && out.stderr.contains("owner"),
            "{who}: {}",
            out.stderr
        );
        assert!(person.config().meshes.is_empty(), "{who} saved nothing");
        if tamper == Tamper::Landing {
            assert_eq!(uses_left(&alice, &code), before, "refused before claiming");
        }
    }

    // The proxy itself is no obstacle: forwarding faithfully, it lets a join through.
    let honest = start_proxy(broker.http_url(), Tamper::Nothing).await;
    let erin = Person::new("erin");
    let out = erin.run(&["join", &via(&url, &broker, &honest), "--name", "erin"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(erin.entry().owner_pubkey, owner.to_hex());

    // An admin's invite names the admin too, and joins (also through the honest proxy).
    let (_, admin_url) = invite(&alice, &["--role", "admin"]);
    let mallory = Person::new("mallory");
    join(&mallory, &admin_url);
    let (_, by_admin) = invite(&mallory, &[]);
    let admin_key = Pubkey::parse(&mallory.entry().member_pubkey).unwrap();
    assert!(
        by_admin.ends_with(&format!(
            ".{}.{}",
            key_fingerprint(&owner.0),
            key_fingerprint(&admin_key.0)
        )),
        "{by_admin}"
    );
    let fred = Person::new("fred");
    let out = fred.run(&["join", &via(&by_admin, &broker, &honest), "--name", "fred"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(fred.entry().owner_pubkey, owner.to_hex());
    let swapping = start_proxy(broker.http_url(), Tamper::ClaimAll).await;
    let (_, by_admin) = invite(&mallory, &[]);
    let gina = Person::new("gina");
    let out = gina.run(&[
        "join",
        &via(&by_admin, &broker, &swapping),
        "--name",
        "gina",
    ]);
    assert_eq!(out.code, 1, "{out:?}");

    // A link of an older version (no fingerprints) cannot catch the swap: it joins, and says
    // that it could not check.
    let old_form = url.rsplit_once('.').unwrap().0.to_string();
    let hugo = Person::new("hugo");
    let out = hugo.run(&[
        "join",
        &via(&old_form, &broker, &swapping),
        "--name",
        "hugo",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("warning") && out.stderr.contains("no owner key fingerprint"),
        "{}",
        out.stderr
    );
    assert_ne!(
        hugo.entry().owner_pubkey,
        owner.to_hex(),
        "what the warning is about"
    );
}

/// `join -` reads the link from stdin (README), before or after the other flags, so the link
/// stays out of the process list.
#[tokio::test(flavor = "multi_thread")]
async fn join_dash_reads_the_link_from_stdin() {
    let broker = BrokerProc::start(&[]);
    let alice = Person::new("alice");
    create_mesh(&broker, &alice, "team");
    for (name, args) in [
        ("carol", ["join", "-", "--name", "carol", "--json"]),
        ("dave", ["join", "--name", "dave", "--json", "-"]),
    ] {
        let (_, url) = invite(&alice, &[]);
        let person = Person::new(name);
        let out = person.run_with_stdin(&args, format!("{url}\n").as_bytes());
        assert_eq!(out.code, 0, "{name}: {}", out.stderr);
        let joined: Value = serde_json::from_str(&out.stdout).expect("join --json");
        assert_eq!(joined["slug"], "team", "{joined}");
        assert_eq!(person.entry().display_name, name);
    }
    assert_eq!(member_count(&alice), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn joining_a_mesh_you_are_in_says_so_and_uses_nothing() {
    let broker = BrokerProc::start(&[]);
    let alice = Person::new("alice");
    create_mesh(&broker, &alice, "team");
    let (code, url) = invite(&alice, &["--uses", "2"]);
    let bob = Person::new("bob");
    join(&bob, &url);
    let key = bob.entry().member_pubkey;
    assert_eq!(uses_left(&alice, &code), 1);

    let out = bob.run(&["join", &url]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("already a member"), "{}", out.stdout);
    assert!(out.stdout.contains("team"), "{}", out.stdout);
    let again = bob.json(&["join", &url, "--json"]);
    assert_eq!(again["alreadyMember"], true, "{again}");
    assert_eq!(again["memberId"], bob.entry().member_id.as_str());

    assert_eq!(uses_left(&alice, &code), 1, "no use spent");
    assert_eq!(member_count(&alice), 2, "no second bob");
    assert_eq!(bob.entry().member_pubkey, key, "bob keeps his identity");
    // The owner's own machine, too.
    let out = alice.run(&["join", &url]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("already a member"), "{}", out.stdout);
    assert!(
        alice.entry().owner_secret_key.is_some(),
        "the owner key stays"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_display_name_taken_in_the_mesh_is_refused_at_join() {
    let broker = BrokerProc::start(&[]);
    let alice = Person::new("alice");
    create_mesh(&broker, &alice, "team");
    let (code, url) = invite(&alice, &["--uses", "3"]);
    let bob = Person::new("bob");
    join(&bob, &url);

    let other = Person::new("robert");
    for taken in ["bob", "BOB", "alice"] {
        let out = other.run(&["join", &url, "--name", taken]);
        assert_eq!(out.code, 1, "{taken}: {out:?}");
        assert!(
            out.stderr
                .contains(&format!("\"{taken}\" is already taken"))
                && out.stderr.contains("--name"),
            "{taken}: {}",
            out.stderr
        );
        assert!(other.config().meshes.is_empty());
    }
    assert_eq!(uses_left(&alice, &code), 2, "refusals use nothing");
    assert_eq!(member_count(&alice), 2);

    let out = other.run(&["join", &url, "--name", "robert"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(member_count(&alice), 3);
    // Names stay usable as targets: one member each.
    let out = alice.run(&["send", "bob", "just one of you"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
}

/// A link whose invite is revoked, used up or expired: `join` says so, with whom to ask for a
/// new one, before anything else, and exits 1 (failed). The links are made after a rotation, so
/// they name key epoch 1, which a dead code's landing no longer confirms: a `join` that looked
/// at the keys first would refuse the link as a planted epoch instead. Nothing is claimed.
#[tokio::test(flavor = "multi_thread")]
async fn joining_with_a_dead_link_says_why_and_whom_to_ask() {
    let broker = BrokerProc::start(&[]);
    let (alice, _bob) = common::alice_and_bob(&broker);
    assert_eq!(alice.json(&["rotate-key", "--json"])["keyEpoch"], 1);
    let (revoked, revoked_url) = invite(&alice, &[]);
    alice.ok(&["invite", "revoke", &revoked]);
    let (_, used_url) = invite(&alice, &[]);
    join(&Person::new("carol"), &used_url);
    let v = alice.json(&["invite", "--expires", "1s", "--json"]);
    let expired_url = v["url"].as_str().expect("url").to_string();
    let expires_ms =
        claudemesh::protocol::time::parse_iso(v["expiresAt"].as_str().unwrap()).expect("ISO");
    while claudemesh::protocol::time::now_ms() <= expires_ms {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    let eve = Person::new("eve");
    for (url, why) in [
        (&revoked_url, "was revoked"),
        (&used_url, "has been used up"),
        (&expired_url, "has expired"),
    ] {
        assert!(url.contains("~1."), "the link names epoch 1: {url}");
        let out = eve.run(&["join", url, "--name", "eve"]);
        assert_eq!(out.code, 1, "{why}: {out:?}");
        assert!(
            out.stderr.contains(&format!(
                "cannot join: this invite to mesh \"team\" {why}; ask alice (who made it) or another owner or admin for a new one"
            )),
            "{}",
            out.stderr
        );
        assert!(eve.config().meshes.is_empty(), "nothing was saved");
    }
    // A code the broker never had is not there: exit 3.
    let unknown = revoked_url.replace(&revoked, "ZZZZZZZZ");
    let out = eve.run(&["join", &unknown, "--name", "eve"]);
    assert_eq!(out.code, 3, "{out:?}");
    assert!(
        out.stderr.contains("knows no invite ZZZZZZZZ"),
        "{}",
        out.stderr
    );
    // None of them reached the claim.
    for result in ["revoked", "exhausted", "expired"] {
        let sample = format!("claudemesh_invite_claims_total{{result=\"{result}\"}}");
        assert_eq!(metric(&broker, &sample).await, None, "{sample}");
    }
}
