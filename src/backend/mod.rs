//! One actor per InfluxDB backend: drains that backend's write-ahead queue.
//!
//! # Delivery
//! Records are read in queue order and grouped into batches of one
//! (db, rp) of at most `flush_size` x `write_concurrency` points. A batch is
//! sent when the queue holds `flush_size` points, or `flush_time` after data
//! first arrived, or at once while a backlog drains. A batch is split by
//! series into up to `write_concurrency` requests sent together (see
//! [`batch`] for why that keeps every series in order), and one batch is in
//! flight at a time.
//!
//! # Outcomes
//! Every request of a batch decides its outcome together:
//! - 2xx: the records are deleted from the queue.
//! - retryable failure (connect, timeout, 5xx, 401/403/408/429): the backend
//!   is marked inactive and the batch is retried with exponential backoff
//!   (capped at `rewrite_interval`); a successful health check retries at
//!   once. The whole batch is retried: points that did arrive are sent
//!   again, which InfluxDB stores as the same points.
//! - 404 `database not found`: the database is created on the backend and
//!   the batch retried (a fresh backend in a circle lacks databases).
//! - any other 4xx: InfluxDB refuses (some of) the data itself. The
//!   refused bodies are bisected ([`isolate`]) until the lines InfluxDB
//!   refuses on their own are found; everything else is delivered, only
//!   those lines move to the dead-letter space (counted and logged), and
//!   delivery goes on. A refused statement is dead-lettered as it is.
//!
//! # Storage faults
//! When the queue's storage fails (a full disk, an I/O error), the queue
//! keeps what was delivered as removed and deletes it once the storage
//! recovers (see `wal`), so an acknowledgement still succeeds and the actor
//! moves on: every circle keeps delivering. Reads or removals that fail
//! anyway are retried with backoff and logged at most once per
//! [`STORAGE_LOG_EVERY`] with how many times they failed.
//!
//! # Supervision
//! The actor keeps no state that is not in the queue: on restart it starts
//! again from the head of the queue. Circles restart actors that died
//! (see `circle`).

pub(crate) mod batch;
pub(crate) mod catalog;
pub(crate) mod client;
pub(crate) mod isolate;
pub(crate) mod msg;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use futures_util::future::join_all;
use tracing::{debug, error, info, warn};

use crate::metrics::Histogram;
use crate::rate_limit::RateLimit;
use crate::wal::{self, Entry, Wal, Work};
use batch::Body;
use bytes::Bytes;
use client::Client;

/// First retry delay after a failure; doubles up to `rewrite_interval`.
const INITIAL_BACKOFF: Duration = Duration::from_millis(250);

/// Longest silence about a queue operation that keeps failing.
const STORAGE_LOG_EVERY: Duration = Duration::from_secs(30);

/// Static description of a backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Info {
    /// Unique backend name (also its queue name).
    pub name: String,
    /// Base URL.
    pub url: String,
    /// Circle name, for logs.
    pub circle: String,
    /// Never preferred for reads.
    pub write_only: bool,
}

/// Delivery tuning, from the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Settings {
    /// Points per batch (per request when a backlog drains).
    pub flush_size: u64,
    /// Most requests of one batch sent at once (`write_concurrency`).
    pub concurrency: usize,
    /// gzip the bodies sent to the backend (`write_gzip`).
    pub gzip: bool,
    /// Longest wait before a partial batch is sent.
    pub flush_time: Duration,
    /// Health check period.
    pub check_interval: Duration,
    /// Longest retry delay.
    pub max_backoff: Duration,
    /// Timeout of each write to the backend (`write_timeout`).
    pub timeout: Duration,
    /// Longest a backend may take to start answering a read, and then stay silent in the
    /// middle of its answer (`query_timeout`): the query path fails over to the next circle
    /// after it.
    pub query_timeout: Duration,
}

impl Settings {
    /// How long a health check waits for `/ping`: within its interval, so a hung backend
    /// (connections accepted, nothing answered) counts as down by the next check and reads
    /// avoid it, and never longer than a write may take.
    pub(crate) fn ping_timeout(&self) -> Duration {
        self.check_interval.min(self.timeout)
    }
}

