//! The write-ahead queue: every accepted point lives here until its backend
//! has acknowledged it.
//!
//! # Why
//! The proxy answers `204` to a write only after the points are in this
//! queue for every target backend, so a crash, a `kill -9` or a backend
//! outage right after the answer loses nothing. Backends drain their queue
//! in order and delete records only after InfluxDB answered 2xx.
//!
//! # Interface
//! Outside this module nothing builds a record, encodes a dead letter or
//! works out what an append is charged against a queue's bound: callers
//! hand over line bytes and who receives which of them, and get back work
//! to deliver.
//! - Writing (`writer`): [`Wal::append_write`] (the lines of one `/write`,
//!   each target queue its [`LineSpans`] of a [`WriteLines`] buffer),
//!   [`Wal::append_statement`] (DDL queued in order with the writes) and
//!   [`Wal::append_lines`] (a migration's copied lines, a copy per queue).
//! - Delivering (`reader`): one [`Reader`] per backend reads its queue
//!   ([`Entry::work`]: points or a statement) and removes what was
//!   delivered ([`Reader::ack`]), refused whole ([`Reader::dead_letter`]) or
//!   delivered but for some refused lines ([`Reader::settle`]).
//! - Opening (`open`): [`Wal::open`], recovery of every queue's counters,
//!   queue registration ([`Wal::queue`]), and [`Wal::close`].
//! - Dead letters (`dead_letters`): list, replay, purge, trim.
//! - Shared lines (`shared`): which queues still hold an append's lines, and
//!   unsharing those a slow queue keeps.
//! - Storage (`storage`, `recover`): the free-space reserve, a failed
//!   RocksDB, removals kept while it fails, the maintenance thread.
//!
//! Each of these modules adds its own `impl Wal` block; this file holds the
//! types they share and the plumbing (reads, writes, iteration).
//!
//! Why: the router, the query path and the migration used to build records
//! and count their bytes themselves, so the record format leaked into
//! routing and a wrong count anywhere would drift the queue's counters.
//! [`record`] stays public only for the fuzz targets and golden tests.
//!
//! # Closing
//! [`Wal::close`] closes RocksDB on the calling thread (at exit, `main`'s),
//! whoever still holds a handle: it wakes and joins the maintenance thread,
//! waits for the operations in progress (each holds a read guard on the
//! database), flushes and closes; later operations fail with
//! [`Error::Closed`]. Closing used to wait for the last handle to be
//! dropped, polling for it.
//!
//! # Layout (format version 1)
//! One RocksDB database in `<data_dir>/wal`, default column family:
//!
//! ```text
//! key                                         value
//! 'm' "backend/" <name>                       backend id, u32 BE (assigned once, never reused)
//! 'q' <backend id u32 BE> <seq u64 BE>        0x01 | bincode(Record)       queued work
//! 'd' <backend id u32 BE> <seq u64 BE>        0x01 | bincode(DeadLetter)   refused by the backend (4xx)
//! 's' 0u32 <seq u64 BE>                       0x01 | lines                 lines shared by the records of append seq
//! ```
//!
//! `Record` is `Points { db, rp, points, lines }` (line protocol, ns
//! precision), `Statement { db, query }`, or `Shared { db, rp, points,
//! lines, sharers, spans }`: points whose lines are the `spans` of the `'s'`
//! value of the same seq; see [`record`]. Keys are big-endian so RocksDB
//! iterates each backend's queue in FIFO order.
//!
//! # Shared lines
//! A write to N circles gives every line to N backends. The write path
//! stores the request's lines once (`'s'`) and one small `Shared` record per
//! backend naming its spans, instead of N copies: half the bytes for 2
//! circles, the append being half of a write's latency
//! (`docs/profile.md`). Lines that all go to one backend are stored as its
//! `Points` record instead. [`Reader::read`] resolves a shared record into the
//! `Points` record it stands for, so delivery and dead letters only ever
//! see `Points`, and a queue's byte counter counts that `Points` length.
//! The `'s'` value is deleted in the batch that removes its last record.
//! Records of an append that some backends have delivered and others have
//! not for [`UNSHARE_AFTER`] are rewritten as standalone `Points` and the
//! `'s'` value deleted ([`Wal::unshare_older_than`]), so a backend that is
//! down keeps only its own share of the lines on disk. The references are
//! held in memory and rebuilt from the queues at open.
//!
//! # Invariants
//! - One `/write` request is one RocksDB write batch holding its shared
//!   lines and one record per target backend, all with the same sequence
//!   number: it is in every queue or in none.
//! - Sequence numbers are global and increase; a reader never sees a
//!   sequence number while a smaller one is still being written (the
//!   *visible* watermark below), so draining cannot skip a record that
//!   commits late.
//! - Each queue is bounded by `max_bytes`; an append that would exceed the
//!   bound of any target fails as a whole with [`Error::Full`].
//! - Unless the storage failed, appends leave `wal_min_free_mb` free on the
//!   filesystem ([`Error::LowDisk`]); removals are never refused for it.
//! - Records leave the queue only by [`Reader::ack`] (delivered),
//!   [`Reader::dead_letter`] (moved, atomically, to the dead-letter space) or
//!   [`Reader::settle`] (delivered, but for the lines kept as dead letters).
//! - An `'s'` value exists exactly as long as a `Shared` record of its seq
//!   does; reads take a snapshot, so unsharing is seen whole or not at
//!   all.
//!
//! # Durability
//! Every append goes to RocksDB's own write-ahead log before it returns, so
//! a process crash loses nothing ([`Durability::Buffered`]). With
//! [`Durability::Fsync`] (config `wal_sync`) each append also fsyncs;
//! concurrent appends are group-committed by RocksDB, which protects against
//! power loss at a latency cost.
//!
//! # Recovery
//! At open, every registered backend's queue is scanned once to rebuild its
//! counters (records, bytes, points) and the next sequence number. RocksDB
//! itself replays its log and tolerates a torn tail.
//!
//! # Storage faults
//! A full disk or an I/O error makes RocksDB refuse every later write.
//! Appends are then refused ([`Error::Failed`], a 503) while removals are
//! kept in memory and the readers move on; the maintenance thread reopens
//! the database once there is room and writes them (`storage`, `recover`).
//!
//! # Age of the oldest record
//! Records carry no append time on disk. [`QueueStats::oldest_age`] comes
//! from an in-memory index: appends are grouped per second of append time
//! (a count per second, so its size grows with the outage length, not with
//! the number of records) and removals take from the oldest group, as the
//! queue is FIFO. It is exact to within a second for records appended by
//! this process; records recovered at open count as appended at open, so
//! after a restart the age is "at least since the process started".

