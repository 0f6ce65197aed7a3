//! The jobs this proxy ran since it started: what `/migrate/jobs` lists and `influx-proxy ctl`
//! follows.
//!
//! `/migrate/stats` keeps the counters of the last job of each kind per circle, in the Go
//! proxy's shape, and cannot say whether that job still runs, when it started or which job a
//! client started. Each accepted job gets an id here (answered in `X-Influx-Proxy-Job`), a
//! phase, and, once it ends, a copy of its own progress, so a client can follow exactly the
//! job it started, and tell later whether it ended well, even after newer jobs replaced the
//! counters. The last [`KEPT_FINISHED`] finished jobs are kept.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use super::{JobKind, Stats};

/// Finished jobs kept for `/migrate/jobs`.
const KEPT_FINISHED: usize = 20;

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Phase {
    /// Walking the sources and queueing copies (or drops, or repairs).
    Running,
    /// Everything is queued; waiting for the destinations to deliver it.
    Delivering,
    /// Ended (see the record's failures).
    Done,
}

/// One job, running or finished.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct JobRecord {
    /// Its id, counted from 1 since the proxy started.
    pub id: u64,
    /// `rebalance`, `recovery`, `resync`, `clear` or `repair`.
    pub operation: &'static str,
    /// The circles whose `/migrate/stats` the job's progress is kept under.
    pub circles: Vec<usize>,
    /// Where it is.
    pub phase: Phase,
    /// Unix milliseconds at the start.
    pub started_unix_ms: u64,
    /// Unix milliseconds at the end.
    pub ended_unix_ms: Option<u64>,
    /// Seconds it ran (so far).
    pub elapsed_s: f64,
    /// Points copied (at the end).
    pub points: u64,
    /// The progress per source backend at the end (copies and clears).
    pub sources: Option<BTreeMap<String, SourceStats>>,
    /// The repair's progress at the end.
    pub repair: Option<Value>,
    #[serde(skip)]
    started: Instant,
}

/// One source backend's counters, with the circle they are kept under.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub(crate) struct SourceStats {
    /// The circle the counters belong to.
    pub circle: usize,
    /// The counters.
    #[serde(flatten)]
    pub stats: Stats,
}

/// Every job since the start (the finished ones up to [`KEPT_FINISHED`]).
#[derive(Debug, Default)]
pub(crate) struct History {
    last_id: u64,
    jobs: VecDeque<JobRecord>,
}

impl History {
    /// Notes a job that starts now; its id.
    pub(crate) fn start(&mut self, kind: JobKind, circles: Vec<usize>) -> u64 {
        self.last_id += 1;
        self.jobs.push_back(JobRecord {
            id: self.last_id,
            operation: kind.name(),
            circles,
            phase: Phase::Running,
            started_unix_ms: unix_ms(),
            ended_unix_ms: None,
            elapsed_s: 0.0,
            points: 0,
            sources: None,
            repair: None,
            started: Instant::now(),
        });
        let finished = self.jobs.iter().filter(|j| j.phase == Phase::Done).count();
        if finished > KEPT_FINISHED {
            if let Some(i) = self.jobs.iter().position(|j| j.phase == Phase::Done) {
                self.jobs.remove(i);
            }
        }
        self.last_id
    }

    /// Moves job `id` to `phase`.
    pub(crate) fn set_phase(&mut self, id: u64, phase: Phase) {
        if let Some(j) = self.jobs.iter_mut().find(|j| j.id == id) {
            j.phase = phase;
        }
    }

    /// Ends job `id`, keeping its own progress.
    pub(crate) fn finish(&mut self, id: u64, end: Ended) {
        if let Some(j) = self.jobs.iter_mut().find(|j| j.id == id) {
            j.phase = Phase::Done;
            j.ended_unix_ms = Some(unix_ms());
            j.elapsed_s = j.started.elapsed().as_secs_f64();
            j.points = end.points;
            j.sources = end.sources;
            j.repair = end.repair;
        }
    }

    /// Jobs of `kind` not done yet (running or delivering).
    pub(crate) fn unfinished(&self, kind: JobKind) -> u32 {
        let n = self
            .jobs
            .iter()
            .filter(|j| j.operation == kind.name() && j.phase != Phase::Done)
            .count();
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    /// Every job kept, oldest first, with `elapsed_s` of the running ones brought up to now.
    pub(crate) fn list(&self) -> Vec<JobRecord> {
        self.jobs
            .iter()
            .map(|j| {
                let mut j = j.clone();
                if j.phase != Phase::Done {
                    j.elapsed_s = j.started.elapsed().as_secs_f64();
                }
                j
            })
            .collect()
    }
}

/// What a job leaves behind.
#[derive(Debug, Default)]
pub(crate) struct Ended {
    /// Points copied.
    pub points: u64,
    /// Per source backend (copies and clears).
    pub sources: Option<BTreeMap<String, SourceStats>>,
    /// The repair's progress.
    pub repair: Option<Value>,
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_finished_job_keeps_its_own_progress_and_old_ones_are_dropped() {
        let mut h = History::default();
        let id = h.start(JobKind::Rebalance, vec![0]);
        assert_eq!(id, 1);
        h.set_phase(id, Phase::Delivering);
        assert_eq!(h.list()[0].phase, Phase::Delivering);
        h.finish(
            id,
            Ended {
                points: 7,
                ..Ended::default()
            },
        );
        let j = &h.list()[0];
        assert_eq!((j.phase, j.points), (Phase::Done, 7));
        assert!(j.ended_unix_ms.is_some());
        for _ in 0..KEPT_FINISHED + 5 {
            let id = h.start(JobKind::Clear, vec![1]);
            h.finish(id, Ended::default());
        }
        let running = h.start(JobKind::Resync, vec![0, 1]);
        let list = h.list();
        assert_eq!(
            list.iter().filter(|j| j.phase == Phase::Done).count(),
            KEPT_FINISHED
        );
        assert_eq!(list.last().map(|j| j.id), Some(running));
        assert_ne!(list[0].id, 1, "the oldest finished jobs are dropped first");
    }
}
