"""HTTP/1.1 conformance of the gateway's client side, on raw sockets.

Every case sends exact bytes and asserts the exact outcome: status line,
the relevant headers, the body, what reached the worker, and whether the
connection is closed afterwards. The RFC 9112 / RFC 9110 section a case
checks is in its test id (e.g. ``9112-6.1``) and docstring.

Policy (the gateway is internet-facing; the worker behind it must never see
a request the gateway framed differently from a peer):

* Every rejection is one 400 (or the specific 4xx/5xx named below) carrying
  ``Connection: close``, after which the gateway closes the connection.
  Smuggling cases append a second, innocent request (the *canary*, target
  ``/smuggled-N``) after the malicious bytes and assert it is never answered
  and never reaches a worker (the reflect worker logs every target it sees;
  the last test sweeps that log again).
* Bare CR and bare LF are rejected (400) wherever they appear -- as a line
  terminator in the request line, in the header section, at the end of the
  head, in chunk framing and in trailers (RFC 9112 section 2.2 allows a
  recipient to accept a bare LF; sluice does not).
* obs-fold is rejected with 400 (RFC 9112 section 5.2 allows replacing it
  with SP instead; sluice does not).
* Identical duplicate Content-Length lines ("5" twice, or "5, 5") are
  rejected with 400 (RFC 9110 section 8.6 allows accepting them; sluice does
  not).
* Transfer-Encoding other than one lone ``chunked`` is rejected with 400
  (for "gzip, chunked", RFC 9112 section 6.1 recommends 501; either is
  accepted here).

Gateways (one per module and kind, started like conftest's start_gateway and
stopped by PID): the *reflect* worker (conformance_util.py, answers with a
JSON description of what it received), the ``echo`` example (100-continue,
byte-split bodies), ``hello`` with 1 s timeouts and --max-requests-per-conn
3, and a two-pool config for routing by authority.
"""

import contextlib
import itertools
import json
import re
import socket
import threading
import time

import pytest

from conformance_util import read_all, reflect_cmd, running_gateway
from conftest import RssMonitor, example, proc_status_kib, rss_limit_kib
from httpc import Conn, ConnectionClosed

HELLO = b"Hello, world!\n"
_tags = itertools.count(1)
_failed_tags = set()  # canaries of cases that already failed (and said why)


# ==========================================================================
# gateways

@pytest.fixture(scope="module")
def reflect_log(tmp_path_factory):
    return str(tmp_path_factory.mktemp("conformance") / "targets.log")


@pytest.fixture(scope="module")
def gw(reflect_log):
    """The main gateway: 2 reflect workers, default limits (max-target 8k,
    max-header-bytes 32k, max-headers 128, max-body 100m)."""
    with running_gateway(reflect_cmd(reflect_log), workers=2) as g:
        g.reflect_log = reflect_log
        yield g


@pytest.fixture(scope="module")
def echo_gw():
    with running_gateway([example("echo")], workers=1) as g:
        g.reflect_log = None
        yield g


@pytest.fixture(scope="module")
def limits_gw():
    with running_gateway([example("hello")], "--header-timeout", "1s",
                         "--keepalive-timeout", "1s",
                         "--max-requests-per-conn", "3", workers=1) as g:
        g.reflect_log = None
        yield g


@pytest.fixture(scope="module")
def routed_gw(tmp_path_factory):
    """Pool "web" (hello) is the default; host internal.example is routed to
    pool "internal" (echo, which answers a GET with an empty chunked body
    of type application/octet-stream)."""
    d = tmp_path_factory.mktemp("routed")
    cfg = d / "sluice.ini"
    cfg.write_text(f"[pool:web]\ncommand = {example('hello')}\nworkers = 1\n\n"
                   f"[pool:internal]\ncommand = {example('echo')}\nworkers = 1\n\n"
                   "[route:internal]\nhost = internal.example\npool = internal\n")
    with running_gateway([], workers=2, config=str(cfg)) as g:
        g.reflect_log = None
        yield g


# ==========================================================================
# helpers

def canary(tag):
    return b"GET /smuggled-%d HTTP/1.1\r\nHost: canary\r\n\r\n" % tag


@contextlib.contextmanager
def canary_case():
    """A fresh canary tag; if the case fails, the final sweep does not
    report its canary a second time."""
    tag = next(_tags)
    try:
        yield tag
    except AssertionError:
        _failed_tags.add(tag)
        raise


def parse_stream(raw, methods=()):
    """All responses in a byte stream the peer closed (or went silent on)."""
    c = Conn.__new__(Conn)
    c.buf, c.eof, c._scratch, c.sock = bytearray(raw), True, None, None
    out = []
    while c.buf:
        m = methods[len(out)] if len(out) < len(methods) else "GET"
        try:
            out.append(c.read_response(m))
        except (ConnectionClosed, ValueError) as e:
            raise AssertionError(f"unparseable bytes after {len(out)} "
                                 f"response(s): {e}\nraw: {raw!r}") from None
    return out


