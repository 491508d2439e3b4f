use super::*;

#[test]
fn libsodium_is_initialised_before_first_use() {
    let _ = SignKeyPair::generate();
    // SAFETY: no arguments. 1 means "already initialised".
    assert_eq!(unsafe { ffi::sodium_init() }, 1);
}

/// Secret halves are zeroed when a key pair is dropped (read back from storage that
/// `ManuallyDrop` keeps alive after running the destructor).
#[test]
fn secrets_are_zeroed_on_drop() {
    let mut sign = std::mem::ManuallyDrop::new(SignKeyPair::generate());
    assert_ne!(sign.secret, [0; 64]);
    // SAFETY: dropped once; only plain bytes are read afterwards, never used as a key.
    unsafe { std::mem::ManuallyDrop::drop(&mut sign) };
    assert_eq!(
        sign.secret, [0; 64],
        "a signing secret outlived its key pair"
    );

    let mut boxed = std::mem::ManuallyDrop::new(BoxKeyPair::generate());
    assert_ne!(boxed.secret, [0; 32]);
    // SAFETY: as above.
    unsafe { std::mem::ManuallyDrop::drop(&mut boxed) };
    assert_eq!(boxed.secret, [0; 32], "a box secret outlived its key pair");

    let mut bytes = [7u8; 48];
    wipe(&mut bytes[8..40]);
    assert_eq!(bytes[..8], [7; 8]);
    assert_eq!(bytes[8..40], [0; 32]);
    assert_eq!(bytes[40..], [7; 8]);
}

#[test]
fn sign_verify_round_trip_and_tamper() {
    let kp = SignKeyPair::generate();
    let sig = kp.sign(b"hello mesh");
    assert!(verify(&sig, b"hello mesh", &kp.public));
    assert!(!verify(&sig, b"hello mesh!", &kp.public));
    let mut bad = sig;
    bad[0] ^= 1;
    assert!(!verify(&bad, b"hello mesh", &kp.public));
    let other = SignKeyPair::generate();
    assert!(!verify(&sig, b"hello mesh", &other.public));
}

#[test]
fn secret_round_trip_and_mismatch() {
    let kp = SignKeyPair::from_seed(&[7; 32]);
    let again = SignKeyPair::from_secret(&kp.secret).expect("valid secret");
    assert_eq!(again.public, kp.public);
    let from_hex = SignKeyPair::from_secret_hex(&kp.secret_hex()).expect("valid hex");
    assert_eq!(from_hex.public_hex(), kp.public_hex());

    let mut corrupted = kp.secret;
    corrupted[40] ^= 1;
    assert!(matches!(
        SignKeyPair::from_secret(&corrupted),
        Err(CryptoError::InvalidKey(_))
    ));
    assert!(matches!(
        SignKeyPair::from_secret_hex("abcd"),
        Err(CryptoError::Encoding(_))
    ));
    assert!(matches!(
        SignKeyPair::from_secret_hex(&"zz".repeat(64)),
        Err(CryptoError::Encoding(_))
    ));
}

#[test]
fn debug_hides_secrets() {
    let kp = SignKeyPair::from_seed(&[9; 32]);
    let shown = format!("{kp:?} {:?}", kp.to_x25519());
    assert!(!shown.contains(&kp.secret_hex()[..16]));
    assert!(!shown.contains(&hex::encode(kp.to_x25519().secret)));
    assert!(shown.contains(&kp.public_hex()));
    assert!(shown.contains(&hex::encode(kp.to_x25519().public)));
}

#[test]
fn x25519_conversion_agrees() {
    let kp = SignKeyPair::generate();
    let x = kp.to_x25519();
    assert_eq!(ed25519_pk_to_x25519(&kp.public), Ok(x.public));
    // The identity point is not a usable key.
    let mut identity = [0u8; 32];
    identity[0] = 1;
    assert!(ed25519_pk_to_x25519(&identity).is_err());
}

#[test]
fn box_round_trip_wrong_key_and_tamper() {
    let alice = BoxKeyPair::generate();
    let bob = BoxKeyPair::generate();
    let eve = BoxKeyPair::generate();
    let nonce = random_bytes::<24>();
    let ct = box_easy(b"secret plan", &nonce, &bob.public, &alice.secret).expect("box");
    assert_eq!(ct.len(), b"secret plan".len() + MAC_BYTES);
    let pt = box_open_easy(&ct, &nonce, &alice.public, &bob.secret).expect("open");
    assert_eq!(pt, b"secret plan");

    assert_eq!(
        box_open_easy(&ct, &nonce, &alice.public, &eve.secret),
        Err(CryptoError::Decrypt)
    );
    let mut tampered = ct.clone();
    tampered[20] ^= 0x80;
    assert_eq!(
        box_open_easy(&tampered, &nonce, &alice.public, &bob.secret),
        Err(CryptoError::Decrypt)
    );
    let mut other_nonce = nonce;
    other_nonce[0] ^= 1;
    assert!(box_open_easy(&ct, &other_nonce, &alice.public, &bob.secret).is_err());
    for len in 0..MAC_BYTES {
        assert_eq!(
            box_open_easy(&ct[..len], &nonce, &alice.public, &bob.secret),
            Err(CryptoError::Decrypt)
        );
    }
    // Empty plaintext is legal and round-trips.
    let empty = box_easy(b"", &nonce, &bob.public, &alice.secret).expect("box");
    assert_eq!(
        box_open_easy(&empty, &nonce, &alice.public, &bob.secret),
        Ok(vec![])
    );
}

