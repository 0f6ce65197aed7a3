#!/usr/bin/env bash
# The operator's path under a real systemd: boots Debian 12 (systemd 252 as
# PID 1) in a systemd-nspawn container with a real influxd inside, installs
# the packages there and runs what an operator runs:
#   .deb: apt install (previous version first, then an upgrade keeping an
#         edited conffile), systemctl start (Type=notify), a write reaching
#         influxd, journald fields and priorities, systemctl reload under a
#         write load, a broken config refused by reload, kill -9 with a queued
#         backlog, the watchdog restarting a hung (SIGSTOPped) proxy,
#         systemctl stop, apt remove, apt purge;
#   .rpm: rpm -i (Debian's rpm) in a fresh container, its scriptlets under
#         systemd, start, write, reload, rpm -e.
#
# Usage: sudo scripts/systemd-test.sh [DEB RPM]
#   Without arguments the packages are built with scripts/package.sh.
#
# Needs root on a Debian/Ubuntu host; no systemd as PID 1 needed on the host.
# Installs systemd-container and debootstrap when missing. The container's
# root (debootstrap minbase + systemd, influxdb, curl, rpm; ~2 min, ~400 MB)
# is built once and cached in $ROOT_CACHE (default
# /var/cache/influx-proxy-systemd-test); every boot runs on a throw-away
# overlay (--volatile=overlay), so the cache stays clean. Everything started
# is stopped on exit: containers powered off (killed after 20 s) and their
# cgroups removed.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

ROOT_CACHE="${ROOT_CACHE:-/var/cache/influx-proxy-systemd-test}"
SUITE=bookworm
# What the container needs besides minbase: systemd as init, dbus for
# systemctl, procps for the unit's /bin/kill, the backend, a client, rpm.
INCLUDE=systemd,systemd-sysv,dbus,procps,influxdb,curl,rpm
ROOTFS="$ROOT_CACHE/$SUITE"
STAMP="$ROOTFS/.influx-proxy-systemd-test"
PROXY=http://127.0.0.1:7076
INFLUXD=http://127.0.0.1:8086
CONF=/etc/influx-proxy/proxy.json
UNIT=influx-proxy.service

say() { printf '==> %s\n' "$*"; }
ok() { printf '    ok  %s (%ss)\n' "$*" "$((SECONDS - STEP_START))"; }
fail() {
    printf 'FAIL: %s\n' "$*" >&2
    if [ -n "${C_PID1:-}" ]; then
        printf -- '--- systemctl status %s\n' "$UNIT" >&2
        in_c systemctl status --no-pager -l "$UNIT" >&2 || true
        printf -- '--- journal (last 40 lines)\n' >&2
        in_c journalctl -u "$UNIT" --no-pager -n 40 >&2 || true
    fi
    exit 1
}
step() {
    STEP_START=$SECONDS
    say "$*"
}
STEP_START=$SECONDS

[ "$(id -u)" -eq 0 ] || fail "run as root (it boots containers)"
command -v dpkg >/dev/null || fail "needs a Debian/Ubuntu host (dpkg, debootstrap)"

# shellcheck source=scripts/apt-need.sh
. "$REPO/scripts/apt-need.sh"
apt_need systemd-nspawn:systemd-container debootstrap:debootstrap python3:python3

WORK="$(mktemp -d /tmp/influx-proxy-systemd-test.XXXXXX)"
C_NAME=""
C_NSPAWN=""
C_PID1=""
LOAD_PID=""

# ---------------------------------------------------------------------------
# Containers

# A cgroup of its own for each nspawn: without a host systemd, nspawn would
# leave its payload/supervisor cgroups at the top of the hierarchy.
CGROUP_TREES=(/sys/fs/cgroup/systemd /sys/fs/cgroup/unified)
[ -f /sys/fs/cgroup/cgroup.controllers ] && CGROUP_TREES=(/sys/fs/cgroup)

