"""HTTP-level value types shared by every runtime: :class:`Headers` and
:class:`Response`.

Header names and values travel as bytes on the wire (HTTP field values are
not text); the API accepts and returns ``str`` decoded as latin-1, which maps
every byte to one character and back, so nothing is ever lost.
"""

from __future__ import annotations

from typing import Any, Iterable, Iterator, Mapping, Sequence, Union

from . import protocol as P

HeadersLike = Union["Headers", Mapping[Any, Any], Iterable[Sequence[Any]], None]


def _b(v: Any) -> bytes:
    if type(v) is bytes:
        return v
    if isinstance(v, str):
        return v.encode("latin-1")
    if isinstance(v, (bytearray, memoryview)):
        return bytes(v)
    return str(v).encode("latin-1")


class Headers:
    """Ordered, multi-valued, case-insensitive HTTP header fields.

    Wraps the ``[name, value]`` byte pairs of a REQUEST frame without copying
    them (the gateway has already lower-cased the names). Lookups return the
    first value; :meth:`getall` returns all of them in order. ``raw`` gives
    the underlying byte pairs.
    """

    __slots__ = ("raw",)

    def __init__(self, raw: HeadersLike = None) -> None:
        if raw is None:
            self.raw: list = []
        elif isinstance(raw, Headers):
            self.raw = [list(p) for p in raw.raw]
        elif isinstance(raw, Mapping):
            self.raw = [[_b(k).lower(), _b(v)] for k, v in raw.items()]
        elif isinstance(raw, list) and (not raw or type(raw[0]) is list and type(raw[0][0]) is bytes):
            self.raw = raw  # wire form, adopted as is
        else:
            self.raw = [[_b(k).lower(), _b(v)] for k, v in raw]  # type: ignore[union-attr]

    def get(self, name: str | bytes, default: Any = None) -> Any:
        """The first value of ``name`` as str, or ``default``."""
        n = _b(name).lower()
        for k, v in self.raw:
            if k == n:
                return v.decode("latin-1")
        return default

    def getall(self, name: str | bytes) -> list[str]:
        """Every value of ``name``, in order (``[]`` if absent)."""
        n = _b(name).lower()
        return [v.decode("latin-1") for k, v in self.raw if k == n]

    get_all = getall

    def __getitem__(self, name: str | bytes) -> str:
        v = self.get(name)
        if v is None:
            raise KeyError(name)
        return v

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, (str, bytes)):
            return False
        n = _b(name).lower()
        return any(k == n for k, _ in self.raw)

    def __iter__(self) -> Iterator[str]:
        return (k.decode("latin-1") for k, _ in self.raw)

    def __len__(self) -> int:
        return len(self.raw)

    def items(self) -> list[tuple[str, str]]:
        """All fields as (name, value) str pairs, in order, repeats kept."""
        return [(k.decode("latin-1"), v.decode("latin-1")) for k, v in self.raw]

    def keys(self) -> list[str]:
        return [k.decode("latin-1") for k, _ in self.raw]

    def add(self, name: str | bytes, value: str | bytes) -> None:
        """Append a field (keeps existing ones with the same name)."""
        self.raw.append([_b(name).lower(), _b(value)])

    def set(self, name: str | bytes, value: str | bytes) -> None:
        """Replace every field called ``name`` by one with ``value``."""
        n = _b(name).lower()
        self.raw = [p for p in self.raw if p[0] != n]
        self.raw.append([n, _b(value)])

    __setitem__ = set

    def __delitem__(self, name: str | bytes) -> None:
        n = _b(name).lower()
        self.raw = [p for p in self.raw if p[0] != n]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Headers):
            return self.raw == other.raw
        return NotImplemented

    def __repr__(self) -> str:
        return f"Headers({self.items()!r})"


def wire_headers(headers: HeadersLike) -> list:
    """Any accepted header form -> list of [name bytes, value bytes]."""
    if headers is None:
        return []
    if isinstance(headers, Headers):
        return headers.raw
    if isinstance(headers, Mapping):
        return [[_b(k), _b(v)] for k, v in headers.items()]
    return [[_b(k), _b(v)] for k, v in headers]  # type: ignore[union-attr]


_TEXT = b"text/plain; charset=utf-8"
_pack_cache: dict[Any, bytes] = {}


def packed_headers(headers: HeadersLike, content_type: bytes | None, length: int | None) -> bytes:
    """msgpack bytes of a response header list, with content-type and
    content-length added when given and not already present.

    Header lists repeat from one response to the next (the same handler, the
    same headers), so the packed bytes are cached by value; the cache is
    bounded and only holds hashable (dict/tuple of str/bytes) header forms."""
    key = None
    if headers is None or (type(headers) is dict and len(headers) <= 8):
        try:
            key = (tuple(headers.items()) if headers else (), content_type, length)
            hit = _pack_cache.get(key)
            if hit is not None:
                return hit
        except TypeError:
            key = None
    wire = wire_headers(headers)
    names = {p[0].lower() for p in wire} if wire else ()
    if content_type is not None and b"content-type" not in names:
        wire = wire + [[b"content-type", content_type]]
    if length is not None and b"content-length" not in names:
        wire = wire + [[b"content-length", b"%d" % length]]
    packed = P.pack_headers(wire)
    if key is not None:
        if len(_pack_cache) > 512:
            _pack_cache.clear()
        _pack_cache[key] = packed
    return packed


class Response:
    """A complete response, returned from a handler.

    ``body`` may be ``bytes`` or ``str`` (encoded as UTF-8, with a default
    ``text/plain; charset=utf-8`` content type). A ``content-length`` header
    is added, so the gateway does not need chunked encoding. For a body that
    is produced over time, use ``await request.respond(...)`` instead.
    """

    __slots__ = ("body", "status", "headers", "content_type", "_packed")

    def __init__(self, body: bytes | str | bytearray | memoryview = b"", status: int = 200,
                 headers: HeadersLike = None, content_type: str | None = None) -> None:
        if isinstance(body, str):
            body = body.encode("utf-8")
            ct: bytes | None = _TEXT if content_type is None else content_type.encode("latin-1")
        else:
            if type(body) is not bytes:
                body = bytes(body)
            ct = None if content_type is None else content_type.encode("latin-1")
        self.body: bytes = body
        self.status = status
        self.headers = headers
        self.content_type = ct
        self._packed: bytes | None = None

    def packed_headers(self) -> bytes:
        """The header list as msgpack bytes, computed when the Response is
        first sent and kept (a module-level Response reused for every
        request costs nothing more to send; so do not modify a Response
        after it has been sent)."""
        p = self._packed
        if p is None:
            p = self._packed = packed_headers(self.headers, self.content_type, len(self.body))
        return p

    def __repr__(self) -> str:
        return f"<Response {self.status} {len(self.body)} bytes>"
