//! Invites and claims under attack (issue 10, items 1-3), each performed as a hostile member
//! would while an honest pair (`Bystanders`) keeps messaging: a claimed invite copied under a new
//! code, an invite widened to more uses, an invite id registered twice, a plain member
//! registering invites, a claim made with another member's key; and the promise that the broker
//! never holds or shows the mesh root key (the invite link carries it after `#`), including the
//! upgrade of a data dir written when it still did.

use crate::common;

mod root_key;

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
    // ISO-8601, as `invite --json` and `createdAt` have it.
    let week = time::now_ms() + 7 * 24 * 3600 * 1000;
    let expires = entry["expiresAt"].as_str().and_then(time::parse_iso);
    assert!(
        expires.is_some_and(|ms| (week - 60_000..=week + 60_000).contains(&ms)),
        "{entry}"
    );
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
    assert_eq!(out.code, 3, "{out:?}");
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

/// What a usable code's landing shows and a dead one's must not: the mesh's key state (which a
/// removed or banned member who kept a code could watch rotate), its owner and the capability.
const KEY_FIELDS: [&str; 6] = [
    "key_epoch",
    "root_key_check",
    "owner_pubkey",
    "canonical_v3",
    "signature_v3",
    "broker_url",
];

async fn landing(broker: &BrokerProc, code: &str) -> Value {
    let page = http_get(&format!("{}/i/{code}?format=json", broker.http_url())).await;
    assert_eq!(page.status, 200, "the landing of {code}");
    page.json()
}

/// Security finding: the landing of a code nobody can join with any more (revoked, here by the
/// rotation of a ban; used up; expired) says why and no more. bob, banned, kept a code he was
/// handed for a friend: through it he must not see the mesh's key epoch and check value change
/// with each rotation, nor its owner and capability, which a usable code's landing still shows.
#[tokio::test(flavor = "multi_thread")]
async fn a_dead_invite_codes_landing_says_why_and_shows_no_key_information() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    let (kept, _) = invite(&alice, &["--uses", "2"]);
    let (used, used_url) = invite(&alice, &[]);
    join(&Person::new("carol"), &used_url);
    // The ban rotates the key, which revokes every invite that could still be used.
    alice.ok(&["ban", "bob"]);
    drop(bob);
    let (fresh, _) = invite(&alice, &[]);
    // Made last: registering an invite clears the mesh's expired ones away.
    let v = alice.json(&["invite", "--expires", "1s", "--json"]);
    let expired = v["code"].as_str().expect("code").to_string();
    let expires_ms = time::parse_iso(v["expiresAt"].as_str().unwrap()).expect("ISO expiresAt");
    while time::now_ms() <= expires_ms {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    let usable = landing(&broker, &fresh).await;
    assert_eq!(usable["status"], "valid", "{usable}");
    assert_eq!(usable["key_epoch"], 1, "{usable}");
    for field in KEY_FIELDS {
        assert!(
            usable.get(field).is_some_and(|v| !v.is_null()),
            "a usable code's landing has {field}: {usable}"
        );
    }
    for (code, status) in [
        (&kept, "revoked"),
        (&used, "exhausted"),
        (&expired, "expired"),
    ] {
        let dead = landing(&broker, code).await;
        assert_eq!(dead["status"], status, "{dead}");
        let mut fields: Vec<&str> = dead
            .as_object()
            .expect("an object")
            .keys()
            .map(String::as_str)
            .collect();
        fields.sort_unstable();
        assert_eq!(
            fields,
            [
                "code",
                "expires_at",
                "found",
                "inviter",
                "mesh_name",
                "status"
            ],
            "a {status} code's landing says why and no more: {dead}"
        );
        assert_eq!(
            (
                &dead["found"],
                &dead["code"],
                &dead["mesh_name"],
                &dead["inviter"]
            ),
            (&json!(true), &json!(code), &json!("team"), &json!("alice")),
        );
        assert!(dead["expires_at"].is_i64(), "{dead}");
        // The page a browser gets says the same, and offers no join command.
        let html = http_get(&format!("{}/i/{code}", broker.http_url())).await;
        assert_eq!(html.status, 410, "the page of a {status} code");
        let html = String::from_utf8_lossy(&html.body);
        let why = match status {
            "revoked" => "was revoked",
            "expired" => "has expired",
            _ => "has been used up",
        };
        assert!(html.contains(why), "{html}");
        assert!(html.contains("Ask alice for a new one"), "{html}");
        assert!(!html.contains("claudemesh join"), "{html}");
    }
    let html = http_get(&format!("{}/i/{fresh}", broker.http_url())).await;
    assert_eq!(html.status, 200);
    assert!(String::from_utf8_lossy(&html.body).contains("claudemesh join"));
}
