"""A raw RFC 6455 WebSocket client for the end-to-end tests (stdlib only).

The conformance tests need to put exactly the bytes they want on the wire
(reserved bits, unmasked frames, non-minimal lengths, a frame cut into
single bytes...), which no WebSocket library allows, and to see exactly what
the gateway answers. So:

* `frame(...)` builds any frame, legal or not;
* `WS` is one client connection (an httpc.Conn, so a refused handshake or a
  later plain HTTP request on the same connection is read with httpc's
  parser): `handshake()`, `send_frame()`/`send_raw()` (optionally in pieces
  with delays), `recv_frame()`, `recv_message()` and `expect_close()`.

Nothing is answered automatically (no pong, no close echo) unless a call
asks for it. Every socket operation has a deadline: a gateway that says
nothing fails the test with a timeout, never hangs it.
"""

import base64
import hashlib
import os
import socket
import struct
import time

from httpc import Conn, ConnectionClosed

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

OP_CONT, OP_TEXT, OP_BINARY = 0x0, 0x1, 0x2
OP_CLOSE, OP_PING, OP_PONG = 0x8, 0x9, 0xA
OP_NAMES = {0: "cont", 1: "text", 2: "binary", 8: "close", 9: "ping", 10: "pong"}

RSV1, RSV2, RSV3 = 0x4, 0x2, 0x1  # the `rsv` argument's bits

DEFAULT_TIMEOUT = 5.0


class Timeout(AssertionError):
    """The gateway did not send what was awaited in time."""


def accept_value(key):
    """Sec-WebSocket-Accept for a Sec-WebSocket-Key (str or bytes)."""
    if isinstance(key, str):
        key = key.encode("latin-1")
    return base64.b64encode(hashlib.sha1(key + GUID).digest()).decode()


def new_key():
    return base64.b64encode(os.urandom(16)).decode()


def mask_bytes(data, key):
    """XOR data with the 4-byte key (fast for megabytes: one big-int XOR)."""
    n = len(data)
    if not n:
        return b""
    rep = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(rep, "big")).to_bytes(n, "big")


def frame(opcode, payload=b"", *, fin=True, rsv=0, mask=True, key=None,
          length=None, len_form=None):
    """Bytes of one frame.

    rsv: the three reserved bits as a number (RSV1 = 4, RSV2 = 2, RSV3 = 1).
    mask: a client frame is masked (RFC 6455 5.3); False sends it in clear.
    key: the 4 masking bytes (random by default).
    length: the length to declare (default len(payload)) -- a lie is allowed.
    len_form: 7, 16 or 64 to force that length encoding, even non-minimal.
    """
    if isinstance(payload, str):
        payload = payload.encode()
    n = len(payload) if length is None else length
    b0 = (0x80 if fin else 0) | ((rsv & 7) << 4) | (opcode & 0x0F)
    if len_form is None:
        len_form = 7 if n <= 125 else 16 if n <= 0xFFFF else 64
    mbit = 0x80 if mask else 0
    if len_form == 7:
        assert n <= 127
        head = bytes([b0, mbit | n])
    elif len_form == 16:
        head = bytes([b0, mbit | 126]) + struct.pack(">H", n)
    elif len_form == 64:
        head = bytes([b0, mbit | 127]) + struct.pack(">Q", n)
    else:
        raise ValueError(len_form)
    if not mask:
        return head + payload
    if key is None:
        key = os.urandom(4)
    assert len(key) == 4
    return head + key + mask_bytes(payload, key)


def close_payload(code=None, reason=b""):
    if isinstance(reason, str):
        reason = reason.encode()
    if code is None:
        return b""
    return struct.pack(">H", code) + reason


class Frame:
    def __init__(self, opcode, fin, rsv, payload, masked):
        self.opcode = opcode
        self.fin = fin
        self.rsv = rsv
        self.payload = payload
        self.masked = masked

    @property
    def close_code(self):
        """The close code (1005 when the close frame carries none)."""
        assert self.opcode == OP_CLOSE
        if len(self.payload) >= 2:
            return struct.unpack(">H", self.payload[:2])[0]
        return 1005

    @property
    def close_reason(self):
        assert self.opcode == OP_CLOSE
        return self.payload[2:]

    def __repr__(self):
        p = self.payload if len(self.payload) <= 60 else self.payload[:60] + b"..."
        extra = f" code={self.close_code}" if self.opcode == OP_CLOSE else ""
        return (f"<Frame {OP_NAMES.get(self.opcode, hex(self.opcode))} fin={self.fin} "
                f"rsv={self.rsv} masked={self.masked}{extra} len={len(self.payload)} {p!r}>")


