// Package sluice serves any net/http handler behind the sluice gateway.
//
// The gateway terminates HTTP/1.1, HTTP/2, TLS and WebSockets, and relays
// each request to a worker process as a stream of frames over a Unix socket
// (the sluice worker protocol, protocol/PROTOCOL.md in the sluice
// repository). This package is that worker side for Go: the handler gets a
// normal *http.Request and http.ResponseWriter, so http.ServeMux, chi,
// gorilla/mux, gin, echo and any other http.Handler run unchanged:
//
//	func main() {
//		r := chi.NewRouter()
//		r.Get("/", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("hi")) })
//		log.Fatal(sluice.Serve(r)) // instead of http.ListenAndServe(":8080", r)
//	}
//
// and the gateway runs it:
//
//	sluice --listen 127.0.0.1:8080 --workers 4 -- ./app
//
// What the handler sees is what net/http's own server would give it: the
// method, URL, Host, headers, RemoteAddr, TLS (non-nil when the client
// used https), a streamed Body, and a Context cancelled when the client goes
// away or the gateway cancels the stream. Reading the Body grants the
// gateway credit for more, so a handler that reads slowly slows the upload,
// and Expect: 100-continue is answered when the handler first reads. Writes
// stream within the gateway's credit: Write blocks while the client is not
// taking the bytes. Content-Length for small responses, Content-Type
// sniffing, WriteHeader rules, trailers (the Trailer header and
// http.TrailerPrefix), http.Flusher and http.ResponseController (Flush,
// read and write deadlines) work as with net/http. Hijack returns an error:
// the gateway owns the client connection; WebSockets, which the gateway
// terminates, are accepted with Accept and carry whole messages.
//
// Each request runs on its own goroutine, up to WithMaxStreams at once. A
// panic in a handler is logged and answered 500 (or the stream is reset if
// the response had started); the worker keeps serving. SIGTERM retires the
// worker gracefully: the gateway stops sending it requests, those in flight
// finish, and Serve ends the process with status 0.
//
// A worker started by hand can attach to several gateways at once, over
// Unix sockets, TCP or TLS (SLUICE_SOCKET="tls:gw.example:7001, ..." or
// WithSocket): remote mode, in which it keeps one link per gateway address,
// reconnects lost links and resolves host names again (see the README).
//
// The protocol core (frames, link and stream state, credit) is in the
// sub-package protocol, which does no I/O.
package sluice
