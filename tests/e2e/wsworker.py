#!/usr/bin/env python3
"""A scriptable WebSocket worker for the e2e tests (Python stdlib only,
speaking the raw protocol with badworker.py's MessagePack codec), run by
the gateway as its COMMAND:

    wsworker.py [--window N]

It announces `websocket: true` (PROTOCOL.md 5.2) and behaves according to
the REQUEST target's path:

    /echo          accept; echo every message with its type (reassembled
                   up to *more* clear), granting credit as it consumes
    /refuse        403 with the body "no"
    /proto         accept choosing the LAST offered subprotocol
    /badproto      accept with a subprotocol the client did not offer
    /close         accept; after the first message, CLOSE 4000 "bye"
    /push?n=N&size=S  accept; push N bytes as binary messages of S bytes
                   (S >= 8: each starts with its 8-byte big-endian index,
                   see push_payload) as fast as credit allows; CLOSE 1000
    /noread        accept; never grant credit beyond the initial window;
                   log "noread ... received=B" at every piece
    /ping          accept; MESSAGE PING "hi"; a PONG back is echoed as the
                   text message "pong:<data>"; other messages are echoed
    /limit?n=N     LIMIT N, then accept; echo (with &after=1: LIMIT just
                   after the 101)
    /headers       accept with `set-cookie: a=b`; send the REQUEST it saw as
                   one JSON text message ({"method", "target", "version",
                   "headers": [[name, value]...]}); echo
    /closecode?c=C&r=R  accept; at once CLOSE C with reason R (R="long":
                   130 bytes of two-byte characters, above the 123 a close
                   frame can carry)
    /badutf8       accept; send the text message b"ok \xff" (invalid UTF-8)
    /whoami        accept; send the text message {"pid": PID, "worker_id": ID}
                   (ID from $SLUICE_WORKER_ID, or null), then echo
    /hang          never answer (the response timeout applies)
    /reset         accept; RESET after the first message
    /die           accept; the process exits after the first message
    ?credit=N      (on any accepted path) CREDIT N before the 101
    other paths    404 (a WebSocket request) or 200 "plain" (a plain request:
                   every request without body = 3 gets 200 "plain")

It also checks the gateway's side of the protocol and prints a line with
"VIOLATION" to stderr when it breaks it (data over the window, pieces of
one message with different text bits, invalid UTF-8 in a text message, a
MESSAGE before 101...). Every CLOSE or CANCEL it receives is logged as

    wsworker[PID]: end sid=N target=T how=close|cancel|sent-close|sent-reset
                   code=C reason=R received=B messages=M

so a test can see what the worker was told (the lines go to the gateway's
stderr, i.e. its log).
"""

import json
import os
import select
import signal
import struct
import sys
from urllib.parse import parse_qs, urlsplit

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

from badworker import dec, frame  # noqa: E402

HELLO, REQUEST, RESPONSE, BODY, END, CREDIT, CANCEL, RESET, LIMIT = 1, 2, 3, 4, 5, 6, 7, 8, 9
PING, PONG, DRAIN, RETIRE, ERROR, MESSAGE, CLOSE = 10, 11, 12, 13, 14, 15, 16

F_TEXT, F_MORE, F_PING, F_PONG = 1, 2, 4, 8
OUT_CAP = 2 << 20  # echo output queued before the worker stops granting credit

_BLOCK = bytes(range(256)) * 5


def push_payload(i, size):
    """Message i of a /push: its index, then a pattern that depends on i."""
    head = struct.pack(">Q", i)
    body = bytearray()
    left = size - 8
    off = i % 251
    while left > 0:
        take = min(left, len(_BLOCK) - off)
        body += _BLOCK[off:off + take]
        left -= take
        off = 0
    return (head + bytes(body))[:size]


def log(msg):
    sys.stderr.write(f"wsworker[{os.getpid()}]: {msg}\n")
    sys.stderr.flush()


def violation(msg):
    log(f"VIOLATION {msg}")


def utf8_ok(b):
    try:
        b.decode("utf-8")  # Python's decoder rejects surrogates and overlongs
        return True
    except UnicodeDecodeError:
        return False


