"""The gateway's listeners for workers that attach by themselves
(PROTOCOL.md 10.1 and 10.6; docs/configuration.md, worker_listen).

The worker here is the C hello example, which speaks clear TCP; a small
relay in this process carries its link over TLS to the gateway, presenting
(or not) a client certificate, so these tests check the gateway's side
alone, whatever the worker libraries do: TLS with the token, with client
certificates, both; refusals (wrong token, no or untrusted certificate,
not TLS at all, another ALPN protocol); extra Unix sockets; the
command-line flags; config validation and the clear-text warning."""

import os
import select
import signal
import socket
import ssl
import subprocess
import threading
import time

import pytest

from certs import make_pki
from conftest import EXAMPLES, SLUICE, free_port
from httpc import get
from pools_util import have, start_config, wait_for  # noqa: F401  (fixture)

HELLO = os.path.join(EXAMPLES, "hello")
TOKEN = "s3cret-token"


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


class TLSRelay:
    """Plain TCP on 127.0.0.1:self.port -> TLS to 127.0.0.1:target, one
    connection each; handshake failures are kept in self.errors."""

    def __init__(self, target, ctx, server_hostname="localhost"):
        self.target, self.ctx, self.name = target, ctx, server_hostname
        self.errors = []
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.closed:
            try:
                plain, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._pump, args=(plain,), daemon=True).start()

    def _pump(self, plain):
        raw = socket.create_connection(("127.0.0.1", self.target), timeout=10)
        try:
            tls = self.ctx.wrap_socket(raw, server_hostname=self.name)
        except (ssl.SSLError, OSError) as e:
            self.errors.append(e)
            raw.close()
            plain.close()
            return
        tls.settimeout(None)
        deadline = time.monotonic() + 60
        try:
            while not self.closed and time.monotonic() < deadline:
                ready = [tls] if tls.pending() else select.select([plain, tls], [], [], 0.5)[0]
                for s in ready:
                    try:
                        data = s.recv(65536)
                    except ssl.SSLWantReadError:
                        continue
                    except (ssl.SSLError, OSError) as e:
                        self.errors.append(e)
                        return
                    if not data:
                        return
                    (tls if s is plain else plain).sendall(data)
        finally:
            tls.close()
            plain.close()

    def close(self):
        self.closed = True
        self.sock.close()


def client_ctx(pki, cert=True, ca="ca", alpn=("sluice/1",), rogue=False):
    ctx = ssl.create_default_context(cafile=pki[ca])
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    if rogue:
        ctx.load_cert_chain(pki["rogue"], pki["rogue_key"])
    elif cert:
        ctx.load_cert_chain(pki["client"], pki["client_key"])
    return ctx


