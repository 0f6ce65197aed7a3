//! The cluster: every circle, and the write path that routes points to
//! their owner backend in each circle.
//!
//! A write is accepted only once its points are in the write-ahead queue
//! of every target backend (one atomic append); the backend actors deliver
//! from there. Lines that fail to parse are reported back individually and
//! never stop the good lines beside them.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix::prelude::*;
use rustc_hash::FxHashMap;

use crate::backend::Backend;
use crate::buffers;
use crate::circle::{BackendHandle, Circle, CircleSupervisor, StopSupervising};
use crate::config::Config;
use crate::line_protocol::{self, LineError, Precision};
use crate::rules::{Candidates, Decision, Rules};
use crate::schema::{self, DbSchema, Schema};
use crate::wal::{self, LineSpans, Wal, WriteLines};

mod diff;
mod placement;

pub(crate) use diff::ClusterDiff;
pub(crate) use placement::{Placement, Planned};

/// Errors while starting the cluster.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The write-ahead queue could not be opened or registered.
    #[error(transparent)]
    Wal(#[from] wal::Error),
}

/// One `/write` request, already authenticated and decompressed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClientWrite<'a> {
    /// Target database.
    pub db: &'a str,
    /// Target retention policy (may be empty).
    pub rp: &'a str,
    /// Precision of the timestamps in `body`.
    pub precision: Precision,
    /// Line-protocol body.
    pub body: &'a [u8],
    /// What the backends hold of `db` (see [`Schema::prepare`]).
    pub schema: &'a DbSchema,
}

/// Copies of a write's body [`Cluster::write`] holds at once: the lines, the normalised lines
/// and the queue's write batch. What a body is charged per byte against the memory budget
/// (`memory::Admission`), whether it came over HTTP or UDP.
pub(crate) const WRITE_COPIES: u64 = 3;

