"""A worker that answers before it has read the upload (PROTOCOL.md 6.1).

examples/c/hello answers every request at once and never reads a body.
The gateway then reads and drops up to 256 KiB of the rest of the upload,
so that a keep-alive client can send its next request on the same
connection (as nginx and Go's net/http do); a larger rest, or one that
stops coming, ends with the connection closed after the response."""

import socket
import time

from httpc import Conn, request_bytes

HELLO = b"Hello, world!\n"


def post(c, body, headers=()):
    c.send(request_bytes("POST", "/upload", list(headers), body))
    r, _ = c.read_final("POST")
    return r


def test_a_small_unread_upload_keeps_the_connection(start_gateway):
    gw = start_gateway("hello", workers=1)
    with Conn(gw.port) as c:
        for size in (100_000, 200_000, 255 * 1024):
            r = post(c, b"u" * size)
            assert r.status == 200 and r.body == HELLO, r
            assert not r.has_token("connection", "close"), r
        # and a plain request after them, on the same connection
        c.send(request_bytes("GET", "/"))
        r, _ = c.read_final()
        assert r.status == 200 and r.body == HELLO, r


def test_a_chunked_unread_upload_keeps_the_connection(start_gateway):
    gw = start_gateway("hello", workers=1)
    chunk = b"c" * 40_000
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(4)) + b"0\r\nX-Trailer: t\r\n\r\n"
    with Conn(gw.port) as c:
        for _ in range(3):
            c.send(request_bytes("POST", "/", [("Transfer-Encoding", "chunked")]) + body)
            r, _ = c.read_final("POST")
            assert r.status == 200 and r.body == HELLO, r
        c.send(request_bytes("GET", "/"))
        r, _ = c.read_final()
        assert r.status == 200, r


def test_a_request_pipelined_behind_the_dropped_rest_is_answered(start_gateway):
    gw = start_gateway("hello", workers=1)
    with Conn(gw.port) as c:
        c.send(request_bytes("POST", "/", body=b"p" * 150_000) + request_bytes("GET", "/second"))
        r1, _ = c.read_final("POST")
        r2, _ = c.read_final()
        assert r1.status == 200 and r2.status == 200 and r2.body == HELLO, (r1, r2)


def test_a_large_unread_upload_closes_after_the_response(start_gateway):
    gw = start_gateway("hello", workers=1)
    with Conn(gw.port) as c:
        head = request_bytes("POST", "/", [("Content-Length", str(8 << 20))])
        c.send(head + b"x" * 65536)  # the rest (8 MiB) would never be read
        r, _ = c.read_final("POST")
        assert r.status == 200 and r.body == HELLO, r
        assert c.wait_closed(5), "the gateway keeps a connection whose upload it will not read"
    assert gw.alive()


def test_an_unread_upload_that_stops_coming_is_closed_after_the_body_timeout(start_gateway):
    gw = start_gateway("hello", "--body-timeout", "1s", workers=1)
    with Conn(gw.port) as c:
        c.send(request_bytes("POST", "/", [("Content-Length", "100000")]) + b"s" * 1000)
        r, _ = c.read_final("POST")
        assert r.status == 200 and r.body == HELLO, r
        t0 = time.monotonic()
        assert c.wait_closed(5)
        assert time.monotonic() - t0 < 3
    # nothing was logged as a failure of the exchange: it got its 200
    assert " 200 " in gw.log() and " 408 " not in gw.log()


def test_expect_continue_without_credit_still_closes(start_gateway):
    """A client waiting for 100 Continue sends nothing more: the response
    says Connection: close (unchanged)."""
    gw = start_gateway("hello", workers=1)
    with Conn(gw.port) as c:
        c.send(request_bytes("POST", "/", [("Content-Length", "50000"), ("Expect", "100-continue")]))
        r, _ = c.read_final("POST")
        assert r.status == 200 and r.has_token("connection", "close"), r
        try:
            assert c.wait_closed(5)
        except (ConnectionResetError, socket.error):
            pass


def _upload_and_read(port, head, total):
    """As most HTTP clients do: send the head and the whole body, then read
    the response. Returns the response, or the exception that ended the
    exchange (a reset while still sending loses the response to such a
    client)."""
    c = Conn(port)
    try:
        c.send(head)
        block = b"z" * 65536
        for _ in range(total // len(block)):
            c.sock.sendall(block)
        r, _ = c.read_final("POST")
        return r
    except OSError as e:
        return e
    finally:
        c.close()


def test_a_refused_upload_still_gets_its_response_while_the_client_sends(start_gateway):
    """413 for a declared length over max_body, to a client that sends its
    whole body before it reads: the gateway half-closes and reads (and drops)
    what comes for a while before closing (lingering close), so the client
    is not reset in the middle of its upload and reads its 413."""
    gw = start_gateway("echo", "--max-body", "1k", workers=1)  # it reads: its credit brings the 413
    head = request_bytes("POST", "/", [("Content-Length", str(16 << 20))])
    for _ in range(10):
        r = _upload_and_read(gw.port, head, 16 << 20)
        assert not isinstance(r, Exception), repr(r)
        assert r.status == 413, r
        assert r.has_token("connection", "close"), r


def test_an_early_answer_to_a_large_upload_arrives_whole(start_gateway):
    gw = start_gateway("hello", workers=1)
    head = request_bytes("POST", "/", [("Content-Length", str(16 << 20))])
    for _ in range(10):
        r = _upload_and_read(gw.port, head, 16 << 20)
        assert not isinstance(r, Exception), repr(r)
        assert r.status == 200 and r.body == HELLO, r
