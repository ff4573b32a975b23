"""The Kubernetes sidecar layout (examples/kubernetes/), without Kubernetes.

In the pod, the gateway and the worker are two containers: two processes
that share nothing but an emptyDir mounted at /run/sluice, each the leader
of its own process group (its container's PID 1), stopped separately by the
kubelet. Here: the gateway runs from a config file like the pod's ConfigMap
(`socket_dir` = a shared temporary directory, `socket_mode = 0660` with a
`socket_group` standing for the pod's fsGroup, `min_workers = 0`, so the
gateway never needs to start a worker of its own), and the example C worker
is started separately, in a new session, with only `SLUICE_SOCKET` pointing
at SOCKET_DIR/POOL.sock. Requests go through it as an *attached* worker;
when it stops the pool answers 503 (it has nothing to spawn), and a new
worker process (the container restarted) serves again. Both are stopped by
their PID. As root, the pod's users are played too: the gateway as uid
10001, the worker as uid 10002 with the fsGroup as a supplementary group.
"""

import grp
import http.client
import json
import os
import shutil
import signal
import stat
import subprocess
import tempfile
import time

import pytest

from conftest import ROOT, SLUICE, example, free_port, START_TIMEOUT, STOP_TIMEOUT

POOL = "app"
# the worker images' entrypoint (examples/kubernetes/Dockerfile.worker-*)
WAIT_FOR_SOCKET = os.path.join(ROOT, "examples", "kubernetes", "wait-for-socket")


def _get(port, path="/", timeout=5.0):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def _wait(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


def _status(admin_port):
    code, body = _get(admin_port, "/status")
    assert code == 200
    (pool,) = [p for p in json.loads(body)["pools"] if p["name"] == POOL]
    return pool


def _stop(proc, sig=signal.SIGTERM):
    """Stop one process by its PID (what the kubelet does to a container's
    PID 1): SIGTERM, then SIGKILL after STOP_TIMEOUT."""
    if proc.poll() is not None:
        return proc.returncode
    os.kill(proc.pid, sig)
    try:
        return proc.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        return proc.wait(STOP_TIMEOUT)


@pytest.fixture
def pod(tmp_path):
    for path in (SLUICE, example("hello")):
        if not os.access(path, os.X_OK):
            pytest.skip(f"{path} is not built")
    run = tmp_path / "run"  # the emptyDir
    run.mkdir()
    port, admin_port = free_port(), free_port()
    group = grp.getgrgid(os.getgid()).gr_name  # the pod's fsGroup
    ini = tmp_path / "sluice.ini"
    ini.write_text(f"""\
[server]
listen = 127.0.0.1:{port}
admin = 127.0.0.1:{admin_port}
graceful_timeout = 5s
access_log = off

[pool:{POOL}]
# never used while the sidecar is attached: min_workers = 0 starts nothing
command = /bin/false
min_workers = 0
max_workers = 1
socket_dir = {run}
socket_mode = 0660
socket_group = {group}
""")
    procs = []

    def start_worker(*wrapper):
        env = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")}
        env["SLUICE_SOCKET"] = str(run / f"{POOL}.sock")
        w = subprocess.Popen([*wrapper, example("hello")], env=env, stdin=subprocess.DEVNULL,
                             stdout=open(tmp_path / "worker.log", "ab"),
                             stderr=subprocess.STDOUT, start_new_session=True)
        procs.append(w)
        return w

    gw_log = open(tmp_path / "gateway.log", "wb")
    sock = run / f"{POOL}.sock"
    gw = None

    def start_gateway():
        nonlocal gw
        gw = subprocess.Popen([SLUICE, "--config", str(ini)], stdin=subprocess.DEVNULL,
                              stdout=gw_log, stderr=subprocess.STDOUT, start_new_session=True)
        procs.append(gw)
        _wait(lambda: sock.exists() or gw.poll() is not None, START_TIMEOUT, "the pool's socket")
        assert gw.poll() is None, (tmp_path / "gateway.log").read_text()
        return gw

    try:
        yield dict(port=port, admin_port=admin_port, sock=sock, group=group,
                   start_gateway=start_gateway, start_worker=start_worker,
                   log=tmp_path / "gateway.log")
    finally:
        for p in reversed(procs):
            _stop(p, signal.SIGKILL if p is not gw else signal.SIGTERM)
        gw_log.close()


def test_attached_sidecar_worker_serves_through_the_shared_socket(pod):
    gw = pod["start_gateway"]()
    port, admin_port, sock = pod["port"], pod["admin_port"], pod["sock"]
    assert os.getpgid(gw.pid) == gw.pid

    # the socket both containers share: group-writable, owned by the fsGroup
    st = os.stat(sock)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o660
    assert grp.getgrgid(st.st_gid).gr_name == pod["group"]

    # the gateway starts no worker of its own
    p = _status(admin_port)
    assert p["workers_target"] == 0 and p["attached"] == []

    w = pod["start_worker"]()
    assert os.getpgid(w.pid) == w.pid != os.getpgid(gw.pid)
    _wait(lambda: [a for a in _status(admin_port)["attached"] if a["state"] == "running"],
          START_TIMEOUT, "the sidecar worker to attach")
    for _ in range(20):
        assert _get(port) == (200, b"Hello, world!\n")
    p = _status(admin_port)
    (a,) = p["attached"]
    assert a["pid"] == w.pid and a["id"] >= 1001 and a["requests"] == 20
    assert p["workers"] == [] or all(not x.get("pid") for x in p["workers"])

    # the worker container stops: nothing to fall back on, the pool says 503
    assert _stop(w) is not None
    _wait(lambda: _status(admin_port)["attached"] == [], STOP_TIMEOUT, "the worker to detach")
    assert _get(port)[0] == 503

    # the kubelet restarts the worker container: it attaches again and serves
    w2 = pod["start_worker"]()
    _wait(lambda: [a for a in _status(admin_port)["attached"] if a["state"] == "running"],
          START_TIMEOUT, "the restarted worker to attach")
    _wait(lambda: _get(port) == (200, b"Hello, world!\n"), START_TIMEOUT, "a 200 again")
    assert _status(admin_port)["attached"][0]["pid"] == w2.pid

    # the gateway container stops first (SIGTERM to its PID): it drains the
    # attached worker, which exits by itself, and removes the socket
    assert _stop(gw) == 0, pod["log"].read_text()
    assert w2.wait(STOP_TIMEOUT) == 0
    assert not sock.exists()


def test_worker_started_first_waits_for_the_gateways_socket(pod):
    """The pod's containers start together: the worker image's entrypoint
    (wait-for-socket) holds the worker until the gateway made the socket,
    instead of letting it fail its first connection."""
    w = pod["start_worker"](WAIT_FOR_SOCKET)
    time.sleep(0.5)
    assert w.poll() is None and not pod["sock"].exists()
    pod["start_gateway"]()
    _wait(lambda: [a for a in _status(pod["admin_port"])["attached"]
                   if a["state"] == "running" and a["pid"] == w.pid],
          START_TIMEOUT, "the waiting worker to attach (exec'd by wait-for-socket)")
    assert _get(pod["port"]) == (200, b"Hello, world!\n")


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"),
                    reason="needs root and setpriv(1) to run the two processes as the pod's users")