/// Live state of a backend, shared with the HTTP layer.
#[derive(Debug)]
pub(crate) struct Status {
    active: AtomicBool,
    draining: AtomicBool,
    notified: AtomicBool,
    /// Points delivered since start.
    pub delivered_points: AtomicU64,
    /// Statements (DDL, deletes) the backend ran since start, queued or direct: what it holds
    /// may have changed beyond new points (readers of `/health` cache until it moves).
    pub statements_applied: AtomicU64,
    /// Failed delivery attempts since start.
    pub failed_attempts: AtomicU64,
    /// Points in failed delivery attempts since start (a point retried
    /// twice counts twice).
    pub failed_points: AtomicU64,
    /// Active/inactive transitions since start.
    pub state_changes: AtomicU64,
    /// Duration of each successful write request to the backend.
    pub write_latency: Histogram,
    /// Duration of the latest successful write request, in microseconds: whether the backend
    /// itself is what delivery waits for (`crate::pace`).
    pub last_write_us: AtomicU64,
    /// Reads the query path has sent to this backend and not yet had an
    /// answer for (it prefers circles with fewer).
    pub reads_in_flight: AtomicU64,
}

impl Status {
    fn new() -> Status {
        Status {
            // Like the reference: active until a check says otherwise, so a
            // fresh proxy does not report every backend down.
            active: AtomicBool::new(true),
            draining: AtomicBool::new(false),
            notified: AtomicBool::new(false),
            delivered_points: AtomicU64::new(0),
            statements_applied: AtomicU64::new(0),
            failed_attempts: AtomicU64::new(0),
            failed_points: AtomicU64::new(0),
            state_changes: AtomicU64::new(0),
            write_latency: Histogram::latency(),
            last_write_us: AtomicU64::new(0),
            reads_in_flight: AtomicU64::new(0),
        }
    }

    /// Backend answered its last health check or delivery.
    pub(crate) fn is_active(&self) -> bool {
        self.active.load(Ordering::Acquire)
    }

    /// Backend is draining a backlog after a failure.
    pub(crate) fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }
}

/// Everything about one backend that outlives its actor.
#[derive(Debug)]
pub(crate) struct Backend {
    /// Static description.
    pub info: Info,
    /// Connection settings.
    pub target: Arc<client::Target>,
    /// Live state.
    pub status: Status,
    /// Its write-ahead queue.
    pub queue: wal::Queue,
}

impl Backend {
    /// Creates the shared part of a backend.
    pub(crate) fn new(info: Info, target: client::Target, queue: wal::Queue) -> Backend {
        Backend {
            info,
            target: Arc::new(target),
            status: Status::new(),
            queue,
        }
    }

    /// Whether a `Notify` should be sent: coalesces wake-ups so a burst of
    /// writes costs one mailbox message.
    pub(crate) fn take_notify_slot(&self) -> bool {
        !self.status.notified.swap(true, Ordering::AcqRel)
    }

    /// Clears a pending wake-up (a fresh actor looks at its queue anyway).
    pub(crate) fn reset_notify_slot(&self) {
        self.status.notified.store(false, Ordering::Release);
    }
}

/// How long a partial batch still waits before it is sent (`None`: send
/// now). `flush_time` counts from the oldest pending record's arrival
/// (`waited`), not from now: the tail of a drained backlog, or a record that
/// arrived while a batch was in flight, has waited long enough already (a
/// fresh `flush_time` there added up to a second to the time a backlog
/// takes to reach InfluxDB).
fn flush_delay(
    pending: u64,
    draining: bool,
    waited: Duration,
    settings: &Settings,
) -> Option<Duration> {
    if pending >= settings.flush_size || draining || waited >= settings.flush_time {
        return None;
    }
    Some(settings.flush_time - waited)
}

/// Where the delivery loop stands.
#[derive(Debug)]
enum State {
    /// Nothing scheduled.
    Idle,
    /// A partial batch waits for `flush_time`.
    Waiting(SpawnHandle),
    /// A request is in flight.
    Sending,
    /// Waiting before a retry.
    Backoff(SpawnHandle),
}

