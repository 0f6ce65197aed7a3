//! The benchmarks' null InfluxDB, `influx-proxy-bench sink`: answers `/ping`, `/query` and
//! `/write` and counts the points it received (`GET /debug/sink`), so the proxy can be measured
//! without a database behind it.
//!
//! A sink listens on a port below the kernel's ephemeral range ([`free_stable_port`]), because
//! the outage benchmark kills one and starts it again on the same port minutes later. Its
//! output goes to `sink.log` in its own temp dir; `Drop` SIGKILLs it.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

use crate::{free_stable_port, http, kill_and_reap, log_tail, temp_dir, Error, LOG_TAIL_LINES};

/// How long a starting sink may take to answer `/ping` (it needs milliseconds).
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// Fresh ports tried by [`Sink::try_start`] when the picked one was taken meanwhile.
const START_ATTEMPTS: usize = 5;
/// How long [`Sink::points`] waits for an answer: a sink answers in microseconds, and a poll
/// that hangs must not stretch the caller's own deadline.
const POINTS_TIMEOUT: Duration = Duration::from_secs(5);
/// Attempts of [`Sink::try_restart`], [`RESTART_PAUSE`] apart: right after a SIGKILL the port
/// can be briefly taken.
const RESTART_ATTEMPTS: usize = 10;
const RESTART_PAUSE: Duration = Duration::from_millis(500);

/// One running (or killed) sink.
#[derive(Debug)]
pub struct Sink {
    /// Port on 127.0.0.1.
    pub port: u16,
    /// `http://127.0.0.1:{port}`.
    pub url: String,
    /// `influx-proxy-bench`, run as `influx-proxy-bench sink --listen 127.0.0.1:{port}`.
    bin: PathBuf,
    log_path: PathBuf,
    child: Option<Child>,
    _dir: TempDir,
}

impl Sink {
    /// Starts `bin sink` (`bin` is `influx-proxy-bench`) on a free port and waits for `/ping`.
    pub fn try_start(bin: &Path) -> Result<Sink, Error> {
        let dir = temp_dir("influx-proxy-sink-")?;
        let log_path = dir.path().join("sink.log");
        let mut last_error = None;
        for _ in 0..START_ATTEMPTS {
            let port = free_stable_port();
            match launch(bin, port, &log_path) {
                Ok(child) => {
                    return Ok(Sink {
                        port,
                        url: url_of(port),
                        bin: bin.to_path_buf(),
                        log_path,
                        child: Some(child),
                        _dir: dir,
                    })
                }
                Err(error) => last_error = Some(error),
            }
        }
        Err(last_error.unwrap_or_else(|| Error::Launch("sink: no attempt made".to_owned())))
    }

    /// Points received so far (`GET /debug/sink`).
    pub fn points(&self) -> Result<u64, Error> {
        let url = format!("{}/debug/sink", self.url);
        let request_error = |message: String| Error::Request {
            url: url.clone(),
            message,
        };
        let resp = http::request_within("GET", &url, None, &[], POINTS_TIMEOUT)
            .map_err(|e| request_error(e.to_string()))?;
        serde_json::from_str::<Value>(&resp.body)
            .ok()
            .and_then(|v| v["points"].as_u64())
            .ok_or_else(|| request_error(format!("HTTP {}: {}", resp.status, resp.body)))
    }

    /// SIGKILLs the sink and reaps it; [`Sink::try_restart`] brings it back on the same port
    /// (with its counters at zero).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill_and_reap(&mut child);
        }
    }

    /// Starts a killed sink again on its port, retrying while the port is briefly taken.
    pub fn try_restart(&mut self) -> Result<(), Error> {
        self.kill();
        let mut attempt = 1;
        loop {
            match launch(&self.bin, self.port, &self.log_path) {
                Ok(child) => {
                    self.child = Some(child);
                    return Ok(());
                }
                Err(error) if attempt >= RESTART_ATTEMPTS => return Err(error),
                Err(_) => {
                    attempt += 1;
                    thread::sleep(RESTART_PAUSE);
                }
            }
        }
    }

    /// The process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.kill();
    }
}

fn url_of(port: u16) -> String {
    format!("http://127.0.0.1:{port}")
}

/// Runs `bin sink` on `port`, output appended to `log_path`, and waits until it answers
/// `/ping` with 204.
fn launch(bin: &Path, port: u16, log_path: &Path) -> Result<Child, Error> {
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path)
        .map_err(Error::io(format!("open {}", log_path.display())))?;
    let stderr = log
        .try_clone()
        .map_err(Error::io(format!("open {}", log_path.display())))?;
    let mut child = Command::new(bin)
        .arg("sink")
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(stderr)
        .spawn()
        .map_err(Error::io(format!("run {} sink", bin.display())))?;
    let ping = format!("{}/ping", url_of(port));
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(Error::Launch(format!(
                "sink on port {port} exited with {status}; log tail:\n{}",
                log_tail(log_path, LOG_TAIL_LINES)
            )));
        }
        let pinged = matches!(http::try_get(&ping), Ok(r) if r.status == 204);
        if pinged && matches!(child.try_wait(), Ok(None)) {
            return Ok(child);
        }
        if Instant::now() >= deadline {
            kill_and_reap(&mut child);
            return Err(Error::Launch(format!(
                "sink on port {port} did not answer /ping within {READY_TIMEOUT:?}; log tail:\n{}",
                log_tail(log_path, LOG_TAIL_LINES)
            )));
        }
        thread::sleep(Duration::from_millis(50));
    }
}
