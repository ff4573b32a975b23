"""TLS listeners: HTTPS beside plain HTTP on one gateway, SNI, versions,
ALPN, failures logged once, the handshake timeout, scheme https in REQUEST,
a large download over TLS.

Certificates are made at test time with the openssl CLI (a CA and two leaf
certificates with SANs); no key is committed."""

import http.client
import json
import os
import shutil
import socket
import ssl
import subprocess
import time

import pytest

from conftest import RssMonitor, free_port, rss_limit_kib
from conformance_util import reflect_cmd
from httpc import blob_check, blob_first_mismatch
from pools_util import start_config  # noqa: F401 (fixture)

pytestmark = [pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl CLI missing"),
              pytest.mark.filterwarnings("ignore::DeprecationWarning")]

MiB = 1 << 20


def _openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_leaf(d, name, sans, ca="ca"):
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=d)
    with open(os.path.join(d, f"{name}.ext"), "w") as f:
        f.write(f"subjectAltName={sans}\nbasicConstraints=CA:FALSE\n"
                "keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n")
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
             "-CAcreateserial", "-days", "2", "-out", f"{name}.pem", "-extfile", f"{name}.ext",
             cwd=d)
    return os.path.join(d, f"{name}.pem"), os.path.join(d, f"{name}.key")


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("tls"))
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=sluice test CA",
             cwd=d)
    a = make_leaf(d, "alpha", "DNS:localhost,DNS:a.test,IP:127.0.0.1")
    b = make_leaf(d, "beta", "DNS:b.test")
    return {"dir": d, "ca": os.path.join(d, "ca.pem"), "a": a, "b": b}


def tls_args(port, *pairs):
    args = ["--listen", f"127.0.0.1:{port}"]
    for cert, key in pairs:
        args += ["--tls-cert", cert, "--tls-key", key]
    return args


def start_tls(start_gateway, certs, worker="hello", extra=(), workers=1):
    port = free_port()
    gw = start_gateway(worker, *tls_args(port, certs["a"], certs["b"]), *extra, workers=workers)
    gw.tls_port = port
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # the TLS listener too
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            time.sleep(0.05)
    return gw


def client_ctx(certs, **kw):
    ctx = ssl.create_default_context(cafile=certs["ca"])
    for k, v in kw.items():
        setattr(ctx, k, v)
    return ctx


def https(port, ctx, host="localhost", timeout=20):
    return http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=timeout) \
        if host is None else _Conn(port, ctx, host, timeout)


