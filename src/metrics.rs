//! Prometheus metrics: counters, gauges and histograms with labels, and the
//! text exposition format (version 0.0.4) that `GET /metrics` serves.
//!
//! # Why hand-written
//! `prometheus-client`, the crate that would replace this module, writes
//! only OpenMetrics: a counter is registered without `_total` (a name ending
//! in it is refused) and only its samples get the suffix, so the `# HELP` and
//! `# TYPE` lines of `influx_proxy_http_requests_total` would name
//! `influx_proxy_http_requests`; a histogram's `_sum` and `_count` come
//! before its buckets; floats are written `1.0` (`le="1.0"`, where scrapers
//! now read `le="1"`); the document ends with `# EOF` and is meant to be
//! served as `application/openmetrics-text`. Switching would change the text
//! that dashboards, alerts and the tests read. What the proxy needs is small:
//! three atomics, a family of series per name, and the text format's
//! escaping, all below.
//!
//! Measured (issue 31), `cargo bench --bench hot_paths -- metrics`, what the
//! request middleware does per request (one histogram observation and one
//! counter increment, series found by label values): median of six runs,
//! interleaved with the code before issue 31, on a shared 2-core VM under
//! load ~5:
//!
//! | implementation                                        | per request |
//! |-------------------------------------------------------|-------------|
//! | this module (`metrics/request`)                       | 204 ns      |
//! | this module before issue 31 (thread-local key, hash)  | 237 ns      |
//! | prometheus-client 0.26, `&'static str` label structs  | 155 ns      |
//! | prometheus-client 0.26, owned `Vec<(String, String)>` | 290 ns      |
//!
//! The crate's best case would save about 50 ns per request, against
//! requests that take tens of microseconds (a ping) to milliseconds (a
//! 5000-line write). The comparison bench (`metrics_prometheus_client` in
//! `benches/hot_paths.rs`) is kept to redo the measurement.
//!
//! # Where the numbers come from
//! - Per backend and circle: read at scrape time from the running cluster by
//!   `api::metrics` (queue records/bytes/points/oldest age, delivered,
//!   failed and dead-lettered points, write latency, active state) and
//!   written with an [`Encoder`]. They follow config reloads: a backend
//!   removed from the config disappears.
//! - Per HTTP endpoint: the request middleware in `api::metrics`, through
//!   the [`global`] registry.
//! - Process: [`encode_process`] reads `/proc/self` at scrape time.
//! - Anything else registers in the [`global`] registry.
//!
//! # Adding metrics from anywhere
//! Families are created (or found again, by name) in the global registry;
//! keep the returned `Arc` or look it up again, both are cheap:
//!
//! ```
//! use influx_proxy::metrics;
//!
//! let copied = metrics::global().counter(
//!     "influx_proxy_example_points_total",
//!     "Points copied.",
//!     &["circle", "backend"],
//! );
//! copied.with(&["circle-1", "influxdb-1-1"]).inc_by(1000);
//! let running = metrics::global().gauge("influx_proxy_example_running", "1 while running.", &[]);
//! running.with(&[]).set(1.0);
//! ```
//!
//! Conventions: names start with `influx_proxy_`, are snake_case and carry
//! their unit (`_bytes`, `_seconds`, `_total` for counters); labels are
//! `backend`, `circle`, `path`, `status` where they apply. Names are string
//! literals, written as Prometheus requires (`[a-zA-Z_:][a-zA-Z0-9_:]*`);
//! nothing checks them at run time. Label values must come from a bounded
//! set (config names, route patterns, status codes), never from request data:
//! a series, once created, lives as long as the process.

use std::any::Any;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use parking_lot::RwLock;

/// `Content-Type` of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Upper bounds (seconds) of latency histograms: 1 ms to 10 s (the default
/// `write_timeout`).
pub const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A monotonically increasing count.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds one.
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    /// Adds `n`.
    pub fn inc_by(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// Current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down (stored as `f64` bits).
#[derive(Debug, Default)]
pub struct Gauge(AtomicU64);

impl Gauge {
    /// Sets the value.
    pub fn set(&self, v: f64) {
        self.0.store(v.to_bits(), Ordering::Relaxed);
    }

    /// Adds `d` (may be negative).
    pub fn add(&self, d: f64) {
        add_f64(&self.0, d);
    }

    /// Adds one.
    pub fn inc(&self) {
        self.add(1.0);
    }

    /// Subtracts one.
    pub fn dec(&self) {
        self.add(-1.0);
    }

    /// Current value.
    pub fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }
}

