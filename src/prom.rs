//! Prometheus remote storage (`/api/v1/prom/write`, `/api/v1/prom/read`): the wire format
//! and the conversion of remote-write samples to line protocol.
//!
//! The messages are the few fields of Prometheus' `prompb` that InfluxDB 1.x uses, written
//! by hand with prost's derive: the proxy needs no `protoc` and no build script, and unknown
//! fields (newer Prometheus versions add some) are skipped by prost as protobuf requires.
//! Bodies are snappy *block* format (not the framed stream format).
//!
//! A sample becomes the point InfluxDB 1.x's own `/api/v1/prom/write` would store (its
//! `prometheus/converters.go`): measurement = the `__name__` label, every label a tag
//! (`__name__` included, which influxd's `/api/v1/prom/read` matches on), one float field
//! `value`, the millisecond timestamp in nanoseconds. The points are written as line
//! protocol so that they take the very path of `/write`: same parsing, verdicts and
//! write-ahead queue.

use std::io::Write as _;

use prost::Message as _;

/// Measurement of a sample without a `__name__` label (InfluxDB's name for it).
pub const DEFAULT_MEASUREMENT: &str = "prom_metric_not_specified";
/// The label that holds the metric name.
pub const NAME_LABEL: &str = "__name__";
/// The one field of every point.
pub const FIELD: &str = "value";

/// `prompb.WriteRequest`: what Prometheus' remote write sends.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WriteRequest {
    /// The series and their samples.
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
}

/// `prompb.TimeSeries`: one label set and its samples.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TimeSeries {
    /// The labels, `__name__` among them.
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    /// The samples, in time order.
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
}

/// `prompb.Label`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Label {
    /// Label name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Label value.
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `prompb.Sample`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Sample {
    /// The value (NaN marks a stale series in Prometheus).
    #[prost(double, tag = "1")]
    pub value: f64,
    /// Milliseconds since the Unix epoch.
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

/// `prompb.ReadRequest`: what Prometheus' remote read sends.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ReadRequest {
    /// The queries; InfluxDB (and so the proxy) answers exactly one.
    #[prost(message, repeated, tag = "1")]
    pub queries: Vec<Query>,
    /// `prompb.ReadRequest.ResponseType` values the client accepts (passed through).
    #[prost(int32, repeated, tag = "2")]
    pub accepted_response_types: Vec<i32>,
}

/// `prompb.Query`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Query {
    /// Start of the range, ms since the epoch.
    #[prost(int64, tag = "1")]
    pub start_timestamp_ms: i64,
    /// End of the range, ms since the epoch.
    #[prost(int64, tag = "2")]
    pub end_timestamp_ms: i64,
    /// Label matchers, all of which a series must satisfy.
    #[prost(message, repeated, tag = "3")]
    pub matchers: Vec<LabelMatcher>,
    /// Query hints (step, function, range): opaque to the proxy, kept as raw bytes.
    #[prost(bytes = "vec", optional, tag = "4")]
    pub hints: Option<Vec<u8>>,
}

/// `prompb.LabelMatcher`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct LabelMatcher {
    /// How `value` is compared.
    #[prost(enumeration = "MatchType", tag = "1")]
    pub r#type: i32,
    /// Label name.
    #[prost(string, tag = "2")]
    pub name: String,
    /// Value or regular expression.
    #[prost(string, tag = "3")]
    pub value: String,
}

/// `prompb.LabelMatcher.Type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum MatchType {
    /// `=`
    Eq = 0,
    /// `!=`
    Neq = 1,
    /// `=~`
    Re = 2,
    /// `!~`
    Nre = 3,
}

/// `prompb.ReadResponse`: what a backend answers to a read (the proxy relays it untouched;
/// the type is here for tests and tools that check an answer).
#[derive(Clone, PartialEq, prost::Message)]
pub struct ReadResponse {
    /// One result per query.
    #[prost(message, repeated, tag = "1")]
    pub results: Vec<QueryResult>,
}

/// `prompb.QueryResult`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct QueryResult {
    /// The matching series with their samples.
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
}

