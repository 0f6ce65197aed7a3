//! HTTP/1.0 clients get HTTP/1.0 framing on every path: no `Transfer-Encoding` (RFC 9112
//! forbids it towards HTTP/1.0), a body delimited by `Content-Length` or by the server closing
//! the connection, as influxd sends it. A raw TCP client sees exactly what the proxy framed.

use prost::Message as _;

use crate::support::http::wait_until;
use crate::support::http::{self, RawAnswer};
use crate::support::influxd::Influxd;
use crate::support::proxy::{circles_config, Proxy};
use crate::support::unique_db;
use influx_proxy::prom;

const EFFECT: std::time::Duration = std::time::Duration::from_secs(20);

/// `METHOD target HTTP/1.0` with `headers` (each `Name: value\r\n`) and `body`.
fn http10(proxy: &Proxy, method: &str, target: &str, headers: &str, body: &[u8]) -> RawAnswer {
    let mut request = format!(
        "{method} {target} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\n{headers}\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    http::raw_exchange(&format!("127.0.0.1:{}", proxy.port), &request)
}

/// HTTP/1.0 framing: the version answered, no transfer coding, a `Content-Length` that is the
/// body's length when there is one, and the connection closed after the body.
fn assert_http10(what: &str, a: &RawAnswer) {
    let text = a.text();
    let shown = &text[..text.len().min(300)];
    assert_eq!(a.version, "HTTP/1.0", "{what}: {shown}");
    assert_eq!(
        a.header("transfer-encoding"),
        None,
        "{what}: {:?} {shown}",
        a.headers
    );
    if let Some(len) = a.header("content-length") {
        assert_eq!(
            len.parse::<usize>().unwrap(),
            a.body.len(),
            "{what}: {shown}"
        );
    }
    assert!(
        a.closed,
        "{what}: the connection stayed open after the body"
    );
}

fn json(what: &str, a: &RawAnswer) -> serde_json::Value {
    serde_json::from_slice(&a.body)
        .unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {:?}", a.text()))
}

#[test]
fn http10_clients_get_plain_bodies_on_every_path() {
    let influxd = [Influxd::spawn(), Influxd::spawn()];
    let proxy = Proxy::start(circles_config(&[&[&influxd[0].url, &influxd[1].url]]));
    let db = unique_db("h10");
    let r = http::query(&proxy.url, "", &format!("CREATE DATABASE {db}"));
    assert_eq!(r.status, 200, "{}", r.body);
    let body: String = (0..50)
        .map(|i| format!("cpu,host=h{i} v={i} {i}\n"))
        .collect();
    assert_eq!(http::write(&proxy.url, &db, &body).status, 204);
    assert!(wait_until(EFFECT, || {
        http::query(&proxy.url, &db, "SELECT count(v) FROM cpu")
            .body
            .contains(",50]")
    }));
    let q = |query: &str| format!("/query?db={db}&q={}", http::urlencode(query));

    // A read one backend answers alone is relayed as it streams.
    let a = http10(&proxy, "GET", &q("SELECT * FROM cpu"), "", b"");
    assert_http10("relayed /query", &a);
    assert_eq!(a.status, 200);
    let values = json("relayed /query", &a)["results"][0]["series"][0]["values"].clone();
    assert_eq!(values.as_array().map(Vec::len), Some(50), "{}", a.text());

    // The same asking to keep the connection: a close-delimited body cannot allow it.
    let a = http10(
        &proxy,
        "GET",
        &q("SELECT * FROM cpu"),
        "Connection: keep-alive\r\n",
        b"",
    );
    assert_http10("relayed /query, keep-alive asked", &a);
    json("relayed /query, keep-alive asked", &a);

    // influxd's chunked answer (one JSON document per line) relayed.
    let a = http10(
        &proxy,
        "GET",
        &format!("{}&chunked=true&chunk_size=10", q("SELECT * FROM cpu")),
        "",
        b"",
    );
    assert_http10("relayed chunked /query", &a);
    let docs: Vec<serde_json::Value> = a
        .text()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
        .collect();
    assert_eq!(docs.len(), 5, "{}", a.text());

    // A POST form query, relayed.
    let form = format!("db={db}&q={}", http::urlencode("SELECT count(v) FROM cpu"));
    let a = http10(
        &proxy,
        "POST",
        "/query",
        "Content-Type: application/x-www-form-urlencoded\r\n",
        form.as_bytes(),
    );
    assert_http10("relayed POST /query", &a);
    assert!(a.text().contains(",50]"), "{}", a.text());

    // Answers the proxy builds: merged statements, errors.
    let a = http10(
        &proxy,
        "GET",
        &q("SELECT count(v) FROM cpu; SHOW DATABASES"),
        "",
        b"",
    );
    assert_http10("merged /query", &a);
    assert_eq!(
        json("merged /query", &a)["results"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );
    let a = http10(&proxy, "GET", &q("SELEKT"), "", b"");
    assert_http10("refused /query", &a);
    assert_eq!(a.status, 400);
    assert!(json("refused /query", &a)["error"].is_string());

    // Flux: influxd 1.6.7 answers 404 (no Flux engine), relayed as it streams.
    let flux = format!(
        "from(bucket: \"{db}/autogen\") |> range(start: -1h) |> filter(fn: (r) => r._measurement == \"cpu\")"
    );
    let a = http10(
        &proxy,
        "POST",
        "/api/v2/query",
        "Content-Type: application/vnd.flux\r\n",
        flux.as_bytes(),
    );
    assert_http10("Flux relay", &a);
    assert_eq!((a.status, a.text().as_str()), (404, "404 page not found\n"));

    // Prometheus remote read: influxd's snappy protobuf, relayed as it streams.
    let read = prom::ReadRequest {
        queries: vec![prom::Query {
            start_timestamp_ms: 0,
            end_timestamp_ms: 1,
            matchers: vec![prom::LabelMatcher {
                r#type: prom::MatchType::Eq as i32,
                name: "__name__".into(),
                value: "up".into(),
            }],
            hints: None,
        }],
        accepted_response_types: vec![0],
    };
    let a = http10(
        &proxy,
        "POST",
        &format!("/api/v1/prom/read?db={db}"),
        "Content-Type: application/x-protobuf\r\nContent-Encoding: snappy\r\nX-Prometheus-Remote-Read-Version: 0.1.0\r\n",
        &prom::snappy(&read.encode_to_vec()),
    );
    assert_http10("remote read relay", &a);
    assert_eq!(a.status, 200, "{}", a.text());
    let decoded = prom::unsnappy(&a.body, 1 << 20).unwrap();
    prom::ReadResponse::decode(decoded.as_slice()).unwrap();

    // The dead-letter export streams its pages.
    let a = http10(
        &proxy,
        "GET",
        "/dead_letters/export?backend=influxdb-1-1",
        "",
        b"",
    );
    assert_http10("dead-letter export", &a);
    assert_eq!(a.status, 200, "{}", a.text());
    assert!(a.text().starts_with("# DML"), "{}", a.text());

    for (target, status) in [
        ("/health", 200),
        ("/metrics", 200),
        ("/ping", 204),
        ("/nowhere", 404),
    ] {
        let a = http10(&proxy, "GET", target, "", b"");
        assert_http10(target, &a);
        assert_eq!(a.status, status, "{target}: {}", a.text());
    }
    json("/health", &http10(&proxy, "GET", "/health", "", b""));
}
