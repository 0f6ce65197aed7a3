//! The suite's knobs: a flag, else the environment variable scripts/bench.sh has always read
//! (README documents `BENCH_SECTIONS=e scripts/bench.sh`), else the default of a full run or of
//! `--quick`. `--quick` fixes the run lengths (2 s runs, a 4 s outage) whatever the
//! environment says, as the script did; flags still override them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::Section;
use crate::{parse_bool, parse_usize, walk_flags};

/// Which proxy a migration run drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum MigrateProxy {
    /// influx-proxy, the build under test.
    Ours,
    /// The Go proxy 2.4.4.
    Go,
    /// Another influx-proxy binary (`--migrate-base`), e.g. a build of main for before/after.
    Base,
}

/// A migration job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum MigrateOp {
    /// A circle grown from 2 to 3 backends.
    Rebalance,
    /// An empty circle rebuilt from a full one.
    Recovery,
}

impl MigrateOp {
    /// Its name in the proxy's API and logs.
    pub(crate) fn name(self) -> &'static str {
        match self {
            MigrateOp::Rebalance => "rebalance",
            MigrateOp::Recovery => "recovery",
        }
    }
}

/// Section (e)'s knobs.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct MigrateOpts {
    pub(crate) points: u64,
    pub(crate) measurements: u64,
    /// The jobs' `cpus` (concurrent measurement copies; the Go proxy accepts at most nproc).
    pub(crate) cpus: u64,
    /// Seconds a run (and the data set's load) may take.
    pub(crate) timeout: u64,
    pub(crate) ops: Vec<MigrateOp>,
    pub(crate) proxies: Vec<MigrateProxy>,
    pub(crate) base: Option<PathBuf>,
    /// `perf record -g` of each proxy during its run.
    pub(crate) perf: bool,
}

/// Section (f)'s knobs.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct QueryOpts {
    /// Seconds each query is timed per target.
    pub(crate) seconds: u64,
    /// Hosts of the telegraf shape (series = 20 x hosts).
    pub(crate) hosts: u64,
    /// Minutes of data, one point per series and minute (made even).
    pub(crate) minutes: u64,
}

/// Everything the suite runs with.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SuiteOpts {
    pub(crate) quick: bool,
    /// The arguments as given, for the report's header.
    pub(crate) args: Vec<String>,
    pub(crate) sections: Vec<Section>,
    pub(crate) output: PathBuf,
    /// Seconds of each load run.
    pub(crate) seconds: u64,
    /// Seconds of each (c) run: a p99 needs many more requests than 10 s at 20 requests/s.
    pub(crate) latency_seconds: u64,
    pub(crate) outage_seconds: u64,
    /// Seconds between two (d) samples during the outage.
    pub(crate) sample_seconds: u64,
    /// Seconds between two (d) samples before and after it.
    pub(crate) drain_sample_seconds: u64,
    /// Seconds of (d) load before the kill and after the restart.
    pub(crate) pre_outage: u64,
    pub(crate) post_outage: u64,
    pub(crate) concurrency: u64,
    pub(crate) batch: u64,
    pub(crate) outage_rate: u64,
    pub(crate) latency_rate: u64,
    /// MB of gzip bodies compressed before a run.
    pub(crate) pool_mb: u64,
    pub(crate) keep: bool,
    pub(crate) go_proxy: PathBuf,
    pub(crate) go_migrate_proxy: PathBuf,
    pub(crate) migrate: MigrateOpts,
    pub(crate) query: QueryOpts,
    /// Points of section (h)'s data set.
    pub(crate) ae_points: u64,
}

/// Flags that take no value.
const BOOL_FLAGS: [&str; 3] = ["--quick", "--keep", "--migrate-perf"];

/// Each flag with a value and the environment variable it falls back to.
const VALUE_FLAGS: [(&str, &str); 24] = [
    ("--sections", "BENCH_SECTIONS"),
    ("--output", "BENCH_OUTPUT"),
    ("--seconds", "BENCH_SECONDS"),
    ("--latency-seconds", "BENCH_LATENCY_SECONDS"),
    ("--outage-seconds", "OUTAGE_SECONDS"),
    ("--sample-seconds", "BENCH_SAMPLE_SECONDS"),
    ("--concurrency", "BENCH_CONCURRENCY"),
    ("--batch", "BENCH_BATCH"),
    ("--outage-rate", "BENCH_OUTAGE_RATE"),
    ("--latency-rate", "BENCH_LATENCY_RATE"),
    ("--pool-mb", "BENCH_POOL_MB"),
    ("--go-proxy", "GO_PROXY"),
    ("--go-migrate-proxy", "GO_MIGRATE_PROXY"),
    ("--migrate-points", "BENCH_MIGRATE_POINTS"),
    ("--migrate-measurements", "BENCH_MIGRATE_MEASUREMENTS"),
    ("--migrate-cpus", "BENCH_MIGRATE_CPUS"),
    ("--migrate-timeout", "BENCH_MIGRATE_TIMEOUT"),
    ("--migrate-ops", "BENCH_MIGRATE_OPS"),
    ("--migrate-proxies", "BENCH_MIGRATE_PROXIES"),
    ("--migrate-base", "BENCH_MIGRATE_BASE"),
    ("--query-seconds", "BENCH_QUERY_SECONDS"),
    ("--query-hosts", "BENCH_QUERY_HOSTS"),
    ("--query-minutes", "BENCH_QUERY_MINUTES"),
    ("--ae-points", "BENCH_AE_POINTS"),
];

