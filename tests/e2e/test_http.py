"""HTTP/1.x behaviour of the gateway, the command line, and process
management, against the example C workers."""

import email.utils
import os
import re
import signal
import socket
import subprocess
import threading
import time

import pytest

from conftest import SLUICE, run_cli, example, free_port, proc_stat, descendants_of
from httpc import (Conn, ConnectionClosed, request_bytes, chunked, get,
                   blob_expected, blob_check)

HELLO_BODY = b"Hello, world!\n"


# --------------------------------------------------------------------------
# basics

def test_hello(start_gateway):
    gw = start_gateway("hello")
    r = get(gw.port, "/")
    assert r.status == 200, r
    assert r.body == HELLO_BODY, r
    assert r.framing == "length", r
    assert r.header("content-length") == str(len(HELLO_BODY)), r
    assert (r.header("content-type") or "").startswith("text/plain"), r
    assert r.version == "HTTP/1.1", r


def test_date_and_server_headers(start_gateway):
    gw = start_gateway("hello")
    before = time.time()
    r = get(gw.port, "/")
    assert r.status == 200, r
    server = r.header_all("server")
    assert len(server) == 1 and server[0].startswith("sluice/"), r
    dates = r.header_all("date")
    assert len(dates) == 1, r
    # IMF-fixdate, e.g. "Sun, 06 Nov 1994 08:49:37 GMT"
    assert re.fullmatch(r"[A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} "
                        r"\d\d:\d\d:\d\d GMT", dates[0]), dates[0]
    ts = email.utils.parsedate_to_datetime(dates[0]).timestamp()
    assert before - 2 <= ts <= time.time() + 2, (dates[0], before)


def test_keepalive_100_requests_one_connection(start_gateway):
    gw = start_gateway("hello")
    with Conn(gw.port) as c:
        local = c.sock.getsockname()
        for i in range(100):
            c.send(request_bytes("GET", f"/?i={i}"))
            try:
                r = c.read_response()
            except ConnectionClosed as e:
                pytest.fail(f"connection closed after {i} responses: {e}")
            assert r.status == 200, (i, r)
            assert r.body == HELLO_BODY, (i, r)
            assert not r.has_token("connection", "close"), (i, r)
        assert c.sock.getsockname() == local
        # and the connection is still usable
        assert c.wait_closed(0.2) is False


def test_pipelined_in_order(start_gateway):
    gw = start_gateway("blob")
    # The first responses are the largest, so a gateway that wrote responses
    # as workers finish them would reorder.
    sizes = [(10 - i) * 40000 + i for i in range(10)]
    data = b"".join(request_bytes("GET", f"/?n={n}") for n in sizes)
    with Conn(gw.port) as c:
        c.send(data)  # one write
        for i, n in enumerate(sizes):
            r = c.read_response()
            assert r.status == 200, (i, r)
            assert r.header("content-length") == str(n), (i, n, r.headers)
            assert len(r.body) == n, (i, n, len(r.body))
            assert blob_check(r.body, 0), f"response {i} (n={n}) has wrong bytes"
        assert c.wait_closed(0.2) is False


def test_pipelined_mixed_methods(start_gateway):
    """Pipelined GET, HEAD, chunked-response GET and GET: in order, the HEAD
    without a body, framing intact."""
    gw = start_gateway("blob")
    reqs = [("GET", "/?n=3"), ("HEAD", "/?n=5000"), ("GET", "/?n=7000&chunked=1"),
            ("GET", "/?n=11")]
    with Conn(gw.port) as c:
        c.send(b"".join(request_bytes(m, t) for m, t in reqs))
        for m, t in reqs:
            n = int(t.split("n=")[1].split("&")[0])
            r = c.read_response(m)
            assert r.status == 200, (m, t, r)
            if m == "HEAD":
                assert r.body == b"", r
            else:
                assert r.body == blob_expected(n), (m, t, r)


