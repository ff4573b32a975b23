"""Requests that reached the gateway over HTTP/2 (REQUEST version 20).

Unit level, no sockets: REQUEST frames go through the real decoder and
WorkerCore dispatch (a fake runtime records the requests it would start),
then the native, ASGI and WSGI views of each request are checked.
"""

from __future__ import annotations

import pytest

from sluice import protocol as P
from sluice._core import Runtime, WorkerCore
from sluice.asgi import ASGIRunner
from sluice.wsgi import WSGIRunner

GW_HELLO = P.encode(P.Hello(1, {"window": 100, "worker_id": 1, "pool": "p"}))
H2_HEADERS = [[b"host", b"example.com"], [b"cookie", b"a=1; b=2"], [b"te", b"trailers"]]


class RecordingRuntime(Runtime):
    """Records started requests instead of running an application."""

    def __init__(self) -> None:
        self.started = []

    def flush(self) -> None:
        pass

    def start(self, req) -> None:
        self.started.append(req)

    def cancel(self, req) -> None:  # pragma: no cover - not exercised
        pass

    def close(self) -> None:  # pragma: no cover - not exercised
        pass


def dispatch(*frames: P.Request, split: bool = False) -> list:
    """Feed the gateway's HELLO and `frames` to a worker core; the requests
    it started, in order."""
    conn = P.WorkerConnection(pid=1, lib="t", max_streams=8)
    conn.data_to_send()  # our HELLO
    rt = RecordingRuntime()
    core = WorkerCore(conn, rt)
    data = GW_HELLO + b"".join(P.encode(f) for f in frames)
    if split:  # byte by byte: the decoder's slow path
        for i in range(len(data)):
            core.data_received(data[i:i + 1])
    else:
        core.data_received(data)
    assert not core.closed
    return rt.started


def h2_request(sid: int = 1, version: int = 20, body: int = 0) -> P.Request:
    return P.Request(sid, b"POST", b"/items?x=1", version, H2_HEADERS, ("::1", 50000), ("::1", 8443),
                     "https", body)


@pytest.mark.parametrize("split", [False, True])
def test_version_20_is_decoded_and_dispatched(split):
    (req,) = dispatch(h2_request(body=1), split=split)
    assert req._frame.version == 20
    assert req.http_version == "2"
    assert req.method == "POST" and req.target == b"/items?x=1" and req.scheme == "https"
    assert req.headers.get("cookie") == "a=1; b=2"
    assert req.has_body


def test_http_version_strings_for_each_version():
    reqs = dispatch(h2_request(1, 10), h2_request(3, 11), h2_request(5, 20))
    assert [r.http_version for r in reqs] == ["1.0", "1.1", "2"]
    runner = ASGIRunner(app=None)
    assert [runner.scope(r)["http_version"] for r in reqs] == ["1.0", "1.1", "2"]
    wsgi = WSGIRunner(app=lambda env, sr: [], threads=1)
    try:
        assert [wsgi.environ(r)["SERVER_PROTOCOL"] for r in reqs] == ["HTTP/1.0", "HTTP/1.1", "HTTP/2"]
    finally:
        wsgi.pool.shutdown(wait=False)


def test_asgi_scope_of_an_http2_request():
    (req,) = dispatch(h2_request())
    scope = ASGIRunner(app=None).scope(req)
    assert scope["http_version"] == "2"
    assert scope["scheme"] == "https"
    assert scope["method"] == "POST" and scope["path"] == "/items" and scope["query_string"] == b"x=1"
    assert scope["headers"] == H2_HEADERS
    assert scope["server"] == ("::1", 8443)


def test_wsgi_environ_of_an_http2_request():
    (req,) = dispatch(h2_request())
    wsgi = WSGIRunner(app=lambda env, sr: [], threads=1)
    try:
        env = wsgi.environ(req)
    finally:
        wsgi.pool.shutdown(wait=False)
    assert env["SERVER_PROTOCOL"] == "HTTP/2"
    assert env["wsgi.url_scheme"] == "https"
    assert env["HTTP_HOST"] == "example.com" and env["HTTP_COOKIE"] == "a=1; b=2"


@pytest.mark.parametrize("version", [9, 12, 19, 21])
def test_other_versions_are_a_field_value_error(version):
    data = GW_HELLO + P.encode(h2_request(version=version))
    conn = P.WorkerConnection(pid=1, lib="t", max_streams=8)
    conn.data_to_send()
    with pytest.raises(P.RemoteProtocolError) as exc:
        conn.receive_data(data)
    assert exc.value.name == "field_value"
