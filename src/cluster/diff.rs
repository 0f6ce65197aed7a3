//! What a config change does to the running cluster, decided in one place.
//!
//! A reload used to be a list of refused fields and three booleans, while the real decision
//! (which backend actor to keep) was taken again, implicitly, inside the cluster build. Now
//! [`ClusterDiff::between`] names every backend added, removed, replaced (and why) or kept with
//! new queue bounds, every global setting changed, and every field only a restart can change;
//! [`super::Cluster::build`] applies exactly that. Start-up is the diff from no config at all:
//! every backend added.
//!
//! Applying is all or nothing: the only step that can fail (opening queues,
//! [`super::Queues::open`]) runs before anything is stopped or started.

use std::fmt;

use crate::backend::{client, Info, Settings};
use crate::config::{BackendConfig, CircleConfig, Config};

/// Why a running backend's actor is replaced by a new one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum BackendChange {
    /// URL, credentials or TLS verification: requests go elsewhere or differently.
    Target,
    /// Its circle or `write_only`: it serves another copy or other reads.
    Role,
    /// Batching, timeouts (writes, reads, health checks), retries or gzip: the actor and
    /// the reads of its backend run with other settings.
    Delivery,
}

/// One backend whose actor is replaced, with every reason.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub(crate) struct Replaced {
    /// Backend name (also its queue's name).
    pub name: String,
    /// What changed, in [`BackendChange`] order.
    pub changes: Vec<BackendChange>,
}

/// The difference between the running config (`None` at start-up) and a new one; serialized
/// as `/process` reports the last reload.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub(crate) struct ClusterDiff {
    /// Fields that changed but only a restart can apply; a reload with any applies nothing.
    pub restart: Vec<&'static str>,
    /// Backends only the new config has: started.
    pub added: Vec<String>,
    /// Backends only the running config has: they drain their queue, then stop.
    pub removed: Vec<String>,
    /// Backends in both whose actor is replaced.
    pub replaced: Vec<Replaced>,
    /// Backends kept as they run whose queue or dead-letter bound changes in place (every
    /// backend when the free-space reserve, `wal_min_free_mb`, changes: it bounds them all).
    pub rebound: Vec<String>,
    /// The ring changes: membership or order of a circle, `hash_key`, `shard_key`,
    /// `vnode_size`.
    pub placement: bool,
    /// The pin rules change where measurements live (their data moves with `/rebalance`).
    pub pins: bool,
    /// What the write path checks of each line changed (`max_line_bytes`, `rules`,
    /// `timestamp_window`): the cluster, which applies them, is rebuilt.
    pub lines: Vec<&'static str>,
    /// Settings read per request (auth, db_list, limits, tracing): swapping the config is
    /// enough.
    pub request: Vec<&'static str>,
    /// The log filter changed.
    pub log_level: bool,
    /// UDP listeners (`bind_addr`) added, changed or removed: the reload binds, updates or
    /// closes them (`udp::Listeners`).
    pub udp: Vec<String>,
}

