//! The migration actor: rebalance, recovery, resync and clear.
//!
//! Operators change circles online. A job walks the measurements of its
//! source backends and copies each one (every retention policy) to the
//! backend that owns it under the current ring, through the destination's
//! write-ahead queue ([`copy`]): nothing is lost if a destination goes down
//! mid-copy, and writes keep flowing with the current ring meanwhile.
//!
//! - rebalance (`circle_id`, `operation=add|rm`): after the circle's backend
//!   list changed, move every misplaced measurement of the circle (and of
//!   the removed backends, given in the body) to its owner;
//! - recovery (`from_circle_id`, `to_circle_id`, `backend_urls`): rebuild
//!   backends of one circle from another circle;
//! - resync (`seconds`...): copy every circle into every other circle;
//! - clear (`circle_id`): drop measurements from backends that do not own
//!   them (queued, so they apply after any pending writes);
//! - repair (anti-entropy): compare the circles bucket by bucket and mend only
//!   the buckets that differ ([`antientropy`], [`repair`]).
//!
//! One job runs at a time per circle (resync: at a time per proxy); a circle
//! that receives data is flagged *migrating* and reads avoid it. The flag is
//! also sent to every proxy of `ha_addrs`. Progress is kept per source
//! backend (`/migrate/stats`, and `/metrics` through [`metrics`]) and logged to
//! `<mlog_dir>/<operation>.log`.
//!
//! A job is done, and its flags cleared here and on every proxy, once the
//! destinations have delivered what it appended to their queues, not once
//! it is queued: reads go to the new owners as soon as the flag is down, and
//! an operator runs `/clear` when the state reads idle, which removes the
//! other copy. The job waits for the last record it appended to each
//! destination queue ([`copy::Appended`]), not for writes queued after it.

pub(crate) mod antientropy;
pub(crate) mod convert;
pub(crate) mod copy;
pub(crate) mod history;
pub(crate) mod metrics;
pub(crate) mod repair;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use futures_util::stream::{self, StreamExt as _};
use parking_lot::Mutex;
use tracing::{error, info, warn};

use crate::answer::PolicyRow;
use crate::backend::catalog;
use crate::backend::client::{self, Client, Target};
use crate::circle::BackendHandle;
use crate::cluster::Cluster;
use crate::config::Config;
use crate::influxql::quote_ident;

/// Longest a source backend may take to start answering a migration read. Not the
/// dashboards' `query_timeout`: a `SHOW MEASUREMENTS` of a large database, or the first chunk
/// of a `SELECT *` over a big measurement, can take minutes on a loaded backend, and a copy
/// that gives up leaves that measurement uncopied (logged, to be run again), so a migration
/// waits as long as it always did.
pub(crate) const READ_TIMEOUT: Duration = Duration::from_secs(300);
/// Timeout of state broadcasts to the other proxies.
const BROADCAST_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a job whose copies are queued looks whether they were delivered.
const DELIVERY_POLL: Duration = Duration::from_millis(20);
/// How often a job still waiting for a destination to deliver says so.
const DELIVERY_REPORT: Duration = Duration::from_secs(30);

/// The four operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum JobKind {
    /// Move misplaced measurements inside a circle.
    Rebalance,
    /// Copy one circle into another.
    Recovery,
    /// Copy every circle into every other.
    Resync,
    /// Drop misplaced measurements.
    Clear,
    /// Anti-entropy: mend the buckets that differ between circles.
    Repair,
}

impl JobKind {
    /// Parses `type=` of `/migrate/stats` (also the 2.5.12 `cleanup`).
    pub(crate) fn parse(s: &str) -> Option<JobKind> {
        match s {
            "rebalance" => Some(JobKind::Rebalance),
            "recovery" => Some(JobKind::Recovery),
            "resync" => Some(JobKind::Resync),
            "clear" | "cleanup" => Some(JobKind::Clear),
            "repair" | "anti-entropy" => Some(JobKind::Repair),
            _ => None,
        }
    }

    /// Every kind, in the order `/metrics` lists them.
    pub(crate) const ALL: [JobKind; 5] = [
        JobKind::Rebalance,
        JobKind::Recovery,
        JobKind::Resync,
        JobKind::Clear,
        JobKind::Repair,
    ];

    /// Lower-case name (log file name).
    pub(crate) fn name(self) -> &'static str {
        match self {
            JobKind::Rebalance => "rebalance",
            JobKind::Recovery => "recovery",
            JobKind::Resync => "resync",
            JobKind::Clear => "clear",
            JobKind::Repair => "repair",
        }
    }
}

