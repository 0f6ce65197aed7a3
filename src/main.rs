//! `influx-proxy` binary: parse the command line, set up logging, run.

use std::process::ExitCode;

use influx_proxy::{app, cli, config::Config, console, runtime};

/// jemalloc keeps freed pages for reuse where glibc handed each large write
/// buffer and each RocksDB memtable fresh pages (see `Cargo.toml`).
#[cfg(target_os = "linux")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let command = match cli::parse(std::env::args().skip(1)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}\n{}", cli::USAGE);
            return ExitCode::from(2);
        }
    };
    match command {
        cli::Command::Help => {
            print!("{}", cli::USAGE);
            ExitCode::SUCCESS
        }
        cli::Command::Console(args) => console::run(args),
        cli::Command::Version => {
            print!("{}", cli::version_text());
            ExitCode::SUCCESS
        }
        cli::Command::CheckConfig { config } => match Config::load(&config) {
            Ok(_) => {
                println!("config file {} is valid", config.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        },
        cli::Command::Run { config } => {
            let path = config;
            let config = match Config::load(&path) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::FAILURE;
                }
            };
            runtime::logging::init(&config.log_level);
            match app::run(config, path) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = %e, "influx-proxy failed.");
                    eprintln!("influx-proxy: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
