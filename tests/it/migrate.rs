//! Migration end to end: rebalance (add and rm), clear, recovery of a
//! wiped backend and resync after an outage that bypassed the proxy. Every
//! case checks that the data set (counts, content, field types, awkward
//! tags, two retention policies) is identical afterwards and that writes
//! made during the migration are all present.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::http::{self, wait_until};
use crate::support::influxd::Influxd;
use crate::support::proxy::{two_by_two, Proxy};

const DB: &str = "migdb";
const T0: i64 = 1_600_000_000_000_000_000;
const MEASUREMENTS: usize = 16;
const LONG: Duration = Duration::from_secs(90);

fn dataset(offset: i64) -> String {
    let mut out = String::new();
    for m in 0..MEASUREMENTS {
        for i in 0..25i64 {
            let t = T0 + (offset + i) * 1_000_000_000;
            out.push_str(&format!(
                "mm{m},host=a\\ b,k=x\\,y,eq=a\\=b f={}.5,i={}i,s=\"q\\\"uote {i}\",b={} {t}\n",
                i,
                i * m as i64,
                i % 2 == 0
            ));
        }
    }
    out
}

fn week_dataset() -> String {
    (0..MEASUREMENTS)
        .map(|m| format!("mm{m},w=1 v={m}i {}\n", T0 + 5_000_000_000))
        .collect()
}

/// Waits until both copies (one per circle) of the autogen data set arrived.
fn wait_loaded(all: &[&Influxd]) {
    let loaded = wait_until(LONG, || {
        (0..MEASUREMENTS).all(|m| {
            let mm = format!("mm{m}");
            all.iter().map(|s| s.count(DB, &mm)).sum::<u64>() == 50
        })
    });
    assert!(loaded, "the data set never arrived");
}

fn post(proxy: &Proxy, path: &str, body: &str) -> http::Resp {
    http::post(
        &format!("{}{path}", proxy.url),
        body.as_bytes(),
        &[("Content-Type", "application/json")],
    )
}

fn setup_data(proxy: &Proxy) {
    for q in [
        format!("CREATE DATABASE {DB}"),
        format!("CREATE RETENTION POLICY week ON {DB} DURATION 2000w REPLICATION 1"),
    ] {
        assert_eq!(http::query_post(&proxy.url, &[("q", &q)]).status, 200);
    }
    assert_eq!(http::write(&proxy.url, DB, dataset(0)).status, 204);
    assert_eq!(
        http::write_with(
            &proxy.url,
            &format!("db={DB}&rp=week"),
            week_dataset(),
            false
        )
        .status,
        204
    );
    wait_drained(proxy);
}

fn owner_urls(proxy: &Proxy, mm: &str) -> Vec<String> {
    http::get(&format!("{}/replica?db={DB}&meas={mm}", proxy.url))
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["url"].as_str().unwrap().to_string())
        .collect()
}

fn by_url<'a>(servers: &[&'a Influxd], url: &str) -> &'a Influxd {
    servers.iter().find(|s| s.url == url).copied().unwrap()
}

fn select(s: &Influxd, rp: &str, mm: &str) -> Value {
    s.query(DB, &format!("SELECT * FROM \"{rp}\".\"{mm}\""))
}

fn field_types(s: &Influxd, mm: &str) -> Value {
    s.query(DB, &format!("SHOW FIELD KEYS FROM \"{mm}\""))
}

fn wait_drained(proxy: &Proxy) {
    let drained = wait_until(LONG, || {
        http::get(&format!("{}/health", proxy.url))
            .json()
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|c| c["backends"].as_array().unwrap().iter())
            .all(|b| b["queue"]["records"] == 0)
    });
    assert!(
        drained,
        "queues never drained: {}",
        http::get(&format!("{}/health", proxy.url)).body
    );
}

/// Every measurement lives, complete and identical, on its owner in every
/// circle, and nowhere else.
fn assert_placed_and_identical(proxy: &Proxy, circles: &[Vec<&Influxd>], expected_points: u64) {
    for m in 0..MEASUREMENTS {
        let mm = format!("mm{m}");
        let owners = owner_urls(proxy, &mm);
        let reference = by_url(&circles[0], &owners[0]);
        let want = select(reference, "autogen", &mm);
        let want_week = select(reference, "week", &mm);
        assert_eq!(
            reference.count(DB, &mm),
            expected_points,
            "{mm} on its owner"
        );
        for (c, owner) in circles.iter().zip(&owners) {
            let s = by_url(c, owner);
            assert_eq!(select(s, "autogen", &mm), want, "{mm} content on {owner}");
            assert_eq!(select(s, "week", &mm), want_week, "{mm} week rp on {owner}");
            assert_eq!(
                field_types(s, &mm),
                field_types(reference, &mm),
                "{mm} field types on {owner}"
            );
            for other in c.iter().filter(|o| o.url != *owner) {
                assert_eq!(
                    other.count(DB, &mm),
                    0,
                    "{mm} left on non-owner {}",
                    other.url
                );
            }
        }
    }
    let health = http::get(&format!("{}/health", proxy.url)).json();
    for c in health.as_array().unwrap() {
        for b in c["backends"].as_array().unwrap() {
            if let Some(load) = b["load"].get(DB) {
                assert_eq!(load["incorrect"], 0, "{b}");
            }
        }
    }
}

