//! Which circle serves a read.
//!
//! Every circle holds all the data, so any circle whose backends are up to
//! date ([`freshness`]) answers a read as well as any other; reads are
//! spread over all of them, least busy first (reads in flight on the
//! backends involved), equally busy ones taking turns. Circles that are
//! merely active come after them, in config order: their data may lag, so
//! reading there is logged (at most once per [`STALE_WARN_INTERVAL`], with
//! the number of such reads since the last warning) and counted in
//! `/metrics` (`influx_proxy_stale_reads_total`). Each circle counts the reads it answered
//! ([`served`], `influx_proxy_circle_reads_total`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use tracing::warn;

use super::freshness;
use crate::circle::{BackendHandle, Circle};
use crate::cluster::Cluster;
use crate::metrics::{self, Counter, Family};
use crate::rate_limit::RateLimit;

/// Shortest time between two warnings that reads went to a circle that is
/// not up to date. A lagging circle lasts seconds to hours; one line per
/// read (hundreds per second behind a dashboard) buries everything else.
pub(crate) const STALE_WARN_INTERVAL: Duration = Duration::from_secs(10);

/// Circles to try for a read that needs the backends `needed(circle)`,
/// best first: up-to-date circles (not migrating), least busy first, then
/// circles whose backends are merely active, in config order.
pub(crate) fn circle_order(
    cluster: &Cluster,
    needed: impl Fn(&Circle) -> Vec<usize>,
) -> Vec<&Arc<Circle>> {
    let mut fresh = Vec::new();
    let mut usable = Vec::new();
    for c in &cluster.circles {
        let idx = needed(c);
        let handles = || idx.iter().filter_map(|&i| c.backends.get(i));
        if !c.is_migrating() && handles().all(|h| freshness::is_up_to_date(h)) {
            fresh.push((handles().map(|h| reads_in_flight(h)).sum::<u64>(), c));
        } else if handles().all(|h| h.backend.status.is_active()) {
            usable.push(c);
        }
    }
    spread(&mut fresh);
    if fresh.is_empty() {
        if let Some(c) = usable.first() {
            stale_read(c);
        }
    }
    fresh.into_iter().map(|(_, c)| c).chain(usable).collect()
}

fn reads_in_flight(h: &BackendHandle) -> u64 {
    h.backend.status.reads_in_flight.load(Ordering::Relaxed)
}

/// Orders `(load, circle)` pairs least loaded first; among equal loads the
/// first place rotates with every read, so sequential reads (load 0
/// everywhere) alternate between circles instead of all going to one.
fn spread<T>(circles: &mut [(u64, T)]) {
    static TURN: AtomicUsize = AtomicUsize::new(0);
    if circles.len() > 1 {
        let turn = TURN.fetch_add(1, Ordering::Relaxed) % circles.len();
        circles.rotate_left(turn);
    }
    // Stable: equal loads keep the rotated order.
    circles.sort_by_key(|(load, _)| *load);
}

/// `circle` answered a read: counted for `/metrics` (`influx_proxy_circle_reads_total`), so an
/// operator sees how reads spread over the circles. One atomic add per read.
pub(crate) fn served(circle: &Circle) {
    circle.reads.inc();
}

/// Counts a read against the backends it runs on until dropped.
#[derive(Debug)]
pub(crate) struct InFlight<'a> {
    handles: Vec<&'a BackendHandle>,
}

impl<'a> InFlight<'a> {
    /// Starts counting a read on `handles`.
    pub(crate) fn start(handles: impl IntoIterator<Item = &'a BackendHandle>) -> InFlight<'a> {
        let handles: Vec<&BackendHandle> = handles.into_iter().collect();
        for h in &handles {
            h.backend
                .status
                .reads_in_flight
                .fetch_add(1, Ordering::Relaxed);
        }
        InFlight { handles }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        for h in &self.handles {
            h.backend
                .status
                .reads_in_flight
                .fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// A read goes to `circle` although it is not up to date (no circle is):
/// counted, and logged at most once per [`STALE_WARN_INTERVAL`].
fn stale_read(circle: &Circle) {
    static LIMIT: RateLimit = RateLimit::new(STALE_WARN_INTERVAL);
    // Registered at the first stale read, so /metrics lists it from then on.
    static STALE_READS: LazyLock<Arc<Family<Counter>>> = LazyLock::new(|| {
        metrics::global().counter(
            "influx_proxy_stale_reads_total",
            "Reads served by a circle that was not up to date because no circle was \
             (its backends were down, draining a backlog, behind or migrating).",
            &["circle"],
        )
    });
    STALE_READS.with(&[&circle.name]).inc();
    if let Some(reads) = LIMIT.check() {
        warn!(
            circle = %circle.name,
            reads,
            interval_secs = STALE_WARN_INTERVAL.as_secs(),
            "No circle is fully up to date; reading from one whose backends are still draining queued writes (logged at most once per interval; `reads` counts such reads since the last warning)."
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equally_busy_circles_take_turns_and_busy_ones_go_last() {
        let mut firsts = [0usize; 3];
        for _ in 0..300 {
            let mut c = [(0u64, 0usize), (0, 1), (0, 2)];
            spread(&mut c);
            firsts[c[0].1] += 1;
        }
        assert_eq!(firsts, [100, 100, 100]);
        for _ in 0..10 {
            let mut c = [(2u64, "busy"), (0, "idle"), (1, "half")];
            spread(&mut c);
            assert_eq!(c.map(|(_, n)| n), ["idle", "half", "busy"]);
        }
    }

    #[test]
    fn the_rate_limit_lets_one_event_through_per_interval_and_counts_the_rest() {
        let limit = RateLimit::new(Duration::from_secs(3600));
        assert_eq!(limit.check(), Some(1));
        for _ in 0..5 {
            assert_eq!(limit.check(), None);
        }
        let open = RateLimit::new(Duration::ZERO);
        assert_eq!(open.check(), Some(1));
        assert_eq!(open.check(), Some(1));
    }
}