/// The actor draining one backend's queue.
pub(crate) struct BackendActor {
    backend: Arc<Backend>,
    /// Its queue's delivery side.
    reader: wal::Reader,
    settings: Settings,
    client: Option<Client>,
    state: State,
    backoff: Duration,
    /// Highest sequence number acknowledged, a lower bound for reads.
    cursor: u64,
    pinging: bool,
    /// Queue operations that failed, logged once in a while.
    storage_errors: RateLimit,
}

impl std::fmt::Debug for BackendActor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackendActor")
            .field("backend", &self.backend.info.name)
            .field("state", &self.state)
            .finish()
    }
}

/// A batch taken from the queue: entries of one (db, rp) or one statement.
enum Batch {
    Points {
        db: String,
        rp: String,
        points: u64,
        bodies: Vec<Body>,
    },
    Statement {
        db: String,
        query: String,
    },
}

/// The answer to one request of a batch.
struct Sent {
    points: u64,
    result: Result<(), client::Error>,
    took: Duration,
}

/// What the answers to a batch's requests mean for its records.
enum BatchOutcome {
    Delivered,
    /// At least one request failed in a way worth retrying.
    Retry(client::Error),
    /// InfluxDB refused (part of) the data for good: the first refusal and
    /// the positions (in the batch's requests) of the refused requests.
    Refused(client::Error, Vec<usize>),
}

impl BatchOutcome {
    /// Retrying wins over refusing: a batch is dead-lettered only when
    /// every request was answered and one was refused.
    fn of(sent: Vec<Sent>) -> BatchOutcome {
        let mut refused = None;
        let mut which = Vec::new();
        for (i, s) in sent.into_iter().enumerate() {
            match s.result {
                Ok(()) => {}
                Err(e) if e.is_retryable() => return BatchOutcome::Retry(e),
                Err(e) => {
                    which.push(i);
                    refused = refused.or(Some(e));
                }
            }
        }
        refused.map_or(BatchOutcome::Delivered, |e| BatchOutcome::Refused(e, which))
    }
}

/// Sends one body, creating the database first when the backend lacks it.
async fn write_body(client: &Client, db: &str, rp: &str, body: &Body, gzip: bool) -> Sent {
    let started = Instant::now();
    let result = match client.write(db, rp, body.data.clone(), gzip).await {
        Err(e) if e.is_database_not_found() => {
            let q = format!("CREATE DATABASE {}", crate::influxql::quote_ident(db));
            match client.query("", &q).await {
                Ok(_) => client.write(db, rp, body.data.clone(), gzip).await,
                Err(create) => Err(create),
            }
        }
        other => other,
    };
    Sent {
        points: body.points,
        result,
        took: started.elapsed(),
    }
}

/// A dead letter to be: the refused lines of one queued record.
struct Letter {
    seq: u64,
    status: u16,
    error: String,
    points: u32,
    /// The refused lines, each ending in `\n`.
    lines: Vec<u8>,
}

/// Groups refused lines by the record they came from, one dead letter per
/// record; a record whose lines were refused for different reasons keeps
/// each distinct reason.
fn dead_letters(entries: &[Entry], refused: &[isolate::RefusedLine]) -> Vec<Letter> {
    refused
        .chunk_by(|a, b| a.line.origin == b.line.origin)
        .filter_map(|group| {
            let entry = entries.get(group[0].line.origin)?;
            let mut lines = Vec::new();
            let mut errors: Vec<&str> = Vec::new();
            for r in group {
                lines.extend_from_slice(&r.line.text);
                lines.push(b'\n');
                if !errors.contains(&r.error.as_str()) {
                    errors.push(&r.error);
                }
            }
            Some(Letter {
                seq: entry.seq,
                status: group[0].status,
                error: errors.join("; "),
                points: u32::try_from(group.len()).unwrap_or(u32::MAX),
                lines,
            })
        })
        .collect()
}

impl BackendActor {
    /// Creates the actor; it starts delivering as soon as it runs.
    pub(crate) fn new(backend: Arc<Backend>, wal: Arc<Wal>, settings: Settings) -> BackendActor {
        BackendActor {
            reader: wal.reader(backend.queue.clone()),
            backend,
            settings,
            client: None,
            state: State::Idle,
            backoff: INITIAL_BACKOFF,
            cursor: 0,
            pinging: false,
            storage_errors: RateLimit::new(STORAGE_LOG_EVERY),
        }
    }

