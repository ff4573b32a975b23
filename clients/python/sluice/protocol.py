"""Sans-I/O implementation of the sluice worker protocol, version 1.

Nothing here touches a socket, a thread or an event loop: bytes go in, frame
objects come out; method calls go in, bytes come out. The runtimes
(:mod:`sluice._asyncio`, :mod:`sluice._trio`, the WSGI adapter) do the I/O.
That keeps the wire logic testable against ``protocol/vectors/`` without any
network, and lets every runtime share one implementation of credit
accounting and the stream state machine (the h11/h2 design).

Layers, from the bottom up:

* :class:`FrameDecoder` turns a byte stream into validated frame objects
  (:class:`Hello`, :class:`Request`, ...), enforcing PROTOCOL.md sections 2-3
  and their error precedence.
* :func:`encode` (and the fast helpers :func:`encode_response`,
  :func:`encode_body_head`, ...) produce the canonical bytes of a frame.
* :class:`Link` is the link/stream state machine of PROTOCOL.md sections 4-7
  for either role, with per-stream windows.
* :class:`WorkerConnection` glues those together for a worker: it is the
  object a runtime uses (``receive_data`` -> events, ``respond``/``send_body``
  /``end`` -> bytes in ``data_to_send()``), including CREDIT batching and
  BODY splitting.
"""

from __future__ import annotations

import os
import struct
from typing import Any, Iterable, Sequence

import msgpack

__all__ = [
    "PROTOCOL_VERSION", "HTTP_VERSIONS", "DEFAULT_MAX_FRAME", "MAX_WINDOW", "MAX_ID",
    "ERROR_CODES", "ERROR_NAMES", "CANCEL_REASONS", "RESET_CODES",
    "ProtocolError", "RemoteProtocolError", "LocalProtocolError",
    "Frame", "Hello", "Request", "Response", "Body", "End", "Credit", "Cancel",
    "Reset", "Limit", "Ping", "Pong", "Drain", "Retire", "Error", "Message", "Close",
    "FRAME_TYPES", "FrameDecoder", "encode", "encode_response",
    "encode_body_head", "encode_end", "encode_credit", "Link",
    "WorkerConnection", "DEFAULT_WINDOW", "DEFAULT_BODY_BUFFER", "initial_window",
]

PROTOCOL_VERSION = 1
# REQUEST version: the HTTP version times ten (PROTOCOL.md 3.2); 20 is HTTP/2.
HTTP_VERSIONS = frozenset((10, 11, 20))
DEFAULT_MAX_FRAME = 1 << 20
MIN_MAX_FRAME = 16384
MAX_MAX_FRAME = (1 << 24) - 1
MAX_HELLO = 16384
MAX_WINDOW = (1 << 31) - 1
MAX_ID = (1 << 53) - 1
MAX_STREAMS = 65535
MAX_HEADERS = 1024
MAX_DEPTH = 8

#: Link error codes (PROTOCOL.md section 8), name -> wire code.
ERROR_CODES: dict[str, int] = {
    "malformed": 1, "frame_size": 2, "unknown_type": 3, "field_type": 4,
    "field_value": 5, "too_many_headers": 6, "unexpected_frame": 7,
    "stream_state": 8, "flow_control": 9, "too_many_streams": 10,
    "version": 11, "auth": 12, "truncated": 13, "internal": 14, "timeout": 15,
}
#: Wire code -> name; unknown codes read as ``internal`` via :func:`error_name`.
ERROR_NAMES: dict[int, str] = {v: k for k, v in ERROR_CODES.items()}

#: CANCEL reasons (section 3.7), code -> name. Unknown codes mean ``internal``.
CANCEL_REASONS: dict[int, str] = {
    1: "client_closed", 2: "timeout", 3: "shutdown", 4: "body_too_large",
    5: "bad_body", 6: "body_timeout", 7: "invalid_response", 8: "internal",
}
#: RESET codes (section 3.8), name -> code.
RESET_CODES: dict[str, int] = {"internal": 1, "refused": 2, "overloaded": 3}

BODY_NONE, BODY_FOLLOWS, BODY_ON_CREDIT, BODY_WEBSOCKET = 0, 1, 2, 3

# MESSAGE flags (PROTOCOL.md 3.14): bit 0 text, bit 1 more; 4 PING (worker ->
# gateway), 8 PONG (gateway -> worker).
MSG_TEXT, MSG_MORE, MSG_PING, MSG_PONG = 1, 2, 4, 8
MESSAGE_FLAGS = frozenset((0, 1, 2, 3, 4, 8))
MAX_PING = 125
MIN_CLOSE_CODE, MAX_CLOSE_CODE = 1000, 4999


def error_name(code: int) -> str:
    """Name of a link error code; unknown codes are reported as ``internal``."""
    return ERROR_NAMES.get(code, "internal")


class ProtocolError(Exception):
    """A violation of the protocol, named as in PROTOCOL.md section 8.

    ``name`` is the error name (``"flow_control"``...) and ``code`` its wire
    code, so that every implementation reports the same thing for the same
    input (the test vectors compare names).
    """

    def __init__(self, name: str, detail: str = "") -> None:
        self.name = name
        self.code = ERROR_CODES.get(name, ERROR_CODES["internal"])
        self.detail = detail
        super().__init__(f"{name}: {detail}" if detail else name)


class RemoteProtocolError(ProtocolError):
    """The peer broke the protocol: the link is failed (send ERROR, close).

    ``frames`` holds the frames a decoder produced from the same input before
    it hit the error, in order, so that nothing decoded is lost.
    """

    frames: list["Frame"]

    def __init__(self, name: str, detail: str = "", frames: list["Frame"] | None = None) -> None:
        super().__init__(name, detail)
        self.frames = frames or []


class LocalProtocolError(ProtocolError):
    """The caller asked to send a frame the protocol forbids right now.

    The link state is unchanged and the link stays usable: this is the
    ``rejected`` outcome of the session vectors.
    """

    def __init__(self, detail: str) -> None:
        super().__init__("rejected", detail)


# ---------------------------------------------------------------------------
# Frames

class Frame:
    """Base of the 16 frame types. ``type`` is the wire code, ``stream_id`` 0
    for link frames. Frames compare equal field by field (for tests)."""

    __slots__ = ("stream_id",)
    type: int = 0
    name: str = ""
    fields: tuple[str, ...] = ()

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self.stream_id == other.stream_id and all(  # type: ignore[attr-defined]
            getattr(self, f) == getattr(other, f) for f in self.fields)

    def __repr__(self) -> str:
        inner = ", ".join(f"{f}={getattr(self, f)!r}" for f in self.fields)
        return f"{self.name}(stream_id={self.stream_id}{', ' if inner else ''}{inner})"


class Hello(Frame):
    """HELLO: protocol version and the sender's settings (known keys only)."""
    __slots__ = ("version", "settings")
    type, name, fields = 1, "HELLO", ("version", "settings")

    def __init__(self, version: int = PROTOCOL_VERSION, settings: dict[str, Any] | None = None,
                 stream_id: int = 0) -> None:
        self.stream_id = stream_id
        self.version = version
        self.settings = settings if settings is not None else {}


class Request(Frame):
    """REQUEST: the head of an HTTP request; opens a stream.

    ``method``/``target`` and header names/values are ``bytes``; ``headers``
    is a list of ``[name, value]`` pairs in wire order (names lower-cased by
    the gateway). ``client``/``server`` are ``(host: str, port: int)``.
    ``version`` is the HTTP version times ten: 10, 11, or 20 (HTTP/2).
    """
    __slots__ = ("method", "target", "version", "headers", "client", "server", "scheme", "body")
    type, name = 2, "REQUEST"
    fields = ("method", "target", "version", "headers", "client", "server", "scheme", "body")

    def __init__(self, stream_id: int, method: bytes, target: bytes, version: int = 11,
                 headers: list | None = None, client: tuple = ("", 0), server: tuple = ("", 0),
                 scheme: str = "http", body: int = 0) -> None:
        self.stream_id = stream_id
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers if headers is not None else []
        self.client = client
        self.server = server
        self.scheme = scheme
        self.body = body


class Response(Frame):
    """RESPONSE: status and headers; ``body`` 1 when BODY/END follow."""
    __slots__ = ("status", "headers", "body")
    type, name, fields = 3, "RESPONSE", ("status", "headers", "body")

    def __init__(self, stream_id: int, status: int, headers: list | None = None, body: int = 1) -> None:
        self.stream_id = stream_id
        self.status = status
        self.headers = headers if headers is not None else []
        self.body = body


class Body(Frame):
    """BODY: a piece of the request or response body."""
    __slots__ = ("data",)
    type, name, fields = 4, "BODY", ("data",)

    def __init__(self, stream_id: int, data: bytes) -> None:
        self.stream_id = stream_id
        self.data = data


class End(Frame):
    """END: the sender's side of the stream is complete (optional trailers)."""
    __slots__ = ("trailers",)
    type, name, fields = 5, "END", ("trailers",)

    def __init__(self, stream_id: int, trailers: list | None = None) -> None:
        self.stream_id = stream_id
        self.trailers = trailers or None


