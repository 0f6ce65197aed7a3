//! Anti-entropy end to end: circles made to diverge behind the proxy's back (points written
//! straight to one influxd, a DELETE run on one, a database dropped on one, a value changed on
//! one), `/anti-entropy/compare` naming exactly what differs, `/anti-entropy/repair` mending
//! it (each influxd checked directly) and copying only what was missing, a repair resumed
//! after a crash without repeating buckets, and the background pass repairing on its own.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::support::http::{self, wait_until};
use crate::support::influxd::Influxd;
use crate::support::proxy::{two_by_two, two_by_two_index, Proxy};
use crate::support::unique_db;

/// 2020-09-13, an old week: a shard of the default (infinite) policy is 7 days.
const T0: i64 = 1_600_000_000;
const NS: i64 = 1_000_000_000;
const LONG: Duration = Duration::from_secs(120);

/// `points` points per series (hosts `a` and `b`) of each measurement, one a minute from `t0`
/// (unix seconds).
fn dataset(measurements: &[&str], t0: i64, points: i64) -> String {
    let mut out = String::new();
    for m in measurements {
        for host in ["a", "b"] {
            for i in 0..points {
                let t = (t0 + i * 60) * NS;
                out.push_str(&format!("{m},host={host} f={i}.5,i={i}i,s=\"v{i}\" {t}\n"));
            }
        }
    }
    out
}

/// Creates `db` and writes `body` through the proxy; waits until every circle has it.
fn load(proxy: &Proxy, db: &str, body: &str) {
    let q = format!("CREATE DATABASE \"{db}\"");
    assert_eq!(http::query_post(&proxy.url, &[("q", &q)]).status, 200);
    let resp = http::write(&proxy.url, db, body);
    assert_eq!(resp.status, 204, "{}", resp.body);
    proxy.wait_delivered();
}

/// The influxd owning `mm` in each circle.
fn owners<'a>(proxy: &Proxy, servers: &'a [Influxd], db: &str, mm: &str) -> Vec<&'a Influxd> {
    proxy
        .replica_names(db, mm)
        .iter()
        .map(|name| &servers[two_by_two_index(name)])
        .collect()
}

fn compare(proxy: &Proxy, query: &str) -> Value {
    let resp = http::get(&format!("{}/anti-entropy/compare?{query}", proxy.url));
    assert_eq!(resp.status, 200, "{}", resp.body);
    resp.json()
}

