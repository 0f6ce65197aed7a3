//! What an operator watches: `influx-proxy top` driven in tmux as a person would (its screen
//! read back, keys typed), and the Grafana dashboard shipped in `packaging/grafana/`, whose
//! every metric must be one `/metrics` exports.
//!
//! Both run against a busy proxy: two circles of two real influxd, a writer and a reader
//! going on, and an anti-entropy repair paced at 25 points/s, so it lasts long enough to be
//! seen with its progress bar.

use std::collections::BTreeSet;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::http::{self, wait_until};
use crate::support::influxd::Influxd;
use crate::support::proxy::{binary, circles_config, two_by_two, Proxy};
use crate::support::tmux::{shell_quote, Tmux};
use crate::support::{free_port, unique_db};

/// Deadline of anything this file waits for (a busy machine is slow, never wrong).
const LONG: Duration = Duration::from_secs(120);
const NS: i64 = 1_000_000_000;
/// Unix seconds of the repaired data set (weeks from here).
const T0: i64 = 1_600_000_000;
/// The backends of `two_by_two`.
const BACKENDS: [&str; 4] = [
    "influxdb-1-1",
    "influxdb-1-2",
    "influxdb-2-1",
    "influxdb-2-2",
];

/// A proxy with traffic and a slow repair going on; the traffic stops when dropped.
struct Busy {
    proxy: Proxy,
    /// The database the repair mends.
    db: String,
    _servers: Vec<Influxd>,
    stop: Arc<AtomicBool>,
    traffic: Option<thread::JoinHandle<()>>,
}

impl Busy {
    /// Starts the anti-entropy repair of what the backend lost (paced, see [`busy`]).
    fn start_repair(&self) {
        let url = format!("{}/anti-entropy/repair?db={}", self.proxy.url, self.db);
        let repair = http::post(&url, b"", &[]);
        assert_eq!(repair.status, 202, "{}", repair.body);
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.traffic.take() {
            let _ = t.join();
        }
    }
}

/// 25 points per series (hosts a and b) of each measurement in each of 4 weeks: a repair
/// bucket per week and measurement.
fn weeks(measurements: usize) -> String {
    let mut out = String::new();
    for w in 0..4 {
        for m in 0..measurements {
            for host in ["a", "b"] {
                for i in 0..25 {
                    let t = (T0 + w * 7 * 86_400 + i * 60) * NS;
                    out.push_str(&format!("m{m},host={host} f={i}.5 {t}\n"));
                }
            }
        }
    }
    out
}

fn create_db(proxy: &Proxy, db: &str) {
    let q = format!("CREATE DATABASE \"{db}\"");
    assert_eq!(http::query_post(&proxy.url, &[("q", &q)]).status, 200);
}

/// Starts the scene: data loaded, one backend's copy lost behind the proxy's back (for
/// [`Busy::start_repair`] to mend), and a thread writing to and reading from another database
/// every 100 ms.
fn busy() -> Busy {
    let (servers, mut config) = two_by_two();
    // Each bucket (50 points) takes 2 s: about 8 measurements x 4 weeks lost, over a minute.
    config["anti_entropy_rate"] = json!(25);
    let proxy = Proxy::start(config);
    let db = unique_db("top");
    create_db(&proxy, &db);
    assert_eq!(http::write(&proxy.url, &db, weeks(16)).status, 204);
    proxy.wait_delivered();
    servers[2].drop_db(&db);

    let live = unique_db("toplive");
    create_db(&proxy, &live);
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = {
        let (url, stop) = (proxy.url.clone(), stop.clone());
        thread::spawn(move || {
            let mut n = 0i64;
            while !stop.load(Ordering::Relaxed) {
                // 20 measurements: every backend owns some.
                let body: String = (0..20).map(|m| format!("live{m} v={n}i\n")).collect();
                let _ = http::try_post(&format!("{url}/write?db={live}"), body.as_bytes(), &[]);
                let q = http::urlencode("SELECT count(*) FROM live0");
                let _ = http::try_get(&format!("{url}/query?db={live}&q={q}"));
                n += 1;
                thread::sleep(Duration::from_millis(100));
            }
        })
    };
    Busy {
        proxy,
        db,
        _servers: servers,
        stop,
        traffic: Some(traffic),
    }
}

/// `influx-proxy top --config <proxy.json>` in a 160x50 tmux session; once it exits, the
/// shell says with what status and how the terminal is set (`stty -a`, then `end of stty`),
/// then waits.
fn top_in_tmux(config: &std::path::Path, extra: &str) -> Tmux {
    let command = format!(
        "{} top --config {} {extra}; echo \"top exited with $?\"; stty -a; echo \"end of stty\"; \
         exec sleep 600",
        shell_quote(&binary().to_string_lossy()),
        shell_quote(&config.to_string_lossy()),
    );
    Tmux::start(160, 50, &command)
}

