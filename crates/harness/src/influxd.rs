//! A real `influxd` (InfluxDB 1.x, Debian package `influxdb`, 1.6.7 on the CI machines) per test.
//!
//! Each instance gets its own temp dir (config, meta, data, WAL, `influxd.log`) and two free
//! loopback ports: HTTP and the RPC `bind-address`, whose default (127.0.0.1:8088) would collide
//! between instances. UDP, Graphite, collectd and OpenTSDB stay disabled; so do the `_internal`
//! monitor store, continuous queries, subscriptions and usage reporting.
//!
//! [`Influxd::stop`] and [`Influxd::start`] simulate an outage: the instance comes back on the
//! same port with the same data. `Drop` SIGKILLs the process and deletes the temp dir.
//!
//! [`Influxd::try_spawn_with`] takes [`InfluxdOptions`] (log level, extra `[data]` settings, a
//! copy of another instance's data) and returns an [`Error`] instead of panicking: the
//! benchmarks' form.

use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::Value;
use tempfile::TempDir;

use crate::{
    copy_tree, find_on_path, free_port, http, kill_and_reap, log_tail, procfs, send_signal,
    temp_dir, test_log_enabled, wait_timeout, Error, LOG_TAIL_LINES,
};

/// How long a starting `influxd` may take to answer `/ping` (it needs ~0.1 s).
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a graceful stop may take before SIGKILL (it needs ~1-2 s).
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Fresh port pairs tried by [`Influxd::spawn`] when a port was taken meanwhile.
const SPAWN_ATTEMPTS: usize = 5;
/// How long [`Influxd::start`] retries when its fixed port is taken meanwhile.
const RESTART_PORT_WAIT: Duration = Duration::from_secs(10);

/// One running (or stopped) `influxd`.
#[derive(Debug)]
pub struct Influxd {
    /// HTTP port on 127.0.0.1.
    pub port: u16,
    /// `http://127.0.0.1:{port}`, no trailing slash.
    pub url: String,
    /// RPC (backup/restore) port on 127.0.0.1.
    pub rpc_port: u16,
    dir: TempDir,
    config_path: PathBuf,
    log_path: PathBuf,
    child: Option<Child>,
}

/// How [`Influxd::try_spawn_with`] configures a new instance; the default is
/// [`Influxd::spawn`]'s.
#[derive(Debug, Clone, Default)]
pub struct InfluxdOptions {
    /// `[http] auth-enabled = true`.
    pub auth: bool,
    /// `[data] query-log-enabled = true`.
    pub log_queries: bool,
    /// `[logging] level`; `None`: `info`.
    pub log_level: Option<&'static str>,
    /// Lines added to the `[data]` section, e.g. `compact-full-write-cold-duration = "1s"`.
    pub data_settings: Vec<String>,
    /// The directory of a stopped instance ([`Influxd::dir`]) whose `meta`, `data` and `wal`
    /// the new one starts with (copied, modification times kept).
    pub seed: Option<PathBuf>,
}

/// Why a launch failed.
enum LaunchError {
    /// The process exited because one of its ports was taken.
    PortInUse,
    /// Anything else; the message includes the log tail.
    Failed(String),
}

impl Influxd {
    /// Starts a fresh `influxd` on free ports and waits until `/ping` answers 204.
    ///
    /// Panics when `influxd` is not on `PATH` (with an install hint) or does not come up.
    pub fn spawn() -> Influxd {
        Influxd::spawn_configured(false, false)
    }

    /// Like [`Influxd::spawn`] with the query log on (`[data] query-log-enabled`): each statement
    /// influxd runs is logged as it understood it; read them with [`Influxd::executed_statements`].
    pub fn spawn_logging_queries() -> Influxd {
        Influxd::spawn_configured(false, true)
    }

