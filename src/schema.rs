//! What the backends hold, as far as influxd's verdict on a point depends on it: retention
//! policies and the type of every field.
//!
//! # Why
//! influxd refuses some well-formed points only once it stores them: a field whose type differs
//! from the one its shard already has (`field type conflict`), a tag key or a lone field named
//! `time`, a point older than its retention policy. The proxy acknowledges a write before any
//! backend sees it, so each of these used to be a 204 followed by a dead letter. This module
//! lets the write path give those verdicts itself, with influxd's texts, before the 204
//! ([`Check`]): the only way left into dead letters is a schema changed behind the proxy's back.
//!
//! # What is known, and from where
//! * Per database, from the backends (`SHOW RETENTION POLICIES`, `SHOW FIELD KEYS`, asked on the
//!   first write to the database and again in the background every [`REFRESH`]): the retention
//!   policies (duration, shard group duration, default) and every field's type. A field that
//!   the backends report with more than one type (written into different shards) is not used.
//! * From what the proxy itself accepted: the type of each field per retention policy and
//!   shard group, which is where influxd keeps field types.
//!
//! A statement that changes the schema (`DROP`, `DELETE`, `CREATE`/`ALTER RETENTION POLICY`)
//! passing through the proxy forgets the database, which is asked again on its next write.
//!
//! # Differences from influxd, on purpose
//! * The types reported by `SHOW FIELD KEYS` cover every shard, while influxd checks a point
//!   against its own shard only: a field written as an integer last week and as a float into a
//!   shard group where it does not exist yet is accepted by influxd, and refused here.
//!   Changing a field's type is almost always a client bug that later breaks queries over both
//!   shards; a refusal tells the client, where a dead letter would not.
//! * Two lines of one request that bring a new field with two types make influxd refuse every
//!   point of that shard (`field type conflict`, nothing stored); here the whole request is
//!   refused with the same answer, other shard groups' points included.
//!
//! # Memory
//! At most [`MAX_FIELDS`] field types per database and source (backends, accepted), about 80
//! bytes each with a 20-byte measurement and field name: under 16 MiB for a database at the
//! bound. Past the bound the accepted types of the oldest shard group are forgotten (they are
//! the least likely to be written again) and the backends' list is cut.

use std::collections::hash_map::Entry;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use futures_util::future::join_all;
use parking_lot::RwLock;
use rustc_hash::FxHashMap;
use serde_json::Value;

use crate::backend::client;
use crate::circle::BackendHandle;
use crate::influxql::quote_ident;
use crate::line_protocol::{FieldType, Line, Precision};

/// How often a database's schema is asked again from the backends (in the background, while
/// the previous answer keeps serving).
pub const REFRESH: Duration = Duration::from_secs(60);

/// How long a database is left alone after no backend answered, or after a refused retention
/// policy, before the next write asks again.
const RETRY: Duration = Duration::from_secs(1);

/// Bound on field types kept per database and source (see the module doc).
pub const MAX_FIELDS: usize = 100_000;

/// Longest the first write to a database waits for the backends' answer.
const FETCH_TIMEOUT: Duration = Duration::from_secs(2);

/// Shard group duration influxd gives a retention policy created without one and infinite
/// duration (`autogen`): 7 days.
const DEFAULT_SHARD_GROUP: i64 = 7 * 24 * 3600 * 1_000_000_000;

/// Nanoseconds from Go's zero time (0001-01-01) to the Unix epoch: influxd's shard groups
/// start at multiples of their duration counted from there (`time.Truncate`).
const GO_ZERO_TO_EPOCH_NS: i128 = 62_135_596_800 * 1_000_000_000;

/// Every database's schema as far as it is known.
#[derive(Debug, Default)]
pub struct Schema {
    dbs: RwLock<FxHashMap<String, Arc<DbSchema>>>,
}

/// One database.
#[derive(Debug)]
pub struct DbSchema {
    known: ArcSwap<Known>,
    accepted: RwLock<Accepted>,
    refreshing: AtomicBool,
}