/// Why a write request queued nothing.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WriteError {
    /// influxd would refuse the request as a whole.
    #[error(transparent)]
    Refused(#[from] schema::WriteRefusal),
    /// The write-ahead queue refused the append.
    #[error(transparent)]
    Wal(#[from] wal::Error),
}

/// What happened to the lines of a write.
#[derive(Debug, Default)]
pub(crate) struct WriteOutcome {
    /// Points queued (per circle; each went to one backend of every circle).
    pub points: u64,
    /// Lines a `drop` rule took: acknowledged, not stored.
    pub ruled_out: u64,
    /// Lines that failed to parse, in body order.
    pub errors: Vec<LineError>,
    /// Parsed lines influxd's storage would drop, and why.
    pub dropped: schema::Finished,
    /// Backends with newly queued records, woken when this is dropped.
    pub wakeups: Wakeups,
}

/// Backends to wake after a write; they are woken when this is dropped, so
/// a wake-up cannot be forgotten, only deferred.
///
/// The HTTP handler drops it after the answer is on its way: a delivery
/// thread woken from the HTTP worker was often started on the worker's own
/// CPU and preempted it to gzip its batch before the worker had answered
/// (waking 4 backends took 0.1 ms at p50 but 2.1 ms at p90 and 3.1 ms at
/// p99 of a 5,000-line write to 2 circles, `docs/profile.md`).
#[derive(Debug, Default)]
pub(crate) struct Wakeups(Vec<Arc<BackendHandle>>);

impl Wakeups {
    /// True when no backend needs waking.
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Drop for Wakeups {
    fn drop(&mut self) {
        for backend in self.0.drain(..) {
            backend.notify();
        }
    }
}

/// All circles plus routing settings.
#[derive(Debug)]
pub(crate) struct Cluster {
    /// Circles in config order.
    pub circles: Vec<Arc<Circle>>,
    /// Where each measurement lives (the rings and the pin rules).
    pub placement: Arc<Placement>,
    /// What the write path checks of each line besides parsing it.
    lines: LinePolicy,
    /// Retention policies and field types of the backends' databases (kept over reloads).
    pub schema: Arc<Schema>,
    wal: Arc<Wal>,
    supervisors: Vec<Addr<CircleSupervisor>>,
}

/// The write-ahead queue of every backend of a config, opened before anything of a new
/// cluster starts: opening is the one step of building a cluster that can fail (storage
/// errors, a damaged queue id).
#[derive(Debug)]
pub(crate) struct Queues(FxHashMap<String, wal::Queue>);

impl Queues {
    /// Opens the queues `config` names; a queue that is already open keeps its bound until
    /// the cluster is built.
    pub(crate) fn open(config: &Config, wal: &Wal) -> Result<Queues, Error> {
        let mut queues = FxHashMap::default();
        for bc in config.circles.iter().flat_map(|c| c.backends.iter()) {
            let queue = match wal.opened(&bc.name) {
                Some(q) => q,
                None => wal.queue(&bc.name, config.wal_max_bytes)?,
            };
            queues.insert(bc.name.clone(), queue);
        }
        Ok(Queues(queues))
    }

    /// The queue of backend `name`, which [`Queues::open`] opened (config backend names are
    /// unique, validated at load).
    fn take(&self, name: &str) -> wal::Queue {
        self.0.get(name).cloned().unwrap_or_else(|| {
            unreachable!("backend {name} is not in the config its queues were opened for")
        })
    }
}

impl Cluster {
    /// The write-ahead queue's storage: failed or not, the free-space reserve (`/metrics`,
    /// `/health`).
    pub(crate) fn wal_storage(&self) -> wal::StorageState {
        self.wal.storage_state()
    }

    /// Bytes the write-ahead queue's files take on disk (`/metrics`).
    pub(crate) fn wal_disk_bytes(&self) -> u64 {
        self.wal.disk_bytes()
    }

    /// The write-ahead queue's memory (`/metrics`).
    pub(crate) fn wal_memory(&self) -> Option<wal::MemoryUsage> {
        self.wal.memory_usage()
    }

    /// Registers every backend's queue and starts the backend actors and
    /// circle supervisors. Must run inside an actix System.
    pub(crate) fn start(config: &Config, wal: Arc<Wal>) -> Result<Cluster, Error> {
        let queues = Queues::open(config, &wal)?;
        let diff = ClusterDiff::between(None, config);
        Ok(Cluster::build(config, wal, None, &diff, queues).0)
    }

    /// Applies `diff` (from the config `previous` runs, to `config`): builds the cluster
    /// `config` describes from the queues [`Queues::open`] opened for it, keeping the running
    /// actor of every backend the diff keeps and starting new ones for those it adds or
    /// replaces. Cannot fail, so a reload either fails before anything is stopped or started,
    /// or applies whole. Returns the previous backends not kept, for the caller to stop or
    /// drain.
    pub(crate) fn build(
        config: &Config,
        wal: Arc<Wal>,
        previous: Option<&Cluster>,
        diff: &ClusterDiff,
        queues: Queues,
    ) -> (Cluster, Vec<Arc<BackendHandle>>) {
        let settings = diff::settings(config);
        wal.set_min_free_mb(config.wal_min_free_mb);
        crate::memory::set_backends(config.circles.iter().map(|c| c.backends.len()).sum());
        let mut unused: Vec<Arc<BackendHandle>> = previous
            .map(|p| p.backends().cloned().collect())
            .unwrap_or_default();
        let mut circles = Vec::with_capacity(config.circles.len());
        for (id, cc) in config.circles.iter().enumerate() {
            let mut backends = Vec::with_capacity(cc.backends.len());
            for bc in &cc.backends {
                let running = unused
                    .iter()
                    .position(|h| h.backend.info.name == bc.name)
                    .map(|i| unused.swap_remove(i));
                let handle = match running {
                    Some(h) if diff.keeps(&bc.name) => h,
                    running => {
                        // The replaced actor must stop before a new one drains the same queue.
                        if let Some(old) = running {
                            old.stop();
                        }
                        let backend = Arc::new(Backend::new(
                            diff::info(cc, bc),
                            diff::target(bc),
                            queues.take(&bc.name),
                        ));
                        Arc::new(BackendHandle::start(backend, wal.clone(), settings.clone()))
                    }
                };
                // Bounds apply to reused backends too (a reload may change
                // them without touching anything else).
                let stats = &handle.backend.queue.stats;
                stats.set_bounds(config.wal_max_bytes, config.dead_letter_max_bytes);
                if let Err(e) = wal.trim_dead_letters(&handle.backend.queue) {
                    tracing::error!(backend = %bc.name, error = %e, "Trimming dead letters failed.");
                }
                backends.push(handle);
            }
            let before = previous.and_then(|p| p.circles.get(id));
            let migrating = before.map(|c| c.migrating.clone()).unwrap_or_default();
            let reads = before.map(|c| c.reads.clone()).unwrap_or_default();
            circles.push(Arc::new(Circle {
                id,
                name: cc.name.clone(),
                ring: placement::ring(config, cc),
                backends,
                migrating,
                reads,
            }));
        }
        let supervisors = circles
            .iter()
            .map(|c| CircleSupervisor::new(c.clone()).start())
            .collect();
        let cluster = Cluster {
            circles,
            placement: Arc::new(Placement::new(config)),
            lines: LinePolicy::new(config),
            schema: previous.map(|p| p.schema.clone()).unwrap_or_default(),
            wal,
            supervisors,
        };
        (cluster, unused)
    }

    /// The write-ahead queue.
    pub(crate) fn wal(&self) -> &Arc<Wal> {
        &self.wal
    }

    /// Owner backend of (db, measurement) in every circle, in circle order.
    pub(crate) fn owners(
        &self,
        db: &str,
        measurement: &str,
    ) -> Vec<(&Arc<Circle>, &Arc<BackendHandle>)> {
        self.circles
            .iter()
            .filter_map(|c| Some((c, self.owner(c, db, measurement)?)))
            .collect()
    }

    /// The backend of `circle` holding (db, measurement) ([`Placement`]).
    pub(crate) fn owner<'c>(
        &self,
        circle: &'c Circle,
        db: &str,
        measurement: &str,
    ) -> Option<&'c Arc<BackendHandle>> {
        let i = self
            .placement
            .owner_index(circle, db, measurement, &mut String::new());
        circle.backends.get(i)
    }

    /// Every backend of every circle.
    pub(crate) fn backends(&self) -> impl Iterator<Item = &Arc<BackendHandle>> {
        self.circles.iter().flat_map(|c| c.backends.iter())
    }

    /// Routes, stamps and queues the points of one write request.
    pub(crate) fn write(&self, req: &ClientWrite<'_>) -> Result<WriteOutcome, WriteError> {
        let (mut router, mut outcome) = self.route_lines(req, now_ns())?;
        if outcome.points > 0 {
            outcome.wakeups = router.commit()?;
        }
        Ok(outcome)
    }

    /// Parses, stamps and routes the lines of a body; `now_ns` stamps
    /// points without a timestamp.
    fn route_lines<'r>(
        &self,
        req: &ClientWrite<'r>,
        now_ns: i64,
    ) -> Result<(Router<'_, 'r>, WriteOutcome), schema::WriteRefusal> {
        let body = req.body;
        let mut check = req.schema.check(req.rp, req.precision, now_ns)?;
        let mut router = Router::new(self, req);
        let mut outcome = WriteOutcome::default();
        let policy = &self.lines;
        let mut rule_counts = vec![0u64; policy.rules.len()];
        for line in line_protocol::lines(body) {
            if line.len() > policy.max_line_bytes {
                outcome
                    .errors
                    .push(LineError::too_long(line, policy.max_line_bytes));
                continue;
            }
            let parsed = match line_protocol::parse(line) {
                Ok(p) => p,
                Err(e) => {
                    outcome.errors.push(e);
                    continue;
                }
            };
            // The time range is part of parsing in influxd: a line outside it is a parse error
            // and must not teach the schema check a field type.
            let start = router.lines.len();
            if let Err(e) = line_protocol::normalize_into(
                line,
                &parsed,
                req.precision,
                now_ns,
                router.lines.buffer(),
            ) {
                router.lines.truncate(start);
                outcome.errors.push(e);
                continue;
            }
            if let Err(e) = policy.check_time(line, &parsed, req.precision, now_ns) {
                router.lines.truncate(start);
                outcome.errors.push(e);
                continue;
            }
            let route = router.route_of(req.db, &parsed.measurement);
            // Rules come before the schema check: a dropped line must not teach a field type.
            if let Some(candidates) = router.candidates(route) {
                match policy.rules.decide(candidates, line, &parsed) {
                    Decision::Dropped(rule) => {
                        rule_counts[rule] += 1;
                        outcome.ruled_out += 1;
                        router.lines.truncate(start);
                        continue;
                    }
                    Decision::Pinned(rule) | Decision::Kept(rule) => rule_counts[rule] += 1,
                    Decision::Unruled => {}
                }
            }
            if check.line(line, &parsed) == schema::Verdict::Drop {
                router.lines.truncate(start);
                continue;
            }
            router.push(route, start);
            outcome.points += 1;
        }
        policy.rules.count(&rule_counts);
        outcome.dropped = check.finish()?;
        Ok((router, outcome))
    }

    /// Queues an InfluxQL statement for one backend, in order with its writes; its sequence
    /// number in the backend's queue.
    pub(crate) fn queue_statement(
        &self,
        backend: &BackendHandle,
        db: &str,
        query: &str,
    ) -> Result<u64, wal::Error> {
        let seq = self
            .wal
            .append_statement(&backend.backend.queue, db, query)?;
        backend.notify();
        Ok(seq)
    }

    /// Stops supervising the circles (this cluster is being replaced).
    pub(crate) fn stop_supervisors(&self) {
        for s in &self.supervisors {
            s.do_send(StopSupervising);
        }
    }

    /// Stops every actor (shutdown).
    pub(crate) fn stop(&self) {
        self.stop_supervisors();
        for b in self.backends() {
            b.stop();
        }
    }
}

