//! Database and retention policy names as influxd 1.x judges them, and Go's `%q` that its
//! error texts quote names with.
//!
//! # Why
//! influxd refuses to create a database or retention policy whose name it deems unsafe as a
//! directory name (`meta.ValidName`): empty, `.` or `..`, containing `/` or `\`, or containing a
//! character Go does not print (controls such as newline, CR and NUL, format characters, private
//! use, every space but U+0020). It answers `invalid name`; a valid name longer than 255 bytes
//! (`meta.MaxNameLen`) gets `name too long`. Such a database can never exist, so a write into it
//! can never be delivered: the write endpoints refuse it with influxd's own answer
//! ([`check_write_target`]) instead of acknowledging it, and no statement naming it is built.
//!
//! # Difference from influxd
//! Go's `unicode.IsPrint` also refuses code points its Unicode tables (13.0 for the Go 1.19
//! that built Debian's influxd 1.6.7) leave unassigned. The proxy has no such table: a name with
//! an unassigned code point is accepted here and refused by influxd on delivery (`invalid name`,
//! a dead letter).

/// Longest database or retention policy name influxd creates, in bytes (`meta.MaxNameLen`).
pub const MAX_NAME_BYTES: usize = 255;

/// Why influxd refuses to create a database or retention policy of this name. `Display` is
/// influxd's text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Empty, `.`, `..`, with `/`, `\` or a character Go does not print.
    #[error("invalid name")]
    Invalid,
    /// Longer than [`MAX_NAME_BYTES`].
    #[error("name too long")]
    TooLong,
}

/// Whether influxd 1.6 creates a database or retention policy named `name`, with its verdict
/// when it does not (validity first, then length, as influxd checks them).
pub fn check_name(name: &str) -> Result<(), NameError> {
    let invalid = matches!(name, "" | "." | "..")
        || name.contains(['/', '\\'])
        || !name.chars().all(is_go_printable);
    if invalid {
        Err(NameError::Invalid)
    } else if name.len() > MAX_NAME_BYTES {
        Err(NameError::TooLong)
    } else {
        Ok(())
    }
}

/// Why influxd can never store a write into a database or retention policy: it cannot exist
/// under that name. `Display` is influxd's answer to such a write.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unwritable {
    /// The `db` of the write (influxd answers 404).
    #[error("database not found: {}", go_quote(.0))]
    Database(String),
    /// The `rp` of the write (influxd answers 500).
    #[error("retention policy not found: {0}")]
    RetentionPolicy(String),
}

/// Whether a write into `db` and `rp` (empty: the default policy) can ever be stored: both
/// names are ones influxd creates ([`check_name`]). The database is judged first, as influxd
/// does.
pub fn check_write_target(db: &str, rp: &str) -> Result<(), Unwritable> {
    if check_name(db).is_err() {
        return Err(Unwritable::Database(db.to_string()));
    }
    if !rp.is_empty() && check_name(rp).is_err() {
        return Err(Unwritable::RetentionPolicy(rp.to_string()));
    }
    Ok(())
}

/// `s` as Go's `%q` (`strconv.Quote`) writes it: in double quotes, `"` and `\` escaped, printable
/// characters as they are, others as `\n`-style, `\xhh`, `\uhhhh` or `\Uhhhhhhhh` escapes. influxd
/// quotes names this way in errors such as `database not found: "x"`.
pub fn go_quote(s: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        let code = u32::from(c);
        // Writing into a String cannot fail.
        let _ = match c {
            '"' | '\\' => write!(out, "\\{c}"),
            _ if is_go_printable(c) => write!(out, "{c}"),
            '\u{7}' => out.write_str("\\a"),
            '\u{8}' => out.write_str("\\b"),
            '\u{c}' => out.write_str("\\f"),
            '\n' => out.write_str("\\n"),
            '\r' => out.write_str("\\r"),
            '\t' => out.write_str("\\t"),
            '\u{b}' => out.write_str("\\v"),
            _ if code < 0x20 || code == 0x7f => write!(out, "\\x{code:02x}"),
            _ if code < 0x1_0000 => write!(out, "\\u{code:04x}"),
            _ => write!(out, "\\U{code:08x}"),
        };
    }
    out.push('"');
    out
}

