//! Helpers shared by the config tests.

use super::*;
use crate::ring::{HashKey, ShardKey};

/// One circle with one backend, plus `extra` top-level members (`"k": v, ...`).
pub(super) fn minimal(extra: &str) -> String {
    let sep = if extra.is_empty() { "" } else { "," };
    format!(
        r#"{{"circles": [{{"name": "c", "backends": [
            {{"name": "b1", "url": "http://127.0.0.1:8086"}}]}}]{sep} {extra}}}"#
    )
}

pub(super) fn load(json: &str) -> Config {
    Config::from_str(json).unwrap_or_else(|err| panic!("{err}\n{json}"))
}

pub(super) fn problems(json: &str) -> Vec<String> {
    match Config::from_str(json) {
        Err(Error::Invalid(problems)) => problems,
        other => panic!("expected Error::Invalid, got {other:?}"),
    }
}

/// Asserts that exactly one problem starts with `path: ` and contains `text`.
pub(super) fn assert_problem(problems: &[String], path: &str, text: &str) {
    let prefix = format!("{path}: ");
    let hits: Vec<_> = problems
        .iter()
        .filter(|p| p.starts_with(&prefix) && p.contains(text))
        .collect();
    assert_eq!(
        hits.len(),
        1,
        "want one problem at {path:?} containing {text:?}, got {problems:#?}"
    );
}

pub(super) fn hash_key(s: &str) -> HashKey {
    HashKey::parse(s).unwrap()
}

pub(super) fn shard_key(s: &str) -> ShardKey {
    ShardKey::parse(s).unwrap()
}
