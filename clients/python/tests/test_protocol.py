"""Unit tests of the sans-I/O worker connection (no sockets)."""

from __future__ import annotations

import pytest

from sluice import protocol as P

GW_HELLO = P.encode(P.Hello(1, {"window": 100, "max_frame": 16384, "worker_id": 3, "pool": "p"}))


def req(sid: int, body: int = 0, method: bytes = b"GET", target: bytes = b"/") -> bytes:
    return P.encode(P.Request(sid, method, target, 11, [[b"host", b"x"]], ("127.0.0.1", 5), ("127.0.0.1", 80),
                              "http", body))


def frames(data: bytes) -> list[P.Frame]:
    return P.FrameDecoder(P.MAX_MAX_FRAME).feed(data)


def ready(**kw) -> P.WorkerConnection:
    conn = P.WorkerConnection(pid=7, lib="t", **kw)
    out = frames(conn.data_to_send())
    assert out == [P.Hello(1, {"pid": 7, "lib": "t", "max_streams": kw.get("max_streams", 64),
                               "window": conn.initial_window})]
    assert conn.initial_window == P.initial_window(kw.get("max_streams", 64), kw.get("window", P.DEFAULT_WINDOW),
                                                   kw.get("body_buffer", P.DEFAULT_BODY_BUFFER))
    evs = conn.receive_data(GW_HELLO)
    assert [e.type for e in evs] == [1]
    return conn


def test_hello_carries_settings_and_link_becomes_ready():
    conn = ready(max_streams=2, window=1000)
    assert conn.link.ready
    assert conn.link.peer_max_frame == 16384


def test_request_split_anywhere_gives_the_same_event():
    conn = ready()
    data = req(1) + req(3, body=1) + P.encode(P.Body(3, b"abc")) + P.encode(P.End(3))
    events = []
    for i in range(len(data)):
        events += conn.receive_data(data[i:i + 1])
    assert [e.type for e in events] == [2, 2, 4, 5]
    assert events[0].method == b"GET" and events[0].headers == [[b"host", b"x"]]
    assert events[2].data == b"abc"


def test_respond_full_is_three_canonical_frames():
    conn = ready()
    conn.receive_data(req(5))
    assert conn.respond_full(5, 200, P.pack_headers([(b"a", b"b")]), b"hi")
    assert frames(conn.data_to_send()) == [P.Response(5, 200, [[b"a", b"b"]], 1), P.Body(5, b"hi"),
                                           P.End(5)]
    assert not conn.is_open(5)


def test_body_respects_window_and_gateway_max_frame():
    conn = ready()  # gateway window 100, max_frame 16384
    conn.receive_data(req(1))
    assert not conn.respond_full(1, 200, b"\x90", b"x" * 101)  # over the window: caller streams
    conn.respond(1, 200, [])
    assert conn.send_body(1, b"y" * 150) == 100
    assert conn.send_body(1, b"z") == 0
    out = frames(conn.data_to_send())
    assert [f.type for f in out] == [3, 4] and out[1].data == b"y" * 100
    conn.receive_data(P.encode(P.Credit(1, 40000)))
    assert conn.send_body(1, b"q" * 40000) == 40000
    bodies = [f for f in frames(conn.data_to_send()) if f.type == 4]
    assert len(bodies) == 3  # split to fit the gateway's max_frame
    assert all(len(P.encode(b)) - 4 <= 16384 for b in bodies)
    assert b"".join(b.data for b in bodies) == b"q" * 40000
    conn.end(1)
    with pytest.raises(P.LocalProtocolError):
        conn.send_body(1, b"late")


def test_credit_is_batched_at_half_the_window():
    conn = ready(window=1000)
    conn.receive_data(req(1, body=1) + P.encode(P.Body(1, b"a" * 300)) + P.encode(P.Body(1, b"b" * 300)))
    conn.data_to_send()
    conn.consumed(1, 300)
    assert conn.data_to_send() == b""  # 300 < 500: not yet
    conn.consumed(1, 300)
    assert frames(conn.data_to_send()) == [P.Credit(1, 600)]


def test_credit_sent_at_once_when_window_is_exhausted():
    conn = ready(window=10)
    conn.receive_data(req(1, body=1) + P.encode(P.Body(1, b"a" * 2)))
    conn.data_to_send()
    conn.consumed(1, 2)
    assert conn.data_to_send() == b""  # 2 < 5 and 8 bytes of window left
    conn.receive_data(P.encode(P.Body(1, b"b" * 8)))
    conn.consumed(1, 3)  # window 0 now: waiting for more would stall the gateway
    assert frames(conn.data_to_send()) == [P.Credit(1, 5)]


