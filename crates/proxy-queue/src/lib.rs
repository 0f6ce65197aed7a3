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
//! - Administration (here): queue registration ([`Wal::queue`]), dead
//!   letters (list, replay, purge, trim), unsharing, and [`Wal::close`].
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

mod reader;
pub mod record;
mod recover;
mod storage;
mod writer;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::{Condvar, MappedRwLockReadGuard, Mutex, RwLock, RwLockReadGuard};
use rocksdb::{
    BlockBasedOptions, Cache, Direction, IteratorMode, Options, ReadOptions, WriteBatch,
    WriteOptions, DB,
};

pub use reader::{Reader, RefusedLines, Work};
use record::Record;
pub use record::{DeadLetter, DecodeError};
use record::{DEAD_PREFIX, META_PREFIX, QUEUE_PREFIX, SHARED_PREFIX};
pub use recover::spawn_maintainer;
use recover::Deferred;
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

/// The queues still holding a [`Record::Shared`] of one append.
#[derive(Debug)]
struct SharedRefs {
    /// Ids of the queues whose record of this append is still queued.
    queues: Vec<u32>,
    /// When the append was made (or recovered at open).
    since: Instant,
    /// Already a candidate for unsharing (in `partly_removed`).
    listed: bool,
}

/// Which appends' lines are shared by which queues.
#[derive(Debug, Default)]
struct SharedIndex {
    refs: BTreeMap<u64, SharedRefs>,
    /// Appends some of whose records were removed while others wait, in
    /// about seq order: the candidates for [`Wal::unshare_older_than`].
    partly_removed: VecDeque<u64>,
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

/// RocksDB's options within `memory`. The queue is written once and read once, mostly while
/// still in a memtable: two memtables (one filling while the other is written out) bound what
/// it holds in memory, and the block cache, which only a backlog on disk is read through, takes
/// index and filter blocks too so that table readers stay inside it.
fn rocksdb_options(memory: &StorageMemory) -> Options {
    let mut opts = Options::default();
    opts.create_if_missing(true);
    opts.set_write_buffer_size(memory.memtable_bytes);
    opts.set_max_write_buffer_number(2);
    opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
    opts.set_keep_log_file_num(4);
    let mut table = BlockBasedOptions::default();
    table.set_block_cache(&Cache::new_lru_cache(memory.block_cache_bytes));
    table.set_cache_index_and_filter_blocks(true);
    opts.set_block_based_table_factory(&table);
    opts
}

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
    fn recover_shared(&self) -> Result<()> {
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
    fn recover_ids(&self) -> Result<()> {
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

    fn next_id_value(&self) -> u32 {
        *self.next_id.lock()
    }

    fn last_seq(&self, prefix: u8, id: u32) -> Result<Option<u64>> {
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
    fn scan_stats(&self, id: u32, removed: u64) -> Result<QueueStats> {
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

    /// [`Error::Failed`] while the storage does not take writes.
    fn check_health(&self) -> Result<()> {
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

    fn write_options(&self, sync: bool) -> WriteOptions {
        let mut wo = WriteOptions::default();
        wo.set_sync(sync);
        wo
    }

    /// Appends one record per target atomically. Returns only after the
    /// batch is in RocksDB's log (and fsynced when `sync` is on).
    fn append(&self, appends: &[Append<'_>]) -> Result<u64> {
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
                bytes: a.record.accounted_len(v.len()),
            })
            .collect();
        self.append_encoded(&values, None)
    }

    /// [`Wal::append`] for values already encoded: the write path builds
    /// its records in place ([`WriteLines`]). `shared` is the value
    /// ([`WriteLines::shared_value`]) holding
    /// the lines of the [`Record::Shared`] values among them; it is stored
    /// once, in the same atomic batch.
    fn append_encoded(&self, values: &[Encoded<'_>], shared: Option<&[u8]>) -> Result<u64> {
        self.append_removing(values, shared, None)
    }

    /// [`Wal::append_encoded`] that also deletes key `remove` in the same
    /// atomic batch (a dead letter being queued again).
    fn append_removing(
        &self,
        values: &[Encoded<'_>],
        shared: Option<&[u8]>,
        remove: Option<&[u8]>,
    ) -> Result<u64> {
        for v in values {
            let queued = v.queue.stats.bytes.load(Ordering::Acquire);
            let max = v.queue.stats.max_bytes.load(Ordering::Acquire);
            if queued + v.bytes > max {
                return Err(Error::Full {
                    backend: v.queue.name.to_string(),
                    queued,
                    max,
                });
            }
        }
        self.check_health()?;
        self.space.check()?;
        let seq = {
            let mut s = self.seq.lock();
            let seq = s.next;
            s.next += 1;
            s.in_flight.insert(seq);
            seq
        };
        let bytes: usize = values.iter().map(|v| v.value.len() + 32).sum::<usize>()
            + shared.map_or(0, |s| s.len() + 32);
        let mut batch = WriteBatch::with_capacity_bytes(bytes + 64);
        if let Some(lines) = shared {
            batch.put(record::shared_key(seq), lines);
        }
        for v in values {
            batch.put(record::key(QUEUE_PREFIX, v.queue.id, seq), v.value);
        }
        if let Some(key) = remove {
            batch.delete(key);
        }
        // The guard is held until the counters moved: a reopen recounts
        // them from what is stored (`recover`), never in between.
        let db = match self.db() {
            Ok(db) => db,
            Err(e) => {
                self.seq.lock().in_flight.remove(&seq);
                return Err(e);
            }
        };
        // A failed append is answered like the ones refused after it: 503,
        // the storage recovers by itself (`recover`).
        let result = self
            .write(&db, batch, self.sync, Step::Append)
            .map_err(|e| match e {
                Error::Storage(error) => Error::Failed { error },
                other => other,
            });
        if result.is_ok() {
            self.space.consumed(bytes as u64);
            // Counters and references move before the seq becomes
            // visible, so a reader never acknowledges more than they hold.
            let now = Instant::now();
            if shared.is_some() {
                let queues = values.iter().map(|v| v.queue.id).collect();
                self.shared_new.lock().push((
                    seq,
                    SharedRefs {
                        queues,
                        since: now,
                        listed: false,
                    },
                ));
            }
            for v in values {
                let st = &v.queue.stats;
                st.bytes.fetch_add(v.bytes, Ordering::AcqRel);
                st.points.fetch_add(v.points, Ordering::AcqRel);
                st.records.fetch_add(1, Ordering::AcqRel);
                st.note_appended(now, 1);
            }
        }
        drop(db);
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
    fn read(
        &self,
        queue: &Queue,
        after: u64,
        max_points: u64,
        max_bytes: u64,
    ) -> Result<Vec<Entry>> {
        // What was removed is not read again, even by a new reader starting
        // from 0 while its deletion is deferred.
        let after = after.max(*queue.stats.removed_upto.lock());
        let visible = self.visible();
        if visible <= after {
            return Ok(Vec::new());
        }
        storage::failpoint(Step::Read, &self.dir)?;
        // One snapshot for the records and their shared lines: unsharing
        // (which rewrites a record and deletes its shared lines) is seen
        // either entirely or not at all.
        let db = self.db()?;
        let snapshot = db.snapshot();
        let mut ro = ReadOptions::default();
        ro.set_iterate_lower_bound(record::key(QUEUE_PREFIX, queue.id, after + 1).to_vec());
        ro.set_iterate_upper_bound(
            record::key(QUEUE_PREFIX, queue.id, visible.saturating_add(1)).to_vec(),
        );
        let mut it = snapshot.raw_iterator_opt(ro);
        it.seek_to_first();
        // Shared lines are read through an iterator: its values point into
        // the memtable, where a get would copy the whole append's lines.
        let mut ro = ReadOptions::default();
        ro.set_iterate_lower_bound(record::shared_key(after + 1).to_vec());
        ro.set_iterate_upper_bound(upper_bound(SHARED_PREFIX, 0).to_vec());
        let mut shared = snapshot.raw_iterator_opt(ro);
        let (mut points, mut bytes) = (0u64, 0u64);
        let mut out = Vec::new();
        while it.valid() {
            let (Some(k), Some(v)) = (it.key(), it.value()) else {
                break;
            };
            let Some((_, _, seq)) = record::parse_key(k) else {
                break;
            };
            let decoded = record::decode_record(v).ok();
            let (p, b) = decoded.map_or((0, v.len() as u64), |r| {
                (r.points(), r.accounted_len(v.len()))
            });
            if !out.is_empty() && (points + p > max_points || bytes + b > max_bytes) {
                break;
            }
            points += p;
            bytes += b;
            let entry = match decoded {
                Some(r @ Record::Shared { .. }) => Entry {
                    seq,
                    value: resolve(&mut shared, queue, seq, &r, v),
                    bytes: b,
                    shared: true,
                },
                _ => Entry {
                    seq,
                    value: v.into(),
                    bytes: b,
                    shared: false,
                },
            };
            out.push(entry);
            it.next();
        }
        it.status()?;
        Ok(out)
    }

    /// Deletes delivered entries (a prefix of the queue, as returned by
    /// [`Wal::read`]) and updates the counters.
    fn ack(&self, queue: &Queue, entries: &[Entry]) -> Result<()> {
        self.remove(queue, entries, &[], false)
    }

    /// Removes `entries` (a prefix of the queue) and stores `dead` beside
    /// them in the dead-letter space, in one atomic batch: a refused batch
    /// whose good lines were delivered keeps only the lines the backend
    /// refused on their own. A dead letter's `seq` must be one of
    /// `entries`' (the record its lines came from).
    fn settle(&self, queue: &Queue, entries: &[Entry], dead: &[Dead<'_>]) -> Result<()> {
        self.remove(queue, entries, dead, self.sync)
    }

    /// Removes `entries` and stores `dead` in one write batch; counters
    /// follow. Removal is serialised on the queue's `removed_upto`, so an
    /// entry already removed (by a replaced actor) is neither removed nor
    /// dead-lettered twice.
    ///
    /// When the storage fails, the removal is kept in memory and written
    /// with the next one that succeeds (see `recover`): the records count
    /// as removed, and the reader moves on to the next ones.
    fn remove(
        &self,
        queue: &Queue,
        entries: &[Entry],
        dead: &[Dead<'_>],
        sync: bool,
    ) -> Result<()> {
        let step = if dead.is_empty() {
            Step::Ack
        } else {
            Step::DeadLetter
        };
        let mut removed = queue.stats.removed_upto.lock();
        let entries = not_yet_removed(entries, *removed);
        let Some(last) = entries.last() else {
            return Ok(());
        };
        let first = entries[0].seq;
        let dead_lock = queue.stats.dead_lock.lock();
        let at_unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let letters: Vec<recover::Letter> = dead
            .iter()
            .filter(|d| (first..=last.seq).contains(&d.seq))
            .map(|d| recover::Letter {
                seq: d.seq,
                points: record::decode_record(d.value).map_or(0, |r| r.points()),
                value: record::encode_dead_letter(&DeadLetter {
                    status: d.status,
                    error: d.error,
                    at_unix_ms,
                    value: d.value,
                }),
            })
            .collect();
        let shared: Vec<u64> = entries.iter().filter(|e| e.shared).map(|e| e.seq).collect();
        let mut deferred = queue.stats.deferred.lock();
        let written = self.check_health().and_then(|()| {
            self.write_removal(queue, &deferred, last.seq, &letters, &shared, sync, step)
        });
        let stored_letters = match written {
            Ok(()) => {
                let earlier = std::mem::take(&mut *deferred);
                self.count_letters(queue, earlier.letters.iter().chain(&letters))
            }
            Err(e) if e.is_storage() && deferred.has_room_for(&letters) => {
                deferred.add(last.seq, entries.len() as u64, shared, letters);
                false
            }
            Err(e) => return Err(e),
        };
        drop(deferred);
        self.subtract(queue, entries);
        *removed = last.seq;
        drop(dead_lock);
        drop(removed);
        if stored_letters {
            self.trim_dead_letters(queue)?;
        }
        Ok(())
    }

    /// Writes the removal of `queue`'s records up to `upto` (and of
    /// those `deferred` holds) with the dead letters `letters`, releasing
    /// the shared lines of `shared` that nothing else references.
    #[allow(clippy::too_many_arguments)]
    fn write_removal(
        &self,
        queue: &Queue,
        deferred: &Deferred,
        upto: u64,
        letters: &[recover::Letter],
        shared: &[u64],
        sync: bool,
        step: Step,
    ) -> Result<()> {
        let mut batch = WriteBatch::default();
        for l in deferred.letters.iter().chain(letters) {
            batch.put(record::key(DEAD_PREFIX, queue.id, l.seq), &l.value);
        }
        batch.delete_range(
            record::key(QUEUE_PREFIX, queue.id, 0),
            record::key(QUEUE_PREFIX, queue.id, upto.max(deferred.upto) + 1),
        );
        let shared: Vec<u64> = deferred.shared.iter().chain(shared).copied().collect();
        self.write_releasing(batch, queue, &shared, sync, step)
    }

    /// Counts dead letters just stored; true when there were any.
    fn count_letters<'a>(
        &self,
        queue: &Queue,
        letters: impl Iterator<Item = &'a recover::Letter>,
    ) -> bool {
        let (mut records, mut points, mut bytes) = (0u64, 0u64, 0u64);
        for l in letters {
            records += 1;
            points += l.points;
            bytes += l.value.len() as u64;
        }
        let st = &queue.stats;
        st.dead_records.fetch_add(records, Ordering::AcqRel);
        st.dead_points.fetch_add(points, Ordering::AcqRel);
        st.dead_bytes.fetch_add(bytes, Ordering::AcqRel);
        records > 0
    }

    /// Drops the oldest dead letters of `queue` until they fit in its
    /// `dead_max_bytes`; returns how many records and points were dropped.
    pub fn trim_dead_letters(&self, queue: &Queue) -> Result<(u64, u64)> {
        let st = &queue.stats;
        let max = st.dead_max_bytes.load(Ordering::Acquire);
        let over = st.dead_bytes.load(Ordering::Acquire).saturating_sub(max);
        if max == 0 || over == 0 {
            return Ok((0, 0));
        }
        let _dead = st.dead_lock.lock();
        let mut batch = WriteBatch::default();
        let (mut records, mut points, mut bytes) = (0u64, 0u64, 0u64);
        let mut last = None;
        self.for_each_until(DEAD_PREFIX, queue.id, 0, |seq, v| {
            records += 1;
            bytes += v.len() as u64;
            points += dead_letter_points(v);
            last = Some(seq);
            bytes < over
        })?;
        let Some(last) = last else {
            return Ok((0, 0));
        };
        batch.delete_range(
            record::key(DEAD_PREFIX, queue.id, 0),
            record::key(DEAD_PREFIX, queue.id, last + 1),
        );
        self.write(&*self.db()?, batch, false, Step::Upkeep)?;
        st.dead_records.fetch_sub(records, Ordering::AcqRel);
        st.dead_points.fetch_sub(points, Ordering::AcqRel);
        st.dead_bytes.fetch_sub(bytes, Ordering::AcqRel);
        st.dead_dropped_records.fetch_add(records, Ordering::AcqRel);
        st.dead_dropped_points.fetch_add(points, Ordering::AcqRel);
        tracing::warn!(backend = %queue.name, records, points, bytes, max_bytes = max,
            "Oldest dead letters dropped to stay within dead_letter_max_bytes.");
        Ok((records, points))
    }

    /// Writes `batch` (which removes from `queue` the records of seqs
    /// `removed_shared` among others, all stored shared), deleting in the
    /// same batch the shared lines whose last reference they were.
    fn write_releasing(
        &self,
        mut batch: WriteBatch,
        queue: &Queue,
        removed_shared: &[u64],
        sync: bool,
        step: Step,
    ) -> Result<()> {
        let mut shared = self.shared_index();
        let mut released = Vec::new();
        for &seq in removed_shared {
            let Some(refs) = shared.refs.get(&seq) else {
                continue; // unshared meanwhile: the record stands alone now
            };
            if refs.queues.iter().all(|&q| q == queue.id) {
                batch.delete(record::shared_key(seq));
                released.push(seq);
            }
        }
        self.write(&*self.db()?, batch, sync, step)?;
        let SharedIndex {
            refs,
            partly_removed,
        } = &mut *shared;
        for &seq in removed_shared {
            if let Some(r) = refs.get_mut(&seq) {
                r.queues.retain(|&q| q != queue.id);
                if !r.listed && !r.queues.is_empty() {
                    r.listed = true;
                    partly_removed.push_back(seq);
                }
            }
        }
        for seq in released {
            refs.remove(&seq);
        }
        Ok(())
    }

    /// Rewrites the records that still refer to shared lines older than
    /// `age`, once some other record of the same append was removed, as
    /// standalone [`Record::Points`] and deletes the shared lines; at most
    /// `limit` appends per call. A backend that is down would otherwise
    /// keep every line of every write alive, not only its own share.
    /// Returns how many appends were unshared.
    ///
    /// Stops while less than the free-space reserve is free: a rewritten
    /// record takes room again until RocksDB compacts the old one away,
    /// room that deliveries need more.
    pub fn unshare_older_than(&self, age: Duration, limit: usize) -> Result<usize> {
        let mut done = 0;
        while done < limit && self.space.free() >= self.space.reserve() {
            // Locked per append, so acknowledgements never wait long.
            let mut shared = self.shared_index();
            let Some(&seq) = shared.partly_removed.front() else {
                break;
            };
            let Some(refs) = shared.refs.get(&seq) else {
                shared.partly_removed.pop_front(); // gone meanwhile
                continue;
            };
            if refs.since.elapsed() < age {
                break;
            }
            let queues = refs.queues.clone();
            shared.partly_removed.pop_front();
            let mut batch = WriteBatch::default();
            let db = self.db()?;
            if let Some(lines) = db.get_pinned(record::shared_key(seq))? {
                let lines = record::shared_lines(&lines).unwrap_or_default();
                for id in queues {
                    let key = record::key(QUEUE_PREFIX, id, seq);
                    let Some(stored) = db.get_pinned(key)? else {
                        continue;
                    };
                    // A record that does not resolve stays as it is, to be
                    // dead-lettered as unreadable when its turn comes.
                    if let Ok(value) = record::decode_record(&stored)
                        .and_then(|r| record::resolve_shared(&r, lines))
                    {
                        self.space.consumed(value.len() as u64);
                        batch.put(key, value);
                    }
                }
            }
            batch.delete(record::shared_key(seq));
            if let Err(e) = self.write(&db, batch, self.sync, Step::Unshare) {
                // Tried again later.
                shared.partly_removed.push_front(seq);
                return Err(e);
            }
            shared.refs.remove(&seq);
            done += 1;
        }
        Ok(done)
    }

    /// The shared-lines index, with the references of recent appends
    /// merged in.
    fn shared_index(&self) -> parking_lot::MutexGuard<'_, SharedIndex> {
        let mut shared = self.shared.lock();
        shared.refs.extend(self.shared_new.lock().drain(..));
        shared
    }

    /// Number of appends whose lines are stored shared.
    pub fn shared_appends(&self) -> usize {
        self.shared_index().refs.len()
    }

    fn subtract(&self, queue: &Queue, entries: &[Entry]) {
        let st = &queue.stats;
        let bytes: u64 = entries.iter().map(|e| e.bytes).sum();
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
    fn dead_letter(
        &self,
        queue: &Queue,
        entries: &[Entry],
        status: u16,
        error: &str,
    ) -> Result<()> {
        let dead: Vec<Dead<'_>> = entries
            .iter()
            .map(|e| Dead {
                seq: e.seq,
                status,
                error,
                value: &e.value,
            })
            .collect();
        self.remove(queue, entries, &dead, self.sync)
    }

    /// Calls `f(seq, dead letter)` for the dead letters of a backend with
    /// seq >= `from`, oldest first, until `f` returns false: a reader that
    /// pages through them (export) holds one page at a time.
    pub fn dead_letters_from(
        &self,
        queue: &Queue,
        from: u64,
        mut f: impl FnMut(u64, DeadLetter<'_>) -> bool,
    ) -> Result<()> {
        self.for_each_until(
            DEAD_PREFIX,
            queue.id,
            from,
            |seq, v| match record::decode_dead_letter(v) {
                Ok(d) => f(seq, d),
                Err(e) => {
                    let error = e.to_string();
                    f(
                        seq,
                        DeadLetter {
                            status: 0,
                            error: &error,
                            at_unix_ms: 0,
                            value: &[],
                        },
                    )
                }
            },
        )
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

    /// Moves up to `limit` of `queue`'s dead letters, oldest first, back
    /// into its queue (each in one atomic batch: queued again under a new
    /// seq, or still a dead letter). Returns the records and points moved;
    /// stops early with [`Error::Full`] when the queue has no room.
    pub fn replay_dead_letters(&self, queue: &Queue, limit: usize) -> Result<(u64, u64)> {
        let _dead = queue.stats.dead_lock.lock();
        let mut letters: Vec<(u64, Vec<u8>)> = Vec::new();
        self.for_each_until(DEAD_PREFIX, queue.id, 0, |seq, v| {
            letters.push((seq, v.to_vec()));
            letters.len() < limit
        })?;
        let (mut records, mut points) = (0u64, 0u64);
        for (seq, v) in &letters {
            let Ok(dead) = record::decode_dead_letter(v) else {
                continue;
            };
            let Ok(r) = record::decode_record(dead.value) else {
                continue; // unreadable: stays for export and purge
            };
            let value = Encoded {
                queue,
                value: dead.value,
                points: r.points(),
                bytes: r.accounted_len(dead.value.len()),
            };
            let key = record::key(DEAD_PREFIX, queue.id, *seq);
            self.append_removing(&[value], None, Some(&key))?;
            let st = &queue.stats;
            st.dead_records.fetch_sub(1, Ordering::AcqRel);
            st.dead_points.fetch_sub(r.points(), Ordering::AcqRel);
            st.dead_bytes.fetch_sub(v.len() as u64, Ordering::AcqRel);
            records += 1;
            points += r.points();
        }
        Ok((records, points))
    }

    /// Deletes every dead letter of `queue`; returns the records and
    /// points deleted.
    pub fn purge_dead_letters(&self, queue: &Queue) -> Result<(u64, u64)> {
        let _dead = queue.stats.dead_lock.lock();
        let (mut records, mut points, mut bytes) = (0u64, 0u64, 0u64);
        self.for_each(DEAD_PREFIX, queue.id, |_, v| {
            records += 1;
            bytes += v.len() as u64;
            points += dead_letter_points(v);
        })?;
        let mut batch = WriteBatch::default();
        batch.delete_range(
            record::key(DEAD_PREFIX, queue.id, 0),
            upper_bound(DEAD_PREFIX, queue.id),
        );
        self.write(&*self.db()?, batch, self.sync, Step::Upkeep)?;
        let st = &queue.stats;
        st.dead_records.fetch_sub(records, Ordering::AcqRel);
        st.dead_points.fetch_sub(points, Ordering::AcqRel);
        st.dead_bytes.fetch_sub(bytes, Ordering::AcqRel);
        Ok((records, points))
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
