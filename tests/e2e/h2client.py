"""A small HTTP/2 client for the end-to-end tests, on the `h2` package (frame
state machine and HPACK) over a plain or TLS socket that this module drives
itself, so that a test controls flow control (which WINDOW_UPDATEs it sends,
and when), resets, trailers and the order of frames.

    c = H2Conn(port)                          # h2c (prior knowledge)
    c = H2Conn(port, tls=ctx)                 # TLS, ALPN ["h2"]
    sid = c.request("GET", "/x")
    r = c.response(sid)                       # waits for END_STREAM or RST_STREAM
    r.status, r.headers, r.body, r.trailers, r.reset

Flow control is audited as it goes: every WINDOW_UPDATE the server sends is
checked against what the client sent -- a server may only give back window it
consumed, so the increments on a stream never exceed the DATA bytes sent on
it (on the connection: the bytes sent plus the increment announced once at
the start). Violations are listed in `c.fc_violations`.

With `auto_ack=False` the client stops sending WINDOW_UPDATEs for the DATA it
receives: the server must then stop at the window (the h2 package raises a
flow-control error if it does not); `ack(sid, n)` opens it again.
"""

import select
import socket
import ssl
import time

import h2.config
from h2.connection import ConnectionState
import h2.connection
import h2.events
import h2.exceptions
import h2.settings

DEFAULT_TIMEOUT = 10.0


class H2Error(Exception):
    pass


class Stream:
    def __init__(self, sid):
        self.sid = sid
        self.status = None
        self.headers = []        # [(name, value)] bytes, without pseudo-headers
        self.raw_headers = []    # as received, with :status
        self.informational = []
        self.body = bytearray()
        self.data_frames = 0
        self.trailers = None
        self.ended = False
        self.reset = None        # error code of a RST_STREAM from the server
        self.sent = 0            # DATA bytes sent by the client
        self.window_increments = 0
        self.unacked = 0         # DATA bytes received, not yet given back
        self.head_end = False    # END_STREAM came on the HEADERS frame

    def header(self, name):
        name = name.encode() if isinstance(name, str) else name
        for k, v in self.headers:
            if k == name:
                return v.decode("latin-1")
        return None

    def header_all(self, name):
        name = name.encode() if isinstance(name, str) else name
        return [v.decode("latin-1") for k, v in self.headers if k == name]

    @property
    def done(self):
        return self.ended or self.reset is not None

    def __repr__(self):
        b = bytes(self.body[:60])
        return (f"<Stream {self.sid} status={self.status} ended={self.ended} "
                f"reset={self.reset} headers={self.headers!r} body({len(self.body)})={b!r} "
                f"trailers={self.trailers!r}>")


