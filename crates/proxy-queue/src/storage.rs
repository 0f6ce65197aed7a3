//! The state of the queue's storage: the free-space reserve on `data_dir`'s
//! filesystem and whether RocksDB still takes writes.
//!
//! # Why
//! The queue lives on a disk that can fill up, by the queue itself (a
//! backend down for long) or by another process. RocksDB that runs out of
//! space (or meets an I/O error writing its log) stops taking any write,
//! deletions included, until it is reopened. Acknowledgements being
//! deletions, a full disk used to stop every backend at its current batch,
//! resending it forever, and the queue never freed a byte.
//!
//! So:
//! - [`DiskSpace`] keeps `wal_min_free_mb` free: while less is free, appends
//!   are refused ([`super::Error::LowDisk`], a 503 like a full queue), so
//!   what the queue itself writes to move on (deletions, dead letters,
//!   RocksDB's flushes and compactions) always has room.
//! - [`Health`] notes the first failed write: appends are then refused
//!   ([`super::Error::Failed`]) and removals are kept in memory and written
//!   later (`wal::recover`), so every backend goes on delivering. The
//!   queue's maintenance thread reopens RocksDB once there is room again.
//!
//! # Failpoints
//! With the `failpoints` feature each [`Step`] is a failpoint named
//! [`Step::name`]: configured as `return` it fails that step of every
//! queue, as `return(DIR)` only that step of the queue opened at `DIR`
//! (tests run in parallel, each with its own queue).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use log_rate_limit::RateLimit;
use parking_lot::Mutex;

use crate::{Error, Result, Wal};

/// The steps of the queue that touch storage, each a failpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// Appending a write, a statement, copied lines or a replayed dead letter.
    Append,
    /// Reading a backend's queue for delivery.
    Read,
    /// Deleting delivered records.
    Ack,
    /// Rewriting late records as standalone ones.
    Unshare,
    /// Moving refused records or lines to the dead letters.
    DeadLetter,
    /// Writes of the queue's own upkeep: registration, dead-letter trimming,
    /// purge, the recovery probe.
    Upkeep,
}

impl Step {
    /// The failpoint's name, also the `step` field of log lines.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Step::Append => "wal::append",
            Step::Read => "wal::read",
            Step::Ack => "wal::ack",
            Step::Unshare => "wal::unshare",
            Step::DeadLetter => "wal::dead_letter",
            Step::Upkeep => "wal::upkeep",
        }
    }
}

