//! Copying one measurement from a source backend into destination queues.
//!
//! The source is read with a chunked `SELECT *` (bounded memory whatever the
//! measurement's size); each chunk is turned back into line protocol that
//! keeps every tag and every field's type, and appended to the write-ahead
//! queue of each destination backend, so a destination that goes down
//! mid-copy loses nothing. When a destination queue is full the copy waits.
//! What a copy appended is noted in an [`Appended`], so the job can wait
//! until its destinations have delivered it.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;
use parking_lot::Mutex;

use crate::backend::catalog::{self, Columns};
use crate::backend::client::{self, Client};
use crate::circle::BackendHandle;
use crate::cluster::Cluster;
use crate::influxql::quote_ident;
use crate::wal;

use super::convert;

/// Points appended to the destination queues per write batch.
const APPEND_POINTS: usize = 10_000;
/// Pause before retrying an append to a full destination queue.
const FULL_QUEUE_PAUSE: Duration = Duration::from_millis(500);
/// Lines converted between two checks of a bucket's lines against the copy's memory part:
/// the most the lines overshoot it is this many.
const CHECK_POINTS: usize = 1_000;

/// Why a copy failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    /// The source backend failed.
    #[error("source: {0}")]
    Source(#[from] client::Error),
    /// The source sent something that is not InfluxDB's chunked JSON.
    #[error("source answer: {0}")]
    Decode(String),
    /// The destination queue failed (not just full).
    #[error("destination queue: {0}")]
    Queue(#[from] wal::Error),
    /// One chunk of the answer, or one bucket's lines, would take more memory than the
    /// copy's part of the budget.
    #[error(
        "{what} would take more than {limit} bytes, this copy's part of the memory budget: \
         lower migrate_batch (rows per chunk) or min_bucket, or raise memory_budget_mb"
    )]
    TooLarge {
        /// What grew.
        what: &'static str,
        /// The copy's part of the budget.
        limit: usize,
    },
}

/// What to copy.
#[derive(Debug, Clone)]
pub(crate) struct Job {
    /// Database.
    pub db: String,
    /// Retention policy.
    pub rp: String,
    /// Measurement.
    pub measurement: String,
    /// Only points at or after this unix time (seconds); 0 = all.
    pub since: i64,
    /// Rows per chunk requested from the source.
    pub batch: usize,
    /// Only points in `[start, end)` (ns since the epoch); overrides `since`.
    pub range: Option<(i64, i64)>,
    /// Paces appends to at most this many points per second (anti-entropy's rate limit).
    pub pace: Option<Arc<Pace>>,
    /// Most bytes this copy's buffers hold ([`crate::memory::Budget::migration_bytes`]
    /// shared by the copies running at once).
    pub buffer_bytes: usize,
}

/// A points-per-second limit shared by the copies of one job: each append waits until the
/// points appended so far fit the rate since the job started.
#[derive(Debug)]
pub(crate) struct Pace {
    rate: u64,
    started: std::time::Instant,
    points: std::sync::atomic::AtomicU64,
}

impl Pace {
    /// A pace of `rate` points per second (`0`: none).
    pub(crate) fn new(rate: u64) -> Option<Arc<Pace>> {
        (rate > 0).then(|| {
            Arc::new(Pace {
                rate,
                started: std::time::Instant::now(),
                points: Default::default(),
            })
        })
    }

    /// Counts `points` appended and sleeps until they are within the rate.
    pub(crate) async fn wait(&self, points: u64) {
        let total = self
            .points
            .fetch_add(points, std::sync::atomic::Ordering::AcqRel)
            + points;
        let due = Duration::from_secs_f64(total as f64 / self.rate as f64);
        if let Some(ahead) = due.checked_sub(self.started.elapsed()) {
            actix_rt::time::sleep(ahead).await;
        }
    }
}

/// The last record a job appended to each destination queue, by backend name.
#[derive(Debug, Default)]
pub(crate) struct Appended(Mutex<HashMap<String, (wal::Queue, u64)>>);

impl Appended {
    /// Notes that `queues` each received a record at sequence number `seq`.
    pub(super) fn note(&self, queues: &[&wal::Queue], seq: u64) {
        let mut last = self.0.lock();
        for queue in queues {
            let entry = last
                .entry(queue.name().to_string())
                .or_insert_with(|| ((*queue).clone(), seq));
            entry.1 = entry.1.max(seq);
        }
    }

    /// Destination backends that still hold some of what was appended to them.
    pub(crate) fn undelivered(&self) -> Vec<String> {
        self.0
            .lock()
            .iter()
            .filter(|(_, (queue, seq))| !queue.has_removed(*seq))
            .map(|(name, _)| name.clone())
            .collect()
    }
}

