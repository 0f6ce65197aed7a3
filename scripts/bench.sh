#!/usr/bin/env bash
# Throughput benchmarks of influx-proxy on this machine: builds the release (the one build the
# tests ran and the packages ship, scripts/toolchain.sh) and runs `influx-proxy-bench suite`,
# which writes docs/perf.md (with --quick: $CARGO_TARGET_DIR/bench/perf-quick.md, leaving docs/
# alone). Every argument goes to the suite; `scripts/bench.sh --help` lists its options (the
# BENCH_* environment variables still work, e.g. BENCH_SECTIONS=e scripts/bench.sh).
# Needs: cargo; influxd (Debian package influxdb) for sections b, e and f; wrk (Debian package
# wrk) for section i.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/toolchain.sh
. scripts/toolchain.sh

echo "== the release build (scripts/toolchain.sh build_release)" >&2
ensure_zigbuild >&2
build_release >&2
exec "$RELEASE_DIR/influx-proxy-bench" suite "$@"