def test_body_mode_2_window_starts_at_zero_until_grant():
    conn = ready()
    conn.receive_data(req(1, body=2))
    with pytest.raises(P.RemoteProtocolError) as e:
        conn.receive_data(P.encode(P.Body(1, b"x")))
    assert e.value.name == "flow_control"
    # an ERROR frame is queued for the gateway
    assert frames(conn.data_to_send())[-1].type == P.Error.type


def test_grant_and_limit():
    conn = ready()
    conn.receive_data(req(1, body=2))
    conn.limit(1, 10 ** 9)
    conn.grant(1, 4096)
    assert frames(conn.data_to_send()) == [P.Limit(1, 10 ** 9), P.Credit(1, 4096)]
    assert conn.receive_data(P.encode(P.Body(1, b"x" * 4096)))[0].data == b"x" * 4096


def test_ping_is_answered_and_not_returned():
    conn = ready()
    assert conn.receive_data(P.encode(P.Ping(99))) == []
    assert frames(conn.data_to_send()) == [P.Pong(99)]


def test_cancel_closes_the_stream_and_late_frames_are_ignored():
    conn = ready()
    conn.receive_data(req(1, body=1))
    ev = conn.receive_data(P.encode(P.Cancel(1, 1)))
    assert ev[0].reason_name == "client_closed"
    assert not conn.is_open(1)
    assert conn.receive_data(P.encode(P.Body(1, b"late")) + P.encode(P.End(1))) == []
    with pytest.raises(P.LocalProtocolError):
        conn.respond(1, 200, [])
    conn.reset(1)  # no-op on a closed stream
    assert conn.data_to_send() == b""


def test_drain_then_request_is_a_link_error():
    conn = ready()
    assert conn.receive_data(P.encode(P.Drain(1000)))[0].type == P.Drain.type
    assert conn.draining
    with pytest.raises(P.RemoteProtocolError) as e:
        conn.receive_data(req(1))
    assert e.value.name == "unexpected_frame"


def test_malformed_input_fails_with_error_frame_and_keeps_earlier_frames():
    conn = ready()
    with pytest.raises(P.RemoteProtocolError) as e:
        conn.receive_data(req(1) + b"\x00\x00\x00\x02\x91\xc1")
    assert e.value.name == "malformed"
    assert [f.type for f in e.value.frames] == [2]
    err = frames(conn.data_to_send())[-1]
    assert err.type == P.Error.type and err.error_name == "malformed"


def test_truncated_at_eof():
    conn = ready()
    conn.receive_data(req(1)[:5])
    with pytest.raises(P.RemoteProtocolError) as e:
        conn.eof()
    assert e.value.name == "truncated"


def test_retire_once_and_reset_codes():
    conn = ready()
    conn.retire("bye")
    conn.retire("again")
    conn.receive_data(req(1))
    conn.reset(1, "refused", "busy")
    assert frames(conn.data_to_send()) == [P.Retire("bye"), P.Reset(1, 2, "busy")]


def test_too_many_streams():
    conn = ready(max_streams=1)
    conn.receive_data(req(1))
    with pytest.raises(P.RemoteProtocolError) as e:
        conn.receive_data(req(2))
    assert e.value.name == "too_many_streams"


def test_invalid_settings_rejected():
    with pytest.raises(ValueError):
        P.WorkerConnection(max_streams=0)
    with pytest.raises(ValueError):
        P.WorkerConnection(window=1 << 31)


def test_initial_window_fits_the_body_buffer():
    assert P.initial_window(64, 256 * 1024) == 256 * 1024          # 16 MiB: fits in 64 MiB
    assert P.initial_window(4096, 256 * 1024) == 8 * 1024           # half of 64 MiB over 4096
    assert P.initial_window(1000, 256 * 1024) == 32 * 1024          # whole KiB
    assert P.initial_window(65535, 256 * 1024) == P.MIN_INITIAL_WINDOW
    assert P.initial_window(4096, 256 * 1024, None) == 256 * 1024   # no budget: as configured
    conn = P.WorkerConnection(max_streams=4096, pid=1, lib="t")
    hello = frames(conn.data_to_send())[0]
    assert hello.settings["max_streams"] == 4096 and hello.settings["window"] == 8192
    assert conn.window == 256 * 1024 and conn.initial_window == 8192


