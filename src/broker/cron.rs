//! Five-field POSIX cron expressions (`minute hour day-of-month month day-of-week`), evaluated
//! in UTC. Errors name the field that is wrong, so a person can fix it in one go.
//!
//! Each field is a comma-separated list of `*`, `N`, `A-B`, each optionally `/STEP`; months and
//! weekdays also take names (`JAN`, `MON`); weekday 7 is Sunday like 0. As in Vixie cron, when
//! both day fields are restricted a day matches if either does. `@hourly`, `@daily`
//! (`@midnight`), `@weekly`, `@monthly` and `@yearly` (`@annually`) are accepted too.

use std::fmt;

/// A parsed cron expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    minutes: u64,
    hours: u32,
    days: u32,
    months: u16,
    weekdays: u8,
    /// Both day fields restricted: a day matches if either matches.
    either_day: bool,
}

/// Why an expression was refused; its `Display` is the sentence shown to people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CronError(String);

impl fmt::Display for CronError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cron: {}", self.0)
    }
}

impl std::error::Error for CronError {}

struct FieldSpec {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const MINUTE: FieldSpec = FieldSpec {
    name: "minute",
    min: 0,
    max: 59,
    names: &[],
};
const HOUR: FieldSpec = FieldSpec {
    name: "hour",
    min: 0,
    max: 23,
    names: &[],
};
const DAY: FieldSpec = FieldSpec {
    name: "day-of-month",
    min: 1,
    max: 31,
    names: &[],
};
const MONTH: FieldSpec = FieldSpec {
    name: "month",
    min: 1,
    max: 12,
    names: &[
        "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
    ],
};
const WEEKDAY: FieldSpec = FieldSpec {
    name: "day-of-week",
    min: 0,
    max: 7,
    names: &["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"],
};

impl FieldSpec {
    fn value(&self, field: &str, s: &str) -> Result<u32, CronError> {
        if let Some(i) = self.names.iter().position(|n| n.eq_ignore_ascii_case(s)) {
            return Ok(i as u32 + if self.min == 1 { 1 } else { 0 });
        }
        let n: u32 = s.parse().map_err(|_| {
            let names = if self.names.is_empty() {
                String::new()
            } else {
                format!(" or a name like {}", self.names[0])
            };
            CronError(format!(
                "{} field \"{field}\": \"{s}\" is not a number{names}",
                self.name
            ))
        })?;
        if n < self.min || n > self.max {
            return Err(CronError(format!(
                "{} field \"{s}\" is out of range {}-{}",
                self.name, self.min, self.max
            )));
        }
        Ok(n)
    }

    /// The set of values a field allows, as a bit mask.
    fn parse(&self, field: &str) -> Result<u64, CronError> {
        let mut mask = 0u64;
        for item in field.split(',') {
            if item.is_empty() {
                return Err(CronError(format!(
                    "{} field \"{field}\" has an empty list item",
                    self.name
                )));
            }
            let (range, step) = match item.split_once('/') {
                Some((r, s)) => {
                    let step: u32 = s.parse().map_err(|_| {
                        CronError(format!(
                            "{} field \"{field}\": step \"{s}\" is not a number",
                            self.name
                        ))
                    })?;
                    if step == 0 {
                        return Err(CronError(format!(
                            "{} field \"{field}\" has a step of 0",
                            self.name
                        )));
                    }
                    (r, Some(step))
                }
                None => (item, None),
            };
            let (lo, hi) = if range == "*" {
                (self.min, self.max)
            } else if let Some((a, b)) = range.split_once('-') {
                let (a, b) = (self.value(field, a)?, self.value(field, b)?);
                if a > b {
                    return Err(CronError(format!(
                        "{} field \"{field}\": range {a}-{b} runs backwards",
                        self.name
                    )));
                }
                (a, b)
            } else {
                let a = self.value(field, range)?;
                // `5/15` means from 5 to the end, every 15.
                (a, if step.is_some() { self.max } else { a })
            };
            let mut v = lo;
            while v <= hi {
                mask |= 1 << v;
                v += step.unwrap_or(1);
            }
        }
        Ok(mask)
    }
}

impl Cron {
    pub fn parse(expr: &str) -> Result<Cron, CronError> {
        let expr = expr.trim();
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
        let mut weekdays = WEEKDAY.parse(fields[4])?;
        if weekdays & (1 << 7) != 0 {
            weekdays = (weekdays | 1) & 0x7f; // 7 is Sunday too
        }
        let cron = Cron {
            minutes: MINUTE.parse(fields[0])?,
            hours: HOUR.parse(fields[1])? as u32,
            days: DAY.parse(fields[2])? as u32,
            months: MONTH.parse(fields[3])? as u16,
            weekdays: weekdays as u8,
            either_day: !fields[2].starts_with('*') && !fields[4].starts_with('*'),
        };
        if cron.next_after(0).is_none() {
            return Err(CronError(format!(
                "\"{expr}\" never fires (no month has that day-of-month)"
            )));
        }
        Ok(cron)
    }

    fn day_matches(&self, day: u32, weekday: u32) -> bool {
        let dom = self.days & (1 << day) != 0;
        let dow = self.weekdays & (1 << weekday) != 0;
        if self.either_day {
            dom || dow
        } else {
            dom && dow
        }
    }

    /// The first time it fires strictly after `after_ms` (ms since the epoch, UTC), on a whole
    /// minute; `None` if it never does within eight years.
    pub fn next_after(&self, after_ms: i64) -> Option<i64> {
        let first_minute = after_ms.div_euclid(60_000) + 1;
        let mut day = first_minute.div_euclid(1440);
        let mut from = first_minute.rem_euclid(1440) as u32;
        for _ in 0..(8 * 366) {
            let (_, month, dom) = civil_from_days(day);
            let weekday = (day + 4).rem_euclid(7) as u32; // 1970-01-01 was a Thursday
            if self.months & (1 << month) != 0 && self.day_matches(dom, weekday) {
                for hour in from / 60..24 {
                    if self.hours & (1 << hour) == 0 {
                        continue;
                    }
                    let start = if hour == from / 60 { from % 60 } else { 0 };
                    if let Some(minute) = (start..60).find(|m| self.minutes & (1 << m) != 0) {
                        return Some((day * 1440 + i64::from(hour * 60 + minute)) * 60_000);
                    }
                }
            }
            day += 1;
            from = 0;
        }
        None
    }
}

/// (year, month 1-12, day 1-31) of a day number since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
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
        assert!(err("*/0 * * * *").contains("step of 0"));
        assert!(err("0 5-2 * * *").starts_with("cron: hour field"));
        assert!(err("* * *").contains("expected 5 fields"));
        assert!(err("0 0 30 2 *").contains("never fires"));
        assert!(err("@often").contains("unknown macro"));
    }
}
