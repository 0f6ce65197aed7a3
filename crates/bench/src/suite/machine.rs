//! What the report says about the machine it ran on: CPUs, model, memory, kernel, load, and
//! the versions of influxd, the proxy and rustc. Everything here reads `/proc` or runs a
//! program; what cannot be read is reported as `unknown`, never an error.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};

/// The machine table of the report.
#[derive(Debug)]
pub(crate) struct Machine {
    pub(crate) model: String,
    pub(crate) memory: String,
    pub(crate) kernel: String,
    pub(crate) load_average: String,
    pub(crate) influxd: String,
    pub(crate) proxy: String,
    pub(crate) rustc: String,
}

impl Machine {
    /// Reads it all; `proxy` is the influx-proxy binary measured.
    pub(crate) fn read(proxy: &Path) -> Machine {
        let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let meminfo = fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let kernel = ["ostype", "osrelease"]
            .map(|f| fs::read_to_string(format!("/proc/sys/kernel/{f}")).unwrap_or_default());
        Machine {
            model: cpu_model(&cpuinfo).unwrap_or_else(|| "unknown".to_owned()),
            memory: memory_gib(&meminfo).unwrap_or_else(|| "unknown".to_owned()),
            kernel: format!("{} {}", kernel[0].trim(), kernel[1].trim()),
            load_average: load_average(),
            influxd: output_of(Command::new("influxd").arg("version"))
                .and_then(|text| text.lines().next().map(str::to_owned))
                .unwrap_or_else(|| "not installed".to_owned()),
            proxy: output_of(Command::new(proxy).arg("-version"))
                .map(|text| proxy_version(&text))
                .unwrap_or_else(|| "unknown".to_owned()),
            rustc: output_of(Command::new("rustc").arg("--version"))
                .map(|text| text.trim().to_owned())
                .unwrap_or_else(|| "unknown".to_owned()),
        }
    }
}

/// CPUs this process may run on (what `nproc` prints).
pub(crate) fn cpus() -> u64 {
    std::thread::available_parallelism().map_or(1, |n| n.get() as u64)
}

/// The CPU numbers this process may run on (`Cpus_allowed_list` of `/proc/self/status`), in
/// order; empty when it cannot be read. Section (b) pins servers to them by number.
pub(crate) fn allowed_cpus() -> Vec<usize> {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .map_or_else(Vec::new, cpu_list)
}

/// The CPUs of a kernel CPU list, `0-2,4` → 0, 1, 2, 4; what does not parse is left out.
fn cpu_list(text: &str) -> Vec<usize> {
    let mut cpus = Vec::new();
    for part in text.trim().split(',') {
        let (first, last) = part.split_once('-').unwrap_or((part, part));
        if let (Ok(first), Ok(last)) = (first.trim().parse(), last.trim().parse::<usize>()) {
            cpus.extend(first..=last);
        }
    }
    cpus.sort_unstable();
    cpus.dedup();
    cpus
}

/// The three load averages of `/proc/loadavg`: `1.47 1.81 3.22`.
pub(crate) fn load_average() -> String {
    let text = fs::read_to_string("/proc/loadavg").unwrap_or_default();
    text.split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The 1-minute load average.
pub(crate) fn load_average_1m() -> Option<f64> {
    load_average().split(' ').next()?.parse().ok()
}

/// Standard output and error of a program run to its end; `None` when it cannot run or fails.
fn output_of(command: &mut Command) -> Option<String> {
    let out = command.stdin(Stdio::null()).output().ok()?;
    out.status.success().then(|| {
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stderr));
        text
    })
}

/// The first `model name` of `/proc/cpuinfo`.
fn cpu_model(cpuinfo: &str) -> Option<String> {
    cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name")?.trim_start().strip_prefix(':'))
        .map(|model| model.trim().to_owned())
        .filter(|model| !model.is_empty())
}

/// `MemTotal` of `/proc/meminfo` in GiB: `23.5 GiB`.
fn memory_gib(meminfo: &str) -> Option<String> {
    let kib: f64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(format!("{:.1} GiB", kib / 1_048_576.0))
}

/// The first two lines of `influx-proxy -version`, runs of spaces squeezed, joined by `, `:
/// `Version: 2.5.12, Git commit: 61787849ab0b`.
fn proxy_version(text: &str) -> String {
    text.lines()
        .take(2)
        .map(|line| {
            line.split(' ')
                .filter(|w| !w.is_empty())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_model_and_memory() {
        let cpuinfo = "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Processor\nflags\t: x\n\
                       model name\t: other\n";
        assert_eq!(
            cpu_model(cpuinfo).as_deref(),
            Some("Intel(R) Xeon(R) Processor")
        );
        assert_eq!(cpu_model("processor\t: 0\n"), None);
        let meminfo = "MemTotal:       24641536 kB\nMemFree:  1 kB\n";
        assert_eq!(memory_gib(meminfo).as_deref(), Some("23.5 GiB"));
    }

    #[test]
    fn the_proxy_version_is_its_first_two_lines() {
        let text = "Version:    2.5.12\nGit commit:  61787849ab0b\nBuild time: x\n";
        assert_eq!(
            proxy_version(text),
            "Version: 2.5.12, Git commit: 61787849ab0b"
        );
    }

    #[test]
    fn cpu_lists_are_ranges_and_single_cpus() {
        assert_eq!(cpu_list("\t0-1\n"), [0, 1]);
        assert_eq!(cpu_list("0-2,4,7-8"), [0, 1, 2, 4, 7, 8]);
        assert_eq!(cpu_list("3"), [3]);
        assert_eq!(cpu_list(""), Vec::<usize>::new());
        assert_eq!(cpu_list("x,5"), [5]);
    }

    #[test]
    fn this_machine_can_be_read() {
        assert!(cpus() >= 1);
        assert!(!allowed_cpus().is_empty());
        assert_eq!(load_average().split(' ').count(), 3);
        assert!(load_average_1m().is_some());
    }
}
