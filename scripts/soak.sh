#!/usr/bin/env bash
# The long soak: the integration test `watch::soak_hundreds_of_studies_with_flat_memory_and_files`
# run for an hour instead of CI's minute or two. `retriever watch` routes studies that arrive in
# waves from a private Orthanc (the cloud, behind a fault-injecting proxy) to DCMTK storescp (the
# destination), and is killed with SIGKILL and restarted once; a third of the way through the
# destination is stopped for a minute while a wave arrives, two thirds of the way through the
# cloud answers 503 to everything for a minute (and restarts meanwhile). Between waves, with
# everything delivered, the watch is measured at rest. At the end every instance must be at the
# destination (resends only of what was in flight), no study said delivered twice, and the
# restarted watch's memory, open files and threads must not have grown.
#
# Prints, from /proc of the watch process:
# - the series sampled after each wave (seconds, studies uploaded and delivered, RSS in kB, open
#   files, threads, bytes of log);
# - each stretch of rest: the studies in the search's window, the searches, the CPU per search
#   (ms), the bytes written to disk (`write_bytes`), the HTTP requests to the cloud, the bytes
#   passed to write(2), writev(2) and send(2) to any file, socket or eventfd (`wchar`; at rest
#   the search's requests, a few hundred bytes per page of 200 studies, and the HTTP client's
#   8-byte wake-ups, not disk writes) in all and per request, the write calls (`syscw`), and the
#   RSS; then the bytes written to disk per idle hour;
# - for each peer's return, the time to the first delivery after it;
# - the resends, then the test's verdict.
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
# Built by cargo, then run on its own: cargo would hold the build directory's lock for the
# whole hour, and any other build in this tree would wait for it.
test_binary=$(cargo test --locked --test it --no-run --message-format=json |
    python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "it" and m.get("executable"):
        print(m["executable"])')
echo "soak: $studies studies over about $seconds s; samples follow each wave" >&2
RETRIEVER_SOAK_N="$studies" RETRIEVER_SOAK_SECONDS="$seconds" \
    "$test_binary" watch::soak_hundreds_of_studies_with_flat_memory_and_files --exact --nocapture
