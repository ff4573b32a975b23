"""Remote mode (PROTOCOL.md 10.6) against fake gateways: several links,
reconnecting, one capacity, orderly stop, ERROR auth, resolution, TLS,
liveness pings; on asyncio and trio. Every wait is bounded."""

from __future__ import annotations

import logging
import random
import re
import tempfile
import time

import pytest

from fakegw import FakeGateway, FakeListener, GatewayLink, RemoteWorker, make_pki, native_asyncio, server_tls
from sluice import Response
from sluice import _remote as R
from sluice import protocol as P

try:
    import uvloop  # noqa: F401
    HAVE_UVLOOP = True
except ImportError:
    HAVE_UVLOOP = False

# uvloop is the CLI's default loop when installed
BACKENDS = ["asyncio", pytest.param("uvloop", marks=pytest.mark.skipif(not HAVE_UVLOOP, reason="no uvloop")),
            "trio"]


async def app(req):
    if req.path == "/slow":
        await req.body()  # held open until the gateway sends END
    return Response(b"hello " + req.raw_path)


def request(gl: GatewayLink, target: bytes = b"/", body: int = 0) -> int:
    sid = gl.next_sid
    gl.next_sid += 2
    gl.send(P.Request(sid, b"GET", target, 11, [[b"host", b"x"]], ("127.0.0.1", 1), ("127.0.0.1", 2), "http",
                      body))
    return sid


def response(gl: GatewayLink, sid: int) -> tuple[int, bytes]:
    """(status, body) of a whole response on ``sid``."""
    f = gl.recv_stream(sid)
    assert isinstance(f, P.Response), f
    body = b""
    while True:
        g = gl.recv_stream(sid)
        if isinstance(g, P.Body):
            body += bytes(g.data)
        else:
            assert isinstance(g, P.End), g
            return f.status, body


def served(gl: GatewayLink, target: bytes = b"/x") -> None:
    assert response(gl, request(gl, target)) == (200, b"hello " + target)


def drain(gl: GatewayLink) -> None:
    """RETIRE expected, answered with DRAIN; the worker then closes."""
    assert isinstance(gl.recv(), P.Retire)
    gl.send(P.Drain(1000))
    assert gl.expect_eof() == []
    gl.close()  # as a gateway does (a TLS worker waits for our close_notify)


@pytest.fixture
def listeners():
    made: list[FakeListener] = []

    def make(*a, **kw) -> FakeListener:
        made.append(FakeListener(*a, **kw))
        return made[-1]

    yield make
    for lst in made:
        lst.close()


@pytest.fixture(scope="module")
def pki():
    with tempfile.TemporaryDirectory(prefix="sluice-pki-") as d:
        files = make_pki(d)
        if files is None:
            pytest.skip("openssl command not found")
        yield files


# -- no I/O ---------------------------------------------------------------------------

def test_address_forms():
    es = R.parse_addresses(" /run/a.sock, unix:/run/b.sock,,tcp:gw.example:7000 , tcp:[::1]:7001,"
                           "tls:10.0.0.1:443, tls:[fe80::1]:8443 ")
    assert [(e.kind, e.host, e.port) for e in es] == [
        ("unix", "/run/a.sock", 0), ("unix", "/run/b.sock", 0), ("tcp", "gw.example", 7000),
        ("tcp", "::1", 7001), ("tls", "10.0.0.1", 443), ("tls", "fe80::1", 8443)]
    assert [e.is_name for e in es] == [False, False, True, False, False, False]
    assert R.parse_addresses(["tcp:a:1", "tcp:b:2,unix:/x"])[2].host == "/x"
    for bad in ("tcp:host", "tcp:host:0", "tcp:host:70000", "tcp:::1:80", "tls:[host]:80", "tcp:[::1]80", " , "):
        with pytest.raises(R.ConfigError):
            R.parse_addresses(bad)


def test_remote_mode_is_several_addresses_or_tcp_or_tls():
    assert not R.is_remote(R.parse_addresses("/run/a.sock"))
    assert not R.is_remote(R.parse_addresses("unix:/run/a.sock,"))
    assert R.is_remote(R.parse_addresses("/run/a.sock,/run/b.sock"))
    assert R.is_remote(R.parse_addresses("tcp:127.0.0.1:1"))
    assert R.is_remote(R.parse_addresses("tls:gw:1"))


