"""Hosts on one machine: network namespaces joined by a bridge.

    net = Net()                        # skips the test without CAP_NET_ADMIN
    net.add_host("gw1", "10.77.0.1")   # a namespace with eth0 = 10.77.0.1/24
    net.hosts_file({"gateways.test": ["10.77.0.1", "10.77.0.2"]})
    p = net.popen("gw1", [argv...])    # a process inside it (its own PID)
    net.link("w3", up=False)           # pull w3's cable
    net.close()                        # every process stopped, namespaces gone

The switch is a namespace of its own holding a bridge; each host is a
namespace with one veth pair whose other end is a port of the bridge, so
pulling a host's cable (its bridge port down) cuts it off from every other
host while both ends stay configured, as a real unplugged link does. The
names carry this process's PID, so runs do not collide; /etc/netns/NS/hosts
(which `ip netns exec` mounts over /etc/hosts) gives each host the same name
table. Nothing outside the namespaces is touched but /etc/netns/NS/.
"""

import os
import shutil
import signal
import subprocess
import time

import pytest

IP = shutil.which("ip") or "/usr/sbin/ip"


def _ip(*args, check=True):
    r = subprocess.run([IP] + list(args), capture_output=True, text=True, timeout=30)
    if check and r.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {r.stderr.strip()}")
    return r


class Net:
    def __init__(self, prefix=None):
        if not os.path.exists(IP):
            pytest.skip("iproute2 (ip) not installed: network namespaces unavailable")
        self.prefix = prefix or f"sl{os.getpid() % 100000}"
        self.namespaces = []
        self.hosts = {}  # name -> (ns, address, bridge-side veth)
        self.procs = []
        self.sw = f"{self.prefix}-sw"
        r = _ip("netns", "add", self.sw, check=False)
        if r.returncode != 0:
            pytest.skip(f"cannot create a network namespace here ({r.stderr.strip()}): "
                        "the multi-host tests need root or CAP_NET_ADMIN")
        self.namespaces.append(self.sw)
        try:
            _ip("-n", self.sw, "link", "add", "br0", "type", "bridge")
            _ip("-n", self.sw, "link", "set", "br0", "up")
            _ip("-n", self.sw, "link", "set", "lo", "up")
        except Exception:
            self.close()
            raise

    def ns(self, host):
        return self.hosts[host][0]

    def add_host(self, name, address, prefixlen=24):
        ns = f"{self.prefix}-{name}"
        idx = len(self.hosts)
        inner, outer = f"{self.prefix}h{idx}", f"{self.prefix}p{idx}"
        _ip("netns", "add", ns)
        self.namespaces.append(ns)
        _ip("link", "add", inner, "type", "veth", "peer", "name", outer)
        _ip("link", "set", inner, "netns", ns)
        _ip("link", "set", outer, "netns", self.sw)
        _ip("-n", ns, "link", "set", inner, "name", "eth0")
        _ip("-n", ns, "addr", "add", f"{address}/{prefixlen}", "dev", "eth0")
        _ip("-n", ns, "link", "set", "eth0", "up")
        _ip("-n", ns, "link", "set", "lo", "up")
        _ip("-n", self.sw, "link", "set", outer, "master", "br0")
        _ip("-n", self.sw, "link", "set", outer, "up")
        self.hosts[name] = (ns, address, outer)
        return ns

    def hosts_file(self, names):
        """names: {hostname: [address, ...]}, written for every host."""
        text = "127.0.0.1 localhost\n::1 localhost\n" + "".join(
            f"{a} {n}\n" for n, addrs in names.items() for a in addrs)
        for ns, _, _ in self.hosts.values():
            d = os.path.join("/etc/netns", ns)
            os.makedirs(d, exist_ok=True)
            with open(os.path.join(d, "hosts"), "w") as f:
                f.write(text)

    def link(self, host, up):
        """Plug or pull the host's cable (its port on the bridge)."""
        _ip("-n", self.sw, "link", "set", "dev", self.hosts[host][2], "up" if up else "down")

    def route(self, host, verb, *args):
        """ip route VERB ARGS inside the host (e.g. a blackhole route)."""
        _ip("-n", self.ns(host), "route", verb, *args)

    def popen(self, host, argv, **kw):
        kw.setdefault("stdin", subprocess.DEVNULL)
        p = subprocess.Popen([IP, "netns", "exec", self.ns(host)] + list(argv), **kw)
        self.procs.append(p)
        return p

    def run(self, host, argv, timeout=30, **kw):
        return subprocess.run([IP, "netns", "exec", self.ns(host)] + list(argv),
                              capture_output=True, timeout=timeout, **kw)

    def close(self):
        for p in self.procs:
            if p.poll() is None:
                try:
                    p.send_signal(signal.SIGKILL)
                except OSError:
                    pass
        for p in self.procs:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                pass
        for ns in reversed(self.namespaces):
            _ip("netns", "del", ns, check=False)
            shutil.rmtree(os.path.join("/etc/netns", ns), ignore_errors=True)
        self.namespaces = []


def wait_until(fn, timeout, interval=0.1):
    """Poll fn() until it returns a true value (returned) or timeout (None)."""
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        if time.monotonic() > deadline:
            return None
        time.sleep(interval)