class Credit(Frame):
    """CREDIT: ``increment`` more body bytes allowed towards the sender."""
    __slots__ = ("increment",)
    type, name, fields = 6, "CREDIT", ("increment",)

    def __init__(self, stream_id: int, increment: int) -> None:
        self.stream_id = stream_id
        self.increment = increment


class Cancel(Frame):
    """CANCEL (gateway -> worker): the stream is abandoned, with a reason."""
    __slots__ = ("reason", "message")
    type, name, fields = 7, "CANCEL", ("reason", "message")

    def __init__(self, stream_id: int, reason: int, message: str | None = None) -> None:
        self.stream_id = stream_id
        self.reason = reason
        self.message = message or None

    @property
    def reason_name(self) -> str:
        return CANCEL_REASONS.get(self.reason, "internal")


class Reset(Frame):
    """RESET (worker -> gateway): the worker abandons the stream."""
    __slots__ = ("code", "message")
    type, name, fields = 8, "RESET", ("code", "message")

    def __init__(self, stream_id: int, code: int, message: str | None = None) -> None:
        self.stream_id = stream_id
        self.code = code
        self.message = message or None


class Limit(Frame):
    """LIMIT (worker -> gateway): the stream's request-body size limit."""
    __slots__ = ("max_body",)
    type, name, fields = 9, "LIMIT", ("max_body",)

    def __init__(self, stream_id: int, max_body: int) -> None:
        self.stream_id = stream_id
        self.max_body = max_body


class Ping(Frame):
    __slots__ = ("opaque",)
    type, name, fields = 10, "PING", ("opaque",)

    def __init__(self, opaque: int, stream_id: int = 0) -> None:
        self.stream_id = stream_id
        self.opaque = opaque


class Pong(Frame):
    __slots__ = ("opaque",)
    type, name, fields = 11, "PONG", ("opaque",)

    def __init__(self, opaque: int, stream_id: int = 0) -> None:
        self.stream_id = stream_id
        self.opaque = opaque


class Drain(Frame):
    """DRAIN (gateway -> worker): finish open streams, take no new ones."""
    __slots__ = ("timeout_ms",)
    type, name, fields = 12, "DRAIN", ("timeout_ms",)

    def __init__(self, timeout_ms: int, stream_id: int = 0) -> None:
        self.stream_id = stream_id
        self.timeout_ms = timeout_ms


class Retire(Frame):
    """RETIRE (worker -> gateway): please replace me."""
    __slots__ = ("reason",)
    type, name, fields = 13, "RETIRE", ("reason",)

    def __init__(self, reason: str | None = None, stream_id: int = 0) -> None:
        self.stream_id = stream_id
        self.reason = reason or None


class Error(Frame):
    """ERROR: a link error; the sender closes the link."""
    __slots__ = ("code", "message")
    type, name, fields = 14, "ERROR", ("code", "message")

    def __init__(self, code: int, message: str = "", stream_id: int = 0) -> None:
        self.stream_id = stream_id
        self.code = code
        self.message = message

    @property
    def error_name(self) -> str:
        return error_name(self.code)


class Message(Frame):
    """MESSAGE (WebSocket streams): a piece of a message, or a ping/pong.
    ``flags``: bit 0 text, bit 1 more pieces follow; 4 PING, 8 PONG."""
    __slots__ = ("flags", "data")
    type, name, fields = 15, "MESSAGE", ("flags", "data")

    def __init__(self, stream_id: int, flags: int, data: bytes = b"") -> None:
        self.stream_id = stream_id
        self.flags = flags
        self.data = data


class Close(Frame):
    """CLOSE (WebSocket streams): the WebSocket is closed, with a close code
    (1000 .. 4999) and an optional reason; closes the stream."""
    __slots__ = ("code", "reason")
    type, name, fields = 16, "CLOSE", ("code", "reason")

    def __init__(self, stream_id: int, code: int, reason: str | None = None) -> None:
        self.stream_id = stream_id
        self.code = code
        self.reason = reason or None


FRAME_TYPES: dict[int, type[Frame]] = {
    c.type: c for c in (Hello, Request, Response, Body, End, Credit, Cancel, Reset, Limit,
                        Ping, Pong, Drain, Retire, Error, Message, Close)
}
FRAME_BY_NAME: dict[str, type[Frame]] = {c.name: c for c in FRAME_TYPES.values()}
_LINK_FRAMES = frozenset((1, 10, 11, 12, 13, 14))

# ---------------------------------------------------------------------------
# Decoding


class _Map(list):
    """A decoded MessagePack map, kept as its list of (key, value) pairs.

    Maps only appear in HELLO; keeping pairs (instead of a dict) tolerates
    unhashable keys, keeps "the last duplicate wins" explicit, and lets the
    validator tell a map from an array."""
    __slots__ = ()


def _depth(v: Any, d: int = 1) -> int:
    """Nesting depth of a decoded value (containers count, scalars do not)."""
    t = type(v)
    if t is list:
        return max([_depth(x, d + 1) for x in v], default=d)
    if t is _Map:
        m = d
        for k, x in v:
            m = max(m, _depth(k, d + 1), _depth(x, d + 1))
        return m
    return d - 1


def _too_deep(values: Iterable[Any], base: int) -> bool:
    for v in values:
        if _depth(v, base) > MAX_DEPTH:
            return True
    return False


def _as_bytes(v: Any) -> bytes:
    """A ``bytes`` field: bin (bytes) or str taken as its raw bytes."""
    t = type(v)
    if t is bytes:
        return v
    if t is str:
        return v.encode("utf-8", "surrogateescape")
    raise _FieldType


class _FieldType(Exception):
    pass


class _FieldValue(Exception):
    pass


class _TooMany(Exception):
    pass


def _uint(v: Any, hi: int = MAX_ID) -> int:
    if type(v) is not int:
        raise _FieldType
    if v < 0 or v > hi:
        raise _FieldValue
    return v


def _text(v: Any) -> str:
    if type(v) is not str:
        raise _FieldType
    return v


def _headers(v: Any) -> list:
    """Validate a header list in place; str names/values become bytes."""
    if type(v) is not list:
        raise _FieldType
    # PROTOCOL.md 2: the entry count first, then each entry in order, its
    # name (type, then non-empty) before its value.
    if len(v) > MAX_HEADERS:
        raise _TooMany
    for e in v:
        if type(e) is not list or len(e) != 2:
            raise _FieldType
        n, val = e
        if type(n) is not bytes:
            e[0] = n = _as_bytes(n)
        if not n:
            raise _FieldValue
        if type(val) is not bytes:
            e[1] = _as_bytes(val)
    return v


def _address(v: Any) -> tuple:
    if type(v) is not list or len(v) != 2:
        raise _FieldType
    host, port = v
    if type(host) is not str or type(port) is not int:
        raise _FieldType
    if port < 0 or port > 65535:
        raise _FieldValue
    return (host, port)


_HELLO_KEYS: dict[str, tuple[str, int, int]] = {
    # key: (kind, lo, hi)
    "pid": ("uint", 0, MAX_ID),
    "lib": ("text", 0, 0),
    "max_streams": ("uint", 1, MAX_STREAMS),
    "window": ("uint", 0, MAX_WINDOW),
    "max_frame": ("uint", MIN_MAX_FRAME, MAX_MAX_FRAME),
    "token": ("text", 0, 0),
    "worker_id": ("uint", 0, MAX_ID),
    "pool": ("text", 0, 0),
    "server": ("text", 0, 0),
    "websocket": ("bool", 0, 0),
}
HELLO_KEY_ORDER = tuple(_HELLO_KEYS)


def _settings(v: Any) -> dict[str, Any]:
    if type(v) is not _Map:
        raise _FieldType
    out: dict[str, Any] = {}
    for k, val in v:
        if type(k) is not str:
            continue
        spec = _HELLO_KEYS.get(k)
        if spec is None:
            continue
        kind, lo, hi = spec
        if kind == "uint":
            if type(val) is not int:
                raise _FieldType
            if val < lo or val > hi:
                raise _FieldValue
        elif kind == "bool":
            if type(val) is not bool:
                raise _FieldType
        elif type(val) is not str:
            raise _FieldType
        out[k] = val
    # canonical order, so that re-encoding is byte-exact
    return {k: out[k] for k in HELLO_KEY_ORDER if k in out}


def _opt_text(a: list, i: int) -> str | None:
    if len(a) <= i:
        return None
    return _text(a[i]) or None


