//! Section (b): real influxd, directly and through the proxy (one circle of that influxd, with
//! variations that make the comparison fair), and the proxy in front of 2 x 2 influxd.
//!
//! The proxy acknowledges a write once it is queued, so its acked rate can exceed what influxd
//! absorbs; "end-to-end" divides the points by the run plus the drain afterwards.
//!
//! On a machine of several cores the plain rows let influxd, the proxy and the load tool take
//! any core; the pinned rows give influxd one core and the load tool (with the proxy) another,
//! then the other way round, so the direct and the proxied run have the same CPU for influxd.

use std::time::Instant;

use harness::influxd::Influxd;
use harness::proxy::Proxy;
use serde_json::{json, Value};

use super::load::{Load, LoadSummary};
use super::report::{f2, int, ratio};
use super::setup::{self, drain_cell};
use super::{Ctx, Error};

/// What a row measured, for the comparison under the table.
#[derive(Debug, Clone, Default)]
struct Row {
    load: LoadSummary,
    end_to_end: f64,
}

/// How a proxy row's load differs from the plain one.
#[derive(Debug, Clone, Default)]
struct Variant {
    extra: Option<Value>,
    /// `--rate`: points/s.
    rate: Option<u64>,
    /// `--points`: stop after these.
    points: Option<u64>,
    /// Run length instead of the suite's.
    seconds: Option<u64>,
    /// The CPUs of influxd and of the load tool (and the proxy).
    pinning: Option<Pinning>,
}

/// One way of pinning the row's processes to two CPUs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Pinning {
    influxd: usize,
    /// The load tool's, and the proxy's when there is one.
    load: usize,
}

/// What a pinning measured: the direct and the proxied row's end-to-end points/s.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Pinned {
    pinning: Pinning,
    direct: f64,
    proxy: f64,
}