/// Progress counters of one source backend.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub(crate) struct Stats {
    /// Databases to walk.
    pub database_total: u64,
    /// Databases walked.
    pub database_done: u64,
    /// Measurements to walk.
    pub measurement_total: u64,
    /// Measurements walked.
    pub measurement_done: u64,
    /// Measurements copied (or dropped, for clear).
    pub migrate_count: u64,
    /// Measurements already where they belong.
    pub inplace_count: u64,
    /// Points copied.
    pub points: u64,
    /// Copies (or drops) that failed, and databases or sources that could not be listed:
    /// logged, and the job's work left undone there.
    pub failed: u64,
}

/// A backend to read from that may not be part of the running config
/// (`rebalance?operation=rm` names the removed backends in its body).
#[derive(Debug, Clone)]
pub(crate) struct SourceBackend {
    /// Backend name.
    pub name: String,
    /// Connection settings.
    pub target: Arc<Target>,
}

/// What a job does.
#[derive(Debug, Clone)]
pub(crate) enum Operation {
    /// See [`JobKind::Rebalance`]; `removed` are extra sources.
    Rebalance {
        /// Circle to rebalance.
        circle: usize,
        /// Backends removed from the circle (operation=rm).
        removed: Vec<SourceBackend>,
    },
    /// See [`JobKind::Recovery`].
    Recovery {
        /// Circle to read from.
        from: usize,
        /// Circle to rebuild.
        to: usize,
        /// Only these destination URLs (empty = every backend of `to`).
        urls: Vec<String>,
    },
    /// See [`JobKind::Resync`].
    Resync,
    /// See [`JobKind::Clear`].
    Clear {
        /// Circle to clear.
        circle: usize,
    },
    /// See [`JobKind::Repair`].
    Repair {
        /// What to compare and how fast to mend.
        spec: repair::Spec,
        /// The progress of a repair a restart interrupted: no comparison, go on.
        resume: Option<Box<repair::SavedRepair>>,
    },
}

impl Operation {
    /// The operation's kind.
    pub(crate) fn kind(&self) -> JobKind {
        match self {
            Operation::Rebalance { .. } => JobKind::Rebalance,
            Operation::Recovery { .. } => JobKind::Recovery,
            Operation::Resync => JobKind::Resync,
            Operation::Clear { .. } => JobKind::Clear,
            Operation::Repair { .. } => JobKind::Repair,
        }
    }

    /// Circles marked migrating while the job runs (reads avoid them).
    fn target_circles(&self) -> Vec<usize> {
        match self {
            Operation::Rebalance { circle, .. } | Operation::Clear { circle } => vec![*circle],
            Operation::Recovery { to, .. } => vec![*to],
            // Reads keep using every circle: a repair only adds what one lacks.
            Operation::Resync | Operation::Repair { .. } => Vec::new(),
        }
    }

    /// Circles whose `/migrate/stats` the job's progress is kept under.
    pub(crate) fn stats_circles(&self, circles: usize) -> Vec<usize> {
        match self {
            Operation::Resync => (0..circles).collect(),
            Operation::Repair { .. } => Vec::new(),
            other => other.target_circles(),
        }
    }

    /// Circles the job must have to itself.
    fn busy_circles(&self, circles: usize) -> Vec<usize> {
        match self {
            Operation::Recovery { from, to, .. } => vec![*from, *to],
            Operation::Resync | Operation::Repair { .. } => (0..circles).collect(),
            other => other.target_circles(),
        }
    }
}

/// A job request; answered with the job's id ([`history`]), or why it cannot start.
#[derive(Debug, Message)]
#[rtype(result = "Result<u64, String>")]
pub(crate) struct Start {
    /// The operation.
    pub op: Operation,
    /// Databases to walk (empty = all but `_internal`).
    pub dbs: Vec<String>,
    /// Measurements copied concurrently.
    pub workers: usize,
    /// Rows per chunk.
    pub batch: usize,
    /// Only data at or after this unix time (seconds); 0 = all.
    pub since: i64,
    /// Proxies to tell about migrating flags (may include this one).
    pub ha_addrs: Vec<String>,
    /// The cluster to work on (the current one).
    pub cluster: Arc<Cluster>,
    /// The running config (credentials, scheme, mlog_dir).
    pub config: Arc<Config>,
}

/// State shared with the HTTP layer.
#[derive(Debug, Default)]
pub(crate) struct Jobs {
    /// A resync runs (or an operator said so).
    pub resyncing: AtomicBool,
    busy: Mutex<HashSet<usize>>,
    stats: Mutex<HashMap<(usize, JobKind), BTreeMap<String, Stats>>>,
    /// Bumped at every step of every job: what a backend holds may have changed.
    steps: std::sync::atomic::AtomicU64,
    /// Progress of the current or last anti-entropy repair.
    repair: Mutex<repair::RepairProgress>,
    /// Every job since the start, with its id and phase.
    history: Mutex<history::History>,
    /// Points copied since start by each source of each kind of job: only grows, unlike a
    /// job's [`Stats::points`], so `/metrics` can offer a rate (`/metrics`).
    copied: Mutex<BTreeMap<Source, u64>>,
}

