"""The runtime-independent half of a worker: the native request/response
objects and the dispatch of protocol events to streams.

A runtime (asyncio, trio) supplies three things through :class:`Runtime`:
a *waiter* (something a handler can ``await`` until the dispatcher wakes it),
a way to start and cancel handler tasks, and a way to flush output. Everything
else — body buffering, credit, LIMIT, response framing, the drain logic — is
written once here, on top of :class:`sluice.protocol.WorkerConnection`.
"""

from __future__ import annotations

import logging
import sys
import time
from collections import deque
from typing import Any, Awaitable, Callable, Optional
from urllib.parse import parse_qsl, unquote

from . import protocol as P
from ._http import Headers, HeadersLike, Response, packed_headers, wire_headers

log = logging.getLogger("sluice")

# Requests an async worker (native API, ASGI) serves at once by default. The
# cap exists to bound memory, not CPU: a handler waiting on I/O costs a task
# and a few KiB, and the request bodies are bounded by the link's
# body_buffer (protocol.initial_window), not by this number. 4096 lets a
# worker with 50 ms handlers take ~80,000 req/s before it queues, far above
# what one Python process computes (uvicorn sets no limit by default, Granian
# allows thousands); the gateway's --max-connections (10,000) still bounds
# the whole.
DEFAULT_MAX_STREAMS = 4096

_ERROR_BODY = b"Internal Server Error\n"
# REQUEST version -> HTTP version as ASGI spells it ("2" for HTTP/2).
_HTTP_VERSION = {10: "1.0", 11: "1.1", 20: "2"}
_ERROR_HEADERS = P.pack_headers([[b"content-type", b"text/plain; charset=utf-8"],
                                 [b"content-length", b"%d" % len(_ERROR_BODY)]])


def requests_text(n: int) -> str:
    """``"1 open request"``, ``"3 open requests"`` (for the drain logs)."""
    return f"{n} open request" if n == 1 else f"{n} open requests"


class ClientDisconnected(Exception):
    """The HTTP client went away (or the gateway cancelled the stream):
    reading the body or sending the response is no longer possible."""


class WebSocketClosed(ClientDisconnected):
    """The WebSocket is closed (by either side, or the stream was
    cancelled): ``code`` and ``reason`` say how."""

    def __init__(self, code: int, reason: str = "") -> None:
        super().__init__(f"WebSocket closed ({code}{': ' + reason if reason else ''})")
        self.code = code
        self.reason = reason


