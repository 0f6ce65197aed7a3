//! Anti-entropy, the comparison: which time buckets of which measurements differ between
//! circles, found without reading the data.
//!
//! Circles are copies of each other, kept so by the write-ahead queues; they still drift
//! (points written straight to one InfluxDB, a backend restored from an old backup, a DELETE
//! that reached one circle, a proxy that died with its queue). `/resync` and `/recovery`
//! repair by copying everything; this finds what differs so that a repair copies little.
//!
//! For every database, retention policy and measurement (the union of what the backends
//! hold), the owner of the measurement in each circle ([`Cluster::owner`]) is asked, per
//! bucket of the policy's shard duration `D`, for a digest InfluxDB computes from its blocks,
//! far cheaper than sending the points:
//! - the first pass counts one field: `SELECT count(f) ... GROUP BY time(D) fill(none)`. A
//!   point missing in one circle is missing with every field, so one count finds it, at about
//!   a fifth of the cost of the full digest (measured: docs/perf.md (h));
//! - a bucket whose count differs is asked again with `D` split ([`SPLIT`]), recursively, down
//!   to `min_bucket` or until the bucket is small ([`SMALL_BUCKET`] points);
//! - those leaves, and with `deep` every bucket from the start, get the full digest,
//!   `SELECT count(*), sum(*)`: the leaves with their full digests are what a repair reads and
//!   mends ([`super::repair`]).
//!
//! Equal counts with different sums is a value conflict (same series and time, different
//! values); only `deep` looks for those, and for points that lack the counted field. Conflicts
//! in string and boolean fields with equal counts are not seen at all (InfluxQL cannot sum
//! them), only inside a bucket that differs otherwise.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use futures_util::future::join_all;
use futures_util::stream::{self, StreamExt as _};
use serde_json::Value;

use crate::answer::{self, PolicyRow};
use crate::backend::catalog;
use crate::backend::client::{self, Client};
use crate::cluster::Cluster;
use crate::influxql::quote_ident;

/// The smallest time InfluxDB stores (`models.MinNanoTime`).
pub(crate) const MIN_TIME: i64 = -9_223_372_036_854_775_806;
/// The largest time InfluxDB stores (`models.MaxNanoTime`).
pub(crate) const MAX_TIME: i64 = 9_223_372_036_854_775_806;
/// A differing bucket is asked again in this many parts (when its width divides).
const SPLIT: i64 = 24;
/// A differing bucket holding at most this many points in every circle is not split further:
/// reading it costs less than asking again.
const SMALL_BUCKET: u64 = 2_000;
/// Shard duration assumed when a policy's cannot be read (influxd's default for `INF`).
const DEFAULT_SHARD_NS: i64 = 7 * 86_400 * 1_000_000_000;
/// Measurements compared at once (each asks every circle's owner at once).
const CONCURRENCY: usize = 4;
/// Relative difference under which two float sums are equal (summation order).
const SUM_TOLERANCE: f64 = 1e-9;

/// Why a comparison failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    /// A backend could not be asked; a comparison needs every circle.
    #[error("backend {backend}: {source}")]
    Backend {
        /// Backend name.
        backend: String,
        /// The failure.
        #[source]
        source: client::Error,
    },
    /// A backend answered a digest query with an error.
    #[error("backend {backend}: {message}")]
    Answer {
        /// Backend name.
        backend: String,
        /// InfluxDB's error text.
        message: String,
    },
}

/// What to compare.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Scope {
    /// Databases (empty: all but `_internal`).
    pub dbs: Vec<String>,
    /// First nanosecond compared.
    pub start: i64,
    /// First nanosecond not compared.
    pub end: i64,
    /// Buckets are not split below this width (ns).
    pub min_bucket: i64,
    /// Digest every bucket in full from the start: finds points that lack the field the
    /// first pass counts, and values that differ where the counts agree.
    #[serde(default)]
    pub deep: bool,
}

