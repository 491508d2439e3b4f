//! Invites and claims under attack (issue 10, items 1-3), each performed as a hostile member
//! would while an honest pair (`Bystanders`) keeps messaging: a claimed invite copied under a new
//! code, an invite widened to more uses, an invite id registered twice, a plain member
//! registering invites, a claim made with another member's key; and the promise that the broker
//! never holds or shows the mesh root key (the invite link carries it after `#`), including the
//! upgrade of a data dir written when it still did.

use crate::common;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use claudemesh::client::MeshClient;
use claudemesh::client::http;
use claudemesh::crypto::{BoxKeyPair, SignKeyPair};
use claudemesh::identity::{Config, ConfigDir, MeshEntry, encode_root_key, root_key_check};
use claudemesh::protocol::messages::{Capability, CreateInvite};
use claudemesh::protocol::{ClientMessage, ServerMessage, canonical, ids, time};
use claudemesh::store::Store;
use common::*;
use serde_json::{Value, json};

/// A claim of `code` for `member`, properly signed by it; returns (status, answer).
async fn claim(broker: &BrokerProc, code: &str, member: &SignKeyPair, name: &str) -> (u16, Value) {
    let resp = http::claim_invite(
        &broker.http_url(),
        code,
        &BoxKeyPair::generate().public,
        name,
        member,
    )
    .await
    .expect("claim request");
    (resp.status, resp.json())
}

/// A claim with a hand-made body (for forged or unsigned claims).
async fn claim_raw(broker: &BrokerProc, code: &str, body: &Value) -> (u16, Value) {
    let resp = http_post(
        &format!("{}/invites/{code}/claim", broker.http_url()),
        body.to_string(),
    )
    .await;
    (resp.status, resp.json())
}

/// A claim body for `member_pubkey`, signed by `signer` (the attacker's own key when the two
/// differ) at `timestamp`.
fn claim_body(code: &str, member_pubkey: &str, signer: &SignKeyPair, timestamp: i64) -> Value {
    let x = URL_SAFE_NO_PAD.encode(BoxKeyPair::generate().public);
    let signed = canonical::invite_claim(code, &x, member_pubkey, timestamp);
    json!({
        "recipient_x25519_pubkey": x,
        "display_name": "eve",
        "member_pubkey": member_pubkey,
        "timestamp": timestamp,
        "signature": hex::encode(signer.sign(signed.as_bytes())),
    })
}

