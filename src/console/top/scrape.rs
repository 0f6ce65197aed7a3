//! The Prometheus text exposition format (0.0.4), read back: what `top` knows of the proxy is
//! what `/metrics` says, parsed here into samples (name, labels, value).
//!
//! Pure: no I/O. Comments (`# HELP`, `# TYPE`) and blank lines are skipped; a sample may carry
//! a timestamp after its value (ignored). A line that is not a sample makes the whole
//! document an error naming it, so a proxy (or something else at that address) answering
//! garbage shows in the status line instead of as an empty screen.

use std::collections::HashMap;

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Sample {
    /// Its label pairs, in the order written.
    pub labels: Labels,
    /// Its value.
    pub value: f64,
}

impl Sample {
    /// The value of label `name` (`""` when absent, as Prometheus treats it).
    pub(crate) fn label(&self, name: &str) -> &str {
        self.labels
            .iter()
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v.as_str())
    }

    /// Whether every `(name, value)` of `wanted` is among its labels.
    pub(crate) fn matches(&self, wanted: &[(&str, &str)]) -> bool {
        wanted.iter().all(|(k, v)| self.label(k) == *v)
    }
}

/// A parsed document: samples by metric name (a histogram's `_bucket`, `_sum` and `_count`
/// are names of their own, as written).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Metrics {
    by_name: HashMap<String, Vec<Sample>>,
}

/// Why a document could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line} of /metrics: {reason}: {text:?}")]
pub(crate) struct ParseError {
    /// 1-based line number.
    pub line: usize,
    /// What was wrong.
    pub reason: &'static str,
    /// The line (cut to 120 bytes).
    pub text: String,
}

impl Metrics {
    /// Parses a whole document.
    pub(crate) fn parse(text: &str) -> Result<Metrics, ParseError> {
        let mut by_name: HashMap<String, Vec<Sample>> = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (name, sample) = parse_line(line).map_err(|reason| ParseError {
                line: i + 1,
                reason,
                text: line.chars().take(120).collect(),
            })?;
            by_name.entry(name).or_default().push(sample);
        }
        Ok(Metrics { by_name })
    }

    /// Every sample of `name` (none: empty).
    pub(crate) fn series(&self, name: &str) -> &[Sample] {
        self.by_name.get(name).map_or(&[], Vec::as_slice)
    }

    /// The value of the first sample of `name` whose labels include `labels`.
    pub(crate) fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.series(name)
            .iter()
            .find(|s| s.matches(labels))
            .map(|s| s.value)
    }
}

/// `name{labels} value [timestamp]`.
fn parse_line(line: &str) -> Result<(String, Sample), &'static str> {
    let name_end = line
        .find(|c: char| c == '{' || c.is_whitespace())
        .ok_or("no value")?;
    let name = &line[..name_end];
    if !is_metric_name(name) {
        return Err("bad metric name");
    }
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(after) = rest.strip_prefix('{') {
        let (parsed, tail) = parse_labels(after)?;
        labels = parsed;
        rest = tail;
    }
    let mut fields = rest.split_whitespace();
    let value = parse_value(fields.next().ok_or("no value")?).ok_or("bad value")?;
    if let Some(ts) = fields.next() {
        ts.parse::<i64>().map_err(|_| "bad timestamp")?;
    }
    if fields.next().is_some() {
        return Err("trailing text");
    }
    Ok((name.to_string(), Sample { labels, value }))
}

fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Label pairs, in the order written.
type Labels = Vec<(String, String)>;

/// The labels after `{`, up to and including `}`; returns them and the text after `}`.
fn parse_labels(mut s: &str) -> Result<(Labels, &str), &'static str> {
    let mut labels = Vec::new();
    loop {
        s = s.trim_start();
        if let Some(tail) = s.strip_prefix('}') {
            return Ok((labels, tail));
        }
        let eq = s.find('=').ok_or("label without value")?;
        let key = s[..eq].trim();
        if key.is_empty() || !is_metric_name(key) || key.contains(':') {
            return Err("bad label name");
        }
        let after = s[eq + 1..].trim_start();
        let quoted = after.strip_prefix('"').ok_or("label value not quoted")?;
        let (value, tail) = unescape_until_quote(quoted)?;
        labels.push((key.to_string(), value));
        s = tail.trim_start();
        if let Some(tail) = s.strip_prefix(',') {
            s = tail;
        } else if !s.starts_with('}') {
            return Err("expected , or } after a label");
        }
    }
}