/// What the backends said about a database.
#[derive(Debug, Default)]
struct Known {
    asked: Option<Instant>,
    /// At least one backend answered.
    answered: bool,
    /// At least one backend has the database (else delivery creates it with `autogen`).
    exists: bool,
    rps: Vec<RetentionPolicy>,
    /// `measurement \xff field` → the one type the backends store it with.
    fields: FxHashMap<Box<[u8]>, FieldType>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct RetentionPolicy {
    name: String,
    /// 0 for infinite.
    duration_ns: i64,
    shard_group_ns: i64,
    default: bool,
}

/// `measurement \xff field` → type.
type FieldTypes = FxHashMap<Box<[u8]>, FieldType>;

/// Field types the proxy accepted, per retention policy and shard group start.
#[derive(Debug, Default)]
struct Accepted {
    groups: FxHashMap<Box<str>, FxHashMap<i64, FieldTypes>>,
    len: usize,
}

impl Accepted {
    fn get(&self, rp: &str, group: i64, key: &[u8]) -> Option<FieldType> {
        self.groups.get(rp)?.get(&group)?.get(key).copied()
    }

    fn insert(&mut self, rp: &str, group: i64, key: Box<[u8]>, kind: FieldType) {
        let fields = self
            .groups
            .entry(Box::from(rp))
            .or_default()
            .entry(group)
            .or_default();
        if fields.insert(key, kind).is_none() {
            self.len += 1;
        }
        while self.len > MAX_FIELDS {
            let oldest = self
                .groups
                .iter()
                .flat_map(|(rp, groups)| groups.keys().map(move |g| (*g, rp.clone())))
                .min();
            let Some((group, rp)) = oldest else { break };
            let dropped = self
                .groups
                .get_mut(&rp)
                .and_then(|groups| groups.remove(&group))
                .map_or(0, |fields| fields.len());
            self.len -= dropped;
        }
    }
}

/// Why a write request is refused as a whole, before anything is queued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Two lines bring one new field with two types (influxd stores nothing of the batch).
    #[error("field type conflict")]
    FieldTypeConflict,
    /// The `rp` parameter names no retention policy of the database (influxd answers 500).
    #[error("retention policy not found: {0}")]
    RetentionPolicyNotFound(String),
}

impl Schema {
    /// The database's schema, asked from `backends` first if it is not known yet (or no backend
    /// answered last time, or `rp` is not among its retention policies); refreshed in the
    /// background once older than [`REFRESH`]. Must run on an actix runtime.
    pub async fn prepare(
        &self,
        backends: impl FnOnce() -> Vec<Arc<BackendHandle>>,
        db: &str,
        rp: &str,
    ) -> Arc<DbSchema> {
        let current = self.dbs.read().get(db).cloned();
        let state = match current {
            Some(state) => state,
            None => {
                let known = fetch(&backends(), db).await;
                let fresh = Arc::new(DbSchema::new(known));
                return self
                    .dbs
                    .write()
                    .entry(db.to_string())
                    .or_insert(fresh)
                    .clone();
            }
        };
        let known = state.known.load_full();
        let age = known.asked.map_or(Duration::MAX, |t| t.elapsed());
        let missing_rp = !rp.is_empty() && known.answered && known.rp(rp).is_none();
        if (!known.answered || missing_rp) && age >= RETRY {
            // A write waits for this answer: without it the verdict would be a guess.
            state.known.store(Arc::new(fetch(&backends(), db).await));
        } else if age >= REFRESH && !state.refreshing.swap(true, Ordering::AcqRel) {
            let (state, db, backends) = (state.clone(), db.to_string(), backends());
            actix_web::rt::spawn(async move {
                state.known.store(Arc::new(fetch(&backends, &db).await));
                state.refreshing.store(false, Ordering::Release);
            });
        }
        state
    }

    /// Forgets a database (a statement changed its schema); its next write asks again.
    pub fn forget(&self, db: &str) {
        self.dbs.write().remove(db);
    }
}

