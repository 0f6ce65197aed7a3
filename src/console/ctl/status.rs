//! `ctl status`: circles, backends (state, queue depth and age, dead letters, what each
//! holds), the queue's storage and the running operations, from `/health` (both shapes),
//! `/migrate/state` and `/migrate/jobs`. Exit 4 when a backend is down or the queue refuses
//! writes.

use serde::Serialize;
use serde_json::Value;

use super::table::{age, bytes, count, Table};
use super::{Ctx, Exit, Outcome};
use crate::console::progress::JobView;

/// `ctl status` arguments.
#[derive(Debug, clap::Args)]
pub(crate) struct StatusArgs {
    /// Ask the backends what they hold now instead of the proxy's answer of the last 5 s
    #[arg(long)]
    fresh: bool,
}

/// The whole picture.
#[derive(Debug, Serialize)]
struct Report {
    /// Every backend is active and the queue takes writes.
    healthy: bool,
    /// What makes it unhealthy.
    problems: Vec<String>,
    circles: Vec<CircleRow>,
    /// Operations running now.
    operations: Vec<Value>,
}

#[derive(Debug, Serialize)]
struct CircleRow {
    id: u64,
    name: String,
    migrating: bool,
    backends: Vec<BackendRow>,
}

#[derive(Debug, Serialize)]
struct BackendRow {
    name: String,
    url: String,
    active: bool,
    backlog: bool,
    draining: bool,
    write_only: bool,
    queue_records: u64,
    queue_points: u64,
    queue_bytes: u64,
    oldest_age_s: u64,
    dead_letter_records: u64,
    dead_letter_points: u64,
    /// Measurements held (`None` when it could not be asked).
    measurements: Option<u64>,
    /// Of those, held here but owned by another backend (a rebalance or clear is due).
    misplaced: Option<u64>,
    error: Option<String>,
}

fn u(v: &Value, path: &[&str]) -> u64 {
    path.iter().fold(v, |v, k| &v[*k]).as_u64().unwrap_or(0)
}

fn backend_row(b: &Value) -> BackendRow {
    let load = b["load"].as_object();
    let sum = |key: &str| load.map(|l| l.values().map(|db| u(db, &[key])).sum::<u64>());
    let active = b["active"] == true;
    BackendRow {
        name: b["name"].as_str().unwrap_or("").to_string(),
        url: b["url"].as_str().unwrap_or("").to_string(),
        active,
        backlog: b["backlog"] == true,
        draining: b["rewrite"] == true,
        write_only: b["write_only"] == true,
        queue_records: u(b, &["queue", "records"]),
        queue_points: u(b, &["queue", "points"]),
        queue_bytes: u(b, &["queue", "bytes"]),
        oldest_age_s: u(b, &["queue", "oldest_age_s"]),
        dead_letter_records: u(b, &["dead_letters", "records"]),
        dead_letter_points: u(b, &["dead_letters", "points"]),
        measurements: sum("measurements").filter(|_| active),
        misplaced: sum("incorrect").filter(|_| active),
        error: b["load_error"].as_str().map(str::to_string),
    }
}

