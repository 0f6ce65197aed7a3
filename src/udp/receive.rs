//! One listener's socket, read on a thread of its own: datagrams into batches, full batches to
//! the flush thread, never waiting for a write.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::Arbiter;
use socket2::{Domain, Protocol, SockRef, Socket, Type};
use tokio::sync::{mpsc, oneshot, watch, Notify};
use tokio::time::Instant;
use tracing::{error, info, warn};

use super::counters::{Counters, Dropped};
use super::flush::Flusher;
use super::{kernel, Ingest};
use crate::cluster::WRITE_COPIES;
use crate::config::UdpConfig;
use crate::memory::Charge;

/// The largest datagram read: every UDP payload fits (65,507 bytes over IPv4).
const MAX_DATAGRAM: usize = 64 << 10;
/// How often the kernel's count of dropped datagrams is read.
const KERNEL_POLL: Duration = Duration::from_secs(1);
/// Pause after a failed read, so a lasting fault cannot spin the thread.
const READ_ERROR_PAUSE: Duration = Duration::from_millis(10);

/// Datagrams on their way to one write: each ends in a newline, so no two datagrams' lines
/// run together.
#[derive(Debug)]
pub(super) struct UdpBatch {
    /// The line protocol.
    pub(super) body: Vec<u8>,
    /// Lines in `body` (newlines).
    pub(super) lines: usize,
    /// Its share of the memory budget, given back once written.
    pub(super) charge: Option<Charge>,
    /// The listener's settings when the batch began: where it is written.
    pub(super) settings: Arc<UdpConfig>,
}

/// A bound socket and the two threads of a listener that does not run yet; dropping it closes
/// the socket and ends the threads.
#[derive(Debug)]
pub(super) struct Unstarted {
    pub(super) addr: SocketAddr,
    socket: Option<std::net::UdpSocket>,
    receiver: Arbiter,
    flusher: Arbiter,
}

impl Unstarted {
    /// Binds `addr` with a receive buffer of `read_buffer` bytes (0: the OS default) and
    /// starts the listener's threads.
    pub(super) fn bind(addr: SocketAddr, read_buffer: usize) -> io::Result<Unstarted> {
        let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
        if read_buffer > 0 {
            socket.set_recv_buffer_size(read_buffer)?;
        }
        socket.bind(&addr.into())?;
        socket.set_nonblocking(true)?;
        Ok(Unstarted {
            addr,
            socket: Some(socket.into()),
            receiver: Arbiter::try_new()?,
            flusher: Arbiter::try_new()?,
        })
    }

    /// Starts reading with `config`, writing through `source`.
    pub(super) fn start(mut self, config: UdpConfig, source: Arc<dyn Ingest>) -> Listener {
        let socket = self.socket.take();
        let label = socket
            .as_ref()
            .and_then(|s| s.local_addr().ok())
            .unwrap_or(self.addr)
            .to_string();
        let counters = Counters::register(&label);
        let (settings, settings_rx) = watch::channel(Arc::new(config));
        let (stop, stop_rx) = oneshot::channel();
        let (flushed_tx, flushed) = oneshot::channel();
        let (batches, batches_rx) = mpsc::unbounded_channel();
        let pending = Arc::new(AtomicUsize::new(0));
        let room = Arc::new(Notify::new());
        let flusher = Flusher {
            label: label.clone(),
            source: Arc::clone(&source),
            counters: Arc::clone(&counters),
        };
        let (pending_f, room_f) = (Arc::clone(&pending), Arc::clone(&room));
        // Spawned from the arbiter's own thread: the write path's futures (the schema
        // question's HTTP client) are not `Send`.
        self.flusher.spawn_fn(move || {
            actix_rt::spawn(async move {
                flusher.run(batches_rx, pending_f, room_f).await;
                let _ = flushed_tx.send(());
                Arbiter::current().stop();
            });
        });
        let receiver_label = label.clone();
        let receiver_counters = Arc::clone(&counters);
        self.receiver.spawn_fn(move || {
            actix_rt::spawn(async move {
                if let Some(socket) = socket {
                    match tokio::net::UdpSocket::from_std(socket) {
                        Ok(socket) => {
                            Receiver::new(
                                socket,
                                receiver_label,
                                source,
                                settings_rx,
                                batches,
                                pending,
                                room,
                                receiver_counters,
                            )
                            .run(stop_rx)
                            .await
                        }
                        Err(e) => {
                            error!(listener = %receiver_label, error = %e, "Cannot read the UDP socket; the listener does not run.")
                        }
                    }
                }
                Arbiter::current().stop();
            });
        });
        Listener {
            addr: self.addr,
            label,
            settings,
            stop: Some(stop),
            flushed: Some(flushed),
            counters,
        }
    }
}