fn add_f64(cell: &AtomicU64, d: f64) {
    let _ = cell.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
        Some((f64::from_bits(bits) + d).to_bits())
    });
}

/// Counts of observations in buckets of upper bounds, plus their sum.
/// `_count` is rendered as the sum of the buckets, so it always equals the
/// `+Inf` bucket even while observations race with a scrape.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    /// Non-cumulative counts; the last one is `+Inf`.
    counts: Box<[AtomicU64]>,
    sum: AtomicU64,
}

impl Histogram {
    /// A histogram with the given upper bounds: finite, in ascending order
    /// (`+Inf` is implicit).
    pub fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0),
        }
    }

    /// A histogram with [`LATENCY_BUCKETS`].
    pub fn latency() -> Histogram {
        Histogram::new(LATENCY_BUCKETS)
    }

    /// Records one value.
    pub fn observe(&self, v: f64) {
        let i = if v.is_nan() {
            self.bounds.len()
        } else {
            self.bounds.partition_point(|b| *b < v)
        };
        if let Some(c) = self.counts.get(i) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        add_f64(&self.sum, v);
    }

    /// Records a duration in seconds.
    pub fn observe_duration(&self, d: Duration) {
        self.observe(d.as_secs_f64());
    }

    /// Upper bounds, without `+Inf`.
    pub fn bounds(&self) -> &[f64] {
        self.bounds
    }

    /// Cumulative counts per bound (the last is `+Inf`, i.e. the total
    /// count) and the sum of observations.
    pub fn snapshot(&self) -> (Vec<u64>, f64) {
        let mut total = 0u64;
        let cumulative = self
            .counts
            .iter()
            .map(|c| {
                total += c.load(Ordering::Relaxed);
                total
            })
            .collect();
        (cumulative, f64::from_bits(self.sum.load(Ordering::Relaxed)))
    }
}

/// The kind of a metric, as written in `# TYPE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricType {
    /// Only goes up (resets on restart).
    Counter,
    /// Goes up and down.
    Gauge,
    /// Bucketed observations.
    Histogram,
}

impl MetricType {
    fn as_str(self) -> &'static str {
        match self {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Histogram => "histogram",
        }
    }
}

/// A number as written in a sample.
pub trait Value {
    /// Appends the text form.
    fn write_to(&self, out: &mut String);
}

impl Value for u64 {
    fn write_to(&self, out: &mut String) {
        let _ = write!(out, "{self}");
    }
}

impl Value for usize {
    fn write_to(&self, out: &mut String) {
        let _ = write!(out, "{self}");
    }
}

impl Value for bool {
    fn write_to(&self, out: &mut String) {
        out.push(if *self { '1' } else { '0' });
    }
}

impl Value for f64 {
    fn write_to(&self, out: &mut String) {
        if self.is_nan() {
            out.push_str("NaN");
        } else if self.is_infinite() {
            out.push_str(if *self > 0.0 { "+Inf" } else { "-Inf" });
        } else {
            let _ = write!(out, "{self}");
        }
    }
}

/// Writes the text exposition format.
#[derive(Debug, Default)]
pub struct Encoder {
    out: String,
}

impl Encoder {
    /// An empty document.
    pub fn new() -> Encoder {
        Encoder::default()
    }

    /// `# HELP` and `# TYPE` lines; write them once per metric name, before
    /// its samples (all samples of a name must follow together).
    pub fn header(&mut self, name: &str, help: &str, kind: MetricType) {
        self.out.push_str("# HELP ");
        self.out.push_str(name);
        self.out.push(' ');
        for c in help.chars() {
            match c {
                '\\' => self.out.push_str("\\\\"),
                '\n' => self.out.push_str("\\n"),
                c => self.out.push(c),
            }
        }
        self.out.push_str("\n# TYPE ");
        self.out.push_str(name);
        self.out.push(' ');
        self.out.push_str(kind.as_str());
        self.out.push('\n');
    }

