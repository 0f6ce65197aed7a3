//! Appending to the write-ahead queue: one method per kind of work, each
//! of which alone decides how it is stored and what it is charged against
//! each target queue's byte bound.
//!
//! - [`Wal::append_write`]: the lines of one `/write` request, each target
//!   queue receiving its [`LineSpans`] of them (spans of one [`WriteLines`]).
//!   Stored as one record per queue naming its spans of the lines, which
//!   are stored once, or, when one queue takes every line, as that queue's
//!   own record built in place in front of the lines.
//! - [`Wal::append_statement`]: an InfluxQL statement that must reach one
//!   backend in order with its writes.
//! - [`Wal::append_lines`]: the same lines for every target queue, each its
//!   own copy (a migration's copied data).
//!
//! # Why
//! The router, the query path and the migration used to build records
//! themselves and work out the bytes each one counts for: the record format
//! and the size accounting leaked into routing, and a wrong count there
//! would have drifted the queue's counters. Callers now hand over plain
//! line bytes and who receives which of them.

use std::sync::atomic::Ordering;
use std::time::Instant;

use rocksdb::WriteBatch;

use crate::record::{self, Record, QUEUE_PREFIX};
use crate::shared::SharedRefs;
use crate::storage::Step;
use crate::{Append, Encoded, Error, Queue, Result, Wal};

/// The normalised lines of one write request to `db` and `rp`, as the
/// router appends them; the queue stores them as they lie.
///
/// They are laid out so that they can be stored without a
/// copy either as the shared value of the append (`WriteLines::shared_value`)
/// or, when one record takes them all, as that record's [`Record::Points`]
/// value (`WriteLines::points_value`): they are appended after room left
/// for the longest header, which is written right in front of them. For a
/// 5,000-line request this saves a copy and a fresh allocation, whose page
/// faults cost more than the copy on the VMs we measured.
#[derive(Debug)]
pub struct WriteLines<'a> {
    bytes: Vec<u8>,
    db: &'a str,
    rp: &'a str,
}

/// Longest bincode varint of a `u32` and of a `u64`/`usize`.
const VARINT_U32_MAX: usize = 5;
const VARINT_U64_MAX: usize = 9;

/// Bytes reserved in front of the lines: the longest header a record of
/// `db` and `rp` can have (version, variant, db, rp, points, lines length).
fn header_room(db: &str, rp: &str) -> usize {
    1 + VARINT_U32_MAX
        + VARINT_U64_MAX
        + db.len()
        + VARINT_U64_MAX
        + rp.len()
        + VARINT_U32_MAX
        + VARINT_U64_MAX
}

impl<'a> WriteLines<'a> {
    /// Lines of a write to `db` and `rp` in `buf` (its contents are
    /// discarded, its capacity kept).
    pub fn reusing(mut buf: Vec<u8>, db: &'a str, rp: &'a str) -> WriteLines<'a> {
        buf.clear();
        buf.resize(header_room(db, rp), 0);
        WriteLines { bytes: buf, db, rp }
    }

    fn room(&self) -> usize {
        header_room(self.db, self.rp)
    }

    /// The buffer to append `\n`-terminated lines to. Offsets into the
    /// lines are `buffer().len() - start()` style: see [`WriteLines::len`].
    pub fn buffer(&mut self) -> &mut Vec<u8> {
        &mut self.bytes
    }

    /// Bytes of lines so far; a line appended now starts at this offset.
    pub fn len(&self) -> usize {
        self.bytes.len() - self.room()
    }

    /// True when no line was appended.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Keeps only the first `len` bytes of lines (drops a line that failed
    /// half way).
    pub fn truncate(&mut self, len: usize) {
        self.bytes.truncate(self.room() + len);
    }

    /// The value stored under [`record::shared_key`]: the version byte, then
    /// the lines (what [`record::shared_lines`] reads back).
    fn shared_value(&mut self) -> &[u8] {
        let room = self.room();
        let start = room - record::SHARED_VALUE_HEADER.len();
        self.bytes[start..room].copy_from_slice(&record::SHARED_VALUE_HEADER);
        &self.bytes[start..]
    }

    /// The [`Record::Points`] value of all the lines, `points` of them:
    /// byte for byte what [`record::encode_record`] makes of it.
    fn points_value(&mut self, points: u32) -> &[u8] {
        let room = self.room();
        let lines = (self.bytes.len() - room) as u64;
        let mut header = Vec::with_capacity(room);
        record::encode_points_header(self.db, self.rp, points, lines, &mut header);
        let Some(start) = room.checked_sub(header.len()) else {
            // Unreachable: the room is computed from the varint maxima.
            // Stay correct (one copy) rather than panic.
            self.bytes.splice(..room, header);
            return &self.bytes;
        };
        self.bytes[start..room].copy_from_slice(&header);
        &self.bytes[start..]
    }

    /// Takes the buffer out, for reuse; nothing may be read or appended
    /// afterwards. (In place, so that a holder's `Drop` needs no stand-in.)
    pub fn take_buffer(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.bytes)
    }
}

