//! On-disk record and key encoding of the write-ahead queue.
//!
//! Pure functions only (no RocksDB here) so the format can be unit-tested,
//! fuzzed and pinned with golden bytes. The layout is described in the
//! `wal` module documentation; this file is its single implementation.
//!
//! Never reorder, remove or retype the fields or variants of [`Record`] or
//! [`DeadLetter`]: bincode encodes them positionally, so any such change
//! silently corrupts queues written by an older binary. Add a new variant at
//! the end, or bump [`FORMAT_VERSION`] and keep a decoder for the old one.

use bincode::{BorrowDecode, Encode};

/// First byte of every value. Bumped only for incompatible layout changes.
pub const FORMAT_VERSION: u8 = 1;

/// Key prefix of queued records: `q | backend id (u32 BE) | seq (u64 BE)`.
pub const QUEUE_PREFIX: u8 = b'q';
/// Key prefix of dead letters: `d | backend id (u32 BE) | seq (u64 BE)`.
pub const DEAD_PREFIX: u8 = b'd';
/// Key prefix of backend registrations: `m | "backend/" | name` -> id (u32 BE).
pub const META_PREFIX: u8 = b'm';
/// Key prefix of the lines one append shares among its queues:
/// `s | 0 (u32) | seq (u64 BE)`, the seq of the append.
pub const SHARED_PREFIX: u8 = b's';

/// Length of a queue or dead-letter key.
pub const KEY_LEN: usize = 13;

/// One unit of work queued for one backend.
///
/// Borrowed form: encoding needs no copy of the request body, and decoding
/// points into the value RocksDB returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, BorrowDecode)]
pub enum Record<'a> {
    /// Line-protocol points, nanosecond precision, each line ending in `\n`,
    /// all for one database and retention policy.
    Points {
        /// Target database.
        db: &'a str,
        /// Target retention policy; empty means the database default.
        rp: &'a str,
        /// Number of lines in `lines` (kept so counters need no re-scan).
        points: u32,
        /// The lines themselves.
        lines: &'a [u8],
    },
    /// An InfluxQL statement that must reach this backend in order with the
    /// writes around it (DDL or deletes issued while the backend was down).
    Statement {
        /// Database the statement runs against (`db` URL parameter).
        db: &'a str,
        /// The statement text.
        query: &'a str,
    },
    /// Points whose lines are stored once for every queue of the append, in
    /// the shared value under [`shared_key`] of the record's seq: a write
    /// to N circles stores its lines once instead of N times. Reading
    /// resolves it into the [`Record::Points`] it stands for.
    Shared {
        /// Target database.
        db: &'a str,
        /// Target retention policy; empty means the database default.
        rp: &'a str,
        /// Number of lines the spans cover.
        points: u32,
        /// Total length of the lines the spans cover.
        lines: u64,
        /// How many records of the append share the lines (so recovery
        /// knows whether some were already delivered).
        sharers: u32,
        /// The record's lines in the shared value, in order: LEB128 pairs
        /// (gap since the end of the previous span, length); see
        /// [`encode_spans`].
        spans: &'a [u8],
    },
}

impl Record<'_> {
    /// Number of points the record carries (statements count as zero).
    pub fn points(&self) -> u64 {
        match self {
            Record::Points { points, .. } | Record::Shared { points, .. } => u64::from(*points),
            Record::Statement { .. } => 0,
        }
    }

    /// Bytes the record counts for in its queue's byte bound: its value's
    /// length, and for a shared record the length of the
    /// [`Record::Points`] value it stands for, so resolving or unsharing
    /// it never changes a queue's counters.
    pub fn accounted_len(&self, stored_len: usize) -> u64 {
        match self {
            Record::Shared {
                db,
                rp,
                points,
                lines,
                ..
            } => points_header_len(db, rp, *points, *lines) + lines,
            _ => stored_len as u64,
        }
    }
}

/// Bytes of a `u64` as a bincode (standard config) varint.
fn varint_len(v: u64) -> u64 {
    match v {
        0..=250 => 1,
        251..=0xffff => 3,
        0x1_0000..=0xffff_ffff => 5,
        _ => 9,
    }
}

/// Appends a [`Record::Points`] value up to its lines (`lines` bytes of
/// them follow): field by field as `#[derive(Encode)]` writes it, variant
/// index first. [`points_header_len`] is its length.
pub(super) fn encode_points_header(db: &str, rp: &str, points: u32, lines: u64, out: &mut Vec<u8>) {
    encode_versioned(&(0u32, db, rp, points, lines), out);
}