impl Known {
    fn rp(&self, name: &str) -> Option<&RetentionPolicy> {
        self.rps.iter().find(|r| r.name == name)
    }
}

/// Asks every active backend; merges the answers.
async fn fetch(backends: &[Arc<BackendHandle>], db: &str) -> Known {
    let q = format!(
        "SHOW RETENTION POLICIES ON {0}; SHOW FIELD KEYS ON {0}",
        quote_ident(db)
    );
    let asks = backends
        .iter()
        .filter(|h| h.backend.status.is_active())
        .map(|h| {
            let client = client::cached(&h.backend.target, FETCH_TIMEOUT);
            let q = q.clone();
            async move { client.query(db, &q).await }
        });
    let mut known = Known {
        asked: Some(Instant::now()),
        ..Known::default()
    };
    let mut types: FxHashMap<Box<[u8]>, Option<FieldType>> = FxHashMap::default();
    for answer in join_all(asks).await {
        match answer {
            Ok(body) => merge_answer(&body, &mut known, &mut types),
            Err(e) => {
                tracing::debug!(db, error = %e, "Schema query failed on a backend.");
            }
        }
    }
    known.fields = types
        .into_iter()
        .filter_map(|(k, t)| t.map(|t| (k, t)))
        .take(MAX_FIELDS)
        .collect();
    if !known.exists {
        known.rps = vec![RetentionPolicy {
            name: "autogen".into(),
            duration_ns: 0,
            shard_group_ns: DEFAULT_SHARD_GROUP,
            default: true,
        }];
    }
    tracing::debug!(
        db,
        answered = known.answered,
        exists = known.exists,
        fields = known.fields.len(),
        "Schema learned from the backends."
    );
    known
}

/// Folds one backend's answer to [`fetch`]'s two statements into `known` and `types`.
fn merge_answer(
    body: &Value,
    known: &mut Known,
    types: &mut FxHashMap<Box<[u8]>, Option<FieldType>>,
) {
    let results = body.get("results").and_then(Value::as_array);
    let (Some(rps), Some(fields)) = (
        results.and_then(|r| r.first()),
        results.and_then(|r| r.get(1)),
    ) else {
        return;
    };
    known.answered = true;
    if rps.get("error").is_some() {
        // `database not found` on this backend.
        return;
    }
    known.exists = true;
    for row in values(rps) {
        if let Some(rp) = retention_policy(row) {
            if known.rp(&rp.name).is_none() {
                known.rps.push(rp);
            }
        }
    }
    for series in fields
        .get("series")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let Some(measurement) = series.get("name").and_then(Value::as_str) else {
            continue;
        };
        for row in series
            .get("values")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let (Some(field), Some(kind)) = (
                row.get(0).and_then(Value::as_str),
                row.get(1)
                    .and_then(Value::as_str)
                    .and_then(FieldType::from_name),
            ) else {
                continue;
            };
            let key = field_key(measurement.as_bytes(), field.as_bytes());
            types
                .entry(key.into_boxed_slice())
                .and_modify(|t| {
                    if *t != Some(kind) {
                        *t = None;
                    }
                })
                .or_insert(Some(kind));
        }
    }
}

