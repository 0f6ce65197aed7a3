//! Chunks of a `SELECT *` answer turned back into line protocol.
//!
//! InfluxDB answers a chunked query with one JSON document per line,
//! `{"results":[{"series":[{"name","tags","columns","values"}]}]}`. The
//! envelope is read with serde; `values`, where nearly all the bytes are, is
//! only borrowed (`RawValue`) and scanned by hand, so a cell costs a few
//! byte comparisons and copies: numbers and booleans are written as the JSON
//! text InfluxDB sent (what the Go proxy does), strings are copied (and
//! escaped) only when needed, and nothing is allocated per row.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::Value;

use crate::backend::catalog::Columns;
use crate::line_protocol::escape;

/// Why a chunk could not be converted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ChunkError {
    /// InfluxDB answered with an error.
    #[error("{0}")]
    Answer(String),
    /// Not InfluxDB's JSON.
    #[error("{0}")]
    Json(String),
}

/// What a column of a chunk series is, worked out once per series.
#[derive(Debug, Clone)]
enum Role {
    /// The first column, `time` (an integer with `epoch=ns`).
    Time,
    /// A tag: the index of its value slot.
    Tag(usize),
    /// A field: its escaped key followed by `=`, and its type.
    Field { key: String, ty: ColumnType },
    /// Neither (a column the schema does not know).
    Skip,
}

/// Field types as `SHOW FIELD KEYS` names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ColumnType {
    Float,
    Integer,
    Other,
}

/// One piece of a line's tag set, in key order.
#[derive(Debug, Clone)]
enum TagPart {
    /// `,key=value` of a tag the series carries for all its rows (`tags`).
    Fixed(String),
    /// `,key=` and the value slot of a tag column.
    Column(String, usize),
}

/// Turns the rows of chunk series into line protocol.
struct Converter<'a> {
    schema: &'a Columns,
    /// The escaped measurement.
    head: String,
    out: &'a mut String,
    written: usize,
    /// An error InfluxDB put into the answer.
    error: Option<String>,
    // Per series.
    roles: Vec<Role>,
    tag_parts: Vec<TagPart>,
    // Per row.
    time: String,
    has_time: bool,
    fields: String,
    tag_values: String,
    /// Byte range in `tag_values` of each tag slot (empty: no value).
    tag_slots: Vec<(usize, usize)>,
}

