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


class FrameIO:
    """The gateway side of one link over ``sock``: every frame goes through
    a gateway-role ``protocol.Link``. Subclasses set ``sock`` and call
    ``_init_io()``."""

    sock: socket.socket

    def _init_io(self) -> None:
        self.link = P.Link("gateway")
        self.dec = P.FrameDecoder(P.MAX_MAX_FRAME)
        self._pending: list[P.Frame] = []
        #: CREDIT granted by the worker, per stream (CREDIT frames are
        #: counted here, not returned by recv())
        self.credited: dict[int, int] = {}
        #: (time.monotonic(), opaque) of each PING from the worker; they are
        #: answered (while ``answer_pings``) and not returned by recv()
        self.pings: list[tuple[float, int]] = []
        self.answer_pings = True
        self.next_sid = 1

    def _answer_hello(self, window: int = 1 << 20, websocket: bool = True,
                      max_frame: Optional[int] = None) -> None:
        self.hello = self.recv()
        assert isinstance(self.hello, P.Hello), self.hello
        settings: dict = {"window": window, "server": "fakegw"}
        if max_frame is not None:
            settings["max_frame"] = max_frame
        if websocket and self.hello.settings.get("websocket") is True:
            settings["websocket"] = True
        self.send(P.Hello(1, settings))

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
        now = time.monotonic()
        for f in self.dec.feed(data):
            self.link.recv(f)  # raises RemoteProtocolError on a violation
            if isinstance(f, P.Ping):
                self.pings.append((now, f.opaque))
                if self.answer_pings:
                    try:
                        self.send(P.Pong(f.opaque))
                    except OSError:
                        pass  # the worker is closing the link: the read says so
            elif isinstance(f, P.Credit):
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


class FakeGateway(FrameIO):
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
        self._init_io()
        self._answer_hello(window, websocket, max_frame)

    def _run(self, serve: Callable[[str], Any]) -> None:
        try:
            self.result = serve(self.path)
        except BaseException as exc:  # reported by close()
            self.error = exc

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



# -- remote mode (PROTOCOL.md 10.6): listeners a worker connects to, again and again --

class GatewayLink(FrameIO):
    """One connection a :class:`FakeListener` accepted (after TLS, if any).
    ``answer``: ``"hello"`` (the gateway's HELLO), ``"auth"`` (ERROR auth,
    then close) or ``None`` (read the worker's HELLO, answer nothing)."""

    def __init__(self, sock: socket.socket, answer: Optional[str] = "hello", window: int = 1 << 20) -> None:
        self.sock = sock
        self.sock.settimeout(TIMEOUT)
        self._init_io()
        if answer == "hello":
            self._answer_hello(window)
        else:
            self.hello = self.recv()
            assert isinstance(self.hello, P.Hello), self.hello
            if answer == "auth":
                self.send(P.Error(P.ERROR_CODES["auth"], "bad token"))
                self.close()

    def expect_eof(self, timeout: float = TIMEOUT) -> list[P.Frame]:
        """Read until the worker closes the link; the frames read."""
        got: list[P.Frame] = []
        deadline = time.monotonic() + timeout
        while True:
            try:
                got.append(self.recv(max(0.0, deadline - time.monotonic())))
            except EOFError:
                return got + self._pending

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


class FakeListener:
    """A gateway's worker listener: ``tcp`` on 127.0.0.1 (or ``host``) or
    ``unix``, optionally TLS (``tls``: a server ``ssl.SSLContext``).
    ``address`` is what goes in SLUICE_SOCKET."""

    def __init__(self, kind: str = "tcp", tls: Any = None, host: str = "127.0.0.1", port: int = 0) -> None:
        self.kind = kind
        self.tls = tls
        self.host = host
        self._dir = tempfile.mkdtemp(prefix="sluice-fakegw-")
        self.path = os.path.join(self._dir, "gw.sock")
        self.port = port
        #: per accepted TLS connection: (SNI name, ALPN selected, client certificate)
        self.tls_seen: list[tuple] = []
        #: TLS handshakes that failed (the worker is expected to retry)
        self.tls_failures: list[BaseException] = []
        self.lsock: Optional[socket.socket] = None
        self.listen()

    def listen(self) -> None:
        """(Again) listen, at the same port or path."""
        if self.kind == "unix":
            if os.path.exists(self.path):
                os.unlink(self.path)
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.bind(self.path)
        else:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((self.host, self.port))
            self.port = s.getsockname()[1]
        s.listen(16)
        self.lsock = s

    @property
    def address(self) -> str:
        if self.kind == "unix":
            return self.path
        return f"{'tls' if self.tls else 'tcp'}:{self.host}:{self.port}"

    def accept(self, timeout: float = TIMEOUT, answer: Optional[str] = "hello") -> GatewayLink:
        """The next connection that gets through TLS (failed handshakes are
        counted in ``tls_failures`` and skipped)."""
        assert self.lsock is not None
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no connection from the worker")
            self.lsock.settimeout(left)
            try:
                sock, _ = self.lsock.accept()
            except socket.timeout:
                raise TimeoutError("no connection from the worker") from None
            if self.tls is None:
                return GatewayLink(sock, answer)
            sock.settimeout(max(0.1, deadline - time.monotonic()))
            sni: list = []
            self.tls.sni_callback = lambda _s, name, _c: sni.append(name)
            try:
                ssock = self.tls.wrap_socket(sock, server_side=True)
            except (OSError, ValueError) as exc:
                self.tls_failures.append(exc)
                sock.close()
                continue
            self.tls_seen.append((sni[0] if sni else None, ssock.selected_alpn_protocol(), ssock.getpeercert()))
            return GatewayLink(ssock, answer)

    def stop(self) -> None:
        """Stop listening (connections are refused until ``listen()``)."""
        if self.lsock is not None:
            self.lsock.close()
            self.lsock = None

    def close(self) -> None:
        self.stop()
        try:
            if os.path.exists(self.path):
                os.unlink(self.path)
            os.rmdir(self._dir)
        except OSError:
            pass


