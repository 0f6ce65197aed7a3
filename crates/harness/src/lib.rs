//! Harness for the integration tests and the benchmarks (style guide, convention 12): real
//! `influxd` servers and the built proxy on free loopback ports.
//!
//! * [`influxd::Influxd`] runs a real InfluxDB 1.x (`influxd` from Debian's `influxdb` package) on
//!   free loopback ports in a temp dir. A missing binary fails the test with an install hint; it
//!   never skips.
//! * [`proxy::Proxy`] runs the built `influx-proxy` binary on a free port with its own data dir;
//!   [`proxy::two_by_two`] gives the standard layout of two circles with two backends each.
//! * [`http`] has blocking client helpers that return status and body instead of panicking on
//!   4xx/5xx.
//! * [`sink::Sink`] runs the benchmarks' null InfluxDB (`influx-proxy-bench sink`).
//! * [`procfs`] reads a process's CPU time and resident memory (the one `/proc` parser).
//! * [`udp`] sends datagrams to the proxy's UDP listeners (with Python's `socket` module).
//! * [`tmux::Tmux`] runs a terminal program in a detached `tmux` session, reads its screen and
//!   types keys.
//!
//! Every child process is killed in `Drop`. Set `TEST_LOG=1` to print process logs.
//!
//! The tests want a broken environment to fail loudly, so the runners they call panic; the
//! benchmark suite wants to say which run failed and go on cleaning up, so every runner also has
//! a `try_` form that returns [`Error`] (the panicking one calls it and panics with its text).

// Panics are how the harness reports a broken environment.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod http;
pub mod influxd;
pub mod procfs;
pub mod proxy;
pub mod sink;
pub mod tmux;
pub mod udp;

use std::collections::BTreeSet;
use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus};
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sys::signal::kill;
/// The signals [`send_signal`] sends (re-exported so that callers need no `nix` of their own).
pub use nix::sys::signal::Signal;
use nix::unistd::Pid;

/// Lines of a child's log shown when it fails.
pub const LOG_TAIL_LINES: usize = 60;

/// A database name no other test uses: `{prefix}_{unix nanos}_{counter}`.
pub fn unique_db(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}_{nanos}_{n}")
}

/// Why a runner of the harness could not start or ask its process (the `try_` forms).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The program is not installed; the text says how to install it.
    #[error("{program} not found: {hint}")]
    Missing { program: String, hint: &'static str },
    /// The process did not come up; the text includes its log tail.
    #[error("{0}")]
    Launch(String),
    /// A file or directory of the harness could not be made, written or read.
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// A request got no answer, or not the one expected.
    #[error("{url}: {message}")]
    Request { url: String, message: String },
}

impl Error {
    /// An [`Error::Io`] about `what`.
    pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let what = what.into();
        move |source| Error::Io { what, source }
    }
}

/// Records `port` as handed out; false when it was before (by either port function).
fn claim_port(port: u16) -> bool {
    static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    HANDED_OUT.lock().unwrap().insert(port)
}

/// A loopback TCP port that was free a moment ago and that this process has not handed out before.
///
/// The port is released before it is returned, so another process can still take it. Callers
/// that start a server on it retry with a new port when the server reports "address already in
/// use".
pub fn free_port() -> u16 {
    loop {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        if claim_port(port) {
            return port;
        }
    }
}

/// A free loopback port below the kernel's ephemeral range, for a server that is killed and
/// started again on the same port (the benchmarks' sink outage).
///
/// A port inside the ephemeral range can meanwhile become the local end of some outgoing
/// connection: nobody listens on it, yet the server cannot bind it again (a CI run lost its
/// sink so). [`free_port`]'s ports all come from that range.
pub fn free_stable_port() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let low = ephemeral_low();
    let span = low - 12_000;
    if NEXT.load(Ordering::Relaxed) == 0 {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let start = 10_000 + u16::try_from(nanos % u32::from(span)).unwrap_or(0);
        let _ = NEXT.compare_exchange(0, start, Ordering::Relaxed, Ordering::Relaxed);
    }
    loop {
        let mut port = NEXT.fetch_add(1, Ordering::Relaxed);
        if port >= low - 1 {
            NEXT.store(10_000, Ordering::Relaxed);
            port = 10_000;
        }
        if TcpListener::bind(("127.0.0.1", port)).is_ok() && claim_port(port) {
            return port;
        }
    }
}

