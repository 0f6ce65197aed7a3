//! Delivering from the write-ahead queue: one [`Reader`] per backend reads
//! its queue in order and removes what was delivered ([`Reader::ack`]),
//! refused as a whole ([`Reader::dead_letter`]) or delivered but for some
//! refused lines ([`Reader::settle`]).
//!
//! # Why
//! The backend actor needs the work queued for it, not the records it is
//! stored as: [`Entry::work`] gives points or a statement, and a record
//! that cannot become either (undecodable, or its shared lines are gone)
//! is an error the actor dead-letters. The actor hands refused lines back
//! as lines ([`RefusedLines`]); how a dead letter is encoded stays here.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use rocksdb::{ReadOptions, WriteBatch};

use crate::record::{self, DecodeError, Record, DEAD_PREFIX, QUEUE_PREFIX, SHARED_PREFIX};
use crate::recover::{self, Deferred};
use crate::storage::{self, Step};
use crate::{not_yet_removed, resolve, upper_bound, Dead, DeadLetter, Entry, Queue, Result, Wal};

/// The work one queued record (or dead letter) stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Work<'a> {
    /// Line-protocol points, nanosecond precision, each line ending in
    /// `\n`, all for one database and retention policy.
    Points {
        /// Target database.
        db: &'a str,
        /// Target retention policy; empty means the database default.
        rp: &'a str,
        /// Number of lines in `lines`.
        points: u32,
        /// The lines themselves.
        lines: &'a [u8],
    },
    /// An InfluxQL statement to run against `db`.
    Statement {
        /// Database the statement runs against (`db` URL parameter).
        db: &'a str,
        /// The statement text.
        query: &'a str,
    },
}

impl<'a> Work<'a> {
    /// The work of a decoded queue value. A shared record is resolved when
    /// it is read; one still shared here had its lines missing.
    fn of(value: &'a [u8]) -> Result<Work<'a>, DecodeError> {
        match record::decode_record(value)? {
            Record::Points {
                db,
                rp,
                points,
                lines,
            } => Ok(Work::Points {
                db,
                rp,
                points,
                lines,
            }),
            Record::Statement { db, query } => Ok(Work::Statement { db, query }),
            Record::Shared { .. } => Err(DecodeError::SharedLinesMissing),
        }
    }
}

impl Entry {
    /// The work this entry stands for, borrowing from it; an error when
    /// the record cannot be delivered (it is then to be dead-lettered).
    pub fn work(&self) -> Result<Work<'_>, DecodeError> {
        Work::of(&self.value)
    }
}

impl DeadLetter<'_> {
    /// The work the refused record stood for.
    pub fn work(&self) -> Result<Work<'_>, DecodeError> {
        Work::of(self.value)
    }
}

/// Lines of one queued record that its backend refused on their own, to
/// be kept as a dead letter of that record (see [`Reader::settle`]).
#[derive(Debug, Clone, Copy)]
pub struct RefusedLines<'a> {
    /// Seq of the entry the lines came from (the dead letter's key).
    pub seq: u64,
    /// HTTP status of the refusal.
    pub status: u16,
    /// The backend's error message.
    pub error: &'a str,
    /// How many lines `lines` holds.
    pub points: u32,
    /// The refused lines, each ending in `\n`.
    pub lines: &'a [u8],
}

/// The delivery side of one backend's queue. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Reader {
    wal: Arc<Wal>,
    queue: Queue,
}

impl Wal {
    /// The reader of `queue`, for the backend that delivers it.
    pub fn reader(self: &Arc<Wal>, queue: Queue) -> Reader {
        Reader {
            wal: Arc::clone(self),
            queue,
        }
    }
}

impl Reader {
    /// The queue this reads.
    pub fn queue(&self) -> &Queue {
        &self.queue
    }

    /// Reads up to `max_points` points (at least one record) / `max_bytes`
    /// bytes of queued records with seq > `after`, oldest first.
    pub fn read(&self, after: u64, max_points: u64, max_bytes: u64) -> Result<Vec<Entry>> {
        self.wal.read(&self.queue, after, max_points, max_bytes)
    }

    /// Deletes delivered entries (a prefix of the queue, as [`Reader::read`]
    /// returned them).
    pub fn ack(&self, entries: &[Entry]) -> Result<()> {
        self.wal.ack(&self.queue, entries)
    }

    /// Moves entries (a prefix of the queue) to the dead-letter space as
    /// they are, in one atomic batch, recording why the backend refused
    /// them (`status` 0: the record itself is unreadable).
    pub fn dead_letter(&self, entries: &[Entry], status: u16, error: &str) -> Result<()> {
        self.wal.dead_letter(&self.queue, entries, status, error)
    }

    /// Removes `entries` (a prefix of the queue, of `db` and `rp`) and
    /// keeps `refused` as dead letters beside them, in one atomic batch: a
    /// refused batch whose good lines were delivered keeps only the lines
    /// the backend refused on their own. Each refusal's `seq` must be one
    /// of `entries`'.
    pub fn settle(
        &self,
        entries: &[Entry],
        db: &str,
        rp: &str,
        refused: &[RefusedLines<'_>],
    ) -> Result<()> {
        let values: Vec<Vec<u8>> = refused
            .iter()
            .map(|r| {
                record::encode_record(&Record::Points {
                    db,
                    rp,
                    points: r.points,
                    lines: r.lines,
                })
            })
            .collect();
        let dead: Vec<Dead<'_>> = refused
            .iter()
            .zip(&values)
            .map(|(r, value)| Dead {
                seq: r.seq,
                status: r.status,
                error: r.error,
                value,
            })
            .collect();
        self.wal.settle(&self.queue, entries, &dead)
    }
}

impl Wal {
    /// Reads up to `max_points` points (at least one record) / `max_bytes`
    /// bytes of queued records with seq > `after`, oldest first.
    pub(crate) fn read(
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
    pub(crate) fn ack(&self, queue: &Queue, entries: &[Entry]) -> Result<()> {
        self.remove(queue, entries, &[], false)
    }

    /// Removes `entries` (a prefix of the queue) and stores `dead` beside
    /// them in the dead-letter space, in one atomic batch: a refused batch
    /// whose good lines were delivered keeps only the lines the backend
    /// refused on their own. A dead letter's `seq` must be one of
    /// `entries`' (the record its lines came from).
    pub(crate) fn settle(&self, queue: &Queue, entries: &[Entry], dead: &[Dead<'_>]) -> Result<()> {
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
    pub(crate) fn remove(
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
    pub(crate) fn write_removal(
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

    pub(crate) fn subtract(&self, queue: &Queue, entries: &[Entry]) {
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
}