remove_cgroup() {
    local tree _
    for tree in "${CGROUP_TREES[@]}"; do
        [ -d "$tree/$1" ] || continue
        # Killed processes may take a moment to leave their cgroups.
        for _ in $(seq 1 50); do
            find "$tree/$1" -depth -type d -exec rmdir {} \; 2>/dev/null || true
            [ -d "$tree/$1" ] || break
            sleep 0.1
        done
        [ ! -d "$tree/$1" ] || printf 'warning: could not remove cgroup %s\n' "$tree/$1" >&2
    done
}

# Runs a command inside the running container (all its namespaces).
in_c() {
    nsenter -t "$C_PID1" -a -- "$@"
}

boot() {
    C_NAME="ipt-$1-$$"
    local tree
    for tree in "${CGROUP_TREES[@]}"; do
        mkdir -p "$tree/nspawn-$C_NAME"
    done
    local procs=""
    for tree in "${CGROUP_TREES[@]}"; do
        procs="$procs echo \$\$ >$tree/nspawn-$C_NAME/cgroup.procs;"
    done
    setsid sh -c "$procs exec systemd-nspawn -q -D '$ROOTFS' --boot --private-network \
        --register=no --keep-unit --volatile=overlay --machine='$C_NAME'" \
        </dev/null >"$WORK/nspawn-$1.log" 2>&1 &
    C_NSPAWN=$!
    C_PID1=""
    local _
    for _ in $(seq 1 100); do
        C_PID1="$(pgrep -P "$C_NSPAWN" -x systemd || true)"
        [ -n "$C_PID1" ] && break
        kill -0 "$C_NSPAWN" 2>/dev/null || { cat "$WORK/nspawn-$1.log" >&2; fail "systemd-nspawn exited"; }
        sleep 0.1
    done
    [ -n "$C_PID1" ] || fail "no systemd PID 1 under systemd-nspawn ($C_NSPAWN)"
    # Until its bus is up, systemctl fails at once instead of waiting; and before systemd has
    # set up /run/systemd/system it answers "offline" (seen once right after a busy test run).
    local state=""
    for _ in $(seq 1 300); do
        state="$(timeout 60 nsenter -t "$C_PID1" -a systemctl is-system-running --wait 2>/dev/null || true)"
        case "$state" in
            "" | offline) sleep 0.2 ;;
            *) break ;;
        esac
    done
    case "$state" in
        running | degraded) ;;
        *) fail "the container's systemd is '$state'" ;;
    esac
    [ "$state" = running ] || in_c systemctl --failed --no-pager >&2 || true
}

poweroff() {
    [ -n "$C_NSPAWN" ] || return 0
    if kill -0 "$C_NSPAWN" 2>/dev/null; then
        [ -n "$C_PID1" ] && nsenter -t "$C_PID1" -a systemctl poweroff >/dev/null 2>&1 || true
        local _
        for _ in $(seq 1 200); do
            kill -0 "$C_NSPAWN" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$C_NSPAWN" 2>/dev/null; then
            printf 'warning: container %s did not power off in 20 s: killed\n' "$C_NAME" >&2
            # SIGKILL of a PID namespace's init kills the whole namespace.
            [ -z "$C_PID1" ] || kill -KILL "$C_PID1" 2>/dev/null || true
            kill -KILL "$C_NSPAWN" 2>/dev/null || true
        fi
    fi
    wait "$C_NSPAWN" 2>/dev/null || true
    remove_cgroup "nspawn-$C_NAME"
    C_NSPAWN=""
    C_PID1=""
}

cleanup() {
    local rc=$?
    [ -z "$LOAD_PID" ] || kill "$LOAD_PID" 2>/dev/null || true
    poweroff
    rm -rf "$WORK"
    [ "$rc" -eq 0 ] || printf 'systemd-test.sh failed (exit %s)\n' "$rc" >&2
}
trap cleanup EXIT