def start_worker(port, token=TOKEN, host="127.0.0.1"):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")}
    env["SLUICE_SOCKET"] = f"tcp:{host}:{port}"
    if token:
        env["SLUICE_TOKEN"] = token
    return subprocess.Popen([HELLO], env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def stop(p):
    if p.poll() is None:
        p.kill()
    p.wait(5)
    p.stderr.close()


def tls_pool(pki, wport, token=True, client_ca=False, extra=""):
    text = ("[pool:web]\ncommand = {EXAMPLES}/hello\nworkers = 0\n"
            f"worker_listen = tls:127.0.0.1:{wport}\n"
            f"tls_cert = {pki['server']}\ntls_key = {pki['server_key']}\n")
    if token:
        text += f"token = {TOKEN}\n"
    if client_ca:
        text += f"client_ca = {pki['client_ca']}\n"
    return text + extra


def served_by_attached(gw, n=20):
    for _ in range(n):
        r = get(gw.port, "/", timeout=5)
        assert r.status == 200 and r.body == b"Hello, world!\n", r
    return gw.pool("web")["attached"]


@pytest.mark.skipif(not have(HELLO), reason="hello example not built")
def test_tls_link_with_the_token(start_config, pki):
    wport = free_port()
    gw = start_config(tls_pool(pki, wport))
    assert gw.wait_log(lambda l: f"accepting workers on tls:127.0.0.1:{wport} (token required)" in l)
    relay = TLSRelay(wport, client_ctx(pki, cert=False))
    w = start_worker(relay.port)
    try:
        assert wait_for(lambda: gw.pool("web")["attached"], 10), gw.log_tail()
        att = served_by_attached(gw)
        assert len(att) == 1 and att[0]["requests"] >= 20, att
        assert att[0]["pid"] == w.pid, att
        assert relay.errors == []
        w.send_signal(signal.SIGTERM)  # retires over TLS: DRAIN comes back, exit 0
        assert w.wait(10) == 0
    finally:
        relay.close()
        stop(w)


@pytest.mark.skipif(not have(HELLO), reason="hello example not built")
def test_tls_wrong_token_is_refused(start_config, pki):
    wport = free_port()
    gw = start_config(tls_pool(pki, wport))
    relay = TLSRelay(wport, client_ctx(pki, cert=False))
    w = start_worker(relay.port, token="wrong")
    try:
        assert w.wait(10) != 0
        assert "auth" in w.stderr.read().decode(errors="replace")
        assert gw.wait_log(lambda l: "TLS worker from 127.0.0.1 refused: missing or wrong token" in l)
        assert gw.pool("web")["attached"] == []
    finally:
        relay.close()
        stop(w)


@pytest.mark.skipif(not have(HELLO), reason="hello example not built")
def test_tls_client_certificate_alone(start_config, pki):
    """client_ca without a token: the certificate is the credential; none,
    or one from another CA, fails the handshake; the gateway goes on."""
    wport = free_port()
    gw = start_config(tls_pool(pki, wport, token=False, client_ca=True))
    assert gw.wait_log(lambda l: "(client certificate required)" in l)
    good = TLSRelay(wport, client_ctx(pki))
    none = TLSRelay(wport, client_ctx(pki, cert=False))
    rogue = TLSRelay(wport, client_ctx(pki, rogue=True))
    procs = []
    try:
        for relay in (none, rogue):
            w = start_worker(relay.port, token=None)
            procs.append(w)
        # their links close before HELLO comes back; a tcp: worker is in
        # remote mode (PROTOCOL.md 10.6), so it retries instead of exiting
        time.sleep(1)
        assert all(p.poll() is None for p in procs)
        assert gw.pool("web")["attached"] == []
        assert gw.wait_log(lambda l: "tls: 127.0.0.1:" in l), gw.log_tail()
        w = start_worker(good.port, token=None)
        procs.append(w)
        assert wait_for(lambda: gw.pool("web")["attached"], 10), gw.log_tail()
        assert served_by_attached(gw)[0]["requests"] >= 20
    finally:
        for r in (good, none, rogue):
            r.close()
        for p in procs:
            stop(p)


@pytest.mark.skipif(not have(HELLO), reason="hello example not built")
def test_tls_certificate_and_token_both_required(start_config, pki):
    wport = free_port()
    gw = start_config(tls_pool(pki, wport, token=True, client_ca=True))
    assert gw.wait_log(lambda l: "(client certificate and token required)" in l)
    cert_only = TLSRelay(wport, client_ctx(pki))
    w1 = start_worker(cert_only.port, token=None)
    w2 = None
    try:
        assert w1.wait(10) != 0
        assert "auth" in w1.stderr.read().decode(errors="replace")
        w2 = start_worker(cert_only.port)
        assert wait_for(lambda: gw.pool("web")["attached"], 10), gw.log_tail()
        served_by_attached(gw, 5)
    finally:
        cert_only.close()
        stop(w1)
        if w2:
            stop(w2)


def test_tls_listener_refuses_what_is_not_a_sluice_link(start_config, pki):
    """Plain bytes, and a TLS client offering only h2: handshake failures,
    logged; the listener keeps taking workers."""
    wport = free_port()
    gw = start_config(tls_pool(pki, wport))
    with socket.create_connection(("127.0.0.1", wport), timeout=5) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        s.settimeout(5)
        try:
            data = s.recv(4096)
        except ConnectionResetError:
            data = b""
        assert not data.startswith(b"HTTP/"), data
    ctx = client_ctx(pki, cert=False, alpn=("h2",))
    with socket.create_connection(("127.0.0.1", wport), timeout=5) as raw:
        with pytest.raises(ssl.SSLError):
            ctx.wrap_socket(raw, server_hostname="localhost")
    # a client that trusts another CA does not get through either
    ctx = client_ctx(pki, cert=False, ca="rogue_ca")
    with socket.create_connection(("127.0.0.1", wport), timeout=5) as raw:
        with pytest.raises(ssl.SSLCertVerificationError):
            ctx.wrap_socket(raw, server_hostname="localhost")
    # no ALPN at all is accepted (a worker written before ALPN was asked for)
    ctx = client_ctx(pki, cert=False, alpn=())
    with socket.create_connection(("127.0.0.1", wport), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="gw.sluice.test") as t:
            assert t.selected_alpn_protocol() is None
    assert gw.wait_log(lambda l: "not TLS" in l), gw.log_tail()
    assert gw.alive()


@pytest.mark.skipif(not have(HELLO), reason="hello example not built")
def test_extra_unix_socket_and_clear_tcp_beside_tls(start_config, pki, tmp_path):
    """Several worker_listen addresses in one pool: a Unix socket of its own,
    clear TCP and TLS; workers on each serve the same pool."""
    tport, sport = free_port(), free_port()
    path = str(tmp_path / "workers.sock")
    gw = start_config(tls_pool(pki, sport, extra=f"worker_listen = unix:{path}\n"
                               f"tcp_listen = 127.0.0.1:{tport}\n"))
    relay = TLSRelay(sport, client_ctx(pki, cert=False))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")}
    ws = [start_worker(relay.port), start_worker(tport),
          subprocess.Popen([HELLO], env=dict(env, SLUICE_SOCKET=f"unix:{path}"), stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)]
    try:
        assert wait_for(lambda: len(gw.pool("web")["attached"]) == 3, 10), gw.log_tail()
        assert oct(os.stat(path).st_mode & 0o777) == "0o600"
        att = served_by_attached(gw, 60)
        assert all(a["requests"] > 0 for a in att), att
    finally:
        relay.close()
        for w in ws:
            stop(w)
    gw.stop()
    assert not os.path.exists(path), "the gateway removes its Unix socket at exit"


@pytest.mark.skipif(not have(HELLO), reason="hello example not built")
def test_command_line_flags(pki, tmp_path):
    """sluice --worker-listen ... --worker-tls-cert/key --worker-client-ca,
    with the token from SLUICE_WORKER_TOKEN, in command-line mode."""
    port, wport = free_port(), free_port()
    env = dict(os.environ, SLUICE_WORKER_TOKEN=TOKEN)
    log = open(tmp_path / "gw.log", "wb")
    gw = subprocess.Popen([SLUICE, "--listen", f"127.0.0.1:{port}", "--workers", "0",
                           "--worker-listen", f"tls:127.0.0.1:{wport}",
                           "--worker-tls-cert", pki["server"], "--worker-tls-key", pki["server_key"],
                           "--worker-client-ca", pki["client_ca"], "--", HELLO],
                          env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    relay = TLSRelay(wport, client_ctx(pki))
    w = None
    try:
        def up():
            try:
                socket.create_connection(("127.0.0.1", wport), timeout=1).close()
                return True
            except OSError:
                return False
        assert wait_for(up, 10)
        w = start_worker(relay.port)
        def served():
            r = get(port, "/", timeout=5)
            return r.status == 200 and r.body == b"Hello, world!\n"
        assert wait_for(served, 10)
    finally:
        relay.close()
        if w:
            stop(w)
        gw.send_signal(signal.SIGTERM)
        try:
            assert gw.wait(15) == 0
        finally:
            if gw.poll() is None:
                gw.kill()
                gw.wait(5)
            log.close()


def check_config(tmp_path, text):
    path = tmp_path / "sluice.ini"
    path.write_text(text)
    return subprocess.run([SLUICE, "--check-config", str(path)], capture_output=True, text=True, timeout=30)


@pytest.mark.skipif(not have(SLUICE), reason="gateway not built")
def test_config_validation(tmp_path, pki):
    base = "[pool:web]\ncommand = /bin/true\nworkers = 0\n"
    r = check_config(tmp_path, base + "worker_listen = tls:127.0.0.1:7001\ntoken = t\n")
    assert r.returncode != 0 and "needs tls_cert and tls_key" in r.stderr, r.stderr
    r = check_config(tmp_path, base + f"worker_listen = tls:127.0.0.1:7001\ntls_cert = {pki['server']}\n"
                     f"tls_key = {pki['server_key']}\n")
    assert r.returncode != 0 and "needs a token, a client_ca, or both" in r.stderr, r.stderr
    r = check_config(tmp_path, base + "worker_listen = tcp:127.0.0.1:7001\n")
    assert r.returncode != 0 and "(clear-text TCP) needs a token" in r.stderr, r.stderr
    r = check_config(tmp_path, base + f"tls_cert = {pki['server']}\ntls_key = {pki['server_key']}\n")
    assert r.returncode != 0 and "there is none" in r.stderr, r.stderr
    r = check_config(tmp_path, base + "worker_listen = ftp:127.0.0.1:7001\n")
    assert r.returncode != 0 and "worker_listen" in r.stderr, r.stderr
    # the files must load: a key that is not the certificate's
    r = check_config(tmp_path, base + f"worker_listen = tls:127.0.0.1:7001\ntoken = t\n"
                     f"tls_cert = {pki['server']}\ntls_key = {pki['client_key']}\n")
    assert r.returncode != 0 and "pool 'web': worker TLS:" in r.stderr, r.stderr
    r = check_config(tmp_path, base + f"worker_listen = tls:[::1]:7001\nworker_listen = 0.0.0.0:7002\n"
                     f"worker_listen = unix:{tmp_path}/w.sock\ntoken = t\nclient_ca = {pki['client_ca']}\n"
                     f"tls_cert = {pki['server']}\ntls_key = {pki['server_key']}\n")
    assert r.returncode == 0, r.stderr


@pytest.mark.skipif(not have(HELLO), reason="hello example not built")
def test_clear_tcp_on_a_non_loopback_address_warns_once(start_config):
    wport = free_port()
    gw = start_config("[pool:web]\ncommand = {EXAMPLES}/hello\nworkers = 1\n"
                      f"worker_listen = tcp:0.0.0.0:{wport}\ntoken = {TOKEN}\n")
    line = gw.wait_log(lambda l: "clear-text TCP" in l)
    assert line and "tls:0.0.0.0:" in line, gw.log_tail()
    assert sum("clear-text TCP" in l for l in gw.log().splitlines()) == 1
    loop = start_config("[pool:web]\ncommand = {EXAMPLES}/hello\nworkers = 1\n"
                        f"worker_listen = tcp:127.0.0.1:{free_port()}\ntoken = {TOKEN}\n")
    assert loop.wait_log(lambda l: "accepting workers on tcp:127.0.0.1:" in l)
    assert "clear-text TCP" not in loop.log()


BADWORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "badworker.py")


def test_a_silent_tcp_worker_is_dropped_after_three_ping_intervals(start_config):
    """PROTOCOL.md 3.10: the gateway pings TCP links; a worker that answers
    nothing (its host gone) loses its link after three intervals, and its
    requests in flight get 502 instead of waiting for response_timeout."""
    import sys
    wport = free_port()
    gw = start_config("[pool:web]\nworkers = 0\nping_interval = 300ms\nresponse_timeout = 60s\n"
                      f"worker_listen = tcp:127.0.0.1:{wport}\ntoken = {TOKEN}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")}
    w = subprocess.Popen([sys.executable, BADWORKER, "mute"],
                         env=dict(env, SLUICE_SOCKET=f"tcp:127.0.0.1:{wport}", SLUICE_TOKEN=TOKEN),
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        assert wait_for(lambda: gw.pool("web")["attached"], 10), gw.log_tail()
        t0 = time.monotonic()
        r = get(gw.port, "/", timeout=10)  # sent to the mute worker: lost with its link
        took = time.monotonic() - t0
        assert r.status == 502, r
        assert took < 3, took
        line = gw.wait_log(lambda l: "silent for" in l and "link closed" in l)
        assert line, gw.log_tail()
        assert gw.pool("web")["attached"] == []
    finally:
        stop(w)


@pytest.mark.skipif(not have(HELLO), reason="hello example not built")
def test_a_socket_path_with_a_comma_is_refused(tmp_path):
    """SLUICE_SOCKET is a list to the worker libraries (PROTOCOL.md 10.2)."""
    d = tmp_path / "a,b"
    d.mkdir()
    r = subprocess.run([SLUICE, "--listen", f"127.0.0.1:{free_port()}", "--socket-dir", str(d), "--", HELLO],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode != 0
    assert "has a comma" in r.stderr, r.stderr


def test_a_refused_stream_is_retried_on_another_worker_first(start_config, tmp_path):
    """A worker full with other gateways' streams looks idle to this one and
    answers RESET (PROTOCOL.md 10.6, 4): the retry goes to another worker
    even though that one has more streams open here, not back to the
    refusing one (which would end in 503 after three tries)."""
    import sys
    path = str(tmp_path / "w.sock")
    gw = start_config(f"[pool:web]\ncommand = {sys.executable} {BADWORKER} refuse\nworkers = 1\n"
                      f"worker_listen = unix:{path}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")}
    echo = subprocess.Popen([os.path.join(EXAMPLES, "echo")], env=dict(env, SLUICE_SOCKET=f"unix:{path}"),
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    slow = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
    try:
        assert wait_for(lambda: gw.pool("web")["attached"], 10), gw.log_tail()
        assert wait_for(lambda: len(gw.running("web")) == 1, 10)
        # an upload that stays open on the echo worker: it has a stream
        # open, the refusing worker none, so the refusing one is picked first
        slow.sendall(b"POST /slow HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc")
        assert wait_for(lambda: gw.pool("web")["attached"][0]["active_streams"] == 1, 5), gw.pool("web")
        for _ in range(20):
            r = get(gw.port, "/", timeout=5)
            assert r.status == 200, r
    finally:
        slow.close()
        stop(echo)
