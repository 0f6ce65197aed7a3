//! How a [`Frame`] is drawn: a header line (version, uptime, memory, queue disk), the
//! backends' table, the circles' read share, the migrations with their progress bars, a
//! status line (the last scrape's error, if any) and the keys.
//!
//! Bars are ASCII (`[#####.....]`) so they read the same in any terminal, a pager, a log or a
//! `tmux capture-pane`. [`plain`] draws the same widgets into a buffer and returns its text:
//! `--once` prints that.

use ratatui::backend::TestBackend;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, Paragraph, Row, Table};
use ratatui::Terminal;

use super::model::{arrange, BackendRow, Frame, MigrationRow, SortBy, State};

/// What the keyboard changed: sort, filter.
#[derive(Debug, Clone, Default)]
pub(crate) struct Ui {
    /// The backends' sort column.
    pub sort: SortBy,
    /// Reverse the sort.
    pub reverse: bool,
    /// Only backends whose name or circle contains it.
    pub filter: String,
    /// `/` was pressed: keys edit the filter.
    pub editing: bool,
}

/// Where the view's numbers come from, for the header.
#[derive(Debug, Clone)]
pub(crate) struct Source {
    /// The proxy's base URL.
    pub base: String,
    /// The refresh interval, as given.
    pub interval: std::time::Duration,
    /// Keys work (not `--once`): the help line shows them.
    pub interactive: bool,
}

/// Width of a migration's progress bar, without its brackets.
const BAR: usize = 30;
/// Width of a circle's read-share bar.
const SHARE_BAR: usize = 20;

/// Draws `frame` over the whole area of `f`.
pub(crate) fn draw(f: &mut ratatui::Frame<'_>, frame: &Frame, ui: &Ui, source: &Source) {
    let backends = arrange(&frame.backends, ui.sort, ui.reverse, &ui.filter);
    let height = |rows: usize, extra: usize| u16::try_from(rows + extra).unwrap_or(u16::MAX);
    let areas = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(height(backends.len().max(1), 3)),
        Constraint::Length(height(frame.circles.len().max(1), 3)),
        Constraint::Length(height(frame.migrations.len().max(1), 2)),
        Constraint::Min(0),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .split(f.area());
    let [header, table, circles, migrations, _, status, help] = [
        areas[0], areas[1], areas[2], areas[3], areas[4], areas[5], areas[6],
    ];
    f.render_widget(Paragraph::new(header_line(frame, source)), header);
    draw_backends(f, table, &backends, frame.backends.len(), ui);
    draw_circles(f, circles, frame);
    draw_migrations(f, migrations, &frame.migrations);
    f.render_widget(Paragraph::new(status_line(frame, source)), status);
    if source.interactive {
        f.render_widget(Paragraph::new(help_line(ui)), help);
    }
}

