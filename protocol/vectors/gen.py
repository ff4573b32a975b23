#!/usr/bin/env python3
"""Generate the language-neutral test vectors of the sluice worker protocol.

Usage (from anywhere):

    python3 -m venv /tmp/vvenv && /tmp/vvenv/bin/pip install msgpack
    /tmp/vvenv/bin/python protocol/vectors/gen.py

Writes protocol/vectors/NNN-name.json (and removes stale NNN-*.json files).
The output is deterministic. The file format is described in README.md.

Canonical frames are encoded by the `msgpack` package (the independent
oracle: `packb(..., use_bin_type=True)` emits the shortest forms, which is
what PROTOCOL.md 2.1 calls canonical) and cross-checked against the small
encoder below. Non-canonical and invalid inputs are written byte by byte.
"""
import json
import os
import re
import struct
import sys

import msgpack

HERE = os.path.dirname(os.path.abspath(__file__))

MAX_ID = 2**53 - 1
MAX_WINDOW = 2**31 - 1
DEFAULT_FRAME = 1048576
MIN_FRAME = 16384
MAX_FRAME = 16777215

# ---------------------------------------------------------------------------
# Frame schema (PROTOCOL.md section 3). Field kinds: uint, bytes, text,
# headers, addr, settings. `opt` fields are trailing optional fields.

LINK_FRAMES = {"HELLO", "PING", "PONG", "DRAIN", "RETIRE", "ERROR"}
SCHEMA = {
    "HELLO": (1, [("version", "uint"), ("settings", "settings")]),
    "REQUEST": (2, [("method", "bytes"), ("target", "bytes"), ("version", "uint"),
                    ("headers", "headers"), ("client", "addr"), ("server", "addr"),
                    ("scheme", "text"), ("body", "uint")]),
    "RESPONSE": (3, [("status", "uint"), ("headers", "headers"), ("body", "uint")]),
    "BODY": (4, [("data", "bytes")]),
    "END": (5, [("trailers", "headers", "opt")]),
    "CREDIT": (6, [("increment", "uint")]),
    "CANCEL": (7, [("reason", "uint"), ("message", "text", "opt")]),
    "RESET": (8, [("code", "uint"), ("message", "text", "opt")]),
    "LIMIT": (9, [("max_body", "uint")]),
    "PING": (10, [("opaque", "uint")]),
    "PONG": (11, [("opaque", "uint")]),
    "DRAIN": (12, [("timeout_ms", "uint")]),
    "RETIRE": (13, [("reason", "text", "opt")]),
    "ERROR": (14, [("code", "uint"), ("message", "text")]),
    "MESSAGE": (15, [("flags", "uint"), ("data", "bytes")]),
    "CLOSE": (16, [("code", "uint"), ("reason", "text", "opt")]),
}
# HELLO settings: canonical key order (PROTOCOL.md 3.1) and value kinds.
SETTINGS = [("pid", "uint"), ("lib", "text"), ("max_streams", "uint"), ("window", "uint"),
            ("max_frame", "uint"), ("token", "text"), ("worker_id", "uint"),
            ("pool", "text"), ("server", "text"), ("websocket", "bool")]
SETTING_KIND = dict(SETTINGS)

ERRORS = ["malformed", "frame_size", "unknown_type", "field_type", "field_value",
          "too_many_headers", "unexpected_frame", "stream_state", "flow_control",
          "too_many_streams", "version", "auth", "truncated", "internal", "timeout"]
ERR_CODE = {n: i + 1 for i, n in enumerate(ERRORS)}


# ---------------------------------------------------------------------------
# A small MessagePack encoder (shortest forms), with escape hatches.

class Text:
    """A msgpack str whose content is the given raw bytes."""
    def __init__(self, b):
        self.b = b


class Raw:
    """Pre-encoded msgpack bytes, inserted verbatim."""
    def __init__(self, b):
        self.b = b


def L(s):
    """JSON byte string (latin-1 mapping) -> bytes."""
    return s.encode("latin-1")


def enc(v):
    if isinstance(v, Raw):
        return v.b
    if isinstance(v, str):
        return enc(Text(v.encode()))
    if isinstance(v, Text):
        n = len(v.b)
        if n < 32:
            h = bytes([0xa0 | n])
        elif n < 256:
            h = b"\xd9" + bytes([n])
        elif n < 65536:
            h = b"\xda" + struct.pack(">H", n)
        else:
            h = b"\xdb" + struct.pack(">I", n)
        return h + v.b
    if isinstance(v, (bytes, bytearray)):
        n = len(v)
        if n < 256:
            h = b"\xc4" + bytes([n])
        elif n < 65536:
            h = b"\xc5" + struct.pack(">H", n)
        else:
            h = b"\xc6" + struct.pack(">I", n)
        return h + bytes(v)
    if isinstance(v, bool) or v is None or isinstance(v, float):
        return msgpack.packb(v)
    if isinstance(v, int):
        if v < 0:
            return msgpack.packb(v)
        if v < 128:
            return bytes([v])
        if v < 256:
            return b"\xcc" + bytes([v])
        if v < 65536:
            return b"\xcd" + struct.pack(">H", v)
        if v < 2**32:
            return b"\xce" + struct.pack(">I", v)
        return b"\xcf" + struct.pack(">Q", v)
    if isinstance(v, list):
        n = len(v)
        h = bytes([0x90 | n]) if n < 16 else (b"\xdc" + struct.pack(">H", n) if n < 65536
                                              else b"\xdd" + struct.pack(">I", n))
        return h + b"".join(enc(x) for x in v)
    if isinstance(v, dict):
        n = len(v)
        h = bytes([0x80 | n]) if n < 16 else (b"\xde" + struct.pack(">H", n) if n < 65536
                                              else b"\xdf" + struct.pack(">I", n))
        return h + b"".join(enc(Text(k.encode()) if isinstance(k, str) else k) + enc(x)
                            for k, x in v.items())
    if isinstance(v, msgpack.ExtType):
        return msgpack.packb(v)
    raise TypeError(repr(v))


def to_oracle(v):
    """Same value for msgpack.packb: Text -> str (must be UTF-8)."""
    if isinstance(v, Text):
        return v.b.decode("utf-8")
    if isinstance(v, list):
        return [to_oracle(x) for x in v]
    if isinstance(v, dict):
        return {k: to_oracle(x) for k, x in v.items()}
    if isinstance(v, Raw):
        raise TypeError("Raw in a canonical frame")
    return v


# ---------------------------------------------------------------------------
# Frame JSON <-> wire structure

def wire_value(kind, v, canonical=True):
    if kind == "uint":
        return v
    if kind == "bool":
        assert isinstance(v, bool), v
        return v
    if kind == "bytes":
        return L(v)
    if kind == "text":
        return Text(L(v))
    if kind == "headers":
        return [[L(n), L(x)] for n, x in v]
    if kind == "addr":
        return [Text(L(v[0])), v[1]]
    if kind == "settings":
        unknown = set(v) - set(SETTING_KIND)
        assert not unknown, unknown
        # canonical form: `websocket` only when true (PROTOCOL.md 3.1)
        return {k: wire_value(kind2, v[k]) for k, kind2 in SETTINGS
                if k in v and not (canonical and k == "websocket" and v[k] is False)}
    raise ValueError(kind)


def wire(frame, canonical=True):
    code, fields = SCHEMA[frame["type"]]
    out = [code, frame["stream"]]
    known = {"type", "stream"} | {f[0] for f in fields}
    assert set(frame) <= known, (frame, set(frame) - known)
    for f in fields:
        name, kind = f[0], f[1]
        if name not in frame:
            assert len(f) == 3, ("missing required field", frame, name)
            break
        if canonical and len(f) == 3 and kind == "text" and frame[name] == "":
            break  # an empty optional text is omitted (PROTOCOL.md 2.1)
        out.append(wire_value(kind, frame[name], canonical))
    return out


def payload(frame):
    """Canonical payload of a frame, by the msgpack oracle (checked against enc)."""
    w = wire(frame)
    p = msgpack.packb(to_oracle(w), use_bin_type=True)
    assert p == enc(w), (frame, p.hex(), enc(w).hex())
    return p


def framed(p):
    return struct.pack(">I", len(p)) + p


def fbytes(frame):
    return framed(payload(frame))


def check_decodes_as(p, frames_json):
    """Independent sanity check of a hand-made payload: msgpack parses it,
    and its leading elements equal the frame JSON (str and bin both come
    back as bytes with raw=True). Trailing extra elements are allowed."""
    got = msgpack.unpackb(p, raw=True, strict_map_key=False)
    want = wire(frames_json, canonical=False)

    def norm(x):
        if isinstance(x, Text):
            return x.b
        if isinstance(x, list):
            return [norm(y) for y in x]
        if isinstance(x, dict):
            return {(k.encode() if isinstance(k, str) else k): norm(y) for k, y in x.items()}
        return x
    want = norm(want)
    assert isinstance(got, list) and len(got) >= len(want), (got, want)
    for i, w in enumerate(want):
        g = got[i]
        if isinstance(w, dict):  # HELLO settings: known keys must match, unknown ignored
            gk = {k: v for k, v in g.items() if isinstance(k, bytes) and k.decode() in SETTING_KIND}
            assert gk == w, (gk, w)
        else:
            assert (list(g) if isinstance(g, (list, tuple)) else g) == w, (i, g, w)


def depth(v):
    if isinstance(v, (list, tuple)):
        return 1 + max([depth(x) for x in v], default=0)
    if isinstance(v, dict):
        return 1 + max([max(depth(k), depth(x)) for k, x in v.items()], default=0)
    return 0


def oracle_malformed(p):
    """PROTOCOL.md 2 'malformed', judged by the msgpack package: p is not
    exactly one well-formed value, or not an array of at least two elements,
    or nests containers deeper than 8."""
    try:
        v = msgpack.unpackb(p, raw=True, strict_map_key=False, use_list=True)
    except Exception:
        return True
    return not isinstance(v, list) or len(v) < 2 or depth(v) > 8


# ---------------------------------------------------------------------------
# Frame constructors (the JSON form)

def F(type_, stream, **fields):
    d = {"type": type_, "stream": stream}
    d.update(fields)
    return d


def hello(version=1, **settings):
    ordered = {k: settings[k] for k, _ in SETTINGS if k in settings}
    assert len(ordered) == len(settings)
    return F("HELLO", 0, version=version, settings=ordered)


def request(sid, method="GET", target="/", version=11, headers=None,
            client=("127.0.0.1", 40000), server=("127.0.0.1", 8080), scheme="http", body=0):
    return F("REQUEST", sid, method=method, target=target, version=version,
             headers=[list(h) for h in (headers if headers is not None else [["host", "example.com"]])],
             client=list(client), server=list(server), scheme=scheme, body=body)


def response(sid, status=200, headers=None, body=1):
    return F("RESPONSE", sid, status=status,
             headers=[list(h) for h in (headers if headers is not None else [["content-type", "text/plain"]])],
             body=body)


def body(sid, data):
    return F("BODY", sid, data=data)


def end(sid, trailers=None):
    return F("END", sid) if trailers is None else F("END", sid, trailers=[list(t) for t in trailers])


def credit(sid, n):
    return F("CREDIT", sid, increment=n)


def cancel(sid, reason, message=None):
    return F("CANCEL", sid, reason=reason) if message is None else F("CANCEL", sid, reason=reason, message=message)


def reset(sid, code, message=None):
    return F("RESET", sid, code=code) if message is None else F("RESET", sid, code=code, message=message)


def limit(sid, n):
    return F("LIMIT", sid, max_body=n)


def ping(n):
    return F("PING", 0, opaque=n)


def pong(n):
    return F("PONG", 0, opaque=n)


def drain(ms):
    return F("DRAIN", 0, timeout_ms=ms)


def retire(reason=None):
    return F("RETIRE", 0) if reason is None else F("RETIRE", 0, reason=reason)


def error(code, message):
    return F("ERROR", 0, code=ERR_CODE.get(code, code), message=message)


def message(sid, flags, data):
    return F("MESSAGE", sid, flags=flags, data=data)


def close(sid, code, reason=None):
    return F("CLOSE", sid, code=code) if reason is None else F("CLOSE", sid, code=code, reason=reason)


# ---------------------------------------------------------------------------
# Vector registry

VECTORS = []  # (slug, dict)

# File numbers: each category has its own block, and new vectors are appended
# at the end of their category, so existing file names stay stable.
BLOCKS = [("valid", 1, 99), ("noncanonical", 101, 199), ("invalid", 201, 399), ("session", 401, 699)]


def add(slug, obj):
    assert re.fullmatch(r"[a-z0-9-]+", slug), slug
    assert slug not in {s for s, _ in VECTORS}, slug
    VECTORS.append((slug, obj))


def dec(slug, description, data, frames=(), error=None, canonical=None, max_frame=DEFAULT_FRAME):
    """A decode vector. `data` is bytes, or a list of frame dicts / bytes pieces."""
    if isinstance(data, list):
        data = b"".join(fbytes(x) if isinstance(x, dict) else x for x in data)
    frames = list(frames)
    if canonical is None:
        canonical = False
    if canonical:
        assert error is None
        assert b"".join(fbytes(f) for f in frames) == data, slug
    assert error is None or error in ERRORS, error
    assert MIN_FRAME <= max_frame <= MAX_FRAME
    add(slug, {"kind": "decode", "description": description, "max_frame": max_frame,
               "hex": data.hex(), "frames": frames, "error": error, "canonical": canonical})


def valid(slug, description, *frames, max_frame=DEFAULT_FRAME):
    dec(slug, description, list(frames), frames, None, True, max_frame)


def noncanon(slug, description, p, frame):
    """One accepted but non-canonical payload `p` decoding to `frame`."""
    assert p != payload(frame), slug
    assert not oracle_malformed(p), slug
    check_decodes_as(p, frame)
    dec(slug, description, framed(p), [frame], None, False)


def bad(slug, description, p, err, before=(), framed_=True, max_frame=DEFAULT_FRAME):
    """Invalid input: valid frames `before`, then payload p (framed unless framed_=False)."""
    if framed_:
        assert oracle_malformed(p) == (err == "malformed"), (description, err)
    data = b"".join(fbytes(f) for f in before) + (framed(p) if framed_ else p)
    dec(slug, description, data, before, err, False, max_frame)


def R(*parts):
    """Concatenate msgpack values (shortest encodings via enc; bytes are bin;
    Raw pieces are inserted verbatim)."""
    return b"".join(enc(p) for p in parts)


def X(h):
    """Raw bytes from a hex string (spaces allowed)."""
    return Raw(bytes.fromhex(h))