/// What the write path checks of each line besides parsing it, from the config the cluster
/// was built for (a reload that changes any of it rebuilds the cluster).
#[derive(Debug)]
struct LinePolicy {
    /// Longest accepted line (`max_line_bytes`).
    max_line_bytes: usize,
    /// Points further than this from now are refused (`timestamp_window`), in nanoseconds.
    window_ns: Option<i64>,
    /// The line rules, with their counters.
    rules: Rules,
}

impl LinePolicy {
    fn new(config: &Config) -> LinePolicy {
        LinePolicy {
            max_line_bytes: config.max_line_bytes,
            window_ns: config
                .timestamp_window
                .map(|w| i64::try_from(w.as_nanos()).unwrap_or(i64::MAX)),
            rules: Rules::new(&config.rules),
        }
    }

    /// Refuses a point further than the timestamp window from `now_ns`. A line without a
    /// timestamp gets `now` and always passes.
    fn check_time(
        &self,
        line: &[u8],
        parsed: &line_protocol::Line<'_>,
        precision: Precision,
        now_ns: i64,
    ) -> Result<(), LineError> {
        let (Some(window), Some(ts)) = (self.window_ns, parsed.timestamp) else {
            return Ok(());
        };
        let ns = ts.saturating_mul(precision.nanos());
        if ns.abs_diff(now_ns) > window.unsigned_abs() {
            return Err(LineError::outside_window(
                line,
                window.unsigned_abs() / 1_000_000_000,
            ));
        }
        Ok(())
    }
}

