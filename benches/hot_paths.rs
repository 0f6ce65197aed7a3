//! Micro-benchmarks of the write path's hot spots: line-protocol scanning, ring placement, the
//! RocksDB write-ahead queue and the per-request metrics.
//!
//! `cargo bench --bench hot_paths` measures (about a minute in all); `cargo test --benches` runs
//! every benchmark once as a smoke test.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use influx_proxy::config::{LineRule, MeasurementMatch, Pattern, RuleAction, TagMatch};
use influx_proxy::line_protocol::{lines, normalize_into, parse, Precision};
use influx_proxy::ring::{HashKey, Ring, ShardKey, DEFAULT_REPLICAS};
use influx_proxy::rules::{Candidates, Rules};
use influx_proxy::wal::{LineSpans, Queue, Wal, WriteLines};

/// Lines per request body, as a telegraf flush or the load tool's default batch.
const BATCH: usize = 5_000;

/// A telegraf-like body: 10 measurements, 100 hosts, 4 fields, increasing timestamps in the
/// unit of `precision`.
fn body(precision: Precision) -> Vec<u8> {
    let base_ns: i64 = 1_700_000_000_000_000_000;
    let mut out = Vec::with_capacity(BATCH * 128);
    for i in 0..BATCH {
        let ts = (base_ns + i as i64 * 1_000_000_000) / precision.nanos();
        let line = format!(
            "m{},host=server{:03},region=eu-west-{} usage_user={}.{:02},usage_system={}i,\
             usage_idle={}.5,running={}i {ts}\n",
            i % 10,
            (i / 10) % 100,
            i % 3,
            i % 97,
            i % 100,
            i % 13,
            i % 89,
            i % 7,
        );
        out.extend_from_slice(line.as_bytes());
    }
    out
}

fn throughput(body: &[u8]) -> Throughput {
    Throughput::ElementsAndBytes {
        elements: BATCH as u64,
        bytes: body.len() as u64,
    }
}

fn line_protocol(c: &mut Criterion) {
    let ns = body(Precision::Nanoseconds);
    let secs = body(Precision::Seconds);
    let mut g = c.benchmark_group("line_protocol");
    g.throughput(throughput(&ns));
    g.bench_function("lines", |b| b.iter(|| lines(black_box(&ns)).count()));
    // A string field sends every line down the splitter's quote-aware path.
    let strings: Vec<u8> = String::from_utf8_lossy(&ns)
        .replace(",running=", ",status=\"ok\",running=")
        .into_bytes();
    g.bench_function("lines/string-fields", |b| {
        b.iter(|| lines(black_box(&strings)).count())
    });
    g.bench_function("lines+parse", |b| {
        b.iter(|| lines(black_box(&ns)).filter(|l| parse(l).is_ok()).count())
    });
    let mut out = Vec::with_capacity(ns.len() + BATCH * 12);
    let now = 1_800_000_000_000_000_000;
    g.bench_function("lines+parse+normalize_into/ns", |b| {
        b.iter(|| {
            out.clear();
            for l in lines(black_box(&ns)) {
                let parsed = parse(l).unwrap();
                normalize_into(l, &parsed, Precision::Nanoseconds, now, &mut out).unwrap();
            }
            out.len()
        })
    });
    // Second precision: every timestamp is rewritten to nanoseconds.
    g.throughput(throughput(&secs));
    g.bench_function("lines+parse+normalize_into/s", |b| {
        b.iter(|| {
            out.clear();
            for l in lines(black_box(&secs)) {
                let parsed = parse(l).unwrap();
                normalize_into(l, &parsed, Precision::Seconds, now, &mut out).unwrap();
            }
            out.len()
        })
    });
    g.finish();
}

