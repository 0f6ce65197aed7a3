//! Reading InfluxDB's JSON query answers:
//! `{"results":[{"statement_id":0,"series":[{"name","tags","columns","values"}],"error"}]}`.
//!
//! The one place that knows the shape, so the merge of answers, migration,
//! the schema cache and the admin endpoints walk it alike: a missing or
//! mistyped level reads as empty, never as a panic, since a backend (or
//! whatever answers in its place) may send anything.

use serde_json::Value;

/// The statement results of an answer (`results`), empty when there are none.
pub fn results(answer: &Value) -> &[Value] {
    answer
        .get("results")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// The series of one statement result (`series`).
pub fn series(result: &Value) -> &[Value] {
    result
        .get("series")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// The rows of one series (`values`), as sent: each an array of [`cells`].
pub fn rows(series: &Value) -> impl Iterator<Item = &Value> {
    series
        .get("values")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

/// The cells of a row (none when the row is not an array).
pub fn cells(row: &Value) -> &[Value] {
    row.as_array().map_or(&[], Vec::as_slice)
}

/// The error of one statement result, or of the whole answer.
pub fn error(result: &Value) -> Option<&str> {
    result.get("error").and_then(Value::as_str)
}

/// The rows of the first series of the first statement: what a `SHOW`
/// statement without grouping answers.
pub fn show_rows(answer: &Value) -> impl Iterator<Item = &Value> {
    results(answer)
        .first()
        .and_then(|r| series(r).first())
        .into_iter()
        .flat_map(rows)
}

/// The first column of [`show_rows`] as strings: the names `SHOW DATABASES`,
/// `SHOW MEASUREMENTS` or `SHOW TAG KEYS` list.
pub fn first_column(answer: &Value) -> Vec<String> {
    show_rows(answer)
        .filter_map(|r| r.get(0).and_then(Value::as_str).map(str::to_string))
        .collect()
}

/// One row of `SHOW RETENTION POLICIES`
/// (`name, duration, shardGroupDuration, replicaN, default`), durations in
/// Go's `time.Duration` text as influxd prints them (`168h0m0s`), which
/// InfluxQL reads back in `CREATE RETENTION POLICY`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyRow {
    /// The policy's name.
    pub name: String,
    /// How long data is kept; `0s` for ever.
    pub duration: String,
    /// The span of one shard group.
    pub shard_group_duration: String,
    /// Whether writes without `rp` go to this policy.
    pub default: bool,
}

impl PolicyRow {
    /// Reads one row; `None` when it is not shaped as influxd answers.
    pub fn from_row(row: &Value) -> Option<PolicyRow> {
        Some(PolicyRow {
            name: row.get(0)?.as_str()?.to_string(),
            duration: row.get(1)?.as_str()?.to_string(),
            shard_group_duration: row.get(2)?.as_str()?.to_string(),
            default: row.get(4)?.as_bool()?,
        })
    }

    /// Every policy of a `SHOW RETENTION POLICIES` answer.
    pub fn all(answer: &Value) -> Vec<PolicyRow> {
        show_rows(answer).filter_map(PolicyRow::from_row).collect()
    }

    /// [`PolicyRow::duration`] in nanoseconds (0 for ever).
    pub fn duration_ns(&self) -> Option<i64> {
        go_duration_ns(&self.duration)
    }

    /// [`PolicyRow::shard_group_duration`] in nanoseconds.
    pub fn shard_group_ns(&self) -> Option<i64> {
        go_duration_ns(&self.shard_group_duration)
    }
}

/// Parses Go's `time.Duration.String` form as influxd prints durations (`168h0m0s`, `1h0m0s`,
/// `30m0s`, `0s`).
pub fn go_duration_ns(s: &str) -> Option<i64> {
    let mut total: i64 = 0;
    let mut number = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            number.push(c);
            continue;
        }
        let mut unit = c.to_string();
        if c == 'm' && chars.peek() == Some(&'s') {
            unit.push('s');
            chars.next();
        } else if matches!(c, 'u' | 'µ' | 'n') {
            unit.push(chars.next()?);
        }
        let scale: f64 = match unit.as_str() {
            "h" => 3.6e12,
            "m" => 6e10,
            "s" => 1e9,
            "ms" => 1e6,
            "us" | "µs" => 1e3,
            "ns" => 1.0,
            _ => return None,
        };
        let value: f64 = number.parse().ok()?;
        number.clear();
        total = total.checked_add((value * scale) as i64)?;
    }
    number.is_empty().then_some(total)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::json;

    use super::*;

    #[test]
    fn first_column_reads_show_output() {
        let v = json!({"results":[{"statement_id":0,"series":[{"name":"databases","columns":["name"],"values":[["_internal"],["db1"]]}]}]});
        assert_eq!(first_column(&v), vec!["_internal", "db1"]);
    }

    #[test]
    fn anything_else_reads_as_empty() {
        for v in [
            json!(null),
            json!({"results": 3}),
            json!({"results":[{"series":[{"values":"x"}]}]}),
            json!({"results":[{"series":[{"values":[1, [2]]}]}]}),
        ] {
            assert!(first_column(&v).is_empty(), "{v}");
        }
        assert_eq!(error(&json!({"error": "boom"})), Some("boom"));
    }

    #[test]
    fn policies_read_as_influxd_prints_them() {
        let v = json!({"results":[{"series":[{"columns":["name","duration","shardGroupDuration","replicaN","default"],
            "values":[["autogen","0s","168h0m0s",1,true],["week","168h0m0s","24h0m0s",1,false],["bad"]]}]}]});
        let rps = PolicyRow::all(&v);
        assert_eq!(rps.len(), 2);
        assert_eq!(rps[0].duration_ns(), Some(0));
        assert_eq!(rps[1].shard_group_ns(), Some(24 * 3_600_000_000_000));
        assert!(rps[0].default && !rps[1].default);
    }

    #[test]
    fn go_durations_parse_as_influxd_prints_them() {
        assert_eq!(go_duration_ns("168h0m0s"), Some(168 * 3_600_000_000_000));
        assert_eq!(go_duration_ns("1h0m0s"), Some(3_600_000_000_000));
        assert_eq!(go_duration_ns("30m0s"), Some(1_800_000_000_000));
        assert_eq!(go_duration_ns("0s"), Some(0));
        assert_eq!(go_duration_ns("1x"), None);
    }
}
