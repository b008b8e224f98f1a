#!/usr/bin/env bash
# Makes the release archive of retriever for one platform, with what an installation needs:
#
#   retriever-VERSION-TARGET/
#     retriever (retriever.exe)       the program
#     README.md                       the README's "Install" and "Everyday use" sections
#     man/retriever.1                 the manual page
#     completions/                    bash, zsh, fish and PowerShell completions
#     examples/                       example config files (Windows: retriever.json only)
#     systemd/                        (Linux) the watch service, the prune service and timer,
#                                     the sysusers.d file that creates the service account
#     windows/                        (Windows) the scripts of scripts/windows/
#     LICENSE*                        when the repository has them
#
# as target/package/retriever-VERSION-TARGET.tar.gz (Linux) or .zip (Windows), next to a
# .sha256 file that `sha256sum -c` checks.
#
#   scripts/package.sh [--target TRIPLE] [--binary PATH] [--out DIR]
#
#   --target TRIPLE  the platform (default: this machine's, as rustc names it). Windows
#                    (x86_64-pc-windows-gnu) is cross-built by scripts/windows-build.sh.
#   --binary PATH    package this already built program instead of building it in release
#   --out DIR        where the archive goes (default: target/package)
#
# Exits non-zero, saying why, when the build fails or something the archive needs is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { echo "package: $*" >&2; }
fail() {
    log "error: $*"
    exit 1
}
usage() {
    sed -n '/^#   scripts\/package.sh/,/^#   --out/p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

target=""
binary=""
out="target/package"
while [ $# -gt 0 ]; do
    case "$1" in
        --target) [ $# -ge 2 ] || usage; target=$2; shift 2 ;;
        --binary) [ $# -ge 2 ] || usage; binary=$2; shift 2 ;;
        --out) [ $# -ge 2 ] || usage; out=$2; shift 2 ;;
        -h | --help) usage ;;
        *) log "unknown argument \`$1\`"; usage ;;
    esac
done

host=$(rustc -vV 2>/dev/null | sed -n 's/^host: //p') || true
if [ -z "$target" ]; then
    [ -n "$host" ] || fail "could not ask \`rustc -vV\` for this machine's target; pass --target TRIPLE"
    target=$host
fi
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
[ -n "$version" ] || fail "no \`version = \"...\"\` in \`Cargo.toml\`"

case "$target" in
    *-windows-*) windows=true; exe=retriever.exe ;;
    *-linux-*) windows=false; exe=retriever ;;
    *) fail "no archive layout for target \`$target\`: only Linux and Windows targets are packaged" ;;
esac

if [ -z "$binary" ]; then
    if [ "$windows" = true ]; then
        [ "$target" = x86_64-pc-windows-gnu ] \
            || fail "scripts/windows-build.sh builds only x86_64-pc-windows-gnu, not \`$target\`"
        log "building with scripts/windows-build.sh"
        WINDOWS_BUILD_PROFILE=release scripts/windows-build.sh
    else
        log "cargo build --locked --release --target $target"
        cargo build --locked --release --target "$target"
    fi
    binary="target/$target/release/$exe"
fi
[ -f "$binary" ] || fail "the program \`$binary\` does not exist; build it, or leave out --binary to build it here"

# A program of another version (a stale build) would be shipped under this version's name.
# Only a program for this machine can be asked.
if [ "$target" = "$host" ]; then
    said=$("$binary" --version 2>&1) || fail "\`$binary --version\` failed: $said"
    [ "$said" = "retriever $version" ] \
        || fail "\`$binary\` says \`$said\`, not \`retriever $version\`; rebuild it"
fi

name="retriever-$version-$target"
mkdir -p "$out"
out=$(cd "$out" && pwd)
stage=$(mktemp -d "$out/.stage.XXXXXX")
trap 'rm -rf "$stage"' EXIT
root="$stage/$name"
mkdir -p "$root/man" "$root/completions" "$root/examples"

install -m755 "$binary" "$root/$exe"
install -m644 man/retriever.1 "$root/man/"
install -m644 completions/* "$root/completions/"
if [ "$windows" = true ]; then
    # The Linux example names Linux paths; the other one shows every key, with Windows paths.
    install -m644 examples/retriever.json "$root/examples/"
    mkdir -p "$root/windows"
    install -m644 scripts/windows/* "$root/windows/"
else
    install -m644 examples/*.json "$root/examples/"
    mkdir -p "$root/systemd"
    install -m644 scripts/systemd/* "$root/systemd/"
fi
for license in LICENSE*; do
    if [ -f "$license" ]; then
        install -m644 "$license" "$root/"
    fi
done

# The README's "Install" and "Everyday use" sections, each up to the next top-level heading.
awk '
    /^## / { keep = ($0 == "## Install" || $0 == "## Everyday use") }
    keep
' README.md >"$stage/sections.md"
grep -q '^## Install$' "$stage/sections.md" || fail "README.md has no \`## Install\` section"
grep -q '^## Everyday use$' "$stage/sections.md" || fail "README.md has no \`## Everyday use\` section"
{
    echo "# retriever $version ($target)"
    echo
    echo "The installation and everyday use of retriever, from its README; the manual page"
    echo "(man/retriever.1) documents every subcommand, option and config file key."
    echo
    cat "$stage/sections.md"
} >"$root/README.md"
chmod 644 "$root/README.md"

if [ "$windows" = true ]; then
    command -v zip >/dev/null || fail "\`zip\` is missing (Debian: apt-get install zip)"
    archive="$name.zip"
    rm -f "$out/$archive"
    (cd "$stage" && zip -qrX "$out/$archive" "$name")
else
    archive="$name.tar.gz"
    tar -C "$stage" --sort=name --owner=0 --group=0 --numeric-owner -czf "$out/$archive.tmp" "$name"
    mv "$out/$archive.tmp" "$out/$archive"
fi
(cd "$out" && sha256sum "$archive" >"$archive.sha256")
log "wrote $out/$archive and $archive.sha256"