/// The failpoint of `step` for the queue at `dir`: an injected storage
/// error when it is configured (see the module doc).
#[cfg(feature = "failpoints")]
pub(super) fn failpoint(step: Step, dir: &Path) -> Result<(), Error> {
    let injected = fail::eval(step.name(), |arg| match arg {
        Some(only) if Path::new(&only) != dir => None,
        _ => Some(Error::Storage(format!(
            "IO error: injected by failpoint {}",
            step.name()
        ))),
    });
    match injected.flatten() {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Without the `failpoints` feature: nothing.
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub(super) fn failpoint(_step: Step, _dir: &Path) -> Result<(), Error> {
    Ok(())
}

/// How long a measure of the free space is trusted (appends in between are
/// subtracted from it): a `statvfs` per append would cost a system call
/// on the write path for nothing.
const SPACE_CHECK_EVERY: Duration = Duration::from_millis(100);

const MIB: u64 = 1 << 20;

/// The free space of the queue's filesystem against the reserve.
#[derive(Debug)]
pub(super) struct DiskSpace {
    /// The queue's directory (what `statvfs` measures).
    dir: PathBuf,
    /// The reserve in bytes (`wal_min_free_mb`); 0: none.
    reserve: AtomicU64,
    /// Free bytes at the last measure, less what was appended since.
    free: AtomicU64,
    /// When `free` was measured (ms since `origin`, plus one; 0: never).
    measured: AtomicU64,
    origin: Instant,
    /// Free space is under the reserve (logged on each change).
    low: AtomicBool,
    /// Appends refused by the reserve, since start.
    refused: AtomicU64,
    /// A failing `statvfs`, logged once in a while.
    unknown: RateLimit,
}

impl DiskSpace {
    pub(super) fn new(dir: &Path) -> DiskSpace {
        DiskSpace {
            dir: dir.to_path_buf(),
            reserve: AtomicU64::new(0),
            free: AtomicU64::new(u64::MAX),
            measured: AtomicU64::new(0),
            origin: Instant::now(),
            low: AtomicBool::new(false),
            refused: AtomicU64::new(0),
            unknown: RateLimit::new(Duration::from_secs(60)),
        }
    }

    /// Sets the reserve, in MiB (0: none).
    pub(super) fn set_reserve_mb(&self, mb: u64) {
        self.reserve
            .store(mb.saturating_mul(MIB), Ordering::Release);
    }

    pub(super) fn reserve(&self) -> u64 {
        self.reserve.load(Ordering::Acquire)
    }

    /// Free bytes, measured now.
    pub(super) fn measure(&self) -> u64 {
        let free = match rustix::fs::statvfs(&self.dir) {
            Ok(s) => s.f_bavail.saturating_mul(s.f_frsize),
            Err(error) => {
                if let Some(times) = self.unknown.check() {
                    tracing::warn!(dir = %self.dir.display(), %error, times,
                        "Cannot read the free space of the queue's filesystem; the wal_min_free_mb reserve is not applied.");
                }
                u64::MAX
            }
        };
        self.free.store(free, Ordering::Release);
        let now = self.now_ms();
        self.measured.store(now, Ordering::Release);
        self.note(free);
        free
    }

    /// Free bytes, measured at most [`SPACE_CHECK_EVERY`] ago.
    pub(super) fn free(&self) -> u64 {
        let measured = self.measured.load(Ordering::Acquire);
        let every = SPACE_CHECK_EVERY.as_millis() as u64;
        if measured == 0 || self.now_ms().saturating_sub(measured) >= every {
            return self.measure();
        }
        self.free.load(Ordering::Acquire)
    }

    /// `Err(LowDisk)` when an append must wait for room.
    pub(super) fn check(&self) -> Result<(), Error> {
        let reserve = self.reserve();
        if reserve == 0 {
            return Ok(());
        }
        let free = self.free();
        if free >= reserve {
            return Ok(());
        }
        self.refused.fetch_add(1, Ordering::Relaxed);
        Err(Error::LowDisk {
            free_mb: free / MIB,
            reserve_mb: reserve / MIB,
        })
    }

    /// Counts `bytes` just appended against the last measure.
    pub(super) fn consumed(&self, bytes: u64) {
        let _ = self
            .free
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |f| {
                Some(f.saturating_sub(bytes))
            });
    }

    pub(super) fn is_low(&self) -> bool {
        self.low.load(Ordering::Acquire)
    }

    pub(super) fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Logs the reserve being crossed, either way.
    fn note(&self, free: u64) {
        let reserve = self.reserve();
        let low = reserve > 0 && free < reserve;
        if self.low.swap(low, Ordering::AcqRel) == low {
            return;
        }
        let (free_mb, reserve_mb) = (free / MIB, reserve / MIB);
        if low {
            tracing::warn!(dir = %self.dir.display(), free_mb, reserve_mb,
                "Free space on the queue's filesystem is under wal_min_free_mb; new writes are refused (503) until there is room.");
        } else {
            tracing::info!(dir = %self.dir.display(), free_mb, reserve_mb,
                "Free space on the queue's filesystem is back over wal_min_free_mb; writes are accepted.");
        }
    }

    fn now_ms(&self) -> u64 {
        (self.origin.elapsed().as_millis() as u64).saturating_add(1)
    }
}

/// Whether the storage takes writes.
#[derive(Debug, Default)]
pub(super) struct Health {
    failed: AtomicBool,
    /// Since when and why, while failed.
    cause: Mutex<Option<(Instant, String)>>,
    /// Times the storage failed, since start.
    failures: AtomicU64,
}

impl Health {
    pub(super) fn is_failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }

    /// Notes a failed write of `step`; logs the first one.
    pub(super) fn fail(&self, step: Step, error: &Error) {
        let mut cause = self.cause.lock();
        if self.failed.swap(true, Ordering::AcqRel) {
            return;
        }
        self.failures.fetch_add(1, Ordering::Relaxed);
        *cause = Some((Instant::now(), error.to_string()));
        tracing::error!(step = step.name(), %error,
            "Write-ahead queue storage failed: new writes are refused (503); deliveries go on and what they delivered is deleted once the storage recovers.");
    }

    /// Notes the storage taking writes again; returns how long it failed.
    pub(super) fn recovered(&self) -> Option<Duration> {
        let mut cause = self.cause.lock();
        self.failed.store(false, Ordering::Release);
        cause.take().map(|(since, _)| since.elapsed())
    }

    /// How long the storage has failed (zero while it has not).
    pub(super) fn failed_for(&self) -> Duration {
        self.cause
            .lock()
            .as_ref()
            .map_or(Duration::ZERO, |(since, _)| since.elapsed())
    }

    /// The error that made the storage fail, while it has.
    pub(super) fn cause(&self) -> Option<String> {
        self.cause.lock().as_ref().map(|(_, e)| e.clone())
    }

    pub(super) fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }
}

/// The state of the queue's storage, for `/metrics` and `/health`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageState {
    /// Why the storage does not take writes, while it does not.
    pub failed: Option<String>,
    /// Times the storage failed, since start.
    pub failures: u64,
    /// Free bytes on the queue's filesystem (last measure).
    pub free_bytes: u64,
    /// The free-space reserve in bytes (`wal_min_free_mb`; 0: none).
    pub reserve_bytes: u64,
    /// Free space is under the reserve: new writes are refused.
    pub low: bool,
    /// Appends refused by the reserve, since start.
    pub refused_low: u64,
    /// Delivered records whose deletion waits for the storage to recover.
    pub deferred_records: u64,
}

impl Wal {
    /// [`Error::Failed`] while the storage does not take writes.
    pub(crate) fn check_health(&self) -> Result<()> {
        if !self.health.is_failed() {
            return Ok(()); // one atomic load on the write path
        }
        match self.health.cause() {
            Some(error) => Err(Error::Failed { error }),
            None => Ok(()), // recovered meanwhile
        }
    }

    /// Sets the free-space reserve (`wal_min_free_mb`), in MiB; 0: none.
    pub fn set_min_free_mb(&self, mb: u64) {
        self.space.set_reserve_mb(mb);
    }

    /// The storage's state now, for `/metrics` and `/health`.
    pub fn storage_state(&self) -> StorageState {
        let deferred_records = self
            .queues
            .lock()
            .values()
            .map(|q| q.stats.deferred.lock().records)
            .sum();
        StorageState {
            failed: self
                .health
                .is_failed()
                .then(|| self.health.cause())
                .flatten(),
            failures: self.health.failures(),
            free_bytes: self.space.free(),
            reserve_bytes: self.space.reserve(),
            low: self.space.is_low(),
            refused_low: self.space.refused(),
            deferred_records,
        }
    }
}
