//! Validation: the semantic checks of a decoded (or hand-built) [`Config`], each problem
//! reported with its field path, all of them at once.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::cipher;
use crate::influxql::Unwritable;
use crate::memory;

use super::model::{
    Config, Error, Result, RuleAction, Secret, DEFAULT_CONN_POOL_SIZE, DEFAULT_REWRITE_THREADS,
    LOG_LEVELS, MIN_QUEUE_BYTES, TLS_CIPHERS,
};

impl Config {
    /// Settings the file gives that have no effect in this proxy, each with why, for a
    /// warning at start and at every reload (they stay accepted so Go proxy files load).
    pub fn ignored_settings(&self) -> Vec<(&'static str, &'static str)> {
        let mut out = Vec::new();
        if self.conn_pool_size != DEFAULT_CONN_POOL_SIZE {
            out.push((
                "conn_pool_size",
                "connections to a backend follow write_concurrency (delivery) and the per-thread query clients",
            ));
        }
        if self.rewrite_threads != DEFAULT_REWRITE_THREADS {
            out.push((
                "rewrite_threads",
                "a backend's backlog drains in queue order, one batch of write_concurrency requests at a time",
            ));
        }
        if let Some(tls) = &self.tls {
            if !tls.ciphers.is_empty() {
                out.push((
                    "tls.ciphers",
                    "the TLS library's secure default suites are used",
                ));
            }
            if tls.max_version.is_some() {
                out.push((
                    "tls.max_version",
                    "the highest version both sides support is used",
                ));
            }
        }
        out
    }