    fn name(&self) -> &str {
        &self.backend.info.name
    }

    fn client(&mut self) -> Client {
        self.client
            .get_or_insert_with(|| Client::new(self.backend.target.clone(), self.settings.timeout))
            .clone()
    }

    /// Decides whether to send now, later, or not at all.
    fn pump(&mut self, ctx: &mut Context<Self>) {
        let pending = self.backend.queue.stats.points();
        let records = self.backend.queue.stats.records();
        match self.state {
            State::Sending | State::Backoff(_) => {}
            State::Waiting(handle) => {
                if pending >= self.settings.flush_size {
                    ctx.cancel_future(handle);
                    self.send(ctx);
                }
            }
            State::Idle if records == 0 => {}
            State::Idle => {
                let delay = flush_delay(
                    pending,
                    self.backend.status.is_draining(),
                    self.backend.queue.stats.oldest_age(),
                    &self.settings,
                );
                match delay {
                    None => self.send(ctx),
                    Some(delay) => {
                        let handle = ctx.run_later(delay, |act, ctx| {
                            act.state = State::Idle;
                            act.send(ctx);
                        });
                        self.state = State::Waiting(handle);
                    }
                }
            }
        }
    }

    /// Reads the next batch and sends it.
    fn send(&mut self, ctx: &mut Context<Self>) {
        let max_points = self
            .settings
            .flush_size
            .saturating_mul(self.settings.concurrency.max(1) as u64);
        // Counted before the read, so appends racing with it can only make
        // the batch look partial (see `delivered`).
        let queued = self.backend.queue.stats.records();
        let entries = match self
            .reader
            .read(self.cursor, max_points, crate::memory::batch_bytes())
        {
            Ok(e) => e,
            // Shutting down: the queue was closed under a stopping actor.
            Err(wal::Error::Closed) => {
                debug!(backend = %self.name(), "Queue closed; delivery stops.");
                self.state = State::Idle;
                return;
            }
            Err(e) => {
                self.storage_failed("Reading the write-ahead queue failed; retrying.", &e);
                self.retry_later(ctx);
                return;
            }
        };
        let (entries, batch) = match self.take_batch(entries) {
            Some(x) => x,
            None => {
                self.state = State::Idle;
                return;
            }
        };
        let whole_queue = entries.len() as u64 >= queued;
        self.state = State::Sending;
        let client = self.client();
        let gzip = self.settings.gzip;
        let fut = async move {
            let sent = match &batch {
                Batch::Points { db, rp, bodies, .. } => {
                    join_all(bodies.iter().map(|b| write_body(&client, db, rp, b, gzip))).await
                }
                Batch::Statement { db, query } => {
                    let started = Instant::now();
                    let result = client.query(db, query).await.map(|_| ());
                    vec![Sent {
                        points: 0,
                        result,
                        took: started.elapsed(),
                    }]
                }
            };
            (batch, sent)
        };
        ctx.spawn(fut.into_actor(self).map(move |(batch, sent), act, ctx| {
            act.delivered(entries, batch, sent, whole_queue, ctx)
        }));
    }

    /// Moves the first entry, which cannot be delivered, to the dead
    /// letters and cuts a batch from the rest.
    fn dead_letter_first(
        &mut self,
        mut entries: Vec<Entry>,
        error: &str,
    ) -> Option<(Vec<Entry>, Batch)> {
        let bad: Vec<Entry> = entries.drain(..1).collect();
        error!(backend = %self.name(), seq = bad[0].seq, error, "Undecodable queue record moved to dead letters.");
        if let Err(e) = self.reader.dead_letter(&bad, 0, error) {
            self.storage_failed("Moving a record to dead letters failed; retrying.", &e);
            return None;
        }
        self.cursor = bad[0].seq;
        self.take_batch(entries)
    }

