"""The C worker library in remote mode (PROTOCOL.md 10.6) against real
gateways: one `examples/c/hello` process attached, with the pool's token, to
two gateways at once (pools with `workers = 0` and a `worker_listen`), over
clear TCP (and TLS with a client certificate in the last test). It serves
through both, attaches again to a gateway restarted on the same port, exits
0 at SIGTERM, and 1 with "auth" on stderr when the token is wrong."""

import os
import signal
import subprocess
import tempfile
import time

import pytest

from certs import make_pki
from conftest import EXAMPLES, SANITIZER_MARKS, free_port
from httpc import get
from pools_util import HELLO_BODY, start_config, wait_for  # noqa: F401 (start_config: fixture)

TOKEN = "s3cret-token"
HELLO = os.path.join(EXAMPLES, "hello")


def pool(tport):
    return f"[pool:web]\nworkers = 0\nworker_listen = tcp:127.0.0.1:{tport}\ntoken = {TOKEN}\n"


class Worker:
    """hello started by hand with SLUICE_SOCKET listing the gateways; its
    stderr goes to a file (read at the end), stopped by PID."""

    def __init__(self, socket, token, **extra):
        env = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")}
        env.update(SLUICE_SOCKET=socket, SLUICE_TOKEN=token, **extra)
        self.err = tempfile.TemporaryFile()
        self.proc = subprocess.Popen([HELLO], env=env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=self.err)

    def stderr(self):
        self.err.seek(0)
        return self.err.read().decode(errors="replace")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        err = self.stderr()
        self.err.close()
        hit = next((m for m in SANITIZER_MARKS if m in err), None)
        assert hit is None, "sanitizer report in the worker's stderr:\n" + err


def attached(gw):
    return [a for a in gw.pool("web")["attached"] if a["state"] == "running"]


def served(gw, n=3):
    for _ in range(n):
        r = get(gw.port, "/", timeout=5)
        assert r.status == 200 and r.body == HELLO_BODY, r


def test_c_worker_serves_two_gateways_and_comes_back_to_a_restarted_one(start_config):
    if not os.path.exists(HELLO):
        pytest.skip("examples/c/hello not built")
    t1, t2 = free_port(), free_port()
    gw1, gw2 = start_config(pool(t1)), start_config(pool(t2))
    w = Worker(f"tcp:127.0.0.1:{t1}, tcp:127.0.0.1:{t2}", TOKEN)
    try:
        assert wait_for(lambda: attached(gw1) and attached(gw2), 5), (gw1.pool("web"), w.stderr())
        served(gw1)
        served(gw2)
        assert attached(gw1)[0]["pid"] == attached(gw2)[0]["pid"] == w.proc.pid
        # gw1 stops (it drains the worker's link): the worker keeps serving gw2
        gw1.stop()
        served(gw2)
        assert w.proc.poll() is None, w.stderr()
        time.sleep(0.5)  # a few failed reconnects
        # a new gateway on the same port: attached again within 5 s
        t0 = time.monotonic()
        gw1b = start_config(pool(t1))
        assert wait_for(lambda: attached(gw1b), 5), (gw1b.pool("web"), w.stderr())
        assert time.monotonic() - t0 < 8
        served(gw1b)
        served(gw2)
        assert w.stderr().count(f"attached to tcp:127.0.0.1:{t1}") == 2, w.stderr()
        w.proc.send_signal(signal.SIGTERM)  # retires on both links, exits once drained
        assert w.proc.wait(10) == 0, w.stderr()
        assert wait_for(lambda: not attached(gw2) and not attached(gw1b), 5)
    finally:
        w.stop()


def test_c_worker_with_a_wrong_token_exits_1(start_config):
    if not os.path.exists(HELLO):
        pytest.skip("examples/c/hello not built")
    t1, t2 = free_port(), free_port()
    start_config(pool(t1))
    start_config(pool(t2))
    w = Worker(f"tcp:127.0.0.1:{t1},tcp:127.0.0.1:{t2}", "wrong")
    try:
        assert w.proc.wait(10) == 1
        err = w.stderr()
        assert "auth" in err, err
    finally:
        w.stop()


def test_c_worker_over_tls_with_a_client_certificate_beside_tcp(start_config, tmp_path):
    if not os.path.exists(HELLO):
        pytest.skip("examples/c/hello not built")
    pki = make_pki(tmp_path / "pki")
    t1, t2 = free_port(), free_port()
    gw1 = start_config("[pool:web]\nworkers = 0\n"
                       f"worker_listen = tls:127.0.0.1:{t1}\ntoken = {TOKEN}\n"
                       f"tls_cert = {pki['server']}\ntls_key = {pki['server_key']}\n"
                       f"client_ca = {pki['client_ca']}\n")
    gw2 = start_config(pool(t2))
    # by address, verified against a name of the certificate
    w = Worker(f"tls:127.0.0.1:{t1},tcp:127.0.0.1:{t2}", TOKEN, SLUICE_TLS_CA=pki["ca"],
               SLUICE_TLS_SERVER_NAME="gw.sluice.test", SLUICE_TLS_CERT=pki["client"],
               SLUICE_TLS_KEY=pki["client_key"])
    try:
        assert wait_for(lambda: attached(gw1) and attached(gw2), 5), (gw1.log_tail(), w.stderr())
        served(gw1)
        served(gw2)
        w.proc.send_signal(signal.SIGTERM)
        assert w.proc.wait(10) == 0, w.stderr()
    finally:
        w.stop()