    /// Checks a (possibly hand-modified) config: the same semantic checks `from_str` runs
    /// after decoding. Every problem is returned in [`Error::Invalid`].
    pub fn validate(&self) -> Result<()> {
        let problems = self.problems();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Error::Invalid(
                problems
                    .into_iter()
                    .map(|(path, msg)| format!("{path}: {msg}"))
                    .collect(),
            ))
        }
    }

    /// Every semantic problem as (field path, message), in spec §3.3 order then ours.
    pub(super) fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        self.circle_problems(&mut out);
        self.server_problems(&mut out);
        self.limit_problems(&mut out);
        self.rule_problems(&mut out);
        self.udp_problems(&mut out);
        out
    }

    /// Line rules: unique names; a pin names existing backends, at most one per circle, and
    /// no tag condition (it places a whole measurement).
    fn rule_problems(&self, out: &mut Vec<(String, String)>) {
        let mut names: HashMap<&str, usize> = HashMap::new();
        for (i, rule) in self.rules.iter().enumerate() {
            let at = format!("rules[{i}]");
            if let Some(first) = names.insert(&rule.name, i) {
                out.push((
                    format!("{at}.name"),
                    format!("rule name {:?} duplicated (also rules[{first}])", rule.name),
                ));
            }
            let RuleAction::Pin(backends) = &rule.action else {
                continue;
            };
            if rule.tag.is_some() {
                out.push((
                    format!("{at}.tag"),
                    "a pin places a whole measurement; a tag condition only goes with drop".into(),
                ));
            }
            if backends.is_empty() {
                out.push((
                    format!("{at}.backends"),
                    "a pin names the backends that hold the measurement".into(),
                ));
            }
            let mut circles: HashMap<usize, &str> = HashMap::new();
            for (bi, name) in backends.iter().enumerate() {
                let path = format!("{at}.backends[{bi}]");
                let circle = self
                    .circles
                    .iter()
                    .position(|c| c.backends.iter().any(|b| &b.name == name));
                match circle {
                    None => out.push((path, format!("no backend is named {name:?}"))),
                    Some(c) => {
                        if let Some(other) = circles.insert(c, name) {
                            out.push((
                                path,
                                format!(
                                    "{name:?} and {other:?} are both in circles[{c}]; a pin \
                                     names at most one backend per circle"
                                ),
                            ));
                        }
                    }
                }
            }
        }
    }

    /// Circles and backends: presence, unique names, URLs, encrypted credentials.
    fn circle_problems(&self, out: &mut Vec<(String, String)>) {
        if self.circles.is_empty() {
            out.push(("circles".into(), "circles cannot be empty".into()));
        }
        let mut seen: HashMap<&str, String> = HashMap::new();
        for (ci, circle) in self.circles.iter().enumerate() {
            if circle.backends.is_empty() {
                out.push((
                    format!("circles[{ci}].backends"),
                    "backends cannot be empty".into(),
                ));
            }
            for (bi, backend) in circle.backends.iter().enumerate() {
                let at = format!("circles[{ci}].backends[{bi}]");
                if backend.name.is_empty() {
                    out.push((format!("{at}.name"), "backend name cannot be empty".into()));
                } else if let Some(first) = seen.get(backend.name.as_str()) {
                    out.push((
                        format!("{at}.name"),
                        format!("backend name duplicated (also {first})"),
                    ));
                } else {
                    seen.insert(&backend.name, format!("{at}.name"));
                }
                if let Err(msg) = check_backend_url(&backend.url) {
                    out.push((format!("{at}.url"), msg));
                }
                if backend.auth_secure {
                    check_encrypted(out, &at, "username", &backend.username);
                    check_encrypted(out, &at, "password", &backend.password);
                }
            }
        }
    }

    /// The listener: proxy credentials, address, HTTPS and TLS, HA peers.
    fn server_problems(&self, out: &mut Vec<(String, String)>) {
        if self.auth_secure {
            check_encrypted(out, "", "username", &self.username);
            check_encrypted(out, "", "password", &self.password);
        }
        if let Err(msg) = parse_listen_addr(&self.listen_addr) {
            out.push(("listen_addr".into(), msg));
        }
        if self.https_enabled {
            for (key, value) in [
                ("https_cert", &self.https_cert),
                ("https_key", &self.https_key),
            ] {
                if value.is_empty() {
                    out.push((
                        key.into(),
                        format!("{key} cannot be empty when https_enabled is true"),
                    ));
                }
            }
        }
        if let Some(tls) = &self.tls {
            for (i, name) in tls.ciphers.iter().enumerate() {
                if !TLS_CIPHERS.contains(&name.to_ascii_uppercase().as_str()) {
                    out.push((format!("tls.ciphers[{i}]"), unknown_cipher(name)));
                }
            }
            if let (Some(min), Some(max)) = (tls.min_version, tls.max_version) {
                if min > max {
                    out.push((
                        "tls.min_version".into(),
                        format!("min_version {min} is greater than max_version {max}"),
                    ));
                }
            }
        }
        for (i, addr) in self.ha_addrs.iter().enumerate() {
            if !is_ha_addr(addr) {
                out.push((
                    format!("ha_addrs[{i}]"),
                    format!("invalid ha_addrs entry {addr:?}, require <host:port>"),
                ));
            }
        }
    }

    /// Our own settings: queue sizes and the log filter.
    fn limit_problems(&self, out: &mut Vec<(String, String)>) {
        for (key, value) in [
            ("wal_max_bytes", self.wal_max_bytes),
            ("dead_letter_max_bytes", self.dead_letter_max_bytes),
        ] {
            if value < MIN_QUEUE_BYTES {
                out.push((
                    key.into(),
                    format!("must be at least {MIN_QUEUE_BYTES} bytes, got {value}"),
                ));
            }
        }
        if self.memory_budget_mb < memory::MIN_BUDGET_MB {
            out.push((
                "memory_budget_mb".into(),
                format!(
                    "must be at least {} (MiB), got {}",
                    memory::MIN_BUDGET_MB,
                    self.memory_budget_mb
                ),
            ));
        }
        if let Err(msg) = check_log_level(&self.log_level) {
            out.push(("log_level".into(), msg));
        }
    }

    /// UDP listeners: an address each (one listener per address), a database `/write` would
    /// take (`db_list`, a name influxd creates).
    fn udp_problems(&self, out: &mut Vec<(String, String)>) {
        let mut bound: Vec<(SocketAddr, String)> = Vec::new();
        for (i, udp) in self.udp.iter().enumerate() {
            let at = format!("udp[{i}]");
            match udp.socket_addr() {
                Err(msg) => out.push((format!("{at}.bind_addr"), msg)),
                Ok(addr) if addr.port() == 0 => out.push((
                    format!("{at}.bind_addr"),
                    format!(
                        "invalid bind_addr {:?}: port 0 is not a valid port (senders must know it)",
                        udp.bind_addr
                    ),
                )),
                Ok(addr) => {
                    if let Some((_, first)) = bound.iter().find(|(b, _)| udp_overlap(*b, addr)) {
                        out.push((
                            format!("{at}.bind_addr"),
                            format!("{addr} is already bound by {first}.bind_addr"),
                        ));
                    } else {
                        bound.push((addr, at.clone()));
                    }
                }
            }
            if udp.database.is_empty() {
                out.push((format!("{at}.database"), "database cannot be empty".into()));
                continue;
            }
            // Refused as `/write` refuses them: a name influxd cannot create, a database
            // `db_list` does not allow.
            match crate::influxql::check_write_target(&udp.database, &udp.retention_policy) {
                Err(e @ Unwritable::Database(_)) => {
                    out.push((format!("{at}.database"), e.to_string()))
                }
                Err(e @ Unwritable::RetentionPolicy(_)) => {
                    out.push((format!("{at}.retention_policy"), e.to_string()))
                }
                Ok(()) => {}
            }
            if !self.db_list.is_empty() && !self.db_list.contains(&udp.database) {
                out.push((
                    format!("{at}.database"),
                    format!("database forbidden: {} (not in db_list)", udp.database),
                ));
            }
        }
    }
}

