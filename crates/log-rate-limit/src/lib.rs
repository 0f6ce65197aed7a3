//! One event let through per interval, the others counted: for log lines an
//! error repeats (a queue that cannot be read retries every second), so a
//! lasting fault logs once in a while with how many times it happened,
//! instead of flooding the log.

#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Lets one event through per `interval`.
#[derive(Debug)]
pub struct RateLimit {
    interval: Duration,
    /// When the last event went through (ms since [`millis_since_epoch`]'s
    /// origin, plus one: 0 means never).
    last: AtomicU64,
    /// Events since the last one let through.
    held: AtomicU64,
}

impl RateLimit {
    /// A limit letting one event through per `interval`.
    pub const fn new(interval: Duration) -> RateLimit {
        RateLimit {
            interval,
            last: AtomicU64::new(0),
            held: AtomicU64::new(0),
        }
    }

    /// `Some(events since the last one let through, this one included)`
    /// when this event may be reported.
    pub fn check(&self) -> Option<u64> {
        self.held.fetch_add(1, Ordering::Relaxed);
        let now = millis_since_epoch().saturating_add(1);
        let last = self.last.load(Ordering::Relaxed);
        let interval = u64::try_from(self.interval.as_millis()).unwrap_or(u64::MAX);
        let due = last == 0 || now.saturating_sub(last) >= interval;
        if !due {
            return None;
        }
        self.last
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .ok()?;
        Some(self.held.swap(0, Ordering::Relaxed))
    }

    /// Forgets the past: the next event goes through (the fault it counted
    /// is over).
    pub fn reset(&self) {
        self.last.store(0, Ordering::Relaxed);
        self.held.store(0, Ordering::Relaxed);
    }
}

/// A process-wide monotonic origin for [`RateLimit`]'s timestamps.
fn millis_since_epoch() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let elapsed = EPOCH.get_or_init(Instant::now).elapsed();
    u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_event_goes_through_per_interval_and_the_rest_are_counted() {
        let limit = RateLimit::new(Duration::from_secs(3600));
        assert_eq!(limit.check(), Some(1));
        for _ in 0..5 {
            assert_eq!(limit.check(), None);
        }
        limit.reset();
        assert_eq!(limit.check(), Some(1));
        let open = RateLimit::new(Duration::ZERO);
        assert_eq!(open.check(), Some(1));
        assert_eq!(open.check(), Some(1));
    }
}