/// The lines of one write that one queue receives: byte spans of the
/// write's [`WriteLines`], in order, adjacent spans merged.
#[derive(Debug, Default)]
pub struct LineSpans {
    spans: Vec<(u64, u64)>,
    points: u32,
    bytes: u64,
}

impl LineSpans {
    /// An empty share with room for `spans` spans (bodies interleave
    /// measurements, so a share rarely has fewer spans than lines).
    pub fn with_capacity(spans: usize) -> LineSpans {
        LineSpans {
            spans: Vec::with_capacity(spans),
            ..LineSpans::default()
        }
    }

    /// Adds the line at `start..start + len` of the write's lines (offsets
    /// as [`WriteLines::len`] counts them).
    pub fn push(&mut self, start: usize, len: usize) {
        let (start, len) = (start as u64, len as u64);
        match self.spans.last_mut() {
            Some((s, l)) if *s + *l == start => *l += len,
            _ => self.spans.push((start, len)),
        }
        self.points = self.points.saturating_add(1);
        self.bytes += len;
    }

    /// Lines in the share.
    pub fn points(&self) -> u32 {
        self.points
    }

    /// True when the share holds no line.
    pub fn is_empty(&self) -> bool {
        self.points == 0
    }
}

impl Wal {
    /// Appends the lines of one write: each `(queue, share)` receives its
    /// share of `lines`, all in one atomic batch (every queue or none), or
    /// [`super::Error::Full`] when a queue has no room. Empty shares are
    /// skipped. Returns the append's sequence number, 0 when no share held a
    /// line (nothing was appended).
    ///
    /// Lines that all go to one queue (one circle of one backend, or one
    /// measurement) are stored as that queue's record, built in place in
    /// front of the lines; otherwise the lines are stored once and each
    /// queue gets a small record naming its spans (see the module doc of
    /// `wal`, *Shared lines*).
    pub fn append_write(
        &self,
        lines: &mut WriteLines<'_>,
        shares: &[(&Queue, &LineSpans)],
    ) -> Result<u64> {
        let mut receivers = shares.iter().filter(|(_, s)| !s.is_empty());
        let sharers = receivers.clone().count();
        let (first, second) = (receivers.next(), receivers.next());
        let Some(&(queue, share)) = first else {
            return Ok(0);
        };
        if second.is_none() && share.bytes == lines.len() as u64 {
            let points = share.points;
            let value = lines.points_value(points);
            return self.append_encoded(
                &[Encoded {
                    queue,
                    value,
                    points: u64::from(points),
                    bytes: value.len() as u64,
                }],
                None,
            );
        }
        let (db, rp) = (lines.db, lines.rp);
        let mut encoded = Vec::with_capacity(sharers);
        let mut spans = Vec::new();
        for &(queue, share) in shares.iter().filter(|(_, s)| !s.is_empty()) {
            spans.clear();
            record::encode_spans(&share.spans, &mut spans);
            let r = Record::Shared {
                db,
                rp,
                points: share.points,
                lines: share.bytes,
                sharers: sharers as u32,
                spans: &spans,
            };
            let value = record::encode_record(&r);
            let bytes = r.accounted_len(value.len());
            encoded.push((queue, value, u64::from(share.points), bytes));
        }
        let values: Vec<Encoded<'_>> = encoded
            .iter()
            .map(|(queue, value, points, bytes)| Encoded {
                queue,
                value,
                points: *points,
                bytes: *bytes,
            })
            .collect();
        self.append_encoded(&values, Some(lines.shared_value()))
    }

