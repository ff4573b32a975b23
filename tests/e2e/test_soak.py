"""Soak test: the real gateway under mixed traffic while workers are killed.

One gateway (config file, `start_config`) runs four pools of example C
workers -- echo (2 workers, the default pool), blob (1, `/blob`), hello
(1, `/hello`, at most 2 streams, so that its requests also queue) and
ws_echo (1, `/ws`) -- and
several client threads drive traffic over loopback for
SLUICE_SOAK_SECONDS (default 60 s; 30 s for a sanitizer build):

- keep-alive GETs (hello with ?delay, echo without a body, small blobs),
- pipelined batches of 2..16 requests on one raw connection,
- uploads echoed back by `echo` and compared byte for byte (0 .. 3 MiB,
  Content-Length or chunked, sent by a second thread while the response is
  read),
- downloads from `blob` (0 .. 4 MiB, Content-Length or chunked) checked
  against the blob pattern,
- slow readers (8 KiB receive buffer, small reads with sleeps),
- clients that go away mid-upload, mid-download, while waiting for a
  response and mid-head (half of them with a reset),
- HTTP/2 (h2c on the plain port, ALPN h2 on a TLS listener) from the `h2`
  package (tests/e2e/h2client.py): batches of 1..8 concurrent streams
  (GETs, blob downloads, echoed uploads), streams the client resets
  mid-upload or mid-download, connections closed with streams open,
- h2load (nghttp2-client, when installed): a few connections x streams at a
  bounded request rate, h2c and TLS in turns,
- WebSocket clients (tests/e2e/wsclient.py) echoing messages continuously
  through `ws_echo` (text and binary, 0 .. 128 KiB, some fragmented, some
  pings between them), each connection 1..200 messages then a close
  handshake; every message must come back intact, or the connection end
  with close 1011 (or be lost: 1006) with a kill in the ws pool to explain
  it,
- a killer thread that SIGKILLs a running worker of a random pool every
  2..3 s.

Every request is classified. Success: the expected status and body. A
*tolerated* failure is a 502, or a connection closed/reset (for HTTP/2 also
a stream reset by the gateway) before the response was complete, on a
request routed to a pool in which a worker was killed while the request was
in flight (killed between KILL_GRACE seconds before the request started --
the gateway may still dispatch to a link whose process just died -- and the
moment the failure was seen); h2load's failed requests likewise, per run;
at most kills x (requests a client can have in flight) of them. Anything
else is an error and fails the test: another status (500, 503, 504, ...), a
wrong or short body, a malformed response, a client timeout (a hang), a
tolerated-looking failure with no kill to explain it, a flow-control
violation or protocol error from the gateway (HTTP/2).

Afterwards the gateway must still serve, every pool must be back to its full
set of running workers (and /status must count exactly one restart per
kill), and the gateway's open file descriptors and RSS must be back near the
baseline measured after a warm-up phase with the same traffic (fds:
baseline + FD_SLACK; RSS: baseline + RSS_SLACK_MIB, not checked for
sanitizer builds). A summary is printed.
"""

import collections
import os
import random
import re
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time

import h2.exceptions

from conftest import BUILD_DIR, SANITIZED, free_port, proc_stat, proc_status_kib
from h2client import H2Conn, H2Error, client_tls_context
from httpc import Conn, ConnectionClosed, blob_check, request_bytes
from pools_util import HELLO_BODY, start_config, wait_for  # noqa: F401 (fixture)
from wsclient import OP_BINARY, OP_CLOSE, OP_PONG, OP_TEXT, WS, Timeout as WSTimeout

MiB = 1 << 20

_ASAN = SANITIZED or "asan" in os.path.basename(BUILD_DIR)
SOAK_SECONDS = float(os.environ.get("SLUICE_SOAK_SECONDS") or (30 if _ASAN else 60))
WARMUP_SECONDS = max(2.0, min(6.0, SOAK_SECONDS / 8))
CLIENT_TIMEOUT = 60.0 if _ASAN else 30.0  # any single wait longer than this is a hang
KILL_EVERY = (2.0, 3.0)
KILL_MIN_UPTIME = 1.0  # only kill workers that have been running this long
KILL_GRACE = 3.0
FD_SLACK = 2
RSS_SLACK_MIB = 4
PIPELINE_MAX = 16
H2_BATCH_MAX = 8
H2LOAD = shutil.which("h2load")
H2LOAD_CLIENTS, H2LOAD_STREAMS, H2LOAD_RPS = 2, 8, 100  # rps per client
WS_CLIENTS = 3
WS_MESSAGES_MAX = 200  # per connection
WS_MESSAGE_MAX = 128 * 1024
WS_KILL_SHARE = 0.3  # of the killer's ticks that also kill the ws worker

POOLS = {"echo": 2, "blob": 1, "hello": 1, "ws": 1}
CONFIG = """
[server]
access_log = off

[pool:echo]
command = {EXAMPLES}/echo
workers = 2

[pool:blob]
command = {EXAMPLES}/blob
workers = 1

[pool:hello]
command = {EXAMPLES}/hello
workers = 1
max_streams = 2

[pool:ws]
command = {EXAMPLES}/ws_echo
workers = 1

[route:ws]
path = /ws
pool = ws

[route:blob]
path = /blob
pool = blob

[route:hello]
path = /hello
pool = hello

[listen:tls]
address = 127.0.0.1:{TLS_PORT}
tls_cert = {CERT}
tls_key = {KEY}
"""