/// Whether two UDP sockets cannot both be bound: one port, and one address or a wildcard of
/// the same family (IPv6's wildcard also takes IPv4 on a dual-stack host).
fn udp_overlap(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port()
        && (a.ip() == b.ip()
            || (a.ip().is_unspecified() && (a.is_ipv6() || b.is_ipv4()))
            || (b.ip().is_unspecified() && (b.is_ipv6() || a.is_ipv4())))
}

/// Parses a listen address: `:port` (all IPv4 interfaces), `ip:port`, `[ipv6]:port` or
/// `localhost:port` (127.0.0.1). Port 0 (any free port) is allowed. Host names other than
/// `localhost` are refused: the config is parsed without DNS.
pub fn parse_listen_addr(addr: &str) -> std::result::Result<SocketAddr, String> {
    parse_bind_addr("listen_addr", addr)
}

/// [`parse_listen_addr`] for the setting `key` (named in the message).
pub(super) fn parse_bind_addr(key: &str, addr: &str) -> std::result::Result<SocketAddr, String> {
    let bad = |why: &str| format!("invalid {key} {addr:?}: {why}");
    let (host, port) = split_host_port(addr).map_err(|why| bad(&why))?;
    let port = port.ok_or_else(|| bad("missing port, require [host]:port such as :7076"))?;
    let port = parse_port(port).map_err(|why| bad(&why))?;
    let ip: IpAddr = if addr.starts_with('[') {
        host.parse::<Ipv6Addr>()
            .map_err(|_| bad("bad IPv6 address"))?
            .into()
    } else if host.is_empty() {
        Ipv4Addr::UNSPECIFIED.into()
    } else if host.eq_ignore_ascii_case("localhost") {
        Ipv4Addr::LOCALHOST.into()
    } else {
        host.parse::<Ipv4Addr>()
            .map_err(|_| bad("host must be an IP address, localhost or empty"))?
            .into()
    };
    Ok(SocketAddr::new(ip, port))
}

/// Reports a credential that is marked encrypted but does not decrypt.
fn check_encrypted(out: &mut Vec<(String, String)>, at: &str, key: &str, value: &Secret) {
    if let Err(err) = cipher::decrypt(value.expose()) {
        out.push((
            join(at, key),
            format!("cannot be decrypted although auth_encrypt (auth_secure) is true: {err}"),
        ));
    }
}

/// Go's text for an unknown cipher suite, listing the accepted names.
pub(super) fn unknown_cipher(name: &str) -> String {
    format!(
        "unknown cipher suite: {name:?}. available ciphers: {}",
        TLS_CIPHERS.join(", ")
    )
}

/// Go's text for an unknown TLS version.
pub(super) fn unknown_tls_version(name: &str) -> String {
    format!(
        "unknown tls version: {name:?}. available versions: SSL3.0, TLS1.0, TLS1.1, TLS1.2, TLS1.3"
    )
}

