"""Helpers for the worker-pool tests (test_pools.py): a gateway started from
a config file, admin API calls, Prometheus parsing, a bounded load loop.

`start_config` is a fixture (import it into the test module): it writes the
config text to a file, starts `sluice --config FILE --listen ... --admin ...`
from the repository root, and in teardown stops every gateway by PID (SIGTERM,
then SIGKILL), kills the workers left behind by PID, and fails the test on a
sanitizer report in the output -- like conftest's `start_gateway`.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import (EXAMPLES, ROOT, SANITIZER_MARKS, SLUICE, START_TIMEOUT,
                      Gateway, free_port)
from httpc import Conn, ConnectionClosed, get, request_bytes

HERE = os.path.dirname(os.path.abspath(__file__))
ENVWORKER = os.path.join(HERE, "envworker.py")
PYTHON = sys.executable
HELLO_BODY = b"Hello, world!\n"


def have(path):
    return os.path.isfile(path) and os.access(path, os.X_OK)


# --------------------------------------------------------------------------
# admin API

def admin(port, method, path, timeout=5.0):
    """One request to the admin listener; returns the httpc Response."""
    return get(port, path, method=method, timeout=timeout)


def status(port):
    r = admin(port, "GET", "/status")
    assert r.status == 200, r
    return json.loads(r.body)


def pool_status(port, name):
    for p in status(port)["pools"]:
        if p["name"] == name:
            return p
    raise AssertionError(f"no pool {name!r} in /status")


def running_pids(port, name):
    return sorted(w["pid"] for w in pool_status(port, name)["workers"]
                  if w["state"] == "running")


class Metrics:
    """Samples of one /metrics scrape, parsed by prometheus_client."""

    def __init__(self, text):
        self.text = text
        self.families = list(text_string_to_metric_families(text))
        self.samples = [s for f in self.families for s in f.samples]

    def family(self, name):
        for f in self.families:
            if f.name == name:
                return f
        return None

    def get(self, name, **labels):
        """The value of the sample `name` whose labels include `labels`
        (exactly one must match)."""
        hits = [s for s in self.samples if s.name == name and
                all(s.labels.get(k) == v for k, v in labels.items())]
        assert len(hits) == 1, f"{len(hits)} samples {name}{labels}:\n{self.text}"
        return hits[0].value


def metrics(port):
    r = admin(port, "GET", "/metrics")
    assert r.status == 200, r
    return Metrics(r.body.decode())


# --------------------------------------------------------------------------
# waiting

def wait_for(fn, timeout, interval=0.05):
    """Poll fn() until it returns a true value (returned) or `timeout`
    passes (then the last value is returned)."""
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v or time.monotonic() > deadline:
            return v
        time.sleep(interval)


# --------------------------------------------------------------------------
# load

class Load:
    """`threads` clients, each on its own keep-alive connection, sending
    `target` back to back until stop() or `duration` seconds (at most
    `max_per_thread` requests each). Every response must be 200 with a body
    accepted by `check`; anything else is recorded in `failures`."""

    def __init__(self, port, target="/", threads=4, duration=3.0,
                 max_per_thread=20000, check=None, host="127.0.0.1"):
        self.port = port
        self.target = target
        self.duration = duration
        self.max_per_thread = max_per_thread
        self.check = check or (lambda body: body == HELLO_BODY)
        self.host = host
        self.statuses = Counter()
        self.failures = []
        self.bodies = Counter()
        self.done = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True)
                         for _ in range(threads)]

    def _run(self):
        deadline = time.monotonic() + self.duration
        conn = None
        req = request_bytes("GET", self.target, host=self.host)
        n = 0
        while not self._stop.is_set() and time.monotonic() < deadline \
                and n < self.max_per_thread:
            n += 1
            try:
                if conn is None:
                    conn = Conn(self.port, timeout=10)
                conn.send(req)
                r = conn.read_response()
            except (OSError, ConnectionClosed, ValueError) as e:
                with self._lock:
                    self.failures.append(f"request {n}: {type(e).__name__}: {e}")
                if conn:
                    conn.close()
                conn = None
                continue
            with self._lock:
                self.done += 1
                self.statuses[r.status] += 1
                if r.status != 200 or not self.check(r.body):
                    self.failures.append(f"request {n}: {r!r}")
                else:
                    self.bodies[r.body] += 1
            if r.has_token("connection", "close"):
                conn.close()
                conn = None
        if conn:
            conn.close()

    def start(self):
        for t in self._threads:
            t.start()
        return self

    def stop(self):
        self._stop.set()
        for t in self._threads:
            t.join(self.duration + 15)
        assert not any(t.is_alive() for t in self._threads), "load thread hung"
        return self

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


# --------------------------------------------------------------------------
# a gateway started from a config file

class ConfigGateway(Gateway):
    """A Gateway (conftest) whose argv uses --config; its workers' private
    socket directories go under the test's temporary directory (TMPDIR)."""

    def __init__(self, argv, port, log_path, tmp, config_path, admin_port):
        self.argv = argv
        self.port = port
        self.log_path = log_path
        self.sock_dir = tmp
        self.tmp = tmp
        self.config_path = config_path
        self.admin_port = admin_port
        self._log = open(log_path, "wb")
        env = dict(os.environ, TMPDIR=tmp)
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                     stdout=self._log, stderr=subprocess.STDOUT,
                                     cwd=ROOT, env=env)
        self.pid = self.proc.pid
        self.seen = {}

    def rewrite(self, text):
        """Replace the config file (placeholders expanded as at start)."""
        with open(self.config_path + ".new", "w") as f:
            f.write(expand(text, self))
        os.replace(self.config_path + ".new", self.config_path)

    # admin shortcuts
    def status(self):
        return status(self.admin_port)

    def pool(self, name):
        return pool_status(self.admin_port, name)

    def running(self, name):
        self.workers()  # remember every pid for teardown
        return running_pids(self.admin_port, name)

    def metrics(self):
        return metrics(self.admin_port)

    def admin(self, method, path):
        return admin(self.admin_port, method, path)

    def wait_running(self, name, n, timeout=8.0, exclude=()):
        """Wait until pool `name` has exactly n running workers (none of
        them in `exclude`) and no others starting or retiring; returns the
        pids (possibly wrong after the timeout: callers assert)."""
        def ok():
            p = self.pool(name)
            self.workers()
            pids = [w["pid"] for w in p["workers"] if w["state"] == "running"]
            others = [w for w in p["workers"] if w["state"] != "running"]
            good = len(pids) == n and not others and not set(pids) & set(exclude)
            return sorted(pids) if good else None
        return wait_for(ok, timeout) or sorted(self.running(name))


