//! The checks shared by the fuzz targets and by the main crate's
//! `tests/fuzz_regressions.rs`, which is their single source: it is included
//! here verbatim, so a crash found by libFuzzer and its replay in `cargo test`
//! run exactly the same assertions.

#[path = "../../tests/fuzz_regressions.rs"]
mod checks;

pub use checks::{
    check_cipher, check_influxql, check_line_protocol, check_merge, check_wal_record,
};
