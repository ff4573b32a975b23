"""Command line: ``python -m sluice[.asgi|.wsgi] [options] module:app``.

The gateway spawns this command with ``SLUICE_SOCKET`` set; the options pick
the interface (native, ASGI, WSGI), concurrency and event loop. Startup
problems (bad import path, missing attribute, not callable, a loop that is
not installed) are reported in one readable line and exit with status 2,
before any connection is made, so they show up clearly in the gateway log.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from typing import Any, Optional, Sequence

from ._core import DEFAULT_MAX_STREAMS, websocket_handler
from ._remote import ConfigError, Settings, max_streams_from, parse_addresses

DEFAULT_THREADS = 8


class AppLoadError(Exception):
    """The application could not be loaded; the message says why."""


def load_app(path: str, app_dir: Optional[str] = None) -> Any:
    """Import ``module:attr`` (``attr`` may be dotted; default ``app``).

    ``app_dir`` (default: the current directory) is put first on
    ``sys.path``, as the application's own modules are usually there."""
    module_name, _, attr = path.partition(":")
    attr = attr or "app"
    if not module_name:
        raise AppLoadError(f"bad application path {path!r}: expected 'module:attribute'")
    if app_dir is not None:
        d = os.path.abspath(app_dir)
        if not os.path.isdir(d):
            raise AppLoadError(f"--app-dir {app_dir!r} is not a directory")
        sys.path.insert(0, d)
    elif "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        obj: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise AppLoadError(f"cannot import module {module_name!r}: {exc}") from None
        raise AppLoadError(f"error while importing {module_name!r}: {exc!r}") from exc
    except Exception as exc:
        raise AppLoadError(f"error while importing {module_name!r}: {exc!r}") from exc
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise AppLoadError(f"module {module_name!r} has no attribute {attr!r}") from None
    if not callable(obj):
        raise AppLoadError(f"{path!r} is not callable (it is a {type(obj).__name__})")
    return obj


def _size(text: str) -> int:
    t = text.strip().lower()
    mult = 1
    for suffix, m in (("k", 1024), ("m", 1024 ** 2), ("g", 1024 ** 3)):
        if t.endswith(suffix):
            t, mult = t[:-1], m
            break
    try:
        return int(t) * mult
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {text!r}") from None


def build_parser(interface: Optional[str]) -> argparse.ArgumentParser:
    prog = "python -m sluice" + (f".{interface}" if interface and interface != "native" else "")
    p = argparse.ArgumentParser(
        prog=prog,
        description="Run a Python application as a sluice worker (started by the gateway, "
                    "which sets SLUICE_SOCKET).")
    p.add_argument("app", help="the application, as module:attribute")
    p.add_argument("--app-dir", default=None, metavar="DIR",
                   help="look for the application's module in DIR (default: the current directory)")
    if interface is None:
        p.add_argument("--interface", choices=("native", "asgi", "wsgi"), default="native",
                       help="how the application is called (default: native)")
    p.add_argument("--max-streams", "-c", type=int, default=None, metavar="N",
                   help=f"requests served at once (default $SLUICE_MAX_STREAMS, else {DEFAULT_MAX_STREAMS}; "
                        "WSGI: --threads)")
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="WSGI thread pool size, which is also max_streams (default $SLUICE_MAX_STREAMS, "
                        f"else {DEFAULT_THREADS})")
    p.add_argument("--loop", choices=("auto", "asyncio", "uvloop", "trio"), default="auto",
                   help="event loop (default auto: uvloop when installed, else asyncio)")
    p.add_argument("--log-level", default="info",
                   choices=("critical", "error", "warning", "info", "debug"))
    p.add_argument("--socket", default=None,
                   help="gateway address: PATH, unix:PATH, tcp:HOST:PORT or tls:HOST:PORT, or several "
                        "separated by commas to attach to every gateway (default $SLUICE_SOCKET)")
    p.add_argument("--tls-ca", default=None, metavar="FILE",
                   help="tls: addresses: CA certificates (PEM) the gateway's certificate must chain to "
                        "(default $SLUICE_TLS_CA, else the system's trust store)")
    p.add_argument("--tls-cert", default=None, metavar="FILE",
                   help="tls: addresses: client certificate (PEM) shown to the gateway "
                        "(default $SLUICE_TLS_CERT; needs --tls-key)")
    p.add_argument("--tls-key", default=None, metavar="FILE",
                   help="the client certificate's private key (default $SLUICE_TLS_KEY)")
    p.add_argument("--tls-server-name", default=None, metavar="NAME",
                   help="tls: addresses: name checked in the gateway's certificate and sent as SNI "
                        "instead of the address's host (default $SLUICE_TLS_SERVER_NAME)")
    p.add_argument("--resolve-interval", type=float, default=None, metavar="SECONDS",
                   help="seconds between resolutions of the host names in the address list "
                        "(default $SLUICE_RESOLVE_INTERVAL, else 10; at least 1)")
    p.add_argument("--ping-interval", type=float, default=None, metavar="SECONDS",
                   help="remote mode: seconds between PINGs on each link; a link silent for 3 "
                        "intervals is closed and reopened (default $SLUICE_PING_INTERVAL, else 5; "
                        "at least 1)")
    p.add_argument("--window", type=_size, default=256 * 1024, metavar="SIZE",
                   help="request-body credit of a stream being read (default 256k)")
    p.add_argument("--body-buffer", type=_size, default=64 * 1024 ** 2, metavar="SIZE",
                   help="request-body bytes buffered at most for all streams together; streams "
                        "start with a smaller window when max-streams x window exceeds it "
                        "(default 64m)")
    p.add_argument("--grace", type=float, default=30.0, metavar="SECONDS",
                   help="on SIGTERM, longest wait for in-flight requests (default 30)")
    p.add_argument("--lifespan", choices=("auto", "on", "off"), default="auto",
                   help="ASGI lifespan protocol (default auto)")
    p.add_argument("--websocket", action=argparse.BooleanOptionalAction, default=None,
                   help="take WebSockets: announced by default for ASGI, and for a native app "
                        "that has a WebSocket handler (app.websocket); never for WSGI")
    return p


