//! Hostile names: quotes, backslashes, `;`, line breaks, NUL and 10 KB names as databases,
//! retention policies, measurements, tags and fields, through every path on which the proxy
//! builds InfluxQL from a name: the `CREATE DATABASE` of a delivery, the schema check's field-type
//! queries, DDL fan-out, migration (copy and clear) and dead letters.
//!
//! Each name is made to end a badly quoted statement early and run `DROP DATABASE y`. The
//! backends log every statement they run (`[data] query-log-enabled`) as they understood it;
//! the tests check each against the few forms the proxy is meant to send, with only the names
//! the test used, and that database `y` still exists everywhere. Names influxd refuses must be
//! refused by the proxy with influxd's own status and text, before anything is queued.

use std::collections::BTreeSet;
use std::time::Duration;

use influx_proxy::influxql::{check_name, check_write_target, quote_ident};
use influx_proxy::line_protocol::escape;
use serde_json::{json, Value};

use crate::support::http::{self, urlencode, wait_until};
use crate::support::influxd::{statement_error, Influxd};
use crate::support::proxy::{two_by_two_of, Proxy};

const LONG: Duration = Duration::from_secs(90);
/// Timestamp of the test points (2020-09-13).
const T0: i64 = 1_600_000_000_000_000_000;
/// The database every injection attempt tries to drop.
const Y: &str = "y";

/// Database names influxd creates, each made to end a naive quoting early.
fn accepted_dbs() -> Vec<String> {
    vec![
        r#"x";DROP DATABASE y;--"#.into(),
        "it's'; DROP DATABASE y; --".into(),
        "é☃ ,=db".into(),
        "d".repeat(255),
    ]
}

/// Database names influxd refuses to create (`invalid name`, `name too long`).
fn refused_dbs() -> Vec<String> {
    vec![
        r#"x\";DROP DATABASE y;--"#.into(),
        "x\nDROP DATABASE y".into(),
        "x\r\nDROP DATABASE y".into(),
        "x\rDROP DATABASE y".into(),
        "x\0DROP DATABASE y".into(),
        "x\\".into(),
        "a/b".into(),
        "..".into(),
        "x".repeat(10 * 1024),
    ]
}

/// A retention policy influxd creates, and one it refuses.
const RP: &str = r#"r";DROP DATABASE y;--"#;
const REFUSED_RP: &str = "r\nDROP DATABASE y";

/// Measurements InfluxQL can name, with every hostile character line protocol carries (a
/// backslash before a newline joins the lines: a newline in the name). None has a backslash
/// right before a quote: influxd 1.6.7 lists such a measurement under a name that no query
/// finds again (its series key keeps the escape), whoever quotes it.
fn measurements() -> Vec<String> {
    vec![
        r#"m";DROP DATABASE y;--"#.into(),
        r#"m\x";DROP DATABASE y;--"#.into(),
        "m';DROP DATABASE y;--".into(),
        "m\\\nDROP DATABASE y".into(),
        "m".repeat(10 * 1024),
    ]
}

/// Measurements no InfluxQL identifier can name: influxd reads a CR as a newline and a NUL as the
/// end of the query, both of which end a quoted identifier as an error.
fn unspellable() -> Vec<String> {
    vec!["m\rDROP DATABASE y".into(), "m\0DROP DATABASE y".into()]
}

const TAG_KEY: &str = r#"t\";DROP DATABASE y;--"#;
const TAG_VALUE: &str = "v';DROP DATABASE y;--";
const FIELD_KEY: &str = r#"f";DROP DATABASE y;--"#;

/// One point of `measurement` with the hostile tag and field, at `T0 + i` s.
fn line(measurement: &str, i: i64) -> String {
    format!(
        "{},{}={},host=h {}={i}.5,i={i}i {}\n",
        escape::measurement(measurement),
        escape::key(TAG_KEY),
        escape::key(TAG_VALUE),
        escape::key(FIELD_KEY),
        T0 + i * 1_000_000_000
    )
}

/// Three points of every measurement, spellable or not.
fn body() -> String {
    measurements()
        .iter()
        .chain(&unspellable())
        .flat_map(|m| (0..3).map(move |i| line(m, i)))
        .collect()
}

