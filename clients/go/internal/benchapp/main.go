// Command benchapp is the Go program of scripts/bench's `go` section: the
// same handlers served either through the gateway (sluice.Serve, when the
// gateway runs it as a worker) or on Go's own net/http server (-listen), so
// the two sides differ only in what carries the requests.
//
//	sluice --listen 127.0.0.1:8080 --workers 1 -- env GOMAXPROCS=1 benchapp
//	GOMAXPROCS=1 benchapp -listen 127.0.0.1:8081
//
// Routes:
//
//	/                 "Hello, world!\n", text/plain (the hello of the other sections)
//	/stream?kb=N      N KiB (default 64) of application/octet-stream, written as
//	                  4 KiB writes with a Flush at the end; byte i of the body
//	                  is i % 4096 % 251
//
// Every setting is the default of its side: http.ListenAndServe, sluice.Serve.
package main

import (
	"flag"
	"io"
	"log"
	"net/http"
	"strconv"

	sluice "sluice.dev/go"
)

const hello = "Hello, world!\n"

// maxKB bounds /stream?kb=N (64 MiB).
const maxKB = 64 << 10

// chunk is one 4 KiB write of /stream.
var chunk = func() []byte {
	b := make([]byte, 4096)
	for i := range b {
		b[i] = byte(i % 251)
	}
	return b
}()

func helloHandler(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain")
	io.WriteString(w, hello)
}

func streamHandler(w http.ResponseWriter, r *http.Request) {
	kb := 64
	if v := r.URL.Query().Get("kb"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > maxKB {
			http.Error(w, "kb: a number of KiB, 0 to 65536", http.StatusBadRequest)
			return
		}
		kb = n
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	for left := kb << 10; left > 0; left -= len(chunk) {
		if _, err := w.Write(chunk[:min(left, len(chunk))]); err != nil {
			return // the client went away
		}
	}
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
}

func main() {
	listen := flag.String("listen", "", "serve on net/http at `ADDR` (host:port) instead of through the gateway")
	flag.Parse()
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		helloHandler(w, r)
	})
	mux.HandleFunc("/stream", streamHandler)
	if *listen != "" {
		log.Fatal(http.ListenAndServe(*listen, mux))
	}
	log.Fatal(sluice.Serve(mux))
}
