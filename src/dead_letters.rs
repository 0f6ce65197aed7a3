//! What an operator can do with the dead letters: lines a backend refused
//! on their own (4xx), kept beside its queue (see `wal`).
//!
//! # Why
//! A dead letter is an acknowledged point InfluxDB would not take (a field
//! type changed behind the proxy, a point outside the retention policy).
//! Counting them is not enough: an operator must see why, get the lines
//! out, and send them again once the cause is fixed. So a backend's dead
//! letters can be summarised, exported as line protocol in InfluxDB's
//! export format (`influx -import` reads it), replayed into the backend's
//! queue, and purged. They are bounded by `dead_letter_max_bytes` per
//! backend, the oldest dropped first (counted and logged by `wal`).

use std::fmt::Write as _;

use crate::wal::{self, DeadLetter, Queue, Wal, Work};

/// How many of the latest distinct refusal texts a summary keeps.
pub(crate) const LAST_ERRORS: usize = 5;
/// Dead letters read per page of an export.
pub(crate) const EXPORT_PAGE: usize = 256;

/// One backend's dead letters at a glance.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub(crate) struct Summary {
    /// Dead letters stored.
    pub records: u64,
    /// Points in them.
    pub points: u64,
    /// Bytes they take.
    pub bytes: u64,
    /// Time of the oldest refusal, Unix milliseconds (0: none).
    pub first_unix_ms: u64,
    /// Time of the newest refusal, Unix milliseconds (0: none).
    pub last_unix_ms: u64,
    /// Dead letters dropped since start to stay within the bound.
    pub dropped_records: u64,
    /// Points in them.
    pub dropped_points: u64,
    /// The latest distinct refusals, newest first.
    pub last_errors: Vec<RecentError>,
}

/// A refusal as the backend gave it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub(crate) struct RecentError {
    /// HTTP status (0: the record itself was unreadable).
    pub status: u16,
    /// The backend's error text.
    pub error: String,
    /// When, Unix milliseconds.
    pub at_unix_ms: u64,
}

/// Reads every dead letter of `queue` once to summarise them.
pub(crate) fn summary(wal: &Wal, queue: &Queue) -> wal::Result<Summary> {
    let st = queue.stats.snapshot();
    let mut s = Summary {
        records: st.dead_records,
        points: st.dead_points,
        bytes: st.dead_bytes,
        dropped_records: st.dead_dropped_records,
        dropped_points: st.dead_dropped_points,
        ..Summary::default()
    };
    let mut latest: Vec<RecentError> = Vec::new();
    wal.dead_letters_from(queue, 0, |_, d| {
        if s.first_unix_ms == 0 || (d.at_unix_ms != 0 && d.at_unix_ms < s.first_unix_ms) {
            s.first_unix_ms = d.at_unix_ms;
        }
        s.last_unix_ms = s.last_unix_ms.max(d.at_unix_ms);
        note_refusal(&mut latest, &d);
        true
    })?;
    latest.reverse();
    s.last_errors = latest;
    Ok(s)
}

/// Keeps the last [`LAST_ERRORS`] distinct refusals seen, oldest first.
fn note_refusal(latest: &mut Vec<RecentError>, d: &DeadLetter<'_>) {
    if let Some(i) = latest
        .iter()
        .position(|r| r.status == d.status && r.error == d.error)
    {
        latest.remove(i);
    }
    latest.push(RecentError {
        status: d.status,
        error: d.error.to_string(),
        at_unix_ms: d.at_unix_ms,
    });
    if latest.len() > LAST_ERRORS {
        latest.remove(0);
    }
}

/// Where an export stands between pages.
#[derive(Debug, Default)]
pub(crate) struct Export {
    /// Next seq to read.
    from: u64,
    /// (db, rp) of the last `CONTEXT` header written.
    context: Option<(String, String)>,
    /// Only this database, when set.
    db: Option<String>,
    done: bool,
}

