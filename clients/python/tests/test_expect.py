"""``Expect: 100-continue`` against handlers that answer before they read:
the 100 must come before the final head (the gateway sends it when the first
CREDIT arrives), with no client timeout and the connection kept alive; a
handler that refuses without reading never gets the upload."""

from __future__ import annotations

import os
import socket
import time

import pytest

WORKERS = {
    "native-asyncio": ["sluice", "--loop", "asyncio", "native_app:app"],
    "native-uvloop": ["sluice", "--loop", "uvloop", "native_app:app"],
    "native-trio": ["sluice", "--loop", "trio", "native_app:app"],
    "asgi": ["sluice.asgi", "load_apps:asgi"],
    "starlette": ["sluice.asgi", "star_app:app"],
    "wsgi": ["sluice.wsgi", "load_apps:wsgi"],
}


def _worker(name: str) -> list[str]:
    for lib in ("uvloop", "trio", "starlette"):
        if lib in name:
            pytest.importorskip(lib)
    return WORKERS[name]


class Reader:
    """Reads HTTP/1.1 responses from a socket (heads, then bodies)."""

    def __init__(self, s: socket.socket) -> None:
        self.s = s
        self.buf = b""

    def _more(self) -> None:
        chunk = self.s.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed; got {self.buf[:200]!r}")
        self.buf += chunk

    def head(self) -> bytes:
        while b"\r\n\r\n" not in self.buf:
            self._more()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        return head

    def _line(self) -> bytes:
        while b"\r\n" not in self.buf:
            self._more()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._more()
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def body(self, head: bytes) -> bytes:
        h = head.lower()
        if b"transfer-encoding: chunked" in h:
            out = b""
            while True:
                n = int(self._line().split(b";")[0], 16)
                if n == 0:
                    while self._line():
                        pass
                    return out
                out += self._exact(n)
                self._line()
        for line in h.split(b"\r\n"):
            if line.startswith(b"content-length:"):
                return self._exact(int(line.split(b":")[1]))
        return b""


@pytest.mark.parametrize("name", list(WORKERS))
def test_streaming_echo_gets_100_continue_before_its_head(gateway, name):
    gw = gateway(_worker(name))
    data = os.urandom(300_000)
    with socket.create_connection(("127.0.0.1", gw.port), timeout=20) as s:
        r = Reader(s)
        t0 = time.monotonic()
        s.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n"
                  b"Content-Length: %d\r\nExpect: 100-continue\r\n\r\n" % len(data))
        first = r.head()
        waited = time.monotonic() - t0
        assert first.startswith(b"HTTP/1.1 100"), f"the final head came first: {first!r}"
        # curl gives up waiting after 1 s and sends the body anyway
        assert waited < 1.0, f"100 Continue took {waited:.2f}s"
        s.sendall(data)
        head = r.head()
        assert head.startswith(b"HTTP/1.1 200"), head
        assert b"connection: close" not in head.lower()
        assert r.body(head) == data
        # the same connection serves the next request
        s.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
        head = r.head()
        assert head.startswith(b"HTTP/1.1 200"), head
        assert r.body(head) == b"hello"


@pytest.mark.parametrize("name", ["native-uvloop", "asgi", "starlette", "wsgi"])
def test_refusing_without_reading_gets_no_upload(gateway, name):
    gw = gateway(_worker(name))
    with socket.create_connection(("127.0.0.1", gw.port), timeout=20) as s:
        r = Reader(s)
        s.sendall(b"POST /auth HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n"
                  b"Expect: 100-continue\r\n\r\n")
        head = r.head()
        assert head.startswith(b"HTTP/1.1 401"), head
        assert r.body(head) == b"no\n"
    # and the worker carries on
    status, _, _ = gw.request("POST", "/echo", body=b"abc")
    assert status == 200
