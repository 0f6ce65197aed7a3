//! How each kind of InfluxQL statement runs through the proxy: the one table.
//!
//! Routing decisions used to be five `match`es on [`StatementKind`] spread over the query path, each
//! with a `_` arm, so a new statement kind silently took whatever the default of each was.
//! [`route`] is one exhaustive match: adding a [`StatementKind`] does not compile until its row is
//! written.

use super::merge::Merge;
use crate::influxql::StatementKind;

/// Where a statement runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Run {
    /// On every backend of every circle (databases and retention policies), at once or queued
    /// behind pending writes.
    Everywhere,
    /// On the owners of its measurements in every circle, or everywhere for a regex or no FROM.
    Delete,
    /// With a FROM clause on the owners in one circle (split and merged when they are several
    /// backends); without one, on every backend of one circle.
    Sources,
    /// On every backend of one circle, merged, whatever its FROM.
    FanOut,
}

/// The routing row of one statement kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Route {
    /// Needs a database (the `db` parameter or a qualified source).
    pub(crate) needs_db: bool,
    /// Where it runs.
    pub(crate) run: Run,
    /// How the answers of several backends merge.
    pub(crate) merge: Merge,
    /// How they merge for the `EXACT` form (cardinalities).
    pub(crate) merge_exact: Merge,
    /// `LIMIT` / `OFFSET` page a list that may span backends: applied after the merge (per
    /// measurement for the keyed lists, over the whole list for SHOW SERIES / MEASUREMENTS).
    /// `SLIMIT` / `SOFFSET` always stay in the text: InfluxDB 1.6 applies them per
    /// measurement, and every measurement lives on one backend of a circle.
    pub(crate) paged: bool,
}

impl Route {
    /// The merge for a statement, `exact` or not.
    pub(crate) fn merge_for(self, exact: bool) -> Merge {
        if exact {
            self.merge_exact
        } else {
            self.merge
        }
    }
}

/// The routing row of `kind`.
pub(super) fn route(kind: StatementKind) -> Route {
    use Merge::{Concat, FirstSeen, Series, Sum, Values};
    use Run::{Delete, Everywhere, FanOut, Sources};
    let row = |needs_db, run, merge, paged| Route {
        needs_db,
        run,
        merge,
        merge_exact: merge,
        paged,
    };
    match kind {
        StatementKind::Select => row(true, Sources, Concat, false),
        StatementKind::ShowMeasurements | StatementKind::ShowSeries => {
            row(true, Sources, Values, true)
        }
        StatementKind::ShowFieldKeys
        | StatementKind::ShowTagKeys
        | StatementKind::ShowTagValues => row(true, Sources, Series, true),
        StatementKind::ShowRetentionPolicies => row(true, FanOut, FirstSeen, false),
        StatementKind::ShowDatabases => row(false, FanOut, Values, false),
        StatementKind::ShowStats => row(false, FanOut, Concat, false),
        // Exact series cardinality is reported per measurement; estimates and measurement
        // cardinality are one number per backend.
        StatementKind::ShowSeriesCardinality => Route {
            merge_exact: Series,
            ..row(true, Sources, Sum, false)
        },
        StatementKind::ShowMeasurementCardinality => Route {
            merge_exact: Sum,
            ..row(true, FanOut, Sum, false)
        },
        StatementKind::ShowTagKeyCardinality
        | StatementKind::ShowTagValuesCardinality
        | StatementKind::ShowFieldKeyCardinality => row(true, Sources, Series, false),
        StatementKind::CreateDatabase
        | StatementKind::DropDatabase
        | StatementKind::CreateRetentionPolicy
        | StatementKind::AlterRetentionPolicy
        | StatementKind::DropRetentionPolicy => row(true, Everywhere, Series, false),
        StatementKind::DeleteFrom | StatementKind::DropSeries | StatementKind::DropMeasurement => {
            row(true, Delete, Series, false)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_to_the_schema_run_everywhere_or_on_the_owners() {
        assert_eq!(route(StatementKind::CreateDatabase).run, Run::Everywhere);
        assert_eq!(
            route(StatementKind::AlterRetentionPolicy).run,
            Run::Everywhere
        );
        assert_eq!(route(StatementKind::DropMeasurement).run, Run::Delete);
        assert_eq!(route(StatementKind::DeleteFrom).run, Run::Delete);
    }

    #[test]
    fn only_server_wide_statements_need_no_database() {
        assert!(!route(StatementKind::ShowDatabases).needs_db);
        assert!(!route(StatementKind::ShowStats).needs_db);
        assert!(route(StatementKind::Select).needs_db);
        assert!(route(StatementKind::ShowRetentionPolicies).needs_db);
    }

    #[test]
    fn cardinalities_merge_by_their_exact_form() {
        let series = route(StatementKind::ShowSeriesCardinality);
        assert_eq!(
            (series.merge_for(false), series.merge_for(true)),
            (Merge::Sum, Merge::Series)
        );
        let m = route(StatementKind::ShowMeasurementCardinality);
        assert_eq!(
            (m.merge_for(false), m.merge_for(true)),
            (Merge::Sum, Merge::Sum)
        );
    }

    #[test]
    fn shown_lists_are_paged_after_the_merge() {
        for kind in [
            StatementKind::ShowMeasurements,
            StatementKind::ShowSeries,
            StatementKind::ShowFieldKeys,
            StatementKind::ShowTagKeys,
            StatementKind::ShowTagValues,
        ] {
            assert!(route(kind).paged, "{kind:?}");
        }
        assert!(!route(StatementKind::Select).paged);
        assert!(!route(StatementKind::ShowRetentionPolicies).paged);
    }
}