def session(slug, description, role, steps, max_streams=65535):
    assert role in ("gateway", "worker")
    out = []
    for i, st in enumerate(steps):
        assert st["expect"] in ("ok", "ignored", "rejected") or st["expect"] in ERRORS, st
        if st["expect"] not in ("ok", "ignored", "rejected"):
            assert i == len(steps) - 1, (slug, "an error ends the session")
        out.append(st)
    add(slug, {"kind": "session", "description": description, "role": role,
               "max_streams": max_streams, "steps": out})


def recv(frame, expect="ok", raw=None):
    return {"recv": frame, "hex": (raw if raw is not None else fbytes(frame)).hex(), "expect": expect}


def send(frame, expect="ok"):
    return {"send": frame, "hex": fbytes(frame).hex(), "expect": expect}


# ---------------------------------------------------------------------------
# Common values

W_HELLO_FULL = hello(pid=4242, lib="sluice-python/0.1.0", max_streams=64, window=262144,
                     max_frame=1048576, token="s3cr3t-t0ken")
G_HELLO_FULL = hello(max_streams=32, window=65536, max_frame=2097152, worker_id=7, pool="app",
                     server="sluice/0.1.0")
GET_HEADERS = [["host", "example.com"], ["user-agent", "curl/8.5.0"], ["accept", "*/*"]]
ALL_BYTES = "".join(chr(i) for i in range(256))
WS_HEADERS = [["host", "example.com"], ["sec-websocket-version", "13"],
              ["sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="], ["sec-websocket-protocol", "chat, superchat"],
              ["origin", "http://example.com"]]


def build_decode_valid():
    # HELLO
    valid("hello-worker-minimal", "worker HELLO with only the required keys", hello(max_streams=1, window=65536))
    valid("hello-worker-all-keys", "worker HELLO with every worker key, in canonical order", W_HELLO_FULL)
    valid("hello-worker-max-values", "worker HELLO at the upper bounds: max_streams 65535, window 2^31-1, "
          "max_frame 16777215, pid 2^32", hello(pid=2**32, max_streams=65535, window=MAX_WINDOW, max_frame=MAX_FRAME))
    valid("hello-worker-min-values", "worker HELLO at the lower bounds: pid 0, max_streams 1, window 0, max_frame 16384",
          hello(pid=0, max_streams=1, window=0, max_frame=MIN_FRAME))
    valid("hello-gateway-minimal", "gateway HELLO with only the required key", hello(window=262144))
    valid("hello-gateway-all-keys", "gateway HELLO with every gateway key, in canonical order", G_HELLO_FULL)
    valid("hello-gateway-utf8-text", "gateway HELLO whose text values hold multi-byte UTF-8 (bytes shown latin-1 style)",
          hello(window=0, worker_id=MAX_ID, pool="caf\u00c3\u00a9", server="sluice/0.1.0 \u00e2\u0098\u0083"))
    valid("hello-empty-settings", "a HELLO with no settings decodes (missing required keys are a handshake error, "
          "see the session vectors)", hello())
    valid("hello-version-2", "a HELLO announcing version 2 decodes fine (version is checked by the handshake)",
          hello(version=2, max_streams=4, window=1024))
    # REQUEST
    valid("request-get", "a simple GET, no body",
          request(1, "GET", "/index.html?q=1", 11, GET_HEADERS, ("127.0.0.1", 54321), ("127.0.0.1", 8080), "http", 0))
    valid("request-post-body-follows", "POST over https from an IPv6 client, body mode 1",
          request(3, "POST", "/upload", 11, [["host", "example.com"], ["content-type", "application/json"],
                                              ["content-length", "13"]],
                  ("2001:db8::1", 443), ("::1", 8443), "https", 1))
    valid("request-expect-body-on-credit", "PUT, HTTP/1.0, body mode 2 (body held until CREDIT)",
          request(4, "PUT", "/big", 10, [["content-length", "10000000"]], ("10.0.0.2", 1), ("10.0.0.1", 80), "http", 2))
    valid("request-unix-client-no-headers", "a client on a Unix socket listener: address [\"\", 0], empty header list",
          request(5, "OPTIONS", "*", 11, [], ("", 0), ("", 0), "http", 0))
    valid("request-max-stream-id", "stream id 2^53-1, port 65535",
          request(MAX_ID, "GET", "/", 11, [["host", "h"]], ("192.168.1.1", 65535), ("0.0.0.0", 65535), "http", 0))
    valid("request-binary-header-values", "header values with bytes 0x80-0xff and repeated names; absolute-form target",
          request(6, "GET", "http://example.com/a%20b", 11,
                  [["x-latin1", "caf\u00e9"], ["x-raw", "\u0080\u00ff\u0001"], ["x-dup", "1"], ["x-dup", "2"],
                   ["x-empty", ""]], ("127.0.0.1", 2), ("127.0.0.1", 3), "http", 0))
    valid("request-1024-headers", "exactly 1024 header entries (the minimum a receiver must accept; array 16)",
          request(7, "GET", "/", 11, [["a", "b"]] * 1024))
    valid("request-long-target", "a 300-byte target (bin 16) and a 40-byte method (bin 8)",
          request(8, "X" * 40, "/" + "t" * 299, 11, [["host", "example.com"]]))
    # RESPONSE
    valid("response-200-body", "RESPONSE 200 with headers, body follows",
          response(1, 200, [["content-type", "text/plain"], ["content-length", "5"]], 1))
    valid("response-204-no-body", "RESPONSE 204, no body, no headers", response(2, 204, [], 0))
    valid("response-599", "the largest status", response(3, 599, [["x-a", ""]], 0))
    valid("response-set-cookie-repeat", "repeated header names keep their order",
          response(9, 302, [["location", "/login"], ["set-cookie", "a=1"], ["set-cookie", "b=2"]], 0))
    valid("response-max-stream-id", "RESPONSE on stream 2^53-1", response(MAX_ID, 500, [], 1))
    # BODY
    valid("body-request-data", "request body bytes (gateway to worker)", body(1, '{"name": "sluice"}'))
    valid("body-response-data", "response body bytes (worker to gateway)", body(1, "hello"))
    valid("body-empty", "an empty BODY is legal", body(2, ""))
    valid("body-bin8-max", "255 bytes: the largest bin 8", body(3, "x" * 255))
    valid("body-bin16-all-bytes", "all 256 byte values: bin 16", body(4, ALL_BYTES))
    valid("body-bin32", "65536 bytes: bin 32", body(5, "0123456789abcdef" * 4096))
    valid("body-max-stream-id", "BODY on stream 2^53-1", body(MAX_ID, "z"))
    data = "d" * (MIN_FRAME - 6)   # fixarray + type + sid + bin16 head (3) = 6
    assert len(payload(body(1, data))) == MIN_FRAME
    valid("body-exactly-max-frame", "a frame whose length equals the receiver's max_frame (16384)",
          body(1, data), max_frame=MIN_FRAME)
    # END
    valid("end-plain", "END without trailers", end(1))
    valid("end-request-trailers", "END with chunked request trailers (gateway to worker)",
          end(2, [["x-checksum", "abc123"], ["x-checksum", "def456"]]))
    valid("end-response-trailers", "END with response trailers (worker to gateway)",
          end(3, [["grpc-status", "0"], ["grpc-message", ""]]))
    # CREDIT
    valid("credit-min", "CREDIT of 1 byte", credit(1, 1))
    valid("credit-worker-grant", "CREDIT 32768 (uint 16)", credit(2, 32768))
    valid("credit-max", "CREDIT of 2^31-1 (uint 32) on stream 2^53-1 (uint 64)", credit(MAX_ID, MAX_WINDOW))
    # CANCEL
    valid("cancel-client-closed", "CANCEL reason 1 without message", cancel(1, 1))
    valid("cancel-with-message", "CANCEL reason 2 (timeout) with a message", cancel(2, 2, "no response within 30s"))
    valid("cancel-each-reason", "CANCEL reasons 3..8, several frames in one input",
          *[cancel(10 + r, r) for r in range(3, 9)])
    valid("cancel-unknown-reason", "an unknown reason (99) decodes (receivers treat it as internal)",
          cancel(3, 99, "future"))
    # RESET
    valid("reset-internal", "RESET code 1", reset(1, 1))
    valid("reset-refused-message", "RESET code 2 with a message", reset(2, 2, "not now"))
    valid("reset-overloaded", "RESET code 3", reset(3, 3, "queue full"))
    valid("reset-unknown-code", "an unknown RESET code (1000, uint 16) decodes", reset(4, 1000))
    # LIMIT
    valid("limit-zero", "LIMIT 0", limit(1, 0))
    valid("limit-large", "LIMIT 10 GiB (uint 64)", limit(2, 10 * 2**30))
    valid("limit-max", "LIMIT 2^53-1", limit(3, MAX_ID))
    # PING / PONG
    valid("ping-zero", "PING 0", ping(0))
    valid("ping-pong-max", "PING and PONG carrying 2^53-1", ping(MAX_ID), pong(MAX_ID))
    valid("pong-uint8", "PONG 200 (uint 8)", pong(200))
    # DRAIN, RETIRE
    valid("drain", "DRAIN with a 30 s timeout", drain(30000))
    valid("drain-zero", "DRAIN with timeout 0", drain(0))
    valid("retire-no-reason", "RETIRE without a reason", retire())
    valid("retire-reason", "RETIRE with a reason", retire("max_requests reached"))
    # ERROR
    valid("error-from-worker", "ERROR version with a message", error("version", "gateway speaks version 1"))
    valid("error-from-gateway", "ERROR flow_control with a message", error("flow_control", "BODY beyond window on stream 3"))
    valid("error-empty-message", "ERROR with an empty message (the message is required, it may be empty)",
          error("internal", ""))
    valid("error-unknown-code", "an unknown error code (99) decodes", error(99, "from the future"))
    # several frames
    valid("multi-gateway-exchange", "a whole gateway-to-worker sequence in one input",
          G_HELLO_FULL, request(1, "POST", "/echo", 11, [["content-length", "5"]], body=1),
          body(1, "hel"), body(1, "lo"), end(1), ping(1))
    valid("multi-worker-exchange", "a whole worker-to-gateway sequence in one input",
          W_HELLO_FULL, response(1, 200, [["content-length", "5"]], 1), body(1, "hello"),
          end(1), credit(1, 5), pong(1), retire())
    dec("empty-input", "no bytes at all: no frames, no error", b"", [], None, True)
    # HTTP/2 requests (version 20), appended to keep names stable
    valid("request-http2-post", "an HTTP/2 request (version 20) over h2c: host made from :authority, split "
          "cookies joined with \"; \", te: trailers, content-length, body mode 1",
          request(9, "POST", "/api/items?x=1", 20, [["host", "example.com"], ["content-type", "application/json"],
                                                   ["content-length", "13"], ["cookie", "a=1; b=2"],
                                                   ["te", "trailers"]],
                  ("127.0.0.1", 50000), ("127.0.0.1", 8080), "http", 1))
    valid("request-http2-get-tls", "an HTTP/2 GET over TLS (version 20, scheme https), no body",
          request(11, "GET", "/", 20, [["host", "example.com:8443"], ["accept", "*/*"]],
                  ("::1", 50001), ("::1", 8443), "https", 0))
    # WebSockets (PROTOCOL.md 3.1, 3.2, 3.3, 3.14, 3.15), appended to keep names stable
    valid("hello-worker-websocket", "worker HELLO announcing websocket (canonical order: the key comes last)",
          hello(pid=7, lib="sluice-c/0.1.0", max_streams=64, window=65536, max_frame=1048576, token="t",
                websocket=True))
    valid("hello-gateway-websocket", "gateway HELLO answering websocket: true (after every other key)",
          hello(max_streams=32, window=65536, max_frame=2097152, worker_id=7, pool="app", server="sluice/0.1.0",
                websocket=True))
    valid("request-websocket", "a WebSocket opening handshake over HTTP/1.1: body mode 3, the offered "
          "subprotocols and the key passed on",
          request(12, "GET", "/chat?room=1", 11, WS_HEADERS, ("127.0.0.1", 50002), ("127.0.0.1", 8080), "http", 3))
    valid("request-websocket-http2", "a WebSocket over HTTP/2 (RFC 8441): method GET, version 20, no key",
          request(13, "GET", "/chat", 20, [["host", "example.com"], ["sec-websocket-version", "13"],
                                           ["sec-websocket-protocol", "chat"]],
                  ("::1", 50003), ("::1", 8443), "https", 3))
    valid("response-101", "RESPONSE 101 accepting a WebSocket, with a subprotocol and a cookie, body 0",
          response(12, 101, [["sec-websocket-protocol", "chat"], ["set-cookie", "s=1"]], 0))
    valid("response-101-no-headers", "RESPONSE 101 without headers", response(1, 101, [], 0))
    valid("message-binary", "MESSAGE flags 0: binary, last piece", message(1, 0, "\u0000\u0001\u00ff"))
    valid("message-text", "MESSAGE flags 1: text, last piece (UTF-8 bytes)", message(1, 1, "caf\u00c3\u00a9"))
    valid("message-binary-more", "MESSAGE flags 2: binary, more pieces follow", message(2, 2, "part"))
    valid("message-text-more", "MESSAGE flags 3: text, more pieces follow, cut inside a UTF-8 sequence",
          message(2, 3, "caf\u00c3"))
    valid("message-ping", "MESSAGE flags 4: PING (worker to gateway)", message(3, 4, "keepalive"))
    valid("message-pong", "MESSAGE flags 8: PONG (gateway to worker)", message(3, 8, "keepalive"))
    valid("message-empty", "an empty text MESSAGE (an empty message is legal)", message(4, 1, ""))
    valid("message-empty-ping", "an empty PING", message(4, 4, ""))
    valid("message-bin8-max", "MESSAGE with 255 bytes of data (bin 8)", message(5, 0, "m" * 255))
    valid("message-bin16-all-bytes", "MESSAGE with all 256 byte values (bin 16)", message(5, 2, ALL_BYTES))
    valid("message-ping-126", "a PING with 126 bytes decodes (the 125-byte limit is the link's)",
          message(6, 4, "p" * 126))
    valid("message-max-stream-id", "MESSAGE on stream 2^53-1", message(MAX_ID, 1, "x"))
    valid("close-no-reason", "CLOSE 1000 without a reason", close(1, 1000))
    valid("close-reason", "CLOSE 1001 with a reason", close(2, 1001, "going away"))
    valid("close-bounds", "CLOSE codes 1000 .. 4999: 1005 (no code), 4999 with a UTF-8 reason, several frames",
          close(3, 1005), close(4, 4999, "\u00e2\u0098\u0083"), close(5, 3000, "x" * 123))
    valid("multi-websocket-exchange", "a gateway-to-worker WebSocket sequence in one input",
          request(1, "GET", "/ws", 11, WS_HEADERS, body=3), message(1, 3, "hel"), message(1, 1, "lo"),
          message(1, 8, ""), credit(1, 5), close(1, 1000, "bye"))


