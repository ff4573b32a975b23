"""The Node.js worker library in remote mode (PROTOCOL.md 10.6) against real
gateways: one worker process attached, with the token, to two gateways whose
pools run no worker of their own (workers = 0), over clear TCP (and TLS with
a client certificate in the last test). Both gateways' requests are answered
by it; a gateway stopped and started again on the same port gets it back;
SIGTERM ends it with 0 and a wrong token with 1."""

import os
import shutil
import signal
import subprocess
import time

import pytest

from certs import make_pki
from conftest import ROOT, free_port
from httpc import get
from pools_util import start_config, wait_for  # noqa: F401 (start_config: fixture)

NODE = shutil.which("node")
pytestmark = pytest.mark.skipif(NODE is None, reason="node not found")

LIB = os.path.join(ROOT, "clients", "node", "lib")
APP = ("const { serve } = require(process.argv[1]);\n"
       "serve((req, res) => res.end(`node ${process.pid}\\n`));\n")
TOKEN = "multi-gw-token"


def pool_text(tport):
    return ("[pool:web]\nworkers = 0\n"
            f"worker_listen = tcp:127.0.0.1:{tport}\ntoken = {TOKEN}\n")


def start_worker(tports, token, stderr=subprocess.PIPE, socket=None, **extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")}
    env["SLUICE_SOCKET"] = socket or ", ".join(f"tcp:127.0.0.1:{p}" for p in tports)
    env["SLUICE_TOKEN"] = token
    env.update(extra)
    return subprocess.Popen([NODE, "-e", APP, LIB], env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=stderr)


def stop_worker(proc):
    if proc.poll() is None:
        proc.kill()
        proc.wait(5)
    if proc.stderr:
        proc.stderr.close()


def attached(gw):
    return gw.pool("web")["attached"]


def answered_by(gw, pid):
    r = get(gw.port, "/", timeout=5)
    return r.status == 200 and r.body == f"node {pid}\n".encode()


def test_node_worker_serves_two_gateways_and_comes_back_to_a_restarted_one(start_config):
    t1, t2 = free_port(), free_port()
    gw1 = start_config(pool_text(t1))
    gw2 = start_config(pool_text(t2))
    w = start_worker([t1, t2], TOKEN, stderr=subprocess.DEVNULL)
    try:
        assert wait_for(lambda: attached(gw1) and attached(gw2), 5), (gw1.log_tail(), gw2.log_tail())
        for _ in range(3):
            assert answered_by(gw1, w.pid)
            assert answered_by(gw2, w.pid)
        gw1.stop()  # drains the worker's link; the worker keeps serving gw2
        assert answered_by(gw2, w.pid)
        assert w.poll() is None
        time.sleep(0.5)  # a few failed reconnects
        gw1 = start_config(pool_text(t1))  # same worker port
        t0 = time.monotonic()
        assert wait_for(lambda: attached(gw1), 5), gw1.log_tail()
        assert time.monotonic() - t0 < 5
        assert answered_by(gw1, w.pid)
        assert answered_by(gw2, w.pid)
        w.send_signal(signal.SIGTERM)  # retires on both, exits once both drained it
        assert w.wait(10) == 0
    finally:
        stop_worker(w)


def test_node_worker_with_a_wrong_token_exits_1(start_config):
    t1, t2 = free_port(), free_port()
    start_config(pool_text(t1))
    start_config(pool_text(t2))
    w = start_worker([t1, t2], "wrong")
    try:
        assert w.wait(10) == 1
        err = w.stderr.read().decode(errors="replace")
        assert "auth" in err, err
    finally:
        stop_worker(w)


def test_node_worker_over_tls_with_a_client_certificate_beside_tcp(start_config, tmp_path):
    pki = make_pki(tmp_path / "pki")
    t1, t2 = free_port(), free_port()
    gw1 = start_config("[pool:web]\nworkers = 0\n"
                       f"worker_listen = tls:127.0.0.1:{t1}\ntoken = {TOKEN}\n"
                       f"tls_cert = {pki['server']}\ntls_key = {pki['server_key']}\n"
                       f"client_ca = {pki['client_ca']}\n")
    gw2 = start_config(pool_text(t2))
    # by address, verified against a name of the certificate
    w = start_worker(None, TOKEN, socket=f"tls:127.0.0.1:{t1},tcp:127.0.0.1:{t2}",
                     SLUICE_TLS_CA=pki["ca"], SLUICE_TLS_SERVER_NAME="gw.sluice.test",
                     SLUICE_TLS_CERT=pki["client"], SLUICE_TLS_KEY=pki["client_key"])
    try:
        assert wait_for(lambda: attached(gw1) and attached(gw2), 5), (gw1.log_tail(), gw2.log_tail())
        assert answered_by(gw1, w.pid)
        assert answered_by(gw2, w.pid)
        w.send_signal(signal.SIGTERM)
        assert w.wait(10) == 0, w.stderr.read().decode(errors="replace")
    finally:
        stop_worker(w)


def test_node_worker_pings_and_drops_a_silent_gateway(start_config, tmp_path):
    """Liveness (10.6 item 8): with both sides pinging every second the links
    stay up; a gateway frozen with SIGSTOP (its sockets open, nothing read or
    answered) loses the worker's link after about three intervals, the other
    gateway keeps it, and once it runs again the worker attaches again."""
    t1, t2 = free_port(), free_port()
    gw1 = start_config(pool_text(t1) + "ping_interval = 1s\n")
    gw2 = start_config(pool_text(t2) + "ping_interval = 1s\n")
    err = tmp_path / "worker.err"
    with open(err, "wb") as f:
        w = start_worker([t1, t2], TOKEN, stderr=f, SLUICE_PING_INTERVAL="1")
    try:
        assert wait_for(lambda: attached(gw1) and attached(gw2), 5), (gw1.log_tail(), gw2.log_tail())
        time.sleep(3.5)  # more than three intervals of PINGs both ways
        assert answered_by(gw1, w.pid)
        assert answered_by(gw2, w.pid)
        assert "silent" not in err.read_text()
        os.kill(gw1.pid, signal.SIGSTOP)
        try:
            t0 = time.monotonic()
            assert wait_for(lambda: "silent for" in err.read_text(), 6), err.read_text()
            took = time.monotonic() - t0
            assert 1.5 <= took < 4.5, took  # the last PONG came at most an interval before
            assert f"gateway tcp:127.0.0.1:{t1} silent for" in err.read_text()
            assert answered_by(gw2, w.pid)
        finally:
            os.kill(gw1.pid, signal.SIGCONT)
        assert wait_for(lambda: attached(gw1), 10), (err.read_text(), gw1.log_tail())
        assert wait_for(lambda: answered_by(gw1, w.pid), 5)
        assert w.poll() is None
        w.send_signal(signal.SIGTERM)
        assert w.wait(10) == 0, err.read_text()
    finally:
        stop_worker(w)
