"""WebSockets in operations: what the gateway promises (issue 13) about
pools, recycling, reload, stop, crashes, /status, /metrics and the access
log, for WebSocket streams (PROTOCOL.md 5.2, *Draining*):

- a WebSocket is a stream on its worker for balancing and `max_streams`
  (a handshake beyond it waits in the pool's queue as a request would),
  and counts once towards `max_requests`;
- recycling (max_requests), reload (SIGHUP, POST /reload) and SIGTERM do
  not cut WebSockets: the draining worker keeps them until its graceful
  timeout, then the client gets close 1001 (and the worker CLOSE 1001);
  meanwhile new requests and WebSockets go to the replacement;
- a killed worker's WebSockets get close 1011 at once, the others go on;
- /status (`websockets` per pool) and /metrics (`sluice_websockets_*`,
  `sluice_websocket_*`) count open WebSockets, messages and bytes;
- one access log line per WebSocket when it closes.

The worker is wsworker.py (raw protocol, behaviour by path; `/whoami`
tells which process serves the stream). Every gateway is started from a
config file on loopback ports by `start_config` (pools_util.py) or by
conftest's `start_gateway`, and stopped by PID in teardown; every wait is
bounded.
"""

import json
import os
import re
import signal
import sys
import threading
import time

import pytest

from conftest import proc_stat
from httpc import Conn, get, request_bytes
from pools_util import Load, start_config, wait_for  # noqa: F401 (fixture)
from wsclient import OP_BINARY, OP_TEXT, WS, Timeout, connect

HERE = os.path.dirname(os.path.abspath(__file__))
WSWORKER = os.path.join(HERE, "wsworker.py")
PLAIN = b"plain"  # wsworker's answer to a plain request


def ws_pool(name="ws", **keys):
    lines = [f"[pool:{name}]", "command = {PYTHON} " + WSWORKER + " --window 65536"]
    lines += [f"{k} = {v}" for k, v in keys.items()]
    return "\n".join(lines) + "\n"


def whoami(ws):
    """The first message of a /whoami WebSocket: the serving process."""
    m = ws.recv_message(timeout=5)
    assert m.opcode == OP_TEXT, m
    return json.loads(m.data)


def open_whoami(port, tag, timeout=5.0):
    ws = connect(port, f"/whoami?t={tag}", timeout=timeout)
    return ws, whoami(ws)


def echo(ws, data=b"ping", opcode=OP_TEXT, timeout=5.0):
    ws.send_frame(opcode, data)
    ws.expect_message(opcode, data, timeout)


def alive(pid):
    return proc_stat(pid) is not None


def worker_end(gw, target, timeout=5.0):
    """wsworker's `end` line for the stream of `target`, as a dict, or None."""
    line = gw.wait_log(lambda l: "wsworker[" in l and " end " in l
                       and f"target={target} " in l, timeout)
    if line is None:
        return None
    return dict(re.findall(r"(\w+)=(\S*)", line.split(" end ", 1)[1]))


def wait_log_re(gw, pattern, timeout=5.0):
    rx = re.compile(pattern)
    return gw.wait_log(lambda l: rx.search(l) is not None, timeout)


def wait_new_worker(gw, old, pool="ws", timeout=8.0):
    """The pid of a running worker of `pool` other than `old` (the old one
    may still be draining), once there is one."""
    def new():
        gw.workers()  # remember the pids for teardown
        got = [w["pid"] for w in gw.pool(pool)["workers"]
               if w["state"] == "running" and w["pid"] not in old]
        return got[0] if len(got) == 1 else None
    pid = wait_for(new, timeout)
    assert pid, gw.pool(pool)
    return pid


def ws_stats(gw, pool="ws"):
    return gw.pool(pool)["websockets"]


def plain_ok(port, target="/plain"):
    r = get(port, target)
    assert r.status == 200 and r.body == PLAIN, r


def no_violation(gw):
    bad = [l for l in gw.log().splitlines() if "VIOLATION" in l]
    assert not bad, "\n".join(bad[:20])


# ==========================================================================
# /status and /metrics

