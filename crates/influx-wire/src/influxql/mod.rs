//! Pure InfluxQL classifier: decides how the proxy may run a `q` parameter.
//!
//! The HTTP layer calls, in order:
//! 1. [`split_statements`]: cut `q` at top-level `;` (never inside quotes,
//!    regex literals or comments), dropping empty statements;
//! 2. [`classify`] on each statement: its [`StatementKind`], the database / retention
//!    policy it names, and its FROM [`Source`]s (measurements, regexes and
//!    subqueries, each possibly qualified `db.rp.mm`, `db..mm`, `rp.mm`);
//! 3. for fan-out SHOW statements, [`without_limit_offset`] plus the parsed
//!    [`Statement::limit`] / [`Statement::offset`] to page *after* merging.
//!
//! Compared with the Go proxy (spec §8.2–8.3, §14 item 3/4) this module is
//! stricter and correct: multi-statement queries, `FROM a, b`, `FROM /re/` and
//! subqueries are understood instead of being routed by a garbage key; any
//! whitespace (newlines from Grafana) separates words; the identifier
//! `measurement` before FROM no longer hijacks extraction; quoted identifiers
//! may contain dots, commas, spaces and quotes. Statements the proxy cannot run
//! correctly are refused with a client-facing [`Error`] naming the statement.
//!
//! The other way round, every statement the proxy builds itself names things
//! through [`quote_ident`] (and [`quote_string`], [`quote_regex`]), the
//! one spelling influxd's scanner reads back as exactly that name; and
//! [`check_name`] says whether influxd would create a database or retention
//! policy of a given name at all (see `names`).
//!
//! Scope: this is a classifier, not a full InfluxQL parser. Field lists,
//! WHERE / GROUP BY expressions and other clauses are only tokenised (to find
//! parentheses, LIMIT/OFFSET and the FROM keyword) and are forwarded untouched,
//! so InfluxDB remains the judge of their validity.
//!
//! Invariants:
//! * pure: no I/O, no global state, no `unsafe`;
//! * never panics, whatever the input (property-tested in `tests.rs`);
//! * token boundaries match the InfluxQL scanner (see the `tokenizer`
//!   module docs), so a statement is split exactly where InfluxDB would;
//! * names are returned unquoted and unescaped; positions in
//!   [`Error::Syntax`] are relative to the text passed to the function.

mod names;
mod statements;
mod tokenizer;

#[cfg(test)]
mod tests;

use std::fmt;
use std::ops::Range;

pub use names::{check_name, check_write_target, go_quote, NameError, Unwritable, MAX_NAME_BYTES};
use tokenizer::{tokenize, TokenKind};

/// Why a query or statement cannot run through the proxy. `Display` gives the
/// message to return to the client (the HTTP layer answers 400 with
/// `{"error": "<message>"}`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The query (or statement) contains nothing but whitespace, comments and
    /// `;`.
    #[error("empty query")]
    Empty,
    /// A valid InfluxQL statement that must not go through a sharding proxy
    /// (user management, `SELECT ... INTO`, continuous queries, shards, ...).
    #[error("{statement} is not supported through influx-proxy: {reason}")]
    Forbidden {
        /// The statement, upper case, e.g. `GRANT` or `SELECT INTO`.
        statement: String,
        /// Why, and what to do instead.
        reason: String,
    },
    /// An unknown statement, or a form the proxy cannot route (e.g. `SELECT`
    /// without `FROM`). The payload is the whole client-facing message.
    #[error("{0}")]
    Unsupported(String),
    /// Lexical or structural error: unterminated quote, regex or comment,
    /// unbalanced parentheses, a missing identifier, ...
    #[error("error parsing query: {message} at {position}")]
    Syntax {
        /// What was wrong, InfluxDB style (`found X, expected Y`).
        message: String,
        /// Where, in the text given to the function that failed.
        position: Position,
    },
    /// A statement creating a database or retention policy whose name
    /// influxd refuses ([`creation_refusal`]); influxd's own text.
    #[error(transparent)]
    Name(#[from] NameError),
}

/// A location in query text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// Byte offset (0-based).
    pub offset: usize,
    /// Line number (1-based).
    pub line: usize,
    /// Character (not byte) within the line (1-based).
    pub column: usize,
}

