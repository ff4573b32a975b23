"""Run the gateway under valgrind memcheck through a representative scenario
(called by scripts/valgrind; the stdlib and the `h2` package, from the e2e
venv; no pytest).

    python3 tests/e2e/valgrind_scenario.py BUILD_DIR

The gateway (BUILD_DIR/server/sluice, a build without sanitizers) runs under
`valgrind --leak-check=full ... --error-exitcode=99 --track-fds=yes` from a
config file with two pools of one example C worker each (echo, the default
pool, and blob on /blob) and an admin listener. The workers run natively
(valgrind does not trace children). The scenario: keep-alive requests,
a pipelined batch, HTTP/1.0, HEAD, Connection: close, a 413, six concurrent
clients, Content-Length and chunked uploads echoed back, a large
download (Content-Length and chunked), clients that go away mid-download,
mid-upload and while waiting (some with a reset), malformed and oversized
request heads, admin /status and /metrics, a worker killed with SIGKILL
while serving an HTTP/1.1 and an HTTP/2 stream (and replaced), HTTP/2 over
h2c and TLS (h2load from nghttp2-client, when installed; concurrent
streams, echoed uploads with trailers, a 413, client resets mid-upload and
mid-download, a connection closed with streams open), SIGUSR1 (log
reopen), a SIGHUP reload (every worker replaced), and SIGTERM with an
HTTP/1.1 and an HTTP/2 download in flight (both must complete; HTTP/2 gets
GOAWAY first).

WebSockets: a ws_echo pool (`/ws`, graceful_timeout 2s, ws_max_message
100k) and a wsworker.py pool (Host `wsw.test`, run natively like the C
workers): echo of several sizes, text and binary, fragmented, with pings;
a close from the client and from the worker; the worker's ping and RESET;
the gateway closing on a protocol violation, invalid UTF-8 and an
oversized message; refused and bad handshakes; clients that disappear
(idle, mid-frame, mid-message with a reset, with an echo in flight); a
worker that dies with WebSockets open (1011); a WebSocket open across the
SIGHUP reload (its draining worker's timeout: 1001) and one across SIGTERM
(closed by the client).

Exit status 0 when every step passed, the gateway exited with status 0, and
valgrind reported no error (memory errors; definite or indirect leaks: exit
code 99) and no descriptor opened by the gateway still open at exit.
Valgrind's summary is printed either way; its full log is printed on failure.
"""

import http.client
import json
import os
import re
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from h2client import H2Conn, H2Error, client_tls_context  # noqa: E402
from httpc import Conn, ConnectionClosed, blob_check, chunked, get, request_bytes  # noqa: E402
from wsclient import (OP_BINARY, OP_PONG, OP_TEXT, WS, connect as ws_connect,  # noqa: E402
                      frame as ws_frame)

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
MiB = 1 << 20
TIMEOUT = 60.0  # any single wait: the gateway runs 10-50x slower under memcheck

VALGRIND = ["valgrind", "--leak-check=full", "--show-leak-kinds=definite,indirect",
            "--errors-for-leak-kinds=definite,indirect", "--error-exitcode=99",
            "--track-fds=yes", "--num-callers=30"]

CONFIG = """
[server]
listen = 127.0.0.1:{port}
admin = 127.0.0.1:{admin}
access_log = {tmp}/access.log
graceful_timeout = 60s

[listen:tls]
address = 127.0.0.1:{tls_port}
tls_cert = {tmp}/cert.pem
tls_key = {tmp}/key.pem

[pool:echo]
command = {examples}/echo
workers = 1

[pool:blob]
command = {examples}/blob
workers = 1

[pool:ws]
command = {examples}/ws_echo
workers = 1
graceful_timeout = 2s
ws_max_message = 100k

[pool:wsw]
command = {python} {wsworker}
workers = 1

[route:blob]
path = /blob
pool = blob

[route:ws]
path = /ws
pool = ws

[route:wsw]
host = wsw.test
pool = wsw
"""
WSW = "wsw.test"  # the Host that reaches wsworker.py (it acts by path)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def step(name):
    print(f"valgrind: {name}", flush=True)


