#!/usr/bin/env python3
"""Build the fuzz_h2 seed corpus: client sessions as the Python h2 package
emits them (plus a few frames it will not send, built by hand).

Each seed is fuzz_h2's control byte, then the client's bytes after the
24-octet connection preface (the target sends the preface itself). Every
session is written twice: all in one write (control 0x87: the client
stays 64 loop iterations), and in 64-byte writes (0x82); where deadlines
matter a third time, lingering ~30 ms (0xf7), and where the gateway's
writes may stall, by a client that reads nothing (0x8f; 0xff lingering,
so that the stalled write's deadline passes). The paths name what
the in-process worker does (see fuzz_h2.c: b big body, e answer after the
body, t trailers, n 204, r RESET, x RESET after the head, l LIMIT, p body
never read, s no answer).

Needs the h2 package (tests/e2e/requirements.txt): run with the e2e venv
from the repository root,
    .venv/bin/python tests/fuzz/make_h2_seeds.py
and commit tests/fuzz/corpus/h2/."""
import pathlib
import struct

import h2.config
import h2.connection
import h2.settings

root = pathlib.Path(__file__).resolve().parents[2]
out = root / "tests" / "fuzz" / "corpus" / "h2"
out.mkdir(parents=True, exist_ok=True)
for f in out.iterdir():
    f.unlink()

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
AUTH = "127.0.0.1:8080"


def client():
    c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    c.initiate_connection()
    return c


def req(path, method="GET", extra=()):
    return [(":method", method), (":scheme", "http"), (":authority", AUTH), (":path", path)] + list(extra)


def frame(ftype, flags, sid, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack(">I", sid) + payload


def session(c):
    data = c.data_to_send()
    assert data.startswith(PREFACE)
    return data[len(PREFACE):]


seeds = {}

# GET, the smallest session
c = client()
c.send_headers(1, req("/"), end_stream=True)
seeds["get"] = session(c)

# POST with a body and trailers, answered after the body
c = client()
c.send_headers(1, req("/et", "POST", [("content-type", "text/plain")]))
c.send_data(1, b"hello, ")
c.send_data(1, b"world")
c.send_headers(1, [("x-trailer", "1")], end_stream=True)
seeds["post-body-trailers"] = session(c)

# POST with content-length and padded DATA
c = client()
c.send_headers(1, req("/e", "POST", [("content-length", "10")]))
c.send_data(1, b"0123456789", end_stream=True, pad_length=7)
seeds["post-length-padded"] = session(c)

# GET, then RST_STREAM (CANCEL) at once: rapid reset in miniature
c = client()
for sid in (1, 3, 5):
    c.send_headers(sid, req("/s"), end_stream=True)
    c.reset_stream(sid, 8)
seeds["rst"] = session(c)

# SETTINGS, PING, WINDOW_UPDATE, PRIORITY, then a request
c = client()
c.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1 << 20,
                   h2.settings.SettingCodes.MAX_FRAME_SIZE: 32768,
                   h2.settings.SettingCodes.HEADER_TABLE_SIZE: 1024})
c.ping(b"12345678")
c.increment_flow_control_window(1 << 20)
c.send_headers(1, req("/b"), end_stream=True)
c.prioritize(1, weight=200, depends_on=0, exclusive=False)
c.increment_flow_control_window(1 << 16, stream_id=1)
seeds["settings-ping-window"] = session(c)

# ten big bodies with wide windows (1 MB: more than the sockets hold for
# a client that reads nothing)
c = client()
c.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1 << 20})
c.increment_flow_control_window(1 << 24)
for i in range(10):
    c.send_headers(1 + 2 * i, req("/b"), end_stream=True)
seeds["big-wide-windows"] = session(c)

# the big body with a shut window (SETTINGS_INITIAL_WINDOW_SIZE 0)
c = client()
c.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 0})
c.send_headers(1, req("/b"), end_stream=True)
seeds["zero-window"] = session(c)

# many streams, each a different worker behaviour
c = client()
for i, p in enumerate(["/t", "/n", "/r", "/x", "/b", "/s", "/"]):
    c.send_headers(1 + 2 * i, req(p), end_stream=True)
seeds["many-streams"] = session(c)

# request bodies the worker limits or never reads
c = client()
c.send_headers(1, req("/l", "POST"))
c.send_data(1, b"x" * 100, end_stream=True)
c.send_headers(3, req("/p", "PUT", [("content-length", "5000")]))
c.send_data(3, b"y" * 5000, end_stream=True)
c.send_headers(5, req("/e", "POST"))
c.send_data(5, b"z" * 9000, end_stream=True)  # beyond the worker's window: credit
seeds["post-limit-paused"] = session(c)

# HEAD; split cookies; host beside :authority; a 431 and a 414 of sorts
c = client()
c.send_headers(1, req("/", "HEAD"), end_stream=True)
c.send_headers(3, req("/?q=1", extra=[("cookie", "a=1"), ("cookie", "b=2"), ("host", AUTH)]),
               end_stream=True)
c.send_headers(5, req("/", extra=[("x-h%d" % i, "v") for i in range(40)]), end_stream=True)
c.send_headers(7, req("/" + "p" * 1100), end_stream=True)
seeds["head-cookies-limits"] = session(c)

# CONNECT (501) and an OPTIONS *
c = client()
c.send_headers(1, [(":method", "CONNECT"), (":authority", AUTH)], end_stream=True)
c.send_headers(3, req("*", "OPTIONS"), end_stream=True)
seeds["connect-options"] = session(c)

# the client's GOAWAY after a request
c = client()
c.send_headers(1, req("/"), end_stream=True)
c.close_connection()
seeds["goaway"] = session(c)

# by hand: a header block split into HEADERS + CONTINUATION, empty DATA
# frames, a PING ACK and an unknown frame type
c = client()
c.send_headers(1, req("/e", "POST"), end_stream=False)
prefix = session(c)
# the HEADERS frame h2 emitted last: walk the frames
i, frames = 0, []
while i < len(prefix):
    n = int.from_bytes(prefix[i:i + 3], "big")
    frames.append(prefix[i:i + 9 + n])
    i += 9 + n
headers = frames[-1]
assert headers[3] == 1
block = headers[9:]
split = frame(1, 0, 1, block[:5]) + frame(9, 4, 1, block[5:])
seeds["continuation-empty-data"] = (b"".join(frames[:-1]) + split + frame(0, 0, 1) * 3 +
                                    frame(0, 1, 1, b"") + frame(6, 1, 0, b"87654321") +
                                    frame(0xfa, 0, 0, b"unknown"))

# where the gateway's deadlines matter, a third copy that lingers ~30 ms;
# where its writes may stall, one whose client reads nothing
slow = {"zero-window", "post-limit-paused"}
deaf = {"settings-ping-window", "many-streams", "big-wide-windows"}
n = 0
for name, data in sorted(seeds.items()):
    assert len(data) + 1 <= 16384, name
    for suffix, ctl in ([("one", 0x87), ("pieces", 0x82)] + ([("linger", 0xf7)] if name in slow else []) +
                        ([("not-reading", 0xff if name == "big-wide-windows" else 0x8f)] if name in deaf else [])):
        (out / f"{name}-{suffix}").write_bytes(bytes([ctl]) + data)
        n += 1
print(f"{n} seeds in {out.relative_to(root)}")
