//! Command-line behaviour of the binary.

use std::time::Duration;

use crate::support::proxy::Proxy;

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_influx-proxy")
}

/// Writes `config` to `proxy.json` in `dir` and runs the binary with `flag` and that file;
/// returns its exit status and output.
fn run_with_config(
    dir: &std::path::Path,
    flag: &str,
    config: &str,
) -> (std::process::ExitStatus, String) {
    let path = dir.join("proxy.json");
    std::fs::write(&path, config).unwrap();
    Proxy::run_to_exit(
        &[flag, path.to_str().unwrap()],
        dir,
        Duration::from_secs(10),
    )
}

#[test]
fn version_prints_version_and_commit() {
    for flag in ["-version", "--version"] {
        let out = std::process::Command::new(bin())
            .arg(flag)
            .output()
            .unwrap();
        assert!(out.status.success());
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains(env!("CARGO_PKG_VERSION")), "{text}");
        assert!(text.contains("Git commit:"), "{text}");
    }
}

#[test]
fn check_config_accepts_the_packaged_config_and_names_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    let packaged = concat!(env!("CARGO_MANIFEST_DIR"), "/packaging/proxy.json");
    let (status, out) = Proxy::run_to_exit(
        &["--check-config", packaged],
        dir.path(),
        Duration::from_secs(10),
    );
    assert!(status.success(), "{out}");

    let (status, out) = run_with_config(
        dir.path(),
        "-check-config",
        r#"{"circles":[{"name":"c","backends":[{"name":"a","url":"http://127.0.0.1:1"},{"name":"a","url":""}]}],"hash_key":"nope"}"#,
    );
    assert_eq!(status.code(), Some(1), "{out}");
    assert!(out.contains("circles[0].backends[1].name"), "{out}");
    assert!(out.contains("circles[0].backends[1].url"), "{out}");
    assert!(out.contains("hash_key"), "{out}");
}

#[test]
fn a_bad_config_refuses_to_start_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let (status, out) = run_with_config(dir.path(), "-config", r#"{"circles":[]}"#);
    assert_eq!(status.code(), Some(1), "{out}");
    assert!(out.contains("circles"), "{out}");
}

#[test]
fn a_port_in_use_refuses_to_start_with_a_clear_message_and_no_panic() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let data = dir.path().join("data");
    let config = format!(
        r#"{{"circles":[{{"name":"c","backends":[{{"name":"a","url":"http://127.0.0.1:1"}}]}}],
           "listen_addr":"127.0.0.1:{port}","data_dir":{data:?}}}"#,
        data = data.to_str().unwrap()
    );
    let (status, out) = run_with_config(dir.path(), "-config", &config);
    assert_eq!(status.code(), Some(1), "{out}");
    assert!(
        out.contains(&format!("cannot listen on 127.0.0.1:{port}")),
        "{out}"
    );
    assert!(!out.contains("panicked"), "{out}");
}