impl Position {
    /// Position of byte `offset` in `src` (clamped to the text).
    pub(crate) fn locate(src: &str, offset: usize) -> Self {
        let mut offset = offset.min(src.len());
        while !src.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = &src[..offset];
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        Position {
            offset,
            line: before.matches('\n').count() + 1,
            column: before[line_start..].chars().count() + 1,
        }
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}, char {}", self.line, self.column)
    }
}

/// Statement families the proxy can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StatementKind {
    /// `SELECT ... FROM ...` (never `INTO`).
    Select,
    /// `SHOW MEASUREMENTS [ON db] [WITH MEASUREMENT ...] [WHERE] [LIMIT] [OFFSET]`.
    ShowMeasurements,
    /// `SHOW SERIES [ON db] [FROM ...] [WHERE] [LIMIT] [OFFSET]`.
    ShowSeries,
    /// `SHOW FIELD KEYS [ON db] [FROM ...] [LIMIT] [OFFSET]`.
    ShowFieldKeys,
    /// `SHOW TAG KEYS [ON db] [FROM ...] [WHERE] [LIMIT] [OFFSET] [SLIMIT] [SOFFSET]`.
    ShowTagKeys,
    /// `SHOW TAG VALUES [ON db] [FROM ...] WITH KEY ... [WHERE] [LIMIT] [OFFSET]`.
    ShowTagValues,
    /// `SHOW RETENTION POLICIES [ON db]`.
    ShowRetentionPolicies,
    /// `SHOW DATABASES`.
    ShowDatabases,
    /// `SHOW STATS [FOR 'module']`.
    ShowStats,
    /// `SHOW SERIES [EXACT] CARDINALITY ...`; see [`Statement::exact`].
    ShowSeriesCardinality,
    /// `SHOW MEASUREMENT [EXACT] CARDINALITY ...`; see [`Statement::exact`].
    ShowMeasurementCardinality,
    /// `SHOW TAG KEY [EXACT] CARDINALITY ...`; see [`Statement::exact`].
    ShowTagKeyCardinality,
    /// `SHOW TAG VALUES [EXACT] CARDINALITY ... WITH KEY ...`; see [`Statement::exact`].
    ShowTagValuesCardinality,
    /// `SHOW FIELD KEY [EXACT] CARDINALITY ...`; see [`Statement::exact`].
    ShowFieldKeyCardinality,
    /// `CREATE DATABASE name [WITH ...]`.
    CreateDatabase,
    /// `DROP DATABASE name`.
    DropDatabase,
    /// `CREATE RETENTION POLICY name ON db ...`.
    CreateRetentionPolicy,
    /// `ALTER RETENTION POLICY name ON db ...`.
    AlterRetentionPolicy,
    /// `DROP RETENTION POLICY name ON db`.
    DropRetentionPolicy,
    /// `DELETE FROM sources [WHERE ...]` or `DELETE WHERE ...`; no sources means
    /// every measurement.
    DeleteFrom,
    /// `DROP MEASUREMENT name`.
    DropMeasurement,
    /// `DROP SERIES [FROM sources] [WHERE ...]`; no sources means every
    /// measurement.
    DropSeries,
}

impl StatementKind {
    /// The statement head in upper case, e.g. `SHOW TAG VALUES`, for logs and
    /// messages.
    pub fn name(self) -> &'static str {
        match self {
            StatementKind::Select => "SELECT",
            StatementKind::ShowMeasurements => "SHOW MEASUREMENTS",
            StatementKind::ShowSeries => "SHOW SERIES",
            StatementKind::ShowFieldKeys => "SHOW FIELD KEYS",
            StatementKind::ShowTagKeys => "SHOW TAG KEYS",
            StatementKind::ShowTagValues => "SHOW TAG VALUES",
            StatementKind::ShowRetentionPolicies => "SHOW RETENTION POLICIES",
            StatementKind::ShowDatabases => "SHOW DATABASES",
            StatementKind::ShowStats => "SHOW STATS",
            StatementKind::ShowSeriesCardinality => "SHOW SERIES CARDINALITY",
            StatementKind::ShowMeasurementCardinality => "SHOW MEASUREMENT CARDINALITY",
            StatementKind::ShowTagKeyCardinality => "SHOW TAG KEY CARDINALITY",
            StatementKind::ShowTagValuesCardinality => "SHOW TAG VALUES CARDINALITY",
            StatementKind::ShowFieldKeyCardinality => "SHOW FIELD KEY CARDINALITY",
            StatementKind::CreateDatabase => "CREATE DATABASE",
            StatementKind::DropDatabase => "DROP DATABASE",
            StatementKind::CreateRetentionPolicy => "CREATE RETENTION POLICY",
            StatementKind::AlterRetentionPolicy => "ALTER RETENTION POLICY",
            StatementKind::DropRetentionPolicy => "DROP RETENTION POLICY",
            StatementKind::DeleteFrom => "DELETE",
            StatementKind::DropMeasurement => "DROP MEASUREMENT",
            StatementKind::DropSeries => "DROP SERIES",
        }
    }
}

