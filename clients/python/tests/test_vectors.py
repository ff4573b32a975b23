"""Replays every file of protocol/vectors/ through sluice.protocol.

Decode vectors: whole, byte by byte and at pseudo-random split points; the
canonical ones are re-encoded byte for byte. Session vectors go through the
Link state machine of the vector's role, step by step, with the error names.
"""

from __future__ import annotations

import json
import os
import random
import re

import pytest

from sluice import protocol as P

VECTORS = os.path.join(os.path.dirname(__file__), "..", "..", "..", "protocol", "vectors")
FILES = sorted(f for f in os.listdir(VECTORS) if re.match(r"^[0-9]{3}-.*\.json$", f))


def load(name: str) -> dict:
    with open(os.path.join(VECTORS, name), encoding="utf-8") as f:
        return json.load(f)


def b(s: str) -> bytes:
    return s.encode("latin-1")


def t(s: str) -> str:
    """A JSON byte string holding a wire `text`, as sluice decodes it (str
    from UTF-8, with undecodable bytes escaped)."""
    return b(s).decode("utf-8", "surrogateescape")


def headers(h):
    return [[b(n), b(v)] for n, v in h]


def frame_from_json(o: dict) -> P.Frame:
    typ, sid = o["type"], o["stream"]
    if typ == "HELLO":
        st = {k: (t(v) if isinstance(v, str) else v) for k, v in o["settings"].items()}
        return P.Hello(o["version"], st, stream_id=sid)
    if typ == "REQUEST":
        return P.Request(sid, b(o["method"]), b(o["target"]), o["version"], headers(o["headers"]),
                         (t(o["client"][0]), o["client"][1]), (t(o["server"][0]), o["server"][1]),
                         t(o["scheme"]), o["body"])
    if typ == "RESPONSE":
        return P.Response(sid, o["status"], headers(o["headers"]), o["body"])
    if typ == "BODY":
        return P.Body(sid, b(o["data"]))
    if typ == "END":
        return P.End(sid, headers(o["trailers"]) if "trailers" in o else None)
    if typ == "CREDIT":
        return P.Credit(sid, o["increment"])
    if typ == "CANCEL":
        return P.Cancel(sid, o["reason"], t(o["message"]) if "message" in o else None)
    if typ == "RESET":
        return P.Reset(sid, o["code"], t(o["message"]) if "message" in o else None)
    if typ == "LIMIT":
        return P.Limit(sid, o["max_body"])
    if typ == "PING":
        return P.Ping(o["opaque"], stream_id=sid)
    if typ == "PONG":
        return P.Pong(o["opaque"], stream_id=sid)
    if typ == "DRAIN":
        return P.Drain(o["timeout_ms"], stream_id=sid)
    if typ == "RETIRE":
        return P.Retire(t(o["reason"]) if "reason" in o else None, stream_id=sid)
    if typ == "ERROR":
        return P.Error(o["code"], t(o["message"]), stream_id=sid)
    if typ == "MESSAGE":
        return P.Message(sid, o["flags"], b(o["data"]))
    if typ == "CLOSE":
        return P.Close(sid, o["code"], t(o["reason"]) if "reason" in o else None)
    raise AssertionError(typ)


def decode_all(data: bytes, max_frame: int, splits: list[int]):
    """Feed data cut at `splits`; returns (frames, error name or None)."""
    dec = P.FrameDecoder(max_frame)
    frames: list = []
    prev = 0
    try:
        for cut in splits + [len(data)]:
            frames += dec.feed(data[prev:cut])
            prev = cut
        dec.check_eof()
    except P.RemoteProtocolError as exc:
        return frames + exc.frames, exc.name
    return frames, None


DECODE = [f for f in FILES if load(f)["kind"] == "decode"]
SESSION = [f for f in FILES if load(f)["kind"] == "session"]


def test_vector_count():
    # every file is one of the two kinds, and there are plenty of each
    assert len(DECODE) + len(SESSION) == len(FILES)
    assert len(DECODE) > 200 and len(SESSION) > 80


@pytest.mark.parametrize("name", DECODE)
def test_decode_vector(name):
    v = load(name)
    data = bytes.fromhex(v["hex"])
    want = [frame_from_json(o) for o in v["frames"]]
    rnd = random.Random(name)
    split_sets = [[], list(range(1, len(data)))] if len(data) < 20000 else [[], list(range(1, len(data), 997))]
    for _ in range(8):
        k = rnd.randint(1, 6) if data else 0
        split_sets.append(sorted(rnd.randint(0, len(data)) for _ in range(k)))
    for splits in split_sets:
        got, err = decode_all(data, v["max_frame"], splits)
        assert err == v["error"], (name, splits[:10])
        assert got == want, (name, splits[:10])
    if v["canonical"]:
        assert b"".join(P.encode(f) for f in want) == data
        assert b"".join(P.encode(f) for f in got) == data


@pytest.mark.parametrize("name", SESSION)
def test_session_vector(name):
    v = load(name)
    link = P.Link(v["role"], v.get("max_streams", 65535))
    steps = v["steps"]
    for i, step in enumerate(steps):
        direction = "recv" if "recv" in step else "send"
        want = frame_from_json(step[direction])
        data = bytes.fromhex(step["hex"])
        expect = step["expect"]
        try:
            frames = P.FrameDecoder().feed(data)
        except P.RemoteProtocolError as exc:
            assert direction == "recv" and expect == exc.name, (name, i, exc)
            assert i == len(steps) - 1
            return
        assert frames == [want], (name, i)
        frame = frames[0]
        if direction == "send":
            # the local encoder produces exactly these bytes
            assert P.encode(frame) == data, (name, i)
            try:
                link.send(frame)
                outcome = "ok"
            except P.LocalProtocolError:
                outcome = "rejected"
        else:
            try:
                outcome = "ok" if link.recv(frame) else "ignored"
            except P.RemoteProtocolError as exc:
                outcome = exc.name
        assert outcome == expect, (name, i, step)
        if expect == "ok" and frame.type == P.Hello.type:
            rec = link.local_hello if direction == "send" else link.peer_hello
            assert rec.settings == want.settings
        if expect not in ("ok", "ignored", "rejected"):
            assert i == len(steps) - 1
            assert link.state == "failed"