#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

mod dead_letters;
mod open;
mod reader;
pub mod record;
mod recover;
mod shared;
mod storage;
mod writer;

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, MappedRwLockReadGuard, Mutex, RwLock, RwLockReadGuard};
use rocksdb::{BlockBasedOptions, Cache, Options, ReadOptions, WriteBatch, WriteOptions, DB};

pub use reader::{Reader, RefusedLines, Work};
use record::Record;
pub use record::{DeadLetter, DecodeError};
pub use recover::spawn_maintainer;
use recover::Deferred;
use shared::{SharedIndex, SharedRefs};
pub use storage::StorageState;
use storage::{DiskSpace, Health, Step};
pub use writer::{LineSpans, WriteLines};

/// Errors of the write-ahead queue.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// RocksDB failed (I/O error, no space left, corruption it could not
    /// repair, ...); RocksDB's message.
    #[error("write-ahead queue storage error: {0}")]
    Storage(String),
    /// Less than the free-space reserve (`wal_min_free_mb`) is free on the
    /// queue's filesystem: appends wait for room, so that deliveries can
    /// still delete what they delivered.
    #[error("the write-ahead queue's filesystem has {free_mb} MiB free, under its reserve (wal_min_free_mb) of {reserve_mb} MiB; retry later")]
    LowDisk {
        /// Free MiB (last measure).
        free_mb: u64,
        /// The reserve, MiB.
        reserve_mb: u64,
    },
    /// A write to the storage failed (the disk filled up, an I/O error):
    /// appends are refused until the queue recovers by itself (see
    /// `storage`); what it holds is kept and still delivered.
    #[error("write-ahead queue storage failed ({error}); writes are refused until it recovers, retry later")]
    Failed {
        /// The error that made it fail.
        error: String,
    },
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
    /// The queue was closed ([`Wal::close`]): the process is stopping.
    #[error("the write-ahead queue is closed")]
    Closed,
    /// [`Wal::close`] gave up waiting for the operations in progress.
    #[error("the write-ahead queue is still in use after {0:?}; left open")]
    StillInUse(Duration),
}

