//! Statement parser: one function per statement family (SELECT, SHOW,
//! CREATE / ALTER / DROP, DELETE), on top of the token stream.
//!
//! Only the parts the proxy routes on are parsed for real: the statement head,
//! `ON db`, the FROM source list (recursing into subqueries), `WITH
//! MEASUREMENT` / `WITH KEY`, retention-policy and database names, and the
//! top-level `LIMIT` / `OFFSET` / `SLIMIT` / `SOFFSET` integers. Everything
//! else (fields, WHERE, GROUP BY, ...) is skipped token by token, treating a
//! parenthesised group as one unit, and left for InfluxDB to judge.
//!
//! Invariants: parentheses are matched once up front ([`match_parens`]), so
//! every `(` inside the statement has a `)` within the same (sub)statement;
//! subqueries nest at most [`MAX_SUBQUERY_DEPTH`] deep, so recursion is
//! bounded; the parser never indexes past its `end`.

use super::tokenizer::{syntax_error, tokenize, Token, TokenKind};
use super::{Error, Explain, RetentionSettings, Source, Statement, StatementKind};

/// Deepest subquery nesting accepted (bounds recursion on hostile input).
const MAX_SUBQUERY_DEPTH: usize = 32;

/// InfluxQL keywords (`influxql/token.go`): never valid as bare identifiers.
const RESERVED: &[&str] = &[
    "all",
    "alter",
    "analyze",
    "and",
    "any",
    "as",
    "asc",
    "begin",
    "by",
    "cardinality",
    "continuous",
    "create",
    "database",
    "databases",
    "default",
    "delete",
    "desc",
    "destinations",
    "diagnostics",
    "distinct",
    "drop",
    "duration",
    "end",
    "every",
    "exact",
    "explain",
    "false",
    "field",
    "for",
    "from",
    "grant",
    "grants",
    "group",
    "groups",
    "in",
    "inf",
    "insert",
    "into",
    "key",
    "keys",
    "kill",
    "limit",
    "measurement",
    "measurements",
    "name",
    "offset",
    "on",
    "or",
    "order",
    "password",
    "policies",
    "policy",
    "privileges",
    "queries",
    "query",
    "read",
    "replication",
    "resample",
    "retention",
    "revoke",
    "select",
    "series",
    "set",
    "shard",
    "shards",
    "show",
    "slimit",
    "soffset",
    "stats",
    "subscription",
    "subscriptions",
    "tag",
    "to",
    "true",
    "user",
    "users",
    "values",
    "where",
    "with",
    "write",
];

const USER_MANAGEMENT: &str = "user management must be done on each InfluxDB backend";
const QUERY_MANAGEMENT: &str =
    "queries run on the individual InfluxDB backends; list and kill them on each backend directly";
const SELECT_INTO: &str = "SELECT ... INTO writes results on a single backend, bypassing the \
     proxy's sharding and replication; read the data and write it back through /write instead";
const CONTINUOUS_QUERIES: &str = "continuous queries write results on a single backend, \
     bypassing the proxy's sharding and replication; manage them on each InfluxDB backend";
const SUBSCRIPTIONS: &str = "subscriptions are per backend; manage them on each InfluxDB backend";
const SHARDS: &str =
    "shards are internal to each InfluxDB backend; inspect or drop them on each backend directly";
const DIAGNOSTICS: &str = "diagnostics are per backend; query each InfluxDB backend directly";
const SUPPORTED: &str = "influx-proxy runs SELECT ... FROM, SHOW MEASUREMENTS / SERIES / TAG KEYS \
     / TAG VALUES / FIELD KEYS / RETENTION POLICIES / DATABASES / STATS / ... CARDINALITY, \
     CREATE / DROP DATABASE, CREATE / ALTER / DROP RETENTION POLICY, DELETE, DROP MEASUREMENT \
     and DROP SERIES";

fn forbidden(statement: &str, reason: &str) -> Error {
    Error::Forbidden {
        statement: statement.to_string(),
        reason: reason.to_string(),
    }
}

fn is_reserved(word: &str) -> bool {
    RESERVED.iter().any(|kw| word.eq_ignore_ascii_case(kw))
}

/// Whether `token` can be an identifier: a quoted identifier, or a bare word
/// that is not a keyword.
fn is_ident(token: &Token) -> bool {
    match token.kind {
        TokenKind::QuotedIdent => true,
        TokenKind::Word => !is_reserved(&token.value),
        _ => false,
    }
}

