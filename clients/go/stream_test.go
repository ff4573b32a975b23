package sluice_test

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"os"
	"strconv"
	"testing"
	"time"

	sluice "sluice.dev/go"
	"sluice.dev/go/protocol"
)

// bigWrite is a Write size beyond any gathering buffer of the runtime: such
// a Write sends at once and waits for credit (smaller ones may be gathered
// and return at once).
const bigWrite = 256 << 10

func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i/251)
	}
	return b
}

// expectBody reads BODY frames of sid until n bytes came, and returns them.
func (g *fakeGW) expectBody(sid uint64, n int) []byte {
	g.t.Helper()
	var got []byte
	for len(got) < n {
		f := g.recvFor(sid)
		if f.Type != protocol.Body {
			g.t.Fatalf("got %v, want BODY (%d of %d bytes so far)", f, len(got), n)
		}
		got = append(got, f.Data...)
	}
	if len(got) != n {
		g.t.Fatalf("got %d body bytes, want %d", len(got), n)
	}
	return got
}

func TestWriteWaitsForCredit(t *testing.T) {
	data := pattern(bigWrite)
	done := make(chan error, 1)
	g := startGW(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, err := w.Write(data)
		done <- err
	}), gwOpts{window: 1000})
	sid := g.get("/")
	head := g.recvFor(sid)
	if head.Type != protocol.Response || head.BodyMode != protocol.BodyFollows {
		t.Fatalf("got %v", head)
	}
	got := g.expectBody(sid, 1000)
	notYet(t, done, 100*time.Millisecond, "Write's return without credit")
	g.quiet(sid, 0)
	g.send(&protocol.Frame{Type: protocol.Credit, Stream: sid, Increment: 1500})
	got = append(got, g.expectBody(sid, 1500)...)
	notYet(t, done, 50*time.Millisecond, "Write's return without credit")
	g.send(&protocol.Frame{Type: protocol.Credit, Stream: sid, Increment: bigWrite})
	got = append(got, g.expectBody(sid, bigWrite-2500)...)
	if err := within(t, done, "Write"); err != nil {
		t.Fatalf("Write: %v", err)
	}
	if f := g.recvFor(sid); f.Type != protocol.End {
		t.Fatalf("got %v, want END", f)
	}
	if !bytes.Equal(got, data) {
		t.Errorf("body differs")
	}
}

func TestWindowZeroStillSendsTheHead(t *testing.T) {
	g := startGW(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("abc"))
	}), gwOpts{zeroWindow: true})
	sid := g.get("/")
	if f := g.recvFor(sid); f.Type != protocol.Response || f.Status != 200 {
		t.Fatalf("got %v", f)
	}
	g.quiet(sid, 50*time.Millisecond)
	g.send(&protocol.Frame{Type: protocol.Credit, Stream: sid, Increment: 2})
	eq(t, "body", string(g.expectBody(sid, 2)), "ab")
	g.send(&protocol.Frame{Type: protocol.Credit, Stream: sid, Increment: 100})
	r := g.response(sid)
	eq(t, "rest", string(r.body), "c")
	eq(t, "ended", r.ended, true)
}

func TestFlushSendsHeadAndGatheredBytes(t *testing.T) {
	release := make(chan struct{})
	flushed := make(chan error, 1)
	g := startGW(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-A", "1")
		w.Write([]byte("ab"))
		w.Write([]byte("c"))
		flushed <- http.NewResponseController(w).Flush()
		<-release
		w.Write([]byte("def"))
	}), gwOpts{})
	sid := g.get("/")
	head := g.recvFor(sid)
	if head.Type != protocol.Response || head.Status != 200 || head.BodyMode != protocol.BodyFollows {
		t.Fatalf("got %v", head)
	}
	eq(t, "X-A", hvals(head.Headers, "X-A"), []string{"1"})
	eq(t, "Content-Length", len(hvals(head.Headers, "Content-Length")), 0)
	eq(t, "gathered", string(g.expectBody(sid, 3)), "abc")
	if err := within(t, flushed, "Flush"); err != nil {
		t.Errorf("Flush: %v", err)
	}
	g.quiet(sid, 20*time.Millisecond)
	close(release)
	r := g.response(sid)
	eq(t, "rest", string(r.body), "def")
	eq(t, "ended", r.ended, true)
}

