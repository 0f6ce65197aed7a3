#!/usr/bin/env bash
# Throughput benchmarks of influx-proxy on this machine. Prints markdown tables and writes them
# to docs/perf.md (with --quick: to $CARGO_TARGET_DIR/bench/perf-quick.md, leaving docs/ alone).
#
#   (a) proxy in front of 2 circles x 2 null sinks (`influx-proxy-bench sink`): plain and gzip
#       request bodies, with and without gzip towards the backends (`write_gzip`);
#   (b) one real influxd directly vs. through the proxy (one circle of that influxd), and the
#       proxy in front of 2 x 2 real influxd;
#   (c) added latency: one connection at a fixed rate, direct vs. through the proxy;
#   (d) one sink killed for OUTAGE_SECONDS while writing through the proxy: queue growth (from
#       /health) and proxy RSS, sampled every few seconds, then the drain after it returns;
#   (e) migration (/rebalance, /recovery) into real influxd, ours vs. the Go proxy
#       (scripts/bench-section-migrate.sh);
#   (f) query latency through the proxy vs. one influxd (scripts/bench-section-query.sh).
#
# Usage: scripts/bench.sh [--quick]
# Environment: BENCH_SECTIONS (which sections, in order: "a a2 b c d e f"), BENCH_SECONDS (10), OUTAGE_SECONDS (600), BENCH_CONCURRENCY (4), BENCH_BATCH (5000),
#   BENCH_OUTAGE_RATE (points/s during (d), 100000), BENCH_LATENCY_RATE (points/s during (c),
#   100000), BENCH_LATENCY_SECONDS (length of each (c) run, 60), BENCH_SAMPLE_SECONDS (OUTAGE_SECONDS / 20, at least 3), BENCH_OUTPUT (file),
#   BENCH_POOL_MB (gzip bodies compressed before a run, 25 x BENCH_SECONDS), BENCH_KEEP=1 keeps
#   the temp dir (configs, logs); CARGO_TARGET_DIR is honoured. --quick: 2 s runs, 4 s outage.
# Needs: cargo, curl, influxd (Debian package influxdb) for (b).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
# shellcheck source=scripts/influxd-template.sh
. "$ROOT/scripts/influxd-template.sh"

QUICK=0
for arg in "$@"; do
    case "$arg" in
        --quick) QUICK=1 ;;
        -h | --help)
            sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'
            exit 0
            ;;
        *)
            echo "bench.sh: unknown argument $arg (try --help)" >&2
            exit 2
            ;;
    esac
done

if [ "$QUICK" = 1 ]; then
    BENCH_SECONDS=2
    LATENCY_SECONDS=2
    OUTAGE_SECONDS=4
    SAMPLE_SECONDS=1
    DRAIN_SAMPLE_SECONDS=1
    PRE_OUTAGE=1
    POST_OUTAGE=1
else
    BENCH_SECONDS=${BENCH_SECONDS:-10}
    # A p99 needs many more requests than 10 s at 20 requests/s (200) give.
    LATENCY_SECONDS=${BENCH_LATENCY_SECONDS:-60}
    OUTAGE_SECONDS=${OUTAGE_SECONDS:-600}
    SAMPLE_SECONDS=${BENCH_SAMPLE_SECONDS:-$((OUTAGE_SECONDS / 20 > 3 ? OUTAGE_SECONDS / 20 : 3))}
    PRE_OUTAGE=3
    DRAIN_SAMPLE_SECONDS=2
    POST_OUTAGE=5
fi
CONCURRENCY=${BENCH_CONCURRENCY:-4}
BATCH=${BENCH_BATCH:-5000}
OUTAGE_RATE=${BENCH_OUTAGE_RATE:-100000}
LATENCY_RATE=${BENCH_LATENCY_RATE:-100000}
# gzip bodies are compressed before the timed run (--pool-mb): ~12 bytes a point, so 25 MB per
# second covers 2 million points/s.
POOL_MB=${BENCH_POOL_MB:-$((BENCH_SECONDS * 25))}
DRAIN_TIMEOUT=180

for tool in cargo curl; do
    command -v "$tool" >/dev/null || {
        echo "bench.sh: $tool not found" >&2
        exit 1
    }
done
HAVE_INFLUXD=1
command -v influxd >/dev/null || HAVE_INFLUXD=0

