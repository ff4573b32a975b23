"""sluice-load --ws against a Python `websockets` echo server (loopback).

The server runs in a thread of this process (an asyncio loop of its own):
it echoes, or corrupts its echoes, or pings the client all the time, or
refuses the upgrade; a raw socket answers 101 with a wrong accept value.
Each case checks sluice-load's JSON: messages echoed, errors by kind, and
what the server saw (the close codes, the message types)."""
import asyncio
import json
import os
import shutil
import socket
import ssl
import subprocess
import threading
import time
from http import HTTPStatus

import pytest

from conftest import SLUICE

websockets = pytest.importorskip("websockets")
from websockets.asyncio.server import serve  # noqa: E402

LOAD = os.path.join(os.path.dirname(SLUICE), "load", "sluice-load")


class EchoServer:
    """A websockets server in a thread; paths pick the behaviour."""

    def __init__(self, ssl_context=None):
        self.closes = []        # close code the client sent, per connection
        self.kinds = set()      # type of the messages received (str / bytes)
        self.received = 0
        self._ssl = ssl_context
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        assert self._started.wait(10), "the echo server did not start"

    async def _handler(self, ws):
        path = ws.request.path
        mine = 0
        try:
            async for msg in ws:
                self.received += 1
                mine += 1
                self.kinds.add(type(msg).__name__)
                if path == "/corrupt":
                    msg = msg[:-1] + (b"!" if isinstance(msg, bytes) else "!")
                elif path == "/short":
                    msg = msg[:-1]
                elif path == "/close-after-10" and mine >= 10:
                    await ws.close(1001, "going away")
                    break
                await ws.send(msg)
        except websockets.ConnectionClosed:
            pass
        self.closes.append(ws.close_code)

    def _process_request(self, connection, request):
        if request.path == "/forbidden":
            return connection.respond(HTTPStatus.FORBIDDEN, "no\n")
        return None

    def _run(self):
        asyncio.set_event_loop(self._loop)

        async def main():
            self._stop = asyncio.Event()
            async with serve(self._handler, "127.0.0.1", 0, ssl=self._ssl, compression=None,
                             max_size=None, process_request=self._process_request,
                             ping_interval=0.05, ping_timeout=2) as server:
                self.port = server.sockets[0].getsockname()[1]
                self._started.set()
                await self._stop.wait()

        self._loop.run_until_complete(main())
        self._loop.close()

    def wait_closes(self, n, timeout=5.0):
        """The close codes, once n connections have ended (the server's
        handler finishes just after sluice-load has gone)."""
        deadline = time.monotonic() + timeout
        while len(self.closes) < n and time.monotonic() < deadline:
            time.sleep(0.01)
        return sorted(self.closes)

    def stop(self):
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)
        assert not self._thread.is_alive()


@pytest.fixture
def echo():
    server = EchoServer()
    yield server
    server.stop()


def load(url, *args, timeout=60):
    assert os.path.exists(LOAD), f"{LOAD} not built"
    cmd = [LOAD, "--json", "-q", "--timeout", "3s", *args, url]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    try:
        return json.loads(p.stdout), p
    except ValueError:
        raise AssertionError(f"{' '.join(cmd)}: no JSON (exit {p.returncode}): {p.stderr}")


def test_closed_loop_echo_and_clean_close(echo):
    r, p = load(f"ws://127.0.0.1:{echo.port}/echo", "-c", "4", "-n", "400")
    assert p.returncode == 0, p.stderr
    assert r["protocol"] == "websocket"
    assert r["completed"] == 400
    assert r["errors"]["total"] == 0, r["errors"]
    assert r["ws"]["message_bytes"] == 32 and r["ws"]["text"] is False
    assert r["latency"]["count"] == 400
    assert echo.received == 400 and echo.kinds == {"bytes"}
    # every connection ended with the close handshake, code 1000
    assert echo.wait_closes(4) == [1000] * 4


def test_duration_text_pipelined_big_messages(echo, tmp_path):
    svg = tmp_path / "lat.svg"
    r, p = load(f"ws://127.0.0.1:{echo.port}/echo", "-c", "2", "-p", "3", "-d", "1s", "--ws-text",
                "--ws-size", "100k", "--svg", str(svg))
    assert p.returncode == 0, p.stderr
    assert r["completed"] > 10 and r["errors"]["total"] == 0, r
    assert r["requests_per_s"] > 0 and r["ws"]["messages_per_s"] == r["requests_per_s"]
    assert echo.kinds == {"str"}
    # both directions carried the messages: 100 KiB each way per message
    assert r["bytes_read"] >= r["completed_in_window"] * 100 * 1024
    assert r["bytes_written"] >= r["completed_in_window"] * 100 * 1024
    assert echo.wait_closes(2) == [1000, 1000]
    assert svg.read_text().lstrip().startswith("<svg") or "<svg" in svg.read_text()


