#!/usr/bin/env python3
"""A deliberately misbehaving sluice worker (Python stdlib only), run by the
gateway as its COMMAND in the e2e tests:

    badworker.py MODE

It connects to $SLUICE_SOCKET, completes the v1 handshake, and for every
REQUEST misbehaves according to MODE:

    crlf-header     RESPONSE 200 whose header value contains CR LF (injection)
    bad-header-name RESPONSE 200 with a header name containing a space
    garbage         a frame whose payload is not MessagePack
    oversize-frame  a frame length above the gateway's max_frame
    body-over-window  RESPONSE 200 then more BODY than the response window
    reset           RESET (internal) before any response
    refuse          RESET (refused) before any response, as a stopping worker does
    hop-by-hop      200 "ok\n" with Transfer-Encoding/Connection/Keep-Alive
                    headers of its own (the gateway must drop them)
    short-body      Content-Length: 10 but only 3 body bytes, then END
    long-body       Content-Length: 3 but 10 body bytes, then END
    die-before-head the process exits (status 1) on a REQUEST, before any response
    die-mid-body    RESPONSE 200 with Content-Length: 100000, 1000 body bytes,
                    then the process exits (status 1)
    ok              a correct 200 "ok" response (control)
    ignore-drain    correct answers, but DRAIN and SIGTERM are ignored: the
                    link stays open and, once the gateway closes it, the
                    process lingers (a stuck worker)
    mute            after the handshake it reads and sends nothing, not even
                    a PONG (a host gone silent); it exits when the gateway's
                    close reaches it

$SLUICE_SOCKET may be a Unix path or tcp:HOST:PORT; $SLUICE_TOKEN, when set,
goes in HELLO.

With `SLUICE_BADWORKER_MARK=PATH`, only one REQUEST is mishandled, by
whichever process gets there first (it creates PATH); every other one, also
in restarted workers, gets the correct answer.
"""

import os
import signal
import socket
import time
import struct
import sys

HELLO, REQUEST, RESPONSE, BODY, END, CREDIT, CANCEL, RESET = 1, 2, 3, 4, 5, 6, 7, 8
PING, PONG, DRAIN = 10, 11, 12


# -- a minimal MessagePack codec (canonical encodings, as PROTOCOL.md 2.1) --

class Text(str):
    pass


def enc(v):
    if isinstance(v, bool):
        return b"\xc3" if v else b"\xc2"
    if isinstance(v, int):
        assert v >= 0
        if v < 128:
            return bytes([v])
        if v < 256:
            return b"\xcc" + bytes([v])
        if v < 65536:
            return b"\xcd" + struct.pack(">H", v)
        if v < 2 ** 32:
            return b"\xce" + struct.pack(">I", v)
        return b"\xcf" + struct.pack(">Q", v)
    if isinstance(v, str):
        b = v.encode()
        n = len(b)
        if n < 32:
            return bytes([0xa0 | n]) + b
        if n < 256:
            return b"\xd9" + bytes([n]) + b
        if n < 65536:
            return b"\xda" + struct.pack(">H", n) + b
        return b"\xdb" + struct.pack(">I", n) + b
    if isinstance(v, (bytes, bytearray)):
        n = len(v)
        if n < 256:
            return b"\xc4" + bytes([n]) + bytes(v)
        if n < 65536:
            return b"\xc5" + struct.pack(">H", n) + bytes(v)
        return b"\xc6" + struct.pack(">I", n) + bytes(v)
    if isinstance(v, list):
        n = len(v)
        h = bytes([0x90 | n]) if n < 16 else b"\xdc" + struct.pack(">H", n)
        return h + b"".join(enc(x) for x in v)
    if isinstance(v, dict):
        n = len(v)
        h = bytes([0x80 | n]) if n < 16 else b"\xde" + struct.pack(">H", n)
        return h + b"".join(enc(k) + enc(x) for k, x in v.items())
    raise TypeError(type(v))


def dec(b, i=0):
    t = b[i]
    if t < 0x80:
        return t, i + 1
    if 0x80 <= t <= 0x8f:
        return _map(b, i + 1, t & 0x0f)
    if 0x90 <= t <= 0x9f:
        return _arr(b, i + 1, t & 0x0f)
    if 0xa0 <= t <= 0xbf:
        n = t & 0x1f
        return bytes(b[i + 1:i + 1 + n]), i + 1 + n
    if t == 0xc0:
        return None, i + 1
    if t in (0xc2, 0xc3):
        return t == 0xc3, i + 1
    sizes = {0xc4: 1, 0xc5: 2, 0xc6: 4, 0xd9: 1, 0xda: 2, 0xdb: 4}
    if t in sizes:
        k = sizes[t]
        n = int.from_bytes(b[i + 1:i + 1 + k], "big")
        s = i + 1 + k
        return bytes(b[s:s + n]), s + n
    ints = {0xcc: 1, 0xcd: 2, 0xce: 4, 0xcf: 8}
    if t in ints:
        k = ints[t]
        return int.from_bytes(b[i + 1:i + 1 + k], "big"), i + 1 + k
    sints = {0xd0: 1, 0xd1: 2, 0xd2: 4, 0xd3: 8}
    if t in sints:
        k = sints[t]
        return int.from_bytes(b[i + 1:i + 1 + k], "big", signed=True), i + 1 + k
    if t in (0xdc, 0xdd):
        k = 2 if t == 0xdc else 4
        return _arr(b, i + 1 + k, int.from_bytes(b[i + 1:i + 1 + k], "big"))
    if t in (0xde, 0xdf):
        k = 2 if t == 0xde else 4
        return _map(b, i + 1 + k, int.from_bytes(b[i + 1:i + 1 + k], "big"))
    if t >= 0xe0:
        return t - 256, i + 1
    raise ValueError(f"unsupported msgpack byte {t:#x}")