/// Checks a backend URL: `http(s)://host[:port][/path]`, no user info, query or fragment.
fn check_backend_url(url: &str) -> std::result::Result<(), String> {
    if url.is_empty() {
        return Err("backend url cannot be empty".into());
    }
    let bad = |why: &str| format!("invalid backend url {url:?}: {why}");
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad("must not contain whitespace"));
    }
    let scheme_ok = url.split_once("://").filter(|(scheme, _)| {
        scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https")
    });
    let Some((_, rest)) = scheme_ok else {
        return Err(bad("require http://host:port or https://host:port"));
    };
    if rest.contains(['?', '#']) {
        return Err(bad("must not contain a query string or fragment"));
    }
    let authority = rest.find('/').map_or(rest, |i| &rest[..i]);
    if authority.contains('@') {
        return Err(bad(
            "user info in the url is not supported, use username and password",
        ));
    }
    let (host, port) = split_host_port(authority).map_err(|why| bad(&why))?;
    if host.is_empty() {
        return Err(bad("missing host"));
    }
    if authority.starts_with('[') {
        host.parse::<Ipv6Addr>()
            .map_err(|_| bad("bad IPv6 address"))?;
    } else if !host
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
    {
        return Err(bad("bad host name"));
    }
    if let Some(port) = port {
        if parse_port(port).map_err(|why| bad(&why))? == 0 {
            return Err(bad("port 0 is not a valid port"));
        }
    }
    Ok(())
}

/// Splits `host[:port]` or `[v6][:port]`; the host is returned without brackets.
fn split_host_port(s: &str) -> std::result::Result<(&str, Option<&str>), String> {
    if let Some(rest) = s.strip_prefix('[') {
        let Some((host, after)) = rest.split_once(']') else {
            return Err("missing ']' after IPv6 address".into());
        };
        if after.is_empty() {
            return Ok((host, None));
        }
        match after.strip_prefix(':') {
            Some(port) => Ok((host, Some(port))),
            None => Err("unexpected text after ']'".into()),
        }
    } else {
        match s.rsplit_once(':') {
            Some((host, _)) if host.contains(':') => {
                Err("an IPv6 address must be enclosed in brackets, e.g. [::1]:7076".into())
            }
            Some((host, port)) => Ok((host, Some(port))),
            None => Ok((s, None)),
        }
    }
}

/// Parses a decimal port number.
fn parse_port(port: &str) -> std::result::Result<u16, String> {
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("bad port {port:?}"));
    }
    port.parse::<u16>()
        .map_err(|_| format!("port {port} out of range"))
}

/// Whether `addr` matches the Go proxy's `^[\w-.]+:\d{1,5}$`.
fn is_ha_addr(addr: &str) -> bool {
    let Some((host, port)) = addr.rsplit_once(':') else {
        return false;
    };
    !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        && (1..=5).contains(&port.len())
        && port.bytes().all(|b| b.is_ascii_digit())
}

/// Checks `log_level`: a level, or comma-separated `level` / `target=level` directives.
fn check_log_level(filter: &str) -> std::result::Result<(), String> {
    for directive in filter.split(',').map(str::trim) {
        if directive.is_empty() {
            continue;
        }
        let (target, level) = match directive.rsplit_once('=') {
            Some((target, level)) => (Some(target.trim()), level.trim()),
            None => (None, directive),
        };
        if target == Some("") || !LOG_LEVELS.contains(&level.to_ascii_lowercase().as_str()) {
            return Err(format!(
                "invalid log_level directive {directive:?}, require one of {} or \
                 target=level, comma-separated",
                LOG_LEVELS.join(", ")
            ));
        }
    }
    Ok(())
}