/// Length of a [`Record::Points`] value up to its lines: version, variant,
/// db, rp, points and the lines' length.
fn points_header_len(db: &str, rp: &str, points: u32, lines: u64) -> u64 {
    let string = |s: &str| varint_len(s.len() as u64) + s.len() as u64;
    1 + 1 + string(db) + string(rp) + varint_len(u64::from(points)) + varint_len(lines)
}

/// A record the backend refused for good (4xx), kept for inspection and replay.
#[derive(Debug, Clone, PartialEq, Eq, Encode, BorrowDecode)]
pub struct DeadLetter<'a> {
    /// HTTP status of the refusal, or 0 when the record itself was unreadable.
    pub status: u16,
    /// The backend's error message.
    pub error: &'a str,
    /// Unix time of the refusal, milliseconds.
    pub at_unix_ms: u64,
    /// The original queue value, byte for byte (version byte included).
    pub value: &'a [u8],
}

/// Why a stored value could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The value is empty.
    #[error("empty value")]
    Empty,
    /// The value was written by an unknown (newer) format.
    #[error("unsupported record format version {0}")]
    Version(u8),
    /// The bytes after the version do not decode.
    #[error("corrupt record: {0}")]
    Corrupt(String),
    /// A record naming lines stored shared whose shared lines are gone.
    #[error("shared record whose lines are missing")]
    SharedLinesMissing,
}

fn config() -> bincode::config::Configuration {
    bincode::config::standard()
}

/// Encodes any versioned value: version byte, then bincode.
fn encode_versioned<T: Encode>(value: &T, out: &mut Vec<u8>) {
    out.push(FORMAT_VERSION);
    // Writing into a Vec cannot fail and every field type is encodable, so
    // the only error bincode could report here is unreachable.
    let _ = bincode::encode_into_std_write(value, out, config());
}

fn decode_versioned<'a, T: BorrowDecode<'a, ()>>(value: &'a [u8]) -> Result<T, DecodeError> {
    let (&version, body) = value.split_first().ok_or(DecodeError::Empty)?;
    if version != FORMAT_VERSION {
        return Err(DecodeError::Version(version));
    }
    let (decoded, used) = bincode::borrow_decode_from_slice::<T, _>(body, config())
        .map_err(|e| DecodeError::Corrupt(e.to_string()))?;
    if used != body.len() {
        return Err(DecodeError::Corrupt(format!(
            "{} trailing bytes",
            body.len() - used
        )));
    }
    Ok(decoded)
}

/// Encodes a record as a queue value.
pub fn encode_record(record: &Record<'_>) -> Vec<u8> {
    let payload = match record {
        Record::Points { lines, .. } => lines.len(),
        Record::Statement { query, .. } => query.len(),
        Record::Shared { spans, .. } => spans.len(),
    };
    let mut out = Vec::with_capacity(payload + 64);
    encode_versioned(record, &mut out);
    out
}

/// Appends `spans` (in order, non-overlapping, byte ranges of the shared
/// lines) in the [`Record::Shared`] encoding.
pub fn encode_spans(spans: &[(u64, u64)], out: &mut Vec<u8>) {
    let mut end = 0u64;
    for &(start, len) in spans {
        push_leb128(out, start.saturating_sub(end));
        push_leb128(out, len);
        end = start.saturating_add(len);
    }
}

