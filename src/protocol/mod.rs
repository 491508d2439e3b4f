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

/// Whether two display names would pass for each other: same UTS #39 confusable skeleton
/// once case is folded, taken both ways round (folding first makes "ALICE" "alice"; the skeleton
/// first makes "AIice", with a capital i, "Alice"). So "alice", "ALICE", "аlice" (Cyrillic а)
/// and "AIice" are one name in a mesh, and nobody can pass for somebody else by a look-alike.
pub fn names_look_alike(a: &str, b: &str) -> bool {
    LookAlike::of(a).matches(b)
}

/// A name's look-alike keys ([`names_look_alike`]), made once to compare it with every name of
/// a mesh.
pub struct LookAlike([String; 2]);

impl LookAlike {
    pub fn of(name: &str) -> Self {
        LookAlike(lookalike_keys(name))
    }

    /// Whether `name` would pass for this one.
    pub fn matches(&self, name: &str) -> bool {
        let other = lookalike_keys(name);
        self.0.iter().any(|k| other.contains(k))
    }
}

fn lookalike_keys(name: &str) -> [String; 2] {
    let skeleton = |s: &str| {
        unicode_security::skeleton(s)
            .collect::<String>()
            .to_lowercase()
    };
    [skeleton(&name.to_lowercase()), skeleton(&skeleton(name))]
}

/// Names the broker gives its own senders (`webhook:NAME`, `watch:LABEL`, `tg:USER`, `system`):
/// no member or session may go by one, or by a look-alike of one.
pub fn reserved_name(name: &str) -> bool {
    // The look-alike keys of the reserved prefixes and names, made once (every hello asks).
    type Keys = [[String; 2]; 3];
    static RESERVED: std::sync::LazyLock<(Keys, Keys)> = std::sync::LazyLock::new(|| {
        (
            ["webhook:", "watch:", "tg:"].map(lookalike_keys),
            ["system", "broker", "claudemesh"].map(lookalike_keys),
        )
    });
    let (prefixes, names) = &*RESERVED;
    let keys = lookalike_keys(name.trim());
    keys.iter().enumerate().any(|(i, key)| {
        prefixes.iter().any(|p| key.starts_with(p[i].as_str()))
            || names.iter().any(|n| *key == n[i])
    })
}

/// The refusal of a reserved name given as `field`, or `None` for a name one may take.
pub fn reserved_name_refusal(field: &str, name: &str) -> Option<String> {
    reserved_name(name).then(|| {
        format!(
            "{field} \"{name}\": the broker's own senders are named webhook:…, watch:…, tg:… and system: choose another name"
        )
    })
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

#[cfg(test)]
mod tests {
    use super::names_look_alike;

    #[test]
    fn the_broker_s_sender_names_are_reserved() {
        use super::reserved_name;
        for name in [
            "webhook:github",
            "Webhook:ci",
            "watch:prod",
            "tg:alice",
            "TG:bob",
            "system",
            "System",
            " broker",
            "claudemesh",
            "webh\u{43e}ok:github",
        ] {
            assert!(reserved_name(name), "{name}");
        }
        for name in [
            "alice",
            "webhooks",
            "watcher",
            "tgx",
            "systems",
            "my webhook:",
        ] {
            assert!(!reserved_name(name), "{name}");
        }
    }

    #[test]
    fn look_alike_names_are_one_name_and_different_ones_are_not() {
        for (a, b) in [
            ("alice", "ALICE"),
            ("alice", "\u{430}lice"),
            ("alice", "AIice"),
            ("alice", "a\u{217c}ice"),
            ("marta", "rnarta"),
            ("bob", "b\u{43e}b"),
        ] {
            assert!(names_look_alike(a, b), "{a} ~ {b}");
            assert!(names_look_alike(b, a), "{b} ~ {a}");
        }
        for (a, b) in [("bob", "bobby"), ("alice", "alicia"), ("ann", "anna")] {
            assert!(!names_look_alike(a, b), "{a} !~ {b}");
        }
    }
}