/// Every name a statement run by a backend may contain: the test's databases, policies and
/// measurements (spellable ones: the others can never appear in a statement).
fn known_names() -> BTreeSet<String> {
    let mut names: BTreeSet<String> = accepted_dbs().into_iter().collect();
    names.extend(measurements());
    names.extend([Y, "autogen", RP].map(String::from));
    names
}

/// The statements the proxy (and the test's own checks) may make a backend run, in influxd's
/// rendering with every name replaced by `?` and every number by `N` ([`skeleton`]).
const INTENDED: &[&str] = &[
    // Delivery into a database a backend lacks.
    "CREATE DATABASE ?",
    // The schema check's policies and field types (influxd runs SHOW FIELD KEYS as a SELECT).
    "SHOW RETENTION POLICIES ON ?",
    "SELECT fieldKey , fieldType FROM ? . ? . _fieldKeys",
    // DDL the test sends through the proxy.
    "CREATE RETENTION POLICY ? ON ? DURATION N REPLICATION N",
    // Migration: listing and copying, preparing the destination, clearing.
    "SHOW DATABASES",
    "SHOW MEASUREMENTS ON ?",
    "SHOW TAG KEYS ON ? WHERE _name = ?",
    "SELECT fieldKey , fieldType FROM ? . ? . _fieldKeys WHERE _name = ?",
    "SELECT * FROM ? . ? . ?",
    "CREATE RETENTION POLICY ? ON ? DURATION N REPLICATION N SHARD DURATION N DEFAULT",
    "CREATE RETENTION POLICY ? ON ? DURATION N REPLICATION N SHARD DURATION N",
    "DROP MEASUREMENT ?",
    // The test's own checks, straight to the backends.
    "SELECT count ( * ) FROM ? . ? . ?",
];

/// `stmt` (as influxd logged it) with each quoted identifier, string literal and bare word that
/// is one of `known` replaced by `?` and each number or duration by `N`, tokens joined by a
/// space. `Err` names a quoted name that is not one of `known`.
fn skeleton(stmt: &str, known: &BTreeSet<String>) -> Result<String, String> {
    // influxd renders this one database unquoted (`SHOW MEASUREMENTS ON x";DROP ...`).
    if let Some(db) = stmt.strip_prefix("SHOW MEASUREMENTS ON ") {
        return if known.contains(db) {
            Ok("SHOW MEASUREMENTS ON ?".into())
        } else {
            Err(format!("unknown name {} in {}", short(db), short(stmt)))
        };
    }
    let mut out: Vec<String> = Vec::new();
    let mut chars = stmt.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == '"' || c == '\'' {
            chars.next();
            let mut name = String::new();
            loop {
                match chars.next() {
                    None => return Err(format!("unterminated quote in {stmt:?}")),
                    Some(q) if q == c => break,
                    Some('\\') => match chars.next() {
                        Some('n') => name.push('\n'),
                        Some(e) => name.push(e),
                        None => return Err(format!("dangling escape in {stmt:?}")),
                    },
                    Some(other) => name.push(other),
                }
            }
            if !known.contains(&name) {
                return Err(format!("unknown name {} in {}", short(&name), short(stmt)));
            }
            out.push("?".into());
        } else if c.is_ascii_alphabetic() || c == '_' {
            let mut word = String::new();
            while let Some(&w) = chars
                .peek()
                .filter(|w| w.is_ascii_alphanumeric() || **w == '_')
            {
                word.push(w);
                chars.next();
            }
            out.push(if known.contains(&word) {
                "?".into()
            } else {
                word
            });
        } else if c.is_ascii_digit() {
            while chars
                .next_if(|d| d.is_ascii_alphanumeric() || *d == 'µ')
                .is_some()
            {}
            out.push("N".into());
        } else {
            chars.next();
            out.push(c.to_string());
        }
    }
    Ok(out.join(" "))
}