fn values(result: &Value) -> impl Iterator<Item = &Value> {
    result
        .get("series")
        .and_then(Value::as_array)
        .and_then(|s| s.first())
        .and_then(|s| s.get("values"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

/// One row of `SHOW RETENTION POLICIES`: name, duration, shardGroupDuration, replicaN, default.
fn retention_policy(row: &Value) -> Option<RetentionPolicy> {
    Some(RetentionPolicy {
        name: row.get(0)?.as_str()?.to_string(),
        duration_ns: go_duration_ns(row.get(1)?.as_str()?)?,
        shard_group_ns: go_duration_ns(row.get(2)?.as_str()?)?,
        default: row.get(4)?.as_bool()?,
    })
}

/// Parses Go's `time.Duration.String` form as influxd prints durations (`168h0m0s`, `1h0m0s`,
/// `30m0s`, `0s`).
fn go_duration_ns(s: &str) -> Option<i64> {
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

/// The key of a field in the maps: measurement, a byte no UTF-8 text has, field.
fn field_key(measurement: &[u8], field: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(measurement.len() + 1 + field.len());
    key.extend_from_slice(measurement);
    key.push(0xff);
    key.extend_from_slice(field);
    key
}

/// Start of the shard group holding `ns` for groups of `group_ns` (Go's `time.Truncate`).
fn shard_group_start(ns: i64, group_ns: i64) -> i64 {
    if group_ns <= 0 {
        return 0;
    }
    let since_zero = i128::from(ns) + GO_ZERO_TO_EPOCH_NS;
    let start = since_zero - since_zero.rem_euclid(i128::from(group_ns)) - GO_ZERO_TO_EPOCH_NS;
    i64::try_from(start).unwrap_or(i64::MIN)
}

/// The verdict on one line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// influxd stores it.
    Keep,
    /// influxd drops it; the reason is in the request's [`Finished`].
    Drop,
}

/// The schema verdicts of one write request (influxd's `partial write` answer).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Finished {
    /// Points dropped by the storage checks (influxd reports these, with the first reason in
    /// its order, tags before fields, over points beyond the retention policy).
    pub dropped: usize,
    /// The first reason, as influxd words it.
    pub reason: Option<String>,
    /// Points older than the retention policy.
    pub beyond_retention: usize,
}

impl Finished {
    /// influxd's answer text, `None` when nothing was dropped.
    pub fn message(&self) -> Option<String> {
        match (&self.reason, self.beyond_retention) {
            (Some(reason), _) => Some(format!("partial write: {reason} dropped={}", self.dropped)),
            (None, n) if n > 0 => Some(format!(
                "partial write: points beyond retention policy dropped={n}"
            )),
            _ => None,
        }
    }
}

/// Checks the lines of one write request against a database's schema, in body order.
#[allow(missing_debug_implementations)]
pub struct Check<'s> {
    state: &'s DbSchema,
    known: Arc<Known>,
    accepted: parking_lot::RwLockReadGuard<'s, Accepted>,
    rp: RetentionPolicy,
    precision_ns: i64,
    now_ns: i64,
    /// New fields of this request: (shard group, key) → type.
    pending: FxHashMap<(i64, Box<[u8]>), FieldType>,
    conflict: bool,
    key: Vec<u8>,
    tag_reason: Option<String>,
    field_reason: Option<String>,
    dropped: usize,
    beyond_retention: usize,
}

impl DbSchema {
    fn new(known: Known) -> DbSchema {
        DbSchema {
            known: ArcSwap::from_pointee(known),
            accepted: RwLock::default(),
            refreshing: AtomicBool::new(false),
        }
    }

    /// A database the backends told nothing about: only what its own requests show is checked.
    pub fn unknown() -> DbSchema {
        DbSchema::new(Known::default())
    }

    /// Starts checking a request for retention policy `rp` (empty: the default).
    pub fn check(&self, rp: &str, precision: Precision, now_ns: i64) -> Result<Check<'_>, Refusal> {
        let known = self.known.load_full();
        let policy = match rp {
            "" => known.rps.iter().find(|r| r.default).cloned(),
            name => known.rp(name).cloned(),
        };
        let policy = match policy {
            Some(p) => p,
            None if !known.answered || rp.is_empty() => RetentionPolicy {
                name: rp.to_string(),
                duration_ns: 0,
                shard_group_ns: DEFAULT_SHARD_GROUP,
                default: true,
            },
            None => return Err(Refusal::RetentionPolicyNotFound(rp.to_string())),
        };
        Ok(Check {
            state: self,
            known,
            accepted: self.accepted.read(),
            rp: policy,
            precision_ns: precision.nanos(),
            now_ns,
            pending: FxHashMap::default(),
            conflict: false,
            key: Vec::new(),
            tag_reason: None,
            field_reason: None,
            dropped: 0,
            beyond_retention: 0,
        })
    }
}