def build_decode_noncanonical():
    nc = noncanon
    nc("nc-uint-as-uint32", "CREDIT increment 5 encoded as uint 32", R(X("93 06 01 ce 00000005")), credit(1, 5))
    nc("nc-uint-as-uint64", "LIMIT 5 encoded as uint 64", R(X("93 09 01 cf 0000000000000005")), limit(1, 5))
    nc("nc-uint-as-int8", "PING opaque 5 as int 8", R(X("93 0a 00 d0 05")), ping(5))
    nc("nc-uint-as-int64", "DRAIN timeout 1000 as int 64", R(X("93 0c 00 d3 00000000000003e8")), drain(1000))
    nc("nc-type-and-id-wide", "type as uint 8, stream id as uint 64, status as uint 32",
       R(X("95 cc03 cf0000000000000009 ce00000194 90 00")), response(9, 404, [], 0))
    nc("nc-stream-id-int32", "stream id 1 as int 32", R(X("93 04 d2 00000001"), b"ab"), body(1, "ab"))
    nc("nc-header-as-str", "header names and values sent as str instead of bin",
       R(X("95 03 01 ccc8 92 92"), Text(b"content-type"), Text(b"text/html"), X("92"),
         Text(b"x-b"), X("d9 01 76"), 1),
       response(1, 200, [["content-type", "text/html"], ["x-b", "v"]], 1))
    nc("nc-bytes-as-str8", "BODY data as str 8 (content taken as raw bytes, even invalid UTF-8)",
       R(X("93 04 01 d9 03 ff fe 00")), body(1, "\u00ff\u00fe\u0000"))
    nc("nc-bytes-as-fixstr", "REQUEST method and target as fixstr",
       R(X("9a 02 01"), Text(b"GET"), Text(b"/"), 11, [[b"host", b"h"]],
         [Text(b"127.0.0.1"), 40000], [Text(b"127.0.0.1"), 8080], Text(b"http"), 0),
       request(1, "GET", "/", 11, [["host", "h"]]))
    nc("nc-bin16-short", "BODY of 3 bytes as bin 16", R(X("93 04 02 c5 0003 616263")), body(2, "abc"))
    nc("nc-bin32-empty", "empty BODY as bin 32", R(X("93 04 02 c6 00000000")), body(2, ""))
    nc("nc-text-str8", "REQUEST client host as str 16 and scheme as str 8",
       R(X("9a 02 01"), b"GET", b"/", 11, [], X("92 da 0009"), Raw(b"127.0.0.1"), 1,
         [Text(b"127.0.0.1"), 2], X("d9 04"), Raw(b"http"), 0),
       request(1, "GET", "/", 11, [], ("127.0.0.1", 1), ("127.0.0.1", 2)))
    nc("nc-text-str32", "RETIRE reason as str 32", R(X("93 0d 00 db 00000004"), Raw(b"done")), retire("done"))
    nc("nc-array16-frame", "the frame array as array 16", R(X("dc 0003 06 01 0a")), credit(1, 10))
    nc("nc-array32-headers", "trailers as array 32, entry as array 16",
       R(X("93 05 01 dd 00000001 dc 0002"), b"k", b"v"), end(1, [["k", "v"]]))
    nc("nc-map16-settings", "HELLO settings as map 16",
       R(X("94 01 00 01 de 0002"), Text(b"max_streams"), 2, Text(b"window"), 100), hello(max_streams=2, window=100))
    nc("nc-hello-key-order", "HELLO keys out of canonical order",
       R(X("94 01 00 01 83"), Text(b"window"), 0, Text(b"pid"), 7, Text(b"max_streams"), 1),
       hello(pid=7, max_streams=1, window=0))
    nc("nc-hello-unknown-keys", "HELLO with unknown text keys whose values are nil, float, ext, bool, nested "
       "containers, bin (all ignored)",
       R(X("94 01 00 01 88"), Text(b"zzz"), None, Text(b"max_streams"), 3, Text(b"f"), 1.5,
         Text(b"x"), msgpack.ExtType(5, b"abcd"), Text(b"window"), 10, Text(b"b"), True,
         Text(b"nested"), [1, {"a": [None]}], Text(b""), b"bin"),
       hello(max_streams=3, window=10))
    nc("nc-trailing-elements", "PING followed by ignored elements: nil, float 32, float 64, ext, bool, str, bin, "
       "array, map, negative int",
       R(X("9d 0a 00 07"), None, X("ca 3fc00000"), 2.5, msgpack.ExtType(1, b"x" * 20),
         False, Text(b"s"), b"b", [1, [2]], {"k": "v"}, -5),
       ping(7))
    nc("nc-trailing-after-optional", "END with trailers and two more elements",
       R(X("95 05 01"), [[b"a", b"b"]], None, 7), end(1, [["a", "b"]]))
    nc("nc-cancel-trailing", "CANCEL with a message and one more element",
       R(X("95 07 01 01"), Text(b"bye"), [None]), cancel(1, 1, "bye"))
    nc("nc-request-trailing", "REQUEST with one extra element (a map)",
       R(X("9b"), 2, 1, b"GET", b"/", 11, [[b"host", b"example.com"]], [Text(b"127.0.0.1"), 40000],
         [Text(b"127.0.0.1"), 8080], Text(b"http"), 0, {"future": 1}),
       request(1))
    nc("nc-end-empty-trailers", "END with an empty trailer list decodes as END without trailers "
       "(senders omit it)", R(X("93 05 01 90")), end(1))
    nc("nc-depth-8", "an ignored element nested to depth 8 (the frame array is depth 1): accepted",
       R(X("94 0a 00 01"), Raw(b"\x91" * 6 + b"\x90")), ping(1))
    nc("nc-depth-8-hello", "HELLO with an unknown key whose value nests to depth 8 (frame 1, settings 2)",
       R(X("94 01 00 01 82"), Text(b"window"), 5, Text(b"deep"), Raw(b"\x91" * 5 + b"\x80")), hello(window=5))
    nc("nc-hello-version-uint16", "HELLO version 1 as uint 16",
       R(X("94 01 00 cd 0001 81"), Text(b"window"), 1), hello(window=1))
    nc("nc-request-http2-wide", "REQUEST version 20 as uint 16, method and target as str",
       R(X("9a 02 01"), Text(b"GET"), Text(b"/"), X("cd 0014"), [[b"host", b"example.com"]],
         [Text(b"127.0.0.1"), 40000], [Text(b"127.0.0.1"), 8080], Text(b"https"), 0),
       request(1, version=20, scheme="https"))
    # WebSockets, appended to keep names stable
    nc("nc-hello-websocket-false", "HELLO websocket: false (senders omit it; shown as false)",
       R(X("94 01 00 01 83"), Text(b"max_streams"), 1, Text(b"window"), 0, Text(b"websocket"), False),
       hello(max_streams=1, window=0, websocket=False))
    nc("nc-hello-websocket-twice", "HELLO with websocket twice, false then true: the last one counts",
       R(X("94 01 00 01 84"), Text(b"websocket"), False, Text(b"max_streams"), 1, Text(b"window"), 0,
         Text(b"websocket"), True),
       hello(max_streams=1, window=0, websocket=True))
    nc("nc-hello-websocket-first", "HELLO with websocket before the other keys",
       R(X("94 01 00 01 82"), Text(b"websocket"), True, Text(b"window"), 9), hello(window=9, websocket=True))
    nc("nc-request-body-3-int8", "REQUEST body mode 3 as int 8",
       R(X("9a 02 01"), b"GET", b"/", 11, [[b"host", b"h"]], [Text(b"127.0.0.1"), 40000],
         [Text(b"127.0.0.1"), 8080], Text(b"http"), X("d0 03")),
       request(1, "GET", "/", 11, [["host", "h"]], body=3))
    nc("nc-response-101-uint16", "RESPONSE status 101 as uint 16", R(X("95 03 01 cd 0065 90 00")),
       response(1, 101, [], 0))
    nc("nc-message-flags-uint32", "MESSAGE flags 1 as uint 32, data as str 8",
       R(X("94 0f 01 ce 00000001 d9 02"), Raw(b"hi")), message(1, 1, "hi"))
    nc("nc-message-data-fixstr", "MESSAGE data as fixstr (bytes take str too)",
       R(X("94 0f 01 00"), Text(b"abc")), message(1, 0, "abc"))
    nc("nc-message-data-bin16", "an empty MESSAGE as bin 16", R(X("94 0f 01 02 c5 0000")), message(1, 2, ""))
    nc("nc-message-trailing", "MESSAGE with an ignored trailing element", R(X("95 0f 01 08"), b"p", None),
       message(1, 8, "p"))
    nc("nc-close-code-int16", "CLOSE code 1000 as int 16, reason as str 16",
       R(X("94 10 01 d1 03e8 da 0002"), Raw(b"ok")), close(1, 1000, "ok"))
    nc("nc-close-empty-reason", "CLOSE with an empty reason (the same as none: senders omit it)",
       R(X("94 10 01 cd 03e8 a0")), close(1, 1000, ""))
    nc("nc-close-trailing", "CLOSE with a reason and one more element", R(X("95 10 01 cd 03e9"), Text(b"x"), [1]),
       close(1, 1001, "x"))


