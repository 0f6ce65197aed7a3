#!/usr/bin/env bash
# The whole test suite: unit tests, property tests, and the integration
# tests that start real influxd servers and the release binary.
set -euo pipefail
cd "$(dirname "$0")/.."
if command -v sccache >/dev/null && [ -z "${RUSTC_WRAPPER:-}" ]; then
    export RUSTC_WRAPPER=sccache
fi
command -v influxd >/dev/null || {
    echo "influxd not found: install the Debian package 'influxdb' (apt-get install influxdb)" >&2
    exit 1
}
cargo test --release --all-targets "$@"