impl<'a> Converter<'a> {
    fn new(measurement: &str, schema: &'a Columns, out: &'a mut String) -> Converter<'a> {
        let mut head = String::new();
        escape::measurement_into(&mut head, measurement);
        Converter {
            schema,
            head,
            out,
            written: 0,
            error: None,
            roles: Vec::new(),
            tag_parts: Vec::new(),
            time: String::new(),
            has_time: false,
            fields: String::new(),
            tag_values: String::new(),
            tag_slots: Vec::new(),
        }
    }

    /// Works out the role of every column, and the order of the tags (the
    /// series' own `tags` included).
    fn set_columns(&mut self, columns: &[String], series_tags: &[(String, String)]) {
        let mut tags: Vec<(&str, Option<&str>, usize)> = series_tags
            .iter()
            .map(|(k, v)| (k.as_str(), Some(v.as_str()), 0))
            .collect();
        self.roles.clear();
        let mut slots = 0;
        for (i, col) in columns.iter().enumerate() {
            let role = if col == "time" && i == 0 {
                Role::Time
            } else if let Some(ty) = self.schema.fields.get(col.as_str()) {
                let mut key = String::new();
                escape::key_into(&mut key, col);
                key.push('=');
                let ty = match ty.as_str() {
                    "float" => ColumnType::Float,
                    "integer" => ColumnType::Integer,
                    _ => ColumnType::Other,
                };
                Role::Field { key, ty }
            } else if self.schema.tags.contains(col.as_str()) {
                tags.push((col.as_str(), None, slots));
                slots += 1;
                Role::Tag(slots - 1)
            } else {
                Role::Skip
            };
            self.roles.push(role);
        }
        tags.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        self.tag_parts = tags
            .into_iter()
            .map(|(k, fixed, slot)| {
                let mut part = String::from(",");
                escape::key_into(&mut part, k);
                part.push('=');
                match fixed {
                    Some(v) => {
                        escape::key_into(&mut part, v);
                        TagPart::Fixed(part)
                    }
                    None => TagPart::Column(part, slot),
                }
            })
            .collect();
        self.tag_slots.clear();
        self.tag_slots.resize(slots, (0, 0));
    }

    fn start_row(&mut self) {
        self.has_time = false;
        self.time.clear();
        self.fields.clear();
        self.tag_values.clear();
        self.tag_slots.fill((0, 0));
    }

    /// Writes the row's line; rows without a time or without any field
    /// value are skipped (they cannot be written).
    fn finish_row(&mut self) {
        if !self.has_time || self.fields.is_empty() {
            return;
        }
        let out = &mut *self.out;
        out.push_str(&self.head);
        for part in &self.tag_parts {
            match part {
                TagPart::Fixed(p) => out.push_str(p),
                TagPart::Column(p, slot) => {
                    if let Some(v) = self
                        .tag_slots
                        .get(*slot)
                        .and_then(|&(a, b)| self.tag_values.get(a..b))
                        .filter(|v| !v.is_empty())
                    {
                        out.push_str(p);
                        out.push_str(v);
                    }
                }
            }
        }
        out.push(' ');
        out.push_str(&self.fields);
        out.push(' ');
        out.push_str(&self.time);
        out.push('\n');
        self.written += 1;
    }

    /// Starts a field value (separator and key); `None` if the column is not
    /// a field.
    fn field_key(&mut self, column: usize) -> Option<ColumnType> {
        let Some(Role::Field { key, ty }) = self.roles.get(column) else {
            return None;
        };
        if !self.fields.is_empty() {
            self.fields.push(',');
        }
        self.fields.push_str(key);
        Some(*ty)
    }

    fn cell_str(&mut self, column: usize, v: &str) {
        match self.roles.get(column) {
            Some(Role::Tag(slot)) => {
                let slot = *slot;
                if !v.is_empty() {
                    let a = self.tag_values.len();
                    escape::key_into(&mut self.tag_values, v);
                    if let Some(s) = self.tag_slots.get_mut(slot) {
                        *s = (a, self.tag_values.len());
                    }
                }
            }
            Some(Role::Field { .. }) => {
                self.field_key(column);
                self.fields.push('"');
                escape::string_into(&mut self.fields, v);
                self.fields.push('"');
            }
            _ => {}
        }
    }

    fn cell_bool(&mut self, column: usize, v: bool) {
        if self.field_key(column).is_some() {
            self.fields.push_str(if v { "true" } else { "false" });
        }
    }

    /// A JSON number, as InfluxDB wrote it.
    fn cell_number(&mut self, column: usize, text: &str) {
        match self.roles.get(column) {
            Some(Role::Time) if fits_i64(text) => {
                self.time.push_str(text);
                self.has_time = true;
            }
            Some(Role::Field { .. }) => {
                if self.field_key(column) == Some(ColumnType::Integer) {
                    if fits_i64(text) {
                        self.fields.push_str(text);
                    } else {
                        // Out of range or not an integer: saturated, as Go's float64 to
                        // int64 conversion.
                        let v = text.parse::<f64>().map_or(0, |f| f as i64);
                        let _ = write!(self.fields, "{v}");
                    }
                    self.fields.push('i');
                } else {
                    self.fields.push_str(text);
                }
            }
            _ => {}
        }
    }

    /// A field holding an array or an object: written as its JSON text,
    /// quoted.
    fn cell_other(&mut self, column: usize, json: &str) {
        if self.field_key(column).is_some() {
            self.fields.push('"');
            escape::string_into(&mut self.fields, json);
            self.fields.push('"');
        }
    }
}

