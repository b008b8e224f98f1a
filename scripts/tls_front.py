#!/usr/bin/env python3
"""An HTTPS front for a plain-HTTP server on loopback, for the tests: the cloud as a hospital sees
it, behind a certificate from a private certificate authority.

    scripts/tls_front.py --cert server.pem --key server.key --upstream 127.0.0.1:PORT

Listens on a free port of 127.0.0.1 (or --port), prints {"port": N} on one line once it
accepts connections, and forwards every TLS connection, decrypted, to the upstream. Runs until its
standard input closes (or it is killed).
"""

import argparse
import json
import socket
import ssl
import sys
import threading


def pump(src, dst):
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s, how in ((dst, socket.SHUT_WR), (src, socket.SHUT_RD)):
            try:
                s.shutdown(how)
            except OSError:
                pass


def serve(conn, context, upstream):
    try:
        tls = context.wrap_socket(conn, server_side=True)
    except (ssl.SSLError, OSError):
        # A client that does not trust the certificate hangs up during the handshake.
        conn.close()
        return
    try:
        up = socket.create_connection(upstream)
    except OSError:
        tls.close()
        return
    up.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    back = threading.Thread(target=pump, args=(up, tls), daemon=True)
    back.start()
    pump(tls, up)
    back.join()
    tls.close()
    up.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cert", required=True, help="the server certificate (PEM), chain after it")
    parser.add_argument("--key", required=True, help="its private key (PEM)")
    parser.add_argument("--upstream", required=True, help="HOST:PORT of the plain-HTTP server")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    host, port = args.upstream.rsplit(":", 1)
    upstream = (host, int(port))

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(args.cert, args.key)
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", args.port))
    listener.listen(64)
    print(json.dumps({"port": listener.getsockname()[1]}), flush=True)

    def accept():
        while True:
            conn, _ = listener.accept()
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=serve, args=(conn, context, upstream), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    sys.stdin.read()


if __name__ == "__main__":
    main()
