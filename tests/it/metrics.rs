//! `/metrics` and `/debug/pprof/profile` end to end.

use std::io::Read;
use std::thread;
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::http::{self, wait_until};
use crate::support::proxy::{circles_config, two_by_two, Proxy};
use crate::support::{free_port, unique_db};

/// How long delivery or a health check may take (flush_time and
/// check_interval are 1 s).
const SETTLE: Duration = Duration::from_secs(30);

/// `name{labels} value` lines of a metrics document: the value of the
/// first sample whose name is `name` and whose labels include every pair.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| {
            let (series, _) = l.rsplit_once(' ').unwrap();
            let (n, rest) = series.split_once('{').unwrap_or((series, ""));
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")))
        })
        .map(|l| l.rsplit_once(' ').unwrap().1.parse().unwrap())
}

fn metrics(proxy: &Proxy) -> String {
    let resp = http::get(&format!("{}/metrics", proxy.url));
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(
        resp.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    resp.body
}

fn backend(name: &str) -> Vec<(&'static str, &str)> {
    vec![("backend", name)]
}

#[test]
fn metrics_show_queues_delivery_requests_and_process() {
    let (mut servers, config) = two_by_two();
    let proxy = Proxy::start(config);
    let db = unique_db("metrics");
    let mm = (0..200)
        .map(|i| format!("m{i}"))
        .find(|m| proxy.replica_names(&db, m)[0] == "influxdb-1-1")
        .unwrap();
    let other = proxy.replica_names(&db, &mm)[1].clone();

    // Delivered while everything is up.
    let resp = http::write(&proxy.url, &db, format!("{mm} v=1 1\n{mm} v=2 2\n"));
    assert_eq!(resp.status, 204, "{}", resp.body);
    assert!(wait_until(SETTLE, || {
        let text = metrics(&proxy);
        sample(
            &text,
            "influx_proxy_backend_delivered_points_total",
            &backend("influxdb-1-1"),
        ) == Some(2.0)
            && sample(
                &text,
                "influx_proxy_backend_delivered_points_total",
                &backend(&other),
            ) == Some(2.0)
    }));
    let text = metrics(&proxy);
    assert_eq!(
        sample(
            &text,
            "influx_proxy_backend_write_duration_seconds_count",
            &backend(&other)
        ),
        Some(1.0),
        "{text}"
    );

    // One backend down: its queue holds the writes, the others deliver.
    servers[0].stop();
    for i in 0..10 {
        let resp = http::write(&proxy.url, &db, format!("{mm} v={i} {}\n", 100 + i));
        assert_eq!(resp.status, 204, "{}", resp.body);
    }
    let down = backend("influxdb-1-1");
    assert!(
        wait_until(SETTLE, || {
            let text = metrics(&proxy);
            sample(&text, "influx_proxy_backend_active", &down) == Some(0.0)
                && sample(&text, "influx_proxy_backend_queue_records", &down)
                    .is_some_and(|v| v > 0.0)
                && sample(
                    &text,
                    "influx_proxy_backend_delivered_points_total",
                    &backend(&other),
                ) == Some(12.0)
                && sample(
                    &text,
                    "influx_proxy_backend_queue_oldest_record_age_seconds",
                    &down,
                )
                .is_some_and(|v| v > 0.0)
        }),
        "{}",
        metrics(&proxy)
    );
    let text = metrics(&proxy);
    let with_circle = [("circle", "circle-1"), ("backend", "influxdb-1-1")];
    assert!(sample(&text, "influx_proxy_backend_queue_bytes", &with_circle).unwrap() > 0.0);
    assert_eq!(
        sample(&text, "influx_proxy_backend_queue_points", &down),
        Some(10.0)
    );
    assert!(sample(&text, "influx_proxy_backend_state_changes_total", &down).unwrap() >= 1.0);
    assert_eq!(
        sample(
            &text,
            "influx_proxy_circle_active",
            &[("circle", "circle-1")]
        ),
        Some(0.0)
    );
    assert_eq!(
        sample(
            &text,
            "influx_proxy_circle_active",
            &[("circle", "circle-2")]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            "influx_proxy_backend_dead_letter_points_total",
            &down
        ),
        Some(0.0)
    );
    assert!(
        sample(
            &text,
            "influx_proxy_http_requests_total",
            &[("path", "/write"), ("status", "204")]
        )
        .unwrap()
            >= 11.0,
        "{text}"
    );
    assert!(
        sample(
            &text,
            "influx_proxy_http_request_duration_seconds_count",
            &[("path", "/write")]
        )
        .unwrap()
            >= 11.0
    );
    let bad = http::write(&proxy.url, &db, "not line protocol\n");
    assert_eq!(bad.status, 400);
    let text = metrics(&proxy);
    assert_eq!(
        sample(
            &text,
            "influx_proxy_http_request_errors_total",
            &[("path", "/write"), ("status", "4xx")]
        ),
        Some(1.0),
        "{text}"
    );
    for name in [
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
        "process_open_fds",
        "process_start_time_seconds",
    ] {
        assert!(
            sample(&text, name, &[]).is_some_and(|v| v > 0.0),
            "{name}: {text}"
        );
    }
    assert!(text.contains("# TYPE influx_proxy_backend_write_duration_seconds histogram\n"));
    // A handful of writes leaves the CPU idle: nothing was paced (src/pace.rs).
    for (name, kind) in [
        ("influx_proxy_write_pacing", "gauge"),
        ("influx_proxy_writes_paced_total", "counter"),
        ("influx_proxy_write_pace_wait_seconds_total", "counter"),
    ] {
        assert!(text.contains(&format!("# TYPE {name} {kind}\n")), "{text}");
        assert_eq!(sample(&text, name, &[]), Some(0.0), "{name}: {text}");
    }

    // Back up: the backlog drains.
    servers[0].start();
    assert!(
        wait_until(SETTLE, || {
            let text = metrics(&proxy);
            sample(&text, "influx_proxy_backend_active", &down) == Some(1.0)
                && sample(&text, "influx_proxy_backend_queue_records", &down) == Some(0.0)
                && sample(
                    &text,
                    "influx_proxy_backend_queue_oldest_record_age_seconds",
                    &down,
                ) == Some(0.0)
                && sample(&text, "influx_proxy_backend_delivered_points_total", &down) == Some(12.0)
        }),
        "{}",
        metrics(&proxy)
    );
}

/// GET with the response body as bytes.
fn get_bytes(url: &str) -> (u16, Vec<u8>) {
    let resp = match ureq::get(url).timeout(Duration::from_secs(60)).call() {
        Ok(r) | Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("GET {url}: {e}"),
    };
    let status = resp.status();
    let mut body = Vec::new();
    resp.into_reader().read_to_end(&mut body).unwrap();
    (status, body)
}

fn config_with(extra: Value) -> Value {
    // A backend nobody listens on: these tests need no InfluxDB.
    let url = format!("http://127.0.0.1:{}", free_port());
    let mut config = circles_config(&[&[url.as_str()]]);
    for (k, v) in extra.as_object().unwrap() {
        config[k] = v.clone();
    }
    config
}

#[test]
fn metrics_and_pprof_need_auth_and_pprof_only_when_enabled() {
    let auth = json!({ "username": "admin", "password": "s3cret" });
    let proxy = Proxy::start(config_with(auth.clone()));
    let creds = "u=admin&p=s3cret";

    assert_eq!(http::get(&format!("{}/metrics", proxy.url)).status, 401);
    assert_eq!(
        http::get(&format!("{}/metrics?u=admin&p=wrong", proxy.url)).status,
        401
    );
    let ok = http::get(&format!("{}/metrics?{creds}", proxy.url));
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert!(
        ok.body.contains("influx_proxy_backend_active{"),
        "{}",
        ok.body
    );
    let basic = http::request(
        "GET",
        &format!("{}/metrics", proxy.url),
        None,
        &[("Authorization", "Basic YWRtaW46czNjcmV0")],
    )
    .unwrap();
    assert_eq!(basic.status, 200);

    // pprof_enabled is false by default: not found, with or without auth.
    let off = http::get(&format!(
        "{}/debug/pprof/profile?seconds=1&{creds}",
        proxy.url
    ));
    assert_eq!(off.status, 404, "{}", off.body);

    // Enabled by a reload.
    let mut config = proxy.config();
    config["pprof_enabled"] = json!(true);
    proxy.rewrite_config(config);
    proxy.sighup();
    assert!(
        wait_until(SETTLE, || http::get(&format!(
            "{}/debug/pprof/profile?seconds=1",
            proxy.url
        ))
        .status
            == 401),
        "pprof was not enabled by the reload; log:\n{}",
        proxy.log()
    );
    let bad = http::get(&format!(
        "{}/debug/pprof/profile?seconds=301&{creds}",
        proxy.url
    ));
    assert_eq!(bad.status, 400, "{}", bad.body);

    // One profile at a time.
    let url = format!("{}/debug/pprof/profile?seconds=2&{creds}", proxy.url);
    let first = thread::spawn(move || get_bytes(&url));
    thread::sleep(Duration::from_millis(500));
    let second = http::get(&format!(
        "{}/debug/pprof/profile?seconds=1&{creds}",
        proxy.url
    ));
    assert_eq!(second.status, 409, "{}", second.body);
    // The proxy keeps serving while profiling.
    assert_eq!(http::get(&format!("{}/ping", proxy.url)).status, 204);
    let (status, body) = first.join().unwrap();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(&body[..2], &[0x1f, 0x8b], "gzip");
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(&body[..])
        .read_to_end(&mut raw)
        .unwrap();
    assert!(!raw.is_empty(), "an empty profile.proto");

    let (status, svg) = get_bytes(&format!(
        "{}/debug/pprof/profile?seconds=1&format=flamegraph&{creds}",
        proxy.url
    ));
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&svg));
    assert!(String::from_utf8_lossy(&svg).contains("<svg"));

    let text = http::get(&format!("{}/metrics?{creds}", proxy.url)).body;
    assert!(
        sample(
            &text,
            "influx_proxy_http_requests_total",
            &[("path", "/debug/pprof/profile"), ("status", "409")]
        ) == Some(1.0),
        "{text}"
    );
}

