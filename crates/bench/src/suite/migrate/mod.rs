//! Section (e): migration measured, not claimed. The same data set is moved by influx-proxy and
//! by the Go proxy 2.4.4 (the generation that serves `/rebalance`, `/recovery` and
//! `/migrate/state` under these names) into real influxd:
//!
//! * rebalance: a circle grown from 2 to 3 backends, `POST /rebalance?circle_id=0&operation=add`;
//! * recovery: an empty circle of 2 backends rebuilt from a full one,
//!   `POST /recovery?from_circle_id=0&to_circle_id=1`.
//!
//! The data set is loaded once, through influx-proxy into a 1 x 2 circle of influxd; the two
//! influxd are then compacted, stopped and kept as a snapshot, and every run starts from fresh
//! copies of it (plus empty influxd with the database created), so both proxies migrate
//! identical states. A run ends when every point is stored in influxd: the job's `<op> done`
//! line in `<mlog_dir>/<op>.log`, the circle no longer migrating in `/migrate/state` and, for
//! influx-proxy (which copies into its write-ahead queues), the queues drained. Afterwards every
//! measurement is counted on every backend of the receiving circle: the owner (the proxy's
//! `/replica`) must hold all of its points, and the circle exactly the points it had plus the
//! points moved.
//!
//! Before the runs, the limit of a migration here is measured on the same copies ([`limit`]):
//! the sources' export rate and an empty influxd's import rate; each row is also shown as a
//! fraction of the lower of the two.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use harness::influxd::{Influxd, InfluxdOptions};
use harness::proxy::Proxy;
use harness::{http, Signal};

use super::load::Load;
use super::opts::{MigrateOp, MigrateProxy};
use super::report::{f1, f2, int, ratio, round2};
use super::setup;
use super::{Ctx, Error};
use verify::{owner_in, verdict, Expected};

mod limit;
mod verify;

/// How long the snapshot's files may keep changing (compactions) before they are used as
/// they are.
const SETTLE_LIMIT: usize = 300;

/// The loaded, compacted and stopped influxd every run copies.
#[derive(Debug)]
struct DataSet {
    snapshots: Vec<Influxd>,
    expected: Vec<Expected>,
}

impl DataSet {
    fn dirs(&self) -> Vec<PathBuf> {
        self.snapshots
            .iter()
            .map(|i| i.dir().to_path_buf())
            .collect()
    }
}

impl Drop for DataSet {
    fn drop(&mut self) {
        // The copies are large; the logs stay with --keep.
        for dir in self.dirs() {
            remove_data(&dir);
        }
    }
}

/// What the ratios under the table compare, as the cells show them.
#[derive(Debug, Clone)]
struct Figures {
    label: String,
    points_per_sec: f64,
    cpu_us_per_point: f64,
    peak_rss_mib: u64,
}