# The release build the tests ran and the packages ship (scripts/toolchain.sh): after
# scripts/test.sh this build is a no-op.
# shellcheck source=scripts/toolchain.sh
. "$ROOT/scripts/toolchain.sh"
if [ "$QUICK" = 1 ]; then
    OUTPUT=${BENCH_OUTPUT:-$TARGET_DIR/bench/perf-quick.md}
else
    OUTPUT=${BENCH_OUTPUT:-$ROOT/docs/perf.md}
fi

echo "== the release build (scripts/toolchain.sh build_release)" >&2
ensure_zigbuild >&2
build_release >&2
PROXY_BIN=$RELEASE_DIR/influx-proxy
BENCH_BIN=$RELEASE_DIR/influx-proxy-bench

if awk '{exit !($1 > 1.0)}' /proc/loadavg; then
    echo "bench.sh: warning: load average is $(cut -d' ' -f1 /proc/loadavg); other work skews the figures" >&2
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/influx-proxy-bench.XXXXXX")
PIDS=()

cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill -KILL "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    if [ "${BENCH_KEEP:-0}" = 1 ]; then
        echo "bench.sh: kept $WORK" >&2
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# shellcheck source=scripts/bench-lib.sh
. "$ROOT/scripts/bench-lib.sh"

: >"$REPORT"
out() { echo "$*" >>"$REPORT"; }

# ---------------------------------------------------------------------------------------------
# Machine
# ---------------------------------------------------------------------------------------------