WS_METRICS = {
    "sluice_websockets_open": ("sluice_websockets_open", "gauge", "open"),
    "sluice_websockets_total": ("sluice_websockets", "counter", "total"),
    "sluice_websocket_messages_received_total":
        ("sluice_websocket_messages_received", "counter", "messages_in"),
    "sluice_websocket_messages_sent_total":
        ("sluice_websocket_messages_sent", "counter", "messages_out"),
    "sluice_websocket_received_bytes_total":
        ("sluice_websocket_received_bytes", "counter", "bytes_in"),
    "sluice_websocket_sent_bytes_total":
        ("sluice_websocket_sent_bytes", "counter", "bytes_out"),
}


def check_metrics(gw, want, other="plain"):
    """/metrics (parsed by prometheus_client) agrees with `want` (the
    /status `websockets` object expected for pool ws); pool `other` has
    zeros."""
    m = gw.metrics()
    types = {f.name: f.type for f in m.families}
    for sample, (family, typ, key) in WS_METRICS.items():
        assert types.get(family) == typ, (family, types.get(family))
        assert m.get(sample, pool="ws") == want[key], (sample, want, m.text)
        assert m.get(sample, pool=other) == 0, (sample, m.text)


def test_status_and_metrics_count_websockets(start_config):
    gw = start_config(ws_pool(workers=2) + "[pool:plain]\ncommand = {EXAMPLES}/hello\n"
                      "workers = 1\n[route:plain]\npath = /hello\npool = plain\n")
    gw.wait_running("ws", 2)
    zero = dict(open=0, total=0, messages_in=0, messages_out=0, bytes_in=0, bytes_out=0)
    assert ws_stats(gw) == zero
    check_metrics(gw, zero)

    a = connect(gw.port, "/echo?t=a")
    b = connect(gw.port, "/echo?t=b")
    c = connect(gw.port, "/echo?t=c")
    try:
        echo(a, b"hello")                      # 5 bytes each way
        echo(a, "h\u00e9".encode())            # 3 bytes (text, UTF-8)
        echo(b, bytes(range(256)) * 4, OP_BINARY)  # 1024 bytes
        a.send_fragments(OP_TEXT, ["ab", "cd", "e"])  # one message of 5 bytes
        a.expect_message(OP_TEXT, b"abcde")
        a.ping(b"not counted")
        m = a.recv_message()
        assert m.frame.opcode == 0xA, m
        want = dict(open=3, total=3, messages_in=4, messages_out=4,
                    bytes_in=5 + 3 + 1024 + 5, bytes_out=5 + 3 + 1024 + 5)
        assert ws_stats(gw) == want
        check_metrics(gw, want)
        # a WebSocket is an active stream of its worker
        ws_pool_st = gw.pool("ws")
        assert sum(w["active_streams"] for w in ws_pool_st["workers"]) == 3, ws_pool_st
        assert gw.metrics().get("sluice_open_connections") >= 3

        # closed by the client, by the worker (/close: CLOSE 4000 after the
        # first message) and by a lost connection
        a.close(1000)
        a.expect_close(1000, reply=False)
        b.shutdown()
        d = connect(gw.port, "/close?t=d")
        d.send_text("x")
        d.expect_close(4000)
        want.update(open=1, total=4, messages_in=5, bytes_in=want["bytes_in"] + 1)
        assert wait_for(lambda: ws_stats(gw)["open"] == 1, 5), ws_stats(gw)
        assert ws_stats(gw) == want
        check_metrics(gw, want)
    finally:
        for ws in (a, b, c):
            ws.shutdown()
    want.update(open=0)
    assert wait_for(lambda: ws_stats(gw)["open"] == 0, 5), ws_stats(gw)
    assert ws_stats(gw) == want
    check_metrics(gw, want)
    st = gw.pool("ws")
    assert all(w["active_streams"] == 0 for w in st["workers"]), st
    # each WebSocket is one request of its worker, and one response (its
    # 101, class 1xx) of the pool and the gateway: the counts agree
    assert sum(w["requests"] for w in st["workers"]) == 4, st
    assert st["requests"] == 4, st
    assert gw.status()["requests"] == 4
    assert gw.metrics().get("sluice_requests_total", pool="ws", **{"class": "1xx"}) == 4
    no_violation(gw)


