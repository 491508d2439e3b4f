//! Checks our crypto and canonical strings against `data/golden/vectors.json`, which
//! `data/golden/generate.py` produces with PyNaCl and hand-built strings. A mismatch here means a
//! client built on another libsodium binding (like the original TypeScript CLI) would reject us.

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use claudemesh::crypto::{self, BoxKeyPair, SignKeyPair};
use claudemesh::protocol::canonical;
use serde::Deserialize;

#[derive(Deserialize)]
struct Vectors {
    keys: Vec<Key>,
    signed_strings: Vec<SignedString>,
    #[serde(rename = "box")]
    boxes: Vec<BoxVector>,
    secretbox: Vec<SecretboxVector>,
    sealed_box: Vec<SealedVector>,
    root_key_check: Vec<CheckVector>,
    sha256: Vec<ShaVector>,
}

#[derive(Deserialize)]
struct CheckVector {
    name: String,
    key_b64url: String,
    check_hex: String,
}

#[derive(Deserialize)]
struct Key {
    name: String,
    seed: String,
    ed25519_public: String,
    ed25519_secret: String,
    x25519_public: String,
    x25519_secret: String,
}

#[derive(Deserialize)]
struct SignedString {
    name: String,
    kind: String,
    args: serde_json::Map<String, serde_json::Value>,
    string: String,
    signer: String,
    signature: String,
}

#[derive(Deserialize)]
struct BoxVector {
    name: String,
    sender: String,
    recipient: String,
    nonce_b64: String,
    plaintext: String,
    ciphertext_b64: String,
}

#[derive(Deserialize)]
struct SecretboxVector {
    name: String,
    key_b64url: String,
    nonce_b64: String,
    plaintext: String,
    ciphertext_b64: String,
}

#[derive(Deserialize)]
struct SealedVector {
    name: String,
    recipient_x25519_secret: String,
    recipient_x25519_public: String,
    plaintext_b64url: String,
    ciphertext_b64url: String,
}

#[derive(Deserialize)]
struct ShaVector {
    name: String,
    input_hex: String,
    sha256: String,
}

fn load() -> Vectors {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/data/golden/vectors.json");
    let text = std::fs::read_to_string(path).expect("read data/golden/vectors.json");
    serde_json::from_str(&text).expect("parse data/golden/vectors.json")
}

fn arr<const N: usize>(hex_str: &str) -> [u8; N] {
    let mut out = [0u8; N];
    hex::decode_to_slice(hex_str, &mut out).expect("fixed-size hex in vectors.json");
    out
}

fn b64_arr<const N: usize>(engine: &impl Engine, s: &str) -> [u8; N] {
    engine
        .decode(s)
        .expect("base64 in vectors.json")
        .try_into()
        .expect("base64 field has the expected length")
}

fn signers(v: &Vectors) -> HashMap<&str, SignKeyPair> {
    v.keys
        .iter()
        .map(|k| (k.name.as_str(), SignKeyPair::from_seed(&arr(&k.seed))))
        .collect()
}

fn key<'a>(v: &'a Vectors, name: &str) -> &'a Key {
    v.keys
        .iter()
        .find(|k| k.name == name)
        .unwrap_or_else(|| panic!("no key {name:?} in vectors.json"))
}

fn s<'a>(args: &'a serde_json::Map<String, serde_json::Value>, field: &str) -> &'a str {
    args[field]
        .as_str()
        .unwrap_or_else(|| panic!("arg {field} is not a string"))
}

fn n(args: &serde_json::Map<String, serde_json::Value>, field: &str) -> i64 {
    args[field]
        .as_i64()
        .unwrap_or_else(|| panic!("arg {field} is not an integer"))
}

