//! Section (h): anti-entropy against `/resync` on the same divergence. `--ae-points` points
//! (10 measurements x 20 series, spread over 48 hours of an old week) are written through
//! influx-proxy into 2 circles of 2 real influxd; then one circle loses about 0.5% of them (a
//! `DELETE` of about an hour of 3 measurements on their owners in circle 2). Timed: a
//! comparison of the unchanged data set (and the influxd CPU it costs), the comparison that
//! finds the loss, the repair (until every copy is delivered), and `/resync` of the same loss
//! (made again) until delivered; with the points each moved and the influxd CPU each cost.

use std::time::{Duration, Instant};

use harness::http;
use serde_json::{json, Value};

use super::report::{f1, f2, int};
use super::setup;
use super::{Ctx, Error};

const DB: &str = "aebench";
const MEASUREMENTS: u64 = 10;
const SERIES: u64 = 20;
const HOURS: i64 = 48;
/// 2020-09-14 00:00 UTC: the data sit in one or two shards of the default policy.
const T0: i64 = 1_600_041_600;
const NS: i64 = 1_000_000_000;
/// Lines per write request while loading.
const BODY_LINES: u64 = 10_000;
const LOST_MEASUREMENTS: u64 = 3;

/// One timed step.
struct Step {
    what: &'static str,
    seconds: f64,
    points: u64,
    influxd_cpu: f64,
    note: String,
}

pub(crate) fn run(ctx: &mut Ctx) -> Result<(), Error> {
    let points = ctx.opts.ae_points;
    ctx.log(format!(
        "(h) anti-entropy vs. resync, {} points",
        int(points as f64)
    ));
    let r = &mut ctx.report;
    r.line("## (h) Anti-entropy vs. `/resync` on the same divergence");
    r.blank();
    if !ctx.have_influxd {
        r.line("Skipped: influxd is not installed.");
        r.blank();
        return Ok(());
    }
    let influxds = setup::influxds(4)?;
    let urls = setup::urls(influxds.iter().map(|i| i.url.as_str()));
    let proxy = setup::proxy(
        &ctx.proxy_bin,
        2,
        2,
        &urls,
        &json!({"anti_entropy_rate": 0, "migrate_cpus": ctx.opts.migrate.cpus}),
    )?;
    let cpu = || -> f64 { influxds.iter().map(|i| setup::cpu_seconds(i.pid())).sum() };
    load(&proxy.url, points)?;
    let timeout = Duration::from_secs(ctx.opts.migrate.timeout);
    setup::wait_drain(&proxy);
    let mut steps = Vec::new();

    let (before, t, report) = timed(&cpu, || compare(&proxy.url, ""));
    steps.push(Step {
        what: "compare, unchanged data set",
        seconds: t,
        points: 0,
        influxd_cpu: before,
        note: format!(
            "{} digest queries, {} differing buckets",
            report["queries"], report["differing"]
        ),
    });
    let (c, t, report) = timed(&cpu, || compare(&proxy.url, "&deep=true"));
    steps.push(Step {
        what: "compare `deep=true`, unchanged data set",
        seconds: t,
        points: 0,
        influxd_cpu: c,
        note: format!(
            "{} digest queries (count and sum of every field), {} differing buckets",
            report["queries"], report["differing"]
        ),
    });
    let lost = diverge(&proxy.url, &influxds);
    let (c, t, report) = timed(&cpu, || compare(&proxy.url, ""));
    steps.push(Step {
        what: "compare, circle 2 lacking points",
        seconds: t,
        points: 0,
        influxd_cpu: c,
        note: format!(
            "{} differing buckets, {} points missing by the counts ({} deleted)",
            report["differing"],
            int(report["missing"].as_f64().unwrap_or(0.0)),
            int(lost as f64)
        ),
    });
    let (c, t, done) = timed(&cpu, || {
        let resp = http::post(
            &format!("{}/anti-entropy/repair?db={DB}", proxy.url),
            b"",
            &[],
        );
        let finished = http::wait_until(timeout, || {
            stats(&proxy.url, "type=repair")["phase"] == "done"
        });
        setup::wait_drain(&proxy);
        let s = stats(&proxy.url, "type=repair");
        (resp.status == 202 && finished).then_some(s)
    });
    let equal = circles_equal(&proxy.url, &influxds);
    steps.push(Step {
        what: "repair (`POST /anti-entropy/repair`), until delivered",
        seconds: t,
        points: done
            .as_ref()
            .map_or(0, |s| s["points"].as_u64().unwrap_or(0)),
        influxd_cpu: c,
        note: format!(
            "{} buckets; circles equal afterwards: {equal}",
            done.as_ref()
                .map_or(Value::Null, |s| s["buckets_done"].clone())
        ),
    });
    diverge(&proxy.url, &influxds);
    let (c, t, moved) = timed(&cpu, || {
        let resp = http::post(&format!("{}/resync", proxy.url), b"", &[]);
        let finished = http::wait_until(timeout, || {
            http::get(&format!("{}/migrate/state", proxy.url)).json()["is_resyncing"] == false
        });
        setup::wait_drain(&proxy);
        let moved: u64 = (0..2)
            .map(|c| {
                let s = stats(&proxy.url, &format!("circle_id={c}&type=resync"));
                s.as_object()
                    .into_iter()
                    .flatten()
                    .filter_map(|(_, v)| v["points"].as_u64())
                    .sum::<u64>()
            })
            .sum();
        (resp.status == 202 && finished).then_some(moved)
    });
    let equal = circles_equal(&proxy.url, &influxds);
    steps.push(Step {
        what: "`POST /resync`, until delivered",
        seconds: t,
        points: moved.unwrap_or(0),
        influxd_cpu: c,
        note: format!("circles equal afterwards: {equal}"),
    });

    let r = &mut ctx.report;
    r.line(format!(
        "{} points ({MEASUREMENTS} measurements x {SERIES} series, 3 fields, over {HOURS} hours) \
         written through influx-proxy into 2 circles x 2 influxd; then circle 2 loses about 0.5% \
         of them: a `DELETE` of the same hour-long range of {LOST_MEASUREMENTS} measurements on \
         their owners. The repair runs unpaced (`anti_entropy_rate: 0`). \"influxd CPU\" is the \
         user+system CPU of the 4 influxd during the step.",
        int(points as f64)
    ));
    r.blank();
    r.line("| step | seconds | points moved | influxd CPU s | |");
    r.line("|---|---:|---:|---:|---|");
    for s in &steps {
        r.row(&[
            s.what,
            &f2(s.seconds),
            &int(s.points as f64),
            &f1(s.influxd_cpu),
            &s.note,
        ]);
    }
    r.blank();
    if let [unchanged, _, _, repair, resync] = &steps[..] {
        r.line(format!(
            "Against `/resync` on the same loss: the repair took {:.1}% of its time and moved \
             {:.2}x the points deleted; the compare of the unchanged data set cost influxd \
             {:.1}% of its CPU.",
            100.0 * repair.seconds / resync.seconds.max(f64::EPSILON),
            repair.points as f64 / lost.max(1) as f64,
            100.0 * unchanged.influxd_cpu / resync.influxd_cpu.max(f64::EPSILON),
        ));
        r.blank();
    }
    Ok(())
}