fn ring(c: &mut Criterion) {
    let shard_key = ShardKey::default();
    // 1,000 distinct measurements of one database, as in a large telegraf deployment.
    let measurements: Vec<String> = (0..1_000).map(|i| format!("measurement_{i:04}")).collect();
    let mut g = c.benchmark_group("ring");
    g.throughput(Throughput::Elements(measurements.len() as u64));
    for backends in [4usize, 20] {
        let keys: Vec<String> = (0..backends)
            .map(|i| HashKey::Idx.node_key(i, &format!("influxdb-{i}"), "http://127.0.0.1:8086"))
            .collect();
        let ring = Ring::new(&keys, DEFAULT_REPLICAS);
        let mut key = String::new();
        g.bench_with_input(
            BenchmarkId::new("build_into+get", backends),
            &ring,
            |b, ring| {
                b.iter(|| {
                    let mut sum = 0usize;
                    for mm in &measurements {
                        shard_key.build_into(black_box("telegraf"), mm, &mut key);
                        sum += ring.get(key.as_bytes());
                    }
                    sum
                })
            },
        );
    }
    g.finish();
}

fn wal(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let wal = Arc::new(Wal::open(dir.path(), influx_proxy::wal::Durability::Buffered).unwrap());
    let q = wal.queue("bench", 1 << 40).unwrap();
    let reader = wal.reader(q.clone());
    let lines_ns = body(Precision::Nanoseconds);
    let append = || {
        wal.append_lines(&[&q], "telegraf", "", BATCH as u32, &lines_ns)
            .unwrap()
    };
    // What the backend actor does: read from its cursor, deliver, ack.
    let mut cursor = 0u64;
    let drain = |cursor: &mut u64| loop {
        let entries = reader.read(*cursor, 10_000, 64 << 20).unwrap();
        let Some(last) = entries.last() else {
            break;
        };
        *cursor = last.seq;
        reader.ack(&entries).unwrap();
    };

    let mut g = c.benchmark_group("wal");
    g.throughput(throughput(&lines_ns));
    g.bench_function("append", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for i in 0..iters {
                let start = Instant::now();
                append();
                total += start.elapsed();
                // Keep the queue short, untimed, as a healthy backend would.
                if i % 16 == 15 {
                    drain(&mut cursor);
                }
            }
            drain(&mut cursor);
            total
        })
    });
    g.bench_function("read+ack", |b| {
        b.iter_batched(
            || {
                append();
            },
            |()| {
                let entries = reader.read(cursor, 10_000, 64 << 20).unwrap();
                assert_eq!(entries.len(), 1);
                cursor = entries[0].seq;
                reader.ack(&entries).unwrap();
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
    assert!(q.is_empty());
    write(c, &lines_ns);
}

/// Who receives which lines of [`body`]: every line to queue 0 (one circle of one backend), or
/// every line to queue 0 and measurements m0-m4 / m5-m9 to queues 1 / 2 (a second circle of two),
/// as the router builds the shares.
fn shares(lines: &[u8], queues: usize) -> Vec<LineSpans> {
    let mut out: Vec<LineSpans> = (0..queues)
        .map(|_| LineSpans::with_capacity(BATCH))
        .collect();
    let mut start = 0usize;
    for line in lines.split_inclusive(|&b| b == b'\n') {
        let m = usize::from(line[1] - b'0');
        out[0].push(start, line.len());
        if queues > 1 {
            out[1 + m / 5].push(start, line.len());
        }
        start += line.len();
    }
    out
}

/// Appends the lines of one routed 5,000-line write (`Wal::append_write`, what `Router::commit` calls),
/// untimed setup being the routing itself: to one queue (stored as its record, built in place)
/// and to two circles of one and two backends (lines stored once, one record of spans each).
fn write(c: &mut Criterion, body: &[u8]) {
    let dir = tempfile::tempdir().unwrap();
    let wal = Arc::new(Wal::open(dir.path(), influx_proxy::wal::Durability::Buffered).unwrap());
    let queues: Vec<Queue> = (0..3)
        .map(|i| wal.queue(&format!("w{i}"), 1 << 40).unwrap())
        .collect();
    let readers: Vec<_> = queues.iter().map(|q| wal.reader(q.clone())).collect();
    let mut cursors = [0u64; 3];
    let drain = |cursors: &mut [u64; 3]| {
        for (reader, cursor) in readers.iter().zip(cursors.iter_mut()) {
            loop {
                let entries = reader.read(*cursor, 10_000, 64 << 20).unwrap();
                let Some(last) = entries.last() else {
                    break;
                };
                *cursor = last.seq;
                reader.ack(&entries).unwrap();
            }
        }
    };
    let mut lines = WriteLines::reusing(Vec::new(), "telegraf", "");
    lines.buffer().extend_from_slice(body);
    let mut g = c.benchmark_group("wal/write");
    g.throughput(throughput(body));
    for receivers in [1usize, 3] {
        let shares = shares(body, receivers);
        let targets: Vec<(&Queue, &LineSpans)> = queues.iter().zip(&shares).collect();
        g.bench_function(BenchmarkId::from_parameter(receivers), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for i in 0..iters {
                    let start = Instant::now();
                    wal.append_write(&mut lines, &targets).unwrap();
                    total += start.elapsed();
                    if i % 16 == 15 {
                        drain(&mut cursors);
                    }
                }
                drain(&mut cursors);
                total
            })
        });
    }
    g.finish();
}

