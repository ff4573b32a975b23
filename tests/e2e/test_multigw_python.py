"""A Python worker (clients/python, ``python -m sluice``) in remote mode
(PROTOCOL.md 10.6) attached to two real gateways over clear TCP with the
pools' token: both gateways' requests are served by it, a gateway restarted
on the same port gets it back, SIGTERM ends it with 0 once both gateways
drained it, and a wrong token ends it with 1 and "auth" on stderr; over
TLS (a test CA made by the openssl command), with a client certificate and
SLUICE_TLS_SERVER_NAME, it attaches and serves; a gateway frozen with SIGSTOP
loses its link after three ping intervals and gets it back once it runs."""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest

from conftest import ROOT, free_port
from httpc import get
from pools_util import start_config, wait_for  # noqa: F401 (fixture)

CLIENTS_PY = os.path.join(ROOT, "clients", "python")
TOKEN = "s3cret-token"
APP = "from sluice import Response\n\n\nasync def app(request):\n    return Response(b'python remote worker\\n')\n"


def pool_text(tport):
    # workers = 0: the pool has only the workers that attach to it
    return f"[pool:web]\ncommand = /bin/false\nworkers = 0\ntcp_listen = 127.0.0.1:{tport}\ntoken = {TOKEN}\n"


@pytest.fixture
def worker():
    """Factory: worker(sluice_socket, token) starts ``python -m sluice``
    with this tree's library; every process is stopped by PID at teardown."""
    procs = []
    app_dir = tempfile.mkdtemp(prefix="sluice-multigw-")
    with open(os.path.join(app_dir, "remoteapp.py"), "w") as f:
        f.write(APP)

    def start(sock, token, stderr=subprocess.PIPE, **more):
        env = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")}
        env.update(more, SLUICE_SOCKET=sock, SLUICE_TOKEN=token, PYTHONPATH=CLIENTS_PY)
        p = subprocess.Popen([sys.executable, "-m", "sluice", "--app-dir", app_dir, "--loop", "asyncio",
                              "--grace", "5", "remoteapp:app"], env=env, stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=stderr)
        procs.append(p)
        return p

    yield start
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait(5)
        if p.stderr is not None:
            p.stderr.close()
    for name in os.listdir(app_dir):
        if os.path.isfile(os.path.join(app_dir, name)):
            os.unlink(os.path.join(app_dir, name))
    for name in os.listdir(app_dir):
        os.rmdir(os.path.join(app_dir, name))  # __pycache__
    os.rmdir(app_dir)


def attached(gw):
    try:
        return gw.pool("web")["attached"]
    except Exception:  # a gateway being started
        return None


def served(gw):
    r = get(gw.port, "/", timeout=5)
    assert r.status == 200, r
    assert r.body == b"python remote worker\n"


def test_python_worker_serves_two_gateways_and_comes_back_to_a_restarted_one(start_config, worker):
    pa, pb = free_port(), free_port()
    gwa, gwb = start_config(pool_text(pa)), start_config(pool_text(pb))
    w = worker(f"tcp:127.0.0.1:{pa}, tcp:127.0.0.1:{pb}", TOKEN)
    assert wait_for(lambda: attached(gwa) and attached(gwb), 5), (gwa.pool("web"), gwb.pool("web"))
    for _ in range(3):
        served(gwa)
        served(gwb)
    gwb.stop()  # DRAIN on that link: the worker closes it and keeps trying the port
    assert w.poll() is None
    served(gwa)
    gwb = start_config(pool_text(pb))
    assert wait_for(lambda: attached(gwb), 5), gwb.pool("web")
    served(gwb)
    served(gwa)
    w.send_signal(signal.SIGTERM)  # RETIRE on both links; both gateways drain it
    assert w.wait(10) == 0
    assert wait_for(lambda: not attached(gwa) and not attached(gwb), 5)


