"""A Starlette app with WebSocket routes, written as Starlette's documentation
shows (a WebSocketEndpoint class, function routes, a denial response), with
nothing sluice-specific in it. test_ws_apps.py runs it behind the gateway
with `python -m sluice.asgi starlette_ws:app`.

    /echo                    WebSocketEndpoint, encoding "text": "echo: "+msg;
                             on_disconnect keeps the close code for /seen
    /hello/{name}            path param and query: one JSON message, close 1000
    /deny                    send_denial_response(403, "nope")
    /close?code=&reason=     accept, then close with that code and reason
    GET /seen                the close codes on_disconnect saw, as JSON
"""

from starlette.applications import Starlette
from starlette.endpoints import WebSocketEndpoint
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

seen = []


class Echo(WebSocketEndpoint):
    encoding = "text"

    async def on_receive(self, websocket, data):
        await websocket.send_text("echo: " + data)

    async def on_disconnect(self, websocket, close_code):
        seen.append(close_code)


async def hello(websocket: WebSocket):
    await websocket.accept()
    await websocket.send_json({"name": websocket.path_params["name"],
                               "query": dict(websocket.query_params),
                               "origin": websocket.headers.get("origin")})
    await websocket.close()


async def deny(websocket: WebSocket):
    await websocket.send_denial_response(PlainTextResponse("nope", status_code=403))


async def close(websocket: WebSocket):
    await websocket.accept()
    await websocket.close(code=int(websocket.query_params.get("code", "1000")),
                          reason=websocket.query_params.get("reason", ""))


async def get_seen(request):
    return JSONResponse({"seen": seen})


app = Starlette(routes=[
    Route("/seen", get_seen),
    WebSocketRoute("/echo", Echo),
    WebSocketRoute("/hello/{name}", hello),
    WebSocketRoute("/deny", deny),
    WebSocketRoute("/close", close),
])