def expand(text, gw):
    for k, v in {"{ROOT}": ROOT, "{EXAMPLES}": EXAMPLES, "{PYTHON}": PYTHON,
                 "{ENVWORKER}": ENVWORKER, "{TMP}": gw.tmp,
                 "{PORT}": str(gw.port), "{ADMIN}": str(gw.admin_port)}.items():
        text = text.replace(k, v)
    return text


@pytest.fixture
def start_config(request):
    """Factory: start_config(text, *args, cli_listen=True, wait=True).

    Writes `text` (placeholders {ROOT}, {EXAMPLES}, {PYTHON}, {ENVWORKER},
    {TMP}, {PORT}, {ADMIN} expanded) to a file and runs
    `sluice --config FILE [--listen 127.0.0.1:PORT --admin 127.0.0.1:ADMIN] ARGS`.
    With cli_listen=False the file itself must name {PORT} and {ADMIN}."""
    if not have(SLUICE):
        pytest.skip(f"gateway binary not built: {SLUICE}")
    for name in ("hello", "blob", "echo"):
        if not have(os.path.join(EXAMPLES, name)):
            pytest.skip(f"example worker not built: {name}")
    started = []
    tmp_root = tempfile.mkdtemp(prefix="sluice-pools-")
    # traversable, so that workers running as another user (pool `user`)
    # can reach the sockets the gateway makes inside
    os.chmod(tmp_root, 0o755)

    def start(text, *args, cli_listen=True, wait=True):
        last = None
        for attempt in range(3):
            tmp = tempfile.mkdtemp(prefix="t", dir=tmp_root)
            os.chmod(tmp, 0o755)
            port, admin_port = free_port(), free_port()
            config_path = os.path.join(tmp, "sluice.ini")
            argv = [SLUICE, "--config", config_path]
            if cli_listen:
                argv += ["--listen", f"127.0.0.1:{port}", "--admin", f"127.0.0.1:{admin_port}"]
            argv += list(args)
            log_path = os.path.join(tmp, "gateway.log")
            # the file is written before the process starts: expand() needs
            # the ports, which a stub object carries
            stub = type("stub", (), {"tmp": tmp, "port": port, "admin_port": admin_port})
            with open(config_path, "w") as f:
                f.write(expand(text, stub))
            gw = ConfigGateway(argv, port, log_path, tmp, config_path, admin_port)
            started.append(gw)
            if not wait:
                return gw
            if gw.wait_ready() and wait_for(lambda: _admin_up(admin_port), START_TIMEOUT):
                gw.workers()
                return gw
            last = gw
            if gw.alive() or "in use" not in gw.log().lower():
                break
        pytest.fail(f"gateway did not start: {' '.join(last.argv)}\n"
                    f"exit code: {last.proc.poll()}\nlog:\n{last.log_tail()}")

    yield start

    failed = getattr(request.node, "rep_call", None)
    failed = failed is not None and failed.failed
    reports = []
    for gw in started:
        gw.stop()
        log = gw.log()
        hit = next((m for m in SANITIZER_MARKS if m in log), None)
        if failed or hit:
            print(f"\n--- gateway log ({' '.join(gw.argv)}) ---\n{gw.log_tail(80)}")
        if hit:
            i = log.index(hit)
            reports.append(log[max(0, i - 200):i + 3000])
    shutil.rmtree(tmp_root, ignore_errors=True)
    if reports:
        pytest.fail("sanitizer report in the gateway/worker output:\n" + reports[0],
                    pytrace=False)


def _admin_up(port):
    try:
        return admin(port, "GET", "/status", timeout=1).status == 200
    except (OSError, ConnectionClosed, ValueError):
        return False
