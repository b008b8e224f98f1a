#!/usr/bin/env python3
"""Benchmarks: retriever against the tools people would use instead, on the same data, in one run.

    scripts/bench.sh [--large N] [--repeat K]

Starts a private Orthanc with DICOMweb on loopback, loads a generated large CT study (N instances of
512x512 16-bit, default 300, ~157 MB) and the small test studies, then measures, best of K runs:

  fetch   retriever fetch of the large study (writing, syncing and checking every instance)
          against curl of the same WADO-RS study URL to /dev/null (what the server can give),
          against curl of that URL and of the study's QIDO-RS instance list at the same time
          (what any client that checks the study is complete must wait for), and against the Python dicomweb-client (iter_study streamed to files, and retrieve_study
          written to files); peak RSS of retriever for a small and for the large study.
          Then the same fetch and curl of the study through a WAN-like link (scripts/wan_proxy.py:
          20 ms each way, 100 Mbit/s shared by all connections), where a hospital's line is.
  store   retriever store of the cached large study and of a study of M small instances
          (--many, default 2000) against DCMTK storescu (one association, the same files, the
          same storescp writing files to /dev/shm, TCP_NODELAY=1 on both DCMTK sides); runs of
          the tools compared alternate; retriever with 1 and
          with 4 associations against storescp --fork; peak RSS of retriever store.
  coerce  retriever store of the cached large study with no coercion against a PatientID rule,
          and over plain TCP against DICOM TLS (storescp +tls, a private CA made with openssl).
  router  a current CT (the large study) with 3 priors, all in the cloud: time until every
          instance is at the destination, for `retriever watch --once` against the naive
          sequential route (dicomweb-client iter_study of the study and its priors to files, then
          one DCMTK storescu of all of them) and against the limit any router has here (the slower
          of curl of every study at once and that storescu, each alone); and the time to first
          image: from the start of `watch --once` (or of `fetch --store` of the large study) to
          the first instance of each study that storescp wrote (its file's mtime), the median
          over the router's studies. With the CPU that retriever, Orthanc and storescp each used,
          and what the target leaves retriever once the peers have taken theirs (the floor part of
          fetch prints the same for fetch against Orthanc).
  route   two destinations (two storescp, a config file's `destinations`) against one (`--to`),
          three ways, each in alternating rounds: the router's set (the large study and its
          priors) by `watch --once`, where the fetch, both lanes and both storescp share the CPU;
          delivery alone, `retriever store` of that set from the full cache; and DCMTK storescu
          sending the cached files to one storescp, then to two at once, the floor the peers set.

With --baseline OLD_BINARY, the fetch and the router are measured for that binary too, in the same
alternating rounds, and the ratios are given for both, as medians with their spread (min-max).

Prints one line per measurement and the ratios. Speed is measured here, never in the tests.
"""

import argparse
import glob
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
USER, PASSWORD = "retriever", "s3cret-pw"
ACCEPT = 'multipart/related; type="application/dicom"; transfer-syntax=*'


# What each run writes (caches, downloaded files) is left in the work directory until the end, not
# removed between runs: on ext4 without a journal (as on the machine this was written on), a file
# created soon after many others were deleted takes a slow path (the allocator skips the recently
# freed inodes, reading inode tables as it goes), which measured the file system's recent history
# rather than the tools.


def run_measured(cmd, env=None, cwd=None):
    """Runs cmd, returns (seconds, peak RSS in MiB, stdout). Fails loudly on a non-zero exit."""
    return run_measured_cpu(cmd, env, cwd)[:3]


def cpu_seconds(pid):
    """The CPU time (user and system) process `pid` has used so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_measured_cpu(cmd, env=None, cwd=None):
    """As run_measured, and the CPU time (user and system) cmd used, in seconds, as a fourth."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    out = proc.stdout.read().decode(errors="replace")
    err = proc.stderr.read().decode(errors="replace")
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        sys.exit(f"bench: {' '.join(cmd)} failed with exit status {code}:\n{err}")
    return elapsed, usage.ru_maxrss / 1024.0, out, usage.ru_utime + usage.ru_stime


def best(k, fn):
    return alternate(k, fn)[0]


def rounds(k, *fns):
    """As alternate, but every run's result: for each fn, the list of k (seconds, RSS, out)."""
    results = [[] for _ in fns]
    for _ in range(k):
        for i, fn in enumerate(fns):
            results[i].append(fn())
    return results


def spread(values):
    """'median (min-max)' of a list of numbers."""
    v = sorted(values)
    n = len(v)
    median = v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2
    return f"{median:5.2f} ({v[0]:.2f}-{v[-1]:.2f})"


def median(values):
    v = sorted(values)
    n = len(v)
    return v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2


