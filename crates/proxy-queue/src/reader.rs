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

use std::sync::Arc;

use super::record::{self, DecodeError, Record};
use super::{Dead, DeadLetter, Entry, Queue, Result, Wal};

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
