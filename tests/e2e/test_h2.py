"""HTTP/2 end to end: the real gateway and the example workers over loopback,
driven by curl (h2c with prior knowledge, ALPN h2 over TLS), nghttp, and the
`h2` package over raw sockets (tests/e2e/h2client.py) where a test needs
frames: flow control, resets, trailers, GOAWAY.

Covered: h2c beside HTTP/1.1 on one plain port, ALPN on TLS ports,
`--http2 off|only`; response heads (lower-case names, server/date,
connection-specific fields dropped), HEAD, 204; 100 concurrent streams;
request bodies echoed byte for byte with the server's WINDOW_UPDATEs
audited; upload backpressure; a 50 MiB slow download with bounded gateway
memory; trailers both ways; cookies joined, Host from :authority, REQUEST
version 20; RST_STREAM and a closed connection reaching the worker as
CANCEL; GOAWAY on SIGTERM, on keep-alive timeout and after
--max-requests-per-conn; a dying worker, queue and response timeouts, 413;
the access log.

The flood and protocol-abuse defences are in test_h2_defences.py; h2spec
in test_h2spec.py.
"""

import hashlib
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time

import pytest

from conftest import SANITIZED, RssMonitor, free_port, proc_status_kib, rss_limit_kib
from conformance_util import read_all, reflect_cmd
from h2client import H2Conn, H2Error, client_tls_context
from httpc import Conn, blob_check, blob_first_mismatch, get, request_bytes
from pools_util import status, wait_for
from test_tls import certs, start_tls  # noqa: F401 (certs: fixture)

MiB = 1 << 20
HELLO = b"Hello, world!\n"
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
NO_ERROR, INTERNAL_ERROR, CANCEL = 0, 2, 8
BADWORKER = os.path.join(os.path.dirname(__file__), "badworker.py")
HOP_BY_HOP = {b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade",
              b"te"}

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def need(tool):
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} not installed")


def run(argv, timeout=30):
    return subprocess.run(argv, capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)


def curl(*args, timeout=30):
    """curl -sS ARGS -w '%{http_version} %{http_code}'; returns (rc, version, code, out)."""
    r = run(["curl", "-sS", "--max-time", str(timeout - 5), *args,
             "-w", "\n%{http_version} %{http_code}"], timeout=timeout)
    body, _, tail = r.stdout.rpartition(b"\n")
    ver, _, code = tail.decode().partition(" ")
    return r.returncode, ver, code, body, r.stderr


def bad_cmd(mode, tmp_path):
    """badworker MODE, misbehaving on one request only (then correct)."""
    return ["/usr/bin/env", f"SLUICE_BADWORKER_MARK={tmp_path / 'mark'}",
            sys.executable, BADWORKER, mode]


def admin_gateway(start_gateway, worker, *args, **kw):
    port = free_port()
    gw = start_gateway(worker, "--admin", f"127.0.0.1:{port}", *args, **kw)
    gw.admin_port = port
    assert wait_for(lambda: _admin_ok(port), 10), "admin listener not up"
    return gw


def _admin_ok(port):
    try:
        status(port)
        return True
    except (OSError, AssertionError, ValueError):
        return False


def active_streams(gw):
    return sum(w["active_streams"] for p in status(gw.admin_port)["pools"] for w in p["workers"])


def cancel_lines(gw):
    """The echo worker's "stream N cancelled: REASON" lines."""
    return re.findall(r"echo\[\d+\]: stream \d+ cancelled: (\w+)", gw.log())


def tls_ctx(certs, alpn=("h2",)):
    return client_tls_context(certs["ca"], alpn)


def ready(gw, path="/"):
    """The workers answer (HTTP/1.1, so that h2 tests start on a warm pool)."""
    assert wait_for(lambda: get(gw.port, path).status == 200, 10)


# --------------------------------------------------------------------------
# clients, negotiation, --http2 on|off|only

