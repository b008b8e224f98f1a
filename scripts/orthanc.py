#!/usr/bin/env python3
"""Run a private Orthanc (with the DICOMweb plugin) on loopback for tests and benchmarks.

    orthanc.py start  --workdir DIR [options]   start it in the background, print its JSON state
    orthanc.py run    --workdir DIR [options]   start it, print its JSON state as one line, and
                                                stop it when stdin reaches EOF or on SIGTERM/SIGINT
                                                (what the test harness uses: the server dies with
                                                the test process); with --cleanup, kill it at once
                                                and remove the workdir
    orthanc.py stop   --workdir DIR             stop what `start` started, by its recorded pid
    orthanc.py upload --url URL --user U:P PATH...   POST the DICOM files under PATH to /instances

Options of start/run:
    --http-port P / --dicom-port P   0 (the default) picks free ports
    --user U:P                       a registered HTTP user (repeatable; default from the
                                     ORTHANC_USERS environment variable, "u:p,u2:p2", else
                                     retriever:s3cret-pw)
    --aet TITLE                      Orthanc's own AE title (default ORTHANC)
    --modality NAME=AET@HOST:PORT    a DICOM peer Orthanc may C-STORE to (repeatable)
    --upload DIR                     load the DICOM files under DIR once it is up (repeatable)
    --config-json JSON               extra configuration merged over the generated one

The state printed (and written to DIR/orthanc-state.json) is
    {"pid", "http_port", "dicom_port", "http_url", "dicomweb_url", "aet", "workdir",
     "config", "log", "uploaded", "start_seconds", "upload_seconds"}

Python standard library only. Orthanc runs with TCP_NODELAY=1 in its environment: its DICOM side is
DCMTK, which otherwise leaves Nagle's algorithm on and stalls every C-STORE on a delayed ACK.
"""

import argparse
import base64
import ctypes
import http.client
import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

ORTHANC = "/usr/sbin/Orthanc"
PLUGIN_CANDIDATES = [
    "/usr/share/orthanc/plugins/libOrthancDicomWeb.so",
    "/usr/lib/orthanc/libOrthancDicomWeb.so",
]
DEFAULT_USERS = "retriever:s3cret-pw"
STATE_FILE = "orthanc-state.json"


class StartError(Exception):
    pass


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def find_plugin(explicit):
    if explicit:
        return explicit
    for path in PLUGIN_CANDIDATES:
        if os.path.exists(path):
            return path
    lib = "/usr/lib/orthanc"
    if os.path.isdir(lib):
        for name in sorted(os.listdir(lib)):
            if name.startswith("libOrthancDicomWeb.so"):
                return os.path.join(lib, name)
    raise StartError("the Orthanc DICOMweb plugin was not found (install orthanc-dicomweb)")


def parse_users(values):
    if not values:
        values = [u for u in os.environ.get("ORTHANC_USERS", DEFAULT_USERS).split(",") if u]
    users = {}
    for value in values:
        name, sep, password = value.partition(":")
        if not sep or not name:
            raise StartError("a user is NAME:PASSWORD, not %r" % value)
        users[name] = password
    return users


def parse_modalities(values):
    modalities = {}
    for value in values or []:
        name, sep, rest = value.partition("=")
        aet, at, hostport = rest.partition("@")
        host, colon, port = hostport.rpartition(":")
        if not (sep and at and colon and name and aet and host and port.isdigit()):
            raise StartError("a modality is NAME=AET@HOST:PORT, not %r" % value)
        modalities[name] = [aet, host, int(port)]
    return modalities


def auth_header(users):
    name, password = next(iter(users.items()))
    token = base64.b64encode(("%s:%s" % (name, password)).encode()).decode()
    return "Basic " + token


def make_config(workdir, http_port, dicom_port, users, aet, modalities, plugin, extra):
    config = {
        "Name": "retriever-test",
        "StorageDirectory": os.path.join(workdir, "storage"),
        "IndexDirectory": os.path.join(workdir, "index"),
        "StorageCompression": False,
        "Plugins": [plugin],
        "ConcurrentJobs": 2,
        "HttpServerEnabled": True,
        "OrthancExplorerEnabled": False,
        "HttpPort": http_port,
        "HttpDescribeErrors": True,
        "HttpCompressionEnabled": False,
        "WebDavEnabled": False,
        "HttpTimeout": 60,
        "HttpThreadsCount": 50,
        "KeepAlive": True,
        "TcpNoDelay": True,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": True,
        "RegisteredUsers": users,
        "SslEnabled": False,
        "DicomServerEnabled": True,
        "DicomAet": aet,
        "DicomCheckCalledAet": False,
        "DicomPort": dicom_port,
        "DicomScuTimeout": 10,
        "DicomScpTimeout": 30,
        "DicomAlwaysAllowEcho": True,
        "DicomAlwaysAllowStore": True,
        "DicomModalities": modalities,
        "DicomModalitiesInDatabase": False,
        "UnknownSopClassAccepted": False,
        "StableAge": 1,
        "SaveJobs": False,
        "OverwriteInstances": False,
        "DicomWeb": {
            "Enable": True,
            "Root": "/dicom-web/",
            "EnableWado": True,
            "WadoRoot": "/wado",
            "Ssl": False,
            "StudiesMetadata": "Full",
            "SeriesMetadata": "Full",
        },
    }
    for key, value in (extra or {}).items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            config[key].update(value)
        else:
            config[key] = value
    return config