def talk(port, data, *, pieces=None, gap=0.0, idle=2.0, total=8.0):
    """Send `data` (or `pieces`, `gap` seconds apart) on a new connection and
    read until EOF or `idle` seconds of silence. Returns (raw, eof)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        for p in (pieces if pieces is not None else [data]):
            try:
                s.sendall(p)
            except (BrokenPipeError, ConnectionResetError):
                break
            if gap:
                time.sleep(gap)
        return read_all(s, idle=idle, total=total)
    finally:
        s.close()


def targets_seen(g):
    try:
        with open(g.reflect_log, "rb") as f:
            return f.read().decode("latin-1").splitlines()
    except OSError:
        return []


def assert_std_headers(r):
    date = r.header_all("date")
    assert len(date) == 1 and re.fullmatch(
        r"[A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d GMT", date[0]), \
        f"Date missing or not IMF-fixdate (RFC 9110 6.6.1): {r}"
    server = r.header_all("server")
    assert len(server) == 1 and server[0].startswith("sluice/"), \
        f"Server missing (RFC 9110 10.2.4): {r}"


def reject(g, data, statuses=400, *, with_canary=True, idle=1.0):
    """`data` must get exactly one response with a status in `statuses`,
    carrying Connection: close, and then the connection must be closed: the
    canary appended after it is never answered nor forwarded."""
    if isinstance(statuses, int):
        statuses = (statuses,)
    tag = next(_tags)
    payload = data + (canary(tag) if with_canary else b"")
    raw, eof = talk(g.port, payload, idle=idle)
    try:
        return _check_rejection(g, statuses, tag, with_canary, payload, raw, eof)
    except AssertionError:
        _failed_tags.add(tag)
        raise


def _check_rejection(g, statuses, tag, with_canary, payload, raw, eof):
    ctx = f"\nsent: {payload[:600]!r}\ngot:  {raw[:1500]!r} (closed: {eof})"
    assert g.alive(), f"gateway died (exit {g.proc.poll()}){ctx}\n{g.log_tail()}"
    rs = parse_stream(raw)
    assert rs, f"no response at all{ctx}"
    r = rs[0]
    assert r.status in statuses, f"expected {statuses}, got {r.status}{ctx}"
    assert len(rs) == 1, \
        f"{len(rs)} responses: bytes after the rejected request were served{ctx}"
    assert r.has_token("connection", "close"), f"no Connection: close{ctx}"
    assert_std_headers(r)
    assert eof, f"connection not closed after {r.status}{ctx}"
    if with_canary and getattr(g, "reflect_log", None):
        assert f"/smuggled-{tag}" not in targets_seen(g), \
            f"the canary request reached a worker{ctx}"
    return r


def exchange(g, data, n=1, *, methods=(), follow_up=True, timeout=5.0):
    """Send `data` on one connection and read `n` responses (1xx included),
    then -- unless follow_up is False -- prove the connection is still
    usable and in sync with one more GET (answered 200)."""
    with Conn(g.port, timeout=timeout) as c:
        c.send(data)
        rs = []
        try:
            for i in range(n):
                rs.append(c.read_response(methods[i] if i < len(methods) else "GET"))
            if follow_up:
                c.send(b"GET /fixed HTTP/1.1\r\nHost: follow-up\r\n\r\n")
                f = c.read_response()
                assert f.status == 200, f"follow-up request: {f}"
        except (ConnectionClosed, ConnectionResetError, socket.timeout, ValueError) as e:
            raise AssertionError(f"{type(e).__name__}: {e}\nsent: {data[:600]!r}\n"
                                 f"responses so far: {rs!r}") from None
    assert g.alive(), f"gateway died: {g.log_tail()}"
    return rs


def one(g, data, **kw):
    return exchange(g, data, **kw)[0]


def seen(r):
    """What the reflect worker received, from its JSON answer."""
    assert r.status == 200, r
    return json.loads(r.body)


def req(line, *headers, body=b"", host=b"x"):
    """Request bytes: `line` is the request line; a Host header first unless
    host is None."""
    h = ([b"Host: " + host] if host is not None else []) + list(headers)
    return line + b"\r\n" + b"".join(x + b"\r\n" for x in h) + b"\r\n" + body


def post_chunked(body_bytes, *headers, line=b"POST /c HTTP/1.1"):
    return req(line, b"Transfer-Encoding: chunked", *headers) + body_bytes


# ==========================================================================
# Request line -- RFC 9112 section 3

@pytest.mark.parametrize("method", ["GET", "HEAD", "POST", "PUT", "DELETE",
                                    "OPTIONS", "PATCH", "TRACE"],
                         ids=lambda m: f"9110-9.3-{m}")
def test_valid_methods_forwarded(gw, method):
    """RFC 9110 9.3 / RFC 9112 3.1: registered methods reach the worker with
    method and target as sent."""
    m = method.encode()
    r = one(gw, req(m + b" /m?x=1 HTTP/1.1"), methods=[method])
    assert r.status == 200, r
    if method == "HEAD":
        assert r.body == b"" and int(r.header("content-length")) > 0, r
        return
    d = seen(r)
    assert (d["method"], d["target"], d["version"]) == (method, "/m?x=1", 11), d


INVALID_METHODS = {
    "at-sign": b"G@T / HTTP/1.1",
    "paren": b"GE(T / HTTP/1.1",
    "nul": b"GET\x00 / HTTP/1.1",
    "non-ascii": b"\xc3\x89GET / HTTP/1.1",
    "tls-client-hello": bytes.fromhex("160301020001000200030303"),
}


@pytest.mark.parametrize("name", sorted(INVALID_METHODS),
                         ids=lambda n: f"9112-3.1-{n}")
def test_invalid_method_token_400(gw, name):
    """RFC 9112 3.1: method = token; anything else is an invalid request
    line: 400 and close (3: MUST NOT autocorrect)."""
    reject(gw, req(INVALID_METHODS[name]))


@pytest.mark.parametrize("method", [b"BREW", b"FOO", b"DESCRIBE"], ids=lambda m: f"9110-9.1-{m.decode()}")
def test_unknown_method_501(gw, method):
    """RFC 9110 9.1 + 15.6.2: a well-formed but unrecognised method SHOULD
    get 501 Not Implemented (not 400: the request is not malformed). The
    gateway cannot forward it (llhttp knows a fixed set), so it must also
    close: it cannot know how the message is framed."""
    reject(gw, req(method + b" / HTTP/1.1"), 501)


def test_lowercase_method_not_served(gw):
    """RFC 9110 9.1: methods are case-sensitive, "get" is not GET. It must
    not be served as GET: 400 (invalid for the gateway) or 501 (unknown
    method), and close."""
    reject(gw, req(b"get / HTTP/1.1"), (400, 501))


BAD_REQUEST_LINES = {
    "double-space": b"GET  / HTTP/1.1",
    "trailing-space": b"GET / HTTP/1.1 ",
    "leading-space": b" GET / HTTP/1.1",
    "tabs": b"GET\t/\tHTTP/1.1",
    "missing-space": b"GET /HTTP/1.1",
    "space-in-target": b"GET /a b HTTP/1.1",
    "no-target": b"GET HTTP/1.1",
    "http09-simple-request": b"GET /",
}


@pytest.mark.parametrize("name", sorted(BAD_REQUEST_LINES),
                         ids=lambda n: f"9112-3-{n}")
def test_malformed_request_line_400(gw, name):
    """RFC 9112 3: request-line = method SP request-target SP HTTP-version;
    an invalid request line gets 400 and MUST NOT be autocorrected (3.2: no
    whitespace in the target). (RFC 9112 3 lets a recipient split on any
    run of whitespace instead; sluice's policy is strict single SP.) HTTP/0.9 simple requests (no version) are not
    supported (2.3), so "GET /" alone is invalid too -- it must not be
    served as HTTP/1.1 without a Host header."""
    reject(gw, req(BAD_REQUEST_LINES[name]))


def test_leading_empty_line_ignored(gw):
    """RFC 9112 2.2: a server SHOULD ignore at least one empty line (CRLF)
    received before the request-line."""
    d = seen(one(gw, b"\r\n" + req(b"GET /after-crlf HTTP/1.1")))
    assert d["target"] == "/after-crlf", d


def test_http10_request(gw):
    """RFC 9112 2.3: HTTP/1.0 is served (version 10 to the worker); the
    response is HTTP/1.1 (RFC 9110 6.2) and, without keep-alive, closes."""
    raw, eof = talk(gw.port, b"GET /ten HTTP/1.0\r\n\r\n")
    rs = parse_stream(raw)
    assert len(rs) == 1 and eof, (raw, eof)
    d = seen(rs[0])
    assert (d["target"], d["version"]) == ("/ten", 10), d
    assert rs[0].version == "HTTP/1.1", rs[0]


@pytest.mark.parametrize("version", [b"HTTP/2.0", b"HTTP/3.0"],
                         ids=lambda v: "9110-15.6.6-" + v.decode().replace("/", ""))
def test_unsupported_major_version_505(gw, version):
    """RFC 9110 15.6.6 / 6.2: a major version the server does not speak gets
    505 HTTP Version Not Supported -- never a response as if it were 1.1."""
    reject(gw, req(b"GET / " + version), 505)


def test_http09_version_token_rejected(gw):
    """RFC 9112 2.3: "HTTP/0.9" never appears on the wire (0.9 had no
    version); it is not HTTP/1.x: 400 or 505, never served as 1.1."""
    reject(gw, req(b"GET / HTTP/0.9"), (400, 505))


def test_higher_minor_version_served_as_11(gw):
    """RFC 9110 6.2: a recipient of a higher minor version of a major version
    it implements SHOULD process it as the highest minor it supports:
    HTTP/1.2 is served as HTTP/1.1."""
    raw, eof = talk(gw.port, req(b"GET /v12 HTTP/1.2"), idle=1.0)
    rs = parse_stream(raw)
    assert rs and rs[0].status == 200, f"HTTP/1.2 not served as 1.1: {raw!r}"
    assert rs[0].version == "HTTP/1.1" and seen(rs[0])["version"] == 11, rs[0]


BAD_VERSIONS = {
    "lowercase-name": b"http/1.1",
    "https-name": b"HTTPS/1.1",
    "two-digit-minor": b"HTTP/1.10",
    "leading-zero-major": b"HTTP/01.1",
    "no-minor": b"HTTP/1",
    "trailing-garbage": b"HTTP/1.1x",
    "space-in-version": b"HTTP /1.1",
    "garbage": b"XYZZY",
}


@pytest.mark.parametrize("name", sorted(BAD_VERSIONS), ids=lambda n: f"9112-2.3-{n}")
def test_malformed_version_400(gw, name):
    """RFC 9112 2.3: HTTP-version = "HTTP" "/" DIGIT "." DIGIT, case-sensitive."""
    reject(gw, req(b"GET / " + BAD_VERSIONS[name]))


@pytest.fixture(scope="module")
def h1_only_gw():
    with running_gateway([example("hello")], "--http2", "off", workers=1) as g:
        g.reflect_log = None
        yield g


def test_http2_preface_rejected(h1_only_gw):
    """RFC 9113 3.4: the HTTP/2 connection preface is designed to fail on an
    HTTP/1.1 server: 400 or 505, then close. (With HTTP/2 on, the default,
    the preface starts h2c with prior knowledge: tests/e2e/test_h2.py.)"""
    reject(h1_only_gw, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", (400, 505))


def test_absolute_form_accepted(gw):
    """RFC 9112 3.2.2: a server MUST accept the absolute form; the worker
    gets the target as sent (PROTOCOL.md 3.2)."""
    d = seen(one(gw, req(b"GET http://example.com/p?q=1 HTTP/1.1", host=b"example.com")))
    assert d["target"] == "http://example.com/p?q=1", d


def _routed_to(r):
    if r.status == 200 and r.body == HELLO:
        return "web"
    if r.status == 200 and r.header("content-type") == "application/octet-stream":
        return "internal"
    return f"?{r!r}"


def test_routing_by_host_control(routed_gw):
    """RFC 9110 7.2 (control for the next case): origin-form with Host
    internal.example goes to pool internal."""
    r = one(routed_gw, req(b"GET / HTTP/1.1", host=b"internal.example"))
    assert _routed_to(r) == "internal", r


@pytest.mark.parametrize("target,host,pool", [
    (b"http://internal.example/", b"public.example", "internal"),
    (b"http://public.example/", b"internal.example", "web"),
], ids=["9112-3.2.2-authority-internal", "9112-3.2.2-authority-public"])
def test_absolute_form_routed_by_its_authority(routed_gw, target, host, pool):
    """RFC 9112 3.2.2: for an absolute-form target the server MUST ignore
    Host and use the target's authority. A gateway that routes on Host
    instead sends the request to a different pool than any RFC-following
    proxy in front of it intended."""
    r = one(routed_gw, req(b"GET " + target + b" HTTP/1.1", host=host))
    assert _routed_to(r) == pool, f"{target!r} with Host {host!r}: {r}"


def test_absolute_form_host_replaced_by_authority(gw):
    """RFC 9112 3.2.2: with an absolute-form target the received Host is
    ignored in favour of the target's authority; the worker gets that
    authority as Host, so it sees the same host the gateway routed on."""
    d = seen(one(gw, req(b"GET http://a.example:8080/p HTTP/1.1", host=b"b.example")))
    assert d["target"] == "http://a.example:8080/p", d
    assert [v for k, v in d["headers"] if k == "host"] == ["a.example:8080"], d


BAD_ABSOLUTE = {
    "userinfo": b"http://user@a.example/",
    "empty-authority": b"http:///p",
    "bad-port": b"http://a.example:8x/",
    "other-scheme": b"ftp://a.example/",
}


@pytest.mark.parametrize("name", sorted(BAD_ABSOLUTE), ids=lambda n: f"9110-4.2-{n}")
def test_absolute_form_bad_authority_400(gw, name):
    """RFC 9110 4.2.1 (an http URI with an empty host is invalid), 4.2.4
    (userinfo is an error), 7.2: the authority of an absolute-form target
    routes the request, so it must be a valid http(s) uri-host [":" port]:
    400 and close otherwise."""
    reject(gw, req(b"GET " + BAD_ABSOLUTE[name] + b" HTTP/1.1", host=b"a.example"))


def test_asterisk_form_options(gw):
    """RFC 9112 3.2.4: OPTIONS * is the server-wide OPTIONS request."""
    d = seen(one(gw, req(b"OPTIONS * HTTP/1.1")))
    assert (d["method"], d["target"]) == ("OPTIONS", "*"), d


def test_asterisk_form_only_for_options(gw):
    """RFC 9112 3.2.4: the asterisk form is only used for OPTIONS; "GET *"
    is an invalid request target: 400."""
    reject(gw, req(b"GET * HTTP/1.1"))


def test_authority_form_only_for_connect(gw):
    """RFC 9112 3.2.3: the authority form is only used for CONNECT."""
    reject(gw, req(b"GET example.com:80 HTTP/1.1"))


def test_connect_not_tunnelled(gw):
    """RFC 9110 9.3.6: the gateway is not a proxy. A CONNECT must not be
    answered 2xx (which would tell the client a tunnel is open while the
    gateway goes on parsing the tunnel bytes as requests): 400, 405 or 501,
    then close; the bytes after it are never served."""
    reject(gw, req(b"CONNECT example.com:443 HTTP/1.1", host=b"example.com:443"),
           (400, 405, 501))


def test_target_at_limit_8k(gw):
    """RFC 9112 3 boundary: --max-target 8k (default) -- a target of exactly
    8192 bytes is served."""
    target = b"/" + b"a" * 8191
    assert seen(one(gw, req(b"GET " + target + b" HTTP/1.1")))["target"] == target.decode()


def test_target_over_limit_414(gw):
    """RFC 9112 3 / RFC 9110 15.5.15: a target longer than the server
    accepts gets 414 URI Too Long (8193 bytes > --max-target 8k)."""
    reject(gw, req(b"GET /" + b"a" * 8192 + b" HTTP/1.1"), 414)


TARGET_CTLS = {"ctl-01": b"\x01", "del-7f": b"\x7f", "nul": b"\x00", "esc": b"\x1b",
               "tab": b"\t", "non-ascii": b"\xe9", "cr": b"\r", "lf": b"\n"}


@pytest.mark.parametrize("name", sorted(TARGET_CTLS), ids=lambda n: f"9112-3.2-{n}")
def test_control_char_in_target_400(gw, name):
    """RFC 9112 3.2 / RFC 3986: the target has no control characters,
    whitespace or non-ASCII octets: 400."""
    reject(gw, req(b"GET /a" + TARGET_CTLS[name] + b"b HTTP/1.1"))


# ==========================================================================
# Field syntax -- RFC 9112 section 5, RFC 9110 section 5

BAD_FIELDS = {
    # 9112 5.1: no whitespace between field name and colon (MUST 400)
    "5.1-space-before-colon": [b"X-A : b"],
    "5.1-tab-before-colon": [b"X-A\t: b"],
    "5.1-space-before-colon-host": None,  # built below: "Host : x" as the only Host
    # 9112 5.2: obs-fold rejected (policy)
    "5.2-obs-fold-space": [b"X-A: b", b" c"],
    "5.2-obs-fold-tab": [b"X-A: b", b"\tc"],
    # 9110 5.1: field-name = token
    "9110-5.1-ctl-in-name": [b"X\x01A: b"],
    "9110-5.1-space-in-name": [b"X A: b"],
    "9110-5.1-quote-in-name": [b'X"A: b'],
    "9110-5.1-paren-in-name": [b"X(A): b"],
    "9110-5.1-non-ascii-name": [b"X\xe9A: b"],
    "9110-5.1-nul-in-name": [b"X\x00A: b"],
    "9110-5.1-empty-name": [b": b"],
    "9110-5.1-no-colon": [b"X-A b"],
    # 9110 5.5: CR, LF, NUL in values MUST be rejected (or replaced); other CTLs invalid
    "9110-5.5-ctl-01-in-value": [b"X-A: a\x01b"],
    "9110-5.5-del-in-value": [b"X-A: a\x7fb"],
    "9110-5.5-esc-in-value": [b"X-A: \x1bb"],
    "9110-5.5-nul-in-value": [b"X-A: a\x00b"],
    "9110-5.5-bare-cr-in-value": [b"X-A: a\rb"],
    # 9112 2.2: bare CR as a line terminator
    "2.2-bare-cr-terminator": [b"X-A: a\rX-B: b"],
}


@pytest.mark.parametrize("name", sorted(BAD_FIELDS), ids=lambda n: f"9112-{n}" if not n.startswith("9110") else n)
def test_bad_field_400(gw, name):
    """RFC 9112 5 / RFC 9110 5: malformed field lines get 400 and close
    (whitespace before the colon is a MUST-reject smuggling vector; obs-fold
    and control characters are rejected by policy; an empty field name is
    not a token)."""
    lines = BAD_FIELDS[name]
    if lines is None:
        data = b"GET / HTTP/1.1\r\nHost : x\r\n\r\n"
    else:
        data = req(b"GET /f HTTP/1.1", *lines)
    reject(gw, data)


def test_whitespace_line_before_first_field_400(gw):
    """RFC 9112 2.2: whitespace between the start-line and the first field
    line MUST be rejected (or the line ignored); sluice rejects."""
    reject(gw, b"GET / HTTP/1.1\r\n Host: x\r\n\r\n")


BARE_LF = {
    "everywhere": b"GET / HTTP/1.1\nHost: x\n\n",
    "request-line": b"GET / HTTP/1.1\nHost: x\r\n\r\n",
    "field-line": b"GET / HTTP/1.1\r\nHost: x\n\r\n",
    "end-of-head": b"GET / HTTP/1.1\r\nHost: x\r\n\n",
    "bare-cr-request-line": b"GET / HTTP/1.1\rHost: x\r\n\r\n",
    "leading-empty-line": b"\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",
    "bare-cr-end-of-head": b"GET / HTTP/1.1\r\nHost: x\r\n\r",
}


@pytest.mark.parametrize("name", sorted(BARE_LF), ids=lambda n: f"9112-2.2-bare-lf-{n}")
def test_bare_lf_and_cr_400(gw, name):
    """RFC 9112 2.2: a recipient MAY accept a bare LF as a line terminator;
    sluice's policy is to reject bare LF (and bare CR) anywhere in the head
    with 400, so it never frames a message differently from a strict peer."""
    reject(gw, BARE_LF[name])


def test_field_value_tab_and_obs_text_forwarded(gw):
    """RFC 9110 5.5: HTAB inside a value and obs-text (0x80-0xFF) are valid
    field content and are forwarded byte for byte."""
    d = seen(one(gw, req(b"GET / HTTP/1.1", b"X-A: a\tb\xff\xe9")))
    assert ["x-a", "a\tb\xff\xe9"] in d["headers"], d


def test_field_value_ows_trimmed(gw):
    """RFC 9112 5.1 / RFC 9110 5.5: leading and trailing OWS is not part of
    the value; names are lower-cased for the worker (PROTOCOL.md 2.2)."""
    d = seen(one(gw, req(b"GET / HTTP/1.1", b"X-A:   b  \t", b"X-B:b", b"X-C:   ")))
    assert d["headers"][1:] == [["x-a", "b"], ["x-b", "b"], ["x-c", ""]], d


def test_header_section_at_20k_ok(gw):
    """RFC 9112 5 / RFC 6585 5: under --max-header-bytes 32k (default) a
    20 KiB field is accepted and forwarded intact."""
    d = seen(one(gw, req(b"GET / HTTP/1.1", b"X-Big: " + b"v" * 20000)))
    assert ["x-big", "v" * 20000] in d["headers"]


@pytest.mark.parametrize("shape", ["one-field", "many-fields"],
                         ids=lambda s: f"9110-15.5.20-431-{s}")
def test_header_section_too_large_431(gw, shape):
    """RFC 6585 5 / RFC 9110 15.5: a header section over --max-header-bytes
    (32k) gets 431 Request Header Fields Too Large and close, whether one
    field or many (100 x 400 B, under the 128-field limit)."""
    if shape == "one-field":
        lines = [b"X-Big: " + b"v" * 40000]
    else:
        lines = [b"X-%d: " % i + b"v" * 400 for i in range(100)]
    reject(gw, req(b"GET / HTTP/1.1", *lines), 431)


def test_128_fields_ok(gw):
    """RFC 6585 5 boundary: --max-headers 128 (default) -- Host plus 127
    fields is accepted."""
    d = seen(one(gw, req(b"GET / HTTP/1.1", *[b"X-%d: v" % i for i in range(127)])))
    assert len(d["headers"]) == 128, d


def test_129_fields_431(gw):
    """RFC 6585 5: one field over --max-headers gets 431 and close."""
    reject(gw, req(b"GET / HTTP/1.1", *[b"X-%d: v" % i for i in range(128)]), 431)


# ==========================================================================
# Host -- RFC 9112 section 3.2, RFC 9110 section 7.2

BAD_HOSTS = {
    "missing-http11": b"GET / HTTP/1.1\r\n\r\n",
    "duplicate-identical": b"GET / HTTP/1.1\r\nHost: x\r\nHost: x\r\n\r\n",
    "duplicate-different": b"GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n",
    "duplicate-case": b"GET / HTTP/1.1\r\nhOsT: x\r\nHOST: x\r\n\r\n",
    "duplicate-http10": b"GET / HTTP/1.0\r\nHost: x\r\nHost: y\r\n\r\n",
    "invalid-space": b"GET / HTTP/1.1\r\nHost: exa mple.com\r\n\r\n",
    "invalid-slash": b"GET / HTTP/1.1\r\nHost: example.com/admin\r\n\r\n",
    "invalid-userinfo": b"GET / HTTP/1.1\r\nHost: user@example.com\r\n\r\n",
    "invalid-port": b"GET / HTTP/1.1\r\nHost: example.com:8x\r\n\r\n",
    "invalid-comma-list": b"GET / HTTP/1.1\r\nHost: a.example, b.example\r\n\r\n",
}


@pytest.mark.parametrize("name", sorted(BAD_HOSTS), ids=lambda n: f"9112-3.2-{n}")
def test_bad_host_400(gw, name):
    """RFC 9112 3.2: a server MUST respond 400 to an HTTP/1.1 request without
    Host, to any request with more than one Host field line, and to a Host
    with an invalid field value (Host = uri-host [ ":" port ], RFC 9110 7.2);
    hosts drive routing, so an unparseable one must never be forwarded."""
    reject(gw, BAD_HOSTS[name])


@pytest.mark.parametrize("data,host", [
    (b"GET /h HTTP/1.0\r\n\r\n", None),
    (b"GET /h HTTP/1.1\r\nHost:\r\n\r\n", ""),
    (b"GET /h HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n", "[::1]:8080"),
    (b"GET /h HTTP/1.1\r\nHost: Example.COM:8080\r\n\r\n", "Example.COM:8080"),
], ids=["9112-3.2-http10-no-host", "9112-3.2-empty-host",
        "9110-7.2-ipv6-literal", "9110-7.2-name-and-port"])
def test_valid_host_accepted(gw, data, host):
    """RFC 9112 3.2: HTTP/1.0 may omit Host; an empty Host is valid (no
    authority); IP literals and ports are valid uri-host [":" port]."""
    d = seen(one(gw, data, follow_up=host is not None))
    hosts = [v for k, v in d["headers"] if k == "host"]
    assert hosts == ([] if host is None else [host]), d


# ==========================================================================
# Message body -- RFC 9112 section 6

CLTE = {
    "cl-then-te": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nG",
    "te-then-cl": b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                  b"Content-Length: 4\r\n\r\n5c\r\nGPOST / HTTP/1.1\r\n\r\n0\r\n\r\n",
    "cl0-and-te": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "http10-cl-and-te": b"POST / HTTP/1.0\r\nContent-Length: 5\r\n"
                        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "cl-and-te-obs-fold": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                          b"Transfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n",
    "cl-and-te-space-before-colon": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                                    b"Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
}


@pytest.mark.parametrize("name", sorted(CLTE), ids=lambda n: f"9112-6.1-{n}")
def test_content_length_and_transfer_encoding_400(gw, name):
    """RFC 9112 6.1 / 6.3: Content-Length with Transfer-Encoding is a
    smuggling attempt: 400, and the connection MUST be closed."""
    reject(gw, CLTE[name])


BAD_CL = {
    "differing-duplicates": [b"Content-Length: 5", b"Content-Length: 6"],
    "identical-duplicates": [b"Content-Length: 5", b"Content-Length: 5"],
    "identical-list": [b"Content-Length: 5, 5"],
    "plus-sign": [b"Content-Length: +5"],
    "minus-sign": [b"Content-Length: -5"],
    "hex": [b"Content-Length: 0x5"],
    "inner-space": [b"Content-Length: 5 5"],
    "decimal-point": [b"Content-Length: 5.0"],
    "exponent": [b"Content-Length: 5e0"],
    "empty": [b"Content-Length:"],
    "trailing-letter": [b"Content-Length: 5a"],
    "overflow-23-digits": [b"Content-Length: 99999999999999999999999"],
    "overflow-2^64": [b"Content-Length: 18446744073709551616"],
}


@pytest.mark.parametrize("name", sorted(BAD_CL), ids=lambda n: f"9112-6.3-cl-{n}")
def test_bad_content_length_400(gw, name):
    """RFC 9112 6.3 (5) / RFC 9110 8.6: Content-Length = 1*DIGIT; an invalid
    value, or several values, is unrecoverable framing: 400 and close.
    Identical duplicates are rejected too (policy: 9110 8.6 allows either)."""
    reject(gw, req(b"POST / HTTP/1.1", *BAD_CL[name], body=b"hello"))


@pytest.mark.parametrize("value", [b"  5  ", b"005"], ids=["9112-5.1-cl-ows", "9110-8.6-cl-leading-zeros"])
def test_content_length_valid_forms(gw, value):
    """OWS around the value is not part of it; leading zeros are digits."""
    d = seen(one(gw, req(b"POST / HTTP/1.1", b"Content-Length:" + value, body=b"hello")))
    assert d["body"] == "hello", d


def test_get_with_content_length_body_forwarded(gw):
    """RFC 9112 6.3 (6): a Content-Length frames the body whatever the
    method; the body reaches the worker and the next request follows."""
    d = seen(one(gw, req(b"GET /gb HTTP/1.1", b"Content-Length: 5", body=b"hello")))
    assert (d["method"], d["body"]) == ("GET", "hello"), d


@pytest.mark.parametrize("cl", [b"104857601", b"18446744073709551615"],
                         ids=["9110-15.5.14-413-max-body-plus-1", "9110-15.5.14-413-2^64-1"])
def test_content_length_over_max_body_413(gw, cl):
    """RFC 9110 15.5.14: a declared length over --max-body (100m) gets 413
    at once, before any body is sent, and close -- including 2^64-1, the
    largest value that fits in 64 bits."""
    reject(gw, req(b"POST / HTTP/1.1", b"Content-Length: " + cl), 413)


BAD_TE = {
    "gzip": [b"Transfer-Encoding: gzip"],
    "chunked-gzip": [b"Transfer-Encoding: chunked, gzip"],
    "identity": [b"Transfer-Encoding: identity"],
    "chunked-chunked": [b"Transfer-Encoding: chunked, chunked"],
    "two-te-lines": [b"Transfer-Encoding: chunked", b"Transfer-Encoding: chunked"],
    "xchunked": [b"Transfer-Encoding: xchunked"],
    "chunked-with-param": [b"Transfer-Encoding: chunked;foo=bar"],
    "empty": [b"Transfer-Encoding:"],
    "vtab-chunked": [b"Transfer-Encoding: \x0bchunked"],
}


@pytest.mark.parametrize("name", sorted(BAD_TE), ids=lambda n: f"9112-6.1-te-{n}")
def test_transfer_encoding_not_lone_chunked_400(gw, name):
    """RFC 9112 6.1: if chunked is not the final coding the length cannot be
    determined: MUST 400 and close. Any coding sluice does not decode is
    refused the same way (policy: only a lone "chunked")."""
    reject(gw, req(b"POST / HTTP/1.1", *BAD_TE[name], body=b"0\r\n\r\n"))


def test_transfer_encoding_gzip_chunked_rejected(gw):
    """RFC 9112 6.1: "gzip, chunked" is framed by chunked but gzip is a
    coding sluice does not implement: 501 (SHOULD) or 400 (policy), and
    close."""
    reject(gw, req(b"POST / HTTP/1.1", b"Transfer-Encoding: gzip, chunked",
                   body=b"0\r\n\r\n"), (400, 501))


@pytest.mark.parametrize("value", [b"chunked", b"Chunked", b"CHUNKED", b"chunked  ", b"\tchunked"],
                         ids=["9112-7-chunked", "9112-7-Chunked", "9112-7-CHUNKED",
                              "9112-7-chunked-trailing-ows", "9112-7-chunked-leading-tab"])
def test_chunked_accepted(gw, value):
    """RFC 9112 7: transfer-coding names are case-insensitive."""
    d = seen(one(gw, req(b"POST / HTTP/1.1", b"Transfer-Encoding: " + value,
                         body=b"5\r\nhello\r\n0\r\n\r\n")))
    assert d["body"] == "hello" and d["body_mode"] == 1, d
    assert not any(k == "transfer-encoding" for k, _ in d["headers"]), d


def test_chunked_on_http10_then_close(gw):
    """RFC 9112 6.1: an HTTP/1.0 message with Transfer-Encoding MUST be
    treated as having faulty framing, and the connection closed after it,
    even with Connection: keep-alive: the request may be rejected (400) or
    served, but the bytes after it are never read as a request."""
    with canary_case() as tag:
        data = (b"POST /ten-chunked HTTP/1.0\r\nConnection: keep-alive\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n" + canary(tag))
        raw, eof = talk(gw.port, data)
        rs = parse_stream(raw)
        ctx = f"\nsent: {data!r}\ngot: {raw!r}"
        assert len(rs) == 1 and rs[0].status in (200, 400), f"{len(rs)} responses{ctx}"
        assert eof and rs[0].has_token("connection", "close"), f"not closed{ctx}"
        assert f"/smuggled-{tag}" not in targets_seen(gw), ctx


BAD_CHUNKS = {
    "size-not-hex": b"zz\r\nhello\r\n0\r\n\r\n",
    "size-hex-overflow": b"10000000000000005\r\nhello\r\n0\r\n\r\n",
    "size-negative": b"-5\r\nhello\r\n0\r\n\r\n",
    "size-0x-prefix": b"0x5\r\nhello\r\n0\r\n\r\n",
    "size-leading-space": b" 5\r\nhello\r\n0\r\n\r\n",
    "size-bare-lf": b"5\nhello\r\n0\r\n\r\n",
    "data-missing-crlf": b"5\r\nhelloX0\r\n\r\n",
    "data-longer-than-size": b"3\r\nhello\r\n0\r\n\r\n",
    "data-bare-lf": b"5\r\nhello\n0\r\n\r\n",
    "last-chunk-bare-lf-end": b"5\r\nhello\r\n0\r\n\n",
    "trailer-line-bare-lf": b"5\r\nhello\r\n0\r\nX-T: 1\n\r\n",
    "last-chunk-bare-cr": b"5\r\nhello\r\n0\r\n\rX",
    "ext-bws-before-crlf": b"5;a=b \r\nhello\r\n0\r\n\r\n",
    "size-trailing-space": b"5 \r\nhello\r\n0\r\n\r\n",
    "ext-empty-name": b"5;\r\nhello\r\n0\r\n\r\n",
    "ext-space-in-name": b"5;a b\r\nhello\r\n0\r\n\r\n",
    "ext-ctl": b"5;a\x01\r\nhello\r\n0\r\n\r\n",
    "ext-unterminated-quote": b'5;a="b\r\nhello\r\n0\r\n\r\n',
}


@pytest.mark.parametrize("name", sorted(BAD_CHUNKS), ids=lambda n: f"9112-7.1-{n}")
def test_bad_chunked_framing_400(gw, name):
    """RFC 9112 7.1 / 7.1.1: chunk = chunk-size [ chunk-ext ] CRLF chunk-data
    CRLF, chunk-size = 1*HEXDIG; anything else is unrecoverable framing:
    400 and close (bare LF rejected by policy). The worker saw the head;
    the canary after the body never reaches it."""
    reject(gw, post_chunked(BAD_CHUNKS[name]))


@pytest.mark.parametrize("body", [
    b"5;a=b\r\nhello\r\n0\r\n\r\n",
    b'5;a="b c"\r\nhello\r\n0\r\n\r\n',
    b"5;a\r\nhello\r\n0\r\n\r\n",
    b"5;a=b;c=d\r\nhello\r\n0\r\n\r\n",
    b"5\r\nhello\r\n0;z=1\r\n\r\n",
    b"2\r\nhe\r\n3\r\nllo\r\n0\r\n\r\n",
    b"00005\r\nhello\r\n000\r\n\r\n",
    b"5\r\nhello\r\n0\r\n\r\n",
], ids=["9112-7.1.1-ext-token", "9112-7.1.1-ext-quoted", "9112-7.1.1-ext-name-only",
        "9112-7.1.1-ext-several", "9112-7.1.1-ext-on-last-chunk", "9112-7.1-two-chunks", "9112-7.1-size-leading-zeros",
        "9112-7.1-plain"])
def test_valid_chunked_bodies(gw, body):
    """RFC 9112 7.1 / 7.1.1: valid chunked bodies (extensions are ignored)
    reach the worker as the decoded bytes, and the connection stays in sync."""
    d = seen(one(gw, post_chunked(body)))
    assert d["body"] == "hello", d


def test_chunk_extension_bws_accepted(gw):
    """RFC 9112 7.1.1: chunk-ext = *( BWS ";" BWS name [ BWS "=" BWS val ] ),
    and RFC 9110 5.6.3: a recipient MUST parse BWS and remove it."""
    d = seen(one(gw, post_chunked(b"5 ; a = b\r\nhello\r\n0\r\n\r\n")))
    assert d["body"] == "hello", d


def test_chunk_extension_near_limit_accepted(gw):
    """RFC 9112 7.1.1: sluice bounds a chunk-size line (size, extensions,
    CRLF) to 4 KiB; a 4000-byte extension, with a quoted-pair, is within it
    and the body is served."""
    ext = b';a="x\\"y";b=' + b"c" * 3980
    d = seen(one(gw, post_chunked(b"5" + ext + b"\r\nhello\r\n0\r\n\r\n")))
    assert d["body"] == "hello", d


def test_chunk_extension_too_long_4xx(gw):
    """RFC 9112 7.1.1: a server ought to limit the length of chunk
    extensions and answer 4xx when exceeded: a 1 MiB extension is not
    reasonable."""
    data = post_chunked(b"5;a=" + b"b" * (1 << 20) + b"\r\nhello\r\n0\r\n\r\n")
    reject(gw, data, (400, 413, 431))


def test_chunk_size_beyond_body_limit_413_at_once(gw):
    """RFC 9112 7.1 / RFC 9110 15.5.14: a chunk-size line announcing 1 TiB
    under the default 100 MiB limit is refused when the line is parsed
    (413 and close), not after waiting for data that would exceed it."""
    t0 = time.monotonic()
    r = reject(gw, post_chunked(b"10000000000\r\n"), 413, with_canary=False, idle=3.0)
    assert time.monotonic() - t0 < 2.5, "413 only after the client went idle"
    assert r.status == 413


def test_chunk_size_beyond_limit_after_earlier_chunks_413(gw):
    """The sum counts: a first small chunk, then one that would pass the
    limit (1 KiB left to 100 MiB), refused at its size line."""
    limit = 100 << 20
    first = b"a" * 1024
    data = post_chunked(b"400\r\n" + first + b"\r\n" + (b"%x\r\n" % (limit - 1024 + 1)))
    reject(gw, data, 413, with_canary=False, idle=3.0)


def test_chunk_size_beyond_limit_mid_response_closes(echo_gw):
    """Once the response has started (the echo worker streams its answer),
    a chunk that cannot fit cancels the stream and closes the connection:
    the client sees a truncated chunked response and EOF, promptly."""
    with Conn(echo_gw.port, timeout=5) as c:
        c.send(post_chunked(b"5\r\nhello\r\n"))
        head = c.read_head()
        assert head.status == 200, head
        c.send(b"10000000000\r\n")
        t0 = time.monotonic()
        raw, eof = read_all(c.sock, idle=3.0, total=5.0)
        assert eof, f"connection not closed: {raw!r}"
        assert not raw.endswith(b"0\r\n\r\n"), "a truncated body must not look complete"
        assert time.monotonic() - t0 < 2.5
    assert echo_gw.alive()


def test_trailers_forwarded_content_length_dropped(gw):
    """RFC 9112 7.1.2 / RFC 9110 6.5: trailer fields go to the worker (END
    frame), apart from the header fields; a Content-Length in the trailer
    section (a framing field, RFC 9110 6.5.1) is dropped."""
    d = seen(one(gw, post_chunked(b"5\r\nhello\r\n0\r\nX-Sum: abc\r\n"
                                  b"Content-Length: 99\r\n\r\n")))
    assert d["body"] == "hello", d
    assert d["trailers"] == [["x-sum", "abc"]], d
    assert not any(k == "x-sum" for k, _ in d["headers"]), d


def test_transfer_encoding_in_trailers_400(gw):
    """RFC 9110 6.5.1: framing fields are not allowed in trailers; a
    Transfer-Encoding trailer is refused (current policy: 400 and close)."""
    reject(gw, post_chunked(b"5\r\nhello\r\n0\r\nTransfer-Encoding: chunked\r\n\r\n"))


BAD_TRAILERS = {
    "ctl-in-value": [b"X-Sum: a\x01bc"],
    "obs-fold": [b"X-Sum: abc", b"  folded"],
    "space-before-colon": [b"X-Sum : abc"],
    "empty-name": [b": abc"],
    "no-colon": [b"X-Sum abc"],
    "too-many": [b"T-%d: v" % i for i in range(40)],
    "too-large": [b"T: " + b"v" * 10000],
}


@pytest.mark.parametrize("name", sorted(BAD_TRAILERS), ids=lambda n: f"9112-7.1.2-trailer-{n}")
def test_bad_trailers_rejected(gw, name):
    """RFC 9112 7.1.2: the trailer section has the field-line syntax of the
    header section and the same limits: malformed or oversized trailers get
    400 (or 431) and close."""
    body = b"5\r\nhello\r\n0\r\n" + b"".join(x + b"\r\n" for x in BAD_TRAILERS[name]) + b"\r\n"
    reject(gw, post_chunked(body), (400, 431) if name.startswith("too") else 400)


# ==========================================================================
# Neighbours -- whatever one client sends, other clients' requests in flight
# on the same workers complete and no worker link is lost

NEIGHBOUR_ATTACKS = {
    "empty-field-name": req(b"GET / HTTP/1.1", b": abc"),
    "empty-trailer-name": post_chunked(b"5\r\nhello\r\n0\r\n: abc\r\n\r\n"),
    "bad-chunk-size": post_chunked(b"5\r\nhello\r\nzz\r\n\r\n"),
    "trailer-obs-fold": post_chunked(b"5\r\nhello\r\n0\r\nX-A: b\r\n c\r\n\r\n"),
    "trailer-too-large": post_chunked(b"5\r\nhello\r\n0\r\nT: " + b"v" * 10000 + b"\r\n\r\n"),
    "cl-te": CLTE["cl-then-te"],
    "body-over-declared-length": req(b"POST / HTTP/1.1", b"Content-Length: 2", body=b"hello"),
}


@pytest.mark.parametrize("name", sorted(NEIGHBOUR_ATTACKS), ids=lambda n: f"neighbours-{n}")
def test_bad_client_does_not_hurt_neighbours(gw, name):
    """RFC 9112 11.2 (request smuggling) / DESIGN.md: "a client that
    misbehaves loses its connection, never its neighbours". Two uploads are in flight (one on each reflect worker, each
    waiting for the rest of its body) while another client sends `name`;
    then both uploads complete with 200 and the whole body, and no worker
    was restarted (no worker link was lost)."""
    pids = sorted(gw.workers())
    slow = []
    try:
        for i in range(2):
            c = Conn(gw.port, timeout=5)
            slow.append(c)
            c.send(req(b"POST /neighbour-%d HTTP/1.1" % i, b"Content-Length: 10", body=b"hello"))
        time.sleep(0.2)  # both dispatched, one per worker (least loaded)
        raw, _ = talk(gw.port, NEIGHBOUR_ATTACKS[name], idle=1.0)
        for i, c in enumerate(slow):
            c.send(b"world")
            try:
                r = c.read_response()
            except (ConnectionClosed, ConnectionResetError, socket.timeout) as e:
                raise AssertionError(f"neighbour {i} lost: {e}; attacker got {raw[:200]!r}") from None
            assert r.status == 200, f"neighbour {i} got {r.status} after {name}: {r}\n" \
                                    f"attacker got {raw[:200]!r}\n{gw.log_tail(8)}"
            d = seen(r)
            assert (d["target"], d["body"]) == (f"/neighbour-{i}", "helloworld"), d
    finally:
        for c in slow:
            c.close()
    assert sorted(gw.workers()) == pids, \
        f"a worker was restarted after {name}:\n{gw.log_tail(8)}"


# ==========================================================================
# Bodies split at every byte (echo)

ECHO_BODY = b"The quick brown fox jumps over the lazy dog"
ECHO_REQ = (b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"a;ext=1\r\n" + ECHO_BODY[:10] + b"\r\n"
            b"21\r\n" + ECHO_BODY[10:] + b"\r\n"
            b"0\r\nX-T: 1\r\n\r\n")


def _read_echo(c):
    r = c.read_response()
    assert r.status == 200, r
    assert r.header("transfer-encoding") == "chunked", r
    return r.body


def test_chunked_body_byte_by_byte_echo(echo_gw):
    """RFC 9112 7.1: chunked framing is independent of segmentation: the
    request sent one byte per write (1 ms apart) is echoed intact, and the
    connection is still in sync for a second request."""
    with Conn(echo_gw.port, timeout=10) as c:
        for i in range(len(ECHO_REQ)):
            c.send(ECHO_REQ[i:i + 1])
            time.sleep(0.001)
        assert _read_echo(c) == ECHO_BODY
        c.send(ECHO_REQ)
        assert _read_echo(c) == ECHO_BODY


def test_chunked_body_split_at_every_offset_echo(echo_gw):
    """RFC 9112 7.1: for every split point of the request into two writes
    (a pause between them), the echoed body is intact."""
    bad = []
    for i in range(1, len(ECHO_REQ)):
        with Conn(echo_gw.port, timeout=10) as c:
            c.send(ECHO_REQ[:i])
            time.sleep(0.002)
            c.send(ECHO_REQ[i:])
            try:
                body = _read_echo(c)
            except (AssertionError, ConnectionClosed, ValueError, socket.timeout) as e:
                bad.append((i, repr(e)[:200]))
                continue
            if body != ECHO_BODY:
                bad.append((i, body))
    assert not bad, f"split offsets that broke the body: {bad[:10]}"
    assert echo_gw.alive()


# ==========================================================================
# Connection management -- RFC 9112 section 9

def test_keepalive_default_http11(gw):
    """RFC 9112 9.3: HTTP/1.1 connections persist by default."""
    with Conn(gw.port, timeout=5) as c:
        for i in range(3):
            c.send(req(b"GET /ka%d HTTP/1.1" % i))
            r = c.read_response()
            assert seen(r)["target"] == f"/ka{i}"
            assert not r.has_token("connection", "close"), r
        assert c.wait_closed(0.2) is False


def test_http10_closes_by_default(gw):
    """RFC 9112 9.3: an HTTP/1.0 request without keep-alive closes the
    connection after the response; a pipelined request is never served."""
    with canary_case() as tag:
        raw, eof = talk(gw.port, b"GET /ten HTTP/1.0\r\n\r\n"
                        + b"GET /smuggled-%d HTTP/1.0\r\n\r\n" % tag)
        rs = parse_stream(raw)
        assert len(rs) == 1 and eof, raw
        assert not rs[0].has_token("connection", "keep-alive"), rs[0]
        assert f"/smuggled-{tag}" not in targets_seen(gw)


def test_http10_keepalive_honoured(gw):
    """RFC 9112 9.3 / Appendix C.2.2: an HTTP/1.0 request with Connection:
    keep-alive keeps the connection, and the response says so."""
    rs = exchange(gw, b"GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
                  b"GET /b HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", n=2)
    assert [seen(r)["target"] for r in rs] == ["/a", "/b"]
    assert all(r.has_token("connection", "keep-alive") for r in rs), rs


@pytest.mark.parametrize("value", [b"close", b"Close", b"keep-alive, close"],
                         ids=["9112-9.6-close", "9112-9.6-Close-case", "9112-9.6-close-in-list"])
def test_connection_close_honoured(gw, value):
    """RFC 9112 9.6: after a request with the close option the server
    sends Connection: close in its response, closes, and never answers a
    request pipelined behind it."""
    with canary_case() as tag:
        raw, eof = talk(gw.port, req(b"GET /last HTTP/1.1", b"Connection: " + value) + canary(tag))
        rs = parse_stream(raw)
        assert len(rs) == 1 and seen(rs[0])["target"] == "/last", raw
        assert rs[0].has_token("connection", "close"), rs[0]
        assert eof, "connection not closed after Connection: close"
        assert f"/smuggled-{tag}" not in targets_seen(gw)


def test_pipelining_10_in_order(gw):
    """RFC 9112 9.3.2: a server MUST send responses to pipelined requests
    in the order the requests were received. Ten requests (GET, HEAD, POST
    with Content-Length, POST chunked, OPTIONS) in one write."""
    parts, expect, methods = [], [], []
    for i in range(10):
        kind = i % 5
        if kind == 0:
            parts.append(req(b"GET /p%d HTTP/1.1" % i)); methods.append("GET")
        elif kind == 1:
            parts.append(req(b"HEAD /p%d HTTP/1.1" % i)); methods.append("HEAD")
        elif kind == 2:
            parts.append(req(b"POST /p%d HTTP/1.1" % i, b"Content-Length: 3", body=b"abc"))
            methods.append("POST")
        elif kind == 3:
            parts.append(post_chunked(b"3\r\nxyz\r\n0\r\n\r\n", line=b"POST /p%d HTTP/1.1" % i))
            methods.append("POST")
        else:
            parts.append(req(b"OPTIONS /p%d HTTP/1.1" % i)); methods.append("OPTIONS")
        expect.append(f"/p{i}")
    rs = exchange(gw, b"".join(parts), n=10, methods=methods)
    for i, (r, m) in enumerate(zip(rs, methods)):
        assert r.status == 200, (i, r)
        if m == "HEAD":
            assert r.body == b"", (i, r)
            continue
        d = seen(r)
        assert (d["method"], d["target"]) == (m, expect[i]), (i, d)
        if i % 5 == 2:
            assert d["body"] == "abc", d
        if i % 5 == 3:
            assert d["body"] == "xyz", d


def test_pipelining_1000_in_order(gw):
    """RFC 9112 9.3.2: 1000 pipelined requests in one write are all answered,
    in order, and the gateway's memory stays bounded (it serves one exchange
    at a time and reads ahead at most its 64 KiB input buffer)."""
    n = 1000
    data = b"".join(req(b"GET /pipe-%d HTTP/1.1" % i) for i in range(n))
    with RssMonitor(gw.pid) as mon, Conn(gw.port, timeout=20) as c:
        c.send(data)
        for i in range(n):
            r = c.read_response()
            assert seen(r)["target"] == f"/pipe-{i}", (i, r)
        assert c.wait_closed(0.2) is False
    limit = rss_limit_kib()
    if limit:
        assert mon.peak_kib() < limit, f"gateway RSS {mon.peak_kib()} KiB"


def test_pipelining_unread_responses_bounded(start_gateway):
    """RFC 9112 9.3.2 / DESIGN.md (every buffer has an upper bound): a client
    that pipelines 20000 requests for 4 KiB each and does not read the
    responses must not make the gateway buffer them (80 MB; unbounded they
    pile up in the gateway until its 64 MiB output cap closes the
    connection): it stops starting requests, and so reading, while 64 KiB
    of responses are unsent. Its RSS grows by less than 8 MiB in 3 s of
    this (three header timeouts: the held-back requests are not a slow
    head); then every response arrives, in order."""
    from httpc import blob_check
    # a 1 s header timeout: holding requests back is not a slow head
    g = start_gateway("blob", "--access-log", "off", "--header-timeout", "1s", workers=1)
    n, size = 20_000, 4096
    one_req = b"GET /?n=%d HTTP/1.1\r\nHost: x\r\n\r\n" % size
    rss0 = proc_status_kib(g.pid, "VmRSS")
    # a small fixed receive buffer: no autotuned client buffer to hide them
    c = Conn(g.port, timeout=60, rcvbuf=64 * 1024)
    sent = threading.Event()
    errors = []

    def writer():
        try:
            c.sock.sendall(one_req * n)
        except OSError as e:
            errors.append(e)
        sent.set()

    t = threading.Thread(target=writer, daemon=True)
    try:
        with RssMonitor(g.pid) as mon:
            t.start()
            time.sleep(3.0)  # not reading
            grown = mon.max_kib - rss0
        assert grown < 8 * 1024, f"gateway RSS grew by {grown} KiB while the client did not read"
        for i in range(n):
            r = c.read_response()
            assert r.status == 200 and len(r.body) == size and blob_check(r.body, 0), (i, r)
        t.join(10)
        assert sent.is_set() and not errors, errors
    finally:
        c.close()
    assert g.alive()


def test_upgrade_ignored(gw):
    """RFC 9110 7.8: a server MAY ignore Upgrade; then it answers normally
    (no 101), strips the hop-by-hop Upgrade/Connection, and goes on parsing
    HTTP/1.1 on the connection. (Upgrade: websocket is the gateway's own
    business: test_ws_conformance.py.)"""
    rs = exchange(gw, req(b"GET /up HTTP/1.1", b"Upgrade: foo/1", b"Connection: Upgrade")
                  + req(b"GET /after-up HTTP/1.1"), n=2)
    d0, d1 = seen(rs[0]), seen(rs[1])
    assert d0["target"] == "/up" and d1["target"] == "/after-up"
    names = [k for k, _ in d0["headers"]]
    assert "upgrade" not in names and "connection" not in names, d0


def test_hop_by_hop_fields_not_forwarded(gw):
    """RFC 9110 7.6.1: the fields named in Connection and the fixed
    hop-by-hop set (Keep-Alive, Proxy-Connection, TE other than "trailers",
    Upgrade without an upgrade) do not reach the worker; end-to-end fields
    do, in order."""
    d = seen(one(gw, req(b"GET /hop HTTP/1.1", b"Connection: keep-alive, X-Hop , x-other",
                         b"X-Hop: 1", b"X-Keep: 2", b"Keep-Alive: timeout=5",
                         b"Proxy-Connection: keep-alive", b"TE: gzip",
                         b"Upgrade: foo/1", b"X-Other: 3", b"Connection: X-Third",
                         b"X-Third: 4")))
    names = [k for k, _ in d["headers"]]
    for hop in ("connection", "x-hop", "x-other", "x-third", "keep-alive",
                "proxy-connection", "te", "upgrade", "transfer-encoding"):
        assert hop not in names, (hop, d["headers"])
    assert names == ["host", "x-keep"], d["headers"]


def test_te_trailers_forwarded(gw):
    """TE: trailers tells the worker the client takes trailers (gRPC needs
    it): that one value is passed on as te: trailers."""
    d = seen(one(gw, req(b"GET /te HTTP/1.1", b"TE: trailers")))
    assert ["te", "trailers"] in d["headers"], d["headers"]
    d = seen(one(gw, req(b"GET /te HTTP/1.1", b"TE: trailers, deflate")))
    assert "te" not in [k for k, _ in d["headers"]], d["headers"]


def test_connection_cannot_strip_host(gw):
    """Connection: host does not remove Host: the worker always sees the
    Host the request was routed by (PROTOCOL.md)."""
    d = seen(one(gw, req(b"GET /h HTTP/1.1", b"Connection: host", host=b"example.org")))
    assert ["host", "example.org"] in d["headers"], d["headers"]


# ==========================================================================
# Expect -- RFC 9110 section 10.1.1

@pytest.mark.parametrize("value", [b"100-continue", b"100-Continue"],
                         ids=["9110-10.1.1-100-continue", "9110-10.1.1-case-insensitive"])
def test_expect_100_continue_echo(echo_gw, value):
    """RFC 9110 10.1.1: the server sends 100 Continue before the body is
    sent, then the final response (echo returns the body)."""
    with Conn(echo_gw.port, timeout=5) as c:
        c.send(b"POST /e HTTP/1.1\r\nHost: x\r\nExpect: " + value + b"\r\nContent-Length: 11\r\n\r\n")
        interim = c.read_response()
        assert (interim.status, interim.reason, interim.body) == (100, "Continue", b""), interim
        c.send(b"hello world")
        r = c.read_response()
        assert r.status == 200 and r.body == b"hello world", r
        assert not c.buf


@pytest.mark.parametrize("value", [b"foo", b"200-ok"], ids=["9110-10.1.1-417-foo", "9110-10.1.1-417-200-ok"])
def test_expect_unknown_417(gw, value):
    """RFC 9110 10.1.1: a server that receives an Expect value other than
    100-continue MAY respond 417 Expectation Failed; sluice does, without
    forwarding the request."""
    r = one(gw, req(b"GET /exp HTTP/1.1", b"Expect: " + value))
    assert r.status == 417, r
    assert_std_headers(r)


def test_expect_100_continue_ignored_on_http10(gw):
    """RFC 9110 10.1.1: a server MUST ignore a 100-continue expectation in
    an HTTP/1.0 request: no interim 100, just the final response."""
    raw, eof = talk(gw.port, b"POST /e10 HTTP/1.0\r\nExpect: 100-continue\r\n"
                    b"Content-Length: 5\r\n\r\nhello")
    rs = parse_stream(raw)
    assert [r.status for r in rs] == [200], raw
    assert seen(rs[0])["body"] == "hello"


# ==========================================================================
# Responses -- RFC 9110 / RFC 9112

def test_date_and_server_on_success_and_error(gw):
    """RFC 9110 6.6.1: an origin server with a clock MUST send Date (on 2xx,
    3xx, 4xx); RFC 9110 10.2.4: Server."""
    assert_std_headers(one(gw, req(b"GET / HTTP/1.1")))
    assert_std_headers(reject(gw, b"GET / HTTP/1.1\r\n\r\n"))


def test_head_same_headers_no_body(gw):
    """RFC 9110 9.3.2: HEAD gets the same header fields as GET (here
    Content-Length: 14) and no content; the pipelined GET after it is
    intact."""
    rs = exchange(gw, req(b"HEAD /fixed HTTP/1.1") + req(b"GET /fixed HTTP/1.1"), n=2,
                  methods=["HEAD", "GET"])
    head, get_ = rs
    assert head.status == get_.status == 200
    assert head.body == b"" and get_.body == HELLO, rs
    strip = lambda r: [(k.lower(), v) for k, v in r.headers if k.lower() != "date"]
    assert strip(head) == strip(get_), rs


@pytest.mark.parametrize("status", [204, 304], ids=["9110-15.3.5-204", "9110-15.4.5-304"])
def test_no_body_statuses(gw, status):
    """RFC 9112 6.3 (1) / RFC 9110 15.3.5, 15.4.5: 204 and 304 responses end
    at the header section even if the worker sends body bytes (dropped);
    204 carries neither Content-Length (RFC 9110 8.6) nor
    Transfer-Encoding (RFC 9112 6.1); the pipelined response after it is
    intact."""
    with Conn(gw.port, timeout=5) as c:
        c.send(req(b"GET /status/%d HTTP/1.1" % status) + req(b"GET /fixed HTTP/1.1"))
        r = c.read_head()
        assert r.status == status, r
        assert r.header("transfer-encoding") is None, r
        if status == 204:
            assert r.header("content-length") is None, r
        nxt = c.read_response()
        assert nxt.status == 200 and nxt.body == HELLO, \
            f"bytes after the {status} head were not the next response: {nxt}"


def test_chunked_response_framing_exact(gw):
    """RFC 9112 7.1: a worker response without Content-Length goes out as
    chunked to an HTTP/1.1 client: exact chunk framing, the worker's
    trailer in the trailer section, no Content-Length (RFC 9112 6.2)."""
    raw_resp = None
    with Conn(gw.port, timeout=5) as c:
        c.send(req(b"GET /chunked HTTP/1.1") + req(b"GET /fixed HTTP/1.1"))
        head = c.read_head()
        assert head.header("transfer-encoding") == "chunked", head
        assert head.header("content-length") is None, head
        want = b"3\r\nabc\r\n5\r\ndefgh\r\n0\r\nx-trailer: done\r\n\r\n"
        raw_resp = c._read_exact(len(want))
        assert raw_resp == want
        nxt = c.read_response()
        assert nxt.status == 200 and nxt.body == HELLO, nxt


def test_chunked_response_to_http10_is_close_delimited(gw):
    """RFC 9112 6.1: a server MUST NOT send Transfer-Encoding to an HTTP/1.0
    client; without a length the body ends with the close (6.3 (8))."""
    raw, eof = talk(gw.port, b"GET /chunked HTTP/1.0\r\n\r\n")
    rs = parse_stream(raw)
    assert len(rs) == 1 and eof, raw
    r = rs[0]
    assert r.header("transfer-encoding") is None and r.header("content-length") is None, r
    assert r.body == b"abcdefgh" and r.has_token("connection", "close"), r


def test_content_length_response_honoured(gw):
    """RFC 9112 6.3 (6): the worker's Content-Length frames the response
    exactly; the next pipelined response starts right after it."""
    with Conn(gw.port, timeout=5) as c:
        c.send(req(b"GET /fixed HTTP/1.1") + req(b"GET /next HTTP/1.1"))
        r = c.read_head()
        assert r.header_all("content-length") == ["14"] and r.header("transfer-encoding") is None, r
        assert c._read_exact(14) == HELLO
        assert seen(c.read_response())["target"] == "/next"


# ==========================================================================
# Limits and timeouts (hello, --header-timeout 1s --keepalive-timeout 1s
# --max-requests-per-conn 3)

def test_header_timeout_slowloris_408(limits_gw):
    """RFC 9110 15.5.9: a request head trickled in slower than
    --header-timeout (1 s; one byte every 150 ms, the clock not reset by
    progress) gets 408 with Connection: close, and the connection closes."""
    s = socket.create_connection(("127.0.0.1", limits_gw.port), timeout=5)
    try:
        t0 = time.monotonic()
        data = b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 60
        got = b""
        s.settimeout(0.15)
        for b in data:
            if time.monotonic() - t0 > 4.0:
                break
            try:
                s.send(bytes([b]))
                d = s.recv(4096)
            except socket.timeout:
                continue
            except (BrokenPipeError, ConnectionResetError):
                break
            if not d:
                break
            got += d
            break
        elapsed = time.monotonic() - t0
        rest, eof = read_all(s, idle=2.0, total=4.0)
        got += rest
    finally:
        s.close()
    rs = parse_stream(got)
    assert len(rs) == 1 and rs[0].status == 408, got
    assert rs[0].has_token("connection", "close") and eof, (got, eof)
    assert 0.8 <= elapsed <= 3.0, f"408 after {elapsed:.2f} s (header timeout 1 s)"


def test_header_timeout_idle_new_connection(limits_gw):
    """RFC 9112 9.5 / RFC 9110 15.5.9: --header-timeout also bounds a
    connection that sends nothing: closed (silently, or with a 408) within
    about 1 s."""
    s = socket.create_connection(("127.0.0.1", limits_gw.port), timeout=5)
    try:
        t0 = time.monotonic()
        raw, eof = read_all(s, idle=4.0, total=4.0)
        elapsed = time.monotonic() - t0
    finally:
        s.close()
    assert eof and 0.8 <= elapsed <= 3.0, (raw, eof, elapsed)
    assert raw == b"" or parse_stream(raw)[0].status == 408, raw


def test_header_timeout_restarts_for_next_request(limits_gw):
    """RFC 9110 15.5.9: after a response, a partial next head gets its own
    1 s header timeout: 408 and close."""
    with Conn(limits_gw.port, timeout=5) as c:
        c.send(req(b"GET / HTTP/1.1"))
        assert c.read_response().body == HELLO
        t0 = time.monotonic()
        c.send(b"GET / HTTP/1.1\r\nHost")
        r = c.read_response()
        elapsed = time.monotonic() - t0
        assert r.status == 408 and r.has_token("connection", "close"), r
        assert c.wait_closed(2) is True
    assert 0.8 <= elapsed <= 3.0, elapsed


def test_keepalive_idle_timeout(limits_gw):
    """RFC 9112 9.5: a server may close an idle persistent connection;
    with --keepalive-timeout 1s it does so after about 1 s, without
    sending anything."""
    with Conn(limits_gw.port, timeout=5) as c:
        c.send(req(b"GET / HTTP/1.1"))
        r = c.read_response()
        assert r.status == 200 and not r.has_token("connection", "close"), r
        t0 = time.monotonic()
        closed = c.wait_closed(4)
        elapsed = time.monotonic() - t0
    assert closed is True, f"idle connection not closed (got {closed!r})"
    assert 0.7 <= elapsed <= 3.0, elapsed


def test_max_requests_per_conn_sequential(limits_gw):
    """--max-requests-per-conn 3: responses 1 and 2 keep the connection, the
    third carries Connection: close (RFC 9112 9.6) and the server closes."""
    with Conn(limits_gw.port, timeout=5) as c:
        for i in range(3):
            c.send(req(b"GET / HTTP/1.1"))
            r = c.read_response()
            assert r.status == 200 and r.body == HELLO, (i, r)
            assert r.has_token("connection", "close") == (i == 2), (i, r)
        assert c.wait_closed(2) is True


def test_max_requests_per_conn_pipelined(limits_gw):
    """--max-requests-per-conn 3 with 5 requests in one write: exactly 3
    answered, the third with Connection: close; the rest never served."""
    raw, eof = talk(limits_gw.port, req(b"GET / HTTP/1.1") * 5)
    rs = parse_stream(raw)
    assert [r.status for r in rs] == [200, 200, 200], raw
    assert [r.has_token("connection", "close") for r in rs] == [False, False, True], rs
    assert eof


# ==========================================================================
# Request body idle timeout (--body-timeout 1s) -- RFC 9110 15.5.9

@pytest.fixture(scope="module")
def body_timeout_gw(reflect_log):
    """reflect workers (they answer after END) with --body-timeout 1s."""
    with running_gateway(reflect_cmd(reflect_log), "--body-timeout", "1s", workers=1) as g:
        g.reflect_log = reflect_log
        yield g


@pytest.fixture(scope="module")
def body_timeout_echo_gw():
    """echo (its response head goes out before the body) with --body-timeout 1s."""
    with running_gateway([example("echo")], "--body-timeout", "1s", workers=1) as g:
        g.reflect_log = None
        yield g


def _stall(port, data, wait=4.0):
    """Send `data`, then nothing; returns (raw, eof, seconds until EOF)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        s.sendall(data)
        t0 = time.monotonic()
        raw, eof = read_all(s, idle=wait, total=wait)
        return raw, eof, time.monotonic() - t0
    finally:
        s.close()


