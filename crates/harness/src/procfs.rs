//! The one reader of `/proc/<pid>/stat` and `/proc/<pid>/status`: CPU time, run state and
//! resident memory of a process, for the benchmarks' per-process figures (proxy CPU per point,
//! peak RSS, the influxd's CPU during a migration), the load tool's own CPU, and the harness's
//! check that a paused process has stopped.
//!
//! Every function answers `None` when the process is gone or the file does not parse: a
//! process that exited between two samples is not an error of the caller's.

use std::fs;
use std::sync::OnceLock;

/// The fields of `/proc/<pid>/stat` the harness uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// One letter: `R` running, `S` sleeping, `T` stopped, `Z` zombie, ...
    pub state: char,
    /// User CPU time in clock ticks (field 14).
    pub utime: u64,
    /// System CPU time in clock ticks (field 15).
    pub stime: u64,
}

/// Parses one `/proc/<pid>/stat` line.
pub fn parse_stat(line: &str) -> Option<Stat> {
    // The command name (field 2) is parenthesised and may itself contain spaces and
    // parentheses: the fields that follow start after the last ") ".
    let (_, rest) = line.rsplit_once(") ")?;
    let mut fields = rest.split(' ');
    let state = fields.next()?.chars().next()?;
    // rest starts at field 3 (state); utime and stime are fields 14 and 15.
    let mut fields = fields.skip(10);
    let utime = fields.next()?.parse().ok()?;
    let stime = fields.next()?.parse().ok()?;
    Some(Stat {
        state,
        utime,
        stime,
    })
}

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`; 100 on every Linux the proxy targets).
fn ticks_per_second() -> f64 {
    static TICKS: OnceLock<f64> = OnceLock::new();
    *TICKS.get_or_init(
        || match nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK) {
            Ok(Some(ticks)) if ticks > 0 => ticks as f64,
            _ => 100.0,
        },
    )
}

impl Stat {
    /// User plus system CPU time in seconds.
    pub fn cpu_seconds(&self) -> f64 {
        (self.utime + self.stime) as f64 / ticks_per_second()
    }
}

/// `/proc/<pid>/stat` of a process (`pid` `None`: this one).
pub fn stat(pid: Option<u32>) -> Option<Stat> {
    parse_stat(&fs::read_to_string(format!("/proc/{}/stat", proc_name(pid))).ok()?)
}

/// User plus system CPU seconds a process has used so far (`pid` `None`: this one).
pub fn cpu_seconds(pid: Option<u32>) -> Option<f64> {
    stat(pid).map(|s| s.cpu_seconds())
}

/// The states of every thread of `pid` (`/proc/<pid>/task/*/stat`).
pub fn thread_states(pid: u32) -> Option<Vec<char>> {
    let tasks = fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    Some(
        tasks
            .flatten()
            .map(|task| {
                fs::read_to_string(task.path().join("stat"))
                    .ok()
                    .and_then(|line| parse_stat(&line))
                    .map_or('?', |s| s.state)
            })
            .collect(),
    )
}

/// Resident memory of a process, from `/proc/<pid>/status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Memory {
    /// `VmRSS`: resident now, KiB.
    pub rss_kib: u64,
    /// `VmHWM`: the most it was resident since it started, KiB.
    pub peak_rss_kib: u64,
}

impl Memory {
    /// [`Memory::rss_kib`] in MiB, rounded.
    pub fn rss_mib(&self) -> u64 {
        kib_to_mib(self.rss_kib)
    }

    /// [`Memory::peak_rss_kib`] in MiB, rounded.
    pub fn peak_rss_mib(&self) -> u64 {
        kib_to_mib(self.peak_rss_kib)
    }
}

fn kib_to_mib(kib: u64) -> u64 {
    (kib as f64 / 1024.0).round() as u64
}

/// Parses the `VmRSS` and `VmHWM` lines of a `/proc/<pid>/status` text.
pub fn parse_status(text: &str) -> Option<Memory> {
    let kib = |key: &str| -> Option<u64> {
        text.lines()
            .find_map(|line| line.strip_prefix(key)?.strip_prefix(':'))?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    };
    Some(Memory {
        rss_kib: kib("VmRSS")?,
        peak_rss_kib: kib("VmHWM")?,
    })
}

/// Resident memory of `pid` (`None` also for a zombie, whose status has no `Vm` lines).
pub fn memory(pid: u32) -> Option<Memory> {
    parse_status(&fs::read_to_string(format!("/proc/{pid}/status")).ok()?)
}

fn proc_name(pid: Option<u32>) -> String {
    pid.map_or_else(|| "self".to_owned(), |pid| pid.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_follow_the_last_parenthesis_of_the_command_name() {
        let line = "1234 (my (odd) cmd) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 3 0";
        assert_eq!(
            parse_stat(line),
            Some(Stat {
                state: 'S',
                utime: 250,
                stime: 75
            })
        );
        assert_eq!(parse_stat("garbage"), None);
        assert_eq!(parse_stat("1 (x) R 1 2"), None);
    }

    #[test]
    fn cpu_seconds_divide_ticks_by_the_clock_rate() {
        let stat = Stat {
            state: 'R',
            utime: 250,
            stime: 75,
        };
        assert_eq!(ticks_per_second(), 100.0);
        assert_eq!(stat.cpu_seconds(), 3.25);
    }

    #[test]
    fn status_gives_rss_and_its_high_water_mark() {
        let text = "Name:\tinflux-proxy\nVmPeak:\t  900000 kB\nVmHWM:\t  104858 kB\n\
                    VmRSS:\t   51200 kB\nThreads:\t12\n";
        let memory = parse_status(text).unwrap();
        assert_eq!(
            memory,
            Memory {
                rss_kib: 51200,
                peak_rss_kib: 104858
            }
        );
        assert_eq!((memory.rss_mib(), memory.peak_rss_mib()), (50, 102));
        assert_eq!(parse_status("Name:\tzombie\nState:\tZ\n"), None);
    }

    #[test]
    fn this_process_can_be_read() {
        assert!(cpu_seconds(None).is_some());
        let me = std::process::id();
        assert!(memory(me).is_some_and(|m| m.peak_rss_kib >= m.rss_kib && m.rss_kib > 0));
        assert!(thread_states(me).is_some_and(|s| !s.is_empty()));
        assert_eq!(stat(Some(u32::MAX)), None);
    }
}
