"""A scripted fake gateway for in-process tests of the worker runtimes.

The worker runs its real ``serve()`` (asyncio, uvloop or trio; native API
or ASGI) in a thread and connects over a real Unix socket to this gateway,
which the test drives step by step: ``send(frames...)``, ``recv()``. Every
frame in either direction goes through a gateway-role ``protocol.Link``, so
a worker that breaks the protocol (a MESSAGE beyond its window, a frame on a
closed stream...) fails the test with the spec's error name. Every wait is
bounded; ``close()`` ends the link, which ends the worker's ``serve()``.
"""

from __future__ import annotations

import os
import socket
import tempfile
import threading
import time
from typing import Any, Callable, Optional

from sluice import protocol as P

TIMEOUT = 5.0


class FakeGateway:
    def __init__(self, serve: Callable[[str], Any], window: int = 1 << 20, websocket: bool = True,
                 max_frame: Optional[int] = None) -> None:
        """``serve(socket_path)`` runs the worker until its link closes (it
        is called in a thread). The gateway answers the worker's HELLO with
        ``window`` and ``websocket: true`` if the worker announced it and
        ``websocket`` is set."""
        self._dir = tempfile.mkdtemp(prefix="sluice-fakegw-")
        self.path = os.path.join(self._dir, "gw.sock")
        self._lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._lsock.bind(self.path)
        self._lsock.listen(1)
        self._lsock.settimeout(TIMEOUT)
        self.result: Any = None
        self.error: Optional[BaseException] = None
        self._thread = threading.Thread(target=self._run, args=(serve,), daemon=True)
        self._thread.start()
        self.sock, _ = self._lsock.accept()
        self.sock.settimeout(TIMEOUT)
        self.link = P.Link("gateway")
        self.dec = P.FrameDecoder(P.MAX_MAX_FRAME)
        self._pending: list[P.Frame] = []
        #: CREDIT granted by the worker, per stream (CREDIT frames are
        #: counted here, not returned by recv())
        self.credited: dict[int, int] = {}
        self.hello = self.recv()
        assert isinstance(self.hello, P.Hello), self.hello
        settings: dict = {"window": window, "server": "fakegw"}
        if max_frame is not None:
            settings["max_frame"] = max_frame
        if websocket and self.hello.settings.get("websocket") is True:
            settings["websocket"] = True
        self.send(P.Hello(1, settings))
        self.next_sid = 1

    def _run(self, serve: Callable[[str], Any]) -> None:
        try:
            self.result = serve(self.path)
        except BaseException as exc:  # reported by close()
            self.error = exc

    # -- frames -------------------------------------------------------------------
    def send(self, *frames: P.Frame) -> None:
        data = b""
        for f in frames:
            self.link.send(f)
            data += P.encode(f)
        self.sock.sendall(data)

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _read(self, deadline: float) -> None:
        """One read from the worker: frames checked by the gateway's Link,
        CREDIT counted, the rest queued for recv()."""
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no frame from the worker")
        self.sock.settimeout(left)
        try:
            data = self.sock.recv(1 << 20)
        except socket.timeout:
            raise TimeoutError("no frame from the worker") from None
        if not data:
            raise EOFError("the worker closed the link")
        for f in self.dec.feed(data):
            self.link.recv(f)  # raises RemoteProtocolError on a violation
            if isinstance(f, P.Credit):
                self.credited[f.stream_id] = self.credited.get(f.stream_id, 0) + f.increment
            else:
                self._pending.append(f)

    def recv(self, timeout: float = TIMEOUT) -> P.Frame:
        """The next frame from the worker other than CREDIT."""
        deadline = time.monotonic() + timeout
        while not self._pending:
            self._read(deadline)
        return self._pending.pop(0)

    def recv_stream(self, sid: int, timeout: float = TIMEOUT) -> P.Frame:
        """The next frame of stream ``sid`` (others are dropped)."""
        deadline = time.monotonic() + timeout
        while True:
            f = self.recv(max(0.0, deadline - time.monotonic()))
            if f.stream_id == sid:
                return f

    def wait_credit(self, sid: int, total: int, timeout: float = TIMEOUT) -> None:
        """Read until the worker has granted ``total`` on ``sid`` in all
        (other frames stay queued for recv())."""
        deadline = time.monotonic() + timeout
        while self.credited.get(sid, 0) < total:
            try:
                self._read(deadline)
            except TimeoutError:
                raise TimeoutError(f"credit {self.credited.get(sid, 0)} of {total} on stream {sid}") from None

    def quiet(self, seconds: float = 0.3) -> list[P.Frame]:
        """Frames the worker sends within ``seconds`` (expected: none)."""
        got = []
        deadline = time.monotonic() + seconds
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return got
            try:
                got.append(self.recv(left))
            except TimeoutError:
                return got

    # -- WebSocket helpers ----------------------------------------------------------
    def open_ws(self, target: bytes = b"/ws", headers: Optional[list] = None, scheme: str = "http",
                version: int = 11) -> int:
        """Send a WebSocket REQUEST (body=3); returns its stream id."""
        sid = self.next_sid
        self.next_sid += 2
        h = [[b"host", b"example.test"], [b"sec-websocket-version", b"13"],
             [b"sec-websocket-key", b"dGhlIHNhbXBsZSBub25jZQ=="]] + (headers or [])
        self.send(P.Request(sid, b"GET", target, version, h, ("127.0.0.1", 4242), ("127.0.0.1", 8080),
                            scheme, 3))
        return sid

    def open_http(self, target: bytes = b"/", method: bytes = b"GET") -> int:
        sid = self.next_sid
        self.next_sid += 2
        self.send(P.Request(sid, method, target, 11, [[b"host", b"example.test"]], ("127.0.0.1", 4242),
                            ("127.0.0.1", 8080), "http", 0))
        return sid

    def message(self, sid: int, data: bytes | str, more: bool = False) -> None:
        """Send one piece of a message (str: text)."""
        text = isinstance(data, str)
        raw = data.encode() if text else data
        self.send(P.Message(sid, (P.MSG_TEXT if text else 0) | (P.MSG_MORE if more else 0), raw))

    def recv_message(self, sid: int, timeout: float = TIMEOUT, credit: bool = True) -> tuple[Any, list]:
        """One whole message from the worker: (str | bytes, its pieces'
        sizes). With ``credit``, each piece is credited back at once."""
        pieces: list[int] = []
        parts = []
        while True:
            f = self.recv_stream(sid, timeout)
            assert isinstance(f, P.Message), f
            if f.flags & (P.MSG_PING | P.MSG_PONG):
                continue
            pieces.append(len(f.data))
            parts.append(f.data)
            if credit and f.data and sid in self.link.streams:
                self.send(P.Credit(sid, len(f.data)))
            if not f.flags & P.MSG_MORE:
                raw = b"".join(parts)
                return (raw.decode() if f.flags & P.MSG_TEXT else raw), pieces

    def close(self) -> None:
        """End the link (the worker's serve() returns) and the thread."""
        try:
            self.sock.close()
        finally:
            self._lsock.close()
            self._thread.join(TIMEOUT)
            try:
                os.unlink(self.path)
                os.rmdir(self._dir)
            except OSError:
                pass
        assert not self._thread.is_alive(), "the worker did not stop when its link closed"

    def __enter__(self) -> "FakeGateway":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def native_asyncio(app: Any, loop: str = "asyncio", **kw: Any) -> Callable[[str], Any]:
    from sluice._asyncio import run_native
    return lambda path: run_native(app, loop=loop, socket=path, handle_signals=False, **kw)


def native_trio(app: Any, **kw: Any) -> Callable[[str], Any]:
    from sluice._trio import run_native
    return lambda path: run_native(app, socket=path, handle_signals=False, **kw)


def asgi(app: Any, loop: str = "asyncio", **kw: Any) -> Callable[[str], Any]:
    from sluice.asgi import run_asgi
    return lambda path: run_asgi(app, loop=loop, lifespan="off", socket=path, handle_signals=False, **kw)
