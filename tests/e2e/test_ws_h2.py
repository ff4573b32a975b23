"""WebSockets over HTTP/2 (RFC 8441): an extended CONNECT with :protocol
websocket on a stream of an HTTP/2 connection, answered :status 200 when the
worker accepts (its 101), after which the stream's DATA frames carry RFC 6455
frames both ways and END_STREAM (or RST_STREAM) is the end.

The client is tests/e2e/h2client.py (the `h2` package, driven by the test);
frames are built with wsclient.frame. Workers: examples/c/ws_echo, the
scriptable tests/e2e/wsworker.py, and examples/c/hello (no WebSockets)."""

import os
import struct
import sys
import time
import uuid

import pytest

from conformance_util import running_gateway
from conftest import example
from h2client import H2Conn, client_tls_context
from test_tls import certs, start_tls  # noqa: F401 (certs: fixture)
from wsclient import OP_BINARY, OP_CLOSE, OP_PING, OP_PONG, OP_TEXT, close_payload, frame

ECHO = example("ws_echo")
if not (os.path.isfile(ECHO) and os.access(ECHO, os.X_OK)):
    pytest.skip(f"the C WebSocket echo worker is not built ({ECHO})", allow_module_level=True)

WSWORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "wsworker.py")


@pytest.fixture(scope="module")
def echo_gw():
    with running_gateway([ECHO], workers=1) as g:
        yield g


@pytest.fixture(scope="module")
def ww_gw():
    with running_gateway([sys.executable, WSWORKER, "--window", "65536"], workers=1) as g:
        yield g


def parse(buf):
    """Server frames (unmasked) in buf: [(opcode, fin, payload)]."""
    out, i = [], 0
    while i + 2 <= len(buf):
        b0, b1 = buf[i], buf[i + 1]
        assert not b1 & 0x80, "a server frame must not be masked"
        n, j = b1 & 0x7F, i + 2
        if n == 126:
            n, j = struct.unpack(">H", bytes(buf[j:j + 2]))[0], j + 2
        elif n == 127:
            n, j = struct.unpack(">Q", bytes(buf[j:j + 8]))[0], j + 8
        if j + n > len(buf):
            break
        out.append((b0 & 0x0F, bool(b0 & 0x80), bytes(buf[j:j + n])))
        i = j + n
    return out


def messages(frames):
    """Data frames reassembled into messages: [(opcode, payload)]; control
    frames in between are skipped (the gateway may fragment a worker's
    message as its pieces come)."""
    out, cur, op = [], None, None
    for o, fin, p in frames:
        if o >= 8:
            continue
        if o != 0:
            cur, op = bytearray(p), o
        else:
            cur += p
        if fin:
            out.append((op, bytes(cur)))
            cur = None
    return out


def open_ws(c, path="/echo", headers=(), version="13"):
    hs = [(":protocol", "websocket")]
    if version is not None:
        hs.append(("sec-websocket-version", version))
    sid = c.request("CONNECT", path, headers=hs + list(headers), end=False)
    c.wait(lambda: c.streams[sid].status is not None or c.streams[sid].done, what="response head")
    return sid, c.streams[sid]


def frames_until(c, st, pred, what):
    c.wait(lambda: pred(parse(st.body)) or st.done, what=what)
    return parse(st.body)


def h2c(port):
    c = H2Conn(port, validate=False)
    c.pump(0.1)
    return c


