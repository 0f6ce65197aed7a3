//! Merging the answers of several backends into the answer one InfluxDB
//! holding all the data would give. Pure functions over InfluxDB's JSON
//! result objects (`{"statement_id":0,"series":[...]}`), no I/O.
//!
//! Within one circle every measurement lives on exactly one backend, so
//! answers about different measurements are disjoint and merging is a
//! union; answers from several circles may overlap, so every merge also
//! removes duplicates.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashSet};

use serde_json::{json, Map, Value};

use crate::answer;

/// How the rows of several answers combine, by statement family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Merge {
    /// One series whose rows are keyed by their first column (SHOW
    /// MEASUREMENTS, SHOW DATABASES, SHOW SERIES): union, sorted.
    Values,
    /// Series keyed by name and tags, rows unioned and sorted (SHOW TAG
    /// KEYS, SHOW FIELD KEYS, SHOW TAG VALUES, per-measurement cardinality).
    Series,
    /// Rows keyed by their first column, first answer's order kept (SHOW
    /// RETENTION POLICIES: every backend has the same policies).
    FirstSeen,
    /// Every series of every answer, sorted by name and tags (SELECT over
    /// measurements split across backends, SHOW STATS).
    Concat,
    /// Numeric counts added up (SHOW SERIES/MEASUREMENT CARDINALITY over
    /// one circle, whose backends hold disjoint measurements).
    Sum,
}

/// Merges result objects (one per backend) into one result object with
/// the given statement id. The first error wins; LIMIT/OFFSET apply after
/// the merge (per series for [`Merge::Series`]).
pub fn merge(
    results: &[Value],
    how: Merge,
    statement_id: usize,
    limit: Option<u64>,
    offset: Option<u64>,
) -> Value {
    if let Some(error) = results.iter().find_map(|r| r.get("error")) {
        return json!({ "statement_id": statement_id, "error": error });
    }
    let series: Vec<&Value> = results.iter().flat_map(answer::series).collect();
    let merged = match how {
        Merge::Values => values(&series, limit, offset),
        Merge::Series => by_series(&series, limit, offset),
        Merge::FirstSeen => first_seen(&series),
        Merge::Concat => concat(&series),
        Merge::Sum => sum(&series),
    };
    let mut out = Map::new();
    out.insert("statement_id".into(), json!(statement_id));
    if !merged.is_empty() {
        out.insert("series".into(), Value::Array(merged));
    }
    Value::Object(out)
}

fn first_cell(row: &Value) -> &Value {
    row.get(0).unwrap_or(&Value::Null)
}

/// Orders JSON cells as InfluxDB sorts them: strings bytewise, numbers
/// numerically, null first.
fn cmp_cells(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::String(x), Value::String(y)) => x.as_bytes().cmp(y.as_bytes()),
        (Value::Number(x), Value::Number(y)) => x
            .as_f64()
            .partial_cmp(&y.as_f64())
            .unwrap_or(Ordering::Equal),
        (Value::Null, Value::Null) => Ordering::Equal,
        (Value::Null, _) => Ordering::Less,
        (_, Value::Null) => Ordering::Greater,
        _ => a.to_string().cmp(&b.to_string()),
    }
}

fn cmp_rows(a: &Value, b: &Value) -> Ordering {
    let (ea, eb) = (answer::cells(a), answer::cells(b));
    for (x, y) in ea.iter().zip(eb.iter()) {
        let o = cmp_cells(x, y);
        if o != Ordering::Equal {
            return o;
        }
    }
    ea.len().cmp(&eb.len())
}

fn window(mut rows: Vec<Value>, limit: Option<u64>, offset: Option<u64>) -> Vec<Value> {
    let skip = offset.unwrap_or(0) as usize;
    if skip > 0 {
        rows = rows.into_iter().skip(skip).collect();
    }
    if let Some(limit) = limit.filter(|&l| l > 0) {
        rows.truncate(limit as usize);
    }
    rows
}

fn with_rows(template: &Value, rows: Vec<Value>) -> Value {
    let mut s = Map::new();
    for key in ["name", "tags", "columns"] {
        if let Some(v) = template.get(key) {
            s.insert(key.into(), v.clone());
        }
    }
    s.insert("values".into(), Value::Array(rows));
    Value::Object(s)
}