func TestLargeBodyInFramesWithinMaxFrame(t *testing.T) {
	const size = 10 << 20
	data := pattern(size)
	for _, c := range []struct {
		name     string
		maxFrame uint64
		window   uint64
	}{
		{"max_frame 16384", protocol.MinFrame, 256 << 10},
		{"default max_frame", 0, 4 << 20},
	} {
		t.Run(c.name, func(t *testing.T) {
			g := startGW(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				// writes of every size class: gathered, copied, zero-copy
				sizes := []int{1, 100, 5000, 40000, 1 << 20, 3 << 20}
				for off, i := 0, 0; off < size; i++ {
					n := min(sizes[i%len(sizes)], size-off)
					if _, err := w.Write(data[off : off+n]); err != nil {
						t.Errorf("Write: %v", err)
						return
					}
					off += n
				}
			}), gwOpts{maxFrame: c.maxFrame, window: c.window, autoCredit: true})
			sid := g.get("/big")
			r := g.response(sid)
			if !r.ended || r.reset != nil {
				t.Fatalf("not ended: %+v", r.reset)
			}
			limit := protocol.DefaultFrame
			if c.maxFrame != 0 {
				limit = int(c.maxFrame)
			}
			for _, f := range r.bodyFrames {
				if len(f.raw)-4 > limit {
					t.Fatalf("BODY frame of length %d above max_frame %d", len(f.raw)-4, limit)
				}
			}
			if len(r.body) != size || !bytes.Equal(r.body, data) {
				t.Fatalf("body of %d bytes differs", len(r.body))
			}
			if r.has("Content-Length") {
				t.Errorf("Content-Length on a streamed body")
			}
		})
	}
}

func TestWriteDeadline(t *testing.T) {
	res := make(chan error, 1)
	g := startGW(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		if err := rc.SetWriteDeadline(time.Now().Add(100 * time.Millisecond)); err != nil {
			t.Errorf("SetWriteDeadline: %v", err)
		}
		start := time.Now()
		_, err := w.Write(pattern(bigWrite))
		if d := time.Since(start); err != nil && d < 90*time.Millisecond {
			t.Errorf("Write failed after %v", d)
		}
		res <- err
	}), gwOpts{window: 1000})
	sid := g.get("/")
	if f := g.recvFor(sid); f.Type != protocol.Response {
		t.Fatalf("got %v", f)
	}
	g.expectBody(sid, 1000)
	if err := within(t, res, "Write"); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Write: %v, want os.ErrDeadlineExceeded", err)
	}
	// the response is cut short: it must not look complete to the client
	f := g.recvFor(sid)
	if f.Type != protocol.Reset {
		t.Fatalf("got %v after a failed write, want RESET", f)
	}
}

func TestRequestBodyCreditIsBatchedWithinTheWindow(t *testing.T) {
	const initial, window, total, readSize = 1000, 4000, 30000, 300
	data := pattern(total)
	step := make(chan struct{})
	reads := make(chan int)
	var got []byte
	g := startGW(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		buf := make([]byte, readSize)
		for range step {
			n, err := r.Body.Read(buf)
			got = append(got, buf[:n]...)
			if err == io.EOF {
				reads <- -1
				break
			}
			if err != nil {
				t.Errorf("Read: %v", err)
				reads <- -1
				break
			}
			reads <- n
		}
		w.Write([]byte(strconv.Itoa(len(got))))
	}), gwOpts{}, sluice.WithInitialWindow(initial), sluice.WithWindow(window))
	sid := g.request(req{method: "POST", body: protocol.BodyFollows})
	sent, read, nreads := 0, 0, 0
	ended := false
	for {
		// send what the window allows now
		g.mu.Lock()
		win := int(g.link.Stream(sid).SendWindow())
		g.mu.Unlock()
		if n := min(win, total-sent); n > 0 {
			g.send(&protocol.Frame{Type: protocol.Body, Stream: sid, Data: data[sent : sent+n]})
			sent += n
		}
		if sent == total && !ended {
			g.send(&protocol.Frame{Type: protocol.End, Stream: sid})
			ended = true
		}
		step <- struct{}{}
		n := within(t, reads, "a Read")
		if n < 0 {
			break
		}
		read += n
		nreads++
		g.sync() // every CREDIT the Read granted has arrived
		credited, _ := g.creditOf(sid)
		if initial+int(credited)-read > window {
			t.Fatalf("after %d bytes read, %d granted in all: more than the window %d outstanding",
				read, initial+credited, window)
		}
		if sent < total && initial+int(credited)-sent <= 0 && read == sent {
			t.Fatalf("stalled: %d sent, all read, no credit", sent)
		}
	}
	close(step)
	r := g.response(sid)
	eq(t, "body read", string(r.body), strconv.Itoa(total))
	if !bytes.Equal(got, data) {
		t.Errorf("request body differs")
	}
	_, frames := g.creditOf(sid)
	if frames == 0 || frames > total/(window/2)+2 || frames*3 > nreads {
		t.Errorf("%d CREDIT frames for %d reads of a %d-byte body: not batched", frames, nreads, total)
	}
}

