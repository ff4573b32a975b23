package sluice_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	sluice "sluice.dev/go"
	"sluice.dev/go/protocol"
)

// TestRemoteTwoGateways: one link to each gateway (TCP and Unix), the same
// HELLO on both, requests through both served; Shutdown retires both
// links, and Serve returns nil once both are drained and closed.
func TestRemoteTwoGateways(t *testing.T) {
	a, b := newMGW(t, "tcp", "", nil), newMGW(t, "unix", "", nil)
	r := remoteWorker(t, okHandler, sluice.WithSocket(" "+a.addr+" , ,"+b.addr+","+a.addr), sluice.WithToken("tok"),
		sluice.WithMaxStreams(8))
	la, lb := a.attach(), b.attach()
	for _, l := range []*mlink{la, lb} {
		st := l.hello.Settings
		eq(t, "token", st.Token, "tok")
		eq(t, "max_streams", st.MaxStreams, uint64(8))
		if _, body, _ := l.answer(l.get("/")); body != "ok" {
			t.Fatalf("body %q", body)
		}
	}
	a.noLink(200 * time.Millisecond) // listed twice: one link

	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		done <- r.w.Shutdown(ctx)
	}()
	la.expect(protocol.Retire)
	lb.expect(protocol.Retire)
	la.send(&protocol.Frame{Type: protocol.Drain, TimeoutMs: 1000})
	la.waitClosed()
	notYet(t, done, 200*time.Millisecond, "Shutdown before the second DRAIN")
	lb.send(&protocol.Frame{Type: protocol.Drain, TimeoutMs: 1000})
	lb.waitClosed()
	if err := within(t, done, "Shutdown"); err != nil {
		t.Fatal(err)
	}
	if err := r.result(); err != nil {
		t.Fatalf("Serve: %v", err)
	}
	a.noLink(300 * time.Millisecond) // no reconnection once stopping
}

// TestRemoteStreamCap: max_streams counts the streams of all links; a
// REQUEST beyond it is RESET overloaded without running the handler.
func TestRemoteStreamCap(t *testing.T) {
	release := make(chan struct{})
	var runs atomic.Int32
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		runs.Add(1)
		if r.URL.Path == "/block" {
			<-release
		}
		w.Write([]byte("ok"))
	})
	a, b := newMGW(t, "unix", "", nil), newMGW(t, "unix", "", nil)
	r := remoteWorker(t, h, sluice.WithSocket(a.addr, b.addr), sluice.WithMaxStreams(1))
	la, lb := a.attach(), b.attach()
	eq(t, "max_streams a", la.hello.Settings.MaxStreams, uint64(1))
	eq(t, "max_streams b", lb.hello.Settings.MaxStreams, uint64(1))
	sa := la.get("/block")
	deadline := time.Now().Add(waitTimeout)
	for runs.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	sb := lb.nextSID
	lb.nextSID++
	lb.send(&protocol.Frame{Type: protocol.Request, Stream: sb, Method: []byte("POST"), Target: []byte("/other"),
		Version: 11, Scheme: "http", BodyMode: protocol.BodyFollows,
		Headers: []protocol.Header{{Name: []byte("host"), Value: []byte("example.test")}}})
	if status, _, code := lb.answer(sb); status != 0 || code != protocol.ResetOverloaded {
		t.Fatalf("second stream: status %d reset %d, want RESET overloaded", status, code)
	}
	// its body, crossed on the wire with the RESET, is ignored
	raw := protocol.AppendFrame(nil, &protocol.Frame{Type: protocol.Body, Stream: sb, Data: []byte("late")})
	raw = protocol.AppendFrame(raw, &protocol.Frame{Type: protocol.End, Stream: sb})
	if _, err := lb.conn.Write(raw); err != nil {
		t.Fatal(err)
	}
	eq(t, "handler runs", runs.Load(), int32(1))
	close(release)
	if _, body, _ := la.answer(sa); body != "ok" {
		t.Fatalf("first stream: %q", body)
	}
	// the capacity is free again
	if _, body, _ := lb.answer(lb.get("/other")); body != "ok" {
		t.Fatalf("after release: %q", body)
	}
	r.running()
}