def test_head_has_no_body(start_gateway):
    gw = start_gateway("hello")
    with Conn(gw.port) as c:
        c.send(request_bytes("HEAD", "/"))
        r = c.read_head()
        assert r.status == 200, r
        # If the gateway sent a body, it would be read as the next status line.
        c.send(request_bytes("GET", "/"))
        r2 = c.read_response()
        assert r2.status == 200, r2
        assert r2.body == HELLO_BODY, r2
    assert r.header("content-length") in (None, str(len(HELLO_BODY))), r


def test_head_on_chunked_response_has_no_body(start_gateway):
    gw = start_gateway("blob")
    with Conn(gw.port) as c:
        c.send(request_bytes("HEAD", "/?n=5000&chunked=1"))
        r = c.read_head()
        assert r.status == 200, r
        c.send(request_bytes("GET", "/?n=10"))
        r2 = c.read_response()
        assert r2.status == 200, r2
        assert r2.body == blob_expected(10), r2


def test_http10_response_then_close(start_gateway):
    gw = start_gateway("hello")
    with Conn(gw.port, timeout=5) as c:
        c.send(b"GET / HTTP/1.0\r\n\r\n")
        r = c.read_response()
        assert r.status == 200, r
        assert r.body == HELLO_BODY, r
        assert c.wait_closed(3) is True, "HTTP/1.0 connection not closed by the gateway"
    assert r.version in ("HTTP/1.0", "HTTP/1.1"), r


def test_http10_close_delimited_body(start_gateway):
    """No Content-Length from the worker + HTTP/1.0 client: no chunked
    encoding; the body ends when the connection closes."""
    gw = start_gateway("blob")
    n = 300000
    with Conn(gw.port, timeout=5) as c:
        c.send(b"GET /?n=300000&chunked=1 HTTP/1.0\r\n\r\n")
        r = c.read_response()
    assert r.status == 200, r
    assert r.header("transfer-encoding") is None, r
    assert r.framing == "close", r
    assert len(r.body) == n, len(r.body)
    assert blob_check(r.body, 0)


def test_chunked_response_for_http11(start_gateway):
    gw = start_gateway("blob")
    with Conn(gw.port) as c:
        for n in (0, 1, 250000):
            c.send(request_bytes("GET", f"/?n={n}&chunked=1"))
            r = c.read_response()
            assert r.status == 200, (n, r)
            assert r.framing == "chunked", (n, r)
            assert r.header("content-length") is None, (n, r)
            assert r.body == blob_expected(n), (n, len(r.body))


def test_blob_content_length(start_gateway):
    gw = start_gateway("blob")
    with Conn(gw.port) as c:
        for n in (0, 1, 251, 252, 1000000):
            c.send(request_bytes("GET", f"/?n={n}"))
            r = c.read_response()
            assert r.status == 200, (n, r)
            assert r.framing == "length", (n, r)
            assert r.header("content-length") == str(n), (n, r)
            assert r.body == blob_expected(n), (n, len(r.body))


def test_connection_close_honoured(start_gateway):
    gw = start_gateway("hello")
    with Conn(gw.port, timeout=5) as c:
        c.send(request_bytes("GET", "/", [("Connection", "close")]))
        r = c.read_response()
        assert r.status == 200, r
        assert r.body == HELLO_BODY, r
        assert c.wait_closed(3) is True, "connection not closed after Connection: close"


def test_connection_close_after_pipelined(start_gateway):
    """Requests pipelined after one with Connection: close are not answered."""
    gw = start_gateway("hello")
    with Conn(gw.port, timeout=5) as c:
        c.send(request_bytes("GET", "/a") +
               request_bytes("GET", "/b", [("Connection", "close")]) +
               request_bytes("GET", "/c"))
        r1 = c.read_response()
        r2 = c.read_response()
        assert (r1.status, r2.status) == (200, 200), (r1, r2)
        extra = c.wait_closed(3)
        assert extra is True, f"expected close after the Connection: close response, got {extra!r}"


