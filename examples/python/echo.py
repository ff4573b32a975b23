"""Streaming echo on the native API: the request body is sent back as it
arrives, with backpressure both ways (a client that uploads fast but reads
slowly slows its own upload down; memory stays at about one window).

    build/server/sluice -- .venv/bin/python -m sluice --loop trio examples.python.echo:app
    curl -T bigfile http://127.0.0.1:8080/ | cmp - bigfile
"""

import sys

from sluice import Response


async def app(request):
    if request.method not in ("POST", "PUT"):
        return Response("POST or PUT a body and it comes back\n", status=405,
                        headers={"allow": "POST, PUT"})
    # Accept uploads of any size on this endpoint (the gateway default is
    # 100 MiB): sent to the gateway as LIMIT before the first credit.
    request.stream.max_size = None
    resp = await request.respond(200, {"content-type": request.headers.get("content-type",
                                                                           "application/octet-stream")})
    async for chunk in request.stream:     # credit goes back only after each chunk is read
        await resp.send(chunk)             # waits for the gateway's credit
    await resp.end()


if __name__ == "__main__":
    import sluice
    sys.exit(sluice.run(app))
