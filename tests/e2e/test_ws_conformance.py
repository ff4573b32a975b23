"""WebSocket (RFC 6455) conformance of the gateway, on raw sockets.

Every case puts exact bytes on the wire with wsclient.py and asserts the
exact outcome: the handshake's status and headers, the frames that come
back (opcode, payload, close code), and that the gateway closes the TCP
connection when it must. The categories follow Autobahn's test suite
(handshake, framing, pings, reserved bits, opcodes, fragmentation, UTF-8,
close, limits) plus what sluice adds (the worker's decisions, errors,
keepalive, the access log). PROTOCOL.md section 5.2 is what the gateway
promises the worker; where a case checks the worker's side too, it reads
the lines wsworker.py writes to the gateway's log.

Gateways (module scope, stopped by PID): the C echo worker
(examples/c/ws_echo: every message comes back with its type), wsworker.py
(behaviour by path, see its docstring), the plain `hello` worker (no
WebSocket support), and per-test ones for timeouts, keepalive and the
access log.
"""

import json
import os
import re
import signal
import socket
import struct
import sys
import threading
import time
import uuid

import pytest

from conformance_util import running_gateway
from conftest import RssMonitor, example, rss_limit_kib
from httpc import ConnectionClosed
from wsclient import (OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT,
                      RSV1, RSV2, RSV3, WS, Handshake, close_payload, connect, frame)
from wsworker import push_payload

ECHO = example("ws_echo")
if not (os.path.isfile(ECHO) and os.access(ECHO, os.X_OK)):
    pytest.skip(f"the C WebSocket echo worker is not built ({ECHO}): "
                "ninja -C build examples/c/ws_echo", allow_module_level=True)

WSWORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "wsworker.py")
WSW_WINDOW = 65536  # wsworker's HELLO window (what the gateway may send it per stream)
MAX_MESSAGE = 1 << 20  # the gateway's default ws_max_message


def wsworker_cmd():
    return [sys.executable, WSWORKER, "--window", str(WSW_WINDOW)]


# ==========================================================================
# gateways

@pytest.fixture(scope="module")
def echo_gw():
    with running_gateway([ECHO], workers=1) as g:
        yield g


@pytest.fixture(scope="module")
def ww_gw():
    """wsworker.py, two processes (one may die in a test)."""
    with running_gateway(wsworker_cmd(), workers=2) as g:
        yield g


@pytest.fixture(scope="module")
def hello_gw():
    with running_gateway([example("hello")], workers=1) as g:
        yield g


# ==========================================================================
# helpers

def tag():
    return uuid.uuid4().hex[:12]


def alive(g):
    assert g.alive(), f"gateway died (exit {g.proc.poll()})\n{g.log_tail()}"


def worker_end(g, target, timeout=5.0):
    """wsworker's `end` line for the stream of `target` (it is unique per
    test thanks to a tag), as a dict, or None."""
    line = g.wait_log(lambda l: "wsworker[" in l and " end " in l
                      and f"target={target} " in l, timeout)
    if line is None:
        return None
    return dict(re.findall(r"(\w+)=(\S*)", line.split(" end ", 1)[1]))


