//! Copying one measurement from a source backend into destination queues.
//!
//! The source is read with a chunked `SELECT *` (bounded memory whatever the
//! measurement's size); each chunk is turned back into line protocol that
//! keeps every tag and every field's type, and appended to the write-ahead
//! queue of each destination backend, so a destination that goes down
//! mid-copy loses nothing. When a destination queue is full the copy waits.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;
use serde_json::Value;

use crate::backend::client::{self, Client};
use crate::circle::BackendHandle;
use crate::cluster::Cluster;
use crate::influxql::quote_ident;
use crate::wal;

/// Points appended to the destination queues per write batch.
const APPEND_POINTS: usize = 10_000;
/// Pause before retrying an append to a full destination queue.
const FULL_QUEUE_PAUSE: Duration = Duration::from_millis(500);
/// Largest chunk line accepted from the source.
const MAX_CHUNK_BYTES: usize = 256 << 20;

/// Why a copy failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The source backend failed.
    #[error("source: {0}")]
    Source(#[from] client::Error),
    /// The source sent something that is not InfluxDB's chunked JSON.
    #[error("source answer: {0}")]
    Decode(String),
    /// The destination queue failed (not just full).
    #[error("destination queue: {0}")]
    Queue(#[from] wal::Error),
}

/// Field types of a measurement (`SHOW FIELD KEYS`); a field stored with
/// several types keeps the first of float, integer, string, boolean.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Schema {
    /// Tag keys.
    pub tags: HashSet<String>,
    /// Field key -> type (`float`, `integer`, `string`, `boolean`).
    pub fields: BTreeMap<String, String>,
}

impl Schema {
    /// Builds a schema from `SHOW TAG KEYS` and `SHOW FIELD KEYS` answers.
    pub fn from_answers(tag_keys: &Value, field_keys: &Value) -> Schema {
        let mut schema = Schema::default();
        for row in rows(tag_keys) {
            if let Some(k) = row.first().and_then(Value::as_str) {
                schema.tags.insert(k.to_string());
            }
        }
        let rank = |t: &str| match t {
            "float" => 0,
            "integer" => 1,
            "string" => 2,
            _ => 3,
        };
        for row in rows(field_keys) {
            let (Some(k), Some(t)) = (
                row.first().and_then(Value::as_str),
                row.get(1).and_then(Value::as_str),
            ) else {
                continue;
            };
            let keep = schema.fields.get(k).is_none_or(|old| rank(t) < rank(old));
            if keep {
                schema.fields.insert(k.to_string(), t.to_string());
            }
        }
        schema
    }
}

fn rows(answer: &Value) -> impl Iterator<Item = &Vec<Value>> {
    answer
        .pointer("/results/0/series")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .flat_map(|s| {
            s.get("values")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
        })
        .filter_map(Value::as_array)
}

fn escape_into(out: &mut String, s: &str, special: &[char]) {
    for c in s.chars() {
        if special.contains(&c) {
            out.push('\\');
        }
        out.push(c);
    }
}

/// Appends the line-protocol form of every row of one chunk series to
/// `out`; returns the number of lines written. Rows without any field
/// value are skipped (they cannot be written).
pub fn series_to_lines(
    measurement: &str,
    series: &Value,
    schema: &Schema,
    out: &mut String,
) -> usize {
    let columns: Vec<&str> = series
        .get("columns")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|c| c.as_str().unwrap_or(""))
        .collect();
    // Tags grouped into the series (GROUP BY) come in `tags`; SELECT * puts
    // them in columns, but handle both.
    let series_tags: Vec<(&str, &str)> = series
        .get("tags")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.as_str(), v.as_str()?)))
                .collect()
        })
        .unwrap_or_default();
    let mut written = 0;
    let mut head = String::new();
    escape_into(&mut head, measurement, &[',', ' ']);
    for row in series
        .get("values")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_array)
    {
        let mut time = None;
        let mut tags: Vec<(&str, &str)> = series_tags.clone();
        let mut fields = String::new();
        for (i, cell) in row.iter().enumerate() {
            let Some(&col) = columns.get(i) else {
                continue;
            };
            if cell.is_null() {
                continue;
            }
            if col == "time" && i == 0 {
                time = cell.as_i64();
            } else if schema.tags.contains(col) && !schema.fields.contains_key(col) {
                if let Some(v) = cell.as_str().filter(|v| !v.is_empty()) {
                    tags.push((col, v));
                }
            } else if let Some(ty) = schema.fields.get(col) {
                if !fields.is_empty() {
                    fields.push(',');
                }
                escape_into(&mut fields, col, &[',', ' ', '=']);
                fields.push('=');
                push_field_value(&mut fields, cell, ty);
            }
        }
        let Some(time) = time else {
            continue;
        };
        if fields.is_empty() {
            continue;
        }
        tags.sort_unstable();
        out.push_str(&head);
        for (k, v) in tags {
            out.push(',');
            escape_into(out, k, &[',', ' ', '=']);
            out.push('=');
            escape_into(out, v, &[',', ' ', '=']);
        }
        out.push(' ');
        out.push_str(&fields);
        let _ = writeln!(out, " {time}");
        written += 1;
    }
    written
}

