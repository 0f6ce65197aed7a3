#!/usr/bin/env bash
# Shared pieces of the benchmark scripts, sourced by scripts/bench.sh and its section files:
# processes (sinks, influxd, proxies), polling, load, formatting. Expects WORK, PIDS, BENCH_BIN,
# PROXY_BIN, DRAIN_TIMEOUT, CONCURRENCY, BATCH and BENCH_SECONDS to be set by the caller.
# shellcheck shell=bash

log() { echo "-- $*" >&2; }

# ---------------------------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------------------------

# Ports below the kernel's ephemeral range: a port in it can be the local end of some
# connection, which nobody listens on yet a server cannot bind (a CI run lost its sink so).
EPHEMERAL_LOW=$(awk '{print $1}' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
[ "${EPHEMERAL_LOW:-0}" -gt 12000 ] 2>/dev/null || EPHEMERAL_LOW=32768
NEXT_PORT=$((10000 + RANDOM % (EPHEMERAL_LOW - 12000)))
# Sets PORT to a loopback port nobody listens on.
alloc_port() {
    while :; do
        NEXT_PORT=$((NEXT_PORT + 1))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$NEXT_PORT") 2>/dev/null; then
            PORT=$NEXT_PORT
            return
        fi
    done
}

# wait_ping URL PID: until URL/ping answers 204 (20 s), failing when PID dies.
wait_ping() {
    local url=$1 pid=$2 i
    for i in $(seq 1 200); do
        if [ "$(curl -s -o /dev/null -w '%{http_code}' "$url/ping" 2>/dev/null)" = 204 ]; then
            return 0
        fi
        kill -0 "$pid" 2>/dev/null || {
            echo "bench.sh: process $pid for $url died" >&2
            return 1
        }
        sleep 0.1
    done
    echo "bench.sh: $url did not answer /ping" >&2
    return 1
}

# stop_pid PID: SIGKILL one process we started and reap it.
stop_pid() {
    kill -KILL "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

# start_sink PORT LOG: sets SINK_PID. Retries a few times: a sink restarted
# on the same port right after a SIGKILL can find the port briefly taken.
start_sink() {
    local attempt
    for attempt in 1 2 3 4 5 6 7 8 9 10; do
        "$BENCH_BIN" sink --listen "127.0.0.1:$1" >>"$2" 2>&1 &
        SINK_PID=$!
        PIDS+=("$SINK_PID")
        if wait_ping "http://127.0.0.1:$1" "$SINK_PID" 2>>"$2"; then
            return 0
        fi
        echo "bench.sh: sink on port $1 did not start (attempt $attempt), retrying" >&2
        sleep 0.5
    done
    return 1
}

# start_sinks N: sets SINK_PORTS and SINK_PIDS.
start_sinks() {
    SINK_PORTS=()
    SINK_PIDS=()
    local i
    for i in $(seq 1 "$1"); do
        alloc_port
        start_sink "$PORT" "$WORK/sink-$PORT.log"
        SINK_PORTS+=("$PORT")
        SINK_PIDS+=("$SINK_PID")
    done
}

# Points received by the sinks on PORTS... (GET /debug/sink).
sink_points() {
    local port total=0 n
    for port in "$@"; do
        n=$(curl -s "http://127.0.0.1:$port/debug/sink" | sed -n 's/.*"points":\([0-9]*\).*/\1/p')
        total=$((total + ${n:-0}))
    done
    echo "$total"
}

# start_influxd: sets INFLUXD_PORT (HTTP) and INFLUXD_PID; config as crates/harness/src/influxd.rs.
start_influxd() {
    local rpc dir
    alloc_port
    INFLUXD_PORT=$PORT
    alloc_port
    rpc=$PORT
    dir=$(mktemp -d "$WORK/influxd-$INFLUXD_PORT.XXXX")
    fill_influxd_template "$dir" "$INFLUXD_PORT" "$rpc" warn >"$dir/influxd.conf"
    influxd -config "$dir/influxd.conf" >"$dir/influxd.log" 2>&1 &
    INFLUXD_PID=$!
    PIDS+=("$INFLUXD_PID")
    wait_ping "http://127.0.0.1:$INFLUXD_PORT" "$INFLUXD_PID"
}

# write_proxy_config FILE CIRCLES BACKENDS_PER_CIRCLE PORT...: one proxy.json (circle-major);
# PROXY_EXTRA (e.g. '"write_gzip": false,') is added to the top-level settings.
write_proxy_config() {
    local file=$1 circles=$2 per=$3 c b i=0 sep_c="" sep_b
    shift 3
    local ports=("$@")
    local dir
    dir=$(dirname "$file")
    {
        echo '{'
        echo '  "circles": ['
        for c in $(seq 1 "$circles"); do
            printf '%s    {"name": "circle-%s", "backends": [\n' "$sep_c" "$c"
            sep_b=""
            for b in $(seq 1 "$per"); do
                printf '%s      {"name": "backend-%s-%s", "url": "http://127.0.0.1:%s"}' \
                    "$sep_b" "$c" "$b" "${ports[$i]}"
                sep_b=$',\n'
                i=$((i + 1))
            done
            printf '\n    ]}'
            sep_c=$',\n'
        done
        echo
        echo '  ],'
        echo "  \"listen_addr\": \"127.0.0.1:$PROXY_PORT\","
        echo "  \"data_dir\": \"$dir/data\","
        echo "  \"mlog_dir\": \"$dir/log\","
        echo '  "flush_size": 10000,'
        echo '  "flush_time": 1,'
        echo '  "wal_max_bytes": 8589934592,'
        [ -n "${PROXY_EXTRA:-}" ] && echo "  $PROXY_EXTRA"
        echo '  "log_level": "info"'
        echo '}'
    } >"$file"
}

# start_proxy CIRCLES PER PORT...: sets PROXY_PID, PROXY_URL, PROXY_DIR. Runs
# $PROXY_UNDER_TEST when set (the Go proxy reads the same proxy.json), else ours.
start_proxy() {
    alloc_port
    PROXY_PORT=$PORT
    PROXY_DIR=$(mktemp -d "$WORK/proxy-$PROXY_PORT.XXXX")
    write_proxy_config "$PROXY_DIR/proxy.json" "$@"
    "${PROXY_UNDER_TEST:-$PROXY_BIN}" -config "$PROXY_DIR/proxy.json" >"$PROXY_DIR/proxy.log" 2>&1 &
    PROXY_PID=$!
    PIDS+=("$PROXY_PID")
    PROXY_URL="http://127.0.0.1:$PROXY_PORT"
    wait_ping "$PROXY_URL" "$PROXY_PID" || {
        tail -20 "$PROXY_DIR/proxy.log" >&2
        return 1
    }
}

# Bytes queued over all backends of the proxy (sum of queue.bytes in /health).
queue_bytes() {
    curl -s --max-time 10 "$PROXY_URL/health" | grep -o '"bytes":[0-9]*' | cut -d: -f2 |
        awk '{s += $1} END {print s + 0}'
}

# wait_for CMD...: until CMD succeeds or DRAIN_TIMEOUT passes; prints the seconds it took (or
# "timeout").
wait_for() {
    local start now
    start=$(date +%s.%N)
    until "$@"; do
        now=$(date +%s.%N)
        if awk -v a="$start" -v b="$now" -v t="$DRAIN_TIMEOUT" 'BEGIN {exit !(b - a > t)}'; then
            echo timeout
            return
        fi
        sleep 0.2
    done
    now=$(date +%s.%N)
    awk -v a="$start" -v b="$now" 'BEGIN {printf "%.1f", b - a}'
}

queue_empty() { [ "$(queue_bytes)" = 0 ]; }

# wait_drain: until the proxy's queues are empty (see wait_for).
wait_drain() { wait_for queue_empty; }

# CPU seconds (user + system) used so far by PID.
cpu_seconds() {
    awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) / hz}' "/proc/$1/stat" 2>/dev/null || echo 0
}

