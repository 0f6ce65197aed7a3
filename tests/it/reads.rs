//! Reads while writes flow: they spread over every up-to-date circle, a
//! fallback to a circle that lags is logged once per interval rather than
//! once per query, and `/health`'s `backlog` means writes waiting for a
//! retry, not records waiting for their `flush_time`.
//!
//! Reads are counted where they land: influxd's own `queryReq` statistic
//! (`/debug/vars`, httpd), read before and after.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::http::{self, wait_until};
use crate::support::influxd::Influxd;
use crate::support::proxy::{circles_config, two_by_two, Proxy};
use crate::support::unique_db;

/// How long delivery or a health check may take.
const SETTLE: Duration = Duration::from_secs(30);
/// The fallback warning of the query path.
const WARNING: &str = "No circle is fully up to date";
/// Reads of the balance test, and the threads sending them.
const READS: usize = 200;
const READERS: usize = 4;
/// Measurements written by the load (spread over the backends).
const MEASUREMENTS: usize = 4;

/// `/query` requests influxd has served (`queryReq` of its httpd stats).
fn query_requests(influxd: &Influxd) -> u64 {
    let vars = http::get(&format!("{}/debug/vars", influxd.url)).json();
    let httpd = vars
        .as_object()
        .unwrap()
        .iter()
        .find(|(key, _)| key.starts_with("httpd"))
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("no httpd statistics in /debug/vars of {}", influxd.url));
    httpd["values"]["queryReq"].as_u64().unwrap()
}

