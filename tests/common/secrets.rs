//! Confidentiality checks: a secret (a message text, a key, a file's bytes) must not reach the
//! broker's disk or its log in any spelling it could be stored or printed in.

use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};

use super::BrokerProc;

/// Every file under `dir`, recursively (none if `dir` is missing).
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = e.path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// The ways `secret` can appear inside stored or printed bytes: itself, hex in both cases, and
/// base64 in both alphabets at each of the three byte alignments it can start at inside a
/// longer encoded run (with or without padding, the aligned middle is the same text).
pub fn spellings(secret: &[u8]) -> Vec<(String, Vec<u8>)> {
    assert!(
        secret.len() >= 8,
        "a secret shorter than 8 bytes would match by chance"
    );
    let mut out = vec![
        ("raw".to_string(), secret.to_vec()),
        ("hex".into(), hex::encode(secret).into_bytes()),
        ("HEX".into(), hex::encode_upper(secret).into_bytes()),
    ];
    for skip in 0..3 {
        let rest = &secret[skip..];
        let whole = &rest[..rest.len() / 3 * 3];
        for (alphabet, engine) in [
            ("base64", &STANDARD_NO_PAD),
            ("base64url", &URL_SAFE_NO_PAD),
        ] {
            out.push((
                format!("{alphabet} from byte {skip}"),
                engine.encode(whole).into_bytes(),
            ));
        }
    }
    out
}

/// Panics, naming the place and the spelling, if `haystack` holds `secret` in any spelling.
pub fn assert_not_in(what: &str, haystack: &[u8], secret: &[u8]) {
    for (name, needle) in spellings(secret) {
        assert!(
            !haystack
                .windows(needle.len())
                .any(|w| w == needle.as_slice()),
            "{what} holds the secret ({name})"
        );
    }
}

/// The broker never had `secret`: no file under its data dir and no line of its output holds
/// it in any spelling.
pub fn assert_broker_never_saw(broker: &BrokerProc, secret: &[u8]) {
    let files = files_under(broker.data_dir());
    assert!(
        files.iter().any(|f| f.ends_with("mesh.redb")),
        "the data dir is not where the store is: {files:?}"
    );
    for file in files {
        let bytes = std::fs::read(&file).unwrap_or_default();
        assert_not_in(&file.display().to_string(), &bytes, secret);
    }
    let log = [broker.stdout_lines(), broker.stderr_lines()]
        .concat()
        .join("\n");
    assert_not_in("the broker's log", log.as_bytes(), secret);
}

#[test]
fn every_spelling_is_caught() {
    let secret = b"swordfish-4711-launch";
    for prefix in 0..3 {
        let mut stream = vec![b'x'; prefix];
        stream.extend_from_slice(secret);
        stream.extend_from_slice(b"tail");
        for encoded in [
            base64::engine::general_purpose::STANDARD.encode(&stream),
            URL_SAFE_NO_PAD.encode(&stream),
            hex::encode(&stream),
        ] {
            let caught = std::panic::catch_unwind(|| {
                assert_not_in("a test", encoded.as_bytes(), secret);
            });
            assert!(caught.is_err(), "{encoded} slipped through");
        }
    }
    assert_not_in("a test", b"nothing to see here, not at all", secret);
}
