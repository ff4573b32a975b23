"""Streaming and backpressure: 1 GiB through the gateway both ways with
bounded gateway memory, slow readers, client disconnects reaching the worker
as CANCEL."""

import hashlib
import os
import socket
import threading
import time

import pytest

from conftest import RssMonitor, rss_limit_kib
from httpc import Conn, ConnectionClosed, request_bytes, get, blob_check, \
    blob_first_mismatch

MiB = 1 << 20
BIG = int(os.environ.get("SLUICE_E2E_BIG_MB", "1024")) * MiB
CHUNK = MiB


def check_rss(mon, what):
    limit = rss_limit_kib()
    peak = mon.peak_kib()
    assert mon.samples > 0, "no RSS sample taken"
    if limit is None:
        print(f"{what}: gateway peak RSS {peak // 1024} MiB (not checked: sanitizer build)")
        return
    assert peak < limit, (f"{what}: gateway peak RSS {peak / 1024:.1f} MiB "
                          f">= {limit // 1024} MiB")


class Sender(threading.Thread):
    """Sends `head` then `size` bytes of pseudo-random data in CHUNK pieces,
    hashing what it sends."""

    def __init__(self, sock, head, size, chunked_encoding=False):
        super().__init__(daemon=True)
        self.sock = sock
        self.head = head
        self.size = size
        self.chunked = chunked_encoding
        self.hash = hashlib.sha256()
        self.sent = 0
        self.error = None
        src = os.urandom(CHUNK + 97)
        self.src = memoryview(src)

    def run(self):
        try:
            self.sock.sendall(self.head)
            k = 0
            while self.sent < self.size:
                n = min(CHUNK, self.size - self.sent)
                off = (k * 7) % 97  # vary the data so misordering shows in the hash
                piece = self.src[off:off + n]
                self.hash.update(piece)
                if self.chunked:
                    self.sock.sendall(b"%x\r\n" % n)
                    self.sock.sendall(piece)
                    self.sock.sendall(b"\r\n")
                else:
                    self.sock.sendall(piece)
                self.sent += n
                k += 1
            if self.chunked:
                self.sock.sendall(b"0\r\n\r\n")
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.error = e


def _upload_echo(start_gateway, chunked_encoding):
    gw = start_gateway("echo", "--max-body", "2g", workers=1)
    assert get(gw.port, "/").status == 200  # worker ready
    with Conn(gw.port, timeout=30, rcvbuf=4 * MiB, sndbuf=4 * MiB) as c, \
            RssMonitor(gw.pid) as mon:
        framing = [("Transfer-Encoding", "chunked")] if chunked_encoding \
            else [("Content-Length", str(BIG))]
        sender = Sender(c.sock, request_bytes("POST", "/", framing), BIG,
                        chunked_encoding)
        t0 = time.monotonic()
        sender.start()
        head = c.read_head()
        assert head.status == 200, head
        h = hashlib.sha256()
        got = 0
        try:
            for piece in c.iter_body(head):
                h.update(piece)
                got += len(piece)
        except (ConnectionClosed, OSError) as e:
            pytest.fail(f"echo response broke after {got} of {BIG} bytes: {e!r} "
                        f"(sender: sent {sender.sent}, error {sender.error!r})")
        sender.join(30)
        elapsed = time.monotonic() - t0
        assert sender.error is None, f"upload failed after {sender.sent} bytes: {sender.error!r}"
        assert head.framing == "chunked", head
        assert got == BIG, f"echoed {got} of {BIG} bytes"
        assert h.hexdigest() == sender.hash.hexdigest(), "SHA-256 of the echo differs"
        # the connection is still usable
        c.send(request_bytes("POST", "/", body=b"after"))
        r = c.read_response()
        assert r.status == 200 and r.body == b"after", r
    print(f"{BIG // MiB} MiB echoed in {elapsed:.1f}s; gateway peak RSS "
          f"{mon.peak_kib() / 1024:.1f} MiB ({mon.samples} samples)")
    check_rss(mon, "upload")


def test_upload_1gib_content_length_echo(start_gateway):
    _upload_echo(start_gateway, chunked_encoding=False)


