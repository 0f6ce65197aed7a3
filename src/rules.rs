//! Line rules: an ordered list in the config (`rules`), first match wins, each matching a
//! line on its database, its measurement (exact or a regex) and optionally one tag's value
//! (a regex), with an action:
//! - **drop**: the line is acknowledged as influxd acknowledges a write and never stored, for
//!   junk a client cannot be stopped from sending (influx-spout's writers drop what no rule
//!   matches; here the operator names what to drop);
//! - **keep**: the line is stored as usual and no later rule is asked: what
//!   comes before a last catch-all `drop`, as influx-spout keeps only what a rule matches;
//! - **pin**: the line's `(database, measurement)` lives on named backends instead of where
//!   the ring puts it (a heavy measurement on a backend of its own,
//!   chengshiwen/influx-proxy#68). A pin places a whole measurement, so it cannot have a tag
//!   condition: every read, merge and migration must find the measurement without seeing a line.
//!
//! This module holds the rules as the config gives them and the matching; the write path
//! (`cluster`) applies them per line, and placement (`cluster::placement`) applies the pins
//! to everything that asks where a measurement lives. Public for the benches
//! (`benches/hot_paths.rs`, `rules`), which measure what each kind of rule costs per line.

use std::fmt;
use std::sync::Arc;

use crate::line_protocol::Line;
use crate::metrics::{self, Counter};

/// A compiled regular expression that compares by its source text (so a [`crate::config::Config`]
/// stays comparable) and matches anywhere in the text unless anchored with `^`/`$`.
#[derive(Clone)]
pub struct Pattern(regex::Regex);

impl Pattern {
    /// Compiles `source`; the error is the regex crate's message.
    pub fn new(source: &str) -> Result<Pattern, String> {
        regex::Regex::new(source)
            .map(Pattern)
            .map_err(|e| e.to_string())
    }

    /// The source text.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    fn is_match(&self, text: &str) -> bool {
        self.0.is_match(text)
    }
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Pattern) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Pattern {}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "/{}/", self.as_str())
    }
}

/// Which measurements a rule covers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MeasurementMatch {
    /// Every measurement (no `measurement` key).
    Any,
    /// This name exactly (`measurement`).
    Exact(String),
    /// Names the regex matches (`measurement_regex`).
    Regex(Pattern),
}

impl MeasurementMatch {
    fn matches(&self, measurement: &str) -> bool {
        match self {
            MeasurementMatch::Any => true,
            MeasurementMatch::Exact(name) => name == measurement,
            MeasurementMatch::Regex(p) => p.is_match(measurement),
        }
    }
}

/// A condition on one tag of the line: present, and its value matching (`tag` and
/// `tag_regex`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TagMatch {
    /// The tag key, as stored (unescaped).
    pub key: String,
    /// What its value (unescaped) must match.
    pub value: Pattern,
}

/// What a matching rule does with a line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RuleAction {
    /// Acknowledge and discard.
    Drop,
    /// Store as usual (where placement puts it: the ring, or a pin of its measurement, which
    /// places a whole measurement whatever rules come before it); later rules are not asked.
    Keep,
    /// Place the measurement on these backends (names, at most one per circle); circles the
    /// list does not name keep the ring's choice.
    Pin(Vec<String>),
}

impl RuleAction {
    /// `drop` or `pin`, as the config and `/metrics` spell it.
    pub fn name(&self) -> &'static str {
        match self {
            RuleAction::Drop => "drop",
            RuleAction::Keep => "keep",
            RuleAction::Pin(_) => "pin",
        }
    }
}

/// One entry of `rules`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineRule {
    /// Names the rule in `/metrics` and logs. Default: `rule-<index>`.
    pub name: String,
    /// Only lines written to this database; `None`: any database.
    pub database: Option<String>,
    /// Only these measurements.
    pub measurement: MeasurementMatch,
    /// Only lines with this tag value (drop rules only).
    pub tag: Option<TagMatch>,
    /// What happens to a matching line.
    pub action: RuleAction,
}

impl LineRule {
    /// Whether the rule covers `(db, measurement)`; the tag condition is the line's.
    pub(crate) fn covers(&self, db: &str, measurement: &str) -> bool {
        self.database.as_deref().is_none_or(|d| d == db) && self.measurement.matches(measurement)
    }

    /// Whether the line (already covered by [`LineRule::covers`]) meets the tag condition.
    fn meets_tag(&self, line: &[u8], parsed: &Line<'_>) -> bool {
        match &self.tag {
            None => true,
            Some(t) => parsed
                .tag_value(line, t.key.as_bytes())
                .is_some_and(|v| std::str::from_utf8(&v).is_ok_and(|v| t.value.is_match(v))),
        }
    }
}

/// What the rules decide for one line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// No rule matched: the ring places it.
    Unruled,
    /// Rule `usize` keeps it (placed as any line of its measurement).
    Kept(usize),
    /// Rule `usize` (its index) pins it; placement already knows where.
    Pinned(usize),
    /// Rule `usize` drops it.
    Dropped(usize),
}

/// The rules of a running cluster with their `/metrics` counters
/// (`influx_proxy_rule_lines_total{rule, action}`), looked up once per reload rather than
/// per line.
#[derive(Debug, Default)]
pub struct Rules {
    rules: Vec<LineRule>,
    counters: Vec<Arc<Counter>>,
}

