//! `influx-proxy-bench udp`: line protocol in datagrams at a fixed rate, for the proxy's UDP
//! listeners (suite section (g)).
//!
//! Datagrams are packed with whole Telegraf-like lines (`--shape telegraf` of `write`) up to
//! `--datagram-bytes` each, made before the timed run (a pool cycled through, so the sender
//! costs one `send` per datagram), and sent from one connected socket, paced every
//! millisecond to the rate asked. Loopback UDP never blocks the sender when the receiver falls
//! behind: the kernel drops at the receiving socket, which is what the suite measures.

use std::net::{SocketAddr, UdpSocket};
use std::process::ExitCode;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::{is_loopback_host, parse_bool, parse_duration, parse_usize, walk_flags};
use crate::{LineGen, WriteOpts, TELEGRAF_MEASUREMENTS};

/// Options of `udp`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct UdpOpts {
    pub(crate) addr: String,
    /// Points per second; 0 = as fast as the socket takes them.
    pub(crate) rate: u64,
    pub(crate) duration: Duration,
    /// Largest datagram (whole lines only).
    pub(crate) datagram_bytes: usize,
    /// Datagrams made before the run and cycled through.
    pub(crate) pool: usize,
    pub(crate) json: bool,
}

impl Default for UdpOpts {
    fn default() -> UdpOpts {
        UdpOpts {
            addr: "127.0.0.1:8089".to_owned(),
            rate: 0,
            duration: Duration::from_secs(10),
            datagram_bytes: 1400,
            pool: 8192,
            json: false,
        }
    }
}

pub(crate) fn parse(args: Vec<(String, Option<String>)>) -> Result<UdpOpts, String> {
    let mut o = UdpOpts::default();
    let mut allow_remote = false;
    walk_flags(
        args,
        |f| f == "--json" || f == "--allow-remote",
        |flag, v| {
            match flag {
                "--addr" => o.addr = v.to_owned(),
                "--rate" => o.rate = parse_usize(flag, v, 0)? as u64,
                "--duration" => o.duration = parse_duration(v)?,
                "--datagram-bytes" => o.datagram_bytes = parse_usize(flag, v, 64)?,
                "--pool" => o.pool = parse_usize(flag, v, 1)?,
                "--json" => o.json = parse_bool(flag, v)?,
                "--allow-remote" => allow_remote = parse_bool(flag, v)?,
                _ => return Err(format!("unknown udp option {flag}")),
            }
            Ok(())
        },
    )?;
    let host = o
        .addr
        .rsplit_once(':')
        .map(|(h, _)| h)
        .ok_or_else(|| format!("--addr {:?}: expected HOST:PORT", o.addr))?;
    if !is_loopback_host(host) && !allow_remote {
        return Err(format!(
            "refusing to send to non-loopback {host:?}; pass --allow-remote to do it anyway"
        ));
    }
    if o.datagram_bytes > 65_507 {
        return Err("--datagram-bytes: at most 65507 (IPv4's largest UDP payload)".to_owned());
    }
    Ok(o)
}

/// A datagram of whole lines, and how many.
#[derive(Debug)]
struct Datagram {
    bytes: Vec<u8>,
    points: u64,
}

/// `pool` datagrams of Telegraf-like lines, each at most `max` bytes (a line longer than that
/// gets one of its own).
fn datagrams(pool: usize, max: usize) -> Vec<Datagram> {
    let shape = WriteOpts {
        telegraf: true,
        measurements: TELEGRAF_MEASUREMENTS.len(),
        tags: 3,
        tag_cardinality: 250,
        fields: 2,
        concurrency: 1,
        ..WriteOpts::default()
    };
    let now_ns = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64);
    let mut lines = LineGen::new(&shape, 0, now_ns);
    let mut line = Vec::new();
    let mut out = Vec::with_capacity(pool);
    let mut current = Datagram {
        bytes: Vec::with_capacity(max),
        points: 0,
    };
    while out.len() < pool {
        line.clear();
        lines.fill(&mut line, 1);
        if current.points > 0 && current.bytes.len() + line.len() > max {
            out.push(std::mem::replace(
                &mut current,
                Datagram {
                    bytes: Vec::with_capacity(max),
                    points: 0,
                },
            ));
        }
        current.bytes.extend_from_slice(&line);
        current.points += 1;
    }
    out
}

/// What a run sent.
#[derive(Debug, Default, Clone, PartialEq)]
struct Transmitted {
    datagrams: u64,
    points: u64,
    bytes: u64,
    /// `send` calls that failed (counted, not retried).
    errors: u64,
    elapsed: Duration,
}