/// Records waiting in every backend queue, from `/metrics` (which, unlike
/// `/health`, sends nothing to the backends).
fn queued_records(proxy: &Proxy) -> u64 {
    let text = http::get(&format!("{}/metrics", proxy.url)).body;
    text.lines()
        .filter(|l| l.starts_with("influx_proxy_backend_queue_records{"))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

/// Sum of `influx_proxy_stale_reads_total` over circles.
fn stale_reads(proxy: &Proxy) -> u64 {
    let text = http::get(&format!("{}/metrics", proxy.url)).body;
    text.lines()
        .filter(|l| l.starts_with("influx_proxy_stale_reads_total{"))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

fn warnings(proxy: &Proxy) -> usize {
    proxy.log().matches(WARNING).count()
}

/// A steady write load through the proxy: one request of a point per
/// measurement every 20 ms, until stopped.
struct WriteLoad {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<u64>>,
}

impl WriteLoad {
    fn start(url: &str, db: &str) -> WriteLoad {
        let stop = Arc::new(AtomicBool::new(false));
        let (url, db, flag) = (url.to_string(), db.to_string(), stop.clone());
        let thread = thread::spawn(move || {
            let mut n = 0u64;
            while !flag.load(Ordering::Relaxed) {
                let body: String = (0..MEASUREMENTS)
                    .map(|m| {
                        format!(
                            "m{m},host=h{} v={n} {}\n",
                            n % 3,
                            1_600_000_000_000_000_000 + n
                        )
                    })
                    .collect();
                let r = http::write(&url, &db, &body);
                assert_eq!(r.status, 204, "write during the load: {}", r.body);
                n += 1;
                thread::sleep(Duration::from_millis(20));
            }
            n
        });
        WriteLoad {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops the load; the number of write requests it made.
    fn stop(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap()
    }
}

impl Drop for WriteLoad {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Reads `SELECT count(v) FROM m<i>` through the proxy, `READS` times from
/// `READERS` threads; each must answer with a series.
fn read_all(url: &str, db: &str) {
    thread::scope(|scope| {
        for reader in 0..READERS {
            scope.spawn(move || {
                for i in 0..READS / READERS {
                    let m = (reader + i) % MEASUREMENTS;
                    let r = http::query(url, db, &format!("SELECT count(v) FROM m{m}"));
                    assert_eq!(r.status, 200, "read m{m}: {}", r.body);
                    assert!(
                        r.json()["results"][0]["series"].is_array(),
                        "read m{m}: {}",
                        r.body
                    );
                }
            });
        }
    });
}

fn create_db(proxy: &Proxy, db: &str) {
    let r = http::query_post(&proxy.url, &[("q", &format!("CREATE DATABASE {db}"))]);
    assert_eq!(r.status, 200, "{}", r.body);
}

#[test]
fn reads_under_a_steady_write_load_split_evenly_between_circles_without_a_warning_per_query() {
    let (servers, config) = two_by_two();
    let proxy = Proxy::start(config);
    let db = unique_db("reads");
    create_db(&proxy, &db);
    let load = WriteLoad::start(&proxy.url, &db);
    // Every measurement has reached both circles before counting starts.
    let arrived = wait_until(SETTLE, || {
        (0..MEASUREMENTS).all(|m| {
            let owners = servers
                .iter()
                .filter(|s| s.count(&db, &format!("m{m}")) > 0)
                .count();
            owners == 2
        })
    });
    assert!(arrived, "the write load never reached both circles");

    let before: Vec<u64> = servers.iter().map(query_requests).collect();
    let sampling = AtomicBool::new(true);
    let most_queued = AtomicU64::new(0);
    thread::scope(|scope| {
        scope.spawn(|| {
            while sampling.load(Ordering::Relaxed) {
                most_queued.fetch_max(queued_records(&proxy), Ordering::Relaxed);
                thread::sleep(Duration::from_millis(20));
            }
        });
        read_all(&proxy.url, &db);
        sampling.store(false, Ordering::Relaxed);
    });
    let after: Vec<u64> = servers.iter().map(query_requests).collect();
    let writes = load.stop();

    let landed: Vec<u64> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
    let circles = [landed[0] + landed[1], landed[2] + landed[3]];
    let total = circles[0] + circles[1];
    eprintln!(
        "read split: circle-1 {} (backends {}, {}), circle-2 {} (backends {}, {}); \
         {writes} write requests; at most {} records queued while reading",
        circles[0],
        landed[0],
        landed[1],
        circles[1],
        landed[2],
        landed[3],
        most_queued.load(Ordering::Relaxed)
    );
    assert!(
        most_queued.load(Ordering::Relaxed) > 0,
        "no record ever waited in a queue while reading: the write load did not test anything"
    );
    assert!(
        total >= READS as u64,
        "{total} queries reached the backends for {READS} reads"
    );
    let half = total as f64 / 2.0;
    for (i, &n) in circles.iter().enumerate() {
        assert!(
            (n as f64 - half).abs() <= 0.2 * half,
            "circle-{} served {n} of {total} queries (more than 20% off an even split {circles:?})",
            i + 1
        );
    }
    let warned = warnings(&proxy);
    assert!(
        warned <= 1,
        "{warned} fallback warnings for {READS} reads:\n{}",
        proxy.log()
    );
}

/// `/health` as (name -> backend object).
fn health(proxy: &Proxy) -> Vec<Value> {
    let r = http::get(&format!("{}/health", proxy.url));
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| c["backends"].as_array().unwrap().clone())
        .collect()
}

fn backend<'a>(health: &'a [Value], name: &str) -> &'a Value {
    health
        .iter()
        .find(|b| b["name"] == name)
        .unwrap_or_else(|| panic!("no backend {name} in /health: {health:?}"))
}

#[test]
fn health_backlog_is_false_for_ordinary_writes_and_true_while_a_backend_is_down() {
    let a = Influxd::spawn();
    let mut b = Influxd::spawn();
    let mut config = circles_config(&[&[&a.url], &[&b.url]]);
    // Ordinary writes wait for flush_time in the queue: long enough that
    // /health surely sees them there.
    config["flush_time"] = json!(10);
    let proxy = Proxy::start(config);
    let db = unique_db("backlog");
    create_db(&proxy, &db);
    let body: String = (0..10).map(|i| format!("m,k=v f={i} {i}\n")).collect();
    assert_eq!(http::write(&proxy.url, &db, &body).status, 204);

    let h = health(&proxy);
    for name in ["influxdb-1-1", "influxdb-2-1"] {
        let s = backend(&h, name);
        assert!(
            s["queue"]["records"].as_u64().unwrap() > 0,
            "{name}: the write should wait for flush_time in the queue: {s}"
        );
        assert_eq!(s["active"], true, "{name}: {s}");
        assert_eq!(
            s["backlog"], false,
            "{name}: records waiting for flush_time are no backlog: {s}"
        );
    }

    b.stop();
    let down = wait_until(SETTLE, || {
        backend(&health(&proxy), "influxdb-2-1")["active"] == false
    });
    assert!(down, "influxdb-2-1 never reported inactive");
    let h = health(&proxy);
    let s = backend(&h, "influxdb-2-1");
    assert!(s["queue"]["records"].as_u64().unwrap() > 0, "{s}");
    assert_eq!(
        s["backlog"], true,
        "a down backend with queued writes has a backlog: {s}"
    );
    assert_eq!(backend(&h, "influxdb-1-1")["backlog"], false, "{h:?}");

    // Reads meanwhile go to the circle that is up to date, quietly.
    for _ in 0..20 {
        let r = http::query(&proxy.url, &db, "SELECT count(f) FROM m");
        assert_eq!(r.status, 200, "{}", r.body);
    }
    assert_eq!(warnings(&proxy), 0, "{}", proxy.log());

    b.start();
    let delivered = wait_until(SETTLE, || b.count(&db, "m") == 10);
    assert!(delivered, "the queued writes never reached influxdb-2-1");
    let drained = wait_until(SETTLE, || {
        let h = health(&proxy);
        let s = backend(&h, "influxdb-2-1");
        s["backlog"] == false && s["rewrite"] == false && s["queue"]["records"] == 0
    });
    assert!(
        drained,
        "influxdb-2-1 still reports a backlog: {:?}",
        health(&proxy)
    );
}

#[test]
fn reads_that_must_fall_back_to_a_lagging_circle_warn_once_per_interval_not_per_query() {
    let servers = [Influxd::spawn(), Influxd::spawn()];
    let mut config = circles_config(&[&[&servers[0].url], &[&servers[1].url]]);
    // Never preferred for reads: every read is a fallback.
    for c in config["circles"].as_array_mut().unwrap() {
        c["backends"][0]["write_only"] = json!(true);
    }
    let proxy = Proxy::start(config);
    let db = unique_db("fallback");
    create_db(&proxy, &db);
    assert_eq!(http::write(&proxy.url, &db, "m v=1 1\n").status, 204);
    assert!(wait_until(SETTLE, || servers
        .iter()
        .all(|s| s.count(&db, "m") == 1)));

    let started = Instant::now();
    let reads = 50;
    for _ in 0..reads {
        let r = http::query(&proxy.url, &db, "SELECT v FROM m");
        assert_eq!(r.status, 200, "{}", r.body);
        assert!(r.json()["results"][0]["series"].is_array(), "{}", r.body);
    }
    let elapsed = started.elapsed();
    assert_eq!(stale_reads(&proxy), reads, "every read is counted");
    let warned = warnings(&proxy) as u64;
    let allowed = 1 + elapsed.as_secs() / 10;
    assert!(
        (1..=allowed).contains(&warned),
        "{warned} fallback warnings for {reads} reads in {elapsed:?} (one per 10 s expected):\n{}",
        proxy.log()
    );
}

#[test]
fn health_and_replica_answer_in_both_generations_and_health_is_cheap_to_poll() {
    let (servers, config) = two_by_two();
    let proxy = Proxy::start(config);
    let db = unique_db("shape");
    assert_eq!(
        http::query(&proxy.url, &db, &format!("CREATE DATABASE {db}")).status,
        200
    );
    let body: String = (0..8).map(|m| format!("hm{m},t=a v=1i 1\n")).collect();
    assert_eq!(http::write(&proxy.url, &db, &body).status, 204);
    let get = |path: &str| {
        let r = http::get(&format!("{}{path}", proxy.url));
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        r.json()
    };
    let measurements = |h: &Value| -> u64 {
        h.as_array()
            .unwrap()
            .iter()
            .flat_map(|c| c["backends"].as_array().unwrap())
            .map(|b| b["load"][&db]["measurements"].as_u64().unwrap_or(0))
            .sum()
    };
    assert!(wait_until(SETTLE, || measurements(&get(
        "/health?fresh=true"
    )) == 16));

    // 2.4 (the default): `load` from every backend, reused for a few seconds.
    let asked = |s: &[Influxd]| s.iter().map(query_requests).sum::<u64>();
    let before = asked(&servers);
    let h = get("/health");
    assert_eq!(measurements(&h), 16, "{h}");
    assert_eq!(
        asked(&servers),
        before,
        "a /health right after another asked the backends again"
    );
    get("/health?fresh=true");
    assert!(
        asked(&servers) > before,
        "fresh=true did not ask the backends"
    );

    // 2.5.12: an object; what each backend holds only with stats=true.
    let before = asked(&servers);
    let v25 = get("/health?version=2.5");
    assert_eq!(
        asked(&servers),
        before,
        "the 2.5 /health without stats asked the backends"
    );
    assert_eq!(v25["status"], "pass", "{v25}");
    assert_eq!(v25["name"], "influx-proxy");
    assert_eq!(v25["checks"], json!([]));
    let circle = &v25["circles"][0];
    assert_eq!(
        circle["circle"],
        json!({"id": 0, "name": "circle-1", "active": true, "write_only": false})
    );
    let b = &circle["backends"][0];
    assert_eq!(b["rewriting"], false, "{b}");
    assert!(b.get("stats").is_none() && b.get("load").is_none(), "{b}");
    let stats = get("/health?stats=true");
    let mut held = 0;
    for c in stats["circles"].as_array().unwrap() {
        for b in c["backends"].as_array().unwrap() {
            assert_eq!(b["healthy"], true, "{b}");
            assert_eq!(b["stats"][&db]["incorrect"], 0, "{b}");
            held += b["stats"][&db]["measurements"].as_u64().unwrap();
        }
    }
    assert_eq!(held, 16, "{stats}");

    // /replica: `meas` (2.4) and `mm` (2.5.12) name the shape.
    let old = get(&format!("/replica?db={db}&meas=hm0"));
    let new = get(&format!("/replica?db={db}&mm=hm0"));
    assert_eq!(old.as_array().unwrap().len(), 2);
    for (o, n) in old.as_array().unwrap().iter().zip(new.as_array().unwrap()) {
        assert_eq!(n["backend"], json!({"name": o["name"], "url": o["url"]}));
        assert_eq!(
            n["circle"],
            json!({"id": o["circle_id"], "name": o["circle"]})
        );
    }
    assert_eq!(get(&format!("/replica?db={db}&meas=hm0&version=2.5")), new);
    let r = http::get(&format!("{}/replica?db={db}&version=2.5", proxy.url));
    assert_eq!(
        (r.status, r.json()["error"].clone()),
        (400, json!("invalid db or mm"))
    );
    let r = http::get(&format!("{}/replica?db={db}", proxy.url));
    assert_eq!(
        (r.status, r.json()["error"].clone()),
        (400, json!("invalid db or meas"))
    );
}
