"""The Go worker library (clients/go) through the real gateway, with the
programs in examples/go: hello, streaming, a chi and a gin app, and WebSockets.

The examples are built once per session with `go build` (GOFLAGS=-mod=readonly:
go.mod and go.sum as committed; the first build on a machine fetches the
modules and takes a minute or two) into a temporary directory. The module is
skipped when no Go as new as examples/go/go.mod asks is found (where
scripts/install-deps --go looks). Each test starts its own gateway
(conftest's start_gateway) with one of the binaries as its COMMAND; the
streaming example's /stats shows the worker's side (bytes written, cancelled
handlers), so most of these use one worker."""

import hashlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time

import pytest

from conftest import ROOT, free_port
from goutil import EXAMPLES_GO, build_examples, find_go
from h2client import H2Conn, client_tls_context
from httpc import Conn, ConnectionClosed, blob_check, blob_first_mismatch, get, request_bytes
from pools_util import Load, start_config, status, wait_for  # noqa: F401 (start_config: fixture)

MiB = 1 << 20
BIG = 64 * MiB
PROGRAMS = ("hello", "streaming", "chi", "gin", "websocket")


GO, SKIP = find_go(os.path.join(EXAMPLES_GO, "go.mod"),
                   "the Go examples in examples/go cannot be built, so their tests are skipped")

pytestmark = pytest.mark.skipif(SKIP is not None, reason=SKIP or "")


@pytest.fixture(scope="session")
def go_bins(tmp_path_factory):
    """{name: path} of the example binaries, built once per session."""
    return build_examples(GO, str(tmp_path_factory.mktemp("go-examples")), PROGRAMS)


# --------------------------------------------------------------------------
# helpers

def stats(port):
    """The streaming example's /stats (one worker's counters)."""
    r = get(port, "/stats", timeout=5)
    assert r.status == 200, r
    return json.loads(r.body)


def start_streaming(start_gateway, go_bins, *args, workers=1):
    gw = start_gateway([go_bins["streaming"]], *args, workers=workers)
    assert wait_for(lambda: _ok(gw.port, "/stats"), 10), gw.log_tail()
    return gw


def _ok(port, target):
    try:
        return get(port, target, timeout=2).status == 200
    except (OSError, ConnectionClosed):
        return False


def with_admin(start_gateway, cmd, *args, workers=1):
    admin = free_port()
    gw = start_gateway(cmd, "--admin", f"127.0.0.1:{admin}", *args, workers=workers)
    gw.admin_port = admin
    assert wait_for(lambda: _running(gw) == workers, 10), gw.log_tail()
    return gw


def _running(gw):
    try:
        pool = status(gw.admin_port)["pools"][0]
    except (OSError, ConnectionClosed, AssertionError):
        return 0
    gw.workers()  # remember the pids for teardown
    return sum(1 for w in pool["workers"] if w["state"] == "running")


def worker_pids(gw):
    return sorted(w["pid"] for w in status(gw.admin_port)["pools"][0]["workers"]
                  if w["state"] == "running")


HELLO_RE = re.compile(rb"Hello from worker (\d+) \((https?), (HTTP/[0-9.]+)\)\n")


def hello_parts(body):
    m = HELLO_RE.fullmatch(body)
    assert m, f"not a hello body: {body!r}"
    return m.group(1).decode(), m.group(2).decode(), m.group(3).decode()


# --------------------------------------------------------------------------
# hello

def test_hello_http11_http10_and_h2c(start_gateway, go_bins):
    gw = with_admin(start_gateway, [go_bins["hello"]], workers=2)
    ids = {str(w["id"]) for w in status(gw.admin_port)["pools"][0]["workers"]}
    assert ids == {"1", "2"}, ids

    answered = []
    with Conn(gw.port) as c:  # keep-alive: requests on one connection
        for i in range(4):
            c.send(request_bytes("GET", f"/?i={i}"))
            r = c.read_response()
            assert r.status == 200, r
            assert r.header("content-type") == "text/plain; charset=utf-8", r
            wid, scheme, proto = hello_parts(r.body)
            assert wid in ids and (scheme, proto) == ("http", "HTTP/1.1"), r.body
            answered.append(wid)
    # the id each body names is the worker the access log says served it
    for i, wid in enumerate(answered):
        line = gw.wait_log(lambda l, i=i: f'"GET /?i={i} HTTP/1.1" 200' in l, timeout=2)
        assert line is not None and line.endswith(f" w{wid}"), (wid, line)

    with Conn(gw.port) as c:
        c.send(request_bytes("GET", "/", version="HTTP/1.0"))
        r = c.read_response()
        assert r.status == 200 and r.has_token("connection", "close"), r
        wid, scheme, proto = hello_parts(r.body)
        assert wid in ids and proto == "HTTP/1.0", r.body
        assert c.wait_closed(5) is True, "HTTP/1.0 without keep-alive: connection not closed"

    with H2Conn(gw.port) as h:  # h2c, prior knowledge
        sids = [h.request("GET", "/") for _ in range(4)]
        for sid in sids:
            st = h.response(sid)
            assert st.status == 200, st
            wid, scheme, proto = hello_parts(bytes(st.body))
            assert wid in ids and (scheme, proto) == ("http", "HTTP/2.0"), st