impl Drop for Unstarted {
    fn drop(&mut self) {
        // Not started (a reload refused after binding): nothing runs on the threads yet.
        if self.socket.is_some() {
            self.receiver.stop();
            self.flusher.stop();
        }
    }
}

/// A running listener. Dropping it stops it ([`Listener::stop`]).
#[derive(Debug)]
pub(super) struct Listener {
    /// The address it was asked to bind (its key across reloads).
    pub(super) addr: SocketAddr,
    /// The address it is bound to, as `/metrics` and the log name it.
    pub(super) label: String,
    settings: watch::Sender<Arc<UdpConfig>>,
    stop: Option<oneshot::Sender<()>>,
    flushed: Option<oneshot::Receiver<()>>,
    /// What it counted.
    pub(super) counters: Arc<Counters>,
}

impl Listener {
    /// Applies a reloaded entry in place: the batches begun from now on go to its database
    /// with its batching; a new `read_buffer` is set on the socket.
    pub(super) fn update(&self, config: UdpConfig) {
        self.settings.send_if_modified(|current| {
            let changed = **current != config;
            if changed {
                *current = Arc::new(config);
            }
            changed
        });
    }

    /// Stops reading (the socket closes) and has the batches written; resolves once they are.
    /// `None` when already stopped.
    pub(super) fn stop(&mut self) -> Option<oneshot::Receiver<()>> {
        let stop = self.stop.take()?;
        let _ = stop.send(());
        self.counters.unregister();
        self.flushed.take()
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The reading side of a listener.
struct Receiver {
    socket: tokio::net::UdpSocket,
    label: String,
    /// The socket's inode and family, to find it in `/proc/net/udp*`.
    inode: Option<u64>,
    ipv6: bool,
    source: Arc<dyn Ingest>,
    settings: watch::Receiver<Arc<UdpConfig>>,
    batches: mpsc::UnboundedSender<UdpBatch>,
    /// Batches handed over and not yet taken by the flush thread.
    pending: Arc<AtomicUsize>,
    /// Signalled when the flush thread takes a batch.
    room: Arc<Notify>,
    counters: Arc<Counters>,
    /// The batch being filled, and when it must go.
    batch: Option<(UdpBatch, Instant)>,
    /// A full batch waiting for room among the pending ones; while there is one, datagrams
    /// are dropped (and no batch is being filled).
    waiting: Option<UdpBatch>,
    /// The kernel's drop count last read.
    kernel_drops: Option<u64>,
    /// The `read_buffer` the socket was given.
    read_buffer: usize,
}

impl Receiver {
    #[allow(clippy::too_many_arguments)]
    fn new(
        socket: tokio::net::UdpSocket,
        label: String,
        source: Arc<dyn Ingest>,
        settings: watch::Receiver<Arc<UdpConfig>>,
        batches: mpsc::UnboundedSender<UdpBatch>,
        pending: Arc<AtomicUsize>,
        room: Arc<Notify>,
        counters: Arc<Counters>,
    ) -> Receiver {
        let ipv6 = socket.local_addr().is_ok_and(|a| a.is_ipv6());
        let read_buffer = settings.borrow().read_buffer;
        let inode = kernel::inode(&socket);
        if let Some(inode) = inode {
            let _ = counters.socket.set((inode, ipv6));
        }
        Receiver {
            inode,
            ipv6,
            socket,
            label,
            source,
            settings,
            batches,
            pending,
            room,
            counters,
            batch: None,
            waiting: None,
            kernel_drops: None,
            read_buffer,
        }
    }

    /// Reads until stopped (`stop` sent or dropped), then hands every batch over.
    async fn run(mut self, mut stop: oneshot::Receiver<()>) {
        self.log_started();
        let mut buf = vec![0u8; MAX_DATAGRAM];
        let mut poll = tokio::time::interval(KERNEL_POLL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let room = Arc::clone(&self.room);
        loop {
            let deadline = self.batch.as_ref().map(|(_, d)| *d);
            // Timers before the socket: under a flood the socket is always ready.
            tokio::select! {
                biased;
                _ = &mut stop => break,
                changed = self.settings.changed() => match changed {
                    Ok(()) => self.settings_changed(),
                    Err(_) => break,
                },
                () = room.notified(), if self.waiting.is_some() => self.retry_waiting(),
                () = until(deadline) => self.finish_batch(),
                _ = poll.tick() => self.poll_kernel(),
                received = self.socket.recv(&mut buf) => match received {
                    Ok(n) => self.datagram(&buf[..n]),
                    Err(e) => {
                        if let Some(times) = self.counters.logs.read_errors.check() {
                            error!(listener = %self.label, error = %e, times, "Reading the UDP socket failed.");
                        }
                        tokio::time::sleep(READ_ERROR_PAUSE).await;
                    }
                },
            }
        }
        // The socket closes here; what was read is still written.
        let Receiver {
            socket,
            batch,
            waiting,
            batches,
            pending,
            ..
        } = self;
        drop(socket);
        for batch in waiting.into_iter().chain(batch.map(|(b, _)| b)) {
            pending.fetch_add(1, Ordering::AcqRel);
            let _ = batches.send(batch);
        }
    }

    fn log_started(&mut self) {
        let settings = self.settings.borrow().clone();
        let granted = SockRef::from(&self.socket).recv_buffer_size().unwrap_or(0);
        self.counters.read_buffer.set(granted as f64);
        info!(
            listener = %self.label,
            db = %settings.database,
            rp = %settings.retention_policy,
            read_buffer = granted,
            "UDP listener started."
        );
        warn_if_short(&self.label, settings.read_buffer, granted);
    }

    /// A reload changed the entry: a new read buffer is set now, the rest applies to the next
    /// batch.
    fn settings_changed(&mut self) {
        let settings = self.settings.borrow_and_update().clone();
        let socket = SockRef::from(&self.socket);
        let current = socket.recv_buffer_size().unwrap_or(0);
        if settings.read_buffer != self.read_buffer {
            // 0: back to the OS default (which Linux grants as it is, not doubled).
            let asked = match settings.read_buffer {
                0 => kernel::default_read_buffer().map(|d| d / 2),
                n => Some(n),
            };
            if let Some(Err(e)) = asked.map(|n| socket.set_recv_buffer_size(n)) {
                warn!(listener = %self.label, error = %e, "Setting the UDP read buffer failed.");
            }
            self.read_buffer = settings.read_buffer;
        }
        let granted = socket.recv_buffer_size().unwrap_or(0);
        self.counters.read_buffer.set(granted as f64);
        info!(
            listener = %self.label,
            db = %settings.database,
            rp = %settings.retention_policy,
            read_buffer = granted,
            "UDP listener updated."
        );
        if granted != current {
            warn_if_short(&self.label, settings.read_buffer, granted);
        }
    }

    /// Appends a datagram to the batch, or drops it (counted).
    fn datagram(&mut self, data: &[u8]) {
        self.counters.datagrams.inc();
        self.counters.bytes.inc_by(data.len() as u64);
        if data.is_empty() {
            return;
        }
        self.retry_waiting();
        if self.waiting.is_some() {
            return self.drop_datagram(Dropped::Pending);
        }
        let settings = self.settings.borrow().clone();
        let source = Arc::clone(&self.source);
        let admission = source.admission();
        let bound = batch_bound(source.config().max_body_bytes, admission.body_limit());
        let needed = data.len() + usize::from(!data.ends_with(b"\n"));
        if needed > bound {
            return self.drop_datagram(Dropped::TooLarge);
        }
        if self
            .batch
            .as_ref()
            .is_some_and(|(b, _)| b.body.len() + needed > bound)
        {
            self.finish_batch();
            if self.waiting.is_some() {
                return self.drop_datagram(Dropped::Pending);
            }
        }
        let held = self.batch.as_ref().map_or(0, |(b, _)| b.body.len());
        let charge_bytes = (held + needed) as u64 * WRITE_COPIES;
        // Never waits: a datagram waiting for memory would leave the socket unread.
        let charged = if let Some((batch, _)) = &mut self.batch {
            batch
                .charge
                .as_mut()
                .is_some_and(|c| c.try_grow(charge_bytes).unwrap_or(false))
        } else if let Some(charge) = admission.try_admit(charge_bytes) {
            let batch = UdpBatch {
                body: Vec::with_capacity(needed),
                lines: 0,
                charge: Some(charge),
                settings: Arc::clone(&settings),
            };
            self.batch = Some((batch, Instant::now() + settings.batch_timeout));
            true
        } else {
            false
        };
        if !charged {
            return self.drop_datagram(Dropped::Memory);
        }
        let Some((batch, _)) = &mut self.batch else {
            return;
        };
        batch.body.extend_from_slice(data);
        if !data.ends_with(b"\n") {
            batch.body.push(b'\n');
        }
        batch.lines +=
            memchr::memchr_iter(b'\n', data).count() + usize::from(!data.ends_with(b"\n"));
        if batch.lines >= settings.batch_size {
            self.finish_batch();
        }
    }

    /// Hands the batch being filled over (full, or its time is up).
    fn finish_batch(&mut self) {
        if let Some((batch, _)) = self.batch.take() {
            self.hand_over(batch);
        }
    }

    /// Gives `batch` to the flush thread, or keeps it waiting while `batch_pending` batches
    /// already wait.
    fn hand_over(&mut self, batch: UdpBatch) {
        let limit = self.settings.borrow().batch_pending;
        if self.pending.load(Ordering::Acquire) >= limit {
            self.waiting = Some(batch);
            return;
        }
        self.pending.fetch_add(1, Ordering::AcqRel);
        if self.batches.send(batch).is_err() {
            self.pending.fetch_sub(1, Ordering::AcqRel);
            error!(listener = %self.label, "The UDP listener's writer stopped; a batch is lost.");
        }
    }

    /// Hands the waiting batch over if there is room now.
    fn retry_waiting(&mut self) {
        if let Some(batch) = self.waiting.take() {
            self.hand_over(batch);
        }
    }

    fn drop_datagram(&self, why: Dropped) {
        self.counters.dropped(why);
        if let Some(times) = self.counters.logs.dropped.check() {
            error!(
                listener = %self.label,
                reason = why.name(),
                datagrams = times,
                pending = self.counters.dropped_so_far(Dropped::Pending),
                memory = self.counters.dropped_so_far(Dropped::Memory),
                too_large = self.counters.dropped_so_far(Dropped::TooLarge),
                "UDP datagrams dropped: writes do not keep up (pending), the memory budget is taken (memory) or a datagram is larger than a batch may be (too_large); counted in influx_proxy_udp_datagrams_dropped_total, logged at most once per interval."
            );
        }
    }

    /// Reads what the kernel dropped since the last poll and logs it (`/metrics` reads the
    /// count itself at each scrape).
    fn poll_kernel(&mut self) {
        let Some(now) = self.inode.and_then(|i| kernel::drops(i, self.ipv6)) else {
            return;
        };
        let before = self.kernel_drops.replace(now).unwrap_or(0);
        let new = now.saturating_sub(before);
        if new == 0 {
            return;
        }
        if self.counters.logs.kernel.check().is_some() {
            error!(
                listener = %self.label,
                datagrams = new,
                total = now,
                "The kernel dropped UDP datagrams: the socket's receive buffer was full (raise read_buffer, and net.core.rmem_max); counted in influx_proxy_udp_kernel_drops_total, logged at most once per interval."
            );
        }
    }
}

/// The most bytes a batch holds: `max_body_bytes`, and what the memory budget lets one body
/// hold ([`crate::memory::Admission::body_limit`]) at [`WRITE_COPIES`] bytes per byte.
fn batch_bound(max_body_bytes: usize, body_limit: u64) -> usize {
    let memory = usize::try_from(body_limit / WRITE_COPIES).unwrap_or(usize::MAX);
    max_body_bytes.min(memory)
}

/// Resolves at `deadline`; never without one.
async fn until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Says so when the kernel granted less than `read_buffer` asked: Linux grants twice the size
/// asked (half of it for its own bookkeeping), unless `net.core.rmem_max` caps it.
fn warn_if_short(label: &str, asked: usize, granted: usize) {
    if asked > 0 && granted < asked.saturating_mul(2) {
        warn!(
            listener = %label,
            read_buffer = asked,
            granted,
            "The kernel granted a smaller UDP read buffer than read_buffer asks; raise net.core.rmem_max."
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_is_bounded_by_the_setting_and_by_memory() {
        assert_eq!(batch_bound(64 << 20, 12 << 20), 4 << 20);
        assert_eq!(batch_bound(1000, 12 << 20), 1000);
    }
}
