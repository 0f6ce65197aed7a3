//! Pacing writes to delivery when the proxy's own CPU runs out.
//!
//! # Why
//! A write is acknowledged once it is in the queue; delivering it costs CPU
//! again (reading the queue, cutting lanes, gzip). When both cores are busy,
//! acknowledging ran ahead of delivery: in a 10 s flat-out run the backends
//! had received about a third of what was acknowledged, and after 45 s the
//! backlog took 24 s more to drain. A record that leaves RocksDB's memtable
//! before it is delivered costs LZ4 at the flush, a read back from disk and a
//! compaction, so the further delivery fell behind, the more each point cost
//! (docs/perf.md (a), the same session: 2.09-2.11 CPU-µs per point before,
//! 1.31-1.32 with pacing; docs/profile.md, "Pacing").
//!
//! So while the process uses (nearly) all of its cores *and* a backend that
//! is up and delivering is behind by more than its next batch, new write
//! requests wait before their body is read. Delivery catches up, records are
//! deleted while still in memory, and clients see the proxy's real pace as
//! latency, as they would from InfluxDB itself.
//!
//! What does not pace writes:
//! - a backend that is down, or stalled (nothing delivered for [`STALLED`]),
//!   or slow (its latest write request took more than [`SLOW_WRITE`]): it,
//!   not the proxy's CPU, is what its delivery waits for; its backlog is
//!   what the queue is for, and one backend's trouble must not slow the
//!   others;
//! - a backend draining the backlog of an outage, and any backlog while a
//!   migration or repair appends to the queues: that backlog is theirs, and
//!   writes would wait for all of it;
//! - a backlog while the CPU has room: delivery is then limited by the
//!   backend, not by the proxy;
//! - UDP, which has nobody to hold back.
//!
//! A request waits at most `write_pace_max_wait_ms` (default 1 s; 0 turns
//! pacing off).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::info;

use crate::backend::Settings;
use crate::cluster::Cluster;
use crate::rate_limit::RateLimit;

/// How often the backlogs are looked at while the CPU is used up or writes wait, and how often
/// a waiting write looks again.
const SAMPLE_EVERY: Duration = Duration::from_millis(5);

/// How often the CPU is looked at while the process uses less than half of its cores:
/// sampling every 5 ms cost an idle proxy 3% of a core.
const IDLE_SAMPLE_EVERY: Duration = Duration::from_millis(100);

/// How often the CPUs the process may use are asked again (Rust reads the cgroup's quota
/// from files each time).
const CORES_EVERY: Duration = Duration::from_secs(5);

/// Span over which the CPU use is measured (the kernel counts it in ticks of a few ms).
const CPU_WINDOW: Duration = Duration::from_millis(50);

/// Share of the process's cores above which the CPU counts as used up.
const BUSY_SHARE: f64 = 0.85;

/// A backend that delivered nothing for this long is stalled: its backlog does not pace
/// writes.
const STALLED: Duration = Duration::from_millis(500);

/// A backend whose latest write request took longer than this is slow: InfluxDB, not the
/// proxy's CPU, sets its pace. Flat out with both cores busy, requests of up to 10,000 points
/// to a null sink took at most 50 ms, most under 10 ms; influxd at its limit takes hundreds.
const SLOW_WRITE: Duration = Duration::from_millis(250);

/// Each this long a write has waited, it accepts one more allowance of backlog
/// ([`lag_allowed`]). Without it, every waiting write went on at the moment delivery had
/// caught up, and the backlog they made at once closed the gate again for a whole delivery
/// round: p90 60 ms, p99 ~100 ms flat out; with 25 ms, p90 30 ms, p99 45-70 ms, at the same
/// points/s and CPU per point (docs/profile.md, "Pacing").
const AGING: Duration = Duration::from_millis(25);

/// A backlog at exactly what a backend may have, in [`Pace::pressure`]'s unit.
const FULL: u64 = 1000;

/// How writes wait: set by [`watch`], awaited by the write handlers.
#[derive(Debug, Default)]
pub(crate) struct Pace {
    /// Whether writes wait at all: the CPU was used up while a backend lagged, and no
    /// lagging backend has caught up since.
    pacing: AtomicBool,
    /// The most behind delivering backend's backlog, in thousandths of what it may have.
    pressure: AtomicU64,
    /// Write requests that waited.
    paced: AtomicU64,
    /// Their waits, summed, in microseconds.
    waited_us: AtomicU64,
}

