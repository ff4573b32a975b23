package sluice_test

// A scripted fake gateway for in-process tests of the runtime (the idea of
// clients/python/tests/fakegw.py). The worker runs its real Serve on a
// goroutine and connects over a real Unix socket to this gateway, which the
// test drives step by step: send frames, receive frames. Every frame in
// either direction goes through a gateway-role protocol.Link, so a worker
// that breaks the protocol (a BODY beyond its window, a frame on a stream
// it closed, a frame larger than the gateway's max_frame...) fails the test
// with the spec's error name. Every wait is bounded.

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	sluice "sluice.dev/go"
	"sluice.dev/go/protocol"
)

// waitTimeout bounds every wait of a test for something that should happen.
const waitTimeout = 5 * time.Second

// gwOpts configures the fake gateway.
type gwOpts struct {
	window      uint64 // the gateway HELLO's window (0: 1 MiB; see zeroWindow)
	zeroWindow  bool   // announce window 0
	maxFrame    uint64 // the gateway HELLO's max_frame (0: not sent, 1 MiB)
	autoCredit  bool   // grant back every response BODY as soon as it arrives
	noHello     bool   // do not answer the worker's HELLO (the test does, raw)
	deferRetire bool   // hand RETIRE to the test without applying it to the link (see applyDeferred)
	tcp         bool   // listen on 127.0.0.1 (the worker's address is then tcp:HOST:PORT)
	websocket   bool   // announce websocket in the gateway's HELLO
	// serve, when set, runs the worker instead of NewWorker and
	// (*Worker).Serve (g.w is then nil); opts include WithSocket(addr)
	serve func(addr string, h http.Handler, opts ...sluice.Option) error
}

// frame is a received frame, deep-copied, with its bytes on the wire.
type frame struct {
	protocol.Frame
	raw []byte
}

func (f *frame) String() string {
	s := fmt.Sprintf("%v sid=%d", f.Type, f.Stream)
	switch f.Type {
	case protocol.Response:
		s += fmt.Sprintf(" status=%d body=%d headers=%s", f.Status, f.BodyMode, fmtHeaders(f.Headers))
	case protocol.Body:
		s += fmt.Sprintf(" %d bytes", len(f.Data))
	case protocol.End:
		s += " trailers=" + fmtHeaders(f.Headers)
	case protocol.Reset, protocol.Error:
		s += fmt.Sprintf(" code=%d %q", f.Code, f.Message)
	case protocol.Limit:
		s += fmt.Sprintf(" max_body=%d", f.MaxBody)
	}
	return s
}

func fmtHeaders(hs []protocol.Header) string {
	var b strings.Builder
	b.WriteString("[")
	for i, h := range hs {
		if i > 0 {
			b.WriteString(" ")
		}
		fmt.Fprintf(&b, "%s=%q", h.Name, h.Value)
	}
	b.WriteString("]")
	return b.String()
}

func cloneFrame(f *protocol.Frame, raw []byte) *frame {
	c := &frame{Frame: *f, raw: append([]byte(nil), raw...)}
	c.Method = append([]byte(nil), f.Method...)
	c.Target = append([]byte(nil), f.Target...)
	c.Data = append([]byte(nil), f.Data...)
	c.Headers = nil
	for _, h := range f.Headers {
		c.Headers = append(c.Headers, protocol.Header{Name: append([]byte(nil), h.Name...), Value: append([]byte(nil), h.Value...)})
	}
	return c
}

// logBuffer collects the worker's error log.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

type fakeGW struct {
	t        *testing.T
	opts     gwOpts
	path     string
	ln       net.Listener
	conn     net.Conn
	w        *sluice.Worker
	log      *logBuffer
	serveErr chan error
	served   bool
	serveRes error
	hello    *frame // the worker's HELLO

	mu           sync.Mutex
	cond         sync.Cond
	link         *protocol.Link
	frames       []*frame         // received and not yet taken (CREDIT excepted)
	credited     map[uint64]int64 // CREDIT granted by the worker, per stream
	creditFrames map[uint64]int   // CREDIT frames per stream
	rerr         error            // why the reader stopped (io.EOF: the worker closed the link)
	protoErr     error            // a protocol violation by the worker
	closed       bool
	nextSID      uint64
	nextPing     uint64
	readerDone   chan struct{}
}

