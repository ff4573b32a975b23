"""A small raw HTTP/1.x client for the end-to-end tests (stdlib only).

The tests need exact control over the bytes on the wire (pipelining, malformed
requests, Expect: 100-continue, HTTP/1.0, framing checks), which http.client
hides, so responses are parsed here by hand.
"""

import socket
import time

DEFAULT_TIMEOUT = 10.0
RECV_SIZE = 1 << 20


class ConnectionClosed(Exception):
    """The peer closed the connection before a complete response arrived."""


class Response:
    def __init__(self, version, status, reason, headers):
        self.version = version  # e.g. "HTTP/1.1"
        self.status = status
        self.reason = reason
        self.headers = headers  # ordered list of (name, value) as str
        self.body = b""
        self.framing = None  # "length", "chunked", "close" or "none"
        self.trailers = []

    def header(self, name, default=None):
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return default

    def header_all(self, name):
        name = name.lower()
        return [v for k, v in self.headers if k.lower() == name]

    def has_token(self, name, token):
        token = token.lower()
        for v in self.header_all(name):
            if token in [t.strip().lower() for t in v.split(",")]:
                return True
        return False

    def __repr__(self):
        body = self.body if len(self.body) <= 80 else self.body[:80] + b"..."
        return (f"<Response {self.version} {self.status} {self.reason!r} "
                f"framing={self.framing} headers={self.headers!r} "
                f"body({len(self.body)})={body!r}>")


class Conn:
    """One client TCP connection with a read buffer."""

    def __init__(self, port, host="127.0.0.1", timeout=DEFAULT_TIMEOUT,
                 rcvbuf=None, sndbuf=None):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        if sndbuf is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.settimeout(timeout)
        self.sock.connect((host, port))
        self.buf = bytearray()
        self.eof = False
        self._scratch = None

    # -- context manager -------------------------------------------------
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def settimeout(self, t):
        self.sock.settimeout(t)

    # -- sending ----------------------------------------------------------
    def send(self, data):
        if isinstance(data, str):
            data = data.encode("latin-1")
        self.sock.sendall(data)

    # -- receiving --------------------------------------------------------
    def _fill(self, size=RECV_SIZE):
        """Read more bytes into the buffer; returns False at EOF."""
        if self.eof:
            return False
        if self._scratch is None:
            self._scratch = memoryview(bytearray(RECV_SIZE))
        n = self.sock.recv_into(self._scratch[:min(size, RECV_SIZE)])
        if not n:
            self.eof = True
            return False
        self.buf += self._scratch[:n]
        return True

    def _read_line(self, limit=1 << 20):
        while True:
            i = self.buf.find(b"\n")
            if i >= 0:
                line = bytes(self.buf[:i + 1])
                del self.buf[:i + 1]
                return line
            if len(self.buf) > limit:
                raise ValueError("line too long")
            if not self._fill():
                raise ConnectionClosed(
                    f"connection closed while reading a line "
                    f"(partial: {bytes(self.buf[:200])!r})")

    def _read_exact(self, n):
        while len(self.buf) < n:
            if not self._fill(max(RECV_SIZE, n - len(self.buf))):
                raise ConnectionClosed(
                    f"connection closed with {len(self.buf)} of {n} bytes read")
        data = bytes(self.buf[:n])
        del self.buf[:n]
        return data

    def read_head(self):
        """Read a status line and header section. Returns a Response without
        its body (the body, if any, is still in the stream)."""
        line = self._read_line()
        if not line.endswith(b"\r\n"):
            raise ValueError(f"status line not CRLF-terminated: {line!r}")
        parts = line[:-2].decode("latin-1").split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/"):
            raise ValueError(f"bad status line: {line!r}")
        version = parts[0]
        status = int(parts[1])
        reason = parts[2] if len(parts) > 2 else ""
        headers = []
        while True:
            h = self._read_line()
            if h == b"\r\n":
                break
            if not h.endswith(b"\r\n"):
                raise ValueError(f"header line not CRLF-terminated: {h!r}")
            if b":" not in h:
                raise ValueError(f"bad header line: {h!r}")
            k, v = h[:-2].split(b":", 1)
            if k != k.strip() or not k:
                raise ValueError(f"bad header name: {h!r}")
            headers.append((k.decode("latin-1"), v.strip().decode("latin-1")))
        return Response(version, status, reason, headers)

    def body_framing(self, resp, method="GET"):
        """How the body of `resp` is delimited: ("none", 0), ("length", n),
        ("chunked", None) or ("close", None)."""
        if method == "HEAD" or 100 <= resp.status < 200 or resp.status in (204, 304):
            return "none", 0
        te = resp.header_all("transfer-encoding")
        if te:
            codings = [t.strip().lower() for v in te for t in v.split(",")]
            if codings[-1] == "chunked":
                return "chunked", None
            return "close", None
        cl = resp.header_all("content-length")
        if cl:
            values = {v.strip() for v in cl}
            if len(values) != 1:
                raise ValueError(f"conflicting Content-Length: {cl!r}")
            return "length", int(values.pop())
        return "close", None

    def iter_body(self, resp, method="GET", chunk=RECV_SIZE):
        """Yield the body of `resp` in pieces as it arrives (memory bounded)."""
        framing, n = self.body_framing(resp, method)
        resp.framing = framing
        if framing == "none":
            return
        if framing == "length":
            left = n
            while left > 0:
                if not self.buf:
                    if not self._fill(min(chunk, max(left, 1))):
                        raise ConnectionClosed(
                            f"connection closed with {left} of {n} body bytes missing")
                take = min(left, len(self.buf))
                piece = self.buf[:take]
                del self.buf[:take]
                left -= take
                yield piece
            return
        if framing == "close":
            while True:
                if self.buf:
                    piece = self.buf
                    self.buf = bytearray()
                    yield piece
                if not self._fill(chunk):
                    return
        # chunked
        while True:
            line = self._read_line(limit=4096)
            if not line.endswith(b"\r\n"):
                raise ValueError(f"chunk-size line not CRLF-terminated: {line!r}")
            size_s = line[:-2].split(b";", 1)[0].strip()
            try:
                size = int(size_s, 16)
            except ValueError:
                raise ValueError(f"bad chunk-size line: {line!r}") from None
            if size == 0:
                while True:
                    t = self._read_line()
                    if t == b"\r\n":
                        return
                    k, _, v = t[:-2].partition(b":")
                    resp.trailers.append((k.decode("latin-1"),
                                          v.strip().decode("latin-1")))
            left = size
            while left > 0:
                if not self.buf:
                    if not self._fill(chunk):
                        raise ConnectionClosed("connection closed inside a chunk")
                take = min(left, len(self.buf))
                piece = self.buf[:take]
                del self.buf[:take]
                left -= take
                yield piece
            crlf = self._read_exact(2)
            if crlf != b"\r\n":
                raise ValueError(f"chunk not followed by CRLF: {crlf!r}")

    def read_response(self, method="GET"):
        """Read one complete response (an interim 1xx response is returned as
        is; see read_final)."""
        resp = self.read_head()
        resp.body = bytes(b"".join(self.iter_body(resp, method)))
        return resp

    def read_final(self, method="GET"):
        """Read responses until a final (non-1xx) one; returns
        (final, [interim...])."""
        interim = []
        while True:
            r = self.read_response(method)
            if r.status >= 200:
                return r, interim
            interim.append(r)

    def wait_closed(self, timeout=5.0):
        """True when the peer closes (EOF or reset) within `timeout` with no
        further bytes; returns the extra bytes (non-empty) if any arrive."""
        deadline = time.monotonic() + timeout
        extra = bytearray(self.buf)
        self.buf.clear()
        if self.eof:
            return True if not extra else bytes(extra)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False if not extra else bytes(extra)
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                return False if not extra else bytes(extra)
            except (ConnectionResetError, BrokenPipeError):
                return True if not extra else bytes(extra)
            if not data:
                self.eof = True
                return True if not extra else bytes(extra)
            extra += data


