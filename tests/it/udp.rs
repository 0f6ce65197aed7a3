//! UDP listeners (`udp[]`): datagrams sent by a real client (Python's `socket`) are written to
//! real influxd through the `/write` path; what a sender cannot be told is counted in
//! `/metrics`; listeners follow reloads; a graceful stop writes what was read.

use std::net::UdpSocket;
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::http::wait_until;
use crate::support::influxd::Influxd;
use crate::support::proxy::{binary, circles_config, two_by_two, Proxy};
use crate::support::{udp, unique_db, Signal};

/// How long an effect may take (batch timeouts, delivery, the kernel poll): generous.
const EFFECT: Duration = Duration::from_secs(20);

/// `127.0.0.1:port`, a listener's `bind_addr` and its `listener` label in `/metrics`.
fn addr(port: u16) -> String {
    format!("127.0.0.1:{port}")
}

/// The listener's sample of `metric` (its only series, or the one of `reason`).
fn metric(proxy: &Proxy, metric: &str, port: u16, reason: Option<&str>) -> f64 {
    let label = match reason {
        Some(reason) => format!("listener=\"{}\",reason=\"{reason}\"", addr(port)),
        None => format!("listener=\"{}\"}}", addr(port)),
    };
    proxy.metric(metric, &label)
}

fn points(proxy: &Proxy, port: u16) -> f64 {
    metric(proxy, "influx_proxy_udp_points_total", port, None)
}

fn batches(proxy: &Proxy, port: u16) -> f64 {
    metric(proxy, "influx_proxy_udp_batches_total", port, None)
}

/// Points of `measurement` in a circle (its two backends together).
fn circle_count(circle: &[Influxd], db: &str, measurement: &str) -> u64 {
    circle.iter().map(|s| s.count(db, measurement)).sum()
}

/// Creates `db` on every server.
fn create_db(servers: &[Influxd], db: &str) {
    for s in servers {
        s.create_db(db);
    }
}

