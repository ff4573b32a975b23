"""The sluice native API with a WebSocket handler, using nothing but the
library's own awaitables so the same app runs on asyncio, uvloop and trio
(`python -m sluice --loop asyncio|trio native_ws:app`).

    GET /                    200 "plain"
    /echo (WebSocket)        accept; echo every message; at the end reply to
                             nothing, but keep (code, reason) for /seen
    /auth (WebSocket)        401 without an authorization header; else
                             accept (subprotocol "chat" if offered) and send
                             "hello <authorization>"
    /close?code=&reason=     accept, receive one message, close with them
    /ping                    accept; ask the gateway to ping the client with
                             b"native"; then echo
    /big?max=N               max_message = N (LIMIT), accept, reply with the
                             length of each message
    GET /seen                the close codes seen by /echo, as JSON lines
"""

import json

from sluice import Response

seen = []


async def app(request):
    if request.path == "/seen":
        return Response(json.dumps(seen), headers={"content-type": "application/json"})
    return Response("plain\n")


def _param(ws, name, default):
    return dict(ws.query_params).get(name, default)


async def ws_handler(websocket):
    path = websocket.path
    if path == "/echo":
        await websocket.accept()
        async for message in websocket:
            await websocket.send(message)
        seen.append([websocket.close_code, websocket.close_reason])
        return
    if path == "/auth":
        auth = websocket.headers.get("authorization")
        if auth is None:
            return Response("log in first\n", status=401)
        await websocket.accept(subprotocol="chat" if "chat" in websocket.subprotocols else None)
        await websocket.send(f"hello {auth} over {websocket.scheme}")
        async for message in websocket:
            await websocket.send(message)
        return
    if path == "/close":
        await websocket.accept()
        first = await websocket.receive()
        await websocket.send(f"closing after {first!r}")
        await websocket.close(int(_param(websocket, "code", "1000")), _param(websocket, "reason", ""))
        return
    if path == "/ping":
        await websocket.accept()
        await websocket.ping(b"native")
        async for message in websocket:
            await websocket.send(message)
        return
    if path == "/big":
        websocket.max_message = int(_param(websocket, "max", str(1 << 20)))
        await websocket.accept()
        async for message in websocket:
            await websocket.send(str(len(message)))
        return
    return Response("no such WebSocket\n", status=404)


app.websocket = ws_handler