def build_decode_invalid():
    # framing: length
    bad("len-zero", "length 0", b"\x00\x00\x00\x00", "frame_size", framed_=False)
    bad("len-zero-after-frame", "a valid PING, then length 0", b"\x00\x00\x00\x00", "frame_size",
        before=[ping(1)], framed_=False)
    bad("len-over-max-frame", "length 16385 with max_frame 16384 (rejected from the prefix alone)",
        b"\x00\x00\x40\x01", "frame_size", framed_=False, max_frame=MIN_FRAME)
    bad("len-over-max-frame-full", "a complete 16385-byte frame with max_frame 16384",
        framed(payload(body(1, "d" * (MIN_FRAME - 5)))), "frame_size", framed_=False, max_frame=MIN_FRAME)
    bad("len-over-default", "length 1048577 with the default max_frame", b"\x00\x10\x00\x01\x93", "frame_size",
        framed_=False)
    bad("len-huge", "length 0xffffffff", b"\xff\xff\xff\xff", "frame_size", framed_=False)
    # truncation
    bad("truncated-prefix", "input ends inside the length prefix", b"\x00\x00\x00", "truncated", framed_=False)
    bad("truncated-prefix-one-byte", "a valid frame then one byte of a length prefix", b"\x00", "truncated",
        before=[credit(1, 1)], framed_=False)
    bad("truncated-payload", "input ends inside the payload", b"\x00\x00\x00\x05\x93\x0a\x00", "truncated",
        framed_=False)
    bad("truncated-after-frames", "two valid frames then a payload cut short",
        fbytes(body(1, "hello"))[:-2], "truncated", before=[ping(1), pong(1)], framed_=False)
    bad("truncated-prefix-only", "a complete length prefix and no payload", b"\x00\x00\x00\x03", "truncated",
        framed_=False)
    # malformed payloads
    def mal(slug, desc, p, before=()):
        assert oracle_malformed(p), slug
        bad(slug, desc, p, "malformed", before=before)
    mal("malformed-not-array-int", "the payload is an integer", b"\x04")
    mal("malformed-not-array-map", "the payload is a map", R({"type": 4}))
    mal("malformed-not-array-bin", "the payload is a bin", R(b"abc"))
    mal("malformed-nil", "the payload is nil", b"\xc0")
    mal("malformed-empty-array", "an empty array", b"\x90")
    mal("malformed-one-element", "an array of one element (no stream id)", b"\x91\x0a")
    mal("malformed-trailing-bytes", "a complete PING array followed by one more byte", b"\x93\x0a\x00\x01\xc0")
    mal("malformed-two-values", "two arrays in one payload", b"\x93\x0a\x00\x01\x93\x0b\x00\x01")
    mal("malformed-c1-field", "0xc1 (never used) as the PING opaque", b"\x93\x0a\x00\xc1")
    mal("malformed-c1-type", "0xc1 as the frame type", b"\x93\xc1\x00\x01")
    mal("malformed-c1-trailing", "0xc1 in an ignored trailing element", b"\x94\x0a\x00\x01\xc1")
    mal("malformed-c1-hello-key", "0xc1 as the value of an unknown HELLO key",
        R(X("94 01 00 01 82"), Text(b"window"), 1, Text(b"k"), X("c1")))
    mal("malformed-array-short", "the array announces 3 elements but the payload holds 2", b"\x93\x0a\x00")
    mal("malformed-bin-overrun", "a bin 8 announcing 10 bytes with 3 present", b"\x93\x04\x01\xc4\x0aabc")
    mal("malformed-str-overrun", "a str 16 (in an ignored element) running past the payload",
        b"\x94\x0a\x00\x01\xda\x00\x10ab")
    mal("malformed-uint-cut", "a uint 32 cut short by the payload end", b"\x93\x06\x01\xce\x00\x01")
    mal("malformed-array32-huge", "an ignored element announcing 2^32-1 array items", b"\x94\x0a\x00\x01\xdd\xff\xff\xff\xff")
    mal("malformed-depth-9", "an ignored element nested to depth 9 (the frame array is depth 1)",
        R(X("94 0a 00 01"), Raw(b"\x91" * 7 + b"\x90")))
    mal("malformed-depth-9-maps", "maps nested to depth 9 in an ignored element",
        R(X("94 0a 00 01"), Raw(b"\x81\x00" * 7 + b"\x80")))
    mal("malformed-depth-9-hello", "HELLO with an unknown key whose value nests to depth 9",
        R(X("94 01 00 01 82"), Text(b"window"), 5, Text(b"deep"), Raw(b"\x91" * 6 + b"\x80")))
    mal("malformed-ext-overrun", "an ext 8 in an ignored element running past the payload",
        b"\x94\x0a\x00\x01\xc7\x05\x01ab")
    mal("malformed-after-frames", "valid frames, then a payload with trailing bytes", b"\x92\x0d\x00\x00",
        before=[retire(), ping(2)])
    # precedence (PROTOCOL.md 2: malformed, unknown_type, stream id, fields in order)
    mal("precedence-malformed-over-type", "unknown type 0 and trailing bytes: malformed wins", b"\x92\x00\x00\x00")
    mal("precedence-malformed-over-id", "stream id 0 on BODY and 0xc1 later: malformed wins",
        b"\x94\x04\x00\xc4\x00\xc1")
    mal("precedence-malformed-over-field", "REQUEST with nil method and a truncated later element: malformed wins",
        R(X("9a 02 01 c0"), b"/", 11, [], [Text(b""), 0], [Text(b""), 0], Text(b"http"), X("cd 00")))
    mal("precedence-malformed-depth-over-field", "a header value nested to depth 9 (would be field_type): "
        "malformed wins", R(X("95 03 01 cc c8 91 92"), b"a", Raw(b"\x91" * 5 + b"\x90"), 0))
    bad("precedence-type-over-id", "type 99 with a string stream id: unknown_type", R([99, Text(b"x")]), "unknown_type")
    bad("precedence-id-over-field", "BODY on stream 0 with nil data: field_value (stream id first)",
        R([4, 0, None]), "field_value")
    bad("precedence-field-order-value", "RESPONSE status 600 and headers a map: the status error comes first",
        R([3, 1, 600, {"a": "b"}, 0]), "field_value")
    bad("precedence-field-order-type", "RESPONSE status nil and body 5: the status error comes first",
        R([3, 1, None, [], 5]), "field_type")
    bad("precedence-headers-over-later-field", "REQUEST with 1025 headers and body 4: too_many_headers first",
        R([2, 1, b"GET", b"/", 11, [[b"a", b"b"]] * 1025, [Text(b""), 0], [Text(b""), 0], Text(b"http"), 4]),
        "too_many_headers")
    # type
    ut = lambda slug, desc, t: bad(slug, desc, b"\x93" + t + b"\x00\x01", "unknown_type")
    ut("type-zero", "frame type 0", b"\x00")
    ut("type-seventeen", "frame type 17 (15 and 16 are MESSAGE and CLOSE)", b"\x11")
    ut("type-uint8-255", "frame type 255", b"\xcc\xff")
    ut("type-huge", "frame type 2^64-1", b"\xcf" + b"\xff" * 8)
    ut("type-string", "frame type as the string \"4\"", b"\xa14")
    ut("type-nil", "frame type nil", b"\xc0")
    ut("type-negative", "frame type -1", b"\xff")
    ut("type-float", "frame type 4.0", b"\xcb" + struct.pack(">d", 4.0))
    ut("type-true", "frame type true", b"\xc3")
    ut("type-bin", "frame type as bin", b"\xc4\x01\x04")
    ut("type-array", "frame type as an array", b"\x91\x04")
    bad("type-after-frame-seventeen", "a valid PING then type 17", R([17, 0]), "unknown_type", before=[ping(3)])
    # stream id
    fv = lambda slug, desc, p, before=(): bad(slug, desc, p, "field_value", before=before)
    ft = lambda slug, desc, p, before=(): bad(slug, desc, p, "field_type", before=before)
    fv("sid-zero-body", "BODY on stream 0", R([4, 0, b"x"]))
    fv("sid-zero-request", "REQUEST on stream 0", payload(request(1)).replace(b"\x02\x01", b"\x02\x00", 1))
    fv("sid-zero-end", "END on stream 0", R([5, 0]))
    fv("sid-nonzero-ping", "PING on stream 1", R([10, 1, 5]))
    fv("sid-nonzero-hello", "HELLO on stream 1", R([1, 1, 1, {"window": 1}]))
    fv("sid-nonzero-retire", "RETIRE on stream 3", R([13, 3]))
    fv("sid-2-53", "BODY on stream 2^53", R([4, 2**53, b"x"]))
    fv("sid-max-uint64", "CREDIT on stream 2^64-1", R([6, 2**64 - 1, 1]))
    fv("sid-negative", "END on stream -1", R([5, -1]))
    ft("sid-string", "BODY with the stream id \"1\"", R([4, Text(b"1"), b"x"]))
    ft("sid-nil", "BODY with a nil stream id", R([4, None, b"x"]))
    ft("sid-float", "PING with stream id 0.0", R([10, 0.0, 1]))
    # field types
    REQ_TAIL = [11, [], [Text(b""), 0], [Text(b""), 0], Text(b"http"), 0]
    ft("request-nil-method", "REQUEST with a nil method", R([2, 1, None, b"/"] + REQ_TAIL))
    ft("request-int-target", "REQUEST with an integer target", R([2, 1, b"GET", 47] + REQ_TAIL))
    ft("request-missing-body-mode", "REQUEST without its last field",
       R([2, 1, b"GET", b"/", 11, [], [Text(b""), 0], [Text(b""), 0], Text(b"http")]))
    ft("request-scheme-bin", "REQUEST scheme as bin (text fields take str only)",
       R([2, 1, b"GET", b"/", 11, [], [Text(b""), 0], [Text(b""), 0], b"http", 0]))
    ft("request-client-text", "REQUEST client as a string instead of an address",
       R([2, 1, b"GET", b"/", 11, [], Text(b"127.0.0.1:1"), [Text(b""), 0], Text(b"http"), 0]))
    ft("request-address-three", "REQUEST server address of three elements",
       R([2, 1, b"GET", b"/", 11, [], [Text(b""), 0], [Text(b"::1"), 80, 0], Text(b"http"), 0]))
    ft("request-address-host-bin", "REQUEST client host as bin",
       R([2, 1, b"GET", b"/", 11, [], [b"::1", 1], [Text(b""), 0], Text(b"http"), 0]))
    ft("request-address-port-string", "REQUEST client port as a string",
       R([2, 1, b"GET", b"/", 11, [], [Text(b"::1"), Text(b"80")], [Text(b""), 0], Text(b"http"), 0]))
    ft("request-version-float", "REQUEST version 1.1 as a float",
       R([2, 1, b"GET", b"/", 1.1, [], [Text(b""), 0], [Text(b""), 0], Text(b"http"), 0]))
    ft("header-entry-three", "a header entry of 3 elements",
       R([3, 1, 200, [[b"a", b"b", b"c"]], 0]))
    ft("header-entry-one", "a header entry of 1 element", R([3, 1, 200, [[b"a"]], 0]))
    ft("header-entry-bin", "a header entry that is a bin, not an array", R([3, 1, 200, [b"a: b"], 0]))
    ft("headers-map", "headers as a map", R([3, 1, 200, {"a": b"b"}, 0]))
    ft("header-name-int", "a header name that is an integer", R([3, 1, 200, [[1, b"b"]], 0]))
    ft("header-value-nil", "a header value that is nil", R([3, 1, 200, [[b"a", None]], 0]))
    ft("header-second-entry-bad", "the second header entry has a float value",
       R([2, 1, b"GET", b"/", 11, [[b"a", b"1"], [b"b", 2.0]], [Text(b""), 0], [Text(b""), 0], Text(b"http"), 0]))
    ft("trailers-map", "END trailers as a map", R([5, 1, {"a": b"b"}]))
    ft("trailers-entry-three", "END trailer entry of 3 elements", R([5, 1, [[b"a", b"b", b"c"]]]))
    ft("body-data-int", "BODY data as an integer", R([4, 1, 5]))
    ft("body-data-nil", "BODY data nil", R([4, 1, None]))
    ft("body-data-ext", "BODY data as an ext", R([4, 1, msgpack.ExtType(1, b"ab")]))
    ft("body-data-array", "BODY data as an array of bytes", R([4, 1, [104, 105]]))
    ft("body-missing-data", "BODY without data", R([4, 1]))
    ft("response-missing-body", "RESPONSE without the body field", R([3, 1, 200, []]))
    ft("response-status-string", "RESPONSE status as a string", R([3, 1, Text(b"200"), [], 0]))
    ft("credit-float", "CREDIT increment as a float", R([6, 1, 1.0]))
    ft("credit-true", "CREDIT increment true (booleans are not integers)", R([6, 1, True]))
    ft("credit-missing", "CREDIT without an increment", R([6, 1]))
    ft("cancel-missing-reason", "CANCEL without a reason", R([7, 1]))
    ft("cancel-message-int", "CANCEL message as an integer", R([7, 1, 1, 5]))
    ft("reset-message-bin", "RESET message as bin (text fields take str only)", R([8, 1, 1, b"oops"]))
    ft("limit-nil", "LIMIT max_body nil", R([9, 1, None]))
    ft("ping-missing", "PING without opaque", R([10, 0]))
    ft("pong-bin", "PONG opaque as bin", R([11, 0, b"\x01"]))
    ft("drain-missing", "DRAIN without a timeout", R([12, 0]))
    ft("retire-reason-int", "RETIRE reason as an integer", R([13, 0, 1]))
    ft("retire-reason-nil", "RETIRE reason nil (an optional field present must be well-typed)", R([13, 0, None]))
    ft("error-missing-message", "ERROR without its (required) message", R([14, 0, 4]))
    ft("error-message-nil", "ERROR message nil", R([14, 0, 4, None]))
    ft("error-code-string", "ERROR code as a string", R([14, 0, Text(b"malformed"), Text(b"x")]))
    ft("hello-settings-array", "HELLO settings as an array", R([1, 0, 1, [Text(b"window"), 1]]))
    ft("hello-settings-missing", "HELLO without settings", R([1, 0, 1]))
    ft("hello-version-string", "HELLO version as a string", R([1, 0, Text(b"1"), {"window": 1}]))
    ft("hello-window-string", "HELLO window as a string", R([1, 0, 1, {"window": Text(b"65536")}]))
    ft("hello-window-nil", "HELLO window nil", R([1, 0, 1, {"max_streams": 1, "window": None}]))
    ft("hello-lib-int", "HELLO lib as an integer", R([1, 0, 1, {"lib": 1, "max_streams": 1, "window": 1}]))
    ft("hello-token-bin", "HELLO token as bin (text keys take str only)",
       R([1, 0, 1, {"max_streams": 1, "window": 1, "token": b"t"}]))
    ft("hello-pid-float", "HELLO pid as a float", R([1, 0, 1, {"pid": 12.0, "max_streams": 1, "window": 1}]))
    # field values
    fv("status-199", "RESPONSE status 199", R([3, 1, 199, [], 0]))
    fv("status-600", "RESPONSE status 600", R([3, 1, 600, [], 0]))
    fv("status-100", "RESPONSE status 100 (no informational responses in v1)", R([3, 1, 100, [], 1]))
    fv("status-0", "RESPONSE status 0", R([3, 1, 0, [], 0]))
    fv("response-body-2", "RESPONSE body mode 2 (REQUEST only)", R([3, 1, 200, [], 2]))
    fv("request-body-4", "REQUEST body mode 4 (3 is a WebSocket stream)",
       R([2, 1, b"GET", b"/", 11, [], [Text(b""), 0], [Text(b""), 0], Text(b"http"), 4]))
    fv("request-version-9", "REQUEST version 9 (only 10, 11 and 20 exist)",
       R([2, 1, b"GET", b"/", 9, [], [Text(b""), 0], [Text(b""), 0], Text(b"http"), 0]))
    fv("request-version-21", "REQUEST version 21 (HTTP/2 is 20)",
       R([2, 1, b"GET", b"/", 21, [], [Text(b""), 0], [Text(b""), 0], Text(b"http"), 0]))
    fv("request-empty-method", "REQUEST with an empty method",
       R([2, 1, b"", b"/", 11, [], [Text(b""), 0], [Text(b""), 0], Text(b"http"), 0]))
    fv("request-empty-target", "REQUEST with an empty target",
       R([2, 1, b"GET", b"", 11, [], [Text(b""), 0], [Text(b""), 0], Text(b"http"), 0]))
    fv("request-port-65536", "REQUEST client port 65536",
       R([2, 1, b"GET", b"/", 11, [], [Text(b"::1"), 65536], [Text(b""), 0], Text(b"http"), 0]))
    fv("request-port-negative", "REQUEST server port -1",
       R([2, 1, b"GET", b"/", 11, [], [Text(b""), 0], [Text(b"::1"), -1], Text(b"http"), 0]))
    fv("header-name-empty", "a header with an empty name", R([3, 1, 200, [[b"ok", b"1"], [b"", b"v"]], 0]))
    fv("trailer-name-empty", "an END trailer with an empty name", R([5, 1, [[b"", b"v"]]]))
    fv("credit-zero", "CREDIT 0", R([6, 1, 0]))
    fv("credit-2-31", "CREDIT 2^31", R([6, 1, 2**31]))
    fv("credit-negative", "CREDIT -1 (a negative integer is out of range)", R([6, 1, -1]))
    fv("credit-zero-after-frame", "a valid CREDIT then CREDIT 0", R([6, 1, 0]), before=[credit(1, 100)])
    fv("limit-2-53", "LIMIT 2^53", R([9, 1, 2**53]))
    fv("ping-2-53", "PING opaque 2^53 (every uint is at most 2^53-1)", R([10, 0, 2**53]))
    fv("drain-max-uint64", "DRAIN timeout 2^64-1", R([12, 0, 2**64 - 1]))
    fv("cancel-reason-2-53", "CANCEL reason 2^53", R([7, 1, 2**53]))
    fv("error-code-negative", "ERROR code -5", R([14, 0, -5, Text(b"x")]))
    fv("hello-max-frame-16383", "HELLO max_frame 16383", R([1, 0, 1, {"max_streams": 1, "window": 1, "max_frame": 16383}]))
    fv("hello-max-frame-2-24", "HELLO max_frame 16777216", R([1, 0, 1, {"window": 1, "max_frame": 2**24}]))
    fv("hello-window-2-31", "HELLO window 2^31", R([1, 0, 1, {"max_streams": 1, "window": 2**31}]))
    fv("hello-max-streams-0", "HELLO max_streams 0", R([1, 0, 1, {"max_streams": 0, "window": 1}]))
    fv("hello-max-streams-65536", "HELLO max_streams 65536", R([1, 0, 1, {"max_streams": 65536, "window": 1}]))
    fv("hello-pid-2-53", "HELLO pid 2^53", R([1, 0, 1, {"pid": 2**53, "max_streams": 1, "window": 1}]))
    fv("hello-version-negative", "HELLO version -1", R([1, 0, -1, {"window": 1}]))
    # too many headers
    bad("headers-1025", "REQUEST with 1025 header entries (receiver limit 1024)",
        R([2, 1, b"GET", b"/", 11, [[b"a", b"b"]] * 1025, [Text(b""), 0], [Text(b""), 0], Text(b"http"), 0]),
        "too_many_headers")
    bad("trailers-1025", "END with 1025 trailer entries", R([5, 1, [[b"a", b"b"]] * 1025]), "too_many_headers")
    bad("response-headers-1025", "RESPONSE with 1025 header entries", R([3, 1, 200, [[b"a", b""]] * 1025, 1]),
        "too_many_headers")
    # added with PROTOCOL.md's rules moved from this README (appended to keep names stable)
    ft("request-address-one", "REQUEST client address of one element (an address is exactly [host, port])",
       R([2, 1, b"GET", b"/", 11, [], [Text(b"::1")], [Text(b""), 0], Text(b"http"), 0]))
    ft("request-address-empty", "REQUEST server address as an empty array",
       R([2, 1, b"GET", b"/", 11, [], [Text(b""), 0], [], Text(b"http"), 0]))
    ft("sid-true", "CREDIT with stream id true (not an integer: field_type)", R([6, True, 1]))
    ft("sid-bin", "END with the stream id as a bin", R([5, b"\x01"]))
    bad("precedence-header-count-over-entries", "RESPONSE with 1025 header entries, the first one malformed "
        "(one element): the count is checked before the entries, too_many_headers",
        R([3, 1, 200, [[b"a"]] + [[b"a", b"b"]] * 1024, 1]), "too_many_headers")
    bad("precedence-header-entries-in-order", "two header entries, the first with an empty name (field_value), "
        "the second of three elements (field_type): entries are checked in order, field_value",
        R([3, 1, 200, [[b"", b"v"], [b"a", b"b", b"c"]], 1]), "field_value")
    bad("precedence-header-name-before-value", "a header entry whose name is empty (field_value) and whose "
        "value is nil (field_type): within an entry, name then value, field_value",
        R([3, 1, 200, [[b"", None]], 1]), "field_value")
    # versions between 1.1 and 2 (20 became valid with HTTP/2; appended to keep names stable)
    fv("request-version-12", "REQUEST version 12 (between 11 and 20: no HTTP version)",
       R([2, 1, b"GET", b"/", 12, [], [Text(b""), 0], [Text(b""), 0], Text(b"http"), 0]))
    fv("request-version-19", "REQUEST version 19 (between 11 and 20: no HTTP version)",
       R([2, 1, b"GET", b"/", 19, [], [Text(b""), 0], [Text(b""), 0], Text(b"http"), 0]))
    # WebSockets, appended to keep names stable
    for fl in (5, 6, 7, 9, 16, 255):
        fv("message-flags-%d" % fl, "MESSAGE flags %d (only 0, 1, 2, 3, 4 and 8 exist)" % fl, R([15, 1, fl, b"x"]))
    fv("message-flags-negative", "MESSAGE flags -1", R([15, 1, -1, b"x"]))
    ft("message-flags-true", "MESSAGE flags true (booleans are not integers)", R([15, 1, True, b"x"]))
    ft("message-flags-nil", "MESSAGE flags nil", R([15, 1, None, b"x"]))
    ft("message-flags-string", "MESSAGE flags as the string \"1\"", R([15, 1, Text(b"1"), b"x"]))
    ft("message-data-nil", "MESSAGE data nil", R([15, 1, 0, None]))
    ft("message-data-int", "MESSAGE data as an integer", R([15, 1, 1, 5]))
    ft("message-data-array", "MESSAGE data as an array", R([15, 1, 0, [104]]))
    ft("message-missing-data", "MESSAGE without data", R([15, 1, 1]))
    ft("message-missing-flags", "MESSAGE with neither flags nor data", R([15, 1]))
    fv("message-sid-zero", "MESSAGE on stream 0", R([15, 0, 0, b"x"]))
    ft("message-sid-string", "MESSAGE with the stream id \"1\"", R([15, Text(b"1"), 0, b"x"]))
    bad("precedence-message-flags-before-data", "MESSAGE flags 5 and data nil: the flags error comes first",
        R([15, 1, 5, None]), "field_value")
    fv("close-code-999", "CLOSE code 999", R([16, 1, 999]))
    fv("close-code-5000", "CLOSE code 5000", R([16, 1, 5000]))
    fv("close-code-0", "CLOSE code 0", R([16, 1, 0]))
    ft("close-code-string", "CLOSE code as the string \"1000\"", R([16, 1, Text(b"1000")]))
    ft("close-code-nil", "CLOSE code nil", R([16, 1, None]))
    ft("close-missing-code", "CLOSE without a code", R([16, 1]))
    ft("close-reason-bin", "CLOSE reason as bin (text fields take str only)", R([16, 1, 1000, b"bye"]))
    ft("close-reason-int", "CLOSE reason as an integer", R([16, 1, 1000, 7]))
    ft("close-reason-nil", "CLOSE reason nil (an optional field present must be well-typed)", R([16, 1, 1000, None]))
    fv("close-sid-zero", "CLOSE on stream 0", R([16, 0, 1000]))
    bad("precedence-close-code-before-reason", "CLOSE code 5000 and reason bin: the code error comes first",
        R([16, 1, 5000, b"x"]), "field_value")
    fv("status-102", "RESPONSE status 102 (101 is the only informational status)", R([3, 1, 102, [], 0]))
    ft("hello-websocket-int", "HELLO websocket as the integer 1 (bool only)",
       R([1, 0, 1, {"max_streams": 1, "window": 1, "websocket": 1}]))
    ft("hello-websocket-nil", "HELLO websocket nil", R([1, 0, 1, {"max_streams": 1, "window": 1, "websocket": None}]))
    ft("hello-websocket-string", "HELLO websocket as the string \"true\"",
       R([1, 0, 1, {"window": 1, "websocket": Text(b"true")}]))
    bad("type-after-close", "a valid CLOSE then type 17", R([17, 1]), "unknown_type", before=[close(1, 1000)])


