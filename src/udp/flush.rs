//! A listener's writer: every batch through the `/write` path (`Schema::prepare`, then
//! `Cluster::write`), on a thread of its own so that the socket is read meanwhile; what the
//! write refuses is counted and logged, since no sender hears of it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::{mpsc, Notify};
use tracing::{error, info, warn};

use super::counters::{Counters, Refused};
use super::receive::UdpBatch;
use super::Ingest;
use crate::cluster::{ClientWrite, WriteError, WriteOutcome};

/// Writes a listener's batches.
pub(super) struct Flusher {
    pub(super) label: String,
    pub(super) source: Arc<dyn Ingest>,
    pub(super) counters: Arc<Counters>,
}

impl Flusher {
    /// Writes batches until the receiving side has handed over its last one.
    pub(super) async fn run(
        self,
        mut batches: mpsc::UnboundedReceiver<UdpBatch>,
        pending: Arc<AtomicUsize>,
        room: Arc<Notify>,
    ) {
        while let Some(batch) = batches.recv().await {
            pending.fetch_sub(1, Ordering::AcqRel);
            room.notify_one();
            self.write(batch).await;
        }
    }

    /// One batch, exactly as `/write` writes a body.
    async fn write(&self, batch: UdpBatch) {
        let UdpBatch {
            body,
            lines,
            charge,
            settings,
        } = batch;
        let (db, rp) = (
            settings.database.as_str(),
            settings.retention_policy.as_str(),
        );
        let cluster = self.source.cluster();
        let schema = cluster
            .schema
            .prepare(|| cluster.backends().cloned().collect(), db, rp)
            .await;
        let request = ClientWrite {
            db,
            rp,
            precision: settings.precision,
            body: &body,
            schema: &schema,
        };
        let result = cluster.write(&request);
        drop(charge);
        self.counters.batches.inc();
        match result {
            // Dropping the outcome wakes the backends that received lines.
            Ok(outcome) => self.written(db, rp, &outcome),
            Err(e @ WriteError::Refused(_)) => {
                self.counters.refused(Refused::Batch, lines as u64);
                if let Some(times) = self.counters.logs.refused_batches.check() {
                    warn!(listener = %self.label, db = %db, rp = %rp, lines, batches = times, error = %e, "A UDP batch was refused whole, as influxd refuses it; counted in influx_proxy_udp_lines_refused_total, logged at most once per interval.");
                }
            }
            Err(e @ WriteError::Wal(_)) => {
                self.counters.refused(Refused::Queue, lines as u64);
                if let Some(times) = self.counters.logs.queue.check() {
                    error!(listener = %self.label, db = %db, lines, batches = times, error = %e, "The write-ahead queue refused a UDP batch; its lines are lost (counted in influx_proxy_udp_lines_refused_total, logged at most once per interval).");
                }
            }
        }
    }

    /// Counts (and logs, at most once per interval) what happened to a written batch's lines.
    fn written(&self, db: &str, rp: &str, outcome: &WriteOutcome) {
        self.counters.points.inc_by(outcome.points);
        let parse = outcome.errors.len() as u64;
        let storage = (outcome.dropped.dropped + outcome.dropped.beyond_retention) as u64;
        self.counters.refused(Refused::Parse, parse);
        self.counters.refused(Refused::Storage, storage);
        if parse + storage > 0 {
            if let Some(times) = self.counters.logs.refused_lines.check() {
                let first = outcome
                    .errors
                    .first()
                    .map(ToString::to_string)
                    .or_else(|| outcome.dropped.message())
                    .unwrap_or_default();
                warn!(listener = %self.label, db = %db, rp = %rp, refused_lines = parse + storage, batches = times, first_error = %first, "UDP lines refused, as /write refuses them; counted in influx_proxy_udp_lines_refused_total, logged at most once per interval.");
            }
        }
        if self.source.config().write_tracing {
            info!(listener = %self.label, db = %db, rp = %rp, points = outcome.points, refused_lines = parse + storage, "UDP write.");
        }
    }
}
