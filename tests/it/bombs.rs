//! Compression bombs cost no more memory than `memory_budget_mb` allows: inflation stops where
//! a request's share of the budget ends, and every byte a body takes is charged before it is
//! allocated, however many bombs arrive at once, chunked or not, on every write endpoint.

use std::io::Write as _;
use std::thread;
use std::time::Duration;

use crate::support::http::{self, wait_until, RawAnswer};
use crate::support::influxd::Influxd;
use crate::support::proxy::{circles_config, Proxy};
use crate::support::unique_db;

/// What the process may hold beyond `memory_budget_mb`: 1/8 of it and 4 MiB (README, *Memory*).
const SLACK_MIB: u64 = 16;
/// The default `memory_budget_mb`.
const BUDGET_MIB: u64 = 96;

/// The process's peak resident size so far (`VmHWM`), in KiB.
fn peak_rss_kib(proxy: &Proxy) -> u64 {
    let pid = proxy.pid().expect("proxy running");
    crate::support::procfs::memory(pid)
        .unwrap_or_else(|| panic!("no VmHWM in /proc/{pid}/status"))
        .peak_rss_kib
}

/// Valid line protocol, `repeat`ed to `total` bytes and gzip'd: 1 GiB gives ~1 MiB.
fn gzip_bomb(total: usize) -> Vec<u8> {
    let line = b"bomb,host=a v=1 1\n";
    let block: Vec<u8> = line.iter().copied().cycle().take(1 << 20).collect();
    let mut z = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    for _ in 0..total / block.len() {
        z.write_all(&block).unwrap();
    }
    z.finish().unwrap()
}

/// A snappy block that does decode to the length its header declares: one literal byte, then
/// copies of 64 bytes at offset 1, 3 bytes each (~21 times smaller than what it declares).
fn snappy_bomb(copies: usize) -> Vec<u8> {
    let mut len = 1 + 64 * copies as u64;
    let mut out = Vec::with_capacity(copies * 3 + 12);
    while len >= 0x80 {
        out.push((len as u8) | 0x80);
        len >>= 7;
    }
    out.push(len as u8);
    out.extend_from_slice(&[0x00, 0x00]);
    for _ in 0..copies {
        out.extend_from_slice(&[0xfe, 0x01, 0x00]);
    }
    out
}

/// POSTs `body` as HTTP/1.1 with `headers`, chunked when `chunk` is set (no Content-Length).
fn post(
    proxy: &Proxy,
    target: &str,
    headers: &str,
    body: &[u8],
    chunk: Option<usize>,
) -> RawAnswer {
    let (framing, payload) = match chunk {
        Some(size) => (
            "Transfer-Encoding: chunked\r\n".to_string(),
            http::chunked(body, size),
        ),
        None => (format!("Content-Length: {}\r\n", body.len()), body.to_vec()),
    };
    let mut request = format!(
        "POST {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{headers}{framing}\r\n"
    )
    .into_bytes();
    request.extend_from_slice(&payload);
    http::raw_exchange(&format!("127.0.0.1:{}", proxy.port), &request)
}

#[test]
fn concurrent_bombs_get_413_and_memory_stays_within_the_budget() {
    let influxd = Influxd::spawn();
    let proxy = Proxy::start(circles_config(&[&[&influxd.url]]));
    let db = unique_db("bomb");
    influxd.create_db(&db);
    assert_eq!(http::write(&proxy.url, &db, "ok v=1 1\n").status, 204);
    let before = peak_rss_kib(&proxy);

    let gzip = gzip_bomb(1 << 30);
    assert!(gzip.len() < 8 << 20, "{} bytes", gzip.len());
    let snappy = snappy_bomb(700_000);
    assert_eq!(
        snap::raw::decompress_len(&snappy).unwrap(),
        snap::raw::Decoder::new()
            .decompress_vec(&snappy)
            .unwrap()
            .len()
    );
    let gz = "Content-Encoding: gzip\r\n";
    let pb = "Content-Encoding: snappy\r\nContent-Type: application/x-protobuf\r\n";
    let write = format!("/write?db={db}");
    let v2 = format!("/api/v2/write?bucket={db}");
    let prom = format!("/api/v1/prom/write?db={db}");
    let mut requests: Vec<(String, &str, &[u8], Option<usize>)> = Vec::new();
    for i in 0..8 {
        let target = if i % 2 == 0 { &write } else { &v2 };
        requests.push((target.clone(), gz, &gzip, Some(64 << 10)));
    }
    requests.push((prom.clone(), pb, &snappy, Some(64 << 10)));
    requests.push((prom.clone(), pb, &snappy, None));
    let answers: Vec<(String, RawAnswer)> = thread::scope(|s| {
        let handles: Vec<_> = requests
            .iter()
            .map(|(target, headers, body, chunk)| {
                let proxy = &proxy;
                s.spawn(move || (target.clone(), post(proxy, target, headers, body, *chunk)))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let after = peak_rss_kib(&proxy);
    eprintln!(
        "peak RSS (VmHWM): {} MiB before the bombs, {} MiB after",
        before >> 10,
        after >> 10
    );
    assert!(
        after <= (BUDGET_MIB + SLACK_MIB) << 10,
        "peak RSS {} MiB beyond memory_budget_mb {BUDGET_MIB} + {SLACK_MIB} MiB (before the bombs: {} MiB)",
        after >> 10,
        before >> 10
    );
    for (target, a) in &answers {
        let text = a.text();
        assert_eq!(a.status, 413, "{target}: {text}");
        assert_eq!(
            a.header("content-type"),
            Some("application/json"),
            "{target}"
        );
        let json: serde_json::Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{target}: not JSON ({e}): {text}"));
        let error = json["error"].as_str().unwrap_or_default();
        assert!(error.contains("too large"), "{target}: {text}");
    }
    // Everything charged was given back, and writes still flow.
    let bodies = || {
        http::get(&format!("{}/metrics", proxy.url))
            .body
            .lines()
            .find_map(|l| l.strip_prefix("influx_proxy_memory_bytes{part=\"request_bodies\"} "))
            .map(str::to_string)
    };
    assert!(
        wait_until(Duration::from_secs(10), || bodies().as_deref() == Some("0")),
        "{:?}",
        bodies()
    );
    assert_eq!(http::write(&proxy.url, &db, "ok v=2 2\n").status, 204);
    assert!(wait_until(Duration::from_secs(30), || influxd
        .count(&db, "ok")
        == 2));
    assert_eq!(influxd.count(&db, "bomb"), 0);
}