#[test]
fn rebalance_after_adding_a_backend_then_clear_leaves_every_measurement_on_its_owner() {
    let (servers, mut config) = two_by_two();
    let extra = Influxd::spawn();
    let mut proxy = Proxy::start(config.clone());
    setup_data(&proxy);
    let all: Vec<&Influxd> = servers.iter().collect();
    wait_loaded(&all);

    config["circles"][0]["backends"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "influxdb-1-3", "url": extra.url}));
    proxy.rewrite_config(config);
    proxy.restart();
    let r = post(&proxy, "/rebalance?circle_id=0&operation=add&cpus=2", "");
    assert_eq!((r.status, r.body.as_str()), (202, "accepted\n"));
    let busy = post(&proxy, "/rebalance?circle_id=0&operation=add", "");
    assert_eq!(busy.status, 202);
    // Writes during the migration.
    assert_eq!(http::write(&proxy.url, DB, dataset(100)).status, 204);
    proxy.wait_migrations_done();
    let stats = http::get(&format!(
        "{}/migrate/stats?circle_id=0&type=rebalance",
        proxy.url
    ))
    .json();
    let moved: u64 = stats
        .as_object()
        .unwrap()
        .values()
        .map(|s| s["migrate_count"].as_u64().unwrap())
        .sum();
    assert!(moved > 0, "{stats}");
    assert_eq!(post(&proxy, "/clear?circle_id=0", "").status, 202);
    proxy.wait_migrations_done();
    let circle1 = vec![&servers[0], &servers[1], &extra];
    let circle2 = vec![&servers[2], &servers[3]];
    assert!(wait_until(LONG, || (0..MEASUREMENTS).all(|m| {
        let mm = format!("mm{m}");
        circle1.iter().filter(|s| s.count(DB, &mm) > 0).count() == 1
    })));
    assert_placed_and_identical(&proxy, &[circle1, circle2], 50);
    // /health asks every backend what it holds: all in place, none left behind.
    let health = http::get(&format!("{}/health", proxy.url)).json();
    let mut total = 0;
    for b in health[0]["backends"].as_array().unwrap() {
        let load = &b["load"][DB];
        assert_eq!(load["incorrect"], 0, "{health}");
        assert_eq!(load["inplace"], load["measurements"], "{health}");
        total += load["measurements"].as_u64().unwrap();
    }
    assert_eq!(total, MEASUREMENTS as u64, "{health}");
}

#[test]
fn rebalance_after_removing_a_backend_moves_its_measurements() {
    let (servers, config) = two_by_two();
    let mut proxy = Proxy::start(config.clone());
    setup_data(&proxy);
    let all: Vec<&Influxd> = servers.iter().collect();
    wait_loaded(&all);
    let removed = config["circles"][0]["backends"][1].clone();
    let mut smaller = config.clone();
    smaller["circles"][0]["backends"]
        .as_array_mut()
        .unwrap()
        .remove(1);
    proxy.rewrite_config(smaller);
    proxy.restart();
    let body = json!({"backends": [removed]}).to_string();
    let r = post(&proxy, "/rebalance?circle_id=0&operation=rm", &body);
    assert_eq!((r.status, r.body.as_str()), (202, "accepted\n"));
    proxy.wait_migrations_done();
    for m in 0..MEASUREMENTS {
        let mm = format!("mm{m}");
        assert_eq!(
            servers[0].count(DB, &mm),
            25,
            "{mm} complete on the remaining backend"
        );
        assert_eq!(
            select(&servers[0], "autogen", &mm),
            select(by_url(&all, &owner_urls(&proxy, &mm)[1]), "autogen", &mm)
        );
    }
    let bad = post(&proxy, "/rebalance?circle_id=0&operation=rm", "{}");
    assert_eq!(bad.status, 400);
}

