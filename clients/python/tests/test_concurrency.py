"""Concurrency out of the box, and an exact count of open requests under
load with clients that go away: through the real gateway, one worker."""

from __future__ import annotations

import http.client
import shutil
import socket
import subprocess
import threading
import time

import pytest

ASYNC_WORKERS = {
    "native-asyncio": ["sluice", "--loop", "asyncio", "load_apps:native"],
    "native-uvloop": ["sluice", "--loop", "uvloop", "load_apps:native"],
    "native-trio": ["sluice", "--loop", "trio", "load_apps:native"],
    "asgi": ["sluice.asgi", "load_apps:asgi"],
}


def _skip_missing(name: str) -> None:
    for lib in ("uvloop", "trio"):
        if lib in name:
            pytest.importorskip(lib)


def get(port: int, path: str, timeout: float = 20.0) -> tuple[int, bytes]:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


@pytest.mark.parametrize("name", list(ASYNC_WORKERS))
def test_default_settings_serve_256_requests_at_once(gateway, name):
    """A 50 ms handler, 256 simultaneous requests, default settings: more
    than 64 (the old default max_streams) are inside the handler at once."""
    _skip_missing(name)
    gw = gateway(ASYNC_WORKERS[name])
    assert get(gw.port, "/max")[0] == 200
    n = 256
    socks = [socket.create_connection(("127.0.0.1", gw.port), timeout=30) for _ in range(n)]
    results: list = [None] * n
    go = threading.Barrier(n)

    def one(i: int) -> None:
        s = socks[i]
        go.wait()
        s.sendall(b"GET /sleep HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while b"ok\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        results[i] = data

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for s in socks:
        s.close()
    assert all(r is not None and r.startswith(b"HTTP/1.1 200") for r in results), \
        [r[:40] if r else r for r in results if not (r and r.startswith(b"HTTP/1.1 200"))][:5]
    status, body = get(gw.port, "/max")
    assert status == 200
    inside = int(body)
    print(f"{name}: up to {inside} requests inside the handler at once")
    assert inside > 64, f"only {inside} requests ran at once"


# -- the count of open requests -------------------------------------------------

def keepalive_load(port: int, path: str, conns: int, seconds: float) -> int:
    """`conns` keep-alive connections sending requests for `seconds`."""
    stop = time.monotonic() + seconds
    done = [0]

    def run() -> None:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
        try:
            while time.monotonic() < stop:
                c.request("GET", path)
                r = c.getresponse()
                r.read()
                done[0] += 1
        except OSError:
            pass
        finally:
            c.close()

    threads = [threading.Thread(target=run) for _ in range(conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 30)
    return done[0]


def quitters(port: int, path: str, rounds: int, stop: threading.Event) -> None:
    """Clients that go away mid-request: right after sending the head (the
    REQUEST and its CANCEL reach the worker together), a little later (the
    handler is running), or in the middle of a request body."""
    i = 0
    while i < rounds and not stop.is_set():
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            kind = i % 3
            if kind == 2:
                s.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n".encode()
                          + b"x" * 1000)
            else:
                s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            if kind == 1:
                time.sleep(0.02)
            s.close()
        except OSError:
            pass
        i += 1


def load_then_sigterm(gw, path: str, use_wrk: bool) -> None:
    stop = threading.Event()
    q = [threading.Thread(target=quitters, args=(gw.port, path, 150, stop)) for _ in range(6)]
    for t in q:
        t.start()
    try:
        if use_wrk:
            subprocess.run(["wrk", "-t1", "-c64", "-d2s", f"http://127.0.0.1:{gw.port}{path}"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60, check=False)
        assert keepalive_load(gw.port, path, 32, 1.5) > 0
    finally:
        stop.set()
        for t in q:
            t.join(30)
    time.sleep(0.5)  # the gateway has sent the last CANCELs
    assert get(gw.port, path)[0] == 200
    t0 = time.monotonic()
    rc = gw.terminate(20)
    took = time.monotonic() - t0
    log = gw.log()
    drain = [line for line in log.splitlines() if "DRAIN received" in line]
    assert drain and drain[-1].endswith("finishing 0 open requests"), drain
    assert rc == 0, log[-3000:]
    assert took < 1.0, f"the gateway and its worker took {took:.1f}s to exit after SIGTERM"


def test_wsgi_count_exact_under_load_then_quick_exit(gateway):
    gw = gateway(["sluice.wsgi", "load_apps:wsgi"])
    load_then_sigterm(gw, "/", use_wrk=shutil.which("wrk") is not None)


def test_asgi_count_exact_with_clients_going_away_then_quick_exit(gateway):
    gw = gateway(["sluice.asgi", "load_apps:asgi"])
    load_then_sigterm(gw, "/sleep", use_wrk=False)


@pytest.mark.parametrize("name", ["native-uvloop", "native-trio"])
def test_native_count_exact_with_clients_going_away_then_quick_exit(gateway, name):
    _skip_missing(name)
    gw = gateway(ASYNC_WORKERS[name])
    load_then_sigterm(gw, "/sleep", use_wrk=False)