def test_h2c_and_http11_on_one_plain_port(start_gateway):
    need("curl")
    gw = start_gateway("hello")
    rc, ver, code, body, err = curl("--http2-prior-knowledge", f"http://127.0.0.1:{gw.port}/a")
    assert (rc, ver, code, body) == (0, "2", "200", HELLO), err
    rc, ver, code, body, err = curl("--http1.1", f"http://127.0.0.1:{gw.port}/b")
    assert (rc, ver, code, body) == (0, "1.1", "200", HELLO), err
    # both kinds of connection open at once, requests interleaved
    with H2Conn(gw.port) as h, Conn(gw.port) as c:
        for i in range(5):
            r = h.get(f"/h2/{i}")
            assert r.status == 200 and bytes(r.body) == HELLO, r
            c.send(request_bytes("GET", f"/h1/{i}"))
            r1 = c.read_response()
            assert r1.status == 200 and r1.body == HELLO and r1.version == "HTTP/1.1", r1
        assert h.fc_violations == []
    # (a line is written as its exchange ends: maybe after the client got it)
    for want in ('"GET /h2/4 HTTP/2.0" 200', '"GET /h1/4 HTTP/1.1" 200'):
        assert gw.wait_log(lambda l, w=want: w in l, timeout=5), want


def test_nghttp_h2c_and_tls(start_gateway, certs):
    need("nghttp")
    gw = start_tls(start_gateway, certs)
    r = run(["nghttp", "-nv", f"http://127.0.0.1:{gw.port}/ng"])
    out = r.stdout.decode()
    assert r.returncode == 0, out + r.stderr.decode()
    assert re.search(r"recv \(stream_id=\d+\) :status: 200", out), out
    assert re.search(r"recv DATA frame <length=14, flags=0x01", out), out  # END_STREAM
    r = run(["nghttp", "-nv", f"https://localhost:{gw.tls_port}/ng-tls"])
    out = r.stdout.decode()
    assert r.returncode == 0, out + r.stderr.decode()
    assert "The negotiated protocol: h2" in out, out
    assert re.search(r"recv \(stream_id=\d+\) :status: 200", out), out
    assert re.search(r"recv \(stream_id=\d+\) server: sluice", out), out
    # the server's SETTINGS: 100 streams, a 64 KiB stream window
    assert "[SETTINGS_MAX_CONCURRENT_STREAMS(0x03):100]" in out, out
    assert "[SETTINGS_INITIAL_WINDOW_SIZE(0x04):65535]" in out, out


def test_tls_alpn_h2_and_http11(start_gateway, certs):
    need("curl")
    gw = start_tls(start_gateway, certs)
    url = f"https://localhost:{gw.tls_port}/"
    rc, ver, code, body, err = curl("--cacert", certs["ca"], "--http2", url)
    assert (rc, ver, code, body) == (0, "2", "200", HELLO), err
    rc, ver, code, body, err = curl("--cacert", certs["ca"], "--http1.1", url)
    assert (rc, ver, code, body) == (0, "1.1", "200", HELLO), err
    # our preference wins whatever the client's order
    for offer in (["h2", "http/1.1"], ["http/1.1", "h2"]):
        with socket.create_connection(("127.0.0.1", gw.tls_port), timeout=10) as raw, \
                tls_ctx(certs, offer).wrap_socket(raw, server_hostname="localhost") as s:
            assert s.selected_alpn_protocol() == "h2", offer
    with H2Conn(gw.tls_port, tls=tls_ctx(certs)) as h:
        r = h.get("/tls", authority=f"localhost:{gw.tls_port}")
        assert r.status == 200 and bytes(r.body) == HELLO, r
    assert gw.wait_log(lambda l: '"GET /tls HTTP/2.0" 200' in l, timeout=5)