impl Pace {
    /// Waits while delivery is behind, at most `max_wait` (`write_pace_max_wait_ms`). The
    /// longer a request has waited, the more backlog it accepts ([`AGING`]).
    pub(crate) async fn wait(&self, max_wait: Duration) {
        if max_wait.is_zero() || !self.pacing.load(Ordering::Acquire) {
            return;
        }
        let started = tokio::time::Instant::now();
        let mut slept = false;
        loop {
            let waited = started.elapsed();
            let pacing = self.pacing.load(Ordering::Acquire);
            let pressure = self.pressure.load(Ordering::Acquire);
            if goes_on(pacing, pressure, waited, max_wait) {
                if slept {
                    self.paced.fetch_add(1, Ordering::Relaxed);
                    let us = u64::try_from(waited.as_micros()).unwrap_or(u64::MAX);
                    self.waited_us.fetch_add(us, Ordering::Relaxed);
                }
                return;
            }
            tokio::time::sleep(SAMPLE_EVERY).await;
            slept = true;
        }
    }

    /// Whether writes are being paced now.
    pub(crate) fn is_pacing(&self) -> bool {
        self.pacing.load(Ordering::Relaxed)
    }

    /// Write requests that waited, and their waits summed.
    pub(crate) fn waits(&self) -> (u64, Duration) {
        let us = self.waited_us.load(Ordering::Relaxed);
        (
            self.paced.load(Ordering::Relaxed),
            Duration::from_micros(us),
        )
    }
}

/// Whether a write that waited `waited` goes on, given the pacing state and the longest wait.
fn goes_on(pacing: bool, pressure: u64, waited: Duration, max_wait: Duration) -> bool {
    !pacing || pressure <= accepted(waited) || waited >= max_wait
}

/// The backlog a write accepts after waiting `waited`, in [`FULL`]s.
fn accepted(waited: Duration) -> u64 {
    let steps = waited.as_micros() * u128::from(FULL) / AGING.as_micros();
    FULL.saturating_add(u64::try_from(steps).unwrap_or(u64::MAX))
}

/// Backlog a delivering backend may have before writes wait: its next full batch
/// (`flush_size` points in each of its `write_concurrency` lanes).
fn lag_allowed(s: &Settings) -> u64 {
    s.flush_size
        .saturating_mul(s.concurrency.max(1) as u64)
        .max(1)
}

/// What [`watch`] reads of one backend.
#[derive(Debug, Clone, Copy)]
struct BackendSample {
    /// Points delivered so far (a counter).
    delivered: u64,
    /// Points queued for it now.
    backlog: u64,
    /// [`lag_allowed`] of its settings.
    allowed: u64,
    /// Whether it is up (not marked down by failed deliveries or checks).
    active: bool,
    /// How long its latest write request took.
    last_write: Duration,
    /// Whether it is draining the backlog of an outage.
    draining: bool,
}

/// The pacing decision, one sample after the other (pure, so it is tested beside).
#[derive(Debug, Default)]
struct Pacer {
    /// (delivered counter, when it last moved) per backend, in cluster order.
    progress: Vec<(u64, Instant)>,
    pacing: bool,
}

impl Pacer {
    /// Takes one sample: whether the CPU is used up, whether a migration appends to the
    /// queues, and what each backend shows. Returns whether writes are paced and the pressure
    /// ([`Pace::pressure`]).
    fn step(
        &mut self,
        now: Instant,
        busy: bool,
        migrating: bool,
        backends: &[BackendSample],
    ) -> (bool, u64) {
        if self.progress.len() != backends.len() {
            // A reload changed the backends: everyone starts as moving.
            self.progress = backends.iter().map(|b| (b.delivered, now)).collect();
        }
        let mut pressure = 0;
        for (b, (seen, moved)) in backends.iter().zip(self.progress.iter_mut()) {
            if b.delivered != *seen {
                *seen = b.delivered;
                *moved = now;
            }
            let delivering = now.duration_since(*moved) < STALLED;
            let ours = b.active && !b.draining && !migrating && b.last_write <= SLOW_WRITE;
            if delivering && ours {
                let lag = b.backlog.saturating_mul(FULL) / b.allowed.max(1);
                pressure = pressure.max(lag);
            }
        }
        // Once pacing, until delivery has caught up: with writes held back the CPU is no
        // longer all used, and letting them all go would only start over.
        self.pacing = pressure > FULL && (busy || self.pacing);
        (self.pacing, pressure)
    }
}

