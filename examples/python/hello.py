"""Hello world on the native API.

    build/server/sluice --listen 127.0.0.1:8080 -- .venv/bin/python -m sluice examples.python.hello:app
    # or, from this directory:
    build/server/sluice -- .venv/bin/python examples/python/hello.py
"""

import sys

from sluice import Response

# A Response built once is packed once: returning it costs almost nothing.
HELLO = Response("Hello, world!\n")


async def app(request):
    if request.path == "/":
        return HELLO
    name = request.path.strip("/")
    return Response(f"Hello, {name}! (you sent {request.method}, query {request.query!r})\n")


if __name__ == "__main__":
    import sluice
    sys.exit(sluice.run(app))
