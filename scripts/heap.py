#!/usr/bin/env python3
"""Where a long `watch`'s memory goes, in a few minutes: what it keeps per study it has found.

A private Orthanc (the cloud, via scripts/orthanc.py) and DCMTK storescp (the destination) on
loopback; `retriever watch --interval 1s --priors 0` between them; one-instance studies (accession
numbers SOAK0..., a patient each, as the soak's) uploaded in waves. After each wave, once
everything is delivered and a few searches have passed, the watch's VmRSS is printed. Then a fresh
watch is started on the same cache and cloud and measured the same way: what the long-running one
holds beyond it is what it kept of the studies it delivered.

    scripts/heap.py [--bin target/release/retriever] [--total 2000] [--wave 250] [--work DIR]
                    [--probe-at 1000,2000] [--heaptrack PREFIX] [--outage-at 500,1000]

--outage-at N,... after those many studies the cloud is down for --outage-seconds (default 20): the
                  watch reaches Orthanc through a forwarder here, which then ends every connection
                  and answers 503 to every request, as a cloud behind a load balancer does when
                  its archive is away. The next wave is uploaded once it is back, and the samples
                  say whether an outage left memory or threads behind it.

--probe-at N,...  after those many studies (and for the fresh watch) writes DIR/probe-N.smaps (the
                  process's mappings) and DIR/probe-N.xml (glibc's malloc_info: per arena, the
                  memory taken from the system and what of it is free), and prints a summary line.
                  malloc_info comes from a small preload library built here with cc, which writes
                  it when a trigger file appears (gdb cannot call into the process everywhere).
--heaptrack P     runs both watches under heaptrack (P.zst, P-fresh.zst) and ends them with SIGKILL
                  at rest, so that what heaptrack calls leaked is what was live at that moment:
                      heaptrack_print -f P.zst | tail        # peak and live ("leaked") heap
                      heaptrack_print -f P.zst --flamegraph-cost-type leaked -F live.stacks
                  and compare two runs (N and 2N studies, or long-running and fresh) by stack.

Linux only (it reads /proc). Build first: `cargo build --release` (the figures in CHANGELOG.md are
of a release build); Orthanc with its DICOMweb plugin, DCMTK and pydicom as for the tests.
"""

import argparse
import base64
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ET

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
USER, PASSWORD = "retriever", "s3cret-pw"

# Writes malloc_info to <trigger>.xml when the file <dir>/mi-trigger-<pid> appears.
PRELOAD_C = r"""
#define _GNU_SOURCE
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
static void *watcher(void *arg) {
    (void)arg;
    const char *dir = getenv("HEAP_PROBE_DIR");
    char trigger[4096], out[4200];
    if (!dir) return NULL;
    snprintf(trigger, sizeof trigger, "%s/mi-trigger-%d", dir, getpid());
    for (;;) {
        usleep(50000);
        if (access(trigger, F_OK) == 0) {
            snprintf(out, sizeof out, "%s.xml", trigger);
            FILE *f = fopen(out, "w");
            if (f) { malloc_info(0, f); fclose(f); }
            unlink(trigger);
        }
    }
    return NULL;
}
__attribute__((constructor)) static void start(void) {
    pthread_t t;
    if (pthread_create(&t, NULL, watcher, NULL) == 0) pthread_detach(t);
}
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Forwarder:
    """TCP from a port of its own to Orthanc's, connection by connection; while `down`, every
    connection is ended and every new request is answered 503."""

    def __init__(self, upstream_port):
        self.upstream = upstream_port
        self.down = False
        self.lock = threading.Lock()
        self.open = set()
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self.accept, daemon=True).start()

    def set_down(self, down):
        with self.lock:
            self.down = down
            if down:
                for s in list(self.open):
                    try:
                        s.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass

    def accept(self):
        while True:
            client, _ = self.listener.accept()
            threading.Thread(target=self.serve, args=(client,), daemon=True).start()

    def serve(self, client):
        with self.lock:
            down = self.down
        if down:
            try:
                client.settimeout(5)
                client.recv(65536)
                client.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            except OSError:
                pass
            client.close()
            return
        try:
            upstream = socket.create_connection(("127.0.0.1", self.upstream))
        except OSError:
            client.close()
            return
        with self.lock:
            self.open.update((client, upstream))

        def pump(a, b):
            try:
                while True:
                    data = a.recv(262144)
                    if not data:
                        break
                    b.sendall(data)
            except OSError:
                pass
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

        other = threading.Thread(target=pump, args=(upstream, client), daemon=True)
        other.start()
        pump(client, upstream)
        other.join()
        with self.lock:
            self.open.discard(client)
            self.open.discard(upstream)
        client.close()
        upstream.close()


def threads(pid):
    """The process's threads, as `name×count,...` by name."""
    names = {}
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/comm") as f:
                name = f.read().strip()
        except OSError:
            continue
        names[name] = names.get(name, 0) + 1
    return ",".join(f"{n}x{c}" if c > 1 else n for n, c in sorted(names.items()))