/// Whether a JSON number is an integer that fits an i64 (JSON numbers have
/// no leading zeros, so digit strings of one length compare as numbers).
fn fits_i64(text: &str) -> bool {
    let (digits, max) = match text.strip_prefix('-') {
        Some(d) => (d, "9223372036854775808"),
        None => (text, "9223372036854775807"),
    };
    !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits.len() < max.len() || (digits.len() == max.len() && digits <= max))
}

/// A hand-written reader of `values` (valid JSON: serde_json checked it
/// when it borrowed the text). Malformed input is an error, never a panic.
struct Scan<'s> {
    text: &'s str,
    at: usize,
}

impl<'s> Scan<'s> {
    fn bad(&self) -> ChunkError {
        ChunkError::Json(format!("unexpected input at byte {} of values", self.at))
    }

    fn skip_ws(&mut self) {
        let bytes = self.text.as_bytes();
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = bytes.get(self.at) {
            self.at += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.skip_ws();
        self.text.as_bytes().get(self.at).copied()
    }

    fn literal(&mut self, word: &str) -> Result<(), ChunkError> {
        if self.text.get(self.at..self.at + word.len()) == Some(word) {
            self.at += word.len();
            Ok(())
        } else {
            Err(self.bad())
        }
    }

    /// After an element of an array: `true` at its `]`, `false` at a `,`.
    fn array_end(&mut self) -> Result<bool, ChunkError> {
        match self.peek() {
            Some(b',') => {
                self.at += 1;
                Ok(false)
            }
            Some(b']') => {
                self.at += 1;
                Ok(true)
            }
            _ => Err(self.bad()),
        }
    }

    /// A string token at `at` (its `"`): the text between the quotes and
    /// whether it holds escapes.
    fn string(&mut self) -> Result<(&'s str, bool), ChunkError> {
        let start = self.at + 1;
        let bytes = self.text.as_bytes();
        let mut i = start;
        let mut escaped = false;
        loop {
            let rest = bytes.get(i..).ok_or_else(|| self.bad())?;
            match memchr::memchr2(b'"', b'\\', rest) {
                Some(k) if rest.get(k) == Some(&b'"') => {
                    let end = i + k;
                    self.at = end + 1;
                    let inner = self.text.get(start..end).ok_or_else(|| self.bad())?;
                    return Ok((inner, escaped));
                }
                Some(k) => {
                    escaped = true;
                    i += k + 2;
                }
                None => return Err(self.bad()),
            }
        }
    }

    /// A number token at `at`.
    fn number(&mut self) -> Result<&'s str, ChunkError> {
        let start = self.at;
        let bytes = self.text.as_bytes();
        while let Some(b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E') = bytes.get(self.at) {
            self.at += 1;
        }
        self.text.get(start..self.at).ok_or_else(|| self.bad())
    }