/// What `influx-proxy top` and the Grafana dashboard turn into rates: points queued per backend
/// (only on the owners), reads answered per circle, and the queue's files on disk.
#[test]
fn points_queued_are_counted_per_backend_and_reads_per_circle() {
    let (_servers, config) = two_by_two();
    let proxy = Proxy::start(config);
    let db = unique_db("rates");
    let q = format!("CREATE DATABASE \"{db}\"");
    assert_eq!(http::query_post(&proxy.url, &[("q", &q)]).status, 200);
    let owners = proxy.replica_names(&db, "cpu");
    let body: String = (0..10).map(|i| format!("cpu v={i} {i}\n")).collect();
    assert_eq!(http::write(&proxy.url, &db, body).status, 204);
    let text = metrics(&proxy);
    for b in [
        "influxdb-1-1",
        "influxdb-1-2",
        "influxdb-2-1",
        "influxdb-2-2",
    ] {
        let want = if owners.iter().any(|o| o == b) {
            10.0
        } else {
            0.0
        };
        let queued = sample(
            &text,
            "influx_proxy_backend_queued_points_total",
            &backend(b),
        );
        assert_eq!(queued, Some(want), "{b}: {text}");
    }
    let reads = |text: &str| -> f64 {
        ["circle-1", "circle-2"]
            .iter()
            .map(|c| sample(text, "influx_proxy_circle_reads_total", &[("circle", c)]).unwrap())
            .sum()
    };
    assert_eq!(reads(&text), 0.0, "{text}");
    proxy.wait_delivered();
    for _ in 0..6 {
        let resp = http::query(&proxy.url, &db, "SELECT count(v) FROM cpu");
        assert_eq!(resp.status, 200, "{}", resp.body);
    }
    let text = metrics(&proxy);
    assert_eq!(
        reads(&text),
        6.0,
        "each read is answered by one circle: {text}"
    );
    for c in ["circle-1", "circle-2"] {
        let migrating = sample(&text, "influx_proxy_circle_migrating", &[("circle", c)]);
        assert_eq!(migrating, Some(0.0), "{text}");
    }
    let disk = sample(&text, "influx_proxy_wal_disk_bytes", &[]);
    assert!(disk.is_some_and(|d| d > 0.0), "{text}");
}