    /// One sample line: `name{labels} value`.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Value) {
        self.line(name, "", labels, None, value);
    }

    /// A whole metric of one sample without labels: its header and its value.
    pub fn single(&mut self, name: &str, help: &str, kind: MetricType, value: impl Value) {
        self.header(name, help, kind);
        self.sample(name, &[], value);
    }

    /// The `_bucket`, `_sum` and `_count` lines of one histogram series.
    pub fn histogram(&mut self, name: &str, labels: &[(&str, &str)], h: &Histogram) {
        let (cumulative, sum) = h.snapshot();
        let mut le = String::new();
        for (i, count) in cumulative.iter().enumerate() {
            le.clear();
            match h.bounds().get(i) {
                Some(b) => b.write_to(&mut le),
                None => le.push_str("+Inf"),
            }
            self.line(name, "_bucket", labels, Some(&le), *count);
        }
        self.line(name, "_sum", labels, None, sum);
        let count = cumulative.last().copied().unwrap_or(0);
        self.line(name, "_count", labels, None, count);
    }

    /// `name` + `suffix`, the labels (then `le`, for a bucket), the value.
    fn line(
        &mut self,
        name: &str,
        suffix: &str,
        labels: &[(&str, &str)],
        le: Option<&str>,
        value: impl Value,
    ) {
        self.out.push_str(name);
        self.out.push_str(suffix);
        let le = le.map(|v| ("le", v));
        for (i, (k, v)) in labels.iter().copied().chain(le).enumerate() {
            self.out.push(if i == 0 { '{' } else { ',' });
            self.out.push_str(k);
            self.out.push_str("=\"");
            escape_label_value(&mut self.out, v);
            self.out.push('"');
        }
        if !labels.is_empty() || le.is_some() {
            self.out.push('}');
        }
        self.out.push(' ');
        value.write_to(&mut self.out);
        self.out.push('\n');
    }

    /// The finished document.
    pub fn finish(self) -> String {
        self.out
    }
}

fn escape_label_value(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// A metric type that a [`Family`] can hold.
pub trait Metric: Send + Sync + std::fmt::Debug + 'static {
    /// Its `# TYPE`.
    const KIND: MetricType;
    /// A fresh metric; `bounds` is only used by histograms.
    fn create(bounds: &'static [f64]) -> Self;
    /// Writes the sample lines of one series.
    fn encode(&self, enc: &mut Encoder, name: &str, labels: &[(&str, &str)]);
}

impl Metric for Counter {
    const KIND: MetricType = MetricType::Counter;
    fn create(_: &'static [f64]) -> Counter {
        Counter::default()
    }
    fn encode(&self, enc: &mut Encoder, name: &str, labels: &[(&str, &str)]) {
        enc.sample(name, labels, self.get());
    }
}

impl Metric for Gauge {
    const KIND: MetricType = MetricType::Gauge;
    fn create(_: &'static [f64]) -> Gauge {
        Gauge::default()
    }
    fn encode(&self, enc: &mut Encoder, name: &str, labels: &[(&str, &str)]) {
        enc.sample(name, labels, self.get());
    }
}

impl Metric for Histogram {
    const KIND: MetricType = MetricType::Histogram;
    fn create(bounds: &'static [f64]) -> Histogram {
        Histogram::new(bounds)
    }
    fn encode(&self, enc: &mut Encoder, name: &str, labels: &[(&str, &str)]) {
        enc.histogram(name, labels, self);
    }
}

#[derive(Debug)]
struct Series<M> {
    values: Box<[Box<str>]>,
    metric: Arc<M>,
}

/// One metric name with a fixed set of label names: one series per
/// combination of label values.
#[derive(Debug)]
pub struct Family<M> {
    name: &'static str,
    help: &'static str,
    label_names: &'static [&'static str],
    bounds: &'static [f64],
    /// Sorted by label values: found by binary search without building a
    /// key, and already in the order the text lists them.
    series: RwLock<Vec<Series<M>>>,
}

