//! The progress of a running operation, as `ctl` shows it: live bars on a terminal
//! (`indicatif`: the job, and each source backend), plain lines on a pipe, JSON lines with
//! `--json`.
//!
//! What is shown comes from `/migrate/jobs` ([`JobView::from_json`]): done and total
//! (measurements walked for a copy or a clear, buckets for a repair), points, and a rate and
//! ETA from the proxy's own clock (`elapsed_s`), so a console that attaches late (`ctl watch`)
//! shows the same numbers as the one that started the job.

use std::collections::BTreeMap;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use serde_json::{json, Value};

use crate::console::ctl::table::{age, count, rate};

/// One job, read from `/migrate/jobs`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct JobView {
    /// The proxy's id of the job.
    pub id: u64,
    /// `rebalance`, `recovery`, `resync`, `clear`, `repair`.
    pub operation: String,
    /// `copying`, `comparing`, `repairing`, `delivering`, `done` or `failed`.
    pub stage: String,
    /// The job ended.
    pub finished: bool,
    /// Seconds since it started (to its end once finished).
    pub elapsed_s: f64,
    /// What `done` and `total` count: `measurements` or `buckets`.
    pub unit: &'static str,
    /// Units done.
    pub done: u64,
    /// Units known so far (a copy discovers measurements as it walks the sources).
    pub total: u64,
    /// Points copied.
    pub points: u64,
    /// Measurements (or buckets) whose work failed; logged by the proxy.
    pub failed: u64,
    /// Why the job failed as a whole (a repair whose comparison failed).
    pub error: Option<String>,
    /// The repair's conflicting values.
    pub conflicts: u64,
    /// The repair's own ETA (paced to its rate).
    pub eta_hint_s: Option<u64>,
    /// Per source backend (copies and clears).
    pub sources: Vec<SourceView>,
}

/// One source backend of a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SourceView {
    /// Its URL.
    pub url: String,
    /// The circle its counters are kept under.
    pub circle: u64,
    /// Measurements walked.
    pub done: u64,
    /// Measurements found.
    pub total: u64,
    /// Measurements copied (dropped, for a clear).
    pub moved: u64,
    /// Measurements already in place.
    pub in_place: u64,
    /// Points copied.
    pub points: u64,
    /// Failures.
    pub failed: u64,
}

fn u(v: &Value, key: &str) -> u64 {
    v.get(key).and_then(Value::as_u64).unwrap_or(0)
}

impl JobView {
    /// Reads one entry of `/migrate/jobs`' `jobs`; `None` when it is not a job.
    pub(crate) fn from_json(v: &Value) -> Option<JobView> {
        let id = v.get("id")?.as_u64()?;
        let operation = v.get("operation")?.as_str()?.to_string();
        let phase = v.get("phase").and_then(Value::as_str).unwrap_or("");
        let finished = phase == "done";
        let mut job = JobView {
            id,
            operation,
            stage: String::new(),
            finished,
            elapsed_s: v.get("elapsed_s").and_then(Value::as_f64).unwrap_or(0.0),
            unit: "measurements",
            done: 0,
            total: 0,
            points: 0,
            failed: 0,
            error: None,
            conflicts: 0,
            eta_hint_s: None,
            sources: Vec::new(),
        };
        match v.get("repair").filter(|r| r.is_object()) {
            Some(r) => job.read_repair(r, phase),
            None => job.read_sources(v, phase),
        }
        Some(job)
    }

    fn read_sources(&mut self, v: &Value, phase: &str) {
        if let Some(sources) = v.get("sources").and_then(Value::as_object) {
            for (url, s) in sources {
                self.sources.push(SourceView {
                    url: url.clone(),
                    circle: u(s, "circle"),
                    done: u(s, "measurement_done"),
                    total: u(s, "measurement_total"),
                    moved: u(s, "migrate_count"),
                    in_place: u(s, "inplace_count"),
                    points: u(s, "points"),
                    failed: u(s, "failed"),
                });
            }
        }
        self.done = self.sources.iter().map(|s| s.done).sum();
        self.total = self.sources.iter().map(|s| s.total).sum();
        self.points = self.sources.iter().map(|s| s.points).sum();
        self.failed = self.sources.iter().map(|s| s.failed).sum();
        self.stage = match phase {
            "done" if self.failed > 0 => "failed",
            "done" => "done",
            "delivering" => "delivering",
            _ if self.operation == "clear" => "clearing",
            _ => "copying",
        }
        .to_string();
    }

