#!/usr/bin/env bash
# End-to-end test of the packages, as root on a Debian 12 box (no systemd PID
# 1 needed): build them with scripts/package.sh, install the .deb, check every
# installed path, owner and mode, verify the unit, run the installed binary
# the way the unit's ExecStart does, then remove and purge; finally inspect the
# .rpm (file list, flags, scriptlets, payload).
#
# Usage: sudo scripts/package-test.sh
#
# Idempotent: a previous install of influx-proxy is purged first. On failure
# it exits non-zero with a "FAIL:" line and leaves the package installed for
# inspection (the next run purges it). Installs the `rpm` Debian package when
# rpm is missing. Honours CARGO_TARGET_DIR like package.sh.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

PKG=influx-proxy
USER_NAME=influx-proxy
BIN=/usr/bin/influx-proxy
UNIT_FILE=/lib/systemd/system/influx-proxy.service
WANTS_LINK=/etc/systemd/system/multi-user.target.wants/influx-proxy.service
CONFIG=/etc/influx-proxy/proxy.json
DEFAULTS=/etc/default/influx-proxy
DATA_DIR=/var/lib/influx-proxy
LOG_DIR=/var/log/influx-proxy
STOP_LIMIT=30 # seconds from SIGTERM to exit
GLIBC_FLOOR=2.28 # RHEL/Rocky/Alma 8

say() { printf '==> %s\n' "$*"; }
ok() { printf '    ok  %s\n' "$*"; }
fail() {
    printf 'FAIL: %s\n' "$*" >&2
    exit 1
}

[ "$(id -u)" -eq 0 ] || fail "run as root (it installs and purges the package)"
command -v dpkg >/dev/null || fail "dpkg not found: this test needs Debian or Ubuntu"

WORK="$(mktemp -d /tmp/influx-proxy-pkgtest.XXXXXX)"
RUNNER_PID=""
PROXY_PID=""
LISTENER_PID=""
cleanup() {
    local rc=$?
    # Only the processes this script started, by pid.
    for pid in $PROXY_PID $RUNNER_PID $LISTENER_PID; do
        kill -KILL "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
    if [ "$rc" -ne 0 ]; then
        printf 'package-test.sh failed (exit %s)' "$rc" >&2
        case "$(pkg_state)" in
            installed | config-files) printf '; %s is left %s for inspection' "$PKG" "$(pkg_state)" >&2 ;;
        esac
        printf '\n' >&2
    fi
}
trap cleanup EXIT

# Package status as dpkg knows it: "installed", "config-files" or "".
pkg_state() {
    dpkg-query -W -f='${db:Status-Status}' "$PKG" 2>/dev/null || true
}

# expect_stat PATH TYPE OWNER:GROUP MODE
expect_stat() {
    local path="$1" type="$2" owner="$3" mode="$4" got
    case "$type" in
        file) if [ ! -f "$path" ] || [ -L "$path" ]; then fail "$path is not a regular file"; fi ;;
        dir) if [ ! -d "$path" ] || [ -L "$path" ]; then fail "$path is not a directory"; fi ;;
    esac
    got="$(stat -c '%U:%G %a' "$path")"
    [ "$got" = "$owner $mode" ] || fail "$path: expected $owner $mode, got $got"
    ok "$path $type $owner $mode"
}

expect_absent() {
    if [ -e "$1" ] || [ -L "$1" ]; then fail "$1 still exists ($2)"; fi
    ok "$1 gone"
}

expect_present() {
    [ -e "$1" ] || fail "$1 is missing ($2)"
    ok "$1 kept"
}

http_code() {
    curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$1" 2>/dev/null || true
}

