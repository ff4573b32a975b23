// Streaming both ways through the gateway, with plain net/http code.
//
//	(cd examples/go && go build -o /tmp/streaming ./streaming)
//	build/server/sluice --listen 127.0.0.1:8080 --workers 2 -- /tmp/streaming
//
//	curl -T bigfile localhost:8080/echo > copy       the upload streamed back (io.Copy)
//	curl localhost:8080/blob?n=1073741824 > /dev/null 1 GiB made on the fly, paced by the client
//	curl -N localhost:8080/events?count=5            server-sent events, flushed one by one
//	curl localhost:8080/slow?ms=5000                 waits, or stops when the client leaves (Ctrl-C)
//	curl -T bigfile localhost:8080/upload            sha256 of an upload above --max-body (SetBodyLimit)
//	curl -H 'Authorization: Bearer x' -T f localhost:8080/private   401 without one, before any byte is read
//	curl --raw localhost:8080/trailers               a chunked body followed by trailers
//	curl localhost:8080/panic                        500; the worker keeps serving
//	curl localhost:8080/stats                        this worker's counters (JSON)
//
// Nothing here buffers a whole body: reading r.Body grants the gateway credit
// for the next bytes of the upload, and Write blocks while the client is not
// taking the response, so memory stays flat whatever the sizes and however
// slow the peers. The end-to-end tests (tests/e2e/test_go.py) use /stats to
// see that from the worker's side.
package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	sluice "sluice.dev/go"
)

// Counters shown by /stats (one worker process's).
var (
	blobBytes     atomic.Int64 // bytes /blob handlers have written so far
	blobDone      atomic.Int64 // /blob responses completed
	echoBytes     atomic.Int64 // bytes /echo copied
	slowActive    atomic.Int64 // /slow handlers running
	slowDone      atomic.Int64 // /slow handlers that slept their whole time
	slowCancelled atomic.Int64 // /slow handlers whose context was cancelled
	eventsSent    atomic.Int64 // server-sent events written
	panics        atomic.Int64 // /panic requests
)

var workerID = os.Getenv("SLUICE_WORKER_ID")

// echo streams the request body back as it arrives. io.Copy reads a piece,
// writes it, reads the next: the upload moves only as fast as the response
// is taken, so neither side is ever held in memory.
func echo(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/octet-stream")
	n, err := io.Copy(w, r.Body)
	echoBytes.Add(n)
	if err != nil {
		log.Printf("echo: stopped after %d bytes: %v", n, err)
	}
}