/// Go's `unicode.IsPrint` for every assigned code point: letters, marks, numbers, punctuation,
/// symbols and U+0020; not controls (Cc), format characters (Cf), private use (Co),
/// noncharacters or any other space (Zs, Zl, Zp, all of which are `White_Space`).
fn is_go_printable(c: char) -> bool {
    if c == ' ' {
        return true;
    }
    let code = u32::from(c);
    let private_use = matches!(code, 0xE000..=0xF8FF | 0xF_0000..=0xF_FFFD | 0x10_0000..=0x10_FFFD);
    let noncharacter = matches!(code, 0xFDD0..=0xFDEF) || code & 0xFFFE == 0xFFFE;
    !(c.is_control() || c.is_whitespace() || is_format(code) || private_use || noncharacter)
}

/// General category Cf (format) in Unicode 15, a superset of Go 1.19's (Unicode 13) since the
/// later additions were unassigned, hence not printable, there too.
fn is_format(code: u32) -> bool {
    matches!(
        code,
        0x00AD
            | 0x0600..=0x0605
            | 0x061C
            | 0x06DD
            | 0x070F
            | 0x0890..=0x0891
            | 0x08E2
            | 0x180E
            | 0x200B..=0x200F
            | 0x202A..=0x202E
            | 0x2060..=0x2064
            | 0x2066..=0x206F
            | 0xFEFF
            | 0xFFF9..=0xFFFB
            | 0x110BD
            | 0x110CD
            | 0x13430..=0x1343F
            | 0x1BCA0..=0x1BCA3
            | 0x1D173..=0x1D17A
            | 0xE0001
            | 0xE0020..=0xE007F
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_influxd_refuses_are_refused_with_its_words() {
        for name in [
            "",
            ".",
            "..",
            "a/b",
            "a\\b",
            "a\nb",
            "a\rb",
            "a\0b",
            "a\tb",
            "a\u{a0}b",
            "a\u{200b}b",
            "a\u{e000}b",
            "a\u{fffe}",
            "a\u{2028}",
        ] {
            assert_eq!(check_name(name), Err(NameError::Invalid), "{name:?}");
        }
        assert_eq!(check_name(&"b".repeat(256)), Err(NameError::TooLong));
        assert_eq!(check_name(&"/".repeat(256)), Err(NameError::Invalid));
        assert_eq!(NameError::Invalid.to_string(), "invalid name");
        assert_eq!(NameError::TooLong.to_string(), "name too long");
    }

    #[test]
    fn names_influxd_accepts_pass() {
        for name in [
            "db",
            "x\";DROP DATABASE y;--",
            "it's; SHOW DATABASES",
            "a b,c=d",
            "...",
            ".hidden",
            "é☃ 日本",
            "\u{fffd}",
            "😀",
            &"b".repeat(255),
            &"é".repeat(127),
        ] {
            assert_eq!(check_name(name), Ok(()), "{name:?}");
        }
        assert_eq!(check_name(&"é".repeat(128)), Err(NameError::TooLong));
    }

    #[test]
    fn writes_into_names_that_cannot_exist_get_influxds_answer() {
        assert_eq!(check_write_target("db", ""), Ok(()));
        assert_eq!(check_write_target("x\";DROP DATABASE y;--", "week"), Ok(()));
        let e = check_write_target("x\\\";DROP DATABASE y;--", "a/b").unwrap_err();
        assert_eq!(
            e.to_string(),
            r#"database not found: "x\\\";DROP DATABASE y;--""#
        );
        let e = check_write_target("db", "a\nb").unwrap_err();
        assert_eq!(e.to_string(), "retention policy not found: a\nb");
    }

    #[test]
    fn go_quote_escapes_as_strconv_quote() {
        assert_eq!(go_quote("x"), r#""x""#);
        assert_eq!(go_quote(r#"x\";DROP"#), r#""x\\\";DROP""#);
        assert_eq!(go_quote("a\nb\rc\td\0e\u{7f}"), r#""a\nb\rc\td\x00e\x7f""#);
        assert_eq!(go_quote("\u{7}\u{8}\u{b}\u{c}\u{1b}"), r#""\a\b\v\f\x1b""#);
        assert_eq!(go_quote("é☃ \u{a0}\u{200b}"), r#""é☃ \u00a0\u200b""#);
        assert_eq!(go_quote("\u{e0001}😀"), r#""\U000e0001😀""#);
    }
}
