//! Fuzz target `cipher`: see `check_cipher` in `tests/fuzz_regressions.rs`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    influx_proxy_fuzz::check_cipher(data);
});
