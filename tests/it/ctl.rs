//! `influx-proxy ctl`, run as an operator runs it (the built binary, address and credentials
//! from the proxy's config file, output on pipes), against a real proxy and real influxd:
//! every command, the exit codes, the what-if placement against the rebalance that follows,
//! plain progress lines while following an operation, dead letters, and reload.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::free_port;
use crate::support::http::{self, wait_until};
use crate::support::influxd::Influxd;
use crate::support::proxy::{circles_config, ctl, influxds, CtlRun, Proxy};
use crate::support::unique_db;

const WAIT: Duration = Duration::from_secs(60);
const T0: i64 = 1_600_000_000_000_000_000;

fn json_of(run: &CtlRun) -> Value {
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("not JSON ({e}):\n{run}"))
}

fn assert_exit(run: &CtlRun, code: i32) {
    assert_eq!(run.code, Some(code), "{run}");
}

/// The measurements of `db` on each server, in order.
fn held(servers: &[&Influxd], db: &str) -> Vec<BTreeSet<String>> {
    servers
        .iter()
        .map(|s| s.measurements(db).into_iter().collect())
        .collect()
}

/// The lines of a followed operation's output that report progress (`[12s] rebalance #1 ...`).
fn progress_lines<'a>(run: &'a CtlRun, operation: &str) -> Vec<&'a str> {
    let tag = format!("] {operation} #");
    run.stdout
        .lines()
        .filter(|l| l.starts_with('[') && l.contains(&tag))
        .collect()
}

/// The what-if of a config with a third backend names, before anything changes, exactly the
/// measurements the rebalance after the reload then copies, and their sizes; the reload
/// prints the diff the proxy applied; the rebalance, followed on a pipe, prints plain
/// progress lines and its summary; the clear leaves each measurement on its owner alone.
#[test]
fn what_if_names_exactly_the_measurements_the_rebalance_then_moves() {
    let servers = influxds(3, Influxd::spawn);
    let urls: Vec<&str> = servers.iter().map(|s| s.url.as_str()).collect();
    let config = circles_config(&[&urls[0..2]]);
    let proxy = Proxy::start(config.clone());
    let db = unique_db("whatif");
    assert_eq!(
        http::query_post(&proxy.url, &[("q", &format!("CREATE DATABASE {db}"))]).status,
        200
    );
    let body: String = (0..40)
        .flat_map(|m| (0..3).map(move |i| format!("mm{m},h=a v={i} {}\n", T0 + i)))
        .collect();
    assert_eq!(http::write(&proxy.url, &db, body).status, 204);
    proxy.wait_delivered();
    let all: Vec<&Influxd> = servers.iter().collect();
    let before = held(&all, &db);
    assert_eq!(before[0].len() + before[1].len(), 40);

    let mut other = config.clone();
    other["circles"][0]["backends"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "influxdb-1-3", "url": urls[2]}));
    let other_path = proxy.dir.join("other.json");
    std::fs::write(&other_path, other.to_string()).unwrap();
    let what_if = proxy.ctl(&[
        "placement",
        "--what-if",
        other_path.to_str().unwrap(),
        "--json",
    ]);
    assert_exit(&what_if, 0);
    let report = json_of(&what_if);
    let moves = report["moves"].as_array().unwrap();
    assert!(!moves.is_empty(), "{what_if}");
    for m in moves {
        assert_eq!(
            (m["series"].as_u64(), m["points"].as_u64()),
            (Some(1), Some(3)),
            "{m}"
        );
    }
    let names = ["influxdb-1-1", "influxdb-1-2", "influxdb-1-3"];
    let incoming = |backend: &str| -> BTreeSet<String> {
        moves
            .iter()
            .filter(|m| m["to"] == backend && m["db"] == db.as_str())
            .map(|m| m["measurement"].as_str().unwrap().to_string())
            .collect()
    };
    let text = proxy.ctl(&["placement", "--what-if", other_path.to_str().unwrap()]);
    assert_exit(&text, 0);
    assert!(
        text.stdout
            .contains(&format!("{} of 40 measurements move", moves.len())),
        "{text}"
    );

    proxy.rewrite_config(other);
    let reload = proxy.ctl(&["reload"]);
    assert_exit(&reload, 0);
    assert!(
        reload.stdout.contains("backends added: influxdb-1-3"),
        "{reload}"
    );
    assert!(reload.stdout.contains("placement changed"), "{reload}");

    let rebalance = proxy.ctl(&["rebalance", "--circle", "circle-1"]);
    assert_exit(&rebalance, 0);
    assert!(
        !progress_lines(&rebalance, "rebalance").is_empty(),
        "{rebalance}"
    );
    let summary = rebalance.stdout.lines().last().unwrap_or("");
    assert!(
        summary.starts_with("rebalance #") && summary.contains(" done in "),
        "{rebalance}"
    );
    assert!(
        summary.contains(&format!("{} copied", moves.len())),
        "{rebalance}"
    );
    // The job ends once its copies are delivered: they are on the new owners now.
    let after = held(&all, &db);
    for (i, name) in names.iter().enumerate() {
        let expected: BTreeSet<String> = before[i].union(&incoming(name)).cloned().collect();
        assert_eq!(after[i], expected, "{name}: {rebalance}");
    }

    let clear = proxy.ctl(&["clear", "--circle", "0"]);
    assert_exit(&clear, 0);
    assert!(
        clear.stdout.contains(&format!("{} dropped", moves.len())),
        "{clear}"
    );
    let outgoing: BTreeSet<String> = moves
        .iter()
        .map(|m| m["measurement"].as_str().unwrap().to_string())
        .collect();
    let cleared = held(&all, &db);
    for (i, name) in names.iter().enumerate() {
        let mut expected: BTreeSet<String> = before[i].difference(&outgoing).cloned().collect();
        expected.extend(incoming(name));
        assert_eq!(cleared[i], expected, "{name}: {clear}");
    }
}

