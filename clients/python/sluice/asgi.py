"""ASGI 3 adapter: ``python -m sluice.asgi module:app``.

Each stream becomes one ASGI ``http`` call. ``receive()`` hands out the
request body chunk by chunk as it is read (credit is returned to the gateway
only after the application has taken a chunk, so a slow application slows
the upload), then blocks until the client disconnects or the response is
complete, and answers ``http.disconnect``. ``send()`` of a body waits for
credit, so a slow client slows the application's ``send()`` down.

Like uvicorn, a disconnect does not cancel the application task: it is told
through ``receive()`` (``http.disconnect``) and later ``send()`` calls are
ignored. A response head and a final body with ``more_body=False`` leave as
RESPONSE+BODY+END in a single write. The lifespan protocol runs before the
worker connects (startup) and after the link closes (shutdown).
"""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import Any, Optional

from . import protocol as P
from ._asyncio import run, serve
from ._core import (_ERROR_BODY, _ERROR_HEADERS, _FORBIDDEN, _HTTP_VERSION, ClientDisconnected, Request,
                    WebSocketClosed, WorkerCore, parse_subprotocols)

log = logging.getLogger("sluice")

_ASGI = {"version": "3.0", "spec_version": "2.4"}
_pack = P._pack
_DISCONNECT = {"type": "http.disconnect"}


_HEADER_CACHE: dict = {}


def _pack_asgi_headers(headers: Any) -> bytes:
    """ASGI headers are already [name, value] byte pairs: pack them as is
    (msgpack writes tuples as arrays, bytes as bin — the canonical form).

    Apps send the same few header sets again and again: packed forms are
    cached by value (tuples of byte pairs hash cheaply; bytes cache their
    hash), so a repeat costs a lookup instead of a check and a pack."""
    if not headers:
        return b"\x90"
    try:
        key = tuple(headers)
        packed = _HEADER_CACHE.get(key)
    except TypeError:  # lists inside: not hashable, not cached
        key = packed = None
    if packed is not None:
        return packed
    packed = _pack_checked(headers)
    if key is not None:
        if len(_HEADER_CACHE) >= 512:
            _HEADER_CACHE.clear()
        _HEADER_CACHE[key] = packed
    return packed


def _pack_checked(headers: Any) -> bytes:
    try:
        for h in headers:
            if type(h[0]) is not bytes or type(h[1]) is not bytes or len(h) != 2:
                raise TypeError
        return _pack(headers if type(headers) is list else list(headers))
    except (TypeError, IndexError):
        return P.pack_headers([(n, v) for n, v in headers])


class _Cycle:
    """One request/response exchange: the ASGI ``receive`` and ``send``."""

    __slots__ = ("req", "core", "status", "headers", "body_done", "started", "complete")

    def __init__(self, core: WorkerCore, req: Request) -> None:
        self.req = req
        self.core = core
        self.status = 0
        self.headers: Optional[bytes] = None
        self.body_done = False
        self.started = False     # http.response.start received
        self.complete = False    # final http.response.body sent

    async def receive(self) -> dict:
        req = self.req
        if not self.body_done:
            if req._ended and not req._chunks and req._granted:
                self.body_done = True
                return {"type": "http.request", "body": b"", "more_body": False}
            try:
                chunk = await req._read()
            except ClientDisconnected:
                self.body_done = True
                return _DISCONNECT
            if chunk is None:
                self.body_done = True
                return {"type": "http.request", "body": b"", "more_body": False}
            more = not (req._ended and not req._chunks)
            if not more:
                self.body_done = True
            return {"type": "http.request", "body": chunk, "more_body": more}
        await req.wait_disconnect()
        return _DISCONNECT

    async def send(self, message: dict) -> None:
        t = message["type"]
        req = self.req
        if t == "http.response.body":
            if not self.started:
                raise RuntimeError("ASGI: http.response.body before http.response.start")
            if self.complete:
                raise RuntimeError("ASGI: http.response.body after the response completed")
            if req._cancelled is not None:
                return
            body = message.get("body", b"")
            more = message.get("more_body", False)
            conn = self.core.conn
            if not req._started:
                req._started = True
                if not more:
                    self.complete = True
                    if conn.respond_full(req.id, self.status, self.headers, body):  # type: ignore[arg-type]
                        req._complete()
                        self.core.runtime.flush()
                        return
                    if not body:
                        conn.respond(req.id, self.status, packed_headers=self.headers, body=False)
                        req._complete()
                        self.core.runtime.flush()
                        return
                conn.respond(req.id, self.status, packed_headers=self.headers, body=True)
                self.core.runtime.flush()
            try:
                if body:
                    await req._send(body)
                if not more:
                    self.complete = True
                    req._end()
            except ClientDisconnected:
                return
        elif t == "http.response.start":
            if self.started:
                raise RuntimeError("ASGI: http.response.start sent twice")
            status = message["status"]
            if not isinstance(status, int) or not 200 <= status <= 599:
                raise RuntimeError(f"ASGI: status {status!r} not in 200..599")
            self.started = True
            self.status = status
            self.headers = _pack_asgi_headers(message.get("headers"))
        elif t == "http.response.trailers":
            return
        else:
            raise RuntimeError(f"ASGI: unexpected message type {t!r}")