/// Runs `f`; the influxd CPU seconds and wall seconds it took, and its result.
fn timed<T>(cpu: &impl Fn() -> f64, f: impl FnOnce() -> T) -> (f64, f64, T) {
    let (c0, t0) = (cpu(), Instant::now());
    let out = f();
    (cpu() - c0, t0.elapsed().as_secs_f64(), out)
}

/// Writes the data set through the proxy, in bodies of [`BODY_LINES`].
fn load(url: &str, points: u64) -> Result<(), Error> {
    let q = format!("CREATE DATABASE {DB}");
    http::query_post(url, &[("q", &q)]);
    let per_series = (points / (MEASUREMENTS * SERIES)).max(1);
    let step_ns = HOURS * 3_600 * NS / per_series as i64;
    let mut body = String::new();
    let mut lines = 0;
    for i in 0..per_series {
        for m in 0..MEASUREMENTS {
            for s in 0..SERIES {
                let t = T0 * NS + i as i64 * step_ns;
                body.push_str(&format!(
                    "m{m},host=h{s},dc=d{} f={i}.25,n={}i,ok=true {t}\n",
                    s % 3,
                    i + s
                ));
                lines += 1;
                if lines == BODY_LINES {
                    send(url, &mut body)?;
                    lines = 0;
                }
            }
        }
    }
    if lines > 0 {
        send(url, &mut body)?;
    }
    Ok(())
}

fn send(url: &str, body: &mut String) -> Result<(), Error> {
    loop {
        let resp = http::write(url, DB, body.as_bytes());
        match resp.status {
            204 => break,
            // A full queue: the backends catch up.
            503 => std::thread::sleep(Duration::from_millis(200)),
            status => {
                return Err(Error::Failed(format!(
                    "(h) loading: {status} {}",
                    resp.body
                )))
            }
        }
    }
    body.clear();
    Ok(())
}

/// The owner influxd URL of `mm` in each circle.
fn owners(url: &str, mm: &str) -> Vec<String> {
    http::get(&format!("{url}/replica?db={DB}&meas={mm}"))
        .json()
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["url"].as_str().map(str::to_owned))
        .collect()
}

/// Deletes about 0.5% of the points from circle 2 (an hour-long range of
/// [`LOST_MEASUREMENTS`] measurements); the points deleted.
fn diverge(url: &str, influxds: &[harness::influxd::Influxd]) -> u64 {
    // 0.5% of the points over 3 of 10 measurements: 1/60 of each one's time span.
    let span = HOURS * 3_600;
    let from = T0 + span / 2;
    let to = from + span / 60;
    let mut lost = 0;
    for m in 0..LOST_MEASUREMENTS {
        let mm = format!("m{m}");
        let Some(owner) = owners(url, &mm).get(1).cloned() else {
            continue;
        };
        let Some(server) = influxds.iter().find(|i| i.url == owner) else {
            continue;
        };
        let before = server.count(DB, &mm);
        server.exec(
            DB,
            &format!("DELETE FROM {mm} WHERE time >= {from}s AND time < {to}s"),
        );
        lost += before.saturating_sub(server.count(DB, &mm));
    }
    lost
}

/// Whether every measurement has as many points on its owner in both circles.
fn circles_equal(url: &str, influxds: &[harness::influxd::Influxd]) -> bool {
    (0..MEASUREMENTS).all(|m| {
        let mm = format!("m{m}");
        let counts: Vec<u64> = owners(url, &mm)
            .iter()
            .filter_map(|o| influxds.iter().find(|i| &i.url == o))
            .map(|i| i.count(DB, &mm))
            .collect();
        counts.len() == 2 && counts[0] == counts[1]
    })
}

/// `GET /anti-entropy/compare` of the bench's database, `extra` appended to its query.
fn compare(url: &str, extra: &str) -> Value {
    http::request_within(
        "GET",
        &format!("{url}/anti-entropy/compare?db={DB}{extra}"),
        None,
        &[],
        Duration::from_secs(3_600),
    )
    .ok()
    .map_or(Value::Null, |r| r.json())
}

fn stats(url: &str, query: &str) -> Value {
    http::get(&format!("{url}/migrate/stats?{query}")).json()
}