/// Calls the canonical builder the vector names, with the vector's arguments.
fn build(sv: &SignedString) -> String {
    let a = &sv.args;
    match sv.kind.as_str() {
        "hello" => canonical::hello(
            s(a, "mesh_id"),
            s(a, "member_id"),
            s(a, "pubkey_hex"),
            n(a, "timestamp_ms"),
        ),
        "session_attestation" => canonical::session_attestation(
            s(a, "parent_pubkey_hex"),
            s(a, "session_pubkey_hex"),
            n(a, "expires_at_ms"),
        ),
        "session_hello" => canonical::session_hello(
            s(a, "mesh_id"),
            s(a, "parent_pubkey_hex"),
            s(a, "session_pubkey_hex"),
            n(a, "timestamp_ms"),
        ),
        "invite_v2" => canonical::invite_v2(
            s(a, "mesh_id"),
            s(a, "invite_id"),
            n(a, "expires_at_unix_seconds"),
            s(a, "role"),
            s(a, "owner_pubkey_hex"),
        ),
        "invite_v3" => canonical::invite_v3(
            s(a, "mesh_id"),
            s(a, "invite_id"),
            s(a, "code"),
            u32::try_from(n(a, "max_uses")).expect("max_uses fits u32"),
            n(a, "expires_at_unix_seconds"),
            s(a, "role"),
            s(a, "signer_pubkey_hex"),
        ),
        "invite_claim" => canonical::invite_claim(
            s(a, "code"),
            s(a, "recipient_x25519_b64url"),
            s(a, "member_pubkey_hex"),
            n(a, "timestamp_ms"),
        ),
        "http_request" => {
            // The body hash is ours too, not copied from the vector.
            let body_hash = hex::encode(crypto::sha256(s(a, "body").as_bytes()));
            assert_eq!(body_hash, s(a, "body_sha256_hex"), "{}: body hash", sv.name);
            canonical::http_request(
                s(a, "method"),
                s(a, "path"),
                n(a, "timestamp_ms"),
                &body_hash,
            )
        }
        "key_rotation" => canonical::key_rotation(
            s(a, "mesh_id"),
            u64::try_from(n(a, "epoch")).expect("epoch"),
            s(a, "check_hex"),
            s(a, "signer_pubkey_hex"),
            n(a, "signed_at_ms"),
        ),
        "admin_list" => {
            // The list is sorted by the signer: given unsorted here on purpose.
            let mut admins: Vec<String> = a["admins"]
                .as_array()
                .expect("admins")
                .iter()
                .map(|v| v.as_str().expect("hex").to_owned())
                .collect();
            admins.sort();
            canonical::admin_list(
                s(a, "mesh_id"),
                u64::try_from(n(a, "version")).expect("version"),
                n(a, "signed_at_ms"),
                &admins,
            )
        }
        "raw" => sv.string.clone(),
        other => panic!("{}: unknown kind {other:?}", sv.name),
    }
}

#[test]
fn key_derivation_matches() {
    let v = load();
    assert!(v.keys.len() >= 3);
    for k in &v.keys {
        let kp = SignKeyPair::from_seed(&arr(&k.seed));
        assert_eq!(
            kp.public_hex(),
            k.ed25519_public,
            "{}: ed25519 public",
            k.name
        );
        assert_eq!(
            kp.secret_hex(),
            k.ed25519_secret,
            "{}: ed25519 secret",
            k.name
        );

        let from_secret = SignKeyPair::from_secret(&arr(&k.ed25519_secret)).expect("secret");
        assert_eq!(from_secret.public_hex(), k.ed25519_public);
        let from_hex = SignKeyPair::from_secret_hex(&k.ed25519_secret).expect("secret hex");
        assert_eq!(from_hex.public_hex(), k.ed25519_public);

        let x = kp.to_x25519();
        assert_eq!(
            hex::encode(x.public),
            k.x25519_public,
            "{}: x25519 public",
            k.name
        );
        assert_eq!(
            hex::encode(x.secret),
            k.x25519_secret,
            "{}: x25519 secret",
            k.name
        );
        let rebuilt = BoxKeyPair::from_secret(&arr(&k.x25519_secret));
        assert_eq!(hex::encode(rebuilt.public), k.x25519_public);
    }
}

#[test]
fn pk_conversion_equals_keypair_conversion() {
    let v = load();
    for k in &v.keys {
        let kp = SignKeyPair::from_seed(&arr(&k.seed));
        let converted = crypto::ed25519_pk_to_x25519(&kp.public).expect("valid key");
        assert_eq!(converted, kp.to_x25519().public, "{}", k.name);
        assert_eq!(hex::encode(converted), k.x25519_public, "{}", k.name);
    }
    // And for fresh random keys, not only the fixed ones.
    for _ in 0..32 {
        let kp = SignKeyPair::generate();
        assert_eq!(
            crypto::ed25519_pk_to_x25519(&kp.public),
            Ok(kp.to_x25519().public)
        );
    }
}

#[test]
fn canonical_strings_match() {
    let v = load();
    let kinds: Vec<&str> = v.signed_strings.iter().map(|sv| sv.kind.as_str()).collect();
    for required in [
        "hello",
        "session_attestation",
        "session_hello",
        "invite_v2",
        "invite_v3",
        "invite_claim",
        "http_request",
    ] {
        assert!(kinds.contains(&required), "no {required} vector");
    }
    for sv in &v.signed_strings {
        assert_eq!(build(sv), sv.string, "{}: canonical string", sv.name);
        if sv.kind == "invite_v2" {
            let parsed = canonical::parse_invite_v2(&sv.string).expect("golden invite parses");
            assert_eq!(parsed.role, s(&sv.args, "role"));
            assert_eq!(parsed.owner_pubkey_hex, s(&sv.args, "owner_pubkey_hex"));
            assert_eq!(parsed.to_canonical(), sv.string);
        }
        if sv.kind == "invite_v3" {
            let parsed = canonical::parse_invite_v3(&sv.string).expect("golden v3 parses");
            assert_eq!(parsed.code, s(&sv.args, "code"));
            assert_eq!(i64::from(parsed.max_uses), n(&sv.args, "max_uses"));
            assert_eq!(parsed.signer_pubkey_hex, s(&sv.args, "signer_pubkey_hex"));
            assert_eq!(parsed.to_canonical(), sv.string);
        }
        if sv.kind == "invite_claim" {
            // The x25519 key in a claim is the claimer's, as sent: base64url without padding.
            let x: [u8; 32] = b64_arr(&URL_SAFE_NO_PAD, s(&sv.args, "recipient_x25519_b64url"));
            assert_eq!(hex::encode(x), key(&v, "session").x25519_public);
        }
    }
}

