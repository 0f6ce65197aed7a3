//! `influx-proxy top`: a terminal dashboard of a running proxy, refreshed every second.
//!
//! Everything it shows comes from `/metrics` (so Prometheus, and the Grafana dashboard in
//! `packaging/grafana/`, see the same): per backend its state, points in and delivered per
//! second, queue depth and oldest age, p99 write latency and dead letters; per circle its
//! share of the reads; migrations with their progress bars, rate and ETA.
//!
//! - [`scrape`] reads the Prometheus text format (pure);
//! - [`model`] turns two scrapes into rates and rows (pure);
//! - [`view`] draws them with ratatui (crossterm backend), or as plain text (`--once`).
//!
//! A thread scrapes every `--interval`, so a slow or unreachable proxy never freezes the keys;
//! a failed scrape shows in the status line and the next one is tried at the next tick. The
//! terminal is restored on every way out: `q`, Esc, Ctrl-C, an error (a guard's `Drop`) and a
//! panic (ratatui's panic hook).

mod model;
mod scrape;
mod view;

use std::process::ExitCode;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use clap::Parser;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use super::client::{ConnectArgs, Target};
use model::{Model, Scrape};
use scrape::Metrics;
use view::{Source, Ui};

/// `influx-proxy top`'s flags.
#[derive(Debug, Parser)]
#[command(
    name = "top",
    bin_name = "influx-proxy top",
    version,
    about = "Live terminal dashboard of a running proxy (from its /metrics)",
    after_help = "Keys: q, Esc or Ctrl-C quit; s cycles the backends' sort column, r reverses \
                  it; / filters backends by name or circle (Enter keeps the filter, Esc \
                  clears it)."
)]
pub struct Args {
    /// Which proxy, and how to reach it (the same flags as `ctl`).
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Time between two scrapes of /metrics (`1s`, `500ms`, `2s`, or seconds)
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_interval)]
    pub interval: Duration,
    /// Print one frame as plain text and exit (two scrapes, --interval apart, for the rates);
    /// exit status 1 when the proxy cannot be scraped
    #[arg(long)]
    pub once: bool,
}

/// Shortest `--interval`: the proxy renders every metric at each scrape.
const MIN_INTERVAL: Duration = Duration::from_millis(100);
/// How long the keyboard is waited for between two looks at the scrapes.
const KEY_POLL: Duration = Duration::from_millis(100);
/// Width of a `--once` frame when standard output is not a terminal.
const PLAIN_WIDTH: u16 = 160;

fn parse_interval(text: &str) -> Result<Duration, String> {
    let parsed = match text.parse::<f64>() {
        Ok(secs) if secs.is_finite() && secs >= 0.0 => Some(Duration::from_secs_f64(secs)),
        Ok(_) => None,
        Err(_) => crate::config::parse_go_duration(text),
    };
    match parsed {
        Some(d) if d >= MIN_INTERVAL => Ok(d),
        Some(_) => Err(format!("at least {}ms", MIN_INTERVAL.as_millis())),
        None => Err("expected a duration such as 1s, 500ms or 2".into()),
    }
}

/// Runs `top`; `args` start with `top`.
pub fn run(args: Vec<String>) -> ExitCode {
    let args = match Args::try_parse_from(args) {
        Ok(args) => args,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    // A scrape may wait a little past the interval; never for ever.
    let timeout = args.interval.max(Duration::from_secs(10));
    let target = match args.connect.target(timeout) {
        Ok(target) => target,
        Err(e) => {
            eprintln!("influx-proxy top: {e}");
            return ExitCode::from(1);
        }
    };
    let source = Source {
        base: target.base().to_string(),
        interval: args.interval,
        interactive: !args.once,
    };
    let result = if args.once {
        once(&target, &source)
    } else {
        interactive(target, &source)
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("influx-proxy top: {e}");
            ExitCode::from(1)
        }
    }
}

/// One scrape of `/metrics`, parsed.
fn scrape(target: &Target) -> Result<Metrics, String> {
    let text = target.get_text("/metrics").map_err(|e| e.to_string())?;
    Metrics::parse(&text).map_err(|e| e.to_string())
}

/// Takes a scrape's outcome into the model.
fn take(model: &mut Model, at: Instant, result: Result<Metrics, String>) {
    match result {
        Ok(metrics) => model.push(Scrape { at, metrics }),
        Err(e) => model.fail(e),
    }
}

/// `--once`: two scrapes an interval apart, the frame as text.
fn once(target: &Target, source: &Source) -> Result<(), String> {
    let mut model = Model::default();
    scrape(target).map(|m| take(&mut model, Instant::now(), Ok(m)))?;
    std::thread::sleep(source.interval);
    scrape(target).map(|m| take(&mut model, Instant::now(), Ok(m)))?;
    // A terminal's width; a pipe's is fixed, whatever terminal the process came from.
    let width = if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        ratatui::crossterm::terminal::size().map_or(PLAIN_WIDTH, |(w, _)| w)
    } else {
        PLAIN_WIDTH
    };
    print!(
        "{}",
        view::plain(&model.frame(), &Ui::default(), source, width)
    );
    Ok(())
}

/// A scrape's outcome and when it came.
type Scraped = (Instant, Result<Metrics, String>);

/// Scrapes `target` every `interval` on a thread of its own, for as long as the receiver
/// lives.
fn spawn_scraper(target: Target, interval: Duration) -> Result<mpsc::Receiver<Scraped>, String> {
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("top-scrape".into())
        .spawn(move || loop {
            let started = Instant::now();
            let result = scrape(&target);
            if tx.send((Instant::now(), result)).is_err() {
                return;
            }
            std::thread::sleep(interval.saturating_sub(started.elapsed()));
        })
        .map_err(|e| format!("cannot start the scraping thread: {e}"))?;
    Ok(rx)
}