/// The text of `frame` drawn `width` columns wide, trailing spaces trimmed (`--once`).
pub(crate) fn plain(frame: &Frame, ui: &Ui, source: &Source, width: u16) -> String {
    let rows = frame.backends.len().max(1)
        + frame.circles.len().max(1)
        + frame.migrations.len().max(1)
        + 11;
    let height = u16::try_from(rows).unwrap_or(u16::MAX);
    // A test backend cannot fail (its error type is `Infallible`).
    let Ok(mut terminal) = Terminal::new(TestBackend::new(width, height));
    let Ok(_) = terminal.draw(|f| draw(f, frame, ui, source));
    let buffer = terminal.backend().buffer();
    let mut out = String::new();
    for y in 0..buffer.area.height {
        let mut line = String::new();
        for x in 0..buffer.area.width {
            if let Some(cell) = buffer.cell((x, y)) {
                line.push_str(cell.symbol());
            }
        }
        let line = line.trim_end();
        // The space between the sections and the status lines is not worth printing.
        if !line.is_empty() {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

fn header_line(frame: &Frame, source: &Source) -> Line<'static> {
    let mut spans = vec![Span::styled(
        "influx-proxy top",
        Style::new().add_modifier(Modifier::BOLD),
    )];
    spans.push(Span::raw(format!("  {}", source.base)));
    if let Some(o) = &frame.overview {
        if !o.version.is_empty() {
            spans.push(Span::raw(format!("  v{}", o.version)));
        }
        if let Some(up) = o.uptime {
            spans.push(Span::raw(format!("  up {}", secs(up))));
        }
        if let Some(rss) = o.rss {
            let budget = o
                .budget
                .map(|b| format!(" of {} budget", bytes(b)))
                .unwrap_or_default();
            spans.push(Span::raw(format!("  rss {}{budget}", bytes(rss))));
        }
        if let Some(wal) = o.wal_disk {
            let free = o
                .free_disk
                .map(|f| format!(", {} free", bytes(f)))
                .unwrap_or_default();
            spans.push(Span::raw(format!("  queue disk {}{free}", bytes(wal))));
        }
        if !o.wal_ok {
            spans.push(Span::styled(
                "  QUEUE STORAGE FAILED",
                Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
            ));
        }
        if o.pacing {
            spans.push(Span::styled(
                "  writes paced: CPU used up",
                Style::new().fg(Color::Yellow),
            ));
        }
    }
    Line::from(spans)
}

/// The backends' columns: the sort each stands for, heading, width (0: as wide as the widest
/// name shown, so narrow terminals keep the numbers).
const BACKEND_COLUMNS: [(SortBy, &str, u16); 10] = [
    (SortBy::Circle, "circle", 0),
    (SortBy::Name, "backend", 0),
    (SortBy::Circle, "state", 8),
    (SortBy::PointsIn, "in/s", 7),
    (SortBy::Delivered, "out/s", 7),
    (SortBy::Queue, "queue", 7),
    (SortBy::Queue, "records", 7),
    (SortBy::Age, "age", 6),
    (SortBy::Latency, "p99", 8),
    (SortBy::Dead, "dead", 7),
];

fn draw_backends(f: &mut ratatui::Frame<'_>, area: Rect, rows: &[BackendRow], all: usize, ui: &Ui) {
    let header = Row::new(BACKEND_COLUMNS.iter().map(|(by, name, _)| {
        // The default order (circles and backends as configured) needs no mark.
        let marked = ui.sort != SortBy::Circle || ui.reverse;
        let sorted = marked && *by == ui.sort && by.heading() == *name;
        let style = if sorted {
            Style::new().add_modifier(Modifier::BOLD | Modifier::UNDERLINED)
        } else {
            Style::new().add_modifier(Modifier::BOLD)
        };
        let arrow = match (sorted, ui.reverse) {
            (false, _) => "",
            (true, false) => " v",
            (true, true) => " ^",
        };
        Cell::from(format!("{name}{arrow}")).style(style)
    }));
    let body: Vec<Row<'_>> = rows.iter().map(backend_row).collect();
    let widest = |name: &dyn Fn(&BackendRow) -> usize, heading: &str| {
        let w = rows
            .iter()
            .map(name)
            .max()
            .unwrap_or(0)
            .max(heading.len() + 2);
        u16::try_from(w).unwrap_or(u16::MAX)
    };
    let widths = BACKEND_COLUMNS.map(|(by, heading, w)| {
        Constraint::Length(match (w, by) {
            (0, SortBy::Circle) => widest(&|r| r.circle.chars().count(), heading),
            (0, _) => widest(&|r| r.name.chars().count(), heading),
            (w, _) => w,
        })
    });
    let mut title = format!(" backends ({}", rows.len());
    if rows.len() != all {
        title.push_str(&format!(" of {all}"));
    }
    title.push_str(") ");
    let body = if body.is_empty() {
        vec![Row::new([Cell::from("(no backend matches the filter)")])]
    } else {
        body
    };
    let table = Table::new(body, widths)
        .header(header)
        .column_spacing(1)
        .block(Block::bordered().title(title));
    f.render_widget(table, area);
}

fn backend_row(b: &BackendRow) -> Row<'static> {
    let state_style = match b.state {
        State::Up => Style::new().fg(Color::Green),
        State::Draining => Style::new().fg(Color::Yellow),
        State::Down => Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
    };
    let dead_style = if b.dead_points > 0.0 {
        Style::new().fg(Color::Red)
    } else {
        Style::new()
    };
    Row::new(vec![
        Cell::from(b.circle.clone()),
        Cell::from(b.name.clone()),
        Cell::from(b.state.as_str()).style(state_style),
        Cell::from(rate(b.points_in)),
        Cell::from(rate(b.delivered)),
        Cell::from(count(b.queue_points)),
        Cell::from(count(b.queue_records)),
        Cell::from(secs(b.queue_age)),
        Cell::from(latency(b.p99)),
        Cell::from(count(b.dead_points)).style(dead_style),
    ])
}

fn draw_circles(f: &mut ratatui::Frame<'_>, area: Rect, frame: &Frame) {
    let header = Row::new(["circle", "state", "reads/s", "read share"])
        .style(Style::new().add_modifier(Modifier::BOLD));
    let rows: Vec<Row<'_>> = frame
        .circles
        .iter()
        .map(|c| {
            let state = match (c.active, c.migrating) {
                (_, true) => Span::styled("migrating", Style::new().fg(Color::Yellow)),
                (true, false) => Span::styled("active", Style::new().fg(Color::Green)),
                (false, false) => Span::styled("inactive", Style::new().fg(Color::Red)),
            };
            let share = match c.share {
                Some(s) => format!("{} {:>3.0}%", bar(s, SHARE_BAR), s * 100.0),
                None => "-".to_string(),
            };
            Row::new(vec![
                Cell::from(c.name.clone()),
                Cell::from(Line::from(state)),
                Cell::from(rate(c.reads)),
                Cell::from(share),
            ])
        })
        .collect();
    let widths = [
        Constraint::Length(14),
        Constraint::Length(10),
        Constraint::Length(9),
        Constraint::Length(u16::try_from(SHARE_BAR).unwrap_or(20) + 7),
    ];
    let table = Table::new(rows, widths)
        .header(header)
        .column_spacing(1)
        .block(Block::bordered().title(" circles "));
    f.render_widget(table, area);
}

fn draw_migrations(f: &mut ratatui::Frame<'_>, area: Rect, rows: &[MigrationRow]) {
    let lines: Vec<Line<'_>> = if rows.is_empty() {
        vec![Line::from("no migration since the proxy started")]
    } else {
        rows.iter().map(migration_line).collect()
    };
    let title = format!(
        " migrations ({} running) ",
        rows.iter().filter(|r| r.in_progress()).count()
    );
    f.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(title)),
        area,
    );
}