MODEL=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
MEM=$(awk '/^MemTotal:/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)
INFLUXD_VERSION=$([ "$HAVE_INFLUXD" = 1 ] && influxd version 2>/dev/null | head -1 || echo "not installed")
out "# influx-proxy performance"
out
out "Generated by \`scripts/bench.sh$([ "$QUICK" = 1 ] && echo " --quick")\` on $(date -u '+%Y-%m-%d %H:%M UTC'); do not edit by hand."
out
out "| machine | |"
out "|---|---|"
out "| CPUs (nproc) | $(nproc) |"
out "| model | ${MODEL:-unknown} |"
out "| memory | $MEM |"
out "| kernel | $(uname -sr) |"
out "| load average at start | $(cut -d' ' -f1-3 /proc/loadavg) (anything else running skews every figure) |"
out "| influxd | $INFLUXD_VERSION |"
out "| proxy | $("$PROXY_BIN" -version 2>&1 | sed -n '1,2p' | tr -s ' ' | paste -sd ',' | sed 's/,/, /') |"
out "| rustc | $(rustc --version) |"
out
out "Load: \`influx-proxy-bench write\`, $CONCURRENCY connections, $BATCH points per request;" \
    "(a) the Telegraf-like body, the other sections a synthetic one (10 measurements x 100 tag" \
    "sets, 1,000 series, 2 short tags, 4 fields, about 5x cheaper per point); ns timestamps;" \
    "gzip bodies are compressed before the timed run (\`--pool-mb $POOL_MB\`);" \
    "${BENCH_SECONDS} s per run. The load tool, the proxy and its backends share the same" \
    "$(nproc) CPUs, so every figure is a lower bound of what the proxy does on its own machine." \
    "\"proxy CPU\" and \"load tool CPU\" are user+system CPU time divided by the run time (cores);" \
    "\"proxy CPU µs/point\" (CPU time per acknowledged point, delivery to the backends during the run" \
    "included) depends least on what else runs on the machine."
out

# ---------------------------------------------------------------------------------------------
# (a) the body users send, ours vs. the Go proxy, in front of 2 x 2 null sinks
# ---------------------------------------------------------------------------------------------
section_a() {

    GO_PROXY=${GO_PROXY:-$ROOT/../shared/reference/bin/influx-proxy-2.5.12}
    out "## (a) The body users send: influx-proxy vs. the Go proxy 2.5.12, 2 circles x 2 null sinks"
    out
    out "Body: \`influx-proxy-bench write --shape telegraf\`, what a fleet of Telegraf agents sends:" \
        "$BATCH lines per request over 20 measurements (\`cpu\`, \`mem\`, \`disk\`, ...) x 250 hosts," \
        "tags \`dc\`, \`host\`, \`region\`, a full-precision float and an integer field; every" \
        "request reaches every backend. Same load, same sinks, same \`proxy.json\`, one after the other." \
        "\"CPU µs/point\" is the proxy's CPU time from the start of the load until the sinks hold every" \
        "point (delivery included) per acknowledged point; \"peak RSS\" is the process's VmHWM." \
        "influx-proxy runs with its default memory budget (\`memory_budget_mb\` 96) and, last, with" \
        "256 MiB, which buys CPU (larger memtables: less of the queue reaches disk)."
    out
    out "| proxy | body | points/s | p50 ms | p99 ms | errors | CPU µs/point | peak RSS MB | drain s | delivered |"
    out "|---|---|---:|---:|---:|---|---:|---:|---:|---|"
    declare -gA USER_PPS USER_CPU USER_RSS
    for who in ours go ours256; do
        if [ "$who" = go ] && [ ! -x "$GO_PROXY" ]; then
            out "| Go proxy 2.5.12 | - | not found at \`$GO_PROXY\` (set GO_PROXY) | | | | | | | |"
            continue
        fi
        for body in plain gzip; do
            extra=(--shape telegraf)
            [ "$body" = gzip ] && extra+=(--gzip --pool-mb "$POOL_MB")
            log "(a) $who proxy -> 2x2 sinks, telegraf body, $body"
            start_sinks 4
            PROXY_UNDER_TEST=$([ "$who" = go ] && echo "$GO_PROXY" || true)
            PROXY_EXTRA=$([ "$who" = ours256 ] && echo '"memory_budget_mb": 256,' || true)
            start_proxy 2 2 "${SINK_PORTS[@]}"
            PROXY_UNDER_TEST=
            PROXY_EXTRA=
            cpu0=$(cpu_seconds "$PROXY_PID")
            run_load "$PROXY_URL" bench "${extra[@]}"
            acked=$(jget "$LOAD_JSON" points)
            drain=$(wait_sinks $((acked * 2)) "${SINK_PORTS[@]}")
            cpu1=$(cpu_seconds "$PROXY_PID")
            rss=$(peak_rss_mb "$PROXY_PID")
            got=$(sink_points "${SINK_PORTS[@]}")
            per_point=$(awk -v a="$cpu0" -v b="$cpu1" -v p="$acked" 'BEGIN {printf "%.2f", (p > 0 ? (b - a) * 1e6 / p : 0)}')
            pps=$(jget "$LOAD_JSON" points_per_sec)
            USER_PPS[$who-$body]=$pps
            USER_CPU[$who-$body]=$per_point
            USER_RSS[$who-$body]=$rss
            case $who in
                go) label="Go proxy 2.5.12" ;;
                ours256) label="influx-proxy, \`memory_budget_mb\` 256" ;;
                *) label="influx-proxy" ;;
            esac
            out "| $label | $body |" \
                "$(fmt_int "$pps") | $(fmt_2 "$(jget "$LOAD_JSON" p50)") | $(fmt_2 "$(jget "$LOAD_JSON" p99)") |" \
                "$(errors_of "$LOAD_JSON") | $per_point | $rss | $drain |" \
                "$([ "$got" = $((acked * 2)) ] && echo "ok ($got)" || echo "MISMATCH $got of $((acked * 2))") |"
            stop_pid "$PROXY_PID"
            for pid in "${SINK_PIDS[@]}"; do stop_pid "$pid"; done
        done
    done
    out
    if [ -n "${USER_PPS[go-gzip]:-}" ]; then
        ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.1f", (b > 0 ? a / b : 0)}'; }
        for body in plain gzip; do
            out "- $body bodies, influx-proxy / Go proxy: points/s x$(ratio "${USER_PPS[ours-$body]}" "${USER_PPS[go-$body]}")," \
                "CPU per point x$(ratio "${USER_CPU[ours-$body]}" "${USER_CPU[go-$body]}")," \
                "peak RSS x$(ratio "${USER_RSS[ours-$body]}" "${USER_RSS[go-$body]}")."
        done
        out
    fi
}