/// `status` and `placement` with the credentials of the config file; exit 3 for a wrong
/// password and an unreachable proxy, 2 for a wrong flag, 1 for an unknown circle, 4 once a
/// backend is down.
#[test]
fn status_placement_and_the_exit_codes_an_operator_scripts_on() {
    let mut servers = influxds(2, Influxd::spawn);
    let mut config = circles_config(&[&[servers[0].url.as_str()], &[servers[1].url.as_str()]]);
    config["username"] = json!("admin");
    config["password"] = json!("s3cret");
    let proxy = Proxy::start(config);

    let status = proxy.ctl(&["status"]);
    assert_exit(&status, 0);
    for expected in ["circle-1", "influxdb-1-1", "influxdb-2-1", "Healthy"] {
        assert!(status.stdout.contains(expected), "{status}");
    }
    let report = json_of(&proxy.ctl(&["status", "--json"]));
    assert_eq!(report["healthy"], true);
    assert_eq!(report["circles"][1]["backends"][0]["name"], "influxdb-2-1");
    assert_eq!(report["circles"][0]["backends"][0]["queue_points"], 0);

    let placement = proxy.ctl(&["placement", "db", "cpu"]);
    assert_exit(&placement, 0);
    let lines: Vec<&str> = placement.stdout.lines().collect();
    assert!(
        lines[1].starts_with("circle-1  influxdb-1-1"),
        "{placement}"
    );
    assert!(
        lines[2].starts_with("circle-2  influxdb-2-1"),
        "{placement}"
    );

    let wrong = proxy.ctl(&["status", "--password", "wrong"]);
    assert_exit(&wrong, 3);
    assert!(wrong.stderr.contains("401"), "{wrong}");
    let nobody = format!("http://127.0.0.1:{}", free_port());
    let unreachable = ctl(&["--url", &nobody, "status"]);
    assert_exit(&unreachable, 3);
    assert!(unreachable.stderr.contains("cannot reach"), "{unreachable}");
    assert_exit(&proxy.ctl(&["status", "--bogus"]), 2);
    let unknown = proxy.ctl(&["clear", "--circle", "nope"]);
    assert_exit(&unknown, 1);
    assert!(unknown.stderr.contains("unknown circle"), "{unknown}");

    servers[1].kill9();
    let db = unique_db("status");
    let create = format!("CREATE DATABASE {db}");
    let auth = [("u", "admin"), ("p", "s3cret")];
    let q = [("q", create.as_str()), auth[0], auth[1]];
    assert_eq!(http::query_post(&proxy.url, &q).status, 200);
    let write = http::write_with(
        &proxy.url,
        &format!("db={db}&u=admin&p=s3cret"),
        format!("cpu v=1 {T0}\n"),
        false,
    );
    assert_eq!(write.status, 204, "{}", write.body);
    // The write waits in the down backend's queue, and its age grows.
    let mut last = None;
    let waiting = wait_until(WAIT, || {
        let run = proxy.ctl(&["status", "--json"]);
        let b = json_of(&run)["circles"][1]["backends"][0].clone();
        last = Some(run);
        b["active"] == false && b["queue_points"] == 1 && b["oldest_age_s"].as_u64() >= Some(1)
    });
    assert!(waiting, "{}", last.unwrap());
    let last = proxy.ctl(&["status"]);
    assert_exit(&last, 4);
    assert!(last.stdout.contains("DOWN"), "{last}");
    assert!(
        last.stdout.contains("backend influxdb-2-1"),
        "the problem names the backend: {last}"
    );
}

