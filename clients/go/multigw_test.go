package sluice_test

// Fake gateways for remote mode (PROTOCOL.md 10.6): each listens (Unix,
// TCP, optionally TLS), accepts any number of links and hands them to the
// test, which drives each one. Every frame goes through a gateway-role
// protocol.Link, so a worker breaking the protocol fails the test.

import (
	"crypto/tls"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	sluice "sluice.dev/go"
	"sluice.dev/go/protocol"
)

// mgw is one fake gateway.
type mgw struct {
	t     *testing.T
	ln    net.Listener
	addr  string      // what the worker is given
	tls   *tls.Config // serve TLS when set
	links chan *mlink
	// hsErrs gets each failed TLS handshake
	hsErrs chan error
	// refuse, when set, closes every link at once (counting accepts)
	mu      sync.Mutex
	refuse  bool
	accepts []time.Time
}

// newMGW listens on network ("unix", "tcp") at addr ("" for a fresh one).
func newMGW(t *testing.T, network, addr string, tc *tls.Config) *mgw {
	t.Helper()
	if network == "unix" && addr == "" {
		addr = sockPath(t)
	}
	if network == "tcp" && addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	g := &mgw{t: t, ln: ln, tls: tc, links: make(chan *mlink, 16), hsErrs: make(chan error, 64)}
	switch {
	case network == "unix":
		g.addr = ln.Addr().String()
	case tc != nil:
		g.addr = "tls:" + ln.Addr().String()
	default:
		g.addr = "tcp:" + ln.Addr().String()
	}
	go g.accept()
	t.Cleanup(func() { g.ln.Close() })
	return g
}

func (g *mgw) port() string {
	_, p, _ := net.SplitHostPort(g.ln.Addr().String())
	return p
}

func (g *mgw) accept() {
	for {
		c, err := g.ln.Accept()
		if err != nil {
			return
		}
		g.mu.Lock()
		g.accepts = append(g.accepts, time.Now())
		refuse := g.refuse
		g.mu.Unlock()
		if refuse {
			c.Close()
			continue
		}
		go func() {
			var st *tls.ConnectionState
			if g.tls != nil {
				tc := tls.Server(c, g.tls)
				_ = tc.SetDeadline(time.Now().Add(waitTimeout))
				if err := tc.Handshake(); err != nil {
					c.Close()
					select {
					case g.hsErrs <- err:
					default:
					}
					return
				}
				_ = tc.SetDeadline(time.Time{})
				s := tc.ConnectionState()
				st, c = &s, tc
			}
			l := &mlink{t: g.t, conn: c, tls: st, link: protocol.NewLink(protocol.RoleGateway, protocol.MaxStreams),
				frames: make(chan *frame, 256), nextSID: 1}
			g.t.Cleanup(func() { c.Close() })
			go l.read()
			g.links <- l
		}()
	}
}

// next returns the next link the worker opened (its HELLO received).
func (g *mgw) next() *mlink {
	g.t.Helper()
	select {
	case l := <-g.links:
		l.hello = l.recv()
		if l.hello.Type != protocol.Hello {
			g.t.Fatalf("first frame: %v", l.hello)
		}
		return l
	case <-time.After(waitTimeout):
		g.t.Fatalf("the worker did not connect to %s", g.addr)
		return nil
	}
}

// attach accepts the next link and completes its handshake; the worker
// has read the gateway's HELLO when it returns (PING answered).
func (g *mgw) attach() *mlink {
	g.t.Helper()
	l := g.next()
	l.send(gwHello(), &protocol.Frame{Type: protocol.Ping, Opaque: 77})
	if f := l.expect(protocol.Pong); f.Opaque != 77 {
		g.t.Fatalf("PONG %d", f.Opaque)
	}
	return l
}

// noLink checks that the worker opens no link within d.
func (g *mgw) noLink(d time.Duration) {
	g.t.Helper()
	select {
	case <-g.links:
		g.t.Fatalf("the worker connected to %s", g.addr)
	case <-time.After(d):
	}
}

func gwHello() *protocol.Frame {
	f := &protocol.Frame{Type: protocol.Hello, Version: protocol.Version}
	f.Settings.Window, f.Settings.WorkerID = 1<<20, 1001
	f.Settings.Has = protocol.KeyWindow | protocol.KeyWorkerID
	return f
}

// mlink is one link accepted by a fake gateway.
type mlink struct {
	t       *testing.T
	conn    net.Conn
	tls     *tls.ConnectionState
	hello   *frame
	mu      sync.Mutex
	link    *protocol.Link
	frames  chan *frame // closed when the worker closed the link
	err     error       // why reading ended
	nextSID uint64
}

func (l *mlink) read() {
	defer close(l.frames)
	dec := protocol.NewDecoder(protocol.DefaultFrame)
	var buf []byte
	tmp := make([]byte, 64<<10)
	var f protocol.Frame
	for {
		n, err := l.conn.Read(tmp)
		buf = append(buf, tmp[:n]...)
		off := 0
		for {
			k, perr := dec.Parse(buf[off:], &f)
			if perr != nil {
				l.t.Errorf("from the worker: %v", perr)
				return
			}
			if k == 0 {
				break
			}
			l.mu.Lock()
			_, rerr := l.link.Recv(&f)
			l.mu.Unlock()
			if rerr != nil {
				l.t.Errorf("the worker broke the protocol: %v (%v)", rerr, cloneFrame(&f, nil))
				return
			}
			if f.Type != protocol.Credit {
				l.frames <- cloneFrame(&f, buf[off:off+k])
			}
			off += k
		}
		buf = append(buf[:0], buf[off:]...)
		if err != nil {
			l.err = err
			return
		}
	}
}