#[test]
fn recovery_rebuilds_a_wiped_backend_from_the_other_circle() {
    let (servers, config) = two_by_two();
    let proxy = Proxy::start(config);
    setup_data(&proxy);
    let all: Vec<&Influxd> = servers.iter().collect();
    wait_loaded(&all);
    servers[3].drop_db(DB);
    let r = post(
        &proxy,
        "/recovery?from_circle_id=0&to_circle_id=1&backend_urls="
            .to_string()
            .as_str(),
        "",
    );
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(
        post(&proxy, "/recovery?from_circle_id=1&to_circle_id=1", "").status,
        400
    );
    proxy.wait_migrations_done();
    assert_placed_and_identical(
        &proxy,
        &[
            vec![&servers[0], &servers[1]],
            vec![&servers[2], &servers[3]],
        ],
        25,
    );
}

#[test]
fn resync_repairs_an_outage_that_bypassed_the_proxy() {
    let (servers, config) = two_by_two();
    let proxy = Proxy::start(config);
    setup_data(&proxy);
    let all: Vec<&Influxd> = servers.iter().collect();
    wait_loaded(&all);
    // Points written straight into circle 1 owners only.
    for m in 0..MEASUREMENTS {
        let mm = format!("mm{m}");
        let owner = by_url(&all, &owner_urls(&proxy, &mm)[0]);
        let line = format!(
            "{mm},host=a\\ b,k=x\\,y,eq=a\\=b f=9.5,i=9i,s=\"direct\",b=true {}\n",
            T0 + 999_000_000_000
        );
        assert_eq!(owner.write(DB, line), 204);
    }
    let r = post(&proxy, "/resync?seconds=0", "");
    assert_eq!((r.status, r.body.as_str()), (202, "accepted\n"));
    proxy.wait_migrations_done();
    assert_placed_and_identical(
        &proxy,
        &[
            vec![&servers[0], &servers[1]],
            vec![&servers[2], &servers[3]],
        ],
        26,
    );
    let bad = post(&proxy, "/resync?seconds=-1", "");
    assert_eq!(bad.status, 400);
}

/// `SELECT COUNT(f)` of `mm` through `proxy` (0 when it answers no series).
fn count_through(proxy: &Proxy, db: &str, mm: &str) -> u64 {
    let answer = http::query(&proxy.url, db, &format!("SELECT COUNT(f) FROM \"{mm}\"")).json();
    answer["results"][0]["series"][0]["values"][0][1]
        .as_u64()
        .unwrap_or(0)
}

#[test]
fn once_a_rebalance_reads_idle_on_every_proxy_each_moved_point_is_read_through_either() {
    const PER_MEASUREMENT: u64 = 250;
    const COUNT: usize = 30;
    let (servers, mut config) = two_by_two();
    let extra = Influxd::spawn();
    let mut a = Proxy::start(config.clone());
    let db = crate::support::unique_db("moving");
    let body: String = (0..COUNT)
        .flat_map(|m| {
            (0..PER_MEASUREMENT)
                .map(move |i| format!("mv{m},k=v f={i} {}\n", T0 + i as i64 * 1_000_000_000))
        })
        .collect();
    assert_eq!(http::write(&a.url, &db, body).status, 204);
    let loaded = wait_until(LONG, || {
        (0..COUNT).all(|m| {
            let mm = format!("mv{m}");
            servers.iter().map(|s| s.count(&db, &mm)).sum::<u64>() == 2 * PER_MEASUREMENT
        })
    });
    assert!(loaded, "the 7,500 points never arrived in both circles");

    config["circles"][0]["backends"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "influxdb-1-3", "url": extra.url}));
    a.rewrite_config(config.clone());
    a.restart();
    let b = Proxy::start(config);
    let moved: Vec<String> = (0..COUNT)
        .map(|m| format!("mv{m}"))
        .filter(|mm| a.replica_names(&db, mm)[0] == "influxdb-1-3")
        .collect();
    assert!(!moved.is_empty(), "no measurement moves to the new backend");
    let ha = format!("127.0.0.1:{},127.0.0.1:{}", a.port, b.port);
    let r = post(
        &a,
        &format!("/rebalance?circle_id=0&operation=add&ha_addrs={ha}"),
        "",
    );
    assert_eq!((r.status, r.body.as_str()), (202, "accepted\n"));
    // No waiting for the data here: "idle" on both proxies is the promise under test.
    let deadline = std::time::Instant::now() + LONG;
    while !(a.migrations_idle() && b.migrations_idle()) {
        assert!(
            std::time::Instant::now() < deadline,
            "the rebalance never finished"
        );
    }
    // Reads take turns between the circles: two rounds reach both on each proxy.
    for round in 0..2 {
        for proxy in [&a, &b] {
            for mm in &moved {
                assert_eq!(
                    count_through(proxy, &db, mm),
                    PER_MEASUREMENT,
                    "{mm} through {} (round {round}) right after both proxies read idle; new backend holds {}",
                    proxy.url,
                    extra.count(&db, mm)
                );
            }
        }
    }
}
