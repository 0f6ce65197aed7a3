//! The servers of a run and what the sections ask of them: sinks, influxd and proxies started
//! through the harness (several at once), the `proxy.json` every proxy reads (ours and the Go
//! proxy alike), and the polls: the proxy's queues, the sinks' and influxd's point counts.

use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use harness::influxd::{Influxd, InfluxdOptions};
use harness::proxy::Proxy;
use harness::sink::Sink;
use harness::{http, procfs};
use serde_json::{json, Map, Value};

use super::{Ctx, Error};

/// How long the suite waits for queues to drain or sinks to fill after a run.
pub(crate) const DRAIN_TIMEOUT: Duration = Duration::from_secs(180);

/// Starts `n` sinks at once.
pub(crate) fn sinks(ctx: &Ctx, n: usize) -> Result<Vec<Sink>, Error> {
    let bin = ctx.bench_bin.as_path();
    all_at_once(n, || Sink::try_start(bin))
}

/// Starts `n` influxd at once, as the benchmarks run them (log level `warn`).
pub(crate) fn influxds(n: usize) -> Result<Vec<Influxd>, Error> {
    influxds_with(n, &influxd_options())
}

/// Starts `n` influxd configured by `options` at once.
pub(crate) fn influxds_with(n: usize, options: &InfluxdOptions) -> Result<Vec<Influxd>, Error> {
    all_at_once(n, || Influxd::try_spawn_with(options))
}

/// The benchmarks' influxd: the template's settings, logging only warnings.
pub(crate) fn influxd_options() -> InfluxdOptions {
    InfluxdOptions {
        log_level: Some("warn"),
        ..InfluxdOptions::default()
    }
}

/// Runs `start` `n` times in parallel; the first error, once all are done (the others are
/// dropped, so stopped).
fn all_at_once<T: Send>(
    n: usize,
    start: impl Fn() -> Result<T, harness::Error> + Sync,
) -> Result<Vec<T>, Error> {
    let results: Vec<Result<T, harness::Error>> = thread::scope(|scope| {
        let handles: Vec<_> = (0..n).map(|_| scope.spawn(&start)).collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(harness::Error::Launch(
                        "a starting thread panicked".to_owned(),
                    ))
                })
            })
            .collect()
    });
    Ok(results.into_iter().collect::<Result<_, _>>()?)
}

/// `proxy.json` of `circles` circles of `per` backends each, at `urls` (circle-major), with
/// the benchmarks' settings and `extra` on top (e.g. `"write_gzip": false`); the harness adds
/// `listen_addr`, `data_dir` and `mlog_dir`.
pub(crate) fn proxy_config(circles: usize, per: usize, urls: &[&str], extra: &Value) -> Value {
    let circles: Vec<Value> = (0..circles)
        .map(|c| {
            let backends: Vec<Value> = (0..per)
                .filter_map(|b| {
                    let url = urls.get(c * per + b)?;
                    Some(json!({ "name": format!("backend-{}-{}", c + 1, b + 1), "url": url }))
                })
                .collect();
            json!({ "name": format!("circle-{}", c + 1), "backends": backends })
        })
        .collect();
    let mut config = json!({
        "circles": circles,
        "flush_size": 10000,
        "flush_time": 1,
        "wal_max_bytes": 8_589_934_592_u64,
        "log_level": "info",
    });
    if let (Some(config), Some(extra)) = (config.as_object_mut(), extra.as_object()) {
        config.extend(extra.clone());
    }
    config
}

/// Starts a proxy (`bin`: ours or the Go proxy, which reads the same file) in front of `urls`.
pub(crate) fn proxy(
    bin: &Path,
    circles: usize,
    per: usize,
    urls: &[&str],
    extra: &Value,
) -> Result<Proxy, Error> {
    Ok(Proxy::try_start_binary(
        bin,
        proxy_config(circles, per, urls, extra),
    )?)
}

