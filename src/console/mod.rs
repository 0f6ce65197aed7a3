//! The operator's console: `influx-proxy ctl ...` (one command per operation, with live
//! progress) and `influx-proxy top` (a terminal dashboard).
//!
//! Both are clients of a running proxy: they speak only its HTTP API, through
//! [`client::Target`], with the address, credentials and TLS a client would use. Nothing
//! here reaches into the running process, so what the console shows is what `/metrics`,
//! `/health` and the operation endpoints expose to everyone else (Prometheus included).
//!
//! - `ctl`: its commands, one module per group; [`progress`] shows a running operation.

pub mod client;
mod ctl;
mod progress;
pub mod top;

pub use client::{ConsoleError, Target};

use std::process::ExitCode;

/// Runs a console command; `args` start with the subcommand (`ctl` or `top`).
pub fn run(args: Vec<String>) -> ExitCode {
    match args.first().map(String::as_str) {
        Some("ctl") => ctl::run(args),
        Some("top") => top::run(args),
        other => {
            eprintln!("influx-proxy: unknown console command {other:?}");
            ExitCode::from(2)
        }
    }
}