pub(crate) fn run(ctx: &mut Ctx) -> Result<(), Error> {
    let o = ctx.opts.migrate.clone();
    ctx.report
        .line("## (e) Migration into real influxd: influx-proxy vs. the Go proxy 2.4.4");
    ctx.report.blank();
    if !ctx.have_influxd {
        ctx.report
            .line("influxd is not installed (Debian package `influxdb`); skipped.");
        ctx.log("(e) skipped: no influxd");
        ctx.report.blank();
        return Ok(());
    }
    let Some((data, acked, tsm_mib)) = load_data_set(ctx)? else {
        ctx.report.line("The load failed; skipped.");
        ctx.report.blank();
        return Ok(());
    };
    let stored: u64 = data.expected.iter().map(|e| e.count).sum();
    let (cpus, machine_cpus) = (o.cpus, ctx.cpus);
    let (measurements, points) = (o.measurements, o.points);
    ctx.report.line(format!(
        "Data set: `influx-proxy-bench write --measurements {measurements} --points {points}` \
         ({} points stored of {} acknowledged; {measurements} measurements x 100 tag sets, 2 \
         tags, 4 fields; {tsm_mib} MB of influxd files), loaded once through influx-proxy into a \
         circle of 2 influxd, compacted, and copied afresh for every run, so both proxies start \
         from identical states. **rebalance**: that circle grown to 3 backends (the third \
         empty), `POST /rebalance?circle_id=0&operation=add&cpus={cpus}`; **recovery**: a second \
         circle of 2 empty influxd rebuilt from it, \
         `POST /recovery?from_circle_id=0&to_circle_id=1&cpus={cpus}`. The receiving influxd \
         have the database created beforehand (the Go proxy 2.4.4 does not create it). \
         \"seconds\" runs from the POST until every point is in influxd (job done, circle no \
         longer migrating, and for influx-proxy, which copies into its write-ahead queues, the \
         queues drained; \"drain s\" is that last part). \"points moved\" and \"verified\" are \
         counted in influxd afterwards: every measurement complete on its owner (the proxy's \
         `/replica`), and the receiving circle holding exactly what it had plus the points \
         moved. CPU = the proxy's user+system time during the run; peak RSS = its VmHWM; \
         \"influxd CPU s\" = the user+system time of all influxd of the run (reading the \
         sources, writing the destinations), which share the same {machine_cpus} CPUs.",
        int(stored as f64),
        int(acked as f64),
    ));
    ctx.report.blank();
    let limit = match measure_limit(ctx, &data) {
        Ok(limit) => {
            ctx.report.line(limit.line());
            Some(limit.points_per_sec())
        }
        Err(error) => {
            ctx.log(format!("(e) limit: {error}"));
            ctx.report
                .line(format!("**Limit**: not measured ({error})."));
            None
        }
    };
    ctx.report.blank();
    ctx.report.line("| proxy | operation | points moved | verified in influxd | seconds | drain s | points/s | of the limit | proxy CPU s | CPU µs/point | peak RSS MB | influxd CPU s |");
    ctx.report
        .line("|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut figures = BTreeMap::new();
    for &op in &o.ops {
        for &who in &o.proxies {
            let Some(bin) = program(ctx, who, op) else {
                continue;
            };
            if let Some(f) = one_run(ctx, &data, who, op, &bin, limit)? {
                figures.insert((who, op), f);
            }
        }
    }
    ctx.report.blank();
    if let Some(limit) = limit {
        for &op in &o.ops {
            let rows: Vec<(String, f64)> = figures
                .iter()
                .filter(|((_, o), _)| *o == op)
                .map(|(_, f)| (f.label.clone(), f.points_per_sec))
                .collect();
            if !rows.is_empty() {
                ctx.report
                    .line(limit::limit_bullet(op.name(), &rows, limit));
            }
        }
    }
    for &op in &o.ops {
        let (Some(ours), Some(go)) = (
            figures.get(&(MigrateProxy::Ours, op)),
            figures.get(&(MigrateProxy::Go, op)),
        ) else {
            continue;
        };
        ctx.report.line(format!(
            "- {}, influx-proxy / Go proxy: points/s x{:.1}, CPU per point x{:.2}, peak RSS x{:.2}.",
            op.name(),
            ratio(ours.points_per_sec, go.points_per_sec),
            ratio(ours.cpu_us_per_point, go.cpu_us_per_point),
            ratio(ours.peak_rss_mib as f64, go.peak_rss_mib as f64),
        ));
    }
    ctx.report.blank();
    Ok(())
}

/// The binary that runs `who`, or `None` (with a row saying why) when it is not there.
fn program(ctx: &mut Ctx, who: MigrateProxy, op: MigrateOp) -> Option<PathBuf> {
    let o = &ctx.opts;
    match who {
        MigrateProxy::Ours => Some(ctx.proxy_bin.clone()),
        MigrateProxy::Go if setup::is_executable(&o.go_migrate_proxy) => {
            Some(o.go_migrate_proxy.clone())
        }
        MigrateProxy::Go => {
            let row = format!(
                "| Go proxy 2.4.4 | {} | not found at `{}` (set GO_MIGRATE_PROXY) | | | | | | | | | |",
                op.name(),
                o.go_migrate_proxy.display()
            );
            ctx.report.line(row);
            None
        }
        MigrateProxy::Base => match &o.migrate.base {
            Some(base) if setup::is_executable(base) => Some(base.clone()),
            _ => {
                ctx.report.line(format!(
                    "| influx-proxy (base) | {} | BENCH_MIGRATE_BASE (another influx-proxy binary) not set | | | | | | | | | |",
                    op.name()
                ));
                None
            }
        },
    }
}

fn label(who: MigrateProxy, bin: &Path) -> String {
    match who {
        MigrateProxy::Ours => "influx-proxy".to_owned(),
        MigrateProxy::Go => "Go proxy 2.4.4".to_owned(),
        MigrateProxy::Base => format!(
            "influx-proxy ({})",
            bin.file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
        ),
    }
}

fn short_name(who: MigrateProxy) -> &'static str {
    match who {
        MigrateProxy::Ours => "ours",
        MigrateProxy::Go => "go",
        MigrateProxy::Base => "base",
    }
}

