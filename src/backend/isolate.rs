//! Finding, in a batch InfluxDB refused, the lines it refuses on their own.
//!
//! # Why
//! A delivery batch merges the lines of many separately acknowledged
//! requests. InfluxDB 1.x refuses a whole body for one bad line in some
//! cases (two lines giving a field it does not have yet different types:
//! `400 {"error":"field type conflict"}`, nothing stored), and stores the
//! rest but names no line in others (`partial write: ... dropped=N`). If the
//! refused body went to the dead letters whole, one client's bad line would
//! take other clients' good, acknowledged points with it.
//!
//! # How
//! The refused body's lines are bisected: each half is sent on its own, a
//! half that is accepted is delivered, a refused half is split again, and a
//! single line that is refused is the only thing that goes to the dead
//! letters. Halves are sent left before right, one at a time, so every
//! series still reaches InfluxDB in queue order. Re-sending lines a partial
//! write had stored is harmless: InfluxDB overwrites a point with the same
//! values. A body that `partial write` says was dropped whole is refused
//! line by line without splitting further. `k` refused lines among `n`
//! cost about `2k log2(n/k)` requests, and only after a refusal.
//!
//! A retryable failure (timeout, 5xx, ...) on the way ends the search: the
//! whole batch is retried later, as any failed batch, and searched again if
//! refused again.

use std::future::Future;

use bytes::{Bytes, BytesMut};

use super::client::Error;
use crate::line_protocol;

/// One line of a refused body and the queued record it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RecordLine {
    /// Index of the record (in the batch's entries) holding the line.
    pub origin: usize,
    /// The line, without its newline.
    pub text: Bytes,
}

/// A line InfluxDB refused on its own, with its answer.
#[derive(Debug)]
pub(crate) struct RefusedLine {
    /// The refused line.
    pub line: RecordLine,
    /// HTTP status of the refusal.
    pub status: u16,
    /// InfluxDB's error message.
    pub error: String,
}

/// How the search ended.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// Every line is either delivered or in `refused`.
    Settled {
        /// Lines refused on their own, in queue order.
        refused: Vec<RefusedLine>,
        /// Write requests the search made.
        requests: u64,
    },
    /// A request failed in a way worth retrying: retry the whole batch.
    Retry(Error),
}

/// The lines of `parts[i]` (newline-terminated line protocol) that
/// `keep(line)` selects, tagged with origin `i`, in order.
pub(crate) fn lines_of(parts: &[&[u8]], mut keep: impl FnMut(&[u8]) -> bool) -> Vec<RecordLine> {
    let mut out = Vec::new();
    for (origin, part) in parts.iter().enumerate() {
        let all = Bytes::copy_from_slice(part);
        for line in line_protocol::lines(part) {
            if keep(line) {
                let start = line.as_ptr() as usize - part.as_ptr() as usize;
                out.push(RecordLine {
                    origin,
                    text: all.slice(start..start + line.len()),
                });
            }
        }
    }
    out
}

/// Searches `lines`, whose body was refused as a whole, for the lines
/// refused on their own. `send(body, points)` writes one plain body.
pub(crate) async fn isolate<F, Fut>(lines: Vec<RecordLine>, first: Error, mut send: F) -> Outcome
where
    F: FnMut(Bytes, u64) -> Fut,
    Fut: Future<Output = Result<(), Error>>,
{
    let mut refused = Vec::new();
    let mut requests = 0u64;
    // Ranges still to settle, the next on top; each with the refusal that
    // put it there (a range known refused is split without re-sending).
    let mut todo: Vec<(usize, usize, Option<Error>)> = vec![(0, lines.len(), Some(first))];
    while let Some((start, end, known)) = todo.pop() {
        let answer = match known {
            Some(e) => Err(e),
            None => {
                requests += 1;
                send(body(&lines[start..end]), (end - start) as u64).await
            }
        };
        let e = match answer {
            Ok(()) => continue,
            Err(e) if e.is_retryable() => return Outcome::Retry(e),
            Err(e) => e,
        };
        let (status, message) = match &e {
            Error::Status { status, message } => (*status, message.clone()),
            other => (0, other.to_string()),
        };
        if end - start == 1 || dropped(&message) == Some((end - start) as u64) {
            refused.extend(lines[start..end].iter().map(|line| RefusedLine {
                line: line.clone(),
                status,
                error: message.clone(),
            }));
            continue;
        }
        let mid = start + (end - start) / 2;
        todo.push((mid, end, None));
        todo.push((start, mid, None));
    }
    Outcome::Settled { refused, requests }
}

/// A plain request body of `lines`.
fn body(lines: &[RecordLine]) -> Bytes {
    let len = lines.iter().map(|l| l.text.len() + 1).sum();
    let mut out = BytesMut::with_capacity(len);
    for l in lines {
        out.extend_from_slice(&l.text);
        out.extend_from_slice(b"\n");
    }
    out.freeze()
}

