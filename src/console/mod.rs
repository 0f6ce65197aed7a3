//! The operator's console: `influx-proxy ctl ...` (one command per operation, with live
//! progress) and `influx-proxy top` (a terminal dashboard).
//!
//! Both are clients of a running proxy: they speak only its HTTP API, through
//! [`client::Target`], with the address, credentials and TLS a client would use. Nothing
//! here reaches into the running process, so what the console shows is what `/metrics`,
//! `/health` and the operation endpoints expose to everyone else (Prometheus included).

pub mod client;
pub mod top;

pub use client::{ConsoleError, Target};

use std::process::ExitCode;

/// Runs a console command; `args` start with the subcommand (`ctl` or `top`).
pub fn run(args: Vec<String>) -> ExitCode {
    if args.first().map(String::as_str) == Some("top") {
        return top::run(args);
    }
    eprintln!(
        "influx-proxy {}: not built yet",
        args.first().map_or("", String::as_str)
    );
    ExitCode::from(2)
}