# Below the kernel's ephemeral range: a port in it can be the local end of some connection,
# which nobody listens on yet the proxy cannot bind (a CI run failed so).
free_port() {
    local port low
    low=$(awk '{print $1}' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
    [ "${low:-0}" -gt 12000 ] 2>/dev/null || low=32768
    for _ in $(seq 1 50); do
        port=$((10000 + RANDOM % (low - 12000)))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return
        fi
    done
    fail "no free port found"
}

# ---------------------------------------------------------------------------
say "cleaning up a previous install"
if [ -n "$(pkg_state)" ] && [ "$(pkg_state)" != not-installed ]; then
    dpkg -P "$PKG" >/dev/null
    ok "purged the previous $PKG"
fi
if pgrep -u "$USER_NAME" -x influx-proxy >/dev/null 2>&1; then
    fail "an influx-proxy runs as $USER_NAME (pids $(pgrep -u "$USER_NAME" -x influx-proxy | tr '\n' ' ')): stop it first"
fi

# shellcheck source=scripts/apt-need.sh
. "$ROOT/scripts/apt-need.sh"
apt_need curl:curl rpm:rpm objdump:binutils

# ---------------------------------------------------------------------------
say "building packages (scripts/package.sh)"
"$ROOT/scripts/package.sh" | tee "$WORK/package.log"
DEB="$(sed -n 's/^deb: //p' "$WORK/package.log" | tail -n 1)"
RPM="$(sed -n 's/^rpm: //p' "$WORK/package.log" | tail -n 1)"
[ -f "$DEB" ] || fail "package.sh named no .deb"
[ -f "$RPM" ] || fail "package.sh named no .rpm"
BUILT_BIN="$(sed -n 's/^bin: //p' "$WORK/package.log" | tail -n 1)"
[ -x "$BUILT_BIN" ] || fail "package.sh named no binary"

# ---------------------------------------------------------------------------
say "the binary runs on glibc $GLIBC_FLOOR (RHEL/Rocky/Alma 8) and later"
command -v objdump >/dev/null || fail "objdump not found (binutils)"
objdump -T "$BUILT_BIN" >"$WORK/dynsym"
max_glibc="$(grep -o 'GLIBC_[0-9][0-9.]*' "$WORK/dynsym" | sed 's/GLIBC_//' | sort -uV | tail -n 1)"
[ -n "$max_glibc" ] || fail "objdump -T found no GLIBC symbol versions in $BUILT_BIN"
[ "$(printf '%s\n%s\n' "$max_glibc" "$GLIBC_FLOOR" | sort -V | tail -n 1)" = "$GLIBC_FLOOR" ] \
    || fail "$BUILT_BIN needs GLIBC_$max_glibc (> $GLIBC_FLOOR): $(grep "GLIBC_$max_glibc" "$WORK/dynsym" | awk '{print $NF}' | head -n 5 | tr '\n' ' ')"
ok "newest glibc symbol version: GLIBC_$max_glibc (floor $GLIBC_FLOOR)"
if grep -q 'GLIBCXX_\|CXXABI_' "$WORK/dynsym"; then
    fail "$BUILT_BIN links libstdc++ dynamically: $(grep -o 'GLIBCXX_[0-9.]*' "$WORK/dynsym" | sort -uV | tail -n 1)"
fi
needed="$(objdump -p "$BUILT_BIN" | awk '$1 == "NEEDED" {print $2}' | sort | tr '\n' ' ')"
for lib in $needed; do
    case "$lib" in
        libc.so.6 | libm.so.6 | libdl.so.2 | libpthread.so.0 | librt.so.1 | libgcc_s.so.1 | ld-linux-x86-64.so.2) ;;
        *) fail "$BUILT_BIN needs $lib, which is not part of glibc/libgcc: $needed" ;;
    esac
done
ok "shared libraries: $needed(glibc and libgcc only, no libstdc++)"
# What rpm will ask of the target system: only glibc sonames/versions it
# ships (rpm's own rpmlib() features and the scriptlets' /bin/sh).
rpm -qpR "$RPM" >"$WORK/rpm.requires"
while read -r req; do
    case "$req" in
        "rpmlib("*) ;;
        # rpm's elfdeps: the dynamic linker's GNU hash tables (glibc has had them since 2.5).
        "rtld(GNU_HASH)") ;;
        /bin/sh | /usr/bin/sh | /usr/sbin/useradd | shadow-utils | systemd | systemd-units | "config(influx-proxy) = "*) ;;
        "libc.so.6"* | "libm.so.6"* | "libdl.so.2"* | "libpthread.so.0"* | "librt.so.1"* | "libgcc_s.so.1"* | "ld-linux-x86-64.so.2"*)
            v="$(grep -o 'GLIBC_[0-9.]*' <<<"$req" | sed 's/GLIBC_//')" || true
            if [ -n "$v" ] && [ "$(printf '%s\n%s\n' "$v" "$GLIBC_FLOOR" | sort -V | tail -n 1)" != "$GLIBC_FLOOR" ]; then
                fail "rpm requires $req (newer than glibc $GLIBC_FLOOR)"
            fi
            ;;
        *) fail "rpm requires '$req', which RHEL 8 may not provide" ;;
    esac
