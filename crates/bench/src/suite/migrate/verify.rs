//! Whether a migration moved what it had to: every measurement complete on its owner in the
//! receiving circle (the proxy's `/replica`), and the circle holding exactly what it had plus
//! the points moved. Pure; the section counts the points in influxd.

use std::collections::BTreeMap;

use crate::suite::opts::MigrateOp;

/// A measurement of the data set: its points and which of the two source backends (1, 2)
/// holds it.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Expected {
    pub(super) measurement: String,
    pub(super) count: u64,
    pub(super) source: usize,
}

/// The first `backend-{circle}-N` a `/replica` answer names: N.
pub(super) fn owner_in(answer: &str, circle: usize) -> Option<usize> {
    let prefix = format!("backend-{circle}-");
    answer.match_indices(&prefix).find_map(|(at, _)| {
        let digits: String = answer[at + prefix.len()..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        digits.parse().ok()
    })
}

/// Checks the receiving circle after a run: (points the job had to move, `ok` or what is
/// wrong). `after` holds (backend number, measurement, points) of the receiving circle.
/// Rebalance: the circle keeps what it had (no `/clear`) and gains the moved points; recovery:
/// the circle had nothing and gains every point.
pub(super) fn verdict(
    op: MigrateOp,
    expected: &[Expected],
    owners: &BTreeMap<String, Option<usize>>,
    after: &[(usize, String, u64)],
) -> (u64, String) {
    let held: BTreeMap<(usize, &str), u64> = after
        .iter()
        .map(|(backend, m, n)| ((*backend, m.as_str()), *n))
        .collect();
    let stored: u64 = after.iter().map(|(_, _, n)| n).sum();
    let (mut total, mut moved, mut without_owner, mut incomplete) = (0, 0, 0, 0);
    for e in expected {
        total += e.count;
        let owner = owners.get(&e.measurement).copied().flatten();
        if op == MigrateOp::Recovery || owner != Some(e.source) {
            moved += e.count;
        }
        let Some(owner) = owner else {
            without_owner += 1;
            continue;
        };
        if held
            .get(&(owner, e.measurement.as_str()))
            .copied()
            .unwrap_or(0)
            != e.count
        {
            incomplete += 1;
        }
    }
    let want = match op {
        MigrateOp::Rebalance => total + moved,
        MigrateOp::Recovery => moved,
    };
    let verdict = if without_owner + incomplete == 0 && stored == want {
        "ok".to_owned()
    } else {
        format!(
            "MISMATCH: {incomplete} measurements incomplete, {without_owner} without owner, \
             circle holds {stored} of {want}"
        )
    };
    (moved, verdict)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expected(m: &str, count: u64, source: usize) -> Expected {
        Expected {
            measurement: m.to_owned(),
            count,
            source,
        }
    }

    fn owners(list: &[(&str, Option<usize>)]) -> BTreeMap<String, Option<usize>> {
        list.iter().map(|(m, o)| ((*m).to_owned(), *o)).collect()
    }

    fn after(list: &[(usize, &str, u64)]) -> Vec<(usize, String, u64)> {
        list.iter()
            .map(|(b, m, n)| (*b, (*m).to_owned(), *n))
            .collect()
    }

    #[test]
    fn a_rebalance_keeps_what_the_circle_had_and_adds_what_moved() {
        let e = [
            expected("m0", 100, 1),
            expected("m1", 50, 2),
            expected("m2", 30, 1),
        ];
        // m1 moves from backend 2 to backend 3; the old copy stays (no /clear).
        let o = owners(&[("m0", Some(1)), ("m1", Some(3)), ("m2", Some(1))]);
        let a = after(&[(1, "m0", 100), (1, "m2", 30), (2, "m1", 50), (3, "m1", 50)]);
        assert_eq!(
            verdict(MigrateOp::Rebalance, &e, &o, &a),
            (50, "ok".to_owned())
        );
        let short = after(&[(1, "m0", 100), (1, "m2", 30), (2, "m1", 50), (3, "m1", 49)]);
        assert_eq!(
            verdict(MigrateOp::Rebalance, &e, &o, &short),
            (
                50,
                "MISMATCH: 1 measurements incomplete, 0 without owner, circle holds 229 of 230"
                    .to_owned()
            )
        );
    }

    #[test]
    fn a_recovery_moves_everything_into_an_empty_circle() {
        let e = [expected("m0", 100, 1), expected("m1", 50, 2)];
        let o = owners(&[("m0", Some(1)), ("m1", Some(2))]);
        let a = after(&[(1, "m0", 100), (2, "m1", 50)]);
        assert_eq!(
            verdict(MigrateOp::Recovery, &e, &o, &a),
            (150, "ok".to_owned())
        );
        let o = owners(&[("m0", Some(1)), ("m1", None)]);
        let (moved, v) = verdict(MigrateOp::Recovery, &e, &o, &a);
        assert_eq!(moved, 150);
        assert_eq!(
            v,
            "MISMATCH: 0 measurements incomplete, 1 without owner, circle holds 150 of 150"
        );
    }

    #[test]
    fn a_measurement_without_owner_counts_as_moved_in_a_rebalance() {
        let e = [expected("m0", 10, 1)];
        let (moved, v) = verdict(MigrateOp::Rebalance, &e, &owners(&[]), &[]);
        assert_eq!(moved, 10);
        assert!(
            v.starts_with("MISMATCH: 0 measurements incomplete, 1 without owner"),
            "{v}"
        );
    }

    #[test]
    fn the_owner_is_the_first_backend_of_the_circle_named() {
        let answer = r#"[{"circle":"circle-1","name":"backend-1-12","url":"x"},{"circle":"circle-2","name":"backend-2-1"}]"#;
        assert_eq!(owner_in(answer, 1), Some(12));
        assert_eq!(owner_in(answer, 2), Some(1));
        assert_eq!(owner_in(answer, 3), None);
        assert_eq!(owner_in("backend-1-", 1), None);
    }
}
