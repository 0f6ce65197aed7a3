//! Line rules (`rules`: drop, pin) and the timestamp window (`timestamp_window`) end to end,
//! against real influxd: what each backend holds afterwards, `/replica`, merged reads, a
//! rebalance after a pin was added by a reload, and the answers the client gets.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::support::http::{self, wait_until};
use crate::support::influxd::Influxd;
use crate::support::proxy::{two_by_two, two_by_two_index, Proxy};
use crate::support::unique_db;

const LONG: Duration = Duration::from_secs(60);

fn now_s() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Points of `mm` in `db` over all four backends.
fn total(servers: &[Influxd], db: &str, mm: &str) -> u64 {
    servers.iter().map(|s| s.count(db, mm)).sum()
}

/// The backends (by two_by_two name) holding points of `mm`.
fn holders(servers: &[Influxd], db: &str, mm: &str) -> Vec<String> {
    let names = [
        "influxdb-1-1",
        "influxdb-1-2",
        "influxdb-2-1",
        "influxdb-2-2",
    ];
    names
        .iter()
        .filter(|n| servers[two_by_two_index(n)].count(db, mm) > 0)
        .map(|n| n.to_string())
        .collect()
}

/// The other backend of the same circle in two_by_two (each circle has two).
fn sibling(name: &str) -> String {
    let (head, last) = name.rsplit_once('-').unwrap();
    format!("{head}-{}", if last == "1" { 2 } else { 1 })
}

#[test]
fn drop_rules_acknowledge_matching_lines_store_none_and_count_them_per_rule() {
    let (servers, mut config) = two_by_two();
    let db = unique_db("rules_drop");
    config["rules"] = json!([
        {"name": "junk", "database": db, "measurement": "junk", "action": "drop"},
        {"name": "test-hosts", "measurement_regex": "^debug_", "tag": "host",
         "tag_regex": "^test-", "action": "drop"},
        {"name": "elsewhere", "database": "not-this-db", "measurement": "cpu", "action": "drop"},
        {"name": "known", "measurement_regex": "^(cpu|debug_x)$", "action": "keep"},
        {"name": "rest", "database": db, "action": "drop"}
    ]);
    let proxy = Proxy::start(config);
    let body = "cpu,host=a v=1 1\n\
                junk,host=a v=1 1\n\
                debug_x,host=test-1 v=1 1\n\
                debug_x,host=prod-1 v=1 1\n\
                junk v=2 2\n\
                other v=1 1\n\
                debug_x v=3 3\n";
    let r = http::write(&proxy.url, &db, body);
    assert_eq!(r.status, 204, "{}", r.body);
    proxy.wait_delivered();
    // Two copies (one per circle) of what was kept; nothing of junk.
    assert_eq!(total(&servers, &db, "cpu"), 2);
    assert_eq!(
        total(&servers, &db, "debug_x"),
        4,
        "prod-1 and the untagged line"
    );
    assert_eq!(total(&servers, &db, "junk"), 0);
    assert_eq!(total(&servers, &db, "other"), 0, "the catch-all after keep");
    assert_eq!(
        proxy.metric("influx_proxy_rule_lines_total", "rule=\"junk\""),
        2.0
    );
    assert_eq!(
        proxy.metric("influx_proxy_rule_lines_total", "rule=\"test-hosts\""),
        1.0
    );
    assert_eq!(
        proxy.metric("influx_proxy_rule_lines_total", "rule=\"elsewhere\""),
        0.0
    );
    assert_eq!(
        proxy.metric(
            "influx_proxy_rule_lines_total",
            "rule=\"known\",action=\"keep\""
        ),
        3.0
    );
    assert_eq!(
        proxy.metric("influx_proxy_rule_lines_total", "rule=\"rest\""),
        1.0
    );
    // A body of nothing but dropped lines is a write influxd would have taken: 204.
    let r = http::write(&proxy.url, &db, "junk v=1 5\n");
    assert_eq!(r.status, 204, "{}", r.body);
    // A bad line beside a dropped one is still named, as influxd names it.
    let r = http::write(&proxy.url, &db, "junk v=1 6\nbad line\n");
    assert_eq!(r.status, 400);
    assert!(
        r.body.contains("partial write") && r.body.contains("bad line"),
        "{}",
        r.body
    );
}