// TestRemoteReconnect: a link closed without DRAIN, and one closed after
// DRAIN, are opened again; Serve keeps running.
func TestRemoteReconnect(t *testing.T) {
	a := newMGW(t, "tcp", "", nil)
	r := remoteWorker(t, okHandler, sluice.WithSocket(a.addr))
	l := a.attach()
	l.conn.Close() // the gateway died
	start := time.Now()
	l = a.attach()
	if d := time.Since(start); d > time.Second {
		t.Errorf("reconnected after %v", d)
	}
	if _, body, _ := l.answer(l.get("/")); body != "ok" {
		t.Fatalf("body %q", body)
	}
	l.send(&protocol.Frame{Type: protocol.Drain, TimeoutMs: 1000}) // the gateway reloads
	l.waitClosed()
	l = a.attach()
	if _, body, _ := l.answer(l.get("/")); body != "ok" {
		t.Fatalf("body %q", body)
	}
	r.running()
	logs := r.log.String()
	for _, want := range []string{"lost the link", "drained the link", "attached to the gateway"} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %q:\n%s", want, logs)
		}
	}
}

// TestRemoteBackoff: consecutive failures of an address wait [d/2, d]
// with d doubling from 100 ms; one failure line is logged.
func TestRemoteBackoff(t *testing.T) {
	a := newMGW(t, "tcp", "", nil)
	a.mu.Lock()
	a.refuse = true
	a.mu.Unlock()
	r := remoteWorker(t, okHandler, sluice.WithSocket(a.addr))
	deadline := time.Now().Add(waitTimeout)
	for {
		a.mu.Lock()
		n := len(a.accepts)
		a.mu.Unlock()
		if n >= 5 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	a.mu.Lock()
	acc := append([]time.Time(nil), a.accepts...)
	a.refuse = false
	a.mu.Unlock()
	if len(acc) < 5 {
		t.Fatalf("%d attempts in %v", len(acc), waitTimeout)
	}
	delay := 100 * time.Millisecond
	for i := 1; i < 5; i++ {
		gap := acc[i].Sub(acc[i-1])
		if gap < delay/2-10*time.Millisecond || gap > delay+300*time.Millisecond {
			t.Errorf("attempt %d after %v, want within [%v, %v] (+ scheduling)", i+1, gap, delay/2, delay)
		}
		delay *= 2
	}
	if n := strings.Count(r.log.String(), "cannot attach"); n != 1 {
		t.Errorf("%d failure lines, want 1:\n%s", n, r.log.String())
	}
	a.attach() // and it attaches once the gateway takes it
}

func TestBackoffBounds(t *testing.T) {
	d := 100 * time.Millisecond
	for i := 0; i < 10; i++ {
		lo, _ := sluice.BackoffWait(d, func() float64 { return 0 })
		hi, next := sluice.BackoffWait(d, func() float64 { return 0.999999 })
		if lo != d/2 || hi > d || hi < d-time.Millisecond {
			t.Errorf("delay %v: waits %v..%v", d, lo, hi)
		}
		if next > 2*time.Second || next < d {
			t.Errorf("delay %v: next %v", d, next)
		}
		d = next
	}
	eq(t, "cap", d, 2*time.Second)
}

// TestRemoteAuth: ERROR auth on one link stops the worker: the other link
// retires and drains, and Serve returns the auth error.
func TestRemoteAuth(t *testing.T) {
	a, b := newMGW(t, "tcp", "", nil), newMGW(t, "tcp", "", nil)
	r := remoteWorker(t, okHandler, sluice.WithSocket(a.addr+","+b.addr), sluice.WithToken("wrong"))
	lb := b.attach()
	if _, body, _ := lb.answer(lb.get("/")); body != "ok" { // b's link is up
		t.Fatalf("body %q", body)
	}
	la := a.next()
	la.send(&protocol.Frame{Type: protocol.Error, Code: uint64(protocol.Auth), Message: "bad token"})
	la.conn.Close()
	lb.expect(protocol.Retire)
	lb.send(&protocol.Frame{Type: protocol.Drain, TimeoutMs: 1000})
	lb.waitClosed()
	err := r.result()
	var le *protocol.LinkError
	if !errors.As(err, &le) || le.Code != protocol.Auth {
		t.Fatalf("Serve: %v, want the auth error", err)
	}
	if !strings.Contains(r.log.String(), "auth") {
		t.Errorf("log lacks auth:\n%s", r.log.String())
	}
	a.noLink(300 * time.Millisecond)
}

// TestRemoteStopDropsHandshakes: a stop abandons a link whose handshake
// is not complete, and Serve returns nil.
func TestRemoteStopDropsHandshakes(t *testing.T) {
	a := newMGW(t, "tcp", "", nil)
	r := remoteWorker(t, okHandler, sluice.WithSocket(a.addr))
	l := a.next() // no HELLO answered
	go r.w.Shutdown(context.Background())
	l.waitClosed()
	if err := r.result(); err != nil {
		t.Fatalf("Serve: %v", err)
	}
}

// TestRemoteResolve: a host name is every address it resolves to; new
// addresses get links at the next resolution; an address gone keeps its
// link until it closes, then is not reconnected; a failed resolution keeps
// the last answer.
func TestRemoteResolve(t *testing.T) {
	a := newMGW(t, "tcp", "127.0.0.1:0", nil)
	b := newMGW(t, "tcp", "127.0.0.2:"+a.port(), nil)
	c := newMGW(t, "tcp", "127.0.0.3:"+a.port(), nil)
	var mu sync.Mutex
	answer := []string{"127.0.0.1", "127.0.0.2", "127.0.0.1"}
	var fail bool
	var lookups atomic.Int32
	lookup := func(ctx context.Context, host string) ([]net.IPAddr, error) {
		lookups.Add(1)
		if host != "gw.test" {
			return nil, errors.New("no such host")
		}
		mu.Lock()
		defer mu.Unlock()
		if fail {
			return nil, errors.New("resolver down")
		}
		var ips []net.IPAddr
		for _, s := range answer {
			ips = append(ips, net.IPAddr{IP: net.ParseIP(s)})
		}
		return ips, nil
	}
	r := remoteWorker(t, okHandler, sluice.WithSocket("tcp:gw.test:"+a.port()), sluice.WithLookup(lookup),
		sluice.WithResolveInterval(time.Second))
	la, lb := a.attach(), b.attach()
	a.noLink(100 * time.Millisecond) // 127.0.0.1 twice: one link
	mu.Lock()
	answer = []string{"127.0.0.2", "127.0.0.3"}
	mu.Unlock()
	lc := c.attach()
	if _, body, _ := lc.answer(lc.get("/")); body != "ok" {
		t.Fatalf("body %q", body)
	}
	// 127.0.0.1 is gone: its link stays up and serves...
	if _, body, _ := la.answer(la.get("/")); body != "ok" {
		t.Fatalf("body %q", body)
	}
	// ...and is not reconnected once it closes
	la.send(&protocol.Frame{Type: protocol.Drain, TimeoutMs: 1000})
	la.waitClosed()
	a.noLink(1500 * time.Millisecond)
	// a failing resolver keeps the last answer: b is reconnected
	mu.Lock()
	fail = true
	mu.Unlock()
	n := lookups.Load()
	for lookups.Load() < n+1 {
		time.Sleep(50 * time.Millisecond)
	}
	lb.conn.Close()
	lb = b.attach()
	if _, body, _ := lb.answer(lb.get("/")); body != "ok" {
		t.Fatalf("body %q", body)
	}
	if !strings.Contains(r.log.String(), "resolver down") {
		t.Errorf("the failed resolution is not logged:\n%s", r.log.String())
	}
	r.running()
}

// TestRemoteAddressLists: list syntax and its errors.
func TestRemoteAddressLists(t *testing.T) {
	for _, a := range []string{"tcp:h:0,/x.sock", "/x.sock, tls:nohostport", "tls:[::1:80", "tcp:[::1]:99999"} {
		w, err := sluice.NewWorker(okHandler, sluice.WithSocket(a), sluice.WithSignals(false))
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Serve(); err == nil || !strings.Contains(err.Error(), "bad address") {
			t.Errorf("%q: Serve: %v", a, err)
		}
	}
	if _, err := sluice.NewWorker(okHandler, sluice.WithSocket(" , ")); err == nil {
		t.Errorf("an empty list was accepted")
	}
}

// TestRemoteSignals: SIGTERM retires every link and Serve returns nil after
// their DRAINs; a second signal closes every link at once.
func TestRemoteSignals(t *testing.T) {
	safety := make(chan os.Signal, 8) // a signal can never end the test binary
	signal.Notify(safety, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(safety)
	for _, second := range []bool{false, true} {
		a, b := newMGW(t, "tcp", "", nil), newMGW(t, "unix", "", nil)
		r := remoteWorker(t, okHandler, sluice.WithSocket(a.addr, b.addr), sluice.WithSignals(true))
		la, lb := a.attach(), b.attach()
		syscall.Kill(os.Getpid(), syscall.SIGTERM)
		la.expect(protocol.Retire)
		lb.expect(protocol.Retire)
		if second {
			syscall.Kill(os.Getpid(), syscall.SIGINT)
			la.waitClosed()
			lb.waitClosed()
			if err := r.result(); err == nil {
				t.Errorf("Serve returned nil after a second signal")
			}
			continue
		}
		la.send(&protocol.Frame{Type: protocol.Drain, TimeoutMs: 1000})
		lb.send(&protocol.Frame{Type: protocol.Drain, TimeoutMs: 1000})
		la.waitClosed()
		lb.waitClosed()
		if err := r.result(); err != nil {
			t.Errorf("Serve: %v", err)
		}
	}
}

// TestRemoteLiveness: in remote mode the worker PINGs every interval,
// closes a link silent for three intervals (and a handshake that does not
// complete within three) and reconnects it.
func TestRemoteLiveness(t *testing.T) {
	a := newMGW(t, "tcp", "", nil)
	r := remoteWorker(t, okHandler, sluice.WithSocket(a.addr), sluice.WithPingInterval(time.Second))
	start := time.Now()
	l := a.next() // no HELLO answered
	l.waitClosed()
	if d := time.Since(start); d < 2500*time.Millisecond || d > 4500*time.Millisecond {
		t.Errorf("handshake abandoned after %v, want about 3 s", d)
	}
	l = a.attach()
	// it PINGs; answering keeps the link up past three intervals
	for i := 0; i < 4; i++ {
		f := l.expect(protocol.Ping)
		l.send(&protocol.Frame{Type: protocol.Pong, Opaque: f.Opaque})
	}
	if _, body, _ := l.answer(l.get("/")); body != "ok" {
		t.Fatalf("body %q", body)
	}
	// silence: closed after three intervals with ERROR timeout
	start = time.Now()
	var got *frame
	for got == nil {
		if f := l.recv(); f.Type == protocol.Error {
			got = f
		}
	}
	eq(t, "ERROR code", got.Code, uint64(protocol.Timeout))
	l.waitClosed()
	if d := time.Since(start); d > 4500*time.Millisecond {
		t.Errorf("closed after %v of silence", d)
	}
	a.attach()
	r.running()
}
