//! What a backend holds, asked with `SHOW` statements: its databases,
//! retention policies, measurements, and a measurement's tag and field keys.
//!
//! The one typed home for these questions: the admin endpoints (`/health`'s
//! load), migration (what to copy, what to clear) and the schema cache (field
//! types, policies) each ask through here, so a name is quoted one way and an
//! answer read one way ([`crate::answer`]).

use std::collections::{BTreeMap, HashSet};

use serde_json::Value;

use crate::answer::{self, PolicyRow};
use crate::backend::client::{Client, Error};
use crate::influxql::quote_ident;

/// The database influxd keeps its own statistics in; never copied or counted.
const INTERNAL_DB: &str = "_internal";

/// The backend's databases, `_internal` left out.
pub(crate) async fn databases(client: &Client) -> Result<Vec<String>, Error> {
    let v = client.query_json(&[("q", "SHOW DATABASES")]).await?;
    let mut dbs = answer::first_column(&v);
    dbs.retain(|d| d != INTERNAL_DB);
    Ok(dbs)
}

/// The measurements of `db`.
pub(crate) async fn measurements(client: &Client, db: &str) -> Result<Vec<String>, Error> {
    let v = client.query(db, "SHOW MEASUREMENTS").await?;
    Ok(answer::first_column(&v))
}

/// The retention policies of `db`.
pub(crate) async fn retention_policies(client: &Client, db: &str) -> Result<Vec<PolicyRow>, Error> {
    let q = format!("SHOW RETENTION POLICIES ON {}", quote_ident(db));
    let v = client.query_json(&[("q", &q)]).await?;
    Ok(PolicyRow::all(&v))
}

/// The tag keys and field types of one measurement in one retention policy.
pub(crate) async fn columns(
    client: &Client,
    db: &str,
    rp: &str,
    measurement: &str,
) -> Result<Columns, Error> {
    let from = format!("{}.{}", quote_ident(rp), quote_ident(measurement));
    let tag_keys = client
        .query(db, &format!("SHOW TAG KEYS FROM {from}"))
        .await?;
    let field_keys = client
        .query(db, &format!("SHOW FIELD KEYS FROM {from}"))
        .await?;
    Ok(Columns::from_answers(&tag_keys, &field_keys))
}

/// Measurements whose sizes [`sizes`] asks in one request (two statements each).
const SIZES_PER_REQUEST: usize = 25;

/// How big one measurement is on a backend ([`sizes`]).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub(crate) struct Size {
    /// Series holding data, in the retention policy holding the most: `SELECT count(*) FROM
    /// (SELECT last(*) ... GROUP BY *)`. (influxd 1.6's `SHOW SERIES EXACT CARDINALITY` counts
    /// a series once per shard holding it.)
    pub series: u64,
    /// Points, summed over the retention policies: per policy the largest `count(field)`,
    /// exact when every point carries every field (InfluxQL cannot count rows), else a lower
    /// bound.
    pub points: u64,
}

/// Series and points of each of `measurements` of `db`, over `policies`: per policy and
/// measurement a `SELECT count(*)` and a count of its series, [`SIZES_PER_REQUEST`]
/// measurements per request. Reads every field of the data: what-if placement asks it once,
/// before data moves.
pub(crate) async fn sizes(
    client: &Client,
    db: &str,
    measurements: &[String],
    policies: &[PolicyRow],
) -> Result<BTreeMap<String, Size>, Error> {
    let mut out: BTreeMap<String, Size> = measurements
        .iter()
        .map(|m| (m.clone(), Size::default()))
        .collect();
    for rp in policies {
        for chunk in measurements.chunks(SIZES_PER_REQUEST) {
            let mut q = Vec::with_capacity(2 * chunk.len());
            for m in chunk {
                let from = format!("{}.{}", quote_ident(&rp.name), quote_ident(m));
                q.push(format!("SELECT count(*) FROM {from}"));
                q.push(format!(
                    "SELECT count(*) FROM (SELECT last(*) FROM {from} GROUP BY *)"
                ));
            }
            let v = client.query(db, &q.join("; ")).await?;
            let results = answer::results(&v);
            for (i, m) in chunk.iter().enumerate() {
                let size = out.entry(m.clone()).or_default();
                size.points += results.get(2 * i).map_or(0, largest_count);
                let series = results.get(2 * i + 1).map_or(0, largest_count);
                size.series = size.series.max(series);
            }
        }
    }
    Ok(out)
}

/// The largest count in the first row of a statement's result (`time, count_a, count_b`);
/// 0 when it has none (an empty measurement in that policy).
fn largest_count(result: &Value) -> u64 {
    answer::series(result)
        .first()
        .and_then(|series| answer::rows(series).next())
        .and_then(|row| answer::cells(row).iter().filter_map(Value::as_u64).max())
        .unwrap_or(0)
}

/// What `db` holds as far as verdicts on writes depend on it: its policies
/// and every field's type, in one round trip (the schema cache asks every
/// backend at each refresh). `None` when the database does not exist there.
pub(crate) async fn policies_and_fields(
    client: &Client,
    db: &str,
) -> Result<Option<DbLayout>, Error> {
    let q = format!(
        "SHOW RETENTION POLICIES ON {0}; SHOW FIELD KEYS ON {0}",
        quote_ident(db)
    );
    let v = client.query(db, &q).await?;
    if answer::results(&v).is_empty() {
        return Err(Error::Status {
            status: 200,
            message: "answer without results".to_string(),
        });
    }
    Ok(DbLayout::from_answer(&v))
}

