//! The proxy as a service: SIGHUP reloads the config as a diff while
//! writes keep flowing; SIGTERM stops gracefully; nothing accepted is lost.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use serde_json::json;

use crate::support::http::{self, wait_until};
use crate::support::influxd::Influxd;
use crate::support::proxy::{two_by_two, Proxy};

/// Writes one point per request to `db` until stopped; returns how many
/// were acknowledged (204) and the statuses of the others.
fn load(
    url: String,
    db: &'static str,
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
) -> thread::JoinHandle<Vec<u16>> {
    thread::spawn(move || {
        let mut refused = Vec::new();
        let mut i = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let body = format!(
                "load{},w=1 v={i} {}\n",
                i % 20,
                1_600_000_000_000_000_000u64 + i
            );
            match http::request(
                "POST",
                &format!("{url}/write?db={db}"),
                Some(body.as_bytes()),
                &[],
            ) {
                Ok(r) if r.status == 204 => {
                    ok.fetch_add(1, Ordering::Relaxed);
                }
                Ok(r) => refused.push(r.status),
                Err(_) => refused.push(0),
            }
            i += 1;
        }
        refused
    })
}

fn total(servers: &[&Influxd], db: &str) -> u64 {
    (0..20)
        .map(|m| {
            servers
                .iter()
                .map(|s| s.count(db, &format!("load{m}")))
                .sum::<u64>()
        })
        .sum()
}

#[test]
fn sighup_applies_db_list_and_a_new_backend_under_load_without_losing_writes() {
    let (servers, mut config) = two_by_two();
    config["db_list"] = json!(["loaddb"]);
    let mut proxy = Proxy::start(config.clone());
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let writer = load(proxy.url.clone(), "loaddb", stop.clone(), ok.clone());
    assert!(wait_until(Duration::from_secs(10), || ok
        .load(Ordering::Relaxed)
        > 50));
    assert_eq!(http::write(&proxy.url, "otherdb", "m v=1 1\n").status, 400);

    // Reload: a second allowed database and a third backend in circle 1.
    let extra = Influxd::spawn();
    config["db_list"] = json!(["loaddb", "otherdb"]);
    config["circles"][0]["backends"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "influxdb-1-3", "url": extra.url}));
    proxy.rewrite_config(config.clone());
    proxy.sighup();
    assert!(
        wait_until(Duration::from_secs(10), || http::write(
            &proxy.url,
            "otherdb",
            "m v=1 1\n"
        )
        .status
            == 204),
        "db_list change applied"
    );
    let replica =
        |mm: &str| http::get(&format!("{}/replica?db=loaddb&meas={mm}", proxy.url)).json();
    assert!(
        (0..200).any(|i| replica(&format!("x{i}"))[0]["name"] == "influxdb-1-3"),
        "the new backend owns part of the ring"
    );
    let health = http::get(&format!("{}/health", proxy.url)).json();
    assert_eq!(health[0]["backends"].as_array().unwrap().len(), 3);

    // A reload that changes what cannot change live is refused whole.
    let good = proxy.config();
    let mut bad = good.clone();
    bad["listen_addr"] = json!("127.0.0.1:1");
    bad["db_list"] = json!(["loaddb"]);
    proxy.rewrite_config(bad);
    proxy.sighup();
    assert!(wait_until(Duration::from_secs(10), || proxy
        .log()
        .contains("listen_addr cannot change")));
    assert_eq!(
        http::write(&proxy.url, "otherdb", "m v=1 2\n").status,
        204,
        "db_list unchanged"
    );
    proxy.rewrite_config(good);

    // SIGTERM under load: graceful exit 0; every acknowledged write survives.
    thread::sleep(Duration::from_millis(300));
    let status = proxy.terminate();
    stop.store(true, Ordering::Relaxed);
    let refused = writer.join().unwrap();
    assert!(status.success(), "exit status {status:?}");
    assert!(
        refused.iter().all(|&s| s == 0),
        "no write was refused during the reload: {refused:?}"
    );
    let acked = ok.load(Ordering::Relaxed);
    proxy.restart();
    let circle1 = [&servers[0], &servers[1], &extra];
    let circle2 = [&servers[2], &servers[3]];
    assert!(
        wait_until(Duration::from_secs(60), || total(&circle1, "loaddb")
            == acked
            && total(&circle2, "loaddb") == acked),
        "acknowledged {acked}, circle 1 has {}, circle 2 has {}",
        total(&circle1, "loaddb"),
        total(&circle2, "loaddb")
    );
}

#[test]
fn sigterm_exits_zero_promptly() {
    let (_servers, mut config) = two_by_two();
    config["log_level"] = json!("debug");
    let mut proxy = Proxy::start(config);
    let started = std::time::Instant::now();
    let status = proxy.terminate();
    let log = proxy.log();
    assert!(status.success(), "{status:?}; log:\n{log}");
    assert!(started.elapsed() < Duration::from_secs(10));
    // The queue is closed by main before the process exits, not left to exit handlers.
    assert!(log.contains("Queue closed."), "{log}");
}
