//! `POST /write` (InfluxDB 1.x) and `POST /api/v2/write` (the InfluxDB 2 compatibility API
//! of InfluxDB 1.8 and the Go proxy 2.5): two ways to name the database, one write path.
//!
//! Answers 204 only after every point is in the write-ahead queue of each
//! target backend. Bad lines are named in a 400 `partial write` answer
//! while the good lines beside them are kept, as InfluxDB itself does.

use actix_web::http::{header, Method};
use actix_web::{web, HttpRequest, HttpResponse};

use super::{auth, body, check_db_allowed, ApiError, AppState, Params};
use crate::cluster::{ClientWrite, Wakeups, WriteOutcome};
use crate::line_protocol::Precision;
use crate::memory::Charge;

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
pub(super) async fn write(
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
pub(super) async fn write_v2(
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
    let encoding = match kind {
        // Prometheus' snappy is its own; its Content-Encoding header says so and is not gzip.
        BodyKind::PromWrite => body::Encoding::PromWrite,
        BodyKind::LineProtocol if is_gzipped(&req) => body::Encoding::Gzip,
        BodyKind::LineProtocol => body::Encoding::Plain,
    };
    state.pace().wait(config.write_pace_max_wait).await;
    let shape = body::Shape {
        encoding,
        copies: body::WRITE_COPIES,
        max_body: config.max_body_bytes,
        max_decompressed: config.max_decompressed_bytes,
    };
    // Bodies being read and parsed stay within the memory budget's share: charged first
    // from the declared length, then as they grow (`body`).
    let (raw, charge) = body::receive(&req, payload, state.admission(), &shape).await?;
    let expected_bytes = match encoding {
        body::Encoding::Plain => raw.len(),
        _ => raw.len().saturating_mul(body::INFLATION as usize),
    };
    let inline = expected_bytes <= INLINE_BODY_BYTES && !config.wal_sync;
    let cluster = state.cluster();
    let schema = cluster
        .schema
        .prepare(|| cluster.backends().cloned().collect(), &db, &rp)
        .await;
    // Copied only when each write is logged (`write_tracing`).
    let traced = config.write_tracing.then(|| (db.clone(), rp.clone()));
    let decoder = body::Decoder::new(raw, shape, &db);
    let write = move |decoded: body::Decoded, charge: Charge| -> Result<_, ApiError> {
        let request = ClientWrite {
            db: &db,
            rp: &rp,
            precision,
            body: decoded.plain(),
            schema: &schema,
        };
        let outcome = cluster.write(&request).map_err(ApiError::from);
        decoded.recycle();
        drop(charge);
        outcome
    };
    let mut outcome = body::decode_then(decoder, charge, inline, write).await?;
    wake_after_answer(std::mem::take(&mut outcome.wakeups));
    let verdict = verdict(&outcome);
    if let Some((db, rp)) = traced {
        tracing::info!(
            db = %db,
            rp = %rp,
            points = outcome.points,
            ruled_out = outcome.ruled_out,
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
    // Lines a drop rule took were accepted, as influxd accepts what it stores.
    let parsed = outcome.points as usize
        + outcome.ruled_out as usize
        + outcome.dropped.dropped
        + outcome.dropped.beyond_retention;
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