fn push_leb128(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn read_leb128(bytes: &[u8], at: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *bytes.get(*at)?;
        *at += 1;
        v |= u64::from(b & 0x7f).checked_shl(shift)?;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// The first byte of the value stored under [`shared_key`]; the lines
/// follow (see `WriteLines::shared_value`).
pub const SHARED_VALUE_HEADER: [u8; 1] = [FORMAT_VERSION];

/// The lines of a shared value.
pub fn shared_lines(value: &[u8]) -> Result<&[u8], DecodeError> {
    let (&version, lines) = value.split_first().ok_or(DecodeError::Empty)?;
    if version != FORMAT_VERSION {
        return Err(DecodeError::Version(version));
    }
    Ok(lines)
}

/// Resolves a [`Record::Shared`] against the shared lines of its append
/// into the [`Record::Points`] value it stands for (byte for byte what
/// [`encode_record`] makes of it). Other records are returned unchanged.
pub fn resolve_shared(record: &Record<'_>, shared: &[u8]) -> Result<Vec<u8>, DecodeError> {
    let Record::Shared {
        db,
        rp,
        points,
        lines,
        spans,
        ..
    } = *record
    else {
        return Ok(encode_record(record));
    };
    let corrupt = |what: &str| DecodeError::Corrupt(format!("shared record: {what}"));
    let total = usize::try_from(lines)
        .ok()
        .filter(|&n| n <= shared.len())
        .ok_or_else(|| corrupt("longer than the shared lines"))?;
    // Exact, so the caller's `into_boxed_slice` does not reallocate.
    let header = points_header_len(db, rp, points, lines) as usize;
    let mut out = Vec::with_capacity(header + total);
    encode_points_header(db, rp, points, lines, &mut out);
    let (mut at, mut end) = (0usize, 0usize);
    while at < spans.len() {
        let (Some(gap), Some(len)) = (read_leb128(spans, &mut at), read_leb128(spans, &mut at))
        else {
            return Err(corrupt("bad span"));
        };
        let span = |v: u64| usize::try_from(v).map_err(|_| corrupt("bad span"));
        let start = end
            .checked_add(span(gap)?)
            .ok_or_else(|| corrupt("bad span"))?;
        end = start
            .checked_add(span(len)?)
            .ok_or_else(|| corrupt("bad span"))?;
        let part = shared
            .get(start..end)
            .ok_or_else(|| corrupt("span out of bounds"))?;
        out.extend_from_slice(part);
    }
    if out.len() != header + total {
        return Err(corrupt("spans do not add up to the recorded length"));
    }
    Ok(out)
}

/// Key of the lines shared by the records of the append `seq`.
pub fn shared_key(seq: u64) -> [u8; KEY_LEN] {
    key(SHARED_PREFIX, 0, seq)
}

/// Decodes a queue value.
pub fn decode_record(value: &[u8]) -> Result<Record<'_>, DecodeError> {
    decode_versioned(value)
}

/// Encodes a dead letter value.
pub fn encode_dead_letter(dead: &DeadLetter<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(dead.value.len() + dead.error.len() + 32);
    encode_versioned(dead, &mut out);
    out
}

/// Decodes a dead letter value.
pub fn decode_dead_letter(value: &[u8]) -> Result<DeadLetter<'_>, DecodeError> {
    decode_versioned(value)
}

/// Builds a queue or dead-letter key.
pub fn key(prefix: u8, backend: u32, seq: u64) -> [u8; KEY_LEN] {
    let mut k = [0u8; KEY_LEN];
    k[0] = prefix;
    k[1..5].copy_from_slice(&backend.to_be_bytes());
    k[5..13].copy_from_slice(&seq.to_be_bytes());
    k
}

/// Splits a queue or dead-letter key into (prefix, backend, seq).
pub fn parse_key(k: &[u8]) -> Option<(u8, u32, u64)> {
    if k.len() != KEY_LEN {
        return None;
    }
    let backend = u32::from_be_bytes(k[1..5].try_into().ok()?);
    let seq = u64::from_be_bytes(k[5..13].try_into().ok()?);
    Some((k[0], backend, seq))
}

/// Key under which a backend name's numeric id is stored.
pub fn meta_key(name: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(9 + name.len());
    k.push(META_PREFIX);
    k.extend_from_slice(b"backend/");
    k.extend_from_slice(name.as_bytes());
    k
}

