"""The count of open requests (what a DRAIN waits for) stays exact however a
stream ends, in every runtime: driven in-process, without the gateway, by
feeding frames to the runtime's link object and reading what it writes."""

from __future__ import annotations

import asyncio
import time

import pytest

from sluice import Response
from sluice import protocol as P
from sluice._asyncio import AsyncioLink

GW_HELLO = P.encode(P.Hello(1, {"window": 1 << 20}))


def req(sid: int, target: bytes, body: int = 0) -> bytes:
    return P.encode(P.Request(sid, b"POST" if body else b"GET", target, 11, [[b"host", b"x"]],
                              ("127.0.0.1", 5), ("127.0.0.1", 80), "http", body))


def cancel(sid: int) -> bytes:
    return P.encode(P.Cancel(sid, 1))


class FakeTransport:
    def __init__(self) -> None:
        self.out = bytearray()
        self.closed = False

    def write(self, data: bytes) -> None:
        self.out += data

    def writelines(self, chunks) -> None:
        for c in chunks:
            self.out += c

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True


# Every way a stream can end, as (frames fed in one read, frames fed later).
SCENARIOS = [
    # REQUEST and CANCEL in one read: the handler's task is cancelled before
    # its first step, so its coroutine (and its finally) never runs at all
    (req(1, b"/sleep") + cancel(1), b""),
    (req(3, b"/hello"), b""),                                   # RESPONSE+END
    (req(5, b"/sleep"), cancel(5)),                             # CANCEL while waiting
    (req(7, b"/boom"), b""),                                    # exception: 500
    (req(9, b"/read", body=1) + P.encode(P.Body(9, b"abc")), cancel(9)),  # CANCEL mid-body
    (req(11, b"/stream"), cancel(11)),                          # CANCEL after the head
    (req(13, b"/none"), b""),                                   # no response: 500
    (req(15, b"/read", body=1) + cancel(15), b""),              # CANCEL before the body
    (req(17, b"/streamboom"), b""),                             # exception mid-response: RESET
]


async def native_app(request):
    p = request.path
    if p == "/hello":
        return Response("hi")
    if p == "/sleep":
        await asyncio.sleep(30)
    if p == "/boom":
        raise ValueError("boom")
    if p == "/read":
        await request.body()
        await asyncio.sleep(30)
    if p in ("/stream", "/streamboom"):
        resp = await request.respond(200)
        await resp.send(b"x")
        if p == "/streamboom":
            raise ValueError("boom")
        await asyncio.sleep(30)
    return None


async def asgi_app(scope, receive, send):
    p = scope["path"]
    if p == "/hello":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"hi"})
        return
    if p == "/sleep":
        await asyncio.sleep(30)
    if p == "/boom":
        raise ValueError("boom")
    if p == "/read":
        while (await receive()).get("more_body"):
            pass
        await asyncio.sleep(30)
    if p in ("/stream", "/streamboom"):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"x", "more_body": True})
        if p == "/streamboom":
            raise ValueError("boom")
        await asyncio.sleep(30)


def wsgi_app(environ, start_response):
    p = environ["PATH_INFO"]
    if p == "/boom":
        raise ValueError("boom")
    if p == "/read":
        environ["wsgi.input"].read()
    if p in ("/sleep", "/read"):
        time.sleep(0.3)
    if p == "/none":
        return []
    start_response("200 OK", [])
    if p in ("/stream", "/streamboom"):
        def gen():
            yield b"x"
            if p == "/streamboom":
                raise ValueError("boom")
            time.sleep(0.3)
            yield b"y"
        return gen()
    return [b"hi"]


async def drive(run_request, max_streams: int = 64) -> None:
    loop = asyncio.get_running_loop()
    conn = P.WorkerConnection(max_streams=max_streams, window=1000)
    link = AsyncioLink(loop, conn, run_request)
    t = FakeTransport()
    link.connection_made(t)  # type: ignore[arg-type]
    link.data_received(GW_HELLO)
    for first, _ in SCENARIOS:
        link.data_received(first)
    await asyncio.sleep(0.05)
    for _, later in SCENARIOS:
        if later:
            link.data_received(later)
    deadline = time.monotonic() + 5
    while link.core.requests and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    assert link.core.requests == {}, f"streams still counted as open: {sorted(link.core.requests)}"
    assert conn.open_streams == 0
    link.data_received(P.encode(P.Drain(1000)))
    assert t.closed, "DRAIN with nothing open closes the link at once"
    link.connection_lost(None)


def test_native_asyncio_count_exact():
    async def run_request(core, r):
        await core.run_handler(native_app, r)
    asyncio.run(drive(run_request))


def test_asgi_count_exact():
    from sluice.asgi import ASGIRunner
    runner = ASGIRunner(asgi_app, lifespan="off")
    asyncio.run(drive(runner.run_request))


def test_wsgi_count_exact():
    from sluice.wsgi import WSGIRunner
    runner = WSGIRunner(wsgi_app, threads=4)

    async def main():
        runner.loop = asyncio.get_running_loop()
        try:
            await drive(runner.run_request)
        finally:  # the loop keeps running while the threads finish
            await asyncio.get_running_loop().run_in_executor(None, runner.pool.shutdown)
    asyncio.run(main())


def test_trio_count_exact():
    trio = pytest.importorskip("trio")
    import trio.testing
    from sluice._trio import TrioLink

    async def main():
        ours, theirs = trio.testing.memory_stream_pair()
        conn = P.WorkerConnection(max_streams=64, window=1000)

        async def app(request):
            if request.path in ("/sleep", "/read", "/stream"):
                if request.path == "/read":
                    await request.body()
                if request.path == "/stream":
                    await (await request.respond(200)).send(b"x")
                await trio.sleep(30)
            if request.path == "/streamboom":
                await (await request.respond(200)).send(b"x")
                raise ValueError("boom")
            if request.path == "/boom":
                raise ValueError("boom")
            return Response("hi") if request.path == "/hello" else None

        async def run_request(core, r):
            await core.run_handler(app, r)

        link = TrioLink(ours, conn, run_request, grace=30)
        async with trio.open_nursery() as nursery:
            link.nursery = nursery
            nursery.start_soon(link.writer)
            nursery.start_soon(link.reader)
            link.flush()
            await theirs.send_all(GW_HELLO)
            for first, _ in SCENARIOS:
                await theirs.send_all(first)
            await trio.sleep(0.05)
            for _, later in SCENARIOS:
                if later:
                    await theirs.send_all(later)
            with trio.move_on_after(5):
                while link.core.requests:
                    await trio.sleep(0.02)
            assert link.core.requests == {}, sorted(link.core.requests)
            await theirs.send_all(P.encode(P.Drain(1000)))
            with trio.fail_after(5):
                while not link.core.closed:
                    await trio.sleep(0.01)
            await theirs.aclose()
    trio.run(main)