/// Every statement the backends ran is an intended one naming only known things, each of
/// `exercised` among them, and database `y` still exists on each.
fn assert_only_intended_statements_ran(servers: &[Influxd], exercised: &[&str]) {
    let known = known_names();
    let mut unintended = Vec::new();
    let mut seen = BTreeSet::new();
    for s in servers {
        for stmt in s.executed_statements() {
            match skeleton(&stmt, &known) {
                Ok(shape) if INTENDED.contains(&shape.as_str()) => {
                    seen.insert(shape);
                }
                Ok(shape) => unintended.push(format!(
                    ":{} ran {} ({})",
                    s.port,
                    short(&stmt),
                    short(&shape)
                )),
                Err(e) => unintended.push(format!(":{} ran {e}", s.port)),
            }
        }
    }
    assert!(
        unintended.is_empty(),
        "statements the proxy never meant to send ran:\n{}\n(intended ones seen: {seen:?})",
        unintended.join("\n")
    );
    for shape in exercised {
        assert!(seen.contains(*shape), "{shape} never ran; seen: {seen:?}");
    }
    for s in servers {
        assert!(
            s.databases().iter().any(|d| d == Y),
            "database y is gone from :{}",
            s.port
        );
    }
}

/// `s` for a message: a long name cut to its first 40 characters and its length.
fn short(s: &str) -> String {
    match s.char_indices().nth(40) {
        Some((at, _)) => format!("{:?}…({} bytes)", &s[..at], s.len()),
        None => format!("{s:?}"),
    }
}

/// The error text of an answer.
fn error_of(resp: &http::Resp) -> Value {
    serde_json::from_str::<Value>(&resp.body).map_or(Value::Null, |v| v["error"].clone())
}

/// Same status and error text from the proxy as from influxd.
fn assert_same_answer(what: &str, proxied: &http::Resp, direct: &http::Resp) {
    assert_eq!(
        (proxied.status, error_of(proxied)),
        (direct.status, error_of(direct)),
        "{what}: the proxy answered {} {}, influxd {} {}",
        proxied.status,
        proxied.body,
        direct.status,
        direct.body
    );
}

fn wait_drained(proxy: &Proxy) {
    let drained = wait_until(LONG, || {
        http::get(&format!("{}/health", proxy.url))
            .json()
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|c| c["backends"].as_array().unwrap().iter())
            .all(|b| b["queue"]["records"] == 0)
    });
    assert!(drained, "queues never drained: {}", proxy.log());
}

/// Measurements of `db` on all of `servers`.
fn measurements_on(servers: &[&Influxd], db: &str) -> BTreeSet<String> {
    servers.iter().flat_map(|s| s.measurements(db)).collect()
}