def listening_ports():
    """Ports in LISTEN state, read from /proc (no connection is made, so nothing is logged)."""
    ports = set()
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(name) as f:
                next(f)
                for line in f:
                    fields = line.split()
                    if fields[3] == "0A":
                        ports.add(int(fields[1].rsplit(":", 1)[1], 16))
        except OSError:
            pass
    return ports


def system_ready(http_port, auth):
    request = urllib.request.Request("http://127.0.0.1:%d/system" % http_port,
                                     headers={"Authorization": auth})
    try:
        with urllib.request.urlopen(request, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError, http.client.HTTPException):
        return False


def set_parent_death_signal():
    # The server dies with its supervisor, even if that is killed with SIGKILL.
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def log_tail(path, lines=15):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return ""


def launch(args, supervised):
    """Start Orthanc; retries with other ports when it picked them itself and they were taken."""
    workdir = os.path.abspath(args.workdir)
    os.makedirs(workdir, exist_ok=True)
    users = parse_users(args.user)
    auth = auth_header(users)
    modalities = parse_modalities(args.modality)
    plugin = find_plugin(args.plugin)
    extra = json.loads(args.config_json) if args.config_json else None
    if not os.access(args.orthanc, os.X_OK):
        raise StartError("%s is not executable (install orthanc)" % args.orthanc)
    chosen = args.http_port == 0 or args.dicom_port == 0
    attempts = 5 if chosen else 1
    error = None
    for _ in range(attempts):
        http_port = args.http_port or free_port()
        dicom_port = args.dicom_port or free_port()
        while dicom_port == http_port:
            dicom_port = free_port()
        # A fresh database every time: a test server starts empty.
        for sub in ("storage", "index"):
            shutil.rmtree(os.path.join(workdir, sub), ignore_errors=True)
        config = make_config(workdir, http_port, dicom_port, users, args.aet, modalities,
                             plugin, extra)
        config_path = os.path.join(workdir, "orthanc.json")
        with open(config_path, "w") as f:
            json.dump(config, f, indent=2)
        log_path = os.path.join(workdir, "orthanc.log")
        env = dict(os.environ, TCP_NODELAY="1")
        started = time.monotonic()
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                [args.orthanc, config_path], stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, cwd=workdir, env=env,
                start_new_session=not supervised,
                preexec_fn=set_parent_death_signal if supervised else None)
        deadline = started + args.timeout
        while True:
            if process.poll() is not None:
                error = "Orthanc exited with status %s while starting:\n%s" % (
                    process.returncode, log_tail(log_path))
                break
            if system_ready(http_port, auth) and dicom_port in listening_ports():
                return process, {
                    "pid": process.pid,
                    "http_port": http_port,
                    "dicom_port": dicom_port,
                    "http_url": "http://127.0.0.1:%d" % http_port,
                    "dicomweb_url": "http://127.0.0.1:%d/dicom-web" % http_port,
                    "aet": args.aet,
                    "users": users,
                    "workdir": workdir,
                    "config": config_path,
                    "log": log_path,
                    "start_seconds": round(time.monotonic() - started, 3),
                }
            if time.monotonic() > deadline:
                terminate(process)
                raise StartError("Orthanc did not answer on port %d within %d s:\n%s" % (
                    http_port, args.timeout, log_tail(log_path)))
            time.sleep(0.05)
    raise StartError(error)


def terminate(process, grace=10):
    """SIGTERM, then SIGKILL after `grace` seconds; with grace 0 SIGKILL at once (throwaway data:
    a graceful Orthanc shutdown takes about 3 s)."""
    if process.poll() is None:
        if grace <= 0:
            process.kill()
            process.wait()
            return
        process.terminate()
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def dicom_files(paths):
    """The Part-10 files under the given paths (those with DICM after the preamble), sorted."""
    found = []
    for root in paths:
        if os.path.isfile(root):
            found.append(root)
            continue
        for directory, dirs, files in os.walk(root):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(files):
                path = os.path.join(directory, name)
                try:
                    with open(path, "rb") as f:
                        f.seek(128)
                        if f.read(4) == b"DICM":
                            found.append(path)
                except OSError:
                    pass
    return found


