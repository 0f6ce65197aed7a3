//! Every listener's counts, rendered into `/metrics` at scrape time ([`encode`]; label
//! `listener`: its bound address), and the limits on its log lines: everything a sender cannot
//! be told is counted here. A listener's series go with it when a reload removes it, as a
//! removed backend's do; the kernel's drops are read from `/proc/net/udp` at each scrape.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use parking_lot::RwLock;

use super::kernel;
use crate::metrics::{Counter, Encoder, Gauge, MetricType};
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

const REFUSED: [&str; 4] = ["parse", "storage", "batch", "queue"];
const DROPPED: [&str; 3] = ["pending", "memory", "too_large"];

impl Dropped {
    /// Its `reason` label.
    pub(super) fn name(self) -> &'static str {
        DROPPED[self as usize]
    }
}

/// A listener's counts, and the rate limits of its log lines.
#[derive(Debug, Default)]
pub(super) struct Counters {
    /// The bound address.
    pub(super) label: String,
    pub(super) datagrams: Counter,
    pub(super) bytes: Counter,
    pub(super) batches: Counter,
    pub(super) points: Counter,
    refused: [Counter; 4],
    dropped: [Counter; 3],
    /// The receive buffer the kernel granted.
    pub(super) read_buffer: Gauge,
    /// The socket's inode and family, to read its drops at scrape time.
    pub(super) socket: OnceLock<(u64, bool)>,
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

impl Default for Logs {
    fn default() -> Logs {
        Logs {
            refused_lines: RateLimit::new(LOG_EVERY),
            refused_batches: RateLimit::new(LOG_EVERY),
            queue: RateLimit::new(LOG_EVERY),
            dropped: RateLimit::new(LOG_EVERY),
            kernel: RateLimit::new(LOG_EVERY),
            read_errors: RateLimit::new(LOG_EVERY),
        }
    }
}

/// The counts of the running listeners, as `/metrics` shows them.
static RUNNING: RwLock<Vec<Arc<Counters>>> = RwLock::new(Vec::new());

impl Counters {
    /// The counts of the listener bound to `label`, exported until [`Counters::unregister`].
    pub(super) fn register(label: &str) -> Arc<Counters> {
        let counters = Arc::new(Counters {
            label: label.to_owned(),
            ..Counters::default()
        });
        RUNNING.write().push(Arc::clone(&counters));
        counters
    }

    /// Stops exporting these counts (the listener was removed).
    pub(super) fn unregister(self: &Arc<Counters>) {
        RUNNING.write().retain(|c| !Arc::ptr_eq(c, self));
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

    /// Datagrams the kernel dropped for the socket so far (0 before it runs).
    fn kernel_drops(&self) -> u64 {
        self.socket
            .get()
            .and_then(|&(inode, ipv6)| kernel::drops(inode, ipv6))
            .unwrap_or(0)
    }
}

/// Writes every running listener's series (nothing when none runs).
pub(crate) fn encode(enc: &mut Encoder) {
    let running = RUNNING.read().clone();
    if running.is_empty() {
        return;
    }
    fn listener(c: &Counters) -> [(&'static str, &str); 1] {
        [("listener", c.label.as_str())]
    }
    let mut family = |name: &str, help: &str, kind, value: &dyn Fn(&Counters) -> u64| {
        enc.header(name, help, kind);
        for c in &running {
            enc.sample(name, &listener(c), value(c));
        }
    };
    family(
        "influx_proxy_udp_datagrams_total",
        "Datagrams read from a UDP listener's socket.",
        MetricType::Counter,
        &|c| c.datagrams.get(),
    );
    family(
        "influx_proxy_udp_bytes_total",
        "Bytes of the datagrams read from a UDP listener's socket.",
        MetricType::Counter,
        &|c| c.bytes.get(),
    );
    family(
        "influx_proxy_udp_batches_total",
        "Batches of a UDP listener written (queued, or refused as a whole).",
        MetricType::Counter,
        &|c| c.batches.get(),
    );
    family(
        "influx_proxy_udp_points_total",
        "Points from a UDP listener queued for the backends (once per circle).",
        MetricType::Counter,
        &|c| c.points.get(),
    );
    family(
        "influx_proxy_udp_kernel_drops_total",
        "Datagrams the kernel dropped because a UDP listener's receive buffer was full \
         (/proc/net/udp drops; see read_buffer and net.core.rmem_max).",
        MetricType::Counter,
        &Counters::kernel_drops,
    );
    enc.header(
        "influx_proxy_udp_read_buffer_bytes",
        "The receive buffer the kernel granted a UDP listener's socket (SO_RCVBUF).",
        MetricType::Gauge,
    );
    for c in &running {
        enc.sample(
            "influx_proxy_udp_read_buffer_bytes",
            &listener(c),
            c.read_buffer.get(),
        );
    }
    let reasons = |enc: &mut Encoder,
                   name: &str,
                   reasons: &[&str],
                   value: &dyn Fn(&Counters, usize) -> u64| {
        for c in &running {
            for (i, reason) in reasons.iter().enumerate() {
                let labels = [("listener", c.label.as_str()), ("reason", reason)];
                enc.sample(name, &labels, value(c, i));
            }
        }
    };
    enc.header(
        "influx_proxy_udp_lines_refused_total",
        "Lines read from a UDP listener and not queued, by reason: parse (influxd's parser \
         refuses the line), storage (influxd would drop the point: field type, retention), \
         batch (influxd would refuse the whole batch), queue (the write-ahead queue refused \
         the batch: full or failing).",
        MetricType::Counter,
    );
    reasons(
        enc,
        "influx_proxy_udp_lines_refused_total",
        &REFUSED,
        &|c, i| c.refused[i].get(),
    );
    enc.header(
        "influx_proxy_udp_datagrams_dropped_total",
        "Datagrams read from a UDP listener and dropped unparsed, by reason: pending \
         (batch_pending batches already wait for the writer), memory (the memory budget's \
         share for bodies is taken), too_large (larger than a batch may be).",
        MetricType::Counter,
    );
    reasons(
        enc,
        "influx_proxy_udp_datagrams_dropped_total",
        &DROPPED,
        &|c, i| c.dropped[i].get(),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listeners_series_are_exported_until_it_is_unregistered() {
        let label = "127.0.0.1:65001";
        let c = Counters::register(label);
        c.refused(Refused::Storage, 3);
        c.dropped(Dropped::TooLarge);
        c.points.inc_by(7);
        let text = || {
            let mut enc = Encoder::new();
            encode(&mut enc);
            enc.finish()
        };
        let now = text();
        for line in [
            "influx_proxy_udp_points_total{listener=\"127.0.0.1:65001\"} 7\n",
            "influx_proxy_udp_lines_refused_total{listener=\"127.0.0.1:65001\",reason=\"storage\"} 3\n",
            "influx_proxy_udp_lines_refused_total{listener=\"127.0.0.1:65001\",reason=\"parse\"} 0\n",
            "influx_proxy_udp_datagrams_dropped_total{listener=\"127.0.0.1:65001\",reason=\"too_large\"} 1\n",
            "influx_proxy_udp_kernel_drops_total{listener=\"127.0.0.1:65001\"} 0\n",
            "# TYPE influx_proxy_udp_read_buffer_bytes gauge\n",
        ] {
            assert!(now.contains(line), "{line} not in\n{now}");
        }
        assert_eq!(c.dropped_so_far(Dropped::TooLarge), 1);
        c.unregister();
        assert!(!text().contains(label));
    }
}
