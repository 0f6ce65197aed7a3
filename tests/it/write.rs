//! The write path end to end: proxy binary in front of four real influxd.

use std::time::Duration;

use influx_proxy::line_protocol::escape;
use serde_json::{json, Value};

use crate::support::http::{self, wait_until};
use crate::support::influxd::Influxd;
use crate::support::proxy::{two_by_two, Proxy};
use crate::support::{run_python, unique_db};

/// How long delivery may take in tests (flush_time is 1 s).
const DELIVERY: Duration = Duration::from_secs(30);

fn cluster(extra: Value) -> (Vec<Influxd>, Proxy) {
    let (servers, mut config) = two_by_two();
    if let (Some(obj), Some(extra)) = (config.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            obj.insert(k.clone(), v.clone());
        }
    }
    let proxy = Proxy::start(config);
    (servers, proxy)
}

fn server<'a>(servers: &'a [Influxd], name: &str) -> &'a Influxd {
    let index = match name {
        "influxdb-1-1" => 0,
        "influxdb-1-2" => 1,
        "influxdb-2-1" => 2,
        "influxdb-2-2" => 3,
        other => panic!("unknown backend {other}"),
    };
    &servers[index]
}

/// A measurement name whose owner in circle 1 is `backend`.
fn measurement_owned_by(proxy: &Proxy, db: &str, backend: &str) -> String {
    (0..200)
        .map(|i| format!("m{i}"))
        .find(|m| proxy.replica_names(db, m)[0] == backend)
        .unwrap()
}

fn health_of(proxy: &Proxy, backend: &str) -> Value {
    let health = http::get(&format!("{}/health", proxy.url)).json();
    health
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| c["backends"].as_array().unwrap().iter())
        .find(|b| b["name"] == backend)
        .cloned()
        .unwrap()
}

#[test]
fn placement_matches_replica_and_where_the_data_lands() {
    let (servers, proxy) = cluster(json!({}));
    let db = unique_db("place");
    let mut names: Vec<String> = (0..60).map(|i| format!("meas_{i}")).collect();
    names.push("measurement with spaces, commas".into());
    names.push("温度".into());
    let body: String = names
        .iter()
        .map(|m| {
            format!(
                "{},host=a value=1 1600000000000000000\n",
                escape::measurement(m)
            )
        })
        .collect();
    let resp = http::write(&proxy.url, &db, body);
    assert_eq!(resp.status, 204, "{}", resp.body);

    // Placement of the reference's test vectors (spec §4.4, hash_key idx).
    assert_eq!(
        proxy.replica_names("db1", "cpu"),
        ["influxdb-1-1", "influxdb-2-1"]
    );
    assert_eq!(
        proxy.replica_names("db1", "mem"),
        ["influxdb-1-2", "influxdb-2-2"]
    );
    assert_eq!(
        proxy.replica_names("telegraf", "mem"),
        ["influxdb-1-2", "influxdb-2-2"]
    );

    let owners: Vec<(String, Vec<String>)> = names
        .iter()
        .map(|m| (m.clone(), proxy.replica_names(&db, m)))
        .collect();
    let spread: std::collections::BTreeSet<&str> = owners
        .iter()
        .flat_map(|(_, o)| o.iter().map(String::as_str))
        .collect();
    assert_eq!(spread.len(), 4, "60 measurements use every backend");
    assert!(wait_until(DELIVERY, || {
        owners
            .iter()
            .all(|(m, o)| o.iter().all(|b| server(&servers, b).count(&db, m) == 1))
    }));
    for (m, o) in &owners {
        for name in [
            "influxdb-1-1",
            "influxdb-1-2",
            "influxdb-2-1",
            "influxdb-2-2",
        ] {
            let expected = u64::from(o.iter().any(|b| b == name));
            assert_eq!(
                server(&servers, name).count(&db, m),
                expected,
                "{m} on {name}"
            );
        }
    }
}

