//! HTTP client for one InfluxDB 1.x server.
//!
//! Every response is mapped to [`Error`], whose [`Error::is_retryable`] is
//! the single place that decides between "keep it queued and retry" and
//! "the backend refuses this data for good" (dead letter).

use std::future::Future as _;
use std::io::Write as _;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use awc::error::PayloadError;
use bytes::{Bytes, BytesMut};
use flate2::write::GzEncoder;
use flate2::Compression;
use futures_util::{Stream, StreamExt as _};
use tokio::time::{sleep, Instant, Sleep};

/// Largest error body read back from a backend; error messages are short.
const MAX_ERROR_BODY: usize = 64 * 1024;
/// Largest query response read back (SHOW statements for `/health`).
const MAX_QUERY_BODY: usize = 256 * 1024 * 1024;

/// How a request to a backend failed.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum Error {
    /// Could not connect, or the connection broke.
    #[error("{0}")]
    Transport(String),
    /// No answer within the configured timeout, or silence that long in the middle of one.
    #[error("timeout after {0:?}")]
    Timeout(Duration),
    /// The backend answered with a non-2xx status.
    #[error("status {status}: {message}")]
    Status {
        /// HTTP status code.
        status: u16,
        /// The `error` field of InfluxDB's JSON body, or the raw body.
        message: String,
    },
}

impl Error {
    /// Whether the same request may succeed later: transport failures,
    /// timeouts, 5xx, 408, 429, and 401/403 (credentials are an operator
    /// fix; the data itself is fine, so it waits in the queue).
    pub(crate) fn is_retryable(&self) -> bool {
        match self {
            Error::Transport(_) | Error::Timeout(_) => true,
            Error::Status { status, .. } => {
                *status >= 500 || matches!(status, 401 | 403 | 408 | 429)
            }
        }
    }

    /// InfluxDB answers 404 `database not found` to a write into a
    /// database it lacks (a fresh backend added to a circle).
    pub(crate) fn is_database_not_found(&self) -> bool {
        matches!(self, Error::Status { status: 404, message } if message.contains("database not found"))
    }

    /// HTTP status, if the backend answered at all.
    pub(crate) fn status(&self) -> Option<u16> {
        match self {
            Error::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// Connection settings of one backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    /// Base URL without trailing slash, e.g. `http://127.0.0.1:8086`.
    pub url: String,
    /// Plaintext credentials sent as HTTP Basic auth.
    pub credentials: Option<(String, String)>,
    /// Skip certificate verification for `https://` backends.
    pub tls_skip_verify: bool,
}

/// Client bound to one backend. Not `Send` (awc); create it on the thread
/// that uses it.
#[derive(Clone)]
pub(crate) struct Client {
    http: awc::Client,
    target: Arc<Target>,
    timeout: Duration,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("url", &self.target.url)
            .finish()
    }
}

impl Client {
    /// Builds a client; `timeout` bounds the wait for each answer to start, and then each
    /// silence in the middle of a body the client reads itself (see [`Quiet`]).
    pub(crate) fn new(target: Arc<Target>, timeout: Duration) -> Client {
        let connector =
            awc::Connector::new().rustls_0_23(crate::tls::client_config(target.tls_skip_verify));
        let http = awc::Client::builder()
            .connector(connector)
            .timeout(timeout)
            .disable_redirects()
            .finish();
        Client {
            http,
            target,
            timeout,
        }
    }

    /// The same client (same connection pool) with another timeout: a health check must
    /// answer within its interval, a read within `query_timeout`, a write within
    /// `write_timeout`.
    pub(crate) fn with_timeout(&self, timeout: Duration) -> Client {
        Client {
            timeout,
            ..self.clone()
        }
    }

    /// How long this client waits for an answer to start.
    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    fn request(&self, method: awc::http::Method, path: &str) -> awc::ClientRequest {
        let url = format!("{}{}", self.target.url, path);
        let req = self.http.request(method, url).timeout(self.timeout);
        match &self.target.credentials {
            Some((user, pass)) => req.basic_auth(user, pass),
            None => req,
        }
    }

    /// `GET /ping`, healthy iff 204 (with credentials, so backends with
    /// `ping-auth-enabled` are not mistaken for dead ones).
    pub(crate) async fn ping(&self) -> Result<(), Error> {
        let resp = self.request(awc::http::Method::GET, "/ping").send().await;
        self.finish(resp).await.map(|_| ())
    }