fn migration_line(m: &MigrationRow) -> Line<'static> {
    let state = if m.in_progress() {
        Span::styled("running ", Style::new().fg(Color::Yellow))
    } else if m.done >= m.total {
        Span::styled("done    ", Style::new().fg(Color::Green))
    } else {
        Span::styled("stopped ", Style::new().fg(Color::Red))
    };
    let source = if m.operation == "repair" {
        "every circle".to_string()
    } else {
        format!("{} <- {}", m.circle, m.backend)
    };
    let eta = match m.eta {
        Some(eta) => format!("  ETA {}", secs(eta.as_secs_f64())),
        None => String::new(),
    };
    let rate = match m.rate {
        Some(r) => format!("  {} points/s", rate(Some(r))),
        None => String::new(),
    };
    Line::from(vec![
        Span::raw(format!("{:<10}", m.operation)),
        state,
        Span::raw(format!("{source:<34} ")),
        Span::raw(bar(m.ratio(), BAR)),
        Span::raw(format!(
            " {:>3.0}%  {}/{} {}{rate}{eta}",
            m.ratio() * 100.0,
            count(m.done),
            count(m.total),
            m.unit(),
        )),
    ])
}

fn status_line(frame: &Frame, source: &Source) -> Line<'static> {
    let every = if source.interval < std::time::Duration::from_secs(1) {
        format!("{}ms", source.interval.as_millis())
    } else {
        secs(source.interval.as_secs_f64())
    };
    match &frame.error {
        Some((error, times)) => Line::from(Span::styled(
            format!("scrape failed ({times} in a row; retrying every {every}): {error}"),
            Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
        )),
        None if !source.interactive => Line::from(""),
        None if frame.overview.is_none() => Line::from("connecting..."),
        None if frame.interval.is_none() => {
            Line::from(format!("rates after the next scrape (every {every})"))
        }
        None => Line::from(format!("refreshed every {every}")),
    }
}