def test_tls_h2_uploads_and_concurrent_streams(start_gateway, certs):
    gw = start_tls(start_gateway, certs, worker="echo", extra=("--max-body", "64m"))
    body = os.urandom(3 * MiB + 7)
    with H2Conn(gw.tls_port, tls=tls_ctx(certs), timeout=30) as h:
        sids = [h.request("POST", f"/tls-up{i}", end=False) for i in range(4)]
        for sid in sids:  # four uploads open at once, sent in turns
            h.send_body(sid, body[:MiB])
        for sid in sids:
            h.send_body(sid, body[MiB:], end=True)
        for sid in sids:
            r = h.response(sid, timeout=60)
            assert r.status == 200 and bytes(r.body) == body, f"{r!r} ({len(r.body)} bytes)"
        assert h.fc_violations == [], h.fc_violations
        assert h.streams[sids[0]].reset is None


def test_http2_off(start_gateway, certs):
    need("curl")
    gw = start_tls(start_gateway, certs, extra=("--http2", "off"))
    # the preface is an HTTP/1.1 request line with an unknown version
    with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as s:
        s.sendall(PREFACE)
        data, _ = read_all(s, idle=1.0)
    assert re.match(rb"HTTP/1\.1 (400|505) ", data), data
    rc, ver, code, body, err = curl("--cacert", certs["ca"], "--http2",
                                    f"https://localhost:{gw.tls_port}/")
    assert (rc, ver, code, body) == (0, "1.1", "200", HELLO), err
    with socket.create_connection(("127.0.0.1", gw.tls_port), timeout=10) as raw, \
            tls_ctx(certs, ["h2", "http/1.1"]).wrap_socket(raw, server_hostname="localhost") as s:
        assert s.selected_alpn_protocol() == "http/1.1"
    with pytest.raises((ssl.SSLError, H2Error, ConnectionError)):
        H2Conn(gw.tls_port, tls=tls_ctx(certs, ["h2"])).close()
    assert get(gw.port, "/").status == 200


def test_http2_only(start_gateway, certs):
    need("curl")
    gw = start_tls(start_gateway, certs, extra=("--http2", "only"))
    # HTTP/1.1 on the plain port: closed without a response
    with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as s:
        s.sendall(request_bytes("GET", "/h1"))
        data, eof = read_all(s, idle=3.0)
    assert data == b"" and eof, data
    # ... and over TLS without ALPN
    ctx = tls_ctx(certs, alpn=())
    with socket.create_connection(("127.0.0.1", gw.tls_port), timeout=10) as raw, \
            ctx.wrap_socket(raw, server_hostname="localhost") as s:
        s.sendall(request_bytes("GET", "/h1-tls"))
        data, eof = read_all(s, idle=3.0)
    assert data == b"" and eof, data
    # an http/1.1-only client fails ALPN (no_application_protocol)
    with pytest.raises(ssl.SSLError):
        with socket.create_connection(("127.0.0.1", gw.tls_port), timeout=10) as raw:
            tls_ctx(certs, ["http/1.1"]).wrap_socket(raw, server_hostname="localhost").close()
    rc, ver, code, body, err = curl("--cacert", certs["ca"], "--http1.1",
                                    f"https://localhost:{gw.tls_port}/")
    assert rc != 0 and body == b"", (rc, ver, code, body)
    # HTTP/2 works on both
    rc, ver, code, body, err = curl("--http2-prior-knowledge", f"http://127.0.0.1:{gw.port}/")
    assert (rc, ver, code, body) == (0, "2", "200", HELLO), err
    rc, ver, code, body, err = curl("--cacert", certs["ca"], "--http2",
                                    f"https://localhost:{gw.tls_port}/")
    assert (rc, ver, code, body) == (0, "2", "200", HELLO), err
    assert "/h1" not in "".join(l for l in gw.log().splitlines() if "HTTP/" in l)


# --------------------------------------------------------------------------
# request and response