# ---------------------------------------------------------------------------
# In-container helpers

# HTTP status of a request made inside the container.
http_code() {
    in_c curl -s -o /dev/null -w '%{http_code}' "$@" || true
}
influx_count() { # db measurement
    in_c curl -s -G "$INFLUXD/query" --data-urlencode "db=$1" \
        --data-urlencode "q=SELECT count(*) FROM \"$2\"" \
        | python3 -c 'import json,sys
r = json.load(sys.stdin)["results"][0]
print(max(r["series"][0]["values"][0][1:]) if "series" in r else 0)'
}
wait_count() { # db measurement expected timeout_s
    local got=0 _
    for _ in $(seq 1 $(($4 * 5))); do
        got="$(influx_count "$1" "$2")"
        [ "$got" = "$3" ] && return 0
        sleep 0.2
    done
    fail "$1.$2 holds $got points in influxd, expected $3"
}
unit_prop() { in_c systemctl show -p "$1" --value "$UNIT"; }
main_pid() { unit_prop MainPID; }
wait_active_pid() { # old-pid timeout_s: waits for an active unit with another main pid
    local pid _
    for _ in $(seq 1 $(($2 * 5))); do
        pid="$(main_pid)"
        if [ "$pid" != 0 ] && [ "$pid" != "$1" ] && [ "$(in_c systemctl is-active "$UNIT")" = active ]; then
            echo "$pid"
            return 0
        fi
        sleep 0.2
    done
    fail "$UNIT did not come back with a new main pid within $2 s (old $1)"
}
wait_influxd() {
    local _
    for _ in $(seq 1 150); do
        [ "$(http_code "$INFLUXD/ping")" = 204 ] && return 0
        sleep 0.2
    done
    fail "influxd in the container does not answer /ping"
}
write_proxy() { # db body -> status
    in_c curl -s -o /dev/null -w '%{http_code}' -XPOST "$PROXY/write?db=$1" --data-binary "$2" || true
}
points() { # measurement from count
    python3 -c 'import sys
m, a, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
print("\n".join(f"{m},h=h{i % 7} v={i}i {1700000000000000000 + i}" for i in range(a, a + n)))' "$@"
}
# The test config: one circle with the container's influxd.
put_config() { # db_list-json
    local config
    config="$(
        cat <<EOF
{
    "circles": [
        {
            "name": "circle-1",
            "backends": [
                {"name": "influxdb-1", "url": "$INFLUXD", "username": "", "password": ""}
            ]
        }
    ],
    "listen_addr": ":7076",
    "db_list": $1,
    "data_dir": "/var/lib/influx-proxy",
    "mlog_dir": "/var/log/influx-proxy",
    "hash_key": "idx",
    "vnode_size": 256,
    "flush_size": 10000,
    "flush_time": 1
}
EOF
    )"
    printf '%s\n' "$config" | in_c sh -c "cat >$CONF"
}
copy_in() { # host-file container-dir
    cp "$1" "/proc/$C_PID1/root$2/"
}

# ---------------------------------------------------------------------------
step "container root ($ROOTFS)"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$INCLUDE" ]; then
    mirror="$(sed -n 's/^URIs: *\([^ ]*\).*/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | grep -v security | head -n 1 || true)"
    [ -n "$mirror" ] || mirror="$(awk '$1 == "deb" && $2 !~ /security/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)"
    [ -n "$mirror" ] || mirror=http://deb.debian.org/debian
    rm -rf "$ROOTFS.new" "$ROOTFS"
    mkdir -p "$ROOT_CACHE"
    debootstrap --variant=minbase --include="$INCLUDE" "$SUITE" "$ROOTFS.new" "$mirror" >"$WORK/debootstrap.log" 2>&1 \
        || { tail -n 30 "$WORK/debootstrap.log" >&2; fail "debootstrap $SUITE from $mirror"; }
    printf '%s' "$INCLUDE" >"$ROOTFS.new/.influx-proxy-systemd-test"
    mv "$ROOTFS.new" "$ROOTFS"
    ok "built with debootstrap from $mirror"
