//! Fast path of [`super::parse`] for the lines almost every client sends.
//!
//! # Why
//! Parsing was the largest share of a write request's time on the HTTP worker (about half of
//! the ~1 ms a 5,000-line request spends there), and the full scanner stops at every byte to
//! ask which of a dozen roles it plays. A *plain* line — no quote, backslash or newline, at
//! most [`MAX_LEN`] bytes — has only three separators (space, comma, `=`) and simple values.
//! One SSE2 pass marks separators and digits of the whole line in bitmaps; the line is then
//! walked from separator to separator, and values are checked against the digit bitmap.
//!
//! # Agreement with the full scanner
//! The path accepts a strict subset of what the full scanner accepts: on anything it does not
//! recognise (a tab where a field set starts, unsorted tags, an exponent, a long integer that
//! needs InfluxDB's range check, a negative timestamp, ...) it returns `None` and the full
//! scanner decides, errors included. What it accepts it returns exactly as the full scanner
//! would; `tests::agrees_with_the_full_scanner` checks both on generated and mutated lines.

use std::borrow::Cow;

use super::{scan_time, Line};

/// Longest line the fast path takes (telegraf's lines are ~100-300 bytes); longer lines go to
/// the full scanner, which costs the same per byte for them as before.
pub(super) const MAX_LEN: usize = 512;

/// Bitmap words per line.
const WORDS: usize = MAX_LEN / 64;

/// Bytes scanned per SIMD step.
const BLOCK: usize = 16;

/// Per-byte classes of one line: bit `i % 64` of word `i / 64` stands for byte `i`. Bits past
/// the line's end are clear.
struct Bitmaps {
    /// Space, comma or `=`.
    separator: [u64; WORDS],
    /// ASCII digit.
    digit: [u64; WORDS],
    /// Line length.
    len: usize,
}

/// Classes of one block: separators, digits, and bytes the fast path does not handle
/// (quote, backslash, newline).
struct BlockClasses {
    separator: u16,
    digit: u16,
    special: u16,
}

