use super::*;

#[test]
fn broker_urls_normalise() {
    assert_eq!(ws_url("127.0.0.1:7900"), "ws://127.0.0.1:7900/ws");
    assert_eq!(ws_url("http://h:1/"), "ws://h:1/ws");
    assert_eq!(ws_url("wss://h/ws"), "wss://h/ws");
    assert_eq!(http_base("ws://h:7900/ws"), "http://h:7900");
    assert_eq!(http_base("h:1//ws/"), "http://h:1");
}

/// No secret in any form a log line or an error could carry: hex of the member and owner
/// secrets (whole, or the seed half alone), the root key in base64url, hex or bytes.
#[test]
fn debug_never_shows_secrets() {
    let member = SignKeyPair::generate();
    let owner = SignKeyPair::generate();
    let root = [0xa7; 32];
    let mut e = test_entry(&member, &root, Some(&owner));
    let old = [0x5c; 32];
    e.add_root_key(0, &root);
    e.key_epoch = 1;
    e.old_root_keys.push(EpochRootKey {
        epoch: 0,
        key: encode_root_key(&old),
    });
    let mut config = Config::default();
    config.upsert(e.clone());
    let secrets = [
        member.secret_hex(),
        member.secret_hex()[..64].to_string(),
        owner.secret_hex(),
        owner.secret_hex()[..64].to_string(),
        encode_root_key(&root),
        hex::encode(root),
        encode_root_key(&old),
        hex::encode(old),
        format!("{:?}", &root[..8])
            .trim_end_matches(']')
            .to_string(),
    ];
    for shown in [
        format!("{e:?}"),
        format!("{e:#?}"),
        format!("{config:?}"),
        format!("{config:#?}"),
        format!("{:?}", Some(&e)),
    ] {
        for s in &secrets {
            assert!(!shown.contains(s.as_str()), "{s} is in {shown}");
        }
        assert!(shown.contains(&e.member_pubkey), "public fields still show");
        assert!(shown.contains("<redacted>"));
    }
}

/// A config with a secret where another type belongs: serde would quote the value in its
/// error ("invalid type: string \"…\"") and the CLI prints that error.
#[test]
fn a_corrupt_config_error_does_not_quote_values() {
    let dir = tempfile::tempdir().unwrap();
    let cfg_dir = ConfigDir::new(dir.path());
    let keys = SignKeyPair::generate();
    let text = format!("{{\"version\": \"{}\", \"meshes\": []}}", keys.secret_hex());
    std::fs::write(cfg_dir.config_file(), text).unwrap();
    let e = cfg_dir.load().unwrap_err();
    let shown = format!("{e} {e:?}");
    assert!(!shown.contains(&keys.secret_hex()[..16]), "{shown}");
    assert!(shown.contains("line 1"), "{shown}");
}

/// Keys of every epoch stay: a newer one becomes current, an older one joins the old
/// ones, one held already never changes; processes adding keys at once lose none.
#[test]
fn root_keys_of_every_epoch_are_kept() {
    let keys = SignKeyPair::generate();
    let mut e = test_entry(&keys, &[0; 32], None);
    assert!(e.add_root_key(2, &[2; 32]));
    assert!(e.add_root_key(1, &[1; 32]));
    assert!(!e.add_root_key(1, &[9; 32]), "a held key never changes");
    assert_eq!(e.key_epoch, 2);
    assert_eq!(e.root_key().unwrap(), [2; 32]);
    for epoch in 0..=2u8 {
        assert_eq!(e.root_key_at(u64::from(epoch)), Some([epoch; 32]));
    }
    assert_eq!(e.root_key_at(3), None);

    let dir = tempfile::tempdir().unwrap();
    let cfg_dir = ConfigDir::new(dir.path().join("cm"));
    cfg_dir
        .update(|cfg| {
            cfg.upsert(test_entry(&keys, &[0; 32], None));
            Ok(())
        })
        .unwrap();
    let writers: Vec<_> = (1..=8u8)
        .map(|epoch| {
            let cfg_dir = cfg_dir.clone();
            std::thread::spawn(move || {
                cfg_dir
                    .update(|cfg| {
                        cfg.meshes[0].add_root_key(u64::from(epoch), &[epoch; 32]);
                        Ok(())
                    })
                    .unwrap()
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    let back = cfg_dir.load().unwrap();
    let e = back.select(None).unwrap();
    assert_eq!(e.key_epoch, 8);
    for epoch in 0..=8u8 {
        assert_eq!(
            e.root_key_at(u64::from(epoch)),
            Some([epoch; 32]),
            "{epoch}"
        );
    }
}

/// A sealed copy (or a key this client rotated to) replaces a different key held for its
/// epoch, current or old; the same key changes nothing; a new epoch is added as usual.
#[test]
fn a_sealed_key_replaces_a_different_one_for_its_epoch() {
    let keys = SignKeyPair::generate();
    let mut e = test_entry(&keys, &[0; 32], None);
    assert!(
        e.add_root_key(1, &[0; 32]),
        "a link planted epoch 0's key as epoch 1"
    );
    assert!(e.set_sealed_root_key(1, &[1; 32]));
    assert_eq!((e.key_epoch, e.root_key_at(1)), (1, Some([1; 32])));
    assert!(!e.set_sealed_root_key(1, &[1; 32]));
    assert!(e.set_sealed_root_key(0, &[7; 32]), "an old epoch too");
    assert_eq!(e.root_key_at(0), Some([7; 32]));
    assert!(e.set_sealed_root_key(2, &[2; 32]));
    assert_eq!((e.key_epoch, e.root_key_at(1)), (2, Some([1; 32])));
}

#[test]
fn config_is_private_and_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let cfg_dir = ConfigDir::new(dir.path().join("cm"));
    assert!(cfg_dir.load().unwrap().meshes.is_empty());
    let keys = SignKeyPair::generate();
    cfg_dir
        .update(|cfg| {
            cfg.upsert(test_entry(&keys, &[7; 32], None));
            Ok(())
        })
        .unwrap();
    let back = cfg_dir.load().unwrap();
    assert_eq!(back.select(None).unwrap().slug, "team");
    assert_eq!(
        back.select(Some("m1")).unwrap().root_key().unwrap(),
        [7; 32]
    );
    assert!(back.select(Some("nope")).is_err());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&cfg_dir.path), 0o700);
        assert_eq!(mode(&cfg_dir.config_file()), 0o600);
    }
}
