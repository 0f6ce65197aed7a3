#!/usr/bin/env bash
# Section (e) of scripts/bench.sh: migration measured, not claimed. The same data set is moved by
# influx-proxy and by the Go proxy 2.4.4 (the generation that serves /rebalance, /recovery and
# /migrate/state under these names) into real influxd processes:
#
#   rebalance  a circle grown from 2 to 3 backends, POST /rebalance?circle_id=0&operation=add;
#   recovery   an empty circle of 2 backends rebuilt from a full one,
#              POST /recovery?from_circle_id=0&to_circle_id=1.
#
# The data set is loaded once, through influx-proxy into a 1 x 2 circle of influxd; the two
# influxd are then compacted, stopped and kept as a snapshot, and every run starts from fresh
# copies of it (plus empty influxd with the database created), so both proxies migrate identical
# states. A run ends when every point is stored in influxd: the job's "<op> done" line in
# <mlog_dir>/<op>.log, the circle no longer migrating in /migrate/state and, for influx-proxy
# (which copies into its write-ahead queues), the queues drained. Afterwards every measurement is
# counted on every backend of the receiving circle: the owner (the proxy's /replica) must hold
# all of its points, and the circle exactly the points it had plus the points moved.
#
# Environment: BENCH_MIGRATE_POINTS (10,000,000; --quick 100,000), BENCH_MIGRATE_MEASUREMENTS
#   (100; --quick 10), BENCH_MIGRATE_CPUS (the jobs' `cpus`, concurrent measurement copies; the
#   Go proxy accepts at most nproc; default min(nproc, 2)), BENCH_MIGRATE_TIMEOUT (s per run,
#   3600), GO_MIGRATE_PROXY (the Go binary, ../shared/reference/bin/influx-proxy-2.4.4),
#   BENCH_MIGRATE_OPS ("rebalance recovery"), BENCH_MIGRATE_PROXIES ("ours go"; "base" runs the
#   influx-proxy binary BENCH_MIGRATE_BASE too, e.g. a build of main, for before/after figures),
#   BENCH_MIGRATE_PERF=1 (perf record -g of each proxy during its run, kept with BENCH_KEEP=1).
# shellcheck shell=bash

# mig_start_influxd SNAPSHOT|- [EXTRA_DATA_SETTINGS]: a fresh influxd, its data dir a copy of
# SNAPSHOT (an influxd dir: meta, data, wal) or empty (-); EXTRA_DATA_SETTINGS are lines added to
# its [data] section. Sets INFLUXD_PORT, INFLUXD_PID and INFLUXD_DIR.
mig_start_influxd() {
    local snap=$1 extra=${2:-} rpc
    alloc_port
    INFLUXD_PORT=$PORT
    alloc_port
    rpc=$PORT
    INFLUXD_DIR=$(mktemp -d "$WORK/mig-influxd-$INFLUXD_PORT.XXXX")
    MIG_DIRS+=("$INFLUXD_DIR")
    if [ "$snap" != - ]; then
        cp -a "$snap/meta" "$snap/data" "$snap/wal" "$INFLUXD_DIR/"
    fi
    fill_influxd_template "$INFLUXD_DIR" "$INFLUXD_PORT" "$rpc" warn >"$INFLUXD_DIR/influxd.conf"
    if [ -n "$extra" ]; then
        awk -v extra="$extra" '{print} /^\[data\]$/ {print extra}' "$INFLUXD_DIR/influxd.conf" \
            >"$INFLUXD_DIR/influxd.conf.new"
        mv "$INFLUXD_DIR/influxd.conf.new" "$INFLUXD_DIR/influxd.conf"
    fi
    influxd -config "$INFLUXD_DIR/influxd.conf" >"$INFLUXD_DIR/influxd.log" 2>&1 &
    INFLUXD_PID=$!
    PIDS+=("$INFLUXD_PID")
    wait_ping "http://127.0.0.1:$INFLUXD_PORT" "$INFLUXD_PID"
}

# mig_query PORT Q: runs an InfluxQL statement on influxd at PORT (db bench).
mig_query() {
    curl -s --max-time 600 -XPOST "http://127.0.0.1:$1/query?db=bench" --data-urlencode "q=$2"
}

# mig_counts PORT: "measurement count" lines, COUNT(f0) of every measurement of db bench.
mig_counts() {
    mig_query "$1" 'SELECT COUNT(f0) FROM /.*/' |
        grep -o '"name":"[^"]*","columns":\["time","count"\],"values":\[\["[^"]*",[0-9]*' |
        sed 's/^"name":"\([^"]*\)".*,\([0-9]*\)$/\1 \2/'
}

