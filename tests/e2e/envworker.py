#!/usr/bin/env python3
"""A sluice worker (Python stdlib only) that answers every request with a
JSON description of its own process, for the pool-management e2e tests:

    envworker.py            serve: 200, application/json body
                            {"pid": ..., "cwd": "...", "argv": [...],
                             "env": {every variable of its environment}}
    envworker.py --no-hello connect to $SLUICE_SOCKET and never say HELLO
                            (the gateway must kill it after startup_timeout)
    envworker.py --hang     serve; but a request whose target contains
                            "garbage" gets a malformed frame (the gateway then
                            closes the link), after which the process stays
                            alive without a link until SIGTERM

It reuses badworker.py's MessagePack codec and frame reader. It announces
max_streams 16 and answers each REQUEST at once (in arrival order), so it
never has a request in flight when it reads the next frame: it exits 0 when
the gateway sends DRAIN or closes the link. On SIGTERM it closes its side
of the link and exits once the gateway has closed its side too (reading
what is left, so that the gateway sees an orderly close, not a reset).
"""

import json
import os
import signal
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from badworker import (BODY, DRAIN, END, HELLO, PING, PONG, REQUEST,  # noqa: E402
                       RESPONSE, Link, frame)


def describe():
    return json.dumps({
        "pid": os.getpid(),
        "cwd": os.getcwd(),
        "argv": sys.argv,
        "env": dict(os.environ),
    }, sort_keys=True).encode()


def main():
    path = os.environ["SLUICE_SOCKET"]
    if path.startswith("unix:"):
        path = path[5:]
    link = Link(path)

    def on_term(*_):
        try:
            link.s.shutdown(socket.SHUT_WR)
        except OSError:
            sys.exit(0)
    signal.signal(signal.SIGTERM, on_term)
    if "--no-hello" in sys.argv[1:]:
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        while True:  # connected, silent: killed by the gateway
            time.sleep(3600)
    link.send(frame(HELLO, 0, 1, {"pid": os.getpid(), "lib": "envworker/0",
                                   "max_streams": 16, "window": 65536}))
    hello = link.recv_frame()
    if not hello or hello[0] != HELLO:
        print(f"envworker: unexpected first frame {hello!r}", file=sys.stderr)
        return 1
    max_body = 60000
    hang = "--hang" in sys.argv[1:]
    while True:
        try:
            f = link.recv_frame()
        except OSError:
            f = None
        if hang and f is None:
            signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
            while True:  # no link, still alive
                time.sleep(3600)
        if f is None or f[0] == DRAIN:
            return 0
        if f[0] == PING:
            link.send(frame(PONG, 0, f[2]))
            continue
        if f[0] != REQUEST:
            continue
        sid = f[1]
        if hang and b"garbage" in f[3]:
            link.send(struct.pack(">I", 3) + b"\xc1\xc1\xc1")
            continue
        body = describe()
        out = [frame(RESPONSE, sid, 200,
                     [[b"content-type", b"application/json"],
                      [b"content-length", str(len(body)).encode()]], 1)]
        for i in range(0, len(body), max_body):
            out.append(frame(BODY, sid, body[i:i + max_body]))
        out.append(frame(END, sid))
        try:
            link.send(b"".join(out))
        except OSError:  # after SIGTERM: our side is closed
            pass


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (BrokenPipeError, ConnectionResetError):
        sys.exit(0)