def _build(t: int, sid: int, a: list) -> tuple[Frame, int]:
    """Validate the fields of frame ``a`` (type t, stream sid) and build it.

    Returns the frame and the number of array elements it used (the rest are
    ignored trailing elements). Raises _FieldType/_FieldValue/_TooMany or
    IndexError (a missing field: field_type)."""
    if t == 4:
        return Body(sid, _as_bytes(a[2])), 3
    if t == 2:
        if len(a) >= 10:
            # fast path: the canonical shapes the gateway sends
            m, tg, ver, h, c, s, sc, b = a[2:10]
            if (type(m) is bytes and m and type(tg) is bytes and tg and type(ver) is int
                    and ver in HTTP_VERSIONS and type(h) is list and len(h) <= MAX_HEADERS
                    and type(c) is list and len(c) == 2 and type(c[0]) is str and type(c[1]) is int
                    and 0 <= c[1] <= 65535
                    and type(s) is list and len(s) == 2 and type(s[0]) is str and type(s[1]) is int
                    and 0 <= s[1] <= 65535 and type(sc) is str and type(b) is int and 0 <= b <= 3):
                for e in h:
                    if type(e) is not list or len(e) != 2 or type(e[0]) is not bytes \
                            or type(e[1]) is not bytes or not e[0]:
                        break
                else:
                    return Request(sid, m, tg, ver, h, (c[0], c[1]), (s[0], s[1]), sc, b), 10
        m = _as_bytes(a[2])
        if not m:
            raise _FieldValue
        tg = _as_bytes(a[3])
        if not tg:
            raise _FieldValue
        ver = _uint(a[4])
        if ver not in HTTP_VERSIONS:
            raise _FieldValue
        h = _headers(a[5])
        c = _address(a[6])
        s = _address(a[7])
        sc = _text(a[8])
        b = _uint(a[9], 3)
        return Request(sid, m, tg, ver, h, c, s, sc, b), 10
    if t == 5:
        if len(a) > 2:
            tr = _headers(a[2])
            return End(sid, tr or None), 3
        return End(sid), 2
    if t == 6:
        n = _uint(a[2], MAX_WINDOW)
        if n == 0:
            raise _FieldValue
        return Credit(sid, n), 3
    if t == 3:
        st = _uint(a[2])
        if (st < 200 or st > 599) and st != 101:
            raise _FieldValue
        h = _headers(a[3])
        b = _uint(a[4], 1)
        return Response(sid, st, h, b), 5
    if t == 7:
        r = _uint(a[2])
        return Cancel(sid, r, _opt_text(a, 3)), 4
    if t == 8:
        c = _uint(a[2])
        return Reset(sid, c, _opt_text(a, 3)), 4
    if t == 9:
        return Limit(sid, _uint(a[2])), 3
    if t == 10:
        return Ping(_uint(a[2])), 3
    if t == 11:
        return Pong(_uint(a[2])), 3
    if t == 12:
        return Drain(_uint(a[2])), 3
    if t == 13:
        return Retire(_opt_text(a, 2)), 3
    if t == 14:
        code = _uint(a[2])
        return Error(code, _text(a[3])), 4
    if t == 15:
        fl = _uint(a[2])
        if fl not in MESSAGE_FLAGS:
            raise _FieldValue
        return Message(sid, fl, _as_bytes(a[3])), 4
    if t == 16:
        code = _uint(a[2])
        if code < MIN_CLOSE_CODE or code > MAX_CLOSE_CODE:
            raise _FieldValue
        return Close(sid, code, _opt_text(a, 3)), 4
    if t == 1:
        ver = _uint(a[2])
        return Hello(ver, _settings(a[3])), 4
    raise AssertionError(t)  # pragma: no cover


_LEN = struct.Struct(">I")
_unpackb = msgpack.unpackb


def decode_payload(payload: Any) -> Frame:
    """Decode and validate one frame payload (without its length prefix).

    Raises :class:`RemoteProtocolError` named per PROTOCOL.md section 2, with
    its precedence: malformed, unknown_type, stream id, fields in order."""
    try:
        a = _unpackb(payload, raw=False, unicode_errors="surrogateescape",
                     object_pairs_hook=_Map, strict_map_key=False)
    except Exception as exc:  # msgpack raises several types for bad input
        raise RemoteProtocolError("malformed", str(exc) or type(exc).__name__) from None
    return _decode_array(a)


def _decode_array(a: Any) -> Frame:
    """decode_payload after the msgpack step."""
    if type(a) is not list or len(a) < 2:
        raise RemoteProtocolError("malformed", "payload is not an array of at least 2 elements")
    t = a[0]
    if type(t) is not int or t < 1 or t > 16:
        if _too_deep(a, 2):
            raise RemoteProtocolError("malformed", "nesting deeper than 8")
        raise RemoteProtocolError("unknown_type", f"frame type {t!r}")
    sid = a[1]
    try:
        if type(sid) is not int:
            raise _FieldType
        if t in _LINK_FRAMES:
            if sid != 0:
                raise _FieldValue
        elif sid < 1 or sid > MAX_ID:
            raise _FieldValue
        frame, used = _build(t, sid, a)
    except (_FieldType, _FieldValue, _TooMany, IndexError) as exc:
        if _too_deep(a, 2):
            raise RemoteProtocolError("malformed", "nesting deeper than 8") from None
        name = ("field_value" if type(exc) is _FieldValue else
                "too_many_headers" if type(exc) is _TooMany else "field_type")
        raise RemoteProtocolError(name, f"in {FRAME_TYPES[t].name} frame") from None
    if (len(a) > used or t == 1) and _too_deep(a, 2):
        raise RemoteProtocolError("malformed", "nesting deeper than 8")
    return frame


