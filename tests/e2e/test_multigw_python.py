"""A Python worker (clients/python, ``python -m sluice``) in remote mode
(PROTOCOL.md 10.6) attached to two real gateways over clear TCP with the
pools' token: both gateways' requests are served by it, a gateway restarted
on the same port gets it back, SIGTERM ends it with 0 once both gateways
drained it, and a wrong token ends it with 1 and "auth" on stderr."""

import os
import signal
import subprocess
import sys
import tempfile

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

    def start(sock, token):
        env = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")}
        env.update(SLUICE_SOCKET=sock, SLUICE_TOKEN=token, PYTHONPATH=CLIENTS_PY)
        p = subprocess.Popen([sys.executable, "-m", "sluice", "--app-dir", app_dir, "--loop", "asyncio",
                              "--grace", "5", "remoteapp:app"], env=env, stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        procs.append(p)
        return p

    yield start
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait(5)
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
