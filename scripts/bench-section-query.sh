#!/usr/bin/env bash
# Section (f) of scripts/bench.sh, sourced by it: the latency a query gains through the proxy.
#
# One data set (`influx-proxy-bench write --shape telegraf`) is written twice at the same time:
# through influx-proxy into 2 circles x 2 influxd, and straight into one influxd. Each query is
# first asked once of the single influxd, of influx-proxy and of the Go proxy 2.5.12 (same
# proxy.json, same backends) and the answers compared; then `wrk` times it over one keep-alive
# connection against each of the three, one after the other.
#
# Environment: BENCH_QUERY_SECONDS (wrk run per query and target, 10; --quick: 1),
# BENCH_QUERY_HOSTS (hosts of the telegraf shape, 250; --quick: 50), BENCH_QUERY_MINUTES (one
# point per series and minute, 360; --quick: 30; made even), GO_PROXY (the Go binary).
# Needs influxd and wrk (Debian packages influxdb, wrk); python3 for comparing answers beyond
# their bytes. Skipped with a note when influxd or wrk is missing.
# shellcheck shell=bash

# qf_urlencode TEXT: TEXT percent-encoded for a query string (bench-lib sets LC_ALL=C: bytes).
qf_urlencode() {
    local s=$1 i c out=""
    for ((i = 0; i < ${#s}; i++)); do
        c=${s:i:1}
        case $c in
            [a-zA-Z0-9.~_-]) out+=$c ;;
            *)
                printf -v c '%%%02X' "'$c"
                out+=$c
                ;;
        esac
    done
    printf '%s' "$out"
}

# qf_count PORT: points in database bench of the influxd at PORT (COUNT(usage) over all
# measurements; the telegraf shape has fields usage and count).
qf_count() {
    curl -s --max-time 120 -G "http://127.0.0.1:$1/query" --data-urlencode db=bench \
        --data-urlencode 'q=SELECT COUNT(usage) FROM /.*/' |
        grep -o ',[0-9]*\]\]' | tr -dc '0-9\n' | awk '{s += $1} END {print s + 0}' || true
}

# qf_measurements PORT: the measurements of database bench on the influxd at PORT, one a line.
qf_measurements() {
    curl -s --max-time 30 -G "http://127.0.0.1:$1/query" --data-urlencode db=bench \
        --data-urlencode 'q=SHOW MEASUREMENTS' |
        sed 's/.*"values":\[//' | grep -o '"[^"]*"' | tr -d '"' || true
}

# qf_ask BASE PATH FILE: GET BASE/PATH into FILE; prints the HTTP status (000: no answer).
qf_ask() {
    curl -s --max-time 120 -o "$3" -w '%{http_code}' "$1$2" 2>/dev/null || true
}

# qf_verdict DIRECT_FILE OTHER_FILE: how the other answer compares with the direct one.
qf_verdict() {
    if cmp -s "$1" "$2"; then
        echo "identical"
    elif command -v python3 >/dev/null; then
        python3 "$WORK/qf-compare.py" "$1" "$2"
    else
        echo "DIFFERENT bytes (no python3 to compare further)"
    fi
}

# qf_refusal FILE: the error text of an answer, or nothing when it has none.
qf_refusal() {
    grep -o '"error":"[^"]*"' "$1" | head -1 | sed 's/^"error":"//; s/"$//' || true
}

# qf_time URL: wrk over one connection for QF_SECONDS; sets QF_P50, QF_P99 (ms), QF_RPS, QF_N
# and QF_ERR (requests that failed or were not 2xx/3xx); QF_OK=0 when wrk gave no result.
qf_time() {
    local res
    res=$(wrk -t1 -c1 -d"${QF_SECONDS}s" --timeout 60s --latency -s "$WORK/qf-report.lua" "$1" \
        2>>"$WORK/wrk.log" | grep '^QF_RESULT ' || true)
    if [ -z "$res" ]; then
        QF_OK=0
        return
    fi
    QF_OK=1
    read -r _ QF_N QF_DUR QF_P50 QF_P99 QF_ERR <<<"$res"
    QF_RPS=$(awk -v n="$QF_N" -v d="$QF_DUR" 'BEGIN {printf "%.1f", (d > 0 ? n * 1e6 / d : 0)}')
    QF_P50=$(awk -v x="$QF_P50" 'BEGIN {printf "%.2f", x / 1000}')
    QF_P99=$(awk -v x="$QF_P99" 'BEGIN {printf "%.2f", x / 1000}')
}

# qf_cells DIRECT_P50 DIRECT_P99: "p50 / p99 | req/s | added p50 / p99" of the last qf_time.
qf_cells() {
    printf '%s / %s | %s%s | %s / %s' "$QF_P50" "$QF_P99" "$QF_RPS" \
        "$([ "$QF_ERR" = 0 ] || echo " ($QF_ERR errors)")" \
        "$(awk -v a="$QF_P50" -v b="$1" 'BEGIN {printf "%.2f", a - b}')" \
        "$(awk -v a="$QF_P99" -v b="$2" 'BEGIN {printf "%.2f", a - b}')"
}

section_f() {
    local secs hosts minutes series points go_proxy
    out "## (f) Query latency: fan-out SHOW and merged SELECT, direct vs. influx-proxy vs. the Go proxy"
    out
    if [ "$HAVE_INFLUXD" = 0 ]; then
        out "influxd is not installed (Debian package \`influxdb\`); skipped."
        out
        log "(f) skipped: no influxd"
        return
    fi
    if ! command -v wrk >/dev/null; then
        out "wrk is not installed (Debian package \`wrk\`); skipped."
        out
        log "(f) skipped: no wrk"
        return
    fi
    if [ "$QUICK" = 1 ]; then
        secs=${BENCH_QUERY_SECONDS:-1}
        hosts=${BENCH_QUERY_HOSTS:-50}
        minutes=${BENCH_QUERY_MINUTES:-30}
    else
        secs=${BENCH_QUERY_SECONDS:-10}
        hosts=${BENCH_QUERY_HOSTS:-250}
        minutes=${BENCH_QUERY_MINUTES:-360}
    fi
    # Two load workers, each writing every series at every other minute.
    minutes=$(((minutes + 1) / 2 * 2))
    QF_SECONDS=$secs
    series=$((20 * hosts))
    points=$((series * minutes))
    go_proxy=${GO_PROXY:-$ROOT/../shared/reference/bin/influx-proxy-2.5.12}

    cat >"$WORK/qf-report.lua" <<'EOF'
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("QF_RESULT %d %d %.0f %.0f %d\n", summary.requests, summary.duration,
    latency:percentile(50.0), latency:percentile(99.0),
    e.connect + e.read + e.write + e.status + e.timeout))
end
EOF
    cat >"$WORK/qf-compare.py" <<'EOF'
import json, sys

def norm(v):
    if isinstance(v, float) and v.is_integer():
        return int(v)
    if isinstance(v, list):
        return [norm(x) for x in v]
    if isinstance(v, dict):
        return {k: norm(x) for k, x in v.items()}
    return v

def key(v):
    return json.dumps(v, sort_keys=True)

def sort_all(v):
    for r in v.get("results", []):
        for s in r.get("series", []):
            s.get("values", []).sort(key=key)
        r.get("series", []).sort(key=lambda s: key([s.get("name"), s.get("tags")]))
    return v

def shape(v):
    series = [s for r in v.get("results", []) for s in r.get("series", [])]
    rows = sum(len(s.get("values", [])) for s in series)
    errors = [r["error"] for r in v.get("results", []) if "error" in r]
    if "error" in v:
        errors.append(v["error"])
    text = "%d series, %d rows" % (len(series), rows)
    return text + ("; error: " + errors[0] if errors else "")

try:
    a = norm(json.load(open(sys.argv[1])))
    b = norm(json.load(open(sys.argv[2])))
except ValueError as e:
    print("DIFFERENT (not JSON: %s)" % e)
    sys.exit()
def floats(x, y, out):
    # Collects (direct, other) float pairs where x and y differ only in float values; False
    # when they differ otherwise.
    if isinstance(x, float) or isinstance(y, float):
        if isinstance(x, (int, float)) and isinstance(y, (int, float)):
            if x != y:
                out.append((x, y))
            return True
        return False
    if isinstance(x, list) and isinstance(y, list):
        return len(x) == len(y) and all(floats(p, q, out) for p, q in zip(x, y))
    if isinstance(x, dict) and isinstance(y, dict):
        return x.keys() == y.keys() and all(floats(x[k], y[k], out) for k in x)
    return x == y

def count_floats(v):
    if isinstance(v, float):
        return 1
    if isinstance(v, list):
        return sum(count_floats(x) for x in v)
    if isinstance(v, dict):
        return sum(count_floats(x) for x in v.values())
    return 0

if a == b:
    print("same")
elif sort_all(a) == sort_all(b):
    print("same after sorting")
else:
    pairs = []
    if floats(a, b, pairs) and all(abs(p - q) <= 1e-12 * max(abs(p), abs(q)) for p, q in pairs):
        print("DIFFERENT in the last digits: %d of %d floats (e.g. %r, direct %r)"
              % (len(pairs), count_floats(a), pairs[0][1], pairs[0][0]))
    else:
        print("DIFFERENT: %s (direct: %s)" % (shape(b), shape(a)))
EOF

    log "(f) query latency: 2x2 influxd behind the proxies vs. one influxd, $(fmt_int "$points") points"
    local ports=() pids=() i single_port single_pid
    for i in 1 2 3 4; do
        start_influxd
        ports+=("$INFLUXD_PORT")
        pids+=("$INFLUXD_PID")
    done
    start_influxd
    single_port=$INFLUXD_PORT
    single_pid=$INFLUXD_PID
    local direct="http://127.0.0.1:$single_port"
    start_proxy 2 2 "${ports[@]}"
    local ours_pid=$PROXY_PID ours_url=$PROXY_URL

    # Both loads start in the same minute (the load tool's base timestamp, precision m), so
    # both sides hold the same points.
    local sec
    sec=$((10#$(date +%S)))
    if [ "$sec" -ge 50 ]; then
        sleep $((61 - sec))
    fi
    local load=(write --db bench --shape telegraf --tag-cardinality "$hosts" --concurrency 2
        --batch "$series" --points "$points" --duration 600s --precision m --create-db --json)
    local t_load0 t_load1 lp_direct lp_proxy drain
    t_load0=$(date +%s.%N)
    "$BENCH_BIN" "${load[@]}" --url "$direct" >"$WORK/qf-load-direct.json" 2>>"$WORK/load.log" &
    lp_direct=$!
    "$BENCH_BIN" "${load[@]}" --url "$ours_url" >"$WORK/qf-load-proxy.json" 2>>"$WORK/load.log" &
    lp_proxy=$!
    PIDS+=("$lp_direct" "$lp_proxy")
    if ! wait "$lp_direct" || ! wait "$lp_proxy"; then
        echo "bench.sh: (f) loading the query data set failed:" >&2
        tail -15 "$WORK/load.log" >&2
        return 1
    fi
    drain=$(wait_drain)
    t_load1=$(date +%s.%N)
    local stored_direct stored_2x2=0 port
    stored_direct=$(qf_count "$single_port")
    for port in "${ports[@]}"; do
        stored_2x2=$((stored_2x2 + $(qf_count "$port")))
    done

    # Where the measurements live: two from each backend of a circle make the FROM list (both
    # circles place them alike, hash_key idx).
    local on1 on2 from_list=() regex
    mapfile -t on1 < <(qf_measurements "${ports[0]}" | sort)
    mapfile -t on2 < <(qf_measurements "${ports[1]}" | sort)
    from_list=("${on1[@]:0:2}" "${on2[@]:0:2}")
    if [ "${#from_list[@]}" -lt 4 ]; then
        from_list=(cpu mem disk diskio)
    fi
    regex=$(
        IFS='|'
        echo "${from_list[*]}"
    )
    local from
    from=$(
        IFS=','
        echo "${from_list[*]}" | sed 's/,/, /g'
    )

    # The time range of the data, from the data: its first minute (epoch s) on the single
    # influxd, checked against the proxy's.
    local t0 t0_proxy range span
    t0=$(curl -s -G "$direct/query" --data-urlencode db=bench --data-urlencode epoch=s \
        --data-urlencode 'q=SELECT first(count) FROM cpu' | sed -n 's/.*"values":\[\[\([0-9]*\),.*/\1/p' || true)
    t0_proxy=$(curl -s -G "$ours_url/query" --data-urlencode db=bench --data-urlencode epoch=s \
        --data-urlencode 'q=SELECT first(count) FROM cpu' | sed -n 's/.*"values":\[\[\([0-9]*\),.*/\1/p' || true)
    t0=${t0:-$(($(date +%s) / 60 * 60))}
    # What a dashboard asks: the last hour (here the first hour of the data), by minute.
    span=$((minutes < 60 ? minutes : 60))
    range="time >= '$(date -u -d "@$t0" +%Y-%m-%dT%H:%M:%SZ)' AND time < '$(date -u -d "@$((t0 + span * 60))" +%Y-%m-%dT%H:%M:%SZ)'"

    local go_ok=0 go_pid="" go_url="" go_note=""
    if [ -x "$go_proxy" ]; then
        PROXY_UNDER_TEST=$go_proxy
        if start_proxy 2 2 "${ports[@]}"; then
            go_ok=1
            go_pid=$PROXY_PID
            go_url=$PROXY_URL
        else
            go_note="the Go proxy did not start"
        fi
        PROXY_UNDER_TEST=
    else
        go_note="the Go proxy is not at \`$go_proxy\` (set GO_PROXY)"
    fi

    out "Data: \`influx-proxy-bench write --shape telegraf --tag-cardinality $hosts --precision m\`:" \
        "20 measurements x $hosts hosts ($(fmt_int "$series") series), one point per series and minute" \
        "for $minutes minutes ($(fmt_int "$points") points; the load tool starts its timestamps at the" \
        "current minute, so the data lies ahead of now and every SELECT names its range, \`<range>\`" \
        "below: the first $span minutes, $span points per series, as a dashboard's last hour" \
        "by minute). Written at the same time through influx-proxy into 2 circles x 2" \
        "influxd and straight into one influxd (2 connections each, one request per minute of data):" \
        "$(awk -v a="$t_load0" -v b="$t_load1" 'BEGIN {printf "%.1f", b - a}') s until both were stored" \
        "(the proxy's queues were empty $drain s after both load tools had finished)." \
        "Stored: $(fmt_int "$stored_direct") points in the single influxd, $(fmt_int "$stored_2x2") over" \
        "the 4 behind the proxy ($([ "$stored_direct" = "$points" ] && [ "$stored_2x2" = $((points * 2)) ] &&
            echo "ok, 2 copies" || echo "MISMATCH: expected $points and $((points * 2))"))." \
        "$([ "$t0_proxy" = "$t0" ] || echo "WARNING: the first timestamp differs (direct $t0, proxy ${t0_proxy:-none}): the loads started in different minutes, SELECT answers cannot match.")"
    out
    out "Placement (the same in both circles): backend-x-1 holds $(echo "${on1[*]}" | sed 's/ /, /g')" \
        "(${#on1[@]}); backend-x-2 holds $(echo "${on2[*]}" | sed 's/ /, /g') (${#on2[@]})." \
        "The multi-measurement SELECTs read \`$from\`: two measurements from each backend, so influx-proxy" \
        "splits the FROM clause over both backends of a circle and merges the answers."
    out
    out "Each query: \`GET /query?db=bench&q=...\` (no \`epoch\`, not chunked), asked once of each target" \
        "and compared with the single influxd's answer (\"identical\": same bytes; \"same\": same JSON" \
        "values; \"same after sorting\": same series and rows in another order), then timed with" \
        "\`wrk -t1 -c1 -d${secs}s --latency\`: one connection, one request at a time, ${secs} s per query" \
        "and target, direct, influx-proxy and the Go proxy one after the other. p50/p99 in ms from wrk's" \
        "histogram; \"req/s\" is requests per second over that one connection; \"added\" = through the" \
        "proxy minus direct. Both proxies run side by side in front of the same 4 influxd (the one not" \
        "being timed is idle). Load average when the timing started: $(cut -d' ' -f1-3 /proc/loadavg)."
    out
    out "| query | how influx-proxy runs it | answer: influx-proxy / Go | direct p50 / p99 ms | direct req/s | influx-proxy p50 / p99 ms | req/s | added p50 / p99 ms | Go 2.5.12 p50 / p99 ms | req/s | added p50 / p99 ms |"
    out "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"

    local queries=(
        "fan-out to both backends of one circle, merged|SHOW MEASUREMENTS"
        "fan-out to both backends of one circle, merged|SHOW TAG VALUES WITH KEY = \"host\""
        "fan-out to both backends of one circle, merged|SHOW SERIES"
        "fan-out to both backends of one circle, counts merged|SHOW MEASUREMENT EXACT CARDINALITY"
        "one measurement: relayed from its owner (baseline)|SELECT mean(usage) FROM cpu WHERE @RANGE@ GROUP BY time(1m)"
        "4 measurements on 2 backends: FROM split, answers merged|SELECT mean(usage) FROM $from WHERE @RANGE@ GROUP BY time(1m)"
        "regex: resolved (SHOW MEASUREMENTS on both backends), split, merged|SELECT mean(usage) FROM /^($regex)\$/ WHERE @RANGE@ GROUP BY time(1m)"
        "4 measurements x $hosts hosts on 2 backends: split, merged|SELECT mean(usage) FROM $from WHERE @RANGE@ GROUP BY time(1m), host"
    )
    mkdir -p "$WORK/qf-answers"
    local entry how template q shown path n=0 st_d st_o st_g v_o v_g cell_o cell_g
    local same_o=0 same_g=0 refused_g=0 wrong_g=0
    local d_p50 d_p99 d_rps err
    for entry in "${queries[@]}"; do
        n=$((n + 1))
        how=${entry%%|*}
        template=${entry#*|}
        q=${template//@RANGE@/$range}
        shown=${template//@RANGE@/<range>}
        shown=${shown//|/\\|}
        path="/query?db=bench&q=$(qf_urlencode "$q")"
        log "(f) $q"
        st_d=$(qf_ask "$direct" "$path" "$WORK/qf-answers/$n-direct.json")
        st_o=$(qf_ask "$ours_url" "$path" "$WORK/qf-answers/$n-ours.json")
        if [ "$st_d" != 200 ] || [ -n "$(qf_refusal "$WORK/qf-answers/$n-direct.json")" ]; then
            out "| \`$shown\` | $how | influxd answered HTTP $st_d: $(head -c 200 "$WORK/qf-answers/$n-direct.json") | | | | | | | | |"
            continue
        fi
        if [ "$st_o" = 200 ]; then
            v_o=$(qf_verdict "$WORK/qf-answers/$n-direct.json" "$WORK/qf-answers/$n-ours.json")
        else
            v_o="HTTP $st_o: $(qf_refusal "$WORK/qf-answers/$n-ours.json")"
        fi
        case $v_o in
            identical | same*) same_o=$((same_o + 1)) ;;
            *) log "(f) influx-proxy answers differently: $q: $v_o" ;;
        esac
        cell_g=""
        if [ "$go_ok" = 1 ]; then
            st_g=$(qf_ask "$go_url" "$path" "$WORK/qf-answers/$n-go.json")
            err=$(qf_refusal "$WORK/qf-answers/$n-go.json")
            if [ "$st_g" != 200 ] || [ -n "$err" ]; then
                v_g="unsupported (HTTP $st_g: ${err:-$(head -c 120 "$WORK/qf-answers/$n-go.json")})"
                cell_g="unsupported | | "
            else
                v_g=$(qf_verdict "$WORK/qf-answers/$n-direct.json" "$WORK/qf-answers/$n-go.json")
            fi
            case $v_g in
                identical | same*) same_g=$((same_g + 1)) ;;
                unsupported*) refused_g=$((refused_g + 1)) ;;
                *) wrong_g=$((wrong_g + 1)) ;;
            esac
        else
            v_g="not run: $go_note"
            cell_g="- | - | - "
        fi

        qf_time "$direct$path"
        if [ "$QF_OK" = 0 ]; then
            out "| \`$shown\` | $how | $v_o / $v_g | wrk failed (see wrk.log) | | | | | | | |"
            continue
        fi
        d_p50=$QF_P50 d_p99=$QF_P99 d_rps=$QF_RPS
        [ "$QF_ERR" = 0 ] || d_rps="$d_rps ($QF_ERR errors)"
        cell_o="wrk failed | | "
        qf_time "$ours_url$path"
        [ "$QF_OK" = 1 ] && cell_o=$(qf_cells "$d_p50" "$d_p99")
        if [ -z "$cell_g" ]; then
            cell_g="wrk failed | | "
            qf_time "$go_url$path"
            [ "$QF_OK" = 1 ] && cell_g=$(qf_cells "$d_p50" "$d_p99")
        fi
        out "| \`$shown\` | $how | ${v_o//|/\\|} / ${v_g//|/\\|} | $d_p50 / $d_p99 | $d_rps | $cell_o | $cell_g |"
    done
    out
    out "Answers as the single influxd gave them: influx-proxy $same_o of $n queries$([ "$go_ok" = 1 ] &&
        echo "; the Go proxy $same_g, refused $refused_g, answered $wrong_g differently (its figures" \
            "for those time a partial answer, the measurements of the one backend its shard key of the" \
            "first FROM token, e.g. \`cpu,\`, hashes to, not the query)")." \
        "\"DIFFERENT in the last digits\": the same series and rows, some floats a rounding step off."
    out
    out "Load average at the end of the section: $(cut -d' ' -f1-3 /proc/loadavg)."
    out

    [ -n "$go_pid" ] && stop_pid "$go_pid"
    stop_pid "$ours_pid"
    stop_pid "$single_pid"
    for i in "${pids[@]}"; do stop_pid "$i"; done
}
