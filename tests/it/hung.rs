//! A hung backend: influxd SIGSTOPped, so the kernel still accepts its connections but
//! nothing answers. Reads already sent to it fail over to the other circle within
//! `query_timeout` (InfluxQL, Flux and Prometheus remote read alike); its health check, left
//! unanswered for `check_interval`, marks it inactive, so later reads go straight elsewhere;
//! once it answers again it is active again.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use influx_proxy::prom::MatchType;
use serde_json::json;

use crate::prom::{decode_read_response, post_raw_within, read_body, series, write_body};
use crate::support::http::{self, wait_until, Resp};
use crate::support::influxd::{quote_ident, Influxd};
use crate::support::proxy::{circles_config, two_by_two, two_by_two_index, Proxy};
use crate::support::unique_db;

/// The `query_timeout` the proxy runs with (seconds).
const QUERY_TIMEOUT_SECS: u64 = 2;
/// Longest a read may take while a backend hangs: one `query_timeout` and a failover, with a
/// wide margin for a busy machine. Without a configurable timeout such a read waited 300 s;
/// the client gives up at this bound, so the test fails there instead of hanging.
const READ_BOUND: Duration = Duration::from_secs(20);
/// How long delivery and health checks may take to show.
const SETTLE: Duration = Duration::from_secs(60);
/// The measurement read through InfluxQL and Flux.
const MEASUREMENT: &str = "cpu_load";
/// `/metrics`' gauge of a backend's health.
const ACTIVE: &str = "influx_proxy_backend_active";

/// One kind of read through the proxy, checked: it panics unless the answer is the data (or,
/// for Flux, which influxd 1.6.7 lacks, influxd's own answer) and came within [`READ_BOUND`].
type Read<'a> = Box<dyn Fn() + 'a>;