done <"$WORK/rpm.requires"
ok "rpm -qpR: $(grep -vc '^rpmlib(' "$WORK/rpm.requires") requirements, all in RHEL 8's glibc ($(tr '\n' ' ' <"$WORK/rpm.requires" | cut -c1-160)...)"
dpkg-deb -f "$DEB" Depends | grep -q 'libc6 (>= 2.28)' || fail "the .deb does not depend on libc6 (>= 2.28): $(dpkg-deb -f "$DEB" Depends)"
ok "the .deb depends on $(dpkg-deb -f "$DEB" Depends)"

# ---------------------------------------------------------------------------
say "dpkg -i $(basename "$DEB")"
dpkg-deb --info "$DEB" | sed -n 's/^ \(Package\|Version\|Architecture\|Depends\|Section\):/    \1:/p'
dpkg -i "$DEB"
[ "$(pkg_state)" = installed ] || fail "dpkg says $PKG is '$(pkg_state)', not installed"
ok "package installed"

say "installed files, owners and modes"
expect_stat "$BIN" file root:root 755
expect_stat "$UNIT_FILE" file root:root 644
expect_stat /etc/influx-proxy dir root:root 755
expect_stat "$CONFIG" file root:"$USER_NAME" 640
expect_stat "$DEFAULTS" file root:root 644
expect_stat /usr/share/doc/influx-proxy/README.md file root:root 644
expect_stat /usr/share/doc/influx-proxy/packaging.md file root:root 644
expect_stat /usr/share/influx-proxy/grafana/influx-proxy.json file root:root 644
expect_stat "$DATA_DIR" dir "$USER_NAME:$USER_NAME" 750
expect_stat "$LOG_DIR" dir "$USER_NAME:$USER_NAME" 750
cmp -s "$BIN" "$BUILT_BIN" || fail "$BIN differs from the built $BUILT_BIN"
ok "$BIN is the binary package.sh built"

passwd_line="$(getent passwd "$USER_NAME")" || fail "user $USER_NAME does not exist"
IFS=: read -r _ _ uid _ _ home shell <<<"$passwd_line"
[ "$uid" -lt 1000 ] || fail "$USER_NAME is not a system user (uid $uid)"
[ "$home" = "$DATA_DIR" ] || fail "$USER_NAME home is $home, not $DATA_DIR"
case "$shell" in */nologin | /bin/false) ;; *) fail "$USER_NAME has a login shell: $shell" ;; esac
getent group "$USER_NAME" >/dev/null || fail "group $USER_NAME does not exist"
ok "system user $USER_NAME (uid $uid, home $home, shell $shell) and group"

conffiles="$(dpkg-query -W -f='${Conffiles}' "$PKG")"
for f in "$CONFIG" "$DEFAULTS"; do
    grep -q " $f " <<<"$conffiles" || fail "$f is not a conffile: $conffiles"
done
ok "conffiles: $CONFIG $DEFAULTS"
cmp -s "$CONFIG" packaging/etc-proxy.json || fail "$CONFIG is not packaging/etc-proxy.json"
grep -q '"data_dir": "/var/lib/influx-proxy"' "$CONFIG" || fail "$CONFIG: data_dir is not $DATA_DIR"
grep -q '"mlog_dir": "/var/log/influx-proxy"' "$CONFIG" || fail "$CONFIG: mlog_dir is not $LOG_DIR"
ok "$CONFIG uses $DATA_DIR and $LOG_DIR"

[ -L "$WANTS_LINK" ] || fail "unit not enabled: $WANTS_LINK missing"
[ "$(readlink -f "$WANTS_LINK")" = "$(readlink -f "$UNIT_FILE")" ] || fail "$WANTS_LINK points to $(readlink "$WANTS_LINK")"
ok "enabled: $WANTS_LINK -> $(readlink "$WANTS_LINK")"
if [ ! -d /run/systemd/system ]; then
    if pgrep -u "$USER_NAME" -x influx-proxy >/dev/null; then
        fail "influx-proxy was started at install although systemd is not running"
    fi
    ok "not started (no systemd running)"
