//! Prometheus metrics: a small registry and the text exposition format
//! (version 0.0.4), served by `GET /metrics`.
//!
//! # Why hand-written
//! The proxy needs counters, gauges and histograms with labels, and most of
//! its numbers already live in atomics elsewhere (queue and backend
//! counters) that are best read at scrape time. The text format is a few
//! lines of escaping rules; a crate (`prometheus-client`) would add a
//! dependency tree and a collector abstraction for little gain.
//!
//! Measured (issue 17), `cargo bench --bench hot_paths -- metrics`, what the
//! request middleware does per request (one histogram observation and one
//! counter increment, series found by label values), two runs on a shared
//! 2-core VM under load ~3, median:
//!
//! | implementation                                        | per request    |
//! |-------------------------------------------------------|----------------|
//! | this module (`metrics/request`)                       | 413 ns, 266 ns |
//! | prometheus-client 0.26, `&'static str` label structs  | 211 ns, 177 ns |
//! | prometheus-client 0.26, owned `Vec<(String, String)>` | 533 ns, 342 ns |
//!
//! Its best case saves about 0.1-0.2 us per request, against requests that
//! take tens of microseconds (a ping) to milliseconds (a 5000-line write), so
//! no measurable change in throughput; and it holds only when every label
//! value is a `&'static str`, while the middleware's path and status are
//! `&str` borrowed from the request (owned labels are slower than this module, which looks series up
//! through a reused thread-local key buffer and allocates nothing). Not a
//! clear win, so the module stays; the comparison bench
//! (`metrics_prometheus_client` in `benches/hot_paths.rs`) is kept to redo
//! the measurement.
//!
//! # Where the numbers come from
//! - Per backend and circle: read at scrape time from the running cluster by
//!   `api::metrics` (queue records/bytes/points/oldest age, delivered,
//!   failed and dead-lettered points, write latency, active state). They
//!   follow config reloads: a backend removed from the config disappears.
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
//! // Series that no longer apply can be dropped:
//! copied.remove(&["circle-1", "influxdb-1-1"]);
//! ```
//!
//! Numbers that already live elsewhere can be rendered at scrape time with
//! [`Registry::collector`] instead of being copied into metrics.
//!
//! Conventions: names start with `influx_proxy_`, are snake_case and carry
//! their unit (`_bytes`, `_seconds`, `_total` for counters); labels are
//! `backend`, `circle`, `path`, `status` where they apply. Label values must
//! come from a bounded set (config names, route patterns, status codes),
//! never from request data.

use std::any::Any;
use std::cell::RefCell;
use std::collections::HashMap;
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
    bounds: Arc<[f64]>,
    /// Non-cumulative counts; the last one is `+Inf`.
    counts: Box<[AtomicU64]>,
    sum: AtomicU64,
}

impl Histogram {
    /// A histogram with the given upper bounds (sorted, deduplicated,
    /// non-finite values dropped; `+Inf` is implicit).
    pub fn new(bounds: &[f64]) -> Histogram {
        Histogram::with_bounds(normalise_bounds(bounds))
    }

    /// A histogram with [`LATENCY_BUCKETS`].
    pub fn latency() -> Histogram {
        Histogram::new(LATENCY_BUCKETS)
    }