/// A database's policies and field types ([`policies_and_fields`]).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct DbLayout {
    /// `SHOW RETENTION POLICIES`.
    pub policies: Vec<PolicyRow>,
    /// `SHOW FIELD KEYS`: (measurement, field, type name), a field stored
    /// with several types once per type.
    pub fields: Vec<(String, String, String)>,
}

impl DbLayout {
    fn from_answer(v: &Value) -> Option<DbLayout> {
        let results = answer::results(v);
        let policies = results.first()?;
        // The database is missing: influxd 1.6 then answers the first
        // statement alone, with an error (`not executed`).
        let fields = results
            .get(1)
            .filter(|_| answer::error(policies).is_none())?;
        Some(DbLayout {
            policies: answer::series(policies)
                .first()
                .into_iter()
                .flat_map(answer::rows)
                .filter_map(PolicyRow::from_row)
                .collect(),
            fields: field_rows(fields),
        })
    }
}

/// Every field of every measurement of one retention policy of `db`, as
/// (measurement, field, type name). `SHOW FIELD KEYS ON db` alone covers only
/// the default policy, hence the regex source.
pub(crate) async fn field_keys(
    client: &Client,
    db: &str,
    rp: &str,
) -> Result<Vec<(String, String, String)>, Error> {
    let q = format!(
        "SHOW FIELD KEYS ON {} FROM {}./.*/",
        quote_ident(db),
        quote_ident(rp)
    );
    let v = client.query(db, &q).await?;
    Ok(answer::results(&v)
        .first()
        .map(field_rows)
        .unwrap_or_default())
}

/// The rows of one `SHOW FIELD KEYS` result: (measurement, field, type name).
fn field_rows(result: &Value) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for series in answer::series(result) {
        let Some(measurement) = series.get("name").and_then(Value::as_str) else {
            continue;
        };
        for row in answer::rows(series) {
            if let (Some(field), Some(kind)) = (
                row.get(0).and_then(Value::as_str),
                row.get(1).and_then(Value::as_str),
            ) {
                out.push((measurement.to_string(), field.to_string(), kind.to_string()));
            }
        }
    }
    out
}

/// Tag keys and field types of a measurement (`SHOW TAG KEYS`,
/// `SHOW FIELD KEYS`); a field stored with several types keeps the first of
/// float, integer, string, boolean.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Columns {
    /// Tag keys.
    pub tags: HashSet<String>,
    /// Field key -> type (`float`, `integer`, `string`, `boolean`).
    pub fields: BTreeMap<String, String>,
}

impl Columns {
    /// Reads `SHOW TAG KEYS` and `SHOW FIELD KEYS` answers.
    pub(crate) fn from_answers(tag_keys: &Value, field_keys: &Value) -> Columns {
        let mut columns = Columns::default();
        for row in rows_of_first_result(tag_keys) {
            if let Some(k) = row.get(0).and_then(Value::as_str) {
                columns.tags.insert(k.to_string());
            }
        }
        let rank = |t: &str| match t {
            "float" => 0,
            "integer" => 1,
            "string" => 2,
            _ => 3,
        };
        for row in rows_of_first_result(field_keys) {
            let (Some(k), Some(t)) = (
                row.get(0).and_then(Value::as_str),
                row.get(1).and_then(Value::as_str),
            ) else {
                continue;
            };
            let keep = columns.fields.get(k).is_none_or(|old| rank(t) < rank(old));
            if keep {
                columns.fields.insert(k.to_string(), t.to_string());
            }
        }
        columns
    }
}

/// Every row of every series of the first statement's result.
fn rows_of_first_result(answer: &Value) -> impl Iterator<Item = &Value> {
    answer::results(answer)
        .first()
        .into_iter()
        .flat_map(answer::series)
        .flat_map(answer::rows)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::json;

    use super::*;

    #[test]
    fn a_size_is_the_largest_count_of_a_statement() {
        let v = json!({"results":[
            {"statement_id":0,"series":[{"name":"cpu","columns":["time","count_v","count_w"],
                "values":[["1970-01-01T00:00:00Z",2,3]]}]},
            {"statement_id":1}]});
        let results = answer::results(&v);
        assert_eq!(largest_count(&results[0]), 3);
        assert_eq!(largest_count(&results[1]), 0);
    }

    #[test]
    fn a_missing_database_has_no_layout() {
        let v = json!({"results":[{"statement_id":0,"error":"database not found: x"}]});
        assert_eq!(DbLayout::from_answer(&v), None);
    }

    #[test]
    fn a_layout_lists_policies_and_each_fields_types() {
        let v = json!({"results":[
            {"statement_id":0,"series":[{"columns":["name","duration","shardGroupDuration","replicaN","default"],"values":[["autogen","0s","168h0m0s",1,true]]}]},
            {"statement_id":1,"series":[
                {"name":"cpu","columns":["fieldKey","fieldType"],"values":[["v","float"],["v","integer"]]},
                {"name":"mem","columns":["fieldKey","fieldType"],"values":[["free","integer"]]}]}]});
        let layout = DbLayout::from_answer(&v).unwrap();
        assert_eq!(layout.policies.len(), 1);
        assert_eq!(layout.fields.len(), 3);
        assert_eq!(
            layout.fields[2],
            ("mem".into(), "free".into(), "integer".into())
        );
    }
}
