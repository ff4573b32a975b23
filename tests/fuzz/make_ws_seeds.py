#!/usr/bin/env python3
"""Build the fuzz_ws seed corpus: WebSocket frame streams, both roles.

Each seed is fuzz_ws's control byte (bit 0: server mode, i.e. masked client
frames; bits 1-2: max_message 0/16/300/70000; the rest: piece sizes), a
credit byte, then the frames. Every stream is written for both roles, the
frames masked as the role requires, plus a few that break RFC 6455 on
purpose. Run from the repository root (no packages needed),
    python3 tests/fuzz/make_ws_seeds.py
and commit tests/fuzz/corpus/ws/."""
import pathlib
import struct

root = pathlib.Path(__file__).resolve().parents[2]
out = root / "tests" / "fuzz" / "corpus" / "ws"
out.mkdir(parents=True, exist_ok=True)
for f in out.iterdir():
    f.unlink()

KEY = bytes([0x37, 0xFA, 0x21, 0x3D])
TEXT, BINARY, CONT, CLOSE, PING, PONG = 1, 2, 0, 8, 9, 10


def frame(op, payload=b"", fin=True, masked=True, rsv=0, length=None):
    n = len(payload) if length is None else length
    head = bytes([(0x80 if fin else 0) | rsv << 4 | op])
    m = 0x80 if masked else 0
    if n <= 125:
        head += bytes([m | n])
    elif n <= 0xFFFF:
        head += bytes([m | 126]) + struct.pack(">H", n)
    else:
        head += bytes([m | 127]) + struct.pack(">Q", n)
    if masked:
        head += KEY
        payload = bytes(b ^ KEY[i % 4] for i, b in enumerate(payload))
    return head + payload


def close(code, reason=b"", masked=True):
    return frame(CLOSE, struct.pack(">H", code) + reason, masked=masked)


# name -> function(masked) -> stream
streams = {
    "hello": lambda m: frame(TEXT, b"Hello", masked=m),
    "fragmented": lambda m: frame(TEXT, b"Hel", fin=False, masked=m) + frame(PING, b"?", masked=m)
    + frame(CONT, b"", fin=False, masked=m) + frame(CONT, b"lo", masked=m),
    "utf8-split": lambda m: frame(TEXT, "κόσ".encode()[:5], fin=False, masked=m)
    + frame(CONT, "κόσμε".encode()[5:], masked=m),
    "binary-300": lambda m: frame(BINARY, bytes(range(256)) + bytes(44), masked=m),
    # a 64-bit length; only the payload's start (seeds stay small)
    "binary-70000-start": lambda m: frame(BINARY, bytes(i % 251 for i in range(70000)), masked=m)[:1000],
    "empty-messages": lambda m: frame(TEXT, masked=m) + frame(BINARY, fin=False, masked=m)
    + frame(CONT, masked=m),
    "ping-pong-close": lambda m: frame(PING, b"x" * 125, masked=m) + frame(PONG, masked=m)
    + close(1000, "bye ✓".encode(), masked=m),
    "close-empty": lambda m: frame(CLOSE, masked=m) + frame(TEXT, b"after", masked=m),
    "close-4999": lambda m: close(4999, b"r" * 123, masked=m),
    "non-minimal": lambda m: frame(BINARY, b"abc", masked=m)[:1] + bytes([(0x80 if m else 0) | 126, 0, 3])
    + (KEY + bytes(b ^ KEY[i % 4] for i, b in enumerate(b"abc")) if m else b"abc"),
    # violations
    "rsv": lambda m: frame(TEXT, b"x", rsv=4, masked=m),
    "opcode-3": lambda m: frame(3, b"x", masked=m),
    "cont-alone": lambda m: frame(CONT, b"x", masked=m),
    "text-in-text": lambda m: frame(TEXT, b"a", fin=False, masked=m) + frame(TEXT, b"b", masked=m),
    "ping-fragmented": lambda m: frame(PING, b"x", fin=False, masked=m),
    "ping-126": lambda m: frame(PING, b"x" * 126, masked=m),
    "close-1-byte": lambda m: frame(CLOSE, b"\x03", masked=m),
    "close-1005": lambda m: close(1005, masked=m),
    "close-bad-utf8": lambda m: close(1000, b"\xff", masked=m),
    "utf8-bad": lambda m: frame(TEXT, b"ok\xed\xa0\x80", masked=m),
    "utf8-truncated": lambda m: frame(TEXT, b"ok\xe2\x82", masked=m),
    "length-top-bit": lambda m: frame(BINARY, b"", length=1 << 63, masked=m),
    "too-big-16": lambda m: frame(BINARY, b"z" * 10, fin=False, masked=m) + frame(CONT, b"z" * 10, masked=m),
}

count = 0
for name, make in streams.items():
    for server in (1, 0):
        data = make(bool(server))
        for ctl, credit in ((server | 0xF8, 0), (server | 2 | 0x10, 3), (server | 4, 7)):
            role = "server" if server else "client"
            (out / f"{name}-{role}-{ctl:02x}").write_bytes(bytes([ctl, credit]) + data)
            count += 1
print("ws seeds:", count)