fn push_field_value(out: &mut String, cell: &Value, ty: &str) {
    match cell {
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::String(s) => {
            out.push('"');
            escape_into(out, s, &['"', '\\']);
            out.push('"');
        }
        Value::Number(n) if ty == "integer" => {
            let v = n
                .as_i64()
                .unwrap_or_else(|| n.as_f64().unwrap_or(0.0) as i64);
            let _ = write!(out, "{v}i");
        }
        Value::Number(n) => {
            let _ = write!(out, "{n}");
        }
        other => {
            out.push('"');
            escape_into(out, &other.to_string(), &['"', '\\']);
            out.push('"');
        }
    }
}

/// What to copy.
#[derive(Debug, Clone)]
pub struct Job {
    /// Database.
    pub db: String,
    /// Retention policy.
    pub rp: String,
    /// Measurement.
    pub measurement: String,
    /// Only points at or after this unix time (seconds); 0 = all.
    pub since: i64,
    /// Rows per chunk requested from the source.
    pub batch: usize,
}

/// Copies one measurement of one retention policy from `source` into the
/// queues of `destinations`; returns the number of points copied.
pub async fn copy_measurement(
    cluster: &Cluster,
    source: &Client,
    destinations: &[Arc<BackendHandle>],
    job: &Job,
) -> Result<u64, Error> {
    let from = format!("{}.{}", quote_ident(&job.rp), quote_ident(&job.measurement));
    let tag_keys = source
        .query_json(&[
            ("db", &job.db),
            ("q", &format!("SHOW TAG KEYS FROM {from}")),
        ])
        .await?;
    let field_keys = source
        .query_json(&[
            ("db", &job.db),
            ("q", &format!("SHOW FIELD KEYS FROM {from}")),
        ])
        .await?;
    let schema = Schema::from_answers(&tag_keys, &field_keys);
    if schema.fields.is_empty() {
        return Ok(0);
    }
    let mut q = format!("SELECT * FROM {from}");
    if job.since > 0 {
        let _ = write!(q, " WHERE time >= {}s", job.since);
    }
    let batch = job.batch.max(1).to_string();
    let params = vec![
        ("db".to_string(), job.db.clone()),
        ("q".to_string(), q),
        ("epoch".to_string(), "ns".to_string()),
        ("chunked".to_string(), "true".to_string()),
        ("chunk_size".to_string(), batch),
    ];
    let mut response = source
        .query_stream(awc::http::Method::POST, &params, &[])
        .await?;
    let mut pending = Vec::new();
    let mut lines = String::new();
    let mut in_lines = 0usize;
    let mut copied = 0u64;
    while let Some(chunk) = response.next().await {
        let chunk = chunk.map_err(|e| Error::Decode(e.to_string()))?;
        pending.extend_from_slice(&chunk);
        while let Some(pos) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=pos).collect();
            in_lines += convert_chunk(&line, &job.measurement, &schema, &mut lines)?;
            if in_lines >= APPEND_POINTS {
                copied += flush(cluster, destinations, job, &mut lines, &mut in_lines).await?;
            }
        }
        if pending.len() > MAX_CHUNK_BYTES {
            return Err(Error::Decode("chunk too large".into()));
        }
    }
    if !pending.is_empty() {
        in_lines += convert_chunk(&pending, &job.measurement, &schema, &mut lines)?;
    }
    copied += flush(cluster, destinations, job, &mut lines, &mut in_lines).await?;
    Ok(copied)
}