class _Conn(http.client.HTTPSConnection):
    """HTTPSConnection to 127.0.0.1 that sends `host` as SNI and checks it."""

    def __init__(self, port, ctx, host, timeout):
        super().__init__(host, port, context=ctx, timeout=timeout)

    def connect(self):
        sock = socket.create_connection(("127.0.0.1", self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


def tls_lines(gw, port):
    """The gateway's log lines about TLS failures of a client port."""
    return [l for l in gw.log().splitlines() if "tls: " in l and f":{port}:" in l]


def test_curl_tls13_and_tls12(start_gateway, certs):
    if shutil.which("curl") is None:
        pytest.skip("curl missing")
    gw = start_tls(start_gateway, certs)
    for extra in ([], ["--tlsv1.2", "--tls-max", "1.2"]):
        r = subprocess.run(["curl", "-sS", "--cacert", certs["ca"], *extra,
                            "-w", "\n%{http_code} %{ssl_verify_result}",
                            f"https://localhost:{gw.tls_port}/"],
                           capture_output=True, timeout=20)
        assert r.returncode == 0, r.stderr
        body, _, tail = r.stdout.rpartition(b"\n")
        assert tail == b"200 0" and b"Hello" in body, r.stdout
    # the plain listener of the same gateway is untouched
    r = subprocess.run(["curl", "-sS", f"http://127.0.0.1:{gw.port}/"], capture_output=True,
                       timeout=20)
    assert r.returncode == 0 and b"Hello" in r.stdout


def test_keepalive_versions_alpn(start_gateway, certs):
    """With HTTP/2 off, a client offering h2 and http/1.1 gets http/1.1
    (with HTTP/2 on, the default, it gets h2: tests/e2e/test_h2.py)."""
    gw = start_tls(start_gateway, certs, extra=("--http2", "off"))
    for version in (ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2):
        ctx = client_ctx(certs, minimum_version=version, maximum_version=version)
        ctx.set_alpn_protocols(["h2", "http/1.1"])
        c = https(gw.tls_port, ctx)
        for i in range(5):
            c.request("GET", f"/?i={i}")
            r = c.getresponse()
            assert r.status == 200 and b"Hello" in r.read()
        assert c.sock.version() == version.name.replace("v1_", "v1.")
        assert c.sock.selected_alpn_protocol() == "http/1.1"
        c.close()


def test_alpn_prefers_h2(start_gateway, certs):
    """By default ALPN chooses h2 when the client offers it, http/1.1 when
    it offers only that, and a client offering no ALPN speaks HTTP/1.1."""
    gw = start_tls(start_gateway, certs)
    for offer, want in ((["h2", "http/1.1"], "h2"), (["http/1.1", "h2"], "h2"),
                        (["http/1.1"], "http/1.1"), (None, None)):
        ctx = client_ctx(certs)
        if offer:
            ctx.set_alpn_protocols(offer)
        with socket.create_connection(("127.0.0.1", gw.tls_port), timeout=5) as raw:
            with ctx.wrap_socket(raw, server_hostname="localhost") as s:
                assert s.selected_alpn_protocol() == want, (offer, s.selected_alpn_protocol())
                if want == "h2":
                    continue
                s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                data = b""
                while chunk := s.recv(65536):
                    data += chunk
                assert data.startswith(b"HTTP/1.1 200"), data[:100]


def test_sni_picks_certificate(start_gateway, certs):
    gw = start_tls(start_gateway, certs)
    ctx = client_ctx(certs)
    for host, want in (("b.test", "beta"), ("a.test", "alpha"), ("localhost", "alpha")):
        c = https(gw.tls_port, ctx, host)
        c.request("GET", "/")
        assert c.getresponse().status == 200
        cert = c.sock.getpeercert()
        subject = dict(x[0] for x in cert["subject"])
        assert subject["commonName"] == want, cert
        assert ("DNS", host) in cert["subjectAltName"], cert
        c.close()


def test_tls11_refused(start_gateway, certs):
    gw = start_tls(start_gateway, certs)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        ctx.minimum_version = ssl.TLSVersion.TLSv1
        ctx.maximum_version = ssl.TLSVersion.TLSv1_1
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    except (ValueError, ssl.SSLError):
        pytest.skip("this OpenSSL cannot offer TLS 1.1")
    with socket.create_connection(("127.0.0.1", gw.tls_port), timeout=10) as s:
        with pytest.raises((ssl.SSLError, ConnectionError)):
            ctx.wrap_socket(s, server_hostname="localhost")
    assert gw.alive()


@pytest.mark.parametrize("payload", [
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    b"\x00\xffgarbage garbage garbage\r\n\r\n" * 4,
], ids=["plain-http", "garbage"])
def test_not_tls_closed_and_logged_once(start_gateway, certs, payload):
    gw = start_tls(start_gateway, certs)
    s = socket.create_connection(("127.0.0.1", gw.tls_port), timeout=10)
    port = s.getsockname()[1]
    s.sendall(payload)
    data = b""
    while True:  # the gateway closes (maybe after an alert)
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
        assert len(data) < 1024
    s.close()
    assert b"HTTP/1.1" not in data
    assert gw.wait_log(lambda l: "tls: " in l and f":{port}:" in l, timeout=5)
    time.sleep(0.3)
    assert len(tls_lines(gw, port)) == 1, gw.log_tail()
    # the listener still serves
    c = https(gw.tls_port, client_ctx(certs))
    c.request("GET", "/")
    assert c.getresponse().status == 200
    c.close()


@pytest.mark.parametrize("extra", [
    ["--tls-handshake-timeout", "1s"],
    # the header timeout does not cut a handshake short (nor hide its log line)
    ["--tls-handshake-timeout", "2s", "--header-timeout", "500ms"],
], ids=["handshake", "header-shorter"])
def test_handshake_timeout(start_gateway, certs, extra):
    gw = start_tls(start_gateway, certs, extra=extra)
    # the first bytes of a ClientHello: a handshake record header and part of it
    s = socket.create_connection(("127.0.0.1", gw.tls_port), timeout=15)
    port = s.getsockname()[1]
    s.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 20)
    t0 = time.monotonic()
    assert s.recv(4096) == b""
    elapsed = time.monotonic() - t0
    s.close()
    assert 0.8 * float(extra[1][:-1]) < elapsed < 12, elapsed
    assert gw.wait_log(lambda l: "tls: " in l and f":{port}:" in l, timeout=5)
    time.sleep(0.3)
    lines = tls_lines(gw, port)
    assert len(lines) == 1 and "handshake timeout" in lines[0], gw.log_tail()


def test_scheme_https_in_request(start_gateway, certs, tmp_path):
    gw = start_tls(start_gateway, certs, worker=reflect_cmd(str(tmp_path / "targets")))
    c = https(gw.tls_port, client_ctx(certs))
    c.request("GET", "/reflect")
    r = c.getresponse()
    assert r.status == 200
    desc = json.loads(r.read())
    assert desc["scheme"] == "https"
    assert desc["server"][1] == gw.tls_port
    c.close()
    # and http on the plain listener
    p = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=20)
    p.request("GET", "/reflect")
    desc = json.loads(p.getresponse().read())
    assert desc["scheme"] == "http" and desc["server"][1] == gw.port
    p.close()