/// `None` for an empty name (`""` or the empty segment of `db..mm`).
fn non_empty(name: Option<String>) -> Option<String> {
    name.filter(|n| !n.is_empty())
}

/// Classify one statement (see [`super::classify`]).
pub(crate) fn parse(src: &str) -> Result<Statement, Error> {
    let mut tokens = tokenize(src)?;
    while tokens.last().is_some_and(|t| t.is_punct(";")) {
        tokens.pop();
    }
    if tokens.is_empty() {
        return Err(Error::Empty);
    }
    if let Some(semi) = tokens.iter().find(|t| t.is_punct(";")) {
        return Err(syntax_error(
            src,
            semi.start,
            "unexpected ';' inside a single statement",
        ));
    }
    let close = match_parens(src, &tokens)?;
    let mut parser = Parser {
        src,
        toks: &tokens,
        close: &close,
        first: 0,
        pos: 0,
        end: tokens.len(),
        depth: 0,
    };
    parser.statement()
}

/// For each `(` token, the index of its matching `)` (`usize::MAX` for other
/// tokens). Unbalanced parentheses are a syntax error.
fn match_parens(src: &str, tokens: &[Token]) -> Result<Vec<usize>, Error> {
    let mut close = vec![usize::MAX; tokens.len()];
    let mut open: Vec<usize> = Vec::new();
    for (i, token) in tokens.iter().enumerate() {
        if token.is_punct("(") {
            open.push(i);
        } else if token.is_punct(")") {
            match open.pop() {
                Some(o) => close[o] = i,
                None => {
                    return Err(syntax_error(
                        src,
                        token.start,
                        "found ')' without a matching '('",
                    ))
                }
            }
        }
    }
    match open.last().and_then(|&o| tokens.get(o)) {
        Some(unclosed) => Err(syntax_error(
            src,
            unclosed.start,
            "unbalanced parentheses: '(' is never closed",
        )),
        None => Ok(close),
    }
}

