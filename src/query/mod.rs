//! The query path: runs InfluxQL against the circles so that the client
//! gets what one InfluxDB holding all the data would answer.
//!
//! Every statement is classified (`influxql`) and planned:
//! - reads with a FROM clause go to the owner backends of one circle; when
//!   the measurements (or a regex's matches) live on several backends, the
//!   statement is split per backend (FROM rewritten) and the answers merged;
//! - SHOW statements without FROM fan out to every backend of one circle
//!   and are merged (`merge`), LIMIT/OFFSET applied after the merge;
//! - DDL and deletes reach every backend that must see them: run at once
//!   where the backend is healthy with an empty queue, otherwise queued in
//!   its write-ahead queue so they apply in order with its pending writes.
//!
//! Read routing (`route`): circles whose involved backends are up to date
//! (`freshness`: active, not draining a backlog, not write-only, nothing
//! queued longer than `flush_time` plus a slack) share the reads, least
//! busy first; then circles that are merely active (their data may lag;
//! logged at most once per interval and counted). A circle that fails
//! (transport error, 5xx, or no answer within `query_timeout`) is skipped
//! for the next; a hung backend costs the reads already sent to it one
//! `query_timeout`, and later reads avoid it once its health check went
//! unanswered. A single-statement read served by one backend is streamed
//! through untouched (CSV, chunked and epoch handled by InfluxDB itself).

pub(crate) mod freshness;
pub mod merge;
mod route;
mod statements;

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use serde_json::{json, Value};
use tracing::{info, warn};

use crate::answer;
use crate::backend::client::{self, Client};
use crate::circle::{BackendHandle, Circle};
use crate::cluster::Cluster;
use crate::influxql::{self, Source, Statement};
use crate::{schema, wal};
use merge::Merge;
use route::{circle_order, served, InFlight};
use statements::{route, Run};

/// Why a query failed as a whole.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    /// The query text cannot be run (syntax, forbidden or unsupported).
    #[error(transparent)]
    Statement(#[from] influxql::Error),
    /// No database given where one is needed.
    #[error("database not found")]
    DatabaseNotFound,
    /// A database outside `db_list`.
    #[error("database forbidden: {0}")]
    DatabaseForbidden(String),
    /// No backend able to answer.
    #[error("backends unavailable: {0}")]
    Unavailable(String),
    /// Every backend tried was reached but none answered within `query_timeout`.
    #[error("backends unavailable: {0}")]
    TimedOut(String),
    /// The backend answered with an error status (relayed).
    #[error("{message}")]
    Backend {
        /// Backend HTTP status.
        status: u16,
        /// Backend error message.
        message: String,
    },
    /// Queuing a statement for a down backend failed.
    #[error("cannot queue statement: {0}")]
    Queue(#[from] crate::wal::Error),
}

/// A `/query` request, already authenticated.
#[derive(Debug, Clone, Default)]
pub(crate) struct Request {
    /// The `q` parameter.
    pub(crate) q: String,
    /// The `db` parameter (may be empty).
    pub(crate) db: String,
    /// The `rp` parameter (may be empty).
    pub(crate) rp: String,
    /// The `epoch` parameter (may be empty).
    pub(crate) epoch: String,
    /// Every parameter except `u` and `p`, for streaming relays.
    pub(crate) params: Vec<(String, String)>,
    /// Databases the client may use (`db_list`; empty = all).
    pub(crate) db_list: Vec<String>,
}

/// What to send back.
#[derive(Debug)]
pub(crate) enum Answer {
    /// Relay this backend response as it is (single statement, one backend).
    Relay(Relay),
    /// A complete answer `{"results":[...]}` built by the proxy.
    Json(Value),
}

/// A backend response to stream to the client.
pub(crate) struct Relay {
    /// The response, body unread.
    pub(crate) response: awc::ClientResponse,
    /// Longest silence allowed in its body (the backend's `query_timeout`).
    timeout: Duration,
}

impl Relay {
    /// The body to stream: it ends in an error, cutting the client's answer short, once the
    /// backend has sent nothing for `query_timeout` (a backend that hangs mid-answer).
    pub(crate) fn into_body(self) -> client::Quiet<awc::ClientResponse> {
        client::Quiet::new(self.response, self.timeout)
    }
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("status", &self.response.status())
            .finish()
    }
}

