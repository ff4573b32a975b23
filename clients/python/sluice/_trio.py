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

from . import _remote as R
from . import protocol as P
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
        self._aborted = False
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

    def abort(self) -> None:
        self._aborted = True
        self.close()
        if self.nursery is not None:
            self.nursery.cancel_scope.cancel()  # the writer may be stuck in send_all

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
            if self._aborted:
                await trio.aclose_forcefully(self.stream)  # no TLS close_notify
            else:
                with trio.CancelScope(shield=True):
                    await self.stream.aclose()
            assert self.nursery is not None
            self.nursery.cancel_scope.cancel()

    async def signals(self) -> None:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as sigs:
            async for _ in sigs:
                self.shutdown()
                if self._closing:
                    return

    def shutdown(self) -> None:
        """SIGTERM: finish in-flight requests, then exit (RETIRE -> DRAIN);
        a second call closes the link now."""
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


async def serve(run_request: StartFn, *, socket: Optional[R.SocketSpec] = None,
                max_streams: Optional[int] = None, window: int = P.DEFAULT_WINDOW,
                body_buffer: Optional[int] = P.DEFAULT_BODY_BUFFER, grace: float = 30.0,
                handle_signals: bool = True, lib: str = "sluice-python/0.1.0",
                websocket: bool = False, token: Optional[str] = None,
                tls_ca: Optional[str] = None, tls_cert: Optional[str] = None, tls_key: Optional[str] = None,
                tls_server_name: Optional[str] = None, resolve_interval: Optional[float] = None,
                resolver: Optional[R.Resolver] = None, shutdown: Optional[R.Shutdown] = None,
                rng: Any = None, ping_interval: Optional[float] = None) -> int:
    """Connect to the gateway and serve until the link closes (the options
    are those of the asyncio ``serve``)."""
    spec = socket or os.environ.get("SLUICE_SOCKET")
    if not spec:
        raise RuntimeError("no gateway socket: set SLUICE_SOCKET (the gateway does) or pass --socket")
    entries = R.parse_addresses(spec)
    max_streams = R.max_streams_from(max_streams, DEFAULT_MAX_STREAMS)
    settings = R.Settings.from_options(token, tls_ca, tls_cert, tls_key, tls_server_name, resolve_interval,
                                       resolver, rng, ping_interval=ping_interval)

    def new_conn() -> P.WorkerConnection:
        return P.WorkerConnection(max_streams=max_streams, window=window, lib=lib, token=settings.token,
                                  body_buffer=body_buffer, websocket=websocket)

    if R.is_remote(entries):
        remote = _TrioRemote(entries, settings, max_streams, grace, new_conn, run_request)
        return await remote.run(handle_signals, shutdown)
    stream: trio.abc.Stream = await trio.open_unix_socket(entries[0].host)
    link = TrioLink(stream, new_conn(), run_request, grace)
    try:
        async with trio.open_nursery() as nursery:
            link.nursery = nursery
            nursery.start_soon(link.writer)
            nursery.start_soon(link.reader)
            if handle_signals:
                nursery.start_soon(link.signals)
            if shutdown is not None:
                token_ = trio.lowlevel.current_trio_token()
                shutdown._bind(lambda: token_.run_sync_soon(link.shutdown))
            link.flush()  # our HELLO
    finally:
        if shutdown is not None:
            shutdown._bind(None)
    return 0 if (link.core.draining or link.core.retiring) else 1


async def _getaddrinfo(host: str, port: int) -> list[str]:
    infos = await trio.socket.getaddrinfo(host, port, type=trio.socket.SOCK_STREAM)
    return [i[4][0] for i in infos]