    fn with_bounds(bounds: Arc<[f64]>) -> Histogram {
        let counts = (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect();
        Histogram {
            bounds,
            counts,
            sum: AtomicU64::new(0),
        }
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
        &self.bounds
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

fn normalise_bounds(bounds: &[f64]) -> Arc<[f64]> {
    let mut b: Vec<f64> = bounds.iter().copied().filter(|v| v.is_finite()).collect();
    b.sort_by(f64::total_cmp);
    b.dedup();
    b.into()
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

impl Value for i64 {
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
        write_f64(out, *self);
    }
}

fn write_f64(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else {
        let _ = write!(out, "{v}");
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
        self.out.push_str(name);
        self.labels(labels, None);
        self.out.push(' ');
        value.write_to(&mut self.out);
        self.out.push('\n');
    }

    /// The `_bucket`, `_sum` and `_count` lines of one histogram series.
    pub fn histogram(&mut self, name: &str, labels: &[(&str, &str)], h: &Histogram) {
        let (cumulative, sum) = h.snapshot();
        let mut le = String::new();
        for (i, count) in cumulative.iter().enumerate() {
            le.clear();
            match h.bounds().get(i) {
                Some(b) => write_f64(&mut le, *b),
                None => le.push_str("+Inf"),
            }
            self.out.push_str(name);
            self.out.push_str("_bucket");
            self.labels(labels, Some(&le));
            self.out.push(' ');
            count.write_to(&mut self.out);
            self.out.push('\n');
        }
        self.out.push_str(name);
        self.out.push_str("_sum");
        self.labels(labels, None);
        self.out.push(' ');
        write_f64(&mut self.out, sum);
        self.out.push('\n');
        self.out.push_str(name);
        self.out.push_str("_count");
        self.labels(labels, None);
        self.out.push(' ');
        cumulative
            .last()
            .copied()
            .unwrap_or(0)
            .write_to(&mut self.out);
        self.out.push('\n');
    }

    fn labels(&mut self, labels: &[(&str, &str)], le: Option<&str>) {
        if labels.is_empty() && le.is_none() {
            return;
        }
        self.out.push('{');
        let mut first = true;
        let le = le.map(|v| ("le", v));
        for (k, v) in labels.iter().copied().chain(le) {
            if !first {
                self.out.push(',');
            }
            first = false;
            self.out.push_str(k);
            self.out.push_str("=\"");
            escape_label_value(&mut self.out, v);
            self.out.push('"');
        }
        self.out.push('}');
    }

    /// The document so far.
    pub fn as_str(&self) -> &str {
        &self.out
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

/// Whether `name` is a valid metric name (`[a-zA-Z_:][a-zA-Z0-9_:]*`).
pub fn is_valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Whether `name` is a valid label name (`[a-zA-Z_][a-zA-Z0-9_]*`, not
/// `le` nor starting with `__`).
pub fn is_valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name != "le"
        && !name.starts_with("__")
}

fn sanitise_name(name: &str, label: bool) -> String {
    let mut s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || (c == ':' && !label) {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() || s.starts_with(|c: char| c.is_ascii_digit()) {
        s.insert(0, '_');
    }
    if label && s == "le" {
        s.push('_');
    }
    s
}

/// A metric type that a [`Family`] can hold.
pub trait Metric: Send + Sync + std::fmt::Debug + 'static {
    /// Its `# TYPE`.
    const KIND: MetricType;
    /// A fresh metric; `bounds` is only used by histograms.
    fn create(bounds: &Arc<[f64]>) -> Self;
    /// Writes the sample lines of one series.
    fn encode(&self, enc: &mut Encoder, name: &str, labels: &[(&str, &str)]);
}

impl Metric for Counter {
    const KIND: MetricType = MetricType::Counter;
    fn create(_: &Arc<[f64]>) -> Counter {
        Counter::default()
    }
    fn encode(&self, enc: &mut Encoder, name: &str, labels: &[(&str, &str)]) {
        enc.sample(name, labels, self.get());
    }
}

impl Metric for Gauge {
    const KIND: MetricType = MetricType::Gauge;
    fn create(_: &Arc<[f64]>) -> Gauge {
        Gauge::default()
    }
    fn encode(&self, enc: &mut Encoder, name: &str, labels: &[(&str, &str)]) {
        enc.sample(name, labels, self.get());
    }
}

impl Metric for Histogram {
    const KIND: MetricType = MetricType::Histogram;
    fn create(bounds: &Arc<[f64]>) -> Histogram {
        Histogram::with_bounds(bounds.clone())
    }
    fn encode(&self, enc: &mut Encoder, name: &str, labels: &[(&str, &str)]) {
        enc.histogram(name, labels, self);
    }
}

#[derive(Debug)]
struct Series<M> {
    values: Box<[String]>,
    metric: Arc<M>,
}

/// One metric name with a fixed set of label names: one series per
/// combination of label values.
#[derive(Debug)]
pub struct Family<M> {
    name: String,
    help: String,
    label_names: Box<[String]>,
    bounds: Arc<[f64]>,
    /// Keyed by the concatenation of the label values, each prefixed by
    /// its length (so no two label sets share a key).
    series: RwLock<HashMap<Box<[u8]>, Series<M>>>,
}

thread_local! {
    /// Reused buffer for series keys, so a lookup does not allocate.
    static KEY: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

impl<M: Metric> Family<M> {
    fn new(name: &str, help: &str, label_names: &[&str], bounds: Arc<[f64]>) -> Family<M> {
        Family {
            name: name.to_string(),
            help: help.to_string(),
            label_names: label_names.iter().map(|s| s.to_string()).collect(),
            bounds,
            series: RwLock::new(HashMap::new()),
        }
    }

    /// The metric name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The series with these label values (in the order of the label
    /// names), created on first use. Missing values count as `""`, extra
    /// ones are ignored.
    pub fn with(&self, values: &[&str]) -> Arc<M> {
        KEY.with(|key| {
            let mut key = key.borrow_mut();
            self.key_into(&mut key, values);
            if let Some(s) = self.series.read().get(key.as_slice()) {
                return s.metric.clone();
            }
            let mut series = self.series.write();
            series
                .entry(key.as_slice().into())
                .or_insert_with(|| Series {
                    values: (0..self.label_names.len())
                        .map(|i| values.get(i).copied().unwrap_or("").to_string())
                        .collect(),
                    metric: Arc::new(M::create(&self.bounds)),
                })
                .metric
                .clone()
        })
    }

    /// Drops one series (it is no longer exported).
    pub fn remove(&self, values: &[&str]) {
        KEY.with(|key| {
            let mut key = key.borrow_mut();
            self.key_into(&mut key, values);
            self.series.write().remove(key.as_slice());
        });
    }

    /// Drops every series.
    pub fn clear(&self) {
        self.series.write().clear();
    }

    fn key_into(&self, key: &mut Vec<u8>, values: &[&str]) {
        key.clear();
        for i in 0..self.label_names.len() {
            let v = values.get(i).copied().unwrap_or("");
            key.extend_from_slice(&(v.len() as u64).to_le_bytes());
            key.extend_from_slice(v.as_bytes());
        }
    }

    fn encode_into(&self, enc: &mut Encoder) {
        let mut series: Vec<(Box<[String]>, Arc<M>)> = self
            .series
            .read()
            .values()
            .map(|s| (s.values.clone(), s.metric.clone()))
            .collect();
        series.sort_by(|a, b| a.0.cmp(&b.0));
        enc.header(&self.name, &self.help, M::KIND);
        let mut labels: Vec<(&str, &str)> = Vec::with_capacity(self.label_names.len());
        for (values, metric) in &series {
            labels.clear();
            labels.extend(
                self.label_names
                    .iter()
                    .map(String::as_str)
                    .zip(values.iter().map(String::as_str)),
            );
            metric.encode(enc, &self.name, &labels);
        }
    }
}

/// Anything the registry renders.
trait Collect: Send + Sync + std::fmt::Debug {
    fn encode_into(&self, enc: &mut Encoder);
    fn kind(&self) -> MetricType;
    fn label_names(&self) -> &[String];
}

impl<M: Metric> Collect for Family<M> {
    fn encode_into(&self, enc: &mut Encoder) {
        Family::encode_into(self, enc);
    }
    fn kind(&self) -> MetricType {
        M::KIND
    }
    fn label_names(&self) -> &[String] {
        &self.label_names
    }
}

#[derive(Debug)]
struct Entry {
    name: String,
    collect: Arc<dyn Collect>,
    any: Arc<dyn Any + Send + Sync>,
}

/// A scrape-time callback; see [`Registry::collector`].
pub type CollectorFn = dyn Fn(&mut Encoder) + Send + Sync;

/// Metric families and scrape-time collectors.
#[derive(Default)]
pub struct Registry {
    families: RwLock<Vec<Entry>>,
    collectors: RwLock<Vec<(String, Arc<CollectorFn>)>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("families", &self.families.read().len())
            .field("collectors", &self.collectors.read().len())
            .finish()
    }
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
    pub fn counter(&self, name: &str, help: &str, labels: &[&str]) -> Arc<Family<Counter>> {
        self.family(name, help, labels, &[])
    }

    /// The gauge family `name`, registered on first call.
    pub fn gauge(&self, name: &str, help: &str, labels: &[&str]) -> Arc<Family<Gauge>> {
        self.family(name, help, labels, &[])
    }

    /// The histogram family `name` with these bucket bounds, registered on
    /// first call (a later call gets the first call's bounds).
    pub fn histogram(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
        bounds: &[f64],
    ) -> Arc<Family<Histogram>> {
        self.family(name, help, labels, bounds)
    }

    /// Finds or registers a family. A name already registered with another
    /// type or other label names is a programming error: it is logged and a
    /// detached family (never exported) is returned, so callers need no
    /// error handling.
    fn family<M: Metric>(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
        bounds: &[f64],
    ) -> Arc<Family<M>> {
        let name = if is_valid_name(name) {
            name.to_string()
        } else {
            tracing::warn!(metric = name, "Invalid metric name; characters replaced.");
            sanitise_name(name, false)
        };
        let labels: Vec<String> = labels
            .iter()
            .map(|l| {
                if is_valid_label_name(l) {
                    l.to_string()
                } else {
                    tracing::warn!(metric = %name, label = l, "Invalid label name; characters replaced.");
                    sanitise_name(l, true)
                }
            })
            .collect();
        let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
        let mut families = self.families.write();
        if let Some(e) = families.iter().find(|e| e.name == name) {
            let same_labels = e
                .collect
                .label_names()
                .iter()
                .map(String::as_str)
                .eq(labels.iter().copied());
            if e.collect.kind() == M::KIND && same_labels {
                if let Ok(f) = e.any.clone().downcast::<Family<M>>() {
                    return f;
                }
            }
            tracing::error!(metric = %name, "Metric registered twice with different types or labels; the second is not exported.");
            return Arc::new(Family::new(&name, help, &labels, normalise_bounds(bounds)));
        }
        let family = Arc::new(Family::<M>::new(
            &name,
            help,
            &labels,
            normalise_bounds(bounds),
        ));
        families.push(Entry {
            name,
            collect: family.clone(),
            any: family.clone(),
        });
        family
    }

    /// Registers (or replaces, by `id`) a callback that writes metrics at
    /// scrape time, for numbers that already live elsewhere. It must write
    /// whole metrics (header, then samples) with names no family uses.
    pub fn collector(&self, id: &str, f: impl Fn(&mut Encoder) + Send + Sync + 'static) {
        let mut collectors = self.collectors.write();
        let f: Arc<CollectorFn> = Arc::new(f);
        match collectors.iter_mut().find(|(i, _)| i == id) {
            Some(slot) => slot.1 = f,
            None => collectors.push((id.to_string(), f)),
        }
    }

    /// Removes a collector registered with [`Registry::collector`].
    pub fn remove_collector(&self, id: &str) {
        self.collectors.write().retain(|(i, _)| i != id);
    }

    /// Writes every family (in registration order), then every collector.
    pub fn encode_into(&self, enc: &mut Encoder) {
        let families: Vec<Arc<dyn Collect>> = self
            .families
            .read()
            .iter()
            .map(|e| e.collect.clone())
            .collect();
        for f in families {
            f.encode_into(enc);
        }
        let collectors: Vec<Arc<CollectorFn>> =
            self.collectors.read().iter().map(|c| c.1.clone()).collect();
        for c in collectors {
            c(enc);
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
        enc.header(
            "process_cpu_seconds_total",
            "Total user and system CPU time spent in seconds.",
            MetricType::Counter,
        );
        enc.sample("process_cpu_seconds_total", &[], cpu);
        enc.header(
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes.",
            MetricType::Gauge,
        );
        enc.sample("process_virtual_memory_bytes", &[], f.vsize);
    }
    if let Some(rss) = rss_bytes() {
        enc.header(
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            MetricType::Gauge,
        );
        enc.sample("process_resident_memory_bytes", &[], rss);
    }
    if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
        // The directory handle itself is one of the entries.
        let open = dir.count().saturating_sub(1);
        enc.header(
            "process_open_fds",
            "Number of open file descriptors.",
            MetricType::Gauge,
        );
        enc.sample("process_open_fds", &[], open);
    }
    if let Some(max) = max_fds() {
        enc.header(
            "process_max_fds",
            "Maximum number of open file descriptors.",
            MetricType::Gauge,
        );
        enc.sample("process_max_fds", &[], max);
    }
    if let (Some(f), Some(boot)) = (&fields, boot_time()) {
        let start = boot as f64 + f.starttime as f64 / ticks;
        enc.header(
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds.",
            MetricType::Gauge,
        );
        enc.sample("process_start_time_seconds", &[], start);
    }
    if let Some(f) = &fields {
        enc.header(
            "process_threads",
            "Number of OS threads in the process.",
            MetricType::Gauge,
        );
        enc.sample("process_threads", &[], f.threads);
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
        let h = r.histogram("t_seconds", "Latency.", &["backend"], &[1.0, 0.1, 0.5, 0.5]);
        let s = h.with(&["b1"]);
        for v in [0.05, 0.1, 0.3, 2.0] {
            s.observe(v);
        }
        s.observe_duration(Duration::from_millis(700));
        assert_eq!(s.bounds(), &[0.1, 0.5, 1.0]);
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
        c.remove(&["1", "x"]);
        assert_eq!(r.encode().matches("t_total{").count(), 1);
        // Missing values are empty strings.
        assert_eq!(c.with(&["1:x"]).get(), 1);
    }

    #[test]
    fn invalid_names_are_sanitised() {
        assert!(is_valid_name("influx_proxy_x:y_total"));
        assert!(!is_valid_name("9x") && !is_valid_name("a-b") && !is_valid_name(""));
        assert!(is_valid_label_name("backend"));
        assert!(!is_valid_label_name("le") && !is_valid_label_name("__x"));
        let r = Registry::new();
        let c = r.counter("bad-name", "B.", &["le", "a b"]);
        c.with(&["1", "2"]).inc();
        assert!(
            r.encode().contains("bad_name{le_=\"1\",a_b=\"2\"} 1\n"),
            "{}",
            r.encode()
        );
    }

    #[test]
    fn collectors_run_at_scrape_time_and_are_replaced_by_id() {
        let r = Registry::new();
        r.collector("x", |enc| {
            enc.header("t_x", "X.", MetricType::Gauge);
            enc.sample("t_x", &[], 1u64);
        });
        r.collector("x", |enc| {
            enc.header("t_x", "X.", MetricType::Gauge);
            enc.sample("t_x", &[], 2u64);
        });
        assert_eq!(r.encode(), "# HELP t_x X.\n# TYPE t_x gauge\nt_x 2\n");
        r.remove_collector("x");
        assert_eq!(r.encode(), "");
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
