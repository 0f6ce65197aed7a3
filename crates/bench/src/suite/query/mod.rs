//! Section (f): the latency a query gains through the proxy.
//!
//! One data set (`write --shape telegraf`) is written twice at the same time: through
//! influx-proxy into 2 circles x 2 influxd, and straight into one influxd. Each query is first
//! asked once of the single influxd, of influx-proxy and of the Go proxy 2.5.12 (same
//! `proxy.json`, same backends) and the answers compared ([`compare`]); then it is timed over
//! one keep-alive connection against each of the three, one after the other ([`timer`]).

mod compare;
mod timer;

use std::fs;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use harness::proxy::Proxy;

use super::load::Load;
use super::report::{cell, f1, f2, int, rfc3339, round2};
use super::setup;
use super::{machine, Ctx, Error};
use timer::{Endpoint, Timing};

/// The queries: how influx-proxy runs each, and the statement (`@RANGE@` is the time range,
/// `@FROM@` the four measurements, `@REGEX@` them as a regex, `@HOSTS@` the host count).
const QUERIES: [(&str, &str); 8] = [
    (
        "fan-out to both backends of one circle, merged",
        "SHOW MEASUREMENTS",
    ),
    (
        "fan-out to both backends of one circle, merged",
        "SHOW TAG VALUES WITH KEY = \"host\"",
    ),
    (
        "fan-out to both backends of one circle, merged",
        "SHOW SERIES",
    ),
    (
        "fan-out to both backends of one circle, counts merged",
        "SHOW MEASUREMENT EXACT CARDINALITY",
    ),
    (
        "one measurement: relayed from its owner (baseline)",
        "SELECT mean(usage) FROM cpu WHERE @RANGE@ GROUP BY time(1m)",
    ),
    (
        "4 measurements on 2 backends: FROM split, answers merged",
        "SELECT mean(usage) FROM @FROM@ WHERE @RANGE@ GROUP BY time(1m)",
    ),
    (
        "regex: resolved (SHOW MEASUREMENTS on both backends), split, merged",
        "SELECT mean(usage) FROM /^(@REGEX@)$/ WHERE @RANGE@ GROUP BY time(1m)",
    ),
    (
        "4 measurements x @HOSTS@ hosts on 2 backends: split, merged",
        "SELECT mean(usage) FROM @FROM@ WHERE @RANGE@ GROUP BY time(1m), host",
    ),
];

/// The three targets of every query.
struct Targets {
    direct: Endpoint,
    ours: Endpoint,
    /// The Go proxy, or why it is not there.
    go: Result<Endpoint, String>,
}

/// Counts of verdicts, for the sentence under the table.
#[derive(Debug, Default)]
struct Tally {
    queries: usize,
    same_ours: usize,
    same_go: usize,
    refused_go: usize,
    wrong_go: usize,
}

