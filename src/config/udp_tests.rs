//! The `udp` listeners' settings: decoding (defaults, influxd's, influxdb-relay's and
//! influx-spout's key names, durations) and validation.

use std::net::SocketAddr;
use std::time::Duration;

use super::test_support::*;
use super::*;
use crate::line_protocol::Precision;

/// A minimal config with these `udp` entries (JSON array members).
fn with_udp(entries: &str) -> String {
    minimal(&format!(r#""udp": [{entries}]"#))
}

#[test]
fn a_udp_listener_has_influxds_defaults() {
    let cfg = load(&with_udp(
        r#"{"bind_addr": ":8089", "database": "telegraf"}"#,
    ));
    assert_eq!(
        cfg.udp,
        [UdpConfig {
            bind_addr: ":8089".into(),
            enabled: true,
            database: "telegraf".into(),
            retention_policy: String::new(),
            precision: Precision::Nanoseconds,
            read_buffer: 0,
            batch_size: 5000,
            batch_timeout: Duration::from_secs(1),
            batch_pending: 10,
        }]
    );
    assert_eq!(
        cfg.udp[0].socket_addr(),
        Ok("0.0.0.0:8089".parse::<SocketAddr>().unwrap())
    );
    assert!(load(&minimal("")).udp.is_empty());
    assert!(load(&minimal(r#""udp": null"#)).udp.is_empty());
}

#[test]
fn every_udp_value_is_read_when_set() {
    let cfg = load(&with_udp(
        r#"{"bind_addr": "127.0.0.1:8089", "database": "db", "retention_policy": "rp",
            "precision": "ms", "read_buffer": 8388608, "batch_size": 100,
            "batch_timeout": 2, "batch_pending": 3, "enabled": false}"#,
    ));
    let u = &cfg.udp[0];
    assert_eq!(
        (u.bind_addr.as_str(), u.database.as_str()),
        ("127.0.0.1:8089", "db")
    );
    assert_eq!(u.retention_policy, "rp");
    assert_eq!(u.precision, Precision::Milliseconds);
    assert_eq!(
        (u.read_buffer, u.batch_size, u.batch_pending),
        (8 << 20, 100, 3)
    );
    assert_eq!(u.batch_timeout, Duration::from_secs(2));
    assert!(!u.enabled);
}

/// influxd's `[[udp]]` section as influxdb.conf has it, pasted into a TOML proxy config.
#[test]
fn influxd_udp_section_keys_are_aliases() {
    let toml = r#"
[[circles]]
name = "c"
backends = [{ name = "b1", url = "http://127.0.0.1:8086" }]

[[udp]]
  enabled = true
  bind-address = ":8089"
  database = "udp"
  retention-policy = "autogen"
  precision = "s"
  batch-size = 1000
  batch-pending = 5
  batch-timeout = "500ms"
  read-buffer = 1048576
"#;
    let cfg = Config::from_text(toml, Format::Toml).unwrap();
    let u = &cfg.udp[0];
    assert_eq!(u.bind_addr, ":8089");
    assert_eq!(
        (u.database.as_str(), u.retention_policy.as_str()),
        ("udp", "autogen")
    );
    assert_eq!(u.precision, Precision::Seconds);
    assert_eq!(
        (u.batch_size, u.batch_pending, u.read_buffer),
        (1000, 5, 1 << 20)
    );
    assert_eq!(u.batch_timeout, Duration::from_millis(500));
}

/// influxdb-relay's `[[udp]]` (`bind-addr`, `read-buffer`, `precision`) and influx-spout's
/// listener (`port`, `batch`, `read_buffer_bytes`), and `bind_address`.
#[test]
fn relay_and_spout_keys_are_aliases() {
    let cfg = load(&with_udp(
        r#"{"bind-addr": "127.0.0.1:9096", "database": "d", "read-buffer": 65536,
            "precision": "u"},
           {"port": 10001, "database": "d", "batch": 10, "read_buffer_bytes": 4096},
           {"bind_address": "[::1]:8089", "database": "d"}"#,
    ));
    assert_eq!(cfg.udp[0].bind_addr, "127.0.0.1:9096");
    assert_eq!(cfg.udp[0].read_buffer, 65536);
    assert_eq!(cfg.udp[0].precision, Precision::Microseconds);
    assert_eq!(cfg.udp[1].bind_addr, ":10001");
    assert_eq!((cfg.udp[1].batch_size, cfg.udp[1].read_buffer), (10, 4096));
    assert_eq!(
        cfg.udp[2].socket_addr(),
        Ok("[::1]:8089".parse::<SocketAddr>().unwrap())
    );
}

#[test]
fn two_names_of_one_udp_setting_must_agree() {
    let p = problems(&with_udp(
        r#"{"bind_addr": ":8089", "bind-address": ":8090", "port": 8089, "database": "d",
            "batch_size": 5, "batch-size": 5, "batch": 6}"#,
    ));
    assert_problem(&p, "udp[0].bind-address", "conflicts with udp[0].bind_addr");
    assert_problem(&p, "udp[0].batch", "conflicts with udp[0].batch_size");
    assert_eq!(p.len(), 2, "{p:#?}");
}

#[test]
fn batch_timeout_takes_seconds_or_go_durations() {
    let timeout = |value: &str| {
        load(&with_udp(&format!(
            r#"{{"bind_addr": ":8089", "database": "d", "batch_timeout": {value}}}"#
        )))
        .udp[0]
            .batch_timeout
    };
    assert_eq!(timeout("3"), Duration::from_secs(3));
    assert_eq!(timeout(r#""3""#), Duration::from_secs(3));
    assert_eq!(timeout(r#""250ms""#), Duration::from_millis(250));
    assert_eq!(timeout(r#""1m30s""#), Duration::from_secs(90));
    assert_eq!(timeout(r#""1.5s""#), Duration::from_millis(1500));
    assert_eq!(timeout(r#""100us""#), Duration::from_micros(100));
    assert_eq!(timeout("0"), Duration::from_secs(1), "0 means the default");
    let p = problems(&with_udp(
        r#"{"bind_addr": ":8089", "database": "d", "batch_timeout": "soon"},
           {"bind_addr": ":8090", "database": "d", "batch-timeout": "5 parsecs"}"#,
    ));
    assert_problem(&p, "udp[0].batch_timeout", "a duration such as \"500ms\"");
    assert_problem(&p, "udp[1].batch-timeout", "found \"5 parsecs\"");
    assert_eq!(p.len(), 2, "{p:#?}");
}

#[test]
fn udp_problems_name_their_paths() {
    let p = problems(&minimal(
        r#""db_list": ["allowed"], "udp": [
            {"bind_addr": "host:8089", "database": "allowed"},
            {"database": "allowed"},
            {"bind_addr": ":0", "database": "allowed"},
            {"bind_addr": ":8089"},
            {"bind_addr": ":8090", "database": "other"},
            {"bind_addr": ":8091", "database": "a\nb", "retention_policy": "r\u0000p"},
            {"bind_addr": ":8092", "database": "allowed", "retention_policy": "x\ny"},
            {"bind_addr": ":8093", "database": "allowed", "precision": "fortnight",
             "read_buffer": -1, "bind_adr": 1}]"#,
    ));
    assert_problem(
        &p,
        "udp[0].bind_addr",
        "invalid bind_addr \"host:8089\": host must be an IP address",
    );
    assert_problem(
        &p,
        "udp[1].bind_addr",
        "invalid bind_addr \"\": missing port",
    );
    assert_problem(&p, "udp[2].bind_addr", "port 0 is not a valid port");
    assert_problem(&p, "udp[3].database", "database cannot be empty");
    assert_problem(&p, "udp[4].database", "database forbidden: other");
    assert_problem(&p, "udp[5].database", "database not found: \"a\\nb\"");
    assert_problem(&p, "udp[5].database", "database forbidden");
    assert_problem(&p, "udp[6].retention_policy", "retention policy not found");
    assert_problem(&p, "udp[7].precision", "invalid precision \"fortnight\"");
    assert_problem(&p, "udp[7].read_buffer", "must not be negative, got -1");
    assert_problem(
        &p,
        "udp[7].bind_adr",
        "unknown field (did you mean \"bind_addr\"?)",
    );
    assert_eq!(p.len(), 11, "{p:#?}");
    let p = problems(&minimal(r#""udp": {"bind_addr": ":8089"}"#));
    assert_eq!(
        p,
        ["udp: expected an array of UDP listeners, found an object"]
    );
}

#[test]
fn two_udp_listeners_cannot_share_an_address() {
    let p = problems(&with_udp(
        r#"{"bind_addr": ":8089", "database": "d"},
           {"bind_addr": "0.0.0.0:8089", "database": "d"},
           {"bind_addr": "127.0.0.1:8089", "database": "d"},
           {"port": 8089, "database": "d"},
           {"bind_addr": "127.0.0.1:8090", "database": "d"},
           {"bind_addr": "127.0.0.2:8090", "database": "d"},
           {"bind_addr": "[::]:8091", "database": "d"},
           {"bind_addr": "127.0.0.1:8091", "database": "d"}"#,
    ));
    for i in [1, 2, 3] {
        assert_problem(
            &p,
            &format!("udp[{i}].bind_addr"),
            "is already bound by udp[0].bind_addr",
        );
    }
    assert_problem(
        &p,
        "udp[7].bind_addr",
        "is already bound by udp[6].bind_addr",
    );
    assert_eq!(p.len(), 4, "{p:#?}");
}

#[test]
fn the_three_formats_give_the_same_udp_listeners() {
    let json = with_udp(r#"{"bind_addr": ":8089", "database": "d", "batch_timeout": "2s"}"#);
    let yaml = "
circles: [{name: c, backends: [{name: b1, url: 'http://127.0.0.1:8086'}]}]
udp:
  - bind_addr: ':8089'
    database: d
    batch_timeout: 2s
";
    let toml = r#"
[[circles]]
name = "c"
backends = [{ name = "b1", url = "http://127.0.0.1:8086" }]
[[udp]]
bind_addr = ":8089"
database = "d"
batch_timeout = "2s"
"#;
    let want = load(&json);
    assert_eq!(want.udp[0].batch_timeout, Duration::from_secs(2));
    assert_eq!(Config::from_text(yaml, Format::Yaml).unwrap(), want);
    assert_eq!(Config::from_text(toml, Format::Toml).unwrap(), want);
}
