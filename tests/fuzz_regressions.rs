//! Replays the fuzzing regression inputs in `tests/fuzz_regressions/<target>/`
//! through the same checks the libFuzzer targets in `fuzz/` run, so every crash
//! ever found (and a handful of hostile seeds) stays covered by a plain
//! `cargo test`, without nightly features or libFuzzer.
//!
//! This file is also the fuzz targets' check library: `fuzz/src/lib.rs`
//! includes it with `#[path]`, so the two can never drift apart. Keep it to
//! `std`, `serde_json` and the public API of `influx_proxy`.
//!
//! Every check accepts `Ok` or a documented error from the code under test; a
//! panic (failed assertion included) is a bug.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use influx_proxy::line_protocol::{self, Precision, Reason};
use influx_proxy::query::merge::{self, Merge};
use influx_proxy::wal::record::{self, Record};
use influx_proxy::{cipher, influxql};
use serde_json::Value;

// ---------------------------------------------------------------------------------------------
// line_protocol
// ---------------------------------------------------------------------------------------------

/// Every request precision.
const PRECISIONS: [Precision; 6] = [
    Precision::Nanoseconds,
    Precision::Microseconds,
    Precision::Milliseconds,
    Precision::Seconds,
    Precision::Minutes,
    Precision::Hours,
];

/// Receive times used for lines without a timestamp: the epoch, just before it (rounding
/// toward the past), a realistic clock and one in 2100.
const NOWS: [i64; 4] = [0, -1, 1_700_000_000_123_456_789, 4_102_444_800_987_654_321];

/// `lines`, `parse` and `normalize_into` on arbitrary bytes: a normalised line must parse
/// again with the same measurement and the expected nanosecond timestamp, and a batch of
/// normalised lines must split back into exactly those lines.
pub fn check_line_protocol(data: &[u8]) {
    // The whole input as one line, newlines and all: must not panic.
    if let Err(e) = line_protocol::parse(data) {
        let _ = e.to_string();
    }
    for (p, precision) in PRECISIONS.into_iter().enumerate() {
        for (n, now) in NOWS.into_iter().enumerate() {
            // The per-line checks run for every combination; the batch check only once per
            // precision (it is the same splitter every time).
            let check_batch = n == p % NOWS.len();
            check_line_protocol_with(data, precision, now, check_batch);
        }
    }
}

