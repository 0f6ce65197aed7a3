//! `ctl placement`: where a measurement lives (`/replica`, as the running proxy places it),
//! and, with `--what-if OTHER_CONFIG`, which measurements another config would move, from
//! which backend to which, per circle, with their sizes, before anything is changed.
//!
//! The what-if takes every measurement the backends hold now (`/inventory`) and asks the
//! other config's placement ([`Planned`]: the proxy's own `Placement::owner_index`, pins
//! first, then the ring) for its owner in the same circle. A measurement whose owner's URL is
//! not the URL of the backend holding it moves: exactly what `/rebalance` copies once the
//! proxy runs that config (its sources are the circle's backends, plus the removed ones).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::table::{count, Table};
use super::{CtlError, Ctx, Exit, Outcome};
use crate::cluster::Planned;
use crate::config::Config;
use crate::console::client::with_query;

/// How long `/inventory` may take to answer with sizes: counting the points of every
/// measurement reads every field of a backend's data.
const SIZES_TIMEOUT: Duration = Duration::from_secs(3600);

/// `ctl placement` arguments.
#[derive(Debug, clap::Args)]
pub(crate) struct PlacementArgs {
    /// The database (with --what-if: only this one)
    db: Option<String>,
    /// The measurement (with --what-if: only this one)
    measurement: Option<String>,
    /// Another config file: which measurements it would move, per circle, with their sizes
    #[arg(long, value_name = "CONFIG")]
    what_if: Option<PathBuf>,
    /// With --what-if: do not count series and points (a full read of every field)
    #[arg(long)]
    no_sizes: bool,
}

/// `ctl placement`.
pub(super) fn run(ctx: &Ctx, args: &PlacementArgs) -> Outcome {
    match (&args.what_if, &args.db, &args.measurement) {
        (Some(path), db, m) => what_if(ctx, path, db.as_deref(), m.as_deref(), !args.no_sizes),
        (None, Some(db), Some(m)) => owners(ctx, db, m),
        _ => Err(CtlError::Usage(
            "placement needs DB MEASUREMENT, or --what-if CONFIG".into(),
        )),
    }
}

/// Where `(db, m)` lives in every circle.
fn owners(ctx: &Ctx, db: &str, m: &str) -> Outcome {
    let v = ctx
        .target
        .get_json(&with_query("/replica", &[("db", db), ("meas", m)]))?;
    if ctx.json {
        ctx.print_json(&v);
        return Ok(Exit::Done);
    }
    let mut t = Table::new(&["CIRCLE", "BACKEND", "URL"]);
    for o in v.as_array().into_iter().flatten() {
        let s = |k: &str| o[k].as_str().unwrap_or("").to_string();
        t.row(vec![s("circle"), s("name"), s("url")]);
    }
    print!("{}", t.render());
    Ok(Exit::Done)
}

/// What `/inventory` answers.
#[derive(Debug, Deserialize)]
struct Inventory {
    circles: Vec<HeldCircle>,
}

#[derive(Debug, Deserialize)]
struct HeldCircle {
    id: usize,
    name: String,
    backends: Vec<Holder>,
}

#[derive(Debug, Deserialize)]
struct Holder {
    name: String,
    url: String,
    #[serde(default)]
    databases: BTreeMap<String, BTreeMap<String, Size>>,
    #[serde(default)]
    error: Option<String>,
}

/// A measurement's size on one backend (`None`: not counted).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
struct Size {
    series: Option<u64>,
    points: Option<u64>,
}