/// Converts one chunk (`{"results":[...]}`) into lines.
fn convert_chunk(
    chunk: &[u8],
    measurement: &str,
    schema: &Schema,
    out: &mut String,
) -> Result<usize, Error> {
    let text = chunk.trim_ascii();
    if text.is_empty() {
        return Ok(0);
    }
    let v: Value = serde_json::from_slice(text).map_err(|e| Error::Decode(e.to_string()))?;
    if let Some(e) = v
        .pointer("/results/0/error")
        .or_else(|| v.get("error"))
        .and_then(Value::as_str)
    {
        return Err(Error::Decode(e.to_string()));
    }
    let mut n = 0;
    for series in v
        .pointer("/results/0/series")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        n += series_to_lines(measurement, series, schema, out);
    }
    Ok(n)
}

/// Appends the converted lines to every destination queue (one atomic
/// append), waiting while a queue is full.
async fn flush(
    cluster: &Cluster,
    destinations: &[Arc<BackendHandle>],
    job: &Job,
    lines: &mut String,
    count: &mut usize,
) -> Result<u64, Error> {
    if *count == 0 {
        return Ok(0);
    }
    let points = u32::try_from(*count).unwrap_or(u32::MAX);
    loop {
        let queues: Vec<&wal::Queue> = destinations.iter().map(|d| &d.backend.queue).collect();
        match cluster
            .wal()
            .append_lines(&queues, &job.db, &job.rp, points, lines.as_bytes())
        {
            Ok(_) => break,
            Err(wal::Error::Full { .. }) => {
                for d in destinations {
                    d.notify();
                }
                actix_rt::time::sleep(FULL_QUEUE_PAUSE).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
    for d in destinations {
        d.notify();
    }
    let n = *count as u64;
    lines.clear();
    *count = 0;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Schema {
        Schema::from_answers(
            &json!({"results":[{"series":[{"name":"m","columns":["tagKey"],"values":[["host"],["re gion"]]}]}]}),
            &json!({"results":[{"series":[{"name":"m","columns":["fieldKey","fieldType"],"values":[["f","float"],["i","integer"],["s","string"],["b","boolean"],["x","integer"],["x","float"]]}]}]}),
        )
    }

    #[test]
    fn a_field_with_several_types_keeps_the_first_of_float_integer_string_boolean() {
        assert_eq!(schema().fields["x"], "float");
        assert_eq!(schema().fields["i"], "integer");
    }

    #[test]
    fn rows_become_lines_that_keep_types_tags_and_escapes() {
        let series = json!({"name":"m","columns":["time","b","f","host","i","re gion","s","x"],"values":[
            [1000, true, 1.5, "a,b=c d", 7, null, "say \"hi\" \\o/", 2],
            [2000, null, null, "h", null, "eu", null, null],
            [3000, false, 2, "", -3, "", "", null]
        ]});
        let mut out = String::new();
        let n = series_to_lines("cpu load,x", &series, &schema(), &mut out);
        assert_eq!(n, 2, "a row without fields is skipped");
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines[0],
            r#"cpu\ load\,x,host=a\,b\=c\ d b=true,f=1.5,i=7i,s="say \"hi\" \\o/",x=2 1000"#
        );
        assert_eq!(lines[1], r#"cpu\ load\,x b=false,f=2,i=-3i,s="" 3000"#);
        for l in lines {
            assert!(crate::line_protocol::parse(l.as_bytes()).is_ok(), "{l}");
        }
    }

    #[test]
    fn chunks_with_an_error_fail_the_copy() {
        let mut out = String::new();
        let r = convert_chunk(
            br#"{"results":[{"statement_id":0,"error":"boom"}]}"#,
            "m",
            &schema(),
            &mut out,
        );
        assert!(matches!(r, Err(Error::Decode(e)) if e == "boom"));
        assert_eq!(convert_chunk(b"  \n", "m", &schema(), &mut out).unwrap(), 0);
    }
}