#[test]
fn root_key_check_vectors() {
    let v = load();
    assert!(!v.root_key_check.is_empty());
    for cv in &v.root_key_check {
        let key: [u8; 32] = b64_arr(&URL_SAFE_NO_PAD, &cv.key_b64url);
        assert_eq!(
            claudemesh::identity::root_key_check(&key),
            cv.check_hex,
            "{}",
            cv.name
        );
        let mut other = key;
        other[0] ^= 1;
        assert_ne!(claudemesh::identity::root_key_check(&other), cv.check_hex);
    }
}

#[test]
fn signatures_are_byte_identical_and_verify() {
    let v = load();
    let signers = signers(&v);
    for sv in &v.signed_strings {
        let kp = &signers[sv.signer.as_str()];
        let msg = build(sv);
        let sig = kp.sign(msg.as_bytes());
        assert_eq!(hex::encode(sig), sv.signature, "{}: signature", sv.name);

        let golden: [u8; 64] = arr(&sv.signature);
        assert!(
            crypto::verify(&golden, msg.as_bytes(), &kp.public),
            "{}",
            sv.name
        );

        // One flipped bit anywhere (signature, message, key) must be rejected.
        let mut bad_sig = golden;
        bad_sig[17] ^= 0x01;
        assert!(
            !crypto::verify(&bad_sig, msg.as_bytes(), &kp.public),
            "{}",
            sv.name
        );
        let mut bad_msg = msg.clone().into_bytes();
        bad_msg.push(b'x');
        if let Some(first) = bad_msg.first_mut() {
            *first ^= 0x01;
        }
        assert!(
            !crypto::verify(&golden, &bad_msg, &kp.public),
            "{}",
            sv.name
        );
        let mut bad_pk = kp.public;
        bad_pk[0] ^= 0x01;
        assert!(
            !crypto::verify(&golden, msg.as_bytes(), &bad_pk),
            "{}",
            sv.name
        );

        // The wrong key of the set never verifies.
        for (name, other) in &signers {
            if *name != sv.signer {
                assert!(!crypto::verify(&golden, msg.as_bytes(), &other.public));
            }
        }
    }
}

#[test]
fn box_vectors() {
    let v = load();
    assert!(!v.boxes.is_empty());
    for bv in &v.boxes {
        let sender = SignKeyPair::from_seed(&arr(&key(&v, &bv.sender).seed)).to_x25519();
        let recipient = SignKeyPair::from_seed(&arr(&key(&v, &bv.recipient).seed)).to_x25519();
        let nonce: [u8; 24] = b64_arr(&STANDARD, &bv.nonce_b64);
        let golden_ct = STANDARD.decode(&bv.ciphertext_b64).expect("base64");

        let ct = crypto::box_easy(
            bv.plaintext.as_bytes(),
            &nonce,
            &recipient.public,
            &sender.secret,
        )
        .expect("box_easy");
        assert_eq!(
            STANDARD.encode(&ct),
            bv.ciphertext_b64,
            "{}: ciphertext",
            bv.name
        );

        let pt = crypto::box_open_easy(&golden_ct, &nonce, &sender.public, &recipient.secret)
            .expect("open golden box");
        assert_eq!(pt, bv.plaintext.as_bytes(), "{}", bv.name);

        let mut tampered = golden_ct.clone();
        tampered[0] ^= 1;
        assert!(
            crypto::box_open_easy(&tampered, &nonce, &sender.public, &recipient.secret).is_err()
        );
    }
}