#[test]
fn a_pin_places_a_measurement_for_writes_replica_and_merged_reads_and_a_rebalance_moves_it() {
    let (servers, config) = two_by_two();
    let db = unique_db("rules_pin");
    let proxy = Proxy::start(config.clone());
    // Where the ring puts `heavy`; the pin will name the other backend of each circle.
    let ring: Vec<String> = proxy.replica_names(&db, "heavy");
    let pinned: Vec<String> = ring.iter().map(|n| sibling(n)).collect();
    let light_owners = proxy.replica_names(&db, "light");

    // Data written before the pin lands where the ring says.
    assert_eq!(
        http::query_post(&proxy.url, &[("q", &format!("CREATE DATABASE \"{db}\""))]).status,
        200
    );
    let before: String = (0..10)
        .map(|i| format!("heavy,host=h{i} v={i} {i}\n"))
        .collect();
    assert_eq!(http::write(&proxy.url, &db, &before).status, 204);
    proxy.wait_delivered();
    assert_eq!(holders(&servers, &db, "heavy"), ring);

    let mut pinned_config = config;
    pinned_config["rules"] = json!([
        {"name": "heavy-alone", "database": db, "measurement": "heavy", "action": "pin",
         "backends": pinned}
    ]);
    proxy.rewrite_config(pinned_config);
    proxy.sighup();
    assert!(
        wait_until(LONG, || proxy.replica_names(&db, "heavy") == pinned),
        "/replica never followed the pin: {:?}",
        proxy.replica_names(&db, "heavy")
    );
    assert!(
        proxy.log().contains("changed where measurements live"),
        "the reload did not say the placement changed:\n{}",
        proxy.log()
    );
    assert_eq!(
        proxy.replica_names(&db, "light"),
        light_owners,
        "an unpinned measurement moved"
    );

    // New points go to the pin; light stays on the ring.
    let after: String = (10..20)
        .map(|i| format!("heavy,host=h{i} v={i} {i}\n"))
        .collect();
    let light: String = (0..5).map(|i| format!("light v={i} {i}\n")).collect();
    assert_eq!(
        http::write(&proxy.url, &db, format!("{after}{light}")).status,
        204
    );
    proxy.wait_delivered();
    for name in &pinned {
        assert_eq!(
            servers[two_by_two_index(name)].count(&db, "heavy"),
            10,
            "{name}"
        );
    }
    assert_eq!(holders(&servers, &db, "light"), light_owners);
    assert_eq!(
        proxy.metric("influx_proxy_rule_lines_total", "rule=\"heavy-alone\""),
        10.0
    );

    // A rebalance of each circle moves the old points to the pin; clear removes the
    // misplaced copies and keeps the pinned ones.
    for circle in 0..2 {
        let r = http::post(
            &format!("{}/rebalance?circle_id={circle}&operation=add", proxy.url),
            b"",
            &[],
        );
        assert_eq!(r.status, 202, "{}", r.body);
        proxy.wait_migrations_done();
        let r = http::post(&format!("{}/clear?circle_id={circle}", proxy.url), b"", &[]);
        assert_eq!(r.status, 202, "{}", r.body);
        proxy.wait_migrations_done();
    }
    assert!(
        wait_until(LONG, || holders(&servers, &db, "heavy") == pinned),
        "heavy is on {:?}, pinned to {pinned:?}",
        holders(&servers, &db, "heavy")
    );
    for name in &pinned {
        assert_eq!(
            servers[two_by_two_index(name)].count(&db, "heavy"),
            20,
            "{name}"
        );
    }
    assert_eq!(
        holders(&servers, &db, "light"),
        light_owners,
        "clear moved light"
    );

    // A merged SELECT over a pinned and an unpinned measurement sees both whole.
    let answer = http::query(&proxy.url, &db, "SELECT count(v) FROM heavy, light").json();
    let counts: Vec<(String, u64)> = answer["results"][0]["series"]
        .as_array()
        .unwrap_or_else(|| panic!("{answer}"))
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_string(),
                s["values"][0][1].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        counts,
        [("heavy".to_string(), 20), ("light".to_string(), 5)],
        "{answer}"
    );
}

#[test]
fn a_pin_naming_no_backend_is_refused_at_load_and_at_reload() {
    let (_servers, config) = two_by_two();
    let proxy = Proxy::start(config.clone());
    let mut bad = config;
    bad["rules"] = json!([{"action": "pin", "measurement": "m", "backends": ["nope"]}]);
    proxy.rewrite_config(bad.clone());
    proxy.sighup();
    assert!(
        wait_until(LONG, || proxy.log().contains("Config reload refused")),
        "{}",
        proxy.log()
    );
    assert!(
        proxy
            .log()
            .contains("rules[0].backends[0]: no backend is named"),
        "{}",
        proxy.log()
    );
    // The running proxy still serves.
    assert_eq!(http::get(&format!("{}/ping", proxy.url)).status, 204);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("proxy.json"), bad.to_string()).unwrap();
    let (status, out) = Proxy::run_to_exit(
        &["-check-config", "proxy.json"],
        dir.path(),
        Duration::from_secs(30),
    );
    assert!(!status.success(), "{out}");
    assert!(out.contains("no backend is named"), "{out}");
}

#[test]
fn timestamp_window_refuses_stale_and_future_points_and_keeps_the_others() {
    let (servers, mut config) = two_by_two();
    let db = unique_db("window");
    config["timestamp_window"] = json!(3600);
    let proxy = Proxy::start(config);
    let now = now_s();
    let body = format!(
        "m v=1 {now}\n\
         m v=2 {stale}\n\
         m v=3 {future}\n\
         m,stamp=none v=4\n\
         m v=5 {recent}\n",
        stale = now - 7200,
        future = now + 7200,
        recent = now - 600,
    );
    let r = http::write_with(&proxy.url, &format!("db={db}&precision=s"), body, false);
    assert_eq!(r.status, 400, "{}", r.body);
    let error = r.json()["error"].as_str().unwrap().to_string();
    assert!(error.starts_with("partial write: "), "{error}");
    for bad in [now - 7200, now + 7200] {
        assert!(
            error.contains(&format!("unable to parse 'm v={} {bad}': time outside the accepted window: more than 3600s from the proxy's clock",
                if bad < now { 2 } else { 3 })),
            "{error}"
        );
    }
    assert!(error.ends_with("dropped=0"), "{error}");
    proxy.wait_delivered();
    // Three kept (the line without a timestamp is its own series: it gets the same second
    // as the first line), in each of the two circles.
    assert_eq!(total(&servers, &db, "m"), 6);
    let values: Value = servers
        .iter()
        .find(|s| s.count(&db, "m") > 0)
        .unwrap()
        .query(&db, "SELECT v FROM m");
    let kept: Vec<u64> = values["results"][0]["series"][0]["values"]
        .as_array()
        .unwrap_or_else(|| panic!("{values}"))
        .iter()
        .map(|row| row[1].as_u64().unwrap())
        .collect();
    let mut kept = kept;
    kept.sort_unstable();
    assert_eq!(kept, [1, 4, 5]);
}