/// What one circle holds in a bucket: per field, points and (numeric fields) their sum.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Digest {
    /// Field -> points holding it.
    pub counts: BTreeMap<String, u64>,
    /// Numeric field -> sum of its values.
    pub sums: BTreeMap<String, f64>,
}

impl Digest {
    /// Points in the bucket, at least (the largest count of one field).
    pub(crate) fn points(&self) -> u64 {
        self.counts.values().copied().max().unwrap_or(0)
    }

    /// Same counts, and sums equal within [`SUM_TOLERANCE`].
    pub(crate) fn same_as(&self, other: &Digest) -> bool {
        self.counts == other.counts
            && self.sums.len() == other.sums.len()
            && self.sums.iter().all(|(k, a)| {
                other.sums.get(k).is_some_and(|b| {
                    a == b || (a - b).abs() <= SUM_TOLERANCE * a.abs().max(b.abs())
                })
            })
    }
}

/// A bucket whose digests differ between circles.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Bucket {
    /// Database.
    pub db: String,
    /// Retention policy.
    pub rp: String,
    /// Measurement.
    pub measurement: String,
    /// First nanosecond.
    pub start: i64,
    /// First nanosecond after.
    pub end: i64,
    /// Per circle (by id), what its owner holds.
    pub circles: Vec<Digest>,
}

impl Bucket {
    /// Points the circles lack, estimated from the counts: per field, the largest count minus
    /// each circle's (a point missing whole counts once per field; the largest wins).
    pub(crate) fn missing(&self) -> u64 {
        let most = |field: &str| {
            self.circles
                .iter()
                .map(|d| d.counts.get(field).copied().unwrap_or(0))
                .max()
                .unwrap_or(0)
        };
        self.circles
            .iter()
            .map(|d| {
                self.fields()
                    .iter()
                    .map(|f| most(f) - d.counts.get(f.as_str()).copied().unwrap_or(0))
                    .max()
                    .unwrap_or(0)
            })
            .sum()
    }

    /// Every field any circle counts.
    fn fields(&self) -> BTreeSet<String> {
        self.circles
            .iter()
            .flat_map(|d| d.counts.keys().cloned())
            .collect()
    }

    /// Whether the counts agree and only sums differ: same points, different values.
    pub(crate) fn is_value_conflict(&self) -> bool {
        self.circles.windows(2).all(|w| w[0].counts == w[1].counts)
    }
}

/// The result of a comparison.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub(crate) struct Comparison {
    /// Databases compared.
    pub databases: Vec<String>,
    /// Measurements compared (per retention policy).
    pub measurements: u64,
    /// Digest queries sent (per circle owner).
    pub queries: u64,
    /// The differing buckets, finest first found, in (db, rp, measurement, time) order.
    pub buckets: Vec<Bucket>,
}

/// Compares every circle's owners over `scope`.
pub(crate) async fn compare(cluster: &Cluster, scope: &Scope) -> Result<Comparison, Error> {
    let mut report = Comparison::default();
    let backends: Vec<(String, Client)> = cluster
        .backends()
        .map(|h| {
            let client = client::cached(&h.backend.target, super::READ_TIMEOUT);
            (h.backend.info.name.clone(), client)
        })
        .collect();
    let mut dbs = BTreeSet::new();
    for (name, client) in &backends {
        let found = catalog::databases(client)
            .await
            .map_err(|e| backend(name, e))?;
        dbs.extend(
            found
                .into_iter()
                .filter(|d| scope.dbs.is_empty() || scope.dbs.contains(d)),
        );
    }
    for db in dbs {
        let places = places(&backends, &db, scope.deep).await?;
        report.measurements += places.len() as u64;
        // A few measurements at once, answers taken in order (the report stays sorted).
        let parts = stream::iter(places)
            .map(|(rp, measurement, width, probe)| {
                let db = &db;
                async move {
                    let at = Place {
                        db,
                        rp: &rp,
                        measurement: &measurement,
                    };
                    let mut part = Comparison::default();
                    let range = (scope.start, scope.end);
                    let digest = match &probe {
                        Some(field) => Digesting::Probe(field),
                        None => Digesting::Full,
                    };
                    differing(cluster, scope, &at, range, (width, digest), &mut part).await?;
                    Ok::<Comparison, Error>(part)
                }
            })
            .buffered(CONCURRENCY);
        let parts: Vec<Result<Comparison, Error>> = parts.collect().await;
        for part in parts {
            let part = part?;
            report.queries += part.queries;
            report.buckets.extend(part.buckets);
        }
        report.databases.push(db);
    }
    Ok(report)
}

