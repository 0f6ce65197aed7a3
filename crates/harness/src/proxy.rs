//! The built `influx-proxy` binary, run the way users run it: `influx-proxy -config proxy.json`.
//!
//! [`Proxy::start`] takes a JSON config, fills in a free `listen_addr` and temp-dir `data_dir` /
//! `mlog_dir` unless the test set them, writes `proxy.json` into a fresh temp dir (also the
//! working directory), and waits until `/ping` answers 204. stdout and stderr go to `proxy.log`
//! there. Signal helpers drive crash, shutdown and reload tests; `Drop` SIGKILLs the process.
//!
//! [`Proxy::try_start_binary`] runs another binary that reads the same `proxy.json` (the Go
//! proxy the benchmarks compare with, or an older build) and returns an [`Error`] instead of
//! panicking.

use std::fs::{self, OpenOptions};
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::{json, Value};
use tempfile::TempDir;

use crate::influxd::Influxd;
use crate::{
    free_port, http, kill_and_reap, log_tail, send_signal, temp_dir, test_log_enabled,
    wait_timeout, Error, LOG_TAIL_LINES,
};

/// Longest [`Proxy::wait_delivered`] waits for healthy backends to take what was queued.
pub const DELIVERED_TIMEOUT: Duration = Duration::from_secs(60);
/// How long [`Proxy::wait_migrations_done`] waits for migrations to end.
pub const MIGRATION_TIMEOUT: Duration = Duration::from_secs(90);

/// The binary under test: `$INFLUX_PROXY_BIN`, else the `influx-proxy` cargo built beside the
/// running program: test binaries live in `<target>/<profile>/deps/`, the workspace's binaries
/// (the bench tool included) in `<target>/<profile>/`. So the tests run the build they came with.
pub fn binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = std::env::var_os("INFLUX_PROXY_BIN") {
            return PathBuf::from(bin);
        }
        let exe = std::env::current_exe().expect("path of the running program");
        let dir = exe.parent().expect("the running program's directory");
        let beside = dir.join("influx-proxy");
        let above = dir.parent().map(|d| d.join("influx-proxy"));
        match above {
            Some(above) if !beside.is_file() && above.is_file() => above,
            _ => beside,
        }
    })
}

/// How long [`ctl`] lets a command run (it follows migrations to their end).
pub const CTL_TIMEOUT: Duration = Duration::from_secs(120);

/// What one `influx-proxy ctl ...` run printed, and how it exited ([`ctl`]).
#[derive(Debug, Clone)]
pub struct CtlRun {
    /// The exit code (`None`: killed by a signal).
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl std::fmt::Display for CtlRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}\n--- stdout ---\n{}--- stderr ---\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Runs `influx-proxy ctl <args>` as an operator does, with stdout and stderr on pipes (not a
/// terminal: a followed operation prints plain progress lines) and without the
/// `INFLUX_PROXY_*` variables of the environment, until it exits. Panics (after SIGKILL)
/// when it runs longer than [`CTL_TIMEOUT`].
pub fn ctl(args: &[&str]) -> CtlRun {
    let mut command = Command::new(binary());
    command
        .arg("ctl")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for name in [
        "INFLUX_PROXY_CONFIG",
        "INFLUX_PROXY_URL",
        "INFLUX_PROXY_USERNAME",
        "INFLUX_PROXY_PASSWORD",
    ] {
        command.env_remove(name);
    }
    let mut child = command
        .spawn()
        .unwrap_or_else(|error| panic!("cannot run {}: {error}", binary().display()));
    let read = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_string(&mut text);
            }
            text
        })
    };
    let out = read(child.stdout.take().map(|p| Box::new(p) as _));
    let err = read(child.stderr.take().map(|p| Box::new(p) as _));
    let status = wait_timeout(&mut child, CTL_TIMEOUT);
    if status.is_none() {
        kill_and_reap(&mut child);
    }
    let run = CtlRun {
        code: status.and_then(|s| s.code()),
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    };
    assert!(
        status.is_some(),
        "influx-proxy ctl {args:?} did not exit within {CTL_TIMEOUT:?}:\n{run}"
    );
    run
}

