//! `influx-proxy-bench`: an inch-like load generator, a null InfluxDB, and the benchmark suite
//! that runs them against influx-proxy and writes docs/perf.md.
//!
//! * `write` pushes line protocol at an InfluxDB 1.x `/write` endpoint (the proxy or `influxd`)
//!   over raw HTTP/1.1 keep-alive connections, one per worker thread, and reports points/s,
//!   requests/s, MB/s and latency percentiles (optionally as one JSON line).
//! * `sink` is a null InfluxDB: it answers `/ping`, `/query` and `/write` (counting the points it
//!   received) so the proxy can be measured without a real database behind it.
//! * `suite` runs the benchmarks of docs/perf.md section by section ([`suite`]): influxd, the
//!   proxies and the sinks through the harness crate, the load as `write` child processes.
//!
//! Only std plus crates the proxy already depends on; no async runtime, no HTTP library
//! ([`http1`] is just enough of it). The client side is lean on purpose: on a 2-core machine
//! the load generator shares the CPU with the system under test.
//!
//! # Bodies, timestamps and the stored point count
//! Each worker generates its bodies from pre-rendered per-series line prefixes and field sets (a
//! few `memcpy`s and one integer formatting per line): `write --dry-run` shows about 20 million
//! points/s per core for plain bodies, so they are made on the fly. Compressing is ~10x slower
//! (about 3 million points/s per core), so `--pool-mb` pre-generates (and compresses) the first
//! bodies of the sequence before the timed run; the run sends the pool first, in order, then goes
//! on generating. No body is ever sent twice.
//!
//! The timestamp of a point is `base + tick * concurrency + worker`, where `tick` counts how
//! often that worker has already used the point's series. So (series, timestamp) never repeats
//! within a run, neither within a worker nor across workers, and InfluxDB stores exactly as many
//! points as were acknowledged. `base` is the start time in the request precision, so runs
//! started at different times do not overlap either (with coarse precisions such as `s`, two runs
//! less than `points-per-series * concurrency` seconds apart may).

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use flate2::write::GzEncoder;
use flate2::Compression;
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};

use http1::{read_body, read_headers, read_line, Conn, MAX_HEAD};

mod http1;
mod suite;
mod udp_send;

const HELP: &str = "\
influx-proxy-bench: load generator, null InfluxDB and benchmark suite of influx-proxy

USAGE:
    influx-proxy-bench write [OPTIONS]     push line protocol at /write and report throughput
    influx-proxy-bench sink [OPTIONS]      run a null InfluxDB that counts the points it receives
    influx-proxy-bench udp [OPTIONS]       send Telegraf-like line protocol in UDP datagrams
    influx-proxy-bench suite [OPTIONS]     run the benchmarks and write docs/perf.md
    influx-proxy-bench --help