/// Per-request routing: the normalised lines, stored once for every
/// circle, and the share of them each backend of the cluster receives.
///
/// Each circle used to get its own copy of every line; the queue append
/// (batch, log and memtable copies of ~800 KB for a 5,000-line request to
/// 2 circles) was half of a write's latency (`docs/profile.md`). How the
/// lines and shares are stored is the queue's business
/// ([`Wal::append_write`]).
struct Router<'c, 'r> {
    cluster: &'c Cluster,
    /// Flat index of the first backend of each circle.
    offsets: Vec<usize>,
    /// The normalised lines of the request.
    lines: WriteLines<'r>,
    /// What each flat backend index receives.
    shares: Vec<LineSpans>,
    key: String,
    /// The [`Route`] of each measurement seen in this request, by name: bodies interleave a
    /// few measurements line by line, and a ring lookup per line and circle was a tenth of the
    /// request's CPU. One lookup per line serves both the rules and the owners.
    routes: FxHashMap<String, usize>,
    /// The routes `routes` indexes.
    route_list: Vec<Route>,
}

/// What a request's lines of one measurement need: its owners and the rules that can apply.
struct Route {
    /// Owners, as flat backend indices (one per circle).
    owners: Box<[usize]>,
    /// The rules that can apply to its lines, in order.
    candidates: Candidates,
}