/// The report from `/health` (2.4 shape), `/health?version=2.5`, `/migrate/state` and
/// `/migrate/jobs`.
fn report(health: &Value, health25: &Value, state: &Value, jobs: &Value) -> Report {
    let migrating = |id: u64| {
        state["circles"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["circle_id"] == id && c["is_migrating"] == true)
    };
    let circles: Vec<CircleRow> = health
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
        .map(|(i, c)| CircleRow {
            id: i as u64,
            name: c["circle"].as_str().unwrap_or("").to_string(),
            migrating: migrating(i as u64),
            backends: c["backends"]
                .as_array()
                .into_iter()
                .flatten()
                .map(backend_row)
                .collect(),
        })
        .collect();
    let mut problems: Vec<String> = circles
        .iter()
        .flat_map(|c| c.backends.iter().map(move |b| (c, b)))
        .filter(|(_, b)| !b.active)
        .map(|(c, b)| format!("backend {} ({}) of {} is down", b.name, b.url, c.name))
        .collect();
    for check in health25["checks"].as_array().into_iter().flatten() {
        if check["status"] == "fail" {
            problems.push(format!(
                "{}: {}",
                check["name"].as_str().unwrap_or("check"),
                check["message"].as_str().unwrap_or("failing")
            ));
        }
    }
    let operations = jobs["jobs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|j| j["phase"] != "done")
        .cloned()
        .collect();
    Report {
        healthy: problems.is_empty(),
        problems,
        circles,
        operations,
    }
}

fn state_cell(b: &BackendRow) -> String {
    let mut s = if !b.active {
        "DOWN".to_string()
    } else if b.draining {
        "draining".to_string()
    } else {
        "active".to_string()
    };
    if b.write_only {
        s.push_str(" (write-only)");
    }
    s
}

fn render(r: &Report) -> String {
    let mut t = Table::new(&[
        "CIRCLE",
        "BACKEND",
        "URL",
        "STATE",
        "QUEUED POINTS>",
        "QUEUED>",
        "OLDEST>",
        "DEAD LETTERS>",
        "MEASUREMENTS",
    ]);
    for c in &r.circles {
        let circle = if c.migrating {
            format!("{} (migrating)", c.name)
        } else {
            c.name.clone()
        };
        for (i, b) in c.backends.iter().enumerate() {
            let held = match (b.measurements, b.misplaced, &b.error) {
                (_, _, Some(e)) => format!("? ({e})"),
                (Some(n), Some(0), _) => count(n),
                (Some(n), Some(m), _) => format!("{} ({} misplaced)", count(n), count(m)),
                _ => "-".to_string(),
            };
            let oldest = if b.queue_records == 0 {
                "-".to_string()
            } else {
                age(b.oldest_age_s)
            };
            t.row(vec![
                if i == 0 {
                    circle.clone()
                } else {
                    String::new()
                },
                b.name.clone(),
                b.url.clone(),
                state_cell(b),
                count(b.queue_points),
                bytes(b.queue_bytes),
                oldest,
                count(b.dead_letter_points),
                held,
            ]);
        }
    }
    let mut out = t.render();
    out.push('\n');
    if r.operations.is_empty() {
        out.push_str("Operations: none running\n");
    } else {
        out.push_str("Operations:\n");
        for j in r.operations.iter().filter_map(JobView::from_json) {
            out.push_str(&format!("  {}\n", j.line()));
        }
    }
    if r.healthy {
        out.push_str("Healthy: every backend is active.\n");
    } else {
        out.push_str("UNHEALTHY:\n");
        for p in &r.problems {
            out.push_str(&format!("  {p}\n"));
        }
    }
    out
}

/// `ctl status`.
pub(super) fn run(ctx: &Ctx, args: &StatusArgs) -> Outcome {
    let health = ctx.target.get_json(if args.fresh {
        "/health?fresh=true"
    } else {
        "/health"
    })?;
    let health25 = ctx.target.get_json("/health?version=2.5")?;
    let state = ctx.target.get_json("/migrate/state")?;
    let jobs = ctx.target.get_json("/migrate/jobs")?;
    let r = report(&health, &health25, &state, &jobs);
    if ctx.json {
        ctx.print_json(&serde_json::to_value(&r).unwrap_or(Value::Null));
    } else {
        print!("{}", render(&r));
    }
    Ok(if r.healthy {
        Exit::Done
    } else {
        Exit::Unhealthy
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn health() -> Value {
        json!([{"circle": "circle-1", "backends": [
            {"name": "b1", "url": "http://h:1", "active": true, "backlog": false,
             "rewrite": false, "write_only": false,
             "load": {"db": {"measurements": 3, "inplace": 2, "incorrect": 1}},
             "queue": {"records": 2, "bytes": 2048, "points": 1500, "oldest_age_s": 125},
             "dead_letters": {"records": 1, "points": 4}},
            {"name": "b2", "url": "http://h:2", "active": false, "backlog": true,
             "rewrite": false, "write_only": false, "load": {},
             "queue": {"records": 0, "bytes": 0, "points": 0, "oldest_age_s": 0},
             "dead_letters": {"records": 0, "points": 0}}]}])
    }

    #[test]
    fn a_down_backend_makes_the_cluster_unhealthy_and_is_named() {
        let state = json!({"circles": [{"circle_id": 0, "circle_name": "circle-1",
            "is_migrating": true}], "is_resyncing": false});
        let jobs = json!({"jobs": [
            {"id": 1, "operation": "clear", "phase": "done", "sources": {}},
            {"id": 2, "operation": "rebalance", "phase": "running", "elapsed_s": 1.0,
             "sources": {"http://h:1": {"measurement_total": 3, "measurement_done": 1}}}]});
        let r = report(&health(), &json!({"checks": []}), &state, &jobs);
        assert!(!r.healthy);
        assert_eq!(r.problems, ["backend b2 (http://h:2) of circle-1 is down"]);
        assert_eq!(r.operations.len(), 1);
        let b1 = &r.circles[0].backends[0];
        assert_eq!((b1.measurements, b1.misplaced), (Some(3), Some(1)));
        let text = render(&r);
        assert!(text.contains("circle-1 (migrating)"), "{text}");
        assert!(text.contains("3 (1 misplaced)"), "{text}");
        assert!(text.contains("2m05s"), "{text}");
        assert!(text.contains("1,500"), "{text}");
        assert!(text.contains("DOWN"), "{text}");
        assert!(text.contains("rebalance #2 copying: 1/3"), "{text}");
        assert!(text.contains("UNHEALTHY:"), "{text}");
    }

    #[test]
    fn a_failing_queue_check_is_a_problem() {
        let mut h = health();
        h[0]["backends"][1]["active"] = json!(true);
        let h25 = json!({"checks": [{"name": "write-ahead queue", "status": "fail",
            "message": "10 MiB free"}]});
        let r = report(&h, &h25, &json!({}), &json!({}));
        assert_eq!(r.problems, ["write-ahead queue: 10 MiB free"]);
    }
}
