//! `POST /write` (InfluxDB 1.x) and `POST /api/v2/write` (the InfluxDB 2 compatibility API
//! of InfluxDB 1.8 and the Go proxy 2.5): two ways to name the database, one write path.
//!
//! Answers 204 only after every point is in the write-ahead queue of each
//! target backend. Bad lines are named in a 400 `partial write` answer
//! while the good lines beside them are kept, as InfluxDB itself does.

use std::io::Read as _;

use actix_web::http::{header, Method};
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt as _;

use super::{auth, check_db_allowed, ApiError, AppState, Params};
use crate::buffers;
use crate::cluster::{Wakeups, WriteOutcome, WriteRequest};
use crate::line_protocol::Precision;

/// Where a write goes: what the endpoints name in their own ways.
pub(super) struct Destination {
    pub(super) db: String,
    pub(super) rp: String,
    pub(super) precision: Precision,
}

impl Destination {
    /// The 1.x way: `db` (required) and `rp` URL parameters.
    pub(super) fn of_params(
        params: &Params,
        precision: Precision,
    ) -> Result<Destination, ApiError> {
        Ok(Destination {
            db: params.required_db()?.to_string(),
            rp: params.str("rp").to_string(),
            precision,
        })
    }
}

/// What a write body holds. Every kind ends up as line protocol on the one write path, so
/// that all endpoints give the same verdicts and the same 204-once-queued guarantee.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BodyKind {
    /// Line protocol, gzip'd when `Content-Encoding: gzip` says so (`/write`, `/api/v2/write`).
    LineProtocol,
    /// A snappy protobuf `WriteRequest` from Prometheus (`/api/v1/prom/write`).
    PromWrite,
}

/// `POST /write?db=&rp=&precision=`.
pub async fn write(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let params = authorized_post(&req, &state)?;
    let precision = Precision::parse(params.str("precision")).map_err(ApiError::BadRequest)?;
    let destination = Destination::of_params(&params, precision)?;
    ingest(req, payload, state, destination, BodyKind::LineProtocol).await
}

/// `POST /api/v2/write?bucket=db[/rp]&precision=` (`org` ignored; credentials as
/// `Authorization: Token user:password` or any form `/write` takes).
pub async fn write_v2(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let params = authorized_post(&req, &state)?;
    let precision = v2_precision(params.str("precision"))?;
    let (db, rp) = bucket(params.str("bucket"))?;
    ingest(
        req,
        payload,
        state,
        Destination { db, rp, precision },
        BodyKind::LineProtocol,
    )
    .await
}

/// What the write endpoints, Flux and Prometheus remote read check first: a POST, with
/// valid credentials. Its parameters.
pub(super) fn authorized_post(req: &HttpRequest, state: &AppState) -> Result<Params, ApiError> {
    if req.method() != Method::POST {
        return Err(ApiError::MethodNotAllowed);
    }
    let params = Params::from_request(req)?;
    auth::check(req, &params, &state.config())?;
    Ok(params)
}

/// The v2 API's precisions: `ns`, `us`, `ms`, `s` (empty: ns), in InfluxDB 2's words.
fn v2_precision(s: &str) -> Result<Precision, ApiError> {
    match s {
        "" | "ns" => Ok(Precision::Nanoseconds),
        "us" => Ok(Precision::Microseconds),
        "ms" => Ok(Precision::Milliseconds),
        "s" => Ok(Precision::Seconds),
        _ => Err(ApiError::BadRequest(format!(
            "invalid precision {s:?} (use ns, us, ms or s)"
        ))),
    }
}

/// A v2 bucket as database and retention policy: `db` or `db/rp` (split at the first `/`),
/// refused with InfluxDB 1.8's own 404 texts.
fn bucket(bucket: &str) -> Result<(String, String), ApiError> {
    if bucket.is_empty() {
        return Err(ApiError::NotFound(
            "bucket name \"\" is missing a slash; not in \"database/retention-policy\" format"
                .into(),
        ));
    }
    let (db, rp) = bucket.split_once('/').unwrap_or((bucket, ""));
    if db.is_empty() {
        return Err(ApiError::NotFound(format!(
            "bucket name {bucket:?} is in db/rp form but has an empty database"
        )));
    }
    Ok((db.to_string(), rp.to_string()))
}

/// `Content-Encoding: gzip`.
pub(super) fn is_gzipped(req: &HttpRequest) -> bool {
    req.headers()
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("gzip"))
}

