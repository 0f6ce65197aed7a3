//! Section (g): one UDP listener of the proxy on loopback, in front of one null sink: the
//! highest rate it takes without losing a datagram, at the default receive buffer and at
//! 8 MiB. The rate is doubled until points are lost, then the edge is bisected; each step
//! sends 1,400-byte datagrams of Telegraf-like lines (this program's `udp` mode) for the
//! run length, waits until everything read is delivered, and compares the points sent with
//! the points the sink received; the kernel's drops (the socket's buffer was full) and the
//! proxy's own (writes not keeping up) come from `/metrics`.

use std::fs;
use std::io::Read as _;
use std::process::{Command, Stdio};
use std::thread;
use std::time::Duration;

use harness::http;
use harness::proxy::Proxy;
use harness::sink::Sink;
use serde_json::{json, Value};

use super::report::{f2, int};
use super::setup;
use super::{Ctx, Error};

/// The larger receive buffer measured.
const BIG_BUFFER: u64 = 8 << 20;
/// The first rate tried (points/s).
const FIRST_RATE: u64 = 50_000;
/// Doubling stops here (beyond what one sender thread sends on this hardware).
const MAX_RATE: u64 = 6_400_000;
/// Halving (when the first rate already loses points) stops here.
const MIN_RATE: u64 = FIRST_RATE / 16;
/// Bisection steps between the last rate without loss and the first with.
const BISECT_STEPS: usize = 3;
/// Largest datagram sent.
const DATAGRAM_BYTES: u64 = 1400;
/// The kernel's ceiling on `SO_RCVBUF`.
const RMEM_MAX: &str = "/proc/sys/net/core/rmem_max";

/// What one rate did.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct RateStep {
    target: u64,
    sent_points: u64,
    sent_per_sec: f64,
    datagrams_per_sec: f64,
    stored: u64,
    kernel_drops: u64,
    proxy_drops: u64,
    proxy_cores: f64,
    sender_cores: f64,
}

impl RateStep {
    fn lost(&self) -> u64 {
        self.sent_points.saturating_sub(self.stored)
    }

    /// The sender could not keep the rate asked: the ramp ends there.
    fn sender_bound(&self) -> bool {
        self.sent_per_sec < self.target as f64 * 0.95
    }
}