#[test]
fn gzip_bodies_and_precisions_are_honoured() {
    let (servers, proxy) = cluster(json!({}));
    let db = unique_db("prec");
    let cases = [
        ("n", "1600000000000000001", 1_600_000_000_000_000_001_i64),
        ("u", "1600000000000002", 1_600_000_000_000_002_000),
        ("ms", "1600000000003", 1_600_000_000_003_000_000),
        ("s", "1600000004", 1_600_000_004_000_000_000),
        ("m", "26666667", 1_600_000_020_000_000_000),
        ("h", "444445", 1_600_002_000_000_000_000),
    ];
    for (i, (precision, ts, _)) in cases.iter().enumerate() {
        let body = format!("prec,p={precision} v={i} {ts}\n");
        let resp = http::write_with(
            &proxy.url,
            &format!("db={db}&precision={precision}"),
            body,
            i % 2 == 0,
        );
        assert_eq!(resp.status, 204, "{precision}: {}", resp.body);
    }
    let owners = proxy.replica_names(&db, "prec");
    for owner in owners {
        let s = server(&servers, &owner);
        assert!(wait_until(DELIVERY, || s.count(&db, "prec") == 6));
        for (precision, _, want) in cases {
            let r = s.query(&db, &format!("SELECT v FROM prec WHERE p = '{precision}'"));
            let t = r["results"][0]["series"][0]["values"][0][0]
                .as_i64()
                .unwrap();
            assert_eq!(t, want, "{precision} on {owner}");
        }
    }
}

#[test]
fn points_without_timestamp_get_one_time_on_every_replica() {
    let (servers, proxy) = cluster(json!({}));
    let db = unique_db("stamp");
    let resp = http::write_with(
        &proxy.url,
        &format!("db={db}&precision=s"),
        "nots v=1\n",
        false,
    );
    assert_eq!(resp.status, 204, "{}", resp.body);
    let owners = proxy.replica_names(&db, "nots");
    let times: Vec<i64> = owners
        .iter()
        .map(|o| {
            let s = server(&servers, o);
            assert!(wait_until(DELIVERY, || s.count(&db, "nots") == 1));
            s.query(&db, "SELECT v FROM nots")["results"][0]["series"][0]["values"][0][0]
                .as_i64()
                .unwrap()
        })
        .collect();
    assert_eq!(times[0], times[1]);
    assert_eq!(
        times[0] % 1_000_000_000,
        0,
        "stamped in the request precision"
    );
}

#[test]
fn a_partial_write_keeps_good_lines_and_names_the_bad_one() {
    let (servers, proxy) = cluster(json!({}));
    let db = unique_db("partial");
    let body = "good v=1 1\nthis is not line protocol\n# comment\n\ngood v=2 2\nbad v=\n";
    let resp = http::write(&proxy.url, &db, body);
    assert_eq!(resp.status, 400, "{}", resp.body);
    let error = resp.json()["error"].as_str().unwrap().to_string();
    assert!(error.starts_with("partial write:"), "{error}");
    assert!(error.contains("this is not line protocol"), "{error}");
    assert!(error.contains("bad v="), "{error}");
    // influxd counts only points its storage dropped, not lines it could not parse.
    assert!(error.ends_with(" dropped=0"), "{error}");
    for owner in proxy.replica_names(&db, "good") {
        let s = server(&servers, &owner);
        assert!(wait_until(DELIVERY, || s.count(&db, "good") == 2));
    }
    let all_bad = http::write(&proxy.url, &db, "nope\n");
    assert_eq!(all_bad.status, 400);
    assert!(all_bad.json()["error"]
        .as_str()
        .unwrap()
        .starts_with("unable to parse 'nope'"));
}

#[test]
fn bad_requests_get_influx_shaped_errors_and_the_proxy_keeps_serving() {
    let (_servers, mut config) = two_by_two();
    config["db_list"] = json!(["allowed"]);
    let proxy = Proxy::start(config);
    let ping = http::get(&format!("{}/ping", proxy.url));
    assert_eq!(ping.status, 204);
    assert!(ping.header("X-Influxdb-Version").is_some());

    let cases = [
        ("", "m v=1", 400, "database not found"),
        ("db=other", "m v=1", 400, "database forbidden: other"),
        ("db=allowed&precision=x", "m v=1", 400, "invalid precision"),
    ];
    for (qs, body, status, message) in cases {
        let resp = http::write_with(&proxy.url, qs, body, false);
        assert_eq!(resp.status, status, "{qs}: {}", resp.body);
        assert!(
            resp.json()["error"].as_str().unwrap().contains(message),
            "{qs}: {}",
            resp.body
        );
        assert_eq!(resp.header("Content-Type"), Some("application/json"));
    }
    let get = http::get(&format!("{}/write?db=allowed", proxy.url));
    assert_eq!(get.status, 405);
    let corrupt = http::post(
        &format!("{}/write?db=allowed", proxy.url),
        b"\x1f\x8b\x08garbage",
        &[("Content-Encoding", "gzip")],
    );
    assert_eq!(corrupt.status, 400);
    assert!(corrupt.body.contains("gzip"), "{}", corrupt.body);
    let missing = http::get(&format!("{}/replica?db=x", proxy.url));
    assert_eq!(missing.status, 400);
    assert_eq!(http::write(&proxy.url, "allowed", "m v=1\n").status, 204);
}