#[test]
fn datagrams_are_written_like_write_and_refused_lines_are_counted() {
    let (servers, mut config) = two_by_two();
    let db = unique_db("udp");
    create_db(&servers, &db);
    for s in &servers {
        s.exec(
            &db,
            &format!("CREATE RETENTION POLICY week ON {db} DURATION 7d REPLICATION 1"),
        );
    }
    let (plain, weekly) = (udp::free_port(), udp::free_port());
    config["udp"] = json!([
        {"bind_addr": addr(plain), "database": db, "batch_timeout": "100ms"},
        // Seconds into the `week` policy (and influxd's names of two keys).
        {"bind-address": addr(weekly), "database": db, "retention_policy": "week",
         "precision": "s", "batch-timeout": "100ms"},
    ]);
    let proxy = Proxy::start(config);

    // Several lines per datagram, bad ones beside good ones; the first datagram has no final
    // newline and must not run into the next one.
    udp::send(
        plain,
        &[
            "cpu,host=a v=1 1600000000000000000\ncpu,host=b v=2 1600000000000000000",
            "mem v=3 1600000000000000000\nthis is not line protocol\nmem v=oops 1600000000000000001\n",
            "disk v=4 1600000000000000000",
        ],
    );
    // Now, in seconds: older points are beyond the policy (and refused as such).
    let now_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    udp::send(weekly, &[format!("temp,room=k v=21.5 {now_s}")]);
    assert!(
        wait_until(EFFECT, || points(&proxy, plain) == 4.0
            && points(&proxy, weekly) == 1.0),
        "points queued: {} and {}\n{}",
        points(&proxy, plain),
        points(&proxy, weekly),
        proxy.log()
    );
    let refused = |reason| {
        metric(
            &proxy,
            "influx_proxy_udp_lines_refused_total",
            plain,
            Some(reason),
        )
    };
    assert_eq!(refused("parse"), 2.0);
    assert_eq!(
        refused("storage") + refused("batch") + refused("queue"),
        0.0
    );
    assert_eq!(
        metric(&proxy, "influx_proxy_udp_datagrams_total", plain, None),
        3.0
    );
    assert!(proxy.log().contains("UDP lines refused"), "{}", proxy.log());

    proxy.wait_delivered();
    for circle in servers.chunks(2) {
        assert_eq!(circle_count(circle, &db, "cpu"), 2);
        assert_eq!(circle_count(circle, &db, "mem"), 1);
        assert_eq!(circle_count(circle, &db, "disk"), 1);
        assert_eq!(
            circle_count(circle, &db, "temp"),
            0,
            "not in the default policy"
        );
        // The timestamp was read in seconds.
        let q = format!(
            "SELECT v FROM week.temp WHERE time >= {now_s}s AND time < {}s",
            now_s + 1
        );
        let weekly: Vec<Value> = circle
            .iter()
            .flat_map(|s| {
                s.query(&db, &q)["results"][0]["series"][0]["values"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .collect();
        assert_eq!(weekly.len(), 1, "{weekly:?}");
        assert_eq!(weekly[0][1], json!(21.5));
    }
}

#[test]
fn batches_go_out_at_batch_size_or_batch_timeout_and_a_graceful_stop_writes_the_rest() {
    let (servers, mut config) = two_by_two();
    let db = unique_db("udpbatch");
    create_db(&servers, &db);
    let (timed, sized) = (udp::free_port(), udp::free_port());
    config["udp"] = json!([
        {"bind_addr": addr(timed), "database": db, "batch_size": 1000, "batch_timeout": 2},
        {"bind_addr": addr(sized), "database": db, "batch_size": 2, "batch_timeout": "1h"},
    ]);
    let mut proxy = Proxy::start(config);

    // A few points arriving within the timeout: one batch, written once it is 2 s old.
    udp::send(
        timed,
        &[
            "a v=1 1600000000000000000",
            "a v=2 1600000000000000001",
            "a v=3 1600000000000000002",
        ],
    );
    assert!(
        wait_until(EFFECT, || points(&proxy, timed) == 3.0),
        "{}",
        proxy.log()
    );
    assert_eq!(batches(&proxy, timed), 1.0);

    // Two lines make a batch: four go out at once, the fifth waits for its hour...
    udp::send(
        sized,
        &[
            "b v=1 1600000000000000000",
            "b v=2 1600000000000000001",
            "b v=3 1600000000000000002\nb v=4 1600000000000000003",
            "b v=5 1600000000000000004",
        ],
    );
    assert!(
        wait_until(EFFECT, || points(&proxy, sized) == 4.0),
        "{}",
        proxy.log()
    );
    assert_eq!(batches(&proxy, sized), 2.0);

    // ... or for a graceful stop, which writes it.
    assert!(proxy.terminate().success());
    proxy.restart();
    proxy.wait_delivered();
    for circle in servers.chunks(2) {
        assert_eq!(circle_count(circle, &db, "a"), 3);
        assert_eq!(circle_count(circle, &db, "b"), 5);
    }
}

#[test]
fn a_reload_binds_new_listeners_updates_kept_ones_closes_removed_ones_or_applies_nothing() {
    let (servers, mut config) = two_by_two();
    let db = unique_db("udpreload");
    create_db(&servers, &db);
    let (first, second, disabled) = (udp::free_port(), udp::free_port(), udp::free_port());
    let listener =
        |port: u16| json!({"bind_addr": addr(port), "database": db, "batch_timeout": "100ms"});
    let off = json!({"bind_addr": addr(disabled), "database": db, "enabled": false});
    config["udp"] = json!([listener(first), off]);
    let proxy = Proxy::start(config.clone());
    assert!(!udp::is_free(first));
    assert!(udp::is_free(disabled), "a disabled listener binds nothing");

    // Reload: `first` removed, `second` added.
    config["udp"] = json!([listener(second), off]);
    proxy.rewrite_config(config.clone());
    proxy.sighup();
    // Sent until the new listener reads it (the same point every time: stored once).
    assert!(
        wait_until(EFFECT, || {
            udp::send(second, &["r v=1 1600000000000000000"]);
            points(&proxy, second) >= 1.0
        }),
        "{}",
        proxy.log()
    );
    assert!(
        wait_until(EFFECT, || udp::is_free(first)),
        "the removed listener's socket is still open"
    );

    // A reload whose new listener cannot bind applies nothing: `second` is not removed.
    let taken = udp::free_port();
    let _holder = UdpSocket::bind(("127.0.0.1", taken)).unwrap();
    let mut bad = config.clone();
    bad["udp"] = json!([listener(taken)]);
    proxy.rewrite_config(bad);
    proxy.sighup();
    let refusal = format!("cannot listen on UDP {}", addr(taken));
    assert!(
        wait_until(EFFECT, || proxy.log().contains(&refusal)),
        "{}",
        proxy.log()
    );
    assert!(proxy.log().contains("Config reload refused"));
    let before = points(&proxy, second);
    udp::send(second, &["r v=2 1600000000000000001"]);
    assert!(
        wait_until(EFFECT, || points(&proxy, second) > before),
        "the running listener stopped: {}",
        proxy.log()
    );
    assert!(udp::is_free(disabled));

    // Changed in place, on the same socket: another database and a smaller read buffer.
    let other = unique_db("udpreload");
    create_db(&servers, &other);
    let buffer = || metric(&proxy, "influx_proxy_udp_read_buffer_bytes", second, None);
    let default = buffer();
    config["udp"] = json!([
        {"bind_addr": addr(second), "database": other, "batch_timeout": "100ms",
         "read_buffer": 4096},
        off,
    ]);
    proxy.rewrite_config(config);
    proxy.sighup();
    assert!(
        wait_until(EFFECT, || buffer() > 0.0 && buffer() < default),
        "read buffer {} (was {default})\n{}",
        buffer(),
        proxy.log()
    );
    let before = points(&proxy, second);
    udp::send(second, &["r v=3 1600000000000000002"]);
    assert!(wait_until(EFFECT, || points(&proxy, second) > before));

    proxy.wait_delivered();
    for circle in servers.chunks(2) {
        assert_eq!(circle_count(circle, &db, "r"), 2);
        assert_eq!(circle_count(circle, &other, "r"), 1);
    }
}

#[test]
fn datagrams_the_kernel_drops_for_a_full_read_buffer_are_counted() {
    let (servers, mut config) = two_by_two();
    let db = unique_db("udpkernel");
    create_db(&servers, &db);
    let port = udp::free_port();
    config["udp"] = json!([{"bind_addr": addr(port), "database": db, "read_buffer": 4096,
                            "batch_timeout": "100ms"}]);
    let proxy = Proxy::start(config);
    let granted = metric(&proxy, "influx_proxy_udp_read_buffer_bytes", port, None);
    let default: f64 = std::fs::read_to_string("/proc/sys/net/core/rmem_default")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        granted > 0.0 && granted < default,
        "read_buffer 4096 was granted {granted} (default {default})"
    );

    // Nothing reads the socket while the proxy is stopped: its small buffer overflows.
    let sent = 200;
    let datagrams: Vec<String> = (0..sent)
        .map(|i| format!("k,i={i} v=\"{}\" 1600000000000000000", "x".repeat(1000)))
        .collect();
    proxy.signal(Signal::SIGSTOP);
    udp::send(port, &datagrams);
    proxy.signal(Signal::SIGCONT);
    let read = || metric(&proxy, "influx_proxy_udp_datagrams_total", port, None);
    let dropped = || metric(&proxy, "influx_proxy_udp_kernel_drops_total", port, None);
    assert!(
        wait_until(EFFECT, || read() > 0.0 && read() + dropped() == sent as f64),
        "read {} + dropped by the kernel {} != sent {sent}\n{}",
        read(),
        dropped(),
        proxy.log()
    );
    assert!(dropped() > 0.0);
    // Logged too, from the listener's poll of the same count (every second).
    assert!(wait_until(EFFECT, || proxy
        .log()
        .contains("The kernel dropped UDP datagrams")));
}

#[test]
fn a_udp_address_that_cannot_be_bound_fails_the_start() {
    let mut config = circles_config(&[&["http://127.0.0.1:9"]]);
    // TEST-NET-1: no interface of this host has it.
    config["udp"] = json!([{"bind_addr": "192.0.2.1:8089", "database": "d"}]);
    let err = Proxy::try_start_binary(binary(), config)
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("cannot listen on UDP 192.0.2.1:8089 (udp[0].bind_addr)"),
        "{err}"
    );
}