# ---------------------------------------------------------------------------
# Sessions

W_HELLO = hello(pid=100, lib="sluice-test/1", max_streams=4, window=16)
G_HELLO = hello(window=8, max_frame=65536, worker_id=1, pool="p", server="sluice/0.1.0")


def gw_ready(whello=W_HELLO, ghello=G_HELLO):
    return [recv(whello), send(ghello)]


def wk_ready(whello=W_HELLO, ghello=G_HELLO):
    return [send(whello), recv(ghello)]


W_HELLO_WS = hello(pid=100, lib="sluice-test/1", max_streams=4, window=16, websocket=True)
G_HELLO_WS = hello(window=8, max_frame=65536, worker_id=1, pool="p", server="sluice/0.1.0", websocket=True)


def ws_gw():
    return gw_ready(W_HELLO_WS, G_HELLO_WS)


def ws_wk():
    return wk_ready(W_HELLO_WS, G_HELLO_WS)


def ws_request(sid, target="/ws"):
    return request(sid, "GET", target, 11, WS_HEADERS, body=3)


def build_sessions():
    S = session
    # handshake
    S("s-handshake-worker", "worker: send HELLO, receive HELLO, then PING/PONG both ways", "worker",
      wk_ready() + [recv(ping(1)), send(pong(1)), send(ping(2)), recv(pong(2))], 4)
    S("s-handshake-gateway", "gateway: receive HELLO, answer HELLO, then PING/PONG both ways", "gateway",
      gw_ready() + [send(ping(9)), recv(pong(9)), recv(ping(3)), send(pong(3))])
    S("s-handshake-full-hellos", "both HELLOs with every key", "gateway",
      [recv(W_HELLO_FULL), send(G_HELLO_FULL)])
    S("s-worker-frame-before-hello", "worker: a REQUEST before the gateway's HELLO", "worker",
      [send(W_HELLO), recv(request(1), "unexpected_frame")], 4)
    S("s-worker-ping-before-hello", "worker: a PING before the gateway's HELLO", "worker",
      [send(W_HELLO), recv(ping(1), "unexpected_frame")], 4)
    S("s-worker-hello-before-own", "worker: the gateway's HELLO before the worker sent its own", "worker",
      [recv(G_HELLO, "unexpected_frame")], 4)
    S("s-gateway-frame-before-hello", "gateway: a PING before the worker's HELLO", "gateway",
      [recv(ping(1), "unexpected_frame")])
    S("s-gateway-response-before-hello", "gateway: a RESPONSE before the worker's HELLO", "gateway",
      [recv(response(1), "unexpected_frame")])
    S("s-gateway-send-before-hello", "gateway: may not send HELLO (or anything) before the worker's HELLO", "gateway",
      [send(G_HELLO, "rejected"), send(ping(1), "rejected")] + gw_ready() + [send(ping(1))])
    S("s-worker-send-before-ready", "worker: may send only HELLO and ERROR before the link is ready", "worker",
      [send(ping(1), "rejected"), send(W_HELLO), send(ping(1), "rejected"), send(retire(), "rejected"),
       recv(G_HELLO), send(ping(1))], 4)
    S("s-gateway-hello-twice", "gateway: a second worker HELLO", "gateway",
      gw_ready() + [recv(W_HELLO, "unexpected_frame")])
    S("s-worker-hello-twice", "worker: a second gateway HELLO", "worker",
      wk_ready() + [recv(G_HELLO, "unexpected_frame")], 4)
    S("s-gateway-send-hello-twice", "gateway: sending a second HELLO is refused", "gateway",
      gw_ready() + [send(G_HELLO, "rejected"), send(ping(1))])
    S("s-worker-version-mismatch", "worker: the gateway answers version 2", "worker",
      [send(W_HELLO), recv(hello(version=2, window=8), "version")], 4)
    S("s-gateway-version-zero", "gateway: a worker HELLO with version 0", "gateway",
      [recv(hello(version=0, max_streams=1, window=1), "version")])
    S("s-gateway-error-before-hello", "gateway: ERROR is legal before HELLO", "gateway",
      [recv(error("auth", "bad token"))])
    S("s-worker-error-in-handshake", "worker: receives ERROR version after its HELLO", "worker",
      [send(W_HELLO), recv(error("version", "speaks 1"))], 4)
    S("s-worker-send-error-in-handshake", "worker: may send ERROR before the link is ready", "worker",
      [send(W_HELLO), send(error("internal", "giving up"))], 4)
    S("s-gateway-hello-missing-max-streams", "gateway: worker HELLO without max_streams", "gateway",
      [recv(hello(pid=1, window=100), "field_type")])
    S("s-gateway-hello-empty-settings", "gateway: worker HELLO with no settings at all", "gateway",
      [recv(hello(), "field_type")])
    S("s-gateway-hello-long-strings", "gateway: worker HELLO with long text values (lib 300 bytes, token 1000 "
      "bytes); the link keeps them intact", "gateway",
      [recv(hello(pid=1, lib="L" * 300, max_streams=2, window=1, token="t0" * 500)), send(G_HELLO)])
    S("s-worker-hello-long-strings", "worker: gateway HELLO with long text values (pool 256 bytes, server "
      "2000 bytes)", "worker",
      [send(hello(lib="w" * 255, max_streams=1, window=1, token="k" * 256)),
       recv(hello(window=1, worker_id=3, pool="P" * 256, server="S" * 2000))], 1)
    S("s-gateway-hello-missing-window", "gateway: worker HELLO without window", "gateway",
      [recv(hello(max_streams=2), "field_type")])
    S("s-worker-hello-missing-window", "worker: gateway HELLO without window", "worker",
      [send(W_HELLO), recv(hello(max_frame=65536, pool="p"), "field_type")], 4)
    # gateway: stream lifecycle
    S("s-gw-exchange", "gateway: a full POST exchange", "gateway",
      gw_ready() + [send(request(1, "POST", "/echo", body=1)), send(body(1, "0123456789abcdef")), send(end(1)),
                    recv(response(1, 200, [], 1)), recv(body(1, "01234567")), recv(end(1)),
                    send(request(2)), recv(response(2, 204, [], 0))])
    S("s-gw-response-twice", "gateway: RESPONSE twice on one stream", "gateway",
      gw_ready() + [send(request(1)), recv(response(1, 200, [], 1)), recv(response(1, 200, [], 1), "stream_state")])
    S("s-gw-body-before-response", "gateway: BODY before RESPONSE", "gateway",
      gw_ready() + [send(request(1)), recv(body(1, "x"), "stream_state")])
    S("s-gw-end-before-response", "gateway: END before RESPONSE", "gateway",
      gw_ready() + [send(request(1)), recv(end(1), "stream_state")])
    S("s-gw-body-after-response-no-body", "gateway: RESPONSE body=0 closes the stream; a later BODY is ignored",
      "gateway", gw_ready() + [send(request(1)), recv(response(1, 200, [], 0)), recv(body(1, "x"), "ignored"),
                               recv(end(1), "ignored")])
    S("s-gw-end-twice", "gateway: the response END closes the stream; a second END is ignored", "gateway",
      gw_ready() + [send(request(1)), recv(response(1, 200, [], 1)), recv(end(1)), recv(end(1), "ignored")])
    S("s-gw-end-closes-open-request", "gateway: the response END closes the stream even though the request body "
      "is still open; sending more request BODY is refused", "gateway",
      gw_ready() + [send(request(1, "POST", "/", body=1)), send(body(1, "abc")),
                    recv(response(1, 413, [], 1)), recv(end(1)), send(body(1, "def"), "rejected"),
                    recv(credit(1, 3), "ignored")])
    S("s-gw-unused-id", "gateway: RESPONSE for a stream id never opened", "gateway",
      gw_ready() + [send(request(1)), recv(response(2, 200, [], 0), "stream_state")])
    S("s-gw-credit-unused-id", "gateway: CREDIT for a stream id never opened", "gateway",
      gw_ready() + [send(request(5)), recv(credit(6, 1), "stream_state")])
    S("s-gw-skipped-id-is-closed", "gateway: ids 1..4 were skipped, so they are closed: frames for them are ignored",
      "gateway", gw_ready() + [send(request(5)), recv(reset(3, 1), "ignored"), recv(response(5, 200, [], 0))])
    S("s-gw-late-after-cancel", "gateway: frames in flight after CANCEL are ignored", "gateway",
      gw_ready() + [send(request(1, body=1)), send(cancel(1, 1, "client went away")),
                    recv(response(1, 200, [], 1), "ignored"), recv(body(1, "late"), "ignored"),
                    recv(end(1), "ignored"), recv(credit(1, 10), "ignored"), recv(limit(1, 5), "ignored"),
                    recv(reset(1, 1), "ignored")])
    S("s-gw-reset", "gateway: RESET closes the stream; request BODY after it is refused, late END ignored",
      "gateway", gw_ready() + [send(request(1, body=1)), recv(reset(1, 2, "busy")), send(body(1, "x"), "rejected"),
                               recv(end(1), "ignored")])
    S("s-gw-reset-after-response", "gateway: RESET while the response body is being sent", "gateway",
      gw_ready() + [send(request(1)), recv(response(1, 200, [], 1)), recv(body(1, "ab")), recv(reset(1, 1)),
                    recv(body(1, "cd"), "ignored")])
    S("s-gw-recv-request", "gateway: a REQUEST from the worker (wrong direction)", "gateway",
      gw_ready() + [recv(request(1), "unexpected_frame")])
    S("s-gw-recv-cancel", "gateway: a CANCEL from the worker (wrong direction)", "gateway",
      gw_ready() + [send(request(1)), recv(cancel(1, 1), "unexpected_frame")])
    S("s-gw-recv-drain", "gateway: a DRAIN from the worker (wrong direction)", "gateway",
      gw_ready() + [recv(drain(1000), "unexpected_frame")])
    S("s-gw-send-request-not-increasing", "gateway: REQUEST ids must increase", "gateway",
      gw_ready() + [send(request(2)), send(request(2), "rejected"), send(request(1), "rejected"),
                    recv(response(2, 200, [], 0)), send(request(2), "rejected"), send(request(3))])
    S("s-gw-send-too-many-streams", "gateway: at most the worker's max_streams (2) open streams", "gateway",
      [recv(hello(max_streams=2, window=10)), send(G_HELLO), send(request(1)), send(request(2)),
       send(request(3), "rejected"), recv(response(1, 200, [], 0)), send(request(3))])
    S("s-gw-send-wrong-direction", "gateway: refuses to send worker-only frames", "gateway",
      gw_ready() + [send(request(1)), send(response(1), "rejected"), send(reset(1, 1), "rejected"),
                    send(limit(1, 0), "rejected"), send(retire(), "rejected"), send(cancel(1, 3))])
    S("s-gw-drain", "gateway: no REQUEST after DRAIN; open streams continue", "gateway",
      gw_ready() + [send(request(1)), send(drain(5000)), send(request(2), "rejected"), send(drain(5000), "rejected"),
                    recv(response(1, 200, [], 1)), recv(body(1, "bye")), recv(end(1))])
    S("s-gw-retire", "gateway: RETIRE, streams in flight are still served, then DRAIN", "gateway",
      gw_ready() + [send(request(1)), recv(retire("budget")), send(request(2), "rejected"),
                    recv(response(1, 200, [], 0)), send(drain(1000))])
    S("s-gw-limit", "gateway: LIMIT on an open stream", "gateway",
      gw_ready() + [send(request(1, "POST", "/up", body=2)), recv(limit(1, 10**9)), recv(credit(1, 16)),
                    send(body(1, "x" * 16)), send(end(1)), recv(response(1, 201, [], 0))])
    S("s-gw-credit-limit-after-request-end", "gateway: CREDIT and LIMIT are ignored once the request side has "
      "ENDED (even a CREDIT that would overflow the window)", "gateway",
      [recv(hello(max_streams=4, window=MAX_WINDOW)), send(G_HELLO), send(request(1, "POST", body=1)),
       send(body(1, "abc")), send(end(1)), recv(credit(1, MAX_WINDOW), "ignored"), recv(limit(1, 0), "ignored"),
       send(request(2)), recv(credit(2, 5), "ignored"), recv(response(2, 200, [], 0)),
       recv(response(1, 200, [], 0))])
    S("s-gw-max-stream-id", "gateway: stream id 2^53-1 is usable", "gateway",
      gw_ready() + [send(request(MAX_ID)), recv(response(MAX_ID, 200, [], 0))])
    # worker: stream lifecycle
    S("s-w-exchange", "worker: a full POST exchange", "worker",
      wk_ready() + [recv(request(1, "POST", "/echo", body=1)), recv(body(1, "hello")), recv(end(1)),
                    send(response(1, 200, [["content-length", "5"]], 1)), send(body(1, "hello")), send(end(1))], 4)
    S("s-w-body-after-request-end", "worker: BODY after the request side ended (END)", "worker",
      wk_ready() + [recv(request(1, body=1)), recv(end(1)), recv(body(1, "x"), "stream_state")], 4)
    S("s-w-body-request-no-body", "worker: BODY for a REQUEST with body=0", "worker",
      wk_ready() + [recv(request(1, body=0)), recv(body(1, "x"), "stream_state")], 4)
    S("s-w-end-twice", "worker: request END twice (the stream is still open)", "worker",
      wk_ready() + [recv(request(1, body=1)), recv(end(1)), recv(end(1), "stream_state")], 4)
    S("s-w-end-no-body", "worker: END for a REQUEST with body=0", "worker",
      wk_ready() + [recv(request(1, body=0)), recv(end(1), "stream_state")], 4)
    S("s-w-request-same-id", "worker: REQUEST for an open id", "worker",
      wk_ready() + [recv(request(1)), recv(request(1), "stream_state")], 4)
    S("s-w-request-reused-id", "worker: REQUEST for a closed id", "worker",
      wk_ready() + [recv(request(1)), send(response(1, 200, [], 0)), recv(request(1), "stream_state")], 4)
    S("s-w-request-decreasing", "worker: REQUEST 5 then REQUEST 3 (3 is closed, never opened)", "worker",
      wk_ready() + [recv(request(5)), recv(request(3), "stream_state")], 4)
    S("s-w-request-gaps", "worker: ids may skip values", "worker",
      wk_ready() + [recv(request(2)), recv(request(10)), recv(request(MAX_ID))], 4)
    S("s-w-unused-id-body", "worker: BODY for a stream id never opened", "worker",
      wk_ready() + [recv(request(1, body=1)), recv(body(2, "x"), "stream_state")], 4)
    S("s-w-unused-id-cancel", "worker: CANCEL for a stream id never opened", "worker",
      wk_ready() + [recv(cancel(1, 1), "stream_state")], 4)
    S("s-w-too-many-streams", "worker: a REQUEST beyond max_streams (1)", "worker",
      [send(hello(max_streams=1, window=16)), recv(G_HELLO), recv(request(1)), recv(request(2), "too_many_streams")], 1)
    S("s-w-max-streams-reuse", "worker: a closed stream frees its slot", "worker",
      [send(hello(max_streams=1, window=16)), recv(G_HELLO), recv(request(1, body=1)),
       send(response(1, 200, [], 0)), recv(request(2)), recv(body(1, "late"), "ignored"),
       recv(cancel(2, 1)), recv(request(3))], 1)
    S("s-w-request-after-drain", "worker: REQUEST after DRAIN", "worker",
      wk_ready() + [recv(request(1)), recv(drain(1000)), send(response(1, 200, [], 1)), send(body(1, "x")),
                    send(end(1)), recv(request(2), "unexpected_frame")], 4)
    S("s-w-drain-twice", "worker: a second DRAIN", "worker",
      wk_ready() + [recv(drain(1000)), recv(drain(1000), "unexpected_frame")], 4)
    S("s-w-recv-response", "worker: a RESPONSE from the gateway (wrong direction)", "worker",
      wk_ready() + [recv(request(1)), recv(response(1, 200, [], 0), "unexpected_frame")], 4)
    S("s-w-recv-reset", "worker: a RESET from the gateway (wrong direction)", "worker",
      wk_ready() + [recv(request(1)), recv(reset(1, 1), "unexpected_frame")], 4)
    S("s-w-recv-limit", "worker: a LIMIT from the gateway (wrong direction)", "worker",
      wk_ready() + [recv(request(1, body=1)), recv(limit(1, 10), "unexpected_frame")], 4)
    S("s-w-recv-retire", "worker: a RETIRE from the gateway (wrong direction)", "worker",
      wk_ready() + [recv(retire(), "unexpected_frame")], 4)
    S("s-w-send-wrong-direction", "worker: refuses to send gateway-only frames", "worker",
      wk_ready() + [recv(request(1)), send(request(2), "rejected"), send(cancel(1, 1), "rejected"),
                    send(drain(1), "rejected"), send(response(1, 200, [], 0))], 4)
    S("s-w-late-after-response", "worker: after its RESPONSE body=0 the stream is closed: request BODY (even "
      "beyond the window), END, CREDIT and CANCEL are ignored", "worker",
      wk_ready() + [recv(request(1, "POST", body=1)), send(response(1, 413, [], 0)),
                    recv(body(1, "y" * 100), "ignored"), recv(end(1), "ignored"), recv(credit(1, 5), "ignored"),
                    recv(cancel(1, 4), "ignored")], 4)
    S("s-w-late-after-reset", "worker: after its RESET, gateway frames are ignored", "worker",
      wk_ready() + [recv(request(1, body=1)), send(reset(1, 2)), recv(body(1, "x"), "ignored"),
                    recv(cancel(1, 1), "ignored")], 4)
    S("s-w-cancel", "worker: after CANCEL the worker sends nothing more on the stream", "worker",
      wk_ready() + [recv(request(1, body=1)), recv(cancel(1, 2, "timeout")), send(response(1, 200, [], 1), "rejected"),
                    send(reset(1, 1), "rejected"), recv(body(1, "in flight"), "ignored")], 4)
    S("s-w-send-after-end", "worker: nothing more after its END", "worker",
      wk_ready() + [recv(request(1)), send(response(1, 200, [], 1)), send(end(1)), send(body(1, "x"), "rejected"),
                    send(end(1), "rejected")], 4)
    S("s-w-send-response-twice", "worker: a second RESPONSE is refused; BODY before RESPONSE is refused", "worker",
      wk_ready() + [recv(request(1)), send(body(1, "x"), "rejected"), send(end(1), "rejected"),
                    send(response(1, 200, [], 1)), send(response(1, 200, [], 1), "rejected"), send(end(1))], 4)
    S("s-w-retire", "worker: RETIRE, keep serving, then DRAIN", "worker",
      wk_ready() + [send(retire("memory")), recv(request(1)), send(response(1, 200, [], 0)), recv(drain(100))], 4)
    # credit
    S("s-w-credit-exact-window", "worker: request BODY exactly filling the window (16), then one byte over",
      "worker", wk_ready() + [recv(request(1, body=1)), recv(body(1, "a" * 10)), recv(body(1, "b" * 6)),
                              recv(body(1, "")), recv(body(1, "c"), "flow_control")], 4)
    S("s-w-credit-restore", "worker: CREDIT restores the request window", "worker",
      wk_ready() + [recv(request(1, body=1)), recv(body(1, "a" * 16)), send(credit(1, 10)), recv(body(1, "b" * 10)),
                    send(credit(1, 1)), recv(body(1, "c")), recv(end(1)), send(response(1, 200, [], 0))], 4)
    S("s-w-credit-restore-over", "worker: after CREDIT 10, 11 bytes is one too many", "worker",
      wk_ready() + [recv(request(1, body=1)), recv(body(1, "a" * 16)), send(credit(1, 10)),
                    recv(body(1, "b" * 11), "flow_control")], 4)
    S("s-w-body-on-credit", "worker: body mode 2 starts the request window at 0", "worker",
      wk_ready() + [recv(request(1, "PUT", body=2)), recv(body(1, "")), recv(body(1, "x"), "flow_control")], 4)
    S("s-w-body-on-credit-grant", "worker: body mode 2, the worker grants credit, then the body flows", "worker",
      wk_ready() + [recv(request(1, "PUT", body=2)), send(limit(1, 5)), send(credit(1, 5)), recv(body(1, "12345")),
                    recv(end(1)),
                    send(response(1, 204, [], 0))], 4)
    S("s-w-windows-per-stream", "worker: each stream has its own window; another stream's BODY does not count",
      "worker", wk_ready() + [recv(request(1, body=1)), recv(request(2, body=1)), recv(body(1, "a" * 16)),
                              recv(body(2, "b" * 16)), recv(body(2, "c"), "flow_control")], 4)
    S("s-w-send-window", "worker: the response window (gateway window 8) limits what the worker may send", "worker",
      wk_ready() + [recv(request(1)), send(response(1, 200, [], 1)), send(body(1, "x" * 9), "rejected"),
                    send(body(1, "x" * 8)), send(body(1, "y"), "rejected"), send(body(1, "")), recv(credit(1, 4)),
                    send(body(1, "z" * 5), "rejected"), send(body(1, "z" * 4)), send(end(1))], 4)
    S("s-w-send-window-zero", "worker: a gateway window of 0 allows only empty BODY until CREDIT", "worker",
      [send(W_HELLO), recv(hello(window=0)), recv(request(1)), send(response(1, 200, [], 1)),
       send(body(1, "x"), "rejected"), send(body(1, "")), recv(credit(1, 1)), send(body(1, "x")), send(end(1))], 4)
    S("s-w-credit-overflow", "worker: CREDIT taking the response window above 2^31-1", "worker",
      [send(W_HELLO), recv(hello(window=MAX_WINDOW)), recv(request(1)), recv(credit(1, 1), "flow_control")], 4)
    S("s-w-credit-overflow-after-use", "worker: window 100, 50 sent, CREDIT up to exactly 2^31-1, then 1 more",
      "worker", [send(W_HELLO), recv(hello(window=100)), recv(request(1)), send(response(1, 200, [], 1)),
                 send(body(1, "q" * 50)), recv(credit(1, MAX_WINDOW - 50)), send(body(1, "r" * 60)),
                 recv(credit(1, 60)), recv(credit(1, 1), "flow_control")], 4)
    S("s-w-credit-zero", "worker: CREDIT 0 (rejected when decoding)", "worker",
      wk_ready() + [recv(request(1)), recv(credit(1, 0), "field_value", raw=framed(R([6, 1, 0])))], 4)
    S("s-w-credit-before-response", "worker: CREDIT may arrive while the response is WAITING", "worker",
      wk_ready() + [recv(request(1)), recv(credit(1, 8)), send(response(1, 200, [], 1)), send(body(1, "x" * 16)),
                    send(body(1, "x"), "rejected"), send(end(1))], 4)
    S("s-gw-credit-overflow", "gateway: worker window 2^31-1, CREDIT 1 overflows", "gateway",
      [recv(hello(max_streams=1, window=MAX_WINDOW)), send(G_HELLO), send(request(1, body=1)),
       recv(credit(1, 1), "flow_control")])
    S("s-gw-recv-flow-control", "gateway: response BODY exactly filling the window (8), then one byte over",
      "gateway", gw_ready() + [send(request(1)), recv(response(1, 200, [], 1)), recv(body(1, "12345678")),
                               recv(body(1, "9"), "flow_control")])
    S("s-gw-recv-credit-restore", "gateway: CREDIT to the worker restores the response window", "gateway",
      gw_ready() + [send(request(1)), recv(response(1, 200, [], 1)), recv(body(1, "12345678")), send(credit(1, 3)),
                    recv(body(1, "abc")), recv(end(1))])
    S("s-gw-send-window", "gateway: the request window (worker window 16) limits the gateway", "gateway",
      gw_ready() + [send(request(1, body=1)), send(body(1, "x" * 17), "rejected"), send(body(1, "x" * 16)),
                    send(body(1, "y"), "rejected"), recv(credit(1, 3)), send(body(1, "yyy")), send(end(1)),
                    recv(response(1, 200, [], 0))])
    S("s-gw-send-body-on-credit", "gateway: body mode 2 holds the body until CREDIT", "gateway",
      gw_ready() + [send(request(1, "PUT", body=2)), send(body(1, "x"), "rejected"), send(body(1, "")),
                    recv(credit(1, 100)), send(body(1, "x" * 100)), send(body(1, "x"), "rejected"),
                    send(end(1)), recv(response(1, 201, [], 0))])
    S("s-gw-ignored-body-not-counted", "gateway: an ignored BODY on a closed stream counts against no window",
      "gateway", gw_ready() + [send(request(1)), send(request(2)), send(cancel(1, 2)),
                               recv(response(1, 200, [], 1), "ignored"), recv(body(1, "z" * 50), "ignored"),
                               recv(response(2, 200, [], 1)), recv(body(2, "12345678")),
                               recv(body(2, "9"), "flow_control")])
    S("s-gw-credit-zero", "gateway: CREDIT 0 (rejected when decoding)", "gateway",
      gw_ready() + [send(request(1, body=1)), recv(credit(1, 0), "field_value", raw=framed(R([6, 1, 0])))])
    # added with PROTOCOL.md's rules moved from this README (appended to keep names stable)
    S("s-gw-unsolicited-pong", "gateway: a PONG that answers no PING (none sent, or an unknown opaque) is "
      "accepted and has no effect", "gateway",
      gw_ready() + [recv(pong(77)), send(request(1)), send(ping(5)), recv(pong(6)), recv(pong(5)), recv(pong(5)),
                    recv(response(1, 200, [], 0))])
    S("s-w-unsolicited-pong", "worker: a PONG that answers no PING is accepted and has no effect", "worker",
      wk_ready() + [recv(pong(0)), recv(request(1)), recv(pong(MAX_ID)), send(response(1, 204, [], 0))], 4)
    S("s-gw-recv-empty-body-window-zero", "gateway: response window used up (8 of 8); an empty BODY is still "
      "legal, one more byte is not", "gateway",
      gw_ready() + [send(request(1)), recv(response(1, 200, [], 1)), recv(body(1, "12345678")), recv(body(1, "")),
                    recv(body(1, "9"), "flow_control")])
    S("s-w-send-empty-body-window-used", "worker: after using the whole response window an empty BODY may "
      "still be sent", "worker",
      wk_ready() + [recv(request(1)), send(response(1, 200, [], 1)), send(body(1, "x" * 8)), send(body(1, "")),
                    send(body(1, "y"), "rejected"), send(end(1))], 4)
    S("s-w-credit-then-response", "worker: Expect: 100-continue done right: body mode 2, the worker sends "
      "CREDIT before its RESPONSE (the gateway answers 100 Continue on the CREDIT), then reads the body", "worker",
      wk_ready() + [recv(request(1, "PUT", "/upload", headers=[["host", "h"], ["content-length", "5"]], body=2)),
                    send(credit(1, 16)), send(response(1, 200, [], 1)), recv(body(1, "12345")), recv(end(1)),
                    send(body(1, "ok")), send(end(1))], 4)
    S("s-gw-credit-then-response", "gateway: body mode 2, CREDIT then RESPONSE from the worker: the body flows "
      "while the response is open", "gateway",
      gw_ready() + [send(request(1, "PUT", "/upload", headers=[["host", "h"], ["content-length", "5"]], body=2)),
                    recv(credit(1, 16)), recv(response(1, 200, [], 1)), send(body(1, "12345")), send(end(1)),
                    recv(body(1, "ok")), recv(end(1))])
    S("s-gw-answer-without-credit", "gateway: body mode 2, the worker answers 401 without granting credit: "
      "the stream closes and the body is never sent", "gateway",
      gw_ready() + [send(request(1, "POST", "/upload", body=2)), send(body(1, "x"), "rejected"),
                    recv(response(1, 401, [], 0)), send(body(1, "x"), "rejected"), send(end(1), "rejected"),
                    recv(credit(1, 10), "ignored")])
    S("s-w-request-after-retire", "worker: REQUESTs the gateway sent before it read RETIRE are legal and "
      "must be served (or RESET refused); only DRAIN ends them", "worker",
      wk_ready() + [send(retire("shutdown")), recv(request(1)), recv(request(2)), send(response(1, 200, [], 0)),
                    send(reset(2, 2)), recv(drain(30000)), recv(request(3), "unexpected_frame")], 4)
    S("s-w-http2-exchange", "worker: an HTTP/2 request (version 20) with a body and request trailers, "
      "answered with response trailers (gRPC style): the same stream rules as HTTP/1.1", "worker",
      wk_ready() + [recv(request(1, "POST", "/pkg.Svc/Call", 20,
                                 [["host", "example.com"], ["content-type", "application/grpc"], ["te", "trailers"]],
                                 scheme="https", body=1)),
                    recv(body(1, "\u0000\u0000\u0000\u0000\u0002hi")), recv(end(1, [["x-checksum", "7"]])),
                    send(response(1, 200, [["content-type", "application/grpc"]], 1)), send(body(1, "ok")),
                    send(end(1, [["grpc-status", "0"], ["grpc-message", ""]])),
                    recv(credit(1, 2), "ignored")], 4)
    # WebSocket streams (PROTOCOL.md 5.2), appended to keep names stable
    WSW, WSG = W_HELLO_WS, G_HELLO_WS
    wsq = ws_request
    acc = lambda sid=1, headers=(): response(sid, 101, [list(h) for h in headers], 0)
    S("s-ws-w-negotiate", "worker: announces websocket, the gateway answers it: a WebSocket stream is accepted "
      "and carries MESSAGE both ways", "worker",
      [send(WSW), recv(WSG), recv(wsq(1)), send(acc(1, [["sec-websocket-protocol", "chat"]])),
       recv(message(1, 1, "hello")), send(message(1, 1, "hello")), recv(close(1, 1000)),
       recv(request(2)), send(response(2, 204, [], 0))], 4)
    S("s-ws-gw-negotiate", "gateway: the worker announces websocket and the gateway answers it: a WebSocket "
      "stream is opened and accepted", "gateway",
      [recv(WSW), send(WSG), send(wsq(1)), recv(acc(1, [["sec-websocket-protocol", "chat"]])),
       send(message(1, 1, "hello")), recv(message(1, 1, "hello")), send(close(1, 1000)), send(request(2)),
       recv(response(2, 204, [], 0))])
    S("s-ws-gw-hello-not-announced", "gateway: may not answer websocket: true to a worker that did not announce "
      "it (a caller error); its HELLO without it is fine, and then no WebSocket stream may be opened", "gateway",
      [recv(W_HELLO), send(WSG, "rejected"), send(G_HELLO), send(wsq(1), "rejected"), send(request(1)),
       send(message(1, 0, "x"), "rejected"), send(close(1, 1000), "rejected"), recv(response(1, 200, [], 0))])
    S("s-ws-gw-hello-not-answered", "gateway: the worker announced websocket, the gateway did not answer it: "
      "the link has no WebSockets", "gateway",
      [recv(WSW), send(G_HELLO), send(wsq(1), "rejected"), send(request(1)),
       recv(response(1, 101, [], 0), "unexpected_frame")])
    S("s-ws-w-not-answered-request", "worker: announced websocket, the gateway did not answer it: REQUEST "
      "body=3 is unexpected_frame", "worker",
      [send(WSW), recv(G_HELLO), recv(wsq(1), "unexpected_frame")], 4)
    S("s-ws-w-not-announced", "worker: the gateway answers websocket: true although the worker did not "
      "announce it: the link has no WebSockets (the key is ignored)", "worker",
      [send(W_HELLO), recv(WSG), recv(request(1)), send(response(1, 101, [], 0), "rejected"),
       send(message(1, 0, "x"), "rejected"), send(close(1, 1000), "rejected"), send(response(1, 200, [], 0)),
       recv(wsq(2), "unexpected_frame")], 4)
    # a link without the feature: unexpected_frame, both roles
    S("s-ws-w-nofeature-request", "worker: REQUEST body=3 on a link without WebSockets", "worker",
      wk_ready() + [recv(wsq(1), "unexpected_frame")], 4)
    S("s-ws-w-nofeature-message", "worker: MESSAGE on a link without WebSockets", "worker",
      wk_ready() + [recv(request(1)), recv(message(1, 0, "x"), "unexpected_frame")], 4)
    S("s-ws-w-nofeature-close", "worker: CLOSE on a link without WebSockets", "worker",
      wk_ready() + [recv(request(1)), recv(close(1, 1000), "unexpected_frame")], 4)
    S("s-ws-w-nofeature-message-closed-stream", "worker: MESSAGE for a closed stream on a link without "
      "WebSockets is still unexpected_frame, not ignored", "worker",
      wk_ready() + [recv(request(1)), send(response(1, 204, [], 0)), recv(message(1, 0, "x"), "unexpected_frame")], 4)
    S("s-ws-w-nofeature-send", "worker: refuses RESPONSE 101, MESSAGE and CLOSE on a link without WebSockets",
      "worker", wk_ready() + [recv(request(1)), send(response(1, 101, [], 0), "rejected"),
                              send(message(1, 1, "x"), "rejected"), send(message(1, 4, "x"), "rejected"),
                              send(close(1, 1000), "rejected"), send(response(1, 200, [], 0))], 4)
    S("s-ws-gw-nofeature-101", "gateway: RESPONSE 101 on a link without WebSockets", "gateway",
      gw_ready() + [send(request(1)), recv(response(1, 101, [], 0), "unexpected_frame")])
    S("s-ws-gw-nofeature-message", "gateway: MESSAGE on a link without WebSockets", "gateway",
      gw_ready() + [send(request(1)), recv(message(1, 1, "x"), "unexpected_frame")])
    S("s-ws-gw-nofeature-close", "gateway: CLOSE on a link without WebSockets", "gateway",
      gw_ready() + [send(request(1)), recv(close(1, 1000), "unexpected_frame")])
    S("s-ws-gw-nofeature-send", "gateway: refuses REQUEST body=3, MESSAGE and CLOSE on a link without "
      "WebSockets", "gateway",
      gw_ready() + [send(wsq(1), "rejected"), send(request(1)), send(message(1, 0, "x"), "rejected"),
                    send(message(1, 8, "x"), "rejected"), send(close(1, 1000), "rejected"),
                    recv(response(1, 200, [], 0))])
    # messages and credit
    S("s-ws-w-messages-windows", "worker: messages both ways within the windows (request window 16, response "
      "window 8), fragmented messages of each type, CREDIT refilling both", "worker",
      ws_wk() + [recv(wsq(1)), send(acc()), recv(message(1, 3, "0123")), recv(message(1, 1, "4567")),
                 recv(message(1, 2, "abcd")), recv(message(1, 0, "efgh")), send(credit(1, 16)),
                 recv(message(1, 0, "x" * 16)), send(message(1, 2, "ab")), send(message(1, 0, "cdef")),
                 send(message(1, 1, "xy")), send(message(1, 1, "z"), "rejected"), recv(credit(1, 3)),
                 send(message(1, 1, "zzz")), send(message(1, 0, "z"), "rejected")], 4)
    S("s-ws-gw-messages-windows", "gateway: messages both ways within the windows (request window 16, response "
      "window 8), CREDIT refilling both", "gateway",
      ws_gw() + [send(wsq(1)), recv(acc()), send(message(1, 1, "x" * 16)), send(message(1, 1, "y"), "rejected"),
                 recv(credit(1, 4)), send(message(1, 0, "yyyy")), recv(message(1, 3, "abc")),
                 recv(message(1, 1, "defgh")), send(credit(1, 8)), recv(message(1, 0, "12345678"))])
    S("s-ws-w-flow-control", "worker: a MESSAGE beyond the request window (16) is flow_control", "worker",
      ws_wk() + [recv(wsq(1)), send(acc()), recv(message(1, 2, "a" * 10)), recv(message(1, 2, "b" * 6)),
                 recv(message(1, 0, "c"), "flow_control")], 4)
    S("s-ws-gw-flow-control", "gateway: a MESSAGE beyond the response window (8) is flow_control", "gateway",
      ws_gw() + [send(wsq(1)), recv(acc()), recv(message(1, 1, "12345678")), recv(message(1, 1, "9"), "flow_control")])
    S("s-ws-gw-credit-refill", "gateway: CREDIT to the worker refills its message window; one byte more is "
      "flow_control", "gateway",
      ws_gw() + [send(wsq(1)), recv(acc()), recv(message(1, 0, "12345678")), send(credit(1, 3)),
                 recv(message(1, 0, "abc")), recv(message(1, 0, "d"), "flow_control")])
    S("s-ws-w-credit-before-accept", "worker: CREDIT (and LIMIT) before the 101 widen the windows: the request "
      "side of a WebSocket stream counts as open", "worker",
      ws_wk() + [recv(wsq(1)), send(credit(1, 4)), send(limit(1, 4096)), recv(credit(1, 2)), send(acc()),
                 recv(message(1, 0, "x" * 20)), send(message(1, 0, "y" * 10)),
                 send(message(1, 0, "y"), "rejected")], 4)
    S("s-ws-gw-credit-before-accept", "gateway: CREDIT and LIMIT before the 101 apply to the WebSocket stream",
      "gateway",
      ws_gw() + [send(wsq(1)), recv(credit(1, 4)), recv(limit(1, 4096)), send(credit(1, 2)), recv(acc()),
                 send(message(1, 0, "x" * 20)), send(message(1, 0, "x"), "rejected"),
                 recv(message(1, 0, "y" * 10)), recv(message(1, 0, "y"), "flow_control")])
    S("s-ws-w-empty-window-zero", "worker: with both windows used up, empty MESSAGEs are still legal both ways",
      "worker",
      ws_wk() + [recv(wsq(1)), send(acc()), recv(message(1, 0, "a" * 16)), recv(message(1, 1, "")),
                 send(message(1, 0, "b" * 8)), send(message(1, 1, "")), send(message(1, 3, "")),
                 send(message(1, 1, "")), send(message(1, 0, "b"), "rejected"), recv(message(1, 0, "a"), "flow_control")], 4)
    S("s-ws-w-window-zero-hello", "worker: a gateway window of 0 allows only empty MESSAGEs until CREDIT", "worker",
      [send(WSW), recv(hello(window=0, websocket=True)), recv(wsq(1)), send(acc()),
       send(message(1, 0, "x"), "rejected"), send(message(1, 0, "")), recv(credit(1, 1)), send(message(1, 0, "x"))], 4)
    # PING / PONG
    S("s-ws-w-ping", "worker: PING (flags 4) needs no credit and may fall between the pieces of a message; at "
      "most 125 bytes; PONG (flags 8) from the gateway needs no window either", "worker",
      ws_wk() + [recv(wsq(1)), send(acc()), send(message(1, 3, "x" * 8)), send(message(1, 4, "p" * 125)),
                 send(message(1, 4, "p" * 126), "rejected"), send(message(1, 4, "")), recv(message(1, 0, "a" * 16)),
                 recv(message(1, 8, "p" * 125)), recv(message(1, 8, "q" * 200)), recv(credit(1, 1)),
                 send(message(1, 1, "y"))], 4)
    S("s-ws-gw-ping", "gateway: a worker PING uses no window and may fall between pieces; the gateway's PONG "
      "uses none either", "gateway",
      ws_gw() + [send(wsq(1)), recv(acc()), recv(message(1, 2, "12345678")), recv(message(1, 4, "p" * 125)),
                 recv(message(1, 4, "")), send(message(1, 1, "x" * 16)), send(message(1, 8, "p" * 125)),
                 send(message(1, 4, "x"), "rejected"), send(credit(1, 1)), recv(message(1, 0, "9"))])
    S("s-ws-gw-ping-too-long", "gateway: a worker PING with 126 bytes is field_value", "gateway",
      ws_gw() + [send(wsq(1)), recv(acc()), recv(message(1, 4, "p" * 126), "field_value")])
    S("s-ws-gw-recv-pong", "gateway: a PONG (flags 8) from the worker is field_value", "gateway",
      ws_gw() + [send(wsq(1)), recv(acc()), recv(message(1, 8, "p"), "field_value")])
    S("s-ws-w-recv-ping", "worker: a PING (flags 4) from the gateway is field_value", "worker",
      ws_wk() + [recv(wsq(1)), send(acc()), recv(message(1, 4, "p"), "field_value")], 4)
    S("s-ws-w-send-pong", "worker: refuses to send a PONG (flags 8), the gateway's", "worker",
      ws_wk() + [recv(wsq(1)), send(acc()), send(message(1, 8, "p"), "rejected"), send(message(1, 4, "p"))], 4)
    # stream state
    S("s-ws-w-message-before-accept", "worker: MESSAGE before the worker's 101 is stream_state", "worker",
      ws_wk() + [recv(wsq(1)), recv(message(1, 0, "x"), "stream_state")], 4)
    S("s-ws-w-close-before-accept", "worker: CLOSE before the worker's 101 is stream_state", "worker",
      ws_wk() + [recv(wsq(1)), recv(close(1, 1001), "stream_state")], 4)
    S("s-ws-gw-message-before-accept", "gateway: MESSAGE before the 101 is stream_state", "gateway",
      ws_gw() + [send(wsq(1)), recv(message(1, 1, "x"), "stream_state")])
    S("s-ws-gw-close-before-accept", "gateway: CLOSE before the 101 is stream_state", "gateway",
      ws_gw() + [send(wsq(1)), recv(close(1, 1000), "stream_state")])
    S("s-ws-w-send-before-accept", "worker: refuses MESSAGE and CLOSE before its 101; CANCEL from the gateway "
      "before the decision closes the stream", "worker",
      ws_wk() + [recv(wsq(1)), send(message(1, 0, "x"), "rejected"), send(message(1, 4, "x"), "rejected"),
                 send(close(1, 1000), "rejected"), recv(cancel(1, 2)), send(acc(), "rejected"),
                 recv(message(1, 0, "x"), "ignored")], 4)
    S("s-ws-gw-send-before-accept", "gateway: refuses MESSAGE and CLOSE before the 101, may CANCEL", "gateway",
      ws_gw() + [send(wsq(1)), send(message(1, 0, "x"), "rejected"), send(message(1, 8, "x"), "rejected"),
                 send(close(1, 1000), "rejected"), send(cancel(1, 1)), recv(acc(), "ignored"),
                 recv(message(1, 0, "x"), "ignored")])
    S("s-ws-w-refusal", "worker: refusing with 403 and a body: an ordinary response; the stream closes at its "
      "END and later frames are ignored", "worker",
      ws_wk() + [recv(wsq(1)), send(response(1, 403, [["content-type", "text/plain"]], 1)),
                 send(message(1, 0, "x"), "rejected"), send(body(1, "no")), send(end(1)),
                 recv(message(1, 0, "x"), "ignored"), recv(close(1, 1000), "ignored")], 4)
    S("s-ws-gw-refusal", "gateway: a refusal (403, BODY, END) closes the WebSocket stream as a normal stream",
      "gateway",
      ws_gw() + [send(wsq(1)), recv(response(1, 403, [], 1)), recv(body(1, "denied")), recv(end(1)),
                 recv(close(1, 1000), "ignored"), send(message(1, 0, "x"), "rejected")])
    S("s-ws-gw-refusal-then-message", "gateway: after a refusal RESPONSE (body=1) a MESSAGE is stream_state",
      "gateway", ws_gw() + [send(wsq(1)), recv(response(1, 404, [], 1)), recv(message(1, 0, "x"), "stream_state")])
    S("s-ws-gw-refusal-no-body", "gateway: a refusal RESPONSE body=0 closes the stream", "gateway",
      ws_gw() + [send(wsq(1)), recv(response(1, 302, [["location", "/login"]], 0)),
                 recv(message(1, 0, "x"), "ignored")])
    S("s-ws-gw-101-not-websocket", "gateway: a 101 on a stream that is not a WebSocket stream is stream_state",
      "gateway", ws_gw() + [send(request(1)), recv(response(1, 101, [], 0), "stream_state")])
    S("s-ws-gw-101-body", "gateway: a 101 with body=1 is stream_state", "gateway",
      ws_gw() + [send(wsq(1)), recv(response(1, 101, [], 1), "stream_state")])
    S("s-ws-w-send-101-bad", "worker: refuses a 101 on a plain stream and a 101 with body=1", "worker",
      ws_wk() + [recv(request(1)), recv(wsq(2)), send(response(1, 101, [], 0), "rejected"),
                 send(response(2, 101, [], 1), "rejected"), send(response(1, 200, [], 0)), send(acc(2))], 4)
    S("s-ws-gw-body-after-101", "gateway: BODY after the 101 is stream_state", "gateway",
      ws_gw() + [send(wsq(1)), recv(acc()), recv(body(1, "x"), "stream_state")])
    S("s-ws-gw-end-after-101", "gateway: END after the 101 is stream_state", "gateway",
      ws_gw() + [send(wsq(1)), recv(acc()), recv(end(1), "stream_state")])
    S("s-ws-gw-response-after-101", "gateway: a second RESPONSE after the 101 is stream_state", "gateway",
      ws_gw() + [send(wsq(1)), recv(acc()), recv(response(1, 200, [], 0), "stream_state")])
    S("s-ws-w-body-on-websocket", "worker: BODY from the gateway on a WebSocket stream (no request body) is "
      "stream_state", "worker", ws_wk() + [recv(wsq(1)), recv(body(1, ""), "stream_state")], 4)
    S("s-ws-w-end-after-101", "worker: END from the gateway on an accepted WebSocket stream is stream_state",
      "worker", ws_wk() + [recv(wsq(1)), send(acc()), recv(end(1), "stream_state")], 4)
    S("s-ws-w-send-after-101", "worker: refuses BODY, END and RESPONSE after its 101", "worker",
      ws_wk() + [recv(wsq(1)), send(acc()), send(body(1, "x"), "rejected"), send(end(1), "rejected"),
                 send(response(1, 200, [], 0), "rejected"), send(message(1, 0, "x"))], 4)
    S("s-ws-gw-send-body-on-websocket", "gateway: refuses BODY and END on a WebSocket stream", "gateway",
      ws_gw() + [send(wsq(1)), send(body(1, ""), "rejected"), send(end(1), "rejected"), recv(acc()),
                 send(body(1, "x"), "rejected"), send(message(1, 0, "x"))])
    S("s-ws-w-text-bit-changes", "worker: a text piece continued by a binary piece is stream_state", "worker",
      ws_wk() + [recv(wsq(1)), send(acc()), recv(message(1, 3, "a")), recv(message(1, 8, "")),
                 recv(message(1, 0, "b"), "stream_state")], 4)
    S("s-ws-gw-text-bit-changes", "gateway: a binary piece continued by a text piece is stream_state", "gateway",
      ws_gw() + [send(wsq(1)), recv(acc()), recv(message(1, 2, "a")), recv(message(1, 4, "")),
                 recv(message(1, 3, "b"), "stream_state")])
    S("s-ws-w-send-text-bit-changes", "worker: refuses to change the text bit inside a message; a new message "
      "may change it", "worker",
      ws_wk() + [recv(wsq(1)), send(acc()), send(message(1, 2, "a")), send(message(1, 1, "b"), "rejected"),
                 send(message(1, 3, "b"), "rejected"), send(message(1, 4, "")), send(message(1, 0, "b")),
                 send(message(1, 1, "c"))], 4)
    S("s-ws-gw-send-text-bit-changes", "gateway: refuses to change the text bit inside a message", "gateway",
      ws_gw() + [send(wsq(1)), recv(acc()), send(message(1, 3, "a")), send(message(1, 0, "b"), "rejected"),
                 send(message(1, 8, "")), send(message(1, 1, "b")), send(message(1, 0, "c"))])
    # closing
    S("s-ws-w-recv-close", "worker: CLOSE from the gateway closes the stream: later frames are ignored, the "
      "worker sends nothing more", "worker",
      ws_wk() + [recv(wsq(1)), send(acc()), recv(close(1, 1000, "bye")), send(message(1, 0, "x"), "rejected"),
                 send(close(1, 1000), "rejected"), recv(message(1, 0, "late"), "ignored"),
                 recv(close(1, 1000), "ignored"), recv(credit(1, 5), "ignored"), recv(cancel(1, 1), "ignored")], 4)
    S("s-ws-w-send-close", "worker: its CLOSE closes the stream; the gateway's frames in flight are ignored",
      "worker",
      ws_wk() + [recv(wsq(1)), send(acc()), send(message(1, 1, "bye")), send(close(1, 1001, "going away")),
                 recv(message(1, 1, "x"), "ignored"), recv(close(1, 1000), "ignored"),
                 send(message(1, 0, ""), "rejected")], 4)
    S("s-ws-gw-recv-close", "gateway: CLOSE from the worker closes the stream", "gateway",
      ws_gw() + [send(wsq(1)), recv(acc()), recv(close(1, 4000, "app")), send(message(1, 0, "x"), "rejected"),
                 send(close(1, 1000), "rejected"), recv(message(1, 0, "late"), "ignored"),
                 recv(reset(1, 1), "ignored")])
    S("s-ws-gw-send-close", "gateway: its CLOSE (1005: the client sent no code) closes the stream", "gateway",
      ws_gw() + [send(wsq(1)), recv(acc()), send(close(1, 1005)), recv(message(1, 0, "x"), "ignored"),
                 recv(close(1, 1000), "ignored"), send(request(2))])
    S("s-ws-gw-limit", "gateway: LIMIT on a WebSocket stream (before and after the 101) is accepted", "gateway",
      ws_gw() + [send(wsq(1)), recv(limit(1, 1 << 20)), recv(acc()), recv(limit(1, 10)), recv(message(1, 0, "x")),
                 send(message(1, 0, "y"))])
    S("s-ws-w-cancel", "worker: CANCEL on an open WebSocket stream closes it", "worker",
      ws_wk() + [recv(wsq(1)), send(acc()), recv(message(1, 0, "x")), recv(cancel(1, 3, "shutdown")),
                 send(message(1, 0, "y"), "rejected"), recv(message(1, 0, "z"), "ignored")], 4)
    S("s-ws-gw-reset", "gateway: RESET on an open WebSocket stream closes it", "gateway",
      ws_gw() + [send(wsq(1)), recv(acc()), recv(reset(1, 1)), send(message(1, 0, "x"), "rejected"),
                 recv(message(1, 0, "z"), "ignored")])
    S("s-ws-w-drain", "worker: after DRAIN an open WebSocket carries on; no new REQUEST", "worker",
      ws_wk() + [recv(wsq(1)), send(acc()), recv(drain(1000)), recv(message(1, 1, "still")),
                 send(message(1, 1, "here")), send(close(1, 1001)), recv(wsq(2), "unexpected_frame")], 4)
    S("s-ws-w-unused-id", "worker: MESSAGE for an unused stream id is stream_state", "worker",
      ws_wk() + [recv(wsq(1)), send(acc()), recv(message(2, 0, "x"), "stream_state")], 4)
    S("s-ws-gw-max-streams", "gateway: a WebSocket stream counts towards max_streams", "gateway",
      [recv(hello(max_streams=1, window=4, websocket=True)), send(G_HELLO_WS), send(wsq(1)), recv(acc()),
       send(request(2), "rejected"), recv(close(1, 1000)), send(request(2))])