def request_bytes(method="GET", target="/", headers=None, body=None,
                  version="HTTP/1.1", host="127.0.0.1"):
    """Build a request. `headers` is a list of (name, value); a Host header
    is added for HTTP/1.1 unless present; Content-Length is added for a
    bytes body unless a framing header is present."""
    headers = list(headers or [])
    names = {k.lower() for k, _ in headers}
    if version == "HTTP/1.1" and "host" not in names:
        headers.insert(0, ("Host", host))
    if body is not None and "content-length" not in names \
            and "transfer-encoding" not in names:
        headers.append(("Content-Length", str(len(body))))
    out = f"{method} {target} {version}\r\n"
    out += "".join(f"{k}: {v}\r\n" for k, v in headers)
    out += "\r\n"
    data = out.encode("latin-1")
    if body:
        data += body
    return data


def chunked(pieces, trailers=None):
    """Encode pieces (bytes) as a chunked body."""
    out = bytearray()
    for p in pieces:
        if p:
            out += b"%x\r\n" % len(p) + p + b"\r\n"
    out += b"0\r\n"
    for k, v in trailers or []:
        out += f"{k}: {v}\r\n".encode("latin-1")
    out += b"\r\n"
    return bytes(out)


def get(port, target="/", method="GET", headers=None, body=None,
        timeout=DEFAULT_TIMEOUT, version="HTTP/1.1"):
    """One request on a fresh connection; returns the final Response."""
    with Conn(port, timeout=timeout) as c:
        c.send(request_bytes(method, target, headers, body, version))
        r, _ = c.read_final(method)
        return r


# The blob worker's byte pattern: byte i is i % 251.
_PATTERN = bytes(i % 251 for i in range(251)) * ((4 << 20) // 251 + 2)


def blob_expected(n, offset=0):
    """The blob worker's body bytes [offset, offset+n) (n up to 4 MiB)."""
    s = offset % 251
    assert n <= len(_PATTERN) - 251
    return _PATTERN[s:s + n]


def blob_check(piece, offset):
    """True when `piece` matches the blob pattern at `offset`."""
    mv = memoryview(piece)
    step = 2 << 20
    for i in range(0, len(mv), step):
        part = bytes(mv[i:i + step])
        if part != blob_expected(len(part), offset + i):
            return False
    return True


def blob_first_mismatch(piece, offset):
    for i, b in enumerate(piece):
        if b != (offset + i) % 251:
            return offset + i
    return None