impl Export {
    /// An export of every dead letter, or of those of database `db`.
    pub(crate) fn new(db: Option<String>) -> Export {
        Export {
            db,
            ..Export::default()
        }
    }

    /// The next page of the export as text, `None` after the last. The
    /// first page starts with InfluxDB's `# DML` header; a `CONTEXT`
    /// header precedes each change of database or retention policy.
    /// Statements and unreadable records are written as comments.
    pub(crate) fn next_page(&mut self, wal: &Wal, queue: &Queue) -> wal::Result<Option<String>> {
        if self.done {
            return Ok(None);
        }
        let mut out = String::new();
        if self.from == 0 {
            out.push_str("# DML\n");
        }
        let mut seen = 0;
        let mut next = None;
        wal.dead_letters_from(queue, self.from, |seq, d| {
            if seen == EXPORT_PAGE {
                next = Some(seq);
                return false;
            }
            seen += 1;
            self.write_letter(seq, &d, &mut out);
            true
        })?;
        match next {
            Some(seq) => self.from = seq,
            None => self.done = true,
        }
        Ok(Some(out))
    }

    fn write_letter(&mut self, seq: u64, d: &DeadLetter<'_>, out: &mut String) {
        match d.work() {
            Ok(Work::Points { db, rp, lines, .. }) => {
                if self.db.as_deref().is_some_and(|want| want != db) {
                    return;
                }
                let context = (db.to_string(), rp.to_string());
                if self.context.as_ref() != Some(&context) {
                    let _ = writeln!(out, "# CONTEXT-DATABASE: {db}");
                    let _ = writeln!(out, "# CONTEXT-RETENTION-POLICY: {rp}");
                    self.context = Some(context);
                }
                out.push_str(&String::from_utf8_lossy(lines));
            }
            Ok(Work::Statement { db, query }) => {
                if self.db.as_deref().is_none_or(|want| want == db) {
                    // One comment line, whatever the statement's line breaks.
                    let query = query.replace(['\n', '\r'], " ");
                    let _ = writeln!(out, "# dead letter {seq}: statement on {db:?}: {query}");
                }
            }
            Err(_) => {
                let error = d.error.replace('\n', " ");
                let _ = writeln!(out, "# dead letter {seq}: unreadable record ({error})");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn letter<'a>(status: u16, error: &'a str, at: u64) -> DeadLetter<'a> {
        DeadLetter {
            status,
            error,
            at_unix_ms: at,
            value: &[],
        }
    }

    #[test]
    fn the_last_distinct_refusals_are_kept_newest_last() {
        let mut latest = Vec::new();
        for i in 0..10u64 {
            let e = format!("e{}", i % 7);
            note_refusal(&mut latest, &letter(400, &e, i));
        }
        let got: Vec<(&str, u64)> = latest
            .iter()
            .map(|r| (r.error.as_str(), r.at_unix_ms))
            .collect();
        assert_eq!(got, [("e5", 5), ("e6", 6), ("e0", 7), ("e1", 8), ("e2", 9)]);
    }

    fn wal_with_dead_letters() -> (tempfile::TempDir, Arc<Wal>, Queue) {
        let dir = tempfile::tempdir().unwrap();
        let wal = Arc::new(Wal::open(dir.path(), crate::wal::Durability::Buffered).unwrap());
        let q = wal.queue("b", 1 << 20).unwrap();
        wal.append_lines(&[&q], "a", "", 1, b"m v=1 1\n").unwrap();
        wal.append_lines(&[&q], "a", "", 2, b"m v=2 2\nm v=3 3\n")
            .unwrap();
        wal.append_statement(&q, "a", "DROP MEASUREMENT m").unwrap();
        wal.append_lines(&[&q], "b", "week", 1, b"n v=4 4\n")
            .unwrap();
        let reader = wal.reader(q.clone());
        let read = reader.read(0, u64::MAX, u64::MAX).unwrap();
        reader.dead_letter(&read, 400, "refused").unwrap();
        (dir, wal, q)
    }

    fn export_all(wal: &Wal, q: &Queue, db: Option<&str>) -> String {
        let mut e = Export::new(db.map(str::to_string));
        let mut out = String::new();
        while let Some(page) = e.next_page(wal, q).unwrap() {
            out.push_str(&page);
        }
        out
    }

    #[test]
    fn an_export_is_influxdb_export_format_with_a_context_per_database() {
        let (_dir, wal, q) = wal_with_dead_letters();
        let out = export_all(&wal, &q, None);
        let expected = "# DML\n# CONTEXT-DATABASE: a\n# CONTEXT-RETENTION-POLICY: \nm v=1 1\nm v=2 2\nm v=3 3\n# dead letter 3: statement on \"a\": DROP MEASUREMENT m\n# CONTEXT-DATABASE: b\n# CONTEXT-RETENTION-POLICY: week\nn v=4 4\n";
        assert_eq!(out, expected);
        assert_eq!(
            export_all(&wal, &q, Some("b")),
            "# DML\n# CONTEXT-DATABASE: b\n# CONTEXT-RETENTION-POLICY: week\nn v=4 4\n"
        );
    }

    #[test]
    fn a_summary_counts_and_names_the_refusals() {
        let (_dir, wal, q) = wal_with_dead_letters();
        let s = summary(&wal, &q).unwrap();
        assert_eq!((s.records, s.points), (4, 4));
        assert!(s.bytes > 0 && s.first_unix_ms > 0 && s.last_unix_ms >= s.first_unix_ms);
        assert_eq!(s.last_errors.len(), 1);
        assert_eq!(
            (s.last_errors[0].status, s.last_errors[0].error.as_str()),
            (400, "refused")
        );
    }

    #[test]
    fn replay_queues_them_again_and_purge_deletes_them() {
        let (_dir, wal, q) = wal_with_dead_letters();
        assert_eq!(wal.replay_dead_letters(&q, 2).unwrap(), (2, 3));
        let again = wal.reader(q.clone()).read(0, u64::MAX, u64::MAX).unwrap();
        assert_eq!(again.len(), 2);
        assert!(matches!(
            again[1].work().unwrap(),
            Work::Points { points: 2, .. }
        ));
        let s = summary(&wal, &q).unwrap();
        assert_eq!((s.records, s.points), (2, 1));
        assert_eq!(wal.purge_dead_letters(&q).unwrap(), (2, 1));
        assert_eq!(summary(&wal, &q).unwrap().records, 0);
        assert_eq!(export_all(&wal, &q, None), "# DML\n");
        assert_eq!(q.stats.snapshot().dead_bytes, 0);
    }

    #[test]
    fn beyond_the_bound_the_oldest_dead_letters_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Arc::new(Wal::open(dir.path(), crate::wal::Durability::Buffered).unwrap());
        let q = wal.queue("b", 1 << 20).unwrap();
        let reader = wal.reader(q.clone());
        q.stats.set_bounds(1 << 20, 300);
        for i in 0..10 {
            let lines = format!("m,pad=xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx v={i} {i}\n");
            wal.append_lines(&[&q], "a", "", 1, lines.as_bytes())
                .unwrap();
            let read = reader.read(0, u64::MAX, u64::MAX).unwrap();
            reader.dead_letter(&read, 400, "refused").unwrap();
        }
        let s = summary(&wal, &q).unwrap();
        assert!(s.bytes <= 300, "{s:?}");
        assert!(s.records >= 2 && s.records < 10, "{s:?}");
        assert_eq!(s.dropped_records + s.records, 10);
        let out = export_all(&wal, &q, None);
        assert!(
            out.contains(" v=9 9\n") && !out.contains(" v=0 0\n"),
            "{out}"
        );
    }
}