WRITE OPTIONS:
    --url URL               target, http only              [default: http://127.0.0.1:7076]
    --db NAME               database                       [default: bench]
    --rp NAME               retention policy               [default: none]
    --concurrency N         worker threads, one keep-alive connection each   [default: 4]
    --batch N               points per request             [default: 5000]
    --measurements N        measurements m0..m{N-1}        [default: 10]
    --tags N                tags per point tag0..tag{N-1}  [default: 2]
    --tag-cardinality N     distinct tag sets per measurement; series = measurements x this
                                                           [default: 100]
    --fields N              fields per point, float and integer alternating  [default: 4]
    --shape S               synthetic (the options above: short names, m0,tag0=v1 f0=1.5)
                            or telegraf: what a Telegraf agent fleet sends, 20 measurements
                            (cpu, mem, disk, ...) x 250 hosts (host=, region=, dc= tags), one
                            full-precision float and one integer field per line; --measurements
                            and --tag-cardinality still apply      [default: synthetic]
    --gzip                  send gzip-compressed bodies (compressed by the worker per request)
    --rate N                points/s over all workers, 0 = unlimited          [default: 0]
    --duration D            how long to send, e.g. 10s, 500ms, 2m             [default: 10s]
    --points N              stop once N points were sent (whole batches), 0 = no limit;
                            --duration still bounds the run                  [default: 0]
    --precision P           n, ns, u, us, ms, s, m or h    [default: n]
    --pool-mb N             pre-generate about N MB of request bodies (all workers together)
                            before the timed run and send them first, then go on generating on
                            the fly; takes gzip compression out of the timed run   [default: 0]
    --timeout D             connect/read/write timeout per request            [default: 30s]
    --create-db             POST /query CREATE DATABASE first (failure is ignored)
    --json                  print the summary as one JSON line on stdout (text goes to stderr)
    --dry-run               generate (and gzip) bodies without sending: generator speed
    --allow-remote          allow a target that is not 127.0.0.1, localhost or ::1

SINK OPTIONS:
    --listen ADDR           address to listen on           [default: 127.0.0.1:8086]
    --delay-ms N            wait N ms before answering each /write            [default: 0]
    --quiet                 do not print the per-second points rate
    --allow-remote          allow listening on a non-loopback address

The sink answers GET /ping 204, POST /write 204 (gzip and chunked bodies accepted), /query
with {\"results\":[{\"statement_id\":0}]} and GET /debug/sink with its counters as JSON. It
prints the points received per second to stderr every second.

Each point has a distinct (series, timestamp) within a run, so InfluxDB stores every point
that was acknowledged with 204.

UDP OPTIONS:
    --addr HOST:PORT        a UDP listener of the proxy    [default: 127.0.0.1:8089]
    --rate N                points/s, 0 = as fast as the socket takes them    [default: 0]
    --duration D            how long to send               [default: 10s]
    --datagram-bytes N      largest datagram, whole lines only               [default: 1400]
    --pool N                datagrams made before the run and cycled through [default: 8192]
    --json                  print the summary as one JSON line on stdout
    --allow-remote          allow a target that is not loopback

SUITE OPTIONS (each falls back to the environment variable in brackets):
    --quick                 2 s runs, a 4 s outage, small data sets; writes
                            $CARGO_TARGET_DIR/bench/perf-quick.md         (the CI smoke run)
    --sections LIST         which sections, in order: a,a2,b,c,d,e,f,g,h,i [BENCH_SECTIONS]
    --output FILE           the report        [BENCH_OUTPUT; default docs/perf.md]
    --seconds N             seconds per load run                 [BENCH_SECONDS; 10]
    --concurrency N         load connections                     [BENCH_CONCURRENCY; 4]
    --batch N               points per request                   [BENCH_BATCH; 5000]
    --pool-mb N             gzip bodies compressed before a run  [BENCH_POOL_MB; 25 x seconds]
    --latency-rate N        points/s of (c)                      [BENCH_LATENCY_RATE; 100000]
    --latency-seconds N     length of each (c) run               [BENCH_LATENCY_SECONDS; 60]
    --outage-seconds N      how long (d) kills a sink            [OUTAGE_SECONDS; 600]
    --outage-rate N         points/s during (d)                  [BENCH_OUTAGE_RATE; 100000]
    --sample-seconds N      (d) sampling during the outage       [BENCH_SAMPLE_SECONDS;
                                                                  outage / 20, at least 3]
    --go-proxy PATH         the Go proxy 2.5.12 of (a), (f)      [GO_PROXY]
    --go-migrate-proxy PATH the Go proxy 2.4.4 of (e)            [GO_MIGRATE_PROXY]
                            (default: ../shared/reference/bin/ beside the repository)
    --migrate-points N      (e) data set      [BENCH_MIGRATE_POINTS; 10000000, quick 100000]
    --migrate-measurements N                  [BENCH_MIGRATE_MEASUREMENTS; 100, quick 10]
    --migrate-cpus N        the jobs' cpus                       [BENCH_MIGRATE_CPUS; min(nproc, 2)]
    --migrate-timeout N     seconds per run                      [BENCH_MIGRATE_TIMEOUT; 3600]
    --migrate-ops LIST      rebalance,recovery                   [BENCH_MIGRATE_OPS]
    --migrate-proxies LIST  ours,go (base: --migrate-base too)   [BENCH_MIGRATE_PROXIES]
    --migrate-base PATH     another influx-proxy binary, e.g. a build of main
                                                                 [BENCH_MIGRATE_BASE]
    --migrate-perf          perf record -g each proxy during (e) [BENCH_MIGRATE_PERF=1]
    --query-seconds N       (f) timing per query and target      [BENCH_QUERY_SECONDS; 10, quick 1]
    --query-hosts N         (f) hosts of the telegraf shape      [BENCH_QUERY_HOSTS; 250, quick 50]
    --query-minutes N       (f) minutes of data                  [BENCH_QUERY_MINUTES; 360, quick 30]
    --ae-points N           (h) anti-entropy data set      [BENCH_AE_POINTS; 2000000, quick 100000]
    --keep                  keep the work directory (configs, logs, answers)  [BENCH_KEEP=1]

The proxy measured is influx-proxy beside this program (or $INFLUX_PROXY_BIN); sections b, e
and f need influxd (Debian package influxdb) and are skipped without it.";

// ---------------------------------------------------------------------------------------------
// Arguments
// ---------------------------------------------------------------------------------------------

/// What to run.
#[derive(Debug, Clone, PartialEq)]
enum Command {
    Help,
    Write(WriteOpts),
    Sink(SinkOpts),
    Udp(udp_send::UdpOpts),
    Suite(suite::SuiteOpts),
}

/// Measurement names of `--shape telegraf`: Telegraf's common input plugins.
const TELEGRAF_MEASUREMENTS: [&str; 20] = [
    "cpu",
    "mem",
    "disk",
    "diskio",
    "net",
    "netstat",
    "system",
    "processes",
    "swap",
    "kernel",
    "interrupts",
    "linux_sysctl_fs",
    "nstat",
    "procstat",
    "docker",
    "docker_container_cpu",
    "docker_container_mem",
    "nginx",
    "postgresql",
    "redis",
];

/// Options of `write`.
#[derive(Debug, Clone, PartialEq)]
struct WriteOpts {
    url: Target,
    db: String,
    rp: Option<String>,
    concurrency: usize,
    batch: usize,
    measurements: usize,
    tags: usize,
    tag_cardinality: usize,
    fields: usize,
    /// `telegraf`: Telegraf-like names, tags and values instead of the synthetic ones.
    telegraf: bool,
    gzip: bool,
    /// Points per second over all workers; 0 means unlimited.
    rate: u64,
    duration: Duration,
    /// Points to send in all before stopping (whole batches); 0 = until `duration`.
    points: u64,
    precision: String,
    timeout: Duration,
    create_db: bool,
    json: bool,
    dry_run: bool,
    /// Megabytes of request bodies pre-generated (all workers together) before the run.
    pool_mb: usize,
}

impl Default for WriteOpts {
    fn default() -> WriteOpts {
        WriteOpts {
            url: Target {
                host: "127.0.0.1".to_owned(),
                port: 7076,
                base_path: String::new(),
            },
            db: "bench".to_owned(),
            rp: None,
            concurrency: 4,
            batch: 5000,
            measurements: 10,
            tags: 2,
            tag_cardinality: 100,
            fields: 4,
            telegraf: false,
            gzip: false,
            rate: 0,
            duration: Duration::from_secs(10),
            points: 0,
            precision: "n".to_owned(),
            timeout: Duration::from_secs(30),
            create_db: false,
            json: false,
            dry_run: false,
            pool_mb: 0,
        }
    }
}

/// Options of `sink`.
#[derive(Debug, Clone, PartialEq)]
struct SinkOpts {
    listen: String,
    delay: Duration,
    quiet: bool,
}

/// A parsed `http://host:port/prefix` URL.
#[derive(Debug, Clone, PartialEq)]
struct Target {
    /// Host as written, without brackets for IPv6.
    host: String,
    port: u16,
    /// Path prefix without a trailing slash (usually empty).
    base_path: String,
}

impl Target {
    fn parse(url: &str) -> Result<Target, String> {
        let rest = url.strip_prefix("http://").ok_or_else(|| {
            format!("unsupported URL {url:?}: only http:// is supported (no TLS)")
        })?;
        let (authority, path) = match rest.find('/') {
            Some(at) => (&rest[..at], &rest[at..]),
            None => (rest, ""),
        };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6
                .split_once(']')
                .ok_or_else(|| format!("bad IPv6 host in URL {url:?}"))?;
            let port = match after.strip_prefix(':') {
                Some(p) => Some(p),
                None if after.is_empty() => None,
                None => return Err(format!("bad URL {url:?}")),
            };
            (host, port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(format!("URL {url:?} has no host"));
        }
        let port = match port {
            Some(p) => p
                .parse::<u16>()
                .map_err(|_| format!("bad port {p:?} in URL {url:?}"))?,
            None => 80,
        };
        Ok(Target {
            host: host.to_owned(),
            port,
            base_path: path.trim_end_matches('/').to_owned(),
        })
    }

    fn is_loopback(&self) -> bool {
        is_loopback_host(&self.host)
    }

    /// Value of the `Host` header.
    fn host_header(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    fn resolve(&self) -> io::Result<SocketAddr> {
        (self.host.as_str(), self.port)
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| io::Error::other(format!("{} does not resolve", self.host)))
    }
}

fn is_loopback_host(host: &str) -> bool {
    matches!(host, "127.0.0.1" | "localhost" | "::1" | "[::1]")
}

fn parse_usize(flag: &str, value: &str, min: usize) -> Result<usize, String> {
    let n = value
        .parse::<usize>()
        .map_err(|_| format!("{flag}: {value:?} is not a non-negative integer"))?;
    if n < min {
        return Err(format!("{flag}: must be at least {min}"));
    }
    Ok(n)
}

/// Parses `10s`, `500ms`, `2m`, `1h`, `250us` or a bare number of seconds.
fn parse_duration(value: &str) -> Result<Duration, String> {
    let split = value
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(value.len());
    let (number, unit) = value.split_at(split);
    let n: f64 = number
        .parse()
        .map_err(|_| format!("bad duration {value:?} (use e.g. 10s, 500ms, 2m)"))?;
    let secs = match unit {
        "" | "s" => n,
        "ms" => n / 1e3,
        "us" => n / 1e6,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => {
            return Err(format!(
                "bad duration unit in {value:?} (use us, ms, s, m or h)"
            ))
        }
    };
    Duration::try_from_secs_f64(secs).map_err(|_| format!("bad duration {value:?}"))
}

/// Nanoseconds per unit of a `precision` value.
fn precision_nanos(p: &str) -> Result<i64, String> {
    influx_wire::line_protocol::Precision::parse(p).map(|p| p.nanos())
}

fn parse_args(args: &[String]) -> Result<Command, String> {
    let Some(mode) = args.first() else {
        return Ok(Command::Help);
    };
    let rest = split_flags(&args[1..]);
    let wants_help = rest
        .iter()
        .any(|(f, _)| f == "--help" || f == "-h" || f == "help");
    match mode.as_str() {
        "--help" | "-h" | "help" => Ok(Command::Help),
        "write" | "sink" | "udp" | "suite" if wants_help => Ok(Command::Help),
        "write" => parse_write(rest).map(Command::Write),
        "sink" => parse_sink(rest).map(Command::Sink),
        "udp" => udp_send::parse(rest).map(Command::Udp),
        "suite" => suite::parse(&args[1..]).map(Command::Suite),
        other => Err(format!(
            "unknown mode {other:?}: expected `write`, `sink`, `udp`, `suite` or `--help`"
        )),
    }
}

/// Splits `--flag=value` arguments; `--flag value` is resolved by [`walk_flags`], which knows
/// which flags are booleans.
fn split_flags(args: &[String]) -> Vec<(String, Option<String>)> {
    args.iter()
        .map(|arg| match arg.split_once('=') {
            Some((flag, value)) if arg.starts_with('-') => {
                (flag.to_owned(), Some(value.to_owned()))
            }
            _ => (arg.clone(), None),
        })
        .collect()
}

/// Walks `--flag [value]` pairs, calling `apply(flag, value)`; `is_bool` says which flags take
/// no value.
fn walk_flags(
    args: Vec<(String, Option<String>)>,
    is_bool: impl Fn(&str) -> bool,
    mut apply: impl FnMut(&str, &str) -> Result<(), String>,
) -> Result<(), String> {
    let mut it = args.into_iter();
    while let Some((flag, inline)) = it.next() {
        if !flag.starts_with("--") {
            return Err(format!("unexpected argument {flag:?}"));
        }
        if is_bool(&flag) {
            let value = inline.unwrap_or_else(|| "true".to_owned());
            apply(&flag, &value)?;
            continue;
        }
        let value = match inline {
            Some(v) => v,
            None => match it.next() {
                Some((v, None)) => v,
                Some((v, Some(inline))) => format!("{v}={inline}"),
                None => return Err(format!("{flag} needs a value")),
            },
        };
        apply(&flag, &value)?;
    }
    Ok(())
}

fn parse_bool(flag: &str, value: &str) -> Result<bool, String> {
    match value {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err(format!("{flag}: {value:?} is not a boolean")),
    }
}

fn parse_write(args: Vec<(String, Option<String>)>) -> Result<WriteOpts, String> {
    let mut o = WriteOpts::default();
    let mut url = "http://127.0.0.1:7076".to_owned();
    let mut allow_remote = false;
    let bools = [
        "--gzip",
        "--create-db",
        "--json",
        "--dry-run",
        "--allow-remote",
    ];
    walk_flags(
        args,
        |f| bools.contains(&f),
        |flag, v| {
            match flag {
                "--url" => url = v.to_owned(),
                "--db" => o.db = v.to_owned(),
                "--rp" => o.rp = Some(v.to_owned()).filter(|rp| !rp.is_empty()),
                "--concurrency" => o.concurrency = parse_usize(flag, v, 1)?,
                "--batch" => o.batch = parse_usize(flag, v, 1)?,
                "--measurements" => o.measurements = parse_usize(flag, v, 1)?,
                "--tags" => o.tags = parse_usize(flag, v, 0)?,
                "--tag-cardinality" => o.tag_cardinality = parse_usize(flag, v, 1)?,
                "--fields" => o.fields = parse_usize(flag, v, 1)?,
                "--shape" => match v {
                    "synthetic" => o.telegraf = false,
                    "telegraf" => {
                        o.telegraf = true;
                        o.measurements = TELEGRAF_MEASUREMENTS.len();
                        o.tags = 3;
                        o.tag_cardinality = 250;
                        o.fields = 2;
                    }
                    _ => return Err(format!("--shape: synthetic or telegraf, not {v:?}")),
                },
                "--rate" => o.rate = parse_usize(flag, v, 0)? as u64,
                "--duration" => o.duration = parse_duration(v)?,
                "--points" => o.points = parse_usize(flag, v, 0)? as u64,
                "--timeout" => o.timeout = parse_duration(v)?,
                "--pool-mb" => o.pool_mb = parse_usize(flag, v, 0)?,
                "--precision" => {
                    precision_nanos(v)?;
                    o.precision = v.to_owned();
                }
                "--gzip" => o.gzip = parse_bool(flag, v)?,
                "--create-db" => o.create_db = parse_bool(flag, v)?,
                "--json" => o.json = parse_bool(flag, v)?,
                "--dry-run" => o.dry_run = parse_bool(flag, v)?,
                "--allow-remote" => allow_remote = parse_bool(flag, v)?,
                _ => return Err(format!("unknown write option {flag}")),
            }
            Ok(())
        },
    )?;
    if o.db.is_empty() {
        return Err("--db must not be empty".to_owned());
    }
    if o.timeout.is_zero() {
        return Err("--timeout must be positive".to_owned());
    }
    o.url = Target::parse(&url)?;
    if !o.url.is_loopback() && !allow_remote {
        return Err(format!(
            "refusing to load non-loopback host {:?}; pass --allow-remote to do it anyway",
            o.url.host
        ));
    }
    Ok(o)
}

fn parse_sink(args: Vec<(String, Option<String>)>) -> Result<SinkOpts, String> {
    let mut o = SinkOpts {
        listen: "127.0.0.1:8086".to_owned(),
        delay: Duration::ZERO,
        quiet: false,
    };
    let mut allow_remote = false;
    walk_flags(
        args,
        |f| f == "--quiet" || f == "--allow-remote",
        |flag, v| {
            match flag {
                "--listen" => o.listen = v.to_owned(),
                "--delay-ms" => o.delay = Duration::from_millis(parse_usize(flag, v, 0)? as u64),
                "--quiet" => o.quiet = parse_bool(flag, v)?,
                "--allow-remote" => allow_remote = parse_bool(flag, v)?,
                _ => return Err(format!("unknown sink option {flag}")),
            }
            Ok(())
        },
    )?;
    let host = o
        .listen
        .rsplit_once(':')
        .map(|(h, _)| h)
        .ok_or_else(|| format!("--listen {:?}: expected HOST:PORT", o.listen))?;
    if !is_loopback_host(host) && !allow_remote {
        return Err(format!(
            "refusing to listen on non-loopback {host:?}; pass --allow-remote to do it anyway"
        ));
    }
    Ok(o)
}

// ---------------------------------------------------------------------------------------------
// Line generator
// ---------------------------------------------------------------------------------------------

/// Field sets pre-rendered per generator; a line picks one by its index.
const FIELD_VARIANTS: usize = 64;

/// Produces telegraf-like lines `m3,tag0=v17,tag1=v17 f0=12.34,f1=42i <ts>` with distinct
/// (series, timestamp) pairs (see the module doc).
#[derive(Debug)]
struct LineGen {
    /// `measurement,tags ` per series, series `s` = measurement `s % M`, tag set `s / M`.
    prefixes: Vec<Vec<u8>>,
    /// ` ` is not included: `f0=...,f1=... ` (with the trailing space before the timestamp).
    fields: Vec<Vec<u8>>,
    /// Timestamp of tick 0 for this worker, in the precision unit.
    base: i64,
    /// Timestamp step between two ticks of a series (the number of workers).
    stride: i64,
    /// Lines generated so far.
    line: u64,
}

impl LineGen {
    fn new(o: &WriteOpts, worker: usize, base: i64) -> LineGen {
        if o.telegraf {
            return LineGen::telegraf(o, worker, base);
        }
        let mut prefixes = Vec::with_capacity(o.measurements * o.tag_cardinality);
        let tag_sets = if o.tags == 0 { 1 } else { o.tag_cardinality };
        for set in 0..tag_sets {
            for m in 0..o.measurements {
                let mut p = format!("m{m}");
                for t in 0..o.tags {
                    // Every tag follows the tag set, so the series count is exactly
                    // measurements x tag-cardinality whatever the number of tags.
                    let _ = write!(p, ",tag{t}=v{set}");
                }
                p.push(' ');
                prefixes.push(p.into_bytes());
            }
        }
        let mut rng = fastrand::Rng::with_seed(0x5eed ^ worker as u64);
        let fields = (0..FIELD_VARIANTS)
            .map(|_| {
                let mut f = String::new();
                for i in 0..o.fields {
                    if i > 0 {
                        f.push(',');
                    }
                    if i % 2 == 0 {
                        let _ = write!(f, "f{i}={}.{:02}", rng.u32(0..1000), rng.u32(0..100));
                    } else {
                        let _ = write!(f, "f{i}={}i", rng.i64(-1000..100_000));
                    }
                }
                f.push(' ');
                f.into_bytes()
            })
            .collect();
        LineGen::from_parts(o, worker, base, prefixes, fields)
    }

    /// Telegraf-like lines: `cpu,dc=dc-2,host=host-0042,region=eu-west-1
    /// usage=37.18232044198895,count=118i <ns>`, tags in key order as Telegraf sends them.
    /// Series are spread over measurements first, so every body of 20 x 250 lines touches every
    /// series once and reaches every backend.
    fn telegraf(o: &WriteOpts, worker: usize, base: i64) -> LineGen {
        const REGIONS: [&str; 4] = ["us-east-1", "us-west-2", "eu-west-1", "ap-south-1"];
        let mut prefixes = Vec::with_capacity(o.measurements * o.tag_cardinality);
        for host in 0..o.tag_cardinality {
            for m in 0..o.measurements {
                let name = TELEGRAF_MEASUREMENTS[m % TELEGRAF_MEASUREMENTS.len()];
                let suffix = m / TELEGRAF_MEASUREMENTS.len();
                let mut p = name.to_owned();
                if suffix > 0 {
                    let _ = write!(p, "_{suffix}");
                }
                let _ = write!(
                    p,
                    ",dc=dc-{},host=host-{host:04},region={} ",
                    host % 8,
                    REGIONS[host % REGIONS.len()]
                );
                prefixes.push(p.into_bytes());
            }
        }
        let mut rng = fastrand::Rng::with_seed(0x7e1e ^ worker as u64);
        let fields = (0..FIELD_VARIANTS)
            .map(|_| {
                // Telegraf prints floats at full precision (Go's strconv 'f', -1).
                let usage = rng.f64() * 100.0;
                format!("usage={usage},count={}i ", rng.i64(0..100_000)).into_bytes()
            })
            .collect();
        LineGen::from_parts(o, worker, base, prefixes, fields)
    }

    /// A generator of `prefixes` (one per series) and `fields` variants: worker `worker`'s
    /// timestamps start at `base + worker` and step by the number of workers, so no two
    /// workers write the same point.
    fn from_parts(
        o: &WriteOpts,
        worker: usize,
        base: i64,
        prefixes: Vec<Vec<u8>>,
        fields: Vec<Vec<u8>>,
    ) -> LineGen {
        LineGen {
            prefixes,
            fields,
            base: base.saturating_add(worker as i64),
            stride: o.concurrency as i64,
            line: 0,
        }
    }

    /// Appends `n` lines to `out`.
    fn fill(&mut self, out: &mut Vec<u8>, n: usize) {
        let series = self.prefixes.len() as u64;
        for _ in 0..n {
            let s = (self.line % series) as usize;
            let tick = (self.line / series) as i64;
            out.extend_from_slice(&self.prefixes[s]);
            out.extend_from_slice(&self.fields[(self.line % FIELD_VARIANTS as u64) as usize]);
            push_i64(out, self.base + tick * self.stride);
            out.push(b'\n');
            self.line += 1;
        }
    }
}

/// One body of `lines` lines of `write --shape telegraf` (20 measurements x 250 hosts), with
/// timestamps from 2026-01-01: the fixed body of the suite's independent check (`wrk`).
pub(crate) fn telegraf_body(lines: usize) -> Vec<u8> {
    let o = WriteOpts {
        telegraf: true,
        measurements: 20,
        tag_cardinality: 250,
        concurrency: 1,
        ..WriteOpts::default()
    };
    let mut out = Vec::new();
    LineGen::new(&o, 0, 1_767_225_600_000_000_000).fill(&mut out, lines);
    out
}

/// Appends `n` in decimal.
fn push_i64(out: &mut Vec<u8>, n: i64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut rest = n.unsigned_abs();
    loop {
        at -= 1;
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    if n < 0 {
        out.push(b'-');
    }
    out.extend_from_slice(&digits[at..]);
}

// ---------------------------------------------------------------------------------------------
// write mode
// ---------------------------------------------------------------------------------------------

/// What one worker measured.
#[derive(Debug, Default)]
struct WorkerStats {
    /// Points acknowledged with 204.
    ok_points: u64,
    /// Requests answered 204.
    ok_requests: u64,
    /// Requests that got any response or failed on I/O.
    requests: u64,
    /// Body bytes sent (compressed when gzip).
    wire_bytes: u64,
    /// Uncompressed line-protocol bytes sent.
    raw_bytes: u64,
    /// Latency of every request that got a response, in nanoseconds.
    latencies_ns: Vec<u64>,
    /// Failed requests by HTTP status, or `io` / `connect`.
    errors: BTreeMap<String, u64>,
    /// The first error message per kind, for the summary.
    first_error: BTreeMap<String, String>,
}

impl WorkerStats {
    fn error(&mut self, kind: String, message: impl FnOnce() -> String) {
        *self.errors.entry(kind.clone()).or_default() += 1;
        self.first_error.entry(kind).or_insert_with(message);
    }

    fn merge(&mut self, other: WorkerStats) {
        self.ok_points += other.ok_points;
        self.ok_requests += other.ok_requests;
        self.requests += other.requests;
        self.wire_bytes += other.wire_bytes;
        self.raw_bytes += other.raw_bytes;
        self.latencies_ns.extend(other.latencies_ns);
        for (k, v) in other.errors {
            *self.errors.entry(k).or_default() += v;
        }
        for (k, v) in other.first_error {
            self.first_error.entry(k).or_insert(v);
        }
    }
}

/// Nearest-rank percentile of ascending `sorted`; 0 when empty.
fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The request line and headers of a POST.
fn post_head(o: &WriteOpts, path_and_query: &str, body_len: usize, gzip: bool) -> Vec<u8> {
    let mut h = String::with_capacity(256);
    let _ = write!(
        h,
        "POST {}{} HTTP/1.1\r\nHost: {}\r\nUser-Agent: influx-proxy-bench\r\n\
         Content-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n",
        o.url.base_path,
        path_and_query,
        o.url.host_header(),
        body_len
    );
    if gzip {
        h.push_str("Content-Encoding: gzip\r\n");
    }
    h.push_str("\r\n");
    h.into_bytes()
}

fn enc(s: &str) -> String {
    utf8_percent_encode(s, NON_ALPHANUMERIC).to_string()
}

fn write_path(o: &WriteOpts) -> String {
    let mut p = format!("/write?db={}&precision={}", enc(&o.db), enc(&o.precision));
    if let Some(rp) = &o.rp {
        let _ = write!(p, "&rp={}", enc(rp));
    }
    p
}

/// `CREATE DATABASE` via `POST /query`; returns a description of the outcome.
fn create_db(o: &WriteOpts, addr: &SocketAddr) -> String {
    let q = format!(
        "CREATE DATABASE {}",
        influx_wire::influxql::quote_ident(&o.db)
    );
    let path = format!("/query?q={}", enc(&q));
    let head = post_head(o, &path, 0, false);
    let mut line = String::new();
    match Conn::open(addr, o.timeout).and_then(|mut c| c.round_trip(&head, &[], &mut line)) {
        Ok(r) => format!("CREATE DATABASE {}: HTTP {}", o.db, r.status),
        Err(e) => format!("CREATE DATABASE {}: {e} (ignored)", o.db),
    }
}

/// Shared by all workers.
struct RunCtx {
    opts: WriteOpts,
    addr: Option<SocketAddr>,
    /// Workers wait here after pre-generating their pool; the run starts when all did.
    ready: Barrier,
    /// Timestamp base in the precision unit.
    base: i64,
    path: String,
}

/// Request bodies of one worker: from the pre-generated pool first, then made on the fly.
struct Bodies {
    gen: LineGen,
    batch: usize,
    gzip: bool,
    raw: Vec<u8>,
    gz: Vec<u8>,
    /// Pre-generated (wire body, line-protocol length), in generation order.
    pool: VecDeque<(Vec<u8>, usize)>,
    /// The pooled body being sent.
    current: (Vec<u8>, usize),
}

impl Bodies {
    fn new(o: &WriteOpts, worker: usize, base: i64) -> Bodies {
        Bodies {
            gen: LineGen::new(o, worker, base),
            batch: o.batch,
            gzip: o.gzip,
            raw: Vec::with_capacity(o.batch * 128),
            gz: Vec::with_capacity(o.batch * 32),
            pool: VecDeque::new(),
            current: (Vec::new(), 0),
        }
    }

    /// Generates the next batch into `raw`, and compresses it into `gz` with `--gzip`.
    fn make(&mut self) {
        self.raw.clear();
        self.gen.fill(&mut self.raw, self.batch);
        if self.gzip {
            self.gz.clear();
            let mut e = GzEncoder::new(std::mem::take(&mut self.gz), Compression::fast());
            // Writing into a Vec cannot fail.
            let _ = e.write_all(&self.raw);
            self.gz = e.finish().unwrap_or_default();
        }
    }

    /// Fills the pool with about `budget` bytes of wire bodies.
    fn pregenerate(&mut self, budget: usize) {
        let mut pooled = 0;
        while pooled < budget {
            self.make();
            let wire = if self.gzip { &self.gz } else { &self.raw };
            pooled += wire.len();
            self.pool.push_back((wire.clone(), self.raw.len()));
        }
    }

    /// The next body to send and its line-protocol length. Bodies follow the generator's order
    /// whether pooled or not, so every point stays distinct.
    fn next(&mut self) -> (&[u8], usize) {
        if let Some(pooled) = self.pool.pop_front() {
            self.current = pooled;
            return (&self.current.0, self.current.1);
        }
        self.make();
        let wire = if self.gzip { &self.gz } else { &self.raw };
        (wire, self.raw.len())
    }
}

/// Batches worker `id` may send under `--points` (`None`: no limit): the whole
/// batches covering the points, spread over the workers.
fn batch_budget(o: &WriteOpts, id: usize) -> Option<u64> {
    if o.points == 0 {
        return None;
    }
    let batches = o.points.div_ceil(o.batch.max(1) as u64);
    let workers = o.concurrency.max(1) as u64;
    Some(batches / workers + u64::from((id as u64) < batches % workers))
}

fn worker(ctx: &RunCtx, id: usize) -> WorkerStats {
    let o = &ctx.opts;
    let mut stats = WorkerStats {
        latencies_ns: Vec::with_capacity(4096),
        ..WorkerStats::default()
    };
    let mut bodies = Bodies::new(o, id, ctx.base);
    bodies.pregenerate(o.pool_mb.saturating_mul(1_000_000) / o.concurrency);
    let mut line = String::new();
    let mut conn: Option<Conn> = None;
    let mut backoff = Duration::from_millis(10);
    // Seconds between two batches of this worker when rate limited.
    let interval = (o.rate > 0)
        .then(|| Duration::from_secs_f64(o.batch as f64 * o.concurrency as f64 / o.rate as f64));
    let mut sent_batches: u32 = 0;
    let budget = batch_budget(o, id);
    ctx.ready.wait();
    let start = Instant::now();
    let deadline = start + o.duration;
    loop {
        if let Some(interval) = interval {
            // Spread the workers over one interval so their requests do not bunch up.
            let offset = interval.mul_f64(id as f64 / o.concurrency as f64);
            let due = start + offset + interval * sent_batches;
            let now = Instant::now();
            if due >= deadline {
                break;
            }
            if due > now {
                thread::sleep(due - now);
            }
        }
        if Instant::now() >= deadline || budget.is_some_and(|b| u64::from(sent_batches) >= b) {
            break;
        }
        let (body, raw_len) = bodies.next();
        sent_batches = sent_batches.saturating_add(1);
        let Some(addr) = ctx.addr else {
            // Dry run: count what was generated.
            stats.requests += 1;
            stats.ok_requests += 1;
            stats.ok_points += o.batch as u64;
            stats.wire_bytes += body.len() as u64;
            stats.raw_bytes += raw_len as u64;
            continue;
        };
        let head = post_head(o, &ctx.path, body.len(), o.gzip);
        if conn.is_none() {
            match Conn::open(&addr, o.timeout) {
                Ok(c) => conn = Some(c),
                Err(e) => {
                    stats.requests += 1;
                    stats.error("connect".to_owned(), || e.to_string());
                    thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_millis(500));
                    continue;
                }
            }
        }
        let Some(c) = conn.as_mut() else {
            continue;
        };
        let t0 = Instant::now();
        let result = c.round_trip(&head, body, &mut line);
        let elapsed = t0.elapsed();
        stats.requests += 1;
        match result {
            Ok(resp) => {
                backoff = Duration::from_millis(10);
                stats.latencies_ns.push(elapsed.as_nanos() as u64);
                stats.wire_bytes += body.len() as u64;
                stats.raw_bytes += raw_len as u64;
                if resp.status == 204 {
                    stats.ok_requests += 1;
                    stats.ok_points += o.batch as u64;
                } else {
                    stats.error(resp.status.to_string(), || {
                        String::from_utf8_lossy(&resp.body[..resp.body.len().min(300)]).into_owned()
                    });
                    if resp.status == 503 {
                        // The proxy's queue is full: do not spin on it.
                        thread::sleep(Duration::from_millis(20));
                    }
                }
                if resp.close {
                    conn = None;
                }
            }
            Err(e) => {
                stats.error("io".to_owned(), || e.to_string());
                conn = None;
                thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_millis(500));
            }
        }
    }
    stats
}

/// The summary figures of a run.
#[derive(Debug)]
struct LoadSummary {
    elapsed: Duration,
    stats: WorkerStats,
    sorted_latencies: Vec<u64>,
    /// CPU the load tool itself used during the timed run (pre-generation excluded), in cores.
    cpu_cores: Option<f64>,
}

impl LoadSummary {
    fn per_sec(&self, n: u64) -> f64 {
        n as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    fn latency_ms(&self, p: f64) -> f64 {
        percentile(&self.sorted_latencies, p) as f64 / 1e6
    }

    fn max_ms(&self) -> f64 {
        self.sorted_latencies.last().copied().unwrap_or(0) as f64 / 1e6
    }

    fn error_total(&self) -> u64 {
        self.stats.errors.values().sum()
    }

    fn json(&self, o: &WriteOpts) -> serde_json::Value {
        let s = &self.stats;
        serde_json::json!({
            "mode": if o.dry_run { "dry-run" } else { "write" },
            "url": format!("http://{}{}", o.url.host_header(), o.url.base_path),
            "db": o.db,
            "concurrency": o.concurrency,
            "batch": o.batch,
            "series": o.measurements * if o.tags == 0 { 1 } else { o.tag_cardinality },
            "fields": o.fields,
            "gzip": o.gzip,
            "rate": o.rate,
            "precision": o.precision,
            "elapsed_s": round3(self.elapsed.as_secs_f64()),
            "points": s.ok_points,
            "points_per_sec": round3(self.per_sec(s.ok_points)),
            "requests": s.requests,
            "ok_requests": s.ok_requests,
            "requests_per_sec": round3(self.per_sec(s.requests)),
            "mb_per_sec": round3(self.per_sec(s.wire_bytes) / 1e6),
            "raw_mb_per_sec": round3(self.per_sec(s.raw_bytes) / 1e6),
            "latency_ms": {
                "p50": round3(self.latency_ms(50.0)),
                "p90": round3(self.latency_ms(90.0)),
                "p99": round3(self.latency_ms(99.0)),
                "max": round3(self.max_ms()),
            },
            "errors": s.errors,
            "error_total": self.error_total(),
            "cpu_cores": self.cpu_cores.map(round3),
        })
    }

    fn text(&self, o: &WriteOpts) -> String {
        let s = &self.stats;
        let mut t = String::new();
        let _ = writeln!(
            t,
            "{} {} db={} concurrency={} batch={} series={} gzip={} rate={} in {:.2}s",
            if o.dry_run { "dry-run" } else { "write" },
            format_args!("http://{}{}", o.url.host_header(), o.url.base_path),
            o.db,
            o.concurrency,
            o.batch,
            o.measurements * if o.tags == 0 { 1 } else { o.tag_cardinality },
            o.gzip,
            o.rate,
            self.elapsed.as_secs_f64()
        );
        let _ = writeln!(
            t,
            "  points:    {} ok, {:.0} points/s",
            s.ok_points,
            self.per_sec(s.ok_points)
        );
        let _ = writeln!(
            t,
            "  requests:  {} ({} ok), {:.1} requests/s",
            s.requests,
            s.ok_requests,
            self.per_sec(s.requests)
        );
        let _ = writeln!(
            t,
            "  sent:      {:.2} MB/s on the wire, {:.2} MB/s of line protocol",
            self.per_sec(s.wire_bytes) / 1e6,
            self.per_sec(s.raw_bytes) / 1e6
        );
        let _ = writeln!(
            t,
            "  latency:   p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            self.latency_ms(50.0),
            self.latency_ms(90.0),
            self.latency_ms(99.0),
            self.max_ms()
        );
        if let Some(cores) = self.cpu_cores {
            let _ = writeln!(t, "  CPU:       {cores:.2} cores used by this load tool");
        }
        if s.errors.is_empty() {
            let _ = writeln!(t, "  errors:    none");
        } else {
            for (kind, n) in &s.errors {
                let first = s.first_error.get(kind).map(String::as_str).unwrap_or("");
                let _ = writeln!(t, "  errors:    {kind}: {n} (first: {})", first.trim());
            }
        }
        t
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn run_write(o: WriteOpts) -> Result<ExitCode, String> {
    let addr = if o.dry_run {
        None
    } else {
        Some(
            o.url
                .resolve()
                .map_err(|e| format!("cannot resolve {}: {e}", o.url.host))?,
        )
    };
    if let (true, Some(addr)) = (o.create_db, addr) {
        eprintln!("{}", create_db(&o, &addr));
    }
    let unit = precision_nanos(&o.precision)?;
    let now_ns = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| format!("clock before 1970: {e}"))?
        .as_nanos() as i64;
    if o.pool_mb > 0 {
        eprintln!("pre-generating {} MB of request bodies", o.pool_mb);
    }
    let ctx = Arc::new(RunCtx {
        path: write_path(&o),
        ready: Barrier::new(o.concurrency + 1),
        addr,
        base: now_ns / unit,
        opts: o.clone(),
    });
    let handles: Vec<_> = (0..o.concurrency)
        .map(|id| {
            let ctx = Arc::clone(&ctx);
            thread::Builder::new()
                .name(format!("bench-worker-{id}"))
                .spawn(move || worker(&ctx, id))
                .map_err(|e| format!("cannot start worker thread: {e}"))
        })
        .collect::<Result<_, _>>()?;
    ctx.ready.wait();
    let start = Instant::now();
    let cpu_start = harness::procfs::cpu_seconds(None);
    let mut stats = WorkerStats::default();
    for h in handles {
        let s = h
            .join()
            .map_err(|_| "a worker thread panicked".to_owned())?;
        stats.merge(s);
    }
    let elapsed = start.elapsed();
    let cpu_cores = match (cpu_start, harness::procfs::cpu_seconds(None)) {
        (Some(a), Some(b)) => Some((b - a) / elapsed.as_secs_f64().max(1e-9)),
        _ => None,
    };
    let mut sorted_latencies = std::mem::take(&mut stats.latencies_ns);
    sorted_latencies.sort_unstable();
    let summary = LoadSummary {
        elapsed,
        stats,
        sorted_latencies,
        cpu_cores,
    };
    if o.json {
        eprint!("{}", summary.text(&o));
        println!("{}", summary.json(&o));
    } else {
        print!("{}", summary.text(&o));
    }
    Ok(if summary.stats.ok_points == 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

// ---------------------------------------------------------------------------------------------
// sink mode
// ---------------------------------------------------------------------------------------------

/// Counters of the sink.
#[derive(Debug, Default)]
struct SinkStats {
    points: AtomicU64,
    writes: AtomicU64,
    bytes: AtomicU64,
    bad_requests: AtomicU64,
}

/// Lines in a line-protocol body: newlines, plus one for a last line without a newline.
fn count_lines(body: &[u8]) -> u64 {
    let newlines = memchr::memchr_iter(b'\n', body).count() as u64;
    newlines + u64::from(body.last().is_some_and(|&b| b != b'\n'))
}

/// Lines in a gzip body, decompressed in streaming fashion.
fn count_gzip_lines(body: &[u8], buf: &mut [u8]) -> io::Result<u64> {
    let mut d = flate2::read::MultiGzDecoder::new(body);
    let mut lines = 0u64;
    let mut last = b'\n';
    loop {
        let n = d.read(buf)?;
        if n == 0 {
            break;
        }
        lines += memchr::memchr_iter(b'\n', &buf[..n]).count() as u64;
        last = buf[n - 1];
    }
    Ok(lines + u64::from(last != b'\n'))
}

const SINK_VERSION: &str = "1.8.10-sink";

fn respond(
    w: &mut impl Write,
    status: &str,
    content_type: Option<&str>,
    body: &[u8],
    close: bool,
) -> io::Result<()> {
    let mut h = String::with_capacity(160);
    let _ = write!(
        h,
        "HTTP/1.1 {status}\r\nX-Influxdb-Version: {SINK_VERSION}\r\nX-Influxdb-Build: OSS\r\n"
    );
    if let Some(ct) = content_type {
        let _ = write!(h, "Content-Type: {ct}\r\n");
    }
    if !status.starts_with("204") {
        let _ = write!(h, "Content-Length: {}\r\n", body.len());
    }
    if close {
        h.push_str("Connection: close\r\n");
    }
    h.push_str("\r\n");
    w.write_all(h.as_bytes())?;
    w.write_all(body)?;
    w.flush()
}

fn serve_conn(stream: TcpStream, stats: &SinkStats, delay: Duration) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let mut reader = BufReader::with_capacity(64 << 10, stream.try_clone()?);
    let mut writer = BufWriter::new(stream);
    let mut line = String::new();
    let mut body = Vec::new();
    let mut inflate_buf = vec![0u8; 64 << 10];
    loop {
        let mut budget = MAX_HEAD;
        if !read_line(&mut reader, &mut line, &mut budget)? {
            return Ok(());
        }
        if line.is_empty() {
            continue;
        }
        let mut parts = line.split(' ');
        let method = parts.next().unwrap_or("").to_owned();
        let target = parts.next().unwrap_or("").to_owned();
        let http10 = parts.next() == Some("HTTP/1.0");
        let framing = read_headers(&mut reader, &mut line, &mut budget)?;
        if framing.expect_continue {
            writer.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
            writer.flush()?;
        }
        read_body(&mut reader, &framing, &mut line, &mut body, false)?;
        let close = framing.close || (http10 && !framing.keep_alive);
        let path = target.split('?').next().unwrap_or("");
        match path {
            "/ping" => respond(&mut writer, "204 No Content", None, b"", close)?,
            "/write" if method == "POST" => {
                let lines = if framing.gzip {
                    count_gzip_lines(&body, &mut inflate_buf)
                } else {
                    Ok(count_lines(&body))
                };
                match lines {
                    Ok(n) => {
                        if !delay.is_zero() {
                            thread::sleep(delay);
                        }
                        stats.points.fetch_add(n, Ordering::Relaxed);
                        stats.writes.fetch_add(1, Ordering::Relaxed);
                        stats.bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
                        respond(&mut writer, "204 No Content", None, b"", close)?;
                    }
                    Err(e) => {
                        stats.bad_requests.fetch_add(1, Ordering::Relaxed);
                        let msg = serde_json::json!({ "error": format!("bad gzip body: {e}") });
                        respond(
                            &mut writer,
                            "400 Bad Request",
                            Some("application/json"),
                            msg.to_string().as_bytes(),
                            close,
                        )?;
                    }
                }
            }
            "/query" => respond(
                &mut writer,
                "200 OK",
                Some("application/json"),
                br#"{"results":[{"statement_id":0}]}"#,
                close,
            )?,
            "/debug/sink" => {
                let body = serde_json::json!({
                    "points": stats.points.load(Ordering::Relaxed),
                    "writes": stats.writes.load(Ordering::Relaxed),
                    "bytes": stats.bytes.load(Ordering::Relaxed),
                    "bad_requests": stats.bad_requests.load(Ordering::Relaxed),
                })
                .to_string();
                respond(
                    &mut writer,
                    "200 OK",
                    Some("application/json"),
                    body.as_bytes(),
                    close,
                )?
            }
            _ => respond(
                &mut writer,
                "404 Not Found",
                Some("application/json"),
                br#"{"error":"not found"}"#,
                close,
            )?,
        }
        if close {
            return Ok(());
        }
    }
}

fn run_sink(o: SinkOpts) -> Result<ExitCode, String> {
    let listener =
        TcpListener::bind(&o.listen).map_err(|e| format!("cannot listen on {}: {e}", o.listen))?;
    let local = listener
        .local_addr()
        .map_err(|e| format!("listener address: {e}"))?;
    eprintln!("sink: listening on {local}");
    let stats = Arc::new(SinkStats::default());
    if !o.quiet {
        let stats = Arc::clone(&stats);
        thread::Builder::new()
            .name("sink-report".to_owned())
            .spawn(move || {
                let mut last = 0u64;
                let mut next = Instant::now() + Duration::from_secs(1);
                loop {
                    thread::sleep(next.saturating_duration_since(Instant::now()));
                    next += Duration::from_secs(1);
                    let total = stats.points.load(Ordering::Relaxed);
                    eprintln!(
                        "sink {local}: {} points/s (total {total} points, {} writes)",
                        total - last,
                        stats.writes.load(Ordering::Relaxed)
                    );
                    last = total;
                }
            })
            .map_err(|e| format!("cannot start reporter thread: {e}"))?;
    }
    for stream in listener.incoming() {
        let stream = match stream {
            Ok(s) => s,
            Err(e) => {
                eprintln!("sink: accept: {e}");
                thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        let stats = Arc::clone(&stats);
        let delay = o.delay;
        let spawned = thread::Builder::new()
            .name("sink-conn".to_owned())
            .spawn(move || {
                // Connection errors (resets, garbage) only end that connection.
                let _ = serve_conn(stream, &stats, delay);
            });
        if let Err(e) = spawned {
            eprintln!("sink: cannot start a connection thread: {e}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match parse_args(&args) {
        Ok(Command::Help) => {
            print!("{HELP}");
            Ok(ExitCode::SUCCESS)
        }
        Ok(Command::Write(o)) => run_write(o),
        Ok(Command::Sink(o)) => run_sink(o),
        Ok(Command::Udp(o)) => udp_send::run(o),
        Ok(Command::Suite(o)) => suite::run(o)
            .map(|()| ExitCode::SUCCESS)
            .map_err(|e| e.to_string()),
        Err(e) => {
            eprintln!("influx-proxy-bench: {e}\nrun `influx-proxy-bench --help` for usage");
            return ExitCode::from(2);
        }
    };
    result.unwrap_or_else(|e| {
        eprintln!("influx-proxy-bench: {e}");
        ExitCode::FAILURE
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    fn write_opts(s: &str) -> WriteOpts {
        match parse_args(&args(s)).unwrap() {
            Command::Write(o) => o,
            other => panic!("not a write command: {other:?}"),
        }
    }

    #[test]
    fn parses_write_options() {
        let o = write_opts(
            "write --url http://localhost:8086 --db d1 --rp r1 --concurrency 8 --batch 100 \
             --measurements 3 --tags 4 --tag-cardinality 7 --fields 2 --gzip --rate 1000 \
             --duration 1500ms --precision s --create-db --json",
        );
        assert_eq!(o.url.host, "localhost");
        assert_eq!(o.url.port, 8086);
        assert_eq!(o.db, "d1");
        assert_eq!(o.rp.as_deref(), Some("r1"));
        assert_eq!(o.concurrency, 8);
        assert_eq!(o.batch, 100);
        assert_eq!(o.measurements, 3);
        assert_eq!(o.tags, 4);
        assert_eq!(o.tag_cardinality, 7);
        assert_eq!(o.fields, 2);
        assert!(o.gzip && o.create_db && o.json && !o.dry_run);
        assert_eq!(o.rate, 1000);
        assert_eq!(o.duration, Duration::from_millis(1500));
        assert_eq!(o.precision, "s");
    }

    #[test]
    fn defaults_and_equals_syntax() {
        let o = write_opts("write");
        assert_eq!(o, WriteOpts::default());
        let o = write_opts("write --batch=10 --gzip=false --url=http://[::1]:9/x/");
        assert_eq!(o.batch, 10);
        assert!(!o.gzip);
        assert_eq!(o.url.host, "::1");
        assert_eq!(o.url.port, 9);
        assert_eq!(o.url.base_path, "/x");
        assert_eq!(o.url.host_header(), "[::1]:9");
    }

    #[test]
    fn refuses_bad_arguments() {
        for bad in [
            "write --batch 0",
            "write --batch x",
            "write --concurrency",
            "write --nope 1",
            "write --precision q",
            "write --duration 10parsecs",
            "write --url https://127.0.0.1:1",
            "write --url http://127.0.0.1:99999",
            "write stray",
            "sink --delay-ms -1",
            "frobnicate",
        ] {
            assert!(parse_args(&args(bad)).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn refuses_remote_targets_unless_allowed() {
        assert!(parse_args(&args("write --url http://10.0.0.1:8086")).is_err());
        assert!(parse_args(&args("write --url http://example.com")).is_err());
        let o = write_opts("write --url http://10.0.0.1:8086 --allow-remote");
        assert_eq!(o.url.host, "10.0.0.1");
        assert!(parse_args(&args("sink --listen 0.0.0.0:8086")).is_err());
        assert!(parse_args(&args("sink --listen 0.0.0.0:8086 --allow-remote")).is_ok());
    }

    #[test]
    fn parses_sink_and_help() {
        assert_eq!(
            parse_args(&args("sink --listen 127.0.0.1:9 --delay-ms 5 --quiet")).unwrap(),
            Command::Sink(SinkOpts {
                listen: "127.0.0.1:9".to_owned(),
                delay: Duration::from_millis(5),
                quiet: true,
            })
        );
        for help in [
            "",
            "--help",
            "-h",
            "write --help",
            "sink -h",
            "suite --help",
        ] {
            assert_eq!(parse_args(&args(help)).unwrap(), Command::Help, "{help:?}");
        }
    }

    #[test]
    fn points_are_spread_over_the_workers_in_whole_batches() {
        let o = write_opts("write --points 23000 --batch 5000 --concurrency 4");
        let budgets: Vec<u64> = (0..4).map(|id| batch_budget(&o, id).unwrap()).collect();
        assert_eq!(budgets, vec![2, 1, 1, 1]);
        assert_eq!(batch_budget(&write_opts("write"), 0), None);
    }

    #[test]
    fn parses_durations() {
        assert_eq!(parse_duration("10").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("0.5s").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("250us").unwrap(), Duration::from_micros(250));
        assert!(parse_duration("s").is_err());
    }

    #[test]
    fn percentiles_use_nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), 50);
        assert_eq!(percentile(&v, 90.0), 90);
        assert_eq!(percentile(&v, 99.0), 99);
        assert_eq!(percentile(&v, 100.0), 100);
        assert_eq!(percentile(&v, 0.0), 1);
        assert_eq!(percentile(&[7], 99.0), 7);
        assert_eq!(percentile(&[], 50.0), 0);
        assert_eq!(percentile(&[1, 2, 3, 4], 50.0), 2);
        assert_eq!(percentile(&[1, 2, 3, 4], 51.0), 3);
    }

    #[test]
    fn generated_lines_are_valid_and_points_are_distinct() {
        use influx_wire::line_protocol::{lines, parse};
        let o = write_opts("write --measurements 3 --tags 2 --tag-cardinality 5 --fields 5");
        let mut seen = HashSet::new();
        for worker in 0..2 {
            let mut gen = LineGen::new(&o, worker, 1_700_000_000_000_000_000);
            for _ in 0..4 {
                let mut body = Vec::new();
                gen.fill(&mut body, 37);
                let mut n = 0;
                for raw in lines(&body) {
                    let line = parse(raw).unwrap_or_else(|e| panic!("{e:?}"));
                    let ts = line.timestamp.expect("every line has a timestamp");
                    let text = std::str::from_utf8(raw).unwrap();
                    let series = text.split(' ').next().unwrap().to_owned();
                    assert!(line.measurement.starts_with('m'), "{text}");
                    assert_eq!(text.matches(",tag").count(), 2, "{text}");
                    assert_eq!(text.split(' ').nth(1).unwrap().split(',').count(), 5);
                    assert!(seen.insert((series, ts)), "repeated point {text}");
                    n += 1;
                }
                assert_eq!(n, 37);
            }
        }
        let series: HashSet<_> = seen.iter().map(|(s, _)| s.clone()).collect();
        assert_eq!(series.len(), 3 * 5);
    }

    #[test]
    fn the_telegraf_shape_is_20_measurements_by_250_hosts_with_full_precision_floats() {
        use influx_wire::line_protocol::{lines, parse};
        let o = write_opts("write --shape telegraf");
        assert_eq!((o.measurements, o.tag_cardinality, o.fields), (20, 250, 2));
        let mut gen = LineGen::new(&o, 0, 1_700_000_000_000_000_000);
        let mut body = Vec::new();
        gen.fill(&mut body, 5000);
        let mut series = HashSet::new();
        let mut measurements = HashSet::new();
        for raw in lines(&body) {
            let line = parse(raw).unwrap_or_else(|e| panic!("{e:?}"));
            measurements.insert(line.measurement.to_string());
            let text = std::str::from_utf8(raw).unwrap();
            let (key, rest) = text.split_once(' ').unwrap();
            assert_eq!(key.matches(',').count(), 3, "{text}");
            assert!(
                rest.starts_with("usage=") && rest.contains(",count="),
                "{text}"
            );
            series.insert(key.to_owned());
        }
        // One body of 5,000 lines holds each series once.
        assert_eq!((series.len(), measurements.len()), (5000, 20));
        let usage = std::str::from_utf8(&body)
            .unwrap()
            .split("usage=")
            .nth(1)
            .unwrap();
        assert!(usage.split(',').next().unwrap().len() > 10, "{usage}");
        assert!(parse_args(&args("write --shape csv")).is_err());
    }

    #[test]
    fn generator_without_tags_has_one_series_per_measurement() {
        let o = write_opts("write --measurements 2 --tags 0 --fields 1");
        let mut gen = LineGen::new(&o, 0, 10);
        let mut body = Vec::new();
        gen.fill(&mut body, 4);
        let text = String::from_utf8(body).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4);
        assert!(lines[0].starts_with("m0 f0="), "{}", lines[0]);
        assert!(lines[1].starts_with("m1 f0="), "{}", lines[1]);
        // Second tick of each series: base + stride (4 workers by default).
        assert!(lines[2].ends_with(" 14"), "{}", lines[2]);
        for l in lines {
            influx_wire::line_protocol::parse(l.as_bytes()).unwrap();
        }
    }

    #[test]
    fn pooled_bodies_continue_the_generated_sequence() {
        for flags in ["", " --gzip"] {
            let o = write_opts(&format!("write --batch 10 --concurrency 1{flags}"));
            let mut fresh = Bodies::new(&o, 0, 100);
            let mut pooled = Bodies::new(&o, 0, 100);
            pooled.pregenerate(1500);
            let n = pooled.pool.len();
            assert!(n >= 2, "{n} bodies pooled");
            for _ in 0..n + 3 {
                let (a, a_len) = fresh.next();
                let a = a.to_vec();
                let (b, b_len) = pooled.next();
                assert_eq!((a, a_len), (b.to_vec(), b_len));
            }
        }
    }

    #[test]
    fn counts_lines_plain_and_gzip() {
        assert_eq!(count_lines(b""), 0);
        assert_eq!(count_lines(b"a f=1\nb f=2\n"), 2);
        assert_eq!(count_lines(b"a f=1\nb f=2"), 2);
        let mut e = GzEncoder::new(Vec::new(), Compression::fast());
        e.write_all(b"a f=1\nb f=2\nc f=3").unwrap();
        let mut z = e.finish().unwrap();
        let mut buf = vec![0u8; 4];
        assert_eq!(count_gzip_lines(&z, &mut buf).unwrap(), 3);
        // Two concatenated gzip members, as MultiGzDecoder readers accept.
        let mut e = GzEncoder::new(Vec::new(), Compression::fast());
        e.write_all(b"\nd f=4\n").unwrap();
        z.extend(e.finish().unwrap());
        assert_eq!(count_gzip_lines(&z, &mut buf).unwrap(), 4);
        assert!(count_gzip_lines(b"not gzip", &mut buf).is_err());
    }

    #[test]
    fn sink_and_writer_talk_end_to_end() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stats = Arc::new(SinkStats::default());
        let server_stats = Arc::clone(&stats);
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let stats = Arc::clone(&server_stats);
                thread::spawn(move || serve_conn(stream, &stats, Duration::ZERO));
            }
        });
        let o = write_opts(&format!(
            "write --url http://127.0.0.1:{} --concurrency 2 --batch 50 --duration 300ms --gzip \
             --pool-mb 1",
            addr.port()
        ));
        let ctx = RunCtx {
            path: write_path(&o),
            ready: Barrier::new(1),
            addr: Some(addr),
            base: 1,
            opts: o.clone(),
        };
        let s = worker(&ctx, 0);
        assert!(s.errors.is_empty(), "{:?}", s.first_error);
        assert!(s.ok_points >= 50);
        assert_eq!(s.ok_points, stats.points.load(Ordering::Relaxed));

        // `--points` stops worker 0 of 2 after its share: 3 batches of 50 in
        // all, 2 of them its own, long before the duration ends.
        let limited = RunCtx {
            opts: write_opts(&format!(
                "write --url http://127.0.0.1:{} --concurrency 2 --batch 50 --duration 60s \
                 --points 120",
                addr.port()
            )),
            ready: Barrier::new(1),
            ..ctx
        };
        let before = stats.points.load(Ordering::Relaxed);
        let l = worker(&limited, 0);
        assert!(l.errors.is_empty(), "{:?}", l.first_error);
        assert_eq!(l.ok_points, 100);
        assert_eq!(stats.points.load(Ordering::Relaxed) - before, 100);

        // Chunked upload, ping and query by hand on one keep-alive connection.
        let mut c = Conn::open(&addr, Duration::from_secs(5)).unwrap();
        let mut line = String::new();
        let head = b"POST /write?db=x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n";
        let r = c
            .round_trip(head, b"6\r\na f=1\n\r\n5\r\nb f=2\r\n0\r\n\r\n", &mut line)
            .unwrap();
        assert_eq!(r.status, 204);
        let r = c
            .round_trip(b"GET /ping HTTP/1.1\r\nHost: h\r\n\r\n", b"", &mut line)
            .unwrap();
        assert_eq!(r.status, 204);
        let r = c
            .round_trip(
                b"POST /query?q=x HTTP/1.1\r\nHost: h\r\n\r\n",
                b"",
                &mut line,
            )
            .unwrap();
        assert_eq!(r.body, br#"{"results":[{"statement_id":0}]}"#);
        assert_eq!(stats.points.load(Ordering::Relaxed), s.ok_points + 100 + 2);
    }
}