def make_studies(template, out, n):
    import pydicom

    os.makedirs(out, exist_ok=True)
    root = "1.2.826.0.1.3680043.10.543.77"
    base = pydicom.dcmread(template)
    paths = []
    for i in range(n):
        path = os.path.join(out, f"{i}.dcm")
        paths.append(path)
        if os.path.exists(path):
            continue
        ds = base.copy()
        sop = f"{root}.{i}.1.1"
        ds.StudyInstanceUID = f"{root}.{i}"
        ds.SeriesInstanceUID = f"{root}.{i}.1"
        ds.SOPInstanceUID = sop
        ds.AccessionNumber = f"SOAK{i}"
        ds.PatientID = f"SOAKP{i}"
        ds.file_meta.MediaStorageSOPInstanceUID = sop
        ds.save_as(path, enforce_file_format=True)
    return paths


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def retriever_pid(pid):
    """`pid`, or under heaptrack the retriever process it started."""
    deadline = time.time() + 30
    while time.time() < deadline:
        todo, seen = [pid], set()
        while todo:
            p = todo.pop()
            if p in seen:
                continue
            seen.add(p)
            try:
                with open(f"/proc/{p}/comm") as f:
                    if f.read().strip().startswith("retriever"):
                        return p
            except OSError:
                pass
            kids = subprocess.run(["pgrep", "-P", str(p)], capture_output=True, text=True).stdout.split()
            todo += [int(k) for k in kids]
        time.sleep(0.2)
    raise SystemExit("heap.py: no retriever process found")


def smaps_rss(path):
    """(RSS of the main heap, RSS of the largest anonymous mapping: the second arena) in kB."""
    maps, cur = [], None
    for line in open(path):
        if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
            parts = line.split()
            cur = {"name": parts[5] if len(parts) > 5 else "", "rss": 0}
            maps.append(cur)
        elif line.startswith("Rss:"):
            cur["rss"] = int(line.split()[1])
    heap = sum(m["rss"] for m in maps if m["name"] == "[heap]")
    anon = max((m["rss"] for m in maps if m["name"] == ""), default=0)
    return heap, anon