def test_post_content_length_echoed(start_gateway):
    gw = start_gateway("echo")
    body = os.urandom(200000)
    with Conn(gw.port) as c:
        c.send(request_bytes("POST", "/", body=body))
        r = c.read_response()
        assert r.status == 200, r
        assert r.body == body, (len(r.body), len(body))
        assert r.framing == "chunked", r
        assert (r.header("content-type") or "") == "application/octet-stream", r
        # empty body, same connection
        c.send(request_bytes("POST", "/", body=b""))
        r = c.read_response()
        assert r.status == 200, r
        assert r.body == b"", r
        # no body at all
        c.send(request_bytes("GET", "/"))
        r = c.read_response()
        assert r.status == 200, r
        assert r.body == b"", r


def test_chunked_request_body_echoed(start_gateway):
    gw = start_gateway("echo")
    pieces = [b"a", b"bc" * 100, os.urandom(70000), b"", b"z" * 4097]
    with Conn(gw.port) as c:
        c.send(request_bytes("POST", "/", [("Transfer-Encoding", "chunked")]) +
               chunked(pieces, trailers=[("X-Trailer", "1")]))
        r = c.read_response()
        assert r.status == 200, r
        assert r.body == b"".join(pieces), len(r.body)
        # the connection stays usable after a chunked request body
        c.send(request_bytes("POST", "/", [("Transfer-Encoding", "chunked")]) +
               chunked([b"second"]))
        r = c.read_response()
        assert r.status == 200, r
        assert r.body == b"second", r


def test_chunked_request_sent_slowly(start_gateway):
    """Chunk boundaries split across TCP segments at awkward places."""
    gw = start_gateway("echo")
    data = request_bytes("POST", "/", [("Transfer-Encoding", "chunked")]) + \
        chunked([b"hello ", b"world", b"!" * 300])
    with Conn(gw.port) as c:
        for i in range(0, len(data), 7):
            c.send(data[i:i + 7])
            time.sleep(0.002)
        r = c.read_response()
    assert r.status == 200, r
    assert r.body == b"hello world" + b"!" * 300, r


def test_pipelined_posts_echoed_in_order(start_gateway):
    gw = start_gateway("echo")
    bodies = [os.urandom(n) for n in (50000, 10, 0, 123456, 7)]
    with Conn(gw.port) as c:
        c.send(b"".join(request_bytes("POST", f"/?i={i}", body=b)
                        for i, b in enumerate(bodies)))
        for i, b in enumerate(bodies):
            r = c.read_response()
            assert r.status == 200, (i, r)
            assert r.body == b, (i, len(r.body), len(b))


def test_expect_100_continue_echo(start_gateway):
    gw = start_gateway("echo")
    body = os.urandom(100000)
    with Conn(gw.port, timeout=5) as c:
        c.send(request_bytes("POST", "/", [("Content-Length", str(len(body))),
                                           ("Expect", "100-continue")]))
        try:
            r = c.read_response()
        except socket.timeout:
            pytest.fail("no 100 Continue within 5 s while the worker reads the body")
        assert r.status == 100, f"expected 100 Continue first, got {r}"
        assert r.version == "HTTP/1.1" and r.reason == "Continue", r
        c.send(body)
        r, interim = c.read_final()
        assert interim == [], f"more than one 100 Continue: {interim}"
        assert r.status == 200, r
        assert r.body == body, (len(r.body), len(body))


def test_expect_100_continue_not_sent_when_worker_does_not_read(start_gateway):
    gw = start_gateway("hello")
    with Conn(gw.port, timeout=5) as c:
        c.send(request_bytes("POST", "/", [("Content-Length", "1000"),
                                           ("Expect", "100-continue")]))
        try:
            r = c.read_response()
        except socket.timeout:
            pytest.fail("no response within 5 s")
        assert r.status == 200, f"expected the 200 without a 100 Continue first, got {r}"
        assert r.body == HELLO_BODY, r


