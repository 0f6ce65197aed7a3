//! `influx-proxy ctl`: one command per operation on a running proxy, over its HTTP API.
//!
//! Each command group has its module: `status`; `placement` (where a measurement lives, and
//! what another config would move); `jobs` (rebalance, recovery, resync, clear, anti-entropy
//! compare and repair, and `watch`, following them with [`crate::console::progress`]);
//! `dead_letters`; `config` (check-config, reload). The proxy is reached through the one
//! client, [`Target`], whose address and credentials default from the config file, so on a
//! packaged host `influx-proxy ctl status` needs no flags.
//!
//! Every command ends with an [`Exit`] code an operator can script on ([`EXIT_CODES`]).

mod config;
mod dead_letters;
mod jobs;
mod placement;
mod status;
pub(crate) mod table;

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, CommandFactory as _, Parser, Subcommand};

use crate::console::client::{ConnectArgs, ConsoleError, Target};
use crate::console::progress::Mode;

/// The exit codes, as `ctl --help` lists them.
pub(crate) const EXIT_CODES: &str = "\
Exit codes:
  0    done (status: every backend active; compare: the circles agree)
  1    the operation failed or was refused, or a config file is invalid
  2    usage: unknown command, flag or value
  3    the proxy cannot be reached, or refused the credentials
  4    the cluster is unhealthy: status saw a backend down or the queue refusing
       writes; compare found buckets that differ
  130  detached with Ctrl-C: the operation keeps running (influx-proxy ctl watch)";

/// How a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exit {
    /// It did what was asked (`status`: the cluster is healthy).
    Done = 0,
    /// The operation failed or was refused, or a config file is invalid.
    Failed = 1,
    /// The command line is wrong.
    Usage = 2,
    /// The proxy cannot be reached or refused the credentials.
    Unreachable = 3,
    /// The cluster is unhealthy (`status`), the circles differ (`compare`).
    Unhealthy = 4,
    /// The operator detached from a running operation (Ctrl-C).
    Detached = 130,
}

/// Why a command could not do what it was asked.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CtlError {
    /// Talking to the proxy failed, or it answered with an error.
    #[error(transparent)]
    Console(#[from] ConsoleError),
    /// The proxy refused the operation, or it failed.
    #[error("{0}")]
    Refused(String),
    /// A config file is invalid or cannot be read.
    #[error("{0}")]
    Config(String),
    /// The arguments do not make sense together.
    #[error("{0}")]
    Usage(String),
}

impl CtlError {
    fn exit(&self) -> Exit {
        match self {
            CtlError::Console(e) if e.is_unreachable_or_unauthorized() => Exit::Unreachable,
            CtlError::Usage(_) => Exit::Usage,
            _ => Exit::Failed,
        }
    }
}

/// What a command returns.
pub(crate) type Outcome = Result<Exit, CtlError>;

#[derive(Debug, Parser)]
#[command(
    name = "influx-proxy",
    bin_name = "influx-proxy",
    disable_help_subcommand = true,
    subcommand_required = true
)]
struct Root {
    #[command(subcommand)]
    command: RootCommand,
}

#[derive(Debug, Subcommand)]
enum RootCommand {
    /// Operate a running proxy: status, placement, migrations with live progress, dead
    /// letters, config reload
    #[command(
        after_help = EXIT_CODES,
        subcommand_required = true,
        disable_help_subcommand = true
    )]
    Ctl(Ctl),
}