    /// Cuts the longest prefix of `entries` that forms one request. Records
    /// that cannot be decoded are dead-lettered on the spot.
    fn take_batch(&mut self, mut entries: Vec<Entry>) -> Option<(Vec<Entry>, Batch)> {
        let first = entries.first()?;
        let batch = match first.work() {
            Err(e) => return self.dead_letter_first(entries, &e.to_string()),
            Ok(Work::Statement { db, query }) => {
                let b = Batch::Statement {
                    db: db.to_string(),
                    query: query.to_string(),
                };
                entries.truncate(1);
                b
            }
            Ok(Work::Points { db, rp, .. }) => {
                let (db, rp) = (db.to_string(), rp.to_string());
                let mut parts: Vec<&[u8]> = Vec::new();
                let mut points = 0u64;
                let mut keep = 0;
                for e in &entries {
                    match e.work() {
                        Ok(Work::Points {
                            db: d,
                            rp: r,
                            points: p,
                            lines,
                        }) if d == db && r == rp => {
                            parts.push(lines);
                            points += u64::from(p);
                            keep += 1;
                        }
                        _ => break,
                    }
                }
                let bodies = batch::bodies(
                    &parts,
                    points,
                    self.settings.concurrency,
                    self.settings.gzip,
                );
                entries.truncate(keep);
                Batch::Points {
                    db,
                    rp,
                    points,
                    bodies,
                }
            }
        };
        Some((entries, batch))
    }

    /// Handles the answers to one batch's requests; `whole_queue`: the
    /// batch held every record that was queued when it was read.
    fn delivered(
        &mut self,
        entries: Vec<Entry>,
        batch: Batch,
        sent: Vec<Sent>,
        whole_queue: bool,
        ctx: &mut Context<Self>,
    ) {
        self.state = State::Idle;
        let (db, points) = match &batch {
            Batch::Points { db, points, .. } => (db.clone(), *points),
            Batch::Statement { db, .. } => (db.clone(), 0),
        };
        let db = db.as_str();
        self.count_requests(&batch, &sent);
        match BatchOutcome::of(sent) {
            BatchOutcome::Delivered => {
                if let Err(e) = self.reader.ack(&entries) {
                    if !matches!(e, wal::Error::Closed) {
                        self.storage_failed(
                            "Acknowledging delivered records failed; they will be sent again.",
                            &e,
                        );
                        self.retry_later(ctx);
                    }
                    return;
                }
                if let Some(last) = entries.last() {
                    self.cursor = last.seq;
                }
                let st = &self.backend.status;
                st.delivered_points.fetch_add(points, Ordering::Relaxed);
                if matches!(batch, Batch::Statement { .. }) {
                    st.statements_applied.fetch_add(1, Ordering::AcqRel);
                }
                debug!(backend = %self.name(), db = %db, points, "Batch delivered.");
                self.set_active(true, None);
                self.backoff = INITIAL_BACKOFF;
                // The backlog is drained once a batch held everything that
                // was queued when it was read: what is left arrived while it
                // was in flight. Waiting for an empty queue instead never
                // ends under a steady write load, and a backend stuck
                // "draining" would never serve reads again.
                let drained = whole_queue || self.backend.queue.is_empty();
                if drained && st.draining.swap(false, Ordering::AcqRel) {
                    info!(backend = %self.name(), circle = %self.backend.info.circle, "Backlog drained.");
                }
                self.pump(ctx);
            }
            BatchOutcome::Retry(e) => self.failed(&e, db, points, ctx),
            BatchOutcome::Refused(e, which) => match batch {
                Batch::Points { db, rp, bodies, .. } => {
                    let lanes: Vec<usize> = which
                        .iter()
                        .filter_map(|&i| bodies.get(i))
                        .map(|b| b.lane)
                        .collect();
                    self.isolate(entries, db, rp, points, &lanes, e, ctx);
                }
                Batch::Statement { .. } => self.refused_whole(&entries, &e, ctx),
            },
        }
    }

    /// Retries a batch that failed in a way worth retrying, later.
    fn failed(&mut self, e: &client::Error, db: &str, points: u64, ctx: &mut Context<Self>) {
        self.backend.status.draining.store(true, Ordering::Release);
        self.set_active(false, Some(e));
        debug!(backend = %self.name(), db = %db, points, error = %e, "Delivery failed; kept in queue.");
        self.retry_later(ctx);
    }

