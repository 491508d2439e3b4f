//! Refusals in the broker's log: every refused frame, claim or request is logged once at
//! `info` with who, what and why, at most [`PER_SECOND`] a second so that a hostile or broken
//! client cannot flood the log (those over the limit are counted and the count is logged).

use std::fmt::Display;
use std::sync::Mutex;

use crate::protocol::time;

/// Refusals logged per second at most; the rest are counted.
pub const PER_SECOND: u32 = 20;

/// How much of a refusal's reason is logged.
const MAX_REASON_CHARS: usize = 200;

#[derive(Default)]
pub struct RefusalLog {
    bucket: Mutex<Bucket>,
}

#[derive(Default)]
struct Bucket {
    second: i64,
    logged: u32,
    dropped: u64,
}

impl Bucket {
    /// Whether a refusal at `second` may be logged, and how many were left out in the seconds
    /// before it (to be reported once).
    fn admit(&mut self, second: i64) -> (bool, u64) {
        let mut left_out = 0;
        if second != self.second {
            left_out = std::mem::take(&mut self.dropped);
            self.second = second;
            self.logged = 0;
        }
        if self.logged >= PER_SECOND {
            self.dropped += 1;
            return (false, left_out);
        }
        self.logged += 1;
        (true, left_out)
    }
}

impl RefusalLog {
    /// Logs that `what` from `who` was refused with `code`, because `reason`. Neither may
    /// carry a secret (no tokens, no invite codes).
    pub fn refused(&self, who: impl Display, what: &str, code: &str, reason: &str) {
        let (log, left_out) = self
            .bucket
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .admit(time::now_ms().div_euclid(1000));
        if left_out > 0 {
            tracing::info!(
                "{left_out} more refusals were not logged (at most {PER_SECOND} a second)"
            );
        }
        if log {
            // The reason can quote what the peer sent: cut short, and quoted with escapes so
            // that it cannot forge log lines.
            let reason: String = reason.chars().take(MAX_REASON_CHARS).collect();
            tracing::info!("refused {what} from {who}: {code}: {reason:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_cut_at_the_limit_and_what_was_left_out_is_counted_once() {
        let mut b = Bucket::default();
        for i in 0..PER_SECOND {
            assert_eq!(b.admit(7), (true, 0), "refusal {i} of the first second");
        }
        assert_eq!(b.admit(7), (false, 0));
        assert_eq!(b.admit(7), (false, 0));
        // The next second logs again, and reports the two left out, once.
        assert_eq!(b.admit(8), (true, 2));
        assert_eq!(b.admit(8), (true, 0));
        assert_eq!(b.admit(9), (true, 0));
    }
}