def test_response_head_fields_head_and_204(start_gateway, tmp_path):
    gw = start_gateway("hello")
    with H2Conn(gw.port) as h:
        r = h.get("/")
        assert r.status == 200 and bytes(r.body) == HELLO, r
        names = [k for k, _ in r.headers]
        assert all(k == k.lower() for k in names), names
        assert r.header("content-type") == "text/plain" and r.header("content-length") == "14"
        assert r.header("server", ).startswith("sluice/"), r
        assert re.match(r"\w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d GMT$", r.header("date")), r
        # HEAD: the head, no content (the stream ends with an empty DATA
        # frame: the worker's response has a body the gateway drops)
        r = h.response(h.request("HEAD", "/"))
        assert r.status == 200 and r.header("content-length") == "14", r
        assert r.ended and r.body == b"" and r.data_frames <= 1, r

    gw = start_gateway(reflect_cmd(str(tmp_path / "targets")), workers=1)
    with H2Conn(gw.port) as h:
        r = h.get("/status/204")  # the worker (wrongly) sends body bytes
        assert r.status == 204 and r.body == b"" and r.ended and r.data_frames <= 1, r
        assert r.header("x-status") == "204" and r.header("content-length") is None, r

    gw = start_gateway([sys.executable, BADWORKER, "hop-by-hop"], workers=1)
    with H2Conn(gw.port) as h:
        r = h.get("/")
        assert r.status == 200 and bytes(r.body) == b"ok\n", r
        assert not HOP_BY_HOP & {k for k, _ in r.headers}, r.headers
        assert r.header("x-kept") == "1", r


def test_100_concurrent_streams(start_gateway):
    gw = start_gateway("hello", workers=2)
    ready(gw)
    with H2Conn(gw.port) as h:
        h.wait(lambda: h.remote_settings, what="SETTINGS")
        assert h.remote_settings.get(3) == 100  # MAX_CONCURRENT_STREAMS
        # delays in a scrambled order: a serial server would take ~30 s
        delays = {}
        t0 = time.monotonic()
        for i in range(100):
            d = 50 + (i * 37) % 100 * 5
            delays[h.request("GET", f"/c{i}?delay={d}")] = d
        h.wait(lambda: all(h.streams[s].done for s in delays), timeout=20, what="100 streams")
        elapsed = time.monotonic() - t0
        for sid in delays:
            r = h.streams[sid]
            assert r.status == 200 and bytes(r.body) == HELLO, r
        ends = [ev.stream_id for ev in h.events if type(ev).__name__ == "StreamEnded"]
        assert sorted(ends) == sorted(delays) and ends != sorted(ends), ends[:20]
        # the shortest delays first, roughly
        first = ends[:10]
        assert max(delays[s] for s in first) < 200, [delays[s] for s in first]
        assert elapsed < 8, f"100 streams took {elapsed:.1f}s: not concurrent"
    # response bodies of concurrent downloads interleave
    n = 300 * 1024
    gw = start_gateway("blob", workers=1)
    with H2Conn(gw.port, window=65535) as h:
        sids = [h.request("GET", f"/?n={n}&i={i}") for i in range(8)]
        h.wait(lambda: all(h.streams[s].done for s in sids), timeout=30)
        for s in sids:
            r = h.streams[s]
            assert r.status == 200 and len(r.body) == n and blob_check(r.body, 0), r
        first_end = min(max(i for i, x in enumerate(h.data_order) if x == s) for s in sids)
        assert len(set(h.data_order[:first_end])) > 1, "DATA of concurrent streams not interleaved"
        assert h.fc_violations == []


