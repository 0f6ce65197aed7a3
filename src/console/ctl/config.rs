//! `ctl check-config` and `ctl reload`.
//!
//! A reload is validate, signal, report: the proxy's own config file (`/process` names it)
//! is validated with the proxy's own loader first, and an invalid file is never signalled
//! (the proxy would refuse it too, but the operator learns why here, on the terminal). Then
//! SIGHUP goes to the proxy's pid, but only when `/proc/<pid>` on this host is that very
//! process (its start time in clock ticks matches the one `/process` reports): a proxy on
//! another host, in another pid namespace, or a reused pid is never signalled. The proxy
//! notes each reload's outcome and diff, counted, in `/process`; `ctl` waits for the count
//! to move past the one it saw before signalling, and prints what was applied.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::{json, Value};

use super::{config_path, CtlError, Ctx, Exit, Global, Outcome};
use crate::config::Config;

/// How long `ctl reload` waits for the proxy to report the reload it asked for.
const RELOAD_WAIT: Duration = Duration::from_secs(60);
/// How often it asks meanwhile.
const RELOAD_POLL: Duration = Duration::from_millis(100);

/// `ctl check-config` arguments.
#[derive(Debug, clap::Args)]
pub(crate) struct CheckArgs {
    /// The file [default: --config, else /etc/influx-proxy/proxy.json, else ./proxy.json]
    path: Option<PathBuf>,
}

/// `ctl check-config`: exit 0 and a summary when valid, 1 and every problem when not.
pub(super) fn check(global: &Global, args: &CheckArgs) -> Outcome {
    let path = args
        .path
        .clone()
        .or_else(|| config_path(global))
        .ok_or_else(|| {
            CtlError::Config(format!(
                "no config file: give its path (none at {})",
                crate::console::client::DEFAULT_CONFIGS.join(" or ./")
            ))
        })?;
    let config =
        Config::load(&path).map_err(|e| CtlError::Config(format!("{}: {e}", path.display())))?;
    let backends: usize = config.circles.iter().map(|c| c.backends.len()).sum();
    if global.json {
        println!(
            "{}",
            json!({"path": path, "valid": true, "circles": config.circles.len(), "backends": backends})
        );
    } else {
        println!(
            "config file {} is valid: {} circles, {backends} backends",
            path.display(),
            config.circles.len()
        );
    }
    Ok(Exit::Done)
}

/// What `/process` says about the running proxy.
#[derive(Debug)]
struct Running {
    pid: u32,
    start_ticks: Option<u64>,
    config_path: PathBuf,
    reloads: u64,
}

impl Running {
    fn read(v: &Value) -> Result<Running, CtlError> {
        let pid = v["pid"]
            .as_u64()
            .and_then(|p| u32::try_from(p).ok())
            .ok_or_else(|| CtlError::Refused("/process names no pid".into()))?;
        Ok(Running {
            pid,
            start_ticks: v["start_ticks"].as_u64(),
            config_path: PathBuf::from(v["config_path"].as_str().unwrap_or("")),
            reloads: v["reloads"].as_u64().unwrap_or(0),
        })
    }

    /// Whether `/proc/<pid>` on this host is the process that answered.
    fn is_local(&self) -> bool {
        self.start_ticks.is_some()
            && crate::metrics::process_start_ticks(self.pid) == self.start_ticks
    }
}

/// `ctl reload`.
pub(super) fn reload(ctx: &Ctx) -> Outcome {
    let running = Running::read(&ctx.target.get_json("/process")?)?;
    if !running.is_local() {
        return Err(CtlError::Refused(format!(
            "the proxy at {} (pid {}) is not a process of this host: cannot signal it. \
             Run `influx-proxy ctl reload` on its host (or `systemctl reload influx-proxy` there)",
            ctx.target.base(),
            running.pid
        )));
    }
    validate(&running.config_path)?;
    let signalled = kill(Pid::from_raw(running.pid as i32), Signal::SIGHUP);
    if let Err(e) = signalled {
        return Err(CtlError::Refused(format!(
            "cannot signal the proxy (pid {}): {e}; run as its user or root \
             (sudo influx-proxy ctl reload), or `sudo systemctl reload influx-proxy`",
            running.pid
        )));
    }
    let last = wait_for_reload(ctx, running.reloads)?;
    if ctx.json {
        ctx.print_json(&last);
    } else {
        print!("{}", describe(&last));
    }
    Ok(if last["outcome"] == "refused" {
        Exit::Failed
    } else {
        Exit::Done
    })
}

