//! Command-line behaviour of the binary.

use std::time::Duration;

use crate::support::proxy::Proxy;

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_influx-proxy")
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

    let bad = dir.path().join("bad.json");
    std::fs::write(
        &bad,
        r#"{"circles":[{"name":"c","backends":[{"name":"a","url":"http://127.0.0.1:1"},{"name":"a","url":""}]}],"hash_key":"nope"}"#,
    )
    .unwrap();
    let (status, out) = Proxy::run_to_exit(
        &["-check-config", bad.to_str().unwrap()],
        dir.path(),
        Duration::from_secs(10),
    );
    assert_eq!(status.code(), Some(1), "{out}");
    assert!(out.contains("circles[0].backends[1].name"), "{out}");
    assert!(out.contains("circles[0].backends[1].url"), "{out}");
    assert!(out.contains("hash_key"), "{out}");
}

#[test]
fn a_bad_config_refuses_to_start_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("proxy.json");
    std::fs::write(&cfg, r#"{"circles":[]}"#).unwrap();
    let (status, out) = Proxy::run_to_exit(
        &["-config", cfg.to_str().unwrap()],
        dir.path(),
        Duration::from_secs(10),
    );
    assert_eq!(status.code(), Some(1), "{out}");
    assert!(out.contains("circles"), "{out}");
}

#[test]
fn a_port_in_use_refuses_to_start_with_a_clear_message_and_no_panic() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let cfg = dir.path().join("proxy.json");
    let data = dir.path().join("data");
    std::fs::write(
        &cfg,
        format!(
            r#"{{"circles":[{{"name":"c","backends":[{{"name":"a","url":"http://127.0.0.1:1"}}]}}],
               "listen_addr":"127.0.0.1:{port}","data_dir":{data:?}}}"#,
            data = data.to_str().unwrap()
        ),
    )
    .unwrap();
    let (status, out) = Proxy::run_to_exit(
        &["-config", cfg.to_str().unwrap()],
        dir.path(),
        Duration::from_secs(20),
    );
    assert_eq!(status.code(), Some(1), "{out}");
    assert!(
        out.contains(&format!("cannot listen on 127.0.0.1:{port}")),
        "{out}"
    );
    assert!(!out.contains("panicked"), "{out}");
}
