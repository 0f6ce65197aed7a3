//! `POST /api/v2/query` (Flux) against real influxd. Our influxd 1.6.7 has no Flux engine and
//! answers 404 `404 page not found`: that answer, relayed unchanged, shows the request reached
//! a backend; which backend is shown by taking the others away.

use serde_json::{json, Value};

use crate::support::http;
use crate::support::proxy::{two_by_two, two_by_two_index, Proxy};
use crate::support::{run_python, unique_db};

const FLUX: &[(&str, &str)] = &[("Content-Type", "application/vnd.flux")];

fn flux(db: &str, mm: &str) -> String {
    format!(
        "from(bucket: \"{db}/autogen\")\n  |> range(start: -1h)\n  |> filter(fn: (r) => r._measurement == \"{mm}\")"
    )
}

#[test]
fn flux_is_relayed_from_the_owner_and_fails_over_only_when_it_cannot_be_reached() {
    let (mut servers, config) = two_by_two();
    let proxy = Proxy::start(config);
    let db = unique_db("flux");
    let q = flux(&db, "cpu");
    let url = format!("{}/api/v2/query?org=ignored", proxy.url);
    let direct = http::post(
        &format!("{}/api/v2/query", servers[0].url),
        q.as_bytes(),
        FLUX,
    );
    assert_eq!(direct.status, 404, "{}", direct.body);
    let relayed = |what: &str| {
        let r = http::post(&url, q.as_bytes(), FLUX);
        assert_eq!(
            (r.status, r.body.as_str()),
            (404, direct.body.as_str()),
            "{what}"
        );
        assert_eq!(
            r.header("content-type"),
            direct.header("content-type"),
            "{what}"
        );
    };
    relayed("all up");
    // The JSON form carries the same query.
    let body = json!({"query": q, "type": "flux", "dialect": {"header": true}}).to_string();
    let r = http::post(
        &url,
        body.as_bytes(),
        &[("Content-Type", "application/json")],
    );
    assert_eq!(r.status, 404, "{}", r.body);

    let owner: Vec<usize> = proxy
        .replica_names(&db, "cpu")
        .iter()
        .map(|name| two_by_two_index(name))
        .collect();
    let others: Vec<usize> = (0..4).filter(|i| !owner.contains(i)).collect();
    for &i in &others {
        servers[i].kill9();
    }
    relayed("only the owners up");
    for &i in &others {
        servers[i].start();
    }
    servers[owner[0]].kill9();
    for _ in 0..5 {
        relayed("the owner of circle 1 down");
    }
    servers[owner[1]].kill9();
    let r = http::post(&url, q.as_bytes(), FLUX);
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap()
            .starts_with("backends unavailable"),
        "{}",
        r.body
    );
}

#[test]
fn flux_that_cannot_be_routed_gets_one_influx_shaped_error() {
    let (_servers, mut config) = two_by_two();
    config["db_list"] = json!(["allowed"]);
    config["username"] = json!("admin");
    config["password"] = json!("secret");
    let proxy = Proxy::start(config);
    let url = format!("{}/api/v2/query?u=admin&p=secret", proxy.url);
    let refused = |body: &str, headers: &[(&str, &str)], status: u16, error: &str| {
        let r = http::post(&url, body.as_bytes(), headers);
        assert_eq!(r.status, status, "{body}: {}", r.body);
        let json: Value = r.json();
        assert_eq!(json["error"].as_str(), Some(error), "{body}: {}", r.body);
        assert_eq!(r.header("x-influxdb-error"), Some(error), "{body}");
    };
    let filter = "|> filter(fn: (r) => r._measurement == \"m\")";
    refused(
        &format!("buckets() {filter}"),
        FLUX,
        400,
        "can't get bucket",
    );
    refused("from(bucket: \"allowed\"", FLUX, 400, "illegal flux query");
    refused(
        "from(bucket: \"allowed\") |> range(start: 0)",
        FLUX,
        400,
        "can't get measurement",
    );
    refused(
        "from(bucket: \"allowed\") |> filter(fn: (r) => r._measurement == \"a\" or r._measurement == \"b\")",
        FLUX,
        400,
        "illegal multi measurements",
    );
    refused(
        "from(bucket: \"allowed\") |> filter(fn: (r) => r._measurement =~ /c/)",
        FLUX,
        400,
        "measurement must use ==",
    );
    // The Go proxy's handler panicked on this one.
    refused(
        "from(bucket: \"allowed\") |> filter(fn: (r) => r._measurement ==",
        FLUX,
        400,
        "can't get measurement",
    );
    refused(&flux("other", "m"), FLUX, 400, "database forbidden: other");
    refused("{}", &[], 400, "request body requires either spec or query");
    refused(
        r#"{"query": "x", "type": "influxql"}"#,
        &[],
        400,
        "unknown query type: influxql",
    );
    let r = http::post(&url, b"{", &[]);
    assert_eq!(r.status, 400);
    assert!(r.json()["error"]
        .as_str()
        .unwrap()
        .starts_with("failed parsing request body as JSON"));
    let r = http::post(
        &url,
        flux("allowed", "m").as_bytes(),
        &[("Content-Type", "no media type")],
    );
    assert_eq!(r.status, 400, "{}", r.body);
    // Credentials: none, or as the v2 API sends them.
    let bare = format!("{}/api/v2/query", proxy.url);
    let q = flux("allowed", "m");
    assert_eq!(http::post(&bare, q.as_bytes(), FLUX).status, 401);
    let token = [
        ("Content-Type", "application/vnd.flux"),
        ("Authorization", "Token admin:secret"),
    ];
    assert_eq!(http::post(&bare, q.as_bytes(), &token).status, 404);
    assert_eq!(http::get(&bare).status, 405);
}

/// The v2 client library's query API reaches influxd through the proxy: influxd 1.6.7's
/// "no such endpoint" comes back to it, and the proxy's own refusals reach it as such.
#[test]
fn the_influxdb_client_library_queries_through_the_proxy() {
    let (_servers, config) = two_by_two();
    let proxy = Proxy::start(config);
    let db = unique_db("fluxpy");
    let script = format!(
        "from influxdb_client import InfluxDBClient\n\
         from influxdb_client.rest import ApiException\n\
         c = InfluxDBClient(url='{url}', token='u:p', org='-')\n\
         def status(q):\n\
         \x20   try:\n\
         \x20       c.query_api().query_raw(q)\n\
         \x20       return 200, ''\n\
         \x20   except ApiException as e:\n\
         \x20       return e.status, (e.body.decode() if isinstance(e.body, bytes) else e.body).strip()\n\
         print(*status('from(bucket: \"{db}\") |> range(start: -1h) |> filter(fn: (r) => r._measurement == \"cpu\")'))\n\
         print(*status('from(bucket: \"{db}\") |> range(start: -1h)'))\n",
        url = proxy.url
    );
    let stdout = run_python("influxdb_client", "pip install influxdb-client", &script);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert!(lines[0] == "404 404 page not found", "{stdout}");
    assert!(
        lines[1] == r#"400 {"error":"can't get measurement"}"#,
        "{stdout}"
    );
}