class _TrioRemote(R.Remote):
    """Remote mode on trio: one task (and cancel scope) per address, each
    connecting, serving its link and reconnecting; one task re-resolving."""

    def __init__(self, entries: list, settings: R.Settings, max_streams: int, grace: float,
                 new_conn: Callable[[], P.WorkerConnection], run_request: StartFn) -> None:
        super().__init__(entries, settings, max_streams, grace)
        self.new_conn = new_conn
        self.run_request = run_request
        self.resolve = settings.resolver or _getaddrinfo
        self.nursery: Optional[trio.Nursery] = None
        self._resolving = trio.CancelScope()
        self._hello: dict[tuple, trio.Event] = {}

    async def run(self, handle_signals: bool, shutdown: Optional[R.Shutdown]) -> int:
        try:
            async with trio.open_nursery() as nursery:
                self.nursery = nursery
                if handle_signals:
                    nursery.start_soon(self._signals)
                if shutdown is not None:
                    token = trio.lowlevel.current_trio_token()
                    shutdown._bind(lambda: token.run_sync_soon(self.shutdown))
                for t in self.fixed():
                    self._spawn(t)
                if self.names():
                    nursery.start_soon(self._resolve_loop)
        finally:
            if shutdown is not None:
                shutdown._bind(None)
        return self.status

    async def _signals(self) -> None:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as sigs:
            async for _ in sigs:
                self.shutdown()

    # -- resolution ---------------------------------------------------------------
    async def _resolve_loop(self) -> None:
        with self._resolving:
            while True:
                await self._resolve_once()
                await trio.sleep(self.settings.resolve_interval)

    async def _resolve_once(self) -> None:
        for t in await self.resolve_all(self.resolve):
            self._spawn(t)

    # -- links ----------------------------------------------------------------------
    def _spawn(self, t: R.Target) -> None:
        assert self.nursery is not None
        t.handle = trio.CancelScope()
        self.nursery.start_soon(self._target, t, t.handle)

    async def _target(self, t: R.Target, scope: trio.CancelScope) -> None:
        try:
            with scope:
                while self.should_connect(t):
                    wait = await self._attempt(t)
                    if wait is None:
                        break
                    await trio.sleep(wait)
        finally:
            self.target_done(t)

    async def _attempt(self, t: R.Target) -> Optional[float]:
        """One connection: connect, handshake, serve until it closes. Returns
        the wait before the next one (None: no next one)."""
        e = t.entry
        stream: Optional[trio.abc.Stream] = None
        # connect, TLS and HELLO share one deadline
        deadline = trio.current_time() + self.settings.handshake_timeout
        try:
            with trio.fail_at(deadline):
                if e.kind == "unix":
                    stream = await trio.open_unix_socket(t.addr)
                else:
                    stream = await trio.open_tcp_stream(t.addr, e.port)
                    if e.kind == "tls":
                        stream = trio.SSLStream(stream, self.ssl, server_hostname=t.server_name)
                        await stream.do_handshake()
        except (OSError, trio.TooSlowError, trio.BrokenResourceError) as exc:
            if stream is not None:
                await trio.aclose_forcefully(stream)
            return self.connect_failed(t, exc.__cause__ or exc)
        link = TrioLink(stream, self.new_conn(), self.run_request, self.grace)
        core = link.core
        core.target, core.capacity = t, self.capacity
        t.core = core
        self.capacity.cores.add(core)
        hello = self._hello[t.key] = trio.Event()
        timed_out: list = []
        try:
            async with trio.open_nursery() as nursery:
                link.nursery = nursery
                nursery.start_soon(link.writer)
                nursery.start_soon(link.reader)
                nursery.start_soon(self._watch, t, link, hello, deadline, timed_out)
                link.flush()  # our HELLO
        finally:
            self._hello.pop(t.key, None)
            self.capacity.cores.discard(core)
        if timed_out:
            t.core = None
            return self.connect_failed(t, timed_out[0])
        return self.link_ended(t)

    async def _watch(self, t: R.Target, link: TrioLink, hello: trio.Event, deadline: float,
                     timed_out: list) -> None:
        """The gateway's HELLO by the deadline, then PINGs while the link
        lives (the link's end cancels this task)."""
        with trio.move_on_at(deadline):
            await hello.wait()
        if not t.attached:
            timed_out.append(trio.TooSlowError())
            link.abort()
            return
        live = R.Liveness(t, link.core, self.settings.ping_interval)
        wait = live.step()
        while wait is not None:
            await trio.sleep(wait)
            wait = live.step()

    def _attached(self, t: R.Target) -> None:
        ev = self._hello.get(t.key)
        if ev is not None:
            ev.set()

    # -- stopping -----------------------------------------------------------------------
    def _stop_resolving(self) -> None:
        self._resolving.cancel()

    def _start_grace(self) -> None:
        assert self.nursery is not None
        self.nursery.start_soon(self._grace)

    async def _grace(self) -> None:
        await trio.sleep(self.grace)
        self.grace_over()

    def _done(self) -> None:
        if self.nursery is not None:
            self.nursery.cancel_scope.cancel()


def run_native(app: Callable[[Request], Awaitable[Any]], websocket: Any = None, **options: Any) -> int:
    """Serve a native handler ``async def app(request)`` on trio, and its
    WebSocket handler (``websocket``, else ``app.websocket``)."""
    ws = websocket_handler(app, websocket)
    run_request = native_runner(app, ws)
    return trio.run(lambda: serve(run_request, websocket=ws is not None, **options))