impl From<rocksdb::Error> for Error {
    fn from(e: rocksdb::Error) -> Error {
        Error::Storage(e.into_string())
    }
}

impl Error {
    /// A storage fault, as opposed to a bound, a closed queue or bad
    /// metadata: what [`Wal`] defers removals for.
    fn is_storage(&self) -> bool {
        matches!(self, Error::Storage(_) | Error::Failed { .. })
    }

    /// The append may succeed later without anyone acting: a full queue,
    /// the free-space reserve, storage that recovers by itself. Answered
    /// 503 with `Retry-After`.
    pub fn is_temporary(&self) -> bool {
        matches!(
            self,
            Error::Full { .. } | Error::LowDisk { .. } | Error::Failed { .. }
        )
    }
}

/// Result alias of this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Counters of one backend's queue, shared with `/health` and metrics.
#[derive(Debug, Default)]
pub struct QueueStats {
    /// Records queued.
    records: AtomicU64,
    /// Bytes of values queued.
    bytes: AtomicU64,
    /// Points queued.
    points: AtomicU64,
    /// Points appended since the queue was opened (only grows): with the points delivered,
    /// the rates in and out of the queue (`/metrics`). One add per queue and append.
    appended_points: AtomicU64,
    /// Dead letters stored.
    dead_records: AtomicU64,
    /// Points in dead letters.
    dead_points: AtomicU64,
    /// Bytes of stored dead letters.
    dead_bytes: AtomicU64,
    /// Bound on `dead_bytes` (`dead_letter_max_bytes`); the oldest dead
    /// letters are dropped beyond it. 0: no bound.
    dead_max_bytes: AtomicU64,
    /// Dead letters dropped to respect `dead_max_bytes`, since start.
    dead_dropped_records: AtomicU64,
    /// Points in them.
    dead_dropped_points: AtomicU64,
    /// Serialises changes to the dead letters, so counters match what is
    /// stored when delivery, trimming, replay and purge meet.
    dead_lock: Mutex<()>,
    /// The queue's byte bound (`wal_max_bytes`), shared by every handle so
    /// a reload can change it in place.
    max_bytes: AtomicU64,
    /// Highest sequence number removed (acknowledged or dead-lettered).
    /// Removal is serialised on it, so two readers of one queue (an actor
    /// being replaced by a reload and its successor) never remove or count
    /// a record twice. Reads start after it.
    removed_upto: Mutex<u64>,
    /// Removals not yet written because the storage failed (see
    /// `recover`): counted as removed, deleted once it recovers.
    deferred: Mutex<Deferred>,
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

/// A queue's counters read at one moment (each exact; together, nearly so:
/// they are read one after the other while deliveries go on).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueSnapshot {
    /// Records queued.
    pub records: u64,
    /// Bytes of values queued.
    pub bytes: u64,
    /// Points queued.
    pub points: u64,
    /// Points appended since the queue was opened.
    pub appended_points: u64,
    /// The queue's byte bound (`wal_max_bytes`).
    pub max_bytes: u64,
    /// Dead letters stored.
    pub dead_records: u64,
    /// Points in dead letters.
    pub dead_points: u64,
    /// Bytes of stored dead letters.
    pub dead_bytes: u64,
    /// Bound on `dead_bytes` (`dead_letter_max_bytes`); 0: none.
    pub dead_max_bytes: u64,
    /// Dead letters dropped to respect `dead_max_bytes`, since start.
    pub dead_dropped_records: u64,
    /// Points in them.
    pub dead_dropped_points: u64,
}

impl QueueStats {
    /// Every counter, read now.
    pub fn snapshot(&self) -> QueueSnapshot {
        let get = |a: &AtomicU64| a.load(Ordering::Acquire);
        QueueSnapshot {
            records: get(&self.records),
            bytes: get(&self.bytes),
            points: get(&self.points),
            appended_points: get(&self.appended_points),
            max_bytes: get(&self.max_bytes),
            dead_records: get(&self.dead_records),
            dead_points: get(&self.dead_points),
            dead_bytes: get(&self.dead_bytes),
            dead_max_bytes: get(&self.dead_max_bytes),
            dead_dropped_records: get(&self.dead_dropped_records),
            dead_dropped_points: get(&self.dead_dropped_points),
        }
    }

