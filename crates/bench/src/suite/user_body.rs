//! Section (a): the body users send (Telegraf-like), influx-proxy vs. the Go proxy 2.5.12, both
//! in front of 2 circles x 2 null sinks, the same load one after the other; then ours again with
//! a larger memory budget.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::json;

use super::load::{body_name, Load};
use super::report::{f2, int, ratio};
use super::setup::{self, drain_cell};
use super::{Ctx, Error};

/// Which proxy a row measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Who {
    Ours,
    Go,
    /// Ours with `memory_budget_mb` 256.
    Ours256,
}

impl Who {
    fn label(self) -> &'static str {
        match self {
            Who::Ours => "influx-proxy",
            Who::Go => "Go proxy 2.5.12",
            Who::Ours256 => "influx-proxy, `memory_budget_mb` 256",
        }
    }
}

/// What the ratios under the table compare.
#[derive(Debug, Clone, Copy)]
struct Figures {
    points_per_sec: f64,
    cpu_us_per_point: f64,
    peak_rss_mib: u64,
}

pub(crate) fn run(ctx: &mut Ctx) -> Result<(), Error> {
    let go = ctx.opts.go_proxy.clone();
    let batch = ctx.opts.batch;
    let r = &mut ctx.report;
    r.line("## (a) The body users send: influx-proxy vs. the Go proxy 2.5.12, 2 circles x 2 null sinks");
    r.blank();
    r.line(format!(
        "Body: `influx-proxy-bench write --shape telegraf`, what a fleet of Telegraf agents sends: \
         {batch} lines per request over 20 measurements (`cpu`, `mem`, `disk`, ...) x 250 hosts, \
         tags `dc`, `host`, `region`, a full-precision float and an integer field; every request \
         reaches every backend. Same load, same sinks, same `proxy.json`, one after the other. \
         \"CPU µs/point\" is the proxy's CPU time from the start of the load until the sinks hold \
         every point (delivery included) per acknowledged point; \"peak RSS\" is the process's \
         VmHWM. influx-proxy runs with its default memory budget (`memory_budget_mb` 96) and, \
         last, with 256 MiB, which buys CPU (larger memtables: less of the queue reaches disk)."
    ));
    r.blank();
    r.line("| proxy | body | points/s | p50 ms | p99 ms | errors | CPU µs/point | peak RSS MB | drain s | delivered |");
    r.line("|---|---|---:|---:|---:|---|---:|---:|---:|---|");
    let mut figures = BTreeMap::new();
    for who in [Who::Ours, Who::Go, Who::Ours256] {
        if who == Who::Go && !setup::is_executable(&go) {
            ctx.report.line(format!(
                "| Go proxy 2.5.12 | - | not found at `{}` (set GO_PROXY) | | | | | | | |",
                go.display()
            ));
            continue;
        }
        for gzip in [false, true] {
            let f = one_run(ctx, who, gzip, &go)?;
            figures.insert((who, gzip), f);
        }
    }
    ctx.report.blank();
    if figures.contains_key(&(Who::Go, true)) {
        for gzip in [false, true] {
            if let (Some(ours), Some(go)) = (
                figures.get(&(Who::Ours, gzip)),
                figures.get(&(Who::Go, gzip)),
            ) {
                ctx.report.line(format!(
                    "- {} bodies, influx-proxy / Go proxy: points/s x{:.1}, CPU per point x{:.1}, peak RSS x{:.1}.",
                    body_name(gzip),
                    ratio(ours.points_per_sec, go.points_per_sec),
                    ratio(ours.cpu_us_per_point, go.cpu_us_per_point),
                    ratio(ours.peak_rss_mib as f64, go.peak_rss_mib as f64),
                ));
            }
        }
        ctx.report.blank();
    }
    Ok(())
}

/// One row: fresh sinks and proxy, the load, then until the sinks hold every point.
fn one_run(ctx: &mut Ctx, who: Who, gzip: bool, go: &Path) -> Result<Figures, Error> {
    let body = body_name(gzip);
    ctx.log(format!(
        "(a) {} proxy -> 2x2 sinks, telegraf body, {body}",
        match who {
            Who::Ours => "ours",
            Who::Go => "go",
            Who::Ours256 => "ours256",
        }
    ));
    let sinks = setup::sinks(ctx, 4)?;
    let urls = setup::urls(sinks.iter().map(|s| s.url.as_str()));
    let (bin, extra) = match who {
        Who::Ours => (ctx.proxy_bin.clone(), setup::no_extra()),
        Who::Go => (go.to_path_buf(), setup::no_extra()),
        Who::Ours256 => (ctx.proxy_bin.clone(), json!({ "memory_budget_mb": 256 })),
    };
    let proxy = setup::proxy(&bin, 2, 2, &urls, &extra)?;
    let cpu0 = setup::cpu_seconds(proxy.pid());
    let mut load = Load::new(ctx, &proxy.url, "bench").flag("--shape", "telegraf");
    if gzip {
        load = load.gzip(ctx.opts.pool_mb);
    }
    let s = load.run()?;
    let want = s.points * 2;
    let drain = setup::wait_sinks(&sinks, want);
    let cpu1 = setup::cpu_seconds(proxy.pid());
    let (_, peak_rss) = setup::rss_mib(proxy.pid());
    let got = setup::sink_points(&sinks);
    let per_point = if s.points > 0 {
        (cpu1 - cpu0) * 1e6 / s.points as f64
    } else {
        0.0
    };
    ctx.report.row(&[
        who.label(),
        body,
        &int(s.points_per_sec),
        &f2(s.p50),
        &f2(s.p99),
        &s.errors_cell(),
        &f2(per_point),
        &peak_rss.to_string(),
        &drain_cell(drain),
        &delivered(got, want),
    ]);
    Ok(Figures {
        points_per_sec: s.points_per_sec,
        // The ratio is of the cells as shown.
        cpu_us_per_point: f2(per_point).parse().unwrap_or(0.0),
        peak_rss_mib: peak_rss,
    })
}

/// The "delivered" cell: `ok (n)` when the sinks hold exactly what was expected.
pub(crate) fn delivered(got: u64, want: u64) -> String {
    if got == want {
        format!("ok ({got})")
    } else {
        format!("MISMATCH {got} of {want}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivered_says_ok_only_for_the_exact_count() {
        assert_eq!(delivered(10, 10), "ok (10)");
        assert_eq!(delivered(9, 10), "MISMATCH 9 of 10");
        assert_eq!(delivered(11, 10), "MISMATCH 11 of 10");
    }

    #[test]
    fn rows_are_labelled_by_proxy() {
        assert_eq!(Who::Ours256.label(), "influx-proxy, `memory_budget_mb` 256");
        assert_eq!(body_name(true), "gzip");
    }
}