def test_request_bodies_echoed_with_window_audit(start_gateway):
    gw = start_gateway("echo", "--max-body", "64m", workers=1)
    rng = __import__("random").Random(5)
    with H2Conn(gw.port) as h:
        for size in (0, 1, 64 * 1024 + 1, 10 * MiB):
            body = rng.randbytes(size)
            for with_length in (False, True):
                hdrs = [("content-length", str(size))] if with_length else []
                t0 = time.monotonic()
                sid = h.request("POST", f"/up?size={size}", headers=hdrs, body=body)
                r = h.response(sid, timeout=60)
                assert r.status == 200, r
                assert len(r.body) == size and hashlib.sha256(r.body).digest() == \
                    hashlib.sha256(body).digest(), f"echo of {size} bytes: {len(r.body)} back"
                st = h.streams[sid]
                assert st.window_increments <= st.sent == size
                print(f"{size} bytes (content-length: {with_length}) echoed in "
                      f"{time.monotonic() - t0:.2f}s; stream window given back {st.window_increments}")
        assert h.fc_violations == [], h.fc_violations
        # the connection window too: given back only for bytes received,
        # beyond the 1 MiB announced at the start
        assert h.conn_initial_increment == MiB - 65535
        assert h.conn_increments <= h.conn_sent


def test_upload_backpressure_when_the_client_does_not_read(start_gateway):
    """The client does not give back window for the echo it receives: the
    echo stalls at our window, the worker stops taking body bytes, and the
    gateway stops opening the client's upload window -- the client cannot
    send more than the windows along the path hold."""
    gw = start_gateway("echo", "--max-body", "64m", workers=1)
    ready(gw)
    size = 10 * MiB
    body = os.urandom(size)
    with H2Conn(gw.port, window=65535, conn_window=65535, auto_ack=False) as h:
        sid = h.request("POST", "/stall", end=False)
        st = h.streams[sid]
        with pytest.raises(socket.timeout):
            h.send_body(sid, body, end=True, timeout=2.0)
        stalled_at = st.sent
        for _ in range(5):
            h.pump(0.1)
        assert h.h2.local_flow_control_window(sid) == 0
        assert st.sent == stalled_at and len(st.body) <= 65535, (st.sent, len(st.body))
        # our 64 KiB response window + the gateway's response buffer (the
        # worker's 256 KiB credit) + the worker's request window + the
        # gateway's 64 KiB stream window, with room to spare
        assert stalled_at < 1 * MiB, f"client sent {stalled_at} bytes into a stalled echo"
        assert h.fc_violations == []
        # reading again lets everything through
        h.auto_ack = True
        h.ack(sid, st.unacked)
        h.send_body(sid, body[stalled_at:], end=True)
        r = h.response(sid, timeout=60)
        assert r.status == 200 and bytes(r.body) == body, f"{len(r.body)} bytes back"
        assert h.fc_violations == [], h.fc_violations
    print(f"upload stalled after {stalled_at} bytes while the echo was not read")


def test_download_50mib_slow_reader_bounded_memory(start_gateway):
    gw = start_gateway("blob", workers=1)
    ready(gw, "/?n=1")
    n = 50 * MiB
    time.sleep(0.2)
    base = proc_status_kib(gw.pid, "VmRSS")
    with RssMonitor(gw.pid) as mon, \
            H2Conn(gw.port, window=65535, conn_window=65535, auto_ack=False, timeout=30) as h:
        sid = h.request("GET", f"/?n={n}")
        st = h.streams[sid]
        got = 0
        t0 = time.monotonic()
        slow_until = t0 + 2.0
        while not st.done:
            if time.monotonic() - t0 > 120:
                pytest.fail(f"download stuck at {got} of {n} bytes")
            h.pump(0.5)
            if st.body:
                piece = bytes(st.body)
                del st.body[:]
                if not blob_check(piece, got):
                    pytest.fail(f"wrong byte at {blob_first_mismatch(piece, got)}")
                got += len(piece)
            slow = time.monotonic() < slow_until
            step = 16384 if slow else 32768
            while st.unacked >= step or (st.unacked and st.ended):
                k = min(step, st.unacked)
                h.ack(sid, k, stream=not st.ended)
                if slow:
                    time.sleep(0.003)
        elapsed = time.monotonic() - t0
        assert st.status == 200 and st.reset is None and got == n, (st, got)
    peak = mon.peak_kib()
    print(f"50 MiB downloaded in {elapsed:.1f}s with 16-32 KiB WINDOW_UPDATEs; gateway RSS "
          f"{base // 1024} MiB -> peak {peak / 1024:.1f} MiB ({mon.samples} samples)")
    assert mon.samples > 0
    limit = rss_limit_kib()
    if limit is not None:
        assert peak < limit
    if not SANITIZED:
        assert peak - base < 16 * 1024, f"gateway RSS grew {(peak - base) / 1024:.1f} MiB"