/// The row of `backend` in the backends' table, split on blanks and the table's borders:
/// circle, backend, state, in/s, out/s, queue, records, age, p99, dead.
fn backend_row(screen: &str, backend: &str) -> Option<Vec<String>> {
    screen
        .lines()
        .find(|l| l.contains(&format!(" {backend} ")) && !l.contains("<-"))
        .map(|l| {
            l.split(|c: char| c.is_whitespace() || c == '│' || c == '|')
                .filter(|w| !w.is_empty())
                .map(str::to_string)
                .collect()
        })
}

/// A number as top writes it (`12`, `1.5k`, `2.0M`), or `None` (`-`).
fn number(text: &str) -> Option<f64> {
    let (digits, scale) = match text.chars().last()? {
        'k' => (&text[..text.len() - 1], 1e3),
        'M' => (&text[..text.len() - 1], 1e6),
        'G' => (&text[..text.len() - 1], 1e9),
        _ => (text, 1.0),
    };
    digits.parse::<f64>().ok().map(|v| v * scale)
}

/// The repair's line, once it has moved: a progress bar partly filled (`[###.....]`), its
/// buckets, its rate and ETA.
fn repair_bar(screen: &str) -> Option<&str> {
    screen.lines().find(|l| {
        let moving = ["repair", "running", "buckets", "points/s", "ETA"];
        moving.iter().all(|w| l.contains(w)) && {
            let bar = l.split_once('[').and_then(|(_, rest)| rest.split_once(']'));
            bar.is_some_and(|(inside, _)| {
                inside.len() >= 10
                    && inside.starts_with('#')
                    && inside.chars().all(|c| c == '#' || c == '.')
            })
        }
    })
}

#[test]
fn top_shows_every_backend_live_rates_and_a_repairs_progress_and_quits_cleanly() {
    let busy = busy();
    let tmux = top_in_tmux(&busy.proxy.config_path, "");
    let mut screen = String::new();
    let started = wait_until(LONG, || {
        screen = tmux.screen();
        BACKENDS.iter().all(|b| backend_row(&screen, b).is_some())
    });
    assert!(started, "top never showed the backends:\n{screen}");
    // Started while top watches: it runs for a minute from here.
    busy.start_repair();
    let seen = wait_until(LONG, || {
        screen = tmux.screen();
        let rows: Vec<Vec<String>> = BACKENDS
            .iter()
            .filter_map(|b| backend_row(&screen, b))
            .collect();
        // Every backend up, points coming in and going out of each queue.
        rows.len() == BACKENDS.len()
            && rows.iter().all(|r| {
                r.get(2).is_some_and(|s| s == "up")
                    && r.get(3).and_then(|v| number(v)).is_some_and(|v| v > 0.0)
                    && r.get(4).and_then(|v| number(v)).is_some_and(|v| v > 0.0)
            })
            && repair_bar(&screen).is_some()
            && ["circle-1", "circle-2"].iter().all(|c| {
                // The circle's read share.
                screen.lines().any(|l| l.contains(c) && l.contains('%'))
            })
    });
    assert!(seen, "the screen never showed it all:\n{screen}");
    assert!(screen.contains("q quit"), "{screen}");
    assert!(!screen.contains("scrape failed"), "{screen}");

    // Sort by a column and filter by name, as the help line says.
    tmux.keys(&["s"]);
    assert!(wait_until(LONG, || tmux
        .screen()
        .contains("sort (backend)")));
    tmux.keys(&["/", "2-2", "Enter"]);
    let filtered = wait_until(LONG, || {
        screen = tmux.screen();
        screen.contains("backends (1 of 4)")
            && backend_row(&screen, "influxdb-2-2").is_some()
            && backend_row(&screen, "influxdb-1-1").is_none()
    });
    assert!(filtered, "{screen}");

    tmux.keys(&["q"]);
    let exited = wait_until(LONG, || {
        screen = tmux.screen();
        screen.contains("end of stty")
    });
    assert!(exited, "top did not quit on q:\n{screen}");
    assert!(screen.contains("top exited with 0"), "{screen}");
    // The terminal came back: the dashboard's screen is gone and the line discipline is
    // cooked again (raw mode off).
    assert!(!screen.contains("backends ("), "{screen}");
    let words: BTreeSet<&str> = screen.split_whitespace().collect();
    for mode in ["icanon", "echo", "isig"] {
        assert!(words.contains(mode), "{mode} not set after top:\n{screen}");
    }
}

#[test]
fn top_keeps_retrying_a_proxy_it_cannot_reach_and_still_quits_on_escape() {
    // A proxy that is not there: the config names a port nothing listens on.
    let dir = tempfile::tempdir().unwrap();
    let mut config = circles_config(&[&["http://127.0.0.1:1"]]);
    config["listen_addr"] = json!(format!("127.0.0.1:{}", free_port()));
    let path = dir.path().join("proxy.json");
    std::fs::write(&path, config.to_string()).unwrap();
    let tmux = top_in_tmux(&path, "--interval 200ms");
    let mut screen = String::new();
    let failing = wait_until(LONG, || {
        screen = tmux.screen();
        // Several failures in a row: it keeps trying.
        screen.contains("scrape failed (") && !screen.contains("scrape failed (1 in a row")
    });
    assert!(failing, "{screen}");
    assert!(screen.contains("cannot reach the proxy"), "{screen}");
    tmux.keys(&["Escape"]);
    let exited = wait_until(LONG, || {
        screen = tmux.screen();
        screen.contains("top exited with 0")
    });
    assert!(exited, "top did not quit on Esc:\n{screen}");
}

