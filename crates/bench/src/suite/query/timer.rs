//! Timing a query as `wrk -t1 -c1 --latency` did: one keep-alive connection, one request at a
//! time, for a fixed time; latency from writing the request to the end of the answer, at
//! microsecond resolution, percentiles by wrk's rank. Also the single GET that fetches an
//! answer to compare (what `curl` did): a fresh connection, no `Accept-Encoding`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::http1::{Conn, Response};
use crate::Target;

/// A request that takes longer counts as an error (`wrk --timeout 60s`).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// How long one answer to compare may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(120);

/// Where queries go: `http://host:port` resolved once.
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    addr: SocketAddr,
    host: String,
}

impl Endpoint {
    pub(crate) fn parse(url: &str) -> Result<Endpoint, String> {
        let target = Target::parse(url)?;
        let addr = target
            .resolve()
            .map_err(|e| format!("cannot resolve {url}: {e}"))?;
        Ok(Endpoint {
            addr,
            host: target.host_header(),
        })
    }

    fn head(&self, path: &str) -> Vec<u8> {
        format!("GET {path} HTTP/1.1\r\nHost: {}\r\n\r\n", self.host).into_bytes()
    }

    /// `GET path` on a fresh connection: (status, body); status 0 when no answer came.
    pub(crate) fn fetch(&self, path: &str) -> (u16, Vec<u8>) {
        let mut line = String::new();
        match Conn::open(&self.addr, FETCH_TIMEOUT)
            .and_then(|mut c| c.round_trip(&self.head(path), b"", &mut line))
        {
            Ok(Response { status, body, .. }) => (status, body),
            Err(_) => (0, Vec::new()),
        }
    }

    /// Sends `GET path` over one connection, one request after the other, for `duration`.
    pub(crate) fn time(&self, path: &str, duration: Duration) -> Timing {
        let head = self.head(path);
        let mut line = String::new();
        let mut timing = Timing::default();
        let mut conn: Option<Conn> = None;
        let start = Instant::now();
        let deadline = start + duration;
        while Instant::now() < deadline {
            if conn.is_none() {
                match Conn::open(&self.addr, REQUEST_TIMEOUT) {
                    Ok(c) => conn = Some(c),
                    Err(_) => {
                        timing.errors += 1;
                        std::thread::sleep(Duration::from_millis(10));
                        continue;
                    }
                }
            }
            let Some(c) = conn.as_mut() else {
                continue;
            };
            let sent = Instant::now();
            let result = c.round_trip(&head, b"", &mut line);
            // Like wrk, a request still running when the time is up is not counted.
            if Instant::now() > deadline {
                break;
            }
            match result {
                Ok(resp) => {
                    timing.latencies_us.push(sent.elapsed().as_micros() as u64);
                    if resp.status > 399 {
                        timing.errors += 1;
                    }
                    if resp.close {
                        conn = None;
                    }
                }
                Err(_) => {
                    timing.errors += 1;
                    conn = None;
                }
            }
        }
        timing.elapsed = start.elapsed().min(duration);
        timing.latencies_us.sort_unstable();
        timing
    }
}

/// What timing one query against one target measured.
#[derive(Debug, Default, Clone)]
pub(crate) struct Timing {
    /// Every answered request's latency, ascending.
    latencies_us: Vec<u64>,
    elapsed: Duration,
    /// Requests that failed or were answered 4xx/5xx.
    pub(crate) errors: u64,
}

impl Timing {
    /// The `p`th percentile latency in milliseconds.
    pub(crate) fn percentile_ms(&self, p: f64) -> f64 {
        wrk_percentile(&self.latencies_us, p) as f64 / 1000.0
    }

    /// Answered requests per second.
    pub(crate) fn per_sec(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.latencies_us.len() as f64 / secs
        } else {
            0.0
        }
    }

    /// Whether any request was answered.
    pub(crate) fn answered(&self) -> bool {
        !self.latencies_us.is_empty()
    }
}

/// wrk's percentile of ascending `sorted`: the value of rank `round(p/100 * n + 0.5)`.
fn wrk_percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (p / 100.0 * sorted.len() as f64 + 0.5).round() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;

    #[test]
    fn percentiles_use_wrks_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(wrk_percentile(&v, 50.0), 51);
        assert_eq!(wrk_percentile(&v, 99.0), 100);
        let v: Vec<u64> = (1..=1000).collect();
        assert_eq!(wrk_percentile(&v, 50.0), 501);
        assert_eq!(wrk_percentile(&v, 99.0), 991);
        assert_eq!(wrk_percentile(&[7], 50.0), 7);
        assert_eq!(wrk_percentile(&[], 50.0), 0);
    }

    #[test]
    fn figures_of_a_timing() {
        let t = Timing {
            latencies_us: vec![1000, 2000, 3000, 4000],
            elapsed: Duration::from_secs(2),
            errors: 0,
        };
        assert_eq!(t.per_sec(), 2.0);
        assert_eq!(t.percentile_ms(50.0), 3.0);
        assert!(t.answered() && !Timing::default().answered());
    }

    /// A server answering every request on a connection with `status` and a short body.
    fn server(status: u16) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    let mut writer = stream;
                    let mut line = String::new();
                    loop {
                        line.clear();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        if line == "\r\n" {
                            let answer =
                                format!("HTTP/1.1 {status} X\r\nContent-Length: 2\r\n\r\nok");
                            if writer.write_all(answer.as_bytes()).is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        format!("http://127.0.0.1:{port}")
    }

    #[test]
    fn times_requests_over_one_connection_and_fetches_answers() {
        let ok = Endpoint::parse(&server(200)).unwrap();
        assert_eq!(ok.fetch("/query?q=x"), (200, b"ok".to_vec()));
        let t = ok.time("/query?q=x", Duration::from_millis(200));
        assert!(t.answered() && t.errors == 0, "{t:?}");
        assert!(t.per_sec() > 10.0, "{t:?}");
        let refused = Endpoint::parse(&server(400)).unwrap();
        let t = refused.time("/query", Duration::from_millis(100));
        assert!(
            t.errors > 0 && t.errors as usize == t.latencies_us.len(),
            "{t:?}"
        );
        let closed = Endpoint::parse("http://127.0.0.1:1").unwrap();
        assert_eq!(closed.fetch("/"), (0, Vec::new()));
    }
}