/// Run lengths a quick run fixes: environment variables are not read for these.
const QUICK_FIXED: [&str; 4] = [
    "--seconds",
    "--latency-seconds",
    "--outage-seconds",
    "--sample-seconds",
];

/// The flags given and the environment, looked up by flag name.
struct Knobs<'a> {
    flags: BTreeMap<String, String>,
    env: &'a dyn Fn(&str) -> Option<String>,
    quick: bool,
}

impl Knobs<'_> {
    /// The flag's value, else its environment variable's (non-empty).
    fn get(&self, flag: &str) -> Option<String> {
        if let Some(value) = self.flags.get(flag) {
            return Some(value.clone());
        }
        if self.quick && QUICK_FIXED.contains(&flag) {
            return None;
        }
        let (_, var) = VALUE_FLAGS.iter().find(|(f, _)| *f == flag)?;
        (self.env)(var).filter(|v| !v.trim().is_empty())
    }

    fn number(&self, flag: &str, default: u64, min: u64) -> Result<u64, String> {
        match self.get(flag) {
            Some(v) => Ok(parse_usize(flag, v.trim(), min as usize)? as u64),
            None => Ok(default),
        }
    }

    /// `quick` or `full` by the kind of run, unless set.
    fn length(&self, flag: &str, quick: u64, full: u64) -> Result<u64, String> {
        self.number(flag, if self.quick { quick } else { full }, 1)
    }

    /// A space- or comma-separated list.
    fn list(&self, flag: &str, default: &str) -> Vec<String> {
        let text = self.get(flag).unwrap_or_else(|| default.to_owned());
        text.split([' ', ','])
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    }
}