/// Cursor over the tokens `first..end` of one (sub)statement.
struct Parser<'a> {
    src: &'a str,
    toks: &'a [Token],
    close: &'a [usize],
    /// Index of the statement's first token.
    first: usize,
    pos: usize,
    /// One past the statement's last token (a subquery stops before its `)`).
    end: usize,
    /// Subquery nesting depth (0 for the outer statement).
    depth: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<&'a Token> {
        if self.pos < self.end {
            self.toks.get(self.pos)
        } else {
            None
        }
    }

    fn bump(&mut self) -> Option<&'a Token> {
        let token = self.peek();
        if token.is_some() {
            self.pos += 1;
        }
        token
    }

    fn peek_keyword(&self, kw: &str) -> bool {
        self.peek().is_some_and(|t| t.is_keyword(kw))
    }

    fn peek_punct(&self, p: &str) -> bool {
        self.peek().is_some_and(|t| t.is_punct(p))
    }

    fn eat_keyword(&mut self, kw: &str) -> bool {
        let found = self.peek_keyword(kw);
        if found {
            self.pos += 1;
        }
        found
    }

    /// Index of the `)` matching the `(` at `index` (always within `end`).
    fn close_of(&self, index: usize) -> Result<usize, Error> {
        match self.close.get(index) {
            Some(&c) if c < self.end => Ok(c),
            _ => Err(self.error_here("unbalanced parentheses")),
        }
    }

    /// Byte offset of the current token, or of the statement's end.
    fn offset_here(&self) -> usize {
        match self.peek() {
            Some(token) => token.start,
            None => self.toks.get(self.end).map_or(self.src.len(), |t| t.start),
        }
    }

    fn error_here(&self, message: impl Into<String>) -> Error {
        syntax_error(self.src, self.offset_here(), message)
    }

    /// `found <current token>, expected <what>`.
    fn expected(&self, what: &str) -> Error {
        let found = match self.peek() {
            Some(token) => self.describe(token),
            None => "EOF".to_string(),
        };
        self.error_here(format!("found {found}, expected {what}"))
    }

    fn describe(&self, token: &Token) -> String {
        let text = self.src.get(token.start..token.end).unwrap_or("?");
        shorten(text)
    }

    /// Like [`Parser::expected`] for a name, hinting at quoting when the
    /// current token is a keyword.
    fn expected_name(&self, what: &str) -> Error {
        match self.peek() {
            Some(token) if token.kind == TokenKind::Word && is_reserved(&token.value) => self
                .expected(&format!(
                    "{what} (keywords must be double-quoted to be used as names)"
                )),
            _ => self.expected(what),
        }
    }

    fn expect_keyword(&mut self, kw: &str) -> Result<(), Error> {
        if self.eat_keyword(kw) {
            Ok(())
        } else {
            Err(self.expected(&kw.to_ascii_uppercase()))
        }
    }

    fn ident(&mut self) -> Result<String, Error> {
        match self.peek() {
            Some(token) if is_ident(token) => {
                self.pos += 1;
                Ok(token.value.clone())
            }
            _ => Err(self.expected_name("identifier")),
        }
    }

    /// `Unsupported` naming the first words of the statement.
    fn unsupported(&self) -> Error {
        let last = (self.first + 3).min(self.end).saturating_sub(1);
        let head = match (self.toks.get(self.first), self.toks.get(last)) {
            (Some(a), Some(b)) if a.start <= b.end => self.src.get(a.start..b.end).unwrap_or(""),
            _ => "",
        };
        let head = head.split_whitespace().collect::<Vec<_>>().join(" ");
        Error::Unsupported(format!(
            "unsupported statement `{}`: {SUPPORTED}",
            shorten(&head)
        ))
    }

    fn statement(&mut self) -> Result<Statement, Error> {
        let Some(head) = self.bump() else {
            return Err(Error::Empty);
        };
        if head.kind != TokenKind::Word {
            return Err(self.unsupported());
        }
        match head.value.to_ascii_lowercase().as_str() {
            "select" => self.select(),
            "show" => self.show(),
            "create" => self.create(),
            "drop" => self.drop(),
            "alter" => self.alter(),
            "delete" => self.series_delete(StatementKind::DeleteFrom),
            "grant" => Err(forbidden("GRANT", USER_MANAGEMENT)),
            "revoke" => Err(forbidden("REVOKE", USER_MANAGEMENT)),
            "set" if self.peek_keyword("password") => {
                Err(forbidden("SET PASSWORD", USER_MANAGEMENT))
            }
            "kill" => Err(forbidden("KILL QUERY", QUERY_MANAGEMENT)),
            "explain" => self.explain(),
            _ => Err(self.unsupported()),
        }
    }

    /// Lower-cased next word, consumed; `None` (nothing consumed) otherwise.
    fn next_word(&mut self) -> Option<String> {
        match self.peek() {
            Some(token) if token.kind == TokenKind::Word => {
                self.pos += 1;
                Some(token.value.to_ascii_lowercase())
            }
            _ => None,
        }
    }

    // ---- SELECT -----------------------------------------------------------

    /// After `SELECT`: find `INTO` / `FROM` at depth 0 in the field list, parse
    /// the sources, then scan the remaining clauses for LIMIT/OFFSET.
    fn select(&mut self) -> Result<Statement, Error> {
        loop {
            let Some(token) = self.peek() else {
                return Err(Error::Unsupported(
                    "SELECT without FROM is not supported through influx-proxy: \
                     name the measurement to read with FROM"
                        .to_string(),
                ));
            };
            if token.is_punct("(") {
                self.pos = self.close_of(self.pos)? + 1;
                continue;
            }
            self.pos += 1;
            if token.is_keyword("into") {
                return Err(forbidden("SELECT INTO", SELECT_INTO));
            }
            if token.is_keyword("from") {
                break;
            }
        }
        let mut stmt = Statement::new(StatementKind::Select);
        self.sources(&mut stmt, true)?;
        self.tail(&mut stmt)?;
        derive_database(&mut stmt);
        Ok(stmt)
    }

    /// After `EXPLAIN`: `[ANALYZE] SELECT ...`, classified as the SELECT it
    /// explains (so it routes to the backends owning its measurements).
    /// InfluxDB explains nothing else (`found SHOW, expected SELECT`).
    fn explain(&mut self) -> Result<Statement, Error> {
        let explain = if self.eat_keyword("analyze") {
            Explain::Analyze
        } else {
            Explain::Plan
        };
        if !self.eat_keyword("select") {
            return Err(self.expected("SELECT"));
        }
        let mut stmt = self.select()?;
        stmt.explain = Some(explain);
        Ok(stmt)
    }

    /// A parenthesised subquery body: must be a SELECT.
    fn subquery(&mut self) -> Result<Statement, Error> {
        if !self.eat_keyword("select") {
            return Err(self.expected("SELECT in subquery"));
        }
        self.select()
    }

    /// The comma-separated source list after FROM.
    fn sources(&mut self, stmt: &mut Statement, allow_subquery: bool) -> Result<(), Error> {
        let first = self.pos;
        loop {
            let source = self.source(allow_subquery)?;
            stmt.sources.push(source);
            if self.peek_punct(",") {
                self.pos += 1;
            } else {
                break;
            }
        }
        let start = self.toks.get(first).map_or(0, |t| t.start);
        let end = self
            .pos
            .checked_sub(1)
            .and_then(|i| self.toks.get(i))
            .map_or(start, |t| t.end);
        stmt.sources_span = Some(start..end);
        match self.peek() {
            Some(token) if token.kind != TokenKind::Word => {
                Err(self.expected("',' or the next clause after the FROM sources"))
            }
            _ => Ok(()),
        }
    }

    /// One source: `(SELECT ...)`, `/re/`, or 1–3 dot-separated segments,
    /// the last of which may be a regex (`db.rp./re/`).
    fn source(&mut self, allow_subquery: bool) -> Result<Source, Error> {
        if self.peek_punct("(") {
            if !allow_subquery {
                return Err(self.error_here("subqueries are only allowed in SELECT ... FROM"));
            }
            if self.depth >= MAX_SUBQUERY_DEPTH {
                return Err(self.error_here("subqueries are nested too deeply"));
            }
            let close = self.close_of(self.pos)?;
            let mut inner = Parser {
                src: self.src,
                toks: self.toks,
                close: self.close,
                first: self.pos + 1,
                pos: self.pos + 1,
                end: close,
                depth: self.depth + 1,
            };
            let stmt = inner.subquery()?;
            self.pos = close + 1;
            return Ok(Source::Subquery(Box::new(stmt)));
        }
        let mut segments: Vec<Option<String>> = Vec::new();
        loop {
            match self.peek() {
                Some(token) if token.kind == TokenKind::Regex => {
                    self.pos += 1;
                    let (database, retention_policy) = split_qualifier(segments);
                    return Ok(Source::Regex {
                        database,
                        retention_policy,
                        pattern: token.value.clone(),
                    });
                }
                Some(token) if is_ident(token) => {
                    self.pos += 1;
                    segments.push(Some(token.value.clone()));
                }
                // Empty segment: the middle of `db..mm`.
                Some(token) if token.is_punct(".") && !segments.is_empty() => segments.push(None),
                _ if segments.is_empty() => return Err(self.expected_name("measurement or regex")),
                _ => return Err(self.expected_name("measurement")),
            }
            if segments.len() == 3 || !self.peek_punct(".") {
                break;
            }
            self.pos += 1;
        }
        if self.peek_punct(".") {
            return Err(self.error_here("too many segments in measurement (at most db.rp.name)"));
        }
        let Some(Some(name)) = segments.pop() else {
            return Err(self.expected("measurement"));
        };
        let (database, retention_policy) = split_qualifier(segments);
        Ok(Source::Measurement {
            database,
            retention_policy,
            name,
        })
    }

    /// Remaining clauses: skip tokens (a parenthesised group as one), reading
    /// top-level `LIMIT` / `OFFSET` / `SLIMIT` / `SOFFSET` integers.
    fn tail(&mut self, stmt: &mut Statement) -> Result<(), Error> {
        while let Some(token) = self.peek() {
            if token.is_punct("(") {
                self.pos = self.close_of(self.pos)? + 1;
                continue;
            }
            self.pos += 1;
            let slot = if token.is_keyword("limit") {
                &mut stmt.limit
            } else if token.is_keyword("offset") {
                &mut stmt.offset
            } else if token.is_keyword("slimit") {
                &mut stmt.slimit
            } else if token.is_keyword("soffset") {
                &mut stmt.soffset
            } else {
                continue;
            };
            let n = self.integer()?;
            *slot = (n != 0).then_some(n);
        }
        Ok(())
    }

    fn integer(&mut self) -> Result<u64, Error> {
        match self.peek() {
            Some(token)
                if token.kind == TokenKind::Number
                    && token.value.bytes().all(|b| b.is_ascii_digit()) =>
            {
                let n = token
                    .value
                    .parse::<u64>()
                    .map_err(|_| self.error_here("integer out of range"))?;
                self.pos += 1;
                Ok(n)
            }
            _ => Err(self.expected("integer")),
        }
    }

    // ---- SHOW -------------------------------------------------------------

    fn show(&mut self) -> Result<Statement, Error> {
        let Some(word) = self.next_word() else {
            return Err(self.unsupported());
        };
        match word.as_str() {
            "measurements" => self.show_body(StatementKind::ShowMeasurements),
            "measurement" => self.cardinality(StatementKind::ShowMeasurementCardinality),
            "series" if self.peek_keyword("exact") || self.peek_keyword("cardinality") => {
                self.cardinality(StatementKind::ShowSeriesCardinality)
            }
            "series" => self.show_body(StatementKind::ShowSeries),
            "field" if self.eat_keyword("keys") => self.show_body(StatementKind::ShowFieldKeys),
            "field" if self.eat_keyword("key") => {
                self.cardinality(StatementKind::ShowFieldKeyCardinality)
            }
            "field" => Err(self.expected("KEYS or KEY CARDINALITY")),
            "tag" if self.eat_keyword("keys") => self.show_body(StatementKind::ShowTagKeys),
            "tag" if self.eat_keyword("key") => {
                self.cardinality(StatementKind::ShowTagKeyCardinality)
            }
            "tag" if self.eat_keyword("values") => {
                if self.peek_keyword("exact") || self.peek_keyword("cardinality") {
                    self.cardinality(StatementKind::ShowTagValuesCardinality)
                } else {
                    self.show_body(StatementKind::ShowTagValues)
                }
            }
            "tag" => Err(self.expected("KEYS, VALUES or KEY CARDINALITY")),
            "retention" => {
                self.expect_keyword("policies")?;
                let mut stmt = Statement::new(StatementKind::ShowRetentionPolicies);
                if self.eat_keyword("on") {
                    stmt.database = non_empty(Some(self.ident()?));
                }
                Ok(stmt)
            }
            "databases" => Ok(Statement::new(StatementKind::ShowDatabases)),
            "stats" => Ok(Statement::new(StatementKind::ShowStats)),
            "users" => Err(forbidden("SHOW USERS", USER_MANAGEMENT)),
            "grants" => Err(forbidden("SHOW GRANTS", USER_MANAGEMENT)),
            "queries" => Err(forbidden("SHOW QUERIES", QUERY_MANAGEMENT)),
            "continuous" => Err(forbidden("SHOW CONTINUOUS QUERIES", CONTINUOUS_QUERIES)),
            "subscriptions" => Err(forbidden("SHOW SUBSCRIPTIONS", SUBSCRIPTIONS)),
            "shards" => Err(forbidden("SHOW SHARDS", SHARDS)),
            "shard" => Err(forbidden("SHOW SHARD GROUPS", SHARDS)),
            "diagnostics" => Err(forbidden("SHOW DIAGNOSTICS", DIAGNOSTICS)),
            _ => Err(self.unsupported()),
        }
    }

    /// `[EXACT] CARDINALITY` then the usual SHOW clauses.
    fn cardinality(&mut self, kind: StatementKind) -> Result<Statement, Error> {
        let exact = self.eat_keyword("exact");
        self.expect_keyword("cardinality")?;
        let mut stmt = self.show_body(kind)?;
        stmt.exact = exact;
        Ok(stmt)
    }

    /// `[ON db] [FROM sources] [WITH MEASUREMENT|KEY cond] rest`.
    fn show_body(&mut self, kind: StatementKind) -> Result<Statement, Error> {
        let mut stmt = Statement::new(kind);
        if self.eat_keyword("on") {
            stmt.database = non_empty(Some(self.ident()?));
        }
        if self.eat_keyword("from") {
            self.sources(&mut stmt, false)?;
        }
        match kind {
            StatementKind::ShowMeasurements if self.eat_keyword("with") => {
                self.expect_keyword("measurement")?;
                stmt.with_measurement = Some(self.with_condition()?);
            }
            StatementKind::ShowTagValues | StatementKind::ShowTagValuesCardinality => {
                if !self.eat_keyword("with") {
                    return Err(self.expected("WITH KEY"));
                }
                self.expect_keyword("key")?;
                stmt.with_key = Some(self.with_condition()?);
            }
            _ => {}
        }
        self.tail(&mut stmt)?;
        derive_database(&mut stmt);
        Ok(stmt)
    }

    /// `= x`, `!= x`, `=~ /re/`, `!~ /re/`, `<> x` or `IN (...)`; returns the
    /// text as written.
    fn with_condition(&mut self) -> Result<String, Error> {
        const OPERATORS: &str = "=, !=, <>, =~, !~ or IN";
        let Some(op) = self.peek() else {
            return Err(self.expected(OPERATORS));
        };
        let start = op.start;
        let end = if op.is_keyword("in") {
            self.pos += 1;
            if !self.peek_punct("(") {
                return Err(self.expected("("));
            }
            let close = self.close_of(self.pos)?;
            self.pos = close + 1;
            self.toks.get(close).map_or(start, |t| t.end)
        } else if ["=", "!=", "<>", "=~", "!~"].iter().any(|p| op.is_punct(p)) {
            self.pos += 1;
            match self.peek() {
                Some(value)
                    if is_ident(value)
                        || matches!(value.kind, TokenKind::Regex | TokenKind::Str) =>
                {
                    self.pos += 1;
                    value.end
                }
                _ => return Err(self.expected("identifier, string or regex")),
            }
        } else {
            return Err(self.expected(OPERATORS));
        };
        Ok(self.src.get(start..end).unwrap_or_default().to_string())
    }

    // ---- CREATE / ALTER / DROP / DELETE -----------------------------------

    fn create(&mut self) -> Result<Statement, Error> {
        match self.next_word().as_deref() {
            Some("database") => {
                let mut stmt = Statement::new(StatementKind::CreateDatabase);
                stmt.database = Some(self.ident()?);
                // `WITH [DURATION d] [REPLICATION n] [SHARD DURATION d] [NAME rp]`
                stmt.retention = self.retention_settings(&mut stmt)?;
                Ok(stmt)
            }
            Some("retention") => self.retention_policy(StatementKind::CreateRetentionPolicy),
            Some("user") => Err(forbidden("CREATE USER", USER_MANAGEMENT)),
            Some("continuous") => Err(forbidden("CREATE CONTINUOUS QUERY", CONTINUOUS_QUERIES)),
            Some("subscription") => Err(forbidden("CREATE SUBSCRIPTION", SUBSCRIPTIONS)),
            _ => Err(self.unsupported()),
        }
    }

    fn drop(&mut self) -> Result<Statement, Error> {
        match self.next_word().as_deref() {
            Some("database") => {
                let mut stmt = Statement::new(StatementKind::DropDatabase);
                stmt.database = Some(self.ident()?);
                Ok(stmt)
            }
            Some("retention") => self.retention_policy(StatementKind::DropRetentionPolicy),
            Some("measurement") => {
                let mut stmt = Statement::new(StatementKind::DropMeasurement);
                let span = self.peek().map(|t| t.start..t.end);
                let name = self.ident()?;
                stmt.sources.push(Source::Measurement {
                    database: None,
                    retention_policy: None,
                    name,
                });
                stmt.sources_span = span;
                Ok(stmt)
            }
            Some("series") => self.series_delete(StatementKind::DropSeries),
            Some("user") => Err(forbidden("DROP USER", USER_MANAGEMENT)),
            Some("continuous") => Err(forbidden("DROP CONTINUOUS QUERY", CONTINUOUS_QUERIES)),
            Some("subscription") => Err(forbidden("DROP SUBSCRIPTION", SUBSCRIPTIONS)),
            Some("shard") => Err(forbidden("DROP SHARD", SHARDS)),
            _ => Err(self.unsupported()),
        }
    }

    fn alter(&mut self) -> Result<Statement, Error> {
        match self.next_word().as_deref() {
            Some("retention") => self.retention_policy(StatementKind::AlterRetentionPolicy),
            _ => Err(self.unsupported()),
        }
    }

    /// After `CREATE|ALTER|DROP RETENTION`: `POLICY name ON db ...`.
    fn retention_policy(&mut self, kind: StatementKind) -> Result<Statement, Error> {
        self.expect_keyword("policy")?;
        let mut stmt = Statement::new(kind);
        stmt.retention_policy = Some(self.ident()?);
        self.expect_keyword("on")?;
        stmt.database = Some(self.ident()?);
        if kind != StatementKind::DropRetentionPolicy {
            stmt.retention = self.retention_settings(&mut stmt)?;
        }
        Ok(stmt)
    }

    /// The rest of a statement that sets a retention policy: `DURATION d`, `SHARD DURATION
    /// d`, `DEFAULT`, `REPLICATION n` and (`CREATE DATABASE ... WITH`) `NAME rp`, in any
    /// order. `None` when a duration is not one InfluxDB accepts.
    fn retention_settings(
        &mut self,
        stmt: &mut Statement,
    ) -> Result<Option<RetentionSettings>, Error> {
        let mut settings = RetentionSettings::default();
        let mut valid = true;
        while let Some(token) = self.bump() {
            if token.is_keyword("name") {
                stmt.retention_policy = non_empty(Some(self.ident()?));
            } else if token.is_keyword("default") {
                settings.default = true;
            } else if token.is_keyword("shard") {
                if self.eat_keyword("duration") {
                    settings.shard_duration_ns = self.bump().and_then(duration_ns);
                    valid &= settings.shard_duration_ns.is_some();
                }
            } else if token.is_keyword("duration") {
                settings.duration_ns = self.bump().and_then(duration_ns);
                valid &= settings.duration_ns.is_some();
            }
        }
        Ok(valid.then_some(settings))
    }

    /// After `DELETE` / `DROP SERIES`: `[FROM sources] [WHERE ...]`, at least
    /// one of the two.
    fn series_delete(&mut self, kind: StatementKind) -> Result<Statement, Error> {
        let mut stmt = Statement::new(kind);
        if self.eat_keyword("from") {
            self.sources(&mut stmt, false)?;
        }
        match self.peek() {
            Some(token) if token.is_keyword("where") => {}
            None if !stmt.sources.is_empty() => {}
            _ if stmt.sources.is_empty() => return Err(self.expected("FROM or WHERE")),
            _ => return Err(self.expected("WHERE")),
        }
        self.tail(&mut stmt)?;
        derive_database(&mut stmt);
        Ok(stmt)
    }
}