fi

say "systemd unit"
if command -v systemd-analyze >/dev/null; then
    # Needs ExecStart's binary to exist: it is installed now.
    if ! out="$(systemd-analyze verify --man=no "$UNIT_FILE" 2>&1)"; then
        printf '%s\n' "$out" >&2
        fail "systemd-analyze verify $UNIT_FILE"
    fi
    [ -z "$out" ] || printf '%s\n' "$out" | sed 's/^/    /'
    ok "systemd-analyze verify --man=no $UNIT_FILE"
    if score="$(systemd-analyze security --offline=yes "$UNIT_FILE" 2>/dev/null | tail -n 1)"; then
        ok "systemd-analyze security: ${score#→ }"
    fi
else
    ok "systemd-analyze not installed: unit verification skipped"
fi

say "--check-config (as ExecStartPre runs it: as $USER_NAME)"
runuser -u "$USER_NAME" -- "$BIN" --check-config "$CONFIG" >"$WORK/check.out" 2>&1 \
    || { cat "$WORK/check.out" >&2; fail "--check-config $CONFIG failed"; }
ok "$(cat "$WORK/check.out")"
printf '{"circles": [], "listen_addr": ":7076", "no_such_key": 1}\n' >"$WORK/broken.json"
chmod 0644 "$WORK/broken.json"
chmod 0755 "$WORK"
set +e
runuser -u "$USER_NAME" -- "$BIN" --check-config "$WORK/broken.json" >"$WORK/check.out" 2>&1
rc=$?
set -e
[ "$rc" -eq 1 ] || { cat "$WORK/check.out" >&2; fail "--check-config on a broken config exited $rc, not 1"; }
ok "broken config refused with exit 1: $(head -n 1 "$WORK/check.out")"

# ---------------------------------------------------------------------------
say "running the installed binary as ExecStart does"
PORT="$(free_port)"
RUN_DIR="$WORK/run"
mkdir "$RUN_DIR"
sed "s/\"listen_addr\": *\"[^\"]*\"/\"listen_addr\": \"127.0.0.1:$PORT\"/" "$CONFIG" >"$RUN_DIR/proxy.json"
grep -q "\"listen_addr\": \"127.0.0.1:$PORT\"" "$RUN_DIR/proxy.json" || fail "could not set listen_addr in the test config"
chgrp -R "$USER_NAME" "$RUN_DIR"
chmod 0750 "$RUN_DIR"
chmod 0640 "$RUN_DIR/proxy.json"

# A stand-in for systemd's notify socket, to check READY=1 and STOPPING=1.
NOTIFY_LOG="$RUN_DIR/notify.log"
NOTIFY_SOCKET_PATH="$RUN_DIR/notify.sock"
PYTHON="$(command -v python3 || true)"
if [ -n "$PYTHON" ]; then
    "$PYTHON" - "$NOTIFY_SOCKET_PATH" "$NOTIFY_LOG" <<'PY' &
import os, socket, sys
path, log = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(path)
os.chmod(path, 0o777)
s.settimeout(300)
with open(log, "a", buffering=1) as out:
    while True:
        try:
            data = s.recv(4096)
        except socket.timeout:
            break
        out.write(data.decode(errors="replace").replace("\n", " ") + "\n")
PY
    LISTENER_PID=$!
    for _ in $(seq 1 50); do [ -S "$NOTIFY_SOCKET_PATH" ] && break; sleep 0.1; done
    [ -S "$NOTIFY_SOCKET_PATH" ] || fail "notify socket stand-in did not start"
fi

# The environment systemd would give it: a clean one plus NOTIFY_SOCKET, in
# WorkingDirectory=/var/lib/influx-proxy, as User=influx-proxy.
(
    cd "$DATA_DIR"
    exec runuser -u "$USER_NAME" -- env -i \
        PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        LANG=C.UTF-8 HOME="$DATA_DIR" \
        ${PYTHON:+NOTIFY_SOCKET="$NOTIFY_SOCKET_PATH"} \
        "$BIN" -config "$RUN_DIR/proxy.json"
) >"$RUN_DIR/proxy.log" 2>&1 &
RUNNER_PID=$!

