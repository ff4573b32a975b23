"""A Go worker in remote mode (PROTOCOL.md 10.6) attached to two real
gateways over clear-text TCP with a token: it serves both, re-attaches to a
gateway restarted on the same port, exits 0 at SIGTERM, and 1 (logging
"auth") when a gateway refuses its token. Then over TLS (worker_listen
tls:, a client certificate): attached when it trusts the gateway's CA, not
attached (and retrying) when it does not."""

import os
import signal
import subprocess
import time

import pytest

from certs import make_pki
from conftest import ROOT, free_port
from goutil import EXAMPLES_GO, build_examples, find_go
from httpc import ConnectionClosed, get
from pools_util import start_config, wait_for  # noqa: F401 (start_config: fixture)

GO, SKIP = find_go(os.path.join(EXAMPLES_GO, "go.mod"),
                   "the Go examples in examples/go cannot be built, so their tests are skipped")

pytestmark = pytest.mark.skipif(SKIP is not None, reason=SKIP or "")

TOKEN = "multi-gw-token"


@pytest.fixture(scope="module")
def hello_bin(tmp_path_factory):
    return build_examples(GO, str(tmp_path_factory.mktemp("go-multigw")), ["hello"])["hello"]


def pool_text(tport, token=TOKEN):
    # no spawned worker: only attached ones serve
    return ("[pool:web]\ncommand = /bin/false\nworkers = 0\n"
            f"tcp_listen = 127.0.0.1:{tport}\ntoken = {token}\n")


def attached(gw):
    try:
        return len(gw.pool("web")["attached"])
    except (OSError, ConnectionClosed, AssertionError, KeyError, ValueError):
        return 0


def hello_ok(gw):
    try:
        r = get(gw.port, "/", timeout=3)
    except (OSError, ConnectionClosed):
        return False
    return r.status == 200 and r.body.startswith(b"Hello from worker")


def run_worker(hello_bin, ports, token=TOKEN, stderr=subprocess.DEVNULL, scheme="tcp", **extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")}
    env["SLUICE_SOCKET"] = ", ".join(f"{scheme}:127.0.0.1:{p}" for p in ports)
    env["SLUICE_TOKEN"] = token
    env.update(extra)
    return subprocess.Popen([hello_bin], env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=stderr)


def reap(p):
    if p.poll() is None:
        p.kill()
        p.wait(5)


def test_go_worker_serves_two_gateways_and_reattaches(start_config, hello_bin):
    t1, t2 = free_port(), free_port()
    gw1, gw2 = start_config(pool_text(t1)), start_config(pool_text(t2))
    w = run_worker(hello_bin, [t1, t2])
    try:
        assert wait_for(lambda: attached(gw1) and attached(gw2), 5), (gw1.log_tail(), gw2.log_tail())
        for gw in (gw1, gw2):
            assert hello_ok(gw), gw.log_tail()
        # the second gateway stops (DRAIN) and comes back on the same port
        gw2.stop()
        assert hello_ok(gw1)
        assert w.poll() is None, "losing a link must not end the worker"
        gw3 = start_config(pool_text(t2))
        t0 = time.monotonic()
        assert wait_for(lambda: attached(gw3), 5), gw3.log_tail()
        assert time.monotonic() - t0 < 5
        assert wait_for(lambda: hello_ok(gw3), 5), gw3.log_tail()
        assert hello_ok(gw1)
        w.send_signal(signal.SIGTERM)  # RETIRE on both links, each gateway drains it
        assert w.wait(10) == 0
    finally:
        reap(w)


def test_go_worker_with_a_wrong_token_exits_1(start_config, hello_bin):
    t1, t2 = free_port(), free_port()
    gw1 = start_config(pool_text(t1))
    start_config(pool_text(t2, token="another-token"))
    w = run_worker(hello_bin, [t1, t2], stderr=subprocess.PIPE)
    try:
        assert w.wait(10) == 1, gw1.log_tail()
        err = w.stderr.read().decode(errors="replace")
        assert "auth" in err, err
    finally:
        reap(w)
        w.stderr.close()


def tls_pool(pki, wport):
    return ("[pool:web]\ncommand = /bin/false\nworkers = 0\n"
            f"worker_listen = tls:127.0.0.1:{wport}\ntoken = {TOKEN}\n"
            f"tls_cert = {pki['server']}\ntls_key = {pki['server_key']}\n"
            f"client_ca = {pki['client_ca']}\n")


def test_go_worker_over_tls(start_config, hello_bin, tmp_path):
    pki = make_pki(tmp_path / "pki")
    wport = free_port()
    gw = start_config(tls_pool(pki, wport))
    tls_env = {"SLUICE_TLS_CERT": pki["client"], "SLUICE_TLS_KEY": pki["client_key"]}
    rogue = run_worker(hello_bin, [wport], scheme="tls", stderr=subprocess.PIPE,
                       SLUICE_TLS_CA=pki["rogue_ca"], **tls_env)
    try:
        time.sleep(1.5)
        assert attached(gw) == 0 and rogue.poll() is None  # refused, and retrying
        rogue.send_signal(signal.SIGTERM)
        assert rogue.wait(10) == 0
        err = rogue.stderr.read().decode(errors="replace")
        assert "TLS handshake" in err and err.count("cannot attach") == 1, err
    finally:
        reap(rogue)
        rogue.stderr.close()
    w = run_worker(hello_bin, [wport], scheme="tls", SLUICE_TLS_CA=pki["ca"], **tls_env)
    try:
        assert wait_for(lambda: attached(gw), 5), gw.log_tail()
        assert hello_ok(gw), gw.log_tail()
        w.send_signal(signal.SIGTERM)
        assert w.wait(10) == 0
    finally:
        reap(w)
