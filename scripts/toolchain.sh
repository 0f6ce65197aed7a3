# Sourced by the build, test, package and bench scripts: the one build every
# one of them uses.
#
# Everything is built once, for glibc 2.28 (RHEL/Rocky/Alma 8, Debian 10,
# Ubuntu 18.10 and later) with cargo-zigbuild: zig links against glibc 2.28
# stubs, so no symbol newer than GLIBC_2.28 can be referenced, and zig's libc++
# is linked statically (RocksDB's C++ needs no libstdc++ on the target). The
# test suite runs on that build too, so it tests the very binary the .deb and
# the .rpm ship, and RocksDB's C++ (~20 minutes on 2 cores) is compiled once,
# not once for the host and once more for the packages.
#
# Sets:
#   BUILD_TARGET  the cargo-zigbuild target (triple plus glibc version)
#   TARGET_DIR    absolute CARGO_TARGET_DIR (default: ./target), exported
#   RELEASE_DIR   where the release binaries land
# Provides:
#   ensure_zigbuild  installs ziglang and cargo-zigbuild (PyPI wheels, seconds)
#                    and the rustup target when missing
#   zig_cargo CMD    cargo-zigbuild CMD --release --target $BUILD_TARGET ...
#                    (CMD: build, test, clippy)
#   build_release    the release build of every target, binaries in $RELEASE_DIR

ZIG_TRIPLE=x86_64-unknown-linux-gnu
ZIG_GLIBC=2.28
BUILD_TARGET="$ZIG_TRIPLE.$ZIG_GLIBC"
# Versions the scripts were written and tested against; override to try others.
ZIGLANG_VERSION="${ZIGLANG_VERSION:-0.15.2}"
CARGO_ZIGBUILD_VERSION="${CARGO_ZIGBUILD_VERSION:-0.24.1}"

TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
case "$TARGET_DIR" in
    /*) ;;
    *) TARGET_DIR="$PWD/$TARGET_DIR" ;;
esac
export CARGO_TARGET_DIR="$TARGET_DIR"
RELEASE_DIR="$TARGET_DIR/$ZIG_TRIPLE/release"

# Debian 12's system python refuses a plain `pip install` (PEP 668).
pip_install() {
    if ! python3 -m pip --version >/dev/null 2>&1; then
        apt-get install -y -q --no-install-recommends python3-pip >/dev/null
    fi
    python3 -m pip install -q "$@" 2>/dev/null || python3 -m pip install -q --break-system-packages "$@"
}

ensure_zigbuild() {
    if ! command -v cargo-zigbuild >/dev/null \
        || ! { command -v zig >/dev/null || python3 -m ziglang version >/dev/null 2>&1; }; then
        printf '==> installing ziglang %s and cargo-zigbuild %s (pip)\n' "$ZIGLANG_VERSION" "$CARGO_ZIGBUILD_VERSION"
        pip_install ziglang=="$ZIGLANG_VERSION" cargo-zigbuild=="$CARGO_ZIGBUILD_VERSION"
    fi
    rustup target list --installed 2>/dev/null | grep -qx "$ZIG_TRIPLE" || rustup target add "$ZIG_TRIPLE"
}

zig_cargo() {
    local cmd="$1"
    shift
    [ "$cmd" = build ] && cmd=zigbuild
    cargo-zigbuild "$cmd" --release --target "$BUILD_TARGET" "$@"
}

# Every target of every crate of the workspace, as `cargo test --all-targets` builds them. Not `cargo build --bin`: with
# resolver 2, a build without the test targets resolves the dev-dependencies' features away,
# which gives several shared crates (serde, regex, ...) other features, so other hashes: a second
# build of them and of the proxy, and a packaged binary that is not the one the tests ran.
build_release() {
    zig_cargo test --workspace --all-targets --no-run "$@"
}
