#!/usr/bin/env python3
"""WebSocket clients for scripts/bench (section ws); standard library only.

    bench_ws.py check URL       a handshake and four echoes (text and binary,
                                32 B to 100 KiB), then a closing handshake;
                                exit 0 if every answer was right
    bench_ws.py idle URL N      open N WebSockets (the handshake of each
                                checked), print "open OK FAILED", then wait
                                for a line on stdin; then one 32-byte text
                                echo on every open one, a close, and a JSON
                                report on stdout
    bench_ws.py push URL BYTES  a handshake, print "open", and read nothing
                                until a line on stdin (so whatever the server
                                pushes piles up in front of the client); then
                                read every message up to the server's close
                                and print a JSON report (bytes, messages,
                                bytes the kernel held when reading resumed)

URL: ws://HOST:PORT/PATH. The bench pins this process to the load CPU and
samples the server's memory between the lines it prints and the line it
sends. A server frame is never masked; every client frame is.
"""

from __future__ import annotations

import asyncio
import base64
import fcntl
import hashlib
import json
import os
import resource
import socket
import struct
import sys
import termios
import time
from typing import Optional
from urllib.parse import urlsplit

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10
TIMEOUT = 30.0  # any single wait: a server that says nothing fails the run, never hangs it


class WSError(Exception):
    pass


def split_url(url: str) -> tuple[str, int, str]:
    u = urlsplit(url)
    if u.scheme != "ws":
        raise WSError(f"not a ws:// URL: {url}")
    return u.hostname or "127.0.0.1", u.port or 80, (u.path or "/") + (f"?{u.query}" if u.query else "")


