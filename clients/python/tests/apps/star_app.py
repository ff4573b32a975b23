"""A Starlette application for the ASGI tests."""

import asyncio
import hashlib
import os
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.responses import JSONResponse, PlainTextResponse, StreamingResponse
from starlette.routing import Route

TMP = os.environ.get("PYTEST_SLUICE_TMP", "/tmp")


@asynccontextmanager
async def lifespan(app):
    yield {"greeting": "hello from lifespan"}
    with open(os.path.join(TMP, "starlette-shutdown"), "w") as f:
        f.write("shutdown")


async def home(request):
    return PlainTextResponse(request.state.greeting)


async def user(request):
    return JSONResponse({"user": request.path_params["name"], "q": dict(request.query_params),
                         "client": request.client.host, "multi": request.headers.getlist("x-multi")})


async def echo_json(request):
    return JSONResponse({"got": await request.json()})


async def form(request):
    async with request.form() as f:
        out = {}
        for k, v in f.multi_items():
            out[k] = v if isinstance(v, str) else {"filename": v.filename, "size": len(await v.read())}
    return JSONResponse(out)


async def upload(request):
    h = hashlib.sha256()
    n = 0
    async for chunk in request.stream():
        h.update(chunk)
        n += len(chunk)
    return JSONResponse({"n": n, "sha": h.hexdigest()})


async def stream(request):
    async def gen():
        for i in range(100):
            yield f"line {i}\n".encode()
    return StreamingResponse(gen(), media_type="text/plain")


async def forever(request):
    async def gen():
        try:
            while True:
                yield b"x" * 1024
                await asyncio.sleep(0.01)
        finally:
            with open(os.path.join(TMP, "forever-stopped"), "w") as f:
                f.write("stopped")
    return StreamingResponse(gen(), media_type="application/octet-stream")


async def boom(request):
    raise RuntimeError("boom")


async def echo(request):
    # streams the body back as it arrives (the response starts before any read)
    return StreamingResponse(request.stream(), media_type="application/octet-stream")


async def auth(request):
    return PlainTextResponse("no\n", status_code=401)


app = Starlette(routes=[
    Route("/", home), Route("/users/{name}", user), Route("/json", echo_json, methods=["POST"]),
    Route("/form", form, methods=["POST"]), Route("/upload", upload, methods=["POST"]),
    Route("/stream", stream), Route("/forever", forever), Route("/boom", boom),
    Route("/echo", echo, methods=["POST"]), Route("/auth", auth, methods=["POST"]),
], lifespan=lifespan)
