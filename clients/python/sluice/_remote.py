"""Remote mode (PROTOCOL.md 10.6), without I/O: addresses, TLS settings,
resolution policy, reconnect backoff, liveness pings and the capacity shared
by all links.

The asyncio and trio backends subclass :class:`Remote` and only do the I/O:
connecting, resolving, sleeping, closing. A worker is in remote mode when its
address list has more than one entry or any ``tcp:``/``tls:`` entry; a single
Unix path keeps the one-link behaviour of sections 10.1 to 10.5.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import random
import ssl
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Iterable, Optional, Sequence, Union

log = logging.getLogger("sluice")

ALPN = "sluice/1"
BACKOFF_START = 0.1
BACKOFF_CAP = 2.0
DEFAULT_RESOLVE_INTERVAL = 10.0
DEFAULT_PING_INTERVAL = 5.0
#: a link from which nothing arrived for this many ping intervals is dead
SILENT_INTERVALS = 3
#: connecting, TLS and the gateway's HELLO together must finish within this
#: (or within SILENT_INTERVALS ping intervals when that is shorter)
CONNECT_TIMEOUT = 10.0

#: ``async resolver(host, port) -> [ip, ...]``; injectable for tests
Resolver = Callable[[str, int], Awaitable[Sequence[str]]]
SocketSpec = Union[str, Sequence[str]]


def max_streams_from(value: Optional[int], default: int) -> int:
    """``value`` when given, else ``$SLUICE_MAX_STREAMS`` (PROTOCOL.md 10.2:
    the operator sizes a worker without touching its code), else
    ``default``."""
    if value is None:
        raw = os.environ.get("SLUICE_MAX_STREAMS", "").strip()
        if not raw:
            return default
        try:
            value = int(raw)
        except ValueError:
            value = 0
        if not 1 <= value <= 65535:
            raise ConfigError(f"SLUICE_MAX_STREAMS={raw!r}: must be a whole number in 1..65535")
    return value


class ConfigError(ValueError):
    """A bad address list or TLS setting (reported at start)."""


@dataclass(frozen=True)
class Entry:
    """One entry of ``SLUICE_SOCKET``: ``kind`` is ``unix``, ``tcp`` or
    ``tls``; ``host`` is the path for ``unix``."""
    kind: str
    host: str
    port: int = 0
    text: str = ""

    @property
    def is_name(self) -> bool:
        """A host name (resolved, and again every resolve interval)."""
        return self.kind != "unix" and not _is_ip(self.host)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def parse_entry(text: str) -> Entry:
    """``PATH``, ``unix:PATH``, ``tcp:HOST:PORT``, ``tcp:[V6]:PORT``,
    ``tls:HOST:PORT`` or ``tls:[V6]:PORT``."""
    s = text.strip()
    for kind in ("tcp", "tls"):
        if s.startswith(kind + ":"):
            rest = s[4:]
            if rest.startswith("["):
                host, sep, port = rest[1:].partition("]:")
                if not sep or not _is_ip(host) or ":" not in host:
                    raise ConfigError(f"bad address {text!r}: expected {kind}:[IPV6]:PORT")
            else:
                host, sep, port = rest.rpartition(":")
                if not sep or not host or ":" in host:
                    raise ConfigError(f"bad address {text!r}: expected {kind}:HOST:PORT "
                                      "(an IPv6 address in brackets)")
            if not port.isdigit() or not 1 <= int(port) <= 65535:
                raise ConfigError(f"bad address {text!r}: the port must be in 1..65535")
            return Entry(kind, host, int(port), s)
    path = s[5:] if s.startswith("unix:") else s
    if not path:
        raise ConfigError(f"bad address {text!r}: empty path")
    return Entry("unix", path, 0, s)


def parse_addresses(spec: SocketSpec) -> list[Entry]:
    """A comma-separated list (or a sequence of such lists); spaces around
    entries and empty entries are ignored."""
    parts = spec.split(",") if isinstance(spec, str) else [p for s in spec for p in s.split(",")]
    entries = [parse_entry(p) for p in parts if p.strip()]
    if not entries:
        raise ConfigError("no gateway address")
    return entries


def is_remote(entries: Sequence[Entry]) -> bool:
    return len(entries) > 1 or any(e.kind != "unix" for e in entries)


@dataclass
class Settings:
    """Remote-mode options; each defaults to its environment variable."""
    token: Optional[str] = None
    tls_ca: Optional[str] = None
    tls_cert: Optional[str] = None
    tls_key: Optional[str] = None
    tls_server_name: Optional[str] = None
    resolve_interval: float = DEFAULT_RESOLVE_INTERVAL
    ping_interval: float = DEFAULT_PING_INTERVAL
    resolver: Optional[Resolver] = None
    rng: random.Random = field(default_factory=random.Random)

    @classmethod
    def from_options(cls, token: Optional[str] = None, tls_ca: Optional[str] = None,
                     tls_cert: Optional[str] = None, tls_key: Optional[str] = None,
                     tls_server_name: Optional[str] = None, resolve_interval: Optional[float] = None,
                     resolver: Optional[Resolver] = None, rng: Optional[random.Random] = None,
                     env: Optional[dict] = None, ping_interval: Optional[float] = None) -> "Settings":
        e = os.environ if env is None else env

        def pick(value: Optional[str], name: str) -> Optional[str]:
            return value if value is not None else (e.get(name) or None)

        def seconds(name: str, default: float) -> float:
            raw = e.get(name) or ""
            try:
                v = float(raw) if raw.strip() else default
            except ValueError:
                v = float("nan")
            if v != v:
                raise ConfigError(f"{name}={raw!r} is not a number of seconds")
            return v

        interval = resolve_interval
        if interval is None:
            interval = seconds("SLUICE_RESOLVE_INTERVAL", DEFAULT_RESOLVE_INTERVAL)
        # the variable is at least 1 s; the option may be less (for tests)
        ping = ping_interval
        if ping is None:
            ping = max(1.0, seconds("SLUICE_PING_INTERVAL", DEFAULT_PING_INTERVAL))
        elif not ping > 0:
            raise ConfigError(f"ping_interval={ping!r}: must be a positive number of seconds")
        s = cls(token=pick(token, "SLUICE_TOKEN") or None, tls_ca=pick(tls_ca, "SLUICE_TLS_CA"),
                tls_cert=pick(tls_cert, "SLUICE_TLS_CERT"), tls_key=pick(tls_key, "SLUICE_TLS_KEY"),
                tls_server_name=pick(tls_server_name, "SLUICE_TLS_SERVER_NAME"),
                resolve_interval=max(1.0, interval), ping_interval=float(ping), resolver=resolver,
                rng=rng or random.Random())
        if (s.tls_cert is None) != (s.tls_key is None):
            raise ConfigError("a TLS client certificate needs both SLUICE_TLS_CERT and SLUICE_TLS_KEY "
                              "(tls_cert and tls_key), or neither")
        return s

    @property
    def handshake_timeout(self) -> float:
        """The bound on connect + TLS + HELLO of one attempt."""
        return min(CONNECT_TIMEOUT, SILENT_INTERVALS * self.ping_interval)

    def ssl_context(self) -> ssl.SSLContext:
        """TLS 1.2+, ALPN ``sluice/1``, the gateway's certificate verified
        (there is no way to turn that off), our certificate if we have one."""
        try:
            ctx = ssl.create_default_context(cafile=self.tls_ca)
            if self.tls_cert is not None:
                ctx.load_cert_chain(self.tls_cert, self.tls_key)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"TLS settings: {exc}") from None
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.set_alpn_protocols([ALPN])
        return ctx


class Backoff:
    """Reconnect delay of one address: from 100 ms, doubling per
    consecutive failure up to 2 s; each wait drawn in [delay/2, delay] so
    that workers restarted together do not reconnect in step."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.delay = BACKOFF_START

    def next_wait(self) -> float:
        d = self.delay
        self.delay = min(d * 2, BACKOFF_CAP)
        return self.rng.uniform(d / 2, d)

    def reset(self) -> None:
        self.delay = BACKOFF_START


