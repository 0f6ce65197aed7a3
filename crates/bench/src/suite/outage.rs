//! Section (d): one of 4 sinks killed for minutes while writing through the proxy at a fixed
//! rate: the queue grows on disk while the proxy's memory stays flat, then drains once the sink
//! is back. Sampled every few seconds during the outage, more often around it.

use std::thread;
use std::time::{Duration, Instant};

use super::load::Load;
use super::report::{f1, f2, int};
use super::setup::{self, DRAIN_TIMEOUT};
use super::{Ctx, Error};

/// Where the run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Before,
    Outage,
    /// The sink is back, the load still runs.
    Recovery,
    /// The load has stopped; the queue drains.
    Drain,
}

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Phase::Before => "before",
            Phase::Outage => "outage",
            Phase::Recovery => "recovery",
            Phase::Drain => "drain",
        }
    }
}

/// One row of the table.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Sample {
    /// Seconds since the load started, to the tenth shown.
    t: f64,
    phase: Phase,
    queue_bytes: u64,
    rss_mib: u64,
}

pub(crate) fn run(ctx: &mut Ctx) -> Result<(), Error> {
    let o = ctx.opts.clone();
    ctx.log(format!("(d) outage of one sink for {}s", o.outage_seconds));
    let mut sinks = setup::sinks(ctx, 4)?;
    let urls = setup::urls(sinks.iter().map(|s| s.url.as_str()));
    let proxy = setup::proxy(&ctx.proxy_bin, 2, 2, &urls, &setup::no_extra())?;
    let total = o.pre_outage + o.outage_seconds + o.post_outage;
    let mut load = Load::new(ctx, &proxy.url, "bench")
        .flag("--rate", o.outage_rate)
        .seconds(total)
        .spawn()?;

    let r = &mut ctx.report;
    r.line(format!(
        "## (d) One of 4 sinks killed for {} s while writing through the proxy",
        o.outage_seconds
    ));
    r.blank();
    r.line(format!(
        "Load: {} points/s (rate-limited) into a proxy with 2 circles x 2 sinks; backend-1-1 is \
         SIGKILLed after {} s and restarted on the same port {} s later. Queue = sum of \
         `queue.bytes` over all backends in `/health`; RSS = `VmRSS` of the proxy.",
        int(o.outage_rate as f64),
        o.pre_outage,
        o.outage_seconds
    ));
    r.blank();
    r.line("| t s | phase | queue MB | proxy RSS MB |");
    r.line("|---:|---|---:|---:|");

    let start = Instant::now();
    let mut phase = Phase::Before;
    let mut victim_before = 0;
    let mut next_sample = 0.0;
    let mut load_end = 0.0;
    let mut samples = Vec::new();
    let mut now;
    loop {
        now = (start.elapsed().as_secs_f64() * 10.0).round() / 10.0;
        if phase == Phase::Before && now >= o.pre_outage as f64 {
            victim_before = sinks[0].points().unwrap_or(0);
            sinks[0].kill();
            phase = Phase::Outage;
            next_sample = 0.0;
        }
        if phase == Phase::Outage && now >= (o.pre_outage + o.outage_seconds) as f64 {
            sinks[0].try_restart()?;
            phase = Phase::Recovery;
            next_sample = 0.0;
        }
        let restarted = matches!(phase, Phase::Recovery | Phase::Drain);
        let load_done = load.is_done();
        if now >= next_sample {
            let queue = setup::queue_bytes(&proxy.url);
            let sample = Sample {
                t: now,
                phase,
                queue_bytes: queue.unwrap_or(0),
                rss_mib: setup::rss_mib(proxy.pid()).0,
            };
            ctx.report.row(&[
                &f1(sample.t),
                phase.name(),
                &f1(sample.queue_bytes as f64 / 1e6),
                &sample.rss_mib.to_string(),
            ]);
            samples.push(sample);
            // Long outages are sampled sparsely; the drain afterwards closely.
            let step = if phase == Phase::Outage {
                o.sample_seconds
            } else {
                o.drain_sample_seconds
            };
            next_sample = now + step as f64;
            if load_done && restarted && queue == Some(0) {
                break;
            }
        }
        if load_done && restarted && phase != Phase::Drain {
            phase = Phase::Drain;
            next_sample = 0.0;
            load_end = now;
        }
        if now > (total + DRAIN_TIMEOUT.as_secs()) as f64 {
            ctx.report.line(format!(
                "| {} | gave up waiting for the queue to drain | | |",
                f1(now)
            ));
            break;
        }
        thread::sleep(Duration::from_millis(200));
    }
    let s = load.finish();
    let got = setup::sink_points(&sinks) + victim_before;
    let want = s.points * 2;
    drop(proxy);
    let r = &mut ctx.report;
    r.blank();
    r.line(format!(
        "Acknowledged {} points ({} points/s, p50 {} ms, p99 {} ms, max {} ms, errors {}). The \
         queue was empty again {} s after the load stopped. Sinks received {} points of {} \
         expected {}.",
        int(s.points as f64),
        int(s.points_per_sec),
        f2(s.p50),
        f2(s.p99),
        f2(s.max),
        s.errors_cell(),
        f1(now - load_end),
        int(got as f64),
        int(want as f64),
        if got >= want {
            "(ok; more means batches in flight at the kill were delivered twice, at-least-once)"
        } else {
            "(MISMATCH)"
        },
    ));
    r.blank();
    r.line(memory_summary(&samples, o.outage_seconds));
    r.blank();
    Ok(())
}