/// How long the proxy may take to answer `/ping` after start (WAL recovery included).
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long [`Proxy::terminate`] waits after SIGTERM.
pub const TERMINATE_TIMEOUT: Duration = Duration::from_secs(30);
/// Fresh ports tried by [`Proxy::start`] when the picked one was taken meanwhile.
const START_ATTEMPTS: usize = 5;

/// One running (or stopped) proxy.
#[derive(Debug)]
pub struct Proxy {
    /// Port of `listen_addr`.
    pub port: u16,
    /// `http://127.0.0.1:{port}` (`https://` when `https_enabled`), no trailing slash.
    pub url: String,
    /// Temp dir and working directory: `proxy.json`, `proxy.log`, `data/`, `log/`.
    pub dir: PathBuf,
    /// `{dir}/proxy.json`.
    pub config_path: PathBuf,
    log_path: PathBuf,
    /// The program run: [`binary`], or the one given to [`Proxy::try_start_binary`].
    bin: PathBuf,
    child: Option<Child>,
    /// Deleted when the proxy is dropped.
    _tmp: TempDir,
}

/// Why a launch failed.
enum LaunchError {
    /// The process exited and its log says its port was taken.
    PortInUse,
    /// Anything else; the message includes the log tail.
    Failed(String),
}

impl Proxy {
    /// Writes `config` (completed as described in the module doc) to `proxy.json`, runs the
    /// binary and waits for `/ping` to answer 204. Panics with the log tail when the process
    /// exits or does not answer within 30 s.
    pub fn start(config: Value) -> Proxy {
        assert!(config.is_object(), "proxy config must be a JSON object");
        Proxy::try_start_binary(binary(), config).unwrap_or_else(|error| panic!("{error}"))
    }

    /// [`Proxy::start`] with the program `bin` (it must take `-config proxy.json` and answer
    /// `/ping`); an [`Error`] instead of a panic.
    pub fn try_start_binary(bin: &Path, config: Value) -> Result<Proxy, Error> {
        let name = program_name(bin);
        if !config.is_object() {
            return Err(Error::Launch(format!(
                "{name}: the config is not a JSON object"
            )));
        }
        let tmp = temp_dir("influx-proxy-")?;
        let dir = tmp.path().to_path_buf();
        let config_path = dir.join("proxy.json");
        let log_path = dir.join("proxy.log");
        let fixed_listen = config["listen_addr"]
            .as_str()
            .filter(|_| is_set(&config, "listen_addr"));
        let attempts = if fixed_listen.is_some() {
            1
        } else {
            START_ATTEMPTS
        };
        for _ in 0..attempts {
            let listen = match fixed_listen {
                Some(listen) => listen.to_owned(),
                None => format!("127.0.0.1:{}", free_port()),
            };
            let config = complete(config.clone(), &listen, &dir);
            let (port, url) = port_and_url(&config);
            fs::write(&config_path, to_json(&config))
                .map_err(Error::io(format!("write {}", config_path.display())))?;
            match launch(bin, &config_path, &dir, &log_path, &url) {
                Ok(child) => {
                    return Ok(Proxy {
                        port,
                        url,
                        dir,
                        config_path,
                        log_path,
                        bin: bin.to_path_buf(),
                        child: Some(child),
                        _tmp: tmp,
                    })
                }
                Err(LaunchError::PortInUse) if fixed_listen.is_none() => continue,
                Err(LaunchError::PortInUse) => {
                    return Err(Error::Launch(format!(
                        "{name}: listen_addr {listen} is in use; log tail:\n{}",
                        log_tail(&log_path, LOG_TAIL_LINES)
                    )))
                }
                Err(LaunchError::Failed(message)) => return Err(Error::Launch(message)),
            }
        }
        Err(Error::Launch(format!(
            "{name}: free ports kept being taken by other processes ({START_ATTEMPTS} attempts); log tail:\n{}",
            log_tail(&log_path, LOG_TAIL_LINES)
        )))
    }

    /// Starts the process again with the same `proxy.json` and data dir and waits for `/ping`.
    /// A running process is stopped first with [`Proxy::terminate`].
    pub fn restart(&mut self) {
        if self.is_running() {
            self.terminate();
        }
        match launch(
            &self.bin,
            &self.config_path,
            &self.dir,
            &self.log_path,
            &self.url,
        ) {
            Ok(child) => self.child = Some(child),
            Err(LaunchError::PortInUse) => panic!(
                "influx-proxy: port {} was taken while the proxy was down; log tail:\n{}",
                self.port,
                log_tail(&self.log_path, LOG_TAIL_LINES)
            ),
            Err(LaunchError::Failed(message)) => panic!("{message}"),
        }
    }