/// The first port of the kernel's ephemeral range (`ip_local_port_range`); 32768 when it cannot
/// be read or leaves too little room below it.
fn ephemeral_low() -> u16 {
    fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
        .filter(|&low| low > 12_000)
        .unwrap_or(32_768)
}

/// Where the runners make their temp dirs, and whether they are kept.
#[derive(Debug)]
struct TempRoot {
    parent: PathBuf,
    keep: bool,
}

static TEMP_ROOT: OnceLock<TempRoot> = OnceLock::new();

/// Makes every later temp dir of the runners (influxd, proxy, sink) under `parent` and, with
/// `keep`, leaves them there when the runner is dropped (configs and logs to read afterwards).
/// Only the first call counts; without it they go to the system temp dir and are deleted.
pub fn keep_temp_dirs_in(parent: &Path, keep: bool) {
    let _ = TEMP_ROOT.set(TempRoot {
        parent: parent.to_path_buf(),
        keep,
    });
}

/// A fresh temp dir named `{prefix}XXXXXX` (see [`keep_temp_dirs_in`]).
pub fn temp_dir(prefix: &str) -> Result<tempfile::TempDir, Error> {
    let mut builder = tempfile::Builder::new();
    builder.prefix(prefix);
    let dir = match TEMP_ROOT.get() {
        Some(root) => builder.disable_cleanup(root.keep).tempdir_in(&root.parent),
        None => builder.tempdir(),
    };
    dir.map_err(Error::io(format!("create a temp dir {prefix}*")))
}

/// Copies the directory tree `from` to `to` (created), keeping modification times and
/// permissions, as `cp -a` does for a data directory.
pub fn copy_tree(from: &Path, to: &Path) -> Result<(), Error> {
    fs::create_dir_all(to).map_err(Error::io(format!("create {}", to.display())))?;
    let entries = fs::read_dir(from).map_err(Error::io(format!("read {}", from.display())))?;
    for entry in entries {
        let entry = entry.map_err(Error::io(format!("read {}", from.display())))?;
        let (source, target) = (entry.path(), to.join(entry.file_name()));
        let meta = entry
            .metadata()
            .map_err(Error::io(format!("stat {}", source.display())))?;
        if meta.is_dir() {
            copy_tree(&source, &target)?;
            continue;
        }
        fs::copy(&source, &target).map_err(Error::io(format!("copy {}", source.display())))?;
        // influxd reads a shard's last write time from its files' modification times.
        if let Ok(modified) = meta.modified() {
            let _ = fs::File::options()
                .write(true)
                .open(&target)
                .and_then(|f| f.set_times(fs::FileTimes::new().set_modified(modified)));
        }
    }
    Ok(())
}

/// Bytes the files under `dir` take on disk (allocated blocks, as `du` counts them).
pub fn disk_usage(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.metadata() {
            Ok(meta) if meta.is_dir() => meta.blocks() * 512 + disk_usage(&entry.path()),
            Ok(meta) => meta.blocks() * 512,
            Err(_) => 0,
        })
        .sum()
}

/// Whether the env var `TEST_LOG` is set (to anything).
pub fn test_log_enabled() -> bool {
    std::env::var_os("TEST_LOG").is_some()
}

/// The last `lines` lines of a log file, or a note saying why there is none.
pub fn log_tail(path: &Path, lines: usize) -> String {
    match fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(error) => format!("<cannot read {}: {error}>", path.display()),
    }
}

/// Sends `signal` to `child`; a child that already exited is not an error.
pub fn send_signal(child: &Child, signal: Signal) {
    let pid = Pid::from_raw(i32::try_from(child.id()).unwrap());
    match kill(pid, signal) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
        Err(error) => panic!("kill({pid}, {signal}) failed: {error}"),
    }
}

/// Waits up to `timeout` for `child` to exit and reaps it.
pub fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// SIGKILLs `child` and reaps it.
pub fn kill_and_reap(child: &mut Child) -> ExitStatus {
    send_signal(child, Signal::SIGKILL);
    child.wait().unwrap()
}