func (l *mlink) send(fs ...*protocol.Frame) {
	l.t.Helper()
	var out []byte
	l.mu.Lock()
	for _, f := range fs {
		if err := l.link.Send(f); err != nil {
			l.mu.Unlock()
			l.t.Fatalf("fake gateway cannot send %v: %v", f.Type, err)
		}
		out = protocol.AppendFrame(out, f)
	}
	l.mu.Unlock()
	_ = l.conn.SetWriteDeadline(time.Now().Add(waitTimeout))
	if _, err := l.conn.Write(out); err != nil {
		l.t.Fatalf("fake gateway write: %v", err)
	}
}

// recv returns the next frame from the worker (CREDIT excepted).
func (l *mlink) recv() *frame {
	l.t.Helper()
	select {
	case f, ok := <-l.frames:
		if !ok {
			l.t.Fatalf("the worker closed the link (%v)", l.err)
		}
		return f
	case <-time.After(waitTimeout):
		l.t.Fatalf("no frame from the worker")
		return nil
	}
}

// get sends GET target and returns the stream id.
func (l *mlink) get(target string) uint64 {
	sid := l.nextSID
	l.nextSID++
	l.send(&protocol.Frame{Type: protocol.Request, Stream: sid, Method: []byte("GET"), Target: []byte(target),
		Version: 11, Scheme: "http", Client: protocol.Addr{Host: "127.0.0.1", Port: 4242},
		Server:  protocol.Addr{Host: "127.0.0.1", Port: 8080},
		Headers: []protocol.Header{{Name: []byte("host"), Value: []byte("example.test")}}})
	return sid
}

// answer reads stream sid's answer: its RESPONSE status and body, or the
// RESET code (status 0).
func (l *mlink) answer(sid uint64) (status int, body string, reset uint64) {
	l.t.Helper()
	var b strings.Builder
	for {
		f := l.recv()
		if f.Stream != sid {
			l.t.Fatalf("unexpected %v", f)
		}
		switch f.Type {
		case protocol.Reset:
			return 0, "", f.Code
		case protocol.Response:
			status = int(f.Status)
			if f.BodyMode == protocol.BodyNone {
				return status, "", 0
			}
		case protocol.Body:
			b.Write(f.Data)
		case protocol.End:
			return status, b.String(), 0
		}
	}
}

// expect returns the next frame, which must be of type typ.
func (l *mlink) expect(typ protocol.Type) *frame {
	l.t.Helper()
	f := l.recv()
	if f.Type != typ {
		l.t.Fatalf("got %v, want %v", f, typ)
	}
	return f
}

// waitClosed waits until the worker closes the link (frames left are
// dropped).
func (l *mlink) waitClosed() {
	l.t.Helper()
	deadline := time.After(waitTimeout)
	for {
		select {
		case _, ok := <-l.frames:
			if !ok {
				if l.err != nil && !errors.Is(l.err, io.EOF) && !errors.Is(l.err, net.ErrClosed) {
					l.t.Logf("link ended: %v", l.err)
				}
				return
			}
		case <-deadline:
			l.t.Fatalf("the worker did not close the link")
		}
	}
}

// rworker is a worker in remote mode run by a test.
type rworker struct {
	t   *testing.T
	w   *sluice.Worker
	log *logBuffer
	res chan error
	got bool
	err error
}

// remoteWorker runs a worker with opts (signals off, its log collected) on
// a goroutine; Close stops it at the end of the test.
func remoteWorker(t *testing.T, h http.Handler, opts ...sluice.Option) *rworker {
	t.Helper()
	r := &rworker{t: t, log: &logBuffer{}, res: make(chan error, 1)}
	all := append([]sluice.Option{sluice.WithSignals(false), sluice.WithErrorLog(log.New(r.log, "", 0))}, opts...)
	w, err := sluice.NewWorker(h, all...)
	if err != nil {
		t.Fatal(err)
	}
	r.w = w
	go func() { r.res <- w.Serve() }()
	t.Cleanup(func() {
		w.Close()
		if !r.got {
			select {
			case <-r.res:
			case <-time.After(waitTimeout):
				t.Errorf("Serve did not return after Close")
			}
		}
		if t.Failed() {
			t.Logf("worker log:\n%s", r.log.String())
		}
	})
	return r
}

// result waits for Serve's result.
func (r *rworker) result() error {
	r.t.Helper()
	if !r.got {
		select {
		case r.err = <-r.res:
			r.got = true
		case <-time.After(waitTimeout):
			r.t.Fatalf("Serve did not return")
		}
	}
	return r.err
}

// running checks that Serve has not returned.
func (r *rworker) running() {
	r.t.Helper()
	select {
	case r.err = <-r.res:
		r.got = true
		r.t.Fatalf("Serve returned: %v", r.err)
	default:
	}
}
