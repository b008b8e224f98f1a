#!/usr/bin/env python3
"""Benchmarks: retriever against the tools people would use instead, on the same data, in one run.

    scripts/bench.sh [--large N] [--repeat K]

Starts a private Orthanc with DICOMweb on loopback, loads a generated large CT study (N instances of
512x512 16-bit, default 300, ~157 MB) and the small test studies, then measures, best of K runs:

  fetch   retriever fetch of the large study (writing, syncing and checking every instance)
          against curl of the same WADO-RS study URL to /dev/null (what the server can give),
          and against the Python dicomweb-client (iter_study streamed to files, and retrieve_study
          written to files); peak RSS of retriever for a small and for the large study.

Prints one line per measurement and the ratios. Speed is measured here, never in the tests.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
USER, PASSWORD = "retriever", "s3cret-pw"
ACCEPT = 'multipart/related; type="application/dicom"; transfer-syntax=*'


def run_measured(cmd, env=None, cwd=None):
    """Runs cmd, returns (seconds, peak RSS in MiB, stdout). Fails loudly on a non-zero exit."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    out = proc.stdout.read().decode(errors="replace")
    err = proc.stderr.read().decode(errors="replace")
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        sys.exit(f"bench: {' '.join(cmd)} failed with exit status {code}:\n{err}")
    return elapsed, usage.ru_maxrss / 1024.0, out


def best(k, fn):
    results = [fn() for _ in range(k)]
    return min(results, key=lambda r: r[0]), max(r[1] for r in results)


DWC_SCRIPT = r"""
import os, sys
from dicomweb_client.api import DICOMwebClient
from dicomweb_client.session_utils import create_session_from_user_pass
url, user, pw, study, out, mode = sys.argv[1:7]
client = DICOMwebClient(url=url, session=create_session_from_user_pass(user, pw))
os.makedirs(out, exist_ok=True)
if mode == "stream":
    for i, ds in enumerate(client.iter_study(study)):
        ds.save_as(os.path.join(out, f"{i}.dcm"))
else:
    for i, ds in enumerate(client.retrieve_study(study)):
        ds.save_as(os.path.join(out, f"{i}.dcm"))
"""


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--large", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    binary = os.path.join(ROOT, "target", "release", "retriever")
    data = os.path.join(ROOT, "target", f"benchdata-{args.large}")
    subprocess.run([sys.executable, os.path.join(HERE, "gen_testdata.py"), data, "--large", str(args.large)], check=True)
    index = json.load(open(os.path.join(data, "index.json")))
    big = next(s for s in index["studies"] if s["accession"] == "ACCBIG")
    small = next(s for s in index["studies"] if s["accession"] == "ACC2001")
    big_bytes = sum(i["size"] for se in big["series"] for i in se["instances"])

    work = tempfile.mkdtemp(prefix="retriever-bench-")
    orthanc = subprocess.Popen(
        [sys.executable, os.path.join(HERE, "orthanc.py"), "run", "--workdir", os.path.join(work, "orthanc"),
         "--user", f"{USER}:{PASSWORD}", "--upload", data],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        state = json.loads(orthanc.stdout.readline())
        url = state["dicomweb_url"]
        print(f"data: {big['num_instances']} instances, {big_bytes / 1e6:.1f} MB (study {big['study_uid']}); "
              f"Orthanc at {url}, best of {args.repeat}")

        def curl():
            return run_measured(["curl", "-sf", "-u", f"{USER}:{PASSWORD}", "-H", f"Accept: {ACCEPT}",
                                 "-o", "/dev/null", f"{url}/studies/{big['study_uid']}"])

        def fetch(study):
            def go():
                cache = tempfile.mkdtemp(prefix="cache-", dir=work)
                env = dict(os.environ, RETRIEVER_PASSWORD=PASSWORD)
                r = run_measured([binary, "fetch", study["accession"], "--priors", "0", "--quiet",
                                  "--cloud", url, "--user", USER, "--cache", cache], env=env)
                shutil.rmtree(cache)
                return r
            return go

        def dwc(mode):
            def go():
                out = tempfile.mkdtemp(prefix="dwc-", dir=work)
                r = run_measured([sys.executable, "-c", DWC_SCRIPT, url, USER, PASSWORD, big["study_uid"], out, mode])
                shutil.rmtree(out)
                return r
            return go

        (t_curl, _, _), rss_curl = best(args.repeat, curl)
        (t_fetch, _, _), rss_big = best(args.repeat, fetch(big))
        (t_small, _, _), rss_small = best(args.repeat, fetch(small))
        (t_stream, _, _), rss_stream = best(args.repeat, dwc("stream"))
        (t_whole, _, _), rss_whole = best(max(1, args.repeat - 1), dwc("whole"))

        mb = big_bytes / 1e6
        print(f"curl WADO-RS study -> /dev/null        {t_curl:7.3f} s  {mb / t_curl:7.0f} MB/s  peak RSS {rss_curl:6.1f} MiB")
        print(f"retriever fetch (large study)          {t_fetch:7.3f} s  {mb / t_fetch:7.0f} MB/s  peak RSS {rss_big:6.1f} MiB")
        print(f"retriever fetch (small study)          {t_small:7.3f} s                peak RSS {rss_small:6.1f} MiB")
        print(f"dicomweb-client iter_study -> files    {t_stream:7.3f} s  {mb / t_stream:7.0f} MB/s  peak RSS {rss_stream:6.1f} MiB")
        print(f"dicomweb-client retrieve_study -> files{t_whole:7.3f} s  {mb / t_whole:7.0f} MB/s  peak RSS {rss_whole:6.1f} MiB")
        print("ratios (higher is better for retriever):")
        print(f"  fetch throughput / curl throughput            {t_curl / t_fetch:5.2f}   (target >= 0.8)")
        print(f"  fetch speed-up over dicomweb-client streamed  {t_stream / t_fetch:5.2f}   (target >= 3)")
        print(f"  fetch speed-up over dicomweb-client whole     {t_whole / t_fetch:5.2f}")
        print(f"  peak RSS large / small study                  {rss_big / rss_small:5.2f}   (flat: ~1; target < 64 MiB)")
    finally:
        orthanc.stdin.close()
        orthanc.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
