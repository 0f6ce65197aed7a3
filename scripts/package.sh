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
#   deb: <path>
#   rpm: <path>
set -euo pipefail
cd "$(dirname "$0")/.."

# Versions the metadata was written and tested against; override to try others.
CARGO_DEB_VERSION="${CARGO_DEB_VERSION:-3.8.0}"
CARGO_GENERATE_RPM_VERSION="${CARGO_GENERATE_RPM_VERSION:-0.21.1}"

say() { printf '==> %s\n' "$*"; }
die() {
    printf 'package.sh: error: %s\n' "$*" >&2
    exit 1
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

# The one build. It is stripped in place (cargo-generate-rpm never strips) and
# both packagers copy that file as is, so the .deb and the .rpm ship the very
# same bytes (scripts/package-test.sh compares them).
say "cargo build --release --bin influx-proxy (target dir $TARGET_DIR)"
cargo build --release --bin influx-proxy
BIN="$TARGET_DIR/release/influx-proxy"
[ -x "$BIN" ] || die "$BIN was not built"
if command -v strip >/dev/null; then
    strip --strip-unneeded "$BIN"
fi
"$BIN" -version

DEB_DIR="$TARGET_DIR/debian"
RPM_DIR="$TARGET_DIR/generate-rpm"
# Old artifacts (another version) would make "the" artifact ambiguous.
rm -f "$DEB_DIR"/influx-proxy_*.deb "$RPM_DIR"/influx-proxy-*.rpm

say "cargo deb --no-build"
cargo deb --no-build --no-strip --output "$DEB_DIR/"

say "cargo generate-rpm"
mkdir -p "$RPM_DIR"
cargo generate-rpm --target-dir "$TARGET_DIR" --output "$RPM_DIR/"

shopt -s nullglob
debs=("$DEB_DIR"/influx-proxy_*.deb)
rpms=("$RPM_DIR"/influx-proxy-*.rpm)
[ "${#debs[@]}" -eq 1 ] || die "expected one .deb in $DEB_DIR, found ${#debs[@]}"
[ "${#rpms[@]}" -eq 1 ] || die "expected one .rpm in $RPM_DIR, found ${#rpms[@]}"
echo "deb: ${debs[0]}"
echo "rpm: ${rpms[0]}"
