#!/usr/bin/env bash
# Cross-compiles retriever for Windows (x86_64-pc-windows-gnu, linked with Debian's mingw-w64)
# and checks what it can of the result, as CI runs it (scripts/test.sh):
#
#   1. installs Debian's gcc-mingw-w64-x86-64 (the linker) if missing;
#   2. needs Rust's standard library for the target (`rustup target add x86_64-pc-windows-gnu`);
#      when rustup cannot add it here (no network to rustup), says so and skips;
#   3. `cargo clippy` for the target, so that code behind #[cfg(windows)] is type-checked and
#      lint-clean, and `cargo build --release` of the binary;
#   4. checks that target/x86_64-pc-windows-gnu/release/retriever.exe is a PE32+ x86-64
#      executable;
#   5. runs `retriever.exe --version` and the unit tests under Wine when Wine is installed and
#      can run it. Debian 12's Wine 8.0 cannot: today's Rust standard library imports
#      ProcessPrng from bcryptprimitives.dll, which Wine 8.0 lacks. The script then says that
#      only the cross build was checked. (WINDOWS_BUILD_WINE=1 installs Debian's wine first.)
#
# WINDOWS_BUILD_PROFILE=dev builds the debug profile instead of release (several times faster
# from cold, for a quicker CI). Prints how long each step took. Exits non-zero when the build or a
# check fails.
set -euo pipefail
cd "$(dirname "$0")/.."

TARGET=x86_64-pc-windows-gnu
LINKER=x86_64-w64-mingw32-gcc
PROFILE=${WINDOWS_BUILD_PROFILE:-release}

log() { echo "windows-build: $*" >&2; }
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi
apt_install() {
    log "apt-get install $*"
    $SUDO apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}
timed() {
    local name=$1 start=$SECONDS
    shift
    "$@"
    log "$name took $((SECONDS - start)) s"
}

if ! command -v "$LINKER" >/dev/null 2>&1; then
    apt_install gcc-mingw-w64-x86-64
fi

if ! rustup target list --installed 2>/dev/null | grep -qx "$TARGET"; then
    log "rustup target add $TARGET"
    if ! rustup target add "$TARGET" >&2; then
        log "SKIPPED: Rust's standard library for $TARGET is not installed and rustup could not add it"
        log "(run \`rustup target add $TARGET\` where rustup can reach static.rust-lang.org)"
        exit 0
    fi
fi

# CARGO_TARGET_DIR may point elsewhere (the tests honour it too).
target_dir=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
case "$PROFILE" in
    release) exe="$target_dir/$TARGET/release/retriever.exe" ;;
    dev) exe="$target_dir/$TARGET/debug/retriever.exe" ;;
    *) log "WINDOWS_BUILD_PROFILE must be release or dev, not \`$PROFILE\`"; exit 2 ;;
esac

timed "cargo clippy --target $TARGET" \
    cargo clippy --locked --quiet --target "$TARGET" --lib --bins -- -D warnings
timed "cargo build --profile $PROFILE --target $TARGET" \
    cargo build --locked --quiet --profile "$PROFILE" --target "$TARGET"

# A PE32+ image: "MZ", the offset of the PE header at 0x3c, "PE\0\0", machine 0x8664 (x86-64),
# and optional-header magic 0x20b (PE32+).
check_pe() {
    local file=$1
    [ "$(head -c 2 "$file")" = "MZ" ] || return 1
    local pe
    pe=$(od -An -tu4 -j 60 -N 4 "$file" | tr -d ' ')
    [ "$(od -An -tx1 -j "$pe" -N 4 "$file" | tr -d ' \n')" = "50450000" ] || return 1
    [ "$(od -An -tx2 -j $((pe + 4)) -N 2 "$file" | tr -d ' \n')" = "8664" ] || return 1
    [ "$(od -An -tx2 -j $((pe + 24)) -N 2 "$file" | tr -d ' \n')" = "020b" ] || return 1
}
if ! check_pe "$exe"; then
    log "FAILED: \`$exe\` is not a PE32+ x86-64 executable"
    exit 1
fi
description="PE32+ x86-64"
if command -v file >/dev/null 2>&1; then
    description=$(file -b "$exe")
fi
log "built \`$exe\` ($(du -h "$exe" | cut -f1)): $description"

if [ "${WINDOWS_BUILD_WINE:-0}" = 1 ] && ! command -v wine >/dev/null 2>&1; then
    apt_install wine wine64 || log "Debian's wine did not install"
fi
if ! command -v wine >/dev/null 2>&1; then
    log "Wine is not installed: only the cross build was checked, the program was not run"
    log "(Debian 12's Wine 8.0 could not run it anyway: it lacks ProcessPrng in bcryptprimitives.dll,"
    log " which Rust's standard library needs; set WINDOWS_BUILD_WINE=1 to install it and try)"
    exit 0
fi
export WINEDEBUG=-all WINEPREFIX="$target_dir/wineprefix"
if version=$(timeout 120 wine "$exe" --version 2>/tmp/windows-build-wine.$$); then
    log "under Wine: $version"
    timed "unit tests under Wine" \
        env CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUNNER=wine cargo test --locked --quiet --profile "$PROFILE" --target "$TARGET" --lib
else
    log "Wine could not run retriever.exe: only the cross build was checked"
    log "(Wine $(wine --version 2>/dev/null || echo '?'); Wine before 9 lacks ProcessPrng in bcryptprimitives.dll,"
    log " which Rust's standard library needs)"
    sed 's/^/windows-build:   wine: /' /tmp/windows-build-wine.$$ | tail -n 5 >&2
fi
rm -f /tmp/windows-build-wine.$$
