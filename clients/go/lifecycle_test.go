package sluice_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	sluice "sluice.dev/go"
	"sluice.dev/go/protocol"
)

// outcome is what a blocked handler saw when it was released.
type outcome struct {
	err   error // from its Read, Write or Flush
	cause error // context.Cause(r.Context())
	ctx   error // r.Context().Err()
}

func TestCancelEndsTheHandler(t *testing.T) {
	reading, writing, flushing := make(chan outcome, 1), make(chan outcome, 1), make(chan outcome, 1)
	mux := http.NewServeMux()
	mux.HandleFunc("/read", func(w http.ResponseWriter, r *http.Request) {
		_, err := r.Body.Read(make([]byte, 10))
		reading <- outcome{err, context.Cause(r.Context()), r.Context().Err()}
	})
	mux.HandleFunc("/write", func(w http.ResponseWriter, r *http.Request) {
		_, err := w.Write(pattern(bigWrite))
		writing <- outcome{err, context.Cause(r.Context()), r.Context().Err()}
	})
	mux.HandleFunc("/flush", func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		if err := rc.Flush(); err != nil {
			t.Errorf("first Flush: %v", err)
		}
		<-r.Context().Done()
		err := rc.Flush()
		if _, werr := w.Write([]byte("x")); !errors.Is(werr, sluice.ErrStreamClosed) {
			t.Errorf("Write after CANCEL: %v", werr)
		}
		flushing <- outcome{err, context.Cause(r.Context()), r.Context().Err()}
	})
	mux.HandleFunc("/ok", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) })
	g := startGW(t, mux, gwOpts{window: 1000})

	rd := g.request(req{method: "POST", target: "/read", body: protocol.BodyFollows})
	wr := g.get("/write")
	fl := g.get("/flush")
	if f := g.recvFor(wr); f.Type != protocol.Response {
		t.Fatalf("got %v", f)
	}
	g.expectBody(wr, 1000)
	if f := g.recvFor(fl); f.Type != protocol.Response {
		t.Fatalf("got %v", f)
	}
	g.mu.Lock() // the reader is in Read once it granted credit
	g.waitLocked(waitTimeout, func() bool { return g.credited[rd] > 0 })
	g.mu.Unlock()
	g.sync()

	g.send(&protocol.Frame{Type: protocol.Cancel, Stream: rd, Reason: protocol.CancelClientClosed, Message: "gone"},
		&protocol.Frame{Type: protocol.Cancel, Stream: wr, Reason: protocol.CancelTimeout},
		&protocol.Frame{Type: protocol.Cancel, Stream: fl, Reason: 99})
	for _, c := range []struct {
		name    string
		ch      chan outcome
		reason  uint64
		message string
		text    string
	}{
		{"Read", reading, protocol.CancelClientClosed, "gone", "client_closed (gone)"},
		{"Write", writing, protocol.CancelTimeout, "", "timeout"},
		{"Flush", flushing, 99, "", "internal"},
	} {
		o := within(t, c.ch, c.name)
		if !errors.Is(o.err, sluice.ErrStreamClosed) {
			t.Errorf("%s: %v, want ErrStreamClosed", c.name, o.err)
		}
		var ce *sluice.CancelError
		if !errors.As(o.cause, &ce) || ce.Reason != c.reason || ce.Message != c.message {
			t.Errorf("%s: context cause %#v, want a *CancelError with reason %d", c.name, o.cause, c.reason)
		} else if !strings.HasSuffix(ce.Error(), c.text) {
			t.Errorf("%s: %q, want it to end with %q", c.name, ce.Error(), c.text)
		}
		if !errors.Is(o.cause, sluice.ErrStreamClosed) {
			t.Errorf("%s: cause %v is not ErrStreamClosed", c.name, o.cause)
		}
		if o.ctx != context.Canceled {
			t.Errorf("%s: ctx.Err() %v", c.name, o.ctx)
		}
	}
	// nothing more on the cancelled streams; the worker serves on
	for _, sid := range []uint64{rd, wr, fl} {
		g.quiet(sid, 0)
	}
	if r := g.response(g.get("/ok")); string(r.body) != "ok" {
		t.Errorf("after CANCEL: %q", r.body)
	}
	// late frames for a cancelled stream are ignored
	g.sendRaw(protocol.AppendFrame(nil, &protocol.Frame{Type: protocol.Credit, Stream: wr, Increment: 10}))
	if r := g.response(g.get("/ok")); string(r.body) != "ok" {
		t.Errorf("after a late CREDIT: %q", r.body)
	}
}

