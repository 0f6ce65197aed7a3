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
//!   shard group, which is where influxd keeps field types; and every statement that changes
//!   what the verdicts depend on ([`Change`]: databases, retention policies, dropped
//!   measurements), applied as influxd applies it.
//!
//! # Statements accepted before the backends run them
//! A statement runs at once only on a backend with nothing queued; elsewhere it waits in the
//! queue behind the writes accepted before it, and the backends' answers show it only once it
//! is delivered. A client that creates a retention policy and writes into it at once used to
//! get `retention policy not found` for as long (influxd answers 204 to the same sequence),
//! and a measurement dropped and written with another field type a `field type conflict`.
//! So an accepted statement is applied to what the backends said, and again on top of every
//! later answer, until it has left every queue it was appended to
//! ([`wal::Queue::has_removed`]) and an answer asked after that shows its effect itself.
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
//! the least likely to be written again) and the backends' list is cut. At most
//! [`MAX_CHANGES`] accepted statements wait per database; past that the oldest is left to the
//! backends' next answer.

use std::collections::hash_map::Entry;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use futures_util::future::join_all;
use parking_lot::{Mutex, RwLock};
use rustc_hash::FxHashMap;

use crate::answer::PolicyRow;
use crate::backend::catalog::{self, DbLayout};
use crate::backend::client;
use crate::circle::BackendHandle;
use crate::influxql::{Source, Statement, StatementKind};
use crate::line_protocol::{FieldType, Line, Precision};
use crate::wal;

/// How often a database's schema is asked again from the backends (in the background, while
/// the previous answer keeps serving).
pub(crate) const REFRESH: Duration = Duration::from_secs(60);

/// How long a database is left alone after no backend answered, or after a refused retention
/// policy, before the next write asks again.
const RETRY: Duration = Duration::from_secs(1);

/// Bound on field types kept per database and source (see the module doc).
pub(crate) const MAX_FIELDS: usize = 100_000;

/// Longest the first write to a database waits for the backends' answer.
const FETCH_TIMEOUT: Duration = Duration::from_secs(2);

/// Bound on accepted statements waiting for the backends per database (see the module doc).
pub(crate) const MAX_CHANGES: usize = 1_000;

/// influxd's shortest retention policy duration (`MinRetentionPolicyDuration`).
const MIN_RP_DURATION: i64 = 3_600_000_000_000;

/// A day: the default shard group duration influxd gives a policy of 2 to 180 days.
const DAY: i64 = 24 * 3_600_000_000_000;

/// Shard group duration influxd gives a retention policy created without one and infinite
/// duration (`autogen`): 7 days.
const DEFAULT_SHARD_GROUP: i64 = 7 * 24 * 3600 * 1_000_000_000;

/// Nanoseconds from Go's zero time (0001-01-01) to the Unix epoch: influxd's shard groups
/// start at multiples of their duration counted from there (`time.Truncate`).
const GO_ZERO_TO_EPOCH_NS: i128 = 62_135_596_800 * 1_000_000_000;

/// Every database's schema as far as it is known.
#[derive(Debug, Default)]
pub(crate) struct Schema {
    dbs: RwLock<FxHashMap<String, Arc<DbSchema>>>,
}

/// One database.
#[derive(Debug)]
pub(crate) struct DbSchema {
    /// What the backends said, with the accepted statements of `changes` applied.
    known: ArcSwap<Known>,
    accepted: RwLock<Accepted>,
    /// Accepted statements the backends' answers may not show yet, oldest first.
    changes: Mutex<Vec<Pending>>,
    /// `changes` is not empty (read on every write without the lock).
    has_changes: AtomicBool,
    refreshing: AtomicBool,
}

/// An accepted statement, and where it waits for delivery.
#[derive(Debug)]
struct Pending {
    id: u64,
    change: Change,
    /// The queues it was appended to, with its sequence number in them (empty: it ran at
    /// once on every backend).
    queued: Vec<(wal::Queue, u64)>,
}