    /// Sets the queue's byte bound (`wal_max_bytes`) and its dead letters'
    /// (`dead_letter_max_bytes`, 0: none) in place: a reload changes them
    /// without touching the queue (trim with [`Wal::trim_dead_letters`]).
    pub fn set_bounds(&self, max_bytes: u64, dead_max_bytes: u64) {
        self.max_bytes.store(max_bytes, Ordering::Release);
        self.dead_max_bytes.store(dead_max_bytes, Ordering::Release);
    }

    /// Records queued (what delivery and read freshness poll often).
    pub fn records(&self) -> u64 {
        self.records.load(Ordering::Acquire)
    }

    /// Points queued.
    pub fn points(&self) -> u64 {
        self.points.load(Ordering::Acquire)
    }

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

    /// True once the record this queue received at sequence number `seq` (an append's
    /// return value) has left it: delivered, or refused and dead-lettered. Lets a caller
    /// wait for what it appended without waiting for later appends. Never blocks: while a
    /// removal is being written it answers from the record count alone (ask again).
    pub fn has_removed(&self, seq: u64) -> bool {
        self.is_empty()
            || self
                .stats
                .removed_upto
                .try_lock()
                .is_some_and(|removed| *removed >= seq)
    }
}

/// One queued value read back for delivery.
#[derive(Debug)]
pub struct Entry {
    /// Global sequence number.
    pub seq: u64,
    /// The value (version byte + bincode); decode with [`Entry::work`].
    /// A [`Record::Shared`] is read back resolved into the
    /// [`Record::Points`] it stands for.
    value: Box<[u8]>,
    /// What the record counts for in the queue's byte counter.
    bytes: u64,
    /// Stored as a [`Record::Shared`]: removing it releases its lines.
    shared: bool,
}

impl Entry {
    /// Decodes the record, borrowing from the value. It is a
    /// [`Record::Shared`] only when its shared lines could not be read.
    fn record(&self) -> Result<Record<'_>, record::DecodeError> {
        record::decode_record(&self.value)
    }
}

/// A dead letter to store: what one queued record's backend refused.
#[derive(Debug, Clone, Copy)]
struct Dead<'a> {
    /// Seq of the record the lines came from (the dead letter's key).
    pub seq: u64,
    /// HTTP status of the refusal, 0 when the record was unreadable.
    pub status: u16,
    /// The backend's error message.
    pub error: &'a str,
    /// An encoded record (a [`Record::Points`] of the refused lines, or
    /// the queued value itself).
    pub value: &'a [u8],
}

/// Sequence allocation state; see the *visible* watermark in the module doc.
#[derive(Debug)]
struct Sequencer {
    next: u64,
    in_flight: BTreeSet<u64>,
}

/// The memory RocksDB may use: its share of the proxy's memory budget
/// (`memory_budget_mb`, split by the proxy's `memory` module).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StorageMemory {
    /// Size of one memtable; two exist at most.
    pub memtable_bytes: usize,
    /// The block cache.
    pub block_cache_bytes: usize,
}

impl Default for StorageMemory {
    /// The shares of the default 96 MiB budget (an eighth and a forty-eighth).
    fn default() -> StorageMemory {
        StorageMemory {
            memtable_bytes: 12 << 20,
            block_cache_bytes: 2 << 20,
        }
    }
}

/// What an acknowledged append survives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// In RocksDB's log, in the kernel's page cache: survives the proxy's crash or kill,
    /// not the machine's power loss.
    Buffered,
    /// Also fsynced before the append returns (group-committed): survives power loss.
    Fsync,
}

impl Durability {
    /// The policy config `wal_sync` names.
    pub fn from_wal_sync(wal_sync: bool) -> Durability {
        if wal_sync {
            Durability::Fsync
        } else {
            Durability::Buffered
        }
    }
}