def test_open_loop(echo):
    r, p = load(f"ws://127.0.0.1:{echo.port}/echo", "-c", "4", "-R", "200", "-d", "1s")
    assert p.returncode == 0, p.stderr
    assert r["mode"] == "open"
    assert r["errors"]["total"] == 0
    assert 150 <= r["completed"] <= 210, r["completed"]
    assert r["schedule"]["due"] >= 190
    assert r["service"]["count"] == r["completed"]


def test_empty_messages(echo):
    r, p = load(f"ws://127.0.0.1:{echo.port}/echo", "-c", "1", "-n", "50", "--ws-size", "0")
    assert p.returncode == 0, p.stderr
    assert r["completed"] == 50 and r["errors"]["total"] == 0


def test_pings_are_answered(echo):
    # the server pings every 50 ms and drops a client whose pong does not
    # come within 2 s: a 2.5 s run survives only if the pongs go out
    r, p = load(f"ws://127.0.0.1:{echo.port}/echo", "-c", "2", "-R", "20", "-d", "2500ms")
    assert p.returncode == 0, p.stderr
    assert r["errors"]["total"] == 0 and r["completed"] >= 40, r
    assert echo.wait_closes(2) == [1000, 1000]


def test_echo_mismatch_is_an_error(echo):
    r, p = load(f"ws://127.0.0.1:{echo.port}/corrupt", "-c", "2", "-n", "100")
    assert r["errors"]["echo"] == 100, r["errors"]
    assert r["completed"] == 0
    r, p = load(f"ws://127.0.0.1:{echo.port}/short", "-c", "1", "-n", "20", "--ws-text")
    assert r["errors"]["echo"] == 20, r["errors"]


def test_server_close_midway(echo):
    r, p = load(f"ws://127.0.0.1:{echo.port}/close-after-10", "-c", "1", "-n", "30", "--timeout", "1s")
    # each connection: 9 echoed, then the server closes (1001) with the 10th
    # in flight, a read error; sluice-load reconnects and goes on
    assert r["completed"] == 27, r
    assert r["errors"]["read"] == 3 and r["errors"]["echo"] == 0, r["errors"]
    assert r["connects"] >= 3
    assert echo.wait_closes(4).count(1001) == 3


def test_refused_upgrade(echo):
    r, p = load(f"ws://127.0.0.1:{echo.port}/forbidden", "-c", "1", "-d", "300ms")
    assert p.returncode == 1
    assert r["completed"] == 0 and r["errors"]["parse"] >= 1
    assert "403" in r["ws"]["error"], r["ws"]


def wrong_accept_server(answer):
    """A raw socket that answers every handshake with `answer`."""
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(16)
    lsock.settimeout(0.1)  # so that the loop sees the socket closed soon

    def run():
        while lsock.fileno() != -1:
            try:
                c, _ = lsock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with c:
                c.settimeout(5)
                buf = b""
                try:
                    while b"\r\n\r\n" not in buf:
                        d = c.recv(4096)
                        if not d:
                            break
                        buf += d
                    c.sendall(answer)
                    c.recv(4096)
                except OSError:
                    pass

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return lsock, t


@pytest.mark.parametrize("answer,why", [
    (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
     b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n", "Sec-WebSocket-Accept"),
    (b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n\r\n", "Upgrade: websocket"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", "200"),
])
def test_bad_handshake_answers(answer, why):
    lsock, t = wrong_accept_server(answer)
    try:
        port = lsock.getsockname()[1]
        r, p = load(f"ws://127.0.0.1:{port}/", "-c", "1", "-d", "300ms")
        assert p.returncode == 1
        assert r["completed"] == 0 and r["errors"]["parse"] >= 1, r["errors"]
        assert why in r["ws"]["error"], r["ws"]
    finally:
        lsock.close()
        t.join(10)


@pytest.mark.skipif(not shutil.which("openssl"), reason="the openssl command makes the test certificate")
def test_wss(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"], check=True, capture_output=True)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(cert), str(key))
    server = EchoServer(ssl_context=ctx)
    try:
        r, p = load(f"wss://127.0.0.1:{server.port}/echo", "-c", "2", "-n", "200", "--ws-size", "5000",
                    "--cacert", str(cert))
        assert p.returncode == 0, p.stderr
        assert r["tls"] is True and r["tls_verify"] is True
        assert r["completed"] == 200 and r["errors"]["total"] == 0, r["errors"]
        assert server.wait_closes(2) == [1000, 1000]
    finally:
        server.stop()
