//! Living through failed storage: removals kept in memory while the
//! storage fails, and the maintenance thread that brings it back.
//!
//! # Why
//! RocksDB that could not write (no space left, an I/O error) refuses every
//! later write, deletions included, until it is reopened: `rust-rocksdb`
//! has no `DB::resume`, and RocksDB recovers from a full disk by itself only
//! with an `SstFileManager`, which the crate does not expose. When an
//! acknowledgement could not be written, every backend used to send the
//! same batch again, forever, and none moved on.
//!
//! # How
//! - A removal (acknowledgement, dead letter) that cannot be written is kept
//!   in its queue's [`Deferred`]: the records count as removed, reads start
//!   after them, and the backend goes on with its next records. Each
//!   circle keeps delivering what it can, whatever the others do. The next
//!   removal written for that queue carries the deferred ones (one range
//!   deletion covers them all). A restart in between delivers them again,
//!   which InfluxDB stores as the same points.
//! - While the storage fails, appends are refused (503). The maintenance
//!   thread ([`spawn_maintainer`]) looks every second: once the free space
//!   is over the reserve (and room for two memtables, what a reopen writes
//!   out), it writes a probe; if RocksDB still refuses, it
//!   closes and reopens the database (RocksDB replays its own log: nothing
//!   that was written is lost), recounts the queues from what is stored,
//!   writes the deferred removals and accepts writes again.
//! - The same thread unshares the lines of late records
//!   ([`Wal::unshare_older_than`]) while the storage is healthy.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rocksdb::{WriteBatch, DB};

use super::storage::Step;
use super::{
    record, rocksdb_options, AgeGroup, Error, Queue, Result, SharedIndex, Wal, UNSHARE_AFTER,
};
use log_rate_limit::RateLimit;

/// A dead letter encoded and waiting to be stored.
#[derive(Debug)]
pub(super) struct Letter {
    /// Seq of the record it came from (its key).
    pub(super) seq: u64,
    /// Points it holds.
    pub(super) points: u64,
    /// The encoded dead letter.
    pub(super) value: Vec<u8>,
}

/// Most bytes of dead letters one queue keeps in memory while the storage
/// fails; beyond it the refused batch waits (and is sent again) instead.
const DEFERRED_LETTERS_MAX_BYTES: u64 = 4 << 20;

/// Removals of one queue not yet written (see the module doc).
#[derive(Debug, Default)]
pub(super) struct Deferred {
    /// Every record up to this seq is removed (0: nothing deferred).
    pub(super) upto: u64,
    /// Records removed.
    pub(super) records: u64,
    /// Seqs of the removed records stored shared: their lines are released
    /// when they are deleted.
    pub(super) shared: Vec<u64>,
    /// Dead letters to store.
    pub(super) letters: Vec<Letter>,
    letter_bytes: u64,
}

impl Deferred {
    pub(super) fn has_room_for(&self, letters: &[Letter]) -> bool {
        let bytes: u64 = letters.iter().map(|l| l.value.len() as u64).sum();
        self.letter_bytes + bytes <= DEFERRED_LETTERS_MAX_BYTES
    }

    pub(super) fn add(&mut self, upto: u64, records: u64, shared: Vec<u64>, letters: Vec<Letter>) {
        self.upto = self.upto.max(upto);
        self.records += records;
        self.shared.extend(shared);
        self.letter_bytes += letters.iter().map(|l| l.value.len() as u64).sum::<u64>();
        self.letters.extend(letters);
    }
}

/// How often the maintenance thread runs.
pub(super) const MAINTAIN_EVERY: Duration = Duration::from_secs(1);

/// Longest a reopen waits for the operations in progress.
const REOPEN_WAIT: Duration = Duration::from_secs(10);

/// How often a storage that stays failed is reported.
const STILL_FAILED_EVERY: Duration = Duration::from_secs(60);

/// Starts the queue's maintenance thread (see the module doc). It ends when
/// the queue is closed ([`Wal::close`] wakes and joins it) or dropped.
pub fn spawn_maintainer(wal: &Arc<Wal>) -> std::io::Result<()> {
    let weak = Arc::downgrade(wal);
    let closing = wal.closing.clone();
    let thread = std::thread::Builder::new()
        .name("wal-maintain".into())
        .spawn(move || {
            let still_failed = RateLimit::new(STILL_FAILED_EVERY);
            loop {
                if closing.within(MAINTAIN_EVERY) {
                    break;
                }
                let Some(wal) = weak.upgrade() else { break };
                if matches!(wal.maintain(&still_failed), Err(Error::Closed)) {
                    break;
                }
            }
        })?;
    *wal.maintainer.lock() = Some(thread);
    Ok(())
}

