"""Several hosts on one machine (issue 15): two gateway hosts and four
worker hosts, each a network namespace with an address of its own on one
bridge (netns.py), and a client host that sends the traffic.

The worker hosts run the hello examples of the Go (when a Go toolchain is
there; else Node.js), Python, C and Node.js libraries. The gateways take
remote workers on `worker_listen = tls:0.0.0.0:7001`
(token and client certificate both required, ping_interval 1 s). The
workers are started by hand on their hosts in remote mode
(PROTOCOL.md 10.6), with SLUICE_SOCKET=tls:gateways.sluice.test:7001, a
name every host resolves to both gateways, so each worker keeps one link to
each gateway. What is checked, in order, each test leaving the cluster as
it found it:

  - traffic through both gateways reaches all four workers;
  - a worker host whose cable is pulled loses only what was in flight on
    it (502), both gateways drop it within their ping timeout and route
    around it, and it is back on both once the cable returns;
  - a gateway restarted under load: the workers are attached to it again
    within 5 s of it listening, and nothing fails through the other one;
  - a wrong token, and a certificate from an unknown CA, are refused;
  - a worker host that can reach only one gateway serves that one;
  - a gateway added to the name is found by every worker (re-resolution),
    and one taken out of it keeps its links until it stops, then is let go.

Skipped, with the reason, where network namespaces cannot be made (not root
and no CAP_NET_ADMIN) or a worker runtime is missing."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from certs import make_pki
from conftest import EXAMPLES, ROOT, SLUICE
from goutil import EXAMPLES_GO, build_examples, find_go
from netns import Net, wait_until

HERE = os.path.dirname(os.path.abspath(__file__))
NSCLIENT = os.path.join(HERE, "nsclient.py")
NODE = shutil.which("node")
TOKEN = "multihost-token"
GW = {"gw1": "10.77.0.1", "gw2": "10.77.0.2"}
ADDR = dict(GW, gw3="10.77.0.3")  # gw3: a gateway host added to the name later
WK = {"w1": "10.77.0.11", "w2": "10.77.0.12", "w3": "10.77.0.13", "w4": "10.77.0.14"}
CLIENT = "10.77.0.100"
PING_S = 1  # the gateways' ping_interval and the workers' SLUICE_PING_INTERVAL


GO, GO_SKIP = find_go(os.path.join(EXAMPLES_GO, "go.mod"), "the Go worker host runs Node.js instead")
WORKER_ARGV = {  # a library per host: Go (if it can be built), Python, C, Node.js
    "w1": [NODE, os.path.join(ROOT, "examples/node/hello.js")],
    # this tree's library, as the other e2e tests run it (clients/python on PYTHONPATH)
    "w2": ["/usr/bin/env", f"PYTHONPATH={os.path.join(ROOT, 'clients', 'python')}", sys.executable, "-m",
           "sluice", "--app-dir", ROOT, "examples.python.hello:app"],
    "w3": [os.path.join(EXAMPLES, "hello")],
    "w4": [NODE, os.path.join(ROOT, "examples/node/hello.js")],
}


def worker_argv(host):
    return WORKER_ARGV[host]


GATEWAY_INI = """[server]
listen = 0.0.0.0:8080
admin = 0.0.0.0:9090
access_log = off
graceful_timeout = 5s