impl ClusterDiff {
    /// Compares the running config (`None`: nothing runs yet) with `new`, both valid.
    pub(crate) fn between(old: Option<&Config>, new: &Config) -> ClusterDiff {
        let mut d = ClusterDiff::default();
        let Some(old) = old else {
            d.added = backends(new).map(|(_, b)| b.name.clone()).collect();
            d.placement = true;
            d.udp = new.udp.iter().map(|u| u.bind_addr.clone()).collect();
            return d;
        };
        (d.restart, d.request) = changed_fields(old, new);
        d.log_level = old.log_level != new.log_level;
        d.udp = udp_changes(old, new);
        d.placement = placement(old) != placement(new);
        d.pins = pins(old).ne(pins(new));
        d.lines = [
            ("max_line_bytes", old.max_line_bytes != new.max_line_bytes),
            ("rules", old.rules != new.rules),
            (
                "timestamp_window",
                old.timestamp_window != new.timestamp_window,
            ),
        ]
        .into_iter()
        .filter(|(_, changed)| *changed)
        .map(|(name, _)| name)
        .collect();
        let delivery = settings(old) != settings(new);
        let bounds = (
            old.wal_max_bytes,
            old.dead_letter_max_bytes,
            old.wal_min_free_mb,
        ) != (
            new.wal_max_bytes,
            new.dead_letter_max_bytes,
            new.wal_min_free_mb,
        );
        for (circle, backend) in backends(new) {
            let Some((old_circle, old_backend)) =
                backends(old).find(|(_, b)| b.name == backend.name)
            else {
                d.added.push(backend.name.clone());
                continue;
            };
            let mut changes = Vec::new();
            if target(old_backend) != target(backend) {
                changes.push(BackendChange::Target);
            }
            if role(old_circle, old_backend) != role(circle, backend) {
                changes.push(BackendChange::Role);
            }
            if delivery {
                changes.push(BackendChange::Delivery);
            }
            if !changes.is_empty() {
                d.replaced.push(Replaced {
                    name: backend.name.clone(),
                    changes,
                });
            } else if bounds {
                d.rebound.push(backend.name.clone());
            }
        }
        d.removed = backends(old)
            .filter(|(_, b)| !backends(new).any(|(_, n)| n.name == b.name))
            .map(|(_, b)| b.name.clone())
            .collect();
        d
    }

    /// Nothing changed at all.
    pub(crate) fn is_empty(&self) -> bool {
        self.restart.is_empty()
            && !self.changes_cluster()
            && self.request.is_empty()
            && !self.log_level
            && self.udp.is_empty()
    }

    /// The cluster must be rebuilt: a backend comes, goes, is replaced or rebound, or the ring
    /// changes.
    pub(crate) fn changes_cluster(&self) -> bool {
        self.placement
            || self.pins
            || !self.lines.is_empty()
            || !self.added.is_empty()
            || !self.removed.is_empty()
            || !self.replaced.is_empty()
            || !self.rebound.is_empty()
    }

    /// Whether backend `name`'s running actor is kept (not added, not replaced).
    pub(crate) fn keeps(&self, name: &str) -> bool {
        !self.added.iter().any(|n| n == name) && !self.replaced.iter().any(|r| r.name == name)
    }
}

impl fmt::Display for ClusterDiff {
    /// A one-line summary for logs and `systemctl reload` output: `none`, or the kinds of
    /// change with the backends they touch.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts: Vec<String> = Vec::new();
        let list = |label: &str, names: &[String]| format!("{label} {}", names.join(" "));
        if !self.added.is_empty() {
            parts.push(list("added", &self.added));
        }
        if !self.removed.is_empty() {
            parts.push(list("removed", &self.removed));
        }
        if !self.replaced.is_empty() {
            let names: Vec<String> = self
                .replaced
                .iter()
                .map(|r| format!("{}{:?}", r.name, r.changes))
                .collect();
            parts.push(list("replaced", &names));
        }
        if !self.rebound.is_empty() {
            parts.push(list("queue bounds of", &self.rebound));
        }
        if self.placement {
            parts.push("placement".into());
        }
        if self.pins {
            parts.push("pins".into());
        }
        parts.extend(self.lines.iter().map(|s| s.to_string()));
        parts.extend(self.request.iter().map(|s| s.to_string()));
        if self.log_level {
            parts.push("log_level".into());
        }
        if !self.udp.is_empty() {
            parts.push(list("udp", &self.udp));
        }
        if parts.is_empty() {
            return f.write_str("none");
        }
        f.write_str(&parts.join(", "))
    }
}

/// The UDP listeners the reload touches: each entry of `new` not in `old` as it is (added or
/// changed), then each address of `old` that `new` no longer has (removed).
fn udp_changes(old: &Config, new: &Config) -> Vec<String> {
    let mut out: Vec<String> = new
        .udp
        .iter()
        .filter(|u| !old.udp.contains(u))
        .map(|u| u.bind_addr.clone())
        .collect();
    for u in &old.udp {
        if !new.udp.iter().any(|n| n.bind_addr == u.bind_addr) {
            out.push(u.bind_addr.clone());
        }
    }
    out
}