fn values(series: &[&Value], limit: Option<u64>, offset: Option<u64>) -> Vec<Value> {
    let Some(template) = series.first() else {
        return Vec::new();
    };
    let mut seen = HashSet::new();
    let mut all: Vec<Value> = series
        .iter()
        .flat_map(|s| answer::rows(s))
        .filter(|r| seen.insert(first_cell(r).to_string()))
        .cloned()
        .collect();
    // Series keys come escaped (`host=server\ 03`) but InfluxDB orders
    // them by their unescaped text.
    all.sort_by(|a, b| {
        let (x, y) = (first_cell(a), first_cell(b));
        match (x.as_str(), y.as_str()) {
            (Some(x), Some(y)) => unescaped(x).cmp(&unescaped(y)).then(x.cmp(y)),
            _ => cmp_cells(x, y),
        }
    });
    let all = window(all, limit, offset);
    if all.is_empty() {
        return Vec::new();
    }
    vec![with_rows(template, all)]
}

fn unescaped(s: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'\\' => out.extend(bytes.next()),
            _ => out.push(b),
        }
    }
    out
}

fn series_key(s: &Value) -> (String, String) {
    let name = s
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    // Tags serialise with sorted keys (serde_json maps are ordered), so
    // equal tag sets give equal strings.
    let tags = s.get("tags").map(Value::to_string).unwrap_or_default();
    (name, tags)
}

/// Rows gathered for one series: its first occurrence, its rows, and the
/// rows seen (for de-duplication).
type Group<'a> = (&'a Value, Vec<Value>, HashSet<String>);

fn by_series(series: &[&Value], limit: Option<u64>, offset: Option<u64>) -> Vec<Value> {
    let mut groups: BTreeMap<(String, String), Group<'_>> = BTreeMap::new();
    for s in series {
        let entry = groups
            .entry(series_key(s))
            .or_insert_with(|| (*s, Vec::new(), HashSet::new()));
        for r in answer::rows(s) {
            if entry.2.insert(r.to_string()) {
                entry.1.push(r.clone());
            }
        }
    }
    groups
        .into_values()
        .filter_map(|(template, mut rows, _)| {
            rows.sort_by(cmp_rows);
            let rows = window(rows, limit, offset);
            (!rows.is_empty()).then(|| with_rows(template, rows))
        })
        .collect()
}

fn first_seen(series: &[&Value]) -> Vec<Value> {
    let Some(template) = series.first() else {
        return Vec::new();
    };
    let mut seen = HashSet::new();
    let all: Vec<Value> = series
        .iter()
        .flat_map(|s| answer::rows(s))
        .filter(|r| seen.insert(first_cell(r).to_string()))
        .cloned()
        .collect();
    vec![with_rows(template, all)]
}

fn concat(series: &[&Value]) -> Vec<Value> {
    let mut seen = HashSet::new();
    let mut all: Vec<Value> = series
        .iter()
        .filter(|s| seen.insert(s.to_string()))
        .map(|s| (*s).clone())
        .collect();
    align_tags(&mut all);
    all.sort_by_key(series_key);
    align_columns(&mut all);
    all
}

/// One InfluxDB gives every series of a `GROUP BY *` (or `/regex/`) over several measurements
/// the union of their tag keys, an empty value where a measurement lacks one. A backend knows
/// only its own measurements' keys, and leaves `tags` out when none of them matched; pad every
/// series to the union (nothing to do when no series has tags: an ungrouped statement).
fn align_tags(series: &mut [Value]) {
    let keys: std::collections::BTreeSet<String> = series
        .iter()
        .filter_map(|s| s.get("tags").and_then(Value::as_object))
        .flat_map(|tags| tags.keys().cloned())
        .collect();
    if keys.is_empty() {
        return;
    }
    for s in series.iter_mut().filter_map(Value::as_object_mut) {
        let tags = s.entry("tags").or_insert_with(|| json!({}));
        if let Some(tags) = tags.as_object_mut() {
            for key in &keys {
                tags.entry(key.clone()).or_insert_with(|| json!(""));
            }
        }
    }
}

fn columns(s: &Value) -> Vec<String> {
    s.get("columns")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| c.as_str().map(str::to_string))
        .collect()
}

/// One InfluxDB gives every series of a statement the same columns: for a
/// wildcard over several measurements, `time` and then the sorted union of
/// all their keys. Backends that saw only some of the measurements return
/// fewer columns; widen their rows with nulls to the union.
fn align_columns(series: &mut [Value]) {
    let sets: Vec<Vec<String>> = series.iter().map(columns).collect();
    if sets.windows(2).all(|w| w[0] == w[1]) {
        return;
    }
    let first = sets
        .iter()
        .find_map(|c| c.first().cloned())
        .unwrap_or_default();
    let mut rest: Vec<String> = sets
        .iter()
        .flat_map(|c| c.iter().skip(1).cloned())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    rest.retain(|c| *c != first);
    let mut union = vec![first];
    union.extend(rest);
    for (s, cols) in series.iter_mut().zip(&sets) {
        let index: Vec<Option<usize>> = union
            .iter()
            .map(|u| cols.iter().position(|c| c == u))
            .collect();
        let widened: Vec<Value> = answer::rows(s)
            .map(|r| {
                let cells = answer::cells(r);
                Value::Array(
                    index
                        .iter()
                        .map(|i| i.and_then(|i| cells.get(i)).cloned().unwrap_or(Value::Null))
                        .collect(),
                )
            })
            .collect();
        if let Some(obj) = s.as_object_mut() {
            obj.insert("columns".into(), json!(union));
            obj.insert("values".into(), Value::Array(widened));
        }
    }
}

