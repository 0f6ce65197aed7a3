//! `influx-proxy-bench suite`: the benchmarks of docs/perf.md, section by section, written as
//! markdown to docs/perf.md (with `--quick`, to `$CARGO_TARGET_DIR/bench/perf-quick.md`).
//!
//! * (a) the Telegraf-like body through influx-proxy and the Go proxy 2.5.12 into 2 x 2 null
//!   sinks ([`user_body`]); (a2) the synthetic body, plain and gzip both ways ([`synthetic`]);
//! * (b) one real influxd directly vs. through the proxy (also with influxd and the load tool
//!   pinned to a CPU each, both ways), and 2 x 2 influxd ([`influxd`]);
//! * (c) the latency a proxy adds at a fixed rate ([`latency`]);
//! * (d) one sink killed for minutes under load: queue growth, RSS, the drain ([`outage`]);
//! * (e) `/rebalance` and `/recovery` into real influxd, ours vs. the Go proxy 2.4.4, against
//!   the limit measured in the same run (the sources' export, an empty influxd's import)
//!   ([`migrate`]);
//! * (f) query latency, direct vs. influx-proxy vs. the Go proxy ([`query`]);
//! * (g) one UDP listener: the rate it takes without loss, at two receive buffers ([`udp`]).
//!
//! Processes (influxd, the proxies, the sinks) are started by the harness crate, the same
//! runners the integration tests use; the load is this binary's `write` mode, run as a child
//! process so that its CPU is its own. Every figure is computed here, from the load tool's JSON
//! summary, `/proc` ([`harness::procfs`]) and what the servers answer.

mod antientropy;
mod independent;
mod influxd;
mod latency;
mod load;
mod machine;
mod migrate;
mod opts;
mod outage;
mod query;
mod report;
mod setup;
mod synthetic;
mod udp;
mod user_body;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

pub(crate) use opts::SuiteOpts;
use report::Report;

/// Why the suite stopped.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    /// A server could not be started or asked (the text names it and has its log tail).
    #[error(transparent)]
    Harness(#[from] harness::Error),
    /// The load tool failed; the text has the tail of its log.
    #[error("the load against {url} failed: {message}")]
    Load { url: String, message: String },
    /// A step of a section failed; the text says which and why.
    #[error("{0}")]
    Failed(String),
    /// A file of the suite could not be written or read.
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// An [`Error::Io`] about `what`.
    fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let what = what.into();
        move |source| Error::Io { what, source }
    }
}

/// The sections, in the order a full run takes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Section {
    A,
    A2,
    B,
    C,
    D,
    E,
    F,
    G,
    H,
    I,
}

impl Section {
    fn parse(name: &str) -> Result<Section, String> {
        Ok(match name {
            "a" => Section::A,
            "a2" => Section::A2,
            "b" => Section::B,
            "c" => Section::C,
            "d" => Section::D,
            "e" => Section::E,
            "f" => Section::F,
            "g" => Section::G,
            "h" => Section::H,
            "i" => Section::I,
            _ => {
                return Err(format!(
                    "no section {name:?} (a, a2, b, c, d, e, f, g, h, i)"
                ))
            }
        })
    }

    fn run(self, ctx: &mut Ctx) -> Result<(), Error> {
        match self {
            Section::A => user_body::run(ctx),
            Section::A2 => synthetic::run(ctx),
            Section::B => influxd::run(ctx),
            Section::C => latency::run(ctx),
            Section::D => outage::run(ctx),
            Section::E => migrate::run(ctx),
            Section::F => query::run(ctx),
            Section::G => udp::run(ctx),
            Section::H => antientropy::run(ctx),
            Section::I => independent::run(ctx),
        }
    }
}

/// What every section needs: the knobs, the programs, the work directory and the report.
#[derive(Debug)]
pub(crate) struct Ctx {
    pub(crate) opts: SuiteOpts,
    /// This program: the load tool (`write`) and the sinks (`sink`).
    pub(crate) bench_bin: PathBuf,
    /// The influx-proxy under test.
    pub(crate) proxy_bin: PathBuf,
    /// influxd is installed (sections b, e and f need it).
    pub(crate) have_influxd: bool,
    /// Logs of the load tool, answers, samples; kept with `--keep`.
    pub(crate) work: PathBuf,
    pub(crate) report: Report,
    /// The machine's CPUs, as the report states them.
    pub(crate) cpus: u64,
}

impl Ctx {
    /// A progress line on stderr.
    pub(crate) fn log(&self, message: impl AsRef<str>) {
        eprintln!("-- {}", message.as_ref());
    }
}