/// The process's CPU use over [`CPU_WINDOW`], from the kernel's per-process clock.
#[derive(Debug)]
struct CpuUse {
    cores: f64,
    /// When `cores` was asked.
    cores_at: Instant,
    samples: VecDeque<(Instant, Duration)>,
    /// At least [`BUSY_SHARE`] of the cores used in the last window.
    busy: bool,
    /// At least half of them: pacing may be near, sample often.
    warm: bool,
}

impl CpuUse {
    fn new() -> CpuUse {
        CpuUse {
            cores: cores(),
            cores_at: Instant::now(),
            samples: VecDeque::from([(Instant::now(), cpu_time())]),
            busy: false,
            warm: false,
        }
    }

    /// Whether the process used at least [`BUSY_SHARE`] of its cores lately.
    fn sample(&mut self, now: Instant) -> bool {
        let cpu = cpu_time();
        if let Some(&(at, before)) = self.samples.front() {
            let wall = now.duration_since(at);
            if wall >= CPU_WINDOW {
                let used = cpu.saturating_sub(before).as_secs_f64() / wall.as_secs_f64();
                self.busy = used >= BUSY_SHARE * self.cores;
                self.warm = used >= 0.5 * self.cores;
                self.samples.pop_front();
            }
        }
        // Asked again now and then: `taskset`, a cpuset or a CPU quota (cgroups) may change
        // what the process may use while it runs.
        if now.duration_since(self.cores_at) >= CORES_EVERY {
            self.cores = cores();
            self.cores_at = now;
        }
        self.samples.push_back((now, cpu));
        self.busy
    }
}

/// The CPUs the process may use now (its affinity mask and its cgroup's CPU quota).
fn cores() -> f64 {
    std::thread::available_parallelism().map_or(1, |n| n.get()) as f64
}

/// The process's CPU time, from its kernel clock: nanoseconds and one system call, where the
/// `/proc/self/stat` that `metrics::encode_process` reads for `/metrics` is a file to parse and
/// counts in 10 ms ticks, too coarse for a 50 ms window sampled every 5 ms.
fn cpu_time() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    let secs = u64::try_from(t.tv_sec).unwrap_or(0);
    let nanos = u32::try_from(t.tv_nsec).unwrap_or(0).min(999_999_999);
    Duration::new(secs, nanos)
}

