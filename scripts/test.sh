#!/usr/bin/env bash
# The whole test suite: unit tests, property tests, and the integration
# tests that start real influxd servers and the release binary.
set -euo pipefail
cd "$(dirname "$0")/.."
if command -v sccache >/dev/null && [ -z "${RUSTC_WRAPPER:-}" ]; then
    export RUSTC_WRAPPER=sccache
fi
# The tests start these real servers themselves.
for need in influxd:influxdb prometheus:prometheus strace:strace openssl:openssl curl:curl; do
    command -v "${need%%:*}" >/dev/null || {
        echo "${need%%:*} not found: install the Debian package '${need#*:}' (apt-get install ${need#*:})" >&2
        exit 1
    }
done
cargo test --release --all-targets "$@"
