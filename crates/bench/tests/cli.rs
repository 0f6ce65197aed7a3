//! The `influx-proxy-bench` binary as scripts/bench.sh runs it.
//!
//! These tests are also why a test build (`cargo test --no-run`, scripts/toolchain.sh
//! `build_release`) builds the binary scripts/bench.sh runs: Cargo builds a package's binary for
//! its integration tests, and for nothing else in a test build.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_influx-proxy-bench");

/// Kills the sink when the test ends, however it ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn help_names_both_commands() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("influx-proxy-bench write") && text.contains("influx-proxy-bench sink"),
        "{text}"
    );
}

#[test]
fn the_sink_answers_ping_like_influxdb() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let _sink = Running(
        Command::new(BIN)
            .args(["sink", "--listen", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = String::from("no connection");
    let answer = loop {
        // Before the sink listens, a connect to a free loopback port can be given that very
        // port as its own source and connect to itself (TCP simultaneous open): it would read
        // back its own request. Such a connection is not the sink. A connection that gives no
        // answer at all (reset, closed: twice in full suite runs, never alone) is tried again;
        // any answer is judged below.
        let conn = TcpStream::connect(("127.0.0.1", port))
            .ok()
            .filter(|c| c.local_addr().ok() != c.peer_addr().ok());
        if let Some(mut conn) = conn {
            let mut answer = String::new();
            let exchange = conn
                .write_all(b"GET /ping HTTP/1.1\r\nHost: sink\r\nConnection: close\r\n\r\n")
                .and_then(|()| conn.read_to_string(&mut answer));
            match exchange {
                Ok(_) if !answer.is_empty() => break answer,
                Ok(_) => last = "an empty answer".to_owned(),
                Err(e) => last = format!("{e} (after {answer:?})"),
            }
        }
        assert!(
            Instant::now() < deadline,
            "no answer from the sink on {port}: {last}"
        );
        thread::sleep(Duration::from_millis(50));
    };
    assert!(answer.starts_with("HTTP/1.1 204"), "{answer}");
}