    /// An array or object at `at`, whole (nested values are rare: they are
    /// not InfluxDB field types).
    fn compound(&mut self) -> Result<&'s str, ChunkError> {
        let start = self.at;
        let mut depth = 0usize;
        loop {
            match self.peek() {
                Some(b'[' | b'{') => {
                    depth += 1;
                    self.at += 1;
                }
                Some(b']' | b'}') => {
                    depth = depth.saturating_sub(1);
                    self.at += 1;
                    if depth == 0 {
                        return self.text.get(start..self.at).ok_or_else(|| self.bad());
                    }
                }
                Some(b'"') => {
                    self.string()?;
                }
                Some(_) => self.at += 1,
                None => return Err(self.bad()),
            }
        }
    }

    /// One cell of `column`.
    fn cell(&mut self, conv: &mut Converter<'_>, column: usize) -> Result<(), ChunkError> {
        match self.peek() {
            Some(b'"') => {
                let start = self.at;
                let (inner, escaped) = self.string()?;
                if escaped {
                    let decoded: String = self
                        .text
                        .get(start..self.at)
                        .and_then(|quoted| serde_json::from_str(quoted).ok())
                        .ok_or_else(|| self.bad())?;
                    conv.cell_str(column, &decoded);
                } else {
                    conv.cell_str(column, inner);
                }
            }
            Some(b't') => {
                self.literal("true")?;
                conv.cell_bool(column, true);
            }
            Some(b'f') => {
                self.literal("false")?;
                conv.cell_bool(column, false);
            }
            Some(b'n') => self.literal("null")?,
            Some(b'-' | b'0'..=b'9') => {
                let text = self.number()?;
                conv.cell_number(column, text);
            }
            Some(b'[' | b'{') => {
                let json = self.compound()?;
                // Compact, as InfluxDB would have written it.
                let v: Value = serde_json::from_str(json).map_err(|_| self.bad())?;
                conv.cell_other(column, &v.to_string());
            }
            _ => return Err(self.bad()),
        }
        Ok(())
    }

    /// One row at `at` (its `[`).
    fn row(&mut self, conv: &mut Converter<'_>) -> Result<(), ChunkError> {
        self.at += 1;
        conv.start_row();
        if self.peek() == Some(b']') {
            self.at += 1;
        } else {
            let mut column = 0;
            loop {
                self.cell(conv, column)?;
                column += 1;
                if self.array_end()? {
                    break;
                }
            }
        }
        conv.finish_row();
        Ok(())
    }

    /// `values`: an array of rows, or null.
    fn rows(&mut self, conv: &mut Converter<'_>) -> Result<(), ChunkError> {
        match self.peek() {
            Some(b'n') => return self.literal("null"),
            Some(b'[') => self.at += 1,
            _ => return Err(self.bad()),
        }
        if self.peek() == Some(b']') {
            self.at += 1;
            return Ok(());
        }
        loop {
            match self.peek() {
                Some(b'[') => self.row(conv)?,
                Some(b'n') => self.literal("null")?,
                // Not a row: skipped, as a row that is not an array always was.
                _ => self.cell(conv, usize::MAX)?,
            }
            if self.array_end()? {
                return Ok(());
            }
        }
    }
}

/// Reads a map with `f` called for every key (the value not read yet).
fn each_key<'de, A, F>(mut map: A, mut f: F) -> Result<(), A::Error>
where
    A: MapAccess<'de>,
    F: FnMut(&str, &mut A) -> Result<(), A::Error>,
{
    while let Some(key) = map.next_key::<Cow<'de, str>>()? {
        f(&key, &mut map)?;
    }
    Ok(())
}

/// The parts of one series the conversion needs.
#[derive(Default)]
struct SeriesParts<'de> {
    tags: Vec<(String, String)>,
    columns: Vec<String>,
    values: Option<&'de RawValue>,
}

struct SeriesVisitor;

impl<'de> Visitor<'de> for SeriesVisitor {
    type Value = SeriesParts<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a series")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<SeriesParts<'de>, A::Error> {
        let mut parts = SeriesParts::default();
        each_key(map, |key, map| {
            match key {
                "tags" => {
                    let tags: Option<BTreeMap<String, Value>> = map.next_value()?;
                    parts.tags = tags
                        .into_iter()
                        .flatten()
                        .filter_map(|(k, v)| Some((k, v.as_str()?.to_string())))
                        .collect();
                }
                "columns" => {
                    let list: Option<Vec<Value>> = map.next_value()?;
                    parts.columns = list
                        .into_iter()
                        .flatten()
                        .map(|c| match c {
                            Value::String(s) => s,
                            _ => String::new(),
                        })
                        .collect();
                }
                "values" => parts.values = Some(map.next_value()?),
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            Ok(())
        })?;
        Ok(parts)
    }
}

/// `series` of the first result: every series converted as soon as it is
/// read (its `values` only borrowed).
struct SeriesList<'c, 'a>(&'c mut Converter<'a>);

