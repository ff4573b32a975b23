"""The same "hello world" for every server in scripts/bench (section python).

``native``: the sluice native API. ``asgi``: a bare ASGI 3 app (served by
sluice.asgi, uvicorn and Granian). ``wsgi``: a bare WSGI app (sluice.wsgi and
gunicorn). No framework, so the servers' own per-request cost is measured.
"""

BODY = b"Hello, world!\n"

try:
    from sluice import Response
except ImportError:  # under uWSGI's own Python (scripts/bench_apps.py): asgi and wsgi only
    pass
else:
    _HELLO = Response(BODY, headers={"content-type": "text/plain"})

    async def native(request):
        return _HELLO


_START = {"type": "http.response.start", "status": 200,
          "headers": [(b"content-type", b"text/plain"), (b"content-length", b"14")]}
_BODY = {"type": "http.response.body", "body": BODY}


async def asgi(scope, receive, send):
    if scope["type"] != "http":
        return
    await send(_START)
    await send(_BODY)


def wsgi(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "14")])
    return [BODY]
