//! Just enough HTTP/1.1 for the load tool, the sink and the suite's query timer: framing
//! (Content-Length, chunked, close), one response at a time over a keep-alive connection. No
//! HTTP library: on a 2-core machine the client shares the CPU with the system under test.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Largest response or request body read.
pub(crate) const MAX_BODY: usize = 256 << 20;
/// Largest header section read.
pub(crate) const MAX_HEAD: usize = 64 << 10;

/// One HTTP response.
#[derive(Debug, PartialEq)]
pub(crate) struct Response {
    pub(crate) status: u16,
    pub(crate) body: Vec<u8>,
    /// The server will close the connection (or the body was delimited by EOF).
    pub(crate) close: bool,
}

/// Framing headers common to requests and responses.
#[derive(Debug, Default)]
pub(crate) struct Framing {
    pub(crate) content_length: Option<usize>,
    pub(crate) chunked: bool,
    pub(crate) close: bool,
    pub(crate) keep_alive: bool,
    pub(crate) gzip: bool,
    pub(crate) expect_continue: bool,
}

pub(crate) fn bad_data(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// Reads one CRLF (or LF) terminated line into `line` (cleared first) without the terminator.
/// Returns false on EOF before any byte.
pub(crate) fn read_line<R: BufRead>(
    r: &mut R,
    line: &mut String,
    budget: &mut usize,
) -> io::Result<bool> {
    line.clear();
    let n = Read::take(&mut *r, *budget as u64 + 1).read_line(line)?;
    if n == 0 {
        return Ok(false);
    }
    if n > *budget {
        return Err(bad_data("header section too large"));
    }
    *budget -= n;
    if !line.ends_with('\n') {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed inside the header section",
        ));
    }
    let trimmed = line.trim_end_matches(['\r', '\n']).len();
    line.truncate(trimmed);
    Ok(true)
}

/// Reads header lines up to the empty line, folding the framing ones into a [`Framing`].
pub(crate) fn read_headers<R: BufRead>(
    r: &mut R,
    line: &mut String,
    budget: &mut usize,
) -> io::Result<Framing> {
    let mut f = Framing::default();
    loop {
        if !read_line(r, line, budget)? {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed inside the header section",
            ));
        }
        if line.is_empty() {
            return Ok(f);
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(bad_data(format!("bad header line {line:?}")));
        };
        let value = value.trim();
        let has_token = |token: &str| {
            value
                .split(',')
                .any(|v| v.trim().eq_ignore_ascii_case(token))
        };
        if name.eq_ignore_ascii_case("content-length") {
            let n = value
                .parse::<usize>()
                .map_err(|_| bad_data(format!("bad Content-Length {value:?}")))?;
            f.content_length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            f.chunked = has_token("chunked");
        } else if name.eq_ignore_ascii_case("connection") {
            f.close |= has_token("close");
            f.keep_alive |= has_token("keep-alive");
        } else if name.eq_ignore_ascii_case("content-encoding") {
            f.gzip = has_token("gzip");
        } else if name.eq_ignore_ascii_case("expect") {
            f.expect_continue = has_token("100-continue");
        }
    }
}

/// Reads a chunked body into `out`, trailers included (and discarded).
pub(crate) fn read_chunked<R: BufRead>(
    r: &mut R,
    line: &mut String,
    out: &mut Vec<u8>,
) -> io::Result<()> {
    let mut budget = MAX_HEAD;
    loop {
        if !read_line(r, line, &mut budget)? {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed inside a chunked body",
            ));
        }
        let size_text = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| bad_data(format!("bad chunk size {size_text:?}")))?;
        if size == 0 {
            // Trailers up to the empty line.
            loop {
                if !read_line(r, line, &mut budget)? || line.is_empty() {
                    return Ok(());
                }
            }
        }
        if out.len() + size > MAX_BODY {
            return Err(bad_data("body too large"));
        }
        let start = out.len();
        out.resize(start + size, 0);
        r.read_exact(&mut out[start..])?;
        budget = MAX_HEAD;
        if !read_line(r, line, &mut budget)? || !line.is_empty() {
            return Err(bad_data("chunk not followed by CRLF"));
        }
    }
}

/// Reads a body framed by `f` into `out` (cleared first). Returns true when it was delimited by
/// the end of the connection.
pub(crate) fn read_body<R: BufRead>(
    r: &mut R,
    f: &Framing,
    line: &mut String,
    out: &mut Vec<u8>,
    eof_delimited_allowed: bool,
) -> io::Result<bool> {
    out.clear();
    if f.chunked {
        read_chunked(r, line, out)?;
        Ok(false)
    } else if let Some(n) = f.content_length {
        if n > MAX_BODY {
            return Err(bad_data("body too large"));
        }
        out.resize(n, 0);
        r.read_exact(out)?;
        Ok(false)
    } else if eof_delimited_allowed {
        Read::take(&mut *r, MAX_BODY as u64).read_to_end(out)?;
        Ok(true)
    } else {
        Ok(false)
    }
}