def test_pod_users_share_the_socket_through_the_fs_group(tmp_path):
    """As in the pod: the gateway as uid 10001 with the fsGroup as its group,
    the worker as uid 10002 with the fsGroup only as a supplementary group,
    the directory group-owned by it (setgid, as the kubelet prepares an
    emptyDir for an fsGroup). The worker connects through the 0660 socket;
    the same worker without the supplementary group is refused."""
    for path in (SLUICE, example("hello")):
        if not os.access(path, os.X_OK):
            pytest.skip(f"{path} is not built")
    fs_group = grp.getgrnam("nogroup")  # stands for the pod's fsGroup (2000)
    gid = fs_group.gr_gid
    top = tempfile.mkdtemp(prefix="sluice-pod-")
    os.chmod(top, 0o755)
    run = os.path.join(top, "run")  # the emptyDir
    os.mkdir(run)
    os.chown(run, 0, gid)
    os.chmod(run, 0o2777)
    port, admin_port = free_port(), free_port()
    ini = os.path.join(top, "sluice.ini")  # the ConfigMap: readable by all
    with open(ini, "w") as f:
        f.write(f"""\
[server]
listen = 127.0.0.1:{port}
admin = 127.0.0.1:{admin_port}
graceful_timeout = 5s
access_log = off

[pool:{POOL}]
command = /bin/false
min_workers = 0
max_workers = 1
socket_dir = {run}
socket_mode = 0660
socket_group = {fs_group.gr_name}
""")
    os.chmod(ini, 0o644)
    sock = os.path.join(run, f"{POOL}.sock")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")}
    env["SLUICE_SOCKET"] = sock
    log = open(tmp_path / "pod.log", "wb")
    procs = []

    def spawn(*argv):
        p = subprocess.Popen(list(argv), env=env, stdin=subprocess.DEVNULL, stdout=log,
                             stderr=subprocess.STDOUT, start_new_session=True, cwd="/")
        procs.append(p)
        return p

    try:
        gw = spawn("setpriv", "--reuid=10001", f"--regid={gid}", "--clear-groups", "--",
                   SLUICE, "--config", ini)
        _wait(lambda: os.path.exists(sock) or gw.poll() is not None, START_TIMEOUT, "the socket")
        assert gw.poll() is None, (tmp_path / "pod.log").read_text()
        st = os.stat(sock)
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (10001, gid, 0o660)

        # without the fsGroup: refused by the socket's permissions
        stranger = spawn("setpriv", "--reuid=10002", "--regid=10002", "--clear-groups", "--",
                         example("hello"))
        assert stranger.wait(STOP_TIMEOUT) != 0
        assert _status(admin_port)["attached"] == []

        # with it (the kubelet adds the fsGroup to every container's groups)
        w = spawn("setpriv", "--reuid=10002", "--regid=10002", f"--groups={gid}", "--",
                  example("hello"))
        _wait(lambda: [a for a in _status(admin_port)["attached"] if a["state"] == "running"],
              START_TIMEOUT, "the worker to attach")
        assert _get(port) == (200, b"Hello, world!\n")

        assert _stop(gw) == 0, (tmp_path / "pod.log").read_text()
        assert w.wait(STOP_TIMEOUT) == 0
    finally:
        for p in reversed(procs):
            _stop(p, signal.SIGKILL)
        log.close()
        shutil.rmtree(top, ignore_errors=True)