/// Headers forwarded on a relayed read (content negotiation).
pub(crate) type Headers = Vec<(
    awc::http::header::HeaderName,
    awc::http::header::HeaderValue,
)>;

/// One classified statement with its resolved database.
struct Planned<'q> {
    text: &'q str,
    stmt: Statement,
    db: String,
}

/// Runs a query.
pub(crate) async fn execute(
    cluster: &Cluster,
    req: &Request,
    headers: &Headers,
) -> Result<Answer, Error> {
    let texts = influxql::split_statements(&req.q)?;
    let mut planned = Vec::with_capacity(texts.len());
    for text in texts {
        let stmt = influxql::classify(text)?;
        let db = resolve_db(&stmt, req)?;
        planned.push(Planned { text, stmt, db });
    }
    if let [only] = planned.as_slice() {
        if let Some(answer) = try_relay(cluster, req, only, headers).await? {
            return Ok(Answer::Relay(answer));
        }
    }
    let mut results = Vec::with_capacity(planned.len());
    for (id, p) in planned.iter().enumerate() {
        let result = match run(cluster, req, p).await {
            Ok(r) => merge::with_statement_id(r, id),
            Err(e @ (Error::Unavailable(_) | Error::TimedOut(_) | Error::Queue(_)))
                if planned.len() == 1 =>
            {
                return Err(e)
            }
            Err(e) => json!({ "statement_id": id, "error": e.to_string() }),
        };
        results.push(result);
    }
    Ok(Answer::Json(json!({ "results": results })))
}

/// The database a statement runs against, checked against `db_list`.
fn resolve_db(stmt: &Statement, req: &Request) -> Result<String, Error> {
    let allowed = |db: &str| req.db_list.is_empty() || req.db_list.iter().any(|d| d == db);
    for db in stmt.databases() {
        if !allowed(db) {
            return Err(Error::DatabaseForbidden(db.to_string()));
        }
    }
    let db = stmt.database.clone().unwrap_or_else(|| req.db.clone());
    let needs_db = route(stmt.kind).needs_db;
    if needs_db && db.is_empty() {
        return Err(Error::DatabaseNotFound);
    }
    if needs_db && !allowed(&db) {
        return Err(Error::DatabaseForbidden(db));
    }
    Ok(db)
}

/// The one way the proxy reads from a backend (queries, DDL, `/health`): this worker
/// thread's pooled client for its target, bounded by `query_timeout`. The backend actor
/// keeps its own client for delivery only, so a slow read never waits behind a batch.
pub(crate) fn client_for(handle: &BackendHandle) -> Client {
    client::cached(&handle.backend.target, handle.settings().query_timeout)
}

/// Literal measurement sources of a statement (None when a regex needs
/// resolving first).
fn literal_measurements(stmt: &Statement) -> Option<Vec<&str>> {
    let mut out = Vec::new();
    for s in stmt.leaf_sources() {
        match s {
            Source::Measurement { name, .. } => out.push(name.as_str()),
            _ => return None,
        }
    }
    Some(out)
}

fn db_of<'a>(source: &'a Source, default: &'a str) -> &'a str {
    source.database().unwrap_or(default)
}

