"""Shared parts of the benchmark scripts (scripts/bench and its wrappers).

What every comparison needs, in one place:

- installing the peers (Debian packages, PyPI packages into .venv) and
  building the gateway (a release build in $SLUICE_BUILD_DIR, default
  build-release);
- starting a server pinned to the server CPU (``taskset -c SERVER_CPU``, its
  children inherit it), waiting for its port and checking that it answers
  with the right status and body before anything is measured;
- running sluice-load pinned to the load CPU with ``--json`` and reading the
  report (req/s, latency percentiles, errors, non-2xx);
- interleaved rounds (A B C A B C ...) and medians;
- reading a process tree's memory from /proc, machine facts for the report,
  markdown tables and small hand-written SVG charts.

Only the standard library: scripts/bench runs this with the system python3
first (to install things), then again inside .venv.
"""

from __future__ import annotations

import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from typing import Callable, Iterable, Optional, Sequence

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
BUILD = os.path.join(ROOT, os.environ.get("SLUICE_BUILD_DIR", "build-release"))
SLUICE = os.path.join(BUILD, "server", "sluice")
LOAD = os.path.join(BUILD, "server", "load", "sluice-load")
EXAMPLES = os.path.join(BUILD, "examples", "c")
VENV = os.path.join(ROOT, ".venv")
VENV_PY = os.path.join(VENV, "bin", "python")
SERVER_CPU = os.environ.get("SERVER_CPU", "1")
LOAD_CPU = os.environ.get("LOAD_CPU", "0")
HELLO_BODY = b"Hello, world!\n"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- installing