impl Check<'_> {
    /// influxd's verdict on one parsed line (`line` the bytes it was parsed from).
    pub fn line(&mut self, line: &[u8], parsed: &Line<'_>) -> Verdict {
        let ns = parsed
            .timestamp
            .and_then(|t| t.checked_mul(self.precision_ns))
            .unwrap_or(self.now_ns);
        if self.rp.duration_ns > 0 && ns < self.now_ns.saturating_sub(self.rp.duration_ns) {
            self.beyond_retention += 1;
            return Verdict::Drop;
        }
        let name = parsed.influx_measurement();
        if parsed.has_time_tag(line) {
            self.dropped += 1;
            self.tag_reason
                .get_or_insert_with(|| time_key_reason("tag key", "tag", &name));
            return Verdict::Drop;
        }
        let group = shard_group_start(ns, self.rp.shard_group_ns);
        let mut any_field = false;
        let mut conflict = None;
        let mut new_fields: Vec<(Box<[u8]>, FieldType)> = Vec::new();
        for (field, kind) in parsed.fields(line) {
            if &*field == b"time" {
                continue;
            }
            any_field = true;
            if conflict.is_some() {
                continue;
            }
            self.key.clear();
            self.key.extend_from_slice(&name);
            self.key.push(0xff);
            self.key.extend_from_slice(&field);
            match self.known_type(group) {
                Some(stored) if stored != kind => conflict = Some((field, kind, stored)),
                Some(_) => {}
                None => new_fields.push((self.key.clone().into_boxed_slice(), kind)),
            }
        }
        if !any_field {
            self.dropped += 1;
            self.field_reason
                .get_or_insert_with(|| time_key_reason("field name", "field", &name));
            return Verdict::Drop;
        }
        if let Some((field, kind, stored)) = conflict {
            self.dropped += 1;
            self.field_reason.get_or_insert_with(|| {
                format!(
                    "field type conflict: input field \"{}\" on measurement \"{}\" is type {}, already exists as type {}",
                    String::from_utf8_lossy(&field),
                    String::from_utf8_lossy(&name),
                    kind.name(),
                    stored.name()
                )
            });
            return Verdict::Drop;
        }
        for (key, kind) in new_fields {
            // One entry lookup: a request's first lines bring every field it has.
            match self.pending.entry((group, key)) {
                Entry::Occupied(first) if *first.get() != kind => self.conflict = true,
                Entry::Occupied(_) => {}
                Entry::Vacant(slot) => {
                    slot.insert(kind);
                }
            }
        }
        Verdict::Keep
    }

    /// The type the shard group already has for the field in `self.key`.
    fn known_type(&self, group: i64) -> Option<FieldType> {
        self.accepted
            .get(&self.rp.name, group, &self.key)
            .or_else(|| self.known.fields.get(self.key.as_slice()).copied())
    }

    /// Ends the request: its new fields become known (the caller queues the kept lines), or the
    /// whole request is refused when two of its lines brought one new field with two types.
    pub fn finish(self) -> Result<Finished, Refusal> {
        if self.conflict {
            return Err(Refusal::FieldTypeConflict);
        }
        let Check {
            state,
            accepted,
            rp,
            pending,
            tag_reason,
            field_reason,
            dropped,
            beyond_retention,
            ..
        } = self;
        drop(accepted);
        if !pending.is_empty() {
            let mut accepted = state.accepted.write();
            for ((group, key), kind) in pending {
                // Another request may have brought the same field meanwhile; the first stays,
                // and a delivery refusal is then the last resort (isolated, dead-lettered).
                if accepted.get(&rp.name, group, &key).is_none() {
                    accepted.insert(&rp.name, group, key, kind);
                }
            }
        }
        Ok(Finished {
            dropped,
            reason: tag_reason.or(field_reason),
            beyond_retention,
        })
    }
}