fn differing_measurements(report: &Value) -> BTreeSet<String> {
    report["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["measurement"].as_str().unwrap().to_string())
        .collect()
}

fn repair(proxy: &Proxy, query: &str) -> http::Resp {
    http::post(
        &format!("{}/anti-entropy/repair?{query}", proxy.url),
        b"",
        &[],
    )
}

fn progress(proxy: &Proxy) -> Value {
    http::get(&format!("{}/migrate/stats?type=repair", proxy.url)).json()
}

/// Waits until the repair is done and what it queued is delivered.
fn wait_repaired(proxy: &Proxy) -> Value {
    let done = wait_until(LONG, || progress(proxy)["phase"] == "done");
    assert!(done, "repair never finished: {}", progress(proxy));
    proxy.wait_delivered();
    progress(proxy)
}

/// Every measurement has the same points in every circle (asked of each owner directly).
fn assert_circles_equal(proxy: &Proxy, servers: &[Influxd], db: &str, mms: &[&str], each: u64) {
    for mm in mms {
        let counts: Vec<u64> = owners(proxy, servers, db, mm)
            .iter()
            .map(|s| s.count(db, mm))
            .collect();
        assert!(
            counts.iter().all(|&c| c == each),
            "{mm}: {counts:?}, expected {each} in every circle"
        );
    }
}

fn now_s() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[test]
fn compare_names_each_divergence_and_repair_copies_only_what_was_missing() {
    let (servers, config) = two_by_two();
    let proxy = Proxy::start(config);
    let db = unique_db("ae");
    let mms = ["direct", "deleted", "conflict", "same"];
    // 1100 points per series, one a minute: more than a bucket too small to split.
    load(&proxy, &db, &dataset(&mms, T0, 1_100));
    assert!(differing_measurements(&compare(&proxy, &format!("db={db}"))).is_empty());

    // Points written straight to circle 1's owner: 10 between existing ones.
    let extra: String = (0..10)
        .map(|k| format!("direct,host=c f=1.25 {}\n", (T0 + 5_000 + k) * NS + 500))
        .collect();
    assert_eq!(
        owners(&proxy, &servers, &db, "direct")[0].write(&db, extra),
        204
    );
    // A DELETE that reached circle 2 only: 10 minutes of both series.
    let deleted = owners(&proxy, &servers, &db, "deleted")[1];
    let q = format!(
        "DELETE FROM \"deleted\" WHERE time >= {}s AND time < {}s",
        T0 + 3_000,
        T0 + 3_600
    );
    deleted.exec(&db, &q);
    assert_eq!(deleted.count(&db, "deleted"), 2_180);
    // One value changed in circle 2: same series and time, counts unchanged.
    let changed = format!("conflict,host=a f=999.5 {}\n", (T0 + 60) * NS);
    assert_eq!(
        owners(&proxy, &servers, &db, "conflict")[1].write(&db, changed),
        204
    );

    // The first pass counts one field: it finds the missing points, not the changed value.
    let quick = compare(&proxy, &format!("db={db}"));
    assert_eq!(
        differing_measurements(&quick),
        ["deleted", "direct"]
            .map(String::from)
            .into_iter()
            .collect(),
        "{quick:#}"
    );
    assert_eq!(quick["missing"], 30, "{quick:#}");
    let report = compare(&proxy, &format!("db={db}&deep=true"));
    assert_eq!(
        differing_measurements(&report),
        ["conflict", "deleted", "direct"]
            .map(String::from)
            .into_iter()
            .collect(),
        "{report:#}"
    );
    // The buckets were split finer than the week's shard around what differs.
    for b in report["buckets"].as_array().unwrap() {
        let (start, end) = (b["start"].as_i64().unwrap(), b["end"].as_i64().unwrap());
        assert!(end - start < 7 * 86_400 * NS, "{b}");
        match b["measurement"].as_str().unwrap() {
            "direct" => assert!(
                start <= (T0 + 5_000) * NS && (T0 + 5_010) * NS <= end,
                "{b}"
            ),
            "deleted" => assert!(start < (T0 + 3_600) * NS && (T0 + 3_000) * NS < end, "{b}"),
            _ => assert_eq!(b["value_conflict"], true, "{b}"),
        }
    }
    assert_eq!(report["missing"], 30, "{report:#}");

    assert_eq!(
        repair(&proxy, &format!("db={db}&rate=0&deep=true")).status,
        202
    );
    let done = wait_repaired(&proxy);
    // Exactly what was missing: 10 + 20 points, and the one conflicting value.
    assert_eq!(done["points"], 31, "{done:#}");
    assert_eq!(done["conflicts"], 1, "{done:#}");
    let example = &done["conflict_examples"][0];
    assert_eq!(example["field"], "f", "{done:#}");
    assert_eq!(example["kept"], "1.5", "{done:#}");

    assert_circles_equal(
        &proxy,
        &servers,
        &db,
        &["deleted", "conflict", "same"],
        2_200,
    );
    assert_circles_equal(&proxy, &servers, &db, &["direct"], 2_210);
    // The circle listed first won the conflict.
    for s in owners(&proxy, &servers, &db, "conflict") {
        let v = s.query(
            &db,
            &format!(
                "SELECT f FROM conflict WHERE host = 'a' AND time = {}",
                (T0 + 60) * NS
            ),
        );
        assert_eq!(v["results"][0]["series"][0]["values"][0][1], 1.5, "{v}");
    }
    let again = compare(&proxy, &format!("db={db}&deep=true"));
    assert_eq!(again["differing"], 0, "{again:#}");
}

#[test]
fn a_dropped_database_is_refilled_with_its_buckets_alone() {
    let (servers, config) = two_by_two();
    let proxy = Proxy::start(config);
    let db = unique_db("aewipe");
    let mms: Vec<String> = (0..8).map(|i| format!("m{i}")).collect();
    let names: Vec<&str> = mms.iter().map(String::as_str).collect();
    load(&proxy, &db, &dataset(&names, T0, 50));
    // A second retention policy, which the repair must create again.
    let q = format!("CREATE RETENTION POLICY week ON \"{db}\" DURATION 2000w REPLICATION 1");
    assert_eq!(http::query_post(&proxy.url, &[("q", &q)]).status, 200);
    let weekly = http::write_with(
        &proxy.url,
        &format!("db={db}&rp=week"),
        dataset(&names, T0, 5),
        false,
    );
    assert_eq!(weekly.status, 204, "{}", weekly.body);
    proxy.wait_delivered();
    // The first backend of circle 2 loses everything.
    servers[2].drop_db(&db);
    let lost: BTreeSet<String> = mms
        .iter()
        .filter(|mm| proxy.replica_names(&db, mm)[1] == "influxdb-2-1")
        .cloned()
        .collect();
    assert!(!lost.is_empty() && lost.len() < mms.len(), "{lost:?}");

    let report = compare(&proxy, &format!("db={db}"));
    assert_eq!(differing_measurements(&report), lost, "{report:#}");
    assert_eq!(report["missing"], 110 * lost.len() as u64, "{report:#}");

    assert_eq!(repair(&proxy, &format!("db={db}")).status, 202);
    let done = wait_repaired(&proxy);
    assert_eq!(done["points"], 110 * lost.len() as u64, "{done:#}");
    assert_circles_equal(&proxy, &servers, &db, &names, 100);
    for mm in &names {
        let counts: Vec<u64> = owners(&proxy, &servers, &db, mm)
            .iter()
            .map(|s| s.count_rp(&db, "week", mm))
            .collect();
        assert_eq!(counts, [10, 10], "{mm} in week");
    }
    assert_eq!(compare(&proxy, &format!("db={db}"))["differing"], 0);
}

#[test]
fn a_repair_interrupted_by_a_crash_resumes_without_repeating_buckets() {
    let (servers, mut config) = two_by_two();
    // 25 points/s: each bucket below (50 points) takes 2 s.
    config["anti_entropy_rate"] = json!(25);
    let mut proxy = Proxy::start(config);
    let db = unique_db("aeresume");
    let mms: Vec<String> = (0..8).map(|i| format!("m{i}")).collect();
    let names: Vec<&str> = mms.iter().map(String::as_str).collect();
    // 25 points per series in each of 4 weeks: a bucket per week and measurement.
    let body: String = (0..4)
        .map(|w| dataset(&names, T0 + w * 7 * 86_400, 25))
        .collect();
    load(&proxy, &db, &body);
    servers[2].drop_db(&db);
    let lost = mms
        .iter()
        .filter(|mm| proxy.replica_names(&db, mm)[1] == "influxdb-2-1")
        .count() as u64;
    assert!(lost >= 2, "{lost}");

    assert_eq!(repair(&proxy, &format!("db={db}")).status, 202);
    // Another repair, or another migration of the circles, is refused meanwhile.
    let busy = repair(&proxy, &format!("db={db}"));
    assert_eq!(busy.status, 409, "{}", busy.body);
    let recovery = http::post(
        &format!("{}/recovery?from_circle_id=0&to_circle_id=1", proxy.url),
        b"",
        &[],
    );
    assert!(recovery.body.contains("migrating"), "{}", recovery.body);

    let total = 4 * lost;
    let mut first = Value::Null;
    let midway = wait_until(LONG, || {
        first = progress(&proxy);
        first["buckets_done"].as_u64().unwrap_or(0) >= 2
    });
    assert!(midway, "{first}");
    assert!(
        first["buckets_done"].as_u64().unwrap() < total,
        "too fast: {first}"
    );
    assert_eq!(first["buckets_total"], total, "{first}");
    assert!(first["points_per_s"].as_u64().unwrap() <= 30, "{first}");
    proxy.kill9();
    proxy.restart();

    let done = wait_repaired(&proxy);
    assert_eq!(done["resumed"], true, "{done:#}");
    assert_eq!(done["buckets_done"], total, "{done:#}");
    // Points are counted once per finished bucket, across both runs: a bucket repeated after
    // the restart would count twice.
    assert_eq!(done["points"], 50 * total, "{done:#}");
    let log = std::fs::read_to_string(proxy.dir.join("log/repair.log")).unwrap();
    let repaired: Vec<&str> = log.lines().filter(|l| l.contains(" repaired ")).collect();
    let distinct: BTreeSet<&str> = repaired
        .iter()
        .map(|l| l.split_once(' ').unwrap().1)
        .collect();
    assert_eq!(repaired.len() as u64, total, "{log}");
    assert_eq!(distinct.len() as u64, total, "{log}");
    assert!(proxy.log().contains("Resuming the anti-entropy repair"));
    assert_circles_equal(&proxy, &servers, &db, &names, 200);
}

#[test]
fn the_background_pass_repairs_recent_divergence_within_anti_entropy_window() {
    let (servers, mut config) = two_by_two();
    config["anti_entropy_interval"] = json!(2);
    // Three hours: a divergence five hours old is left alone.
    config["anti_entropy_window"] = json!(3 * 3_600);
    let proxy = Proxy::start(config);
    let db = unique_db("aepass");
    let now = now_s();
    let old = now - 5 * 3_600;
    let recent = now - 2 * 3_600;
    let mut body = dataset(&["recent"], recent, 30);
    body.push_str(&dataset(&["old"], old, 30));
    load(&proxy, &db, &body);
    let recent_owner = owners(&proxy, &servers, &db, "recent");
    let old_owner = owners(&proxy, &servers, &db, "old");
    let extra = |m: &str, t: i64| format!("{m},host=z f=7.5 {}\n", t * NS);
    assert_eq!(
        recent_owner[0].write(&db, extra("recent", recent + 30)),
        204
    );
    assert_eq!(old_owner[0].write(&db, extra("old", old + 30)), 204);

    let mended = wait_until(LONG, || recent_owner[1].count(&db, "recent") == 61);
    assert!(mended, "the pass never repaired: {}", progress(&proxy));
    assert!(proxy.log().contains("Anti-entropy pass started."));
    // The pass after that one has run too: the old divergence stays, outside the window.
    let later = wait_until(LONG, || {
        proxy
            .log()
            .matches("Anti-entropy repair queued every bucket.")
            .count()
            >= 2
    });
    assert!(later);
    assert_eq!(old_owner[1].count(&db, "old"), 60);
    assert_eq!(old_owner[0].count(&db, "old"), 61);
}

/// A bucket compared point by point is held within the repair's share of the memory budget:
/// at `memory_budget_mb: 32` (4 MiB for migrations, 1 MiB of lines per circle) a minute
/// holding ~3 MiB of one series is skipped and counted, and the other buckets are repaired.
#[test]
fn a_bucket_larger_than_the_memory_share_is_skipped_and_the_rest_repaired() {
    let (servers, mut config) = two_by_two();
    config["memory_budget_mb"] = json!(32);
    let proxy = Proxy::start(config);
    let db = unique_db("aemem");
    load(&proxy, &db, &dataset(&["small"], T0, 100));
    // 20,000 points of ~150 bytes in one minute: 3 MiB of lines in each circle.
    let pad = "x".repeat(120);
    for part in 0..5i64 {
        // Bodies of 4,000 points: a 32 MiB budget takes 1.3 MiB per request.
        let dense: String = (part * 4_000..(part + 1) * 4_000)
            .map(|k| {
                format!(
                    "dense,host=a s=\"{pad}\",k={k}i {}\n",
                    T0 * NS + k * 1_000_000
                )
            })
            .collect();
        let resp = http::write(&proxy.url, &db, &dense);
        assert_eq!(resp.status, 204, "{}", resp.body);
    }
    proxy.wait_delivered();
    // Circle 2 loses part of the dense minute (both circles still hold some) and two points
    // of the small measurement.
    let half = format!(
        "DELETE FROM \"dense\" WHERE time >= {} AND time < {}",
        T0 * NS,
        T0 * NS + 5_000 * 1_000_000
    );
    owners(&proxy, &servers, &db, "dense")[1].exec(&db, &half);
    let two = format!(
        "DELETE FROM \"small\" WHERE time >= {}s AND time < {}s",
        T0 + 600,
        T0 + 660
    );
    owners(&proxy, &servers, &db, "small")[1].exec(&db, &two);

    assert_eq!(repair(&proxy, &format!("db={db}&rate=0")).status, 202);
    let done = wait_repaired(&proxy);
    assert_eq!(done["buckets_failed"], 1, "{done:#}");
    assert_eq!(done["points"], 2, "{done:#}");
    assert_circles_equal(&proxy, &servers, &db, &["small"], 200);
    assert!(
        proxy
            .log()
            .contains("this copy's part of the memory budget"),
        "the skipped bucket is logged with what to change"
    );
}
