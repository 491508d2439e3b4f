//! A deployment's `network_allow` when it names hosts: which hosts (and ports) its proxy lets
//! the service reach. Parsed once when the deployment is checked; the proxy asks [`AllowList::allows`]
//! for each connection.

use std::net::IpAddr;

/// Entries one list may hold.
pub const MAX_ENTRIES: usize = 32;
/// The longest DNS name.
const MAX_NAME: usize = 253;

/// What one entry matches.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Pattern {
    /// This name (lowercase, without a final dot).
    Name(String),
    /// Names ending in `.suffix`, never `suffix` itself.
    Subdomains(String),
    /// This address, only when asked for literally.
    Ip(IpAddr),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    pattern: Pattern,
    /// `None`: any port.
    port: Option<u16>,
}

/// The hosts a service may reach through its proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowList {
    entries: Vec<Entry>,
}

impl AllowList {
    /// Parses a `network_allow` of names: `api.example.com`, `*.example.com`, `10.0.0.2`,
    /// `[::1]`, each optionally with `:PORT`. The reason names the entry when one is wrong.
    pub fn parse(list: &[String]) -> Result<AllowList, String> {
        if list.len() > MAX_ENTRIES {
            return Err(format!(
                "network_allow may name at most {MAX_ENTRIES} hosts"
            ));
        }
        let entries = list
            .iter()
            .map(|e| parse_entry(e))
            .collect::<Result<_, _>>()?;
        Ok(AllowList { entries })
    }

    /// Whether a connection to `host:port` is allowed; `host` as the client asked for it (a
    /// name, an IPv4 address or an IPv6 address with or without brackets).
    pub fn allows(&self, host: &str, port: u16) -> bool {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let asked = match host.parse::<IpAddr>() {
            Ok(ip) => Pattern::Ip(ip),
            Err(_) => Pattern::Name(host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase()),
        };
        self.entries.iter().any(|e| {
            e.port.is_none_or(|p| p == port)
                && match (&e.pattern, &asked) {
                    (Pattern::Ip(a), Pattern::Ip(b)) => a == b,
                    (Pattern::Name(a), Pattern::Name(b)) => a == b,
                    (Pattern::Subdomains(s), Pattern::Name(b)) => b
                        .strip_suffix(s.as_str())
                        .is_some_and(|head| head.len() > 1 && head.ends_with('.')),
                    _ => false,
                }
        })
    }
}

fn parse_entry(entry: &str) -> Result<Entry, String> {
    let shown: String = entry.chars().take(MAX_NAME + 8).collect();
    let wrong = |why: &str| format!("network_allow \"{shown}\": {why}");
    if entry == "*" {
        return Err(wrong(
            "\"*\" (the host's whole network) stands alone, not with names",
        ));
    }
    let (host, port) = split_port(entry).map_err(|why| wrong(&why))?;
    if let Ok(ip) = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    {
        // An address that is not one host: "any" (which reaches the broker host itself),
        // multicast, broadcast.
        let one_host = match ip {
            IpAddr::V4(v4) => !v4.is_unspecified() && !v4.is_multicast() && !v4.is_broadcast(),
            IpAddr::V6(v6) => !v6.is_unspecified() && !v6.is_multicast(),
        };
        if !one_host {
            return Err(wrong("not the address of one host"));
        }
        return Ok(Entry {
            pattern: Pattern::Ip(ip),
            port,
        });
    }
    let lower = host.to_ascii_lowercase();
    let pattern = match lower.strip_prefix("*.") {
        Some(suffix) => {
            valid_name(suffix).map_err(|why| wrong(&why))?;
            if !suffix.contains('.') {
                return Err(wrong(
                    "a wildcard needs at least two labels after \"*.\" (\"*.example.com\", not \"*.com\")",
                ));
            }
            Pattern::Subdomains(suffix.to_string())
        }
        None => {
            valid_name(&lower).map_err(|why| wrong(&why))?;
            Pattern::Name(lower)
        }
    };
    Ok(Entry { pattern, port })
}