/// Reads one response (skipping `1xx` interim responses).
pub(crate) fn read_response<R: BufRead>(r: &mut R, line: &mut String) -> io::Result<Response> {
    loop {
        let mut budget = MAX_HEAD;
        if !read_line(r, line, &mut budget)? {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed before the response",
            ));
        }
        let mut parts = line.splitn(3, ' ');
        let version = parts.next().unwrap_or("");
        let http10 = match version {
            "HTTP/1.1" => false,
            "HTTP/1.0" => true,
            _ => return Err(bad_data(format!("bad status line {line:?}"))),
        };
        let status = parts
            .next()
            .and_then(|s| s.parse::<u16>().ok())
            .filter(|s| (100..1000).contains(s))
            .ok_or_else(|| bad_data(format!("bad status line {line:?}")))?;
        let framing = read_headers(r, line, &mut budget)?;
        if (100..200).contains(&status) {
            continue;
        }
        let mut body = Vec::new();
        let no_body = status == 204 || status == 304;
        let eof = if no_body {
            false
        } else {
            read_body(r, &framing, line, &mut body, true)?
        };
        let close = eof || framing.close || (http10 && !framing.keep_alive);
        return Ok(Response {
            status,
            body,
            close,
        });
    }
}

/// A keep-alive connection.
pub(crate) struct Conn {
    reader: BufReader<TcpStream>,
}

impl Conn {
    pub(crate) fn open(addr: &SocketAddr, timeout: Duration) -> io::Result<Conn> {
        let stream = TcpStream::connect_timeout(addr, timeout)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        Ok(Conn {
            reader: BufReader::with_capacity(16 << 10, stream),
        })
    }

    pub(crate) fn round_trip(
        &mut self,
        head: &[u8],
        body: &[u8],
        line: &mut String,
    ) -> io::Result<Response> {
        let stream = self.reader.get_mut();
        stream.write_all(head)?;
        stream.write_all(body)?;
        read_response(&mut self.reader, line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn response(raw: &str) -> io::Result<Response> {
        let mut line = String::new();
        read_response(&mut Cursor::new(raw.as_bytes().to_vec()), &mut line)
    }

    #[test]
    fn parses_responses() {
        let r = response("HTTP/1.1 204 No Content\r\nX-Influxdb-Version: 1.8\r\n\r\n").unwrap();
        assert_eq!((r.status, r.body.len(), r.close), (204, 0, false));

        let r = response("HTTP/1.1 400 Bad Request\r\nContent-Length: 5\r\n\r\nhello").unwrap();
        assert_eq!(
            (r.status, &r.body[..], r.close),
            (400, &b"hello"[..], false)
        );

        let r = response(
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nConnection: close\r\n\r\n\
             3\r\nabc\r\n4;ext=1\r\ndefg\r\n0\r\nX-Trailer: 1\r\n\r\n",
        )
        .unwrap();
        assert_eq!(
            (r.status, &r.body[..], r.close),
            (200, &b"abcdefg"[..], true)
        );

        let r = response("HTTP/1.0 503 Unavailable\r\n\r\nbusy").unwrap();
        assert_eq!((r.status, &r.body[..], r.close), (503, &b"busy"[..], true));

        let r = response("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\n\n").unwrap();
        assert_eq!(r.status, 204);
    }

    #[test]
    fn parses_pipelined_responses_on_one_connection() {
        let raw = "HTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok\
                   HTTP/1.1 204 No Content\r\n\r\n";
        let mut cursor = Cursor::new(raw.as_bytes().to_vec());
        let mut line = String::new();
        let statuses: Vec<u16> = (0..3)
            .map(|_| read_response(&mut cursor, &mut line).unwrap().status)
            .collect();
        assert_eq!(statuses, [204, 200, 204]);
        assert!(read_response(&mut cursor, &mut line).is_err());
    }

    #[test]
    fn refuses_broken_responses() {
        for bad in [
            "",
            "garbage\r\n\r\n",
            "HTTP/1.1 abc OK\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
            "HTTP/1.1 200 OK\r\nno-colon\r\n\r\n",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            "HTTP/1.1 204 No Content\r\nX: 1\r\n",
        ] {
            assert!(response(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
