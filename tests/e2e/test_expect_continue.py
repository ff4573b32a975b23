"""Expect: 100-continue against C workers that answer before they read.

The gateway answers 100 Continue only when the worker's first CREDIT arrives
before the final head (PROTOCOL.md section 6). The ``echo`` example sends its
response head from on_request and starts reading when on_request returns, so
the C library must put that CREDIT ahead of the RESPONSE: otherwise the
client waits out its own expect timeout (curl: 1 s) and the connection is
closed after the response. A worker that answers without reading never
grants credit: no 100, and the body is never forwarded."""

import os
import socket
import time

import pytest

from conftest import free_port
from httpc import Conn, get, request_bytes

CONTINUE_WAIT = 0.5  # well under curl's 1 s expect timeout


def read_interim(c, what):
    c.settimeout(CONTINUE_WAIT)
    try:
        r = c.read_head()
    except socket.timeout:
        pytest.fail(f"nothing within {CONTINUE_WAIT} s: expected {what}")
    c.settimeout(10)
    return r


def test_echo_answers_100_before_its_head_then_echoes_and_keeps_the_connection(start_gateway):
    gw = start_gateway("echo", workers=1)
    body = os.urandom(300000)
    with Conn(gw.port, timeout=10) as c:
        for i in range(2):  # the second exchange proves the connection was kept
            c.send(request_bytes("PUT", f"/up?i={i}", [("Content-Length", str(len(body))),
                                                       ("Expect", "100-continue")]))
            r = read_interim(c, "100 Continue")
            assert r.status == 100, f"the final head came before 100 Continue: {r}"
            c.send(body)
            r, interim = c.read_final("PUT")
            assert interim == [], interim
            assert r.status == 200, r
            assert r.body == body, (len(r.body), len(body))
            assert not r.has_token("Connection", "close"), r
        c.send(request_bytes("GET", "/after"))
        r, _ = c.read_final()
        assert r.status == 200 and r.body == b"", r


def test_echo_with_expect_over_the_limit_still_gets_413(start_gateway):
    """The CREDIT ahead of the head lets the gateway decide 413 first."""
    gw = start_gateway("echo", "--max-body", "1k", workers=1)
    with Conn(gw.port, timeout=10) as c:
        c.send(request_bytes("PUT", "/", [("Content-Length", str(1 << 20)),
                                          ("Expect", "100-continue")]))
        r, interim = c.read_final("PUT")
    assert r.status == 413, r
    assert interim == [], f"100 Continue sent before 413: {interim}"


def test_worker_answering_later_without_reading_gets_no_100_and_no_body(start_gateway):
    """hello?delay=MS pauses reading and answers from a timer: had any credit
    been granted, 100 Continue would have come at once, and the gateway would
    have read the body from the client (its received-bytes metric)."""
    admin = free_port()
    gw = start_gateway("hello", "--admin", f"127.0.0.1:{admin}", workers=1)
    with Conn(gw.port, timeout=10) as c:
        c.send(request_bytes("PUT", "/refuse?delay=300", [("Content-Length", "200000"),
                                                          ("Expect", "100-continue")]))
        t0 = time.monotonic()
        r = c.read_response("PUT")
        assert r.status == 200, f"expected the final status without 100 Continue first: {r}"
        assert time.monotonic() - t0 >= 0.25, "answered before its delay"
        c.send(b"u" * 200000)  # a client that sends the body anyway (curl after 1 s)
        time.sleep(0.3)
    deadline = time.monotonic() + 5
    while metric(admin, "sluice_requests_total") < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert metric(admin, "sluice_requests_total") == 1
    assert metric(admin, "sluice_received_bytes_total") == 0, "request-body bytes read from the client"


def metric(port, name):
    """Sum of the samples of `name` on the admin /metrics."""
    r = get(port, "/metrics")
    assert r.status == 200, r
    total = 0.0
    for line in r.body.decode().splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total += float(line.rsplit(" ", 1)[1])
    return total
