//! The memory budget: one number (`memory_budget_mb`) that bounds what the proxy keeps resident,
//! split over everything that holds memory in proportion to load.
//!
//! # Why
//! Every part sized itself on its own: RocksDB's memtables (4 x 64 MiB), delivery batches (64
//! MiB a backend), per-thread buffers (16 MiB a thread), request bodies (as many as clients
//! send at once), and the allocator kept what they freed. Under a flat-out load the proxy sat at
//! ~300 MiB, with nothing an operator could turn to make it fit a small box. Now each part takes
//! its share of one budget, and the shares add up to it.
//!
//! # Shares (of the budget `B`)
//! | part | share | at the default 96 MiB |
//! |---|---|---|
//! | RocksDB memtables (2, one filling while the other is written to disk) | `B / 4` | 24 MiB |
//! | RocksDB block cache (reads of a backlog that reached disk) | `B / 48` | 2 MiB |
//! | delivery batches, over all backends (read, split, gzip'd: ~3 copies) | `B / 8` | 12 MiB |
//! | request bodies being parsed (sent, inflated, normalised, queued) | `B / 8` | 12 MiB |
//! | buffers kept for reuse, over all threads | `B / 16` | 6 MiB |
//! | the rest: code (~20 MiB resident at start), stacks, connections, indexes, allocator slack | | ~40 MiB |
//!
//! The memtables get the largest share because their size decides how much of the queue
//! reaches disk at all: a record delivered while its memtable is still in memory is dropped
//! at flush, one delivered later is compressed, written, read back and decompressed. Under a
//! flat-out load 2 x 12 MiB cost ~1.45 CPU-µs per point against ~1.25 with 2 x 24 MiB (budget
//! 192) on the bench machine (`docs/perf.md`).
//!
//! Requests whose bodies would take the in-flight share beyond its bound wait for earlier ones
//! to finish (backpressure, not errors); one request larger than the whole share still runs,
//! alone. The allocator gives freed pages back to the kernel within a quarter of a second
//! (`.cargo/config.toml`), so the resident size follows the shares rather than the peak.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Smallest budget accepted: below it the shares get too small to batch anything.
pub const MIN_BUDGET_MB: u64 = 32;
/// Default `memory_budget_mb`.
pub const DEFAULT_BUDGET_MB: u64 = 96;

const MIB: u64 = 1 << 20;

/// The budget and its shares, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    total: u64,
}

impl Default for Budget {
    fn default() -> Budget {
        Budget::from_mb(DEFAULT_BUDGET_MB)
    }
}

impl Budget {
    /// A budget of `mb` MiB (at least [`MIN_BUDGET_MB`]).
    pub fn from_mb(mb: u64) -> Budget {
        Budget {
            total: mb.max(MIN_BUDGET_MB).saturating_mul(MIB),
        }
    }

    /// The whole budget, in bytes.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Size of one RocksDB memtable; two exist at most.
    pub fn memtable_bytes(&self) -> usize {
        to_usize(self.total / 8)
    }

    /// RocksDB's block cache.
    pub fn block_cache_bytes(&self) -> usize {
        to_usize(self.total / 48)
    }

    /// Most bytes one backend reads from its queue for one batch, with `backends` sharing the
    /// delivery share (a batch exists as read, as split requests and gzip'd: three copies).
    pub fn batch_bytes(&self, backends: usize) -> u64 {
        (self.total / 8 / 3 / backends.max(1) as u64).max(256 << 10)
    }

    /// Bytes of request bodies (as sent plus inflated) parsed at once.
    pub fn in_flight_bytes(&self) -> u64 {
        self.total / 8
    }

    /// Bytes of buffers kept for reuse, over all threads.
    pub fn kept_buffer_bytes(&self) -> usize {
        to_usize(self.total / 16)
    }
}

