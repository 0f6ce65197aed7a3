//! Fuzz target `line_protocol`: see `check_line_protocol` in `tests/fuzz_regressions.rs`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    influx_proxy_fuzz::check_line_protocol(data);
});
