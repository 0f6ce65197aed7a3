//! What `top` shows, computed from scrapes of `/metrics`: rates are the difference of two
//! scrapes over the time between them, the p99 write latency is read from the histogram's
//! bucket increments over that interval (as Prometheus' `histogram_quantile` over a `rate`),
//! and a migration's rate and ETA are averaged since `top` first saw it move, so they do not
//! jump with every measurement copied.
//!
//! Pure: scrapes come in with the instant they were taken; [`Model::frame`] gives the rows
//! the view draws.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::scrape::{Metrics, Sample};

/// The write latency quantile shown per backend.
pub(crate) const LATENCY_QUANTILE: f64 = 0.99;

/// One scrape, and when it was taken.
#[derive(Debug, Clone)]
pub(crate) struct Scrape {
    /// When the answer arrived.
    pub at: Instant,
    /// What it said.
    pub metrics: Metrics,
}

/// Where a migration started to be watched: the first scrape that showed it.
#[derive(Debug, Clone, Copy)]
struct Watched {
    at: Instant,
    done: f64,
    points: f64,
}

/// The scrapes so far and what is needed across them.
#[derive(Debug, Default)]
pub(crate) struct Model {
    previous: Option<Scrape>,
    current: Option<Scrape>,
    /// Migrations by (operation, circle, backend), from when they were first seen running.
    watched: HashMap<[String; 3], Watched>,
    /// The last scrape's failure, until one succeeds.
    error: Option<String>,
    /// Failures in a row.
    failures: u32,
}

/// A backend's state, from its metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    /// Answering, nothing to catch up.
    Up,
    /// Answering again, draining what queued while it was down.
    Draining,
    /// Not answering its health checks or writes.
    Down,
}

impl State {
    /// As shown.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            State::Up => "up",
            State::Draining => "draining",
            State::Down => "down",
        }
    }
}

/// One backend's line.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct BackendRow {
    /// Its circle's name.
    pub circle: String,
    /// Its name.
    pub name: String,
    /// Up, draining or down.
    pub state: State,
    /// Points accepted into its queue per second (`None` before two scrapes).
    pub points_in: Option<f64>,
    /// Points it acknowledged per second.
    pub delivered: Option<f64>,
    /// Points waiting in its queue.
    pub queue_points: f64,
    /// Records waiting in its queue.
    pub queue_records: f64,
    /// Age of its oldest queued record, seconds.
    pub queue_age: f64,
    /// p99 of its write latency over the last interval, seconds (`None` without writes).
    pub p99: Option<f64>,
    /// Points kept in its dead-letter store.
    pub dead_points: f64,
}

/// One circle's line.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CircleRow {
    /// Its name.
    pub name: String,
    /// Every backend active.
    pub active: bool,
    /// A migration writes into it (reads avoid it).
    pub migrating: bool,
    /// Reads it answered per second.
    pub reads: Option<f64>,
    /// Its share of the reads of every circle over the interval (`None` without reads).
    pub share: Option<f64>,
}

/// One source of one migration.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct MigrationRow {
    /// `rebalance`, `recovery`, `resync`, `clear`, `repair`.
    pub operation: String,
    /// The circle its progress is kept under (empty for a repair).
    pub circle: String,
    /// The source backend (empty for a repair).
    pub backend: String,
    /// Jobs of this operation are running.
    pub running: bool,
    /// Steps done (measurements, or buckets for a repair).
    pub done: f64,
    /// Steps in all.
    pub total: f64,
    /// Points copied per second since it was first seen.
    pub rate: Option<f64>,
    /// Time left at the rate so far.
    pub eta: Option<Duration>,
}

impl MigrationRow {
    /// What a step is.
    pub(crate) fn unit(&self) -> &'static str {
        if self.operation == "repair" {
            "buckets"
        } else {
            "measurements"
        }
    }

    /// Done, from 0 to 1.
    pub(crate) fn ratio(&self) -> f64 {
        if self.total > 0.0 {
            (self.done / self.total).clamp(0.0, 1.0)
        } else {
            0.0
        }
    }

    /// Running and not all steps done.
    pub(crate) fn in_progress(&self) -> bool {
        self.running && self.done < self.total
    }
}