fn check_line_protocol_with(data: &[u8], precision: Precision, now: i64, check_batch: bool) {
    let mut batch = Vec::new();
    let mut normalized: Vec<Vec<u8>> = Vec::new();
    for line in line_protocol::lines(data) {
        assert!(!line.is_empty(), "lines() yielded an empty line");
        assert_ne!(line[0], b'#', "lines() yielded a comment");
        let parsed = match line_protocol::parse(line) {
            Ok(parsed) => parsed,
            Err(e) => {
                let _ = e.to_string();
                continue;
            }
        };
        let mut out = Vec::new();
        if let Err(e) = line_protocol::normalize_into(line, &parsed, precision, now, &mut out) {
            assert!(
                matches!(e.reason(), Reason::TimeOutsideRange),
                "normalize_into failed with {e} on {line:?}"
            );
            assert!(parsed.timestamp.is_some(), "time outside range without one");
            continue;
        }
        assert_eq!(
            out.last(),
            Some(&b'\n'),
            "normalised line lacks its newline"
        );
        let body = &out[..out.len() - 1];
        let again = match line_protocol::parse(body) {
            Ok(again) => again,
            Err(e) => panic!(
                "normalised line does not parse again ({e}): {:?} -> {:?} ({precision:?}, now {now})",
                String::from_utf8_lossy(line),
                String::from_utf8_lossy(body),
            ),
        };
        assert_eq!(again.measurement, parsed.measurement, "measurement changed");
        let unit = precision.nanos();
        let expected = match parsed.timestamp {
            Some(ts) => ts * unit,
            None => now - now.rem_euclid(unit),
        };
        assert_eq!(
            again.timestamp,
            Some(expected),
            "wrong timestamp after normalising {:?} ({precision:?}, now {now})",
            String::from_utf8_lossy(line),
        );
        if check_batch {
            batch.extend_from_slice(&out);
            normalized.push(body.to_vec());
        }
    }
    if check_batch {
        // What the WAL stores and a backend receives: the normalised lines, newline-joined.
        let split: Vec<&[u8]> = line_protocol::lines(&batch).collect();
        assert_eq!(
            split.len(),
            normalized.len(),
            "a batch of normalised lines splits differently: {:?}",
            String::from_utf8_lossy(&batch),
        );
        for (got, want) in split.iter().zip(&normalized) {
            assert_eq!(
                got, want,
                "a normalised line changed when the batch was split"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// influxql
// ---------------------------------------------------------------------------------------------

/// `split_statements`, `classify` and `without_limit_offset` on arbitrary text: spans and
/// error positions stay in bounds and on char boundaries, and stripping LIMIT/OFFSET from a
/// statement that classifies leaves one of the same kind without them.
pub fn check_influxql(data: &[u8]) {
    let Ok(q) = std::str::from_utf8(data) else {
        return;
    };
    // The whole text as one statement (an inner `;` must be an error, not a panic).
    check_statement(q);
    match influxql::split_statements(q) {
        Ok(statements) => {
            assert!(!statements.is_empty(), "split_statements gave Ok(vec![])");
            let range = q.as_ptr() as usize..=q.as_ptr() as usize + q.len();
            for stmt in statements {
                assert!(
                    !stmt.is_empty(),
                    "split_statements yielded an empty statement"
                );
                assert_eq!(stmt, stmt.trim(), "split_statements yielded untrimmed text");
                let start = stmt.as_ptr() as usize;
                assert!(
                    range.contains(&start) && range.contains(&(start + stmt.len())),
                    "statement is not a slice of the query"
                );
                check_statement(stmt);
            }
        }
        Err(e) => check_error(q, &e),
    }
}

fn check_statement(stmt: &str) {
    let stripped = influxql::without_limit_offset(stmt);
    match influxql::classify(stmt) {
        Ok(classified) => {
            check_spans(stmt, &classified);
            let _ = classified.databases();
            let _ = classified.leaf_sources();
            let _ = classified.kind.to_string();
            // The classifier only tokenises the clauses after FROM, so it accepts text
            // InfluxDB rejects (`LIMIT 1-2`); stripping may then leave something it refuses
            // too (`FROM cpu-2`). Whatever still classifies must have lost exactly LIMIT and
            // OFFSET.
            match influxql::classify(&stripped) {
                Ok(again) => {
                    assert_eq!(again.kind, classified.kind, "kind changed: {stripped:?}");
                    assert_eq!(again.limit, None, "LIMIT survived: {stripped:?}");
                    assert_eq!(again.offset, None, "OFFSET survived: {stripped:?}");
                    assert_eq!(again.slimit, classified.slimit, "SLIMIT changed");
                    assert_eq!(again.soffset, classified.soffset, "SOFFSET changed");
                }
                Err(e) => check_error(&stripped, &e),
            }
        }
        Err(e) => {
            check_error(stmt, &e);
            if let Err(e) = influxql::classify(&stripped) {
                check_error(&stripped, &e);
            }
        }
    }
}

/// `sources_span` of the statement and of every subquery (all relative to `text`).
fn check_spans(text: &str, stmt: &influxql::Statement) {
    if let Some(span) = &stmt.sources_span {
        assert!(
            text.get(span.clone()).is_some(),
            "sources_span {span:?} is out of bounds or off a char boundary in {text:?}"
        );
    }
    for source in &stmt.sources {
        let _ = (source.database(), source.retention_policy());
        if let influxql::Source::Subquery(sub) = source {
            check_spans(text, sub);
        }
    }
}

fn check_error(text: &str, e: &influxql::Error) {
    let _ = e.to_string();
    if let influxql::Error::Syntax { position, .. } = e {
        assert!(
            position.offset <= text.len() && text.is_char_boundary(position.offset),
            "error position {position:?} is not in {text:?}"
        );
        assert!(position.line >= 1 && position.column >= 1, "{position:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// wal_record
// ---------------------------------------------------------------------------------------------

/// `decode_record` / `decode_dead_letter` on arbitrary bytes; whatever decodes re-encodes to a
/// value that decodes to the same thing. Keys are parsed too.
pub fn check_wal_record(data: &[u8]) {
    match record::decode_record(data) {
        Ok(decoded) => {
            let _ = decoded.points();
            let bytes = record::encode_record(&decoded);
            match record::decode_record(&bytes) {
                Ok(again) => assert_eq!(again, decoded, "record did not round-trip"),
                Err(e) => panic!("re-encoded record does not decode: {e}"),
            }
            if let Record::Points { lines, .. } = decoded {
                // Replayed lines go through the splitter again.
                let _ = line_protocol::lines(lines).count();
            }
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
    match record::decode_dead_letter(data) {
        Ok(dead) => {
            let bytes = record::encode_dead_letter(&dead);
            match record::decode_dead_letter(&bytes) {
                Ok(again) => assert_eq!(again, dead, "dead letter did not round-trip"),
                Err(e) => panic!("re-encoded dead letter does not decode: {e}"),
            }
            if let Err(e) = record::decode_record(dead.value) {
                let _ = e.to_string();
            }
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
    if let Some((prefix, backend, seq)) = record::parse_key(data) {
        assert_eq!(record::key(prefix, backend, seq).as_slice(), data);
    }
    if let Some(name) = record::parse_meta_key(data) {
        assert_eq!(record::meta_key(name), data);
    }
}

// ---------------------------------------------------------------------------------------------
// cipher
// ---------------------------------------------------------------------------------------------

/// `decrypt` of arbitrary text, and `encrypt` -> `decrypt` of the input with NULs stripped from
/// both ends (the one documented loss).
pub fn check_cipher(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    match cipher::decrypt(&text) {
        Ok(plain) => {
            assert!(
                !plain.starts_with('\0') && !plain.ends_with('\0'),
                "decrypt kept an edge NUL"
            );
            round_trip(&plain);
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
    if let Err(e) = cipher::decrypt_bytes(&text) {
        let _ = e.to_string();
    }
    round_trip(text.trim_matches('\0'));
}

fn round_trip(plain: &str) {
    let encrypted = cipher::encrypt(plain);
    assert!(
        encrypted
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'!'),
        "ciphertext outside the alphabet: {encrypted:?}"
    );
    assert_eq!(
        encrypted.len(),
        (plain.len().div_ceil(16) * 16 * 4).div_ceil(3),
        "ciphertext length"
    );
    assert_eq!(
        cipher::decrypt(&encrypted).as_deref(),
        Ok(plain),
        "encrypt/decrypt did not round-trip"
    );
}

// ---------------------------------------------------------------------------------------------
// merge
// ---------------------------------------------------------------------------------------------

/// Every merge strategy.
const MERGES: [Merge; 5] = [
    Merge::Values,
    Merge::Series,
    Merge::FirstSeen,
    Merge::Concat,
    Merge::Sum,
];

/// (limit, offset) pairs, extremes included.
const WINDOWS: [(Option<u64>, Option<u64>); 4] = [
    (None, None),
    (Some(2), Some(1)),
    (Some(0), Some(0)),
    (Some(u64::MAX), Some(u64::MAX)),
];

/// `merge` over the backend answers in a JSON document (an array of result objects, or one
/// result object), for every strategy and window, then `to_csv`.
pub fn check_merge(data: &[u8]) {
    let Ok(doc) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let results = match doc {
        Value::Array(items) => items,
        other => vec![other],
    };
    let _ = merge::results_of(&serde_json::json!({ "results": results.clone() }));
    let _ = merge::to_csv(&results);
    let errored = results.iter().any(|r| r.get("error").is_some());
    for (i, how) in MERGES.into_iter().enumerate() {
        for (limit, offset) in WINDOWS {
            let id = if i % 2 == 0 { i } else { usize::MAX };
            let merged = merge::merge(&results, how, id, limit, offset);
            assert_eq!(merged["statement_id"].as_u64(), Some(id as u64));
            assert_eq!(merged.get("error").is_some(), errored, "error not kept");
            if let Some(limit) =
                limit.filter(|&l| l > 0 && matches!(how, Merge::Values | Merge::Series))
            {
                for series in merged["series"].as_array().into_iter().flatten() {
                    let rows = series["values"].as_array().map_or(0, Vec::len);
                    assert!(rows as u64 <= limit, "{rows} rows despite LIMIT {limit}");
                }
            }
            if how == Merge::Sum && !errored {
                check_sum(&results, &merged);
            }
            let _ = merge::to_csv(&[merge::with_statement_id(merged, 0)]);
        }
    }
}

/// A cardinality sum is the exact total of the first cells; a total too large for i64 must
/// not come back wrapped around (with the wrong sign).
fn check_sum(results: &[Value], merged: &Value) {
    let Some(got) = merged.get("series").map(|s| &s[0]["values"][0][0]) else {
        return;
    };
    // At most one i64 per input byte: an i128 cannot overflow here.
    let exact: i128 = results
        .iter()
        .flat_map(|r| {
            r.get("series")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
        })
        .flat_map(|s| {
            s.get("values")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
        })
        .filter_map(|row| row.get(0).and_then(Value::as_i64))
        .map(i128::from)
        .sum();
    match i64::try_from(exact) {
        Ok(total) => assert_eq!(got.as_i64(), Some(total), "wrong cardinality sum"),
        Err(_) => {
            if let Some(got) = got.as_f64() {
                assert!(
                    got.is_sign_negative() == (exact < 0),
                    "cardinality sum wrapped around: {got} for an exact total of {exact}"
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Replay
// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod replay {
    use std::panic::{catch_unwind, AssertUnwindSafe};
    use std::path::PathBuf;

    /// Runs `check` on every file of `tests/fuzz_regressions/<target>/`.
    ///
    /// Files named `open-*` reproduce a bug in `src/` that is reported but not fixed yet: their
    /// check must still fail, so the suite stays green meanwhile and says when the fix lands
    /// (then rename the file `crash-*`, which must pass like the `seed-*` files).
    fn replay(target: &str, check: fn(&[u8])) {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fuzz_regressions")
            .join(target);
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.is_file())
            .collect();
        files.sort();
        assert!(
            files.len() >= 3,
            "{}: expected regression inputs",
            dir.display()
        );
        let mut wrong = Vec::new();
        for path in &files {
            let data = std::fs::read(path).unwrap();
            let failed = catch_unwind(AssertUnwindSafe(|| check(&data))).is_err();
            let open = path
                .file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| name.starts_with("open-"));
            match (open, failed) {
                (false, true) => wrong.push(format!("{}: check failed", path.display())),
                (true, false) => wrong.push(format!(
                    "{}: passes now; rename it from open-* to crash-*",
                    path.display()
                )),
                _ => {}
            }
        }
        assert!(wrong.is_empty(), "{target}: {wrong:#?}");
    }

    #[test]
    fn line_protocol_regressions() {
        replay("line_protocol", super::check_line_protocol);
    }

    #[test]
    fn influxql_regressions() {
        replay("influxql", super::check_influxql);
    }

    #[test]
    fn wal_record_regressions() {
        replay("wal_record", super::check_wal_record);
    }

    #[test]
    fn cipher_regressions() {
        replay("cipher", super::check_cipher);
    }

    #[test]
    fn merge_regressions() {
        replay("merge", super::check_merge);
    }
}
