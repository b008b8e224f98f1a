#!/usr/bin/env bash
# The demo: retriever's main job against local peers, on a fresh Debian machine, in one command.
#
#   1. installs the peers when missing (scripts/install-peers.sh: Orthanc with its DICOMweb
#      plugin, DCMTK; pydicom/pynetdicom in a virtual environment, target/venv, never in the
#      system's Python) and builds retriever (release; the first build takes minutes, and
#      shows cargo's progress);
#   2. generates test studies (scripts/gen_testdata.py into target/demodata): patients with a
#      current study and their prior studies;
#   3. starts a private Orthanc on 127.0.0.1 as the "cloud" and loads the studies into it;
#   4. starts DCMTK storescp on 127.0.0.1 as the PACS;
#   5. writes a config file for them and shows it with `retriever config`;
#   6. routes: `retriever watch --once` (one pass: search the cloud, fetch each new study with its
#      priors, deliver them);
#   7. shows the cache (`retriever ls`) and what the PACS received;
# and stops everything it started, however it ends. Everything lives under target/demo.
# Progress bars show when stderr is a terminal.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
WORK="$ROOT/target/demo"
DATA="$ROOT/target/demodata"
BIN="$ROOT/target/release/retriever"
VENV="$ROOT/target/venv"
PY="$VENV/bin/python"
PACS_AET=DEMOPACS

if [ -t 2 ]; then
    say() { printf '\n\033[1m== %s\033[0m\n' "$*" >&2; }
else
    say() { printf '\n== %s\n' "$*" >&2; }
fi
log() { echo "demo: $*" >&2; }

storescp_pid=""
orthanc_started=false
cleanup() {
    local status=$?
    if [ -n "$storescp_pid" ]; then
        kill "$storescp_pid" 2>/dev/null || true
        wait "$storescp_pid" 2>/dev/null || true
    fi
    if [ "$orthanc_started" = true ]; then
        "$PY" scripts/orthanc.py stop --workdir "$WORK/orthanc" >/dev/null 2>&1 || true
    fi
    if [ "$status" -ne 0 ]; then
        log "failed (exit status $status); logs are in $WORK"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say "1/7 peers and build"
log "checking the peers (Orthanc, DCMTK; Python packages in $VENV), installing what is missing"
PEERS_VENV="$VENV" bash scripts/install-peers.sh
if ! command -v cargo >/dev/null 2>&1; then
    # Debian's own Rust is too old for this crate (edition 2024).
    if [ -x "$HOME/.cargo/bin/cargo" ]; then
        export PATH="$HOME/.cargo/bin:$PATH"
    elif command -v curl >/dev/null 2>&1; then
        log "installing Rust with rustup (https://rustup.rs)"
        curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal >&2
        export PATH="$HOME/.cargo/bin:$PATH"
    else
        log "Rust is not installed: install it from https://rustup.rs, then run this again"
        exit 1
    fi
fi
# Measured: a cold `cargo build --release` takes 2m45s on a 2-core machine (about 200 s of
# CPU), plus the download of the crates the first time; a rebuild takes seconds.
if [ -x "$BIN" ]; then
    log "compiling retriever (release) if anything changed"
else
    log "compiling retriever (release): the first build takes about 3 minutes on 2 cores, more on a"
    log "slower machine, and downloads the crates it needs first; later runs take seconds"
fi
cargo build --release --locked
log "built $BIN ($("$BIN" --version))"

say "2/7 test studies"
"$PY" scripts/gen_testdata.py "$DATA" --large 120
log "$("$PY" -c 'import json,sys; d=json.load(open(sys.argv[1])); print(len(d["studies"]), "studies,", sum(s["num_instances"] for s in d["studies"]), "instances")' "$DATA/index.json") in $DATA"

say "3/7 the cloud: a private Orthanc with DICOMweb on 127.0.0.1"
rm -rf "$WORK"
mkdir -p "$WORK/pacs"
"$PY" scripts/orthanc.py start --workdir "$WORK/orthanc" --upload "$DATA" >"$WORK/orthanc.json"
orthanc_started=true
cloud=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["dicomweb_url"])' "$WORK/orthanc.json")
log "DICOMweb at $cloud (user retriever), loaded with the studies"

say "4/7 the PACS: DCMTK storescp on 127.0.0.1"
port=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# /usr/bin: pynetdicom installs a Python `storescp` too, which may come first on PATH.
# TCP_NODELAY=1: DCMTK otherwise waits for a delayed ACK after every C-STORE.
TCP_NODELAY=1 /usr/bin/storescp -aet "$PACS_AET" --output-directory "$WORK/pacs" +xa -dhl "$port" \
    >"$WORK/storescp.log" 2>&1 &
storescp_pid=$!
for _ in $(seq 100); do
    if "$PY" -c 'import socket,sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1).close()' "$port" 2>/dev/null; then
        break
    fi
    kill -0 "$storescp_pid" 2>/dev/null || { cat "$WORK/storescp.log" >&2; exit 1; }
    sleep 0.1
done
log "storescp as $PACS_AET@127.0.0.1:$port, writing to $WORK/pacs"

say "5/7 the configuration"
printf '%s\n' "s3cret-pw" >"$WORK/password.txt"
chmod 600 "$WORK/password.txt"
cat >"$WORK/retriever.json" <<EOF
{
  "cloud": "$cloud",
  "user": "retriever",
  "password_file": "$WORK/password.txt",
  "to": "$PACS_AET@127.0.0.1:$port",
  "cache": "$WORK/cache"
}
EOF
chmod 600 "$WORK/retriever.json"
export RETRIEVER_CONFIG="$WORK/retriever.json"
log "$RETRIEVER_CONFIG:"
sed 's/^/    /' "$RETRIEVER_CONFIG" >&2
"$BIN" config
"$BIN" echo

say "6/7 route: retriever watch --once (search the cloud, fetch new studies with their priors, deliver)"
"$BIN" watch --once

say "7/7 what is in the cache, and what the PACS received"
"$BIN" ls
received=$(find "$WORK/pacs" -type f | wc -l)
studies=$(find "$WORK/pacs" -type f -exec /usr/bin/dcmdump -q +P StudyInstanceUID {} + 2>/dev/null \
    | grep -o '\[[0-9.]*\]' | sort -u | wc -l)
log "the PACS ($PACS_AET) received $received instances of $studies studies, in $WORK/pacs"
