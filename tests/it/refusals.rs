//! Batches InfluxDB refuses: only the lines it refuses on their own may go
//! to the dead letters; every other acknowledged point is delivered.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::http::{self, wait_until};
use crate::support::influxd::Influxd;
use crate::support::proxy::{circles_config, Proxy};
use crate::support::unique_db;

const DELIVERY: Duration = Duration::from_secs(30);

/// One influxd behind the proxy; delivery waits `flush_time` seconds so
/// that separate requests meet in one batch.
fn single(flush_time: u64) -> (Influxd, Proxy) {
    let influxd = Influxd::spawn();
    let mut config = circles_config(&[&[influxd.url.as_str()]]);
    config["flush_time"] = json!(flush_time);
    let proxy = Proxy::start(config);
    (influxd, proxy)
}

fn backend_health(proxy: &Proxy) -> Value {
    let health = http::get(&format!("{}/health", proxy.url)).json();
    health[0]["backends"][0].clone()
}

fn dead_points(proxy: &Proxy) -> u64 {
    backend_health(proxy)["dead_letters"]["points"]
        .as_u64()
        .unwrap()
}

fn queue_empty(proxy: &Proxy) -> bool {
    backend_health(proxy)["queue"]["records"] == 0
}

/// influxd refuses a whole body (stores nothing, no "partial write") when
/// two of its lines give a new field different types. Lines of separate
/// requests merged into one delivery batch must not share that fate.
#[test]
fn a_conflict_inside_one_batch_costs_only_the_conflicting_line() {
    let (influxd, proxy) = single(3);
    let db = unique_db("split");
    influxd.create_db(&db);
    let a = http::write(&proxy.url, &db, "x f=1i 1\n");
    assert_eq!(a.status, 204, "{}", a.body);
    // The proxy may refuse this one at the edge (it knows x.f is an
    // integer now) or accept it; either way it must cost nothing else.
    let b = http::write(&proxy.url, &db, "x f=\"s\" 2\n");
    assert!(matches!(b.status, 204 | 400), "{}: {}", b.status, b.body);
    let good: String = (0..50)
        .map(|i| format!("y,h=h{i} g={i} {}\n", 10 + i))
        .collect();
    let c = http::write(&proxy.url, &db, &good);
    assert_eq!(c.status, 204, "{}", c.body);

    assert!(
        wait_until(DELIVERY, || queue_empty(&proxy)),
        "{}",
        proxy.log()
    );
    assert_eq!(
        influxd.count(&db, "y"),
        50,
        "other requests' points all arrived"
    );
    assert_eq!(influxd.count(&db, "x"), 1, "the first x line arrived");
    let expected_dead = if b.status == 204 { 1 } else { 0 };
    assert_eq!(dead_points(&proxy), expected_dead, "{}", proxy.log());
}

/// A schema changed behind the proxy (a field written directly into
/// influxd with another type) makes influxd drop some lines of a batch:
/// exactly those become dead letters.
#[test]
fn lines_refused_by_a_schema_changed_behind_the_proxy_are_the_only_dead_letters() {
    let (influxd, proxy) = single(3);
    let db = unique_db("behind");
    influxd.create_db(&db);
    let mut accepted = 0;
    for i in 0..20 {
        let body = format!("x,h=h{i} f={i}i {}\nz,h=h{i} v={i} {}\n", 100 + i, 100 + i);
        let resp = http::write(&proxy.url, &db, body);
        assert_eq!(resp.status, 204, "{}", resp.body);
        accepted += 1;
    }
    // Within the flush window: x.f becomes a string on the backend.
    assert_eq!(influxd.write(&db, "x,h=other f=\"s\" 1\n"), 204);

    assert!(
        wait_until(DELIVERY, || queue_empty(&proxy)),
        "{}",
        proxy.log()
    );
    assert_eq!(influxd.count(&db, "z"), accepted);
    assert_eq!(
        dead_points(&proxy),
        accepted,
        "only the x lines: {}",
        proxy.log()
    );
    assert_eq!(backend_health(&proxy)["dead_letters"]["records"], accepted);
}