// sockPath is a fresh Unix socket path (t.TempDir, or a shorter one when
// that would not fit a sockaddr_un).
func sockPath(t *testing.T) string {
	p := filepath.Join(t.TempDir(), "gw.sock")
	if len(p) < 100 && !strings.Contains(p, ",") { // a comma would make it a list of two
		return p
	}
	dir, err := os.MkdirTemp("", "sgw")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Join(dir, "gw.sock")
}

// startGW starts a worker serving h (with opts) and accepts its link; it
// returns once the worker's HELLO was received and (unless o.noHello) the
// gateway's HELLO sent.
func startGW(t *testing.T, h http.Handler, o gwOpts, opts ...sluice.Option) *fakeGW {
	t.Helper()
	g := &fakeGW{
		t: t, opts: o, path: sockPath(t), log: &logBuffer{},
		serveErr:     make(chan error, 1),
		link:         protocol.NewLink(protocol.RoleGateway, protocol.MaxStreams),
		credited:     map[uint64]int64{},
		creditFrames: map[uint64]int{},
		nextSID:      1,
		readerDone:   make(chan struct{}),
	}
	g.cond.L = &g.mu
	var ln net.Listener
	var err error
	if o.tcp {
		ln, err = net.Listen("tcp", "127.0.0.1:0")
		if err == nil {
			g.path = "tcp:" + ln.Addr().String()
		}
	} else {
		ln, err = net.Listen("unix", g.path)
	}
	if err != nil {
		t.Fatal(err)
	}
	g.ln = ln
	all := append([]sluice.Option{sluice.WithSocket(g.path), sluice.WithSignals(false),
		sluice.WithErrorLog(log.New(g.log, "", 0))}, opts...)
	if o.serve != nil {
		go func() { g.serveErr <- o.serve(g.path, h, all...) }()
	} else {
		w, err := sluice.NewWorker(h, all...)
		if err != nil {
			ln.Close()
			t.Fatal(err)
		}
		g.w = w
		go func() { g.serveErr <- w.Serve() }()
	}
	_ = ln.(interface{ SetDeadline(time.Time) error }).SetDeadline(time.Now().Add(waitTimeout))
	conn, err := ln.Accept()
	if err != nil {
		ln.Close()
		select {
		case e := <-g.serveErr:
			t.Fatalf("the worker did not connect: %v (Serve: %v)", err, e)
		default:
		}
		t.Fatalf("the worker did not connect: %v", err)
	}
	g.conn = conn
	t.Cleanup(g.close)
	go g.readLoop()

	g.hello = g.recv()
	if g.hello.Type != protocol.Hello {
		t.Fatalf("first frame from the worker: %v, want HELLO", g.hello)
	}
	if !o.noHello {
		g.send(g.gatewayHello())
	}
	return g
}

func (g *fakeGW) gatewayHello() *protocol.Frame {
	f := &protocol.Frame{Type: protocol.Hello, Version: protocol.Version}
	st := &f.Settings
	st.Window = 1 << 20
	if g.opts.window != 0 {
		st.Window = g.opts.window
	}
	if g.opts.zeroWindow {
		st.Window = 0
	}
	st.Server, st.Pool, st.WorkerID = "fakegw/0", "test", 7
	st.Has = protocol.KeyWindow | protocol.KeyServer | protocol.KeyPool | protocol.KeyWorkerID
	if g.opts.maxFrame != 0 {
		st.MaxFrame = g.opts.maxFrame
		st.Has |= protocol.KeyMaxFrame
	}
	if g.opts.websocket {
		st.WebSocket = true
		st.Has |= protocol.KeyWebSocket
	}
	return f
}