else
    ok "cached"
fi

if [ "$#" -eq 2 ]; then
    DEB="$1"
    RPM="$2"
else
    step "building packages (scripts/package.sh)"
    "$REPO/scripts/package.sh" >"$WORK/package.log" 2>&1 || { tail -n 30 "$WORK/package.log" >&2; fail "package.sh"; }
    DEB="$(sed -n 's/^deb: //p' "$WORK/package.log" | tail -n 1)"
    RPM="$(sed -n 's/^rpm: //p' "$WORK/package.log" | tail -n 1)"
    ok "built $(basename "$DEB") and $(basename "$RPM")"
fi
[ -f "$DEB" ] || fail "no .deb: $DEB"
[ -f "$RPM" ] || fail "no .rpm: $RPM"

# The "previous release" for the upgrade test: the same package with a lower
# version (~prev sorts before the release), built with dpkg-deb.
VERSION="$(dpkg-deb -f "$DEB" Version)"
mkdir "$WORK/prev"
dpkg-deb -R "$DEB" "$WORK/prev/root"
sed -i "s/^Version: .*/Version: $VERSION~prev/" "$WORK/prev/root/DEBIAN/control"
dpkg-deb -Zxz -b "$WORK/prev/root" "$WORK/prev/influx-proxy_prev.deb" >/dev/null

# ===========================================================================
step "booting $SUITE (systemd as PID 1) for the .deb"
boot deb
ok "$(in_c systemctl --version | head -n 1), is-system-running: $(in_c systemctl is-system-running || true)"
wait_influxd
copy_in "$DEB" /tmp
copy_in "$WORK/prev/influx-proxy_prev.deb" /tmp

step "apt install the previous package ($VERSION~prev)"
in_c env DEBIAN_FRONTEND=noninteractive apt-get install -y -q /tmp/influx-proxy_prev.deb >"$WORK/apt.log" 2>&1 \
    || { cat "$WORK/apt.log" >&2; fail "apt install ./influx-proxy_prev.deb"; }
in_c getent passwd influx-proxy >/dev/null || fail "no influx-proxy user"
[ "$(in_c systemctl is-enabled "$UNIT")" = enabled ] || fail "$UNIT is not enabled after install"
[ "$(in_c systemctl is-active "$UNIT")" = active ] || fail "$UNIT is not running after install"
[ "$(in_c stat -c '%U:%G %a' /var/lib/influx-proxy)" = "influx-proxy:influx-proxy 750" ] || fail "/var/lib/influx-proxy: $(in_c stat -c '%U:%G %a' /var/lib/influx-proxy)"
[ "$(in_c stat -c '%U:%G %a' $CONF)" = "root:influx-proxy 640" ] || fail "$CONF: $(in_c stat -c '%U:%G %a' $CONF)"
ok "user, dirs, conffile; $UNIT enabled and started by the install"

step "edited conffile, then apt install the new package (upgrade)"
put_config '[]'
in_c sh -c "grep -q influxdb-1 $CONF" || fail "could not edit $CONF"
old_pid="$(main_pid)"
in_c env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "/tmp/$(basename "$DEB")" >"$WORK/apt.log" 2>&1 \
    || { cat "$WORK/apt.log" >&2; fail "apt install ./$(basename "$DEB") (upgrade)"; }