/// The write path all endpoints share once they know the destination.
pub(super) async fn ingest(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    Destination { db, rp, precision }: Destination,
    kind: BodyKind,
) -> Result<HttpResponse, ApiError> {
    let config = state.config();
    check_db_allowed(&config, &db)?;
    // A database or policy influxd cannot create is refused as influxd refuses it: nothing
    // queued, no statement naming it ever built.
    crate::influxql::check_write_target(&db, &rp)?;
    // Prometheus' snappy is its own; its Content-Encoding header says so and is not gzip.
    let gzipped = kind == BodyKind::LineProtocol && is_gzipped(&req);
    // gzip'd line protocol inflates about tenfold; so does a remote write (snappy about
    // threefold, then every sample repeats its series' labels as text).
    let inflation = if gzipped || kind == BodyKind::PromWrite {
        10
    } else {
        1
    };
    // Bodies being read and parsed stay within the memory budget's share: sent plus inflated,
    // estimated from the declared length (a chunked body counts once read).
    let declared = content_length(&req).min(config.max_body_bytes);
    let early = match declared {
        0 => None,
        n => Some(state.admission().admit(budgeted_bytes(n, inflation)).await),
    };
    let raw = read_body(payload, config.max_body_bytes, declared).await?;
    let admitted = match early {
        Some(a) => a,
        None => {
            state
                .admission()
                .admit(budgeted_bytes(raw.len(), inflation))
                .await
        }
    };
    let expected_bytes = raw.len().saturating_mul(inflation);
    let inline = expected_bytes <= INLINE_BODY_BYTES && !config.wal_sync;
    let cluster = state.cluster();
    let schema = cluster
        .schema
        .prepare(|| cluster.backends().cloned().collect(), &db, &rp)
        .await;
    let max_decompressed = config.max_decompressed_bytes;
    // Copied only when each write is logged (`write_tracing`).
    let traced = config.write_tracing.then(|| (db.clone(), rp.clone()));
    let work = move || -> Result<_, ApiError> {
        // A plain body is parsed where it was read: no copy.
        let inflated = match kind {
            BodyKind::PromWrite => Some(prom_lines(&raw, &db, max_decompressed)?),
            BodyKind::LineProtocol if gzipped => Some(gunzip(&raw, max_decompressed)?),
            BodyKind::LineProtocol => None,
        };
        let request = WriteRequest {
            db: &db,
            rp: &rp,
            precision,
            body: inflated.as_deref().unwrap_or(&raw),
            schema: &schema,
        };
        let outcome = cluster.write(&request).map_err(ApiError::from);
        buffers::give(raw);
        if let Some(inflated) = inflated {
            buffers::give(inflated);
        }
        drop(admitted);
        outcome
    };
    let mut outcome = if inline {
        work()?
    } else {
        web::block(work)
            .await
            .map_err(|e| ApiError::Internal(format!("write task failed: {e}")))??
    };
    wake_after_answer(std::mem::take(&mut outcome.wakeups));
    let verdict = verdict(&outcome);
    if let Some((db, rp)) = traced {
        tracing::info!(
            db = %db,
            rp = %rp,
            points = outcome.points,
            refused_lines = outcome.errors.len(),
            status = if verdict.is_some() { 400 } else { 204 },
            "Write."
        );
    }
    match verdict {
        None => Ok(HttpResponse::NoContent().finish()),
        Some(message) => Err(ApiError::LineProtocol(message)),
    }
}

/// What a body of `sent` bytes is charged against the in-flight share: the body as sent, the
/// inflated body when it was compressed (`inflation` times larger), the normalised lines and
/// the queue's write batch (each about the size of the plain lines).
fn budgeted_bytes(sent: usize, inflation: usize) -> u64 {
    let plain = sent.saturating_mul(inflation);
    let copies = if inflation > 1 { 3 } else { 2 };
    sent.saturating_add(plain.saturating_mul(copies)) as u64
}

/// influxd's answer to a write, from what happened to its lines (`httpd` `serveWrite`): the
/// parse errors alone when no line parsed; else a storage refusal (`partial write: <first
/// reason> dropped=<points it dropped>`), which hides the parse errors; else the parse errors as
/// a `partial write` with `dropped=0` (influxd counts only points it dropped, not lines it
/// could not parse); `None` for a 204.
fn verdict(outcome: &WriteOutcome) -> Option<String> {
    let parse_errors = || {
        outcome
            .errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    };
    let parsed =
        outcome.points as usize + outcome.dropped.dropped + outcome.dropped.beyond_retention;
    if parsed == 0 && !outcome.errors.is_empty() {
        return Some(parse_errors());
    }
    if let Some(message) = outcome.dropped.message() {
        return Some(message);
    }
    if !outcome.errors.is_empty() {
        return Some(format!("partial write: {} dropped=0", parse_errors()));
    }
    None
}

/// Wakes the backends [`WAKE_DELAY`] after this worker has answered (see
/// [`Wakeups`] for why): a task spawned here runs only after the
/// connection's task yields, by which time the dispatcher has written the
/// response.
fn wake_after_answer(wakeups: Wakeups) {
    if !wakeups.is_empty() {
        actix_web::rt::spawn(async move {
            actix_web::rt::time::sleep(WAKE_DELAY).await;
            drop(wakeups);
        });
    }
}

/// How long the wake-ups wait after the answer. Written is not received:
/// the client still needs a CPU to read the answer, and 4 delivery threads
/// woken at once (each reading and gzipping a batch for ~1 ms) took both
/// cores of the bench VM first. In `scripts/bench.sh` (c) 8 of the 15
/// slowest of 1,200 requests spent 1.5-2.9 ms between the handler's end and
/// the client's receipt, against 57 µs at p50. Delivery batches for
/// `flush_time` (default 1 s) anyway, so a millisecond costs it nothing.
const WAKE_DELAY: std::time::Duration = std::time::Duration::from_millis(1);