/// What the request middleware adds per request: a counter and a histogram found by label
/// values and updated (see `src/api/metrics.rs`).
fn metrics(c: &mut Criterion) {
    let r = influx_proxy::metrics::Registry::new();
    let requests = r.counter("bench_requests_total", "Requests.", &["path", "status"]);
    let duration = r.histogram(
        "bench_request_duration_seconds",
        "Latency.",
        &["path"],
        influx_proxy::metrics::LATENCY_BUCKETS,
    );
    for path in [
        "/ping", "/write", "/query", "/health", "/replica", "/metrics",
    ] {
        for status in ["200", "204", "400", "404", "500"] {
            requests.with(&[path, status]).inc();
        }
    }
    c.bench_function("metrics/request", |b| {
        let started = Instant::now();
        b.iter(|| {
            duration
                .with(black_box(&["/write"]))
                .observe_duration(started.elapsed());
            requests.with(black_box(&["/write", "204"])).inc();
        })
    });
}

/// The same per-request work with `prometheus-client` 0.26, for the comparison in the
/// `src/metrics.rs` module doc. Two label shapes: owned strings (what the middleware would need,
/// the path and status being runtime values) and `&'static str` (its best case, no allocation).
fn metrics_prometheus_client(c: &mut Criterion) {
    use prometheus_client::encoding::EncodeLabelSet;
    use prometheus_client::metrics::counter::Counter;
    use prometheus_client::metrics::family::Family;
    use prometheus_client::metrics::histogram::Histogram;
    use prometheus_client::registry::Registry;

    #[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
    struct Request {
        path: &'static str,
        status: &'static str,
    }
    #[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
    struct Path {
        path: &'static str,
    }
    fn latency() -> Histogram {
        Histogram::new(influx_proxy::metrics::LATENCY_BUCKETS.iter().copied())
    }

    let mut registry = Registry::default();
    let requests = Family::<Request, Counter>::default();
    let duration = Family::<Path, Histogram, fn() -> Histogram>::new_with_constructor(latency);
    let owned_requests = Family::<Vec<(String, String)>, Counter>::default();
    let owned_duration =
        Family::<Vec<(String, String)>, Histogram, fn() -> Histogram>::new_with_constructor(
            latency,
        );
    registry.register("bench_requests", "Requests.", requests.clone());
    registry.register(
        "bench_request_duration_seconds",
        "Latency.",
        duration.clone(),
    );
    registry.register("bench_owned_requests", "Requests.", owned_requests.clone());
    registry.register(
        "bench_owned_request_duration_seconds",
        "Latency.",
        owned_duration.clone(),
    );
    for path in [
        "/ping", "/write", "/query", "/health", "/replica", "/metrics",
    ] {
        for status in ["200", "204", "400", "404", "500"] {
            requests.get_or_create(&Request { path, status }).inc();
            owned_requests
                .get_or_create(&vec![
                    ("path".to_string(), path.to_string()),
                    ("status".to_string(), status.to_string()),
                ])
                .inc();
        }
    }
    c.bench_function("metrics/request-prometheus-client-static", |b| {
        let started = Instant::now();
        b.iter(|| {
            duration
                .get_or_create(black_box(&Path { path: "/write" }))
                .observe(started.elapsed().as_secs_f64());
            requests
                .get_or_create(black_box(&Request {
                    path: "/write",
                    status: "204",
                }))
                .inc();
        })
    });
    c.bench_function("metrics/request-prometheus-client-owned", |b| {
        let started = Instant::now();
        let (path, status) = (black_box("/write"), black_box("204"));
        b.iter(|| {
            owned_duration
                .get_or_create(&vec![("path".to_string(), path.to_string())])
                .observe(started.elapsed().as_secs_f64());
            owned_requests
                .get_or_create(&vec![
                    ("path".to_string(), path.to_string()),
                    ("status".to_string(), status.to_string()),
                ])
                .inc();
        })
    });
}