/// Copies one measurement of one retention policy from `source` into the
/// queues of `destinations`, noting each append in `appended`; returns the
/// number of points copied.
pub(crate) async fn copy_measurement(
    cluster: &Cluster,
    source: &Client,
    destinations: &[Arc<BackendHandle>],
    job: &Job,
    appended: &Appended,
) -> Result<u64, Error> {
    let Some(mut rows) = Rows::open(source, job).await? else {
        return Ok(0);
    };
    let mut lines = String::new();
    let mut in_lines = 0usize;
    let mut copied = 0u64;
    // The converted lines take at most the other half of the copy's part.
    let lines_limit = job.buffer_bytes / 2;
    loop {
        let (n, more) = rows.next_lines(&mut lines, CHECK_POINTS).await?;
        in_lines += n;
        if in_lines >= APPEND_POINTS || lines.len() >= lines_limit || !more {
            copied += flush(
                cluster,
                destinations,
                job,
                appended,
                &mut lines,
                &mut in_lines,
            )
            .await?;
        }
        if !more {
            return Ok(copied);
        }
    }
}

/// Reads every point `job` selects from `source` as line protocol, at most `limit_bytes` of it
/// (an error past that): the bucket comparison of anti-entropy holds one small time bucket of
/// each circle in memory. Returns the lines and their count.
pub(crate) async fn read_lines(
    source: &Client,
    job: &Job,
    limit_bytes: usize,
) -> Result<(String, usize), Error> {
    let mut lines = String::new();
    let Some(mut rows) = Rows::open(source, job).await? else {
        return Ok((lines, 0));
    };
    let mut count = 0;
    loop {
        let (n, more) = rows.next_lines(&mut lines, CHECK_POINTS).await?;
        count += n;
        if lines.len() > limit_bytes {
            return Err(Error::TooLarge {
                what: "one bucket's lines",
                limit: limit_bytes,
            });
        }
        if !more {
            return Ok((lines, count));
        }
    }
}

/// A chunked `SELECT *` answer being turned into line protocol.
struct Rows {
    response: awc::ClientResponse,
    schema: Columns,
    measurement: String,
    /// Most bytes `pending` may hold: the job's part of the budget.
    limit: usize,
    pending: Vec<u8>,
    /// Bytes of `pending` known to hold no newline: each byte is scanned once
    /// however many network reads a chunk line spans.
    scanned: usize,
    done: bool,
}

impl Rows {
    /// Sends the `SELECT *` of `job`; `None` when the measurement has no fields there.
    async fn open(source: &Client, job: &Job) -> Result<Option<Rows>, Error> {
        let from = format!("{}.{}", quote_ident(&job.rp), quote_ident(&job.measurement));
        let schema = catalog::columns(source, &job.db, &job.rp, &job.measurement).await?;
        if schema.fields.is_empty() {
            return Ok(None);
        }
        let mut q = format!("SELECT * FROM {from}");
        match job.range {
            Some((start, end)) => {
                let _ = write!(q, " WHERE time >= {start} AND time < {end}");
            }
            None if job.since > 0 => {
                let _ = write!(q, " WHERE time >= {}s", job.since);
            }
            None => {}
        }
        let batch = chunk_rows(job, &schema).to_string();
        let params = vec![
            ("db".to_string(), job.db.clone()),
            ("q".to_string(), q),
            ("epoch".to_string(), "ns".to_string()),
            ("chunked".to_string(), "true".to_string()),
            ("chunk_size".to_string(), batch),
        ];
        let response = source
            .query_stream(awc::http::Method::POST, &params, &[])
            .await?;
        Ok(Some(Rows {
            response,
            schema,
            measurement: job.measurement.clone(),
            limit: job.buffer_bytes / 2,
            pending: Vec::new(),
            scanned: 0,
            done: false,
        }))
    }

