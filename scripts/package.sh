#!/usr/bin/env bash
# Builds the release binary once (scripts/toolchain.sh: glibc 2.28, the same
# build the test suite runs) and packages that same binary as a .deb
# (dpkg-deb) and an .rpm (rpmbuild). The layout is in packaging/ (deb control,
# rpm spec), the maintainer scripts in debian/ and rpm/, and docs/packaging.md
# describes it. Debian's own packagers: nothing is compiled from source but
# the proxy.
#
# Usage: scripts/package.sh
#
# Honours CARGO_TARGET_DIR (default: ./target). dpkg-deb comes with dpkg,
# rpmbuild with Debian's `rpm` package (installed when missing); zig and
# cargo-zigbuild are PyPI wheels (scripts/toolchain.sh). The last lines of the
# output name the artifacts:
#   bin: <path of the packaged binary>
#   deb: <path>
#   rpm: <path>
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

say() { printf '==> %s\n' "$*"; }
die() {
    printf 'package.sh: error: %s\n' "$*" >&2
    exit 1
}

# shellcheck source=scripts/toolchain.sh
. "$ROOT/scripts/toolchain.sh"
# shellcheck source=scripts/apt-need.sh
. "$ROOT/scripts/apt-need.sh"
apt_need dpkg-deb:dpkg rpmbuild:rpm strip:binutils

VERSION="$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)"
[ -n "$VERSION" ] || die "no version in Cargo.toml"

ensure_zigbuild
say "cargo-zigbuild test --release --workspace --all-targets --no-run --target $BUILD_TARGET (the tests' build)"
build_release
[ -x "$RELEASE_DIR/influx-proxy" ] || die "$RELEASE_DIR/influx-proxy was not built"

PKG_DIR="$TARGET_DIR/package"
rm -rf "$PKG_DIR"
mkdir -p "$PKG_DIR"
# A stripped copy: cargo's own artifact stays as built (the tests run it),
# and both packages ship these very bytes (scripts/package-test.sh compares).
BIN="$PKG_DIR/influx-proxy"
cp "$RELEASE_DIR/influx-proxy" "$BIN"
strip --strip-unneeded "$BIN"
"$BIN" -version

# stage DIR UNIT_DIR ENV_FILE: the installed tree, modes as installed.
stage() {
    local dir="$1"
    install -D -m 755 "$BIN" "$dir/usr/bin/influx-proxy"
    install -D -m 644 systemd/influx-proxy.service "$dir/$2/influx-proxy.service"
    install -D -m 640 packaging/etc-proxy.json "$dir/etc/influx-proxy/proxy.json"
    install -D -m 644 packaging/influx-proxy.default "$dir/$3"
    install -D -m 644 README.md "$dir/usr/share/doc/influx-proxy/README.md"
    install -D -m 644 docs/packaging.md "$dir/usr/share/doc/influx-proxy/packaging.md"
    install -D -m 644 packaging/grafana/influx-proxy.json "$dir/usr/share/influx-proxy/grafana/influx-proxy.json"
}

# --- .deb --------------------------------------------------------------------
say "dpkg-deb --build"
DEB_ROOT="$PKG_DIR/deb-root"
stage "$DEB_ROOT" lib/systemd/system etc/default/influx-proxy
mkdir -p "$DEB_ROOT/DEBIAN"
(cd "$DEB_ROOT" && find . -path ./DEBIAN -prune -o -type f -printf '%P\n' | sort | xargs md5sum) >"$DEB_ROOT/DEBIAN/md5sums"
installed_kb="$(du -sk --exclude=DEBIAN "$DEB_ROOT" | cut -f1)"
sed -e "s/@VERSION@/$VERSION/" -e "s/@INSTALLED_SIZE@/$installed_kb/" packaging/deb/control.in >"$DEB_ROOT/DEBIAN/control"
# Files under /etc are conffiles: kept across upgrades once edited.
printf '/etc/default/influx-proxy\n/etc/influx-proxy/proxy.json\n' >"$DEB_ROOT/DEBIAN/conffiles"
for script in postinst prerm postrm; do
    install -m 755 "debian/$script" "$DEB_ROOT/DEBIAN/$script"
done
chmod 0644 "$DEB_ROOT/DEBIAN/control" "$DEB_ROOT/DEBIAN/conffiles" "$DEB_ROOT/DEBIAN/md5sums"
DEB="$PKG_DIR/influx-proxy_${VERSION}-1_amd64.deb"
dpkg-deb --root-owner-group -Zxz --build "$DEB_ROOT" "$DEB" >/dev/null

# --- .rpm --------------------------------------------------------------------
say "rpmbuild -bb"
RPM_STAGE="$PKG_DIR/rpm-root"
stage "$RPM_STAGE" usr/lib/systemd/system etc/sysconfig/influx-proxy
RPM_TOP="$PKG_DIR/rpmbuild"
mkdir -p "$RPM_TOP"/{BUILD,RPMS,SPECS,SOURCES,SRPMS}
sed -e "s|@VERSION@|$VERSION|" -e "s|@STAGE@|$RPM_STAGE|" -e "s|@SCRIPTS@|$ROOT/rpm|" \
    packaging/rpm/influx-proxy.spec.in >"$RPM_TOP/SPECS/influx-proxy.spec"
# xz payload: what RHEL 8/9's own packages use; a zstd payload needs an rpm
# with zstd support (rpmlib(PayloadIsZstd)), not a given on RHEL 8.
rpmbuild -bb --quiet --target x86_64-linux \
    --define "_topdir $RPM_TOP" \
    --define "_binary_payload w6.xzdio" \
    "$RPM_TOP/SPECS/influx-proxy.spec" >"$PKG_DIR/rpmbuild.log" 2>&1 \
    || { cat "$PKG_DIR/rpmbuild.log" >&2; die "rpmbuild failed"; }
RPM="$PKG_DIR/influx-proxy-${VERSION}-1.x86_64.rpm"
cp "$RPM_TOP/RPMS/x86_64/influx-proxy-${VERSION}-1.x86_64.rpm" "$RPM"

echo "bin: $BIN"
echo "deb: $DEB"
echo "rpm: $RPM"
