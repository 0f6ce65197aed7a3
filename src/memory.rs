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
//! | a migration's or repair's buffers, only while one runs (chunks read, lines to append, a bucket compared point by point) | `B / 8` | 12 MiB |
//! | the rest: code (~20 MiB resident at start), stacks, connections, indexes, allocator slack | | ~28 MiB |
//!
//! The memtables get the largest share because their size decides how much of the queue
//! reaches disk at all: a record delivered while its memtable is still in memory is dropped
//! at flush, one delivered later is compressed, written, read back and decompressed. Under a
//! flat-out load 2 x 12 MiB cost ~1.45 CPU-µs per point against ~1.25 with 2 x 24 MiB (budget
//! 192) on the bench machine (`docs/perf.md`).
//!
//! Request bodies are charged before they are allocated, every buffer of them ([`Charge`],
//! `api::body`): requests whose bodies would take the in-flight share beyond its bound wait for
//! earlier ones to finish (backpressure, not errors); one body may hold at most the whole
//! share, and a larger one is refused (413), however small it was sent (a compression bomb
//! stops inflating there). So that bodies waiting for each other's room cannot deadlock, one
//! at a time may grow beyond the share when it is full ([`Admission`]): bodies hold at most
//! `B / 4`. The allocator gives freed pages back to the kernel within a quarter of a second
//! (`.cargo/config.toml`), so the resident size follows the shares rather than the peak.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::{Mutex, OwnedMutexGuard, OwnedSemaphorePermit, Semaphore};

use crate::wal::StorageMemory;

/// Smallest budget accepted: below it the shares get too small to batch anything.
pub(crate) const MIN_BUDGET_MB: u64 = 32;
/// Default `memory_budget_mb`.
pub(crate) const DEFAULT_BUDGET_MB: u64 = 96;

const MIB: u64 = 1 << 20;

/// The budget and its shares, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Budget {
    total: u64,
}

impl Default for Budget {
    fn default() -> Budget {
        Budget::from_mb(DEFAULT_BUDGET_MB)
    }
}

impl Budget {
    /// A budget of `mb` MiB (at least [`MIN_BUDGET_MB`]).
    pub(crate) fn from_mb(mb: u64) -> Budget {
        Budget {
            total: mb.max(MIN_BUDGET_MB).saturating_mul(MIB),
        }
    }

    /// The whole budget, in bytes.
    pub(crate) fn total(&self) -> u64 {
        self.total
    }

    /// RocksDB's share: one memtable (two exist at most) an eighth, the block cache a
    /// forty-eighth.
    pub(crate) fn storage(&self) -> StorageMemory {
        StorageMemory {
            memtable_bytes: to_usize(self.total / 8),
            block_cache_bytes: to_usize(self.total / 48),
        }
    }

    /// Most bytes one backend reads from its queue for one batch, with `backends` sharing the
    /// delivery share (a batch exists as read, as split requests and gzip'd: three copies).
    pub(crate) fn batch_bytes(&self, backends: usize) -> u64 {
        (self.total / 8 / 3 / backends.max(1) as u64).max(256 << 10)
    }

    /// Bytes of request bodies (as sent plus inflated) parsed at once.
    pub(crate) fn in_flight_bytes(&self) -> u64 {
        self.total / 8
    }

    /// Bytes of buffers kept for reuse, over all threads.
    pub(crate) fn kept_buffer_bytes(&self) -> usize {
        to_usize(self.total / 16)
    }

    /// Bytes a migration or repair holds at once, over its concurrent copies: each copy
    /// gets an equal part for the answer chunk it reads and the lines it converts.
    pub(crate) fn migration_bytes(&self) -> usize {
        to_usize(self.total / 8)
    }
}