/// No extra settings.
pub(crate) fn no_extra() -> Value {
    Value::Object(Map::new())
}

/// The URLs of some servers, for [`proxy_config`].
pub(crate) fn urls<'a>(servers: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
    servers.into_iter().collect()
}

/// Bytes queued over all backends of the proxy at `url` (sum of `queue.bytes` in `/health`);
/// `None` when it does not answer.
pub(crate) fn queue_bytes(url: &str) -> Option<u64> {
    let resp = http::request_within(
        "GET",
        &format!("{url}/health"),
        None,
        &[],
        Duration::from_secs(10),
    )
    .ok()?;
    let health: Value = serde_json::from_str(&resp.body).ok()?;
    Some(health_queue_bytes(&health))
}

/// The sum of `queue.bytes` over the backends of a `/health` answer (2.4 shape: a list of
/// circles).
fn health_queue_bytes(health: &Value) -> u64 {
    health
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|circle| circle["backends"].as_array().into_iter().flatten())
        .filter_map(|backend| backend["queue"]["bytes"].as_u64())
        .sum()
}

/// Polls `done` until it holds (the seconds it took) or `timeout` passes (`None`).
pub(crate) fn time_until(timeout: Duration, mut done: impl FnMut() -> bool) -> Option<f64> {
    let start = Instant::now();
    http::wait_until(timeout, &mut done).then(|| start.elapsed().as_secs_f64())
}

/// Seconds until the proxy's queues are empty, `None` after [`DRAIN_TIMEOUT`].
pub(crate) fn wait_drain(proxy: &Proxy) -> Option<f64> {
    time_until(DRAIN_TIMEOUT, || queue_bytes(&proxy.url) == Some(0))
}

/// Points the sinks received; a sink that does not answer counts 0.
pub(crate) fn sink_points<'a>(sinks: impl IntoIterator<Item = &'a Sink>) -> u64 {
    sinks.into_iter().map(|s| s.points().unwrap_or(0)).sum()
}

/// Seconds until the sinks hold `want` points (the Go proxy has no queue to poll).
pub(crate) fn wait_sinks(sinks: &[Sink], want: u64) -> Option<f64> {
    time_until(DRAIN_TIMEOUT, || sink_points(sinks) >= want)
}

/// A drain time as the tables show it: seconds, or `timeout`.
pub(crate) fn drain_cell(drain: Option<f64>) -> String {
    drain.map_or_else(|| "timeout".to_owned(), super::report::f1)
}

/// Runs `q` on database `db` of the influxd at `url` (GET), its JSON answer; `Value::Null`
/// when there is none.
pub(crate) fn query(url: &str, db: &str, q: &str, params: &str) -> Value {
    let url = format!(
        "{url}/query?db={}&q={}{params}",
        http::urlencode(db),
        http::urlencode(q)
    );
    http::request_within("GET", &url, None, &[], Duration::from_secs(120))
        .ok()
        .and_then(|resp| serde_json::from_str(&resp.body).ok())
        .unwrap_or(Value::Null)
}

/// The series of a query answer's statements: (name, rows).
pub(crate) fn series(answer: &Value) -> Vec<(&str, &Vec<Value>)> {
    answer["results"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|r| r["series"].as_array().into_iter().flatten())
        .filter_map(|s| Some((s["name"].as_str().unwrap_or(""), s["values"].as_array()?)))
        .collect()
}

/// Points of database `db` at the influxd `url`: `SELECT COUNT(field) FROM /.*/`, summed over
/// the measurements.
pub(crate) fn stored_points(url: &str, db: &str, field: &str) -> u64 {
    counts(url, db, field).iter().map(|(_, n)| n).sum()
}