    /// Appends converted lines to `out` until at least `points` were added or the answer
    /// ended; returns the count added and whether more may follow.
    async fn next_lines(
        &mut self,
        out: &mut String,
        points: usize,
    ) -> Result<(usize, bool), Error> {
        let mut added = 0usize;
        loop {
            let mut start = 0usize;
            let mut exhausted = false;
            while added < points {
                let Some(at) = memchr::memchr(b'\n', &self.pending[self.scanned..]) else {
                    exhausted = true;
                    break;
                };
                let end = self.scanned + at;
                added += convert_chunk(
                    &self.pending[start..end],
                    &self.measurement,
                    &self.schema,
                    out,
                )?;
                start = end + 1;
                self.scanned = start;
            }
            self.pending.drain(..start);
            self.scanned = if exhausted { self.pending.len() } else { 0 };
            if !exhausted {
                return Ok((added, true));
            }
            if self.done {
                return Ok((added, false));
            }
            match self.response.next().await {
                Some(chunk) => {
                    let chunk = chunk.map_err(|e| Error::Decode(e.to_string()))?;
                    // Checked before the buffer grows: it never holds more than its part.
                    if self.pending.len() + chunk.len() > self.limit {
                        return Err(Error::TooLarge {
                            what: "one chunk of the source's answer",
                            limit: self.limit,
                        });
                    }
                    self.pending.extend_from_slice(&chunk);
                }
                None => {
                    self.done = true;
                    if !self.pending.is_empty() {
                        added +=
                            convert_chunk(&self.pending, &self.measurement, &self.schema, out)?;
                        self.pending.clear();
                        self.scanned = 0;
                    }
                }
            }
        }
    }
}

/// Rows per chunk asked of the source: `migrate_batch`, fewer when a chunk of such rows
/// would not fit half the copy's part of the budget. A row's size in InfluxDB's JSON is
/// estimated from the measurement's columns, strings generously.
fn chunk_rows(job: &Job, schema: &Columns) -> usize {
    const TIME: usize = 24;
    const TAG: usize = 40;
    const NUMBER: usize = 28;
    const STRING: usize = 256;
    let fields: usize = schema
        .fields
        .values()
        .map(|kind| if kind == "string" { STRING } else { NUMBER })
        .sum();
    let row = TIME + TAG * schema.tags.len() + fields;
    let fit = job.buffer_bytes / 2 / row.max(1);
    job.batch.min(fit.max(100)).max(1)
}

/// Converts one chunk line of the answer.
fn convert_chunk(
    chunk: &[u8],
    measurement: &str,
    schema: &Columns,
    out: &mut String,
) -> Result<usize, Error> {
    convert::convert_chunk(chunk, measurement, schema, out)
        .map_err(|e| Error::Decode(e.to_string()))
}

/// Appends the converted lines to every destination queue (one atomic
/// append), waiting while a queue is full.
pub(crate) async fn flush(
    cluster: &Cluster,
    destinations: &[Arc<BackendHandle>],
    job: &Job,
    appended: &Appended,
    lines: &mut String,
    count: &mut usize,
) -> Result<u64, Error> {
    if *count == 0 {
        return Ok(0);
    }
    let points = u32::try_from(*count).unwrap_or(u32::MAX);
    loop {
        let queues: Vec<&wal::Queue> = destinations.iter().map(|d| &d.backend.queue).collect();
        match cluster
            .wal()
            .append_lines(&queues, &job.db, &job.rp, points, lines.as_bytes())
        {
            Ok(seq) => {
                appended.note(&queues, seq);
                break;
            }
            Err(wal::Error::Full { .. }) => {
                for d in destinations {
                    d.notify();
                }
                actix_rt::time::sleep(FULL_QUEUE_PAUSE).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
    for d in destinations {
        d.notify();
    }
    let n = *count as u64;
    lines.clear();
    *count = 0;
    if let Some(pace) = &job.pace {
        pace.wait(n).await;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(batch: usize, buffer_bytes: usize) -> Job {
        Job {
            db: "d".into(),
            rp: "r".into(),
            measurement: "m".into(),
            since: 0,
            batch,
            range: None,
            pace: None,
            buffer_bytes,
        }
    }

    fn columns(tags: usize, numbers: usize, strings: usize) -> Columns {
        let mut c = Columns {
            tags: (0..tags).map(|i| format!("t{i}")).collect(),
            ..Columns::default()
        };
        for i in 0..numbers {
            c.fields.insert(format!("n{i}"), "float".into());
        }
        for i in 0..strings {
            c.fields.insert(format!("s{i}"), "string".into());
        }
        c
    }

    #[test]
    fn chunks_shrink_to_fit_half_the_copys_part_of_the_budget() {
        // Narrow rows: migrate_batch as configured.
        assert_eq!(
            chunk_rows(&job(25_000, 12 << 20), &columns(2, 2, 0)),
            25_000
        );
        // Telegraf's cpu (3 tags, 10 floats): 424 bytes a row, 6 MiB hold 14,838 rows.
        assert_eq!(
            chunk_rows(&job(25_000, 12 << 20), &columns(3, 10, 0)),
            14_838
        );
        // Strings are counted generously; never fewer than 100 rows.
        assert_eq!(chunk_rows(&job(25_000, 1 << 20), &columns(1, 0, 50)), 100);
        assert_eq!(chunk_rows(&job(0, 12 << 20), &columns(1, 1, 0)), 1);
    }
}