/// A duration literal as InfluxQL's `ParseDuration` reads it (`1h30m`, `7d`, `100ms`, `2w`;
/// integers only; `u` and `µ` are microseconds), or `INF` (0), in nanoseconds.
fn duration_ns(token: &Token) -> Option<i64> {
    if token.kind == TokenKind::Word && token.value.eq_ignore_ascii_case("inf") {
        return Some(0);
    }
    if token.kind != TokenKind::Number {
        return None;
    }
    let mut rest = token.value.as_str();
    let mut total: i64 = 0;
    while !rest.is_empty() {
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        let n: i64 = rest.get(..digits)?.parse().ok()?;
        rest = rest.get(digits..)?;
        let (unit, scale): (&str, i64) = [
            ("ns", 1),
            ("ms", 1_000_000),
            ("u", 1_000),
            ("\u{b5}", 1_000),
            ("s", 1_000_000_000),
            ("m", 60_000_000_000),
            ("h", 3_600_000_000_000),
            ("d", 86_400_000_000_000),
            ("w", 604_800_000_000_000),
        ]
        .into_iter()
        .find(|(unit, _)| rest.starts_with(unit))?;
        rest = &rest[unit.len()..];
        total = total.checked_add(n.checked_mul(scale)?)?;
    }
    Some(total)
}