fn to_usize(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// Admission of request bodies against [`Budget::in_flight_bytes`]: a body holds permits (KiB)
/// for what it takes while parsed, and a request that does not fit waits.
#[derive(Debug, Clone)]
pub struct Admission {
    permits: Arc<Semaphore>,
    total: u32,
}

/// Held while a body is parsed; gives its share back when dropped.
#[derive(Debug)]
pub struct Admitted {
    _permit: Option<OwnedSemaphorePermit>,
}

impl Admission {
    /// Admission for `bytes` of bodies at once.
    pub fn new(bytes: u64) -> Admission {
        let total = u32::try_from((bytes >> 10).max(1)).unwrap_or(u32::MAX >> 4);
        Admission {
            permits: Arc::new(Semaphore::new(total as usize)),
            total,
        }
    }

    /// Waits until `bytes` fit (a request larger than the whole share waits for all of it, so
    /// it runs alone).
    pub async fn admit(&self, bytes: u64) -> Admitted {
        let want = u32::try_from(bytes >> 10)
            .unwrap_or(u32::MAX)
            .clamp(1, self.total);
        // The semaphore is never closed, so acquiring cannot fail; were it closed, the request
        // would go on unadmitted rather than fail.
        Admitted {
            _permit: Arc::clone(&self.permits)
                .acquire_many_owned(want)
                .await
                .ok(),
        }
    }

    /// The share admitted at once, in bytes (KiB granularity).
    pub fn capacity_bytes(&self) -> u64 {
        u64::from(self.total) << 10
    }

    /// Bytes (KiB granularity) free right now.
    pub fn available_bytes(&self) -> u64 {
        (self.permits.available_permits() as u64) << 10
    }
}

/// The memory budget in force, in bytes, and how many backends share its delivery share: set
/// at start and at every reload ([`apply`], [`set_backends`]), read at every batch.
static BUDGET_BYTES: AtomicU64 = AtomicU64::new(DEFAULT_BUDGET_MB * MIB);
static BACKENDS: AtomicUsize = AtomicUsize::new(1);

/// Records how many backends the running cluster delivers to (their batches share the
/// delivery share). A count rather than per-actor settings: adding a backend must not replace
/// every running actor.
pub fn set_backends(n: usize) {
    BACKENDS.store(n.max(1), Ordering::Relaxed);
}

/// Most bytes one backend reads from its queue for one batch now ([`Budget::batch_bytes`]).
pub fn batch_bytes() -> u64 {
    let budget = Budget {
        total: BUDGET_BYTES.load(Ordering::Relaxed),
    };
    budget.batch_bytes(BACKENDS.load(Ordering::Relaxed))
}

/// The bound on [`crate::buffers`]' kept bytes over all threads, set at start ([`apply`]); until
/// then (tests, tools) one generous enough not to matter.
static KEPT_LIMIT: AtomicUsize = AtomicUsize::new(64 << 20);

/// Applies the process-wide parts of `budget` (kept buffers, batch sizes). Called at start.
pub fn apply(budget: &Budget) {
    BUDGET_BYTES.store(budget.total, Ordering::Relaxed);
    KEPT_LIMIT.store(budget.kept_buffer_bytes(), Ordering::Relaxed);
}

/// The current bound on kept buffer bytes over all threads.
pub fn kept_limit() -> usize {
    KEPT_LIMIT.load(Ordering::Relaxed)
}

/// The allocator's own counts, in bytes.
#[derive(Debug, Clone, Copy)]
pub struct Heap {
    /// Held by the program.
    pub allocated: u64,
    /// Held by the allocator from the kernel (what it has not given back).
    pub resident: u64,
}

/// jemalloc's statistics, refreshed (`None` where it is not the allocator).
#[cfg(target_os = "linux")]
pub fn allocator() -> Option<Heap> {
    use tikv_jemalloc_ctl::{epoch, stats};
    epoch::advance().ok()?;
    Some(Heap {
        allocated: stats::allocated::read().ok()? as u64,
        resident: stats::resident::read().ok()? as u64,
    })
}

/// jemalloc's statistics (`None` where it is not the allocator).
#[cfg(not(target_os = "linux"))]
pub fn allocator() -> Option<Heap> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shares_add_up_to_less_than_the_budget() {
        for mb in [MIN_BUDGET_MB, DEFAULT_BUDGET_MB, 1024] {
            let b = Budget::from_mb(mb);
            let shares = 2 * b.memtable_bytes() as u64
                + b.block_cache_bytes() as u64
                + 3 * b.batch_bytes(1)
                + b.in_flight_bytes()
                + b.kept_buffer_bytes() as u64;
            assert!(shares < b.total(), "{mb} MiB: shares {shares}");
            assert!(
                b.total() - shares >= b.total() / 3,
                "{mb} MiB leaves room for the rest"
            );
        }
    }

    #[test]
    fn small_budgets_are_raised_to_the_minimum() {
        assert_eq!(Budget::from_mb(1), Budget::from_mb(MIN_BUDGET_MB));
    }

    #[test]
    fn batch_bytes_split_over_backends_but_keep_a_floor() {
        let b = Budget::default();
        assert_eq!(b.batch_bytes(4) * 4, b.batch_bytes(1) / 4 * 4);
        assert_eq!(b.batch_bytes(100_000), 256 << 10);
    }

    #[actix_rt::test]
    async fn a_body_that_does_not_fit_waits_for_the_others() {
        let admission = Admission::new(64 << 10);
        let first = admission.admit(48 << 10).await;
        let waiting = admission.admit(32 << 10);
        tokio::pin!(waiting);
        let early = tokio::time::timeout(std::time::Duration::from_millis(50), &mut waiting).await;
        assert!(early.is_err(), "admitted beyond the bound");
        drop(first);
        let _second = waiting.await;
        assert_eq!(admission.available_bytes(), 32 << 10);
    }

    #[actix_rt::test]
    async fn a_body_larger_than_the_share_runs_alone() {
        let admission = Admission::new(64 << 10);
        let big = admission.admit(10 << 20).await;
        assert_eq!(admission.available_bytes(), 0);
        drop(big);
        assert_eq!(admission.available_bytes(), 64 << 10);
    }
}
