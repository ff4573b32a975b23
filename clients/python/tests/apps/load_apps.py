"""Small apps for the concurrency, drain and Expect: 100-continue tests, in
each interface. The sleepy apps count how many requests are inside the
handler at once (one worker process: the counts are exact)."""

from native_app import sleep  # asyncio.sleep or trio.sleep, whichever runs
from sluice import Response

STATE = {"inside": 0, "max": 0}


def _enter() -> None:
    STATE["inside"] += 1
    if STATE["inside"] > STATE["max"]:
        STATE["max"] = STATE["inside"]


def _max_and_reset() -> bytes:
    m = STATE["max"]
    STATE["max"] = 0
    return b"%d" % m


async def native(request):
    """/sleep: 50 ms; /max: the most requests seen inside /sleep at once."""
    if request.path == "/max":
        return Response(_max_and_reset())
    _enter()
    try:
        await sleep(0.05)
    finally:
        STATE["inside"] -= 1
    return Response("ok\n")


async def _asgi_reply(send, status: int, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(body))]})
    await send({"type": "http.response.body", "body": body})


async def asgi(scope, receive, send):
    """/sleep, /max as above; /echo: a streaming echo that starts its
    response before reading; /auth: 401 without reading the body."""
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path == "/max":
        await _asgi_reply(send, 200, _max_and_reset())
        return
    if path == "/auth":
        await _asgi_reply(send, 401, b"no\n")
        return
    if path == "/echo":
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/octet-stream")]})
        # some frameworks flush the head before the body exists
        await send({"type": "http.response.body", "body": b"", "more_body": True})
        while True:
            msg = await receive()
            if msg["type"] != "http.request":
                return
            await send({"type": "http.response.body", "body": msg.get("body", b""),
                        "more_body": msg.get("more_body", False)})
            if not msg.get("more_body", False):
                return
    _enter()
    try:
        await sleep(0.05)
    finally:
        STATE["inside"] -= 1
    await _asgi_reply(send, 200, b"ok\n")


def wsgi(environ, start_response):
    """/: hello; /echo: streams the body back as it reads it; /auth: 401
    without reading the body."""
    path = environ["PATH_INFO"]
    if path == "/auth":
        start_response("401 Unauthorized", [("Content-Type", "text/plain"), ("Content-Length", "3")])
        return [b"no\n"]
    if path == "/echo":
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        inp = environ["wsgi.input"]

        def gen():
            while True:
                chunk = inp.read(65536)
                if not chunk:
                    return
                yield chunk
        return gen()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
    return [b"hello"]