/// The proxy as a whole.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Overview {
    /// Its version.
    pub version: String,
    /// Seconds since it started.
    pub uptime: Option<f64>,
    /// Resident memory, bytes.
    pub rss: Option<f64>,
    /// The memory budget, bytes.
    pub budget: Option<f64>,
    /// The write-ahead queue's files, bytes.
    pub wal_disk: Option<f64>,
    /// Free bytes on data_dir's filesystem.
    pub free_disk: Option<f64>,
    /// The queue's storage takes writes.
    pub wal_ok: bool,
    /// Writes wait for delivery: the proxy's CPU is used up (`influx_proxy_write_pacing`).
    pub pacing: bool,
}

/// Everything one screen shows.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Frame {
    /// The proxy as a whole (`None` before the first scrape).
    pub overview: Option<Overview>,
    /// Backends in circle and config order.
    pub backends: Vec<BackendRow>,
    /// Circles in config order.
    pub circles: Vec<CircleRow>,
    /// Migrations' sources, running ones first.
    pub migrations: Vec<MigrationRow>,
    /// The last scrape's failure and how many in a row.
    pub error: Option<(String, u32)>,
    /// Seconds between the last two scrapes.
    pub interval: Option<f64>,
}

impl Model {
    /// Takes a successful scrape.
    pub(crate) fn push(&mut self, scrape: Scrape) {
        self.error = None;
        self.failures = 0;
        self.previous = self.current.take();
        self.current = Some(scrape);
        self.watch_migrations();
    }

    /// Takes a failed scrape: shown until one succeeds; the numbers stay.
    pub(crate) fn fail(&mut self, error: String) {
        self.error = Some(error);
        self.failures = self.failures.saturating_add(1);
    }

    /// Notes where each running migration was when first seen (or restarted).
    fn watch_migrations(&mut self) {
        let Some(cur) = &self.current else { return };
        let m = &cur.metrics;
        let mut seen = Vec::new();
        for s in m.series("influx_proxy_migration_steps_done") {
            let key = migration_key(s);
            let running = running(m, &key[0]);
            if !running {
                continue;
            }
            let points = points_copied(m, &key).unwrap_or(0.0);
            let start = Watched {
                at: cur.at,
                done: s.value,
                points,
            };
            match self.watched.get(&key) {
                // A new job of the same kind restarted from fewer steps done.
                Some(w) if w.done <= s.value && w.points <= points => {}
                _ => {
                    self.watched.insert(key.clone(), start);
                }
            }
            seen.push(key);
        }
        self.watched.retain(|k, _| seen.contains(k));
    }

    /// The rows to draw now.
    pub(crate) fn frame(&self) -> Frame {
        let mut frame = Frame {
            error: self.error.clone().map(|e| (e, self.failures)),
            ..Frame::default()
        };
        let Some(cur) = &self.current else {
            return frame;
        };
        let prev = self.previous.as_ref();
        let dt = prev.map(|p| cur.at.saturating_duration_since(p.at).as_secs_f64());
        let dt = dt.filter(|d| *d > 0.0);
        frame.interval = dt;
        let rates = Rates {
            cur: &cur.metrics,
            prev: prev.map(|p| &p.metrics),
            dt,
        };
        frame.overview = Some(overview(&cur.metrics));
        frame.backends = backends(&rates);
        frame.circles = circles(&rates);
        frame.migrations = self.migrations(cur);
        frame
    }

