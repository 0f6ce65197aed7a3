//! The write-ahead queue: every accepted point lives here until its backend
//! has acknowledged it.
//!
//! # Why
//! The proxy answers `204` to a write only after the points are in this
//! queue for every target backend, so a crash, a `kill -9` or a backend
//! outage right after the answer loses nothing. Backends drain their queue
//! in order and delete records only after InfluxDB answered 2xx.
//!
//! # Layout (format version 1)
//! One RocksDB database in `<data_dir>/wal`, default column family:
//!
//! ```text
//! key                                         value
//! 'm' "backend/" <name>                       backend id, u32 BE (assigned once, never reused)
//! 'q' <backend id u32 BE> <seq u64 BE>        0x01 | bincode(Record)       queued work
//! 'd' <backend id u32 BE> <seq u64 BE>        0x01 | bincode(DeadLetter)   refused by the backend (4xx)
//! ```
//!
//! `Record` is `Points { db, rp, points, lines }` (line protocol, ns
//! precision) or `Statement { db, query }`; see [`record`]. Keys are
//! big-endian so RocksDB iterates each backend's queue in FIFO order.
//!
//! # Invariants
//! - One `/write` request is one RocksDB write batch holding one record per
//!   target backend, all with the same sequence number: it is in every
//!   queue or in none.
//! - Sequence numbers are global and increase; a reader never sees a
//!   sequence number while a smaller one is still being written (the
//!   *visible* watermark below), so draining cannot skip a record that
//!   commits late.
//! - Each queue is bounded by `max_bytes`; an append that would exceed the
//!   bound of any target fails as a whole with [`Error::Full`].
//! - Records leave the queue only by [`Wal::ack`] (delivered) or
//!   [`Wal::dead_letter`] (moved, atomically, to the dead-letter space).
//!
//! # Durability
//! Every append goes to RocksDB's own write-ahead log before it returns, so
//! a process crash loses nothing. With `sync` (config `wal_sync`) each
//! append also fsyncs; concurrent appends are group-committed by RocksDB,
//! which protects against power loss at a latency cost.
//!
//! # Recovery
//! At open, every registered backend's queue is scanned once to rebuild its
//! counters (records, bytes, points) and the next sequence number. RocksDB
//! itself replays its log and tolerates a torn tail.
//!
//! # Age of the oldest record
//! Records carry no append time on disk. [`QueueStats::oldest_age`] comes
//! from an in-memory index: appends are grouped per second of append time
//! (a count per second, so its size grows with the outage length, not with
//! the number of records) and removals take from the oldest group, as the
//! queue is FIFO. It is exact to within a second for records appended by
//! this process; records recovered at open count as appended at open, so
//! after a restart the age is "at least since the process started".

pub mod record;

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use rocksdb::{Direction, IteratorMode, Options, ReadOptions, WriteBatch, WriteOptions, DB};

pub use record::{DeadLetter, PointsBuilder, Record};
use record::{DEAD_PREFIX, META_PREFIX, QUEUE_PREFIX};

/// Errors of the write-ahead queue.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// RocksDB failed (I/O error, corruption it could not repair, ...).
    #[error("write-ahead queue storage error: {0}")]
    Storage(#[from] rocksdb::Error),
    /// An append would push a backend's queue over its byte bound.
    #[error("write-ahead queue of backend {backend} is full ({queued} of {max} bytes queued); the backend is not keeping up or is down, retry later")]
    Full {
        /// Backend whose queue is full.
        backend: String,
        /// Bytes queued now.
        queued: u64,
        /// The configured bound.
        max: u64,
    },
    /// The same backend name is registered twice under different ids.
    #[error("write-ahead queue metadata is corrupt: {0}")]
    Meta(String),
}