// close ends the link (the worker's Serve returns) and checks that the
// worker kept to the protocol and that Serve did return.
func (g *fakeGW) close() {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
	g.conn.Close()
	g.ln.Close()
	if g.opts.tcp && g.w != nil {
		g.w.Close() // a tcp: address is remote mode: Serve returns only after a stop
	}
	select {
	case <-g.readerDone:
	case <-time.After(waitTimeout):
		g.t.Errorf("the fake gateway's reader did not stop")
	}
	if !g.served {
		select {
		case g.serveRes = <-g.serveErr:
			g.served = true
		case <-time.After(waitTimeout):
			g.t.Errorf("Serve did not return when the link closed")
		}
	}
	g.mu.Lock()
	perr := g.protoErr
	g.mu.Unlock()
	if perr != nil {
		g.t.Errorf("the worker broke the protocol: %v", perr)
	}
	if g.t.Failed() {
		g.t.Logf("worker log:\n%s", g.log.String())
	}
}

// serveResult waits for the worker's Serve to return and gives its result.
func (g *fakeGW) serveResult() error {
	g.t.Helper()
	if !g.served {
		select {
		case g.serveRes = <-g.serveErr:
			g.served = true
		case <-time.After(waitTimeout):
			g.t.Fatalf("Serve did not return")
		}
	}
	return g.serveRes
}

// ---- reading ----

func (g *fakeGW) readLoop() {
	defer close(g.readerDone)
	maxFrame := protocol.DefaultFrame
	if g.opts.maxFrame != 0 {
		maxFrame = int(g.opts.maxFrame)
	}
	dec := protocol.NewDecoder(maxFrame)
	var buf []byte
	tmp := make([]byte, 256<<10)
	var f protocol.Frame
	for {
		n, err := g.conn.Read(tmp)
		buf = append(buf, tmp[:n]...)
		off := 0
		for {
			k, perr := dec.Parse(buf[off:], &f)
			if perr != nil {
				g.stop(perr, perr)
				return
			}
			if k == 0 {
				break
			}
			g.got(&f, buf[off:off+k])
			off += k
		}
		buf = append(buf[:0], buf[off:]...)
		if err != nil {
			if len(buf) > 0 {
				e := &protocol.LinkError{Code: protocol.Truncated, Msg: "the worker's link ended inside a frame"}
				g.stop(e, e)
				return
			}
			g.stop(err, nil)
			return
		}
	}
}

func (g *fakeGW) stop(err, protoErr error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed && protoErr == nil {
		err = net.ErrClosed
	}
	g.rerr = err
	if g.protoErr == nil {
		g.protoErr = protoErr
	}
	g.cond.Broadcast()
}

// got applies one frame from the worker to the gateway's link.
func (g *fakeGW) got(f *protocol.Frame, raw []byte) {
	g.mu.Lock()
	defer g.mu.Unlock()
	defer g.cond.Broadcast()
	if f.Type == protocol.Retire && g.opts.deferRetire {
		c := cloneFrame(f, raw)
		g.frames = append(g.frames, c)
		return
	}
	if _, err := g.link.Recv(f); err != nil {
		if g.protoErr == nil {
			g.protoErr = fmt.Errorf("%v (frame %v)", err, cloneFrame(f, raw))
		}
		return
	}
	if f.Type == protocol.Credit {
		g.credited[f.Stream] += int64(f.Increment)
		g.creditFrames[f.Stream]++
		return
	}
	if f.Type == protocol.Body && g.opts.autoCredit && len(f.Data) > 0 && g.link.Stream(f.Stream) != nil {
		cr := protocol.Frame{Type: protocol.Credit, Stream: f.Stream, Increment: uint64(len(f.Data))}
		if err := g.link.Send(&cr); err == nil {
			_ = g.conn.SetWriteDeadline(time.Now().Add(waitTimeout))
			_, _ = g.conn.Write(protocol.AppendFrame(nil, &cr))
		}
	}
	g.frames = append(g.frames, cloneFrame(f, raw))
}