class WebSocketSendError(OSError):
    """``send()`` on a WebSocket that is closed (ASGI 2.4: a server-specific
    OSError; Starlette turns it into ``WebSocketDisconnect(1006)``)."""


class _WSCycle:
    """One WebSocket stream as an ASGI ``websocket`` call, on top of the
    native :class:`sluice.WebSocket` (which does the credit and the
    reassembly of messages)."""

    __slots__ = ("req", "ws", "core", "connected", "state", "status", "headers")

    # application states
    CONNECTING, ACCEPTED, RESPONSE, DONE = 0, 1, 2, 3

    def __init__(self, core: WorkerCore, req: Request) -> None:
        self.req = req
        self.ws = req.ws
        self.core = core
        self.connected = False   # websocket.connect handed out
        self.state = self.CONNECTING
        self.status = 0
        self.headers: Optional[bytes] = None

    def _disconnect(self) -> dict:
        ws = self.ws
        return {"type": "websocket.disconnect", "code": ws.close_code or 1006,  # type: ignore[union-attr]
                "reason": ws.close_reason or ""}  # type: ignore[union-attr]

    async def receive(self) -> dict:
        if not self.connected:
            self.connected = True
            return {"type": "websocket.connect"}
        ws = self.ws
        if self.state == self.ACCEPTED or ws._closed:  # type: ignore[union-attr]
            try:
                msg = await ws.receive()  # type: ignore[union-attr]
            except WebSocketClosed:
                return self._disconnect()
            if type(msg) is str:
                return {"type": "websocket.receive", "text": msg}
            return {"type": "websocket.receive", "bytes": msg}
        # not accepted (yet, or refused): nothing comes but the end
        await self.req.wait_disconnect()
        return {"type": "websocket.disconnect", "code": ws.close_code or 1006,  # type: ignore[union-attr]
                "reason": ws.close_reason or ""}  # type: ignore[union-attr]

    async def send(self, message: dict) -> None:
        t = message["type"]
        ws = self.ws
        assert ws is not None
        req = self.req
        if t == "websocket.send":
            if self.state != self.ACCEPTED:
                raise RuntimeError("ASGI: websocket.send before websocket.accept")
            if ws._closed:
                raise WebSocketSendError(f"the WebSocket is closed ({ws.close_code})")
            b = message.get("bytes")
            data = b if b is not None else message.get("text")
            if data is None:
                raise RuntimeError("ASGI: websocket.send without bytes or text")
            try:
                await ws.send(data)
            except WebSocketClosed as exc:
                raise WebSocketSendError(str(exc)) from None
        elif t == "websocket.accept":
            if self.state != self.CONNECTING:
                raise RuntimeError("ASGI: websocket.accept after the handshake was answered")
            if ws._closed:
                raise WebSocketSendError("the client went away")
            self.state = self.ACCEPTED
            await ws.accept(message.get("subprotocol"), message.get("headers"))
        elif t == "websocket.close":
            if self.state == self.CONNECTING:
                self.state = self.DONE
                if not ws._closed:
                    await req.send_response(_FORBIDDEN)
            elif self.state == self.ACCEPTED:
                self.state = self.DONE
                code = message.get("code")
                await ws.close(1000 if code is None else code, message.get("reason") or "")
            else:
                raise RuntimeError("ASGI: websocket.close after the WebSocket was closed or refused")
        elif t == "websocket.http.response.start":
            if self.state != self.CONNECTING:
                raise RuntimeError("ASGI: websocket.http.response.start after the handshake was answered")
            status = message["status"]
            if not isinstance(status, int) or not 200 <= status <= 599:
                raise RuntimeError(f"ASGI: status {status!r} not in 200..599")
            self.state = self.RESPONSE
            self.status = status
            self.headers = _pack_asgi_headers(message.get("headers"))
        elif t == "websocket.http.response.body":
            if self.state != self.RESPONSE:
                raise RuntimeError("ASGI: websocket.http.response.body without websocket.http.response.start")
            if req._cancelled is not None:
                return
            body = message.get("body", b"")
            more = message.get("more_body", False)
            if not more:
                self.state = self.DONE
            try:
                if not req._started:
                    if not more:
                        await req.send_response_raw(self.status, self.headers, body)  # type: ignore[arg-type]
                        return
                    await req.start_raw(self.status, self.headers)  # type: ignore[arg-type]
                if body:
                    await req._send(body)
                if not more:
                    req._end()
            except ClientDisconnected:
                return
        else:
            raise RuntimeError(f"ASGI: unexpected message type {t!r}")