    /// Crashes the proxy (SIGKILL) and reaps it; the data dir stays for [`Proxy::restart`].
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill_and_reap(&mut child);
        }
    }

    /// SIGTERM, then waits up to 30 s for the exit. Panics with the log tail (after SIGKILL)
    /// when the proxy does not exit in time, or when it is not running.
    pub fn terminate(&mut self) -> ExitStatus {
        self.signal(Signal::SIGTERM);
        match self.wait_exit(TERMINATE_TIMEOUT) {
            Some(status) => status,
            None => {
                self.kill9();
                panic!(
                    "influx-proxy did not exit within {TERMINATE_TIMEOUT:?} after SIGTERM; log tail:\n{}",
                    log_tail(&self.log_path, LOG_TAIL_LINES)
                );
            }
        }
    }

    /// Sends SIGHUP (reload `proxy.json`).
    pub fn sighup(&self) {
        self.signal(Signal::SIGHUP);
    }

    /// Sends any signal; panics when the proxy is not running.
    pub fn signal(&self, signal: Signal) {
        let child = self
            .child
            .as_ref()
            .unwrap_or_else(|| panic!("influx-proxy is not running; cannot send {signal}"));
        send_signal(child, signal);
    }

    /// Waits up to `timeout` for the process to exit; `Some(status)` once it has (the process
    /// is then reaped and [`Proxy::is_running`] is false). Panics when it was not running.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let child = self
            .child
            .as_mut()
            .expect("influx-proxy is not running; nothing to wait for");
        let status = wait_timeout(child, timeout);
        if status.is_some() {
            self.child = None;
        }
        status
    }

    /// Whether the process is running (a process that exited on its own is reaped here).
    pub fn is_running(&mut self) -> bool {
        let exited = match &mut self.child {
            Some(child) => child.try_wait().unwrap(),
            None => return false,
        };
        if exited.is_some() {
            self.child = None;
        }
        exited.is_none()
    }

    /// The process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Replaces `proxy.json` with `config`, keeping the current `listen_addr`, `data_dir` and
    /// `mlog_dir` unless `config` sets them. Follow with [`Proxy::sighup`] or [`Proxy::restart`].
    pub fn rewrite_config(&self, config: Value) {
        assert!(config.is_object(), "proxy config must be a JSON object");
        let current: Value = serde_json::from_slice(&fs::read(&self.config_path).unwrap()).unwrap();
        let mut config = config;
        for key in ["listen_addr", "data_dir", "mlog_dir", "tlog_dir"] {
            let transfer_log_set = key.ends_with("log_dir")
                && (is_set(&config, "mlog_dir") || is_set(&config, "tlog_dir"));
            if !is_set(&config, key) && !transfer_log_set && is_set(&current, key) {
                config[key] = current[key].clone();
            }
        }
        write_json(&self.config_path, &config);
    }

    /// Backend names (in circle order) that `/replica` gives for (db, mm).
    pub fn replica_names(&self, db: &str, mm: &str) -> Vec<String> {
        let resp = http::get(&format!(
            "{}/replica?db={}&meas={}",
            self.url,
            http::urlencode(db),
            http::urlencode(mm)
        ));
        assert_eq!(resp.status, 200, "{}", resp.body);
        resp.json()
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap().to_string())
            .collect()
    }

    /// Waits until every backend's write-ahead queue is empty: everything acknowledged so far is
    /// then in every circle's influxd, so whichever circle serves the next read has it.
    ///
    /// Reads are spread over the up-to-date circles, and a circle may trail an acknowledged write
    /// by up to `flush_time` + 2 s; a test that reads through the proxy what it has just written
    /// waits here first (or polls that very read with `wait_until`). Needs `/metrics` without
    /// credentials.
    pub fn wait_delivered(&self) {
        let queued = || -> Option<u64> {
            let r = http::try_get(&format!("{}/metrics", self.url)).ok()?;
            let gauges: Vec<u64> = r
                .body
                .lines()
                .filter(|l| l.starts_with("influx_proxy_backend_queue_records{"))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .map(|v| v as u64)
                .collect();
            // No gauge at all is a broken probe, not an empty queue.
            (r.status == 200 && !gauges.is_empty()).then(|| gauges.iter().sum())
        };
        let mut last = None;
        let empty = crate::http::wait_until(DELIVERED_TIMEOUT, || {
            last = queued();
            last == Some(0)
        });
        assert!(
            empty,
            "queued records left after {DELIVERED_TIMEOUT:?}: {last:?}; proxy log:\n{}",
            log_tail(&self.log_path, LOG_TAIL_LINES)
        );
    }

    /// Whether `/migrate/state` shows no circle migrating and no resync.
    pub fn migrations_idle(&self) -> bool {
        let st = http::get(&format!("{}/migrate/state", self.url)).json();
        st["is_resyncing"] == false
            && st["circles"]
                .as_array()
                .is_some_and(|circles| circles.iter().all(|c| c["is_migrating"] == false))
    }

    /// Waits until every migration has ended ([`Proxy::migrations_idle`]) and its copies,
    /// which go through the destination queues, are delivered ([`Proxy::wait_delivered`]).
    pub fn wait_migrations_done(&self) {
        let idle = crate::http::wait_until(MIGRATION_TIMEOUT, || self.migrations_idle());
        assert!(
            idle,
            "migration never finished within {MIGRATION_TIMEOUT:?}; proxy log:\n{}",
            log_tail(&self.log_path, LOG_TAIL_LINES)
        );
        self.wait_delivered();
    }

    /// The value of the unlabelled metric `name` in `/metrics`, if it is there.
    pub fn unlabelled_metric(&self, name: &str) -> Option<f64> {
        let text = http::get(&format!("{}/metrics", self.url)).body;
        text.lines()
            .filter_map(|l| l.split_once(' '))
            .find(|(n, _)| *n == name)
            .and_then(|(_, v)| v.trim().parse().ok())
    }

    /// The current contents of `proxy.json`.
    pub fn config(&self) -> Value {
        serde_json::from_slice(&fs::read(&self.config_path).unwrap()).unwrap()
    }

    /// [`ctl`] with `--config <proxy.json>` first: address and credentials from the file.
    pub fn ctl(&self, args: &[&str]) -> CtlRun {
        let config = self.config_path.to_string_lossy().into_owned();
        let all: Vec<&str> = ["--config", config.as_str()]
            .into_iter()
            .chain(args.iter().copied())
            .collect();
        ctl(&all)
    }

    /// Everything the proxy printed so far (all runs).
    pub fn log(&self) -> String {
        String::from_utf8_lossy(&fs::read(&self.log_path).unwrap_or_default()).into_owned()
    }

    /// How many WARN lines of the form `Config setting has no effect ...` name `setting`
    /// (`setting="tls.ciphers"`): one per start and per reload that has it set.
    pub fn no_effect_warnings(&self, setting: &str) -> usize {
        let field = format!("setting=\"{setting}\"");
        self.log()
            .lines()
            .filter(|l| l.contains("has no effect") && l.contains(&field))
            .count()
    }

    /// Sum of the samples of `/metrics`' `metric` whose labels mention `label` (e.g. a backend
    /// name).
    pub fn metric(&self, metric: &str, label: &str) -> f64 {
        let text = http::get(&format!("{}/metrics", self.url)).body;
        text.lines()
            .filter(|l| l.starts_with(&format!("{metric}{{")) && l.contains(label))
            .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
            .sum()
    }

    /// The data dir from `proxy.json` (relative values resolved against [`Proxy::dir`]).
    pub fn data_dir(&self) -> PathBuf {
        self.dir
            .join(self.config()["data_dir"].as_str().unwrap_or("data"))
    }

    /// Runs the binary with `args` in `cwd` until it exits (at most `timeout`), for CLI tests
    /// such as `-version` or a config that must be rejected. Returns the status and the combined
    /// stdout + stderr. Panics (after SIGKILL) on timeout.
    pub fn run_to_exit(args: &[&str], cwd: &Path, timeout: Duration) -> (ExitStatus, String) {
        let out_path = cwd.join(format!("run-{}.out", crate::unique_db("cli")));
        let out = fs::File::create(&out_path).unwrap();
        let mut child = Command::new(binary())
            .args(args)
            .current_dir(cwd)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|error| panic!("cannot run {}: {error}", binary().display()));
        let status = wait_timeout(&mut child, timeout);
        let output = String::from_utf8_lossy(&fs::read(&out_path).unwrap()).into_owned();
        let _ = fs::remove_file(&out_path);
        match status {
            Some(status) => (status, output),
            None => {
                kill_and_reap(&mut child);
                panic!("influx-proxy {args:?} did not exit within {timeout:?}; output:\n{output}");
            }
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let died = match &mut self.child {
            Some(child) => child.try_wait().ok().flatten().is_some(),
            None => false,
        };
        if let Some(mut child) = self.child.take() {
            kill_and_reap(&mut child);
        }
        if test_log_enabled() || (thread::panicking() && died) {
            eprintln!(
                "--- influx-proxy :{} log tail ({}) ---\n{}",
                self.port,
                self.log_path.display(),
                log_tail(&self.log_path, LOG_TAIL_LINES)
            );
        }
    }
}

