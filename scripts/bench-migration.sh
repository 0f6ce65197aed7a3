#!/usr/bin/env bash
# Migration throughput: copies one large measurement from circle 0 to a
# wiped circle 1 with /recovery and reports points/s (and MB/s of line
# protocol). Two local influxd, one proxy, all on loopback.
#
# Usage: scripts/bench-migration.sh [points]   (default 1000000)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
POINTS="${1:-1000000}"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
BIN="$TARGET_DIR/release/influx-proxy"
WORK="$(mktemp -d /tmp/bench-migration.XXXXXX)"
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

[ -x "$BIN" ] || (cd "$ROOT" && cargo build --release --bin influx-proxy)

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

start_influxd() {
    local name="$1" port="$2" rpc="$3" dir="$WORK/$1"
    mkdir -p "$dir"
    cat > "$dir/influxd.conf" <<EOF
reporting-disabled = true
bind-address = "127.0.0.1:$rpc"
[meta]
  dir = "$dir/meta"
[data]
  dir = "$dir/data"
  wal-dir = "$dir/wal"
  query-log-enabled = false
  cache-max-memory-size = "2g"
[http]
  bind-address = "127.0.0.1:$port"
  log-enabled = false
  max-body-size = 0
[monitor]
  store-enabled = false
[continuous_queries]
  enabled = false
EOF
    influxd -config "$dir/influxd.conf" > "$dir/log" 2>&1 &
    PIDS+=($!)
    for _ in $(seq 100); do
        curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/ping" 2>/dev/null | grep -q 204 && return
        sleep 0.1
    done
    echo "influxd $name did not start" >&2; exit 1
}

A=$(free_port); B=$(free_port); P=$(free_port)
start_influxd a "$A" "$(free_port)"
start_influxd b "$B" "$(free_port)"
cat > "$WORK/proxy.json" <<EOF
{"circles":[{"name":"c0","backends":[{"name":"a","url":"http://127.0.0.1:$A"}]},
            {"name":"c1","backends":[{"name":"b","url":"http://127.0.0.1:$B"}]}],
 "listen_addr":"127.0.0.1:$P","data_dir":"$WORK/proxy-data","mlog_dir":"$WORK/proxy-log"}
EOF
"$BIN" -config "$WORK/proxy.json" > "$WORK/proxy.out" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do
    curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$P/ping" 2>/dev/null | grep -q 204 && break
    sleep 0.1
done

# Load circle 0 directly (the "surviving" copy) with one big measurement.
curl -s -XPOST "http://127.0.0.1:$A/query" --data-urlencode "q=CREATE DATABASE bench" > /dev/null
python3 - "$A" "$POINTS" <<'EOF'
import sys, urllib.request
port, total = sys.argv[1], int(sys.argv[2])
batch = 10000
t0 = 1_600_000_000_000_000_000
for start in range(0, total, batch):
    lines = "\n".join(
        f"big,host=h{i % 100},region=r{i % 7} usage={i * 0.25},count={i}i,state=\"ok\",up=true {t0 + i * 1_000_000}"
        for i in range(start, min(start + batch, total)))
    req = urllib.request.Request(f"http://127.0.0.1:{port}/write?db=bench", data=lines.encode(), method="POST")
    urllib.request.urlopen(req).read()
EOF
SIZE=$(du -sb "$WORK/a/data" | cut -f1)
count() {
    curl -s "http://127.0.0.1:$1/query?db=bench" --data-urlencode 'q=SELECT count(count) FROM big' \
        | python3 -c 'import json,sys; r=json.load(sys.stdin)["results"][0]; print(r["series"][0]["values"][0][1] if "series" in r else 0)'
}
echo "loaded $(count "$A") points into circle 0 (TSM on disk: $((SIZE / 1048576)) MiB)"

start=$(date +%s.%N)
curl -s -XPOST "http://127.0.0.1:$P/recovery?from_circle_id=0&to_circle_id=1&cpus=2" > /dev/null
while [ "$(count "$B")" != "$POINTS" ]; do sleep 0.5; done
end=$(date +%s.%N)
python3 - "$start" "$end" "$POINTS" <<'EOF'
import sys
s, e, n = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
secs = e - s
lp_bytes = n * 95  # ~95 bytes of line protocol per point of this shape
print(f"recovery copied {n} points in {secs:.1f} s: {n / secs:,.0f} points/s, "
      f"{lp_bytes / secs / 1e6:.1f} MB/s of line protocol ({lp_bytes / secs * 3600 / 1e9:.1f} GB/hour)")
EOF
grep "done" "$WORK/proxy-log/recovery.log" | tail -1 || true