def apt_install(packages: Sequence[str]) -> None:
    """Install the Debian packages that are not installed yet."""
    missing = [p for p in packages if subprocess.run(
        ["dpkg-query", "-W", "-f=${Status}", p], capture_output=True, text=True).stdout.find("install ok installed") < 0]
    if not missing:
        return
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    log(f"bench: apt-get install {' '.join(missing)}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(sudo + ["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(sudo + ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
                   check=True, env=env, stdout=subprocess.DEVNULL)


def ensure_venv(pip_packages: Sequence[str]) -> None:
    """Create .venv (if missing) and install the worker library and the peers."""
    if not os.path.exists(VENV_PY):
        subprocess.run([sys.executable, "-m", "venv", VENV], check=True)
    subprocess.run([VENV_PY, "-m", "pip", "install", "-q", "--disable-pip-version-check",
                    "-e", os.path.join(ROOT, "clients", "python") + "[uvloop]", *pip_packages], check=True)


def in_venv() -> bool:
    return os.path.realpath(sys.prefix) == os.path.realpath(VENV)


def build() -> None:
    """Release build of the gateway, the examples and sluice-load."""
    if not os.path.exists(os.path.join(BUILD, "build.ninja")):
        subprocess.run(["meson", "setup", BUILD, "--buildtype=release"], check=True, cwd=ROOT,
                       stdout=subprocess.DEVNULL)
    subprocess.run(["ninja", "-C", BUILD], check=True, cwd=ROOT, stdout=subprocess.DEVNULL)


def raise_nofile(n: int) -> int:
    """Raise this process's open-file limit (inherited by what it starts)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = max(soft, n)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(hard, want)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


# ---------------------------------------------------------------- processes

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stat(pid: int) -> Optional[list]:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()
    except OSError:
        return None


def descendants(pid: int) -> list[tuple[int, bytes]]:
    """(pid, start time) of every process below pid."""
    parent: dict[int, list[int]] = {}
    starts: dict[int, bytes] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            st = _stat(int(d))
            if st:
                parent.setdefault(int(st[1]), []).append(int(d))
                starts[int(d)] = st[19]
    out, todo = [], [pid]
    while todo:
        for c in parent.get(todo.pop(), []):
            out.append((c, starts[c]))
            todo.append(c)
    return out


def proc_status_kb(pid: int, field: str) -> int:
    """VmRSS, VmHWM, ... of one process in KiB (0 if gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def sched_threads(pids: Iterable[int]) -> dict[int, tuple[int, int]]:
    """{thread id: (ns spent on a CPU, ns spent runnable but waiting for
    one)} for every thread of pids (/proc/PID/task/TID/schedstat)."""
    out = {}
    for pid in pids:
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                    a = f.read().split()
                out[int(tid)] = (int(a[0]), int(a[1]))
            except (OSError, ValueError, IndexError):
                pass
    return out


def sched_ns(pids: Iterable[int]) -> tuple[int, int]:
    """(ns on a CPU, ns waiting for one), summed over every thread of pids."""
    t = sched_threads(pids).values()
    return sum(r for r, _ in t), sum(w for _, w in t)


class CpuUse:
    """CPU used by a process tree between start() and stop(): seconds on a
    CPU (cpu_s) and demand = (on a CPU + waiting for one) / wall time. With
    the tree pinned to one CPU, demand near 1 or above means it always had
    work (it was the bottleneck); well below 1, it sat idle waiting for its
    peer. Waiting counts other jobs on the same CPU as the tree's own."""

    def __init__(self, pids: Callable[[], list[int]]) -> None:
        self.pids = pids
        self.cpu_s = self.demand = float("nan")

    def start(self) -> "CpuUse":
        self.t0 = time.monotonic()
        self.a = sched_ns(self.pids())
        return self

    def stop(self) -> "CpuUse":
        run, wait = sched_ns(self.pids())
        wall = time.monotonic() - self.t0
        if run > self.a[0]:  # zero: no schedstat on this kernel
            self.cpu_s = (run - self.a[0]) / 1e9
            self.demand = (run - self.a[0] + wait - self.a[1]) / 1e9 / wall
        return self


def run_metered(cmd: Sequence[str], server: Optional["Server"] = None,
                timeout: float = 300) -> tuple[str, str, int, dict]:
    """Run a load generator (already wrapped in taskset); meter its CPU and,
    if given, the server tree's over the same interval. The client's CPU
    time comes from wait4 (exact); its demand from schedstat samples every
    0.1 s, each thread's last sample counting (threads may end before the
    process does)."""
    srv = CpuUse(server.tree).start() if server else None
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        p = subprocess.Popen(cmd, stdout=out, stderr=err, text=True)
        t0 = time.monotonic()
        seen: dict[int, tuple[int, int]] = {}
        first = last = None  # (time, ns on a CPU + ns waiting), summed over the threads seen
        while True:
            pid, status, ru = os.wait4(p.pid, os.WNOHANG)
            if pid:
                break
            seen.update(sched_threads([p.pid]))
            sample = (time.monotonic(), sum(r + w for r, w in seen.values()))
            first = first or sample
            if not last or sample[1] > last[1]:
                last = sample
            if time.monotonic() - t0 > timeout:
                p.kill()
            time.sleep(0.1)
        p.returncode = os.waitstatus_to_exitcode(status)
        if srv:
            srv.stop()
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    cpu = {"client_s": ru.ru_utime + ru.ru_stime, "client_demand": float("nan"),
           "server_s": srv.cpu_s if srv else float("nan"), "server_demand": srv.demand if srv else float("nan")}
    if first and last and last[0] > first[0] and last[1] > first[1]:
        cpu["client_demand"] = (last[1] - first[1]) / 1e9 / (last[0] - first[0])
    return stdout, stderr, p.returncode, cpu


class Server:
    """A server process tree started pinned to SERVER_CPU.

    ``argv`` may contain ``{port}`` and ``{work}`` (a private temporary
    directory); ``path`` is the URL path that the checks and loads use.
    ``scheme`` https: a TLS listener, checked with curl trusting ``cacert``;
    ws: a WebSocket echo endpoint at ``path``, checked with echoes of text
    and binary messages (scripts/bench_ws.py check) instead of a GET;
    ``proto`` "h2": checked with curl over HTTP/2 (prior knowledge on http,
    ALPN on https), which must be the version answering."""

    def __init__(self, name: str, argv: Sequence[str], *, label: str = "", path: str = "/",
                 body: Optional[bytes] = HELLO_BODY, cwd: str = ROOT, env: Optional[dict] = None,
                 files: Optional[dict[str, str]] = None, port: Optional[int] = None,
                 scheme: str = "http", cacert: Optional[str] = None, proto: str = "http/1.1") -> None:
        self.name = name
        self.label = label or name
        self.path = path
        self.body = body
        self.scheme = scheme
        self.cacert = cacert
        self.proto = proto
        self.port = port or free_port()
        self.work = tempfile.mkdtemp(prefix=f"bench-{name}-")
        os.chmod(self.work, 0o755)  # nginx workers run as another user when started by root
        self.files = dict(files or {})
        for fname, text in self.files.items():
            with open(os.path.join(self.work, fname), "w") as f:
                f.write(self.subst(text))
        self.argv = [self.subst(a) for a in argv]
        self.logname = os.path.join(self.work, "server.log")
        self._log = open(self.logname, "wb")
        self.proc = subprocess.Popen(["taskset", "-c", SERVER_CPU, *self.argv], cwd=cwd,
                                     env=dict(os.environ, **(env or {})), stdin=subprocess.DEVNULL,
                                     stdout=self._log, stderr=subprocess.STDOUT)
        self.pid = self.proc.pid  # taskset execs the server: same pid

    def subst(self, text: str) -> str:
        """{port}, {work}, {root} and {build} (plain replacement: nginx.conf has braces)."""
        for k, v in (("port", self.port), ("work", self.work), ("root", ROOT), ("build", BUILD)):
            text = text.replace("{" + k + "}", str(v))
        return text

    def url(self, path: Optional[str] = None) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}{self.path if path is None else path}"

    def curl(self, url: str) -> tuple[int, str, bytes]:
        """GET url with curl in this server's protocol: (status, HTTP version, body)."""
        cmd = ["curl", "-sS", "--max-time", "10", "-o", "-", "-w", "\n%{http_code} %{http_version}"]
        if self.proto == "h2":
            cmd.append("--http2-prior-knowledge" if self.scheme == "http" else "--http2")
        else:
            cmd.append("--http1.1")
        if self.cacert:
            cmd += ["--cacert", self.cacert]
        r = subprocess.run(cmd + [url], capture_output=True, timeout=20)
        if r.returncode != 0:
            raise OSError(f"curl exit {r.returncode}: {r.stderr.decode(errors='replace').strip()}")
        body, _, tail = r.stdout.rpartition(b"\n")
        code, _, version = tail.decode().partition(" ")
        return int(code), version, body

    def check(self, timeout: float = 30.0) -> None:
        """Wait for the port, then demand the expected status and body (and,
        for HTTP/2, that HTTP/2 answered)."""
        deadline = time.monotonic() + timeout
        last: object = "no answer"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                last = f"exited with status {self.proc.returncode}"
                break
            if self.scheme == "ws":  # a WebSocket echo endpoint: echoes checked, not a GET
                import bench_ws
                try:
                    bench_ws.check(self.url())
                    return
                except (bench_ws.WSError, OSError) as exc:
                    last = f"{type(exc).__name__}: {exc}"
                time.sleep(0.1)
                continue
            if self.scheme != "http" or self.proto != "http/1.1":
                try:
                    code, version, data = self.curl(self.url())
                    want = "2" if self.proto == "h2" else "1.1"
                    if 200 <= code < 300 and version == want and (self.body is None or data == self.body):
                        return
                    last = f"status {code}, HTTP/{version}, body {data[:80]!r}"
                except (OSError, ValueError, subprocess.TimeoutExpired) as exc:
                    last = str(exc)
                time.sleep(0.1)
                continue
            try:
                with urllib.request.urlopen(self.url(), timeout=5) as r:
                    data = r.read()
                    if 200 <= r.status < 300 and (self.body is None or data == self.body):
                        return
                    last = f"status {r.status}, body {data[:80]!r}"
            except urllib.error.HTTPError as exc:
                last = f"status {exc.code}"
            except OSError as exc:
                last = repr(exc)
            time.sleep(0.1)
        tails = []
        for fn in sorted(os.listdir(self.work)):
            if fn.endswith(".log"):
                with open(os.path.join(self.work, fn), "rb") as f:
                    tails.append(f"--- {fn}\n" + f.read()[-1500:].decode(errors="replace"))
        raise BenchError(f"{self.label}: no correct answer on {self.url()} ({last}); logs:\n" + "\n".join(tails))

    def tree(self) -> list[int]:
        return [self.pid] + [p for p, _ in descendants(self.pid)]

    def rss_kb(self, field: str = "VmRSS", which: str = "self") -> int:
        """Memory of the server process (which="self"), of its children
        ("children") or of the whole tree ("tree")."""
        pids = {"self": [self.pid], "children": self.tree()[1:], "tree": self.tree()}[which]
        return sum(proc_status_kb(p, field) for p in pids)

    def stop(self) -> None:
        kids = descendants(self.pid)
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        for pid, start in kids:  # whatever is left of the tree, if still the same process
            st = _stat(pid)
            if st and st[19] == start:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
        self._log.close()
        shutil.rmtree(self.work, ignore_errors=True)

    def __enter__(self) -> "Server":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


class BenchError(Exception):
    pass


class Servers(list):
    """Servers of one comparison: all started, all checked, all stopped."""

    def __init__(self, servers: Iterable[Server] = ()) -> None:
        super().__init__(servers)

    def check(self) -> "Servers":
        for s in self:
            s.check()
        return self

    def __enter__(self) -> "Servers":
        return self

    def __exit__(self, *exc) -> None:
        for s in self:
            s.stop()


# ---------------------------------------------------------------- load

def load_cmd(url: str, *, connections: int = 50, duration: float = 5, rate: Optional[int] = None,
             threads: int = 1, requests: Optional[int] = None, svg: Optional[str] = None,
             extra: Sequence[str] = ()) -> list[str]:
    cmd = [LOAD, "-q", "--json", "-t", str(threads), "-c", str(connections)]
    if requests:
        cmd += ["-n", str(requests)]
    else:
        cmd += ["-d", f"{duration:g}s"]
    if rate:
        cmd += ["-R", str(rate)]
    if svg:
        cmd += ["--svg", svg]
    return cmd + list(extra) + [url]


def run_load(url: str, server: Optional["Server"] = None, **kw) -> dict:
    """sluice-load pinned to LOAD_CPU; its JSON report plus 'bad' (failed or
    non-2xx requests) and 'cmd'. Latencies in the report are microseconds.
    With server: also 'cpu' (see run_metered) for the client and that server."""
    cmd = load_cmd(url, **kw)
    timeout = (kw.get("duration") or 0) + 120
    if server:
        stdout, stderr, rc, cpu = run_metered(["taskset", "-c", LOAD_CPU, *cmd], server, timeout)
    else:
        r = subprocess.run(["taskset", "-c", LOAD_CPU, *cmd], capture_output=True, text=True, timeout=timeout)
        stdout, stderr, rc, cpu = r.stdout, r.stderr, r.returncode, None
    try:
        rep = json.loads(stdout)
    except json.JSONDecodeError:
        raise BenchError(f"sluice-load failed ({rc}): {stderr.strip()[-500:]}") from None
    if cpu:
        rep["cpu"] = cpu
    return _finish(rep, cmd)


H2LOAD_UNITS = {"us": 1, "ms": 1e3, "s": 1e6}


def run_h2load(url: str, *, connections: int, streams: int, duration: float,
               server: Optional["Server"] = None, extra: Sequence[str] = ()) -> dict:
    """h2load (nghttp2) pinned to LOAD_CPU, one thread, for `duration`
    seconds: a report shaped like sluice-load's (requests_per_s, completed,
    bad = failed + errored + timed out + 3xx / 4xx / 5xx, latency mean / max in
    microseconds, protocol, tls_info, cmd; cpu with server). h2load must
    have spoken HTTP/2 (h2c on http://, ALPN h2 on https://)."""
    cmd = ["h2load", "-t", "1", "-c", str(connections), "-m", str(streams),
           "-D", f"{max(1, round(duration * 1000))}ms", *extra, url]
    stdout, stderr, rc, cpu = run_metered(["taskset", "-c", LOAD_CPU, *cmd], server, duration + 120)
    m = re.search(r"finished in [\d.]+(?:ms|us|s), ([\d.]+) req/s", stdout)
    rq = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
                   r"(\d+) errored, (\d+) timeout", stdout)
    sc = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", stdout)
    proto = re.search(r"Application protocol: (\S+)", stdout)
    if rc != 0 or not (m and rq and sc and proto):
        raise BenchError(f"h2load failed ({rc}): {(stdout + stderr).strip()[-800:]}")
    want = "h2c" if url.startswith("http:") else "h2"
    if proto.group(1) != want:
        raise BenchError(f"h2load spoke {proto.group(1)}, not {want}, to {url}")
    total, started, done, ok, failed, errored, tmo = (int(x) for x in rq.groups())
    s2, s3, s4, s5 = (int(x) for x in sc.groups())
    lat = {"p50": float("nan"), "p99": float("nan")}
    t = re.search(r"time for request:\s+([\d.]+)(us|ms|s)\s+([\d.]+)(us|ms|s)\s+([\d.]+)(us|ms|s)", stdout)
    if t:
        lat["min"] = float(t.group(1)) * H2LOAD_UNITS[t.group(2)]
        lat["max"] = float(t.group(3)) * H2LOAD_UNITS[t.group(4)]
        lat["mean"] = float(t.group(5)) * H2LOAD_UNITS[t.group(6)]
    tls = [re.search(rf"{k}: (.+)", stdout) for k in ("TLS Protocol", "Cipher", "Server Temp Key")]
    rep = {"requests_per_s": float(m.group(1)), "completed": done, "requests": total,
           "bad": failed + errored + tmo + s3 + s4 + s5, "latency": lat, "protocol": proto.group(1),
           "tls_info": ", ".join(x.group(1).strip() for x in tls if x), "cmd": cmd, "output": stdout}
    if cpu:
        rep["cpu"] = cpu
    return rep


