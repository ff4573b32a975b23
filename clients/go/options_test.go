package sluice_test

import (
	"context"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	sluice "sluice.dev/go"
	"sluice.dev/go/protocol"
)

func TestSocketAddressForms(t *testing.T) {
	t.Run("unix:PATH", func(t *testing.T) {
		g := startGW(t, okHandler, gwOpts{serve: func(addr string, h http.Handler, opts ...sluice.Option) error {
			w, err := sluice.NewWorker(h, append(opts, sluice.WithSocket("unix:"+addr))...)
			if err != nil {
				return err
			}
			return w.Serve()
		}})
		eq(t, "body", string(g.response(g.get("/")).body), "ok")
	})
	t.Run("tcp:HOST:PORT with token", func(t *testing.T) {
		g := startGW(t, okHandler, gwOpts{tcp: true}, sluice.WithToken("tok"))
		eq(t, "token", g.hello.Settings.Token, "tok")
		eq(t, "body", string(g.response(g.get("/")).body), "ok")
	})
	t.Run("bad", func(t *testing.T) {
		missing := filepath.Join(t.TempDir(), "none.sock")
		for _, a := range []string{"tcp:nohostport", "tcp::80", "tcp:h:0", "tcp:h:65536", "tcp:h:x", "unix:", missing} {
			w, err := sluice.NewWorker(okHandler, sluice.WithSocket(a), sluice.WithSignals(false))
			if err != nil {
				t.Fatal(err)
			}
			if err := w.Serve(); err == nil || !strings.Contains(err.Error(), "sluice:") {
				t.Errorf("%q: Serve: %v", a, err)
			}
		}
	})
}

func TestPackageServeAndListenAndServe(t *testing.T) {
	t.Setenv("SLUICE_SOCKET", "set-by-the-gateway") // WithSocket below wins
	for name, serve := range map[string]func(addr string, h http.Handler, opts ...sluice.Option) error{
		"Serve": func(addr string, h http.Handler, opts ...sluice.Option) error {
			return sluice.Serve(h, append(opts, sluice.WithExit(false))...)
		},
		"ListenAndServe": func(addr string, h http.Handler, opts ...sluice.Option) error {
			return sluice.ListenAndServe("127.0.0.1:1", h, append(opts, sluice.WithExit(false))...)
		},
	} {
		t.Run(name, func(t *testing.T) {
			g := startGW(t, okHandler, gwOpts{serve: serve})
			eq(t, "body", string(g.response(g.get("/")).body), "ok")
			g.send(&protocol.Frame{Type: protocol.Drain, TimeoutMs: 1000})
			g.waitClosed()
			if err := g.serveResult(); err != nil {
				t.Fatalf("%s after DRAIN: %v", name, err)
			}
		})
	}
}

// TestBodyBudget: a stream widens its window beyond the initial one only
// within the link's body budget, and gives its share back when done.
func TestBodyBudget(t *testing.T) {
	const initial, window = 1000, 4000
	steps := map[string]chan struct{}{"/a": make(chan struct{}), "/b": make(chan struct{}), "/c": make(chan struct{})}
	g := startGW(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		step := steps[r.URL.Path]
		<-step
		r.Body.Read(make([]byte, 1))
		step <- struct{}{}
		<-step
	}), gwOpts{}, sluice.WithInitialWindow(initial), sluice.WithWindow(window), sluice.WithBodyBudget(window-initial))
	open := func(path string) uint64 {
		sid := g.request(req{method: "POST", target: path, body: protocol.BodyFollows})
		g.body(sid, pattern(initial), 0, false)
		g.sync()
		steps[path] <- struct{}{} // read one byte
		<-steps[path]
		g.sync()
		return sid
	}
	granted := func(sid uint64) int64 { // in all, the initial window included
		c, _ := g.creditOf(sid)
		return initial + c
	}
	a := open("/a")
	eq(t, "/a widened", granted(a), int64(window))
	b := open("/b")
	if o := granted(b) - 1; o > initial {
		t.Errorf("/b: %d outstanding beyond the budget", o)
	}
	steps["/a"] <- struct{}{}
	g.response(a)
	c := open("/c")
	eq(t, "/c widened with /a's share", granted(c), int64(window))
	steps["/b"] <- struct{}{}
	steps["/c"] <- struct{}{}
	g.response(b)
	g.response(c)
}

func TestShutdownTimeout(t *testing.T) {
	started := make(chan bool, 1)
	g := startGW(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		started <- true
		<-r.Context().Done()
	}), gwOpts{}, sluice.WithShutdownTimeout(100*time.Millisecond))
	g.get("/")
	within(t, started, "handler")
	done := make(chan error, 1)
	go func() { done <- g.w.Shutdown(context.Background()) }()
	g.recvType(protocol.Retire)
	start := time.Now()
	g.waitClosed() // no DRAIN came: the worker gives up
	if d := time.Since(start); d < 50*time.Millisecond {
		t.Errorf("closed after %v", d)
	}
	g.serveResult()
	if err := within(t, done, "Shutdown"); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if !strings.Contains(g.log.String(), "shutdown timeout: closing the link with 1 request(s) open") {
		t.Errorf("log %q", g.log.String())
	}
}

func TestSignals(t *testing.T) {
	// a second subscriber, so that a signal can never end the test binary
	safety := make(chan os.Signal, 4)
	signal.Notify(safety, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(safety)

	started := make(chan bool, 1)
	g := startGW(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		started <- true
		<-r.Context().Done()
	}), gwOpts{}, sluice.WithSignals(true))
	g.sync() // Serve is reading: its signal handler is installed
	sid := g.get("/")
	within(t, started, "handler")
	syscall.Kill(os.Getpid(), syscall.SIGTERM)
	f := g.recvType(protocol.Retire)
	eq(t, "reason", f.Message, "shutdown")
	g.sync() // retiring: the link stays open
	syscall.Kill(os.Getpid(), syscall.SIGINT)
	g.waitClosed()
	if err := g.serveResult(); err == nil {
		t.Errorf("Serve returned nil after a second signal")
	}
	if !strings.Contains(g.log.String(), "second signal") {
		t.Errorf("log %q", g.log.String())
	}
	if fs := g.pending(sid); len(fs) > 0 {
		t.Errorf("frames for the abandoned stream: %v", fs)
	}
}

// SLUICE_MAX_STREAMS (PROTOCOL.md 10.2) sizes a worker without code: it is
// what HELLO announces unless WithMaxStreams says otherwise; a bad value
// fails NewWorker.
func TestMaxStreamsFromTheEnvironment(t *testing.T) {
	t.Setenv("SLUICE_MAX_STREAMS", "64")
	g := startGW(t, okHandler, gwOpts{})
	eq(t, "max_streams", g.hello.Settings.MaxStreams, uint64(64))
	g2 := startGW(t, okHandler, gwOpts{}, sluice.WithMaxStreams(8))
	eq(t, "max_streams", g2.hello.Settings.MaxStreams, uint64(8))
	for _, bad := range []string{"0", "65536", "x", "1.5"} {
		t.Setenv("SLUICE_MAX_STREAMS", bad)
		if _, err := sluice.NewWorker(okHandler, sluice.WithSocket("/nonexistent")); err == nil ||
			!strings.Contains(err.Error(), "SLUICE_MAX_STREAMS") {
			t.Errorf("%q: %v", bad, err)
		}
	}
}
