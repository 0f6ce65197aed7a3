//! Opening and closing the queue, and each backend's queue in it: at open, RocksDB replays its
//! log, the shared lines still referenced are indexed and every queue's counters are rebuilt
//! from what it holds (`recover_*`, `scan_stats`); `close` waits for the operations in progress.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock, RwLockReadGuard};
use rocksdb::{Direction, IteratorMode, ReadOptions, WriteBatch, DB};

use crate::record::{self, Record, DEAD_PREFIX, META_PREFIX, QUEUE_PREFIX, SHARED_PREFIX};
use crate::shared::{SharedIndex, SharedRefs};
use crate::storage::{DiskSpace, Health, Step};
use crate::{
    dead_letter_points, rocksdb_options, upper_bound, Durability, Error, MemoryUsage, Queue,
    QueueStats, Result, Sequencer, StorageMemory, Wal,
};

impl Wal {
    /// Opens (or creates) the queue under `dir` within the default memory budget.
    pub fn open(dir: &Path, durability: Durability) -> Result<Wal> {
        Wal::open_within(dir, durability, &StorageMemory::default())
    }

    /// Opens (or creates) the queue under `dir` and recovers its state; RocksDB's memtables and
    /// block cache take their shares of `budget`.
    pub fn open_within(dir: &Path, durability: Durability, memory: &StorageMemory) -> Result<Wal> {
        let db = DB::open(&rocksdb_options(memory), dir)?;
        let wal = Wal {
            db: RwLock::new(Some(db)),
            dir: dir.to_path_buf(),
            memory: *memory,
            sync: durability == Durability::Fsync,
            space: DiskSpace::new(dir),
            health: Health::default(),
            closing: Arc::default(),
            maintainer: Mutex::new(None),
            seq: Mutex::new(Sequencer {
                next: 1,
                in_flight: BTreeSet::new(),
            }),
            shared: Mutex::new(SharedIndex::default()),
            shared_new: Mutex::new(Vec::new()),
            queues: Mutex::new(HashMap::new()),
            next_id: Mutex::new(0),
        };
        wal.recover_ids()?;
        wal.recover_shared()?;
        Ok(wal)
    }

    /// Rebuilds the references to shared lines from every queue (configured
    /// or not) and deletes shared values nothing references any more.
    pub(crate) fn recover_shared(&self) -> Result<()> {
        let now = Instant::now();
        let mut shared = self.shared_index();
        let mut sharers = HashMap::new();
        for id in 0..self.next_id_value() {
            self.for_each(QUEUE_PREFIX, id, |seq, v| {
                if let Ok(Record::Shared { sharers: n, .. }) = record::decode_record(v) {
                    sharers.insert(seq, n as usize);
                    shared
                        .refs
                        .entry(seq)
                        .or_insert_with(|| SharedRefs {
                            queues: Vec::new(),
                            since: now,
                            listed: false,
                        })
                        .queues
                        .push(id);
                }
            })?;
        }
        let SharedIndex {
            refs,
            partly_removed,
        } = &mut *shared;
        for (seq, r) in refs.iter_mut() {
            if r.queues.len() < sharers.get(seq).copied().unwrap_or(0) {
                r.listed = true;
                partly_removed.push_back(*seq);
            }
        }
        let mut batch = WriteBatch::default();
        let mut orphans = 0usize;
        self.for_each(SHARED_PREFIX, 0, |seq, _| {
            if !refs.contains_key(&seq) {
                batch.delete(record::shared_key(seq));
                orphans += 1;
            }
        })?;
        if orphans > 0 {
            self.write(&*self.db()?, batch, false, Step::Upkeep)?;
        }
        Ok(())
    }

