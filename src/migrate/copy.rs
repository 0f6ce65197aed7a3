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
/// Largest chunk line accepted from the source.
const MAX_CHUNK_BYTES: usize = 256 << 20;

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
    let mut copied = 0u64;
    loop {
        let (mut in_lines, more) = rows.next_lines(&mut lines, APPEND_POINTS).await?;
        copied += flush(
            cluster,
            destinations,
            job,
            appended,
            &mut lines,
            &mut in_lines,
        )
        .await?;
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
        let (n, more) = rows.next_lines(&mut lines, APPEND_POINTS).await?;
        count += n;
        if lines.len() > limit_bytes {
            return Err(Error::Decode(format!(
                "more than {limit_bytes} bytes in one bucket"
            )));
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
        let batch = job.batch.max(1).to_string();
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
            if self.pending.len() > MAX_CHUNK_BYTES {
                return Err(Error::Decode("chunk too large".into()));
            }
            match self.response.next().await {
                Some(chunk) => {
                    let chunk = chunk.map_err(|e| Error::Decode(e.to_string()))?;
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