    /// Like [`Influxd::spawn`] with `auth-enabled = true` and one admin user `user` with
    /// `password` (created through the no-user bootstrap InfluxDB allows). `/ping` and
    /// `/debug/vars` stay open; the helpers such as [`Influxd::count`] send no credentials, so
    /// they do not work on this instance.
    pub fn spawn_with_auth(user: &str, password: &str) -> Influxd {
        let influxd = Influxd::spawn_configured(true, false);
        let q = format!(
            "CREATE USER {} WITH PASSWORD '{}' WITH ALL PRIVILEGES",
            quote_ident(user),
            password.replace('\\', "\\\\").replace('\'', "\\'")
        );
        let resp = http::query_post(&influxd.url, &[("q", &q)]);
        assert_eq!(
            resp.status, 200,
            "influxd :{} {q}: {}",
            influxd.port, resp.body
        );
        influxd
    }

    fn spawn_configured(auth: bool, log_queries: bool) -> Influxd {
        let options = InfluxdOptions {
            auth,
            log_queries,
            ..InfluxdOptions::default()
        };
        Influxd::try_spawn_with(&options).unwrap_or_else(|error| panic!("{error}"))
    }

    /// Starts a fresh `influxd` configured by `options` on free ports and waits until `/ping`
    /// answers 204.
    pub fn try_spawn_with(options: &InfluxdOptions) -> Result<Influxd, Error> {
        let bin = try_influxd_binary()?;
        let dir = temp_dir("influxd-")?;
        if let Some(seed) = &options.seed {
            for part in ["meta", "data", "wal"] {
                copy_tree(&seed.join(part), &dir.path().join(part))?;
            }
        }
        let config_path = dir.path().join("influxd.conf");
        let log_path = dir.path().join("influxd.log");
        for _ in 0..SPAWN_ATTEMPTS {
            let port = free_port();
            let rpc_port = free_port();
            let text = configured(config(dir.path(), port, rpc_port), options);
            fs::write(&config_path, text)
                .map_err(Error::io(format!("write {}", config_path.display())))?;
            let url = format!("http://127.0.0.1:{port}");
            match launch(&bin, &config_path, &log_path, &url) {
                Ok(child) => {
                    return Ok(Influxd {
                        port,
                        url,
                        rpc_port,
                        dir,
                        config_path,
                        log_path,
                        child: Some(child),
                    })
                }
                Err(LaunchError::PortInUse) => continue,
                Err(LaunchError::Failed(message)) => return Err(Error::Launch(message)),
            }
        }
        Err(Error::Launch(format!(
            "influxd: ports kept being taken by other processes ({SPAWN_ATTEMPTS} attempts); log tail:\n{}",
            log_tail(&log_path, LOG_TAIL_LINES)
        )))
    }

    /// Restarts a stopped instance on the same ports with the same data and waits for `/ping`.
    /// Does nothing when it is running.
    pub fn start(&mut self) {
        if self.is_running() {
            return;
        }
        let bin = influxd_binary();
        let deadline = Instant::now() + RESTART_PORT_WAIT;
        loop {
            match launch(&bin, &self.config_path, &self.log_path, &self.url) {
                Ok(child) => {
                    self.child = Some(child);
                    return;
                }
                Err(LaunchError::PortInUse) if Instant::now() < deadline => {
                    thread::sleep(Duration::from_millis(200));
                }
                Err(LaunchError::PortInUse) => panic!(
                    "influxd could not get its ports {} / {} back within {RESTART_PORT_WAIT:?}",
                    self.port, self.rpc_port
                ),
                Err(LaunchError::Failed(message)) => panic!("{message}"),
            }
        }
    }

