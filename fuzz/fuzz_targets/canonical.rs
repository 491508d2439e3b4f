//! Strings a peer writes that the broker parses: `send` target specs, invite v2/v3 canonical
//! strings, keys and signatures. Whatever parses must mean exactly what was written.
#![no_main]

use claudemesh::protocol::{Pubkey, Signature, TargetSpec, canonical};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    match TargetSpec::parse(s) {
        Ok(TargetSpec::Key(key)) => assert_eq!(key.to_hex(), s),
        Ok(TargetSpec::All) => assert!(s == "*" || s == "@all"),
        Ok(TargetSpec::Group(g)) => {
            assert!(!g.is_empty() && g != "all");
            assert_eq!(format!("@{g}"), s);
        }
        Ok(TargetSpec::Topic(t)) => assert_eq!(format!("#{t}"), s),
        Err(e) => assert!(e.to_string().contains(s)),
    }
    if let Ok(fields) = canonical::parse_invite_v2(s) {
        assert_eq!(fields.to_canonical(), s);
    }
    if let Ok(fields) = canonical::parse_invite_v3(s) {
        assert_eq!(fields.to_canonical(), s);
    }
    if let Ok(key) = Pubkey::parse(s) {
        assert_eq!(key.to_hex(), s);
    }
    if let Ok(sig) = Signature::parse(s) {
        assert_eq!(sig.to_hex(), s);
    }
});