# Peak resident memory of PID in MB (VmHWM: the high-water mark since it started).
peak_rss_mb() {
    awk '/^VmHWM:/ {printf "%.0f", $2 / 1024}' "/proc/$1/status" 2>/dev/null || echo 0
}

# sinks_hold WANT PORTS...: whether the sinks on PORTS hold at least WANT points.
sinks_hold() {
    local want=$1
    shift
    [ "$(sink_points "$@")" -ge "$want" ]
}

# wait_sinks WANT PORTS...: until the sinks hold WANT points (the Go proxy has no queue to
# poll; see wait_for).
wait_sinks() { wait_for sinks_hold "$@"; }

# Resident memory of PID in MB.
rss_mb() {
    awk '/^VmRSS:/ {printf "%.0f", $2 / 1024}' "/proc/$1/status" 2>/dev/null || echo 0
}

# Points stored in influxd at PORT, database DB (sum over measurements of COUNT(f0)).
stored_points() {
    curl -s --max-time 120 -G "http://127.0.0.1:$1/query" --data-urlencode "db=$2" \
        --data-urlencode 'q=SELECT COUNT(f0) FROM /.*/' |
        grep -o ',[0-9]*\]\]' | tr -dc '0-9\n' | awk '{s += $1} END {print s + 0}'
}

# ---------------------------------------------------------------------------------------------
# Load
# ---------------------------------------------------------------------------------------------

# jget JSON KEY: a numeric field of the load tool's JSON summary.
jget() {
    sed -n "s/.*\"$2\":\\([-0-9.e+]*\\).*/\\1/p" <<<"$1"
}

# run_load URL DB [EXTRA...]: runs the load tool for BENCH_SECONDS; sets LOAD_JSON and LOAD_CPU
# (the load tool's own CPU during the timed run, in cores).
run_load() {
    local url=$1 db=$2
    shift 2
    LOAD_JSON=$("$BENCH_BIN" write --url "$url" --db "$db" --concurrency "$CONCURRENCY" \
        --batch "$BATCH" --duration "${ROW_SECONDS:-$BENCH_SECONDS}s" --json "$@" 2>>"$WORK/load.log") || {
        echo "bench.sh: load against $url failed:" >&2
        tail -15 "$WORK/load.log" >&2
        return 1
    }
    LOAD_CPU=$(fmt_2 "$(jget "$LOAD_JSON" cpu_cores)")
}

fmt_int() {
    awk -v x="$1" 'BEGIN {
        s = sprintf("%.0f", x); n = length(s); out = ""
        for (i = 1; i <= n; i++) { out = out substr(s, i, 1); if ((n - i) % 3 == 0 && i < n) out = out "," }
        print out
    }'
}
fmt_1() { awk -v x="$1" 'BEGIN {printf "%.1f", x}'; }
fmt_2() { awk -v x="$1" 'BEGIN {printf "%.2f", x}'; }
errors_of() {
    local e
    e=$(jget "$1" error_total)
    if [ "${e:-0}" = 0 ]; then echo 0; else grep -o '"errors":{[^}]*}' <<<"$1" | cut -d: -f2-; fi
}

export LC_ALL=C
REPORT=$WORK/report.md
