"""The go section of scripts/bench: its program (clients/go/internal/benchapp,
built as the section builds it) answers the same on both sides, through the
gateway and on net/http, and the section's check passes both and refuses a
server that answers one of the routes wrongly."""

import http.client
import importlib.machinery
import importlib.util
import os
import socket
import subprocess
import time

import pytest

from conftest import SLUICE, example, free_port

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def load_bench():
    """scripts/bench as a module (main() is not run)."""
    path = os.path.join(ROOT, "scripts", "bench")
    loader = importlib.machinery.SourceFileLoader("sluice_bench", path)
    mod = importlib.util.module_from_spec(importlib.util.spec_from_loader("sluice_bench", loader))
    loader.exec_module(mod)
    return mod


bench = load_bench()
B = bench.B
HELLO_PATH, HELLO = bench.GO_ROUTES[0]
STREAM_PATH, STREAM = bench.GO_ROUTES[1]


@pytest.fixture(scope="module")
def benchapp(tmp_path_factory):
    if not bench.go_cmd():
        pytest.skip("no go on PATH (nor /usr/local/go/bin/go)")
    app = str(tmp_path_factory.mktemp("benchapp") / "go-benchapp")
    line = bench.go_build(app)
    assert "GOFLAGS=-mod=readonly go build -o " in line and line.endswith(" ./internal/benchapp)"), line
    return app


@pytest.fixture
def plain(benchapp):
    """benchapp on net/http: its port."""
    port = free_port()
    p = subprocess.Popen(["env", "GOMAXPROCS=1", benchapp, "-listen", f"127.0.0.1:{port}"],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert p.poll() is None and time.monotonic() < deadline, "benchapp -listen did not start"
                time.sleep(0.05)
        yield port
    finally:
        p.terminate()
        p.wait(10)


@pytest.fixture(params=["gateway", "net/http"])
def side(request, benchapp):
    """The port of benchapp through the gateway or on net/http."""
    if request.param == "net/http":
        return request.getfixturevalue("plain")
    gw = request.getfixturevalue("start_gateway")(["env", "GOMAXPROCS=1", benchapp], workers=1)
    return gw.port


def get(port, path):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.getheaders(), r.read()
    finally:
        c.close()


def header(headers, name):
    vals = [v for k, v in headers if k.lower() == name.lower()]
    return vals[0] if vals else None


def test_routes(side):
    for path, body in bench.GO_ROUTES:
        bench.check_route(f"http://127.0.0.1:{side}{path}", body)
    status, hs, data = get(side, "/")
    assert (status, header(hs, "Content-Type"), data) == (200, "text/plain", b"Hello, world!\n")
    # streamed: no Content-Length, chunked on the wire, on both sides alike
    status, hs, data = get(side, STREAM_PATH)
    assert status == 200 and len(data) == 64 << 10 and data == STREAM
    assert header(hs, "Content-Length") is None and header(hs, "Transfer-Encoding") == "chunked", hs
    assert header(hs, "Content-Type") == "application/octet-stream"


@pytest.mark.parametrize("query,status,size", [("kb=5", 200, 5 << 10), ("kb=0", 200, 0), ("", 200, 64 << 10),
                                               ("kb=x", 400, None), ("kb=-1", 400, None),
                                               ("kb=65537", 400, None)])
def test_stream_sizes(side, query, status, size):
    got, _, data = get(side, "/stream?" + query)
    assert got == status
    if size is not None:
        assert data == (bench.GO_CHUNK * (size // 4096 + 1))[:size]


def test_unknown_path_is_404(side):
    assert get(side, "/nope")[0] == 404


@pytest.fixture
def pinned(monkeypatch):
    """B.Server pinned to a CPU this process may use, the gateway of this
    test run."""
    if not os.path.exists(SLUICE):
        pytest.skip(f"gateway binary not built: {SLUICE}")
    monkeypatch.setattr(B, "SERVER_CPU", str(min(os.sched_getaffinity(0))))
    monkeypatch.setattr(B, "SLUICE", SLUICE)


@pytest.mark.parametrize("route", [0, 1], ids=["hello", "stream"])
def test_section_servers_pass_the_check(benchapp, pinned, route):
    """Both servers of each table, as the section starts them, pass the
    check of both routes."""
    servers = bench.go_servers(benchapp, *bench.GO_ROUTES[route])
    with B.Servers(servers) as ss:
        for s in ss:
            assert "GOMAXPROCS=1" in s.argv
            s.check()


def test_check_refuses_a_wrong_route(pinned):
    """examples/c/hello answers hello on every path: measured on / it passes
    the plain check, but not the stream route's."""
    s = bench.RoutesServer("hello", [SLUICE, "--listen", "127.0.0.1:{port}", "--workers", "1", "--",
                                     example("hello")], label="c hello")
    with s:
        with pytest.raises(B.BenchError, match=r"c hello: .*/stream\?kb=64: wrong body \(14 bytes"):
            s.check()


def test_check_refuses_an_error_status(plain):
    with pytest.raises(B.BenchError, match="status 400"):
        bench.check_route(f"http://127.0.0.1:{plain}/stream?kb=x", b"kb: a number of KiB, 0 to 65536\n")