def probe(pid, work, name):
    shutil.copy(f"/proc/{pid}/smaps", os.path.join(work, f"probe-{name}.smaps"))
    trigger = os.path.join(work, f"mi-trigger-{pid}")
    open(trigger, "w").close()
    deadline = time.time() + 10
    while os.path.exists(trigger) and time.time() < deadline:
        time.sleep(0.05)
    xml = os.path.join(work, f"probe-{name}.xml")
    if os.path.exists(trigger + ".xml"):
        time.sleep(0.1)
        shutil.move(trigger + ".xml", xml)
    heap, arena = smaps_rss(os.path.join(work, f"probe-{name}.smaps"))
    line = f"heap.py: probe {name}: resident main heap {heap} kB, largest anonymous mapping {arena} kB"
    if os.path.exists(xml):
        for h in ET.parse(xml).getroot().findall("heap"):
            system = int(h.find("system[@type='current']").get("size"))
            free = sum(int(t.get("size")) for t in h.findall("total") if t.get("type") in ("fast", "rest"))
            line += f"; arena {h.get('nr')}: {system >> 10} kB from the system, {free >> 10} kB of it free"
    print(line, flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=os.path.join(REPO, "target/release/retriever"))
    ap.add_argument("--total", type=int, default=2000)
    ap.add_argument("--wave", type=int, default=250)
    ap.add_argument("--rest", type=float, default=8.0, help="seconds at rest (searches) before each sample")
    ap.add_argument("--work", help="where to keep everything (default: a new temporary directory)")
    ap.add_argument("--probe-at", type=lambda v: [int(x) for x in v.split(",") if x], default=[])
    ap.add_argument("--heaptrack", help="output prefix: run the watches under heaptrack")
    ap.add_argument("--outage-at", type=lambda v: [int(x) for x in v.split(",") if x], default=[])
    ap.add_argument("--outage-seconds", type=float, default=20.0)
    a = ap.parse_args()

    work = a.work or tempfile.mkdtemp(prefix="retriever-heap-")
    os.makedirs(work, exist_ok=True)
    testdata = os.path.join(work, "testdata")
    subprocess.run([sys.executable, os.path.join(REPO, "scripts/gen_testdata.py"), testdata], check=True,
                   stdout=subprocess.DEVNULL)
    index = json.load(open(os.path.join(testdata, "index.json")))
    study = next(s for s in index["studies"] if s["accession"] == "ACC1001")
    template = os.path.join(testdata, study["series"][0]["instances"][0]["path"])
    files = make_studies(template, os.path.join(work, "studies"), a.total)

    env = {**os.environ, "RETRIEVER_PASSWORD": PASSWORD, "HEAP_PROBE_DIR": work}
    if a.probe_at and not a.heaptrack:
        preload = os.path.join(work, "malloc_info.so")
        with open(preload + ".c", "w") as f:
            f.write(PRELOAD_C)
        subprocess.run(["cc", "-shared", "-fPIC", "-O2", "-o", preload, preload + ".c", "-lpthread"], check=True)
        env["LD_PRELOAD"] = preload

    started = []
    orthanc_dir = os.path.join(work, "orthanc")
    shutil.rmtree(orthanc_dir, ignore_errors=True)
    out = subprocess.run([sys.executable, os.path.join(REPO, "scripts/orthanc.py"), "start", "--workdir", orthanc_dir],
                         check=True, capture_output=True, text=True).stdout
    state = json.loads(out)
    try:
        scp_dir = os.path.join(work, "received")
        shutil.rmtree(scp_dir, ignore_errors=True)
        os.makedirs(scp_dir)
        port = free_port()
        scp = subprocess.Popen(["/usr/bin/storescp", "-aet", "STORESCP", "+xa", "+B", "-dhl", "-od", scp_dir,
                                str(port)], env={**os.environ, "TCP_NODELAY": "1"},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        started.append(scp)
        cache = os.path.join(work, "cache")
        shutil.rmtree(cache, ignore_errors=True)
        forwarder = Forwarder(state["http_port"])
        cloud = state["dicomweb_url"].replace(f":{state['http_port']}/", f":{forwarder.port}/")
        cmd = [a.bin, "--cloud", cloud, "--user", USER, "--cache", cache, "watch",
               "--to", f"STORESCP@127.0.0.1:{port}", "--interval", "1s", "--filter", "AccessionNumber=SOAK*",
               "--priors", "0"]
        log = open(os.path.join(work, "watch.log"), "w")

        def start(prefix):
            full = ["heaptrack", "-o", prefix] + cmd if prefix else cmd
            p = subprocess.Popen(full, env=env, stdout=log, stderr=log, start_new_session=True)
            started.append(p)
            return p, retriever_pid(p.pid)

        def stop(p, pid):
            # Killed under heaptrack, so that what it calls leaked is what was live at rest.
            os.kill(pid, signal.SIGKILL if a.heaptrack else signal.SIGINT)
            p.wait()

        watch, pid = start(a.heaptrack)
        auth = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        time.sleep(a.rest)
        print("heap.py: studies  delivered  rss_kB  seconds  threads", flush=True)
        print(f"heap.py: {0:>7} {0:>10} {rss_kb(pid):>7} {0:>8.1f} {threads(pid)}", flush=True)
        began = time.time()
        for first in range(0, a.total, a.wave):
            conn = http.client.HTTPConnection("127.0.0.1", state["http_port"])
            for path in files[first:first + a.wave]:
                with open(path, "rb") as f:
                    conn.request("POST", "/instances", f.read(),
                                 {"Authorization": auth, "Content-Type": "application/dicom"})
                r = conn.getresponse()
                r.read()
                if r.status != 200:
                    raise SystemExit(f"heap.py: uploading `{path}` to Orthanc failed: HTTP {r.status}")
            conn.close()
            up = min(first + a.wave, a.total)
            while len(os.listdir(scp_dir)) < up:
                if watch.poll() is not None:
                    raise SystemExit(f"heap.py: the watch ended; see `{work}/watch.log`")
                time.sleep(0.2)
            time.sleep(a.rest)
            print(f"heap.py: {up:>7} {len(os.listdir(scp_dir)):>10} {rss_kb(pid):>7} "
                  f"{time.time() - began:>8.1f} {threads(pid)}", flush=True)
            if up in a.probe_at and not a.heaptrack:
                probe(pid, work, str(up))
            if up in a.outage_at:
                forwarder.set_down(True)
                time.sleep(a.outage_seconds)
                print(f"heap.py: the cloud was down for {a.outage_seconds:g} s: rss {rss_kb(pid)} kB, "
                      f"threads {threads(pid)}", flush=True)
                forwarder.set_down(False)
        stop(watch, pid)
        fresh, pid = start(a.heaptrack + "-fresh" if a.heaptrack else None)
        time.sleep(a.rest)
        if a.probe_at and not a.heaptrack:
            probe(pid, work, "fresh")
        print(f"heap.py: a fresh watch with the same {a.total} studies in its record and window: {rss_kb(pid)} kB",
              flush=True)
        stop(fresh, pid)
    finally:
        for p in started:
            if p.poll() is None:
                p.kill()
                p.wait()
        subprocess.run([sys.executable, os.path.join(REPO, "scripts/orthanc.py"), "stop", "--workdir", orthanc_dir],
                       stdout=subprocess.DEVNULL)
        print(f"heap.py: everything is in `{work}`", flush=True)


if __name__ == "__main__":
    main()