impl SuiteOpts {
    /// Parses `suite` flags; `env` reads an environment variable; `root` is the repository
    /// (docs/perf.md, ../shared/reference/bin), `target_dir` where a quick run's report goes,
    /// `cpus` the machine's (the migration's default `cpus`).
    pub(crate) fn parse(
        args: &[String],
        env: &dyn Fn(&str) -> Option<String>,
        root: &Path,
        target_dir: &Path,
        cpus: u64,
    ) -> Result<SuiteOpts, String> {
        let mut flags = BTreeMap::new();
        let pairs = crate::split_flags(args);
        walk_flags(
            pairs,
            |f| BOOL_FLAGS.contains(&f),
            |flag, value| {
                if BOOL_FLAGS.contains(&flag) {
                    parse_bool(flag, value)?;
                } else if !VALUE_FLAGS.iter().any(|(f, _)| *f == flag) {
                    return Err(format!("unknown suite option {flag}"));
                }
                flags.insert(flag.to_owned(), value.to_owned());
                Ok(())
            },
        )?;
        let set = |flag: &str| {
            flags
                .get(flag)
                .is_some_and(|v| parse_bool(flag, v) == Ok(true))
        };
        let quick = set("--quick");
        let keep = set("--keep") || env("BENCH_KEEP").as_deref() == Some("1");
        let perf = set("--migrate-perf") || env("BENCH_MIGRATE_PERF").as_deref() == Some("1");
        let k = Knobs { flags, env, quick };

        let seconds = k.length("--seconds", 2, 10)?;
        let outage_seconds = k.length("--outage-seconds", 4, 600)?;
        let reference = root.join("../shared/reference/bin");
        let output = match k.get("--output") {
            Some(path) => PathBuf::from(path),
            None if quick => target_dir.join("bench/perf-quick.md"),
            None => root.join("docs/perf.md"),
        };
        Ok(SuiteOpts {
            quick,
            args: args.to_vec(),
            sections: k
                .list("--sections", "a a2 b c d e f g h i")
                .iter()
                .map(|s| Section::parse(s))
                .collect::<Result<_, _>>()?,
            output,
            seconds,
            latency_seconds: k.length("--latency-seconds", 2, 60)?,
            outage_seconds,
            sample_seconds: k.length("--sample-seconds", 1, (outage_seconds / 20).max(3))?,
            drain_sample_seconds: if quick { 1 } else { 2 },
            pre_outage: if quick { 1 } else { 3 },
            post_outage: if quick { 1 } else { 5 },
            concurrency: k.number("--concurrency", 4, 1)?,
            batch: k.number("--batch", 5000, 1)?,
            outage_rate: k.number("--outage-rate", 100_000, 1)?,
            latency_rate: k.number("--latency-rate", 100_000, 1)?,
            // ~12 bytes a point: 25 MB per second covers 2 million points/s.
            pool_mb: k.number("--pool-mb", seconds * 25, 0)?,
            keep,
            go_proxy: k
                .get("--go-proxy")
                .map_or_else(|| reference.join("influx-proxy-2.5.12"), PathBuf::from),
            go_migrate_proxy: k
                .get("--go-migrate-proxy")
                .map_or_else(|| reference.join("influx-proxy-2.4.4"), PathBuf::from),
            migrate: MigrateOpts {
                points: k.length("--migrate-points", 100_000, 10_000_000)?,
                measurements: k.length("--migrate-measurements", 10, 100)?,
                cpus: k.number("--migrate-cpus", cpus.clamp(1, 2), 1)?,
                timeout: k.number("--migrate-timeout", 3600, 1)?,
                ops: k
                    .list("--migrate-ops", "rebalance recovery")
                    .iter()
                    .map(|op| match op.as_str() {
                        "rebalance" => Ok(MigrateOp::Rebalance),
                        "recovery" => Ok(MigrateOp::Recovery),
                        _ => Err(format!("--migrate-ops: rebalance or recovery, not {op:?}")),
                    })
                    .collect::<Result<_, _>>()?,
                proxies: k
                    .list("--migrate-proxies", "ours go")
                    .iter()
                    .map(|who| match who.as_str() {
                        "ours" => Ok(MigrateProxy::Ours),
                        "go" => Ok(MigrateProxy::Go),
                        "base" => Ok(MigrateProxy::Base),
                        _ => Err(format!("--migrate-proxies: ours, go or base, not {who:?}")),
                    })
                    .collect::<Result<_, _>>()?,
                base: k.get("--migrate-base").map(PathBuf::from),
                perf,
            },
            query: QueryOpts {
                seconds: k.length("--query-seconds", 1, 10)?,
                hosts: k.length("--query-hosts", 50, 250)?,
                // Two load workers, each writing every series at every other minute.
                minutes: k.length("--query-minutes", 30, 360)?.div_ceil(2) * 2,
            },
            ae_points: k.length("--ae-points", 100_000, 2_000_000)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &str, env: &[(&str, &str)]) -> Result<SuiteOpts, String> {
        let env: BTreeMap<String, String> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let args: Vec<String> = args.split_whitespace().map(str::to_owned).collect();
        SuiteOpts::parse(
            &args,
            &|var| env.get(var).cloned(),
            Path::new("/repo"),
            Path::new("/target"),
            8,
        )
    }

    #[test]
    fn a_full_run_reads_the_scripts_environment() {
        let o = parse(
            "",
            &[
                ("BENCH_SECONDS", "5"),
                ("BENCH_SECTIONS", "a e"),
                ("OUTAGE_SECONDS", "100"),
                ("BENCH_KEEP", "1"),
            ],
        )
        .unwrap();
        assert!(!o.quick && o.keep);
        assert_eq!(o.sections, [Section::A, Section::E]);
        assert_eq!((o.seconds, o.pool_mb, o.latency_seconds), (5, 125, 60));
        assert_eq!((o.outage_seconds, o.sample_seconds), (100, 5));
        assert_eq!(o.output, Path::new("/repo/docs/perf.md"));
        assert_eq!(
            o.go_proxy,
            Path::new("/repo/../shared/reference/bin/influx-proxy-2.5.12")
        );
        assert_eq!((o.migrate.points, o.migrate.cpus), (10_000_000, 2));
        assert_eq!((o.query.minutes, o.query.hosts), (360, 250));
    }

    #[test]
    fn defaults_of_a_full_run() {
        let o = parse("", &[]).unwrap();
        assert_eq!(o.sections.len(), 10);
        assert_eq!(o.ae_points, 2_000_000);
        assert_eq!(
            (o.seconds, o.pool_mb, o.outage_seconds, o.sample_seconds),
            (10, 250, 600, 30)
        );
        assert_eq!((o.concurrency, o.batch, o.outage_rate), (4, 5000, 100_000));
        assert_eq!(o.migrate.ops, [MigrateOp::Rebalance, MigrateOp::Recovery]);
        assert_eq!(o.migrate.proxies, [MigrateProxy::Ours, MigrateProxy::Go]);
    }

    #[test]
    fn quick_fixes_run_lengths_but_flags_win() {
        let env = [("BENCH_SECONDS", "30"), ("BENCH_MIGRATE_POINTS", "5000")];
        let o = parse("--quick", &env).unwrap();
        assert_eq!((o.seconds, o.outage_seconds, o.sample_seconds), (2, 4, 1));
        assert_eq!(o.output, Path::new("/target/bench/perf-quick.md"));
        assert_eq!((o.migrate.points, o.query.seconds), (5000, 1));
        assert_eq!(o.query.minutes, 30);
        let o = parse("--quick --seconds 3 --sections=b,c --query-minutes 7", &env).unwrap();
        assert_eq!((o.seconds, o.pool_mb), (3, 75));
        assert_eq!(o.sections, [Section::B, Section::C]);
        assert_eq!(o.query.minutes, 8);
    }

    #[test]
    fn refuses_what_it_does_not_know() {
        for bad in [
            "--nope",
            "--sections j",
            "--seconds 0",
            "--batch x",
            "--migrate-ops move",
            "--migrate-proxies java",
            "--quick=maybe",
        ] {
            assert!(parse(bad, &[]).is_err(), "{bad} was accepted");
        }
    }
}