// waitLocked waits (mu held) until cond holds or d has passed.
func (g *fakeGW) waitLocked(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	tm := time.AfterFunc(d, func() {
		g.mu.Lock()
		g.cond.Broadcast()
		g.mu.Unlock()
	})
	defer tm.Stop()
	for !cond() {
		if !time.Now().Before(deadline) {
			return false
		}
		g.cond.Wait()
	}
	return true
}

// take removes and returns the first queued frame that match accepts,
// waiting up to d; nil when none came (err says why).
func (g *fakeGW) take(d time.Duration, match func(*frame) bool) (*frame, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	var got *frame
	find := func() bool {
		for i, f := range g.frames {
			if match(f) {
				got = f
				g.frames = append(g.frames[:i:i], g.frames[i+1:]...)
				return true
			}
		}
		return g.rerr != nil || g.protoErr != nil
	}
	if !g.waitLocked(d, find) {
		return nil, errors.New("timed out")
	}
	if got == nil {
		if g.protoErr != nil {
			return nil, fmt.Errorf("the worker broke the protocol: %v", g.protoErr)
		}
		return nil, fmt.Errorf("the link ended: %w", g.rerr)
	}
	return got, nil
}

// recv returns the next frame from the worker (CREDIT excepted).
func (g *fakeGW) recv() *frame {
	g.t.Helper()
	f, err := g.take(waitTimeout, func(*frame) bool { return true })
	if err != nil {
		g.t.Fatalf("no frame from the worker: %v", err)
	}
	return f
}

// recvFor returns the next frame of stream sid (other frames stay queued).
func (g *fakeGW) recvFor(sid uint64) *frame {
	g.t.Helper()
	f, err := g.take(waitTimeout, func(f *frame) bool { return f.Stream == sid })
	if err != nil {
		g.t.Fatalf("no frame for stream %d from the worker: %v", sid, err)
	}
	return f
}

// recvType returns the next frame of type typ (other frames stay queued).
func (g *fakeGW) recvType(typ protocol.Type) *frame {
	g.t.Helper()
	f, err := g.take(waitTimeout, func(f *frame) bool { return f.Type == typ })
	if err != nil {
		g.t.Fatalf("no %v from the worker: %v", typ, err)
	}
	return f
}

// sync sends PING and waits for its PONG: every frame the worker queued
// before it read the PING has then arrived.
func (g *fakeGW) sync() {
	g.t.Helper()
	g.mu.Lock()
	g.nextPing++
	op := g.nextPing + 1000
	g.mu.Unlock()
	g.send(&protocol.Frame{Type: protocol.Ping, Opaque: op})
	if _, err := g.take(waitTimeout, func(f *frame) bool { return f.Type == protocol.Pong && f.Opaque == op }); err != nil {
		g.t.Fatalf("no PONG %d: %v", op, err)
	}
}

// pending returns the frames of stream sid received and not yet taken.
func (g *fakeGW) pending(sid uint64) []*frame {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []*frame
	for _, f := range g.frames {
		if f.Stream == sid {
			out = append(out, f)
		}
	}
	return out
}

// quiet checks that the worker sends nothing for sid within d.
func (g *fakeGW) quiet(sid uint64, d time.Duration) {
	g.t.Helper()
	time.Sleep(d)
	g.sync()
	if fs := g.pending(sid); len(fs) > 0 {
		g.t.Fatalf("unexpected frames on stream %d: %v", sid, fs)
	}
}

// creditOf returns the CREDIT the worker granted on sid so far, and in how many frames.
func (g *fakeGW) creditOf(sid uint64) (int64, int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.credited[sid], g.creditFrames[sid]
}