impl<'c, 'r> Router<'c, 'r> {
    /// A router for the lines of `req`.
    fn new(cluster: &'c Cluster, req: &ClientWrite<'r>) -> Router<'c, 'r> {
        let mut offsets = Vec::with_capacity(cluster.circles.len());
        let mut shares = Vec::new();
        // Sized for an even spread of ~64-byte lines, one span each (bodies
        // interleave measurements), so the span lists rarely regrow.
        let lines_guess = req.body.len() / 64 + 1;
        for c in &cluster.circles {
            offsets.push(shares.len());
            let share = lines_guess / c.backends.len().max(1) + 1;
            shares.extend(c.backends.iter().map(|_| LineSpans::with_capacity(share)));
        }
        // Room for appended timestamps, so the buffer rarely regrows.
        let buf = buffers::take(req.body.len() + req.body.len() / 4 + 64);
        let lines = WriteLines::reusing(buf, req.db, req.rp);
        Router {
            cluster,
            offsets,
            lines,
            shares,
            key: String::new(),
            routes: FxHashMap::default(),
            route_list: Vec::new(),
        }
    }

    /// The route of `measurement` (an index for [`Router::candidates`] and [`Router::push`]),
    /// worked out at its first line in the request.
    fn route_of(&mut self, db: &str, measurement: &str) -> usize {
        // One lookup for a measurement already seen (the common case).
        if let Some(&i) = self.routes.get(measurement) {
            return i;
        }
        let placement = &self.cluster.placement;
        let key = &mut self.key;
        let owners: Box<[usize]> = self
            .cluster
            .circles
            .iter()
            .enumerate()
            .map(|(c, circle)| {
                self.offsets[c] + placement.owner_index(circle, db, measurement, key)
            })
            .collect();
        let candidates = self.cluster.lines.rules.for_measurement(db, measurement);
        self.route_list.push(Route { owners, candidates });
        let i = self.route_list.len() - 1;
        self.routes.insert(measurement.to_owned(), i);
        i
    }

    /// The rules that can apply to the lines of `route`; `None` when none can.
    fn candidates(&self, route: usize) -> Option<&Candidates> {
        self.route_list
            .get(route)
            .map(|r| &r.candidates)
            .filter(|c| !c.is_empty())
    }

    /// Gives the normalised line at `start..` of the lines to the owners of `route` in
    /// every circle.
    fn push(&mut self, route: usize, start: usize) {
        let len = self.lines.len() - start;
        let Some(route) = self.route_list.get(route) else {
            return;
        };
        for &i in route.owners.iter() {
            self.shares[i].push(start, len);
        }
    }

    /// Appends the lines, each receiving backend its share, atomically;
    /// returns the backends to wake.
    fn commit(&mut self) -> Result<Wakeups, wal::Error> {
        let receivers: Vec<(&Arc<BackendHandle>, &LineSpans)> = self
            .cluster
            .backends()
            .zip(&self.shares)
            .filter(|(_, share)| !share.is_empty())
            .collect();
        let shares: Vec<(&wal::Queue, &LineSpans)> = receivers
            .iter()
            .map(|&(handle, share)| (&handle.backend.queue, share))
            .collect();
        self.cluster.wal.append_write(&mut self.lines, &shares)?;
        Ok(Wakeups(
            receivers.into_iter().map(|(h, _)| Arc::clone(h)).collect(),
        ))
    }
}