class FrameDecoder:
    """Incremental decoder: ``feed(bytes)`` returns the complete frames.

    The 4-byte length of each frame is checked against ``max_frame`` as soon
    as it is known, before any payload is buffered. Split points in the input
    never change the outcome. On an error, :class:`RemoteProtocolError` is
    raised with ``frames`` holding the frames decoded from this call before
    it; the decoder is then unusable (the link is failed)."""

    __slots__ = ("max_frame", "_buf", "_failed")

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self.max_frame = max_frame
        self._buf = bytearray()
        self._failed = False

    def feed(self, data: bytes) -> list[Frame]:
        if self._failed:
            raise RemoteProtocolError("internal", "decoder already failed")
        buf = self._buf
        if buf:
            buf += data
            src: Any = buf
        else:
            src = data
        n = len(src)
        out: list[Frame] = []
        pos = 0
        max_frame = self.max_frame
        unpack_from = _LEN.unpack_from
        unpackb = _unpackb
        try:
            with memoryview(src) as mv:
                while n - pos >= 4:
                    (length,) = unpack_from(src, pos)
                    if length == 0 or length > max_frame:
                        raise RemoteProtocolError("frame_size", f"frame length {length}")
                    end = pos + 4 + length
                    if end > n:
                        break
                    try:
                        a = unpackb(mv[pos + 4:end], raw=False, unicode_errors="surrogateescape",
                                    object_pairs_hook=_Map, strict_map_key=False)
                    except Exception:
                        decode_payload(mv[pos + 4:end])  # raises "malformed"
                        raise  # pragma: no cover
                    pos = end
                    if type(a) is list and len(a) == 10 and a[0] == 2:
                        # REQUEST in the gateway's canonical shape, inline:
                        # the checks of _decode_array and _build's fast path
                        t, sid, m, tg, ver, h, c, s, sc, b = a
                        if (type(t) is int and type(sid) is int and 0 < sid <= MAX_ID
                                and type(m) is bytes and m and type(tg) is bytes and tg
                                and type(ver) is int and ver in HTTP_VERSIONS
                                and type(h) is list and len(h) <= MAX_HEADERS
                                and type(c) is list and len(c) == 2 and type(c[0]) is str
                                and type(c[1]) is int and 0 <= c[1] <= 65535
                                and type(s) is list and len(s) == 2 and type(s[0]) is str
                                and type(s[1]) is int and 0 <= s[1] <= 65535
                                and type(sc) is str and type(b) is int and 0 <= b <= 3):
                            for e in h:
                                if type(e) is not list or len(e) != 2 or type(e[0]) is not bytes \
                                        or type(e[1]) is not bytes or not e[0]:
                                    break
                            else:
                                out.append(Request(sid, m, tg, ver, h, (c[0], c[1]), (s[0], s[1]), sc, b))
                                continue
                    out.append(_decode_array(a))
        except RemoteProtocolError as exc:
            self._failed = True
            exc.frames = out
            raise
        if buf:
            del buf[:pos]
        elif pos < n:
            buf += src[pos:]
        return out

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete frame held back (0 between frames)."""
        return len(self._buf)

    def check_eof(self) -> None:
        """At the end of the byte stream: raise ``truncated`` if inside a frame."""
        if self._buf:
            raise RemoteProtocolError("truncated", f"{len(self._buf)} bytes of an incomplete frame")


# ---------------------------------------------------------------------------
# Encoding

_packer = msgpack.Packer(use_bin_type=True, unicode_errors="surrogateescape")
_pack = _packer.pack


_SMALL = [bytes((i,)) for i in range(128)] + [b"\xcc" + bytes((i,)) for i in range(128, 256)]


def _pack_uint(n: int) -> bytes:
    """Canonical (shortest unsigned) encoding of a non-negative integer."""
    if n < 0x100:
        return _SMALL[n]
    if n < 0x100:
        return b"\xcc" + bytes((n,))
    if n < 0x10000:
        return b"\xcd" + n.to_bytes(2, "big")
    if n < 0x100000000:
        return b"\xce" + n.to_bytes(4, "big")
    return b"\xcf" + n.to_bytes(8, "big")


_STATUS = {c: (b"\xcc" + bytes((c,)) if c < 256 else b"\xcd" + c.to_bytes(2, "big")) for c in range(200, 600)}


def _bin_head(n: int) -> bytes:
    if n < 0x100:
        return b"\xc4" + bytes((n,))
    if n < 0x10000:
        return b"\xc5" + n.to_bytes(2, "big")
    return b"\xc6" + n.to_bytes(4, "big")


_SID32 = struct.Struct(">BI").pack
_RF_CACHE_BODY = 1024  # bodies up to this size are part of the respond_full cache key
_rf_cache: dict = {}


def _rf_parts(ls: int, status: int, ph: Any, body: Any) -> tuple[bytes, bytes, bytes | None]:
    """RESPONSE+BODY+END for a stream id of ``ls`` encoded bytes, as the
    pieces that go before each copy of the id (WorkerConnection.respond_full);
    for an empty body RESPONSE+END, two pieces and None."""
    st = _STATUS.get(status) or _pack_uint(status)
    pack = _LEN.pack
    n = len(body)
    head = pack(len(ph) + len(st) + ls + 3) + b"\x95\x03"
    if n:
        return (head, st + ph + b"\x01" + pack(ls + n + (4 if n < 256 else 5 if n < 65536 else 7)) + b"\x93\x04",
                _bin_head(n) + body + pack(ls + 2) + b"\x92\x05")
    return head, st + ph + b"\x01" + pack(ls + 2) + b"\x92\x05", None


def _frame(payload: bytes) -> bytes:
    return _LEN.pack(len(payload)) + payload


def _wire_headers(headers: Sequence) -> list:
    return [[_to_bytes(n), _to_bytes(v)] for n, v in headers]


def _to_bytes(v: Any) -> bytes:
    if type(v) is bytes:
        return v
    if isinstance(v, str):
        return v.encode("latin-1")
    return bytes(v)


def frame_fields(f: Frame) -> list:
    """The wire array ``[type, stream_id, field...]`` of a frame (canonical:
    optional empty fields omitted)."""
    t = f.type
    a: list = [t, f.stream_id]
    if t == 1:
        s = f.settings  # type: ignore[attr-defined]
        # canonical: every key in order, websocket only when true
        a += [f.version, {k: s[k] for k in HELLO_KEY_ORDER  # type: ignore[attr-defined]
                          if k in s and (k != "websocket" or s[k] is True)}]
    elif t == 2:
        r: Request = f  # type: ignore[assignment]
        a += [_to_bytes(r.method), _to_bytes(r.target), r.version, _wire_headers(r.headers),
              list(r.client), list(r.server), r.scheme, r.body]
    elif t == 3:
        a += [f.status, _wire_headers(f.headers), f.body]  # type: ignore[attr-defined]
    elif t == 4:
        a.append(_to_bytes(f.data))  # type: ignore[attr-defined]
    elif t == 5:
        if f.trailers:  # type: ignore[attr-defined]
            a.append(_wire_headers(f.trailers))  # type: ignore[attr-defined]
    elif t == 6:
        a.append(f.increment)  # type: ignore[attr-defined]
    elif t in (7, 8):
        a.append(f.reason if t == 7 else f.code)  # type: ignore[attr-defined]
        if f.message:  # type: ignore[attr-defined]
            a.append(f.message)  # type: ignore[attr-defined]
    elif t == 9:
        a.append(f.max_body)  # type: ignore[attr-defined]
    elif t in (10, 11):
        a.append(f.opaque)  # type: ignore[attr-defined]
    elif t == 12:
        a.append(f.timeout_ms)  # type: ignore[attr-defined]
    elif t == 13:
        if f.reason:  # type: ignore[attr-defined]
            a.append(f.reason)  # type: ignore[attr-defined]
    elif t == 14:
        a += [f.code, f.message]  # type: ignore[attr-defined]
    elif t == 15:
        a += [f.flags, _to_bytes(f.data)]  # type: ignore[attr-defined]
    elif t == 16:
        a.append(f.code)  # type: ignore[attr-defined]
        if f.reason:  # type: ignore[attr-defined]
            a.append(f.reason)  # type: ignore[attr-defined]
    return a


def encode(f: Frame) -> bytes:
    """The canonical wire bytes of a frame, length prefix included."""
    if f.type == 4:
        data = _to_bytes(f.data)  # type: ignore[attr-defined]
        return encode_body_head(f.stream_id, len(data)) + data
    return _frame(_pack(frame_fields(f)))


def encode_response(sid: int, status: int, packed_headers: bytes, body: bool) -> bytes:
    """RESPONSE with headers already packed (``msgpack`` array bytes).

    The runtimes cache ``packed_headers`` for repeated header lists, so a
    hello-world response costs a few concatenations."""
    p = b"\x95\x03" + _pack_uint(sid) + _pack_uint(status) + packed_headers + (b"\x01" if body else b"\x00")
    return _LEN.pack(len(p)) + p


def pack_headers(headers: Sequence) -> bytes:
    """Canonical msgpack encoding of a header list ([name, value] pairs;
    str is encoded as latin-1, as HTTP field values are bytes)."""
    return _pack(_wire_headers(headers))


def encode_body_head(sid: int, n: int) -> bytes:
    """Length prefix and array head of a BODY frame carrying ``n`` bytes;
    the data follows as is (no copy of the body is made)."""
    p = b"\x93\x04" + _pack_uint(sid) + _bin_head(n)
    return _LEN.pack(len(p) + n) + p


def encode_end(sid: int, packed_trailers: bytes | None = None) -> bytes:
    if packed_trailers:
        p = b"\x93\x05" + _pack_uint(sid) + packed_trailers
    else:
        p = b"\x92\x05" + _pack_uint(sid)
    return _LEN.pack(len(p)) + p


def encode_credit(sid: int, n: int) -> bytes:
    p = b"\x93\x06" + _pack_uint(sid) + _pack_uint(n)
    return _LEN.pack(len(p)) + p


def encode_message_head(sid: int, flags: int, n: int) -> bytes:
    """Length prefix and array head of a MESSAGE frame carrying ``n`` bytes
    (the data follows as is, like :func:`encode_body_head`)."""
    p = b"\x94\x0f" + _pack_uint(sid) + _SMALL[flags] + _bin_head(n)
    return _LEN.pack(len(p) + n) + p


# ---------------------------------------------------------------------------
# Link state machine

REQ_OPEN, REQ_ENDED = 0, 1
RESP_WAITING, RESP_SENDING, RESP_ENDED = 0, 1, 2
# a WebSocket stream after RESPONSE 101: MESSAGE both ways until CLOSE
RESP_WEBSOCKET = 3

_GATEWAY_ONLY = frozenset((2, 7, 12))
_WORKER_ONLY = frozenset((3, 8, 9, 13))

STATE_HANDSHAKE, STATE_READY, STATE_DRAINING, STATE_FAILED = "handshake", "ready", "draining", "failed"


class StreamState:
    """One open stream: its two sides and two windows (from this side's
    point of view: ``send_window`` is what we may still send)."""

    __slots__ = ("id", "req", "resp", "body_mode", "send_window", "recv_window", "limit",
                 "send_text", "recv_text")

    def __init__(self, sid: int) -> None:
        self.id = sid
        self.req = REQ_OPEN
        self.resp = RESP_WAITING
        self.body_mode = 0
        self.send_window = 0
        self.recv_window = 0
        self.limit: int | None = None
        # WebSocket streams: the text bit of the message being sent/received
        # (None between messages), as every piece of a message carries it
        self.send_text: int | None = None
        self.recv_text: int | None = None


class Link:
    """The link state machine of PROTOCOL.md sections 4-7, for one role.

    ``recv(frame)`` applies a decoded frame from the peer: it returns True if
    the frame was applied, False if it was legal but ignored (a late frame for
    a closed stream), and raises :class:`RemoteProtocolError` for a link
    error (the link is then failed). ``send(frame)`` checks and applies a
    frame we are about to send, raising :class:`LocalProtocolError` (state
    unchanged) when the protocol forbids it.
    """

    __slots__ = ("role", "state", "max_streams", "local_hello", "peer_hello", "retiring",
                 "drained", "highest", "streams", "_limit", "_wwin", "_gwin", "websocket")

    def __init__(self, role: str, max_streams: int = MAX_STREAMS) -> None:
        if role not in ("worker", "gateway"):
            raise ValueError(f"role must be 'worker' or 'gateway', not {role!r}")
        self.role = role
        self.state = STATE_HANDSHAKE
        self.max_streams = max_streams
        self.local_hello: Hello | None = None
        self.peer_hello: Hello | None = None
        self.retiring = False
        self.drained = False
        self.highest = 0
        self.streams: dict[int, StreamState] = {}
        self._limit = max_streams
        self._wwin = self._gwin = 0
        self.websocket = False

    def _handshake_done(self) -> None:
        """Cache what every stream needs from the two HELLOs."""
        self._limit = self.stream_limit()
        self._wwin = self._whello().settings["window"]
        self._gwin = self._ghello().settings["window"]
        # WebSocket streams only when both HELLOs announced them (5.2)
        self.websocket = (self.local_hello.settings.get("websocket") is True  # type: ignore[union-attr]
                          and self.peer_hello.settings.get("websocket") is True)  # type: ignore[union-attr]

    # -- helpers -------------------------------------------------------------
    def _whello(self) -> Hello:
        return (self.local_hello if self.role == "worker" else self.peer_hello)  # type: ignore[return-value]

    def _ghello(self) -> Hello:
        return (self.local_hello if self.role == "gateway" else self.peer_hello)  # type: ignore[return-value]

    def stream_limit(self) -> int:
        """Most streams open at once: the smaller of the local cap and the
        ``max_streams`` of both HELLOs."""
        m = self.max_streams
        for h in (self.local_hello, self.peer_hello):
            if h is not None:
                v = h.settings.get("max_streams")
                if v is not None and v < m:
                    m = v
        return m

    @property
    def ready(self) -> bool:
        return self.state == STATE_READY or self.state == STATE_DRAINING

    @property
    def peer_max_frame(self) -> int:
        h = self.peer_hello
        return h.settings.get("max_frame", DEFAULT_MAX_FRAME) if h else DEFAULT_MAX_FRAME

    def _open(self, sid: int, body_mode: int) -> StreamState:
        s = StreamState(sid)
        g = self._gwin
        req_win = 0 if body_mode == BODY_ON_CREDIT else self._wwin
        s.body_mode = body_mode
        s.req = REQ_ENDED if body_mode == BODY_NONE else REQ_OPEN
        if self.role == "gateway":
            s.send_window, s.recv_window = req_win, g
        else:
            s.send_window, s.recv_window = g, req_win
        self.streams[sid] = s
        if sid > self.highest:
            self.highest = sid
        return s

    def can_open(self) -> bool:
        return (self.role == "gateway" and self.state == STATE_READY and not self.retiring
                and len(self.streams) < self._limit)

    # -- receiving -----------------------------------------------------------
    def _fail(self, name: str, detail: str = "") -> RemoteProtocolError:
        self.state = STATE_FAILED
        return RemoteProtocolError(name, detail)

    def recv(self, f: Frame) -> bool:
        if self.state == STATE_FAILED:
            raise RemoteProtocolError("unexpected_frame", "the link has failed")
        t = f.type
        peer_worker = self.role == "gateway"
        if (t in _GATEWAY_ONLY and peer_worker) or (t in _WORKER_ONLY and not peer_worker):
            raise self._fail("unexpected_frame", f"{f.name} from the wrong direction")
        if t == 14:
            self.state = STATE_FAILED
            return True
        if t == 1:
            return self._recv_hello(f)  # type: ignore[arg-type]
        if not self.ready:
            raise self._fail("unexpected_frame", f"{f.name} before the handshake completed")
        if t == 10 or t == 11:
            return True
        if t == 12:
            if self.drained:
                raise self._fail("unexpected_frame", "second DRAIN")
            self.drained = True
            self.state = STATE_DRAINING
            return True
        if t == 13:
            self.retiring = True
            return True
        return self._recv_stream(f)

    def _recv_hello(self, h: Hello) -> bool:
        if self.peer_hello is not None:
            raise self._fail("unexpected_frame", "second HELLO")
        if self.role == "worker" and self.local_hello is None:
            raise self._fail("unexpected_frame", "the gateway's HELLO before ours")
        if h.version != PROTOCOL_VERSION:
            raise self._fail("version", f"peer speaks version {h.version}, we speak {PROTOCOL_VERSION}")
        need = ("max_streams", "window") if self.role == "gateway" else ("window",)
        for k in need:
            if k not in h.settings:
                raise self._fail("field_type", f"HELLO lacks {k}")
        self.peer_hello = h
        if self.role == "worker":
            self.state = STATE_READY
            self._handshake_done()
        return True

    def _recv_stream(self, f: Frame) -> bool:
        sid = f.stream_id
        t = f.type
        gw = self.role == "gateway"
        if t == 2:
            if f.body == BODY_WEBSOCKET and not self.websocket:  # type: ignore[attr-defined]
                raise self._fail("unexpected_frame", "REQUEST body=3 on a link without websocket")
            if self.state == STATE_DRAINING:
                raise self._fail("unexpected_frame", "REQUEST after DRAIN")
            if sid <= self.highest:
                raise self._fail("stream_state", f"REQUEST for used stream id {sid}")
            if len(self.streams) >= self._limit:
                raise self._fail("too_many_streams", f"more than {self._limit} open streams")
            self._open(sid, f.body)  # type: ignore[attr-defined]
            return True
        if t == 15 or t == 16 or (t == 3 and f.status == 101):  # type: ignore[attr-defined]
            self._check_ws(f, gw)
        s = self.streams.get(sid)
        if s is None:
            if sid <= self.highest:
                return False  # closed: a late frame that crossed on the wire
            raise self._fail("stream_state", f"{f.name} for unused stream id {sid}")
        if t == 15:
            return self._recv_message(s, f)  # type: ignore[arg-type]
        if t == 16:
            if s.resp != RESP_WEBSOCKET:
                raise self._fail("stream_state", f"CLOSE on stream {sid} that is not an open WebSocket")
            del self.streams[sid]
            return True
        if t == 4:
            n = len(f.data)  # type: ignore[attr-defined]
            if (s.resp != RESP_SENDING) if gw else (s.req != REQ_OPEN or s.body_mode == BODY_WEBSOCKET):
                raise self._fail("stream_state", f"BODY on stream {sid} in the wrong state")
            if n > s.recv_window:
                raise self._fail("flow_control", f"BODY of {n} bytes over a window of {s.recv_window}")
            s.recv_window -= n
            return True
        if t == 6:
            if gw and s.req == REQ_ENDED:
                return False
            n = f.increment  # type: ignore[attr-defined]
            if n > MAX_WINDOW - s.send_window:
                raise self._fail("flow_control", "CREDIT overflows the window")
            s.send_window += n
            return True
        if t == 5:
            if gw:
                if s.resp != RESP_SENDING:
                    raise self._fail("stream_state", f"END on stream {sid} before RESPONSE")
                s.resp = RESP_ENDED
                del self.streams[sid]
            else:
                if s.req != REQ_OPEN or s.body_mode == BODY_WEBSOCKET:
                    raise self._fail("stream_state", f"END on stream {sid} whose request side ended")
                s.req = REQ_ENDED
            return True
        if t == 3:
            if s.resp != RESP_WAITING:
                raise self._fail("stream_state", f"second RESPONSE on stream {sid}")
            if f.status == 101:  # type: ignore[attr-defined]
                if s.body_mode != BODY_WEBSOCKET or f.body != BODY_NONE:  # type: ignore[attr-defined]
                    raise self._fail("stream_state", f"RESPONSE 101 on stream {sid} (not a WebSocket, or body=1)")
                s.resp = RESP_WEBSOCKET
                return True
            if f.body == BODY_NONE:  # type: ignore[attr-defined]
                s.resp = RESP_ENDED
                del self.streams[sid]
            else:
                s.resp = RESP_SENDING
            return True
        if t == 9:
            if s.req == REQ_ENDED:
                return False
            s.limit = f.max_body  # type: ignore[attr-defined]
            return True
        if t == 7 or t == 8:
            del self.streams[sid]
            return True
        raise self._fail("unexpected_frame", f.name)  # pragma: no cover

    def _check_ws(self, f: Frame, gw: bool) -> None:
        """The checks of a WebSocket frame that come before the stream's
        state: the link must have WebSockets, and a MESSAGE PING/PONG must
        come from its side (PROTOCOL.md 3.14, 5.2)."""
        if not self.websocket:
            raise self._fail("unexpected_frame", f"{f.name} on a link without websocket")
        if f.type == 15:
            fl = f.flags  # type: ignore[attr-defined]
            if fl == MSG_PING and (not gw or len(f.data) > MAX_PING):  # type: ignore[attr-defined]
                raise self._fail("field_value", "MESSAGE PING from the gateway, or over 125 bytes")
            if fl == MSG_PONG and gw:
                raise self._fail("field_value", "MESSAGE PONG from a worker")

    def _recv_message(self, s: StreamState, f: "Message") -> bool:
        if s.resp != RESP_WEBSOCKET:
            raise self._fail("stream_state", f"MESSAGE on stream {s.id} that is not an open WebSocket")
        fl = f.flags
        if fl & (MSG_PING | MSG_PONG):
            return True  # no credit, not part of a message
        text = fl & MSG_TEXT
        if s.recv_text is not None and s.recv_text != text:
            raise self._fail("stream_state", f"MESSAGE on stream {s.id} changes the text bit mid-message")
        n = len(f.data)
        if n > s.recv_window:
            raise self._fail("flow_control", f"MESSAGE of {n} bytes over a window of {s.recv_window}")
        s.recv_window -= n
        s.recv_text = text if fl & MSG_MORE else None
        return True

    # -- sending -------------------------------------------------------------
    def send(self, f: Frame) -> None:
        t = f.type
        if t == 14:
            self.state = STATE_FAILED
            return
        if self.state == STATE_FAILED:
            raise LocalProtocolError("the link has failed")
        if (t in _GATEWAY_ONLY and self.role == "worker") or (t in _WORKER_ONLY and self.role == "gateway"):
            raise LocalProtocolError(f"a {self.role} does not send {f.name}")
        if t == 1:
            if self.local_hello is not None:
                raise LocalProtocolError("HELLO already sent")
            if self.role == "gateway" and self.peer_hello is None:
                raise LocalProtocolError("the gateway answers the worker's HELLO")
            if (self.role == "gateway" and f.settings.get("websocket") is True  # type: ignore[attr-defined]
                    and self.peer_hello.settings.get("websocket") is not True):
                raise LocalProtocolError("websocket: true answers only a worker that announced it")
            need = ("max_streams", "window") if self.role == "worker" else ("window",)
            for k in need:
                if k not in f.settings:  # type: ignore[attr-defined]
                    raise LocalProtocolError(f"HELLO needs {k}")
            self.local_hello = f  # type: ignore[assignment]
            if self.role == "gateway":
                self.state = STATE_READY
                self._handshake_done()
            return
        if not self.ready:
            raise LocalProtocolError(f"{f.name} before the handshake completed")
        if t == 10 or t == 11:
            return
        if t == 12:
            if self.drained:
                raise LocalProtocolError("DRAIN already sent")
            self.drained = True
            self.state = STATE_DRAINING
            return
        if t == 13:
            self.retiring = True
            return
        self._send_stream(f)

    def _send_stream(self, f: Frame) -> None:
        sid = f.stream_id
        t = f.type
        gw = self.role == "gateway"
        if t == 2:
            b = f.body  # type: ignore[attr-defined]
            if (not self.can_open() or sid <= self.highest or sid > MAX_ID or b > 3
                    or (b == BODY_WEBSOCKET and not self.websocket)):
                raise LocalProtocolError(f"cannot open stream {sid} now")
            self._open(sid, f.body)  # type: ignore[attr-defined]
            return
        s = self.streams.get(sid)
        if s is None:
            raise LocalProtocolError(f"stream {sid} is not open")
        if t == 3:
            if s.resp != RESP_WAITING or f.body > 1:  # type: ignore[attr-defined]
                raise LocalProtocolError(f"RESPONSE not allowed on stream {sid}")
            if f.status == 101:  # type: ignore[attr-defined]
                if s.body_mode != BODY_WEBSOCKET or f.body != BODY_NONE:  # type: ignore[attr-defined]
                    raise LocalProtocolError(f"RESPONSE 101 not allowed on stream {sid}")
                s.resp = RESP_WEBSOCKET
                return
            if f.body == BODY_NONE:  # type: ignore[attr-defined]
                s.resp = RESP_ENDED
                del self.streams[sid]
            else:
                s.resp = RESP_SENDING
            return
        if t == 4:
            n = len(f.data)  # type: ignore[attr-defined]
            self.send_body(s, n)
            return
        if t == 5:
            if gw:
                if s.req != REQ_OPEN or s.body_mode == BODY_WEBSOCKET:
                    raise LocalProtocolError(f"request side of stream {sid} already ended")
                s.req = REQ_ENDED
            else:
                if s.resp != RESP_SENDING:
                    raise LocalProtocolError(f"END not allowed on stream {sid}")
                s.resp = RESP_ENDED
                del self.streams[sid]
            return
        if t == 6:
            n = f.increment  # type: ignore[attr-defined]
            if n < 1 or n > MAX_WINDOW - s.recv_window:
                raise LocalProtocolError("CREDIT out of range")
            s.recv_window += n
            return
        if t == 9:
            s.limit = f.max_body  # type: ignore[attr-defined]
            return
        if t == 7 or t == 8:
            del self.streams[sid]
            return
        if t == 15:
            self.send_message(s, f.flags, len(f.data))  # type: ignore[attr-defined]
            return
        if t == 16:
            if s.resp != RESP_WEBSOCKET:
                raise LocalProtocolError(f"CLOSE not allowed on stream {sid}")
            del self.streams[sid]
            return
        raise LocalProtocolError(f.name)  # pragma: no cover

    def send_message(self, s: StreamState, flags: int, n: int) -> None:
        """Account for sending a MESSAGE piece of ``n`` bytes on ``s``."""
        if not self.websocket or s.resp != RESP_WEBSOCKET:
            raise LocalProtocolError(f"MESSAGE not allowed on stream {s.id}")
        if flags & (MSG_PING | MSG_PONG):
            gw = self.role == "gateway"
            if flags == (MSG_PING if gw else MSG_PONG) or (flags == MSG_PING and n > MAX_PING):
                raise LocalProtocolError("a worker sends PING (at most 125 bytes), a gateway PONG")
            return
        text = flags & MSG_TEXT
        if s.send_text is not None and s.send_text != text:
            raise LocalProtocolError("every piece of a message carries the same text bit")
        if n > s.send_window:
            raise LocalProtocolError(f"MESSAGE of {n} bytes over the send window of {s.send_window}")
        s.send_window -= n
        s.send_text = text if flags & MSG_MORE else None

    def send_body(self, s: StreamState, n: int) -> None:
        """Account for sending ``n`` body bytes on open stream ``s``."""
        if (s.req != REQ_OPEN or s.body_mode == BODY_WEBSOCKET) if self.role == "gateway" \
                else (s.resp != RESP_SENDING):
            raise LocalProtocolError(f"BODY not allowed on stream {s.id}")
        if n > s.send_window:
            raise LocalProtocolError(f"BODY of {n} bytes over the send window of {s.send_window}")
        s.send_window -= n


# ---------------------------------------------------------------------------
# The worker side, ready for a runtime

DEFAULT_WINDOW = 256 * 1024
DEFAULT_BODY_BUFFER = 64 * 1024 * 1024
MIN_INITIAL_WINDOW = 1024


def initial_window(max_streams: int, window: int, body_buffer: int | None = DEFAULT_BODY_BUFFER) -> int:
    """The request-body window a worker announces in HELLO.

    ``window`` is the most credit one stream holds while the application
    reads it; ``body_buffer`` bounds the request-body bytes buffered for the
    whole link. When ``max_streams x window`` fits in the budget, every
    stream starts with the full window. Otherwise streams start with a
    smaller window (half the budget shared by ``max_streams``, in whole KiB,
    at least 1 KiB) and the rest of the budget is lent, up to ``window``,
    to the streams whose body the application is reading
    (:meth:`WorkerConnection.start_reading`)."""
    if body_buffer is None or max_streams * window <= body_buffer:
        return window
    w = body_buffer // (2 * max_streams)
    w -= w % 1024
    return min(window, max(MIN_INITIAL_WINDOW, w))


class WorkerConnection:
    """Everything a worker runtime needs, without I/O.

    Typical use::

        conn = WorkerConnection(max_streams=64)
        sock.send(conn.data_to_send())          # our HELLO
        for event in conn.receive_data(sock.recv(65536)):
            ...                                  # Hello, Request, Body, End, ...
        conn.respond(sid, 200, [(b"content-type", b"text/plain")])
        n = conn.send_body(sid, data)            # as much as the window allows
        conn.end(sid)
        sock.send(conn.data_to_send())

    ``receive_data`` returns the frames the link accepted (late frames for
    closed streams are dropped; PING is answered with PONG by itself and not
    returned). A protocol violation raises :class:`RemoteProtocolError` after
    queueing an ERROR frame: send ``data_to_send()`` and close.

    Request-body credit: call :meth:`start_reading` when the application
    starts reading a stream's body (the first grant in body mode 2, and the
    stream's full read window), :meth:`consumed` as it reads body bytes
    (CREDIT is sent once half the stream's window is consumed, batched, and
    at once when the window would otherwise run dry), and :meth:`release`
    once the body is read or dropped.

    Memory: the request-body bytes of a link (granted but not yet received,
    plus received but not yet consumed) stay within
    ``max(body_buffer, max_streams x initial_window)`` (see
    :func:`initial_window`); ``body_buffer=None`` gives every stream the
    full ``window`` from the start (``max_streams x window``).
    """

    def __init__(self, max_streams: int = 64, window: int = DEFAULT_WINDOW,
                 max_frame: int = DEFAULT_MAX_FRAME, lib: str = "sluice-python",
                 pid: int | None = None, token: str | None = None,
                 body_buffer: int | None = DEFAULT_BODY_BUFFER, websocket: bool = False) -> None:
        if not 1 <= max_streams <= MAX_STREAMS:
            raise ValueError("max_streams must be in 1..65535")
        if not 0 <= window <= MAX_WINDOW:
            raise ValueError("window must be in 0..2^31-1")
        if not MIN_MAX_FRAME <= max_frame <= MAX_MAX_FRAME:
            raise ValueError("max_frame must be in 16384..16777215")
        if body_buffer is not None and body_buffer < 0:
            raise ValueError("body_buffer must be >= 0")
        self.link = Link("worker", max_streams)
        self.window = window
        self.initial_window = w0 = initial_window(max_streams, window, body_buffer)
        self.decoder = FrameDecoder(max_frame)
        self._out: list[bytes] = []
        self._consumed: dict[int, int] = {}
        self._credit_at = max(1, w0 // 2)
        # the budget lent to streams being read, beyond their initial window
        self._pool = 0 if body_buffer is None else max(0, body_buffer - max_streams * w0)
        self._extra: dict[int, int] = {}
        # RESPONSE heads queued (not yet taken for writing) for body-on-credit
        # streams whose body is not being read yet: sid -> index in _out, so
        # that a grant made before the output is written goes out first
        self._heads: dict[int, int] = {}
        settings: dict[str, Any] = {"pid": os.getpid() if pid is None else pid, "lib": lib,
                                    "max_streams": max_streams, "window": w0}
        if max_frame != DEFAULT_MAX_FRAME:
            settings["max_frame"] = max_frame
        if token:
            settings["token"] = token
        if websocket:
            settings["websocket"] = True
        hello = Hello(PROTOCOL_VERSION, settings)
        self.link.send(hello)
        self._out.append(encode(hello))
        self._body_max = DEFAULT_MAX_FRAME - 32
        self.closed = False

    # -- output ---------------------------------------------------------------
    def data_to_send(self) -> bytes:
        """All bytes queued since the last call, joined (b"" if none)."""
        out = self._out
        if not out:
            return b""
        self._out = []
        if self._heads:
            self._heads.clear()
        return out[0] if len(out) == 1 else b"".join(out)

    def chunks_to_send(self) -> list[bytes]:
        """Like :meth:`data_to_send` but without joining (for writelines:
        large body chunks are not copied)."""
        out = self._out
        self._out = []
        if self._heads:
            self._heads.clear()
        return out

    @property
    def has_output(self) -> bool:
        return bool(self._out)

    # -- input ----------------------------------------------------------------
    def receive_data(self, data: bytes) -> list[Frame]:
        """Feed bytes from the gateway; returns the accepted frames."""
        try:
            frames = self.decoder.feed(data)
        except RemoteProtocolError as exc:
            accepted = self._apply(exc.frames)
            self._fail(exc)
            exc.frames = accepted
            raise
        return self._apply(frames)

    def _apply(self, frames: list[Frame]) -> list[Frame]:
        out: list[Frame] = []
        link = self.link
        recv = link.recv
        streams = link.streams
        for f in frames:
            # fast path for the common frame, REQUEST on a ready link: the
            # same checks and state as Link._recv_stream and Link._open
            # (worker role), without the calls
            if f.type == 2 and link.state == STATE_READY and f.body != BODY_WEBSOCKET:  # type: ignore[attr-defined]
                sid = f.stream_id
                if sid > link.highest and len(streams) < link._limit:
                    s = StreamState(sid)
                    bm = f.body  # type: ignore[attr-defined]
                    s.body_mode = bm
                    s.send_window = link._gwin
                    if bm == BODY_NONE:
                        s.req = REQ_ENDED
                        s.recv_window = link._wwin
                    elif bm == BODY_ON_CREDIT:
                        s.recv_window = 0
                    else:
                        s.recv_window = link._wwin
                    streams[sid] = s
                    link.highest = sid
                    out.append(f)
                    continue
            try:
                applied = recv(f)
            except RemoteProtocolError as exc:
                self._fail(exc)
                exc.frames = out
                raise
            if not applied:
                continue
            t = f.type
            if t == 10:
                self._out.append(encode(Pong(f.opaque)))  # type: ignore[attr-defined]
                continue
            if t == 1:
                self._body_max = self.link.peer_max_frame - 32
            elif t == 7 or t == 16:
                self._consumed.pop(f.stream_id, None)
            elif t == 14:
                self.closed = True
            out.append(f)
        return out

    def _fail(self, exc: ProtocolError) -> None:
        if self.link.state != STATE_FAILED or not self.closed:
            self.link.state = STATE_FAILED
            self._out.append(encode(Error(exc.code, exc.detail or exc.name)))
            self.closed = True

    def eof(self) -> None:
        """The gateway closed the link: raises ``truncated`` mid-frame."""
        self.closed = True
        self.decoder.check_eof()

    # -- stream operations -------------------------------------------------------
    def stream(self, sid: int) -> StreamState | None:
        return self.link.streams.get(sid)

    def send_window(self, sid: int) -> int:
        """Response-body bytes we may send now on ``sid`` (0 if closed)."""
        s = self.link.streams.get(sid)
        return s.send_window if s is not None else 0

    def is_open(self, sid: int) -> bool:
        return sid in self.link.streams

    def respond(self, sid: int, status: int, headers: Sequence = (), body: bool = True,
                packed_headers: bytes | None = None) -> None:
        """Queue RESPONSE. ``body=False`` completes (and closes) the stream."""
        s = self.link.streams.get(sid)
        if s is None or s.resp != RESP_WAITING:
            raise LocalProtocolError(f"RESPONSE not allowed on stream {sid}")
        if not 200 <= status <= 599:
            raise LocalProtocolError(f"status {status} out of 200..599")
        if packed_headers is None:
            packed_headers = pack_headers(headers)
        frame = encode_response(sid, status, packed_headers, body)
        if len(frame) - 4 > self.link.peer_max_frame:
            raise LocalProtocolError("response head larger than the gateway's max_frame")
        if body:
            s.resp = RESP_SENDING
            if s.body_mode == BODY_ON_CREDIT and s.req == REQ_OPEN and s.recv_window == 0:
                self._hold_head(sid)
        else:
            s.resp = RESP_ENDED
            del self.link.streams[sid]
            self._consumed.pop(sid, None)
        self._out.append(frame)

    def _hold_head(self, sid: int) -> None:
        """Remember where the RESPONSE of ``sid`` goes in the output. The
        gateway answers ``Expect: 100-continue`` with 100 only when the first
        CREDIT arrives before the final head; a handler that starts its
        response and then reads the body (a streaming echo) grants in the
        same loop iteration, and that CREDIT (with a LIMIT) is put before the
        head. A handler that answers without reading grants nothing."""
        self._heads[sid] = len(self._out)

    def _before_head(self, sid: int, frame: bytes) -> None:
        """Queue a CREDIT or LIMIT of ``sid``: before its held RESPONSE if
        that has not been written yet, else at the end."""
        i = self._heads.get(sid)
        if i is None:
            self._out.append(frame)
            return
        self._out.insert(i, frame)
        heads = self._heads
        for k, j in heads.items():
            if j >= i:
                heads[k] = j + 1

    def send_body(self, sid: int, data: bytes | memoryview) -> int:
        """Queue as much of ``data`` as the window allows, split into frames
        within the gateway's ``max_frame``. Returns the bytes queued; the
        caller waits for CREDIT before sending the rest."""
        s = self.link.streams.get(sid)
        if s is None or s.resp != RESP_SENDING:
            raise LocalProtocolError(f"BODY not allowed on stream {sid}")
        n = len(data)
        win = s.send_window
        if n > win:
            n = win
            data = data[:n]
        if n == 0:
            return 0
        s.send_window = win - n
        out = self._out
        step = self._body_max
        if n <= step:
            out.append(encode_body_head(sid, n))
            out.append(data if type(data) is bytes else bytes(data))
        else:
            mv = memoryview(data)
            for i in range(0, n, step):
                piece = mv[i:i + step]
                out.append(encode_body_head(sid, len(piece)))
                out.append(bytes(piece))
        return n

    def end(self, sid: int, trailers: Sequence | None = None) -> None:
        """Queue END: the response is complete and the stream closed."""
        s = self.link.streams.get(sid)
        if s is None or s.resp != RESP_SENDING:
            raise LocalProtocolError(f"END not allowed on stream {sid}")
        s.resp = RESP_ENDED
        del self.link.streams[sid]
        self._consumed.pop(sid, None)
        self._out.append(encode_end(sid, pack_headers(trailers) if trailers else None))

    def respond_full(self, sid: int, status: int, packed_headers: bytes, body: bytes) -> bool:
        """RESPONSE + BODY + END in one go when ``body`` fits in the window
        and one frame (the common small response). Returns False (nothing
        queued) when it does not fit; the caller then streams it."""
        streams = self.link.streams
        s = streams.get(sid)
        if s is None or s.resp != RESP_WAITING:
            raise LocalProtocolError(f"RESPONSE not allowed on stream {sid}")
        n = len(body)
        if n > s.send_window or n > self._body_max:
            return False
        if 0x10000 <= sid < 0x100000000:
            sidb = _SID32(0xce, sid)
        else:
            sidb = _SMALL[sid] if sid < 128 else _pack_uint(sid)
        # the frames around the three copies of the stream id depend only on
        # the id's length, the status, the headers and the body: the same
        # response sent again costs a lookup and one join
        if n <= _RF_CACHE_BODY and type(body) is bytes and type(packed_headers) is bytes:
            key = (len(sidb), status, packed_headers, body)
            parts = _rf_cache.get(key)
            if parts is None:
                parts = _rf_parts(len(sidb), status, packed_headers, body)
                if len(_rf_cache) >= 256:
                    _rf_cache.clear()
                _rf_cache[key] = parts
        else:
            parts = _rf_parts(len(sidb), status, packed_headers, body)
        p0, p1, p2 = parts
        if p2 is None:  # no body: RESPONSE + END
            self._out.append(b"".join((p0, sidb, p1, sidb)))
        else:
            self._out.append(b"".join((p0, sidb, p1, sidb, p2, sidb)))
        del streams[sid]
        if self._consumed:
            self._consumed.pop(sid, None)
        return True

    def reset(self, sid: int, code: int | str = "internal", message: str | None = None) -> None:
        """Queue RESET: abandon the stream (no-op if already closed)."""
        if sid not in self.link.streams:
            return
        if isinstance(code, str):
            code = RESET_CODES[code]
        f = Reset(sid, code, message)
        self.link.send(f)
        self._consumed.pop(sid, None)
        self._out.append(encode(f))

    def limit(self, sid: int, max_body: int) -> None:
        """Queue LIMIT: this stream's request-body size limit."""
        f = Limit(sid, max_body)
        self.link.send(f)
        if self._heads:
            self._before_head(sid, encode(f))
        else:
            self._out.append(encode(f))

    def grant(self, sid: int, n: int) -> None:
        """Queue CREDIT ``n`` now (e.g. the initial grant for body mode 2).
        A grant made in the same loop iteration as a RESPONSE on this
        stream goes out before it (``Expect: 100-continue``)."""
        s = self.link.streams.get(sid)
        if s is None or s.req != REQ_OPEN or n <= 0:
            return
        n = min(n, MAX_WINDOW - s.recv_window)
        if n <= 0:
            return
        s.recv_window += n
        if self._heads:
            self._before_head(sid, encode_credit(sid, n))
            self._heads.pop(sid, None)
        else:
            self._out.append(encode_credit(sid, n))

    def start_reading(self, sid: int) -> bool:
        """The application starts reading the request body of ``sid`` (call
        once per stream): open its read window. Returns True if CREDIT was
        queued.

        In body mode 2 this is the first grant: the gateway holds the body
        (and ``Expect: 100-continue`` waits for it) until then. A stream
        that started with a window below ``window`` (see
        :func:`initial_window`) gets extra credit up to ``window`` from the
        link's budget while any is left, so a big upload flows at full
        speed; :meth:`release` gives it back."""
        s = self.link.streams.get(sid)
        if s is None or s.req != REQ_OPEN:
            return False
        n = self.initial_window if s.body_mode == BODY_ON_CREDIT else 0
        extra = min(self.window - self.initial_window, self._pool)
        if extra > 0:
            self._pool -= extra
            self._extra[sid] = self._extra.get(sid, 0) + extra
            n += extra
        if n <= 0:
            return False
        self.grant(sid, n)
        return True

    def release(self, sid: int) -> None:
        """The body of ``sid`` is read to its end, or dropped: return the
        credit :meth:`start_reading` lent it to the link's budget."""
        if self._extra:
            e = self._extra.pop(sid, 0)
            self._pool += e

    def consumed(self, sid: int, n: int) -> bool:
        """The application consumed ``n`` request-body bytes of ``sid``;
        True when that queued a CREDIT (there is something to flush).

        Credit is returned in batches (half the window), or at once when the
        stream has no window left, so the gateway never stalls for good."""
        s = self.link.streams.get(sid)
        if s is None or s.req != REQ_OPEN or n <= 0:
            return
        c = self._consumed.get(sid, 0) + n
        e = self._extra.get(sid) if self._extra else None
        at = self._credit_at if e is None else (self.initial_window + e) >> 1
        if c >= at or s.recv_window == 0:
            self._consumed.pop(sid, None)
            s.recv_window += c
            self._out.append(encode_credit(sid, c))
            return True
        self._consumed[sid] = c
        return False

    # -- WebSocket streams (PROTOCOL.md 5.2) ----------------------------------
    @property
    def websocket(self) -> bool:
        """True once both HELLOs announced WebSocket streams."""
        return self.link.websocket

    def accept_websocket(self, sid: int, headers: Sequence = (), packed_headers: bytes | None = None) -> None:
        """Queue RESPONSE 101: accept the WebSocket stream ``sid`` (headers
        may carry ``sec-websocket-protocol``). The stream stays open for
        MESSAGE frames. A refusal is an ordinary :meth:`respond`."""
        s = self.link.streams.get(sid)
        if s is None or s.resp != RESP_WAITING or s.body_mode != BODY_WEBSOCKET:
            raise LocalProtocolError(f"RESPONSE 101 not allowed on stream {sid}")
        if packed_headers is None:
            packed_headers = pack_headers(headers)
        frame = encode_response(sid, 101, packed_headers, False)
        if len(frame) - 4 > self.link.peer_max_frame:
            raise LocalProtocolError("response head larger than the gateway's max_frame")
        s.resp = RESP_WEBSOCKET
        self._out.append(frame)

    def send_message(self, sid: int, data: bytes | memoryview, text: bool = False,
                     more: bool = False) -> int:
        """Queue as much of a message's ``data`` as the window allows, split
        into MESSAGE frames within the gateway's ``max_frame``; the piece
        that completes the message has *more* clear unless ``more`` is set.
        Returns the bytes queued: the caller waits for CREDIT and calls
        again with the rest (same ``text``). An empty ``data`` with
        ``more=False`` queues an empty final piece (an empty message, or
        the end of one)."""
        s = self.link.streams.get(sid)
        if s is None or s.resp != RESP_WEBSOCKET:
            raise LocalProtocolError(f"MESSAGE not allowed on stream {sid}")
        t = MSG_TEXT if text else 0
        n = len(data)
        if not more and s.send_text is None and n <= s.send_window and n <= self._body_max:
            # the usual case: a whole message in one frame
            s.send_window -= n
            out = self._out
            out.append(encode_message_head(sid, t, n))
            out.append(data if type(data) is bytes else bytes(data))
            return n
        if s.send_text is not None and s.send_text != t:
            raise LocalProtocolError("every piece of a message carries the same text bit")
        win = s.send_window
        partial = n > win
        if partial:
            n = win
        if n == 0 and (partial or more):
            return 0
        s.send_window = win - n
        s.send_text = t if (partial or more) else None
        out = self._out
        step = self._body_max
        mv = memoryview(data) if (partial or n > step) else None
        off = 0
        while True:
            k = min(step, n - off)
            last = off + k >= n
            fl = t | (MSG_MORE if (not last or partial or more) else 0)
            out.append(encode_message_head(sid, fl, k))
            if mv is None:
                out.append(data if type(data) is bytes else bytes(data))
            else:
                out.append(bytes(mv[off:off + k]))
            off += k
            if last:
                return n

    def send_ping(self, sid: int, data: bytes = b"") -> None:
        """Queue a MESSAGE PING: the gateway pings the client with ``data``
        (at most 125 bytes); the client's pong comes back as MESSAGE PONG."""
        s = self.link.streams.get(sid)
        if s is None or s.resp != RESP_WEBSOCKET or len(data) > MAX_PING:
            raise LocalProtocolError(f"PING not allowed on stream {sid}")
        self._out.append(encode_message_head(sid, MSG_PING, len(data)) + bytes(data))

    def close_websocket(self, sid: int, code: int = 1000, reason: str | None = None) -> None:
        """Queue CLOSE: close the WebSocket ``sid`` (and the stream). The
        reason is cut to 123 bytes at a character boundary, what a close
        frame carries."""
        s = self.link.streams.get(sid)
        if s is None or s.resp != RESP_WEBSOCKET:
            raise LocalProtocolError(f"CLOSE not allowed on stream {sid}")
        if not MIN_CLOSE_CODE <= code <= MAX_CLOSE_CODE:
            raise LocalProtocolError(f"close code {code} out of 1000..4999")
        if reason:
            r = reason.encode("utf-8")
            if len(r) > 123:
                reason = r[:123].decode("utf-8", "ignore")
        del self.link.streams[sid]
        self._consumed.pop(sid, None)
        self._out.append(encode(Close(sid, code, reason)))

    def ping(self, opaque: int) -> None:
        f = Ping(opaque)
        self.link.send(f)
        self._out.append(encode(f))

    def retire(self, reason: str | None = None) -> None:
        """Queue RETIRE (once): ask the gateway for a replacement."""
        if self.link.retiring or not self.link.ready:
            return
        f = Retire(reason)
        self.link.send(f)
        self._out.append(encode(f))

    def error(self, name: str, message: str = "") -> None:
        """Queue ERROR and fail the link (then close it)."""
        self.link.state = STATE_FAILED
        self.closed = True
        self._out.append(encode(Error(ERROR_CODES.get(name, 14), message)))

    @property
    def open_streams(self) -> int:
        return len(self.link.streams)

    @property
    def draining(self) -> bool:
        return self.link.drained
