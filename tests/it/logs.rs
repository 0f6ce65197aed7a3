//! What a client sends cannot forge the proxy's log: a line break in a request value (a
//! database name, a query) is escaped in the text log format, so every event stays one line.

use std::time::Duration;

use serde_json::json;

use crate::support::http::{self, wait_until};
use crate::support::influxd::Influxd;
use crate::support::proxy::{circles_config, Proxy};

/// A line that would pass for one of the proxy's own.
const FORGED: &str = "2020-01-01T00:00:00.000000Z ERROR influx_proxy: forged";

#[test]
fn request_values_cannot_forge_log_lines() {
    let influxd = Influxd::spawn();
    let mut config = circles_config(&[&[&influxd.url]]);
    config["write_tracing"] = json!(true);
    config["query_tracing"] = json!(true);
    let proxy = Proxy::start(config);
    for db in [
        format!("lf\n{FORGED} by a db"),
        format!("crlf\r\n{FORGED} by a db"),
    ] {
        let r = http::write(&proxy.url, &db, "m v=1 1\n");
        assert!(r.status < 500, "{}: {}", r.status, r.body);
    }
    let q = format!("SHOW DATABASES /* a comment\r\n{FORGED} by a query */");
    let r = http::query(&proxy.url, "", &q);
    assert_eq!(r.status, 200, "{}", r.body);
    // The query was logged (escaped), so the check below is not vacuous. The databases are
    // refused at the edge (influxd can create no database with a line break in its name) and
    // may or may not be logged, but never as a line of their own.
    let logged = |p: &Proxy| p.log().contains(r"a comment\r\n2020-01-01");
    assert!(
        wait_until(Duration::from_secs(10), || logged(&proxy)),
        "{}",
        proxy.log()
    );
    let log = proxy.log();
    let forged: Vec<&str> = log.lines().filter(|l| l.starts_with(FORGED)).collect();
    assert!(forged.is_empty(), "forged lines: {forged:?}\n{log}");
    assert!(!log.contains('\r'), "{log:?}");
}
