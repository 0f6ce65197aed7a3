//! Flux requests (`POST /api/v2/query`): which database and measurement a query reads, so it
//! can be sent to the backend that owns them. The proxy runs no Flux itself; it only needs
//! the `from(bucket: ...)` and the `r._measurement == "..."` filter, found as the Go proxy
//! finds them (spec §8.9), minus its panics and with the bucket's database used for
//! placement (the Go proxy hashed `db/rp` whole, so `db/rp` buckets went to the wrong backend).

use serde_json::Value;

/// Why the database or measurement of a Flux request cannot be told.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The body is not the JSON a Flux request is.
    #[error("failed parsing request body as JSON: {0}")]
    Json(String),
    /// A JSON body with neither `query` nor `spec`.
    #[error("request body requires either spec or query")]
    Empty,
    /// A query type other than Flux (InfluxQL goes to `/query`).
    #[error("unknown query type: {0}")]
    UnknownType(String),
    /// No `from(bucket: "...")`.
    #[error("can't get bucket")]
    NoBucket,
    /// A `from(` with no closing parenthesis.
    #[error("illegal flux query")]
    Illegal,
    /// No `_measurement == "..."` filter.
    #[error("can't get measurement")]
    NoMeasurement,
    /// More than one measurement filter: the data may live on several backends.
    #[error("illegal multi measurements")]
    MultipleMeasurements,
    /// A measurement filter with another operator than `==` (a regex, `!=`).
    #[error("measurement must use ==")]
    NotEquality,
}

/// What a Flux request reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadScope {
    /// The bucket as given: `db` or `db/rp`.
    pub bucket: String,
    /// The measurement of the `_measurement` filter.
    pub measurement: String,
}

impl ReadScope {
    /// The database part of the bucket: what placement, `db_list` and writes use.
    pub fn db(&self) -> &str {
        self.bucket.split('/').next().unwrap_or_default()
    }
}

/// The target of a request body: Flux text (`application/vnd.flux`) or the JSON form
/// `{"query": "...", "type": "flux"}` / `{"spec": {...}}`.
pub fn target(body: &[u8], flux_text: bool) -> Result<ReadScope, Error> {
    if flux_text {
        return of_query(&String::from_utf8_lossy(body));
    }
    let request: Value = serde_json::from_slice(body).map_err(|e| Error::Json(e.to_string()))?;
    let kind = request.get("type").and_then(Value::as_str).unwrap_or("");
    if !kind.is_empty() && kind != "flux" {
        return Err(Error::UnknownType(kind.to_string()));
    }
    match request.get("query").and_then(Value::as_str) {
        Some(q) if !q.is_empty() => of_query(q),
        _ => match request.get("spec") {
            Some(spec) if !spec.is_null() => of_spec(spec),
            _ => Err(Error::Empty),
        },
    }
}

/// The target of Flux text.
pub fn of_query(q: &str) -> Result<ReadScope, Error> {
    Ok(ReadScope {
        bucket: bucket(q)?,
        measurement: measurement(q)?,
    })
}

/// The `bucket:` argument of the first `from(...)` call.
fn bucket(q: &str) -> Result<String, Error> {
    let args = from_arguments(q)?;
    for arg in args.split(',') {
        let Some((name, value)) = arg.split_once(':') else {
            continue;
        };
        if name.trim() != "bucket" {
            continue;
        }
        let value = value.trim();
        let quoted = |quote: char| value.strip_prefix(quote)?.strip_suffix(quote);
        return match quoted('"').or_else(|| quoted('\'')) {
            Some(name) if !name.is_empty() => Ok(name.to_string()),
            _ => Err(Error::NoBucket),
        };
    }
    Err(Error::NoBucket)
}

/// The text between `from(` and the first `)` after it. A `from` inside a longer name
/// (`fromage`, `my_from`) is not the call.
fn from_arguments(q: &str) -> Result<&str, Error> {
    let is_ident = |c: char| c.is_alphanumeric() || c == '_';
    let mut at = 0;
    while let Some(i) = q[at..].find("from") {
        let start = at + i;
        let after = &q[start + 4..];
        at = start + 4;
        if q[..start].chars().next_back().is_some_and(is_ident) {
            continue;
        }
        let Some(args) = after.trim_start().strip_prefix('(') else {
            continue;
        };
        return match args.find(')') {
            Some(end) => Ok(&args[..end]),
            None => Err(Error::Illegal),
        };
    }
    Err(Error::NoBucket)
}

