//! What a valid line says about the schema: its field keys with their types, and whether its
//! tag set has a `time` key. influxd's storage refuses points on these grounds after parsing
//! (`invalid tag key`, `invalid field name`, `field type conflict`); the write path checks them
//! before acknowledging (the proxy's `schema`).

use std::borrow::Cow;
use std::sync::LazyLock;

use memchr::memmem;

use super::{field_value_len, unescape, unescaped_position, Line};

/// The type influxd gives a field value. Decided by the value's first byte and suffix alone,
/// since the line was validated already.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FieldType {
    /// `1`, `1.5`, `-2e3`.
    Float,
    /// `1i`.
    Integer,
    /// `1u`.
    Unsigned,
    /// `"text"`.
    String,
    /// `t`, `true`, `F`, ...
    Boolean,
}

impl FieldType {
    /// The name influxd uses in `SHOW FIELD KEYS` and in its error messages.
    pub fn name(self) -> &'static str {
        match self {
            FieldType::Float => "float",
            FieldType::Integer => "integer",
            FieldType::Unsigned => "unsigned",
            FieldType::String => "string",
            FieldType::Boolean => "boolean",
        }
    }

    /// The type `SHOW FIELD KEYS` names `name`.
    pub fn from_name(name: &str) -> Option<FieldType> {
        Some(match name {
            "float" => FieldType::Float,
            "integer" => FieldType::Integer,
            "unsigned" => FieldType::Unsigned,
            "string" => FieldType::String,
            "boolean" => FieldType::Boolean,
            _ => return None,
        })
    }

    fn of_value(value: &[u8]) -> FieldType {
        match (value.first(), value.last()) {
            (Some(b'"'), _) => FieldType::String,
            (Some(b't' | b'T' | b'f' | b'F'), _) => FieldType::Boolean,
            (_, Some(b'i')) => FieldType::Integer,
            (_, Some(b'u')) => FieldType::Unsigned,
            _ => FieldType::Float,
        }
    }
}

/// The fields of a valid line, in order: key as influxd stores it, and type.
#[derive(Debug)]
pub struct Fields<'l> {
    rest: &'l [u8],
}

impl<'l> Iterator for Fields<'l> {
    type Item = (Cow<'l, [u8]>, FieldType);

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let eq = unescaped_position(self.rest, b'=');
        let key = unescape_key(self.rest.get(..eq)?);
        let value = self.rest.get(eq + 1..).unwrap_or_default();
        let len = field_value_len(value);
        let kind = FieldType::of_value(&value[..len.min(value.len())]);
        self.rest = value.get(len + 1..).unwrap_or_default();
        Some((key, kind))
    }
}

/// The fields of a valid line as written: each `key=value` cut at the `=`, escapes and quotes
/// kept (anti-entropy compares and rewrites them field by field).
#[derive(Debug)]
pub struct RawFields<'l> {
    rest: &'l [u8],
}

impl<'l> Iterator for RawFields<'l> {
    type Item = (&'l [u8], &'l [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let eq = unescaped_position(self.rest, b'=');
        let key = self.rest.get(..eq)?;
        let value = self.rest.get(eq + 1..).unwrap_or_default();
        let len = field_value_len(value).min(value.len());
        self.rest = value.get(len + 1..).unwrap_or_default();
        Some((key, &value[..len]))
    }
}

impl<'a> Line<'a> {
    /// The series key (measurement and tags, as written) of `line`, the bytes this was parsed
    /// from.
    pub fn series<'l>(&self, line: &'l [u8]) -> &'l [u8] {
        line.get(..self.key_end).unwrap_or_default()
    }

    /// The fields of `line` (the bytes this was parsed from) as written.
    pub fn raw_fields<'l>(&self, line: &'l [u8]) -> RawFields<'l> {
        let (start, end) = self.fields_span;
        RawFields {
            rest: line.get(start..end).unwrap_or_default(),
        }
    }

    /// The fields of `line`, which must be the bytes this was parsed from.
    pub fn fields<'l>(&self, line: &'l [u8]) -> Fields<'l> {
        let (start, end) = self.fields_span;
        Fields {
            rest: line.get(start..end).unwrap_or_default(),
        }
    }

    /// Whether the tag set of `line` (the bytes this was parsed from) has the key `time`, which
    /// influxd refuses (`invalid tag key`).
    pub fn has_time_tag(&self, line: &[u8]) -> bool {
        let Some(tags) = line.get(self.measurement_end + 1..self.key_end) else {
            return false;
        };
        // Almost no line has one: a single search spares the split. The searcher is built once:
        // `memmem::find` builds one per call, which cost more than the search on short tag sets.
        static TIME_KEY: LazyLock<memmem::Finder<'static>> =
            LazyLock::new(|| memmem::Finder::new(b"time="));
        if TIME_KEY.find(tags).is_none() {
            return false;
        }
        let mut rest = tags;
        while !rest.is_empty() {
            let comma = unescaped_position(rest, b',');
            let tag = &rest[..comma];
            let eq = unescaped_position(tag, b'=');
            if &*unescape_key(&tag[..eq]) == b"time" {
                return true;
            }
            rest = rest.get(comma + 1..).unwrap_or_default();
        }
        false
    }

    /// The value of tag `key` (compared as influxd stores keys) in `line` (the bytes this was
    /// parsed from), unescaped as influxd stores tag values; `None` when the line has no such
    /// tag. For rules that look at one tag of a line.
    pub fn tag_value<'l>(&self, line: &'l [u8], key: &[u8]) -> Option<Cow<'l, [u8]>> {
        let mut rest = line.get(self.measurement_end + 1..self.key_end)?;
        while !rest.is_empty() {
            let comma = unescaped_position(rest, b',');
            let tag = &rest[..comma];
            let eq = unescaped_position(tag, b'=');
            if &*unescape_key(&tag[..eq]) == key {
                return Some(unescape(tag.get(eq + 1..).unwrap_or_default(), b", ="));
            }
            rest = rest.get(comma + 1..).unwrap_or_default();
        }
        None
    }
}

