//! InfluxQL lexer: turns query text into tokens with byte spans.
//!
//! Follows the InfluxQL scanner (`influxdata/influxql` `scanner.go`) wherever
//! token *boundaries* are concerned, so that we split and classify a query
//! exactly where InfluxDB itself would:
//! * `"..."` identifiers and `'...'` strings accept the escapes `\n`, `\\`,
//!   `\"` and `\'`; any other escape, a raw newline inside, or a missing closing
//!   quote is a syntax error.
//! * `/.../` regex literals: `\/` stands for `/`; any other backslash is kept
//!   verbatim together with the character after it; a newline or a missing
//!   closing `/` is a syntax error.
//! * `-- ...` comments run to the end of the line, `/* ... */` comments may span
//!   lines (unterminated is a syntax error). Comments produce no token. A
//!   carriage return or a NUL ends a `--` comment as a newline does: influxd's
//!   reader turns CR into a newline and NUL into end of input, which stops the
//!   comment, after which it scans on. Missing this once let
//!   `SELECT ... -- x<CR>; DROP DATABASE y` pass as one SELECT and run the
//!   DROP on the backend it was relayed to.
//! * Any Unicode whitespace separates tokens (the Go proxy only split on spaces).
//!
//! InfluxDB decides between `/` (division) and a regex literal from the parser
//! state. We have no full expression parser, so we use the classic rule: `/`
//! starts a regex unless the previous token is an operand (identifier, number,
//! string, regex, `)`), where the keywords `SELECT`, `FROM`, `BY`, `WHERE`,
//! `AND`, `OR` do not count as operands. That agrees with InfluxQL on every
//! statement InfluxDB accepts.
//!
//! Invariants: never panics on any input; token spans are in bounds, in order,
//! non-overlapping and on `char` boundaries.

use super::{Error, Position};

/// What a token is. Keywords are [`TokenKind::Word`]s; compare them with
/// [`Token::is_keyword`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenKind {
    /// Bare identifier or keyword: `[A-Za-z_][A-Za-z0-9_]*`.
    Word,
    /// Integer, decimal or duration literal: `10`, `1.5`, `.5`, `6h`, `100ms`.
    Number,
    /// Bound parameter: `$name`.
    Param,
    /// Double-quoted identifier; `value` holds the unescaped name.
    QuotedIdent,
    /// Single-quoted string; `value` holds the unescaped text.
    Str,
    /// Regex literal; `value` holds the pattern without slashes, `\/` unescaped.
    Regex,
    /// Operator or punctuation (`(`, `)`, `,`, `.`, `;`, `=~`, `::`, ...), or a
    /// single character InfluxQL does not know.
    Punct,
}

/// One token and where it sits in the text that was tokenised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Token {
    /// Kind of token.
    pub(crate) kind: TokenKind,
    /// Byte offset of the first character.
    pub(crate) start: usize,
    /// Byte offset one past the last character.
    pub(crate) end: usize,
    /// Unescaped content for quoted identifiers, strings and regexes; the
    /// source text otherwise.
    pub(crate) value: String,
}

impl Token {
    /// True for a bare word equal to `kw` (ASCII case-insensitive).
    pub(crate) fn is_keyword(&self, kw: &str) -> bool {
        self.kind == TokenKind::Word && self.value.eq_ignore_ascii_case(kw)
    }

    /// True for the punctuation/operator `p`.
    pub(crate) fn is_punct(&self, p: &str) -> bool {
        self.kind == TokenKind::Punct && self.value == p
    }

    /// Whether this token ends an operand, so that a following `/` divides.
    fn is_operand(&self) -> bool {
        match self.kind {
            TokenKind::Word => !REGEX_PRECEDING_KEYWORDS
                .iter()
                .any(|kw| self.value.eq_ignore_ascii_case(kw)),
            TokenKind::Number
            | TokenKind::Param
            | TokenKind::QuotedIdent
            | TokenKind::Str
            | TokenKind::Regex => true,
            TokenKind::Punct => self.value == ")",
        }
    }
}

/// Keywords after which a `/` starts a regex literal rather than a division.
const REGEX_PRECEDING_KEYWORDS: &[&str] = &["select", "from", "by", "where", "and", "or"];

/// Two-character operators, longest match first.
const TWO_CHAR_OPS: &[&str] = &["=~", "!~", "!=", "<>", "<=", ">=", "::"];

/// Build a syntax error at byte `offset` of `src`.
pub(crate) fn syntax_error(src: &str, offset: usize, message: impl Into<String>) -> Error {
    Error::Syntax {
        message: message.into(),
        position: Position::locate(src, offset),
    }
}

