//! Section (i): an independent check of the headline, with `wrk` (not our load tool) posting one
//! fixed gzip'd Telegraf-like body through a Lua script, influx-proxy and the Go proxy in front
//! of 2 circles x 2 null sinks; then both at a fixed 300,000 points/s (below either's
//! saturation), where the tail latency of a proxy that keeps up is what users see.

use std::fs;
use std::io::Write as _;
use std::path::Path;
use std::process::Command;

use flate2::write::GzEncoder;

use super::load::Load;
use super::report::{f2, int};
use super::setup;
use super::user_body::delivered;
use super::{Ctx, Error};

/// Connections, as the harness (and our load tool's default).
const CONNECTIONS: u32 = 4;
/// The fixed rate of the second table, points/s.
const FIXED_RATE: u64 = 300_000;

pub(crate) fn run(ctx: &mut Ctx) -> Result<(), Error> {
    let seconds = ctx.opts.seconds;
    let batch = ctx.opts.batch;
    let r = &mut ctx.report;
    r.line("## (i) Independent check: `wrk`, one fixed Telegraf-like body");
    r.blank();
    let Some(wrk) = harness::find_on_path("wrk") else {
        r.line("`wrk` is not installed (Debian package `wrk`): skipped.");
        r.blank();
        return Ok(());
    };
    r.line(format!(
        "`wrk -t2 -c{CONNECTIONS} -d{seconds}s --latency` with a Lua script posting one fixed \
         gzip'd body of {batch} lines (`influx-proxy-bench write --shape telegraf`: 20 \
         measurements x 250 hosts, 3 tags, a full-precision float and an integer field) to \
         `/write?db=bench`, each proxy in front of 2 circles x 2 null sinks. Points/s = requests/s \
         x {batch}; CPU µs/point as in (a), delivery included; \"delivered\": the sinks got every \
         acknowledged point (wrk does not count requests still running when it stops, so the \
         sinks may hold a few more)."
    ));
    r.blank();
    r.line("| proxy | points/s | p50 ms | p90 ms | p99 ms | non-2xx | CPU µs/point | peak RSS MB | delivered |");
    r.line("|---|---:|---:|---:|---:|---:|---:|---:|---|");
    let body = ctx.work.join("telegraf.gz");
    write_body(&body, usize::try_from(batch).unwrap_or(5_000))?;
    let script = ctx.work.join("post.lua");
    fs::write(&script, lua_script(&body)).map_err(Error::io("write post.lua"))?;
    let go = ctx.opts.go_proxy.clone();
    let proxies = [
        ("influx-proxy", ctx.proxy_bin.clone()),
        ("Go proxy 2.5.12", go),
    ];
    for (label, bin) in &proxies {
        if !setup::is_executable(bin) {
            ctx.report.row(&[label, "not found (set GO_PROXY)"]);
            continue;
        }
        ctx.log(format!("(i) wrk -> {label} -> 2x2 sinks"));
        let sinks = setup::sinks(ctx, 4)?;
        let urls = setup::urls(sinks.iter().map(|s| s.url.as_str()));
        let proxy = setup::proxy(bin, 2, 2, &urls, &setup::no_extra())?;
        let cpu0 = setup::cpu_seconds(proxy.pid());
        let out = Command::new(&wrk)
            .args(["-t2", &format!("-c{CONNECTIONS}"), &format!("-d{seconds}s")])
            .args(["--latency", "--timeout", "30s", "-s"])
            .arg(&script)
            .arg(format!("{}/write?db=bench", proxy.url))
            .output()
            .map_err(Error::io("run wrk"))?;
        let text = String::from_utf8_lossy(&out.stdout);
        let w = WrkRun::parse(&text).ok_or_else(|| Error::Io {
            what: format!("read wrk's output: {text}"),
            source: std::io::Error::other("unexpected output"),
        })?;
        let acknowledged = w.requests.saturating_sub(w.non_2xx) * batch;
        let want = acknowledged * 2;
        setup::wait_sinks(&sinks, want);
        let cpu = setup::cpu_seconds(proxy.pid()) - cpu0;
        let (_, peak_rss) = setup::rss_mib(proxy.pid());
        let got = setup::sink_points(&sinks);
        let delivered_cell = if got >= want {
            format!("ok ({got} of {want})")
        } else {
            delivered(got, want)
        };
        ctx.report.row(&[
            label,
            &int(w.requests_per_sec * batch as f64),
            &f2(w.p50_ms),
            &f2(w.p90_ms),
            &f2(w.p99_ms),
            &w.non_2xx.to_string(),
            &f2(cpu * 1e6 / acknowledged.max(1) as f64),
            &peak_rss.to_string(),
            &delivered_cell,
        ]);
    }
    ctx.report.blank();
    fixed_rate(ctx, &proxies)
}

