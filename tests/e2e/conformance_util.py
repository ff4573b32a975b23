"""Helpers for tests/e2e/test_conformance.py.

* `running_gateway(...)`: a context manager that starts the real gateway on a
  free loopback port (the same `Gateway` class and argv as conftest's
  `start_gateway`, so it is stopped by PID -- SIGTERM, then SIGKILL -- and its
  workers are killed by PID too), for module-scoped fixtures.
* The *reflect* worker (run this file as a script, stdlib only): it answers
  every request with a JSON description of what the gateway forwarded --
  method, target, version, headers, body, trailers -- so a test can check not
  only the status the client got but also exactly what reached the worker.
  It appends every target it receives to $CONFORMANCE_LOG, one per line, so a
  test can prove that a smuggled request never reached any worker.

  Special targets:
      /fixed            200, Content-Length: 14, "Hello, world!\\n"
      /chunked          200, no Content-Length (the gateway chunks it):
                        BODY "abc", BODY "defgh", END with trailer
                        x-trailer: done
      /status/204       204, and (wrongly) body bytes, which the gateway
                        must drop
      /status/304       304 with ETag and Content-Length: 5, and (wrongly)
                        body bytes, which the gateway must drop
      anything else     200, application/json, Content-Length, the JSON
                        description (after the whole request body and END)
"""

import contextlib
import json
import os
import shutil
import socket
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)


# --------------------------------------------------------------------------
# gateway for module-scoped fixtures

@contextlib.contextmanager
def running_gateway(cmd, *args, workers=2, config=None):
    """Start the gateway with COMMAND `cmd` (a list) and extra flags `args`
    (or, with `config`, from that config file, `cmd` unused and `workers` the
    total number of worker processes to wait for); yields a conftest.Gateway
    accepting connections; stops it (and its workers, by PID) on exit, and
    fails if a sanitizer reported anything."""
    import pytest
    from conftest import (Gateway, SLUICE, SANITIZER_MARKS, free_port, _have)
    if not _have(SLUICE):
        pytest.skip(f"gateway binary not built: {SLUICE}")
    if cmd and not _have(cmd[0]):
        pytest.skip(f"worker not built: {cmd[0]}")
    tmp_root = tempfile.mkdtemp(prefix="sluice-conf-")
    started = []
    gw = None
    try:
        for attempt in range(3):
            port = free_port()
            sock_dir = tempfile.mkdtemp(prefix="s", dir=tmp_root)
            if config:
                argv = [SLUICE, "--config", config, "--listen",
                        f"127.0.0.1:{port}", "--access-log", "off", *args]
            else:
                argv = [SLUICE, "--listen", f"127.0.0.1:{port}",
                        "--workers", str(workers), "--socket-dir", sock_dir,
                        "--access-log", "off", *args, "--", *cmd]
            log_path = os.path.join(tmp_root, f"gateway-{attempt}.log")
            cand = Gateway(argv, port, log_path, sock_dir)
            started.append(cand)
            if cand.wait_ready():
                cand.wait_workers(workers, timeout=10)
                gw = cand
                break
            if cand.alive() or "in use" not in cand.log().lower():
                break
        if gw is None:
            last = started[-1]
            pytest.fail(f"gateway did not start: {' '.join(last.argv)}\n"
                        f"{last.log_tail()}")
        yield gw
    finally:
        reports = []
        for g in started:
            g.stop()
            log = g.log()
            hit = next((m for m in SANITIZER_MARKS if m in log), None)
            if hit:
                i = log.index(hit)
                reports.append(log[max(0, i - 200):i + 3000])
        shutil.rmtree(tmp_root, ignore_errors=True)
        if reports:
            pytest.fail("sanitizer report in the gateway/worker output:\n"
                        + reports[0], pytrace=False)


def reflect_cmd(log_path):
    return ["/usr/bin/env", f"CONFORMANCE_LOG={log_path}",
            sys.executable, os.path.abspath(__file__)]


# --------------------------------------------------------------------------
# raw-socket conversation helpers

def read_all(sock, idle=0.5, total=5.0):
    """Read until EOF, `idle` seconds of silence, or `total` seconds.
    Returns (data, eof)."""
    data = bytearray()
    deadline = time.monotonic() + total
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return bytes(data), False
        sock.settimeout(min(idle, left))
        try:
            d = sock.recv(65536)
        except socket.timeout:
            return bytes(data), False
        except (ConnectionResetError, BrokenPipeError):
            return bytes(data), True
        if not d:
            return bytes(data), True
        data += d


