//! Anti-entropy, the repair: mends only the buckets [`super::antientropy`] found differing.
//!
//! Each differing bucket is mended in the direction that restores the union of the circles:
//!
//! - circles holding nothing in the bucket, while those holding something agree, get the
//!   bucket copied from the first holder ([`copy::copy_measurement`], chunked, streamed);
//! - otherwise the bucket of every circle is read (line protocol, as a copy reads it) and
//!   compared point by point and field by field (series and time are a point's identity):
//!   each circle gets exactly the fields it lacks. Where circles hold different values for
//!   one field of one point (a conflict), the value most circles hold wins, a tie going to the
//!   circle listed first in the config; every circle holding another value gets it, and the
//!   conflict is counted and shown (`/migrate/stats?type=repair`, the repair log).
//!
//! What is written goes through the destination backends' write-ahead queues, as every
//! migration's copies, paced to `anti_entropy_rate` points per second. Progress is kept in
//! `<data_dir>/anti-entropy.json` (the buckets, and how many are done) after every bucket: a
//! proxy restarted mid-repair resumes with the next bucket ([`resume`]), and the file is
//! removed when the repair ends.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use serde_json::{json, Value};
use tracing::{error, info, warn};

use super::antientropy::{self, Bucket, Scope};
use super::copy::{self, Appended, Pace};
use super::{JobKind, Jobs, MigrationLog, Start};
use crate::backend::catalog;
use crate::backend::client;
use crate::circle::BackendHandle;
use crate::cluster::Cluster;
use crate::line_protocol;

/// The state file's name in `data_dir`.
const STATE_FILE: &str = "anti-entropy.json";
/// Largest line protocol read from one circle for one bucket compared point by point.
/// Conflicts shown in the progress and logged per repair.
const CONFLICT_EXAMPLES: usize = 20;

/// What a repair request asks.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Spec {
    /// What to compare.
    pub scope: Scope,
    /// Points per second written at most (0: no limit).
    pub rate: u64,
    /// Rows per chunk read from a source.
    pub batch: usize,
}

/// The durable progress of a repair (`<data_dir>/anti-entropy.json`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct SavedRepair {
    /// The request.
    pub spec: Spec,
    /// The differing buckets, mended in order.
    pub buckets: Vec<Bucket>,
    /// Buckets done (`buckets[..next]`).
    pub next: usize,
    /// Points written so far.
    pub points: u64,
    /// Conflicting points found so far.
    pub conflicts: u64,
}

/// Progress of the current (or last) repair, for `/migrate/stats?type=repair`.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub(crate) struct RepairProgress {
    /// `compare`, `repair`, `done` or `failed` (empty before any repair).
    pub phase: String,
    /// Resumed from the state file after a restart.
    pub resumed: bool,
    /// Differing buckets to mend.
    pub buckets_total: u64,
    /// Buckets mended.
    pub buckets_done: u64,
    /// Buckets whose repair failed (logged).
    pub buckets_failed: u64,
    /// Points missing, estimated from the counts of every differing bucket.
    pub points_missing: u64,
    /// Points missing in the buckets not mended yet (estimate).
    pub points_left: u64,
    /// Points written to the circles' queues.
    pub points: u64,
    /// Points written per second since the repair (or its resumption) started.
    pub points_per_s: u64,
    /// Seconds left at that rate (estimate).
    pub eta_s: u64,
    /// Points whose values differed between circles.
    pub conflicts: u64,
    /// The first conflicts: series, time, field, each circle's value, the value kept.
    pub conflict_examples: Vec<Value>,
    /// Why the repair failed.
    pub error: String,
}