class RemoteWorker:
    """A native app served by ``serve()`` (``backend`` asyncio or trio) in a
    thread, stopped through a :class:`sluice.Shutdown` handle."""

    def __init__(self, app: Any, socket: Any, backend: str = "asyncio", **kw: Any) -> None:
        from sluice import Shutdown
        self.shutdown = Shutdown()
        self.result: Any = None
        self.error: Optional[BaseException] = None
        if backend == "trio":
            from sluice._trio import run_native as run_trio

            def run() -> Any:
                return run_trio(app, socket=socket, handle_signals=False, shutdown=self.shutdown, **kw)
        else:
            from sluice._asyncio import run_native

            def run() -> Any:
                return run_native(app, loop=backend, socket=socket, handle_signals=False,
                                  shutdown=self.shutdown, **kw)
        self._thread = threading.Thread(target=self._run, args=(run,), daemon=True)
        self._thread.start()

    def _run(self, run: Callable[[], Any]) -> None:
        try:
            self.result = run()
        except BaseException as exc:
            self.error = exc

    def running(self) -> bool:
        return self._thread.is_alive()

    def wait(self, timeout: float = TIMEOUT) -> Any:
        """The worker's result once it returned (raises what it raised)."""
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the worker did not stop"
        if self.error is not None:
            raise self.error
        return self.result

    def stop(self, timeout: float = TIMEOUT) -> Any:
        self.shutdown.trigger()
        return self.wait(timeout)


def make_pki(d: str) -> Optional[dict]:
    """A test CA, a server certificate for ``gw.test`` and 127.0.0.1, one
    for ``other.test`` only, a client certificate, and a second CA that
    signed nothing of these, made with the openssl command line in ``d``
    (None when openssl is missing). Returns the file paths by name."""
    import shutil
    import subprocess
    if shutil.which("openssl") is None:
        return None

    def ossl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True, timeout=30)

    for ca in ("ca", "ca2"):
        ossl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN=sluice test {ca}",
             "-keyout", f"{ca}.key", "-out", f"{ca}.pem",
             "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    leaves = {"server": ("/CN=gw.test", "subjectAltName=DNS:gw.test,IP:127.0.0.1", "serverAuth"),
              "other": ("/CN=other.test", "subjectAltName=DNS:other.test", "serverAuth"),
              "client": ("/CN=sluice test worker", "subjectAltName=DNS:worker.test", "clientAuth")}
    for name, (subj, san, eku) in leaves.items():
        ossl("req", "-newkey", "rsa:2048", "-nodes", "-subj", subj, "-keyout", f"{name}.key", "-out", f"{name}.csr")
        with open(os.path.join(d, f"{name}.ext"), "w") as f:
            f.write(f"{san}\nextendedKeyUsage={eku}\nbasicConstraints=CA:FALSE\n"
                    "keyUsage=critical,digitalSignature,keyEncipherment\n")
        ossl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
             "-days", "2", "-extfile", f"{name}.ext", "-out", f"{name}.pem")
    files = {n: os.path.join(d, f"{n}.pem") for n in ("ca", "ca2", "server", "other", "client")}
    files.update({f"{n}_key": os.path.join(d, f"{n}.key") for n in ("server", "other", "client")})
    return files


def server_tls(pki: dict, cert: str = "server", client_ca: bool = False, alpn: bool = True) -> Any:
    """A gateway-side TLS context (TLS 1.2+, ALPN sluice/1 accepted)."""
    import ssl
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(pki[cert], pki[cert + "_key"])
    if alpn:
        ctx.set_alpn_protocols(["sluice/1"])
    if client_ca:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(pki["ca"])
    return ctx

def native_asyncio(app: Any, loop: str = "asyncio", **kw: Any) -> Callable[[str], Any]:
    from sluice._asyncio import run_native
    return lambda path: run_native(app, loop=loop, socket=path, handle_signals=False, **kw)


def native_trio(app: Any, **kw: Any) -> Callable[[str], Any]:
    from sluice._trio import run_native
    return lambda path: run_native(app, socket=path, handle_signals=False, **kw)


def asgi(app: Any, loop: str = "asyncio", **kw: Any) -> Callable[[str], Any]:
    from sluice.asgi import run_asgi
    return lambda path: run_asgi(app, loop=loop, lifespan="off", socket=path, handle_signals=False, **kw)