def test_start_reading_lends_the_full_window_from_the_budget_and_release_returns_it():
    # 16 streams x 64k > 256k: streams start with 8k; 128k of budget to lend
    conn = ready(max_streams=16, window=65536, body_buffer=256 * 1024)
    assert conn.initial_window == 8192
    conn.receive_data(req(1, body=1) + req(3, body=1) + req(5, body=1) + req(7, body=2))
    conn.data_to_send()
    assert conn.start_reading(1) and conn.start_reading(3)
    assert frames(conn.data_to_send()) == [P.Credit(1, 65536 - 8192), P.Credit(3, 65536 - 8192)]
    # 128k - 2 x 56k = 16k left: stream 5 gets what is left
    assert conn.start_reading(5)
    assert frames(conn.data_to_send()) == [P.Credit(5, 16384)]
    # body mode 2 with the budget spent: the initial window only
    assert conn.start_reading(7)
    assert frames(conn.data_to_send()) == [P.Credit(7, 8192)]
    # a stream with a lent window batches credit at half of its window
    conn.receive_data(P.encode(P.Body(1, b"x" * 40000)))
    conn.consumed(1, 30000)
    assert conn.data_to_send() == b""
    conn.consumed(1, 3000)
    assert frames(conn.data_to_send()) == [P.Credit(1, 33000)]
    # one without, at half of the initial window
    conn.receive_data(P.encode(P.Body(7, b"y" * 5000)))
    conn.consumed(7, 5000)
    assert frames(conn.data_to_send()) == [P.Credit(7, 5000)]
    conn.release(1)
    conn.release(1)  # idempotent
    conn.receive_data(req(9, body=1))
    assert conn.start_reading(9)
    assert frames(conn.data_to_send()) == [P.Credit(9, 65536 - 8192)]
    # a stream whose request side ended gets nothing
    conn.receive_data(req(11, body=1) + P.encode(P.End(11)))
    assert not conn.start_reading(11)


def test_request_body_memory_stays_within_the_budget():
    """Random reads on many streams: what the gateway may still send plus
    what the worker holds unread never exceeds the budget, and the worker
    never grants beyond what it announced (no flow_control error)."""
    import random
    rnd = random.Random(7)
    budget = 256 * 1024
    conn = ready(max_streams=16, window=65536, body_buffer=budget)
    held = {}     # sid -> bytes received, not consumed
    reading = set()
    sid = 1
    for step in range(3000):
        open_ids = [s for s in held if conn.is_open(s)]
        if len(open_ids) < 16 and rnd.random() < 0.1:
            conn.receive_data(req(sid, body=rnd.choice((1, 2))))
            held[sid] = 0
            sid += 2
            continue
        if not open_ids:
            continue
        s = rnd.choice(open_ids)
        st = conn.stream(s)
        r = rnd.random()
        if r < 0.4 and st.recv_window:
            n = rnd.randint(1, st.recv_window)
            conn.receive_data(P.encode(P.Body(s, b"z" * n)))
            held[s] += n
        elif r < 0.7:
            if s not in reading:
                reading.add(s)
                conn.start_reading(s)
            n = rnd.randint(0, held[s])
            held[s] -= n
            conn.consumed(s, n)
        elif r < 0.75:
            conn.respond(s, 200, [], body=False)
            conn.release(s)
            held[s] = 0
        conn.data_to_send()
        total = sum(held[k] + (conn.stream(k).recv_window if conn.is_open(k) else 0) for k in held)
        assert total <= budget, (step, total)


def test_credit_granted_after_the_head_in_the_same_batch_goes_before_it():
    """Body mode 2 (Expect: 100-continue): the gateway answers 100 only if
    the first CREDIT arrives before the final head. A handler that starts
    its response and then reads gets [LIMIT,] CREDIT before RESPONSE."""
    conn = ready()
    conn.receive_data(req(1, body=2) + req(3, body=2) + req(5, body=2) + req(7, body=1))
    conn.respond(1, 200, [])
    conn.respond(3, 200, [])
    conn.respond(7, 200, [])
    conn.limit(3, 10 ** 6)
    conn.start_reading(3)
    conn.start_reading(1)
    conn.respond(5, 201, [])
    assert frames(conn.data_to_send()) == [
        P.Credit(1, P.DEFAULT_WINDOW), P.Response(1, 200, [], 1),
        P.Limit(3, 10 ** 6), P.Credit(3, P.DEFAULT_WINDOW), P.Response(3, 200, [], 1),
        P.Response(7, 200, [], 1), P.Response(5, 201, [], 1)]
    # once the head was written, a late grant just follows it
    conn.start_reading(5)
    assert frames(conn.data_to_send()) == [P.Credit(5, P.DEFAULT_WINDOW)]


