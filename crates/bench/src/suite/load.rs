//! The load: this program's `write` mode run as a child process (so that its CPU time is its
//! own, as the "load tool CPU" column reports it), its summary read from the one JSON line it
//! prints with `--json`. Its text output goes to `load.log` in the work directory.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

use super::{Ctx, Error};

/// What a load run reports (the fields of `write --json` the report uses).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct LoadSummary {
    /// Points acknowledged with 204.
    pub(crate) points: u64,
    pub(crate) points_per_sec: f64,
    pub(crate) mb_per_sec: f64,
    pub(crate) p50: f64,
    pub(crate) p99: f64,
    pub(crate) max: f64,
    /// Failed requests by HTTP status, or `io` / `connect`.
    pub(crate) errors: BTreeMap<String, u64>,
    /// The load tool's own CPU during the timed run, in cores.
    pub(crate) cpu_cores: f64,
}

impl LoadSummary {
    /// Parses the JSON line of `write --json`.
    pub(crate) fn parse(json: &str) -> Option<LoadSummary> {
        let v: Value = serde_json::from_str(json.trim()).ok()?;
        let f = |v: &Value| v.as_f64().unwrap_or(0.0);
        Some(LoadSummary {
            points: v["points"].as_u64()?,
            points_per_sec: f(&v["points_per_sec"]),
            mb_per_sec: f(&v["mb_per_sec"]),
            p50: f(&v["latency_ms"]["p50"]),
            p99: f(&v["latency_ms"]["p99"]),
            max: f(&v["latency_ms"]["max"]),
            errors: v["errors"]
                .as_object()
                .map(|errors| {
                    errors
                        .iter()
                        .map(|(kind, n)| (kind.clone(), n.as_u64().unwrap_or(0)))
                        .collect()
                })
                .unwrap_or_default(),
            cpu_cores: f(&v["cpu_cores"]),
        })
    }

    /// The "errors" cell: `0`, or the failures by kind as the tool reports them
    /// (`{"503":12}`).
    pub(crate) fn errors_cell(&self) -> String {
        if self.errors.values().all(|&n| n == 0) {
            "0".to_owned()
        } else {
            serde_json::to_string(&self.errors).unwrap_or_default()
        }
    }
}

/// How a body travels: `gzip` or `plain`, as the tables name it.
pub(crate) fn body_name(gzip: bool) -> &'static str {
    if gzip {
        "gzip"
    } else {
        "plain"
    }
}

/// One load run being set up: `write --url U --db D --concurrency C --batch B --json` plus
/// what the section adds.
#[derive(Debug)]
pub(crate) struct Load {
    bin: PathBuf,
    url: String,
    args: Vec<String>,
    log: PathBuf,
    /// The CPU the tool is pinned to (`taskset -c`), if any.
    cpu: Option<usize>,
}

impl Load {
    /// The section's load against `url`, database `db`, with the suite's connections and batch
    /// and run length.
    pub(crate) fn new(ctx: &Ctx, url: &str, db: &str) -> Load {
        let o = &ctx.opts;
        Load {
            bin: ctx.bench_bin.clone(),
            url: url.to_owned(),
            args: Vec::new(),
            log: ctx.work.join("load.log"),
            cpu: None,
        }
        .flag("--db", db)
        .flag("--concurrency", o.concurrency)
        .flag("--batch", o.batch)
        .seconds(o.seconds)
    }

    /// Adds `--name value`; a later one overrides an earlier one (the tool reads them in order).
    pub(crate) fn flag(mut self, name: &str, value: impl ToString) -> Load {
        self.args.push(name.to_owned());
        self.args.push(value.to_string());
        self
    }

    /// Adds flags that take no value (`--create-db`).
    pub(crate) fn switches(mut self, names: &[&str]) -> Load {
        self.args.extend(names.iter().map(|&n| n.to_owned()));
        self
    }

