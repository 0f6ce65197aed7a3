//! Fuzz target `wal_record`: see `check_wal_record` in `tests/fuzz_regressions.rs`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    influx_proxy_fuzz::check_wal_record(data);
});
