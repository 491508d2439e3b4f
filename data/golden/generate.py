#!/usr/bin/env python3
"""Regenerates data/golden/vectors.json with an implementation independent of our Rust code.

The canonical strings are built here from PROTOCOL.md by hand (f-strings), the signatures and
boxes come from PyNaCl, SHA-256 comes from hashlib, and the ed25519 -> x25519 key conversion is
recomputed in pure Python (Edwards y -> Montgomery u) and checked against PyNaCl. RFC 8032
test 1 anchors ed25519 itself. tests/golden_vectors.rs then checks the Rust crate against the
JSON, so a bug has to be made twice, identically, to slip through.

Usage:  pip install pynacl && python3 data/golden/generate.py
The output is deterministic except for the sealed box (crypto_box_seal uses a fresh ephemeral
key), so regenerating changes only that ciphertext.
"""

import base64
import hashlib
import hmac
import json
import os

import nacl.bindings
import nacl.public
import nacl.secret
import nacl.signing

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "vectors.json")

# Curve25519 field prime; used for the independent Edwards -> Montgomery conversion.
P = 2**255 - 19


def b64(data: bytes) -> str:
    """Standard base64 with padding: `nonce` / `ciphertext` fields of messages (PROTOCOL.md §2)."""
    return base64.b64encode(data).decode()


def b64url(data: bytes) -> str:
    """base64url without padding: root keys and sealed root keys (PROTOCOL.md §2, §9)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def x25519_public_from_ed25519(pk: bytes) -> bytes:
    """u = (1 + y) / (1 - y) mod p, y being the Edwards y coordinate (sign bit cleared)."""
    y = int.from_bytes(pk, "little") & ((1 << 255) - 1)
    u = (1 + y) * pow(1 - y, P - 2, P) % P
    return u.to_bytes(32, "little")


def x25519_secret_from_ed25519(seed: bytes) -> bytes:
    """libsodium's sk_to_curve25519: the clamped first half of SHA-512(seed)."""
    h = bytearray(hashlib.sha512(seed).digest()[:32])
    h[0] &= 248
    h[31] &= 127
    h[31] |= 64
    return bytes(h)


def key_entry(name: str, seed: bytes) -> dict:
    sk = nacl.signing.SigningKey(seed)
    pk = bytes(sk.verify_key)
    x_pk = bytes(sk.verify_key.to_curve25519_public_key())
    x_sk = bytes(sk.to_curve25519_private_key())
    assert x_pk == x25519_public_from_ed25519(pk), f"{name}: PyNaCl x25519 public disagrees"
    assert x_sk == x25519_secret_from_ed25519(seed), f"{name}: PyNaCl x25519 secret disagrees"
    assert nacl.bindings.crypto_scalarmult_base(x_sk) == x_pk
    return {
        "name": name,
        "seed": seed.hex(),
        "ed25519_public": pk.hex(),
        "ed25519_secret": (seed + pk).hex(),
        "x25519_public": x_pk.hex(),
        "x25519_secret": x_sk.hex(),
    }


