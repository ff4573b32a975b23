package sluice

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"net/textproto"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"sluice.dev/go/protocol"
)

// Header names arrive in lower case; net/http code expects them canonical.
// The common ones are looked up without allocating.
var commonKeys = func() map[string]string {
	m := map[string]string{}
	for _, k := range []string{"Accept", "Accept-Charset", "Accept-Encoding", "Accept-Language",
		"Authorization", "Cache-Control", "Connection", "Content-Disposition", "Content-Encoding",
		"Content-Length", "Content-Type", "Cookie", "Date", "Etag", "Expect", "Forwarded", "From",
		"Host", "If-Match", "If-Modified-Since", "If-None-Match", "If-Range", "If-Unmodified-Since",
		"Origin", "Pragma", "Range", "Referer", "Sec-Websocket-Key", "Sec-Websocket-Protocol",
		"Sec-Websocket-Version", "Te", "Trailer", "Upgrade-Insecure-Requests", "User-Agent", "Via",
		"X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "X-Real-Ip", "X-Request-Id",
		"Sec-Fetch-Dest", "Sec-Fetch-Mode", "Sec-Fetch-Site", "Sec-Fetch-User", "Sec-Ch-Ua",
		"Sec-Ch-Ua-Mobile", "Sec-Ch-Ua-Platform", "Dnt", "Priority", "Traceparent", "Tracestate"} {
		m[strings.ToLower(k)] = k
	}
	return m
}()

func canonicalKey(b []byte) string {
	if k, ok := commonKeys[string(b)]; ok {
		return k
	}
	return textproto.CanonicalMIMEHeaderKey(string(b))
}

func methodString(b []byte) string {
	switch string(b) { // no allocation: the compiler compares in place
	case "GET":
		return "GET"
	case "POST":
		return "POST"
	case "HEAD":
		return "HEAD"
	case "PUT":
		return "PUT"
	case "DELETE":
		return "DELETE"
	case "PATCH":
		return "PATCH"
	case "OPTIONS":
		return "OPTIONS"
	}
	return string(b)
}

// buildRequest makes the handler's *http.Request from a REQUEST frame, as
// net/http's server would from the same request.
func (w *glink) buildRequest(f *protocol.Frame, s *stream) *http.Request {
	s.ctx.s = s
	method, target := methodString(f.Method), string(f.Target)
	var r *http.Request
	if len(target) > 0 && target[0] == '/' && (len(target) == 1 || target[1] != '/') &&
		strings.IndexByte(target, '#') < 0 {
		// an origin-form target parses the same with url.Parse, which
		// NewRequestWithContext uses: one Request, made with its context
		r, _ = http.NewRequestWithContext(&s.ctx, method, target, nil)
	}
	if r != nil {
		r.RequestURI = target
	} else {
		r = (&http.Request{Method: method, RequestURI: target, URL: parseTarget(method, target)}).WithContext(&s.ctx)
	}
	switch f.Version {
	case 10:
		r.Proto, r.ProtoMajor, r.ProtoMinor = "HTTP/1.0", 1, 0
	case 20:
		r.Proto, r.ProtoMajor, r.ProtoMinor = "HTTP/2.0", 2, 0
	default:
		r.Proto, r.ProtoMajor, r.ProtoMinor = "HTTP/1.1", 1, 1
	}

	// all header values in one string, sliced
	total := 0
	for _, h := range f.Headers {
		total += len(h.Value)
	}
	var sb strings.Builder
	sb.Grow(total)
	for _, h := range f.Headers {
		sb.Write(h.Value)
	}
	all := sb.String()
	vals := make([]string, len(f.Headers))
	hdr := r.Header // NewRequestWithContext's (empty) map
	if hdr == nil {
		hdr = make(http.Header, len(f.Headers))
	}
	r.Host = ""
	off := 0
	var cl string
	haveCL := false
	for i, h := range f.Headers {
		v := all[off : off+len(h.Value)]
		off += len(h.Value)
		k := canonicalKey(h.Name)
		switch k {
		case "Host":
			if r.Host == "" {
				r.Host = v
			}
			continue
		case "Content-Length":
			cl, haveCL = v, true
		}
		if prev, ok := hdr[k]; ok {
			hdr[k] = append(prev, v)
		} else {
			vals[i] = v
			hdr[k] = vals[i : i+1 : i+1]
		}
	}
	if f.BodyMode == protocol.BodyWebSocket {
		// the gateway removed these hop-by-hop fields; put them back so
		// that code checking for an upgrade (frameworks' IsWebsocket) sees one
		hdr["Connection"] = []string{"Upgrade"}
		hdr["Upgrade"] = []string{"websocket"}
	}
	r.Header = hdr

	if r.Host == "" && r.URL != nil {
		r.Host = r.URL.Host
	}
	if f.Client.Host != "" {
		r.RemoteAddr = w.remoteAddr(f.Client)
	}
	if f.Scheme == "https" {
		host := r.Host
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		r.TLS = &tls.ConnectionState{HandshakeComplete: true, ServerName: host}
	}

	switch {
	case f.BodyMode == protocol.BodyNone || f.BodyMode == protocol.BodyWebSocket:
		r.Body = http.NoBody
	default:
		s.body = body{s: s, req: r}
		r.Body = &s.body
	}
	switch {
	case haveCL:
		n, err := strconv.ParseInt(cl, 10, 64)
		if err != nil || n < 0 {
			n = -1
		}
		r.ContentLength = n
	case f.BodyMode == protocol.BodyNone:
		r.ContentLength = 0
	default:
		r.ContentLength = -1
		if r.ProtoMajor == 1 {
			r.TransferEncoding = []string{"chunked"}
		}
	}
	if tr, ok := hdr["Trailer"]; ok {
		r.Trailer = make(http.Header)
		for _, line := range tr {
			for _, name := range strings.Split(line, ",") {
				if name = strings.TrimSpace(name); name != "" {
					r.Trailer[http.CanonicalHeaderKey(name)] = nil
				}
			}
		}
	}

	s.server = f.Server
	if s.body.s != nil {
		s.body.req = r
	}
	return r
}