def test_answering_without_reading_grants_nothing():
    conn = ready()
    conn.receive_data(req(1, body=2))
    conn.respond(1, 401, [])
    conn.send_body(1, b"no")  # window from the gateway's HELLO: 100
    conn.end(1)
    assert [f.type for f in frames(conn.data_to_send())] == [3, 4, 5]
    assert conn._heads == {}


def _outcome(fn, payload: bytes):
    try:
        return fn(payload)
    except P.RemoteProtocolError as exc:
        return exc.name


def test_request_fast_path_agrees_with_the_general_decoder():
    """FrameDecoder.feed decodes the gateway's canonical REQUEST inline; any
    variation must give the frame or the error decode_payload gives."""
    import msgpack
    good = [2, 7, b"GET", b"/x", 11, [[b"host", b"h"]], ["1.2.3.4", 5], ["", 0], "http", 0]
    variants = {0: [2.0, True, 3], 1: [0, -1, 2 ** 53, True, 7.0, "7"], 2: [b"", "GET", 1],
                3: [b"", "/x", None], 4: [10, 12, 11.0, True, "11"],
                5: [[], [[b"a", b"b"]] * 2, [[b"", b"v"]], [[b"a", "v"]], [["a", b"v"]], [[b"a"]],
                    [(b"a", b"b", b"c")], [[b"a", b"b"]] * (P.MAX_HEADERS + 1), {b"a": b"b"}, [[[b"a"], b"b"]]],
                6: [["h", 65536], ["h", -1], [b"h", 1], ["h"], ["h", 1, 2], ["h", True], {"h": 1}],
                7: [["h", 65535], [1, 1]], 8: [b"http", "", 1], 9: [1, 2, 3, -1, True]}
    payloads = [msgpack.packb(good)]
    for i, vals in variants.items():
        for v in vals:
            a = list(good)
            a[i] = v
            payloads.append(msgpack.packb(a, use_bin_type=True))
    payloads.append(msgpack.packb(good + [1], use_bin_type=True))        # a trailing element
    payloads.append(msgpack.packb(good[:9], use_bin_type=True))          # a missing one
    for payload in payloads:
        def via_feed(p):
            (f,) = P.FrameDecoder().feed(P._LEN.pack(len(p)) + p)
            return f
        assert _outcome(via_feed, payload) == _outcome(P.decode_payload, payload), msgpack.unpackb(payload)


def test_respond_full_repeated_and_with_ids_of_every_length():
    """respond_full reuses the frames around the stream id for a repeated
    response: the output stays canonical for each id length, for an empty
    body and for bodies that are not bytes."""
    ph = P.pack_headers([(b"a", b"b")])
    for sid in (5, 200, 300, 70000, 2 ** 32 + 1):
        for body in (b"hi", b"hi", b"", bytearray(b"yo"), memoryview(b"x" * 300)):
            conn = ready(window=1 << 16)
            s = P.StreamState(sid)
            s.send_window = 1000
            conn.link.streams[sid] = s
            assert conn.respond_full(sid, 201, ph, body)
            out = conn.data_to_send()
            fs = frames(out)
            want = [P.Response(sid, 201, [[b"a", b"b"]], 1)] + ([P.Body(sid, bytes(body))] if body else []) \
                + [P.End(sid)]
            assert fs == want
            assert b"".join(P.encode(f) for f in fs) == out
            assert not conn.is_open(sid)


# -- WebSocket streams (PROTOCOL.md 3.14, 3.15, 5.2) ------------------------------

WS_HELLO = P.encode(P.Hello(1, {"window": 100, "websocket": True}))


def ws_req(sid: int) -> bytes:
    return P.encode(P.Request(sid, b"GET", b"/ws", 11, [[b"host", b"x"]], ("127.0.0.1", 5), ("127.0.0.1", 80),
                              "http", 3))


def ws_ready(window: int = 1000, websocket: bool = True, gw_ws: bool = True) -> P.WorkerConnection:
    conn = P.WorkerConnection(pid=7, lib="t", window=window, body_buffer=None, websocket=websocket)
    hello = frames(conn.data_to_send())[0]
    assert hello.settings.get("websocket") is (True if websocket else None)
    conn.receive_data(WS_HELLO if gw_ws else GW_HELLO)
    return conn