def test_settings_advertise_extended_connect(echo_gw):
    with h2c(echo_gw.port) as c:
        c.wait(lambda: c.remote_settings, what="SETTINGS")
        assert c.remote_settings.get(8) == 1, c.remote_settings  # SETTINGS_ENABLE_CONNECT_PROTOCOL


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536, 300000])
def test_echo_sizes_and_close(echo_gw, size):
    """Text and binary come back whole; the client's close is echoed, then
    the stream ends cleanly (END_STREAM, no reset)."""
    with h2c(echo_gw.port) as c:
        sid, st = open_ws(c)
        assert st.status == 200, (st.status, st.headers)
        assert st.header("sec-websocket-accept") is None  # HTTP/1.1's business only
        payload = bytes((i * 7) % 251 for i in range(size))
        c.send_body(sid, frame(OP_BINARY, payload), end=False)
        c.send_body(sid, frame(OP_TEXT, b"caf\xc3\xa9"), end=False)
        frames_until(c, st, lambda f: len(messages(f)) >= 2, "echoes")
        ms = messages(parse(st.body))
        assert ms[0] == (OP_BINARY, payload)
        assert ms[1] == (OP_TEXT, b"caf\xc3\xa9")
        c.send_body(sid, frame(OP_CLOSE, close_payload(1000, b"bye")), end=True)
        c.wait(lambda: st.done, what="end of stream")
        fr = parse(st.body)
        assert fr[-1][0] == OP_CLOSE and fr[-1][2][:2] == struct.pack(">H", 1000)
        assert st.reset is None and st.ended


def test_ping_answered_and_fragments(echo_gw):
    with h2c(echo_gw.port) as c:
        sid, st = open_ws(c)
        c.send_body(sid, frame(OP_TEXT, b"hel", fin=False) + frame(OP_PING, b"p!")
                    + frame(0, b"lo", fin=True), end=False)
        fr = frames_until(c, st, lambda f: len(f) >= 2, "pong and echo")
        assert (OP_PONG, True, b"p!") in fr
        assert (OP_TEXT, True, b"hello") in fr


def test_several_websockets_and_requests_on_one_connection(echo_gw):
    with h2c(echo_gw.port) as c:
        opened = [open_ws(c) for _ in range(5)]
        for k, (sid, st) in enumerate(opened):
            assert st.status == 200
            c.send_body(sid, frame(OP_TEXT, f"m{k}".encode()), end=False)
        for k, (sid, st) in enumerate(opened):
            fr = frames_until(c, st, lambda f: len(f) >= 1, "echo")
            assert fr[0] == (OP_TEXT, True, f"m{k}".encode())
        for sid, st in opened:
            c.reset(sid)
        assert not any(st.reset for _, st in opened)


def test_worker_refuses_with_a_response(ww_gw):
    with h2c(ww_gw.port) as c:
        sid, st = open_ws(c, "/refuse")
        c.wait(lambda: st.done, what="refusal")
        assert st.status == 403 and bytes(st.body) == b"no"


def test_subprotocol_chosen(ww_gw):
    with h2c(ww_gw.port) as c:
        sid, st = open_ws(c, "/proto", headers=[("sec-websocket-protocol", "a, b")])
        assert st.status == 200
        assert st.header("sec-websocket-protocol") == "b"


def test_subprotocol_not_offered_is_502(ww_gw):
    with h2c(ww_gw.port) as c:
        sid, st = open_ws(c, "/badproto", headers=[("sec-websocket-protocol", "a")])
        c.wait(lambda: st.done, what="502")
        assert st.status == 502


@pytest.mark.parametrize("version,status", [("8", 426), (None, 400)])
def test_version_checked(echo_gw, version, status):
    with h2c(echo_gw.port) as c:
        sid, st = open_ws(c, version=version)
        c.wait(lambda: st.done, what="refusal")
        assert st.status == status
        if status == 426:
            assert st.header("sec-websocket-version") == "13"


def test_worker_without_websockets_is_501():
    with running_gateway([example("hello")], workers=1) as g:
        with h2c(g.port) as c:
            sid, st = open_ws(c)
            c.wait(lambda: st.done, what="501")
            assert st.status == 501


def test_other_protocols_are_501(echo_gw):
    """Extended CONNECT for anything but websocket: no tunnels here."""
    with h2c(echo_gw.port) as c:
        sid = c.request("CONNECT", "/x", headers=[(":protocol", "h2-tunnel")], end=False)
        c.wait(lambda: c.streams[sid].done, what="501")
        assert c.streams[sid].status == 501


def test_violation_closes_1002(echo_gw):
    with h2c(echo_gw.port) as c:
        sid, st = open_ws(c)
        c.send_body(sid, frame(OP_TEXT, b"x", mask=False), end=False)
        c.wait(lambda: st.done, what="close")
        fr = parse(st.body)
        assert fr and fr[-1][0] == OP_CLOSE and fr[-1][2][:2] == struct.pack(">H", 1002)