func TestLinkLostCancelsEverything(t *testing.T) {
	waiting, reading := make(chan outcome, 1), make(chan outcome, 1)
	started := make(chan bool, 2)
	mux := http.NewServeMux()
	mux.HandleFunc("/wait", func(w http.ResponseWriter, r *http.Request) {
		started <- true
		<-r.Context().Done()
		waiting <- outcome{nil, context.Cause(r.Context()), r.Context().Err()}
	})
	mux.HandleFunc("/read", func(w http.ResponseWriter, r *http.Request) {
		started <- true
		_, err := r.Body.Read(make([]byte, 10))
		reading <- outcome{err, context.Cause(r.Context()), r.Context().Err()}
	})
	g := startGW(t, mux, gwOpts{})
	g.get("/wait")
	g.request(req{method: "POST", target: "/read", body: protocol.BodyFollows})
	within(t, started, "a handler")
	within(t, started, "a handler")
	g.sync()
	g.conn.Close()
	if err := g.serveResult(); !errors.Is(err, sluice.ErrLinkClosed) {
		t.Fatalf("Serve returned %v, want ErrLinkClosed", err)
	}
	o := within(t, waiting, "the waiting handler")
	if !errors.Is(o.cause, sluice.ErrLinkClosed) || o.ctx != context.Canceled {
		t.Errorf("waiting handler: cause %v, err %v", o.cause, o.ctx)
	}
	o = within(t, reading, "the reading handler")
	if !errors.Is(o.err, sluice.ErrStreamClosed) {
		t.Errorf("Read when the link is lost: %v, want ErrStreamClosed", o.err)
	}
	if !errors.Is(o.cause, sluice.ErrLinkClosed) {
		t.Errorf("reading handler: cause %v", o.cause)
	}
}

func TestPingAnsweredWhileHandlersAreBlocked(t *testing.T) {
	release := make(chan struct{})
	started := make(chan bool, 3)
	mux := http.NewServeMux()
	mux.HandleFunc("/block", func(w http.ResponseWriter, r *http.Request) {
		started <- true
		<-release
	})
	mux.HandleFunc("/write", func(w http.ResponseWriter, r *http.Request) {
		started <- true
		w.Write(pattern(bigWrite)) // blocked on credit
	})
	g := startGW(t, mux, gwOpts{window: 1000}, sluice.WithMaxStreams(3))
	defer close(release)
	g.get("/block")
	g.get("/block")
	wr := g.get("/write")
	for i := 0; i < 3; i++ {
		within(t, started, "the handlers")
	}
	g.recvFor(wr)
	g.expectBody(wr, 1000)
	for _, op := range []uint64{0, 424242, protocol.MaxID} {
		start := time.Now()
		g.send(&protocol.Frame{Type: protocol.Ping, Opaque: op})
		f, err := g.take(time.Second, func(f *frame) bool { return f.Type == protocol.Pong })
		if err != nil {
			t.Fatalf("no PONG: %v", err)
		}
		if f.Opaque != op {
			t.Errorf("PONG %d for PING %d", f.Opaque, op)
		}
		if d := time.Since(start); d > 500*time.Millisecond {
			t.Errorf("PONG after %v", d)
		}
	}
}