/// Refuses to signal a proxy whose config file does not validate.
fn validate(path: &Path) -> Result<(), CtlError> {
    Config::load(path).map(drop).map_err(|e| {
        CtlError::Config(format!(
            "{}: {e}\nnot reloaded: the running proxy keeps its config",
            path.display()
        ))
    })
}

/// Polls `/process` until a reload after the `before`th shows up; its record.
fn wait_for_reload(ctx: &Ctx, before: u64) -> Result<Value, CtlError> {
    let deadline = Instant::now() + RELOAD_WAIT;
    loop {
        let v = ctx.target.get_json("/process")?;
        if v["reloads"].as_u64().unwrap_or(0) > before {
            return Ok(v["last_reload"].clone());
        }
        if Instant::now() >= deadline {
            return Err(CtlError::Refused(format!(
                "the proxy was signalled but reported no reload within {}s (see its log)",
                RELOAD_WAIT.as_secs()
            )));
        }
        std::thread::sleep(RELOAD_POLL);
    }
}

/// A reload record (`/process`'s `last_reload`) for the operator.
fn describe(last: &Value) -> String {
    let diff = &last["diff"];
    match last["outcome"].as_str() {
        Some("refused") => format!(
            "Reload refused: {}\nThe running config is unchanged.\n",
            last["error"].as_str().unwrap_or("?")
        ),
        Some("unchanged") => "Reloaded: nothing changed.\n".to_string(),
        _ => {
            let mut out = format!(
                "Reloaded: {}\n",
                last["summary"].as_str().unwrap_or("applied")
            );
            let names = |v: &Value| -> Vec<String> {
                v.as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|n| n.as_str().map(str::to_string))
                    .collect()
            };
            let replaced: Vec<String> = diff["replaced"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|r| {
                    format!(
                        "{} ({})",
                        r["name"].as_str().unwrap_or("?"),
                        names(&r["changes"]).join(", ")
                    )
                })
                .collect();
            let rows = [
                ("backends added", names(&diff["added"])),
                ("backends removed (draining)", names(&diff["removed"])),
                ("backends replaced", replaced),
                ("queue bounds changed", names(&diff["rebound"])),
                ("line checks changed", names(&diff["lines"])),
                ("settings changed", names(&diff["request"])),
                ("udp listeners", names(&diff["udp"])),
            ];
            for (label, list) in rows.iter().filter(|(_, l)| !l.is_empty()) {
                out.push_str(&format!("  {label}: {}\n", list.join(", ")));
            }
            if diff["log_level"] == true {
                out.push_str("  log_level changed\n");
            }
            if diff["placement"] == true || diff["pins"] == true {
                out.push_str(
                    "  placement changed: new writes go to the new owners; move the stored \
                     data with `influx-proxy ctl rebalance --circle <circle>`\n",
                );
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_applied_reload_lists_what_changed() {
        let last = json!({"seq": 2, "outcome": "applied", "summary": "added b3, placement",
            "diff": {"restart": [], "added": ["b3"], "removed": [], "replaced":
            [{"name": "b1", "changes": ["target", "delivery"]}], "rebound": [],
            "placement": true, "pins": false, "lines": [], "request": ["db_list"],
            "log_level": false, "udp": []}});
        let text = describe(&last);
        assert!(
            text.starts_with("Reloaded: added b3, placement\n"),
            "{text}"
        );
        assert!(text.contains("  backends added: b3\n"), "{text}");
        assert!(
            text.contains("  backends replaced: b1 (target, delivery)\n"),
            "{text}"
        );
        assert!(text.contains("  settings changed: db_list\n"), "{text}");
        assert!(text.contains("rebalance --circle"), "{text}");
        assert!(!text.contains("removed"), "{text}");
    }

    #[test]
    fn a_refused_reload_says_why() {
        let last = json!({"outcome": "refused", "error": "listen_addr cannot change"});
        assert_eq!(
            describe(&last),
            "Reload refused: listen_addr cannot change\nThe running config is unchanged.\n"
        );
        assert_eq!(
            describe(&json!({"outcome": "unchanged"})),
            "Reloaded: nothing changed.\n"
        );
    }

    #[test]
    fn this_process_is_local_and_a_made_up_one_is_not() {
        let me = std::process::id();
        let ticks = crate::metrics::process_start_ticks(me);
        let v = json!({"pid": me, "start_ticks": ticks, "config_path": "/x", "reloads": 0});
        assert!(Running::read(&v).unwrap().is_local());
        let other = json!({"pid": me, "start_ticks": ticks.map(|t| t + 1)});
        assert!(!Running::read(&other).unwrap().is_local());
        let none = json!({"pid": me, "start_ticks": null});
        assert!(!Running::read(&none).unwrap().is_local());
    }
}