/// influxd's text for a tag key or the only field named `time`.
fn time_key_reason(what: &str, kind: &str, measurement: &[u8]) -> String {
    format!(
        "invalid {what}: input {kind} \"time\" on measurement \"{}\" is invalid",
        String::from_utf8_lossy(measurement)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::line_protocol::parse;

    /// Checks `body` (one line per `\n`) as one request; the kept lines and the verdict.
    fn check(db: &DbSchema, body: &str) -> Result<(Vec<String>, Finished), Refusal> {
        let mut c = db.check("", Precision::Nanoseconds, 1_000)?;
        let mut kept = Vec::new();
        for line in body.lines() {
            let parsed = parse(line.as_bytes()).unwrap();
            if c.line(line.as_bytes(), &parsed) == Verdict::Keep {
                kept.push(line.to_string());
            }
        }
        c.finish().map(|f| (kept, f))
    }

    #[test]
    fn a_type_accepted_once_refuses_another_in_the_same_shard_group_only() {
        let db = DbSchema::unknown();
        check(&db, "x f=1i 1").unwrap();
        let week = DEFAULT_SHARD_GROUP;
        let (kept, f) = check(&db, &format!("x f=1 2\ny g=1 3\nx f=2.5 {week}")).unwrap();
        assert_eq!(kept, ["y g=1 3".to_string(), format!("x f=2.5 {week}")]);
        assert_eq!(
            f.message().unwrap(),
            "partial write: field type conflict: input field \"f\" on measurement \"x\" is type float, already exists as type integer dropped=1"
        );
    }

    #[test]
    fn a_new_field_with_two_types_in_one_request_refuses_it_whole() {
        let db = DbSchema::unknown();
        assert_eq!(
            check(&db, "x f=1i 1\nx f=\"s\" 2\nz g=1 3").unwrap_err(),
            Refusal::FieldTypeConflict
        );
        // Nothing of it became known.
        check(&db, "x f=\"s\" 5").unwrap();
    }

    #[test]
    fn time_tags_are_reported_before_time_fields_as_influxd_does() {
        let db = DbSchema::unknown();
        let (kept, f) = check(&db, "m time=1 1\nm,time=a f=1 2\nm f=2,time=4 3").unwrap();
        assert_eq!(kept, ["m f=2,time=4 3"]);
        assert_eq!(
            f.message().unwrap(),
            "partial write: invalid tag key: input tag \"time\" on measurement \"m\" is invalid dropped=2"
        );
        let (_, f) = check(&db, "m time=1 1").unwrap();
        assert_eq!(
            f.message().unwrap(),
            "partial write: invalid field name: input field \"time\" on measurement \"m\" is invalid dropped=1"
        );
    }

    #[test]
    fn shard_groups_start_where_influxd_starts_them() {
        // influxd 1.6.7: the first 7-day group of 1970 started on Monday 1969-12-29.
        let monday = -3 * 24 * 3600 * 1_000_000_000;
        assert_eq!(shard_group_start(1, DEFAULT_SHARD_GROUP), monday);
        assert_eq!(
            shard_group_start(4 * 24 * 3600 * 1_000_000_000 - 1, DEFAULT_SHARD_GROUP),
            monday
        );
        assert_eq!(
            shard_group_start(4 * 24 * 3600 * 1_000_000_000, DEFAULT_SHARD_GROUP),
            monday + DEFAULT_SHARD_GROUP
        );
        assert_eq!(
            shard_group_start(3_600_000_000_001, 3_600_000_000_000),
            3_600_000_000_000
        );
    }

    #[test]
    fn go_durations_parse_as_influxd_prints_them() {
        assert_eq!(go_duration_ns("168h0m0s"), Some(DEFAULT_SHARD_GROUP));
        assert_eq!(go_duration_ns("1h0m0s"), Some(3_600_000_000_000));
        assert_eq!(go_duration_ns("30m0s"), Some(1_800_000_000_000));
        assert_eq!(go_duration_ns("0s"), Some(0));
        assert_eq!(go_duration_ns("1x"), None);
    }
}