func TestDrainLetsStreamsFinish(t *testing.T) {
	rel := []chan struct{}{make(chan struct{}), make(chan struct{})}
	started := make(chan bool, 2)
	g := startGW(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		i := 0
		if r.URL.Path == "/1" {
			i = 1
		}
		started <- true
		<-rel[i]
		w.Write([]byte(r.URL.Path))
	}), gwOpts{})
	a, b := g.get("/0"), g.get("/1")
	within(t, started, "handler")
	within(t, started, "handler")
	g.send(&protocol.Frame{Type: protocol.Drain, TimeoutMs: 5000})
	g.quiet(a, 30*time.Millisecond) // the link stays open
	close(rel[0])
	eq(t, "first", string(g.response(a).body), "/0")
	g.sync() // still open with a stream left
	close(rel[1])
	eq(t, "second", string(g.response(b).body), "/1")
	g.waitClosed()
	if err := g.serveResult(); err != nil {
		t.Fatalf("Serve after DRAIN: %v", err)
	}
}

func TestDrainWithoutStreamsClosesAtOnce(t *testing.T) {
	g := startGW(t, okHandler, gwOpts{})
	g.send(&protocol.Frame{Type: protocol.Drain, TimeoutMs: 30000})
	g.waitClosed()
	if err := g.serveResult(); err != nil {
		t.Fatalf("Serve after DRAIN: %v", err)
	}
}

func TestDrainTimeoutClosesTheLink(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for the 2 s grace after timeout_ms")
	}
	causes := make(chan error, 1)
	started := make(chan bool, 1)
	g := startGW(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		started <- true
		<-r.Context().Done() // stuck until the worker gives up
		causes <- context.Cause(r.Context())
	}), gwOpts{})
	g.get("/")
	within(t, started, "handler")
	g.send(&protocol.Frame{Type: protocol.Drain, TimeoutMs: 1})
	g.waitClosed()
	if err := g.serveResult(); err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if c := within(t, causes, "the stuck handler's end"); c == nil {
		t.Errorf("no cause")
	}
	if !strings.Contains(g.log.String(), "drain timeout: closing the link with 1 request(s) open") {
		t.Errorf("log %q", g.log.String())
	}
}

func TestShutdownRetiresThenServesUntilDrain(t *testing.T) {
	g := startGW(t, okHandler, gwOpts{deferRetire: true})
	g.sync() // the worker has read the gateway's HELLO
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		done <- g.w.Shutdown(ctx)
	}()
	f := g.recvType(protocol.Retire)
	eq(t, "RETIRE reason", f.Message, "shutdown")
	// a REQUEST the gateway sent before it read RETIRE is still served
	sid := g.get("/late")
	r := g.response(sid)
	eq(t, "status", r.status, 200)
	eq(t, "body", string(r.body), "ok")
	g.applyDeferred()
	notYet(t, done, 30*time.Millisecond, "Shutdown's return before DRAIN")
	g.sync() // the link is still open
	g.send(&protocol.Frame{Type: protocol.Drain, TimeoutMs: 1000})
	g.waitClosed()
	if err := g.serveResult(); err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if err := within(t, done, "Shutdown"); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

func TestShutdownContextExpires(t *testing.T) {
	g := startGW(t, okHandler, gwOpts{})
	g.sync()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	if err := g.w.Shutdown(ctx); err != context.DeadlineExceeded {
		t.Fatalf("Shutdown: %v", err)
	}
	g.recvType(protocol.Retire)
	g.send(&protocol.Frame{Type: protocol.Drain, TimeoutMs: 1000})
	g.waitClosed()
	if err := g.serveResult(); err != nil {
		t.Fatalf("Serve: %v", err)
	}
}

func TestCloseEndsServe(t *testing.T) {
	causes := make(chan error, 1)
	started := make(chan bool, 1)
	g := startGW(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		started <- true
		<-r.Context().Done()
		causes <- context.Cause(r.Context())
	}), gwOpts{})
	g.get("/")
	within(t, started, "handler")
	if err := g.w.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := g.serveResult(); err == nil {
		t.Errorf("Serve returned nil after Close")
	}
	if c := within(t, causes, "the handler's end"); c == nil {
		t.Errorf("no cause")
	}
}