# mig_settle DIR...: until the files of the influxd in DIRs stop changing (cache snapshots and
# full compactions done) for 3 s, at most 300 s.
mig_settle() {
    local last="" now stable=0 i
    for i in $(seq 1 300); do
        now=$(for d in "$@"; do find "$d/data" "$d/wal" -type f -printf '%p %s\n'; done 2>/dev/null |
            sort | md5sum)
        if [ "$now" = "$last" ] && ! for d in "$@"; do find "$d/data" -name '*.tmp'; done | grep -q .; then
            stable=$((stable + 1))
            [ "$stable" -ge 3 ] && return 0
        else
            stable=0
        fi
        last=$now
        sleep 1
    done
    log "(e) influxd files still changing after 300 s; using them as they are"
}

# mig_stop PID: SIGTERM (influxd closes its files cleanly) and reap.
mig_stop() {
    kill -TERM "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

# mig_cpu_sum PID...: CPU seconds used so far by all of them.
mig_cpu_sum() {
    local pid total=0
    for pid in "$@"; do
        total=$(awk -v a="$total" -v b="$(cpu_seconds "$pid")" 'BEGIN {print a + b}')
    done
    echo "$total"
}

# mig_elapsed START: seconds since START (date +%s.%N).
mig_elapsed() {
    awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN {printf "%.3f", b - a}'
}

# mig_wait_done OP WHO: until the job finished and its points are in influxd, or the timeout.
# Sets MIG_COPY_S (until the job said done) and MIG_DONE (1, or 0 on timeout).
mig_wait_done() {
    local op=$1 who=$2 logf="$PROXY_DIR/log/$1.log" state
    MIG_DONE=0
    MIG_COPY_S=
    while :; do
        if [ -z "$MIG_COPY_S" ] && grep -q "$op done" "$logf" 2>/dev/null; then
            state=$(curl -s --max-time 10 "$PROXY_URL/migrate/state")
            if [ -n "$state" ] && ! grep -q '"is_migrating":true' <<<"$state"; then
                MIG_COPY_S=$(mig_elapsed "$MIG_T0")
            fi
        fi
        if [ -n "$MIG_COPY_S" ] && { [ "$who" = go ] || [ "$(queue_bytes)" = 0 ]; }; then
            MIG_DONE=1
            return
        fi
        kill -0 "$PROXY_PID" 2>/dev/null || {
            log "(e) the $who proxy died during $op"
            tail -20 "$PROXY_DIR/proxy.log" >&2
            return
        }
        if awk -v t="$(mig_elapsed "$MIG_T0")" -v m="$MIG_TIMEOUT" 'BEGIN {exit !(t > m)}'; then
            log "(e) $who $op: not done after $MIG_TIMEOUT s"
            return
        fi
        sleep 0.2
    done
}

# mig_verify OP CIRCLE PORTS...: counts every measurement on the backends of the receiving
# circle (backend-CIRCLE-<i> at PORTS[i-1]) and checks them against $MIG_EXPECT ("mm count
# source-index" lines). Sets MIG_MOVED (points the job had to move) and MIG_VERDICT.
mig_verify() {
    local op=$1 circle=$2 i mm owner
    shift 2
    local ports=("$@")
    : >"$WORK/mig-owner"
    : >"$WORK/mig-after"
    while read -r mm _ _; do
        owner=$(curl -s --max-time 10 "$PROXY_URL/replica?db=bench&meas=$mm" |
            grep -o "backend-$circle-[0-9]*" | head -1)
        echo "$mm ${owner##*-}" >>"$WORK/mig-owner"
    done <"$MIG_EXPECT"
    for i in "${!ports[@]}"; do
        mig_counts "${ports[$i]}" | sed "s/^/$((i + 1)) /" >>"$WORK/mig-after"
    done
    # Rebalance: the circle keeps what it had (no /clear) and gains the moved points; recovery:
    # the circle had nothing and gains every point.
    read -r MIG_MOVED MIG_VERDICT < <(awk -v op="$op" '
        FILENAME == ARGV[1] { expect[$1] = $2; src[$1] = $3; next }
        FILENAME == ARGV[2] { owner[$1] = $2; next }
        { held[$1 " " $2] = $3; stored += $3 }
        END {
            for (mm in expect) {
                total += expect[mm]
                if (op == "recovery" || owner[mm] != src[mm]) moved += expect[mm]
                if (owner[mm] == "") { noowner++; continue }
                if (held[owner[mm] " " mm] + 0 != expect[mm]) bad++
            }
            want = (op == "recovery" ? 0 : total) + moved
            if (noowner + bad == 0 && stored == want) verdict = "ok"
            else verdict = sprintf("MISMATCH:%d_measurements_incomplete,_%d_without_owner,_circle_holds_%d_of_%d", bad, noowner, stored, want)
            printf "%d %s\n", moved, verdict
        }' "$MIG_EXPECT" "$WORK/mig-owner" "$WORK/mig-after")
    MIG_VERDICT=${MIG_VERDICT//_/ }
}

# mig_run WHO OP: one migration from fresh copies of the snapshot; appends a table row.
mig_run() {
    local who=$1 op=$2 ports=() pids=() i cpu0 cpu1 rss secs answer label circle url perf_pid=
    local db_cpu0 db_cpu1
    MIG_DIRS=()
    for i in 1 2; do
        mig_start_influxd "${MIG_SNAP[$i]}"
        ports+=("$INFLUXD_PORT")
        pids+=("$INFLUXD_PID")
    done
    # The receiving backends start empty, with the database (the Go proxy 2.4.4 does not create
    # it; the upstream recipe pre-creates it, issue #29).
    local empties=1 circles=1 per=3 receiving_circle=1
    if [ "$op" = recovery ]; then
        empties=2 circles=2 per=2 receiving_circle=2
    fi
    for i in $(seq 1 "$empties"); do
        mig_start_influxd -
        mig_query "$INFLUXD_PORT" 'CREATE DATABASE bench' >/dev/null
        ports+=("$INFLUXD_PORT")
        pids+=("$INFLUXD_PID")
    done
    case $who in
        go) PROXY_UNDER_TEST=$GO_MIGRATE_PROXY ;;
        base) PROXY_UNDER_TEST=$BENCH_MIGRATE_BASE ;;
        *) PROXY_UNDER_TEST= ;;
    esac
    start_proxy "$circles" "$per" "${ports[@]}"
    PROXY_UNDER_TEST=
    if [ "$op" = rebalance ]; then
        url="$PROXY_URL/rebalance?circle_id=0&operation=add&cpus=$MIG_CPUS"
    else
        url="$PROXY_URL/recovery?from_circle_id=0&to_circle_id=1&cpus=$MIG_CPUS"
    fi
    case $who in
        go) label="Go proxy 2.4.4" ;;
        base) label="influx-proxy ($(basename "$BENCH_MIGRATE_BASE"))" ;;
        *) label=influx-proxy ;;
    esac
    log "(e) $label: $op"
    if [ "${BENCH_MIGRATE_PERF:-0}" = 1 ]; then
        perf record -g -o "$WORK/perf-$who-$op.data" -p "$PROXY_PID" >>"$WORK/perf.log" 2>&1 &
        perf_pid=$!
        PIDS+=("$perf_pid")
        sleep 1
    fi
    db_cpu0=$(mig_cpu_sum "${pids[@]}")
    cpu0=$(cpu_seconds "$PROXY_PID")
    MIG_T0=$(date +%s.%N)
    answer=$(curl -s --max-time 30 -XPOST "$url")
    if [ "$answer" != accepted ]; then
        out "| $label | $op | - | refused: \`$answer\` | | | | | | | |"
    else
        mig_wait_done "$op" "$who"
        secs=$(mig_elapsed "$MIG_T0")
        cpu1=$(cpu_seconds "$PROXY_PID")
        db_cpu1=$(mig_cpu_sum "${pids[@]}")
        rss=$(peak_rss_mb "$PROXY_PID")
        if [ -n "$perf_pid" ]; then
            kill -INT "$perf_pid" 2>/dev/null || true
            wait "$perf_pid" 2>/dev/null || true
            log "(e) profile: perf report -i $WORK/perf-$who-$op.data (BENCH_KEEP=1 keeps it)"
        fi
        circle=$receiving_circle
        if [ "$op" = recovery ]; then
            mig_verify "$op" "$circle" "${ports[2]}" "${ports[3]}"
        else
            mig_verify "$op" "$circle" "${ports[@]}"
        fi
        [ "$MIG_DONE" = 1 ] || MIG_VERDICT="TIMEOUT after $MIG_TIMEOUT s; $MIG_VERDICT"
        local pps cpu per_point drain db_cpu
        db_cpu=$(awk -v a="$db_cpu0" -v b="$db_cpu1" 'BEGIN {printf "%.1f", b - a}')
        pps=$(awk -v p="$MIG_MOVED" -v s="$secs" 'BEGIN {printf "%.0f", (s > 0 ? p / s : 0)}')
        cpu=$(awk -v a="$cpu0" -v b="$cpu1" 'BEGIN {printf "%.2f", b - a}')
        per_point=$(awk -v c="$cpu" -v p="$MIG_MOVED" 'BEGIN {printf "%.2f", (p > 0 ? c * 1e6 / p : 0)}')
        drain=$([ "$who" != go ] && [ -n "$MIG_COPY_S" ] &&
            awk -v a="$MIG_COPY_S" -v b="$secs" 'BEGIN {printf "%.1f", b - a}' || echo -)
        MIG_PPS[$who-$op]=$pps
        MIG_CPU[$who-$op]=$per_point
        MIG_RSS[$who-$op]=$rss
        out "| $label | $op | $(fmt_int "$MIG_MOVED") | $MIG_VERDICT | $(fmt_1 "$secs") | $drain |" \
            "$(fmt_int "$pps") | $cpu | $per_point | $rss | $db_cpu |"
        log "(e) $label $op: $MIG_MOVED points in $secs s ($pps points/s), CPU $cpu s, influxd CPU $db_cpu s, RSS $rss MB, $MIG_VERDICT"
        [ -f "$PROXY_DIR/log/$op.log" ] && cp "$PROXY_DIR/log/$op.log" "$WORK/mig-$who-$op.log"
    fi
    stop_pid "$PROXY_PID"
    for i in "${pids[@]}"; do stop_pid "$i"; done
    # The copies and the proxy's queues are large; the logs stay (BENCH_KEEP=1 keeps WORK).
    for i in "${MIG_DIRS[@]}"; do rm -rf "$i/data" "$i/wal" "$i/meta"; done
    rm -rf "$PROXY_DIR/data"
}