def test_ws_codec_roundtrip_and_canonical_bytes():
    for f in (P.Message(3, 0, b"bin"), P.Message(3, 1, "té".encode()), P.Message(3, 2, b""),
              P.Message(3, 3, b"x"), P.Message(3, 4, b"ping"), P.Message(3, 8, b"pong"),
              P.Close(3, 1000), P.Close(3, 4999, "bye"), P.Response(3, 101, [], 0),
              P.Request(3, b"GET", b"/", 11, [], ("", 0), ("", 0), "http", 3)):
        data = P.encode(f)
        assert frames(data) == [f]
    assert P.encode(P.Close(3, 1000, "")) == bytes.fromhex("00000006 93 10 03 cd03e8".replace(" ", ""))
    assert P.encode(P.Message(1, 1, b"hi")) == bytes.fromhex("00000008 94 0f 01 01 c4 02 6869".replace(" ", ""))
    assert P.encode_message_head(1, 1, 2) + b"hi" == P.encode(P.Message(1, 1, b"hi"))
    # HELLO: websocket is a bool, written only when true, last in canonical order
    h = P.encode(P.Hello(1, {"websocket": True, "window": 5, "server": "s"}))
    assert h.endswith(b"\xa9websocket\xc3")
    assert P.encode(P.Hello(1, {"window": 5, "websocket": False})) == P.encode(P.Hello(1, {"window": 5}))


@pytest.mark.parametrize("payload,name", [
    ([15, 1, 5, b""], "field_value"),          # flags other than 0..4, 8
    ([15, 1, 16, b""], "field_value"),
    ([15, 1, 0], "field_type"),                # data missing
    ([15, 1, "0", b""], "field_type"),
    ([16, 1, 999], "field_value"),             # close code below 1000
    ([16, 1, 5000], "field_value"),
    ([16, 1, 1000, b"r"], "field_type"),       # reason is text
    ([16, 0, 1000], "field_value"),            # stream frame with id 0
    ([3, 1, 102, [], 0], "field_value"),       # 101 is the only informational status
    ([2, 1, b"GET", b"/", 11, [], ["", 0], ["", 0], "http", 4], "field_value"),
    ([1, 0, 1, {"window": 1, "websocket": 1}], "field_type"),
    ([17, 1], "unknown_type"),
])
def test_ws_decode_errors(payload, name):
    import msgpack
    p = msgpack.packb(payload, use_bin_type=True)
    with pytest.raises(P.RemoteProtocolError) as ei:
        P.FrameDecoder().feed(len(p).to_bytes(4, "big") + p)
    assert ei.value.name == name


def test_ws_link_needs_both_hellos():
    # the worker did not announce: a gateway HELLO with websocket is not enough
    conn = ws_ready(websocket=False)
    assert not conn.websocket
    with pytest.raises(P.RemoteProtocolError) as ei:
        conn.receive_data(ws_req(1))
    assert ei.value.name == "unexpected_frame"
    # announced, but the gateway did not answer it
    conn = ws_ready(gw_ws=False)
    assert not conn.websocket
    conn.receive_data(req(1))
    with pytest.raises(P.RemoteProtocolError) as ei:
        conn.receive_data(P.encode(P.Message(1, 0, b"")))
    assert ei.value.name == "unexpected_frame"