func TestPanicBeforeResponseIs500(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/panic", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Leak", "1")
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"partial":`))
		panic("boom")
	})
	mux.HandleFunc("/ok", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) })
	g := startGW(t, mux, gwOpts{})
	r := g.response(g.get("/panic"))
	full(t, r, 500, "Internal Server Error\n", "22", "text/plain; charset=utf-8")
	eq(t, "X-Content-Type-Options", r.header("X-Content-Type-Options"), "nosniff")
	eq(t, "X-Leak", r.has("X-Leak"), false)
	log := g.log.String()
	if !strings.Contains(log, "panic serving GET /panic: boom") || !strings.Contains(log, "goroutine") {
		t.Errorf("log %q", log)
	}
	for i := 0; i < 2; i++ {
		if r := g.response(g.get("/ok")); r.status != 200 || string(r.body) != "ok" {
			t.Errorf("after the panic: %d %q", r.status, r.body)
		}
	}
}

func TestPanicAfterFlushResets(t *testing.T) {
	g := startGW(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("partial"))
		w.(http.Flusher).Flush()
		panic(errors.New("late boom"))
	}), gwOpts{})
	r := g.response(g.get("/"))
	eq(t, "status", r.status, 200)
	eq(t, "body", string(r.body), "partial")
	if r.reset == nil || r.reset.Code != protocol.ResetInternal {
		t.Fatalf("no RESET internal: %+v", r)
	}
	if !strings.Contains(g.log.String(), "late boom") {
		t.Errorf("log %q", g.log.String())
	}
}

func TestAbortHandlerResetsSilently(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/before", func(w http.ResponseWriter, r *http.Request) { panic(http.ErrAbortHandler) })
	mux.HandleFunc("/after", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("x"))
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	})
	g := startGW(t, mux, gwOpts{})
	for _, p := range []string{"/before", "/after"} {
		r := g.response(g.get(p))
		if r.reset == nil || r.reset.Code != protocol.ResetInternal {
			t.Errorf("%s: no RESET: %+v", p, r)
		}
	}
	g.sync()
	if log := g.log.String(); log != "" {
		t.Errorf("logged: %q", log)
	}
}

func TestHijackFailsAndFullDuplexIsOn(t *testing.T) {
	res := make(chan error, 2)
	g := startGW(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		_, _, err := rc.Hijack()
		res <- err
		res <- rc.EnableFullDuplex()
		w.Write([]byte("ok"))
	}), gwOpts{})
	sid := g.get("/")
	if err := within(t, res, "Hijack"); err == nil || !strings.Contains(err.Error(), "gateway") {
		t.Errorf("Hijack: %v", err)
	}
	if err := within(t, res, "EnableFullDuplex"); err != nil {
		t.Errorf("EnableFullDuplex: %v", err)
	}
	eq(t, "status", g.response(sid).status, 200)
}

// A shutdown during the handshake sends RETIRE once the gateway's HELLO
// has come, and the link stays open until DRAIN (PROTOCOL.md 3.12).
func TestShutdownDuringHandshakeRetiresAfterHello(t *testing.T) {
	g := startGW(t, okHandler, gwOpts{noHello: true, deferRetire: true})
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		done <- g.w.Shutdown(ctx)
	}()
	time.Sleep(20 * time.Millisecond) // the shutdown is pending before the HELLO
	g.send(g.gatewayHello())
	f := g.recvType(protocol.Retire)
	eq(t, "RETIRE reason", f.Message, "shutdown")
	sid := g.get("/in-flight") // sent before the gateway read RETIRE
	eq(t, "status", g.response(sid).status, 200)
	g.applyDeferred()
	notYet(t, done, 30*time.Millisecond, "Shutdown's return before DRAIN")
	g.send(&protocol.Frame{Type: protocol.Drain, TimeoutMs: 1000})
	g.waitClosed()
	if err := within(t, done, "Shutdown"); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}