pub(crate) fn run(ctx: &mut Ctx) -> Result<(), Error> {
    ctx.report.line(
        "## (f) Query latency: fan-out SHOW and merged SELECT, direct vs. influx-proxy vs. the Go proxy",
    );
    ctx.report.blank();
    if !ctx.have_influxd {
        ctx.report
            .line("influxd is not installed (Debian package `influxdb`); skipped.");
        ctx.report.blank();
        ctx.log("(f) skipped: no influxd");
        return Ok(());
    }
    let q = ctx.opts.query.clone();
    let series = 20 * q.hosts;
    let points = series * q.minutes;
    ctx.log(format!(
        "(f) query latency: 2x2 influxd behind the proxies vs. one influxd, {} points",
        int(points as f64)
    ));
    let mut influxds = setup::influxds(5)?;
    let single = influxds
        .pop()
        .ok_or_else(|| harness::Error::Launch("no influxd started".to_owned()))?;
    let urls = setup::urls(influxds.iter().map(|i| i.url.as_str()));
    let ours = setup::proxy(&ctx.proxy_bin, 2, 2, &urls, &setup::no_extra())?;

    // Both loads start in the same minute (the load tool's base timestamp, precision m), so
    // both sides hold the same points.
    let second = unix_now() % 60;
    if second >= 50 {
        thread::sleep(Duration::from_secs(61 - second));
    }
    let load = |url: &str| {
        Load::new(ctx, url, "bench")
            .flag("--shape", "telegraf")
            .flag("--tag-cardinality", q.hosts)
            .flag("--concurrency", 2)
            .flag("--batch", series)
            .flag("--points", points)
            .seconds(600)
            .flag("--precision", "m")
            .switches(&["--create-db"])
    };
    let t_load = Instant::now();
    let direct_load = load(&single.url).spawn()?;
    let proxy_load = load(&ours.url).spawn()?;
    direct_load.wait()?;
    proxy_load.wait()?;
    let drain = setup::wait_drain(&ours);
    let load_secs = t_load.elapsed().as_secs_f64();
    let stored_direct = setup::stored_points(&single.url, "bench", "usage");
    let stored_2x2: u64 = influxds
        .iter()
        .map(|i| setup::stored_points(&i.url, "bench", "usage"))
        .sum();

    // Where the measurements live: two from each backend of a circle make the FROM list (both
    // circles place them alike).
    let on1 = measurements(&influxds[0].url);
    let on2 = measurements(&influxds[1].url);
    let mut from_list: Vec<&str> = on1
        .iter()
        .take(2)
        .chain(on2.iter().take(2))
        .map(String::as_str)
        .collect();
    if from_list.len() < 4 {
        from_list = vec!["cpu", "mem", "disk", "diskio"];
    }
    let regex = from_list.join("|");
    let from = from_list.join(", ");

    // The time range of the data, from the data: its first minute on the single influxd,
    // checked against the proxy's. What a dashboard asks: the last hour (here the first hour
    // of the data), by minute.
    let t0_proxy = first_minute(&ours.url);
    let t0 = first_minute(&single.url).unwrap_or(unix_now() / 60 * 60);
    let span = q.minutes.min(60);
    let t0_signed = i64::try_from(t0).unwrap_or(0);
    let range = format!(
        "time >= '{}' AND time < '{}'",
        rfc3339(t0_signed),
        rfc3339(t0_signed + i64::try_from(span * 60).unwrap_or(0))
    );

    let (go, go_proxy) = start_go(ctx, &urls);
    let targets = Targets {
        direct: endpoint(&single.url)?,
        ours: endpoint(&ours.url)?,
        go,
    };

    let (hosts, minutes, secs) = (q.hosts, q.minutes, q.seconds);
    let stored = if stored_direct == points && stored_2x2 == points * 2 {
        "ok, 2 copies".to_owned()
    } else {
        format!("MISMATCH: expected {points} and {}", points * 2)
    };
    let warning = if t0_proxy == Some(t0) {
        String::new()
    } else {
        format!(
            " WARNING: the first timestamp differs (direct {t0}, proxy {}): the loads started in \
             different minutes, SELECT answers cannot match.",
            t0_proxy.map_or_else(|| "none".to_owned(), |t| t.to_string())
        )
    };
    ctx.report.line(format!(
        "Data: `influx-proxy-bench write --shape telegraf --tag-cardinality {hosts} --precision \
         m`: 20 measurements x {hosts} hosts ({} series), one point per series and minute for \
         {minutes} minutes ({} points; the load tool starts its timestamps at the current minute, \
         so the data lies ahead of now and every SELECT names its range, `<range>` below: the \
         first {span} minutes, {span} points per series, as a dashboard's last hour by minute). \
         Written at the same time through influx-proxy into 2 circles x 2 influxd and straight \
         into one influxd (2 connections each, one request per minute of data): {} s until both \
         were stored (the proxy's queues were empty {} s after both load tools had finished). \
         Stored: {} points in the single influxd, {} over the 4 behind the proxy \
         ({stored}).{warning}",
        int(series as f64),
        int(points as f64),
        f1(load_secs),
        setup::drain_cell(drain),
        int(stored_direct as f64),
        int(stored_2x2 as f64),
    ));
    ctx.report.blank();
    ctx.report.line(format!(
        "Placement (the same in both circles): backend-x-1 holds {} ({}); backend-x-2 holds {} \
         ({}). The multi-measurement SELECTs read `{from}`: two measurements from each backend, \
         so influx-proxy splits the FROM clause over both backends of a circle and merges the \
         answers.",
        on1.join(", "),
        on1.len(),
        on2.join(", "),
        on2.len(),
    ));
    ctx.report.blank();
    ctx.report.line(format!(
        "Each query: `GET /query?db=bench&q=...` (no `epoch`, not chunked), asked once of each \
         target and compared with the single influxd's answer (\"identical\": same bytes; \
         \"same\": same JSON values; \"same after sorting\": same series and rows in another \
         order), then timed by `influx-proxy-bench` as `wrk -t1 -c1 -d{secs}s --latency` did: one \
         keep-alive connection, one request at a time, {secs} s per query and target, direct, \
         influx-proxy and the Go proxy one after the other. p50/p99 in ms, by wrk's rank over \
         every request's latency (µs); \"req/s\" is requests per second over that one \
         connection; \"added\" = through the proxy minus direct. Both proxies run side by side \
         in front of the same 4 influxd (the one not being timed is idle). Load average when the \
         timing started: {}.",
        machine::load_average()
    ));
    ctx.report.blank();
    ctx.report.line("| query | how influx-proxy runs it | answer: influx-proxy / Go | direct p50 / p99 ms | direct req/s | influx-proxy p50 / p99 ms | req/s | added p50 / p99 ms | Go 2.5.12 p50 / p99 ms | req/s | added p50 / p99 ms |");
    ctx.report
        .line("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|");

    let answers = ctx.work.join("qf-answers");
    fs::create_dir_all(&answers).map_err(Error::io(format!("create {}", answers.display())))?;
    let mut tally = Tally::default();
    let hosts = hosts.to_string();
    for (how, template) in QUERIES {
        let fill = |t: &str| {
            t.replace("@FROM@", &from)
                .replace("@REGEX@", &regex)
                .replace("@HOSTS@", &hosts)
        };
        let statement = fill(template).replace("@RANGE@", &range);
        let shown = cell(&fill(template).replace("@RANGE@", "<range>"));
        tally.queries += 1;
        let n = tally.queries;
        ctx.log(format!("(f) {statement}"));
        let row = one_query(ctx, &targets, &mut tally, &statement, n)?;
        ctx.report
            .line(format!("| `{shown}` | {} | {row} |", fill(how)));
    }
    ctx.report.blank();
    let go_counts = if targets.go.is_ok() {
        format!(
            "; the Go proxy {}, refused {}, answered {} differently (its figures for those time a \
             partial answer, the measurements of the one backend its shard key of the first FROM \
             token, e.g. `cpu,`, hashes to, not the query)",
            tally.same_go, tally.refused_go, tally.wrong_go
        )
    } else {
        String::new()
    };
    ctx.report.line(format!(
        "Answers as the single influxd gave them: influx-proxy {} of {} queries{go_counts}. \
         \"DIFFERENT in the last digits\": the same series and rows, some floats a rounding step \
         off.",
        tally.same_ours, tally.queries
    ));
    ctx.report.blank();
    ctx.report.line(format!(
        "Load average at the end of the section: {}.",
        machine::load_average()
    ));
    ctx.report.blank();
    drop(go_proxy);
    Ok(())
}

