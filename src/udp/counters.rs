//! One listener's series in `/metrics` (label `listener`: its bound address) and the limits on
//! its log lines: everything a sender cannot be told is counted here.

use std::sync::Arc;
use std::time::Duration;

use crate::metrics::{self, Counter, Gauge};
use crate::rate_limit::RateLimit;

/// Least time between two log lines of one kind about one listener.
pub(super) const LOG_EVERY: Duration = Duration::from_secs(10);

/// Why lines read from a listener were not queued (`reason` of
/// `influx_proxy_udp_lines_refused_total`).
#[derive(Debug, Clone, Copy)]
pub(super) enum Refused {
    /// influxd's parser refuses the line (`/write` names it in a 400).
    Parse,
    /// influxd's storage would drop the point (a field's type differs from the stored one,
    /// older than the retention policy).
    Storage,
    /// influxd would refuse the whole batch (two types for one new field, a retention policy
    /// the database does not have).
    Batch,
    /// The write-ahead queue refused the batch (full, storage failing; `/write` answers 503).
    Queue,
}

/// Why a datagram was dropped unread (`reason` of `influx_proxy_udp_datagrams_dropped_total`).
#[derive(Debug, Clone, Copy)]
pub(super) enum Dropped {
    /// `batch_pending` full batches already wait for the writer.
    Pending,
    /// The memory budget's share for bodies is taken.
    Memory,
    /// Larger than a batch may be (`max_body_bytes`, or what the memory budget allows one body).
    TooLarge,
}

/// A listener's series, and the rate limits of its log lines.
#[derive(Debug)]
pub(super) struct Counters {
    label: String,
    pub(super) datagrams: Arc<Counter>,
    pub(super) bytes: Arc<Counter>,
    pub(super) batches: Arc<Counter>,
    pub(super) points: Arc<Counter>,
    refused: [Arc<Counter>; 4],
    dropped: [Arc<Counter>; 3],
    pub(super) kernel_drops: Arc<Counter>,
    pub(super) read_buffer: Arc<Gauge>,
    /// The rate limits of the listener's log lines.
    pub(super) logs: Logs,
}

/// The rate limits of one listener's log lines, one per kind of loss.
#[derive(Debug)]
pub(super) struct Logs {
    pub(super) refused_lines: RateLimit,
    pub(super) refused_batches: RateLimit,
    pub(super) queue: RateLimit,
    pub(super) dropped: RateLimit,
    pub(super) kernel: RateLimit,
    pub(super) read_errors: RateLimit,
}

impl Dropped {
    /// Its `reason` label.
    pub(super) fn name(self) -> &'static str {
        DROPPED[self as usize]
    }
}

const REFUSED: [&str; 4] = ["parse", "storage", "batch", "queue"];
const DROPPED: [&str; 3] = ["pending", "memory", "too_large"];