class ASGIRunner:
    """Holds the app and the lifespan state; ``run_request`` is the per-
    stream coroutine given to the runtime."""

    def __init__(self, app: Any, lifespan: str = "auto") -> None:
        self.app = app
        self.lifespan_mode = lifespan
        self.state: dict = {}
        self._lifespan_queue: Optional[asyncio.Queue] = None
        self._lifespan_task: Optional[asyncio.Task] = None
        self._lifespan_events: Optional[asyncio.Queue] = None
        self.lifespan_supported = False

    # the keys every scope has, in order; copied, then the per-request ones set
    _TEMPLATE = {"type": "http", "asgi": _ASGI, "http_version": "1.1", "method": "GET", "scheme": "http",
                 "path": "/", "raw_path": b"/", "query_string": b"", "root_path": "", "headers": [],
                 "client": None, "server": None, "state": None}
    _METHODS = {m.encode(): m for m in ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS")}

    def scope(self, req: Request) -> dict:
        f = req._frame
        raw_path, _, query = f.target.partition(b"?")
        client = f.client
        server = f.server
        d = self._TEMPLATE.copy()
        if f.version != 11:
            d["http_version"] = _HTTP_VERSION[f.version]
        m = f.method
        d["method"] = self._METHODS.get(m) or m.decode("latin-1")
        d["scheme"] = f.scheme
        d["path"] = req.path if b"%" in raw_path else raw_path.decode("latin-1")
        d["raw_path"] = raw_path
        d["query_string"] = query
        d["headers"] = f.headers
        if client[0]:
            d["client"] = client
        if server[0]:
            d["server"] = server
        d["state"] = self.state.copy()
        return d

    def ws_scope(self, req: Request) -> dict:
        """The ASGI ``websocket`` scope (HTTP & WebSocket spec 2.4)."""
        f = req._frame
        raw_path, _, query = f.target.partition(b"?")
        return {
            "type": "websocket", "asgi": _ASGI, "http_version": _HTTP_VERSION[f.version],
            "scheme": "wss" if f.scheme == "https" else "ws",
            "path": req.path, "raw_path": raw_path, "query_string": query, "root_path": "",
            "headers": f.headers, "client": f.client if f.client[0] else None,
            "server": f.server if f.server[0] else None,
            "subprotocols": parse_subprotocols(f.headers), "state": self.state.copy(),
            "extensions": {"websocket.http.response": {}},
        }

    async def run_websocket(self, core: WorkerCore, req: Request) -> None:
        """One WebSocket: before accepting, a return is a 403 and an
        exception a 500; after, close 1000 if the app returned, 1011 if it
        raised."""
        cycle = _WSCycle(core, req)
        ws = req.ws
        assert ws is not None
        try:
            await self.app(self.ws_scope(req), cycle.receive, cycle.send)
            if not ws._closed and req._cancelled is None:
                if ws._accepted:
                    ws._close(1000, "")
                elif not req._started:
                    await req.send_response(_FORBIDDEN)
                # a denial response left unfinished: finished() RESETs it
        except Exception:
            if req._cancelled is None:
                log.error("sluice: exception in ASGI application for WebSocket %s",
                          req.target.decode("latin-1"), exc_info=sys.exc_info())
                if ws._accepted:
                    if not ws._closed:
                        ws._close(1011, "")
                elif not req._started:
                    self._error(core, req)
        finally:
            core.finished(req)

    async def run_request(self, core: WorkerCore, req: Request) -> None:
        if req.ws is not None:
            return await self.run_websocket(core, req)
        cycle = _Cycle(core, req)
        try:
            await self.app(self.scope(req), cycle.receive, cycle.send)
            if not cycle.complete and req._cancelled is None:
                if not cycle.started:
                    log.error("sluice: ASGI app returned without sending a response for %s %s",
                              req.method, req.target.decode("latin-1"))
                    self._error(core, req)
                # started but incomplete: finished() below RESETs the stream
        except Exception:
            if req._cancelled is None:
                log.error("sluice: exception in ASGI application for %s %s", req.method,
                          req.target.decode("latin-1"), exc_info=sys.exc_info())
                if not req._started:
                    self._error(core, req)
        finally:
            core.finished(req)

    @staticmethod
    def _error(core: WorkerCore, req: Request) -> None:
        if core.conn.is_open(req.id) and not req._started:
            req._started = True
            core.conn.respond_full(req.id, 500, _ERROR_HEADERS, _ERROR_BODY)
            req._complete()
            core.runtime.flush()

    # -- lifespan ------------------------------------------------------------
    async def startup(self) -> None:
        """Run lifespan startup; raises RuntimeError if the app reports
        ``lifespan.startup.failed`` (or, with ``--lifespan on``, fails)."""
        if self.lifespan_mode == "off":
            return
        self._lifespan_queue = asyncio.Queue()
        self._lifespan_events = asyncio.Queue()
        scope = {"type": "lifespan", "asgi": _ASGI, "state": self.state}

        async def receive() -> dict:
            return await self._lifespan_queue.get()  # type: ignore[union-attr]

        async def send(message: dict) -> None:
            await self._lifespan_events.put(message)  # type: ignore[union-attr]

        async def main() -> None:
            try:
                await self.app(scope, receive, send)
            except BaseException as exc:
                await self._lifespan_events.put({"type": "_error", "exc": exc})  # type: ignore[union-attr]
                if not isinstance(exc, Exception):
                    raise
            else:
                await self._lifespan_events.put({"type": "_returned"})  # type: ignore[union-attr]

        self._lifespan_task = asyncio.get_running_loop().create_task(main())
        await self._lifespan_queue.put({"type": "lifespan.startup"})
        msg = await self._lifespan_events.get()
        t = msg["type"]
        if t == "lifespan.startup.complete":
            self.lifespan_supported = True
            return
        if t == "lifespan.startup.failed":
            raise RuntimeError(f"ASGI lifespan startup failed: {msg.get('message', '')}")
        if t == "_error" and self.lifespan_mode == "on":
            raise RuntimeError(f"ASGI lifespan startup raised {msg['exc']!r}")
        if t == "_error":
            log.info("sluice: the ASGI app does not support lifespan (%r); continuing without it", msg["exc"])
        self.lifespan_supported = False

    async def shutdown(self) -> None:
        if not self.lifespan_supported or self._lifespan_queue is None:
            return
        await self._lifespan_queue.put({"type": "lifespan.shutdown"})
        try:
            msg = await asyncio.wait_for(self._lifespan_events.get(), 30)  # type: ignore[union-attr]
        except asyncio.TimeoutError:
            log.warning("sluice: ASGI lifespan shutdown timed out")
            return
        if msg["type"] == "lifespan.shutdown.failed":
            log.error("sluice: ASGI lifespan shutdown failed: %s", msg.get("message", ""))
        elif msg["type"] == "_error":
            log.error("sluice: ASGI lifespan shutdown raised %r", msg["exc"])
        if self._lifespan_task is not None:
            try:
                await asyncio.wait_for(self._lifespan_task, 5)
            except (asyncio.TimeoutError, Exception):
                pass


def run_asgi(app: Any, *, loop: str = "auto", lifespan: str = "auto", websocket: bool = True,
             **options: Any) -> int:
    """Serve an ASGI 3 application under the gateway. ``websocket``:
    announce WebSockets (``websocket`` scopes) to the gateway."""
    runner = ASGIRunner(app, lifespan)

    async def main() -> int:
        try:
            await runner.startup()
        except RuntimeError as exc:
            log.error("sluice: %s", exc)
            return 3
        try:
            return await serve(runner.run_request, websocket=websocket, **options)
        finally:
            await runner.shutdown()

    return run(main, loop)


def main() -> int:
    from .cli import main as cli_main
    return cli_main(interface="asgi")


if __name__ == "__main__":
    sys.exit(main())
