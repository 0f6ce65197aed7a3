//! A circle: a consistent-hash ring over backends holding one full copy of
//! the data, and the supervisor that keeps its backend actors alive.
//!
//! The ring is an immutable value; a config change builds a new circle.
//! Backend actors run each on its own arbiter (thread). actix's own
//! `Supervisor` only restarts actors that stop, not ones whose handler
//! panicked, so the circle checks every second that each actor's mailbox
//! is still connected and starts a fresh actor when it is not. Nothing is
//! lost by a restart: the actor's only state is its write-ahead queue.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use parking_lot::RwLock;
use tracing::error;

use std::sync::atomic::{AtomicBool, Ordering};

use crate::backend::{msg, Backend, BackendActor, Settings};
use crate::metrics::Counter;
use crate::ring::Ring;
use crate::wal::Wal;

/// How often the circle checks that its backend actors are alive.
const SUPERVISE_INTERVAL: Duration = Duration::from_secs(1);

/// A running backend: shared state plus the address of its current actor.
pub(crate) struct BackendHandle {
    /// Shared state (survives actor restarts).
    pub backend: Arc<Backend>,
    addr: RwLock<Addr<BackendActor>>,
    arbiter: Arbiter,
    wal: Arc<Wal>,
    settings: Settings,
    stopped: AtomicBool,
}

impl std::fmt::Debug for BackendHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackendHandle")
            .field("backend", &self.backend.info.name)
            .finish()
    }
}

impl BackendHandle {
    /// Starts the backend's actor on a new arbiter.
    pub(crate) fn start(backend: Arc<Backend>, wal: Arc<Wal>, settings: Settings) -> BackendHandle {
        let arbiter = Arbiter::new();
        arbiter.spawn_fn(lower_thread_priority);
        let addr = spawn_actor(&arbiter, &backend, &wal, &settings);
        BackendHandle {
            backend,
            addr: RwLock::new(addr),
            arbiter,
            wal,
            settings,
            stopped: AtomicBool::new(false),
        }
    }

    /// Wakes the actor after records were appended to its queue.
    pub(crate) fn notify(&self) {
        if self.backend.take_notify_slot() {
            self.addr.read().do_send(msg::Notify);
        }
    }

    /// The delivery settings the actor runs with (read paths judge how
    /// stale a queue is against `flush_time`).
    pub(crate) fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Address of the current actor.
    #[cfg(test)]
    pub(crate) fn addr(&self) -> Addr<BackendActor> {
        self.addr.read().clone()
    }

    /// Starts a fresh actor if the current one died. Returns true if it did.
    fn revive(&self) -> bool {
        if self.stopped.load(Ordering::Acquire) || self.addr.read().connected() {
            return false;
        }
        error!(backend = %self.backend.info.name, "Backend actor died; starting a new one.");
        let addr = spawn_actor(&self.arbiter, &self.backend, &self.wal, &self.settings);
        *self.addr.write() = addr;
        true
    }

    /// Whether [`BackendHandle::stop`] was called.
    #[cfg(test)]
    pub(crate) fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }

    /// Stops the actor and its thread, for good.
    pub(crate) fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
        self.addr.read().do_send(msg::Stop);
        self.arbiter.stop();
    }
}

/// How much nicer than the HTTP workers the delivery threads run.
///
/// Compressing and sending the backlog competes for the same cores as
/// acknowledging writes; only the latter has a client waiting. On the
/// 2-core bench VM at 100k points/s (`scripts/bench.sh` (c)) this cut the
/// p99 of a 5,000-line write from 12.8 ms to 10.7 ms (mean of three paired
/// 30 s runs), and delivery still gets about a third of a busy core, far
/// more than it needs while the backends keep up.
const DELIVERY_NICENESS: i32 = 5;

/// Lowers the CPU priority of the calling (delivery) thread; Linux applies
/// `setpriority` per thread. Failure only costs latency, so it is logged.
fn lower_thread_priority() {
    let tid = rustix::thread::gettid();
    let current = rustix::process::getpriority_process(Some(tid)).unwrap_or(0);
    if let Err(e) = rustix::process::setpriority_process(Some(tid), current + DELIVERY_NICENESS) {
        tracing::warn!(error = %e, "could not lower the priority of a delivery thread");
    }
}