#[test]
fn top_once_prints_one_plain_frame_for_scripts_and_fails_with_the_reason() {
    let busy = busy();
    let once = |args: &[&str]| {
        let dir = tempfile::tempdir().unwrap();
        Command::new(binary())
            .args(["top", "--once"])
            .args(args)
            .current_dir(dir.path())
            .output()
            .unwrap()
    };
    let config = busy.proxy.config_path.to_string_lossy().into_owned();
    let mut text = String::new();
    // Rates need traffic in the interval between its two scrapes.
    let shown = wait_until(LONG, || {
        let out = once(&["--config", &config]);
        assert!(out.status.success(), "{out:?}");
        text = String::from_utf8(out.stdout).unwrap();
        BACKENDS.iter().all(|b| {
            backend_row(&text, b)
                .and_then(|r| r.get(3).and_then(|v| number(v)))
                .is_some_and(|v| v > 0.0)
        })
    });
    assert!(shown, "{text}");
    assert!(
        text.contains("influx-proxy top  http://127.0.0.1:"),
        "{text}"
    );
    assert!(
        !text.contains("q quit"),
        "no keys without a terminal: {text}"
    );

    let out = once(&["--url", "http://127.0.0.1:1", "--interval", "100ms"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot reach the proxy at http://127.0.0.1:1/metrics"),
        "{stderr}"
    );
    let usage = once(&["--interval", "soon"]);
    assert_eq!(usage.status.code(), Some(2), "{usage:?}");
}

/// `influx_proxy_*` and `process_*` names in a PromQL expression.
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let rest = &expr[i..];
        let starts_word = i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
        if starts_word && (rest.starts_with("influx_proxy_") || rest.starts_with("process_")) {
            let len = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            names.push(rest[..len].to_string());
            i += len;
        } else {
            i += 1;
        }
    }
    names
}

/// Every `expr` of every panel's targets, rows' nested panels included.
fn expressions(panels: &[Value], out: &mut Vec<String>) {
    for p in panels {
        for t in p["targets"].as_array().into_iter().flatten() {
            if let Some(e) = t["expr"].as_str() {
                out.push(e.to_string());
            }
        }
        expressions(p["panels"].as_array().map_or(&[], Vec::as_slice), out);
    }
}

/// Sample names of a `/metrics` document (histograms' `_bucket`, `_sum`, `_count` included).
fn exported(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_string)
        .collect()
}

#[test]
fn every_metric_the_grafana_dashboard_uses_is_exported() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/packaging/grafana/influx-proxy.json"
    );
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    // The data source is chosen on import: a template variable of type datasource.
    let variables = dashboard["templating"]["list"].as_array().unwrap();
    let ds = variables
        .iter()
        .find(|v| v["type"] == "datasource" && v["query"] == "prometheus")
        .expect("a Prometheus data source variable");
    let uid = format!("${{{}}}", ds["name"].as_str().unwrap());
    let mut exprs = Vec::new();
    expressions(dashboard["panels"].as_array().unwrap(), &mut exprs);
    assert!(exprs.len() >= 10, "{exprs:?}");
    for p in dashboard["panels"].as_array().unwrap() {
        if p["type"] != "row" {
            assert_eq!(p["datasource"]["uid"], uid.as_str(), "{}", p["title"]);
        }
    }
    let used: BTreeSet<String> = exprs.iter().flat_map(|e| metric_names(e)).collect();

    let busy = busy();
    busy.start_repair();
    let proxy = &busy.proxy;
    // Reads, writes and the repair have shown up.
    let mut missing: Vec<String> = Vec::new();
    let all_there = wait_until(LONG, || {
        let text = http::get(&format!("{}/metrics", proxy.url)).body;
        let names = exported(&text);
        missing = used
            .iter()
            .filter(|n| !names.contains(*n))
            .cloned()
            .collect();
        missing.is_empty()
    });
    assert!(
        all_there,
        "the dashboard uses metrics /metrics does not export: {missing:?}"
    );
    for name in [
        "influx_proxy_backend_queued_points_total",
        "influx_proxy_circle_reads_total",
        "influx_proxy_migration_steps_done",
        "influx_proxy_backend_write_duration_seconds_bucket",
    ] {
        assert!(used.contains(name), "the dashboard has no panel of {name}");
    }
}

#[test]
fn metric_names_are_found_in_expressions() {
    assert_eq!(
        metric_names(
            "histogram_quantile(0.99, sum by (le) (rate(influx_proxy_backend_write_duration_seconds_bucket{circle=~\"$circle\"}[$__rate_interval]))) / process_resident_memory_bytes"
        ),
        [
            "influx_proxy_backend_write_duration_seconds_bucket",
            "process_resident_memory_bytes"
        ]
    );
    assert!(metric_names("my_influx_proxy_x").is_empty());
}