# --------------------------------------------------------------------------
# streaming: big bodies both ways

class Sender(threading.Thread):
    """Sends `head`, then `size` pseudo-random bytes, hashing them."""

    def __init__(self, sock, head, size, chunked=False):
        super().__init__(daemon=True)
        self.sock, self.head, self.size, self.chunked = sock, head, size, chunked
        self.hash = hashlib.sha256()
        self.sent = 0
        self.error = None
        self.src = memoryview(os.urandom(MiB + 97))

    def run(self):
        try:
            self.sock.sendall(self.head)
            k = 0
            while self.sent < self.size:
                n = min(MiB, self.size - self.sent)
                off = (k * 7) % 97  # vary the data: misordered pieces show in the hash
                piece = self.src[off:off + n]
                self.hash.update(piece)
                if self.chunked:
                    self.sock.sendall(b"%x\r\n" % n + piece + b"\r\n")
                else:
                    self.sock.sendall(piece)
                self.sent += n
                k += 1
            if self.chunked:
                self.sock.sendall(b"0\r\n\r\n")
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.error = e


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_upload_64mib_echoed_byte_for_byte(framing, start_gateway, go_bins):
    gw = start_streaming(start_gateway, go_bins)
    with Conn(gw.port, timeout=30, rcvbuf=4 * MiB, sndbuf=4 * MiB) as c:
        hdr = ("Content-Length", str(BIG)) if framing == "content-length" \
            else ("Transfer-Encoding", "chunked")
        sender = Sender(c.sock, request_bytes("PUT", "/echo", [hdr]), BIG,
                        chunked=framing == "chunked")
        sender.start()
        head = c.read_head()
        assert head.status == 200, head
        assert head.header("content-type") == "application/octet-stream", head
        h = hashlib.sha256()
        got = 0
        try:
            for piece in c.iter_body(head):
                h.update(piece)
                got += len(piece)
        except (ConnectionClosed, OSError) as e:
            pytest.fail(f"echo broke after {got} of {BIG} bytes: {e!r} "
                        f"(sent {sender.sent}, sender error {sender.error!r})")
        sender.join(30)
        assert sender.error is None, sender.error
        assert got == BIG, f"echoed {got} of {BIG} bytes"
        assert h.hexdigest() == sender.hash.hexdigest(), "the echo differs from the upload"
        c.send(request_bytes("PUT", "/echo", body=b"after"))  # the connection goes on
        r = c.read_response()
        assert r.status == 200 and r.body == b"after", r
    assert stats(gw.port)["echo_bytes"] == BIG + 5


def test_h2_upload_echo_and_hash(start_gateway, go_bins):
    """Over HTTP/2: an 8 MiB echo, and /upload hashing a body sent with
    request trailers."""
    gw = start_streaming(start_gateway, go_bins)
    body = os.urandom(8 * MiB)
    with H2Conn(gw.port, timeout=30) as h:
        echo = h.request("PUT", "/echo", body=body)
        up = h.request("POST", "/upload", body=body[:MiB], trailers=[("x-checksum", "abc")])
        st = h.response(echo, timeout=30)
        assert st.status == 200 and bytes(st.body) == body, st
        st = h.response(up, timeout=30)
        want = f"{MiB} bytes, sha256 {hashlib.sha256(body[:MiB]).hexdigest()}\n"
        assert st.status == 200 and bytes(st.body) == want.encode(), st


def test_download_64mib(start_gateway, go_bins):
    gw = start_streaming(start_gateway, go_bins)
    with Conn(gw.port, timeout=30) as c:
        c.send(request_bytes("GET", f"/blob?n={BIG}"))
        head = c.read_head()
        assert head.status == 200, head
        assert head.header("content-length") == str(BIG), head
        offset = 0
        for piece in c.iter_body(head):
            if not blob_check(piece, offset):
                pytest.fail(f"byte pattern wrong at {blob_first_mismatch(piece, offset)}")
            offset += len(piece)
        assert offset == BIG
    s = stats(gw.port)
    assert s["blob_bytes"] == BIG and s["blob_done"] == 1, s