fn is_ident_first(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Byte length of the run of characters at the start of `s` matching `pred`.
fn run_len(s: &str, pred: impl Fn(char) -> bool) -> usize {
    s.char_indices()
        .find(|&(_, c)| !pred(c))
        .map_or(s.len(), |(i, _)| i)
}

/// Tokenise `src`. Comments and whitespace produce no token.
pub(crate) fn tokenize(src: &str) -> Result<Vec<Token>, Error> {
    let mut tokens: Vec<Token> = Vec::new();
    let mut i = 0;
    while let Some(c) = src.get(i..).and_then(|rest| rest.chars().next()) {
        let rest = &src[i..];
        if c.is_whitespace() {
            i += c.len_utf8();
            continue;
        }
        if rest.starts_with("--") {
            // The terminator is consumed with the comment, as influxd does.
            i += rest
                .find(['\n', '\r', '\0'])
                .map_or(rest.len(), |end| end + 1);
            continue;
        }
        if let Some(comment) = rest.strip_prefix("/*") {
            match comment.find("*/") {
                Some(at) => i += 2 + at + 2,
                None => return Err(syntax_error(src, i, "unterminated block comment")),
            }
            continue;
        }
        let start = i;
        let (kind, len, value) = if c == '"' || c == '\'' {
            let (len, value) = scan_quoted(src, start, c)?;
            let kind = if c == '"' {
                TokenKind::QuotedIdent
            } else {
                TokenKind::Str
            };
            (kind, len, value)
        } else if c == '/' && tokens.last().is_none_or(|t| !t.is_operand()) {
            let (len, value) = scan_regex(src, start)?;
            (TokenKind::Regex, len, value)
        } else if c.is_ascii_digit() || (c == '.' && next_is_digit(rest, 1)) {
            let len = scan_number(rest);
            (TokenKind::Number, len, rest[..len].to_string())
        } else if is_ident_first(c) {
            let len = run_len(rest, is_ident_char);
            (TokenKind::Word, len, rest[..len].to_string())
        } else if c == '$' && rest[1..].starts_with(is_ident_char) {
            let len = 1 + run_len(&rest[1..], is_ident_char);
            (TokenKind::Param, len, rest[..len].to_string())
        } else {
            let len = TWO_CHAR_OPS
                .iter()
                .find(|op| rest.starts_with(**op))
                .map_or(c.len_utf8(), |op| op.len());
            (TokenKind::Punct, len, rest[..len].to_string())
        };
        i = start + len;
        tokens.push(Token {
            kind,
            start,
            end: i,
            value,
        });
    }
    Ok(tokens)
}

fn next_is_digit(s: &str, at: usize) -> bool {
    s.as_bytes().get(at).is_some_and(u8::is_ascii_digit)
}

/// Length of the number/duration literal at the start of `s` (InfluxQL
/// `scanNumber`): digits, then either `.digits` (decimal) or a unit suffix of
/// letters/`µ` followed by letters, `µ` and digits.
fn scan_number(s: &str) -> usize {
    let mut len = run_len(s, |c| c.is_ascii_digit());
    if s[len..].starts_with('.') && next_is_digit(s, len + 1) {
        len += 1 + run_len(&s[len + 1..], |c| c.is_ascii_digit());
        return len;
    }
    if s[len..].starts_with(|c: char| c.is_ascii_alphabetic() || c == 'µ') {
        len += run_len(&s[len..], |c| c.is_ascii_alphanumeric() || c == 'µ');
    }
    len
}

/// Scan a quoted identifier or string starting at `start` (which holds
/// `quote`). Returns the token length in bytes and the unescaped value.
fn scan_quoted(src: &str, start: usize, quote: char) -> Result<(usize, String), Error> {
    let what = if quote == '"' {
        "quoted identifier"
    } else {
        "string"
    };
    let body = &src[start + 1..];
    let mut value = String::new();
    let mut chars = body.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            _ if c == quote => return Ok((1 + i + 1, value)),
            '\n' | '\r' => {
                return Err(syntax_error(
                    src,
                    start,
                    format!("unterminated {what} (a newline must be written as \\n)"),
                ))
            }
            '\\' => match chars.next() {
                Some((_, 'n')) => value.push('\n'),
                Some((_, e @ ('\\' | '"' | '\''))) => value.push(e),
                Some((j, e)) => {
                    return Err(syntax_error(
                        src,
                        start + 1 + j - 1,
                        format!("bad escape \\{e} in {what}"),
                    ))
                }
                None => break,
            },
            _ => value.push(c),
        }
    }
    Err(syntax_error(src, start, format!("unterminated {what}")))
}

/// Scan a regex literal starting at `start` (which holds `/`). Returns the
/// token length in bytes and the pattern.
fn scan_regex(src: &str, start: usize) -> Result<(usize, String), Error> {
    let body = &src[start + 1..];
    let mut pattern = String::new();
    let mut chars = body.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '/' => return Ok((1 + i + 1, pattern)),
            '\n' | '\r' => break,
            '\\' => {
                if chars.peek().is_some_and(|&(_, n)| n == '/') {
                    chars.next();
                    pattern.push('/');
                } else {
                    // InfluxQL passes any other escape through and rescans the
                    // following character normally.
                    pattern.push('\\');
                }
            }
            _ => pattern.push(c),
        }
    }
    Err(syntax_error(src, start, "unterminated regex"))
}
