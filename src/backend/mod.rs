//! One actor per InfluxDB backend: drains that backend's write-ahead queue.
//!
//! # Delivery
//! Records are read in queue order and grouped into batches of one
//! (db, rp) of at most `flush_size` points. A batch is sent when the queue
//! holds `flush_size` points, or `flush_time` after data first arrived, or
//! at once while a backlog drains. One batch is in flight at a time, which
//! keeps delivery in order.
//!
//! # Outcomes
//! - 2xx: the records are deleted from the queue.
//! - retryable failure (connect, timeout, 5xx, 401/403/408/429): the backend
//!   is marked inactive and the batch is retried with exponential backoff
//!   (capped at `rewrite_interval`); a successful health check retries at
//!   once.
//! - 404 `database not found`: the database is created on the backend and
//!   the batch retried (a fresh backend in a circle lacks databases).
//! - any other 4xx: InfluxDB refuses the data itself; the records move to the
//!   dead-letter space, are counted and logged, and delivery goes on.
//!
//! # Supervision
//! The actor keeps no state that is not in the queue: on restart it starts
//! again from the head of the queue. Circles restart actors that died
//! (see `circle`).

pub mod client;
pub mod msg;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use tracing::{debug, error, info, warn};

use crate::metrics::Histogram;
use crate::wal::{self, Entry, Record, Wal};
use client::Client;

/// Largest batch body read from the queue in one go.
const MAX_BATCH_BYTES: u64 = 64 << 20;
/// First retry delay after a failure; doubles up to `rewrite_interval`.
const INITIAL_BACKOFF: Duration = Duration::from_millis(250);

/// Static description of a backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
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
pub struct Settings {
    /// Points per batch.
    pub flush_size: u64,
    /// Longest wait before a partial batch is sent.
    pub flush_time: Duration,
    /// Health check period.
    pub check_interval: Duration,
    /// Longest retry delay.
    pub max_backoff: Duration,
    /// Timeout of each request to the backend.
    pub timeout: Duration,
}

/// Live state of a backend, shared with the HTTP layer.
#[derive(Debug)]
pub struct Status {
    active: AtomicBool,
    rewriting: AtomicBool,
    notified: AtomicBool,
    /// Points delivered since start.
    pub delivered_points: AtomicU64,
    /// Failed delivery attempts since start.
    pub failed_attempts: AtomicU64,
    /// Points in failed delivery attempts since start (a point retried
    /// twice counts twice).
    pub failed_points: AtomicU64,
    /// Active/inactive transitions since start.
    pub state_changes: AtomicU64,
    /// Duration of each successful write request to the backend.
    pub write_latency: Histogram,
}

impl Status {
    fn new() -> Status {
        Status {
            // Like the reference: active until a check says otherwise, so a
            // fresh proxy does not report every backend down.
            active: AtomicBool::new(true),
            rewriting: AtomicBool::new(false),
            notified: AtomicBool::new(false),
            delivered_points: AtomicU64::new(0),
            failed_attempts: AtomicU64::new(0),
            failed_points: AtomicU64::new(0),
            state_changes: AtomicU64::new(0),
            write_latency: Histogram::latency(),
        }
    }

    /// Backend answered its last health check or delivery.
    pub fn is_active(&self) -> bool {
        self.active.load(Ordering::Acquire)
    }

    /// Backend is draining a backlog after a failure.
    pub fn is_rewriting(&self) -> bool {
        self.rewriting.load(Ordering::Acquire)
    }
}

/// Everything about one backend that outlives its actor.
#[derive(Debug)]
pub struct Backend {
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
    pub fn new(info: Info, target: client::Target, queue: wal::Queue) -> Backend {
        Backend {
            info,
            target: Arc::new(target),
            status: Status::new(),
            queue,
        }
    }

    /// Whether a `Notify` should be sent: coalesces wake-ups so a burst of
    /// writes costs one mailbox message.
    pub fn take_notify_slot(&self) -> bool {
        !self.status.notified.swap(true, Ordering::AcqRel)
    }

