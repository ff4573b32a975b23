"""Starlette and FastAPI WebSocket endpoints, written as their docs show
(no ``from __future__ import annotations``: FastAPI reads the annotations).
``events`` records what the endpoints saw, for the in-process tests."""

events: dict = {}


def record(key, value):
    events.setdefault(key, []).append(value)


def star_app():
    from starlette.applications import Starlette
    from starlette.endpoints import WebSocketEndpoint
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route, WebSocketRoute
    from starlette.websockets import WebSocket

    class Echo(WebSocketEndpoint):
        encoding = "text"

        async def on_connect(self, websocket):
            await websocket.accept(subprotocol="echo" if "echo" in websocket.scope["subprotocols"] else None)

        async def on_receive(self, websocket, data):
            await websocket.send_text("echo: " + data)

        async def on_disconnect(self, websocket, close_code):
            record("star-disconnect", close_code)

    async def denied(websocket: WebSocket):
        await websocket.send_denial_response(PlainTextResponse("go away", status_code=418))

    async def jsonws(websocket: WebSocket):
        await websocket.accept()
        async for obj in websocket.iter_json():
            await websocket.send_json({"got": obj})
            if obj == "bye":
                await websocket.close(code=4100)
                return

    async def home(request):
        return PlainTextResponse("home")

    return Starlette(routes=[Route("/", home), WebSocketRoute("/echo", Echo), WebSocketRoute("/denied", denied),
                             WebSocketRoute("/json", jsonws)])


def fastapi_app():
    from fastapi import Depends, FastAPI, WebSocket, WebSocketDisconnect, WebSocketException, status

    app = FastAPI()

    def token(websocket: WebSocket, token: str = ""):
        if token != "sesame":
            raise WebSocketException(code=status.WS_1008_POLICY_VIOLATION)
        return token

    @app.websocket("/rooms/{room}")
    async def room(websocket: WebSocket, room: str, tok: str = Depends(token)):
        await websocket.accept()
        try:
            while True:
                data = await websocket.receive_bytes()
                await websocket.send_text(f"{room}:{len(data)}")
        except WebSocketDisconnect as exc:
            record("fastapi-disconnect", (exc.code, exc.reason))

    @app.get("/")
    async def home():
        return {"ok": True}

    return app
