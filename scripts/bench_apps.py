"""Applications for scripts/bench that clients/python/bench/hello_apps.py
does not have (the hello-world apps come from there).

``sleep_native`` / ``sleep_asgi``: ``await asyncio.sleep(0.05)``, then
``200 Hello, world!\\n`` (the sluice native API; a bare ASGI 3 app for
sluice.asgi, uvicorn and Granian). ``starlette_app``: the same hello world
as a one-route Starlette app. ``wsgi_hello``: hello_apps' bare WSGI hello
world under the name uWSGI's Python plugin (which runs outside .venv) loads.

aiohttp has no separate server to run an app with, so this file also starts
it, on uvloop like the other asyncio servers here::

    python scripts/bench_apps.py aiohttp PORT [hello|sleep]
"""

import asyncio
import os
import sys

# the hello worlds themselves (clients/python/bench/hello_apps.py)
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "clients", "python", "bench"))
from hello_apps import _BODY, _START, BODY, wsgi as wsgi_hello  # noqa: E402,F401

SLEEP = 0.05


async def sleep_asgi(scope, receive, send):
    if scope["type"] != "http":
        return
    await asyncio.sleep(SLEEP)
    await send(_START)
    await send(_BODY)


try:
    from sluice import Response
except ImportError:  # under uWSGI's own Python only wsgi_hello is used
    Response = None
else:
    _HELLO = Response(BODY, headers={"content-type": "text/plain"})

    async def sleep_native(request):
        await asyncio.sleep(SLEEP)
        return _HELLO


def _starlette():
    try:
        from starlette.applications import Starlette
        from starlette.responses import PlainTextResponse
        from starlette.routing import Route
    except ImportError:
        return None

    async def hello(request):
        return PlainTextResponse("Hello, world!\n")
    return Starlette(routes=[Route("/", hello)])


starlette_app = _starlette()


def run_aiohttp(port: int, kind: str) -> None:
    import uvloop
    from aiohttp import web

    async def hello(request):
        return web.Response(body=BODY, content_type="text/plain")

    async def sleep(request):
        await asyncio.sleep(SLEEP)
        return web.Response(body=BODY, content_type="text/plain")

    app = web.Application()
    app.router.add_get("/", sleep if kind == "sleep" else hello)
    uvloop.install()
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


if __name__ == "__main__":
    if len(sys.argv) < 3 or sys.argv[1] != "aiohttp":
        sys.exit("usage: bench_apps.py aiohttp PORT [hello|sleep]")
    run_aiohttp(int(sys.argv[2]), sys.argv[3] if len(sys.argv) > 3 else "hello")