#[derive(Debug, Args)]
struct Ctl {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

/// Options every command takes: where the proxy is and how to show answers.
#[derive(Debug, Args)]
pub(crate) struct Global {
    #[command(flatten)]
    connect: ConnectArgs,
    /// Seconds to wait for each answer of the proxy
    #[arg(long, global = true, value_name = "SECONDS", default_value_t = 30)]
    timeout: u64,
    /// Machine-readable output: JSON (JSON lines while following an operation)
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Circles, backends (state, queue depth and age, dead letters) and running operations
    Status(status::StatusArgs),
    /// Where a measurement lives; with --what-if, what another config would move
    Placement(placement::PlacementArgs),
    /// Move misplaced measurements inside a circle, after its backends changed
    Rebalance(jobs::RebalanceArgs),
    /// Rebuild a circle (or some of its backends) from another circle
    Recovery(jobs::RecoveryArgs),
    /// Copy every circle into every other (all data, or a recent window)
    Resync(jobs::ResyncArgs),
    /// Drop measurements from the backends of a circle that do not own them
    Clear(jobs::ClearArgs),
    /// Anti-entropy: the time buckets whose data differs between circles
    Compare(jobs::CompareArgs),
    /// Anti-entropy: copy to each circle what it lacks, bucket by bucket
    Repair(jobs::RepairArgs),
    /// Follow the running operations until they end (re-attach after Ctrl-C)
    Watch(jobs::WatchArgs),
    /// The lines backends refused: list, export, replay, purge
    #[command(subcommand)]
    DeadLetters(dead_letters::DeadLetters),
    /// Validate a config file and print every problem (exit 1 when invalid)
    CheckConfig(config::CheckArgs),
    /// Validate the proxy's config file, make the proxy reload it (SIGHUP), print what changed
    Reload,
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell)
    Completions {
        /// The shell
        shell: clap_complete::Shell,
    },
}

/// Runs `influx-proxy ctl ...`; `args` start with `ctl`.
pub(crate) fn run(args: Vec<String>) -> ExitCode {
    let root = match Root::try_parse_from(std::iter::once("influx-proxy".to_string()).chain(args)) {
        Ok(root) => root,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(e.exit_code().clamp(0, 255) as u8);
        }
    };
    let RootCommand::Ctl(ctl) = root.command;
    let outcome = dispatch(&ctl.global, ctl.command);
    let exit = match outcome {
        Ok(exit) => exit,
        Err(e) => {
            report(&e, ctl.global.json);
            e.exit()
        }
    };
    ExitCode::from(exit as u8)
}

fn dispatch(global: &Global, command: Command) -> Outcome {
    match command {
        Command::Completions { shell } => {
            let mut cmd = Root::command();
            clap_complete::generate(shell, &mut cmd, "influx-proxy", &mut std::io::stdout());
            Ok(Exit::Done)
        }
        Command::CheckConfig(args) => config::check(global, &args),
        Command::Status(args) => status::run(&Ctx::connect(global)?, &args),
        Command::Placement(args) => placement::run(&Ctx::connect(global)?, &args),
        Command::Rebalance(args) => jobs::rebalance(&Ctx::connect(global)?, &args),
        Command::Recovery(args) => jobs::recovery(&Ctx::connect(global)?, &args),
        Command::Resync(args) => jobs::resync(&Ctx::connect(global)?, &args),
        Command::Clear(args) => jobs::clear(&Ctx::connect(global)?, &args),
        Command::Compare(args) => jobs::compare(&Ctx::connect(global)?, &args),
        Command::Repair(args) => jobs::repair(&Ctx::connect(global)?, &args),
        Command::Watch(args) => jobs::watch(&Ctx::connect(global)?, &args),
        Command::DeadLetters(cmd) => dead_letters::run(&Ctx::connect(global)?, &cmd),
        Command::Reload => config::reload(&Ctx::connect(global)?),
    }
}

/// Prints why a command failed: a line on stderr, or a JSON object on stdout with `--json`.
fn report(e: &CtlError, json: bool) {
    if json {
        println!(
            "{}",
            serde_json::json!({ "error": e.to_string(), "exit": e.exit() as u8 })
        );
    } else {
        eprintln!("influx-proxy ctl: {e}");
        if matches!(
            e,
            CtlError::Console(ConsoleError::Status { status: 401, .. })
        ) {
            eprintln!("(credentials come from the config file, --username/--password or INFLUX_PROXY_USERNAME/PASSWORD)");
        }
    }
}

