//! Schema statements written into at once: what the proxy accepted (a statement queued behind
//! undelivered writes) counts for the write path's checks as influxd will apply it, so a
//! client gets the answer influxd gives to the same sequence (issue 30, item 7).
//!
//! Every case first writes enough to leave the backends' queues non-empty (`flush_time` is
//! 1 s), so the statement is queued rather than run at once.

use std::time::Duration;

use crate::support::http::{self, wait_until};
use crate::support::influxd::Influxd;
use crate::support::proxy::{two_by_two, two_by_two_index, Proxy};
use crate::support::{run_python, unique_db};

/// How long delivery may take in tests (flush_time is 1 s).
const DELIVERY: Duration = Duration::from_secs(30);

/// 5,000 points over 50 measurements (every backend of both circles owns some).
fn filler() -> String {
    (0..5_000)
        .map(|i| {
            format!(
                "fill{},host=h{} v={i} {}\n",
                i % 50,
                i % 7,
                1_600_000_000 + i
            )
        })
        .collect()
}

/// Waits until each owner of `mm` (one per circle) holds `points` points of `rp`.
fn wait_in_every_circle(
    servers: &[Influxd],
    proxy: &Proxy,
    db: &str,
    rp: &str,
    mm: &str,
    points: u64,
) {
    let owners = proxy.replica_names(db, mm);
    assert_eq!(owners.len(), 2);
    for owner in &owners {
        let s = &servers[two_by_two_index(owner)];
        assert!(
            wait_until(DELIVERY, || s.count_rp(db, rp, mm) == points),
            "{db}.{rp}.{mm} on {owner}: {} of {points} points",
            s.count_rp(db, rp, mm)
        );
    }
}

fn query_ok(proxy: &Proxy, db: &str, q: &str) {
    let r = http::query_post(&proxy.url, &[("db", db), ("q", q)]);
    assert_eq!(r.status, 200, "{q}: {}", r.body);
    assert!(
        r.json()["results"][0].get("error").is_none(),
        "{q}: {}",
        r.body
    );
}

#[test]
fn a_retention_policy_created_by_influxdb_python_is_written_into_at_once() {
    let (servers, config) = two_by_two();
    let proxy = Proxy::start(config);
    let db = unique_db("rp_py");
    let script = format!(
        "from influxdb import InfluxDBClient\n\
         import time\n\
         c = InfluxDBClient('127.0.0.1', {port}, database='{db}')\n\
         c.create_database('{db}')\n\
         pts = [{{'measurement': 'fill%d' % (i % 50), 'tags': {{'host': 'h%d' % (i % 7)}}, 'fields': {{'v': float(i)}}, 'time': 1600000000 + i}} for i in range(5000)]\n\
         assert c.write_points(pts, time_precision='s')\n\
         c.create_retention_policy('rp_py', '1d', 1, database='{db}')\n\
         now = int(time.time())\n\
         assert c.write_points([{{'measurement': 'py', 'tags': {{'t': str(i)}}, 'fields': {{'v': i}}, 'time': now - i}} for i in range(10)], time_precision='s', retention_policy='rp_py')\n\
         print('ok')\n",
        port = proxy.port
    );
    let out = run_python(
        "influxdb",
        "pip install influxdb (or apt-get install python3-influxdb)",
        &script,
    );
    assert_eq!(out.trim(), "ok");
    wait_in_every_circle(&servers, &proxy, &db, "rp_py", "py", 10);
    assert!(
        proxy.log().contains("undelivered_records"),
        "the log says the statement waited behind undelivered writes"
    );
}

/// Nanoseconds of the current second.
fn now_ns() -> i64 {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    1_000_000_000 * secs as i64
}

fn write_rp(proxy: &Proxy, db: &str, rp: &str, body: String) -> http::Resp {
    http::write_with(&proxy.url, &format!("db={db}&rp={rp}"), body, false)
}