fn refused(answer: &(u16, Value), status: u16, code: &str) {
    assert_eq!(answer.0, status, "status for {code}: {}", answer.1);
    assert_eq!(answer.1["error"], code, "{}", answer.1);
    assert!(
        answer.1["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{}",
        answer.1
    );
}

/// Registers an invite frame as it is; returns the broker's error code, or `None` on success.
async fn register(client: &MeshClient, frame: CreateInvite) -> Option<String> {
    match client.request(ClientMessage::CreateInvite(frame)).await {
        Ok(ServerMessage::InviteCreated(_)) => None,
        Ok(other) => panic!("unexpected answer {other:?}"),
        Err(e) => Some(e.code().expect("a broker error code").to_string()),
    }
}

/// An invite frame built from signed v3 fields, with the capability given.
fn frame_from(
    fields: &canonical::InviteV3Fields,
    canonical: &str,
    signature: &str,
) -> CreateInvite {
    CreateInvite {
        invite_id: fields.invite_id.clone(),
        code: fields.code.clone(),
        role: fields.role.clone(),
        max_uses: fields.max_uses,
        expires_at: fields.expires_at_unix_seconds,
        signer_pubkey: fields.signer_pubkey_hex.clone(),
        capability_v3: Some(Capability {
            canonical: canonical.to_string(),
            signature: signature.to_string(),
        }),
    }
}

/// A fresh invite signed by `signer` for mesh `mesh_id`.
fn signed_frame(
    signer: &SignKeyPair,
    mesh_id: &str,
    invite_id: &str,
    code: &str,
    uses: u32,
) -> CreateInvite {
    let expires = time::now_ms() / 1000 + 3600;
    let signed = canonical::invite_v3(
        mesh_id,
        invite_id,
        code,
        uses,
        expires,
        "member",
        &signer.public_hex(),
    );
    let fields = canonical::parse_invite_v3(&signed).expect("valid v3");
    frame_from(
        &fields,
        &signed,
        &hex::encode(signer.sign(signed.as_bytes())),
    )
}

fn invite_list(person: &Person) -> Vec<Value> {
    person.json(&["invite", "list", "--json"])["invites"]
        .as_array()
        .expect("invites array")
        .clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_claimed_invite_cannot_be_copied_or_widened() {
    let broker = BrokerProc::start(&[]);
    let mut bystanders = Bystanders::start(&broker).await;
    bystanders.exchange(3).await;

    let alice = Person::new("alice");
    create_mesh(&broker, &alice, "team");
    // mallory is an admin, so the role check is not what stops her below: the signature is.
    let mallory = Person::new("mallory");
    let (_, admin_url) = invite(&alice, &["--role", "admin"]);
    join(&mallory, &admin_url);

    // The attack: claim alice's 1-use invite with a spare key and keep what the claim returns.
    let (code, _) = invite(&alice, &[]);
    let spare = SignKeyPair::generate();
    let (status, answer) = claim(&broker, &code, &spare, "sock-puppet").await;
    assert_eq!(status, 200, "{answer}");
    let signed = answer["canonical_v3"].as_str().expect("canonical_v3");
    let signature = answer["signature_v3"].as_str().expect("signature_v3");
    let fields = canonical::parse_invite_v3(signed).expect("a v3 capability");
    assert_eq!((fields.code.as_str(), fields.max_uses), (code.as_str(), 1));

    let mallory_client = mallory.client().await;
    // Copy: the same signed invite under a new code.
    let mut copy = frame_from(&fields, signed, signature);
    copy.code = ids::new_invite_code();
    copy.invite_id = ids::new_id();
    assert_eq!(
        register(&mallory_client, copy).await.as_deref(),
        Some("bad_signature"),
        "a copy under a new code"
    );
    bystanders.exchange(3).await;
    // Widen: 10 000 uses instead of 1, under the original code and under a new one.
    let mut wide = frame_from(&fields, signed, signature);
    wide.max_uses = 10_000;
    assert_eq!(
        register(&mallory_client, wide.clone()).await.as_deref(),
        Some("bad_signature"),
        "a widened invite"
    );
    wide.code = ids::new_invite_code();
    assert_eq!(
        register(&mallory_client, wide).await.as_deref(),
        Some("bad_signature")
    );
    // Replay: the exact signed invite, registered a second time.
    assert_eq!(
        register(&mallory_client, frame_from(&fields, signed, signature))
            .await
            .as_deref(),
        Some("invite_exists")
    );
    // Even a properly signed invite (her own, as an admin) takes an id once only.
    let mesh_id = mallory.entry().mesh_id;
    let keys = mallory.entry().member_keys().unwrap();
    let id = ids::new_id();
    let first = signed_frame(&keys, &mesh_id, &id, &ids::new_invite_code(), 1);
    assert_eq!(register(&mallory_client, first).await, None);
    let again = signed_frame(&keys, &mesh_id, &id, &ids::new_invite_code(), 50);
    let err = mallory_client
        .request(ClientMessage::CreateInvite(again))
        .await
        .expect_err("a second registration of the id");
    assert_eq!(err.code(), Some("invite_exists"));
    assert!(err.to_string().contains(&id), "names the id: {err}");
    mallory_client.close().await;
    bystanders.exchange(3).await;

    // Nothing was widened: the original is used up and no copy exists.
    refused(
        &claim(&broker, &code, &SignKeyPair::generate(), "eve").await,
        410,
        "exhausted",
    );
    let listed = invite_list(&alice);
    assert_eq!(
        listed.len(),
        3,
        "admin invite, the 1-use one, mallory's own: {listed:?}"
    );
    assert!(
        listed
            .iter()
            .all(|i| i["code"] != "" && i["maxUses"].as_u64() <= Some(1)),
        "{listed:?}"
    );
    bystanders.exchange(3).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn only_the_owner_or_an_admin_registers_invites() {
    let broker = BrokerProc::start(&[]);
    let mut bystanders = Bystanders::start(&broker).await;
    let (alice, bob) = alice_and_bob(&broker);
    bystanders.exchange(2).await;

    // A plain member cannot make invites, whatever key signs them.
    let out = bob.run(&["invite"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains("lacks the \"invite\" capability"),
        "{}",
        out.stderr
    );
    let bob_client = bob.client().await;
    let entry = bob.entry();
    let own = signed_frame(
        &entry.member_keys().unwrap(),
        &entry.mesh_id,
        &ids::new_id(),
        &ids::new_invite_code(),
        100,
    );
    let err = bob_client
        .request(ClientMessage::CreateInvite(own))
        .await
        .expect_err("a member's invite");
    assert_eq!(err.code(), Some("forbidden"), "{err}");
    assert!(
        err.to_string().contains("lacks the \"invite\" capability"),
        "{err}"
    );
    bystanders.exchange(2).await;

    // An admin invites with its own key; the joiner gets in with the mesh key from the link.
    let dave = Person::new("dave");
    let (_, admin_url) = invite(&alice, &["--role", "admin"]);
    join(&dave, &admin_url);
    let (_, dave_url) = invite(&dave, &[]);
    let erin = Person::new("erin");
    join(&erin, &dave_url);
    assert_eq!(erin.entry().root_key, alice.entry().root_key);
    let by_dave = invite_list(&alice)
        .into_iter()
        .find(|i| i["createdByName"] == "dave")
        .expect("dave's invite listed");
    assert_eq!(by_dave["usesLeft"], 0);

    // An admin's invite lives only as long as the admin: revoke dave, his spare one dies
    // (without the key rotation, which would revoke it anyway).
    let (spare, _) = invite(&dave, &[]);
    let out = alice.run(&["revoke", "dave", "--no-rotate"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    refused(
        &claim(&broker, &spare, &SignKeyPair::generate(), "frank").await,
        400,
        "bad_signature",
    );
    bob_client.close().await;
    bystanders.exchange(2).await;
}

/// Each field of an invite out of its shape is refused with `invalid_argument` before any
/// signature is looked at, and one field out of shape is enough.
#[tokio::test]
async fn an_invite_with_any_field_out_of_shape_is_refused() {
    let broker = BrokerProc::start(&[]);
    let (alice, _bob) = alice_and_bob(&broker);
    let client = alice.client().await;
    let good = || CreateInvite {
        invite_id: ids::new_id(),
        code: ids::new_invite_code(),
        role: "member".into(),
        max_uses: 1,
        expires_at: time::now_ms() / 1000 + 3600,
        signer_pubkey: alice.entry().owner_pubkey,
        capability_v3: Some(Capability {
            canonical: "not signed".into(),
            signature: "00".repeat(64),
        }),
    };
    let cases: Vec<(&str, CreateInvite)> = vec![
        (
            "a code of 7 characters",
            CreateInvite {
                code: "abcdefg".into(),
                ..good()
            },
        ),
        (
            "a code with a slash",
            CreateInvite {
                code: "abc/efgh".into(),
                ..good()
            },
        ),
        (
            "an id with a space",
            CreateInvite {
                invite_id: "bad id".into(),
                ..good()
            },
        ),
        (
            "no uses",
            CreateInvite {
                max_uses: 0,
                ..good()
            },
        ),
        (
            "10 001 uses",
            CreateInvite {
                max_uses: 10_001,
                ..good()
            },
        ),
        (
            "an expiry in the past",
            CreateInvite {
                expires_at: time::now_ms() / 1000 - 1,
                ..good()
            },
        ),
        (
            "the owner role",
            CreateInvite {
                role: "owner".into(),
                ..good()
            },
        ),
    ];
    for (what, frame) in cases {
        assert_eq!(
            register(&client, frame).await.as_deref(),
            Some("invalid_argument"),
            "{what}"
        );
    }
    // In shape, the same frame reaches the signature check: its canonical string must be the
    // one the broker computes, and the signature the signer's over it.
    assert_eq!(
        register(&client, good()).await.as_deref(),
        Some("bad_signature")
    );
    let owner = alice
        .entry()
        .owner_keys()
        .expect("alice owns the mesh")
        .unwrap();
    let honest = signed_frame(
        &owner,
        &alice.entry().mesh_id,
        &ids::new_id(),
        &ids::new_invite_code(),
        1,
    );
    let mut forged = honest.clone();
    if let Some(c) = forged.capability_v3.as_mut() {
        c.signature = hex::encode(SignKeyPair::generate().sign(c.canonical.as_bytes()));
    }
    assert_eq!(
        register(&client, forged).await.as_deref(),
        Some("bad_signature"),
        "the right string signed by another key"
    );
    assert_eq!(register(&client, honest).await, None);
    client.close().await;
}

/// `list_invites` shows at most 100 and says when there are more.
#[tokio::test]
async fn the_invite_list_says_when_it_is_cut_short() {
    let broker = BrokerProc::start(&[]);
    let alice = Person::new("alice");
    create_mesh(&broker, &alice, "team");
    let client = alice.client().await;
    let entry = alice.entry();
    let owner = entry.owner_keys().expect("alice owns the mesh").unwrap();
    let fresh = || {
        signed_frame(
            &owner,
            &entry.mesh_id,
            &ids::new_id(),
            &ids::new_invite_code(),
            1,
        )
    };
    let list = async || match client.request(ClientMessage::ListInvites {}).await {
        Ok(ServerMessage::InviteList { invites, truncated }) => (invites.len(), truncated),
        other => panic!("{other:?}"),
    };
    for _ in 0..100 {
        let frame = fresh();
        assert_eq!(register(&client, frame).await, None);
    }
    assert_eq!(list().await, (100, false));
    let frame = fresh();
    assert_eq!(register(&client, frame).await, None);
    assert_eq!(list().await, (100, true));
    // A revocation is acknowledged as PROTOCOL.md §9 says: `ack{ok:true}`.
    let frame = fresh();
    let code = frame.code.clone();
    assert_eq!(register(&client, frame).await, None);
    let answer = client
        .request(ClientMessage::RevokeInvite {
            code: Some(code),
            invite_id: None,
        })
        .await;
    match answer {
        Ok(ServerMessage::Ack(ack)) => assert_eq!(ack.ok, Some(true), "{ack:?}"),
        other => panic!("{other:?}"),
    }
    client.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn invite_list_shows_every_invite_and_revoke_works_by_code_or_id() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    let (a, _) = invite(&alice, &[]);
    let b = alice.json(&["invite", "--uses", "3", "--role", "admin", "--json"]);
    let (b_code, b_id) = (b["code"].as_str().unwrap(), b["inviteId"].as_str().unwrap());
    let (c, _) = invite(&alice, &["--expires", "2h"]);

    let listed = invite_list(&alice);
    assert_eq!(listed.len(), 4, "bob's (used) and three new: {listed:?}");
    let find = |code: &str, list: &[Value]| {
        list.iter()
            .find(|i| i["code"] == code)
            .cloned()
            .unwrap_or_else(|| panic!("{code} listed"))
    };
    let entry = find(b_code, &listed);
    assert_eq!(entry["inviteId"], b_id);
    assert_eq!(entry["role"], "admin");
    assert_eq!(
        (entry["maxUses"].as_u64(), entry["usesLeft"].as_u64()),
        (Some(3), Some(3))
    );
    assert_eq!(entry["createdByName"], "alice");
    assert_eq!(entry["status"], "valid");
    assert_eq!(entry["revoked"], false);
    let week = time::now_ms() / 1000 + 7 * 24 * 3600;
    assert!((week - 60..=week + 60).contains(&entry["expiresAt"].as_i64().unwrap()));
    let used: Vec<&Value> = listed
        .iter()
        .filter(|i| i["status"] == "exhausted")
        .collect();
    assert_eq!(used.len(), 1, "bob's invite is used up: {listed:?}");
    // Still-valid invites come first.
    assert_eq!(listed.last().unwrap()["status"], "exhausted");
    let text = alice.run(&["invite", "list"]);
    assert_eq!(text.code, 0, "{}", text.stderr);
    for code in [a.as_str(), b_code, c.as_str()] {
        assert!(text.stdout.contains(code), "{}", text.stdout);
    }

    // Revoke by id (subcommand) and by code (the old flag).
    let out = alice.run(&["invite", "revoke", b_id]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = alice.run(&["invite", "--revoke", &c]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let listed = invite_list(&alice);
    let order: Vec<&str> = listed.iter().filter_map(|i| i["code"].as_str()).collect();
    assert_eq!(
        order,
        [a.as_str(), c.as_str(), b_code, order[3]],
        "the usable invite first, then the others newest first (bob's, used up, last)"
    );
    for code in [b_code, c.as_str()] {
        assert_eq!(find(code, &listed)["status"], "revoked", "{code}");
        refused(
            &claim(&broker, code, &SignKeyPair::generate(), "eve").await,
            410,
            "revoked",
        );
    }
    let (status, v) = claim(&broker, &a, &SignKeyPair::generate(), "carl").await;
    assert_eq!(status, 200, "the untouched invite still works: {v}");
    let out = alice.run(&["invite", "revoke", "NoSuchId0000xyz"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("no invite"), "{}", out.stderr);

    // Codes are credentials: members do not see them.
    let out = bob.run(&["invite", "list"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains("lacks the \"invite\" capability"),
        "{}",
        out.stderr
    );
    let out = bob.run(&["invite", "revoke", &a]);
    assert_eq!(out.code, 1, "{out:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_claim_must_prove_the_member_key_it_claims_for() {
    let broker = BrokerProc::start(&[]);
    let mut bystanders = Bystanders::start(&broker).await;
    let alice = Person::new("alice");
    create_mesh(&broker, &alice, "team");
    let bob = Person::new("bob");
    let (bob_code, bob_url) = invite(&alice, &[]);
    join(&bob, &bob_url);
    let bob_pubkey = bob.entry().member_pubkey;
    bystanders.exchange(2).await;

    // eve knows bob's public key (every member sees it) and his used-up code, and has a fresh
    // code of her own; she tries to claim as bob.
    let (fresh, _) = invite(&alice, &[]);
    let eve = SignKeyPair::generate();
    for code in [bob_code.as_str(), fresh.as_str()] {
        let mut unsigned = claim_body(code, &bob_pubkey, &eve, time::now_ms());
        let obj = unsigned.as_object_mut().unwrap();
        obj.remove("signature");
        obj.remove("timestamp");
        refused(&claim_raw(&broker, code, &unsigned).await, 400, "malformed");
        let forged = claim_body(code, &bob_pubkey, &eve, time::now_ms());
        refused(
            &claim_raw(&broker, code, &forged).await,
            401,
            "bad_claim_signature",
        );
        bystanders.exchange(1).await;
    }
    // A signature of bob's from long ago (say, captured) is too old to use.
    let bob_keys = bob.entry().member_keys().unwrap();
    let stale = claim_body(&bob_code, &bob_pubkey, &bob_keys, time::now_ms() - 120_000);
    refused(
        &claim_raw(&broker, &bob_code, &stale).await,
        400,
        "timestamp_skew",
    );
    // A signature over another code does not carry over.
    let mut moved = claim_body(&bob_code, &bob_pubkey, &bob_keys, time::now_ms());
    moved["recipient_x25519_pubkey"] = URL_SAFE_NO_PAD.encode([9u8; 32]).into();
    refused(
        &claim_raw(&broker, &fresh, &moved).await,
        401,
        "bad_claim_signature",
    );
    bystanders.exchange(2).await;

    // bob himself may re-claim (a retried join), and learns nothing secret.
    let (status, again) = claim(&broker, &bob_code, &bob_keys, "bob").await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["member_id"], bob.entry().member_id.as_str());
    assert!(again.get("sealed_root_key").is_none(), "{again}");
    // A used-up invite still refuses new members, properly signed or not.
    refused(
        &claim(&broker, &bob_code, &SignKeyPair::generate(), "zed").await,
        410,
        "exhausted",
    );
    // The fresh invite was not consumed by any of that.
    let members = alice.json(&["members", "--json"]);
    assert_eq!(members["members"].as_array().unwrap().len(), 2, "{members}");
    let (status, _) = claim(&broker, &fresh, &eve, "eve-for-real").await;
    assert_eq!(status, 200, "eve may join with her own key");
    bystanders.exchange(2).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_broker_never_holds_or_shows_the_root_key() {
    let broker = BrokerProc::start(&[]);
    let mut bystanders = Bystanders::start(&broker).await;
    let base = broker.http_url();
    let alice = Person::new("alice");
    create_mesh(&broker, &alice, "team");
    let root = alice
        .entry()
        .root_key()
        .expect("the creator holds the root key");
    let (code, url) = invite(&alice, &["--uses", "2"]);
    assert!(
        url.contains(&format!("#{}.", encode_root_key(&root))),
        "{url}"
    );
    let bob = Person::new("bob");
    join(&bob, &url);
    assert_eq!(
        bob.entry().root_key().unwrap(),
        root,
        "bob took it from the link"
    );

    // Every HTTP answer this test sees.
    let mut bodies: Vec<(String, Vec<u8>)> = Vec::new();
    for path in [
        format!("/i/{code}"),
        format!("/i/{code}?format=json"),
        "/health".into(),
        "/health/ready".into(),
        "/metrics".into(),
    ] {
        let resp = http_get(&format!("{base}{path}")).await;
        bodies.push((path, resp.body.to_vec()));
    }
    let carl = SignKeyPair::generate();
    let resp = http::claim_invite(&base, &code, &BoxKeyPair::generate().public, "carl", &carl)
        .await
        .unwrap();
    assert_eq!(resp.status, 200);
    bodies.push(("the claim".into(), resp.body.to_vec()));

    // A group message and a broadcast; bob reads both.
    let out = bob.run(&["group", "join", "dev"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    for (to, text) in [("@dev", "group secret"), ("*", "broadcast secret")] {
        let out = alice.run(&["send", to, text]);
        assert_eq!(out.code, 0, "{}", out.stderr);
    }
    let out = bob.run(&["inbox", "--json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let texts: Vec<String> = out
        .stdout
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["text"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect();
    assert_eq!(texts, ["group secret", "broadcast secret"]);
    bystanders.exchange(2).await;

    for (what, body) in &bodies {
        common::secrets::assert_not_in(&format!("the HTTP answer to {what}"), body, &root);
    }
    assert_broker_never_saw(&broker, &root);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_link_without_its_key_joins_but_group_messages_need_the_full_link() {
    let broker = BrokerProc::start(&[]);
    let alice = Person::new("alice");
    create_mesh(&broker, &alice, "team");
    let (code, url) = invite(&alice, &["--uses", "3"]);
    let bare = url.split('#').next().unwrap().to_string();

    let bob = Person::new("bob");
    let out = bob.run(&["join", &bare, "--name", "bob"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("warning") && out.stderr.contains("group"),
        "join says what is missing: {}",
        out.stderr
    );
    assert!(bob.entry().root_key.is_empty());
    // A direct message works; a group message is refused with a sentence, not a crash.
    let out = bob.run(&["send", "alice", "hello directly"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = bob.run(&["send", "*", "hello all"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("full invite link"), "{}", out.stderr);
    // Receiving one is no crash either.
    assert_eq!(alice.run(&["send", "*", "to everyone"]).code, 0);
    let out = bob.run(&["inbox", "--json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);

    // A bare code joins the same way.
    let carl = Person::new("carl");
    let out = carl.run(&["join", &code, "--broker", &broker.ws_url()]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains("full link"), "{}", out.stderr);

    // The full link later adds the key to bob's membership (no second member).
    let out = bob.run(&["join", &url]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("added the mesh key"), "{}", out.stdout);
    assert_eq!(bob.entry().root_key, alice.entry().root_key);
    let members = alice.json(&["members", "--json"]);
    assert_eq!(members["members"].as_array().unwrap().len(), 3, "{members}");
    assert_eq!(bob.run(&["send", "*", "hello all"]).code, 0);

    // A link whose key belongs to another mesh is refused before anything is claimed.
    let other = Person::new("olga");
    create_mesh(&broker, &other, "other");
    let wrong = format!("{bare}#{}", other.entry().root_key);
    let dave = Person::new("dave");
    let out = dave.run(&["join", &wrong]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("does not belong"), "{}", out.stderr);
    let out = dave.run(&["join", &format!("{bare}#not-a-key")]);
    assert_eq!(out.code, 2, "{out:?}");
}

// ---------------------------------------------------------------------------------------------
// Upgrading a data dir from a broker that kept root keys (schema 1)
// ---------------------------------------------------------------------------------------------

/// The records as schema 1 wrote them.
mod old {
    use serde::Serialize;

    #[derive(Serialize)]
    pub struct Mesh {
        pub id: String,
        pub name: String,
        pub slug: String,
        pub owner_pubkey: String,
        pub root_key: String,
        pub created_at_ms: i64,
        pub self_editable: bool,
    }

    #[derive(Serialize)]
    pub struct Member {
        pub id: String,
        pub mesh_id: String,
        pub pubkey: String,
        pub display_name: String,
        pub role: String,
        pub joined_at_ms: i64,
    }

    #[derive(Serialize)]
    pub struct Invite {
        pub id: String,
        pub code: String,
        pub mesh_id: String,
        pub role: String,
        pub max_uses: u32,
        pub used: u32,
        pub expires_at_s: i64,
        pub created_by: String,
        pub created_at_ms: i64,
        pub revoked: bool,
        pub canonical: String,
        pub signature: String,
    }
}

/// One schema-1 mesh: its keys and the config entry its owner's machine has.
struct OldMesh {
    id: String,
    member_id: String,
    member: SignKeyPair,
    owner: SignKeyPair,
    root: [u8; 32],
}

impl OldMesh {
    fn new(slug: &str) -> OldMesh {
        OldMesh {
            id: format!("mesh{slug}0000000000"),
            member_id: format!("mbr{slug}00000000000"),
            member: SignKeyPair::generate(),
            owner: SignKeyPair::generate(),
            root: claudemesh::crypto::random_bytes(),
        }
    }

    fn entry(&self, slug: &str, broker: &BrokerProc, root: &[u8; 32]) -> MeshEntry {
        MeshEntry {
            mesh_id: self.id.clone(),
            slug: slug.into(),
            name: slug.into(),
            member_id: self.member_id.clone(),
            display_name: "owner".into(),
            role: "owner".into(),
            broker_url: broker.ws_url(),
            member_pubkey: self.member.public_hex(),
            member_secret_key: self.member.secret_hex(),
            root_key: encode_root_key(root),
            owner_pubkey: self.owner.public_hex(),
            owner_secret_key: Some(self.owner.secret_hex()),
            joined_at: time::iso(0),
            ca_file: None,
            key_epoch: 0,
            old_root_keys: Vec::new(),
            admin_list_version: 0,
        }
    }
}

/// Writes a schema-1 `mesh.redb`: the meshes with their root keys in clear, their owners, and
/// one v2 invite (`OldCode1`) for the first mesh.
fn write_schema_1(dir: &std::path::Path, meshes: &[(&str, &OldMesh)]) {
    use redb::TableDefinition;
    let db = redb::Database::create(dir.join("mesh.redb")).expect("create mesh.redb");
    let tx = db.begin_write().unwrap();
    {
        let mut meta = tx
            .open_table(TableDefinition::<&str, &[u8]>::new("meta"))
            .unwrap();
        meta.insert("schema_version", enc(&1u32).as_slice())
            .unwrap();
        let mut mesh_t = tx
            .open_table(TableDefinition::<&str, &[u8]>::new("meshes"))
            .unwrap();
        let mut slugs = tx
            .open_table(TableDefinition::<&str, &str>::new("mesh_slugs"))
            .unwrap();
        let mut members = tx
            .open_table(TableDefinition::<(&str, &str), &[u8]>::new("members"))
            .unwrap();
        let mut keys = tx
            .open_table(TableDefinition::<(&str, &str), &str>::new("member_keys"))
            .unwrap();
        let mut invites = tx
            .open_table(TableDefinition::<&str, &[u8]>::new("invites"))
            .unwrap();
        for (slug, m) in meshes {
            let mesh = old::Mesh {
                id: m.id.clone(),
                name: slug.to_string(),
                slug: slug.to_string(),
                owner_pubkey: m.owner.public_hex(),
                root_key: encode_root_key(&m.root),
                created_at_ms: 1,
                self_editable: true,
            };
            mesh_t.insert(m.id.as_str(), enc(&mesh).as_slice()).unwrap();
            slugs.insert(*slug, m.id.as_str()).unwrap();
            let member = old::Member {
                id: m.member_id.clone(),
                mesh_id: m.id.clone(),
                pubkey: m.member.public_hex(),
                display_name: "owner".into(),
                role: "owner".into(),
                joined_at_ms: 1,
            };
            members
                .insert(
                    (m.id.as_str(), m.member_id.as_str()),
                    enc(&member).as_slice(),
                )
                .unwrap();
            keys.insert(
                (m.id.as_str(), m.member.public_hex().as_str()),
                m.member_id.as_str(),
            )
            .unwrap();
        }
        let (_, first) = meshes[0];
        let expires = time::now_ms() / 1000 + 86_400;
        let signed = canonical::invite_v2(
            &first.id,
            "oldinvite1",
            expires,
            "member",
            &first.owner.public_hex(),
        );
        let invite = old::Invite {
            id: "oldinvite1".into(),
            code: "OldCode1".into(),
            mesh_id: first.id.clone(),
            role: "member".into(),
            max_uses: 5,
            used: 0,
            expires_at_s: expires,
            created_by: first.member_id.clone(),
            created_at_ms: 1,
            revoked: false,
            signature: hex::encode(first.owner.sign(signed.as_bytes())),
            canonical: signed,
        };
        invites.insert("OldCode1", enc(&invite).as_slice()).unwrap();
    }
    tx.commit().unwrap();
}

/// rmp-serde with named fields, as the store writes records.
fn enc<T: serde::Serialize>(value: &T) -> Vec<u8> {
    rmp_serde::to_vec_named(value).expect("encode")
}

fn save_config(person: &Person, entry: MeshEntry) {
    ConfigDir::new(person.config_dir())
        .update(|config| {
            *config = Config::default();
            config.meshes.push(entry);
            Ok(())
        })
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upgraded_broker_drops_a_stored_root_key_once_the_owner_proves_it() {
    let dir = tempfile::tempdir().unwrap();
    let (team, side) = (OldMesh::new("team"), OldMesh::new("side"));
    write_schema_1(dir.path(), &[("team", &team), ("side", &side)]);
    let mut broker = BrokerProc::start_in(dir.path(), &[]);

    // The v2 invite is dead: it binds neither code nor uses, and its link carries no key.
    let landing = http_get(&format!("{}/i/OldCode1?format=json", broker.http_url())).await;
    assert_eq!(landing.json()["status"], "revoked");
    refused(
        &claim(&broker, "OldCode1", &SignKeyPair::generate(), "late").await,
        410,
        "revoked",
    );

    let alice = Person::new("alice");
    save_config(&alice, team.entry("team", &broker, &team.root));
    // olga owns "side" but her machine has a different key: her proof must not drop anything.
    let olga = Person::new("olga");
    save_config(&olga, side.entry("side", &broker, &[7u8; 32]));
    for (person, mesh) in [(&alice, &team), (&olga, &side)] {
        let entry = person.entry();
        let (_, ack) = ws_hello(&broker, &member_hello(&entry)).await;
        assert_eq!(ack["rootKeyHeld"], true, "{} before: {ack}", mesh.id);
    }

    // Any command of theirs connects, and the client proves what it holds.
    assert_eq!(alice.run(&["members"]).code, 0);
    assert_eq!(olga.run(&["members"]).code, 0);
    let (_, ack) = ws_hello(&broker, &member_hello(&alice.entry())).await;
    assert!(ack.get("rootKeyHeld").is_none(), "dropped for team: {ack}");
    let (_, ack) = ws_hello(&broker, &member_hello(&olga.entry())).await;
    assert_eq!(ack["rootKeyHeld"], true, "kept for side: {ack}");

    // The migrated mesh keeps working: a new invite carries the same key.
    let (_, url) = invite(&alice, &[]);
    let bob = Person::new("bob");
    join(&bob, &url);
    assert_eq!(bob.entry().root_key().unwrap(), team.root);

    assert!(broker.terminate().success());
    let store = Store::open(dir.path()).expect("open the migrated store");
    let migrated = store.mesh(&team.id).unwrap().expect("team");
    assert_eq!(migrated.legacy_root_key, None, "the stored copy is gone");
    assert_eq!(
        migrated.root_key_check.as_deref(),
        Some(root_key_check(&team.root).as_str())
    );
    let kept = store.mesh(&side.id).unwrap().expect("side");
    assert_eq!(kept.legacy_root_key, Some(encode_root_key(&side.root)));
    let old_invite = store
        .invite("OldCode1")
        .unwrap()
        .expect("kept for the record");
    assert!(old_invite.revoked);
    store.close();
}

/// A broker behind a proxy or a DNS name puts that name in every link it hands out.
#[tokio::test(flavor = "multi_thread")]
async fn invite_links_use_the_public_url() {
    let broker = BrokerProc::start(&["--public-url", "https://mesh.example.com/"]);
    let alice = Person::new("alice");
    create_mesh(&broker, &alice, "team");
    let (code, url) = invite(&alice, &[]);
    let key = encode_root_key(&alice.entry().root_key().unwrap());
    let owner = claudemesh::protocol::Pubkey::parse(&alice.entry().owner_pubkey).unwrap();
    let owner = claudemesh::identity::key_fingerprint(&owner.0);
    assert_eq!(
        url,
        format!("https://mesh.example.com/i/{code}#{key}.{owner}")
    );
    let page = http_get(&format!("{}/i/{code}?format=json", broker.http_url())).await;
    let v: Value = serde_json::from_slice(&page.body).unwrap();
    assert_eq!(v["broker_url"], "wss://mesh.example.com/ws", "{v}");
    let html = http_get(&format!("{}/i/{code}", broker.http_url())).await;
    let html = String::from_utf8_lossy(&html.body);
    assert!(
        html.contains(&format!("https://mesh.example.com/i/{code}")),
        "{html}"
    );
    // A broker without one uses the address it listens on.
    let plain = BrokerProc::start(&[]);
    let bob = Person::new("bob");
    create_mesh(&plain, &bob, "team");
    let (code, url) = invite(&bob, &[]);
    assert!(
        url.starts_with(&format!("{}/i/{code}#", plain.http_url())),
        "{url}"
    );
}