def test_settings_from_environment_and_options():
    env = {"SLUICE_TOKEN": "t", "SLUICE_TLS_CA": "/ca.pem", "SLUICE_TLS_SERVER_NAME": "gw",
           "SLUICE_RESOLVE_INTERVAL": "0.2"}
    s = R.Settings.from_options(env=env)
    assert (s.token, s.tls_ca, s.tls_cert, s.tls_server_name, s.resolve_interval) == ("t", "/ca.pem", None, "gw", 1.0)
    s = R.Settings.from_options(token="u", tls_server_name="other", resolve_interval=5, env=env)
    assert (s.token, s.tls_server_name, s.resolve_interval) == ("u", "other", 5)
    assert R.Settings.from_options(env={}).resolve_interval == 10
    with pytest.raises(R.ConfigError):
        R.Settings.from_options(env={"SLUICE_TLS_CERT": "/c.pem"})
    with pytest.raises(R.ConfigError):
        R.Settings.from_options(tls_key="/k.pem", env={})
    with pytest.raises(R.ConfigError):
        R.Settings.from_options(env={"SLUICE_RESOLVE_INTERVAL": "soon"})


def test_ping_interval_setting_and_handshake_bound():
    s = R.Settings.from_options(env={})
    assert (s.ping_interval, s.handshake_timeout) == (5, 10)
    s = R.Settings.from_options(env={"SLUICE_PING_INTERVAL": "2"})
    assert (s.ping_interval, s.handshake_timeout) == (2, 6)
    assert R.Settings.from_options(env={"SLUICE_PING_INTERVAL": "0.2"}).ping_interval == 1  # at least 1
    # the option may go below 1 s (tests), and wins over the variable
    s = R.Settings.from_options(ping_interval=0.25, env={"SLUICE_PING_INTERVAL": "7"})
    assert (s.ping_interval, s.handshake_timeout) == (0.25, 0.75)
    with pytest.raises(R.ConfigError):
        R.Settings.from_options(env={"SLUICE_PING_INTERVAL": "often"})
    with pytest.raises(R.ConfigError):
        R.Settings.from_options(ping_interval=0, env={})


def test_backoff_doubles_to_two_seconds_with_jitter_and_resets():
    class Top(random.Random):
        def uniform(self, a, b):
            return b

    b = R.Backoff(Top())
    assert [b.next_wait() for _ in range(7)] == [0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0]
    b.reset()
    assert b.next_wait() == 0.1
    b = R.Backoff(random.Random(1))
    for d in (0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0, 2.0):
        assert d / 2 <= b.next_wait() <= d


# -- fake gateways ----------------------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
def test_two_gateways_both_served_then_orderly_stop(backend, listeners):
    a, b = listeners("tcp"), listeners("unix")
    w = RemoteWorker(app, f" {a.address}, ,{b.address},{a.address}", backend, token="s3cret", max_streams=7)
    la, lb = a.accept(), b.accept()
    for gl in (la, lb):
        assert gl.hello.settings["token"] == "s3cret"
        assert gl.hello.settings["max_streams"] == 7
    with pytest.raises(TimeoutError):  # an address listed twice is one link
        a.accept(timeout=0.3)
    served(la, b"/a")
    served(lb, b"/b")
    served(la, b"/a2")
    w.shutdown.trigger()
    drain(la)
    assert w.running()  # until every link has its DRAIN
    drain(lb)
    assert w.wait() == 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_one_capacity_across_links(backend, listeners):
    a, b = listeners(), listeners()
    w = RemoteWorker(app, [a.address, b.address], backend, max_streams=1)
    la, lb = a.accept(), b.accept()
    slow = request(la, b"/slow", body=1)
    time.sleep(0.1)
    sid = request(lb, b"/x")
    f = lb.recv_stream(sid)
    assert isinstance(f, P.Reset) and f.code == P.RESET_CODES["overloaded"]
    la.send(P.End(slow))
    assert response(la, slow) == (200, b"hello /slow")
    served(lb)
    w.shutdown.trigger()
    drain(la)
    drain(lb)
    assert w.wait() == 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_reconnects_after_a_close_and_after_drain(backend, listeners, caplog):
    caplog.set_level(logging.INFO, "sluice")
    a, b = listeners(), listeners()
    w = RemoteWorker(app, [a.address, b.address], backend)
    la, lb = a.accept(), b.accept()
    t0 = time.monotonic()
    la.close()  # no DRAIN: the gateway died
    la = a.accept(timeout=2)
    assert time.monotonic() - t0 < 1.0
    served(la)
    sid = request(lb, b"/slow", body=1)
    time.sleep(0.05)
    lb.send(P.Drain(1000))  # that gateway is stopping: its streams finish, then the link closes
    with pytest.raises(TimeoutError):
        lb.recv(timeout=0.2)
    lb.send(P.End(sid))
    assert response(lb, sid) == (200, b"hello /slow")
    assert lb.expect_eof() == []
    lb = b.accept(timeout=2)
    served(lb)
    assert w.running()
    w.shutdown.trigger()
    drain(la)
    drain(lb)
    assert w.wait() == 0
    assert sum("lost" in r.getMessage() for r in caplog.records) == 2