/// Result alias of this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Counters of one backend's queue, shared with `/health` and metrics.
#[derive(Debug, Default)]
pub struct QueueStats {
    /// Records queued.
    pub records: AtomicU64,
    /// Bytes of values queued.
    pub bytes: AtomicU64,
    /// Points queued.
    pub points: AtomicU64,
    /// Dead letters stored.
    pub dead_records: AtomicU64,
    /// Points in dead letters.
    pub dead_points: AtomicU64,
    /// The queue's byte bound (`wal_max_bytes`), shared by every handle so
    /// a reload can change it in place.
    pub max_bytes: AtomicU64,
    /// Highest sequence number removed (acknowledged or dead-lettered).
    /// Removal is serialised on it, so two readers of one queue (an actor
    /// being replaced by a reload and its successor) never remove or count
    /// a record twice.
    removed_upto: Mutex<u64>,
    /// Pending records per second of append time, oldest first; see the
    /// module doc (*Age of the oldest record*).
    ages: Mutex<VecDeque<AgeGroup>>,
}

/// Records appended within [`AGE_GRANULARITY`] of `since`.
#[derive(Debug)]
struct AgeGroup {
    since: Instant,
    records: u64,
}

/// Width of the append-time groups behind [`QueueStats::oldest_age`].
const AGE_GRANULARITY: Duration = Duration::from_secs(1);

impl QueueStats {
    /// How long the oldest pending record has waited (zero when the queue
    /// is empty); see the module doc for its precision.
    pub fn oldest_age(&self) -> Duration {
        if self.records.load(Ordering::Acquire) == 0 {
            return Duration::ZERO;
        }
        self.ages
            .lock()
            .front()
            .map_or(Duration::ZERO, |g| g.since.elapsed())
    }

    fn note_appended(&self, at: Instant, records: u64) {
        let mut ages = self.ages.lock();
        match ages.back_mut() {
            Some(g) if at.saturating_duration_since(g.since) < AGE_GRANULARITY => {
                g.records += records;
            }
            _ => ages.push_back(AgeGroup { since: at, records }),
        }
    }

    fn note_removed(&self, mut records: u64) {
        let mut ages = self.ages.lock();
        while records > 0 {
            let Some(g) = ages.front_mut() else { break };
            let take = records.min(g.records);
            g.records -= take;
            records -= take;
            if g.records == 0 {
                ages.pop_front();
            }
        }
    }
}

/// Handle on one backend's queue. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Queue {
    id: u32,
    name: Arc<str>,
    /// Live counters.
    pub stats: Arc<QueueStats>,
}

impl Queue {
    /// Backend name this queue belongs to.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// True when nothing is waiting for delivery.
    pub fn is_empty(&self) -> bool {
        self.stats.records.load(Ordering::Acquire) == 0
    }
}

/// One queued value read back for delivery.
#[derive(Debug)]
pub struct Entry {
    /// Global sequence number.
    pub seq: u64,
    /// Raw value (version byte + bincode); decode with [`Entry::record`].
    pub value: Box<[u8]>,
}

impl Entry {
    /// Decodes the record, borrowing from the stored value.
    pub fn record(&self) -> Result<Record<'_>, record::DecodeError> {
        record::decode_record(&self.value)
    }
}

/// Sequence allocation state; see the *visible* watermark in the module doc.
#[derive(Debug)]
struct Sequencer {
    next: u64,
    in_flight: BTreeSet<u64>,
}

/// The write-ahead queue of all backends.
pub struct Wal {
    db: DB,
    sync: bool,
    seq: Mutex<Sequencer>,
    queues: Mutex<HashMap<String, Queue>>,
    next_id: Mutex<u32>,
}

impl std::fmt::Debug for Wal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wal").field("sync", &self.sync).finish()
    }
}

/// One record to append for one backend.
#[derive(Debug)]
pub struct Append<'a> {
    /// Target queue.
    pub queue: &'a Queue,
    /// The record.
    pub record: Record<'a>,
}

/// One already-encoded value for one queue (see [`Wal::append_encoded`]).
#[derive(Debug)]
pub struct Encoded<'a> {
    /// Target queue.
    pub queue: &'a Queue,
    /// The queue value, as [`record::encode_record`] would make it.
    pub value: &'a [u8],
    /// Points the value carries.
    pub points: u64,
}