impl fmt::Display for StatementKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One entry of a FROM list (or the target of `DROP MEASUREMENT`). Database and
/// retention policy are only what is written in the source itself; an empty
/// segment (`db..mm`) is `None`. For SHOW statements, `ON db` applies to
/// unqualified sources (see [`Statement::database`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A measurement named literally.
    Measurement {
        /// Database from `db.rp.mm` / `db..mm`.
        database: Option<String>,
        /// Retention policy from `db.rp.mm` / `rp.mm`.
        retention_policy: Option<String>,
        /// Measurement name, unquoted and unescaped.
        name: String,
    },
    /// Every measurement matching a regex (`/re/`, `db.rp./re/`, `rp./re/`).
    Regex {
        /// Database from `db.rp./re/` / `db../re/`.
        database: Option<String>,
        /// Retention policy from `db.rp./re/` / `rp./re/`.
        retention_policy: Option<String>,
        /// The pattern without slashes, `\/` unescaped to `/` (other escapes
        /// kept), exactly as InfluxDB compiles it.
        pattern: String,
    },
    /// A parenthesised `SELECT`; its own sources decide the routing.
    Subquery(Box<Statement>),
}

impl Source {
    /// Database written in this source (`None` for a subquery: look inside).
    pub fn database(&self) -> Option<&str> {
        match self {
            Source::Measurement { database, .. } | Source::Regex { database, .. } => {
                database.as_deref()
            }
            Source::Subquery(_) => None,
        }
    }

    /// Retention policy written in this source (`None` for a subquery).
    pub fn retention_policy(&self) -> Option<&str> {
        match self {
            Source::Measurement {
                retention_policy, ..
            }
            | Source::Regex {
                retention_policy, ..
            } => retention_policy.as_deref(),
            Source::Subquery(_) => None,
        }
    }
}

/// `EXPLAIN` in front of a SELECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Explain {
    /// `EXPLAIN SELECT ...`: the plan, nothing read.
    Plan,
    /// `EXPLAIN ANALYZE SELECT ...`: the query runs and its trace (timings,
    /// blocks decoded) is returned instead of its rows. Read-only.
    Analyze,
}

/// A classified statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// Statement family (`Select` for an `EXPLAIN [ANALYZE] SELECT`, see
    /// [`Statement::explain`]).
    pub kind: StatementKind,
    /// `EXPLAIN` / `EXPLAIN ANALYZE` of a SELECT. A plan is made by the
    /// backend that runs the statement, so it can only be relayed from one
    /// backend, never merged.
    pub explain: Option<Explain>,
    /// Database named inside the statement, quotes stripped: `ON db`, the name
    /// of `CREATE/DROP DATABASE`, the `ON db` of retention-policy DDL, else the
    /// first database written in a source (depth-first through subqueries).
    /// `None` means "use the `db` request parameter". Sources may name other
    /// databases; see [`Statement::databases`].
    pub database: Option<String>,
    /// Retention policy named inside: the policy of retention-policy DDL, the
    /// `NAME` of `CREATE DATABASE ... WITH NAME rp`, else the first one written
    /// in a source (depth-first).
    pub retention_policy: Option<String>,
    /// FROM sources in order (for `DROP MEASUREMENT`: the one measurement).
    /// Empty for statements without FROM; for `DELETE` / `DROP SERIES` that
    /// means every measurement.
    pub sources: Vec<Source>,
    /// Byte range of the source list (or `DROP MEASUREMENT` name) in the
    /// classified text, for callers that rewrite it. For a subquery the range
    /// is still relative to the outermost statement text.
    pub sources_span: Option<Range<usize>>,
    /// Cardinality statements: `EXACT` was given. Without it InfluxDB returns an
    /// estimate (HyperLogLog sketch), which cannot be summed exactly across
    /// backends.
    pub exact: bool,
    /// `SHOW MEASUREMENTS WITH MEASUREMENT <cond>`: the condition text as
    /// written, e.g. `=~ /cpu.*/` or `= "cpu"`.
    pub with_measurement: Option<String>,
    /// `SHOW TAG VALUES ... WITH KEY <cond>`: the condition text as written,
    /// e.g. `= "host"`, `=~ /ho.*/` or `IN ("a", "b")`.
    pub with_key: Option<String>,
    /// Top-level `LIMIT n` (last one wins); `LIMIT 0` means no limit in InfluxDB
    /// and is reported as `None`.
    pub limit: Option<u64>,
    /// Top-level `OFFSET n`; `OFFSET 0` is `None`.
    pub offset: Option<u64>,
    /// Top-level `SLIMIT n` (series limit); `0` is `None`. Kept in the text by
    /// [`without_limit_offset`], so it applies per backend.
    pub slimit: Option<u64>,
    /// Top-level `SOFFSET n`; `0` is `None`. Kept like [`Statement::slimit`].
    pub soffset: Option<u64>,
    /// The settings of `CREATE DATABASE ... WITH`, `CREATE` / `ALTER RETENTION POLICY`, as
    /// written; `None` for other statements, or when a duration in them is not one InfluxDB
    /// would accept (InfluxDB then refuses the statement).
    pub retention: Option<RetentionSettings>,
}