@pytest.mark.parametrize("backend", BACKENDS)
def test_backoff_while_the_gateway_is_down_then_reattach(backend, listeners, caplog):
    caplog.set_level(logging.INFO, "sluice")
    a = listeners()
    w = RemoteWorker(app, a.address, backend)
    la = a.accept()
    a.stop()
    la.close()
    time.sleep(1.5)  # refused: retries after ~0.1, 0.2, 0.4, 0.8 s (each wait in [d/2, d])
    a.listen()
    t0 = time.monotonic()
    la = a.accept(timeout=3)
    assert time.monotonic() - t0 < 2.2  # the cap is 2 s
    served(la)
    msgs = [r.getMessage() for r in caplog.records]
    # the loss and the first failed reconnect, then quiet until attached again
    assert sum("lost" in m for m in msgs) == 1
    assert sum("cannot attach" in m for m in msgs) == 1
    assert sum("attached to" in m for m in msgs) == 2
    w.shutdown.trigger()
    drain(la)
    assert w.wait() == 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_stop_serves_in_flight_requests_until_drain(backend, listeners):
    a, b = listeners(), listeners()
    w = RemoteWorker(app, [a.address, b.address], backend)
    la, lb = a.accept(), b.accept()
    served(lb)
    sid = request(la, b"/slow", body=1)
    time.sleep(0.05)
    w.shutdown.trigger()
    assert isinstance(la.recv(), P.Retire)
    drain(lb)
    la.send(P.Drain(1000))
    la.send(P.End(sid))
    assert response(la, sid) == (200, b"hello /slow")
    assert la.expect_eof() == []
    la.close()
    assert w.wait() == 0
    with pytest.raises(TimeoutError):  # stopped: no reconnect
        b.accept(timeout=0.3)


@pytest.mark.parametrize("backend", BACKENDS)
def test_second_stop_closes_every_link(backend, listeners):
    a, b = listeners(), listeners()
    w = RemoteWorker(app, [a.address, b.address], backend)
    la, lb = a.accept(), b.accept()
    served(la)  # attached (a link still in its handshake would just be dropped)
    served(lb)
    w.shutdown.trigger()
    assert isinstance(la.recv(), P.Retire) and isinstance(lb.recv(), P.Retire)
    w.shutdown.trigger()
    assert la.expect_eof() == [] and lb.expect_eof() == []
    assert w.wait() == 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_stop_drops_a_link_still_in_its_handshake(backend, listeners):
    a, b = listeners(), listeners()
    w = RemoteWorker(app, [a.address, b.address], backend)
    la = a.accept()
    served(la)
    lb = b.accept(answer=None)  # the worker's HELLO, unanswered
    w.shutdown.trigger()
    assert lb.expect_eof() == []  # no RETIRE there: just closed
    lb.close()
    drain(la)
    assert w.wait() == 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_stop_is_bounded_by_the_grace_period(backend, listeners):
    a = listeners()
    w = RemoteWorker(app, a.address, backend, grace=0.5)
    la = a.accept()
    request(la, b"/slow", body=1)
    time.sleep(0.05)
    t0 = time.monotonic()
    w.shutdown.trigger()
    assert isinstance(la.recv(), P.Retire)
    la.expect_eof()  # no DRAIN from this gateway: closed when the grace period is over
    la.close()
    assert w.wait() == 0
    assert 0.4 < time.monotonic() - t0 < 3