// remoteAddr is host:port of a client, the same string for the requests of
// one client connection (a small cache, used by the reader goroutine only).
func (w *glink) remoteAddr(a protocol.Addr) string {
	e := &w.addrs[(a.Port^a.Port>>6)%uint16(len(w.addrs))]
	if e.port != a.Port || e.host != a.Host || e.s == "" {
		e.host, e.port = a.Host, a.Port
		e.s = net.JoinHostPort(a.Host, strconv.Itoa(int(a.Port)))
	}
	return e.s
}

// reqCtx is a request's context: it carries the values net/http's server
// puts there, and is cancelled with a cause (context.Cause) when the stream
// ends. The cancellable context inside is made only when someone asks for
// it (Done, or a cancellation with a cause): most handlers never do.
type reqCtx struct {
	s     *stream
	inner atomic.Pointer[innerCtx]
	dead  atomic.Bool // cancelled (cause is set)
	cause error       // guarded by the worker's mu
}

type innerCtx struct {
	ctx    context.Context
	cancel context.CancelCauseFunc
}

func (c *reqCtx) Deadline() (time.Time, bool) { return time.Time{}, false }

func (c *reqCtx) Done() <-chan struct{} { return c.get().ctx.Done() }

func (c *reqCtx) Err() error {
	if in := c.inner.Load(); in != nil {
		return in.ctx.Err()
	}
	if c.dead.Load() {
		return context.Canceled
	}
	return nil
}

func (c *reqCtx) Value(key any) any {
	switch key {
	case streamKey{}:
		return c.s
	case http.ServerContextKey:
		return c.s.w.srv
	case http.LocalAddrContextKey:
		return localAddr(c.s.server)
	}
	if in := c.inner.Load(); in != nil {
		return in.ctx.Value(key) // context.Cause and child contexts find the cancelCtx
	}
	return nil
}

func (c *reqCtx) String() string { return "sluice request context" }

func (c *reqCtx) get() *innerCtx {
	if in := c.inner.Load(); in != nil {
		return in
	}
	w := c.s.w
	w.mu.Lock()
	defer w.mu.Unlock()
	return c.makeLocked()
}

func (c *reqCtx) makeLocked() *innerCtx {
	if in := c.inner.Load(); in != nil {
		return in
	}
	in := &innerCtx{}
	in.ctx, in.cancel = context.WithCancelCause(context.Background())
	if c.cause != nil {
		in.cancel(c.cause)
	}
	c.inner.Store(in)
	return in
}

