#!/usr/bin/env bash
# Benchmarks retriever against curl, DCMTK and dicomweb-client on the same data; see scripts/bench.py.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-peers.sh
exec python3 scripts/bench.py "$@"