/// Flat memory: the proxy's RSS in the first and the last third of the outage samples, with
/// the queue at the end of each.
fn memory_summary(samples: &[Sample], outage_seconds: u64) -> String {
    let outage: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.phase == Phase::Outage)
        .collect();
    let n = outage.len();
    if n < 3 {
        return "Too few outage samples for a memory summary.".to_owned();
    }
    let rss: Vec<u64> = outage.iter().map(|s| s.rss_mib).collect();
    let (min, max) = (
        rss.iter().min().copied().unwrap_or(0),
        rss.iter().max().copied().unwrap_or(0),
    );
    let k = n / 3;
    let mean = |part: &[u64]| part.iter().sum::<u64>() as f64 / k as f64;
    format!(
        "Proxy RSS over the {outage_seconds} s outage ({n} samples): min {min} MB, max {max} MB; \
         mean {:.0} MB in the first third (queue {:.0} MB at its end) vs. {:.0} MB in the last \
         third (queue {:.0} MB at its end).",
        mean(&rss[..k]),
        outage[k - 1].queue_bytes as f64 / 1e6,
        mean(&rss[n - k..]),
        outage[n - 1].queue_bytes as f64 / 1e6,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(t: f64, phase: Phase, queue_mb: u64, rss_mib: u64) -> Sample {
        Sample {
            t,
            phase,
            queue_bytes: queue_mb * 1_000_000,
            rss_mib,
        }
    }

    #[test]
    fn memory_is_compared_between_the_first_and_last_third_of_the_outage() {
        let mut samples = vec![sample(0.0, Phase::Before, 0, 24)];
        for (i, rss) in [36, 45, 40, 42, 41, 50, 45].into_iter().enumerate() {
            samples.push(sample(
                3.0 + i as f64,
                Phase::Outage,
                100 * (i as u64 + 1),
                rss,
            ));
        }
        samples.push(sample(11.0, Phase::Drain, 0, 99));
        assert_eq!(
            memory_summary(&samples, 600),
            "Proxy RSS over the 600 s outage (7 samples): min 36 MB, max 50 MB; mean 40 MB in \
             the first third (queue 200 MB at its end) vs. 48 MB in the last third (queue 700 MB \
             at its end)."
        );
    }

    #[test]
    fn a_short_outage_has_no_memory_summary() {
        let samples = [
            sample(1.0, Phase::Outage, 1, 30),
            sample(2.0, Phase::Outage, 2, 30),
            sample(3.0, Phase::Recovery, 2, 30),
        ];
        assert_eq!(
            memory_summary(&samples, 4),
            "Too few outage samples for a memory summary."
        );
    }
}