// cancelLocked ends the context with cause (mu held). withCause: make the
// inner context now, so that context.Cause reports cause later.
func (c *reqCtx) cancelLocked(cause error, withCause bool) {
	if c.cause != nil {
		return
	}
	c.cause = cause
	c.dead.Store(true)
	if withCause {
		c.makeLocked()
	}
	if in := c.inner.Load(); in != nil {
		in.cancel(cause)
	}
}

func localAddr(a protocol.Addr) net.Addr {
	if a.Host == "" {
		return &net.UnixAddr{Net: "unix"}
	}
	return &net.TCPAddr{IP: net.ParseIP(a.Host), Port: int(a.Port)}
}

// parseTarget parses the request target as net/http's server does; nil
// when it is not a valid request URI (the handler is then not called).
func parseTarget(method, target string) *url.URL {
	if method == "CONNECT" && !strings.HasPrefix(target, "/") {
		u, err := url.Parse("http://" + target)
		if err != nil {
			return nil
		}
		u.Scheme = ""
		return u
	}
	if target == "*" {
		return &url.URL{Path: "*"}
	}
	u, err := url.ParseRequestURI(target)
	if err != nil {
		return nil
	}
	return u
}

// dispatch runs the handler for s on a goroutine of its own: an idle one
// if there is one (its stack has already grown to what handlers need),
// else a new one. The goroutines are shared by all the worker's links.
func (w *glink) dispatch(s *stream) {
	wk := w.owner
	select {
	case wk.work <- s:
	default:
		go wk.runner(s)
	}
}

const maxIdleRunners = 256

func (wk *Worker) runner(s *stream) {
	for {
		s.w.serve(s, s.req)
		if wk.idle.Add(1) > maxIdleRunners {
			wk.idle.Add(-1)
			return
		}
		s = <-wk.work
		wk.idle.Add(-1)
		if s == nil {
			return
		}
	}
}

// serve runs the handler for one stream.
func (w *glink) serve(s *stream, req *http.Request) {
	rw := &s.rw
	rw.init(s, req)
	defer func() {
		if p := recover(); p != nil {
			rw.panicked(p)
		}
		w.mu.Lock()
		s.release()
		rw.putBuf()
		s.ctx.cancelLocked(context.Canceled, false) // as net/http does when ServeHTTP returns
		w.mu.Unlock()
	}()
	if req.URL == nil {
		http.Error(rw, "400 Bad Request: malformed request target", http.StatusBadRequest)
	} else {
		if w.cfg.maxBody >= 0 && !s.reqEnded {
			_ = SetBodyLimit(req, w.cfg.maxBody)
		}
		w.handler.ServeHTTP(rw, req)
	}
	rw.finish()
}

// panicked turns a handler panic into a 500, or a RESET once the response
// has started, and logs it as net/http does (http.ErrAbortHandler silently).
func (rw *response) panicked(p any) {
	if p != http.ErrAbortHandler {
		buf := make([]byte, 64<<10)
		buf = buf[:runtime.Stack(buf, false)]
		rw.s.w.cfg.errorLog.Printf("panic serving %s %s: %v\n%s", rw.req.Method, rw.req.RequestURI, p, buf)
	}
	w := rw.s.w
	w.mu.Lock()
	defer w.mu.Unlock()
	if rw.committed || p == http.ErrAbortHandler {
		rw.resetLocked(protocol.ResetInternal, "handler panicked")
		return
	}
	rw.header = http.Header{"Content-Type": {"text/plain; charset=utf-8"}, "X-Content-Type-Options": {"nosniff"}}
	rw.wroteHeader, rw.contentLength, rw.trailerNames = false, -1, nil
	rw.prefixKeys, rw.prefixScanned = nil, false
	rw.writeHeaderLocked(http.StatusInternalServerError)
	rw.getBuf()
	rw.buf = append(rw.buf[:0], "Internal Server Error\n"...)
	rw.written = int64(len(rw.buf))
	if err := rw.commitLocked(true, nil); err == nil && !rw.ended {
		if rw.flushBufLocked() == nil {
			rw.endLocked()
		}
	}
}

var errHijack = errors.New("sluice: Hijack is not supported: the gateway owns the client connection " +
	"(WebSockets are served by the gateway; see the sluice protocol's WebSocket streams)")