# Random but reproducible payload for uploads: slices of this buffer.
_PAYLOAD = random.Random(6).randbytes(4 * MiB)

OP_NAMES_WS = {OP_TEXT: "text", OP_BINARY: "binary"}

# Failures that mean "the connection went away" (as opposed to a hang or a
# protocol error).
CLOSED = (ConnectionClosed, ConnectionResetError, BrokenPipeError,
          ConnectionAbortedError)


def pool_of(target):
    if target.startswith("/blob"):
        return "blob"
    if target.startswith("/hello"):
        return "hello"
    if target.startswith("/ws"):
        return "ws"
    return "echo"


class Bad(Exception):
    """A response that is wrong whatever happened to the workers."""


class Soak:
    def __init__(self, gw, tls_port=None):
        self.gw = gw
        self.tls_port = tls_port
        self.tls_ctx = client_tls_context(alpn=("h2",))
        self.lock = threading.Lock()
        self.ok = collections.Counter()         # kind -> successful requests
        self.tolerated = collections.Counter()  # (kind, "502"|"closed"|"collateral")
        self.aborts = collections.Counter()     # kind -> deliberate client aborts
        self.errors = []                        # descriptions
        self.kills = []                         # (t, pool, pid)
        self.bytes_up = 0
        self.bytes_down = 0
        self.stop = threading.Event()
        self.h2load_runs = 0

    # -- bookkeeping ------------------------------------------------------
    def error(self, kind, what):
        with self.lock:
            self.errors.append(f"{kind}: {what}")

    def success(self, kind, up=0, down=0):
        with self.lock:
            self.ok[kind] += 1
            self.bytes_up += up
            self.bytes_down += down

    def explained(self, pool, start, end):
        """A kill in `pool` that can explain a failure of a request that
        started at `start` and failed at `end`."""
        with self.lock:
            return any(p == pool and start - KILL_GRACE <= t <= end
                       for t, p, _ in self.kills)

    def failure(self, kind, target, start, how, detail):
        """A 502 (how="502") or a lost connection (how="closed"): tolerated
        only when a kill in the request's pool explains it."""
        end = time.monotonic()
        pool = pool_of(target)
        if self.explained(pool, start, end):
            with self.lock:
                self.tolerated[(kind, how)] += 1
            return True
        self.error(kind, f"{how} on {target} (pool {pool}, "
                         f"t={start - self.t0:.2f}..{end - self.t0:.2f}s) with no kill "
                         f"in that pool to explain it: {detail}")
        return False

    def outcome(self, kind, target, start, exc):
        """Classify an exception raised while doing one request."""
        if isinstance(exc, Bad):
            self.error(kind, f"{target}: {exc}")
        elif isinstance(exc, socket.timeout):
            self.error(kind, f"{target}: client timeout ({CLIENT_TIMEOUT}s): hang")
        elif isinstance(exc, CLOSED):
            self.failure(kind, target, start, "closed", f"{type(exc).__name__}: {exc}")
        elif isinstance(exc, ConnectionRefusedError):
            self.error(kind, f"{target}: connection refused (gateway gone?)")
        else:
            self.error(kind, f"{target}: {type(exc).__name__}: {exc}")

    def check_status(self, kind, target, start, resp):
        """True for a 200; a 502 is passed to failure(); anything else is
        an error (Bad)."""
        if resp.status == 200:
            return True
        if resp.status == 502:
            self.failure(kind, target, start, "502", repr(resp))
            return False
        raise Bad(f"unexpected status: {resp!r}")

    # -- clients ------------------------------------------------------------
    def loop(self, kind, body):
        """Run body(rng, state) until stop; unexpected exceptions in the
        test code itself are errors too."""
        rng = random.Random(hash(kind) ^ threading.get_ident())
        state = {"conn": None}
        try:
            while not self.stop.is_set():
                body(rng, state)
        except Exception as e:  # noqa: BLE001 - reported as a test error
            self.error(kind, f"client thread crashed: {type(e).__name__}: {e}")
        finally:
            if state["conn"] is not None:
                state["conn"].close()

    def conn(self, state, **kw):
        if state["conn"] is None:
            state["conn"] = Conn(self.gw.port, timeout=CLIENT_TIMEOUT, **kw)
        return state["conn"]

    def drop(self, state):
        if state["conn"] is not None:
            state["conn"].close()
            state["conn"] = None

    def one(self, kind, state, target, expect, method="GET"):
        """One request on the thread's keep-alive connection."""
        start = time.monotonic()
        try:
            c = self.conn(state)
            c.send(request_bytes(method, target))
            r = c.read_response(method)
            if self.check_status(kind, target, start, r):
                if not expect(r.body):
                    raise Bad(f"wrong body: {r!r}")
                self.success(kind, down=len(r.body))
            if r.status != 200 or r.has_token("connection", "close"):
                self.drop(state)
        except Exception as e:  # noqa: BLE001
            self.outcome(kind, target, start, e)
            self.drop(state)

    def keepalive(self, rng, state):
        x = rng.random()
        if x < 0.5:
            target = f"/hello?delay={rng.choice([0, 0, 1, 5, 20])}"
            self.one("get", state, target, lambda b: b == HELLO_BODY)
        elif x < 0.75:
            self.one("get", state, "/echo/get", lambda b: b == b"")
        else:
            n = rng.randrange(0, 20000)
            self.one("get", state, f"/blob?n={n}",
                     lambda b, n=n: len(b) == n and blob_check(b, 0))

    def pipelined(self, rng, state):
        batch = []
        for _ in range(rng.randrange(2, PIPELINE_MAX + 1)):
            x = rng.random()
            if x < 0.5:
                batch.append((f"/hello?p=1&delay={rng.choice([0, 0, 2])}", HELLO_BODY))
            elif x < 0.75:
                n = rng.randrange(0, 5000)
                batch.append((f"/blob?n={n}&chunked={rng.randrange(2)}", n))
            else:
                batch.append(("/echo/p", b""))
        start = time.monotonic()
        try:
            c = self.conn(state)
            c.send(b"".join(request_bytes("GET", t) for t, _ in batch))
        except Exception as e:  # noqa: BLE001
            self.outcome("pipelined", batch[0][0], start, e)
            self.drop(state)
            return
        for i, (target, want) in enumerate(batch):
            try:
                r = c.read_response()
                if self.check_status("pipelined", target, start, r):
                    good = (len(r.body) == want and blob_check(r.body, 0)
                            if isinstance(want, int) else r.body == want)
                    if not good:
                        raise Bad(f"wrong body (request {i} of {len(batch)}): {r!r}")
                    self.success("pipelined", down=len(r.body))
                    if r.has_token("connection", "close") and i + 1 < len(batch):
                        raise Bad(f"Connection: close on a 200 in a pipeline: {r!r}")
                elif r.has_token("connection", "close"):
                    # a tolerated 502 that ends the connection: the rest of
                    # the batch goes with it
                    with self.lock:
                        self.tolerated[("pipelined", "collateral")] += len(batch) - i - 1
                    self.drop(state)
                    return
            except Exception as e:  # noqa: BLE001
                tolerated = isinstance(e, CLOSED) and \
                    self.failure("pipelined", target, start, "closed", f"{e}")
                if not isinstance(e, CLOSED):
                    self.outcome("pipelined", target, start, e)
                if tolerated:
                    with self.lock:
                        self.tolerated[("pipelined", "collateral")] += len(batch) - i - 1
                self.drop(state)
                return

    def upload(self, rng, state):
        x = rng.random()
        size = (rng.randrange(0, 64 * 1024) if x < 0.4 else
                rng.randrange(64 * 1024, 512 * 1024) if x < 0.8 else
                rng.randrange(512 * 1024, 3 * MiB + 1))
        off = rng.randrange(0, len(_PAYLOAD) - size + 1)
        body = memoryview(_PAYLOAD)[off:off + size]
        chunked = rng.random() < 0.5
        target = f"/echo/up?size={size}&chunked={int(chunked)}"
        headers = [("Transfer-Encoding", "chunked")] if chunked else \
            [("Content-Length", str(size))]
        head = request_bytes("POST", target, headers)
        pieces = []
        pos = 0
        while pos < size:
            n = min(size - pos, rng.choice([1, 100, 4096, 65536, 300000]))
            pieces.append(body[pos:pos + n])
            pos += n
        start = time.monotonic()
        sender = None
        try:
            c = self.conn(state)
            sent_err = []

            def send():
                try:
                    c.sock.sendall(head)
                    for p in pieces:
                        if chunked:
                            c.sock.sendall(b"%x\r\n" % len(p) + bytes(p) + b"\r\n")
                        else:
                            c.sock.sendall(p)
                    if chunked:
                        c.sock.sendall(b"0\r\n\r\n")
                except Exception as e:  # noqa: BLE001 - checked below
                    sent_err.append(e)

            sender = threading.Thread(target=send, daemon=True)
            sender.start()
            r = c.read_head()
            if self.check_status("upload", target, start, r):
                got = bytearray()
                for piece in c.iter_body(r, "POST"):
                    got += piece
                    if len(got) > size:
                        break
                if bytes(got) != body:
                    raise Bad(f"echo of {size} bytes came back as {len(got)} bytes"
                              f"{' (same length, different bytes)' if len(got) == size else ''}")
                sender.join(CLIENT_TIMEOUT)
                if sender.is_alive() or sent_err:
                    raise Bad(f"complete echo but the upload failed: {sent_err}")
                self.success("upload", up=size, down=size)
                if r.has_token("connection", "close"):
                    self.drop(state)
            else:
                self.drop(state)
        except Exception as e:  # noqa: BLE001
            self.outcome("upload", target, start, e)
            self.drop(state)
        if sender is not None:
            sender.join(CLIENT_TIMEOUT)
            if sender.is_alive():
                self.error("upload", f"{target}: sender thread hung")

    def download(self, rng, state):
        x = rng.random()
        n = rng.randrange(0, 256 * 1024) if x < 0.6 else rng.randrange(256 * 1024, 4 * MiB + 1)
        chunked = rng.random() < 0.5
        self.one("download", state, f"/blob?n={n}&chunked={int(chunked)}",
                 lambda b: len(b) == n and blob_check(b, 0))

    def slow(self, rng, state):
        n = rng.randrange(64 * 1024, 1 * MiB)
        target = f"/blob?n={n}&chunked={rng.randrange(2)}"
        start = time.monotonic()
        try:
            # a fresh connection each time: the receive buffer is set before connect
            with Conn(self.gw.port, timeout=CLIENT_TIMEOUT, rcvbuf=8192) as c:
                c.send(request_bytes("GET", target))
                r = c.read_head()
                if self.check_status("slow", target, start, r):
                    got = bytearray()
                    for piece in c.iter_body(r, chunk=rng.choice([1024, 4096, 16384])):
                        got += piece
                        time.sleep(rng.choice([0, 0.001, 0.002, 0.005]))
                    if len(got) != n or not blob_check(got, 0):
                        raise Bad(f"slow download of {n} bytes: got {len(got)}, "
                                  f"pattern ok: {blob_check(got, 0)}")
                    self.success("slow", down=n)
        except Exception as e:  # noqa: BLE001
            self.outcome("slow", target, start, e)

    def aborter(self, rng, state):
        what = rng.choice(["upload", "download", "waiting", "head"])
        reset = rng.random() < 0.5
        try:
            c = Conn(self.gw.port, timeout=CLIENT_TIMEOUT, rcvbuf=64 * 1024)
        except Exception as e:  # noqa: BLE001
            self.error("abort", f"cannot connect: {type(e).__name__}: {e}")
            return
        try:
            if what == "upload":
                size = 4 * MiB
                c.send(request_bytes("POST", "/echo/abort", [("Content-Length", str(size))]))
                left = rng.randrange(0, 2 * MiB)
                off = 0
                while left > 0:
                    n = min(left, 65536)
                    c.sock.sendall(memoryview(_PAYLOAD)[off:off + n])
                    off += n
                    left -= n
                if rng.random() < 0.5:
                    c.sock.recv(65536)
            elif what == "download":
                c.send(request_bytes("GET", f"/blob?n={16 * MiB}&chunked={rng.randrange(2)}"))
                want = rng.randrange(0, 2 * MiB)
                r = c.read_head()
                if r.status == 200:  # (a 502 if its worker was just killed)
                    got = 0
                    for piece in c.iter_body(r, chunk=65536):
                        got += len(piece)
                        if got >= want:
                            break
            elif what == "waiting":
                c.send(request_bytes("GET", "/hello?delay=300"))
                time.sleep(rng.random() * 0.1)
            else:
                c.send(b"POST /echo/head HTTP/1.1\r\nHost: x\r\nContent-Le")
                time.sleep(rng.random() * 0.05)
            with self.lock:
                self.aborts[what] += 1
        except CLOSED:
            # the worker behind it may just have been killed; what matters is
            # that the gateway survives, checked afterwards
            with self.lock:
                self.aborts[what + "-lost"] += 1
        except socket.timeout:
            self.error("abort", f"{what}: client timeout ({CLIENT_TIMEOUT}s): hang")
        finally:
            if reset:
                c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            c.close()

    # -- HTTP/2 -------------------------------------------------------------
    def h2(self, rng, state):
        """One HTTP/2 connection (h2c or TLS) carrying 1..5 batches of
        concurrent streams; sometimes closed with a stream still open."""
        tls = rng.random() < 0.5
        start = time.monotonic()
        try:
            h = H2Conn(self.tls_port if tls else self.gw.port,
                       tls=self.tls_ctx if tls else None, timeout=CLIENT_TIMEOUT)
        except Exception as e:  # noqa: BLE001
            self.error("h2", f"cannot connect (tls={tls}): {type(e).__name__}: {e}")
            return
        try:
            for _ in range(rng.randrange(1, 6)):
                if self.stop.is_set() or not self.h2_batch(rng, h, tls):
                    return
            if rng.random() < 0.2:  # go away with a stream open
                h.request("GET", "/hello?delay=300&h2=gone")
                h.pump(rng.random() * 0.05)
                with self.lock:
                    self.aborts["h2-conn"] += 1
        except (H2Error, *CLOSED) as e:
            self.failure("h2", "/", start, "closed", f"{type(e).__name__}: {e}")
        except socket.timeout as e:
            self.error("h2", f"client timeout ({CLIENT_TIMEOUT}s): hang: {e}")
        except h2.exceptions.H2Error as e:
            self.error("h2", f"HTTP/2 protocol error from the gateway: {type(e).__name__}: {e}")
        finally:
            h.close()

    def h2_batch(self, rng, h, tls):
        """Open 1..H2_BATCH_MAX streams at once, then classify each.
        Returns False when the connection is no longer usable."""
        # [sid, target, expected body (bytes, or a blob length; None: the
        #  client resets it), upload size, "upload"/"download" for a reset]
        reqs = []
        start = time.monotonic()
        for _ in range(rng.randrange(1, H2_BATCH_MAX + 1)):
            x = rng.random()
            if x < 0.3:
                target = f"/hello?h2=1&delay={rng.choice([0, 0, 1, 5])}"
                reqs.append([h.request("GET", target), target, HELLO_BODY, 0, None])
            elif x < 0.55:
                n = rng.randrange(0, 512 * 1024)
                target = f"/blob?n={n}&h2=1"
                reqs.append([h.request("GET", target), target, n, 0, None])
            elif x < 0.9:
                size = rng.randrange(0, 512 * 1024)
                off = rng.randrange(0, len(_PAYLOAD) - size + 1)
                body = bytes(memoryview(_PAYLOAD)[off:off + size])
                target = f"/echo/h2up?size={size}"
                hdrs = [("content-length", str(size))] if rng.random() < 0.5 else []
                reqs.append([h.request("POST", target, headers=hdrs, end=False), target,
                             body, size, None])
            else:  # reset by the client: mid-upload or mid-download
                if rng.random() < 0.5:
                    target = "/echo/h2reset"
                    sid = h.request("POST", target, end=False)
                    reqs.append([sid, target, None, rng.randrange(0, 256 * 1024), "upload"])
                else:
                    target = f"/blob?n={8 * MiB}&h2=reset"
                    reqs.append([h.request("GET", target), target, None, 0, "download"])
        # request bodies, in turns (the windows are shared)
        for r in reqs:
            sid, target, want, size, reset = r
            if want is None and reset == "upload":
                try:
                    h.send_body(sid, _PAYLOAD[:size], timeout=CLIENT_TIMEOUT)
                except H2Error:
                    pass  # reset by the gateway (its worker killed): fine
                h.reset(sid)
                with self.lock:
                    self.aborts["h2-reset-upload"] += 1
            elif target.startswith("/echo/h2up"):
                try:
                    h.send_body(sid, want, end=True, timeout=CLIENT_TIMEOUT)
                except H2Error:
                    if h.closed:
                        raise ConnectionClosed("connection closed while sending")
                    # the stream was reset: classified below
        for r in reqs:
            sid, target, want, size, reset = r
            if reset == "download":
                st = h.streams[sid]
                h.wait(lambda: st.done or len(st.body) >= 64 * 1024, what=target)
                if not st.done:
                    h.reset(sid)
                with self.lock:
                    self.aborts["h2-reset-download"] += 1
        ok = True
        for sid, target, want, size, reset in reqs:
            if want is None:
                continue
            st = h.streams[sid]
            try:
                h.wait(lambda: st.done, what=target)
            except H2Error:  # the connection went away
                self.failure("h2", target, start, "closed", f"connection closed: {st!r}")
                ok = False
                continue
            if st.reset is not None:
                self.failure("h2", target, start, "closed", f"stream reset {st.reset}: {st!r}")
            elif st.status == 502:
                self.failure("h2", target, start, "502", repr(st))
            elif st.status != 200:
                self.error("h2", f"{target} (tls={tls}): unexpected status: {st!r}")
            elif isinstance(want, int):
                if len(st.body) != want or not blob_check(st.body, 0):
                    self.error("h2", f"{target}: wrong blob body ({len(st.body)} bytes)")
                else:
                    self.success("h2", down=want)
            elif bytes(st.body) != want:
                self.error("h2", f"{target}: wrong body: {len(st.body)} of {len(want)} bytes")
            else:
                self.success("h2", up=size, down=len(want))
            del st.body[:]
        if h.fc_violations:
            self.error("h2", f"flow control: {h.fc_violations[:3]}")
            del h.fc_violations[:]
        return ok and not h.closed

    def h2load(self, rng, state):
        """h2load for a few seconds at a bounded rate: h2c GETs of /hello,
        or TLS GETs of small blobs. Non-2xx answers and failed requests are
        tolerated only when a kill in that pool explains them."""
        tls = state.setdefault("tls", False)
        state["tls"] = not tls
        target = "/blob?n=2000&h2load=1" if tls else "/hello?h2load=1"
        url = f"https://127.0.0.1:{self.tls_port}{target}" if tls else \
            f"http://127.0.0.1:{self.gw.port}{target}"
        secs = 2
        start = time.monotonic()
        try:
            r = subprocess.run([H2LOAD, "-c", str(H2LOAD_CLIENTS), "-m", str(H2LOAD_STREAMS),
                                "--rps", str(H2LOAD_RPS), "-D", str(secs), url],
                               capture_output=True, timeout=secs + CLIENT_TIMEOUT,
                               stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            self.error("h2load", f"{url}: did not finish: hang")
            return
        out = r.stdout.decode("utf-8", "replace")
        m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                      r"(\d+) failed, (\d+) errored, (\d+) timeout", out)
        c = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
        if r.returncode != 0 or not m or not c or "Application protocol: h2" not in out:
            self.error("h2load", f"{url}: exit {r.returncode}: {out[-800:]} "
                                 f"{r.stderr.decode('utf-8', 'replace')[-400:]}")
            return
        total, started, done, succeeded, failed, errored, timeouts = map(int, m.groups())
        s2, s3, s4, s5 = map(int, c.groups())
        end = time.monotonic()
        pool = pool_of(target)
        with self.lock:
            kills = sum(1 for t, p, _ in self.kills if p == pool and start - KILL_GRACE <= t <= end)
        if s3 or s4 or timeouts or succeeded == 0:
            self.error("h2load", f"{url}: {m.group(0)}; {c.group(0)}")
            return
        if failed:
            if failed > kills * H2LOAD_CLIENTS * H2LOAD_STREAMS:
                self.error("h2load", f"{url}: {failed} failed with {kills} kills in {pool}: "
                                     f"{m.group(0)}; {c.group(0)}")
            else:
                with self.lock:
                    self.tolerated[("h2load", "failed")] += failed
        with self.lock:
            self.ok["h2load"] += s2
            self.h2load_runs += 1

    # -- WebSockets ----------------------------------------------------------
    def websocket(self, rng, state):
        """One WebSocket through ws_echo: 1..WS_MESSAGES_MAX messages, each
        awaited and compared, then a close handshake. A close 1011 or a lost
        connection (1006) is tolerated only when a kill in the ws pool
        explains it; anything else (a wrong echo, another close code, a
        hang) is an error."""
        target = f"/ws/soak?c={rng.randrange(1 << 30)}"
        start = time.monotonic()
        try:
            ws = WS(self.gw.port, timeout=CLIENT_TIMEOUT)
        except Exception as e:  # noqa: BLE001
            self.error("ws", f"cannot connect: {type(e).__name__}: {e}")
            return
        try:
            hs = ws.handshake(target)
            if hs.status != 101:
                if hs.status == 502:
                    self.failure("ws", target, start, "502", repr(hs.resp))
                    return
                raise Bad(f"handshake: {hs.resp!r}")
            hs.check_accept()
            with self.lock:
                self.ok["ws-conn"] += 1
            for i in range(rng.randrange(1, WS_MESSAGES_MAX + 1)):
                if self.stop.is_set():
                    break
                x = rng.random()
                n = rng.randrange(0, 126) if x < 0.4 else \
                    rng.randrange(126, 65536) if x < 0.9 else rng.randrange(65536, WS_MESSAGE_MAX + 1)
                text = rng.random() < 0.3
                if text:
                    data = (b"0123456789abcdef" * (n // 16 + 1))[:n]
                else:
                    off = rng.randrange(0, len(_PAYLOAD) - n + 1)
                    data = bytes(memoryview(_PAYLOAD)[off:off + n])
                op = OP_TEXT if text else OP_BINARY
                ping = None
                if rng.random() < 0.1:
                    ping = b"p%d" % i
                    ws.ping(ping)
                if n > 16 and rng.random() < 0.2:
                    cut = sorted(rng.sample(range(1, n), 2))
                    ws.send_fragments(op, [data[:cut[0]], data[cut[0]:cut[1]], data[cut[1]:]])
                else:
                    ws.send_frame(op, data)
                while True:
                    m = ws.recv_message(CLIENT_TIMEOUT, answer_pings=True)
                    if m.opcode == OP_PONG and ping is not None and m.data == ping:
                        ping = None
                        continue
                    break
                if m.opcode == OP_CLOSE:
                    self.ws_closed(target, start, m.frame.close_code, f"message {i}")
                    return
                if m.opcode != op or m.data != data:
                    raise Bad(f"message {i}: sent {OP_NAMES_WS[op]} of {n} bytes, got {m!r}")
                if ping is not None:
                    raise Bad(f"message {i}: the echo came back before the pong of {ping!r}")
                self.success("ws", up=n, down=n)
            ws.close(1000)
            f = ws.expect_close(None, timeout=CLIENT_TIMEOUT, reply=False)
            if f.close_code != 1000:
                self.ws_closed(target, start, f.close_code, "closing")
        except WSTimeout as e:
            self.error("ws", f"{target}: client timeout ({CLIENT_TIMEOUT}s): hang: {e}")
        except AssertionError as e:  # expect_close: the connection went without a close frame
            if "without a close frame" in str(e):
                self.failure("ws", target, start, "1006", str(e))
            else:
                self.error("ws", f"{target}: {e}")
        except Exception as e:  # noqa: BLE001
            self.outcome("ws", target, start, e)
        finally:
            ws.shutdown()

    def ws_closed(self, target, start, code, when):
        """The gateway closed a WebSocket the client did not: only 1011
        after a kill in the ws pool is tolerated."""
        if code == 1011:
            self.failure("ws", target, start, "1011", f"close 1011 ({when})")
        else:
            self.error("ws", f"{target}: close {code} from the gateway ({when})")

    # -- the killer -------------------------------------------------------
    def killer(self):
        rng = random.Random(7)
        # the ws pool's kills come from their own draws, in addition: the
        # other pools get the same sequence of kills as without it
        ws_rng = random.Random(11)
        while not self.stop.wait(rng.uniform(*KILL_EVERY)):
            try:
                st = self.gw.status()
            except Exception as e:  # noqa: BLE001
                self.error("killer", f"/status failed: {type(e).__name__}: {e}")
                continue
            cands = [(p["name"], w["pid"]) for p in st["pools"] for w in p["workers"]
                     if w["state"] == "running" and w["pid"] > 0
                     and w["uptime_s"] >= KILL_MIN_UPTIME]
            victims = []
            # a pool first, then one of its workers: every pool gets kills
            pools = sorted({p for p, _ in cands if p != "ws"})
            if pools:
                pool = rng.choice(pools)
                victims.append((pool, rng.choice([w for p, w in cands if p == pool])))
            if ws_rng.random() < WS_KILL_SHARE:
                ws = [w for p, w in cands if p == "ws"]
                if ws:
                    victims.append(("ws", ws_rng.choice(ws)))
            for pool, pid in victims:
                ps = proc_stat(pid)
                if not ps or ps[0] != self.gw.pid:
                    continue  # gone already, or not ours (pid reuse)
                self.gw.seen[pid] = ps[1]
                with self.lock:
                    self.kills.append((time.monotonic(), pool, pid))
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    # -- one phase --------------------------------------------------------
    def run(self, seconds, kill):
        self.stop.clear()
        self.t0 = time.monotonic()
        clients = [("keepalive", self.keepalive)] * 2 + [
            ("pipelined", self.pipelined),
            ("upload", self.upload), ("upload", self.upload),
            ("download", self.download),
            ("slow", self.slow),
            ("abort", self.aborter),
            ("h2", self.h2), ("h2", self.h2),
        ]
        if H2LOAD:
            clients.append(("h2load", self.h2load))
        clients += [("ws", self.websocket)] * WS_CLIENTS
        threads = [threading.Thread(target=self.loop, args=c, daemon=True) for c in clients]
        if kill:
            threads.append(threading.Thread(target=self.killer, daemon=True))
        for t in threads:
            t.start()
        self.stop.wait(seconds)
        self.stop.set()
        deadline = time.monotonic() + 3 * CLIENT_TIMEOUT
        for t in threads:
            t.join(max(0.1, deadline - time.monotonic()))
        hung = [t for t in threads if t.is_alive()]
        assert not hung, f"{len(hung)} client threads still running {3 * CLIENT_TIMEOUT}s " \
                         f"after the end of the soak: hang"
        return time.monotonic() - self.t0

    @staticmethod
    def max_in_flight():
        """Most requests the clients can have open at once (all could be on
        one worker)."""
        return 2 + PIPELINE_MAX + 2 + 1 + 1 + 1 + 2 * H2_BATCH_MAX + \
            (H2LOAD_CLIENTS * H2LOAD_STREAMS if H2LOAD else 0) + WS_CLIENTS


def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def pool_ready(gw):
    """True when every pool runs exactly its configured workers, all
    `running`."""
    st = gw.status()
    for p in st["pools"]:
        states = [w["state"] for w in p["workers"]]
        if states.count("running") != POOLS[p["name"]] or len(states) != POOLS[p["name"]]:
            return False
    return True


def quiet(gw):
    """No client connection open (the admin listener is not counted)."""
    return gw.status()["connections"] == 0


def test_soak_mixed_traffic_with_worker_kills(start_config, capsys, monkeypatch, tmp_path):
    # glibc raises its mmap threshold dynamically once a large block is
    # freed; large buffers then come from the heap, whose freed space is
    # kept (RSS grew 3-8 MiB over a run while the bytes in use, per
    # malloc_stats(), grew ~1 MiB, and malloc_trim() brought RSS back to the
    # baseline). A fixed threshold keeps large blocks in mmap, returned to
    # the system when freed, so that RSS follows the memory in use.
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", str(128 * 1024))
    # a TLS listener for HTTP/2 over TLS (ALPN h2), self-signed
    tls_port = free_port()
    cert, key = str(tmp_path / "cert.pem"), str(tmp_path / "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-days", "2", "-keyout", key,
                    "-out", cert, "-subj", "/CN=localhost"],
                   check=True, capture_output=True, timeout=60)
    gw = start_config(CONFIG.replace("{TLS_PORT}", str(tls_port)).replace("{CERT}", cert)
                      .replace("{KEY}", key))
    assert wait_for(lambda: pool_ready(gw), 20), gw.status()
    gw.workers()
    soak = Soak(gw, tls_port)

    # warm-up: the same traffic without kills, so that buffers, allocator
    # arenas and the worker links reach their steady state
    soak.run(WARMUP_SECONDS, kill=False)
    assert not soak.errors, "errors during warm-up (no kills):\n" + "\n".join(soak.errors[:20])
    assert wait_for(lambda: quiet(gw), 10), gw.status()
    time.sleep(0.5)
    fd_before = fd_count(gw.pid)
    rss_before = proc_status_kib(gw.pid, "VmRSS")
    warm_ok = sum(soak.ok.values())
    soak.ok.clear()
    soak.aborts.clear()
    soak.bytes_up = soak.bytes_down = 0

    elapsed = soak.run(SOAK_SECONDS, kill=True)

    assert gw.alive(), f"gateway died: exit {gw.proc.poll()}\n{gw.log_tail()}"
    ready = wait_for(lambda: pool_ready(gw), 30, interval=0.2)
    st = gw.status()
    restarts = sum(p["restarts"] for p in st["pools"])
    # the gateway still serves every pool
    post = Soak(gw)
    post.t0 = time.monotonic()
    state = {"conn": None}
    for _ in range(5):
        post.one("after", state, "/hello", lambda b: b == HELLO_BODY)
        post.one("after", state, "/blob?n=100000", lambda b: len(b) == 100000 and blob_check(b, 0))
        post.one("after", state, "/echo/after", lambda b: b == b"")
    post.drop(state)
    try:  # and a WebSocket
        with WS(gw.port, timeout=CLIENT_TIMEOUT) as ws:
            ws.handshake("/ws/after", expect=101)
            for n in (0, 5, 70000):
                ws.send_binary(_PAYLOAD[:n])
                ws.expect_message(OP_BINARY, _PAYLOAD[:n])
            ws.close(1000)
            ws.expect_close(1000, reply=False)
            post.success("after-ws")
    except Exception as e:  # noqa: BLE001
        post.error("after-ws", f"{type(e).__name__}: {e}")
    settled = wait_for(lambda: quiet(gw), 10)
    # (an admin connection just answered may take a moment to be closed)
    wait_for(lambda: fd_count(gw.pid) <= fd_before, 10)
    fd_after = fd_count(gw.pid)
    rss_after = proc_status_kib(gw.pid, "VmRSS")

    tolerated = sum(soak.tolerated.values())
    t502 = sum(n for (k, how), n in soak.tolerated.items() if how == "502")
    bound = len(soak.kills) * min(64, Soak.max_in_flight())
    kills_by_pool = collections.Counter(p for _, p, _ in soak.kills)
    summary = "\n".join([
        f"soak: {elapsed:.1f}s (warm-up {WARMUP_SECONDS:.0f}s, {warm_ok} requests), "
        f"build {os.path.basename(BUILD_DIR)}",
        f"  ok requests: {sum(soak.ok.values())} {dict(sorted(soak.ok.items()))}",
        f"  bytes: up {soak.bytes_up / MiB:.1f} MiB, down {soak.bytes_down / MiB:.1f} MiB",
        f"  aborts: {sum(soak.aborts.values())} {dict(sorted(soak.aborts.items()))}",
        f"  h2load runs: {soak.h2load_runs}" + ("" if H2LOAD else " (h2load not installed)"),
        f"  kills: {len(soak.kills)} {dict(kills_by_pool)}; restarts in /status: {restarts}",
        f"  tolerated failures: {tolerated} (502: {t502}; bound {bound}) "
        f"{ {f'{k}/{h}': n for (k, h), n in sorted(soak.tolerated.items())} }",
        f"  errors: {len(soak.errors) + len(post.errors)}",
        f"  gateway fds: {fd_before} -> {fd_after} (slack {FD_SLACK})",
        f"  gateway RSS: {rss_before / 1024:.1f} MiB -> {rss_after / 1024:.1f} MiB"
        f" (slack {RSS_SLACK_MIB} MiB{', not checked: sanitizer build' if SANITIZED else ''})",
    ])
    # the gateway's warnings and errors, by kind (digits masked): reported,
    # not checked (a kill is logged as a warning, a crash loop as an error)
    levels = collections.Counter()
    for line in gw.log().splitlines():
        m = re.search(r"\[(warn|error)\] (.*)", line)
        if m:
            levels[f"[{m.group(1)}] {re.sub(r'[0-9]+', 'N', m.group(2))[:100]}"] += 1
    summary += "\n  gateway log:" + "".join(f"\n    {n:5d} x {k}" for k, n in levels.most_common(12))
    with capsys.disabled():
        print("\n" + summary)

    errors = soak.errors + post.errors
    assert not errors, f"{len(errors)} errors:\n" + "\n".join(errors[:30]) + "\n" + summary
    assert ready, f"pools not back to full strength: {st}\n{summary}"
    assert len(soak.kills) >= max(1, int(SOAK_SECONDS / 5)), summary
    assert restarts == len(soak.kills), f"one restart per kill expected\n{summary}"
    assert tolerated - soak.tolerated.get(("pipelined", "collateral"), 0) <= bound, summary
    for kind in ("get", "pipelined", "upload", "download", "slow", "h2", "ws", "ws-conn") + \
            (("h2load",) if H2LOAD else ()):
        assert soak.ok[kind] > 0, f"no successful {kind} request\n{summary}"
    assert post.ok["after"] == 15, summary
    assert post.ok["after-ws"] == 1, summary
    assert settled, f"client connections still open after the soak: {gw.status()}"
    assert fd_after <= fd_before + FD_SLACK, f"gateway fd leak?\n{summary}\n" + \
        "\n".join(sorted(os.readlink(f"/proc/{gw.pid}/fd/{f}")
                         for f in os.listdir(f"/proc/{gw.pid}/fd")))
    if not SANITIZED:
        assert rss_after <= rss_before + RSS_SLACK_MIB * 1024, f"gateway RSS growth\n{summary}"