impl<M: Metric> Family<M> {
    /// The series with these label values (in the order of the label
    /// names), created on first use. Missing values count as `""`, extra
    /// ones are ignored.
    pub fn with(&self, values: &[&str]) -> Arc<M> {
        let find =
            |series: &[Series<M>]| series.binary_search_by(|s| cmp_values(&s.values, values));
        {
            let series = self.series.read();
            if let Some(s) = find(&series).ok().and_then(|i| series.get(i)) {
                return s.metric.clone();
            }
        }
        let mut series = self.series.write();
        let i = find(&series).unwrap_or_else(|i| {
            let values = (0..self.label_names.len()).map(|i| value(values, i).into());
            let s = Series {
                values: values.collect(),
                metric: Arc::new(M::create(self.bounds)),
            };
            series.insert(i, s);
            i
        });
        series[i].metric.clone()
    }
}

/// The `i`th of the label values looked up, `""` when missing.
fn value<'a>(values: &[&'a str], i: usize) -> &'a str {
    values.get(i).copied().unwrap_or("")
}

/// Orders a series by its label values, as the text lists them.
fn cmp_values(series: &[Box<str>], values: &[&str]) -> std::cmp::Ordering {
    let values = (0..series.len()).map(|i| value(values, i));
    series.iter().map(|v| &**v).cmp(values)
}

/// A family as the registry renders it, whatever its metric type.
trait Collect: Any + std::fmt::Debug {
    fn name(&self) -> &'static str;
    fn encode_into(&self, enc: &mut Encoder);
}

impl<M: Metric> Collect for Family<M> {
    fn name(&self) -> &'static str {
        self.name
    }
    fn encode_into(&self, enc: &mut Encoder) {
        enc.header(self.name, self.help, M::KIND);
        let series = self.series.read();
        let mut labels = Vec::with_capacity(self.label_names.len());
        for s in series.iter() {
            labels.clear();
            let values = s.values.iter().map(|v| &**v);
            labels.extend(self.label_names.iter().copied().zip(values));
            s.metric.encode(enc, self.name, &labels);
        }
    }
}

/// Metric families by name, in registration order.
#[derive(Debug, Default)]
pub struct Registry {
    families: RwLock<Vec<Arc<dyn Collect + Send + Sync>>>,
}

/// The process-wide registry that `/metrics` renders.
pub fn global() -> &'static Registry {
    static GLOBAL: OnceLock<Registry> = OnceLock::new();
    GLOBAL.get_or_init(Registry::new)
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Registry {
        Registry::default()
    }

    /// The counter family `name`, registered on first call. Calling again
    /// with the same name returns the same family.
    pub fn counter(
        &self,
        name: &'static str,
        help: &'static str,
        labels: &'static [&'static str],
    ) -> Arc<Family<Counter>> {
        self.family(name, help, labels, &[])
    }

    /// The gauge family `name`, registered on first call.
    pub fn gauge(
        &self,
        name: &'static str,
        help: &'static str,
        labels: &'static [&'static str],
    ) -> Arc<Family<Gauge>> {
        self.family(name, help, labels, &[])
    }

    /// The histogram family `name` with these bucket bounds (see
    /// [`Histogram::new`]), registered on first call (a later call gets the
    /// first call's bounds).
    pub fn histogram(
        &self,
        name: &'static str,
        help: &'static str,
        labels: &'static [&'static str],
        bounds: &'static [f64],
    ) -> Arc<Family<Histogram>> {
        self.family(name, help, labels, bounds)
    }

    /// Finds or registers a family. A name already registered with another
    /// type or other label names is a programming error: it is logged and a
    /// detached family (never exported) is returned, so callers need no
    /// error handling.
    fn family<M: Metric>(
        &self,
        name: &'static str,
        help: &'static str,
        label_names: &'static [&'static str],
        bounds: &'static [f64],
    ) -> Arc<Family<M>> {
        let family = || {
            Arc::new(Family {
                name,
                help,
                label_names,
                bounds,
                series: RwLock::new(Vec::new()),
            })
        };
        let mut families = self.families.write();
        let Some(found) = families.iter().find(|f| f.name() == name).cloned() else {
            let new = family();
            families.push(new.clone());
            return new;
        };
        let found: Arc<dyn Any + Send + Sync> = found;
        match found.downcast::<Family<M>>() {
            Ok(f) if f.label_names == label_names => f,
            _ => {
                tracing::error!(metric = %name, "Metric registered twice with different types or labels; the second is not exported.");
                family()
            }
        }
    }

    /// Writes every family, in registration order.
    pub fn encode_into(&self, enc: &mut Encoder) {
        for f in self.families.read().iter() {
            f.encode_into(enc);
        }
    }

    /// The whole registry as a text document.
    pub fn encode(&self) -> String {
        let mut enc = Encoder::new();
        self.encode_into(&mut enc);
        enc.finish()
    }
}