impl<'de> DeserializeSeed<'de> for SeriesList<'_, '_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for SeriesList<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a list of series")
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(parts) = seq.next_element_seed(SeriesSeed)? {
            convert_series(self.0, &parts).map_err(serde::de::Error::custom)?;
        }
        Ok(())
    }
}

struct SeriesSeed;

impl<'de> DeserializeSeed<'de> for SeriesSeed {
    type Value = SeriesParts<'de>;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<SeriesParts<'de>, D::Error> {
        d.deserialize_map(SeriesVisitor)
    }
}

fn convert_series(conv: &mut Converter<'_>, parts: &SeriesParts<'_>) -> Result<(), ChunkError> {
    conv.set_columns(&parts.columns, &parts.tags);
    if let Some(values) = parts.values {
        Scan {
            text: values.get(),
            at: 0,
        }
        .rows(conv)?;
    }
    Ok(())
}

/// One statement result (only the first is converted; the copy sends one
/// statement).
struct ResultSeed<'c, 'a> {
    conv: &'c mut Converter<'a>,
    first: bool,
}

impl<'de> DeserializeSeed<'de> for ResultSeed<'_, '_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        if self.first {
            d.deserialize_map(self)
        } else {
            d.deserialize_ignored_any(IgnoredAny).map(drop)
        }
    }
}

impl<'de> Visitor<'de> for ResultSeed<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a statement result")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        let conv = self.conv;
        each_key(map, |key, map| {
            match key {
                "series" => map.next_value_seed(SeriesList(&mut *conv))?,
                "error" => {
                    if let Value::String(e) = map.next_value()? {
                        conv.error.get_or_insert(e);
                    }
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            Ok(())
        })
    }
}

/// `results`.
struct Results<'c, 'a>(&'c mut Converter<'a>);

impl<'de> DeserializeSeed<'de> for Results<'_, '_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Results<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a list of results")
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut first = true;
        while seq
            .next_element_seed(ResultSeed {
                conv: &mut *self.0,
                first,
            })?
            .is_some()
        {
            first = false;
        }
        Ok(())
    }
}

/// A whole answer: `results` and a top-level `error`.
struct Answer<'c, 'a>(&'c mut Converter<'a>);

impl<'de> DeserializeSeed<'de> for Answer<'_, '_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Answer<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a query answer")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        let conv = self.0;
        each_key(map, |key, map| {
            match key {
                "results" => map.next_value_seed(Results(&mut *conv))?,
                "error" => {
                    if let Value::String(e) = map.next_value()? {
                        conv.error = Some(e);
                    }
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            Ok(())
        })
    }
}

/// Converts one chunk (`{"results":[...]}`, one line of a chunked answer)
/// and appends its lines to `out`; returns how many. Rows without a time or
/// without any field value are skipped (they cannot be written).
pub(crate) fn convert_chunk(
    chunk: &[u8],
    measurement: &str,
    schema: &Columns,
    out: &mut String,
) -> Result<usize, ChunkError> {
    let text = chunk.trim_ascii();
    if text.is_empty() {
        return Ok(0);
    }
    let before = out.len();
    let mut conv = Converter::new(measurement, schema, out);
    let mut de = serde_json::Deserializer::from_slice(text);
    let parsed = Answer(&mut conv)
        .deserialize(&mut de)
        .and_then(|()| de.end())
        .map_err(|e| ChunkError::Json(e.to_string()));
    let result = match (parsed, conv.error) {
        (Err(e), _) => Err(e),
        (Ok(()), Some(e)) => Err(ChunkError::Answer(e)),
        (Ok(()), None) => Ok(conv.written),
    };
    if result.is_err() {
        // A chunk converts whole or not at all.
        out.truncate(before);
    }
    result
}

