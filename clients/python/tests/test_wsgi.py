"""The WSGI adapter with a real Flask application."""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time

import pytest

from conftest import RssMonitor

pytest.importorskip("flask")
MiB = 1 << 20


def flask(*extra: str) -> list[str]:
    return ["sluice.wsgi", *extra, "flask_app:app"]


def test_flask_routes_json_forms(gateway):
    gw = gateway(flask())
    status, headers, body = gw.get("/")
    assert (status, body) == (200, b"hello flask")
    assert headers["content-length"] == "11"
    status, _, body = gw.get("/users/ada?x=1", headers={"X-Multi": "a"})
    assert json.loads(body) == {"user": "ada", "q": {"x": "1"}, "multi": ["a"], "remote": "127.0.0.1"}
    status, _, body = gw.request("POST", "/json", body=b'{"k": [1, "two"]}',
                                 headers={"content-type": "application/json"})
    assert json.loads(body) == {"got": {"k": [1, "two"]}}
    status, _, body = gw.request("POST", "/form", body=b"a=1&b=x+y",
                                 headers={"content-type": "application/x-www-form-urlencoded"})
    assert json.loads(body) == {"a": "1", "b": "x y"}
    boundary = "bnd"
    data = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"f\"; filename=\"x.txt\"\r\n\r\n"
            f"{'z' * 1000}\r\n--{boundary}--\r\n").encode()
    status, _, body = gw.request("POST", "/form", body=data,
                                 headers={"content-type": f"multipart/form-data; boundary={boundary}"})
    assert json.loads(body) == {"f": {"filename": "x.txt", "size": 1000}}
    assert gw.get("/missing")[0] == 404


def test_flask_streaming_upload_bounded_rss_and_streamed_response(gateway):
    gw = gateway(flask())
    worker = gw.workers()[0]
    gw.get("/")
    data = os.urandom(64 * MiB)
    with RssMonitor(worker) as mon:
        status, _, body = gw.request("POST", "/upload", body=data)
    assert status == 200
    assert json.loads(body) == {"n": len(data), "sha": hashlib.sha256(data).hexdigest()}
    assert mon.peak_kib() / 1024 < 100
    status, headers, body = gw.get("/stream")
    assert body == b"".join(f"line {i}\n".encode() for i in range(50))
    assert headers.get("transfer-encoding") == "chunked"


def test_flask_exception_500_keeps_serving(gateway):
    gw = gateway(flask())
    pid = gw.get("/pid")[2]
    assert gw.get("/boom")[0] == 500
    assert gw.get("/")[0] == 200
    assert gw.get("/pid")[2] == pid
    assert "RuntimeError: boom" in gw.log()


def test_flask_threads_serve_concurrently(gateway):
    gw = gateway(flask("--threads", "4"))
    results = []

    def call():
        results.append(gw.get("/sleep?s=0.6"))

    t0 = time.monotonic()
    threads = [threading.Thread(target=call) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    elapsed = time.monotonic() - t0
    assert [r[0] for r in results] == [200] * 4
    assert len({json.loads(r[2])["thread"] for r in results}) == 4
    assert elapsed < 2.0, f"4 requests of 0.6 s took {elapsed:.2f}s with 4 threads"
    assert "4 streams" in gw.log()  # max_streams = threads, announced in HELLO


def test_streamed_iterable_many_chunks_in_order(gateway):
    """10,000 small chunks from a generator arrive whole and in order (the
    thread queues them; one loop task sends them)."""
    gw = gateway(flask("--threads", "2"))
    status, headers, body = gw.get("/many?n=10000&size=100")
    assert status == 200
    assert body == b"".join(bytes([65 + i % 26]) * 100 for i in range(10000))
    assert headers.get("transfer-encoding") == "chunked"
    assert gw.get("/")[0] == 200


def test_streamed_response_backpressure_blocks_the_app_thread(gateway):
    """A client that does not read: the generator is held back (credit plus
    the sender's queue plus socket buffers), not run to the end."""
    import socket
    gw = gateway(flask("--threads", "2"))
    total = 4000 * 65536  # 250 MiB if nothing held it back
    s = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    try:
        s.sendall(b"GET /many?n=4000&size=65536 HTTP/1.1\r\nHost: x\r\n\r\n")
        s.recv(1024)
        time.sleep(1.5)
        made = int(gw.get("/produced")[2])
        assert 0 < made < 32 * MiB, f"the app produced {made} bytes for a client that reads nothing"
        time.sleep(0.5)
        assert int(gw.get("/produced")[2]) == made, "the app kept producing"
        got = 0
        deadline = time.monotonic() + 60
        while got < 8 * MiB and time.monotonic() < deadline:
            got += len(s.recv(1 << 20))
        assert int(gw.get("/produced")[2]) > made, "reading did not let the app go on"
    finally:
        s.close()
    assert gw.get("/")[0] == 200
