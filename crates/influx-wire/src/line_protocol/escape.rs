//! Writing names and values into line protocol: the one escaper of the project.
//!
//! Whatever builds lines (Prometheus samples, migrated query answers, tests)
//! escapes through here, so every producer agrees with [`super::parse`] on
//! what a name reads back as. influxd unescapes `\,`, `\ `, `\=` and `\"`
//! only; which of them a part needs is fixed by where it stands in the line.

use std::borrow::Cow;

/// Escaped in a measurement: a comma or space would end it.
const MEASUREMENT: &[char] = &[',', ' '];
/// Escaped in tag keys, tag values and field keys: `=` would also end them.
const KEY: &[char] = &[',', '=', ' '];
/// Escaped inside a string field value's quotes.
const STRING: &[char] = &['"', '\\'];

/// Appends `s` escaped as a measurement.
pub fn measurement_into(out: &mut String, s: &str) {
    escape_into(out, s, MEASUREMENT);
}

/// Appends `s` escaped as a tag key, tag value or field key.
pub fn key_into(out: &mut String, s: &str) {
    escape_into(out, s, KEY);
}

/// Appends `s` escaped for the inside of a string field value's quotes.
pub fn string_into(out: &mut String, s: &str) {
    escape_into(out, s, STRING);
}

/// `s` escaped as a measurement (borrowed when nothing needs escaping).
pub fn measurement(s: &str) -> Cow<'_, str> {
    escaped(s, MEASUREMENT)
}

/// `s` escaped as a tag key, tag value or field key.
pub fn key(s: &str) -> Cow<'_, str> {
    escaped(s, KEY)
}

/// `s` escaped for the inside of a string field value's quotes.
pub fn string(s: &str) -> Cow<'_, str> {
    escaped(s, STRING)
}

fn escaped<'a>(s: &'a str, special: &[char]) -> Cow<'a, str> {
    if !s.contains(special) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    escape_into(&mut out, s, special);
    Cow::Owned(out)
}

fn escape_into(out: &mut String, s: &str, special: &[char]) {
    if !s.contains(special) {
        out.push_str(s);
        return;
    }
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
    use crate::line_protocol::parse;

    #[test]
    fn each_part_escapes_what_would_end_it() {
        assert_eq!(measurement("a b,c=d"), "a\\ b\\,c=d");
        assert_eq!(key("a b,c=d"), "a\\ b\\,c\\=d");
        assert_eq!(string("say \"hi\" \\o/"), "say \\\"hi\\\" \\\\o/");
        assert!(matches!(measurement("plain"), Cow::Borrowed(_)));
    }

    #[test]
    fn what_is_written_parses_back_to_the_same_names() {
        for name in ["cpu", "a b", "x,y", "k=v", "=, ="] {
            let line = format!(
                "{},{}={} {}=\"{}\" 1",
                measurement(name),
                key(name),
                key(name),
                key(name),
                string(name)
            );
            let parsed = parse(line.as_bytes()).unwrap();
            assert_eq!(parsed.measurement, name, "{line}");
        }
    }
}