/// One measurement of one retention policy to compare: (rp, measurement, bucket width,
/// the field its first pass counts, `None` for a full digest from the start).
type PlaceSpec = (String, String, i64, Option<String>);

/// Every (retention policy, measurement) any backend holds in `db`, with its policy's shard
/// duration and (unless `deep`) the field the first pass counts: the measurement's first
/// field key, any field serving since a point lost whole is lost from every field.
async fn places(
    backends: &[(String, Client)],
    db: &str,
    deep: bool,
) -> Result<Vec<PlaceSpec>, Error> {
    let mut policies: BTreeMap<String, PolicyRow> = BTreeMap::new();
    for (name, client) in backends {
        let rps = catalog::retention_policies(client, db)
            .await
            .map_err(|e| backend(name, e))?;
        for rp in rps {
            policies.entry(rp.name.clone()).or_insert(rp);
        }
    }
    let mut out = Vec::new();
    for rp in policies.values() {
        let width = answer::go_duration_ns(&rp.shard_group_duration)
            .filter(|&w| w > 0)
            .unwrap_or(DEFAULT_SHARD_NS);
        // A measurement with no field in this policy on any backend holds nothing in it.
        let mut fields: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (name, client) in backends {
            let keys = match catalog::field_keys(client, db, &rp.name).await {
                Ok(keys) => keys,
                Err(e) if e.is_database_not_found() => Vec::new(),
                Err(e) => return Err(backend(name, e)),
            };
            for (measurement, field, _) in keys {
                fields.entry(measurement).or_default().insert(field);
            }
        }
        out.extend(fields.into_iter().map(|(measurement, fields)| {
            let probe = fields.into_iter().next().filter(|_| !deep);
            (rp.name.clone(), measurement, width, probe)
        }));
    }
    Ok(out)
}

/// How a bucket is digested: the first pass counts one field (an aggregate of one column
/// costs InfluxDB about a fifth of counting and summing every field); buckets where that
/// count differs, and every bucket under `deep`, get the full digest.
#[derive(Debug, Clone, Copy)]
enum Digesting<'a> {
    /// `count(field)` only.
    Probe(&'a str),
    /// `count(*), sum(*)`.
    Full,
}

fn backend(name: &str, source: client::Error) -> Error {
    Error::Backend {
        backend: name.to_string(),
        source,
    }
}

/// A measurement of a retention policy of a database.
struct Place<'a> {
    db: &'a str,
    rp: &'a str,
    measurement: &'a str,
}

