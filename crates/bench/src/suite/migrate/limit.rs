//! The limit of a migration on this machine, measured in the same run: how fast the source
//! influxd export the data set (chunked `SELECT *`, as the migrations read it) and how fast an
//! empty influxd takes as many points of the same shape written directly (requests of the
//! migrations' batch size). No migration can beat the slower of the two; a migration row is
//! shown as a fraction of it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use harness::http;
use influx_wire::answer;
use influx_wire::influxql::quote_ident;
use serde_json::Value;

use super::super::load::Load;
use super::super::report::{f1, int, ratio};
use super::super::{Ctx, Error};

/// Rows per chunk the migrations read and points per write they send: the proxies' default
/// `migrate_batch` (`DEFAULT_MIGRATE_BATCH` in src/config/model.rs; 25,000 in the Go proxy
/// too). The section leaves it unset.
pub(super) const BATCH: u64 = 25_000;

/// Nesting of a row's `[` in a chunk line: `{"results":[{"series":[{"values":[[`.
const ROW_DEPTH: usize = 7;

/// What the limit measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Limit {
    /// Rows the export read, and its rows/s.
    pub(super) rows: u64,
    pub(super) export: f64,
    /// Points the import wrote, and its points/s.
    pub(super) points: u64,
    pub(super) import: f64,
    /// Measurements exported, and written, at a time.
    pub(super) concurrency: u64,
}

impl Limit {
    /// The lower of the two rates.
    pub(super) fn points_per_sec(&self) -> f64 {
        self.export.min(self.import)
    }

    /// The report's line about it.
    pub(super) fn line(&self) -> String {
        let (export, import) = (int(self.export), int(self.import));
        let which = if self.export <= self.import {
            "export"
        } else {
            "import"
        };
        format!(
            "**Limit**, measured in this run on copies of the same data: export {export} \
             points/s, import {import} points/s, limit {} points/s (the {which}). Export: \
             chunked `SELECT *` (`chunk_size={BATCH}`, as the migrations read) of every \
             measurement from the 2 source influxd, {c} measurements at a time, {} rows. \
             Import: {} points of the same shape written directly to an empty influxd, {batch} \
             points per request over {c} connections (`influx-proxy-bench write`). \"of the \
             limit\" = a row's points/s divided by the limit.",
            int(self.points_per_sec()),
            int(self.rows as f64),
            int(self.points as f64),
            batch = int(BATCH as f64),
            c = self.concurrency,
        )
    }
}

/// A migration's points/s as a fraction of the limit: `0.87x`, or `-` without a limit.
pub(super) fn of_limit(points_per_sec: f64, limit: Option<f64>) -> String {
    match limit {
        Some(limit) if limit > 0.0 => format!("{:.2}x", ratio(points_per_sec, limit)),
        _ => "-".to_owned(),
    }
}

/// The line under the table for one operation: each proxy's fraction of the limit.
pub(super) fn limit_bullet(op: &str, rows: &[(String, f64)], limit: f64) -> String {
    let parts: Vec<String> = rows
        .iter()
        .map(|(label, pps)| format!("{label} {}", of_limit(*pps, Some(limit))))
        .collect();
    format!(
        "- {op}, of the limit ({} points/s): {}.",
        int(limit),
        parts.join(", ")
    )
}

/// Measures the limit: exports `sources` (influxd URL, measurement) `concurrency` at a time,
/// then writes as many points to the empty influxd at `receiver`. `Err` says what failed.
pub(super) fn measure(
    ctx: &Ctx,
    sources: &[(String, String)],
    receiver: &str,
    concurrency: u64,
) -> Result<Limit, Error> {
    let o = &ctx.opts.migrate;
    let timeout = Duration::from_secs(o.timeout);
    ctx.log(format!(
        "(e) limit: exporting {} measurements, {concurrency} at a time",
        sources.len()
    ));
    let t0 = Instant::now();
    let rows = export(sources, concurrency, timeout).map_err(Error::Failed)?;
    let export_secs = t0.elapsed().as_secs_f64();
    ctx.log(format!(
        "(e) limit: exported {rows} rows in {} s; importing as many",
        f1(export_secs)
    ));
    let s = Load::new(ctx, receiver, "bench")
        .switches(&["--create-db"])
        .flag("--measurements", o.measurements)
        .flag("--points", rows)
        .flag("--batch", BATCH)
        .flag("--concurrency", concurrency)
        .seconds(o.timeout)
        .run()?;
    if s.errors_cell() != "0" {
        return Err(Error::Failed(format!(
            "the import failed: {}",
            s.errors_cell()
        )));
    }
    Ok(Limit {
        rows,
        export: ratio(rows as f64, export_secs),
        points: s.points,
        import: s.points_per_sec,
        concurrency,
    })
}