/// Samples the CPU and the backends' backlogs and sets `pace`, every [`SAMPLE_EVERY`] while
/// the process uses half of its cores or more or writes wait, else every
/// [`IDLE_SAMPLE_EVERY`]; runs until aborted.
pub(crate) async fn watch(
    pace: Arc<Pace>,
    cluster: impl Fn() -> Arc<Cluster>,
    migrating: impl Fn() -> bool,
) {
    static LOG: RateLimit = RateLimit::new(Duration::from_secs(60));
    let mut cpu = CpuUse::new();
    let mut pacer = Pacer::default();
    let mut backends = Vec::new();
    loop {
        let every = if pace.is_pacing() || cpu.warm {
            SAMPLE_EVERY
        } else {
            IDLE_SAMPLE_EVERY
        };
        tokio::time::sleep(every).await;
        let now = Instant::now();
        let busy = cpu.sample(now);
        backends.clear();
        backends.extend(cluster().backends().map(|h| BackendSample {
            delivered: h.backend.status.delivered_points.load(Ordering::Relaxed),
            backlog: h.backend.queue.stats.points(),
            allowed: lag_allowed(h.settings()),
            active: h.backend.status.is_active(),
            last_write: Duration::from_micros(
                h.backend.status.last_write_us.load(Ordering::Relaxed),
            ),
            draining: h.backend.status.is_draining(),
        }));
        let (pacing, pressure) = pacer.step(now, busy, migrating(), &backends);
        pace.pressure.store(pressure, Ordering::Release);
        let was = pace.pacing.swap(pacing, Ordering::AcqRel);
        if pacing && !was {
            if let Some(times) = LOG.check() {
                info!(
                    times,
                    backlog_share = pressure as f64 / FULL as f64,
                    "CPU used up and delivery behind: writes wait for it to catch up (logged at most once a minute; `times` counts the starts since)."
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend(delivered: u64, backlog: u64) -> BackendSample {
        BackendSample {
            delivered,
            backlog,
            allowed: 40_000,
            active: true,
            last_write: Duration::from_millis(10),
            draining: false,
        }
    }

    #[test]
    fn writes_wait_only_while_the_cpu_is_used_up_and_a_delivering_backend_lags() {
        let t0 = Instant::now();
        let mut p = Pacer::default();
        assert_eq!(p.step(t0, true, false, &[backend(0, 10_000)]), (false, 250));
        // Behind with CPU to spare: the backend sets the pace, not us.
        assert!(!p.step(t0, false, false, &[backend(10, 80_000)]).0);
        assert_eq!(
            p.step(t0, true, false, &[backend(20, 80_000)]),
            (true, 2000)
        );
        // Writes held back free the CPU; pacing lasts until the backlog is down.
        assert!(p.step(t0, false, false, &[backend(30, 60_000)]).0);
        assert!(!p.step(t0, false, false, &[backend(40, 40_000)]).0);
        assert!(!p.step(t0, false, false, &[backend(50, 60_000)]).0);
    }

    #[test]
    fn a_stalled_down_slow_or_draining_backend_or_a_migration_does_not_pace_writes() {
        let t0 = Instant::now();
        let mut p = Pacer::default();
        p.step(t0, true, false, &[backend(0, 0), backend(0, 0)]);
        let later = t0 + STALLED;
        // The second backend delivered nothing since t0: stalled, its backlog is the queue's.
        let stalled = [backend(5, 1_000), backend(0, 1_000_000)];
        assert_eq!(p.step(later, true, false, &stalled), (false, 25));
        let lagging = |delivered| backend(delivered, 1_000_000);
        for (delivered, other) in [
            (9, |b| BackendSample { active: false, ..b }),
            (10, |b| BackendSample {
                last_write: SLOW_WRITE * 2,
                ..b
            }),
            (11, |b| BackendSample {
                draining: true,
                ..b
            }),
        ] as [(u64, fn(BackendSample) -> BackendSample); 3]
        {
            let sample = [backend(6, 0), other(lagging(delivered))];
            assert!(!p.step(later, true, false, &sample).0, "{:?}", sample[1]);
        }
        // A migration's backlog in the destination queues is the migration's.
        assert!(!p.step(later, true, true, &[backend(7, 0), lagging(12)]).0);
        // Up, quick, delivering and no migration: it paces.
        assert!(p.step(later, true, false, &[backend(8, 0), lagging(13)]).0);
    }

    #[test]
    fn a_reload_that_changes_the_backends_starts_over() {
        let t0 = Instant::now();
        let mut p = Pacer::default();
        p.step(t0, true, false, &[backend(0, 0)]);
        let later = t0 + STALLED * 2;
        assert!(
            p.step(later, true, false, &[backend(0, 0), backend(0, 90_000)])
                .0
        );
    }

    #[test]
    fn the_longer_a_write_waited_the_more_backlog_it_accepts() {
        assert_eq!(accepted(Duration::ZERO), FULL);
        assert_eq!(accepted(AGING), 2 * FULL);
        assert_eq!(accepted(AGING / 2), FULL + FULL / 2);
    }

    #[test]
    fn a_write_goes_on_once_the_backlog_is_within_what_it_accepts_or_after_max_wait() {
        let max = Duration::from_secs(1);
        assert!(goes_on(false, u64::MAX, Duration::ZERO, max));
        assert!(!goes_on(true, 3 * FULL, Duration::ZERO, max));
        assert!(!goes_on(true, 3 * FULL, AGING, max));
        assert!(goes_on(true, 3 * FULL, AGING * 2, max));
        assert!(!goes_on(true, u64::MAX, max - SAMPLE_EVERY, max));
        assert!(goes_on(true, u64::MAX, max, max));
    }

    #[test]
    fn write_pace_max_wait_bounds_the_wait_and_zero_turns_pacing_off() {
        // `write_pace_max_wait_ms`: how long a write waits at most while delivery is behind;
        // 0 and writes never wait.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let pace = Pace::default();
        pace.pacing.store(true, Ordering::Release);
        pace.pressure.store(u64::MAX, Ordering::Release);
        rt.block_on(pace.wait(Duration::ZERO));
        assert_eq!(pace.waits(), (0, Duration::ZERO), "0: no write waits");

        let max_wait = Duration::from_millis(40);
        let started = std::time::Instant::now();
        rt.block_on(pace.wait(max_wait));
        assert!(started.elapsed() >= max_wait);
        let (paced, waited) = pace.waits();
        assert_eq!(paced, 1);
        assert!(waited >= max_wait, "{waited:?}");
    }

    #[test]
    fn waits_are_counted() {
        let pace = Pace::default();
        assert_eq!(pace.waits(), (0, Duration::ZERO));
        assert!(!pace.is_pacing());
    }
}
