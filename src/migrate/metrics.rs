//! Migration progress in `/metrics`, so that `influx-proxy top`, Prometheus and Grafana see
//! what `/migrate/stats` shows, with a rate and an ETA of their own.
//!
//! - `influx_proxy_migration_running{operation}`: jobs of each kind running now (every kind
//!   is listed, 0 when idle).
//! - `influx_proxy_migration_steps{operation, circle, backend}` and `..._steps_done`: the
//!   current or last job's work per source backend: measurements to walk (rebalance,
//!   recovery, resync, clear) or differing buckets to mend (repair: one series, `circle`
//!   and `backend` empty). `done / steps` is its progress bar.
//! - `influx_proxy_migration_points_total{operation, circle, backend}`: points copied into
//!   the destinations' queues since start. Only grows, across jobs, so `rate()` works.
//! - `influx_proxy_repair_points_left`: the points a repair has still to write (estimated
//!   from the counts it compared), for its ETA.
//!
//! Jobs keep their stats by circle index and source URL; the labels are the names in the
//! running config (`circle`, `backend`, as in every per-backend metric), the URL itself for a
//! source no longer in it (a backend removed by `rebalance?operation=rm`).

use super::{JobKind, Jobs, Source};
use crate::cluster::Cluster;
use crate::metrics::{Encoder, MetricType};

/// Writes the migration families (see the module doc).
pub(crate) fn encode(enc: &mut Encoder, cluster: &Cluster, jobs: &Jobs) {
    let circle = |i: usize| {
        cluster
            .circles
            .get(i)
            .map_or_else(|| i.to_string(), |c| c.name.clone())
    };
    let backend = |url: &str| {
        cluster
            .backends()
            .find(|h| h.backend.info.url == url)
            .map_or_else(|| url.to_string(), |h| h.backend.info.name.clone())
    };
    encode_with(enc, jobs, &circle, &backend);
}

/// [`encode`] with the names given by `circle` (of an index) and `backend` (of a URL).
fn encode_with(
    enc: &mut Encoder,
    jobs: &Jobs,
    circle: &dyn Fn(usize) -> String,
    backend: &dyn Fn(&str) -> String,
) {
    let name = "influx_proxy_migration_running";
    enc.header(
        name,
        "Migration jobs running now (rebalance, recovery, resync, clear, repair).",
        MetricType::Gauge,
    );
    for kind in JobKind::ALL {
        enc.sample(
            name,
            &[("operation", kind.name())],
            u64::from(jobs.running(kind)),
        );
    }
    let labels = |(kind, c, url): &Source| {
        [
            kind.name().to_string(),
            c.map(circle).unwrap_or_default(),
            if url.is_empty() {
                String::new()
            } else {
                backend(url)
            },
        ]
    };
    let sample = |enc: &mut Encoder, name: &str, source: &Source, value: u64| {
        let [op, c, b] = labels(source);
        let pairs = [
            ("operation", op.as_str()),
            ("circle", c.as_str()),
            ("backend", b.as_str()),
        ];
        enc.sample(name, &pairs, value);
    };
    let progress = jobs.progress();
    for (name, help, value) in [
        (
            "influx_proxy_migration_steps",
            "Work of the current or last migration job per source backend: measurements to \
             walk, or differing buckets to mend (repair).",
            (|p| p.steps) as fn(&super::SourceProgress) -> u64,
        ),
        (
            "influx_proxy_migration_steps_done",
            "Measurements walked, or buckets mended (repair), by the current or last \
             migration job per source backend.",
            |p| p.steps_done,
        ),
    ] {
        enc.header(name, help, MetricType::Gauge);
        for p in &progress {
            sample(enc, name, &p.source, value(p));
        }
    }
    let name = "influx_proxy_migration_points_total";
    enc.header(
        name,
        "Points migration jobs copied into the destinations' queues since start, per source \
         backend.",
        MetricType::Counter,
    );
    for (source, points) in jobs.copied() {
        sample(enc, name, &source, points);
    }
    if let Some(left) = jobs.repair_points_left() {
        enc.single(
            "influx_proxy_repair_points_left",
            "Points the current or last anti-entropy repair has still to write (estimated \
             from the counts it compared).",
            MetricType::Gauge,
            left,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(jobs: &Jobs) -> String {
        let mut enc = Encoder::new();
        let circle = |i: usize| format!("circle-{}", i + 1);
        let backend = |url: &str| match url {
            "http://a:8086" => "influxdb-1-1".to_string(),
            other => other.to_string(),
        };
        encode_with(&mut enc, jobs, &circle, &backend);
        enc.finish()
    }

    #[test]
    fn an_idle_proxy_lists_every_operation_as_not_running() {
        let out = text(&Jobs::default());
        for kind in JobKind::ALL {
            let line = format!(
                "influx_proxy_migration_running{{operation=\"{}\"}} 0\n",
                kind.name()
            );
            assert!(out.contains(&line), "{line} not in\n{out}");
        }
        assert!(out.contains("# TYPE influx_proxy_migration_points_total counter\n"));
        assert!(!out.contains("influx_proxy_repair_points_left"), "{out}");
    }

    #[test]
    fn sources_are_named_by_circle_and_backend_and_points_accumulate() {
        let jobs = Jobs::default();
        let (a, gone) = ("http://a:8086".to_string(), "http://gone:8086".to_string());
        jobs.history.lock().start(JobKind::Rebalance, vec![0]);
        jobs.reset(0, JobKind::Rebalance, &[a.clone(), gone.clone()]);
        jobs.update(0, JobKind::Rebalance, &a, |s| {
            s.measurement_total = 8;
            s.measurement_done = 3;
            s.points = 1200;
        });
        jobs.update(0, JobKind::Rebalance, &gone, |s| s.measurement_total = 2);
        let out = text(&jobs);
        for line in [
            "influx_proxy_migration_running{operation=\"rebalance\"} 1\n",
            "influx_proxy_migration_steps{operation=\"rebalance\",circle=\"circle-1\",backend=\"influxdb-1-1\"} 8\n",
            "influx_proxy_migration_steps_done{operation=\"rebalance\",circle=\"circle-1\",backend=\"influxdb-1-1\"} 3\n",
            "influx_proxy_migration_steps{operation=\"rebalance\",circle=\"circle-1\",backend=\"http://gone:8086\"} 2\n",
            "influx_proxy_migration_points_total{operation=\"rebalance\",circle=\"circle-1\",backend=\"influxdb-1-1\"} 1200\n",
        ] {
            assert!(out.contains(line), "{line} not in\n{out}");
        }
    }

    #[test]
    fn a_repair_is_one_series_without_circle_or_backend() {
        let jobs = Jobs::default();
        *jobs.repair.lock() = super::super::repair::RepairProgress {
            phase: "repair".into(),
            buckets_total: 10,
            buckets_done: 4,
            points_left: 600,
            ..Default::default()
        };
        jobs.count_copied((JobKind::Repair, None, String::new()), 400);
        let out = text(&jobs);
        for line in [
            "influx_proxy_migration_steps{operation=\"repair\",circle=\"\",backend=\"\"} 10\n",
            "influx_proxy_migration_steps_done{operation=\"repair\",circle=\"\",backend=\"\"} 4\n",
            "influx_proxy_migration_points_total{operation=\"repair\",circle=\"\",backend=\"\"} 400\n",
            "influx_proxy_repair_points_left 600\n",
        ] {
            assert!(out.contains(line), "{line} not in\n{out}");
        }
    }
}