class Waiter:
    """What a handler awaits for body data or credit. Runtimes subclass it.

    ``wake()`` is called by the dispatcher (same thread); ``wait()`` returns
    after the next ``wake()``. Callers always re-check their condition in a
    loop, so a spurious wake-up is harmless and a wake-up before ``wait()``
    is never needed (the condition is checked first)."""

    __slots__ = ()

    async def wait(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def wake(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError


class Runtime:
    """The services a runtime gives the core."""

    def waiter(self) -> Waiter:  # pragma: no cover - abstract
        raise NotImplementedError

    def flush(self) -> None:
        """Arrange for the connection's queued output to be written soon."""
        raise NotImplementedError  # pragma: no cover

    def start(self, req: "Request") -> None:
        """Run the application for a new request (a task)."""
        raise NotImplementedError  # pragma: no cover

    def cancel(self, req: "Request") -> None:
        """Cancel the request's handler task (client went away)."""
        raise NotImplementedError  # pragma: no cover

    def close(self) -> None:
        """Close the link (after the final flush)."""
        raise NotImplementedError  # pragma: no cover

    def abort(self) -> None:
        """Drop the link at once, unsent output included (a peer that
        reads nothing must not hold it open)."""
        self.close()

    async def wait_writable(self) -> None:
        """Return when the transport accepts more output (backpressure on
        the socket itself, beyond credit)."""
        return None


class Request:
    """One HTTP request, as the native API sees it.

    Attributes are computed lazily from the REQUEST frame, so a handler that
    only looks at the path pays only for the path.
    """

    __slots__ = ("_core", "_frame", "id", "_chunks", "_buffered", "_ended", "_cancelled", "_trailers",
                 "_waiter", "_credit_waiter", "_started", "_finished", "_granted", "_stream",
                 "_max_size", "_received", "_headers", "task", "ctx", "_path", "_query", "_done_waiter",
                 "ws")

    def __init__(self, core: "WorkerCore", frame: P.Request) -> None:
        self._core = core
        self._frame = frame
        self.id = frame.stream_id
        self._chunks: Optional[deque[bytes]] = None  # made on the first BODY (most requests have none)
        self._buffered = 0
        self._ended = frame.body == 0
        self._cancelled: Optional[int] = None
        self._trailers: Optional[list] = None
        self._waiter: Optional[Waiter] = None
        self._credit_waiter: Optional[Waiter] = None
        self._started = False       # RESPONSE sent
        self._finished = False      # response complete, or stream closed
        self._granted = frame.body == 0  # read window opened (start_reading)
        self._stream: Optional[RequestStream] = None
        self._max_size: Optional[int] = None
        self._received = 0
        self._headers: Optional[Headers] = None
        self._path: Optional[str] = None
        self._query: Optional[str] = None
        self.task: Any = None
        self.ctx: Any = None  # free slot for adapters
        self._done_waiter: Optional[Waiter] = None
        self.ws: Optional[WebSocket] = None  # set for a WebSocket stream (REQUEST body=3)

    # -- head ----------------------------------------------------------------
    @property
    def method(self) -> str:
        return self._frame.method.decode("latin-1")

    @property
    def target(self) -> bytes:
        """The request target exactly as sent (``/path?query``)."""
        return self._frame.target

    def _split(self) -> None:
        path, _, query = self._frame.target.partition(b"?")
        self._path = unquote(path.decode("latin-1"), "utf-8", "surrogateescape") if b"%" in path \
            else path.decode("latin-1")
        self._query = query.decode("latin-1")

    @property
    def path(self) -> str:
        """The path, percent-decoded (UTF-8)."""
        if self._path is None:
            self._split()
        return self._path  # type: ignore[return-value]

    @property
    def raw_path(self) -> bytes:
        return self._frame.target.partition(b"?")[0]

    @property
    def query(self) -> str:
        """The raw query string (after ``?``, not decoded)."""
        if self._query is None:
            self._split()
        return self._query  # type: ignore[return-value]

    @property
    def query_params(self) -> list[tuple[str, str]]:
        """The query string parsed into (name, value) pairs, in order."""
        return parse_qsl(self.query, keep_blank_values=True)

    @property
    def headers(self) -> Headers:
        h = self._headers
        if h is None:
            h = self._headers = Headers(self._frame.headers)
        return h

    @property
    def client(self) -> tuple[str, int]:
        """(host, port) of the HTTP client; ("", 0) when unknown."""
        return self._frame.client

    @property
    def server(self) -> tuple[str, int]:
        return self._frame.server

    @property
    def scheme(self) -> str:
        return self._frame.scheme

    @property
    def http_version(self) -> str:
        """``"1.0"``, ``"1.1"``, or ``"2"`` for a request that reached the
        gateway over HTTP/2."""
        return _HTTP_VERSION[self._frame.version]

    @property
    def has_body(self) -> bool:
        """Whether a request body follows (it may still be empty)."""
        return self._frame.body != 0

    @property
    def disconnected(self) -> bool:
        """True once the client went away (CANCEL) or the link was lost."""
        return self._cancelled is not None

    @property
    def cancel_reason(self) -> Optional[str]:
        c = self._cancelled
        return None if c is None else P.CANCEL_REASONS.get(c, "internal")

    @property
    def trailers(self) -> Optional[Headers]:
        """Request trailers, once the body has been read to its end."""
        return Headers(self._trailers) if self._trailers else None

    # -- body ------------------------------------------------------------------
    @property
    def stream(self) -> "RequestStream":
        s = self._stream
        if s is None:
            s = self._stream = RequestStream(self)
        return s

    async def body(self) -> bytes:
        """The whole request body (buffered in memory)."""
        parts = []
        while True:
            chunk = await self._read()
            if chunk is None:
                break
            parts.append(chunk)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    async def _read(self) -> Optional[bytes]:
        """Next body chunk, or None at the end of the body."""
        core = self._core
        if not self._granted:
            # the first read: body mode 2's first credit, and the stream's
            # full read window (a handler that never reads grants nothing)
            self._granted = True
            if core.conn.start_reading(self.id):
                core.runtime.flush()
        while True:
            if self._chunks:
                chunk = self._chunks.popleft()
                self._buffered -= len(chunk)
                if core.conn.is_open(self.id):
                    core.conn.consumed(self.id, len(chunk))
                    core.runtime.flush()
                return chunk
            if self._ended:
                core.conn.release(self.id)
                return None
            if self._cancelled is not None:
                raise ClientDisconnected(self.cancel_reason)
            w = self._waiter
            if w is None:
                w = self._waiter = core.runtime.waiter()
            await w.wait()

    async def _read_available(self) -> Optional[bytes]:
        """Every body byte buffered so far (waiting for at least one chunk),
        or None at the end of the body. For readers in other threads: one
        loop round trip per window instead of one per chunk."""
        first = await self._read()
        if first is None or not self._chunks:
            return first
        parts = [first]
        n = 0
        while self._chunks:
            c = self._chunks.popleft()
            parts.append(c)
            n += len(c)
        self._buffered -= n
        core = self._core
        if core.conn.is_open(self.id):
            core.conn.consumed(self.id, n)
            core.runtime.flush()
        return b"".join(parts)

    # -- response ---------------------------------------------------------------
    async def respond(self, status: int = 200, headers: HeadersLike = None,
                      content_type: Optional[str] = None) -> "ResponseStream":
        """Start a streamed response: sends the head now; then
        ``await resp.send(data)`` (waits for credit) and ``await resp.end()``."""
        if self._started or self._finished:
            raise RuntimeError("a response was already started for this request")
        if self._cancelled is not None:
            raise ClientDisconnected(self.cancel_reason)
        ph = packed_headers(headers, None if content_type is None else content_type.encode("latin-1"), None)
        self._started = True
        self._core.conn.respond(self.id, status, packed_headers=ph, body=True)
        self._core.runtime.flush()
        return ResponseStream(self)

    async def _send(self, data: bytes | bytearray | memoryview) -> None:
        core = self._core
        conn = core.conn
        sid = self.id
        n = len(data)
        off = 0
        mv = None
        while True:
            if self._cancelled is not None:
                raise ClientDisconnected(self.cancel_reason)
            if self._finished:
                raise RuntimeError("the response has already ended")
            if off:
                k = conn.send_body(sid, mv[off:])  # type: ignore[index]
            else:
                k = conn.send_body(sid, data)
            if k:
                core.runtime.flush()
            off += k
            if off >= n:
                break
            if mv is None:
                mv = memoryview(data)
            w = self._credit_waiter
            if w is None:
                w = self._credit_waiter = core.runtime.waiter()
            await w.wait()
        if core.paused:
            await core.runtime.wait_writable()

    def _end(self, trailers: HeadersLike = None) -> None:
        if self._finished:
            return
        if self._cancelled is not None:
            raise ClientDisconnected(self.cancel_reason)
        self._complete()
        self._core.conn.end(self.id, wire_headers(trailers) if trailers else None)
        self._core.runtime.flush()

    def _complete(self) -> None:
        self._finished = True
        w = self._done_waiter
        if w is not None:
            w.wake()

    async def start_raw(self, status: int, ph: bytes) -> None:
        """Send a response head with pre-packed headers (adapters)."""
        if self._cancelled is not None:
            raise ClientDisconnected(self.cancel_reason)
        self._started = True
        self._core.conn.respond(self.id, status, packed_headers=ph, body=True)
        self._core.runtime.flush()

    async def send_response_raw(self, status: int, ph: bytes, body: bytes) -> None:
        """A complete response with pre-packed headers (adapters)."""
        if self._cancelled is not None:
            return
        core = self._core
        self._started = True
        if core.conn.respond_full(self.id, status, ph, body):
            self._complete()
            core.runtime.flush()
            return
        if not body:
            self._complete()
            core.conn.respond(self.id, status, packed_headers=ph, body=False)
            core.runtime.flush()
            return
        core.conn.respond(self.id, status, packed_headers=ph, body=True)
        await self._send(body)
        self._end()

    async def send_response(self, resp: Response) -> None:
        """Send a complete :class:`Response` (what returning it does)."""
        if self._started or self._finished:
            raise RuntimeError("a response was already started for this request")
        if self._cancelled is not None:
            return
        core = self._core
        ph = resp.packed_headers()
        self._started = True
        if core.conn.respond_full(self.id, resp.status, ph, resp.body):
            self._complete()
            core.runtime.flush()
            return
        if not resp.body:
            self._complete()
            core.conn.respond(self.id, resp.status, packed_headers=ph, body=False)
            core.runtime.flush()
            return
        core.conn.respond(self.id, resp.status, packed_headers=ph, body=True)
        await self._send(resp.body)
        self._end()

    # -- dispatcher side ----------------------------------------------------------
    def _on_body(self, data: bytes) -> None:
        self._received += len(data)
        if data:
            c = self._chunks
            if c is None:
                c = self._chunks = deque()
            c.append(data)
            self._buffered += len(data)
        w = self._waiter
        if w is not None:
            w.wake()

    def _on_end(self, trailers: Optional[list]) -> None:
        self._ended = True
        self._trailers = trailers
        w = self._waiter
        if w is not None:
            w.wake()

    def _on_credit(self) -> None:
        w = self._credit_waiter
        if w is not None:
            w.wake()

    def _on_cancel(self, reason: int) -> None:
        if self._cancelled is None:
            self._cancelled = reason
        self._finished = True
        for w in (self._waiter, self._credit_waiter, self._done_waiter):
            if w is not None:
                w.wake()
        if self.ws is not None:
            self.ws._on_close(1006, "", cancelled=True)

    async def wait_disconnect(self) -> None:
        """Return once the client has gone away or the response is complete
        (what an ASGI ``receive()`` after the body waits for)."""
        while self._cancelled is None and not self._finished:
            w = self._done_waiter
            if w is None:
                w = self._done_waiter = self._core.runtime.waiter()
            await w.wait()

    def __repr__(self) -> str:
        return f"<Request {self.id} {self._frame.method!r} {self._frame.target!r}>"


class RequestStream:
    """``request.stream``: the request body as an async iterator of chunks.

    Set :attr:`max_size` before reading to change the body size limit the
    gateway enforces for this request (sent as LIMIT): raise it for an
    upload endpoint, lower it to refuse big bodies early (413)."""

    __slots__ = ("_req",)

    def __init__(self, req: Request) -> None:
        self._req = req

    @property
    def max_size(self) -> Optional[int]:
        return self._req._max_size

    @max_size.setter
    def max_size(self, n: Optional[int | float]) -> None:
        req = self._req
        if n is None or n == float("inf"):
            n = P.MAX_ID
        n = int(n)
        if not 0 <= n <= P.MAX_ID:
            raise ValueError("max_size must be in 0 .. 2^53-1")
        req._max_size = n
        core = req._core
        if not req._ended and core.conn.is_open(req.id):
            core.conn.limit(req.id, n)
            core.runtime.flush()

    def __aiter__(self) -> "RequestStream":
        return self

    async def __anext__(self) -> bytes:
        chunk = await self._req._read()
        if chunk is None:
            raise StopAsyncIteration
        return chunk

    async def read(self) -> bytes:
        """The next chunk, or b"" at the end of the body."""
        chunk = await self._req._read()
        return b"" if chunk is None else chunk

    @property
    def received(self) -> int:
        """Body bytes received from the gateway so far."""
        return self._req._received


class ResponseStream:
    """A response being streamed: returned by ``await request.respond()``."""

    __slots__ = ("_req",)

    def __init__(self, req: Request) -> None:
        self._req = req

    async def send(self, data: bytes | bytearray | memoryview | str) -> None:
        """Send body bytes; waits for credit from the gateway, so a slow
        client slows this coroutine down (backpressure)."""
        if isinstance(data, str):
            data = data.encode("utf-8")
        if data:
            await self._req._send(data)

    async def end(self, trailers: HeadersLike = None) -> None:
        """Complete the response (optional trailers)."""
        self._req._end(trailers)

    @property
    def ended(self) -> bool:
        return self._req._finished

    async def __aenter__(self) -> "ResponseStream":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        if not self._req._finished and exc[0] is None:
            self._req._end()


_FORBIDDEN = Response("Forbidden\n", status=403)


def _wake_all(waiters: list) -> None:
    for w in waiters:
        w.wake()


class WebSocket:
    """A WebSocket stream (REQUEST body=3), as the native API sees it: what
    a registered WebSocket handler receives.

    ``await ws.accept()`` (or refuse with an ordinary response: return a
    :class:`Response`, or ``await ws.refuse(response)``), then
    ``async for message in ws`` / ``await ws.receive()`` (``str`` for a text
    message, ``bytes`` for binary; always whole messages), ``await
    ws.send(str | bytes)`` and ``await ws.close(code, reason)``.

    Credit: a message is credited back to the gateway when the handler takes
    it, so a handler that does not read slows the client; the pieces of a
    message still being reassembled are credited at once while nothing
    waits to be read (a message larger than the window must be able to
    arrive; its size is bounded by the gateway's ``ws_max_message``).
    ``send()`` waits for credit, so a client that does not read slows the
    handler."""

    __slots__ = ("request", "_core", "_queue", "_parts", "_uncredited", "_accepted", "_closed",
                 "close_code", "close_reason", "_waiter", "_send_busy", "_send_waiters",
                 "subprotocol", "_subprotocols")

    def __init__(self, req: Request) -> None:
        self.request = req
        self._core = req._core
        # complete messages not yet taken by the app: (message, bytes not yet credited)
        self._queue: deque[tuple[Any, int]] = deque()
        self._parts: list[bytes] = []  # pieces of the message being reassembled
        self._uncredited = 0           # bytes of _parts not yet credited
        self._accepted = False
        self._closed = False
        #: the close code and reason once closed (by either side); 1006 when
        #: the stream was cancelled or the link lost
        self.close_code: Optional[int] = None
        self.close_reason: Optional[str] = None
        self._waiter: Optional[Waiter] = None
        self._send_busy = False
        self._send_waiters: list[Waiter] = []
        #: the subprotocol given to accept()
        self.subprotocol: Optional[str] = None
        self._subprotocols: Optional[list[str]] = None

    # -- request info ----------------------------------------------------------
    @property
    def path(self) -> str:
        return self.request.path

    @property
    def raw_path(self) -> bytes:
        return self.request.raw_path

    @property
    def query(self) -> str:
        return self.request.query

    @property
    def query_params(self) -> list[tuple[str, str]]:
        return self.request.query_params

    @property
    def headers(self) -> Headers:
        return self.request.headers

    @property
    def client(self) -> tuple[str, int]:
        return self.request.client

    @property
    def server(self) -> tuple[str, int]:
        return self.request.server

    @property
    def scheme(self) -> str:
        """``"ws"`` or ``"wss"`` (the client came over TLS)."""
        return "wss" if self.request.scheme == "https" else "ws"

    @property
    def http_version(self) -> str:
        return self.request.http_version

    @property
    def subprotocols(self) -> list[str]:
        """The subprotocols the client offered (``sec-websocket-protocol``),
        in order."""
        sp = self._subprotocols
        if sp is None:
            sp = self._subprotocols = parse_subprotocols(self.request._frame.headers)
        return sp

    @property
    def max_message(self) -> Optional[int]:
        """The largest message the gateway takes from the client on this
        WebSocket; set it (before or after accepting) to raise or lower the
        pool's ``ws_max_message`` (sent as LIMIT; a larger message gets close
        1009). None: the pool's setting."""
        return self.request._max_size

    @max_message.setter
    def max_message(self, n: int) -> None:
        self.request.stream.max_size = n

    @property
    def accepted(self) -> bool:
        return self._accepted

    @property
    def closed(self) -> bool:
        return self._closed

    # -- handshake ---------------------------------------------------------------
    async def accept(self, subprotocol: Optional[str] = None, headers: HeadersLike = None) -> None:
        """Accept the WebSocket (RESPONSE 101). ``subprotocol`` must be one
        the client offered (the gateway answers 502 otherwise)."""
        req = self.request
        if self._accepted or req._started:
            raise RuntimeError("the WebSocket was already accepted or refused")
        if self._closed or req._cancelled is not None:
            raise WebSocketClosed(self.close_code or 1006, self.close_reason or "")
        hl = [list(p) for p in Headers(headers).raw] if headers else []
        if subprotocol:
            hl.append([b"sec-websocket-protocol", subprotocol.encode("latin-1")])
        core = self._core
        core.conn.accept_websocket(req.id, packed_headers=P.pack_headers(hl))
        req._started = True
        self._accepted = True
        self.subprotocol = subprotocol or None
        # lend the stream its full read window from the link's budget
        core.conn.start_reading(req.id)
        req._granted = True
        core.runtime.flush()

    async def refuse(self, response: Optional[Response] = None) -> None:
        """Refuse the WebSocket with an ordinary HTTP response (default 403)."""
        if self._accepted:
            raise RuntimeError("the WebSocket was already accepted")
        await self.request.send_response(response if response is not None else _FORBIDDEN)

    # -- messages -------------------------------------------------------------------
    async def receive(self) -> Any:
        """The next whole message: ``str`` (text) or ``bytes`` (binary).
        Raises :class:`WebSocketClosed` once the WebSocket is closed and
        every message received before the close was taken."""
        while True:
            q = self._queue
            if q:
                msg, c = q.popleft()
                if not q and self._uncredited:
                    # the app caught up: the message being reassembled may flow
                    c += self._uncredited
                    self._uncredited = 0
                self._credit(c)
                return msg
            if self._closed:
                raise WebSocketClosed(self.close_code or 1006, self.close_reason or "")
            if not self._accepted:
                raise RuntimeError("accept the WebSocket before receiving")
            w = self._waiter
            if w is None:
                w = self._waiter = self._core.runtime.waiter()
            await w.wait()

    def __aiter__(self) -> "WebSocket":
        return self

    async def __anext__(self) -> Any:
        try:
            return await self.receive()
        except WebSocketClosed:
            raise StopAsyncIteration from None

    async def send(self, data: str | bytes | bytearray | memoryview) -> None:
        """Send one message (``str``: text, bytes-like: binary). Waits for
        credit from the gateway; messages from concurrent senders are sent
        one after the other, never interleaved."""
        if isinstance(data, str):
            text = True
            data = data.encode("utf-8")
        elif isinstance(data, (bytes, bytearray, memoryview)):
            text = False
        else:
            raise TypeError(f"WebSocket.send takes str or bytes, not {type(data).__name__}")
        if not self._accepted and not self._closed:
            raise RuntimeError("accept the WebSocket before sending")
        core = self._core
        if not self._send_busy and not self._closed:
            # the usual case: the whole message fits the window at once
            k = core.conn.send_message(self.request.id, data, text)
            core.runtime.flush()
            if k < len(data):
                await self._send_rest(data, text, k)
            elif core.paused:
                await core.runtime.wait_writable()
            return
        await self._send_rest(data, text, 0)

    async def _send_rest(self, data: bytes | bytearray | memoryview, text: bool, off: int) -> None:
        """Send data[off:] as the rest of one message (off > 0: its start
        is queued), in turn with other senders, as credit comes."""
        core = self._core
        while self._send_busy and off == 0:
            if self._closed:
                break
            w = core.runtime.waiter()
            self._send_waiters.append(w)
            await w.wait()
        if self._closed:
            raise WebSocketClosed(self.close_code or 1006, self.close_reason or "")
        self._send_busy = True
        req = self.request
        conn = core.conn
        sid = req.id
        n = len(data)
        try:
            mv = None if off == 0 else memoryview(data)
            while True:
                if mv is not None:  # the window is used up: wait for CREDIT
                    w = req._credit_waiter
                    if w is None:
                        w = req._credit_waiter = core.runtime.waiter()
                    await w.wait()
                    if self._closed:
                        raise WebSocketClosed(self.close_code or 1006, self.close_reason or "")
                k = conn.send_message(sid, data if mv is None else mv[off:], text)
                off += k
                if off >= n:
                    core.runtime.flush()
                    break
                if k:
                    core.runtime.flush()
                if mv is None:
                    mv = memoryview(data)
        except BaseException:
            if 0 < off < n and not self._closed:
                # cancelled mid-message (a timeout around send()): the rest
                # can never follow, and the next message must not be glued
                # to this one
                self._close(1011, "send interrupted")
            raise
        finally:
            self._send_busy = False
            if self._send_waiters:
                waiters, self._send_waiters = self._send_waiters, []
                _wake_all(waiters)
        if core.paused:
            await core.runtime.wait_writable()

    async def ping(self, data: bytes = b"") -> None:
        """Have the gateway ping the client (``data`` at most 125 bytes)."""
        if self._closed:
            raise WebSocketClosed(self.close_code or 1006, self.close_reason or "")
        if not self._accepted:
            raise RuntimeError("accept the WebSocket before pinging")
        self._core.conn.send_ping(self.request.id, data)
        self._core.runtime.flush()

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close the WebSocket (CLOSE with ``code``, 1000 .. 4999, and
        ``reason``). Before :meth:`accept` it refuses with 403. Closing a
        closed WebSocket does nothing."""
        if self._closed:
            return
        if not self._accepted:
            if not self.request._started:
                await self.refuse()
            return
        self._close(code, reason)

    def _close(self, code: int, reason: str) -> None:
        core = self._core
        if core.conn.is_open(self.request.id):
            core.conn.close_websocket(self.request.id, code, reason or None)
            core.runtime.flush()
        self._on_close(code, reason)
        self.request._complete()

    # -- dispatcher side -------------------------------------------------------------
    def _credit(self, n: int) -> None:
        if n:
            core = self._core
            if core.conn.consumed(self.request.id, n):  # batched: most calls queue nothing
                core.runtime.flush()

    def _on_message(self, flags: int, data: bytes) -> None:
        if not flags & ~P.MSG_TEXT and not self._parts:
            # the usual case: a whole message in one piece
            self._queue.append((data.decode("utf-8", "replace") if flags else data, self._uncredited + len(data)))
            self._uncredited = 0
            w = self._waiter
            if w is not None:
                w.wake()
            return
        if flags & (P.MSG_PING | P.MSG_PONG):
            return  # a pong for a ping we asked for: nothing to do
        self._parts.append(data)
        self._uncredited += len(data)
        if flags & P.MSG_MORE:
            if not self._queue:
                # nothing waits to be read: let the rest of this message come
                self._credit(self._uncredited)
                self._uncredited = 0
            return
        parts = self._parts
        self._parts = []
        raw = parts[0] if len(parts) == 1 else b"".join(parts)
        # the gateway validated text messages: decode errors cannot happen
        msg = raw.decode("utf-8", "replace") if flags & P.MSG_TEXT else raw
        self._queue.append((msg, self._uncredited))
        self._uncredited = 0
        w = self._waiter
        if w is not None:
            w.wake()

    def _on_close(self, code: int, reason: str, cancelled: bool = False) -> None:
        if self._closed:
            return
        self._closed = True
        self.close_code = code
        self.close_reason = reason or ""
        self._parts = []
        req = self.request
        for w in (self._waiter, req._credit_waiter, req._done_waiter):
            if w is not None:
                w.wake()
        if self._send_waiters:
            waiters, self._send_waiters = self._send_waiters, []
            _wake_all(waiters)

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open" if self._accepted else "connecting"
        return f"<WebSocket {self.request.id} {self.request._frame.target!r} {state}>"


def parse_subprotocols(headers: list) -> list[str]:
    """The subprotocols offered in ``sec-websocket-protocol`` fields (each a
    comma-separated list), in order."""
    out = []
    for k, v in headers:
        if k == b"sec-websocket-protocol":
            for p in v.decode("latin-1").split(","):
                p = p.strip()
                if p:
                    out.append(p)
    return out


Handler = Callable[[Request], Awaitable[Any]]
WebSocketHandler = Callable[[WebSocket], Awaitable[Any]]


def websocket_handler(app: Any, websocket: Any = None) -> Optional[WebSocketHandler]:
    """The WebSocket handler of a native app: ``websocket`` if it is one,
    else the app's ``websocket`` attribute (``app.websocket = handler``);
    ``websocket=False`` turns WebSockets off. None: the worker does not
    announce WebSockets, and the gateway never opens one on its link."""
    if websocket is False:
        return None
    if websocket is None or websocket is True:
        h = getattr(app, "websocket", None)
        if h is None and websocket is True:
            raise RuntimeError("--websocket: the app has no WebSocket handler (set app.websocket)")
        websocket = h
    if websocket is not None and not callable(websocket):
        raise RuntimeError(f"the WebSocket handler is not callable (it is a {type(websocket).__name__})")
    return websocket


def native_runner(app: Handler, ws: Optional[WebSocketHandler]) -> Callable[["WorkerCore", Request], Awaitable[None]]:
    """The per-stream coroutine of a native app (and its WebSocket handler)."""
    if ws is None:
        def run_request(core: WorkerCore, req: Request) -> Awaitable[None]:
            return core.run_handler(app, req)
    else:
        def run_request(core: WorkerCore, req: Request) -> Awaitable[None]:
            if req.ws is not None:
                return core.run_websocket(ws, req)
            return core.run_handler(app, req)
    return run_request


class WorkerCore:
    """Dispatches protocol events to requests; shared by all runtimes."""

    def __init__(self, conn: P.WorkerConnection, runtime: Runtime) -> None:
        self.conn = conn
        self.runtime = runtime
        self.requests: dict[int, Request] = {}
        self.draining = False
        self.retiring = False
        self.paused = False
        self.closed = False
        self.hello: Optional[P.Hello] = None
        self.served = 0
        # remote mode (_remote.py): the link's Target (told of HELLO and
        # ERROR auth) and the capacity shared by every link
        self.target: Any = None
        self.capacity: Any = None
        #: remote mode: when bytes last arrived (time.monotonic())
        self.arrived = 0.0

    def data_received(self, data: bytes) -> None:
        """Feed bytes from the gateway and dispatch the resulting events."""
        if self.target is not None:
            self.arrived = time.monotonic()
        try:
            events = self.conn.receive_data(data)
        except P.RemoteProtocolError as exc:
            self._dispatch(exc.frames)
            log.error("sluice: protocol error from the gateway: %s; closing the link", exc)
            self.runtime.flush()
            self.lost()
            self.runtime.close()
            return
        self._dispatch(events)

    def _dispatch(self, events: list) -> None:
        reqs = self.requests
        for ev in events:
            t = ev.type
            if t == 4:
                r = reqs.get(ev.stream_id)
                if r is not None:
                    r._on_body(ev.data)
                else:
                    # handler already finished: the bytes are consumed
                    self.conn.consumed(ev.stream_id, len(ev.data))
            elif t == 2:
                if self.retiring and not self.draining:
                    self.conn.reset(ev.stream_id, "refused")
                    continue
                cap = self.capacity
                if cap is not None and cap.full():
                    self.conn.reset(ev.stream_id, "overloaded")
                    continue
                req = Request(self, ev)
                if ev.body == 3:
                    req.ws = WebSocket(req)
                reqs[ev.stream_id] = req
                self.runtime.start(req)
            elif t == 15:
                r = reqs.get(ev.stream_id)
                if r is not None and r.ws is not None:
                    r.ws._on_message(ev.flags, ev.data)
                elif not ev.flags & (P.MSG_PING | P.MSG_PONG):
                    self.conn.consumed(ev.stream_id, len(ev.data))
            elif t == 16:
                r = reqs.get(ev.stream_id)
                if r is not None and r.ws is not None:
                    r.ws._on_close(ev.code, ev.reason or "")
            elif t == 5:
                r = reqs.get(ev.stream_id)
                if r is not None:
                    r._on_end(ev.trailers)
            elif t == 6:
                r = reqs.get(ev.stream_id)
                if r is not None:
                    r._on_credit()
            elif t == 7:
                r = reqs.get(ev.stream_id)
                if r is not None:
                    r._on_cancel(ev.reason)
                    self.runtime.cancel(r)
            elif t == 12:
                self.draining = True
                log.info("sluice: DRAIN received; finishing %s", requests_text(len(reqs)))
                self.maybe_close()
            elif t == 1:
                self.hello = ev
                if self.target is not None:
                    self.target.on_hello(self)
            elif t == 14:
                log.error("sluice: gateway reported error %s: %s", ev.error_name, ev.message)
                if self.target is not None and ev.error_name == "auth":
                    self.target.on_auth(self)
                self.lost()
                self.runtime.close()
        self.runtime.flush()

    def finished(self, req: Request) -> None:
        """A handler is done (whatever happened): forget the stream, RESET it
        if the response is incomplete, and close the link when draining."""
        if self.requests.pop(req.id, None) is None:
            return
        self.served += 1
        self.conn.release(req.id)
        req._finished = True
        w = req._done_waiter
        if w is not None:
            w.wake()
        if self.conn.is_open(req.id):
            self.conn.reset(req.id, "internal")
            self.runtime.flush()
        self.maybe_close()

    def maybe_close(self) -> None:
        if self.draining and not self.requests and not self.closed:
            self.runtime.flush()
            self.runtime.close()

    def retire(self, reason: str = "shutting down") -> None:
        """Graceful stop requested locally (SIGTERM): RETIRE, refuse new
        requests, finish the open ones; the gateway answers with DRAIN."""
        if self.retiring or self.closed:
            return
        self.retiring = True
        if self.draining:
            self.maybe_close()
            return
        self.conn.retire(reason)
        self.runtime.flush()

    def lost(self) -> None:
        """The link is gone: every handler is cancelled."""
        self.closed = True
        for r in list(self.requests.values()):
            r._on_cancel(8)
            self.runtime.cancel(r)

    async def run_handler(self, app: Handler, req: Request) -> None:
        """Run a native handler and turn its outcome into frames."""
        try:
            result = await app(req)
            if req._finished:
                return
            if type(result) is Response and not req._started:
                # the common case, inline: RESPONSE+BODY+END in one chunk
                req._started = True
                conn = self.conn
                if conn.respond_full(req.id, result.status, result.packed_headers(), result.body):
                    req._finished = True
                    self.runtime.flush()
                    return
                req._started = False
                await req.send_response(result)
            elif isinstance(result, Response):
                await req.send_response(result)
            elif result is None:
                if req._started:
                    req._end()
                else:
                    log.error("sluice: handler for %s %s returned no response",
                              req.method, req.target.decode("latin-1"))
                    self._error_response(req)
            elif isinstance(result, (bytes, str, bytearray, memoryview)):
                await req.send_response(Response(result))
            else:
                raise TypeError(f"handler returned {type(result).__name__}, expected Response")
        except ClientDisconnected:
            pass
        except Exception:
            log.error("sluice: error in handler for %s %s", req.method,
                      req.target.decode("latin-1"), exc_info=sys.exc_info())
            self._error_response(req)
        finally:
            self.finished(req)

    async def run_websocket(self, handler: WebSocketHandler, req: Request) -> None:
        """Run a native WebSocket handler and turn its outcome into frames:
        returned before accepting -> its Response, or 403; raised before
        accepting -> 500; after accepting, close 1000 if it returned, 1011
        if it raised."""
        ws = req.ws
        assert ws is not None
        try:
            result = await handler(ws)
            if ws._closed or req._cancelled is not None or req._finished:
                return
            if ws._accepted:
                ws._close(1000, "")
            elif req._started:
                req._end()  # a streamed refusal the handler did not end
            elif isinstance(result, Response):
                await req.send_response(result)
            elif isinstance(result, (bytes, str, bytearray, memoryview)):
                await req.send_response(Response(result))
            elif result is None:
                await req.send_response(_FORBIDDEN)
            else:
                raise TypeError(f"WebSocket handler returned {type(result).__name__}, expected Response or None")
        except ClientDisconnected:
            pass
        except Exception:
            log.error("sluice: error in WebSocket handler for %s", req.target.decode("latin-1"),
                      exc_info=sys.exc_info())
            if ws._accepted:
                if not ws._closed:
                    ws._close(1011, "")
            else:
                self._error_response(req)
        finally:
            self.finished(req)

    def _error_response(self, req: Request) -> None:
        """500 if nothing was sent yet; otherwise RESET (the gateway closes
        the client connection mid-response)."""
        if req._cancelled is not None or not self.conn.is_open(req.id):
            return
        if not req._started:
            req._started = req._finished = True
            self.conn.respond_full(req.id, 500, _ERROR_HEADERS, _ERROR_BODY)
        else:
            req._finished = True
            self.conn.reset(req.id, "internal", "handler error")
        self.runtime.flush()

