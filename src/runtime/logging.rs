//! Logging: structured events to journald when running under systemd,
//! human-readable lines on stderr otherwise. The level can change at run
//! time (config reload).

use std::io::IsTerminal as _;
use std::sync::OnceLock;

use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{reload, EnvFilter, Registry};

static FILTER: OnceLock<reload::Handle<EnvFilter, Registry>> = OnceLock::new();

fn filter(level: &str) -> EnvFilter {
    EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"))
}

/// Installs the global subscriber. `RUST_LOG` overrides `level`.
pub fn init(level: &str) {
    let (filter, handle) = reload::Layer::new(filter(level));
    let _ = FILTER.set(handle);
    let registry = tracing_subscriber::registry().with(filter);
    // systemd sets JOURNAL_STREAM for services whose output goes to the
    // journal; only then are native journald fields worth sending.
    if std::env::var_os("JOURNAL_STREAM").is_some() {
        if let Ok(journald) = tracing_journald::layer() {
            let _ = registry
                .with(journald.with_syslog_identifier("influx-proxy".into()))
                .try_init();
            return;
        }
    }
    let _ = registry
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::stderr().is_terminal()),
        )
        .try_init();
}

/// Changes the log filter (`RUST_LOG`, when set, still wins).
pub fn set_level(level: &str) -> Result<(), String> {
    match FILTER.get() {
        Some(handle) => handle.reload(filter(level)).map_err(|e| e.to_string()),
        None => Ok(()),
    }
}