#[test]
fn a_database_created_with_its_own_policy_is_written_into_at_once() {
    let (servers, config) = two_by_two();
    let proxy = Proxy::start(config);
    let busy = unique_db("busy");
    let now = now_ns();
    // A database dropped and created again with another policy, and another field type:
    // the backends still hold the old one.
    let again = unique_db("again");
    assert_eq!(
        http::write(&proxy.url, &again, "m v=1 1000000000\n").status,
        204
    );
    wait_in_every_circle(&servers, &proxy, &again, "autogen", "m", 1);
    assert_eq!(http::write(&proxy.url, &busy, filler()).status, 204);
    query_ok(&proxy, "", &format!("DROP DATABASE \"{again}\""));
    query_ok(
        &proxy,
        "",
        &format!("CREATE DATABASE \"{again}\" WITH NAME fresh"),
    );
    let renewed = write_rp(&proxy, &again, "fresh", format!("m v=\"s\" {now}\n"));
    assert_eq!(renewed.status, 204, "{}", renewed.body);

    // A new database, with its own policy.
    assert_eq!(http::write(&proxy.url, &busy, filler()).status, 204);
    let db = unique_db("fresh");
    query_ok(
        &proxy,
        "",
        &format!("CREATE DATABASE \"{db}\" WITH DURATION 30d NAME month"),
    );
    // The database's default policy, named and unnamed.
    let named = write_rp(&proxy, &db, "month", format!("m v=1 {now}\n"));
    assert_eq!(named.status, 204, "{}", named.body);
    let unnamed = http::write(&proxy.url, &db, format!("m v=2 {}\n", now - 1));
    assert_eq!(unnamed.status, 204, "{}", unnamed.body);
    // A second policy created in the same breath.
    query_ok(
        &proxy,
        &db,
        &format!("CREATE RETENTION POLICY week ON \"{db}\" DURATION 7d REPLICATION 1"),
    );
    let week = write_rp(&proxy, &db, "week", format!("w v=3 {now}\n"));
    assert_eq!(week.status, 204, "{}", week.body);
    // What influxd refuses stays refused: this database has no autogen.
    let autogen = write_rp(&proxy, &db, "autogen", format!("m v=4 {now}\n"));
    assert_eq!(autogen.status, 500, "{}", autogen.body);
    assert!(
        autogen.body.contains("retention policy not found: autogen"),
        "{}",
        autogen.body
    );

    wait_in_every_circle(&servers, &proxy, &db, "month", "m", 2);
    wait_in_every_circle(&servers, &proxy, &db, "week", "w", 1);
    wait_in_every_circle(&servers, &proxy, &again, "fresh", "m", 1);
    for owner in proxy.replica_names(&again, "m") {
        let s = &servers[two_by_two_index(&owner)];
        assert_eq!(s.count_rp(&again, "autogen", "m"), 0, "{owner}: dropped");
    }
}

#[test]
fn a_dropped_measurement_is_written_again_with_another_field_type() {
    let (servers, config) = two_by_two();
    let proxy = Proxy::start(config);
    let db = unique_db("redo");
    assert_eq!(
        http::write(&proxy.url, &db, "m v=1 1000000000\n").status,
        204
    );
    wait_in_every_circle(&servers, &proxy, &db, "autogen", "m", 1);
    // The proxy learns the type from the backends too (it refuses a string now).
    let conflict = http::write(&proxy.url, &db, "m v=\"s\" 2000000000\n");
    assert_eq!(conflict.status, 400, "{}", conflict.body);
    assert_eq!(http::write(&proxy.url, &db, filler()).status, 204);
    query_ok(&proxy, &db, "DROP MEASUREMENT m");
    let again = http::write(&proxy.url, &db, "m v=\"s\" 3000000000\n");
    assert_eq!(again.status, 204, "{}", again.body);
    // A type the new measurement now has is checked again.
    let mixed = http::write(&proxy.url, &db, "m v=2 4000000000\n");
    assert_eq!(mixed.status, 400, "{}", mixed.body);
    for owner in proxy.replica_names(&db, "m") {
        let s = &servers[two_by_two_index(&owner)];
        assert!(
            wait_until(DELIVERY, || s.query(&db, "SELECT v FROM m")["results"][0]
                ["series"][0]["values"]
                == serde_json::json!([[3_000_000_000u64, "s"]])),
            "{owner}: {}",
            s.query(&db, "SELECT v FROM m")
        );
    }
}