def _finish(rep: dict, cmd: Sequence[str]) -> dict:
    # errors.total counts failed requests and 4xx/5xx answers; 3xx and others are not 2xx either.
    # WebSocket: every echoed message is an "other" status; failed handshakes and wrong echoes
    # are errors (parse, echo).
    rep["bad"] = rep["errors"]["total"]
    if rep.get("protocol") != "websocket":
        rep["bad"] += rep["status"]["3xx"] + rep["status"]["other"]
    rep["cmd"] = list(cmd)
    return rep


def poll_while(fn: Callable[[], int], proc: subprocess.Popen, interval: float = 0.05) -> int:
    """Largest value of fn() while proc runs."""
    best = fn()
    while proc.poll() is None:
        best = max(best, fn())
        time.sleep(interval)
    return best


def run_load_polled(url: str, probe: Callable[[], int], **kw) -> tuple[dict, int]:
    """run_load, sampling probe() (e.g. a server's RSS) during the run: (report, max)."""
    cmd = load_cmd(url, **kw)
    with tempfile.TemporaryFile("w+") as out:
        p = subprocess.Popen(["taskset", "-c", LOAD_CPU, *cmd], stdout=out, stderr=subprocess.PIPE, text=True)
        peak = poll_while(probe, p)
        err = p.stderr.read()
        out.seek(0)
        text = out.read()
    try:
        rep = json.loads(text)
    except json.JSONDecodeError:
        raise BenchError(f"sluice-load failed ({p.returncode}): {err.strip()[-500:]}") from None
    return _finish(rep, cmd), peak