def test_large_download_over_tls(start_gateway, certs):
    gw = start_tls(start_gateway, certs, worker="blob")
    size = 64 * MiB
    c = https(gw.tls_port, client_ctx(certs), timeout=60)
    c.request("GET", "/?n=1")
    assert c.getresponse().read() is not None
    with RssMonitor(gw.pid) as mon:
        c.request("GET", f"/?n={size}")
        r = c.getresponse()
        assert r.status == 200
        offset = 0
        while True:
            piece = r.read(1 << 20)
            if not piece:
                break
            assert blob_check(piece, offset), blob_first_mismatch(piece, offset)
            offset += len(piece)
        assert offset == size
        c.request("GET", "/?n=10")  # same connection, still in step
        assert c.getresponse().read() == bytes(i % 251 for i in range(10))
    c.close()
    limit = rss_limit_kib()
    if limit is not None:
        assert mon.peak_kib() < limit, f"peak RSS {mon.peak_kib() // 1024} MiB"


def test_reload_certificates(start_gateway, certs, tmp_path):
    import signal
    d = certs["dir"]
    cert, key = str(tmp_path / "live.pem"), str(tmp_path / "live.key")
    shutil.copy(certs["a"][0], cert)
    shutil.copy(certs["a"][1], key)
    port = free_port()
    gw = start_gateway("hello", *tls_args(port, (cert, key)), workers=1)
    ctx = client_ctx(certs)
    old = https(port, ctx)
    old.request("GET", "/")
    assert old.getresponse().read()
    assert dict(x[0] for x in old.sock.getpeercert()["subject"])["commonName"] == "alpha"

    # a broken file: the reload fails, the old certificate stays
    with open(cert, "w") as f:
        f.write("not a certificate\n")
    gw.proc.send_signal(signal.SIGHUP)
    assert gw.wait_log(lambda l: "certificate reload failed" in l, timeout=10), gw.log_tail()
    c = https(port, ctx)
    c.request("GET", "/")
    assert c.getresponse().status == 200
    assert dict(x[0] for x in c.sock.getpeercert()["subject"])["commonName"] == "alpha"
    c.close()

    new_cert, new_key = make_leaf(d, "gamma", "DNS:localhost,IP:127.0.0.1")
    shutil.copy(new_cert, cert)
    shutil.copy(new_key, key)
    gw.proc.send_signal(signal.SIGHUP)
    assert gw.wait_log(lambda l: "certificates reloaded" in l, timeout=10), gw.log_tail()
    c = https(port, ctx)
    c.request("GET", "/")
    assert c.getresponse().status == 200
    assert dict(x[0] for x in c.sock.getpeercert()["subject"])["commonName"] == "gamma"
    c.close()
    # the connection made before the reload goes on
    for _ in range(3):
        old.request("GET", "/")
        r = old.getresponse()
        assert r.status == 200 and b"Hello" in r.read()
    old.close()


