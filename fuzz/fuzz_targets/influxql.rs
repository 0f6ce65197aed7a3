//! Fuzz target `influxql`: see `check_influxql` in `tests/fuzz_regressions.rs`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    influx_proxy_fuzz::check_influxql(data);
});
