//! What a person pastes into `claudemesh join`: invite URLs and bare codes
//! (`cli::parse_invite`, `ids::is_invite_code`), and broker URLs (`identity::http_base`).
#![no_main]

use claudemesh::cli::parse_invite;
use claudemesh::identity::{http_base, ws_url};
use claudemesh::protocol::ids;
use libfuzzer_sys::fuzz_target;

const BROKER: &str = "ws://broker.test:7900/ws";

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let _ = ids::is_id(s);
    if let Ok(link) = parse_invite(s, Some(BROKER)) {
        let (base, code) = (link.base, link.code);
        assert!(ids::is_invite_code(&code), "{code:?} accepted as a code");
        let (scheme, host) = base.split_once("://").expect("a scheme");
        assert!(scheme == "http" || scheme == "https", "{base:?}");
        assert!(!host.is_empty() && !base.ends_with('/'), "{base:?}");
    }
    if ids::is_invite_code(s) {
        let link = parse_invite(s, Some(BROKER)).expect("a bare code is accepted");
        let (base, code) = (link.base, link.code);
        assert_eq!(
            (base.as_str(), code.as_str()),
            ("http://broker.test:7900", s)
        );
    }
    let base = http_base(s);
    assert!(base.starts_with("http://") || base.starts_with("https://"));
    assert!(ws_url(s).ends_with("/ws"));
});