impl Pending {
    /// Delivered (or refused) everywhere: an answer asked from now on shows its effect.
    fn is_settled(&self) -> bool {
        self.queued
            .iter()
            .all(|(queue, seq)| queue.has_removed(*seq))
    }
}

/// What the backends said about a database.
#[derive(Debug, Default, Clone)]
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

/// A retention policy, as far as verdicts on writes depend on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RetentionPolicy {
    name: String,
    /// 0 for infinite.
    duration_ns: i64,
    shard_group_ns: i64,
    default: bool,
}

impl RetentionPolicy {
    /// influxd accepts these durations (`ErrRetentionPolicyDurationTooLow`,
    /// `ErrIncompatibleDurations`).
    fn is_valid(&self) -> bool {
        self.duration_ns == 0
            || (self.duration_ns >= MIN_RP_DURATION && self.duration_ns >= self.shard_group_ns)
    }
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

    /// Forgets what influxd forgets when it applies `change`.
    fn apply(&mut self, change: &Change) {
        match change {
            Change::DropDatabase => *self = Accepted::default(),
            Change::DropRetentionPolicy(name) => {
                self.groups.remove(name.as_str());
            }
            Change::DropMeasurement(name) => {
                let prefix = field_key(name.as_bytes(), b"");
                for groups in self.groups.values_mut() {
                    for fields in groups.values_mut() {
                        fields.retain(|key, _| !key.starts_with(&prefix));
                    }
                }
            }
            Change::CreateDatabase(_)
            | Change::CreateRetentionPolicy(_)
            | Change::AlterRetentionPolicy { .. }
            | Change::Unknown => return,
        }
        self.len = self
            .groups
            .values()
            .flat_map(|groups| groups.values())
            .map(|fields| fields.len())
            .sum();
    }
}

/// A statement that changes what influxd's verdicts on a write depend on, as influxd applies
/// it (`influxdb/services/meta/data.go` 1.6: durations normalised and checked the same way).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Change {
    /// `CREATE DATABASE [WITH ...]`: its policy, when the database is new.
    CreateDatabase(RetentionPolicy),
    /// `DROP DATABASE`: delivery creates it again, with `autogen`.
    DropDatabase,
    /// `CREATE RETENTION POLICY`.
    CreateRetentionPolicy(RetentionPolicy),
    /// `ALTER RETENTION POLICY`: what it sets (`None`: unchanged).
    AlterRetentionPolicy {
        /// The policy.
        name: String,
        /// `DURATION`, 0 for infinite.
        duration_ns: Option<i64>,
        /// `SHARD DURATION` as written.
        shard_duration_ns: Option<i64>,
        /// `DEFAULT`.
        default: bool,
    },
    /// `DROP RETENTION POLICY`.
    DropRetentionPolicy(String),
    /// `DROP MEASUREMENT`: its field types go with it.
    DropMeasurement(String),
    /// A schema statement whose effect the proxy cannot tell (influxd refuses it, or it
    /// failed somewhere): only the backends' next answer says.
    Unknown,
}