#[test]
fn box_refuses_low_order_key() {
    let alice = BoxKeyPair::generate();
    assert!(matches!(
        box_easy(b"x", &[0; 24], &[0; 32], &alice.secret),
        Err(CryptoError::InvalidKey(_))
    ));
    assert!(matches!(
        seal(b"x", &[0; 32]),
        Err(CryptoError::InvalidKey(_))
    ));
}

#[test]
fn seal_round_trip_wrong_key_and_tamper() {
    let bob = BoxKeyPair::generate();
    let root_key = random_bytes::<32>();
    let ct = seal(&root_key, &bob.public).expect("seal");
    assert_eq!(ct.len(), 32 + SEAL_BYTES);
    assert_eq!(seal_open(&ct, &bob), Ok(root_key.to_vec()));
    assert_eq!(
        seal_open(&ct, &BoxKeyPair::generate()),
        Err(CryptoError::Decrypt)
    );
    let mut tampered = ct.clone();
    tampered[50] ^= 1;
    assert_eq!(seal_open(&tampered, &bob), Err(CryptoError::Decrypt));
    for len in 0..SEAL_BYTES {
        assert_eq!(seal_open(&ct[..len], &bob), Err(CryptoError::Decrypt));
    }
    let rebuilt = BoxKeyPair::from_secret(&bob.secret);
    assert_eq!(rebuilt.public, bob.public);
}

#[test]
fn sealed_to_many_opens_for_each_recipient_and_its_context_only() {
    let (a, b, c) = (
        BoxKeyPair::generate(),
        BoxKeyPair::generate(),
        BoxKeyPair::generate(),
    );
    let here = [7u8; 32];
    let s = seal_to_many(b"the value", &here, &[a.public, b.public]).unwrap();
    let (ct, nonce, sealed) = (s.ciphertext, s.nonce, s.sealed_keys);
    assert_eq!(sealed.len(), 2);
    assert_eq!(sealed[0].len(), SEALED_BOUND_KEY_BYTES);
    for (sealed, kp) in [(&sealed[0], &a), (&sealed[1], &b)] {
        assert_eq!(
            open_sealed_key(&ct, &nonce, sealed, &here, false, kp).unwrap(),
            b"the value"
        );
        assert_eq!(
            open_sealed_key(&ct, &nonce, sealed, &[8u8; 32], true, kp),
            Err(CryptoError::WrongContext)
        );
    }
    assert_eq!(
        open_sealed_key(&ct, &nonce, &sealed[0], &here, false, &c),
        Err(CryptoError::Decrypt)
    );
    let mut tampered = ct.clone();
    tampered[0] ^= 1;
    assert_eq!(
        open_sealed_key(&tampered, &nonce, &sealed[0], &here, false, &a),
        Err(CryptoError::Decrypt)
    );
    // A bare sealed key (the original's scheme) opens only where that is allowed.
    let key = random_bytes::<32>();
    let ct = secretbox_easy(b"old", &nonce, &key);
    let bare = seal(&key, &a.public).unwrap();
    assert_eq!(
        open_sealed_key(&ct, &nonce, &bare, &here, true, &a).unwrap(),
        b"old"
    );
    assert_eq!(
        open_sealed_key(&ct, &nonce, &bare, &here, false, &a),
        Err(CryptoError::WrongContext)
    );
}

#[test]
fn secretbox_round_trip_wrong_key_and_tamper() {
    let key = random_bytes::<32>();
    let nonce = random_bytes::<24>();
    let ct = secretbox_easy(b"group hello", &nonce, &key);
    assert_eq!(
        secretbox_open_easy(&ct, &nonce, &key),
        Ok(b"group hello".to_vec())
    );
    assert_eq!(
        secretbox_open_easy(&ct, &nonce, &random_bytes::<32>()),
        Err(CryptoError::Decrypt)
    );
    let mut tampered = ct.clone();
    *tampered.last_mut().expect("non-empty") ^= 1;
    assert_eq!(
        secretbox_open_easy(&tampered, &nonce, &key),
        Err(CryptoError::Decrypt)
    );
    assert_eq!(
        secretbox_open_easy(&[], &nonce, &key),
        Err(CryptoError::Decrypt)
    );
}

#[test]
fn sha256_known_answers_and_streaming() {
    assert_eq!(
        hex::encode(sha256(b"")),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    assert_eq!(
        hex::encode(sha256(b"abc")),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    let data = random_vec(10_000);
    let mut h = Sha256::new();
    for chunk in data.chunks(333) {
        h.update(chunk);
    }
    assert_eq!(h.finalize(), sha256(&data));

    let mut w = Sha256::default();
    std::io::copy(&mut &data[..], &mut w).expect("write to hasher");
    assert_eq!(w.finalize(), sha256(&data));
}

#[test]
fn constant_time_eq_cases() {
    assert!(constant_time_eq(b"token", b"token"));
    assert!(!constant_time_eq(b"token", b"tokem"));
    assert!(!constant_time_eq(b"token", b"token2"));
    assert!(constant_time_eq(b"", b""));
}

#[test]
fn randomness_shapes() {
    assert_ne!(random_bytes::<32>(), random_bytes::<32>());
    assert_eq!(random_vec(17).len(), 17);
    for _ in 0..1000 {
        assert!(random_u32_below(62) < 62);
    }
    assert_eq!(random_u32_below(1), 0);
}