def interleaved(servers: Sequence[Server], rounds: int, measure: Callable[[Server, int], dict],
                label: str = "") -> dict[str, list[dict]]:
    """measure(server, round) for round in 1..rounds, servers in turn (A B C A B C ...)."""
    out: dict[str, list[dict]] = {s.name: [] for s in servers}
    for rnd in range(1, rounds + 1):
        parts = []
        for s in servers:
            r = measure(s, rnd)
            out[s.name].append(r)
            parts.append(f"{s.name} {r.get('requests_per_s', 0):,.0f}/s"
                         + (f" ({r['bad']} bad)" if r.get("bad") else ""))
        log(f"  {label}round {rnd}: " + ", ".join(parts))
    return out


def median(values: Iterable[float]) -> float:
    v = list(values)
    return statistics.median(v) if v else float("nan")


def med(reps: Sequence[dict], key: str) -> float:
    """Median of a report field: 'requests_per_s' or 'latency.p99' (then in ms)."""
    vals = []
    for r in reps:
        v = r
        for k in key.split("."):
            v = v[k]
        vals.append(v / 1000 if key.startswith(("latency.", "service.")) else v)
    return median(vals)


def bad_total(reps: Sequence[dict]) -> int:
    return sum(r.get("bad", 0) for r in reps)