pub(crate) fn run(ctx: &mut Ctx) -> Result<(), Error> {
    let seconds = ctx.opts.seconds;
    let rmem = RmemMax::raise_to(BIG_BUFFER);
    let r = &mut ctx.report;
    r.line("## (g) UDP: one listener on loopback, the rate it takes without loss");
    r.blank();
    r.line(format!(
        "One UDP listener (`udp[]`, default batching: 5000 lines or 1 s) in front of one null \
         sink. `influx-proxy-bench udp` sends {DATAGRAM_BYTES}-byte datagrams of Telegraf-like \
         lines (about 11 a datagram) from one socket at a fixed rate for {seconds} s per step; \
         after a warm-up step (not shown) the rate doubles from {} points/s until points are \
         lost (or halves until none are), then the edge is bisected {BISECT_STEPS} times. \"lost\" = points sent - points the sink received once the \
         proxy's queue drained; \"kernel drops\" are datagrams the kernel dropped because the \
         socket's receive buffer was full (`influx_proxy_udp_kernel_drops_total`), \"proxy \
         drops\" datagrams the proxy read and dropped (`influx_proxy_udp_datagrams_dropped_total`: \
         writes not keeping up, memory). \"granted\" is the receive buffer the kernel gave the \
         socket (`influx_proxy_udp_read_buffer_bytes`: twice what was asked, up to twice \
         `net.core.rmem_max`). {}",
        int(FIRST_RATE as f64),
        rmem.note()
    ));
    r.blank();
    r.line("| read_buffer | granted | target points/s | sent points/s | datagrams/s | stored | lost | kernel drops | proxy drops | proxy CPU | sender CPU |");
    r.line("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut summaries = Vec::new();
    for (label, read_buffer) in [("default", 0), ("8 MiB", BIG_BUFFER)] {
        ctx.log(format!("(g) UDP, read_buffer {label}"));
        summaries.push(ramp(ctx, label, read_buffer)?);
    }
    drop(rmem);
    ctx.report.blank();
    for line in summaries {
        ctx.report.line(line);
    }
    ctx.report.blank();
    Ok(())
}

/// The ramp at one buffer size, its rows in the table; the summary line.
fn ramp(ctx: &mut Ctx, label: &str, read_buffer: u64) -> Result<String, Error> {
    let sinks = setup::sinks(ctx, 1)?;
    let port = harness::udp::free_port();
    let extra = json!({
        "udp": [{"bind_addr": format!("127.0.0.1:{port}"), "database": "bench",
                 "read_buffer": read_buffer}],
    });
    let proxy = setup::proxy(&ctx.proxy_bin, 1, 1, &[sinks[0].url.as_str()], &extra)?;
    let listener = format!("listener=\"127.0.0.1:{port}\"");
    let granted = metric(&proxy, "influx_proxy_udp_read_buffer_bytes", &listener);
    let run = |ctx: &mut Ctx, rate: u64| -> Result<RateStep, Error> {
        let step = one_step(ctx, &proxy, &sinks, port, &listener, rate)?;
        ctx.report.row(&[
            label,
            &int(granted),
            &int(rate as f64),
            &int(step.sent_per_sec),
            &int(step.datagrams_per_sec),
            &int(step.stored as f64),
            &int(step.lost() as f64),
            &int(step.kernel_drops as f64),
            &int(step.proxy_drops as f64),
            &f2(step.proxy_cores),
            &f2(step.sender_cores),
        ]);
        Ok(step)
    };
    // Not reported: the first batches pay for the schema question, page faults and the
    // threads' first allocations.
    one_step(ctx, &proxy, &sinks, port, &listener, FIRST_RATE)?;
    let mut best: Option<RateStep> = None;
    let mut first_loss: Option<RateStep> = None;
    let mut rate = FIRST_RATE;
    loop {
        let step = run(ctx, rate)?;
        if step.lost() > 0 {
            first_loss = Some(step);
            // Down until a rate loses nothing, unless one already did.
            if best.is_some() || rate <= MIN_RATE {
                break;
            }
            rate /= 2;
            continue;
        }
        best = Some(step);
        if first_loss.is_some() || step.sender_bound() || rate >= MAX_RATE {
            break;
        }
        rate *= 2;
    }
    if let (Some(mut good), Some(mut bad)) = (best, first_loss) {
        for _ in 0..BISECT_STEPS {
            let mid = (good.target + bad.target) / 2;
            let step = run(ctx, mid)?;
            if step.lost() > 0 {
                bad = step;
            } else {
                good = step;
            }
        }
        best = Some(good);
        first_loss = Some(bad);
    }
    Ok(summary(label, granted, best, first_loss))
}

/// The line under the table for one buffer size.
fn summary(label: &str, granted: f64, best: Option<RateStep>, loss: Option<RateStep>) -> String {
    let best = best.map_or_else(
        || "none without loss".to_owned(),
        |b| {
            format!(
                "{} points/s without loss ({} datagrams/s, proxy {} cores)",
                int(b.sent_per_sec),
                int(b.datagrams_per_sec),
                f2(b.proxy_cores)
            )
        },
    );
    let edge = match loss {
        Some(l) => format!(
            "; at {} points/s {} points lost: {} datagrams dropped by the kernel, {} by the proxy",
            int(l.sent_per_sec),
            int(l.lost() as f64),
            int(l.kernel_drops as f64),
            int(l.proxy_drops as f64)
        ),
        None => "; no loss up to the sender's ceiling".to_owned(),
    };
    format!(
        "- read_buffer {label} (granted {} bytes): {best}{edge}.",
        int(granted)
    )
}

/// One rate for the run length: what was sent, then (once delivered) what arrived.
fn one_step(
    ctx: &Ctx,
    proxy: &Proxy,
    sinks: &[Sink],
    port: u16,
    listener: &str,
    rate: u64,
) -> Result<RateStep, Error> {
    let read = || metric(proxy, "influx_proxy_udp_datagrams_total", listener);
    let kernel = || metric(proxy, "influx_proxy_udp_kernel_drops_total", listener);
    let dropped = || metric(proxy, "influx_proxy_udp_datagrams_dropped_total", listener);
    let (read0, kernel0, dropped0) = (read(), kernel(), dropped());
    let stored0 = setup::sink_points(sinks);
    let cpu0 = setup::cpu_seconds(proxy.pid());
    let sent = send(ctx, port, rate)?;
    let cpu1 = setup::cpu_seconds(proxy.pid());
    // Every datagram sent is read or dropped by the kernel (counted each second), then the
    // last batch goes out (batch_timeout) and the queue drains.
    let datagrams = sent["datagrams"].as_f64().unwrap_or(0.0);
    setup::time_until(Duration::from_secs(30), || {
        read() - read0 + kernel() - kernel0 >= datagrams
    });
    thread::sleep(Duration::from_millis(1500));
    setup::wait_drain(proxy);
    let seconds = sent["seconds"].as_f64().unwrap_or(0.0).max(1e-9);
    Ok(RateStep {
        target: rate,
        sent_points: sent["points"].as_u64().unwrap_or(0),
        sent_per_sec: sent["points_per_sec"].as_f64().unwrap_or(0.0),
        datagrams_per_sec: sent["datagrams_per_sec"].as_f64().unwrap_or(0.0),
        stored: setup::sink_points(sinks).saturating_sub(stored0),
        kernel_drops: (kernel() - kernel0).max(0.0) as u64,
        proxy_drops: (dropped() - dropped0).max(0.0) as u64,
        proxy_cores: (cpu1 - cpu0) / seconds,
        sender_cores: sent["cpu_cores"].as_f64().unwrap_or(0.0),
    })
}

/// Runs this program's `udp` mode against the listener; its JSON summary.
fn send(ctx: &Ctx, port: u16, rate: u64) -> Result<Value, Error> {
    let child = Command::new(&ctx.bench_bin)
        .args(["udp", "--json", "--addr"])
        .arg(format!("127.0.0.1:{port}"))
        .args(["--rate", &rate.to_string()])
        .args(["--duration", &format!("{}s", ctx.opts.seconds)])
        .args(["--datagram-bytes", &DATAGRAM_BYTES.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(Error::io(format!("run {} udp", ctx.bench_bin.display())))?;
    let mut child = child;
    let mut out = String::new();
    if let Some(mut stdout) = child.stdout.take() {
        let _ = stdout.read_to_string(&mut out);
    }
    let status = child.wait().map_err(Error::io("wait for the UDP sender"))?;
    match serde_json::from_str::<Value>(out.trim()) {
        Ok(v) if status.success() => Ok(v),
        _ => Err(Error::Load {
            url: format!("udp://127.0.0.1:{port}"),
            message: format!("{status}: {out}"),
        }),
    }
}

/// The sum of `/metrics`' samples of `name` whose labels contain `label`; 0 when it does not
/// answer.
fn metric(proxy: &Proxy, name: &str, label: &str) -> f64 {
    let Ok(resp) = http::try_get(&format!("{}/metrics", proxy.url)) else {
        return 0.0;
    };
    sum_samples(&resp.body, name, label)
}

fn sum_samples(text: &str, name: &str, label: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && l.contains(label))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

/// `net.core.rmem_max` raised for the larger buffer (as root), put back when dropped.
#[derive(Debug)]
struct RmemMax {
    /// The value before, when this raised it.
    previous: Option<u64>,
    /// The value the run had.
    current: Option<u64>,
}

impl RmemMax {
    fn raise_to(bytes: u64) -> RmemMax {
        let current = read_rmem_max();
        let low = current.is_some_and(|c| c < bytes);
        if low && fs::write(RMEM_MAX, bytes.to_string()).is_ok() {
            return RmemMax {
                previous: current,
                current: Some(bytes),
            };
        }
        RmemMax {
            previous: None,
            current,
        }
    }

    /// What the report says about it.
    fn note(&self) -> String {
        let current = self
            .current
            .map_or_else(|| "unknown".to_owned(), |c| int(c as f64));
        match self.previous {
            Some(before) => format!(
                "The suite (running as root) raised `net.core.rmem_max` from {} to {current} for \
                 this section and put it back after.",
                int(before as f64)
            ),
            None => format!("`net.core.rmem_max` was {current} (left as it was)."),
        }
    }
}

impl Drop for RmemMax {
    fn drop(&mut self) {
        if let Some(before) = self.previous {
            let _ = fs::write(RMEM_MAX, before.to_string());
        }
    }
}

fn read_rmem_max() -> Option<u64> {
    fs::read_to_string(RMEM_MAX).ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_of_one_listener_are_summed_over_reasons() {
        let text = "# TYPE influx_proxy_udp_datagrams_dropped_total counter\n\
            influx_proxy_udp_datagrams_dropped_total{listener=\"127.0.0.1:1\",reason=\"memory\"} 2\n\
            influx_proxy_udp_datagrams_dropped_total{listener=\"127.0.0.1:1\",reason=\"pending\"} 3\n\
            influx_proxy_udp_datagrams_dropped_total{listener=\"127.0.0.1:2\",reason=\"pending\"} 7\n";
        let name = "influx_proxy_udp_datagrams_dropped_total";
        assert_eq!(sum_samples(text, name, "listener=\"127.0.0.1:1\""), 5.0);
        assert_eq!(sum_samples(text, "influx_proxy_udp_points_total", ""), 0.0);
    }

    #[test]
    fn the_summary_names_the_edge() {
        let good = RateStep {
            target: 400_000,
            sent_points: 800_000,
            sent_per_sec: 400_000.0,
            datagrams_per_sec: 36_000.0,
            stored: 800_000,
            proxy_cores: 0.5,
            ..RateStep::default()
        };
        let bad = RateStep {
            target: 800_000,
            sent_points: 1_600_000,
            sent_per_sec: 800_000.0,
            stored: 1_500_000,
            kernel_drops: 9_000,
            ..RateStep::default()
        };
        assert_eq!(
            summary("default", 425_984.0, Some(good), Some(bad)),
            "- read_buffer default (granted 425,984 bytes): 400,000 points/s without loss \
             (36,000 datagrams/s, proxy 0.50 cores); at 800,000 points/s 100,000 points lost: \
             9,000 datagrams dropped by the kernel, 0 by the proxy."
        );
        assert!(!good.sender_bound());
        assert!(RateStep {
            target: 100,
            sent_per_sec: 90.0,
            ..RateStep::default()
        }
        .sender_bound());
    }
}