# --------------------------------------------------------------------------
# the reflect worker

def _worker_main():
    from badworker import (Link, frame, HELLO, REQUEST, RESPONSE, BODY, END,
                           CREDIT, CANCEL, PING, PONG, DRAIN)
    path = os.environ["SLUICE_SOCKET"]
    if path.startswith("unix:"):
        path = path[5:]
    logp = os.environ.get("CONFORMANCE_LOG")
    logfd = os.open(logp, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600) \
        if logp else None
    link = Link(path)
    link.send(frame(HELLO, 0, 1, {"pid": os.getpid(), "lib": "reflect/0",
                                   "max_streams": 64, "window": 65536}))
    hello = link.recv_frame()
    if not hello or hello[0] != HELLO:
        return 1
    streams = {}

    def s(b):
        return b.decode("latin-1") if isinstance(b, (bytes, bytearray)) else b

    def respond(sid, st):
        target = st["target"]
        path_ = target.split(b"?", 1)[0]
        if path_ == b"/fixed":
            body = b"Hello, world!\n"
            link.send(frame(RESPONSE, sid, 200,
                            [[b"content-type", b"text/plain"],
                             [b"content-length", b"%d" % len(body)]], 1)
                      + frame(BODY, sid, body) + frame(END, sid))
        elif path_ == b"/chunked":
            link.send(frame(RESPONSE, sid, 200, [[b"content-type", b"text/plain"]], 1)
                      + frame(BODY, sid, b"abc") + frame(BODY, sid, b"defgh")
                      + frame(END, sid, [[b"x-trailer", b"done"]]))
        elif path_ == b"/status/204":
            link.send(frame(RESPONSE, sid, 204, [[b"x-status", b"204"]], 1)
                      + frame(BODY, sid, b"LEAKED-204") + frame(END, sid))
        elif path_ == b"/status/304":
            link.send(frame(RESPONSE, sid, 304, [[b"etag", b'"v1"'],
                                                 [b"content-length", b"5"]], 1)
                      + frame(BODY, sid, b"LEAKD") + frame(END, sid))
        else:
            desc = {
                "method": s(st["method"]), "target": s(target),
                "version": st["version"],
                "headers": [[s(k), s(v)] for k, v in st["headers"]],
                "body": s(bytes(st["body"])),
                "trailers": [[s(k), s(v)] for k, v in st["trailers"]],
                "body_mode": st["mode"],
                "scheme": s(st["scheme"]),
                "server": [s(x) for x in st["server"]],
            }
            body = json.dumps(desc).encode()
            link.send(frame(RESPONSE, sid, 200,
                            [[b"content-type", b"application/json"],
                             [b"content-length", b"%d" % len(body)]], 1)
                      + frame(BODY, sid, body) + frame(END, sid))

    while True:
        f = link.recv_frame()
        if f is None:
            return 0
        ftype, sid = f[0], f[1]
        if ftype == PING:
            link.send(frame(PONG, 0, f[2]))
        elif ftype == DRAIN:
            return 0
        elif ftype == REQUEST:
            method, target, version, headers = f[2], f[3], f[4], f[5]
            mode = f[9]
            if logfd is not None:
                os.write(logfd, target.replace(b"\n", b"\\n") + b"\n")
            st = {"method": method, "target": target, "version": version,
                  "headers": headers, "body": bytearray(), "trailers": [],
                  "mode": mode, "scheme": f[8], "server": f[7]}
            if mode == 0:
                respond(sid, st)
            else:
                streams[sid] = st
                if mode == 2:
                    link.send(frame(CREDIT, sid, 65536))
        elif ftype == BODY:
            st = streams.get(sid)
            if st is not None and f[2]:
                st["body"] += f[2]
                link.send(frame(CREDIT, sid, len(f[2])))
        elif ftype == END:
            st = streams.pop(sid, None)
            if st is not None:
                if len(f) > 2 and f[2]:
                    st["trailers"] = f[2]
                respond(sid, st)
        elif ftype == CANCEL:
            streams.pop(sid, None)


if __name__ == "__main__":
    try:
        sys.exit(_worker_main())
    except (BrokenPipeError, ConnectionResetError):
        sys.exit(0)