impl Change {
    /// What `stmt` changes, `None` for statements that change nothing the verdicts depend on
    /// (`DELETE` and `DROP SERIES`: influxd 1.6 keeps the field types of a measurement whose
    /// series are all deleted).
    pub(crate) fn of(stmt: &Statement) -> Option<Change> {
        let rp = || stmt.retention_policy.clone().unwrap_or_default();
        let settings = stmt.retention.as_ref();
        let change = match stmt.kind {
            StatementKind::CreateDatabase => settings
                .and_then(|s| {
                    let name = stmt.retention_policy.as_deref().unwrap_or("autogen");
                    new_policy(name, s.duration_ns.unwrap_or(0), s.shard_duration_ns, true)
                })
                .map_or(Change::Unknown, Change::CreateDatabase),
            StatementKind::DropDatabase => Change::DropDatabase,
            StatementKind::CreateRetentionPolicy => settings
                .and_then(|s| new_policy(&rp(), s.duration_ns?, s.shard_duration_ns, s.default))
                .map_or(Change::Unknown, Change::CreateRetentionPolicy),
            StatementKind::AlterRetentionPolicy => match settings {
                Some(s) => Change::AlterRetentionPolicy {
                    name: rp(),
                    duration_ns: s.duration_ns,
                    shard_duration_ns: s.shard_duration_ns,
                    default: s.default,
                },
                None => Change::Unknown,
            },
            StatementKind::DropRetentionPolicy => Change::DropRetentionPolicy(rp()),
            StatementKind::DropMeasurement => match stmt.sources.first() {
                Some(Source::Measurement { name, .. }) => Change::DropMeasurement(name.clone()),
                _ => Change::Unknown,
            },
            _ => return None,
        };
        Some(change)
    }
}

/// A policy as influxd creates it, `None` when influxd refuses these durations.
fn new_policy(
    name: &str,
    duration_ns: i64,
    shard_ns: Option<i64>,
    default: bool,
) -> Option<RetentionPolicy> {
    let policy = RetentionPolicy {
        name: name.to_string(),
        duration_ns,
        shard_group_ns: normalised_shard_group(shard_ns.unwrap_or(0), duration_ns),
        default,
    };
    policy.is_valid().then_some(policy)
}

/// influxd's `normalisedShardDuration`: a shard group duration left out (0) follows the
/// policy's duration, one under an hour becomes an hour.
fn normalised_shard_group(shard_ns: i64, duration_ns: i64) -> i64 {
    let default_for = |d: i64| {
        if d == 0 || d >= 180 * DAY {
            DEFAULT_SHARD_GROUP
        } else if d >= 2 * DAY {
            DAY
        } else {
            MIN_RP_DURATION
        }
    };
    match shard_ns {
        0 => default_for(duration_ns),
        s if s < MIN_RP_DURATION => default_for(MIN_RP_DURATION),
        s => s,
    }
}

/// Why a write request is refused as a whole, before anything is queued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum WriteRefusal {
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
    pub(crate) async fn prepare(
        &self,
        backends: impl FnOnce() -> Vec<Arc<BackendHandle>>,
        db: &str,
        rp: &str,
    ) -> Arc<DbSchema> {
        let current = self.dbs.read().get(db).cloned();
        let state = match current {
            Some(state) => state,
            None => {
                let fresh = Arc::new(DbSchema::new(Known::default()));
                let state = self
                    .dbs
                    .write()
                    .entry(db.to_string())
                    .or_insert(fresh)
                    .clone();
                state.refresh(&backends(), db).await;
                return state;
            }
        };
        let known = state.known.load_full();
        let age = known.asked.map_or(Duration::MAX, |t| t.elapsed());
        let missing_rp = !rp.is_empty() && known.answered && known.rp(rp).is_none();
        if (!known.answered || missing_rp) && age >= RETRY {
            // A write waits for this answer: without it the verdict would be a guess.
            state.refresh(&backends(), db).await;
        } else if (age >= REFRESH || (age >= RETRY && state.has_settled_changes()))
            && !state.refreshing.swap(true, Ordering::AcqRel)
        {
            let (state, db, backends) = (state.clone(), db.to_string(), backends());
            actix_web::rt::spawn(async move {
                state.refresh(&backends, &db).await;
                state.refreshing.store(false, Ordering::Release);
            });
        }
        state
    }

    /// Records a statement the proxy accepted for `db`: ran at once on some backends, and
    /// appended to the queues of the others (`queued`: each with the statement's sequence
    /// number there). Writes are checked as influxd will check them once it has run
    /// everywhere (see the module doc).
    pub(crate) fn accepted(&self, db: &str, change: Change, queued: Vec<(wal::Queue, u64)>) {
        let state = self
            .dbs
            .write()
            .entry(db.to_string())
            .or_insert_with(|| Arc::new(DbSchema::new(Known::default())))
            .clone();
        state.accept(change, queued);
    }
}