# --------------------------------------------------------------------------
# what the worker sees

def reflect(r):
    assert r.status == 200, r
    return json.loads(bytes(r.body))


def test_trailers_both_ways(start_gateway, tmp_path):
    gw = start_gateway(reflect_cmd(str(tmp_path / "targets")), workers=1)
    with H2Conn(gw.port) as h:
        # request trailers: HEADERS after DATA, with END_STREAM
        sid = h.request("POST", "/t", body=b"abc", trailers=[("x-checksum", "900150983cd2"),
                                                              ("x-more", "1")])
        d = reflect(h.response(sid))
        assert d["body"] == "abc" and d["version"] == 20, d
        assert ["x-checksum", "900150983cd2"] in d["trailers"] and ["x-more", "1"] in d["trailers"], d
        assert not any(k == "x-checksum" for k, _ in d["headers"]), d
        # trailers only, no DATA at all
        d = reflect(h.response(h.request("POST", "/t2", trailers=[("x-only", "yes")])))
        assert d["body"] == "" and d["trailers"] == [["x-only", "yes"]], d
        # response trailers: a trailing HEADERS frame with END_STREAM
        r = h.get("/chunked")
        assert r.status == 200 and bytes(r.body) == b"abcdefgh", r
        assert r.trailers == [(b"x-trailer", b"done")], r
        assert r.ended and r.reset is None


def test_cookies_host_version_scheme(start_gateway, tmp_path):
    gw = start_gateway(reflect_cmd(str(tmp_path / "targets")), workers=1)
    with H2Conn(gw.port, validate=False) as h:
        r = h.get("/r?q=1", authority="example.test:8443",
                  headers=[("cookie", "a=1"), ("x-between", "z"), ("cookie", "b=2"),
                           ("cookie", "c=3"), ("host", "ignored.test")])
        d = reflect(r)
        hdrs = d["headers"]
        assert d["version"] == 20 and d["method"] == "GET" and d["target"] == "/r?q=1", d
        assert d["scheme"] == "http", d
        assert [v for k, v in hdrs if k.lower() == "host"] == ["example.test:8443"], hdrs
        assert [v for k, v in hdrs if k.lower() == "cookie"] == ["a=1; b=2; c=3"], hdrs
        assert ["x-between", "z"] in hdrs, hdrs
        # no :authority: the host field is the Host
        d = reflect(h.get("/r2", authority=None, headers=[("host", "only-host.test")]))
        assert [v for k, v in d["headers"] if k.lower() == "host"] == ["only-host.test"], d
        # pseudo-header fields are never forwarded as fields
        assert not any(k.startswith(":") for k, _ in d["headers"]), d


# --------------------------------------------------------------------------
# cancellation

def test_rst_stream_cancels_the_workers_stream(start_gateway):
    gw = admin_gateway(start_gateway, "echo", workers=1)
    with H2Conn(gw.port) as h:
        sid = h.request("POST", "/upload", end=False)
        h.send_body(sid, b"x" * 1000)
        st = h.streams[sid]
        h.wait(lambda: st.status is not None and len(st.body) == 1000, what="echo")
        assert active_streams(gw) == 1
        h.reset(sid, CANCEL)
        assert wait_for(lambda: cancel_lines(gw) == ["client_closed"], 5), gw.log_tail()
        assert wait_for(lambda: active_streams(gw) == 0, 5)
        # the connection carries on
        r = h.response(h.request("POST", "/after", body=b"still here"))
        assert r.status == 200 and bytes(r.body) == b"still here", r
        assert h.goaway is None
    gw = admin_gateway(start_gateway, "hello", workers=1)
    with H2Conn(gw.port) as h:
        sid = h.request("GET", "/slow?delay=20000")
        assert wait_for(lambda: active_streams(gw) == 1, 5)
        h.reset(sid, CANCEL)
        t0 = time.monotonic()
        assert wait_for(lambda: active_streams(gw) == 0, 5)
        assert time.monotonic() - t0 < 5
        assert bytes(h.get("/next").body) == HELLO