def test_set_body_limit_raises_max_body(start_gateway, go_bins):
    """--max-body 1m: /echo gets 413 for 4 MiB, /upload (SetBodyLimit) takes it."""
    gw = start_streaming(start_gateway, go_bins, "--max-body", "1m")
    body = os.urandom(4 * MiB)
    with Conn(gw.port) as c:  # the head only: the gateway refuses, then closes
        c.send(request_bytes("PUT", "/echo", [("Content-Length", str(len(body)))]))
        r = c.read_response("PUT")
    assert r.status == 413, r
    r = get(gw.port, "/upload", method="PUT", body=body, timeout=20)
    assert r.status == 200, r
    assert r.body == f"{len(body)} bytes, sha256 {hashlib.sha256(body).hexdigest()}\n".encode(), r


# --------------------------------------------------------------------------
# streamed responses, trailers

def test_sse_events_arrive_one_by_one(start_gateway, go_bins):
    """Each event carries the worker's clock when it was written: it must
    reach the client at once (flushed), not when the handler returns."""
    count, every = 4, 0.4
    gw = start_streaming(start_gateway, go_bins)
    with Conn(gw.port, timeout=10) as c:
        c.send(request_bytes("GET", f"/events?count={count}&ms={int(every * 1000)}"))
        head = c.read_head()
        assert head.status == 200, head
        assert head.header("content-type") == "text/event-stream", head
        assert head.header("transfer-encoding") == "chunked", head  # streamed, not buffered
        events, buf = [], b""
        for piece in c.iter_body(head):
            buf += bytes(piece)
            while b"\n\n" in buf:
                ev, buf = buf.split(b"\n\n", 1)
                events.append((time.time(), ev))
    assert events and events[-1][1] == b"event: done\ndata: bye", events
    ticks = events[:-1]
    assert len(ticks) == count, events
    delays, sent = [], []
    for i, (arrived, ev) in enumerate(ticks, 1):
        m = re.fullmatch(rb"id: (\d+)\ndata: tick (\d+) from worker 1 at (\d+)", ev)
        assert m and int(m.group(1)) == int(m.group(2)) == i, ev
        sent.append(int(m.group(3)) / 1000)
        delays.append(arrived - sent[-1])
    # written `every` apart, and each one received right after it was written
    assert sent[-1] - sent[0] >= (count - 1) * every * 0.9, sent
    assert max(delays) < every * 0.75, f"events held back: delays {delays}"


def test_trailers_http11_and_h2(start_gateway, go_bins):
    gw = start_streaming(start_gateway, go_bins)
    lines = 120
    want_body = b"".join(f"line {i} of {lines}\n".encode() for i in range(1, lines + 1))
    want_sha = hashlib.sha256(want_body).hexdigest()
    with Conn(gw.port) as c:
        c.send(request_bytes("GET", f"/trailers?lines={lines}", [("TE", "trailers")]))
        r = c.read_response()
    assert r.status == 200 and r.framing == "chunked", r
    assert r.body == want_body
    assert dict((k.lower(), v) for k, v in r.trailers) == \
        {"x-body-sha256": want_sha, "x-lines": str(lines)}, r.trailers
    with H2Conn(gw.port) as h:
        st = h.get(f"/trailers?lines={lines}")
    assert st.status == 200 and bytes(st.body) == want_body, st
    trailers = {k.decode().lower(): v.decode() for k, v in st.trailers or []}
    assert trailers == {"x-body-sha256": want_sha, "x-lines": str(lines)}, st


# --------------------------------------------------------------------------
# cancellation, Expect: 100-continue, backpressure

def test_client_disconnect_cancels_the_handler_context(start_gateway, go_bins):
    gw = start_streaming(start_gateway, go_bins)
    c = Conn(gw.port, timeout=5)
    try:
        c.send(request_bytes("GET", "/slow?ms=20000"))
        assert wait_for(lambda: stats(gw.port)["slow_active"] == 1, 5), "the handler did not start"
    finally:
        c.close()
    t0 = time.monotonic()
    assert wait_for(lambda: stats(gw.port)["slow_cancelled"] == 1, 3), \
        "r.Context() not cancelled within 3 s of the client leaving"
    took = time.monotonic() - t0
    assert took < 1.0, f"cancelled {took:.2f}s after the client left"
    s = stats(gw.port)
    assert s["slow_active"] == 0 and s["slow_done"] == 0, s
    line = gw.wait_log(lambda l: "slow: cancelled after" in l, timeout=2)
    assert line is not None and "client_closed" in line, gw.log_tail()