def test_worker_closes(ww_gw):
    with h2c(ww_gw.port) as c:
        sid, st = open_ws(c, "/close")
        c.send_body(sid, frame(OP_TEXT, b"hi"), end=False)
        fr = frames_until(c, st, lambda f: any(op == OP_CLOSE for op, _, _ in f), "worker's close")
        close = [p for op, _, p in fr if op == OP_CLOSE][0]
        assert close == struct.pack(">H", 4000) + b"bye"
        c.send_body(sid, frame(OP_CLOSE, close_payload(4000)), end=True)
        c.wait(lambda: st.done, what="end")
        assert st.reset is None


def test_client_reset_tells_the_worker_1006(ww_gw):
    t = f"/echo?t={uuid.uuid4().hex[:10]}"
    with h2c(ww_gw.port) as c:
        sid, st = open_ws(c, t)
        c.send_body(sid, frame(OP_TEXT, b"one"), end=False)
        frames_until(c, st, lambda f: len(f) >= 1, "echo")
        c.reset(sid)
        line = ww_gw.wait_log(lambda l: "wsworker[" in l and " end " in l and f"target={t} " in l, 5)
        assert line and "how=close" in line and "code=1006" in line, line


def test_over_tls(start_gateway, certs):  # noqa: F811
    gw = start_tls(start_gateway, certs, worker="ws_echo")
    with H2Conn(gw.tls_port, tls=client_tls_context(certs["ca"], ("h2",)), validate=False) as c:
        c.pump(0.1)
        sid, st = open_ws(c)
        assert st.status == 200
        c.send_body(sid, frame(OP_TEXT, b"over tls"), end=False)
        fr = frames_until(c, st, lambda f: len(f) >= 1, "echo")
        assert fr[0] == (OP_TEXT, True, b"over tls")


def test_access_log_line():
    with running_gateway([ECHO], "--access-log", "-", workers=1) as g:
        with h2c(g.port) as c:
            sid, st = open_ws(c, "/logged")
            c.send_body(sid, frame(OP_TEXT, b"abc"), end=False)
            frames_until(c, st, lambda f: len(f) >= 1, "echo")
            c.send_body(sid, frame(OP_CLOSE, close_payload(1000)), end=True)
            c.wait(lambda: st.done, what="end")
        line = g.wait_log(lambda l: '"GET /logged HTTP/2.0" 101' in l, 5)
        assert line and "ws messages=1/1 bytes=3/3 close=1000" in line, line


def test_graceful_stop_closes_1001():
    with running_gateway([ECHO], "--graceful-timeout", "1s", workers=1) as g:
        with h2c(g.port) as c:
            sid, st = open_ws(c)
            g.proc.send_signal(15)
            t0 = time.monotonic()
            c.wait(lambda: parse(st.body) or st.done or c.closed, timeout=6, what="close at shutdown")
            fr = parse(st.body)
            assert fr and fr[-1][0] == OP_CLOSE and fr[-1][2][:2] == struct.pack(">H", 1001), (fr, st.reset)
            assert time.monotonic() - t0 < 5
        assert g.proc.wait(timeout=10) == 0


def test_worker_limit_before_101(ww_gw):
    """A LIMIT the worker sends before its 101 is the message limit over
    HTTP/2 too: a larger message gets close 1009."""
    with h2c(ww_gw.port) as c:
        sid, st = open_ws(c, "/limit?n=100")
        assert st.status == 200
        c.send_body(sid, frame(OP_BINARY, bytes(100)), end=False)
        frames_until(c, st, lambda f: len(messages(f)) >= 1, "echo of 100 bytes")
        c.send_body(sid, frame(OP_BINARY, bytes(101)), end=False)
        c.wait(lambda: st.done, what="close 1009")
        fr = parse(st.body)
        assert fr[-1][0] == OP_CLOSE and fr[-1][2][:2] == struct.pack(">H", 1009), fr
