"""asyncio runtime (uvloop when installed): the link as an asyncio.Protocol.

Why a Protocol and not streams: ``data_received`` hands us the bytes with no
intermediate buffer or task switch, and all output produced during one loop
iteration — by the dispatcher and by every handler that ran — leaves in a
single ``writelines`` call scheduled with ``call_soon`` (one syscall per
tick, however many streams are active).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket as _socket
import sys
from typing import Any, Awaitable, Callable, Optional

from . import _remote as R
from . import protocol as P
from ._core import (DEFAULT_MAX_STREAMS, Request, Runtime, Waiter, WorkerCore, native_runner, requests_text,
                    websocket_handler)

log = logging.getLogger("sluice")

StartFn = Callable[[WorkerCore, Request], Awaitable[None]]


_EAGER = sys.version_info >= (3, 12)


class _AioWaiter(Waiter):
    __slots__ = ("_loop", "_fut")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._fut: Optional[asyncio.Future] = None

    async def wait(self) -> None:
        fut = self._fut = self._loop.create_future()
        try:
            await fut
        finally:
            self._fut = None

    def wake(self) -> None:
        fut = self._fut
        if fut is not None and not fut.done():
            fut.set_result(None)


class AsyncioLink(asyncio.Protocol, Runtime):
    """One link to the gateway, driving a :class:`WorkerCore`."""

    def __init__(self, loop: asyncio.AbstractEventLoop, conn: P.WorkerConnection,
                 run_request: StartFn, grace: float = 30.0) -> None:
        self.loop = loop
        self.conn = conn
        self.core = WorkerCore(conn, self)
        self.run_request = run_request
        self.grace = grace
        self.transport: Optional[asyncio.Transport] = None
        self._flush_pending = False
        self._writable: Optional[asyncio.Future] = None
        self.done: asyncio.Future = loop.create_future()
        self._grace_timer: Optional[asyncio.TimerHandle] = None

    # -- Runtime ------------------------------------------------------------
    def waiter(self) -> Waiter:
        return _AioWaiter(self.loop)

    def flush(self) -> None:
        if not self._flush_pending:
            self._flush_pending = True
            self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_pending = False
        out = self.conn.chunks_to_send()
        t = self.transport
        if out and t is not None and not t.is_closing():
            if len(out) == 1:
                t.write(out[0])
            else:
                t.writelines(out)

    def start(self, req: Request) -> None:
        # No done-callback bookkeeping per task (it would cost a scheduled
        # callback per request): live tasks are found through core.requests.
        # Python 3.12+: an eager task runs the handler's first step right
        # here; a handler that answers without waiting never goes through
        # the loop's ready queue nor the set of live tasks (asyncio's
        # eager_task_factory, unless the loop has a task factory of its own).
        loop = self.loop
        if _EAGER and loop.get_task_factory() is None:
            req.task = asyncio.Task(self.run_request(self.core, req), loop=loop, eager_start=True)
        else:
            req.task = loop.create_task(self.run_request(self.core, req))

    @property
    def tasks(self) -> list:
        return [r.task for r in self.core.requests.values() if r.task is not None and not r.task.done()]

    def cancel(self, req: Request) -> None:
        task = req.task
        if task is not None and not task.done():
            task.cancel()
            # A task cancelled before its first step never runs its coroutine
            # at all, not even the ``finally`` that calls core.finished(): the
            # stream would stay counted as open and a DRAIN would wait for it
            # until the grace period ran out. finished() is idempotent.
            task.add_done_callback(lambda _t, req=req: self.core.finished(req))

    def close(self) -> None:
        self._flush()
        t = self.transport
        if t is not None and not t.is_closing():
            t.close()
        self.core.closed = True

    def abort(self) -> None:
        t = self.transport
        if t is not None and not t.is_closing():
            t.abort()  # close() would wait to send what is buffered (or TLS close_notify)
        self.core.closed = True

    async def wait_writable(self) -> None:
        while self.core.paused and self.transport is not None and not self.transport.is_closing():
            fut = self._writable
            if fut is None or fut.done():
                fut = self._writable = self.loop.create_future()
            await fut

    # -- asyncio.Protocol ------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._flush()  # our HELLO

    def data_received(self, data: bytes) -> None:
        self.core.data_received(data)

    def eof_received(self) -> Optional[bool]:
        try:
            self.conn.eof()
        except P.RemoteProtocolError as exc:
            log.error("sluice: link closed by the gateway mid-frame (%s)", exc)
        return False

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        self.core.lost()
        self.transport = None
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)
        if self._grace_timer is not None:
            self._grace_timer.cancel()
        if not self.done.done():
            self.done.set_result(None)

    def pause_writing(self) -> None:
        self.core.paused = True

    def resume_writing(self) -> None:
        self.core.paused = False
        fut = self._writable
        if fut is not None and not fut.done():
            fut.set_result(None)

    # -- shutdown --------------------------------------------------------------
    def shutdown(self) -> None:
        """SIGTERM: finish in-flight requests, then exit (RETIRE -> DRAIN)."""
        if self.core.retiring:
            log.warning("sluice: second signal; exiting now")
            self.close()
            return
        log.info("sluice: shutting down; finishing %s", requests_text(len(self.core.requests)))
        self.core.retire("shutting down")
        self._grace_timer = self.loop.call_later(self.grace, self._grace_over)

    def _grace_over(self) -> None:
        log.warning("sluice: grace period over; closing with %s", requests_text(len(self.core.requests)))
        self.close()


def parse_socket(spec: str) -> tuple[str, Any]:
    """``PATH``, ``unix:PATH`` or ``tcp:HOST:PORT`` -> (kind, address)."""
    if spec.startswith("tcp:"):
        host, _, port = spec[4:].rpartition(":")
        return "tcp", (host.strip("[]"), int(port))
    if spec.startswith("unix:"):
        spec = spec[5:]
    return "unix", spec


_SIGNALS = (signal.SIGTERM, signal.SIGINT)


async def serve(run_request: StartFn, *, socket: Optional[R.SocketSpec] = None,
                max_streams: Optional[int] = None, window: int = P.DEFAULT_WINDOW,
                body_buffer: Optional[int] = P.DEFAULT_BODY_BUFFER, grace: float = 30.0,
                on_ready: Optional[Callable[[AsyncioLink], Awaitable[None]]] = None,
                handle_signals: bool = True, lib: str = "sluice-python/0.1.0",
                websocket: bool = False, token: Optional[str] = None,
                tls_ca: Optional[str] = None, tls_cert: Optional[str] = None, tls_key: Optional[str] = None,
                tls_server_name: Optional[str] = None, resolve_interval: Optional[float] = None,
                resolver: Optional[R.Resolver] = None, shutdown: Optional[R.Shutdown] = None,
                rng: Any = None, ping_interval: Optional[float] = None) -> int:
    """Connect to the gateway and serve until the link closes. Returns an
    exit status (0 after a graceful drain). ``websocket``: announce that
    ``run_request`` takes WebSocket streams. ``socket`` (default
    ``$SLUICE_SOCKET``) may list several addresses (remote mode, see
    :mod:`sluice._remote`); ``token`` and the ``tls_*``, ``resolve_interval``
    and ``ping_interval`` options default to their ``SLUICE_*`` variables.
    ``shutdown``: a :class:`Shutdown` handle that acts like SIGTERM."""
    loop = asyncio.get_running_loop()
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
        remote = _AioRemote(loop, entries, settings, max_streams, grace, new_conn, run_request)
        return await remote.run(handle_signals, shutdown)
    link = AsyncioLink(loop, new_conn(), run_request, grace)
    await loop.create_unix_connection(lambda: link, entries[0].host)
    if handle_signals:
        for sig in _SIGNALS:
            loop.add_signal_handler(sig, link.shutdown)
    if shutdown is not None:
        shutdown._bind(lambda: loop.call_soon_threadsafe(link.shutdown))
    try:
        if on_ready is not None:
            await on_ready(link)
        await link.done
        await _end_tasks(link)
    finally:
        if shutdown is not None:
            shutdown._bind(None)
        if handle_signals:
            for sig in _SIGNALS:
                loop.remove_signal_handler(sig)
    return 0 if (link.core.draining or link.core.retiring) else 1


async def _end_tasks(link: AsyncioLink) -> None:
    """The link is gone: cancel the handlers still running, wait a little."""
    tasks = link.tasks
    if tasks:
        for t in tasks:
            t.cancel()
        await asyncio.wait(tasks, timeout=5)


async def _getaddrinfo(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=_socket.SOCK_STREAM)
    return [i[4][0] for i in infos]


class _AioRemote(R.Remote):
    """Remote mode on asyncio: one task per address, each connecting,
    serving its link and reconnecting; one task re-resolving host names."""

    def __init__(self, loop: asyncio.AbstractEventLoop, entries: list, settings: R.Settings,
                 max_streams: int, grace: float, new_conn: Callable[[], P.WorkerConnection],
                 run_request: StartFn) -> None:
        super().__init__(entries, settings, max_streams, grace)
        self.loop = loop
        self.new_conn = new_conn
        self.run_request = run_request
        self.resolve = settings.resolver or _getaddrinfo
        self.finished: asyncio.Future = loop.create_future()
        self._resolving: Optional[asyncio.Task] = None
        self._grace_timer: Optional[asyncio.TimerHandle] = None
        self._hello: dict[tuple, asyncio.Future] = {}

    async def run(self, handle_signals: bool, shutdown: Optional[R.Shutdown]) -> int:
        loop = self.loop
        if handle_signals:
            for sig in _SIGNALS:
                loop.add_signal_handler(sig, self.shutdown)
        if shutdown is not None:
            shutdown._bind(lambda: loop.call_soon_threadsafe(self.shutdown))
        try:
            for t in self.fixed():
                self._spawn(t)
            if self.names():
                await self._resolve_once()
                if not self.stopping:
                    self._resolving = loop.create_task(self._resolve_loop())
            await self.finished
        finally:
            if shutdown is not None:
                shutdown._bind(None)
            if handle_signals:
                for sig in _SIGNALS:
                    loop.remove_signal_handler(sig)
            if self._resolving is not None:
                self._resolving.cancel()
            if self._grace_timer is not None:
                self._grace_timer.cancel()
        return self.status

    # -- resolution ---------------------------------------------------------------
    async def _resolve_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.resolve_interval)
            await self._resolve_once()

    async def _resolve_once(self) -> None:
        for t in await self.resolve_all(self.resolve):
            self._spawn(t)

    # -- links ----------------------------------------------------------------------
    def _spawn(self, t: R.Target) -> None:
        t.handle = self.loop.create_task(self._target(t))

    async def _target(self, t: R.Target) -> None:
        try:
            while self.should_connect(t):
                wait = await self._attempt(t)
                if wait is None:
                    break
                await asyncio.sleep(wait)
        except asyncio.CancelledError:
            pass
        finally:
            self.target_done(t)

    async def _attempt(self, t: R.Target) -> Optional[float]:
        """One connection: connect, handshake, serve until it closes. Returns
        the wait before the next one (None: no next one)."""
        link = AsyncioLink(self.loop, self.new_conn(), self.run_request, self.grace)
        core = link.core
        core.target, core.capacity = t, self.capacity
        t.core = core
        self.capacity.cores.add(core)
        hello = self._hello[t.key] = self.loop.create_future()
        pinger: Optional[asyncio.Task] = None
        try:
            try:
                await asyncio.wait_for(self._open(t, link, hello), self.settings.handshake_timeout)
            except Exception as exc:
                link.abort()
                t.core = None
                return self.connect_failed(t, exc)
            if t.attached:
                pinger = self.loop.create_task(self._ping(R.Liveness(t, core, self.settings.ping_interval)))
            await link.done
            await _end_tasks(link)
            return self.link_ended(t)
        except asyncio.CancelledError:
            link.close()  # abandoned while connecting, or stopping in a hurry
            raise
        finally:
            if pinger is not None:
                pinger.cancel()
            self._hello.pop(t.key, None)
            self.capacity.cores.discard(core)

    @staticmethod
    async def _ping(live: R.Liveness) -> None:
        wait = live.step()
        while wait is not None:
            await asyncio.sleep(wait)
            wait = live.step()

    async def _open(self, t: R.Target, link: AsyncioLink, hello: asyncio.Future) -> None:
        e = t.entry
        if e.kind == "unix":
            await self.loop.create_unix_connection(lambda: link, t.addr)
        elif e.kind == "tls":
            await self.loop.create_connection(lambda: link, t.addr, e.port, ssl=self.ssl,
                                              server_hostname=t.server_name,
                                              ssl_handshake_timeout=self.settings.handshake_timeout)
        else:
            await self.loop.create_connection(lambda: link, t.addr, e.port)
        # the gateway's HELLO, or the link closing (ERROR, refused HELLO)
        await asyncio.wait([hello, link.done], return_when=asyncio.FIRST_COMPLETED)

    def _attached(self, t: R.Target) -> None:
        fut = self._hello.get(t.key)
        if fut is not None and not fut.done():
            fut.set_result(None)

    # -- stopping -----------------------------------------------------------------------
    def _stop_resolving(self) -> None:
        if self._resolving is not None:
            self._resolving.cancel()

    def _start_grace(self) -> None:
        self._grace_timer = self.loop.call_later(self.grace, self.grace_over)

    def _done(self) -> None:
        if not self.finished.done():
            self.finished.set_result(None)


def new_event_loop(loop: str = "auto") -> asyncio.AbstractEventLoop:
    """An event loop of the requested kind: ``uvloop`` when installed and
    asked for (or ``auto``), else the default asyncio loop."""
    if loop in ("auto", "uvloop"):
        try:
            import uvloop
        except ImportError:
            if loop == "uvloop":
                raise RuntimeError("--loop uvloop: uvloop is not installed (pip install 'sluice[uvloop]')")
        else:
            return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def run(main: Callable[[], Awaitable[int]], loop: str = "auto") -> int:
    """Run ``main()`` on a fresh loop of kind ``loop`` and return its result."""
    ev = new_event_loop(loop)
    asyncio.set_event_loop(ev)
    try:
        return ev.run_until_complete(main())
    finally:
        try:
            ev.run_until_complete(ev.shutdown_asyncgens())
        finally:
            asyncio.set_event_loop(None)
            ev.close()


def run_native(app: Callable[[Request], Awaitable[Any]], *, loop: str = "auto", websocket: Any = None,
               **options: Any) -> int:
    """Serve a native handler ``async def app(request)`` on asyncio, and
    its WebSocket handler (``websocket``, else ``app.websocket``)."""
    ws = websocket_handler(app, websocket)
    # the task runs run_handler itself: one coroutine less
    run_request = native_runner(app, ws)
    return run(lambda: serve(run_request, websocket=ws is not None, **options), loop)


__all__ = ["AsyncioLink", "serve", "run", "run_native", "new_event_loop", "parse_socket"]

if sys.platform == "win32":  # pragma: no cover
    raise ImportError("sluice workers need Unix sockets")