/// The operator's path: a refusal is listed with its cause, exported as
/// line protocol, replayed once the schema is fixed, and purged.
#[test]
fn dead_letters_can_be_listed_exported_replayed_and_purged() {
    let (influxd, proxy) = single(2);
    let db = unique_db("dead");
    influxd.create_db(&db);
    for i in 0..3 {
        let resp = http::write(&proxy.url, &db, format!("x,h=h{i} f={i}i {}\n", 10 + i));
        assert_eq!(resp.status, 204, "{}", resp.body);
    }
    assert_eq!(influxd.write(&db, "x,h=other f=\"s\" 1\n"), 204);
    assert!(
        wait_until(DELIVERY, || dead_points(&proxy) == 3),
        "{}",
        proxy.log()
    );

    let list = http::get(&format!("{}/dead_letters", proxy.url));
    assert_eq!(list.status, 200, "{}", list.body);
    let b = &list.json()["backends"][0];
    assert_eq!(
        (
            b["backend"].as_str(),
            b["records"].as_u64(),
            b["points"].as_u64()
        ),
        (Some("influxdb-1-1"), Some(3), Some(3))
    );
    assert!(b["bytes"].as_u64().unwrap() > 0);
    let cause = b["last_errors"][0]["error"].as_str().unwrap();
    assert!(cause.contains("field type conflict"), "{cause}");
    assert_eq!(b["last_errors"][0]["status"], 400);

    let url = |what: &str| format!("{}/dead_letters/{what}?backend=influxdb-1-1", proxy.url);
    let export = http::get(&url("export"));
    assert_eq!(export.status, 200);
    let lines: Vec<&str> = export
        .body
        .lines()
        .filter(|l| !l.starts_with('#'))
        .collect();
    assert_eq!(
        lines,
        ["x,h=h0 f=0i 10", "x,h=h1 f=1i 11", "x,h=h2 f=2i 12"],
        "{}",
        export.body
    );
    assert!(
        export
            .body
            .starts_with(&format!("# DML\n# CONTEXT-DATABASE: {db}\n")),
        "{}",
        export.body
    );

    // Changing calls are POST only, and name an existing backend.
    assert_eq!(http::get(&url("replay")).status, 405);
    let unknown = http::post(
        &format!("{}/dead_letters/purge?backend=nope", proxy.url),
        b"",
        &[],
    );
    assert_eq!(unknown.status, 400);
    assert!(unknown.json()["error"]
        .as_str()
        .unwrap()
        .contains("unknown backend"));

    // Fix the schema, replay: the points arrive and the store is empty.
    influxd.exec(&db, "DROP MEASUREMENT x");
    let replay = http::post(&url("replay"), b"", &[]);
    assert_eq!(replay.status, 200, "{}", replay.body);
    assert_eq!(replay.json()["points"], 3);
    let s = &influxd;
    assert!(
        wait_until(DELIVERY, || s.count(&db, "x") == 3),
        "{}",
        proxy.log()
    );
    assert_eq!(dead_points(&proxy), 0);

    // A new refusal, purged.
    influxd.exec(&db, "DROP MEASUREMENT x");
    assert_eq!(influxd.write(&db, "x,h=other f=\"s\" 1\n"), 204);
    assert_eq!(http::write(&proxy.url, &db, "x,h=h9 f=9i 19\n").status, 204);
    assert!(
        wait_until(DELIVERY, || dead_points(&proxy) == 1),
        "{}",
        proxy.log()
    );
    let purge = http::post(&url("purge"), b"", &[]);
    assert_eq!(
        (purge.status, purge.json()["records"].as_u64()),
        (200, Some(1)),
        "{}",
        purge.body
    );
    assert_eq!(dead_points(&proxy), 0);
}