code=""
for _ in $(seq 1 600); do
    code="$(http_code "http://127.0.0.1:$PORT/ping")"
    [ "$code" = 204 ] && break
    kill -0 "$RUNNER_PID" 2>/dev/null || { cat "$RUN_DIR/proxy.log" >&2; fail "the proxy exited before answering /ping"; }
    sleep 0.1
done
[ "$code" = 204 ] || { cat "$RUN_DIR/proxy.log" >&2; fail "GET /ping on port $PORT gave '$code', not 204"; }
ok "GET http://127.0.0.1:$PORT/ping -> 204"

# runuser forks: signal the proxy itself (systemd's $MAINPID), not runuser,
# which would SIGKILL its child 2 s after forwarding a SIGTERM.
PROXY_PID="$(pgrep -P "$RUNNER_PID" -x influx-proxy || true)"
[ -n "$PROXY_PID" ] || fail "cannot find the proxy process under runuser ($RUNNER_PID)"
proc_user="$(ps -o user= -p "$PROXY_PID" | tr -d ' ')"
[ "$proc_user" = "$USER_NAME" ] || fail "the proxy runs as '$proc_user', not $USER_NAME"
proc_cwd="$(readlink "/proc/$PROXY_PID/cwd")"
[ "$proc_cwd" = "$DATA_DIR" ] || fail "the proxy's working directory is $proc_cwd"
ok "pid $PROXY_PID runs as $proc_user in $proc_cwd"
[ -d "$DATA_DIR/wal" ] || fail "no write-ahead queue in $DATA_DIR/wal"
wal_owner="$(stat -c '%U' "$DATA_DIR/wal")"
[ "$wal_owner" = "$USER_NAME" ] || fail "$DATA_DIR/wal is owned by $wal_owner"
ok "write-ahead queue created in $DATA_DIR/wal (owner $wal_owner)"
if [ -n "$PYTHON" ]; then
    grep -q 'READY=1' "$NOTIFY_LOG" || fail "no READY=1 on NOTIFY_SOCKET (Type=notify would time out): $(cat "$NOTIFY_LOG")"
    ok "sd_notify READY=1 received"
fi