def test_closed_connection_cancels_all_its_streams(start_gateway):
    gw = admin_gateway(start_gateway, "echo", workers=2)
    ready(gw)
    other = H2Conn(gw.port)
    assert other.get("/other").status == 200
    h = H2Conn(gw.port)
    sids = [h.request("POST", f"/open{i}", end=False) for i in range(6)]
    for sid in sids:
        h.send_body(sid, b"y" * 100)
    h.wait(lambda: all(len(h.streams[s].body) == 100 for s in sids), what="six echoes")
    assert active_streams(gw) == 6
    h.close()
    assert wait_for(lambda: len(cancel_lines(gw)) == 6, 5), gw.log_tail()
    assert set(cancel_lines(gw)) == {"client_closed"}
    assert wait_for(lambda: active_streams(gw) == 0, 5)
    # the other connection, and new ones, are unaffected
    r = other.response(other.request("POST", "/other2", body=b"fine"))
    assert r.status == 200 and bytes(r.body) == b"fine" and other.goaway is None, r
    other.close()
    with H2Conn(gw.port) as h:
        assert h.get("/new").status == 200


# --------------------------------------------------------------------------
# GOAWAY

def test_sigterm_goaway_lets_the_stream_in_flight_finish(start_gateway):
    gw = start_gateway("hello", workers=1)
    ready(gw)
    with H2Conn(gw.port, timeout=20) as h:
        sid = h.request("GET", "/slow?delay=1500")
        h.pump(0.3)
        gw.proc.send_signal(signal.SIGTERM)
        h.wait(lambda: h.goaway is not None, 5, what="GOAWAY")
        assert h.goaway.error_code == NO_ERROR and h.goaway.last_stream_id >= sid, h.goaway
        assert not h.streams[sid].done, "stream ended before the GOAWAY"
        r = h.response(sid)
        assert r.status == 200 and bytes(r.body) == HELLO and r.reset is None, r
        assert h.wait_closed(10), "connection not closed after its last stream"
    assert gw.proc.wait(15) == 0, gw.log_tail()


def test_keepalive_timeout_goaway_then_close(start_gateway):
    gw = start_gateway("hello", "--keepalive-timeout", "1s", workers=1)
    with H2Conn(gw.port) as h:
        assert h.get("/").status == 200
        t0 = time.monotonic()
        h.wait(lambda: h.goaway is not None, 6, what="GOAWAY")
        idle = time.monotonic() - t0
        assert h.goaway.error_code == NO_ERROR and h.goaway.last_stream_id == 1, h.goaway
        assert 0.7 < idle < 4, idle
        assert h.wait_closed(5)
        assert h.read_error is None, h.read_error