fn help_line(ui: &Ui) -> Line<'static> {
    let key = |k: &str| Span::styled(k.to_string(), Style::new().add_modifier(Modifier::BOLD));
    if ui.editing {
        return Line::from(vec![
            key("filter: "),
            Span::raw(format!("{}_", ui.filter)),
            Span::raw("   "),
            key("Enter"),
            Span::raw(" keep  "),
            key("Esc"),
            Span::raw(" clear"),
        ]);
    }
    let mut spans = vec![
        key("q"),
        Span::raw(" quit  "),
        key("s"),
        Span::raw(format!(" sort ({})  ", ui.sort.heading())),
        key("r"),
        Span::raw(" reverse  "),
        key("/"),
        Span::raw(" filter"),
    ];
    if !ui.filter.is_empty() {
        spans.push(Span::raw(format!(" ({})  ", ui.filter)));
        spans.push(key("Esc"));
        spans.push(Span::raw(" clear filter"));
    }
    Line::from(spans)
}

/// `[####......]`, `width` characters between the brackets.
pub(crate) fn bar(ratio: f64, width: usize) -> String {
    let filled = ((ratio.clamp(0.0, 1.0) * width as f64).round() as usize).min(width);
    format!("[{}{}]", "#".repeat(filled), ".".repeat(width - filled))
}

/// A per-second rate: `-` when unknown, `k`/`M` past a thousand.
fn rate(r: Option<f64>) -> String {
    match r {
        None => "-".to_string(),
        Some(r) if r > 0.0 && r < 10.0 => format!("{r:.1}"),
        Some(r) => count(r),
    }
}

/// A count: `k`/`M`/`G` past a thousand.
fn count(n: f64) -> String {
    let a = n.abs();
    if a >= 1e9 {
        format!("{:.1}G", n / 1e9)
    } else if a >= 1e6 {
        format!("{:.1}M", n / 1e6)
    } else if a >= 1e4 {
        format!("{:.0}k", n / 1e3)
    } else if a >= 1e3 {
        format!("{:.1}k", n / 1e3)
    } else {
        format!("{n:.0}")
    }
}

/// Seconds as `12s`, `3m05s`, `2h10m`, `3d04h`.
fn secs(s: f64) -> String {
    let s = s.max(0.0).round() as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86400 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86400, s % 86400 / 3600),
    }
}

/// A latency: `-` when unknown, milliseconds below a second.
fn latency(s: Option<f64>) -> String {
    match s {
        None => "-".to_string(),
        Some(s) if s < 0.01 => format!("{:.2}ms", s * 1e3),
        Some(s) if s < 1.0 => format!("{:.0}ms", s * 1e3),
        Some(s) => format!("{s:.2}s"),
    }
}