    /// Moves a refused batch to the dead letters as it is (a statement: it
    /// has no lines to tell apart).
    fn refused_whole(&mut self, entries: &[Entry], e: &client::Error, ctx: &mut Context<Self>) {
        let status = e.status().unwrap_or(0);
        let message = e.to_string();
        match self.reader.dead_letter(entries, status, &message) {
            Ok(()) => {
                if let Some(last) = entries.last() {
                    self.cursor = last.seq;
                }
                error!(backend = %self.name(), status, error = %message, "Backend refused a statement; moved to dead letters.");
                self.pump(ctx);
            }
            Err(werr) => {
                self.storage_failed(
                    "Moving refused data to dead letters failed; retrying.",
                    &werr,
                );
                self.retry_later(ctx);
            }
        }
    }

    /// Bisects the refused requests of a batch (the requests at `lanes`)
    /// until only lines refused on their own are left; see [`isolate`].
    #[allow(clippy::too_many_arguments)]
    fn isolate(
        &mut self,
        entries: Vec<Entry>,
        db: String,
        rp: String,
        points: u64,
        lanes: &[usize],
        first: client::Error,
        ctx: &mut Context<Self>,
    ) {
        let parts: Vec<&[u8]> = entries
            .iter()
            .map(|e| match e.work() {
                Ok(Work::Points { lines, .. }) => lines,
                _ => &[][..],
            })
            .collect();
        let concurrency = self.settings.concurrency;
        let suspects = isolate::lines_of(&parts, |line| {
            lanes
                .iter()
                .any(|&lane| batch::in_lane(line, points, concurrency, lane))
        });
        warn!(backend = %self.name(), db = %db, points, suspects = suspects.len(), error = %first,
            "Backend refused a batch; sending its lines in smaller parts to find the refused ones.");
        self.state = State::Sending;
        let client = self.client();
        let fut = async move {
            let send = |body: Bytes, n: u64| {
                let (client, db, rp) = (client.clone(), db.clone(), rp.clone());
                async move {
                    let b = Body {
                        points: n,
                        lane: 0,
                        data: body,
                    };
                    write_body(&client, &db, &rp, &b, false).await.result
                }
            };
            let outcome = isolate::isolate(suspects, first, send).await;
            (db, rp, outcome)
        };
        ctx.spawn(
            fut.into_actor(self)
                .map(move |(db, rp, outcome), act, ctx| {
                    act.settled(&entries, &db, &rp, points, outcome, ctx)
                }),
        );
    }

    /// Applies the end of a search: delivered but for the refused lines,
    /// which become dead letters of the records they came from.
    fn settled(
        &mut self,
        entries: &[Entry],
        db: &str,
        rp: &str,
        points: u64,
        outcome: isolate::Outcome,
        ctx: &mut Context<Self>,
    ) {
        self.state = State::Idle;
        let (refused, requests) = match outcome {
            isolate::Outcome::Retry(e) => return self.failed(&e, db, points, ctx),
            isolate::Outcome::Settled { refused, requests } => (refused, requests),
        };
        let letters = dead_letters(entries, &refused);
        let dead: Vec<wal::RefusedLines<'_>> = letters
            .iter()
            .map(|l| wal::RefusedLines {
                seq: l.seq,
                status: l.status,
                error: &l.error,
                points: l.points,
                lines: &l.lines,
            })
            .collect();
        if let Err(e) = self.reader.settle(entries, db, rp, &dead) {
            self.storage_failed(
                "Settling a refused batch failed; it will be sent again.",
                &e,
            );
            self.retry_later(ctx);
            return;
        }
        if let Some(last) = entries.last() {
            self.cursor = last.seq;
        }
        let bad = refused.len() as u64;
        let st = &self.backend.status;
        st.delivered_points
            .fetch_add(points.saturating_sub(bad), Ordering::Relaxed);
        if let Some(r) = refused.first() {
            error!(backend = %self.name(), db = %db, points = bad, delivered = points.saturating_sub(bad),
                requests, status = r.status, error = %r.error, "Backend refused lines; moved to dead letters, the rest of the batch delivered.");
        } else {
            info!(backend = %self.name(), db = %db, points, requests, "Refused batch delivered in parts; no line was refused on its own.");
        }
        self.set_active(true, None);
        self.backoff = INITIAL_BACKOFF;
        self.pump(ctx);
    }