    /// `POST /write` of line protocol in ns precision; `gzip` says the body
    /// is already gzip-compressed.
    pub(crate) async fn write(
        &self,
        db: &str,
        rp: &str,
        body: Bytes,
        gzip: bool,
    ) -> Result<(), Error> {
        let path = format!("/write?db={}&rp={}&precision=ns", encode(db), encode(rp));
        let mut req = self
            .request(awc::http::Method::POST, &path)
            .insert_header(("Content-Type", "text/plain; charset=utf-8"));
        if gzip {
            req = req.insert_header(("Content-Encoding", "gzip"));
        }
        let resp = req.send_body(body).await;
        self.finish(resp).await.map(|_| ())
    }

    /// Runs one InfluxQL statement (`POST /query`) and returns the JSON body.
    pub(crate) async fn query(&self, db: &str, q: &str) -> Result<serde_json::Value, Error> {
        self.query_json(&[("db", db), ("q", q)]).await
    }

    /// `POST /query` with the given parameters; the JSON answer.
    pub(crate) async fn query_json(
        &self,
        params: &[(&str, &str)],
    ) -> Result<serde_json::Value, Error> {
        let path = format!("/query?{}", form(params)?);
        let resp = self.request(awc::http::Method::POST, &path).send().await;
        let body = self.finish(resp).await?;
        serde_json::from_slice(&body).map_err(|e| Error::Status {
            status: 200,
            message: format!("invalid JSON from backend: {e}"),
        })
    }

    /// Sends `/query` with the client's own parameters and `Accept`
    /// headers and hands back the response unread, so a large answer can
    /// be streamed to the client. Non-2xx answers are read and returned as
    /// [`Error::Status`] (the caller may fail over).
    pub(crate) async fn query_stream(
        &self,
        method: awc::http::Method,
        params: &[(String, String)],
        headers: &[(
            awc::http::header::HeaderName,
            awc::http::header::HeaderValue,
        )],
    ) -> Result<awc::ClientResponse, Error> {
        let pairs: Vec<(&str, &str)> = params
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let path = format!("/query?{}", form(&pairs)?);
        let mut req = self.request(method, &path);
        for (name, value) in headers {
            req = req.insert_header((name.clone(), value.clone()));
        }
        let resp = req.send().await;
        let resp = resp.map_err(|e| self.send_error(e))?;
        let status = resp.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(resp);
        }
        let body = read_body(Quiet::new(resp, self.timeout), MAX_ERROR_BODY).await?;
        Err(Error::Status {
            status,
            message: error_message(&body),
        })
    }

    /// `POST path` with `body` and the client's `headers`, answered with whatever status the
    /// backend gives (Flux and Prometheus reads relay it as it is). Only a transport error or
    /// a timeout is an error, so only those fail over to another circle.
    pub(crate) async fn forward(
        &self,
        path: &str,
        body: Bytes,
        headers: &[(
            awc::http::header::HeaderName,
            awc::http::header::HeaderValue,
        )],
    ) -> Result<awc::ClientResponse, Error> {
        let mut req = self.request(awc::http::Method::POST, path);
        for (name, value) in headers {
            req = req.insert_header((name.clone(), value.clone()));
        }
        req.send_body(body).await.map_err(|e| self.send_error(e))
    }

    /// `POST path?params` with no body (proxy-to-proxy state changes).
    pub(crate) async fn post_form(
        &self,
        path: &str,
        params: &[(String, String)],
    ) -> Result<Bytes, Error> {
        let pairs: Vec<(&str, &str)> = params
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let path = format!("{path}?{}", form(&pairs)?);
        let resp = self.request(awc::http::Method::POST, &path).send().await;
        self.finish(resp).await
    }

    fn send_error(&self, e: awc::error::SendRequestError) -> Error {
        match e {
            awc::error::SendRequestError::Timeout => Error::Timeout(self.timeout),
            other => Error::Transport(other.to_string()),
        }
    }

    async fn finish(
        &self,
        resp: Result<
            awc::ClientResponse<
                impl futures_util::Stream<Item = Result<Bytes, awc::error::PayloadError>> + Unpin,
            >,
            awc::error::SendRequestError,
        >,
    ) -> Result<Bytes, Error> {
        let resp = resp.map_err(|e| self.send_error(e))?;
        let status = resp.status().as_u16();
        let limit = if (200..300).contains(&status) {
            MAX_QUERY_BODY
        } else {
            MAX_ERROR_BODY
        };
        let body = read_body(Quiet::new(resp, self.timeout), limit).await?;
        if (200..300).contains(&status) {
            return Ok(body);
        }
        Err(Error::Status {
            status,
            message: error_message(&body),
        })
    }
}