/// Owner indices in `circle` of the given measurements of `db`.
fn owners(cluster: &Cluster, circle: &Circle, db: &str, measurements: &[&str]) -> Vec<usize> {
    let mut key = String::new();
    let mut out: Vec<usize> = measurements
        .iter()
        .map(|m| cluster.placement.owner_index(circle, db, m, &mut key))
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

fn is_read_with_sources(stmt: &Statement) -> bool {
    !stmt.sources.is_empty() && route(stmt.kind).run == Run::Sources
}

/// A single read whose literal measurements all live on one backend is
/// streamed through from that backend, with failover across circles.
async fn try_relay(
    cluster: &Cluster,
    req: &Request,
    p: &Planned<'_>,
    headers: &Headers,
) -> Result<Option<Relay>, Error> {
    if !is_read_with_sources(&p.stmt) {
        return Ok(None);
    }
    let Some(names) = literal_measurements(&p.stmt) else {
        return Ok(None);
    };
    let sources = p.stmt.leaf_sources();
    let per_circle = |c: &Circle| -> Vec<usize> {
        let mut all = Vec::new();
        for (s, name) in sources.iter().zip(&names) {
            all.extend(owners(cluster, c, db_of(s, &p.db), &[name]));
        }
        all.sort_unstable();
        all.dedup();
        all
    };
    if cluster.circles.iter().any(|c| per_circle(c).len() != 1) {
        return Ok(None);
    }
    let mut failed = Vec::new();
    for circle in circle_order(cluster, per_circle) {
        let Some(&i) = per_circle(circle).first() else {
            continue;
        };
        let Some(handle) = circle.backends.get(i) else {
            continue;
        };
        let method = awc::http::Method::POST;
        let client = client_for(handle);
        // Counted until the backend answers; the body then streams on.
        let reads = InFlight::start([handle.as_ref()]);
        let answer = client.query_stream(method, &req.params, headers).await;
        drop(reads);
        match answer {
            Ok(response) => {
                served(circle);
                return Ok(Some(Relay {
                    response,
                    timeout: client.timeout(),
                }));
            }
            Err(e) if e.is_retryable() => {
                warn!(backend = %handle.backend.info.name, error = %e, "Query failed; trying another circle.");
                failed.push(e);
            }
            Err(client::Error::Status { status, message }) => {
                return Err(Error::Backend { status, message })
            }
            Err(e) => failed.push(e),
        }
    }
    Err(unavailable(failed))
}

/// Sends a read to the owner of `(db, measurement)` in the best circle, failing over to the
/// next circle on a transport error or timeout only: an HTTP answer, error statuses included,
/// is the backend's verdict on the request and is relayed as it is (Flux, Prometheus
/// remote read). `send` makes the request on the owner's pooled read client.
pub(crate) async fn relay_to_owner<F, Fut>(
    cluster: &Cluster,
    db: &str,
    measurement: &str,
    send: F,
) -> Result<Relay, Error>
where
    F: Fn(Client) -> Fut,
    Fut: std::future::Future<Output = Result<awc::ClientResponse, client::Error>>,
{
    let owner = |c: &Circle| owners(cluster, c, db, &[measurement]);
    let mut failed = Vec::new();
    for circle in circle_order(cluster, owner) {
        let Some(handle) = owner(circle).first().and_then(|&i| circle.backends.get(i)) else {
            continue;
        };
        let client = client_for(handle);
        let timeout = client.timeout();
        let reads = InFlight::start([handle.as_ref()]);
        let answer = send(client).await;
        drop(reads);
        match answer {
            Ok(response) => {
                served(circle);
                return Ok(Relay { response, timeout });
            }
            Err(e) => {
                warn!(backend = %handle.backend.info.name, db, measurement, error = %e, "Read failed; trying another circle.");
                failed.push(e);
            }
        }
    }
    Err(unavailable(failed))
}

/// The error when no circle could answer, from what each one tried gave: [`Error::TimedOut`]
/// (504) when every backend tried was reached but silent past `query_timeout`, else
/// [`Error::Unavailable`] (503), with the last failure as the reason.
fn unavailable(failed: Vec<client::Error>) -> Error {
    let timed_out = !failed.is_empty()
        && failed
            .iter()
            .all(|e| matches!(e, client::Error::Timeout(_)));
    let reason = match failed.last() {
        Some(e) => e.to_string(),
        None => "no active backend holds this data".to_string(),
    };
    if timed_out {
        Error::TimedOut(reason)
    } else {
        Error::Unavailable(reason)
    }
}

/// Runs one statement and returns its result object.
async fn run(cluster: &Cluster, req: &Request, p: &Planned<'_>) -> Result<Value, Error> {
    let row = route(p.stmt.kind);
    match row.run {
        Run::Everywhere => {
            if let Some(refusal) = influxql::creation_refusal(&p.stmt) {
                // influxd's answer, given before any backend sees or queues the statement.
                return Err(Error::Statement(refusal.into()));
            }
            let all: Vec<&Arc<BackendHandle>> = cluster.backends().collect();
            let (answer, queued) = apply_everywhere(cluster, &all, p).await;
            record_change(cluster, p, &answer, queued);
            answer
        }
        Run::Delete => {
            let targets = delete_targets(cluster, p);
            let (answer, queued) = apply_everywhere(cluster, &targets, p).await;
            record_change(cluster, p, &answer, queued);
            answer
        }
        Run::Sources if !p.stmt.sources.is_empty() => read_with_sources(cluster, req, p).await,
        Run::Sources | Run::FanOut => fan_out(cluster, req, p, row.merge_for(p.stmt.exact)).await,
    }
}

/// Backends that must see a delete: the owners of its literal measurements
/// in every circle, or every backend (regex or no FROM).
fn delete_targets<'c>(cluster: &'c Cluster, p: &Planned<'_>) -> Vec<&'c Arc<BackendHandle>> {
    let names = match literal_measurements(&p.stmt) {
        Some(n) if !n.is_empty() => n,
        _ => return cluster.backends().collect(),
    };
    let mut out = Vec::new();
    for circle in &cluster.circles {
        for i in owners(cluster, circle, &p.db, &names) {
            if let Some(h) = circle.backends.get(i) {
                out.push(h);
            }
        }
    }
    out
}

/// Tells the write path's checks about a schema statement the proxy accepted: writes that
/// follow it are checked as influxd will check them once it has run everywhere, also where
/// it still waits in a queue (`queued`).
fn record_change(
    cluster: &Cluster,
    p: &Planned<'_>,
    answer: &Result<Value, Error>,
    queued: Vec<(wal::Queue, u64)>,
) {
    let Some(change) = schema::Change::of(&p.stmt) else {
        return;
    };
    let change = match answer {
        Ok(result) if result.get("error").is_none() => change,
        // Refused or failed somewhere: what it changed is for the backends to say.
        _ => schema::Change::Unknown,
    };
    cluster.schema.accepted(&p.db, change, queued);
}

/// Where a DDL or delete went on one backend.
enum Applied {
    /// Ran at once: the backend's result.
    Ran(Value),
    /// Appended to the backend's queue at this sequence number.
    Queued(wal::Queue, u64),
}

/// Runs a DDL or delete on every target: at once where the backend is healthy with an empty
/// queue, else queued behind its pending writes. The answer, and the queues it waits in.
async fn apply_everywhere(
    cluster: &Cluster,
    targets: &[&Arc<BackendHandle>],
    p: &Planned<'_>,
) -> (Result<Value, Error>, Vec<(wal::Queue, u64)>) {
    let runs = targets.iter().map(|h| async move {
        let b = &h.backend;
        let undelivered = b.queue.stats.records();
        let active = b.status.is_active();
        if active && undelivered == 0 {
            let r = client_for(h)
                .query_json(&[("db", &p.db), ("q", p.text)])
                .await;
            b.status.statements_applied.fetch_add(1, Ordering::AcqRel);
            match r {
                Ok(body) => return Ok(Applied::Ran(first_result(&body))),
                Err(e) if !e.is_retryable() => {
                    return Ok(Applied::Ran(json!({ "error": e.to_string() })))
                }
                Err(e) => {
                    warn!(backend = %b.info.name, db = %p.db, error = %e, "Statement failed; queued to run once the backend answers.");
                }
            }
        }
        let seq = cluster.queue_statement(h, &p.db, p.text)?;
        if !active {
            info!(backend = %b.info.name, db = %p.db, "Backend unavailable; statement queued in order with its writes.");
        } else if undelivered > 0 {
            info!(backend = %b.info.name, db = %p.db, undelivered_records = undelivered, "Statement queued behind the backend's undelivered writes, to run in order with them.");
        }
        Ok(Applied::Queued(b.queue.clone(), seq))
    });
    let outcomes = join_all(runs).await;
    let mut first_ok = None;
    let mut queued = Vec::new();
    let mut error = None;
    for o in outcomes {
        match o {
            Ok(Applied::Ran(r)) if r.get("error").is_some() => {
                error.get_or_insert(Ok(r));
            }
            Ok(Applied::Ran(r)) => {
                first_ok.get_or_insert(r);
            }
            Ok(Applied::Queued(queue, seq)) => queued.push((queue, seq)),
            Err(e) => {
                error.get_or_insert(Err(e));
            }
        }
    }
    let answer = error.unwrap_or_else(|| Ok(first_ok.unwrap_or_else(|| json!({}))));
    (answer, queued)
}

fn first_result(body: &Value) -> Value {
    match merge::results_of(body) {
        Ok(results) => results.first().cloned().unwrap_or_else(|| json!({})),
        Err(e) => json!({ "error": e }),
    }
}

/// Sends one statement to one backend and returns its first result.
async fn ask(h: &BackendHandle, req: &Request, db: &str, q: &str) -> Result<Value, client::Error> {
    let mut params = vec![("db", db), ("q", q)];
    if !req.epoch.is_empty() {
        params.push(("epoch", req.epoch.as_str()));
    }
    if !req.rp.is_empty() {
        params.push(("rp", req.rp.as_str()));
    }
    match client_for(h).query_json(&params).await {
        Ok(body) => Ok(first_result(&body)),
        Err(client::Error::Status { status, message }) if status < 500 => {
            Ok(json!({ "error": message, "status": status }))
        }
        Err(e) => Err(e),
    }
}

/// Runs `q` on several backends of one circle at once; the results, or
/// the first transport-level failure.
async fn ask_all(
    handles: &[&Arc<BackendHandle>],
    req: &Request,
    db: &str,
    queries: &[String],
) -> Result<Vec<Value>, client::Error> {
    let _reads = InFlight::start(handles.iter().map(|h| h.as_ref()));
    let answers = join_all(handles.iter().zip(queries).map(|(h, q)| ask(h, req, db, q))).await;
    answers.into_iter().collect()
}

/// SHOW without FROM (and similar): every backend of one circle, merged.
async fn fan_out(
    cluster: &Cluster,
    req: &Request,
    p: &Planned<'_>,
    how: Merge,
) -> Result<Value, Error> {
    let paged = route(p.stmt.kind).paged;
    let text = if paged {
        influxql::without_limit_offset(p.text)
    } else {
        p.text.to_string()
    };
    let (limit, offset) = if paged {
        (p.stmt.limit, p.stmt.offset)
    } else {
        (None, None)
    };
    let mut failed = Vec::new();
    for circle in circle_order(cluster, |c| (0..c.backends.len()).collect()) {
        let handles: Vec<&Arc<BackendHandle>> = circle.backends.iter().collect();
        let queries = vec![text.clone(); handles.len()];
        match ask_all(&handles, req, &p.db, &queries).await {
            Ok(results) => {
                served(circle);
                return Ok(merge::merge(&results, how, 0, limit, offset));
            }
            Err(e) => {
                warn!(circle = %circle.name, error = %e, "Fan-out failed; trying another circle.");
                failed.push(e);
            }
        }
    }
    // No complete circle: the union of every active backend still answers
    // (each measurement lives in every circle), rather than failing.
    let active: Vec<&Arc<BackendHandle>> = cluster
        .backends()
        .filter(|h| h.backend.status.is_active())
        .collect();
    if active.is_empty() {
        return Err(unavailable(failed));
    }
    warn!(
        backends = active.len(),
        "No complete circle; merging the answers of every active backend."
    );
    let queries = vec![text; active.len()];
    let answers = join_all(
        active
            .iter()
            .zip(&queries)
            .map(|(h, q)| ask(h, req, &p.db, q)),
    )
    .await;
    let mut results = Vec::with_capacity(answers.len());
    for answer in answers {
        match answer {
            Ok(r) => results.push(r),
            Err(e) => failed.push(e),
        }
    }
    if results.is_empty() {
        return Err(unavailable(failed));
    }
    Ok(merge::merge(&results, how, 0, limit, offset))
}

/// Measurements matching a regex source, from every backend of a circle.
async fn resolve_regex(
    circle: &Circle,
    req: &Request,
    db: &str,
    pattern: &str,
) -> Result<Vec<String>, client::Error> {
    let q = format!(
        "SHOW MEASUREMENTS WITH MEASUREMENT =~ {}",
        influxql::quote_regex(pattern)
    );
    let handles: Vec<&Arc<BackendHandle>> = circle.backends.iter().collect();
    let queries = vec![q; handles.len()];
    let results = ask_all(&handles, req, db, &queries).await?;
    let merged = merge::merge(&results, Merge::Values, 0, None, None);
    Ok(answer::series(&merged)
        .first()
        .into_iter()
        .flat_map(answer::rows)
        .filter_map(|r| r.get(0).and_then(Value::as_str).map(str::to_string))
        .collect())
}

/// A measurement with where it is written: (db, rp, name).
type QualifiedMeasurement = (String, Option<String>, String);

/// Reads with FROM on one circle: resolve regexes, group by owner, run
/// (splitting the FROM clause when several backends are involved), merge.
async fn read_with_sources(
    cluster: &Cluster,
    req: &Request,
    p: &Planned<'_>,
) -> Result<Value, Error> {
    let mut failed = Vec::new();
    for circle in circle_order(cluster, |c| (0..c.backends.len()).collect()) {
        match read_on_circle(cluster, circle, req, p).await {
            Ok(v) => {
                served(circle);
                return Ok(v);
            }
            Err(ReadError::Backend(e)) => {
                warn!(circle = %circle.name, error = %e, "Read failed; trying another circle.");
                failed.push(e);
            }
            Err(ReadError::Statement(e)) => return Err(e),
        }
    }
    Err(unavailable(failed))
}

enum ReadError {
    Backend(client::Error),
    Statement(Error),
}

async fn read_on_circle(
    cluster: &Cluster,
    circle: &Circle,
    req: &Request,
    p: &Planned<'_>,
) -> Result<Value, ReadError> {
    let mut targets: Vec<QualifiedMeasurement> = Vec::new();
    for s in p.stmt.leaf_sources() {
        match s {
            Source::Measurement {
                retention_policy,
                name,
                ..
            } => targets.push((
                db_of(s, &p.db).to_string(),
                retention_policy.clone(),
                name.clone(),
            )),
            Source::Regex {
                retention_policy,
                pattern,
                ..
            } => {
                let db = db_of(s, &p.db).to_string();
                let names = resolve_regex(circle, req, &db, pattern)
                    .await
                    .map_err(ReadError::Backend)?;
                targets.extend(
                    names
                        .into_iter()
                        .map(|n| (db.clone(), retention_policy.clone(), n)),
                );
            }
            Source::Subquery(_) => {}
        }
    }
    let how = route(p.stmt.kind).merge_for(p.stmt.exact);
    if targets.is_empty() {
        // A regex matching nothing: InfluxDB answers with no series.
        return Ok(json!({}));
    }
    let mut groups: BTreeMap<usize, Vec<QualifiedMeasurement>> = BTreeMap::new();
    let mut key = String::new();
    for t in targets {
        groups
            .entry(cluster.placement.owner_index(circle, &t.0, &t.2, &mut key))
            .or_default()
            .push(t);
    }
    let has_regex = p
        .stmt
        .leaf_sources()
        .iter()
        .any(|s| matches!(s, Source::Regex { .. }));
    let has_subquery = p
        .stmt
        .sources
        .iter()
        .any(|s| matches!(s, Source::Subquery(_)));
    let split = groups.len() > 1;
    if split {
        refuse_split(p, has_subquery).map_err(ReadError::Statement)?;
    }
    // One backend gets the statement as written: nothing to merge, and a
    // plan (EXPLAIN) is only InfluxDB's own for the text it was given.
    // Otherwise each gets its own measurements, regexes resolved (a backend
    // may still hold copies of measurements it does not own).
    let as_written = !split && (!has_regex || has_subquery || p.stmt.explain.is_some());
    // A SHOW list split over backends is paged after the merge.
    let paged = split && route(p.stmt.kind).paged;
    let mut handles = Vec::new();
    let mut queries = Vec::new();
    for (i, group) in &groups {
        let Some(h) = circle.backends.get(*i) else {
            continue;
        };
        handles.push(h);
        queries.push(match (as_written, paged) {
            (true, _) => p.text.to_string(),
            (false, false) => rewrite_sources(p, group),
            (false, true) => influxql::without_limit_offset(&rewrite_sources(p, group)),
        });
    }
    let results = ask_all(&handles, req, &p.db, &queries)
        .await
        .map_err(ReadError::Backend)?;
    let (limit, offset) = if paged {
        (p.stmt.limit, p.stmt.offset)
    } else {
        (None, None)
    };
    Ok(merge::merge(&results, how, 0, limit, offset))
}

/// Statements that cannot be split over backends and merged.
fn refuse_split(p: &Planned<'_>, has_subquery: bool) -> Result<(), Error> {
    let reason = if p.stmt.explain.is_some() {
        "EXPLAIN of a SELECT over measurements stored on different backends cannot run through influx-proxy: each backend plans only its own part; EXPLAIN each measurement separately"
    } else if has_subquery {
        "a subquery over measurements stored on different backends cannot run through influx-proxy; query each measurement separately"
    } else {
        return Ok(());
    };
    Err(Error::Statement(influxql::Error::Unsupported(
        reason.into(),
    )))
}

/// The statement with its FROM list replaced by `group`.
fn rewrite_sources(p: &Planned<'_>, group: &[QualifiedMeasurement]) -> String {
    let Some(span) = p.stmt.sources_span.clone() else {
        return p.text.to_string();
    };
    let list: Vec<String> = group
        .iter()
        .map(|(db, rp, name)| {
            let m = influxql::quote_ident(name);
            match rp {
                Some(rp) => format!(
                    "{}.{}.{}",
                    influxql::quote_ident(db),
                    influxql::quote_ident(rp),
                    m
                ),
                None => format!("{}..{}", influxql::quote_ident(db), m),
            }
        })
        .collect();
    let (Some(before), Some(after)) = (p.text.get(..span.start), p.text.get(span.end..)) else {
        return p.text.to_string();
    };
    format!("{before}{}{after}", list.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_answer_is_a_timeout_only_when_every_backend_tried_timed_out() {
        let timeout = || client::Error::Timeout(Duration::from_secs(2));
        let refused = || client::Error::Transport("connection refused".into());
        assert!(matches!(
            unavailable(vec![timeout(), timeout()]),
            Error::TimedOut(r) if r == "timeout after 2s"
        ));
        assert!(matches!(
            unavailable(vec![timeout(), refused()]),
            Error::Unavailable(_)
        ));
        assert!(matches!(
            unavailable(vec![refused(), timeout()]),
            Error::Unavailable(_)
        ));
        assert!(matches!(
            unavailable(Vec::new()),
            Error::Unavailable(r) if r == "no active backend holds this data"
        ));
    }
}
