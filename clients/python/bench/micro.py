"""In-process micro-benchmark of a worker's per-request cost (no gateway,
no sockets): REQUEST frames are fed to the asyncio runtime in batches, as
the gateway sends them under load, and the responses are collected from a
fake transport. Prints microseconds per request.

    python clients/python/bench/micro.py [native|asgi|wsgi] [N] [batch]
"""

import asyncio
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))

from sluice import protocol as P  # noqa: E402
from sluice._asyncio import AsyncioLink, new_event_loop  # noqa: E402
import hello_apps  # noqa: E402


class FakeTransport(asyncio.Transport):
    def __init__(self):
        super().__init__()
        self.n = 0
        self.closing = False

    def write(self, data):
        self.n += len(data)

    def writelines(self, chunks):
        for c in chunks:
            self.n += len(c)

    def is_closing(self):
        return self.closing

    def close(self):
        self.closing = True


def request_frames(first: int, n: int) -> bytes:
    headers = [[b"host", b"127.0.0.1:8080"], [b"user-agent", b"wrk"], [b"accept", b"*/*"]]
    return b"".join(P.encode(P.Request(sid, b"GET", b"/", 11, headers, ("127.0.0.1", 40000),
                                       ("127.0.0.1", 8080), "http", 0))
                    for sid in range(first, first + n))


async def main(kind: str, total: int, batch: int) -> float:
    loop = asyncio.get_running_loop()
    if kind == "native":
        async def run_request(core, req):
            await core.run_handler(hello_apps.native, req)
    elif kind == "asgi":
        from sluice.asgi import ASGIRunner
        run_request = ASGIRunner(hello_apps.asgi, "off").run_request
    else:
        from sluice.wsgi import WSGIRunner
        r = WSGIRunner(hello_apps.wsgi, 1)
        r.loop = loop
        run_request = r.run_request
    conn = P.WorkerConnection(max_streams=batch)
    link = AsyncioLink(loop, conn, run_request)
    t = FakeTransport()
    link.connection_made(t)
    link.data_received(P.encode(P.Hello(1, {"window": 262144})))
    chunks = [request_frames(1 + i * batch, batch) for i in range(total // batch)]
    t0 = time.perf_counter()
    for data in chunks:
        link.data_received(data)
        while link.core.requests or link._flush_pending:
            await asyncio.sleep(0)
    dt = time.perf_counter() - t0
    return dt / (len(chunks) * batch) * 1e6


if __name__ == "__main__":
    kind = sys.argv[1] if len(sys.argv) > 1 else "native"
    total = int(sys.argv[2]) if len(sys.argv) > 2 else 50000
    batch = int(sys.argv[3]) if len(sys.argv) > 3 else 32
    loop = new_event_loop(os.environ.get("LOOP", "auto"))
    us = loop.run_until_complete(main(kind, total, batch))
    print(f"{kind}: {us:.2f} us/request")