/// Loads the data set through influx-proxy into 1 x 2 influxd, waits for it to be stored and
/// compacted, and stops them: (the data set, points acknowledged, MiB on disk). `None` when the
/// load failed.
fn load_data_set(ctx: &mut Ctx) -> Result<Option<(DataSet, u64, u64)>, Error> {
    let o = ctx.opts.migrate.clone();
    ctx.log(format!(
        "(e) loading {} points over {} measurements",
        int(o.points as f64),
        o.measurements
    ));
    let options = InfluxdOptions {
        // Compacted within seconds once the load stops, so the snapshot is what a long-lived
        // database looks like.
        data_settings: vec![
            "cache-snapshot-write-cold-duration = \"1s\"".to_owned(),
            "compact-full-write-cold-duration = \"1s\"".to_owned(),
        ],
        ..setup::influxd_options()
    };
    let mut influxds = setup::influxds_with(2, &options)?;
    let urls = setup::urls(influxds.iter().map(|i| i.url.as_str()));
    let proxy = setup::proxy(&ctx.proxy_bin, 1, 2, &urls, &setup::no_extra())?;
    let load = Load::new(ctx, &proxy.url, "bench")
        .switches(&["--create-db"])
        .flag("--measurements", o.measurements)
        .flag("--points", o.points)
        .seconds(7200);
    let acked = match load.run() {
        Ok(s) => s.points,
        Err(error) => {
            eprintln!("{error}");
            return Ok(None);
        }
    };
    let timeout = Duration::from_secs(o.timeout);
    let drained = http::wait_until(timeout, || setup::queue_bytes(&proxy.url) == Some(0));
    if !drained {
        ctx.log(format!(
            "(e) the load's queues did not drain in {} s",
            o.timeout
        ));
    }
    drop(proxy);
    let expected: Vec<Expected> = influxds
        .iter()
        .enumerate()
        .flat_map(|(i, influxd)| {
            setup::counts(&influxd.url, "bench", "f0").into_iter().map(
                move |(measurement, count)| Expected {
                    measurement,
                    count,
                    source: i + 1,
                },
            )
        })
        .collect();
    let dirs: Vec<PathBuf> = influxds.iter().map(|i| i.dir().to_path_buf()).collect();
    if !settle(&dirs) {
        ctx.log(format!(
            "(e) influxd files still changing after {SETTLE_LIMIT} s; using them as they are"
        ));
    }
    for influxd in &mut influxds {
        influxd.stop();
    }
    let tsm_mib: u64 = dirs
        .iter()
        .map(|d| harness::disk_usage(d).div_ceil(1 << 20))
        .sum();
    let stored: u64 = expected.iter().map(|e| e.count).sum();
    ctx.log(format!(
        "(e) data set: {acked} points acknowledged, {stored} stored, {tsm_mib} MB on disk"
    ));
    Ok(Some((
        DataSet {
            snapshots: influxds,
            expected,
        },
        acked,
        tsm_mib,
    )))
}