impl Wal {
    /// Opens (or creates) the queue under `dir` and recovers its state.
    pub fn open(dir: &Path, sync: bool) -> Result<Wal> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        // The queue is written once and read once; keep memtables modest
        // and let compaction drop acknowledged ranges quickly.
        opts.set_write_buffer_size(64 << 20);
        opts.set_max_write_buffer_number(4);
        opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
        opts.set_keep_log_file_num(4);
        let db = DB::open(&opts, dir)?;
        let wal = Wal {
            db,
            sync,
            seq: Mutex::new(Sequencer {
                next: 1,
                in_flight: BTreeSet::new(),
            }),
            queues: Mutex::new(HashMap::new()),
            next_id: Mutex::new(0),
        };
        wal.recover_ids()?;
        Ok(wal)
    }

    /// Reads the id registrations and the highest sequence number in use.
    fn recover_ids(&self) -> Result<()> {
        let mut max_id = None::<u32>;
        let it = self
            .db
            .iterator(IteratorMode::From(&[META_PREFIX], Direction::Forward));
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
        let mut max_seq = 0u64;
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

    fn next_id_value(&self) -> u32 {
        *self.next_id.lock()
    }

    fn last_seq(&self, prefix: u8, id: u32) -> Result<Option<u64>> {
        let mut ro = ReadOptions::default();
        ro.set_iterate_lower_bound(record::key(prefix, id, 0).to_vec());
        ro.set_iterate_upper_bound(upper_bound(prefix, id).to_vec());
        let mut it = self.db.raw_iterator_opt(ro);
        it.seek_to_last();
        let seq = it.key().and_then(record::parse_key).map(|(_, _, seq)| seq);
        it.status()?;
        Ok(seq)
    }

    /// Returns the queue of backend `name`, registering it on first use and
    /// recovering its counters from disk.
    pub fn queue(&self, name: &str, max_bytes: u64) -> Result<Queue> {
        let mut queues = self.queues.lock();
        if let Some(q) = queues.get(name) {
            q.stats.max_bytes.store(max_bytes, Ordering::Release);
            return Ok(q.clone());
        }
        let id = match self.db.get(record::meta_key(name))? {
            Some(v) => <[u8; 4]>::try_from(&v[..])
                .map(u32::from_be_bytes)
                .map_err(|_| Error::Meta(format!("bad id for backend {name}")))?,
            None => {
                let mut next = self.next_id.lock();
                let id = *next;
                self.db.put_opt(
                    record::meta_key(name),
                    id.to_be_bytes(),
                    &self.write_options(true),
                )?;
                *next += 1;
                id
            }
        };
        let stats = self.scan_stats(id)?;
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
        let it = self
            .db
            .iterator(IteratorMode::From(&[META_PREFIX], Direction::Forward));
        for item in it {
            let (k, _) = item?;
            match record::parse_meta_key(&k) {
                Some(name) => names.push(name.to_string()),
                None => break,
            }
        }
        Ok(names)
    }

    fn scan_stats(&self, id: u32) -> Result<QueueStats> {
        let stats = QueueStats::default();
        self.for_each(QUEUE_PREFIX, id, |_, v| {
            stats.records.fetch_add(1, Ordering::Relaxed);
            stats.bytes.fetch_add(v.len() as u64, Ordering::Relaxed);
            let points = record::decode_record(v).map_or(0, |r| r.points());
            stats.points.fetch_add(points, Ordering::Relaxed);
        })?;
        self.for_each(DEAD_PREFIX, id, |_, v| {
            stats.dead_records.fetch_add(1, Ordering::Relaxed);
            let points = record::decode_dead_letter(v)
                .ok()
                .and_then(|d| record::decode_record(d.value).ok())
                .map_or(0, |r| r.points());
            stats.dead_points.fetch_add(points, Ordering::Relaxed);
        })?;
        let records = stats.records.load(Ordering::Relaxed);
        if records > 0 {
            stats.note_appended(Instant::now(), records);
        }
        Ok(stats)
    }

    fn for_each(&self, prefix: u8, id: u32, mut f: impl FnMut(u64, &[u8])) -> Result<()> {
        let mut ro = ReadOptions::default();
        ro.set_iterate_lower_bound(record::key(prefix, id, 0).to_vec());
        ro.set_iterate_upper_bound(upper_bound(prefix, id).to_vec());
        let mut it = self.db.raw_iterator_opt(ro);
        it.seek_to_first();
        while it.valid() {
            if let (Some(k), Some(v)) = (it.key(), it.value()) {
                if let Some((_, _, seq)) = record::parse_key(k) {
                    f(seq, v);
                }
            }
            it.next();
        }
        it.status()?;
        Ok(())
    }

    fn write_options(&self, sync: bool) -> WriteOptions {
        let mut wo = WriteOptions::default();
        wo.set_sync(sync);
        wo
    }

    /// Appends one record per target atomically. Returns only after the
    /// batch is in RocksDB's log (and fsynced when `sync` is on).
    pub fn append(&self, appends: &[Append<'_>]) -> Result<u64> {
        let encoded: Vec<Vec<u8>> = appends
            .iter()
            .map(|a| record::encode_record(&a.record))
            .collect();
        let values: Vec<Encoded<'_>> = appends
            .iter()
            .zip(&encoded)
            .map(|(a, v)| Encoded {
                queue: a.queue,
                value: v,
                points: a.record.points(),
            })
            .collect();
        self.append_encoded(&values)
    }

    /// [`Wal::append`] for values already encoded (by a
    /// [`PointsBuilder`]): the write path builds its records in place.
    pub fn append_encoded(&self, values: &[Encoded<'_>]) -> Result<u64> {
        for v in values {
            let queued = v.queue.stats.bytes.load(Ordering::Acquire);
            let max = v.queue.stats.max_bytes.load(Ordering::Acquire);
            if queued + v.value.len() as u64 > max {
                return Err(Error::Full {
                    backend: v.queue.name.to_string(),
                    queued,
                    max,
                });
            }
        }
        let seq = {
            let mut s = self.seq.lock();
            let seq = s.next;
            s.next += 1;
            s.in_flight.insert(seq);
            seq
        };
        let bytes: usize = values.iter().map(|v| v.value.len() + 32).sum();
        let mut batch = WriteBatch::with_capacity_bytes(bytes + 64);
        for v in values {
            batch.put(record::key(QUEUE_PREFIX, v.queue.id, seq), v.value);
        }
        let result = self.db.write_opt(batch, &self.write_options(self.sync));
        if result.is_ok() {
            // Counters move before the seq becomes visible, so a reader
            // never acknowledges more than the counters hold.
            let now = Instant::now();
            for v in values {
                let st = &v.queue.stats;
                st.bytes.fetch_add(v.value.len() as u64, Ordering::AcqRel);
                st.points.fetch_add(v.points, Ordering::AcqRel);
                st.records.fetch_add(1, Ordering::AcqRel);
                st.note_appended(now, 1);
            }
        }
        self.seq.lock().in_flight.remove(&seq);
        result?;
        Ok(seq)
    }

    /// Highest sequence number below which every append has finished.
    fn visible(&self) -> u64 {
        let s = self.seq.lock();
        s.in_flight
            .first()
            .map_or(s.next - 1, |first| first.saturating_sub(1))
    }

    /// Reads up to `max_points` points (at least one record) / `max_bytes`
    /// bytes of queued records with seq > `after`, oldest first.
    pub fn read(
        &self,
        queue: &Queue,
        after: u64,
        max_points: u64,
        max_bytes: u64,
    ) -> Result<Vec<Entry>> {
        let visible = self.visible();
        if visible <= after {
            return Ok(Vec::new());
        }
        let mut ro = ReadOptions::default();
        ro.set_iterate_lower_bound(record::key(QUEUE_PREFIX, queue.id, after + 1).to_vec());
        ro.set_iterate_upper_bound(
            record::key(QUEUE_PREFIX, queue.id, visible.saturating_add(1)).to_vec(),
        );
        let mut it = self.db.raw_iterator_opt(ro);
        it.seek_to_first();
        let (mut points, mut bytes) = (0u64, 0u64);
        let mut out = Vec::new();
        while it.valid() {
            let (Some(k), Some(v)) = (it.key(), it.value()) else {
                break;
            };
            let Some((_, _, seq)) = record::parse_key(k) else {
                break;
            };
            let p = record::decode_record(v).map_or(0, |r| r.points());
            if !out.is_empty() && (points + p > max_points || bytes + v.len() as u64 > max_bytes) {
                break;
            }
            points += p;
            bytes += v.len() as u64;
            out.push(Entry {
                seq,
                value: v.into(),
            });
            it.next();
        }
        it.status()?;
        Ok(out)
    }

    /// Deletes delivered entries (a prefix of the queue, as returned by
    /// [`Wal::read`]) and updates the counters.
    pub fn ack(&self, queue: &Queue, entries: &[Entry]) -> Result<()> {
        let mut removed = queue.stats.removed_upto.lock();
        let entries = not_yet_removed(entries, *removed);
        let Some(last) = entries.last() else {
            return Ok(());
        };
        let mut batch = WriteBatch::default();
        batch.delete_range(
            record::key(QUEUE_PREFIX, queue.id, 0),
            record::key(QUEUE_PREFIX, queue.id, last.seq + 1),
        );
        self.db.write_opt(batch, &self.write_options(false))?;
        self.subtract(queue, entries);
        *removed = last.seq;
        Ok(())
    }

    fn subtract(&self, queue: &Queue, entries: &[Entry]) {
        let st = &queue.stats;
        let bytes: u64 = entries.iter().map(|e| e.value.len() as u64).sum();
        let points: u64 = entries
            .iter()
            .map(|e| e.record().map_or(0, |r| r.points()))
            .sum();
        st.bytes.fetch_sub(bytes, Ordering::AcqRel);
        st.points.fetch_sub(points, Ordering::AcqRel);
        st.records.fetch_sub(entries.len() as u64, Ordering::AcqRel);
        st.note_removed(entries.len() as u64);
    }

    /// Moves entries (a prefix of the queue) to the dead-letter space in one
    /// atomic batch, recording why the backend refused them.
    pub fn dead_letter(
        &self,
        queue: &Queue,
        entries: &[Entry],
        status: u16,
        error: &str,
    ) -> Result<()> {
        let mut removed = queue.stats.removed_upto.lock();
        let entries = not_yet_removed(entries, *removed);
        let Some(last) = entries.last() else {
            return Ok(());
        };
        let at_unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let mut batch = WriteBatch::default();
        let mut dead_points = 0;
        for e in entries {
            dead_points += e.record().map_or(0, |r| r.points());
            let dead = DeadLetter {
                status,
                error,
                at_unix_ms,
                value: &e.value,
            };
            batch.put(
                record::key(DEAD_PREFIX, queue.id, e.seq),
                record::encode_dead_letter(&dead),
            );
        }
        batch.delete_range(
            record::key(QUEUE_PREFIX, queue.id, 0),
            record::key(QUEUE_PREFIX, queue.id, last.seq + 1),
        );
        self.db.write_opt(batch, &self.write_options(self.sync))?;
        self.subtract(queue, entries);
        queue
            .stats
            .dead_records
            .fetch_add(entries.len() as u64, Ordering::AcqRel);
        queue
            .stats
            .dead_points
            .fetch_add(dead_points, Ordering::AcqRel);
        *removed = last.seq;
        Ok(())
    }

    /// Calls `f(seq, dead letter)` for each dead letter of a backend.
    pub fn dead_letters(
        &self,
        queue: &Queue,
        mut f: impl FnMut(u64, DeadLetter<'_>),
    ) -> Result<()> {
        self.for_each(DEAD_PREFIX, queue.id, |seq, v| {
            if let Ok(d) = record::decode_dead_letter(v) {
                f(seq, d);
            }
        })
    }

    /// Flushes RocksDB's log to disk; called on graceful shutdown.
    pub fn flush(&self) -> Result<()> {
        self.db.flush_wal(true)?;
        Ok(())
    }
}

/// The entries after the removal watermark (entries are in seq order).
fn not_yet_removed(entries: &[Entry], removed_upto: u64) -> &[Entry] {
    let start = entries.partition_point(|e| e.seq <= removed_upto);
    &entries[start..]
}

/// Exclusive upper bound of one backend's keys under `prefix`.
fn upper_bound(prefix: u8, id: u32) -> [u8; record::KEY_LEN] {
    match id.checked_add(1) {
        Some(next) => record::key(prefix, next, 0),
        None => record::key(prefix + 1, 0, 0),
    }
}

#[cfg(test)]
mod tests;