# ExecReload's second step. The proxy must survive it (SIGHUP's default
# action would kill it).
kill -HUP "$PROXY_PID"
sleep 1
kill -0 "$PROXY_PID" 2>/dev/null || { cat "$RUN_DIR/proxy.log" >&2; fail "the proxy died on SIGHUP"; }
[ "$(http_code "http://127.0.0.1:$PORT/ping")" = 204 ] || fail "/ping fails after SIGHUP"
ok "survives SIGHUP (systemctl reload) and still answers /ping"

kill -TERM "$PROXY_PID"
start=$SECONDS
rc=""
while [ $((SECONDS - start)) -le "$STOP_LIMIT" ]; do
    if ! kill -0 "$RUNNER_PID" 2>/dev/null; then
        set +e
        wait "$RUNNER_PID"
        rc=$?
        set -e
        break
    fi
    sleep 0.2
done
elapsed=$((SECONDS - start))
[ -n "$rc" ] || { cat "$RUN_DIR/proxy.log" >&2; fail "the proxy did not exit within ${STOP_LIMIT}s of SIGTERM"; }
RUNNER_PID=""
PROXY_PID=""
[ "$rc" -eq 0 ] || { cat "$RUN_DIR/proxy.log" >&2; fail "the proxy exited $rc after SIGTERM, not 0"; }
ok "SIGTERM -> exit 0 in ${elapsed}s (limit ${STOP_LIMIT}s)"
if [ -n "$PYTHON" ]; then
    sleep 0.2
    grep -q 'STOPPING=1' "$NOTIFY_LOG" || fail "no STOPPING=1 on NOTIFY_SOCKET: $(cat "$NOTIFY_LOG")"
    ok "sd_notify STOPPING=1 received (all: $(tr -s '\n ' ' ' <"$NOTIFY_LOG"))"
    kill "$LISTENER_PID" 2>/dev/null || true
    LISTENER_PID=""
fi

# ---------------------------------------------------------------------------
say "upgrade (dpkg -i over the installed package)"
sed -i 's/"flush_size": 10000/"flush_size": 20000/' "$CONFIG"
grep -q '"flush_size": 20000' "$CONFIG" || fail "could not edit $CONFIG"
systemctl disable influx-proxy.service >/dev/null 2>&1 || fail "systemctl disable (offline) failed"
[ ! -e "$WANTS_LINK" ] || fail "systemctl disable left $WANTS_LINK"
dpkg -i "$DEB" >"$WORK/upgrade.log" 2>&1 || { cat "$WORK/upgrade.log" >&2; fail "dpkg -i over the installed package"; }
grep -q '"flush_size": 20000' "$CONFIG" || fail "the upgrade replaced the edited $CONFIG"
ok "edited $CONFIG kept"
expect_stat "$CONFIG" file root:"$USER_NAME" 640
[ ! -e "$WANTS_LINK" ] || fail "the upgrade re-enabled the unit the admin had disabled"
ok "a disabled unit stays disabled"
systemctl enable influx-proxy.service >/dev/null 2>&1 || fail "systemctl enable (offline) failed"
[ -d "$DATA_DIR/wal" ] || fail "the upgrade lost $DATA_DIR/wal"
ok "$DATA_DIR/wal kept"

# ---------------------------------------------------------------------------
say "dpkg -r (remove: config and data are kept)"
dpkg -r "$PKG"
[ "$(pkg_state)" = config-files ] || fail "after dpkg -r the state is '$(pkg_state)', not config-files"
expect_absent "$BIN" "removed with the package"
expect_absent "$UNIT_FILE" "removed with the package"
expect_present "$CONFIG" "conffile"
expect_present "$DEFAULTS" "conffile"
expect_present "$DATA_DIR/wal" "queued writes"
expect_present "$LOG_DIR" "migration logs"
getent passwd "$USER_NAME" >/dev/null || fail "user $USER_NAME removed by dpkg -r"
ok "user $USER_NAME kept"

say "dpkg -P (purge: everything goes)"
dpkg -P "$PKG"
[ -z "$(pkg_state)" ] || [ "$(pkg_state)" = not-installed ] || fail "after dpkg -P the state is '$(pkg_state)'"
expect_absent "$CONFIG" "purged"
expect_absent "$DEFAULTS" "purged"
expect_absent /etc/influx-proxy "purged"
expect_absent "$DATA_DIR" "purged"
expect_absent "$LOG_DIR" "purged"
expect_absent "$WANTS_LINK" "purged"
expect_absent /etc/systemd/system/influx-proxy.service "mask set on remove, dropped on purge"
! getent passwd "$USER_NAME" >/dev/null || fail "user $USER_NAME still exists after purge"
! getent group "$USER_NAME" >/dev/null || fail "group $USER_NAME still exists after purge"
ok "user and group $USER_NAME gone"
! dpkg-statoverride --list "$CONFIG" >/dev/null || fail "the dpkg-statoverride for $CONFIG is left"
ok "statoverride for $CONFIG gone"

# ---------------------------------------------------------------------------
say "rpm $(basename "$RPM")"
rpm -qp --qf '    %{NAME}-%{VERSION}-%{RELEASE}.%{ARCH}: %{SUMMARY}\n' "$RPM"
rpm -qpl "$RPM" >"$WORK/rpm.files"
sed 's/^/    /' "$WORK/rpm.files"
for f in /usr/bin/influx-proxy /usr/lib/systemd/system/influx-proxy.service \
    /etc/influx-proxy/proxy.json /etc/sysconfig/influx-proxy \
    /usr/share/doc/influx-proxy/README.md /usr/share/doc/influx-proxy/packaging.md \
    /usr/share/influx-proxy/grafana/influx-proxy.json; do
    grep -qx "$f" "$WORK/rpm.files" || fail "$f is not in the rpm"
done
ok "rpm -qpl lists every expected path"

# %{FILEFLAGS:fflags}: c = %config, n = noreplace, d = %doc.
rpm -qp --qf '[%{FILENAMES} %{FILEFLAGS:fflags} %{FILEMODES:perms} %{FILEUSERNAME}:%{FILEGROUPNAME}\n]' "$RPM" >"$WORK/rpm.attrs"
expect_rpm_attr() {
    grep -qx "$1" "$WORK/rpm.attrs" || fail "rpm: expected '$1', have: $(grep "^${1%% *} " "$WORK/rpm.attrs")"
    ok "rpm: $1"
}
expect_rpm_attr "/etc/influx-proxy/proxy.json cn -rw-r----- root:influx-proxy"
expect_rpm_attr "/etc/sysconfig/influx-proxy cn -rw-r--r-- root:root"
expect_rpm_attr "/usr/bin/influx-proxy  -rwxr-xr-x root:root"
expect_rpm_attr "/usr/lib/systemd/system/influx-proxy.service  -rw-r--r-- root:root"
expect_rpm_attr "/usr/share/doc/influx-proxy/README.md d -rw-r--r-- root:root"
expect_rpm_attr "/usr/share/influx-proxy/grafana/influx-proxy.json  -rw-r--r-- root:root"

rpm -qp --scripts "$RPM" >"$WORK/rpm.scripts"
for s in preinstall postinstall preuninstall postuninstall; do
    grep -q "^$s scriptlet" "$WORK/rpm.scripts" || fail "rpm has no $s scriptlet"
done
grep -q 'useradd -r' "$WORK/rpm.scripts" || fail "rpm %pre does not create the user"
grep -q 'systemctl --no-reload preset' "$WORK/rpm.scripts" || fail "rpm %post does not apply the preset"
ok "rpm -qp --scripts: preinstall (user), postinstall (dirs, preset), preuninstall, postuninstall"

# Install the payload into a scratch root (no scripts: that root has no shell)
# and compare it with what the .deb shipped.
RPM_ROOT="$WORK/rpmroot"
mkdir "$RPM_ROOT"
rpm --root "$RPM_ROOT" --initdb 2>"$WORK/rpm.err" || { cat "$WORK/rpm.err" >&2; fail "rpm --initdb"; }
rpm --root "$RPM_ROOT" -i --nodeps --noscripts "$RPM" 2>"$WORK/rpm.err" \
    || { cat "$WORK/rpm.err" >&2; fail "rpm -i --root $RPM_ROOT"; }
cmp -s "$RPM_ROOT/usr/bin/influx-proxy" "$BUILT_BIN" || fail "the rpm's binary differs from the built one"
ok "rpm installs into a scratch root; its /usr/bin/influx-proxy is the same binary as the .deb's"
cmp -s "$RPM_ROOT/usr/lib/systemd/system/influx-proxy.service" systemd/influx-proxy.service \
    || fail "the rpm's unit differs from systemd/influx-proxy.service"
cmp -s "$RPM_ROOT/etc/influx-proxy/proxy.json" packaging/etc-proxy.json \
    || fail "the rpm's proxy.json differs from packaging/etc-proxy.json"
ok "rpm unit and proxy.json are the packaged ones"

# Run the package's own scriptlets on this box, as rpm would pass them
# ($1 = 1 on install, 0 on erase): user, directories, and what erase keeps.
say "rpm scriptlets (install, then erase)"
for tag in PREIN POSTIN PREUN POSTUN; do
    rpm -qp --qf "%{$tag}\n" "$RPM" >"$WORK/$tag.sh" 2>/dev/null
done
sh -e "$WORK/PREIN.sh" 1 || fail "rpm %pre failed"
getent passwd "$USER_NAME" >/dev/null || fail "rpm %pre did not create user $USER_NAME"
getent group "$USER_NAME" >/dev/null || fail "rpm %pre did not create group $USER_NAME"
ok "%pre created user and group $USER_NAME"
sh -e "$WORK/POSTIN.sh" 1 || fail "rpm %post failed"
expect_stat "$DATA_DIR" dir "$USER_NAME:$USER_NAME" 750
expect_stat "$LOG_DIR" dir "$USER_NAME:$USER_NAME" 750
sh -e "$WORK/PREUN.sh" 0 || fail "rpm %preun failed"
sh -e "$WORK/POSTUN.sh" 0 || fail "rpm %postun failed"
expect_present "$DATA_DIR" "rpm erase keeps data"
expect_present "$LOG_DIR" "rpm erase keeps logs"
getent passwd "$USER_NAME" >/dev/null || fail "rpm erase removed user $USER_NAME"
ok "%preun/%postun on erase keep data, logs and the user (rpm has no purge)"
rm -rf "$DATA_DIR" "$LOG_DIR"
userdel "$USER_NAME"
getent group "$USER_NAME" >/dev/null && groupdel "$USER_NAME"
ok "cleaned up after the scriptlet run"

say "all package tests passed"