#[test]
fn a_stopped_backend_queues_writes_and_gets_them_all_in_order_after_restart() {
    let (mut servers, proxy) = cluster(json!({}));
    let db = unique_db("outage");
    let mm = measurement_owned_by(&proxy, &db, "influxdb-1-1");
    servers[0].stop();
    for i in 0..50 {
        // Same series and timestamp each time: InfluxDB keeps the last
        // write, so the final value proves the replay order.
        let body = format!("{mm},k=same v={i} 1000\n{mm},k=seq v={i} {}\n", 2000 + i);
        let resp = http::write(&proxy.url, &db, body);
        assert_eq!(resp.status, 204, "{}", resp.body);
    }
    assert!(wait_until(Duration::from_secs(15), || {
        let h = health_of(&proxy, "influxdb-1-1");
        h["active"] == false && h["backlog"] == true
    }));
    let other = proxy.replica_names(&db, &mm)[1].clone();
    let s2 = server(&servers, &other);
    assert!(wait_until(DELIVERY, || s2.count(&db, &mm) == 51));

    servers[0].start();
    let s1 = &servers[0];
    assert!(wait_until(DELIVERY, || s1.count(&db, &mm) == 51));
    let last = s1.query(&db, &format!("SELECT v FROM \"{mm}\" WHERE k = 'same'"));
    assert_eq!(
        last["results"][0]["series"][0]["values"][0][1].as_f64(),
        Some(49.0)
    );
    assert!(wait_until(DELIVERY, || {
        let h = health_of(&proxy, "influxdb-1-1");
        h["active"] == true && h["backlog"] == false
    }));
}

