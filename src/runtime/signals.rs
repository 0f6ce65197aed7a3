//! OS signals translated into control messages, in one place.

use tokio::signal::unix::{signal, SignalKind};

/// What a signal asks the process to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// SIGTERM (systemd stop) or SIGINT (Ctrl-C): stop gracefully.
    Shutdown(&'static str),
    /// SIGHUP (systemctl reload): re-read the config.
    Reload,
}

/// A stream of control messages from the OS.
#[derive(Debug)]
pub struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    /// Installs the handlers; must run inside a Tokio runtime.
    pub fn new() -> std::io::Result<Signals> {
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    /// Waits for the next signal.
    pub async fn next(&mut self) -> Control {
        tokio::select! {
            _ = self.term.recv() => Control::Shutdown("SIGTERM"),
            _ = self.int.recv() => Control::Shutdown("SIGINT"),
            _ = self.hup.recv() => Control::Reload,
        }
    }
}
