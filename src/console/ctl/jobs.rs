//! The operations that run in the proxy's background (`rebalance`, `recovery`, `resync`,
//! `clear`, the anti-entropy `repair`), the anti-entropy `compare`, and `watch`.
//!
//! A command starts its job, learns its id from the answer (`X-Influx-Proxy-Job`), then
//! follows it through `/migrate/jobs` until it ends ([`follow`]). Ctrl-C detaches: the job
//! keeps running in the proxy, and `ctl watch` re-attaches to whatever runs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::table::{count, utc, Table};
use super::{circle_id, CtlError, Ctx, Exit, Outcome};
use crate::config::Config;
use crate::console::client::with_query;
use crate::console::progress::{Display, JobView, Mode};

/// How long a comparison may take to answer: it reads counts of every bucket of every
/// measurement compared, minutes on a large database.
const COMPARE_TIMEOUT: Duration = Duration::from_secs(3600);

/// Options of every operation that runs in the background.
#[derive(Debug, clap::Args)]
pub(crate) struct FollowOptions {
    /// Start the operation and return at once (follow it later with `ctl watch`)
    #[arg(long)]
    detach: bool,
}

/// Options of the copying operations.
#[derive(Debug, clap::Args)]
pub(crate) struct CopyOptions {
    /// Only these databases (comma-separated) [default: all but _internal]
    #[arg(long = "db", value_name = "DB", value_delimiter = ',')]
    dbs: Vec<String>,
    /// Measurements copied at once [default: the config's migrate_cpus]
    #[arg(long, value_name = "N")]
    workers: Option<usize>,
    /// Rows per chunk read from a source [default: the config's migrate_batch]
    #[arg(long, value_name = "ROWS")]
    batch: Option<usize>,
    /// Other proxies to tell that a circle is migrating (host:port, comma-separated)
    /// [default: the config's ha_addrs]
    #[arg(long, value_name = "HOST:PORT", value_delimiter = ',')]
    ha_addrs: Vec<String>,
    #[command(flatten)]
    follow: FollowOptions,
}

impl CopyOptions {
    fn query(&self) -> Vec<(&'static str, String)> {
        let mut q = Vec::new();
        if !self.dbs.is_empty() {
            q.push(("dbs", self.dbs.join(",")));
        }
        if let Some(n) = self.workers {
            q.push(("worker", n.to_string()));
        }
        if let Some(n) = self.batch {
            q.push(("batch", n.to_string()));
        }
        if !self.ha_addrs.is_empty() {
            q.push(("ha_addrs", self.ha_addrs.join(",")));
        }
        q
    }
}

/// `ctl rebalance` arguments.
#[derive(Debug, clap::Args)]
pub(crate) struct RebalanceArgs {
    /// The circle (its id or name)
    #[arg(long)]
    circle: String,
    /// The config before backends were removed from the circle: they are read too
    /// (operation=rm), with the credentials it gives them
    #[arg(long, value_name = "OLD_CONFIG")]
    removed_from: Option<PathBuf>,
    #[command(flatten)]
    copy: CopyOptions,
}

/// `ctl recovery` arguments.
#[derive(Debug, clap::Args)]
pub(crate) struct RecoveryArgs {
    /// The circle to copy from (id or name)
    #[arg(long)]
    from: String,
    /// The circle to rebuild (id or name)
    #[arg(long)]
    to: String,
    /// Only rebuild these backends of the circle (their URLs; repeat or comma-separate)
    #[arg(long = "backend-url", value_name = "URL", value_delimiter = ',')]
    backend_urls: Vec<String>,
    #[command(flatten)]
    copy: CopyOptions,
}

/// `ctl resync` arguments.
#[derive(Debug, clap::Args)]
pub(crate) struct ResyncArgs {
    /// Only data of this recent window (90s, 15m, 2h, 7d, or seconds)
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, conflicts_with = "since")]
    last: Option<u64>,
    /// Only data at or after this time (unix seconds)
    #[arg(long, value_name = "UNIX_SECONDS")]
    since: Option<u64>,
    #[command(flatten)]
    copy: CopyOptions,
}

/// `ctl clear` arguments.
#[derive(Debug, clap::Args)]
pub(crate) struct ClearArgs {
    /// The circle (its id or name)
    #[arg(long)]
    circle: String,
    /// Only these databases (comma-separated)
    #[arg(long = "db", value_name = "DB", value_delimiter = ',')]
    dbs: Vec<String>,
    #[command(flatten)]
    follow: FollowOptions,
}