    /// Runs for `seconds` instead of the suite's run length.
    pub(crate) fn seconds(self, seconds: u64) -> Load {
        self.flag("--duration", format!("{seconds}s"))
    }

    /// Sends gzip bodies, compressed before the timed run (`--pool-mb`).
    pub(crate) fn gzip(self, pool_mb: u64) -> Load {
        self.switches(&["--gzip"]).flag("--pool-mb", pool_mb)
    }

    /// Runs it on CPU `cpu` only (started through `taskset -c`, which execs it, so the child is
    /// the tool itself).
    pub(crate) fn pinned(mut self, cpu: usize) -> Load {
        self.cpu = Some(cpu);
        self
    }

    /// Runs it to its end.
    pub(crate) fn run(self) -> Result<LoadSummary, Error> {
        self.spawn()?.wait()
    }

    /// Starts it in the background.
    pub(crate) fn spawn(self) -> Result<Running, Error> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(Error::io(format!("open {}", self.log.display())))?;
        let mut command = match self.cpu {
            Some(cpu) => {
                let mut taskset = Command::new("taskset");
                taskset.arg("-c").arg(cpu.to_string()).arg(&self.bin);
                taskset
            }
            None => Command::new(&self.bin),
        };
        let child = command
            .args(["write", "--url", self.url.as_str(), "--json"])
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .map_err(Error::io(format!("run {} write", self.bin.display())))?;
        Ok(Running {
            child,
            url: self.url,
            log: self.log,
        })
    }
}

/// A load running in the background.
#[derive(Debug)]
pub(crate) struct Running {
    child: Child,
    url: String,
    log: PathBuf,
}

impl Running {
    /// Whether it has finished.
    pub(crate) fn is_done(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits for its end and reads its summary; an error when it failed (no point
    /// acknowledged) or printed none.
    pub(crate) fn wait(mut self) -> Result<LoadSummary, Error> {
        let mut json = String::new();
        if let Some(mut out) = self.child.stdout.take() {
            // The summary is one short line, written at the end: the pipe never fills.
            let _ = out.read_to_string(&mut json);
        }
        let status = self
            .child
            .wait()
            .map_err(Error::io(format!("wait for the load against {}", self.url)))?;
        match LoadSummary::parse(&json) {
            Some(summary) if status.success() => Ok(summary),
            _ => Err(Error::Load {
                url: self.url.clone(),
                message: format!("{status}; {}:\n{}", self.log.display(), tail(&self.log)),
            }),
        }
    }

    /// Waits for its end and reads its summary, failed or not (an empty one when it printed
    /// none).
    pub(crate) fn finish(self) -> LoadSummary {
        self.wait().unwrap_or_default()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn tail(log: &Path) -> String {
    harness::log_tail(log, 15)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: &str = r#"{"mode":"write","url":"http://127.0.0.1:1","db":"bench","points":34230000,"points_per_sec":1693068.123,"mb_per_sec":118.2,"latency_ms":{"p50":9.551,"p90":20.0,"p99":87.5,"max":120.25},"errors":{},"error_total":0,"cpu_cores":0.07}"#;

    #[test]
    fn reads_the_json_summary() {
        let s = LoadSummary::parse(LINE).unwrap();
        assert_eq!(s.points, 34_230_000);
        assert_eq!((s.points_per_sec, s.mb_per_sec), (1_693_068.123, 118.2));
        assert_eq!(
            (s.p50, s.p99, s.max, s.cpu_cores),
            (9.551, 87.5, 120.25, 0.07)
        );
        assert_eq!(s.errors_cell(), "0");
        assert_eq!(LoadSummary::parse("pre-generating 250 MB"), None);
        assert_eq!(LoadSummary::parse(""), None);
    }

    #[test]
    fn errors_are_shown_by_kind() {
        let line = LINE.replace(r#""errors":{}"#, r#""errors":{"503":12,"io":1}"#);
        let s = LoadSummary::parse(&line).unwrap();
        assert_eq!(s.errors_cell(), r#"{"503":12,"io":1}"#);
    }
}
