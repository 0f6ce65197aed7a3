//! `/process`: which process serves this API, the config file it reloads, and what its last
//! reload did.
//!
//! `influx-proxy ctl reload` validates the file, sends SIGHUP and must then tell the operator
//! what was applied. A signal has no answer, and the journal is not readable by everyone (nor
//! there without systemd), so the reload path notes each outcome here ([`Process::note_reload`],
//! counted, so a client waits for the one after its signal) and the pid comes with its start
//! time in clock ticks: a client on the same host checks `/proc/<pid>/stat` against it before
//! signalling, and never signals a process that is not this proxy (another host, another pid
//! namespace, a reused pid).

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use actix_web::{web, HttpRequest, HttpResponse};
use parking_lot::Mutex;
use serde_json::{json, Value};

use super::{auth, json_response, ApiError, AppState, Params};
use crate::cluster::ClusterDiff;

/// This process, and its reloads.
#[derive(Debug)]
pub(crate) struct Process {
    pid: u32,
    start_ticks: Option<u64>,
    started_unix_ms: u64,
    config_path: Mutex<PathBuf>,
    reloads: Mutex<Reloads>,
}

/// Reloads since the start.
#[derive(Debug, Default)]
struct Reloads {
    /// SIGHUPs handled.
    count: u64,
    /// What the last one did.
    last: Option<Value>,
}

impl Default for Process {
    fn default() -> Process {
        let pid = std::process::id();
        Process {
            pid,
            start_ticks: crate::metrics::process_start_ticks(pid),
            started_unix_ms: unix_ms(),
            config_path: Mutex::default(),
            reloads: Mutex::default(),
        }
    }
}

impl Process {
    /// The config file a SIGHUP re-reads, made absolute (the process may have been given a
    /// path relative to its working directory).
    pub(crate) fn set_config_path(&self, path: &Path) {
        let absolute = std::fs::canonicalize(path).unwrap_or_else(|_| {
            std::env::current_dir()
                .map(|d| d.join(path))
                .unwrap_or_else(|_| path.to_path_buf())
        });
        *self.config_path.lock() = absolute;
    }

    /// Notes the outcome of a reload: `applied` (with the diff), `unchanged`, or `refused`
    /// (with the reason; nothing was applied).
    pub(crate) fn note_reload(&self, outcome: &Result<ClusterDiff, String>) {
        let mut reloads = self.reloads.lock();
        reloads.count += 1;
        let (name, summary, diff, error) = match outcome {
            Ok(d) if d.is_empty() => ("unchanged", d.to_string(), Some(json!(d)), None),
            Ok(d) => ("applied", d.to_string(), Some(json!(d)), None),
            Err(e) => ("refused", String::new(), None, Some(e.clone())),
        };
        reloads.last = Some(json!({
            "seq": reloads.count,
            "at_unix_ms": unix_ms(),
            "outcome": name,
            "summary": summary,
            "diff": diff,
            "error": error,
        }));
    }

    fn json(&self) -> Value {
        let reloads = self.reloads.lock();
        json!({
            "pid": self.pid,
            "start_ticks": self.start_ticks,
            "started_unix_ms": self.started_unix_ms,
            "version": super::VERSION,
            "config_path": self.config_path.lock().to_string_lossy(),
            "reloads": reloads.count,
            "last_reload": reloads.last,
        })
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// `GET /process` (auth like `/health`): `pid`, `start_ticks`, `started_unix_ms`, `version`,
/// `config_path`, `reloads` (SIGHUPs handled) and `last_reload` (`seq`, `at_unix_ms`,
/// `outcome`, `summary`, `diff`, `error`).
pub(super) async fn process(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let params = Params::from_request(&req)?;
    auth::check(&req, &params, &state.config())?;
    Ok(json_response(&state.process().json(), params.pretty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_reload_is_counted_with_its_outcome() {
        let p = Process::default();
        assert_eq!(p.json()["last_reload"], Value::Null);
        assert_eq!(p.json()["start_ticks"].as_u64(), p.start_ticks);
        let diff = ClusterDiff {
            added: vec!["b3".into()],
            placement: true,
            ..ClusterDiff::default()
        };
        p.note_reload(&Ok(diff));
        let v = p.json();
        assert_eq!(v["reloads"], 1);
        assert_eq!(v["last_reload"]["outcome"], "applied");
        assert_eq!(v["last_reload"]["diff"]["added"], json!(["b3"]));
        assert_eq!(v["last_reload"]["summary"], "added b3, placement");
        p.note_reload(&Err("listen_addr cannot change".into()));
        let v = p.json();
        assert_eq!(
            (v["reloads"].as_u64(), v["last_reload"]["seq"].as_u64()),
            (Some(2), Some(2))
        );
        assert_eq!(v["last_reload"]["outcome"], "refused");
        p.note_reload(&Ok(ClusterDiff::default()));
        assert_eq!(p.json()["last_reload"]["outcome"], "unchanged");
    }
}