    fn read_repair(&mut self, r: &Value, phase: &str) {
        self.unit = "buckets";
        self.done = u(r, "buckets_done");
        self.total = u(r, "buckets_total");
        self.points = u(r, "points");
        self.failed = u(r, "buckets_failed");
        self.conflicts = u(r, "conflicts");
        self.eta_hint_s = Some(u(r, "eta_s"));
        let inner = r.get("phase").and_then(Value::as_str).unwrap_or("");
        self.error = r
            .get("error")
            .and_then(Value::as_str)
            .filter(|e| !e.is_empty())
            .map(str::to_string);
        self.stage = match (phase, inner) {
            (_, "failed") => "failed",
            ("done", _) if self.failed > 0 => "failed",
            ("done", _) => "done",
            ("delivering", _) => "delivering",
            (_, "compare") => "comparing",
            _ => "repairing",
        }
        .to_string();
    }

    /// Whether it ended without a failure.
    pub(crate) fn succeeded(&self) -> bool {
        self.finished && self.failed == 0 && self.error.is_none() && self.stage != "failed"
    }

    /// Points copied per second.
    pub(crate) fn points_per_s(&self) -> f64 {
        self.points as f64 / self.elapsed_s.max(0.001)
    }

    /// Seconds left at the pace so far, while it runs and once something is done.
    pub(crate) fn eta_s(&self) -> Option<u64> {
        if self.finished || self.stage == "delivering" {
            return None;
        }
        if let Some(hint) = self.eta_hint_s.filter(|&s| s > 0) {
            return Some(hint);
        }
        if self.done == 0 || self.total <= self.done {
            return None;
        }
        let per_s = self.done as f64 / self.elapsed_s.max(0.001);
        Some(((self.total - self.done) as f64 / per_s).ceil() as u64)
    }

    /// `5/12 measurements (41%)`.
    fn fraction(&self) -> String {
        let pct = (self.done * 100)
            .checked_div(self.total)
            .map_or_else(String::new, |p| format!(" ({p}%)"));
        format!(
            "{}/{} {}{pct}",
            count(self.done),
            count(self.total),
            self.unit
        )
    }

    /// Points, rate, ETA and failures: what follows the bar.
    fn numbers(&self) -> String {
        let mut parts = Vec::new();
        // A clear drops measurements; it copies no point.
        if self.operation != "clear" {
            parts.push(format!("{} points", count(self.points)));
        }
        if self.points > 0 {
            parts.push(format!("{} points/s", rate(self.points_per_s())));
        }
        if let Some(eta) = self.eta_s() {
            parts.push(format!("ETA {}", age(eta)));
        }
        if self.failed > 0 {
            parts.push(format!("{} failed", count(self.failed)));
        }
        if self.conflicts > 0 {
            parts.push(format!("{} conflicts", count(self.conflicts)));
        }
        parts.join(", ")
    }

    /// One plain progress line.
    pub(crate) fn line(&self) -> String {
        let mut line = format!(
            "[{}] {} #{} {}: {}",
            age(self.elapsed_s as u64),
            self.operation,
            self.id,
            self.stage,
            self.fraction()
        );
        let numbers = self.numbers();
        if !numbers.is_empty() {
            line.push_str(", ");
            line.push_str(&numbers);
        }
        let sources: Vec<String> = self
            .sources
            .iter()
            .map(|s| format!("{} {}/{}", s.url, s.done, s.total))
            .collect();
        if !sources.is_empty() {
            line.push_str(" | ");
            line.push_str(&sources.join(", "));
        }
        line
    }