/// What a statement says about a retention policy; `None` for what it leaves out. Durations
/// are in nanoseconds as written (InfluxDB normalises a shard duration itself).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionSettings {
    /// `DURATION d`; 0 for `INF`.
    pub duration_ns: Option<i64>,
    /// `SHARD DURATION d`.
    pub shard_duration_ns: Option<i64>,
    /// `DEFAULT` (retention-policy statements; `CREATE DATABASE`'s policy is always the
    /// default).
    pub default: bool,
}

impl Statement {
    /// An empty statement of `kind`.
    pub(crate) fn new(kind: StatementKind) -> Self {
        Statement {
            kind,
            explain: None,
            database: None,
            retention_policy: None,
            sources: Vec::new(),
            sources_span: None,
            exact: false,
            with_measurement: None,
            with_key: None,
            limit: None,
            offset: None,
            slimit: None,
            soffset: None,
            retention: None,
        }
    }

    /// Every distinct database named anywhere in the statement (`ON`, DDL
    /// names, sources, subqueries), in order of appearance. Use it for the
    /// `db_list` whitelist check; add the `db` parameter when some source is
    /// unqualified.
    pub fn databases(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        collect_databases(self, &mut out);
        out
    }

    /// The measurement and regex sources, with subqueries flattened
    /// (depth-first, in order). These decide the routing.
    pub fn leaf_sources(&self) -> Vec<&Source> {
        let mut out = Vec::new();
        collect_leaves(&self.sources, &mut out);
        out
    }
}

fn collect_databases<'a>(stmt: &'a Statement, out: &mut Vec<&'a str>) {
    push_unique(out, stmt.database.as_deref());
    for source in &stmt.sources {
        match source {
            Source::Subquery(sub) => collect_databases(sub, out),
            other => push_unique(out, other.database()),
        }
    }
}

fn push_unique<'a>(out: &mut Vec<&'a str>, db: Option<&'a str>) {
    if let Some(db) = db {
        if !out.contains(&db) {
            out.push(db);
        }
    }
}

fn collect_leaves<'a>(sources: &'a [Source], out: &mut Vec<&'a Source>) {
    for source in sources {
        match source {
            Source::Subquery(sub) => collect_leaves(&sub.sources, out),
            leaf => out.push(leaf),
        }
    }
}

/// Split a query string into statements at top-level `;` (not inside quotes,
/// regex literals or `--` / `/* */` comments). Empty statements (only
/// whitespace/comments) are dropped; each statement is a trimmed slice of `q`
/// without its `;`.
///
/// Errors: [`Error::Empty`] if no statement remains; [`Error::Syntax`] for an
/// unterminated quote, regex or block comment (positions relative to `q`).
/// Parentheses are not checked here; [`classify`] does that per statement.
pub fn split_statements(q: &str) -> Result<Vec<&str>, Error> {
    let tokens = tokenize(q)?;
    let mut out = Vec::new();
    let mut start = 0;
    let mut has_tokens = false;
    for token in &tokens {
        if token.is_punct(";") {
            if has_tokens {
                out.push(q.get(start..token.start).unwrap_or_default().trim());
            }
            start = token.end;
            has_tokens = false;
        } else {
            has_tokens = true;
        }
    }
    if has_tokens {
        out.push(q.get(start..).unwrap_or_default().trim());
    }
    if out.is_empty() {
        Err(Error::Empty)
    } else {
        Ok(out)
    }
}

