"""A chat room in FastAPI (the ConnectionManager pattern of FastAPI's
WebSocket guide), served through the ASGI adapter unchanged.

    .venv/bin/pip install ./clients/python fastapi     # see examples/python/README.md
    build/server/sluice --listen 127.0.0.1:8080 --workers 1 -- \\
        .venv/bin/python -m sluice.asgi examples.python.ws_chat:app

Open http://127.0.0.1:8080/ in two browser tabs. One worker: the room lives
in the worker's memory (with several workers each has its own room).

    GET /                    the page
    GET /who                 who is in the room (JSON)
    ws  /ws/{name}           join as `name`; every text message goes to
                             everyone as "name: text"; joins and leaves are
                             announced; a name already in the room is
                             refused with close 4009 before it joins
"""

from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from fastapi.responses import HTMLResponse

PAGE = """<!doctype html>
<meta charset="utf-8"><title>chat</title>
<ul id="log"></ul>
<form id="f"><input id="m" autocomplete="off"><button>send</button></form>
<script>
  const name = prompt('name') || 'anon';
  const ws = new WebSocket(location.origin.replace(/^http/, 'ws') + '/ws/' + encodeURIComponent(name));
  ws.onmessage = (e) => { const li = document.createElement('li'); li.textContent = e.data; log.append(li); };
  ws.onclose = (e) => { const li = document.createElement('li'); li.textContent = 'closed ' + e.code + ' ' + e.reason; log.append(li); };
  f.onsubmit = (e) => { e.preventDefault(); ws.send(m.value); m.value = ''; };
</script>
"""


class ConnectionManager:
    def __init__(self):
        self.active: dict[str, WebSocket] = {}

    async def connect(self, name: str, websocket: WebSocket) -> bool:
        if name in self.active:
            await websocket.accept()
            await websocket.close(code=4009, reason="name taken")
            return False
        await websocket.accept()
        self.active[name] = websocket
        return True

    def disconnect(self, name: str) -> None:
        self.active.pop(name, None)

    async def broadcast(self, text: str) -> None:
        for ws in list(self.active.values()):
            try:
                await ws.send_text(text)
            except (WebSocketDisconnect, RuntimeError, OSError):
                pass  # that one is leaving; its own handler cleans up


app = FastAPI()
manager = ConnectionManager()


@app.get("/")
async def page():
    return HTMLResponse(PAGE)


@app.get("/who")
async def who():
    return {"names": sorted(manager.active)}


@app.websocket("/ws/{name}")
async def chat(websocket: WebSocket, name: str):
    if not await manager.connect(name, websocket):
        return
    await manager.broadcast(f"{name} joined")
    try:
        while True:
            text = await websocket.receive_text()
            await manager.broadcast(f"{name}: {text}")
    except WebSocketDisconnect:
        manager.disconnect(name)
        await manager.broadcast(f"{name} left")