@pytest.mark.parametrize("framing", ["content-length", "chunked"],
                         ids=lambda f: f"9110-15.5.9-body-idle-{f}")
def test_body_idle_timeout_408(body_timeout_gw, framing):
    """RFC 9110 15.5.9: a client that stops sending its request body (no
    bytes for --body-timeout, 1 s) before any response gets 408 with
    Connection: close, and the connection closes."""
    if framing == "content-length":
        data = req(b"POST /slow-body HTTP/1.1", b"Content-Length: 10", body=b"hello")
    else:
        data = post_chunked(b"a\r\nhello", line=b"POST /slow-body HTTP/1.1")
    raw, eof, elapsed = _stall(body_timeout_gw.port, data)
    rs = parse_stream(raw)
    assert [r.status for r in rs] == [408], raw
    assert rs[0].has_token("connection", "close") and eof, (raw, eof)
    assert 0.8 <= elapsed <= 3.0, f"408 after {elapsed:.2f} s (body timeout 1 s)"


def test_body_progress_keeps_upload_alive(body_timeout_gw):
    """RFC 9110 15.5.9: the body timeout bounds the pause between body
    bytes, not the upload: 6 pieces 0.4 s apart (2.4 s in all, over the 1 s
    timeout) are served."""
    head = req(b"POST /steady HTTP/1.1", b"Content-Length: 12")
    raw, eof = talk(body_timeout_gw.port, None, pieces=[head] + [b"ab"] * 6, gap=0.4, idle=1.5)
    rs = parse_stream(raw)
    assert len(rs) == 1 and seen(rs[0])["body"] == "ab" * 6, raw