/// Every backend of `config` with its circle, in config order.
fn backends(config: &Config) -> impl Iterator<Item = (&CircleConfig, &BackendConfig)> {
    config
        .circles
        .iter()
        .flat_map(|c| c.backends.iter().map(move |b| (c, b)))
}

/// What the rings are built from: each circle's backend names in order, and the hashing
/// settings.
fn placement(config: &Config) -> impl PartialEq + '_ {
    let members: Vec<(&str, Vec<(&str, &str)>)> = config
        .circles
        .iter()
        .map(|c| {
            let backends = c
                .backends
                .iter()
                .map(|b| (b.name.as_str(), b.url.as_str()))
                .collect();
            (c.name.as_str(), backends)
        })
        .collect();
    (
        members,
        &config.hash_key,
        &config.shard_key,
        config.vnode_size,
    )
}

/// The pin rules with the backends they name: where pinned measurements live.
fn pins(config: &Config) -> impl Iterator<Item = (&crate::rules::LineRule, &[String])> {
    config.rules.iter().filter_map(|r| match &r.action {
        crate::config::RuleAction::Pin(backends) => Some((r, backends.as_slice())),
        crate::config::RuleAction::Drop | crate::config::RuleAction::Keep => None,
    })
}

/// The delivery settings every backend actor of `config` runs with.
pub(super) fn settings(config: &Config) -> Settings {
    Settings {
        flush_size: config.flush_size.max(1) as u64,
        concurrency: config
            .write_concurrency
            .clamp(1, crate::config::MAX_WRITE_CONCURRENCY),
        gzip: config.write_gzip,
        flush_time: config.flush_time,
        check_interval: config.check_interval,
        max_backoff: config.rewrite_interval,
        timeout: config.write_timeout,
        query_timeout: config.query_timeout,
    }
}

/// A backend's part in the cluster: which copy it holds, whether it serves reads.
fn role<'c>(circle: &'c CircleConfig, backend: &BackendConfig) -> (&'c str, bool) {
    (&circle.name, backend.write_only)
}

/// Who a backend is in its cluster.
pub(super) fn info(circle: &CircleConfig, backend: &BackendConfig) -> Info {
    Info {
        name: backend.name.clone(),
        url: backend.url.trim_end_matches('/').to_string(),
        circle: circle.name.clone(),
        write_only: backend.write_only,
    }
}

/// Where and how a backend's requests go.
pub(super) fn target(backend: &BackendConfig) -> client::Target {
    client::Target {
        url: backend.url.trim_end_matches('/').to_string(),
        credentials: backend.credentials(),
        tls_skip_verify: backend.tls_skip_verify,
    }
}