/// The `dropped=N` count of an InfluxDB `partial write` error: how many of
/// the body's points it refused (and stored the others).
fn dropped(message: &str) -> Option<u64> {
    if !message.starts_with("partial write") {
        return None;
    }
    let at = message.rfind("dropped=")? + "dropped=".len();
    let digits: String = message[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    fn status(code: u16, message: &str) -> Error {
        Error::Status {
            status: code,
            message: message.to_string(),
        }
    }

    /// A backend refusing every body holding a line that contains `bad`
    /// (and storing nothing of it), accepting anything else; records the
    /// bodies it was sent and the lines it stored, in order.
    struct Fake {
        bad: &'static str,
        bodies: RefCell<Vec<String>>,
        stored: RefCell<Vec<String>>,
    }

    impl Fake {
        fn new(bad: &'static str) -> Fake {
            Fake {
                bad,
                bodies: RefCell::default(),
                stored: RefCell::default(),
            }
        }

        fn send(&self, body: Bytes, points: u64) -> std::future::Ready<Result<(), Error>> {
            let text = String::from_utf8(body.to_vec()).unwrap();
            assert_eq!(text.lines().count() as u64, points);
            self.bodies.borrow_mut().push(text.clone());
            if text.lines().any(|l| l.contains(self.bad)) {
                return std::future::ready(Err(status(400, "field type conflict")));
            }
            self.stored
                .borrow_mut()
                .extend(text.lines().map(str::to_string));
            std::future::ready(Ok(()))
        }
    }

    fn parts(lines: &[&str]) -> Vec<u8> {
        lines
            .iter()
            .flat_map(|l| format!("{l}\n").into_bytes())
            .collect()
    }

    fn run(fake: &Fake, lines: Vec<RecordLine>) -> Outcome {
        let first = status(400, "field type conflict");
        futures_util::FutureExt::now_or_never(isolate(lines, first, |b, n| fake.send(b, n)))
            .unwrap()
    }

    #[test]
    fn one_bad_line_is_all_that_is_refused_and_the_rest_arrive_in_order() {
        let a = parts(&["m,h=a v=1 1", "m,h=b v=2 2", "x f=BAD 3"]);
        let b = parts(&["m,h=a v=4 4", "y g=1 5"]);
        let lines = lines_of(&[&a, &b], |_| true);
        assert_eq!(lines.len(), 5);
        let fake = Fake::new("BAD");
        let Outcome::Settled { refused, requests } = run(&fake, lines) else {
            panic!("not settled");
        };
        assert_eq!(refused.len(), 1);
        assert_eq!(&refused[0].line.text[..], b"x f=BAD 3");
        assert_eq!(refused[0].line.origin, 0);
        assert_eq!(
            (refused[0].status, refused[0].error.as_str()),
            (400, "field type conflict")
        );
        assert_eq!(
            *fake.stored.borrow(),
            ["m,h=a v=1 1", "m,h=b v=2 2", "m,h=a v=4 4", "y g=1 5"],
            "every good line once, series in queue order"
        );
        assert_eq!(requests, fake.bodies.borrow().len() as u64);
        assert!(requests <= 6, "{requests} requests for 5 lines");
    }

    #[test]
    fn several_bad_lines_are_each_found() {
        let text: Vec<String> = (0..100)
            .map(|i| {
                if i % 17 == 3 {
                    format!("m v=BAD{i} {i}")
                } else {
                    format!("m v={i} {i}")
                }
            })
            .collect();
        let refs: Vec<&str> = text.iter().map(String::as_str).collect();
        let p = parts(&refs);
        let fake = Fake::new("BAD");
        let Outcome::Settled { refused, .. } = run(&fake, lines_of(&[&p], |_| true)) else {
            panic!("not settled");
        };
        let bad: Vec<String> = refused
            .iter()
            .map(|r| String::from_utf8(r.line.text.to_vec()).unwrap())
            .collect();
        let expected: Vec<&String> = text.iter().filter(|l| l.contains("BAD")).collect();
        assert_eq!(bad.iter().collect::<Vec<_>>(), expected);
        assert_eq!(fake.stored.borrow().len(), 100 - expected.len());
    }

    #[test]
    fn a_retryable_failure_ends_the_search() {
        let p = parts(&["a v=1 1", "b v=2 2"]);
        let out = futures_util::FutureExt::now_or_never(isolate(
            lines_of(&[&p], |_| true),
            status(400, "bad"),
            |_, _| std::future::ready(Err(status(503, "down"))),
        ))
        .unwrap();
        assert!(matches!(out, Outcome::Retry(e) if e.status() == Some(503)));
    }

    #[test]
    fn a_body_dropped_whole_is_refused_without_splitting() {
        let p = parts(&["a v=1 1", "b v=2 2", "c v=3 3", "d v=4 4"]);
        let sent = RefCell::new(0);
        let out = futures_util::FutureExt::now_or_never(isolate(
            lines_of(&[&p], |_| true),
            status(
                400,
                "partial write: points beyond retention policy dropped=4",
            ),
            |_, _| {
                *sent.borrow_mut() += 1;
                std::future::ready(Ok(()))
            },
        ))
        .unwrap();
        let Outcome::Settled { refused, requests } = out else {
            panic!("not settled");
        };
        assert_eq!((refused.len(), requests, *sent.borrow()), (4, 0, 0));
    }

    #[test]
    fn dropped_counts_are_read_from_partial_writes_only() {
        assert_eq!(
            dropped("partial write: field type conflict: input field \"f\" on measurement \"m\" is type integer, already exists as type float dropped=3"),
            Some(3)
        );
        assert_eq!(dropped("field type conflict"), None);
        assert_eq!(dropped("partial write: dropped=x"), None);
    }

    #[test]
    fn lines_of_keeps_only_selected_lines_with_their_origin() {
        let a = parts(&["a v=1 1", "b v=2 2"]);
        let b = parts(&["a v=3 3"]);
        let got = lines_of(&[&a, &b], |l| l.starts_with(b"a "));
        let got: Vec<(usize, &[u8])> = got.iter().map(|l| (l.origin, &l.text[..])).collect();
        assert_eq!(got, [(0, &b"a v=1 1"[..]), (1, &b"a v=3 3"[..])]);
    }
}