/// Bytes in binary units.
fn bytes(b: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b.max(0.0);
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{v:.0} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::super::model::{CircleRow, Overview};
    use super::*;
    use std::time::Duration;

    fn frame() -> Frame {
        let backend = |circle: &str, name: &str, state, queue: f64| BackendRow {
            circle: circle.into(),
            name: name.into(),
            state,
            points_in: Some(1500.0),
            delivered: Some(1400.0),
            queue_points: queue,
            queue_records: 3.0,
            queue_age: 75.0,
            p99: Some(0.0042),
            dead_points: 0.0,
        };
        Frame {
            overview: Some(Overview {
                version: "2.5.12".into(),
                uptime: Some(3725.0),
                rss: Some(40.0 * 1024.0 * 1024.0),
                budget: Some(96.0 * 1024.0 * 1024.0),
                wal_disk: Some(2048.0),
                free_disk: Some(10.0 * 1024.0 * 1024.0 * 1024.0),
                wal_ok: true,
                pacing: false,
            }),
            backends: vec![
                backend("circle-1", "influxdb-1-1", State::Up, 0.0),
                backend("circle-1", "influxdb-1-2", State::Down, 12000.0),
            ],
            circles: vec![CircleRow {
                name: "circle-1".into(),
                active: false,
                migrating: true,
                reads: Some(4.0),
                share: Some(1.0),
            }],
            migrations: vec![MigrationRow {
                operation: "rebalance".into(),
                circle: "circle-1".into(),
                backend: "influxdb-1-1".into(),
                running: true,
                done: 3.0,
                total: 12.0,
                rate: Some(2500.0),
                eta: Some(Duration::from_secs(90)),
            }],
            error: Some(("cannot reach the proxy".into(), 2)),
            interval: Some(1.0),
        }
    }

    fn source() -> Source {
        Source {
            base: "http://127.0.0.1:7076".into(),
            interval: Duration::from_secs(1),
            interactive: true,
        }
    }

    #[test]
    fn a_frame_shows_backends_circles_migrations_status_and_keys() {
        let text = plain(&frame(), &Ui::default(), &source(), 140);
        for want in [
            "influx-proxy top  http://127.0.0.1:7076  v2.5.12  up 1h02m  rss 40.0 MiB of 96.0 MiB budget  queue disk 2.0 KiB, 10.0 GiB free",
            "influxdb-1-1",
            "influxdb-1-2",
            "down",
            "1.5k",
            "12k",
            "1m15s",
            "4.20ms",
            "migrating",
            "[####################] 100%",
            "rebalance running circle-1 <- influxdb-1-1",
            "[########......................]  25%  3/12 measurements  2.5k points/s  ETA 1m30s",
            "scrape failed (2 in a row; retrying every 1s): cannot reach the proxy",
            "q quit  s sort (circle)  r reverse  / filter",
        ] {
            assert!(text.contains(want), "{want:?} not in\n{text}");
        }
    }

    #[test]
    fn the_status_line_says_when_writes_are_paced() {
        let mut f = frame();
        let want = "writes paced: CPU used up";
        assert!(!plain(&f, &Ui::default(), &source(), 200).contains(want));
        if let Some(o) = f.overview.as_mut() {
            o.pacing = true;
        }
        let text = plain(&f, &Ui::default(), &source(), 200);
        assert!(text.contains(want), "{text}");
    }

    #[test]
    fn the_filter_and_sort_show_in_the_table_and_the_help() {
        let ui = Ui {
            sort: SortBy::Queue,
            reverse: false,
            filter: "1-2".into(),
            editing: false,
        };
        let text = plain(&frame(), &ui, &source(), 140);
        assert!(text.contains("backends (1 of 2)"), "{text}");
        // Left only in its migration's line.
        assert_eq!(text.matches("influxdb-1-1").count(), 1, "{text}");
        assert!(text.contains("queue v"), "{text}");
        assert!(text.contains("(1-2)  Esc clear filter"), "{text}");
        let editing = Ui {
            editing: true,
            ..ui
        };
        assert!(plain(&frame(), &editing, &source(), 140).contains("filter: 1-2_"));
    }

    #[test]
    fn numbers_are_short() {
        assert_eq!(bar(0.5, 4), "[##..]");
        assert_eq!(bar(2.0, 2), "[##]");
        assert_eq!(rate(None), "-");
        assert_eq!(rate(Some(0.3)), "0.3");
        assert_eq!(rate(Some(0.0)), "0");
        assert_eq!(count(999.0), "999");
        assert_eq!(count(25_300.0), "25k");
        assert_eq!(count(2_500_000.0), "2.5M");
        assert_eq!(secs(59.6), "1m00s");
        assert_eq!(secs(90_000.0), "1d01h");
        assert_eq!(latency(Some(1.5)), "1.50s");
        assert_eq!(latency(Some(0.25)), "250ms");
        assert_eq!(bytes(1536.0), "1.5 KiB");
    }
}