impl Rules {
    /// The rules of a config, their counters registered.
    pub fn new(rules: &[LineRule]) -> Rules {
        let family = metrics::global().counter(
            "influx_proxy_rule_lines_total",
            "Lines a rule of `rules` matched (first match wins), by rule and action.",
            &["rule", "action"],
        );
        Rules {
            counters: rules
                .iter()
                .map(|r| family.with(&[&r.name, r.action.name()]))
                .collect(),
            rules: rules.to_vec(),
        }
    }

    /// Whether there are no rules (the write path skips them entirely).
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The rules that can apply to lines of `(db, measurement)`, in order, ending at the
    /// first one without a tag condition (nothing after it is ever reached).
    pub fn for_measurement(&self, db: &str, measurement: &str) -> Candidates {
        let mut out = Vec::new();
        for (i, rule) in self.rules.iter().enumerate() {
            if rule.covers(db, measurement) {
                out.push(i);
                if rule.tag.is_none() {
                    break;
                }
            }
        }
        Candidates(out)
    }

    /// The decision for one line given its measurement's candidates.
    pub fn decide(&self, candidates: &Candidates, line: &[u8], parsed: &Line<'_>) -> Decision {
        for &i in candidates.0.iter() {
            let Some(rule) = self.rules.get(i) else {
                continue;
            };
            if rule.meets_tag(line, parsed) {
                return match rule.action {
                    RuleAction::Drop => Decision::Dropped(i),
                    RuleAction::Keep => Decision::Kept(i),
                    RuleAction::Pin(_) => Decision::Pinned(i),
                };
            }
        }
        Decision::Unruled
    }

    /// Adds `counts[i]` lines to rule `i`'s counter (one atomic add per rule and request).
    pub fn count(&self, counts: &[u64]) {
        for (counter, &n) in self.counters.iter().zip(counts) {
            if n > 0 {
                counter.inc_by(n);
            }
        }
    }

    /// How many rules there are (the size of a per-request count array).
    pub fn len(&self) -> usize {
        self.rules.len()
    }
}

/// The indices of the rules that can apply to one measurement's lines (see
/// [`Rules::for_measurement`]).
#[derive(Debug, Clone, Default)]
pub struct Candidates(Vec<usize>);

impl Candidates {
    /// True when no rule can apply.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::line_protocol::parse;

    fn rule(
        measurement: MeasurementMatch,
        tag: Option<(&str, &str)>,
        action: RuleAction,
    ) -> LineRule {
        LineRule {
            name: "r".into(),
            database: Some("db".into()),
            measurement,
            tag: tag.map(|(k, v)| TagMatch {
                key: k.into(),
                value: Pattern::new(v).unwrap(),
            }),
            action,
        }
    }

    fn decide(rules: &Rules, db: &str, line: &str) -> Decision {
        let parsed = parse(line.as_bytes()).unwrap();
        let candidates = rules.for_measurement(db, &parsed.measurement);
        rules.decide(&candidates, line.as_bytes(), &parsed)
    }

    #[test]
    fn the_first_matching_rule_wins() {
        let rules = Rules::new(&[
            rule(
                MeasurementMatch::Exact("cpu".into()),
                Some(("host", "^test-")),
                RuleAction::Drop,
            ),
            rule(
                MeasurementMatch::Regex(Pattern::new("^c").unwrap()),
                None,
                RuleAction::Pin(vec!["b".into()]),
            ),
            rule(
                MeasurementMatch::Exact("disk".into()),
                None,
                RuleAction::Keep,
            ),
            rule(MeasurementMatch::Any, None, RuleAction::Drop),
        ]);
        assert_eq!(
            decide(&rules, "db", "cpu,host=test-1 f=1"),
            Decision::Dropped(0)
        );
        assert_eq!(decide(&rules, "db", "disk f=1"), Decision::Kept(2));
        assert_eq!(
            decide(&rules, "db", "cpu,host=prod-1 f=1"),
            Decision::Pinned(1)
        );
        assert_eq!(decide(&rules, "db", "cpu f=1"), Decision::Pinned(1));
        assert_eq!(decide(&rules, "db", "mem f=1"), Decision::Dropped(3));
        assert_eq!(decide(&rules, "other", "mem f=1"), Decision::Unruled);
    }

    #[test]
    fn candidates_stop_at_the_first_rule_without_a_tag_condition() {
        let rules = Rules::new(&[
            rule(MeasurementMatch::Any, Some(("a", "x")), RuleAction::Drop),
            rule(MeasurementMatch::Any, None, RuleAction::Drop),
            rule(MeasurementMatch::Any, None, RuleAction::Drop),
        ]);
        assert_eq!(&*rules.for_measurement("db", "m").0, &[0, 1]);
        assert!(rules.for_measurement("nope", "m").is_empty());
    }

    #[test]
    fn tag_values_are_matched_unescaped_and_a_missing_tag_does_not_match() {
        let rules = Rules::new(&[rule(
            MeasurementMatch::Any,
            Some(("host name", "^a b,c$")),
            RuleAction::Drop,
        )]);
        assert_eq!(
            decide(&rules, "db", r"m,host\ name=a\ b\,c f=1"),
            Decision::Dropped(0)
        );
        assert_eq!(decide(&rules, "db", "m,host=a f=1"), Decision::Unruled);
        assert_eq!(decide(&rules, "db", "m f=1"), Decision::Unruled);
    }

    #[test]
    fn patterns_compare_by_source() {
        assert_eq!(Pattern::new("^a").unwrap(), Pattern::new("^a").unwrap());
        assert_ne!(Pattern::new("^a").unwrap(), Pattern::new("a").unwrap());
        assert!(Pattern::new("(").is_err());
    }
}