/// Classify one statement (trailing `;` allowed; use [`split_statements`] for
/// multi-statement queries — an inner `;` is a syntax error here).
pub fn classify(stmt: &str) -> Result<Statement, Error> {
    statements::parse(stmt)
}

/// `stmt` with its top-level `LIMIT n` and `OFFSET n` clauses removed, for
/// fan-out SHOW statements whose paging must be applied after merging
/// ([`Statement::limit`] / [`Statement::offset`] hold the values).
///
/// Only clauses at parenthesis depth 0 are removed (a subquery keeps its own),
/// together with the whitespace and comments before them. `SLIMIT` / `SOFFSET`
/// are kept: they limit series per backend, which the caller may accept or
/// refuse. Text that does not tokenise is returned unchanged.
pub fn without_limit_offset(stmt: &str) -> String {
    let Ok(tokens) = tokenize(stmt) else {
        return stmt.to_string();
    };
    let mut out = String::with_capacity(stmt.len());
    let mut copied = 0;
    let mut depth = 0usize;
    for (i, token) in tokens.iter().enumerate() {
        if token.is_punct("(") {
            depth += 1;
        } else if token.is_punct(")") {
            depth = depth.saturating_sub(1);
        } else if depth == 0 && (token.is_keyword("limit") || token.is_keyword("offset")) {
            let Some(number) = tokens.get(i + 1).filter(|t| t.kind == TokenKind::Number) else {
                continue;
            };
            let cut_from = match i.checked_sub(1).and_then(|p| tokens.get(p)) {
                Some(prev) => prev.end,
                None => token.start,
            }
            .max(copied);
            out.push_str(stmt.get(copied..cut_from).unwrap_or_default());
            copied = number.end;
        }
    }
    out.push_str(stmt.get(copied..).unwrap_or_default());
    out
}

/// Quote `name` as an InfluxQL identifier: `"` ... `"` with `\` → `\\`,
/// `"` → `\"` and newline → `\n`: the escapes influxd's scanner reads in a
/// quoted identifier, so the result is one token naming exactly `name`
/// (`tests/it/hostile_names.rs` checks it against influxd). Every
/// statement the proxy builds names things through this function.
///
/// A carriage return or NUL has no spelling in InfluxQL: influxd's reader
/// turns CR into a newline and takes NUL for the end of input, each of
/// which ends a quoted identifier as an error. Such a character is kept as
/// it is, so influxd refuses the whole query at parse time and runs none of
/// it (never another statement).
pub fn quote_ident(name: &str) -> String {
    quote(name, '"')
}

/// Quote `s` as an InfluxQL string literal: `'` ... `'` with `\` → `\\`,
/// `'` → `\'` and newline → `\n` (CR and NUL as in [`quote_ident`]).
pub fn quote_string(s: &str) -> String {
    quote(s, '\'')
}

/// `pattern` as an InfluxQL regex literal: `/` ... `/` with `/` → `\/`, the
/// one escape influxd's regex scanner reads (every other backslash goes to
/// the regex as it is). `pattern` is one the tokenizer read, which never
/// ends in a lone backslash, so the result is one token.
pub fn quote_regex(pattern: &str) -> String {
    format!("/{}/", pattern.replace('/', "\\/"))
}

/// The error influxd gives `stmt` without running it because it creates a
/// database or retention policy with a name influxd refuses; `None` for
/// every other statement.
pub fn creation_refusal(stmt: &Statement) -> Option<NameError> {
    let names = match stmt.kind {
        StatementKind::CreateDatabase => {
            [stmt.database.as_deref(), stmt.retention_policy.as_deref()]
        }
        StatementKind::CreateRetentionPolicy => [stmt.retention_policy.as_deref(), None],
        _ => return None,
    };
    names
        .into_iter()
        .flatten()
        .find_map(|n| check_name(n).err())
}

fn quote(s: &str, quote: char) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}