impl Counters {
    /// The series of the listener bound to `label`.
    pub(super) fn new(label: &str) -> Counters {
        let g = metrics::global();
        let one = |name: &str, help: &str| g.counter(name, help, &["listener"]).with(&[label]);
        let refused = g.counter(
            "influx_proxy_udp_lines_refused_total",
            "Lines read from a UDP listener and not queued, by reason: parse (influxd's parser \
             refuses the line), storage (influxd would drop the point: field type, retention), \
             batch (influxd would refuse the whole batch), queue (the write-ahead queue refused \
             the batch: full or failing).",
            &["listener", "reason"],
        );
        let dropped = g.counter(
            "influx_proxy_udp_datagrams_dropped_total",
            "Datagrams read from a UDP listener and dropped unparsed, by reason: pending \
             (batch_pending batches already wait for the writer), memory (the memory budget's \
             share for bodies is taken), too_large (larger than a batch may be).",
            &["listener", "reason"],
        );
        Counters {
            label: label.to_owned(),
            datagrams: one(
                "influx_proxy_udp_datagrams_total",
                "Datagrams read from a UDP listener's socket.",
            ),
            bytes: one(
                "influx_proxy_udp_bytes_total",
                "Bytes of the datagrams read from a UDP listener's socket.",
            ),
            batches: one(
                "influx_proxy_udp_batches_total",
                "Batches of a UDP listener written (queued, or refused as a whole).",
            ),
            points: one(
                "influx_proxy_udp_points_total",
                "Points from a UDP listener queued for the backends (once per circle).",
            ),
            refused: REFUSED.map(|reason| refused.with(&[label, reason])),
            dropped: DROPPED.map(|reason| dropped.with(&[label, reason])),
            kernel_drops: one(
                "influx_proxy_udp_kernel_drops_total",
                "Datagrams the kernel dropped because a UDP listener's receive buffer was full \
                 (/proc/net/udp `drops`; see read_buffer and net.core.rmem_max).",
            ),
            read_buffer: g
                .gauge(
                    "influx_proxy_udp_read_buffer_bytes",
                    "The receive buffer the kernel granted a UDP listener's socket (SO_RCVBUF).",
                    &["listener"],
                )
                .with(&[label]),
            logs: Logs {
                refused_lines: RateLimit::new(LOG_EVERY),
                refused_batches: RateLimit::new(LOG_EVERY),
                queue: RateLimit::new(LOG_EVERY),
                dropped: RateLimit::new(LOG_EVERY),
                kernel: RateLimit::new(LOG_EVERY),
                read_errors: RateLimit::new(LOG_EVERY),
            },
        }
    }

    /// Lines not queued, and why.
    pub(super) fn refused(&self, why: Refused, lines: u64) {
        self.refused[why as usize].inc_by(lines);
    }

    /// One datagram dropped, and why.
    pub(super) fn dropped(&self, why: Dropped) {
        self.dropped[why as usize].inc();
    }

    /// Datagrams dropped so far for `why`.
    pub(super) fn dropped_so_far(&self, why: Dropped) -> u64 {
        self.dropped[why as usize].get()
    }

    /// Stops exporting the listener's series (it was removed; a listener added again at the
    /// address starts new ones).
    pub(super) fn remove(&self) {
        let g = metrics::global();
        let label = self.label.as_str();
        for name in [
            "influx_proxy_udp_datagrams_total",
            "influx_proxy_udp_bytes_total",
            "influx_proxy_udp_batches_total",
            "influx_proxy_udp_points_total",
            "influx_proxy_udp_kernel_drops_total",
        ] {
            g.counter(name, "", &["listener"]).remove(&[label]);
        }
        g.gauge("influx_proxy_udp_read_buffer_bytes", "", &["listener"])
            .remove(&[label]);
        for reason in REFUSED {
            g.counter(
                "influx_proxy_udp_lines_refused_total",
                "",
                &["listener", "reason"],
            )
            .remove(&[label, reason]);
        }
        for reason in DROPPED {
            g.counter(
                "influx_proxy_udp_datagrams_dropped_total",
                "",
                &["listener", "reason"],
            )
            .remove(&[label, reason]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_series_of_their_own_until_the_listener_is_removed() {
        let label = "127.0.0.1:65001";
        let c = Counters::new(label);
        c.refused(Refused::Storage, 3);
        c.dropped(Dropped::TooLarge);
        let series = |name: &str, reason: &str| {
            metrics::global()
                .counter(name, "", &["listener", "reason"])
                .with(&[label, reason])
                .get()
        };
        assert_eq!(series("influx_proxy_udp_lines_refused_total", "storage"), 3);
        assert_eq!(series("influx_proxy_udp_lines_refused_total", "parse"), 0);
        assert_eq!(
            series("influx_proxy_udp_datagrams_dropped_total", "too_large"),
            1
        );
        assert_eq!(c.dropped_so_far(Dropped::TooLarge), 1);
        c.remove();
        assert_eq!(series("influx_proxy_udp_lines_refused_total", "storage"), 0);
        assert_eq!(
            series("influx_proxy_udp_datagrams_dropped_total", "too_large"),
            0
        );
    }
}
