#!/usr/bin/env bash
# One command that sets up and runs influx-proxy in front of four local InfluxDB 1.x servers
# (two circles x two backends), the layout of packaging/proxy.json:
#
#   circle-1: influxdb-1-1 127.0.0.1:8086, influxdb-1-2 127.0.0.1:8087
#   circle-2: influxdb-2-1 127.0.0.1:8088, influxdb-2-2 127.0.0.1:8089
#   proxy:    :7076
#
# Usage: scripts/quickstart.sh          set up, build, then exec the proxy in the foreground
#        scripts/quickstart.sh stop     stop the InfluxDB servers a previous run started
#
# As root on Debian it installs missing packages (influxdb, influxdb-client, pip, and the
# RocksDB build deps). Each influxd gets its own config and data under
# ${QUICKSTART_DIR:-/tmp/influx-proxy-quickstart}/<name>/, RPC ports 18086-18089, and UDP,
# Graphite, collectd, OpenTSDB and the _internal monitor store disabled. A port that already
# answers InfluxDB's /ping is reused, so running the script twice works. The influxd started
# here run in their own session and keep running after the proxy exits (stop them with
# `scripts/quickstart.sh stop`); if the script fails before the proxy starts, it stops them.
set -euo pipefail

QUICKSTART_DIR="${QUICKSTART_DIR:-/tmp/influx-proxy-quickstart}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/influxd-template.sh
. "$ROOT/scripts/influxd-template.sh"
CONFIG="packaging/proxy.json"
NAMES=(influxdb-1-1 influxdb-1-2 influxdb-2-1 influxdb-2-2)
HTTP_PORTS=(8086 8087 8088 8089)
RPC_PORTS=(18086 18087 18088 18089)
PACKAGES=(influxdb influxdb-client libclang-dev clang build-essential pkg-config python3-pip)
STARTED_PIDS=()

say() { printf '==> %s\n' "$*"; }
die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

# Prints the HTTP status of GET http://127.0.0.1:<port><path>, or nothing when no HTTP answer
# comes within 2 s. Plain bash /dev/tcp, so curl is not required.
http_status() {
    local port="$1" path="$2"
    # shellcheck disable=SC2016 # $1/$2 expand in the inner bash, on purpose.
    timeout 2 bash -c '
        exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
        printf "GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n" "$2" >&3
        IFS=" " read -r _ status _ <&3 && printf "%s" "$status"
    ' _ "$port" "$path" 2>/dev/null || true
}

# True when something accepts TCP connections on 127.0.0.1:<port>.
port_open() {
    # shellcheck disable=SC2016 # $1 expands in the inner bash, on purpose.
    timeout 2 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1"' _ "$1" 2>/dev/null
}

# True when <pid> is an influxd running with <config>.
is_our_influxd() {
    local pid="$1" config="$2"
    [[ -r "/proc/$pid/cmdline" ]] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "influxd -config $config"
}

# True while <pid> exists and is not a zombie.
alive() {
    local stat
    stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
    [[ "${stat##*) }" != Z* ]]
}

# SIGTERM <pid>, wait up to 10 s, then SIGKILL.
stop_pid() {
    local pid="$1" i
    kill -TERM "$pid" 2>/dev/null || return 0
    for ((i = 0; i < 100; i++)); do
        alive "$pid" || return 0
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
}

stop_all() {
    local i dir pid stopped=0
    for i in "${!NAMES[@]}"; do
        dir="$QUICKSTART_DIR/${NAMES[$i]}"
        [[ -f "$dir/influxd.pid" ]] || continue
        pid="$(cat "$dir/influxd.pid")"
        if is_our_influxd "$pid" "$dir/influxd.conf"; then
            say "stopping ${NAMES[$i]} (pid $pid, port ${HTTP_PORTS[$i]})"
            stop_pid "$pid"
            stopped=$((stopped + 1))
        fi
        rm -f "$dir/influxd.pid"
    done
    say "stopped $stopped influxd; data stays in $QUICKSTART_DIR"
}

