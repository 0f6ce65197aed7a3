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
}

impl Record<'_> {
    /// Number of points the record carries (statements count as zero).
    pub fn points(&self) -> u64 {
        match self {
            Record::Points { points, .. } => u64::from(*points),
            Record::Statement { .. } => 0,
        }
    }
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
    };
    let mut out = Vec::with_capacity(payload + 64);
    encode_versioned(record, &mut out);
    out
}

/// A points record assembled in place, so the finished queue value needs no
/// copy of its lines: they are appended after room left for the header,
/// and [`PointsBuilder::finish`] writes the header right in front of them.
/// The value is byte for byte what [`encode_record`] makes of the same
/// [`Record::Points`]; for a 5,000-line request this saves one copy and one
/// fresh allocation per backend (the page faults of which cost more than
/// the copy on the VMs we measured).
#[derive(Debug)]
pub struct PointsBuilder<'a> {
    bytes: Vec<u8>,
    db: &'a str,
    rp: &'a str,
    points: u32,
}

/// Longest bincode varint of a `u32` and of a `u64`/`usize`.
const VARINT_U32_MAX: usize = 5;
const VARINT_U64_MAX: usize = 9;

/// Bytes reserved in front of the lines: the longest header a record of
/// `db` and `rp` can have (version, variant, db, rp, points, lines length).
fn header_room(db: &str, rp: &str) -> usize {
    1 + VARINT_U32_MAX
        + VARINT_U64_MAX
        + db.len()
        + VARINT_U64_MAX
        + rp.len()
        + VARINT_U32_MAX
        + VARINT_U64_MAX
}

impl<'a> PointsBuilder<'a> {
    /// A builder for a record of `db` and `rp` that reuses `buf` (its
    /// contents are discarded, its capacity kept).
    pub fn reusing(mut buf: Vec<u8>, db: &'a str, rp: &'a str) -> PointsBuilder<'a> {
        buf.clear();
        buf.resize(header_room(db, rp), 0);
        PointsBuilder {
            bytes: buf,
            db,
            rp,
            points: 0,
        }
    }

    /// Appends one line, which must end in `\n`.
    pub fn push_line(&mut self, line: &[u8]) {
        self.bytes.extend_from_slice(line);
        self.points = self.points.saturating_add(1);
    }

    /// Number of lines pushed.
    pub fn points(&self) -> u32 {
        self.points
    }

    /// Writes the header in front of the lines and returns the finished
    /// value.
    pub fn finish(&mut self) -> &[u8] {
        let room = header_room(self.db, self.rp);
        let lines = (self.bytes.len() - room) as u64;
        let mut header = Vec::with_capacity(room);
        // Field by field as `#[derive(Encode)]` writes `Record::Points`:
        // variant index, then the fields in declaration order.
        encode_versioned(&(0u32, self.db, self.rp, self.points, lines), &mut header);
        let Some(start) = room.checked_sub(header.len()) else {
            // Unreachable: the room is computed from the varint maxima.
            // Stay correct (one copy) rather than panic.
            self.bytes.splice(..room, header);
            return &self.bytes;
        };
        self.bytes[start..room].copy_from_slice(&header);
        &self.bytes[start..]
    }

    /// The buffer, for reuse.
    pub fn into_vec(self) -> Vec<u8> {
        self.bytes
    }
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
    fn points_builder_matches_the_derived_encoding() {
        let line = b"cpu,host=a value=1 1\n";
        for (db, rp, lines) in [
            ("db", "", 0usize),
            ("db", "", 1),
            ("telegraf", "autogen", 11),
            ("d", "rp", 12),
            ("d", "", 3_000),
            ("d", "", 400_000),
        ] {
            let mut body = Vec::new();
            let mut b = PointsBuilder::reusing(b"stale contents".to_vec(), db, rp);
            for _ in 0..lines {
                b.push_line(line);
                body.extend_from_slice(line);
            }
            let expected = encode_record(&Record::Points {
                db,
                rp,
                points: lines as u32,
                lines: &body,
            });
            assert_eq!(b.finish(), &expected[..], "{db}/{rp} x{lines}");
            assert_eq!(b.points(), lines as u32);
        }
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
