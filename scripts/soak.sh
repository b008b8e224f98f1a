#!/usr/bin/env bash
# The long soak: the integration test `watch::soak_hundreds_of_studies_with_flat_memory_and_files`
# run for an hour instead of CI's two minutes. `retriever watch` routes studies that arrive in
# waves from a private Orthanc (the cloud) to DCMTK storescp (the destination), and is killed
# with SIGKILL and restarted once; the destination and the cloud are restarted mid-run. At the
# end every instance must be at the destination (resends only of what was in flight), and the
# restarted watch's memory, open files and threads must not have grown.
#
# Prints the series sampled after each wave (seconds, studies uploaded and delivered, RSS in kB,
# open files, threads, bytes the watch wrote to its log) and the resends, then the test's verdict.
#
#   scripts/soak.sh                     # 3000 studies over an hour
#   SOAK_STUDIES=600 SOAK_SECONDS=600 scripts/soak.sh
#
# Linux only (it reads /proc). Exits non-zero when the test fails.
set -euo pipefail
cd "$(dirname "$0")/.."

studies=${SOAK_STUDIES:-3000}
seconds=${SOAK_SECONDS:-3600}

bash scripts/install-peers.sh
echo "soak: $studies studies over about $seconds s; samples follow each wave" >&2
RETRIEVER_SOAK_N="$studies" RETRIEVER_SOAK_SECONDS="$seconds" \
    cargo test --locked --test it watch::soak_hundreds_of_studies_with_flat_memory_and_files \
    -- --exact --nocapture