def test_close_after_goaway_is_clean_with_input_pending(start_gateway):
    """After a graceful end the gateway reads on a moment before it closes:
    closing a socket with unread input sends a TCP reset in place of the
    FIN. Here the client says GOAWAY and keeps sending (PINGs, far more
    than one read takes) -- it must see a clean end of stream."""
    gw = start_gateway("hello", workers=1)
    with H2Conn(gw.port) as h:
        assert h.get("/").status == 200
        goaway = bytes.fromhex("000008070000000000") + (1).to_bytes(4, "big") + bytes(4)
        pings = (bytes.fromhex("000008060000000000") + b"pingping") * (512 * 1024 // 17)
        h._out += goaway + pings
        t0 = time.monotonic()
        h.flush()
        assert h.wait_closed(5), "not closed after the client's GOAWAY"
        assert h.read_error is None and h.write_failed is None, \
            f"connection reset: {h.read_error!r} / {h.write_failed!r}"
        assert time.monotonic() - t0 < 3
    assert gw.alive()


def test_max_requests_per_conn_goaway_after_the_third(start_gateway):
    gw = start_gateway("hello", "--max-requests-per-conn", "3", workers=1)
    with H2Conn(gw.port) as h:
        for i in range(3):
            r = h.get(f"/{i}")
            assert r.status == 200 and bytes(r.body) == HELLO, r
            if i < 2:
                h.pump(0.2)
                assert h.goaway is None, f"GOAWAY after request {i + 1}"
        h.wait(lambda: h.goaway is not None, 5, what="GOAWAY")
        assert h.goaway.error_code == NO_ERROR and h.goaway.last_stream_id == 5, h.goaway
        assert h.wait_closed(5)
    with H2Conn(gw.port) as h:  # a new connection starts over
        assert h.get("/again").status == 200


# --------------------------------------------------------------------------
# errors

def test_worker_dies_mid_response_rst_stream(start_gateway, tmp_path):
    gw = start_gateway(bad_cmd("die-mid-body", tmp_path), workers=2)
    gw.wait_workers(2)
    with H2Conn(gw.port, timeout=20) as h:
        r = h.get("/dies")
        assert r.status == 200 and r.reset == INTERNAL_ERROR and len(r.body) <= 1000, r
        r = h.get("/after")  # the other (or restarted) worker
        assert r.status == 200 and bytes(r.body) == b"ok\n", r
        assert h.goaway is None


def test_worker_dies_before_the_head_502(start_gateway, tmp_path):
    gw = start_gateway(bad_cmd("die-before-head", tmp_path), workers=2)
    gw.wait_workers(2)
    with H2Conn(gw.port, timeout=20) as h:
        r = h.get("/dies")
        assert r.status == 502 and r.ended and r.reset is None, r
        r = h.get("/after")
        assert r.status == 200 and bytes(r.body) == b"ok\n", r


def test_queue_and_response_timeouts_504(start_gateway):
    gw = start_gateway("hello", "--max-streams", "1", "--queue-timeout", "500ms",
                       "--response-timeout", "1500ms", workers=1)
    ready(gw)
    with H2Conn(gw.port) as h:
        busy = h.request("GET", "/busy?delay=1000")
        h.pump(0.1)
        t0 = time.monotonic()
        r = h.get("/queued")
        assert r.status == 504 and time.monotonic() - t0 < 1.4, r
        r = h.response(busy)
        assert r.status == 200 and bytes(r.body) == HELLO, r
        t0 = time.monotonic()
        r = h.get("/late?delay=4000")
        assert r.status == 504 and 1.2 < time.monotonic() - t0 < 3.5, r
        r = h.get("/fine")
        assert r.status == 200 and bytes(r.body) == HELLO, r
        assert h.goaway is None


def test_body_over_max_body_413(start_gateway):
    gw = start_gateway("echo", "--max-body", "1000", workers=1)
    with H2Conn(gw.port) as h:
        sid = h.request("POST", "/big", headers=[("content-length", "5000")], end=False)
        r = h.response(sid)
        assert r.status == 413, r
        # the connection is still usable
        r = h.response(h.request("POST", "/small", body=b"z" * 1000))
        assert r.status == 200 and bytes(r.body) == b"z" * 1000, r
        assert h.goaway is None


def test_access_log_says_http2(start_gateway):
    gw = start_gateway("hello", workers=1)
    with H2Conn(gw.port) as h:
        assert h.get("/h2-log-probe-5150").status == 200
    line = gw.wait_log(lambda l: "/h2-log-probe-5150" in l, timeout=3)
    assert line is not None and '"GET /h2-log-probe-5150 HTTP/2.0" 200 14 ' in line, line