class Fail(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Fail(what)


class Scenario:
    def __init__(self, build_dir, tmp):
        self.tmp = tmp
        self.port, self.admin_port, self.tls_port = free_port(), free_port(), free_port()
        examples = os.path.join(build_dir, "examples", "c")
        self.config = os.path.join(tmp, "sluice.ini")
        # a self-signed certificate for the TLS listener
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
                        "-keyout", os.path.join(tmp, "key.pem"),
                        "-out", os.path.join(tmp, "cert.pem"), "-subj", "/CN=localhost",
                        "-addext", "subjectAltName=DNS:localhost"],
                       check=True, capture_output=True, timeout=60)
        with open(self.config, "w") as f:
            f.write(CONFIG.format(port=self.port, admin=self.admin_port, tmp=tmp,
                                  examples=examples, tls_port=self.tls_port,
                                  python=sys.executable,
                                  wsworker=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                        "wsworker.py")))
        self.vg_log = os.path.join(tmp, "valgrind.log")
        self.gw_log_path = os.path.join(tmp, "gateway.log")
        self.gw_log = open(self.gw_log_path, "wb")
        argv = VALGRIND + [f"--log-file={self.vg_log}",
                           os.path.join(build_dir, "server", "sluice"), "--config", self.config]
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self.gw_log,
                                     stderr=subprocess.STDOUT, cwd=ROOT, close_fds=True)
        self.seen = set()  # worker pids, killed by pid at the end if left over

    # -- helpers ------------------------------------------------------------
    def status(self):
        r = get(self.admin_port, "/status", timeout=TIMEOUT)
        check(r.status == 200, f"/status: {r!r}")
        return json.loads(r.body)

    def running(self):
        """{pool: [pids of running workers]}, only when every worker of every
        pool is running; else None."""
        st = self.status()
        out = {}
        for p in st["pools"]:
            if any(w["state"] != "running" for w in p["workers"]) \
                    or len(p["workers"]) != p["workers_target"]:
                return None
            out[p["name"]] = sorted(w["pid"] for w in p["workers"])
            self.seen.update(out[p["name"]])
        return out

    def wait(self, fn, what, timeout=TIMEOUT):
        deadline = time.monotonic() + timeout
        while True:
            try:
                v = fn()
            except (OSError, ConnectionClosed, ValueError):
                v = None
            if v:
                return v
            check(self.proc.poll() is None, f"gateway exited while waiting for {what}")
            check(time.monotonic() < deadline, f"timeout waiting for {what}")
            time.sleep(0.1)

    def ok(self, conn, target, body_check, method="GET", body=None, headers=None):
        conn.send(request_bytes(method, target, headers, body))
        r = conn.read_response(method)
        check(r.status == 200 and body_check(r.body), f"{method} {target}: {r!r}")
        return r

    def upload(self, size, use_chunked):
        data = os.urandom(size)
        with Conn(self.port, timeout=TIMEOUT) as c:
            if use_chunked:
                pieces = [data[i:i + 100000] for i in range(0, size, 100000)]
                head = request_bytes("POST", "/up", [("Transfer-Encoding", "chunked")])
                payload = chunked(pieces)
            else:
                head = request_bytes("POST", "/up", [("Content-Length", str(size))])
                payload = data
            err = []

            def send():
                try:
                    c.sock.sendall(head + payload)
                except OSError as e:
                    err.append(e)
            t = threading.Thread(target=send, daemon=True)
            t.start()
            r = c.read_response("POST")
            t.join(TIMEOUT)
            check(r.status == 200 and r.body == data and not err,
                  f"echo of {size} bytes (chunked={use_chunked}): {r.status}, "
                  f"{len(r.body)} bytes back, sender: {err}")

    # -- the scenario -------------------------------------------------------
    def run(self):
        step(f"starting the gateway under valgrind (pid {self.proc.pid})")
        self.wait(lambda: get(self.port, "/", timeout=5).status == 200, "the gateway to serve")
        pools = self.wait(self.running, "both pools running")

        step("keep-alive requests")
        with Conn(self.port, timeout=TIMEOUT) as c:
            for i in range(10):
                self.ok(c, f"/k{i}", lambda b: b == b"")
                n = 1000 * i
                self.ok(c, f"/blob?n={n}", lambda b, n=n: len(b) == n and blob_check(b, 0))

        step("pipelined batch")
        with Conn(self.port, timeout=TIMEOUT) as c:
            targets = [f"/blob?n={i * 100}&chunked={i % 2}" if i % 3 else f"/p{i}"
                       for i in range(12)]
            c.send(b"".join(request_bytes("GET", t) for t in targets))
            for i, t in enumerate(targets):
                r = c.read_response()
                want = i * 100 if i % 3 else 0
                check(r.status == 200 and len(r.body) == want, f"pipelined {t}: {r!r}")

        step("HTTP/1.0, HEAD, Connection: close, 413")
        r = get(self.port, "/blob?n=100", version="HTTP/1.0", timeout=TIMEOUT)
        check(r.status == 200 and len(r.body) == 100, f"HTTP/1.0: {r!r}")
        r = get(self.port, "/blob?n=100", method="HEAD", timeout=TIMEOUT)
        check(r.status == 200 and r.body == b"", f"HEAD: {r!r}")
        with Conn(self.port, timeout=TIMEOUT) as c:
            self.ok(c, "/close", lambda b: b == b"", headers=[("Connection", "close")])
            check(closed_soon(c.sock), "Connection: close not honoured")
        with Conn(self.port, timeout=TIMEOUT) as c:
            # only the head: LIMIT must arrive while the request side is open
            c.send(request_bytes("POST", "/e?limit=10", [("Content-Length", "100000")]))
            r = c.read_head()
            check(r.status == 413, f"body over the worker's LIMIT: {r!r}")

        step("concurrent clients")
        errors = []

        def client(k):
            try:
                with Conn(self.port, timeout=TIMEOUT) as c:
                    for i in range(40):
                        n = (k * 7919 + i * 104729) % 300000
                        self.ok(c, f"/blob?n={n}&chunked={i % 2}",
                                lambda b, n=n: len(b) == n and blob_check(b, 0))
                        self.ok(c, f"/c{k}", lambda b: b == b"x" * n, "POST", b"x" * n)
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(f"client {k}: {type(e).__name__}: {e}")
        threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(TIMEOUT * 2)
        check(not errors and not any(t.is_alive() for t in threads),
              f"concurrent clients: {errors or 'hung'}")

        step("uploads echoed back (Content-Length, chunked)")
        self.upload(300 * 1024, False)
        self.upload(2 * MiB, True)
        with Conn(self.port, timeout=TIMEOUT) as c:
            c.send(request_bytes("POST", "/expect", [("Expect", "100-continue"),
                                                     ("Content-Length", "5")]))
            r = c.read_response("POST")
            check(r.status == 100, f"Expect: 100-continue: {r!r}")
            c.send(b"hello")
            r = c.read_response("POST")
            check(r.status == 200 and r.body == b"hello", f"after 100 Continue: {r!r}")

        step("large downloads (Content-Length, chunked)")
        with Conn(self.port, timeout=TIMEOUT) as c:
            for target, n in ((f"/blob?n={32 * MiB}", 32 * MiB),
                              (f"/blob?n={8 * MiB}&chunked=1", 8 * MiB)):
                c.send(request_bytes("GET", target))
                r = c.read_head()
                got, off = 0, 0
                for piece in c.iter_body(r):
                    check(blob_check(piece, off), f"{target}: wrong bytes at {off}")
                    off += len(piece)
                    got += len(piece)
                check(r.status == 200 and got == n, f"{target}: {r.status}, {got} bytes")

        step("clients going away: mid-download, mid-upload, waiting, mid-head")
        for reset in (False, True):
            c = Conn(self.port, timeout=TIMEOUT, rcvbuf=64 * 1024)
            c.send(request_bytes("GET", f"/blob?n={64 * MiB}"))
            check(c.read_head().status == 200, "download to abandon")
            c.sock.recv(65536)
            self.abandon(c, reset)
            c = Conn(self.port, timeout=TIMEOUT)
            c.send(request_bytes("POST", "/gone", [("Content-Length", str(8 * MiB))]))
            c.send(os.urandom(512 * 1024))
            self.abandon(c, reset)
            c = Conn(self.port, timeout=TIMEOUT)
            c.send(request_bytes("POST", "/gone", [("Transfer-Encoding", "chunked")]))
            c.send(b"10000\r\n" + os.urandom(1000))
            self.abandon(c, reset)
            c = Conn(self.port, timeout=TIMEOUT)
            c.send(b"GET /half HTTP/1.1\r\nHost: x\r\nX-A: ")
            self.abandon(c, reset)
        self.wait(lambda: self.status()["connections"] == 0, "abandoned connections closed")

        step("malformed and oversized request heads")
        for raw, want in ((b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n", 400),
                          (b"GE\x01T / HTTP/1.1\r\n\r\n", 400),
                          (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n"
                           b"Transfer-Encoding: chunked\r\n\r\n", 400),
                          (b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 40000 + b"\r\n\r\n", 431),
                          (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414)):
            with Conn(self.port, timeout=TIMEOUT) as c:
                try:
                    c.send(raw)
                    r = c.read_response()
                except (ConnectionResetError, BrokenPipeError) as e:
                    raise Fail(f"malformed {raw[:40]!r}: {e}") from None
                check(r.status == want, f"malformed {raw[:40]!r}: want {want}, got {r!r}")

        step("admin /status and /metrics")
        st = self.status()
        check(st["pools"][0]["name"] == "echo", f"/status: {st}")
        r = get(self.admin_port, "/metrics", timeout=TIMEOUT)
        check(r.status == 200 and b"sluice_requests_total" in r.body, f"/metrics: {r!r}")
        r = get(self.admin_port, "/nope", timeout=TIMEOUT)
        check(r.status == 404, f"admin 404: {r!r}")

        step("WebSockets: echo of several sizes, pings, closes from each side, "
             "violations, clients that disappear, a worker's reset and death")
        self.websockets()

        step("a worker killed while serving (HTTP/1.1 and HTTP/2 streams)")
        victim = pools["echo"][0]
        c = Conn(self.port, timeout=TIMEOUT)
        c.send(request_bytes("POST", "/dying", [("Content-Length", str(4 * MiB))]))
        c.send(os.urandom(64 * 1024))
        r = c.read_head()  # echo answers at once, before the body
        check(r.status == 200, f"upload before the kill: {r!r}")
        h = H2Conn(self.port, timeout=TIMEOUT)
        hs = h.request("POST", "/dying-h2", end=False)
        h.send_body(hs, b"z" * 1000)
        h.wait(lambda: h.streams[hs].status is not None, what="h2 echo head")
        os.kill(victim, signal.SIGKILL)
        # the response had started: RST_STREAM; the connection carries on
        h.wait(lambda: h.streams[hs].reset is not None, what="RST_STREAM of the killed worker's stream")
        check(h.streams[hs].reset == 2, f"h2 stream of the killed worker: {h.streams[hs]!r}")
        r2 = h.get("/blob?n=5000")
        check(r2.status == 200 and len(r2.body) == 5000, f"h2 after the kill: {r2!r}")
        h.close()
        # the response had started: the gateway cuts it off by closing the
        # connection (echoed bytes may still arrive before the close)
        check(closed_soon(c.sock), "connection of the killed worker's stream not closed")
        c.close()
        pools = self.wait(lambda: (lambda p: p if p and victim not in p["echo"] else None)(
            self.running()), "the killed worker replaced")
        with Conn(self.port, timeout=TIMEOUT) as c:
            self.ok(c, "/after-kill", lambda b: b == b"")
        check(self.status()["pools"][0]["restarts"] == 1, "restart not counted")

        step("TLS: keep-alive requests, a download, failed handshakes")
        ctx = ssl.create_default_context(cafile=os.path.join(self.tmp, "cert.pem"))
        tc = http.client.HTTPSConnection("localhost", self.tls_port, context=ctx, timeout=TIMEOUT)
        for i in range(5):
            tc.request("GET", f"/blob?n={i * 1000}")
            r = tc.getresponse()
            b = r.read()
            check(r.status == 200 and len(b) == i * 1000 and blob_check(b, 0), f"TLS request {i}")
        tc.request("GET", f"/blob?n={MiB}")
        b = tc.getresponse().read()
        check(len(b) == MiB and blob_check(b, 0), "TLS download")
        for payload in (request_bytes("GET", "/"), b"\x16\x03\x01\x02\x00\x01\x00"):
            with socket.create_connection(("127.0.0.1", self.tls_port), timeout=TIMEOUT) as raw:
                raw.sendall(payload)
                raw.shutdown(socket.SHUT_WR)
                check(closed_soon(raw), "failed TLS handshake not closed")
        self.tls_conn = tc  # still open: a SIGHUP reloads the certificate under it

        step("HTTP/2: h2load (h2c, TLS), concurrent streams, uploads, resets, 413")
        self.http2()

        step("SIGUSR1 (reopen logs)")
        os.rename(os.path.join(self.tmp, "access.log"), os.path.join(self.tmp, "access.log.1"))
        self.proc.send_signal(signal.SIGUSR1)
        self.wait(lambda: os.path.exists(os.path.join(self.tmp, "access.log")), "access log reopened")

        step("SIGHUP reload: every worker replaced (an open WebSocket drained: 1001)")
        old = {p for ps in pools.values() for p in ps}
        drained = ws_connect(self.port, "/ws/drained", timeout=TIMEOUT)
        ws_echo(drained, OP_TEXT, b"before the reload")
        self.proc.send_signal(signal.SIGHUP)
        with Conn(self.port, timeout=TIMEOUT) as c:
            for i in range(20):
                self.ok(c, f"/blob?n={i}", lambda b, i=i: len(b) == i)
        ws_echo(drained, OP_TEXT, b"while its worker drains")
        drained.expect_close(1001, timeout=TIMEOUT)
        drained.shutdown()
        pools = self.wait(lambda: (lambda p: p if p and not old & {x for v in p.values() for x in v}
                                   else None)(self.running()), "reload done")
        self.tls_conn.request("GET", "/blob?n=10")  # opened before the reload
        check(self.tls_conn.getresponse().read() == bytes(range(10)), "TLS after reload")
        self.tls_conn.close()

        step("SIGTERM with downloads and a WebSocket in flight (HTTP/1.1, HTTP/2 over TLS)")
        term_ws = ws_connect(self.port, "/echo?t=term", host=WSW, timeout=TIMEOUT)
        ws_echo(term_ws, OP_TEXT, b"before SIGTERM")
        c = Conn(self.port, timeout=TIMEOUT, rcvbuf=64 * 1024)
        n = 4 * MiB
        c.send(request_bytes("GET", f"/blob?n={n}"))
        r = c.read_head()
        check(r.status == 200, f"download before SIGTERM: {r!r}")
        # HTTP/2: small windows, given back only after the signal
        h = H2Conn(self.tls_port, tls=client_tls_context(alpn=("h2",)), timeout=TIMEOUT,
                   window=65535, conn_window=65535, auto_ack=False)
        hs = h.request("GET", f"/blob?n={MiB}")
        h.wait(lambda: h.streams[hs].status is not None, what="h2 download head")
        self.proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        h.wait(lambda: h.goaway is not None, what="GOAWAY after SIGTERM")
        check(h.goaway.error_code == 0 and h.goaway.last_stream_id == hs, f"GOAWAY: {h.goaway}")
        st = h.streams[hs]
        h.auto_ack = True
        if st.unacked:
            h.ack(hs, st.unacked)
        h.wait(lambda: st.done, what="h2 download after GOAWAY")
        check(st.ended and len(st.body) == MiB and blob_check(st.body, 0),
              f"in-flight h2 download: {st!r}")
        check(h.wait_closed(TIMEOUT), "h2 connection not closed after GOAWAY and its last stream")
        h.close()
        body = b"".join(c.iter_body(r))
        check(len(body) == n and blob_check(body, 0), f"in-flight download: {len(body)} of {n}")
        c.close()
        ws_echo(term_ws, OP_BINARY, b"after SIGTERM")
        term_ws.close(1000)
        term_ws.expect_close(1000, reply=False, timeout=TIMEOUT)
        term_ws.shutdown()

    def http2(self):
        """HTTP/2 over h2c and TLS: load from h2load, then streams whose
        every byte is checked, resets, a 413, a connection dropped with
        streams open."""
        h2load = shutil.which("h2load")
        if h2load:
            for url, n in ((f"http://127.0.0.1:{self.port}/blob?n=3000", 300),
                           (f"https://127.0.0.1:{self.tls_port}/h2load", 200)):
                r = subprocess.run([h2load, "-n", str(n), "-c", "2", "-m", "10", url],
                                   capture_output=True, timeout=TIMEOUT * 2)
                out = r.stdout.decode("utf-8", "replace")
                check(r.returncode == 0 and f"{n} succeeded, 0 failed, 0 errored" in out
                      and f"{n} 2xx" in out, f"h2load {url}: {out[-1500:]}")
                m = re.search(r"finished in .*", out)
                print(f"valgrind:   h2load {url}: {m.group(0) if m else '?'}", flush=True)
        else:
            print("valgrind: h2load not installed (nghttp2-client): skipped", flush=True)
        tls = client_tls_context(alpn=("h2",))
        for port, ctx in ((self.port, None), (self.tls_port, tls)):
            h = H2Conn(port, tls=ctx, timeout=TIMEOUT)
            # concurrent streams: downloads, GETs, uploads with trailers
            up = os.urandom(300 * 1024)
            sids = {h.request("GET", f"/blob?n={i * 20000}"): i * 20000 for i in range(6)}
            gets = [h.request("GET", f"/g{i}") for i in range(4)]
            ups = [h.request("POST", "/h2up", body=up, trailers=[("x-sum", "1")]),
                   h.request("POST", "/h2up", headers=[("content-length", str(len(up)))],
                             body=up)]
            for sid, n in sids.items():
                st = h.response(sid)
                check(st.status == 200 and len(st.body) == n and blob_check(st.body, 0),
                      f"h2 download: {st!r}")
            for sid in gets:
                st = h.response(sid)
                check(st.status == 200 and st.body == b"", f"h2 GET: {st!r}")
            for sid in ups:
                st = h.response(sid)
                check(st.status == 200 and bytes(st.body) == up, f"h2 upload: {st!r}")
            # a 413: a Content-Length over the worker's LIMIT
            st = h.response(h.request("POST", "/e?limit=10",
                                      headers=[("content-length", "100000")], end=False))
            check(st.status == 413, f"h2 413: {st!r}")
            # the client resets mid-upload and mid-download
            sid = h.request("POST", "/h2reset", end=False)
            h.send_body(sid, os.urandom(100 * 1024))
            h.reset(sid)
            sid = h.request("GET", f"/blob?n={16 * MiB}")
            h.wait(lambda: len(h.streams[sid].body) >= 64 * 1024, what="h2 download to reset")
            h.reset(sid)
            st = h.get("/blob?n=777")
            check(st.status == 200 and len(st.body) == 777, f"h2 after resets: {st!r}")
            check(not h.fc_violations and h.goaway is None,
                  f"h2: {h.fc_violations} {h.goaway}")
            # gone with streams open: an upload and a download
            h.request("POST", "/h2gone", end=False)
            sid = h.request("GET", f"/blob?n={16 * MiB}")
            h.wait(lambda: len(h.streams[sid].body) > 0, what="h2 download to abandon")
            h.close()
        # (the TLS keep-alive connection of the previous step stays open)
        self.wait(lambda: self.status()["connections"] == 1, "h2 connections closed")

    def websockets(self):
        # ws_echo: echo of several sizes, text and binary, one frame and
        # fragmented, with pings between; then the client closes
        ws = ws_connect(self.port, "/ws/echo", timeout=TIMEOUT)
        for i, n in enumerate((0, 1, 125, 126, 1000, 65535, 65536, 100 * 1024)):
            op = OP_TEXT if i % 2 else OP_BINARY
            ws_echo(ws, op, (b"abcdefgh" * (n // 8 + 1))[:n])
            ws.ping(b"p%d" % i)
            m = ws.recv_message(TIMEOUT)
            check(m.opcode == OP_PONG and m.data == b"p%d" % i, f"pong {i}: {m!r}")
        ws.send_fragments(OP_TEXT, ["frag", "men", "ted \u00e9".encode()])
        m = ws.recv_message(TIMEOUT)
        check(m.opcode == OP_TEXT and m.data == "fragmented \u00e9".encode(), f"fragmented: {m!r}")
        ws.close(1000, b"bye")
        ws.expect_close(1000, reply=False, timeout=TIMEOUT)
        ws.shutdown()
        # the gateway closes: a protocol violation (unmasked), invalid UTF-8,
        # a message above ws_max_message (100k)
        for raw, code in ((ws_frame(OP_TEXT, b"unmasked", mask=False), 1002),
                          (ws_frame(OP_TEXT, b"bad \xff utf-8"), 1007),
                          (ws_frame(OP_BINARY, b"x" * (200 * 1024)), 1009)):
            ws = ws_connect(self.port, "/ws/violation", timeout=TIMEOUT)
            try:
                ws.send_raw(raw)
            except (BrokenPipeError, ConnectionResetError):
                pass
            ws.expect_close(code, timeout=TIMEOUT)
            ws.shutdown()
        # wsworker: the worker closes (4000), pings (its pong comes back as
        # a message), resets (1011)
        ws = ws_connect(self.port, "/close", host=WSW, timeout=TIMEOUT)
        ws.send_text("x")
        ws.expect_close(4000, timeout=TIMEOUT)
        ws.shutdown()
        ws = ws_connect(self.port, "/ping", host=WSW, timeout=TIMEOUT)
        m = ws.recv_message(TIMEOUT)
        check(m.frame is not None and m.frame.opcode == 0x9 and m.data == b"hi", f"worker ping: {m!r}")
        ws.pong(m.data)
        ws.expect_message(OP_TEXT, b"pong:hi", TIMEOUT)
        ws.close(1001)
        ws.expect_close(1001, reply=False, timeout=TIMEOUT)
        ws.shutdown()
        ws = ws_connect(self.port, "/reset", host=WSW, timeout=TIMEOUT)
        ws.send_text("x")
        ws.expect_close(1011, timeout=TIMEOUT)
        ws.shutdown()
        # a refused handshake, and a bad one
        w = WS(self.port, timeout=TIMEOUT)
        check(w.handshake("/refuse", host=WSW).status == 403, "refused handshake")
        w.shutdown()
        w = WS(self.port, timeout=TIMEOUT)
        check(w.handshake("/ws/x", version="8").status == 426, "version 8 handshake")
        w.shutdown()
        # clients that disappear: idle, mid-frame, mid-message (with a reset),
        # with an echo in flight
        for i in range(4):
            ws = ws_connect(self.port, "/ws/gone", timeout=TIMEOUT)
            if i == 1:
                ws.send_raw(ws_frame(OP_BINARY, b"y" * 5000)[:100])
            elif i == 2:
                ws.send_raw(ws_frame(OP_TEXT, b"part", fin=False))
            elif i == 3:
                ws.send_binary(b"z" * 60000)
            self.abandon(ws, i == 2)
        # a worker dies with WebSockets open: 1011, and the worker is replaced
        a = ws_connect(self.port, "/echo", host=WSW, timeout=TIMEOUT)
        ws_echo(a, OP_TEXT, b"soon gone")
        ws = ws_connect(self.port, "/die", host=WSW, timeout=TIMEOUT)
        ws.send_text("x")
        ws.expect_close(1011, timeout=TIMEOUT)
        a.expect_close(1011, timeout=TIMEOUT)
        for c in (a, ws):
            c.shutdown()
        self.wait(self.running, "the wsworker replaced")
        ws = ws_connect(self.port, "/echo", host=WSW, timeout=TIMEOUT)
        ws_echo(ws, OP_BINARY, b"after the death")
        ws.close(1000)
        ws.expect_close(1000, reply=False, timeout=TIMEOUT)
        ws.shutdown()
        # over HTTP/2 (RFC 8441): an echo closed cleanly, a violation, a
        # stream the client resets
        h = H2Conn(self.port, timeout=TIMEOUT, validate=False)
        h.pump(0.1)
        hs = [(":protocol", "websocket"), ("sec-websocket-version", "13")]
        sids = []
        for path in ("/ws/h2", "/ws/h2-violation", "/ws/h2-reset"):
            sid = h.request("CONNECT", path, headers=hs, end=False)
            h.wait(lambda: h.streams[sid].status is not None, what="h2 WebSocket accepted")
            check(h.streams[sid].status == 200, f"h2 WebSocket: {h.streams[sid]!r}")
            sids.append(sid)
        a, b, c = sids
        h.send_body(a, ws_frame(OP_TEXT, b"over h2"), end=False)
        h.wait(lambda: len(h.streams[a].body) >= 9, what="h2 echo")
        check(bytes(h.streams[a].body[2:9]) == b"over h2", f"h2 echo: {h.streams[a]!r}")
        h.send_body(b, ws_frame(OP_TEXT, b"x", mask=False), end=False)
        h.wait(lambda: h.streams[b].done, what="h2 violation closed")
        h.reset(c)
        h.send_body(a, ws_frame(0x8, struct.pack(">H", 1000)), end=True)
        h.wait(lambda: h.streams[a].done, what="h2 WebSocket closed")
        check(h.streams[a].reset is None, f"h2 close: {h.streams[a]!r}")
        h.close()
        self.wait(lambda: self.status()["connections"] == 0, "WebSocket connections closed")
        wss = [p["websockets"] for p in self.status()["pools"] if p["name"] in ("ws", "wsw")]
        check(all(w["open"] == 0 for w in wss) and sum(w["total"] for w in wss) == 17,
              f"/status websockets: {wss}")

    def abandon(self, c, reset):
        if reset:
            c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        c.close()

    def finish(self):
        try:
            return self.proc.wait(TIMEOUT * 2)
        except subprocess.TimeoutExpired:
            return None

    def kill_all(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for pid in self.seen:
            try:
                with open(f"/proc/{pid}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                if ppid in (1, self.proc.pid):
                    os.kill(pid, signal.SIGKILL)
            except (OSError, ValueError, IndexError):
                pass


def ws_echo(ws, op, data):
    if len(data) > 60000:  # the echo may start before the message is all sent
        t = threading.Thread(target=ws.send_frame, args=(op, data), daemon=True)
        t.start()
        ws.expect_message(op, data, TIMEOUT)
        t.join(TIMEOUT)
    else:
        ws.send_frame(op, data)
        ws.expect_message(op, data, TIMEOUT)


def closed_soon(sock, timeout=TIMEOUT):
    """True when the peer closes or resets `sock` within `timeout` (bytes
    arriving meanwhile are discarded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            if not sock.recv(1 << 20):
                return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False
    return False


def leaked_fds(vg_text):
    """Descriptors valgrind lists as open at exit that the gateway opened
    itself (not inherited; valgrind's own log file is shown as inherited)."""
    out = []
    for m in re.finditer(r"==\d+== Open (?:file descriptor|AF_\w+ socket) (\d+):(.*)\n"
                         r"((?:==\d+==    .*\n)*)", vg_text):
        if "<inherited from parent>" not in m.group(3):
            out.append(m.group(0))
    return out


def main():
    build_dir = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "build-valgrind")
    tmp = tempfile.mkdtemp(prefix="sluice-valgrind-")
    sc = Scenario(build_dir, tmp)
    failure = None
    t0 = time.monotonic()
    try:
        sc.run()
    except (Fail, OSError, ConnectionClosed, ValueError, H2Error) as e:
        failure = f"{type(e).__name__}: {e}"
    if failure and sc.proc.poll() is None:
        sc.proc.send_signal(signal.SIGTERM)
    code = sc.finish()
    sc.kill_all()
    elapsed = time.monotonic() - t0
    try:
        with open(sc.vg_log) as f:
            vg = f.read()
    except OSError:
        vg = ""
    summary = [l for l in vg.splitlines()
               if re.search(r"FILE DESCRIPTORS|in use at exit|total heap usage|"
                            r"definitely lost|indirectly lost|possibly lost|"
                            r"still reachable|ERROR SUMMARY|All heap blocks", l)]
    fds = leaked_fds(vg)
    print("\n".join(["valgrind summary:"] + summary))
    if code is None:
        failure = failure or "the gateway did not exit after SIGTERM"
    elif code == 99:
        failure = failure or "valgrind reported errors (exit code 99)"
    elif code != 0:
        failure = failure or f"the gateway exited with status {code}"
    if fds and not failure:
        failure = f"{len(fds)} descriptors opened by the gateway still open at exit"
    if failure:
        with open(sc.gw_log_path, "rb") as f:
            gw = f.read().decode("utf-8", "replace")
        print(f"\n--- gateway log (last 60 lines) ---\n" + "\n".join(gw.splitlines()[-60:]))
        print(f"\n--- valgrind log ---\n{vg}")
        print(f"\nvalgrind: FAILED after {elapsed:.0f}s: {failure}")
        print(f"(logs kept in {tmp})")
        return 1
    print(f"valgrind: OK in {elapsed:.0f}s (gateway exit status {code}, no memcheck errors, "
          f"no leaks, no descriptor left open)")
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