[ "$(in_c dpkg-query -W -f='${Version}' influx-proxy)" = "$VERSION" ] || fail "not upgraded to $VERSION"
in_c sh -c "grep -q influxdb-1 $CONF" || fail "the upgrade replaced the edited $CONF"
! grep -q 'conffile' "$WORK/apt.log" || fail "dpkg asked about the conffile: $(grep conffile "$WORK/apt.log")"
pid="$(main_pid)"
[ "$pid" != "$old_pid" ] && [ "$pid" != 0 ] || fail "the upgrade did not restart $UNIT (pid $old_pid -> $pid)"
exe="$(in_c readlink "/proc/$pid/exe")"
[ "$exe" = /usr/bin/influx-proxy ] || fail "the running proxy is '$exe', not the upgraded binary"
ok "edited $CONF kept, $UNIT restarted on the new binary (pid $old_pid -> $pid)"

step "systemctl restart: active only after READY=1 (Type=notify), then a write reaches influxd"
[ "$(unit_prop Type)" = notify ] || fail "Type=$(unit_prop Type)"
in_c systemctl restart "$UNIT" || fail "systemctl restart"
# systemctl returned: with Type=notify the listener is already bound.
code="$(http_code "$PROXY/ping")"
[ "$code" = 204 ] || fail "the first /ping right after systemctl restart returned: '$code' (READY=1 before the listener?)"
[ "$(unit_prop StatusErrno)" = 0 ] || fail "StatusErrno=$(unit_prop StatusErrno)"
[ "$(write_proxy sd "$(points cpu 0 100)")" = 204 ] || fail "write through the proxy"
wait_count sd cpu 100 20
ok "/ping 204 on the first try after systemctl returned; 100 points in influxd"