def test_large_header_section_under_limit_ok(start_gateway):
    gw = start_gateway("hello")
    headers = [(f"X-Filler-{i}", "v" * 900) for i in range(16)]  # ~15 KiB
    r = get(gw.port, "/", headers=headers)
    assert r.status == 200, r


def test_long_target_under_limit_ok(start_gateway):
    gw = start_gateway("hello")
    r = get(gw.port, "/" + "a" * 4000)
    assert r.status == 200, r


# --------------------------------------------------------------------------
# concurrency

def test_concurrent_clients(start_gateway):
    gw = start_gateway("blob")
    errors = []
    counts = [0] * 20

    def client(t):
        try:
            with Conn(gw.port, timeout=20) as c:
                for i in range(20):
                    n = 1000 + t * 397 + i * 31
                    chunk = "&chunked=1" if (t + i) % 3 == 0 else ""
                    c.send(request_bytes("GET", f"/?n={n}{chunk}"))
                    r = c.read_response()
                    if r.status != 200 or r.body != blob_expected(n):
                        errors.append((t, i, n, r.status, len(r.body)))
                        return
                    counts[t] += 1
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append((t, repr(e)))

    threads = [threading.Thread(target=client, args=(t,)) for t in range(20)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    assert not any(th.is_alive() for th in threads), "client threads hung"
    assert errors == [], errors[:5]
    assert counts == [20] * 20


def test_hello_delay_is_asynchronous(start_gateway):
    """Other streams on the same worker continue while one is delayed."""
    gw = start_gateway("hello", workers=1)
    result = {}

    def slow():
        result["slow"] = get(gw.port, "/?delay=1500", timeout=10)

    th = threading.Thread(target=slow)
    t0 = time.monotonic()
    th.start()
    time.sleep(0.2)
    r = get(gw.port, "/", timeout=10)
    fast = time.monotonic() - t0
    th.join(10)
    slow_t = time.monotonic() - t0
    assert r.status == 200, r
    assert fast < 1.2, f"fast request took {fast:.2f}s behind a delayed one"
    assert result["slow"].status == 200, result
    assert slow_t >= 1.4, f"?delay=1500 answered after {slow_t:.2f}s"


# --------------------------------------------------------------------------
# timeouts on the client side

def test_header_timeout(start_gateway):
    gw = start_gateway("hello", "--header-timeout", "1s")
    with Conn(gw.port, timeout=5) as c:
        c.send(b"GET / HTTP/1.1\r\nHost: x\r\n")  # never finished
        t0 = time.monotonic()
        got = c.wait_closed(5)
        elapsed = time.monotonic() - t0
    if isinstance(got, bytes):
        assert got.startswith(b"HTTP/1.1 408"), f"unexpected bytes {got[:100]!r}"
    else:
        assert got is True, "connection still open 5 s after a 1 s header timeout"
    assert 0.7 <= elapsed <= 3.5, f"closed after {elapsed:.2f}s with --header-timeout 1s"


def test_keepalive_timeout(start_gateway):
    gw = start_gateway("hello", "--keepalive-timeout", "1s")
    with Conn(gw.port, timeout=5) as c:
        c.send(request_bytes("GET", "/"))
        r = c.read_response()
        assert r.status == 200, r
        t0 = time.monotonic()
        got = c.wait_closed(5)
        elapsed = time.monotonic() - t0
    assert got is True, f"idle keep-alive connection not closed (got {got!r})"
    assert 0.7 <= elapsed <= 3.5, f"closed after {elapsed:.2f}s with --keepalive-timeout 1s"


def test_idle_after_a_large_response_is_keepalive_not_header_timeout(start_gateway):
    """A response still queued in the gateway when its exchange ends (the
    client reads slowly) must leave an idle keep-alive connection behind,
    timed by --keepalive-timeout, not by --header-timeout as if a request
    head had started."""
    gw = start_gateway("blob", "--header-timeout", "1s", "--keepalive-timeout", "30s",
                       workers=1)
    n = 200000  # within the worker's credit: the whole body and END at once
    with Conn(gw.port, timeout=10, rcvbuf=16 * 1024) as c:
        c.send(request_bytes("GET", f"/?n={n}"))
        time.sleep(0.5)  # not read yet: most of the body waits in the gateway
        r = c.read_head()
        assert r.status == 200, r
        got = sum(len(p) for p in c.iter_body(r, chunk=65536))
        assert got == n
        time.sleep(2.5)  # idle: well past the header timeout
        c.send(request_bytes("GET", "/?n=10"))
        r = c.read_response()
        assert r.status == 200 and r.body == bytes(range(10)), r


def test_duration_in_milliseconds(start_gateway):
    gw = start_gateway("hello", "--keepalive-timeout", "300ms")
    with Conn(gw.port, timeout=5) as c:
        c.send(request_bytes("GET", "/"))
        assert c.read_response().status == 200
        t0 = time.monotonic()
        assert c.wait_closed(3) is True
        elapsed = time.monotonic() - t0
    assert elapsed < 1.5, f"300ms keep-alive timeout took {elapsed:.2f}s"


# --------------------------------------------------------------------------
# command line

def test_cli_help():
    p = run_cli("--help")
    assert p.returncode == 0, p
    out = p.stdout.decode()
    assert "--listen" in out and "--workers" in out, f"usage not on stdout: {p}"


def test_cli_help_is_complete():
    """Every option the README's table lists is in --help, which also says
    that --admin takes unix:PATH and durations take hours; no printf
    escapes leak into the text."""
    out = run_cli("--help").stdout.decode()
    readme = open(os.path.join(os.path.dirname(__file__), "..", "..", "README.md")).read()
    table = re.findall(r"^\| `(-[^`]+)`", readme, re.M)
    assert len(table) > 20, table
    for row in table:
        for opt in re.findall(r"--?[a-zA-Z][-a-zA-Z]*", row):
            assert opt in out, f"{opt} (README) missing from --help"
    assert "unix:PATH" in out and "1h" in out, out
    load = os.path.join(os.path.dirname(SLUICE), "load", "sluice-load")
    if os.path.exists(load):
        text = subprocess.run([load, "--help"], capture_output=True, timeout=10).stdout.decode()
        assert "%%" not in text and "usage" in text, text


SCRIPTS = ["demo", "test", "e2e", "fuzz", "valgrind", "install-deps", "bench",
           "bench-gateway", "bench-load", "bench-node", "bench-python",
           "test-python", "test-node"]


@pytest.mark.parametrize("name", SCRIPTS)
def test_script_help(name):
    """Every script answers --help with its usage, at once (no build, no
    install, no run)."""
    path = os.path.join(os.path.dirname(__file__), "..", "..", "scripts", name)
    p = subprocess.run([path, "--help"], capture_output=True, timeout=30, stdin=subprocess.DEVNULL)
    assert p.returncode == 0, p
    out = p.stdout.decode()
    assert f"scripts/{name}" in out or "usage" in out, out
    assert "\n#" not in out and not out.startswith("#"), out


@pytest.mark.parametrize("args", [["fuzz", "--help-me"], ["fuzz", "abc"], ["fuzz", "10", "20"],
                                  ["demo", "bogus"], ["install-deps", "x"], ["test", "--bogus"],
                                  ["valgrind", "--bogus"], ["bench", "--bogus"]],
                         ids=lambda a: " ".join(a))
def test_script_rejects_bad_arguments(args):
    path = os.path.join(os.path.dirname(__file__), "..", "..", "scripts", args[0])
    p = subprocess.run([path, *args[1:]], capture_output=True, timeout=30, stdin=subprocess.DEVNULL)
    assert p.returncode == 2, p
    assert p.stderr.strip(), p


def test_cli_version():
    p = run_cli("--version")
    assert p.returncode == 0, p
    assert re.fullmatch(r"sluice \d+\.\d+\.\d+\s*", p.stdout.decode()), p


def test_cli_unknown_flag():
    p = run_cli("--bogus-flag", "--", "/bin/true")
    assert p.returncode != 0, p
    err = p.stderr.decode()
    assert err.strip(), "no message on stderr for an unknown flag"
    assert "bogus" in err, f"stderr does not name the flag: {err!r}"


def test_cli_bad_size_rejected():
    try:
        p = run_cli("--listen", f"127.0.0.1:{free_port()}", "--max-body", "12q",
                    "--", "/bin/true", timeout=5)
    except subprocess.TimeoutExpired:
        pytest.fail("--max-body 12q accepted: the gateway started")
    assert p.returncode != 0, p
    assert p.stderr.strip(), p


# --------------------------------------------------------------------------
# process management and logs

def test_workers_spawned_with_socket_env(start_gateway):
    """N workers are spawned, with SLUICE_SOCKET set, inheriting stderr."""
    script = f'echo "probe-env SLUICE_SOCKET=$SLUICE_SOCKET" >&2; exec "{example("hello")}"'
    gw = start_gateway(["/bin/sh", "-c", script], workers=3)
    workers = gw.wait_workers(3)
    assert len(workers) == 3, f"expected 3 worker processes, found {workers}"
    # the line the worker printed (the gateway's start-up line quotes the command too)
    line = gw.wait_log(lambda l: l.startswith("probe-env SLUICE_SOCKET="), timeout=5)
    assert line is not None, "worker stderr not inherited (probe line missing)"
    sock = line.split("SLUICE_SOCKET=", 1)[1].strip()
    assert sock, f"SLUICE_SOCKET empty: {line!r}"
    assert sock.startswith(gw.sock_dir + "/"), \
        f"SLUICE_SOCKET {sock!r} is not in --socket-dir {gw.sock_dir}"
    r = get(gw.port, "/")
    assert r.status == 200, r


def test_worker_restarted_after_exit(start_gateway):
    gw = start_gateway("hello", workers=2)
    before = gw.wait_workers(2)
    assert len(before) == 2, before
    victim = before[0]
    os.kill(victim, signal.SIGKILL)
    after = gw.wait_workers(2, timeout=10, exclude=(victim,))
    assert len(after) >= 2, f"worker {victim} not replaced within 10 s: {after}"
    for _ in range(5):
        r = get(gw.port, "/")
        assert r.status == 200, r


def test_access_log_to_stderr(start_gateway):
    gw = start_gateway("hello")
    r = get(gw.port, "/access-log-probe-7391")
    assert r.status == 200, r
    line = gw.wait_log(lambda l: "/access-log-probe-7391" in l, timeout=3)
    assert line is not None, "no access log line on stderr"
    assert "200" in line and "GET" in line, line


def test_access_log_of_refused_requests(start_gateway):
    """Requests the gateway answers itself are logged with the method and
    target when the request line was parsed, and the body bytes sent."""
    gw = start_gateway("hello", "--max-header-bytes", "4k")

    cases = [  # request, status, what the log line must hold
        (b"GET /big-head-4410 HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 8000 + b"\r\n\r\n",
         431, '"GET /big-head-4410 HTTP/1.1" 431 '),
        (b"POST /expect-5521 HTTP/1.0\r\nExpect: x-other\r\nContent-Length: 9\r\n\r\n",
         417, '"POST /expect-5521 HTTP/1.0" 417 '),
        (b"GET /\x01bad HTTP/1.1\r\n\r\n", 400, '"GET - HTTP/1.1" 400 '),  # line not parsed
    ]
    for data, status, logged in cases:
        with socket.create_connection(("127.0.0.1", gw.port), timeout=5) as s:
            s.sendall(data)
            raw = b""
            while chunk := s.recv(65536):
                raw += chunk
        assert raw.startswith(b"HTTP/1.1 %d " % status), raw[:100]
        body = raw.split(b"\r\n\r\n", 1)[1]
        line = gw.wait_log(lambda ln: logged in ln, timeout=3)
        assert line is not None, gw.log_tail()
        assert f"{logged}{len(body)} " in line, line


def test_access_log_to_file_and_off(start_gateway, tmp_path):
    path = tmp_path / "access.log"
    gw = start_gateway("hello", "--access-log", str(path))
    assert get(gw.port, "/file-probe-5521").status == 200
    deadline = time.monotonic() + 3
    text = ""
    while time.monotonic() < deadline:
        text = path.read_text() if path.exists() else ""
        if "/file-probe-5521" in text:
            break
        time.sleep(0.05)
    assert "/file-probe-5521" in text, f"access log file content: {text!r}"
    assert "/file-probe-5521" not in gw.log(), "access log also on stderr"

    gw2 = start_gateway("hello", "--access-log", "off")
    assert get(gw2.port, "/off-probe-8812").status == 200
    time.sleep(0.3)
    assert "/off-probe-8812" not in gw2.log(), "--access-log off still logs"


def start_inflight(gw, path):
    """A GET of `path` in a thread, under way when this returns; the thread
    and its result dict ("r": response or "e": exception)."""
    result = {}

    def inflight():
        try:
            result["r"] = get(gw.port, path, timeout=10)
        except Exception as e:  # noqa: BLE001
            result["e"] = e

    th = threading.Thread(target=inflight)
    th.start()
    time.sleep(0.3)
    return th, result


def test_sigterm_graceful_exit(start_gateway):
    gw = start_gateway("hello", workers=2)
    workers = gw.wait_workers(2)
    th, result = start_inflight(gw, "/?delay=1000")
    code = gw.terminate(timeout=8)
    th.join(10)
    assert code == 0, f"gateway exit code after SIGTERM: {code}"
    assert "r" in result, f"in-flight request failed during graceful stop: {result}"
    assert result["r"].status == 200, result["r"]
    assert result["r"].body == HELLO_BODY, result["r"]
    # its workers are gone too
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and any(os.path.exists(f"/proc/{p}/stat")
                                              and _alive(p) for p in workers):
        time.sleep(0.05)
    left = [p for p in workers if _alive(p)]
    assert left == [], f"workers still running after the gateway exited: {left}"
    # and it no longer listens
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", gw.port), timeout=1).close()


@pytest.mark.parametrize("when", ["serving", "starting"])
def test_ctrl_c_to_process_group_is_quiet(start_gateway, when):
    """A terminal's Ctrl-C sends SIGINT to the whole foreground process
    group. The gateway alone must get it (workers run in their own group)
    and stop them in order: an in-flight request completes, nothing is
    respawned, exit 0, and the log has no warning or error. The same right
    after start-up, before the workers said HELLO."""
    gw = start_gateway("hello", workers=2, new_session=True, wait=(when == "serving"))
    th = None
    if when == "serving":
        gw.wait_workers(2)
        assert get(gw.port, "/").status == 200
        th, result = start_inflight(gw, "/?delay=800")
    else:
        gw.wait_log(lambda line: "started worker 2" in line, timeout=5)
    gw._remember(descendants_of(gw.pid))
    os.killpg(gw.pid, signal.SIGINT)
    try:
        code = gw.proc.wait(10)
    except subprocess.TimeoutExpired:
        code = None
    if th:
        th.join(10)
        assert "r" in result and result["r"].status == 200, f"in-flight request: {result}"
    log = gw.log()
    assert code == 0, f"exit code {code}\n{log}"
    bad = [ln for ln in log.splitlines() if "[warn]" in ln or "[error]" in ln]
    assert bad == [], "\n".join(bad)
    started = [ln for ln in log.splitlines() if "started worker" in ln]
    assert len(started) == 2, "a worker was respawned while stopping:\n" + log


def _alive(pid):
    return proc_stat(pid) is not None