/// Restores the terminal when dropped: the way out of every return and `?` of
/// [`interactive`] (a panic is covered by the hook `ratatui::try_init` installs).
struct Restore;

impl Drop for Restore {
    fn drop(&mut self) {
        ratatui::restore();
    }
}

/// The dashboard, until a quit key.
fn interactive(target: Target, source: &Source) -> Result<(), String> {
    let scrapes = spawn_scraper(target, source.interval)?;
    let mut terminal = ratatui::try_init().map_err(|e| {
        ratatui::restore();
        format!("cannot take over the terminal ({e}); use --once for plain text")
    })?;
    let _restore = Restore;
    let mut model = Model::default();
    let mut ui = Ui::default();
    let mut dirty = true;
    loop {
        while let Ok((at, result)) = scrapes.try_recv() {
            take(&mut model, at, result);
            dirty = true;
        }
        if dirty {
            let frame = model.frame();
            terminal
                .draw(|f| view::draw(f, &frame, &ui, source))
                .map_err(|e| format!("cannot draw: {e}"))?;
            dirty = false;
        }
        if !event::poll(KEY_POLL).map_err(|e| format!("cannot read the keyboard: {e}"))? {
            continue;
        }
        match event::read().map_err(|e| format!("cannot read the keyboard: {e}"))? {
            Event::Key(key) => {
                if on_key(&mut ui, key) == Flow::Quit {
                    return Ok(());
                }
                dirty = true;
            }
            Event::Resize(..) => dirty = true,
            _ => {}
        }
    }
}

/// Whether to go on after a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    Continue,
    Quit,
}

/// What a key does: quit, sort, filter.
fn on_key(ui: &mut Ui, key: KeyEvent) -> Flow {
    if key.kind == KeyEventKind::Release {
        return Flow::Continue;
    }
    if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
        return Flow::Quit;
    }
    if ui.editing {
        match key.code {
            KeyCode::Enter => ui.editing = false,
            KeyCode::Esc => {
                ui.filter.clear();
                ui.editing = false;
            }
            KeyCode::Backspace => {
                ui.filter.pop();
            }
            KeyCode::Char(c) => ui.filter.push(c),
            _ => {}
        }
        return Flow::Continue;
    }
    match key.code {
        KeyCode::Char('q') => return Flow::Quit,
        // Esc first clears a filter, then quits.
        KeyCode::Esc if !ui.filter.is_empty() => ui.filter.clear(),
        KeyCode::Esc => return Flow::Quit,
        KeyCode::Char('s') => ui.sort = ui.sort.next(),
        KeyCode::Char('r') => ui.reverse = !ui.reverse,
        KeyCode::Char('/') => ui.editing = true,
        _ => {}
    }
    Flow::Continue
}

#[cfg(test)]
mod tests {
    use super::model::SortBy;
    use super::*;

    fn press(ui: &mut Ui, code: KeyCode) -> Flow {
        on_key(ui, KeyEvent::new(code, KeyModifiers::NONE))
    }

    #[test]
    fn keys_quit_sort_and_filter() {
        let mut ui = Ui::default();
        assert_eq!(press(&mut ui, KeyCode::Char('s')), Flow::Continue);
        assert_eq!(ui.sort, SortBy::Name);
        press(&mut ui, KeyCode::Char('r'));
        assert!(ui.reverse);
        press(&mut ui, KeyCode::Char('/'));
        for c in "1-q".chars() {
            assert_eq!(press(&mut ui, KeyCode::Char(c)), Flow::Continue);
        }
        press(&mut ui, KeyCode::Backspace);
        press(&mut ui, KeyCode::Enter);
        assert_eq!((ui.filter.as_str(), ui.editing), ("1-", false));
        // Esc clears the filter first, then quits.
        assert_eq!(press(&mut ui, KeyCode::Esc), Flow::Continue);
        assert!(ui.filter.is_empty());
        assert_eq!(press(&mut ui, KeyCode::Esc), Flow::Quit);
        assert_eq!(press(&mut Ui::default(), KeyCode::Char('q')), Flow::Quit);
        let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
        let mut editing = Ui {
            editing: true,
            ..Ui::default()
        };
        assert_eq!(on_key(&mut editing, ctrl_c), Flow::Quit);
    }

    #[test]
    fn intervals_are_durations_or_seconds_with_a_floor() {
        assert_eq!(parse_interval("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_interval("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_interval("2"), Ok(Duration::from_secs(2)));
        assert!(parse_interval("10ms").is_err());
        assert!(parse_interval("soon").is_err());
        assert!(parse_interval("-1").is_err());
    }

    #[test]
    fn flags_parse_and_help_lists_the_keys() {
        let args = Args::try_parse_from([
            "top",
            "--url",
            "http://h:1",
            "-u",
            "admin",
            "--interval",
            "2s",
            "--once",
            "-k",
        ])
        .unwrap();
        assert_eq!(args.connect.url.as_deref(), Some("http://h:1"));
        assert_eq!(args.connect.username.as_deref(), Some("admin"));
        assert!(args.connect.insecure && args.once);
        assert_eq!(args.interval, Duration::from_secs(2));
        let help = Args::try_parse_from(["top", "--help"])
            .unwrap_err()
            .to_string();
        assert!(help.contains("Usage: influx-proxy top [OPTIONS]"), "{help}");
        assert!(
            help.contains("s cycles the backends' sort column"),
            "{help}"
        );
    }
}
