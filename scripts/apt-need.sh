# Sourced by the package scripts: installs the Debian packages behind the
# commands a script needs, only those missing, with one `apt-get update`.
#
# apt_need COMMAND:PACKAGE ...
apt_need() {
    local need=() pair
    for pair in "$@"; do
        command -v "${pair%%:*}" >/dev/null || need+=("${pair#*:}")
    done
    [ "${#need[@]}" -gt 0 ] || return 0
    printf '==> installing %s (apt-get)\n' "${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    # apt-get flaked once mid-run on these machines: repair and retry once.
    apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null \
        || { dpkg --configure -a; apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null; }
}