// waitClosed waits until the worker closes the link.
func (g *fakeGW) waitClosed() {
	g.t.Helper()
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.waitLocked(waitTimeout, func() bool { return g.rerr != nil || g.protoErr != nil }) {
		g.t.Fatalf("the worker did not close the link")
	}
	if g.protoErr != nil {
		g.t.Fatalf("the worker broke the protocol: %v", g.protoErr)
	}
	if g.rerr != io.EOF {
		g.t.Fatalf("the link ended with %v, want EOF", g.rerr)
	}
}

// ---- sending ----

func (g *fakeGW) trySend(fs ...*protocol.Frame) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []byte
	for _, f := range fs {
		if err := g.link.Send(f); err != nil {
			return fmt.Errorf("the fake gateway may not send %v: %w", f.Type, err)
		}
		out = protocol.AppendFrame(out, f)
	}
	_ = g.conn.SetWriteDeadline(time.Now().Add(waitTimeout))
	_, err := g.conn.Write(out)
	return err
}

// send checks frames with the gateway's link and writes them in one write.
func (g *fakeGW) send(fs ...*protocol.Frame) {
	g.t.Helper()
	if err := g.trySend(fs...); err != nil {
		g.t.Fatal(err)
	}
}

// sendRaw writes bytes bypassing the link.
func (g *fakeGW) sendRaw(b []byte) {
	g.t.Helper()
	_ = g.conn.SetWriteDeadline(time.Now().Add(waitTimeout))
	if _, err := g.conn.Write(b); err != nil {
		g.t.Fatal(err)
	}
}

// applyDeferred applies a RETIRE held back by deferRetire to the link.
func (g *fakeGW) applyDeferred() {
	g.mu.Lock()
	defer g.mu.Unlock()
	f := protocol.Frame{Type: protocol.Retire}
	if _, err := g.link.Recv(&f); err != nil {
		g.t.Errorf("RETIRE: %v", err)
	}
}

// req describes a REQUEST; zero fields get defaults (GET / HTTP/1.1, host
// example.test, client 127.0.0.1:4242, server 127.0.0.1:8080, http, no body).
type req struct {
	method, target string
	version        uint64
	headers        [][2]string // nil: host: example.test
	client, server *protocol.Addr
	scheme         string
	body           uint64
}

func (g *fakeGW) request(r req) uint64 {
	g.t.Helper()
	g.mu.Lock()
	sid := g.nextSID
	g.nextSID += 2
	g.mu.Unlock()
	g.send(g.requestFrame(sid, r))
	return sid
}

func (g *fakeGW) requestFrame(sid uint64, r req) *protocol.Frame {
	f := &protocol.Frame{Type: protocol.Request, Stream: sid, Method: []byte(r.method), Target: []byte(r.target),
		Version: r.version, Scheme: r.scheme, BodyMode: r.body,
		Client: protocol.Addr{Host: "127.0.0.1", Port: 4242}, Server: protocol.Addr{Host: "127.0.0.1", Port: 8080}}
	if r.method == "" {
		f.Method = []byte("GET")
	}
	if r.target == "" {
		f.Target = []byte("/")
	}
	if r.version == 0 {
		f.Version = 11
	}
	if r.scheme == "" {
		f.Scheme = "http"
	}
	if r.client != nil {
		f.Client = *r.client
	}
	if r.server != nil {
		f.Server = *r.server
	}
	hs := r.headers
	if hs == nil {
		hs = [][2]string{{"host", "example.test"}}
	}
	for _, h := range hs {
		f.Headers = append(f.Headers, protocol.Header{Name: []byte(h[0]), Value: []byte(h[1])})
	}
	return f
}

// get sends GET target without a body.
func (g *fakeGW) get(target string) uint64 {
	g.t.Helper()
	return g.request(req{target: target})
}

