#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run) and as a developer can on a fresh machine:
# installs the test peers if missing, then format check, clippy, the layers check, and every test.
# Exits non-zero on the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*" >&2; }

step "peers (scripts/install-peers.sh)"
bash scripts/install-peers.sh

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets --locked -- -D warnings

step "layers (scripts/layers.py): modules only import lower ones"
python3 scripts/layers.py src

step "cargo test"
cargo test --locked

step "Windows cross build (scripts/windows-build.sh)"
# The debug profile proves the Windows build as well as release does, in a third of the time.
WINDOWS_BUILD_PROFILE="${WINDOWS_BUILD_PROFILE:-dev}" bash scripts/windows-build.sh