/// The one measurement compared with `==`: `r._measurement == "m"` (or, when there is none
/// of those, `r["_measurement"] == "m"`).
fn measurement(q: &str) -> Result<String, Error> {
    for pattern in ["._measurement", "[\"_measurement\"]"] {
        let mut hits = q.match_indices(pattern);
        let Some((i, _)) = hits.next() else {
            continue;
        };
        if hits.next().is_some() {
            return Err(Error::MultipleMeasurements);
        }
        return compared_string(&q[i + pattern.len()..]);
    }
    Err(Error::NoMeasurement)
}

/// `== "text"` at the start of `rest` (after spaces): the text, `\"` and `\\` unescaped.
fn compared_string(rest: &str) -> Result<String, Error> {
    let rest = rest.trim_start();
    let Some(rest) = rest.strip_prefix("==") else {
        return Err(Error::NotEquality);
    };
    let Some(quoted) = rest.trim_start().strip_prefix('"') else {
        return Err(Error::NoMeasurement);
    };
    let mut out = String::new();
    let mut chars = quoted.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' if !out.is_empty() => return Ok(out),
            '"' => return Err(Error::NoMeasurement),
            '\\' => match chars.next() {
                Some(next) => out.push(next),
                None => break,
            },
            c => out.push(c),
        }
    }
    Err(Error::NoMeasurement)
}

/// The target of a query spec: the `influxDBFrom` operation's bucket and the `_measurement`
/// comparison inside the `filter` operations.
fn of_spec(spec: &Value) -> Result<ReadScope, Error> {
    let operations = spec
        .get("operations")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let of_kind = |kind: &'static str| {
        operations
            .iter()
            .filter(move |op| op.get("kind").and_then(Value::as_str) == Some(kind))
    };
    let bucket = of_kind("influxDBFrom")
        .find_map(|op| op.pointer("/spec/bucket").and_then(Value::as_str))
        .filter(|b| !b.is_empty())
        .ok_or(Error::NoBucket)?
        .to_string();
    let mut found = Vec::new();
    for op in of_kind("filter") {
        measurement_comparisons(op, &mut found);
    }
    let measurement = match found.as_slice() {
        [] => return Err(Error::NoMeasurement),
        [one] => one.clone()?,
        _ => return Err(Error::MultipleMeasurements),
    };
    Ok(ReadScope {
        bucket,
        measurement,
    })
}