@pytest.mark.parametrize("backend", BACKENDS)
def test_error_auth_stops_the_worker_with_status_1(backend, listeners, caplog):
    a, b = listeners(), listeners()
    w = RemoteWorker(app, [a.address, b.address], backend, token="wrong")
    la = a.accept()
    served(la)  # attached (a link still in its handshake would just be dropped)
    b.accept(answer="auth")
    drain(la)  # the other link retires and drains
    assert w.wait() == 1
    assert any("auth" in r.getMessage() for r in caplog.records)
    with pytest.raises(TimeoutError):
        b.accept(timeout=0.3)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_host_name_is_every_address_and_is_resolved_again(backend, listeners, caplog):
    a = listeners(host="127.0.0.1")
    b = listeners(host="127.0.0.2", port=a.port)
    answer: list = [["127.0.0.1", "127.0.0.2", "127.0.0.1"]]
    asked = []

    async def resolver(host: str, port: int) -> list:
        asked.append((host, port))
        if answer[0] is None:
            raise OSError("resolver down")
        return answer[0]

    w = RemoteWorker(app, f"tcp:gw.test:{a.port}", backend, resolver=resolver, resolve_interval=0.1)
    la, lb = a.accept(), b.accept()
    assert asked[0] == ("gw.test", a.port)
    with pytest.raises(TimeoutError):
        a.accept(timeout=0.2)  # one link per address
    served(la)
    served(lb)
    answer[0] = ["127.0.0.2"]
    time.sleep(1.3)  # resolve_interval is at least 1 s
    served(la)  # a vanished address keeps its live link...
    la.close()
    with pytest.raises(TimeoutError):
        a.accept(timeout=0.7)  # ...which is not reconnected
    answer[0] = None  # a failed resolution keeps the last answer
    time.sleep(1.1)
    served(lb)
    answer[0] = ["127.0.0.1", "127.0.0.2"]
    la = a.accept(timeout=2.5)  # back in the answer: a new link
    served(la)
    assert any("cannot resolve gw.test" in r.getMessage() for r in caplog.records)
    w.shutdown.trigger()
    drain(la)
    drain(lb)
    assert w.wait() == 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_single_unix_path_is_not_remote_mode(backend):
    # the link closing without DRAIN ends serve() with 1, no reconnect
    if backend == "trio":
        from fakegw import native_trio as serve
    else:
        serve = native_asyncio
    gw = FakeGateway(lambda path: serve(app)(f"unix:{path}"))
    served(gw)  # type: ignore[arg-type]
    gw.close()
    assert gw.error is None and gw.result == 1


# -- TLS -------------------------------------------------------------------------------