/// Anti-entropy compare (exit 4 while the circles differ) and repair, recovery of a wiped
/// circle, a detached resync re-attached with `watch`, and `watch` with nothing running.
#[test]
fn compare_repair_recovery_resync_and_watch_follow_the_jobs_they_start() {
    let servers = influxds(2, Influxd::spawn);
    let (a, b) = (&servers[0], &servers[1]);
    let proxy = Proxy::start(circles_config(&[&[a.url.as_str()], &[b.url.as_str()]]));
    let db = unique_db("ae");
    a.create_db(&db);
    b.create_db(&db);
    // Written around the proxy: only circle-1 has them.
    assert_eq!(
        a.write(&db, format!("m1,h=x v=1 {T0}\nm2,h=y v=2 {T0}\n")),
        204
    );

    let compare = proxy.ctl(&["compare", "--db", &db]);
    assert_exit(&compare, 4);
    assert!(compare.stdout.contains("m1"), "{compare}");
    assert!(compare.stdout.contains("2 differing buckets"), "{compare}");
    let report = json_of(&proxy.ctl(&["compare", "--db", &db, "--json"]));
    assert_eq!(report["differing"], 2);

    let repair = proxy.ctl(&["repair", "--db", &db]);
    assert_exit(&repair, 0);
    assert!(!progress_lines(&repair, "repair").is_empty(), "{repair}");
    assert!(repair.stdout.contains(" done in "), "{repair}");
    assert_eq!(b.count(&db, "m1"), 1, "{repair}");
    assert_exit(&proxy.ctl(&["compare", "--db", &db]), 0);
    assert_exit(&proxy.ctl(&["compare", "--db", &db, "--deep"]), 0);

    b.drop_db(&db);
    let recovery = proxy.ctl(&["recovery", "--from", "circle-1", "--to", "circle-2"]);
    assert_exit(&recovery, 0);
    assert!(recovery.stdout.contains("recovery #"), "{recovery}");
    assert_eq!(
        (b.count(&db, "m1"), b.count(&db, "m2")),
        (1, 1),
        "{recovery}"
    );

    b.drop_db(&db);
    let started = proxy.ctl(&["resync", "--detach", "--json"]);
    assert_exit(&started, 0);
    let id = json_of(&started)["job"].as_u64().unwrap();
    let watch = proxy.ctl(&["watch", "--job", &id.to_string()]);
    assert_exit(&watch, 0);
    assert!(
        watch.stdout.contains(&format!("resync #{id} done in")),
        "{watch}"
    );
    assert_eq!(b.count(&db, "m2"), 1, "{watch}");

    let idle = proxy.ctl(&["watch"]);
    assert_exit(&idle, 0);
    assert!(idle.stdout.contains("No operation is running."), "{idle}");
    assert!(idle.stdout.contains(&format!("resync #{id}")), "{idle}");
}