fn sum(series: &[&Value]) -> Vec<Value> {
    let Some(template) = series.first() else {
        return Vec::new();
    };
    // Summed wide, then clamped: counts from a hostile or broken backend
    // must not overflow, and a representable total stays exact.
    let wide: i128 = series
        .iter()
        .flat_map(|s| answer::rows(s))
        .filter_map(|r| r.get(0).and_then(Value::as_i64))
        .map(i128::from)
        .sum();
    let total = i64::try_from(wide).unwrap_or(if wide < 0 { i64::MIN } else { i64::MAX });
    vec![with_rows(template, vec![json!([total])])]
}

/// The `results` array of a backend's answer, or an error message.
pub fn results_of(body: &Value) -> Result<&Vec<Value>, String> {
    if let Some(e) = body.get("error").and_then(Value::as_str) {
        return Err(e.to_string());
    }
    body.get("results")
        .and_then(Value::as_array)
        .ok_or_else(|| "backend answer has no results".to_string())
}

/// Sets a result object's `statement_id`.
pub fn with_statement_id(mut result: Value, id: usize) -> Value {
    if let Some(obj) = result.as_object_mut() {
        obj.insert("statement_id".into(), json!(id));
    }
    result
}

/// Renders a complete answer as InfluxDB's CSV (`Accept: application/csv`):
/// `name,tags,<columns...>` header per column set, one line per row.
pub fn to_csv(results: &[Value]) -> String {
    let mut out = String::new();
    let mut last_header = String::new();
    for r in results {
        for s in answer::series(r) {
            let columns: Vec<String> = s
                .get("columns")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|c| csv_field(&cell_text(c)))
                .collect();
            let header = format!("name,tags,{}", columns.join(","));
            if header != last_header {
                if !last_header.is_empty() {
                    out.push('\n');
                }
                out.push_str(&header);
                out.push('\n');
                last_header = header;
            }
            let name = csv_field(s.get("name").and_then(Value::as_str).unwrap_or(""));
            let tags = csv_field(&tags_text(s.get("tags")));
            for row in answer::rows(s) {
                let cells: Vec<String> = answer::cells(row)
                    .iter()
                    .map(|c| csv_field(&cell_text(c)))
                    .collect();
                out.push_str(&format!("{name},{tags},{}\n", cells.join(",")));
            }
        }
    }
    out
}