    /// Stops gracefully (SIGTERM; SIGKILL after 10 s), keeping the data dir for [`Influxd::start`].
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            send_signal(&child, Signal::SIGTERM);
            if wait_timeout(&mut child, STOP_TIMEOUT).is_none() {
                kill_and_reap(&mut child);
            }
        }
    }

    /// Crashes the instance (SIGKILL), keeping the data dir for [`Influxd::start`].
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill_and_reap(&mut child);
        }
    }

    /// Freezes the process (SIGSTOP): connections are still accepted by the kernel but never
    /// answered, like a hung backend. Undo with [`Influxd::resume`].
    /// Returns once every thread of the process is stopped (the signal alone is asynchronous).
    pub fn pause(&self) {
        if let Some(child) = &self.child {
            send_signal(child, Signal::SIGSTOP);
            let stopped =
                http::wait_until(Duration::from_secs(5), || all_threads_stopped(child.id()));
            assert!(stopped, "influxd :{} did not stop after SIGSTOP", self.port);
        }
    }

    /// Unfreezes a [`Influxd::pause`]d process (SIGCONT).
    pub fn resume(&self) {
        if let Some(child) = &self.child {
            send_signal(child, Signal::SIGCONT);
        }
    }

    /// Whether the process is running (a process that died on its own is reaped here).
    pub fn is_running(&mut self) -> bool {
        let exited: Option<ExitStatus> = match &mut self.child {
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

    /// The temp dir holding config, data and log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Everything `influxd` logged so far (all runs of this instance).
    pub fn log(&self) -> String {
        String::from_utf8_lossy(&fs::read(&self.log_path).unwrap_or_default()).into_owned()
    }

    /// Every statement influxd ran so far, in order, as it logged them (its own rendering:
    /// `SELECT * FROM db.rp.m`, names quoted only where needed). Only with
    /// [`Influxd::spawn_logging_queries`].
    pub fn executed_statements(&self) -> Vec<String> {
        self.log()
            .lines()
            .filter(|line| line.contains("msg=\"Executing query\""))
            .filter_map(|line| logfmt_value(line, "query"))
            .collect()
    }

    /// `GET /query?db=&q=&epoch=ns`; panics when the status is not 200. Statement errors (such as
    /// `database not found`) come back inside the JSON, as InfluxDB sends them.
    pub fn query(&self, db: &str, q: &str) -> Value {
        let mut url = format!("{}/query?epoch=ns&q={}", self.url, http::urlencode(q));
        if !db.is_empty() {
            url.push_str(&format!("&db={}", http::urlencode(db)));
        }
        let resp = http::get(&url);
        assert_eq!(
            resp.status, 200,
            "influxd :{} query {q:?} on db {db:?}: {}",
            self.port, resp.body
        );
        resp.json()
    }

    /// `POST /query` (for CREATE, DROP, DELETE ...); panics on a non-200 status or a statement error.
    pub fn exec(&self, db: &str, q: &str) -> Value {
        let mut params = vec![("q", q)];
        if !db.is_empty() {
            params.push(("db", db));
        }
        let resp = http::query_post(&self.url, &params);
        assert_eq!(
            resp.status, 200,
            "influxd :{} exec {q:?}: {}",
            self.port, resp.body
        );
        let json = resp.json();
        if let Some(error) = statement_error(&json) {
            panic!("influxd :{} exec {q:?}: {error}", self.port);
        }
        json
    }

    /// `CREATE DATABASE "db"` (a no-op when it exists).
    pub fn create_db(&self, db: &str) {
        self.exec("", &format!("CREATE DATABASE {}", quote_ident(db)));
    }

    /// `DROP DATABASE "db"` (a no-op when it does not exist).
    pub fn drop_db(&self, db: &str) {
        self.exec("", &format!("DROP DATABASE {}", quote_ident(db)));
    }

    /// Names from `SHOW DATABASES`.
    pub fn databases(&self) -> Vec<String> {
        first_column(&self.query("", "SHOW DATABASES"))
    }

    /// Names from `SHOW MEASUREMENTS`; empty when the db has none or does not exist.
    pub fn measurements(&self, db: &str) -> Vec<String> {
        let json = self.query(db, "SHOW MEASUREMENTS");
        match statement_error(&json) {
            Some(error) if error.contains("database not found") => Vec::new(),
            Some(error) => panic!("influxd :{} SHOW MEASUREMENTS on {db}: {error}", self.port),
            None => first_column(&json),
        }
    }

    /// Points in `measurement` of `db`'s default retention policy; 0 when there are none or the
    /// db does not exist. With several fields, the largest per-field count.
    pub fn count(&self, db: &str, measurement: &str) -> u64 {
        self.count_from(db, &quote_ident(measurement))
    }

    /// Like [`Influxd::count`] for an explicit retention policy.
    pub fn count_rp(&self, db: &str, rp: &str, measurement: &str) -> u64 {
        let from = format!(
            "{}.{}.{}",
            quote_ident(db),
            quote_ident(rp),
            quote_ident(measurement)
        );
        self.count_from(db, &from)
    }

    fn count_from(&self, db: &str, from: &str) -> u64 {
        let json = self.query(db, &format!("SELECT COUNT(*) FROM {from}"));
        if let Some(error) = statement_error(&json) {
            if error.contains("database not found") || error.contains("retention policy not found")
            {
                return 0;
            }
            panic!("influxd :{} COUNT(*) FROM {from}: {error}", self.port);
        }
        let Some(series) = json["results"][0]["series"].as_array() else {
            return 0;
        };
        series
            .iter()
            .flat_map(|s| s["values"].as_array().into_iter().flatten())
            .flat_map(|row| row.as_array().into_iter().flatten().skip(1))
            .filter_map(Value::as_u64)
            .max()
            .unwrap_or(0)
    }

    /// Writes line protocol straight to this instance (bypassing the proxy); returns the status.
    pub fn write(&self, db: &str, body: impl AsRef<[u8]>) -> u16 {
        http::write(&self.url, db, body).status
    }
}

impl Drop for Influxd {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill_and_reap(&mut child);
        }
        if test_log_enabled() {
            eprintln!(
                "--- influxd :{} log tail ({}) ---\n{}",
                self.port,
                self.log_path.display(),
                log_tail(&self.log_path, LOG_TAIL_LINES)
            );
        }
    }
}