def read_head_within(c, timeout):
    c.settimeout(timeout)
    try:
        return c.read_head()
    except socket.timeout:
        return None
    finally:
        c.settimeout(10)


def test_expect_100_continue_when_the_handler_reads(start_gateway, go_bins):
    """/upload?wait=400 reads its body 400 ms after it starts: 100 Continue
    comes then, not at once; /private answers 401 without reading: no 100,
    and the connection is closed after the response."""
    gw = start_streaming(start_gateway, go_bins)
    body = os.urandom(300000)
    with Conn(gw.port, timeout=10) as c:
        t0 = time.monotonic()
        c.send(request_bytes("PUT", "/upload?wait=400", [("Content-Length", str(len(body))),
                                                         ("Expect", "100-continue")]))
        early = read_head_within(c, 0.25)
        assert early is None, f"an answer before the handler read: {early}"
        interim = read_head_within(c, 3)
        waited = time.monotonic() - t0
        assert interim is not None and interim.status == 100, interim
        assert waited >= 0.35, f"100 Continue after {waited:.2f}s, before the handler read"
        c.send(body)
        r, more = c.read_final("PUT")
        assert more == [] and r.status == 200, (r, more)
        assert r.body == f"{len(body)} bytes, sha256 {hashlib.sha256(body).hexdigest()}\n".encode()
        c.send(request_bytes("GET", "/stats"))  # kept alive
        assert c.read_response().status == 200

    with Conn(gw.port, timeout=10) as c:
        c.send(request_bytes("PUT", "/private", [("Content-Length", str(len(body))),
                                                 ("Expect", "100-continue")]))
        r = c.read_response("PUT")
        assert r.status == 401, f"expected 401 without 100 Continue first: {r}"
        assert r.header("www-authenticate") == 'Bearer realm="sluice"', r
        assert r.has_token("connection", "close"), r
        assert c.wait_closed(5) is True, "connection not closed after the 401"

    with Conn(gw.port, timeout=10) as c:  # with credentials the body is read
        c.send(request_bytes("PUT", "/private", [("Content-Length", str(len(body))),
                                                 ("Expect", "100-continue"),
                                                 ("Authorization", "Bearer t")]))
        interim = read_head_within(c, 3)
        assert interim is not None and interim.status == 100, interim
        c.send(body)
        r, _ = c.read_final("PUT")
        assert r.status == 200 and r.body.startswith(f"{len(body)} bytes".encode()), r


def test_slow_client_slows_the_handler(start_gateway, go_bins):
    """A 64 MiB download read slowly: the handler's Writes block on credit,
    so it is never more than the windows and socket buffers ahead of what
    the client has read (a handler writing into memory would be done at
    once)."""
    gw = start_streaming(start_gateway, go_bins)
    slow_bytes = 6 * MiB
    ahead_limit = 12 * MiB  # gateway window (256 KiB) + socket buffers, with room
    with Conn(gw.port, timeout=30, rcvbuf=64 * 1024) as c:
        c.send(request_bytes("GET", f"/blob?n={BIG}"))
        head = c.read_head()
        assert head.status == 200, head
        got = len(c.buf)
        c.buf.clear()
        ahead = []
        t0 = time.monotonic()
        while got < slow_bytes and time.monotonic() - t0 < 10:
            data = c.sock.recv(64 * 1024)
            assert data, f"closed after {got} bytes"
            got += len(data)
            time.sleep(0.005)
            if len(ahead) < got // MiB:
                s = stats(gw.port)
                ahead.append(s["blob_bytes"] - got)
                assert s["blob_done"] == 0, f"handler finished with {got} bytes read: {s}"
        slow_for = time.monotonic() - t0
        assert max(ahead) < ahead_limit, \
            f"handler ran {max(ahead) / MiB:.1f} MiB ahead of the client: {ahead}"
        buf = bytearray(MiB)
        while got < BIG:
            n = c.sock.recv_into(buf)
            assert n, f"closed after {got} bytes"
            got += n
    s = wait_for(lambda: (lambda s: s if s["blob_done"] == 1 else None)(stats(gw.port)), 5)
    assert s and s["blob_bytes"] == BIG, s
    print(f"slow phase {slow_bytes // MiB} MiB in {slow_for:.2f}s; handler ahead by "
          f"{', '.join(f'{a / MiB:.2f}' for a in ahead)} MiB")