    /// Per-request counters: latency of answered writes, failed attempts
    /// and the points in them.
    fn count_requests(&self, batch: &Batch, sent: &[Sent]) {
        let st = &self.backend.status;
        for s in sent {
            match &s.result {
                Ok(()) if matches!(batch, Batch::Points { .. }) => {
                    st.write_latency.observe_duration(s.took);
                    let us = u64::try_from(s.took.as_micros()).unwrap_or(u64::MAX);
                    st.last_write_us.store(us, Ordering::Relaxed);
                }
                Ok(()) => {}
                Err(e) if e.is_retryable() => {
                    st.failed_attempts.fetch_add(1, Ordering::Relaxed);
                    st.failed_points.fetch_add(s.points, Ordering::Relaxed);
                }
                Err(_) => {}
            }
        }
    }

    /// Logs a failed queue operation, at most once per [`STORAGE_LOG_EVERY`]
    /// (`times`: failures since the last line).
    fn storage_failed(&self, message: &'static str, e: &wal::Error) {
        if let Some(times) = self.storage_errors.check() {
            error!(backend = %self.name(), circle = %self.backend.info.circle, error = %e, times, "{}", message);
        }
    }

    fn retry_later(&mut self, ctx: &mut Context<Self>) {
        let delay = self.backoff;
        self.backoff = (self.backoff * 2).min(self.settings.max_backoff.max(INITIAL_BACKOFF));
        let handle = ctx.run_later(delay, |act, ctx| {
            act.state = State::Idle;
            act.send(ctx);
        });
        self.state = State::Backoff(handle);
    }

    fn set_active(&self, active: bool, error: Option<&client::Error>) {
        let st = &self.backend.status;
        if st.active.swap(active, Ordering::AcqRel) != active {
            st.state_changes.fetch_add(1, Ordering::Relaxed);
            let backlog = self.backend.queue.stats.points();
            if active {
                info!(backend = %self.name(), circle = %self.backend.info.circle, backlog, "Backend is active.");
            } else {
                let error = error.map(|e| e.to_string()).unwrap_or_default();
                warn!(backend = %self.name(), circle = %self.backend.info.circle, backlog, error = %error, "Backend is inactive; writes are queued.");
            }
        }
    }

    /// Periodic `/ping`; no answer within the interval marks the backend inactive, and a
    /// backend that comes back is retried at once.
    fn health_check(&mut self, ctx: &mut Context<Self>) {
        if self.pinging {
            return;
        }
        self.pinging = true;
        let client = self.client().with_timeout(self.settings.ping_timeout());
        ctx.spawn(
            async move { client.ping().await }
                .into_actor(self)
                .map(|result, act, ctx| {
                    act.pinging = false;
                    match result {
                        Ok(()) => {
                            act.set_active(true, None);
                            if let State::Backoff(handle) = act.state {
                                ctx.cancel_future(handle);
                                act.state = State::Idle;
                                act.backoff = INITIAL_BACKOFF;
                                act.send(ctx);
                            }
                        }
                        Err(e) => act.set_active(false, Some(&e)),
                    }
                }),
        );
    }
}

impl Actor for BackendActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        info!(backend = %self.name(), circle = %self.backend.info.circle, url = %self.backend.info.url,
            queued_points = self.backend.queue.stats.points(), "Backend started.");
        if !self.backend.queue.is_empty() {
            // A backlog from before a restart is drained without waiting.
            self.backend.status.draining.store(true, Ordering::Release);
        }
        ctx.run_interval(self.settings.check_interval, |act, ctx| {
            act.health_check(ctx)
        });
        self.pump(ctx);
    }
}

impl Handler<msg::Notify> for BackendActor {
    type Result = ();

    fn handle(&mut self, _: msg::Notify, ctx: &mut Context<Self>) {
        self.backend.status.notified.store(false, Ordering::Release);
        self.pump(ctx);
    }
}

impl Handler<msg::Stop> for BackendActor {
    type Result = ();