/// Sends `pool` round and round to `target` for `duration` at `rate` points/s (0: flat out).
fn send(socket: &UdpSocket, pool: &[Datagram], rate: u64, duration: Duration) -> Transmitted {
    let mut sent = Transmitted::default();
    let start = Instant::now();
    let mut next = 0;
    loop {
        let elapsed = start.elapsed();
        if elapsed >= duration {
            break;
        }
        // Points due by now; without a rate, a burst of a thousand datagrams between checks.
        let due = if rate == 0 {
            sent.points + 1000
        } else {
            (rate as f64 * elapsed.as_secs_f64()) as u64
        };
        if sent.points >= due {
            thread::sleep(Duration::from_millis(1));
            continue;
        }
        while sent.points < due {
            let d = &pool[next];
            next = (next + 1) % pool.len();
            match socket.send(&d.bytes) {
                Ok(_) => {
                    sent.datagrams += 1;
                    sent.points += d.points;
                    sent.bytes += d.bytes.len() as u64;
                }
                Err(_) => {
                    sent.errors += 1;
                    break;
                }
            }
        }
    }
    sent.elapsed = start.elapsed();
    sent
}

pub(crate) fn run(o: UdpOpts) -> Result<ExitCode, String> {
    let target: SocketAddr = o
        .addr
        .parse()
        .map_err(|e| format!("--addr {:?}: {e}", o.addr))?;
    let local = if target.is_ipv6() {
        "[::1]:0"
    } else {
        "127.0.0.1:0"
    };
    let socket = UdpSocket::bind(local).map_err(|e| format!("bind {local}: {e}"))?;
    socket
        .connect(target)
        .map_err(|e| format!("connect {target}: {e}"))?;
    let pool = datagrams(o.pool, o.datagram_bytes);
    let cpu_start = harness::procfs::cpu_seconds(None);
    let sent = send(&socket, &pool, o.rate, o.duration);
    let secs = sent.elapsed.as_secs_f64().max(1e-9);
    let cpu_cores = match (cpu_start, harness::procfs::cpu_seconds(None)) {
        (Some(a), Some(b)) => (b - a) / secs,
        _ => 0.0,
    };
    let summary = serde_json::json!({
        "mode": "udp",
        "addr": o.addr,
        "datagrams": sent.datagrams,
        "points": sent.points,
        "bytes": sent.bytes,
        "send_errors": sent.errors,
        "seconds": secs,
        "points_per_sec": sent.points as f64 / secs,
        "datagrams_per_sec": sent.datagrams as f64 / secs,
        "cpu_cores": cpu_cores,
    });
    let text = format!(
        "udp -> {}: {} datagrams, {} points in {secs:.2} s ({:.0} points/s), {} send errors\n",
        o.addr,
        sent.datagrams,
        sent.points,
        sent.points as f64 / secs,
        sent.errors
    );
    if o.json {
        eprint!("{text}");
        println!("{summary}");
    } else {
        print!("{text}");
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<(String, Option<String>)> {
        crate::split_flags(&s.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
    }

    #[test]
    fn parses_its_options_and_refuses_remote_targets() {
        let o = parse(args("--addr 127.0.0.1:9 --rate 5000 --duration 2s --json")).unwrap();
        assert_eq!((o.addr.as_str(), o.rate), ("127.0.0.1:9", 5000));
        assert_eq!(
            (o.duration, o.datagram_bytes, o.json),
            (Duration::from_secs(2), 1400, true)
        );
        assert!(parse(args("--addr 10.0.0.1:9")).is_err());
        assert!(parse(args("--datagram-bytes 70000")).is_err());
        assert!(parse(args("--nope 1")).is_err());
    }

    #[test]
    fn datagrams_hold_whole_lines_up_to_the_size() {
        let pool = datagrams(50, 1400);
        assert_eq!(pool.len(), 50);
        for d in &pool {
            assert!(
                d.bytes.len() <= 1400 && d.points > 1,
                "{} bytes",
                d.bytes.len()
            );
            assert!(d.bytes.ends_with(b"\n"));
            assert_eq!(
                d.bytes.iter().filter(|&&b| b == b'\n').count() as u64,
                d.points
            );
        }
    }

    #[test]
    fn a_paced_run_sends_what_the_rate_asks() {
        let receiver = UdpSocket::bind("127.0.0.1:0").unwrap();
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.connect(receiver.local_addr().unwrap()).unwrap();
        let pool = datagrams(16, 1400);
        let sent = send(&socket, &pool, 10_000, Duration::from_millis(200));
        // 2,000 points due by the end (never more, whatever the scheduler did meanwhile).
        assert!(sent.points > 0 && sent.points <= 2_100, "{sent:?}");
        assert_eq!(sent.errors, 0);
    }
}