# ==========================================================================
# max_streams and balancing

def test_max_streams_websocket_handshake_waits_in_the_queue(start_config):
    """A worker with max_streams = 2 holding two WebSockets: a third
    handshake and a plain request wait in the queue (not refused, not sent
    to the worker) and go through, in order, as WebSockets close."""
    gw = start_config(ws_pool(workers=1, max_streams=2, queue_timeout="20s"))
    gw.wait_running("ws", 1)
    w1 = connect(gw.port, "/echo?t=1")
    w2 = connect(gw.port, "/echo?t=2")
    w3 = WS(gw.port, timeout=10)
    plain = Conn(gw.port, timeout=10)
    try:
        echo(w1)
        echo(w2)
        w3.send_raw(w3.handshake_bytes("/echo?t=3"))
        assert wait_for(lambda: gw.pool("ws")["queue_depth"] == 1, 3), gw.pool("ws")
        plain.send(request_bytes("GET", "/plain"))
        assert wait_for(lambda: gw.pool("ws")["queue_depth"] == 2, 3), gw.pool("ws")
        time.sleep(0.5)
        assert gw.pool("ws")["queue_depth"] == 2
        assert gw.pool("ws")["workers"][0]["active_streams"] == 2
        assert gw.pool("ws")["websockets"]["open"] == 2
        # one WebSocket closes: the queued handshake (first in line) gets it
        w1.close(1000)
        w1.expect_close(1000, reply=False)
        w3._deadline(5)
        r = w3.read_head()
        assert r.status == 101, r
        echo(w3, b"third")
        assert gw.pool("ws")["queue_depth"] == 1
        # the next close lets the plain request through
        w2.close(1000)
        w2.expect_close(1000, reply=False)
        r = plain.read_response()
        assert r.status == 200 and r.body == PLAIN, r
        assert gw.pool("ws")["queue_depth"] == 0
    finally:
        for c in (w1, w2, w3, plain):
            c.close() if c is plain else c.shutdown()
    no_violation(gw)


def test_websockets_are_balanced_over_workers(start_config):
    """Least open streams: 4 WebSockets on 2 workers are 2 and 2; with
    max_streams = 1 the second goes to the other worker and a third
    queues."""
    gw = start_config(ws_pool(workers=2))
    pids = gw.wait_running("ws", 2)
    socks = []
    try:
        seen = []
        for i in range(4):
            ws, me = open_whoami(gw.port, f"bal{i}")
            socks.append(ws)
            seen.append(me["pid"])
        assert sorted(seen) == sorted(pids * 2), (seen, pids)
        st = gw.pool("ws")
        assert [w["active_streams"] for w in st["workers"]] == [2, 2], st
    finally:
        for ws in socks:
            ws.shutdown()


def test_max_streams_one_spreads_websockets(start_config):
    gw = start_config(ws_pool(workers=2, max_streams=1, queue_timeout="20s"))
    pids = gw.wait_running("ws", 2)
    a, me_a = open_whoami(gw.port, "one-a")
    b, me_b = open_whoami(gw.port, "one-b")
    c = WS(gw.port, timeout=10)
    try:
        assert {me_a["pid"], me_b["pid"]} == set(pids), (me_a, me_b, pids)
        c.send_raw(c.handshake_bytes("/whoami?t=one-c"))
        assert wait_for(lambda: gw.pool("ws")["queue_depth"] == 1, 3), gw.pool("ws")
        b.close(1000)
        b.expect_close(1000, reply=False)
        c._deadline(5)
        assert c.read_head().status == 101
        assert whoami(c)["pid"] == me_b["pid"]  # the worker that got free
        echo(a)
    finally:
        for ws in (a, b, c):
            ws.shutdown()


# ==========================================================================
# recycling, reload, stop

GRACE = 2.5  # the pools' graceful_timeout in these tests, seconds