class Stream:
    def __init__(self, sid, req, recv_win, send_win):
        self.sid = sid
        self.method, self.target, self.version, self.headers = req[2], req[3], req[4], req[5]
        self.body_mode = req[9]
        u = urlsplit(self.target.decode("latin-1"))
        self.path = u.path
        self.query = {k: v[-1] for k, v in parse_qs(u.query).items()}
        self.accepted = False
        self.recv_win = recv_win    # what the gateway may still send us
        self.granted_pending = 0    # consumed, not yet granted back
        self.send_win = send_win    # what we may still send
        self.outq = []              # [flags_text, data, last] or ("close"|"reset"|"die", ...)
        self.out_bytes = 0
        self.msg = None             # reassembly: [text, bytearray]
        self.received = 0
        self.messages = 0
        self.push_left = 0
        self.push_index = 0

    def header_values(self, name):
        name = name.encode()
        return [v.decode("latin-1") for k, v in self.headers if k.lower() == name]


class Worker:
    def __init__(self, path, window):
        import socket
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        self.buf = bytearray()
        self.window = window
        self.streams = {}
        self.draining = False
        self.wbuf = []
        self.sigterm = 0
        self.retired = False

    # -- link I/O -------------------------------------------------------------
    def send(self, *items):
        self.wbuf.append(frame(*items))

    def flush_link(self):
        if self.wbuf:
            data = b"".join(self.wbuf)
            self.wbuf = []
            self.sock.sendall(data)

    def frames(self):
        """Frames complete in the buffer."""
        out = []
        while len(self.buf) >= 4:
            n = struct.unpack(">I", self.buf[:4])[0]
            if len(self.buf) < 4 + n:
                break
            v, _ = dec(bytes(self.buf[4:4 + n]))
            del self.buf[:4 + n]
            out.append(v)
        return out

    # -- stream output ----------------------------------------------------------
    def queue(self, st, text, data, last=True):
        st.outq.append([text, memoryview(bytes(data)), last])
        st.out_bytes += len(data)

    def pump(self, st):
        """Send what the window allows, in order; run queued actions; top up
        a /push one message at a time (so its memory is one message)."""
        while True:
            while st.outq:
                item = st.outq[0]
                if item[0] == "close":
                    if item[2]:
                        self.send(CLOSE, st.sid, item[1], item[2])
                    else:  # an empty reason is omitted (PROTOCOL.md 2.1)
                        self.send(CLOSE, st.sid, item[1])
                    self.end(st, "sent-close", item[1], item[2])
                    return
                if item[0] == "reset":
                    self.send(RESET, st.sid, 1)
                    self.end(st, "sent-reset", 0, "")
                    return
                if item[0] == "die":
                    self.flush_link()
                    log(f"dying on sid={st.sid}")
                    os._exit(1)
                text, data, last = item
                if len(data) and st.send_win <= 0:
                    break
                n = min(len(data), st.send_win, self.max_data)
                more = not (last and n == len(data))
                self.send(MESSAGE, st.sid, (F_TEXT if text else 0) | (F_MORE if more else 0),
                          bytes(data[:n]))
                st.send_win -= n
                st.out_bytes -= n
                if n == len(data):
                    st.outq.pop(0)
                else:
                    item[1] = data[n:]
                if len(self.wbuf) > 64:
                    self.flush_link()
            if st.outq or st.push_left <= 0:
                break
            size = int(st.query.get("size", "65536"))
            n = min(size, st.push_left)
            self.queue(st, False, push_payload(st.push_index, n))
            st.push_index += 1
            st.push_left -= n
            if st.push_left == 0:
                st.outq.append(("close", 1000, ""))
        self.grant(st)

    def grant(self, st):
        if st.sid not in self.streams or st.path == "/noread":
            return
        if st.granted_pending and st.out_bytes < OUT_CAP and \
                (st.granted_pending >= self.window // 2 or st.recv_win < self.window // 2):
            self.send(CREDIT, st.sid, st.granted_pending)
            st.recv_win += st.granted_pending
            st.granted_pending = 0

    def end(self, st, how, code, reason):
        if isinstance(reason, (bytes, bytearray)):
            reason = reason.decode("utf-8", "replace")
        target = st.target.decode("latin-1")
        log(f"end sid={st.sid} target={target} how={how} code={code} reason={reason} "
            f"received={st.received} messages={st.messages}")
        self.streams.pop(st.sid, None)

    # -- frames from the gateway ---------------------------------------------
    def on_request(self, f):
        sid = f[1]
        st = Stream(sid, f, self.window, self.gw_window)
        self.streams[sid] = st
        if st.body_mode != 3:
            self.send(RESPONSE, sid, 200, [[b"content-type", b"text/plain"],
                                           [b"content-length", b"5"]], 1)
            self.send(BODY, sid, b"plain")
            self.send(END, sid)
            self.streams.pop(sid, None)
            return
        p = st.path
        accept = ("/echo", "/proto", "/badproto", "/close", "/push", "/noread",
                  "/ping", "/limit", "/headers", "/reset", "/die", "/closecode",
                  "/badutf8", "/whoami")
        if p == "/hang":
            return
        if p == "/refuse":
            self.send(RESPONSE, sid, 403, [[b"content-type", b"text/plain"],
                                           [b"content-length", b"2"]], 1)
            self.send(BODY, sid, b"no")
            self.send(END, sid)
            self.streams.pop(sid, None)
            return
        if p not in accept:
            self.send(RESPONSE, sid, 404, [[b"content-length", b"0"]], 0)
            self.streams.pop(sid, None)
            return
        if "credit" in st.query:  # CREDIT before the 101 (PROTOCOL.md 5.2 allows it)
            n = int(st.query["credit"])
            self.send(CREDIT, sid, n)
            st.recv_win += n
        hdrs = []
        if p == "/proto":
            offered = [t.strip() for v in st.header_values("sec-websocket-protocol")
                       for t in v.split(",") if t.strip()]
            if offered:
                hdrs.append([b"sec-websocket-protocol", offered[-1].encode()])
        elif p == "/badproto":
            hdrs.append([b"sec-websocket-protocol", b"not-offered"])
        elif p == "/headers":
            hdrs.append([b"set-cookie", b"a=b"])
        elif p == "/limit" and "after" not in st.query:
            self.send(LIMIT, sid, int(st.query.get("n", "0")))
        self.send(RESPONSE, sid, 101, hdrs, 0)
        if p == "/limit" and "after" in st.query:
            self.send(LIMIT, sid, int(st.query.get("n", "0")))
        st.accepted = True
        if p == "/headers":
            desc = {"method": st.method.decode("latin-1"),
                    "target": st.target.decode("latin-1"), "version": st.version,
                    "headers": [[k.decode("latin-1"), v.decode("latin-1")]
                                for k, v in st.headers]}
            self.queue(st, True, json.dumps(desc).encode())
        elif p == "/whoami":
            wid = os.environ.get("SLUICE_WORKER_ID")
            self.queue(st, True, json.dumps({"pid": os.getpid(),
                                             "worker_id": int(wid) if wid else None}).encode())
        elif p == "/ping":
            self.send(MESSAGE, sid, F_PING, b"hi")
        elif p == "/closecode":
            reason = st.query.get("r", "")
            if reason == "long":
                reason = "\u00e9" * 65
            st.outq.append(("close", int(st.query.get("c", "1000")), reason))
        elif p == "/badutf8":
            self.queue(st, True, b"ok \xff")
        elif p == "/push":
            st.push_left = int(st.query.get("n", "0"))
            if st.push_left == 0:
                st.outq.append(("close", 1000, ""))
        self.pump(st)

    def on_message(self, st, flags, data):
        if not st.accepted:
            violation(f"MESSAGE before 101 on sid={st.sid}")
            return
        if flags == F_PONG:
            if st.path == "/ping":
                self.queue(st, True, b"pong:" + data)
                self.pump(st)
            else:
                log(f"pong on sid={st.sid} {data!r}")
            return
        if flags & ~3:
            violation(f"MESSAGE flags {flags} from the gateway on sid={st.sid}")
            return
        text, more = bool(flags & F_TEXT), bool(flags & F_MORE)
        st.recv_win -= len(data)
        st.received += len(data)
        if st.recv_win < 0:
            violation(f"data over the window on sid={st.sid} ({-st.recv_win} bytes)")
        if st.path == "/noread":
            log(f"noread sid={st.sid} target={st.target.decode('latin-1')} "
                f"received={st.received}")
            return
        if st.msg is None:
            st.msg = [text, bytearray()]
        elif st.msg[0] != text:
            violation(f"text bit changed inside a message on sid={st.sid}")
        st.msg[1] += data
        st.granted_pending += len(data)
        if not more:
            text, whole = st.msg
            st.msg = None
            st.messages += 1
            if text and not utf8_ok(bytes(whole)):
                violation(f"invalid UTF-8 text message on sid={st.sid}")
            self.on_whole_message(st, text, bytes(whole))
        if st.sid in self.streams:
            self.pump(st)

    def on_whole_message(self, st, text, data):
        p = st.path
        first = st.messages == 1
        if p == "/close" and first:
            st.outq.append(("close", 4000, "bye"))
        elif p == "/reset" and first:
            st.outq.append(("reset",))
        elif p == "/die" and first:
            st.outq.append(("die",))
        elif p in ("/echo", "/proto", "/badproto", "/ping", "/limit", "/headers", "/whoami"):
            self.queue(st, text, data)

    def run(self):
        self.send(HELLO, 0, 1, {"pid": os.getpid(), "lib": "wsworker/0",
                                "max_streams": 64, "window": self.window,
                                "websocket": True})
        self.flush_link()
        hello = None
        while hello is None:
            d = self.sock.recv(65536)
            if not d:
                return 1
            self.buf += d
            fs = self.frames()
            if fs:
                hello = fs[0]
                rest = fs[1:]
        if hello[0] != HELLO:
            log(f"unexpected first frame {hello!r}")
            return 1
        settings = hello[3] if len(hello) > 3 else {}
        if settings.get("websocket") is not True:
            violation(f"gateway HELLO without websocket: {settings!r}")
        self.gw_window = settings.get("window", 65536)
        self.max_data = min(settings.get("max_frame", 1 << 20) - 64, 1 << 20)
        pending = rest
        while True:
            for f in pending:
                self.handle(f)
            self.flush_link()
            if self.draining and not self.streams:
                return 0
            if self.sigterm and not self.retired:
                # PROTOCOL.md 10.4: SIGTERM before DRAIN: RETIRE, keep reading
                self.retired = True
                self.send(RETIRE, 0, "sigterm")
                self.flush_link()
            # a short timeout: a signal handler only sets a flag
            if not select.select([self.sock], [], [], 0.2)[0]:
                pending = []
                continue
            d = self.sock.recv(1 << 20)
            if not d:
                return 0
            self.buf += d
            pending = self.frames()

    def handle(self, f):
        t, sid = f[0], f[1]
        if t == PING:
            self.send(PONG, 0, f[2])
        elif t == DRAIN:
            self.draining = True
            if self.streams:
                log("draining with open streams: " + " ".join(
                    f"{st.sid}:{st.target.decode('latin-1')}" for st in self.streams.values()))
        elif t == ERROR:
            log(f"link ERROR from the gateway: {f!r}")
        elif t == REQUEST:
            self.on_request(f)
        elif sid in self.streams:
            st = self.streams[sid]
            if t == MESSAGE:
                self.on_message(st, f[2], f[3])
            elif t == CREDIT:
                st.send_win += f[2]
                self.pump(st)
            elif t == CLOSE:
                self.end(st, "close", f[2], f[3] if len(f) > 3 else "")
            elif t == CANCEL:
                self.end(st, "cancel", f[2], f[3] if len(f) > 3 else "")
            else:
                violation(f"frame {t} on WebSocket sid={sid}")


def main():
    window = 65536
    if len(sys.argv) > 2 and sys.argv[1] == "--window":
        window = int(sys.argv[2])
    path = os.environ["SLUICE_SOCKET"]
    if path.startswith("unix:"):
        path = path[5:]
    w = Worker(path, window)

    def on_term(signum, frame_):
        w.sigterm += 1
        if w.sigterm > 1:
            os._exit(1)  # a second SIGTERM: stop now
    signal.signal(signal.SIGTERM, on_term)
    return w.run()


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (BrokenPipeError, ConnectionResetError):
        sys.exit(0)
