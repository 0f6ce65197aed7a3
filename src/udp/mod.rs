//! UDP listeners: line protocol in datagrams (influxd's, influxdb-relay's and influx-spout's
//! `[[udp]]`), written to one database each through the same path as `/write`.
//!
//! # How a datagram travels
//! Each listener reads its socket on a thread of its own (`receive`) and appends the datagrams
//! to a batch, each ending in a newline, until the batch holds `batch_size` lines, would pass
//! its byte bound, or is `batch_timeout` old. Full batches go to the listener's flush thread
//! (`flush`), which writes them exactly as `/write` writes a body (`Schema::prepare`, then
//! `Cluster::write`): the same verdicts on every line, the same queue and placement. The socket
//! is read on while a batch is written; at most `batch_pending` batches wait for the writer,
//! and datagrams arriving beyond that are dropped.
//!
//! # What cannot be answered is counted
//! A datagram has no answer, so every loss is counted in `/metrics` (`influx_proxy_udp_*`,
//! label `listener` = the bound address, `counters`) and logged at most once per interval per
//! listener and kind: lines refused (as `/write` would refuse them), batches the queue refused,
//! datagrams dropped (writes not keeping up, the memory budget, too large), and datagrams the
//! kernel dropped because the socket's buffer was full (`kernel`, read from `/proc/net/udp`).
//!
//! # Memory
//! A batch is charged to the memory budget's share for request bodies (`memory::Admission`,
//! the same share `/write` bodies take) before it grows, [`crate::cluster::WRITE_COPIES`]
//! bytes per byte as a body; a datagram that does not fit now is dropped, never waited for
//! (the kernel would drop the ones behind it). So a flood holds at most that share.
//!
//! # Reload
//! A reload binds the sockets of new listeners before anything else changes ([`Listeners::bind`]),
//! so a port that cannot be bound refuses the whole reload; then [`Listeners::apply`] starts
//! them, updates kept ones in place (database, batching, read buffer) and stops removed ones:
//! their socket closes at once, their batches are still written. Shutdown writes every batch.

mod counters;
mod flush;
mod kernel;
mod receive;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tracing::{info, warn};

pub(crate) use counters::encode as encode_metrics;

use crate::cluster::Cluster;
use crate::config::{Config, UdpConfig};
use crate::memory::Admission;

/// What the listeners need of the running proxy; every flush asks again, so a reload's new
/// cluster takes the next batch.
pub(crate) trait Ingest: Send + Sync + 'static {
    /// The running config (`max_body_bytes`, `write_tracing`).
    fn config(&self) -> Arc<Config>;
    /// The running cluster: the write path.
    fn cluster(&self) -> Arc<Cluster>;
    /// The memory budget's share for bodies being written.
    fn admission(&self) -> &Admission;
}

/// Why listeners could not be started.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The socket could not be made or bound (the address is taken or not local, the
    /// listener's thread could not start).
    #[error("cannot listen on UDP {addr} (udp[{index}].bind_addr): {source}")]
    Bind {
        /// Index of the listener in `udp`.
        index: usize,
        /// Its `bind_addr`.
        addr: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// The running listeners, one per bound address.
#[derive(Debug, Default)]
pub(crate) struct Listeners {
    running: Vec<receive::Listener>,
}

/// What a config asks of the listeners, with the sockets of those that do not run yet already
/// bound (dropping it closes them): the only part of a reload that can fail, done first.
#[derive(Debug)]
pub(crate) struct Bindings {
    /// Every enabled listener of the config, by address.
    wanted: Vec<(SocketAddr, UdpConfig)>,
    /// The new ones, bound.
    new: Vec<receive::Unstarted>,
}

impl Listeners {
    /// Binds the socket (and starts the threads) of every enabled listener of `config` that
    /// does not run yet; nothing runs or changes until [`Listeners::apply`].
    pub(crate) fn bind(&self, config: &Config) -> Result<Bindings, Error> {
        let mut bound = Bindings {
            wanted: Vec::new(),
            new: Vec::new(),
        };
        for (index, udp) in config.udp.iter().enumerate().filter(|(_, u)| u.enabled) {
            let failed = |source| Error::Bind {
                index,
                addr: udp.bind_addr.clone(),
                source,
            };
            let addr = udp.socket_addr().map_err(|msg| {
                failed(std::io::Error::new(std::io::ErrorKind::InvalidInput, msg))
            })?;
            bound.wanted.push((addr, udp.clone()));
            if !self.running.iter().any(|l| l.addr == addr) {
                bound
                    .new
                    .push(receive::Unstarted::bind(addr, udp.read_buffer).map_err(failed)?);
            }
        }
        Ok(bound)
    }

    /// Runs what `bound` asks: stops the listeners it does not name (their sockets close,
    /// their batches are written), updates the others in place and starts the new ones.
    pub(crate) fn apply(&mut self, bound: Bindings, source: &Arc<dyn Ingest>) {
        let Bindings { wanted, mut new } = bound;
        self.running.retain_mut(|l| {
            let keep = wanted.iter().any(|(addr, _)| *addr == l.addr);
            if !keep {
                info!(listener = %l.label, "UDP listener removed; its socket is closed, its batches are still written.");
                l.stop();
            }
            keep
        });
        for (addr, config) in wanted {
            if let Some(running) = self.running.iter().find(|l| l.addr == addr) {
                running.update(config);
            } else if let Some(i) = new.iter().position(|u| u.addr == addr) {
                let unstarted = new.swap_remove(i);
                self.running
                    .push(unstarted.start(config, Arc::clone(source)));
            }
        }
    }

    /// Stops every listener and waits (at most `timeout`) until what their batches held is
    /// written: a graceful shutdown loses no datagram the proxy has read.
    pub(crate) async fn shutdown(&mut self, timeout: Duration) {
        let flushed: Vec<_> = self.running.iter_mut().filter_map(|l| l.stop()).collect();
        self.running.clear();
        if flushed.is_empty() {
            return;
        }
        let all = futures_util::future::join_all(flushed);
        if tokio::time::timeout(timeout, all).await.is_err() {
            warn!(
                timeout_secs = timeout.as_secs(),
                "UDP batches were still being written at the shutdown timeout; the rest is lost."
            );
        }
    }
}