/// The write-ahead queue of all backends.
pub struct Wal {
    /// The database; `None` once [`Wal::close`] closed it. Every operation
    /// holds a read guard for its duration (recursively: operations call
    /// each other), so closing waits for the operations in progress and
    /// later ones fail with [`Error::Closed`].
    db: RwLock<Option<DB>>,
    /// Where the database lives (reopened from there, see `recover`).
    dir: PathBuf,
    /// RocksDB's share of the memory budget, to reopen it alike.
    memory: StorageMemory,
    /// Appends fsync ([`Durability::Fsync`]).
    sync: bool,
    /// The free-space reserve on `dir`'s filesystem.
    space: DiskSpace,
    /// Whether the storage takes writes.
    health: Health,
    /// Set by [`Wal::close`]; wakes the maintenance thread, which then ends.
    closing: Arc<Closing>,
    /// The maintenance thread ([`spawn_maintainer`]), joined by [`Wal::close`].
    maintainer: Mutex<Option<std::thread::JoinHandle<()>>>,
    seq: Mutex<Sequencer>,
    /// Appends whose shared lines are still referenced, by seq. Removing
    /// queue records and unsharing hold this lock across their RocksDB
    /// write, so a shared value is deleted exactly when its last
    /// reference goes.
    shared: Mutex<SharedIndex>,
    /// References made by appends since `shared` was last locked: an
    /// append never waits for an unsharing in progress.
    shared_new: Mutex<Vec<(u64, SharedRefs)>>,
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
struct Append<'a> {
    /// Target queue.
    pub queue: &'a Queue,
    /// The record.
    pub record: Record<'a>,
}

/// One already-encoded value for one queue (see [`Wal::append_encoded`]).
#[derive(Debug)]
struct Encoded<'a> {
    /// Target queue.
    pub queue: &'a Queue,
    /// The queue value, as [`record::encode_record`] would make it.
    pub value: &'a [u8],
    /// Points the value carries.
    pub points: u64,
    /// What it counts for in the queue's byte bound
    /// ([`Record::accounted_len`]).
    pub bytes: u64,
}

/// RocksDB's memory, as [`Wal::memory_usage`] reads it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoryUsage {
    /// Memtables, the one filling and those not yet written out.
    pub memtables: u64,
    /// Block cache in use.
    pub block_cache: u64,
    /// Index and filter blocks of table readers held outside the cache.
    pub table_readers: u64,
}

/// RocksDB's background threads: one flushes memtables, the others compact. With RocksDB's
/// default of 2 (one compaction at a time), writes at saturation waited behind compactions of
/// the queue's short-lived files: the Telegraf-like body through 2 x 2 null sinks had p99
/// 82-109 ms; with 4, 27-33 ms (docs/profile.md, "Round two"). Compactions read their inputs
/// without readahead ([`rocksdb_options`]): RocksDB's default of 2 MiB per input file, times
/// three compactions at once, took the peak RSS from 91-96 to 120-150 MB.
const BACKGROUND_JOBS: i32 = 4;

/// RocksDB's options within `memory`. The queue is written once and read once, mostly while
/// still in a memtable: two memtables (one filling while the other is written out) bound what
/// it holds in memory, and the block cache, which only a backlog on disk is read through, takes
/// index and filter blocks too so that table readers stay inside it.
fn rocksdb_options(memory: &StorageMemory) -> Options {
    let mut opts = Options::default();
    opts.create_if_missing(true);
    opts.set_write_buffer_size(memory.memtable_bytes);
    opts.set_max_write_buffer_number(2);
    opts.set_max_background_jobs(BACKGROUND_JOBS);
    // Outside the memory budget otherwise (see BACKGROUND_JOBS); the page cache reads ahead.
    opts.set_compaction_readahead_size(0);
    opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
    opts.set_keep_log_file_num(4);
    let mut table = BlockBasedOptions::default();
    table.set_block_cache(&Cache::new_lru_cache(memory.block_cache_bytes));
    table.set_cache_index_and_filter_blocks(true);
    opts.set_block_based_table_factory(&table);
    opts
}

impl Wal {
    fn for_each(&self, prefix: u8, id: u32, mut f: impl FnMut(u64, &[u8])) -> Result<()> {
        self.for_each_until(prefix, id, 0, |seq, v| {
            f(seq, v);
            true
        })
    }