#[cfg(target_arch = "x86_64")]
fn classify(block: &[u8; BLOCK]) -> BlockClasses {
    use safe_arch::{
        cmp_eq_mask_i8_m128i as eq, load_unaligned_m128i, min_u8_m128i, move_mask_i8_m128i,
        set_splat_i8_m128i as splat, sub_i8_m128i,
    };
    // The casts reinterpret ASCII bytes and 16 mask bits; nothing is lost.
    let byte = |b: u8| splat(b as i8);
    let v = load_unaligned_m128i(block);
    let separator = eq(v, byte(b' ')) | eq(v, byte(b',')) | eq(v, byte(b'='));
    let special = eq(v, byte(b'"')) | eq(v, byte(b'\\')) | eq(v, byte(b'\n'));
    // A digit is a byte whose distance above '0' is at most 9 (unsigned).
    let above_zero = sub_i8_m128i(v, byte(b'0'));
    let digit = eq(min_u8_m128i(above_zero, byte(9)), above_zero);
    let bits = |m| move_mask_i8_m128i(m) as u16;
    BlockClasses {
        separator: bits(separator),
        digit: bits(digit),
        special: bits(special),
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn classify(block: &[u8; BLOCK]) -> BlockClasses {
    let mut classes = BlockClasses {
        separator: 0,
        digit: 0,
        special: 0,
    };
    for (i, &b) in block.iter().enumerate() {
        classes.separator |= u16::from(matches!(b, b' ' | b',' | b'=')) << i;
        classes.digit |= u16::from(b.is_ascii_digit()) << i;
        classes.special |= u16::from(matches!(b, b'"' | b'\\' | b'\n')) << i;
    }
    classes
}

impl Bitmaps {
    /// Classifies `line`; `None` if it is too long or has a byte only the full scanner
    /// handles.
    /// (Filled in place: returning the 136-byte struct cost a `memcpy` call per line.)
    fn fill(&mut self, line: &[u8]) -> Option<()> {
        if line.len() > MAX_LEN {
            return None;
        }
        self.len = line.len();
        let maps = self;
        let (blocks, tail) = line.as_chunks::<BLOCK>();
        for (k, block) in blocks.iter().enumerate() {
            maps.add(k, classify(block))?;
        }
        if !tail.is_empty() {
            // The tail's bits, from a block ending at the line's end (no copy; a line shorter
            // than a block is padded with zeros, which are in no class).
            let shift = BLOCK - tail.len();
            let last = match line.last_chunk::<BLOCK>() {
                Some(last) => *last,
                None => {
                    let mut padded = [0u8; BLOCK];
                    padded[shift..].copy_from_slice(tail);
                    padded
                }
            };
            let classes = classify(&last);
            maps.add(
                blocks.len(),
                BlockClasses {
                    separator: classes.separator >> shift,
                    digit: classes.digit >> shift,
                    special: classes.special >> shift,
                },
            )?;
        }
        Some(())
    }

    /// Adds the classes of block `k`; `None` if it has a byte the fast path does not handle.
    fn add(&mut self, k: usize, classes: BlockClasses) -> Option<()> {
        if classes.special != 0 {
            return None;
        }
        // Four blocks per word.
        let (word, shift) = (k / 4, (k % 4) * BLOCK);
        *self.separator.get_mut(word)? |= u64::from(classes.separator) << shift;
        *self.digit.get_mut(word)? |= u64::from(classes.digit) << shift;
        Some(())
    }

    /// Index of the first separator at or after `from`.
    fn next_separator(&self, from: usize) -> Option<usize> {
        let mut word = from / 64;
        let mut bits = self.separator.get(word)? & (u64::MAX << (from % 64));
        loop {
            if bits != 0 {
                return Some(word * 64 + bits.trailing_zeros() as usize);
            }
            word += 1;
            if word * 64 >= self.len {
                return None;
            }
            bits = *self.separator.get(word)?;
        }
    }

    /// Index of the first byte in `from..to` that is not a digit (`to` at most the length).
    fn first_non_digit(&self, from: usize, to: usize) -> Option<usize> {
        let mut i = from;
        while i < to {
            let (word, offset) = (i / 64, i % 64);
            let span = (to - i).min(64 - offset);
            // Out of range cannot happen (`to` <= length <= MAX_LEN); if it did, it must not
            // read as "all digits".
            let Some(&digits) = self.digit.get(word) else {
                return Some(i);
            };
            let mut others = !digits >> offset;
            if span < 64 {
                others &= (1u64 << span) - 1;
            }
            if others != 0 {
                return Some(i + others.trailing_zeros() as usize);
            }
            i += span;
        }
        None
    }

    /// Whether `from..to` holds digits only.
    fn all_digits(&self, from: usize, to: usize) -> bool {
        self.first_non_digit(from, to).is_none()
    }

    /// The first separator at or after `from` if it is `=` and something comes before it: the
    /// end of a key starting at `from`.
    fn key_end(&self, line: &[u8], from: usize) -> Option<usize> {
        self.next_separator(from)
            .filter(|&eq| eq > from && line[eq] == b'=')
    }
}

/// Parses a plain line, or returns `None` to leave it to the full scanner (module doc).
pub(super) fn scan(line: &[u8]) -> Option<Line<'_>> {
    let mut maps = Bitmaps {
        separator: [0; WORDS],
        digit: [0; WORDS],
        len: 0,
    };
    maps.fill(line)?;
    // Leading whitespace is the full scanner's to skip; a separator first is an error.
    if matches!(line.first(), None | Some(b'\t' | 0)) {
        return None;
    }
    let measurement_end = maps.next_separator(0).filter(|&i| i > 0)?;
    let key_end = match line[measurement_end] {
        b' ' => measurement_end,
        b',' => scan_tags(line, &maps, measurement_end + 1)?,
        _ => return None,
    };
    let fields_end = scan_fields(line, &maps, key_end + 1)?;
    let (timestamp, timestamp_span) = if fields_end == line.len() {
        (None, (fields_end, fields_end))
    } else {
        // Digits up to the end; `scan_time` reads them (and refuses what overflows).
        let digits = fields_end + 1;
        if digits == line.len() || !maps.all_digits(digits, line.len()) {
            return None;
        }
        scan_time(line, fields_end).ok()?
    };
    let raw_measurement = &line[..measurement_end];
    let measurement = std::str::from_utf8(raw_measurement).ok()?;
    Some(Line {
        measurement: Cow::Borrowed(measurement),
        timestamp,
        raw_measurement,
        timestamp_span,
        measurement_end,
        key_end,
        fields_span: (key_end + 1, fields_end),
    })
}

/// Walks the tag set starting at `from` (just past the measurement's comma); returns the index
/// of the space that ends the series key. Tags must be sorted and distinct, as clients send
/// them; anything else is the full scanner's to judge.
fn scan_tags(line: &[u8], maps: &Bitmaps, mut from: usize) -> Option<usize> {
    let mut previous: &[u8] = &[];
    loop {
        let eq = maps.key_end(line, from)?;
        let key = &line[from..eq];
        if !ascending(previous, key) {
            return None;
        }
        previous = key;
        let end = maps.next_separator(eq + 1).filter(|&end| end > eq + 1)?;
        match line[end] {
            b',' => from = end + 1,
            b' ' => return Some(end),
            _ => return None,
        }
    }
}

/// Whether `a < b` byte-wise. A loop, not `<`: tag keys are a few bytes, and the libc
/// `memcmp` behind slice comparison took half of the fast path's time right after its SSE2
/// block (criterion `lines+parse`).
fn ascending(a: &[u8], b: &[u8]) -> bool {
    for (x, y) in a.iter().zip(b) {
        if x != y {
            return x < y;
        }
    }
    a.len() < b.len()
}

/// Walks the field set starting at `from` (just past the key's space); returns where it ends:
/// the space before the timestamp, or the line's end.
fn scan_fields(line: &[u8], maps: &Bitmaps, mut from: usize) -> Option<usize> {
    // InfluxDB skips tabs and NULs here; the full scanner does that.
    if matches!(line.get(from), None | Some(b'\t' | 0)) {
        return None;
    }
    loop {
        let eq = maps.key_end(line, from)?;
        let end = maps.next_separator(eq + 1).unwrap_or(line.len());
        if end == eq + 1 || !plain_value(line, maps, eq + 1, end) {
            return None;
        }
        match line.get(end) {
            None | Some(b' ') => return Some(end),
            Some(b',') => from = end + 1,
            Some(_) => return None,
        }
    }
}

/// Whether `line[from..to]` (non-empty, no separator) is a field value InfluxDB accepts
/// without a range check: an integer `-?D+i` under 19 characters, a float `-?D*.?D*` with at
/// least one digit and under 25 characters, or a boolean.
fn plain_value(line: &[u8], maps: &Bitmaps, from: usize, to: usize) -> bool {
    let value = &line[from..to];
    let first = value[0];
    let digits = from + usize::from(first == b'-');
    if value.last() == Some(&b'i') {
        let suffix = to - 1;
        return digits < suffix && suffix - from < 19 && maps.all_digits(digits, suffix);
    }
    if first == b'-' || first == b'.' || first.is_ascii_digit() {
        if to - from >= 25 {
            return false;
        }
        return match maps.first_non_digit(digits, to) {
            None => digits < to,
            Some(dot) => line[dot] == b'.' && to - digits >= 2 && maps.all_digits(dot + 1, to),
        };
    }
    matches!(
        value,
        b"t" | b"T" | b"true" | b"True" | b"TRUE" | b"f" | b"F" | b"false" | b"False" | b"FALSE"
    )
}

#[cfg(test)]
mod tests {
    use super::super::scan_full;
    use super::*;
    use proptest::prelude::*;

    fn fast(line: &str) -> Option<Line<'_>> {
        scan(line.as_bytes())
    }

    #[test]
    fn takes_typical_lines() {
        for line in [
            "cpu,host=a,region=eu usage_user=1.5,usage_system=2i,up=true 1700000000000000000",
            "cpu value=1",
            "cpu value=-.5,b=F,c=-0012i 0",
            "m,t=v f=5. 1",
        ] {
            let got = fast(line).unwrap_or_else(|| panic!("{line} not taken"));
            assert_eq!(Ok(got), scan_full(line.as_bytes()), "{line}");
        }
        let line = fast("cpu,host=a v=1 123").unwrap();
        assert_eq!(line.measurement, "cpu");
        assert_eq!(line.timestamp, Some(123));
        assert_eq!(line.timestamp_span, (15, 18));
        assert_eq!(fast("cpu v=1").unwrap().timestamp_span, (7, 7));
    }

    #[test]
    fn leaves_the_rest_to_the_full_scanner() {
        for line in [
            "",
            " cpu v=1",
            "\tcpu v=1",
            ",cpu v=1",
            "=cpu v=1",
            "cpu",
            "cpu ",
            "c=pu v=1",
            "cpu,b=1,a=2 v=1",
            "cpu,a=1,a=2 v=1",
            "cpu,a= v=1",
            "cpu,a==1 v=1",
            "cpu,=1 v=1",
            "cpu \tv=1",
            "cpu  v=1",
            "cpu v=\"s\"",
            "cpu\\ x v=1",
            "cpu v=1e5",
            "cpu v=1u",
            "cpu v=1234567890123456789i",
            "cpu v=1.00000000000000000000001",
            "cpu v=NaN",
            "cpu v=i",
            "cpu v=-",
            "cpu v=.",
            "cpu v=1.2.3",
            "cpu v=1,",
            "cpu v=1, w=2",
            "cpu v=1=2",
            "cpu v=1 -5",
            "cpu v=1 5 ",
            "cpu v=1 99999999999999999999",
            "cpu v=1 12a",
            "cpu v=tru",
        ] {
            assert!(fast(line).is_none(), "{line:?} taken");
        }
        let long = format!("cpu v={}", "1".repeat(MAX_LEN));
        assert!(fast(&long).is_none());
    }

    #[test]
    fn bitmaps_cross_word_boundaries() {
        let key = "k".repeat(70);
        let line = format!("m,{key}=v {key}=12345678901234.5,b=1i 1700000000000000000");
        assert!(line.len() > 128);
        assert_eq!(fast(&line), scan_full(line.as_bytes()).ok());
        assert!(fast(&line).is_some());
    }

    /// Lines built from the bytes that matter to the grammar, so that most are nearly valid.
    fn protocol_like() -> impl Strategy<Value = String> {
        "[a-c ,=0-9.\\-itTfF\t\u{0}é]{0,60}"
    }

    /// Valid-looking lines with sorted tags, then one random byte changed.
    fn mutated_points() -> impl Strategy<Value = String> {
        (
            "[a-z]{1,8}",
            prop::collection::btree_map("[a-z]{1,5}", "[a-z0-9]{1,6}", 0..4),
            prop::collection::vec(
                (
                    "[a-z]{1,6}",
                    prop_oneof![
                        "-?[0-9]{1,20}i",
                        "-?[0-9]{0,12}\\.?[0-9]{0,14}",
                        "(t|T|true|True|TRUE|f|F|false|False|FALSE|tru)",
                    ],
                ),
                1..5,
            ),
            prop::option::of("-?[0-9]{1,20}"),
            any::<prop::sample::Index>(),
            "[ ,=0-9a\t.\\-]",
        )
            .prop_map(|(m, tags, fields, ts, at, byte)| {
                let mut line = m;
                for (k, v) in tags {
                    line += &format!(",{k}={v}");
                }
                let fields: Vec<String> = fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
                line += " ";
                line += &fields.join(",");
                if let Some(ts) = ts {
                    line += &format!(" {ts}");
                }
                if !byte.is_empty() && at.index(4) == 0 {
                    let i = at.index(line.len());
                    line.replace_range(i..=i, &byte);
                }
                line
            })
    }

    /// Differential check on generated lines; also asserts that the fast path took a fair
    /// share of them, so that the comparison cannot pass by taking nothing.
    #[test]
    fn agrees_with_the_full_scanner() {
        use proptest::strategy::ValueTree;
        use proptest::test_runner::TestRunner;
        let mut runner = TestRunner::deterministic();
        let (mut taken, mut valid) = (0, 0);
        for (i, strategy) in [protocol_like().boxed(), mutated_points().boxed()]
            .into_iter()
            .enumerate()
        {
            for _ in 0..20_000 {
                let line = strategy.new_tree(&mut runner).unwrap().current();
                let full = scan_full(line.as_bytes());
                valid += usize::from(i == 1 && full.is_ok());
                if let Some(got) = scan(line.as_bytes()) {
                    assert_eq!(Ok(got), full, "{line:?}");
                    taken += usize::from(i == 1);
                }
            }
        }
        assert!(
            taken * 2 > valid,
            "fast path took {taken} of {valid} valid lines"
        );
    }
}