    fn migrations(&self, cur: &Scrape) -> Vec<MigrationRow> {
        let m = &cur.metrics;
        let mut rows: Vec<MigrationRow> = m
            .series("influx_proxy_migration_steps")
            .iter()
            .map(|s| {
                let key = migration_key(s);
                let done = m
                    .get("influx_proxy_migration_steps_done", &labels_of(&key))
                    .unwrap_or(0.0);
                let running = running(m, &key[0]);
                let mut row = MigrationRow {
                    operation: key[0].clone(),
                    circle: key[1].clone(),
                    backend: key[2].clone(),
                    running,
                    done,
                    total: s.value,
                    rate: None,
                    eta: None,
                };
                if let Some(w) = self.watched.get(&key).filter(|_| row.in_progress()) {
                    let secs = cur.at.saturating_duration_since(w.at).as_secs_f64();
                    let points = points_copied(m, &key).unwrap_or(0.0);
                    if secs > 0.0 {
                        row.rate = Some((points - w.points).max(0.0) / secs);
                        row.eta = eta(&row, m, w, secs);
                    }
                }
                row
            })
            .collect();
        // Running first, then as listed (operation, circle, backend).
        rows.sort_by_key(|r| !r.running);
        rows
    }
}

/// Time left: steps left at the steps' pace so far; for a repair, the points it has still to
/// write at the points' pace so far.
fn eta(row: &MigrationRow, m: &Metrics, w: &Watched, secs: f64) -> Option<Duration> {
    let (left, pace) = if row.operation == "repair" {
        let left = m.get("influx_proxy_repair_points_left", &[])?;
        (left, row.rate?)
    } else {
        (row.total - row.done, (row.done - w.done) / secs)
    };
    (pace > 0.0 && left.is_finite()).then(|| Duration::from_secs_f64((left / pace).min(1e9)))
}

fn migration_key(s: &Sample) -> [String; 3] {
    [
        s.label("operation").to_string(),
        s.label("circle").to_string(),
        s.label("backend").to_string(),
    ]
}

fn labels_of(key: &[String; 3]) -> [(&'static str, &str); 3] {
    [
        ("operation", key[0].as_str()),
        ("circle", key[1].as_str()),
        ("backend", key[2].as_str()),
    ]
}

fn running(m: &Metrics, operation: &str) -> bool {
    m.get(
        "influx_proxy_migration_running",
        &[("operation", operation)],
    )
    .is_some_and(|n| n > 0.0)
}

fn points_copied(m: &Metrics, key: &[String; 3]) -> Option<f64> {
    m.get("influx_proxy_migration_points_total", &labels_of(key))
}

/// Two scrapes and the time between them.
struct Rates<'a> {
    cur: &'a Metrics,
    prev: Option<&'a Metrics>,
    dt: Option<f64>,
}

impl Rates<'_> {
    /// Per-second increase of counter `name{labels}`; a counter that went down (the proxy
    /// restarted) counts from zero, as Prometheus' `rate` does.
    fn rate(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let now = self.cur.get(name, labels)?;
        let before = self.prev?.get(name, labels).unwrap_or(0.0);
        let increase = if now >= before { now - before } else { now };
        Some(increase / self.dt?)
    }
}

fn overview(m: &Metrics) -> Overview {
    let version = m
        .series("influx_proxy_build_info")
        .first()
        .map(|s| s.label("version").to_string())
        .unwrap_or_default();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    Overview {
        version,
        uptime: m
            .get("process_start_time_seconds", &[])
            .map(|t| (now - t).max(0.0)),
        rss: m.get("process_resident_memory_bytes", &[]),
        budget: m.get("influx_proxy_memory_budget_bytes", &[]),
        wal_disk: m.get("influx_proxy_wal_disk_bytes", &[]),
        free_disk: m.get("influx_proxy_wal_free_bytes", &[]),
        wal_ok: m.get("influx_proxy_wal_storage_ok", &[]) != Some(0.0),
        pacing: m.get("influx_proxy_write_pacing", &[]) == Some(1.0),
    }
}