fn tags_text(tags: Option<&Value>) -> String {
    tags.and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

fn cell_text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `s` as one CSV field of an `Accept: application/csv` answer (RFC 4180, as influxd's CSV
/// encoder writes it): quoted when it holds a comma, quote or line break, quotes doubled.
/// Output formatting only; names in InfluxQL statements go through `influxql::quote_ident`.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A merged answer re-encodes the backends' floats: each must come out as the same double
    /// influxd printed (serde_json's default parser was off by one ulp on some, e.g. these from
    /// bench (f)).
    #[test]
    fn floats_survive_the_merge_bit_for_bit() {
        for text in [
            "56.810217203255476",
            "47.497711100349676",
            "96.58320371969593",
        ] {
            let value: Value = serde_json::from_str(text).unwrap();
            assert_eq!(value.to_string(), text);
        }
    }

    fn show(name: &str, col: &str, vals: &[&str]) -> Value {
        json!({"statement_id":0,"series":[{"name":name,"columns":[col],"values":vals.iter().map(|v| json!([v])).collect::<Vec<_>>()}]})
    }

    #[test]
    fn values_union_is_sorted_deduplicated_and_windowed_after_the_merge() {
        let a = show("measurements", "name", &["cpu", "mem"]);
        let b = show("measurements", "name", &["disk", "cpu"]);
        let m = merge(&[a.clone(), b.clone()], Merge::Values, 3, None, None);
        assert_eq!(
            m,
            json!({"statement_id":3,"series":[{"name":"measurements","columns":["name"],"values":[["cpu"],["disk"],["mem"]]}]})
        );
        let w = merge(&[a, b], Merge::Values, 0, Some(1), Some(1));
        assert_eq!(w["series"][0]["values"], json!([["disk"]]));
    }

    #[test]
    fn an_empty_union_has_no_series() {
        let m = merge(&[json!({"statement_id":0})], Merge::Values, 0, None, None);
        assert_eq!(m, json!({"statement_id":0}));
    }

    #[test]
    fn series_union_merges_rows_of_same_named_series() {
        let a = json!({"series":[{"name":"cpu","columns":["tagKey"],"values":[["host"]]}]});
        let b = json!({"series":[{"name":"cpu","columns":["tagKey"],"values":[["region"],["host"]]},{"name":"amem","columns":["tagKey"],"values":[["x"]]}]});
        let m = merge(&[a, b], Merge::Series, 0, None, None);
        assert_eq!(m["series"][0]["name"], "amem");
        assert_eq!(m["series"][1]["values"], json!([["host"], ["region"]]));
    }

    #[test]
    fn the_first_error_wins() {
        let m = merge(
            &[json!({"series":[]}), json!({"error":"boom"})],
            Merge::Values,
            1,
            None,
            None,
        );
        assert_eq!(m, json!({"statement_id":1,"error":"boom"}));
    }

    #[test]
    fn concat_sorts_series_and_drops_duplicates_from_other_circles() {
        let s1 = json!({"name":"b","columns":["time","v"],"values":[[1,2]]});
        let s2 = json!({"name":"a","columns":["time","v"],"values":[[1,3]]});
        let m = merge(
            &[
                json!({"series":[s1.clone()]}),
                json!({"series":[s2.clone(), s1]}),
            ],
            Merge::Concat,
            0,
            None,
            None,
        );
        assert_eq!(m["series"].as_array().unwrap().len(), 2);
        assert_eq!(m["series"][0]["name"], "a");
    }

    #[test]
    fn concat_widens_series_to_the_union_of_columns() {
        let a = json!({"series":[{"name":"a","columns":["time","x"],"values":[[0,1]]}]});
        let b = json!({"series":[{"name":"b","columns":["time","w","y"],"values":[[0,2,3]]}]});
        let m = merge(&[a, b], Merge::Concat, 0, None, None);
        assert_eq!(m["series"][0]["columns"], json!(["time", "w", "x", "y"]));
        assert_eq!(m["series"][0]["values"], json!([[0, null, 1, null]]));
        assert_eq!(m["series"][1]["values"], json!([[0, 2, null, 3]]));
    }

    #[test]
    fn concat_pads_tags_to_the_union_of_keys() {
        let a = json!({"series":[{"name":"cpu","tags":{"host":"h","region":""},"columns":["time","c"],"values":[[0,1]]}]});
        let b = json!({"series":[{"name":"net","tags":{"iface":"e"},"columns":["time","c"],"values":[[0,2]]}]});
        let c = json!({"series":[{"name":"sys","columns":["time","c"],"values":[[0,3]]}]});
        let m = merge(&[a, b, c], Merge::Concat, 0, None, None);
        assert_eq!(
            m["series"][0]["tags"],
            json!({"host":"h","iface":"","region":""})
        );
        assert_eq!(
            m["series"][1]["tags"],
            json!({"host":"","iface":"e","region":""})
        );
        assert_eq!(
            m["series"][2]["tags"],
            json!({"host":"","iface":"","region":""})
        );
        let plain = json!({"series":[{"name":"sys","columns":["time","c"],"values":[[0,3]]}]});
        let m = merge(&[plain.clone(), plain], Merge::Concat, 0, None, None);
        assert!(m["series"][0].get("tags").is_none());
    }

    #[test]
    fn sum_adds_counts() {
        let a = json!({"series":[{"columns":["count"],"values":[[3]]}]});
        let b = json!({"series":[{"columns":["count"],"values":[[4]]}]});
        let m = merge(&[a, b], Merge::Sum, 0, None, None);
        assert_eq!(m["series"][0]["values"], json!([[7]]));
    }

    #[test]
    fn retention_policies_keep_the_first_answers_order() {
        let a = json!({"series":[{"columns":["name","duration"],"values":[["autogen","0s"],["week","168h0m0s"]]}]});
        let b = json!({"series":[{"columns":["name","duration"],"values":[["week","168h0m0s"],["autogen","0s"]]}]});
        let m = merge(&[a, b], Merge::FirstSeen, 0, None, None);
        assert_eq!(m["series"][0]["values"][0][0], "autogen");
        assert_eq!(m["series"][0]["values"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn csv_has_a_header_per_column_set_and_quotes_when_needed() {
        let r = json!({"series":[{"name":"cpu","tags":{"host":"a"},"columns":["time","v"],"values":[[1,"x,y"],[2,null]]}]});
        assert_eq!(
            to_csv(&[r]),
            "name,tags,time,v\ncpu,host=a,1,\"x,y\"\ncpu,host=a,2,\n"
        );
    }
}