/// What another config would move.
#[derive(Debug, Serialize)]
struct WhatIf {
    /// Every measurement that would move.
    moves: Vec<Move>,
    /// Per circle: how much it holds and how much would move.
    circles: Vec<CircleSummary>,
    /// Circles only one config has.
    notes: Vec<String>,
    /// Backends that could not be asked: their measurements are not counted.
    incomplete: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
struct Move {
    circle: usize,
    circle_name: String,
    db: String,
    measurement: String,
    from: String,
    from_url: String,
    to: String,
    to_url: String,
    #[serde(flatten)]
    size: Size,
}

#[derive(Debug, Default, Serialize)]
struct CircleSummary {
    id: usize,
    name: String,
    /// Measurements held (one per backend holding it).
    measurements: u64,
    moving: u64,
    series_moving: u64,
    points_moving: u64,
}

/// Compares where `inventory`'s measurements are with where `other` would place them.
fn compute(inventory: &Inventory, other: &Config, file: &str) -> WhatIf {
    let planned = Planned::new(other);
    let mut w = WhatIf {
        moves: Vec::new(),
        circles: Vec::new(),
        notes: Vec::new(),
        incomplete: Vec::new(),
    };
    for c in &inventory.circles {
        let Some(new_circle) = other.circles.get(c.id) else {
            w.notes.push(format!(
                "circle {} (#{}) is not in {file}: no rebalance moves its data",
                c.name, c.id
            ));
            continue;
        };
        let mut sum = CircleSummary {
            id: c.id,
            name: c.name.clone(),
            ..CircleSummary::default()
        };
        for b in &c.backends {
            if let Some(e) = &b.error {
                w.incomplete.push(format!("{} ({}): {e}", b.name, b.url));
            }
            for (db, measurements) in &b.databases {
                for (m, size) in measurements {
                    sum.measurements += 1;
                    let to = planned
                        .owner(c.id, db, m)
                        .and_then(|i| new_circle.backends.get(i));
                    let Some(to) = to.filter(|to| !same_url(&to.url, &b.url)) else {
                        continue;
                    };
                    sum.moving += 1;
                    sum.series_moving += size.series.unwrap_or(0);
                    sum.points_moving += size.points.unwrap_or(0);
                    w.moves.push(Move {
                        circle: c.id,
                        circle_name: c.name.clone(),
                        db: db.clone(),
                        measurement: m.clone(),
                        from: b.name.clone(),
                        from_url: b.url.clone(),
                        to: to.name.clone(),
                        to_url: to.url.clone(),
                        size: *size,
                    });
                }
            }
        }
        w.circles.push(sum);
    }
    for (id, cc) in other
        .circles
        .iter()
        .enumerate()
        .skip(inventory.circles.len())
    {
        w.notes.push(format!(
            "circle {} (#{id}) is new in {file}: fill it with `influx-proxy ctl recovery`",
            cc.name
        ));
    }
    w
}

/// Whether two backend URLs name the same server (as the migration compares them).
fn same_url(a: &str, b: &str) -> bool {
    a.trim_end_matches('/') == b.trim_end_matches('/')
}

fn render(w: &WhatIf, file: &str) -> String {
    let mut out = String::new();
    if w.moves.is_empty() {
        out.push_str(&format!("Nothing would move with {file}.\n"));
    } else {
        let mut t = Table::new(&[
            "CIRCLE",
            "DATABASE",
            "MEASUREMENT",
            "FROM",
            "TO",
            "SERIES>",
            "POINTS>",
        ]);
        for m in &w.moves {
            let n = |v: Option<u64>| v.map_or_else(|| "-".to_string(), count);
            t.row(vec![
                m.circle_name.clone(),
                m.db.clone(),
                m.measurement.clone(),
                m.from.clone(),
                m.to.clone(),
                n(m.size.series),
                n(m.size.points),
            ]);
        }
        out.push_str(&t.render());
        out.push('\n');
    }
    for c in &w.circles {
        out.push_str(&format!(
            "{} (#{}): {} of {} measurements move ({} series, {} points)\n",
            c.name,
            c.id,
            count(c.moving),
            count(c.measurements),
            count(c.series_moving),
            count(c.points_moving)
        ));
    }
    for n in &w.notes {
        out.push_str(&format!("note: {n}\n"));
    }
    for i in &w.incomplete {
        out.push_str(&format!("INCOMPLETE: not asked: {i}\n"));
    }
    if w.circles.iter().any(|c| c.moving > 0) {
        out.push_str(
            "To apply: install the config, `influx-proxy ctl reload`, then \
             `influx-proxy ctl rebalance --circle <circle>` (and `ctl clear` once it is done).\n",
        );
    }
    out
}

/// `ctl placement --what-if FILE`.
fn what_if(
    ctx: &Ctx,
    path: &Path,
    db: Option<&str>,
    measurement: Option<&str>,
    sizes: bool,
) -> Outcome {
    let other =
        Config::load(path).map_err(|e| CtlError::Config(format!("{}: {e}", path.display())))?;
    let mut query = Vec::new();
    if let Some(db) = db {
        query.push(("db", db));
    }
    if !sizes {
        query.push(("sizes", "false"));
    }
    let v = ctx
        .target
        .get_json_within(&with_query("/inventory", &query), SIZES_TIMEOUT)?;
    let mut inventory: Inventory =
        serde_json::from_value(v).map_err(|e| CtlError::Refused(format!("/inventory: {e}")))?;
    if let Some(m) = measurement {
        for b in inventory.circles.iter_mut().flat_map(|c| &mut c.backends) {
            for ms in b.databases.values_mut() {
                ms.retain(|name, _| name == m);
            }
        }
    }
    let file = path.display().to_string();
    let w = compute(&inventory, &other, &file);
    if ctx.json {
        ctx.print_json(&serde_json::to_value(&w).unwrap_or(Value::Null));
    } else {
        print!("{}", render(&w, &file));
    }
    Ok(if w.incomplete.is_empty() {
        Exit::Done
    } else {
        Exit::Failed
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn config(backends: &[(&str, &str)], pins: &str) -> Config {
        let backends: Vec<Value> = backends
            .iter()
            .map(|(n, u)| json!({"name": n, "url": u}))
            .collect();
        Config::from_str(
            &json!({"rules": serde_json::from_str::<Value>(pins).unwrap(),
                "circles": [{"name": "c1", "backends": backends}]})
            .to_string(),
        )
        .unwrap()
    }

    /// Every measurement `m0..m40` of `db`, each on the backend the `running` config places
    /// it on.
    fn inventory(running: &Config) -> Inventory {
        let planned = Planned::new(running);
        let mut held: BTreeMap<usize, BTreeMap<String, Size>> = BTreeMap::new();
        for i in 0..40 {
            let m = format!("m{i}");
            let owner = planned.owner(0, "db", &m).unwrap();
            let size = Size {
                series: Some(i),
                points: Some(10 * i),
            };
            held.entry(owner).or_default().insert(m, size);
        }
        let backends = running.circles[0]
            .backends
            .iter()
            .enumerate()
            .map(|(i, b)| Holder {
                name: b.name.clone(),
                url: b.url.clone(),
                databases: BTreeMap::from([(
                    "db".to_string(),
                    held.remove(&i).unwrap_or_default(),
                )]),
                error: None,
            })
            .collect();
        Inventory {
            circles: vec![HeldCircle {
                id: 0,
                name: "c1".into(),
                backends,
            }],
        }
    }

    #[test]
    fn the_same_config_moves_nothing() {
        let running = config(&[("a", "http://h:1"), ("b", "http://h:2")], "[]");
        let w = compute(&inventory(&running), &running, "same.json");
        assert!(w.moves.is_empty());
        assert_eq!(w.circles[0].measurements, 40);
        assert!(render(&w, "same.json").contains("Nothing would move"));
    }

    #[test]
    fn an_added_backend_takes_exactly_what_it_will_own() {
        let running = config(&[("a", "http://h:1"), ("b", "http://h:2")], "[]");
        let other = config(
            &[
                ("a", "http://h:1"),
                ("b", "http://h:2/"),
                ("c", "http://h:3"),
            ],
            "[]",
        );
        let w = compute(&inventory(&running), &other, "other.json");
        let planned = Planned::new(&other);
        let expected: Vec<String> = (0..40)
            .map(|i| format!("m{i}"))
            .filter(|m| planned.owner(0, "db", m) == Some(2))
            .collect();
        let mut moved: Vec<String> = w.moves.iter().map(|m| m.measurement.clone()).collect();
        moved.sort();
        let mut expected_sorted = expected.clone();
        expected_sorted.sort();
        assert!(!expected.is_empty());
        assert_eq!(moved, expected_sorted);
        assert!(w.moves.iter().all(|m| m.to == "c"));
        let points: u64 = w.moves.iter().filter_map(|m| m.size.points).sum();
        assert_eq!(w.circles[0].points_moving, points);
        let text = render(&w, "other.json");
        assert!(
            text.contains(&format!("{} of 40 measurements move", expected.len())),
            "{text}"
        );
    }

    #[test]
    fn a_pin_moves_its_measurements_to_the_pinned_backend() {
        let running = config(&[("a", "http://h:1"), ("b", "http://h:2")], "[]");
        let other = config(
            &[("a", "http://h:1"), ("b", "http://h:2")],
            r#"[{"action": "pin", "database": "db", "measurement_regex": "^m1", "backends": ["a"]}]"#,
        );
        let w = compute(&inventory(&running), &other, "pins.json");
        assert!(!w.moves.is_empty());
        assert!(w
            .moves
            .iter()
            .all(|m| m.measurement.starts_with("m1") && m.from == "b" && m.to == "a"));
    }

    #[test]
    fn circles_only_one_config_has_and_unreachable_backends_are_reported() {
        let running = config(&[("a", "http://h:1")], "[]");
        let mut inv = inventory(&running);
        inv.circles[0].backends[0].error = Some("backend is down".into());
        inv.circles.push(HeldCircle {
            id: 1,
            name: "gone".into(),
            backends: Vec::new(),
        });
        let w = compute(&inv, &running, "x.json");
        assert_eq!(w.incomplete, ["a (http://h:1): backend is down"]);
        assert!(w.notes[0].contains("gone"), "{:?}", w.notes);
    }
}