fn backends(r: &Rates<'_>) -> Vec<BackendRow> {
    let m = r.cur;
    m.series("influx_proxy_backend_active")
        .iter()
        .map(|s| {
            let (circle, name) = (s.label("circle"), s.label("backend"));
            let id = [("circle", circle), ("backend", name)];
            let get = |metric: &str| m.get(metric, &id).unwrap_or(0.0);
            let state = if s.value == 0.0 {
                State::Down
            } else if get("influx_proxy_backend_rewriting") > 0.0 {
                State::Draining
            } else {
                State::Up
            };
            BackendRow {
                circle: circle.to_string(),
                name: name.to_string(),
                state,
                points_in: r.rate("influx_proxy_backend_queued_points_total", &id),
                delivered: r.rate("influx_proxy_backend_delivered_points_total", &id),
                queue_points: get("influx_proxy_backend_queue_points"),
                queue_records: get("influx_proxy_backend_queue_records"),
                queue_age: get("influx_proxy_backend_queue_oldest_record_age_seconds"),
                p99: r.prev.and_then(|prev| {
                    let name = "influx_proxy_backend_write_duration_seconds_bucket";
                    let buckets = bucket_increase(m, prev, name, &id);
                    quantile(LATENCY_QUANTILE, &buckets)
                }),
                dead_points: get("influx_proxy_backend_dead_letter_points_total"),
            }
        })
        .collect()
}

fn circles(r: &Rates<'_>) -> Vec<CircleRow> {
    let m = r.cur;
    let mut rows: Vec<CircleRow> = m
        .series("influx_proxy_circle_active")
        .iter()
        .map(|s| {
            let id = [("circle", s.label("circle"))];
            CircleRow {
                name: s.label("circle").to_string(),
                active: s.value > 0.0,
                migrating: m
                    .get("influx_proxy_circle_migrating", &id)
                    .is_some_and(|v| v > 0.0),
                reads: r.rate("influx_proxy_circle_reads_total", &id),
                share: None,
            }
        })
        .collect();
    let total: f64 = rows.iter().filter_map(|c| c.reads).sum();
    if total > 0.0 {
        for c in &mut rows {
            c.share = c.reads.map(|r| r / total);
        }
    }
    rows
}

/// `(upper bound, cumulative increase)` of each bucket of a histogram series between two
/// scrapes, by ascending bound (`+Inf` last).
fn bucket_increase(
    cur: &Metrics,
    prev: &Metrics,
    name: &str,
    labels: &[(&str, &str)],
) -> Vec<(f64, f64)> {
    let mut out: Vec<(f64, f64)> = cur
        .series(name)
        .iter()
        .filter(|s| s.matches(labels))
        .filter_map(|s| {
            let le = s.label("le");
            let bound = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            let mut wanted = labels.to_vec();
            wanted.push(("le", le));
            let before = prev.get(name, &wanted).unwrap_or(0.0);
            let increase = if s.value >= before {
                s.value - before
            } else {
                s.value
            };
            Some((bound, increase))
        })
        .collect();
    out.sort_by(|a, b| a.0.total_cmp(&b.0));
    out
}

/// The `q` quantile of cumulative buckets, interpolated linearly inside the bucket it falls
/// in, as Prometheus' `histogram_quantile` does (the largest finite bound when it falls in
/// `+Inf`). `None` without observations.
pub(crate) fn quantile(q: f64, buckets: &[(f64, f64)]) -> Option<f64> {
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut lower = (0.0, 0.0);
    for &(bound, count) in buckets {
        if count >= rank {
            if bound.is_infinite() {
                return Some(lower.0);
            }
            let inside = count - lower.1;
            if inside <= 0.0 {
                return Some(bound);
            }
            return Some(lower.0 + (bound - lower.0) * (rank - lower.1) / inside);
        }
        lower = (bound, count);
    }
    Some(lower.0)
}

/// The columns backends can be sorted by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum SortBy {
    /// Circle, then config order.
    #[default]
    Circle,
    /// Backend name.
    Name,
    /// Points in per second.
    PointsIn,
    /// Delivered per second.
    Delivered,
    /// Queued points.
    Queue,
    /// Oldest queued record.
    Age,
    /// Write latency.
    Latency,
    /// Dead letters.
    Dead,
}

impl SortBy {
    /// The next column (`s` cycles through them).
    pub(crate) fn next(self) -> SortBy {
        match self {
            SortBy::Circle => SortBy::Name,
            SortBy::Name => SortBy::PointsIn,
            SortBy::PointsIn => SortBy::Delivered,
            SortBy::Delivered => SortBy::Queue,
            SortBy::Queue => SortBy::Age,
            SortBy::Age => SortBy::Latency,
            SortBy::Latency => SortBy::Dead,
            SortBy::Dead => SortBy::Circle,
        }
    }