#[test]
fn secretbox_vectors() {
    let v = load();
    assert!(!v.secretbox.is_empty());
    for sb in &v.secretbox {
        let key: [u8; 32] = b64_arr(&URL_SAFE_NO_PAD, &sb.key_b64url);
        let nonce: [u8; 24] = b64_arr(&STANDARD, &sb.nonce_b64);
        let ct = crypto::secretbox_easy(sb.plaintext.as_bytes(), &nonce, &key);
        assert_eq!(
            STANDARD.encode(&ct),
            sb.ciphertext_b64,
            "{}: ciphertext",
            sb.name
        );

        let golden_ct = STANDARD.decode(&sb.ciphertext_b64).expect("base64");
        let pt = crypto::secretbox_open_easy(&golden_ct, &nonce, &key).expect("open golden");
        assert_eq!(pt, sb.plaintext.as_bytes(), "{}", sb.name);

        let mut tampered = golden_ct.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert!(crypto::secretbox_open_easy(&tampered, &nonce, &key).is_err());
    }
}

#[test]
fn sealed_box_vectors() {
    let v = load();
    assert!(!v.sealed_box.is_empty());
    for sv in &v.sealed_box {
        let kp = BoxKeyPair::from_secret(&arr(&sv.recipient_x25519_secret));
        assert_eq!(hex::encode(kp.public), sv.recipient_x25519_public);
        let ct = URL_SAFE_NO_PAD
            .decode(&sv.ciphertext_b64url)
            .expect("base64url");
        let expected = URL_SAFE_NO_PAD
            .decode(&sv.plaintext_b64url)
            .expect("base64url");
        assert_eq!(
            crypto::seal_open(&ct, &kp),
            Ok(expected.clone()),
            "{}",
            sv.name
        );

        // Our own seal to the same key opens the same way (sealing is randomised).
        let ours = crypto::seal(&expected, &kp.public).expect("seal");
        assert_eq!(crypto::seal_open(&ours, &kp), Ok(expected));

        let mut tampered = ct.clone();
        tampered[40] ^= 1;
        assert!(crypto::seal_open(&tampered, &kp).is_err());
    }
}

#[test]
fn sha256_vectors() {
    let v = load();
    assert!(!v.sha256.is_empty());
    for sv in &v.sha256 {
        let input = hex::decode(&sv.input_hex).expect("hex");
        assert_eq!(
            hex::encode(crypto::sha256(&input)),
            sv.sha256,
            "{}",
            sv.name
        );
        let mut h = crypto::Sha256::new();
        for chunk in input.chunks(7) {
            h.update(chunk);
        }
        assert_eq!(
            hex::encode(h.finalize()),
            sv.sha256,
            "{}: streaming",
            sv.name
        );
    }
}

/// The audit chain's canonical bytes, built here byte by byte from PROTOCOL.md §12.5.
#[test]
fn audit_canonical_bytes_are_as_documented() {
    use claudemesh::store::audit::{AuditRecord, CHAIN_TAG, canonical_bytes, record_hash};
    let r = AuditRecord {
        seq: 1,
        at_ms: 1_700_000_000_000,
        event: "state.set".into(),
        actor_member_id: "m1".into(),
        actor_name: "alice".into(),
        payload: [("key", "k"), ("bytes", "3")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        prev_hash: "0".repeat(64),
        hash: String::new(),
    };
    let f = |out: &mut Vec<u8>, s: &str| {
        out.extend_from_slice(&(s.len() as u32).to_be_bytes());
        out.extend_from_slice(s.as_bytes());
    };
    let mut want = Vec::new();
    f(&mut want, CHAIN_TAG);
    f(&mut want, "mesh1");
    want.extend_from_slice(&1u64.to_be_bytes());
    want.extend_from_slice(&1_700_000_000_000i64.to_be_bytes());
    for s in ["state.set", "m1", "alice"] {
        f(&mut want, s);
    }
    want.extend_from_slice(&2u32.to_be_bytes());
    for s in ["bytes", "3", "key", "k"] {
        f(&mut want, s);
    }
    want.extend_from_slice(&[0u8; 32]);
    assert_eq!(canonical_bytes("mesh1", &r).unwrap(), want);
    // Another mesh, another hash: a record cannot be moved between chains.
    assert_ne!(record_hash("mesh1", &r), record_hash("mesh2", &r));
}

/// `data/golden/audit_chain.py` hashes a chain from PROTOCOL.md §12.5 with hashlib alone.
#[test]
fn an_independently_hashed_audit_chain_verifies() {
    use claudemesh::store::audit::{AuditRecord, record_hash};
    #[derive(Deserialize)]
    struct Golden {
        mesh_id: String,
        records: Vec<AuditRecord>,
    }
    let golden: Golden =
        serde_json::from_str(include_str!("../data/golden/audit-chain.json")).unwrap();
    let mut prev = "0".repeat(64);
    for r in &golden.records {
        assert_eq!(r.prev_hash, prev, "record {}", r.seq);
        assert_eq!(
            record_hash(&golden.mesh_id, r).as_deref(),
            Some(r.hash.as_str()),
            "record {}",
            r.seq
        );
        prev = r.hash.clone();
    }
    assert_eq!(golden.records.len(), 4);
}
