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
    let from = format!("{}.{}", quote_ident(&job.rp), quote_ident(&job.measurement));
    let schema = catalog::columns(source, &job.db, &job.rp, &job.measurement).await?;
    if schema.fields.is_empty() {
        return Ok(0);
    }
    let mut q = format!("SELECT * FROM {from}");
    if job.since > 0 {
        let _ = write!(q, " WHERE time >= {}s", job.since);
    }
    let batch = job.batch.max(1).to_string();
    let params = vec![
        ("db".to_string(), job.db.clone()),
        ("q".to_string(), q),
        ("epoch".to_string(), "ns".to_string()),
        ("chunked".to_string(), "true".to_string()),
        ("chunk_size".to_string(), batch),
    ];
    let mut response = source
        .query_stream(awc::http::Method::POST, &params, &[])
        .await?;
    let mut pending = Vec::new();
    // Bytes of `pending` known to hold no newline: each byte is scanned once
    // however many network reads a chunk line spans.
    let mut scanned = 0usize;
    let mut lines = String::new();
    let mut in_lines = 0usize;
    let mut copied = 0u64;
    while let Some(chunk) = response.next().await {
        let chunk = chunk.map_err(|e| Error::Decode(e.to_string()))?;
        pending.extend_from_slice(&chunk);
        let mut start = 0usize;
        while let Some(at) = memchr::memchr(b'\n', &pending[scanned..]) {
            let end = scanned + at;
            in_lines += convert_chunk(&pending[start..end], &job.measurement, &schema, &mut lines)?;
            start = end + 1;
            scanned = start;
            if in_lines >= APPEND_POINTS {
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
        }
        pending.drain(..start);
        scanned = pending.len();
        if pending.len() > MAX_CHUNK_BYTES {
            return Err(Error::Decode("chunk too large".into()));
        }
    }
    if !pending.is_empty() {
        in_lines += convert_chunk(&pending, &job.measurement, &schema, &mut lines)?;
    }
    copied += flush(
        cluster,
        destinations,
        job,
        appended,
        &mut lines,
        &mut in_lines,
    )
    .await?;
    Ok(copied)
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
async fn flush(
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
    Ok(n)
}
