//! The markdown the suite writes (docs/perf.md): the document, the number formats its tables
//! use, and UTC dates. Pure; the sections decide what goes in.

use std::fmt::Write as _;

use influx_wire::civil::Civil;

/// The report being written, one markdown line at a time.
#[derive(Debug, Default)]
pub(crate) struct Report {
    text: String,
}

impl Report {
    /// Appends `line` and a newline.
    pub(crate) fn line(&mut self, line: impl AsRef<str>) {
        self.text.push_str(line.as_ref());
        self.text.push('\n');
    }

    /// Appends an empty line.
    pub(crate) fn blank(&mut self) {
        self.text.push('\n');
    }

    /// Appends a table row: `| a | b |`.
    pub(crate) fn row(&mut self, cells: &[&str]) {
        let mut line = String::from("|");
        for cell in cells {
            let _ = write!(line, " {cell} |");
        }
        self.line(line);
    }

    /// Everything written so far.
    pub(crate) fn text(&self) -> &str {
        &self.text
    }
}

/// `x` rounded to an integer with thousands separators: `1,234,567`.
pub(crate) fn int(x: f64) -> String {
    let digits = format!("{:.0}", x.abs());
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if x.is_sign_negative() && digits != "0" {
        out.push('-');
    }
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// One decimal: `12.3`.
pub(crate) fn f1(x: f64) -> String {
    format!("{x:.1}")
}

/// Two decimals: `12.35`.
pub(crate) fn f2(x: f64) -> String {
    format!("{x:.2}")
}

/// `x` as [`f2`] shows it, for figures computed from shown ones (a difference of two p50s is
/// the difference of the two cells).
pub(crate) fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// `a / b`, 0 when `b` is not positive (a run that measured nothing).
pub(crate) fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        a / b
    } else {
        0.0
    }
}

/// A markdown table cell's text with its pipes escaped.
pub(crate) fn cell(text: &str) -> String {
    text.replace('|', "\\|")
}

/// `2026-12-04 19:45 UTC`: when a report was made.
pub(crate) fn utc_minute(unix_seconds: i64) -> String {
    let c = Civil::of(unix_seconds);
    format!("{} {:02}:{:02} UTC", c.date(), c.hour, c.minute)
}

/// `2026-12-04T19:45:00Z`: a time literal of an InfluxQL `WHERE time >= '...'`.
pub(crate) fn rfc3339(unix_seconds: i64) -> String {
    Civil::of(unix_seconds).rfc3339()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_get_thousands_separators_after_rounding() {
        assert_eq!(int(0.0), "0");
        assert_eq!(int(999.4), "999");
        assert_eq!(int(999.6), "1,000");
        assert_eq!(int(1_693_068.49), "1,693,068");
        assert_eq!(int(123_456.0), "123,456");
        assert_eq!(int(-1234.0), "-1,234");
        assert_eq!(int(-0.2), "0");
    }

    #[test]
    fn decimals_round_like_printf() {
        assert_eq!(f1(4.25), "4.2");
        assert_eq!(f1(0.06), "0.1");
        assert_eq!(f2(9.555), "9.55");
        assert_eq!(f2(87.5), "87.50");
        assert_eq!(f2(-0.001), "-0.00");
        assert_eq!((round2(1.234), round2(1.236)), (1.23, 1.24));
        assert_eq!(f2(round2(2.70) - round2(0.23)), "2.47");
    }

    #[test]
    fn ratios_of_nothing_are_zero() {
        assert_eq!(ratio(3.0, 2.0), 1.5);
        assert_eq!(ratio(3.0, 0.0), 0.0);
    }

    #[test]
    fn rows_are_markdown_table_lines() {
        let mut r = Report::default();
        r.line("# title");
        r.blank();
        r.line("One sentence. Another.");
        r.row(&["a", "b|c", ""]);
        r.row(&[&cell("b|c")]);
        assert_eq!(
            r.text(),
            "# title\n\nOne sentence. Another.\n| a | b|c |  |\n| b\\|c |\n"
        );
    }

    #[test]
    fn utc_dates_follow_the_gregorian_calendar() {
        assert_eq!(utc_minute(0), "1970-01-01 00:00 UTC");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_796_413_500), "2026-12-04T19:45:00Z");
        assert_eq!(utc_minute(1_796_413_559), "2026-12-04 19:45 UTC");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59Z");
    }
}
