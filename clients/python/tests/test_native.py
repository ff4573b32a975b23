"""The native API end to end, through the real gateway, on every runtime."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time

import pytest

from conftest import RssMonitor, post_refused, raw_request

LOOPS = ["asyncio", "uvloop", "trio"]
MiB = 1 << 20


def native(loop: str, *extra: str) -> list[str]:
    return ["sluice", "--loop", loop, *extra, "native_app:app"]


@pytest.fixture(params=LOOPS)
def loop(request):
    if request.param == "uvloop":
        pytest.importorskip("uvloop")
    if request.param == "trio":
        pytest.importorskip("trio")
    return request.param


def test_request_head(gateway, loop):
    gw = gateway(native(loop))
    status, headers, body = gw.get("/info?a=1&b=two&a=3",
                                   headers={"X-Multi": "one", "User-Agent": "t/1"})
    assert status == 200
    assert headers["content-type"] == "application/json"
    assert headers["x-reply"] == "1"
    info = json.loads(body)
    assert info["method"] == "GET"
    assert info["path"] == "/info"
    assert info["query"] == "a=1&b=two&a=3"
    assert info["query_params"] == [["a", "1"], ["b", "two"], ["a", "3"]]
    assert info["agent"] == "t/1"
    assert info["has_multi"] is True
    assert info["client"][0] == "127.0.0.1" and info["client"][1] > 0
    assert info["http_version"] == "1.1"
    # repeated header fields are kept in order (raw request: http.client
    # would merge nothing, but be explicit)
    raw = raw_request(gw.port, b"GET /info HTTP/1.1\r\nHost: x\r\nX-Multi: a\r\nx-multi: b\r\n"
                               b"Connection: close\r\n\r\n")
    assert json.loads(raw.split(b"\r\n\r\n", 1)[1])["multi"] == ["a", "b"]


def test_body_and_streaming_echo(gateway, loop):
    gw = gateway(native(loop))
    data = os.urandom(5 * MiB + 17)
    status, _, body = gw.request("POST", "/body", body=data)
    assert status == 200
    assert json.loads(body) == {"n": len(data), "sha": hashlib.sha256(data).hexdigest()}
    status, headers, body = gw.request("POST", "/echo", body=data)
    assert status == 200 and body == data
    assert headers.get("transfer-encoding") == "chunked"
    # a GET has no body: body() is b""
    status, _, body = gw.get("/body")
    assert json.loads(body)["n"] == 0


def test_limit_lowered_gives_413(gateway, loop):
    gw = gateway(native(loop))
    status, _, body = gw.request("POST", "/small-limit", body=b"0123456789")
    assert (status, body) == (200, b"got 10")
    # LIMIT reaches the gateway while the request side is still open (the
    # body is larger than the window): 413. (A small body that already
    # ended when LIMIT arrives is not refused: PROTOCOL.md 3.9.)
    head = post_refused(gw.port, "/small-limit", 2 * MiB)
    assert head.startswith(b"HTTP/1.1 413"), head


def test_limit_raised_above_gateway_default(gateway, loop):
    gw = gateway(native(loop), "--max-body", "1k")
    data = os.urandom(3 * MiB)
    status, _, body = gw.request("POST", "/sha", body=data)
    assert status == 200
    assert json.loads(body)["sha"] == hashlib.sha256(data).hexdigest()
    # without raising it, the gateway's 1k limit applies
    head = post_refused(gw.port, "/body", len(data))
    assert head.startswith(b"HTTP/1.1 413"), head


def test_expect_continue_refused_without_reading(gateway, loop):
    gw = gateway(native(loop))
    with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as s:
        s.sendall(b"POST /auth HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n"
                  b"Expect: 100-continue\r\n\r\n")
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = s.recv(4096)
            assert chunk
            head += chunk
    assert head.startswith(b"HTTP/1.1 401")
    assert b"100 Continue" not in head


def test_handler_runs_in_its_task_from_the_first_step(gateway, loop):
    """asyncio.current_task() (what asyncio.timeout, TaskGroup, anyio and
    sniffio rely on) is the handler's own task before its first wait too,
    and the same task after it (the worker may start tasks eagerly)."""
    if loop == "trio":
        pytest.skip("asyncio task semantics")
    gw = gateway(native(loop))
    for _ in range(3):
        status, _, body = gw.get("/task")
        assert status == 200
        assert json.loads(body) == {"task": True, "same": True}


def test_exception_gives_500_and_worker_keeps_serving(gateway, loop):
    gw = gateway(native(loop))
    _, _, pid1 = gw.get("/pid")
    status, _, body = gw.get("/boom")
    assert status == 500 and body == b"Internal Server Error\n"
    status, _, _ = gw.get("/none")  # a handler that returns nothing
    assert status == 500
    status, _, body = gw.get("/hello")
    assert (status, body) == (200, b"hello\n")
    _, _, pid2 = gw.get("/pid")
    assert pid1 == pid2
    assert "ValueError: boom" in gw.log()


def test_client_disconnect_cancels_handler(gateway, loop):
    gw = gateway(native(loop))
    name = f"cancel-{loop}"
    s = socket.create_connection(("127.0.0.1", gw.port), timeout=5)
    s.sendall(f"GET /slow?{name} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    time.sleep(0.5)  # the handler is now sleeping
    s.close()
    path = os.path.join(gateway.tmp, name)
    deadline = time.monotonic() + 10
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.05)
    with open(path) as f:
        text = f.read()
    assert text == "cancelled disconnected=True reason=client_closed"
    status, _, _ = gw.get("/hello")
    assert status == 200


def test_streamed_response_waits_for_credit(gateway, loop):
    """A client that does not read stalls the handler's send(): the worker
    produces at most about a window plus socket buffers ahead."""
    gw = gateway(native(loop))
    total = 256 * MiB
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    s.settimeout(20)
    s.connect(("127.0.0.1", gw.port))
    try:
        s.sendall(f"GET /big?n={total} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        got = s.recv(65536)
        assert got.startswith(b"HTTP/1.1 200")
        time.sleep(1.0)
        _, _, stats = gw.get("/stats")  # another stream of the same worker
        sent = json.loads(stats)["sent"]
        assert sent < 32 * MiB, f"handler ran {sent} bytes ahead of a client that reads nothing"
        received = len(got)
        while received < total:  # now read everything: the handler resumes
            chunk = s.recv(1 << 20)
            assert chunk
            received += len(chunk)
    finally:
        s.close()
    _, _, stats = gw.get("/stats")
    assert json.loads(stats)["sent"] == total


def test_sigterm_finishes_in_flight_then_exits(gateway, loop):
    gw = gateway(native(loop))
    worker = gw.workers()[0]
    s = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
    s.sendall(b"GET /delay?1 HTTP/1.1\r\nHost: x\r\n\r\n")
    time.sleep(0.3)
    t0 = time.monotonic()
    gw.proc.send_signal(15)
    data = b""
    while b"done\n" not in data:
        chunk = s.recv(4096)
        assert chunk, data
        data += chunk
    s.close()
    assert data.startswith(b"HTTP/1.1 200")
    assert gw.proc.wait(10) == 0
    assert time.monotonic() - t0 < 8
    assert f"(pid {worker}) exited with status 0" in gw.log()


def test_worker_sigterm_retires_and_is_replaced(gateway, loop):
    """SIGTERM to the worker alone: RETIRE, in-flight request completes,
    the gateway answers DRAIN and starts a replacement."""
    gw = gateway(native(loop))
    worker = gw.workers()[0]
    s = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
    s.sendall(b"GET /delay?0.8 HTTP/1.1\r\nHost: x\r\n\r\n")
    time.sleep(0.3)
    os.kill(worker, 15)
    data = b""
    while b"done\n" not in data:
        chunk = s.recv(4096)
        assert chunk, data
        data += chunk
    s.close()
    assert gw.wait_log(f"(pid {worker}) exited with status 0")
    assert "retires: shutting down" in gw.log()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        status, _, body = gw.get("/pid")
        if status == 200 and int(body) != worker:
            break
        time.sleep(0.1)
    assert status == 200 and int(body) != worker


@pytest.mark.parametrize("loop_name", ["uvloop", "trio"])
def test_upload_200mib_bounded_rss(gateway, loop_name):
    pytest.importorskip(loop_name)
    gw = gateway(native(loop_name))
    worker = gw.workers()[0]
    gw.get("/hello")
    size = 200 * MiB
    block = os.urandom(MiB)
    h = hashlib.sha256()
    with RssMonitor(worker) as mon:
        s = socket.create_connection(("127.0.0.1", gw.port), timeout=30)
        s.sendall(f"POST /sha HTTP/1.1\r\nHost: x\r\nContent-Length: {size}\r\n\r\n".encode())
        for _ in range(size // MiB):
            s.sendall(block)
            h.update(block)
        data = b""
        while b"}" not in data:
            chunk = s.recv(4096)
            assert chunk
            data += chunk
        s.close()
    body = json.loads(data.split(b"\r\n\r\n", 1)[1])
    assert body == {"n": size, "sha": h.hexdigest()}
    peak_mib = mon.peak_kib() / 1024
    print(f"{loop_name}: worker peak RSS {peak_mib:.1f} MiB for a {size // MiB} MiB upload")
    assert mon.samples > 0
    assert peak_mib < 80, f"worker peak RSS {peak_mib:.1f} MiB"