/// How a reload applies each field of [`Config`], and which of the fields a restart or
/// the next request applies changed. The `Config` pattern names every field and has no
/// `..`: a new field does not compile until it is put in a class here.
macro_rules! reload_classes {
    ($old:expr, $new:expr;
     restart: $($restart:ident),+;
     request: $($request:ident),+;
     cluster: $($cluster:ident),+;
     listeners: $($listeners:ident),+;
     ignored: $($ignored:ident),+ $(;)?) => {{
        let Config {
            $($restart: _,)+
            $($request: _,)+
            $($cluster: _,)+
            $($listeners: _,)+
            $($ignored: _,)+
        } = $new;
        let changed = |fields: &[(&'static str, bool)]| -> Vec<&'static str> {
            fields.iter().filter(|(_, c)| *c).map(|(n, _)| *n).collect()
        };
        (
            changed(&[$((stringify!($restart), $old.$restart != $new.$restart)),+]),
            changed(&[$((stringify!($request), $old.$request != $new.$request)),+]),
        )
    }};
}

/// The fields that changed and only a restart applies (the listen socket, the queue
/// directory and its durability, TLS files, the memory budget), and those read per request
/// (a reload swaps the config and they apply to the next request).
fn changed_fields(old: &Config, new: &Config) -> (Vec<&'static str>, Vec<&'static str>) {
    reload_classes!(old, new;
        restart: listen_addr, data_dir, https_enabled, https_cert, https_key, tls, wal_sync,
            idle_timeout, shutdown_timeout, memory_budget_mb;
        request: db_list, username, password, auth_secure, ping_auth_enabled, pprof_enabled,
            write_tracing, query_tracing, max_body_bytes, max_decompressed_bytes,
            mlog_dir, ha_addrs, migrate_cpus, migrate_batch, anti_entropy_interval,
            anti_entropy_window, anti_entropy_rate, write_pace_max_wait;
        // Compared by `ClusterDiff::between` itself: the rings (`placement`), the pins, each
        // backend (`target`, `role`), the actors' delivery `settings`, the queue bounds, the
        // write path's line checks (`lines`), the log filter.
        cluster: circles, hash_key, shard_key, vnode_size, flush_size, flush_time,
            check_interval, rewrite_interval, write_timeout, query_timeout, write_concurrency,
            write_gzip, wal_max_bytes, dead_letter_max_bytes, wal_min_free_mb, log_level,
            max_line_bytes, rules, timestamp_window;
        // Compared by `ClusterDiff::between` (`udp`) and applied by the reload, which binds new
        // sockets before anything else changes.
        listeners: udp;
        // Accepted for Go proxy files, without effect (`Config::ignored_settings`).
        ignored: conn_pool_size, rewrite_threads;
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Config {
        include_str!("../../packaging/proxy.json").parse().unwrap()
    }

    fn diff(change: impl FnOnce(&mut Config)) -> ClusterDiff {
        let mut new = base();
        change(&mut new);
        ClusterDiff::between(Some(&base()), &new)
    }

    #[test]
    fn the_same_config_is_an_empty_diff() {
        let d = diff(|_| {});
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(d.to_string(), "none");
    }

    #[test]
    fn start_up_adds_every_backend() {
        let config = base();
        let d = ClusterDiff::between(None, &config);
        let all: Vec<String> = backends(&config).map(|(_, b)| b.name.clone()).collect();
        assert_eq!(d.added, all);
        assert!(d.placement && d.changes_cluster());
    }

    #[test]
    fn line_checks_rebuild_the_cluster_that_applies_them_and_pins_say_so() {
        // max_line_bytes used to be swapped with the config only, while the cluster kept
        // checking lines against the old limit.
        let d = diff(|c| c.max_line_bytes = 10);
        assert_eq!(d.lines, vec!["max_line_bytes"]);
        assert!(d.changes_cluster() && !d.pins && d.request.is_empty());
        let d = diff(|c| c.timestamp_window = Some(std::time::Duration::from_secs(60)));
        assert_eq!(d.lines, vec!["timestamp_window"]);
        let drop = crate::rules::LineRule {
            name: "r".into(),
            database: None,
            measurement: crate::rules::MeasurementMatch::Any,
            tag: None,
            action: crate::rules::RuleAction::Drop,
        };
        let d = diff(|c| c.rules = vec![drop.clone()]);
        assert_eq!((d.lines.clone(), d.pins), (vec!["rules"], false));
        let pin = crate::rules::LineRule {
            action: crate::rules::RuleAction::Pin(vec!["influxdb-1-2".into()]),
            ..drop
        };
        let d = diff(|c| c.rules = vec![pin]);
        assert!(d.pins && d.changes_cluster() && !d.placement, "{d:?}");
        assert_eq!(d.to_string(), "pins, rules");
    }

    #[test]
    fn socket_and_storage_fields_need_a_restart() {
        let d = diff(|c| {
            c.listen_addr = ":9999".into();
            c.data_dir = "/elsewhere".into();
        });
        assert_eq!(d.restart, vec!["listen_addr", "data_dir"]);
    }

    #[test]
    fn a_removed_backend_is_removed_and_the_ring_changes() {
        let mut removed = String::new();
        let d = diff(|c| removed = c.circles[0].backends.pop().unwrap().name);
        assert_eq!(d.removed, vec![removed]);
        assert!(d.placement && d.added.is_empty() && d.replaced.is_empty());
    }

    #[test]
    fn an_added_backend_is_added() {
        let d = diff(|c| {
            let mut b = c.circles[0].backends[0].clone();
            b.name = "new-one".into();
            b.url = "http://127.0.0.1:9".into();
            c.circles[0].backends.push(b);
        });
        assert_eq!(d.added, vec!["new-one"]);
        assert!(d.placement && d.removed.is_empty());
    }

    #[test]
    fn a_new_url_replaces_the_actor_for_its_target() {
        let mut name = String::new();
        let d = diff(|c| {
            let b = &mut c.circles[0].backends[0];
            b.url = "http://127.0.0.1:9".into();
            name = b.name.clone();
        });
        assert_eq!(
            d.replaced,
            vec![Replaced {
                name,
                changes: vec![BackendChange::Target]
            }]
        );
    }

    #[test]
    fn write_only_replaces_the_actor_for_its_role_without_moving_the_ring() {
        let d = diff(|c| c.circles[0].backends[0].write_only = true);
        assert_eq!(d.replaced.len(), 1);
        assert_eq!(d.replaced[0].changes, vec![BackendChange::Role]);
        assert!(!d.placement);
    }

    #[test]
    fn a_delivery_setting_replaces_every_actor() {
        let d = diff(|c| c.flush_size = 5);
        assert_eq!(d.replaced.len(), backends(&base()).count());
        assert!(d
            .replaced
            .iter()
            .all(|r| r.changes == vec![BackendChange::Delivery]));
        assert!(!d.placement);
    }

    #[test]
    fn a_new_query_timeout_is_reloaded_with_the_backends_that_read_with_it() {
        let d = diff(|c| c.query_timeout = std::time::Duration::from_secs(5));
        assert!(d.restart.is_empty(), "{d:?}");
        assert_eq!(d.replaced.len(), backends(&base()).count());
        assert!(d
            .replaced
            .iter()
            .all(|r| r.changes == vec![BackendChange::Delivery]));
    }

    #[test]
    fn a_queue_bound_keeps_every_actor_and_rebinds_it() {
        let d = diff(|c| c.wal_max_bytes = 8192);
        assert!(d.replaced.is_empty());
        assert_eq!(d.rebound.len(), backends(&base()).count());
        assert!(d.changes_cluster());
        assert!(d.keeps(&d.rebound[0]));
        let d = diff(|c| c.dead_letter_max_bytes = 8192);
        assert_eq!(d.rebound.len(), backends(&base()).count());
        let d = diff(|c| c.wal_min_free_mb = 1);
        assert!(d.replaced.is_empty());
        assert_eq!(d.rebound.len(), backends(&base()).count());
    }

    #[test]
    fn hashing_settings_change_placement_only() {
        let d = diff(|c| c.vnode_size += 1);
        assert!(d.placement && d.replaced.is_empty() && d.rebound.is_empty());
    }

    #[test]
    fn udp_listeners_added_changed_and_removed_are_named_and_reloaded() {
        let listener = |addr: &str, db: &str| crate::config::UdpConfig {
            bind_addr: addr.into(),
            enabled: true,
            database: db.into(),
            retention_policy: String::new(),
            precision: Default::default(),
            read_buffer: 0,
            batch_size: 5000,
            batch_timeout: std::time::Duration::from_secs(1),
            batch_pending: 10,
        };
        let mut old = base();
        old.udp = vec![listener(":8089", "a"), listener(":8090", "a")];
        let mut new = base();
        new.udp = vec![listener(":8089", "b"), listener(":8091", "a")];
        let d = ClusterDiff::between(Some(&old), &new);
        assert_eq!(d.udp, [":8089", ":8091", ":8090"]);
        assert!(d.restart.is_empty() && d.request.is_empty() && !d.changes_cluster());
        assert!(!d.is_empty());
        assert_eq!(d.to_string(), "udp :8089 :8091 :8090");
        assert!(ClusterDiff::between(Some(&new), &new).is_empty());
        assert_eq!(ClusterDiff::between(None, &new).udp, [":8089", ":8091"]);
    }

    #[test]
    fn request_fields_and_the_log_level_only_swap_the_config() {
        let d = diff(|c| {
            c.db_list = vec!["x".into()];
            c.log_level = "debug".into();
        });
        assert_eq!(d.request, vec!["db_list"]);
        assert!(d.log_level && !d.changes_cluster());
        assert_eq!(d.to_string(), "db_list, log_level");
    }
}
