"""Orchestrator endpoints on the admin listener (issue #15, part 3):
/healthz and /readyz, the admin token on the mutating endpoints, readiness
failing first at SIGTERM (and shutdown_delay), and the autoscaler metrics.

Every gateway is started from a config file (pools_util.start_config), with
the example C `hello` worker (`?delay=MS` answers after MS milliseconds).
"""

import json
import os
import signal
import socket
import threading
import time

import pytest

from httpc import Conn, ConnectionClosed, get, request_bytes
from pools_util import (HELLO_BODY, admin, metrics, start_config,  # noqa: F401 (fixture)
                        wait_for)

HELLO = "{EXAMPLES}/hello"
TOKEN = "t0ken-for-the-admin_API"


def pool(name="app", command=HELLO, **keys):
    if "min_workers" not in keys:
        keys.setdefault("workers", 1)
    lines = [f"[pool:{name}]", f"command = {command}"]
    lines += [f"{k} = {v}" for k, v in keys.items()]
    return "\n".join(lines) + "\n"


def server(**keys):
    return "[server]\n" + "".join(f"{k} = {v}\n" for k, v in keys.items())


def readyz(port, method="GET"):
    """(status, parsed body or None) of /readyz."""
    r = admin(port, method, "/readyz")
    return r.status, (json.loads(r.body) if r.body else None)