    /// The line printed once it ended.
    pub(crate) fn summary(&self) -> String {
        let what = if self.unit == "buckets" {
            format!(
                "{} buckets mended, {} points, {} conflicts",
                count(self.done),
                count(self.points),
                count(self.conflicts)
            )
        } else {
            let moved: u64 = self.sources.iter().map(|s| s.moved).sum();
            let in_place: u64 = self.sources.iter().map(|s| s.in_place).sum();
            let verb = if self.operation == "clear" {
                "dropped"
            } else {
                "copied"
            };
            let mut what = format!(
                "{} measurements walked, {} {verb}, {} in place",
                count(self.done),
                count(moved),
                count(in_place)
            );
            if self.operation != "clear" {
                what.push_str(&format!(", {} points", count(self.points)));
            }
            what
        };
        let mut out = format!(
            "{} #{} {} in {}: {what}",
            self.operation,
            self.id,
            self.stage,
            age(self.elapsed_s.round() as u64)
        );
        if self.failed > 0 {
            out.push_str(&format!(
                "; {} failed (see the proxy's log and <mlog_dir>/{}.log)",
                count(self.failed),
                self.operation
            ));
        }
        if let Some(e) = &self.error {
            out.push_str(&format!("; {e}"));
        }
        out
    }

    /// One JSON progress line.
    pub(crate) fn json(&self) -> Value {
        let sources: Vec<Value> = self
            .sources
            .iter()
            .map(|s| {
                json!({
                    "url": s.url, "circle": s.circle, "done": s.done, "total": s.total,
                    "moved": s.moved, "in_place": s.in_place, "points": s.points,
                    "failed": s.failed,
                })
            })
            .collect();
        json!({
            "job": self.id,
            "operation": self.operation,
            "stage": self.stage,
            "finished": self.finished,
            "elapsed_s": self.elapsed_s,
            "unit": self.unit,
            "done": self.done,
            "total": self.total,
            "points": self.points,
            "points_per_s": self.points_per_s().round(),
            "eta_s": self.eta_s(),
            "failed": self.failed,
            "conflicts": self.conflicts,
            "error": self.error,
            "sources": sources,
        })
    }
}

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Live bars (a terminal).
    Bars,
    /// A plain line per job per poll (a pipe).
    Lines,
    /// A JSON object per job per poll (`--json`).
    Json,
}

/// What is on the screen.
#[derive(Debug)]
pub(crate) struct Display {
    mode: Mode,
    multi: MultiProgress,
    bars: BTreeMap<u64, JobBars>,
}

#[derive(Debug)]
struct JobBars {
    main: ProgressBar,
    sources: BTreeMap<String, ProgressBar>,
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

impl Display {
    /// A display in `mode`.
    pub(crate) fn new(mode: Mode) -> Display {
        Display {
            mode,
            multi: MultiProgress::new(),
            bars: BTreeMap::new(),
        }
    }

    /// Shows the jobs as they are now; a finished job gets its summary (once).
    pub(crate) fn show(&mut self, jobs: &[JobView]) {
        for job in jobs {
            match self.mode {
                Mode::Bars => self.draw(job),
                Mode::Lines => println!("{}", job.line()),
                Mode::Json => println!("{}", job.json()),
            }
        }
    }

    /// The job ended: its bars go, its summary stays.
    pub(crate) fn end(&mut self, job: &JobView) {
        if let Some(b) = self.bars.remove(&job.id) {
            for bar in b.sources.values() {
                bar.finish_and_clear();
            }
            b.main.finish_and_clear();
        }
        match self.mode {
            Mode::Json => {}
            Mode::Bars => {
                let _ = self.multi.println(job.summary());
            }
            Mode::Lines => println!("{}", job.summary()),
        }
    }

    /// Removes every bar (detaching).
    pub(crate) fn clear(&mut self) {
        let _ = self.multi.clear();
        self.bars.clear();
    }

