"""trio runtime: the same native API, with structured cancellation.

Every handler runs in the link's nursery inside its own cancel scope: a
CANCEL from the gateway cancels that scope, and losing the link cancels the
nursery, so no handler outlives the link it was serving. One reader task
feeds the sans-I/O core; one writer task sends whatever output accumulated
(in one ``send_all`` per wake-up, however many streams produced it).
"""

from __future__ import annotations

import logging
import os
import signal
from typing import Any, Awaitable, Callable, Optional

import trio

from . import protocol as P
from ._asyncio import parse_socket
from ._core import (DEFAULT_MAX_STREAMS, Request, Runtime, Waiter, WorkerCore, native_runner, requests_text,
                    websocket_handler)

log = logging.getLogger("sluice")

StartFn = Callable[[WorkerCore, Request], Awaitable[None]]
_HIGH_WATER = 1 << 20


class _TrioWaiter(Waiter):
    __slots__ = ("_ev",)

    def __init__(self) -> None:
        self._ev: Optional[trio.Event] = None

    async def wait(self) -> None:
        ev = self._ev = trio.Event()
        try:
            await ev.wait()
        finally:
            self._ev = None

    def wake(self) -> None:
        ev = self._ev
        if ev is not None:
            ev.set()


class TrioLink(Runtime):
    """One link to the gateway on trio."""

    def __init__(self, stream: trio.abc.Stream, conn: P.WorkerConnection, run_request: StartFn,
                 grace: float) -> None:
        self.stream = stream
        self.conn = conn
        self.core = WorkerCore(conn, self)
        self.run_request = run_request
        self.grace = grace
        self.nursery: Optional[trio.Nursery] = None
        self._wake = trio.Event()
        self._closing = False
        self._writing = 0
        self._written = trio.Event()
        self.retired_at: Optional[float] = None

    # -- Runtime -------------------------------------------------------------
    def waiter(self) -> Waiter:
        return _TrioWaiter()

    def flush(self) -> None:
        self._wake.set()

    def start(self, req: Request) -> None:
        assert self.nursery is not None
        scope = trio.CancelScope()
        req.task = scope
        self.nursery.start_soon(self._run, req, scope)

    async def _run(self, req: Request, scope: trio.CancelScope) -> None:
        with scope:
            await self.run_request(self.core, req)
        if scope.cancelled_caught and req.id in self.core.requests:
            self.core.finished(req)

    def cancel(self, req: Request) -> None:
        scope = req.task
        if scope is not None:
            scope.cancel()

    def close(self) -> None:
        self._closing = True
        self.core.closed = True
        self._wake.set()

    async def wait_writable(self) -> None:
        while self._writing > _HIGH_WATER and not self._closing:
            await self._written.wait()

    # -- tasks -----------------------------------------------------------------
    async def reader(self) -> None:
        core = self.core
        try:
            while not self._closing:
                data = await self.stream.receive_some(256 * 1024)
                if not data:
                    try:
                        self.conn.eof()
                    except P.RemoteProtocolError as exc:
                        log.error("sluice: link closed by the gateway mid-frame (%s)", exc)
                    break
                core.data_received(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        core.lost()
        self.close()

    async def writer(self) -> None:
        try:
            while True:
                await self._wake.wait()
                self._wake = trio.Event()
                out = self.conn.chunks_to_send()
                if out:
                    data = out[0] if len(out) == 1 else b"".join(out)
                    self._writing = len(data)
                    try:
                        await self.stream.send_all(data)
                    except (trio.BrokenResourceError, trio.ClosedResourceError):
                        self._closing = True
                    self._writing = 0
                    ev, self._written = self._written, trio.Event()
                    ev.set()
                if self._closing:
                    break
        finally:
            self._closing = True
            ev, self._written = self._written, trio.Event()
            ev.set()
            self.core.lost()
            with trio.CancelScope(shield=True):
                await self.stream.aclose()
            assert self.nursery is not None
            self.nursery.cancel_scope.cancel()

    async def signals(self) -> None:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as sigs:
            async for _ in sigs:
                if self.core.retiring:
                    log.warning("sluice: second signal; exiting now")
                    self.close()
                    return
                log.info("sluice: shutting down; finishing %s", requests_text(len(self.core.requests)))
                self.core.retire("shutting down")
                self.nursery.start_soon(self._grace_timer)  # type: ignore[union-attr]

    async def _grace_timer(self) -> None:
        await trio.sleep(self.grace)
        log.warning("sluice: grace period over; closing with %s", requests_text(len(self.core.requests)))
        self.close()


async def serve(run_request: StartFn, *, socket: Optional[str] = None,
                max_streams: int = DEFAULT_MAX_STREAMS, window: int = P.DEFAULT_WINDOW,
                body_buffer: Optional[int] = P.DEFAULT_BODY_BUFFER, grace: float = 30.0,
                handle_signals: bool = True, lib: str = "sluice-python/0.1.0",
                websocket: bool = False) -> int:
    """Connect to the gateway and serve until the link closes."""
    spec = socket or os.environ.get("SLUICE_SOCKET")
    if not spec:
        raise RuntimeError("no gateway socket: set SLUICE_SOCKET (the gateway does) or pass --socket")
    kind, addr = parse_socket(spec)
    if kind == "unix":
        stream: trio.abc.Stream = await trio.open_unix_socket(addr)
    else:
        stream = await trio.open_tcp_stream(addr[0], addr[1])
    conn = P.WorkerConnection(max_streams=max_streams, window=window, lib=lib,
                              token=os.environ.get("SLUICE_TOKEN") or None, body_buffer=body_buffer,
                              websocket=websocket)
    link = TrioLink(stream, conn, run_request, grace)
    async with trio.open_nursery() as nursery:
        link.nursery = nursery
        nursery.start_soon(link.writer)
        nursery.start_soon(link.reader)
        if handle_signals:
            nursery.start_soon(link.signals)
        link.flush()  # our HELLO
    return 0 if (link.core.draining or link.core.retiring) else 1


def run_native(app: Callable[[Request], Awaitable[Any]], websocket: Any = None, **options: Any) -> int:
    """Serve a native handler ``async def app(request)`` on trio, and its
    WebSocket handler (``websocket``, else ``app.websocket``)."""
    ws = websocket_handler(app, websocket)
    run_request = native_runner(app, ws)
    return trio.run(lambda: serve(run_request, websocket=ws is not None, **options))