class Message:
    """A reassembled data message (opcode text/binary), or a control frame
    recv_message was asked to return (opcode ping/pong/close)."""

    def __init__(self, opcode, data, frames=1, frame=None):
        self.opcode = opcode
        self.data = data
        self.frames = frames
        self.frame = frame

    @property
    def text(self):
        return self.data.decode("utf-8")

    def __repr__(self):
        d = self.data if len(self.data) <= 60 else self.data[:60] + b"..."
        return f"<Message {OP_NAMES.get(self.opcode, self.opcode)} len={len(self.data)} {d!r}>"


class Handshake:
    """The answer to an opening handshake: status, headers (httpc.Response),
    and the bytes received after the head (for a 101: the first frames)."""

    def __init__(self, resp, key):
        self.resp = resp
        self.key = key
        self.status = resp.status
        self.headers = resp.headers

    def header(self, name, default=None):
        return self.resp.header(name, default)

    def header_all(self, name):
        return self.resp.header_all(name)

    def check_accept(self):
        """The 101 is a valid RFC 6455 4.2.2 answer to our key."""
        r = self.resp
        assert r.status == 101, r
        assert r.has_token("upgrade", "websocket"), f"Upgrade missing: {r}"
        assert r.has_token("connection", "upgrade"), f"Connection: upgrade missing: {r}"
        got = r.header_all("sec-websocket-accept")
        assert got == [accept_value(self.key)], \
            f"Sec-WebSocket-Accept {got!r}, expected {accept_value(self.key)!r}: {r}"
        assert not r.header_all("content-length") and not r.header_all("transfer-encoding"), \
            f"a 101 with body framing headers: {r}"
        return self


