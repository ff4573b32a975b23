"""The ASGI adapter with real Starlette and FastAPI applications."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time

import pytest

pytest.importorskip("starlette")

MiB = 1 << 20


def asgi(app: str, *extra: str) -> list[str]:
    return ["sluice.asgi", *extra, app]


@pytest.fixture(params=["asyncio", "uvloop"])
def star(gateway, request):
    if request.param == "uvloop":
        pytest.importorskip("uvloop")
    return gateway(asgi("star_app:app", "--loop", request.param))


def multipart(fields: dict, files: dict) -> tuple[bytes, str]:
    boundary = "sluiceboundary42"
    parts = []
    for k, v in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode())
    for k, (fname, data) in files.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"; filename="{fname}"\r\n'
                     f'Content-Type: application/octet-stream\r\n\r\n'.encode() + data + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def test_starlette_routing_lifespan_state(star):
    status, headers, body = star.get("/")
    assert (status, body) == (200, b"hello from lifespan")
    assert headers["content-type"].startswith("text/plain")
    status, _, body = star.get("/users/ada?x=1&y=2", headers={"X-Multi": "a"})
    assert status == 200
    got = json.loads(body)
    assert got == {"user": "ada", "q": {"x": "1", "y": "2"}, "client": "127.0.0.1", "multi": ["a"]}
    status, _, _ = star.get("/no/such/route")
    assert status == 404


def test_starlette_json_and_forms(star):
    status, _, body = star.request("POST", "/json", body=json.dumps({"a": [1, 2]}).encode(),
                                   headers={"content-type": "application/json"})
    assert (status, json.loads(body)) == (200, {"got": {"a": [1, 2]}})
    status, _, body = star.request("POST", "/form", body=b"name=ada&lang=py",
                                   headers={"content-type": "application/x-www-form-urlencoded"})
    assert json.loads(body) == {"name": "ada", "lang": "py"}
    data, ctype = multipart({"title": "t"}, {"file": ("a.bin", os.urandom(300_000))})
    status, _, body = star.request("POST", "/form", body=data, headers={"content-type": ctype})
    assert status == 200
    assert json.loads(body) == {"title": "t", "file": {"filename": "a.bin", "size": 300_000}}


def test_starlette_streaming_both_ways(star):
    data = os.urandom(8 * MiB + 5)
    status, _, body = star.request("POST", "/upload", body=data)
    assert status == 200
    assert json.loads(body) == {"n": len(data), "sha": hashlib.sha256(data).hexdigest()}
    status, headers, body = star.get("/stream")
    assert status == 200
    assert headers.get("transfer-encoding") == "chunked"
    assert body == b"".join(f"line {i}\n".encode() for i in range(100))


def test_starlette_exception_is_500_and_worker_survives(star):
    status, _, _ = star.get("/boom")
    assert status == 500
    status, _, body = star.get("/")
    assert status == 200
    assert "RuntimeError: boom" in star.log()


def test_starlette_disconnect_stops_streaming_response(gateway):
    gw = gateway(asgi("star_app:app"))
    s = socket.create_connection(("127.0.0.1", gw.port), timeout=5)
    s.sendall(b"GET /forever HTTP/1.1\r\nHost: x\r\n\r\n")
    assert s.recv(4096).startswith(b"HTTP/1.1 200")
    s.close()
    path = os.path.join(gateway.tmp, "forever-stopped")
    deadline = time.monotonic() + 10
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert os.path.exists(path), "the streaming generator was not stopped after http.disconnect"
    assert gw.get("/")[0] == 200


def test_starlette_lifespan_shutdown_on_sigterm(gateway):
    gw = gateway(asgi("star_app:app"))
    assert gw.get("/")[0] == 200
    assert gw.terminate(10) == 0
    with open(os.path.join(gateway.tmp, "starlette-shutdown")) as f:
        assert f.read() == "shutdown"


def test_fastapi(gateway):
    pytest.importorskip("fastapi")
    gw = gateway(asgi("fastapi_app:app"))
    status, _, body = gw.get("/items/42?q=abc")
    assert (status, json.loads(body)) == (200, {"item_id": 42, "q": "abc"})
    status, _, body = gw.get("/items/notanint")
    assert status == 422
    status, _, body = gw.request("POST", "/items", body=json.dumps({"name": "x", "price": 2.5, "tags": ["a"]}).encode(),
                                 headers={"content-type": "application/json"})
    assert (status, json.loads(body)) == (200, {"name": "x", "total": 5.0, "tags": ["a"]})
    status, _, body = gw.request("POST", "/items", body=b'{"name": 1}', headers={"content-type": "application/json"})
    assert status == 422
    form = {"content-type": "application/x-www-form-urlencoded"}
    status, _, body = gw.request("POST", "/login", body=b"username=ada&password=secret", headers=form)
    assert (status, json.loads(body)) == (200, {"user": "ada"})
    status, _, body = gw.request("POST", "/login", body=b"username=ada&password=nope", headers=form)
    assert (status, json.loads(body)) == (401, {"detail": "bad password"})
    status, _, body = gw.get("/numbers")
    assert (status, body) == (200, b"".join(f"{i}\n".encode() for i in range(10)))
    status, _, body = gw.get("/sync")
    assert json.loads(body) == {"sync": True}
    status, _, _ = gw.get("/boom")
    assert status == 500
    assert gw.get("/items/1")[0] == 200
