"""The WebSocket clients of scripts/bench's ws section (scripts/bench_ws.py):
the check passes an echo server and refuses servers that are not one (a
plain HTTP answer, a wrong Sec-WebSocket-Accept, a corrupted echo); `idle`
holds N WebSockets and echoes on each; `push` stalls, then counts every
byte a worker pushed."""

import base64
import hashlib
import json
import os
import socket
import struct
import subprocess
import sys
import threading

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
import bench_ws  # noqa: E402

BENCH_WS = os.path.join(ROOT, "scripts", "bench_ws.py")
WSWORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "wsworker.py")


class FakeServer:
    """One raw connection at a time, in a thread: `corrupt` answers the
    handshake properly and echoes with the last byte changed; `badaccept`
    answers 101 with a wrong Sec-WebSocket-Accept."""

    def __init__(self, mode):
        self.mode = mode
        self.lsock = socket.create_server(("127.0.0.1", 0))
        self.lsock.settimeout(10)
        self.port = self.lsock.getsockname()[1]
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        try:
            c, _ = self.lsock.accept()
        except OSError:
            return
        with c:
            c.settimeout(10)
            head = b""
            while b"\r\n\r\n" not in head:
                head += c.recv(4096)
            key = [ln.split(b":", 1)[1].strip() for ln in head.split(b"\r\n")
                   if ln.lower().startswith(b"sec-websocket-key:")][0]
            acc = base64.b64encode(hashlib.sha1(key + bench_ws.GUID).digest())
            if self.mode == "badaccept":
                acc = base64.b64encode(b"x" * 20)
            c.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                      b"Sec-WebSocket-Accept: " + acc + b"\r\n\r\n")
            buf = b""
            while True:  # one small masked frame, echoed unmasked and corrupted
                data = c.recv(65536)
                if not data:
                    return
                buf += data
                if len(buf) < 6 or len(buf) < 6 + (buf[1] & 0x7F):
                    continue
                n = buf[1] & 0x7F
                mask, payload = buf[2:6], buf[6:6 + n]
                payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
                payload = payload[:-1] + b"!"
                c.sendall(struct.pack("!BB", buf[0], n) + payload)
                return

    def close(self):
        self.lsock.close()
        self.thread.join(5)


@pytest.mark.parametrize("mode,why", [("corrupt", "echo of a 32-byte text message"),
                                      ("badaccept", "wrong Sec-WebSocket-Accept")])
def test_check_refuses_a_wrong_server(mode, why):
    srv = FakeServer(mode)
    try:
        with pytest.raises(bench_ws.WSError, match=why):
            bench_ws.check(f"ws://127.0.0.1:{srv.port}/echo")
    finally:
        srv.close()


def test_check_refuses_plain_http(start_gateway):
    gw = start_gateway("hello", workers=1)
    with pytest.raises(bench_ws.WSError, match="handshake answered 'HTTP/1.1 200"):
        bench_ws.check(f"ws://127.0.0.1:{gw.port}/echo")


def test_check_passes_ws_echo(start_gateway):
    gw = start_gateway("ws_echo", workers=1)
    bench_ws.check(f"ws://127.0.0.1:{gw.port}/echo")


def run_client(mode, url, arg, after_first_line=None):
    p = subprocess.Popen([sys.executable, BENCH_WS, mode, url, str(arg)], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = p.stdout.readline().split()
        if after_first_line:
            after_first_line()
        out, err = p.communicate("go\n", timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 0, err
    return first, json.loads(out.strip().splitlines()[-1])


def test_idle_holds_and_echoes(start_gateway):
    gw = start_gateway("ws_echo", workers=1)
    first, rep = run_client("idle", f"ws://127.0.0.1:{gw.port}/echo", 300)
    assert first == ["open", "300", "0"]
    assert (rep["opened"], rep["open_failed"], rep["echoed"], rep["echo_failed"]) == (300, 0, 300, 0), rep


def test_idle_counts_failed_handshakes(start_gateway):
    gw = start_gateway("hello", workers=1)  # answers 200: no WebSocket
    first, rep = run_client("idle", f"ws://127.0.0.1:{gw.port}/echo", 5)
    assert first == ["open", "0", "5"]
    assert rep["open_failed"] == 5 and "handshake answered" in rep["error"], rep


def test_push_reads_every_byte_after_a_stall(start_gateway):
    gw = start_gateway([sys.executable, WSWORKER], workers=1)
    n = 4 << 20
    url = f"ws://127.0.0.1:{gw.port}/push?n={n}&size=65536"
    first, rep = run_client("push", url, n, after_first_line=lambda: __import__("time").sleep(0.5))
    assert first == ["open"]
    assert rep["error"] == "" and rep["bytes"] == n and rep["messages"] == 64 and rep["close_code"] == 1000, rep
    # the worker pushed into the stall: the client's socket held bytes when it resumed
    assert rep["queued_in_kernel"] > 0, rep


def test_push_notices_a_short_count(start_gateway):
    gw = start_gateway([sys.executable, WSWORKER], workers=1)
    url = f"ws://127.0.0.1:{gw.port}/push?n=65536&size=65536"
    _, rep = run_client("push", url, 65537)
    assert rep["error"] == "65536 bytes received, 65537 expected", rep