def test_python_worker_with_a_wrong_token_exits_1(start_config, worker):
    pa, pb = free_port(), free_port()
    start_config(pool_text(pa))
    start_config(pool_text(pb))
    w = worker(f"tcp:127.0.0.1:{pa},tcp:127.0.0.1:{pb}", "wrong")
    assert w.wait(10) == 1
    err = w.stderr.read().decode(errors="replace")
    assert "auth" in err, err


def make_certs(d):
    """ca.pem; gateway.pem for the name gw.test only; worker.pem (client)."""
    def ossl(*args):
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True, timeout=30)

    ossl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=multigw test CA",
         "-keyout", "ca.key", "-out", "ca.pem", "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    for name, san, eku in (("gateway", "DNS:gw.test", "serverAuth"), ("worker", "DNS:worker.test", "clientAuth")):
        ossl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}", "-keyout", f"{name}.key",
             "-out", f"{name}.csr")
        with open(os.path.join(d, f"{name}.ext"), "w") as f:
            f.write(f"subjectAltName={san}\nextendedKeyUsage={eku}\n")
        ossl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
             "-days", "2", "-extfile", f"{name}.ext", "-out", f"{name}.pem")
    return {n: os.path.join(d, n) for n in os.listdir(d)}


def test_python_worker_attaches_over_tls_with_a_client_certificate(start_config, worker):
    if shutil.which("openssl") is None:
        pytest.skip("openssl command not found")
    d = tempfile.mkdtemp(prefix="sluice-multigw-pki-")
    try:
        c = make_certs(d)
        port = free_port()
        gw = start_config("[pool:web]\nworkers = 0\n"
                          f"worker_listen = tls:127.0.0.1:{port}\ntls_cert = {c['gateway.pem']}\n"
                          f"tls_key = {c['gateway.key']}\nclient_ca = {c['ca.pem']}\ntoken = {TOKEN}\n")
        w = worker(f"tls:127.0.0.1:{port}", TOKEN, SLUICE_TLS_CA=c["ca.pem"], SLUICE_TLS_SERVER_NAME="gw.test",
                   SLUICE_TLS_CERT=c["worker.pem"], SLUICE_TLS_KEY=c["worker.key"])
        assert wait_for(lambda: attached(gw), 5), gw.pool("web")
        served(gw)
        w.send_signal(signal.SIGTERM)
        assert w.wait(10) == 0
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_python_worker_pings_and_drops_a_silent_gateway(start_config, worker, tmp_path):
    """Liveness (10.6 item 8): with both sides pinging every second the links
    stay up; a gateway frozen with SIGSTOP (its sockets open, nothing read or
    answered) loses the worker's link after about three intervals, the other
    gateway keeps it, and once it runs again the worker attaches again."""
    pa, pb = free_port(), free_port()
    gwa = start_config(pool_text(pa) + "ping_interval = 1s\n")
    gwb = start_config(pool_text(pb) + "ping_interval = 1s\n")
    err = tmp_path / "worker.err"
    with open(err, "wb") as f:
        w = worker(f"tcp:127.0.0.1:{pa},tcp:127.0.0.1:{pb}", TOKEN, stderr=f, SLUICE_PING_INTERVAL="1")
    assert wait_for(lambda: attached(gwa) and attached(gwb), 5), (gwa.pool("web"), gwb.pool("web"))
    time.sleep(3.5)  # more than three intervals of PINGs both ways
    served(gwa)
    served(gwb)
    assert "silent" not in err.read_text()
    os.kill(gwa.pid, signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        assert wait_for(lambda: "silent for" in err.read_text(), 6), err.read_text()
        took = time.monotonic() - t0
        assert 1.5 <= took < 4.5, took  # the last PONG came at most an interval before
        assert f"gateway tcp:127.0.0.1:{pa} silent for" in err.read_text()
        served(gwb)
    finally:
        os.kill(gwa.pid, signal.SIGCONT)
    assert wait_for(lambda: attached(gwa), 10), (err.read_text(), gwa.pool("web"))
    served(gwa)
    assert w.poll() is None
    w.send_signal(signal.SIGTERM)
    assert w.wait(10) == 0, err.read_text()
