//! Dead letters: lines a backend refused on their own, kept beside its queue under
//! `dead_letter_max_bytes` (the oldest dropped beyond it), listed, exported, replayed into the
//! queue, or purged.

use std::sync::atomic::Ordering;

use rocksdb::WriteBatch;

use crate::record::{self, DeadLetter, DEAD_PREFIX};
use crate::storage::Step;
use crate::{dead_letter_points, recover, upper_bound, Dead, Encoded, Entry, Queue, Result, Wal};

impl Wal {
    /// Counts dead letters just stored; true when there were any.
    pub(crate) fn count_letters<'a>(
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

    /// Moves entries (a prefix of the queue) to the dead-letter space in one
    /// atomic batch, recording why the backend refused them.
    pub(crate) fn dead_letter(
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
}
