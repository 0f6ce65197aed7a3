//! systemd's service watchdog (`WatchdogSec=` in the unit).
//!
//! systemd passes the timeout in `WATCHDOG_USEC` (and our pid in
//! `WATCHDOG_PID`); unless it hears `WATCHDOG=1` within that time it kills
//! the service (SIGABRT, then SIGKILL) and `Restart=on-failure` starts it
//! again. The pings come from the main actix event loop, the one that runs
//! the control loop (signals, reload) and the supervisors: if that loop
//! hangs, the pings stop and systemd restarts the proxy. While start-up
//! blocks before the loop runs (RocksDB recovering the queues can take
//! minutes), a plain thread pings instead; `TimeoutStartSec=` bounds that
//! phase. Outside systemd (no `WATCHDOG_USEC`) nothing is sent.

use std::sync::mpsc;
use std::time::Duration;

use tracing::info;

/// The watchdog systemd runs on this process.
#[derive(Debug, Clone, Copy)]
pub struct Watchdog {
    /// Time between two pings: half the timeout, as sd_watchdog_enabled(3)
    /// recommends, so one late tick does not trip it.
    period: Duration,
}

impl Watchdog {
    /// The watchdog systemd asked for, or `None` when there is none (not
    /// under systemd, no `WatchdogSec=`, or the variables name another pid).
    pub fn from_env() -> Option<Self> {
        let timeout = sd_notify::watchdog_enabled()?;
        let period = (timeout / 2).max(MIN_PERIOD);
        info!(
            timeout_ms = timeout.as_millis() as u64,
            period_ms = period.as_millis() as u64,
            "systemd watchdog enabled."
        );
        Some(Self { period })
    }

    /// Pings from a thread of its own until the returned guard is dropped:
    /// for the blocking start-up, before the event loop runs.
    pub fn ping_during_startup(&self) -> StartupPings {
        let (stop, stopped) = mpsc::channel::<()>();
        let period = self.period;
        let spawned = std::thread::Builder::new()
            .name("watchdog-startup".into())
            .spawn(move || {
                // Ends when the guard drops the sender (Disconnected).
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(period) {
                    ping();
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "Starting the start-up watchdog thread failed; a long queue recovery may trip the watchdog.");
        }
        StartupPings { _stop: stop }
    }

    /// Pings forever from the event loop this future is spawned on; abort
    /// the task to stop. A loop that stops polling its tasks stops pinging.
    pub async fn ping_from_event_loop(self) {
        let mut tick = tokio::time::interval(self.period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            ping();
        }
    }
}

/// Keeps the start-up ping thread running; dropping it stops the thread.
#[derive(Debug)]
pub struct StartupPings {
    _stop: mpsc::Sender<()>,
}

/// Shortest ping period, whatever tiny `WatchdogSec=` is configured.
const MIN_PERIOD: Duration = Duration::from_millis(100);

/// Sends one `WATCHDOG=1`. A failed send is not logged: it would repeat
/// every period, and systemd reports the missing pings itself.
fn ping() {
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
}
