//! Authentication, HTTPS, the credential cipher and bad input: every case
//! gets the right status and message, and the proxy keeps serving.

use std::process::Command;
use std::time::Duration;

use base64::Engine as _;
use serde_json::{json, Value};

use crate::support::http::{self, wait_until};
use crate::support::proxy::{spawn_unwatched, two_by_two, Proxy};
use crate::support::{free_port, kill_and_reap, self_signed_cert};

fn with(mut config: Value, extra: Value) -> Value {
    if let (Some(obj), Some(extra)) = (config.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            obj.insert(k.clone(), v.clone());
        }
    }
    config
}

fn basic(user: &str, pass: &str) -> String {
    let raw = format!("{user}:{pass}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

/// Every protected endpoint: (method, path-and-query, body).
fn endpoints() -> Vec<(&'static str, &'static str, &'static str)> {
    vec![
        ("POST", "/write?db=authdb", "m v=1 1\n"),
        ("GET", "/query?db=authdb&q=SHOW+MEASUREMENTS", ""),
        ("POST", "/query?q=CREATE+DATABASE+authdb", ""),
        ("GET", "/health", ""),
        ("GET", "/replica?db=authdb&meas=m", ""),
        ("GET", "/migrate/jobs", ""),
        ("GET", "/inventory?sizes=false", ""),
        ("GET", "/process", ""),
        ("GET", "/encrypt?msg=admin", ""),
        (
            "GET",
            "/decrypt?key=consistentcipher&msg=YgvEyuPZlDYAH8sGDkC!Ag",
            "",
        ),
    ]
}

fn call(base: &str, method: &str, path: &str, body: &str, auth: Option<&str>) -> http::Resp {
    let url = format!("{base}{path}");
    let headers: Vec<(&str, &str)> = auth.map(|a| vec![("Authorization", a)]).unwrap_or_default();
    if method == "GET" {
        http::request("GET", &url, None, &headers).unwrap()
    } else {
        http::request("POST", &url, Some(body.as_bytes()), &headers).unwrap()
    }
}

fn assert_401(r: &http::Resp, what: &str) {
    assert_eq!(r.status, 401, "{what}: {}", r.body);
    assert_eq!(
        r.json(),
        json!({"error": "authentication failed"}),
        "{what}"
    );
}

#[test]
fn every_endpoint_but_ping_requires_credentials_in_any_of_the_three_forms() {
    let (_servers, config) = two_by_two();
    let proxy = Proxy::start(with(
        config,
        json!({"username": "admin", "password": "s3cret"}),
    ));
    assert_eq!(http::get(&format!("{}/ping", proxy.url)).status, 204);
    for (method, path, body) in endpoints() {
        assert_401(&call(&proxy.url, method, path, body, None), path);
        assert_401(
            &call(
                &proxy.url,
                method,
                path,
                body,
                Some(&basic("admin", "wrong")),
            ),
            path,
        );
        let sep = if path.contains('?') { '&' } else { '?' };
        let wrong = format!("{path}{sep}u=admin&p=nope");
        assert_401(&call(&proxy.url, method, &wrong, body, None), path);
        let good_params = format!("{path}{sep}u=admin&p=s3cret");
        for (how, r) in [
            ("u/p", call(&proxy.url, method, &good_params, body, None)),
            (
                "basic",
                call(
                    &proxy.url,
                    method,
                    path,
                    body,
                    Some(&basic("admin", "s3cret")),
                ),
            ),
            (
                "token",
                call(&proxy.url, method, path, body, Some("Token admin:s3cret")),
            ),
        ] {
            assert!(r.status < 300, "{path} with {how}: {} {}", r.status, r.body);
        }
    }
}

#[test]
fn ping_auth_enabled_puts_ping_behind_the_credentials() {
    let (_servers, config) = two_by_two();
    let proxy = Proxy::start(with(
        config,
        json!({"username": "admin", "password": "s3cret", "ping_auth_enabled": true}),
    ));
    let ping = |suffix: &str, auth: Option<&str>| {
        call(&proxy.url, "GET", &format!("/ping{suffix}"), "", auth)
    };
    assert_401(&ping("", None), "/ping");
    assert_401(
        &ping("?verbose=true", Some(&basic("admin", "wrong"))),
        "/ping",
    );
    assert_eq!(ping("?u=admin&p=s3cret", None).status, 204);
    assert_eq!(ping("", Some(&basic("admin", "s3cret"))).status, 204);
    assert_eq!(
        ping("?verbose=true", Some("Token admin:s3cret")).status,
        200
    );
}

#[test]
fn auth_secure_configs_hold_encrypted_credentials_and_clients_send_plaintext() {
    let (_servers, config) = two_by_two();
    let proxy = Proxy::start(with(
        config,
        json!({"username": "YgvEyuPZlDYAH8sGDkC!Ag", "password": "7vnwDnX!xzLY_jqHoFX41w", "auth_secure": true}),
    ));
    let ok = http::get(&format!("{}/health?u=admin&p=password", proxy.url));
    assert_eq!(ok.status, 200, "{}", ok.body);
    let enc = http::get(&format!(
        "{}/health?u=YgvEyuPZlDYAH8sGDkC!Ag&p=7vnwDnX!xzLY_jqHoFX41w",
        proxy.url
    ));
    assert_eq!(enc.status, 401, "the stored form is not a password");
}

#[test]
fn encrypt_and_decrypt_match_the_reference_vectors() {
    let (_servers, config) = two_by_two();
    let proxy = Proxy::start(config);
    let vectors = [
        ("admin", "YgvEyuPZlDYAH8sGDkC!Ag"),
        ("root", "HNuE5KxI!nNofosmqZR!mw"),
        ("password", "7vnwDnX!xzLY_jqHoFX41w"),
        ("influxdb", "wWTbdw!BwVqjWHDTM6a3hw"),
        ("0123456789abcdef", "CADsguKx8D5nVxhjWH4NTw"),
        ("p@ss w0rd!", "wNWCj4D06a1zJtY9K4VM6A"),
    ];
    for (plain, cipher) in vectors {
        for param in ["msg", "text"] {
            let e = http::get(&format!(
                "{}/encrypt?{param}={}",
                proxy.url,
                http::urlencode(plain)
            ));
            assert_eq!(
                (e.status, e.body.as_str()),
                (200, format!("{cipher}\n").as_str())
            );
            let d = http::get(&format!(
                "{}/decrypt?key=consistentcipher&{param}={}",
                proxy.url,
                http::urlencode(cipher)
            ));
            assert_eq!(
                (d.status, d.body.as_str()),
                (200, format!("{plain}\n").as_str())
            );
        }
    }
    let bad_key = http::get(&format!("{}/decrypt?key=nope&msg=x", proxy.url));
    assert_eq!(bad_key.status, 400);
    assert_eq!(bad_key.json()["error"], "invalid key");
    let garbage = http::get(&format!(
        "{}/decrypt?key=consistentcipher&msg=%25%25",
        proxy.url
    ));
    assert_eq!(garbage.body, "illegal base64 data at input byte 0\n");
}

/// (what, url, body, headers, expected status, expected message part)
type BadInput<'a> = (
    &'a str,
    String,
    Vec<u8>,
    Vec<(&'a str, &'a str)>,
    u16,
    &'a str,
);

#[test]
fn bad_input_gets_the_right_status_and_the_proxy_keeps_serving() {
    let (servers, config) = two_by_two();
    let proxy = Proxy::start(with(config, json!({"max_line_bytes": 1_048_576})));
    let url = |qs: &str| format!("{}/write?{qs}", proxy.url);
    let gz = http::gzip(b"m v=1 1\nm v=2 2\n");
    let cases: Vec<BadInput<'_>> = vec![
        (
            "truncated gzip",
            url("db=bad"),
            gz[..gz.len() - 8].to_vec(),
            vec![("Content-Encoding", "gzip")],
            400,
            "gzip",
        ),
        (
            "corrupt gzip",
            url("db=bad"),
            b"\x1f\x8b\x08\x00garbage".to_vec(),
            vec![("Content-Encoding", "gzip")],
            400,
            "gzip",
        ),
        (
            "invalid UTF-8 measurement",
            url("db=bad"),
            b"m\xff\xfe v=1 1\n".to_vec(),
            vec![],
            400,
            "unable to parse",
        ),
        (
            "unknown precision",
            url("db=bad&precision=fortnight"),
            b"m v=1\n".to_vec(),
            vec![],
            400,
            "invalid precision",
        ),
        (
            "missing db",
            url(""),
            b"m v=1\n".to_vec(),
            vec![],
            400,
            "database not found",
        ),
        (
            "line of 1 MB",
            url("db=bad"),
            format!("m s=\"{}\" 1\n", "x".repeat(1_100_000)).into_bytes(),
            vec![],
            400,
            "line too long",
        ),
        (
            "100 MB body",
            url("db=bad"),
            vec![b'a'; 100 << 20],
            vec![],
            413,
            "too large",
        ),
        (
            "gzip bomb",
            url("db=bad"),
            http::gzip(&vec![b'\n'; 600 << 20]),
            vec![("Content-Encoding", "gzip")],
            413,
            "decompressed body too large",
        ),
    ];
    for (what, url, body, headers, status, message) in cases {
        match http::request("POST", &url, Some(&body), &headers) {
            Ok(r) => {
                assert_eq!(
                    r.status,
                    status,
                    "{what}: {}",
                    &r.body[..r.body.len().min(300)]
                );
                let e = r.json()["error"].as_str().unwrap_or_default().to_string();
                assert!(e.contains(message), "{what}: {e}");
                assert_eq!(r.header("Content-Type"), Some("application/json"), "{what}");
            }
            // A server may close the connection while a huge body is still
            // being sent; that is fine as long as it keeps serving.
            Err(e) if what == "100 MB body" => eprintln!("{what}: connection closed early ({e})"),
            Err(e) => panic!("{what}: {e}"),
        }
        assert_eq!(
            http::get(&format!("{}/ping", proxy.url)).status,
            204,
            "after {what}"
        );
    }
    // Good data still flows.
    assert_eq!(http::write(&proxy.url, "bad", "ok v=1 1\n").status, 204);
    assert!(wait_until(Duration::from_secs(30), || servers
        .iter()
        .map(|s| s.count("bad", "ok"))
        .sum::<u64>()
        == 2));
}

