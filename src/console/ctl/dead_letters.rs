//! `ctl dead-letters`: the lines backends refused on their own (`/dead_letters`): list them
//! with their cause, export them to a file, replay them once the cause is fixed, purge them.

use std::io::{IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::table::{bytes, count, utc, Table};
use super::{CtlError, Ctx, Exit, Outcome};
use crate::console::client::with_query;

/// `ctl dead-letters` commands.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum DeadLetters {
    /// Per backend: how many lines were refused, when, and the latest reason
    List {
        /// Only this backend
        #[arg(long)]
        backend: Option<String>,
    },
    /// Write a backend's refused lines to FILE (`-`: standard output) in InfluxDB's export
    /// format (`influx -import -path=FILE` reads it)
    Export {
        /// The backend
        #[arg(long)]
        backend: String,
        /// Only this database
        #[arg(long)]
        db: Option<String>,
        /// Where to write
        file: PathBuf,
    },
    /// Queue the dead letters again, oldest first, after fixing why they were refused
    Replay {
        /// Only this backend [default: every backend holding dead letters]
        #[arg(long)]
        backend: Option<String>,
    },
    /// Delete the dead letters
    Purge {
        /// Only this backend [default: every backend holding dead letters]
        #[arg(long)]
        backend: Option<String>,
        /// Do not ask (needed when standard input is not a terminal)
        #[arg(long)]
        yes: bool,
    },
}

/// `ctl dead-letters ...`.
pub(super) fn run(ctx: &Ctx, cmd: &DeadLetters) -> Outcome {
    match cmd {
        DeadLetters::List { backend } => list(ctx, backend.as_deref()),
        DeadLetters::Export { backend, db, file } => export(ctx, backend, db.as_deref(), file),
        DeadLetters::Replay { backend } => change(ctx, "replay", backend.as_deref(), true),
        DeadLetters::Purge { backend, yes } => change(ctx, "purge", backend.as_deref(), *yes),
    }
}

fn summaries(ctx: &Ctx, backend: Option<&str>) -> Result<Value, CtlError> {
    let query: Vec<(&str, &str)> = backend.map(|b| ("backend", b)).into_iter().collect();
    Ok(ctx.target.get_json(&with_query("/dead_letters", &query))?)
}

fn backends(list: &Value) -> &[Value] {
    list["backends"].as_array().map_or(&[], Vec::as_slice)
}

fn list(ctx: &Ctx, backend: Option<&str>) -> Outcome {
    let v = summaries(ctx, backend)?;
    if ctx.json {
        ctx.print_json(&v);
    } else {
        print!("{}", render(&v));
    }
    Ok(Exit::Done)
}

/// The summaries as a table.
fn render(list: &Value) -> String {
    let mut t = Table::new(&[
        "BACKEND",
        "CIRCLE",
        "RECORDS>",
        "POINTS>",
        "BYTES>",
        "FIRST (UTC)",
        "LAST (UTC)",
        "LATEST REASON",
    ]);
    for b in backends(list) {
        let n = |k: &str| b[k].as_u64().unwrap_or(0);
        let when = |k: &str| match n(k) {
            0 => "-".to_string(),
            ms => utc(ms as i64 * 1_000_000),
        };
        let reason = b["last_errors"][0]["error"].as_str().unwrap_or("");
        let reason: String = reason.chars().take(80).collect();
        t.row(vec![
            b["backend"].as_str().unwrap_or("").to_string(),
            b["circle"].as_str().unwrap_or("").to_string(),
            count(n("records")),
            count(n("points")),
            bytes(n("bytes")),
            when("first_unix_ms"),
            when("last_unix_ms"),
            reason,
        ]);
    }
    t.render()
}

