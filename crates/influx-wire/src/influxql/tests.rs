//! Table-driven tests for the InfluxQL classifier, plus property tests that
//! it never panics and that quoting / splitting round-trip.

use proptest::prelude::*;

use super::tokenizer::{tokenize, TokenKind};
use super::*;

/// A source as `db|rp|name` (`-` for none; regexes as `/pattern/`).
fn render(source: &Source) -> String {
    match source {
        Source::Measurement {
            database,
            retention_policy,
            name,
        } => format!(
            "{}|{}|{name}",
            database.as_deref().unwrap_or("-"),
            retention_policy.as_deref().unwrap_or("-")
        ),
        Source::Regex {
            database,
            retention_policy,
            pattern,
        } => format!(
            "{}|{}|/{pattern}/",
            database.as_deref().unwrap_or("-"),
            retention_policy.as_deref().unwrap_or("-")
        ),
        Source::Subquery(_) => "(subquery)".to_string(),
    }
}

type OkCase = (
    &'static str,
    StatementKind,
    Option<&'static str>,
    Option<&'static str>,
    &'static [&'static str],
);

/// (statement, kind, database, retention policy, leaf sources).
const OK_CASES: &[OkCase] = &[
    // --- spec §8.3 examples (upstream tests) ---
    (r#"select * from "c\"pu""#, StatementKind::Select, None, None, &[r#"-|-|c"pu"#]),
    (
        r#"select * from db."auto.gen".cpu"#,
        StatementKind::Select,
        Some("db"),
        Some("auto.gen"),
        &["db|auto.gen|cpu"],
    ),
    (r#"select * from "d.b"..cpu"#, StatementKind::Select, Some("d.b"), None, &["d.b|-|cpu"]),
    (r#"select * from autogen."cpu""#, StatementKind::Select, None, Some("autogen"), &["-|autogen|cpu"]),
    (
        r#"SELECT SUM("max") FROM (SELECT MAX("water_level") FROM db."auto.gen"."h2o_feet" GROUP BY "location")"#,
        StatementKind::Select,
        Some("db"),
        Some("auto.gen"),
        &["db|auto.gen|h2o_feet"],
    ),
    (
        r#"SHOW FIELD KEYS FROM one_hour."cpu.load""#,
        StatementKind::ShowFieldKeys,
        None,
        Some("one_hour"),
        &["-|one_hour|cpu.load"],
    ),
    ("DROP MEASUREMENT cpu;", StatementKind::DropMeasurement, None, None, &["-|-|cpu"]),
    (
        r#"select * from "measurement with spaces, commas and 'quotes'""#,
        StatementKind::Select,
        None,
        None,
        &["-|-|measurement with spaces, commas and 'quotes'"],
    ),
    (
        r#"SELECT "water_level"::float FROM "h2o_feet" LIMIT 4"#,
        StatementKind::Select,
        None,
        None,
        &["-|-|h2o_feet"],
    ),
    ("show tag keys on db from cpu", StatementKind::ShowTagKeys, Some("db"), None, &["-|-|cpu"]),
    ("show series on db from rp.cpu", StatementKind::ShowSeries, Some("db"), Some("rp"), &["-|rp|cpu"]),
    // --- Go quirks fixed (spec §8.3, §14 item 3) ---
    ("SELECT measurement FROM cpu", StatementKind::Select, None, None, &["-|-|cpu"]),
    ("SELECT value FROM cpu WHERE measurement = 'x'", StatementKind::Select, None, None, &["-|-|cpu"]),
    (r#"SELECT * FROM "cpu.load""#, StatementKind::Select, None, None, &["-|-|cpu.load"]),
    ("SELECT * FROM cpu, mem", StatementKind::Select, None, None, &["-|-|cpu", "-|-|mem"]),
    (
        "SELECT * FROM db1..cpu, db2.rp.mem",
        StatementKind::Select,
        Some("db1"),
        Some("rp"),
        &["db1|-|cpu", "db2|rp|mem"],
    ),
    ("select * from /cp.*/", StatementKind::Select, None, None, &["-|-|/cp.*/"]),
    (r"SELECT * FROM /cpu\/load/", StatementKind::Select, None, None, &["-|-|/cpu/load/"]),
    (r"SELECT * FROM /^a\d+$/", StatementKind::Select, None, None, &[r"-|-|/^a\d+$/"]),
    ("SELECT * FROM /a b/", StatementKind::Select, None, None, &["-|-|/a b/"]),
    ("select * from db.rp./^cpu/", StatementKind::Select, Some("db"), Some("rp"), &["db|rp|/^cpu/"]),
    ("select * from db../^cpu/", StatementKind::Select, Some("db"), None, &["db|-|/^cpu/"]),
    ("select * from rp./cpu/", StatementKind::Select, None, Some("rp"), &["-|rp|/cpu/"]),
    ("SELECT * FROM cpu, /^mem/", StatementKind::Select, None, None, &["-|-|cpu", "-|-|/^mem/"]),
    // --- qualification forms ---
    ("select * from db.rp.cpu", StatementKind::Select, Some("db"), Some("rp"), &["db|rp|cpu"]),
    ("select * from db..cpu", StatementKind::Select, Some("db"), None, &["db|-|cpu"]),
    ("select * from rp.cpu", StatementKind::Select, None, Some("rp"), &["-|rp|cpu"]),
    (
        r#"select * from "my db"."my rp"."my ""#,
        StatementKind::Select,
        Some("my db"),
        Some("my rp"),
        &["my db|my rp|my "],
    ),
    (r#"SELECT * FROM "a \"b\"""#, StatementKind::Select, None, None, &[r#"-|-|a "b""#]),
    (r#"SELECT * FROM "back\\slash""#, StatementKind::Select, None, None, &[r"-|-|back\slash"]),
    (r#"SELECT * FROM "from""#, StatementKind::Select, None, None, &["-|-|from"]),
    (r#"SELECT "from", "into" FROM "select""#, StatementKind::Select, None, None, &["-|-|select"]),
    (r#"SELECT * FROM "température""#, StatementKind::Select, None, None, &["-|-|température"]),
    ("sElEcT * FrOm CPU", StatementKind::Select, None, None, &["-|-|CPU"]),
    // --- Grafana-style ---
    (
        r#"SELECT mean("value") FROM "cpu" WHERE ("host" =~ /^a$/) AND time >= now() - 6h GROUP BY time(1m), "host" fill(null)"#,
        StatementKind::Select,
        None,
        None,
        &["-|-|cpu"],
    ),
    (
        "SELECT mean(\"usage_idle\")\nFROM \"telegraf\".\"autogen\".\"cpu\"\nWHERE time >= 1600000000000ms and time <= 1600003600000ms\nGROUP BY time(10s) fill(null)",
        StatementKind::Select,
        Some("telegraf"),
        Some("autogen"),
        &["telegraf|autogen|cpu"],
    ),
    (
        "SELECT\t*\n\tFROM\n\t\tcpu\r\nWHERE time > now() - 1h",
        StatementKind::Select,
        None,
        None,
        &["-|-|cpu"],
    ),
    (
        r#"SELECT "value" / 100 FROM "disk" WHERE "path" =~ /^\/var\/log$/"#,
        StatementKind::Select,
        None,
        None,
        &["-|-|disk"],
    ),
    ("SELECT a/b FROM cpu WHERE x/2 > 1", StatementKind::Select, None, None, &["-|-|cpu"]),
    (
        r#"SELECT non_negative_derivative(mean("bytes_recv"), 1s) * 8 FROM "net" WHERE "host" =~ /^(a|b)$/ AND time > now() - 5m GROUP BY time(10s), "interface""#,
        StatementKind::Select,
        None,
        None,
        &["-|-|net"],
    ),
    ("SELECT /usage/ FROM cpu", StatementKind::Select, None, None, &["-|-|cpu"]),
    ("SELECT * FROM cpu WHERE host = $host", StatementKind::Select, None, None, &["-|-|cpu"]),
    (
        "SELECT * FROM cpu WHERE time > '2020-01-01T00:00:00Z' tz('Europe/Paris')",
        StatementKind::Select,
        None,
        None,
        &["-|-|cpu"],
    ),
    (
        r#"SHOW TAG VALUES FROM "cpu" WITH KEY = "host" WHERE time > now() - 1h"#,
        StatementKind::ShowTagValues,
        None,
        None,
        &["-|-|cpu"],
    ),
    (r#"SHOW RETENTION POLICIES on "telegraf""#, StatementKind::ShowRetentionPolicies, Some("telegraf"), None, &[]),
    ("SHOW MEASUREMENTS WITH MEASUREMENT =~ /cpu/ LIMIT 100", StatementKind::ShowMeasurements, None, None, &[]),
    (r#"SHOW FIELD KEYS FROM "cpu""#, StatementKind::ShowFieldKeys, None, None, &["-|-|cpu"]),
    // --- subqueries ---
    (
        "SELECT max(m) FROM (SELECT mean(v) AS m FROM (SELECT * FROM db..cpu) GROUP BY time(1m))",
        StatementKind::Select,
        Some("db"),
        None,
        &["db|-|cpu"],
    ),
    (
        "SELECT * FROM (SELECT * FROM a), (SELECT * FROM db..b)",
        StatementKind::Select,
        Some("db"),
        None,
        &["-|-|a", "db|-|b"],
    ),
    ("SELECT * FROM (SELECT * FROM cpu, /^m/)", StatementKind::Select, None, None, &["-|-|cpu", "-|-|/^m/"]),
    ("SELECT * FROM ( select * from cpu limit 1 ) limit 2", StatementKind::Select, None, None, &["-|-|cpu"]),
    // --- comments ---
    ("-- leading comment\nSELECT * FROM cpu", StatementKind::Select, None, None, &["-|-|cpu"]),
    ("SELECT /* FROM x */ * FROM cpu", StatementKind::Select, None, None, &["-|-|cpu"]),
    ("SELECT * FROM cpu -- FROM mem", StatementKind::Select, None, None, &["-|-|cpu"]),
    ("SELECT * FROM /* multi\nline */ cpu", StatementKind::Select, None, None, &["-|-|cpu"]),
    // --- SHOW ---
    ("SHOW MEASUREMENTS", StatementKind::ShowMeasurements, None, None, &[]),
    ("show measurements on db", StatementKind::ShowMeasurements, Some("db"), None, &[]),
    (
        "SHOW MEASUREMENTS ON db WITH MEASUREMENT = cpu WHERE host = 'a' LIMIT 5 OFFSET 1",
        StatementKind::ShowMeasurements,
        Some("db"),
        None,
        &[],
    ),
    ("SHOW SERIES", StatementKind::ShowSeries, None, None, &[]),
    ("SHOW SERIES FROM cpu WHERE host = 'a'", StatementKind::ShowSeries, None, None, &["-|-|cpu"]),
    ("SHOW TAG KEYS", StatementKind::ShowTagKeys, None, None, &[]),
    ("SHOW TAG KEYS FROM cpu, mem", StatementKind::ShowTagKeys, None, None, &["-|-|cpu", "-|-|mem"]),
    ("SHOW TAG VALUES WITH KEY = host", StatementKind::ShowTagValues, None, None, &[]),
    (
        r#"SHOW TAG VALUES ON db FROM /cpu/ WITH KEY IN ("host", "region")"#,
        StatementKind::ShowTagValues,
        Some("db"),
        None,
        &["-|-|/cpu/"],
    ),
    ("SHOW TAG VALUES WITH KEY =~ /ho.*/", StatementKind::ShowTagValues, None, None, &[]),
    ("SHOW FIELD KEYS", StatementKind::ShowFieldKeys, None, None, &[]),
    ("SHOW FIELD KEYS ON db", StatementKind::ShowFieldKeys, Some("db"), None, &[]),
    ("SHOW RETENTION POLICIES", StatementKind::ShowRetentionPolicies, None, None, &[]),
    ("SHOW DATABASES", StatementKind::ShowDatabases, None, None, &[]),
    ("show databases;", StatementKind::ShowDatabases, None, None, &[]),
    ("SHOW STATS", StatementKind::ShowStats, None, None, &[]),
    ("SHOW STATS FOR 'indexes'", StatementKind::ShowStats, None, None, &[]),
    ("SHOW SERIES CARDINALITY", StatementKind::ShowSeriesCardinality, None, None, &[]),
    ("SHOW SERIES EXACT CARDINALITY ON db", StatementKind::ShowSeriesCardinality, Some("db"), None, &[]),
    ("SHOW SERIES CARDINALITY FROM cpu", StatementKind::ShowSeriesCardinality, None, None, &["-|-|cpu"]),
    ("SHOW MEASUREMENT CARDINALITY", StatementKind::ShowMeasurementCardinality, None, None, &[]),
    ("SHOW MEASUREMENT EXACT CARDINALITY", StatementKind::ShowMeasurementCardinality, None, None, &[]),
    ("SHOW TAG KEY CARDINALITY", StatementKind::ShowTagKeyCardinality, None, None, &[]),
    ("SHOW TAG KEY EXACT CARDINALITY FROM cpu", StatementKind::ShowTagKeyCardinality, None, None, &["-|-|cpu"]),
    ("SHOW TAG VALUES CARDINALITY WITH KEY = host", StatementKind::ShowTagValuesCardinality, None, None, &[]),
    (
        "SHOW TAG VALUES EXACT CARDINALITY ON db WITH KEY = host",
        StatementKind::ShowTagValuesCardinality,
        Some("db"),
        None,
        &[],
    ),
    ("SHOW FIELD KEY CARDINALITY", StatementKind::ShowFieldKeyCardinality, None, None, &[]),
    ("SHOW FIELD KEY EXACT CARDINALITY ON db", StatementKind::ShowFieldKeyCardinality, Some("db"), None, &[]),
    // --- DDL ---
    ("CREATE DATABASE foo", StatementKind::CreateDatabase, Some("foo"), None, &[]),
    (r#"create database "my db""#, StatementKind::CreateDatabase, Some("my db"), None, &[]),
    (
        r#"CREATE DATABASE foo WITH DURATION 1d REPLICATION 1 SHARD DURATION 1h NAME "one_day""#,
        StatementKind::CreateDatabase,
        Some("foo"),
        Some("one_day"),
        &[],
    ),
    ("DROP DATABASE foo", StatementKind::DropDatabase, Some("foo"), None, &[]),
    (
        r#"CREATE RETENTION POLICY "one_day" ON "db" DURATION 1d REPLICATION 1 DEFAULT"#,
        StatementKind::CreateRetentionPolicy,
        Some("db"),
        Some("one_day"),
        &[],
    ),
    (
        "ALTER RETENTION POLICY autogen ON db DURATION 30d SHARD DURATION 1d",
        StatementKind::AlterRetentionPolicy,
        Some("db"),
        Some("autogen"),
        &[],
    ),
    ("drop retention policy rp on db", StatementKind::DropRetentionPolicy, Some("db"), Some("rp"), &[]),
    // --- DELETE / DROP ---
    ("DELETE FROM cpu", StatementKind::DeleteFrom, None, None, &["-|-|cpu"]),
    (
        r#"DELETE FROM "cpu" WHERE time < '2020-01-01T00:00:00Z'"#,
        StatementKind::DeleteFrom,
        None,
        None,
        &["-|-|cpu"],
    ),
    ("DELETE WHERE host = 'a'", StatementKind::DeleteFrom, None, None, &[]),
    ("DELETE FROM /^cpu/ WHERE host = 'a'", StatementKind::DeleteFrom, None, None, &["-|-|/^cpu/"]),
    ("DELETE FROM cpu, mem", StatementKind::DeleteFrom, None, None, &["-|-|cpu", "-|-|mem"]),
    ("DROP SERIES FROM cpu WHERE host = 'a'", StatementKind::DropSeries, None, None, &["-|-|cpu"]),
    ("DROP SERIES WHERE host = 'a'", StatementKind::DropSeries, None, None, &[]),
    ("DROP SERIES FROM cpu, /^m/", StatementKind::DropSeries, None, None, &["-|-|cpu", "-|-|/^m/"]),
    (r#"DROP MEASUREMENT "cpu load""#, StatementKind::DropMeasurement, None, None, &["-|-|cpu load"]),
];

#[test]
fn ok_cases_classify_as_expected() {
    for (q, kind, db, rp, leaves) in OK_CASES {
        let stmt = classify(q).unwrap_or_else(|e| panic!("{q}: {e}"));
        assert_eq!(stmt.kind, *kind, "{q}");
        assert_eq!(stmt.database.as_deref(), *db, "{q}: database");
        assert_eq!(
            stmt.retention_policy.as_deref(),
            *rp,
            "{q}: retention policy"
        );
        let got: Vec<String> = stmt.leaf_sources().into_iter().map(render).collect();
        assert_eq!(got, *leaves, "{q}: sources");
    }
}

/// Expected error, by variant (and statement name / byte offset).
#[derive(Debug)]
enum Expect {
    Empty,
    Forbidden(&'static str),
    Unsupported,
    Syntax(usize),
}

const ERR_CASES: &[(&str, Expect)] = &[
    ("", Expect::Empty),
    ("   \n\t ", Expect::Empty),
    (";", Expect::Empty),
    ("-- only a comment", Expect::Empty),
    ("/* nothing */ ;", Expect::Empty),
    // forbidden
    ("GRANT ALL ON db TO bob", Expect::Forbidden("GRANT")),
    ("revoke read on db from bob", Expect::Forbidden("REVOKE")),
    ("SELECT * INTO cpu_copy FROM cpu", Expect::Forbidden("SELECT INTO")),
    (
        r#"SELECT mean(v) INTO "db"."rp".:MEASUREMENT FROM /.*/ GROUP BY time(1h)"#,
        Expect::Forbidden("SELECT INTO"),
    ),
    ("SELECT * FROM (SELECT * INTO x FROM y)", Expect::Forbidden("SELECT INTO")),
    ("CREATE USER bob WITH PASSWORD 'x'", Expect::Forbidden("CREATE USER")),
    ("DROP USER bob", Expect::Forbidden("DROP USER")),
    ("SET PASSWORD FOR bob = 'x'", Expect::Forbidden("SET PASSWORD")),
    ("SHOW USERS", Expect::Forbidden("SHOW USERS")),
    ("SHOW GRANTS FOR bob", Expect::Forbidden("SHOW GRANTS")),
    ("KILL QUERY 36", Expect::Forbidden("KILL QUERY")),
    ("SHOW QUERIES", Expect::Forbidden("SHOW QUERIES")),
    (
        "CREATE CONTINUOUS QUERY cq ON db BEGIN SELECT mean(v) INTO m FROM cpu GROUP BY time(1h) END",
        Expect::Forbidden("CREATE CONTINUOUS QUERY"),
    ),
    ("DROP CONTINUOUS QUERY cq ON db", Expect::Forbidden("DROP CONTINUOUS QUERY")),
    ("SHOW CONTINUOUS QUERIES", Expect::Forbidden("SHOW CONTINUOUS QUERIES")),
    (
        "CREATE SUBSCRIPTION s ON db.rp DESTINATIONS ALL 'udp://h:1'",
        Expect::Forbidden("CREATE SUBSCRIPTION"),
    ),
    ("DROP SUBSCRIPTION s ON db.rp", Expect::Forbidden("DROP SUBSCRIPTION")),
    ("SHOW SUBSCRIPTIONS", Expect::Forbidden("SHOW SUBSCRIPTIONS")),
    ("SHOW SHARDS", Expect::Forbidden("SHOW SHARDS")),
    ("SHOW SHARD GROUPS", Expect::Forbidden("SHOW SHARD GROUPS")),
    ("DROP SHARD 1", Expect::Forbidden("DROP SHARD")),
    ("SHOW DIAGNOSTICS", Expect::Forbidden("SHOW DIAGNOSTICS")),
    ("EXPLAIN SELECT * INTO b FROM cpu", Expect::Forbidden("SELECT INTO")),
    ("EXPLAIN ANALYZE SELECT * INTO b FROM cpu", Expect::Forbidden("SELECT INTO")),
    // unsupported
    ("SELECT 1", Expect::Unsupported),
    ("SELECT now()", Expect::Unsupported),
    ("SELECT", Expect::Unsupported),
    ("FOO BAR", Expect::Unsupported),
    ("INSERT cpu value=1", Expect::Unsupported),
    ("SHOW FOO", Expect::Unsupported),
    ("SHOW", Expect::Unsupported),
    ("CREATE TABLE x", Expect::Unsupported),
    ("ALTER USER bob", Expect::Unsupported),
    ("SET x = 1", Expect::Unsupported),
    ("123", Expect::Unsupported),
    (r#""select" * from cpu"#, Expect::Unsupported),
    // syntax (byte offset of the error)
    // influxd: `found SHOW, expected SELECT at line 1, char 9`
    ("EXPLAIN SHOW MEASUREMENTS", Expect::Syntax(8)),
    ("EXPLAIN EXPLAIN SELECT * FROM cpu", Expect::Syntax(8)),
    ("EXPLAIN ANALYZE", Expect::Syntax(15)),
    ("SELECT * FROM 'cpu", Expect::Syntax(14)),
    (r#"SELECT * FROM "cpu"#, Expect::Syntax(14)),
    ("SELECT * FROM /cpu", Expect::Syntax(14)),
    ("SELECT * FROM cpu /* open", Expect::Syntax(18)),
    (r#"SELECT * FROM "c\qpu""#, Expect::Syntax(16)),
    ("SELECT * FROM 'a\nb'", Expect::Syntax(14)),
    ("SELECT mean(v FROM cpu", Expect::Syntax(11)),
    ("SELECT * FROM cpu WHERE (a = 1))", Expect::Syntax(31)),
    ("SELECT * FROM", Expect::Syntax(13)),
    ("SELECT * FROM db.", Expect::Syntax(17)),
    ("SELECT * FROM .cpu", Expect::Syntax(14)),
    ("SELECT * FROM a.b.c.d", Expect::Syntax(19)),
    ("SELECT * FROM a...b", Expect::Syntax(17)),
    ("SELECT * FROM where", Expect::Syntax(14)),
    (r#"SELECT * FROM cpu "mem""#, Expect::Syntax(18)),
    ("SELECT * FROM cpu,", Expect::Syntax(18)),
    ("SELECT * FROM (SHOW DATABASES)", Expect::Syntax(15)),
    ("SELECT * FROM cpu; SELECT * FROM mem", Expect::Syntax(17)),
    ("DELETE", Expect::Syntax(6)),
    ("DELETE FROM cpu LIMIT 1", Expect::Syntax(16)),
    ("DELETE FROM (SELECT * FROM cpu)", Expect::Syntax(12)),
    ("DROP SERIES", Expect::Syntax(11)),
    ("DROP MEASUREMENT", Expect::Syntax(16)),
    ("DROP DATABASE", Expect::Syntax(13)),
    ("SHOW TAG VALUES FROM cpu", Expect::Syntax(24)),
    ("SHOW TAG VALUES WITH KEY host", Expect::Syntax(25)),
    ("SHOW TAG FOO", Expect::Syntax(9)),
    ("SHOW SERIES EXACT", Expect::Syntax(17)),
    ("SHOW RETENTION POLICIES ON", Expect::Syntax(26)),
    ("CREATE RETENTION POLICY rp DURATION 1d", Expect::Syntax(27)),
    ("SHOW MEASUREMENTS LIMIT x", Expect::Syntax(24)),
    ("SHOW MEASUREMENTS LIMIT 1.5", Expect::Syntax(24)),
    ("SHOW MEASUREMENTS OFFSET 99999999999999999999999", Expect::Syntax(25)),
];

#[test]
fn error_cases_fail_as_expected() {
    for (q, expect) in ERR_CASES {
        let err = classify(q).expect_err(q);
        match (expect, &err) {
            (Expect::Empty, Error::Empty) | (Expect::Unsupported, Error::Unsupported(_)) => {}
            (Expect::Forbidden(name), Error::Forbidden { statement, .. }) => {
                assert_eq!(statement, name, "{q}");
            }
            (Expect::Syntax(offset), Error::Syntax { position, .. }) => {
                assert_eq!(position.offset, *offset, "{q}: {err}");
            }
            _ => panic!("{q}: expected {expect:?}, got {err:?}"),
        }
    }
}

#[test]
fn forbidden_messages_name_the_statement() {
    let err = classify("GRANT ALL TO bob").unwrap_err();
    assert_eq!(
        err.to_string(),
        "GRANT is not supported through influx-proxy: \
         user management must be done on each InfluxDB backend"
    );
    let err = classify("SELECT * INTO b FROM a").unwrap_err();
    assert!(err.to_string().starts_with("SELECT INTO is not supported"));
}

#[test]
fn unsupported_messages_are_clear() {
    let err = classify("SELECT 1").unwrap_err();
    assert!(err.to_string().contains("SELECT without FROM"), "{err}");
    let err = classify("INSERT cpu value=1").unwrap_err();
    assert!(
        err.to_string()
            .starts_with("unsupported statement `INSERT cpu value`"),
        "{err}"
    );
    assert_eq!(classify("").unwrap_err().to_string(), "empty query");
}

#[test]
fn syntax_errors_report_line_and_char() {
    let err = classify("SELECT *\nFROM \"cpu").unwrap_err();
    assert_eq!(
        err,
        Error::Syntax {
            message: "unterminated quoted identifier".into(),
            position: Position {
                offset: 14,
                line: 2,
                column: 6
            },
        }
    );
    assert_eq!(
        err.to_string(),
        "error parsing query: unterminated quoted identifier at line 2, char 6"
    );
    let err = classify("SELECT * FROM where").unwrap_err();
    assert!(
        err.to_string().contains("keywords must be double-quoted"),
        "{err}"
    );
    let err = classify("SELECT * FROM").unwrap_err();
    assert_eq!(
        err.to_string(),
        "error parsing query: found EOF, expected measurement or regex at line 1, char 14"
    );
    // Columns count characters, not bytes.
    let err = classify("SELECT \"é\" FROM 'x").unwrap_err();
    assert!(err.to_string().ends_with("line 1, char 17"), "{err}");
}

#[test]
fn explain_classifies_as_the_select_it_explains() {
    let plain = classify("EXPLAIN SELECT * FROM db.rp.cpu WHERE host = 'a'").unwrap();
    assert_eq!(plain.kind, StatementKind::Select);
    assert_eq!(plain.explain, Some(Explain::Plan));
    assert_eq!(plain.database.as_deref(), Some("db"));
    assert_eq!(render(&plain.sources[0]), "db|rp|cpu");
    let analyze = classify("explain analyze select count(v) from /^c/ SLIMIT 2").unwrap();
    assert_eq!(analyze.explain, Some(Explain::Analyze));
    assert_eq!(render(&analyze.sources[0]), "-|-|/^c/");
    assert_eq!(analyze.slimit, Some(2));
    assert_eq!(classify("SELECT * FROM cpu").unwrap().explain, None);
    let err = classify("EXPLAIN SHOW MEASUREMENTS").unwrap_err();
    assert_eq!(
        err.to_string(),
        "error parsing query: found SHOW, expected SELECT at line 1, char 9"
    );
}

#[test]
fn subquery_sources_are_statements() {
    let stmt = classify("SELECT * FROM (SELECT a FROM db.rp.cpu WHERE x = 1), mem").unwrap();
    assert_eq!(stmt.sources.len(), 2);
    let Source::Subquery(inner) = &stmt.sources[0] else {
        panic!("expected a subquery: {:?}", stmt.sources[0]);
    };
    assert_eq!(inner.kind, StatementKind::Select);
    assert_eq!(inner.database.as_deref(), Some("db"));
    assert_eq!(render(&inner.sources[0]), "db|rp|cpu");
    assert_eq!(render(&stmt.sources[1]), "-|-|mem");
    assert_eq!(stmt.sources[1].database(), None);
}

#[test]
fn deep_nesting_is_an_error_not_a_crash() {
    let depth = 200;
    let q = format!(
        "SELECT * FROM {}cpu{}",
        "(SELECT * FROM ".repeat(depth),
        ")".repeat(depth)
    );
    assert!(matches!(classify(&q), Err(Error::Syntax { .. })));
    let q = format!(
        "SELECT * FROM cpu WHERE {}a{}",
        "(".repeat(100_000),
        ")".repeat(100_000)
    );
    assert_eq!(classify(&q).unwrap().sources.len(), 1);
    // 30 levels are fine.
    let q = format!(
        "SELECT * FROM {}cpu{}",
        "(SELECT * FROM ".repeat(30),
        ")".repeat(30)
    );
    assert_eq!(render(classify(&q).unwrap().leaf_sources()[0]), "-|-|cpu");
}

#[test]
fn show_details_are_recorded() {
    let stmt = classify("SHOW MEASUREMENTS WITH MEASUREMENT =~ /cpu\\/.*/ WHERE a = 'b'").unwrap();
    assert_eq!(stmt.with_measurement.as_deref(), Some("=~ /cpu\\/.*/"));
    let stmt = classify(r#"SHOW MEASUREMENTS with measurement = "cpu""#).unwrap();
    assert_eq!(stmt.with_measurement.as_deref(), Some(r#"= "cpu""#));
    let stmt = classify(r#"SHOW TAG VALUES WITH KEY IN ("a", "b") LIMIT 3"#).unwrap();
    assert_eq!(stmt.with_key.as_deref(), Some(r#"IN ("a", "b")"#));
    assert_eq!(stmt.limit, Some(3));
    let stmt = classify(r#"SHOW TAG VALUES FROM "cpu" WITH KEY = "host""#).unwrap();
    assert_eq!(stmt.with_key.as_deref(), Some(r#"= "host""#));
    assert!(!classify("SHOW SERIES CARDINALITY").unwrap().exact);
    assert!(classify("SHOW SERIES EXACT CARDINALITY").unwrap().exact);
    assert!(
        classify("SHOW TAG VALUES EXACT CARDINALITY WITH KEY = a")
            .unwrap()
            .exact
    );
}

#[test]
fn spans_and_database_lists() {
    let q = "SELECT * FROM cpu, \"m,em\" WHERE x = 1";
    let stmt = classify(q).unwrap();
    assert_eq!(&q[stmt.sources_span.clone().unwrap()], "cpu, \"m,em\"");
    let q = "DROP MEASUREMENT \"a b\"";
    assert_eq!(&q[classify(q).unwrap().sources_span.unwrap()], "\"a b\"");
    let stmt = classify("SELECT * FROM (SELECT * FROM db1..a), db2..b, db1..c").unwrap();
    assert_eq!(stmt.databases(), ["db1", "db2"]);
    let stmt = classify("SHOW TAG KEYS ON x FROM db2..cpu").unwrap();
    assert_eq!(stmt.database.as_deref(), Some("x"));
    assert_eq!(stmt.databases(), ["x", "db2"]);
    assert!(classify("SHOW DATABASES").unwrap().databases().is_empty());
    assert_eq!(StatementKind::ShowTagValues.to_string(), "SHOW TAG VALUES");
}

type SplitCase = (&'static str, &'static [&'static str]);

const SPLIT_CASES: &[SplitCase] = &[
    ("SELECT * FROM cpu; SELECT * FROM mem", &["SELECT * FROM cpu", "SELECT * FROM mem"]),
    ("SELECT * FROM cpu;", &["SELECT * FROM cpu"]),
    (";; SHOW DATABASES ;;", &["SHOW DATABASES"]),
    (r#"SELECT * FROM "a;b"; SHOW DATABASES"#, &[r#"SELECT * FROM "a;b""#, "SHOW DATABASES"]),
    (r#"SELECT * FROM "a\";b";SHOW DATABASES"#, &[r#"SELECT * FROM "a\";b""#, "SHOW DATABASES"]),
    (
        "SELECT * FROM cpu WHERE host = 'a;b'; SHOW DATABASES",
        &["SELECT * FROM cpu WHERE host = 'a;b'", "SHOW DATABASES"],
    ),
    (
        r"SELECT * FROM cpu WHERE host = 'it\'s;'; SHOW DATABASES",
        &[r"SELECT * FROM cpu WHERE host = 'it\'s;'", "SHOW DATABASES"],
    ),
    ("SELECT * FROM /a;b/; SHOW DATABASES", &["SELECT * FROM /a;b/", "SHOW DATABASES"]),
    (r"SELECT * FROM /a\/;b/; SHOW DATABASES", &[r"SELECT * FROM /a\/;b/", "SHOW DATABASES"]),
    (
        "SELECT * FROM cpu -- a;b\n; SHOW DATABASES",
        &["SELECT * FROM cpu -- a;b", "SHOW DATABASES"],
    ),
    (
        "SELECT * FROM cpu /* ; */; SHOW DATABASES",
        &["SELECT * FROM cpu /* ; */", "SHOW DATABASES"],
    ),
    (
        "SELECT a / 2 FROM cpu; SELECT b / 3 FROM mem",
        &["SELECT a / 2 FROM cpu", "SELECT b / 3 FROM mem"],
    ),
    (
        "SELECT mean(\"v\") FROM \"cpu\" WHERE time > now() - 1h GROUP BY time(1m);SELECT max(\"v\") FROM \"mem\" WHERE time > now() - 1h",
        &[
            "SELECT mean(\"v\") FROM \"cpu\" WHERE time > now() - 1h GROUP BY time(1m)",
            "SELECT max(\"v\") FROM \"mem\" WHERE time > now() - 1h",
        ],
    ),
    ("SHOW DATABASES;\nSHOW MEASUREMENTS ON db\n", &["SHOW DATABASES", "SHOW MEASUREMENTS ON db"]),
    ("SELECT * FROM cpu; -- trailing comment", &["SELECT * FROM cpu"]),
    // influxd ends a `--` comment at CR (read as a newline) and at NUL (end of input), then
    // scans on: the `;` after either splits.
    (
        "SELECT * FROM m -- x\r; DROP DATABASE y",
        &["SELECT * FROM m -- x", "DROP DATABASE y"],
    ),
    (
        "SHOW DATABASES -- x\0; DROP DATABASE y",
        &["SHOW DATABASES -- x\0", "DROP DATABASE y"],
    ),
];

#[test]
fn split_cases_split_as_expected() {
    for (q, want) in SPLIT_CASES {
        let got = split_statements(q).unwrap_or_else(|e| panic!("{q}: {e}"));
        assert_eq!(got, *want, "{q}");
        for stmt in got {
            classify(stmt).unwrap_or_else(|e| panic!("{stmt}: {e}"));
        }
    }
}

#[test]
fn split_errors() {
    assert_eq!(split_statements(""), Err(Error::Empty));
    assert_eq!(split_statements(" ; ;-- x"), Err(Error::Empty));
    let Err(Error::Syntax { position, .. }) = split_statements("SELECT 'a; SELECT b") else {
        panic!("expected a syntax error");
    };
    assert_eq!(position.offset, 7);
    let Err(Error::Syntax { position, .. }) = split_statements("SHOW DATABASES; SELECT * FROM /x;")
    else {
        panic!("expected a syntax error");
    };
    assert_eq!(position.offset, 30);
}

type LimitCase = (&'static str, Option<u64>, Option<u64>, &'static str);

/// (statement, limit, offset, text without LIMIT/OFFSET).
const LIMIT_CASES: &[LimitCase] = &[
    (
        "SHOW MEASUREMENTS LIMIT 10 OFFSET 5",
        Some(10),
        Some(5),
        "SHOW MEASUREMENTS",
    ),
    (
        "SHOW MEASUREMENTS ON db WITH MEASUREMENT =~ /cpu/ LIMIT 100",
        Some(100),
        None,
        "SHOW MEASUREMENTS ON db WITH MEASUREMENT =~ /cpu/",
    ),
    (
        "show tag values with key = \"host\" where a = 'limit 5' limit 3",
        Some(3),
        None,
        "show tag values with key = \"host\" where a = 'limit 5'",
    ),
    (
        "SHOW TAG KEYS LIMIT 10 OFFSET 2 SLIMIT 3 SOFFSET 1",
        Some(10),
        Some(2),
        "SHOW TAG KEYS SLIMIT 3 SOFFSET 1",
    ),
    ("SHOW SERIES OFFSET 4", None, Some(4), "SHOW SERIES"),
    ("SHOW SERIES LIMIT 0", None, None, "SHOW SERIES"),
    (
        r#"SHOW FIELD KEYS FROM "limit" LIMIT 2"#,
        Some(2),
        None,
        r#"SHOW FIELD KEYS FROM "limit""#,
    ),
    (
        "SELECT * FROM (SELECT * FROM cpu LIMIT 5) LIMIT 2",
        Some(2),
        None,
        "SELECT * FROM (SELECT * FROM cpu LIMIT 5)",
    ),
    (
        "SHOW MEASUREMENTS\nLIMIT 10\nOFFSET 20",
        Some(10),
        Some(20),
        "SHOW MEASUREMENTS",
    ),
    ("SHOW MEASUREMENTS", None, None, "SHOW MEASUREMENTS"),
    ("SHOW SERIES LIMIT 10;", Some(10), None, "SHOW SERIES;"),
    (
        "SHOW TAG VALUES WITH KEY = host LIMIT 10 -- note",
        Some(10),
        None,
        "SHOW TAG VALUES WITH KEY = host -- note",
    ),
    (
        r#"SHOW MEASUREMENTS WHERE "offset" = 'x' OFFSET 1"#,
        None,
        Some(1),
        r#"SHOW MEASUREMENTS WHERE "offset" = 'x'"#,
    ),
    (
        "SHOW MEASUREMENTS OFFSET 3 LIMIT 7",
        Some(7),
        Some(3),
        "SHOW MEASUREMENTS",
    ),
    (
        "show measurements limit 1 limit 2",
        Some(2),
        None,
        "show measurements",
    ),
];

#[test]
fn limit_offset_cases() {
    for (q, limit, offset, stripped) in LIMIT_CASES {
        let stmt = classify(q).unwrap_or_else(|e| panic!("{q}: {e}"));
        assert_eq!(stmt.limit, *limit, "{q}: limit");
        assert_eq!(stmt.offset, *offset, "{q}: offset");
        let got = without_limit_offset(q);
        assert_eq!(got, *stripped, "{q}");
        let again = classify(&got).unwrap_or_else(|e| panic!("{got}: {e}"));
        assert_eq!((again.limit, again.offset), (None, None), "{got}");
        assert_eq!(again.slimit, stmt.slimit, "{got}");
        assert_eq!(without_limit_offset(&got), got, "idempotent: {q}");
    }
    let stmt = classify("SHOW TAG KEYS SLIMIT 3 SOFFSET 1").unwrap();
    assert_eq!((stmt.slimit, stmt.soffset), (Some(3), Some(1)));
    assert_eq!(
        without_limit_offset("SELECT 'unterminated"),
        "SELECT 'unterminated"
    );
}

#[test]
fn quoting() {
    assert_eq!(quote_ident("cpu"), r#""cpu""#);
    assert_eq!(quote_ident(r#"a "b" \c"#), r#""a \"b\" \\c""#);
    assert_eq!(quote_ident("x\ny"), r#""x\ny""#);
    assert_eq!(quote_string("it's"), r"'it\'s'");
    assert_eq!(quote_string(r"a\b"), r"'a\\b'");
    assert_eq!(quote_regex("a/b\\d"), r"/a\/b\d/");
    for name in [
        "cpu.load",
        "a, b",
        "x\"y",
        "back\\",
        "line\nbreak",
        "ünï",
        "",
    ] {
        let q = format!("SELECT * FROM {}.{}", quote_ident("rp"), quote_ident(name));
        let stmt = classify(&q).unwrap_or_else(|e| panic!("{q}: {e}"));
        assert_eq!(render(&stmt.sources[0]), format!("-|rp|{name}"), "{q}");
    }
    // A regex read back from a statement comes out of quote_regex as the same pattern.
    for pattern in [r"a\/b", r"a\\/", r"^x\.y$", "/", r"\d+/\w"] {
        let q = format!(
            "SHOW MEASUREMENTS WITH MEASUREMENT =~ {}",
            quote_regex(pattern)
        );
        let tokens = tokenize(&q).unwrap_or_else(|e| panic!("{q}: {e}"));
        let regex = tokens.iter().find(|t| t.kind == TokenKind::Regex).unwrap();
        assert_eq!((regex.value.as_str(), regex.end), (pattern, q.len()), "{q}");
    }
}

#[test]
fn creating_a_name_influxd_refuses_is_refused_with_its_words() {
    let refusal = |q: &str| creation_refusal(&classify(q).unwrap());
    assert_eq!(
        refusal(r#"CREATE DATABASE "a\\b""#),
        Some(NameError::Invalid)
    );
    assert_eq!(
        refusal(r#"CREATE DATABASE "a\nb""#),
        Some(NameError::Invalid)
    );
    assert_eq!(
        refusal(r#"CREATE DATABASE ok WITH DURATION 1h NAME "r/x""#),
        Some(NameError::Invalid)
    );
    assert_eq!(
        refusal(&format!(
            "CREATE DATABASE {}",
            quote_ident(&"b".repeat(256))
        )),
        Some(NameError::TooLong)
    );
    assert_eq!(
        refusal(r#"CREATE RETENTION POLICY "." ON db DURATION 1h REPLICATION 1"#),
        Some(NameError::Invalid)
    );
    assert_eq!(refusal(r#"CREATE DATABASE "x\";DROP DATABASE y;--""#), None);
    // Only creations: influxd drops or alters what does not exist without a name check.
    assert_eq!(refusal(r#"DROP DATABASE "a\\b""#), None);
    assert_eq!(Error::from(NameError::Invalid).to_string(), "invalid name");
}

/// Valid statements the mutation property starts from.
const CORPUS: &[&str] = &[
    r#"SELECT mean("value") FROM "cpu" WHERE ("host" =~ /^a$/) AND time >= now() - 6h GROUP BY time(1m), "host" fill(null)"#,
    r#"SHOW TAG VALUES FROM "cpu" WITH KEY = "host" WHERE time > now() - 1h"#,
    r#"SELECT SUM("max") FROM (SELECT MAX("water_level") FROM db."auto.gen"."h2o_feet" GROUP BY "location")"#,
    "SELECT * FROM db.rp./^cpu\\/x/, mem; SHOW DATABASES -- c\n/* d */",
    "SHOW MEASUREMENTS ON db WITH MEASUREMENT =~ /cpu/ LIMIT 10 OFFSET 5",
    "DELETE FROM cpu WHERE time < '2020-01-01'",
    r#"CREATE RETENTION POLICY "one_day" ON "db" DURATION 1d REPLICATION 1 DEFAULT"#,
    "SHOW TAG VALUES EXACT CARDINALITY ON db FROM cpu WITH KEY IN (\"a\", \"b\")",
];

fn mutate(base: &str, edits: &[(usize, u8, String)]) -> String {
    let mut chars: Vec<char> = base.chars().collect();
    for (at, op, text) in edits {
        let at = at % (chars.len() + 1);
        match op % 3 {
            0 => {
                let end = (at + text.len() % 5 + 1).min(chars.len());
                chars.drain(at..end);
            }
            1 => {
                chars.splice(at..at, text.chars());
            }
            _ => chars.truncate(at),
        }
    }
    chars.into_iter().collect()
}

/// Every function returns (never panics) and error positions are in bounds.
fn exercise(q: &str) {
    let check = |err: &Error, len: usize| {
        if let Error::Syntax { position, .. } = err {
            assert!(position.offset <= len, "{q:?}: {err}");
            assert!(position.line >= 1 && position.column >= 1);
        }
        assert!(!err.to_string().is_empty());
    };
    match split_statements(q) {
        Ok(stmts) => {
            for stmt in stmts {
                assert!(!stmt.is_empty());
                assert!(q.contains(stmt));
                match classify(stmt) {
                    Ok(s) => {
                        if let Some(span) = s.sources_span {
                            assert!(stmt.get(span).is_some(), "{stmt:?}");
                        }
                    }
                    Err(e) => check(&e, stmt.len()),
                }
                let _ = without_limit_offset(stmt);
            }
        }
        Err(e) => check(&e, q.len()),
    }
    if let Err(e) = classify(q) {
        check(&e, q.len());
    }
    let _ = without_limit_offset(q);
}

#[test]
fn retention_settings_are_read_as_influxql_reads_durations() {
    const H: i64 = 3_600_000_000_000;
    let settings = |q: &str| classify(q).unwrap().retention;
    let s = settings(
        "CREATE RETENTION POLICY rp ON db DURATION 1h30m REPLICATION 1 SHARD DURATION 2w DEFAULT",
    )
    .unwrap();
    assert_eq!(
        (s.duration_ns, s.shard_duration_ns, s.default),
        (Some(H + H / 2), Some(14 * 24 * H), true)
    );
    let s = settings("create database d with duration INF shard duration 100ms name x").unwrap();
    assert_eq!(
        (s.duration_ns, s.shard_duration_ns, s.default),
        (Some(0), Some(100_000_000), false)
    );
    assert_eq!(
        classify("CREATE DATABASE d WITH NAME x")
            .unwrap()
            .retention_policy
            .as_deref(),
        Some("x")
    );
    let s = settings("ALTER RETENTION POLICY rp ON db DEFAULT").unwrap();
    assert_eq!(
        (s.duration_ns, s.shard_duration_ns, s.default),
        (None, None, true)
    );
    assert_eq!(
        settings("CREATE DATABASE d").unwrap(),
        RetentionSettings::default()
    );
    // InfluxQL's ParseDuration: integers with a unit; `u`/`µ` alone are microseconds.
    assert_eq!(
        settings("CREATE DATABASE d WITH DURATION 5u")
            .unwrap()
            .duration_ns,
        Some(5_000)
    );
    for bad in ["1.5h", "5", "1h30", "10us", "3y"] {
        assert_eq!(
            settings(&format!("CREATE DATABASE d WITH DURATION {bad}")),
            None,
            "{bad}"
        );
    }
    assert_eq!(settings("DROP RETENTION POLICY rp ON db"), None);
    assert_eq!(settings("DROP MEASUREMENT m"), None);
}

proptest! {
    #[test]
    fn never_panics_on_arbitrary_text(q in any::<String>()) {
        exercise(&q);
    }

    #[test]
    fn never_panics_on_influxql_like_text(q in r#"[ a-zA-Z0-9_.,;:()'"/\\*=~!<>$\-\n\t]{0,80}"#) {
        exercise(&q);
    }

    #[test]
    fn never_panics_on_mutated_statements(
        base in prop::sample::select(CORPUS),
        edits in prop::collection::vec(
            (any::<usize>(), any::<u8>(), r#"[a-z ;()'"/\\.,*\-é]{0,4}"#),
            1..4,
        ),
    ) {
        exercise(&mutate(base, &edits));
    }

    #[test]
    fn quoted_identifiers_round_trip(
        db in "[^\r]{0,12}",
        name in "[^\r]{0,12}",
    ) {
        let q = format!("SELECT * FROM {}..{} WHERE a = 1", quote_ident(&db), quote_ident(&name));
        let stmt = classify(&q).unwrap();
        let want_db = (!db.is_empty()).then_some(db.as_str());
        prop_assert_eq!(stmt.leaf_sources()[0].database(), want_db);
        let Source::Measurement { name: got, .. } = &stmt.sources[0] else {
            panic!("not a measurement");
        };
        prop_assert_eq!(got, &name);
    }

    #[test]
    fn quoted_strings_round_trip(s in "[^\r]{0,16}") {
        let tokens = tokenize(&quote_string(&s)).unwrap();
        prop_assert_eq!(tokens.len(), 1);
        prop_assert_eq!(tokens[0].kind, TokenKind::Str);
        prop_assert_eq!(&tokens[0].value, &s);
    }

    #[test]
    fn split_recovers_joined_statements(
        picks in prop::collection::vec(prop::sample::select(OK_CASES), 1..5),
    ) {
        let stmts: Vec<&str> = picks
            .iter()
            .map(|case| case.0.trim_end_matches(';'))
            .collect();
        let joined = stmts.join("\n;\n");
        prop_assert_eq!(split_statements(&joined).unwrap(), stmts);
    }

    #[test]
    fn paging_is_stripped_and_reported(limit in 0u64..1000, offset in 0u64..1000) {
        let q = format!("SHOW TAG KEYS ON db FROM cpu LIMIT {limit} OFFSET {offset}");
        let stmt = classify(&q).unwrap();
        prop_assert_eq!(stmt.limit, (limit != 0).then_some(limit));
        prop_assert_eq!(stmt.offset, (offset != 0).then_some(offset));
        prop_assert_eq!(without_limit_offset(&q), "SHOW TAG KEYS ON db FROM cpu");
    }
}