async def _gw_test(host: str, port: int) -> list:
    return ["127.0.0.1"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_tls_verified_with_sni_and_alpn(backend, listeners, pki):
    a = listeners(tls=server_tls(pki))
    w = RemoteWorker(app, f"tls:gw.test:{a.port}", backend, tls_ca=pki["ca"], resolver=_gw_test, token="t")
    la = a.accept()
    sni, alpn, peer = a.tls_seen[0]
    assert (sni, alpn, peer) == ("gw.test", "sluice/1", None)
    assert la.hello.settings["token"] == "t"
    served(la)
    w.shutdown.trigger()
    drain(la)
    assert w.wait() == 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_tls_by_ip_address_checks_the_ip_and_sends_no_sni(backend, listeners, pki):
    a = listeners(tls=server_tls(pki))
    w = RemoteWorker(app, a.address, backend, tls_ca=pki["ca"])
    la = a.accept()
    assert a.tls_seen[0][:2] == (None, "sluice/1")
    served(la)
    w.shutdown.trigger()
    drain(la)
    assert w.wait() == 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_tls_wrong_ca_is_not_attached_and_retried(backend, listeners, pki, caplog):
    a = listeners(tls=server_tls(pki))
    w = RemoteWorker(app, a.address, backend, tls_ca=pki["ca2"])
    with pytest.raises(TimeoutError):
        a.accept(timeout=1.0)
    assert len(a.tls_failures) >= 2
    msgs = [r.getMessage() for r in caplog.records if "cannot attach" in r.getMessage()]
    assert len(msgs) == 1 and "certificate" in msgs[0].lower()
    assert w.running()
    assert w.stop() == 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_tls_client_certificate(backend, listeners, pki):
    a = listeners(tls=server_tls(pki, client_ca=True))
    w = RemoteWorker(app, a.address, backend, tls_ca=pki["ca"], tls_cert=pki["client"], tls_key=pki["client_key"])
    la = a.accept()
    peer = a.tls_seen[0][2]
    assert ((("commonName", "sluice test worker"),),) == peer["subject"]
    served(la)
    w.shutdown.trigger()
    drain(la)
    assert w.wait() == 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_tls_server_name_override(backend, listeners, pki):
    a = listeners(tls=server_tls(pki, cert="other"))  # a certificate for other.test only
    w = RemoteWorker(app, f"tls:gw.test:{a.port}", backend, tls_ca=pki["ca"], resolver=_gw_test)
    with pytest.raises(TimeoutError):
        a.accept(timeout=0.5)  # gw.test is not in it
    assert w.stop() == 0
    a.tls_seen.clear()
    w = RemoteWorker(app, f"tls:gw.test:{a.port}", backend, tls_ca=pki["ca"], resolver=_gw_test,
                     tls_server_name="other.test")
    la = a.accept()
    assert a.tls_seen[-1][:2] == ("other.test", "sluice/1")
    served(la)
    w.shutdown.trigger()
    drain(la)
    assert w.wait() == 0


def test_tls_configuration_errors_at_start(pki):
    w = RemoteWorker(app, "tls:127.0.0.1:9", "asyncio", tls_cert=pki["client"])
    with pytest.raises(R.ConfigError):
        w.wait()
    w = RemoteWorker(app, "tls:127.0.0.1:9", "trio", tls_ca="/nonexistent/ca.pem")
    with pytest.raises(R.ConfigError):
        w.wait()


# -- liveness (PROTOCOL.md 10.6 item 8) -------------------------------------------------------

def _silent_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if "silent for" in r.getMessage()]