def test_websocket_counts_once_towards_max_requests(start_config):
    """max_requests = 3: a plain request and a WebSocket carrying many
    messages are 2 requests (no recycling); a second WebSocket, the third
    request, recycles the worker. Both WebSockets keep working until the
    graceful timeout, then get 1001 (the worker CLOSE 1001); meanwhile
    requests and WebSockets go to the replacement, and nothing fails."""
    gw = start_config(ws_pool(workers=1, max_requests=3, max_requests_jitter=0,
                              graceful_timeout=f"{int(GRACE * 1000)}ms"))
    (old,) = gw.wait_running("ws", 1)
    plain_ok(gw.port)
    socks = []
    try:
        ws, me = open_whoami(gw.port, "mr1")
        socks.append(ws)
        assert me["pid"] == old
        for i in range(20):
            echo(ws, b"m%d" % i)
        w = gw.pool("ws")["workers"][0]
        assert w["pid"] == old and w["requests"] == 2, w
        time.sleep(0.2)
        assert "max_requests reached" not in gw.log()
        ws1b, me = open_whoami(gw.port, "mr2")  # the third request
        socks.append(ws1b)
        assert me["pid"] == old
        assert wait_log_re(gw, r"pool ws: retiring worker \d+ \(pid %d\): max_requests reached" % old)
        new = wait_new_worker(gw, [old])
        t_new = time.monotonic()
        # the replacement serves new requests and WebSockets (2 of its 3)
        plain_ok(gw.port)
        ws2, me2 = open_whoami(gw.port, "mr3")
        socks.append(ws2)
        assert me2["pid"] == new
        # the old WebSockets still work while the old worker drains
        for ws in socks[:2]:
            echo(ws, b"still")
        time.sleep(max(0.0, GRACE - 1.0 - (time.monotonic() - t_new)))
        for ws in socks[:2]:
            echo(ws, b"late but within the graceful timeout")
        assert alive(old)
        for ws in socks[:2]:
            ws.expect_close(1001, timeout=GRACE + 3)
        took = time.monotonic() - t_new
        assert GRACE - 1.0 <= took <= GRACE + 2.5, took
        for t in ("mr1", "mr2"):
            end = worker_end(gw, f"/whoami?t={t}")
            assert end and end["how"] == "close" and end["code"] == "1001", end
        assert wait_for(lambda: not alive(old), 5), "the drained worker did not exit"
        echo(ws2, b"the new one goes on")
        st = gw.pool("ws")
        assert st["restarts"] == 0 and [(w["pid"], w["requests"]) for w in st["workers"]] == \
            [(new, 2)], st
    finally:
        for ws in socks:
            ws.shutdown()
    no_violation(gw)


@pytest.mark.parametrize("how", ["sighup", "post"])
def test_reload_keeps_websockets_until_the_graceful_timeout(start_config, how):
    """Reload with open WebSockets (and plain requests under load): the old
    worker drains; its WebSockets work until graceful_timeout, then get
    1001; new WebSockets reach the new worker; no HTTP request fails."""
    gw = start_config(ws_pool(workers=1, graceful_timeout=f"{int(GRACE * 1000)}ms"))
    (old,) = gw.wait_running("ws", 1)
    olds = [open_whoami(gw.port, f"rl-{how}-{i}") for i in range(2)]
    assert all(me["pid"] == old for _, me in olds)
    load = Load(gw.port, target="/plain", threads=2, duration=GRACE + 3,
                max_per_thread=3000, check=lambda b: b == PLAIN)
    new_ws = None
    try:
        with load:
            time.sleep(0.3)
            if how == "sighup":
                os.kill(gw.pid, signal.SIGHUP)
            else:
                r = gw.admin("POST", "/reload")
                assert r.status == 200, r
            new = wait_new_worker(gw, [old])
            t_new = time.monotonic()
            new_ws, me = open_whoami(gw.port, f"rl-{how}-new")
            assert me["pid"] == new
            for ws, _ in olds:
                echo(ws, b"during the drain")
            assert wait_for(lambda: ws_stats(gw)["open"] == 3, 2), ws_stats(gw)
            time.sleep(max(0.0, GRACE - 1.0 - (time.monotonic() - t_new)))
            for ws, _ in olds:
                echo(ws, b"still within the graceful timeout")
            for ws, _ in olds:
                ws.expect_close(1001, timeout=GRACE + 3)
            took = time.monotonic() - t_new
            assert GRACE - 1.0 <= took <= GRACE + 2.5, took
        assert load.failures == [], load.failures[:5]
        assert load.done > 20, load.done
        for i in range(2):
            end = worker_end(gw, f"/whoami?t=rl-{how}-{i}")
            assert end and end["how"] == "close" and end["code"] == "1001", end
        echo(new_ws, b"the new worker's WebSocket is untouched")
        assert wait_for(lambda: not alive(old), 5), "the drained worker did not exit"
        assert ws_stats(gw)["open"] == 1
    finally:
        for ws, _ in olds:
            ws.shutdown()
        if new_ws:
            new_ws.shutdown()
    no_violation(gw)