/// Who copied: the kind of job, the circle its stats are kept under (`None`: a repair, which
/// spans every circle) and the source backend's URL (empty for a repair).
pub(crate) type Source = (JobKind, Option<usize>, String);

/// One source backend's progress in the current or last job of its kind on a circle, as
/// `/metrics` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SourceProgress {
    /// Which job and source.
    pub source: Source,
    /// Steps the job walks on this source: measurements (rebalance, recovery, resync, clear)
    /// or differing buckets (repair).
    pub steps: u64,
    /// Steps walked.
    pub steps_done: u64,
}

impl Jobs {
    /// A counter that moves whenever a job made progress (readers cache what the backends
    /// hold until it moves).
    pub(crate) fn steps(&self) -> u64 {
        self.steps.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Progress of the last job of `kind` involving `circle`, by source URL.
    pub(crate) fn stats(&self, circle: usize, kind: JobKind) -> BTreeMap<String, Stats> {
        self.stats
            .lock()
            .get(&(circle, kind))
            .cloned()
            .unwrap_or_default()
    }

    /// Every job kept (running, and the last finished ones), oldest first.
    pub(crate) fn jobs(&self) -> Vec<history::JobRecord> {
        self.history.lock().list()
    }

    /// The live progress of a running job: per source backend of its circles.
    pub(crate) fn sources(
        &self,
        kind: JobKind,
        circles: &[usize],
    ) -> BTreeMap<String, history::SourceStats> {
        let all = self.stats.lock();
        circles
            .iter()
            .filter_map(|&c| Some((c, all.get(&(c, kind))?)))
            .flat_map(|(circle, by_url)| {
                by_url.iter().map(move |(url, stats)| {
                    let stats = stats.clone();
                    (url.clone(), history::SourceStats { circle, stats })
                })
            })
            .collect()
    }

    fn update(&self, circle: usize, kind: JobKind, url: &str, f: impl FnOnce(&mut Stats)) {
        self.steps.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        let copied = {
            let mut all = self.stats.lock();
            let stats = all
                .entry((circle, kind))
                .or_default()
                .entry(url.to_string())
                .or_default();
            let before = stats.points;
            f(stats);
            stats.points.saturating_sub(before)
        };
        if copied > 0 {
            self.count_copied((kind, Some(circle), url.to_string()), copied);
        }
    }

    /// Adds `points` to what `source` copied since start.
    fn count_copied(&self, source: Source, points: u64) {
        *self.copied.lock().entry(source).or_default() += points;
    }

    /// Jobs of `kind` not yet done (running or delivering), from the job history.
    pub(crate) fn running(&self, kind: JobKind) -> u32 {
        self.history.lock().unfinished(kind)
    }

    /// Whether a job that appends to queues (all but `/clear`) is not yet done.
    pub(crate) fn appending(&self) -> bool {
        let history = self.history.lock();
        [
            JobKind::Rebalance,
            JobKind::Recovery,
            JobKind::Resync,
            JobKind::Repair,
        ]
        .into_iter()
        .any(|kind| history.unfinished(kind) > 0)
    }

    /// Points each source copied since start, by source.
    pub(crate) fn copied(&self) -> Vec<(Source, u64)> {
        let copied = self.copied.lock();
        copied.iter().map(|(s, n)| (s.clone(), *n)).collect()
    }

    /// The progress of the current or last job of each kind on each circle, by source, and
    /// of the current or last repair; in a stable order.
    pub(crate) fn progress(&self) -> Vec<SourceProgress> {
        let mut out: Vec<SourceProgress> = {
            let all = self.stats.lock();
            all.iter()
                .flat_map(|(&(circle, kind), sources)| {
                    sources.iter().map(move |(url, s)| SourceProgress {
                        source: (kind, Some(circle), url.clone()),
                        steps: s.measurement_total,
                        steps_done: s.measurement_done,
                    })
                })
                .collect()
        };
        let repair = self.repair.lock();
        if !repair.phase.is_empty() {
            out.push(SourceProgress {
                source: (JobKind::Repair, None, String::new()),
                steps: repair.buckets_total,
                steps_done: repair.buckets_done,
            });
        }
        out.sort_by(|a, b| a.source.cmp(&b.source));
        out
    }

    /// Points the current or last repair has still to write (an estimate), once one ran.
    pub(crate) fn repair_points_left(&self) -> Option<u64> {
        let repair = self.repair.lock();
        (!repair.phase.is_empty()).then_some(repair.points_left)
    }

    fn reset(&self, circle: usize, kind: JobKind, urls: &[String]) {
        self.steps.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        let mut all = self.stats.lock();
        let m = all.entry((circle, kind)).or_default();
        m.clear();
        for u in urls {
            m.insert(u.clone(), Stats::default());
        }
    }
}

/// The migration actor.
#[derive(Debug)]
pub(crate) struct Migrator {
    shared: Arc<Jobs>,
}

impl Migrator {
    /// An idle migrator.
    pub(crate) fn new(shared: Arc<Jobs>) -> Migrator {
        Migrator { shared }
    }
}

impl Actor for Migrator {
    type Context = Context<Self>;
}

impl Handler<Start> for Migrator {
    type Result = Result<u64, String>;