#[test]
fn reads_fail_over_from_a_hung_backend_within_query_timeout_then_avoid_it() {
    let (servers, mut config) = two_by_two();
    // A health check waits up to its interval (15 s here, write_timeout being longer): the
    // reads below meet the hung backend before any check can have noticed it.
    config["query_timeout"] = json!(QUERY_TIMEOUT_SECS);
    config["check_interval"] = json!(15);
    config["write_timeout"] = json!(30);
    let proxy = Proxy::start(config);
    let db = unique_db("hung");
    let created = http::query_post(
        &proxy.url,
        &[("q", &format!("CREATE DATABASE {}", quote_ident(&db)))],
    );
    assert_eq!(created.status, 200, "{}", created.body);

    let owners = proxy.replica_names(&db, MEASUREMENT);
    let (hung_name, hung, other) = (
        owners[0].clone(),
        two_by_two_index(&owners[0]),
        two_by_two_index(&owners[1]),
    );
    // A Prometheus metric whose owner in circle 1 is the same backend.
    let metric = (0..64)
        .map(|i| format!("prom_hung_{i}"))
        .find(|m| proxy.replica_names(&db, m)[0] == hung_name)
        .expect("a metric owned by the backend to hang");
    let prom_other = two_by_two_index(&proxy.replica_names(&db, &metric)[1]);

    let written = http::write(
        &proxy.url,
        &db,
        format!("{MEASUREMENT},host=a v=1 1000000000\n{MEASUREMENT},host=b v=2 2000000000\n"),
    );
    assert_eq!(written.status, 204, "{}", written.body);
    let t = now_ms() - 10_000;
    let prom_write = format!(
        "{}/api/v1/prom/write?db={}",
        proxy.url,
        http::urlencode(&db)
    );
    let samples = write_body(vec![series(
        &[("__name__", &metric), ("job", "it")],
        &[(5.0, t), (6.0, t + 1)],
    )]);
    assert_eq!(
        post_raw_within(&prom_write, &samples, READ_BOUND).status,
        204
    );
    for (i, mm) in [
        (hung, MEASUREMENT),
        (other, MEASUREMENT),
        (hung, metric.as_str()),
        (prom_other, metric.as_str()),
    ] {
        let s = &servers[i];
        assert!(
            wait_until(SETTLE, || s.count(&db, mm) == 2),
            "{mm} not delivered to backend {i}"
        );
    }
    assert!(
        wait_until(SETTLE, || proxy.metric(ACTIVE, "") == 4.0),
        "{}",
        proxy.log()
    );

    let influxql = || check_influxql(&proxy, &db);
    let flux_answer = flux(&servers[other].url, &db);
    assert_eq!(flux_answer.status, 404, "influxd 1.6.7 has no Flux");
    let flux_read = || {
        let r = flux(&proxy.url, &db);
        assert_eq!(
            (r.status, r.body.as_str()),
            (flux_answer.status, flux_answer.body.as_str()),
            "Flux: the hung backend's twin in circle 2 answers"
        );
    };
    let prom_read = || check_remote_read(&proxy, &db, &metric, t);
    let reads: [(&str, &str, Read<'_>); 3] = [
        (
            "InfluxQL",
            "Query failed; trying another circle.",
            Box::new(influxql),
        ),
        ("Flux", MEASUREMENT, Box::new(flux_read)),
        ("remote read", metric.as_str(), Box::new(prom_read)),
    ];
    let failovers = |marker: &str| {
        proxy
            .log()
            .lines()
            .filter(|l| {
                l.contains("trying another circle")
                    && l.contains(&hung_name)
                    && l.contains("timeout")
                    && l.contains(marker)
            })
            .count()
    };

    servers[hung].pause();
    // Circles take turns, so one of two reads in a row tries the hung backend first: it
    // must still get the data, from circle 2, after one query_timeout.
    for (kind, marker, read) in &reads {
        let before = failovers(marker);
        let took = (0..4)
            .find_map(|_| {
                let started = Instant::now();
                read();
                let took = started.elapsed();
                (failovers(marker) > before).then_some(took)
            })
            .unwrap_or_else(|| panic!("{kind}: no read met the hung backend\n{}", proxy.log()));
        eprintln!("{kind}: the first read sent to the hung backend answered in {took:?}");
        assert!(
            took >= Duration::from_secs(QUERY_TIMEOUT_SECS),
            "{kind}: it waited for query_timeout"
        );
    }

    // Its health check goes unanswered: inactive, and reads no longer try it.
    assert!(
        wait_until(SETTLE, || proxy.metric(ACTIVE, &hung_name) == 0.0),
        "{}",
        proxy.log()
    );
    for (kind, marker, read) in &reads {
        let before = failovers(marker);
        for _ in 0..4 {
            let started = Instant::now();
            read();
            eprintln!(
                "{kind}: a read once the backend is inactive answered in {:?}",
                started.elapsed()
            );
        }
        assert_eq!(
            failovers(marker),
            before,
            "{kind}: a read tried the inactive backend"
        );
    }

    // Its twin hangs too: no circle can answer, which is a timeout (504), InfluxDB-shaped.
    servers[other].pause();
    let none = get_within(&select_url(&proxy, &db));
    servers[other].resume();
    assert_eq!(none.status, 504, "{}", none.body);
    assert!(
        none.json()["error"]
            .as_str()
            .unwrap()
            .starts_with("backends unavailable: timeout after"),
        "{}",
        none.body
    );

    servers[hung].resume();
    assert!(
        wait_until(SETTLE, || proxy.metric(ACTIVE, "") == 4.0),
        "the backend answers its health check again: active\n{}",
        proxy.log()
    );
    for (_, _, read) in &reads {
        read();
    }
}

#[test]
fn a_backend_that_does_not_answer_its_health_check_within_check_interval_is_inactive() {
    let influxd = Influxd::spawn();
    let mut config = circles_config(&[&[influxd.url.as_str()]]);
    // A ping waits for its interval (1 s), not for the 60 s a write may take.
    config["check_interval"] = json!(1);
    config["write_timeout"] = json!(60);
    let proxy = Proxy::start(config);
    let name = "influxdb-1-1";
    let db = unique_db("ping");
    assert!(wait_until(SETTLE, || proxy.metric(ACTIVE, name) == 1.0));
    influxd.pause();
    let down = wait_until(Duration::from_secs(15), || {
        proxy.metric(ACTIVE, name) == 0.0
    });
    // Writes are still acknowledged, queued for it.
    let written = http::write(&proxy.url, &db, "m v=1 1\n");
    influxd.resume();
    assert!(down, "still active 15 s into the hang\n{}", proxy.log());
    assert_eq!(written.status, 204, "{}", written.body);
    assert!(
        wait_until(SETTLE, || proxy.metric(ACTIVE, name) == 1.0),
        "active again once it answers\n{}",
        proxy.log()
    );
    assert!(wait_until(SETTLE, || influxd.count(&db, "m") == 1));
}

fn now_ms() -> i64 {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis();
    i64::try_from(ms).unwrap()
}

fn select_url(proxy: &Proxy, db: &str) -> String {
    format!(
        "{}/query?db={}&q={}",
        proxy.url,
        http::urlencode(db),
        http::urlencode(&format!("SELECT * FROM {MEASUREMENT}"))
    )
}

/// GET that fails the test when no answer comes within [`READ_BOUND`].
fn get_within(url: &str) -> Resp {
    http::request_within("GET", url, None, &[], READ_BOUND)
        .unwrap_or_else(|e| panic!("GET {url}: no answer within {READ_BOUND:?}: {e}"))
}

/// `SELECT *` of the measurement answers both points.
fn check_influxql(proxy: &Proxy, db: &str) {
    let r = get_within(&select_url(proxy, db));
    assert_eq!(r.status, 200, "{}", r.body);
    let values = &r.json()["results"][0]["series"][0]["values"];
    assert_eq!(values.as_array().map(Vec::len), Some(2), "{}", r.body);
}

/// A Flux read of the measurement from `base_url` (the proxy or an influxd).
fn flux(base_url: &str, db: &str) -> Resp {
    let q = format!(
        "from(bucket: \"{db}/autogen\")\n  |> range(start: 0)\n  |> filter(fn: (r) => r._measurement == \"{MEASUREMENT}\")"
    );
    let url = format!("{base_url}/api/v2/query?org=any");
    http::request_within(
        "POST",
        &url,
        Some(q.as_bytes()),
        &[("Content-Type", "application/vnd.flux")],
        READ_BOUND,
    )
    .unwrap_or_else(|e| panic!("POST {url}: no answer within {READ_BOUND:?}: {e}"))
}

/// A remote read of `metric` answers its two samples.
fn check_remote_read(proxy: &Proxy, db: &str, metric: &str, t: i64) {
    let url = format!("{}/api/v1/prom/read?db={}", proxy.url, http::urlencode(db));
    let query = read_body(
        &[&[(MatchType::Eq, "__name__", metric)]],
        t - 1000,
        t + 1000,
    );
    let answer = post_raw_within(&url, &query, READ_BOUND);
    assert_eq!(answer.status, 200, "{}", answer.text());
    let got = decode_read_response(&answer.body);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].1, [5.0, 6.0]);
}