/// Dead letters: listed with their cause, exported to a file, purge refused without --yes
/// off a terminal, replayed once the schema is fixed, purged.
#[test]
fn dead_letters_are_listed_exported_replayed_and_purged_from_the_command_line() {
    let influxd = Influxd::spawn();
    let mut config = circles_config(&[&[influxd.url.as_str()]]);
    config["flush_time"] = json!(2);
    let proxy = Proxy::start(config);
    let db = unique_db("dlctl");
    influxd.create_db(&db);
    for i in 0..3 {
        let resp = http::write(&proxy.url, &db, format!("x,h=h{i} f={i}i {}\n", 10 + i));
        assert_eq!(resp.status, 204, "{}", resp.body);
    }
    // Within the flush window: x.f becomes a string behind the proxy.
    assert_eq!(influxd.write(&db, "x,h=other f=\"s\" 1\n"), 204);
    let dead_points = || {
        let run = proxy.ctl(&["dead-letters", "list", "--json"]);
        json_of(&run)["backends"][0]["points"].as_u64().unwrap_or(0)
    };
    assert!(wait_until(WAIT, || dead_points() == 3), "{}", proxy.log());

    let list = proxy.ctl(&["dead-letters", "list"]);
    assert_exit(&list, 0);
    let row = list.stdout.lines().nth(1).unwrap_or("");
    assert!(row.starts_with("influxdb-1-1"), "{list}");
    assert!(row.contains("field type conflict"), "{list}");

    let file = proxy.dir.join("refused.txt");
    let export = proxy.ctl(&[
        "dead-letters",
        "export",
        "--backend",
        "influxdb-1-1",
        file.to_str().unwrap(),
    ]);
    assert_exit(&export, 0);
    let exported = std::fs::read_to_string(&file).unwrap();
    let lines: Vec<&str> = exported.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(
        lines,
        ["x,h=h0 f=0i 10", "x,h=h1 f=1i 11", "x,h=h2 f=2i 12"]
    );

    let unconfirmed = proxy.ctl(&["dead-letters", "purge"]);
    assert_exit(&unconfirmed, 2);
    assert!(unconfirmed.stderr.contains("--yes"), "{unconfirmed}");
    assert_eq!(dead_points(), 3);

    influxd.exec(&db, "DROP MEASUREMENT x");
    let replay = proxy.ctl(&["dead-letters", "replay", "--backend", "influxdb-1-1"]);
    assert_exit(&replay, 0);
    assert!(replay.stdout.contains("3 points queued again"), "{replay}");
    assert!(
        wait_until(WAIT, || influxd.count(&db, "x") == 3),
        "{}",
        proxy.log()
    );

    influxd.exec(&db, "DROP MEASUREMENT x");
    assert_eq!(influxd.write(&db, "x,h=other f=\"s\" 1\n"), 204);
    assert_eq!(http::write(&proxy.url, &db, "x,h=h9 f=9i 19\n").status, 204);
    assert!(wait_until(WAIT, || dead_points() == 1), "{}", proxy.log());
    let purge = proxy.ctl(&["dead-letters", "purge", "--yes"]);
    assert_exit(&purge, 0);
    assert!(
        purge
            .stdout
            .contains("influxdb-1-1: 1 records, 1 points deleted"),
        "{purge}"
    );
    assert_eq!(dead_points(), 0);
}