/// A key as influxd stores it: `\,`, `\ `, `\=` and `\"` lose their backslash (its
/// `escape.Unescape`); other backslashes stay.
fn unescape_key(key: &[u8]) -> Cow<'_, [u8]> {
    unescape(key, b", =\"")
}

#[cfg(test)]
mod tests {
    use super::super::parse;
    use super::*;

    fn fields_of(line: &str) -> Vec<(String, FieldType)> {
        let parsed = parse(line.as_bytes()).unwrap();
        parsed
            .fields(line.as_bytes())
            .map(|(k, t)| (String::from_utf8(k.into_owned()).unwrap(), t))
            .collect()
    }

    #[test]
    fn raw_fields_keep_escapes_and_quotes() {
        let line = r#"m\ x,t=a\,b k\=1=1,s="x,y=\"z",b=t 10"#;
        let parsed = parse(line.as_bytes()).unwrap();
        let raw: Vec<(&[u8], &[u8])> = parsed.raw_fields(line.as_bytes()).collect();
        assert_eq!(
            raw,
            vec![
                (&br"k\=1"[..], &b"1"[..]),
                (&b"s"[..], &br#""x,y=\"z""#[..]),
                (&b"b"[..], &b"t"[..])
            ]
        );
        assert_eq!(parsed.series(line.as_bytes()), br"m\ x,t=a\,b");
    }

    #[test]
    fn fields_have_influxd_types() {
        use FieldType::*;
        assert_eq!(
            fields_of("m a=1,b=2i,c=\"x,y=z\",d=t,e=FALSE,f=-1.5e3 10"),
            vec![
                ("a".into(), Float),
                ("b".into(), Integer),
                ("c".into(), String),
                ("d".into(), Boolean),
                ("e".into(), Boolean),
                ("f".into(), Float),
            ]
        );
        // The full scanner and the fast path give the same spans.
        assert_eq!(fields_of("m,t=a b=1i"), vec![("b".into(), Integer)]);
        assert_eq!(
            fields_of("m\\ x,t=a\\ b s=\"q\\\"uote\",n=1"),
            vec![("s".into(), String), ("n".into(), Float)]
        );
    }

    #[test]
    fn field_keys_are_unescaped_as_influxd_stores_them() {
        let got: Vec<String> = fields_of(r#"esc a\ b=1,c\,d=2,e\=f=3,g\"h=4,i\\j=5 1"#)
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(got, ["a b", "c,d", "e=f", "g\"h", "i\\\\j"]);
    }

    #[test]
    fn time_tag_is_found_only_as_a_key() {
        let has = |l: &str| parse(l.as_bytes()).unwrap().has_time_tag(l.as_bytes());
        assert!(has("m,time=a f=1"));
        assert!(has("m,a=1,time=b f=1 5"));
        assert!(!has("m,ti\\me=a f=1"));
        assert!(!has("m,xtime=a f=1"));
        assert!(!has("m,a=xtime f=1"));
        assert!(!has("m time=1"));
        assert!(!has("time f=1"));
    }
}