/// Waits until the files under `data` and `wal` of `dirs` stop changing (cache snapshots and
/// full compactions done) for 3 s; false when they still change after [`SETTLE_LIMIT`] s.
fn settle(dirs: &[PathBuf]) -> bool {
    let mut last = None;
    let mut stable = 0;
    for _ in 0..SETTLE_LIMIT {
        let mut now = Vec::new();
        for dir in dirs {
            list_files(&dir.join("data"), &mut now);
            list_files(&dir.join("wal"), &mut now);
        }
        now.sort();
        let compacting = now
            .iter()
            .any(|(path, _)| path.extension().is_some_and(|e| e == "tmp"));
        if last.as_ref() == Some(&now) && !compacting {
            stable += 1;
            if stable >= 3 {
                return true;
            }
        } else {
            stable = 0;
        }
        last = Some(now);
        thread::sleep(Duration::from_secs(1));
    }
    false
}

/// Every file under `dir` with its size.
fn list_files(dir: &Path, out: &mut Vec<(PathBuf, u64)>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        match entry.metadata() {
            Ok(m) if m.is_dir() => list_files(&entry.path(), out),
            Ok(m) => out.push((entry.path(), m.len())),
            Err(_) => {}
        }
    }
}

/// Removes the data of an influxd dir (the logs and config stay).
fn remove_data(dir: &Path) {
    for part in ["data", "wal", "meta"] {
        let _ = fs::remove_dir_all(dir.join(part));
    }
}

/// The servers of one run: the two sources (copies of the snapshot), the empty receivers.
struct Servers {
    influxds: Vec<Influxd>,
    /// Index of the first server of the receiving circle, its circle number.
    receiving: (usize, usize),
}

impl Servers {
    fn start(data: &DataSet, op: MigrateOp) -> Result<Servers, Error> {
        let mut influxds = Vec::new();
        for dir in data.dirs() {
            let options = InfluxdOptions {
                seed: Some(dir),
                ..setup::influxd_options()
            };
            influxds.extend(setup::influxds_with(1, &options)?);
        }
        let (empties, receiving) = match op {
            MigrateOp::Rebalance => (1, (0, 1)),
            MigrateOp::Recovery => (2, (2, 2)),
        };
        // The receiving backends start empty, with the database (the Go proxy 2.4.4 does not
        // create it; the upstream recipe pre-creates it, issue #29).
        for influxd in setup::influxds(empties)? {
            http::request_within(
                "POST",
                &format!("{}/query?db=bench&q=CREATE%20DATABASE%20bench", influxd.url),
                Some(&[][..]),
                &[],
                Duration::from_secs(600),
            )
            .map_err(|e| harness::Error::Request {
                url: influxd.url.clone(),
                message: e.to_string(),
            })?;
            influxds.push(influxd);
        }
        Ok(Servers {
            influxds,
            receiving,
        })
    }

    fn pids(&self) -> Vec<Option<u32>> {
        self.influxds.iter().map(Influxd::pid).collect()
    }

    fn cpu_seconds(&self) -> f64 {
        self.pids().into_iter().map(setup::cpu_seconds).sum()
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        for influxd in &mut self.influxds {
            influxd.kill9();
            remove_data(influxd.dir());
        }
    }
}