fn to_usize(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// Admission of request bodies against [`Budget::in_flight_bytes`]: every byte a body takes in
/// memory (as received, inflated, converted, normalised, queued) is charged to a [`Charge`]
/// before it is allocated, in KiB permits of the share.
///
/// # Bound
/// One body holds at most the whole share ([`Admission::body_limit`]); a body that would need
/// more is refused (413), whatever `max_body_bytes` and `max_decompressed_bytes` allow. A
/// request waits for room rather than fail (backpressure). Waiting while holding could
/// deadlock (every body in flight waiting for another's room), so when the share is exhausted
/// one body at a time may grow beyond it, up to its own limit: the *overdraft*. Bodies hold at
/// most twice the share in all, whatever the requests.
#[derive(Debug, Clone)]
pub(crate) struct Admission {
    permits: Arc<Semaphore>,
    total: u32,
    /// Held by the one body allowed to grow beyond the share.
    overdraft: Arc<Mutex<()>>,
    /// KiB charged beyond the share now.
    overdrawn: Arc<AtomicU64>,
}

/// What one request's body holds in memory (KiB granularity), given back when dropped.
#[derive(Debug)]
pub(crate) struct Charge {
    admission: Admission,
    permit: Option<OwnedSemaphorePermit>,
    /// The overdraft, while this body holds it, and the KiB it charged beyond the share.
    overdraft: Option<(OwnedMutexGuard<()>, u64)>,
}

/// A body needs more memory than one request may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("needs {needed} bytes in memory, more than the {limit} a request may hold (memory_budget_mb / 8)")]
pub(crate) struct TooLarge {
    /// Bytes the body would hold.
    pub needed: u64,
    /// [`Admission::body_limit`].
    pub limit: u64,
}

impl Admission {
    /// Admission for `bytes` of bodies at once.
    pub(crate) fn new(bytes: u64) -> Admission {
        let total = u32::try_from((bytes >> 10).max(1)).unwrap_or(u32::MAX >> 4);
        Admission {
            permits: Arc::new(Semaphore::new(total as usize)),
            total,
            overdraft: Arc::new(Mutex::new(())),
            overdrawn: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Waits until `bytes` fit, holding nothing meanwhile, and charges them (at most
    /// [`Admission::body_limit`]: a request asking for more waits for the whole share, and
    /// learns at its first [`Charge::grow`] whether it fits at all).
    pub(crate) async fn admit(&self, bytes: u64) -> Charge {
        let want = kib(bytes).clamp(1, u64::from(self.total)) as u32;
        // The semaphore is never closed, so acquiring cannot fail; were it closed, the request
        // would go on uncharged rather than fail.
        Charge {
            admission: self.clone(),
            permit: Arc::clone(&self.permits)
                .acquire_many_owned(want)
                .await
                .ok(),
            overdraft: None,
        }
    }

    /// [`Admission::admit`] without waiting: `None` when `bytes` do not fit now. For
    /// datagrams, which cannot be held back: they are dropped instead (`udp`).
    pub(crate) fn try_admit(&self, bytes: u64) -> Option<Charge> {
        let want = kib(bytes).clamp(1, u64::from(self.total)) as u32;
        let permit = Arc::clone(&self.permits)
            .try_acquire_many_owned(want)
            .ok()?;
        Some(Charge {
            admission: self.clone(),
            permit: Some(permit),
            overdraft: None,
        })
    }

    /// The most one body may hold: the whole share.
    pub(crate) fn body_limit(&self) -> u64 {
        self.capacity_bytes()
    }

    /// The share admitted at once, in bytes (KiB granularity).
    pub(crate) fn capacity_bytes(&self) -> u64 {
        u64::from(self.total) << 10
    }

    /// Bytes (KiB granularity) free right now.
    pub(crate) fn available_bytes(&self) -> u64 {
        (self.permits.available_permits() as u64) << 10
    }

    /// Bytes (KiB granularity) bodies hold now, the overdraft included.
    pub(crate) fn in_use_bytes(&self) -> u64 {
        let used = self.capacity_bytes() - self.available_bytes();
        used + (self.overdrawn.load(Ordering::Relaxed) << 10)
    }
}

impl Charge {
    /// The most this charge may grow to ([`Admission::body_limit`]).
    pub(crate) fn limit(&self) -> u64 {
        self.admission.body_limit()
    }

    /// Bytes charged (KiB granularity).
    pub(crate) fn bytes(&self) -> u64 {
        let permits = self.permit.as_ref().map_or(0, |p| p.num_permits() as u64);
        (permits + self.overdraft.as_ref().map_or(0, |(_, kib)| *kib)) << 10
    }

    /// Charges up to `bytes` in all, waiting for room when the share is taken. Refuses more
    /// than [`Admission::body_limit`].
    pub(crate) async fn grow(&mut self, bytes: u64) -> Result<(), TooLarge> {
        let Some(more) = self.missing(bytes)? else {
            return Ok(());
        };
        if self.take_room(more) {
            return Ok(());
        }
        let permits = Arc::clone(&self.admission.permits);
        let overdraft = Arc::clone(&self.admission.overdraft);
        tokio::select! {
            permit = permits.acquire_many_owned(more as u32) => match permit {
                Ok(p) => self.add(p),
                Err(_) => self.overdraw(None, more),
            },
            guard = overdraft.lock_owned() => self.overdraw(Some(guard), more),
        }
        Ok(())
    }

    /// [`Charge::grow`] without waiting: `Ok(false)` when it would have to wait.
    pub(crate) fn try_grow(&mut self, bytes: u64) -> Result<bool, TooLarge> {
        match self.missing(bytes)? {
            None => Ok(true),
            Some(more) => Ok(self.take_room(more)),
        }
    }

    /// KiB still to charge for `bytes` in all (None: already charged).
    fn missing(&self, bytes: u64) -> Result<Option<u64>, TooLarge> {
        let limit = self.admission.body_limit();
        if bytes > limit {
            return Err(TooLarge {
                needed: bytes,
                limit,
            });
        }
        let held = self.bytes() >> 10;
        Ok(kib(bytes).checked_sub(held).filter(|&more| more > 0))
    }

    /// Takes `more` KiB from the share if free now, or beyond it while holding the overdraft.
    fn take_room(&mut self, more: u64) -> bool {
        if self.overdraft.is_some() {
            self.overdraw(None, more);
            return true;
        }
        match Arc::clone(&self.admission.permits).try_acquire_many_owned(more as u32) {
            Ok(p) => {
                self.add(p);
                true
            }
            Err(_) => false,
        }
    }

    fn add(&mut self, permit: OwnedSemaphorePermit) {
        match &mut self.permit {
            Some(held) => held.merge(permit),
            None => self.permit = Some(permit),
        }
    }

    /// Charges `more` KiB beyond the share (`guard`: the overdraft, just taken).
    fn overdraw(&mut self, guard: Option<OwnedMutexGuard<()>>, more: u64) {
        match (&mut self.overdraft, guard) {
            (Some((_, kib)), _) => *kib += more,
            (None, Some(guard)) => self.overdraft = Some((guard, more)),
            // Only when the semaphore was closed, which it never is: uncharged.
            (None, None) => return,
        }
        self.admission.overdrawn.fetch_add(more, Ordering::Relaxed);
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        if let Some((_, kib)) = &self.overdraft {
            self.admission.overdrawn.fetch_sub(*kib, Ordering::Relaxed);
        }
    }
}

/// KiB to charge for `bytes` (rounded up).
fn kib(bytes: u64) -> u64 {
    bytes.div_ceil(1 << 10)
}

/// The memory budget in force, in bytes, and how many backends share its delivery share: set
/// at start and at every reload ([`apply`], [`set_backends`]), read at every batch.
static BUDGET_BYTES: AtomicU64 = AtomicU64::new(DEFAULT_BUDGET_MB * MIB);
static BACKENDS: AtomicUsize = AtomicUsize::new(1);

/// Records how many backends the running cluster delivers to (their batches share the
/// delivery share). A count rather than per-actor settings: adding a backend must not replace
/// every running actor.
pub(crate) fn set_backends(n: usize) {
    BACKENDS.store(n.max(1), Ordering::Relaxed);
}

/// Most bytes one backend reads from its queue for one batch now ([`Budget::batch_bytes`]).
pub(crate) fn batch_bytes() -> u64 {
    let budget = Budget {
        total: BUDGET_BYTES.load(Ordering::Relaxed),
    };
    budget.batch_bytes(BACKENDS.load(Ordering::Relaxed))
}

/// The bound on [`crate::buffers`]' kept bytes over all threads, set at start ([`apply`]); until
/// then (tests, tools) one generous enough not to matter.
static KEPT_LIMIT: AtomicUsize = AtomicUsize::new(64 << 20);

/// Applies the process-wide parts of `budget` (kept buffers, batch sizes). Called at start.
pub(crate) fn apply(budget: &Budget) {
    BUDGET_BYTES.store(budget.total, Ordering::Relaxed);
    KEPT_LIMIT.store(budget.kept_buffer_bytes(), Ordering::Relaxed);
}

/// The current bound on kept buffer bytes over all threads.
pub(crate) fn kept_limit() -> usize {
    KEPT_LIMIT.load(Ordering::Relaxed)
}

/// The allocator's own counts, in bytes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Heap {
    /// Held by the program.
    pub allocated: u64,
    /// Held by the allocator from the kernel (what it has not given back).
    pub resident: u64,
}

/// jemalloc's statistics, refreshed (`None` where it is not the allocator).
#[cfg(target_os = "linux")]
pub(crate) fn allocator() -> Option<Heap> {
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
            let storage = b.storage();
            let shares = 2 * storage.memtable_bytes as u64
                + storage.block_cache_bytes as u64
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
    fn the_queue_opened_without_a_budget_takes_the_default_budgets_share() {
        assert_eq!(Budget::default().storage(), StorageMemory::default());
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
    async fn a_charge_grows_within_the_body_limit_only() {
        let admission = Admission::new(64 << 10);
        let mut charge = admission.admit(10 << 10).await;
        assert_eq!(charge.bytes(), 10 << 10);
        charge.grow(5 << 10).await.unwrap();
        assert_eq!(charge.bytes(), 10 << 10, "never shrinks");
        charge.grow((20 << 10) + 1).await.unwrap();
        assert_eq!(charge.bytes(), 21 << 10, "whole KiB");
        assert_eq!(
            charge.grow((64 << 10) + 1).await,
            Err(TooLarge {
                needed: (64 << 10) + 1,
                limit: 64 << 10
            })
        );
        assert!(charge.try_grow(64 << 10).unwrap());
        assert_eq!(admission.available_bytes(), 0);
        drop(charge);
        assert_eq!(admission.available_bytes(), 64 << 10);
    }

    #[actix_rt::test]
    async fn growing_waits_for_room_another_body_gives_back() {
        let admission = Admission::new(64 << 10);
        let other = admission.admit(40 << 10).await;
        let mut charge = admission.admit(16 << 10).await;
        assert!(
            !charge.try_grow(32 << 10).unwrap(),
            "no room without waiting"
        );
        // The overdraft is taken: growing waits for the share.
        let _overdraft = Arc::clone(&admission.overdraft).lock_owned().await;
        let grow = charge.grow(32 << 10);
        tokio::pin!(grow);
        let early = tokio::time::timeout(std::time::Duration::from_millis(50), &mut grow).await;
        assert!(early.is_err(), "grew beyond the share");
        drop(other);
        grow.await.unwrap();
        assert_eq!(admission.in_use_bytes(), 32 << 10);
    }

    #[actix_rt::test]
    async fn when_the_share_is_taken_one_body_at_a_time_grows_beyond_it() {
        // Both hold half and both need more: waiting for each other would never end.
        let admission = Admission::new(64 << 10);
        let mut a = admission.admit(32 << 10).await;
        let mut b = admission.admit(32 << 10).await;
        tokio::time::timeout(std::time::Duration::from_secs(5), a.grow(60 << 10))
            .await
            .expect("waited with the overdraft free")
            .unwrap();
        assert_eq!(admission.in_use_bytes(), 92 << 10);
        {
            let grow = b.grow(60 << 10);
            tokio::pin!(grow);
            let early = tokio::time::timeout(std::time::Duration::from_millis(50), &mut grow).await;
            assert!(early.is_err(), "a second body overdrew");
            drop(a);
            grow.await.unwrap();
        }
        assert!(admission.in_use_bytes() <= 2 * admission.capacity_bytes());
        drop(b);
        assert_eq!(admission.in_use_bytes(), 0);
        assert!(Arc::clone(&admission.overdraft).try_lock_owned().is_ok());
    }

    #[actix_rt::test]
    async fn a_charge_taken_without_waiting_is_refused_when_the_share_is_full() {
        let admission = Admission::new(64 << 10);
        let mut first = admission.try_admit(40 << 10).unwrap();
        assert!(admission.try_admit(32 << 10).is_none(), "beyond the share");
        let second = admission.try_admit(24 << 10).unwrap();
        assert_eq!(admission.available_bytes(), 0);
        // Growing without waiting never takes the overdraft.
        assert!(!first.try_grow(48 << 10).unwrap());
        assert_eq!(admission.in_use_bytes(), 64 << 10);
        drop((first, second));
        assert_eq!(admission.available_bytes(), 64 << 10);
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