/// Every binary expression below `v` whose left side is the `_measurement` property: its
/// string when the operator is `==`, else [`Error::NotEquality`].
fn measurement_comparisons(v: &Value, out: &mut Vec<Result<String, Error>>) {
    match v {
        Value::Object(map) => {
            let left = map.get("left").and_then(|l| l.get("property"));
            let is_measurement = match left {
                Some(Value::String(p)) => p == "_measurement",
                Some(p) => p.get("value").and_then(Value::as_str) == Some("_measurement"),
                None => false,
            };
            if is_measurement {
                let value = v.pointer("/right/value").and_then(Value::as_str);
                out.push(match (map.get("operator").and_then(Value::as_str), value) {
                    (Some("=="), Some(name)) if !name.is_empty() => Ok(name.to_string()),
                    (Some("=="), _) => Err(Error::NoMeasurement),
                    _ => Err(Error::NotEquality),
                });
                return;
            }
            map.values().for_each(|v| measurement_comparisons(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| measurement_comparisons(v, out)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(bucket: &str, measurement: &str) -> Result<ReadScope, Error> {
        Ok(ReadScope {
            bucket: bucket.into(),
            measurement: measurement.into(),
        })
    }

    #[test]
    fn bucket_and_measurement_of_the_usual_queries() {
        let q = r#"from(bucket: "telegraf/autogen")
            |> range(start: -1h)
            |> filter(fn: (r) => r._measurement == "cpu" and r._field == "usage")"#;
        assert_eq!(of_query(q), t("telegraf/autogen", "cpu"));
        assert_eq!(of_query(q).unwrap().db(), "telegraf");
        let q = r#"from(bucket:'db1') |> range(start: 0) |> filter(fn: (r) => r["_measurement"] == "m\"q")"#;
        assert_eq!(of_query(q), t("db1", "m\"q"));
        let q = r#"from( bucket : "db", host: "x" ) |> filter(fn: (r) => r._measurement=="m")"#;
        assert_eq!(of_query(q), t("db", "m"));
        // `from` inside a name is not the call.
        let q = r#"fromage = 1 from(bucket: "db") |> filter(fn: (r) => r._measurement == "m")"#;
        assert_eq!(of_query(q), t("db", "m"));
    }

    #[test]
    fn what_cannot_be_routed_is_refused_with_the_go_proxy_texts() {
        let m = r#" |> filter(fn: (r) => r._measurement == "m")"#;
        assert_eq!(of_query(&format!("buckets(){m}")), Err(Error::NoBucket));
        assert_eq!(
            of_query(&format!("from(bucketID: \"0a\"){m}")),
            Err(Error::NoBucket)
        );
        assert_eq!(
            of_query(&format!("from(bucket: x){m}")),
            Err(Error::NoBucket)
        );
        assert_eq!(of_query("from(bucket: \"db\""), Err(Error::Illegal));
        let from = r#"from(bucket: "db") |> range(start: 0)"#;
        assert_eq!(of_query(from), Err(Error::NoMeasurement));
        let two = format!(
            r#"{from} |> filter(fn: (r) => r._measurement == "a" or r._measurement == "b")"#
        );
        assert_eq!(of_query(&two), Err(Error::MultipleMeasurements));
        let regex = format!(r#"{from} |> filter(fn: (r) => r._measurement =~ /cpu/)"#);
        assert_eq!(of_query(&regex), Err(Error::NotEquality));
        // The Go proxy panicked on these.
        for tail in [
            "r._measurement ==",
            "r._measurement == \"",
            "r._measurement == \"\"",
            "r._measurement",
        ] {
            let q = format!("{from} |> filter(fn: (r) => {tail}");
            assert!(of_query(&q).is_err(), "{q}");
        }
    }

    #[test]
    fn json_bodies_carry_the_query_or_a_spec() {
        let q = r#"from(bucket: \"db\") |> filter(fn: (r) => r._measurement == \"m\")"#;
        let body = format!(r#"{{"query": "{q}", "type": "flux", "dialect": {{"header": true}}}}"#);
        assert_eq!(target(body.as_bytes(), false), t("db", "m"));
        let text = r#"from(bucket: "db") |> filter(fn: (r) => r._measurement == "m")"#;
        assert_eq!(target(text.as_bytes(), true), t("db", "m"));
        assert!(matches!(target(b"{", false), Err(Error::Json(_))));
        assert_eq!(target(b"{}", false), Err(Error::Empty));
        let influxql = format!(r#"{{"query": "{q}", "type": "influxql"}}"#);
        assert_eq!(
            target(influxql.as_bytes(), false),
            Err(Error::UnknownType("influxql".into()))
        );
        let spec = r#"{"spec": {"operations": [
            {"kind": "influxDBFrom", "id": "from0", "spec": {"bucket": "db/rp"}},
            {"kind": "range", "id": "range1", "spec": {}},
            {"kind": "filter", "id": "filter2", "spec": {"fn": {"fn": {"block": {"body": {
                "type": "BinaryExpression", "operator": "==",
                "left": {"type": "MemberExpression", "property": "_measurement"},
                "right": {"type": "StringLiteral", "value": "cpu"}}}}}}}]}}"#;
        assert_eq!(target(spec.as_bytes(), false), t("db/rp", "cpu"));
        let regex = spec.replace(r#""operator": "==""#, r#""operator": "=~""#);
        assert_eq!(target(regex.as_bytes(), false), Err(Error::NotEquality));
        let no_from = spec.replace("influxDBFrom", "buckets");
        assert_eq!(target(no_from.as_bytes(), false), Err(Error::NoBucket));
    }
}