impl Drop for Router<'_, '_> {
    fn drop(&mut self) {
        buffers::give(self.lines.take_buffer());
    }
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_nanos() as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes `body` to a cluster of `circles` (backends that never answer,
    /// so the records stay queued); returns the lines each backend's queue
    /// holds, in config order, and how many appends share their lines.
    async fn queued_after_write(circles: &str, body: &[u8]) -> (Vec<Vec<u8>>, usize) {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::from_str(&format!(r#"{{"circles": {circles}}}"#)).unwrap();
        let wal = Arc::new(Wal::open(dir.path(), crate::wal::Durability::Buffered).unwrap());
        let cluster = Cluster::start(&config, wal.clone()).unwrap();
        let request = ClientWrite {
            db: "db",
            rp: "",
            precision: Precision::Nanoseconds,
            body,
            schema: &DbSchema::unknown(),
        };
        let outcome = cluster.write(&request).unwrap();
        assert!(outcome.errors.is_empty());
        let queued = cluster
            .backends()
            .map(|b| {
                let entries = wal
                    .reader(b.backend.queue.clone())
                    .read(0, u64::MAX, u64::MAX)
                    .unwrap();
                let lines: Vec<Vec<u8>> = entries
                    .iter()
                    .map(|e| match e.work().unwrap() {
                        wal::Work::Points { lines, .. } => lines.to_vec(),
                        other => panic!("{other:?}"),
                    })
                    .collect();
                lines.concat()
            })
            .collect();
        cluster.stop();
        (queued, wal.shared_appends())
    }

    const BODY: &[u8] = b"cpu f=1 1\nmem f=1 1\ncpu f=2 2\nmem f=2 2\n";

    /// The lines of [`BODY`] whose measurement is in `queued`, in body order.
    fn body_lines_like(queued: &[u8]) -> Vec<u8> {
        let text = String::from_utf8(queued.to_vec()).unwrap();
        let measurements: Vec<&str> = text.lines().map(|l| &l[..3]).collect();
        BODY.split_inclusive(|&b| b == b'\n')
            .filter(|l| measurements.iter().any(|m| l.starts_with(m.as_bytes())))
            .flatten()
            .copied()
            .collect()
    }

    #[actix_rt::test]
    async fn two_circles_share_one_copy_of_the_lines() {
        let (queued, shared) = queued_after_write(
            r#"[{"name": "c1", "backends": [{"name": "a", "url": "http://127.0.0.1:1"}]},
                {"name": "c2", "backends": [{"name": "b", "url": "http://127.0.0.1:1"},
                                            {"name": "c", "url": "http://127.0.0.1:1"}]}]"#,
            BODY,
        )
        .await;
        assert_eq!(shared, 1);
        assert_eq!(queued[0], BODY);
        // Circle 2 splits the measurements between its backends, each in
        // body order.
        assert_eq!(queued[1].len() + queued[2].len(), BODY.len());
        for lines in &queued[1..] {
            assert_eq!(lines, &body_lines_like(lines));
        }
    }

    #[actix_rt::test]
    async fn a_line_outside_the_time_range_teaches_no_field_type() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::from_str(
            r#"{"circles": [{"name": "c1", "backends": [{"name": "a", "url": "http://127.0.0.1:1"}]}]}"#,
        )
        .unwrap();
        let wal = Arc::new(Wal::open(dir.path(), crate::wal::Durability::Buffered).unwrap());
        let cluster = Cluster::start(&config, wal).unwrap();
        let schema = DbSchema::unknown();
        let request = ClientWrite {
            db: "db",
            rp: "",
            precision: Precision::Nanoseconds,
            body: b"m f=1i 9223372036854775807\nm f=1.5 1\n",
            schema: &schema,
        };
        // influxd refuses the first line while parsing, so `f` is new to the second: no
        // in-request type conflict, one point kept.
        let outcome = cluster.write(&request).unwrap();
        cluster.stop();
        assert_eq!(outcome.points, 1);
        assert_eq!(outcome.errors.len(), 1);
        assert!(outcome.errors[0]
            .to_string()
            .ends_with("time outside range -9223372036854775806 - 9223372036854775806"));
    }

    #[actix_rt::test]
    async fn a_reload_whose_queue_cannot_open_stops_and_starts_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Arc::new(Wal::open(dir.path(), crate::wal::Durability::Buffered).unwrap());
        let old = Config::from_str(
            r#"{"circles": [{"name": "c1", "backends": [{"name": "a", "url": "http://127.0.0.1:1"}]}]}"#,
        )
        .unwrap();
        let running = Cluster::start(&old, wal.clone()).unwrap();
        // `a` moves (a new actor) and `b` joins, but `b`'s queue id is unreadable.
        let new = Config::from_str(
            r#"{"wal_max_bytes": 8192, "circles": [{"name": "c1", "backends": [
                {"name": "a", "url": "http://127.0.0.1:2"},
                {"name": "b", "url": "http://127.0.0.1:3"}]}]}"#,
        )
        .unwrap();
        wal.damage_queue_id("b");
        let diff = ClusterDiff::between(Some(&old), &new);
        let reload = Queues::open(&new, &wal)
            .map(|queues| Cluster::build(&new, wal.clone(), Some(&running), &diff, queues));
        assert!(reload.is_err());
        let a = running.backends().next().unwrap();
        assert!(
            !a.is_stopped(),
            "the running backend was stopped by a failed reload"
        );
        assert_ne!(a.backend.queue.stats.snapshot().max_bytes, 8192);
        running.stop();
    }

    /// Applies the reload from `old` to `new` on `running`; returns the new cluster and the
    /// previous backends it did not keep.
    fn reload(running: &Cluster, old: &Config, new: &Config) -> (Cluster, Vec<Arc<BackendHandle>>) {
        let diff = ClusterDiff::between(Some(old), new);
        let queues = Queues::open(new, &running.wal).unwrap();
        Cluster::build(new, running.wal.clone(), Some(running), &diff, queues)
    }

    #[actix_rt::test]
    async fn a_new_queue_bound_applies_to_the_running_actor() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Arc::new(Wal::open(dir.path(), crate::wal::Durability::Buffered).unwrap());
        let config = |extra: &str| {
            Config::from_str(&format!(
                r#"{{{extra} "circles": [{{"name": "c1", "backends": [{{"name": "a", "url": "http://127.0.0.1:1"}}]}}]}}"#
            ))
            .unwrap()
        };
        let (old, new) = (
            config(""),
            config(r#""wal_max_bytes": 8192, "dead_letter_max_bytes": 4096,"#),
        );
        let running = Cluster::start(&old, wal).unwrap();
        let (cluster, unused) = reload(&running, &old, &new);
        let (before, after) = (
            running.backends().next().unwrap(),
            cluster.backends().next().unwrap(),
        );
        assert!(Arc::ptr_eq(before, after), "the actor was replaced");
        assert!(unused.is_empty() && !after.is_stopped());
        let stats = &after.backend.queue.stats;
        assert_eq!(stats.snapshot().max_bytes, 8192);
        assert_eq!(stats.snapshot().dead_max_bytes, 4096);
        cluster.stop();
    }

    #[actix_rt::test]
    async fn a_new_url_replaces_the_actor_and_a_removed_backend_is_handed_back() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Arc::new(Wal::open(dir.path(), crate::wal::Durability::Buffered).unwrap());
        let old = Config::from_str(
            r#"{"circles": [{"name": "c1", "backends": [{"name": "a", "url": "http://127.0.0.1:1"},
                                                          {"name": "b", "url": "http://127.0.0.1:2"}]}]}"#,
        )
        .unwrap();
        let new = Config::from_str(
            r#"{"circles": [{"name": "c1", "backends": [{"name": "a", "url": "http://127.0.0.1:3"}]}]}"#,
        )
        .unwrap();
        let running = Cluster::start(&old, wal).unwrap();
        let old_a = running.backends().next().unwrap().clone();
        let (cluster, unused) = reload(&running, &old, &new);
        let new_a = cluster.backends().next().unwrap();
        assert!(!Arc::ptr_eq(&old_a, new_a));
        assert!(old_a.is_stopped() && !new_a.is_stopped());
        assert_eq!(new_a.backend.target.url, "http://127.0.0.1:3");
        let names: Vec<&str> = unused
            .iter()
            .map(|h| h.backend.info.name.as_str())
            .collect();
        assert_eq!(names, ["b"]);
        for h in unused {
            h.stop();
        }
        cluster.stop();
    }

    #[actix_rt::test]
    async fn lines_for_one_backend_are_stored_as_its_own_record() {
        let (queued, shared) = queued_after_write(
            r#"[{"name": "c1", "backends": [{"name": "a", "url": "http://127.0.0.1:1"}]}]"#,
            BODY,
        )
        .await;
        assert_eq!(shared, 0);
        assert_eq!(queued, vec![BODY.to_vec()]);
    }
}