pub(crate) fn run(ctx: &mut Ctx) -> Result<(), Error> {
    ctx.report
        .line("## (b) Real influxd: direct vs. through the proxy");
    ctx.report.blank();
    if !ctx.have_influxd {
        ctx.report
            .line("influxd is not installed (Debian package `influxdb`); skipped.");
        ctx.log("(b) skipped: no influxd");
        ctx.report.blank();
        return Ok(());
    }
    let r = &mut ctx.report;
    r.line(
        "The proxy acknowledges a write once it is in its write-ahead queue, before InfluxDB has \
         it, so \"acked points/s\" can exceed what InfluxDB absorbs. \"end-to-end points/s\" \
         divides the acknowledged points by the run time plus the time the queues took to drain \
         afterwards; \"stored\" is `SELECT COUNT(f0)` summed over all backends and measurements, \
         divided by circles. The \"pinned\" rows run influxd on one CPU and the load tool (with \
         the proxy, in the proxy rows) on another (`taskset`), then the other way round: the \
         same CPU for influxd with and without the proxy.",
    );
    r.blank();
    r.line("| setup | acked points/s | p50 ms | p99 ms | errors | proxy CPU | drain s | end-to-end points/s | stored |");
    r.line("|---|---:|---:|---:|---|---:|---:|---:|---|");

    ctx.log("(b) load tool -> influxd");
    let direct = {
        let influxd = setup::influxds(1)?;
        row(
            ctx,
            "load tool -> influxd",
            1,
            None,
            &influxd,
            &Variant::default(),
        )?
    };

    ctx.log("(b) proxy -> 1x1 influxd");
    let plain = one_by_one(ctx, "proxy -> 1 influxd", &Variant::default())?;

    ctx.log("(b) proxy -> 1x1 influxd, write_gzip false");
    let no_gzip = Variant {
        extra: Some(json!({ "write_gzip": false })),
        ..Variant::default()
    };
    let no_gzip = one_by_one(ctx, "proxy -> 1 influxd, `write_gzip: false`", &no_gzip)?;

    // The unlimited rows let the proxy accept several times what influxd takes and then drain
    // it into an ever larger database; at influxd's own rate both sides store about as much
    // data, which is what "overhead" means to an operator sizing a deployment.
    ctx.log("(b) proxy -> 1x1 influxd at the direct rate");
    let rate = direct.load.points_per_sec.round() as u64;
    let limited = Variant {
        rate: Some(rate),
        // Longer, so the last partial batch's flush_time (1 s) weighs little.
        seconds: Some(ctx.opts.seconds * 3),
        ..Variant::default()
    };
    let label = format!(
        "proxy -> 1 influxd, load limited to the direct rate ({} points/s)",
        int(rate as f64)
    );
    let limited = one_by_one(ctx, &label, &limited)?;

    // The same work both ways: the points the direct run stored, sent flat out through the
    // proxy and timed until influxd has them all.
    ctx.log("(b) proxy -> 1x1 influxd, the direct run's point count");
    let same_work = Variant {
        points: Some(direct.load.points),
        seconds: Some(ctx.opts.seconds * 6),
        ..Variant::default()
    };
    let label = format!(
        "proxy -> 1 influxd, the direct run's {} points flat out",
        int(direct.load.points as f64)
    );
    let same_work = one_by_one(ctx, &label, &same_work)?;

    ctx.log("(b) proxy -> 2x2 influxd");
    {
        let influxds = setup::influxds(4)?;
        let urls = setup::urls(influxds.iter().map(|i| i.url.as_str()));
        let proxy = setup::proxy(&ctx.proxy_bin, 2, 2, &urls, &setup::no_extra())?;
        row(
            ctx,
            "proxy -> 2x2 influxd",
            2,
            Some(&proxy),
            &influxds,
            &Variant::default(),
        )?;
    }
    let cpus = super::machine::allowed_cpus();
    let pinned = match (&cpus[..], harness::find_on_path("taskset")) {
        ([a, b, ..], Some(_)) => {
            let mut pinned = Vec::new();
            let both_ways = [
                Pinning {
                    influxd: *a,
                    load: *b,
                },
                Pinning {
                    influxd: *b,
                    load: *a,
                },
            ];
            // A quick run's flat-out proxy row drains for about 15 s: one way only.
            let ways = if ctx.opts.quick { 1 } else { 2 };
            for pinning in both_ways.into_iter().take(ways) {
                pinned.push(pinned_pair(ctx, pinning)?);
            }
            Ok(pinned)
        }
        ([_, _, ..], None) => Err("taskset (util-linux) is not installed"),
        _ => Err("this process may run on fewer than 2 CPUs"),
    };
    let x = |a: f64, b: f64| format!("x{:.2}", ratio(a, b));
    let direct_pps = direct.load.points_per_sec;
    ctx.report.blank();
    ctx.report.line(format!(
        "Proxy (one circle of that influxd) vs. influxd direct: acked points/s {}, end-to-end \
         points/s {} ({} without gzip towards influxd; {} with the load limited to the direct \
         rate; {} for the direct run's point count sent flat out, the same work both ways), p50 \
         latency {}, p99 latency {}.",
        x(plain.load.points_per_sec, direct_pps),
        x(plain.end_to_end, direct_pps),
        x(no_gzip.end_to_end, direct_pps),
        x(limited.end_to_end, direct_pps),
        x(same_work.end_to_end, direct_pps),
        x(plain.load.p50, direct.load.p50),
        x(plain.load.p99, direct.load.p99),
    ));
    ctx.report.blank();
    ctx.report.line(match pinned {
        Ok(pinned) if pinned.len() == 1 => {
            format!("{} (`--quick`: one way only.)", pinned_line(&pinned))
        }
        Ok(pinned) => pinned_line(&pinned),
        Err(why) => format!("Pinned rows skipped: {why}."),
    });
    ctx.report.blank();
    Ok(())
}

/// The direct and the proxied row of one pinning, each with a fresh influxd.
fn pinned_pair(ctx: &mut Ctx, pinning: Pinning) -> Result<Pinned, Error> {
    let Pinning { influxd, load } = pinning;
    let variant = Variant {
        pinning: Some(pinning),
        ..Variant::default()
    };
    ctx.log(format!(
        "(b) load tool -> influxd, pinned: influxd on CPU {influxd}, load on CPU {load}"
    ));
    let direct = {
        let servers = setup::influxds(1)?;
        let label = format!(
            "load tool -> influxd, pinned: influxd on CPU {influxd}, load tool on CPU {load}"
        );
        row(ctx, &label, 1, None, &servers, &variant)?
    };
    ctx.log(format!(
        "(b) proxy -> 1x1 influxd, pinned: influxd on CPU {influxd}, load + proxy on CPU {load}"
    ));
    let label = format!(
        "proxy -> 1 influxd, pinned: influxd on CPU {influxd}, load tool + proxy on CPU {load}"
    );
    let proxied = one_by_one(ctx, &label, &variant)?;
    Ok(Pinned {
        pinning,
        direct: direct.end_to_end,
        proxy: proxied.end_to_end,
    })
}