step "systemctl reload under a write load: applied, no write refused or lost"
# One client writing as fast as curl goes, one point per request, counting
# answers by status.
in_c sh -c "i=0; while [ ! -e /tmp/stop-load ]; do
    code=\$(curl -s -o /dev/null -w '%{http_code}' -XPOST '$PROXY/write?db=sd' --data-binary \"load,h=a v=\${i}i \$((1700000000000000000 + i))\")
    echo \"\$code\" >>/tmp/load.codes; i=\$((i + 1)); done" &
LOAD_PID=$!
sleep 1
pid="$(main_pid)"
put_config '["sd"]'
in_c systemctl reload "$UNIT" || fail "systemctl reload"
sleep 1
[ "$(main_pid)" = "$pid" ] || fail "reload restarted the proxy ($pid -> $(main_pid))"
code="$(write_proxy other "other v=1")"
[ "$code" = 400 ] || [ "$code" = 403 ] || [ "$code" = 404 ] || fail "a write to a db outside the reloaded db_list got $code"
in_c touch /tmp/stop-load
wait "$LOAD_PID" || true
LOAD_PID=""
total="$(in_c sh -c 'wc -l </tmp/load.codes')"
good="$(in_c sh -c 'grep -c "^204$" /tmp/load.codes || true')"
[ "$total" -gt 20 ] || fail "the load sent only $total writes"
[ "$good" = "$total" ] || fail "$((total - good)) of $total writes refused around the reload: $(in_c sort /tmp/load.codes | uniq -c | tr '\n' ' ')"
wait_count sd load "$total" 30
in_c journalctl -u "$UNIT" --no-pager -o cat | grep -q 'Reloading' || fail "no reload in the journal"
ok "$total writes during the reload, all 204, all $total in influxd; db_list applied (other db -> $code)"
put_config '[]'
in_c systemctl reload "$UNIT" || fail "systemctl reload (db_list back to all)"

step "a broken config: reload refused, the old config keeps serving"
in_c cp "$CONF" /tmp/good.json
in_c sh -c "printf '{\"circles\": [], \"listen_addr\": \":7076\", \"no_such_key\": 1}\n' >$CONF"
pid="$(main_pid)"
if in_c systemctl reload "$UNIT" 2>"$WORK/reload.err"; then
    fail "systemctl reload accepted a broken config"
fi
[ "$(main_pid)" = "$pid" ] || fail "the proxy restarted on a broken config"
[ "$(in_c systemctl is-active "$UNIT")" = active ] || fail "$UNIT is not active after a refused reload"
[ "$(write_proxy sd "$(points cpu 100 10)")" = 204 ] || fail "write after the refused reload"
wait_count sd cpu 110 20
in_c systemctl status --no-pager -l "$UNIT" >"$WORK/status.txt" 2>&1 || true
grep -q 'no_such_key' "$WORK/status.txt" || { cat "$WORK/status.txt" >&2; fail "systemctl status does not say why the reload failed"; }
ok "reload exit non-zero, same pid, writes served; status says: $(grep -m1 'no_such_key' "$WORK/status.txt" | sed 's/^.*influx-proxy\[[0-9]*\]: //' | cut -c1-100)"
in_c cp /tmp/good.json "$CONF"
in_c systemctl reload "$UNIT" || fail "reload of the restored config"

step "kill -9 with a queued backlog: systemd restarts it, the backlog is delivered"
in_c systemctl stop influxdb
for i in 0 1 2 3 4; do
    [ "$(write_proxy sd "$(points backlog $((i * 100)) 100)")" = 204 ] || fail "write while influxd is down"
done
pid="$(main_pid)"
restarts="$(unit_prop NRestarts)"
in_c kill -9 "$pid"
pid="$(wait_active_pid "$pid" 30)"
[ "$(unit_prop NRestarts)" = $((restarts + 1)) ] || fail "NRestarts $(unit_prop NRestarts), expected $((restarts + 1))"
in_c systemctl start influxdb
wait_influxd
wait_count sd backlog 500 60
ok "restarted (pid $pid, Restart=on-failure); 500 of 500 acknowledged points delivered"

step "watchdog: a hung proxy (SIGSTOP) is restarted"
in_c mkdir -p /etc/systemd/system/$UNIT.d
printf '[Service]\nWatchdogSec=3s\n' | in_c sh -c "cat >/etc/systemd/system/$UNIT.d/watchdog.conf"
in_c systemctl daemon-reload
in_c systemctl reset-failed "$UNIT" 2>/dev/null || true
in_c systemctl restart "$UNIT"
t1="$(unit_prop WatchdogTimestampMonotonic)"
sleep 2.5
t2="$(unit_prop WatchdogTimestampMonotonic)"
[ "$t2" -gt "$t1" ] || fail "no WATCHDOG=1 pings (WatchdogTimestamp $t1 -> $t2)"
pid="$(main_pid)"
in_c kill -STOP "$pid"
hung=$SECONDS
pid="$(wait_active_pid "$pid" 30)"
in_c journalctl -u "$UNIT" --no-pager -o cat | grep -q 'Watchdog timeout' || fail "no watchdog timeout in the journal"
[ "$(http_code "$PROXY/ping")" = 204 ] || fail "/ping after the watchdog restart"
ok "WATCHDOG=1 every ~1.5 s; SIGSTOP -> 'Watchdog timeout', new pid $pid serving after $((SECONDS - hung)) s"
in_c rm -r /etc/systemd/system/$UNIT.d
in_c systemctl daemon-reload
in_c systemctl reset-failed "$UNIT" 2>/dev/null || true
in_c systemctl restart "$UNIT"

step "journald: structured fields, priorities, nothing logged twice"
# A warning with backend/circle/error: influxd stops.
in_c systemctl stop influxdb
[ "$(write_proxy sd "$(points down 0 10)")" = 204 ] || fail "write while influxd is down"
sleep 2
in_c systemctl start influxdb
wait_influxd
wait_count sd down 10 30
# An error with db/points: the schema changed behind the proxy (x.f becomes a
# string in influxd, in the same shard, between the proxy's 204 and its
# delivery).
in_c curl -s -XPOST "$INFLUXD/query" --data-urlencode 'q=CREATE DATABASE behind' >/dev/null
[ "$(write_proxy behind 'x,h=a f=1i 2')" = 204 ] || fail "write to db behind"
in_c curl -s -o /dev/null -XPOST "$INFLUXD/write?db=behind" --data-binary 'x,h=other f="s" 1'
sleep 4
in_c journalctl -u "$UNIT" -o json --no-pager >"$WORK/journal.json"
python3 - "$WORK/journal.json" <<'PY' || fail "journal check (above)"
import json, sys
entries = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
# The service's own process; ExecStartPre/ExecReload's --check-config print
# their verdict to stdout on purpose (that is what `systemctl status` shows).
# (journald often cannot read a short-lived process's _CMDLINE: match the text).
def check_config_output(e):
    m = e.get("MESSAGE", "")
    return "--check-config" in e.get("_CMDLINE", "") or (
        e.get("_TRANSPORT") == "stdout" and (m.startswith("config file ") or m.startswith("illegal config file")))
proxy = [e for e in entries if e.get("_COMM") == "influx-proxy" and not check_config_output(e)]
def find(pred, what):
    for e in proxy:
        if pred(e):
            return e
    print(f"no journal entry with {what}", file=sys.stderr)
    sys.exit(1)
warn = find(lambda e: e.get("PRIORITY") == "4" and "F_BACKEND" in e and "F_CIRCLE" in e and "F_ERROR" in e,
            "PRIORITY=4 and F_BACKEND, F_CIRCLE, F_ERROR")
err = find(lambda e: e.get("PRIORITY") == "3" and e.get("F_DB") == "behind" and "F_POINTS" in e and "F_BACKEND" in e,
           "PRIORITY=3 and F_DB=behind, F_POINTS, F_BACKEND")
# tracing-journald maps INFO to 5 (notice).
info = find(lambda e: e.get("PRIORITY") == "5", "PRIORITY=5 (info)")
transports = sorted({e.get("_TRANSPORT") for e in proxy})
if transports != ["journal"]:
    twice = [e.get("MESSAGE") for e in proxy if e.get("_TRANSPORT") != "journal"][:5]
    print(f"proxy lines not sent natively (logged through stdout/stderr too?): {transports} {twice}", file=sys.stderr)
    sys.exit(1)
seen = {}
for e in proxy:
    key = (e.get("_PID"), e.get("MESSAGE"), e.get("_SOURCE_REALTIME_TIMESTAMP"))
    if key in seen:
        print(f"logged twice: {e.get('MESSAGE')}", file=sys.stderr)
        sys.exit(1)
    seen[key] = e
levels = {}
for e in proxy:
    levels[e.get("PRIORITY")] = levels.get(e.get("PRIORITY"), 0) + 1
print(f"    {len(proxy)} proxy entries, all _TRANSPORT=journal, by PRIORITY {dict(sorted(levels.items()))}")
print(f"    warning: {warn['MESSAGE']!r} F_BACKEND={warn['F_BACKEND']} F_CIRCLE={warn['F_CIRCLE']}")
print(f"    error:   {err['MESSAGE']!r} F_DB={err['F_DB']} F_POINTS={err['F_POINTS']}")
PY
ok "journal fields and priorities"

step "systemctl stop: drains and exits 0"
[ "$(write_proxy sd "$(points last 0 50)")" = 204 ] || fail "write before stop"
t0=$SECONDS
in_c systemctl stop "$UNIT"
took=$((SECONDS - t0))
[ "$(unit_prop ExecMainStatus)" = 0 ] || fail "exit status $(unit_prop ExecMainStatus)"
[ "$(unit_prop Result)" = success ] || fail "Result=$(unit_prop Result)"
# Points still waiting for their flush_time stay in the on-disk queue and
# are delivered by the next start.
in_c systemctl start "$UNIT"
wait_count sd last 50 20
ok "stopped in ${took}s (TimeoutStopSec $(unit_prop TimeoutStopUSec)), exit 0; the 50 points written just before are in influxd after the next start"

step "apt remove keeps config and queued data; apt purge removes them"
# Data queued for a backend that is down must survive a remove.
in_c systemctl stop influxdb
[ "$(write_proxy sd "$(points kept 0 20)")" = 204 ] || fail "write before remove"
in_c env DEBIAN_FRONTEND=noninteractive apt-get remove -y -q influx-proxy >"$WORK/apt.log" 2>&1 \
    || { cat "$WORK/apt.log" >&2; fail "apt remove"; }
[ "$(in_c systemctl is-active "$UNIT" || true)" != active ] || fail "$UNIT still running after apt remove"
in_c test ! -e /usr/bin/influx-proxy || fail "binary left after remove"
in_c test -f "$CONF" || fail "remove deleted $CONF"
in_c test -d /var/lib/influx-proxy/wal || fail "remove deleted the queued data"
in_c getent passwd influx-proxy >/dev/null || fail "remove deleted the user"
ok "stopped, binary gone; $CONF, /var/lib/influx-proxy/wal and the user kept"
in_c env DEBIAN_FRONTEND=noninteractive apt-get purge -y -q influx-proxy >"$WORK/apt.log" 2>&1 \
    || { cat "$WORK/apt.log" >&2; fail "apt purge"; }
for p in /etc/influx-proxy /var/lib/influx-proxy /var/log/influx-proxy; do
    in_c test ! -e "$p" || fail "$p left after purge"
done
! in_c getent passwd influx-proxy >/dev/null || fail "user left after purge"
in_c systemctl start influxdb
ok "config, data, logs and user gone"
poweroff

# ===========================================================================
step "booting a fresh container for the .rpm"
boot rpm
wait_influxd
copy_in "$RPM" /tmp
ok "booted"

step "rpm -i: scriptlets under systemd"
# Debian's rpm database knows none of the system's libraries: --nodeps.
in_c rpm -i --nodeps "/tmp/$(basename "$RPM")" >"$WORK/rpm.log" 2>&1 || { cat "$WORK/rpm.log" >&2; fail "rpm -i"; }
in_c getent passwd influx-proxy >/dev/null || fail "%pre did not create the user"
[ "$(in_c stat -c '%U:%G %a' /var/lib/influx-proxy)" = "influx-proxy:influx-proxy 750" ] || fail "%post: /var/lib/influx-proxy"
in_c test -f /usr/lib/systemd/system/$UNIT || fail "no unit installed"
[ "$(unit_prop LoadState)" = loaded ] || fail "systemd does not see $UNIT (daemon-reload in %post?)"
ok "user, dirs, unit loaded ($(in_c systemctl is-enabled "$UNIT" 2>/dev/null || true) by preset)"

step "rpm: start, write, reload, rpm -e"
put_config '[]'
in_c systemctl start "$UNIT" || fail "systemctl start"
[ "$(http_code "$PROXY/ping")" = 204 ] || fail "/ping after start"
[ "$(write_proxy rpmdb "$(points cpu 0 100)")" = 204 ] || fail "write through the proxy"
wait_count rpmdb cpu 100 20
pid="$(main_pid)"
in_c systemctl reload "$UNIT" || fail "systemctl reload"
[ "$(main_pid)" = "$pid" ] || fail "reload restarted the proxy"
in_c rpm -e influx-proxy >"$WORK/rpm.log" 2>&1 || { cat "$WORK/rpm.log" >&2; fail "rpm -e"; }
[ "$(in_c systemctl is-active "$UNIT" || true)" != active ] || fail "%preun did not stop $UNIT"
in_c test ! -e /usr/bin/influx-proxy || fail "binary left after rpm -e"
in_c test -d /var/lib/influx-proxy/wal || fail "rpm -e deleted the queued data"
in_c test -f "$CONF.rpmsave" || fail "the edited $CONF was not saved as .rpmsave"
ok "started, 100 points in influxd, reloaded in place; rpm -e stopped it, kept data and $CONF.rpmsave"
poweroff

say "all systemd tests passed in $SECONDS s"