/// `reload` validates the proxy's config file first (an invalid one is never signalled),
/// reports a reload the proxy refused (exit 1), and prints the diff it applied.
#[test]
fn reload_validates_first_then_prints_the_diff_the_proxy_applied() {
    let servers = influxds(2, Influxd::spawn);
    let config = circles_config(&[&[servers[0].url.as_str()]]);
    let proxy = Proxy::start(config.clone());
    let reloads = || http::get(&format!("{}/process", proxy.url)).json()["reloads"].clone();
    let good = std::fs::read_to_string(&proxy.config_path).unwrap();

    std::fs::write(&proxy.config_path, r#"{"circles": []}"#).unwrap();
    let check = proxy.ctl(&["check-config", proxy.config_path.to_str().unwrap()]);
    assert_exit(&check, 1);
    assert!(check.stderr.contains("circles"), "{check}");
    let invalid = ctl(&["--url", &proxy.url, "reload"]);
    assert_exit(&invalid, 1);
    assert!(invalid.stderr.contains("not reloaded"), "{invalid}");
    assert_eq!(reloads(), 0, "an invalid file is never signalled");

    std::fs::write(&proxy.config_path, good).unwrap();
    let mut moved = config.clone();
    moved["listen_addr"] = json!(format!("127.0.0.1:{}", free_port()));
    proxy.rewrite_config(moved);
    let refused = ctl(&["--url", &proxy.url, "reload"]);
    assert_exit(&refused, 1);
    assert!(
        refused.stdout.contains("Reload refused: listen_addr"),
        "{refused}"
    );
    assert_eq!(reloads(), 1);

    let mut grown = config;
    // Back to the address the proxy listens on (the refused file moved it).
    grown["listen_addr"] = json!(format!("127.0.0.1:{}", proxy.port));
    grown["circles"] =
        circles_config(&[&[servers[0].url.as_str(), servers[1].url.as_str()]])["circles"].clone();
    proxy.rewrite_config(grown);
    let check = proxy.ctl(&["check-config"]);
    assert_exit(&check, 0);
    assert!(
        check.stdout.contains("is valid: 1 circles, 2 backends"),
        "{check}"
    );
    let applied = proxy.ctl(&["reload"]);
    assert_exit(&applied, 0);
    assert!(
        applied.stdout.starts_with("Reloaded: added influxdb-1-2"),
        "{applied}"
    );
    assert!(
        applied.stdout.contains("backends added: influxdb-1-2"),
        "{applied}"
    );
    assert!(proxy.ctl(&["status"]).stdout.contains("influxdb-1-2"));
}

/// `--help` on every command, the exit codes in `ctl --help`, and completion scripts.
#[test]
fn every_command_has_help_and_completions_are_generated() {
    let help = ctl(&["--help"]);
    assert_exit(&help, 0);
    assert!(help.stdout.contains("Exit codes:"), "{help}");
    let commands = [
        "status",
        "placement",
        "rebalance",
        "recovery",
        "resync",
        "clear",
        "compare",
        "repair",
        "watch",
        "dead-letters",
        "check-config",
        "reload",
        "completions",
    ];
    for command in commands {
        assert!(help.stdout.contains(command), "{command}: {help}");
        let run = ctl(&[command, "--help"]);
        assert_exit(&run, 0);
        assert!(
            run.stdout
                .contains(&format!("Usage: influx-proxy ctl {command}")),
            "{run}"
        );
    }
    for command in ["list", "export", "replay", "purge"] {
        assert_exit(&ctl(&["dead-letters", command, "--help"]), 0);
    }
    let bash = ctl(&["completions", "bash"]);
    assert_exit(&bash, 0);
    assert!(
        bash.stdout.contains("influx-proxy") && bash.stdout.contains("rebalance"),
        "{bash}"
    );
    for shell in ["zsh", "fish"] {
        assert_exit(&ctl(&["completions", shell]), 0);
    }
    assert_exit(&ctl(&["completions", "tcsh"]), 2);
}
