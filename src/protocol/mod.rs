//! The wire contract shared by broker and client (PROTOCOL.md).

pub mod canonical;
pub mod codec;
pub mod ids;
pub mod keys;
pub mod lan;
pub mod messages;
pub mod target;
pub mod time;

pub use codec::{DecodeError, Encoding};
pub use keys::{Pubkey, Signature};
pub use messages::{ClientMessage, Envelope, ServerMessage};
pub use target::TargetSpec;

/// Default `MAX_MESSAGE_BYTES`: the largest frame either side accepts.
pub const MAX_MESSAGE_BYTES: usize = 65_536;
/// Allowed clock difference for signed hellos and requests.
pub const MAX_SKEW_MS: i64 = 60_000;
/// Longest lifetime a session attestation may claim.
pub const MAX_ATTESTATION_TTL_MS: i64 = 24 * 60 * 60 * 1000;
/// Lifetime our clients give the attestations they mint.
pub const ATTESTATION_TTL_MS: i64 = 12 * 60 * 60 * 1000;

/// Characters that print as nothing or reorder what follows (Unicode format characters,
/// fillers and variation selectors).
fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}'
        | '\u{180B}'..='\u{180F}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{206F}' | '\u{3164}' | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}'
        | '\u{FFA0}' | '\u{FFF9}'..='\u{FFFB}' | '\u{1D173}'..='\u{1D17A}'
        | '\u{E0000}'..='\u{E0FFF}')
}

/// What two display names must not share in one mesh: their UTS #39 confusable skeleton, case
/// folded, so "alice", "ALICE" and "аlice" (Cyrillic а) are one name and nobody can pass for
/// somebody else by a look-alike.
pub fn name_lookalike_key(name: &str) -> String {
    unicode_security::skeleton(&name.to_lowercase())
        .collect::<String>()
        .to_lowercase()
}

/// Longest display name kept; longer ones are cut, not refused.
pub const MAX_DISPLAY_NAME: usize = 64;

/// A display name as others will see it: control characters (escape sequences, newlines) and
/// invisible ones (zero-width, direction overrides: "alice\u{200b}" must not pass for "alice")
/// removed, trimmed, cut to [`MAX_DISPLAY_NAME`] characters; `None` when nothing is left.
pub fn clean_display_name(name: &str) -> Option<String> {
    let name: String = name
        .chars()
        .filter(|c| !c.is_control() && !is_invisible(*c))
        .collect();
    let name: String = name.trim().chars().take(MAX_DISPLAY_NAME).collect();
    let name = name.trim_end();
    (!name.is_empty()).then(|| name.to_string())
}