@pytest.mark.parametrize("backend", BACKENDS)
def test_pings_every_interval_on_a_remote_link(backend, listeners):
    a, b = listeners(), listeners("unix")
    w = RemoteWorker(app, [a.address, b.address], backend, ping_interval=0.2)
    la, lb = a.accept(), b.accept()
    t0 = time.monotonic()
    while time.monotonic() - t0 < 1.1:  # PINGs are answered by fakegw, not returned
        assert la.quiet(0.05) == [] and lb.quiet(0.05) == []
    for gl in (la, lb):  # Unix links too, in remote mode
        n = sum(1 for when, _ in gl.pings if when - t0 < 1.1)
        assert 3 <= n <= 6, gl.pings
        opaque = [o for _, o in gl.pings]
        assert opaque == sorted(set(opaque))  # increasing
    gaps = [b[0] - a[0] for a, b in zip(la.pings, la.pings[1:])]
    assert all(0.1 < g < 0.5 for g in gaps), gaps
    la.send(P.Ping(77))  # and the gateway's own PINGs are answered
    assert la.recv() == P.Pong(77)
    la.send(P.Pong(12345))  # a PONG for no PING is ignored
    served(la)
    served(lb)
    w.shutdown.trigger()
    drain(la)
    drain(lb)
    assert w.wait() == 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_silent_gateway_loses_its_link_which_is_reopened(backend, listeners, caplog):
    caplog.set_level(logging.INFO, "sluice")
    a = listeners()
    w = RemoteWorker(app, a.address, backend, ping_interval=0.3)
    la = a.accept()
    served(la)
    t0 = time.monotonic()  # from now on this gateway neither reads nor answers: silent
    la2 = a.accept(timeout=3)
    dt = time.monotonic() - t0
    assert 0.8 < dt < 2.0, dt  # 3 intervals, then the first reconnect (at most 100 ms)
    assert la.expect_eof() == []  # the old link was closed...
    assert len(la.pings) >= 2  # ...after PINGs nobody answered
    la.close()
    served(la2)
    msgs = [r.getMessage() for r in caplog.records]
    [line] = _silent_lines(caplog)
    m = re.fullmatch(rf"sluice: gateway tcp:127\.0\.0\.1:{a.port} silent for ([0-9.]+)s: link closed", line)
    assert m and 0.9 <= float(m.group(1)) < 1.8, line
    assert not any("lost" in m for m in msgs)  # one line for it
    assert sum("attached to" in m for m in msgs) == 2
    w.shutdown.trigger()
    drain(la2)
    assert w.wait() == 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_answered_pings_keep_an_idle_link(backend, listeners, caplog):
    a = listeners()
    w = RemoteWorker(app, a.address, backend, ping_interval=0.2)
    la = a.accept()
    assert la.quiet(1.2) == []  # 6 intervals without a request: the PONGs keep it up
    with pytest.raises(TimeoutError):
        a.accept(timeout=0.1)
    assert _silent_lines(caplog) == []
    served(la)
    w.shutdown.trigger()
    drain(la)
    assert w.wait() == 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_handshake_is_bounded_by_three_intervals(backend, listeners, caplog):
    caplog.set_level(logging.INFO, "sluice")
    a = listeners()
    w = RemoteWorker(app, a.address, backend, ping_interval=0.3)
    la = a.accept(answer=None)  # TCP accepted, the worker's HELLO read, never answered
    t0 = time.monotonic()
    assert la.expect_eof(timeout=3) == []
    assert time.monotonic() - t0 < 1.8  # 0.9 s from the connect
    assert la.pings == []  # no PING before the handshake completed
    la.close()
    la = a.accept(timeout=2)  # tried again
    served(la)
    msgs = [r.getMessage() for r in caplog.records if "cannot attach" in r.getMessage()]
    assert len(msgs) == 1 and "timed out" in msgs[0]
    w.shutdown.trigger()
    drain(la)
    assert w.wait() == 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_tls_handshake_is_bounded_too(backend, listeners):
    a = listeners()  # a TLS address, but a listener that never speaks TLS
    w = RemoteWorker(app, f"tls:127.0.0.1:{a.port}", backend, ping_interval=0.3)
    for _ in range(2):  # abandoned, then tried again
        a.lsock.settimeout(3)
        sock, _ = a.lsock.accept()
        t0 = time.monotonic()
        sock.settimeout(3)
        try:
            while sock.recv(4096):  # the ClientHello, then the worker's close
                pass
        except ConnectionResetError:
            pass
        assert time.monotonic() - t0 < 1.8
        sock.close()
    assert w.stop() == 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_no_pings_with_a_single_unix_path(backend):
    if backend == "trio":
        from fakegw import native_trio
        serve = native_trio(app, ping_interval=0.2)
    else:
        serve = native_asyncio(app, loop=backend, ping_interval=0.2)
    gw = FakeGateway(serve)
    assert gw.quiet(1.0) == []
    served(gw)  # type: ignore[arg-type]
    assert gw.pings == []
    gw.close()
    assert gw.error is None and gw.result == 1


def test_max_streams_from_the_environment(monkeypatch):
    """SLUICE_MAX_STREAMS (PROTOCOL.md 10.2) sizes a worker without code:
    an explicit value wins, then the variable, then the default."""
    monkeypatch.delenv("SLUICE_MAX_STREAMS", raising=False)
    assert R.max_streams_from(None, 4096) == 4096
    monkeypatch.setenv("SLUICE_MAX_STREAMS", "64")
    assert R.max_streams_from(None, 4096) == 64
    assert R.max_streams_from(8, 4096) == 8
    for bad in ("0", "65536", "x", "1.5"):
        monkeypatch.setenv("SLUICE_MAX_STREAMS", bad)
        with pytest.raises(R.ConfigError):
            R.max_streams_from(None, 4096)