def text_of(n):
    """n bytes of ASCII text."""
    return (b"abcdefghijklmnopqrstuvwxyz0123456789" * (n // 36 + 1))[:n]


_BIN = bytes((i * 7 + 3) % 256 for i in range(4096))


def binary_of(n):
    """n bytes of binary data (all 256 values)."""
    return (_BIN * (n // len(_BIN) + 1))[:n]


def send_bg(ws, data):
    """Send in a thread (a large message the gateway echoes while the client
    still sends, or one it refuses midway); errors are swallowed."""
    def run():
        try:
            ws.sock.sendall(data)
        except OSError:
            pass
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def fail_case(g, sent, code, *, path="/echo", pieces=None):
    """Send `sent` on an open WebSocket; the gateway must answer with a
    close frame carrying `code` and close the connection."""
    with connect(g.port, path) as ws:
        try:
            ws.send_raw(sent, pieces)
        except (BrokenPipeError, ConnectionResetError):
            pass
        ws.expect_close(code)
    alive(g)


def echo_roundtrip(ws, opcode, data, timeout=10.0):
    if len(data) > 65536:
        t = send_bg(ws, frame(opcode, data))
        ws.expect_message(opcode, data, timeout)
        t.join(timeout)
    else:
        ws.send_frame(opcode, data)
        ws.expect_message(opcode, data, timeout)


# ==========================================================================
# handshake (RFC 6455 section 4, PROTOCOL.md 5.2)

def test_handshake_valid(echo_gw):
    """101 with Upgrade, Connection and the right Sec-WebSocket-Accept; no
    subprotocol and no extension when none was negotiated."""
    ws = WS(echo_gw.port)
    with ws:
        hs = ws.handshake("/", expect=101)
        assert not hs.header_all("sec-websocket-protocol"), hs.resp
        assert not hs.header_all("sec-websocket-extensions"), hs.resp
        assert hs.resp.version == "HTTP/1.1", hs.resp
        ws.send_text("hello")
        ws.expect_message(OP_TEXT, b"hello")
        ws.close(1000)
        ws.expect_close(1000, reply=False)


def test_handshake_rfc_sample_key(echo_gw):
    """The RFC's own example key (section 1.3) gets the RFC's accept value."""
    with WS(echo_gw.port) as ws:
        hs = ws.handshake("/", key="dGhlIHNhbXBsZSBub25jZQ==", expect=101)
        assert hs.header("sec-websocket-accept") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


BAD_HANDSHAKES = {
    "missing-key": dict(omit=("sec-websocket-key",)),
    "key-not-base64": dict(key="not base64 at all!!!!!!!"),
    "key-15-bytes": dict(key="AAAAAAAAAAAAAAAAAAAA"),        # base64 of 15 bytes
    "key-17-bytes": dict(key="AAAAAAAAAAAAAAAAAAAAAAA="),    # 17 bytes
    "key-empty": dict(key=""),
    "two-keys": dict(headers=[("Sec-WebSocket-Key", "AQIDBAUGBwgJCgsMDQ4PEA==")]),
    "missing-version": dict(omit=("sec-websocket-version",)),
    "post": dict(method="POST", headers=[("Content-Length", "0")]),
    "http-1.0": dict(http="HTTP/1.0"),
    "with-body": dict(headers=[("Content-Length", "5")]),
}


@pytest.mark.parametrize("case", sorted(BAD_HANDSHAKES))
def test_handshake_rejected_400(echo_gw, case):
    """An invalid opening handshake is 400 from the gateway, never a 101
    (nor the worker's plain-HTTP 426)."""
    kw = dict(BAD_HANDSHAKES[case])
    with WS(echo_gw.port) as ws:
        extra = b"hello" if case == "with-body" else b""
        hs = ws.handshake("/", extra=extra, **kw)
        assert hs.status == 400, f"{case}: {hs.resp}"
        assert not hs.header_all("sec-websocket-accept"), hs.resp
    alive(echo_gw)


@pytest.mark.parametrize("version", ["8", "7", "14", "0"])
def test_handshake_other_version_426(echo_gw, version):
    """RFC 6455 4.4: an unsupported version gets 426 and the versions the
    server speaks."""
    with WS(echo_gw.port) as ws:
        hs = ws.handshake("/", version=version)
        assert hs.status == 426, hs.resp
        assert [v.strip() for v in hs.header_all("sec-websocket-version")] == ["13"], hs.resp


@pytest.mark.parametrize("connection", ["keep-alive, Upgrade", "Upgrade, keep-alive",
                                        "upgrade", "UPGRADE", "keep-alive,upgrade"])
def test_handshake_connection_tokens(echo_gw, connection):
    """Connection is a token list, matched case-insensitively (RFC 6455
    4.2.1 item 4; Firefox sends "keep-alive, Upgrade")."""
    with connect(echo_gw.port, "/", connection=connection) as ws:
        ws.send_binary(b"\x00\x01")
        ws.expect_message(OP_BINARY, b"\x00\x01")


@pytest.mark.parametrize("upgrade", ["WebSocket", "WEBSOCKET", "websocket"])
def test_handshake_upgrade_case_insensitive(echo_gw, upgrade):
    with connect(echo_gw.port, "/", upgrade=upgrade) as ws:
        ws.send_text("x")
        ws.expect_message(OP_TEXT, b"x")


def test_handshake_header_names_any_case(echo_gw):
    with WS(echo_gw.port) as ws:
        key = "AQIDBAUGBwgJCgsMDQ4PEA=="
        req = ("GET / HTTP/1.1\r\nhost: x\r\nUPGRADE: websocket\r\nconnection: upgrade\r\n"
               f"SEC-WEBSOCKET-KEY: {key}\r\nsec-websocket-version: 13\r\n\r\n").encode()
        ws.key = key
        ws.send_raw(req)
        ws._deadline(5)
        Handshake(ws.read_head(), key).check_accept()


def test_refusal_keeps_connection_usable(ww_gw):
    """A worker's refusal is an ordinary response (403 "no"); the
    connection carries on with the next request."""
    with WS(ww_gw.port) as ws:
        hs = ws.handshake("/refuse")
        assert hs.status == 403 and hs.resp.body == b"no", hs.resp
        assert not hs.header_all("upgrade") and not hs.header_all("sec-websocket-accept")
        ws.send_raw(b"GET /after HTTP/1.1\r\nHost: x\r\n\r\n")
        r = ws.http_response()
        assert r.status == 200 and r.body == b"plain", r


def test_subprotocol_last_offered(ww_gw):
    """The worker picks the last of the offered subprotocols (two fields,
    one a list); the 101 carries exactly it."""
    with WS(ww_gw.port) as ws:
        hs = ws.handshake("/proto", protocols="chat, superchat",
                          headers=[("Sec-WebSocket-Protocol", "v3.proto")], expect=101)
        assert hs.header_all("sec-websocket-protocol") == ["v3.proto"], hs.resp
        ws.send_text("p")
        ws.expect_message(OP_TEXT, b"p")


def test_subprotocol_echo_worker(echo_gw):
    with WS(echo_gw.port) as ws:
        hs = ws.handshake("/?protocol=superchat", protocols="chat, superchat", expect=101)
        assert hs.header_all("sec-websocket-protocol") == ["superchat"], hs.resp


def test_subprotocol_not_offered_is_502(ww_gw):
    """A worker choosing a subprotocol the client did not offer: 502, and the
    worker's stream is CANCELled with invalid_response (7)."""
    t = tag()
    with WS(ww_gw.port) as ws:
        hs = ws.handshake(f"/badproto?t={t}", protocols="chat")
        assert hs.status == 502, hs.resp
    end = worker_end(ww_gw, f"/badproto?t={t}")
    assert end is not None and end["how"] == "cancel" and end["code"] == "7", end
    alive(ww_gw)


def test_extension_offered_not_negotiated(echo_gw):
    """permessage-deflate offered: the gateway negotiates no extension, so
    the 101 has no Sec-WebSocket-Extensions and messages are plain."""
    with WS(echo_gw.port) as ws:
        hs = ws.handshake("/", extensions="permessage-deflate; client_max_window_bits",
                          expect=101)
        assert not hs.header_all("sec-websocket-extensions"), hs.resp
        ws.send_text("plain text")
        m = ws.recv_message()
        assert m.opcode == OP_TEXT and m.data == b"plain text", m


def test_worker_without_websocket_serves_plain(hello_gw):
    """A worker that did not announce websocket gets the upgrade request as
    a plain request (no 101), and the connection stays usable."""
    with WS(hello_gw.port) as ws:
        hs = ws.handshake("/")
        assert hs.status == 200 and hs.resp.body == b"Hello, world!\n", hs.resp
        assert not hs.header_all("sec-websocket-accept"), hs.resp
        assert not hs.resp.has_token("connection", "upgrade"), hs.resp
        ws.send_raw(b"GET /again HTTP/1.1\r\nHost: x\r\n\r\n")
        r = ws.http_response()
        assert r.status == 200, r


def test_frames_behind_handshake(echo_gw):
    """Frames in the same packet as the handshake are not lost."""
    with WS(echo_gw.port) as ws:
        extra = frame(OP_TEXT, b"early") + frame(OP_BINARY, b"\x01\x02")
        ws.handshake("/", extra=extra, expect=101)
        ws.expect_message(OP_TEXT, b"early")
        ws.expect_message(OP_BINARY, b"\x01\x02")


def test_worker_sees_request_and_adds_headers(ww_gw):
    """What the worker sees (PROTOCOL.md 5.2): GET, version 11, the key,
    version and protocol fields, no upgrade/connection; its set-cookie
    reaches the client in the 101."""
    with WS(ww_gw.port) as ws:
        hs = ws.handshake("/headers", protocols="a, b", headers=[("X-Probe", "42")],
                          expect=101)
        assert hs.header_all("set-cookie") == ["a=b"], hs.resp
        m = ws.recv_message()
        assert m.opcode == OP_TEXT, m
        d = json.loads(m.data)
        names = [k for k, _ in d["headers"]]
        hv = dict(d["headers"])
        assert d["method"] == "GET" and d["version"] == 11, d
        assert "upgrade" not in names and "connection" not in names, d
        assert hv.get("sec-websocket-key") == ws.key, d
        assert hv.get("sec-websocket-version") == "13", d
        assert hv.get("sec-websocket-protocol") == "a, b", d
        assert hv.get("x-probe") == "42", d


def test_plain_request_to_websocket_worker(ww_gw):
    with WS(ww_gw.port) as ws:
        ws.send_raw(b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n")
        r = ws.http_response()
        assert r.status == 200 and r.body == b"plain", r


def test_response_timeout_is_504():
    """A worker that never decides: 504 after --response-timeout; the worker
    gets CANCEL timeout (2)."""
    with running_gateway(wsworker_cmd(), "--response-timeout", "1s", workers=1) as g:
        t = tag()
        with WS(g.port, timeout=6) as ws:
            t0 = time.monotonic()
            hs = ws.handshake(f"/hang?t={t}")
            took = time.monotonic() - t0
            assert hs.status == 504, hs.resp
            assert 0.8 <= took <= 4, f"504 after {took:.2f}s"
        end = worker_end(g, f"/hang?t={t}")
        assert end is not None and end["how"] == "cancel" and end["code"] == "2", end


# ==========================================================================
# framing (Autobahn 1.x, 9.x in part)

SIZES = [0, 1, 125, 126, 127, 65535, 65536, 1000000]


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("kind", ["text", "binary"])
def test_echo_sizes(echo_gw, kind, size):
    data = text_of(size) if kind == "text" else binary_of(size)
    with connect(echo_gw.port, "/") as ws:
        echo_roundtrip(ws, OP_TEXT if kind == "text" else OP_BINARY, data)
        ws.close(1000)
        ws.expect_close(1000, reply=False)


def test_payload_split_across_sends(echo_gw):
    data = binary_of(20000)
    with connect(echo_gw.port, "/") as ws:
        ws.send_frame(OP_BINARY, data, pieces=500, delay=0.002)
        ws.expect_message(OP_BINARY, data)


def test_frame_byte_by_byte(echo_gw):
    with connect(echo_gw.port, "/") as ws:
        ws.send_frame(OP_TEXT, b"Hello, byte by byte", pieces=1, delay=0.005)
        ws.expect_message(OP_TEXT, b"Hello, byte by byte")


@pytest.mark.parametrize("size,form", [(5, 16), (5, 64), (200, 64), (0, 64), (125, 16)])
def test_non_minimal_length_accepted(echo_gw, size, form):
    """RFC 6455 5.2 says "the minimal number of bytes MUST be used", but
    that is a rule for senders; like most servers, the gateway accepts a
    longer encoding of the same length."""
    data = text_of(size)
    with connect(echo_gw.port, "/") as ws:
        ws.send_frame(OP_TEXT, data, len_form=form)
        ws.expect_message(OP_TEXT, data)


def test_zero_mask_key(echo_gw):
    with connect(echo_gw.port, "/") as ws:
        ws.send_frame(OP_TEXT, b"unmasked by a zero key", key=b"\0\0\0\0")
        ws.expect_message(OP_TEXT, b"unmasked by a zero key")


def test_many_messages_one_packet(echo_gw):
    msgs = [text_of(i) for i in range(0, 300, 7)]
    with connect(echo_gw.port, "/") as ws:
        ws.send_raw(b"".join(frame(OP_TEXT, m) for m in msgs))
        for m in msgs:
            ws.expect_message(OP_TEXT, m)


def test_unmasked_client_frame_1002(echo_gw):
    fail_case(echo_gw, frame(OP_TEXT, b"clear", mask=False), 1002)


def test_64bit_length_msb_set_1002(echo_gw):
    """The most significant bit of a 64-bit length MUST be 0 (RFC 6455 5.2)."""
    head = bytes([0x82, 0x80 | 127]) + (1 << 63 | 5).to_bytes(8, "big") + b"\0\0\0\0"
    fail_case(echo_gw, head + b"hello", 1002)


# ==========================================================================
# pings and pongs (Autobahn 2.x)

@pytest.mark.parametrize("size", [0, 1, 125])
def test_ping_answered(echo_gw, size):
    data = binary_of(size)
    with connect(echo_gw.port, "/") as ws:
        ws.ping(data)
        m = ws.recv_message()
        assert m.opcode == OP_PONG and m.data == data, m


def test_ping_126_bytes_1002(echo_gw):
    fail_case(echo_gw, frame(OP_PING, b"x" * 126), 1002)


def test_ping_fragmented_1002(echo_gw):
    fail_case(echo_gw, frame(OP_PING, b"frag", fin=False), 1002)


def test_unsolicited_pong_ignored(echo_gw):
    with connect(echo_gw.port, "/") as ws:
        ws.pong(b"unsolicited")
        ws.send_text("after")
        m = ws.recv_message()
        assert m.opcode == OP_TEXT and m.data == b"after", f"{m} (pong not ignored?)"


def test_ping_between_fragments(echo_gw):
    with connect(echo_gw.port, "/") as ws:
        ws.send_raw(frame(OP_TEXT, b"frag1 ", fin=False) + frame(OP_PING, b"mid")
                    + frame(OP_CONT, b"frag2"))
        m = ws.recv_message()
        assert m.opcode == OP_PONG and m.data == b"mid", m
        ws.expect_message(OP_TEXT, b"frag1 frag2")


def test_ten_pings_ten_pongs_in_order(echo_gw):
    with connect(echo_gw.port, "/") as ws:
        ws.send_raw(b"".join(frame(OP_PING, b"p%d" % i) for i in range(10)))
        for i in range(10):
            m = ws.recv_message()
            assert m.opcode == OP_PONG and m.data == b"p%d" % i, m


def test_worker_ping(ww_gw):
    """A worker's MESSAGE PING reaches the client as a ping; the client's
    pong comes back to the worker as MESSAGE PONG."""
    with connect(ww_gw.port, "/ping") as ws:
        m = ws.recv_message()
        assert m.opcode == OP_PING and m.data == b"hi", m
        ws.pong(m.data)
        ws.expect_message(OP_TEXT, b"pong:hi")


# ==========================================================================
# reserved bits and opcodes (Autobahn 3.x, 4.x)

@pytest.mark.parametrize("rsv", [RSV1, RSV2, RSV3, RSV1 | RSV2 | RSV3])
def test_reserved_bits_1002(echo_gw, rsv):
    fail_case(echo_gw, frame(OP_TEXT, b"rsv", rsv=rsv), 1002)


def test_reserved_bit_on_ping_1002(echo_gw):
    fail_case(echo_gw, frame(OP_PING, b"rsv", rsv=RSV1), 1002)


@pytest.mark.parametrize("opcode", [3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF])
def test_reserved_opcode_1002(echo_gw, opcode):
    fail_case(echo_gw, frame(opcode, b"op"), 1002)


def test_reserved_opcode_after_valid_message(echo_gw):
    """The valid message before it is echoed, then the close comes."""
    with connect(echo_gw.port, "/") as ws:
        ws.send_raw(frame(OP_TEXT, b"ok first"))
        ws.expect_message(OP_TEXT, b"ok first")
        ws.send_raw(frame(5, b""))
        ws.expect_close(1002)


# ==========================================================================
# fragmentation (Autobahn 5.x)

def test_text_two_fragments(echo_gw):
    with connect(echo_gw.port, "/") as ws:
        ws.send_fragments(OP_TEXT, ["fragment1 ", "fragment2"])
        ws.expect_message(OP_TEXT, b"fragment1 fragment2")


def test_binary_many_fragments(echo_gw):
    parts = [binary_of(1000)[i:i + 10] for i in range(0, 1000, 10)]
    with connect(echo_gw.port, "/") as ws:
        ws.send_fragments(OP_BINARY, parts)
        ws.expect_message(OP_BINARY, b"".join(parts))


def test_empty_fragments(echo_gw):
    with connect(echo_gw.port, "/") as ws:
        ws.send_fragments(OP_TEXT, ["", "abc", "", ""])
        ws.expect_message(OP_TEXT, b"abc")
        ws.send_fragments(OP_BINARY, ["", ""])
        ws.expect_message(OP_BINARY, b"")


def test_continuation_without_start_1002(echo_gw):
    fail_case(echo_gw, frame(OP_CONT, b"orphan"), 1002)


def test_continuation_fin_without_start_1002(echo_gw):
    fail_case(echo_gw, frame(OP_CONT, b"orphan", fin=False), 1002)


def test_new_message_inside_message_1002(echo_gw):
    fail_case(echo_gw, frame(OP_TEXT, b"one", fin=False) + frame(OP_TEXT, b"two"), 1002)


def test_binary_inside_text_message_1002(echo_gw):
    fail_case(echo_gw, frame(OP_TEXT, b"one", fin=False) + frame(OP_BINARY, b"two"), 1002)


def test_control_frames_interleaved(echo_gw):
    with connect(echo_gw.port, "/") as ws:
        ws.send_raw(frame(OP_TEXT, b"a", fin=False) + frame(OP_PING, b"1")
                    + frame(OP_CONT, b"b", fin=False) + frame(OP_PONG, b"x")
                    + frame(OP_PING, b"2") + frame(OP_CONT, b"c"))
        got = [ws.recv_message() for _ in range(3)]
        assert [(m.opcode, m.data) for m in got] == \
            [(OP_PONG, b"1"), (OP_PONG, b"2"), (OP_TEXT, b"abc")], got


def test_fragments_split_across_sends(echo_gw):
    data = frame(OP_TEXT, b"Hello, ", fin=False) + frame(OP_CONT, b"world!")
    with connect(echo_gw.port, "/") as ws:
        ws.send_raw(data, pieces=3, delay=0.003)
        ws.expect_message(OP_TEXT, b"Hello, world!")


# ==========================================================================
# UTF-8 (Autobahn 6.x)

VALID_UTF8 = ["κόσμε", "Hello-µ@ßöäüàá-UTF-8!!", "\U0001F600 \U0010FFFF \uFFFD \u07FF \u0800"]


@pytest.mark.parametrize("i", range(len(VALID_UTF8)))
def test_utf8_valid(echo_gw, i):
    data = VALID_UTF8[i].encode()
    with connect(echo_gw.port, "/") as ws:
        ws.send_text(data)
        ws.expect_message(OP_TEXT, data)


INVALID_UTF8 = {
    "ff": b"\xff",
    "in-the-middle": b"valid \xce\xba then \xff",
    "overlong-slash": b"\xc0\xaf",
    "overlong-3": b"\xe0\x80\xaf",
    "surrogate-high": b"\xed\xa0\x80",
    "surrogate-low": b"\xed\xbf\xbf",
    "above-10ffff": b"\xf4\x90\x80\x80",
    "f5": b"\xf5\x80\x80\x80",
    "lone-continuation": b"\x80",
    "truncated-at-end": b"abc\xe2\x82",
}


@pytest.mark.parametrize("case", sorted(INVALID_UTF8))
def test_utf8_invalid_1007(echo_gw, case):
    fail_case(echo_gw, frame(OP_TEXT, INVALID_UTF8[case]), 1007)


def test_utf8_split_across_fragments_valid(echo_gw):
    euro = "€".encode()  # e2 82 ac
    emoji = "\U0001F600".encode()
    with connect(echo_gw.port, "/") as ws:
        ws.send_fragments(OP_TEXT, [b"x" + euro[:1], euro[1:2], euro[2:] + emoji[:3], emoji[3:]])
        ws.expect_message(OP_TEXT, b"x" + euro + emoji)


def test_utf8_invalid_split_across_fragments_1007(echo_gw):
    """Autobahn 6.4.1: the invalid sequence spans two fragments."""
    p1 = b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5"
    fail_case(echo_gw, frame(OP_TEXT, p1, fin=False) + frame(OP_CONT, b"\xf4\x90\x80\x80")
              + frame(OP_CONT, b"edited"), 1007)


def test_utf8_truncated_at_fragmented_message_end_1007(echo_gw):
    fail_case(echo_gw, frame(OP_TEXT, b"abc\xf0\x9f", fin=False) + frame(OP_CONT, b"\x98"), 1007)


def test_binary_is_not_utf8_checked(echo_gw):
    with connect(echo_gw.port, "/") as ws:
        ws.send_binary(b"\xff\xfe\xed\xa0\x80")
        ws.expect_message(OP_BINARY, b"\xff\xfe\xed\xa0\x80")


# ==========================================================================
# close (Autobahn 7.x)

def test_client_close_1000(echo_gw):
    """The gateway answers the client's close with 1000 and closes the TCP
    connection itself."""
    with connect(echo_gw.port, "/") as ws:
        ws.close(1000)
        ws.expect_close(1000, reply=False)


def test_client_close_with_reason(echo_gw):
    with connect(echo_gw.port, "/") as ws:
        ws.close(1000, "a reason ✓")
        ws.expect_close(1000, reply=False)


def test_client_close_without_code(echo_gw):
    """An empty close frame is answered (with no code, or 1000)."""
    with connect(echo_gw.port, "/") as ws:
        ws.close(None)
        f = ws.expect_close(None, reply=False)
        assert f.close_code in (1005, 1000), f


@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535])
def test_close_invalid_code_1002(echo_gw, code):
    fail_case(echo_gw, frame(OP_CLOSE, close_payload(code)), 1002)


def test_close_payload_one_byte_1002(echo_gw):
    fail_case(echo_gw, frame(OP_CLOSE, b"\x03"), 1002)


def test_close_reason_invalid_utf8_1007(echo_gw):
    fail_case(echo_gw, frame(OP_CLOSE, close_payload(1000, b"bad \xff reason")), 1007)


def test_close_payload_126_bytes_1002(echo_gw):
    fail_case(echo_gw, frame(OP_CLOSE, close_payload(1000, b"r" * 124)), 1002)


@pytest.mark.parametrize("code", [1000, 1001, 1003, 1007, 1011, 3000, 4999])
def test_close_valid_code_echoed(echo_gw, code):
    with connect(echo_gw.port, "/") as ws:
        ws.close(code, "bye")
        ws.expect_close(code, reply=False)


def test_data_after_close_ignored(echo_gw):
    with connect(echo_gw.port, "/") as ws:
        ws.send_raw(frame(OP_CLOSE, close_payload(1000)) + frame(OP_TEXT, b"too late")
                    + frame(OP_PING, b"late"))
        f = ws.recv_frame()
        assert f.opcode == OP_CLOSE and f.close_code == 1000, f"expected only the close: {f}"
        ws.expect_eof(5)


def test_worker_close_4000(ww_gw):
    with connect(ww_gw.port, "/close") as ws:
        ws.send_text("first")
        ws.expect_close(4000, "bye")


def test_worker_close_client_never_answers(ww_gw):
    """After the worker's close, a client that does not answer is dropped
    within a few seconds."""
    with connect(ww_gw.port, "/close", timeout=10) as ws:
        ws.send_text("first")
        ws.expect_close(4000, "bye", reply=False, eof_timeout=8)


@pytest.mark.parametrize("code,sent", [(4000, 4000), (3000, 3000), (1000, 1000),
                                       (1001, 1001), (1005, None), (1006, 1011),
                                       (1015, 1011), (1004, 1011), (2000, 1011)])
def test_worker_close_code_mapping(ww_gw, code, sent):
    """PROTOCOL.md 3.15: a worker's CLOSE 1005 is a close frame without a
    code; other codes a close frame must not carry become 1011."""
    with connect(ww_gw.port, f"/closecode?c={code}&r=x") as ws:
        f = ws.expect_close(None)
        if sent is None:
            assert f.payload == b"", f"expected an empty close frame: {f}"
        else:
            assert f.close_code == sent, f"worker code {code}: got {f}"


def test_worker_close_reason_cut(ww_gw):
    """A worker's reason above 123 bytes is cut at a character boundary."""
    with connect(ww_gw.port, "/closecode?c=4001&r=long") as ws:
        f = ws.expect_close(4001)
        assert len(f.payload) <= 125, f
        assert f.close_reason == ("\u00e9" * 61).encode(), f.close_reason


def test_worker_invalid_utf8_1011(ww_gw):
    """A text message from the worker that is not UTF-8 never reaches the
    client: close 1011, and the worker gets CLOSE 1011."""
    t = tag()
    with connect(ww_gw.port, f"/badutf8?t={t}") as ws:
        f = ws.expect_close(1011)
    end = worker_end(ww_gw, f"/badutf8?t={t}")
    assert end and end["how"] == "close" and end["code"] == "1011", end


def test_worker_told_client_close(ww_gw):
    """The worker gets CLOSE with the client's code and reason."""
    t = tag()
    with connect(ww_gw.port, f"/echo?t={t}") as ws:
        ws.send_text("x")
        ws.expect_message(OP_TEXT, b"x")
        ws.close(3001, "gone")
        ws.expect_close(3001, reply=False)
    end = worker_end(ww_gw, f"/echo?t={t}")
    assert end and end["how"] == "close" and end["code"] == "3001" and end["reason"] == "gone", end


def test_worker_told_protocol_error(ww_gw):
    t = tag()
    with connect(ww_gw.port, f"/echo?t={t}") as ws:
        ws.send_raw(frame(OP_TEXT, b"x", rsv=RSV2))
        ws.expect_close(1002)
    end = worker_end(ww_gw, f"/echo?t={t}")
    assert end and end["how"] == "close" and end["code"] == "1002", end


def test_worker_told_connection_lost(ww_gw):
    t = tag()
    ws = connect(ww_gw.port, f"/echo?t={t}")
    ws.send_text("x")
    ws.expect_message(OP_TEXT, b"x")
    ws.shutdown()
    end = worker_end(ww_gw, f"/echo?t={t}")
    assert end and end["how"] == "close" and end["code"] == "1006", end


# ==========================================================================
# limits and flow control

def test_message_above_default_limit_1009(echo_gw):
    with connect(echo_gw.port, "/", timeout=10) as ws:
        send_bg(ws, frame(OP_BINARY, binary_of(MAX_MESSAGE + 1)))
        ws.expect_close(1009)
    alive(echo_gw)


def test_message_exactly_default_limit(echo_gw):
    data = binary_of(MAX_MESSAGE)
    with connect(echo_gw.port, "/", timeout=15) as ws:
        echo_roundtrip(ws, OP_BINARY, data, timeout=15)


def test_fragmented_message_above_limit_1009(echo_gw):
    part = binary_of(600000)
    with connect(echo_gw.port, "/", timeout=10) as ws:
        send_bg(ws, frame(OP_BINARY, part, fin=False) + frame(OP_CONT, part))
        ws.expect_close(1009)


@pytest.mark.parametrize("when", ["before-101", "after-101"])
def test_worker_limit(ww_gw, when):
    """LIMIT n from the worker (before its 101, as PROTOCOL.md 5.2 allows,
    or right after it): n bytes pass, n+1 get 1009 and the worker CLOSE
    1009."""
    t = tag()
    target = f"/limit?n=100&t={t}" + ("&after=1" if when == "after-101" else "")
    with connect(ww_gw.port, target) as ws:
        ws.send_text(text_of(100))
        ws.expect_message(OP_TEXT, text_of(100))
        ws.send_text(text_of(101))
        ws.expect_close(1009)
    end = worker_end(ww_gw, target)
    assert end and end["how"] == "close" and end["code"] == "1009", end


def test_worker_limit_raised(ww_gw):
    """A worker may raise the limit above the default for one stream."""
    data = binary_of(MAX_MESSAGE + 1000)
    with connect(ww_gw.port, f"/limit?n={2 * MAX_MESSAGE}&after=1", timeout=15) as ws:
        echo_roundtrip(ws, OP_BINARY, data, timeout=15)


def flood_until_blocked(ws, chunk, cap, seconds=30):
    """Send `chunk` until a send blocks for a second (True) or `cap` bytes or
    `seconds` passed (False). Returns (blocked, bytes sent)."""
    ws.sock.settimeout(1.0)
    sent = 0
    deadline = time.monotonic() + seconds
    while sent < cap and time.monotonic() < deadline:
        try:
            ws.sock.sendall(chunk)
        except socket.timeout:
            return True, sent
        sent += len(chunk)
    return False, sent


def noread_received(g, target):
    got = [int(re.search(r"received=(\d+)", l).group(1)) for l in g.log().splitlines()
           if "wsworker[" in l and " noread " in l and f"target={target} " in l]
    return max(got) if got else 0


@pytest.mark.parametrize("credit", [0, 65536])
def test_noread_gateway_stops_reading(credit):
    """A worker that grants no credit (or some, before its 101): the gateway
    forwards no more than the window (plus that credit), stops reading from
    the client, so the client's sends block, and
    the gateway's memory stays bounded. A paused client is not idle (it waits
    on the worker), so the keepalive does not drop it; when it goes away (an
    abortive close here: a FIN would wait behind its unsent frames) the
    worker is told (CLOSE 1006) at the next keepalive check, which looks at
    the socket's state (--ws-ping-interval 2s here)."""
    limit = rss_limit_kib()
    with running_gateway(wsworker_cmd(), "--ws-ping-interval", "2s", workers=1) as g:
        target = f"/noread?t={tag()}" + (f"&credit={credit}" if credit else "")
        with RssMonitor(g.pid) as mon:
            with connect(g.port, target, sndbuf=65536) as ws:
                base = mon.peak_kib()
                blocked, sent = flood_until_blocked(ws, frame(OP_BINARY, binary_of(16384)),
                                                    64 << 20)
                time.sleep(0.3)
                peak = mon.peak_kib()
                received = noread_received(g, target)
                ws.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        assert blocked, f"the gateway kept reading: {sent} bytes sent without blocking"
        assert sent < (16 << 20), f"{sent} bytes taken before the sends blocked"
        if credit:  # the early credit was used, and no more
            assert received == WSW_WINDOW + credit, f"the worker received {received} bytes"
        assert 0 < received <= WSW_WINDOW + credit, f"the worker received {received} bytes"
        if limit is not None:
            assert peak < limit, f"gateway RSS {peak} KiB"
            assert peak - base < 16 * 1024, f"gateway RSS grew {peak - base} KiB"
        end = worker_end(g, target, timeout=6)
        assert end and end["how"] == "close" and end["code"] == "1006", end
        alive(g)


def test_noread_client_waiting_is_not_idle():
    """A client blocked because the worker takes nothing is waiting, not
    idle: the keepalive does not drop it however long the worker keeps it
    waiting (here 6 intervals)."""
    with running_gateway(wsworker_cmd(), "--ws-ping-interval", "300ms", workers=1) as g:
        target = f"/noread?t={tag()}"
        with connect(g.port, target, sndbuf=65536) as ws:
            blocked, _ = flood_until_blocked(ws, frame(OP_BINARY, binary_of(16384)), 64 << 20)
            assert blocked
            assert worker_end(g, target, timeout=1.8) is None, "the waiting client was dropped"
        alive(g)


def test_push_64mib_slow_reader(ww_gw):
    """64 MiB from the worker to a client that reads slowly: every message
    arrives, complete and in order, then close 1000; the gateway holds no
    more than its window of it."""
    total, size = 64 << 20, 65536
    limit = rss_limit_kib()
    with RssMonitor(ww_gw.pid) as mon:
        with connect(ww_gw.port, f"/push?n={total}&size={size}", rcvbuf=65536,
                     timeout=20) as ws:
            for i in range(total // size):
                if i < 256:
                    time.sleep(0.003)  # slow at first: the gateway must wait, not buffer
                m = ws.recv_message()
                assert m.opcode == OP_BINARY and len(m.data) == size, (i, m)
                if m.data != push_payload(i, size):
                    idx = int.from_bytes(m.data[:8], "big")
                    raise AssertionError(f"message {i}: got message {idx} or corrupt data")
            ws.expect_close(1000)
        peak = mon.peak_kib()
    if limit is not None:
        assert peak < limit, f"gateway RSS {peak} KiB during a 64 MiB push"


def test_echo_backpressure_client_not_reading(echo_gw):
    """A client that sends without reading is slowed down end to end (the
    gateway and the echo worker hold no more than their windows and a
    message): its sends block."""
    with connect(echo_gw.port, "/", rcvbuf=65536, sndbuf=65536) as ws:
        blocked, sent = flood_until_blocked(ws, frame(OP_BINARY, binary_of(65536)),
                                            256 << 20)
    assert blocked, f"{sent} bytes sent, never blocked"
    assert sent < (64 << 20), f"{sent} bytes taken before the sends blocked"
    alive(echo_gw)


def test_wsworker_backpressure_client_not_reading(ww_gw):
    """The same with wsworker's echo (it stops granting credit with 2 MiB of
    echoes queued): the client's sends block within a few MiB."""
    with connect(ww_gw.port, "/echo", rcvbuf=65536, sndbuf=65536) as ws:
        blocked, sent = flood_until_blocked(ws, frame(OP_BINARY, binary_of(65536)),
                                            256 << 20)
    assert blocked, f"{sent} bytes sent, never blocked"
    assert sent < (32 << 20), f"{sent} bytes taken before the sends blocked"


# ==========================================================================
# errors

@pytest.mark.parametrize("path", ["/reset", "/die"])
def test_worker_failure_1011(ww_gw, path):
    with connect(ww_gw.port, path) as ws:
        ws.send_text("go")
        ws.expect_close(1011)
    alive(ww_gw)
    assert len(ww_gw.wait_workers(2, timeout=10)) >= 2, "the worker was not replaced"


def test_gateway_stop_closes_1001():
    """SIGTERM: an open WebSocket is closed with 1001 once the graceful
    timeout has run out, and the worker gets CLOSE 1001."""
    with running_gateway(wsworker_cmd(), "--graceful-timeout", "1s", workers=1) as g:
        t = tag()
        with connect(g.port, f"/echo?t={t}", timeout=8) as ws:
            ws.send_text("x")
            ws.expect_message(OP_TEXT, b"x")
            g.proc.send_signal(signal.SIGTERM)
            t0 = time.monotonic()
            ws.expect_close(1001, timeout=6)
            assert time.monotonic() - t0 < 4, "close 1001 late"
        end = worker_end(g, f"/echo?t={t}")
        assert end and end["how"] == "close" and end["code"] == "1001", end


# ==========================================================================
# keepalive

def test_keepalive_ping():
    """With --ws-ping-interval 300ms an idle client gets pings; answered, the
    WebSocket stays open; unanswered, it is closed within ~2 intervals and
    the worker gets CLOSE 1006."""
    with running_gateway(wsworker_cmd(), "--ws-ping-interval", "300ms", workers=1) as g:
        t = tag()
        with connect(g.port, f"/echo?t={t}") as ws:
            t0 = time.monotonic()
            m = ws.recv_message(timeout=2)
            assert m.opcode == OP_PING, m
            assert time.monotonic() - t0 < 1.0, "first ping late"
            ws.pong(m.data)
            # answered pings keep it open for several intervals
            end = time.monotonic() + 1.5
            while time.monotonic() < end:
                m = ws.recv_message(timeout=2)
                if m.opcode == OP_PING:
                    ws.pong(m.data)
            ws.send_text("still here")
            ws.expect_message(OP_TEXT, b"still here", answer_pings=True)
            # now silent: closed within about two intervals
            t1 = time.monotonic()
            with pytest.raises(ConnectionClosed):  # EOF, maybe after pings
                while time.monotonic() - t1 < 3:
                    f = ws.recv_frame(3)
                    assert f.opcode in (OP_PING, OP_CLOSE), f
            took = time.monotonic() - t1
            assert took < 1.5, f"closed {took:.2f}s after the last pong"
        end = worker_end(g, f"/echo?t={t}")
        assert end and end["code"] == "1006", end


# ==========================================================================
# access log

def test_access_log_line(start_gateway):
    """A closed WebSocket writes one access log line with 101 and its
    message counts."""
    gw = start_gateway("ws_echo", workers=1)
    t = tag()
    with connect(gw.port, f"/ws-log-{t}") as ws:
        for i in range(3):
            ws.send_text(f"m{i}")
            ws.expect_message(OP_TEXT, f"m{i}".encode())
        ws.close(1000)
        ws.expect_close(1000, reply=False)
    line = gw.wait_log(lambda l: f"/ws-log-{t}" in l, timeout=3)
    assert line is not None, gw.log_tail()
    assert '" 101 ' in line and "ws messages=3/3 " in line and "close=1000" in line, line
    lines = [l for l in gw.log().splitlines() if f"/ws-log-{t}" in l]
    assert len(lines) == 1, lines


# ==========================================================================
# the worker's view of the gateway

def test_zz_wsworker_saw_no_violation(ww_gw):
    """wsworker.py checks the gateway's side (windows, text bits, UTF-8 of
    what it forwards): nothing it flagged during this module."""
    bad = [l for l in ww_gw.log().splitlines() if "VIOLATION" in l]
    assert not bad, "\n".join(bad[:20])