/// A rule for the `rules` bench: every line of [`body`] is in database `db`.
fn rule(measurement: MeasurementMatch, tag: Option<(&str, &str)>, action: RuleAction) -> LineRule {
    LineRule {
        name: format!("r{}", fastrand_name()),
        database: Some("db".into()),
        measurement,
        tag: tag.map(|(key, value)| TagMatch {
            key: key.into(),
            value: Pattern::new(value).unwrap(),
        }),
        action,
    }
}

/// A unique rule name (rule counters are registered by name).
fn fastrand_name() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// What each kind of line rule costs per line on the write path: parsing every line of a
/// 5,000-line body, looking its measurement up in a per-request map (the router does that
/// once per line anyway, for the owners, and keeps the measurement's candidate rules beside
/// them) and deciding. `none` is the same loop with no rules; the difference to it is what
/// the rules cost per line.
fn rules(c: &mut Criterion) {
    let ns = body(Precision::Nanoseconds);
    let regex = |p: &str| MeasurementMatch::Regex(Pattern::new(p).unwrap());
    let cases: Vec<(&str, Vec<LineRule>)> = vec![
        ("none", vec![]),
        (
            "drop-exact-miss",
            vec![rule(
                MeasurementMatch::Exact("junk".into()),
                None,
                RuleAction::Drop,
            )],
        ),
        (
            "drop-regex-miss",
            vec![rule(regex("^debug_"), None, RuleAction::Drop)],
        ),
        (
            "drop-tag-regex",
            vec![rule(
                regex("^m"),
                Some(("host", "^server09")),
                RuleAction::Drop,
            )],
        ),
        (
            "pin",
            vec![rule(
                MeasurementMatch::Exact("m3".into()),
                None,
                RuleAction::Pin(vec!["b".into()]),
            )],
        ),
        ("ten-rules", {
            let mut v: Vec<LineRule> = (0..9)
                .map(|i| match i % 3 {
                    0 => rule(
                        MeasurementMatch::Exact(format!("x{i}")),
                        None,
                        RuleAction::Drop,
                    ),
                    1 => rule(regex(&format!("^y{i}")), None, RuleAction::Drop),
                    _ => rule(regex("^m"), Some(("region", "^ap-")), RuleAction::Drop),
                })
                .collect();
            v.push(rule(MeasurementMatch::Any, None, RuleAction::Keep));
            v
        }),
    ];
    let mut g = c.benchmark_group("rules");
    g.throughput(throughput(&ns));
    for (name, list) in cases {
        let rules = Rules::new(&list);
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut cache: rustc_hash::FxHashMap<String, Candidates> =
                    rustc_hash::FxHashMap::default();
                let mut counts = vec![0u64; rules.len()];
                let mut kept = 0usize;
                for line in lines(black_box(&ns)) {
                    let parsed = parse(line).unwrap();
                    if !cache.contains_key(parsed.measurement.as_ref()) {
                        let found = rules.for_measurement("db", &parsed.measurement);
                        cache.insert(parsed.measurement.to_string(), found);
                    }
                    let candidates = &cache[parsed.measurement.as_ref()];
                    if !candidates.is_empty() {
                        match rules.decide(candidates, line, &parsed) {
                            influx_proxy::rules::Decision::Dropped(i) => {
                                counts[i] += 1;
                                continue;
                            }
                            influx_proxy::rules::Decision::Kept(i)
                            | influx_proxy::rules::Decision::Pinned(i) => counts[i] += 1,
                            influx_proxy::rules::Decision::Unruled => {}
                        }
                    }
                    kept += 1;
                }
                rules.count(&counts);
                kept
            })
        });
    }
    g.finish();
}

criterion_group! {
    name = hot_paths;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = line_protocol, ring, wal, rules, metrics, metrics_prometheus_client
}
criterion_main!(hot_paths);