class Capacity:
    """``max_streams`` across all links: the streams open are those of the
    cores in ``cores`` (no per-request bookkeeping to get wrong when a link
    dies with handlers still running)."""

    def __init__(self, max_streams: int) -> None:
        self.max_streams = max_streams
        self.cores: set = set()

    def full(self) -> bool:
        return sum(len(c.requests) for c in self.cores) >= self.max_streams


class Target:
    """One address (one link at a time): an IP and port, or a Unix path."""

    def __init__(self, remote: "Remote", entry: Entry, addr: str) -> None:
        self.remote = remote
        self.entry = entry
        self.addr = addr
        self.key = (entry.kind, addr, entry.port)
        self.wanted = True
        self.backoff = Backoff(remote.settings.rng)
        self.core: Any = None          # the WorkerCore of the link being opened or up
        self.attached = False          # that link completed its handshake
        self.quiet = False             # loss or failure logged; quiet until attached again
        self.silent = False            # the link was closed for its silence (logged as such)
        self.handle: Any = None        # the backend's task / cancel scope

    @property
    def server_name(self) -> str:
        """What a TLS link verifies (and sends as SNI when it is a name)."""
        return self.remote.settings.tls_server_name or self.entry.host

    def __str__(self) -> str:
        e = self.entry
        if e.kind == "unix":
            return f"unix:{self.addr}"
        a = f"[{self.addr}]" if ":" in self.addr else self.addr
        name = f" ({e.host})" if e.is_name else ""
        return f"{e.kind}:{a}:{e.port}{name}"

    # -- hooks called by WorkerCore ---------------------------------------------
    def on_hello(self, core: Any) -> None:
        self.attached = True
        self.backoff.reset()
        hello = core.hello.settings if core.hello is not None else {}
        log.info("sluice: attached to %s (pool %s, worker id %s)", self, hello.get("pool", "?"),
                 hello.get("worker_id", "?"))
        self.quiet = False
        self.remote._attached(self)

    def on_auth(self, core: Any) -> None:
        log.error("sluice: %s refused our token (ERROR auth); stopping", self)
        self.remote.auth_failed = True
        self.remote.shutdown()


