//! Process plumbing: logging, signals, systemd notifications.

pub mod logging;
pub mod signals;
pub mod watchdog;