# ---------------------------------------------------------------------------------------------
# (e) migration: influx-proxy vs. the Go proxy 2.4.4, into real influxd
# ---------------------------------------------------------------------------------------------
section_e() {

    GO_MIGRATE_PROXY=${GO_MIGRATE_PROXY:-$ROOT/../shared/reference/bin/influx-proxy-2.4.4}
    if [ "$QUICK" = 1 ]; then
        MIG_POINTS=${BENCH_MIGRATE_POINTS:-100000}
        MIG_MEAS=${BENCH_MIGRATE_MEASUREMENTS:-10}
    else
        MIG_POINTS=${BENCH_MIGRATE_POINTS:-10000000}
        MIG_MEAS=${BENCH_MIGRATE_MEASUREMENTS:-100}
    fi
    local n
    n=$(nproc)
    MIG_CPUS=${BENCH_MIGRATE_CPUS:-$((n < 2 ? n : 2))}
    MIG_TIMEOUT=${BENCH_MIGRATE_TIMEOUT:-3600}
    declare -gA MIG_PPS MIG_CPU MIG_RSS
    declare -ga MIG_SNAP

    out "## (e) Migration into real influxd: influx-proxy vs. the Go proxy 2.4.4"
    out
    if [ "$HAVE_INFLUXD" = 0 ]; then
        out "influxd is not installed (Debian package \`influxdb\`); skipped."
        log "(e) skipped: no influxd"
        out
        return
    fi

    # The data set: through influx-proxy into 1 circle x 2 influxd, then compacted and kept.
    log "(e) loading $(fmt_int "$MIG_POINTS") points over $MIG_MEAS measurements"
    local load_ports=() load_pids=() load_dirs=() i json acked stored
    MIG_DIRS=()
    for i in 1 2; do
        mig_start_influxd - $'  cache-snapshot-write-cold-duration = "1s"\n  compact-full-write-cold-duration = "1s"'
        load_ports+=("$INFLUXD_PORT")
        load_pids+=("$INFLUXD_PID")
        load_dirs+=("$INFLUXD_DIR")
    done
    start_proxy 1 2 "${load_ports[@]}"
    json=$("$BENCH_BIN" write --url "$PROXY_URL" --db bench --create-db --concurrency "$CONCURRENCY" \
        --batch "$BATCH" --measurements "$MIG_MEAS" --points "$MIG_POINTS" --duration 7200s \
        --json 2>>"$WORK/load.log") || {
        tail -15 "$WORK/load.log" >&2
        out "The load failed; skipped."
        out
        return
    }
    acked=$(jget "$json" points)
    MIG_T0=$(date +%s.%N)
    while [ "$(queue_bytes)" != 0 ]; do
        if awk -v t="$(mig_elapsed "$MIG_T0")" -v m="$MIG_TIMEOUT" 'BEGIN {exit !(t > m)}'; then
            log "(e) the load's queues did not drain in $MIG_TIMEOUT s"
            break
        fi
        sleep 0.5
    done
    stop_pid "$PROXY_PID"
    rm -rf "$PROXY_DIR/data"
    : >"$WORK/mig-expect"
    for i in 0 1; do
        mig_counts "${load_ports[$i]}" | sed "s/$/ $((i + 1))/" >>"$WORK/mig-expect"
    done
    MIG_EXPECT=$WORK/mig-expect
    stored=$(awk '{s += $2} END {print s + 0}' "$MIG_EXPECT")
    mig_settle "${load_dirs[@]}"
    for i in 0 1; do
        mig_stop "${load_pids[$i]}"
        MIG_SNAP[$((i + 1))]=${load_dirs[$i]}
    done
    local tsm_mb
    tsm_mb=$(du -sm "${load_dirs[@]}" | awk '{s += $1} END {print s}')
    log "(e) data set: $acked points acknowledged, $stored stored, $tsm_mb MB on disk"

    out "Data set: \`influx-proxy-bench write --measurements $MIG_MEAS --points $MIG_POINTS\`" \
        "($(fmt_int "$stored") points stored of $(fmt_int "$acked") acknowledged; $MIG_MEAS measurements" \
        "x 100 tag sets, 2 tags, 4 fields; $tsm_mb MB of influxd files), loaded once through" \
        "influx-proxy into a circle of 2 influxd, compacted, and copied afresh for every run, so" \
        "both proxies start from identical states. **rebalance**: that circle grown to 3 backends" \
        "(the third empty), \`POST /rebalance?circle_id=0&operation=add&cpus=$MIG_CPUS\`; **recovery**:" \
        "a second circle of 2 empty influxd rebuilt from it," \
        "\`POST /recovery?from_circle_id=0&to_circle_id=1&cpus=$MIG_CPUS\`. The receiving influxd" \
        "have the database created beforehand (the Go proxy 2.4.4 does not create it). \"seconds\"" \
        "runs from the POST until every point is in influxd (job done, circle no longer migrating," \
        "and for influx-proxy, which copies into its write-ahead queues, the queues drained; \"drain s\"" \
        "is that last part). \"points moved\" and \"verified\" are counted in influxd afterwards:" \
        "every measurement complete on its owner (the proxy's \`/replica\`), and the receiving circle" \
        "holding exactly what it had plus the points moved. CPU = the proxy's user+system time during" \
        "the run; peak RSS = its VmHWM; \"influxd CPU s\" = the user+system time of all influxd of the run" \
        "(reading the sources, writing the destinations), which share the same $(nproc) CPUs."
    out
    out "| proxy | operation | points moved | verified in influxd | seconds | drain s | points/s | proxy CPU s | CPU µs/point | peak RSS MB | influxd CPU s |"
    out "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|"
    local op who
    for op in ${BENCH_MIGRATE_OPS:-rebalance recovery}; do
        for who in ${BENCH_MIGRATE_PROXIES:-ours go}; do
            if [ "$who" = go ] && [ ! -x "$GO_MIGRATE_PROXY" ]; then
                out "| Go proxy 2.4.4 | $op | not found at \`$GO_MIGRATE_PROXY\` (set GO_MIGRATE_PROXY) | | | | | | | | |"
                continue
            fi
            if [ "$who" = base ] && [ ! -x "${BENCH_MIGRATE_BASE:-}" ]; then
                out "| influx-proxy (base) | $op | BENCH_MIGRATE_BASE (another influx-proxy binary) not set | | | | | | | | |"
                continue
            fi
            mig_run "$who" "$op"
        done
    done
    out
    ratio() { awk -v a="$1" -v b="$2" -v f="${3:-%.1f}" 'BEGIN {printf f, (b > 0 ? a / b : 0)}'; }
    for op in ${BENCH_MIGRATE_OPS:-rebalance recovery}; do
        if [ -n "${MIG_PPS[ours-$op]:-}" ] && [ -n "${MIG_PPS[go-$op]:-}" ]; then
            out "- $op, influx-proxy / Go proxy: points/s x$(ratio "${MIG_PPS[ours-$op]}" "${MIG_PPS[go-$op]}")," \
                "CPU per point x$(ratio "${MIG_CPU[ours-$op]}" "${MIG_CPU[go-$op]}" %.2f)," \
                "peak RSS x$(ratio "${MIG_RSS[ours-$op]}" "${MIG_RSS[go-$op]}" %.2f)."
        fi
    done
    out
    for i in 1 2; do rm -rf "${MIG_SNAP[$i]:?}/data" "${MIG_SNAP[$i]}/wal" "${MIG_SNAP[$i]}/meta"; done
}
