//! The `targetSpec` of a `send` (PROTOCOL.md §4.1): who a message is for, as written on the
//! wire. Parsing is pure; finding the recipients it names is the broker's (`handlers::messaging`).

use super::Pubkey;

/// A parsed target spec; borrowed from the string it was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetSpec<'a> {
    /// 64 lowercase hex: a member key (all of that member's sessions) or a session key.
    Key(Pubkey),
    /// `*` or `@all`: every peer in the mesh but the sender's own sessions.
    All,
    /// `@name`: group `name` and its subgroups `name/…`; never empty.
    Group(&'a str),
    /// `#topic`: a topic (not served yet); may be empty.
    Topic(&'a str),
}

/// Why a string is not a target spec.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("\"{0}\" is not a pubkey, @group, @all or *")]
pub struct TargetError(pub String);

impl<'a> TargetSpec<'a> {
    pub fn parse(s: &'a str) -> Result<TargetSpec<'a>, TargetError> {
        if Pubkey::is_shape(s) {
            return Pubkey::parse(s)
                .map(TargetSpec::Key)
                .map_err(|_| TargetError(s.to_string()));
        }
        match s {
            "*" | "@all" => Ok(TargetSpec::All),
            _ => {
                if let Some(group) = s.strip_prefix('@').filter(|g| !g.is_empty()) {
                    Ok(TargetSpec::Group(group))
                } else if let Some(topic) = s.strip_prefix('#') {
                    Ok(TargetSpec::Topic(topic))
                } else {
                    Err(TargetError(s.to_string()))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_of_the_grammar() {
        let key = "ab".repeat(32);
        assert_eq!(
            TargetSpec::parse(&key),
            Ok(TargetSpec::Key(Pubkey::parse(&key).unwrap()))
        );
        assert_eq!(TargetSpec::parse("*"), Ok(TargetSpec::All));
        assert_eq!(TargetSpec::parse("@all"), Ok(TargetSpec::All));
        assert_eq!(
            TargetSpec::parse("@backend/api"),
            Ok(TargetSpec::Group("backend/api"))
        );
        assert_eq!(TargetSpec::parse("@é"), Ok(TargetSpec::Group("é")));
        assert_eq!(TargetSpec::parse("#t1"), Ok(TargetSpec::Topic("t1")));
        assert_eq!(TargetSpec::parse("#"), Ok(TargetSpec::Topic("")));
        for bad in [
            "",
            "@",
            "bob",
            "AB".repeat(32).as_str(),
            &"ab".repeat(31),
            " *",
        ] {
            assert_eq!(
                TargetSpec::parse(bad),
                Err(TargetError(bad.to_string())),
                "{bad:?}"
            );
        }
        assert_eq!(
            TargetError("bob".into()).to_string(),
            "\"bob\" is not a pubkey, @group, @all or *"
        );
    }
}
