//! How a proxy's `/query` answer compares with the single influxd's: the same bytes, the same
//! JSON values, the same series and rows in another order, floats a rounding step off, or
//! different (with the shape of each, so the table says how).

use std::collections::BTreeMap;

use serde_json::Value;

/// A JSON value compared as values: an integral float is its integer (`1.0` is `1`), objects
/// ignore key order.
#[derive(Debug, Clone, PartialEq)]
enum Json {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    List(Vec<Json>),
    Object(BTreeMap<String, Json>),
}

impl Json {
    fn of(v: &Value) -> Json {
        match v {
            Value::Null => Json::Null,
            Value::Bool(b) => Json::Bool(*b),
            Value::Number(n) => {
                if let Some(i) = n.as_i64() {
                    Json::Int(i128::from(i))
                } else if let Some(u) = n.as_u64() {
                    Json::Int(i128::from(u))
                } else {
                    let f = n.as_f64().unwrap_or(f64::NAN);
                    if f.fract() == 0.0 && f.abs() < 1e30 {
                        Json::Int(f as i128)
                    } else {
                        Json::Float(f)
                    }
                }
            }
            Value::String(s) => Json::Str(s.clone()),
            Value::Array(items) => Json::List(items.iter().map(Json::of).collect()),
            Value::Object(map) => {
                Json::Object(map.iter().map(|(k, v)| (k.clone(), Json::of(v))).collect())
            }
        }
    }

    /// A text that orders values (rows sort by it) and is equal only for equal values.
    fn key(&self) -> String {
        match self {
            Json::Null => "null".to_owned(),
            Json::Bool(b) => b.to_string(),
            Json::Int(i) => i.to_string(),
            Json::Float(f) => format!("{f:?}"),
            Json::Str(s) => Value::String(s.clone()).to_string(),
            Json::List(items) => {
                let items: Vec<String> = items.iter().map(Json::key).collect();
                format!("[{}]", items.join(", "))
            }
            Json::Object(map) => {
                let items: Vec<String> = map
                    .iter()
                    .map(|(k, v)| format!("{}: {}", Value::String(k.clone()), v.key()))
                    .collect();
                format!("{{{}}}", items.join(", "))
            }
        }
    }

    fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Object(map) => map.get(key),
            _ => None,
        }
    }

    fn list(&self) -> &[Json] {
        match self {
            Json::List(items) => items,
            _ => &[],
        }
    }

    fn list_mut(&mut self, key: &str) -> Option<&mut Vec<Json>> {
        match self {
            Json::Object(map) => match map.get_mut(key) {
                Some(Json::List(items)) => Some(items),
                _ => None,
            },
            _ => None,
        }
    }
}

/// The statement results of an answer.
fn results(answer: &Json) -> &[Json] {
    answer.get("results").map_or(&[][..], Json::list)
}

/// Sorts every series' rows, and the series of every statement by name and tags.
fn sort_all(answer: &mut Json) {
    let Some(results) = answer.list_mut("results") else {
        return;
    };
    for result in results {
        let Some(series) = result.list_mut("series") else {
            continue;
        };
        for s in series.iter_mut() {
            if let Some(values) = s.list_mut("values") {
                values.sort_by_cached_key(Json::key);
            }
        }
        series.sort_by_cached_key(|s| {
            Json::List(vec![
                s.get("name").cloned().unwrap_or(Json::Null),
                s.get("tags").cloned().unwrap_or(Json::Null),
            ])
            .key()
        });
    }
}

/// Collects the (direct, other) float pairs where the two differ only in float values; false
/// when they differ otherwise.
fn float_pairs(direct: &Json, other: &Json, out: &mut Vec<(f64, f64)>) -> bool {
    let number = |j: &Json| match j {
        Json::Int(i) => Some(*i as f64),
        Json::Float(f) => Some(*f),
        _ => None,
    };
    match (direct, other) {
        (Json::Float(_), _) | (_, Json::Float(_)) => match (number(direct), number(other)) {
            (Some(a), Some(b)) => {
                if a != b {
                    out.push((a, b));
                }
                true
            }
            _ => false,
        },
        (Json::List(a), Json::List(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| float_pairs(x, y, out))
        }
        (Json::Object(a), Json::Object(b)) => {
            a.len() == b.len()
                && a.iter()
                    .all(|(k, x)| b.get(k).is_some_and(|y| float_pairs(x, y, out)))
        }
        _ => direct == other,
    }
}

fn count_floats(j: &Json) -> usize {
    match j {
        Json::Float(_) => 1,
        Json::List(items) => items.iter().map(count_floats).sum(),
        Json::Object(map) => map.values().map(count_floats).sum(),
        _ => 0,
    }
}

/// `3 series, 120 rows` and the first error, if any.
fn shape(answer: &Json) -> String {
    let series: Vec<&Json> = results(answer)
        .iter()
        .flat_map(|r| r.get("series").map_or(&[][..], Json::list))
        .collect();
    let rows: usize = series
        .iter()
        .map(|s| s.get("values").map_or(0, |v| v.list().len()))
        .sum();
    let mut errors: Vec<String> = results(answer)
        .iter()
        .filter_map(|r| r.get("error"))
        .chain(answer.get("error"))
        .map(|e| match e {
            Json::Str(s) => s.clone(),
            other => other.key(),
        })
        .collect();
    let text = format!("{} series, {rows} rows", series.len());
    if errors.is_empty() {
        text
    } else {
        format!("{text}; error: {}", errors.swap_remove(0))
    }
}