/// What an anti-entropy pass looks at.
#[derive(Debug, clap::Args)]
pub(crate) struct Scope {
    /// Only these databases (comma-separated) [default: all but _internal]
    #[arg(long = "db", value_name = "DB", value_delimiter = ',')]
    dbs: Vec<String>,
    /// From this time (unix seconds) [default: all time]
    #[arg(long, value_name = "UNIX_SECONDS")]
    start: Option<i64>,
    /// Until this time (unix seconds) [default: all time]
    #[arg(long, value_name = "UNIX_SECONDS")]
    end: Option<i64>,
    /// Only the recent window (90s, 15m, 2h, 7d, or seconds), instead of --start
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, conflicts_with = "start")]
    last: Option<u64>,
    /// Buckets are not split below this many seconds [default: 60]
    #[arg(long, value_name = "SECONDS")]
    min_bucket: Option<u64>,
    /// Compare the full digest (every field's count and sum) of every bucket from the start,
    /// instead of one field's count first
    #[arg(long)]
    deep: bool,
}

impl Scope {
    fn query(&self) -> Vec<(&'static str, String)> {
        let mut q = Vec::new();
        if !self.dbs.is_empty() {
            q.push(("dbs", self.dbs.join(",")));
        }
        let numbers = [
            ("start", self.start.map(|n| n.to_string())),
            ("end", self.end.map(|n| n.to_string())),
            ("seconds", self.last.map(|n| n.to_string())),
            ("min_bucket", self.min_bucket.map(|n| n.to_string())),
        ];
        q.extend(numbers.into_iter().filter_map(|(k, v)| Some((k, v?))));
        if self.deep {
            q.push(("deep", "true".to_string()));
        }
        q
    }
}

/// `ctl compare` arguments.
#[derive(Debug, clap::Args)]
pub(crate) struct CompareArgs {
    #[command(flatten)]
    scope: Scope,
}

/// `ctl repair` arguments.
#[derive(Debug, clap::Args)]
pub(crate) struct RepairArgs {
    #[command(flatten)]
    scope: Scope,
    /// Points written per second at most [default: the config's anti_entropy_rate]
    #[arg(long, value_name = "POINTS")]
    rate: Option<u64>,
    #[command(flatten)]
    follow: FollowOptions,
}

/// `ctl watch` arguments.
#[derive(Debug, clap::Args)]
pub(crate) struct WatchArgs {
    /// Follow this job (running or finished) instead of every running one
    #[arg(long, value_name = "ID")]
    job: Option<u64>,
}

/// `90s`, `15m`, `2h`, `7d` or plain seconds, in seconds.
pub(crate) fn parse_duration(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (digits, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("invalid duration {s:?}: use e.g. 90s, 15m, 2h, 7d"))?;
    let unit = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => {
            return Err(format!(
                "invalid duration unit in {s:?}: use s, m, h, d or w"
            ))
        }
    };
    n.checked_mul(unit)
        .filter(|&n| n > 0)
        .ok_or_else(|| format!("invalid duration {s:?}"))
}

