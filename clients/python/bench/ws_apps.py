"""The WebSocket echo of scripts/bench (section ws), one bare ASGI 3 app for
every server (sluice.asgi, uvicorn, Granian): each message comes back with
its type. A plain GET gets the hello world (so the app is also an ordinary
HTTP app); lifespan scopes are ignored. No framework, so the servers' own
per-message cost is measured.
"""

from hello_apps import _BODY, _START

_ACCEPT = {"type": "websocket.accept"}


async def asgi_echo(scope, receive, send):
    if scope["type"] == "http":
        await send(_START)
        await send(_BODY)
        return
    if scope["type"] != "websocket":
        return
    await receive()  # websocket.connect
    await send(_ACCEPT)
    while True:
        m = await receive()
        if m["type"] != "websocket.receive":
            return  # websocket.disconnect
        text = m.get("text")
        if text is not None:
            await send({"type": "websocket.send", "text": text})
        else:
            await send({"type": "websocket.send", "bytes": m.get("bytes") or b""})
