//! Wall-clock helpers: the protocol signs integer milliseconds and shows ISO-8601.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The last millisecond RFC 3339 can show (9999-12-31T23:59:59.999Z).
const MAX_ISO_MS: i64 = 253_402_300_799_999;

/// ISO-8601 (RFC 3339, UTC, milliseconds) for a millisecond timestamp. Times before 1970 or
/// after 9999 (only a peer's nonsense, e.g. an invite signed to expire in the year 20000) are
/// shown as the nearest time that can be written, never as a panic.
pub fn iso(ms: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(ms.clamp(0, MAX_ISO_MS) as u64);
    humantime::format_rfc3339_millis(t).to_string()
}

/// Parses an ISO-8601 / RFC 3339 time into milliseconds since the epoch.
pub fn parse_iso(s: &str) -> Option<i64> {
    let t = humantime::parse_rfc3339_weak(s).ok()?;
    t.duration_since(UNIX_EPOCH)
        .ok()
        .map(|d| d.as_millis() as i64)
}

/// Parses a human duration such as `7d`, `90s`, `10m`, `12h`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim()).map_err(|e| format!("bad duration \"{s}\": {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_writes_any_timestamp() {
        assert_eq!(iso(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso(-5), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        // Past year 9999 humantime's Display fails, which `to_string` turns into a panic.
        assert_eq!(iso(300_000_000_000_000), "9999-12-31T23:59:59.999Z");
        assert_eq!(iso(i64::MAX), "9999-12-31T23:59:59.999Z");
        assert_eq!(parse_iso(&iso(MAX_ISO_MS)), Some(MAX_ISO_MS));
    }
}
