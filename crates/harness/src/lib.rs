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
//!
//! Every child process is killed in `Drop`. Set `TEST_LOG=1` to print process logs.

// Panics are how the harness reports a broken environment.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod http;
pub mod influxd;
pub mod proxy;

use std::collections::BTreeSet;
use std::fs;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, ExitStatus};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sys::signal::{kill, Signal};
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

/// A loopback TCP port that was free a moment ago and that this process has not handed out before.
///
/// The port is released before it is returned, so another process can still take it. Callers
/// that start a server on it retry with a new port when the server reports "address already in
/// use".
pub fn free_port() -> u16 {
    static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    loop {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        if HANDED_OUT.lock().unwrap().insert(port) {
            return port;
        }
    }
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