impl Known {
    fn rp(&self, name: &str) -> Option<&RetentionPolicy> {
        self.rps.iter().find(|r| r.name == name)
    }

    /// `change` applied as influxd applies it (a statement influxd would refuse changes
    /// nothing).
    fn apply(&mut self, change: &Change) {
        // Nobody answered yet: whether the database exists is not known either.
        let exists = self.exists || !self.answered;
        match change {
            Change::CreateDatabase(rp) if !self.exists => {
                self.exists = true;
                self.rps = vec![rp.clone()];
            }
            Change::DropDatabase => {
                self.exists = false;
                self.rps = vec![autogen()];
                self.fields.clear();
            }
            Change::CreateRetentionPolicy(rp) if exists && self.rp(&rp.name).is_none() => {
                self.exists = true;
                self.add_policy(rp.clone());
            }
            Change::AlterRetentionPolicy {
                name,
                duration_ns,
                shard_duration_ns,
                default,
            } => {
                let Some(old) = self.rp(name) else { return };
                let mut rp = old.clone();
                if let Some(d) = duration_ns {
                    rp.duration_ns = *d;
                }
                if let Some(s) = shard_duration_ns {
                    rp.shard_group_ns = normalised_shard_group(*s, rp.duration_ns);
                }
                rp.default |= *default;
                if rp.is_valid() {
                    self.rps.retain(|r| r.name != *name);
                    self.add_policy(rp);
                }
            }
            Change::DropRetentionPolicy(name) => self.rps.retain(|r| r.name != *name),
            Change::DropMeasurement(name) => {
                let prefix = field_key(name.as_bytes(), b"");
                self.fields.retain(|key, _| !key.starts_with(&prefix));
            }
            Change::CreateDatabase(_) | Change::CreateRetentionPolicy(_) | Change::Unknown => {}
        }
    }

    /// Adds a policy; a new default replaces the old one.
    fn add_policy(&mut self, rp: RetentionPolicy) {
        if rp.default {
            for other in &mut self.rps {
                other.default = false;
            }
        }
        self.rps.push(rp);
    }
}

/// The policy influxd gives a database it creates without one (and delivery creates a
/// missing database that way).
fn autogen() -> RetentionPolicy {
    RetentionPolicy {
        name: "autogen".into(),
        duration_ns: 0,
        shard_group_ns: DEFAULT_SHARD_GROUP,
        default: true,
    }
}