/// Why a repair failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    /// The comparison failed.
    #[error("compare: {0}")]
    Compare(#[from] antientropy::Error),
    /// Reading a bucket or queueing its points failed.
    #[error("{0}")]
    Copy(#[from] copy::Error),
    /// A circle has no backend for the measurement.
    #[error("no owner of {0} in circle {1}")]
    NoOwner(String, usize),
    /// The circles changed (a reload) since the bucket was compared.
    #[error("the bucket was compared over {compared} circles, the config now has {now}")]
    CirclesChanged {
        /// Circles when compared.
        compared: usize,
        /// Circles now.
        now: usize,
    },
}

/// Where a repair keeps its progress.
pub(crate) fn state_path(data_dir: &Path) -> PathBuf {
    data_dir.join(STATE_FILE)
}

/// The unfinished repair a previous run left, if any.
pub(crate) fn unfinished(data_dir: &Path) -> Option<SavedRepair> {
    let path = state_path(data_dir);
    let text = std::fs::read(&path).ok()?;
    match serde_json::from_slice::<SavedRepair>(&text) {
        Ok(s) if s.next < s.buckets.len() => Some(s),
        Ok(_) => None,
        Err(e) => {
            warn!(path = %path.display(), error = %e, "Unreadable anti-entropy state; ignored.");
            None
        }
    }
}

/// Writes `state` atomically (a new file renamed over the old).
fn save(path: &Path, state: &SavedRepair) {
    let tmp = path.with_extension("json.tmp");
    let written = serde_json::to_vec(state)
        .map_err(std::io::Error::other)
        .and_then(|bytes| std::fs::write(&tmp, bytes))
        .and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = written {
        warn!(path = %path.display(), error = %e, "Cannot save the anti-entropy progress; a restart would repeat buckets.");
    }
}

/// Runs a repair (compare first unless `resume` holds one's progress); returns points written.
pub(super) async fn run(
    shared: &Jobs,
    job: &Start,
    spec: &Spec,
    resume: Option<SavedRepair>,
    appended: &Appended,
    log: &mut MigrationLog,
) -> u64 {
    let path = state_path(&job.config.data_dir);
    let resumed = resume.is_some();
    set_progress(shared, |p| {
        *p = RepairProgress {
            phase: "compare".into(),
            resumed,
            ..RepairProgress::default()
        }
    });
    let mut state = match resume {
        Some(state) => state,
        None => match antientropy::compare(&job.cluster, &spec.scope).await {
            Ok(report) => {
                info!(
                    operation = "repair",
                    databases = report.databases.len(),
                    measurements = report.measurements,
                    queries = report.queries,
                    buckets = report.buckets.len(),
                    "Anti-entropy compared the circles."
                );
                SavedRepair {
                    spec: spec.clone(),
                    buckets: report.buckets,
                    next: 0,
                    points: 0,
                    conflicts: 0,
                }
            }
            Err(e) => {
                error!(operation = "repair", error = %e, "Anti-entropy comparison failed; nothing repaired.");
                log.line(&format!("repair failed: {e}"));
                set_progress(shared, |p| {
                    p.phase = "failed".into();
                    p.error = e.to_string();
                });
                return 0;
            }
        },
    };
    log.line(&format!(
        "repair buckets={} done={} resumed={resumed}",
        state.buckets.len(),
        state.next
    ));
    let missing: u64 = state.buckets.iter().map(Bucket::missing).sum();
    let left: u64 = state.buckets[state.next.min(state.buckets.len())..]
        .iter()
        .map(Bucket::missing)
        .sum();
    set_progress(shared, |p| {
        p.phase = "repair".into();
        p.points_left = left;
        p.buckets_total = state.buckets.len() as u64;
        p.buckets_done = state.next as u64;
        p.points_missing = missing;
        p.points = state.points;
        p.conflicts = state.conflicts;
    });
    if state.next < state.buckets.len() {
        save(&path, &state);
    }
    let cx = Cx {
        cluster: &job.cluster,
        buffer_bytes: job.config.memory_budget().migration_bytes(),
        batch: state.spec.batch,
        pace: Pace::new(state.spec.rate),
        appended,
    };
    let started = Instant::now();
    let points_before = state.points;
    let mut prepared = HashSet::new();
    let mut failed = 0u64;
    while let Some(bucket) = state.buckets.get(state.next) {
        match mend(&cx, bucket, &mut prepared).await {
            Ok(outcome) => {
                state.points += outcome.points;
                shared.count_copied((JobKind::Repair, None, String::new()), outcome.points);
                state.conflicts += outcome.conflicts;
                log.line(&format!(
                    "repaired db={} rp={} mm={} start={} end={} points={} conflicts={}",
                    bucket.db,
                    bucket.rp,
                    bucket.measurement,
                    bucket.start,
                    bucket.end,
                    outcome.points,
                    outcome.conflicts
                ));
                for example in &outcome.examples {
                    log.line(&format!("conflict {example}"));
                }
                set_progress(shared, |p| {
                    let room = CONFLICT_EXAMPLES.saturating_sub(p.conflict_examples.len());
                    p.conflict_examples
                        .extend(outcome.examples.iter().take(room).cloned());
                });
            }
            Err(e) => {
                failed += 1;
                error!(db = %bucket.db, rp = %bucket.rp, measurement = %bucket.measurement, start = bucket.start, end = bucket.end, error = %e, "Anti-entropy could not repair a bucket; skipped.");
                log.line(&format!(
                    "failed db={} rp={} mm={} start={} end={}: {e}",
                    bucket.db, bucket.rp, bucket.measurement, bucket.start, bucket.end
                ));
            }
        }
        state.next += 1;
        save(&path, &state);
        let left: u64 = state.buckets[state.next..]
            .iter()
            .map(Bucket::missing)
            .sum();
        let secs = started.elapsed().as_secs_f64().max(0.001);
        let rate = (state.points - points_before) as f64 / secs;
        set_progress(shared, |p| {
            p.buckets_done = state.next as u64;
            p.buckets_failed = failed;
            p.points = state.points;
            p.points_left = left;
            p.points_per_s = rate as u64;
            p.eta_s = if rate > 0.0 {
                (left as f64 / rate) as u64
            } else {
                0
            };
            p.conflicts = state.conflicts;
        });
    }
    if let Err(e) = std::fs::remove_file(&path) {
        if e.kind() != std::io::ErrorKind::NotFound {
            warn!(path = %path.display(), error = %e, "Cannot remove the anti-entropy state.");
        }
    }
    info!(
        operation = "repair",
        buckets = state.buckets.len(),
        failed,
        points = state.points,
        conflicts = state.conflicts,
        resumed,
        "Anti-entropy repair queued every bucket."
    );
    set_progress(shared, |p| {
        p.phase = "done".into();
        p.eta_s = 0;
    });
    state.points
}

fn set_progress(shared: &Jobs, f: impl FnOnce(&mut RepairProgress)) {
    f(&mut shared.repair.lock());
    shared
        .steps
        .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
}

/// What a repair of buckets shares.
struct Cx<'a> {
    cluster: &'a Cluster,
    /// The repair's part of the memory budget ([`crate::memory::Budget::migration_bytes`]).
    buffer_bytes: usize,
    batch: usize,
    pace: Option<Arc<Pace>>,
    appended: &'a Appended,
}

