//! HTTP headers a peer sends: the upload headers of `POST /upload` (`parse_upload_headers`),
//! the member-signature headers (`parse_signed_headers`), and the name a downloaded file is
//! saved under (`client::files::safe_file_name`).
//!
//! Input: lines; the first byte of a line picks the header name, the rest is its value.
#![no_main]

use claudemesh::broker::parsers::{
    FileGrant, TokenPurpose, parse_signed_headers, parse_upload_headers,
};
use claudemesh::client::files::safe_file_name;
use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;

const NAMES: &[&str] = &[
    "x-mesh-id",
    "x-file-name",
    "x-tags",
    "x-persistent",
    "x-target-spec",
    "x-encrypted",
    "x-owner-pubkey",
    "x-file-keys",
    "content-type",
    "content-length",
    "x-claudemesh-pubkey",
    "x-claudemesh-timestamp",
    "x-claudemesh-signature",
    "authorization",
    "expect",
];

const MESH: &str = "mesh1";
const NOW_MS: i64 = 1_700_000_000_000;

fuzz_target!(|data: &[u8]| {
    let mut headers = HeaderMap::new();
    for line in data.split(|b| *b == b'\n') {
        let Some((&pick, value)) = line.split_first() else {
            continue;
        };
        let name = HeaderName::from_static(NAMES[pick as usize % NAMES.len()]);
        if let Ok(value) = HeaderValue::from_bytes(value) {
            headers.append(name, value);
        }
    }
    let grant = FileGrant {
        purpose: TokenPurpose::Upload,
        mesh_id: MESH.into(),
        member_id: "member1".into(),
        peer_name: "alice".into(),
        pubkey: "ab".repeat(32),
        member_pubkey: "cd".repeat(32),
        expires_at_ms: NOW_MS,
    };
    if let Ok(meta) = parse_upload_headers(&headers, &grant) {
        let name = safe_file_name(&meta.name, "f1");
        assert!(!name.is_empty() && name != "." && name != "..", "{name:?}");
        assert!(
            !name.contains(['/', '\\']),
            "{name:?} could leave its directory"
        );
        assert!(!name.chars().any(char::is_control), "{name:?}");
    }
    if let Ok(signed) = parse_signed_headers(&headers, NOW_MS) {
        assert!(NOW_MS.abs_diff(signed.timestamp_ms) <= 60_000);
    }
});
