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

use std::fmt::Write as _;

use prost::Message as _;

use crate::line_protocol::escape;

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
    decompressed_len(body, limit)?;
    Ok(snap::raw::Decoder::new().decompress_vec(body)?)
}

/// The length a snappy block declares it decompresses to (its header), refused over `limit`:
/// what [`unsnappy`] will allocate, known before it does.
pub fn decompressed_len(body: &[u8], limit: usize) -> Result<usize, Error> {
    let len = snap::raw::decompress_len(body)?;
    if len > limit {
        return Err(Error::TooLarge {
            what: "decompressed body",
            limit,
        });
    }
    Ok(len)
}

/// Heap bytes `WriteRequest::decode(pb)` allocates at most, counted from the wire without
/// allocating: every label and sample becomes a struct in a `Vec` (a 2-byte empty label takes
/// a 48-byte `Label`), so the decoded tree can be many times the protobuf's size and must be
/// charged to the memory budget before it exists. For malformed input, what a decode
/// allocates before it fails.
pub fn write_heap_bytes(pb: &[u8]) -> usize {
    heap_bytes(pb, &WRITE_SHAPE)
}

/// [`write_heap_bytes`] for a `ReadRequest`.
pub fn read_heap_bytes(pb: &[u8]) -> usize {
    heap_bytes(pb, &READ_SHAPE)
}

