//! Text tables and the compact numbers, sizes, ages and times `ctl` prints.

use std::fmt::Write as _;

/// A table: a header row, then rows, columns padded to their widest cell; columns holding
/// numbers are right-aligned.
#[derive(Debug, Default)]
pub(crate) struct Table {
    header: Vec<String>,
    right: Vec<bool>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column titles; a title ending in `>` marks a right-aligned column
    /// (the `>` is not shown).
    pub(crate) fn new(titles: &[&str]) -> Table {
        Table {
            header: titles
                .iter()
                .map(|t| t.trim_end_matches('>').to_string())
                .collect(),
            right: titles.iter().map(|t| t.ends_with('>')).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row (missing cells are blank).
    pub(crate) fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Whether no row was added.
    pub(crate) fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The table as lines of text, two spaces between columns, no trailing blanks.
    pub(crate) fn render(&self) -> String {
        let columns = self.header.len();
        let width = |c: usize| {
            std::iter::once(&self.header)
                .chain(&self.rows)
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        };
        let widths: Vec<usize> = (0..columns).map(width).collect();
        let mut out = String::new();
        for row in std::iter::once(&self.header).chain(&self.rows) {
            let mut line = String::new();
            for (c, w) in widths.iter().enumerate() {
                let cell = row.get(c).map_or("", String::as_str);
                if c > 0 {
                    line.push_str("  ");
                }
                if self.right.get(c).copied().unwrap_or(false) {
                    let _ = write!(line, "{cell:>w$}");
                } else {
                    let _ = write!(line, "{cell:<w$}");
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// `1234567` as `1,234,567`.
pub(crate) fn count(n: u64) -> String {
    indicatif::HumanCount(n).to_string()
}

/// Bytes in binary units (`1.50 MiB`).
pub(crate) fn bytes(n: u64) -> String {
    indicatif::BinaryBytes(n).to_string()
}

/// Seconds as `45s`, `2m05s`, `3h04m`, `2d03h`.
pub(crate) fn age(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3_600 % 24, secs / 60 % 60, secs % 60);
    match () {
        _ if d > 0 => format!("{d}d{h:02}h"),
        _ if h > 0 => format!("{h}h{m:02}m"),
        _ if m > 0 => format!("{m}m{s:02}s"),
        _ => format!("{s}s"),
    }
}

/// A rate's number, with one decimal below 100 (`12.5`, `2,400`).
pub(crate) fn rate(per_s: f64) -> String {
    if per_s < 100.0 {
        format!("{per_s:.1}")
    } else {
        count(per_s as u64)
    }
}

/// Unix nanoseconds as a UTC date and time (`2026-12-07 10:00:00`).
pub(crate) fn utc(ns: i64) -> String {
    let c = influx_wire::civil::Civil::of(ns.div_euclid(1_000_000_000));
    format!("{} {}", c.date(), c.clock())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_padded_and_numbers_right_aligned() {
        let mut t = Table::new(&["NAME", "POINTS>", "NOTE"]);
        t.row(vec!["a".into(), "5".into(), String::new()]);
        t.row(vec!["longer".into(), "1,000".into(), "x".into()]);
        assert_eq!(
            t.render(),
            "NAME    POINTS  NOTE\na            5\nlonger   1,000  x\n"
        );
        assert!(!t.is_empty());
    }

    #[test]
    fn numbers_ages_and_times_are_compact() {
        assert_eq!(count(1_234_567), "1,234,567");
        assert_eq!(bytes(1536), "1.50 KiB");
        assert_eq!(age(0), "0s");
        assert_eq!(age(125), "2m05s");
        assert_eq!(age(3 * 3600 + 4 * 60 + 9), "3h04m");
        assert_eq!(age(2 * 86_400 + 3 * 3600), "2d03h");
        assert_eq!(rate(12.54), "12.5");
        assert_eq!(rate(2400.2), "2,400");
        assert_eq!(utc(0), "1970-01-01 00:00:00");
        assert_eq!(utc(1_700_000_000_000_000_000), "2023-11-14 22:13:20");
        assert_eq!(utc(951_782_400 * 1_000_000_000), "2000-02-29 00:00:00");
        assert_eq!(utc(-1_000_000_000), "1969-12-31 23:59:59");
    }
}
