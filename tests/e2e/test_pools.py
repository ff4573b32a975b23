"""Worker pools in production: the config file and --check-config,
supervision (crash replacement, crash loops, startup timeout), scaling
(queue-driven, idle scale-down, admin scale, SIGTTIN/SIGTTOU), recycling
(max_requests, memory_limit), reload (SIGHUP, POST /reload), graceful stop,
routing by host and path, the admin API (/status, /metrics), SIGUSR1 log
reopening, and the workers' environment and directory.

Every gateway here is started from a config file by `start_config`
(pools_util.py) on free loopback ports, and stopped by PID in teardown.
"""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from conftest import EXAMPLES, ROOT, free_port, proc_stat, run_cli
from httpc import Conn, get, request_bytes
from pools_util import (HELLO_BODY, Load, Metrics, admin, start_config,  # noqa: F401
                        status, wait_for)


def hello_pool(name="web", **keys):
    lines = [f"[pool:{name}]", "command = {EXAMPLES}/hello"]
    lines += [f"{k} = {v}" for k, v in keys.items()]
    return "\n".join(lines) + "\n"


def env_pool(name="env", env=(), **keys):
    lines = [f"[pool:{name}]", "command = {PYTHON} {ENVWORKER}"]
    lines += [f"env = {e}" for e in env]
    lines += [f"{k} = {v}" for k, v in keys.items()]
    return "\n".join(lines) + "\n"


def env_of(port, target="/", host="127.0.0.1"):
    """GET from an envworker pool: its JSON self-description."""
    r = get(port, target, headers=[("Host", host)])
    assert r.status == 200, r
    return json.loads(r.body)


def hello_ok(port, n=1, target="/"):
    for _ in range(n):
        r = get(port, target)
        assert r.status == 200 and r.body == HELLO_BODY, r


def log_lines(gw, pattern):
    rx = re.compile(pattern)
    return [line for line in gw.log().splitlines() if rx.search(line)]


def wait_log(gw, pattern, timeout=5.0, count=1):
    """Wait until at least `count` log lines match; returns them."""
    return wait_for(lambda: (lambda m: m if len(m) >= count else None)(log_lines(gw, pattern)),
                    timeout) or log_lines(gw, pattern)


def alive(pid):
    return proc_stat(pid) is not None


# ==========================================================================
# config file and --check-config

def write(tmp_path, text, name="sluice.ini"):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def test_check_config_ok(tmp_path):
    path = write(tmp_path, "[pool:web]\ncommand = /bin/true\nworkers = 2\n"
                 "[pool:files]\ncommand = /bin/cat\n"
                 "[route:a]\nhost = a.example\npool = files\n"
                 "[route:b]\npath = /api/\npool = web\n")
    r = run_cli("--check-config", path)
    assert r.returncode == 0, r
    assert r.stdout.decode() == f"{path}: ok (2 pools, 2 routes)\n", r
    one = write(tmp_path, "[pool:only]\ncommand = x\n", "one.ini")
    r = run_cli("--check-config", one)
    assert r.returncode == 0 and r.stdout.decode() == f"{one}: ok (1 pool, 0 routes)\n", r


BAD_CONFIGS = {
    # name: (text, line or None, message fragment)
    "unknown-key": ("[server]\nlisten = 127.0.0.1:1\nbogus = 1\n[pool:a]\ncommand = x\n",
                    3, "unknown key 'bogus' in [server]"),
    "bad-number": ("[pool:a]\ncommand = x\nmax_workers = lots\n",
                   3, "invalid value for 'max_workers': 'lots'"),
    "bad-duration": ("[pool:a]\ncommand = x\n\nidle_timeout = 5 parsecs\n",
                     4, "invalid value for 'idle_timeout'"),
    "bad-size": ("[pool:a]\ncommand = x\nmemory_limit = 12q\n",
                 3, "invalid value for 'memory_limit'"),
    "unknown-section": ("[pool:a]\ncommand = x\n[frob]\nk = v\n", 4, "unknown section [frob]"),
    "outside-section": ("command = x\n", 1, "'command' is outside any section"),
    "bad-pool-name": ("[pool:a/b]\ncommand = x\n", 2, "bad name in [pool:a/b]"),
    "syntax": ("[pool:a]\ncommand = x\nthis is not a key\n", 3, "syntax error"),
    "route-key-in-pool": ("[pool:a]\ncommand = x\nhost = a.example\n", 3, "unknown key 'host' in [pool:a]"),
    "route-unknown-pool": ("[pool:a]\ncommand = x\n[route:r]\npath = /x/\npool = nope\n",
                           None, "route 'r' names unknown pool 'nope'"),
    "route-path-not-absolute": ("[pool:a]\ncommand = x\n[route:r]\npath = x/\npool = a\n",
                                4, "invalid value for 'path'"),
    "no-pool": ("[server]\nlisten = 127.0.0.1:1\n", None, "no pool defined"),
    "no-command": ("[pool:a]\nworkers = 2\n", None, "pool 'a' has no command"),
    "command-substitution": ("[pool:a]\ncommand = /bin/echo `id`\n",
                             2, "invalid value for 'command'"),
    "command-substitution-dollar": ("[pool:a]\ncommand = /bin/echo $(id)\n",
                                    2, "invalid value for 'command'"),
    "command-undefined-variable": ("[pool:a]\ncommand = /bin/echo $SLUICE_TEST_UNDEFINED_VAR\n",
                                   2, "invalid value for 'command'"),
    "command-pipe": ("[pool:a]\ncommand = /bin/echo a | cat\n", 2, "invalid value for 'command'"),
    "min-above-max": ("[pool:a]\ncommand = x\nmin_workers = 3\nmax_workers = 2\n",
                      None, "max_workers (2) must be at least min_workers (3)"),
}


@pytest.mark.parametrize("name", sorted(BAD_CONFIGS))
def test_check_config_errors(tmp_path, name):
    text, line, fragment = BAD_CONFIGS[name]
    path = write(tmp_path, text)
    r = run_cli("--check-config", path)
    err = r.stderr.decode()
    assert r.returncode > 0, f"{name}: exit {r.returncode} (negative: killed by a signal)\n{err}"
    assert r.stdout == b"", r
    prefix = f"{path}:{line}: " if line else f"{path}: "
    assert err.startswith(prefix), f"{name}: expected '{prefix}...', got {err!r}"
    assert fragment in err, f"{name}: expected {fragment!r} in {err!r}"
    assert len(err.splitlines()) == 1, err