/// Bodies up to this size (after gzip) are parsed and queued on the HTTP
/// worker itself (~2.5 ms of CPU for 1 MB of line protocol): a hand-off to
/// the blocking pool for each request cost ~15% of write throughput in
/// `scripts/bench.sh` (a). Larger bodies, and every write when `wal_sync`
/// makes the append wait for an fsync, go to the pool so that one request
/// cannot stall the worker's other connections.
const INLINE_BODY_BYTES: usize = 1 << 20;

/// The request's `Content-Length`, 0 when absent or unreadable (a size hint only).
pub(super) fn content_length(req: &HttpRequest) -> usize {
    req.headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(0)
}

/// Longest time a client may take to send a write body: a client that
/// trickles bytes cannot hold a worker and its memory forever.
const BODY_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// Reads the body, refusing more than `limit` bytes or a client slower than
/// [`BODY_READ_TIMEOUT`]. `size_hint` (the `Content-Length`, 0 if unknown)
/// sizes the buffer once instead of growing it by doubling.
pub(super) async fn read_body(
    payload: web::Payload,
    limit: usize,
    size_hint: usize,
) -> Result<Vec<u8>, ApiError> {
    let read = read_body_unbounded_time(payload, limit, size_hint.min(limit));
    tokio::time::timeout(BODY_READ_TIMEOUT, read)
        .await
        .map_err(|_| ApiError::Timeout("timeout reading the request body".into()))?
}

async fn read_body_unbounded_time(
    mut payload: web::Payload,
    limit: usize,
    capacity: usize,
) -> Result<Vec<u8>, ApiError> {
    let mut body = buffers::take(capacity);
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| ApiError::BadRequest(format!("reading body: {e}")))?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::TooLarge(format!(
                "request body too large: limit is {limit} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Line protocol (ns timestamps) of a Prometheus remote write, at most `limit` bytes.
fn prom_lines(raw: &[u8], db: &str, limit: usize) -> Result<Vec<u8>, ApiError> {
    let request = crate::prom::decode_write(raw, limit).map_err(prom_error)?;
    let mut out = buffers::take(raw.len().saturating_mul(10).min(limit));
    let converted = crate::prom::to_line_protocol(&request, &mut out, limit).map_err(prom_error)?;
    if converted.non_finite > 0 {
        // NaN is how Prometheus marks a series stale: expected, not the client's fault.
        tracing::debug!(
            db,
            points = converted.points,
            skipped = converted.non_finite,
            "Remote-write NaN/Inf samples left out."
        );
    }
    if converted.unrepresentable > 0 {
        // Data lost on purpose (line protocol cannot carry it): worth an operator's look.
        tracing::warn!(
            db,
            points = converted.points,
            skipped = converted.unrepresentable,
            "Remote-write samples left out: a label line protocol cannot carry, or a timestamp beyond the nanosecond range."
        );
    }
    Ok(out)
}

/// A remote-storage body refused: too large (413) or not what it should be (400).
pub(super) fn prom_error(e: crate::prom::Error) -> ApiError {
    match e {
        crate::prom::Error::TooLarge { .. } => ApiError::TooLarge(e.to_string()),
        other => ApiError::BadRequest(other.to_string()),
    }
}

/// Decompresses a gzip body, refusing more than `limit` output bytes so a
/// small "gzip bomb" cannot exhaust memory.
pub fn gunzip(raw: &[u8], limit: usize) -> Result<Vec<u8>, ApiError> {
    let mut out = buffers::take(raw.len().saturating_mul(4).min(limit));
    let decoder = flate2::read::MultiGzDecoder::new(raw);
    let read = decoder
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| ApiError::BadRequest(format!("unable to decode gzip body: {e}")))?;
    if read > limit {
        return Err(ApiError::TooLarge(format!(
            "decompressed body too large: limit is {limit} bytes"
        )));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn gunzip_returns_the_body() {
        assert_eq!(gunzip(&gz(b"m f=1\n"), 100).unwrap(), b"m f=1\n");
    }

    #[test]
    fn gunzip_refuses_output_over_the_limit() {
        let bomb = gz(&vec![b'a'; 10_000]);
        assert!(matches!(gunzip(&bomb, 9_999), Err(ApiError::TooLarge(_))));
        assert!(gunzip(&bomb, 10_000).is_ok());
    }

    #[test]
    fn gunzip_reports_corrupt_and_truncated_input() {
        assert!(matches!(
            gunzip(b"not gzip", 100),
            Err(ApiError::BadRequest(_))
        ));
        let z = gz(b"m f=1\nm f=2\n");
        assert!(matches!(
            gunzip(&z[..z.len() - 6], 100),
            Err(ApiError::BadRequest(_))
        ));
    }
}