def test_sigterm_waits_for_websockets_then_closes_1001(start_gateway):
    """SIGTERM with open WebSockets: they keep working during
    --graceful-timeout, then the clients get 1001 and the gateway exits 0."""
    gw = start_gateway([sys.executable, WSWORKER], "--graceful-timeout", f"{GRACE}s",
                       workers=2)
    assert len(gw.wait_workers(2)) == 2
    socks = [connect(gw.port, f"/echo?t=term{i}", timeout=10) for i in range(3)]
    try:
        for ws in socks:
            echo(ws)
        t0 = time.monotonic()
        gw.proc.send_signal(signal.SIGTERM)
        time.sleep(1.0)
        for ws in socks:
            echo(ws, b"after SIGTERM")
        assert gw.alive()
        for ws in socks:
            ws.expect_close(1001, timeout=GRACE + 3)
        took = time.monotonic() - t0
        assert GRACE - 0.5 <= took <= GRACE + 2, took
        code = gw.proc.wait(10)
        assert code == 0, gw.log_tail()
    finally:
        for ws in socks:
            ws.shutdown()
    for i in range(3):
        end = worker_end(gw, f"/echo?t=term{i}")
        assert end and end["how"] == "close" and end["code"] == "1001", end


def test_sigterm_exits_early_once_the_client_closes(start_gateway):
    """A WebSocket the client closes during the graceful stop lets the
    gateway exit at once (not at --graceful-timeout)."""
    gw = start_gateway([sys.executable, WSWORKER], "--graceful-timeout", "20s", workers=1)
    ws = connect(gw.port, "/echo?t=early", timeout=10)
    try:
        echo(ws)
        gw.proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        echo(ws, b"still open")
        assert gw.alive()
        t0 = time.monotonic()
        ws.close(1000)
        ws.expect_close(1000, reply=False)
        code = gw.proc.wait(8)
        took = time.monotonic() - t0
        assert code == 0, gw.log_tail()
        assert took < 3, f"gateway exited {took:.1f}s after the last WebSocket closed"
    finally:
        ws.shutdown()


# ==========================================================================
# a killed worker

def test_killed_worker_websockets_get_1011_others_untouched(start_config):
    gw = start_config(ws_pool(workers=2))
    pids = gw.wait_running("ws", 2)
    socks = [open_whoami(gw.port, f"kill{i}") for i in range(4)]
    by_pid = {}
    for ws, me in socks:
        by_pid.setdefault(me["pid"], []).append(ws)
    assert set(by_pid) == set(pids), (by_pid, pids)
    victim, other = pids
    try:
        for ws, _ in socks:
            echo(ws)
        os.kill(victim, signal.SIGKILL)
        t0 = time.monotonic()
        for ws in by_pid[victim]:
            ws.expect_close(1011, timeout=3)
        assert time.monotonic() - t0 < 2, "close 1011 not prompt"
        for ws in by_pid[other]:
            echo(ws, b"untouched")
        now = gw.wait_running("ws", 2, exclude=[victim])
        assert other in now and len(now) == 2, (now, pids)
        (new,) = [p for p in now if p not in pids]
        assert gw.pool("ws")["restarts"] == 1
        assert wait_for(lambda: ws_stats(gw)["open"] == len(by_pid[other]), 3), ws_stats(gw)
        # a new WebSocket: the least busy worker is the replacement
        ws, me = open_whoami(gw.port, "kill-new")
        socks.append((ws, me))
        assert me["pid"] == new
        for ws in by_pid[other]:
            echo(ws, b"still untouched")
    finally:
        for ws, _ in socks:
            ws.shutdown()