/// Adds to `report` the differing buckets of `at` in `range`, asked with buckets of `width`
/// and split while they differ; the probe's leaves are asked again in full (and split further
/// if the full digest finds them large).
async fn differing(
    cluster: &Cluster,
    scope: &Scope,
    at: &Place<'_>,
    range: (i64, i64),
    (width, digest): (i64, Digesting<'_>),
    report: &mut Comparison,
) -> Result<(), Error> {
    // Explicit stack: recursion in an async fn needs boxing.
    let mut todo = vec![(range, width, digest)];
    while let Some(((start, end), width, digest)) = todo.pop() {
        let digests = digests(cluster, at, (start, end), width, digest).await?;
        report.queries += digests.len() as u64;
        let found = differing_buckets(at, (start, end), width, &digests);
        let finer = split(width, scope.min_bucket);
        // Pushed in reverse so the stack pops them in time order.
        for b in found.into_iter().rev() {
            let small = b.circles.iter().all(|d| d.points() <= SMALL_BUCKET);
            match (finer, digest) {
                (Some(w), _) if !small => todo.push(((b.start, b.end), w, digest)),
                // A leaf found by the probe: the repair needs its full digest.
                (_, Digesting::Probe(_)) => todo.push(((b.start, b.end), width, Digesting::Full)),
                (_, Digesting::Full) => report.buckets.push(b),
            }
        }
    }
    Ok(())
}

/// The buckets of `width` in `range` where the circles' digests differ, in time order.
fn differing_buckets(
    at: &Place<'_>,
    (start, end): (i64, i64),
    width: i64,
    digests: &[BTreeMap<i64, Digest>],
) -> Vec<Bucket> {
    let times: BTreeSet<i64> = digests.iter().flat_map(|d| d.keys().copied()).collect();
    let mut found = Vec::new();
    for t in times {
        let circles: Vec<Digest> = digests
            .iter()
            .map(|d| d.get(&t).cloned().unwrap_or_default())
            .collect();
        if circles.windows(2).all(|w| w[0].same_as(&w[1])) {
            continue;
        }
        found.push(Bucket {
            db: at.db.to_string(),
            rp: at.rp.to_string(),
            measurement: at.measurement.to_string(),
            start: t.max(start),
            end: t.saturating_add(width).min(end),
            circles,
        });
    }
    found
}

/// The next finer bucket width, `None` below `min`.
fn split(width: i64, min: i64) -> Option<i64> {
    let parts = [SPLIT, 12, 10, 6, 5, 4, 3, 2]
        .into_iter()
        .find(|p| width % p == 0)?;
    Some(width / parts).filter(|&w| w >= min.max(1))
}

/// Per circle (by id), the digest of each bucket of `width` in `[start, end)` on the owner.
async fn digests(
    cluster: &Cluster,
    at: &Place<'_>,
    (start, end): (i64, i64),
    width: i64,
    digest: Digesting<'_>,
) -> Result<Vec<BTreeMap<i64, Digest>>, Error> {
    let select = match digest {
        Digesting::Full => "count(*), sum(*)".to_string(),
        // Named as count(*) names it, so one reader serves both.
        Digesting::Probe(field) => format!(
            "count({}) AS {}",
            quote_ident(field),
            quote_ident(&format!("count_{field}"))
        ),
    };
    let q = format!(
        "SELECT {select} FROM {}.{} WHERE time >= {start} AND time < {end} GROUP BY time({width}ns) fill(none)",
        quote_ident(at.rp),
        quote_ident(at.measurement)
    );
    let asks = cluster.circles.iter().map(|c| {
        let q = &q;
        async move {
            let Some(owner) = cluster.owner(c, at.db, at.measurement) else {
                return Ok(BTreeMap::new());
            };
            let name = &owner.backend.info.name;
            let client = client::cached(&owner.backend.target, super::READ_TIMEOUT);
            let v = client
                .query_json(&[("db", at.db), ("q", q), ("epoch", "ns")])
                .await
                .map_err(|e| backend(name, e))?;
            read_digests(&v).map_err(|message| Error::Answer {
                backend: name.clone(),
                message,
            })
        }
    });
    join_all(asks).await.into_iter().collect()
}

/// Reads a digest answer: one row per bucket, columns `time`, `count_<field>`...,
/// `sum_<field>`.... A database or policy the backend lacks holds nothing.
fn read_digests(v: &Value) -> Result<BTreeMap<i64, Digest>, String> {
    let mut out = BTreeMap::new();
    for result in answer::results(v) {
        if let Some(e) = answer::error(result) {
            if e.contains("not found") {
                continue;
            }
            return Err(e.to_string());
        }
        for series in answer::series(result) {
            let columns: Vec<&str> = series
                .get("columns")
                .and_then(Value::as_array)
                .map(|c| c.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            for row in answer::rows(series) {
                let cells = answer::cells(row);
                let Some(t) = cells.first().and_then(Value::as_i64) else {
                    continue;
                };
                let d: &mut Digest = out.entry(t).or_default();
                for (name, cell) in columns.iter().zip(cells).skip(1) {
                    if let Some(field) = name.strip_prefix("count_") {
                        if let Some(n) = cell.as_u64().filter(|&n| n > 0) {
                            d.counts.insert(field.to_string(), n);
                        }
                    } else if let Some(field) = name.strip_prefix("sum_") {
                        if let Some(x) = cell.as_f64() {
                            d.sums.insert(field.to_string(), x);
                        }
                    }
                }
            }
        }
    }
    Ok(out)
}

/// The JSON of a comparison (`/anti-entropy/compare`).
pub(crate) fn report_json(report: &Comparison, cluster: &Arc<Cluster>) -> Value {
    let names: Vec<String> = cluster.circles.iter().map(|c| c.name.clone()).collect();
    let buckets: Vec<Value> = report
        .buckets
        .iter()
        .map(|b| {
            let circles: Vec<Value> = b
                .circles
                .iter()
                .enumerate()
                .map(|(i, d)| {
                    serde_json::json!({
                        "circle_id": i,
                        "circle": names.get(i),
                        "points": d.points(),
                        "counts": d.counts,
                        "sums": d.sums,
                    })
                })
                .collect();
            serde_json::json!({
                "db": b.db,
                "rp": b.rp,
                "measurement": b.measurement,
                "start": b.start,
                "end": b.end,
                "missing": b.missing(),
                "value_conflict": b.is_value_conflict(),
                "circles": circles,
            })
        })
        .collect();
    serde_json::json!({
        "databases": report.databases,
        "measurements": report.measurements,
        "queries": report.queries,
        "differing": buckets.len(),
        "missing": report.buckets.iter().map(Bucket::missing).sum::<u64>(),
        "buckets": buckets,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::json;

    use super::*;

    #[test]
    fn digests_are_read_per_bucket_and_field() {
        let v = json!({"results":[{"statement_id":0,"series":[{"name":"m",
            "columns":["time","count_b","count_f","sum_f"],
            "values":[[100,1,3,5.25],[200,0,2,1.0]]}]}]});
        let d = read_digests(&v).unwrap();
        assert_eq!(d[&100].counts["f"], 3);
        assert_eq!(d[&100].points(), 3);
        assert!(!d[&200].counts.contains_key("b"));
        let missing =
            json!({"results":[{"statement_id":0,"error":"retention policy not found: x"}]});
        assert!(read_digests(&missing).unwrap().is_empty());
    }

    #[test]
    fn a_bucket_counts_what_each_circle_lacks() {
        let d = |f: u64, g: u64| Digest {
            counts: [("f".to_string(), f), ("g".to_string(), g)]
                .into_iter()
                .filter(|(_, n)| *n > 0)
                .collect(),
            sums: BTreeMap::new(),
        };
        let b = Bucket {
            db: "d".into(),
            rp: "r".into(),
            measurement: "m".into(),
            start: 0,
            end: 1,
            circles: vec![d(10, 4), d(7, 4), d(10, 0)],
        };
        assert_eq!(b.missing(), 3 + 4);
        assert!(!b.is_value_conflict());
    }

    #[test]
    fn buckets_split_evenly_down_to_the_minimum() {
        let week = 7 * 86_400 * 1_000_000_000i64;
        assert_eq!(split(week, 1), Some(week / 24));
        assert_eq!(split(60_000_000_000, 60_000_000_000), None);
        assert_eq!(split(7, 1), None);
    }

    #[test]
    fn float_sums_equal_within_rounding_are_the_same() {
        let mut a = Digest::default();
        a.counts.insert("f".into(), 2);
        a.sums.insert("f".into(), 0.3);
        let mut b = a.clone();
        b.sums.insert("f".into(), 0.1 + 0.2);
        assert!(a.same_as(&b));
        b.sums.insert("f".into(), 0.4);
        assert!(!a.same_as(&b));
    }
}
