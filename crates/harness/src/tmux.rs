//! A terminal program driven as a person would: [`Tmux::start`] runs a shell command in a
//! detached `tmux` session of a fixed size (Debian's `tmux` package), [`Tmux::screen`] reads
//! what it shows (`capture-pane -p`), [`Tmux::keys`] types (`send-keys`).
//!
//! Each session runs on a tmux server of its own (`-L`, a socket named after the test
//! process), started without the user's `~/.tmux.conf`, and killed in `Drop`: tests never
//! touch a tmux the developer is using, nor each other's.

use std::process::{Command, Output};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::{find_on_path, Error};

/// A detached tmux session running one command.
#[derive(Debug)]
pub struct Tmux {
    socket: String,
}

/// The target of every command: the one window's one pane.
const TARGET: &str = "main";

impl Tmux {
    /// Runs `command` (a `sh -c` command line) in a new `cols` x `rows` session. Panics when
    /// tmux is missing (with the package to install) or the session does not start.
    pub fn start(cols: u16, rows: u16, command: &str) -> Tmux {
        Tmux::try_start(cols, rows, command).unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`Tmux::start`], with an [`Error`] instead of a panic.
    pub fn try_start(cols: u16, rows: u16, command: &str) -> Result<Tmux, Error> {
        find_on_path("tmux").ok_or(Error::Missing {
            program: "tmux".into(),
            hint: "install the Debian package 'tmux' (apt-get install tmux)",
        })?;
        static SESSIONS: AtomicU64 = AtomicU64::new(0);
        let n = SESSIONS.fetch_add(1, Ordering::Relaxed);
        let tmux = Tmux {
            socket: format!("influx-proxy-test-{}-{n}", std::process::id()),
        };
        let (cols, rows) = (cols.to_string(), rows.to_string());
        tmux.run(&[
            "-f",
            "/dev/null",
            "new-session",
            "-d",
            "-s",
            TARGET,
            "-x",
            &cols,
            "-y",
            &rows,
            command,
        ])?;
        Ok(tmux)
    }

    /// The text on screen now, one line per row (trailing spaces trimmed by tmux).
    pub fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", TARGET])
            .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Types `keys` (tmux key names: `q`, `Escape`, `C-c`, `Enter`, or literal text).
    pub fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", TARGET];
        args.extend_from_slice(keys);
        self.run(&args).unwrap_or_else(|e| panic!("{e}"));
    }

    fn run(&self, args: &[&str]) -> Result<Output, Error> {
        let out = Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .output()
            .map_err(Error::io(format!("run tmux {}", args.join(" "))))?;
        if out.status.success() {
            Ok(out)
        } else {
            Err(Error::Launch(format!(
                "tmux {}: {}{}",
                args.join(" "),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )))
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}

/// `s` quoted for `sh` (single quotes; a single quote inside becomes `'\''`).
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_the_shell() {
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
    }
}