# ==========================================================================
# the access log

ACCESS_RE = re.compile(
    r'^127\.0\.0\.1 - - \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d \+0000\] '
    r'"GET (?P<target>\S+) HTTP/1\.1" 101 (?P<bytes>\d+) (?P<ms>\d+\.\d{3})ms '
    r'w(?P<wid>\d+) ws messages=(?P<min>\d+)/(?P<mout>\d+) '
    r'bytes=(?P<bin>\d+)/(?P<bout>\d+) close=(?P<close>\d+)$')


def access_line(gw, target, timeout=5.0):
    line = gw.wait_log(lambda l: f'"GET {target} ' in l, timeout)
    assert line is not None, gw.log_tail()
    lines = [l for l in gw.log().splitlines() if f'"GET {target} ' in l]
    assert len(lines) == 1, lines
    m = ACCESS_RE.match(line)
    assert m, line
    return m


def test_access_log_line_fields(start_config):
    """One line per WebSocket, when it closes: 101, the bytes sent (message
    payload), the duration, the worker, messages and bytes both ways, and
    the close code (the client's, the worker's, 1006 for a lost client)."""
    gw = start_config(ws_pool(workers=1))
    (pid,) = gw.wait_running("ws", 1)
    wid = gw.pool("ws")["workers"][0]["id"]

    t0 = time.monotonic()
    ws, me = open_whoami(gw.port, "log1")
    hello = json.dumps({"pid": pid, "worker_id": wid}).encode()
    assert me == {"pid": pid, "worker_id": wid}
    try:
        echo(ws, b"abc")
        echo(ws, b"\x00" * 300, OP_BINARY)
        time.sleep(0.2)
        ws.close(1000, b"done")
        ws.expect_close(1000, reply=False)
    finally:
        ws.shutdown()
    took_ms = (time.monotonic() - t0) * 1000
    m = access_line(gw, "/whoami?t=log1")
    assert int(m["wid"]) == wid
    assert (int(m["min"]), int(m["mout"])) == (2, 3)
    assert (int(m["bin"]), int(m["bout"])) == (303, 303 + len(hello))
    assert int(m["bytes"]) == 303 + len(hello)
    assert m["close"] == "1000"
    assert 200 <= float(m["ms"]) <= took_ms + 50, (m["ms"], took_ms)

    # the worker closes (CLOSE 4000 after the first message)
    ws = connect(gw.port, "/close?t=log2")
    ws.send_binary(b"12345")
    ws.expect_close(4000)
    ws.shutdown()
    m = access_line(gw, "/close?t=log2")
    assert (m["min"], m["mout"], m["bin"], m["bout"], m["bytes"], m["close"]) == \
        ("1", "0", "5", "0", "0", "4000"), m.group(0)

    # the client goes away without a close frame
    ws = connect(gw.port, "/echo?t=log3")
    echo(ws, b"x" * 10)
    ws.shutdown()
    m = access_line(gw, "/echo?t=log3")
    assert (m["min"], m["mout"], m["bin"], m["bout"], m["close"]) == \
        ("1", "1", "10", "10", "1006"), m.group(0)

    # a refused handshake is an ordinary request line (no ws fields)
    w = WS(gw.port)
    with w:
        assert w.handshake("/refuse?t=log4").status == 403
    line = gw.wait_log(lambda l: '"GET /refuse?t=log4 ' in l, 5)
    assert line and '" 403 2 ' in line and " ws " not in line, line