/// The verdict on `other` (a proxy's answer) against `direct` (the single influxd's).
pub(crate) fn verdict(direct: &[u8], other: &[u8]) -> String {
    if direct == other {
        return "identical".to_owned();
    }
    let parse = |bytes: &[u8]| serde_json::from_slice::<Value>(bytes).map(|v| Json::of(&v));
    let (mut a, mut b) = match (parse(direct), parse(other)) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => return format!("DIFFERENT (not JSON: {e})"),
    };
    if a == b {
        return "same".to_owned();
    }
    sort_all(&mut a);
    sort_all(&mut b);
    if a == b {
        return "same after sorting".to_owned();
    }
    let mut pairs = Vec::new();
    let close = |(p, q): &(f64, f64)| (p - q).abs() <= 1e-12 * p.abs().max(q.abs());
    if float_pairs(&a, &b, &mut pairs) && pairs.iter().all(close) {
        if let Some((d, o)) = pairs.first() {
            return format!(
                "DIFFERENT in the last digits: {} of {} floats (e.g. {o:?}, direct {d:?})",
                pairs.len(),
                count_floats(&a)
            );
        }
    }
    format!("DIFFERENT: {} (direct: {})", shape(&b), shape(&a))
}

/// The error text of an answer (its first `"error":"..."`), if it has one.
pub(crate) fn refusal(answer: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(answer);
    let start = text.find("\"error\":\"")? + "\"error\":\"".len();
    let rest = &text[start..];
    Some(rest[..rest.find('"').unwrap_or(rest.len())].to_owned())
}

/// Whether a verdict counts as the answer influxd gave.
pub(crate) fn is_same(verdict: &str) -> bool {
    verdict == "identical" || verdict.starts_with("same")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(series: &str) -> Vec<u8> {
        format!(r#"{{"results":[{{"statement_id":0,"series":[{series}]}}]}}"#).into_bytes()
    }

    #[test]
    fn the_same_bytes_are_identical_and_the_same_values_same() {
        let a = answer(r#"{"name":"cpu","columns":["time","mean"],"values":[["t1",1.0]]}"#);
        assert_eq!(verdict(&a, &a), "identical");
        let b = br#"{"results":[{"series":[{"values":[["t1",1]],"columns":["time","mean"],"name":"cpu"}],"statement_id":0}]}"#;
        assert_eq!(verdict(&a, b), "same");
        assert!(is_same("same") && is_same("same after sorting") && !is_same("DIFFERENT: x"));
    }

    #[test]
    fn rows_and_series_in_another_order_are_the_same_after_sorting() {
        let a = answer(
            r#"{"name":"cpu","values":[["t1",1.5],["t2",2.5]]},{"name":"mem","tags":{"host":"a"},"values":[["t1",3]]}"#,
        );
        let b = answer(
            r#"{"name":"mem","tags":{"host":"a"},"values":[["t1",3]]},{"name":"cpu","values":[["t2",2.5],["t1",1.5]]}"#,
        );
        assert_eq!(verdict(&a, &b), "same after sorting");
    }

    #[test]
    fn floats_a_rounding_step_off_are_different_in_the_last_digits() {
        let a = answer(r#"{"name":"cpu","values":[["t1",37.18232044198895],["t2",2.5]]}"#);
        let b = answer(r#"{"name":"cpu","values":[["t1",37.182320441988954],["t2",2.5]]}"#);
        assert_eq!(
            verdict(&a, &b),
            "DIFFERENT in the last digits: 1 of 2 floats (e.g. 37.182320441988956, direct 37.18232044198895)"
        );
    }

    #[test]
    fn other_differences_show_both_shapes() {
        let a = answer(
            r#"{"name":"cpu","values":[["t1",1.5],["t2",2.5]]},{"name":"mem","values":[["t1",3]]}"#,
        );
        let b = answer(r#"{"name":"cpu","values":[["t1",1.5],["t2",2.5]]}"#);
        assert_eq!(
            verdict(&a, &b),
            "DIFFERENT: 1 series, 2 rows (direct: 2 series, 3 rows)"
        );
        let e = br#"{"results":[{"statement_id":0,"error":"shard key"}]}"#;
        assert_eq!(
            verdict(&a, e),
            "DIFFERENT: 0 series, 0 rows; error: shard key (direct: 2 series, 3 rows)"
        );
        assert!(verdict(&a, b"<html>").starts_with("DIFFERENT (not JSON: "));
    }

    #[test]
    fn the_refusal_is_the_first_error_text() {
        assert_eq!(
            refusal(br#"{"error":"illegal InfluxQL"}"#).as_deref(),
            Some("illegal InfluxQL")
        );
        assert_eq!(
            refusal(br#"{"results":[{"statement_id":0,"error":"database not found: x"}]}"#)
                .as_deref(),
            Some("database not found: x")
        );
        assert_eq!(refusal(&answer("")), None);
    }
}