def request(host: str, port: int, path: str) -> tuple[bytes, str]:
    """The opening handshake's bytes and the Sec-WebSocket-Accept it must get."""
    key = base64.b64encode(os.urandom(16)).decode()
    want = base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()
    req = (f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n")
    return req.encode(), want


def check_head(head: bytes, want: str) -> None:
    """RFC 6455 4.1's checks of the server's handshake answer."""
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or parts[1] != "101":
        raise WSError(f"handshake answered {lines[0]!r}")
    h: dict[str, str] = {}
    for ln in lines[1:]:
        if ":" in ln:
            k, v = ln.split(":", 1)
            h[k.strip().lower()] = (h[k.strip().lower()] + ", " if k.strip().lower() in h else "") + v.strip()
    if h.get("upgrade", "").lower() != "websocket":
        raise WSError(f"101 without Upgrade: websocket ({h.get('upgrade')!r})")
    if "upgrade" not in [t.strip() for t in h.get("connection", "").lower().split(",")]:
        raise WSError(f"101 without Connection: upgrade ({h.get('connection')!r})")
    if h.get("sec-websocket-accept") != want:
        raise WSError(f"wrong Sec-WebSocket-Accept {h.get('sec-websocket-accept')!r} (want {want!r})")
    if "sec-websocket-extensions" in h:
        raise WSError(f"an extension nobody offered: {h['sec-websocket-extensions']!r}")


def encode(op: int, payload: bytes) -> bytes:
    """One masked, final client frame."""
    key = os.urandom(4)
    n = len(payload)
    if n < 126:
        hdr = struct.pack("!BB", 0x80 | op, 0x80 | n)
    elif n < 65536:
        hdr = struct.pack("!BBH", 0x80 | op, 0xFE, n)
    else:
        hdr = struct.pack("!BBQ", 0x80 | op, 0xFF, n)
    if n:
        rep = (key * (n // 4 + 1))[:n]
        payload = (int.from_bytes(payload, "big") ^ int.from_bytes(rep, "big")).to_bytes(n, "big")
    return hdr + key + payload


class Decoder:
    """Server frames in, whole messages out: (opcode, payload) for text,
    binary, and control frames (close, ping, pong) as they come."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.parts: list[bytes] = []
        self.op = 0

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        self.buf += data
        out, pos, b = [], 0, self.buf
        while len(b) - pos >= 2:
            b0, b1 = b[pos], b[pos + 1]
            if b1 & 0x80:
                raise WSError("a masked server frame")
            if b0 & 0x70:
                raise WSError("reserved bits set (no extension was agreed)")
            n, hl = b1 & 0x7F, 2
            if n == 126:
                if len(b) - pos < 4:
                    break
                n, hl = struct.unpack_from("!H", b, pos + 2)[0], 4
            elif n == 127:
                if len(b) - pos < 10:
                    break
                n, hl = struct.unpack_from("!Q", b, pos + 2)[0], 10
            if len(b) - pos < hl + n:
                break
            payload = bytes(b[pos + hl:pos + hl + n])
            pos += hl + n
            op, fin = b0 & 0x0F, bool(b0 & 0x80)
            if op >= 8:
                out.append((op, payload))
                continue
            if op != OP_CONT:
                if self.parts:
                    raise WSError("a new message inside a fragmented one")
                self.op = op
            elif not self.parts and not self.op:
                raise WSError("a continuation frame outside a message")
            self.parts.append(payload)
            if fin:
                out.append((self.op, b"".join(self.parts)))
                self.parts, self.op = [], 0
        del b[:pos]
        return out


# ---------------------------------------------------------------- blocking client

class Client:
    def __init__(self, url: str, timeout: float = TIMEOUT) -> None:
        host, port, path = split_url(url)
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        req, want = request(host, port, path)
        self.sock.sendall(req)
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise WSError(f"connection closed during the handshake ({head[:80]!r})")
            head += chunk
            if len(head) > 65536:
                raise WSError("handshake answer over 64 KiB")
        head, _, rest = head.partition(b"\r\n\r\n")
        check_head(head, want)
        self.dec = Decoder()
        self.pending = self.dec.feed(rest)

    def send(self, op: int, payload: bytes) -> None:
        self.sock.sendall(encode(op, payload))

    def recv(self) -> tuple[int, bytes]:
        """The next message or close frame; pings are answered."""
        while True:
            while self.pending:
                op, payload = self.pending.pop(0)
                if op == OP_PING:
                    self.send(OP_PONG, payload)
                    continue
                if op == OP_PONG:
                    continue
                return op, payload
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise WSError("connection closed without a close frame")
            self.pending = self.dec.feed(chunk)

    def close(self) -> int:
        """Closing handshake from this side: the server's close code."""
        self.send(OP_CLOSE, struct.pack("!H", 1000))
        while True:
            op, payload = self.recv()
            if op == OP_CLOSE:
                self.sock.close()
                return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005


def check(url: str) -> None:
    """Raises WSError (or OSError) unless the server echoes like an echo server."""
    c = Client(url, timeout=10)
    try:
        for op, msg in ((OP_TEXT, b"x" * 32), (OP_TEXT, "héllo, sluice ✓".encode()),
                        (OP_BINARY, bytes(range(256))), (OP_BINARY, os.urandom(100 * 1024))):
            c.send(op, msg)
            rop, got = c.recv()
            if (rop, got) != (op, msg):
                kind = {OP_TEXT: "text", OP_BINARY: "binary", OP_CLOSE: "close"}.get(rop, str(rop))
                raise WSError(f"echo of a {len(msg)}-byte {'text' if op == OP_TEXT else 'binary'} message: "
                              f"got {kind}, {len(got)} bytes" + (" (different bytes)" if len(got) == len(msg) else ""))
        code = c.close()
        if code != 1000:
            raise WSError(f"the server answered close 1000 with {code}")
    finally:
        c.sock.close()


def push(url: str, expect: int) -> dict:
    """Handshake, stall until told, then read all (see the docstring)."""
    c = Client(url)
    print("open", flush=True)
    sys.stdin.readline()
    queued = struct.unpack("i", fcntl.ioctl(c.sock.fileno(), termios.FIONREAD, b"\0\0\0\0"))[0]
    t0 = time.monotonic()
    got = msgs = 0
    bad = ""
    while True:
        op, payload = c.recv()
        if op == OP_CLOSE:
            code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
            c.send(OP_CLOSE, payload[:2])
            break
        # wsworker /push: each message starts with its index (8 bytes, big-endian)
        if not bad and (op != OP_BINARY or len(payload) < 8 or struct.unpack_from("!Q", payload)[0] != msgs):
            bad = f"message {msgs}: opcode {op}, {len(payload)} bytes, out of sequence"
        got += len(payload)
        msgs += 1
    secs = time.monotonic() - t0
    c.sock.close()
    if got != expect and not bad:
        bad = f"{got} bytes received, {expect} expected"
    return {"bytes": got, "messages": msgs, "close_code": code, "queued_in_kernel": queued,
            "read_s": secs, "error": bad}


# ---------------------------------------------------------------- many idle WebSockets (asyncio)

async def _open(host: str, port: int, path: str, sem: asyncio.Semaphore) -> tuple:
    async with sem:
        r, w = await asyncio.wait_for(asyncio.open_connection(host, port), TIMEOUT)
        req, want = request(host, port, path)
        w.write(req)
        head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), TIMEOUT)
        check_head(head[:-4], want)
        return r, w


async def _echo(r: asyncio.StreamReader, w: asyncio.StreamWriter, i: int, sem: asyncio.Semaphore) -> None:
    """One 32-byte text message and its echo, then the closing handshake."""
    msg = f"{i:08d}".encode() * 4
    dec = Decoder()
    async with sem:
        w.write(encode(OP_TEXT, msg))
        closing = False
        while True:
            data = await asyncio.wait_for(r.read(65536), TIMEOUT)
            if not data:
                raise WSError("closed by the server")
            for op, payload in dec.feed(data):
                if op == OP_PING:
                    w.write(encode(OP_PONG, payload))
                elif op == OP_CLOSE:
                    if not closing:
                        raise WSError("the server closed first")
                    w.close()
                    return
                elif op != OP_PONG:
                    if (op, payload) != (OP_TEXT, msg):
                        raise WSError(f"wrong echo (opcode {op}, {len(payload)} bytes)")
                    w.write(encode(OP_CLOSE, struct.pack("!H", 1000)))
                    closing = True


async def idle(url: str, n: int) -> dict:
    host, port, path = split_url(url)
    sem = asyncio.Semaphore(200)  # handshakes in flight: the listen backlog is not the test
    t0 = time.monotonic()
    res = await asyncio.gather(*(_open(host, port, path, sem) for _ in range(n)), return_exceptions=True)
    open_s = time.monotonic() - t0
    conns = [x for x in res if not isinstance(x, BaseException)]
    errs = [x for x in res if isinstance(x, BaseException)]
    print(f"open {len(conns)} {len(errs)}", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    t1 = time.monotonic()
    ech = await asyncio.gather(*(_echo(r, w, i, sem) for i, (r, w) in enumerate(conns)), return_exceptions=True)
    bad = [x for x in ech if isinstance(x, BaseException)]
    for _, w in conns:
        w.close()
    first = (errs or bad or [None])[0]
    return {"opened": len(conns), "open_failed": len(errs), "open_s": open_s, "echoed": len(conns) - len(bad),
            "echo_failed": len(bad), "echo_s": time.monotonic() - t1,
            "error": "" if first is None else f"{type(first).__name__}: {first or f'no answer in {TIMEOUT:g} s'}"}


def main() -> int:
    if len(sys.argv) < 3 or sys.argv[1] not in ("check", "idle", "push"):
        print(__doc__, file=sys.stderr)
        return 2
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    mode, url = sys.argv[1], sys.argv[2]
    if mode == "check":
        try:
            check(url)
        except (WSError, OSError) as exc:
            print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
            return 1
        return 0
    rep: Optional[dict] = push(url, int(sys.argv[3])) if mode == "push" else asyncio.run(idle(url, int(sys.argv[3])))
    print(json.dumps(rep), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