/// One migration from fresh copies of the snapshot; writes its row.
fn one_run(
    ctx: &mut Ctx,
    data: &DataSet,
    who: MigrateProxy,
    op: MigrateOp,
    bin: &Path,
    limit: Option<f64>,
) -> Result<Option<Figures>, Error> {
    let o = ctx.opts.migrate.clone();
    let servers = Servers::start(data, op)?;
    let urls = setup::urls(servers.influxds.iter().map(|i| i.url.as_str()));
    let (circles, per) = match op {
        MigrateOp::Rebalance => (1, 3),
        MigrateOp::Recovery => (2, 2),
    };
    let mut proxy = setup::proxy(bin, circles, per, &urls, &setup::no_extra())?;
    let url = match op {
        MigrateOp::Rebalance => format!(
            "{}/rebalance?circle_id=0&operation=add&cpus={}",
            proxy.url, o.cpus
        ),
        MigrateOp::Recovery => format!(
            "{}/recovery?from_circle_id=0&to_circle_id=1&cpus={}",
            proxy.url, o.cpus
        ),
    };
    let label = label(who, bin);
    let name = op.name();
    ctx.log(format!("(e) {label}: {name}"));
    let profile = if o.perf {
        Some(Profile::start(ctx, who, op, proxy.pid())?)
    } else {
        None
    };
    let db_cpu0 = servers.cpu_seconds();
    let cpu0 = setup::cpu_seconds(proxy.pid());
    let t0 = Instant::now();
    let answer = http::request_within("POST", &url, Some(&[][..]), &[], Duration::from_secs(30))
        .map(|r| r.body.trim_end_matches('\n').to_owned())
        .unwrap_or_default();
    if answer != "accepted" {
        ctx.report.line(format!(
            "| {label} | {name} | - | refused: `{answer}` | | | | | | | | |"
        ));
        if let Some(profile) = profile {
            profile.stop(ctx);
        }
        stop_and_clear(proxy);
        return Ok(None);
    }
    let waited = wait_done(ctx, &mut proxy, who, op, t0);
    let secs = t0.elapsed().as_secs_f64();
    let cpu = setup::cpu_seconds(proxy.pid()) - cpu0;
    let db_cpu = servers.cpu_seconds() - db_cpu0;
    let (_, rss) = setup::rss_mib(proxy.pid());
    if let Some(profile) = profile {
        profile.stop(ctx);
    }
    let (start, circle) = servers.receiving;
    let owners = owners(&proxy, data, circle);
    let after: Vec<(usize, String, u64)> = servers.influxds[start..]
        .iter()
        .enumerate()
        .flat_map(|(i, influxd)| {
            setup::counts(&influxd.url, "bench", "f0")
                .into_iter()
                .map(move |(m, n)| (i + 1, m, n))
        })
        .collect();
    let (moved, mut verdict) = verdict(op, &data.expected, &owners, &after);
    if waited.done.is_none() {
        verdict = format!("TIMEOUT after {} s; {verdict}", o.timeout);
    }
    let points_per_sec = if secs > 0.0 { moved as f64 / secs } else { 0.0 };
    let cpu = round2(cpu);
    let per_point = if moved > 0 {
        cpu * 1e6 / moved as f64
    } else {
        0.0
    };
    let drain = match (who, waited.copied) {
        (MigrateProxy::Go, _) | (_, None) => "-".to_owned(),
        (_, Some(copied)) => f1(secs - copied),
    };
    ctx.report.row(&[
        &label,
        name,
        &int(moved as f64),
        &verdict,
        &f1(secs),
        &drain,
        &int(points_per_sec),
        &limit::of_limit(points_per_sec, limit),
        &f2(cpu),
        &f2(per_point),
        &rss.to_string(),
        &f1(db_cpu),
    ]);
    ctx.log(format!(
        "(e) {label} {name}: {moved} points in {secs:.3} s ({points_per_sec:.0} points/s), CPU {} s, influxd CPU {} s, RSS {rss} MB, {verdict}",
        f2(cpu),
        f1(db_cpu)
    ));
    let job_log = proxy.dir.join("log").join(format!("{name}.log"));
    let _ = fs::copy(
        &job_log,
        ctx.work.join(format!("mig-{}-{name}.log", short_name(who))),
    );
    stop_and_clear(proxy);
    Ok(Some(Figures {
        label,
        points_per_sec: points_per_sec.round(),
        cpu_us_per_point: round2(per_point),
        peak_rss_mib: rss,
    }))
}

/// The limit of a migration, on fresh copies of the snapshot (the servers a rebalance starts
/// from: the 2 sources and an empty influxd): the sources' export, then as many points written
/// to the empty one.
fn measure_limit(ctx: &Ctx, data: &DataSet) -> Result<limit::Limit, Error> {
    let servers = Servers::start(data, MigrateOp::Rebalance)?;
    let sources: Vec<(String, String)> = data
        .expected
        .iter()
        .filter_map(|e| {
            let source = servers.influxds.get(e.source.checked_sub(1)?)?;
            Some((source.url.clone(), e.measurement.clone()))
        })
        .collect();
    let receiver = servers.influxds[servers.receiving.0].url.clone();
    limit::measure(ctx, &sources, &receiver, ctx.opts.migrate.cpus)
}