    /// [`Wal::for_each`] that stops after the first call returning false.
    fn for_each_until(
        &self,
        prefix: u8,
        id: u32,
        from: u64,
        mut f: impl FnMut(u64, &[u8]) -> bool,
    ) -> Result<()> {
        let mut ro = ReadOptions::default();
        ro.set_iterate_lower_bound(record::key(prefix, id, from).to_vec());
        ro.set_iterate_upper_bound(upper_bound(prefix, id).to_vec());
        let db = self.db()?;
        let mut it = db.raw_iterator_opt(ro);
        it.seek_to_first();
        while it.valid() {
            if let (Some(k), Some(v)) = (it.key(), it.value()) {
                if let Some((_, _, seq)) = record::parse_key(k) {
                    if !f(seq, v) {
                        break;
                    }
                }
            }
            it.next();
        }
        it.status()?;
        Ok(())
    }

    /// The open database, held for the caller's operation; see `db`.
    /// [`Error::Failed`] while a failed reopen left it closed.
    fn db(&self) -> Result<MappedRwLockReadGuard<'_, DB>> {
        RwLockReadGuard::try_map(self.db.read_recursive(), Option::as_ref).map_err(|_| {
            if self.closing.is_set() {
                Error::Closed
            } else {
                Error::Failed {
                    error: self
                        .health
                        .cause()
                        .unwrap_or_else(|| "the queue is being reopened".into()),
                }
            }
        })
    }

    /// Writes `batch` for `step`: every write of the queue goes through
    /// here, where a failure marks the storage failed (see `storage`) and
    /// the step's failpoint can inject one.
    fn write(&self, db: &DB, batch: WriteBatch, sync: bool, step: Step) -> Result<()> {
        let result = storage::failpoint(step, &self.dir)
            .and_then(|()| Ok(db.write_opt(batch, &self.write_options(sync))?));
        if let Err(e) = &result {
            if e.is_storage() {
                self.health.fail(step, e);
            }
        }
        result
    }

    fn write_options(&self, sync: bool) -> WriteOptions {
        let mut wo = WriteOptions::default();
        wo.set_sync(sync);
        wo
    }
}

/// Whether [`Wal::close`] was called, waited on by the maintenance thread
/// (which holds only this and a weak handle, so the queue can be dropped
/// while it waits).
#[derive(Debug, Default)]
struct Closing {
    closed: Mutex<bool>,
    changed: Condvar,
}

impl Closing {
    fn set(&self) {
        *self.closed.lock() = true;
        self.changed.notify_all();
    }

    fn is_set(&self) -> bool {
        *self.closed.lock()
    }

    /// Waits up to `timeout` for [`Closing::set`]; true once it was called.
    fn within(&self, timeout: Duration) -> bool {
        let mut closed = self.closed.lock();
        if !*closed {
            self.changed.wait_for(&mut closed, timeout);
        }
        *closed
    }
}

/// The [`Record::Points`] value a shared record stands for, or the record
/// itself (which the backend then dead-letters) when its lines cannot be
/// read. `shared` iterates the shared lines of the same snapshot.
fn resolve(
    shared: &mut rocksdb::DBRawIterator<'_>,
    queue: &Queue,
    seq: u64,
    r: &Record<'_>,
    stored: &[u8],
) -> Box<[u8]> {
    let key = record::shared_key(seq);
    shared.seek(key);
    let resolved = match (shared.key(), shared.value()) {
        (Some(k), Some(v)) if k == key => record::shared_lines(v)
            .and_then(|lines| record::resolve_shared(r, lines))
            .map_err(|e| e.to_string()),
        _ => Err(shared
            .status()
            .err()
            .map_or_else(|| "shared lines missing".to_string(), |e| e.to_string())),
    };
    match resolved {
        Ok(value) => value.into(),
        Err(error) => {
            tracing::error!(backend = %queue.name, seq, %error, "Shared queue record unreadable.");
            stored.into()
        }
    }
}

/// How long the lines of an append stay shared once some of its records
/// were delivered: long enough for healthy backends to catch up (they
/// deliver within `flush_time`), short enough that a backend that is down
/// does not keep the other backends' lines on disk.
pub const UNSHARE_AFTER: Duration = Duration::from_secs(10);

/// The entries after the removal watermark (entries are in seq order).
/// Points in a stored dead letter (0 when unreadable).
fn dead_letter_points(value: &[u8]) -> u64 {
    record::decode_dead_letter(value)
        .ok()
        .and_then(|d| record::decode_record(d.value).ok())
        .map_or(0, |r| r.points())
}

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
