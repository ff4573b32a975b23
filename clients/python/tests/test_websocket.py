"""WebSockets in the worker runtimes (native API on asyncio and trio, ASGI
with plain apps, Starlette and FastAPI), against the scripted fake gateway
of fakegw.py over a real Unix socket. Every frame the worker sends is
checked by a gateway-role protocol.Link (windows, stream states)."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from apps import ws_apps
from fakegw import FakeGateway, asgi, native_asyncio, native_trio
from sluice import Response, WebSocketClosed
from sluice import protocol as P

# -- apps ---------------------------------------------------------------------------

events: dict[str, list] = {}


def record(key: str, value) -> None:
    events.setdefault(key, []).append(value)


async def http_app(request):
    return Response("plain http\n")


async def ws_native(ws):
    """Native WebSocket handler, by path."""
    p = ws.path
    if p == "/echo":
        await ws.accept(subprotocol="chat" if "chat" in ws.subprotocols else None,
                        headers={"x-hello": "1"})
        async for msg in ws:
            record("echo", msg)
            await ws.send(msg)
        record("echo-closed", (ws.close_code, ws.close_reason))
        return
    if p == "/refuse":
        return Response("no entry\n", status=404)
    if p == "/none":
        return None
    if p == "/boom-before":
        raise ValueError("boom")
    if p == "/boom-after":
        await ws.accept()
        await ws.receive()
        raise ValueError("boom")
    if p == "/return-after":
        ws.max_message = 10 * 2**20
        await ws.accept()
        return
    if p == "/close":
        await ws.accept()
        msg = await ws.receive()
        await ws.close(4000, "bye " + msg)
        record("close", (ws.close_code, ws.close_reason))
        with pytest.raises(WebSocketClosed):
            await ws.send("late")
        return
    if p == "/send":
        await ws.accept()
        n = int(ws.query_params[0][1])
        await ws.send(b"x" * n)
        await ws.send("t" * n)
        await ws.send(b"")
        await ws.receive()
        return
    if p == "/slow":
        await ws.accept()
        gate = slow_gate
        while not gate.is_set():
            await asyncio.sleep(0.01)
        async for msg in ws:
            record("slow", len(msg))
        return
    if p == "/concurrent":
        await ws.accept()
        await asyncio.gather(ws.send(b"a" * 300), ws.send(b"b" * 300), ws.send("c" * 300))
        await ws.receive()
        return
    if p == "/interrupted":
        await ws.accept()
        try:
            await asyncio.wait_for(ws.send(b"i" * 300), 0.2)
        except asyncio.TimeoutError:
            record("interrupted", (ws.closed, ws.close_code))
        return
    if p == "/cancel":
        await ws.accept()
        try:
            await ws.receive()
        except asyncio.CancelledError:
            record("cancelled", True)
            raise
    if p == "/info":
        await ws.accept()
        await ws.send(repr((ws.scheme, ws.http_version, ws.query, ws.headers.get("x-a"), ws.client,
                            ws.subprotocols)))
        await ws.receive()
        return
    await ws.close()


http_app.websocket = ws_native  # type: ignore[attr-defined]
slow_gate = threading.Event()


@pytest.fixture(autouse=True)
def _reset():
    events.clear()
    ws_apps.events.clear()
    slow_gate.clear()
    yield


def wait_event(key: str, n: int = 1, timeout: float = 5.0) -> list:
    """events[key] once it has n entries (the handler records after the
    frames the test reads have left)."""
    deadline = time.monotonic() + timeout
    while len(events.get(key, [])) < n and time.monotonic() < deadline:
        time.sleep(0.01)
    return events.get(key, [])


def gw_native(**kw) -> FakeGateway:
    return FakeGateway(native_asyncio(http_app), **kw)


# -- HELLO ------------------------------------------------------------------------------


def test_hello_announces_websocket_only_with_a_handler():
    with gw_native() as gw:
        assert gw.hello.settings.get("websocket") is True
        assert gw.link.websocket

    async def plain(request):
        return Response("x")
    with FakeGateway(native_asyncio(plain)) as gw:
        assert "websocket" not in gw.hello.settings
        assert not gw.link.websocket
    with FakeGateway(native_asyncio(http_app, websocket=False)) as gw:
        assert "websocket" not in gw.hello.settings


def test_hello_asgi_on_by_default_and_switch_off():
    async def app(scope, receive, send):
        pass
    with FakeGateway(asgi(app)) as gw:
        assert gw.hello.settings.get("websocket") is True
    with FakeGateway(asgi(app, websocket=False)) as gw:
        assert "websocket" not in gw.hello.settings


def test_hello_wsgi_never():
    from sluice.wsgi import run_wsgi

    def app(environ, start_response):
        start_response("200 OK", [])
        return [b""]
    with FakeGateway(lambda path: run_wsgi(app, threads=2, loop="asyncio", socket=path,
                                           handle_signals=False)) as gw:
        assert "websocket" not in gw.hello.settings


# -- native asyncio ---------------------------------------------------------------------------


def test_native_accept_subprotocol_echo_and_client_close():
    with gw_native() as gw:
        sid = gw.open_ws(b"/echo", [[b"sec-websocket-protocol", b"superchat, chat"]])
        r = gw.recv_stream(sid)
        assert isinstance(r, P.Response) and r.status == 101 and r.body == 0
        assert [b"sec-websocket-protocol", b"chat"] in r.headers and [b"x-hello", b"1"] in r.headers
        gw.message(sid, "héllo")
        assert gw.recv_message(sid) == ("héllo", [6])
        gw.message(sid, b"\x00\xff")
        assert gw.recv_message(sid) == (b"\x00\xff", [2])
        # a message in pieces, split inside a UTF-8 sequence, is reassembled
        raw = "añb".encode()
        gw.send(P.Message(sid, 3, raw[:2]), P.Message(sid, 3, raw[2:3]), P.Message(sid, 1, raw[3:]))
        assert gw.recv_message(sid) == ("añb", [4])
        # an empty message, and a PONG (ignored) between the pieces of another
        gw.message(sid, b"")
        assert gw.recv_message(sid) == (b"", [0])
        gw.send(P.Message(sid, 2, b"ab"), P.Message(sid, P.MSG_PONG, b"p"), P.Message(sid, 0, b"c"))
        assert gw.recv_message(sid) == (b"abc", [3])
        gw.send(P.Close(sid, 1001, "going away"))
        assert gw.quiet() == []
        assert wait_event("echo-closed") == [(1001, "going away")]
        assert events["echo"] == ["héllo", b"\x00\xff", "añb", b"", b"abc"]
        # plain HTTP on the same link still works
        h = gw.open_http()
        assert gw.recv_stream(h).status == 200


def test_native_refusals():
    with gw_native() as gw:
        sid = gw.open_ws(b"/refuse")
        r = gw.recv_stream(sid)
        assert (r.status, r.body) == (404, 1)
        assert gw.recv_stream(sid).data == b"no entry\n"
        assert isinstance(gw.recv_stream(sid), P.End)
        sid = gw.open_ws(b"/none")
        r = gw.recv_stream(sid)
        assert r.status == 403
        sid = gw.open_ws(b"/boom-before")
        assert gw.recv_stream(sid).status == 500
        # close() before accept() refuses with 403
        sid = gw.open_ws(b"/other")
        assert gw.recv_stream(sid).status == 403


def test_native_handler_end_after_accept():
    with gw_native() as gw:
        sid = gw.open_ws(b"/return-after")
        assert gw.recv_stream(sid) == P.Limit(sid, 10 * 2**20)
        assert gw.recv_stream(sid).status == 101
        c = gw.recv_stream(sid)
        assert isinstance(c, P.Close) and c.code == 1000
        sid = gw.open_ws(b"/boom-after")
        assert gw.recv_stream(sid).status == 101
        gw.message(sid, "x")
        c = gw.recv_stream(sid)
        assert isinstance(c, P.Close) and c.code == 1011
        # frames in flight for the closed stream are ignored
        gw.link.streams.pop(sid, None)
        gw.send_raw(P.encode(P.Message(sid, 1, b"late")))
        assert gw.quiet() == []


def test_native_close_from_the_app():
    with gw_native() as gw:
        sid = gw.open_ws(b"/close")
        assert gw.recv_stream(sid).status == 101
        gw.message(sid, "now")
        c = gw.recv_stream(sid)
        assert isinstance(c, P.Close) and (c.code, c.reason) == (4000, "bye now")
        assert gw.quiet() == []
        assert wait_event("close") == [(4000, "bye now")]


def test_native_send_within_the_window():
    """The worker never exceeds the gateway's window (the fake gateway's
    Link raises flow_control otherwise) and goes on as credit comes."""
    with gw_native(window=100) as gw:
        sid = gw.open_ws(b"/send?n=250")
        assert gw.recv_stream(sid).status == 101
        f = gw.recv_stream(sid)
        assert (f.flags, len(f.data)) == (P.MSG_MORE, 100)
        assert gw.quiet(0.2) == []  # waits for credit
        gw.send(P.Credit(sid, 60))
        f = gw.recv_stream(sid)
        assert (f.flags, len(f.data)) == (P.MSG_MORE, 60)
        gw.send(P.Credit(sid, 1000))
        f = gw.recv_stream(sid)
        assert (f.flags, len(f.data)) == (0, 90)
        msg, pieces = gw.recv_message(sid, credit=False)
        assert msg == "t" * 250 and sum(pieces) == 250
        assert gw.recv_message(sid, credit=False) == (b"", [0])  # empty: no credit needed


def test_native_concurrent_sends_do_not_interleave():
    with gw_native(window=128) as gw:
        sid = gw.open_ws(b"/concurrent")
        assert gw.recv_stream(sid).status == 101
        got = sorted((gw.recv_message(sid)[0] for _ in range(3)), key=repr)
        assert got == sorted([b"a" * 300, b"b" * 300, "c" * 300], key=repr)


def test_native_credit_follows_consumption():
    """Messages the handler has not taken are not credited: a slow handler
    slows the client. Once it reads, credit comes back."""
    from sluice._asyncio import run_native
    serve = lambda path: run_native(http_app, loop="asyncio", socket=path, handle_signals=False,  # noqa: E731
                                    window=1000, body_buffer=None)
    with FakeGateway(serve) as gw:
        assert gw.hello.settings["window"] == 1000
        sid = gw.open_ws(b"/slow")
        assert gw.recv_stream(sid).status == 101
        for _ in range(10):
            gw.message(sid, b"m" * 100)
        assert gw.link.streams[sid].send_window == 0
        assert gw.quiet(0.3) == [] and gw.credited.get(sid, 0) == 0  # nothing read, nothing granted
        slow_gate.set()
        # granted as consumed, batched (at half the window, or at once when
        # the window is empty): never more than was consumed
        gw.wait_credit(sid, 500)
        assert 500 <= gw.credited[sid] <= 1000
        # a message larger than the window: pieces are credited as they are
        # reassembled (nothing waits to be read)
        sent = 0
        while sent < 5000:
            n = min(gw.link.streams[sid].send_window, 5000 - sent)
            if n:
                gw.send(P.Message(sid, P.MSG_MORE if sent + n < 5000 else 0, b"z" * n))
                sent += n
            else:
                gw.wait_credit(sid, gw.credited[sid] + 1)
        gw.send(P.Close(sid, 1000))
        deadline = time.monotonic() + 5
        while len(events.get("slow", [])) < 11 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert events["slow"] == [100] * 10 + [5000]


def test_native_send_cancelled_mid_message_closes_1011():
    with gw_native(window=100) as gw:
        sid = gw.open_ws(b"/interrupted")
        assert gw.recv_stream(sid).status == 101
        f = gw.recv_stream(sid)
        assert (f.flags, len(f.data)) == (P.MSG_MORE, 100)  # then no credit
        c = gw.recv_stream(sid)
        assert isinstance(c, P.Close) and (c.code, c.reason) == (1011, "send interrupted")
        assert wait_event("interrupted") == [(True, 1011)]


def test_native_cancel_cancels_the_handler():
    with gw_native() as gw:
        sid = gw.open_ws(b"/cancel")
        assert gw.recv_stream(sid).status == 101
        gw.send(P.Cancel(sid, 1))
        assert gw.quiet() == []
        assert wait_event("cancelled") == [True]


def test_native_request_info():
    with gw_native() as gw:
        sid = gw.open_ws(b"/info?a=1", [[b"x-a", b"b"], [b"sec-websocket-protocol", b"p1,p2"],
                                        [b"sec-websocket-protocol", b" p3 "]], scheme="https", version=20)
        assert gw.recv_stream(sid).status == 101
        msg, _ = gw.recv_message(sid)
        assert msg == repr(("wss", "2", "a=1", "b", ("127.0.0.1", 4242), ["p1", "p2", "p3"]))


# -- trio ---------------------------------------------------------------------------------------


def test_trio_native_echo_refuse_close():
    trio = pytest.importorskip("trio")

    async def ws(ws):
        if ws.path == "/refuse":
            return Response("nope", status=401)
        await ws.accept(subprotocol=ws.subprotocols[0] if ws.subprotocols else None)
        async for msg in ws:
            if msg == "close":
                await ws.close(4001, "asked")
                return
            await trio.sleep(0)
            await ws.send(msg)
        record("trio-closed", ws.close_code)

    async def app(request):
        return Response("x")

    with FakeGateway(native_trio(app, websocket=ws), window=64) as gw:
        assert gw.hello.settings.get("websocket") is True
        sid = gw.open_ws(b"/refuse")
        assert gw.recv_stream(sid).status == 401
        sid = gw.open_ws(b"/e", [[b"sec-websocket-protocol", b"v1"]])
        r = gw.recv_stream(sid)
        assert r.status == 101 and [b"sec-websocket-protocol", b"v1"] in r.headers
        gw.message(sid, b"q" * 200)
        msg, pieces = gw.recv_message(sid)
        assert msg == b"q" * 200 and max(pieces) <= 64
        gw.message(sid, "close")
        c = gw.recv_stream(sid)
        assert (c.code, c.reason) == (4001, "asked")
        sid = gw.open_ws(b"/e")
        assert gw.recv_stream(sid).status == 101
        gw.send(P.Close(sid, 1005))
        assert gw.quiet() == []
        assert wait_event("trio-closed") == [1005]


# -- ASGI ---------------------------------------------------------------------------------------


async def asgi_app(scope, receive, send):
    if scope["type"] != "websocket":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"http"})
        return
    p = scope["path"]
    record("scope", scope)
    assert await receive() == {"type": "websocket.connect"}
    if p.startswith("/echo"):
        await send({"type": "websocket.accept", "subprotocol": "v2", "headers": [(b"x-a", b"b")]})
        while True:
            m = await receive()
            record("recv", m)
            if m["type"] == "websocket.disconnect":
                try:
                    await send({"type": "websocket.send", "text": "late"})
                except OSError as exc:
                    record("send-after-close", type(exc).__name__)
                return
            if m.get("text") == "close":
                await send({"type": "websocket.close", "code": 4002, "reason": "as asked"})
                record("after-close", await receive())
                return
            await send({"type": "websocket.send", **{k: v for k, v in m.items() if k in ("bytes", "text")}})
    elif p == "/close-early":
        await send({"type": "websocket.close"})
    elif p == "/deny":
        await send({"type": "websocket.http.response.start", "status": 401,
                    "headers": [(b"www-authenticate", b"Basic")]})
        await send({"type": "websocket.http.response.body", "body": b"who ", "more_body": True})
        await send({"type": "websocket.http.response.body", "body": b"are you"})
    elif p == "/return-before":
        return
    elif p == "/raise-before":
        raise RuntimeError("boom")
    elif p == "/raise-after":
        await send({"type": "websocket.accept"})
        raise RuntimeError("boom")
    elif p == "/return-after":
        await send({"type": "websocket.accept"})


def test_asgi_scope_echo_and_disconnect():
    with FakeGateway(asgi(asgi_app)) as gw:
        sid = gw.open_ws(b"/echo%20x?a=1", [[b"sec-websocket-protocol", b"v1, v2"]], scheme="https")
        r = gw.recv_stream(sid)
        assert r.status == 101
        assert [b"sec-websocket-protocol", b"v2"] in r.headers and [b"x-a", b"b"] in r.headers
        scope = events["scope"][0]
        assert scope["type"] == "websocket" and scope["asgi"] == {"version": "3.0", "spec_version": "2.4"}
        assert (scope["http_version"], scope["scheme"], scope["path"], scope["raw_path"],
                scope["query_string"], scope["root_path"]) == ("1.1", "wss", "/echo x", b"/echo%20x", b"a=1", "")
        assert scope["client"] == ("127.0.0.1", 4242) and scope["server"] == ("127.0.0.1", 8080)
        assert scope["subprotocols"] == ["v1", "v2"]
        assert [b"sec-websocket-key", b"dGhlIHNhbXBsZSBub25jZQ=="] in scope["headers"]
        assert scope["state"] == {} and scope["extensions"] == {"websocket.http.response": {}}
        gw.message(sid, "hi")
        assert gw.recv_message(sid)[0] == "hi"
        gw.send(P.Message(sid, 2, b"a" * 10), P.Message(sid, 0, b"b"))
        assert gw.recv_message(sid)[0] == b"a" * 10 + b"b"
        gw.send(P.Close(sid, 1001, "bye"))
        assert gw.quiet() == []
        assert wait_event("send-after-close") == ["WebSocketSendError"]
        assert events["recv"] == [{"type": "websocket.receive", "text": "hi"},
                                  {"type": "websocket.receive", "bytes": b"a" * 10 + b"b"},
                                  {"type": "websocket.disconnect", "code": 1001, "reason": "bye"}]


def test_asgi_close_from_the_app():
    with FakeGateway(asgi(asgi_app)) as gw:
        sid = gw.open_ws(b"/echo")
        assert gw.recv_stream(sid).status == 101
        gw.message(sid, "close")
        c = gw.recv_stream(sid)
        assert isinstance(c, P.Close) and (c.code, c.reason) == (4002, "as asked")
        assert gw.quiet() == []
        assert wait_event("after-close") == [{"type": "websocket.disconnect", "code": 4002, "reason": "as asked"}]


@pytest.mark.parametrize("path,status", [("/close-early", 403), ("/return-before", 403),
                                         ("/raise-before", 500)])
def test_asgi_refusals(path, status):
    with FakeGateway(asgi(asgi_app)) as gw:
        sid = gw.open_ws(path.encode())
        r = gw.recv_stream(sid)
        assert r.status == status
        if r.body:
            while not isinstance(gw.recv_stream(sid), P.End):
                pass
        assert gw.quiet(0.1) == []


def test_asgi_denial_response():
    with FakeGateway(asgi(asgi_app)) as gw:
        sid = gw.open_ws(b"/deny")
        r = gw.recv_stream(sid)
        assert (r.status, r.body) == (401, 1) and [b"www-authenticate", b"Basic"] in r.headers
        body = b""
        while True:
            f = gw.recv_stream(sid)
            if isinstance(f, P.End):
                break
            body += f.data
        assert body == b"who are you"


@pytest.mark.parametrize("path,code", [("/raise-after", 1011), ("/return-after", 1000)])
def test_asgi_end_after_accept(path, code):
    with FakeGateway(asgi(asgi_app)) as gw:
        sid = gw.open_ws(path.encode())
        assert gw.recv_stream(sid).status == 101
        c = gw.recv_stream(sid)
        assert isinstance(c, P.Close) and c.code == code


# -- Starlette and FastAPI, unchanged (apps/ws_apps.py) ------------------------------------------------


def test_starlette_websocket_endpoints():
    pytest.importorskip("starlette")
    with FakeGateway(asgi(ws_apps.star_app())) as gw:
        sid = gw.open_ws(b"/echo", [[b"sec-websocket-protocol", b"echo"]])
        r = gw.recv_stream(sid)
        assert r.status == 101 and [b"sec-websocket-protocol", b"echo"] in r.headers
        gw.message(sid, "one")
        assert gw.recv_message(sid)[0] == "echo: one"
        gw.send(P.Close(sid, 1000))
        sid2 = gw.open_ws(b"/json")
        assert gw.recv_stream(sid2).status == 101
        gw.message(sid2, '{"a": 1}')
        assert gw.recv_message(sid2)[0] == '{"got":{"a":1}}'
        gw.message(sid2, '"bye"')
        assert gw.recv_message(sid2)[0] == '{"got":"bye"}'
        c = gw.recv_stream(sid2)
        assert isinstance(c, P.Close) and c.code == 4100
        sid3 = gw.open_ws(b"/denied")
        r = gw.recv_stream(sid3)
        assert r.status == 418
        assert gw.recv_stream(sid3).data == b"go away"
        sid4 = gw.open_ws(b"/nowhere")  # no route: Starlette closes before accepting -> 403
        assert gw.recv_stream(sid4).status == 403
        assert gw.recv_stream(sid4).data == b"Forbidden\n"
        assert isinstance(gw.recv_stream(sid4), P.End)
        assert gw.quiet(0.2) == []
        assert ws_apps.events["star-disconnect"] == [1000]


def test_fastapi_websocket_endpoint():
    pytest.importorskip("fastapi")
    with FakeGateway(asgi(ws_apps.fastapi_app()), window=1000) as gw:
        sid = gw.open_ws(b"/rooms/blue?token=sesame")
        assert gw.recv_stream(sid).status == 101
        gw.send(P.Message(sid, 2, b"x" * 3000), P.Message(sid, 0, b"y"))
        assert gw.recv_message(sid)[0] == "blue:3001"
        gw.send(P.Close(sid, 1006))
        sid = gw.open_ws(b"/rooms/red?token=nope")  # the dependency refuses before accepting
        assert gw.recv_stream(sid).status == 403
        h = gw.open_http()
        assert gw.recv_stream(h).status == 200
        assert gw.recv_stream(h).data == b'{"ok":true}'
        assert isinstance(gw.recv_stream(h), P.End)
        assert gw.quiet(0.2) == []
        assert ws_apps.events["fastapi-disconnect"] == [(1006, "")]


def test_asgi_uvloop():
    pytest.importorskip("uvloop")
    with FakeGateway(asgi(asgi_app, loop="uvloop")) as gw:
        sid = gw.open_ws(b"/echo")
        assert gw.recv_stream(sid).status == 101
        gw.message(sid, b"u" * 70000)
        assert gw.recv_message(sid)[0] == b"u" * 70000
        gw.send(P.Close(sid, 1000))