// body sends data on sid within the worker's credit (waiting for CREDIT as
// needed), in frames of at most chunk bytes (0: as large as allowed), then
// END when end is set. It stops when the worker closes the stream (it may
// answer before it has read the whole body).
func (g *fakeGW) body(sid uint64, data []byte, chunk int, end bool) {
	g.t.Helper()
	open := func() bool {
		g.mu.Lock()
		defer g.mu.Unlock()
		return g.link.Stream(sid) != nil
	}
	for len(data) > 0 {
		g.mu.Lock()
		var win int64
		closed := false
		ok := g.waitLocked(waitTimeout, func() bool {
			s := g.link.Stream(sid)
			if s == nil {
				closed = true
				return true
			}
			win = s.SendWindow()
			return win > 0 || g.rerr != nil
		})
		g.mu.Unlock()
		if closed {
			return
		}
		if !ok || win <= 0 {
			g.t.Fatalf("stream %d: no credit for the request body (%d bytes left)", sid, len(data))
		}
		n := min(int64(len(data)), win, int64(protocol.DefaultFrame-protocol.DataOverhead))
		if chunk > 0 {
			n = min(n, int64(chunk))
		}
		if err := g.trySend(&protocol.Frame{Type: protocol.Body, Stream: sid, Data: data[:n]}); err != nil {
			if !open() {
				return
			}
			g.t.Fatal(err)
		}
		data = data[n:]
	}
	if end {
		if err := g.trySend(&protocol.Frame{Type: protocol.End, Stream: sid}); err != nil && open() {
			g.t.Fatal(err)
		}
	}
}

// ---- responses ----

// reply is what the worker answered on one stream.
type reply struct {
	status     int
	headers    []protocol.Header
	bodyMode   uint64
	body       []byte
	bodyFrames []*frame
	trailers   []protocol.Header
	reset      *frame // the RESET that ended the stream, if one did
	ended      bool   // END (or RESPONSE without a body)
}

// get returns the values of header name (case-insensitive), in order.
func hvals(hs []protocol.Header, name string) []string {
	var out []string
	for _, h := range hs {
		if strings.EqualFold(string(h.Name), name) {
			out = append(out, string(h.Value))
		}
	}
	return out
}

func (r *reply) header(name string) string {
	vs := hvals(r.headers, name)
	if len(vs) == 0 {
		return ""
	}
	return strings.Join(vs, ", ")
}

func (r *reply) has(name string) bool { return len(hvals(r.headers, name)) > 0 }

// response reads stream sid's frames up to its end (END, RESET, or RESPONSE
// without a body).
func (g *fakeGW) response(sid uint64) *reply {
	g.t.Helper()
	r := &reply{}
	for {
		f := g.recvFor(sid)
		switch f.Type {
		case protocol.Response:
			r.status, r.headers, r.bodyMode = int(f.Status), f.Headers, f.BodyMode
			if f.BodyMode == protocol.BodyNone {
				r.ended = true
				return r
			}
		case protocol.Body:
			r.body = append(r.body, f.Data...)
			r.bodyFrames = append(r.bodyFrames, f)
		case protocol.End:
			r.trailers = f.Headers
			r.ended = true
			return r
		case protocol.Reset:
			r.reset = f
			return r
		case protocol.Limit:
		default:
			g.t.Fatalf("stream %d: unexpected %v", sid, f)
		}
	}
}

// recvNoLimit returns the next frame of sid, skipping LIMIT.
func (g *fakeGW) recvNoLimit(sid uint64) *frame {
	g.t.Helper()
	for {
		f := g.recvFor(sid)
		if f.Type != protocol.Limit {
			return f
		}
	}
}

// within fails the test when ch does not deliver within waitTimeout.
func within[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(waitTimeout):
		t.Fatalf("timed out waiting for %s", what)
	}
	var zero T
	return zero
}

// notYet checks that ch delivers nothing within d.
func notYet[T any](t *testing.T, ch <-chan T, d time.Duration, what string) {
	t.Helper()
	select {
	case v := <-ch:
		t.Fatalf("%s too early: %v", what, v)
	case <-time.After(d):
	}
}