/// `host[:port]`, `[v6][:port]` or a bare IPv6 address (more than one colon, no port).
fn split_port(entry: &str) -> Result<(&str, Option<u16>), String> {
    let at = if entry.starts_with('[') {
        entry.find(']').map(|end| end + 1).ok_or("no closing ']'")?
    } else if entry.matches(':').count() == 1 {
        entry.find(':').unwrap_or(entry.len())
    } else {
        entry.len()
    };
    let (host, rest) = entry.split_at(at);
    let port = match rest.strip_prefix(':') {
        None if rest.is_empty() => None,
        None => return Err("expected :PORT after the address".into()),
        Some(p) => match p.parse::<u16>() {
            Ok(p) if p > 0 => Some(p),
            _ => return Err("the port must be 1 to 65535".into()),
        },
    };
    Ok((host, port))
}

/// A host name: dot-separated labels of letters, digits and `-` (not at either end), at most
/// 63 characters each and 253 in all, the last not starting with a digit (the resolver reads
/// `1.2.3` and `0xa.0x1` as addresses; no top-level domain starts with a digit).
pub(super) fn valid_name(name: &str) -> Result<(), String> {
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    };
    if name.is_empty() || name.len() > MAX_NAME || !name.split('.').all(label_ok) {
        return Err(
            "not a host name (labels of letters, digits and '-', separated by dots; \"*.\" only at the start) nor an IP address"
                .into(),
        );
    }
    if name
        .rsplit('.')
        .next()
        .is_some_and(|tld| tld.starts_with(|c: char| c.is_ascii_digit()))
    {
        return Err(
            "neither an IP address nor a host name (its last label starts with a digit)".into(),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(entries: &[&str]) -> AllowList {
        AllowList::parse(&entries.iter().map(|e| e.to_string()).collect::<Vec<_>>()).unwrap()
    }

    /// Checks `list` against each `(host, port, allowed?)`.
    fn check(entries: &[&str], cases: &[(&str, u16, bool)]) {
        let l = list(entries);
        for (host, port, want) in cases {
            assert_eq!(l.allows(host, *port), *want, "{entries:?} {host}:{port}");
        }
    }

    #[test]
    fn names_match_exactly_and_wildcards_only_subdomains() {
        check(
            &["api.example.com", "*.githubusercontent.com"],
            &[
                ("api.example.com", 443, true),
                // Case and a final dot do not matter.
                ("API.Example.COM.", 80, true),
                ("example.com", 443, false),
                // A name is not its subdomains.
                ("x.api.example.com", 443, false),
                ("api.example.com.evil.net", 443, false),
                ("raw.githubusercontent.com", 443, true),
                ("a.b.githubusercontent.com", 443, true),
                // `*.` is subdomains only.
                ("githubusercontent.com", 443, false),
                ("evilgithubusercontent.com", 443, false),
            ],
        );
    }

    #[test]
    fn addresses_match_only_when_listed_literally() {
        check(
            &["127.0.0.1", "[::1]:8080", "localhost"],
            &[
                ("127.0.0.1", 1234, true),
                ("127.0.0.2", 1234, false),
                ("[::1]", 8080, true),
                ("::1", 8080, true),
                // The port is part of that entry.
                ("::1", 8081, false),
            ],
        );
        // A name never lets its address in.
        check(
            &["localhost", "*.example.com"],
            &[("127.0.0.1", 80, false), ("93.184.216.34", 80, false)],
        );
    }

    #[test]
    fn ports_limit_an_entry_when_given() {
        check(
            &["api.example.com:443"],
            &[
                ("api.example.com", 443, true),
                ("api.example.com", 80, false),
            ],
        );
    }

    #[test]
    fn malformed_entries_are_refused_naming_them() {
        for bad in [
            "*",
            "*.*",
            "a b",
            "*.com",
            "a.*.com",
            "ex_ample.com",
            "-a.com",
            "a..com",
            "",
            "host:0",
            "host:99999",
            "host:x",
            "1.2.3",
            "0xa.0x1",
            "*.0.0xa",
            "0.0.0.0",
            "[::]",
            "255.255.255.255",
            "224.0.0.1",
            "[ff02::1]:80",
            "::1:80x",
            "[::1",
            "http://a.com",
        ] {
            let err = AllowList::parse(&[bad.to_string()]).expect_err(bad);
            assert!(err.contains("network_allow"), "{bad}: {err}");
        }
        let many: Vec<String> = (0..=MAX_ENTRIES)
            .map(|i| format!("h{i}.example.com"))
            .collect();
        assert!(AllowList::parse(&many).is_err());
    }
}