/// The backend of `circle` (0-based) owning `measurement` of `db`, by name.
fn owner(proxy: &Proxy, db: &str, measurement: &str, circle: usize) -> String {
    let url = format!(
        "{}/replica?db={}&meas={}",
        proxy.url,
        urlencode(db),
        urlencode(measurement)
    );
    http::get(&url).json()[circle]["name"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Four backends logging their statements, each holding database `y`, and a proxy in front
/// that may use every test database but `y`.
fn cluster() -> (Vec<Influxd>, Value, Proxy) {
    let (servers, mut config) = two_by_two_of(Influxd::spawn_logging_queries);
    for s in &servers {
        s.create_db(Y);
    }
    let allowed: Vec<String> = accepted_dbs().into_iter().chain(refused_dbs()).collect();
    config["db_list"] = json!(allowed);
    let proxy = Proxy::start(config.clone());
    (servers, config, proxy)
}

/// Writes, DDL, queries, dead letters and migration with hostile names: what influxd refuses
/// is refused the same way, the rest is delivered and migrated, and only intended statements
/// reach the backends.
#[test]
fn hostile_names_never_run_as_statements() {
    let (servers, config, mut proxy) = cluster();
    let reference = Influxd::spawn();
    let dbs = accepted_dbs();

    // Names influxd refuses: the proxy answers as influxd does, on every write endpoint and for
    // a database created through /query; nothing is queued.
    for db in refused_dbs() {
        let shown = short(&db);
        let direct = http::write(&reference.url, &db, line("m", 0));
        let proxied = http::write(&proxy.url, &db, line("m", 0));
        assert_same_answer(&format!("/write db={shown}"), &proxied, &direct);
        if !db.contains('/') {
            let v2 = http::post(
                &format!("{}/api/v2/write?bucket={}", proxy.url, urlencode(&db)),
                line("m", 0).as_bytes(),
                &[],
            );
            assert_same_answer(&format!("/api/v2/write bucket={shown}"), &v2, &direct);
        }
        if !db.contains(['\r', '\0']) {
            let q = format!("CREATE DATABASE {}", quote_ident(&db));
            let direct = http::query_post(&reference.url, &[("q", &q)]);
            let proxied = http::query_post(&proxy.url, &[("q", &q)]);
            assert_same_answer(&q, &proxied, &direct);
            assert_eq!(proxied.json(), direct.json(), "{q}");
        }
        let params = [("db", db.as_str()), ("q", "SELECT * FROM m")];
        let (direct, proxied) = (
            http::query_post(&reference.url, &params),
            http::query_post(&proxy.url, &params),
        );
        assert_eq!(proxied.json(), direct.json(), "SELECT on {shown}");
    }
    reference.create_db(&dbs[0]);
    let q = format!(
        "CREATE RETENTION POLICY {} ON {} DURATION INF REPLICATION 1",
        quote_ident(REFUSED_RP),
        quote_ident(&dbs[0])
    );
    let (direct, proxied) = (
        http::query_post(&reference.url, &[("q", &q)]),
        http::query_post(&proxy.url, &[("q", &q)]),
    );
    assert_eq!(proxied.json(), direct.json(), "{q}");

    // A field whose type changed behind the proxy's back: the refused line is a dead letter,
    // exported as it was written under one-line headers. The database exists beforehand, so
    // the proxy learns its (empty) schema on its first write and asks no more for a minute.
    let (db, m) = (&dbs[2], &measurements()[0]);
    for s in &servers {
        s.create_db(db);
    }
    let r = http::write(&proxy.url, db, line(m, 0));
    assert_eq!(r.status, 204, "{}", r.body);
    let backend = owner(&proxy, db, m, 1);
    let direct = &servers[2 + usize::from(backend.ends_with("-2"))];
    let behind = format!("{},host=h g=1i {T0}\n", escape::measurement(m));
    assert_eq!(direct.write(db, behind), 204);
    let refused = format!("{},host=h g=2.5 {}\n", escape::measurement(m), T0 + 1);
    let r = http::write(&proxy.url, db, &refused);
    assert_eq!(r.status, 204, "{}", r.body);
    let export_url = format!(
        "{}/dead_letters/export?backend={backend}&db={}",
        proxy.url,
        urlencode(db)
    );
    let exported = wait_until(LONG, || {
        http::get(&export_url)
            .body
            .lines()
            .any(|l| !l.starts_with('#'))
    });
    assert!(exported, "no dead letter: {}", proxy.log());
    assert_eq!(
        http::get(&export_url).body,
        format!("# DML\n# CONTEXT-DATABASE: {db}\n# CONTEXT-RETENTION-POLICY: \n{refused}")
    );

    // Delivery creates each database (CREATE DATABASE), the schema check asks for its policies
    // and field types; every measurement arrives in both circles.
    for db in &dbs {
        let shown = short(db);
        let r = http::write(&proxy.url, db, body());
        assert_eq!(r.status, 204, "{shown}: {}", r.body);
    }
    wait_drained(&proxy);
    let all: Vec<String> = measurements().into_iter().chain(unspellable()).collect();
    for db in &dbs {
        for circle in [[&servers[0], &servers[1]], [&servers[2], &servers[3]]] {
            let got = measurements_on(&circle, db);
            let missing: Vec<String> = all
                .iter()
                .filter(|m| !got.contains(*m))
                .map(|m| short(m))
                .collect();
            assert!(missing.is_empty(), "{} lacks {missing:?}", short(db));
            assert_eq!(
                got.len(),
                all.len(),
                "{}: {:?}",
                short(db),
                got.iter().map(|m| short(m)).collect::<Vec<_>>()
            );
        }
    }

    // A `--` comment ends at CR and at NUL for influxd: what follows is a statement of its own,
    // here one on a database outside db_list.
    for q in [
        "SELECT * FROM m -- a comment\r; DROP DATABASE y",
        "SHOW DATABASES -- a comment\0; DROP DATABASE y",
    ] {
        let r = http::query_post(&proxy.url, &[("db", &dbs[0]), ("q", q)]);
        assert_eq!(
            (r.status, error_of(&r)),
            (400, json!("database forbidden: y")),
            "{q:?}: {}",
            r.body
        );
    }

    // DDL fan-out: a policy with a hostile name on a hostile database, then written into.
    let q = format!(
        "CREATE RETENTION POLICY {} ON {} DURATION INF REPLICATION 1",
        quote_ident(RP),
        quote_ident(&dbs[1])
    );
    let r = http::query_post(&proxy.url, &[("q", &q)]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(statement_error(&r.json()), None, "{}", r.body);
    let in_rp = format!("db={}&rp={}", urlencode(&dbs[1]), urlencode(RP));
    let written = wait_until(LONG, || {
        http::write_with(&proxy.url, &in_rp, line(m, 7), false).status == 204
    });
    assert!(written, "{}", proxy.log());
    wait_drained(&proxy);
    let copies: u64 = servers.iter().map(|s| s.count_rp(&dbs[1], RP, m)).sum();
    assert_eq!(copies, 2, "one copy per circle");
    // influxd answers a write into a policy it lacks with 500; so does the proxy for one influxd
    // cannot create.
    let bad_rp = format!("db={}&rp={}", urlencode(&dbs[0]), urlencode(REFUSED_RP));
    assert_same_answer(
        "/write rp",
        &http::write_with(&proxy.url, &bad_rp, line(m, 0), false),
        &http::write_with(&reference.url, &bad_rp, line(m, 0), false),
    );

    clear_and_rebalance(&servers, &config, &mut proxy, &dbs);

    assert_only_intended_statements_ran(
        &servers,
        &[
            "CREATE DATABASE ?",
            "SHOW RETENTION POLICIES ON ?",
            "SELECT fieldKey , fieldType FROM ? . ? . _fieldKeys",
            "CREATE RETENTION POLICY ? ON ? DURATION N REPLICATION N",
            "SHOW MEASUREMENTS ON ?",
            "SHOW TAG KEYS ON ? WHERE _name = ?",
            "SELECT fieldKey , fieldType FROM ? . ? . _fieldKeys WHERE _name = ?",
            "SELECT * FROM ? . ? . ?",
            "CREATE RETENTION POLICY ? ON ? DURATION N REPLICATION N SHARD DURATION N DEFAULT",
            "DROP MEASUREMENT ?",
        ],
    );
}

/// Migration reads every hostile measurement with statements that name it exactly (copied
/// whole to the new owner), and /clear drops a misplaced one by its exact name. The data of
/// [`body`] is in `dbs` already.
fn clear_and_rebalance(servers: &[Influxd], config: &Value, proxy: &mut Proxy, dbs: &[String]) {
    // /clear on circle 2: a copy planted on the backend that does not own it is dropped.
    let m = &measurements()[0];
    let owner_name = owner(proxy, &dbs[0], m, 1);
    let (owning, other) = if owner_name.ends_with("-1") {
        (&servers[2], &servers[3])
    } else {
        (&servers[3], &servers[2])
    };
    other.create_db(&dbs[0]);
    assert_eq!(other.write(&dbs[0], line(m, 9)), 204);
    let r = http::post(
        &format!("{}/clear?circle_id=1", proxy.url),
        b"",
        &[("Content-Type", "application/json")],
    );
    assert_eq!(r.status, 202, "{}", r.body);
    let cleared = wait_until(LONG, || !other.measurements(&dbs[0]).contains(m));
    assert!(cleared, "{}", proxy.log());
    assert!(owning.measurements(&dbs[0]).contains(m));
    proxy.wait_migrations_done();

    // Rebalance circle 1 after removing its second backend: everything it held is copied to
    // the first, identical.
    let removed = config["circles"][0]["backends"][1].clone();
    let mut smaller = config.clone();
    smaller["circles"][0]["backends"]
        .as_array_mut()
        .unwrap()
        .remove(1);
    proxy.rewrite_config(smaller);
    proxy.restart();
    let body = json!({ "backends": [removed] }).to_string();
    let r = http::post(
        &format!("{}/rebalance?circle_id=0&operation=rm", proxy.url),
        body.as_bytes(),
        &[("Content-Type", "application/json")],
    );
    assert_eq!(r.status, 202, "{}", r.body);
    proxy.wait_migrations_done();
    let (kept, gone) = (&servers[0], &servers[1]);
    let mut moved = 0;
    for db in dbs {
        for m in gone.measurements(db) {
            if !measurements().contains(&m) {
                continue; // CR or NUL: no statement can read it (see `unspellable`).
            }
            moved += 1;
            for q in [
                "SELECT * FROM {}",
                "SHOW TAG KEYS FROM {}",
                "SHOW FIELD KEYS FROM {}",
            ] {
                let q = q.replace("{}", &quote_ident(&m));
                let (copy, original) = (kept.query(db, &q), gone.query(db, &q));
                assert!(
                    copy == original,
                    "{} {}: {} != {}",
                    short(db),
                    short(&q),
                    short(&copy.to_string()),
                    short(&original.to_string())
                );
            }
        }
    }
    assert!(moved > 0, "no measurement to move");
}

/// The proxy's quoting and name checks against influxd itself: every name `quote_ident` spells
/// comes back unchanged, CR and NUL make influxd refuse the whole query, and `check_name` /
/// `check_write_target` give influxd's verdicts and texts.
#[test]
fn quoting_and_name_checks_agree_with_influxd() {
    let influxd = Influxd::spawn_logging_queries();
    let mut names: Vec<String> = [
        "db",
        r#"x";DROP DATABASE y;--"#,
        r#"x\";DROP DATABASE y;--"#,
        "a\nb",
        "a\rb",
        "a\0b",
        "a\tb",
        "a/b",
        "x\\",
        ".",
        "..",
        "...",
        "",
        "é☃ ,=",
        "😀",
        "\u{a0}",
        "a\u{200b}",
        "\u{e000}",
        "\u{7f}",
    ]
    .map(String::from)
    .to_vec();
    names.extend([
        "b".repeat(255),
        "b".repeat(256),
        "é".repeat(128),
        "x".repeat(10 * 1024),
    ]);
    let mut created = 0;
    for name in &names {
        let shown = short(name);
        let q = format!("CREATE DATABASE {}", quote_ident(name));
        let r = http::query_post(&influxd.url, &[("q", &q)]);
        let verdict = check_name(name);
        if name.contains(['\r', '\0']) {
            assert_eq!(r.status, 400, "{shown}: {}", r.body);
            assert!(
                r.body.contains("error parsing query"),
                "{shown}: {}",
                r.body
            );
            assert!(verdict.is_err(), "{shown}");
        } else {
            created += 1;
            assert_eq!(r.status, 200, "{shown}: {}", r.body);
            let error = statement_error(&r.json()).map(str::to_string);
            assert_eq!(error, verdict.err().map(|e| e.to_string()), "{shown}");
            if verdict.is_ok() {
                assert!(influxd.databases().contains(name), "{shown}");
            }
        }
        if name.is_empty() {
            continue; // influxd: "database is required", the proxy's own answer.
        }
        let w = http::write(&influxd.url, name, "m f=1 1\n");
        match check_write_target(name, "") {
            Ok(()) => assert_eq!(w.status, 204, "{shown}: {}", w.body),
            Err(e) => assert_eq!(
                (w.status, error_of(&w)),
                (404, json!(e.to_string())),
                "{shown}"
            ),
        }
    }
    influxd.create_db("m");
    for m in measurements().iter().chain(&unspellable()) {
        let shown = short(m);
        assert_eq!(influxd.write("m", line(m, 0)), 204, "{shown}");
        let q = format!("SELECT * FROM {}", quote_ident(m));
        let r = http::query_post(&influxd.url, &[("db", "m"), ("q", &q)]);
        if m.contains(['\r', '\0']) {
            assert_eq!(r.status, 400, "{shown}: {}", r.body);
            continue;
        }
        assert_eq!(r.status, 200, "{shown}: {}", r.body);
        assert_eq!(r.json()["results"][0]["series"][0]["name"], json!(m));
    }
    // Nothing but the statements above ran, each naming exactly what it was given.
    let mut known: BTreeSet<String> = names.iter().cloned().collect();
    known.extend(measurements());
    known.extend(["m", "autogen"].map(String::from));
    let mut creates = 0;
    for stmt in influxd.executed_statements() {
        let shape = skeleton(&stmt, &known).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            [
                "CREATE DATABASE ?",
                "SELECT * FROM ? . ? . ?",
                "SHOW DATABASES"
            ]
            .contains(&&*shape),
            "{stmt:?} ({shape})"
        );
        creates += usize::from(shape == "CREATE DATABASE ?");
    }
    assert_eq!(
        creates,
        created + 1,
        "one statement per CREATE DATABASE sent"
    );
}