/// What mending one bucket did.
#[derive(Debug, Default)]
struct Outcome {
    /// Points written (each destination counted).
    points: u64,
    /// Points with conflicting values.
    conflicts: u64,
    /// Some of them.
    examples: Vec<Value>,
}

/// Mends one bucket.
async fn mend(
    cx: &Cx<'_>,
    b: &Bucket,
    prepared: &mut HashSet<(String, String)>,
) -> Result<Outcome, Error> {
    let owners = cx
        .cluster
        .circles
        .iter()
        .map(|c| {
            cx.cluster
                .owner(c, &b.db, &b.measurement)
                .cloned()
                .ok_or_else(|| Error::NoOwner(b.measurement.clone(), c.id))
        })
        .collect::<Result<Vec<Arc<BackendHandle>>, Error>>()?;
    if owners.len() != b.circles.len() {
        return Err(Error::CirclesChanged {
            compared: b.circles.len(),
            now: owners.len(),
        });
    }
    let job = copy::Job {
        db: b.db.clone(),
        rp: b.rp.clone(),
        measurement: b.measurement.clone(),
        since: 0,
        batch: cx.batch,
        range: Some((b.start, b.end)),
        pace: cx.pace.clone(),
        buffer_bytes: cx.buffer_bytes,
    };
    let holders: Vec<usize> = (0..b.circles.len())
        .filter(|&i| b.circles[i].points() > 0)
        .collect();
    let Some(&first) = holders.first() else {
        return Ok(Outcome::default());
    };
    let client_of = |i: usize| client::cached(&owners[i].backend.target, super::READ_TIMEOUT);
    let source = client_of(first);
    let agree = holders
        .windows(2)
        .all(|w| b.circles[w[0]].same_as(&b.circles[w[1]]));
    if agree && holders.len() < owners.len() {
        let dests: Vec<Arc<BackendHandle>> = (0..owners.len())
            .filter(|i| !holders.contains(i))
            .map(|i| owners[i].clone())
            .collect();
        for d in &dests {
            prepare_once(cx.cluster, &source, d, &b.db, prepared).await;
        }
        let n = copy::copy_measurement(cx.cluster, &source, &dests, &job, cx.appended).await?;
        return Ok(Outcome {
            points: n * dests.len() as u64,
            ..Outcome::default()
        });
    }
    // Every circle's lines, and the comparison built from them (about as large), within the
    // part: half for the lines, over the circles.
    let per_circle = cx.buffer_bytes / 2 / owners.len().max(1);
    let mut texts = Vec::with_capacity(owners.len());
    for i in 0..owners.len() {
        let (text, _) = copy::read_lines(&client_of(i), &job, per_circle).await?;
        texts.push(text);
    }
    let patch = diff(&texts);
    let mut outcome = Outcome {
        points: 0,
        conflicts: patch.conflicts,
        examples: patch.examples,
    };
    for (i, (mut lines, mut count)) in patch.lines.into_iter().enumerate() {
        if count == 0 {
            continue;
        }
        prepare_once(cx.cluster, &source, &owners[i], &b.db, prepared).await;
        let dest = [owners[i].clone()];
        outcome.points +=
            copy::flush(cx.cluster, &dest, &job, cx.appended, &mut lines, &mut count).await?;
    }
    Ok(outcome)
}