def test_config_file_listeners_and_status(start_config, certs):
    from conftest import run_cli
    tport = free_port()
    (ca, ka), (cb, kb) = certs["a"], certs["b"]
    text = ("[server]\nlisten = 127.0.0.1:1\n"
            f"[listen:secure]\naddress = 127.0.0.1:{tport}\n"
            f"tls_cert = {ca}\ntls_key = {ka}\ntls_cert = {cb}\ntls_key = {kb}\n"
            "[pool:web]\ncommand = {EXAMPLES}/hello\nworkers = 1\n")
    # the command line's --listen replaces [server] listen; [listen:NAME] stays
    gw = start_config(text)
    r = run_cli("--check-config", gw.config_path)
    assert r.returncode == 0 and b": ok (1 pool, 0 routes)" in r.stdout, r
    for host, want in (("b.test", "beta"), ("localhost", "alpha")):
        c = https(tport, client_ctx(certs), host)
        c.request("GET", "/")
        assert c.getresponse().status == 200
        assert dict(x[0] for x in c.sock.getpeercert()["subject"])["commonName"] == want
        c.close()
    listeners = gw.status()["listeners"]
    assert {"address": f"127.0.0.1:{gw.port}", "scheme": "http", "certificates": 0} in listeners
    assert {"address": f"127.0.0.1:{tport}", "scheme": "https", "certificates": 2} in listeners
    assert len(listeners) == 2


def test_check_config_bad_certificate(certs, tmp_path):
    from conftest import run_cli
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate\n")
    ini = tmp_path / "sluice.ini"
    ini.write_text(f"[listen:tls]\naddress = 127.0.0.1:8443\ntls_cert = {bad}\n"
                   f"tls_key = {certs['a'][1]}\n[pool:web]\ncommand = /bin/true\n")
    r = run_cli("--check-config", str(ini))
    assert r.returncode != 0 and r.stdout == b"", r
    err = r.stderr.decode()
    assert "listener tls 127.0.0.1:8443" in err and str(bad) in err, err
    # a key without its certificate, a certificate without a --listen
    ini.write_text(f"[listen:tls]\naddress = 127.0.0.1:8443\ntls_key = {certs['a'][1]}\n"
                   "[pool:web]\ncommand = /bin/true\n")
    r = run_cli("--check-config", str(ini))
    assert r.returncode != 0 and b"tls_key" in r.stderr, r
    r = run_cli("--tls-cert", certs["a"][0], "--tls-key", certs["a"][1], "--", "/bin/true")
    assert r.returncode != 0 and b"after the --listen" in r.stderr, r


def test_upload_echoed_over_tls(start_gateway, certs):
    """A request body larger than the worker's credit window: the gateway
    stops reading (decrypting) while the worker has none, and resumes. (The
    client sends it all before reading, so it must fit what the socket
    buffers and the echo hold: 4 MiB, as over plain HTTP.)"""
    gw = start_tls(start_gateway, certs, worker="echo")
    size = 4 * MiB
    body = bytes(i % 251 for i in range(251)) * (size // 251 + 1)
    body = body[:size]
    c = https(gw.tls_port, client_ctx(certs), timeout=60)
    for _ in range(2):  # and again on the same connection
        c.request("POST", "/", body=body)
        r = c.getresponse()
        assert r.status == 200
        got = r.read()
        assert len(got) == size and got == body
    c.close()


@pytest.mark.parametrize("version", ["TLSv1_2", "TLSv1_3"])
def test_session_resumption(start_gateway, certs, version):
    gw = start_tls(start_gateway, certs)
    v = getattr(ssl.TLSVersion, version)
    ctx = client_ctx(certs, minimum_version=v, maximum_version=v)

    def one(session=None):
        with socket.create_connection(("127.0.0.1", gw.tls_port), timeout=20) as raw:
            s = ctx.wrap_socket(raw, server_hostname="localhost", session=session)
            s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
            assert data.startswith(b"HTTP/1.1 200"), data
            sess, reused = s.session, s.session_reused
            s.close()
            return sess, reused

    sess, reused = one()
    assert not reused and sess is not None
    _, reused = one(sess)
    assert reused