#[test]
fn https_serves_the_api_with_the_configured_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed_cert(dir.path());
    let (_servers, config) = two_by_two();
    let port = free_port();
    let config = with(
        config,
        json!({
            "listen_addr": format!("127.0.0.1:{port}"),
            "https_enabled": true,
            "https_cert": cert,
            "https_key": key,
            "data_dir": dir.path().join("data"),
            "mlog_dir": dir.path().join("log"),
        }),
    );
    let mut child = spawn_unwatched(dir.path(), &config);
    let curl = |args: &[&str]| {
        let out = Command::new("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--max-time",
                "5",
            ])
            .args(args)
            .output()
            .expect("curl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let base = format!("https://127.0.0.1:{port}");
    let cacert = cert.to_str().unwrap();
    let up = wait_until(Duration::from_secs(20), || {
        curl(&["--cacert", cacert, &format!("{base}/ping")]) == "204"
    });
    let write = curl(&[
        "--cacert",
        cacert,
        "-XPOST",
        "--data-binary",
        "tls v=1 1",
        &format!("{base}/write?db=tlsdb"),
    ]);
    let untrusted = curl(&[&format!("{base}/ping")]);
    let plain = curl(&[&format!("http://127.0.0.1:{port}/ping")]);
    kill_and_reap(&mut child);
    assert!(up, "https /ping never answered 204");
    assert_eq!(write, "204");
    assert_eq!(
        untrusted, "000",
        "an unknown certificate is refused by curl"
    );
    assert_ne!(plain, "204", "plain HTTP is not served on the TLS port");
}