def test_pool_flags_rejected_with_config_file(tmp_path):
    """Pool-shaping flags belong in the pool's section: rejected next to
    --config whichever comes first (never silently ignored)."""
    from conftest import SLUICE
    path = write(tmp_path, "[pool:a]\ncommand = /bin/true\n")
    listen = ["--listen", f"127.0.0.1:{free_port()}"]
    for argv in (["--config", path, "--workers", "3"],
                 ["--workers", "3", "--config", path],
                 ["--max-requests", "5", "--check-config", path]):
        proc = subprocess.Popen([SLUICE, *argv, *listen], stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
        try:
            out, err = proc.communicate(timeout=3)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGTERM)  # it is running: stop it by PID
            out, err = proc.communicate(timeout=10)
            pytest.fail(f"{argv}: the gateway started (the flag was ignored)")
        assert proc.returncode != 0 and b"cannot be combined with a config file" in err, \
            f"{argv}: exit {proc.returncode}, stdout {out!r}, stderr {err!r}"


def test_example_config(start_config):
    """examples/sluice.ini is valid and serves: hello by default, blob
    under /files/ (its [server] listen/admin are overridden by the flags)."""
    example = os.path.join(ROOT, "examples", "sluice.ini")
    r = run_cli("--check-config", "examples/sluice.ini")
    assert r.returncode == 0 and b": ok (" in r.stdout, r
    with open(example) as f:
        text = f.read().replace("build/examples/c/", "{EXAMPLES}/")
    gw = start_config(text)
    hello_ok(gw.port, 3)
    r = get(gw.port, "/files/report?n=1000")
    assert r.status == 200 and len(r.body) == 1000, r
    assert [p["name"] for p in gw.status()["pools"]] == ["web", "files"]


def test_server_section_listen_admin_and_limits(start_config):
    """listen and admin from [server]; a [server] limit applies."""
    gw = start_config("[server]\nlisten = 127.0.0.1:{PORT}\nadmin = 127.0.0.1:{ADMIN}\n"
                      "max_target = 100\nlog_level = debug\n" + hello_pool(workers=1),
                      cli_listen=False)
    hello_ok(gw.port)
    r = get(gw.port, "/" + "a" * 200)
    assert r.status == 414, r
    assert gw.status()["pools"][0]["name"] == "web"


def test_admin_flag_on_command_line(start_gateway):
    port = free_port()
    gw = start_gateway("hello", "--admin", f"127.0.0.1:{port}", workers=2)
    st = wait_for(lambda: _try_status(port), 5)
    assert st, "admin listener given by --admin does not answer"
    assert st["pid"] == gw.pid
    (pool,) = st["pools"]
    assert pool["name"] == "default" and pool["workers_target"] == 2, st
    r = admin(port, "GET", "/metrics")
    assert r.status == 200 and b'sluice_workers{pool="default",state="running"}' in r.body, r


def _try_status(port):
    try:
        return status(port)
    except OSError:
        return None


# ==========================================================================
# supervision

def test_killed_worker_is_replaced(start_config):
    gw = start_config(hello_pool(workers=2))
    pids = gw.wait_running("web", 2)
    assert len(pids) == 2, gw.pool("web")
    victim = pids[0]
    os.kill(victim, signal.SIGKILL)
    new = gw.wait_running("web", 2, exclude=[victim])
    assert len(new) == 2 and victim not in new and pids[1] in new, gw.pool("web")
    hello_ok(gw.port, 20)
    p = gw.pool("web")
    assert p["restarts"] == 1, p
    assert gw.metrics().get("sluice_worker_restarts_total", pool="web") == 1
    assert wait_log(gw, rf"worker \d+ \(pid {victim}\) killed by signal 9")


def test_crash_loop_is_logged_and_contained(start_config):
    """A worker command that exits at once is restarted with backoff and
    reported as a crash loop; the other pool serves on; requests for the
    crashing pool get 503 at once (no worker is coming), not a wait."""
    gw = start_config(hello_pool(workers=1)
                      + "[pool:crash]\ncommand = /bin/sh -c 'exit 3'\nworkers = 1\n"
                        "queue_timeout = 500ms\n"
                        "[route:crash]\npath = /crash/\npool = crash\n")
    lines = wait_log(gw, r"pool crash: worker \d+ is crash-looping", timeout=6)
    assert lines, gw.log_tail()
    assert log_lines(gw, r"pool crash: worker \d+ \(pid \d+\) exited with status 3")
    assert gw.alive()
    hello_ok(gw.port, 5)
    t0 = time.monotonic()
    r = get(gw.port, "/crash/x")
    assert r.status == 503 and r.header("retry-after"), r
    assert time.monotonic() - t0 < 0.4
    assert gw.pool("crash")["restarts"] >= 5
    assert log_lines(gw, r"pool crash: no worker stays up; answering 503")
    hello_ok(gw.port, 2)


def test_requests_waiting_for_a_crash_looping_pool_fail_fast(start_config):
    """Requests queued while a pool's workers are still being retried get
    503 as soon as the pool is known to be crash-looping; when the worker
    comes up later, the pool serves again."""
    flag = "{TMP}/ok"
    gw = start_config("[pool:web]\ncommand = /bin/sh -c 'test -e " + flag + " && exec {EXAMPLES}/hello; exit 3'\n"
                      "workers = 1\nqueue_timeout = 20s\n")
    t0 = time.monotonic()
    r = get(gw.port, "/", timeout=15)
    assert r.status == 503, r
    assert time.monotonic() - t0 < 10, "a request waited for a pool that is down"
    open(os.path.join(gw.tmp, "ok"), "w").close()
    assert wait_log(gw, r"pool web: a worker is up again", timeout=15), gw.log_tail()
    hello_ok(gw.port, 3)


def test_startup_timeout_kills_silent_worker(start_config):
    """A worker that connects but never says HELLO is killed after
    startup_timeout and started again."""
    gw = start_config("[pool:silent]\ncommand = {PYTHON} {ENVWORKER} --no-hello\n"
                      "workers = 1\nstartup_timeout = 1s\n")
    first = wait_for(lambda: gw.workers(), 3)
    assert len(first) == 1, first
    t0 = time.monotonic()
    line = wait_log(gw, rf"worker \d+ \(pid {first[0]}\) did not connect within 1\.0s; killing it",
                    timeout=4)
    assert line, gw.log_tail()
    assert wait_for(lambda: not alive(first[0]), 2), "silent worker still alive"
    assert 0.8 < time.monotonic() - t0 < 3.5
    again = wait_for(lambda: [p for p in gw.workers() if p != first[0]], 3)
    assert again, "silent worker not started again"