/// Asks every active backend; merges the answers.
async fn fetch(backends: &[Arc<BackendHandle>], db: &str) -> Known {
    let asks = backends
        .iter()
        .filter(|h| h.backend.status.is_active())
        .map(|h| async move {
            let client = client::cached(&h.backend.target, FETCH_TIMEOUT);
            catalog::policies_and_fields(&client, db).await
        });
    let mut known = Known {
        asked: Some(Instant::now()),
        ..Known::default()
    };
    let mut types: FxHashMap<Box<[u8]>, Option<FieldType>> = FxHashMap::default();
    for answer in join_all(asks).await {
        match answer {
            Ok(layout) => merge_layout(layout.as_ref(), &mut known, &mut types),
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
        known.rps = vec![autogen()];
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

/// Folds one backend's answer (`None`: it lacks the database) into `known` and `types`.
fn merge_layout(
    layout: Option<&DbLayout>,
    known: &mut Known,
    types: &mut FxHashMap<Box<[u8]>, Option<FieldType>>,
) {
    known.answered = true;
    let Some(layout) = layout else {
        return;
    };
    known.exists = true;
    for rp in layout.policies.iter().filter_map(retention_policy) {
        if known.rp(&rp.name).is_none() {
            known.rps.push(rp);
        }
    }
    for (measurement, field, kind) in &layout.fields {
        let Some(kind) = FieldType::from_name(kind) else {
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

/// One row of `SHOW RETENTION POLICIES`, as far as verdicts on writes depend on it.
fn retention_policy(row: &PolicyRow) -> Option<RetentionPolicy> {
    Some(RetentionPolicy {
        name: row.name.clone(),
        duration_ns: row.duration_ns()?,
        shard_group_ns: row.shard_group_ns()?,
        default: row.default,
    })
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
pub(crate) enum Verdict {
    /// influxd stores it.
    Keep,
    /// influxd drops it; the reason is in the request's [`Finished`].
    Drop,
}

/// The schema verdicts of one write request (influxd's `partial write` answer).
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Finished {
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
    pub(crate) fn message(&self) -> Option<String> {
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
pub(crate) struct Check<'s> {
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
            changes: Mutex::default(),
            has_changes: AtomicBool::new(false),
            refreshing: AtomicBool::new(false),
        }
    }

    /// Asks the backends again; the accepted statements they may not show yet are applied
    /// to their answer.
    async fn refresh(&self, backends: &[Arc<BackendHandle>], db: &str) {
        // Settled before the question was asked: the answer shows them.
        let settled = self.settled_changes();
        let answer = fetch(backends, db).await;
        self.learned(answer, &settled);
    }

    /// Ids of the accepted statements delivered everywhere.
    fn settled_changes(&self) -> Vec<u64> {
        if !self.has_changes.load(Ordering::Acquire) {
            return Vec::new();
        }
        let changes = self.changes.lock();
        changes
            .iter()
            .filter(|p| p.is_settled())
            .map(|p| p.id)
            .collect()
    }

    /// Some accepted statement was delivered everywhere: an answer asked now would show it.
    fn has_settled_changes(&self) -> bool {
        self.has_changes.load(Ordering::Acquire)
            && self.changes.lock().iter().any(Pending::is_settled)
    }

    /// Takes the backends' `answer` (asked after the statements `settled` were delivered):
    /// the statements still on their way are applied to it.
    fn learned(&self, mut answer: Known, settled: &[u64]) {
        let mut changes = self.changes.lock();
        if answer.answered {
            changes.retain(|p| !settled.contains(&p.id));
        }
        for p in changes.iter() {
            answer.apply(&p.change);
        }
        self.has_changes
            .store(!changes.is_empty(), Ordering::Release);
        self.known.store(Arc::new(answer));
    }

    /// See [`Schema::accepted`].
    fn accept(&self, change: Change, queued: Vec<(wal::Queue, u64)>) {
        static IDS: AtomicU64 = AtomicU64::new(0);
        let mut changes = self.changes.lock();
        let mut known = Known::clone(&self.known.load());
        known.apply(&change);
        self.accepted.write().apply(&change);
        self.known.store(Arc::new(known));
        if changes.len() >= MAX_CHANGES {
            changes.remove(0);
        }
        changes.push(Pending {
            id: IDS.fetch_add(1, Ordering::Relaxed),
            change,
            queued,
        });
        self.has_changes.store(true, Ordering::Release);
    }

    /// A database the backends told nothing about: only what its own requests show is checked.
    #[cfg(test)]
    pub(crate) fn unknown() -> DbSchema {
        DbSchema::new(Known::default())
    }

    /// Starts checking a request for retention policy `rp` (empty: the default).
    pub(crate) fn check(
        &self,
        rp: &str,
        precision: Precision,
        now_ns: i64,
    ) -> Result<Check<'_>, WriteRefusal> {
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
            None => return Err(WriteRefusal::RetentionPolicyNotFound(rp.to_string())),
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
    pub(crate) fn line(&mut self, line: &[u8], parsed: &Line<'_>) -> Verdict {
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
    pub(crate) fn finish(self) -> Result<Finished, WriteRefusal> {
        if self.conflict {
            return Err(WriteRefusal::FieldTypeConflict);
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
    fn check(db: &DbSchema, body: &str) -> Result<(Vec<String>, Finished), WriteRefusal> {
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
            WriteRefusal::FieldTypeConflict
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

    /// What influxd 1.6.7 made of each statement (`SHOW RETENTION POLICIES`), `None` where it
    /// refused it.
    #[test]
    fn policies_are_created_with_the_durations_influxd_gives_them() {
        const H: i64 = 3_600_000_000_000;
        let policy = |q: &str| match Change::of(&crate::influxql::classify(q).unwrap()) {
            Some(Change::CreateRetentionPolicy(rp) | Change::CreateDatabase(rp)) => Some((
                rp.name,
                rp.duration_ns / H,
                rp.shard_group_ns / H,
                rp.default,
            )),
            Some(Change::Unknown) => None,
            other => panic!("{q}: {other:?}"),
        };
        let on = |rest: &str| format!("CREATE RETENTION POLICY p ON d {rest}");
        let p = |d, s, default| Some(("p".to_string(), d, s, default));
        assert_eq!(policy(&on("DURATION 1d REPLICATION 1")), p(24, 1, false));
        assert_eq!(
            policy(&on("DURATION 3d REPLICATION 1 SHARD DURATION 30m")),
            p(72, 1, false)
        );
        assert_eq!(
            policy(&on("DURATION 1h30m REPLICATION 1 DEFAULT")),
            p(1, 1, true)
        );
        assert_eq!(
            policy(&on("DURATION INF REPLICATION 1 SHARD DURATION 2w")),
            p(0, 336, false)
        );
        assert_eq!(
            policy(&on("DURATION 200d REPLICATION 1")),
            p(4800, 168, false)
        );
        assert_eq!(
            policy(&on("DURATION 0s REPLICATION 1 SHARD DURATION 0s")),
            p(0, 168, false)
        );
        assert_eq!(policy(&on("DURATION 30m REPLICATION 1")), None);
        assert_eq!(
            policy(&on("DURATION 2h REPLICATION 1 SHARD DURATION 3h")),
            None
        );
        let db = |name: &str, d, s| Some((name.to_string(), d, s, true));
        assert_eq!(
            policy("CREATE DATABASE u WITH DURATION 3d NAME x"),
            db("x", 72, 24)
        );
        assert_eq!(
            policy("CREATE DATABASE v WITH SHARD DURATION 2h"),
            db("autogen", 0, 2)
        );
        assert_eq!(
            policy("CREATE DATABASE w WITH DURATION 1d"),
            db("autogen", 24, 1)
        );
        assert_eq!(policy("CREATE DATABASE w"), db("autogen", 0, 168));
        assert_eq!(
            Change::of(&crate::influxql::classify("DELETE FROM m").unwrap()),
            None
        );
    }

    /// A database the backends answered for, holding `autogen` and a float field `m.f`.
    fn answered() -> Known {
        let mut known = Known {
            asked: Some(Instant::now()),
            answered: true,
            exists: true,
            rps: vec![autogen()],
            fields: FxHashMap::default(),
        };
        known
            .fields
            .insert(field_key(b"m", b"f").into_boxed_slice(), FieldType::Float);
        known
    }

    fn change(q: &str) -> Change {
        Change::of(&crate::influxql::classify(q).unwrap()).unwrap()
    }

    #[test]
    fn an_accepted_policy_is_known_until_an_answer_asked_after_its_delivery_shows_it() {
        let db = DbSchema::new(answered());
        assert_eq!(
            db.check("py", Precision::Nanoseconds, 0).err(),
            Some(WriteRefusal::RetentionPolicyNotFound("py".into()))
        );
        db.accept(
            change("CREATE RETENTION POLICY py ON d DURATION 1d REPLICATION 1"),
            Vec::new(),
        );
        assert!(db.check("py", Precision::Nanoseconds, 0).is_ok());
        // The backends have not run it yet: their answer is taken, the statement kept on top.
        db.learned(answered(), &[]);
        assert!(db.check("py", Precision::Nanoseconds, 0).is_ok());
        assert!(db.has_settled_changes(), "it ran at once everywhere");
        let settled = db.settled_changes();
        // An answer asked after it settled is the truth (here: someone dropped it meanwhile).
        db.learned(answered(), &settled);
        assert!(db.check("py", Precision::Nanoseconds, 0).is_err());
        assert!(!db.has_settled_changes());
    }

    #[test]
    fn a_dropped_measurement_takes_its_field_types_with_it() {
        let db = DbSchema::new(answered());
        check(&db, "n g=1i 1").unwrap();
        assert!(check(&db, "m f=\"s\" 2").unwrap().1.message().is_some());
        assert!(check(&db, "n g=\"s\" 2").unwrap().1.message().is_some());
        db.accept(change("DROP MEASUREMENT m"), Vec::new());
        db.learned(answered(), &[]);
        let (kept, f) = check(&db, "m f=\"s\" 3\nn g=\"s\" 4").unwrap();
        assert_eq!(kept, ["m f=\"s\" 3"]);
        assert!(f.message().unwrap().contains("on measurement \"n\""));
        // The new type is the one now accepted.
        assert!(check(&db, "m f=2 5").unwrap().1.message().is_some());
    }

    #[test]
    fn a_new_database_takes_the_policy_its_statement_names() {
        let missing = Known {
            exists: false,
            rps: vec![autogen()],
            fields: FxHashMap::default(),
            ..answered()
        };
        let db = DbSchema::new(missing.clone());
        db.accept(
            change("CREATE DATABASE d WITH DURATION 30d NAME month"),
            Vec::new(),
        );
        db.learned(missing, &[]);
        let c = db.check("", Precision::Nanoseconds, 0).unwrap();
        assert_eq!(c.rp.name, "month");
        drop(c);
        assert!(db.check("month", Precision::Nanoseconds, 0).is_ok());
        assert!(db.check("autogen", Precision::Nanoseconds, 0).is_err());
        // Dropped again: delivery would create it with autogen.
        db.accept(change("DROP DATABASE d"), Vec::new());
        assert!(db.check("month", Precision::Nanoseconds, 0).is_err());
        assert_eq!(
            db.check("", Precision::Nanoseconds, 0).unwrap().rp.name,
            "autogen"
        );
    }

    #[test]
    fn altering_a_policy_changes_what_it_sets_and_moves_the_default() {
        const H: i64 = 3_600_000_000_000;
        let mut known = answered();
        known.apply(&change(
            "CREATE RETENTION POLICY a ON d DURATION 1d REPLICATION 1",
        ));
        known.apply(&change("ALTER RETENTION POLICY a ON d DURATION 1w"));
        let a = known.rp("a").unwrap().clone();
        assert_eq!(
            (a.duration_ns, a.shard_group_ns, a.default),
            (168 * H, H, false)
        );
        known.apply(&change(
            "ALTER RETENTION POLICY a ON d SHARD DURATION 2h DEFAULT",
        ));
        assert_eq!(known.rp("a").unwrap().shard_group_ns, 2 * H);
        assert!(known.rp("a").unwrap().default);
        assert!(!known.rp("autogen").unwrap().default);
        // influxd refuses a duration under the shard group's: nothing changes.
        known.apply(&change("ALTER RETENTION POLICY a ON d DURATION 1h"));
        assert_eq!(known.rp("a").unwrap().duration_ns, 168 * H);
        known.apply(&change("DROP RETENTION POLICY a ON d"));
        assert!(known.rp("a").is_none());
    }
}