def alternate(k, *fns):
    """Runs the measurements in turn, k rounds, so that whatever drifts on the machine during a run
    (other load, a destination directory filling up) falls on every tool alike. For each: the
    fastest run, and the highest peak RSS."""
    results = [[] for _ in fns]
    for _ in range(k):
        for i, fn in enumerate(fns):
            results[i].append(fn())
    return [(min(r, key=lambda x: x[0]), max(x[1] for x in r)) for r in results]


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
    parser.add_argument("--many", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", choices=["fetch", "floor", "wan", "store", "router", "coerce", "route"],
                        help="run one part only (wan: the WAN-like link part of fetch; floor: fetch against "
                             "the archive's floor, round by round; coerce: store with and without a PatientID rule, and over DICOM TLS; "
                             "route: watch --once to two destinations against one)")
    parser.add_argument("--binary", help="the retriever to measure (default: built here with --release)")
    parser.add_argument("--baseline", help="an older retriever to measure alongside, round for round")
    parser.add_argument("--wan-delay-ms", type=float, default=20.0, help="one-way delay of the WAN link")
    parser.add_argument("--wan-rate-mbit", type=float, default=100.0, help="rate of the WAN link")
    parser.add_argument("--store-rate", action="store_true",
                        help="run only the store rate: the --many small instances over one association, "
                             "retriever store against DCMTK storescu (a Nagle stall shows as 10x slower)")
    args = parser.parse_args()

    binary = args.binary
    if binary is None:
        subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
        target = os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target")
        binary = os.path.join(target, "release", "retriever")
    args.binary_path = binary
    data = os.path.join(ROOT, "target", f"benchdata-{args.large}")
    subprocess.run([sys.executable, os.path.join(HERE, "gen_testdata.py"), data, "--large", str(args.large),
                    "--many", str(args.many), "--large-priors"], check=True)
    index = json.load(open(os.path.join(data, "index.json")))
    big = next(s for s in index["studies"] if s["accession"] == "ACCBIG")
    small = next(s for s in index["studies"] if s["accession"] == "ACC2001")
    many = next(s for s in index["studies"] if s["accession"] == "ACCMANY")
    big_bytes = sum(i["size"] for se in big["series"] for i in se["instances"])

    work = tempfile.mkdtemp(prefix="retriever-bench-")
    orthanc = subprocess.Popen(
        [sys.executable, os.path.join(HERE, "orthanc.py"), "run", "--workdir", os.path.join(work, "orthanc"),
         "--user", f"{USER}:{PASSWORD}", "--upload", data],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        state = json.loads(orthanc.stdout.readline())
        url = state["dicomweb_url"]
        args.orthanc_pid = state["pid"]
        print(f"data: {big['num_instances']} instances, {big_bytes / 1e6:.1f} MB (study {big['study_uid']}); "
              f"Orthanc at {url}, best of {args.repeat}")

        def curl(url=url):
            return run_measured(["curl", "-sf", "-u", f"{USER}:{PASSWORD}", "-H", f"Accept: {ACCEPT}",
                                 "-o", "/dev/null", f"{url}/studies/{big['study_uid']}"])

        def fetch(study, url=url, binary=binary):
            def go():
                cache = tempfile.mkdtemp(prefix="cache-", dir=work)
                env = dict(os.environ, RETRIEVER_PASSWORD=PASSWORD)
                return run_measured([binary, "fetch", study["accession"], "--priors", "0", "--quiet",
                                     "--cloud", url, "--user", USER, "--cache", cache], env=env)
            return go

        def dwc(mode):
            def go():
                out = tempfile.mkdtemp(prefix="dwc-", dir=work)
                return run_measured([sys.executable, "-c", DWC_SCRIPT, url, USER, PASSWORD, big["study_uid"], out,
                                     mode])
            return go

        if args.store_rate:
            bench_store_rate(args, url, many, work, binary, data)
            return
        if args.only in (None, "fetch"):
            bench_fetch(args, url, big, small, big_bytes, work, binary, curl, fetch, dwc)
        if args.only in (None, "fetch", "floor"):
            bench_floor(args, url, big, fetch)
        if args.only in (None, "fetch", "wan"):
            bench_wan(args, url, big, big_bytes, curl, fetch)
        if args.only in (None, "store"):
            bench_store(args, url, big, many, work, binary, data)
        if args.only in (None, "coerce"):
            bench_coerce(args, url, big, work, binary)
        if args.only in (None, "router"):
            priors = [s for s in index["studies"] if s["accession"].startswith("ACCBIGP")]
            bench_router(args, url, big, priors, work, binary, data)
        if args.only in (None, "route"):
            priors = [s for s in index["studies"] if s["accession"].startswith("ACCBIGP")]
            bench_route(args, url, big, priors, work, binary)
    finally:
        orthanc.stdin.close()
        orthanc.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)