/// A command's connection to the proxy, and how to print.
#[derive(Debug)]
pub(crate) struct Ctx {
    /// The proxy.
    pub target: Target,
    /// `--json`.
    pub json: bool,
}

impl Ctx {
    /// The proxy `global` points at (through the config file unless `--url` says otherwise).
    fn connect(global: &Global) -> Result<Ctx, CtlError> {
        let timeout = Duration::from_secs(global.timeout.max(1));
        let target = global.connect.target(timeout)?;
        Ok(Ctx {
            target,
            json: global.json,
        })
    }

    /// How progress is shown: JSON lines with `--json`, bars on a terminal, else lines.
    pub(crate) fn progress_mode(&self) -> Mode {
        if self.json {
            Mode::Json
        } else if std::io::stdout().is_terminal() && std::io::stderr().is_terminal() {
            Mode::Bars
        } else {
            Mode::Lines
        }
    }

    /// Prints `value` as JSON (pretty on a terminal).
    pub(crate) fn print_json(&self, value: &serde_json::Value) {
        if std::io::stdout().is_terminal() {
            println!(
                "{}",
                serde_json::to_string_pretty(value).unwrap_or_default()
            );
        } else {
            println!("{value}");
        }
    }
}

/// The config file to read ([`ConnectArgs::config_path`]).
fn config_path(global: &Global) -> Option<PathBuf> {
    global.connect.config_path()
}

/// A number or a name of one of the proxy's circles, as `--circle` takes it; its id.
pub(crate) fn circle_id(ctx: &Ctx, wanted: &str) -> Result<usize, CtlError> {
    let state = ctx.target.get_json("/migrate/state")?;
    let circles: Vec<(usize, String)> = state["circles"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| {
            let id = c["circle_id"].as_u64()? as usize;
            Some((id, c["circle_name"].as_str().unwrap_or("").to_string()))
        })
        .collect();
    circles
        .iter()
        .find(|(id, name)| name == wanted || id.to_string() == wanted)
        .map(|(id, _)| *id)
        .ok_or_else(|| {
            let known: Vec<String> = circles
                .iter()
                .map(|(id, name)| format!("{id} ({name})"))
                .collect();
            CtlError::Refused(format!(
                "unknown circle {wanted:?}; the proxy has {}",
                known.join(", ")
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Root, clap::Error> {
        Root::try_parse_from(std::iter::once("influx-proxy").chain(args.iter().copied()))
    }

    #[test]
    fn the_command_line_is_consistent() {
        Root::command().debug_assert();
    }

    #[test]
    fn global_options_go_anywhere_and_usage_errors_exit_2() {
        let root = parse(&["ctl", "status", "--json", "--url", "http://h:1"]).unwrap();
        let RootCommand::Ctl(ctl) = root.command;
        assert!(ctl.global.json);
        assert_eq!(ctl.global.connect.url.as_deref(), Some("http://h:1"));
        let e = parse(&["ctl", "nope"]).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        let help = parse(&["ctl", "--help"]).unwrap_err();
        assert_eq!(help.exit_code(), 0);
        assert!(help.to_string().contains("Exit codes:"), "{help}");
    }

    #[test]
    fn unreachable_and_unauthorized_are_3_other_answers_1() {
        let status = |status| {
            CtlError::Console(ConsoleError::Status {
                url: String::new(),
                status,
                message: String::new(),
            })
        };
        assert_eq!(status(401).exit(), Exit::Unreachable);
        assert_eq!(status(400).exit(), Exit::Failed);
        let down = CtlError::Console(ConsoleError::Unreachable {
            url: String::new(),
            reason: String::new(),
        });
        assert_eq!(down.exit(), Exit::Unreachable);
        assert_eq!(CtlError::Config(String::new()).exit(), Exit::Failed);
    }
}