# ---------------------------------------------------------------------------
# Output

def dump(obj):
    """Deterministic JSON: top-level keys one per line, list items one per line."""
    lines = ["{"]
    items = list(obj.items())
    for i, (k, v) in enumerate(items):
        comma = "," if i < len(items) - 1 else ""
        if isinstance(v, list) and v:
            lines.append("  %s: [" % json.dumps(k))
            for j, x in enumerate(v):
                lines.append("    " + json.dumps(x, ensure_ascii=True) + ("," if j < len(v) - 1 else ""))
            lines.append("  ]" + comma)
        else:
            lines.append("  %s: %s%s" % (json.dumps(k), json.dumps(v, ensure_ascii=True), comma))
    lines.append("}")
    return "\n".join(lines) + "\n"


def main():
    build_decode_valid()
    build_decode_noncanonical()
    build_decode_invalid()
    build_sessions()
    names = []
    counters = {name: first for name, first, _ in BLOCKS}
    last = {name: end for name, _, end in BLOCKS}
    for slug, obj in VECTORS:
        if obj["kind"] == "session":
            cat = "session"
        elif obj["error"] is not None:
            cat = "invalid"
        else:
            cat = "valid" if obj["canonical"] else "noncanonical"
        n = counters[cat]
        assert n <= last[cat], ("category block full", cat)
        counters[cat] += 1
        names.append("%03d-%s.json" % (n, slug))
    for old in os.listdir(HERE):
        if re.fullmatch(r"\d{3}-.*\.json", old) and old not in names:
            os.remove(os.path.join(HERE, old))
    for name, (slug, obj) in zip(names, VECTORS):
        obj = dict(obj)
        with open(os.path.join(HERE, name), "w") as fp:
            fp.write(dump(obj))
    kinds = {}
    for _, obj in VECTORS:
        k = obj["kind"] + ("" if obj["kind"] == "session" else
                           (" valid canonical" if obj["canonical"] else
                            (" valid non-canonical" if obj["error"] is None else " invalid")))
        kinds[k] = kinds.get(k, 0) + 1
    print("%d vectors written to %s: %s" % (len(VECTORS), HERE,
                                           ", ".join("%s %d" % kv for kv in sorted(kinds.items()))))


if __name__ == "__main__":
    sys.exit(main())