def test_worker_alive_without_its_link_is_replaced(start_config):
    """A worker whose link the gateway closed (it broke the protocol) but
    whose process lives on serves nothing: the gateway must stop it and
    start a replacement, not keep it as "running"."""
    gw = start_config("[pool:env]\ncommand = {PYTHON} {ENVWORKER} --hang\n"
                      "workers = 1\nqueue_timeout = 1s\n")
    (first,) = gw.wait_running("env", 1)
    r = get(gw.port, "/garbage")
    assert r.status == 502, r
    assert wait_log(gw, rf"worker \d+ \(pid {first}\) link closed")
    new = gw.wait_running("env", 1, exclude=[first], timeout=5)
    assert new and first not in new, (gw.pool("env"), gw.log_tail())
    assert env_of(gw.port)["pid"] == new[0]
    assert wait_for(lambda: not alive(first), 3), "the link-less worker still runs"


def _start_attached(env):
    """An example hello worker started outside sluice (stopped by PID)."""
    return subprocess.Popen([os.path.join(EXAMPLES, "hello")], env=dict(os.environ, **env),
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _stop(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def test_attached_unix_worker_serves_and_is_listed(start_config):
    """A worker started outside sluice that connects to the pool's socket
    (mode 0600) serves requests and is listed under `attached` in /status."""
    gw = start_config(hello_pool(workers=1, socket_dir="{TMP}/socks"))
    assert len(gw.wait_running("web", 1)) == 1
    sock = os.path.join(gw.tmp, "socks", "web.sock")
    assert os.stat(sock).st_mode & 0o777 == 0o600
    ext = _start_attached({"SLUICE_SOCKET": sock})
    try:
        att = wait_for(lambda: gw.pool("web")["attached"], 5)
        assert att and att[0]["pid"] == ext.pid and att[0]["id"] > 1000, gw.pool("web")
        assert wait_log(gw, rf"attached worker \d+ \(pid {ext.pid}\)")
        hello_ok(gw.port, 20)
        (a,) = gw.pool("web")["attached"]
        assert a["requests"] > 0 and a["state"] == "running", a
        assert gw.metrics().get("sluice_workers", pool="web", state="attached") == 1
    finally:
        _stop(ext)
    assert wait_for(lambda: gw.pool("web")["attached"] == [], 5), gw.pool("web")
    hello_ok(gw.port, 3)
    assert len(gw.running("web")) == 1  # attached workers are not respawned


def test_tcp_worker_needs_the_token(start_config):
    """tcp_listen: a remote worker with the right token serves; a wrong or
    missing token is refused and never gets a request."""
    tport = free_port()
    gw = start_config(hello_pool(workers=1, tcp_listen=f"127.0.0.1:{tport}", token="s3cret-token"))
    assert len(gw.wait_running("web", 1)) == 1
    addr = {"SLUICE_SOCKET": f"tcp:127.0.0.1:{tport}"}
    for env in ({**addr, "SLUICE_TOKEN": "wrong"}, addr):
        bad = _start_attached(env)
        try:
            assert wait_log(gw, r"TCP worker from 127\.0\.0\.1 refused: missing or wrong token",
                            count=1 if "SLUICE_TOKEN" in env else 2)
            hello_ok(gw.port, 4)
            assert gw.pool("web")["attached"] == []
        finally:
            _stop(bad)
    good = _start_attached({**addr, "SLUICE_TOKEN": "s3cret-token"})
    try:
        att = wait_for(lambda: gw.pool("web")["attached"], 5)
        assert att and att[0]["peer"] == "127.0.0.1", gw.pool("web")
        hello_ok(gw.port, 20)
        assert gw.pool("web")["attached"][0]["requests"] > 0
    finally:
        _stop(good)


# ==========================================================================
# scaling

def test_scale_up_on_queue_then_down_when_idle(start_config):
    gw = start_config(hello_pool(min_workers=1, max_workers=3, max_streams=1,
                                 idle_timeout="1s"))
    assert len(gw.wait_running("web", 1)) == 1
    results, seen = [], {"target": 0, "running": 0, "queued": 0}

    def one():
        results.append(get(gw.port, "/?delay=1500", timeout=10).status)

    threads = [threading.Thread(target=one) for _ in range(4)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 8
    while any(t.is_alive() for t in threads) and time.monotonic() < deadline:
        p = gw.pool("web")
        gw.workers()
        seen["target"] = max(seen["target"], p["workers_target"])
        seen["queued"] = max(seen["queued"], p["queue_depth"])
        seen["running"] = max(seen["running"], sum(w["state"] == "running" for w in p["workers"]))
        time.sleep(0.05)
    for t in threads:
        t.join(5)
    assert results == [200] * 4, results
    assert seen["target"] == 3 and seen["running"] == 3, seen
    assert seen["queued"] >= 1, seen
    assert log_lines(gw, r"pool web: scaling up to 3 workers")
    # idle for idle_timeout (1 s, checked every second): back to min_workers
    pids = gw.wait_running("web", 1, timeout=5)
    assert len(pids) == 1 and gw.pool("web")["workers_target"] == 1, gw.pool("web")
    assert log_lines(gw, r"pool web: scaling down to 1 workers")
    hello_ok(gw.port, 3)


def test_min_workers_zero_starts_on_demand(start_config):
    """min_workers = 0: no worker until a request arrives (it waits in the
    queue while one starts), none again after idle_timeout."""
    gw = start_config(hello_pool(min_workers=0, max_workers=2, idle_timeout="1s"))
    p = gw.pool("web")
    assert p["workers_target"] == 0 and p["workers"] == [] and gw.workers() == [], p
    hello_ok(gw.port, 3)
    assert gw.pool("web")["workers_target"] == 1
    assert wait_for(lambda: gw.pool("web")["workers"] == [] and not gw.workers(), 4), gw.pool("web")
    assert gw.pool("web")["workers_target"] == 0
    hello_ok(gw.port, 1)


def test_admin_scale(start_config):
    gw = start_config(hello_pool(min_workers=1, max_workers=4))
    assert len(gw.wait_running("web", 1)) == 1
    r = gw.admin("POST", "/pools/web/scale?workers=3")
    assert r.status == 200 and json.loads(r.body) == {"pool": "web", "workers": 3}, r
    assert len(gw.wait_running("web", 3)) == 3, gw.pool("web")
    assert gw.pool("web")["workers_target"] == 3
    hello_ok(gw.port, 5)
    r = gw.admin("POST", "/pools/web/scale?workers=1")
    assert r.status == 200, r
    assert len(gw.wait_running("web", 1)) == 1, gw.pool("web")
    assert gw.pool("web")["workers_target"] == 1
    for method, path, code in [("POST", "/pools/nope/scale?workers=2", 404),
                               ("POST", "/pools/web/scale", 400),
                               ("POST", "/pools/web/scale?workers=abc", 400),
                               ("POST", "/pools/web/scale?workers=99999", 400),
                               ("GET", "/pools/web/scale?workers=2", 405)]:
        r = gw.admin(method, path)
        assert r.status == code, (method, path, r)
    assert gw.pool("web")["workers_target"] == 1


def test_sigttin_sigttou_scale_first_pool(start_config):
    gw = start_config(hello_pool(min_workers=1, max_workers=4)
                      + "[pool:files]\ncommand = {EXAMPLES}/blob\nworkers = 1\n")
    assert len(gw.wait_running("web", 1)) == 1
    for sig, n in [(signal.SIGTTIN, 2), (signal.SIGTTIN, 3), (signal.SIGTTOU, 2)]:
        os.kill(gw.pid, sig)
        pids = gw.wait_running("web", n)
        p = gw.pool("web")
        assert len(pids) == n and p["workers_target"] == n, (sig, p)
        assert gw.metrics().get("sluice_workers", pool="web", state="running") == n
    files = gw.pool("files")
    assert files["workers_target"] == 1 and len(files["workers"]) == 1, files
    hello_ok(gw.port, 3)


def test_queue_limits_503_and_504(start_config):
    """One single-stream worker: a second request waits in the queue (504
    after queue_timeout); with the queue full a third gets 503 at once,
    with Retry-After."""
    gw = start_config(hello_pool(workers=1, max_streams=1, queue_size=1,
                                 queue_timeout="600ms"))
    assert len(gw.wait_running("web", 1)) == 1
    with Conn(gw.port) as busy, Conn(gw.port) as queued:
        busy.send(request_bytes("GET", "/?delay=2000"))
        time.sleep(0.2)
        t0 = time.monotonic()
        queued.send(request_bytes("GET", "/"))
        time.sleep(0.1)
        r3 = get(gw.port, "/")
        assert r3.status == 503 and r3.header("retry-after"), r3
        r2 = queued.read_response()
        assert r2.status == 504, r2
        assert 0.4 < time.monotonic() - t0 < 2
        r1 = busy.read_response()
        assert r1.status == 200, r1


# ==========================================================================
# recycling

def test_max_requests_recycles_without_failures(start_config):
    gw = start_config(hello_pool(workers=2, max_requests=25, max_requests_jitter=5))
    first = gw.wait_running("web", 2)
    load = Load(gw.port, threads=4, duration=2.5, max_per_thread=300)
    with load:
        time.sleep(2.5)
    assert load.failures == [], load.failures[:5]
    assert load.done >= 200, load.done
    recycled = log_lines(gw, r"pool web: retiring worker \d+ \(pid \d+\): max_requests reached")
    # about one per 25 requests; fewer when successors start slowly (the old
    # worker serves meanwhile), e.g. under a sanitizer
    assert len(recycled) >= max(4, load.done // 100), (load.done, len(recycled))
    now = gw.wait_running("web", 2)
    assert len(now) == 2 and not set(now) & set(first), (first, now)
    # recycling is not a crash: no restarts counted
    assert gw.pool("web")["restarts"] == 0
    # the limit is max_requests +- jitter, plus the requests that arrived
    # while the replacement started
    assert all(w["requests"] <= 100 for w in gw.pool("web")["workers"]), gw.pool("web")


def test_memory_limit_recycles_without_failures(start_config):
    """Every worker is above a 64k memory_limit: each is replaced on the
    next check (once a second), and no request fails meanwhile."""
    gw = start_config(hello_pool(workers=2, memory_limit="64k"))
    first = gw.wait_running("web", 2)
    load = Load(gw.port, threads=2, duration=2.6, max_per_thread=2000)
    with load:
        time.sleep(2.6)
    assert load.failures == [], load.failures[:5]
    lines = log_lines(gw, r"pool web: retiring worker \d+ \(pid \d+\): RSS [\d.]+ MiB above memory_limit")
    assert len(lines) >= 2, gw.log_tail()
    assert not set(gw.running("web")) & set(first)


# ==========================================================================
# reload

def test_sighup_reload_env_under_load(start_config):
    """SIGHUP re-reads the file (a changed env value) and replaces every
    worker, each successor ready before its predecessor drains: no request
    fails under concurrent load."""
    conf = lambda mark: env_pool(env=[f"MARK={mark}"], workers=3)  # noqa: E731
    gw = start_config(conf("one"))
    old = gw.wait_running("env", 3)
    assert len(old) == 3
    marks = []

    def check(body):
        marks.append(json.loads(body)["env"].get("MARK"))
        return marks[-1] in ("one", "two")

    load = Load(gw.port, threads=4, duration=3.0, max_per_thread=5000, check=check)
    with load:
        time.sleep(0.8)
        gw.rewrite(conf("two"))
        os.kill(gw.pid, signal.SIGHUP)
        time.sleep(2.2)
    assert load.failures == [], load.failures[:5]
    assert "one" in marks and "two" in marks, set(marks)
    assert marks.index("two") > marks.index("one")
    new = gw.wait_running("env", 3, exclude=old)
    assert len(new) == 3 and not set(new) & set(old), (old, new)
    for _ in range(6):
        assert env_of(gw.port)["env"]["MARK"] == "two"
    assert wait_for(lambda: not any(alive(p) for p in old), 3), "old workers still alive"
    assert gw.pool("env")["restarts"] == 0


def test_reload_applies_response_timeout(start_config):
    gw = start_config(hello_pool(workers=1, response_timeout="3s"))
    r = get(gw.port, "/?delay=800")
    assert r.status == 200, r
    gw.rewrite(hello_pool(workers=1, response_timeout="300ms"))
    os.kill(gw.pid, signal.SIGHUP)
    assert wait_log(gw, r"reloaded .*sluice\.ini: replacing workers")
    t0 = time.monotonic()
    r = get(gw.port, "/?delay=800")
    assert r.status == 504, r
    assert time.monotonic() - t0 < 0.75


def test_reload_keeps_command_line_flags(start_config):
    """A [server] flag on the command line wins over the file at startup and
    keeps winning after a reload (the command line is applied again)."""
    gw = start_config("[server]\nmax_target = 4000\n" + hello_pool(workers=1), "--max-target", "100")
    long_target = "/" + "a" * 200
    assert get(gw.port, long_target).status == 414
    gw.rewrite("[server]\nmax_target = 5000\n" + hello_pool(workers=1))
    os.kill(gw.pid, signal.SIGHUP)
    assert wait_log(gw, r"reload complete")
    assert get(gw.port, long_target).status == 414, "--max-target lost on reload"
    hello_ok(gw.port)


def test_reload_applies_log_level(start_config):
    """log_level from the file takes effect on reload."""
    gw = start_config("[server]\nlog_level = info\n" + hello_pool(workers=1))
    gw.rewrite("[server]\nlog_level = warn\n" + hello_pool(workers=1))
    os.kill(gw.pid, signal.SIGHUP)
    assert wait_for(lambda: gw.pool("web")["workers"][0]["pid"] and
                    all(w["state"] == "running" for w in gw.pool("web")["workers"]) and
                    len(gw.pool("web")["workers"]) == 1, 5)
    time.sleep(0.3)
    before = len(gw.log().splitlines())
    os.kill(gw.pid, signal.SIGUSR1)  # an info-level line at log_level info
    os.kill(gw.pid, signal.SIGTTIN)  # and another one
    assert len(gw.wait_running("web", 2)) == 2
    new = gw.log().splitlines()[before:]
    assert not [line for line in new if "[info]" in line], new


def test_manual_scale_outside_bounds_widens_them_until_reload(start_config):
    """An operator's explicit size wins (gunicorn-like TTIN on a fixed
    pool); /status shows the widened bounds; a reload restores the file's."""
    gw = start_config(hello_pool(workers=2))
    assert len(gw.wait_running("web", 2)) == 2
    os.kill(gw.pid, signal.SIGTTIN)
    assert len(gw.wait_running("web", 3)) == 3
    p = gw.pool("web")
    assert (p["workers_target"], p["min_workers"], p["max_workers"]) == (3, 2, 3), p
    r = gw.admin("POST", "/pools/web/scale?workers=1")
    assert r.status == 200, r
    assert len(gw.wait_running("web", 1)) == 1
    p = gw.pool("web")
    assert (p["workers_target"], p["min_workers"], p["max_workers"]) == (1, 1, 3), p
    os.kill(gw.pid, signal.SIGHUP)
    assert len(gw.wait_running("web", 2)) == 2
    p = gw.pool("web")
    assert (p["workers_target"], p["min_workers"], p["max_workers"]) == (2, 2, 2), p
    hello_ok(gw.port, 3)


def test_reload_with_broken_config_keeps_running(start_config):
    good = hello_pool(workers=2)
    gw = start_config(good)
    pids = gw.wait_running("web", 2)
    bad_files = [
        (good + "this line is not ini\n", rf"{re.escape(gw.config_path)}:4: syntax error"),
        (good + "[route:r]\npool = nope\n", "route 'r' names unknown pool 'nope'"),
        (good.replace("/hello\n", "/hello `id`\n"), "invalid value for 'command'"),
        (good + "max_workers = 1\n", "max_workers \\(1\\) must be at least min_workers \\(2\\)"),
        (good + "[pool:more]\ncommand = {EXAMPLES}/hello\n", "needs a restart"),
        ("[pool:renamed]\ncommand = {EXAMPLES}/hello\n", "needs a restart"),
    ]
    for i, (text, why) in enumerate(bad_files):
        gw.rewrite(text)
        if i % 2 == 0:
            os.kill(gw.pid, signal.SIGHUP)
            lines = wait_log(gw, r"\[error\] reload of .* failed, keeping the running config", count=i + 1)
            assert len(lines) >= i + 1, gw.log_tail()
        else:
            r = gw.admin("POST", "/reload")
            assert r.status == 409, r
        assert re.search(why, gw.log()), (why, gw.log_tail())
        assert gw.alive()
        assert sorted(gw.running("web")) == pids
        hello_ok(gw.port, 3)
    gw.rewrite(good)
    r = gw.admin("POST", "/reload")
    assert r.status == 200 and json.loads(r.body) == {"reloading": True}, r
    new = gw.wait_running("web", 2, exclude=pids)
    assert len(new) == 2 and not set(new) & set(pids)


def test_post_reload_under_load(start_config):
    """POST /reload on the admin listener: the same as SIGHUP. Load on the
    hello pool while both pools are replaced."""
    conf = lambda mark: (hello_pool(workers=2) + env_pool(env=[f"MARK={mark}"], workers=1)  # noqa: E731
                         + "[route:env]\npath = /env/\npool = env\n")
    gw = start_config(conf("one"))
    web_old = gw.wait_running("web", 2)
    env_old = gw.wait_running("env", 1)
    assert env_of(gw.port, "/env/")["env"]["MARK"] == "one"
    load = Load(gw.port, threads=4, duration=2.5, max_per_thread=20000)
    with load:
        time.sleep(0.8)
        gw.rewrite(conf("two"))
        r = gw.admin("POST", "/reload")
        assert r.status == 200 and json.loads(r.body) == {"reloading": True}, r
        time.sleep(1.7)
    assert load.failures == [], load.failures[:5]
    assert load.done > 100
    web_new = gw.wait_running("web", 2, exclude=web_old)
    assert len(web_new) == 2 and not set(web_new) & set(web_old), (web_old, web_new)
    assert gw.wait_running("env", 1, exclude=env_old)
    assert env_of(gw.port, "/env/")["env"]["MARK"] == "two"
    r = gw.admin("GET", "/reload")
    assert r.status == 405, r


def test_reload_applies_worker_counts(start_config):
    """workers / min_workers / max_workers changed in the file take effect
    on reload."""
    gw = start_config(hello_pool(workers=2))
    assert len(gw.wait_running("web", 2)) == 2
    gw.rewrite(hello_pool(workers=3))
    os.kill(gw.pid, signal.SIGHUP)
    pids = gw.wait_running("web", 3)
    p = gw.pool("web")
    assert (len(pids), p["workers_target"], p["min_workers"], p["max_workers"]) == (3, 3, 3, 3), p
    gw.rewrite(hello_pool(min_workers=1, max_workers=1))
    os.kill(gw.pid, signal.SIGHUP)
    pids = gw.wait_running("web", 1)
    p = gw.pool("web")
    assert (len(pids), p["workers_target"], p["max_workers"]) == (1, 1, 1), p


def test_reload_during_reload_applies_the_latest_config(start_config):
    """A second reload while the first one's replacements are still starting
    must not be lost: in the end every worker runs the latest config."""
    conf = lambda mark: env_pool(env=[f"MARK={mark}"], workers=2)  # noqa: E731
    gw = start_config(conf("one"))
    assert len(gw.wait_running("env", 2)) == 2
    gw.rewrite(conf("two"))
    os.kill(gw.pid, signal.SIGHUP)
    assert wait_log(gw, r"reloaded .*: replacing workers")
    gw.rewrite(conf("three"))
    r = gw.admin("POST", "/reload")  # while the first replacements start
    assert r.status == 200, r
    assert len(wait_log(gw, r"reloaded .*: replacing workers", count=2)) == 2

    def marks():
        gw.workers()
        return {env_of(gw.port)["env"]["MARK"] for _ in range(8)}
    wait_for(lambda: marks() == {"three"}, 4)
    final = marks()
    assert final == {"three"}, f"workers still on an older config: {final}"


def test_reload_replaces_workers_one_by_one(start_config):
    """A reload is rolling: at most one extra worker process at any time
    (a pool of N never runs more than N+1 during the reload)."""
    gw = start_config(env_pool(workers=3))
    old = gw.wait_running("env", 3)
    assert len(old) == 3
    most = 0
    os.kill(gw.pid, signal.SIGHUP)
    deadline = time.monotonic() + 6
    while time.monotonic() < deadline:
        most = max(most, len(gw.workers()))
        p = gw.pool("env")
        if len(p["workers"]) == 3 and all(w["state"] == "running" and w["pid"] not in old
                                         for w in p["workers"]) and len(gw.workers()) == 3:
            break
        time.sleep(0.01)
    assert not set(gw.running("env")) & set(old), "reload did not finish in 6 s"
    assert most <= 4, f"{most} worker processes at once while reloading a pool of 3"


BADWORKER = os.path.join(os.path.dirname(__file__), "badworker.py")


def test_reload_past_a_worker_that_ignores_drain(start_config):
    """A worker that ignores DRAIN (and SIGTERM) does not stall a reload:
    its link is closed once DRAIN's timeout (graceful_timeout) and a short
    grace have passed, then the process is stopped (SIGTERM, SIGKILL 5 s
    later), and the reload completes on new workers."""
    text = ("[pool:bad]\ncommand = {PYTHON} " + BADWORKER + " ignore-drain\n"
            "workers = 1\ngraceful_timeout = 1s\n")
    gw = start_config(text)
    (old,) = gw.wait_running("bad", 1)
    assert get(gw.port, "/").status == 200
    os.kill(gw.pid, signal.SIGHUP)
    assert wait_log(gw, r"pool bad: worker \d+ \(pid %d\) still open 0 streams after DRAIN's timeout" % old,
                    timeout=8), gw.log_tail()
    assert wait_log(gw, r"pool bad: reload complete", timeout=15), gw.log_tail()
    assert wait_for(lambda: not alive(old), 12), f"drained worker {old} still running"
    assert wait_log(gw, r"worker \d+ \(pid %d\) was drained and its link closed, but it does not exit" % old)
    new = gw.wait_running("bad", 1)
    assert new and old not in new
    assert get(gw.port, "/").status == 200
    # a second reload is not stalled either
    os.kill(gw.pid, signal.SIGHUP)
    assert wait_log(gw, r"pool bad: reload complete", timeout=25, count=2), gw.log_tail()


def test_shutdown_past_an_attached_worker_that_ignores_drain(start_config):
    """An attached worker that never closes its link after DRAIN does not
    keep the gateway from exiting: the link is closed at DRAIN's timeout
    plus a short grace."""
    gw = start_config(hello_pool(workers=1, socket_dir="{TMP}/socks", graceful_timeout="1s"))
    assert len(gw.wait_running("web", 1)) == 1
    sock = os.path.join(gw.tmp, "socks", "web.sock")
    ext = subprocess.Popen([sys.executable, BADWORKER, "ignore-drain"],
                           env=dict(os.environ, SLUICE_SOCKET=sock), stdin=subprocess.DEVNULL)
    try:
        assert wait_for(lambda: gw.pool("web")["attached"], 5), gw.pool("web")
        t0 = time.monotonic()
        code = gw.terminate(timeout=15)
        took = time.monotonic() - t0
        assert code == 0, (code, gw.log_tail())
        assert took < 8, f"gateway took {took:.1f}s to exit"
    finally:
        ext.kill()
        ext.wait(5)


# ==========================================================================
# graceful stop

def test_sigterm_completes_in_flight_request(start_config):
    gw = start_config(hello_pool(workers=1))
    assert len(gw.wait_running("web", 1)) == 1
    with Conn(gw.port) as c:
        c.send(request_bytes("GET", "/?delay=1000"))
        time.sleep(0.2)
        workers = gw.workers()
        os.kill(gw.pid, signal.SIGTERM)
        time.sleep(0.2)
        with pytest.raises(OSError):  # no longer accepting
            socket.create_connection(("127.0.0.1", gw.port), timeout=1).close()
        r = c.read_response()
    assert r.status == 200 and r.body == HELLO_BODY, r
    code = gw.terminate(timeout=8)
    assert code == 0, f"exit code {code}"
    assert wait_for(lambda: not any(alive(p) for p in workers), 3)
    assert log_lines(gw, r"stopping: finishing 1 in-flight request \(")


# ==========================================================================
# routing

ROUTES = (hello_pool("web", workers=1)
          + "[pool:blob]\ncommand = {EXAMPLES}/blob\nworkers = 1\n"
          + "[pool:echo]\ncommand = {EXAMPLES}/echo\nworkers = 1\n"
          + "[route:suffix]\nhost = *.example.com\npool = blob\n"
          + "[route:exact]\nhost = api.example.com\npool = echo\n"
          + "[route:static]\npath = /static/\npool = echo\n"
          + "[route:suffix-hello]\nhost = *.example.com\npath = /hello/\npool = web\n"
          + "[route:deeper]\nhost = *.deep.example.com\npool = echo\n"
          + "[route:star]\nhost = *\npath = /blob/\npool = blob\n")


def which_pool(port, host, path):
    """Which example worker answered: hello, blob or echo."""
    sep = "&" if "?" in path else "?"
    r = get(port, path + sep + "n=3", headers=[("Host", host)])
    if r.status == 200 and r.body == HELLO_BODY:
        return "web"
    if r.status == 200 and r.body == bytes([0, 1, 2]):
        return "blob"
    if r.status == 200 and r.body == b"" and r.framing == "chunked":
        return "echo"
    return f"? {r!r}"


ROUTE_CASES = [
    ("other.org", "/", "web"),                      # no route: the first pool
    ("other.org", "/static/a.css", "echo"),         # any host, path prefix
    ("other.org", "/static", "web"),                # a prefix, not a segment match
    ("other.org", "/blob/x", "blob"),               # host = * is any host
    ("a.example.com", "/", "blob"),                 # *.suffix
    ("a.example.com", "/hello/x", "web"),           # same host kind: longest path
    ("a.example.com", "/static/x", "blob"),         # *.suffix beats any host
    ("api.example.com", "/hello/x", "echo"),        # exact host beats *.suffix
    ("api.example.com", "/static/x", "echo"),
    ("API.Example.COM:8080", "/", "echo"),          # case-insensitive, port ignored
    ("example.com", "/", "web"),                    # *.example.com needs a subdomain
    ("x.deep.example.com", "/", "echo"),            # the longer suffix wins
    ("a.example.com", "/hello/x?q=/static/", "web"),  # the query is not the path
]


def test_routing_by_host_and_path(start_config):
    gw = start_config(ROUTES)
    got = [(h, p, which_pool(gw.port, h, p)) for h, p, _ in ROUTE_CASES]
    assert got == ROUTE_CASES


def test_absolute_form_target_routed_by_its_path(start_config):
    gw = start_config(ROUTES)
    with Conn(gw.port) as c:
        c.send(b"GET http://other.org/static/x HTTP/1.1\r\nHost: other.org\r\n\r\n")
        r = c.read_response()
    assert r.status == 200 and r.framing == "chunked" and r.body == b"", r


def test_routes_change_on_reload(start_config):
    gw = start_config(ROUTES)
    assert which_pool(gw.port, "other.org", "/static/x") == "echo"
    gw.rewrite(ROUTES.replace("path = /static/\npool = echo", "path = /static/\npool = blob"))
    os.kill(gw.pid, signal.SIGHUP)
    assert wait_log(gw, r"reloaded .*: replacing workers")
    assert which_pool(gw.port, "other.org", "/static/x") == "blob"
    assert which_pool(gw.port, "api.example.com", "/") == "echo"


def test_per_pool_limits(start_config):
    """max_body is per pool: the route decides which limit applies."""
    gw = start_config("[pool:big]\ncommand = {EXAMPLES}/echo\nworkers = 1\n"
                      "[pool:small]\ncommand = {EXAMPLES}/echo\nworkers = 1\nmax_body = 1k\n"
                      "[route:small]\npath = /small/\npool = small\n")
    body = b"x" * 2048
    r = get(gw.port, "/big/", method="POST", body=body)
    assert r.status == 200 and r.body == body, r
    r = get(gw.port, "/small/", method="POST", body=body)
    assert r.status == 413, r


# ==========================================================================
# admin API

def test_status_fields(start_config):
    gw = start_config(hello_pool(min_workers=2, max_workers=3)
                      + "[pool:files]\ncommand = {EXAMPLES}/blob\nworkers = 1\n"
                        "[route:files]\npath = /files/\npool = files\n")
    gw.wait_running("web", 2)
    hello_ok(gw.port, 4)
    st = gw.status()
    assert st["server"].startswith("sluice/") and st["pid"] == gw.pid, st
    assert st["stopping"] is False and st["requests"] == 4, st
    assert isinstance(st["uptime_s"], (int, float)) and isinstance(st["connections"], int)
    web, files = st["pools"]
    assert (web["name"], web["workers_target"], web["min_workers"], web["max_workers"]) == \
        ("web", 2, 2, 3), web
    assert (files["name"], files["workers_target"]) == ("files", 1), files
    assert web["queue_depth"] == 0 and web["requests"] == 4 and web["restarts"] == 0, web
    assert sum(w["requests"] for w in web["workers"]) == 4, web
    for w in web["workers"] + files["workers"]:
        assert set(w) >= {"id", "pid", "state", "active_streams", "requests", "uptime_s",
                          "rss_bytes", "restarts"}, w
        assert w["state"] == "running" and w["active_streams"] == 0, w
        assert alive(w["pid"]) and w["pid"] in gw.workers(), w
        assert w["uptime_s"] >= 0 and w["rss_bytes"] > 100 * 1024, w
    # a request in flight shows as an active stream
    with Conn(gw.port) as c:
        c.send(request_bytes("GET", "/?delay=800"))
        busy = wait_for(lambda: sum(w["active_streams"] for w in gw.pool("web")["workers"]), 2)
        assert busy == 1
        assert c.read_response().status == 200


def test_metrics_values(start_config):
    gw = start_config(hello_pool(workers=2)
                      + "[pool:files]\ncommand = {EXAMPLES}/blob\nworkers = 1\n"
                        "[route:files]\npath = /files/\npool = files\n")
    gw.wait_running("web", 2)
    r = gw.admin("GET", "/metrics")
    assert r.header("content-type", "").startswith("text/plain"), r
    m0 = Metrics(r.body.decode())
    types = {f.name: f.type for f in m0.families}
    for name, typ in [("sluice_requests", "counter"), ("sluice_request_duration_seconds", "histogram"),
                      ("sluice_received_bytes", "counter"), ("sluice_sent_bytes", "counter"),
                      ("sluice_open_connections", "gauge"), ("sluice_workers", "gauge"),
                      ("sluice_worker_restarts", "counter"), ("sluice_queue_depth", "gauge"),
                      ("sluice_queued_requests", "counter"), ("sluice_queue_wait_seconds", "counter")]:
        assert types.get(name) == typ, (name, types)
    hello_ok(gw.port, 7)
    for _ in range(3):
        assert get(gw.port, "/files/x").status == 400  # blob without ?n=
    r = get(gw.port, "/files/x?n=1000")
    assert r.status == 200
    m1 = gw.metrics()

    def delta(name, **labels):
        return m1.get(name, **labels) - m0.get(name, **labels)

    assert delta("sluice_requests_total", pool="web", **{"class": "2xx"}) == 7
    assert delta("sluice_requests_total", pool="web", **{"class": "4xx"}) == 0
    assert delta("sluice_requests_total", pool="files", **{"class": "4xx"}) == 3
    assert delta("sluice_requests_total", pool="files", **{"class": "2xx"}) == 1
    assert delta("sluice_request_duration_seconds_count", pool="web") == 7
    assert delta("sluice_request_duration_seconds_bucket", pool="web", le="+Inf") == 7
    assert delta("sluice_sent_bytes_total", pool="web") == 7 * len(HELLO_BODY)
    assert delta("sluice_sent_bytes_total", pool="files") >= 1000
    buckets = [s for s in m1.samples if s.name == "sluice_request_duration_seconds_bucket"
               and s.labels["pool"] == "web"]
    values = [s.value for s in buckets]
    assert values == sorted(values) and buckets[-1].labels["le"] == "+Inf", buckets
    st = gw.status()
    for p in st["pools"]:
        running = sum(w["state"] == "running" for w in p["workers"])
        assert m1.get("sluice_workers", pool=p["name"], state="running") == running, p
        assert m1.get("sluice_queue_depth", pool=p["name"]) == p["queue_depth"] == 0
    assert m1.get("sluice_workers", pool="web", state="running") == 2
    assert m1.get("sluice_worker_restarts_total", pool="web") == 0


def test_admin_unknown_path_and_wrong_method(start_config):
    gw = start_config(hello_pool(workers=1))
    for method, path, code in [("GET", "/", 404), ("GET", "/nope", 404), ("GET", "/status/x", 404),
                               ("POST", "/status", 405), ("DELETE", "/metrics", 405),
                               ("GET", "/reload", 405), ("PUT", "/pools/web/scale?workers=1", 405)]:
        r = gw.admin(method, path)
        assert r.status == code, (method, path, r)
        assert r.header("content-type", "").startswith("application/json"), r
        json.loads(r.body)
    assert gw.admin("GET", "/status?pretty=1").status == 200


# ==========================================================================
# logs

ACCESS_LINE = re.compile(r'^127\.0\.0\.1 - - \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d \+0000\] '
                         r'"GET (\S+) HTTP/1\.1" 200 14 [\d.]+ms w\d+$')


def test_sigusr1_reopens_access_log(start_config):
    gw = start_config("[server]\naccess_log = {TMP}/access.log\n" + hello_pool(workers=1))
    path = os.path.join(gw.tmp, "access.log")

    def lines(p):
        try:
            with open(p) as f:
                return f.read().splitlines()
        except FileNotFoundError:
            return []

    hello_ok(gw.port, 1, "/first")
    assert wait_for(lambda: lines(path), 2), "nothing in the access log"
    (line,) = lines(path)
    m = ACCESS_LINE.match(line)
    assert m and m.group(1) == "/first", line
    os.rename(path, path + ".1")
    os.kill(gw.pid, signal.SIGUSR1)
    assert wait_log(gw, r"received SIGUSR1: log files reopened")
    hello_ok(gw.port, 1, "/second")
    assert wait_for(lambda: lines(path), 2), "no new access log at the old path after SIGUSR1"
    assert [ACCESS_LINE.match(x).group(1) for x in lines(path)] == ["/second"]
    assert [ACCESS_LINE.match(x).group(1) for x in lines(path + ".1")] == ["/first"]


# ==========================================================================
# worker environment and directory

def test_env_and_directory_reach_the_worker(start_config, tmp_path):
    wd = tmp_path / "work dir"
    wd.mkdir()
    gw = start_config(env_pool(env=["GREETING=hello world", "HOME=/override", "EMPTY="],
                               workers=2, directory=str(wd)))
    pids = gw.wait_running("env", 2)
    seen = set()
    for _ in range(8):
        d = env_of(gw.port)
        env = d["env"]
        assert d["cwd"] == os.path.realpath(wd), d["cwd"]
        assert env["GREETING"] == "hello world" and env["HOME"] == "/override", env
        assert env["EMPTY"] == ""
        assert env["SLUICE_POOL"] == "env"
        assert os.path.basename(env["SLUICE_SOCKET"]) == "env.sock"
        assert env.get("PATH") == os.environ.get("PATH")  # the gateway's own environment
        seen.add((d["pid"], env["SLUICE_WORKER_ID"]))
    assert {pid for pid, _ in seen} <= set(pids)
    ids = {int(i) for _, i in seen}
    assert ids <= {1, 2}


def test_relative_command_resolved_against_gateway_directory(start_config, tmp_path):
    """A relative `command` is found from the gateway's working directory,
    also when the pool sets another `directory` for its workers."""
    rel = os.path.relpath(os.path.join(EXAMPLES, "hello"), ROOT)
    assert not os.path.isabs(rel)
    gw = start_config(f"[pool:web]\ncommand = {rel}\nworkers = 1\n"
                      f"directory = {tmp_path}\nqueue_timeout = 2s\n")
    pids = gw.wait_running("web", 1, timeout=3)
    assert len(pids) == 1, gw.log_tail()
    hello_ok(gw.port)


def test_relative_socket_dir_with_another_directory(start_config, tmp_path):
    """A relative socket_dir is the gateway's (its working directory): the
    workers, started in another `directory`, get an absolute SLUICE_SOCKET
    and connect."""
    wd = tmp_path / "wd"
    wd.mkdir()
    rel = os.path.relpath(str(tmp_path / "socks"), ROOT)
    assert not os.path.isabs(rel)
    gw = start_config(env_pool(workers=1, directory=str(wd), socket_dir=rel))
    assert len(gw.wait_running("env", 1)) == 1, gw.log_tail()
    sock = env_of(gw.port)["env"]["SLUICE_SOCKET"]
    assert os.path.isabs(sock) and sock == os.path.join(os.path.realpath(tmp_path / "socks"), "env.sock"), sock


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (workers run as another user)")
def test_workers_run_as_configured_user(start_config):
    """user/group: workers run as that user, and reach the pool's socket
    through socket_group with socket_mode 0660 (default socket directory)."""
    import grp
    import pwd
    try:
        nobody = pwd.getpwnam("nobody")
        group = grp.getgrgid(nobody.pw_gid).gr_name
    except KeyError:
        pytest.skip("no user 'nobody'")
    if not os.access(os.path.join(EXAMPLES, "hello"), os.X_OK):
        pytest.skip("hello not executable")
    gw = start_config(hello_pool(workers=1, user="nobody", group=group,
                                 socket_group=group, socket_mode="0660", queue_timeout="2s"))
    pids = gw.wait_running("web", 1, timeout=3)
    assert len(pids) == 1, gw.log_tail()
    with open(f"/proc/{pids[0]}/status") as f:
        uid = next(line.split()[1] for line in f if line.startswith("Uid:"))
    assert int(uid) == nobody.pw_uid
    hello_ok(gw.port)


def test_sluice_max_streams_in_the_pool_env_sizes_the_worker(start_config):
    """PROTOCOL.md 10.2: SLUICE_MAX_STREAMS, set by the operator (here the
    pool's env), is what the library announces as max_streams."""
    gw = start_config("[pool:web]\ncommand = {EXAMPLES}/hello\nworkers = 1\nenv = SLUICE_MAX_STREAMS=7\n")
    assert gw.wait_log(lambda l: "ready, 7 streams" in l), gw.log_tail()
    assert gw.pool("web")["capacity_streams"] == 7