    /// Reads the id registrations and the highest sequence number in use.
    pub(crate) fn recover_ids(&self) -> Result<()> {
        let mut max_id = None::<u32>;
        let db = self.db()?;
        let it = db.iterator(IteratorMode::From(&[META_PREFIX], Direction::Forward));
        for item in it {
            let (k, v) = item?;
            if k.first() != Some(&META_PREFIX) {
                break;
            }
            let id = <[u8; 4]>::try_from(&v[..])
                .map(u32::from_be_bytes)
                .map_err(|_| Error::Meta(format!("bad id for key {k:?}")))?;
            max_id = Some(max_id.map_or(id, |m| m.max(id)));
        }
        *self.next_id.lock() = max_id.map_or(0, |m| m + 1);
        let mut max_seq = self.last_seq(SHARED_PREFIX, 0)?.unwrap_or(0);
        for prefix in [QUEUE_PREFIX, DEAD_PREFIX] {
            // The last key of each prefix holds the highest seq of that
            // backend; scanning every backend's tail is cheap.
            for id in 0..self.next_id_value() {
                if let Some(seq) = self.last_seq(prefix, id)? {
                    max_seq = max_seq.max(seq);
                }
            }
        }
        self.seq.lock().next = max_seq + 1;
        Ok(())
    }

    pub(crate) fn next_id_value(&self) -> u32 {
        *self.next_id.lock()
    }

    pub(crate) fn last_seq(&self, prefix: u8, id: u32) -> Result<Option<u64>> {
        let mut ro = ReadOptions::default();
        ro.set_iterate_lower_bound(record::key(prefix, id, 0).to_vec());
        ro.set_iterate_upper_bound(upper_bound(prefix, id).to_vec());
        let db = self.db()?;
        let mut it = db.raw_iterator_opt(ro);
        it.seek_to_last();
        let seq = it.key().and_then(record::parse_key).map(|(_, _, seq)| seq);
        it.status()?;
        Ok(seq)
    }

    /// What RocksDB holds in memory now, in bytes: memtables (active, immutable and being
    /// flushed), block cache and table readers (`None` once closed).
    pub fn memory_usage(&self) -> Option<MemoryUsage> {
        // Not waiting: a scrape must not hang while the queue is reopened.
        let db = RwLockReadGuard::try_map(self.db.try_read_recursive()?, Option::as_ref).ok()?;
        let prop = |name: &str| db.property_int_value(name).ok().flatten().unwrap_or(0);
        Some(MemoryUsage {
            memtables: prop("rocksdb.size-all-mem-tables"),
            block_cache: prop("rocksdb.block-cache-usage"),
            table_readers: prop("rocksdb.estimate-table-readers-mem"),
        })
    }