# --------------------------------------------------------------------------
# worker lifecycle

def test_killed_worker_in_flight_502_then_restarted(start_gateway, go_bins):
    gw = with_admin(start_gateway, [go_bins["streaming"]], workers=1)
    [victim] = worker_pids(gw)
    conns = [Conn(gw.port, timeout=10) for _ in range(3)]
    try:
        for c in conns:
            c.send(request_bytes("GET", "/slow?ms=20000"))
        assert wait_for(lambda: stats(gw.port)["slow_active"] == 3, 5)
        os.kill(victim, signal.SIGKILL)
        for c in conns:
            r = c.read_response()
            assert r.status == 502, r
    finally:
        for c in conns:
            c.close()
    # the next requests are served by the restarted worker
    s = stats(gw.port)
    assert s["pid"] != victim and s["slow_active"] == 0, s
    for _ in range(3):
        r = get(gw.port, "/")
        assert r.status == 200 and r.body.startswith(b"streaming example, worker 1:"), r
    assert wait_for(lambda: _running(gw) == 1, 5)
    pool = status(gw.admin_port)["pools"][0]
    assert pool["restarts"] == 1 and worker_pids(gw) == [s["pid"]], pool


def test_reload_twice_under_load_fails_no_request(start_gateway, go_bins):
    gw = with_admin(start_gateway, [go_bins["hello"]], workers=2)
    before = worker_pids(gw)
    load = Load(gw.port, threads=4, duration=20.0, max_per_thread=20000,
                check=lambda b: HELLO_RE.fullmatch(b) is not None)
    with load:
        for n in (1, 2):
            time.sleep(0.4)
            os.kill(gw.pid, signal.SIGHUP)
            assert wait_for(lambda: len(re.findall(r"reload complete", gw.log())) >= n, 10), \
                f"reload {n} did not complete:\n{gw.log_tail()}"
        time.sleep(0.4)
    assert load.failures == [], load.failures[:5]
    assert load.done > 100 and set(load.statuses) == {200}, (load.done, load.statuses)
    after = worker_pids(gw)
    assert len(after) == 2 and not set(after) & set(before), (before, after)
    exits = re.findall(r"worker \d+ \(pid (\d+)\) exited with status 0", gw.log())
    assert set(before) <= {int(p) for p in exits}, gw.log_tail()
    assert len(exits) == 4, exits
    assert status(gw.admin_port)["pools"][0]["restarts"] == 0


def test_sigterm_finishes_in_flight_request_and_worker_exits_0(start_gateway, go_bins):
    gw = start_streaming(start_gateway, go_bins)
    wpid = stats(gw.port)["pid"]
    with Conn(gw.port, timeout=10) as c:
        t0 = time.monotonic()
        c.send(request_bytes("GET", "/slow?ms=2000"))
        assert wait_for(lambda: stats(gw.port)["slow_active"] == 1, 5)
        os.kill(gw.pid, signal.SIGTERM)
        r = c.read_response()
        took = time.monotonic() - t0
    assert r.status == 200 and r.body == b"slept 2000 ms\n", r
    assert took >= 1.9, took
    try:  # (not gw.terminate(): a second SIGTERM means "exit now")
        code = gw.proc.wait(10)
    except subprocess.TimeoutExpired:
        code = None
    assert code == 0, gw.log_tail()
    line = gw.wait_log(lambda l: f"(pid {wpid}) exited" in l, timeout=1)
    assert line is not None and "[info]" in line and "exited with status 0" in line, \
        gw.log_tail()


def test_panic_is_500_and_the_worker_keeps_serving(start_gateway, go_bins):
    gw = start_streaming(start_gateway, go_bins)
    pid = stats(gw.port)["pid"]
    with Conn(gw.port) as c:
        for i in range(2):
            c.send(request_bytes("GET", "/panic"))
            r = c.read_response()
            assert r.status == 500 and r.body == b"Internal Server Error\n", r
            c.send(request_bytes("GET", "/"))  # same connection, same worker
            r = c.read_response()
            assert r.status == 200, r
    s = stats(gw.port)
    assert s["pid"] == pid and s["panics"] == 2, s
    assert gw.wait_log(lambda l: "panic serving GET /panic: boom" in l, timeout=2), gw.log_tail()


# --------------------------------------------------------------------------
# chi and gin: the same answers through the gateway as standalone

