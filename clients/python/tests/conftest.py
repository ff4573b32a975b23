"""Fixtures for the sluice Python client tests.

End-to-end tests start the real gateway (``$SLUICE_BUILD_DIR/server/sluice``,
default ``build/``) on a free loopback port with a Python worker command, and
stop it in teardown by PID: SIGTERM, then SIGKILL after a few seconds, then
SIGKILL for any worker process of it still alive (verified by start time).
"""

from __future__ import annotations

import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from typing import Optional

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
APPS = os.path.join(HERE, "apps")
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
BUILD_DIR = os.path.join(ROOT, os.environ.get("SLUICE_BUILD_DIR", "build"))
SLUICE = os.path.join(BUILD_DIR, "server", "sluice")
START_TIMEOUT = 15.0

sys.path.insert(0, HERE)


def proc_stat(pid: int):
    """(ppid, starttime) of a live process, or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    rest = data[data.rindex(b")") + 2:].split()
    if rest[0] in (b"Z", b"X"):
        return None
    return int(rest[1]), int(rest[19])


def children_of(pid: int) -> list[int]:
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            st = proc_stat(int(d))
            if st and st[0] == pid:
                out.append(int(d))
    return sorted(out)


def status_kib(pid: int, field: str) -> Optional[int]:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


class RssMonitor:
    """Samples a process's VmRSS in a thread; ``peak_kib()`` also reads VmHWM."""

    def __init__(self, pid: int, interval: float = 0.02) -> None:
        self.pid = pid
        self.interval = interval
        self.max_kib = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            v = status_kib(self.pid, "VmRSS")
            if v is not None:
                self.max_kib = max(self.max_kib, v)
                self.samples += 1
            self._stop.wait(self.interval)

    def peak_kib(self) -> int:
        return max(self.max_kib, status_kib(self.pid, "VmHWM") or 0)

    def __enter__(self) -> "RssMonitor":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(2)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Gateway:
    def __init__(self, argv: list[str], port: int, log_path: str, env: dict) -> None:
        self.argv = argv
        self.port = port
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT, cwd=APPS, env=env)
        self.pid = self.proc.pid
        self.seen: dict[int, int] = {}

    def log(self) -> str:
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def alive(self) -> bool:
        return self.proc.poll() is None

    def workers(self) -> list[int]:
        pids = children_of(self.pid)
        for p in pids:
            st = proc_stat(p)
            if st:
                self.seen[p] = st[1]
        return pids

    def wait_log(self, text: str, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.log():
                return True
            time.sleep(0.05)
        return False

    def wait_ready(self, timeout: float = START_TIMEOUT) -> bool:
        """Listening and every worker connected (logged 'ready')."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                return False
            if " ready, " in self.log():
                try:
                    with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                        self.workers()
                        return True
                except OSError:
                    pass
            time.sleep(0.05)
        return False

    def terminate(self, timeout: float = 10.0) -> Optional[int]:
        if self.alive():
            self.workers()
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self) -> None:
        if self.alive():
            self.terminate(5)
        if self.alive():
            self.proc.kill()
            self.proc.wait(5)
        for p, start in list(self.seen.items()):
            st = proc_stat(p)
            if st and st[1] == start:
                try:
                    os.kill(p, signal.SIGKILL)
                except OSError:
                    pass
        self._log.close()

    # -- HTTP helpers ----------------------------------------------------------
    def request(self, method: str, path: str, body: Optional[bytes] = None,
                headers: Optional[dict] = None, timeout: float = 20.0):
        """(status, headers dict lower-cased, body) of one request."""
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            c.request(method, path, body=body, headers=headers or {})
            r = c.getresponse()
            data = r.read()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, data
        finally:
            c.close()

    def get(self, path: str, **kw):
        return self.request("GET", path, **kw)


def _have(path: str) -> bool:
    return os.path.isfile(path) and os.access(path, os.X_OK)


@pytest.fixture
def gateway(request):
    """Factory: gateway(worker_args, *gateway_flags, workers=1) -> Gateway.

    ``worker_args`` are the arguments after ``python -m``, e.g.
    ``["sluice", "--loop", "trio", "native_app:app"]``; the worker runs with
    this interpreter, in tests/apps."""
    if not _have(SLUICE):
        pytest.skip(f"gateway binary not built: {SLUICE} (ninja -C build)")
    started: list[Gateway] = []
    tmp = tempfile.mkdtemp(prefix="sluice-py-")

    def start(worker_args: list[str], *flags: str, workers: int = 1, wait: bool = True) -> Gateway:
        env = dict(os.environ)
        env["PYTHONPATH"] = APPS + os.pathsep + env.get("PYTHONPATH", "")
        env["PYTEST_SLUICE_TMP"] = tmp
        for attempt in range(3):
            port = free_port()
            sock_dir = tempfile.mkdtemp(prefix="s", dir=tmp)
            argv = [SLUICE, "--listen", f"127.0.0.1:{port}", "--workers", str(workers),
                    "--socket-dir", sock_dir, *flags, "--", sys.executable, "-m", *worker_args]
            gw = Gateway(argv, port, os.path.join(tmp, f"gw-{len(started)}.log"), env)
            started.append(gw)
            if not wait or gw.wait_ready():
                return gw
            if "in use" not in gw.log().lower():
                break
        pytest.fail(f"gateway not ready: {' '.join(argv)}\n{gw.log()[-4000:]}")

    start.tmp = tmp  # type: ignore[attr-defined]
    yield start
    failed = getattr(request.node, "rep_call", None)
    for gw in started:
        gw.stop()
        if failed is not None and failed.failed:
            print(f"\n--- gateway log ({' '.join(gw.argv)}) ---\n{gw.log()[-6000:]}")
    shutil.rmtree(tmp, ignore_errors=True)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


def raw_request(port: int, data: bytes, timeout: float = 10.0) -> bytes:
    """Send raw bytes, read until the peer closes; returns everything read."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        out = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return out
            out += chunk


def post_refused(port: int, path: str, size: int, timeout: float = 10.0) -> bytes:
    """POST `size` bytes that the server may refuse mid-upload: sending stops
    quietly if the connection breaks; returns the response head read."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {size}\r\n\r\n".encode())
        block = b"x" * 65536
        sent = 0
        try:
            while sent < size:
                s.sendall(block[:min(len(block), size - sent)])
                sent += min(len(block), size - sent)
        except OSError:
            pass
        out = b""
        try:
            while b"\r\n\r\n" not in out:
                chunk = s.recv(65536)
                if not chunk:
                    break
                out += chunk
        except OSError:
            pass
        return out