/// Standard process metrics (`process_*`, as the official Prometheus clients
/// name them), read from `/proc/self`. Missing files (non-Linux) write
/// nothing.
pub fn encode_process(enc: &mut Encoder) {
    let stat = std::fs::read_to_string("/proc/self/stat").ok();
    let fields = stat.as_deref().and_then(stat_fields);
    let ticks = clock_ticks();
    if let Some(f) = &fields {
        let cpu = (f.utime + f.stime) as f64 / ticks;
        let help = "Total user and system CPU time spent in seconds.";
        enc.single("process_cpu_seconds_total", help, MetricType::Counter, cpu);
        let help = "Virtual memory size in bytes.";
        enc.single(
            "process_virtual_memory_bytes",
            help,
            MetricType::Gauge,
            f.vsize,
        );
    }
    if let Some(rss) = rss_bytes() {
        let help = "Resident memory size in bytes.";
        enc.single(
            "process_resident_memory_bytes",
            help,
            MetricType::Gauge,
            rss,
        );
    }
    if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
        // The directory handle itself is one of the entries.
        let open = dir.count().saturating_sub(1);
        let help = "Number of open file descriptors.";
        enc.single("process_open_fds", help, MetricType::Gauge, open);
    }
    if let Some(max) = max_fds() {
        let help = "Maximum number of open file descriptors.";
        enc.single("process_max_fds", help, MetricType::Gauge, max);
    }
    if let (Some(f), Some(boot)) = (&fields, boot_time()) {
        let start = boot as f64 + f.starttime as f64 / ticks;
        let help = "Start time of the process since unix epoch in seconds.";
        enc.single("process_start_time_seconds", help, MetricType::Gauge, start);
    }
    if let Some(f) = &fields {
        let help = "Number of OS threads in the process.";
        enc.single("process_threads", help, MetricType::Gauge, f.threads);
    }
}

#[derive(Debug, PartialEq)]
struct StatFields {
    utime: u64,
    stime: u64,
    threads: u64,
    starttime: u64,
    vsize: u64,
}

/// When process `pid` started, in clock ticks since boot (`/proc/<pid>/stat` field 22): with
/// the pid, names one process for good (a pid is reused, not with the same start). `None`
/// where there is no such process or no `/proc`.
pub(crate) fn process_start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat_fields(&stat).map(|f| f.starttime)
}

/// Fields of `/proc/self/stat` (proc(5)); the command name in parentheses
/// may contain spaces, so fields are counted after its closing `)`.
fn stat_fields(stat: &str) -> Option<StatFields> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // After ")": field 3 (state) is index 0.
    let f: Vec<&str> = rest.split_whitespace().collect();
    let get = |field: usize| f.get(field - 3)?.parse::<u64>().ok();
    Some(StatFields {
        utime: get(14)?,
        stime: get(15)?,
        threads: get(20)?,
        starttime: get(22)?,
        vsize: get(23)?,
    })
}

fn clock_ticks() -> f64 {
    match nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK) {
        Ok(Some(t)) if t > 0 => t as f64,
        _ => 100.0,
    }
}

fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn max_fds() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    // "Max open files  <soft>  <hard>  files"
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn boot_time() -> Option<u64> {
    static BOOT: OnceLock<Option<u64>> = OnceLock::new();
    *BOOT.get_or_init(|| {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        stat.lines()
            .find_map(|l| l.strip_prefix("btime "))?
            .trim()
            .parse()
            .ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_gauges_render_with_sorted_series() {
        let r = Registry::new();
        let c = r.counter("t_requests_total", "Requests.", &["path", "status"]);
        c.with(&["/write", "204"]).inc_by(3);
        c.with(&["/query", "200"]).inc();
        c.with(&["/write", "204"]).inc();
        let g = r.gauge("t_temp", "A gauge.", &[]);
        g.with(&[]).set(-1.5);
        assert_eq!(
            r.encode(),
            "# HELP t_requests_total Requests.\n\
             # TYPE t_requests_total counter\n\
             t_requests_total{path=\"/query\",status=\"200\"} 1\n\
             t_requests_total{path=\"/write\",status=\"204\"} 4\n\
             # HELP t_temp A gauge.\n\
             # TYPE t_temp gauge\n\
             t_temp -1.5\n"
        );
    }

    #[test]
    fn label_values_and_help_are_escaped() {
        let mut enc = Encoder::new();
        enc.header("m", "back\\slash\nnew \"quotes\" stay", MetricType::Gauge);
        enc.sample("m", &[("a", "x\"y\\z\nw"), ("b", "温度")], 1u64);
        assert_eq!(
            enc.finish(),
            "# HELP m back\\\\slash\\nnew \"quotes\" stay\n\
             # TYPE m gauge\n\
             m{a=\"x\\\"y\\\\z\\nw\",b=\"温度\"} 1\n"
        );
    }

    #[test]
    fn histogram_has_cumulative_buckets_sum_and_count() {
        let r = Registry::new();
        let h = r.histogram("t_seconds", "Latency.", &["backend"], &[0.1, 0.5, 1.0]);
        let s = h.with(&["b1"]);
        for v in [0.05, 0.1, 0.3, 2.0] {
            s.observe(v);
        }
        s.observe_duration(Duration::from_millis(700));
        assert_eq!(s.bounds(), &[0.1, 0.5, 1.0]);
        assert!(LATENCY_BUCKETS.is_sorted());
        let text = r.encode();
        let want = "# HELP t_seconds Latency.\n\
             # TYPE t_seconds histogram\n\
             t_seconds_bucket{backend=\"b1\",le=\"0.1\"} 2\n\
             t_seconds_bucket{backend=\"b1\",le=\"0.5\"} 3\n\
             t_seconds_bucket{backend=\"b1\",le=\"1\"} 4\n\
             t_seconds_bucket{backend=\"b1\",le=\"+Inf\"} 5\n";
        assert!(text.starts_with(want), "{text}");
        let sum_line = text
            .lines()
            .find(|l| l.starts_with("t_seconds_sum{backend=\"b1\"} "))
            .unwrap();
        let sum: f64 = sum_line.rsplit(' ').next().unwrap().parse().unwrap();
        assert!((sum - 3.15).abs() < 1e-9, "{sum_line}");
        assert!(
            text.ends_with("t_seconds_count{backend=\"b1\"} 5\n"),
            "{text}"
        );
    }

    #[test]
    fn histogram_without_labels_and_nan() {
        let h = Histogram::new(&[1.0]);
        h.observe(f64::NAN);
        h.observe(1.0);
        let mut enc = Encoder::new();
        enc.histogram("h", &[], &h);
        let text = enc.finish();
        assert!(text.contains("h_bucket{le=\"1\"} 1\n"), "{text}");
        assert!(text.contains("h_bucket{le=\"+Inf\"} 2\n"), "{text}");
        assert!(text.contains("h_sum NaN\n"), "{text}");
        assert!(text.contains("h_count 2\n"), "{text}");
    }

    #[test]
    fn same_name_returns_same_family_and_conflicts_are_detached() {
        let r = Registry::new();
        let a = r.counter("t_total", "A.", &["x"]);
        let b = r.counter("t_total", "A again.", &["x"]);
        a.with(&["1"]).inc();
        assert_eq!(b.with(&["1"]).get(), 1);
        let conflicting = r.gauge("t_total", "A gauge now.", &["x"]);
        conflicting.with(&["1"]).set(5.0);
        let text = r.encode();
        assert_eq!(text.matches("# TYPE t_total").count(), 1, "{text}");
        assert!(text.contains("t_total{x=\"1\"} 1\n"), "{text}");
    }

    #[test]
    fn label_values_that_concatenate_alike_are_distinct_series() {
        let r = Registry::new();
        let c = r.counter("t_total", "A.", &["a", "b"]);
        c.with(&["1:x", ""]).inc();
        c.with(&["1", "x"]).inc_by(2);
        assert_eq!(c.with(&["1:x", ""]).get(), 1);
        assert_eq!(c.with(&["1", "x"]).get(), 2);
        assert_eq!(r.encode().matches("t_total{").count(), 2);
        // Missing values are empty strings.
        assert_eq!(c.with(&["1:x"]).get(), 1);
    }

    #[test]
    fn values_render_as_prometheus_expects() {
        let mut enc = Encoder::new();
        enc.sample("a", &[], f64::INFINITY);
        enc.sample("b", &[], f64::NEG_INFINITY);
        enc.sample("c", &[], true);
        enc.sample("d", &[], 0.25);
        enc.sample("e", &[], u64::MAX);
        assert_eq!(
            enc.finish(),
            "a +Inf\nb -Inf\nc 1\nd 0.25\ne 18446744073709551615\n"
        );
    }

    /// The exact text of a representative state, pinned byte for byte so a
    /// rewrite of the registry or the encoder cannot change what scrapers
    /// read: family order (registration order, across types), HELP escaping,
    /// series order, label order and escaping, histogram buckets with `le`,
    /// `_sum` and `_count`, float and integer formatting.
    #[test]
    fn exposition_of_a_representative_state_is_pinned() {
        let r = Registry::new();
        let requests = r.counter(
            "t_requests_total",
            "Requests by route and status code.",
            &["path", "status"],
        );
        let duration = r.histogram(
            "t_request_duration_seconds",
            "Time to answer \\ (a backslash),\nby route.",
            &["path"],
            LATENCY_BUCKETS,
        );
        let running = r.gauge("t_running", "A gauge without labels.", &[]);
        let stale = r.counter("t_stale_reads_total", "Stale reads.", &["circle"]);
        requests.with(&["/write", "400"]).inc();
        requests.with(&["/write", "204"]).inc_by(3);
        requests.with(&["other", "404"]).inc();
        requests.with(&["/query", "200"]).inc();
        for v in [0.0005, 0.003, 0.75, 42.0] {
            duration.with(&["/write"]).observe(v);
        }
        duration
            .with(&["/query"])
            .observe_duration(Duration::from_millis(20));
        running.with(&[]).set(0.1 + 0.2);
        stale.with(&["c\"1\\\n"]).inc();

        let mut enc = Encoder::new();
        enc.header("t_build_info", "Version (always 1).", MetricType::Gauge);
        enc.sample(
            "t_build_info",
            &[("version", "1.2.3"), ("commit", "abc")],
            1u64,
        );
        enc.header("t_values", "Every kind of number.", MetricType::Gauge);
        enc.sample("t_values", &[("v", "inf")], f64::INFINITY);
        enc.sample("t_values", &[("v", "-inf")], f64::NEG_INFINITY);
        enc.sample("t_values", &[("v", "nan")], f64::NAN);
        enc.sample("t_values", &[("v", "-0")], -0.0);
        enc.sample("t_values", &[("v", "small")], 1e-7);
        enc.sample("t_values", &[("v", "big")], 1e21);
        enc.sample("t_values", &[("v", "true")], true);
        enc.sample("t_values", &[("v", "false")], false);
        enc.sample("t_values", &[("v", "u64")], u64::MAX);
        enc.sample("t_values", &[("v", "usize")], 7usize);
        r.encode_into(&mut enc);
        let text = enc.finish();
        assert_eq!(text, PINNED);
    }

    const PINNED: &str = r#"# HELP t_build_info Version (always 1).
# TYPE t_build_info gauge
t_build_info{version="1.2.3",commit="abc"} 1
# HELP t_values Every kind of number.
# TYPE t_values gauge
t_values{v="inf"} +Inf
t_values{v="-inf"} -Inf
t_values{v="nan"} NaN
t_values{v="-0"} -0
t_values{v="small"} 0.0000001
t_values{v="big"} 1000000000000000000000
t_values{v="true"} 1
t_values{v="false"} 0
t_values{v="u64"} 18446744073709551615
t_values{v="usize"} 7
# HELP t_requests_total Requests by route and status code.
# TYPE t_requests_total counter
t_requests_total{path="/query",status="200"} 1
t_requests_total{path="/write",status="204"} 3
t_requests_total{path="/write",status="400"} 1
t_requests_total{path="other",status="404"} 1
# HELP t_request_duration_seconds Time to answer \\ (a backslash),\nby route.
# TYPE t_request_duration_seconds histogram
t_request_duration_seconds_bucket{path="/query",le="0.001"} 0
t_request_duration_seconds_bucket{path="/query",le="0.0025"} 0
t_request_duration_seconds_bucket{path="/query",le="0.005"} 0
t_request_duration_seconds_bucket{path="/query",le="0.01"} 0
t_request_duration_seconds_bucket{path="/query",le="0.025"} 1
t_request_duration_seconds_bucket{path="/query",le="0.05"} 1
t_request_duration_seconds_bucket{path="/query",le="0.1"} 1
t_request_duration_seconds_bucket{path="/query",le="0.25"} 1
t_request_duration_seconds_bucket{path="/query",le="0.5"} 1
t_request_duration_seconds_bucket{path="/query",le="1"} 1
t_request_duration_seconds_bucket{path="/query",le="2.5"} 1
t_request_duration_seconds_bucket{path="/query",le="5"} 1
t_request_duration_seconds_bucket{path="/query",le="10"} 1
t_request_duration_seconds_bucket{path="/query",le="+Inf"} 1
t_request_duration_seconds_sum{path="/query"} 0.02
t_request_duration_seconds_count{path="/query"} 1
t_request_duration_seconds_bucket{path="/write",le="0.001"} 1
t_request_duration_seconds_bucket{path="/write",le="0.0025"} 1
t_request_duration_seconds_bucket{path="/write",le="0.005"} 2
t_request_duration_seconds_bucket{path="/write",le="0.01"} 2
t_request_duration_seconds_bucket{path="/write",le="0.025"} 2
t_request_duration_seconds_bucket{path="/write",le="0.05"} 2
t_request_duration_seconds_bucket{path="/write",le="0.1"} 2
t_request_duration_seconds_bucket{path="/write",le="0.25"} 2
t_request_duration_seconds_bucket{path="/write",le="0.5"} 2
t_request_duration_seconds_bucket{path="/write",le="1"} 3
t_request_duration_seconds_bucket{path="/write",le="2.5"} 3
t_request_duration_seconds_bucket{path="/write",le="5"} 3
t_request_duration_seconds_bucket{path="/write",le="10"} 3
t_request_duration_seconds_bucket{path="/write",le="+Inf"} 4
t_request_duration_seconds_sum{path="/write"} 42.7535
t_request_duration_seconds_count{path="/write"} 4
# HELP t_running A gauge without labels.
# TYPE t_running gauge
t_running 0.30000000000000004
# HELP t_stale_reads_total Stale reads.
# TYPE t_stale_reads_total counter
t_stale_reads_total{circle="c\"1\\\n"} 1
"#;

    #[test]
    fn proc_stat_is_parsed_past_a_command_with_spaces() {
        let stat = "1234 (influx proxy) S 1 1234 1234 0 -1 4194304 500 0 0 0 \
                    250 50 0 0 20 0 7 0 98765 123456789 2048 18446744073709551615";
        assert_eq!(
            stat_fields(stat),
            Some(StatFields {
                utime: 250,
                stime: 50,
                threads: 7,
                starttime: 98765,
                vsize: 123456789,
            })
        );
        assert_eq!(stat_fields("garbage"), None);
    }

    #[test]
    fn process_metrics_are_present_on_linux() {
        let mut enc = Encoder::new();
        encode_process(&mut enc);
        let text = enc.finish();
        for name in [
            "process_cpu_seconds_total ",
            "process_resident_memory_bytes ",
            "process_open_fds ",
            "process_start_time_seconds ",
        ] {
            assert!(text.lines().any(|l| l.starts_with(name)), "{name}: {text}");
        }
    }
}
