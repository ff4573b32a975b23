#!/usr/bin/env python3
"""Build the fuzz seed corpora from the protocol vectors.

decoder seeds: one split-pattern byte, then a decode vector's bytes.
link seeds:    role byte, max_streams byte, then a session's frames in order.
tls seeds:     mode/piece byte (see fuzz_tls.c), then ClientHellos recorded
               from this Python's OpenSSL, plain HTTP, records.
Vectors above 8 KiB are skipped to keep the corpora small. Run from the
repository root; the output is committed under tests/fuzz/corpus/."""
import json, os, pathlib

root = pathlib.Path(__file__).resolve().parents[2]
vec = root / "protocol" / "vectors"
out = root / "tests" / "fuzz" / "corpus"
for sub in ("decoder", "link"):
    d = out / sub
    d.mkdir(parents=True, exist_ok=True)
    for f in d.iterdir():
        f.unlink()

for path in sorted(vec.glob("[0-9][0-9][0-9]-*.json")):
    v = json.loads(path.read_text())
    if v["kind"] == "decode":
        data = bytes.fromhex(v["hex"])
        if len(data) > 8192:
            continue
        for pattern in (0, 7):
            (out / "decoder" / f"{path.stem}-{pattern}").write_bytes(bytes([pattern]) + data)
    else:
        data = b"".join(bytes.fromhex(s["hex"]) for s in v["steps"])
        if len(data) > 8192:
            continue
        role = 1 if v["role"] == "gateway" else 0
        # bit 1: the fuzzer's own HELLO announces WebSockets (fuzz_link.c)
        if any(s.get("send", s.get("recv", {})).get("settings", {}).get("websocket") for s in v["steps"]):
            role |= 2
        ms = v.get("max_streams", 4) % 256
        (out / "link" / path.stem).write_bytes(bytes([role, ms]) + data)

import ssl


def client_hello(alpn, version=None, sni="a.example"):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if alpn:
        ctx.set_alpn_protocols(alpn)
    if version:
        ctx.maximum_version = version
    inc, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, outgoing, server_hostname=sni)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


# mode byte: mode = b % 3 (0 raw, 1 after a handshake, 2 echo), piece = b >> 2
request = b"GET / HTTP/1.1\r\nHost: a.example\r\n\r\n"
tls_seeds = {
    "clienthello-h2": bytes([0]) + client_hello(["h2", "http/1.1"]),
    "clienthello-tls12": bytes([0]) + client_hello(None, ssl.TLSVersion.TLSv1_2, None),
    "clienthello-pieces-7": bytes([30]) + client_hello(["http/1.1"]),
    "plain-http": bytes([0]) + request,
    "record-after-handshake": bytes([1]) + bytes([0x17, 3, 3, 0, 32]) + bytes(range(32)),
    "echo-request": bytes([2]) + request,  # odd length: ends with close_notify
    "echo-truncated": bytes([2]) + request + b"x",  # even: a bare EOF
    "echo-pieces-5": bytes([20]) + request * 3,
}
d = out / "tls"
d.mkdir(parents=True, exist_ok=True)
for f in d.iterdir():
    f.unlink()
for name, data in tls_seeds.items():
    (d / name).write_bytes(data)

# http: a few WebSocket sessions (fuzz_http's worker accepts and echoes);
# the rest of that corpus comes from fuzzing runs
def ws_frame(op, payload, fin=True, key=b"\x01\x02\x03\x04"):
    n = len(payload)
    head = bytes([(0x80 if fin else 0) | op])
    head += bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + n.to_bytes(2, "big")
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))

handshake = (b"GET /chat HTTP/1.1\r\nHost: a.example\r\nUpgrade: websocket\r\n"
             b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
             b"Sec-WebSocket-Version: 13\r\n\r\n")
ws_seeds = {
    "ws-echo-close": handshake + ws_frame(1, b"hello") + ws_frame(2, bytes(300)) + ws_frame(8, b"\x03\xe8"),
    "ws-fragments-ping": handshake + ws_frame(1, "caf\u00e9".encode()[:4], fin=False) + ws_frame(9, b"p")
                         + ws_frame(0, "caf\u00e9".encode()[4:]) + ws_frame(10, b""),
    "ws-worker-closes": handshake + ws_frame(1, b"bye") + ws_frame(1, b"after"),
    "ws-bad-utf8": handshake + ws_frame(1, b"\xff"),
    "ws-version-8": handshake.replace(b"Version: 13", b"Version: 8"),
}
d = out / "http"
d.mkdir(parents=True, exist_ok=True)
for name, data in ws_seeds.items():
    (d / name).write_bytes(data)
print("seeds:", {s: len(os.listdir(out / s)) for s in ("decoder", "link", "tls", "http")})