CHI_REQUESTS = [
    ("GET", "/", None),
    ("GET", "/notes", None),
    ("GET", "/notes?q=chi", None),
    ("GET", "/notes/1", None),
    ("GET", "/notes/99", None),
    ("GET", "/notes/abc", None),
    ("POST", "/notes", b'{"title":"from the test"}'),
    ("POST", "/notes", b'{"title":'),
    ("POST", "/notes", b'{}'),
    ("GET", "/notes/3", None),
    ("PATCH", "/notes/3", b'{"done":true}'),
    ("GET", "/notes", None),
    ("DELETE", "/notes/1", None),
    ("DELETE", "/notes/1", None),
    ("PUT", "/notes", b'{}'),
    ("GET", "/hello/gopher", None),
    ("GET", "/panic", None),
    ("GET", "/no/such/route", None),
    ("GET", "/hello/g%C3%B6pher%20x?y=%26", None),
    ("GET", "/hello/a%2Fb", None),
    ("HEAD", "/notes", None),
    ("OPTIONS", "/notes", None),
    ("GET", "/notes/2/", None),
    ("GET", "/notes", None),
]

GIN_REQUESTS = [
    ("GET", "/", None),
    ("GET", "/api/v1/books", None),
    ("GET", "/api/v1/books/2", None),
    ("GET", "/api/v1/books/42", None),
    ("GET", "/api/v1/books/x", None),
    ("POST", "/api/v1/books", b'{"title":"Dune","author":"Frank Herbert","year":1965}'),
    ("POST", "/api/v1/books", b'{"title":"No author"}'),
    ("POST", "/api/v1/books", b'{"title":"Old","author":"Someone","year":1000}'),
    ("POST", "/api/v1/books", b'not json'),
    ("PUT", "/api/v1/books/3", b'{"title":"Dune Messiah","author":"Frank Herbert","year":1969}'),
    ("GET", "/api/v1/authors/Frank%20Herbert/books", None),
    ("DELETE", "/api/v1/books/1", None),
    ("DELETE", "/api/v1/books/1", None),
    ("GET", "/panic", None),
    ("GET", "/nowhere", None),
    ("GET", "/api/v1/authors/Kernighan%20and%20Ritchie/books", None),
    ("GET", "/api/v1/books/", None),
    ("HEAD", "/api/v1/books/2", None),
    ("POST", "/api/v1/books", b'{"title":"t","author":"a","year":"x"}'),
    ("GET", "/api/v1/books", None),
]

# what some of the answers must be, beyond "the same in both modes"
CHI_EXPECT = {0: 200, 4: 404, 5: 400, 6: 201, 7: 400, 8: 422, 10: 200, 12: 204, 13: 404,
              14: 405, 16: 500, 17: 404, 18: 200, 20: 405, 21: 405, 22: 200}
GIN_EXPECT = {0: 200, 3: 404, 4: 400, 5: 201, 6: 400, 7: 400, 8: 400, 9: 200, 11: 204, 12: 404,
              13: 500, 14: 404, 15: 200, 16: 301, 17: 404, 18: 400}
# headers the gateway adds or may add (it owns the connection)
GATEWAY_HEADERS = {"server", "connection"}


def run_requests(port, requests):
    """For each request, in order, each on a fresh connection: (status,
    content-type, body, location, header names but the gateway's) and the
    X-Request-Id answered (chi echoes the one sent)."""
    out = []
    for i, (method, target, body) in enumerate(requests):
        headers = [("X-Request-Id", f"req-{i}")]
        if body is not None:
            headers.append(("Content-Type", "application/json"))
        r = get(port, target, method=method, headers=headers, body=body, timeout=10)
        names = sorted({k.lower() for k, _ in r.headers} - GATEWAY_HEADERS)
        out.append(((r.status, r.header("content-type"), r.body, r.header("location"), names),
                    r.header("x-request-id")))
    return out


def start_standalone(path, tmp_path, env_extra):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")}
    env.update(env_extra, ADDR=f"127.0.0.1:{port}")
    log = open(tmp_path / "standalone.log", "wb")
    proc = subprocess.Popen([path], env=env, stdin=subprocess.DEVNULL, stdout=log,
                            stderr=subprocess.STDOUT)
    log.close()
    if not wait_for(lambda: proc.poll() is None and _connects(port), 10):
        proc.kill()
        proc.wait(5)
        pytest.fail(f"{path} did not listen on {port} standalone:\n"
                    f"{(tmp_path / 'standalone.log').read_text(errors='replace')[-2000:]}")
    return proc, port


