//! Blocking HTTP helpers on `ureq` 2.
//!
//! A 4xx or 5xx answer is a normal [`Resp`], never a panic; tests assert on `status` and `body`.
//! Only transport failures (connection refused, timeout) panic, and the `try_*` variants return
//! those as `Err` instead, for tests that expect a server to be down.
//!
//! The agent uses 30 s timeouts, keeps no idle connections (so a restarted server never sees a
//! stale pooled one), does not follow redirects, and, through ureq's `gzip` feature, sends
//! `Accept-Encoding: gzip` and transparently decompresses gzip responses.

use std::io::{Read, Write};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use flate2::write::GzEncoder;
use flate2::Compression;
use serde_json::Value;

/// Total and connect timeouts of every request.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// Largest response body read; more is a test bug.
const MAX_BODY: u64 = 256 * 1024 * 1024;

/// No HTTP answer came: connection refused or reset, timeout, bad URL. Boxed because
/// `ureq::Transport` is large.
pub type TransportError = Box<ureq::Transport>;

/// A response with any status.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub body: String,
    /// Header names in lowercase, in the order received.
    pub headers: Vec<(String, String)>,
}

impl Resp {
    /// The body parsed as JSON; panics with the body when it is not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|error| {
            panic!(
                "response (status {}) is not JSON: {error}\n{}",
                self.status, self.body
            )
        })
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

fn agent() -> &'static ureq::Agent {
    static AGENT: OnceLock<ureq::Agent> = OnceLock::new();
    AGENT.get_or_init(|| {
        ureq::AgentBuilder::new()
            .timeout_connect(TIMEOUT)
            .timeout(TIMEOUT)
            .redirects(0)
            .max_idle_connections(0)
            .max_idle_connections_per_host(0)
            .build()
    })
}

/// Sends one request. `Err` only for transport failures; any HTTP status is `Ok`.
pub fn request(
    method: &str,
    url: &str,
    body: Option<&[u8]>,
    headers: &[(&str, &str)],
) -> Result<Resp, TransportError> {
    request_within(method, url, body, headers, TIMEOUT)
}

/// Sends one request with a total `timeout`; any status is an answer, only a transport
/// failure is an error.
fn send(
    method: &str,
    url: &str,
    body: Option<&[u8]>,
    headers: &[(&str, &str)],
    timeout: Duration,
) -> Result<ureq::Response, TransportError> {
    let mut req = agent().request(method, url).timeout(timeout);
    for (name, value) in headers {
        req = req.set(name, value);
    }
    let result = match body {
        Some(body) => req.send_bytes(body),
        None => req.call(),
    };
    match result {
        Ok(response) | Err(ureq::Error::Status(_, response)) => Ok(response),
        Err(ureq::Error::Transport(transport)) => Err(Box::new(transport)),
    }
}

/// [`request`] with its own total `timeout` (a test of a hung server fails fast with `Err`
/// instead of waiting for the server).
pub fn request_within(
    method: &str,
    url: &str,
    body: Option<&[u8]>,
    headers: &[(&str, &str)],
    timeout: Duration,
) -> Result<Resp, TransportError> {
    let response = send(method, url, body, headers, timeout)?;
    let status = response.status();
    let headers = response
        .headers_names()
        .into_iter()
        .flat_map(|name| {
            response
                .all(&name)
                .into_iter()
                .map(|value| (name.to_ascii_lowercase(), value.to_owned()))
                .collect::<Vec<_>>()
        })
        .collect();
    let mut bytes = Vec::new();
    response
        .into_reader()
        .take(MAX_BODY)
        .read_to_end(&mut bytes)
        .unwrap_or_else(|error| panic!("{method} {url}: reading the body failed: {error}"));
    Ok(Resp {
        status,
        body: String::from_utf8_lossy(&bytes).into_owned(),
        headers,
    })
}

/// Sends one request and hands its body to `each_line` a line at a time (without the `\n`), as
/// it arrives: for answers too large to hold, such as a chunked `SELECT *` (one JSON document
/// per line). Holds one line at most ([`MAX_BODY`] bytes). `timeout` bounds the whole
/// exchange. The status; `Err` with the text of a transport or read failure.
pub fn request_lines(
    method: &str,
    url: &str,
    body: Option<&[u8]>,
    headers: &[(&str, &str)],
    timeout: Duration,
    mut each_line: impl FnMut(&[u8]),
) -> Result<u16, String> {
    let response = send(method, url, body, headers, timeout).map_err(|t| t.to_string())?;
    let status = response.status();
    let mut reader = std::io::BufReader::with_capacity(1 << 16, response.into_reader());
    let mut line = Vec::new();
    loop {
        line.clear();
        let n =
            std::io::BufRead::read_until(&mut Read::take(&mut reader, MAX_BODY), b'\n', &mut line)
                .map_err(|error| format!("{method} {url}: reading the body failed: {error}"))?;
        if n == 0 {
            return Ok(status);
        }
        if line.last() == Some(&b'\n') {
            line.pop();
        } else if n as u64 == MAX_BODY {
            return Err(format!(
                "{method} {url}: a line of more than {MAX_BODY} bytes"
            ));
        }
        each_line(&line);
    }
}

fn expect_sent(method: &str, url: &str, result: Result<Resp, TransportError>) -> Resp {
    result.unwrap_or_else(|error| panic!("{method} {url} failed: {error}"))
}