/// Asks one query of each target, compares the answers, times it; the row's cells after the
/// first two.
fn one_query(
    ctx: &Ctx,
    targets: &Targets,
    tally: &mut Tally,
    statement: &str,
    n: usize,
) -> Result<String, Error> {
    let path = format!("/query?db=bench&q={}", harness::http::urlencode(statement));
    let save = |who: &str, body: &[u8]| {
        let file = ctx.work.join("qf-answers").join(format!("{n}-{who}.json"));
        fs::write(&file, body).map_err(Error::io(format!("write {}", file.display())))
    };
    let (status_direct, direct) = targets.direct.fetch(&path);
    save("direct", &direct)?;
    let (status_ours, ours) = targets.ours.fetch(&path);
    save("ours", &ours)?;
    if status_direct != 200 || compare::refusal(&direct).is_some() {
        let head = String::from_utf8_lossy(&direct[..direct.len().min(200)]).into_owned();
        return Ok(format!(
            "influxd answered HTTP {}: {head} | | | | | | | |",
            status_text(status_direct)
        ));
    }
    let verdict_ours = if status_ours == 200 {
        compare::verdict(&direct, &ours)
    } else {
        format!(
            "HTTP {}: {}",
            status_text(status_ours),
            compare::refusal(&ours).unwrap_or_default()
        )
    };
    if compare::is_same(&verdict_ours) {
        tally.same_ours += 1;
    } else {
        ctx.log(format!(
            "(f) influx-proxy answers differently: {statement}: {verdict_ours}"
        ));
    }
    let (verdict_go, mut cells_go) = match &targets.go {
        Ok(go) => {
            let (status, answer) = go.fetch(&path);
            save("go", &answer)?;
            match compare::refusal(&answer) {
                error if status != 200 || error.is_some() => {
                    let why = error.unwrap_or_else(|| {
                        String::from_utf8_lossy(&answer[..answer.len().min(120)]).into_owned()
                    });
                    tally.refused_go += 1;
                    (
                        format!("unsupported (HTTP {}: {why})", status_text(status)),
                        Some("unsupported | | ".to_owned()),
                    )
                }
                _ => {
                    let v = compare::verdict(&direct, &answer);
                    if compare::is_same(&v) {
                        tally.same_go += 1;
                    } else {
                        tally.wrong_go += 1;
                    }
                    (v, None)
                }
            }
        }
        Err(note) => (format!("not run: {note}"), Some("- | - | - ".to_owned())),
    };
    let verdicts = format!("{} / {}", cell(&verdict_ours), cell(&verdict_go));
    let duration = Duration::from_secs(ctx.opts.query.seconds);
    let d = targets.direct.time(&path, duration);
    if !d.answered() {
        return Ok(format!(
            "{verdicts} | timing failed (no answer) | | | | | | |"
        ));
    }
    let (d50, d99) = (round2(d.percentile_ms(50.0)), round2(d.percentile_ms(99.0)));
    let cells_ours = timed_cells(&targets.ours.time(&path, duration), d50, d99);
    if cells_go.is_none() {
        if let Ok(go) = &targets.go {
            cells_go = Some(timed_cells(&go.time(&path, duration), d50, d99));
        }
    }
    Ok(format!(
        "{verdicts} | {} / {} | {} | {cells_ours} | {}",
        f2(d50),
        f2(d99),
        per_sec(&d),
        cells_go.unwrap_or_default()
    ))
}

