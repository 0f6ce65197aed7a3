//! Prometheus remote storage through the proxy (`/api/v1/prom/write`, `/api/v1/prom/read`):
//! a real Prometheus (Debian's `prometheus` package; a missing binary fails, never skips)
//! scraping itself and the proxy, remote-writing and remote-reading through it; hand-built
//! requests for what Prometheus never sends (errors, NaN, special characters); and a read
//! answered by the other circle when the owner in one circle is dead.

use std::fs::{self, OpenOptions};
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use influx_proxy::prom::{
    self, Label, LabelMatcher, MatchType, Query, ReadRequest, ReadResponse, Sample, TimeSeries,
    WriteRequest,
};
use prost::Message as _;
use serde_json::{json, Value};
use tempfile::TempDir;

use crate::support::http::{self, wait_until};
use crate::support::influxd::Influxd;
use crate::support::proxy::{two_by_two, two_by_two_index, Proxy};
use crate::support::{free_port, kill_and_reap, log_tail, test_log_enabled, LOG_TAIL_LINES};

/// Debian's Prometheus (2.42 on the CI machines).
const PROMETHEUS: &str = "/usr/bin/prometheus";
/// How long scraping, remote write, delivery and health checks may take.
const SETTLE: Duration = Duration::from_secs(60);

/// A running Prometheus with its own config and TSDB in a temp dir; killed on drop.
struct Prometheus {
    url: String,
    log_path: PathBuf,
    child: Child,
    _dir: TempDir,
}