def _arr(b, i, n):
    out = []
    for _ in range(n):
        v, i = dec(b, i)
        out.append(v)
    return out, i


def _map(b, i, n):
    out = {}
    for _ in range(n):
        k, i = dec(b, i)
        v, i = dec(b, i)
        out[k if not isinstance(k, bytes) else k.decode("latin-1")] = v
    return out, i


def frame(*items):
    payload = enc(list(items))
    return struct.pack(">I", len(payload)) + payload


class Link:
    def __init__(self, path):
        if path.startswith("tcp:"):
            host, port = path[4:].rsplit(":", 1)
            self.s = socket.create_connection((host.strip("[]"), int(port)), timeout=10)
            self.s.settimeout(None)
        else:
            self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.s.connect(path)
        self.buf = bytearray()

    def send(self, data):
        self.s.sendall(data)

    def recv_frame(self):
        while True:
            if len(self.buf) >= 4:
                n = struct.unpack(">I", self.buf[:4])[0]
                if len(self.buf) >= 4 + n:
                    payload = bytes(self.buf[4:4 + n])
                    del self.buf[:4 + n]
                    v, _ = dec(payload)
                    return v
            d = self.s.recv(65536)
            if not d:
                return None
            self.buf += d


def main():
    mode = sys.argv[1] if len(sys.argv) > 1 else "ok"
    mark = os.environ.get("SLUICE_BADWORKER_MARK")
    if mode == "ignore-drain":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    path = os.environ["SLUICE_SOCKET"]
    if path.startswith("unix:"):
        path = path[5:]
    link = Link(path)
    settings = {"pid": os.getpid(), "lib": "badworker/0", "max_streams": 16, "window": 65536}
    if os.environ.get("SLUICE_TOKEN"):
        settings["token"] = os.environ["SLUICE_TOKEN"]
    link.send(frame(HELLO, 0, 1, settings))
    hello = link.recv_frame()
    if not hello or hello[0] != HELLO:
        print(f"badworker: unexpected first frame {hello!r}", file=sys.stderr)
        return 1
    settings = hello[3] if len(hello) > 3 else {}
    resp_window = settings.get("window", 65536)
    max_frame = settings.get("max_frame", 1 << 20)
    if mode == "mute":
        time.sleep(3600)
        return 0
    while True:
        f = link.recv_frame()
        if f is None:
            if mode == "ignore-drain":
                time.sleep(3600)  # stuck: only SIGKILL ends it
            return 0
        ftype, sid = f[0], f[1]
        if ftype == PING:
            link.send(frame(PONG, 0, f[2]))
            continue
        if ftype == DRAIN:
            if mode == "ignore-drain":
                continue
            return 0
        if ftype != REQUEST:
            continue
        m = mode
        if mark:
            try:
                os.close(os.open(mark, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                m = "ok"
        if m in ("ok", "ignore-drain"):
            link.send(frame(RESPONSE, sid, 200, [[b"content-type", b"text/plain"],
                                                 [b"content-length", b"3"]], 1)
                      + frame(BODY, sid, b"ok\n") + frame(END, sid))
        elif m == "crlf-header":
            link.send(frame(RESPONSE, sid, 200,
                            [[b"x-evil", b"a\r\nX-Injected: yes"],
                             [b"content-length", b"3"]], 1)
                      + frame(BODY, sid, b"ok\n") + frame(END, sid))
        elif m == "bad-header-name":
            link.send(frame(RESPONSE, sid, 200, [[b"bad name", b"v"]], 0))
        elif m == "garbage":
            link.send(struct.pack(">I", 3) + b"\xc1\xc1\xc1")
        elif m == "oversize-frame":
            link.send(struct.pack(">I", max_frame + 1) + b"\x92\x04")
        elif m == "body-over-window":
            link.send(frame(RESPONSE, sid, 200, [], 1))
            link.send(frame(BODY, sid, b"x" * (resp_window + 1)))
        elif m == "reset":
            link.send(frame(RESET, sid, 1))
        elif m == "refuse":
            link.send(frame(RESET, sid, 2))
        elif m == "hop-by-hop":
            link.send(frame(RESPONSE, sid, 200,
                            [[b"transfer-encoding", b"chunked"],
                             [b"connection", b"close"],
                             [b"keep-alive", b"timeout=5"],
                             [b"x-kept", b"1"]], 1)
                      + frame(BODY, sid, b"ok\n") + frame(END, sid))
        elif m == "die-before-head":
            os._exit(1)
        elif m == "die-mid-body":
            link.send(frame(RESPONSE, sid, 200, [[b"content-length", b"100000"]], 1)
                      + frame(BODY, sid, b"d" * 1000))
            time.sleep(0.2)  # the head and bytes reach the gateway first
            os._exit(1)
        elif m == "short-body":
            link.send(frame(RESPONSE, sid, 200, [[b"content-length", b"10"]], 1)
                      + frame(BODY, sid, b"abc") + frame(END, sid))
        elif m == "long-body":
            link.send(frame(RESPONSE, sid, 200, [[b"content-length", b"3"]], 1)
                      + frame(BODY, sid, b"abcHTTP/1.1 299 Smuggled\r\n\r\n")
                      + frame(END, sid))
        else:
            print(f"badworker: unknown mode {m}", file=sys.stderr)
            return 2


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (BrokenPipeError, ConnectionResetError):
        sys.exit(0)
