//! Five-field POSIX cron expressions (`minute hour day-of-month month day-of-week`), evaluated
//! in UTC by the `croner` crate. Errors name the field that is wrong, so a person can fix it in
//! one go.
//!
//! Each field is a comma-separated list of `*`, `N`, `A-B`, each optionally `/STEP`; `N/STEP`
//! runs from N to the end; months and weekdays also take names (`JAN`, `MON`); weekday 7 is
//! Sunday like 0. As in Vixie cron, when both day fields are restricted a day matches if either
//! does. `@hourly`, `@daily` (`@midnight`), `@weekly`, `@monthly` and `@yearly` (`@annually`)
//! are accepted too. croner's extensions (`L`, `W`, `#`, `+`) work as it documents them.

use std::fmt;

use chrono::{DateTime, Utc};
use croner::parser::{CronParser, Seconds, Year};

/// A parsed cron expression.
#[derive(Debug, Clone)]
pub struct Cron(croner::Cron);

/// Why an expression was refused; its `Display` is the sentence shown to people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CronError(String);

impl fmt::Display for CronError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cron: {}", self.0)
    }
}

impl std::error::Error for CronError {}

/// Longest expression looked at; real ones are a few dozen characters.
const MAX_EXPR_CHARS: usize = 256;

/// The five fields: name and range, for error messages.
const FIELDS: [(&str, u32, u32); 5] = [
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day-of-month", 1, 31),
    ("month", 1, 12),
    ("day-of-week", 0, 7),
];

fn parser() -> CronParser {
    CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        // `5/15`: from 5 to the end, every 15, as documented before croner.
        .sloppy_ranges(true)
        .build()
}

/// Names the first field croner refuses, by parsing it with every other field `*`.
fn blame(fields: &[&str], whole: croner::errors::CronError) -> CronError {
    for (i, (name, min, max)) in FIELDS.iter().enumerate() {
        let mut alone = ["*"; 5];
        alone[i] = fields[i];
        if let Err(e) = parser().parse(&alone.join(" ")) {
            let text = e.to_string();
            return CronError(if text.contains("out of bounds") {
                format!("{name} field \"{}\" is out of range {min}-{max}", fields[i])
            } else {
                format!("{name} field \"{}\": {text}", fields[i])
            });
        }
    }
    CronError(whole.to_string())
}

impl Cron {
    pub fn parse(expr: &str) -> Result<Cron, CronError> {
        let expr = expr.trim();
        if expr.chars().count() > MAX_EXPR_CHARS {
            return Err(CronError(format!(
                "the expression is longer than {MAX_EXPR_CHARS} characters"
            )));
        }
        let expanded = match expr.to_ascii_lowercase().as_str() {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            m if m.starts_with('@') => {
                return Err(CronError(format!(
                    "unknown macro \"{expr}\" (use @hourly, @daily, @weekly, @monthly or @yearly)"
                )));
            }
            _ => expr,
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(CronError(format!(
                "expected 5 fields (minute hour day-of-month month day-of-week), got {} in \"{expr}\"",
                fields.len()
            )));
        }
        let cron = parser()
            .parse(&fields.join(" "))
            .map_err(|e| blame(&fields, e))?;
        let cron = Cron(cron);
        if cron.next_after(0).is_none() {
            return Err(CronError(format!(
                "\"{expr}\" never fires (no month has that day-of-month)"
            )));
        }
        Ok(cron)
    }

