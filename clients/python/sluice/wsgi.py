"""WSGI adapter: ``python -m sluice.wsgi module:app``.

The link is served by the asyncio runtime in the main thread; each request's
WSGI call runs in a thread of a fixed pool, and the worker announces
``max_streams = threads`` so the gateway never hands it more requests than it
has threads (it queues the rest, or sends them to another worker).

``wsgi.input`` reads the body as it arrives: a read takes every chunk the
loop holds in one round trip, and credit goes back to the gateway only once
the application has read it, so a slow application slows the upload
(backpressure) and the worker never holds more than one window of body per
request. A streamed response (an iterable, or ``write()``) is queued to one
loop-side task per request that sends it in order, each chunk within the
gateway's credit; the application thread blocks only when more than
``_Sender.HIGH`` bytes wait (a slow client blocks it rather than growing a
buffer) and once at the end, not once per chunk. A list body (the common
case: Flask, Django) is joined in the thread and leaves as RESPONSE+BODY+END
in one write.
"""

from __future__ import annotations

import asyncio
import collections
import io
import logging
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterable, Optional
from urllib.parse import unquote_to_bytes

from ._asyncio import run, serve
from ._core import ClientDisconnected, Request, WorkerCore, _ERROR_BODY, _ERROR_HEADERS, _HTTP_VERSION
from ._http import packed_headers
from ._remote import max_streams_from

log = logging.getLogger("sluice")

_SPECIAL = {b"content-type": "CONTENT_TYPE", b"content-length": "CONTENT_LENGTH"}
_HEADER_KEYS: dict[bytes, str] = {}


def _environ_key(name: bytes) -> str:
    k = _HEADER_KEYS.get(name)
    if k is None:
        k = _SPECIAL.get(name) or "HTTP_" + name.decode("latin-1").upper().replace("-", "_")
        if len(_HEADER_KEYS) < 1024:
            _HEADER_KEYS[name] = k
    return k


class ClientGone(OSError):
    """Raised in the application thread when the client disconnected."""