/// Whether every thread of `pid` is in state `T` (stopped).
fn all_threads_stopped(pid: u32) -> bool {
    procfs::thread_states(pid).is_some_and(|states| states.iter().all(|&s| s == 'T'))
}

/// InfluxQL identifiers are quoted with the proxy's one quoting function;
/// `hostile_names` checks it against influxd itself.
pub use influx_wire::influxql::quote_ident;

/// The value of `key` in an influxd log line (logfmt as `zap-logfmt` writes it: bare, or in
/// double quotes with `\\`, `\"`, `\n`, `\r`, `\t` and `\u00XX` escapes).
fn logfmt_value(line: &str, key: &str) -> Option<String> {
    let start = line.find(&format!(" {key}="))? + key.len() + 2;
    let rest = &line[start..];
    let Some(quoted) = rest.strip_prefix('"') else {
        return Some(rest.split(' ').next().unwrap_or("").to_string());
    };
    let mut out = String::new();
    let mut chars = quoted.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(out),
            '\\' => match chars.next()? {
                'n' => out.push('\n'),
                'r' => out.push('\r'),
                't' => out.push('\t'),
                'u' => {
                    let hex: String = chars.by_ref().take(4).collect();
                    out.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
                }
                other => out.push(other),
            },
            c => out.push(c),
        }
    }
    None
}

/// The `error` of the first statement result, if any.
pub fn statement_error(json: &Value) -> Option<&str> {
    json["results"][0]["error"].as_str()
}

/// The first column of every row of the first statement's first series.
fn first_column(json: &Value) -> Vec<String> {
    json["results"][0]["series"][0]["values"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|row| row[0].as_str().map(str::to_owned))
        .collect()
}

fn influxd_binary() -> PathBuf {
    try_influxd_binary().unwrap_or_else(|error| panic!("{error}"))
}

fn try_influxd_binary() -> Result<PathBuf, Error> {
    find_on_path("influxd").ok_or(Error::Missing {
        program: "influxd".to_owned(),
        hint: "install the Debian package `influxdb` (apt-get install influxdb)",
    })
}

/// The config file, from the template the scripts share (its header says why each key is set).
fn config(dir: &Path, port: u16, rpc_port: u16) -> String {
    include_str!("../../../scripts/influxd.conf.template")
        .replace("@DIR@", &dir.display().to_string())
        .replace("@RPC_PORT@", &rpc_port.to_string())
        .replace("@PORT@", &port.to_string())
}

