#!/usr/bin/env python3
"""A storage SCP (pynetdicom) that misbehaves on purpose, for retriever's
interop tests: it takes only the transfer syntaxes and SOP classes it is
told, answers chosen statuses, checks AE titles, rejects associations,
aborts, or stalls.

It listens on 127.0.0.1 only, prints `ready <port>` on stdout once it
accepts connections, and writes every instance it stores (status success or
warning) to --out as `<SOPInstanceUID>.dcm`, byte for byte as received, with
a File Meta Information naming the transfer syntax it arrived in.

Examples:
  test_scp.py --port 0 --out /tmp/rx --ts 1.2.840.10008.1.2
  test_scp.py --port 0 --out /tmp/rx --statuses 0xB000,0xA700,0xC000,0x0122
  test_scp.py --port 0 --require-called-aet --ae-title PACS
  test_scp.py --port 0 --reject transient
  test_scp.py --port 0 --out /tmp/rx --sleep 0.05 --log /tmp/rx.log
  test_scp.py --port 0 --out /tmp/rx --assoc-log /tmp/assoc.log --abort-on-next-study

With --log, every C-STORE request is appended to the file as a line
`<SOPInstanceUID> <status in hex>` (`abort` instead of a status when the
association is aborted), so tests can count what was sent, resends included.
With --assoc-log, a line `established <calling AE title>` is appended per
association, so tests can count the associations a run opened.
"""

import argparse
import os
import socket
import sys
import threading
import time

from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, evt
from pynetdicom.sop_class import Verification
from pynetdicom.presentation import AllStoragePresentationContexts


def parse_status(s):
    return int(s, 16) if s.lower().startswith("0x") else int(s)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", type=int, default=0, help="0 picks a free port")
    p.add_argument("--ae-title", default="TESTSCP")
    p.add_argument("--out", help="directory for received instances")
    p.add_argument("--ts", default=f"{ExplicitVRLittleEndian},{ImplicitVRLittleEndian}",
                   help="comma-separated transfer syntaxes to accept")
    p.add_argument("--sop-classes", default="",
                   help="comma-separated SOP classes to accept (default: all storage)")
    p.add_argument("--statuses", default="",
                   help="statuses for the 1st, 2nd... C-STORE (e.g. 0xB000,0xA700); 0x0000 after")
    p.add_argument("--comment", default="", help="Error Comment sent with non-success statuses")
    p.add_argument("--require-called-aet", action="store_true",
                   help="reject associations not addressed to --ae-title")
    p.add_argument("--reject", choices=["transient", "permanent"],
                   help="reject every association (transient: local limit exceeded; "
                        "permanent: calling AE title not recognised)")
    p.add_argument("--abort-on", type=int, default=0,
                   help="abort the association on receiving the Nth C-STORE (1-based), before answering")
    p.add_argument("--abort-on-next-study", action="store_true",
                   help="abort, once, an association that carried instances of one study when an instance "
                        "of another study arrives on it, before answering (a PACS dropping a kept association)")
    p.add_argument("--assoc-log", help="append `established <calling AE>` per association to this file")
    p.add_argument("--sleep", type=float, default=0.0,
                   help="seconds to wait before answering each C-STORE")
    p.add_argument("--max-pdu", type=int, default=16382)
    p.add_argument("--log", help="append `<SOPInstanceUID> <status>` per C-STORE request to this file")
    args = p.parse_args()

    syntaxes = [t for t in args.ts.split(",") if t]
    statuses = [parse_status(s) for s in args.statuses.split(",") if s]
    classes = [c for c in args.sop_classes.split(",") if c]

    ae = AE(ae_title=args.ae_title)
    ae.maximum_pdu_size = args.max_pdu
    ae.require_called_aet = args.require_called_aet
    if args.reject == "permanent":
        ae.require_calling_aet = ["NOBODY-KNOWN"]
    elif args.reject == "transient":
        # pynetdicom rejects with (transient, provider, local limit exceeded)
        # once active associations exceed this; the setter refuses 0.
        ae._maximum_associations = 0
    ae.add_supported_context(Verification, syntaxes)
    if classes:
        for c in classes:
            ae.add_supported_context(c, syntaxes)
    else:
        for cx in AllStoragePresentationContexts:
            ae.add_supported_context(cx.abstract_syntax, syntaxes)

    lock = threading.Lock()
    count = [0]

    def log(uid, what):
        if args.log:
            with lock, open(args.log, "a") as f:
                f.write(f"{uid} {what}\n")

    # Per association (by id): the studies it carried; and whether the one
    # abort of --abort-on-next-study was made.
    carried = {}
    aborted_next = [False]

    def on_established(event):
        if args.assoc_log:
            with lock, open(args.assoc_log, "a") as f:
                f.write(f"established {event.assoc.requestor.ae_title}\n")

    def on_store(event):
        with lock:
            count[0] += 1
            n = count[0]
        uid = str(event.request.AffectedSOPInstanceUID)
        if args.abort_on and n == args.abort_on:
            log(uid, "abort")
            event.assoc.abort()
            return 0x0000
        if args.abort_on_next_study and not aborted_next[0]:
            study = str(event.dataset.StudyInstanceUID)
            seen = carried.setdefault(id(event.assoc), set())
            if seen and study not in seen:
                aborted_next[0] = True
                log(uid, "abort")
                event.assoc.abort()
                return 0x0000
            seen.add(study)
        if args.sleep:
            time.sleep(args.sleep)
        status = statuses[n - 1] if n <= len(statuses) else 0x0000
        stored = status == 0x0000 or 0xB000 <= status <= 0xBFFF
        log(uid, f"0x{status:04X}")
        if stored and args.out:
            path = os.path.join(args.out, uid + ".dcm")
            with open(path + ".tmp", "wb") as f:
                f.write(event.encoded_dataset(include_meta=True))
            os.replace(path + ".tmp", path)
        if status == 0x0000:
            return status
        from pydicom.dataset import Dataset
        ds = Dataset()
        ds.Status = status
        if args.comment:
            ds.ErrorComment = args.comment
        return ds

    handlers = [(evt.EVT_C_STORE, on_store), (evt.EVT_ESTABLISHED, on_established)]
    # Bind first to learn the port when 0 was asked, then hand the port on.
    port = args.port
    if port == 0:
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
    server = ae.start_server(("127.0.0.1", port), block=False, evt_handlers=handlers)
    # pynetdicom leaves Nagle on; each C-STORE would then wait out a
    # delayed ACK. Set TCP_NODELAY on every accepted connection.
    accept = server.get_request

    def get_request():
        conn, addr = accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn, addr

    server.get_request = get_request
    print(f"ready {port}", flush=True)
    try:
        # Exit when the parent closes our stdin (or on a signal).
        sys.stdin.read()
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()


if __name__ == "__main__":
    main()
