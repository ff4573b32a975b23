"""WebSockets end to end with real clients, real apps and real frameworks.

Each test runs the real gateway over loopback with real workers and talks to
it with a real client library:

* the Python `websockets` client against the C echo (examples/c/ws_echo):
  sizes from 0 B to 4 MiB, 100 connections x 100 messages, subprotocols,
  pings, closes both ways, wss:// over a TLS listener;
* the Node `ws` client (tests/e2e/apps/ws_client.js) against the C echo and
  against examples/node/ws-chat.js (broadcast, the heartbeat);
* a FastAPI app and a Starlette app (tests/e2e/apps/), unchanged, through
  `python -m sluice.asgi`; the native Python API on asyncio and trio;
* examples/node/express-ws.js (Express + ws on one server) behind sluice and,
  with its two setup lines swapped back, on plain Node: same answers;
* examples/python/ws_chat.py (a FastAPI chat room).

The Python workers run this tree's library (clients/python on PYTHONPATH)
with the interpreter running the tests; the framework tests skip when it
lacks FastAPI/Starlette/trio, the Node ones when node or clients/node's
dev dependencies (npm ci) are missing. Every client has a deadline and
every gateway is stopped by PID (conformance_util.running_gateway).
"""

import asyncio
import hashlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request

import pytest

from conformance_util import running_gateway
from conftest import ROOT, example, free_port
from wsclient import OP_PING, WS

websockets = pytest.importorskip("websockets", minversion="13")
from websockets.asyncio.client import connect  # noqa: E402
from websockets.exceptions import ConnectionClosed, InvalidStatus  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
APPS = os.path.join(HERE, "apps")
CLIENTS_PY = os.path.join(ROOT, "clients", "python")
NODE_DIR = os.path.join(ROOT, "clients", "node")
NODE = shutil.which("node")
ECHO = example("ws_echo")
MiB = 1 << 20
T = 20.0  # seconds: the bound of any one client exchange


def _have(path):
    return os.path.isfile(path) and os.access(path, os.X_OK)


def _module(name):
    try:
        __import__(name)
        return True
    except ImportError:
        return False


need_node = pytest.mark.skipif(
    NODE is None or not os.path.isdir(os.path.join(NODE_DIR, "node_modules", "ws"))
    or not os.path.isdir(os.path.join(NODE_DIR, "node_modules", "express")),
    reason="node, or clients/node's dev dependencies (npm ci), missing")


def py_worker(*args, env=()):
    """A Python worker command: this interpreter, this tree's library."""
    return ["/usr/bin/env", f"PYTHONPATH={CLIENTS_PY}", *env, sys.executable, "-m", *args]


def run(coro, timeout=60.0):
    """Run one asyncio test body with an overall deadline."""
    async def bounded():
        return await asyncio.wait_for(coro, timeout)
    return asyncio.run(bounded())