impl Wal {
    /// One round of upkeep: recovery while the storage fails, else the
    /// deferred removals left and unsharing.
    pub(super) fn maintain(&self, still_failed: &RateLimit) -> Result<()> {
        if self.health.is_failed() {
            return match self.recover() {
                Ok(()) => {
                    still_failed.reset();
                    Ok(())
                }
                Err(Error::Closed) => Err(Error::Closed),
                Err(error) => {
                    let long = self.health.failed_for() >= STILL_FAILED_EVERY;
                    if let Some(rounds) = still_failed.check().filter(|_| long) {
                        tracing::error!(%error, rounds, free_mb = self.space.free() >> 20,
                            reserve_mb = self.space.reserve() >> 20,
                            "Write-ahead queue storage still failed; new writes are refused.");
                    }
                    Ok(())
                }
            };
        }
        self.space.measure();
        self.write_deferred()?;
        match self.unshare_older_than(UNSHARE_AFTER, 1_000) {
            Ok(0) => {}
            Ok(appends) => tracing::debug!(appends, "Unshared the lines of late records."),
            Err(Error::Closed) => return Err(Error::Closed),
            // A storage failure was logged when it was noted (`Health`).
            Err(error) => tracing::debug!(%error, "Unsharing queued lines failed."),
        }
        Ok(())
    }

    /// Brings failed storage back: once there is room, a probe write, a
    /// reopen if RocksDB still refuses, then the deferred removals.
    fn recover(&self) -> Result<()> {
        let free = self.space.measure();
        // Reopening writes out what RocksDB replays: up to its two memtables.
        let needed = self
            .space
            .reserve()
            .max(2 * self.memory.memtable_bytes as u64);
        if free < needed {
            return Err(Error::LowDisk {
                free_mb: free >> 20,
                reserve_mb: needed >> 20,
            });
        }
        let started = Instant::now();
        let reopened = match self.probe() {
            Ok(()) => false,
            Err(Error::Closed) => return Err(Error::Closed),
            Err(_) => {
                self.reopen()?;
                self.probe()?;
                true
            }
        };
        let deleted = self.write_deferred()?;
        let failed_for = self.health.recovered().unwrap_or_default();
        tracing::info!(
            reopened,
            deleted_records = deleted,
            failed_ms = failed_for.as_millis() as u64,
            recovery_ms = started.elapsed().as_millis() as u64,
            free_mb = free >> 20,
            "Write-ahead queue storage recovered; writes are accepted again."
        );
        Ok(())
    }

    /// A write that changes nothing: the deletion of a key that never
    /// exists (shared lines of seq 0; seqs start at 1).
    fn probe(&self) -> Result<()> {
        let mut batch = WriteBatch::default();
        batch.delete(record::shared_key(0));
        self.write(&*self.db()?, batch, self.sync, Step::Upkeep)
    }

    /// Closes and reopens RocksDB, which replays its log, then recounts the
    /// queues from what is stored. A failed open leaves the database
    /// closed ([`Wal::db`] answers [`Error::Failed`]) until the next try.
    fn reopen(&self) -> Result<()> {
        {
            let mut slot = self
                .db
                .try_write_for(REOPEN_WAIT)
                .ok_or(Error::StillInUse(REOPEN_WAIT))?;
            if self.closing.is_set() {
                return Err(Error::Closed);
            }
            drop(slot.take());
            let db = DB::open(&rocksdb_options(&self.memory), &self.dir)?;
            *slot = Some(db);
        }
        tracing::info!(dir = %self.dir.display(), "Write-ahead queue reopened.");
        self.recount()
    }

    /// Sets every open queue's counters and the shared-lines index from
    /// what is stored: an append that failed may have reached RocksDB's
    /// log after all, and is then in the reopened queue. Runs while appends
    /// are refused; each queue's removals wait on its `removed_upto`.
    fn recount(&self) -> Result<()> {
        let queues: Vec<Queue> = self.queues.lock().values().cloned().collect();
        for q in queues {
            let removed = q.stats.removed_upto.lock();
            let stored = self.scan_stats(q.id, *removed)?;
            let st = &q.stats;
            let records = stored.records.load(Ordering::Relaxed);
            if st.records.swap(records, Ordering::AcqRel) != records {
                let mut ages = st.ages.lock();
                ages.clear();
                if records > 0 {
                    ages.push_back(AgeGroup {
                        since: Instant::now(),
                        records,
                    });
                }
            }
            for (to, from) in [
                (&st.bytes, &stored.bytes),
                (&st.points, &stored.points),
                (&st.dead_records, &stored.dead_records),
                (&st.dead_points, &stored.dead_points),
                (&st.dead_bytes, &stored.dead_bytes),
            ] {
                to.store(from.load(Ordering::Relaxed), Ordering::Release);
            }
        }
        {
            let mut shared = self.shared.lock();
            *shared = SharedIndex::default();
            self.shared_new.lock().clear();
        }
        self.recover_shared()
    }

    /// Writes the deferred removals of every open queue; returns how many
    /// records they deleted.
    pub(super) fn write_deferred(&self) -> Result<u64> {
        let queues: Vec<Queue> = self.queues.lock().values().cloned().collect();
        let mut deleted = 0;
        for q in queues {
            if q.stats.deferred.lock().upto == 0 {
                continue; // the usual case, without waiting for a removal in progress
            }
            let removed = q.stats.removed_upto.lock();
            let dead_lock = q.stats.dead_lock.lock();
            let mut deferred = q.stats.deferred.lock();
            if deferred.upto == 0 {
                continue;
            }
            self.write_removal(&q, &deferred, 0, &[], &[], self.sync, Step::Ack)?;
            let done = std::mem::take(&mut *deferred);
            let letters = self.count_letters(&q, done.letters.iter());
            deleted += done.records;
            drop((deferred, dead_lock, removed));
            if letters {
                self.trim_dead_letters(&q)?;
            }
        }
        Ok(deleted)
    }
}