    fn handle(&mut self, job: Start, ctx: &mut Context<Self>) -> Self::Result {
        let circles = job.cluster.circles.len();
        if self.shared.resyncing.load(Ordering::Acquire) {
            return Err("proxy is resyncing".into());
        }
        let wanted = job.op.busy_circles(circles);
        {
            let mut busy = self.shared.busy.lock();
            if let Some(c) = wanted.iter().find(|c| busy.contains(c)) {
                return Err(format!("circle {c} is migrating"));
            }
            busy.extend(wanted.iter().copied());
        }
        // Flags go up before the answer, so a client that polls the state
        // right after "accepted" sees the job.
        for &c in &job.op.target_circles() {
            set_migrating(&job.cluster, c, true);
        }
        if job.op.kind() == JobKind::Resync {
            self.shared.resyncing.store(true, Ordering::Release);
        }
        let id = self
            .shared
            .history
            .lock()
            .start(job.op.kind(), job.op.stats_circles(circles));
        let shared = self.shared.clone();
        ctx.spawn(
            async move {
                let points = run_job(&shared, &job, id).await;
                shared
                    .steps
                    .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
                {
                    let mut busy = shared.busy.lock();
                    for c in job.op.busy_circles(circles) {
                        busy.remove(&c);
                    }
                }
                // Last: a client that sees the job done can start the next one at once.
                finish(&shared, &job, id, points);
            }
            .into_actor(self),
        );
        Ok(id)
    }
}

/// Appends progress lines to `<mlog_dir>/<operation>.log`.
struct MigrationLog {
    file: Option<std::fs::File>,
}

impl MigrationLog {
    fn open(config: &Config, kind: JobKind) -> MigrationLog {
        let path = config.mlog_dir.join(format!("{}.log", kind.name()));
        let file = std::fs::create_dir_all(&config.mlog_dir)
            .and_then(|()| {
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
            })
            .map_err(
                |e| warn!(error = %e, path = %path.display(), "Cannot open the migration log."),
            )
            .ok();
        MigrationLog { file }
    }

