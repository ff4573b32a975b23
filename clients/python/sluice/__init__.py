"""sluice: Python worker library for the sluice application-server gateway.

Native streaming API::

    from sluice import Response

    async def app(request):
        if request.path == "/echo":
            resp = await request.respond(200, {"content-type": "application/octet-stream"})
            async for chunk in request.stream:
                await resp.send(chunk)      # waits for credit: real backpressure
            await resp.end()
            return
        return Response("hello\\n")

Run it under the gateway: ``sluice -- python3 -m sluice mymodule:app``.
ASGI: ``python3 -m sluice.asgi module:app``; WSGI: ``python3 -m sluice.wsgi module:app``.
The wire protocol itself, without I/O, is in :mod:`sluice.protocol`.
"""

from ._core import ClientDisconnected, Request, RequestStream, ResponseStream, WebSocket, WebSocketClosed
from ._http import Headers, Response
from ._remote import Shutdown

__version__ = "0.1.0"

__all__ = ["Request", "RequestStream", "Response", "ResponseStream", "Headers",
           "ClientDisconnected", "WebSocket", "WebSocketClosed", "Shutdown", "run", "__version__"]


def run(app, *, loop: str = "auto", **options) -> int:
    """Serve a native ``async def app(request)`` (for ``if __name__ ==
    "__main__": sys.exit(sluice.run(app))`` scripts run by the gateway).
    ``loop`` is ``auto``, ``asyncio``, ``uvloop`` or ``trio``;
    ``websocket=handler`` (or ``app.websocket = handler``) takes WebSockets."""
    if loop == "trio":
        from ._trio import run_native as run_trio
        return run_trio(app, **options)
    from ._asyncio import run_native
    return run_native(app, loop=loop, **options)