/// Why a remote-storage body was refused.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Not snappy block format.
    #[error("{0}")]
    Snappy(#[from] snap::Error),
    /// Not the protobuf message expected.
    #[error("{0}")]
    Protobuf(#[from] prost::DecodeError),
    /// The decompressed body, or the line protocol built from it, exceeds the limit.
    #[error("{what} too large: limit is {limit} bytes")]
    TooLarge {
        /// What grew too large.
        what: &'static str,
        /// `max_decompressed_bytes`.
        limit: usize,
    },
    /// A read request with no query or more than one.
    #[error("prometheus read endpoint currently only supports one query at a time")]
    NotOneQuery,
    /// A read query without `__name__="..."`: the proxy cannot tell which backend owns it.
    #[error("prometheus read endpoint requires an equality matcher on __name__ (the metric name decides which backend holds the data)")]
    NoMetricName,
}

/// Decompresses a snappy block, refusing an output over `limit` bytes before allocating it
/// (the length is in the block's header, so a small body cannot claim gigabytes).
pub fn unsnappy(body: &[u8], limit: usize) -> Result<Vec<u8>, Error> {
    let len = snap::raw::decompress_len(body)?;
    if len > limit {
        return Err(Error::TooLarge {
            what: "decompressed body",
            limit,
        });
    }
    Ok(snap::raw::Decoder::new().decompress_vec(body)?)
}

/// Snappy-compresses a block (what Prometheus sends; for tests and tools).
pub fn snappy(data: &[u8]) -> Vec<u8> {
    // Compressing into a Vec fails only for inputs over ~4 GB.
    snap::raw::Encoder::new()
        .compress_vec(data)
        .unwrap_or_default()
}

/// A snappy `WriteRequest` body.
pub fn decode_write(body: &[u8], limit: usize) -> Result<WriteRequest, Error> {
    Ok(WriteRequest::decode(unsnappy(body, limit)?.as_slice())?)
}

/// A snappy `ReadRequest` body.
pub fn decode_read(body: &[u8], limit: usize) -> Result<ReadRequest, Error> {
    Ok(ReadRequest::decode(unsnappy(body, limit)?.as_slice())?)
}

/// The metric a read asks for: the value of its `__name__="..."` matcher, which with the
/// database decides the owner backend. Exactly one query, as InfluxDB requires; a regex or
/// negative matcher on `__name__` cannot be routed to one backend and is refused.
pub fn read_metric(req: &ReadRequest) -> Result<&str, Error> {
    let [query] = req.queries.as_slice() else {
        return Err(Error::NotOneQuery);
    };
    query
        .matchers
        .iter()
        .find(|m| m.name == NAME_LABEL && m.r#type == MatchType::Eq as i32 && !m.value.is_empty())
        .map(|m| m.value.as_str())
        .ok_or(Error::NoMetricName)
}

/// What a conversion wrote and left out.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Converted {
    /// Points (lines) written.
    pub points: usize,
    /// NaN and ±Inf samples: line protocol has no such floats (and Prometheus' NaN is a
    /// staleness marker, not data), so they are left out as InfluxDB does.
    pub non_finite: usize,
    /// Samples of series that line protocol cannot carry (see [`representable`]), or whose
    /// timestamp overflows nanoseconds.
    pub unrepresentable: usize,
}

/// Appends one line per sample of `req` to `out` (ns timestamps), refusing output over
/// `limit` bytes: a series' labels are repeated on every line, so a small protobuf with
/// long labels and many samples could otherwise grow without bound.
pub fn to_line_protocol(
    req: &WriteRequest,
    out: &mut Vec<u8>,
    limit: usize,
) -> Result<Converted, Error> {
    let mut done = Converted::default();
    let mut series_key = String::new();
    for series in &req.timeseries {
        series_key.clear();
        if !write_series_key(series, &mut series_key) {
            done.unrepresentable += series.samples.len();
            continue;
        }
        for sample in &series.samples {
            if !sample.value.is_finite() {
                done.non_finite += 1;
                continue;
            }
            let Some(ns) = sample.timestamp.checked_mul(1_000_000) else {
                done.unrepresentable += 1;
                continue;
            };
            out.extend_from_slice(series_key.as_bytes());
            // Writing to a Vec cannot fail.
            let _ = writeln!(out, " {FIELD}={} {ns}", sample.value);
            if out.len() > limit {
                return Err(Error::TooLarge {
                    what: "line protocol built from the remote write",
                    limit,
                });
            }
            done.points += 1;
        }
    }
    Ok(done)
}

/// Writes `measurement,tag=value,...` of a series (tags sorted by key, empty values left
/// out since line protocol cannot carry them); false when the series cannot be written.
fn write_series_key(series: &TimeSeries, out: &mut String) -> bool {
    let measurement = series
        .labels
        .iter()
        .find(|l| l.name == NAME_LABEL && !l.value.is_empty())
        .map_or(DEFAULT_MEASUREMENT, |l| l.value.as_str());
    if measurement.starts_with('#') || !representable(measurement) {
        return false;
    }
    escape(measurement, &[',', ' '], out);
    let mut labels: Vec<&Label> = series
        .labels
        .iter()
        .filter(|l| !l.value.is_empty())
        .collect();
    labels.sort_by(|a, b| a.name.cmp(&b.name));
    for label in labels {
        if label.name.is_empty() || !representable(&label.name) || !representable(&label.value) {
            return false;
        }
        out.push(',');
        escape(&label.name, &[',', '=', ' '], out);
        out.push('=');
        escape(&label.value, &[',', '=', ' '], out);
    }
    true
}

/// Whether line protocol can carry `s` as a name or tag value and InfluxDB read it back
/// unchanged: no line break (it ends the line), and no backslash before an escapable
/// character or at the end (InfluxDB would take `\` + the escape's own `\` as an escape of
/// the next byte, and `\\` is not unescaped). Prometheus' metric and label names cannot
/// contain any of these; only label values rarely might.
pub fn representable(s: &str) -> bool {
    let b = s.as_bytes();
    !b.iter().enumerate().any(|(i, &c)| match c {
        b'\n' | b'\r' => true,
        b'\\' => matches!(b.get(i + 1), None | Some(b',' | b'=' | b' ' | b'\\')),
        _ => false,
    })
}

fn escape(s: &str, special: &[char], out: &mut String) {
    for c in s.chars() {
        if special.contains(&c) {
            out.push('\\');
        }
        out.push(c);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn label(name: &str, value: &str) -> Label {
        Label {
            name: name.into(),
            value: value.into(),
        }
    }

    fn series(labels: &[(&str, &str)], samples: &[(f64, i64)]) -> TimeSeries {
        TimeSeries {
            labels: labels.iter().map(|(n, v)| label(n, v)).collect(),
            samples: samples
                .iter()
                .map(|&(value, timestamp)| Sample { value, timestamp })
                .collect(),
        }
    }

    fn lines(req: &WriteRequest) -> (String, Converted) {
        let mut out = Vec::new();
        let done = to_line_protocol(req, &mut out, usize::MAX).unwrap();
        (String::from_utf8(out).unwrap(), done)
    }

    #[test]
    fn a_sample_becomes_the_point_influxdb_stores() {
        let req = WriteRequest {
            timeseries: vec![series(
                &[("job", "prom"), ("__name__", "up"), ("instance", "h:9090")],
                &[(1.0, 1_600_000_000_123), (0.25, 1_600_000_001_000)],
            )],
        };
        let (text, done) = lines(&req);
        assert_eq!(
            text,
            "up,__name__=up,instance=h:9090,job=prom value=1 1600000000123000000\n\
             up,__name__=up,instance=h:9090,job=prom value=0.25 1600000001000000000\n"
        );
        assert_eq!(done.points, 2);
    }

    #[test]
    fn names_and_values_are_escaped_and_the_default_measurement_used() {
        let req = WriteRequest {
            timeseries: vec![
                series(&[("a b", "x,y=z w")], &[(-3.5, 1)]),
                series(&[("__name__", "m,1 x"), ("k", "v")], &[(2.0, 0)]),
            ],
        };
        let (text, _) = lines(&req);
        assert_eq!(
            text,
            "prom_metric_not_specified,a\\ b=x\\,y\\=z\\ w value=-3.5 1000000\n\
             m\\,1\\ x,__name__=m\\,1\\ x,k=v value=2 0\n"
        );
        let second = text.lines().nth(1).unwrap();
        let parsed = crate::line_protocol::parse(second.as_bytes()).unwrap();
        assert_eq!(&*parsed.influx_measurement(), b"m,1 x");
    }

    #[test]
    fn nan_and_infinities_are_skipped_not_refused() {
        let req = WriteRequest {
            timeseries: vec![series(
                &[("__name__", "m")],
                &[
                    (f64::NAN, 1),
                    (f64::INFINITY, 2),
                    (f64::NEG_INFINITY, 3),
                    (7.0, 4),
                ],
            )],
        };
        let (text, done) = lines(&req);
        assert_eq!(text, "m,__name__=m value=7 4000000\n");
        assert_eq!(
            done,
            Converted {
                points: 1,
                non_finite: 3,
                unrepresentable: 0
            }
        );
    }

    #[test]
    fn empty_label_values_are_left_out_and_unwritable_series_skipped() {
        let req = WriteRequest {
            timeseries: vec![
                series(&[("__name__", "m"), ("empty", "")], &[(1.0, 1)]),
                series(
                    &[("__name__", "m"), ("path", "C:\\")],
                    &[(1.0, 1), (2.0, 2)],
                ),
                series(&[("__name__", "m"), ("text", "a\nb")], &[(1.0, 1)]),
                series(&[("__name__", "m"), ("path", "a\\b")], &[(1.0, i64::MAX)]),
            ],
        };
        let (text, done) = lines(&req);
        assert_eq!(text, "m,__name__=m value=1 1000000\n");
        assert_eq!(done.unrepresentable, 4);
    }

    /// The tags of a line as influxd 1.x reads them: a backslash takes the next byte with
    /// it while scanning, then only `\,`, `\ ` and `\=` are unescaped.
    fn influxd_tags(line: &str) -> Vec<(String, String)> {
        let b = line.as_bytes();
        let (mut parts, mut start, mut i) = (Vec::new(), 0, 0);
        while i < b.len() {
            match b[i] {
                b'\\' => i += 1,
                b',' | b' ' => {
                    parts.push(&line[start..i]);
                    start = i + 1;
                    if b[i] == b' ' {
                        break;
                    }
                }
                _ => {}
            }
            i += 1;
        }
        let unescape = |s: &str| {
            s.replace("\\,", ",")
                .replace("\\ ", " ")
                .replace("\\=", "=")
        };
        parts[1..]
            .iter()
            .map(|kv| {
                let b = kv.as_bytes();
                let mut eq = 0;
                while b[eq] != b'=' {
                    eq += if b[eq] == b'\\' { 2 } else { 1 };
                }
                (unescape(&kv[..eq]), unescape(&kv[eq + 1..]))
            })
            .collect()
    }

    #[test]
    fn every_written_line_reads_back_as_its_labels() {
        let values = [
            "plain",
            "a b",
            "x=y",
            "c,d",
            "a\\b",
            "\u{fc}n\u{ef} code",
            "=",
            ",",
            " ",
        ];
        for v in values {
            let req = WriteRequest {
                timeseries: vec![series(&[("__name__", "m"), ("k", v)], &[(1.5, 9)])],
            };
            let (text, done) = lines(&req);
            assert_eq!(done.points, 1, "{v:?}");
            let line = text.trim_end_matches('\n');
            let parsed = crate::line_protocol::parse(line.as_bytes()).unwrap();
            assert_eq!(&*parsed.influx_measurement(), b"m", "{v:?}");
            assert_eq!(
                influxd_tags(line),
                [
                    ("__name__".to_string(), "m".to_string()),
                    ("k".into(), v.into())
                ],
                "{line}"
            );
        }
    }

    #[test]
    fn output_over_the_limit_is_refused() {
        let long = "v".repeat(1000);
        let req = WriteRequest {
            timeseries: vec![series(&[("__name__", "m"), ("k", &long)], &[(1.0, 1); 100])],
        };
        let mut out = Vec::new();
        assert!(matches!(
            to_line_protocol(&req, &mut out, 10_000),
            Err(Error::TooLarge { .. })
        ));
    }

    #[test]
    fn write_requests_round_trip_through_snappy_and_protobuf() {
        let req = WriteRequest {
            timeseries: vec![series(&[("__name__", "up")], &[(1.0, 5)])],
        };
        let body = snappy(&req.encode_to_vec());
        assert_eq!(decode_write(&body, 1 << 20).unwrap(), req);
        assert!(matches!(
            decode_write(b"not snappy", 1 << 20),
            Err(Error::Snappy(_))
        ));
        assert!(matches!(
            decode_write(&snappy(b"\xff\xff\xff"), 1 << 20),
            Err(Error::Protobuf(_))
        ));
        assert!(matches!(
            decode_write(&snappy(&vec![0u8; 4096]), 100),
            Err(Error::TooLarge { .. })
        ));
    }

    fn read(queries: Vec<Vec<LabelMatcher>>) -> ReadRequest {
        ReadRequest {
            queries: queries
                .into_iter()
                .map(|matchers| Query {
                    start_timestamp_ms: 0,
                    end_timestamp_ms: 1,
                    matchers,
                    hints: None,
                })
                .collect(),
            accepted_response_types: vec![0],
        }
    }

    fn matcher(t: MatchType, name: &str, value: &str) -> LabelMatcher {
        LabelMatcher {
            r#type: t as i32,
            name: name.into(),
            value: value.into(),
        }
    }

    #[test]
    fn a_read_is_routed_by_its_name_equality_matcher() {
        let req = read(vec![vec![
            matcher(MatchType::Eq, "job", "x"),
            matcher(MatchType::Eq, "__name__", "up"),
        ]]);
        assert_eq!(read_metric(&req).unwrap(), "up");
        let body = snappy(&req.encode_to_vec());
        assert_eq!(decode_read(&body, 1 << 20).unwrap(), req);
    }

    #[test]
    fn reads_without_exactly_one_query_or_a_name_are_refused() {
        assert!(matches!(
            read_metric(&read(vec![])),
            Err(Error::NotOneQuery)
        ));
        let two = read(vec![
            vec![matcher(MatchType::Eq, "__name__", "a")],
            vec![matcher(MatchType::Eq, "__name__", "b")],
        ]);
        assert_eq!(
            read_metric(&two).unwrap_err().to_string(),
            "prometheus read endpoint currently only supports one query at a time"
        );
        for unroutable in [
            vec![matcher(MatchType::Eq, "job", "x")],
            vec![matcher(MatchType::Re, "__name__", "up|down")],
            vec![matcher(MatchType::Neq, "__name__", "up")],
            vec![matcher(MatchType::Eq, "__name__", "")],
        ] {
            assert!(matches!(
                read_metric(&read(vec![unroutable])),
                Err(Error::NoMetricName)
            ));
        }
    }

    #[test]
    fn read_hints_and_unknown_fields_survive_decoding() {
        // Query.hints (4) as opaque bytes, and an unknown field 9 that newer Prometheus
        // versions could send: both decode.
        let mut q = Query {
            start_timestamp_ms: 1,
            end_timestamp_ms: 2,
            matchers: vec![matcher(MatchType::Eq, "__name__", "up")],
            hints: Some(vec![0x08, 0x0f]),
        }
        .encode_to_vec();
        q.extend_from_slice(&[0x48, 0x01]);
        let mut body = vec![0x0a, q.len() as u8];
        body.extend_from_slice(&q);
        let req = ReadRequest::decode(body.as_slice()).unwrap();
        assert_eq!(read_metric(&req).unwrap(), "up");
        assert_eq!(req.queries[0].hints.as_deref(), Some(&[0x08, 0x0f][..]));
    }
}