/// Spawns four `influxd` and returns them with the standard config: circle "circle-1" =
/// [influxdb-1-1, influxdb-1-2], circle "circle-2" = [influxdb-2-1, influxdb-2-2] (the returned
/// vector is in that order), `flush_time` 1, `flush_size` 10000, `check_interval` 1.
pub fn two_by_two() -> (Vec<Influxd>, Value) {
    two_by_two_of(Influxd::spawn)
}

/// [`two_by_two`] with each `influxd` started by `spawn` (e.g. [`Influxd::spawn_logging_queries`]).
pub fn two_by_two_of(spawn: fn() -> Influxd) -> (Vec<Influxd>, Value) {
    let influxds = influxds(4, spawn);
    let urls: Vec<&str> = influxds
        .iter()
        .map(|influxd| influxd.url.as_str())
        .collect();
    let config = circles_config(&[&urls[0..2], &urls[2..4]]);
    (influxds, config)
}

/// `n` fresh `influxd`, started in parallel by `spawn` (e.g. [`Influxd::spawn`]).
pub fn influxds(n: usize, spawn: fn() -> Influxd) -> Vec<Influxd> {
    thread::scope(|scope| {
        let handles: Vec<_> = (0..n).map(|_| scope.spawn(spawn)).collect();
        handles
            .into_iter()
            .map(|handle| {
                handle
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    })
}

/// Writes `config` to `dir/proxy.json` and starts the binary on it, output discarded, not
/// waiting for it to be ready: for proxies the [`Proxy`] harness cannot watch (HTTPS with a
/// self-signed certificate).
pub fn spawn_unwatched(dir: &Path, config: &Value) -> Child {
    let config_path = dir.join("proxy.json");
    fs::write(&config_path, config.to_string()).unwrap();
    Command::new(binary())
        .arg("-config")
        .arg(&config_path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Index in [`two_by_two`]'s servers of the backend named `influxdb-{c}-{b}`.
pub fn two_by_two_index(name: &str) -> usize {
    let mut parts = name.trim_start_matches("influxdb-").split('-');
    let circle: usize = parts.next().unwrap().parse().unwrap();
    let backend: usize = parts.next().unwrap().parse().unwrap();
    (circle - 1) * 2 + (backend - 1)
}

/// A config with one circle per entry of `circles`, named `circle-{i}`, whose backends
/// `influxdb-{i}-{j}` (both 1-based) have the given URLs; `flush_time` 1, `flush_size` 10000,
/// `check_interval` 1. URLs need not be real InfluxDB (e.g. a closed port for outage tests).
pub fn circles_config(circles: &[&[&str]]) -> Value {
    let circles: Vec<Value> = circles
        .iter()
        .enumerate()
        .map(|(i, urls)| {
            let backends: Vec<Value> = urls
                .iter()
                .enumerate()
                .map(|(j, url)| json!({ "name": format!("influxdb-{}-{}", i + 1, j + 1), "url": url }))
                .collect();
            json!({ "name": format!("circle-{}", i + 1), "backends": backends })
        })
        .collect();
    json!({
        "circles": circles,
        "flush_time": 1,
        "flush_size": 10000,
        "check_interval": 1,
    })
}

/// Whether `key` is present and not null.
fn is_set(config: &Value, key: &str) -> bool {
    config.get(key).is_some_and(|value| !value.is_null())
}

/// Fills in `listen_addr`, `data_dir` and `mlog_dir` (unless `mlog_dir` or its newer name
/// `tlog_dir` is set).
fn complete(mut config: Value, listen: &str, dir: &Path) -> Value {
    if !is_set(&config, "listen_addr") {
        config["listen_addr"] = json!(listen);
    }
    if !is_set(&config, "data_dir") {
        config["data_dir"] = json!(dir.join("data").to_string_lossy());
    }
    if !is_set(&config, "mlog_dir") && !is_set(&config, "tlog_dir") {
        config["mlog_dir"] = json!(dir.join("log").to_string_lossy());
    }
    config
}

/// The port of `listen_addr` (`host:port` or `:port`) and the URL clients use.
fn port_and_url(config: &Value) -> (u16, String) {
    let listen = config["listen_addr"].as_str().unwrap_or(":7076");
    let port: u16 = listen
        .rsplit(':')
        .next()
        .and_then(|port| port.parse().ok())
        .unwrap_or_else(|| panic!("cannot read a port from listen_addr {listen:?}"));
    let scheme = if config["https_enabled"].as_bool() == Some(true) {
        "https"
    } else {
        "http"
    };
    (port, format!("{scheme}://127.0.0.1:{port}"))
}

fn write_json(path: &Path, config: &Value) {
    fs::write(path, to_json(config)).unwrap();
}

/// `config` as `proxy.json` holds it (pretty-printed).
fn to_json(config: &Value) -> Vec<u8> {
    // Serialising a `Value` cannot fail: its keys are strings.
    serde_json::to_vec_pretty(config).unwrap_or_default()
}

/// The file name of `bin`, for messages (`influx-proxy` for the binary under test).
fn program_name(bin: &Path) -> String {
    bin.file_name().map_or_else(
        || bin.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// Runs `bin -config <config_path>` in `cwd` and waits until `/ping` answers 204.
fn launch(
    bin: &Path,
    config_path: &Path,
    cwd: &Path,
    log_path: &Path,
    url: &str,
) -> Result<Child, LaunchError> {
    let name = program_name(bin);
    let cannot_run = |error: std::io::Error| {
        LaunchError::Failed(format!("cannot run {}: {error}", bin.display()))
    };
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path)
        .map_err(cannot_run)?;
    let log_start = log.metadata().map_err(cannot_run)?.len();
    let mut command = Command::new(bin);
    command
        .arg("-config")
        .arg(config_path)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(cannot_run)?)
        .stderr(log);
    if let Some(filter) = std::env::var_os("RUST_LOG") {
        command.env("RUST_LOG", filter);
    }
    let mut child = command.spawn().map_err(cannot_run)?;
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait().map_err(cannot_run)? {
            let new_log = fs::read(log_path).unwrap_or_default();
            let new_log = String::from_utf8_lossy(&new_log[log_start as usize..]).to_lowercase();
            if new_log.contains("address already in use") || new_log.contains("os error 98") {
                return Err(LaunchError::PortInUse);
            }
            return Err(LaunchError::Failed(format!(
                "{name} ({url}) exited with {status} before answering /ping; log tail:\n{}",
                log_tail(log_path, LOG_TAIL_LINES)
            )));
        }
        // 401: up, with `ping_auth_enabled`.
        let pinged = matches!(
            http::try_get(&format!("{url}/ping")),
            Ok(resp) if resp.status == 204 || resp.status == 401
        );
        // A 204 from a process that exits right after (its bind failed, someone else answered)
        // is caught by checking that ours is still alive.
        if pinged && matches!(child.try_wait(), Ok(None)) {
            return Ok(child);
        }
        if Instant::now() >= deadline {
            kill_and_reap(&mut child);
            return Err(LaunchError::Failed(format!(
                "{name} ({url}) did not answer /ping with 204 within {READY_TIMEOUT:?}; log tail:\n{}",
                log_tail(log_path, LOG_TAIL_LINES)
            )));
        }
        thread::sleep(Duration::from_millis(50));
    }
}