fn export(ctx: &Ctx, backend: &str, db: Option<&str>, file: &Path) -> Outcome {
    let mut query = vec![("backend", backend)];
    if let Some(db) = db {
        query.push(("db", db));
    }
    let path = with_query("/dead_letters/export", &query);
    let to_stdout = file.as_os_str() == "-";
    let written = if to_stdout {
        let mut out = std::io::stdout().lock();
        ctx.target.get_to(&path, &mut out)?
    } else {
        let mut f = std::fs::File::create(file)
            .map_err(|e| CtlError::Refused(format!("cannot create {}: {e}", file.display())))?;
        let n = ctx.target.get_to(&path, &mut f)?;
        f.flush()
            .and_then(|()| f.sync_all())
            .map_err(|e| CtlError::Refused(format!("writing {}: {e}", file.display())))?;
        n
    };
    if !to_stdout {
        if ctx.json {
            ctx.print_json(&json!({ "backend": backend, "file": file, "bytes": written }));
        } else {
            println!(
                "Wrote {} of {backend}'s dead letters to {}",
                bytes(written),
                file.display()
            );
        }
    }
    Ok(Exit::Done)
}

/// `replay` or `purge`, for one backend or every one holding dead letters.
fn change(ctx: &Ctx, action: &str, backend: Option<&str>, confirmed: bool) -> Outcome {
    let list = summaries(ctx, backend)?;
    let targets: Vec<(String, u64)> = backends(&list)
        .iter()
        .filter(|b| backend.is_some() || b["records"].as_u64().unwrap_or(0) > 0)
        .filter_map(|b| {
            let name = b["backend"].as_str()?.to_string();
            Some((name, b["points"].as_u64().unwrap_or(0)))
        })
        .collect();
    if targets.is_empty() {
        if ctx.json {
            ctx.print_json(&json!({ "backends": [] }));
        } else {
            println!("No dead letters.");
        }
        return Ok(Exit::Done);
    }
    if !confirmed && !confirm(&targets)? {
        println!("Nothing purged.");
        return Ok(Exit::Failed);
    }
    let mut done = Vec::new();
    for (name, _) in &targets {
        let answer = ctx.target.post(
            &format!("/dead_letters/{action}"),
            &[("backend", name.as_str())],
            None,
        )?;
        let v: Value = serde_json::from_str(&answer.text).unwrap_or(Value::Null);
        if !ctx.json {
            let verb = if action == "replay" {
                "queued again"
            } else {
                "deleted"
            };
            println!(
                "{name}: {} records, {} points {verb}",
                count(v["records"].as_u64().unwrap_or(0)),
                count(v["points"].as_u64().unwrap_or(0))
            );
        }
        done.push(v);
    }
    if ctx.json {
        ctx.print_json(&json!({ "backends": done }));
    }
    Ok(Exit::Done)
}

/// Asks on the terminal before a purge; refuses without one (`--yes` is then needed).
fn confirm(targets: &[(String, u64)]) -> Result<bool, CtlError> {
    if !std::io::stdin().is_terminal() {
        return Err(CtlError::Usage(
            "purge deletes the dead letters for good: pass --yes".into(),
        ));
    }
    let what: Vec<String> = targets
        .iter()
        .map(|(n, p)| format!("{n} ({} points)", count(*p)))
        .collect();
    print!("Delete the dead letters of {}? [y/N] ", what.join(", "));
    let _ = std::io::stdout().flush();
    let mut answer = String::new();
    std::io::stdin()
        .read_line(&mut answer)
        .map_err(|e| CtlError::Refused(format!("reading the answer: {e}")))?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dead_letters_are_listed_with_their_latest_reason() {
        let v = json!({"backends": [{"backend": "b1", "circle": "c1", "records": 3,
            "points": 30, "bytes": 2048, "first_unix_ms": 1_700_000_000_000u64,
            "last_unix_ms": 1_700_000_060_000u64,
            "last_errors": [{"status": 400, "error": "field type conflict"}]},
            {"backend": "b2", "circle": "c1", "records": 0, "points": 0, "bytes": 0,
             "first_unix_ms": 0, "last_unix_ms": 0, "last_errors": []}]});
        let text = render(&v);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[1].contains("2023-11-14 22:13:20"), "{text}");
        assert!(lines[1].ends_with("field type conflict"), "{text}");
        assert!(lines[1].contains("2.00 KiB"), "{text}");
        assert!(lines[2].contains(" -"), "{text}");
    }
}