# ---------------------------------------------------------------------------------------------
# (a2) proxy in front of 2 x 2 null sinks, synthetic body
# ---------------------------------------------------------------------------------------------
section_a2() {

    out "## (a2) Synthetic body, proxy in front of 2 circles x 2 null sinks"
    out
    out "\"body\" is how the load tool sends, \"to backends\" how the proxy delivers (\`write_gzip\`," \
        "default gzip). \"delivered\" compares the points the sinks received after the queues drained" \
        "with acknowledged points x circles."
    out
    out "| setup | body | to backends | points/s | MB/s sent | p50 ms | p99 ms | errors | proxy CPU | proxy CPU µs/point | load tool CPU | drain s | delivered |"
    out "|---|---|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---|"

    log "(a2) load tool straight into one sink (ceiling of the load tool)"
    for body in plain gzip; do
        extra=()
        [ "$body" = gzip ] && extra=(--gzip --pool-mb "$POOL_MB")
        start_sinks 1
        run_load "http://127.0.0.1:${SINK_PORTS[0]}" bench "${extra[@]}"
        got=$(sink_points "${SINK_PORTS[@]}")
        acked=$(jget "$LOAD_JSON" points)
        out "| load tool -> 1 sink (no proxy) | $body | - | $(fmt_int "$(jget "$LOAD_JSON" points_per_sec)") |" \
            "$(fmt_1 "$(jget "$LOAD_JSON" mb_per_sec)") | $(fmt_2 "$(jget "$LOAD_JSON" p50)") |" \
            "$(fmt_2 "$(jget "$LOAD_JSON" p99)") | $(errors_of "$LOAD_JSON") | - | - | $LOAD_CPU | - |" \
            "$([ "$got" = "$acked" ] && echo "ok ($got)" || echo "MISMATCH $got of $acked") |"
        stop_pid "${SINK_PIDS[0]}"
    done

    for setting in "plain gzip" "plain plain" "gzip gzip" "gzip plain"; do
        read -r body to_backends <<<"$setting"
        extra=()
        [ "$body" = gzip ] && extra=(--gzip --pool-mb "$POOL_MB")
        log "(a2) proxy -> 2x2 sinks, $body body, $to_backends to backends"
        start_sinks 4
        PROXY_EXTRA=$([ "$to_backends" = plain ] && echo '"write_gzip": false,' || true)
        start_proxy 2 2 "${SINK_PORTS[@]}"
        PROXY_EXTRA=
        cpu0=$(cpu_seconds "$PROXY_PID")
        t0=$(date +%s.%N)
        run_load "$PROXY_URL" bench "${extra[@]}"
        t1=$(date +%s.%N)
        cpu1=$(cpu_seconds "$PROXY_PID")
        drain=$(wait_drain)
        got=$(sink_points "${SINK_PORTS[@]}")
        acked=$(jget "$LOAD_JSON" points)
        cores=$(awk -v a="$cpu0" -v b="$cpu1" -v s="$t0" -v e="$t1" 'BEGIN {printf "%.2f", (b - a) / (e - s)}')
        out "| proxy -> 2x2 sinks | $body | $to_backends | $(fmt_int "$(jget "$LOAD_JSON" points_per_sec)") |" \
            "$(fmt_1 "$(jget "$LOAD_JSON" mb_per_sec)") | $(fmt_2 "$(jget "$LOAD_JSON" p50)") |" \
            "$(fmt_2 "$(jget "$LOAD_JSON" p99)") | $(errors_of "$LOAD_JSON") | $cores |" \
            "$(awk -v c="$cores" -v p="$(jget "$LOAD_JSON" points_per_sec)" 'BEGIN {printf "%.2f", c * 1e6 / p}') |" \
            "$LOAD_CPU | $drain |" \
            "$([ "$got" = $((acked * 2)) ] && echo "ok ($got)" || echo "MISMATCH $got of $((acked * 2))") |"
        stop_pid "$PROXY_PID"
        for pid in "${SINK_PIDS[@]}"; do stop_pid "$pid"; done
    done
    out
}