/// The comparison of the pinned rows, both ways.
fn pinned_line(pinned: &[Pinned]) -> String {
    let ways: Vec<String> = pinned
        .iter()
        .map(|p| {
            format!(
                "influxd on CPU {}, load tool (+ proxy) on CPU {}: {} points/s through the \
                 proxy vs. {} direct, x{:.2}",
                p.pinning.influxd,
                p.pinning.load,
                int(p.proxy),
                int(p.direct),
                ratio(p.proxy, p.direct)
            )
        })
        .collect();
    format!(
        "Pinned, one CPU for influxd and one for the load tool (and the proxy), end-to-end \
         points/s, proxy / direct: {}.",
        ways.join("; ")
    )
}

/// A fresh influxd behind a fresh 1 x 1 proxy.
fn one_by_one(ctx: &mut Ctx, label: &str, variant: &Variant) -> Result<Row, Error> {
    let influxd = setup::influxds(1)?;
    let extra = variant.extra.clone().unwrap_or_else(setup::no_extra);
    let proxy = setup::proxy(&ctx.proxy_bin, 1, 1, &[influxd[0].url.as_str()], &extra)?;
    row(ctx, label, 1, Some(&proxy), &influxd, variant)
}

/// Runs the load against the proxy (or, without one, the single influxd) and writes the row.
fn row(
    ctx: &mut Ctx,
    label: &str,
    circles: u64,
    proxy: Option<&Proxy>,
    influxds: &[Influxd],
    variant: &Variant,
) -> Result<Row, Error> {
    let target = proxy.map_or(influxds[0].url.as_str(), |p| p.url.as_str());
    let pid = proxy.and_then(Proxy::pid);
    let mut load = Load::new(ctx, target, "bench").switches(&["--create-db"]);
    if let Some(rate) = variant.rate {
        load = load.flag("--rate", rate);
    }
    if let Some(points) = variant.points {
        load = load.flag("--points", points);
    }
    if let Some(seconds) = variant.seconds {
        load = load.seconds(seconds);
    }
    if let Some(p) = variant.pinning {
        setup::pin(influxds[0].pid(), p.influxd)?;
        if proxy.is_some() {
            setup::pin(pid, p.load)?;
        }
        load = load.pinned(p.load);
    }
    let cpu0 = setup::cpu_seconds(pid);
    let t0 = Instant::now();
    let s = load.run()?;
    let elapsed = t0.elapsed().as_secs_f64();
    let (cores, drain) = match proxy {
        Some(proxy) => {
            let cores = (setup::cpu_seconds(pid) - cpu0) / elapsed;
            (f2(cores), setup::wait_drain(proxy))
        }
        None => ("-".to_owned(), Some(0.0)),
    };
    // A drain that timed out counts 0 s, as the figure always did.
    let end_to_end = s.points as f64 / (elapsed + drain.unwrap_or(0.0));
    let stored = influxds
        .iter()
        .map(|i| setup::stored_points(&i.url, "bench", "f0"))
        .sum::<u64>()
        / circles;
    let drain = if proxy.is_some() {
        drain_cell(drain)
    } else {
        "-".to_owned()
    };
    let stored = if stored == s.points {
        format!("ok ({stored})")
    } else {
        format!("MISMATCH {stored} of {}", s.points)
    };
    ctx.report.row(&[
        label,
        &int(s.points_per_sec),
        &f2(s.p50),
        &f2(s.p99),
        &s.errors_cell(),
        &cores,
        &drain,
        &int(end_to_end),
        &stored,
    ]);
    Ok(Row {
        end_to_end: end_to_end.round(),
        load: s,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pinned_line_compares_both_ways() {
        let pinned = [
            Pinned {
                pinning: Pinning {
                    influxd: 0,
                    load: 1,
                },
                direct: 400_000.0,
                proxy: 412_000.0,
            },
            Pinned {
                pinning: Pinning {
                    influxd: 1,
                    load: 0,
                },
                direct: 500_000.0,
                proxy: 450_000.0,
            },
        ];
        assert_eq!(
            pinned_line(&pinned),
            "Pinned, one CPU for influxd and one for the load tool (and the proxy), end-to-end \
             points/s, proxy / direct: influxd on CPU 0, load tool (+ proxy) on CPU 1: 412,000 \
             points/s through the proxy vs. 400,000 direct, x1.03; influxd on CPU 1, load tool \
             (+ proxy) on CPU 0: 450,000 points/s through the proxy vs. 500,000 direct, x0.90."
        );
    }
}