/// Queues the database and its retention policies (as `source` has them) on `dest` once per
/// repair, ahead of the first points it gets.
async fn prepare_once(
    cluster: &Cluster,
    source: &client::Client,
    dest: &BackendHandle,
    db: &str,
    prepared: &mut HashSet<(String, String)>,
) {
    if !prepared.insert((dest.backend.info.name.clone(), db.to_string())) {
        return;
    }
    match catalog::retention_policies(source, db).await {
        Ok(rps) => super::prepare(cluster, dest, db, &rps),
        Err(e) => {
            warn!(backend = %dest.backend.info.name, db = %db, error = %e, "Listing retention policies failed; not created on the destination.")
        }
    }
}

/// What each circle lacks of a bucket every circle's points of are given (line protocol).
#[derive(Debug, Default, PartialEq)]
struct Patch {
    /// Per circle, the lines to write and their count.
    lines: Vec<(String, usize)>,
    /// Points whose values differ between circles.
    conflicts: u64,
    /// The first of them.
    examples: Vec<Value>,
}

/// Per circle, one field of one point: its value as written, if the circle has it.
type Values<'a> = Vec<Option<&'a [u8]>>;

/// The points of a bucket by (series, time), each field's [`Values`].
type Points<'a> = BTreeMap<(&'a [u8], i64), BTreeMap<&'a [u8], Values<'a>>>;