/// Reads every (URL, measurement) with a chunked `SELECT *`, `concurrency` at a time, one
/// chunk in memory per reader; the rows read.
fn export(
    sources: &[(String, String)],
    concurrency: u64,
    timeout: Duration,
) -> Result<u64, String> {
    let next = AtomicUsize::new(0);
    let failed: Mutex<Option<String>> = Mutex::new(None);
    let rows: u64 = thread::scope(|scope| {
        let readers: Vec<_> = (0..concurrency.max(1))
            .map(|_| {
                scope.spawn(|| {
                    let mut rows = 0;
                    while let Some((url, m)) = sources.get(next.fetch_add(1, Ordering::Relaxed)) {
                        match export_one(url, m, timeout) {
                            Ok(n) => rows += n,
                            Err(e) => {
                                if let Ok(mut failed) = failed.lock() {
                                    failed.get_or_insert(e);
                                }
                                break;
                            }
                        }
                    }
                    rows
                })
            })
            .collect();
        readers.into_iter().map(|r| r.join().unwrap_or(0)).sum()
    });
    match failed.into_inner().ok().flatten() {
        Some(e) => Err(e),
        None => Ok(rows),
    }
}

/// One measurement's chunked `SELECT *` from the influxd at `url`, as the proxy's migration
/// sends it (POST, `epoch=ns`, no gzip); its rows.
fn export_one(url: &str, measurement: &str, timeout: Duration) -> Result<u64, String> {
    let q = format!("SELECT * FROM {}", quote_ident(measurement));
    let url = format!(
        "{url}/query?db=bench&q={}&epoch=ns&chunked=true&chunk_size={BATCH}",
        http::urlencode(&q)
    );
    let mut rows = 0;
    let mut failed = None;
    let status = http::request_lines(
        "POST",
        &url,
        Some(&[][..]),
        &[("Accept-Encoding", "identity")],
        timeout,
        |line| match chunk_rows(line) {
            Ok(n) => rows += n,
            Err(e) => {
                failed.get_or_insert(e);
            }
        },
    )?;
    if let Some(e) = failed {
        return Err(format!("{measurement}: {e}"));
    }
    if status != 200 {
        return Err(format!("{measurement}: status {status}"));
    }
    Ok(rows)
}

/// The rows of one line of a chunked answer
/// (`{"results":[{"statement_id":0,"series":[{"name":…,"columns":[…],"values":[[…],…]}]}]}`):
/// the arrays nested in `values`, counted by a scan that tracks only strings and nesting, since
/// a full parse would cost the bench a good part of the CPU influxd's export takes. A line
/// without rows is parsed, and its error returned.
fn chunk_rows(line: &[u8]) -> Result<u64, String> {
    let (mut depth, mut rows) = (0usize, 0u64);
    let (mut in_string, mut escaped) = (false, false);
    for &b in line {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if b == b'[' && depth == ROW_DEPTH {
                    rows += 1;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    if rows > 0 || line.trim_ascii().is_empty() {
        return Ok(rows);
    }
    let answer: Value =
        serde_json::from_slice(line).map_err(|e| format!("not an InfluxDB answer: {e}"))?;
    match answer::results(&answer).iter().find_map(answer::error) {
        Some(error) => Err(error.to_owned()),
        None => Ok(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_of_a_chunk_are_counted_strings_and_columns_aside() {
        let line = br#"{"results":[{"statement_id":0,"series":[{"name":"m0","columns":["time","f0","t0"],"values":[[1,0.5,"a]["],[2,1,"b\"[["],[3,2,"c"]],"partial":true}]}]}"#;
        assert_eq!(chunk_rows(line), Ok(3));
        let two_series = br#"{"results":[{"statement_id":0,"series":[{"name":"a","columns":["time"],"values":[[1]]},{"name":"b","tags":{"t":"x"},"columns":["time"],"values":[[1],[2]]}]}]}"#;
        assert_eq!(chunk_rows(two_series), Ok(3));
        assert_eq!(chunk_rows(br#"{"results":[{"statement_id":0}]}"#), Ok(0));
        assert_eq!(chunk_rows(b""), Ok(0));
    }

    #[test]
    fn an_error_answer_is_an_error() {
        let line = br#"{"results":[{"statement_id":0,"error":"database not found: bench"}]}"#;
        assert_eq!(
            chunk_rows(line),
            Err("database not found: bench".to_owned())
        );
        assert!(chunk_rows(b"404 page not found").is_err());
    }

    #[test]
    fn the_limit_is_the_lower_rate() {
        let limit = Limit {
            rows: 10_000_000,
            export: 900_000.0,
            points: 10_000_000,
            import: 400_000.4,
            concurrency: 2,
        };
        assert_eq!(limit.points_per_sec(), 400_000.4);
        let line = limit.line();
        assert!(
            line.starts_with(
                "**Limit**, measured in this run on copies of the same data: export 900,000 \
                 points/s, import 400,000 points/s, limit 400,000 points/s (the import)."
            ),
            "{line}"
        );
        assert!(
            line.contains("(`chunk_size=25000`, as the migrations read)"),
            "{line}"
        );
        assert!(
            line.contains("25,000 points per request over 2 connections"),
            "{line}"
        );
        assert_eq!(of_limit(348_000.0, Some(400_000.0)), "0.87x");
        assert_eq!(of_limit(348_000.0, None), "-");
        assert_eq!(of_limit(348_000.0, Some(0.0)), "-");
        assert_eq!(
            limit_bullet(
                "rebalance",
                &[
                    ("influx-proxy".to_owned(), 348_000.0),
                    ("Go proxy 2.4.4".to_owned(), 120_000.0)
                ],
                400_000.0
            ),
            "- rebalance, of the limit (400,000 points/s): influx-proxy 0.87x, Go proxy 2.4.4 \
             0.30x."
        );
    }
}
