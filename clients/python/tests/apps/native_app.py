"""Native-API test application (asyncio and trio alike: it only uses the
sluice API, plus a runtime-neutral sleep)."""

import hashlib
import json
import os

from sluice import Response

TMP = os.environ.get("PYTEST_SLUICE_TMP", "/tmp")
STATS: dict = {}


async def sleep(seconds: float) -> None:
    try:
        import sniffio
        lib = sniffio.current_async_library()
    except Exception:
        lib = "asyncio"
    if lib == "trio":
        import trio
        await trio.sleep(seconds)
    else:
        import asyncio
        await asyncio.sleep(seconds)


def marker(name: str, text: str) -> None:
    with open(os.path.join(TMP, name), "w") as f:
        f.write(text)


async def app(request):
    path = request.path
    if path == "/hello":
        return Response("hello\n")
    if path == "/info":
        return Response(json.dumps({
            "method": request.method, "path": path, "query": request.query,
            "query_params": request.query_params,
            "multi": request.headers.getall("X-Multi"),
            "agent": request.headers.get("user-agent"),
            "has_multi": "x-MULTI" in request.headers,
            "client": list(request.client), "http_version": request.http_version,
            "pid": os.getpid(),
        }), headers={"x-reply": "1"}, content_type="application/json")
    if path == "/pid":
        return Response(str(os.getpid()))
    if path == "/body":
        body = await request.body()
        return Response(json.dumps({"n": len(body), "sha": hashlib.sha256(body).hexdigest()}))
    if path == "/sha":
        request.stream.max_size = 1 << 40
        h = hashlib.sha256()
        n = 0
        async for chunk in request.stream:
            h.update(chunk)
            n += len(chunk)
        return Response(json.dumps({"n": n, "sha": h.hexdigest()}))
    if path == "/small-limit":
        request.stream.max_size = 10
        body = await request.body()
        return Response(b"got %d" % len(body))
    if path == "/echo":
        resp = await request.respond(200, {"content-type": "application/octet-stream"})
        async for chunk in request.stream:
            await resp.send(chunk)
        await resp.end()
        return None
    if path == "/auth":
        # refuse without ever reading (or granting credit for) the body
        return Response("no\n", status=401)
    if path == "/big":
        n = int(request.query_params[0][1])
        chunk = b"x" * 65536
        resp = await request.respond(200, [("content-type", "application/octet-stream"),
                                           ("content-length", str(n))])
        sent = 0
        while sent < n:
            k = min(len(chunk), n - sent)
            await resp.send(chunk[:k])
            sent += k
            STATS["sent"] = sent
        await resp.end()
        return None
    if path == "/stats":
        return Response(json.dumps(STATS))
    if path == "/slow":
        name = request.query or "slow"
        try:
            await sleep(30)
        except BaseException:
            marker(name, f"cancelled disconnected={request.disconnected} reason={request.cancel_reason}")
            raise
        return Response("late\n")
    if path == "/delay":
        await sleep(float(request.query or "1"))
        return Response("done\n")
    if path == "/task":
        # asyncio only: the handler's task as the handler sees it, before its
        # first wait (an eagerly started task must already be current) and after
        import asyncio
        before = asyncio.current_task()
        timeout = getattr(asyncio, "timeout", None)  # 3.11+
        if timeout is not None:
            async with timeout(5):
                await asyncio.sleep(0.01)
        else:
            await asyncio.sleep(0.01)
        return Response(json.dumps({"task": before is not None, "same": before is asyncio.current_task()}))
    if path == "/boom":
        raise ValueError("boom")
    if path == "/none":
        return None
    if path == "/trailers":
        resp = await request.respond(200)
        await resp.send("part")
        await resp.end()
        return None
    return Response("not found\n", status=404)