    /// The first time it fires strictly after `after_ms` (ms since the epoch, UTC), on a whole
    /// minute; `None` if it never does.
    pub fn next_after(&self, after_ms: i64) -> Option<i64> {
        let after: DateTime<Utc> = DateTime::from_timestamp_millis(after_ms)?;
        self.0
            .find_next_occurrence(&after, false)
            .ok()
            .map(|t| t.timestamp_millis())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::time::{iso, parse_iso};

    fn next(expr: &str, after: &str) -> String {
        let cron = Cron::parse(expr).unwrap();
        iso(cron.next_after(parse_iso(after).unwrap()).unwrap())
    }

    #[test]
    fn next_fire_times() {
        assert_eq!(
            next("*/5 * * * *", "2024-03-01T10:02:30Z"),
            "2024-03-01T10:05:00.000Z"
        );
        assert_eq!(
            next("*/5 * * * *", "2024-03-01T10:05:00Z"),
            "2024-03-01T10:10:00.000Z"
        );
        assert_eq!(
            next("0 9 * * MON-FRI", "2024-03-01T10:00:00Z"),
            "2024-03-04T09:00:00.000Z"
        );
        assert_eq!(
            next("30 23 31 12 *", "2024-06-01T00:00:00Z"),
            "2024-12-31T23:30:00.000Z"
        );
        assert_eq!(
            next("0 0 29 2 *", "2025-01-01T00:00:00Z"),
            "2028-02-29T00:00:00.000Z"
        );
        // Both day fields restricted: either matches (the 13th, or any Friday).
        assert_eq!(
            next("0 0 13 * 5", "2024-09-01T00:00:00Z"),
            "2024-09-06T00:00:00.000Z"
        );
        assert_eq!(
            next("0 12 * * 7", "2024-03-01T00:00:00Z"),
            "2024-03-03T12:00:00.000Z"
        );
        assert_eq!(
            next("15,45 1-2 * JAN *", "2024-01-01T01:50:00Z"),
            "2024-01-01T02:15:00.000Z"
        );
        assert_eq!(
            next("@daily", "2024-01-01T01:50:00Z"),
            "2024-01-02T00:00:00.000Z"
        );
        // `5/15` runs from 5 to the end of the range, as cron has always read it.
        assert_eq!(
            next("5/15 * * * *", "2024-03-01T10:06:00Z"),
            "2024-03-01T10:20:00.000Z"
        );
    }

    #[test]
    fn mistakes_name_their_field() {
        let err = |e: &str| Cron::parse(e).unwrap_err().to_string();
        assert_eq!(
            err("61 * * * *"),
            "cron: minute field \"61\" is out of range 0-59"
        );
        assert_eq!(
            err("0 24 * * *"),
            "cron: hour field \"24\" is out of range 0-23"
        );
        assert!(err("0 0 0 * *").starts_with("cron: day-of-month field \"0\""));
        assert!(err("0 0 * 13 *").starts_with("cron: month field \"13\""));
        assert!(err("0 0 * * FUNDAY").starts_with("cron: day-of-week field \"FUNDAY\""));
        assert!(err("*/0 * * * *").contains("Step cannot be zero"));
        assert!(err("5/4294967295 * * * *").starts_with("cron: minute field"));
        assert!(err("0 5-2 * * *").starts_with("cron: hour field"));
        assert!(err("* * *").contains("expected 5 fields"));
        assert!(err("0 0 30 2 *").contains("never fires"));
        assert!(err("@often").contains("unknown macro"));
    }

    #[test]
    fn macros_mean_what_cron_means() {
        let after = "2024-03-05T10:30:00Z";
        for (m, at) in [
            ("@yearly", "2025-01-01T00:00:00.000Z"),
            ("@annually", "2025-01-01T00:00:00.000Z"),
            ("@monthly", "2024-04-01T00:00:00.000Z"),
            ("@weekly", "2024-03-10T00:00:00.000Z"),
            ("@daily", "2024-03-06T00:00:00.000Z"),
            ("@MIDNIGHT", "2024-03-06T00:00:00.000Z"),
            ("@hourly", "2024-03-05T11:00:00.000Z"),
        ] {
            assert_eq!(next(m, after), at, "{m}");
        }
    }

    #[test]
    fn the_length_limit_is_exactly_256_characters() {
        let at_limit = format!("{} * * * *", "0".repeat(MAX_EXPR_CHARS - 8));
        assert_eq!(at_limit.chars().count(), MAX_EXPR_CHARS);
        assert!(Cron::parse(&at_limit).is_ok(), "{at_limit}");
        let over = format!("0{at_limit}");
        assert!(
            Cron::parse(&over)
                .unwrap_err()
                .to_string()
                .contains("longer than 256")
        );
        assert_eq!(MAX_EXPR_CHARS, 256);
    }
}