def _connects(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


@pytest.mark.parametrize("app", ["chi", "gin"])
def test_router_app_same_through_gateway_as_standalone(app, start_gateway, go_bins, tmp_path,
                                                       monkeypatch):
    requests, expect = (CHI_REQUESTS, CHI_EXPECT) if app == "chi" else (GIN_REQUESTS, GIN_EXPECT)
    monkeypatch.setenv("GIN_MODE", "release")  # inherited by the gateway and its worker
    gw = start_gateway([go_bins[app]], workers=1)  # one worker: one in-memory store
    assert wait_for(lambda: _ok(gw.port, "/"), 10), gw.log_tail()
    proc, port = start_standalone(go_bins[app], tmp_path, {"GIN_MODE": "release"})
    try:
        via_gateway = run_requests(gw.port, requests)
        standalone = run_requests(port, requests)
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    for i, (req, (g, g_id), (s, s_id)) in enumerate(zip(requests, via_gateway, standalone)):
        assert g == s, f"{req}: through the gateway {g}, standalone {s}"
        if i in expect:
            assert g[0] == expect[i], f"{req}: {g}"
        if app == "chi":
            assert g_id == s_id == f"req-{i}", f"{req}: X-Request-Id {g_id!r}, {s_id!r}"
    assert "[GIN-debug]" not in gw.log()
    # the store really changed: the last listing differs from the first
    assert via_gateway[-1][0][2] != via_gateway[1][0][2]


# --------------------------------------------------------------------------
# TLS

@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    if shutil.which("openssl") is None:
        pytest.skip("openssl CLI missing")
    d = tmp_path_factory.mktemp("go-tls")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", "key.pem", "-out",
                    "cert.pem", "-days", "2", "-subj", "/CN=localhost", "-addext",
                    "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   cwd=d, check=True, capture_output=True, timeout=60)
    return str(d / "cert.pem"), str(d / "key.pem")


def test_https_request_has_r_tls(start_gateway, go_bins, cert):
    tls_port = free_port()
    gw = start_gateway([go_bins["hello"]], "--listen", f"127.0.0.1:{tls_port}",
                       "--tls-cert", cert[0], "--tls-key", cert[1], workers=1)
    assert wait_for(lambda: _connects(tls_port), 10), gw.log_tail()
    ctx = ssl.create_default_context(cafile=cert[0])
    conn = http.client.HTTPSConnection("localhost", tls_port, context=ctx, timeout=10)
    try:
        conn.request("GET", "/")
        r = conn.getresponse()
        body = r.read()
    finally:
        conn.close()
    assert r.status == 200, body
    assert hello_parts(body)[1:] == ("https", "HTTP/1.1"), body
    with H2Conn(tls_port, tls=client_tls_context(cert[0])) as h:  # ALPN h2
        st = h.get("/")
    assert st.status == 200 and hello_parts(bytes(st.body))[1:] == ("https", "HTTP/2.0"), st
    r = get(gw.port, "/")  # the plain listener of the same gateway
    assert hello_parts(r.body)[1] == "http", r


# --------------------------------------------------------------------------
# WebSockets (examples/go/websocket): sluice.Accept through the real gateway

def _ws_gateway(start_gateway, go_bins):
    gw = start_gateway([go_bins["websocket"]], workers=1)
    assert wait_for(lambda: _ok(gw.port, "/"), 10), gw.log_tail()
    return gw


def test_websocket_echo_with_a_real_client(start_gateway, go_bins):
    """Text, binary, empty and large messages (beyond the window and the
    frame size, so cut into pieces both ways) come back whole; the
    subprotocol is negotiated; the client's close is answered."""
    websockets = pytest.importorskip("websockets.sync.client")
    gw = _ws_gateway(start_gateway, go_bins)
    with websockets.connect(f"ws://127.0.0.1:{gw.port}/echo", subprotocols=["x", "echo"],
                            max_size=None, open_timeout=10, close_timeout=5) as ws:
        assert ws.subprotocol == "echo"
        ws.send("caf\u00e9 \u2603")
        assert ws.recv(timeout=10) == "caf\u00e9 \u2603"
        ws.send(b"")
        assert ws.recv(timeout=10) == b""
        big = bytes((i * 7) % 251 for i in range(900_000))
        ws.send(big)
        assert ws.recv(timeout=20) == big
        ws.send("x" * 70_000)
        assert ws.recv(timeout=10) == "x" * 70_000
        ws.close(4321, "done")
    assert ws.close_code == 4321


def test_websocket_chat_room_and_close_code(start_gateway, go_bins):
    """Two members: what one says reaches both; /quit closes with the
    worker's code and reason, and the other member hears that it left."""
    websockets = pytest.importorskip("websockets.sync.client")
    gw = _ws_gateway(start_gateway, go_bins)
    url = f"ws://127.0.0.1:{gw.port}/chat"
    with websockets.connect(url, open_timeout=10) as a:
        assert a.recv(timeout=10) == "1 joined"
        with websockets.connect(url, open_timeout=10) as b:
            assert b.recv(timeout=10) == "2 joined"
            assert a.recv(timeout=10) == "2 joined"
            b.send("hello from b")
            assert a.recv(timeout=10) == "2: hello from b"
            assert b.recv(timeout=10) == "2: hello from b"
            b.send("/quit")
            with pytest.raises(Exception):
                b.recv(timeout=10)
            assert b.close_code == 4000 and b.close_reason == "bye"
        assert a.recv(timeout=10) == "2 left"


def test_websocket_plain_request_and_h2(start_gateway, go_bins):
    """A plain GET to a WebSocket route gets Accept's 426; over HTTP/2 an
    extended CONNECT reaches the same handler and echoes."""
    gw = _ws_gateway(start_gateway, go_bins)
    r = get(gw.port, "/echo", timeout=5)
    assert r.status == 426, r
    from test_ws_h2 import h2c, messages, open_ws, parse, frames_until
    from wsclient import OP_BINARY, OP_CLOSE, close_payload, frame
    with h2c(gw.port) as c:
        sid, st = open_ws(c)
        assert st.status == 200, (st.status, st.headers)
        payload = os.urandom(100_000)
        c.send_body(sid, frame(OP_BINARY, payload), end=False)
        frames_until(c, st, lambda f: len(messages(f)) >= 1, "echo")
        assert messages(parse(st.body))[0] == (OP_BINARY, payload)
        c.send_body(sid, frame(OP_CLOSE, close_payload(1000, b"")), end=True)
        c.wait(lambda: st.done, what="end of stream")


def test_websocket_load_echoes_checked(start_gateway, go_bins):
    """sluice-load's WebSocket mode checks every echo: none fails."""
    load = os.path.join(ROOT, os.environ.get("SLUICE_BUILD_DIR", "build"), "server", "load", "sluice-load")
    if not os.access(load, os.X_OK):
        pytest.skip(f"not built: {load}")
    gw = _ws_gateway(start_gateway, go_bins)
    r = subprocess.run([load, "-c", "8", "-d", "1", "--json", f"ws://127.0.0.1:{gw.port}/echo"],
                       capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr.decode(errors="replace")[-2000:]
    res = json.loads(r.stdout)
    assert res["errors"]["total"] == 0 and res["ws"]["error"] == "", res
    assert res["completed"] > 100, res


# --------------------------------------------------------------------------
# a Go worker attached over TCP (PROTOCOL.md 10.1): SLUICE_SOCKET=tcp:..., SLUICE_TOKEN

def test_go_worker_attaches_over_tcp_with_the_token(start_config, go_bins):
    """A Go worker started on its own attaches to the pool's tcp_listen with
    the token and serves beside the spawned worker; with a wrong token the
    gateway refuses it and Serve's error ends the process with status 1."""
    tport = free_port()
    gw = start_config("[pool:web]\ncommand = {EXAMPLES}/hello\nworkers = 1\n"
                      f"tcp_listen = 127.0.0.1:{tport}\ntoken = s3cret-token\n")
    assert len(gw.wait_running("web", 1)) == 1
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")}
    env["SLUICE_SOCKET"] = f"tcp:127.0.0.1:{tport}"
    bad = subprocess.Popen([go_bins["hello"]], env=dict(env, SLUICE_TOKEN="wrong"),
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        assert bad.wait(10) == 1
        err = bad.stderr.read().decode(errors="replace")
        assert "auth" in err, err
    finally:
        if bad.poll() is None:
            bad.kill()
            bad.wait(5)
        bad.stderr.close()
    good = subprocess.Popen([go_bins["hello"]], env=dict(env, SLUICE_TOKEN="s3cret-token"),
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_for(lambda: gw.pool("web")["attached"], 5), gw.pool("web")
        bodies = set()
        for _ in range(200):  # the pool balances over the spawned C worker and this one
            r = get(gw.port, "/", timeout=5)
            assert r.status == 200, r
            bodies.add(r.body.startswith(b"Hello from worker"))
            if True in bodies and False in bodies:
                break
        assert bodies == {True, False}, "both workers should have answered"
        assert gw.pool("web")["attached"][0]["requests"] > 0
        good.send_signal(signal.SIGTERM)  # retires: the gateway drains it, it exits 0
        assert good.wait(10) == 0
    finally:
        if good.poll() is None:
            good.kill()
            good.wait(5)