def bench_fetch(args, url, big, small, big_bytes, work, binary, curl, fetch, dwc):
    def floor():
        return curl_floor(url, big)

    ((t_curl, _, _), rss_curl), ((t_floor, _, _), _), ((t_fetch, _, _), rss_big), ((t_stream, _, _), rss_stream) = \
        alternate(args.repeat, curl, floor, fetch(big), dwc("stream"))
    (t_small, _, _), rss_small = best(args.repeat, fetch(small))
    (t_whole, _, _), rss_whole = best(max(1, args.repeat - 1), dwc("whole"))

    mb = big_bytes / 1e6
    print(f"curl WADO-RS study -> /dev/null        {t_curl:7.3f} s  {mb / t_curl:7.0f} MB/s  peak RSS {rss_curl:6.1f} MiB")
    print(f"curl WADO-RS study + QIDO-RS instance list, together {t_floor:6.3f} s")
    print(f"retriever fetch (large study)          {t_fetch:7.3f} s  {mb / t_fetch:7.0f} MB/s  peak RSS {rss_big:6.1f} MiB")
    print(f"retriever fetch (small study)          {t_small:7.3f} s                peak RSS {rss_small:6.1f} MiB")
    print(f"dicomweb-client iter_study -> files    {t_stream:7.3f} s  {mb / t_stream:7.0f} MB/s  peak RSS {rss_stream:6.1f} MiB")
    print(f"dicomweb-client retrieve_study -> files{t_whole:7.3f} s  {mb / t_whole:7.0f} MB/s  peak RSS {rss_whole:6.1f} MiB")
    print("ratios (higher is better for retriever):")
    print(f"  fetch throughput / curl throughput            {t_curl / t_fetch:5.2f}   (target >= 0.8)")
    print(f"  fetch time / (curl retrieve + list) time      {t_fetch / t_floor:5.2f}   (the archive's own limit: 1)")
    print(f"  fetch speed-up over dicomweb-client streamed  {t_stream / t_fetch:5.2f}   (target >= 3)")
    print(f"  fetch speed-up over dicomweb-client whole     {t_whole / t_fetch:5.2f}")
    print(f"  peak RSS large / small study                  {rss_big / rss_small:5.2f}   (flat: ~1; target < 64 MiB)")


def curl_floor(url, study):
    """The archive's floor for what fetch must do: the study's WADO-RS retrieve and its QIDO-RS instance
    list, asked for at the same time, neither written anywhere."""
    auth = ["-sf", "-u", f"{USER}:{PASSWORD}", "-o", "/dev/null"]
    start = time.perf_counter()
    procs = [subprocess.Popen(["curl"] + auth + ["-H", f"Accept: {ACCEPT}", f"{url}/studies/{study['study_uid']}"]),
             subprocess.Popen(["curl"] + auth + [f"{url}/studies/{study['study_uid']}/instances"
                                                 "?includefield=0020000E"])]
    if any(p.wait() != 0 for p in procs):
        sys.exit("bench: curl of the study or of its instance list failed")
    return time.perf_counter() - start, 0.0, ""


def bench_floor(args, url, big, fetch):
    """fetch of the large study against the archive's floor, round by round (each round: the floor, then
    each binary), so that the ratio of each round compares runs made under the same load. With the CPU
    each side used: Orthanc's is the same whoever asks, so what the target leaves for retriever's own
    CPU shows whether it can be met on this machine at all."""
    binaries = [("retriever", args.binary_path)] + ([("baseline", args.baseline)] if args.baseline else [])
    orthanc = args.orthanc_pid

    def with_cpu(fn):
        def go():
            before = cpu_seconds(orthanc), children_cpu()
            t, rss, out = fn()[:3]
            return t, rss, out, children_cpu() - before[1], cpu_seconds(orthanc) - before[0]
        return go

    fns = [with_cpu(lambda: curl_floor(url, big))] + [with_cpu(fetch(big, binary=b)) for _, b in binaries]
    results = rounds(args.repeat, *fns)
    floors = [r[0] for r in results[0]]
    cores = os.cpu_count()
    print(f"archive floor (curl retrieve + listing together), {args.repeat} rounds: median {median(floors):.3f} s; "
          f"CPU: curl {median([r[3] for r in results[0]]):.3f} s, Orthanc {median([r[4] for r in results[0]]):.3f} s")
    for (name, _), runs in zip(binaries, results[1:]):
        times = [r[0] for r in runs]
        ratios = [f / t for f, t in zip(floors, times)]
        print(f"  {name:9s} fetch median {median(times):.3f} s, peak RSS {max(r[1] for r in runs):5.1f} MiB; "
              f"floor / fetch {spread(ratios)}   (target >= 0.7)")
        # At the target, fetch takes floor / 0.7; over that time the machine's cores give that many
        # CPU seconds, of which Orthanc takes what it takes.
        print(f"  {name:9s} CPU of one fetch, median: retriever {median([r[3] for r in runs]):.3f} s, Orthanc "
              f"{median([r[4] for r in runs]):.3f} s; the target leaves retriever "
              f"{spread([f / 0.7 * cores - r[4] for f, r in zip(floors, runs)])} s of CPU")