def upload(http_port, auth, paths, jobs=4):
    """POST every file to /instances over a few kept-alive connections; returns the count."""
    files = dicom_files(paths)
    work = queue.Queue()
    for path in files:
        work.put(path)
    errors = []

    def worker():
        conn = http.client.HTTPConnection("127.0.0.1", http_port, timeout=60)
        try:
            while not errors:
                try:
                    path = work.get_nowait()
                except queue.Empty:
                    return
                with open(path, "rb") as f:
                    body = f.read()
                conn.request("POST", "/instances", body=body, headers={
                    "Authorization": auth, "Content-Type": "application/dicom"})
                response = conn.getresponse()
                answer = response.read()
                if response.status != 200:
                    errors.append("%s: HTTP %d %s" % (path, response.status, answer[:200]))
        except (OSError, http.client.HTTPException) as e:
            errors.append("upload failed: %s" % e)
        finally:
            conn.close()

    threads = [threading.Thread(target=worker) for _ in range(max(1, min(jobs, len(files))))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise StartError("; ".join(errors[:3]))
    return len(files)


def load(args, process, state):
    auth = auth_header(state["users"])
    started = time.monotonic()
    try:
        state["uploaded"] = upload(state["http_port"], auth, args.upload or [], args.jobs)
    except StartError:
        terminate(process)
        raise
    state["upload_seconds"] = round(time.monotonic() - started, 3)
    with open(os.path.join(state["workdir"], STATE_FILE), "w") as f:
        json.dump(state, f, indent=2)


def cmd_start(args):
    process, state = launch(args, supervised=False)
    load(args, process, state)
    print(json.dumps(state, indent=2))


def cmd_run(args):
    stop = threading.Event()

    def on_signal(signum, frame):
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    process, state = launch(args, supervised=True)
    try:
        load(args, process, state)
        sys.stdout.write(json.dumps(state) + "\n")
        sys.stdout.flush()

        def watch_stdin():
            try:
                while sys.stdin.buffer.read(65536):
                    pass
            except OSError:
                pass
            stop.set()

        threading.Thread(target=watch_stdin, daemon=True).start()
        while not stop.wait(0.2):
            if process.poll() is not None:
                print("orthanc.py: Orthanc exited with status %s:\n%s" % (
                    process.returncode, log_tail(state["log"])), file=sys.stderr)
                return 1
    finally:
        terminate(process, grace=0 if args.cleanup else 10)
        if args.cleanup:
            shutil.rmtree(state["workdir"], ignore_errors=True)
    return 0


def cmd_stop(args):
    path = os.path.join(os.path.abspath(args.workdir), STATE_FILE)
    try:
        with open(path) as f:
            pid = json.load(f)["pid"]
    except (OSError, ValueError, KeyError):
        print("orthanc.py: no state in %s" % path, file=sys.stderr)
        return 1
    try:
        with open("/proc/%d/comm" % pid) as f:
            if f.read().strip() != "Orthanc":
                print("orthanc.py: pid %d is no longer Orthanc" % pid, file=sys.stderr)
                return 0
    except OSError:
        return 0
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and os.path.exists("/proc/%d" % pid):
        time.sleep(0.05)
    if os.path.exists("/proc/%d" % pid):
        os.kill(pid, signal.SIGKILL)
    return 0


def cmd_upload(args):
    users = parse_users(args.user)
    port = int(args.url.rstrip("/").rsplit(":", 1)[1])
    count = upload(port, auth_header(users), args.paths, args.jobs)
    print(json.dumps({"uploaded": count}))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("start", "run"):
        p = sub.add_parser(name)
        p.add_argument("--workdir", required=True)
        p.add_argument("--http-port", type=int, default=0)
        p.add_argument("--dicom-port", type=int, default=0)
        p.add_argument("--user", action="append", metavar="NAME:PASSWORD")
        p.add_argument("--aet", default="ORTHANC")
        p.add_argument("--modality", action="append", metavar="NAME=AET@HOST:PORT")
        p.add_argument("--upload", action="append", metavar="DIR")
        p.add_argument("--jobs", type=int, default=4)
        p.add_argument("--orthanc", default=ORTHANC)
        p.add_argument("--plugin")
        p.add_argument("--config-json")
        p.add_argument("--timeout", type=int, default=60)
        if name == "run":
            p.add_argument("--cleanup", action="store_true",
                           help="on exit, kill Orthanc at once and remove the workdir")
    p = sub.add_parser("stop")
    p.add_argument("--workdir", required=True)
    p = sub.add_parser("upload")
    p.add_argument("--url", required=True, help="http://127.0.0.1:PORT")
    p.add_argument("--user", action="append", metavar="NAME:PASSWORD")
    p.add_argument("--jobs", type=int, default=4)
    p.add_argument("paths", nargs="+")
    args = parser.parse_args()
    try:
        return {"start": cmd_start, "run": cmd_run, "stop": cmd_stop,
                "upload": cmd_upload}[args.command](args) or 0
    except StartError as e:
        print("orthanc.py: %s" % e, file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