/// A label value up to its closing quote, unescaped (`\\`, `\"`, `\n`); and the text after.
fn unescape_until_quote(s: &str) -> Result<(String, &str), &'static str> {
    let mut out = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((out, &s[i + 1..])),
            '\\' => match chars.next() {
                Some((_, 'n')) => out.push('\n'),
                Some((_, '\\')) => out.push('\\'),
                Some((_, '"')) => out.push('"'),
                Some((_, other)) => {
                    out.push('\\');
                    out.push(other);
                }
                None => return Err("unterminated label value"),
            },
            c => out.push(c),
        }
    }
    Err("unterminated label value")
}

fn parse_value(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        other => other.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{Encoder, Histogram, MetricType};

    #[test]
    fn samples_with_and_without_labels_escapes_and_timestamps() {
        let text = "# HELP a_total A.\n# TYPE a_total counter\n\
                    a_total{circle=\"c \\\"1\\\"\",backend=\"b\\\\1\\nx\"} 12\n\
                    \n\
                    up 1 1700000000000\n\
                    h_bucket{le=\"+Inf\"} +Inf\n\
                    g{x=\"\",} -2.5e3\n";
        let m = Metrics::parse(text).unwrap();
        let a = &m.series("a_total")[0];
        assert_eq!(a.label("circle"), "c \"1\"");
        assert_eq!(a.label("backend"), "b\\1\nx");
        assert_eq!(a.label("missing"), "");
        assert_eq!(a.value, 12.0);
        assert_eq!(m.get("up", &[]), Some(1.0));
        assert_eq!(m.get("h_bucket", &[("le", "+Inf")]), Some(f64::INFINITY));
        assert_eq!(m.get("g", &[("x", "")]), Some(-2500.0));
        assert_eq!(m.get("a_total", &[("circle", "other")]), None);
        assert!(m.series("nothing").is_empty());
    }

    #[test]
    fn garbage_names_its_line() {
        for (text, reason) in [
            ("ok 1\n<html> 1\n", "bad metric name"),
            ("m{a=b} 1\n", "label value not quoted"),
            ("m{a=\"b\" 1\n", "expected , or } after a label"),
            ("m{a=\"b} 1\n", "unterminated label value"),
            ("m one\n", "bad value"),
            ("m\n", "no value"),
            ("m 1 2 3\n", "trailing text"),
        ] {
            let err = Metrics::parse(text).unwrap_err();
            assert_eq!(err.reason, reason, "{text:?}");
        }
        assert_eq!(Metrics::parse("ok 1\n<html> 1\n").unwrap_err().line, 2);
    }

    /// What the proxy's own encoder writes reads back exactly: the two ends of one format.
    #[test]
    fn the_proxys_own_exposition_reads_back() {
        let mut enc = Encoder::new();
        enc.header("t_info", "Info \\ with\nnewline.", MetricType::Gauge);
        enc.sample("t_info", &[("v", "a\"b\\c\nd"), ("w", "温度")], 1u64);
        let h = Histogram::new(&[0.1, 1.0]);
        h.observe(0.05);
        h.observe(0.5);
        h.observe(5.0);
        enc.header("t_seconds", "Latency.", MetricType::Histogram);
        enc.histogram("t_seconds", &[("backend", "b1")], &h);
        let m = Metrics::parse(&enc.finish()).unwrap();
        let info = &m.series("t_info")[0];
        assert_eq!(info.label("v"), "a\"b\\c\nd");
        assert_eq!(info.label("w"), "温度");
        let bucket = |le| m.get("t_seconds_bucket", &[("backend", "b1"), ("le", le)]);
        assert_eq!(bucket("0.1"), Some(1.0));
        assert_eq!(bucket("1"), Some(2.0));
        assert_eq!(bucket("+Inf"), Some(3.0));
        assert_eq!(m.get("t_seconds_count", &[("backend", "b1")]), Some(3.0));
        assert_eq!(m.get("t_seconds_sum", &[("backend", "b1")]), Some(5.55));
    }
}