/// Finds `name` in a directory of `PATH`.
pub fn find_on_path(name: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// Runs `script` with a python that can import `module` (see [`python_with`]); panics with its
/// output unless it exits 0. Its standard output.
pub fn run_python(module: &str, install: &str, script: &str) -> String {
    let out = std::process::Command::new(python_with(module, install))
        .args(["-c", script])
        .output()
        .expect("python3");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "python ({module}): {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// A self-signed certificate for 127.0.0.1 and localhost, valid two days, made by `openssl`
/// in `dir`: (certificate, key) paths, PEM.
pub fn self_signed_cert(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let status = std::process::Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .args(["-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl (Debian package openssl)");
    assert!(status.success(), "openssl could not make a certificate");
    (cert, key)
}

/// A python that can import `module` (the one on PATH, else Debian's); panics with how to
/// install it (`install`) when none can.
pub fn python_with(module: &str, install: &str) -> &'static str {
    for p in ["python3", "/usr/bin/python3"] {
        let ok = std::process::Command::new(p)
            .args(["-c", &format!("import {module}")])
            .output()
            .is_ok_and(|o| o.status.success());
        if ok {
            return p;
        }
    }
    panic!("the python module {module} is missing: {install}");
}

/// A tmpfs of a few MiB mounted on a fresh temp dir, unmounted (lazily) on drop: a small
/// filesystem to fill up. Needs root (the tests run as root); fails the test otherwise.
#[derive(Debug)]
pub struct Tmpfs {
    /// The mount point.
    pub path: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size_mb` MiB.
    pub fn mount(size_mb: u64) -> Tmpfs {
        let dir = tempfile::Builder::new()
            .prefix("influx-proxy-tmpfs-")
            .tempdir()
            .unwrap();
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_mb}m"), "tmpfs"])
            .arg(dir.path())
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "mount -t tmpfs failed (the test needs root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs {
            path: dir.path().to_path_buf(),
            _dir: dir,
        }
    }

    /// Bytes free for an unprivileged writer.
    pub fn free_bytes(&self) -> u64 {
        let s = rustix::fs::statvfs(&self.path).unwrap();
        s.f_bavail * s.f_frsize
    }

    /// Fills the filesystem with the file `name` until a write fails with ENOSPC (as another
    /// process would); returns its path. Remove it to give the space back.
    pub fn fill(&self, name: &str) -> std::path::PathBuf {
        use std::io::Write;
        let path = self.path.join(name);
        let mut file = fs::File::create(&path).unwrap();
        for chunk in [1 << 20, 4096, 512] {
            let block = vec![0xa5u8; chunk];
            loop {
                match file.write(&block) {
                    Ok(n) if n == chunk => {}
                    Ok(_) => break,
                    Err(e) if e.raw_os_error() == Some(nix::libc::ENOSPC) => break,
                    Err(e) => panic!("filling {}: {e}", path.display()),
                }
            }
        }
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.path)
            .status();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_ports_lie_below_the_ephemeral_range_and_are_handed_out_once() {
        let low = ephemeral_low();
        let ports: BTreeSet<u16> = (0..20).map(|_| free_stable_port()).collect();
        assert_eq!(ports.len(), 20);
        for port in ports {
            assert!(
                (10_000..low).contains(&port),
                "{port} (ephemeral from {low})"
            );
            assert!(
                TcpListener::bind(("127.0.0.1", port)).is_ok(),
                "{port} is taken"
            );
        }
    }

    #[test]
    fn a_copied_tree_keeps_contents_and_modification_times() {
        let from = tempfile::tempdir().unwrap();
        fs::create_dir_all(from.path().join("data/db/rp")).unwrap();
        let file = from.path().join("data/db/rp/000001.tsm");
        fs::write(&file, vec![7u8; 10_000]).unwrap();
        let old = SystemTime::now() - Duration::from_secs(3600);
        fs::File::options()
            .write(true)
            .open(&file)
            .unwrap()
            .set_times(fs::FileTimes::new().set_modified(old))
            .unwrap();
        let to = tempfile::tempdir().unwrap();
        copy_tree(&from.path().join("data"), &to.path().join("data")).unwrap();
        let copy = to.path().join("data/db/rp/000001.tsm");
        assert_eq!(fs::read(&copy).unwrap(), vec![7u8; 10_000]);
        assert_eq!(fs::metadata(&copy).unwrap().modified().unwrap(), old);
        assert!(disk_usage(to.path()) >= 10_000);
        assert!(copy_tree(&from.path().join("missing"), to.path()).is_err());
    }
}