def main() -> None:
    # RFC 8032 §7.1 TEST 1: pins ed25519 to the standard, not just to libsodium.
    rfc_seed = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
    rfc_pk = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
    rfc_sig = (
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
        "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
    )
    rfc_key = nacl.signing.SigningKey(rfc_seed)
    assert bytes(rfc_key.verify_key).hex() == rfc_pk
    assert rfc_key.sign(b"").signature.hex() == rfc_sig

    seeds = {
        "member": bytes(range(0, 32)),
        "session": bytes(range(32, 64)),
        "owner": bytes(range(64, 96)),
        "rfc8032_test1": rfc_seed,
    }
    keys = [key_entry(name, seed) for name, seed in seeds.items()]
    by_name = {k["name"]: k for k in keys}
    signers = {name: nacl.signing.SigningKey(seed) for name, seed in seeds.items()}

    member_pk = by_name["member"]["ed25519_public"]
    session_pk = by_name["session"]["ed25519_public"]
    owner_pk = by_name["owner"]["ed25519_public"]
    mesh_id = "m3sh7Qx2LpZk9VbN"
    member_id = "mbr4Hs8TgW1cYq0R"

    # The claimer's fresh x25519 key as sent in the claim body (base64url, no padding).
    claim_x25519 = b64url(bytes.fromhex(by_name["session"]["x25519_public"]))

    empty_sha = hashlib.sha256(b"").hexdigest()
    post_body = '{"cwd":"/home/dev/project","pid":4242,"status":"working"}'
    post_sha = hashlib.sha256(post_body.encode()).hexdigest()

    # Each entry: the function to call (kind), its arguments, the exact string, the signer.
    # The check value of a rotated-to key (HMAC-SHA256 over "claudemesh-root-key-check").
    rotated_check = hmac.new(bytes(range(32)), b"claudemesh-root-key-check",
                             hashlib.sha256).hexdigest()
    admins = ",".join(sorted([member_pk, session_pk]))
    specs = [
        ("hello", "hello",
         {"mesh_id": mesh_id, "member_id": member_id, "pubkey_hex": member_pk,
          "timestamp_ms": 1767225600123},
         f"{mesh_id}|{member_id}|{member_pk}|1767225600123", "member"),
        ("session_attestation", "session_attestation",
         {"parent_pubkey_hex": member_pk, "session_pubkey_hex": session_pk,
          "expires_at_ms": 1767268800123},
         f"claudemesh-session-attest|{member_pk}|{session_pk}|1767268800123", "member"),
        ("session_hello", "session_hello",
         {"mesh_id": mesh_id, "parent_pubkey_hex": member_pk, "session_pubkey_hex": session_pk,
          "timestamp_ms": 1767225601456},
         f"claudemesh-session-hello|{mesh_id}|{member_pk}|{session_pk}|1767225601456", "session"),
        ("invite_v2_member", "invite_v2",
         {"mesh_id": mesh_id, "invite_id": "inv5Jd2Ke8Lf", "expires_at_unix_seconds": 1767830400,
          "role": "member", "owner_pubkey_hex": owner_pk},
         f"v=2|{mesh_id}|inv5Jd2Ke8Lf|1767830400|member|{owner_pk}", "owner"),
        ("invite_v2_admin", "invite_v2",
         {"mesh_id": mesh_id, "invite_id": "inv9Pq3Rs7Tu", "expires_at_unix_seconds": 1767830400,
          "role": "admin", "owner_pubkey_hex": owner_pk},
         f"v=2|{mesh_id}|inv9Pq3Rs7Tu|1767830400|admin|{owner_pk}", "owner"),
        ("invite_v3_member_by_owner", "invite_v3",
         {"mesh_id": mesh_id, "invite_id": "inv5Jd2Ke8Lf", "code": "Xy7Kp2Qa", "max_uses": 1,
          "expires_at_unix_seconds": 1767830400, "role": "member",
          "signer_pubkey_hex": owner_pk},
         f"v=3|{mesh_id}|inv5Jd2Ke8Lf|Xy7Kp2Qa|1|1767830400|member|{owner_pk}", "owner"),
        ("invite_v3_admin_by_admin_member", "invite_v3",
         {"mesh_id": mesh_id, "invite_id": "inv9Pq3Rs7Tu", "code": "Bc4Df6Gh", "max_uses": 25,
          "expires_at_unix_seconds": 1767830400, "role": "admin",
          "signer_pubkey_hex": member_pk},
         f"v=3|{mesh_id}|inv9Pq3Rs7Tu|Bc4Df6Gh|25|1767830400|admin|{member_pk}", "member"),
        ("invite_claim", "invite_claim",
         {"code": "Xy7Kp2Qa", "recipient_x25519_b64url": claim_x25519,
          "member_pubkey_hex": member_pk, "timestamp_ms": 1767225604000},
         f"claudemesh-claim|Xy7Kp2Qa|{claim_x25519}|{member_pk}|1767225604000", "member"),
        ("http_get_empty_body", "http_request",
         {"method": "GET", "path": "/download/f1Le2Id3Ab4Cd5Ef?inline=1",
          "timestamp_ms": 1767225602000, "body": "", "body_sha256_hex": empty_sha},
         f"GET|/download/f1Le2Id3Ab4Cd5Ef?inline=1|1767225602000|{empty_sha}", "member"),
        ("http_post_json_body", "http_request",
         {"method": "POST", "path": "/hook/set-status", "timestamp_ms": 1767225603000,
          "body": post_body, "body_sha256_hex": post_sha},
         f"POST|/hook/set-status|1767225603000|{post_sha}", "member"),
        ("key_rotation", "key_rotation",
         {"mesh_id": mesh_id, "epoch": 3, "check_hex": rotated_check,
          "signer_pubkey_hex": owner_pk, "signed_at_ms": 1767225605000},
         f"claudemesh-key-rotation|v=1|{mesh_id}|3|{rotated_check}|{owner_pk}|1767225605000",
         "owner"),
        ("admin_list", "admin_list",
         {"mesh_id": mesh_id, "version": 2, "signed_at_ms": 1767225606000,
          "admins": [session_pk, member_pk]},
         f"claudemesh-admins|v=1|{mesh_id}|2|1767225606000|{admins}", "owner"),
    ]
    signed = []
    for name, kind, args, string, signer in specs:
        sig = signers[signer].sign(string.encode("utf-8")).signature
        signers[signer].verify_key.verify(string.encode("utf-8"), sig)
        signed.append({"name": name, "kind": kind, "args": args, "string": string,
                       "signer": signer, "signature": sig.hex()})
    signed.append({"name": "rfc8032_test1_empty", "kind": "raw", "args": {}, "string": "",
                   "signer": "rfc8032_test1", "signature": rfc_sig})

    # Direct message (§4.2): member -> session, both keys converted from ed25519.
    nonce = bytes(range(100, 124))
    dm_plain = "hi from the member key — über ✓"
    sender = nacl.public.PrivateKey(bytes.fromhex(by_name["member"]["x25519_secret"]))
    recipient = nacl.public.PrivateKey(bytes.fromhex(by_name["session"]["x25519_secret"]))
    dm_ct = nacl.public.Box(sender, recipient.public_key).encrypt(dm_plain.encode(), nonce).ciphertext
    assert nacl.public.Box(recipient, sender.public_key).decrypt(dm_ct, nonce) == dm_plain.encode()
    box_vectors = [{
        "name": "direct_member_to_session",
        "sender": "member",
        "recipient": "session",
        "nonce_b64": b64(nonce),
        "plaintext": dm_plain,
        "ciphertext_b64": b64(dm_ct),
    }]

    # Group message, bodyVersion 2 (§4.2), and an empty plaintext edge case.
    root_key = bytes(range(200, 232))
    secretbox_vectors = []
    for name, plain, n in [
        ("group_body_v2", '{"text":"deploy at 5pm","from":"alice"}', bytes(range(1, 25))),
        ("empty_plaintext", "", bytes(24)),
    ]:
        ct = nacl.secret.SecretBox(root_key).encrypt(plain.encode(), n).ciphertext
        secretbox_vectors.append({"name": name, "key_b64url": b64url(root_key),
                                  "nonce_b64": b64(n), "plaintext": plain,
                                  "ciphertext_b64": b64(ct)})

    # Invite claim (§9): the mesh root key sealed to the claimer's fresh x25519 key.
    claimer_secret = bytes(range(150, 182))
    claimer = nacl.public.PrivateKey(claimer_secret)
    sealed = nacl.public.SealedBox(claimer.public_key).encrypt(root_key)
    assert nacl.public.SealedBox(claimer).decrypt(sealed) == root_key
    sealed_vectors = [{
        "name": "sealed_root_key",
        "recipient_x25519_secret": claimer_secret.hex(),
        "recipient_x25519_public": bytes(claimer.public_key).hex(),
        "plaintext_b64url": b64url(root_key),
        "ciphertext_b64url": b64url(sealed),
    }]

    # Root-key check value (PROTOCOL.md §9): HMAC-SHA256(root_key, "claudemesh-root-key-check"),
    # hex. Python's hmac module, independent of libsodium.
    check_vectors = [
        {"name": name, "key_b64url": b64url(key),
         "check_hex": hmac.new(key, b"claudemesh-root-key-check", hashlib.sha256).hexdigest()}
        for name, key in [("group_root_key", root_key), ("zero_key", bytes(32))]
    ]

    sha_vectors = [
        {"name": name, "input_hex": data.hex(), "sha256": hashlib.sha256(data).hexdigest()}
        for name, data in [
            ("empty", b""),
            ("abc", b"abc"),
            ("utf8", "mesh ✓ über".encode()),
            ("multi_block_1000", bytes(i % 251 for i in range(1000))),
        ]
    ]

    vectors = {
        "about": "Generated by data/golden/generate.py (PyNaCl + hashlib); checked by "
                 "tests/golden_vectors.rs. Do not edit by hand.",
        "pynacl_version": nacl.__version__,
        "keys": keys,
        "signed_strings": signed,
        "box": box_vectors,
        "secretbox": secretbox_vectors,
        "sealed_box": sealed_vectors,
        "root_key_check": check_vectors,
        "sha256": sha_vectors,
    }
    with open(OUT, "w", encoding="utf-8") as f:
        json.dump(vectors, f, indent=2, ensure_ascii=False)
        f.write("\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