def test_ws_accept_messages_both_ways_and_close():
    conn = ws_ready()
    assert conn.websocket
    [r] = conn.receive_data(ws_req(1))
    assert r.body == 3
    # nothing but RESPONSE (CREDIT, LIMIT, RESET) before the 101
    with pytest.raises(P.LocalProtocolError):
        conn.send_message(1, b"early")
    conn.accept_websocket(1, [(b"sec-websocket-protocol", b"chat")])
    assert frames(conn.data_to_send()) == [P.Response(1, 101, [[b"sec-websocket-protocol", b"chat"]], 0)]
    assert conn.is_open(1)
    # worker -> gateway: within the gateway's window (100), in pieces
    assert conn.send_message(1, b"a" * 150, text=False) == 100
    with pytest.raises(P.LocalProtocolError):  # the text bit may not change mid-message
        conn.send_message(1, b"t", text=True)
    assert conn.send_message(1, b"a" * 50) == 0  # no window left
    conn.receive_data(P.encode(P.Credit(1, 60)))
    assert conn.send_message(1, b"a" * 50) == 50
    assert conn.send_message(1, b"") == 0  # empty final piece of a new message
    out = frames(conn.data_to_send())
    assert [(f.flags, len(f.data)) for f in out] == [(2, 100), (0, 50), (0, 0)]
    # gateway -> worker: pieces, the window, the text bit
    evs = conn.receive_data(P.encode(P.Message(1, 3, b"ab")) + P.encode(P.Message(1, 8, b"pong"))
                            + P.encode(P.Message(1, 1, b"c")))
    assert [(e.flags, e.data) for e in evs] == [(3, b"ab"), (8, b"pong"), (1, b"c")]
    conn.send_ping(1, b"p" * 125)
    with pytest.raises(P.LocalProtocolError):
        conn.send_ping(1, b"p" * 126)
    conn.close_websocket(1, 4000, "x" * 200)
    out = frames(conn.data_to_send())
    assert out[0] == P.Message(1, 4, b"p" * 125)
    assert out[1] == P.Close(1, 4000, "x" * 123)
    assert not conn.is_open(1)
    # frames in flight for the closed stream are ignored
    assert conn.receive_data(P.encode(P.Message(1, 0, b"late")) + P.encode(P.Close(1, 1000))) == []


@pytest.mark.parametrize("frame,name", [
    (P.Body(1, b"x"), "stream_state"),          # no request body on a WebSocket stream
    (P.End(1), "stream_state"),
    (P.Message(1, 4, b""), "field_value"),      # PING from the gateway
    (P.Close(1, 1000), "stream_state"),         # before the 101
    (P.Message(1, 0, b""), "stream_state"),
])
def test_ws_illegal_before_accept(frame, name):
    conn = ws_ready()
    conn.receive_data(ws_req(1))
    with pytest.raises(P.RemoteProtocolError) as ei:
        conn.receive_data(P.encode(frame))
    assert ei.value.name == name


@pytest.mark.parametrize("data,name", [
    (P.encode(P.Message(1, 3, b"a")) + P.encode(P.Message(1, 0, b"b")), "stream_state"),  # text bit changes
    (P.encode(P.Message(1, 0, b"x" * 1001)), "flow_control"),
    (P.encode(P.Body(1, b"x")), "stream_state"),
    (P.encode(P.Message(1, 4, b"")), "field_value"),
    (P.encode(P.Message(3, 0, b"")), "stream_state"),  # unused stream id
])
def test_ws_illegal_after_accept(data, name):
    conn = ws_ready(window=1000)
    conn.receive_data(ws_req(1))
    conn.accept_websocket(1)
    with pytest.raises(P.RemoteProtocolError) as ei:
        conn.receive_data(data)
    assert ei.value.name == name


def test_ws_refusal_is_an_ordinary_response_and_101_only_on_ws_streams():
    conn = ws_ready()
    conn.receive_data(ws_req(1) + req(3))
    with pytest.raises(P.LocalProtocolError):
        conn.accept_websocket(3)  # not a WebSocket stream
    assert conn.respond_full(1, 403, P.pack_headers([]), b"no")
    assert not conn.is_open(1)
    gw = P.Link("gateway")
    gw.recv(P.Hello(1, {"max_streams": 4, "window": 10, "websocket": True}))
    gw.send(P.Hello(1, {"window": 10, "websocket": True}))
    gw.send(P.Request(1, b"GET", b"/", 11, [], ("", 0), ("", 0), "http", 3))
    gw.send(P.Request(3, b"GET", b"/", 11, [], ("", 0), ("", 0), "http", 0))
    with pytest.raises(P.RemoteProtocolError) as ei:
        gw.recv(P.Response(1, 101, [], 1))  # 101 with a body
    assert ei.value.name == "stream_state"


def test_ws_credit_for_messages_is_batched_like_body_credit():
    conn = ws_ready(window=1000)
    conn.receive_data(ws_req(1))
    conn.accept_websocket(1)
    conn.data_to_send()
    conn.receive_data(P.encode(P.Message(1, 0, b"x" * 400)))
    conn.consumed(1, 400)
    assert conn.data_to_send() == b""  # below half the window
    conn.receive_data(P.encode(P.Message(1, 0, b"x" * 600)))
    conn.consumed(1, 600)
    assert frames(conn.data_to_send()) == [P.Credit(1, 1000)]
