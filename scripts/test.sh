#!/usr/bin/env bash
# The whole test suite: unit tests, property tests, the fuzz regressions, the
# benches in test mode, and the integration tests that start real influxd
# servers and the release binary.
#
# Usage: scripts/test.sh              every group, each timed
#        scripts/test.sh ARGS...      one `cargo test` with ARGS, e.g. `--test it prom::`
#
# Everything runs on the one build the packages ship (scripts/toolchain.sh:
# release, glibc 2.28 via cargo-zigbuild), so RocksDB is compiled once.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=scripts/toolchain.sh
. "$ROOT/scripts/toolchain.sh"
# shellcheck source=scripts/stages.sh
. "$ROOT/scripts/stages.sh"

# The tests start these real servers themselves.
for need in influxd:influxdb prometheus:prometheus strace:strace tmux:tmux openssl:openssl curl:curl; do
    command -v "${need%%:*}" >/dev/null || {
        echo "${need%%:*} not found: install the Debian package '${need#*:}' (apt-get install ${need#*:})" >&2
        exit 1
    }
done
ensure_zigbuild

if [ "$#" -gt 0 ]; then
    exec cargo-zigbuild test --release --target "$BUILD_TARGET" "$@"
fi
stage "build: tests and binaries" build_release
stage "tests: unit and property (every crate's lib and bins)" zig_cargo test --workspace --lib --bins
# The queue's storage faults, injected at every step (append, read, ack, unshare, dead letter):
# the `failpoints` feature compiles them in, so this is a second build of the queue crate and of
# what depends on it. Asked for the whole workspace, as the build above: `-p proxy-queue` alone
# resolves the shared dependencies' features differently and recompiles them, RocksDB's C++
# included (17 minutes on 2 cores).
stage "tests: queue storage faults (failpoints)" zig_cargo test --workspace --lib --features proxy-queue/failpoints
stage "tests: fuzz regressions" zig_cargo test --test fuzz_regressions
stage "tests: the bench tool (crates/bench)" zig_cargo test --workspace --test cli --test tools
stage "tests: benches in test mode" zig_cargo test --bench hot_paths
stage "tests: integration (tests/it, real influxd)" zig_cargo test --test it