/// A message's fields as far as the heap is concerned (fields not named are scalars held in
/// the struct itself, or unknown and skipped).
struct Shape(&'static [(u32, FieldShape)]);

enum FieldShape {
    /// `repeated` messages: a `Vec` of structs of this size, each of this shape.
    Messages(usize, &'static Shape),
    /// A string or bytes field: one allocation of its length.
    Bytes,
    /// A `repeated` scalar of this size (packed or not): a `Vec`.
    Scalars(usize),
}

const LABEL_SHAPE: Shape = Shape(&[(1, FieldShape::Bytes), (2, FieldShape::Bytes)]);
const SAMPLE_SHAPE: Shape = Shape(&[]);
const SERIES_SHAPE: Shape = Shape(&[
    (1, FieldShape::Messages(size_of::<Label>(), &LABEL_SHAPE)),
    (2, FieldShape::Messages(size_of::<Sample>(), &SAMPLE_SHAPE)),
]);
const WRITE_SHAPE: Shape = Shape(&[(
    1,
    FieldShape::Messages(size_of::<TimeSeries>(), &SERIES_SHAPE),
)]);
const MATCHER_SHAPE: Shape = Shape(&[(2, FieldShape::Bytes), (3, FieldShape::Bytes)]);
const QUERY_SHAPE: Shape = Shape(&[
    (
        3,
        FieldShape::Messages(size_of::<LabelMatcher>(), &MATCHER_SHAPE),
    ),
    (4, FieldShape::Bytes),
]);
const READ_SHAPE: Shape = Shape(&[
    (1, FieldShape::Messages(size_of::<Query>(), &QUERY_SHAPE)),
    (2, FieldShape::Scalars(size_of::<i32>())),
]);

/// Heap bytes of decoding `pb` as a message of `shape` (see [`write_heap_bytes`]). Shapes do
/// not nest deeper than three levels, so the recursion is bounded.
fn heap_bytes(mut pb: &[u8], shape: &Shape) -> usize {
    // Elements of each repeated field, in `shape`'s order (no shape has more than 2 fields).
    let mut counts = vec![0usize; shape.0.len()];
    let mut bytes = 0usize;
    while let Some(key) = varint(&mut pb) {
        let (field, wire) = (key >> 3, key & 7);
        let known = shape.0.iter().position(|(f, _)| u64::from(*f) == field);
        let kind = known.and_then(|i| shape.0.get(i)).map(|(_, k)| k);
        let value = match wire {
            0 => varint(&mut pb).map(|_| &[][..]),
            1 => take(&mut pb, 8),
            2 => varint(&mut pb)
                .and_then(|len| usize::try_from(len).ok())
                .and_then(|len| take(&mut pb, len)),
            5 => take(&mut pb, 4),
            // Groups: no message here has one, and a decode refuses them as unknown.
            _ => None,
        };
        let Some(value) = value else {
            break;
        };
        let Some(i) = known else {
            continue;
        };
        match (kind, wire) {
            (Some(FieldShape::Messages(_, inner)), 2) => {
                counts[i] += 1;
                bytes = bytes.saturating_add(heap_bytes(value, inner));
            }
            (Some(FieldShape::Bytes), 2) => bytes = bytes.saturating_add(allocation(value.len())),
            (Some(FieldShape::Scalars(_)), 2) => {
                let mut packed = value;
                while varint(&mut packed).is_some() {
                    counts[i] += 1;
                }
            }
            (Some(FieldShape::Scalars(_)), _) => counts[i] += 1,
            _ => {}
        }
    }
    let vecs = shape.0.iter().zip(counts).map(|((_, kind), n)| match kind {
        FieldShape::Messages(size, _) | FieldShape::Scalars(size) => vec_bytes(n, *size),
        FieldShape::Bytes => 0,
    });
    vecs.fold(bytes, usize::saturating_add)
}

/// A `Vec` of `n` elements of `size` bytes grown by pushes: capacity 4, then doubled.
fn vec_bytes(n: usize, size: usize) -> usize {
    match n {
        0 => 0,
        n => allocation(n.max(4).next_power_of_two().saturating_mul(size)),
    }
}

/// What the allocator takes for `n` bytes: jemalloc's size classes are at most 25% apart,
/// and the smallest is 8 bytes.
fn allocation(n: usize) -> usize {
    match n {
        0 => 0,
        n => n.saturating_add(n / 4).saturating_add(16),
    }
}

/// Reads a protobuf varint (None at the end or when truncated).
fn varint(pb: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for (i, &b) in pb.iter().enumerate().take(10) {
        value |= u64::from(b & 0x7f) << (7 * i);
        if b < 0x80 {
            *pb = &pb[i + 1..];
            return Some(value);
        }
    }
    None
}

/// Takes `n` bytes (None when fewer are left).
fn take<'a>(pb: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if n > pb.len() {
        return None;
    }
    let (value, rest) = pb.split_at(n);
    *pb = rest;
    Some(value)
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
/// `limit` bytes (checked before `out` grows, and it never grows past `limit`): a series'
/// labels are repeated on every line, so a small protobuf with long labels and many samples
/// could otherwise grow without bound.
pub fn to_line_protocol(
    req: &WriteRequest,
    out: &mut Vec<u8>,
    limit: usize,
) -> Result<Converted, Error> {
    let mut done = Converted::default();
    let mut series_key = String::new();
    let mut rest = String::new();
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
            rest.clear();
            // Writing to a String cannot fail.
            let _ = writeln!(rest, " {FIELD}={} {ns}", sample.value);
            let len = out.len() + series_key.len() + rest.len();
            if len > limit {
                return Err(Error::TooLarge {
                    what: "line protocol built from the remote write",
                    limit,
                });
            }
            // Grown by doubling, but never past `limit`.
            if len > out.capacity() {
                let capacity = len.max(out.capacity() * 2).min(limit);
                out.reserve_exact(capacity - out.len());
            }
            out.extend_from_slice(series_key.as_bytes());
            out.extend_from_slice(rest.as_bytes());
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
    escape::measurement_into(out, measurement);
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
        escape::key_into(out, &label.name);
        out.push('=');
        escape::key_into(out, &label.value);
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

    /// What a decoded request holds on the heap (capacities; the allocator's rounding aside).
    fn write_heap(req: &WriteRequest) -> usize {
        let strings = |l: &Label| l.name.capacity() + l.value.capacity();
        req.timeseries.capacity() * size_of::<TimeSeries>()
            + req
                .timeseries
                .iter()
                .map(|ts| {
                    ts.labels.capacity() * size_of::<Label>()
                        + ts.labels.iter().map(strings).sum::<usize>()
                        + ts.samples.capacity() * size_of::<Sample>()
                })
                .sum::<usize>()
    }

    #[test]
    fn the_heap_of_a_decoded_write_is_known_before_decoding() {
        let empty_labels = WriteRequest {
            timeseries: vec![series(&[("", ""); 10_000], &[])],
        };
        let many_samples = WriteRequest {
            timeseries: vec![series(&[("__name__", "m")], &[(1.0, 1); 10_000])],
        };
        let many_series = WriteRequest {
            timeseries: vec![series(&[], &[]); 10_000],
        };
        let typical = WriteRequest {
            timeseries: (0..500)
                .map(|i| {
                    let host = format!("host-{i:04}.example.com");
                    let labels = [
                        ("__name__", "node_cpu_seconds_total"),
                        ("instance", host.as_str()),
                        ("job", "node"),
                        ("mode", "idle"),
                    ];
                    series(&labels, &[(i as f64, 1_700_000_000_000)])
                })
                .collect(),
        };
        for (what, req) in [
            ("empty labels", empty_labels),
            ("many samples", many_samples),
            ("many series", many_series),
            ("typical", typical),
        ] {
            let pb = req.encode_to_vec();
            let decoded = WriteRequest::decode(pb.as_slice()).unwrap();
            let (estimate, actual) = (write_heap_bytes(&pb), write_heap(&decoded));
            assert!(estimate >= actual, "{what}: {estimate} < {actual}");
            assert!(
                estimate <= 3 * actual + 1024,
                "{what}: {estimate} vs {actual}"
            );
        }
        // 10,000 empty labels: 20 KB on the wire, ~480 KB decoded.
        let pb = WriteRequest {
            timeseries: vec![series(&[("", ""); 10_000], &[])],
        }
        .encode_to_vec();
        assert!(pb.len() < 25_000 && write_heap_bytes(&pb) > 480_000);
    }

    #[test]
    fn the_heap_of_malformed_or_unknown_input_is_what_a_decode_takes_before_failing() {
        assert_eq!(write_heap_bytes(b""), 0);
        assert_eq!(write_heap_bytes(b"\xff\xff\xff"), 0);
        // A series declaring more bytes than are left is not counted.
        assert_eq!(write_heap_bytes(&[0x0a, 0x7f, 0x0a, 0x00]), 0);
        // Unknown fields of every wire type are skipped.
        let mut pb = vec![0x48, 0x01, 0x51, 0, 0, 0, 0, 0, 0, 0, 0, 0x5d, 0, 0, 0, 0];
        pb.extend_from_slice(&[0x62, 0x02, 0xff, 0xff]);
        assert_eq!(write_heap_bytes(&pb), 0);
        let read = ReadRequest {
            queries: vec![Query {
                matchers: vec![LabelMatcher::default(); 1000],
                ..Query::default()
            }],
            accepted_response_types: vec![0; 100],
        };
        let pb = read.encode_to_vec();
        let actual =
            size_of::<Query>() * 4 + 1024 * size_of::<LabelMatcher>() + 128 * size_of::<i32>();
        assert!(
            read_heap_bytes(&pb) >= actual,
            "{} < {actual}",
            read_heap_bytes(&pb)
        );
    }

    #[test]
    fn conversion_output_never_grows_past_the_limit() {
        let req = WriteRequest {
            timeseries: vec![series(&[("__name__", "m")], &[(1.0, 1); 1000])],
        };
        let mut out = Vec::new();
        let line = "m,__name__=m value=1 1000000\n".len();
        let limit = 100 * line + line / 2;
        assert!(matches!(
            to_line_protocol(&req, &mut out, limit),
            Err(Error::TooLarge { .. })
        ));
        assert_eq!(out.len(), 100 * line);
        assert!(out.capacity() <= limit, "{} > {limit}", out.capacity());
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