/// `[]` → (None, None); `[rp]` → (None, rp); `[db, rp]` → (db, rp).
fn split_qualifier(segments: Vec<Option<String>>) -> (Option<String>, Option<String>) {
    let mut it = segments.into_iter();
    match (it.next(), it.next()) {
        (Some(rp), None) => (None, non_empty(rp)),
        (Some(db), Some(rp)) => (non_empty(db), non_empty(rp)),
        _ => (None, None),
    }
}

/// Fill the statement-level database / retention policy from the first source
/// naming one (depth-first), unless already set by `ON` or DDL.
fn derive_database(stmt: &mut Statement) {
    for source in &stmt.sources {
        let (db, rp) = match source {
            Source::Subquery(sub) => (sub.database.as_ref(), sub.retention_policy.as_ref()),
            Source::Measurement {
                database,
                retention_policy,
                ..
            }
            | Source::Regex {
                database,
                retention_policy,
                ..
            } => (database.as_ref(), retention_policy.as_ref()),
        };
        if stmt.database.is_none() {
            stmt.database = db.cloned();
        }
        if stmt.retention_policy.is_none() {
            stmt.retention_policy = rp.cloned();
        }
    }
}

/// At most 40 characters of `text`, with `...` when cut.
fn shorten(text: &str) -> String {
    const MAX: usize = 40;
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text.to_string(),
    }
}
