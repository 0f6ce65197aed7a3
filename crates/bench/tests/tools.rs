//! The bench binary with the harness's runners, as the suite drives it: a sink started through
//! the harness, the load tool writing into it, the sink killed and started again on its port as
//! the outage benchmark does; and the suite's options. (tests/cli.rs has the binary on its own.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

use harness::sink::Sink;
use serde_json::Value;

fn bench() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_influx-proxy-bench"))
}

#[test]
fn the_load_tool_fills_a_sink_that_comes_back_on_its_port() {
    let mut sink = Sink::try_start(bench()).unwrap();
    let out = Command::new(bench())
        .args(["write", "--url", sink.url.as_str(), "--json"])
        .args(["--batch", "100", "--concurrency", "2", "--points", "1000"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["points"], 1000);
    assert_eq!(sink.points().unwrap(), 1000);

    let port = sink.port;
    sink.kill();
    assert!(sink.points().is_err(), "a killed sink still answers");
    sink.try_restart().unwrap();
    assert_eq!((sink.port, sink.points().unwrap()), (port, 0));
}

#[test]
fn the_suite_lists_its_options_and_refuses_unknown_sections() {
    let out = Command::new(bench())
        .args(["suite", "--help"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for option in [
        "--quick",
        "--sections",
        "--keep",
        "BENCH_SECTIONS",
        "GO_PROXY",
    ] {
        assert!(help.contains(option), "{option} missing from:\n{help}");
    }
    let out = Command::new(bench())
        .args(["suite", "--sections", "a,z"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no section \"z\""));
}