# ---------------------------------------------------------------------------------------------
# (b) real influxd
# ---------------------------------------------------------------------------------------------
section_b() {

    out "## (b) Real influxd: direct vs. through the proxy"
    out
    if [ "$HAVE_INFLUXD" = 0 ]; then
        out "influxd is not installed (Debian package \`influxdb\`); skipped."
        log "(b) skipped: no influxd"
    else
        out "The proxy acknowledges a write once it is in its write-ahead queue, before InfluxDB has it," \
            "so \"acked points/s\" can exceed what InfluxDB absorbs. \"end-to-end points/s\" divides" \
            "the acknowledged points by the run time plus the time the queues took to drain afterwards;" \
            "\"stored\" is \`SELECT COUNT(f0)\` summed over all backends and measurements, divided by circles."
        out
        out "| setup | acked points/s | p50 ms | p99 ms | errors | proxy CPU | drain s | end-to-end points/s | stored |"
        out "|---|---:|---:|---:|---|---:|---:|---:|---|"

        # influx_row LABEL CIRCLES PROXY_PID|- PORTS...: runs the load against $TARGET_URL.
        influx_row() {
            local label=$1 circles=$2 ppid=$3 cpu0 cpu1 t0 t1 drain=0 cores=- stored=0 port e2e acked
            shift 3
            [ "$ppid" != - ] && cpu0=$(cpu_seconds "$ppid")
            t0=$(date +%s.%N)
            run_load "$TARGET_URL" bench --create-db ${ROW_RATE:+--rate "$ROW_RATE"} \
                ${ROW_POINTS:+--points "$ROW_POINTS"}
            t1=$(date +%s.%N)
            if [ "$ppid" != - ]; then
                cpu1=$(cpu_seconds "$ppid")
                cores=$(awk -v a="$cpu0" -v b="$cpu1" -v s="$t0" -v e="$t1" 'BEGIN {printf "%.2f", (b - a) / (e - s)}')
                drain=$(wait_drain)
            fi
            acked=$(jget "$LOAD_JSON" points)
            e2e=$(awk -v p="$acked" -v s="$t0" -v e="$t1" -v d="$drain" 'BEGIN {printf "%.0f", p / (e - s + d)}')
            for port in "$@"; do
                stored=$((stored + $(stored_points "$port" bench)))
            done
            stored=$((stored / circles))
            out "| $label | $(fmt_int "$(jget "$LOAD_JSON" points_per_sec)") | $(fmt_2 "$(jget "$LOAD_JSON" p50)") |" \
                "$(fmt_2 "$(jget "$LOAD_JSON" p99)") | $(errors_of "$LOAD_JSON") | $cores | $([ "$ppid" = - ] && echo - || echo "$drain") |" \
                "$(fmt_int "$e2e") | $([ "$stored" = "$acked" ] && echo "ok ($stored)" || echo "MISMATCH $stored of $acked") |"
            ROW_PPS=$(jget "$LOAD_JSON" points_per_sec)
            ROW_P50=$(jget "$LOAD_JSON" p50)
            ROW_P99=$(jget "$LOAD_JSON" p99)
            ROW_E2E=$e2e
            ROW_ACKED=$acked
        }

        log "(b) load tool -> influxd"
        start_influxd
        TARGET_URL="http://127.0.0.1:$INFLUXD_PORT"
        influx_row "load tool -> influxd" 1 - "$INFLUXD_PORT"
        D_PPS=$ROW_PPS D_P50=$ROW_P50 D_P99=$ROW_P99 D_POINTS=$ROW_ACKED
        stop_pid "$INFLUXD_PID"

        # proxy_1x1_row LABEL: a fresh influxd behind a fresh 1x1 proxy; PROXY_EXTRA, ROW_RATE,
        # ROW_POINTS and ROW_SECONDS apply as set by the caller. Sets ROW_* like influx_row.
        proxy_1x1_row() {
            start_influxd
            start_proxy 1 1 "$INFLUXD_PORT"
            TARGET_URL=$PROXY_URL
            influx_row "$1" 1 "$PROXY_PID" "$INFLUXD_PORT"
            stop_pid "$PROXY_PID"
            stop_pid "$INFLUXD_PID"
        }

        log "(b) proxy -> 1x1 influxd"
        proxy_1x1_row "proxy -> 1 influxd"
        P_PPS=$ROW_PPS P_P50=$ROW_P50 P_P99=$ROW_P99 P_E2E=$ROW_E2E

        log "(b) proxy -> 1x1 influxd, write_gzip false"
        PROXY_EXTRA='"write_gzip": false,'
        proxy_1x1_row "proxy -> 1 influxd, \`write_gzip: false\`"
        PROXY_EXTRA=
        P2_E2E=$ROW_E2E

        # The unlimited rows above let the proxy accept several times what influxd takes and then
        # drain it into an ever larger database; at influxd's own rate both sides store about as
        # much data, which is what "overhead" means to an operator sizing a deployment.
        log "(b) proxy -> 1x1 influxd at the direct rate"
        ROW_RATE=$(awk -v r="$D_PPS" 'BEGIN {printf "%.0f", r}')
        # Longer, so the last partial batch's flush_time (1 s) weighs little.
        ROW_SECONDS=$((BENCH_SECONDS * 3))
        proxy_1x1_row "proxy -> 1 influxd, load limited to the direct rate ($(fmt_int "$ROW_RATE") points/s)"
        ROW_RATE=
        ROW_SECONDS=
        P3_E2E=$ROW_E2E

        # The same work both ways: the points the direct run stored, sent flat out through the
        # proxy and timed until influxd has them all.
        log "(b) proxy -> 1x1 influxd, the direct run's point count"
        ROW_POINTS=$D_POINTS
        ROW_SECONDS=$((BENCH_SECONDS * 6))
        proxy_1x1_row "proxy -> 1 influxd, the direct run's $(fmt_int "$D_POINTS") points flat out"
        ROW_POINTS=
        ROW_SECONDS=
        P4_E2E=$ROW_E2E

        log "(b) proxy -> 2x2 influxd"
        ports=()
        pids=()
        for i in 1 2 3 4; do
            start_influxd
            ports+=("$INFLUXD_PORT")
            pids+=("$INFLUXD_PID")
        done
        start_proxy 2 2 "${ports[@]}"
        TARGET_URL=$PROXY_URL
        influx_row "proxy -> 2x2 influxd" 2 "$PROXY_PID" "${ports[@]}"
        stop_pid "$PROXY_PID"
        for pid in "${pids[@]}"; do stop_pid "$pid"; done
        out
        out "Proxy (one circle of that influxd) vs. influxd direct: acked points/s x$(awk -v a="$P_PPS" -v b="$D_PPS" 'BEGIN {printf "%.2f", a / b}')," \
            "end-to-end points/s x$(awk -v a="$P_E2E" -v b="$D_PPS" 'BEGIN {printf "%.2f", a / b}')" \
            "(x$(awk -v a="$P2_E2E" -v b="$D_PPS" 'BEGIN {printf "%.2f", a / b}') without gzip towards influxd;" \
            "x$(awk -v a="$P3_E2E" -v b="$D_PPS" 'BEGIN {printf "%.2f", a / b}') with the load limited to the direct rate;" \
            "x$(awk -v a="$P4_E2E" -v b="$D_PPS" 'BEGIN {printf "%.2f", a / b}') for the direct run's point count sent flat out, the same work both ways)," \
            "p50 latency x$(awk -v a="$P_P50" -v b="$D_P50" 'BEGIN {printf "%.2f", a / b}')," \
            "p99 latency x$(awk -v a="$P_P99" -v b="$D_P99" 'BEGIN {printf "%.2f", a / b}')."
    fi
    out
}