/// Both proxies at [`FIXED_RATE`] with our load tool (wrk cannot hold a rate), gzip bodies.
fn fixed_rate(ctx: &mut Ctx, proxies: &[(&str, std::path::PathBuf)]) -> Result<(), Error> {
    ctx.report.line(format!(
        "At a fixed {} points/s (`influx-proxy-bench write --rate {FIXED_RATE} --shape telegraf \
         --gzip`, {CONNECTIONS} connections), below both proxies' saturation:",
        int(FIXED_RATE as f64)
    ));
    ctx.report.blank();
    ctx.report
        .line("| proxy | points/s | p50 ms | p99 ms | errors | CPU µs/point |");
    ctx.report.line("|---|---:|---:|---:|---|---:|");
    for (label, bin) in proxies {
        if !setup::is_executable(bin) {
            continue;
        }
        ctx.log(format!("(i) {label} at {FIXED_RATE} points/s"));
        let sinks = setup::sinks(ctx, 4)?;
        let urls = setup::urls(sinks.iter().map(|s| s.url.as_str()));
        let proxy = setup::proxy(bin, 2, 2, &urls, &setup::no_extra())?;
        let cpu0 = setup::cpu_seconds(proxy.pid());
        let s = Load::new(ctx, &proxy.url, "bench")
            .flag("--shape", "telegraf")
            .flag("--rate", FIXED_RATE)
            .gzip(ctx.opts.pool_mb)
            .run()?;
        setup::wait_sinks(&sinks, s.points * 2);
        let cpu = setup::cpu_seconds(proxy.pid()) - cpu0;
        ctx.report.row(&[
            label,
            &int(s.points_per_sec),
            &f2(s.p50),
            &f2(s.p99),
            &s.errors_cell(),
            &f2(cpu * 1e6 / s.points.max(1) as f64),
        ]);
    }
    ctx.report.blank();
    Ok(())
}

/// One gzip'd body of `lines` Telegraf-like lines, as the load tool makes them.
fn write_body(path: &Path, lines: usize) -> Result<(), Error> {
    let plain = crate::telegraf_body(lines);
    let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&plain).map_err(Error::io("gzip the body"))?;
    let bytes = gz.finish().map_err(Error::io("gzip the body"))?;
    fs::write(path, bytes).map_err(Error::io(format!("write {}", path.display())))
}

/// wrk's script: POST the body file with `Content-Encoding: gzip`.
fn lua_script(body: &Path) -> String {
    format!(
        "local f = assert(io.open({:?}, \"rb\"))\n\
         wrk.method = \"POST\"\n\
         wrk.body = f:read(\"*a\")\n\
         f:close()\n\
         wrk.headers[\"Content-Type\"] = \"text/plain; charset=utf-8\"\n\
         wrk.headers[\"Content-Encoding\"] = \"gzip\"\n",
        body.display().to_string()
    )
}

/// What one wrk run printed.
#[derive(Debug, Clone, PartialEq)]
struct WrkRun {
    requests: u64,
    requests_per_sec: f64,
    non_2xx: u64,
    p50_ms: f64,
    p90_ms: f64,
    p99_ms: f64,
}

impl WrkRun {
    /// Reads wrk 4's report (`--latency`).
    fn parse(text: &str) -> Option<WrkRun> {
        let mut run = WrkRun {
            requests: 0,
            requests_per_sec: 0.0,
            non_2xx: 0,
            p50_ms: 0.0,
            p90_ms: 0.0,
            p99_ms: 0.0,
        };
        let mut seen = (false, false);
        for line in text.lines().map(str::trim) {
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                [n, "requests", "in", ..] => {
                    run.requests = n.parse().ok()?;
                    seen.0 = true;
                }
                ["Requests/sec:", n] => {
                    run.requests_per_sec = n.parse().ok()?;
                    seen.1 = true;
                }
                ["Non-2xx", "or", "3xx", "responses:", n] => run.non_2xx = n.parse().ok()?,
                ["50%", v] => run.p50_ms = millis(v)?,
                ["90%", v] => run.p90_ms = millis(v)?,
                ["99%", v] => run.p99_ms = millis(v)?,
                _ => {}
            }
        }
        (seen.0 && seen.1).then_some(run)
    }
}

/// wrk's durations (`812.00us`, `1.23ms`, `2.01s`, `1.00m`) in milliseconds.
fn millis(v: &str) -> Option<f64> {
    let split = v.find(|c: char| c.is_ascii_alphabetic())?;
    let (n, unit) = v.split_at(split);
    let n: f64 = n.parse().ok()?;
    Some(match unit {
        "us" => n / 1000.0,
        "ms" => n,
        "s" => n * 1000.0,
        "m" => n * 60_000.0,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrk_reports_are_read() {
        let text = "Running 10s test @ http://127.0.0.1:1/write?db=bench
  2 threads and 4 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    20.13ms   10.02ms 161.10ms   87.00%
    Req/Sec    98.21     10.11   120.00     70.00%
  Latency Distribution
     50%   18.50ms
     75%   22.00ms
     90%   27.91ms
     99%  812.00us
  1964 requests in 10.01s, 190.23KB read
  Non-2xx or 3xx responses: 3
Requests/sec:    196.21
Transfer/sec:     19.00KB
";
        let w = WrkRun::parse(text).unwrap();
        assert_eq!(w.requests, 1964);
        assert_eq!(w.non_2xx, 3);
        assert!((w.requests_per_sec - 196.21).abs() < 1e-9);
        assert!((w.p50_ms - 18.5).abs() < 1e-9);
        assert!((w.p90_ms - 27.91).abs() < 1e-9);
        assert!((w.p99_ms - 0.812).abs() < 1e-9);
        assert!((millis("2.01s").unwrap() - 2010.0).abs() < 1e-9);
        assert_eq!(millis("1.00m"), Some(60_000.0));
        assert!(WrkRun::parse("garbage").is_none());
    }

    #[test]
    fn the_script_posts_the_body_gzip_encoded() {
        let s = lua_script(Path::new("/tmp/x/telegraf.gz"));
        assert!(s.contains("io.open(\"/tmp/x/telegraf.gz\", \"rb\")"), "{s}");
        assert!(s.contains("Content-Encoding\"] = \"gzip\""), "{s}");
    }
}