def test_upload_1gib_chunked_echo(start_gateway):
    _upload_echo(start_gateway, chunked_encoding=True)


def test_download_1gib_slow_reader(start_gateway):
    gw = start_gateway("blob", workers=1)
    assert get(gw.port, "/?n=1").status == 200  # worker ready
    slow_for = 3.0
    with Conn(gw.port, timeout=30, rcvbuf=64 * 1024) as c, RssMonitor(gw.pid) as mon:
        c.send(request_bytes("GET", f"/?n={BIG}"))
        head = c.read_head()
        assert head.status == 200, head
        assert head.header("content-length") == str(BIG), head
        offset = 0
        bad = None

        def consume(piece):
            nonlocal offset, bad
            if bad is None and not blob_check(piece, offset):
                bad = blob_first_mismatch(piece, offset)
            offset += len(piece)

        if c.buf:
            consume(bytes(c.buf))
            c.buf.clear()
        # slow phase: 16 KiB every 10 ms
        t0 = time.monotonic()
        slow_rss = []
        while time.monotonic() - t0 < slow_for and offset < BIG:
            try:
                data = c.sock.recv(min(16384, BIG - offset))
            except socket.timeout:
                pytest.fail(f"download stalled: no byte for 30 s after {offset} of "
                            f"{BIG} bytes (slow phase, {time.monotonic() - t0:.1f}s in)")
            if not data:
                pytest.fail(f"connection closed after {offset} of {BIG} bytes (slow phase)")
            consume(data)
            time.sleep(0.01)
            slow_rss.append(mon.max_kib)
        slow_bytes = offset
        # fast phase
        buf = bytearray(CHUNK)
        mv = memoryview(buf)
        t1 = time.monotonic()
        while offset < BIG:
            try:
                n = c.sock.recv_into(mv[:min(CHUNK, BIG - offset)])
            except socket.timeout:
                pytest.fail(f"download stalled: no byte for 30 s after {offset} of "
                            f"{BIG} bytes (fast phase)")
            if not n:
                pytest.fail(f"connection closed after {offset} of {BIG} bytes")
            consume(bytes(mv[:n]))
        fast = time.monotonic() - t1
        assert bad is None, f"blob byte pattern wrong at offset {bad}"
        assert offset == BIG
        # the response ended exactly there: the connection is usable
        c.send(request_bytes("GET", "/?n=5"))
        r = c.read_response()
        assert r.status == 200 and len(r.body) == 5, r
    print(f"slow phase: {slow_bytes} bytes in {slow_for}s; fast phase: "
          f"{(BIG - slow_bytes) / MiB:.0f} MiB in {fast:.1f}s; gateway peak RSS "
          f"{mon.peak_kib() / 1024:.1f} MiB")
    check_rss(mon, "slow download")
    assert slow_bytes < 64 * MiB  # the throttle really throttled


def test_upload_backpressure_when_client_does_not_read(start_gateway):
    """A client that uploads to echo without reading the echo gets stalled:
    credit flows back from the client's socket through the worker to the
    upload, so the gateway stops reading instead of buffering."""
    gw = start_gateway("echo", "--max-body", "2g", workers=1)
    assert get(gw.port, "/").status == 200
    total = 256 * MiB
    with Conn(gw.port, timeout=30, rcvbuf=256 * 1024, sndbuf=256 * 1024) as c, \
            RssMonitor(gw.pid) as mon:
        c.send(request_bytes("POST", "/", [("Content-Length", str(total))]))
        block = memoryview(os.urandom(CHUNK))
        c.sock.setblocking(False)
        sent = 0
        last_progress = time.monotonic()
        deadline = time.monotonic() + 10
        while sent < total and time.monotonic() < deadline:
            try:
                n = c.sock.send(block[:min(CHUNK, total - sent)])
                sent += n
                last_progress = time.monotonic()
            except BlockingIOError:
                if time.monotonic() - last_progress > 1.0:
                    break  # stalled for a second: backpressure reached us
                time.sleep(0.01)
        stalled_at = sent
        c.sock.setblocking(True)
        c.settimeout(30)
        assert stalled_at < 128 * MiB, \
            f"gateway accepted {stalled_at / MiB:.0f} MiB of upload while the echo was not read"
        check_rss(mon, "stalled upload")

        # now read the echo while sending the rest: everything arrives
        errors = []

        def rest():
            try:
                left = total - stalled_at
                while left > 0:
                    n = min(CHUNK, left)
                    c.sock.sendall(block[:n])
                    left -= n
            except Exception as e:  # noqa: BLE001
                errors.append(e)

        th = threading.Thread(target=rest, daemon=True)
        th.start()
        head = c.read_head()
        assert head.status == 200, head
        got = 0
        for piece in c.iter_body(head):
            got += len(piece)
        th.join(30)
        assert errors == [], errors
        assert got == total, (got, total)
    check_rss(mon, "upload after stall")