/// Count of write requests the proxy sent to `backend` (from `/metrics`).
fn write_requests(proxy: &Proxy, backend: &str) -> u64 {
    let text = http::get(&format!("{}/metrics", proxy.url)).body;
    let prefix = "influx_proxy_backend_write_duration_seconds_count{";
    text.lines()
        .filter(|l| l.starts_with(prefix) && l.contains(&format!("backend=\"{backend}\"")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[test]
fn a_backlog_drains_in_concurrent_requests_without_reordering_any_series() {
    let (mut servers, proxy) = cluster(json!({ "write_concurrency": 4 }));
    let db = unique_db("lanes");
    let mm = measurement_owned_by(&proxy, &db, "influxdb-1-1");
    servers[0].stop();
    // 6 versions of 1,999 series at one timestamp: a backlog of 11,994
    // points that drains as one batch split over 4 requests. InfluxDB keeps
    // the last write of a (series, time), so any series whose versions were
    // spread over concurrent requests would likely end below version 5.
    // An odd series count, so a split by position would scatter versions.
    const SERIES: usize = 1_999;
    for version in 0..6 {
        let body: String = (0..SERIES)
            .map(|s| format!("{mm},s=s{s} v={version} 1000\n"))
            .collect();
        let resp = http::write(&proxy.url, &db, body);
        assert_eq!(resp.status, 204, "{}", resp.body);
    }
    assert!(wait_until(Duration::from_secs(15), || {
        health_of(&proxy, "influxdb-1-1")["backlog"] == true
    }));
    let before = write_requests(&proxy, "influxdb-1-1");
    servers[0].start();
    let s1 = &servers[0];
    assert!(wait_until(DELIVERY, || s1.count(&db, &mm) == SERIES as u64));
    assert!(wait_until(DELIVERY, || {
        health_of(&proxy, "influxdb-1-1")["backlog"] == false
    }));
    let r = s1.query(&db, &format!("SELECT min(v), max(v) FROM \"{mm}\""));
    let row = &r["results"][0]["series"][0]["values"][0];
    assert_eq!(
        (row[1].as_f64(), row[2].as_f64()),
        (Some(5.0), Some(5.0)),
        "{r}"
    );
    let requests = write_requests(&proxy, "influxdb-1-1") - before;
    assert!(
        requests >= 4,
        "11,994 points went out in {requests} requests"
    );
}

#[test]
fn kill_9_of_the_proxy_with_a_backlog_loses_nothing() {
    let (mut servers, mut proxy) = cluster(json!({}));
    let db = unique_db("kill9");
    let mm = measurement_owned_by(&proxy, &db, "influxdb-1-1");
    servers[0].stop();
    for i in 0..100 {
        let resp = http::write(&proxy.url, &db, format!("{mm} v={i} {i}\n"));
        assert_eq!(resp.status, 204, "{}", resp.body);
    }
    proxy.kill9();
    servers[0].start();
    proxy.restart();
    let s1 = &servers[0];
    assert!(wait_until(DELIVERY, || s1.count(&db, &mm) == 100));
    let other = proxy.replica_names(&db, &mm)[1].clone();
    assert!(wait_until(DELIVERY, || server(&servers, &other)
        .count(&db, &mm)
        == 100));
}

#[test]
fn a_full_queue_answers_503_and_loses_nothing_it_accepted() {
    let (mut servers, proxy) = cluster(json!({ "wal_max_bytes": 4096 }));
    let db = unique_db("full");
    let mm = measurement_owned_by(&proxy, &db, "influxdb-1-1");
    servers[0].stop();
    let mut accepted = 0u64;
    let mut refused = None;
    for i in 0..500 {
        let resp = http::write(
            &proxy.url,
            &db,
            format!("{mm},pad=xxxxxxxxxxxxxxxx v={i} {i}\n"),
        );
        match resp.status {
            204 => accepted += 1,
            503 => {
                refused = Some(resp);
                break;
            }
            other => panic!("unexpected {other}: {}", resp.body),
        }
    }
    let refused = refused.expect("the queue filled up");
    assert!(
        refused.json()["error"].as_str().unwrap().contains("full"),
        "{}",
        refused.body
    );
    assert!(accepted > 10);
    // A write for the healthy backends still goes through.
    let healthy = measurement_owned_by(&proxy, &db, "influxdb-1-2");
    assert_eq!(
        http::write(&proxy.url, &db, format!("{healthy} v=1 1\n")).status,
        204
    );

    servers[0].start();
    let s1 = &servers[0];
    assert!(wait_until(DELIVERY, || s1.count(&db, &mm) == accepted));
    let other = proxy.replica_names(&db, &mm)[1].clone();
    assert_eq!(
        server(&servers, &other).count(&db, &mm),
        accepted,
        "refused writes reached no circle"
    );
    // Room again: writes are accepted.
    assert!(wait_until(DELIVERY, || http::write(
        &proxy.url,
        &db,
        format!("{mm} v=1 999999\n")
    )
    .status
        == 204));
}

#[test]
fn the_v2_write_api_takes_a_real_v2_client_and_answers_like_influxdb() {
    let (_servers, proxy) = cluster(json!({ "username": "u", "password": "p:w" }));
    let auth = "u=u&p=p%3Aw";
    let url = |path: &str| format!("{}{path}", proxy.url);
    let create = http::get(&url(&format!("/query?{auth}&q=CREATE%20DATABASE%20v2db")));
    assert_eq!(create.status, 200, "{}", create.body);

    // influxdb-client 1.x for InfluxDB 2, as a Telegraf-less user writes: Token user:password,
    // a bucket with and without its retention policy, second precision, a batch of records.
    let script = format!(
        "from influxdb_client import InfluxDBClient, WritePrecision\n\
         from influxdb_client.client.write_api import SYNCHRONOUS\n\
         c = InfluxDBClient(url='{}', token='u:p:w', org='ignored')\n\
         w = c.write_api(write_options=SYNCHRONOUS)\n\
         w.write(bucket='v2db/autogen', record=['v2,host=a v=1i 1600000000', 'v2,host=b v=2i 1600000001'], write_precision=WritePrecision.S)\n\
         w.write(bucket='v2db', record='v2b,host=c v=3.5 1600000002000', write_precision=WritePrecision.MS)\n\
         try:\n\
         \x20   w.write(bucket='v2db', record='v2 v=\"text\" 1600000003', write_precision=WritePrecision.S)\n\
         \x20   raise SystemExit('a conflicting field type was accepted')\n\
         except Exception as e:\n\
         \x20   assert getattr(e, 'status', None) == 400, e\n\
         \x20   assert 'field type conflict' in str(e.body), e.body\n\
         print('v2 ok')\n",
        proxy.url
    );
    run_python("influxdb_client", "pip install influxdb-client", &script);
    let select = |q: &str| {
        http::get(&url(&format!(
            "/query?{auth}&db=v2db&epoch=s&q={}",
            http::urlencode(q)
        )))
        .json()["results"][0]["series"][0]["values"]
            .clone()
    };
    assert!(wait_until(DELIVERY, || select("SELECT host, v FROM v2")
        == json!([[1600000000, "a", 1], [1600000001, "b", 2]])));
    assert!(wait_until(DELIVERY, || select("SELECT host, v FROM v2b")
        == json!([[1600000002, "c", 3.5]])));

    // The v2 API's own refusals, with InfluxDB 1.8's texts.
    let post = |query: &str, body: &str, token: &str| {
        let header = format!("Token {token}");
        http::post(
            &url(&format!("/api/v2/write?{query}")),
            body.as_bytes(),
            &[("Authorization", &header)],
        )
    };
    let error = |r: &http::Resp| r.json()["error"].as_str().unwrap_or_default().to_string();
    let r = post("bucket=v2db", "v2 v=1i 1", "u:wrong");
    assert_eq!((r.status, error(&r)), (401, "authentication failed".into()));
    let r = post("org=x", "v2 v=1i 1", "u:p:w");
    assert_eq!(r.status, 404, "{}", r.body);
    assert!(error(&r).contains("is missing a slash"), "{}", r.body);
    let r = post("bucket=/autogen", "v2 v=1i 1", "u:p:w");
    assert_eq!(
        (r.status, error(&r)),
        (
            404,
            "bucket name \"/autogen\" is in db/rp form but has an empty database".into()
        )
    );
    let r = post("bucket=v2db&precision=h", "v2 v=1i 1", "u:p:w");
    assert_eq!(
        (r.status, error(&r)),
        (400, "invalid precision \"h\" (use ns, us, ms or s)".into())
    );
    let r = post(
        "bucket=v2db&precision=s",
        "v2 v=1i 1600000009\nbad line\n",
        "u:p:w",
    );
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(
        error(&r).starts_with("partial write: unable to parse 'bad line'"),
        "{}",
        r.body
    );
    assert!(wait_until(DELIVERY, || select(
        "SELECT v FROM v2 WHERE time = 1600000009s"
    ) == json!([[1600000009, 1]])));
    let r = post("bucket=v2db&precision=s", "v2 v=1i 1", "u:p:w");
    assert_eq!(r.status, 204, "{}", r.body);
    let get = http::get(&url(&format!("/api/v2/write?bucket=v2db&{auth}")));
    assert_eq!(get.status, 405, "{}", get.body);
}

#[test]
fn write_tracing_and_query_tracing_log_each_request_and_are_off_by_default() {
    let (_servers, traced) = cluster(json!({ "write_tracing": true, "query_tracing": true }));
    let (_others, quiet) = cluster(json!({}));
    for proxy in [&traced, &quiet] {
        assert_eq!(
            http::query(&proxy.url, "tracedb", "CREATE DATABASE tracedb").status,
            200
        );
        assert_eq!(
            http::write(&proxy.url, "tracedb", "tr,t=a v=1i 1\ntr v=2i 2\n").status,
            204
        );
        assert_eq!(
            http::query(&proxy.url, "tracedb", "SHOW MEASUREMENTS").status,
            200
        );
    }
    let logged = |proxy: &Proxy, what: &str| {
        proxy
            .log()
            .lines()
            .filter(|l| l.contains(what) && l.contains("db=tracedb"))
            .count()
    };
    assert!(
        wait_until(DELIVERY, || logged(&traced, "Write.") == 1),
        "{}",
        traced.log()
    );
    let write = traced
        .log()
        .lines()
        .find(|l| l.contains("Write."))
        .unwrap_or_default()
        .to_string();
    assert!(
        write.contains("points=2") && write.contains("status=204"),
        "{write}"
    );
    assert_eq!(logged(&traced, "Query."), 2, "{}", traced.log());
    assert_eq!(
        logged(&quiet, "Write.") + logged(&quiet, "Query."),
        0,
        "{}",
        quiet.log()
    );
}

#[test]
fn settings_without_an_effect_are_warned_about_at_start() {
    let (_servers, warned) = cluster(json!({ "conn_pool_size": 50, "rewrite_threads": 2 }));
    let (_others, quiet) = cluster(json!({}));
    assert_eq!(
        warned.no_effect_warnings("conn_pool_size"),
        1,
        "{}",
        warned.log()
    );
    assert_eq!(
        warned.no_effect_warnings("rewrite_threads"),
        1,
        "{}",
        warned.log()
    );
    assert_eq!(
        quiet.no_effect_warnings("conn_pool_size"),
        0,
        "{}",
        quiet.log()
    );
}
