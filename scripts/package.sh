#!/usr/bin/env bash
# Builds the release binary once and packages that same binary as a .deb
# (cargo-deb) and an .rpm (cargo-generate-rpm). The package layout is in
# Cargo.toml [package.metadata.deb] / [package.metadata.generate-rpm] and
# docs/packaging.md.
#
# Usage: scripts/package.sh
#
# Honours RUSTC_WRAPPER (defaults to sccache when installed) and
# CARGO_TARGET_DIR (default: ./target). Installs cargo-deb and
# cargo-generate-rpm with `cargo install --locked` when they are missing
# (~1.5 and ~4.5 minutes). The last lines of the output name the artifacts:
#   bin: <path of the packaged binary>
#   deb: <path>
#   rpm: <path>
# The binary is built with cargo-zigbuild against glibc 2.28 (installs
# ziglang and cargo-zigbuild from PyPI with pip when missing).
set -euo pipefail
cd "$(dirname "$0")/.."

# Versions the metadata was written and tested against; override to try others.
CARGO_DEB_VERSION="${CARGO_DEB_VERSION:-3.8.0}"
CARGO_GENERATE_RPM_VERSION="${CARGO_GENERATE_RPM_VERSION:-0.21.1}"
# The glibc-2.28 build's toolchain (PyPI), installed with pip when missing.
ZIGLANG_VERSION="${ZIGLANG_VERSION:-0.15.2}"
CARGO_ZIGBUILD_VERSION="${CARGO_ZIGBUILD_VERSION:-0.24.1}"

say() { printf '==> %s\n' "$*"; }
die() {
    printf 'package.sh: error: %s\n' "$*" >&2
    exit 1
}

# Debian 12's system python refuses a plain `pip install` (PEP 668).
pip_install() {
    if ! python3 -m pip --version >/dev/null 2>&1; then
        apt-get install -y -q --no-install-recommends python3-pip >/dev/null
    fi
    python3 -m pip install -q "$@" 2>/dev/null || python3 -m pip install -q --break-system-packages "$@"
}

if command -v sccache >/dev/null && [ -z "${RUSTC_WRAPPER:-}" ]; then
    export RUSTC_WRAPPER=sccache
fi
TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
case "$TARGET_DIR" in
    /*) ;;
    *) TARGET_DIR="$PWD/$TARGET_DIR" ;;
esac

grep -q '^\[package\.metadata\.deb\]' Cargo.toml \
    || die "Cargo.toml has no [package.metadata.deb] section"
grep -q '^\[package\.metadata\.generate-rpm\]' Cargo.toml \
    || die "Cargo.toml has no [package.metadata.generate-rpm] section"

# `cargo install` puts the tools in ~/.cargo/bin; `cargo deb` finds them there.
if ! cargo deb --version >/dev/null 2>&1; then
    say "installing cargo-deb $CARGO_DEB_VERSION"
    cargo install --locked --version "$CARGO_DEB_VERSION" cargo-deb
fi
if ! cargo generate-rpm --version >/dev/null 2>&1; then
    say "installing cargo-generate-rpm $CARGO_GENERATE_RPM_VERSION"
    cargo install --locked --version "$CARGO_GENERATE_RPM_VERSION" cargo-generate-rpm
fi

# The one build, for glibc 2.28 (RHEL/Rocky/Alma 8, Debian 10, Ubuntu 18.10)
# and later: cargo-zigbuild links against zig's glibc 2.28 stubs, so no symbol
# newer than GLIBC_2.28 can be referenced, and zig's libc++ is linked
# statically (RocksDB's C++ needs no libstdc++ on the target). A build on
# this Debian 12 host with plain `cargo build` would need glibc 2.34 and
# GCC 12's libstdc++, which RHEL 8/9 do not have. Its own target directory
# (a different linker and C++ runtime): the first build compiles RocksDB once
# (~20 min on 2 cores), later ones are incremental.
ZIG_TARGET=x86_64-unknown-linux-gnu
ZIG_GLIBC=2.28
ZIG_TARGET_DIR="$TARGET_DIR/zig-glibc$ZIG_GLIBC"
have_zig() { command -v zig >/dev/null || python3 -m ziglang version >/dev/null 2>&1; }
if ! command -v cargo-zigbuild >/dev/null || ! have_zig; then
    say "installing ziglang $ZIGLANG_VERSION and cargo-zigbuild $CARGO_ZIGBUILD_VERSION (pip)"
    pip_install ziglang=="$ZIGLANG_VERSION" cargo-zigbuild=="$CARGO_ZIGBUILD_VERSION"
fi
rustup target list --installed 2>/dev/null | grep -qx "$ZIG_TARGET" || rustup target add "$ZIG_TARGET"
say "cargo zigbuild --release --target $ZIG_TARGET.$ZIG_GLIBC (target dir $ZIG_TARGET_DIR)"
CARGO_TARGET_DIR="$ZIG_TARGET_DIR" cargo zigbuild --release --bin influx-proxy --target "$ZIG_TARGET.$ZIG_GLIBC"
BIN="$ZIG_TARGET_DIR/$ZIG_TARGET/release/influx-proxy"
[ -x "$BIN" ] || die "$BIN was not built"
# Stripped in place (cargo-generate-rpm never strips) and both packagers copy
# that file as is, so the .deb and the .rpm ship the very same bytes
# (scripts/package-test.sh compares them).
if command -v strip >/dev/null; then
    strip --strip-unneeded "$BIN"
fi
"$BIN" -version

DEB_DIR="$TARGET_DIR/debian"
RPM_DIR="$TARGET_DIR/generate-rpm"
# Old artifacts (another version) would make "the" artifact ambiguous.
rm -f "$DEB_DIR"/influx-proxy_*.deb "$RPM_DIR"/influx-proxy-*.rpm

# --target: the assets' target/release/ paths are looked up as
# $CARGO_TARGET_DIR/$ZIG_TARGET/release/ (the zig build's directory).
say "cargo deb --no-build --target $ZIG_TARGET"
CARGO_TARGET_DIR="$ZIG_TARGET_DIR" cargo deb --no-build --no-strip --target "$ZIG_TARGET" --output "$DEB_DIR/"

say "cargo generate-rpm"
mkdir -p "$RPM_DIR"
# xz payload: what RHEL 8/9's own packages use; a zstd payload needs an rpm
# with zstd support (rpmlib(PayloadIsZstd)), not a given on RHEL 8.
cargo generate-rpm --payload-compress xz --target "$ZIG_TARGET" --target-dir "$ZIG_TARGET_DIR" --output "$RPM_DIR/"

shopt -s nullglob
debs=("$DEB_DIR"/influx-proxy_*.deb)
rpms=("$RPM_DIR"/influx-proxy-*.rpm)
[ "${#debs[@]}" -eq 1 ] || die "expected one .deb in $DEB_DIR, found ${#debs[@]}"
[ "${#rpms[@]}" -eq 1 ] || die "expected one .rpm in $RPM_DIR, found ${#rpms[@]}"
echo "bin: $BIN"
echo "deb: ${debs[0]}"
echo "rpm: ${rpms[0]}"
