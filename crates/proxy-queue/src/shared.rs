//! Shared lines: one `/write` appended to several queues stores its lines once and a small
//! `Record::Shared` per queue naming its spans. The index below knows which queues still hold
//! each append, so the lines are deleted with the last of them, and an append some queues keep
//! for long (a backend down) is unshared: rewritten as standalone records for those queues.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use rocksdb::WriteBatch;

use crate::record::{self, QUEUE_PREFIX};
use crate::storage::Step;
use crate::{Queue, Result, Wal};

/// The queues still holding a [`Record::Shared`] of one append.

#[derive(Debug)]
pub(crate) struct SharedRefs {
    /// Ids of the queues whose record of this append is still queued.
    pub(crate) queues: Vec<u32>,
    /// When the append was made (or recovered at open).
    pub(crate) since: Instant,
    /// Already a candidate for unsharing (in `partly_removed`).
    pub(crate) listed: bool,
}

/// Which appends' lines are shared by which queues.
#[derive(Debug, Default)]
pub(crate) struct SharedIndex {
    pub(crate) refs: BTreeMap<u64, SharedRefs>,
    /// Appends some of whose records were removed while others wait, in
    /// about seq order: the candidates for [`Wal::unshare_older_than`].
    pub(crate) partly_removed: VecDeque<u64>,
}

impl Wal {
    /// Writes `batch` (which removes from `queue` the records of seqs
    /// `removed_shared` among others, all stored shared), deleting in the
    /// same batch the shared lines whose last reference they were.
    pub(crate) fn write_releasing(
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
    pub(crate) fn shared_index(&self) -> parking_lot::MutexGuard<'_, SharedIndex> {
        let mut shared = self.shared.lock();
        shared.refs.extend(self.shared_new.lock().drain(..));
        shared
    }

    /// Number of appends whose lines are stored shared.
    pub fn shared_appends(&self) -> usize {
        self.shared_index().refs.len()
    }
}