def main(argv: Optional[Sequence[str]] = None, interface: Optional[str] = None) -> int:
    parser = build_parser(interface)
    args = parser.parse_args(argv)
    iface = interface or args.interface
    logging.basicConfig(level=args.log_level.upper(),
                        format=f"[worker {os.environ.get('SLUICE_WORKER_ID', '?')} pid %(process)d] "
                               "%(levelname)s %(message)s")
    try:
        app = load_app(args.app, args.app_dir)
    except AppLoadError as exc:
        print(f"sluice: error: {exc}", file=sys.stderr)
        return 2
    try:
        if iface == "wsgi":
            explicit = args.threads if args.max_streams is None else args.max_streams
            max_streams = max_streams_from(explicit, DEFAULT_THREADS)
        else:
            max_streams = max_streams_from(args.max_streams, DEFAULT_MAX_STREAMS)
    except ConfigError as exc:
        print(f"sluice: error: {exc}", file=sys.stderr)
        return 2
    if not 1 <= max_streams <= 65535:
        print("sluice: error: --max-streams must be in 1..65535", file=sys.stderr)
        return 2
    if not (os.environ.get("SLUICE_SOCKET") or args.socket):
        print("sluice: error: no gateway socket: run this under the sluice gateway "
              "(it sets SLUICE_SOCKET) or pass --socket", file=sys.stderr)
        return 2
    if iface == "wsgi" and args.websocket:
        print("sluice: error: --websocket: WSGI applications cannot take WebSockets", file=sys.stderr)
        return 2
    remote = dict(tls_ca=args.tls_ca, tls_cert=args.tls_cert, tls_key=args.tls_key,
                  tls_server_name=args.tls_server_name, resolve_interval=args.resolve_interval,
                  ping_interval=None if args.ping_interval is None else max(1.0, args.ping_interval))
    try:  # configuration errors before anything starts, like the others above
        entries = parse_addresses(args.socket or os.environ.get("SLUICE_SOCKET", ""))
        settings = Settings.from_options(**remote)
        if any(e.kind == "tls" for e in entries):
            settings.ssl_context()
    except ConfigError as exc:
        print(f"sluice: error: {exc}", file=sys.stderr)
        return 2
    opts = dict(socket=args.socket, max_streams=max_streams, window=args.window,
                body_buffer=args.body_buffer, grace=args.grace, **remote)
    try:
        if iface == "native":
            try:
                websocket_handler(app, args.websocket)
            except RuntimeError as exc:
                print(f"sluice: error: {exc}", file=sys.stderr)
                return 2
            if args.loop == "trio":
                from ._trio import run_native as run_trio
                return run_trio(app, websocket=args.websocket, **opts)
            from ._asyncio import run_native
            return run_native(app, loop=args.loop, websocket=args.websocket, **opts)
        if iface == "asgi":
            if args.loop == "trio":
                print("sluice: error: the ASGI adapter runs on asyncio/uvloop (use --loop asyncio or uvloop)",
                      file=sys.stderr)
                return 2
            from .asgi import run_asgi
            return run_asgi(app, loop=args.loop, lifespan=args.lifespan,
                            websocket=args.websocket is not False, **opts)
        from .wsgi import run_wsgi
        return run_wsgi(app, threads=max_streams, loop="asyncio" if args.loop == "trio" else args.loop,
                        **opts)
    except ImportError as exc:
        print(f"sluice: error: {exc}", file=sys.stderr)
        return 2
    except (RuntimeError, OSError) as exc:
        print(f"sluice: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 1
