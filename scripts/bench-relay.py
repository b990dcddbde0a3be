#!/usr/bin/env python3
"""Count the bytes of one SSH connection: an ssh `ProxyCommand` for benchmarks.

    ProxyCommand python3 scripts/bench-relay.py DIR %n %h %p

Connects to HOST:PORT and relays ssh's stdin to it and its answers to
ssh's stdout, counting both directions. While the connection is open,
DIR/<pid>.open exists; when it ends (either side closes, or ssh hangs up on
the relay), DIR/<pid>.done holds one line "ALIAS UP DOWN": the bytes sent
from the client to the server (the client's egress) and back. These are
bytes of the SSH transport stream (handshake, packet headers, padding and
MACs included; TCP/IP headers not). scripts/bench-remote.sh uses it.
"""

import os
import signal
import socket
import sys
import threading

CHUNK = 256 * 1024


def main():
    out, alias, host, port = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    tag = os.path.join(out, str(os.getpid()))
    open(tag + ".open", "w").close()
    counts = [0, 0]
    reported = []

    hangups = (signal.SIGHUP, signal.SIGTERM, signal.SIGINT, signal.SIGPIPE)

    def report(*_):
        # ssh hangs up on the relay as the connection ends: a signal that
        # arrived after the flag was set would exit before the line is
        # written, so they are blocked first.
        signal.pthread_sigmask(signal.SIG_BLOCK, hangups)
        if not reported:
            reported.append(True)
            with open(tag + ".done.tmp", "w") as f:
                f.write(f"{alias} {counts[0]} {counts[1]}\n")
            os.rename(tag + ".done.tmp", tag + ".done")
            os.remove(tag + ".open")
        os._exit(0)

    for sig in hangups:
        signal.signal(sig, report)
    sock = socket.create_connection((host, port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def up():
        try:
            while True:
                b = os.read(0, CHUNK)
                if not b:
                    break
                sock.sendall(b)
                counts[0] += len(b)
        except OSError:
            pass
        try:
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def down():
        try:
            while True:
                b = sock.recv(CHUNK)
                if not b:
                    break
                view = memoryview(b)
                while view:
                    view = view[os.write(1, view):]
                counts[1] += len(b)
        except OSError:
            pass
        try:
            os.close(1)
        except OSError:
            pass

    threads = [threading.Thread(target=f, daemon=True) for f in (up, down)]
    for t in threads:
        t.start()
    # The server closing ends the connection; ssh then closes our stdin or
    # hangs up on us. Waiting in short steps lets the signal handlers run.
    while threads[1].is_alive():
        threads[1].join(0.2)
    threads[0].join(2)
    report()


if __name__ == "__main__":
    main()