/// The repository this binary was built from: docs/perf.md and ../shared/reference/bin are
/// found relative to it, as scripts/bench.sh found them relative to itself.
fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Parses the `suite` arguments against this process's environment.
pub(crate) fn parse(args: &[String]) -> Result<SuiteOpts, String> {
    let root = repo_root();
    let target_dir =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    SuiteOpts::parse(
        args,
        &|var| std::env::var(var).ok(),
        &root,
        &target_dir,
        machine::cpus(),
    )
}

/// Runs the sections, writes the report to `opts.output` and prints it.
pub(crate) fn run(opts: SuiteOpts) -> Result<(), Error> {
    let bench_bin = std::env::current_exe().map_err(Error::io("the path of this program"))?;
    let work = tempfile::Builder::new()
        .prefix("influx-proxy-bench.")
        .tempdir()
        .map_err(Error::io("create the work directory"))?;
    harness::keep_temp_dirs_in(work.path(), opts.keep);
    if let Some(load) = machine::load_average_1m().filter(|&l| l > 1.0) {
        eprintln!(
            "influx-proxy-bench suite: warning: load average is {load}; other work skews the figures"
        );
    }
    let mut ctx = Ctx {
        proxy_bin: harness::proxy::binary().to_path_buf(),
        bench_bin,
        have_influxd: harness::find_on_path("influxd").is_some(),
        work: work.path().to_path_buf(),
        report: Report::default(),
        cpus: machine::cpus(),
        opts,
    };
    header(&mut ctx);
    let sections = ctx.opts.sections.clone();
    let result = sections.into_iter().try_for_each(|s| s.run(&mut ctx));
    if ctx.opts.keep {
        eprintln!("influx-proxy-bench suite: kept {}", work.keep().display());
    }
    result?;
    ctx.report.blank();
    ctx.report.line(format!(
        "Load average at the end: {}.",
        machine::load_average()
    ));
    let output = &ctx.opts.output;
    if let Some(dir) = output.parent() {
        fs::create_dir_all(dir).map_err(Error::io(format!("create {}", dir.display())))?;
    }
    fs::write(output, ctx.report.text())
        .map_err(Error::io(format!("write {}", output.display())))?;
    print!("{}", ctx.report.text());
    eprintln!("\ninflux-proxy-bench suite: wrote {}", output.display());
    Ok(())
}

/// Title, how the report was made, the machine, and what the load is.
fn header(ctx: &mut Ctx) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let command = std::iter::once("influx-proxy-bench suite".to_owned())
        .chain(ctx.opts.args.iter().cloned())
        .collect::<Vec<_>>()
        .join(" ");
    let m = machine::Machine::read(&ctx.proxy_bin);
    let o = &ctx.opts;
    let r = &mut ctx.report;
    r.line("# influx-proxy performance");
    r.blank();
    r.line(format!(
        "Generated by `{command}` (`scripts/bench.sh{}` builds and runs it) on {}; do not edit by hand.",
        if o.quick { " --quick" } else { "" },
        report::utc_minute(i64::try_from(now).unwrap_or(0))
    ));
    r.blank();
    r.line("| machine | |");
    r.line("|---|---|");
    let cpus = ctx.cpus;
    r.row(&["CPUs (nproc)", &cpus.to_string()]);
    r.row(&["model", &m.model]);
    r.row(&["memory", &m.memory]);
    r.row(&["kernel", &m.kernel]);
    let load = format!(
        "{} (anything else running skews every figure)",
        m.load_average
    );
    r.row(&["load average at start", &load]);
    r.row(&["influxd", &m.influxd]);
    r.row(&["proxy", &m.proxy]);
    r.row(&["rustc", &m.rustc]);
    r.blank();
    let (connections, batch, pool_mb, seconds) = (o.concurrency, o.batch, o.pool_mb, o.seconds);
    r.line(format!(
        "Load: `influx-proxy-bench write`, {connections} connections, {batch} points per request; \
         (a) the Telegraf-like body, the other sections a synthetic one (10 measurements x 100 tag \
         sets, 1,000 series, 2 short tags, 4 fields, about 5x cheaper per point); ns timestamps; \
         gzip bodies are compressed before the timed run (`--pool-mb {pool_mb}`); {seconds} s per \
         run. The load tool, the proxy and its backends share the same {cpus} CPUs, so every \
         figure is a lower bound of what the proxy does on its own machine. \"proxy CPU\" and \
         \"load tool CPU\" are user+system CPU time divided by the run time (cores); \"proxy CPU \
         µs/point\" (CPU time per acknowledged point, delivery to the backends during the run \
         included) depends least on what else runs on the machine."
    ));
    r.blank();
}
