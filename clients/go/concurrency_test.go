package sluice_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"sluice.dev/go/protocol"
)

// TestManyConcurrentStreams: 200 streams open at once, their request
// bodies interleaved frame by frame (some larger than the initial window,
// so they need the handlers' credit), every response streamed back; each
// handler answers with its own stream's data.
func TestManyConcurrentStreams(t *testing.T) {
	const streams = 200
	var running, peak atomic.Int32
	g := startGW(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := running.Add(1)
		defer running.Add(-1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		b, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("%s: ReadAll: %v", r.URL.Path, err)
			return
		}
		sum := sha256.Sum256(b)
		w.Header().Set("X-Sum", hex.EncodeToString(sum[:]))
		w.Header().Set("X-Path", r.URL.Path)
		// the body back, in a few writes, then a line of its own
		for len(b) > 0 {
			n := min(len(b), 7000)
			w.Write(b[:n])
			b = b[n:]
		}
		fmt.Fprintf(w, "%s done", r.URL.Path)
	}), gwOpts{window: 64 << 10, autoCredit: true})

	rng := rand.New(rand.NewSource(1))
	type st struct {
		sid  uint64
		path string
		data []byte
		sent int
	}
	all := make([]*st, streams)
	for i := range all {
		size := rng.Intn(40000)
		if i%10 == 0 {
			size = 0
		}
		data := make([]byte, size)
		rng.Read(data)
		s := &st{path: fmt.Sprintf("/s/%d", i), data: data}
		s.sid = g.request(req{method: "POST", target: s.path, body: protocol.BodyFollows})
		all[i] = s
	}
	// interleave: one frame per stream per round, within each stream's window
	deadline := time.Now().Add(waitTimeout)
	for left := streams; left > 0; {
		progress := false
		for _, s := range all {
			if s.sent < 0 {
				continue
			}
			g.mu.Lock()
			win := int(g.link.Stream(s.sid).SendWindow())
			g.mu.Unlock()
			n := min(win, len(s.data)-s.sent, 1+rng.Intn(3000))
			if n > 0 {
				g.send(&protocol.Frame{Type: protocol.Body, Stream: s.sid, Data: s.data[s.sent : s.sent+n]})
				s.sent += n
				progress = true
			}
			if s.sent == len(s.data) {
				g.send(&protocol.Frame{Type: protocol.End, Stream: s.sid})
				s.sent = -1
				left--
				progress = true
			}
		}
		if !progress {
			if time.Now().After(deadline) {
				t.Fatalf("request bodies stalled: no credit")
			}
			g.mu.Lock()
			g.waitLocked(20*time.Millisecond, func() bool { return false })
			g.mu.Unlock()
		}
	}
	for _, s := range all {
		r := g.response(s.sid)
		if r.reset != nil || !r.ended || r.status != 200 {
			t.Fatalf("%s: status %d reset %v", s.path, r.status, r.reset)
		}
		sum := sha256.Sum256(s.data)
		want := append(append([]byte(nil), s.data...), s.path+" done"...)
		if r.header("X-Path") != s.path || r.header("X-Sum") != hex.EncodeToString(sum[:]) || !bytes.Equal(r.body, want) {
			t.Fatalf("%s: got the answer of %s (%d bytes)", s.path, r.header("X-Path"), len(r.body))
		}
	}
	if p := peak.Load(); p < 50 {
		t.Errorf("at most %d handlers ran at once", p)
	}
}