[pool:web]
workers = 0
worker_listen = tls:0.0.0.0:7001
tls_cert = {server}
tls_key = {server_key}
client_ca = {client_ca}
token = {token}
ping_interval = {ping}s
response_timeout = 10s
queue_timeout = 5s
graceful_timeout = 5s
"""


class Cluster:
    def __init__(self, net, pki, tmp):
        self.net, self.pki, self.tmp = net, pki, tmp
        self.gw = {}
        self.workers = {}

    # -- client side, from the client host ------------------------------------
    def client(self, *args, timeout=30):
        r = self.net.run("client", [sys.executable, NSCLIENT] + list(args), timeout=timeout)
        assert r.returncode == 0, r.stderr.decode(errors="replace")
        return json.loads(r.stdout)

    def load(self, seconds, urls, threads=4):
        """Start a load in the background; .result() waits for its JSON."""
        p = self.net.popen("client", [sys.executable, NSCLIENT, "load", str(seconds), str(threads)] + urls,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)

        class Run:
            def result(self_, timeout=seconds + 30):
                out, err = p.communicate(timeout=timeout)
                assert p.returncode == 0, err.decode(errors="replace")
                return json.loads(out)
        return Run()

    def url(self, gw, path="/"):
        return f"http://{ADDR[gw]}:8080{path}"

    def status(self, gw):
        r = self.client("get", f"http://{ADDR[gw]}:9090/status", timeout=10)
        if r.get("status") != 200:
            return None
        return json.loads(r["body"])

    def attached(self, gw):
        """{peer address: requests} of the workers attached to gw's pool."""
        st = self.status(gw)
        if not st:
            return {}
        pool = [p for p in st["pools"] if p["name"] == "web"][0]
        return {a["peer"]: a["requests"] for a in pool["attached"]}

    def wait_attached(self, gw, peers, timeout):
        return wait_until(lambda: set(self.attached(gw)) == set(peers), timeout, 0.2)

    # -- gateways and workers ----------------------------------------------------
    def start_gateway(self, name):
        ini = os.path.join(self.tmp, f"{name}.ini")
        with open(ini, "w") as f:
            f.write(GATEWAY_INI.format(token=TOKEN, ping=PING_S, **self.pki))
        log = open(os.path.join(self.tmp, f"{name}.log"), "ab")
        p = self.net.popen(name, [SLUICE, "--config", ini], stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self.gw[name] = p
        ok = wait_until(lambda: self.status(name) is not None or p.poll() is not None, 15, 0.1)
        assert ok and p.poll() is None, self.log(name)
        return p

    def log(self, name):
        try:
            with open(os.path.join(self.tmp, f"{name}.log"), "rb") as f:
                return f.read().decode(errors="replace")[-4000:]
        except OSError:
            return ""

    def worker_env(self, **over):
        env = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")}
        env.update(SLUICE_SOCKET="tls:gateways.sluice.test:7001", SLUICE_TOKEN=TOKEN,
                   SLUICE_TLS_CA=self.pki["ca"], SLUICE_TLS_CERT=self.pki["client"],
                   SLUICE_TLS_KEY=self.pki["client_key"], SLUICE_RESOLVE_INTERVAL="1",
                   SLUICE_PING_INTERVAL=str(PING_S))
        env.update(over)
        return env

    def start_worker(self, host, argv=None, **env):
        log = open(os.path.join(self.tmp, f"{host}.log"), "ab")
        p = self.net.popen(host, argv or worker_argv(host), env=self.worker_env(**env), cwd=ROOT,
                           stdout=log, stderr=subprocess.STDOUT)
        log.close()
        return p


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    if not os.path.exists(SLUICE):
        pytest.skip(f"gateway binary not built: {SLUICE}")
    if NODE is None:
        pytest.skip("node not found: two of the worker hosts run Node.js workers")
    tmp = str(tmp_path_factory.mktemp("multihost"))
    os.chmod(tmp, 0o755)
    net = Net()
    if GO:
        WORKER_ARGV["w1"] = [build_examples(GO, tmp, ["hello"])["hello"]]
    try:
        for name, addr in list(ADDR.items()) + list(WK.items()) + [("client", CLIENT)]:
            net.add_host(name, addr)
        net.hosts_file({"gateways.sluice.test": list(GW.values())})
        pki = make_pki(os.path.join(tmp, "pki"), ips=list(ADDR.values()), names=["gateways.sluice.test"])
        c = Cluster(net, pki, tmp)
        for g in GW:
            c.start_gateway(g)
        for w in WK:
            c.workers[w] = c.start_worker(w)
        for g in GW:
            assert c.wait_attached(g, WK.values(), 20), (c.attached(g), c.log(g), c.log("w1"))
        yield c
    finally:
        net.close()


def test_traffic_through_both_gateways_reaches_every_worker(cluster):
    before = {g: cluster.attached(g) for g in GW}
    r = cluster.load(3, [cluster.url("gw1"), cluster.url("gw2")]).result()
    assert r["fail"] == [], r["fail"][:10]
    assert r["ok"][cluster.url("gw1")] > 50 and r["ok"][cluster.url("gw2")] > 50, r
    for g in GW:
        after = cluster.attached(g)
        for peer in WK.values():
            assert after[peer] > before[g][peer], (g, before[g], after)


def test_a_worker_host_cut_off_loses_only_its_requests_in_flight_and_rejoins(cluster):
    run = cluster.load(8, [cluster.url("gw1"), cluster.url("gw2")])
    time.sleep(1.5)
    cluster.net.link("w3", up=False)
    cut = time.monotonic()
    gone = [wait_until(lambda g=g: WK["w3"] not in cluster.attached(g), 3 * PING_S + 3, 0.1) for g in GW]
    noticed = time.monotonic() - cut
    assert all(gone), {g: cluster.attached(g) for g in GW}
    assert noticed <= 3 * PING_S + 3, noticed
    r = run.result()
    # what failed was in flight on w3 (sent before the gateways gave up on it):
    # 502, within the ping timeout of the cut; everything else was answered
    assert all(f[2] == 502 for f in r["fail"]), r["fail"][:10]
    assert all(f[0] <= 1.5 + noticed + 1 for f in r["fail"]), (noticed, r["fail"][:10])
    assert r["ok"][cluster.url("gw1")] > 50 and r["ok"][cluster.url("gw2")] > 50, r
    for g in GW:
        assert set(cluster.attached(g)) == set(WK.values()) - {WK["w3"]}
    cluster.net.link("w3", up=True)
    # the worker notices its silent links within its own ping timeout, then
    # reconnects with backoff (at most 2 s)
    for g in GW:
        assert cluster.wait_attached(g, WK.values(), 3 * PING_S + 10), (g, cluster.attached(g), cluster.log("w3"))
    before = cluster.attached("gw1")[WK["w3"]]
    r = cluster.load(2, [cluster.url("gw1")]).result()
    assert r["fail"] == [], r["fail"][:10]
    assert cluster.attached("gw1")[WK["w3"]] > before


def test_a_gateway_restarted_under_load(cluster):
    run = cluster.load(9, [cluster.url("gw2")])
    time.sleep(1)
    p = cluster.gw["gw1"]
    p.send_signal(signal.SIGTERM)
    assert p.wait(15) == 0, cluster.log("gw1")
    time.sleep(0.5)
    cluster.start_gateway("gw1")
    listening = time.monotonic()
    assert cluster.wait_attached("gw1", WK.values(), 5), (cluster.attached("gw1"), cluster.log("gw1"))
    took = time.monotonic() - listening
    r = run.result()
    assert r["fail"] == [], r["fail"][:10]  # the other gateway never noticed
    assert r["ok"][cluster.url("gw2")] > 100, r
    assert took <= 5, took
    r = cluster.load(2, [cluster.url("gw1")]).result()
    assert r["fail"] == [], r["fail"][:10]


def test_a_wrong_token_or_certificate_is_refused(cluster):
    bad = cluster.start_worker("w3", SLUICE_TOKEN="not-the-token")
    try:
        assert bad.wait(15) == 1
    finally:
        if bad.poll() is None:
            bad.kill()
            bad.wait(5)
    assert "auth" in cluster.log("w3").lower()
    rogue = cluster.start_worker("w3", SLUICE_TLS_CERT=cluster.pki["rogue"], SLUICE_TLS_KEY=cluster.pki["rogue_key"])
    try:
        time.sleep(2)
        for g in GW:
            assert "tls: 10.77.0.13:" in cluster.log(g), cluster.log(g)
            assert set(cluster.attached(g)) == set(WK.values())  # only the good ones
        assert rogue.poll() is None  # a refused certificate is retried, not fatal
    finally:
        rogue.kill()
        rogue.wait(5)


def test_a_worker_that_reaches_one_gateway_serves_that_one(cluster):
    cluster.net.route("w2", "add", "blackhole", f"{GW['gw2']}/32")
    try:
        assert wait_until(lambda: WK["w2"] not in cluster.attached("gw2"), 3 * PING_S + 3, 0.1), \
            cluster.attached("gw2")
        before = cluster.attached("gw1")[WK["w2"]]
        r = cluster.load(2, [cluster.url("gw1"), cluster.url("gw2")]).result()
        assert r["fail"] == [], r["fail"][:10]
        assert cluster.attached("gw1")[WK["w2"]] > before  # still serving gw1
        assert set(cluster.attached("gw2")) == set(WK.values()) - {WK["w2"]}
    finally:
        cluster.net.route("w2", "del", "blackhole", f"{GW['gw2']}/32")
    assert cluster.wait_attached("gw2", WK.values(), 3 * PING_S + 10), cluster.attached("gw2")


def test_a_gateway_added_to_the_name_is_found_and_one_taken_out_is_let_go(cluster):
    """PROTOCOL.md 10.6, 2: every worker re-resolves the name
    (SLUICE_RESOLVE_INTERVAL=1 here; Go's resolver rereads /etc/hosts at most
    every 5 s). A third gateway added to it gets a link from each worker;
    taken out again, its links stay while it runs (it may be draining), and
    once it has stopped nobody reconnects to it."""
    all_gw = {"gateways.sluice.test": list(ADDR.values())}
    cluster.start_gateway("gw3")
    cluster.net.hosts_file(all_gw)
    try:
        assert cluster.wait_attached("gw3", WK.values(), 15), (cluster.attached("gw3"), cluster.log("w1"))
        r = cluster.load(2, [cluster.url("gw3")]).result()
        assert r["fail"] == [] and r["ok"][cluster.url("gw3")] > 50, r
    finally:
        cluster.net.hosts_file({"gateways.sluice.test": list(GW.values())})
    time.sleep(7)  # every worker has resolved again by now (Go: within its 5 s hosts cache + 1 s)
    assert set(cluster.attached("gw3")) == set(WK.values())
    p = cluster.gw["gw3"]
    p.send_signal(signal.SIGTERM)
    assert p.wait(15) == 0, cluster.log("gw3")
    cluster.start_gateway("gw3")  # the same address, no longer in the name
    try:
        time.sleep(4)  # longer than the reconnect backoff's 2 s cap
        assert cluster.attached("gw3") == {}
        for g in GW:
            assert set(cluster.attached(g)) == set(WK.values())
    finally:
        p = cluster.gw["gw3"]
        p.send_signal(signal.SIGTERM)
        p.wait(15)