class Liveness:
    """PINGs on one attached link, and its close when nothing at all has
    arrived on it for SILENT_INTERVALS intervals (a gateway host gone
    without a close). The backend calls ``step()`` once the link is
    attached, then again after each wait it returns, until it returns None.
    Times are ``time.monotonic()``, like ``WorkerCore.arrived``."""

    def __init__(self, target: Target, core: Any, interval: float) -> None:
        self.target = target
        self.core = core
        self.interval = interval
        self.opaque = 0
        self.next_ping = time.monotonic() + interval

    def step(self) -> Optional[float]:
        core = self.core
        if core.closed:
            return None
        now = time.monotonic()
        limit = SILENT_INTERVALS * self.interval
        silent = now - core.arrived
        if silent >= limit:
            log.warning("sluice: gateway %s silent for %.3gs: link closed", self.target, silent)
            self.target.silent = True
            core.runtime.abort()  # it may not read: nothing more to send
            return None
        if now >= self.next_ping:
            self.opaque += 1
            core.conn.ping(self.opaque)
            core.runtime.flush()
            self.next_ping = now + self.interval
        return max(0.0, min(self.next_ping, core.arrived + limit) - now)


class Remote:
    """The state of a worker in remote mode; backends implement the I/O
    hooks at the bottom."""

    def __init__(self, entries: Sequence[Entry], settings: Settings, max_streams: int,
                 grace: float) -> None:
        self.entries = list(entries)
        self.settings = settings
        self.grace = grace
        self.capacity = Capacity(max_streams)
        self.targets: dict[tuple, Target] = {}
        self.stopping = False
        self.stopped_hard = False
        self.auth_failed = False
        self.ssl: Optional[ssl.SSLContext] = None
        if any(e.kind == "tls" for e in entries):
            self.ssl = settings.ssl_context()

    @property
    def status(self) -> int:
        return 1 if self.auth_failed else 0

    def fixed(self) -> list[Target]:
        """Targets of entries that need no resolution."""
        return self._add(e for e in self.entries if not e.is_name)

    def _add(self, entries: Iterable[Entry], addrs: Optional[dict] = None) -> list[Target]:
        new = []
        for e in entries:
            for a in (addrs or {}).get(e, [e.host]):
                t = self.targets.get((e.kind, a, e.port))
                if t is None:
                    t = self.targets[(e.kind, a, e.port)] = Target(self, e, a)
                    new.append(t)
                elif not t.wanted:
                    t.wanted = True
                    if t.handle is None:
                        new.append(t)
        return new

    def resolved(self, answers: dict) -> list[Target]:
        """``answers``: name entry -> its addresses (entries whose resolution
        failed are absent: their last answer stands). Marks vanished
        addresses unwanted; returns the targets to start."""
        current = {(e.kind, a, e.port) for e, addrs in answers.items() for a in addrs}
        named = {e for e in self.entries if e.is_name}
        for t in self.targets.values():
            if t.entry in named and t.entry in answers and t.key not in current:
                # several entries may name the same address: it is gone only
                # when no answer has it
                if t.wanted:
                    log.info("sluice: %s is no longer in the answer for %s", t, t.entry.host)
                t.wanted = False
        return self._add([e for e in self.entries if e in answers], answers)

    # A target's handle is its backend's task (asyncio) or cancel scope
    # (trio): both stop with cancel().
    def _abort(self, t: Target) -> None:
        t.handle.cancel()

    def _close_all(self) -> None:
        for t in self.live():
            if t.core is not None and t.attached:
                t.core.runtime.close()
            else:
                t.handle.cancel()

    def names(self) -> list[Entry]:
        return [e for e in self.entries if e.is_name]

    async def resolve_all(self, resolve: Callable[[str, int], Awaitable[Sequence[str]]]) -> list[Target]:
        """Resolve every name once with the backend's ``resolve`` (host,
        port -> addresses); a failure keeps that name's last answer. Returns
        the targets to start."""
        answers = {}
        for e in self.names():
            try:
                addrs = unique(await resolve(e.host, e.port))
                if not addrs:
                    raise OSError("no address")
                answers[e] = addrs
            except Exception as exc:
                log.warning("sluice: cannot resolve %s: %s; keeping its last addresses", e.host, exc)
        return [] if self.stopping else self.resolved(answers)

    def should_connect(self, t: Target) -> bool:
        return t.wanted and not self.stopping

    def connect_failed(self, t: Target, exc: BaseException) -> Optional[float]:
        """A connect, TLS handshake or HELLO failed: the wait before trying
        again, or None to give up (stopping, or the address is gone)."""
        if not t.quiet:
            log.warning("sluice: cannot attach to %s: %s; retrying", t, _describe(exc))
            t.quiet = True
        return self._retry(t)

    def link_ended(self, t: Target) -> Optional[float]:
        """The link closed (after DRAIN or not)."""
        t.core = None
        if t.silent:
            t.silent = False
            t.quiet = False
        elif t.attached and not self.stopping:
            log.warning("sluice: link to %s lost; reconnecting", t)
            t.quiet = False  # the first failed reconnect is logged too
        elif not t.attached and not t.quiet and not self.stopping:
            log.warning("sluice: %s closed the link during the handshake; retrying", t)
            t.quiet = True
        t.attached = False
        return self._retry(t)

    def _retry(self, t: Target) -> Optional[float]:
        if not self.should_connect(t):
            return None
        return t.backoff.next_wait()

    def target_done(self, t: Target) -> None:
        t.handle = None
        t.core = None
        t.attached = False
        if not t.wanted and self.targets.get(t.key) is t:
            del self.targets[t.key]
        self.check_done()

    def live(self) -> list[Target]:
        return [t for t in self.targets.values() if t.handle is not None]

    # -- stopping --------------------------------------------------------------------
    def shutdown(self) -> None:
        """SIGTERM / SIGINT / ERROR auth: RETIRE on every attached link, drop
        the others; a second call closes everything at once."""
        if self.stopping:
            if not self.stopped_hard:
                self.stopped_hard = True
                log.warning("sluice: second signal; closing every link now")
                self._close_all()
            return
        self.stopping = True
        n = sum(len(c.requests) for c in self.capacity.cores)
        log.info("sluice: shutting down; retiring %d link(s), finishing %d request(s)",
                 sum(1 for t in self.targets.values() if t.attached), n)
        for t in list(self.targets.values()):
            if t.attached and t.core is not None:
                t.core.retire("shutting down")
            elif t.handle is not None:
                self._abort(t)
        self._stop_resolving()
        self._start_grace()
        self.check_done()

    def grace_over(self) -> None:
        left = sum(len(c.requests) for c in self.capacity.cores)
        log.warning("sluice: grace period over; closing every link with %d request(s) open", left)
        self._close_all()

    def check_done(self) -> None:
        if self.stopping and not self.live():
            self._done()

    # -- I/O hooks ---------------------------------------------------------------------
    def _attached(self, t: Target) -> None:
        """``t``'s link completed its handshake."""

    def _stop_resolving(self) -> None:
        raise NotImplementedError

    def _start_grace(self) -> None:
        raise NotImplementedError

    def _done(self) -> None:
        raise NotImplementedError


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError) or type(exc).__name__ in ("TimeoutError", "TooSlowError"):
        return "timed out"
    return str(exc) or type(exc).__name__


def unique(addrs: Iterable[str]) -> list[str]:
    """Addresses in order, each once (getaddrinfo repeats them per socket
    type and protocol)."""
    seen: dict[str, None] = {}
    for a in addrs:
        seen.setdefault(a.split("%", 1)[0], None)
    return list(seen)


class Shutdown:
    """A handle to stop a worker from another thread or from code that does
    not send signals: ``trigger()`` acts like SIGTERM (a second call like a
    second SIGTERM). Pass it as ``serve(..., shutdown=handle)``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._fire: Optional[Callable[[], None]] = None
        self._pending = 0

    def trigger(self) -> None:
        with self._lock:
            fire = self._fire
            if fire is None:
                self._pending += 1
                return
        fire()

    def _bind(self, fire: Optional[Callable[[], None]]) -> None:
        """The backend's thread-safe trigger (None: unbind)."""
        with self._lock:
            self._fire = fire
            pending, self._pending = self._pending, 0
        if fire is not None:
            for _ in range(pending):
                fire()