impl Prometheus {
    /// Starts Prometheus scraping itself and `proxy` every second, remote-writing to and
    /// remote-reading from `proxy` (db `prom`), and waits for `/-/ready`.
    fn start(proxy: &Proxy) -> Prometheus {
        assert!(
            Path::new(PROMETHEUS).is_file(),
            "{PROMETHEUS} is missing: apt-get install prometheus (the test never skips)"
        );
        let dir = tempfile::Builder::new()
            .prefix("prometheus-")
            .tempdir()
            .unwrap();
        let log_path = dir.path().join("prometheus.log");
        for _ in 0..5 {
            let port = free_port();
            let config = format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n\
                 \x20 - job_name: prometheus\n    static_configs: [{{targets: ['127.0.0.1:{port}']}}]\n\
                 \x20 - job_name: proxy\n    static_configs: [{{targets: ['127.0.0.1:{proxy}']}}]\n\
                 remote_write:\n\
                 \x20 - url: {url}/api/v1/prom/write?db=prom\n    \
                 queue_config: {{batch_send_deadline: 1s, min_backoff: 100ms, max_backoff: 1s}}\n\
                 remote_read:\n\
                 \x20 - url: {url}/api/v1/prom/read?db=prom\n    read_recent: true\n",
                proxy = proxy.port,
                url = proxy.url,
            );
            let config_path = dir.path().join("prometheus.yml");
            fs::write(&config_path, config).unwrap();
            let log = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log_path)
                .unwrap();
            let mut child = Command::new(PROMETHEUS)
                .arg(format!("--config.file={}", config_path.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.path().join("tsdb").display()
                ))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run {PROMETHEUS}: {e}"));
            let url = format!("http://127.0.0.1:{port}");
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                if child.try_wait().unwrap().is_some() {
                    break;
                }
                if matches!(http::try_get(&format!("{url}/-/ready")), Ok(r) if r.status == 200) {
                    return Prometheus {
                        url,
                        log_path,
                        child,
                        _dir: dir,
                    };
                }
                if Instant::now() >= deadline {
                    kill_and_reap(&mut child);
                    panic!(
                        "prometheus did not get ready; log tail:\n{}",
                        log_tail(&log_path, LOG_TAIL_LINES)
                    );
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            // Exited: its port was taken meanwhile, or a real failure (shown after 5 tries).
        }
        panic!(
            "prometheus kept exiting at start; log tail:\n{}",
            log_tail(&log_path, LOG_TAIL_LINES)
        );
    }

    /// `GET /api/v1/query?query=...` (instant query at now): the result vector.
    fn query(&self, promql: &str) -> Vec<Value> {
        let r = http::get(&format!(
            "{}/api/v1/query?query={}",
            self.url,
            http::urlencode(promql)
        ));
        assert_eq!(r.status, 200, "{promql}: {}", r.body);
        r.json()["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        kill_and_reap(&mut self.child);
        if test_log_enabled() || std::thread::panicking() {
            eprintln!(
                "--- prometheus log tail ---\n{}",
                log_tail(&self.log_path, LOG_TAIL_LINES)
            );
        }
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn create_db(proxy: &Proxy, db: &str, auth: &[(&str, &str)]) {
    let q = format!("CREATE DATABASE {db}");
    let mut params = vec![("q", q.as_str())];
    params.extend_from_slice(auth);
    let r = http::query_post(&proxy.url, &params);
    assert_eq!(r.status, 200, "{}", r.body);
}

/// The values of the first series of a `/query` answer.
fn values(answer: &Value) -> Vec<Value> {
    answer["results"][0]["series"][0]["values"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

pub(crate) fn series(labels: &[(&str, &str)], samples: &[(f64, i64)]) -> TimeSeries {
    TimeSeries {
        labels: labels
            .iter()
            .map(|(name, value)| Label {
                name: (*name).into(),
                value: (*value).into(),
            })
            .collect(),
        samples: samples
            .iter()
            .map(|&(value, timestamp)| Sample { value, timestamp })
            .collect(),
    }
}

pub(crate) fn write_body(timeseries: Vec<TimeSeries>) -> Vec<u8> {
    prom::snappy(&WriteRequest { timeseries }.encode_to_vec())
}

pub(crate) fn read_body(
    queries: &[&[(MatchType, &str, &str)]],
    start_ms: i64,
    end_ms: i64,
) -> Vec<u8> {
    let queries = queries
        .iter()
        .map(|matchers| Query {
            start_timestamp_ms: start_ms,
            end_timestamp_ms: end_ms,
            matchers: matchers
                .iter()
                .map(|&(t, name, value)| LabelMatcher {
                    r#type: t as i32,
                    name: name.into(),
                    value: value.into(),
                })
                .collect(),
            hints: None,
        })
        .collect();
    let req = ReadRequest {
        queries,
        accepted_response_types: vec![0],
    };
    prom::snappy(&req.encode_to_vec())
}

/// The headers Prometheus sends with a remote read or write.
const PROM_HEADERS: [(&str, &str); 3] = [
    ("Content-Type", "application/x-protobuf"),
    ("Content-Encoding", "snappy"),
    ("X-Prometheus-Remote-Read-Version", "0.1.0"),
];

/// An answer whose body is kept as bytes (remote read answers are snappy protobuf).
pub(crate) struct Raw {
    pub(crate) status: u16,
    headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl Raw {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A POST with Prometheus' headers.
fn post_raw(url: &str, body: &[u8]) -> Raw {
    post_raw_within(url, body, http::TIMEOUT)
}

/// [`post_raw`] that gives up (panics) after `timeout`.
pub(crate) fn post_raw_within(url: &str, body: &[u8], timeout: Duration) -> Raw {
    let mut req = ureq::post(url).timeout(timeout);
    for (name, value) in PROM_HEADERS {
        req = req.set(name, value);
    }
    let resp = match req.send_bytes(body) {
        Ok(r) | Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("POST {url}: {e}"),
    };
    let status = resp.status();
    let headers = resp
        .headers_names()
        .into_iter()
        .filter_map(|n| Some((n.clone(), resp.header(&n)?.to_string())))
        .collect();
    let mut bytes = Vec::new();
    resp.into_reader().read_to_end(&mut bytes).unwrap();
    Raw {
        status,
        headers,
        body: bytes,
    }
}

/// Label pairs of a series.
pub(crate) type Labels = Vec<(String, String)>;

/// A remote read's answer decoded: (labels, values) of every series.
pub(crate) fn decode_read_response(bytes: &[u8]) -> Vec<(Labels, Vec<f64>)> {
    let raw = prom::unsnappy(bytes, 64 << 20).unwrap();
    let resp = ReadResponse::decode(raw.as_slice()).unwrap();
    resp.results
        .iter()
        .flat_map(|r| &r.timeseries)
        .map(|ts| {
            (
                ts.labels
                    .iter()
                    .map(|l| (l.name.clone(), l.value.clone()))
                    .collect(),
                ts.samples.iter().map(|s| s.value).collect(),
            )
        })
        .collect()
}

/// `promReadReq` of influxd's httpd statistics: remote reads it has served.
fn prom_reads(influxd: &Influxd) -> u64 {
    let vars = http::get(&format!("{}/debug/vars", influxd.url)).json();
    vars.as_object()
        .unwrap()
        .iter()
        .find(|(k, _)| k.starts_with("httpd"))
        .map(|(_, v)| v["values"]["promReadReq"].as_u64().unwrap())
        .unwrap()
}

#[test]
fn prometheus_remote_writes_and_reads_through_the_proxy() {
    let (_servers, config) = two_by_two();
    let proxy = Proxy::start(config);
    create_db(&proxy, "prom", &[]);
    let prometheus = Prometheus::start(&proxy);

    // Scraped samples arrive in the backends, tagged with every label.
    let count = || {
        let answer = http::query(&proxy.url, "prom", "SELECT count(value) FROM up").json();
        values(&answer)
            .first()
            .and_then(|row| row[1].as_u64())
            .unwrap_or(0)
    };
    assert!(
        wait_until(SETTLE, || count() > 0),
        "no sample of `up` reached influxd; proxy log:\n{}",
        proxy.log()
    );
    // Each query may be answered by the other circle, which may not have the first samples yet
    // (Prometheus keeps writing, so the queues are never empty for long): poll each answer.
    let mut keys = Vec::new();
    let tagged = wait_until(SETTLE, || {
        keys = values(&http::query(&proxy.url, "prom", "SHOW TAG KEYS FROM up").json());
        ["__name__", "instance", "job"]
            .iter()
            .all(|key| keys.contains(&json!([key])))
    });
    assert!(tagged, "a label is missing from the tag keys: {keys:?}");
    let mut jobs = Vec::new();
    let both_jobs = wait_until(SETTLE, || {
        jobs = values(
            &http::query(&proxy.url, "prom", "SHOW TAG VALUES FROM up WITH KEY = job").json(),
        );
        jobs.contains(&json!(["job", "proxy"])) && jobs.contains(&json!(["job", "prometheus"]))
    });
    assert!(both_jobs, "{jobs:?}");

    // A series only influxd holds: PromQL finds it through remote read, so through the proxy.
    let ns = now_ms() * 1_000_000;
    let line = format!("only_in_influx,__name__=only_in_influx,job=it value=42 {ns}\n");
    assert_eq!(http::write(&proxy.url, "prom", line).status, 204);
    let mut last = Vec::new();
    let found = wait_until(SETTLE, || {
        last = prometheus.query("only_in_influx");
        last.len() == 1
    });
    assert!(
        found,
        "remote read gave {last:?}; proxy log:\n{}",
        proxy.log()
    );
    assert_eq!(last[0]["metric"]["job"], "it");
    assert_eq!(last[0]["value"][1], "42");
    let up = prometheus.query("up");
    assert!(up.len() >= 2, "{up:?}");
}

#[test]
fn remote_writes_store_what_influxd_itself_would() {
    let (servers, config) = two_by_two();
    let proxy = Proxy::start(config);
    create_db(&proxy, "prom", &[]);
    servers[0].create_db("direct");
    let t = now_ms() - 60_000;
    let timeseries = || {
        vec![
            series(
                &[("__name__", "odd"), ("path", "a b,c=d"), ("job", "x y")],
                &[(1.5, t), (-2.0, t + 1)],
            ),
            series(&[("job", "nameless")], &[(7.0, t)]),
            series(
                &[("__name__", "stale")],
                &[
                    (f64::NAN, t),
                    (f64::INFINITY, t + 1),
                    (f64::NEG_INFINITY, t + 2),
                    (3.0, t + 3),
                ],
            ),
        ]
    };
    let url = format!("{}/api/v1/prom/write?db=prom", proxy.url);
    let answer = post_raw(&url, &write_body(timeseries()));
    assert_eq!(answer.status, 204, "{}", answer.text());
    // influxd's own converter, on the finite samples only (it cannot store ±Inf).
    let mut finite = timeseries();
    finite[2].samples.retain(|s| s.value.is_finite());
    let direct = format!("{}/api/v1/prom/write?db=direct", servers[0].url);
    let answer = post_raw(&direct, &write_body(finite));
    assert!(answer.status < 300, "{} {}", answer.status, answer.text());
    // Every circle has it before the reads, whichever circle answers each.
    proxy.wait_delivered();
    for m in ["odd", "prom_metric_not_specified", "stale"] {
        let q = format!("SELECT * FROM {m}");
        let wanted = servers[0].query("direct", &q);
        let got = || {
            let url = format!(
                "{}/query?db=prom&epoch=ns&q={}",
                proxy.url,
                http::urlencode(&q)
            );
            http::get(&url).json()
        };
        assert!(
            wait_until(SETTLE, || values(&got()) == values(&wanted)),
            "{m}: proxy {} vs influxd {}",
            got(),
            wanted
        );
        assert_eq!(
            got()["results"][0]["series"][0]["columns"],
            wanted["results"][0]["series"][0]["columns"]
        );
    }
    assert_eq!(
        values(&http::query(&proxy.url, "prom", "SELECT * FROM stale").json()).len(),
        1
    );
}

#[test]
fn unroutable_or_refused_remote_requests_get_one_influx_shaped_error() {
    let (servers, mut config) = two_by_two();
    config["db_list"] = json!(["prom"]);
    config["username"] = json!("admin");
    config["password"] = json!("s3cret");
    let proxy = Proxy::start(config);
    let auth = "u=admin&p=s3cret";
    create_db(&proxy, "prom", &[("u", "admin"), ("p", "s3cret")]);
    let read = |body: &[u8]| {
        post_raw(
            &format!("{}/api/v1/prom/read?db=prom&{auth}", proxy.url),
            body,
        )
    };
    let good_write = write_body(vec![series(&[("__name__", "m")], &[(1.0, now_ms())])]);
    let good_read = read_body(&[&[(MatchType::Eq, "__name__", "m")]], 0, now_ms());
    let two_queries = read_body(
        &[
            &[(MatchType::Eq, "__name__", "a")],
            &[(MatchType::Eq, "__name__", "b")],
        ],
        0,
        1,
    );
    let no_name = read_body(&[&[(MatchType::Eq, "job", "x")]], 0, 1);
    let regex_name = read_body(&[&[(MatchType::Re, "__name__", "a|b")]], 0, 1);
    let not_protobuf = prom::snappy(b"\xff\xff\xff\xff");
    let reads_before: u64 = servers.iter().map(prom_reads).sum();
    let in_prom = format!("db=prom&{auth}");
    let in_other = format!("db=other&{auth}");
    let bad_snappy: &[u8] = b"not snappy at all";
    let cases = [
        (
            "write",
            "db=prom",
            "no credentials",
            &good_write[..],
            401,
            "authentication failed",
        ),
        (
            "read",
            "db=prom",
            "no credentials",
            &good_read[..],
            401,
            "authentication failed",
        ),
        (
            "write",
            auth,
            "no db",
            &good_write[..],
            400,
            "database not found",
        ),
        (
            "read",
            auth,
            "no db",
            &good_read[..],
            400,
            "database not found",
        ),
        (
            "write",
            in_other.as_str(),
            "forbidden",
            &good_write[..],
            400,
            "database forbidden: other",
        ),
        (
            "read",
            in_other.as_str(),
            "forbidden",
            &good_read[..],
            400,
            "database forbidden: other",
        ),
        ("write", in_prom.as_str(), "bad snappy", bad_snappy, 400, ""),
        ("read", in_prom.as_str(), "bad snappy", bad_snappy, 400, ""),
        (
            "write",
            &in_prom,
            "not protobuf",
            &not_protobuf[..],
            400,
            "",
        ),
        ("read", &in_prom, "not protobuf", &not_protobuf[..], 400, ""),
        (
            "read",
            in_prom.as_str(),
            "two queries",
            &two_queries[..],
            400,
            "prometheus read endpoint currently only supports one query at a time",
        ),
        (
            "read",
            in_prom.as_str(),
            "no __name__",
            &no_name[..],
            400,
            "requires an equality matcher on __name__",
        ),
        (
            "read",
            in_prom.as_str(),
            "regex __name__",
            &regex_name[..],
            400,
            "requires an equality matcher on __name__",
        ),
    ];
    for (endpoint, qs, what, body, status, message) in cases {
        let what = format!("{endpoint} {what}");
        let got = post_raw(&format!("{}/api/v1/prom/{endpoint}?{qs}", proxy.url), body);
        assert_eq!(got.status, status, "{what}: {}", got.text());
        assert_eq!(
            got.header("content-type"),
            Some("application/json"),
            "{what}"
        );
        // Exactly one JSON document: nothing forwarded and written after the error.
        let json: Value = serde_json::from_slice(&got.body)
            .unwrap_or_else(|e| panic!("{what}: not one JSON body ({e}): {}", got.text()));
        let error = json["error"].as_str().unwrap();
        assert!(
            !error.is_empty() && error.contains(message),
            "{what}: {error}"
        );
        assert_eq!(got.header("x-influxdb-error"), Some(error), "{what}");
    }
    let get = http::get(&format!("{}/api/v1/prom/read?db=prom&{auth}", proxy.url));
    assert_eq!(get.status, 405);
    let reads_after: u64 = servers.iter().map(prom_reads).sum();
    assert_eq!(
        reads_after, reads_before,
        "a refused read reached a backend"
    );

    // With credentials, both work; the backend never needed the client's.
    let url = format!("{}/api/v1/prom/write?{in_prom}", proxy.url);
    assert_eq!(post_raw(&url, &good_write).status, 204);
    let answer = read(&good_read);
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.header("content-encoding"), Some("snappy"));
    assert_eq!(
        answer.header("content-type"),
        Some("application/x-protobuf")
    );
    let mut got = Vec::new();
    assert!(
        wait_until(SETTLE, || {
            got = decode_read_response(&read(&good_read).body);
            got.len() == 1
        }),
        "{got:?}"
    );
    assert_eq!(got[0].1, [1.0]);
}

#[test]
fn a_remote_read_is_answered_by_the_other_circle_when_the_owner_is_dead() {
    let (mut servers, config) = two_by_two();
    let proxy = Proxy::start(config);
    create_db(&proxy, "prom", &[]);
    let t = now_ms() - 10_000;
    let url = format!("{}/api/v1/prom/write?db=prom", proxy.url);
    let body = write_body(vec![series(
        &[("__name__", "failover"), ("job", "it")],
        &[(5.0, t), (6.0, t + 1)],
    )]);
    assert_eq!(post_raw(&url, &body).status, 204);
    let owners = proxy.replica_names("prom", "failover");
    let (first, second) = (two_by_two_index(&owners[0]), two_by_two_index(&owners[1]));
    for i in [first, second] {
        let s = &servers[i];
        assert!(
            wait_until(SETTLE, || s.count("prom", "failover") == 2),
            "{}",
            owners.join(",")
        );
    }
    let read_url = format!("{}/api/v1/prom/read?db=prom", proxy.url);
    let query = read_body(
        &[&[(MatchType::Eq, "__name__", "failover")]],
        t - 1000,
        t + 1000,
    );
    servers[first].kill9();
    // Circles are tried in varying order: every read must land on the live one, the first
    // ones before any health check has noticed the dead backend.
    for _ in 0..10 {
        let answer = post_raw(&read_url, &query);
        assert_eq!(answer.status, 200, "{}", answer.text());
        let got = decode_read_response(&answer.body);
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].1, [5.0, 6.0]);
        assert!(
            got[0].0.contains(&("job".to_string(), "it".to_string())),
            "{got:?}"
        );
    }
    // Both owners dead: 503 with the reason, as JSON.
    servers[second].kill9();
    let answer = post_raw(&read_url, &query);
    assert_eq!(answer.status, 503, "{}", answer.text());
    let json: Value = serde_json::from_slice(&answer.body).unwrap();
    assert!(
        json["error"]
            .as_str()
            .unwrap()
            .starts_with("backends unavailable"),
        "{json}"
    );
}