# ---------------------------------------------------------------------------------------------
# (c) added latency
# ---------------------------------------------------------------------------------------------
section_c() {

    out "## (c) Added latency per $BATCH-point request"
    out
    out "One connection at $(fmt_int "$LATENCY_RATE") points/s (rate-limited, so neither side is saturated)," \
        "${LATENCY_SECONDS} s ($(fmt_int $((LATENCY_RATE * LATENCY_SECONDS / BATCH))) requests) per run. The proxy answers once the request is in its write-ahead queue for every" \
        "circle, so its latency is parsing, routing and the queue append; against real influxd it" \
        "does not include InfluxDB's own write time. \"added\" = through the proxy minus direct."
    out
    out "| target | direct p50 ms | direct p99 ms | proxy p50 ms | proxy p99 ms | added p50 ms | added p99 ms |"
    out "|---|---:|---:|---:|---:|---:|---:|"

    # latency_load URL: one connection at LATENCY_RATE; sets LAT_P50 and LAT_P99.
    latency_load() {
        local json
        json=$("$BENCH_BIN" write --url "$1" --db bench --concurrency 1 --batch "$BATCH" \
            --rate "$LATENCY_RATE" --duration "${LATENCY_SECONDS}s" --create-db --json 2>>"$WORK/load.log")
        LAT_P50=$(jget "$json" p50)
        LAT_P99=$(jget "$json" p99)
    }

    # latency_row LABEL: prints the row from DIRECT_* and LAT_*.
    latency_row() {
        out "| $1 | $(fmt_2 "$DIRECT_P50") | $(fmt_2 "$DIRECT_P99") | $(fmt_2 "$LAT_P50") | $(fmt_2 "$LAT_P99") |" \
            "$(awk -v a="$LAT_P50" -v b="$DIRECT_P50" 'BEGIN {printf "%.2f", a - b}') |" \
            "$(awk -v a="$LAT_P99" -v b="$DIRECT_P99" 'BEGIN {printf "%.2f", a - b}') |"
    }

    log "(c) latency: sink direct vs. proxy -> 2x2 sinks"
    start_sinks 4
    latency_load "http://127.0.0.1:${SINK_PORTS[0]}"
    DIRECT_P50=$LAT_P50 DIRECT_P99=$LAT_P99
    start_proxy 2 2 "${SINK_PORTS[@]}"
    latency_load "$PROXY_URL"
    latency_row "null sink / proxy -> 2x2 null sinks"
    stop_pid "$PROXY_PID"
    for pid in "${SINK_PIDS[@]}"; do stop_pid "$pid"; done

    if [ "$HAVE_INFLUXD" = 1 ]; then
        log "(c) latency: influxd direct vs. proxy -> 1 influxd"
        start_influxd
        latency_load "http://127.0.0.1:$INFLUXD_PORT"
        DIRECT_P50=$LAT_P50 DIRECT_P99=$LAT_P99
        stop_pid "$INFLUXD_PID"
        start_influxd
        start_proxy 1 1 "$INFLUXD_PORT"
        latency_load "$PROXY_URL"
        latency_row "influxd / proxy -> 1 influxd"
        stop_pid "$PROXY_PID"
        stop_pid "$INFLUXD_PID"
    fi
    out
}