// blob writes n bytes (byte i is i % 251) in 64 KiB writes. Each Write
// returns once the gateway has credit for it, that is once the client has
// taken the earlier bytes: a slow client slows this loop.
func blob(w http.ResponseWriter, r *http.Request) {
	n, err := strconv.ParseInt(r.URL.Query().Get("n"), 10, 64)
	if err != nil || n < 0 {
		http.Error(w, "want ?n=BYTES", http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
	const chunk = 64 << 10
	pattern := make([]byte, chunk+251)
	for i := range pattern {
		pattern[i] = byte(i % 251)
	}
	for off := int64(0); off < n; {
		k := min(n-off, chunk)
		s := off % 251
		m, err := w.Write(pattern[s : s+k])
		blobBytes.Add(int64(m))
		off += int64(m)
		if err != nil {
			log.Printf("blob: stopped after %d of %d bytes: %v", off, n, err)
			return
		}
	}
	blobDone.Add(1)
}

// events sends server-sent events, one every ?ms= (default 1000), flushing
// each so the client sees it at once; it stops when the client goes away.
func events(w http.ResponseWriter, r *http.Request) {
	count := queryInt(r, "count", 10)
	every := time.Duration(queryInt(r, "ms", 1000)) * time.Millisecond
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	flusher := w.(http.Flusher)
	for i := 1; i <= count; i++ {
		fmt.Fprintf(w, "id: %d\ndata: tick %d from worker %s at %d\n\n", i, i, workerID, time.Now().UnixMilli())
		flusher.Flush()
		eventsSent.Add(1)
		if i == count {
			break
		}
		select {
		case <-time.After(every):
		case <-r.Context().Done():
			return
		}
	}
	fmt.Fprint(w, "event: done\ndata: bye\n\n")
}

// slow waits ?ms= milliseconds, or until the request's context is cancelled:
// the client disconnected, or the gateway cancelled the stream.
func slow(w http.ResponseWriter, r *http.Request) {
	d := time.Duration(queryInt(r, "ms", 1000)) * time.Millisecond
	slowActive.Add(1)
	defer slowActive.Add(-1)
	start := time.Now()
	select {
	case <-time.After(d):
		slowDone.Add(1)
		fmt.Fprintf(w, "slept %d ms\n", d.Milliseconds())
	case <-r.Context().Done():
		slowCancelled.Add(1)
		log.Printf("slow: cancelled after %d ms: %v", time.Since(start).Milliseconds(),
			context.Cause(r.Context()))
	}
}

// upload hashes a body of any size: SetBodyLimit raises the gateway's
// --max-body for this request only. ?wait=MS waits before reading, which
// shows when an Expect: 100-continue client is told to go on: at the first
// read, not before.
func upload(w http.ResponseWriter, r *http.Request) {
	if err := sluice.SetBodyLimit(r, 16<<30); err != nil {
		log.Printf("upload: %v", err) // not behind sluice: no gateway limit to raise
	}
	if ms := queryInt(r, "wait", 0); ms > 0 {
		time.Sleep(time.Duration(ms) * time.Millisecond)
	}
	hashBody(w, r)
}

// private refuses a request without credentials before reading its body:
// the gateway then never reads the upload (no 100 Continue) and closes the
// connection after the 401.
func private(w http.ResponseWriter, r *http.Request) {
	if !strings.HasPrefix(r.Header.Get("Authorization"), "Bearer ") {
		w.Header().Set("WWW-Authenticate", `Bearer realm="sluice"`)
		http.Error(w, "401 Unauthorized", http.StatusUnauthorized)
		return
	}
	hashBody(w, r)
}

func hashBody(w http.ResponseWriter, r *http.Request) {
	h := sha256.New()
	n, err := io.Copy(h, r.Body)
	if err != nil {
		log.Printf("%s: stopped after %d bytes: %v", r.URL.Path, n, err)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprintf(w, "%d bytes, sha256 %s\n", n, hex.EncodeToString(h.Sum(nil)))
}

// trailers sends ?lines= lines and then their SHA-256 and count as
// trailers: one declared with the Trailer header, one with
// http.TrailerPrefix.
func trailers(w http.ResponseWriter, r *http.Request) {
	lines := queryInt(r, "lines", 100)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Trailer", "X-Body-Sha256")
	h := sha256.New()
	for i := 1; i <= lines; i++ {
		line := fmt.Sprintf("line %d of %d\n", i, lines)
		io.WriteString(w, line)
		io.WriteString(h, line)
		if i%50 == 0 {
			w.(http.Flusher).Flush()
		}
	}
	w.Header().Set("X-Body-Sha256", hex.EncodeToString(h.Sum(nil)))
	w.Header().Set(http.TrailerPrefix+"X-Lines", strconv.Itoa(lines))
}

func stats(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{
		"worker":         workerID,
		"pid":            os.Getpid(),
		"blob_bytes":     blobBytes.Load(),
		"blob_done":      blobDone.Load(),
		"echo_bytes":     echoBytes.Load(),
		"slow_active":    slowActive.Load(),
		"slow_done":      slowDone.Load(),
		"slow_cancelled": slowCancelled.Load(),
		"events_sent":    eventsSent.Load(),
		"panics":         panics.Load(),
	})
}

func queryInt(r *http.Request, name string, def int) int {
	if v, err := strconv.Atoi(r.URL.Query().Get(name)); err == nil && v >= 0 {
		return v
	}
	return def
}

func main() {
	mux := http.NewServeMux()
	mux.HandleFunc("/echo", echo)
	mux.HandleFunc("GET /blob", blob)
	mux.HandleFunc("GET /events", events)
	mux.HandleFunc("GET /slow", slow)
	mux.HandleFunc("/upload", upload)
	mux.HandleFunc("/private", private)
	mux.HandleFunc("GET /trailers", trailers)
	mux.HandleFunc("GET /stats", stats)
	mux.HandleFunc("GET /panic", func(w http.ResponseWriter, r *http.Request) {
		panics.Add(1)
		panic("boom") // logged with its stack (as net/http does) and answered 500
	})
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "streaming example, worker %s: /echo /blob?n= /events?count=&ms= /slow?ms= "+
			"/upload /private /trailers?lines= /panic /stats\n", workerID)
	})
	log.SetPrefix(fmt.Sprintf("[streaming worker %s pid %d] ", workerID, os.Getpid()))
	log.Fatal(sluice.Serve(mux))
}