    /// Appends an InfluxQL statement for `queue`'s backend, to run against
    /// `db` in order with the writes queued around it. Returns its sequence
    /// number.
    pub fn append_statement(&self, queue: &Queue, db: &str, query: &str) -> Result<u64> {
        self.append(&[Append {
            queue,
            record: Record::Statement { db, query },
        }])
    }

    /// Appends `lines` (`points` `\n`-terminated lines of `db` and `rp`,
    /// nanosecond timestamps) to every queue of `queues`, each its own copy,
    /// in one atomic batch. Returns the append's sequence number.
    pub fn append_lines(
        &self,
        queues: &[&Queue],
        db: &str,
        rp: &str,
        points: u32,
        lines: &[u8],
    ) -> Result<u64> {
        let appends: Vec<Append<'_>> = queues
            .iter()
            .map(|queue| Append {
                queue,
                record: Record::Points {
                    db,
                    rp,
                    points,
                    lines,
                },
            })
            .collect();
        self.append(&appends)
    }
}

impl Wal {
    /// Appends one record per target atomically. Returns only after the
    /// batch is in RocksDB's log (and fsynced when `sync` is on).
    pub(crate) fn append(&self, appends: &[Append<'_>]) -> Result<u64> {
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
    pub(crate) fn append_encoded(
        &self,
        values: &[Encoded<'_>],
        shared: Option<&[u8]>,
    ) -> Result<u64> {
        self.append_removing(values, shared, None)
    }

    /// [`Wal::append_encoded`] that also deletes key `remove` in the same
    /// atomic batch (a dead letter being queued again).
    pub(crate) fn append_removing(
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
                st.appended_points.fetch_add(v.points, Ordering::Relaxed);
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
    pub(crate) fn visible(&self) -> u64 {
        let s = self.seq.lock();
        s.in_flight
            .first()
            .map_or(s.next - 1, |first| first.saturating_sub(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use record::{encode_record, shared_lines};

    #[test]
    fn write_lines_make_the_derived_points_encoding_and_the_shared_value() {
        let line = b"cpu,host=a value=1 1\n";
        for (db, rp, lines) in [
            ("db", "", 0usize),
            ("db", "", 1),
            ("telegraf", "autogen", 11),
            ("d", "rp", 12),
            ("d", "", 3_000),
            ("d", "", 400_000),
        ] {
            let mut body = Vec::new();
            let mut w = WriteLines::reusing(b"stale contents".to_vec(), db, rp);
            for _ in 0..lines {
                w.buffer().extend_from_slice(line);
                body.extend_from_slice(line);
            }
            assert_eq!(w.len(), body.len());
            let expected = encode_record(&Record::Points {
                db,
                rp,
                points: lines as u32,
                lines: &body,
            });
            assert_eq!(shared_lines(w.shared_value()).unwrap(), &body[..]);
            assert_eq!(
                w.points_value(lines as u32),
                &expected[..],
                "{db}/{rp} x{lines}"
            );
        }
        let mut w = WriteLines::reusing(Vec::new(), "d", "");
        w.buffer().extend_from_slice(b"a f=1 1\n");
        w.buffer().extend_from_slice(b"bad");
        w.truncate(8);
        assert_eq!(shared_lines(w.shared_value()).unwrap(), b"a f=1 1\n");
    }
}