class _Input(io.RawIOBase):
    """``wsgi.input``: the request body, read from the loop chunk by chunk."""

    def __init__(self, req: Request, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self._req = req
        self._loop = loop
        self._buf = bytearray()
        self._eof = not req.has_body

    def readable(self) -> bool:
        return True

    def _fill(self) -> bool:
        if self._eof:
            return False
        try:
            # Take everything buffered in one round trip: each hop to the loop
            # thread can cost a GIL switch interval (5 ms) on a busy core.
            chunk = asyncio.run_coroutine_threadsafe(self._req._read_available(), self._loop).result()
        except ClientDisconnected:
            raise ClientGone("client disconnected") from None
        if chunk is None:
            self._eof = True
            return False
        self._buf += chunk
        return True

    def read(self, size: Optional[int] = -1) -> bytes:  # type: ignore[override]
        if size is None or size < 0:
            while self._fill():
                pass
            data = bytes(self._buf)
            self._buf.clear()
            return data
        while len(self._buf) < size and self._fill():
            pass
        data = bytes(self._buf[:size])
        del self._buf[:size]
        return data

    def readinto(self, b: Any) -> int:
        data = self.read(len(b))
        b[:len(data)] = data
        return len(data)

    def readline(self, size: Optional[int] = -1) -> bytes:  # type: ignore[override]
        while True:
            i = self._buf.find(b"\n")
            if i >= 0:
                end = i + 1
                break
            if size is not None and 0 <= size <= len(self._buf):
                end = size
                break
            if not self._fill():
                end = len(self._buf)
                break
        if size is not None and 0 <= size < end:
            end = size
        data = bytes(self._buf[:end])
        del self._buf[:end]
        return data

    def readlines(self, hint: int = -1) -> list[bytes]:  # type: ignore[override]
        return list(iter(self.readline, b""))

    def __iter__(self):  # type: ignore[override]
        return iter(self.readline, b"")


class _Sender:
    """A streamed response, from the application thread to the loop: the
    head, body chunks and end are queued and sent in order by one task."""

    HIGH = 256 * 1024  # queued bytes above which the thread waits
    _END = ("end",)

    def __init__(self, req: Request, loop: asyncio.AbstractEventLoop) -> None:
        self._req = req
        self._loop = loop
        self._cond = threading.Condition()
        self._items: collections.deque = collections.deque()
        self._queued = 0
        self._active = False
        self._error: Optional[BaseException] = None

    # -- application thread --
    def put(self, item: Any, size: int = 0) -> None:
        with self._cond:
            self._raise()
            self._items.append(item)
            self._queued += size
            if not self._active:
                self._active = True
                self._loop.call_soon_threadsafe(self._start)
            while self._queued > self.HIGH and self._error is None:
                self._cond.wait()
            self._raise()

    def finish(self) -> None:
        """Queue the end and wait until everything went out."""
        self.put(self._END)
        self.settle()
        with self._cond:
            self._raise()

    def settle(self) -> None:
        """Wait until the queue is empty (errors are kept, not raised)."""
        with self._cond:
            while self._active:
                self._cond.wait()

    def _raise(self) -> None:
        e = self._error
        if e is None:
            return
        if isinstance(e, ClientDisconnected):
            raise ClientGone("client disconnected")
        raise RuntimeError(f"sending the response failed: {e!r}")

    # -- loop thread --
    def _start(self) -> None:
        self._loop.create_task(self._pump())

    async def _pump(self) -> None:
        req = self._req
        cond = self._cond
        while True:
            with cond:
                if not self._items or self._error is not None:
                    self._items.clear()
                    self._queued = 0
                    self._active = False
                    cond.notify_all()
                    return
                item = self._items.popleft()
            size = 0
            try:
                if type(item) is tuple:
                    if item is self._END:
                        req._end()
                    else:
                        await req.start_raw(item[0], item[1])
                else:
                    size = len(item)
                    await req._send(item)
            except BaseException as exc:  # reported to the thread
                with cond:
                    self._error = exc
                if not isinstance(exc, Exception):
                    raise
                continue
            if size:
                with cond:
                    self._queued -= size
                    cond.notify_all()


class WSGIRunner:
    """Runs WSGI calls in a thread pool for the asyncio runtime."""

    def __init__(self, app: Callable, threads: int) -> None:
        self.app = app
        self.threads = threads
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="sluice-wsgi")
        self.loop: Optional[asyncio.AbstractEventLoop] = None

    def environ(self, req: Request) -> dict:
        f = req._frame
        raw_path, _, query = f.target.partition(b"?")
        path = unquote_to_bytes(raw_path) if b"%" in raw_path else raw_path
        server = f.server
        env: dict[str, Any] = {
            "REQUEST_METHOD": f.method.decode("latin-1"),
            "SCRIPT_NAME": "",
            "PATH_INFO": path.decode("latin-1"),
            "QUERY_STRING": query.decode("latin-1"),
            "SERVER_NAME": server[0] or "localhost",
            "SERVER_PORT": str(server[1]),
            "SERVER_PROTOCOL": "HTTP/" + _HTTP_VERSION[f.version],  # HTTP/2 for version 20
            "REMOTE_ADDR": f.client[0],
            "REMOTE_PORT": str(f.client[1]),
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": f.scheme,
            "wsgi.input": _Input(req, self.loop),  # type: ignore[arg-type]
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": self.threads > 1,
            "wsgi.multiprocess": True,
            "wsgi.run_once": False,
            "wsgi.input_terminated": True,
        }
        for name, value in f.headers:
            key = _environ_key(name)
            v = value.decode("latin-1")
            if key in env and key.startswith("HTTP_"):
                env[key] += ("; " if key == "HTTP_COOKIE" else ",") + v
            else:
                env[key] = v
        return env

    async def run_request(self, core: WorkerCore, req: Request) -> None:
        loop = self.loop
        try:
            fut = loop.create_future()  # type: ignore[union-attr]
            self.pool.submit(self._call, core, req, fut)
            result = await fut
            if result is not None:
                status, ph, body = result
                if not req._started and req._cancelled is None:
                    await req.send_response_raw(status, ph, body)
        except ClientDisconnected:
            pass
        except Exception:
            log.error("sluice: error sending the WSGI response", exc_info=True)
        finally:
            core.finished(req)

    # -- in the application thread --------------------------------------------------
    def _call(self, core: WorkerCore, req: Request, fut: asyncio.Future) -> None:
        loop = self.loop
        assert loop is not None
        box: list = []  # the _Sender, once the response streams
        try:
            outcome = self._call_app(core, req, box)
        except BaseException as exc:  # reported from the loop thread
            outcome = None
            if box:
                box[0].settle()  # what was queued goes out before any 500
            if not isinstance(exc, ClientGone):
                log.error("sluice: exception in WSGI application for %s %s", req.method,
                          req.target.decode("latin-1"), exc_info=True)
                loop.call_soon_threadsafe(self._fail, core, req)
        loop.call_soon_threadsafe(_set_result, fut, outcome)

    def _call_app(self, core: WorkerCore, req: Request, box: list) -> Optional[tuple]:
        head: list = []
        sent: list = []  # non-empty once the head is queued
        loop = self.loop
        assert loop is not None

        def start_response(status: str, headers: list, exc_info: Any = None) -> Callable:
            if exc_info is not None:
                try:
                    if sent:
                        raise exc_info[1].with_traceback(exc_info[2])
                finally:
                    exc_info = None
            elif head:
                raise RuntimeError("start_response called twice without exc_info")
            head[:] = [int(status[:3]), headers]
            return write

        def write(data: bytes) -> None:
            if not head:
                raise RuntimeError("write() before start_response")
            if not sent:
                status, headers = head
                sent.append(True)
                box.append(_Sender(req, loop))  # type: ignore[arg-type]
                box[0].put((status, packed_headers(headers, None, None)))
            if data:
                box[0].put(data, len(data))

        env = self.environ(req)
        result: Iterable[bytes] = self.app(env, start_response)
        try:
            if type(result) is list or type(result) is tuple:
                if not head:
                    raise RuntimeError("WSGI application returned without calling start_response")
                if sent:  # write() was used: send the rest as a stream
                    for chunk in result:
                        write(chunk)
                    box[0].finish()
                    return None
                body = result[0] if len(result) == 1 else b"".join(result)
                status, headers = head
                has_len = any(n.lower() == "content-length" for n, _ in headers)
                ph = packed_headers(headers, None, None if has_len else len(body))
                return status, ph, body
            for chunk in result:
                if not head:
                    raise RuntimeError("WSGI application yielded before calling start_response")
                if chunk:
                    write(chunk)
            if not head:
                raise RuntimeError("WSGI application returned without calling start_response")
            if not sent:
                status, headers = head
                return status, packed_headers(headers, None, None), b""
            box[0].finish()
            return None
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()

    @staticmethod
    def _fail(core: WorkerCore, req: Request) -> None:
        if req._cancelled is None and core.conn.is_open(req.id) and not req._started:
            req._started = True
            core.conn.respond_full(req.id, 500, _ERROR_HEADERS, _ERROR_BODY)
            req._complete()
            core.runtime.flush()


def _set_result(fut: asyncio.Future, value: Any) -> None:
    if not fut.done():
        fut.set_result(value)


def run_wsgi(app: Callable, *, threads: Optional[int] = None, loop: str = "auto", **options: Any) -> int:
    """Serve a WSGI application with a pool of ``threads`` threads (default
    ``$SLUICE_MAX_STREAMS``, else 8)."""
    threads = max_streams_from(threads, 8)
    runner = WSGIRunner(app, threads)
    options["max_streams"] = threads

    async def main() -> int:
        runner.loop = asyncio.get_running_loop()
        try:
            return await serve(runner.run_request, **options)
        finally:
            runner.pool.shutdown(wait=False, cancel_futures=True)

    return run(main, loop)


def main() -> int:
    from .cli import main as cli_main
    return cli_main(interface="wsgi")


if __name__ == "__main__":
    sys.exit(main())