/// `path.key`, or `key` at the top level.
pub(super) fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_support::*;

    #[test]
    fn encrypted_credentials_that_do_not_decrypt_are_reported() {
        let p = problems(
            r#"{"circles": [{"backends": [{"name": "b", "url": "http://h:1",
                 "auth_encrypt": true, "username": "admi", "password": "a+b"}]}],
                 "auth_encrypt": true, "username": "YgvEyuPZlDYAH8sGDkC!Ag",
                 "password": "short"}"#,
        );
        assert_problem(
            &p,
            "circles[0].backends[0].username",
            "crypto/cipher: input not full blocks",
        );
        assert_problem(
            &p,
            "circles[0].backends[0].password",
            "illegal base64 data at input byte 1",
        );
        assert_problem(&p, "password", "cannot be decrypted");
        assert_eq!(p.len(), 3, "{p:#?}");
    }

    #[test]
    fn empty_circles_are_an_error() {
        for json in [r#"{}"#, r#"{"circles": []}"#, r#"{"circles": null}"#] {
            assert_eq!(problems(json), ["circles: circles cannot be empty"]);
        }
    }

    #[test]
    fn empty_backends_are_an_error() {
        let p = problems(
            r#"{"circles": [{"name": "a", "backends": [{"name": "b", "url": "http://h:1"}]},
                 {"name": "b", "backends": []}, {"name": "c"}]}"#,
        );
        assert_eq!(
            p,
            [
                "circles[1].backends: backends cannot be empty",
                "circles[2].backends: backends cannot be empty"
            ]
        );
    }

    #[test]
    fn backend_names_must_be_present_and_unique_across_circles() {
        let p = problems(
            r#"{"circles": [
                 {"backends": [{"name": "x", "url": "http://h:1"},
                               {"name": "y", "url": "http://h:2"}]},
                 {"backends": [{"name": "y", "url": "http://h:3"},
                               {"name": "", "url": "http://h:4"},
                               {"url": "http://h:5"},
                               {"name": "x", "url": "http://h:6"}]}]}"#,
        );
        assert_eq!(
            p,
            [
                "circles[1].backends[0].name: backend name duplicated \
                 (also circles[0].backends[1].name)",
                "circles[1].backends[1].name: backend name cannot be empty",
                "circles[1].backends[2].name: backend name cannot be empty",
                "circles[1].backends[3].name: backend name duplicated \
                 (also circles[0].backends[0].name)",
            ]
        );
    }

    #[test]
    fn backend_urls_must_be_http_or_https_with_a_host() {
        let good = [
            "http://127.0.0.1:8086",
            "https://influx.example.com:8086",
            "HTTP://host",
            "http://[::1]:8086",
            "http://host_1.local:8086/prefix/path",
            "http://h:8086/",
        ];
        for url in good {
            assert_eq!(check_backend_url(url), Ok(()), "{url}");
        }
        let bad = [
            ("", "backend url cannot be empty"),
            ("127.0.0.1:8086", "require http://host:port"),
            ("ftp://h:21", "require http://host:port"),
            ("http://", "missing host"),
            ("http://:8086", "missing host"),
            ("http://h:port", "bad port"),
            ("http://h:65536", "out of range"),
            ("http://h:0", "port 0"),
            ("http://::1:8086", "enclosed in brackets"),
            ("http://[::1:8086", "missing ']'"),
            ("http://[zz]:1", "bad IPv6"),
            ("http://user:pw@h:8086", "user info"),
            ("http://h:8086?db=x", "query string"),
            ("http://h :8086", "whitespace"),
            ("http://h!:8086", "bad host name"),
        ];
        for (url, want) in bad {
            match check_backend_url(url) {
                Err(msg) => assert!(msg.contains(want), "{url}: {msg}"),
                Ok(()) => panic!("{url} accepted"),
            }
        }
        let p = problems(r#"{"circles": [{"backends": [{"name": "b"}]}]}"#);
        assert_eq!(
            p,
            ["circles[0].backends[0].url: backend url cannot be empty"]
        );
    }

    #[test]
    fn https_needs_cert_and_key() {
        let p = problems(&minimal(r#""https_enabled": true"#));
        assert_eq!(
            p,
            [
                "https_cert: https_cert cannot be empty when https_enabled is true",
                "https_key: https_key cannot be empty when https_enabled is true"
            ]
        );
        let cfg = load(&minimal(
            r#""https_enabled": true, "https_cert": "/c.pem", "https_key": "/c.pem""#,
        ));
        assert!(cfg.https_enabled);
        // Cert and key without https_enabled are allowed (and unused), as in Go.
        load(&minimal(r#""https_cert": "/c.pem""#));
    }

    #[test]
    fn listen_addr_forms() {
        let ok = [
            (":7076", "0.0.0.0:7076"),
            ("0.0.0.0:7076", "0.0.0.0:7076"),
            ("127.0.0.1:8080", "127.0.0.1:8080"),
            ("localhost:7076", "127.0.0.1:7076"),
            ("[::]:7076", "[::]:7076"),
            ("[::1]:0", "[::1]:0"),
        ];
        for (addr, want) in ok {
            assert_eq!(
                parse_listen_addr(addr),
                Ok(want.parse::<SocketAddr>().unwrap()),
                "{addr}"
            );
        }
        for addr in [
            "7076",
            "",
            ":",
            ":http",
            ":70760",
            "example.com:7076",
            "::1:7076",
            "[::1]",
            "[::1]x:1",
            "1.2.3:7076",
        ] {
            assert!(parse_listen_addr(addr).is_err(), "{addr} accepted");
        }
        let cfg = load(&minimal(r#""listen_addr": "[::1]:7077""#));
        assert_eq!(cfg.socket_addr(), Ok("[::1]:7077".parse().unwrap()));
        let p = problems(&minimal(r#""listen_addr": "7076""#));
        assert_eq!(
            p,
            [
                "listen_addr: invalid listen_addr \"7076\": missing port, require [host]:port \
              such as :7076"
            ]
        );
    }

    #[test]
    fn the_memory_budget_has_a_minimum_and_a_default() {
        assert_eq!(
            problems(&minimal(r#""memory_budget_mb": 16"#)),
            ["memory_budget_mb: must be at least 32 (MiB), got 16"]
        );
        assert_eq!(load(&minimal("")).memory_budget_mb, 96);
        assert_eq!(
            load(&minimal(r#""memory_budget_mb": 256"#))
                .memory_budget()
                .total(),
            256 << 20
        );
    }

    #[test]
    fn queue_sizes_have_a_minimum() {
        let p = problems(&minimal(
            r#""wal_max_bytes": 4095, "dead_letter_max_bytes": "100""#,
        ));
        assert_eq!(
            p,
            [
                "wal_max_bytes: must be at least 4096 bytes, got 4095",
                "dead_letter_max_bytes: must be at least 4096 bytes, got 100"
            ]
        );
        assert_eq!(
            load(&minimal(r#""wal_max_bytes": 4096"#)).wal_max_bytes,
            4096
        );
    }

    #[test]
    fn log_level_must_be_a_level_or_directives() {
        for level in [
            "info",
            "DEBUG",
            "warn,influx_proxy=trace",
            "off",
            "a::b=error, info",
        ] {
            load(&minimal(&format!(r#""log_level": "{level}""#)));
        }
        for level in ["verbose", "influx_proxy", "=debug", "info,x=loud"] {
            let p = problems(&minimal(&format!(r#""log_level": "{level}""#)));
            assert_problem(&p, "log_level", "invalid log_level directive");
        }
    }

    #[test]
    fn ha_addrs_must_be_host_port() {
        let p = problems(&minimal(
            r#""ha_addrs": ["p1:7076", "p2", "p3:123456", "a b:1"]"#,
        ));
        assert_eq!(p.len(), 3, "{p:#?}");
        assert_problem(&p, "ha_addrs[1]", "require <host:port>");
        assert_problem(&p, "ha_addrs[2]", "require <host:port>");
        assert_problem(&p, "ha_addrs[3]", "require <host:port>");
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let err = Config::from_str(
            r#"{"circles": [{"backends": [{"name": "a", "url": "gopher://h"},
                 {"name": "a", "url": "http://h:1", "nmae": "x"}]}, {"backends": []}],
                 "hash_key": "bogus", "https_enabled": true, "https_cert": "/c",
                 "listen_addr": "nowhere", "flush_size": "lots"}"#,
        )
        .unwrap_err();
        let Error::Invalid(p) = &err else {
            panic!("{err:?}")
        };
        assert_problem(p, "circles[0].backends[0].url", "require http://host:port");
        assert_problem(p, "circles[0].backends[1].name", "backend name duplicated");
        assert_problem(p, "circles[0].backends[1].nmae", "unknown field");
        assert_problem(p, "circles[1].backends", "backends cannot be empty");
        assert!(p.iter().any(|m| m.starts_with("hash_key: ")));
        assert_problem(p, "https_key", "cannot be empty");
        assert_problem(p, "listen_addr", "missing port");
        assert_problem(p, "flush_size", "expected an integer");
        assert_eq!(p.len(), 8, "{p:#?}");
        let text = err.to_string();
        assert!(text.starts_with("illegal config file: "), "{text}");
        assert_eq!(text.matches("; ").count(), 7, "{text}");
    }

    #[test]
    fn validate_checks_a_hand_modified_config() {
        let mut cfg = load(include_str!("../../packaging/proxy.json"));
        assert!(cfg.validate().is_ok());
        cfg.circles[1].backends[1].name = "influxdb-1-1".into();
        cfg.circles[0].backends[1].url = "localhost".into();
        cfg.wal_max_bytes = 1;
        let Err(Error::Invalid(p)) = cfg.validate() else {
            panic!("accepted")
        };
        assert_eq!(p.len(), 3, "{p:#?}");
        assert_problem(
            &p,
            "circles[1].backends[1].name",
            "(also circles[0].backends[0].name)",
        );
        assert_problem(&p, "circles[0].backends[1].url", "invalid backend url");
        assert_problem(&p, "wal_max_bytes", "at least 4096");
    }
}