    fn line(&mut self, text: &str) {
        if let Some(f) = &mut self.file {
            let now = chrono_like_now();
            let _ = writeln!(f, "{now} {text}");
        }
    }
}

/// Seconds since the epoch with milliseconds, for log lines.
fn chrono_like_now() -> String {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format!("{}.{:03}", d.as_secs(), d.subsec_millis())
}

/// Runs a job to its end; the points it copied.
async fn run_job(shared: &Jobs, job: &Start, id: u64) -> u64 {
    let kind = job.op.kind();
    let targets = job.op.target_circles();
    let mut log = MigrationLog::open(&job.config, kind);
    broadcast(job, &targets, true).await;
    let started = Instant::now();
    info!(operation = kind.name(), "Migration started.");
    match &job.op {
        Operation::Repair { spec, resume } => log.line(&format!(
            "repair start: {spec:?} resumed={}",
            resume.is_some()
        )),
        op => log.line(&format!("{} start: {op:?}", kind.name())),
    }
    let appended = copy::Appended::default();
    let points = match &job.op {
        Operation::Clear { circle } => clear(shared, job, *circle, &appended, &mut log).await,
        Operation::Repair { spec, resume } => {
            let resume = resume.as_deref().cloned();
            repair::run(shared, job, spec, resume, &appended, &mut log).await
        }
        _ => copy_all(shared, job, &appended, &mut log).await,
    };
    shared
        .history
        .lock()
        .set_phase(id, history::Phase::Delivering);
    wait_delivered(&appended, kind, &mut log).await;
    let secs = started.elapsed().as_secs_f64().max(0.001);
    info!(
        operation = kind.name(),
        points,
        elapsed_s = secs,
        points_per_s = (points as f64 / secs) as u64,
        "Migration done."
    );
    log.line(&format!(
        "{} done: points={points} elapsed_s={secs:.3} points_per_s={:.0}",
        kind.name(),
        points as f64 / secs
    ));
    for &c in &targets {
        set_migrating(&job.cluster, c, false);
    }
    if kind == JobKind::Resync {
        shared.resyncing.store(false, Ordering::Release);
    }
    broadcast(job, &targets, false).await;
    points
}

/// Ends job `id` in the history, with a copy of its own progress.
fn finish(shared: &Jobs, job: &Start, id: u64, points: u64) {
    let kind = job.op.kind();
    let end = if kind == JobKind::Repair {
        history::Ended {
            points,
            sources: None,
            repair: Some(repair::progress_json(shared)),
        }
    } else {
        let circles = job.op.stats_circles(job.cluster.circles.len());
        history::Ended {
            points,
            sources: Some(shared.sources(kind, &circles)),
            repair: None,
        }
    };
    shared.history.lock().finish(id, end);
}

/// Waits until every destination delivered (or dead-lettered) what the job appended to its
/// queue; a destination that is down keeps the job waiting, and says so every
/// [`DELIVERY_REPORT`].
async fn wait_delivered(appended: &copy::Appended, kind: JobKind, log: &mut MigrationLog) {
    let started = Instant::now();
    let mut reported = Instant::now();
    loop {
        let waiting = appended.undelivered();
        if waiting.is_empty() {
            break;
        }
        if reported.elapsed() >= DELIVERY_REPORT {
            reported = Instant::now();
            let waited_s = started.elapsed().as_secs();
            warn!(operation = kind.name(), backends = ?waiting, waited_s, "Migration copied everything; waiting for these destination backends to deliver it (reads keep avoiding the circle).");
            log.line(&format!(
                "{} waiting for delivery: backends={waiting:?} waited_s={waited_s}",
                kind.name()
            ));
        }
        actix_rt::time::sleep(DELIVERY_POLL).await;
    }
    let secs = started.elapsed().as_secs_f64();
    info!(
        operation = kind.name(),
        waited_s = secs,
        "Migration's copies delivered by every destination."
    );
    log.line(&format!("{} delivered: waited_s={secs:.3}", kind.name()));
}

fn set_migrating(cluster: &Cluster, circle: usize, on: bool) {
    if let Some(c) = cluster.circles.get(circle) {
        c.migrating.store(on, Ordering::Release);
    }
}

/// Tells the other proxies (`ha_addrs`) about the migrating flags, with this
/// proxy's credentials and scheme.
async fn broadcast(job: &Start, circles: &[usize], on: bool) {
    if job.ha_addrs.is_empty() {
        return;
    }
    let scheme = if job.config.https_enabled {
        "https"
    } else {
        "http"
    };
    let credentials = proxy_credentials(&job.config);
    for addr in &job.ha_addrs {
        let target = Arc::new(Target {
            url: format!("{scheme}://{addr}"),
            credentials: credentials.clone(),
            tls_skip_verify: false,
        });
        let c = Client::new(target, BROADCAST_TIMEOUT);
        let mut params: Vec<(String, String)> = Vec::new();
        if job.op.kind() == JobKind::Resync {
            params.push(("resyncing".into(), on.to_string()));
        }
        for &circle in circles {
            params.push(("circle_id".into(), circle.to_string()));
            params.push(("migrating".into(), on.to_string()));
        }
        if let Err(e) = c.post_form("/migrate/state", &params).await {
            warn!(addr = %addr, error = %e, "Telling another proxy about the migration failed.");
        }
    }
}

/// The proxy's own plaintext credentials (decrypted under `auth_secure`).
fn proxy_credentials(config: &Config) -> Option<(String, String)> {
    if !config.auth_enabled() {
        return None;
    }
    let (u, p) = (config.username.expose(), config.password.expose());
    if config.auth_secure {
        let d = |s: &str| crate::cipher::decrypt(s).unwrap_or_default();
        Some((d(u), d(p)))
    } else {
        Some((u.to_string(), p.to_string()))
    }
}

/// One source backend of a job, and where its measurements go.
struct Plan {
    /// Circle whose stats this source reports under.
    circle: usize,
    source: SourceBackend,
    /// Destination circles; the owner in each is the destination.
    dest_circles: Vec<usize>,
    /// Only destinations with these URLs (recovery).
    dest_urls: Vec<String>,
}

fn source_of(h: &BackendHandle) -> SourceBackend {
    SourceBackend {
        name: h.backend.info.name.clone(),
        target: h.backend.target.clone(),
    }
}

fn plans(job: &Start) -> Vec<Plan> {
    let cluster = &job.cluster;
    let mut out = Vec::new();
    match &job.op {
        Operation::Rebalance { circle, removed } => {
            if let Some(c) = cluster.circles.get(*circle) {
                for s in c
                    .backends
                    .iter()
                    .map(|h| source_of(h))
                    .chain(removed.iter().cloned())
                {
                    out.push(Plan {
                        circle: *circle,
                        source: s,
                        dest_circles: vec![*circle],
                        dest_urls: Vec::new(),
                    });
                }
            }
        }
        Operation::Recovery { from, to, urls } => {
            if let Some(c) = cluster.circles.get(*from) {
                for h in &c.backends {
                    out.push(Plan {
                        circle: *to,
                        source: source_of(h),
                        dest_circles: vec![*to],
                        dest_urls: urls.clone(),
                    });
                }
            }
        }
        Operation::Resync => {
            for c in &cluster.circles {
                let others: Vec<usize> =
                    (0..cluster.circles.len()).filter(|&o| o != c.id).collect();
                for h in &c.backends {
                    out.push(Plan {
                        circle: c.id,
                        source: source_of(h),
                        dest_circles: others.clone(),
                        dest_urls: Vec::new(),
                    });
                }
            }
        }
        Operation::Clear { .. } | Operation::Repair { .. } => {}
    }
    out
}

/// Databases of a backend (all but `_internal`, or the requested ones).
async fn databases(client: &Client, wanted: &[String]) -> Result<Vec<String>, client::Error> {
    let mut dbs = catalog::databases(client).await?;
    dbs.retain(|d| wanted.is_empty() || wanted.contains(d));
    Ok(dbs)
}

struct CopyTask {
    plan_circle: usize,
    source_url: String,
    client: Client,
    db: String,
    measurement: String,
    rps: Arc<Vec<PolicyRow>>,
    dests: Vec<Arc<BackendHandle>>,
}

/// Runs every copy of a rebalance, recovery or resync, noting what it appends in `appended`;
/// returns points copied.
async fn copy_all(
    shared: &Jobs,
    job: &Start,
    appended: &copy::Appended,
    log: &mut MigrationLog,
) -> u64 {
    let kind = job.op.kind();
    let plans = plans(job);
    let mut urls: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    for p in &plans {
        urls.entry(p.circle)
            .or_default()
            .push(p.source.target.url.clone());
    }
    for (c, u) in &urls {
        shared.reset(*c, kind, u);
    }
    let mut tasks = Vec::new();
    let mut prepared: HashSet<(String, String)> = HashSet::new();
    for plan in &plans {
        let client = client::cached(&plan.source.target, READ_TIMEOUT);
        let url = plan.source.target.url.clone();
        let dbs = match databases(&client, &job.dbs).await {
            Ok(d) => d,
            Err(e) => {
                warn!(backend = %plan.source.name, error = %e, "Source backend unavailable; skipped.");
                log.line(&format!("skip source {} ({url}): {e}", plan.source.name));
                shared.update(plan.circle, kind, &url, |s| s.failed += 1);
                continue;
            }
        };
        shared.update(plan.circle, kind, &url, |s| {
            s.database_total += dbs.len() as u64
        });
        for db in dbs {
            let rps = match catalog::retention_policies(&client, &db).await {
                Ok(r) => Arc::new(r),
                Err(e) => {
                    warn!(backend = %plan.source.name, db = %db, error = %e, "Listing retention policies failed; database skipped.");
                    shared.update(plan.circle, kind, &url, |s| s.failed += 1);
                    continue;
                }
            };
            let ms = match catalog::measurements(&client, &db).await {
                Ok(v) => v,
                Err(e) => {
                    warn!(backend = %plan.source.name, db = %db, error = %e, "Listing measurements failed; database skipped.");
                    shared.update(plan.circle, kind, &url, |s| s.failed += 1);
                    continue;
                }
            };
            shared.update(plan.circle, kind, &url, |s| {
                s.measurement_total += ms.len() as u64
            });
            for mm in ms {
                let dests = destinations(&job.cluster, plan, &db, &mm);
                if dests.is_empty() {
                    shared.update(plan.circle, kind, &url, |s| {
                        s.inplace_count += 1;
                        s.measurement_done += 1;
                    });
                    continue;
                }
                for d in &dests {
                    if prepared.insert((d.backend.info.name.clone(), db.clone())) {
                        prepare(&job.cluster, d, &db, &rps);
                    }
                }
                tasks.push(CopyTask {
                    plan_circle: plan.circle,
                    source_url: url.clone(),
                    client: client.clone(),
                    db: db.clone(),
                    measurement: mm,
                    rps: rps.clone(),
                    dests,
                });
            }
            shared.update(plan.circle, kind, &url, |s| s.database_done += 1);
        }
    }
    let workers = job.workers.max(1);
    let buffer_bytes = job.config.memory_budget().migration_bytes() / workers;
    let results = stream::iter(interleave_by(tasks, |t| t.source_url.as_str()))
        .map(|t| async move {
            let started = Instant::now();
            let mut copied = 0u64;
            let mut failed = 0u64;
            for rp in t.rps.iter().map(|rp| &rp.name) {
                let cj = copy::Job {
                    db: t.db.clone(),
                    rp: rp.clone(),
                    measurement: t.measurement.clone(),
                    since: job.since,
                    batch: job.batch,
                    range: None,
                    pace: None,
                    buffer_bytes,
                };
                match copy::copy_measurement(&job.cluster, &t.client, &t.dests, &cj, appended)
                    .await
                {
                    Ok(n) => copied += n,
                    Err(e) => {
                        failed = 1;
                        error!(db = %t.db, rp = %rp, measurement = %t.measurement, error = %e, "Copying a measurement failed.");
                    }
                }
            }
            shared.update(t.plan_circle, kind, &t.source_url, |s| {
                s.migrate_count += 1;
                s.measurement_done += 1;
                s.points += copied;
                s.failed += failed;
            });
            let dsts: Vec<&str> = t.dests.iter().map(|d| d.backend.info.url.as_str()).collect();
            let secs = started.elapsed().as_secs_f64().max(0.001);
            (
                format!(
                    "copied src={} dst={dsts:?} db={} mm={} points={copied} elapsed_s={secs:.3} points_per_s={:.0}",
                    t.source_url, t.db, t.measurement, copied as f64 / secs
                ),
                copied,
            )
        })
        .buffer_unordered(workers);
    // Logged as each copy ends, so the log shows the progress of a long job.
    let mut results = std::pin::pin!(results);
    let mut total = 0;
    while let Some((line, n)) = results.next().await {
        log.line(&line);
        total += n;
    }
    total
}

/// `items` reordered round robin by `key` (each key's own order kept):
/// consecutive copies read from different sources, so the `workers` copies
/// in flight spread over the source backends instead of all querying the
/// first one.
fn interleave_by<T>(items: Vec<T>, key: impl Fn(&T) -> &str) -> Vec<T> {
    let mut groups: Vec<std::collections::VecDeque<T>> = Vec::new();
    for item in items {
        match groups
            .iter_mut()
            .find(|g| g.front().is_some_and(|f| key(f) == key(&item)))
        {
            Some(g) => g.push_back(item),
            None => groups.push(std::collections::VecDeque::from([item])),
        }
    }
    let mut out = Vec::new();
    while groups.iter().any(|g| !g.is_empty()) {
        for g in &mut groups {
            out.extend(g.pop_front());
        }
    }
    out
}

/// Where a measurement of a source must be copied (empty: in place).
fn destinations(cluster: &Cluster, plan: &Plan, db: &str, mm: &str) -> Vec<Arc<BackendHandle>> {
    plan.dest_circles
        .iter()
        .filter_map(|&c| cluster.circles.get(c))
        .filter_map(|c| cluster.owner(c, db, mm).cloned())
        .filter(|owner| owner.backend.target.url != plan.source.target.url)
        .filter(|owner| {
            plan.dest_urls.is_empty() || plan.dest_urls.contains(&owner.backend.info.url)
        })
        .collect()
}

/// Queues the database and its retention policies on a destination ahead
/// of the copied points (idempotent statements; errors such as "already
/// exists with different settings" are harmless).
fn prepare(cluster: &Cluster, dest: &BackendHandle, db: &str, rps: &[PolicyRow]) {
    let mut statements = vec![format!("CREATE DATABASE {}", quote_ident(db))];
    for rp in rps {
        let duration = rp.duration.as_str();
        let mut q = format!(
            "CREATE RETENTION POLICY {} ON {} DURATION {} REPLICATION 1",
            quote_ident(&rp.name),
            quote_ident(db),
            if duration == "0s" { "INF" } else { duration }
        );
        let shard = rp.shard_group_duration.as_str();
        if !shard.is_empty() && shard != "0s" {
            q.push_str(&format!(" SHARD DURATION {shard}"));
        }
        if rp.default {
            q.push_str(" DEFAULT");
        }
        statements.push(q);
    }
    for q in statements {
        if let Err(e) = cluster.queue_statement(dest, db, &q) {
            warn!(backend = %dest.backend.info.name, db = %db, error = %e, "Queueing database preparation failed.");
        }
    }
}

/// Drops misplaced measurements from every backend of a circle (queued, noted in `appended`).
async fn clear(
    shared: &Jobs,
    job: &Start,
    circle: usize,
    appended: &copy::Appended,
    log: &mut MigrationLog,
) -> u64 {
    let Some(c) = job.cluster.circles.get(circle) else {
        return 0;
    };
    let urls: Vec<String> = c
        .backends
        .iter()
        .map(|h| h.backend.info.url.clone())
        .collect();
    shared.reset(circle, JobKind::Clear, &urls);
    let mut key = String::new();
    for (idx, h) in c.backends.iter().enumerate() {
        let client = client::cached(&h.backend.target, READ_TIMEOUT);
        let url = h.backend.info.url.clone();
        let dbs = match databases(&client, &job.dbs).await {
            Ok(d) => d,
            Err(e) => {
                warn!(backend = %h.backend.info.name, error = %e, "Backend unavailable; not cleared.");
                shared.update(circle, JobKind::Clear, &url, |s| s.failed += 1);
                continue;
            }
        };
        shared.update(circle, JobKind::Clear, &url, |s| {
            s.database_total += dbs.len() as u64
        });
        for db in dbs {
            let ms = match catalog::measurements(&client, &db).await {
                Ok(v) => v,
                Err(e) => {
                    warn!(backend = %h.backend.info.name, db = %db, error = %e, "Listing measurements failed; database not cleared.");
                    shared.update(circle, JobKind::Clear, &url, |s| s.failed += 1);
                    continue;
                }
            };
            shared.update(circle, JobKind::Clear, &url, |s| {
                s.measurement_total += ms.len() as u64
            });
            for mm in ms {
                let owner = job.cluster.placement.owner_index(c, &db, &mm, &mut key);
                let misplaced = owner != idx;
                let mut failed = 0;
                if misplaced {
                    let q = format!("DROP MEASUREMENT {}", quote_ident(&mm));
                    match job.cluster.queue_statement(h, &db, &q) {
                        Ok(seq) => {
                            appended.note(&[&h.backend.queue], seq);
                            log.line(&format!("clear backend={url} db={db} mm={mm}"));
                        }
                        Err(e) => {
                            failed = 1;
                            warn!(backend = %h.backend.info.name, error = %e, "Queueing DROP MEASUREMENT failed.")
                        }
                    }
                }
                shared.update(circle, JobKind::Clear, &url, |s| {
                    s.measurement_done += 1;
                    s.failed += failed;
                    if misplaced {
                        s.migrate_count += 1;
                    } else {
                        s.inplace_count += 1;
                    }
                });
            }
            shared.update(circle, JobKind::Clear, &url, |s| s.database_done += 1);
        }
    }
    0
}

#[cfg(test)]
mod tests {
    use super::{interleave_by, JobKind, Jobs, SourceProgress};