    /// Bytes the queue's files take on disk now (RocksDB's tables, logs and manifests in its
    /// directory), for `/metrics`: what the queue costs the disk, beside the free space. Read
    /// from the directory's listing at each call, a few dozen files.
    pub fn disk_bytes(&self) -> u64 {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return 0;
        };
        entries
            .filter_map(|e| e.ok()?.metadata().ok())
            .filter(|m| m.is_file())
            .map(|m| m.len())
            .sum()
    }

    /// Test hook (feature `test-hooks`, for the proxy's own tests): stores an id for backend
    /// `name` that [`Wal::queue`] cannot read.
    #[cfg(any(test, feature = "test-hooks"))]
    pub fn damage_queue_id(&self, name: &str) {
        self.db()
            .and_then(|db| Ok(db.put(record::meta_key(name), b"bad")?))
            .unwrap_or_else(|e| panic!("damaging the id of {name}: {e}"));
    }

    /// The queue of backend `name` if it is open, without touching its bound.
    pub fn opened(&self, name: &str) -> Option<Queue> {
        self.queues.lock().get(name).cloned()
    }

    /// Returns the queue of backend `name`, registering it on first use and
    /// recovering its counters from disk.
    pub fn queue(&self, name: &str, max_bytes: u64) -> Result<Queue> {
        let mut queues = self.queues.lock();
        if let Some(q) = queues.get(name) {
            q.stats.max_bytes.store(max_bytes, Ordering::Release);
            return Ok(q.clone());
        }
        let id = match self.db()?.get(record::meta_key(name))? {
            Some(v) => <[u8; 4]>::try_from(&v[..])
                .map(u32::from_be_bytes)
                .map_err(|_| Error::Meta(format!("bad id for backend {name}")))?,
            None => {
                let mut next = self.next_id.lock();
                let id = *next;
                let mut batch = WriteBatch::default();
                batch.put(record::meta_key(name), id.to_be_bytes());
                self.write(&*self.db()?, batch, true, Step::Upkeep)?;
                *next += 1;
                id
            }
        };
        let stats = self.scan_stats(id, 0)?;
        stats.max_bytes.store(max_bytes, Ordering::Release);
        let q = Queue {
            id,
            name: Arc::from(name),
            stats: Arc::new(stats),
        };
        queues.insert(name.to_string(), q.clone());
        Ok(q)
    }

    /// Names of every backend that has ever had a queue here.
    pub fn registered(&self) -> Result<Vec<String>> {
        let mut names = Vec::new();
        let db = self.db()?;
        let it = db.iterator(IteratorMode::From(&[META_PREFIX], Direction::Forward));
        for item in it {
            let (k, _) = item?;
            match record::parse_meta_key(&k) {
                Some(name) => names.push(name.to_string()),
                None => break,
            }
        }
        Ok(names)
    }

    /// The counters of queue `id` as stored, records with seq <= `removed`
    /// left out (removed, their deletion deferred).
    pub(crate) fn scan_stats(&self, id: u32, removed: u64) -> Result<QueueStats> {
        let stats = QueueStats::default();
        self.for_each_until(QUEUE_PREFIX, id, removed.saturating_add(1), |_, v| {
            stats.records.fetch_add(1, Ordering::Relaxed);
            let (bytes, points) = record::decode_record(v).map_or((v.len() as u64, 0), |r| {
                (r.accounted_len(v.len()), r.points())
            });
            stats.bytes.fetch_add(bytes, Ordering::Relaxed);
            stats.points.fetch_add(points, Ordering::Relaxed);
            true
        })?;
        self.for_each(DEAD_PREFIX, id, |_, v| {
            stats.dead_records.fetch_add(1, Ordering::Relaxed);
            stats
                .dead_bytes
                .fetch_add(v.len() as u64, Ordering::Relaxed);
            stats
                .dead_points
                .fetch_add(dead_letter_points(v), Ordering::Relaxed);
        })?;
        let records = stats.records.load(Ordering::Relaxed);
        if records > 0 {
            stats.note_appended(Instant::now(), records);
        }
        Ok(stats)
    }

    /// Flushes RocksDB's log to disk.
    pub fn flush(&self) -> Result<()> {
        self.db()?.flush_wal(true)?;
        Ok(())
    }

    /// Closes the queue on the calling thread, whoever else still holds a
    /// handle: stops and joins the maintenance thread, waits (at most `wait`)
    /// for the operations in progress, flushes RocksDB's log and closes the
    /// database. Every later operation fails with [`Error::Closed`].
    ///
    /// Why here and not on the last drop: whoever dropped the last handle
    /// used to close RocksDB, and when that was a backend's arbiter thread
    /// still stopping while `main` returned, RocksDB closed while the
    /// process ran its exit handlers (one CI run's SIGTERM test ended in
    /// SIGABRT). With an explicit close the other holders need not be gone,
    /// only idle.
    pub fn close(&self, wait: Duration) -> Result<()> {
        self.closing.set();
        if let Some(thread) = self.maintainer.lock().take() {
            if thread.join().is_err() {
                tracing::error!("The queue's maintenance thread panicked.");
            }
        }
        let mut db = self.db.try_write_for(wait).ok_or(Error::StillInUse(wait))?;
        let Some(open) = db.take() else {
            return Ok(()); // closed already
        };
        let flushed = open.flush_wal(true);
        drop(open);
        flushed?;
        Ok(())
    }
}