def shell_quote(cmd: Sequence[str]) -> str:
    import shlex
    # repository paths shown relative to its root, also inside `sh -c` strings
    return " ".join(shlex.quote(c.replace(ROOT + "/", "")) for c in cmd)


# ---------------------------------------------------------------- machine facts

def _first(cmd: Sequence[str], pattern: str = r"(.*)") -> str:
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return "n/a"
    m = re.search(pattern, (r.stdout + r.stderr).strip())
    return m.group(1).strip() if m else "n/a"


def machine_info() -> dict[str, str]:
    cpu = "n/a"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    distro = "n/a"
    try:
        for line in open("/etc/os-release"):
            if line.startswith("PRETTY_NAME="):
                distro = line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    mem = _first(["free", "-g"], r"Mem:\s+(\d+)")
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "memory": f"{mem} GiB" if mem != "n/a" else mem,
        "kernel": platform.release(),
        "distro": distro,
        "loadavg": " ".join(open("/proc/loadavg").read().split()[:3]),
        "commit": _first(["git", "-C", ROOT, "rev-parse", "--short=12", "HEAD"]),
        # the report's own files do not count (--publish runs on top of an earlier report)
        "dirty": "yes" if _first(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no", "--", ".",
                                  ":!docs/benchmarks.md", ":!docs/bench"]) not in ("", "n/a") else "no",
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
    }