def children_cpu():
    """CPU time (user and system) of every child process waited for so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def bench_wan(args, url, big, big_bytes, curl, fetch):
    """fetch and curl of the large study through a WAN-like link: what a hospital's line allows."""
    upstream = urllib.parse.urlsplit(url)
    proxy = subprocess.Popen([sys.executable, os.path.join(HERE, "wan_proxy.py"), "--to", upstream.netloc,
                              "--delay-ms", str(args.wan_delay_ms), "--rate-mbit", str(args.wan_rate_mbit)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        port = int(proxy.stdout.readline())
        wan = upstream._replace(netloc=f"127.0.0.1:{port}").geturl()
        ((t_curl, _, _), _), ((t_fetch, _, _), rss) = alternate(args.repeat, lambda: curl(wan), fetch(big, wan))
    finally:
        proxy.stdin.close()
        proxy.wait(timeout=30)
    mb = big_bytes / 1e6
    link = f"{args.wan_delay_ms:g} ms each way, {args.wan_rate_mbit:g} Mbit/s"
    print(f"WAN-like link ({link}), best of {args.repeat}:")
    print(f"curl WADO-RS study -> /dev/null        {t_curl:7.3f} s  {mb / t_curl:7.1f} MB/s")
    print(f"retriever fetch (large study)          {t_fetch:7.3f} s  {mb / t_fetch:7.1f} MB/s  peak RSS {rss:6.1f} MiB")
    print(f"  WAN fetch throughput / curl throughput        {t_curl / t_fetch:5.2f}   (target >= 0.95)")


def dcmtk(tool):
    """DCMTK's own tool: pynetdicom installs Python scripts of the same names earlier on PATH."""
    path = os.path.join("/usr/bin", tool)
    if not os.access(path, os.X_OK):
        sys.exit(f"bench: DCMTK {tool} is not installed at {path}; run scripts/install-peers.sh")
    return path


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Storescp:
    """DCMTK storescp writing files, on a free port, TCP_NODELAY on."""

    def __init__(self, work, fork=False, tls=None):
        # In memory where possible: the destination's disk is not what is compared, and on ext4
        # (without a journal, as here) creating a file gets slower the more files were deleted
        # recently, so a destination on disk drifts from run to run.
        where = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else work
        self.dir = tempfile.mkdtemp(prefix="retriever-bench-storescp-", dir=where)
        self.port = free_port()
        flags = ["+xa", "--output-directory", self.dir] + (["--fork"] if fork else [])
        if tls:
            # DICOM TLS (BCP 195 profile, DCMTK's default): tls = (key file, certificate file).
            flags += ["+tls", tls[0], tls[1], "-ic"]
        env = dict(os.environ, TCP_NODELAY="1")
        self.proc = subprocess.Popen([dcmtk("storescp"), "-aet", "DEST"] + flags + [str(self.port)], env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 10
        import socket
        while time.time() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        sys.exit("bench: storescp did not start")

    def clear(self):
        # A new directory, not an emptied one: an ext4 directory keeps the size it grew to, and one
        # that has seen thousands of files come and go makes every new file slower to create,
        # which would penalise whichever tool runs later.
        shutil.rmtree(self.dir)
        os.mkdir(self.dir)

    def count(self):
        return len(os.listdir(self.dir))

    def stop(self):
        self.proc.kill()
        self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def bench_store(args, url, big, many, work, binary, data):
    cache = tempfile.mkdtemp(prefix="store-cache-", dir=work)
    env = dict(os.environ, RETRIEVER_PASSWORD=PASSWORD)
    base = ["--cloud", url, "--user", USER, "--cache", cache, "--quiet"]
    run_measured([binary, "fetch", big["accession"], many["accession"], "--priors", "0"] + base, env=env)
    runs = iter(range(1, 10_000))

    def retriever_store(study, scp, associations):
        def go():
            scp.clear()
            # A called AE title of its own per run: a fresh delivery journal, so everything is sent.
            dest = f"DEST{next(runs)}@127.0.0.1:{scp.port}"
            r = run_measured([binary, "store", study["study_uid"], "--to", dest,
                              "--associations", str(associations)] + base, env=env)
            if scp.count() != study["num_instances"]:
                sys.exit(f"bench: storescp received {scp.count()} of {study['num_instances']} instances")
            return r
        return go

    def storescu(study, scp):
        files = [os.path.join(data, i["path"]) for se in study["series"] for i in se["instances"]]

        def go():
            scp.clear()
            env_nd = dict(os.environ, TCP_NODELAY="1")
            # storescu takes the files as arguments; a study of 2,000 fits in one command line.
            r = run_measured([dcmtk("storescu"), "-aet", "RETRIEVER", "-aec", "DEST", "127.0.0.1", str(scp.port)]
                             + files, env=env_nd)
            if scp.count() != study["num_instances"]:
                sys.exit(f"bench: storescp received {scp.count()} of {study['num_instances']} instances")
            return r
        return go

    scp = Storescp(work)
    try:
        rows = []
        for study in (big, many):
            ((t_scu, _, _), _), ((t_ret, _, _), rss) = alternate(
                args.repeat, storescu(study, scp), retriever_store(study, scp, 1))
            rows.append((study, t_scu, t_ret, rss))
    finally:
        scp.stop()
    fork = Storescp(work, fork=True)
    try:
        parallel = []
        for study in (big, many):
            ((t1, _, _), _), ((t4, _, _), rss4) = alternate(
                args.repeat, retriever_store(study, fork, 1), retriever_store(study, fork, 4))
            parallel.append((study, t1, t4, rss4))
    finally:
        fork.stop()
    for study, t_scu, t_ret, rss in rows:
        n = study["num_instances"]
        print(f"store {n:5d} instances: storescu {t_scu:6.3f} s ({n / t_scu:6.0f}/s)   "
              f"retriever 1 assoc {t_ret:6.3f} s ({n / t_ret:6.0f}/s)   peak RSS {rss:5.1f} MiB   "
              f"ratio {t_scu / t_ret:4.2f} (target >= 1.0)")
    for study, t1, t4, rss4 in parallel:
        n = study["num_instances"]
        print(f"store {n:5d} instances to storescp --fork: 1 assoc {t1:6.3f} s, 4 assoc {t4:6.3f} s "
              f"(speed-up {t1 / t4:4.2f}), peak RSS {rss4:5.1f} MiB")



def bench_coerce(args, url, big, work, binary):
    """retriever store of the cached large study with no coercion against a PatientID rule (each
    instance's data set re-encoded, its pixel data streamed): the rule's cost (target <= 1.3 x)."""
    cache = tempfile.mkdtemp(prefix="coerce-cache-", dir=work)
    env = dict(os.environ, RETRIEVER_PASSWORD=PASSWORD)
    base = ["--cloud", url, "--user", USER, "--cache", cache, "--quiet"]
    run_measured([binary, "fetch", big["accession"], "--priors", "0"] + base, env=env)
    rules = os.path.join(work, "coerce.json")
    with open(rules, "w") as f:
        json.dump({"coerce": [{"set": "PatientID", "value": "EXT-{value}"}]}, f)
    runs = iter(range(1, 10_000))
    scp = Storescp(work)

    def store(config):
        def go():
            scp.clear()
            dest = f"DEST{next(runs)}@127.0.0.1:{scp.port}"
            r = run_measured([binary] + config + ["store", big["study_uid"], "--to", dest] + base, env=env)
            if scp.count() != big["num_instances"]:
                sys.exit(f"bench: storescp received {scp.count()} of {big['num_instances']} instances")
            return r
        return go

    bench_tls(args, big, work, binary, base, env)
    try:
        ((t_plain, _, _), rss_plain), ((t_rule, _, _), rss_rule) = alternate(
            args.repeat, store([]), store(["--config", rules]))
    finally:
        scp.stop()
    n = big["num_instances"]
    print(f"coerce {n:5d} instances: no rules {t_plain:6.3f} s (peak RSS {rss_plain:5.1f} MiB)   "
          f"PatientID rule {t_rule:6.3f} s (peak RSS {rss_rule:5.1f} MiB)   "
          f"ratio {t_rule / t_plain:4.2f} (target <= 1.3)")


def bench_tls(args, big, work, binary, base, env):
    """retriever store of the cached large study to the same storescp build over plain TCP and
    over DICOM TLS with a private CA: what encryption costs on the PACS hop."""
    pki = tempfile.mkdtemp(prefix="tls-", dir=work)
    key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def openssl(*a):
        subprocess.run(["openssl", *a], cwd=pki, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    openssl("req", "-x509", *key, "-keyout", "ca.key", "-out", "ca.pem", "-days", "1", "-subj", "/CN=bench CA")
    openssl("req", *key, "-keyout", "pacs.key", "-out", "pacs.csr", "-subj", "/CN=127.0.0.1")
    with open(os.path.join(pki, "pacs.ext"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    openssl("x509", "-req", "-in", "pacs.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "pacs.pem", "-days", "1", "-extfile", "pacs.ext")
    runs = iter(range(1, 10_000))
    plain = Storescp(work)
    secure = Storescp(work, tls=(os.path.join(pki, "pacs.key"), os.path.join(pki, "pacs.pem")))

    def store(scp, extra):
        def go():
            scp.clear()
            dest = f"DEST{next(runs)}@127.0.0.1:{scp.port}"
            r = run_measured([binary, "store", big["study_uid"], "--to", dest] + extra + base, env=env)
            if scp.count() != big["num_instances"]:
                sys.exit(f"bench: storescp received {scp.count()} of {big['num_instances']} instances")
            return r
        return go

    try:
        ((t_plain, _, _), _), ((t_tls, _, _), rss_tls) = alternate(
            args.repeat, store(plain, []),
            store(secure, ["--to-tls", "--to-ca", os.path.join(pki, "ca.pem")]))
    finally:
        plain.stop()
        secure.stop()
    n = big["num_instances"]
    print(f"store {n:5d} instances: plain TCP {t_plain:6.3f} s   DICOM TLS {t_tls:6.3f} s "
          f"(peak RSS {rss_tls:5.1f} MiB)   ratio {t_tls / t_plain:4.2f}")


def bench_store_rate(args, url, many, work, binary, data):
    """Small instances over one association, retriever store against DCMTK storescu on the same
    files and the same storescp: the rate, printed. Timing on a shared machine is noise, so it is
    measured here and not asserted in the tests; a delayed-ACK stall per C-STORE still shows."""
    cache = tempfile.mkdtemp(prefix="store-rate-cache-", dir=work)
    env = dict(os.environ, RETRIEVER_PASSWORD=PASSWORD)
    base = ["--cloud", url, "--user", USER, "--cache", cache, "--quiet"]
    run_measured([binary, "fetch", many["accession"], "--priors", "0"] + base, env=env)
    files = [os.path.join(data, i["path"]) for se in many["series"] for i in se["instances"]]
    n = many["num_instances"]
    runs = iter(range(1, 10_000))
    scp = Storescp(work)

    def received(r):
        if scp.count() != n:
            sys.exit(f"bench: storescp received {scp.count()} of {n} instances")
        return r

    def ours():
        scp.clear()
        # A called AE title of its own per run: a fresh delivery journal, so everything is sent.
        dest = f"DEST{next(runs)}@127.0.0.1:{scp.port}"
        return received(run_measured([binary, "store", many["study_uid"], "--to", dest, "--associations", "1"]
                                     + base, env=env))

    def theirs():
        scp.clear()
        return received(run_measured([dcmtk("storescu"), "-aet", "RETRIEVER", "-aec", "DEST", "127.0.0.1",
                                      str(scp.port)] + files, env=dict(os.environ, TCP_NODELAY="1")))

    try:
        ((t_ours, _, _), _), ((t_theirs, _, _), _) = alternate(args.repeat, ours, theirs)
    finally:
        scp.stop()
    print(f"store rate, {n} instances in one association: retriever {n / t_ours:.0f}/s ({t_ours:.3f} s), "
          f"DCMTK storescu {n / t_theirs:.0f}/s ({t_theirs:.3f} s)")


DWC_MANY = r"""
import os, sys
from dicomweb_client.api import DICOMwebClient
from dicomweb_client.session_utils import create_session_from_user_pass
url, user, pw, out = sys.argv[1:5]
client = DICOMwebClient(url=url, session=create_session_from_user_pass(user, pw))
os.makedirs(out, exist_ok=True)
n = 0
for study in sys.argv[5:]:
    for ds in client.iter_study(study):
        ds.save_as(os.path.join(out, f"{n}.dcm"))
        n += 1
"""


def bench_router(args, url, big, priors, work, binary, data):
    studies = [big] + priors
    total = sum(s["num_instances"] for s in studies)
    scp = Storescp(work)
    runs = iter(range(1, 10_000))
    try:
        def naive():
            scp.clear()
            out = tempfile.mkdtemp(prefix="naive-", dir=work)
            start = time.perf_counter()
            _, rss, _ = run_measured([sys.executable, "-c", DWC_MANY, url, USER, PASSWORD, out]
                                     + [s["study_uid"] for s in studies])
            files = [os.path.join(out, f) for f in os.listdir(out)]
            send, _, _ = run_measured([dcmtk("storescu"), "-aet", "RETRIEVER", "-aec", "DEST", "127.0.0.1",
                                       str(scp.port)] + files, env=dict(os.environ, TCP_NODELAY="1"))
            elapsed = time.perf_counter() - start
            if scp.count() != total:
                sys.exit(f"bench: the naive route delivered {scp.count()} of {total} instances")
            shutil.rmtree(out)
            return elapsed, rss, send

        def curl_all():
            """Every study's WADO-RS retrieve by curl, all at once, to /dev/null: the fastest the
            archive gives them on this machine."""
            auth = ["-sf", "-u", f"{USER}:{PASSWORD}", "-o", "/dev/null", "-H", f"Accept: {ACCEPT}"]
            start = time.perf_counter()
            procs = [subprocess.Popen(["curl"] + auth + [f"{url}/studies/{s['study_uid']}"]) for s in studies]
            if any(p.wait() != 0 for p in procs):
                sys.exit("bench: curl of a study failed")
            return time.perf_counter() - start, 0.0, ""

        study_of = {i["sop_uid"]: s["study_uid"] for s in studies for se in s["series"] for i in se["instances"]}

        def first_images(started):
            """Seconds from `started` (wall clock) to the first file storescp wrote for each study."""
            first = {}
            for name in os.listdir(scp.dir):
                # storescp names each file MODALITY.SOP_INSTANCE_UID.
                study = study_of.get(name.split(".", 1)[-1])
                mtime = os.stat(os.path.join(scp.dir, name)).st_mtime
                if study is not None and (study not in first or mtime < first[study]):
                    first[study] = mtime
            return sorted(t - started for t in first.values())

        def watch(binary):
            def go():
                scp.clear()
                cache = tempfile.mkdtemp(prefix="watch-cache-", dir=work)
                env = dict(os.environ, RETRIEVER_PASSWORD=PASSWORD)
                started = time.time()
                peers = cpu_seconds(args.orthanc_pid), cpu_seconds(scp.proc.pid)
                t, rss, _, cpu = run_measured_cpu([binary, "watch", "--once", "--quiet", "--filter",
                                                   f"AccessionNumber={big['accession']}",
                                                   "--to", f"DEST{next(runs)}@127.0.0.1:{scp.port}", "--cloud",
                                                   url, "--user", USER, "--cache", cache], env=env)
                if scp.count() != total:
                    sys.exit(f"bench: watch delivered {scp.count()} of {total} instances")
                # storescp may still be writing the last file it was sent; it is counted whole.
                cpus = (cpu, cpu_seconds(args.orthanc_pid) - peers[0], cpu_seconds(scp.proc.pid) - peers[1])
                return t, rss, first_images(started), cpus
            return go

        def fetch_store(binary):
            def go():
                scp.clear()
                cache = tempfile.mkdtemp(prefix="fetch-store-cache-", dir=work)
                env = dict(os.environ, RETRIEVER_PASSWORD=PASSWORD)
                started = time.time()
                t, rss, _ = run_measured([binary, "fetch", big["accession"], "--priors", "0", "--store", "--quiet",
                                          "--to", f"DEST{next(runs)}@127.0.0.1:{scp.port}", "--cloud", url,
                                          "--user", USER, "--cache", cache], env=env)
                if scp.count() != big["num_instances"]:
                    sys.exit(f"bench: fetch --store delivered {scp.count()} of {big['num_instances']} instances")
                return t, rss, first_images(started)
            return go

        binaries = [("retriever", binary)] + ([("baseline", args.baseline)] if args.baseline else [])
        fns = [naive, curl_all]
        for _, b in binaries:
            fns += [watch(b), fetch_store(b)]
        results = rounds(args.repeat, *fns)
    finally:
        scp.stop()
    naive_times = [r[0] for r in results[0]]
    # The limit of any router on this machine: the slower of fetching every study (curl, all at
    # once) and sending them (storescu of the naive route's files), each measured alone.
    limits = [max(r[2], c[0]) for r, c in zip(results[0], results[1])]
    print(f"router: current study + {len(priors)} priors, {total} instances, {args.repeat} rounds: "
          f"naive route median {median(naive_times):6.3f} s")
    print(f"  limit: the slower of curl of every study at once ({median([c[0] for c in results[1]]):6.3f} s) "
          f"and storescu of them ({median([r[2] for r in results[0]]):6.3f} s), median {median(limits):6.3f} s; "
          f"limit / naive {spread([l / n for l, n in zip(limits, naive_times)])}")
    for k, (name, _) in enumerate(binaries):
        watches, stores = results[2 + 2 * k], results[3 + 2 * k]
        times = [r[0] for r in watches]
        ratios = [t / n for t, n in zip(times, naive_times)]
        ttfi = [median(r[2]) for r in watches]
        first = [r[2][0] for r in watches]
        store_ttfi = [r[2][0] for r in stores]
        print(f"  {name:9s} watch --once median {median(times):6.3f} s (peak RSS {max(r[1] for r in watches):5.1f} MiB); "
              f"watch / naive {spread(ratios)}   (target <= 0.35); "
              f"watch / limit {spread([t / l for t, l in zip(times, limits)])}")
        print(f"  {name:9s} time to first image, watch --once: median over the studies {spread(ttfi)} s, "
              f"first study {spread(first)} s   (target < 1 s)")
        print(f"  {name:9s} time to first image, fetch --store (large study): {spread(store_ttfi)} s, "
              f"whole fetch --store median {median([r[0] for r in stores]):6.3f} s")
        # What the CPU allows: the peers' own work (Orthanc serving the studies, storescp taking them)
        # is the same for any router; spread over the machine's cores it is the least time any router
        # could take here, even one that cost no CPU itself.
        cores = os.cpu_count()
        ours, archive, dest = (median([r[3][i] for r in watches]) for i in range(3))
        peers_bound = [(r[3][1] + r[3][2]) / cores for r in watches]
        print(f"  {name:9s} CPU of one watch --once, median: retriever {ours:5.3f} s, Orthanc {archive:5.3f} s, "
              f"storescp {dest:5.3f} s; all three over {cores} cores {(ours + archive + dest) / cores:5.3f} s, "
              f"the peers' part alone {median(peers_bound):5.3f} s = "
              f"{spread([b / n for b, n in zip(peers_bound, naive_times)])} x naive; the target 0.35 x naive "
              f"leaves retriever {spread([0.35 * n * cores - r[3][1] - r[3][2] for r, n in zip(watches, naive_times)])} "
              f"s of CPU")


def bench_route(args, url, big, priors, work, binary):
    """Two destinations against one, three ways, each in alternating rounds: the whole router
    (`watch --once`: the fetch and both lanes share the CPU), delivery alone (`store` from a full
    cache), and DCMTK storescu sending the cached files to one storescp, then to two at once (the
    floor the peers set)."""
    total = sum(s["num_instances"] for s in [big] + priors)
    scps = [Storescp(work), Storescp(work)]
    runs = iter(range(1, 10_000))
    env = dict(os.environ, RETRIEVER_PASSWORD=PASSWORD)
    kept = []

    def where(two):
        """Command-line arguments naming one destination or two, with AE titles never used before,
        so that nothing counts as delivered already."""
        run = next(runs)
        if not two:
            return ["--to", f"DEST{run}@127.0.0.1:{scps[0].port}"]
        config = os.path.join(work, f"route-{run}.json")
        with open(config, "w") as f:
            json.dump({"destinations": [
                {"name": f"first{run}", "to": f"DEST{run}@127.0.0.1:{scps[0].port}"},
                {"name": f"second{run}", "to": f"DEST{run}@127.0.0.1:{scps[1].port}"}]}, f)
        return ["--config", config]

    def check(two, what):
        got = [scp.count() for scp in (scps if two else scps[:1])]
        if any(n != total for n in got):
            sys.exit(f"bench: {what} delivered {got} of {total} instances to each destination")

    def watch(two):
        def go():
            for scp in scps:
                scp.clear()
            cache = tempfile.mkdtemp(prefix="route-cache-", dir=work)
            t, rss, _ = run_measured([binary, "watch", "--once", "--quiet", "--filter",
                                      f"AccessionNumber={big['accession']}", "--cloud", url,
                                      "--user", USER, "--cache", cache] + where(two), env=env)
            check(two, "watch")
            if not kept:
                kept.append(cache)
            else:
                shutil.rmtree(cache)
            return t, rss, ""
        return go

    def store(two):
        def go():
            for scp in scps:
                scp.clear()
            t, rss, _ = run_measured([binary, "store", "--quiet", "--cache", kept[0]] + where(two), env=env)
            check(two, "store")
            return t, rss, ""
        return go

    def storescu(two):
        files = sorted(glob.glob(os.path.join(kept[0], "**", "*.dcm"), recursive=True))
        if len(files) != total:
            sys.exit(f"bench: the cache holds {len(files)} instance files, not {total}")

        def go():
            for scp in scps:
                scp.clear()
            start = time.perf_counter()
            procs = [subprocess.Popen([dcmtk("storescu"), "-aet", "RETRIEVER", "-aec", "DEST", "127.0.0.1",
                                       str(scp.port)] + files, env=dict(os.environ, TCP_NODELAY="1"),
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                     for scp in (scps if two else scps[:1])]
            for proc in procs:
                _, err = proc.communicate()
                if proc.returncode != 0:
                    sys.exit(f"bench: storescu failed: {err.decode(errors='replace')}")
            t = time.perf_counter() - start
            check(two, "storescu")
            return t, 0.0, ""
        return go

    try:
        one, two = rounds(args.repeat, watch(False), watch(True))
        store_one, store_two = rounds(args.repeat, store(False), store(True))
        scu_one, scu_two = rounds(args.repeat, storescu(False), storescu(True))
    finally:
        for scp in scps:
            scp.stop()
    print(f"route: {total} instances to one destination and to two, {args.repeat} alternating rounds each")

    def line(what, one, two, target):
        ones, twos = [r[0] for r in one], [r[0] for r in two]
        print(f"  {what:<28} one {spread(ones)} s, two {spread(twos)} s;  "
              f"two / one {spread([t / o for t, o in zip(twos, ones)])}{target}")
        return statistics.median(t / o for t, o in zip(twos, ones))

    line("watch --once (fetch + send)", one, two, "")
    line("store from the cache", store_one, store_two, "   (target <= 1.2)")
    line("DCMTK storescu (the floor)", scu_one, scu_two, "")
    print(f"  peak RSS: watch {max(r[1] for r in one):5.1f} / {max(r[1] for r in two):5.1f} MiB, "
          f"store {max(r[1] for r in store_one):5.1f} / {max(r[1] for r in store_two):5.1f} MiB")


if __name__ == "__main__":
    main()