fn spawn_actor(
    arbiter: &Arbiter,
    backend: &Arc<Backend>,
    wal: &Arc<Wal>,
    settings: &Settings,
) -> Addr<BackendActor> {
    let (backend, wal, settings) = (backend.clone(), wal.clone(), settings.clone());
    // A new actor pumps its queue on start, so a pending wake-up is moot.
    backend.reset_notify_slot();
    BackendActor::start_in_arbiter(&arbiter.handle(), move |_| {
        BackendActor::new(backend, wal, settings)
    })
}

/// One circle of backends.
#[derive(Debug)]
pub(crate) struct Circle {
    /// Position in the config (0-based), the `circle_id` of the API.
    pub id: usize,
    /// Configured name.
    pub name: String,
    /// Placement of shard keys onto `backends` indices; asked only through
    /// `cluster::Placement`, which applies the pin rules first.
    pub ring: Ring,
    /// Backends in config order.
    pub backends: Vec<Arc<BackendHandle>>,
    /// A migration job writes into this circle: reads avoid it (its data is
    /// incomplete) while writes keep flowing. Survives config reloads.
    pub migrating: Arc<AtomicBool>,
    /// Reads this circle answered (`/metrics`: each circle's share of the reads). Survives
    /// config reloads, like `migrating`.
    pub reads: Arc<Counter>,
}

impl Circle {
    /// Whether a migration currently targets this circle.
    pub(crate) fn is_migrating(&self) -> bool {
        self.migrating.load(Ordering::Acquire)
    }

    /// All backends of the circle are active.
    pub(crate) fn is_active(&self) -> bool {
        self.backends.iter().all(|b| b.backend.status.is_active())
    }
}

/// Keeps a circle's backend actors alive.
#[derive(Debug)]
pub(crate) struct CircleSupervisor {
    circle: Arc<Circle>,
}

impl CircleSupervisor {
    /// Supervises `circle` once started.
    pub(crate) fn new(circle: Arc<Circle>) -> CircleSupervisor {
        CircleSupervisor { circle }
    }
}

/// Stop supervising (the circle was replaced by a reload).
#[derive(Debug, actix::Message)]
#[rtype(result = "()")]
pub(crate) struct StopSupervising;

impl Handler<StopSupervising> for CircleSupervisor {
    type Result = ();

    fn handle(&mut self, _: StopSupervising, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

impl Actor for CircleSupervisor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(SUPERVISE_INTERVAL, |act, _| {
            for b in &act.circle.backends {
                b.revive();
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{client, Info};

    fn handle(dir: &std::path::Path) -> BackendHandle {
        let wal = Arc::new(Wal::open(dir, crate::wal::Durability::Buffered).unwrap());
        let queue = wal.queue("b", 1 << 20).unwrap();
        let info = Info {
            name: "b".into(),
            url: "http://127.0.0.1:1".into(),
            circle: "c".into(),
            write_only: false,
        };
        let target = client::Target {
            url: info.url.clone(),
            credentials: None,
            tls_skip_verify: false,
        };
        let settings = Settings {
            flush_size: 10,
            concurrency: 1,
            gzip: true,
            flush_time: Duration::from_millis(10),
            check_interval: Duration::from_secs(60),
            max_backoff: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            query_timeout: Duration::from_secs(1),
        };
        BackendHandle::start(Arc::new(Backend::new(info, target, queue)), wal, settings)
    }

    #[actix_rt::test]
    async fn a_dead_backend_actor_is_replaced_and_a_live_one_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let h = handle(dir.path());
        assert!(!h.revive(), "a running actor is not restarted");
        let old = h.addr();
        old.send(msg::Stop).await.unwrap();
        for _ in 0..100 {
            if !old.connected() {
                break;
            }
            actix_rt::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(!old.connected());
        assert!(h.revive(), "a dead actor is restarted");
        assert!(h.addr().connected());
        h.stop();
    }
}
