// The smallest sluice worker: a net/http handler served through the gateway.
//
//	(cd examples/go && go build -o /tmp/hello ./hello)
//	build/server/sluice --listen 127.0.0.1:8080 --workers 2 -- /tmp/hello
//	curl http://127.0.0.1:8080/
//
// Each worker process gets its slot number in SLUICE_WORKER_ID, so repeated
// requests show which of the workers answered. r.TLS is set when the client
// used https (a --tls-cert listener), as with net/http's own server.
package main

import (
	"fmt"
	"log"
	"net/http"
	"os"

	sluice "sluice.dev/go"
)

func main() {
	id := os.Getenv("SLUICE_WORKER_ID")
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		scheme := "http"
		if r.TLS != nil {
			scheme = "https"
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintf(w, "Hello from worker %s (%s, %s)\n", id, scheme, r.Proto)
	})
	log.Fatal(sluice.Serve(mux)) // exits 0 when the gateway drains the worker
}