# ---------------------------------------------------------------------------------------------
# (d) one backend down
# ---------------------------------------------------------------------------------------------
section_d() {

    log "(d) outage of one sink for ${OUTAGE_SECONDS}s"
    start_sinks 4
    start_proxy 2 2 "${SINK_PORTS[@]}"
    VICTIM_PORT=${SINK_PORTS[0]}
    VICTIM_PID=${SINK_PIDS[0]}
    TOTAL=$((PRE_OUTAGE + OUTAGE_SECONDS + POST_OUTAGE))
    "$BENCH_BIN" write --url "$PROXY_URL" --db bench --concurrency "$CONCURRENCY" --batch "$BATCH" \
        --rate "$OUTAGE_RATE" --duration "${TOTAL}s" --json >"$WORK/outage.json" 2>>"$WORK/load.log" &
    LOAD_PID=$!
    PIDS+=("$LOAD_PID")

    out "## (d) One of 4 sinks killed for ${OUTAGE_SECONDS} s while writing through the proxy"
    out
    out "Load: $(fmt_int "$OUTAGE_RATE") points/s (rate-limited) into a proxy with 2 circles x 2 sinks;" \
        "backend-1-1 is SIGKILLed after ${PRE_OUTAGE} s and restarted on the same port" \
        "${OUTAGE_SECONDS} s later. Queue = sum of \`queue.bytes\` over all backends in \`/health\`;" \
        "RSS = \`VmRSS\` of the proxy."
    out
    out "| t s | phase | queue MB | proxy RSS MB |"
    out "|---:|---|---:|---:|"
    START=$(date +%s.%N)
    phase=before
    killed=0
    restarted=0
    next_sample=0
    while :; do
        now=$(awk -v a="$START" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}')
        if [ "$killed" = 0 ] && awk -v t="$now" -v p="$PRE_OUTAGE" 'BEGIN {exit !(t >= p)}'; then
            VICTIM_BEFORE=$(sink_points "$VICTIM_PORT")
            stop_pid "$VICTIM_PID"
            killed=1
            phase=outage
            next_sample=0
        fi
        if [ "$killed" = 1 ] && [ "$restarted" = 0 ] &&
            awk -v t="$now" -v p="$((PRE_OUTAGE + OUTAGE_SECONDS))" 'BEGIN {exit !(t >= p)}'; then
            start_sink "$VICTIM_PORT" "$WORK/sink-$VICTIM_PORT.log"
            SINK_PIDS[0]=$SINK_PID
            restarted=1
            phase=recovery
            next_sample=0
        fi
        load_done=0
        kill -0 "$LOAD_PID" 2>/dev/null || load_done=1
        if awk -v t="$now" -v n="$next_sample" 'BEGIN {exit !(t >= n)}'; then
            q=$(queue_bytes)
            rss=$(rss_mb "$PROXY_PID")
            out "| $now | $phase | $(fmt_1 "$(awk -v b="$q" 'BEGIN {print b / 1e6}')") | $rss |"
            echo "$now $phase $q $rss" >>"$WORK/outage-samples.txt"
            # Long outages are sampled sparsely; the drain afterwards closely.
            step=$([ "$phase" = outage ] && echo "$SAMPLE_SECONDS" || echo "$DRAIN_SAMPLE_SECONDS")
            next_sample=$(awk -v t="$now" -v s="$step" 'BEGIN {print t + s}')
            if [ "$load_done" = 1 ] && [ "$restarted" = 1 ] && [ "$q" = 0 ]; then
                break
            fi
        fi
        if [ "$load_done" = 1 ] && [ "$phase" != drain ] && [ "$restarted" = 1 ]; then
            phase=drain
            next_sample=0
            LOAD_END=$now
        fi
        if awk -v t="$now" -v m="$((TOTAL + DRAIN_TIMEOUT))" 'BEGIN {exit !(t > m)}'; then
            out "| $now | gave up waiting for the queue to drain | | |"
            break
        fi
        sleep 0.2
    done
    wait "$LOAD_PID" || true
    OUTAGE_JSON=$(cat "$WORK/outage.json")
    acked=$(jget "$OUTAGE_JSON" points)
    got=$(($(sink_points "${SINK_PORTS[@]}") + ${VICTIM_BEFORE:-0}))
    out
    out "Acknowledged $(fmt_int "$acked") points ($(fmt_int "$(jget "$OUTAGE_JSON" points_per_sec)") points/s," \
        "p50 $(fmt_2 "$(jget "$OUTAGE_JSON" p50)") ms, p99 $(fmt_2 "$(jget "$OUTAGE_JSON" p99)") ms," \
        "max $(fmt_2 "$(jget "$OUTAGE_JSON" max)") ms, errors $(errors_of "$OUTAGE_JSON"))." \
        "The queue was empty again $(awk -v a="${LOAD_END:-0}" -v b="$now" 'BEGIN {printf "%.1f", b - a}') s after the load stopped." \
        "Sinks received $(fmt_int "$got") points of $(fmt_int $((acked * 2))) expected" \
        "$([ "$got" -ge $((acked * 2)) ] && echo "(ok; more means batches in flight at the kill were delivered twice, at-least-once)" || echo "(MISMATCH)")."
    stop_pid "$PROXY_PID"
    # Flat memory: compare the first and the last third of the outage samples.
    out
    out "$(awk -v secs="$OUTAGE_SECONDS" '$2 == "outage" {n++; t[n] = $1; q[n] = $3; r[n] = $4}
        END {
            if (n < 3) { print "Too few outage samples for a memory summary."; exit }
            min = r[1]; max = r[1]
            for (i = 1; i <= n; i++) { if (r[i] < min) min = r[i]; if (r[i] > max) max = r[i] }
            k = int(n / 3); a = 0; b = 0
            for (i = 1; i <= k; i++) { a += r[i]; b += r[n - k + i] }
            printf "Proxy RSS over the %d s outage (%d samples): min %d MB, max %d MB; mean %.0f MB in the first third (queue %.0f MB at its end) vs. %.0f MB in the last third (queue %.0f MB at its end).", \
                secs, n, min, max, a / k, q[k] / 1e6, b / k, q[n] / 1e6
        }' "$WORK/outage-samples.txt")"
}

# Sections kept in their own files: (e) migration, (f) query latency.
shopt -s nullglob
for f in "$ROOT"/scripts/bench-section-*.sh; do
    # shellcheck source=/dev/null
    . "$f"
done
shopt -u nullglob

# The sections in order; BENCH_SECTIONS (e.g. "a e") runs a subset.
for section in ${BENCH_SECTIONS:-a a2 b c d e f}; do
    if declare -F "section_$section" >/dev/null; then
        "section_$section"
    else
        echo "bench.sh: no section $section" >&2
        exit 2
    fi
done

out
out "Load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)."

mkdir -p "$(dirname "$OUTPUT")"
cp "$REPORT" "$OUTPUT"
cat "$REPORT"
echo >&2
echo "bench.sh: wrote $OUTPUT" >&2
