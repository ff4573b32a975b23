"""A Starlette application served through the ASGI adapter.

    .venv/bin/pip install starlette      # see examples/python/README.md
    build/server/sluice -- .venv/bin/python -m sluice.asgi examples.python.starlette_app:app
"""

import asyncio
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.responses import JSONResponse, PlainTextResponse, StreamingResponse
from starlette.routing import Route


@asynccontextmanager
async def lifespan(app):
    # runs before the worker connects to the gateway, and after it drained
    yield {"started_at": asyncio.get_running_loop().time()}


async def home(request):
    return PlainTextResponse("Hello from Starlette behind sluice\n")


async def hello(request):
    return JSONResponse({"hello": request.path_params["name"], "query": dict(request.query_params)})


async def ticker(request):
    async def ticks():
        for i in range(10):
            yield f"tick {i}\n"
            await asyncio.sleep(0.2)
    return StreamingResponse(ticks(), media_type="text/plain")


async def upload(request):
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
    return JSONResponse({"received": size})


app = Starlette(routes=[
    Route("/", home),
    Route("/hello/{name}", hello),
    Route("/ticker", ticker),
    Route("/upload", upload, methods=["POST"]),
], lifespan=lifespan)