    fn handle(&mut self, _: msg::Stop, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sent(result: Result<(), client::Error>) -> Sent {
        Sent {
            points: 1,
            result,
            took: Duration::ZERO,
        }
    }

    fn status(code: u16) -> client::Error {
        client::Error::Status {
            status: code,
            message: format!("status {code}"),
        }
    }

    #[test]
    fn a_batch_is_delivered_only_when_every_request_was() {
        assert!(matches!(
            BatchOutcome::of(vec![sent(Ok(())), sent(Ok(()))]),
            BatchOutcome::Delivered
        ));
        assert!(matches!(
            BatchOutcome::of(vec![sent(Ok(())), sent(Err(status(503)))]),
            BatchOutcome::Retry(_)
        ));
        assert!(matches!(
            BatchOutcome::of(vec![sent(Err(status(400))), sent(Ok(()))]),
            BatchOutcome::Refused(_, ref w) if w == &[0]
        ));
    }

    #[test]
    fn retrying_wins_over_refusing() {
        let v = BatchOutcome::of(vec![sent(Err(status(400))), sent(Err(status(500)))]);
        assert!(matches!(v, BatchOutcome::Retry(e) if e.status() == Some(500)));
    }

    #[test]
    fn refused_lines_become_one_dead_letter_per_record_they_came_from() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Arc::new(Wal::open(dir.path(), crate::wal::Durability::Buffered).unwrap());
        let q = wal.queue("b", 1 << 20).unwrap();
        for lines in [&b"a v=1 1\nb v=2 2\n"[..], b"c v=3 3\n", b"d v=4 4\n"] {
            wal.append_lines(&[&q], "db", "rp", 1, lines).unwrap();
        }
        let entries = wal.reader(q).read(0, u64::MAX, u64::MAX).unwrap();
        let refusal = |origin: usize, text: &'static [u8], error: &str| isolate::RefusedLine {
            line: isolate::RecordLine {
                origin,
                text: Bytes::from_static(text),
            },
            status: 400,
            error: error.to_string(),
        };
        let refused = [
            refusal(0, b"a v=1 1", "conflict"),
            refusal(0, b"b v=2 2", "beyond retention"),
            refusal(2, b"d v=4 4", "conflict"),
        ];
        let letters = dead_letters(&entries, &refused);
        assert_eq!(letters.len(), 2);
        assert_eq!(
            (letters[0].seq, letters[1].seq),
            (entries[0].seq, entries[2].seq)
        );
        assert_eq!(letters[0].error, "conflict; beyond retention");
        assert_eq!(letters[0].points, 2);
        assert_eq!(letters[0].lines, b"a v=1 1\nb v=2 2\n");
    }

    fn settings() -> Settings {
        Settings {
            flush_size: 100,
            concurrency: 1,
            gzip: false,
            flush_time: Duration::from_secs(1),
            check_interval: Duration::from_secs(1),
            max_backoff: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            query_timeout: Duration::from_secs(1),
        }
    }

    #[test]
    fn a_ping_must_answer_within_its_interval_and_a_write_timeout() {
        let s = |check: u64, write: u64| Settings {
            check_interval: Duration::from_secs(check),
            timeout: Duration::from_secs(write),
            ..settings()
        };
        assert_eq!(s(1, 10).ping_timeout(), Duration::from_secs(1));
        assert_eq!(s(60, 10).ping_timeout(), Duration::from_secs(10));
    }

    #[test]
    fn a_partial_batch_waits_out_flush_time_from_its_oldest_record() {
        let s = settings();
        let ms = Duration::from_millis;
        assert_eq!(flush_delay(10, false, ms(0), &s), Some(ms(1000)));
        assert_eq!(flush_delay(10, false, ms(300), &s), Some(ms(700)));
        assert_eq!(
            flush_delay(10, false, ms(1000), &s),
            None,
            "waited long enough"
        );
        assert_eq!(
            flush_delay(10, false, ms(9000), &s),
            None,
            "tail of a backlog"
        );
        assert_eq!(flush_delay(100, false, ms(0), &s), None, "a full batch");
        assert_eq!(
            flush_delay(1, true, ms(0), &s),
            None,
            "a backend being rewritten"
        );
    }
}