/// The template's settings as `options` change them (the log level is filled in last).
fn configured(mut text: String, options: &InfluxdOptions) -> String {
    if options.auth {
        text = text.replace("auth-enabled = false", "auth-enabled = true");
    }
    if options.log_queries {
        text = text.replace("query-log-enabled = false", "query-log-enabled = true");
    }
    if !options.data_settings.is_empty() {
        let lines: String = options
            .data_settings
            .iter()
            .map(|line| format!("  {line}\n"))
            .collect();
        text = text.replacen("[data]\n", &format!("[data]\n{lines}"), 1);
    }
    text.replace("@LOG_LEVEL@", options.log_level.unwrap_or("info"))
}

/// Starts `influxd -config <config_path>` and waits until *this* process answers `/ping`.
fn launch(
    bin: &Path,
    config_path: &Path,
    log_path: &Path,
    url: &str,
) -> Result<Child, LaunchError> {
    let cannot_run = |error: std::io::Error| {
        LaunchError::Failed(format!("cannot run {}: {error}", bin.display()))
    };
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path)
        .map_err(cannot_run)?;
    let log_start = log.metadata().map_err(cannot_run)?.len();
    let mut child = Command::new(bin)
        .arg("-config")
        .arg(config_path)
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(cannot_run)?)
        .stderr(log)
        .spawn()
        .map_err(cannot_run)?;
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait().map_err(cannot_run)? {
            let new_log = fs::read(log_path).unwrap_or_default();
            let new_log = String::from_utf8_lossy(&new_log[log_start as usize..]);
            if new_log.contains("address already in use") {
                return Err(LaunchError::PortInUse);
            }
            return Err(LaunchError::Failed(format!(
                "influxd ({url}) exited with {status} before answering /ping; log tail:\n{}",
                log_tail(log_path, LOG_TAIL_LINES)
            )));
        }
        if is_ready(url, config_path) {
            return Ok(child);
        }
        if Instant::now() >= deadline {
            kill_and_reap(&mut child);
            return Err(LaunchError::Failed(format!(
                "influxd ({url}) did not answer /ping with 204 within {READY_TIMEOUT:?}; log tail:\n{}",
                log_tail(log_path, LOG_TAIL_LINES)
            )));
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// `/ping` answers 204 and `/debug/vars` shows our config file on the command line, so the
/// answer did not come from another process that took the port.
fn is_ready(url: &str, config_path: &Path) -> bool {
    let pinged = matches!(http::try_get(&format!("{url}/ping")), Ok(resp) if resp.status == 204);
    if !pinged {
        return false;
    }
    let Ok(vars) = http::try_get(&format!("{url}/debug/vars")) else {
        return false;
    };
    let Ok(vars) = serde_json::from_str::<Value>(&vars.body) else {
        return false;
    };
    let ours = config_path.to_string_lossy();
    vars["cmdline"]
        .as_array()
        .is_some_and(|args| args.iter().any(|arg| arg.as_str() == Some(&*ours)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_change_the_template() {
        let plain = configured(config(Path::new("/d"), 1, 2), &InfluxdOptions::default());
        assert!(plain.contains("level = \"info\"") && plain.contains("dir = \"/d/data\""));
        assert!(!plain.contains("@"), "unfilled placeholder in:\n{plain}");
        let options = InfluxdOptions {
            log_level: Some("warn"),
            data_settings: vec!["compact-full-write-cold-duration = \"1s\"".to_owned()],
            auth: true,
            ..InfluxdOptions::default()
        };
        let text = configured(config(Path::new("/d"), 1, 2), &options);
        assert!(text.contains("level = \"warn\"") && text.contains("auth-enabled = true"));
        assert!(
            text.contains(
                "[data]\n  compact-full-write-cold-duration = \"1s\"\n  dir = \"/d/data\""
            ),
            "{text}"
        );
    }
}