    #[test]
    fn copied_points_only_grow_across_jobs_while_progress_is_the_last_jobs() {
        let jobs = Jobs::default();
        let (a, b) = ("http://a:8086".to_string(), "http://b:8086".to_string());
        jobs.reset(0, JobKind::Rebalance, std::slice::from_ref(&a));
        jobs.update(0, JobKind::Rebalance, &a, |s| s.measurement_total = 4);
        jobs.update(0, JobKind::Rebalance, &a, |s| {
            s.measurement_done += 1;
            s.points += 30;
        });
        let first = (JobKind::Rebalance, Some(0), a.clone());
        assert_eq!(jobs.copied(), [(first.clone(), 30)]);
        assert_eq!(
            jobs.progress(),
            [SourceProgress {
                source: first.clone(),
                steps: 4,
                steps_done: 1,
            }]
        );
        // The next job starts its stats afresh; what was copied stays counted.
        jobs.reset(0, JobKind::Rebalance, std::slice::from_ref(&b));
        jobs.update(0, JobKind::Rebalance, &b, |s| s.points += 5);
        let second = (JobKind::Rebalance, Some(0), b.clone());
        assert_eq!(jobs.copied(), [(first, 30), (second.clone(), 5)]);
        let progress = jobs.progress();
        assert_eq!(progress.len(), 1);
        assert_eq!(progress[0].source, second);
        assert_eq!(jobs.repair_points_left(), None);
    }

    #[test]
    fn running_jobs_are_counted_by_kind_until_done() {
        let jobs = Jobs::default();
        let first = jobs.history.lock().start(JobKind::Rebalance, vec![0]);
        let second = jobs.history.lock().start(JobKind::Rebalance, vec![1]);
        jobs.history
            .lock()
            .set_phase(second, super::history::Phase::Delivering);
        assert_eq!(jobs.running(JobKind::Rebalance), 2);
        assert_eq!(jobs.running(JobKind::Resync), 0);
        jobs.history
            .lock()
            .finish(first, super::history::Ended::default());
        assert_eq!(jobs.running(JobKind::Rebalance), 1);
    }

    #[test]
    fn copies_take_turns_between_sources_in_their_own_order() {
        let items = vec!["a1", "a2", "a3", "b1", "c1", "c2", "b2"];
        let out = interleave_by(items, |s| &s[..1]);
        assert_eq!(out, ["a1", "b1", "c1", "a2", "b2", "c2", "a3"]);
        assert!(interleave_by(Vec::<&str>::new(), |s| s).is_empty());
    }
}