def pattern(n, seed=0):
    """n bytes depending on seed (all 256 values)."""
    block = bytes((i * 7 + 3 + seed) % 256 for i in range(4096))
    return (block * (n // 4096 + 1))[:n]


def http_get(port, path, timeout=10):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
        return r.status, r.headers, r.read()


def http_json(port, path, body=None):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method="POST" if body else "GET",
                                 data=json.dumps(body).encode() if body else None,
                                 headers={"content-type": "application/json"} if body else {})
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.status, json.loads(r.read())


def wait_for(pred, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    return pred()


def ws_connect(port, path, **kw):
    kw.setdefault("open_timeout", 10)
    kw.setdefault("close_timeout", 5)
    kw.setdefault("ping_interval", None)
    kw.setdefault("max_size", None)
    return connect(f"ws://127.0.0.1:{port}{path}", **kw)


async def refused(port, path, **kw):
    """The HTTP response of a refused handshake (InvalidStatus)."""
    with pytest.raises(InvalidStatus) as ei:
        async with ws_connect(port, path, **kw):
            pass
    return ei.value.response


async def closed_by_server(ws):
    """Wait for the server's close; returns the close frame it sent."""
    with pytest.raises(ConnectionClosed) as ei:
        await asyncio.wait_for(ws.recv(), T)
    return ei.value.rcvd


# ==========================================================================
# 1. the Python `websockets` client against the C echo

@pytest.fixture(scope="module")
def echo_gw():
    if not _have(ECHO):
        pytest.skip(f"{ECHO} not built")
    # messages up to 8 MiB: the gateway's limit and the C library's
    # reassembly limit (a worker cannot see the pool's setting)
    with running_gateway(["/usr/bin/env", f"SLUICE_WS_MAX_MESSAGE={8 * MiB}", ECHO],
                         "--ws-max-message", "8m", workers=2) as g:
        yield g


SIZES = [0, 1, 125, 126, 127, 65535, 65536, 65537, 256 * 1024, MiB, 4 * MiB]


@pytest.mark.parametrize("kind", ["binary", "text"])
def test_websockets_sizes(echo_gw, kind):
    """Every size from 0 B to 4 MiB comes back whole, same type, same bytes
    (the frame length encodings' edges, the windows, several max_frames)."""
    async def body():
        async with ws_connect(echo_gw.port, "/") as ws:
            for n in SIZES:
                if kind == "binary":
                    msg = pattern(n, n)
                else:  # multi-byte characters straddle every piece boundary
                    msg = ("aé€😀" * (n // 10 + 1))[:max(0, n // 3)]
                await ws.send(msg)
                got = await asyncio.wait_for(ws.recv(), T)
                assert type(got) is type(msg), n
                assert len(got) == len(msg) and got == msg, f"size {n}: differs"
            await ws.close()
            assert ws.close_code == 1000
    run(body())


def test_websockets_over_limit_1009(echo_gw):
    """Above --ws-max-message the gateway closes with 1009 (a close initiated
    by the server side, seen by a real client)."""
    async def body():
        async with ws_connect(echo_gw.port, "/") as ws:
            await ws.send(b"x" * 10)
            assert await ws.recv() == b"x" * 10
            try:
                await ws.send(b"\0" * (8 * MiB + 1))
            except ConnectionClosed:
                pass
            rcvd = await closed_by_server(ws)
            assert rcvd is not None and rcvd.code == 1009, rcvd
    run(body())


def test_websockets_100_connections(echo_gw):
    """100 connections at once, each 100 messages (text and binary, sizes
    varying, each tagged with its connection and index), all echoed intact
    and in order."""
    async def one(c):
        async with ws_connect(echo_gw.port, f"/conn/{c}") as ws:
            for i in range(100):
                size = (c * 131 + i * 997) % 3000
                if i % 2:
                    msg = f"{c}:{i}:" + "x" * size
                else:
                    msg = f"{c}:{i}:".encode() + pattern(size, c + i)
                await ws.send(msg)
                got = await asyncio.wait_for(ws.recv(), T)
                assert got == msg, f"connection {c} message {i}"
            await ws.close(1000, f"done {c}")
        return c

    async def body():
        done = await asyncio.gather(*(one(c) for c in range(100)))
        assert sorted(done) == list(range(100))
    run(body(), timeout=120)


def test_websockets_subprotocol(echo_gw):
    """?protocol=NAME picks NAME when offered; not offered: none; nothing
    offered: no header at all."""
    async def body():
        async with ws_connect(echo_gw.port, "/?protocol=chat", subprotocols=["superchat", "chat"]) as ws:
            assert ws.subprotocol == "chat"
            assert ws.response.headers.get_all("sec-websocket-protocol") == ["chat"]
            # websockets offers permessage-deflate; the gateway negotiates none
            assert "permessage-deflate" in ws.request.headers["sec-websocket-extensions"]
            assert "sec-websocket-extensions" not in ws.response.headers
            await ws.send("with chat")
            assert await ws.recv() == "with chat"
        async with ws_connect(echo_gw.port, "/?protocol=chat", subprotocols=["other"]) as ws:
            assert ws.subprotocol is None
        async with ws_connect(echo_gw.port, "/?protocol=chat") as ws:
            assert ws.subprotocol is None
            assert "sec-websocket-protocol" not in ws.response.headers
    run(body())


def test_websockets_ping_pong(echo_gw):
    """The client's pings are answered (by the gateway) with their data, also
    between the messages of a busy connection."""
    async def body():
        async with ws_connect(echo_gw.port, "/") as ws:
            for i in range(5):
                waiter = await ws.ping(f"ping {i}".encode())
                latency = await asyncio.wait_for(waiter, T)
                assert latency >= 0
            waiters = []
            for i in range(20):
                await ws.send(pattern(50000, i))
                waiters.append(await ws.ping(bytes([i]) * 125))  # the largest ping payload
            for i in range(20):
                assert await asyncio.wait_for(ws.recv(), T) == pattern(50000, i)
            await asyncio.wait_for(asyncio.gather(*waiters), T)
    run(body())


def test_websockets_keepalive_pings(echo_gw):
    """websockets' own keepalive (ping_interval) runs against the gateway
    without closing the connection."""
    async def body():
        async with ws_connect(echo_gw.port, "/", ping_interval=0.2, ping_timeout=5) as ws:
            await asyncio.sleep(1.2)
            await ws.send("still here")
            assert await ws.recv() == "still here"
    run(body())


@pytest.mark.parametrize("code,reason", [(1000, ""), (1000, "bye"), (1001, "going away"),
                                         (4001, "custom é reason"), (3000, "x" * 123)])
def test_websockets_client_close(echo_gw, code, reason):
    """The client's close code and reason are answered with the same code
    (RFC 6455 5.5.1: the endpoint echoes the status code)."""
    async def body():
        async with ws_connect(echo_gw.port, "/") as ws:
            await ws.send("before close")
            assert await ws.recv() == "before close"
            await ws.close(code, reason)
            assert ws.protocol.close_sent.code == code and ws.protocol.close_sent.reason == reason
            assert ws.protocol.close_rcvd is not None, "no close frame from the gateway"
            assert ws.protocol.close_rcvd.code == code, ws.protocol.close_rcvd
    run(body())


@pytest.fixture(scope="module")
def wsworker_gw():
    with running_gateway([sys.executable, os.path.join(HERE, "wsworker.py")], workers=1) as g:
        yield g


@pytest.mark.parametrize("code,reason,want", [
    (1000, "", (1000, "")),
    (4000, "bye", (4000, "bye")),
    (1005, "", (1005, "")),            # sent as a close frame without a code
    (1006, "x", (1011, "x")),          # a code a close frame must not carry
    (3999, "long", (3999, "\u00e9" * 61)),  # 130 bytes cut at a character to 122
])
def test_websockets_worker_close(wsworker_gw, code, reason, want):
    """A close started by the worker (wsworker.py /closecode) reaches the
    websockets client with the code and reason PROTOCOL.md 3.15 promises."""
    async def body():
        async with ws_connect(wsworker_gw.port, f"/closecode?c={code}&r={reason}") as ws:
            rcvd = await closed_by_server(ws)
            got = (1005, "") if rcvd is None else (rcvd.code, rcvd.reason)
            assert got == want
    run(body())


# --- wss:// -----------------------------------------------------------------

@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    if shutil.which("openssl") is None:
        pytest.skip("openssl CLI missing")
    d = str(tmp_path_factory.mktemp("wss"))
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-days", "2", "-keyout", "key.pem",
                    "-out", "cert.pem", "-subj", "/CN=localhost", "-addext",
                    "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   cwd=d, check=True, capture_output=True, timeout=60)
    return os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")


@pytest.fixture(scope="module")
def tls_echo_gw(certs):
    if not _have(ECHO):
        pytest.skip(f"{ECHO} not built")
    tls_port = free_port()
    with running_gateway(["/usr/bin/env", f"SLUICE_WS_MAX_MESSAGE={8 * MiB}", ECHO],
                         "--listen", f"127.0.0.1:{tls_port}", "--tls-cert", certs[0],
                         "--tls-key", certs[1], "--ws-max-message", "8m", workers=1) as g:
        g.tls_port = tls_port
        assert wait_for(lambda: _connectable(tls_port), 10), "TLS listener not up"
        yield g


def _connectable(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def test_wss_over_tls(tls_echo_gw, certs):
    """wss:// with certificate verification: echo of text and a 4 MiB binary
    message, subprotocol, ping, close code; a client that does not trust the
    certificate fails its TLS handshake."""
    ctx = ssl.create_default_context(cafile=certs[0])

    async def body():
        async with connect(f"wss://localhost:{tls_echo_gw.tls_port}/?protocol=p1", ssl=ctx,
                           subprotocols=["p1"], max_size=None, ping_interval=None,
                           open_timeout=10, close_timeout=5) as ws:
            assert ws.subprotocol == "p1"
            await ws.send("over tls ✓")
            assert await asyncio.wait_for(ws.recv(), T) == "over tls ✓"
            big = pattern(4 * MiB, 9)
            await ws.send(big)
            assert await asyncio.wait_for(ws.recv(), T) == big
            await asyncio.wait_for(await ws.ping(b"tls"), T)
            await ws.close(4002, "tls done")
            assert ws.protocol.close_rcvd.code == 4002
        with pytest.raises(ssl.SSLCertVerificationError):
            async with connect(f"wss://localhost:{tls_echo_gw.tls_port}/",
                               ssl=ssl.create_default_context(), open_timeout=10):
                pass
    run(body())
    # the plain listener of the same gateway serves ws:// beside it
    async def plain():
        async with ws_connect(tls_echo_gw.port, "/") as ws:
            await ws.send("plain")
            assert await ws.recv() == "plain"
    run(plain())


# ==========================================================================
# 2. the Node `ws` client

def node_client(mode, port, timeout=40):
    r = subprocess.run([NODE, os.path.join(APPS, "ws_client.js"), mode, f"ws://127.0.0.1:{port}"],
                       capture_output=True, timeout=timeout, cwd=ROOT,
                       env=dict(os.environ, WS_CLIENT_DEADLINE_MS=str(int(timeout * 1000) - 5000)))
    out = r.stdout.decode().strip().splitlines()
    assert out, f"no report (exit {r.returncode}): {r.stderr.decode()[-2000:]}"
    report = json.loads(out[-1])
    assert r.returncode == 0, f"exit {r.returncode}: {report}\n{r.stderr.decode()[-2000:]}"
    return report


@need_node
def test_node_ws_client_c_echo(echo_gw):
    rep = node_client("echo", echo_gw.port)
    assert rep["protocol"] == "chat"
    assert [m["sent"] for m in rep["messages"]] == [0, 125, 126, 65536, MiB]
    for m in rep["messages"]:
        assert m["binary"] and m["same"] and m["len"] == m["sent"], m
    text = "héllo wörld ✓" * 1000
    assert rep["text"] == {"binary": False, "same": True,
                           "sha": hashlib.sha256(text.encode()).hexdigest()}
    assert rep["fragmented"] == "frag-ment"
    assert rep["pong"] == "are you there"
    # the gateway answers the client's close with its code, without the
    # reason (RFC 6455 5.5.1 asks for the code only; ws itself echoes both)
    assert rep["close"]["code"] == 4001
    assert rep["plainProtocol"] == ""


@pytest.fixture(scope="module")
def chat_gw():
    if NODE is None:
        pytest.skip("node missing")
    with running_gateway(["/usr/bin/env", "HEARTBEAT_MS=300", NODE,
                          os.path.join(ROOT, "examples", "node", "ws-chat.js")], workers=1) as g:
        yield g


@need_node
def test_node_ws_chat(chat_gw):
    """examples/node/ws-chat.js: joins, broadcast both ways (binary ignored),
    the heartbeat pings the clients, a client that never answers is
    terminated (the gateway closes it with 1011, as PROTOCOL.md 5.2 says
    for RESET), leaves are announced, and the page is served."""
    rep = node_client("chat", chat_gw.port)
    assert rep["protocol"] == "chat"
    assert rep["aliceSawBob"] == "bob joined"
    assert rep["bobGot"] == rep["aliceGot"] == "alice: hi bob"
    assert rep["aliceGot2"] == "bob: hello alice"
    assert rep["pings"] == 2
    assert rep["muteClose"]["code"] == 1011, rep["muteClose"]
    assert 300 <= rep["muteClosedAfterMs"] <= 5000, rep
    assert rep["aliceSawMuteLeave"] == "mute left"
    assert rep["bobClose"]["code"] == 1000
    assert rep["aliceSawBobLeave"] == "bob left"
    assert rep["aliceClose"]["code"] == 1005  # close() without a code
    assert rep["page"] == {"status": 200, "type": "text/html; charset=utf-8", "hasScript": True}


# ==========================================================================
# 3. FastAPI and Starlette through the ASGI runner; the native API

@pytest.fixture(scope="module")
def fastapi_gw():
    if not _module("fastapi") or not _module("msgpack"):
        pytest.skip("fastapi or msgpack missing")
    # one worker: broadcast and /seen are in-process state
    with running_gateway(py_worker("sluice.asgi", "--app-dir", APPS, "fastapi_ws:app"),
                         "--ws-max-message", "4m", workers=1) as g:
        yield g


def test_fastapi_echo_and_disconnect_code(fastapi_gw):
    """Text and bytes echo; the client's close code and reason reach the app
    as WebSocketDisconnect(code, reason)."""
    async def body():
        async with ws_connect(fastapi_gw.port, "/ws/echo") as ws:
            await ws.send("héllo")
            assert await ws.recv() == "héllo"
            await ws.send(b"\x00\xff" * 100)
            assert await ws.recv() == b"\x00\xff" * 100
            await ws.close(4002, "client leaving")
            assert ws.protocol.close_rcvd.code == 4002
    run(body())
    assert wait_for(lambda: ["echo", 4002, "client leaving"]
                    in json.loads(http_get(fastapi_gw.port, "/seen")[2])["seen"])


def test_fastapi_abrupt_disconnect_1006(fastapi_gw):
    """A client that drops its TCP connection: the app sees code 1006."""
    with WS(fastapi_gw.port) as ws:
        ws.handshake("/ws/echo?abrupt=1", expect=101)
        ws.send_text("x")
        assert ws.recv_message().data == b"x"
        ws.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
    assert wait_for(lambda: any(s[0] == "echo" and s[1] == 1006 for s in
                                json.loads(http_get(fastapi_gw.port, "/seen")[2])["seen"]))


def test_fastapi_json(fastapi_gw):
    async def body():
        async with ws_connect(fastapi_gw.port, "/ws/json") as ws:
            for i, obj in enumerate([{"a": 1}, [1, "two", None], "ü", 3.5], 1):
                await ws.send(json.dumps(obj))
                assert json.loads(await ws.recv()) == {"got": obj, "n": i}
    run(body())


def test_fastapi_path_query_headers(fastapi_gw):
    """Path and query params, a request header and a cookie reach the app;
    the app's accept headers reach the client; a path param that fails
    validation is refused (403)."""
    async def body():
        async with ws_connect(fastapi_gw.port, "/ws/items/42?q=caf%C3%A9",
                              additional_headers={"X-Test": "yes", "Cookie": "session=s1"}) as ws:
            assert ws.response.headers["x-app"] == "fastapi"
            got = json.loads(await ws.recv())
            assert got == {"item_id": 42, "q": "café", "x_test": "yes", "session": "s1",
                           "scheme": "ws", "path": "/ws/items/42"}
            assert (await closed_by_server(ws)).code == 1000
        resp = await refused(fastapi_gw.port, "/ws/items/not-a-number")
        assert resp.status_code == 403
    run(body())


def test_fastapi_subprotocol(fastapi_gw):
    async def body():
        async with ws_connect(fastapi_gw.port, "/ws/proto", subprotocols=["v1", "v2"]) as ws:
            assert ws.subprotocol == "v2"
            assert json.loads(await ws.recv()) == {"offered": ["v1", "v2"], "chosen": "v2"}
        async with ws_connect(fastapi_gw.port, "/ws/proto", subprotocols=["v1"]) as ws:
            assert ws.subprotocol == "v1"
        async with ws_connect(fastapi_gw.port, "/ws/proto") as ws:
            assert ws.subprotocol is None
            assert json.loads(await ws.recv()) == {"offered": [], "chosen": None}
    run(body())


def test_fastapi_dependency_refuses_403(fastapi_gw):
    async def body():
        resp = await refused(fastapi_gw.port, "/ws/guarded")
        assert resp.status_code == 403
        resp = await refused(fastapi_gw.port, "/ws/guarded?token=wrong")
        assert resp.status_code == 403
        async with ws_connect(fastapi_gw.port, "/ws/guarded?token=secret") as ws:
            assert await ws.recv() == "welcome secret"
    run(body())


def test_fastapi_server_close_code_reason(fastapi_gw):
    async def body():
        async with ws_connect(fastapi_gw.port, "/ws/bye") as ws:
            await ws.send("only one")
            assert await ws.recv() == "last: only one"
            rcvd = await closed_by_server(ws)
            assert (rcvd.code, rcvd.reason) == (4003, "go away")
    run(body())


def test_fastapi_broadcast(fastapi_gw):
    """Three connections in one worker: each message reaches all three."""
    async def body():
        conns = [await ws_connect(fastapi_gw.port, f"/ws/room?name=u{i}").__aenter__()
                 for i in range(3)]
        try:
            for i, ws in enumerate(conns):
                await ws.send(f"msg {i}")
                for other in conns:
                    assert await asyncio.wait_for(other.recv(), T) == f"u{i}: msg {i}"
        finally:
            for ws in conns:
                await ws.close()
    run(body())


def test_fastapi_large_message(fastapi_gw):
    """3 MiB each way (the gateway's limit raised to 4 MiB); above it, close
    1009 for the client and WebSocketDisconnect(1009) for the app."""
    async def body():
        async with ws_connect(fastapi_gw.port, "/ws/big") as ws:
            data = pattern(3 * MiB, 5)
            await ws.send(data)
            info = json.loads(await asyncio.wait_for(ws.recv(), T))
            assert info == {"len": len(data), "sha256": hashlib.sha256(data).hexdigest()}
            assert await asyncio.wait_for(ws.recv(), T) == data
            try:
                await ws.send(b"\0" * (4 * MiB + 1))
            except ConnectionClosed:
                pass
            assert (await closed_by_server(ws)).code == 1009
    run(body())
    assert wait_for(lambda: any(s[0] == "big" and s[1] == 1009 for s in
                                json.loads(http_get(fastapi_gw.port, "/seen")[2])["seen"]))


def test_fastapi_concurrent_connections(fastapi_gw):
    """50 connections at once to one Python worker, 20 JSON round trips
    each, every answer checked."""
    async def one(c):
        async with ws_connect(fastapi_gw.port, "/ws/json") as ws:
            for i in range(1, 21):
                await ws.send(json.dumps({"c": c, "i": i, "pad": "p" * (c * 37 % 500)}))
                got = json.loads(await asyncio.wait_for(ws.recv(), T))
                assert got["n"] == i and got["got"]["c"] == c and got["got"]["i"] == i
        return c

    async def body():
        assert sorted(await asyncio.gather(*(one(c) for c in range(50)))) == list(range(50))
    run(body(), timeout=120)


def test_fastapi_wss_scheme(certs):
    """Behind a TLS listener the app sees scheme wss (url.scheme)."""
    if not _module("fastapi") or not _module("msgpack"):
        pytest.skip("fastapi or msgpack missing")
    tls_port = free_port()
    with running_gateway(py_worker("sluice.asgi", "--app-dir", APPS, "fastapi_ws:app"),
                         "--listen", f"127.0.0.1:{tls_port}", "--tls-cert", certs[0],
                         "--tls-key", certs[1], workers=1) as g:
        assert wait_for(lambda: _connectable(tls_port), 10), "TLS listener not up"
        ctx = ssl.create_default_context(cafile=certs[0])

        async def body():
            async with connect(f"wss://localhost:{tls_port}/ws/items/7", ssl=ctx,
                               open_timeout=10, ping_interval=None) as ws:
                got = json.loads(await asyncio.wait_for(ws.recv(), T))
                assert got["scheme"] == "wss" and got["item_id"] == 7
            async with ws_connect(g.port, "/ws/items/8") as ws:
                assert json.loads(await asyncio.wait_for(ws.recv(), T))["scheme"] == "ws"
        run(body())


def test_fastapi_gateway_stop_1001():
    """SIGTERM to the gateway with WebSockets open: they carry on until the
    graceful timeout (PROTOCOL.md 5.2, draining), then the clients get close
    1001 and the app WebSocketDisconnect(1001); the gateway exits 0."""
    if not _module("fastapi") or not _module("msgpack"):
        pytest.skip("fastapi or msgpack missing")
    with running_gateway(py_worker("sluice.asgi", "--app-dir", APPS, "fastapi_ws:app"),
                         "--graceful-timeout", "1s", workers=1) as g:
        async def body():
            conns = [await ws_connect(g.port, "/ws/echo").__aenter__() for _ in range(3)]
            for ws in conns:
                await ws.send("up")
                assert await ws.recv() == "up"
            t0 = time.monotonic()
            g.proc.send_signal(signal.SIGTERM)
            await asyncio.sleep(0.3)
            await conns[0].send("still open while draining")
            assert await conns[0].recv() == "still open while draining"
            for ws in conns:
                rcvd = await closed_by_server(ws)
                assert rcvd is not None and rcvd.code == 1001, rcvd
            return time.monotonic() - t0
        took = run(body())
        assert 0.9 < took < 6, took
        assert g.proc.wait(15) == 0, g.log_tail()
        assert g.log().count("fastapi_ws: echo disconnect 1001") == 3, g.log_tail()


@pytest.fixture(scope="module")
def starlette_gw():
    if not _module("starlette") or not _module("msgpack"):
        pytest.skip("starlette or msgpack missing")
    with running_gateway(py_worker("sluice.asgi", "--app-dir", APPS, "starlette_ws:app"),
                         workers=1) as g:
        yield g


def test_starlette_endpoint_and_disconnect(starlette_gw):
    async def body():
        async with ws_connect(starlette_gw.port, "/echo") as ws:
            for s in ["one", "twö", ""]:
                await ws.send(s)
                assert await ws.recv() == "echo: " + s
            await ws.close(4010, "enough")
    run(body())
    assert wait_for(lambda: 4010 in json.loads(http_get(starlette_gw.port, "/seen")[2])["seen"])


def test_starlette_params_deny_close(starlette_gw):
    async def body():
        async with ws_connect(starlette_gw.port, "/hello/wörld?x=1&y=z",
                              origin="http://example.test") as ws:
            assert json.loads(await ws.recv()) == {"name": "wörld", "query": {"x": "1", "y": "z"},
                                                   "origin": "http://example.test"}
        resp = await refused(starlette_gw.port, "/deny")
        assert resp.status_code == 403 and resp.body == b"nope"
        async with ws_connect(starlette_gw.port, "/close?code=4500&reason=st%C3%A4rlette") as ws:
            rcvd = await closed_by_server(ws)
            assert (rcvd.code, rcvd.reason) == (4500, "stärlette")
        resp = await refused(starlette_gw.port, "/no/such/route")
        assert resp.status_code == 403  # Starlette closes unknown WebSocket routes
    run(body())


LOOPS = ["asyncio", "trio"] + (["uvloop"] if _module("uvloop") else [])


@pytest.fixture(scope="module", params=LOOPS)
def native_gw(request):
    if not _module("msgpack"):
        pytest.skip("msgpack missing")
    if request.param == "trio" and not _module("trio"):
        pytest.skip("trio missing")
    with running_gateway(py_worker("sluice", "--loop", request.param, "--app-dir", APPS,
                                   "native_ws:app"), workers=1) as g:
        g.loop = request.param
        yield g


def test_native_api(native_gw):
    """The native API on each event loop: plain HTTP beside WebSockets,
    echo, refusal by returning a Response, subprotocol, a close with code and
    reason, the client's close code seen by the handler, LIMIT."""
    port = native_gw.port
    assert http_get(port, "/")[2] == b"plain\n"

    async def body():
        async with ws_connect(port, "/echo") as ws:
            await ws.send("text ✓")
            assert await ws.recv() == "text ✓"
            await ws.send(pattern(300000))
            assert await asyncio.wait_for(ws.recv(), T) == pattern(300000)
            await ws.close(4321, native_gw.loop)
        resp = await refused(port, "/auth")
        assert resp.status_code == 401 and resp.body == b"log in first\n"
        async with ws_connect(port, "/auth", subprotocols=["x", "chat"],
                              additional_headers={"Authorization": "Bearer t"}) as ws:
            assert ws.subprotocol == "chat"
            assert await ws.recv() == "hello Bearer t over ws"
        async with ws_connect(port, "/close?code=4100&reason=native%20bye") as ws:
            await ws.send(b"\x01")
            assert await ws.recv() == "closing after b'\\x01'"
            rcvd = await closed_by_server(ws)
            assert (rcvd.code, rcvd.reason) == (4100, "native bye")
        # max_message (LIMIT) raises the gateway's 1 MiB default for one stream
        async with ws_connect(port, f"/big?max={2 * MiB}") as ws:
            await ws.send(pattern(MiB + MiB // 2))
            assert await asyncio.wait_for(ws.recv(), T) == str(MiB + MiB // 2)
            try:
                await ws.send(pattern(2 * MiB + 1))
            except ConnectionClosed:
                pass
            assert (await closed_by_server(ws)).code == 1009
        resp = await refused(port, "/nowhere")
        assert resp.status_code == 404
    run(body())
    assert wait_for(lambda: [4321, native_gw.loop] in json.loads(http_get(port, "/seen")[2]))


def test_native_ping_from_handler(native_gw):
    """websocket.ping() from the handler reaches the client as a ping frame
    with its data (seen on a raw socket)."""
    with WS(native_gw.port) as ws:
        ws.handshake("/ping", expect=101)
        f = ws.recv_frame(timeout=10)
        assert f.opcode == OP_PING and f.payload == b"native", f
        ws.pong(f.payload)
        ws.send_text("after ping")
        assert ws.recv_message(timeout=10).data == b"after ping"
        ws.close(1000)
        ws.expect_close(1000, reply=False)


# ==========================================================================
# 4. Express + ws: examples/node/express-ws.js, behind sluice and plain

EXPRESS_WS = os.path.join(ROOT, "examples", "node", "express-ws.js")


@pytest.fixture(scope="module")
def express_gw():
    if NODE is None:
        pytest.skip("node missing")
    with running_gateway([NODE, EXPRESS_WS], workers=1) as g:
        yield g


def plain_variant(src):
    """The example with its setup lines swapped back to plain ws/node:http:
    the lines marked `// plain ws` uncommented, the `// sluice` ones
    commented out. Nothing else changes."""
    out, swapped = [], 0
    for line in src.splitlines():
        if line.rstrip().endswith("// plain ws") and line.startswith("// "):
            line, swapped = line[3:], swapped + 1
        elif line.rstrip().endswith("// sluice") and not line.startswith("//"):
            line, swapped = "// " + line, swapped + 1
        out.append(line)
    assert swapped == 4, "the example should differ from plain ws in exactly two lines"
    return "\n".join(out) + "\n"


@pytest.fixture(scope="module")
def express_plain():
    """The plain variant on node:http + ws, on a free port, stopped by PID."""
    if NODE is None:
        pytest.skip("node missing")
    d = tempfile.mkdtemp(prefix="sluice-plain-")
    path = os.path.join(d, "express-ws-plain.js")
    with open(EXPRESS_WS) as f:
        src = plain_variant(f.read())
    # the relative require of express resolves from the example's directory
    src = src.replace("__dirname", json.dumps(os.path.dirname(EXPRESS_WS)))
    with open(path, "w") as f:
        f.write(src)
    port = free_port()
    proc = subprocess.Popen([NODE, path], cwd=d, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env=dict(os.environ, PORT=str(port),
                                     NODE_PATH=os.path.join(NODE_DIR, "node_modules")))
    try:
        if not wait_for(lambda: proc.poll() is None and _connectable(port), 10):
            pytest.fail(f"plain express-ws did not start: {proc.stderr.read1(4000) if proc.poll() is not None else ''}")

        class P:
            pass
        p = P()
        p.port = port
        yield p
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(5)
        shutil.rmtree(d, ignore_errors=True)


def express_checks(port):
    """The same checks against either server: HTTP routes, the WebSocket
    (hello, add over ws, the broadcast of an HTTP POST), a refused path."""
    status, headers, body = http_get(port, "/")
    assert status == 200 and body.startswith(b"todos:")
    status, todos = http_json(port, "/todos")
    assert status == 200 and todos[0]["title"] == "try sluice"

    async def body_():
        async with ws_connect(port, "/live?room=py") as ws:
            hello = json.loads(await ws.recv())
            assert hello["hello"] == "py" and hello["todos"] >= 1
            await ws.send(json.dumps({"op": "add", "title": "from ws"}))
            added = json.loads(await asyncio.wait_for(ws.recv(), T))["added"]
            assert added["title"] == "from ws"
            loop = asyncio.get_running_loop()
            st, todo = await loop.run_in_executor(None, http_json, port, "/todos", {"title": "from http"})
            assert st == 201
            pushed = json.loads(await asyncio.wait_for(ws.recv(), T))
            assert pushed == {"added": todo}
            await ws.send("not json")
            rcvd = await closed_by_server(ws)
            assert (rcvd.code, rcvd.reason) == (1003, "JSON only")
        resp = await refused(port, "/elsewhere")
        return resp.status_code
    refused_status = run(body_())
    titles = [t["title"] for t in http_json(port, "/todos")[1]]
    assert "from ws" in titles and "from http" in titles
    return refused_status


@need_node
def test_express_ws_behind_sluice(express_gw):
    assert express_checks(express_gw.port) == 400


@need_node
def test_express_ws_plain_same_answers(express_plain):
    """The same app with the two setup lines swapped back runs on node:http
    + ws and passes the same checks (the proof that only those lines
    changed)."""
    assert express_checks(express_plain.port) == 400


@need_node
def test_express_ws_node_client(express_gw):
    rep = node_client("express", express_gw.port)
    assert rep["hello"]["hello"] == "r1"
    assert rep["added"]["added"]["title"] == "over ws"
    assert any(t["title"] == "over ws" for t in rep["todos"])
    assert rep["close"]["code"] == 1000
    assert rep["refused"] == "status 400"


# ==========================================================================
# 5. examples/python/ws_chat.py

@pytest.fixture(scope="module")
def chat_py_gw():
    if not _module("fastapi") or not _module("msgpack"):
        pytest.skip("fastapi or msgpack missing")
    with running_gateway(py_worker("sluice.asgi", "--app-dir", ROOT, "examples.python.ws_chat:app"),
                         workers=1) as g:
        yield g


def test_python_chat_example(chat_py_gw):
    port = chat_py_gw.port
    status, headers, page = http_get(port, "/")
    assert status == 200 and b"new WebSocket" in page

    async def until(ws, want):
        while True:
            m = await asyncio.wait_for(ws.recv(), T)
            if m == want:
                return m

    async def body():
        async with ws_connect(port, "/ws/alice") as alice:
            await until(alice, "alice joined")
            async with ws_connect(port, "/ws/bob") as bob:
                await until(alice, "bob joined")
                await until(bob, "bob joined")
                await alice.send("hi bob")
                await until(bob, "alice: hi bob")
                await until(alice, "alice: hi bob")
                async with ws_connect(port, "/ws/alice") as dup:
                    rcvd = await closed_by_server(dup)
                    assert (rcvd.code, rcvd.reason) == (4009, "name taken")
                assert json.loads(http_get(port, "/who")[2]) == {"names": ["alice", "bob"]}
            await until(alice, "bob left")
        assert wait_for(lambda: json.loads(http_get(port, "/who")[2]) == {"names": []})
    run(body())