fn pairs<'a>(q: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    q.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// Starts an operation; its job id, or why the proxy refused it.
fn start(
    ctx: &Ctx,
    path: &str,
    query: &[(&'static str, String)],
    body: Option<&Value>,
) -> Result<u64, CtlError> {
    let posted = ctx.target.post(path, &pairs(query), body)?;
    let operation = path.trim_start_matches('/');
    match (posted.job, posted.text.trim()) {
        (Some(id), _) => Ok(id),
        // A proxy older than this console starts jobs without naming them.
        (None, "accepted") => Err(CtlError::Refused(format!(
            "{operation} started, but the proxy names no job to follow (it is older than this \
             console): follow it with GET /migrate/stats"
        ))),
        // Busy: the Go proxy's answer, 202 with the reason.
        (None, reason) => Err(CtlError::Refused(format!("{operation} refused: {reason}"))),
    }
}

/// `ctl rebalance`.
pub(super) fn rebalance(ctx: &Ctx, args: &RebalanceArgs) -> Outcome {
    let circle = circle_id(ctx, &args.circle)?;
    let mut q = vec![("circle_id", circle.to_string())];
    let body = match &args.removed_from {
        Some(old) => {
            q.push(("operation", "rm".into()));
            Some(removed_backends(ctx, circle, old)?)
        }
        None => {
            q.push(("operation", "add".into()));
            None
        }
    };
    q.extend(args.copy.query());
    let id = start(ctx, "/rebalance", &q, body.as_ref())?;
    follow_or_detach(ctx, id, "rebalance", &args.copy.follow)
}

/// The backends of circle `circle` in the config `old` that the running proxy no longer
/// has, as `/rebalance?operation=rm` takes them (plaintext credentials).
fn removed_backends(ctx: &Ctx, circle: usize, old: &Path) -> Result<Value, CtlError> {
    let old_config =
        Config::load(old).map_err(|e| CtlError::Config(format!("{}: {e}", old.display())))?;
    let running = ctx.target.get_json("/health?version=2.5")?;
    let now: Vec<&str> = running["circles"][circle]["backends"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|b| b["name"].as_str())
        .collect();
    let before = old_config
        .circles
        .get(circle)
        .ok_or_else(|| CtlError::Config(format!("{} has no circle #{circle}", old.display())))?;
    let removed: Vec<Value> = before
        .backends
        .iter()
        .filter(|b| !now.contains(&b.name.as_str()))
        .map(|b| {
            let (username, password) = b.credentials().unwrap_or_default();
            json!({"name": b.name, "url": b.url, "username": username, "password": password})
        })
        .collect();
    if removed.is_empty() {
        return Err(CtlError::Refused(format!(
            "every backend of circle #{circle} in {} is still in the running config: nothing was removed",
            old.display()
        )));
    }
    Ok(json!({ "backends": removed }))
}

/// `ctl recovery`.
pub(super) fn recovery(ctx: &Ctx, args: &RecoveryArgs) -> Outcome {
    let from = circle_id(ctx, &args.from)?;
    let to = circle_id(ctx, &args.to)?;
    let mut q = vec![
        ("from_circle_id", from.to_string()),
        ("to_circle_id", to.to_string()),
    ];
    if !args.backend_urls.is_empty() {
        q.push(("backend_urls", args.backend_urls.join(",")));
    }
    q.extend(args.copy.query());
    let id = start(ctx, "/recovery", &q, None)?;
    follow_or_detach(ctx, id, "recovery", &args.copy.follow)
}

/// `ctl resync`.
pub(super) fn resync(ctx: &Ctx, args: &ResyncArgs) -> Outcome {
    let mut q = Vec::new();
    if let Some(s) = args.last {
        q.push(("seconds", s.to_string()));
    }
    if let Some(s) = args.since {
        q.push(("since", s.to_string()));
    }
    q.extend(args.copy.query());
    let id = start(ctx, "/resync", &q, None)?;
    follow_or_detach(ctx, id, "resync", &args.copy.follow)
}

/// `ctl clear`.
pub(super) fn clear(ctx: &Ctx, args: &ClearArgs) -> Outcome {
    let circle = circle_id(ctx, &args.circle)?;
    let mut q = vec![("circle_id", circle.to_string())];
    if !args.dbs.is_empty() {
        q.push(("dbs", args.dbs.join(",")));
    }
    let id = start(ctx, "/clear", &q, None)?;
    follow_or_detach(ctx, id, "clear", &args.follow)
}

/// `ctl repair`.
pub(super) fn repair(ctx: &Ctx, args: &RepairArgs) -> Outcome {
    let mut q = args.scope.query();
    if let Some(r) = args.rate {
        q.push(("rate", r.to_string()));
    }
    let id = start(ctx, "/anti-entropy/repair", &q, None)?;
    follow_or_detach(ctx, id, "repair", &args.follow)
}

/// `ctl compare`: the differing buckets; exit 4 when there are any.
pub(super) fn compare(ctx: &Ctx, args: &CompareArgs) -> Outcome {
    let q = args.scope.query();
    let path = with_query("/anti-entropy/compare", &pairs(&q));
    let report = ctx.target.get_json_within(&path, COMPARE_TIMEOUT)?;
    if ctx.json {
        ctx.print_json(&report);
    } else {
        print!("{}", render_compare(&report));
    }
    let differing = report["differing"].as_u64().unwrap_or(0);
    Ok(if differing == 0 {
        Exit::Done
    } else {
        Exit::Unhealthy
    })
}

/// The differing buckets of a comparison as a table, then a summary.
fn render_compare(report: &Value) -> String {
    let buckets = report["buckets"].as_array().map_or(&[][..], Vec::as_slice);
    let circles: Vec<String> = buckets
        .first()
        .and_then(|b| b["circles"].as_array())
        .into_iter()
        .flatten()
        .map(|c| format!("{}>", c["circle"].as_str().unwrap_or("circle")))
        .collect();
    let mut titles = vec![
        "DATABASE",
        "RP",
        "MEASUREMENT",
        "START (UTC)",
        "END (UTC)",
        "MISSING>",
        "CONFLICT",
    ];
    titles.extend(circles.iter().map(String::as_str));
    let mut t = Table::new(&titles);
    for b in buckets {
        let s = |k: &str| b[k].as_str().unwrap_or("").to_string();
        let mut row = vec![
            s("db"),
            s("rp"),
            s("measurement"),
            utc(b["start"].as_i64().unwrap_or(0)),
            utc(b["end"].as_i64().unwrap_or(0)),
            count(b["missing"].as_u64().unwrap_or(0)),
            if b["value_conflict"] == true {
                "yes"
            } else {
                ""
            }
            .to_string(),
        ];
        row.extend(
            b["circles"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| count(c["points"].as_u64().unwrap_or(0))),
        );
        t.row(row);
    }
    let mut out = if t.is_empty() {
        String::new()
    } else {
        t.render() + "\n"
    };
    let n = |k: &str| count(report[k].as_u64().unwrap_or(0));
    let measurements = report["measurements"]
        .as_u64()
        .map_or_else(|| "?".to_string(), count);
    out.push_str(&format!(
        "{} differing buckets, {} points missing, in {measurements} measurements compared\n",
        n("differing"),
        n("missing"),
    ));
    if !buckets.is_empty() {
        out.push_str("Mend them with: influx-proxy ctl repair (same --db/--start/--end/--last)\n");
    }
    out
}

/// `ctl watch`: follows the given job, or every running one.
pub(super) fn watch(ctx: &Ctx, args: &WatchArgs) -> Outcome {
    let jobs = list(ctx)?;
    let ids: Vec<u64> = match args.job {
        Some(id) => vec![id],
        None => jobs.iter().filter(|j| !j.finished).map(|j| j.id).collect(),
    };
    if ids.is_empty() {
        if ctx.json {
            ctx.print_json(&json!({ "running": [] }));
        } else {
            println!("No operation is running.");
            if let Some(last) = jobs.last() {
                println!("Last: {}", last.summary());
            }
        }
        return Ok(Exit::Done);
    }
    follow(ctx, &ids)
}

/// Every job the proxy keeps.
fn list(ctx: &Ctx) -> Result<Vec<JobView>, CtlError> {
    let v = ctx.target.get_json("/migrate/jobs")?;
    Ok(v["jobs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(JobView::from_json)
        .collect())
}

fn follow_or_detach(ctx: &Ctx, id: u64, operation: &str, opts: &FollowOptions) -> Outcome {
    if !opts.detach {
        return follow(ctx, &[id]);
    }
    if ctx.json {
        ctx.print_json(&json!({ "job": id, "operation": operation, "started": true }));
    } else {
        println!("Started {operation} #{id}; follow it with: influx-proxy ctl watch --job {id}");
    }
    Ok(Exit::Done)
}

/// How often the proxy is asked while following: often enough for a smooth bar, once a
/// second for lines.
fn poll_interval(mode: Mode) -> Duration {
    match mode {
        Mode::Bars => Duration::from_millis(250),
        Mode::Lines | Mode::Json => Duration::from_secs(1),
    }
}

/// Follows jobs `ids` until each has ended; Ctrl-C detaches and leaves them running.
pub(super) fn follow(ctx: &Ctx, ids: &[u64]) -> Outcome {
    let mode = ctx.progress_mode();
    let interrupted = ctrl_c();
    let mut display = Display::new(mode);
    let mut ended: BTreeMap<u64, JobView> = BTreeMap::new();
    loop {
        let all = list(ctx)?;
        let mut now = Vec::new();
        for &id in ids.iter().filter(|id| !ended.contains_key(id)) {
            match all.iter().find(|j| j.id == id) {
                Some(j) => now.push(j.clone()),
                None => {
                    display.clear();
                    return Err(CtlError::Refused(format!(
                        "job #{id} is not known to the proxy (it restarted, or the id is wrong)"
                    )));
                }
            }
        }
        display.show(&now);
        for j in now.into_iter().filter(|j| j.finished) {
            display.end(&j);
            ended.insert(j.id, j);
        }
        if ended.len() == ids.len() {
            break;
        }
        if wait(poll_interval(mode), &interrupted) {
            display.clear();
            detached(ctx, ids, &ended);
            return Ok(Exit::Detached);
        }
    }
    Ok(if ended.values().all(JobView::succeeded) {
        Exit::Done
    } else {
        Exit::Failed
    })
}

/// Tells how to re-attach to the jobs still running.
fn detached(ctx: &Ctx, ids: &[u64], ended: &BTreeMap<u64, JobView>) {
    let running: Vec<u64> = ids
        .iter()
        .copied()
        .filter(|id| !ended.contains_key(id))
        .collect();
    if ctx.json {
        println!("{}", json!({ "detached": running }));
        return;
    }
    for id in running {
        eprintln!(
            "Detached: job #{id} keeps running in the proxy. Re-attach with: influx-proxy ctl watch --job {id}"
        );
    }
}

/// Sleeps `d`, in short steps; true as soon as Ctrl-C was pressed.
fn wait(d: Duration, interrupted: &AtomicBool) -> bool {
    let until = Instant::now() + d;
    while Instant::now() < until {
        if interrupted.load(Ordering::Acquire) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50).min(d));
    }
    interrupted.load(Ordering::Acquire)
}

/// A flag set by Ctrl-C (SIGINT) from now on, instead of the process ending: a thread waits
/// for the signal on a small Tokio runtime (the proxy's own signal handling, no new crate).
fn ctrl_c() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    let set = flag.clone();
    let spawned = std::thread::Builder::new()
        .name("ctrl-c".into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .build();
            if let Ok(rt) = runtime {
                rt.block_on(async {
                    if tokio::signal::ctrl_c().await.is_ok() {
                        set.store(true, Ordering::Release);
                    }
                });
            }
        });
    if let Err(e) = spawned {
        eprintln!("influx-proxy ctl: cannot watch for Ctrl-C ({e}); it will stop this command");
    }
    flag
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_a_unit_or_seconds() {
        assert_eq!(parse_duration("90"), Ok(90));
        assert_eq!(parse_duration("90s"), Ok(90));
        assert_eq!(parse_duration("15m"), Ok(900));
        assert_eq!(parse_duration("2h"), Ok(7_200));
        assert_eq!(parse_duration("7d"), Ok(604_800));
        assert!(parse_duration("0").is_err());
        assert!(parse_duration("h").is_err());
        assert!(parse_duration("3y").is_err());
    }

    #[test]
    fn a_scope_becomes_the_endpoints_parameters() {
        let s = Scope {
            dbs: vec!["a".into(), "b".into()],
            start: None,
            end: Some(20),
            last: Some(3600),
            min_bucket: None,
            deep: true,
        };
        assert_eq!(
            s.query(),
            [
                ("dbs", "a,b".to_string()),
                ("end", "20".to_string()),
                ("seconds", "3600".to_string()),
                ("deep", "true".to_string())
            ]
        );
    }

    #[test]
    fn a_comparison_is_a_table_of_buckets_with_each_circles_points() {
        let report = json!({"databases": ["db"], "measurements": 3, "queries": 6,
            "differing": 1, "missing": 5, "buckets": [{"db": "db", "rp": "autogen",
            "measurement": "cpu", "start": 0, "end": 60_000_000_000i64, "missing": 5,
            "value_conflict": false, "circles": [
                {"circle_id": 0, "circle": "circle-1", "points": 10},
                {"circle_id": 1, "circle": "circle-2", "points": 5}]}]});
        let text = render_compare(&report);
        let mut lines = text.lines();
        let header = lines.next().unwrap();
        assert!(
            header.contains("circle-1") && header.contains("MISSING"),
            "{text}"
        );
        let row = lines.next().unwrap();
        assert!(row.starts_with("db"), "{text}");
        assert!(row.contains("1970-01-01 00:01:00"), "{text}");
        assert!(text.contains("1 differing buckets, 5 points missing, in 3 measurements"));
        let none = render_compare(&json!({"differing": 0, "missing": 0, "measurements": 3,
            "buckets": []}));
        assert_eq!(
            none,
            "0 differing buckets, 0 points missing, in 3 measurements compared\n"
        );
    }
}
