"""A FastAPI app with WebSocket endpoints, written as FastAPI's documentation
shows, with nothing sluice-specific in it. test_ws_apps.py runs it behind the
gateway with `python -m sluice.asgi fastapi_ws:app`.

    /ws/echo                 echo text and bytes; the WebSocketDisconnect
                             code the app saw is kept for /seen and printed
    /ws/json                 receive_json -> send_json({"got": obj, "n": i})
    /ws/items/{item_id}?q=   path and query params, a request header and a
                             cookie, sent back as JSON; the 101 carries x-app
    /ws/proto                accepts subprotocol "v2" if offered, else "v1"
                             if offered, else none; sends what it chose
    /ws/guarded?token=       a dependency refuses without token=secret
                             (WebSocketException 1008: the client gets 403)
    /ws/bye                  after the first message, close 4003 "go away"
    /ws/room                 broadcast to every connection of this worker
    /ws/big                  replies with len and a checksum, then echoes
    GET /seen                the disconnect codes the app saw, as JSON
"""

import hashlib
import sys

from fastapi import (Cookie, Depends, FastAPI, Header, WebSocket, WebSocketDisconnect,
                     WebSocketException, status)

app = FastAPI()
seen = []          # (endpoint, code) of every WebSocketDisconnect caught
room = set()


@app.get("/seen")
async def get_seen():
    return {"seen": seen}


@app.websocket("/ws/echo")
async def echo(websocket: WebSocket):
    await websocket.accept()
    try:
        while True:
            msg = await websocket.receive()
            if msg["type"] == "websocket.disconnect":
                raise WebSocketDisconnect(msg.get("code", 1000), msg.get("reason"))
            if msg.get("text") is not None:
                await websocket.send_text(msg["text"])
            else:
                await websocket.send_bytes(msg["bytes"])
    except WebSocketDisconnect as exc:
        seen.append(["echo", exc.code, exc.reason or ""])
        # also on stderr (the gateway's log): /seen is gone once it stops
        print(f"fastapi_ws: echo disconnect {exc.code}", file=sys.stderr, flush=True)


@app.websocket("/ws/json")
async def json_ws(websocket: WebSocket):
    await websocket.accept()
    n = 0
    try:
        while True:
            obj = await websocket.receive_json()
            n += 1
            await websocket.send_json({"got": obj, "n": n})
    except WebSocketDisconnect as exc:
        seen.append(["json", exc.code, exc.reason or ""])


@app.websocket("/ws/items/{item_id}")
async def items(websocket: WebSocket, item_id: int, q: str | None = None,
                x_test: str | None = Header(default=None),
                session: str | None = Cookie(default=None)):
    await websocket.accept(headers=[(b"x-app", b"fastapi")])
    await websocket.send_json({"item_id": item_id, "q": q, "x_test": x_test, "session": session,
                               "scheme": websocket.url.scheme, "path": websocket.url.path})
    await websocket.close()


@app.websocket("/ws/proto")
async def proto(websocket: WebSocket):
    offered = websocket.scope["subprotocols"]
    chosen = next((p for p in ("v2", "v1") if p in offered), None)
    await websocket.accept(subprotocol=chosen)
    await websocket.send_json({"offered": offered, "chosen": chosen})
    await websocket.close()


def require_token(token: str = ""):
    if token != "secret":
        raise WebSocketException(code=status.WS_1008_POLICY_VIOLATION, reason="bad token")
    return token


@app.websocket("/ws/guarded")
async def guarded(websocket: WebSocket, token: str = Depends(require_token)):
    await websocket.accept()
    await websocket.send_text(f"welcome {token}")
    await websocket.close()


@app.websocket("/ws/bye")
async def bye(websocket: WebSocket):
    await websocket.accept()
    first = await websocket.receive_text()
    await websocket.send_text(f"last: {first}")
    await websocket.close(code=4003, reason="go away")


@app.websocket("/ws/room")
async def room_ws(websocket: WebSocket, name: str = "anon"):
    await websocket.accept()
    room.add(websocket)
    try:
        while True:
            text = await websocket.receive_text()
            for other in list(room):
                await other.send_text(f"{name}: {text}")
    except WebSocketDisconnect as exc:
        seen.append(["room", exc.code, exc.reason or ""])
    finally:
        room.discard(websocket)


@app.websocket("/ws/big")
async def big(websocket: WebSocket):
    await websocket.accept()
    try:
        while True:
            data = await websocket.receive_bytes()
            await websocket.send_json({"len": len(data), "sha256": hashlib.sha256(data).hexdigest()})
            await websocket.send_bytes(data)
    except WebSocketDisconnect as exc:
        seen.append(["big", exc.code, exc.reason or ""])
