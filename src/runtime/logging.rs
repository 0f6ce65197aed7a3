//! Logging: structured events to journald when running under systemd,
//! human-readable lines on stderr otherwise. The level can change at run
//! time (config reload).
//!
//! Values logged come from requests (a database name, a query, a client's
//! error text); in the text format a line break in one of them would start
//! a new line that looks like the proxy's own. So the text format escapes
//! control characters in every field value, the message included
//! ([`EscapedFields`]), and no call site has to remember to. journald gets
//! each field as a separate binary-safe value and needs nothing.

use std::fmt;
use std::io::IsTerminal as _;
use std::sync::OnceLock;

use tracing::field::{Field, Visit};
use tracing_subscriber::field::{MakeVisitor, VisitFmt, VisitOutput};
use tracing_subscriber::fmt::format::{DefaultFields, Writer};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{reload, EnvFilter, Registry};

static FILTER: OnceLock<reload::Handle<EnvFilter, Registry>> = OnceLock::new();

fn filter(level: &str) -> EnvFilter {
    EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"))
}

/// Installs the global subscriber. `RUST_LOG` overrides `level`.
pub fn init(level: &str) {
    let (filter, handle) = reload::Layer::new(filter(level));
    let _ = FILTER.set(handle);
    let registry = tracing_subscriber::registry().with(filter);
    // systemd sets JOURNAL_STREAM for services whose output goes to the
    // journal; only then are native journald fields worth sending.
    if std::env::var_os("JOURNAL_STREAM").is_some() {
        if let Ok(journald) = tracing_journald::layer() {
            let _ = registry
                .with(journald.with_syslog_identifier("influx-proxy".into()))
                .try_init();
            return;
        }
    }
    let _ = registry
        .with(
            tracing_subscriber::fmt::layer()
                .fmt_fields(EscapedFields::default())
                .with_writer(std::io::stderr)
                .with_ansi(std::io::stderr().is_terminal()),
        )
        .try_init();
}

/// The text format's fields: [`DefaultFields`], with control characters in every value
/// escaped (`\n`, `\r`, `\u{1b}`, ...), so that one event is always one line.
#[derive(Debug, Default)]
struct EscapedFields(DefaultFields);

impl<'a> MakeVisitor<Writer<'a>> for EscapedFields {
    type Visitor = Escaping<<DefaultFields as MakeVisitor<Writer<'a>>>::Visitor>;

    fn make_visitor(&self, target: Writer<'a>) -> Self::Visitor {
        Escaping(self.0.make_visitor(target))
    }
}

/// A field visitor that hands `V` every value with its control characters escaped.
#[derive(Debug)]
struct Escaping<V>(V);

impl<V: Visit> Visit for Escaping<V> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.record_debug(field, &Escaped(value));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        // The message is written as it is, other strings quoted: as `DefaultFields` does.
        if field.name() == "message" {
            self.record_debug(field, &format_args!("{value}"));
        } else {
            self.record_debug(field, &value);
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.record_debug(field, &format_args!("{}", ErrorChain(value)));
    }
}

impl<V: VisitOutput<fmt::Result>> VisitOutput<fmt::Result> for Escaping<V> {
    fn finish(self) -> fmt::Result {
        self.0.finish()
    }
}

impl<V: VisitFmt> VisitFmt for Escaping<V> {
    fn writer(&mut self) -> &mut dyn fmt::Write {
        self.0.writer()
    }
}

/// A value whose `Debug` form is written with its control characters escaped.
struct Escaped<'a>(&'a dyn fmt::Debug);

impl fmt::Debug for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use fmt::Write as _;
        write!(EscapeControl(f), "{:?}", self.0)
    }
}

/// Writes through to `f`, each control character as its Rust escape (`\n`, `\u{7}`).
struct EscapeControl<'a, 'b>(&'a mut fmt::Formatter<'b>);

impl fmt::Write for EscapeControl<'_, '_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut rest = s;
        while let Some(at) = rest.find(char::is_control) {
            self.0.write_str(&rest[..at])?;
            let c = rest[at..].chars().next().unwrap_or_default();
            write!(self.0, "{}", c.escape_debug())?;
            rest = &rest[at + c.len_utf8()..];
        }
        self.0.write_str(rest)
    }
}

/// An error and its sources, `error: source: source`.
struct ErrorChain<'a>(&'a (dyn std::error::Error + 'static));

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(s) = source {
            write!(f, ": {s}")?;
            source = s.source();
        }
        Ok(())
    }
}

/// Changes the log filter (`RUST_LOG`, when set, still wins).
pub fn set_level(level: &str) -> Result<(), String> {
    match FILTER.get() {
        Some(handle) => handle.reload(filter(level)).map_err(|e| e.to_string()),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the text format writes for one event, without time and level.
    fn logged(event: impl FnOnce()) -> String {
        let out = std::sync::Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
        let sink = std::sync::Arc::clone(&out);
        let subscriber = tracing_subscriber::fmt()
            .fmt_fields(EscapedFields::default())
            .without_time()
            .with_target(false)
            .with_level(false)
            .with_ansi(false)
            .with_writer(move || Sink(std::sync::Arc::clone(&sink)))
            .finish();
        tracing::subscriber::with_default(subscriber, event);
        let text = out.lock().map(|b| b.clone()).unwrap_or_default();
        String::from_utf8(text).unwrap_or_default()
    }

    struct Sink(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if let Ok(mut b) = self.0.lock() {
                b.extend_from_slice(buf);
            }
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    const FORGED: &str =
        "x\n2026-01-01T00:00:00Z  INFO influx_proxy: forged\r\nforged too\u{1b}[2J";

    #[test]
    fn every_field_value_is_escaped_to_one_line() {
        let text = logged(|| {
            tracing::warn!(
                db = %FORGED,
                rp = ?FORGED,
                query = FORGED,
                "Write to {FORGED}."
            )
        });
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(!text.contains('\r') && !text.contains('\u{1b}'), "{text}");
        assert!(
            text.starts_with("Write to x\\n2026-01-01T00:00:00Z  INFO"),
            "{text}"
        );
        assert!(
            text.contains(
                r"db=x\n2026-01-01T00:00:00Z  INFO influx_proxy: forged\r\nforged too\u{1b}[2J"
            ),
            "{text}"
        );
        assert!(text.contains(r#"rp="x\n2026"#), "{text}");
        assert!(text.contains(r#"query="x\n2026"#), "{text}");
    }

    #[test]
    fn errors_are_escaped_with_their_sources() {
        #[derive(Debug, thiserror::Error)]
        #[error("outer\nforged")]
        struct Outer(#[source] std::io::Error);
        let e = Outer(std::io::Error::other("inner\rforged"));
        let text = logged(|| tracing::error!(error = &e as &dyn std::error::Error, "Failed."));
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(
            text.contains(r"error=outer\nforged: inner\rforged"),
            "{text}"
        );
    }

    #[test]
    fn plain_values_are_written_as_before() {
        let text =
            logged(|| tracing::info!(db = %"telegraf", points = 5u64, name = "a b", "Write."));
        assert_eq!(text, "Write. db=telegraf points=5 name=\"a b\"\n");
    }
}