class WS(Conn):
    """One client connection. `timeout` is the default deadline of every
    wait (handshake, frame, close)."""

    def __init__(self, port, host="127.0.0.1", timeout=DEFAULT_TIMEOUT,
                 rcvbuf=None, sndbuf=None):
        super().__init__(port, host, timeout, rcvbuf, sndbuf)
        self.timeout = timeout
        self.key = None
        self.handshake_answer = None
        self._partial = None

    # -- handshake ----------------------------------------------------------
    def handshake_bytes(self, path="/echo", *, key=None, version="13",
                        protocols=None, extensions=None, headers=None,
                        method="GET", http="HTTP/1.1", host="127.0.0.1",
                        connection="Upgrade", upgrade="websocket", omit=()):
        """The request bytes; `omit` lists header names (lower case) to leave
        out, a None value leaves a header out too."""
        if key is None:
            key = new_key()
        self.key = key
        hs = [("Host", host), ("Upgrade", upgrade), ("Connection", connection),
              ("Sec-WebSocket-Key", key), ("Sec-WebSocket-Version", version)]
        if protocols is not None:
            hs.append(("Sec-WebSocket-Protocol", protocols))
        if extensions is not None:
            hs.append(("Sec-WebSocket-Extensions", extensions))
        hs += list(headers or [])
        omit = {o.lower() for o in omit}
        lines = [f"{method} {path} {http}\r\n"]
        for k, v in hs:
            if v is None or k.lower() in omit:
                continue
            lines.append(f"{k}: {v}\r\n")
        lines.append("\r\n")
        return "".join(lines).encode("latin-1")

    def handshake(self, path="/echo", *, extra=b"", expect=None, **kw):
        """Send an opening handshake (plus `extra` bytes in the same write)
        and read the answer's head, and its body when it is not a 101.
        With expect=101 a valid accept is asserted. Returns a Handshake; for
        a 101 the bytes already received after the head stay buffered for
        recv_frame (and are in .leftover)."""
        req = self.handshake_bytes(path, **kw)
        self.send_raw(req + extra)
        self._deadline(self.timeout)
        r = self.read_head()
        if r.status != 101:
            r.body = bytes(b"".join(self.iter_body(r)))
        hs = Handshake(r, self.key)
        hs.leftover = bytes(self.buf) if r.status == 101 else b""
        self.handshake_answer = hs
        if expect is not None:
            assert r.status == expect, f"expected {expect}, got {r}"
            if expect == 101:
                hs.check_accept()
        return hs

    # -- sending ------------------------------------------------------------
    def send_raw(self, data, pieces=None, delay=0.0):
        """Send bytes, optionally cut at `pieces` (a list of piece sizes, or
        an int: that many bytes per piece) with `delay` seconds between."""
        self.sock.settimeout(self.timeout)
        if pieces is None:
            self.sock.sendall(data)
            return
        if isinstance(pieces, int):
            sizes = [pieces] * ((len(data) + pieces - 1) // pieces)
        else:
            sizes = list(pieces) + [len(data)]
        i = 0
        for sz in sizes:
            if i >= len(data):
                break
            self.sock.sendall(data[i:i + sz])
            i += sz
            if delay and i < len(data):
                time.sleep(delay)

    def send_frame(self, opcode, payload=b"", pieces=None, delay=0.0, **kw):
        self.send_raw(frame(opcode, payload, **kw), pieces, delay)

    def send_text(self, data, **kw):
        self.send_frame(OP_TEXT, data.encode() if isinstance(data, str) else data, **kw)

    def send_binary(self, data, **kw):
        self.send_frame(OP_BINARY, data, **kw)

    def ping(self, data=b"", **kw):
        self.send_frame(OP_PING, data, **kw)

    def pong(self, data=b"", **kw):
        self.send_frame(OP_PONG, data, **kw)

    def close(self, code=1000, reason=b"", **kw):
        """Send a close frame (code None: one without a payload). Not to be
        confused with Conn.close... which is why that one is shutdown()."""
        try:
            self.send_frame(OP_CLOSE, close_payload(code, reason), **kw)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def shutdown(self):
        Conn.close(self)

    def __exit__(self, *exc):
        Conn.close(self)

    def send_fragments(self, opcode, parts, **kw):
        """One message in len(parts) frames (first with `opcode`, the rest
        continuations, fin on the last)."""
        out = b""
        for i, p in enumerate(parts):
            p = p.encode() if isinstance(p, str) else p
            out += frame(opcode if i == 0 else OP_CONT, p, fin=(i == len(parts) - 1), **kw)
        self.send_raw(out)

    # -- receiving ----------------------------------------------------------
    def _deadline(self, timeout):
        self._until = time.monotonic() + (self.timeout if timeout is None else timeout)

    def _fill(self, size=1 << 20):
        left = self._until - time.monotonic()
        if left <= 0:
            raise Timeout("timed out waiting for the gateway")
        self.sock.settimeout(left)
        try:
            return super()._fill(size)
        except socket.timeout:
            raise Timeout("timed out waiting for the gateway") from None
        except ConnectionResetError:
            self.eof = True
            return False

    def _need(self, n):
        while len(self.buf) < n:
            if not self._fill(max(65536, n - len(self.buf))):
                raise ConnectionClosed(f"EOF with {len(self.buf)} of {n} bytes of a frame")

    def recv_frame(self, timeout=None):
        """The next frame as sent by the gateway (no unmasking check here:
        .masked says whether the server masked it, which it must not).
        Raises ConnectionClosed at EOF, Timeout after `timeout`."""
        self._deadline(timeout)
        self._need(2)
        b0, b1 = self.buf[0], self.buf[1]
        n = b1 & 0x7F
        pos = 2
        if n == 126:
            self._need(4)
            n = struct.unpack(">H", self.buf[2:4])[0]
            pos = 4
        elif n == 127:
            self._need(10)
            n = struct.unpack(">Q", self.buf[2:10])[0]
            pos = 10
        masked = bool(b1 & 0x80)
        key = None
        if masked:
            self._need(pos + 4)
            key = bytes(self.buf[pos:pos + 4])
            pos += 4
        self._need(pos + n)
        payload = bytes(self.buf[pos:pos + n])
        del self.buf[:pos + n]
        if masked:
            payload = mask_bytes(payload, key)
        return Frame(b0 & 0x0F, bool(b0 & 0x80), (b0 >> 4) & 7, payload, masked)

    def recv_message(self, timeout=None, *, answer_pings=False, skip_pongs=False,
                     max_size=None):
        """The next data message, reassembled (a Message with opcode text or
        binary). A control frame is returned as a Message of its opcode
        (.frame holds it), except pings with answer_pings (answered with a
        pong, then skipped) and pongs with skip_pongs. A frame that breaks
        RFC 6455 from the server side (masked, rsv, bad continuation)
        fails with AssertionError."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        # a message cut by a returned control frame carries on in the next call
        if self._partial is None:
            self._partial = [None, [], 0]
        part = self._partial
        while True:
            f = self.recv_frame(max(0.001, deadline - time.monotonic()))
            assert not f.masked, f"the server masked a frame: {f}"
            assert f.rsv == 0, f"reserved bits from the server: {f}"
            if f.opcode >= 8:
                assert f.fin, f"fragmented control frame from the server: {f}"
                assert len(f.payload) <= 125, f"control frame too long: {f}"
                if f.opcode == OP_PING and answer_pings:
                    self.pong(f.payload)
                    continue
                if f.opcode == OP_PONG and skip_pongs:
                    continue
                return Message(f.opcode, f.payload, 1, f)
            if part[0] is None:
                assert f.opcode in (OP_TEXT, OP_BINARY), f"message starts with {f}"
                part[0] = f.opcode
            else:
                assert f.opcode == OP_CONT, f"new message inside a message: {f}"
            part[1].append(f.payload)
            part[2] += 1
            if max_size is not None:
                assert sum(map(len, part[1])) <= max_size, "message above max_size"
            if f.fin:
                self._partial = None
                return Message(part[0], b"".join(part[1]), part[2])

    def expect_message(self, opcode, data, timeout=None, **kw):
        m = self.recv_message(timeout, **kw)
        assert m.opcode == opcode and m.data == data, \
            f"expected {OP_NAMES.get(opcode)} {data[:60]!r} (len {len(data)}), got {m}"
        return m

    def expect_close(self, code=None, reason=None, *, timeout=None, reply=True,
                     eof_timeout=None):
        """Read frames (skipping data and pongs, not answering pings) until a
        close frame; assert its code (1005: none) and reason when given; then
        (reply: echo a close frame) the gateway must close the TCP
        connection within `eof_timeout`. Returns the close Frame."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        seen = []
        while True:
            try:
                f = self.recv_frame(max(0.001, deadline - time.monotonic()))
            except ConnectionClosed:
                raise AssertionError(f"connection closed without a close frame "
                                     f"(expected {code}); frames before: {seen[-5:]}") from None
            if f.opcode == OP_CLOSE:
                break
            seen.append(f)
        assert not f.masked, f"masked close frame: {f}"
        if code is not None:
            assert f.close_code == code, \
                f"close code {f.close_code} (reason {f.close_reason!r}), expected {code}; " \
                f"frames before: {seen[-5:]}"
        if reason is not None:
            r = reason.encode() if isinstance(reason, str) else reason
            assert f.close_reason == r, f"close reason {f.close_reason!r}, expected {r!r}"
        if len(f.payload) >= 2:
            assert len(f.payload) <= 125
            f.close_reason.decode("utf-8")  # must be UTF-8 (RFC 6455 5.5.1)
        if reply:
            self.close(f.close_code if f.close_code != 1005 else None)
        self.expect_eof(self.timeout if eof_timeout is None else eof_timeout)
        return f

    def expect_eof(self, timeout=None):
        """The gateway closes the TCP connection within `timeout`, with no
        further frame."""
        self._deadline(timeout)
        try:
            while not self.eof:
                if not self._fill():
                    break
        except Timeout:
            raise AssertionError(f"TCP connection still open {timeout}s after the close; "
                                 f"pending bytes {bytes(self.buf[:40])!r}") from None
        extra = bytes(self.buf)
        self.buf.clear()
        assert not extra, f"bytes after the close frame: {extra[:60]!r}"

    def http_response(self, method="GET", timeout=None):
        """Read one plain HTTP response (e.g. after a refused handshake)."""
        self._deadline(timeout)
        return self.read_response(method)

    def no_frame_within(self, seconds):
        """True when nothing arrives for `seconds` (and the connection stays
        open)."""
        try:
            f = self.recv_frame(seconds)
        except Timeout:
            return True
        raise AssertionError(f"unexpected frame {f}")


def connect(port, path="/echo", timeout=DEFAULT_TIMEOUT, rcvbuf=None, sndbuf=None, **kw):
    """A WS with an accepted handshake (asserted)."""
    ws = WS(port, timeout=timeout, rcvbuf=rcvbuf, sndbuf=sndbuf)
    try:
        ws.handshake(path, expect=101, **kw)
    except BaseException:
        ws.shutdown()
        raise
    return ws