    /// Clears a pending wake-up (a fresh actor looks at its queue anyway).
    pub fn reset_notify_slot(&self) {
        self.status.notified.store(false, Ordering::Release);
    }
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
pub struct BackendActor {
    backend: Arc<Backend>,
    wal: Arc<Wal>,
    settings: Settings,
    client: Option<Client>,
    state: State,
    backoff: Duration,
    /// Highest sequence number acknowledged, a lower bound for reads.
    cursor: u64,
    pinging: bool,
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
        body: bytes::Bytes,
    },
    Statement {
        db: String,
        query: String,
    },
}

impl BackendActor {
    /// Creates the actor; it starts delivering as soon as it runs.
    pub fn new(backend: Arc<Backend>, wal: Arc<Wal>, settings: Settings) -> BackendActor {
        BackendActor {
            backend,
            wal,
            settings,
            client: None,
            state: State::Idle,
            backoff: INITIAL_BACKOFF,
            cursor: 0,
            pinging: false,
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
        let pending = self.backend.queue.stats.points.load(Ordering::Acquire);
        let records = self.backend.queue.stats.records.load(Ordering::Acquire);
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
                if pending >= self.settings.flush_size || self.backend.status.is_rewriting() {
                    self.send(ctx);
                } else {
                    let handle = ctx.run_later(self.settings.flush_time, |act, ctx| {
                        act.state = State::Idle;
                        act.send(ctx);
                    });
                    self.state = State::Waiting(handle);
                }
            }
        }
    }

    /// Reads the next batch and sends it.
    fn send(&mut self, ctx: &mut Context<Self>) {
        let entries = match self.wal.read(
            &self.backend.queue,
            self.cursor,
            self.settings.flush_size,
            MAX_BATCH_BYTES,
        ) {
            Ok(e) => e,
            Err(e) => {
                error!(backend = %self.name(), error = %e, "Reading the write-ahead queue failed.");
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
        self.state = State::Sending;
        let client = self.client();
        let fut = async move {
            let started = Instant::now();
            let result = match &batch {
                Batch::Points { db, rp, body, .. } => {
                    let r = client.write_gzip(db, rp, body.clone()).await;
                    match r {
                        Err(e) if e.is_database_not_found() => {
                            let q = format!("CREATE DATABASE \"{}\"", db.replace('"', "\\\""));
                            match client.query("", &q).await {
                                Ok(_) => client.write_gzip(db, rp, body.clone()).await,
                                Err(create) => Err(create),
                            }
                        }
                        other => other,
                    }
                }
                Batch::Statement { db, query } => client.query(db, query).await.map(|_| ()),
            };
            (batch, result, started.elapsed())
        };
        ctx.spawn(
            fut.into_actor(self)
                .map(move |(batch, result, took), act, ctx| {
                    act.delivered(entries, batch, result, took, ctx)
                }),
        );
    }

    /// Cuts the longest prefix of `entries` that forms one request. Records
    /// that cannot be decoded are dead-lettered on the spot.
    fn take_batch(&mut self, mut entries: Vec<Entry>) -> Option<(Vec<Entry>, Batch)> {
        let first = entries.first()?;
        let batch = match first.record() {
            Err(e) => {
                let bad: Vec<Entry> = entries.drain(..1).collect();
                error!(backend = %self.name(), seq = bad[0].seq, error = %e, "Undecodable queue record moved to dead letters.");
                if let Err(e) = self
                    .wal
                    .dead_letter(&self.backend.queue, &bad, 0, &e.to_string())
                {
                    error!(backend = %self.name(), error = %e, "Moving a record to dead letters failed.");
                    return None;
                }
                self.cursor = bad[0].seq;
                return self.take_batch(entries);
            }
            Ok(Record::Statement { db, query }) => {
                let b = Batch::Statement {
                    db: db.to_string(),
                    query: query.to_string(),
                };
                entries.truncate(1);
                b
            }
            Ok(Record::Points { db, rp, .. }) => {
                let (db, rp) = (db.to_string(), rp.to_string());
                let mut parts: Vec<&[u8]> = Vec::new();
                let mut points = 0u64;
                let mut keep = 0;
                for e in &entries {
                    match e.record() {
                        Ok(Record::Points {
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
                let body = client::gzip(&parts);
                entries.truncate(keep);
                Batch::Points {
                    db,
                    rp,
                    points,
                    body,
                }
            }
        };
        Some((entries, batch))
    }

    /// Handles the outcome of one request.
    fn delivered(
        &mut self,
        entries: Vec<Entry>,
        batch: Batch,
        result: Result<(), client::Error>,
        took: Duration,
        ctx: &mut Context<Self>,
    ) {
        self.state = State::Idle;
        let (db, points) = match &batch {
            Batch::Points { db, points, .. } => (db.as_str(), *points),
            Batch::Statement { db, .. } => (db.as_str(), 0),
        };
        match result {
            Ok(()) => {
                if let Err(e) = self.wal.ack(&self.backend.queue, &entries) {
                    error!(backend = %self.name(), error = %e, "Acknowledging delivered records failed; they will be sent again.");
                    self.retry_later(ctx);
                    return;
                }
                if let Some(last) = entries.last() {
                    self.cursor = last.seq;
                }
                let st = &self.backend.status;
                st.delivered_points.fetch_add(points, Ordering::Relaxed);
                if matches!(batch, Batch::Points { .. }) {
                    st.write_latency.observe_duration(took);
                }
                debug!(backend = %self.name(), db = %db, points, "Batch delivered.");
                self.set_active(true, None);
                self.backoff = INITIAL_BACKOFF;
                if self.backend.queue.is_empty() && st.rewriting.swap(false, Ordering::AcqRel) {
                    info!(backend = %self.name(), circle = %self.backend.info.circle, "Backlog drained.");
                }
                self.pump(ctx);
            }
            Err(e) if e.is_retryable() => {
                self.backend
                    .status
                    .failed_attempts
                    .fetch_add(1, Ordering::Relaxed);
                self.backend
                    .status
                    .failed_points
                    .fetch_add(points, Ordering::Relaxed);
                self.backend.status.rewriting.store(true, Ordering::Release);
                self.set_active(false, Some(&e));
                debug!(backend = %self.name(), db = %db, points, error = %e, "Delivery failed; kept in queue.");
                self.retry_later(ctx);
            }
            Err(e) => {
                let status = e.status().unwrap_or(0);
                let message = e.to_string();
                match self
                    .wal
                    .dead_letter(&self.backend.queue, &entries, status, &message)
                {
                    Ok(()) => {
                        if let Some(last) = entries.last() {
                            self.cursor = last.seq;
                        }
                        error!(backend = %self.name(), db = %db, points, status, error = %message, "Backend refused data; moved to dead letters.");
                        self.pump(ctx);
                    }
                    Err(werr) => {
                        error!(backend = %self.name(), error = %werr, "Moving refused data to dead letters failed.");
                        self.retry_later(ctx);
                    }
                }
            }
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
            let backlog = self.backend.queue.stats.points.load(Ordering::Relaxed);
            if active {
                info!(backend = %self.name(), circle = %self.backend.info.circle, backlog, "Backend is active.");
            } else {
                let error = error.map(|e| e.to_string()).unwrap_or_default();
                warn!(backend = %self.name(), circle = %self.backend.info.circle, backlog, error = %error, "Backend is inactive; writes are queued.");
            }
        }
    }

    /// Periodic `/ping`; a backend that comes back is retried at once.
    fn health_check(&mut self, ctx: &mut Context<Self>) {
        if self.pinging {
            return;
        }
        self.pinging = true;
        let client = self.client();
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
            queued_points = self.backend.queue.stats.points.load(Ordering::Relaxed), "Backend started.");
        if !self.backend.queue.is_empty() {
            // A backlog from before a restart is drained without waiting.
            self.backend.status.rewriting.store(true, Ordering::Release);
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

impl Handler<msg::Query> for BackendActor {
    type Result = ResponseFuture<Result<serde_json::Value, client::Error>>;

    fn handle(&mut self, m: msg::Query, _ctx: &mut Context<Self>) -> Self::Result {
        let client = self.client();
        Box::pin(async move { client.query(&m.db, &m.q).await })
    }
}

impl Handler<msg::Stop> for BackendActor {
    type Result = ();

    fn handle(&mut self, _: msg::Stop, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}
