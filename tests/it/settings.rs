//! Every field of README's config table has a proof that it does something.
//!
//! Reviews found documented settings that nothing read (one of them an auth switch). The walk
//! below parses the table from README.md at test time and requires an entry in [`PROOFS`] for
//! every documented name (aliases included), and no entry for an undocumented one, so a new
//! field cannot be documented without a proof and a proof cannot outlive its field.
//!
//! A proof is a probe run here against the built binary and real `influxd` (the setting is
//! changed from its default and the difference is observed through the HTTP API, influxd, the
//! wire, the filesystem or the log), the WARN line of a setting documented as having no effect,
//! or the name of an existing test that shows the effect (checked to exist and to mention the
//! field).

use std::fs;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::http::{self, wait_until};
use crate::support::influxd::Influxd;
use crate::support::proxy::{circles_config, spawn_unwatched, Proxy};
use crate::support::{free_port, self_signed_cert, unique_db};

/// How long an effect that should happen may take (delivery, health checks): generous.
const EFFECT: Duration = Duration::from_secs(15);
/// Probes run at once (each mostly waits on timers).
const PARALLEL: usize = 4;
/// Credentials of the auth-enabled influxd.
const INFLUX_USER: &str = "admin";
const INFLUX_PASS: &str = "password";
/// `admin` and `password` in the encrypted form of `/encrypt` (spec §5).
const ENC_ADMIN: &str = "YgvEyuPZlDYAH8sGDkC!Ag";
const ENC_PASSWORD: &str = "7vnwDnX!xzLY_jqHoFX41w";

/// A probe: panics when the effect is not observed.
type ProbeFn = fn(&Shared);

