#!/usr/bin/env python3
"""A TCP proxy on loopback that behaves like a wide-area link: every byte is held for a one-way delay,
and each direction is a single link of a fixed rate shared by all connections (so that parallel
downloads share the bandwidth, as they do on a hospital's line).

    wan_proxy.py --to HOST:PORT [--delay-ms 20] [--rate-mbit 100]

Listens on 127.0.0.1 on a free port, prints that port on stdout as one line, and runs until stdin
reaches EOF (what the benchmark uses: the proxy dies with it). Python standard library only.

Not emulated: loss, and TCP's own reaction to the delay (slow start, window growth) beyond what the
bounded queue per connection and direction imposes: it holds at most QUEUE_BYTES, about twice
what the link carries in one round trip, and then stops reading, so the sender is held back.
"""

import argparse
import queue
import socket
import sys
import threading
import time

CHUNK = 64 * 1024
QUEUE_BYTES = 1 << 20


class Link:
    """One direction of the emulated line: when each piece arrives at the far end."""

    def __init__(self, delay, rate_bytes):
        self.delay = delay
        self.rate = rate_bytes
        self.lock = threading.Lock()
        self.free_at = 0.0

    def arrival(self, n):
        # The piece goes onto the line when the line is free, takes n / rate to put on it, and
        # arrives one delay after its last byte was sent.
        with self.lock:
            start = max(time.monotonic(), self.free_at)
            self.free_at = start + n / self.rate
            return self.free_at + self.delay


def pump(src, dst, link):
    pieces = queue.Queue(maxsize=max(1, QUEUE_BYTES // CHUNK))

    def deliver():
        while True:
            at, data = pieces.get()
            wait = at - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            try:
                if data is None:
                    dst.shutdown(socket.SHUT_WR)
                    return
                dst.sendall(data)
            except OSError:
                # The receiver went away: stop reading from the sender too.
                try:
                    src.shutdown(socket.SHUT_RD)
                except OSError:
                    pass
                return

    writer = threading.Thread(target=deliver, daemon=True)
    writer.start()
    while True:
        try:
            data = src.recv(CHUNK)
        except OSError:
            data = b""
        pieces.put((link.arrival(len(data)), data or None))
        if not data:
            break
    writer.join()


def serve(conn, upstream, up_link, down_link):
    try:
        server = socket.create_connection(upstream)
    except OSError:
        conn.close()
        return
    for s in (conn, server):
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    up = threading.Thread(target=pump, args=(conn, server, up_link), daemon=True)
    up.start()
    pump(server, conn, down_link)
    up.join()
    conn.close()
    server.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--to", required=True, help="HOST:PORT to forward to")
    parser.add_argument("--delay-ms", type=float, default=20.0, help="one-way delay (default 20)")
    parser.add_argument("--rate-mbit", type=float, default=100.0, help="rate of each direction (default 100)")
    args = parser.parse_args()
    host, port = args.to.rsplit(":", 1)
    upstream = (host, int(port))
    up_link = Link(args.delay_ms / 1000.0, args.rate_mbit * 1e6 / 8)
    down_link = Link(args.delay_ms / 1000.0, args.rate_mbit * 1e6 / 8)

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    print(listener.getsockname()[1], flush=True)

    def accept():
        while True:
            conn, _ = listener.accept()
            threading.Thread(target=serve, args=(conn, upstream, up_link, down_link), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    sys.stdin.read()


if __name__ == "__main__":
    main()