class H2Conn:
    def __init__(self, port, tls=None, host="127.0.0.1", server_hostname="localhost",
                 timeout=DEFAULT_TIMEOUT, window=1 << 20, conn_window=16 << 20,
                 auto_ack=True, max_frame=16384, rcvbuf=None, validate=True):
        self.timeout = timeout
        raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        raw.settimeout(timeout)
        raw.connect((host, port))
        if tls is not None:
            raw = tls.wrap_socket(raw, server_hostname=server_hostname)
            if raw.selected_alpn_protocol() != "h2":
                proto = raw.selected_alpn_protocol()
                raw.close()
                raise H2Error(f"ALPN chose {proto!r}, not h2")
        self.sock = raw
        self.sock.setblocking(False)
        # validate=False lets a test send what h2 would refuse (e.g. a host
        # field that differs from :authority)
        cfg = h2.config.H2Configuration(client_side=True, header_encoding=None,
                                        validate_outbound_headers=validate)
        self.h2 = h2.connection.H2Connection(cfg)
        self.h2.local_settings = h2.settings.Settings(
            client=True, initial_values={
                h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window,
                h2.settings.SettingCodes.MAX_FRAME_SIZE: max_frame,
                h2.settings.SettingCodes.ENABLE_PUSH: 0,
            })
        self.h2.initiate_connection()
        if conn_window > 65535:
            self.h2.increment_flow_control_window(conn_window - 65535)
        self.auto_ack = auto_ack
        self.streams = {}
        self.events = []           # every h2 event, in order
        self.data_order = []       # stream id of each DATA frame, in order
        self.goaway = None         # ConnectionTerminated event
        self.goaway_at = None      # index in self.events
        self.closed = False        # EOF or reset from the server
        self.read_error = None     # how reading ended, if not by EOF
        self.write_failed = None   # a send failed (the server closed): only reading goes on
        self.conn_sent = 0
        self.conn_increments = 0
        self.conn_initial_increment = None
        self.fc_violations = []
        self.remote_settings = {}
        self.frames = []           # (type, flags, stream id, length) of each frame received
        self._out = bytearray()
        self._in = bytearray()
        self._queue(self.h2.data_to_send())
        self.flush()

    # -- context manager ----------------------------------------------------
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    # -- output -------------------------------------------------------------
    def _queue(self, data):
        if data:
            self._out += data

    def flush(self, timeout=None):
        """Write everything h2 produced, reading meanwhile (so that a
        server that stops reading while its own output is stuck never
        deadlocks us)."""
        self._queue(self.h2.data_to_send())
        if self.write_failed:  # what the server already sent may still be read
            self._out.clear()
            return
        deadline = time.monotonic() + (timeout or self.timeout)
        while self._out:
            if self.closed:
                raise H2Error("connection closed by the server while sending")
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout("send timed out")
            r, w, _ = select.select([self.sock], [self.sock], [], left)
            if w:
                try:
                    n = self.sock.send(self._out[:1 << 20])
                except (ssl.SSLWantWriteError, ssl.SSLWantReadError, BlockingIOError):
                    n = 0
                except (ConnectionResetError, BrokenPipeError, ssl.SSLError) as e:
                    self.write_failed = e
                    self._out.clear()
                    return
                del self._out[:n]
            if r and not w:
                self._read_once()
            self._queue(self.h2.data_to_send())

    # -- input --------------------------------------------------------------
    def _read_once(self):
        try:
            data = self.sock.recv(1 << 20)
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
            return True
        except (ConnectionResetError, BrokenPipeError, ssl.SSLError) as e:
            self.closed = True
            self.read_error = e
            return False
        if not data:
            self.closed = True
            return False
        self._feed(data)
        return True

    def _feed(self, data):
        """Hand h2 one frame at a time: the h2 package closes its state
        machine on any GOAWAY, even a graceful one (NO_ERROR, streams up to
        last_stream_id still to be answered), so after a GOAWAY it is put
        back to OPEN for the frames that follow."""
        self._in += data
        while len(self._in) >= 9:
            n = int.from_bytes(self._in[:3], "big")
            if len(self._in) < 9 + n:
                break
            ftype, flags = self._in[3], self._in[4]
            sid = int.from_bytes(self._in[5:9], "big") & 0x7FFFFFFF
            frame = bytes(self._in[:9 + n])
            del self._in[:9 + n]
            self.frames.append((ftype, flags, sid, n))
            self._handle(self.h2.receive_data(frame))
            if ftype == 7 and self.h2.state_machine.state == ConnectionState.CLOSED \
                    and self.goaway is not None and self.goaway.error_code == 0:
                self.h2.state_machine.state = ConnectionState.CLIENT_OPEN

    def pump(self, timeout=0.05):
        """Read and process whatever arrives within `timeout` seconds (one
        read); False once the connection is closed."""
        if self.closed:
            return False
        self.flush()
        pending = isinstance(self.sock, ssl.SSLSocket) and self.sock.pending()
        if not pending:
            r, _, _ = select.select([self.sock], [], [], max(0.0, timeout))
            if not r:
                return True
        ok = self._read_once()
        self.flush()
        return ok

    def wait(self, pred, timeout=None, what="condition"):
        """Pump until pred() holds; raises socket.timeout after `timeout`."""
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        while not pred():
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout(f"timed out waiting for {what}")
            if not self.pump(min(left, 0.2)) and not pred():
                raise H2Error(f"connection closed while waiting for {what}")
        return True

    def wait_closed(self, timeout=None):
        """True when the server closes the connection within `timeout`."""
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        while not self.closed and time.monotonic() < deadline:
            try:
                self.pump(min(0.2, max(0.0, deadline - time.monotonic())))
            except h2.exceptions.ProtocolError:
                raise
            except OSError:
                self.closed = True
        return self.closed

    def _stream(self, sid):
        st = self.streams.get(sid)
        if st is None:
            st = self.streams[sid] = Stream(sid)
        return st

    def _handle(self, events):
        for ev in events:
            self.events.append(ev)
            if isinstance(ev, h2.events.ResponseReceived):
                st = self._stream(ev.stream_id)
                st.raw_headers = list(ev.headers)
                for k, v in ev.headers:
                    if k == b":status":
                        st.status = int(v)
                    else:
                        st.headers.append((k, v))
                st.head_end = ev.stream_ended is not None
            elif isinstance(ev, h2.events.InformationalResponseReceived):
                self._stream(ev.stream_id).informational.append(list(ev.headers))
            elif isinstance(ev, h2.events.TrailersReceived):
                self._stream(ev.stream_id).trailers = list(ev.headers)
            elif isinstance(ev, h2.events.DataReceived):
                st = self._stream(ev.stream_id)
                st.body += ev.data
                st.data_frames += 1
                self.data_order.append(ev.stream_id)
                n = ev.flow_controlled_length
                if n:
                    st.unacked += n
                    if self.auto_ack:
                        self.ack(ev.stream_id, n, stream=ev.stream_ended is None)
            elif isinstance(ev, h2.events.StreamEnded):
                self._stream(ev.stream_id).ended = True
            elif isinstance(ev, h2.events.StreamReset):
                self._stream(ev.stream_id).reset = ev.error_code
            elif isinstance(ev, h2.events.ConnectionTerminated):
                if self.goaway is None:
                    self.goaway = ev
                    self.goaway_at = len(self.events) - 1
            elif isinstance(ev, h2.events.RemoteSettingsChanged):
                for k, v in ev.changed_settings.items():
                    self.remote_settings[k] = v.new_value
            elif isinstance(ev, h2.events.WindowUpdated):
                self._audit_window(ev.stream_id, ev.delta)

    def _audit_window(self, sid, delta):
        if sid == 0:
            if self.conn_initial_increment is None and \
                    not any(f[0] in (0, 1, 3) for f in self.frames):
                # in the server's first flight, before any stream frame:
                # its connection window made bigger than the default
                self.conn_initial_increment = delta
                return
            self.conn_increments += delta
            if self.conn_increments > self.conn_sent:
                self.fc_violations.append(
                    f"connection: WINDOW_UPDATEs total {self.conn_increments} > "
                    f"{self.conn_sent} bytes sent")
            return
        st = self._stream(sid)
        st.window_increments += delta
        if st.window_increments > st.sent:
            self.fc_violations.append(
                f"stream {sid}: WINDOW_UPDATEs total {st.window_increments} > "
                f"{st.sent} bytes sent")

    # -- requests -----------------------------------------------------------
    def ack(self, sid, n, stream=True):
        """Give back n bytes of window on the connection and (if `stream`
        and it is still open) on stream sid."""
        st = self._stream(sid)
        st.unacked = max(0, st.unacked - n)
        self.h2.increment_flow_control_window(n)
        if stream:
            try:
                self.h2.increment_flow_control_window(n, stream_id=sid)
            except (h2.exceptions.StreamClosedError, KeyError):
                pass

    def request(self, method, path, headers=(), body=None, end=True,
                authority="127.0.0.1", scheme=None, trailers=None):
        """Open a stream: HEADERS, then the body (within the windows), then
        trailers. With end (the default) the request side is finished
        (END_STREAM on the last frame); end=False leaves it open. Returns
        the stream id."""
        sid = self.h2.get_next_available_stream_id()
        if scheme is None:
            scheme = "https" if isinstance(self.sock, ssl.SSLSocket) else "http"
        hdrs = [(":method", method), (":scheme", scheme), (":path", path)]
        if authority is not None:
            hdrs.append((":authority", authority))
        hdrs += list(headers)
        hdrs = [(k.encode() if isinstance(k, str) else k,
                 v.encode() if isinstance(v, str) else v) for k, v in hdrs]
        self._stream(sid)
        self.h2.send_headers(sid, hdrs, end_stream=end and not body and not trailers)
        self.flush()
        if body:
            self.send_body(sid, body, end=end and not trailers)
        if trailers:
            self.send_trailers(sid, trailers)
        return sid

    def send_body(self, sid, data, end=False, chunk=16384, timeout=None):
        """Send `data` on sid as the windows allow (pumping input while the
        window is shut)."""
        mv = memoryview(data)
        deadline = time.monotonic() + (timeout or self.timeout * 6)
        st = self._stream(sid)
        while len(mv):
            if st.reset is not None or self.closed:
                raise H2Error(f"stream {sid} reset ({st.reset}) or connection closed "
                              f"while sending")
            try:
                win = min(self.h2.local_flow_control_window(sid),
                          self.h2.max_outbound_frame_size)
            except h2.exceptions.StreamClosedError:
                raise H2Error(f"stream {sid} closed while sending") from None
            if win <= 0:
                if time.monotonic() > deadline:
                    raise socket.timeout(f"stream {sid}: window stayed shut")
                self.pump(0.05)
                continue
            n = min(win, chunk, len(mv))
            self.h2.send_data(sid, bytes(mv[:n]), end_stream=(end and n == len(mv)))
            st.sent += n
            self.conn_sent += n
            mv = mv[n:]
            self.flush()
        if end and not len(data):
            self.h2.end_stream(sid)
        self.flush()

    def send_trailers(self, sid, trailers):
        t = [(k.encode() if isinstance(k, str) else k, v.encode() if isinstance(v, str) else v)
             for k, v in trailers]
        self.h2.send_headers(sid, t, end_stream=True)
        self.flush()

    def ping(self, data=b"sluice!!"):
        self.h2.ping(data)
        self.flush()

    def end(self, sid):
        self.h2.end_stream(sid)
        self.flush()

    def reset(self, sid, code=8):  # CANCEL
        """RST_STREAM, unless the stream is closed already."""
        try:
            self.h2.reset_stream(sid, code)
        except h2.exceptions.StreamClosedError:
            return
        self.flush()

    def response(self, sid, timeout=None):
        st = self._stream(sid)
        self.wait(lambda: st.done, timeout, what=f"stream {sid}")
        return st

    def get(self, path, timeout=None, **kw):
        return self.response(self.request("GET", path, **kw), timeout)


def client_tls_context(cafile=None, alpn=("h2",)):
    """A client context offering `alpn`; verifies against cafile when given."""
    if cafile:
        ctx = ssl.create_default_context(cafile=cafile)
    else:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    return ctx