def pip_version(dist: str) -> str:
    try:
        from importlib.metadata import version
        return version(dist)
    except Exception:
        return "n/a"


def deb_version(pkg: str) -> str:
    return _first(["dpkg-query", "-W", "-f=${Version}", pkg])


# ---------------------------------------------------------------- markdown, SVG

def table(header: Sequence[str], rows: Iterable[Sequence[object]], align: str = "") -> str:
    """Markdown table; align is one char per column: l or r (default r after the first)."""
    align = align or "l" + "r" * (len(header) - 1)
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join(":---" if a == "l" else "---:" for a in align) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(str(c) for c in row) + " |")
    return "\n".join(lines)


def fmt_int(x: float) -> str:
    return "n/a" if x != x else f"{x:,.0f}"


def fmt_ms(x: float) -> str:
    if x != x:
        return "n/a"
    return f"{x:.2f}" if x < 10 else f"{x:.1f}" if x < 1000 else f"{x:,.0f}"


def ratio(a: float, b: float) -> str:
    return "n/a" if not b or a != a or b != b else f"{a / b:.2f}x"


_COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]


def _esc(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# Generous width of one character at font-size 12 in a sans-serif face
# (capitals and digits are the widest): legends and labels are sized by
# it, so no label runs off the chart whatever the reader's font.
CHAR_W = 7.5


def text_width(s: str) -> float:
    return CHAR_W * len(s)


def _nice_max(v: float) -> float:
    if v <= 0:
        return 1
    e = 10 ** int(f"{v:e}".split("e")[1])
    for m in (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10):
        if m * e >= v:
            return m * e
    return 10 * e


def svg_lines(path: str, title: str, xlabels: Sequence[str], series: dict[str, Sequence[float]],
              ylabel: str, log_y: bool = False) -> None:
    """A line chart: one line per series over categorical x values."""
    import math
    # the plot keeps its size; the legend column is as wide as its longest label
    pw, H, L, T, B = 440, 400, 80, 40, 50
    R = 40 + max([text_width(n) for n in series] or [0]) + 15
    W = round(L + pw + R)
    ph = H - T - B
    vals = [v for s in series.values() for v in s if v == v and v > 0]
    if not vals:
        vals = [1]
    if log_y:
        lo = 10 ** math.floor(math.log10(min(vals)))
        hi = 10 ** math.ceil(math.log10(max(vals)))
        if hi <= lo:
            hi = lo * 10

        def y(v: float) -> float:
            v = max(v, lo)
            return T + ph - (math.log10(v) - math.log10(lo)) / (math.log10(hi) - math.log10(lo)) * ph
        ticks = []
        t = lo
        while t <= hi * 1.0001:
            ticks.append(t)
            t *= 10
    else:
        hi = _nice_max(max(vals))

        def y(v: float) -> float:
            return T + ph - v / hi * ph
        ticks = [hi * i / 5 for i in range(6)]
    n = len(xlabels)

    def x(i: int) -> float:
        return L + (pw * (i + 0.5) / n)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
           f'<rect width="{W}" height="{H}" fill="white"/>',
           f'<text x="{W / 2}" y="22" text-anchor="middle" font-size="15">{_esc(title)}</text>']
    for t in ticks:
        out.append(f'<line x1="{L}" x2="{L + pw}" y1="{y(t):.1f}" y2="{y(t):.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{L - 6}" y="{y(t) + 4:.1f}" text-anchor="end">{t:,.{0 if t >= 10 or t == 0 else 2}f}</text>')
    out.append(f'<line x1="{L}" x2="{L}" y1="{T}" y2="{T + ph}" stroke="black"/>')
    out.append(f'<line x1="{L}" x2="{L + pw}" y1="{T + ph}" y2="{T + ph}" stroke="black"/>')
    for i, lab in enumerate(xlabels):
        out.append(f'<text x="{x(i):.1f}" y="{T + ph + 18}" text-anchor="middle">{_esc(lab)}</text>')
    out.append(f'<text x="18" y="{T + ph / 2}" transform="rotate(-90 18 {T + ph / 2})" text-anchor="middle">{_esc(ylabel)}</text>')
    for k, (name, vs) in enumerate(series.items()):
        c = _COLORS[k % len(_COLORS)]
        pts = [(x(i), y(v)) for i, v in enumerate(vs) if v == v and v > 0]
        if pts:
            out.append(f'<polyline fill="none" stroke="{c}" stroke-width="2" points="'
                       + " ".join(f"{a:.1f},{b:.1f}" for a, b in pts) + '"/>')
            for a, b in pts:
                out.append(f'<circle cx="{a:.1f}" cy="{b:.1f}" r="3.5" fill="{c}"/>')
        ly = T + 10 + 20 * k
        out.append(f'<line x1="{L + pw + 15}" x2="{L + pw + 35}" y1="{ly}" y2="{ly}" stroke="{c}" stroke-width="3"/>')
        out.append(f'<text x="{L + pw + 40}" y="{ly + 4}">{_esc(name)}</text>')
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