    /// The column's heading, as in the table.
    pub(crate) fn heading(self) -> &'static str {
        match self {
            SortBy::Circle => "circle",
            SortBy::Name => "backend",
            SortBy::PointsIn => "in/s",
            SortBy::Delivered => "out/s",
            SortBy::Queue => "queue",
            SortBy::Age => "age",
            SortBy::Latency => "p99",
            SortBy::Dead => "dead",
        }
    }
}

/// The backends to show: those whose name or circle contains `filter` (case-insensitive),
/// sorted by `by` (numbers largest first; `reverse` flips it); ties keep config order.
pub(crate) fn arrange(
    rows: &[BackendRow],
    by: SortBy,
    reverse: bool,
    filter: &str,
) -> Vec<BackendRow> {
    let filter = filter.to_lowercase();
    let mut out: Vec<BackendRow> = rows
        .iter()
        .filter(|r| {
            filter.is_empty()
                || r.name.to_lowercase().contains(&filter)
                || r.circle.to_lowercase().contains(&filter)
        })
        .cloned()
        .collect();
    let number = |r: &BackendRow| -> f64 {
        match by {
            SortBy::Circle | SortBy::Name => 0.0,
            SortBy::PointsIn => r.points_in.unwrap_or(-1.0),
            SortBy::Delivered => r.delivered.unwrap_or(-1.0),
            SortBy::Queue => r.queue_points,
            SortBy::Age => r.queue_age,
            SortBy::Latency => r.p99.unwrap_or(-1.0),
            SortBy::Dead => r.dead_points,
        }
    };
    match by {
        SortBy::Circle => {}
        SortBy::Name => out.sort_by(|a, b| a.name.cmp(&b.name)),
        _ => out.sort_by(|a, b| number(b).total_cmp(&number(a))),
    }
    if reverse {
        out.reverse();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: &str = "\
influx_proxy_build_info{version=\"2.5.12\",commit=\"abc\"} 1
influx_proxy_circle_active{circle=\"c1\"} 1
influx_proxy_circle_active{circle=\"c2\"} 0
influx_proxy_circle_migrating{circle=\"c1\"} 0
influx_proxy_circle_migrating{circle=\"c2\"} 1
influx_proxy_circle_reads_total{circle=\"c1\"} 100
influx_proxy_circle_reads_total{circle=\"c2\"} 50
influx_proxy_backend_active{circle=\"c1\",backend=\"b1\"} 1
influx_proxy_backend_active{circle=\"c2\",backend=\"b2\"} 0
influx_proxy_backend_rewriting{circle=\"c1\",backend=\"b1\"} 0
influx_proxy_backend_queued_points_total{circle=\"c1\",backend=\"b1\"} 1000
influx_proxy_backend_queued_points_total{circle=\"c2\",backend=\"b2\"} 1000
influx_proxy_backend_delivered_points_total{circle=\"c1\",backend=\"b1\"} 900
influx_proxy_backend_queue_points{circle=\"c2\",backend=\"b2\"} 1000
influx_proxy_backend_queue_oldest_record_age_seconds{circle=\"c2\",backend=\"b2\"} 12.5
influx_proxy_backend_dead_letter_points_total{circle=\"c1\",backend=\"b1\"} 3
influx_proxy_backend_write_duration_seconds_bucket{circle=\"c1\",backend=\"b1\",le=\"0.01\"} 10
influx_proxy_backend_write_duration_seconds_bucket{circle=\"c1\",backend=\"b1\",le=\"0.1\"} 10
influx_proxy_backend_write_duration_seconds_bucket{circle=\"c1\",backend=\"b1\",le=\"+Inf\"} 10
influx_proxy_migration_running{operation=\"rebalance\"} 1
influx_proxy_migration_running{operation=\"clear\"} 0
influx_proxy_migration_steps{operation=\"clear\",circle=\"c1\",backend=\"b1\"} 4
influx_proxy_migration_steps_done{operation=\"clear\",circle=\"c1\",backend=\"b1\"} 4
influx_proxy_migration_steps{operation=\"rebalance\",circle=\"c1\",backend=\"b1\"} 10
influx_proxy_migration_steps_done{operation=\"rebalance\",circle=\"c1\",backend=\"b1\"} 2
influx_proxy_migration_points_total{operation=\"rebalance\",circle=\"c1\",backend=\"b1\"} 200
";

    /// `T0` two seconds later: 2000 more points in, 1000 delivered, 100 writes of which 98
    /// under 10 ms and 2 under 100 ms, 30 + 10 reads, 2 more measurements and 400 points
    /// migrated.
    fn later() -> String {
        T0.replace(
            "queued_points_total{circle=\"c1\",backend=\"b1\"} 1000",
            "queued_points_total{circle=\"c1\",backend=\"b1\"} 3000",
        )
        .replace(
            "delivered_points_total{circle=\"c1\",backend=\"b1\"} 900",
            "delivered_points_total{circle=\"c1\",backend=\"b1\"} 1900",
        )
        .replace("le=\"0.01\"} 10", "le=\"0.01\"} 108")
        .replace("le=\"0.1\"} 10", "le=\"0.1\"} 110")
        .replace("le=\"+Inf\"} 10", "le=\"+Inf\"} 110")
        .replace(
            "reads_total{circle=\"c1\"} 100",
            "reads_total{circle=\"c1\"} 130",
        )
        .replace(
            "reads_total{circle=\"c2\"} 50",
            "reads_total{circle=\"c2\"} 60",
        )
        .replace(
            "steps_done{operation=\"rebalance\",circle=\"c1\",backend=\"b1\"} 2",
            "steps_done{operation=\"rebalance\",circle=\"c1\",backend=\"b1\"} 4",
        )
        .replace(
            "points_total{operation=\"rebalance\",circle=\"c1\",backend=\"b1\"} 200",
            "points_total{operation=\"rebalance\",circle=\"c1\",backend=\"b1\"} 600",
        )
    }

    fn model() -> Model {
        let t0 = Instant::now();
        let mut model = Model::default();
        model.push(Scrape {
            at: t0,
            metrics: Metrics::parse(T0).unwrap(),
        });
        model.push(Scrape {
            at: t0 + Duration::from_secs(2),
            metrics: Metrics::parse(&later()).unwrap(),
        });
        model
    }

    #[test]
    fn one_scrape_has_no_rates_yet() {
        let mut model = Model::default();
        assert_eq!(model.frame(), Frame::default());
        model.push(Scrape {
            at: Instant::now(),
            metrics: Metrics::parse(T0).unwrap(),
        });
        let frame = model.frame();
        assert_eq!(frame.backends.len(), 2);
        assert_eq!(frame.backends[0].points_in, None);
        assert_eq!(frame.backends[0].p99, None);
        assert_eq!(frame.circles[0].share, None);
        assert_eq!(frame.overview.unwrap().version, "2.5.12");
    }

    #[test]
    fn rates_latency_and_read_share_come_from_two_scrapes() {
        let frame = model().frame();
        let b1 = &frame.backends[0];
        assert_eq!((b1.circle.as_str(), b1.name.as_str()), ("c1", "b1"));
        assert_eq!(b1.state, State::Up);
        assert_eq!(b1.points_in, Some(1000.0));
        assert_eq!(b1.delivered, Some(500.0));
        assert_eq!(b1.dead_points, 3.0);
        // 99 of 100 writes: the 99th falls in (0.01, 0.1], one of its two: halfway.
        let p99 = b1.p99.unwrap();
        assert!((p99 - 0.055).abs() < 1e-9, "{p99}");
        let b2 = &frame.backends[1];
        assert_eq!(b2.state, State::Down);
        assert_eq!(b2.points_in, Some(0.0));
        assert_eq!(b2.queue_points, 1000.0);
        assert_eq!(b2.queue_age, 12.5);
        assert_eq!(b2.p99, None);
        assert_eq!(frame.circles[0].share, Some(0.75));
        assert_eq!(frame.circles[1].share, Some(0.25));
        assert_eq!(frame.circles[0].reads, Some(15.0));
        assert!(frame.circles[1].migrating && !frame.circles[1].active);
        assert_eq!(frame.interval, Some(2.0));
    }

    #[test]
    fn a_migration_shows_its_progress_rate_and_eta() {
        let frame = model().frame();
        let running = &frame.migrations[0];
        assert_eq!(running.operation, "rebalance");
        assert!(running.in_progress());
        assert_eq!((running.done, running.total), (4.0, 10.0));
        assert_eq!(running.ratio(), 0.4);
        // 400 points and 2 measurements in 2 s: 6 measurements left take 6 s.
        assert_eq!(running.rate, Some(200.0));
        assert_eq!(running.eta, Some(Duration::from_secs(6)));
        let finished = &frame.migrations[1];
        assert_eq!(finished.operation, "clear");
        assert!(!finished.running && !finished.in_progress());
        assert_eq!((finished.rate, finished.eta), (None, None));
        assert_eq!(finished.unit(), "measurements");
    }

    #[test]
    fn a_failed_scrape_keeps_the_numbers_and_counts_failures() {
        let mut model = model();
        model.fail("refused".into());
        model.fail("refused".into());
        let frame = model.frame();
        assert_eq!(frame.error, Some(("refused".to_string(), 2)));
        assert_eq!(frame.backends.len(), 2);
    }

    #[test]
    fn quantiles_interpolate_inside_their_bucket() {
        assert_eq!(quantile(0.99, &[]), None);
        assert_eq!(quantile(0.99, &[(1.0, 0.0), (f64::INFINITY, 0.0)]), None);
        // All in the first bucket: interpolated from zero.
        assert_eq!(
            quantile(0.5, &[(1.0, 10.0), (f64::INFINITY, 10.0)]),
            Some(0.5)
        );
        // Past the last finite bound: that bound.
        assert_eq!(
            quantile(0.99, &[(1.0, 1.0), (f64::INFINITY, 10.0)]),
            Some(1.0)
        );
    }

    fn row(name: &str, circle: &str, queue: f64, p99: Option<f64>) -> BackendRow {
        BackendRow {
            circle: circle.into(),
            name: name.into(),
            state: State::Up,
            points_in: None,
            delivered: None,
            queue_points: queue,
            queue_records: 0.0,
            queue_age: 0.0,
            p99,
            dead_points: 0.0,
        }
    }

    #[test]
    fn backends_sort_by_any_column_and_filter_by_name_or_circle() {
        let rows = [
            row("influxdb-1-1", "circle-1", 5.0, Some(0.2)),
            row("influxdb-1-2", "circle-1", 50.0, None),
            row("influxdb-2-1", "circle-2", 0.0, Some(0.9)),
        ];
        let names = |v: Vec<BackendRow>| v.into_iter().map(|r| r.name).collect::<Vec<_>>();
        assert_eq!(
            names(arrange(&rows, SortBy::Queue, false, "")),
            ["influxdb-1-2", "influxdb-1-1", "influxdb-2-1"]
        );
        assert_eq!(
            names(arrange(&rows, SortBy::Latency, false, "")),
            ["influxdb-2-1", "influxdb-1-1", "influxdb-1-2"]
        );
        assert_eq!(
            names(arrange(&rows, SortBy::Latency, true, "")),
            ["influxdb-1-2", "influxdb-1-1", "influxdb-2-1"]
        );
        assert_eq!(
            names(arrange(&rows, SortBy::Circle, false, "CIRCLE-2")),
            ["influxdb-2-1"]
        );
        assert_eq!(
            names(arrange(&rows, SortBy::Name, false, "1-")),
            ["influxdb-1-1", "influxdb-1-2"]
        );
        let mut by = SortBy::default();
        for _ in 0..8 {
            by = by.next();
        }
        assert_eq!(by, SortBy::Circle);
    }
}