# Stops the influxd this run started when the script fails or is interrupted before the proxy
# takes over (after `exec` no trap runs and they keep serving the proxy).
cleanup() {
    local status=$? pid
    if ((${#STARTED_PIDS[@]} > 0)); then
        say "stopping the influxd started by this run"
        for pid in "${STARTED_PIDS[@]}"; do
            stop_pid "$pid"
        done
    fi
    exit "$status"
}

install_missing_packages() {
    local missing=() pkg
    if ! command -v dpkg-query >/dev/null; then
        command -v influxd >/dev/null || die "influxd not found; install InfluxDB 1.x"
        return
    fi
    for pkg in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
    done
    if ((${#missing[@]} == 0)); then
        return
    fi
    if [[ "$(id -u)" -ne 0 ]]; then
        say "missing packages: ${missing[*]} (run as root, or: sudo apt-get install -y ${missing[*]})"
        command -v influxd >/dev/null || die "influxd not found: apt-get install influxdb"
        return
    fi
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    # apt-get has been seen to fail once mid-run; repair and retry once.
    apt-get install -y -q "${missing[@]}" >/dev/null ||
        { dpkg --configure -a && apt-get install -y -q "${missing[@]}" >/dev/null; }
}

write_influxd_config() {
    local dir="$1" port="$2" rpc_port="$3"
    fill_influxd_template "$dir" "$port" "$rpc_port" info >"$dir/influxd.conf"
}

start_influxd() {
    local name="$1" port="$2" rpc_port="$3" dir pid i
    dir="$QUICKSTART_DIR/$name"
    if [[ "$(http_status "$port" /ping)" == 204 ]]; then
        say "$name: reusing the InfluxDB already answering on 127.0.0.1:$port"
        return
    fi
    if port_open "$port"; then
        local hint=""
        [[ "$port" != 8088 ]] || hint=" (a stock influxd uses 127.0.0.1:8088 for RPC: stop it or move its bind-address)"
        die "$name: port $port is taken by something that is not InfluxDB$hint"
    fi
    if port_open "$rpc_port"; then
        die "$name: RPC port $rpc_port is already taken"
    fi
    mkdir -p "$dir"
    write_influxd_config "$dir" "$port" "$rpc_port"
    # setsid: own session, so Ctrl-C on the proxy does not stop the servers behind it. The
    # subshell exits at once, so init (not the proxy this script becomes) reaps them.
    (setsid influxd -config "$dir/influxd.conf" </dev/null >>"$dir/influxd.log" 2>&1 &
        echo "$!" >"$dir/influxd.pid")
    pid="$(cat "$dir/influxd.pid")"
    STARTED_PIDS+=("$pid")
    for ((i = 0; i < 200; i++)); do
        if [[ "$(http_status "$port" /ping)" == 204 ]]; then
            say "$name: started influxd on 127.0.0.1:$port (rpc $rpc_port, pid $pid), data and log in $dir"
            return
        fi
        alive "$pid" || break
        sleep 0.1
    done
    tail -n 20 "$dir/influxd.log" >&2 || true
    die "$name: influxd did not answer /ping on port $port (log: $dir/influxd.log)"
}

main() {
    if [[ "${1:-}" == stop ]]; then
        [[ -d "$QUICKSTART_DIR" ]] || die "$QUICKSTART_DIR does not exist; nothing to stop"
        QUICKSTART_DIR="$(cd "$QUICKSTART_DIR" && pwd)"
        stop_all
        return
    fi
    [[ $# -eq 0 ]] || die "usage: $0 [stop]"

    trap cleanup EXIT
    trap 'exit 130' INT TERM

    install_missing_packages
    command -v cargo >/dev/null || die "cargo not found; install Rust (>= 1.88) with rustup: https://rustup.rs"
    [[ -f "$ROOT/$CONFIG" ]] || die "$ROOT/$CONFIG is missing"
    mkdir -p "$QUICKSTART_DIR"
    QUICKSTART_DIR="$(cd "$QUICKSTART_DIR" && pwd)"

    local i
    for i in "${!NAMES[@]}"; do
        start_influxd "${NAMES[$i]}" "${HTTP_PORTS[$i]}" "${RPC_PORTS[$i]}"
    done

    cd "$ROOT"
    # The build the tests run and the packages ship (scripts/toolchain.sh): after
    # scripts/test.sh it is already there.
    # shellcheck source=scripts/toolchain.sh
    . "$ROOT/scripts/toolchain.sh"
    ensure_zigbuild
    say "building: cargo-zigbuild test --release --workspace --all-targets --no-run --target $BUILD_TARGET"
    build_release

    local bin="$RELEASE_DIR/influx-proxy"
    say "running: $bin -config $CONFIG (in $ROOT, listening on :7076)"
    say "try: curl -i http://127.0.0.1:7076/ping; stop the InfluxDB servers later with: $0 stop"
    trap - EXIT INT TERM
    exec "$bin" -config "$CONFIG"
}

main "$@"