/// Compares the circles' points of one bucket field by field ([module doc](self)).
fn diff(texts: &[String]) -> Patch {
    let n = texts.len();
    let mut points: Points<'_> = BTreeMap::new();
    for (i, text) in texts.iter().enumerate() {
        for line in text.lines() {
            let bytes = line.as_bytes();
            let Ok(parsed) = line_protocol::parse(bytes) else {
                continue;
            };
            let Some(time) = parsed.timestamp else {
                continue;
            };
            let fields = points.entry((parsed.series(bytes), time)).or_default();
            for (key, value) in parsed.raw_fields(bytes) {
                fields.entry(key).or_insert_with(|| vec![None; n])[i] = Some(value);
            }
        }
    }
    let mut patch = Patch {
        lines: vec![(String::new(), 0); n],
        ..Patch::default()
    };
    let mut wanted: Vec<Vec<(&[u8], &[u8])>> = vec![Vec::new(); n];
    for ((series, time), fields) in &points {
        wanted.iter_mut().for_each(Vec::clear);
        let mut conflict = false;
        for (key, values) in fields {
            let Some(kept) = winner(values) else {
                continue;
            };
            let distinct: HashSet<&[u8]> = values.iter().flatten().copied().collect();
            if distinct.len() > 1 {
                conflict = true;
                if patch.examples.len() < CONFLICT_EXAMPLES {
                    patch.examples.push(json!({
                        "series": String::from_utf8_lossy(series),
                        "time": time,
                        "field": String::from_utf8_lossy(key),
                        "values": values.iter().map(|v| v.map(String::from_utf8_lossy)).collect::<Vec<_>>(),
                        "kept": String::from_utf8_lossy(kept),
                    }));
                }
            }
            for (i, v) in values.iter().enumerate() {
                if *v != Some(kept) {
                    wanted[i].push((key, kept));
                }
            }
        }
        patch.conflicts += u64::from(conflict);
        for (i, fields) in wanted.iter().enumerate() {
            if fields.is_empty() {
                continue;
            }
            let (out, count) = &mut patch.lines[i];
            out.push_str(&String::from_utf8_lossy(series));
            for (j, (key, value)) in fields.iter().enumerate() {
                out.push(if j == 0 { ' ' } else { ',' });
                out.push_str(&String::from_utf8_lossy(key));
                out.push('=');
                out.push_str(&String::from_utf8_lossy(value));
            }
            out.push(' ');
            out.push_str(&time.to_string());
            out.push('\n');
            *count += 1;
        }
    }
    patch
}

/// The value kept for one field: the one most circles hold, a tie going to the circle listed
/// first.
fn winner<'a>(values: &[Option<&'a [u8]>]) -> Option<&'a [u8]> {
    let mut best: Option<(&[u8], usize)> = None;
    for v in values.iter().flatten() {
        let votes = values.iter().filter(|o| **o == Some(*v)).count();
        if best.is_none_or(|(_, b)| votes > b) {
            best = Some((v, votes));
        }
    }
    best.map(|(v, _)| v)
}

/// The repair's progress as `/migrate/stats?type=repair` shows it.
pub(crate) fn progress_json(shared: &Jobs) -> Value {
    serde_json::to_value(&*shared.repair.lock()).unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(all: &[&str]) -> Vec<String> {
        all.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn each_circle_gets_only_the_points_and_fields_it_lacks() {
        let p = diff(&texts(&[
            "m,h=a f=1,g=2i 10\nm,h=a f=2 20\n",
            "m,h=a f=1 10\nm,h=b f=3 30\n",
        ]));
        assert_eq!(p.lines[0], ("m,h=b f=3 30\n".to_string(), 1));
        assert_eq!(p.lines[1], ("m,h=a g=2i 10\nm,h=a f=2 20\n".to_string(), 2));
        assert_eq!(p.conflicts, 0);
    }

    #[test]
    fn a_conflict_goes_to_the_majority_then_the_first_circle() {
        let p = diff(&texts(&["m f=1 10\n", "m f=2 10\n"]));
        assert_eq!(p.conflicts, 1);
        assert_eq!(p.lines[0].1, 0);
        assert_eq!(p.lines[1], ("m f=1 10\n".to_string(), 1));
        assert_eq!(p.examples[0]["kept"], "1");
        let p = diff(&texts(&["m f=1 10\n", "m f=2 10\n", "m f=2 10\n"]));
        assert_eq!(p.lines[0], ("m f=2 10\n".to_string(), 1));
        assert_eq!((p.lines[1].1, p.lines[2].1), (0, 0));
    }
}