def test_client_disconnect_mid_upload_cancels_worker(start_gateway):
    gw = start_gateway("echo", workers=1)
    assert get(gw.port, "/").status == 200
    c = Conn(gw.port, timeout=5)
    c.send(request_bytes("POST", "/?who=disconnect", [("Content-Length", str(50 * MiB))]))
    c.send(os.urandom(MiB))
    try:
        c.settimeout(2)
        c.read_head()  # echo has started answering: the stream is open
    except (socket.timeout, ConnectionClosed):
        pass
    c.close()
    line = gw.wait_log(lambda l: "cancelled" in l and "client_closed" in l, timeout=5)
    assert line is not None, ("no 'cancelled ... client_closed' line from the worker "
                              "within 5 s of the client disconnecting")
    # gateway and worker are fine afterwards
    r = get(gw.port, "/", method="POST", body=b"still here")
    assert r.status == 200 and r.body == b"still here", r
    assert gw.alive()


def test_graceful_timeout_cancels_with_shutdown(start_gateway):
    """A stream still open when the graceful timeout runs out is cancelled
    with reason `shutdown` (the worker learns why), then the gateway exits."""
    gw = start_gateway("echo", "--graceful-timeout", "1s", workers=1)
    assert get(gw.port, "/").status == 200
    c = Conn(gw.port, timeout=5)
    try:
        c.send(request_bytes("POST", "/?who=stuck", [("Content-Length", str(50 * MiB))]))
        c.send(os.urandom(MiB))  # and then nothing: the upload never ends
        time.sleep(0.3)
        code = gw.terminate(timeout=10)
        assert code == 0, code
        line = gw.wait_log(lambda l: "cancelled" in l and "shutdown" in l, timeout=3)
        assert line is not None, gw.log_tail()
    finally:
        c.close()


def test_client_disconnect_mid_download(start_gateway):
    gw = start_gateway("blob", workers=1)
    assert get(gw.port, "/?n=1").status == 200
    with RssMonitor(gw.pid) as mon:
        for _ in range(3):
            c = Conn(gw.port, timeout=5, rcvbuf=64 * 1024)
            c.send(request_bytes("GET", f"/?n={BIG}"))
            head = c.read_head()
            assert head.status == 200, head
            c.sock.recv(65536)
            time.sleep(0.2)
            c.close()
        time.sleep(0.3)
        r = get(gw.port, "/?n=1000")
        assert r.status == 200 and blob_check(r.body, 0), r
    assert gw.alive()
    check_rss(mon, "aborted downloads")


def test_slow_reader_does_not_stall_others(start_gateway):
    """One stalled download on a worker link does not block another
    client's requests to the same worker (per-stream credit)."""
    gw = start_gateway("blob", workers=1)
    assert get(gw.port, "/?n=1").status == 200
    with Conn(gw.port, timeout=5, rcvbuf=32 * 1024) as stalled:
        stalled.send(request_bytes("GET", f"/?n={256 * MiB}"))
        assert stalled.read_head().status == 200
        time.sleep(0.5)  # its windows fill up; nobody reads
        t0 = time.monotonic()
        for i in range(10):
            r = get(gw.port, f"/?n={100000 + i}", timeout=5)
            assert r.status == 200 and len(r.body) == 100000 + i, r
        elapsed = time.monotonic() - t0
    assert elapsed < 3, f"10 requests took {elapsed:.2f}s next to a stalled stream"
