//! Placement: which backend of a circle holds a `(database, measurement)`. The one function
//! every path asks (writes, `/replica`, reads and merged reads, Flux and remote-read relays,
//! rebalance, recovery, resync and clear), so that a pin rule moves a measurement for all of
//! them at once: the ring decides unless a pin rule of `rules` names a backend in the circle.

use crate::config::{CircleConfig, Config, RuleAction};
use crate::ring::{Ring, ShardKey};
use crate::rules::LineRule;

use crate::circle::Circle;

/// The ring of circle `cc` of `config`: its backends' node keys (`hash_key`) in config order.
pub(crate) fn ring(config: &Config, cc: &CircleConfig) -> Ring {
    let keys: Vec<String> = cc
        .backends
        .iter()
        .enumerate()
        .map(|(idx, bc)| config.hash_key.node_key(idx, &bc.name, &bc.url))
        .collect();
    Ring::new(&keys, config.vnode_size)
}

/// The placement a config describes, with nothing started: what-if questions
/// (`influx-proxy ctl placement --what-if`) are answered by the very
/// [`Placement::owner_index`] a running proxy asks.
#[derive(Debug)]
pub(crate) struct Planned {
    placement: Placement,
    /// The circles' rings, without backends.
    circles: Vec<Circle>,
}

impl Planned {
    /// The placement of `config`.
    pub(crate) fn new(config: &Config) -> Planned {
        let circles = config
            .circles
            .iter()
            .enumerate()
            .map(|(id, cc)| Circle {
                id,
                name: cc.name.clone(),
                ring: ring(config, cc),
                backends: Vec::new(),
                migrating: Default::default(),
                reads: Default::default(),
            })
            .collect();
        Planned {
            placement: Placement::new(config),
            circles,
        }
    }

    /// The index (in the config's `circles[circle].backends`) of the backend holding
    /// `(db, measurement)`; `None` when there is no such circle.
    pub(crate) fn owner(&self, circle: usize, db: &str, measurement: &str) -> Option<usize> {
        let c = self.circles.get(circle)?;
        Some(
            self.placement
                .owner_index(c, db, measurement, &mut String::new()),
        )
    }
}

/// Placement of measurements onto the backends of every circle.
#[derive(Debug)]
pub(crate) struct Placement {
    shard_key: ShardKey,
    pins: Vec<Pin>,
}

/// A pin rule resolved against the circles.
#[derive(Debug)]
struct Pin {
    /// The rule (for its database and measurement match).
    rule: LineRule,
    /// Per circle (by id), the index of the pinned backend; `None`: the ring decides there.
    backends: Vec<Option<usize>>,
}

impl Placement {
    /// The placement `config` describes (its shard key, its pin rules against its circles).
    pub(crate) fn new(config: &Config) -> Placement {
        let pins = config
            .rules
            .iter()
            .filter_map(|rule| {
                let RuleAction::Pin(names) = &rule.action else {
                    return None;
                };
                let backends = config
                    .circles
                    .iter()
                    .map(|c| c.backends.iter().position(|b| names.contains(&b.name)))
                    .collect();
                Some(Pin {
                    rule: rule.clone(),
                    backends,
                })
            })
            .collect();
        Placement {
            shard_key: config.shard_key.clone(),
            pins,
        }
    }

    /// The index (in `circle.backends`) of the backend holding `(db, measurement)`; `key` is
    /// a buffer for the shard key, reused across calls.
    pub(crate) fn owner_index(
        &self,
        circle: &Circle,
        db: &str,
        measurement: &str,
        key: &mut String,
    ) -> usize {
        if let Some(i) = self.pinned(circle.id, db, measurement) {
            return i;
        }
        self.shard_key.build_into(db, measurement, key);
        circle.ring.get(key.as_bytes())
    }

    /// The pinned backend's index in circle `circle_id` when a pin rule covers the
    /// measurement and names a backend there (the first such rule, as for lines).
    pub(crate) fn pinned(&self, circle_id: usize, db: &str, measurement: &str) -> Option<usize> {
        self.pins
            .iter()
            .find(|p| p.rule.covers(db, measurement))
            .and_then(|p| p.backends.get(circle_id).copied().flatten())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ring::Ring;

    fn config(rules: &str) -> Config {
        Config::from_str(&format!(
            r#"{{"rules": {rules}, "circles": [
                {{"backends": [{{"name": "a1", "url": "http://h:1"}}, {{"name": "a2", "url": "http://h:2"}}]}},
                {{"backends": [{{"name": "b1", "url": "http://h:3"}}, {{"name": "b2", "url": "http://h:4"}}]}}]}}"#
        ))
        .unwrap()
    }

    fn circle(id: usize) -> Circle {
        Circle {
            id,
            name: String::new(),
            ring: Ring::new(&["0".to_string(), "1".to_string()], 256),
            backends: Vec::new(),
            migrating: Default::default(),
            reads: Default::default(),
        }
    }

    /// The owner of every measurement `m0..m50` in circle `id`.
    fn owners(p: &Placement, id: usize, db: &str) -> Vec<usize> {
        let mut key = String::new();
        (0..50)
            .map(|i| p.owner_index(&circle(id), db, &format!("m{i}"), &mut key))
            .collect()
    }

    #[test]
    fn a_planned_placement_answers_as_the_running_one() {
        let cfg = config(
            r#"[{"action": "pin", "database": "db", "measurement": "m3", "backends": ["b1"]}]"#,
        );
        let planned = Planned::new(&cfg);
        let running = Placement::new(&cfg);
        let mut key = String::new();
        for c in 0..2 {
            let circle = Circle {
                ring: ring(&cfg, &cfg.circles[c]),
                ..circle(c)
            };
            for i in 0..50 {
                let m = format!("m{i}");
                assert_eq!(
                    planned.owner(c, "db", &m),
                    Some(running.owner_index(&circle, "db", &m, &mut key))
                );
            }
        }
        assert_eq!(planned.owner(1, "db", "m3"), Some(0), "pinned to b1");
        assert_eq!(planned.owner(2, "db", "m3"), None);
    }

    #[test]
    fn without_pins_the_ring_decides() {
        let p = Placement::new(&config("[]"));
        let ring = circle(0).ring;
        let expected: Vec<usize> = (0..50)
            .map(|i| ring.get(format!("db,m{i}").as_bytes()))
            .collect();
        assert_eq!(owners(&p, 0, "db"), expected);
        assert!(expected.contains(&0) && expected.contains(&1));
    }

    #[test]
    fn a_pin_places_every_covered_measurement_on_its_backend_per_circle() {
        let p = Placement::new(&config(
            r#"[{"action": "drop", "measurement": "m1"},
                {"action": "pin", "database": "db", "measurement_regex": "^m", "backends": ["a2"]}]"#,
        ));
        // Circle 0: pinned to a2 (index 1); circle 1 names no backend: the ring.
        assert_eq!(owners(&p, 0, "db"), vec![1; 50]);
        let unpinned = Placement::new(&config("[]"));
        assert_eq!(owners(&p, 1, "db"), owners(&unpinned, 1, "db"));
        // Another database is not covered.
        assert_eq!(owners(&p, 0, "other"), owners(&unpinned, 0, "other"));
    }
}