/// Stops the proxy and removes its queues (large; its log stays with --keep).
fn stop_and_clear(mut proxy: Proxy) {
    proxy.kill9();
    let _ = fs::remove_dir_all(proxy.dir.join("data"));
}

/// How a run ended: seconds from the POST until the job said done (`copied`), and until every
/// point was in influxd (`done`); `None` when it never got there.
#[derive(Debug, Default)]
struct Waited {
    copied: Option<f64>,
    done: Option<f64>,
}

/// Waits until the job is done and its points are in influxd, the proxy dies, or the timeout.
fn wait_done(
    ctx: &Ctx,
    proxy: &mut Proxy,
    who: MigrateProxy,
    op: MigrateOp,
    t0: Instant,
) -> Waited {
    let timeout = ctx.opts.migrate.timeout as f64;
    let name = op.name();
    let job_log = proxy.dir.join("log").join(format!("{name}.log"));
    let done_line = format!("{name} done");
    let mut waited = Waited::default();
    loop {
        if waited.copied.is_none()
            && fs::read_to_string(&job_log).is_ok_and(|log| log.contains(&done_line))
        {
            let state = http::request_within(
                "GET",
                &format!("{}/migrate/state", proxy.url),
                None,
                &[],
                Duration::from_secs(10),
            )
            .map(|r| r.body)
            .unwrap_or_default();
            if !state.is_empty() && !state.contains("\"is_migrating\":true") {
                waited.copied = Some(t0.elapsed().as_secs_f64());
            }
        }
        if waited.copied.is_some()
            && (who == MigrateProxy::Go || setup::queue_bytes(&proxy.url) == Some(0))
        {
            waited.done = Some(t0.elapsed().as_secs_f64());
            return waited;
        }
        if !proxy.is_running() {
            ctx.log(format!(
                "(e) the {} proxy died during {name}:\n{}",
                short_name(who),
                harness::log_tail(&proxy.dir.join("proxy.log"), 20)
            ));
            return waited;
        }
        if t0.elapsed().as_secs_f64() > timeout {
            ctx.log(format!(
                "(e) {} {name}: not done after {timeout} s",
                short_name(who)
            ));
            return waited;
        }
        thread::sleep(Duration::from_millis(200));
    }
}

/// The backend number in `circle` that owns each measurement, from the proxy's `/replica`.
fn owners(proxy: &Proxy, data: &DataSet, circle: usize) -> BTreeMap<String, Option<usize>> {
    data.expected
        .iter()
        .map(|e| {
            let url = format!(
                "{}/replica?db=bench&meas={}",
                proxy.url,
                http::urlencode(&e.measurement)
            );
            let answer = http::request_within("GET", &url, None, &[], Duration::from_secs(10))
                .map(|r| r.body)
                .unwrap_or_default();
            (e.measurement.clone(), owner_in(&answer, circle))
        })
        .collect()
}

/// `perf record -g` of the proxy during a run (`--migrate-perf`), kept in the work directory.
struct Profile {
    child: Child,
    data: PathBuf,
}

impl Profile {
    fn start(
        ctx: &Ctx,
        who: MigrateProxy,
        op: MigrateOp,
        pid: Option<u32>,
    ) -> Result<Profile, Error> {
        let data = ctx
            .work
            .join(format!("perf-{}-{}.data", short_name(who), op.name()));
        let log_path = ctx.work.join("perf.log");
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(Error::io(format!("open {}", log_path.display())))?;
        let stderr = log
            .try_clone()
            .map_err(Error::io(format!("open {}", log_path.display())))?;
        let child = Command::new("perf")
            .args(["record", "-g", "-o"])
            .arg(&data)
            .arg("-p")
            .arg(pid.unwrap_or(0).to_string())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(stderr)
            .spawn()
            .map_err(Error::io("run perf record"))?;
        thread::sleep(Duration::from_secs(1));
        Ok(Profile { child, data })
    }

    fn stop(mut self, ctx: &Ctx) {
        harness::send_signal(&self.child, Signal::SIGINT);
        let _ = self.child.wait();
        ctx.log(format!(
            "(e) profile: perf report -i {} (--keep keeps it)",
            self.data.display()
        ));
    }
}
