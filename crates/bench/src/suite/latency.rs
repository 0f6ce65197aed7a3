//! Section (c): the latency the proxy adds to a write, at a fixed rate over one connection so
//! that neither side is saturated: a null sink vs. the proxy in front of 2 x 2 sinks, and one
//! influxd vs. the proxy in front of one influxd.

use super::load::{Load, LoadSummary};
use super::report::{f2, int};
use super::setup;
use super::{Ctx, Error};

pub(crate) fn run(ctx: &mut Ctx) -> Result<(), Error> {
    let o = &ctx.opts;
    let (batch, rate, seconds) = (o.batch, o.latency_rate, o.latency_seconds);
    let r = &mut ctx.report;
    r.line(format!("## (c) Added latency per {batch}-point request"));
    r.blank();
    r.line(format!(
        "One connection at {} points/s (rate-limited, so neither side is saturated), {seconds} s \
         ({} requests) per run. The proxy answers once the request is in its write-ahead queue \
         for every circle, so its latency is parsing, routing and the queue append; against real \
         influxd it does not include InfluxDB's own write time. \"added\" = through the proxy \
         minus direct.",
        int(rate as f64),
        int((rate * seconds / batch) as f64)
    ));
    r.blank();
    r.line("| target | direct p50 ms | direct p99 ms | proxy p50 ms | proxy p99 ms | added p50 ms | added p99 ms |");
    r.line("|---|---:|---:|---:|---:|---:|---:|");

    ctx.log("(c) latency: sink direct vs. proxy -> 2x2 sinks");
    {
        let sinks = setup::sinks(ctx, 4)?;
        let direct = measure(ctx, &sinks[0].url)?;
        let urls = setup::urls(sinks.iter().map(|s| s.url.as_str()));
        let proxy = setup::proxy(&ctx.proxy_bin, 2, 2, &urls, &setup::no_extra())?;
        let through = measure(ctx, &proxy.url)?;
        row(
            ctx,
            "null sink / proxy -> 2x2 null sinks",
            &direct,
            &through,
        );
    }
    if ctx.have_influxd {
        ctx.log("(c) latency: influxd direct vs. proxy -> 1 influxd");
        let direct = {
            let influxd = setup::influxds(1)?;
            measure(ctx, &influxd[0].url)?
        };
        let influxd = setup::influxds(1)?;
        let proxy = setup::proxy(
            &ctx.proxy_bin,
            1,
            1,
            &[influxd[0].url.as_str()],
            &setup::no_extra(),
        )?;
        let through = measure(ctx, &proxy.url)?;
        row(ctx, "influxd / proxy -> 1 influxd", &direct, &through);
    }
    ctx.report.blank();
    Ok(())
}

/// One connection at the latency rate for the latency run length.
fn measure(ctx: &Ctx, url: &str) -> Result<LoadSummary, Error> {
    let o = &ctx.opts;
    Load::new(ctx, url, "bench")
        .flag("--concurrency", 1)
        .flag("--rate", o.latency_rate)
        .switches(&["--create-db"])
        .seconds(o.latency_seconds)
        .run()
}

fn row(ctx: &mut Ctx, label: &str, direct: &LoadSummary, through: &LoadSummary) {
    ctx.report.row(&[
        label,
        &f2(direct.p50),
        &f2(direct.p99),
        &f2(through.p50),
        &f2(through.p99),
        &f2(through.p50 - direct.p50),
        &f2(through.p99 - direct.p99),
    ]);
}