/// A backend's response body that fails once the backend has sent nothing for `timeout`.
///
/// awc bounds a request only until the response head arrives; a backend that hangs in the
/// middle of its body (SIGSTOP, a stuck disk) would hold the read, and the client behind it,
/// forever. Bounding the silence rather than the whole body keeps a long answer that keeps
/// flowing (a chunked export) from being cut.
pub(crate) struct Quiet<S> {
    inner: S,
    timeout: Duration,
    deadline: Pin<Box<Sleep>>,
    done: bool,
}

impl<S> std::fmt::Debug for Quiet<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Quiet")
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl<S> Quiet<S> {
    /// Wraps `inner`; the first part must come within `timeout` from now.
    pub(crate) fn new(inner: S, timeout: Duration) -> Quiet<S> {
        Quiet {
            inner,
            timeout,
            deadline: Box::pin(sleep(timeout)),
            done: false,
        }
    }
}

impl<S> Stream for Quiet<S>
where
    S: Stream<Item = Result<Bytes, PayloadError>> + Unpin,
{
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        match this.inner.poll_next_unpin(cx) {
            Poll::Ready(item) => {
                if let Some(deadline) = Instant::now().checked_add(this.timeout) {
                    this.deadline.as_mut().reset(deadline);
                }
                this.done = !matches!(item, Some(Ok(_)));
                Poll::Ready(item)
            }
            Poll::Pending if this.deadline.as_mut().poll(cx).is_ready() => {
                this.done = true;
                Poll::Ready(Some(Err(PayloadError::Io(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("backend sent nothing for {:?}", this.timeout),
                )))))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Reads a whole body of at most `limit` bytes; silence past the [`Quiet`] bound is a
/// [`Error::Timeout`].
async fn read_body<S>(mut body: Quiet<S>, limit: usize) -> Result<Bytes, Error>
where
    S: Stream<Item = Result<Bytes, PayloadError>> + Unpin,
{
    let mut out = BytesMut::new();
    while let Some(part) = body.next().await {
        let part = match part {
            Ok(part) => part,
            Err(PayloadError::Io(e)) if e.kind() == std::io::ErrorKind::TimedOut => {
                return Err(Error::Timeout(body.timeout))
            }
            Err(e) => return Err(Error::Transport(format!("reading response: {e}"))),
        };
        if out.len().saturating_add(part.len()) > limit {
            return Err(Error::Transport(format!(
                "reading response: larger than {limit} bytes"
            )));
        }
        out.extend_from_slice(&part);
    }
    Ok(out.freeze())
}

/// The `error` field of an InfluxDB JSON error body, else the body text.
pub(crate) fn error_message(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct InfluxError {
        error: String,
    }
    match serde_json::from_slice::<InfluxError>(body) {
        Ok(e) => e.error,
        Err(_) => String::from_utf8_lossy(body).trim().to_string(),
    }
}

/// `k=v&k=v`, `application/x-www-form-urlencoded` as a browser sends it (space as `+`,
/// `*-._` kept, everything else percent-encoded). Both readers of it decode `+` as a space:
/// influxd (Go's `url.ParseQuery`) and a peer proxy (`serde_urlencoded`). It cannot fail for
/// string pairs; the error is mapped rather than unwrapped because it is on the request path.
pub(crate) fn form(params: &[(&str, &str)]) -> Result<String, Error> {
    serde_urlencoded::to_string(params)
        .map_err(|e| Error::Transport(format!("encoding query parameters: {e}")))
}

thread_local! {
    /// Query clients of this worker thread, one per backend target: awc
    /// clients are tied to their thread, and reusing one keeps its
    /// connection pool warm.
    static CLIENTS: std::cell::RefCell<std::collections::HashMap<usize, (Arc<Target>, Client)>> =
        std::cell::RefCell::new(std::collections::HashMap::new());
}

/// The current thread's client for `target` (its pool created on first use), with `timeout`:
/// callers with different timeouts (reads, schema refreshes, migration) share the pool, not
/// the timeout.
pub(crate) fn cached(target: &Arc<Target>, timeout: Duration) -> Client {
    let key = Arc::as_ptr(target) as usize;
    CLIENTS.with(|c| {
        let mut map = c.borrow_mut();
        if let Some((t, client)) = map.get(&key) {
            if Arc::ptr_eq(t, target) {
                return client.with_timeout(timeout);
            }
        }
        let client = Client::new(target.clone(), timeout);
        map.insert(key, (target.clone(), client.clone()));
        client
    })
}

/// URL query encoding of one value.
pub(crate) fn encode(s: &str) -> percent_encoding::PercentEncode<'_> {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC)
}

/// gzip at the fastest level: the link to InfluxDB is loopback or LAN, and
/// CPU spent here is CPU not spent accepting writes.
pub(crate) fn gzip(parts: &[&[u8]]) -> Bytes {
    let total: usize = parts.iter().map(|p| p.len()).sum();
    let mut enc = GzEncoder::new(Vec::with_capacity(total / 4 + 64), Compression::fast());
    for p in parts {
        // Writing into a Vec cannot fail.
        let _ = enc.write_all(p);
    }
    enc.finish().map(Bytes::from).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryable_errors_are_transport_timeouts_and_server_side() {
        assert!(Error::Transport("refused".into()).is_retryable());
        assert!(Error::Timeout(Duration::from_secs(1)).is_retryable());
        for status in [500, 502, 503, 401, 403, 408, 429] {
            let e = Error::Status {
                status,
                message: String::new(),
            };
            assert!(e.is_retryable(), "{status}");
        }
        for status in [400, 404, 413, 422] {
            let e = Error::Status {
                status,
                message: String::new(),
            };
            assert!(!e.is_retryable(), "{status}");
        }
    }

    #[test]
    fn database_not_found_is_recognised() {
        let e = Error::Status {
            status: 404,
            message: "database not found: \"x\"".into(),
        };
        assert!(e.is_database_not_found());
    }

    #[test]
    fn error_message_reads_influx_json_or_falls_back_to_text() {
        assert_eq!(error_message(br#"{"error":"bad"}"#), "bad");
        assert_eq!(error_message(b"plain\n"), "plain");
    }

    #[test]
    fn form_encodes_as_a_form_and_round_trips() {
        let params = [
            ("db", "my db"),
            ("q", r#"SELECT "a-b" FROM m WHERE x='1+1' & y=*"#),
            ("empty", ""),
        ];
        let text = form(&params).unwrap();
        assert_eq!(
            text,
            "db=my+db&q=SELECT+%22a-b%22+FROM+m+WHERE+x%3D%271%2B1%27+%26+y%3D*&empty="
        );
        let back: Vec<(String, String)> = serde_urlencoded::from_str(&text).unwrap();
        let back: Vec<(&str, &str)> = back.iter().map(|(k, v)| (&**k, &**v)).collect();
        assert_eq!(back, params);
        assert_eq!(form(&[]).unwrap(), "");
    }

    /// A body that sends `parts` with `gap` between them, then hangs for good.
    fn trickle(parts: usize, gap: Duration) -> impl Stream<Item = Result<Bytes, PayloadError>> {
        let parts = futures_util::stream::iter(0..parts).then(move |_| async move {
            sleep(gap).await;
            Ok(Bytes::from_static(b"x"))
        });
        parts.chain(futures_util::stream::pending())
    }

    #[actix_rt::test]
    async fn a_body_that_keeps_flowing_is_read_past_the_timeout_and_a_silent_one_fails() {
        let timeout = Duration::from_millis(300);
        let started = Instant::now();
        let flowing = Box::pin(trickle(8, Duration::from_millis(100)).take(8));
        let body = read_body(Quiet::new(flowing, timeout), 1024).await.unwrap();
        assert_eq!(body.len(), 8);
        assert!(
            started.elapsed() >= Duration::from_millis(800),
            "no part was cut"
        );

        let silent = Box::pin(trickle(2, Duration::from_millis(50)));
        let err = read_body(Quiet::new(silent, timeout), 1024)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Timeout(t) if t == timeout), "{err}");
    }

    #[actix_rt::test]
    async fn a_silent_stream_ends_after_its_timeout_error() {
        let mut q = Quiet::new(
            Box::pin(trickle(0, Duration::ZERO)),
            Duration::from_millis(10),
        );
        assert!(matches!(q.next().await, Some(Err(PayloadError::Io(_)))));
        assert!(q.next().await.is_none());
    }

    #[actix_rt::test]
    async fn a_body_over_the_limit_is_refused() {
        let big = Box::pin(trickle(3, Duration::ZERO).take(3));
        let err = read_body(Quiet::new(big, Duration::from_secs(5)), 2)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Transport(_)), "{err}");
    }

    #[test]
    fn gzip_round_trips() {
        use std::io::Read;
        let z = gzip(&[b"a f=1\n", b"b f=2\n"]);
        let mut out = String::new();
        flate2::read::GzDecoder::new(&z[..])
            .read_to_string(&mut out)
            .unwrap();
        assert_eq!(out, "a f=1\nb f=2\n");
    }
}