/// Appends the line-protocol form of every row of one chunk series (as
/// JSON) to `out`; returns the number of lines written.
#[cfg(test)]
fn series_to_lines(
    measurement: &str,
    series: &Value,
    schema: &Columns,
    out: &mut String,
) -> Result<usize, ChunkError> {
    let text = series.to_string();
    let mut conv = Converter::new(measurement, schema, out);
    let mut de = serde_json::Deserializer::from_str(&text);
    let parts = SeriesSeed
        .deserialize(&mut de)
        .map_err(|e| ChunkError::Json(e.to_string()))?;
    convert_series(&mut conv, &parts)?;
    Ok(conv.written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Columns {
        Columns::from_answers(
            &json!({"results":[{"series":[{"name":"m","columns":["tagKey"],"values":[["host"],["re gion"]]}]}]}),
            &json!({"results":[{"series":[{"name":"m","columns":["fieldKey","fieldType"],"values":[["f","float"],["i","integer"],["s","string"],["b","boolean"],["x","integer"],["x","float"]]}]}]}),
        )
    }

    fn convert(chunk: &str) -> (usize, Vec<String>) {
        let mut out = String::new();
        let n = convert_chunk(chunk.as_bytes(), "m", &schema(), &mut out)
            .unwrap_or_else(|e| panic!("{e}: {chunk}"));
        let lines: Vec<String> = out.lines().map(str::to_string).collect();
        for l in &lines {
            assert!(crate::line_protocol::parse(l.as_bytes()).is_ok(), "{l}");
        }
        (n, lines)
    }

    #[test]
    fn a_field_with_several_types_keeps_the_first_of_float_integer_string_boolean() {
        assert_eq!(schema().fields["x"], "float");
        assert_eq!(schema().fields["i"], "integer");
    }

    #[test]
    fn rows_become_lines_that_keep_types_tags_and_escapes() {
        let series = json!({"name":"m","columns":["time","b","f","host","i","re gion","s","x"],"values":[
            [1000, true, 1.5, "a,b=c d", 7, null, "say \"hi\" \\o/", 2],
            [2000, null, null, "h", null, "eu", null, null],
            [3000, false, 2, "", -3, "", "", null]
        ]});
        let mut out = String::new();
        let n = series_to_lines("cpu load,x", &series, &schema(), &mut out);
        assert_eq!(n, Ok(2), "a row without fields is skipped");
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines[0],
            r#"cpu\ load\,x,host=a\,b\=c\ d b=true,f=1.5,i=7i,s="say \"hi\" \\o/",x=2 1000"#
        );
        assert_eq!(lines[1], r#"cpu\ load\,x b=false,f=2,i=-3i,s="" 3000"#);
        for l in lines {
            assert!(crate::line_protocol::parse(l.as_bytes()).is_ok(), "{l}");
        }
    }

    #[test]
    fn numbers_are_written_as_influxdb_sent_them() {
        // Go's encoding/json writes 1e21 as 1e+21 and 1e-7 as 1e-07.
        let (n, lines) = convert(
            r#"{"results":[{"statement_id":0,"series":[{"name":"m","columns":["time","f","i","x"],"values":[
                [1, 1e+21, 9223372036854775807, -1e-07],
                [2, 0.30000000000000004, -9223372036854775808, 2500.5],
                [3, 2, 1.5e3, 18446744073709551615],
                [4, -0, 12345678901234567890, 0]
            ]}]}]}"#,
        );
        assert_eq!(n, 4);
        assert_eq!(
            lines,
            [
                "m f=1e+21,i=9223372036854775807i,x=-1e-07 1",
                "m f=0.30000000000000004,i=-9223372036854775808i,x=2500.5 2",
                "m f=2,i=1500i,x=18446744073709551615 3",
                "m f=-0,i=9223372036854775807i,x=0 4",
            ]
        );
    }

    #[test]
    fn series_tags_unicode_escapes_and_odd_rows() {
        let (n, lines) = convert(
            r#"{"results":[{"statement_id":0,"series":[
                {"name":"m","columns":["time","host","s","b","zz"],"values":[
                    [1, "h\u00e9 \"x\"", "caf\u00e9 \\ \"q\" \u0041", true, "skipped"],
                    null,
                    [],
                    [2, "éé", ["a", {"k": "v]"}], false, [1]],
                    [2.5, "h", "no time", true, null],
                    ["1970-01-01T00:00:00Z", "h", "no time", true, null],
                    [3, null, null, null, null]
                ],"partial":true},
                {"name":"m","tags":{"dc":"eu 1","host":"z"},"columns":["time","f","i"],"values":[[4, 3.5, 7]]},
                {"name":"m","columns":["time","f"]},
                {"name":"m","columns":["time","f"],"values":null}
            ],"partial":true}]}"#,
        );
        assert_eq!(n, 3);
        assert_eq!(
            lines,
            [
                r#"m,host=hé\ "x" s="café \\ \"q\" A",b=true 1"#,
                r#"m,host=éé s="[\"a\",{\"k\":\"v]\"}]",b=false 2"#,
                r#"m,dc=eu\ 1,host=z f=3.5,i=7i 4"#,
            ]
        );
    }

    #[test]
    fn integers_that_fit_an_i64() {
        for yes in [
            "0",
            "-0",
            "7",
            "-7",
            "9223372036854775807",
            "-9223372036854775808",
            "1796409134656363836",
        ] {
            assert!(fits_i64(yes), "{yes}");
            assert!(yes.parse::<i64>().is_ok(), "{yes}");
        }
        for no in [
            "",
            "-",
            "1.5",
            "1e3",
            "9223372036854775808",
            "-9223372036854775809",
            "99999999999999999999",
            "+1",
        ] {
            assert!(!fits_i64(no), "{no}");
        }
    }

    #[test]
    fn members_in_any_order() {
        let (n, lines) = convert(
            r#"{"results":[{"series":[{"values":[[1000, 1.5]],"tags":{"dc":"a"},"columns":["time","f"],"name":"m"}],"statement_id":0}]}"#,
        );
        assert_eq!((n, lines), (1, vec!["m,dc=a f=1.5 1000".to_string()]));
    }

    #[test]
    fn errors_and_malformed_chunks_fail_the_copy() {
        let mut out = String::new();
        let mut run = |chunk: &str| convert_chunk(chunk.as_bytes(), "m", &schema(), &mut out);
        assert_eq!(
            run(r#"{"results":[{"statement_id":0,"error":"boom"}]}"#),
            Err(ChunkError::Answer("boom".into()))
        );
        assert_eq!(
            run(r#"{"error":"bad"}"#),
            Err(ChunkError::Answer("bad".into()))
        );
        assert_eq!(run("  \n"), Ok(0));
        assert_eq!(run(r#"{"results":[]}"#), Ok(0));
        assert_eq!(run(r#"{"results":[{"statement_id":0}]}"#), Ok(0));
        for bad in [
            r#"{"results":[{"series":[{"#,
            r#"{"results":[{"series":[{"columns":["time","f"],"values":[[1,2]]}]}]} x"#,
            r#"{"results":[{"series":[{"columns":["time","f"],"values":{"a":1}}]}]}"#,
            r#"{"results":[{"series":[{"columns":["time","f"],"values":"x"}]}]}"#,
        ] {
            assert!(matches!(run(bad), Err(ChunkError::Json(_))), "{bad}");
        }
        assert_eq!(out, "", "nothing written");
    }

    #[test]
    fn the_scanner_never_panics_on_truncated_values() {
        let full = r#"[[1, "a\"b", 1.5e3, true, null, ["x"]], [2, "c", -1, false, {"k": [1]}]]"#;
        for end in 0..full.len() {
            let mut out = String::new();
            let s = schema();
            let mut conv = Converter::new("m", &s, &mut out);
            conv.set_columns(&["time", "host", "f", "b", "i", "s"].map(String::from), &[]);
            let _ = Scan {
                text: &full[..end],
                at: 0,
            }
            .rows(&mut conv);
        }
    }
}