/// GET; `Err` when no HTTP answer came (e.g. connection refused).
pub fn try_get(url: &str) -> Result<Resp, TransportError> {
    request("GET", url, None, &[])
}

/// GET; panics only when no HTTP answer came.
pub fn get(url: &str) -> Resp {
    expect_sent("GET", url, try_get(url))
}

/// POST; `Err` when no HTTP answer came.
pub fn try_post(url: &str, body: &[u8], headers: &[(&str, &str)]) -> Result<Resp, TransportError> {
    request("POST", url, Some(body), headers)
}

/// POST; panics only when no HTTP answer came.
pub fn post(url: &str, body: &[u8], headers: &[(&str, &str)]) -> Resp {
    expect_sent("POST", url, try_post(url, body, headers))
}

/// `POST {base_url}/write?db={db}` with a line-protocol body.
pub fn write(base_url: &str, db: &str, body: impl AsRef<[u8]>) -> Resp {
    write_with(base_url, &format!("db={}", urlencode(db)), body, false)
}

/// `POST {base_url}/write?{query_string}`; the query string is used as given (already encoded).
/// With `gzip`, the body is gzip-compressed and sent with `Content-Encoding: gzip`.
pub fn write_with(base_url: &str, query_string: &str, body: impl AsRef<[u8]>, gzip: bool) -> Resp {
    let url = format!("{base_url}/write?{query_string}");
    if gzip {
        post(
            &url,
            &self::gzip(body.as_ref()),
            &[("Content-Encoding", "gzip")],
        )
    } else {
        post(&url, body.as_ref(), &[])
    }
}

/// `GET {base_url}/query?db={db}&q={q}` (`db` left out when empty).
pub fn query(base_url: &str, db: &str, q: &str) -> Resp {
    if db.is_empty() {
        get(&format!("{base_url}/query?q={}", urlencode(q)))
    } else {
        get(&format!(
            "{base_url}/query?db={}&q={}",
            urlencode(db),
            urlencode(q)
        ))
    }
}

/// `POST {base_url}/query` with the parameters as a form body (how the `influx` CLI sends
/// CREATE/DROP statements).
pub fn query_post(base_url: &str, params: &[(&str, &str)]) -> Resp {
    post(
        &format!("{base_url}/query"),
        form(params).as_bytes(),
        &[("Content-Type", "application/x-www-form-urlencoded")],
    )
}

/// Polls `condition` every 100 ms until it returns true (→ true) or `timeout` passes (→ false).
/// The condition is always checked at least once, and once more at the deadline.
pub fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(100).min(deadline - now));
    }
}

/// Gzip-compresses `data` (default level).
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

/// Percent-encodes `s` for a URL query component (everything but RFC 3986 unreserved bytes).
pub fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for byte in s.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// `k1=v1&k2=v2`, percent-encoded.
pub fn form(params: &[(&str, &str)]) -> String {
    params
        .iter()
        .map(|(key, value)| format!("{}={}", urlencode(key), urlencode(value)))
        .collect::<Vec<_>>()
        .join("&")
}

/// An answer read off the socket exactly as the server framed it.
#[derive(Debug, Clone)]
pub struct RawAnswer {
    /// The status line's version, `HTTP/1.0` or `HTTP/1.1`.
    pub version: String,
    pub status: u16,
    /// Header names in lowercase, in the order received.
    pub headers: Vec<(String, String)>,
    /// Everything after the blank line until the server closed the connection, undecoded
    /// (chunk sizes included, were the answer chunked).
    pub body: Vec<u8>,
    /// Whether the server closed the connection (false: the read timed out on an open one).
    pub closed: bool,
}

impl RawAnswer {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends `request` (request line, headers, blank line and body, as the caller framed them) on a
/// fresh TCP connection to `addr` (`host:port`) and reads until the server closes it, at most
/// [`TIMEOUT`]: for framing the `ureq` agent would fix or hide (HTTP/1.0, chunked uploads). A
/// failed write (the server answered early and closed) is not an error; the answer is read.
pub fn raw_exchange(addr: &str, request: &[u8]) -> RawAnswer {
    let mut stream = std::net::TcpStream::connect(addr)
        .unwrap_or_else(|error| panic!("connect {addr}: {error}"));
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(TIMEOUT)).unwrap();
    let _ = stream.write_all(request);
    let mut bytes = Vec::new();
    let closed = match stream.read_to_end(&mut bytes) {
        Ok(_) => true,
        Err(error) => {
            assert!(
                !bytes.is_empty(),
                "{addr}: no answer to {:?}: {error}",
                String::from_utf8_lossy(&request[..request.len().min(200)])
            );
            // A reset after the answer is how a server refuses the rest of a body.
            error.kind() == std::io::ErrorKind::ConnectionReset
        }
    };
    let split = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| {
            panic!(
                "{addr}: no header end in {:?}",
                String::from_utf8_lossy(&bytes)
            )
        });
    let head = String::from_utf8_lossy(&bytes[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default().to_string();
    let status = parts
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{addr}: bad status line {status_line:?}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    RawAnswer {
        version,
        status,
        headers,
        body: bytes[split + 4..].to_vec(),
        closed,
    }
}

/// `body` in chunked transfer coding, `chunk` bytes a chunk, with the last-chunk.
pub fn chunked(body: &[u8], chunk: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + body.len() / chunk.max(1) * 10 + 5);
    for piece in body.chunks(chunk.max(1)) {
        out.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        out.extend_from_slice(piece);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}