/// `COUNT(field)` of every measurement of `db` at the influxd `url`.
pub(crate) fn counts(url: &str, db: &str, field: &str) -> Vec<(String, u64)> {
    let answer = query(url, db, &format!("SELECT COUNT({field}) FROM /.*/"), "");
    series(&answer)
        .into_iter()
        .map(|(name, rows)| {
            let n = rows
                .iter()
                .filter_map(|row| row.get(1)?.as_u64())
                .sum::<u64>();
            (name.to_owned(), n)
        })
        .collect()
}

/// User+system CPU seconds of a process so far; 0 when it is gone.
pub(crate) fn cpu_seconds(pid: Option<u32>) -> f64 {
    pid.and_then(|pid| procfs::cpu_seconds(Some(pid)))
        .unwrap_or(0.0)
}

/// Resident memory now and at its peak, MiB; 0 when the process is gone.
pub(crate) fn rss_mib(pid: Option<u32>) -> (u64, u64) {
    pid.and_then(procfs::memory)
        .map_or((0, 0), |m| (m.rss_mib(), m.peak_rss_mib()))
}

/// Pins every thread of the running process `pid` to CPU `cpu` (`taskset -a -p -c cpu pid`);
/// threads it starts later inherit the mask of the thread that starts them, so the whole
/// process stays there.
pub(crate) fn pin(pid: Option<u32>, cpu: usize) -> Result<(), Error> {
    let pid = pid.ok_or_else(|| Error::Failed(format!("pin to CPU {cpu}: no such process")))?;
    let out = Command::new("taskset")
        .args(["-a", "-p", "-c", &cpu.to_string(), &pid.to_string()])
        .stdin(Stdio::null())
        .output()
        .map_err(Error::io("run taskset"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::Failed(format!(
            "taskset -a -p -c {cpu} {pid}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// Whether `path` is an executable file (`[ -x path ]`).
pub(crate) fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_names_circles_and_backends_circle_major() {
        let c = proxy_config(
            2,
            2,
            &["http://a", "http://b", "http://c", "http://d"],
            &json!({ "write_gzip": false }),
        );
        assert_eq!(c["circles"][1]["name"], "circle-2");
        assert_eq!(c["circles"][1]["backends"][0]["name"], "backend-2-1");
        assert_eq!(c["circles"][1]["backends"][0]["url"], "http://c");
        assert_eq!(c["circles"][0]["backends"][1]["url"], "http://b");
        assert_eq!(c["write_gzip"], false);
        assert_eq!(c["wal_max_bytes"], 8_589_934_592_u64);
        assert_eq!(
            (c["flush_size"].as_u64(), c["flush_time"].as_u64()),
            (Some(10000), Some(1))
        );
    }

    #[test]
    fn queue_bytes_are_summed_over_every_backend() {
        let health = json!([
            {"circle": "circle-1", "backends": [
                {"name": "b1", "queue": {"records": 1, "bytes": 100, "points": 5}},
                {"name": "b2", "queue": {"records": 0, "bytes": 0, "points": 0},
                 "load": {"bench": {"bytes": 7}}}]},
            {"circle": "circle-2", "backends": [
                {"name": "b3", "queue": {"records": 2, "bytes": 23, "points": 9}}]}
        ]);
        assert_eq!(health_queue_bytes(&health), 123);
        assert_eq!(health_queue_bytes(&json!({"status": "pass"})), 0);
    }

    #[test]
    fn series_of_an_answer() {
        let answer = json!({"results": [{"statement_id": 0, "series": [
            {"name": "m0", "columns": ["time", "count"], "values": [["1970-01-01T00:00:00Z", 12]]},
            {"name": "m1", "columns": ["time", "count"], "values": [["1970-01-01T00:00:00Z", 30]]}
        ]}]});
        let s = series(&answer);
        assert_eq!(s.len(), 2);
        assert_eq!(s[1].0, "m1");
        assert_eq!(series(&Value::Null).len(), 0);
    }

    #[test]
    fn drain_cells() {
        assert_eq!(drain_cell(Some(3.94)), "3.9");
        assert_eq!(drain_cell(None), "timeout");
    }
}