PCTS = [("p50", "p50"), ("p75", "p75"), ("p90", "p90"), ("p99", "p99"), ("p99.9", "p99_9"),
        ("p99.99", "p99_99"), ("max", "max")]


def svg_percentiles(path: str, title: str, reports: dict[str, Sequence[dict]]) -> None:
    """Latency percentiles (medians over rounds) of several servers on one log-scale chart."""
    svg_lines(path, title, [p for p, _ in PCTS],
              {name: [median(r["latency"][k] / 1000 for r in reps) for _, k in PCTS]
               for name, reps in reports.items()}, "latency, ms (log scale)", log_y=True)


def svg_bars(path: str, title: str, bars: dict[str, float], unit: str, digits: int = 0) -> None:
    """Horizontal bar chart, one bar per name; values shown with `digits` decimals."""
    def fmt(v: float) -> str:
        return "n/a" if v != v else f"{v:,.{digits}f}"
    rowh, T, pw = 28, 40, 370
    hi = _nice_max(max([v for v in bars.values() if v == v] or [1]))
    L = max(120, 8 + max([text_width(n) for n in bars] or [0]) + 10)
    R = 6 + max([text_width(f"{fmt(v)} {unit}") for v in bars.values()] or [0]) + 10
    W = round(L + pw + R)
    H = T + rowh * len(bars) + 20
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
           f'<rect width="{W}" height="{H}" fill="white"/>',
           f'<text x="{W / 2}" y="22" text-anchor="middle" font-size="15">{_esc(title)}</text>']
    for k, (name, v) in enumerate(bars.items()):
        yy = T + k * rowh
        w = 0 if v != v else v / hi * pw
        out.append(f'<text x="{L - 8}" y="{yy + 17}" text-anchor="end">{_esc(name)}</text>')
        out.append(f'<rect x="{L}" y="{yy + 4}" width="{w:.1f}" height="{rowh - 8}" fill="{_COLORS[k % len(_COLORS)]}"/>')
        out.append(f'<text x="{L + w + 6:.1f}" y="{yy + 17}">{fmt(v)} {_esc(unit)}</text>')
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")