func TestBodyMode2GetsCreditOnFirstRead(t *testing.T) {
	const size = 100 << 10
	data := pattern(size)
	start := make(chan struct{})
	g := startGW(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-start
		b, err := io.ReadAll(r.Body)
		if err != nil || !bytes.Equal(b, data) {
			t.Errorf("ReadAll: %d bytes, %v", len(b), err)
		}
		w.Write([]byte("ok"))
	}), gwOpts{})
	sid := g.request(req{method: "POST", body: protocol.BodyOnCredit,
		headers: [][2]string{{"host", "h"}, {"content-length", strconv.Itoa(size)}}})
	time.Sleep(30 * time.Millisecond)
	g.sync()
	if c, _ := g.creditOf(sid); c != 0 {
		t.Fatalf("%d credit before the handler read", c)
	}
	close(start)
	g.mu.Lock()
	ok := g.waitLocked(waitTimeout, func() bool { return g.credited[sid] > 0 })
	g.mu.Unlock()
	if !ok {
		t.Fatalf("no credit after the first Read")
	}
	if c, _ := g.creditOf(sid); c > sluice.DefaultWindow {
		t.Errorf("first grant %d above the window", c)
	}
	g.body(sid, data, 0, true)
	r := g.response(sid)
	eq(t, "status", r.status, 200)
}

func TestAnsweringWithoutReadingGrantsNothing(t *testing.T) {
	g := startGW(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no", http.StatusForbidden)
	}), gwOpts{})
	sid := g.request(req{method: "POST", body: protocol.BodyOnCredit})
	r := g.response(sid)
	eq(t, "status", r.status, 403)
	g.sync()
	if c, _ := g.creditOf(sid); c != 0 {
		t.Errorf("%d credit granted", c)
	}
}

func TestSetBodyLimitSendsLimit(t *testing.T) {
	g := startGW(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := sluice.SetBodyLimit(r, -1); err == nil {
			t.Errorf("SetBodyLimit(-1) accepted")
		}
		if err := sluice.SetBodyLimit(r, 12345); err != nil {
			t.Errorf("SetBodyLimit: %v", err)
		}
		io.ReadAll(r.Body)
	}), gwOpts{})
	sid := g.request(req{method: "POST", body: protocol.BodyOnCredit})
	f := g.recvFor(sid)
	if f.Type != protocol.Limit || f.MaxBody != 12345 {
		t.Fatalf("got %v, want LIMIT 12345", f)
	}
	g.body(sid, []byte("x"), 0, true)
	g.response(sid)
}

func TestWithMaxBodySendsLimitForBodies(t *testing.T) {
	g := startGW(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.ReadAll(r.Body) }),
		gwOpts{}, sluice.WithMaxBody(100))
	sid := g.request(req{method: "POST", body: protocol.BodyFollows})
	if f := g.recvFor(sid); f.Type != protocol.Limit || f.MaxBody != 100 {
		t.Fatalf("got %v, want LIMIT 100", f)
	}
	g.body(sid, []byte("x"), 0, true)
	g.response(sid)
	sid = g.get("/") // no body: no LIMIT
	if f := g.recvFor(sid); f.Type != protocol.Response {
		t.Fatalf("got %v, want RESPONSE", f)
	}
}

func TestMaxBytesReader(t *testing.T) {
	res := make(chan error, 1)
	g := startGW(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, 10)
		_, err := io.ReadAll(r.Body)
		res <- err
		w.WriteHeader(413)
	}), gwOpts{})
	sid := g.request(req{method: "POST", body: protocol.BodyFollows})
	g.body(sid, pattern(20), 0, true)
	var mbe *http.MaxBytesError
	if err := within(t, res, "ReadAll"); !errors.As(err, &mbe) || mbe.Limit != 10 {
		t.Fatalf("ReadAll: %v (%T), want *http.MaxBytesError", err, err)
	}
	eq(t, "status", g.response(sid).status, 413)
}

func TestReadDeadline(t *testing.T) {
	first := make(chan error, 1)
	rest := make(chan string, 1)
	g := startGW(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		rc.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		start := time.Now()
		_, err := r.Body.Read(make([]byte, 10))
		if d := time.Since(start); d < 90*time.Millisecond {
			t.Errorf("Read returned after %v", d)
		}
		first <- err
		rc.SetReadDeadline(time.Time{})
		b, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("ReadAll: %v", err)
		}
		rest <- string(b)
	}), gwOpts{})
	sid := g.request(req{method: "POST", body: protocol.BodyFollows})
	if err := within(t, first, "Read"); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read: %v, want os.ErrDeadlineExceeded", err)
	}
	g.body(sid, []byte("later"), 0, true)
	eq(t, "body after the deadline was lifted", within(t, rest, "ReadAll"), "later")
	g.response(sid)
}

func TestReadAfterClose(t *testing.T) {
	res := make(chan error, 1)
	g := startGW(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body.Close()
		_, err := r.Body.Read(make([]byte, 10))
		res <- err
	}), gwOpts{})
	sid := g.request(req{method: "POST", body: protocol.BodyFollows})
	g.body(sid, []byte("abc"), 0, false)
	if err := within(t, res, "Read"); err != http.ErrBodyReadAfterClose {
		t.Fatalf("Read after Close: %v", err)
	}
	r := g.response(sid)
	eq(t, "status", r.status, 200)
	g.sync()
	if c, _ := g.creditOf(sid); c != 0 {
		t.Errorf("%d credit for a closed body", c)
	}
}