    fn draw(&mut self, job: &JobView) {
        let multi = &self.multi;
        let bars = self.bars.entry(job.id).or_insert_with(|| {
            let main = multi.add(ProgressBar::new(0));
            main.set_style(style("{prefix:.bold} [{bar:32}] {pos}/{len} {wide_msg}"));
            main.set_prefix(format!("{} #{}", job.operation, job.id));
            JobBars {
                main,
                sources: BTreeMap::new(),
            }
        });
        bars.main.set_length(job.total);
        bars.main.set_position(job.done);
        let numbers = job.numbers();
        let sep = if numbers.is_empty() { "" } else { ", " };
        bars.main
            .set_message(format!("{} {}{sep}{numbers}", job.unit, job.stage));
        for s in &job.sources {
            let bar = bars.sources.entry(s.url.clone()).or_insert_with(|| {
                let bar = multi.add(ProgressBar::new(0));
                bar.set_style(style("  {prefix} [{bar:24}] {pos}/{len} {wide_msg}"));
                bar.set_prefix(s.url.clone());
                bar
            });
            bar.set_length(s.total);
            bar.set_position(s.done);
            bar.set_message(format!("{} points", count(s.points)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn copy_job(phase: &str) -> Value {
        json!({"id": 3, "operation": "rebalance", "circles": [0], "phase": phase,
            "elapsed_s": 10.0, "points": 0,
            "sources": {
                "http://a:8086": {"circle": 0, "measurement_total": 6, "measurement_done": 3,
                    "migrate_count": 2, "inplace_count": 1, "points": 1500, "failed": 0},
                "http://b:8086": {"circle": 0, "measurement_total": 6, "measurement_done": 2,
                    "migrate_count": 1, "inplace_count": 1, "points": 500, "failed": 0}}})
    }

    #[test]
    fn a_copy_job_sums_its_sources_and_estimates_what_is_left() {
        let j = JobView::from_json(&copy_job("running")).unwrap();
        assert_eq!((j.done, j.total, j.points), (5, 12, 2000));
        assert_eq!(j.stage, "copying");
        assert!(!j.finished && !j.succeeded());
        assert_eq!(j.points_per_s(), 200.0);
        // 5 done in 10 s: 7 left at 0.5/s.
        assert_eq!(j.eta_s(), Some(14));
        assert_eq!(
            j.line(),
            "[10s] rebalance #3 copying: 5/12 measurements (41%), 2,000 points, 200 points/s, \
             ETA 14s | http://a:8086 3/6, http://b:8086 2/6"
        );
        assert_eq!(j.json()["sources"][1]["points"], 500);
    }

    #[test]
    fn a_finished_copy_job_says_what_it_did_and_whether_it_failed() {
        let j = JobView::from_json(&copy_job("done")).unwrap();
        assert!(j.succeeded());
        assert_eq!(j.eta_s(), None);
        assert_eq!(
            j.summary(),
            "rebalance #3 done in 10s: 5 measurements walked, 3 copied, 2 in place, 2,000 points"
        );
        let mut v = copy_job("done");
        v["sources"]["http://b:8086"]["failed"] = json!(1);
        let j = JobView::from_json(&v).unwrap();
        assert!(!j.succeeded());
        assert_eq!(j.stage, "failed");
        assert!(j.summary().contains("1 failed"), "{}", j.summary());
    }

    #[test]
    fn a_clear_says_what_it_dropped_and_copies_no_point() {
        let mut v = copy_job("done");
        v["operation"] = json!("clear");
        v["sources"]["http://a:8086"]["points"] = json!(0);
        v["sources"]["http://b:8086"]["points"] = json!(0);
        let j = JobView::from_json(&v).unwrap();
        assert_eq!(
            j.summary(),
            "clear #3 done in 10s: 5 measurements walked, 3 dropped, 2 in place"
        );
        v["phase"] = json!("running");
        let j = JobView::from_json(&v).unwrap();
        assert!(
            j.line()
                .starts_with("[10s] clear #3 clearing: 5/12 measurements (41%), ETA 14s |"),
            "{}",
            j.line()
        );
    }

    #[test]
    fn a_repair_counts_buckets_and_keeps_its_own_eta_and_errors() {
        let v = json!({"id": 4, "operation": "repair", "circles": [], "phase": "running",
            "elapsed_s": 2.0, "repair": {"phase": "repair", "buckets_total": 10,
            "buckets_done": 4, "buckets_failed": 0, "points": 300, "eta_s": 9,
            "conflicts": 2, "error": ""}});
        let j = JobView::from_json(&v).unwrap();
        assert_eq!(
            (j.unit, j.done, j.total, j.stage.as_str()),
            ("buckets", 4, 10, "repairing")
        );
        assert_eq!(j.eta_s(), Some(9));
        let mut v = v;
        v["phase"] = json!("done");
        v["repair"]["phase"] = json!("failed");
        v["repair"]["error"] = json!("compare: backend down");
        let j = JobView::from_json(&v).unwrap();
        assert!(!j.succeeded());
        assert!(
            j.summary().ends_with("; compare: backend down"),
            "{}",
            j.summary()
        );
    }

    #[test]
    fn anything_but_a_job_is_skipped() {
        assert_eq!(JobView::from_json(&json!({"id": "x"})), None);
        assert_eq!(JobView::from_json(&json!(null)), None);
    }
}