def test_body_idle_timeout_after_response_head(body_timeout_echo_gw):
    """RFC 9112 9.6 / 7.1: once the response head went out (echo streams the
    body back), a stalled upload can no longer get a 408: after
    --body-timeout the gateway cancels the stream (reason body_timeout) and
    closes the connection; the chunked response is left incomplete, so the
    client sees it was cut short."""
    g = body_timeout_echo_gw
    data = req(b"POST /echo HTTP/1.1", b"Content-Length: 10", body=b"hello")
    raw, eof, elapsed = _stall(g.port, data)
    assert raw.startswith(b"HTTP/1.1 200 "), raw
    assert b"5\r\nhello\r\n" in raw and not raw.endswith(b"0\r\n\r\n"), raw
    assert eof and 0.8 <= elapsed <= 3.0, (raw, eof, elapsed)
    assert g.wait_log(lambda l: "cancelled: body_timeout" in l, timeout=3), g.log_tail()
    assert g.alive()


# ==========================================================================
# last: nothing smuggled ever reached a worker, every gateway survived

def test_zz_no_canary_reached_a_worker(gw):
    """Sweep: no /smuggled-N target was ever delivered to a reflect worker
    during this module (a late delivery would escape the per-case check)."""
    time.sleep(0.3)
    leaked = [t for t in targets_seen(gw) if t.startswith("/smuggled-")
              and int(t.split("-", 1)[1]) not in _failed_tags]
    assert not leaked, f"smuggled requests reached a worker: {leaked}"
    assert gw.alive()
