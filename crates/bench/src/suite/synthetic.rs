//! Section (a2): the synthetic body into 2 circles x 2 null sinks, plain and gzip from the
//! client and towards the backends (`write_gzip`), after the load tool's own ceiling straight
//! into one sink.

use std::time::Instant;

use serde_json::json;

use super::load::{body_name, Load};
use super::report::{f1, f2, int};
use super::setup::{self, drain_cell};
use super::user_body::delivered;
use super::{Ctx, Error};

pub(crate) fn run(ctx: &mut Ctx) -> Result<(), Error> {
    let r = &mut ctx.report;
    r.line("## (a2) Synthetic body, proxy in front of 2 circles x 2 null sinks");
    r.blank();
    r.line(
        "\"body\" is how the load tool sends, \"to backends\" how the proxy delivers \
         (`write_gzip`, default gzip). \"delivered\" compares the points the sinks received after \
         the queues drained with acknowledged points x circles.",
    );
    r.blank();
    r.line("| setup | body | to backends | points/s | MB/s sent | p50 ms | p99 ms | errors | proxy CPU | proxy CPU µs/point | load tool CPU | drain s | delivered |");
    r.line("|---|---|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---|");
    ctx.log("(a2) load tool straight into one sink (ceiling of the load tool)");
    for gzip in [false, true] {
        ceiling_row(ctx, gzip)?;
    }
    for (gzip, to_backends_gzip) in [(false, true), (false, false), (true, true), (true, false)] {
        proxy_row(ctx, gzip, to_backends_gzip)?;
    }
    ctx.report.blank();
    Ok(())
}

fn load(ctx: &Ctx, url: &str, gzip: bool) -> Load {
    let load = Load::new(ctx, url, "bench");
    if gzip {
        load.gzip(ctx.opts.pool_mb)
    } else {
        load
    }
}

/// The load tool straight into one sink: what it can send at all.
fn ceiling_row(ctx: &mut Ctx, gzip: bool) -> Result<(), Error> {
    let sinks = setup::sinks(ctx, 1)?;
    let s = load(ctx, &sinks[0].url, gzip).run()?;
    let got = setup::sink_points(&sinks);
    ctx.report.row(&[
        "load tool -> 1 sink (no proxy)",
        body_name(gzip),
        "-",
        &int(s.points_per_sec),
        &f1(s.mb_per_sec),
        &f2(s.p50),
        &f2(s.p99),
        &s.errors_cell(),
        "-",
        "-",
        &f2(s.cpu_cores),
        "-",
        &delivered(got, s.points),
    ]);
    Ok(())
}

/// Through the proxy: its CPU over the run (load tool start to exit), then the drain.
fn proxy_row(ctx: &mut Ctx, gzip: bool, to_backends_gzip: bool) -> Result<(), Error> {
    let (body, to_backends) = (body_name(gzip), body_name(to_backends_gzip));
    ctx.log(format!(
        "(a2) proxy -> 2x2 sinks, {body} body, {to_backends} to backends"
    ));
    let sinks = setup::sinks(ctx, 4)?;
    let urls = setup::urls(sinks.iter().map(|s| s.url.as_str()));
    let extra = if to_backends_gzip {
        setup::no_extra()
    } else {
        json!({ "write_gzip": false })
    };
    let proxy = setup::proxy(&ctx.proxy_bin, 2, 2, &urls, &extra)?;
    let cpu0 = setup::cpu_seconds(proxy.pid());
    let t0 = Instant::now();
    let s = load(ctx, &proxy.url, gzip).run()?;
    let elapsed = t0.elapsed().as_secs_f64();
    let cpu1 = setup::cpu_seconds(proxy.pid());
    let drain = setup::wait_drain(&proxy);
    let got = setup::sink_points(&sinks);
    let cores = (cpu1 - cpu0) / elapsed;
    let per_point = if s.points_per_sec > 0.0 {
        // Of the cores as shown, as the column always was.
        f2(cores).parse::<f64>().unwrap_or(0.0) * 1e6 / s.points_per_sec
    } else {
        0.0
    };
    ctx.report.row(&[
        "proxy -> 2x2 sinks",
        body,
        to_backends,
        &int(s.points_per_sec),
        &f1(s.mb_per_sec),
        &f2(s.p50),
        &f2(s.p99),
        &s.errors_cell(),
        &f2(cores),
        &f2(per_point),
        &f2(s.cpu_cores),
        &drain_cell(drain),
        &delivered(got, s.points * 2),
    ]);
    Ok(())
}