def raw_head(port, path):
    """HEAD `path`: the whole reply as bytes (to see that no body follows)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(request_bytes("HEAD", path))
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return data
            data += chunk


def post(port, path, token=None, headers=None):
    headers = list(headers or [])
    if token is not None:
        headers.append(("Authorization", f"Bearer {token}"))
    return get(port, path, method="POST", headers=headers, timeout=5)


def in_flight(port, target):
    """A GET of `target` in a thread: (thread, result dict with "r" or "e")."""
    result = {}

    def run():
        try:
            result["r"] = get(port, target, timeout=20)
        except Exception as e:  # noqa: BLE001
            result["e"] = e

    th = threading.Thread(target=run, daemon=True)
    th.start()
    return th, result


def active_streams(gw, name="app"):
    return gw.metrics().get("sluice_pool_active_streams", pool=name)


# --------------------------------------------------------------------------
# /healthz and /readyz


def test_healthz_and_readyz_while_starting_then_ready(start_config):
    """Before the slow pool's worker has said HELLO the gateway is live
    (/healthz 200) but not ready (/readyz 503 naming that pool); once it is
    up, /readyz answers 200. HEAD works on both, without a body."""
    gw = start_config(pool("fast") + pool("slow", command=f"sh -c 'sleep 3; exec {HELLO}'"))
    assert wait_for(lambda: gw.pool("fast")["ready_workers"] == 1, 5)
    r = gw.admin("GET", "/healthz")
    assert r.status == 200 and json.loads(r.body) == {"ok": True}, r
    assert r.header("content-type") == "application/json"
    st, body = readyz(gw.admin_port)
    assert st == 503 and body == {"ready": False, "reason": "pool slow has no ready worker"}, (st, body)
    assert gw.status()["ready"] is False
    reply = raw_head(gw.admin_port, "/readyz")
    assert reply.startswith(b"HTTP/1.1 503 ") and reply.endswith(b"\r\n\r\n"), reply
    reply = raw_head(gw.admin_port, "/healthz")
    assert reply.startswith(b"HTTP/1.1 200 ") and reply.endswith(b"\r\n\r\n"), reply
    assert b"\r\nContent-Length: 12\r\n" in reply, reply  # that of {"ok":true}\n

    assert wait_for(lambda: readyz(gw.admin_port)[0] == 200, 15), gw.log_tail()
    assert readyz(gw.admin_port) == (200, {"ready": True})
    reply = raw_head(gw.admin_port, "/readyz")
    assert reply.startswith(b"HTTP/1.1 200 ") and reply.endswith(b"\r\n\r\n"), reply
    st = gw.status()
    assert st["ready"] is True and st["stopping"] is False
    assert all(p["ready_workers"] == 1 for p in st["pools"]), st
    # the other methods are refused, with Allow
    r = gw.admin("POST", "/healthz")
    assert r.status == 405 and r.header("allow") == "GET, HEAD", r
    r = gw.admin("GET", "/nope")
    assert r.status == 404 and "GET /readyz" in json.loads(r.body)["endpoints"], r


def test_readyz_with_a_pool_scaled_to_zero(start_config):
    """A pool that wants no worker (scaled to 0, or min_workers = 0) starts
    one when a request comes: it does not make the gateway unready, which
    would keep that request from ever coming. While its first worker starts
    the gateway is not ready (the pool now waits for one)."""
    gw = start_config(pool("app", workers=1) + pool("lazy", min_workers=0, max_workers=1) +
                      "[route:lazy]\npath = /lazy\npool = lazy\n")
    assert wait_for(lambda: readyz(gw.admin_port)[0] == 200, 10), readyz(gw.admin_port)
    assert gw.pool("lazy")["ready_workers"] == 0
    assert gw.admin("POST", "/pools/app/scale?workers=0").status == 200
    assert wait_for(lambda: gw.pool("app")["ready_workers"] == 0, 10)
    assert readyz(gw.admin_port)[0] == 200
    r = get(gw.port, "/lazy", timeout=15)
    assert r.status == 200 and r.body == HELLO_BODY, r
    assert gw.pool("lazy")["ready_workers"] == 1
    assert readyz(gw.admin_port)[0] == 200


def test_sigterm_fails_readyz_while_a_request_finishes(start_config):
    """At SIGTERM /readyz turns 503 "stopping" at once, /healthz stays 200,
    and the request in flight still completes before the gateway exits."""
    gw = start_config(server(graceful_timeout="10s") + pool("app", workers=1))
    assert wait_for(lambda: readyz(gw.admin_port)[0] == 200, 10)
    th, result = in_flight(gw.port, "/?delay=2000")
    assert wait_for(lambda: active_streams(gw) == 1, 5), "the slow request never reached the worker"
    gw.proc.send_signal(signal.SIGTERM)
    # (the signal and the admin connection may reach the loop in either order)
    assert wait_for(lambda: readyz(gw.admin_port)[0] == 503, 2)
    assert readyz(gw.admin_port) == (503, {"ready": False, "reason": "stopping"})
    assert th.is_alive(), "the request finished before readiness was checked"
    assert gw.admin("GET", "/healthz").status == 200
    assert gw.status()["stopping"] is True
    th.join(20)
    assert "r" in result, f"in-flight request failed: {result}"
    assert result["r"].status == 200 and result["r"].body == HELLO_BODY, result["r"]
    assert gw.proc.wait(10) == 0


def test_shutdown_delay_keeps_serving_then_stops(start_config):
    """With shutdown_delay, SIGTERM first only fails /readyz: requests keep
    succeeding, on new and keep-alive connections alike (no Connection:
    close), for the whole delay; then the gateway stops and exits 0."""
    delay = 2.0
    gw = start_config(server(shutdown_delay=f"{delay}s", graceful_timeout="5s") + pool("app", workers=1))
    assert wait_for(lambda: readyz(gw.admin_port)[0] == 200, 10)
    ka = Conn(gw.port, timeout=5)
    req = request_bytes("GET", "/")
    ka.send(req)
    assert ka.read_response().status == 200
    t0 = time.monotonic()
    gw.proc.send_signal(signal.SIGTERM)
    assert wait_for(lambda: readyz(gw.admin_port)[0] == 503, 2)
    assert readyz(gw.admin_port) == (503, {"ready": False, "reason": "stopping"})
    st = gw.status()
    assert st["ready"] is False and st["stopping"] is False, "within the delay the gateway is not stopping yet"
    served = 0
    while time.monotonic() - t0 < delay - 0.5:
        ka.send(req)
        r = ka.read_response()
        assert r.status == 200 and r.body == HELLO_BODY, r
        assert not r.has_token("connection", "close"), r
        fresh = get(gw.port, "/", timeout=5)
        assert fresh.status == 200 and fresh.body == HELLO_BODY, fresh
        assert gw.alive()
        assert readyz(gw.admin_port)[0] == 503
        served += 2
        time.sleep(0.05)
    assert served >= 4
    assert gw.proc.wait(delay + 10) == 0
    elapsed = time.monotonic() - t0
    assert elapsed >= delay - 0.1, f"exited after {elapsed:.2f}s, before the {delay}s delay was over"
    ka.close()
    log = gw.log()
    assert "shutdown_delay" in log and "shutdown delay over" in log, gw.log_tail()


def test_second_signal_skips_the_shutdown_delay(start_config):
    """A second SIGTERM within the delay starts the graceful stop at once:
    the request in flight still completes, and the gateway exits long
    before the delay would have ended."""
    gw = start_config(server(shutdown_delay="60s", graceful_timeout="10s") + pool("app", workers=1))
    assert wait_for(lambda: readyz(gw.admin_port)[0] == 200, 10)
    gw.proc.send_signal(signal.SIGTERM)
    assert wait_for(lambda: "shutdown_delay" in gw.log(), 5)
    assert readyz(gw.admin_port)[0] == 503
    assert get(gw.port, "/").status == 200, "still serving within the delay"
    th, result = in_flight(gw.port, "/?delay=1000")
    assert wait_for(lambda: active_streams(gw) == 1, 5)
    t0 = time.monotonic()
    gw.proc.send_signal(signal.SIGTERM)
    assert gw.proc.wait(15) == 0
    assert time.monotonic() - t0 < 10
    th.join(10)
    assert "r" in result and result["r"].status == 200, f"in-flight request: {result}"
    assert "skipping the rest of the shutdown delay" in gw.log(), gw.log_tail()


# --------------------------------------------------------------------------
# the admin token


@pytest.mark.parametrize("how", ["file", "flag", "env"])
def test_token_guards_the_post_endpoints(start_config, monkeypatch, how):
    """With a token, POST /reload and /pools/NAME/scale need it (401 with
    WWW-Authenticate without credentials, 403 with a wrong token) also on
    loopback; the reading endpoints stay open. The token is never logged
    nor shown, and the workers do not inherit SLUICE_ADMIN_TOKEN."""
    text = pool("app", command="{PYTHON} {ENVWORKER}", workers=1)
    args = []
    if how == "file":
        text = server(admin_token=TOKEN) + text
    elif how == "flag":
        args = ["--admin-token", TOKEN]
    else:
        monkeypatch.setenv("SLUICE_ADMIN_TOKEN", TOKEN)
    gw = start_config(text, *args)
    port = gw.admin_port
    for path in ("/reload", "/pools/app/scale?workers=2"):
        r = post(port, path)
        assert r.status == 401 and r.header("www-authenticate") == "Bearer", r
        assert "error" in json.loads(r.body)
        r = post(port, path, headers=[("Authorization", f"Basic {TOKEN}")])
        assert r.status == 401, r
        r = post(port, path, token=TOKEN + "x")
        assert r.status == 403 and r.header("www-authenticate") is None, r
        r = post(port, path, token=TOKEN[:-1])
        assert r.status == 403, r
    for path in ("/status", "/metrics", "/healthz"):
        assert admin(port, "GET", path).status == 200, path
    assert readyz(port)[0] in (200, 503)
    assert gw.pool("app")["workers_target"] == 1, "a refused scale must not act"
    r = post(port, "/pools/app/scale?workers=2", token=TOKEN)
    assert r.status == 200 and json.loads(r.body) == {"pool": "app", "workers": 2}, r
    assert gw.pool("app")["workers_target"] == 2
    r = post(port, "/reload", headers=[("Authorization", f"bearer   {TOKEN}")])
    assert r.status == 200 and json.loads(r.body) == {"reloading": True}, r
    # still guarded after the reload (the file, flag or environment again)
    assert post(port, "/reload").status == 401
    # the worker does not see the token; neither does the log nor /status
    assert wait_for(lambda: readyz(port)[0] == 200, 10)
    r = get(gw.port, "/")
    assert r.status == 200, r
    assert "SLUICE_ADMIN_TOKEN" not in json.loads(r.body)["env"]
    assert TOKEN not in json.dumps(gw.status())
    assert TOKEN not in gw.log()


def test_token_header_limits(start_config):
    """Authorization is read with bounded buffers: a huge one, or a huge
    head, is refused (431); two Authorization headers are a bad request."""
    gw = start_config(server(admin_token=TOKEN) + pool("app"))
    port = gw.admin_port
    r = post(port, "/reload", headers=[("Authorization", "Bearer " + "x" * 4000)])
    assert r.status == 431, r
    r = post(port, "/reload", headers=[("X-Filler", "y" * 7000), ("X-More", "z" * 7000),
                                       ("X-Again", "w" * 7000)])
    assert r.status == 431, r
    r = post(port, "/reload", headers=[("Authorization", f"Bearer {TOKEN}"),
                                       ("Authorization", f"Bearer {TOKEN}")])
    assert r.status == 400, r
    # a long header that is not Authorization, within the bound, is fine
    r = post(port, "/reload", token=TOKEN, headers=[("X-A-Very-Long-Header-Name-Indeed-Yes", "v" * 3000)])
    assert r.status == 200, r
    assert gw.alive()


def non_loopback_ipv4():
    """An IPv4 address of this machine that is not loopback, or None. (A
    UDP socket "connected" toward a documentation address picks the
    outgoing interface's address; nothing is sent.)"""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.1", 9))
            addr = s.getsockname()[0]
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((addr, 0))
    except OSError:
        return None
    return None if addr.startswith("127.") or addr == "0.0.0.0" else addr


def remote(host, port, method, path, token=None):
    headers = [("Authorization", f"Bearer {token}")] if token else []
    with Conn(port, host=host, timeout=5) as c:
        c.send(request_bytes(method, path, headers, host=host))
        r, _ = c.read_final(method)
        return r


@pytest.mark.parametrize("with_token", [False, True])
def test_non_loopback_admin(start_config, with_token):
    """On a non-loopback admin address without a token the POST endpoints
    are refused (403) and the gateway warns once at start; the reading
    endpoints stay open. With a token they work there as on loopback.
    (tests/unit/test_admin.c checks the decision for any address.)"""
    host = non_loopback_ipv4()
    if host is None:
        pytest.skip("no non-loopback IPv4 address here (tests/unit/test_admin.c covers the decision)")
    keys = {"listen": "127.0.0.1:{PORT}", "admin": host + ":{ADMIN}"}
    if with_token:
        keys["admin_token"] = TOKEN
    gw = start_config(server(**keys) + pool("app"), cli_listen=False, wait=False)

    def up():
        try:
            return remote(host, gw.admin_port, "GET", "/healthz").status == 200
        except (OSError, ConnectionClosed, ValueError):
            return False
    assert wait_for(up, 10), gw.log_tail()
    for path in ("/status", "/metrics", "/healthz"):
        assert remote(host, gw.admin_port, "GET", path).status == 200, path
    assert wait_for(lambda: remote(host, gw.admin_port, "GET", "/readyz").status == 200, 10)
    warning = "is not a loopback address and no admin_token is set"
    if not with_token:
        for path in ("/reload", "/pools/app/scale?workers=2"):
            r = remote(host, gw.admin_port, "POST", path)
            assert r.status == 403, r
            assert json.loads(r.body) == {
                "error": "set admin_token to use POST endpoints on a non-loopback admin address"}, r
        st = json.loads(remote(host, gw.admin_port, "GET", "/status").body)
        assert st["pools"][0]["workers_target"] == 1, "a refused scale must not act"
        assert gw.log().count(warning) == 1, gw.log_tail()
    else:
        assert remote(host, gw.admin_port, "POST", "/reload").status == 401
        r = remote(host, gw.admin_port, "POST", "/pools/app/scale?workers=2", token=TOKEN)
        assert r.status == 200, r
        assert warning not in gw.log()


# --------------------------------------------------------------------------
# autoscaler metrics


def test_busy_ratio_and_queue_wait_metrics(start_config):
    """Under load from a slow handler: active streams, capacity (workers x
    max_streams) and their ratio; the queue-wait histogram counts every
    request, waits included, beside the unchanged older series."""
    gw = start_config(pool("app", workers=2, max_streams=2))
    assert wait_for(lambda: gw.pool("app")["ready_workers"] == 2, 10)
    m = gw.metrics()
    assert m.get("sluice_pool_capacity_streams", pool="app") == 4
    assert m.get("sluice_pool_active_streams", pool="app") == 0
    assert m.get("sluice_pool_busy_ratio", pool="app") == 0
    # 3 slow requests: 3 of the 4 streams busy
    threads = [in_flight(gw.port, "/?delay=2500") for _ in range(3)]
    assert wait_for(lambda: active_streams(gw) == 3, 5), gw.metrics().text
    m = gw.metrics()
    assert m.get("sluice_pool_capacity_streams", pool="app") == 4
    ratio = m.get("sluice_pool_busy_ratio", pool="app")
    assert ratio > 0 and abs(ratio - 0.75) < 1e-6, ratio
    fam = m.family("sluice_pool_busy_ratio")
    assert fam is not None and fam.type == "gauge"
    # 3 more: one gets the last stream, two wait in the queue
    threads += [in_flight(gw.port, "/?delay=500") for _ in range(3)]
    assert wait_for(lambda: gw.pool("app")["queue_depth"] == 2, 5), gw.status()
    assert gw.metrics().get("sluice_pool_busy_ratio", pool="app") == 1
    for th, result in threads:
        th.join(20)
        assert "r" in result and result["r"].status == 200, result
    m = gw.metrics()
    assert m.get("sluice_pool_active_streams", pool="app") == 0
    hist = [f for f in m.families if f.name == "sluice_queue_wait_duration_seconds"]
    assert len(hist) == 1 and hist[0].type == "histogram", m.text
    # one family per name: the older counter keeps its own
    names = [f.name for f in m.families]
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)
    count = m.get("sluice_queue_wait_duration_seconds_count", pool="app")
    assert count == 6, m.text
    buckets = sorted(((float(s.labels["le"]), s.value) for s in hist[0].samples
                      if s.name == "sluice_queue_wait_duration_seconds_bucket" and s.labels["pool"] == "app"))
    assert buckets[-1] == (float("inf"), count)
    assert all(a[1] <= b[1] for a, b in zip(buckets, buckets[1:])), buckets
    assert buckets[0][1] == 4, f"4 requests found a free stream at once: {buckets}"
    waited = m.get("sluice_queue_wait_duration_seconds_sum", pool="app")
    assert waited > 0.5, waited  # about 0.5 + 1.0
    # the older series are unchanged
    assert m.get("sluice_queued_requests_total", pool="app") == 2
    assert abs(m.get("sluice_queue_wait_seconds_total", pool="app") - waited) < 1e-3
    assert m.get("sluice_queue_depth", pool="app") == 0
