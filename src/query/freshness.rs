//! How current a backend's data is: one notion shared by read routing
//! (`circle_order`) and `/health` (`backlog`).
//!
//! A write is acknowledged once it is in every owner's write-ahead queue,
//! and a partial batch then waits up to `flush_time` before it is sent. So
//! while writes flow, a healthy backend's queue is hardly ever empty, and
//! every circle is behind the acknowledged writes by the same small amount.
//! What tells a healthy backend from one that fell behind is the age of
//! the oldest record still queued: a backend is *behind* once a record has
//! waited longer than `flush_time` plus [`SLACK`].
//!
//! A backend is *up to date* (may serve reads) when it is active, not
//! draining a backlog after a failure (`rewriting`), not `write_only`, and
//! not behind. It has a *backlog* (`/health`) when records wait in its
//! queue for a retry: it is down or draining, or behind.

use std::time::Duration;

use crate::circle::BackendHandle;

/// How much longer than `flush_time` the oldest queued record may wait
/// before its backend counts as behind.
///
/// One second for the precision of the queue's age index (appends are
/// grouped per second, `wal::QueueStats::oldest_age`, so an age may read
/// up to a second high) and one for the delivery request in flight when
/// `flush_time` expired. A backend whose writes take longer than that is
/// really behind.
pub(crate) const SLACK: Duration = Duration::from_secs(2);

/// Longest a record waits in a healthy backend's queue, as far as the
/// age index can tell.
pub(crate) fn lag_bound(flush_time: Duration) -> Duration {
    flush_time.saturating_add(SLACK)
}

/// The backend may serve reads: its data lags the acknowledged writes by
/// no more than an ordinary flush.
pub(crate) fn is_up_to_date(h: &BackendHandle) -> bool {
    Snapshot::of(h).is_up_to_date()
}

/// Writes wait in the backend's queue for a retry (`/health`'s `backlog`).
pub(crate) fn has_backlog(h: &BackendHandle) -> bool {
    Snapshot::of(h).has_backlog()
}

/// What the two verdicts are made of, read once from the live counters
/// (plain values, so the rules can be tested without running a backend).
#[derive(Debug, Clone, Copy)]
struct Snapshot {
    active: bool,
    draining: bool,
    write_only: bool,
    queued: bool,
    oldest_age: Duration,
    flush_time: Duration,
}

impl Snapshot {
    fn of(h: &BackendHandle) -> Snapshot {
        let b = &h.backend;
        Snapshot {
            active: b.status.is_active(),
            draining: b.status.is_draining(),
            write_only: b.info.write_only,
            queued: !b.queue.is_empty(),
            oldest_age: b.queue.stats.oldest_age(),
            flush_time: h.settings().flush_time,
        }
    }

    /// The oldest queued record has waited longer than a healthy delivery
    /// takes.
    fn is_behind(&self) -> bool {
        self.queued && self.oldest_age > lag_bound(self.flush_time)
    }

    fn is_up_to_date(&self) -> bool {
        self.active && !self.draining && !self.write_only && !self.is_behind()
    }

    /// Down or still draining after a failure with records queued, or
    /// behind. Records that only wait for `flush_time` on a healthy
    /// backend are not a backlog.
    fn has_backlog(&self) -> bool {
        self.queued && (!self.active || self.draining || self.is_behind())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn healthy(oldest_age_ms: u64) -> Snapshot {
        Snapshot {
            active: true,
            draining: false,
            write_only: false,
            queued: oldest_age_ms > 0,
            oldest_age: Duration::from_millis(oldest_age_ms),
            flush_time: Duration::from_secs(1),
        }
    }

    #[test]
    fn records_waiting_for_flush_time_keep_a_backend_up_to_date_without_a_backlog() {
        for age in [0, 1, 900, 2_999, 3_000] {
            let s = healthy(age);
            assert!(s.is_up_to_date(), "{age} ms");
            assert!(!s.has_backlog(), "{age} ms");
        }
    }

    #[test]
    fn a_record_older_than_flush_time_plus_slack_is_a_backlog_and_not_up_to_date() {
        let s = healthy(3_001);
        assert!(!s.is_up_to_date());
        assert!(s.has_backlog());
    }

    #[test]
    fn a_down_backend_with_queued_writes_has_a_backlog_even_when_they_are_young() {
        let s = Snapshot {
            active: false,
            ..healthy(10)
        };
        assert!(s.has_backlog());
        assert!(!s.is_up_to_date());
        let empty = Snapshot {
            active: false,
            ..healthy(0)
        };
        assert!(!empty.has_backlog(), "nothing waits: no backlog");
    }

    #[test]
    fn draining_or_write_only_backends_do_not_serve_reads() {
        let draining = Snapshot {
            draining: true,
            ..healthy(10)
        };
        assert!(!draining.is_up_to_date());
        assert!(draining.has_backlog());
        let write_only = Snapshot {
            write_only: true,
            ..healthy(10)
        };
        assert!(!write_only.is_up_to_date());
        assert!(!write_only.has_backlog());
    }

    #[test]
    fn the_lag_bound_is_flush_time_plus_the_slack() {
        assert_eq!(lag_bound(Duration::from_secs(1)), Duration::from_secs(3));
        assert_eq!(lag_bound(Duration::MAX), Duration::MAX);
    }
}