/// `p50 / p99 | req/s | added p50 / p99` of a proxy's timing against the direct p50 and p99.
fn timed_cells(t: &Timing, direct_p50: f64, direct_p99: f64) -> String {
    if !t.answered() {
        return "timing failed | | ".to_owned();
    }
    let (p50, p99) = (round2(t.percentile_ms(50.0)), round2(t.percentile_ms(99.0)));
    format!(
        "{} / {} | {} | {} / {}",
        f2(p50),
        f2(p99),
        per_sec(t),
        f2(p50 - direct_p50),
        f2(p99 - direct_p99)
    )
}

/// Requests per second, with the failed ones when there were any.
fn per_sec(t: &Timing) -> String {
    if t.errors == 0 {
        f1(t.per_sec())
    } else {
        format!("{} ({} errors)", f1(t.per_sec()), t.errors)
    }
}

/// The status as curl printed it: `000` when no answer came.
fn status_text(status: u16) -> String {
    format!("{status:03}")
}

fn endpoint(url: &str) -> Result<Endpoint, Error> {
    Endpoint::parse(url).map_err(|message| {
        Error::from(harness::Error::Request {
            url: url.to_owned(),
            message,
        })
    })
}

/// Starts the Go proxy in front of the same backends: its endpoint (or why there is none) and
/// the running proxy, stopped when dropped.
fn start_go(ctx: &Ctx, urls: &[&str]) -> (Result<Endpoint, String>, Option<Proxy>) {
    let bin = &ctx.opts.go_proxy;
    if !setup::is_executable(bin) {
        return (
            Err(format!(
                "the Go proxy is not at `{}` (set GO_PROXY)",
                bin.display()
            )),
            None,
        );
    }
    match setup::proxy(bin, 2, 2, urls, &setup::no_extra()) {
        Ok(proxy) => match Endpoint::parse(&proxy.url) {
            Ok(endpoint) => (Ok(endpoint), Some(proxy)),
            Err(e) => (Err(e), Some(proxy)),
        },
        Err(error) => {
            eprintln!("{error}");
            (Err("the Go proxy did not start".to_owned()), None)
        }
    }
}

/// The measurements of database `bench` at `url`, sorted.
fn measurements(url: &str) -> Vec<String> {
    let answer = setup::query(url, "bench", "SHOW MEASUREMENTS", "");
    let mut names: Vec<String> = setup::series(&answer)
        .into_iter()
        .flat_map(|(_, rows)| {
            rows.iter()
                .filter_map(|r| r.get(0)?.as_str().map(str::to_owned))
        })
        .collect();
    names.sort();
    names
}

/// The first minute of the data at `url` (epoch seconds of `SELECT first(count) FROM cpu`).
fn first_minute(url: &str) -> Option<u64> {
    let answer = setup::query(url, "bench", "SELECT first(count) FROM cpu", "&epoch=s");
    setup::series(&answer).first()?.1.first()?.get(0)?.as_u64()
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_is_shown_as_curl_did() {
        assert_eq!(status_text(0), "000");
        assert_eq!(status_text(400), "400");
    }

    #[test]
    fn proxy_cells_add_to_the_direct_figures() {
        assert_eq!(
            timed_cells(&Timing::default(), 1.0, 2.0),
            "timing failed | | "
        );
    }

    #[test]
    fn the_queries_name_their_placeholders() {
        for (how, q) in QUERIES {
            assert!(!how.contains('|') && !q.contains('|'), "{q}");
        }
        assert!(
            QUERIES
                .iter()
                .filter(|(_, q)| q.contains("@RANGE@"))
                .count()
                == 4
        );
    }
}