/// The backend name of a meta key, if it is one.
pub fn parse_meta_key(k: &[u8]) -> Option<&str> {
    let rest = k.strip_prefix(&[META_PREFIX])?.strip_prefix(b"backend/")?;
    std::str::from_utf8(rest).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_record_has_a_pinned_encoding() {
        let r = Record::Points {
            db: "db",
            rp: "",
            points: 1,
            lines: b"m f=1 1\n",
        };
        let bytes = encode_record(&r);
        // version, variant 0, len 2 "db", len 0, points 1, len 8 lines
        let mut expected = vec![1, 0, 2, b'd', b'b', 0, 1, 8];
        expected.extend_from_slice(b"m f=1 1\n");
        assert_eq!(bytes, expected);
        assert_eq!(decode_record(&bytes).unwrap(), r);
    }

    #[test]
    fn shared_record_resolves_to_the_points_record_it_stands_for() {
        let shared = b"a f=1 1\nb f=1 1\na f=2 2\n";
        let mut spans = Vec::new();
        encode_spans(&[(0, 8), (16, 8)], &mut spans);
        assert_eq!(spans, [0, 8, 8, 8]);
        let r = Record::Shared {
            db: "db",
            rp: "rp",
            points: 2,
            lines: 16,
            sharers: 2,
            spans: &spans,
        };
        let expected = encode_record(&Record::Points {
            db: "db",
            rp: "rp",
            points: 2,
            lines: b"a f=1 1\na f=2 2\n",
        });
        let resolved = resolve_shared(&r, shared).unwrap();
        assert_eq!(resolved, expected);
        assert_eq!(resolved.capacity(), resolved.len());
        assert_eq!(r.accounted_len(999), expected.len() as u64);
        let bytes = encode_record(&r);
        assert_eq!(decode_record(&bytes).unwrap(), r);
        assert_eq!(r.points(), 2);
    }

    #[test]
    fn accounted_len_matches_the_points_encoding_across_varint_sizes() {
        for (db, points, lines) in [
            ("d", 1u32, 250usize),
            ("d", 250, 251),
            ("db".repeat(200).as_str(), 251, 65_535),
            ("d", 65_536, 65_536),
        ] {
            let body = vec![b'x'; lines];
            let points_value = encode_record(&Record::Points {
                db,
                rp: "",
                points,
                lines: &body,
            });
            let shared = Record::Shared {
                db,
                rp: "",
                points,
                lines: lines as u64,
                sharers: 1,
                spans: &[],
            };
            assert_eq!(shared.accounted_len(0), points_value.len() as u64);
        }
    }

    #[test]
    fn bad_spans_are_errors_not_panics() {
        let shared = b"m f=1 1\n";
        let record = |spans: &'static [u8], lines: u64| Record::Shared {
            db: "d",
            rp: "",
            points: 1,
            lines,
            sharers: 1,
            spans,
        };
        for (spans, lines) in [
            (&[0u8, 9][..], 9),      // past the end
            (&[0, 4][..], 8),        // shorter than recorded
            (&[0, 0x80][..], 8),     // truncated varint
            (&[0xff; 12][..], 8),    // overlong varint
            (&[0, 8][..], u64::MAX), // absurd length
        ] {
            assert!(
                resolve_shared(&record(spans, lines), shared).is_err(),
                "{spans:?} {lines}"
            );
        }
        assert!(resolve_shared(&record(&[0, 8], 8), shared).is_ok());
        assert!(shared_lines(b"").is_err());
        assert!(matches!(
            shared_lines(b"\x09abc"),
            Err(DecodeError::Version(9))
        ));
    }

    #[test]
    fn statement_record_has_a_pinned_encoding() {
        let r = Record::Statement {
            db: "d",
            query: "DROP MEASUREMENT m",
        };
        let bytes = encode_record(&r);
        assert_eq!(&bytes[..5], &[1, 1, 1, b'd', 18]);
        assert_eq!(decode_record(&bytes).unwrap(), r);
        assert_eq!(r.points(), 0);
    }

    #[test]
    fn dead_letter_round_trips_and_keeps_the_raw_value() {
        let raw = encode_record(&Record::Statement {
            db: "d",
            query: "q",
        });
        let d = DeadLetter {
            status: 400,
            error: "partial write",
            at_unix_ms: 42,
            value: &raw,
        };
        let bytes = encode_dead_letter(&d);
        let back = decode_dead_letter(&bytes).unwrap();
        assert_eq!(back, d);
        assert!(decode_record(back.value).is_ok());
    }

    #[test]
    fn unknown_version_and_garbage_are_errors_not_panics() {
        assert!(matches!(decode_record(&[]), Err(DecodeError::Empty)));
        assert!(matches!(
            decode_record(&[9, 0]),
            Err(DecodeError::Version(9))
        ));
        assert!(matches!(
            decode_record(&[1, 0, 200]),
            Err(DecodeError::Corrupt(_))
        ));
        let mut ok = encode_record(&Record::Statement {
            db: "d",
            query: "q",
        });
        ok.push(0);
        assert!(matches!(decode_record(&ok), Err(DecodeError::Corrupt(_))));
        for len in 0..64u8 {
            let v: Vec<u8> = (0..len).map(|i| i.wrapping_mul(37)).collect();
            let _ = decode_record(&v);
        }
    }

    #[test]
    fn keys_sort_by_backend_then_sequence() {
        let a = key(QUEUE_PREFIX, 1, 255);
        let b = key(QUEUE_PREFIX, 1, 256);
        let c = key(QUEUE_PREFIX, 2, 0);
        assert!(a < b && b < c);
        assert_eq!(parse_key(&b), Some((QUEUE_PREFIX, 1, 256)));
        assert_eq!(parse_key(b"short"), None);
    }

    #[test]
    fn meta_keys_round_trip() {
        let k = meta_key("influxdb-1-1");
        assert_eq!(parse_meta_key(&k), Some("influxdb-1-1"));
        assert_eq!(parse_meta_key(b"q123"), None);
    }
}
