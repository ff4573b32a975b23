"""Side-by-side benchmark driver for scripts/bench-python.

Every server runs pinned to CPU 0 (``taskset -c 0``; the gateway's worker
inherits it), wrk runs pinned to CPU 1. Each peer is first checked to answer
``GET /`` with 200 and the exact body. Then, for several rounds, every server
of a comparison is loaded in turn (so slow drifts of the machine hit all of
them alike); the median req/s per server is reported with the ratios against
the targets. One Python process per server: the gateway runs ``--workers 1``,
uvicorn/Granian/gunicorn one worker each.

    python bench.py [--rounds N] [--duration S] [--connections C] [--only NAME,...]
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
BUILD = os.path.join(ROOT, os.environ.get("SLUICE_BUILD_DIR", "build"))
SLUICE = os.path.join(BUILD, "server", "sluice")
PY = sys.executable
BIN = os.path.dirname(PY)
BODY = b"Hello, world!\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def gateway(worker: list[str]):
    return lambda port: [SLUICE, "--listen", f"127.0.0.1:{port}", "--workers", "1", "--access-log", "off",
                         "--", PY, "-m", *worker]


SERVERS = {
    "sluice-native": gateway(["sluice", "hello_apps:native"]),
    "sluice-asgi": gateway(["sluice.asgi", "--lifespan", "off", "hello_apps:asgi"]),
    "uvicorn": lambda port: [PY, "-m", "uvicorn", "--loop", "uvloop", "--http", "httptools", "--no-access-log",
                             "--log-level", "warning", "--lifespan", "off", "--port", str(port), "hello_apps:asgi"],
    "granian": lambda port: [os.path.join(BIN, "granian"), "--interface", "asgi", "--workers", "1",
                             "--loop", "uvloop", "--no-access-log", "--log-level", "warning",
                             "--port", str(port), "hello_apps:asgi"],
    # the WSGI adapter's default: one process, a pool of 8 threads
    "sluice-wsgi": gateway(["sluice.wsgi", "--threads", "8", "hello_apps:wsgi"]),
    # for reference: one thread, like gunicorn's sync worker
    "sluice-wsgi-1t": gateway(["sluice.wsgi", "--threads", "1", "hello_apps:wsgi"]),
    "gunicorn": lambda port: [PY, "-m", "gunicorn", "-w", "1", "-k", "sync", "-b", f"127.0.0.1:{port}",
                              "--log-level", "warning", "hello_apps:wsgi"],
}

# (server, peer, target ratio)
TARGETS = [
    ("sluice-native", "uvicorn", 1.5),
    ("sluice-asgi", "uvicorn", 1.2),
    ("sluice-asgi", "granian", 1.0),
    ("sluice-wsgi", "gunicorn", 1.5),
]
GROUPS = [["sluice-native", "sluice-asgi", "uvicorn", "granian"], ["sluice-wsgi", "sluice-wsgi-1t", "gunicorn"]]


class Server:
    def __init__(self, name: str) -> None:
        self.name = name
        self.port = free_port()
        argv = ["taskset", "-c", "0", *SERVERS[name](self.port)]
        self.log = open(os.path.join(os.environ.get("TMPDIR", "/tmp"), f"bench-{name}.log"), "wb")
        self.proc = subprocess.Popen(argv, cwd=HERE, stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=False)

    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def check(self, timeout: float = 20.0) -> None:
        """Wait until GET / answers 200 with the expected body."""
        deadline = time.monotonic() + timeout
        last: object = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                with urllib.request.urlopen(self.url(), timeout=2) as r:
                    body = r.read()
                    if r.status == 200 and body == BODY:
                        return
                    last = (r.status, body)
            except OSError as exc:
                last = exc
            time.sleep(0.1)
        raise SystemExit(f"{self.name}: no correct answer on {self.url()} ({last!r}); "
                         f"see {self.log.name}")

    def stop(self) -> None:
        kids = children(self.proc.pid)
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        for pid, start in kids:
            if start_time(pid) == start:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
        self.log.close()


def start_time(pid: int):
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[19]
    except OSError:
        return None


def children(pid: int) -> list:
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat", "rb") as f:
                    rest = f.read().rsplit(b")", 1)[1].split()
            except OSError:
                continue
            if int(rest[1]) == pid:
                out.append((int(d), rest[19]))
                out += children(int(d))
    return out


def wrk(url: str, duration: float, connections: int) -> float:
    r = subprocess.run(["taskset", "-c", "1", "wrk", "-t1", f"-c{connections}", f"-d{max(1, round(duration))}s", url],
                       capture_output=True, text=True, timeout=duration + 30)
    m = re.search(r"Requests/sec:\s*([\d.]+)", r.stdout)
    if not m:
        raise SystemExit(f"wrk failed: {r.stdout}{r.stderr}")
    if "Non-2xx" in r.stdout or "Socket errors" in r.stdout and "read 0" not in r.stdout:
        print(f"  note: {url}: " + " ".join(l.strip() for l in r.stdout.splitlines()
                                             if "Non-2xx" in l or "Socket errors" in l))
    return float(m.group(1))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=int(os.environ.get("BENCH_ROUNDS", "5")))
    ap.add_argument("--duration", type=float, default=float(os.environ.get("BENCH_DURATION", "5")))
    ap.add_argument("--connections", type=int, default=int(os.environ.get("BENCH_CONNECTIONS", "64")))
    ap.add_argument("--only", default="", help="comma-separated server names")
    args = ap.parse_args()
    only = set(filter(None, args.only.split(",")))
    results: dict[str, list[float]] = {}
    print(f"# {args.rounds} rounds x {args.duration:g}s, wrk -t1 -c{args.connections} on CPU 1, "
          f"servers on CPU 0 ({os.cpu_count()} CPUs)")
    for group in GROUPS:
        names = [n for n in group if not only or n in only]
        if not names:
            continue
        servers = []
        try:
            for n in names:
                servers.append(Server(n))
            for s in servers:
                s.check()
                wrk(s.url(), 1, args.connections)  # warm-up
            for rnd in range(args.rounds):
                line = []
                for s in servers:
                    rps = wrk(s.url(), args.duration, args.connections)
                    results.setdefault(s.name, []).append(rps)
                    line.append(f"{s.name} {rps:,.0f}")
                print(f"round {rnd + 1}: " + ", ".join(line), flush=True)
        finally:
            for s in servers:
                s.stop()
    med = {n: statistics.median(v) for n, v in results.items()}
    print("\n| server | median req/s | rounds |")
    print("|---|---:|---|")
    for n, v in results.items():
        print(f"| {n} | {med[n]:,.0f} | {', '.join(f'{x:,.0f}' for x in v)} |")
    print("\n| comparison | ratio | target | |")
    print("|---|---:|---:|---|")
    ok = True
    for a, b, target in TARGETS:
        if a in med and b in med:
            ratio = med[a] / med[b]
            good = ratio >= target
            ok &= good
            print(f"| {a} / {b} | {ratio:.2f}x | >= {target:.1f}x | {'met' if good else 'MISSED'} |")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