/// How a documented field is shown to have an effect.
enum Proof {
    /// Run here: panics when the effect is not observed.
    Probe(fn(&Shared)),
    /// Documented as having no effect: a proxy started with this JSON at the field's path logs
    /// the WARN naming it, at start and again at reload.
    Warned(&'static str),
    /// This existing test (in `tests/` or `src/`) shows the effect and mentions the field.
    Elsewhere(&'static str),
}

use Proof::{Elsewhere, Probe, Warned};

/// The tests of `rules` (tests/it/rules.rs).
const DROP_RULES: &str = "drop_rules_acknowledge_matching_lines_store_none_and_count_them_per_rule";
const PIN_RULES: &str =
    "a_pin_places_a_measurement_for_writes_replica_and_merged_reads_and_a_rebalance_moves_it";

/// Every documented field and its proof.
const PROOFS: &[(&str, Proof)] = &[
    ("circles[].name", Probe(circle_name)),
    (
        "write_pace_max_wait_ms",
        Elsewhere("write_pace_max_wait_bounds_the_wait_and_zero_turns_pacing_off"),
    ),
    ("circles[].backends[].name", Probe(backend_name)),
    ("circles[].backends[].url", Probe(backend_url)),
    ("circles[].backends[].username", Probe(backend_credentials)),
    ("circles[].backends[].password", Probe(backend_credentials)),
    (
        "circles[].backends[].auth_encrypt",
        Probe(backend_auth_encrypt),
    ),
    (
        "circles[].backends[].auth_secure",
        Probe(backend_auth_secure),
    ),
    (
        "circles[].backends[].write_only",
        Elsewhere(
            "reads_that_must_fall_back_to_a_lagging_circle_warn_once_per_interval_not_per_query",
        ),
    ),
    (
        "circles[].backends[].tls_skip_verify",
        Probe(tls_skip_verify),
    ),
    ("listen_addr", Probe(listen_addr)),
    ("db_list", Probe(db_list)),
    ("data_dir", Probe(data_dir)),
    ("mlog_dir", Probe(mlog_dir)),
    ("tlog_dir", Probe(tlog_dir)),
    ("hash_key", Probe(hash_key)),
    ("shard_key", Probe(shard_key)),
    ("vnode_size", Probe(vnode_size)),
    ("flush_size", Probe(flush_size)),
    ("flush_time", Probe(flush_time)),
    ("check_interval", Probe(check_interval)),
    ("rewrite_interval", Probe(rewrite_interval)),
    ("write_timeout", Probe(write_timeout)),
    (
        "query_timeout",
        Elsewhere("reads_fail_over_from_a_hung_backend_within_query_timeout_then_avoid_it"),
    ),
    (
        "write_concurrency",
        Elsewhere("a_backlog_drains_in_concurrent_requests_without_reordering_any_series"),
    ),
    ("write_gzip", Probe(write_gzip)),
    ("idle_timeout", Probe(idle_timeout)),
    ("username", Probe(proxy_username)),
    ("password", Probe(proxy_password)),
    ("auth_encrypt", Probe(proxy_auth_encrypt)),
    (
        "auth_secure",
        Elsewhere("auth_secure_configs_hold_encrypted_credentials_and_clients_send_plaintext"),
    ),
    (
        "ping_auth_enabled",
        Elsewhere("ping_auth_enabled_puts_ping_behind_the_credentials"),
    ),
    (
        "write_tracing",
        Elsewhere("write_tracing_and_query_tracing_log_each_request_and_are_off_by_default"),
    ),
    (
        "query_tracing",
        Elsewhere("write_tracing_and_query_tracing_log_each_request_and_are_off_by_default"),
    ),
    ("log_enabled", Probe(log_enabled)),
    ("migrate_cpus", Probe(migrate_cpus)),
    ("migrate_batch", Probe(migrate_batch)),
    ("ha_addrs", Probe(ha_addrs)),
    ("conn_pool_size", Warned("50")),
    ("rewrite_threads", Warned("2")),
    ("tls.ciphers", Warned(r#"["TLS_AES_128_GCM_SHA256"]"#)),
    ("tls.max_version", Warned(r#""1.3""#)),
    (
        "https_enabled",
        Elsewhere("https_serves_the_api_with_the_configured_certificate"),
    ),
    (
        "https_cert",
        Elsewhere("https_serves_the_api_with_the_configured_certificate"),
    ),
    (
        "https_key",
        Elsewhere("https_serves_the_api_with_the_configured_certificate"),
    ),
    ("tls.min_version", Probe(tls_min_version)),
    (
        "pprof_enabled",
        Elsewhere("metrics_and_pprof_need_auth_and_pprof_only_when_enabled"),
    ),
    ("wal_sync", Probe(wal_sync)),
    (
        "wal_max_bytes",
        Elsewhere("a_full_queue_answers_503_and_loses_nothing_it_accepted"),
    ),
    ("dead_letter_max_bytes", Probe(dead_letter_max_bytes)),
    (
        "wal_min_free_mb",
        Elsewhere("a_full_disk_refuses_writes_keeps_delivering_and_recovers"),
    ),
    ("max_body_bytes", Probe(max_body_bytes)),
    ("max_decompressed_bytes", Probe(max_decompressed_bytes)),
    (
        "max_line_bytes",
        Elsewhere("bad_input_gets_the_right_status_and_the_proxy_keeps_serving"),
    ),
    (
        "timestamp_window",
        Elsewhere("timestamp_window_refuses_stale_and_future_points_and_keeps_the_others"),
    ),
    (
        "max_time_delta_secs",
        Elsewhere("rules_decode_in_order_with_their_aliases_and_defaults"),
    ),
    (
        "anti_entropy_interval",
        Elsewhere("the_background_pass_repairs_recent_divergence_within_anti_entropy_window"),
    ),
    (
        "anti_entropy_window",
        Elsewhere("the_background_pass_repairs_recent_divergence_within_anti_entropy_window"),
    ),
    (
        "anti_entropy_rate",
        Elsewhere("a_repair_interrupted_by_a_crash_resumes_without_repeating_buckets"),
    ),
    ("rules", Elsewhere(DROP_RULES)),
    ("rules[].action", Elsewhere(DROP_RULES)),
    ("rules[].name", Elsewhere(DROP_RULES)),
    ("rules[].database", Elsewhere(DROP_RULES)),
    (
        "rules[].db",
        Elsewhere("rules_decode_in_order_with_their_aliases_and_defaults"),
    ),
    ("rules[].measurement", Elsewhere(DROP_RULES)),
    ("rules[].measurement_regex", Elsewhere(DROP_RULES)),
    ("rules[].tag", Elsewhere(DROP_RULES)),
    ("rules[].tag_regex", Elsewhere(DROP_RULES)),
    ("rules[].backends", Elsewhere(PIN_RULES)),
    ("shutdown_timeout", Probe(shutdown_timeout)),
    ("log_level", Probe(log_level)),
    ("memory_budget_mb", Probe(memory_budget_mb)),
    ("udp[].bind_addr", Elsewhere(UDP_WRITE)),
    ("udp[].bind-address", Elsewhere(UDP_WRITE)),
    ("udp[].bind_address", Elsewhere(UDP_ALIASES)),
    ("udp[].bind-addr", Elsewhere(UDP_ALIASES)),
    ("udp[].port", Elsewhere(UDP_ALIASES)),
    ("udp[].database", Elsewhere(UDP_WRITE)),
    ("udp[].retention_policy", Elsewhere(UDP_WRITE)),
    ("udp[].retention-policy", Elsewhere(INFLUXD_UDP)),
    ("udp[].precision", Elsewhere(UDP_WRITE)),
    (
        "udp[].read_buffer",
        Elsewhere("datagrams_the_kernel_drops_for_a_full_read_buffer_are_counted"),
    ),
    ("udp[].read-buffer", Elsewhere(INFLUXD_UDP)),
    ("udp[].read_buffer_bytes", Elsewhere(UDP_ALIASES)),
    ("udp[].batch_size", Elsewhere(UDP_BATCHES)),
    ("udp[].batch-size", Elsewhere(INFLUXD_UDP)),
    ("udp[].batch", Elsewhere(UDP_ALIASES)),
    ("udp[].batch_timeout", Elsewhere(UDP_BATCHES)),
    ("udp[].batch-timeout", Elsewhere(UDP_WRITE)),
    (
        "udp[].batch_pending",
        Elsewhere("datagrams_beyond_batch_pending_are_dropped_while_a_write_waits"),
    ),
    ("udp[].batch-pending", Elsewhere(INFLUXD_UDP)),
    (
        "udp[].enabled",
        Elsewhere(
            "a_reload_binds_new_listeners_updates_kept_ones_closes_removed_ones_or_applies_nothing",
        ),
    ),
];

/// The UDP tests that show several settings (`tests/it/udp.rs`, `src/config/udp_tests.rs`).
const UDP_WRITE: &str = "datagrams_are_written_like_write_and_refused_lines_are_counted";
const UDP_BATCHES: &str =
    "batches_go_out_at_batch_size_or_batch_timeout_and_a_graceful_stop_writes_the_rest";
const UDP_ALIASES: &str = "relay_and_spout_keys_are_aliases";
const INFLUXD_UDP: &str = "influxd_udp_section_keys_are_aliases";

#[test]
fn every_documented_setting_has_an_observable_effect() {
    let documented = documented_fields();
    let named: Vec<&str> = PROOFS.iter().map(|(name, _)| *name).collect();
    let missing: Vec<&String> = documented
        .iter()
        .filter(|d| !named.contains(&d.as_str()))
        .collect();
    let undocumented: Vec<&&str> = named
        .iter()
        .filter(|n| !documented.iter().any(|d| d == *n))
        .collect();
    assert!(
        missing.is_empty() && undocumented.is_empty(),
        "documented without a proof: {missing:?}; proofs of undocumented names: {undocumented:?}"
    );

    for (name, proof) in PROOFS {
        if let Elsewhere(test) = proof {
            assert_test_mentions(test, name);
        }
    }
    let warned: Vec<(&str, &str)> = PROOFS
        .iter()
        .filter_map(|(name, proof)| match proof {
            Warned(value) => Some((*name, *value)),
            _ => None,
        })
        .collect();

    let shared = Shared::new();
    let probes: Vec<(&str, ProbeFn)> = PROOFS
        .iter()
        .filter_map(|(name, proof)| match proof {
            Probe(probe) => Some((*name, *probe)),
            _ => None,
        })
        .collect();
    let next = AtomicU64::new(0);
    let failures: Mutex<Vec<String>> = Mutex::new(Vec::new());
    thread::scope(|scope| {
        scope.spawn(|| {
            if let Err(panic) = std::panic::catch_unwind(|| warned_at_start_and_reload(&warned)) {
                failures
                    .lock()
                    .unwrap()
                    .push(format!("warned settings: {}", panic_text(&panic)));
            }
        });
        for _ in 0..PARALLEL {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                let Some((name, probe)) = probes.get(i) else {
                    return;
                };
                let started = Instant::now();
                let result =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| probe(&shared)));
                eprintln!("probe {name}: {:?}", started.elapsed());
                if let Err(panic) = result {
                    failures
                        .lock()
                        .unwrap()
                        .push(format!("{name}: {}", panic_text(&panic)));
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap();
    assert!(
        failures.is_empty(),
        "{} probe(s) failed:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

fn panic_text(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "<non-string panic>".into())
}

// ---------------------------------------------------------------------------------------------
// The walk.

/// The names in the first column of README's config table, a row's unqualified names taking
/// the first name's prefix (`circles[].backends[].username`, `password` names two backend
/// fields) and aliases included (`mlog_dir` (alias `tlog_dir`)).
fn documented_fields() -> Vec<String> {
    let readme = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README.md");
    let section = readme
        .split("\n## ")
        .find(|s| s.starts_with("Configuration (`proxy.json`)"))
        .expect("README has a section \"## Configuration (`proxy.json`)\"");
    let mut names = Vec::new();
    for row in section.lines().filter(|l| l.starts_with("| `")) {
        let cell = row.split('|').nth(1).unwrap();
        let raw: Vec<&str> = cell.split('`').skip(1).step_by(2).collect();
        let prefix = raw[0].rfind('.').map_or("", |i| &raw[0][..=i]);
        for name in raw {
            if name.contains('.') {
                names.push(name.to_string());
            } else {
                names.push(format!("{prefix}{name}"));
            }
        }
    }
    assert!(
        names.len() > 40,
        "too few fields read from README: {names:?}"
    );
    names
}

/// Asserts that `fn {test}(` exists in `tests/` or `src/` and that its body mentions the last
/// segment of `field`.
fn assert_test_mentions(test: &str, field: &str) {
    let key = field.rsplit('.').next().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("tests"), &mut files);
    rust_files(&root.join("src"), &mut files);
    let needle = format!("fn {test}(");
    for file in files {
        let text = fs::read_to_string(&file).unwrap();
        let Some(start) = text.find(&needle) else {
            continue;
        };
        let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
        let indent = &text[line_start..start];
        let close = format!("\n{indent}}}\n");
        let end = text[start..].find(&close).map_or(text.len(), |i| start + i);
        let body = &text[start..end];
        assert!(
            body.contains(key),
            "{field}: test {test} ({}) does not mention {key}",
            file.display()
        );
        return;
    }
    panic!("{field}: no test `fn {test}(` in tests/ or src/");
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Starts one proxy with every `Warned` setting and checks one WARN per setting at start and
/// one more after SIGHUP; a default proxy warns about none.
fn warned_at_start_and_reload(warned: &[(&str, &str)]) {
    let mut config = circles_config(&[&["http://127.0.0.1:9"]]);
    for (name, value) in warned {
        let value: Value = serde_json::from_str(value).unwrap();
        match name.split_once('.') {
            Some((object, key)) => {
                if config.get(object).is_none() {
                    config[object] = json!({});
                }
                config[object][key] = value;
            }
            None => config[*name] = value,
        }
    }
    let proxy = Proxy::start(config);
    let quiet = Proxy::start(circles_config(&[&["http://127.0.0.1:9"]]));
    for (name, _) in warned {
        assert_eq!(
            proxy.no_effect_warnings(name),
            1,
            "{name}:\n{}",
            proxy.log()
        );
        assert_eq!(
            quiet.no_effect_warnings(name),
            0,
            "{name}:\n{}",
            quiet.log()
        );
    }
    proxy.sighup();
    for (name, _) in warned {
        assert!(
            wait_until(EFFECT, || proxy.no_effect_warnings(name) == 2),
            "{name} not warned again at reload:\n{}",
            proxy.log()
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Shared servers and helpers.

/// Servers the probes share (each probe uses its own databases).
struct Shared {
    /// A plain influxd for most probes.
    plain: Influxd,
    /// An influxd with auth enabled (user `admin`, password `password`).
    auth: Influxd,
    /// Source and destination of the migration probes (a recovery copies every database).
    mig_source: Influxd,
    mig_dest: Influxd,
    /// A self-signed certificate and key for 127.0.0.1.
    cert: PathBuf,
    key: PathBuf,
    _tls_dir: tempfile::TempDir,
}

impl Shared {
    fn new() -> Shared {
        let (plain, auth, mig_source, mig_dest) = thread::scope(|s| {
            let a = s.spawn(Influxd::spawn);
            let b = s.spawn(|| Influxd::spawn_with_auth(INFLUX_USER, INFLUX_PASS));
            let c = s.spawn(Influxd::spawn);
            let d = s.spawn(Influxd::spawn);
            (
                a.join().unwrap(),
                b.join().unwrap(),
                c.join().unwrap(),
                d.join().unwrap(),
            )
        });
        let tls_dir = tempfile::tempdir().unwrap();
        let (cert, key) = self_signed_cert(tls_dir.path());
        Shared {
            plain,
            auth,
            mig_source,
            mig_dest,
            cert,
            key,
            _tls_dir: tls_dir,
        }
    }
}

/// `config` with the keys of `extra` set (top level).
fn with(mut config: Value, extra: Value) -> Value {
    for (k, v) in extra.as_object().unwrap() {
        config[k] = v.clone();
    }
    config
}

/// One circle with one backend at `url`, plus `extra`.
fn one(url: &str, extra: Value) -> Value {
    with(circles_config(&[&[url]]), extra)
}

/// Writes `body` to `db` through the proxy and asserts 204.
fn write_ok(proxy: &Proxy, db: &str, body: &str) {
    let r = http::write(&proxy.url, db, body);
    assert_eq!(r.status, 204, "write to {db}: {}", r.body);
}

/// Sum of the samples of `metric` whose labels mention `label` (e.g. a backend name).
fn metric(proxy: &Proxy, metric: &str, label: &str) -> f64 {
    proxy.metric(metric, label)
}

/// The httpd statistic `name` of influxd's `/debug/vars`.
fn httpd_stat(influxd: &Influxd, name: &str) -> u64 {
    let vars = http::get(&format!("{}/debug/vars", influxd.url)).json();
    vars.as_object()
        .unwrap()
        .iter()
        .find(|(key, _)| key.starts_with("httpd"))
        .map(|(_, v)| v["values"][name].as_u64().unwrap_or(0))
        .unwrap_or(0)
}

/// `COUNT(*)` of `mm` in `db` on the auth-enabled influxd.
fn auth_count(influxd: &Influxd, db: &str, mm: &str) -> u64 {
    let url = format!(
        "{}/query?u={INFLUX_USER}&p={INFLUX_PASS}&db={}&q={}",
        influxd.url,
        http::urlencode(db),
        http::urlencode(&format!("SELECT COUNT(*) FROM \"{mm}\""))
    );
    let json = http::get(&url).json();
    json["results"][0]["series"][0]["values"][0][1]
        .as_u64()
        .unwrap_or(0)
}

fn auth_create_db(influxd: &Influxd, db: &str) {
    let q = format!("CREATE DATABASE \"{db}\"");
    let r = http::post(
        &format!(
            "{}/query?u={INFLUX_USER}&p={INFLUX_PASS}&q={}",
            influxd.url,
            http::urlencode(&q)
        ),
        b"",
        &[],
    );
    assert_eq!(r.status, 200, "{}", r.body);
}

/// What one forwarded connection carried from the client.
type Captured = Arc<Mutex<Vec<u8>>>;

/// A TCP forwarder to a real server that keeps what the proxy sent: per connection, the bytes
/// from the client. A byte counter on the wire, not a stand-in for InfluxDB.
struct Forwarder {
    url: String,
    sent: Arc<Mutex<Vec<Captured>>>,
}

impl Forwarder {
    fn to(upstream_port: u16) -> Forwarder {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
        let sent: Arc<Mutex<Vec<Captured>>> = Arc::default();
        let conns = sent.clone();
        thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream_port)) else {
                    continue;
                };
                let buf: Arc<Mutex<Vec<u8>>> = Arc::default();
                conns.lock().unwrap().push(buf.clone());
                let (mut c_read, mut s_write) =
                    (client.try_clone().unwrap(), server.try_clone().unwrap());
                let (mut s_read, mut c_write) = (server, client);
                thread::spawn(move || {
                    let mut chunk = [0u8; 16384];
                    while let Ok(n) = c_read.read(&mut chunk) {
                        if n == 0 || s_write.write_all(&chunk[..n]).is_err() {
                            break;
                        }
                        buf.lock().unwrap().extend_from_slice(&chunk[..n]);
                    }
                    let _ = s_write.shutdown(Shutdown::Write);
                });
                thread::spawn(move || {
                    let _ = std::io::copy(&mut s_read, &mut c_write);
                    let _ = c_write.shutdown(Shutdown::Write);
                });
            }
        });
        Forwarder { url, sent }
    }

    /// Everything sent through so far, per connection.
    fn connections(&self) -> Vec<Vec<u8>> {
        self.sent
            .lock()
            .unwrap()
            .iter()
            .map(|b| b.lock().unwrap().clone())
            .collect()
    }

    fn bytes(&self) -> usize {
        self.connections().iter().map(Vec::len).sum()
    }

    /// Occurrences of `needle` in everything sent.
    fn count(&self, needle: &str) -> usize {
        self.connections()
            .iter()
            .map(|c| String::from_utf8_lossy(c).matches(needle).count())
            .sum()
    }
}

// ---------------------------------------------------------------------------------------------
// Probes: backends and circles.

/// `/health` lists circles and backends by their configured names.
fn circle_name(s: &Shared) {
    let mut config = one(&s.plain.url, json!({}));
    config["circles"][0]["name"] = json!("circle-named-by-the-probe");
    let proxy = Proxy::start(config);
    let health = http::get(&format!("{}/health", proxy.url)).body;
    assert!(health.contains("circle-named-by-the-probe"), "{health}");
}

fn backend_name(s: &Shared) {
    let mut config = one(&s.plain.url, json!({}));
    config["circles"][0]["backends"][0]["name"] = json!("backend-named-by-the-probe");
    let proxy = Proxy::start(config);
    let health = http::get(&format!("{}/health", proxy.url)).body;
    assert!(health.contains("backend-named-by-the-probe"), "{health}");
    assert!(
        metric(
            &proxy,
            "influx_proxy_backend_active",
            "backend-named-by-the-probe"
        ) == 1.0,
        "the backend's metrics carry its name"
    );
}

/// A write lands in the influxd of the backend's url, not in another one.
fn backend_url(s: &Shared) {
    let db = unique_db("url");
    let proxy = Proxy::start(one(&s.mig_dest.url, json!({})));
    write_ok(&proxy, &db, "m v=1 1\n");
    assert!(wait_until(EFFECT, || s.mig_dest.count(&db, "m") == 1));
    assert_eq!(s.plain.count(&db, "m"), 0);
}

/// An auth-enabled influxd takes the writes of a backend with both credentials only.
fn backend_credentials(s: &Shared) {
    let with_creds = |user: &str, pass: &str| {
        let mut config = one(&s.auth.url, json!({}));
        config["circles"][0]["backends"][0]["username"] = json!(user);
        config["circles"][0]["backends"][0]["password"] = json!(pass);
        config
    };
    lands_only_with(
        s,
        with_creds(INFLUX_USER, INFLUX_PASS),
        &[
            with_creds("", INFLUX_PASS),
            with_creds(INFLUX_USER, ""),
            one(&s.auth.url, json!({})),
        ],
    );
}

fn backend_auth_encrypt(s: &Shared) {
    backend_encrypted(s, "auth_encrypt");
}

fn backend_auth_secure(s: &Shared) {
    backend_encrypted(s, "auth_secure");
}

/// Encrypted backend credentials work with the flag `key` and not without it.
fn backend_encrypted(s: &Shared, key: &str) {
    let config = |flag: bool| {
        let mut config = one(&s.auth.url, json!({}));
        let b = &mut config["circles"][0]["backends"][0];
        b["username"] = json!(ENC_ADMIN);
        b["password"] = json!(ENC_PASSWORD);
        if flag {
            b[key] = json!(true);
        }
        config
    };
    lands_only_with(s, config(true), &[config(false)]);
}

/// A write through a proxy with `good` lands on the auth influxd; the same write through each
/// of `bad` does not (checked after the good one has landed, and after 2 s more).
fn lands_only_with(s: &Shared, good: Value, bad: &[Value]) {
    let good_db = unique_db("cred_ok");
    auth_create_db(&s.auth, &good_db);
    let good = Proxy::start(good);
    let bad: Vec<(String, Proxy)> = bad
        .iter()
        .map(|c| {
            let db = unique_db("cred_bad");
            auth_create_db(&s.auth, &db);
            (db, Proxy::start(c.clone()))
        })
        .collect();
    write_ok(&good, &good_db, "m v=1 1\n");
    for (db, proxy) in &bad {
        write_ok(proxy, db, "m v=1 1\n");
    }
    assert!(
        wait_until(EFFECT, || auth_count(&s.auth, &good_db, "m") == 1),
        "{}",
        good.log()
    );
    thread::sleep(Duration::from_secs(2));
    for (i, (db, proxy)) in bad.iter().enumerate() {
        assert_eq!(
            auth_count(&s.auth, db, "m"),
            0,
            "bad config {i}:\n{}",
            proxy.log()
        );
    }
}

/// A backend that is this proxy's own HTTPS server (it answers `/ping` like influxd) with a
/// self-signed certificate is active only with `tls_skip_verify`.
fn tls_skip_verify(s: &Shared) {
    let https = HttpsProxy::start(s, json!({}));
    let backend = format!("https://127.0.0.1:{}", https.port);
    let mut skipping = one(&backend, json!({}));
    skipping["circles"][0]["backends"][0]["tls_skip_verify"] = json!(true);
    let skipping = Proxy::start(skipping);
    let verifying = Proxy::start(one(&backend, json!({})));
    let active = |p: &Proxy| metric(p, "influx_proxy_backend_active", "influxdb-1-1");
    assert!(
        wait_until(EFFECT, || active(&skipping) == 1.0),
        "{}",
        skipping.log()
    );
    assert!(
        wait_until(EFFECT, || active(&verifying) == 0.0),
        "{}",
        verifying.log()
    );
    thread::sleep(Duration::from_secs(2));
    assert_eq!(active(&verifying), 0.0, "{}", verifying.log());
}

// ---------------------------------------------------------------------------------------------
// Probes: listener, databases, directories.

fn listen_addr(s: &Shared) {
    let port = free_port();
    let proxy = Proxy::start(one(
        &s.plain.url,
        json!({"listen_addr": format!("127.0.0.1:{port}")}),
    ));
    assert_eq!(proxy.port, port);
    assert_eq!(
        http::get(&format!("http://127.0.0.1:{port}/ping")).status,
        204
    );
}

fn db_list(s: &Shared) {
    let allowed = unique_db("allowed");
    let other = unique_db("other");
    let listed = Proxy::start(one(&s.plain.url, json!({"db_list": [allowed]})));
    let open = Proxy::start(one(&s.plain.url, json!({})));
    let r = http::write(&listed.url, &other, "m v=1 1\n");
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("database forbidden"), "{}", r.body);
    write_ok(&listed, &allowed, "m v=1 1\n");
    write_ok(&open, &other, "m v=1 1\n");
}

fn data_dir(s: &Shared) {
    let dir = tempfile::tempdir().unwrap();
    let custom = dir.path().join("custom-data");
    let proxy = Proxy::start(one(&s.plain.url, json!({"data_dir": custom})));
    write_ok(&proxy, &unique_db("dd"), "m v=1 1\n");
    assert!(custom.join("wal").is_dir(), "{}", custom.display());
    assert!(!proxy.dir.join("data").exists());
}

fn mlog_dir(s: &Shared) {
    transfer_log_dir(s, "mlog_dir");
}

fn tlog_dir(s: &Shared) {
    transfer_log_dir(s, "tlog_dir");
}

/// A recovery writes `recovery.log` into the directory given by `key`.
fn transfer_log_dir(s: &Shared, key: &str) {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("transfer-logs");
    let run = recovery(s, json!({ key: logs }), None);
    let log = logs.join("recovery.log");
    assert!(
        wait_until(EFFECT, || fs::read_to_string(&log)
            .is_ok_and(|t| t.contains("copied"))),
        "no {}:\n{}",
        log.display(),
        run.proxy.log()
    );
}

// ---------------------------------------------------------------------------------------------
// Probes: placement.

/// Owners of 32 measurements: different from the default config's with the same backends.
fn placement_differs(s: &Shared, extra: Value) {
    let urls = [
        s.plain.url.as_str(),
        s.mig_dest.url.as_str(),
        "http://127.0.0.1:9",
    ];
    let owners = |p: &Proxy| -> Vec<String> {
        (0..32)
            .map(|i| {
                http::get(&format!("{}/replica?db=placement&meas=m{i}", p.url))
                    .json()
                    .to_string()
            })
            .collect()
    };
    let default = Proxy::start(circles_config(&[&urls]));
    let changed = Proxy::start(with(circles_config(&[&urls]), extra.clone()));
    assert_ne!(owners(&default), owners(&changed), "{extra}");
}

fn hash_key(s: &Shared) {
    placement_differs(s, json!({"hash_key": "name"}));
}

fn shard_key(s: &Shared) {
    placement_differs(s, json!({"shard_key": "%mm"}));
}

fn vnode_size(s: &Shared) {
    placement_differs(s, json!({"vnode_size": 16}));
}

// ---------------------------------------------------------------------------------------------
// Probes: delivery.

/// 20 one-point writes within `flush_time` reach influxd in >= 4 requests with `flush_size` 5
/// (a batch holds at most flush_size x write_concurrency points), in one with the default.
fn flush_size(_s: &Shared) {
    let writes = |extra: Value| {
        let influxd = Influxd::spawn();
        let mut config = one(
            &influxd.url,
            with(
                json!({"flush_time": 3, "write_concurrency": 1}),
                extra.clone(),
            ),
        );
        if extra.get("flush_size").is_none() {
            config.as_object_mut().unwrap().remove("flush_size");
        }
        let proxy = Proxy::start(config);
        let db = unique_db("fs");
        influxd.create_db(&db);
        let before = httpd_stat(&influxd, "writeReq");
        for t in 1..=20 {
            write_ok(&proxy, &db, &format!("m,s={t} v={t} {t}\n"));
        }
        assert!(wait_until(EFFECT, || influxd.count(&db, "m") == 20));
        httpd_stat(&influxd, "writeReq") - before
    };
    let small = writes(json!({"flush_size": 5}));
    let default = writes(json!({}));
    assert!(small >= 4, "{small} writes with flush_size 5");
    assert!(default <= 2, "{default} writes with the default flush_size");
}

/// A backend's delivery batches take their share of `memory_budget_mb`: ~6 MB queued within
/// `flush_time` reach influxd in >= 3 requests with the smallest budget (32 MiB: batches of
/// ~2.7 MiB), in at most 2 with 1024.
fn memory_budget_mb(_s: &Shared) {
    let writes = |budget: u64| {
        let influxd = Influxd::spawn();
        let proxy = Proxy::start(one(
            &influxd.url,
            json!({"flush_time": 3, "flush_size": 1_000_000, "write_concurrency": 1,
                   "memory_budget_mb": budget}),
        ));
        let db = unique_db("mb");
        influxd.create_db(&db);
        let before = httpd_stat(&influxd, "writeReq");
        for w in 0..60 {
            let body: String = (0..1000)
                .map(|i| format!("mb,host=server-{i:04},region=eu-west-1,writer=w{w:02} usage_user=12.345678901,usage_system=1.2345678901 {}\n", 1_600_000_000_000_000_000i64 + i))
                .collect();
            write_ok(&proxy, &db, &body);
        }
        assert!(wait_until(EFFECT, || influxd.count(&db, "mb") == 60_000));
        httpd_stat(&influxd, "writeReq") - before
    };
    let small = writes(32);
    let large = writes(1024);
    assert!(small >= 3, "{small} writes with memory_budget_mb 32");
    assert!(large <= 2, "{large} writes with memory_budget_mb 1024");
}

/// A lone point waits for `flush_time`: there within seconds with 1, not after 4 s with 60.
fn flush_time(s: &Shared) {
    let fast_db = unique_db("ft_fast");
    let slow_db = unique_db("ft_slow");
    let fast = Proxy::start(one(&s.plain.url, json!({"flush_time": 1})));
    let slow = Proxy::start(one(&s.plain.url, json!({"flush_time": 60})));
    write_ok(&fast, &fast_db, "m v=1 1\n");
    write_ok(&slow, &slow_db, "m v=1 1\n");
    assert!(wait_until(EFFECT, || s.plain.count(&fast_db, "m") == 1));
    thread::sleep(Duration::from_secs(4));
    assert_eq!(s.plain.count(&slow_db, "m"), 0);
}

/// Health pings (`/ping` on the wire) come every second by default and not with 60.
fn check_interval(s: &Shared) {
    let often = Forwarder::to(s.plain.port);
    let rarely = Forwarder::to(s.plain.port);
    let mut default = one(&often.url, json!({}));
    default.as_object_mut().unwrap().remove("check_interval");
    let _a = Proxy::start(default);
    let _b = Proxy::start(one(&rarely.url, json!({"check_interval": 60})));
    let (o0, r0) = (often.count("/ping"), rarely.count("/ping"));
    thread::sleep(Duration::from_secs(5));
    let (o, r) = (often.count("/ping") - o0, rarely.count("/ping") - r0);
    assert!(o >= 3, "{o} pings in 5 s with the default check_interval");
    assert!(r <= 1, "{r} pings in 5 s with check_interval 60");
}

/// Retries of a refused (401) batch back off up to `rewrite_interval`: with 1 s they keep
/// coming every second, with the default 10 s the gaps grow past 4 s.
fn rewrite_interval(s: &Shared) {
    let start = |extra: Value| {
        let proxy = Proxy::start(one(
            &s.auth.url,
            with(json!({"check_interval": 600}), extra),
        ));
        write_ok(&proxy, &unique_db("ri"), "m v=1 1\n");
        proxy
    };
    let capped = start(json!({"rewrite_interval": 1}));
    let default = start(json!({}));
    thread::sleep(Duration::from_secs(12));
    let attempts = |p: &Proxy| {
        metric(
            p,
            "influx_proxy_backend_failed_attempts_total",
            "influxdb-1-1",
        )
    };
    let (c, d) = (attempts(&capped), attempts(&default));
    assert!(
        c >= d + 3.0,
        "{c} attempts with rewrite_interval 1, {d} with the default"
    );
}

/// A write to a hung (SIGSTOPped) influxd fails within seconds with `write_timeout` 1 (the
/// backend turns inactive); with 30 it is still waiting. No health check runs meanwhile
/// (`check_interval` 600: a ping must also answer within the interval, see `hung.rs`), so only
/// the write can tell.
fn write_timeout(_s: &Shared) {
    let influxd = Influxd::spawn();
    let start = |timeout: u64| {
        Proxy::start(one(
            &influxd.url,
            json!({"write_timeout": timeout, "check_interval": 600}),
        ))
    };
    let (short, long) = (start(1), start(30));
    let active = |p: &Proxy| metric(p, "influx_proxy_backend_active", "influxdb-1-1");
    assert!(wait_until(EFFECT, || active(&short) == 1.0 && active(&long) == 1.0));
    influxd.pause();
    let db = unique_db("wt");
    write_ok(&short, &db, "m v=1 1\n");
    write_ok(&long, &db, "m v=1 1\n");
    let failed = wait_until(EFFECT, || active(&short) == 0.0);
    let long_active = active(&long);
    influxd.resume();
    assert!(failed, "{}", short.log());
    assert_eq!(long_active, 1.0, "{}", long.log());
}

/// gzip shrinks what goes to influxd: compressible batches take several times the bytes on
/// the wire with `write_gzip` false.
fn write_gzip(s: &Shared) {
    let body: String = (0..2000)
        .map(|i| format!("gz,host=server-{},region=eu-west value={i}i {i}\n", i % 10))
        .collect();
    let sent = |gzip: bool| {
        let fwd = Forwarder::to(s.plain.port);
        let db = unique_db("gz");
        let proxy = Proxy::start(one(
            &fwd.url,
            json!({"write_gzip": gzip, "check_interval": 600}),
        ));
        write_ok(&proxy, &db, &body);
        assert!(wait_until(EFFECT, || s.plain.count(&db, "gz") == 2000));
        fwd.bytes()
    };
    let (zipped, plain) = (sent(true), sent(false));
    assert!(
        plain > 3 * zipped,
        "{plain} bytes sent without gzip, {zipped} with"
    );
}

// ---------------------------------------------------------------------------------------------
// Probes: clients.

/// An idle keep-alive connection is closed after `idle_timeout` 1; with 10 it is still open
/// after 4 s.
fn idle_timeout(s: &Shared) {
    let closed_after = |proxy: &Proxy| -> bool {
        let mut conn = TcpStream::connect(("127.0.0.1", proxy.port)).unwrap();
        conn.write_all(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        conn.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let mut first = [0u8; 1024];
        let n = conn.read(&mut first).unwrap();
        assert!(String::from_utf8_lossy(&first[..n]).starts_with("HTTP/1.1 204"));
        let deadline = Instant::now() + Duration::from_secs(4);
        while Instant::now() < deadline {
            match conn.read(&mut first) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(_) => return true,
            }
        }
        false
    };
    let short = Proxy::start(one(&s.plain.url, json!({"idle_timeout": 1})));
    let default = Proxy::start(one(&s.plain.url, json!({})));
    assert!(closed_after(&short), "not closed with idle_timeout 1");
    assert!(
        !closed_after(&default),
        "closed within 4 s with the default idle_timeout"
    );
}

fn proxy_username(s: &Shared) {
    needs_credentials(s, json!({"username": "admin"}), "u=admin&p=");
}

fn proxy_password(s: &Shared) {
    needs_credentials(s, json!({"password": "s3cret"}), "u=&p=s3cret");
}

/// With only this credential set, auth is on: 401 without it, 204 with it.
fn needs_credentials(s: &Shared, extra: Value, query: &str) {
    let proxy = Proxy::start(one(&s.plain.url, extra));
    let db = unique_db("auth");
    assert_eq!(http::write(&proxy.url, &db, "m v=1 1\n").status, 401);
    let r = http::write_with(&proxy.url, &format!("db={db}&{query}"), "m v=1 1\n", false);
    assert_eq!(r.status, 204, "{}", r.body);
}

/// Encrypted proxy credentials: the plaintext passes with `auth_encrypt`, not without.
fn proxy_auth_encrypt(s: &Shared) {
    let creds = json!({"username": ENC_ADMIN, "password": ENC_PASSWORD});
    let on = Proxy::start(one(
        &s.plain.url,
        with(creds.clone(), json!({"auth_encrypt": true})),
    ));
    let off = Proxy::start(one(&s.plain.url, creds));
    let plain = |p: &Proxy| http::get(&format!("{}/health?u=admin&p=password", p.url)).status;
    assert_eq!(plain(&on), 200);
    assert_eq!(plain(&off), 401);
}

/// The 2.5.0 `log_enabled` logs each write (the `write_tracing` line).
fn log_enabled(s: &Shared) {
    let db = unique_db("logged");
    let on = Proxy::start(one(&s.plain.url, json!({"log_enabled": true})));
    let off = Proxy::start(one(&s.plain.url, json!({})));
    write_ok(&on, &db, "m v=1 1\n");
    write_ok(&off, &db, "m v=1 1\n");
    let logged = |p: &Proxy| {
        p.log()
            .lines()
            .any(|l| l.contains("Write.") && l.contains(&format!("db={db}")))
    };
    assert!(wait_until(EFFECT, || logged(&on)), "{}", on.log());
    assert!(!logged(&off), "{}", off.log());
}

fn max_body_bytes(s: &Shared) {
    let body: String = (0..100)
        .map(|i| format!("m,host=h{i} v={i} {i}\n"))
        .collect();
    assert!(body.len() > 1000);
    let small = Proxy::start(one(&s.plain.url, json!({"max_body_bytes": 1000})));
    let default = Proxy::start(one(&s.plain.url, json!({})));
    let db = unique_db("mb");
    assert_eq!(http::write(&small.url, &db, &body).status, 413);
    write_ok(&default, &db, &body);
}

fn max_decompressed_bytes(s: &Shared) {
    let body: String = (0..5000).map(|i| format!("m v={i} {i}\n")).collect();
    let zipped = http::gzip(body.as_bytes());
    assert!(zipped.len() < 20_000 && body.len() > 40_000);
    let small = Proxy::start(one(&s.plain.url, json!({"max_decompressed_bytes": 20000})));
    let default = Proxy::start(one(&s.plain.url, json!({})));
    let db = unique_db("md");
    let gz = [("Content-Encoding", "gzip")];
    let url = |p: &Proxy| format!("{}/write?db={db}", p.url);
    let r = http::post(&url(&small), &zipped, &gz);
    assert_eq!(r.status, 413, "{}", r.body);
    let r = http::post(&url(&default), &zipped, &gz);
    assert_eq!(r.status, 204, "{}", r.body);
}

// ---------------------------------------------------------------------------------------------
// Probes: queue, shutdown, log.

/// Lines influxd refuses (the field's type changed behind the proxy within the flush window,
/// as in `refusals.rs`) become dead letters; beyond 4096 bytes the oldest are dropped and
/// counted, with the default bound none are.
fn dead_letter_max_bytes(s: &Shared) {
    let run = |extra: Value| {
        let db = unique_db("dl");
        s.plain.create_db(&db);
        let proxy = Proxy::start(one(&s.plain.url, with(json!({"flush_time": 4}), extra)));
        let long = "x".repeat(1000);
        for t in 2..12 {
            write_ok(&proxy, &db, &format!("m,h=h{t} v=\"{long}\" {t}\n"));
        }
        assert_eq!(s.plain.write(&db, "m,h=other v=1i 1\n"), 204);
        let dead = |p: &Proxy| {
            metric(
                p,
                "influx_proxy_backend_dead_letter_records_total",
                "influxdb-1-1",
            ) + metric(
                p,
                "influx_proxy_backend_dead_letter_dropped_records_total",
                "influxdb-1-1",
            )
        };
        assert!(
            wait_until(EFFECT, || dead(&proxy) >= 10.0),
            "{}",
            proxy.log()
        );
        let dropped = metric(
            &proxy,
            "influx_proxy_backend_dead_letter_dropped_records_total",
            "influxdb-1-1",
        );
        (dropped, proxy)
    };
    let (small, p) = run(json!({"dead_letter_max_bytes": 4096}));
    assert!(
        small > 0.0,
        "nothing dropped with a 4096-byte bound:\n{}",
        p.log()
    );
    let (default, p) = run(json!({}));
    assert_eq!(default, 0.0, "{}", p.log());
}

/// SIGTERM with a request in flight (its body never completes): the proxy exits after
/// `shutdown_timeout` 1, and is still waiting after 6 s with the default 30.
fn shutdown_timeout(s: &Shared) {
    let stalled = |proxy: &Proxy| {
        let mut conn = TcpStream::connect(("127.0.0.1", proxy.port)).unwrap();
        conn.write_all(
            b"POST /write?db=stall HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nm v=1",
        )
        .unwrap();
        conn
    };
    let mut short = Proxy::start(one(&s.plain.url, json!({"shutdown_timeout": 1})));
    let mut default = Proxy::start(one(&s.plain.url, json!({})));
    let _c1 = stalled(&short);
    let _c2 = stalled(&default);
    thread::sleep(Duration::from_millis(500));
    short.signal(nix::sys::signal::Signal::SIGTERM);
    default.signal(nix::sys::signal::Signal::SIGTERM);
    let short_exit = short.wait_exit(Duration::from_secs(6));
    let default_exit = default.wait_exit(Duration::from_secs(1));
    assert!(short_exit.is_some(), "{}", short.log());
    assert!(default_exit.is_none(), "{}", default.log());
}

/// `wal_sync` fsyncs each accepted write: strace counts the fdatasync/fsync calls of 20
/// writes, many more with it than without.
fn wal_sync(s: &Shared) {
    let syncs = |sync: bool| {
        let proxy = Proxy::start(one(&s.plain.url, json!({"wal_sync": sync})));
        let out = proxy.dir.join("strace.out");
        let mut strace = Command::new("strace")
            .args([
                "-f",
                "-qq",
                "-e",
                "trace=fsync,fdatasync,sync_file_range",
                "-o",
            ])
            .arg(&out)
            .args(["-p", &proxy.pid().unwrap().to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("strace (Debian package strace)");
        thread::sleep(Duration::from_secs(1));
        let db = unique_db("ws");
        for t in 0..20 {
            write_ok(&proxy, &db, &format!("m v={t} {t}\n"));
        }
        crate::support::send_signal(&strace, nix::sys::signal::Signal::SIGINT);
        let _ = strace.wait();
        let text = fs::read_to_string(&out).unwrap_or_default();
        text.lines().filter(|l| l.contains("sync")).count()
    };
    let (on, off) = (syncs(true), syncs(false));
    assert!(
        on >= 20 && on > off + 10,
        "{on} syncs with wal_sync, {off} without"
    );
}

fn log_level(s: &Shared) {
    let debug = Proxy::start(one(&s.plain.url, json!({"log_level": "debug"})));
    let info = Proxy::start(one(&s.plain.url, json!({})));
    let db = unique_db("ll");
    write_ok(&debug, &db, "m v=1 1\n");
    write_ok(&info, &db, "m v=1 1\n");
    let has_debug = |p: &Proxy| p.log().lines().any(|l| l.contains("DEBUG"));
    assert!(wait_until(EFFECT, || has_debug(&debug)), "{}", debug.log());
    assert!(!has_debug(&info), "{}", info.log());
}

// ---------------------------------------------------------------------------------------------
// Probes: migration defaults.

/// A finished `/recovery` from circle 0 (behind a forwarder, or `source`'s forwarder) to
/// circle 1.
struct Recovery {
    proxy: Proxy,
    source: Forwarder,
}

/// Writes 8 measurements, then recovers circle 1 from circle 0 and waits for the end.
fn recovery(s: &Shared, extra: Value, source: Option<Forwarder>) -> Recovery {
    let source = source.unwrap_or_else(|| Forwarder::to(s.mig_source.port));
    let config = with(circles_config(&[&[&source.url], &[&s.mig_dest.url]]), extra);
    let proxy = Proxy::start(config);
    let db = unique_db("mig");
    let body: String = (0..8).map(|m| format!("mm{m} v={m} 1\n")).collect();
    write_ok(&proxy, &db, &body);
    assert!(wait_until(EFFECT, || s.mig_source.measurements(&db).len() == 8));
    let r = http::post(
        &format!("{}/recovery?from_circle_id=0&to_circle_id=1", proxy.url),
        b"",
        &[],
    );
    assert_eq!(r.status, 202, "{}", r.body);
    let done = wait_until(EFFECT, || {
        let state = http::get(&format!("{}/migrate/state", proxy.url)).body;
        !state.contains("true")
    });
    assert!(done, "{}", proxy.log());
    Recovery { proxy, source }
}

/// The chunk size of the copy queries is `migrate_batch` (25000 when unset).
fn migrate_batch(s: &Shared) {
    let set = recovery(s, json!({"migrate_batch": 7}), None);
    let unset = recovery(s, json!({}), None);
    assert!(
        wait_until(EFFECT, || set.source.count("chunk_size=7") > 0),
        "{}",
        set.proxy.log()
    );
    assert_eq!(set.source.count("chunk_size=25000"), 0);
    assert!(unset.source.count("chunk_size=25000") > 0);
}

/// Copies run `migrate_cpus` at once: more connections carry copy queries with 4 than with 1.
fn migrate_cpus(s: &Shared) {
    let copy_connections = |r: &Recovery| {
        r.source
            .connections()
            .iter()
            .filter(|c| String::from_utf8_lossy(c).contains("chunk_size="))
            .count()
    };
    let many = recovery(s, json!({"migrate_cpus": 4}), None);
    let one_at_a_time = recovery(s, json!({}), None);
    let (m, o) = (copy_connections(&many), copy_connections(&one_at_a_time));
    assert!(
        m > o,
        "{m} copy connections with migrate_cpus 4, {o} with the default"
    );
}

/// The other proxies of `ha_addrs` are told about the recovery (`/migrate/state`).
fn ha_addrs(s: &Shared) {
    let seen = Arc::new(AtomicU64::new(0));
    let mut addrs = Vec::new();
    for _ in 0..2 {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        addrs.push(format!(
            "127.0.0.1:{}",
            listener.local_addr().unwrap().port()
        ));
        let seen = seen.clone();
        thread::spawn(move || {
            for mut conn in listener.incoming().flatten() {
                let mut buf = [0u8; 4096];
                let n = conn.read(&mut buf).unwrap_or(0);
                if String::from_utf8_lossy(&buf[..n]).starts_with("POST /migrate/state") {
                    seen.fetch_add(1, Ordering::Relaxed);
                }
                let _ = conn.write_all(
                    b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
            }
        });
    }
    let run = recovery(s, json!({"ha_addrs": addrs}), None);
    assert!(
        wait_until(EFFECT, || seen.load(Ordering::Relaxed) >= 2),
        "{}",
        run.proxy.log()
    );
}

/// `tls.min_version` "1.3": a TLS 1.2 handshake fails; without it, it succeeds.
fn tls_min_version(s: &Shared) {
    let strict = HttpsProxy::start(s, json!({"tls": {"min_version": "1.3"}}));
    let default = HttpsProxy::start(s, json!({}));
    let tls12 = |p: &HttpsProxy| {
        Command::new("openssl")
            .args(["s_client", "-tls1_2", "-connect"])
            .arg(format!("127.0.0.1:{}", p.port))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("openssl")
            .success()
    };
    assert!(!tls12(&strict), "TLS 1.2 accepted with min_version 1.3");
    assert!(tls12(&default), "TLS 1.2 refused by default");
}

/// A proxy serving HTTPS with the shared self-signed certificate, started here because the
/// harness's readiness check verifies certificates; ready once `curl -k` gets 204 from /ping.
struct HttpsProxy {
    port: u16,
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl HttpsProxy {
    fn start(s: &Shared, extra: Value) -> HttpsProxy {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let config = one(
            &s.plain.url,
            with(
                json!({
                    "listen_addr": format!("127.0.0.1:{port}"),
                    "https_enabled": true,
                    "https_cert": s.cert,
                    "https_key": s.key,
                    "data_dir": dir.path().join("data"),
                    "mlog_dir": dir.path().join("log"),
                }),
                extra,
            ),
        );
        let child = spawn_unwatched(dir.path(), &config);
        let proxy = HttpsProxy {
            port,
            child,
            _dir: dir,
        };
        let url = format!("https://127.0.0.1:{port}/ping");
        let ready = wait_until(EFFECT, || {
            Command::new("curl")
                .args([
                    "-sk",
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_code}",
                    "--max-time",
                    "2",
                    &url,
                ])
                .output()
                .is_ok_and(|o| o.stdout == b"204")
        });
        assert!(ready, "the HTTPS proxy on :{port} did not answer /ping");
        proxy
    }
}

impl Drop for HttpsProxy {
    fn drop(&mut self) {
        crate::support::kill_and_reap(&mut self.child);
    }
}
