package sluice_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"reflect"
	"testing"

	sluice "sluice.dev/go"
	"sluice.dev/go/protocol"
)

// seen is what a handler saw of its request.
type seen struct {
	r         *http.Request
	body      string
	bodyErr   error
	trailer   http.Header // r.Trailer before reading the body
	trailerAt http.Header // r.Trailer after EOF
	local     net.Addr
	server    *http.Server
	ctxErr    error // r.Context().Err() while the handler ran
}

// capture serves every request by recording it (and reading its body) on ch.
func capture(ch chan<- seen) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := seen{r: r, trailer: r.Trailer.Clone(), ctxErr: r.Context().Err()}
		b, err := io.ReadAll(r.Body)
		s.body, s.bodyErr = string(b), err
		s.trailerAt = r.Trailer.Clone()
		s.local, _ = r.Context().Value(http.LocalAddrContextKey).(net.Addr)
		s.server, _ = r.Context().Value(http.ServerContextKey).(*http.Server)
		ch <- s
		w.Write([]byte("ok"))
	})
}

func TestRequestMapping(t *testing.T) {
	ch := make(chan seen, 1)
	g := startGW(t, capture(ch), gwOpts{})
	v6 := &protocol.Addr{Host: "2001:db8::1", Port: 5555}
	unix := &protocol.Addr{}
	cases := []struct {
		name  string
		req   req
		check func(t *testing.T, s seen)
	}{
		{"origin form", req{method: "POST", target: "/a/b%20c?x=1&y=%2F", headers: [][2]string{{"host", "example.test:8080"},
			{"accept", "text/html"}, {"x-custom-thing", "1"}, {"accept", "*/*"}, {"etag", "\"e\""},
			{"www-authenticate", "Basic"}, {"content-type", "text/plain"}}},
			func(t *testing.T, s seen) {
				r := s.r
				eq(t, "Method", r.Method, "POST")
				eq(t, "RequestURI", r.RequestURI, "/a/b%20c?x=1&y=%2F")
				eq(t, "URL.Path", r.URL.Path, "/a/b c")
				eq(t, "URL.RawPath", r.URL.EscapedPath(), "/a/b%20c")
				eq(t, "URL.RawQuery", r.URL.RawQuery, "x=1&y=%2F")
				eq(t, "query y", r.URL.Query().Get("y"), "/")
				eq(t, "URL.Host", r.URL.Host, "")
				eq(t, "Host", r.Host, "example.test:8080")
				eq(t, "Proto", r.Proto, "HTTP/1.1")
				eq(t, "ProtoMajor/Minor", [2]int{r.ProtoMajor, r.ProtoMinor}, [2]int{1, 1})
				want := http.Header{"Accept": {"text/html", "*/*"}, "X-Custom-Thing": {"1"}, "Etag": {"\"e\""},
					"Www-Authenticate": {"Basic"}, "Content-Type": {"text/plain"}}
				eq(t, "Header", r.Header, want)
				eq(t, "RemoteAddr", r.RemoteAddr, "127.0.0.1:4242")
				if r.TLS != nil {
					t.Errorf("TLS set for http")
				}
				eq(t, "ContentLength", r.ContentLength, int64(0))
				eq(t, "TransferEncoding", len(r.TransferEncoding), 0)
				eq(t, "Body", r.Body, io.ReadCloser(http.NoBody))
				eq(t, "local addr", s.local.String(), "127.0.0.1:8080")
				if _, ok := s.local.(*net.TCPAddr); !ok {
					t.Errorf("local addr %T", s.local)
				}
				if s.server == nil {
					t.Errorf("no http.ServerContextKey")
				}
				if s.ctxErr != nil {
					t.Errorf("context done while the handler ran: %v", s.ctxErr)
				}
			}},
		{"absolute form, HTTP/1.0", req{target: "http://example.test:81/p?q", version: 10,
			headers: [][2]string{{"host", "example.test:81"}}},
			func(t *testing.T, s seen) {
				r := s.r
				eq(t, "URL.Scheme", r.URL.Scheme, "http")
				eq(t, "URL.Host", r.URL.Host, "example.test:81")
				eq(t, "URL.Path", r.URL.Path, "/p")
				eq(t, "URL.RawQuery", r.URL.RawQuery, "q")
				eq(t, "RequestURI", r.RequestURI, "http://example.test:81/p?q")
				eq(t, "Host", r.Host, "example.test:81")
				eq(t, "Proto", r.Proto, "HTTP/1.0")
				eq(t, "ProtoMajor/Minor", [2]int{r.ProtoMajor, r.ProtoMinor}, [2]int{1, 0})
				if _, ok := r.Header["Host"]; ok {
					t.Errorf("Host in r.Header")
				}
			}},
		{"HTTP/2 https IPv6", req{target: "/x", version: 20, scheme: "https", client: v6,
			server: &protocol.Addr{Host: "::1", Port: 8443}, headers: [][2]string{{"host", "secure.test:8443"}}},
			func(t *testing.T, s seen) {
				r := s.r
				eq(t, "Proto", r.Proto, "HTTP/2.0")
				eq(t, "ProtoMajor/Minor", [2]int{r.ProtoMajor, r.ProtoMinor}, [2]int{2, 0})
				eq(t, "RemoteAddr", r.RemoteAddr, "[2001:db8::1]:5555")
				if r.TLS == nil {
					t.Fatalf("no TLS for https")
				}
				eq(t, "TLS.ServerName", r.TLS.ServerName, "secure.test")
				eq(t, "TLS.HandshakeComplete", r.TLS.HandshakeComplete, true)
				eq(t, "local addr", s.local.String(), "[::1]:8443")
				eq(t, "Host", r.Host, "secure.test:8443")
			}},
		{"unix client", req{client: unix, server: unix},
			func(t *testing.T, s seen) {
				eq(t, "RemoteAddr", s.r.RemoteAddr, "")
				if _, ok := s.local.(*net.UnixAddr); !ok {
					t.Errorf("local addr %T %v, want *net.UnixAddr", s.local, s.local)
				}
			}},
		{"OPTIONS *", req{method: "OPTIONS", target: "*"},
			func(t *testing.T, s seen) {
				eq(t, "URL.Path", s.r.URL.Path, "*")
				eq(t, "RequestURI", s.r.RequestURI, "*")
			}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			sid := g.request(c.req)
			s := within(t, ch, "the handler")
			c.check(t, s)
			if r := g.response(sid); r.status != 200 {
				t.Errorf("status %d", r.status)
			}
		})
	}
}

func eq[T any](t *testing.T, what string, got, want T) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s = %#v, want %#v", what, got, want)
	}
}

func TestRequestContentLengthAndBody(t *testing.T) {
	ch := make(chan seen, 1)
	g := startGW(t, capture(ch), gwOpts{})
	t.Run("declared", func(t *testing.T) {
		sid := g.request(req{method: "POST", body: protocol.BodyFollows,
			headers: [][2]string{{"host", "h"}, {"content-length", "5"}}})
		g.body(sid, []byte("hello"), 2, true)
		s := within(t, ch, "the handler")
		eq(t, "ContentLength", s.r.ContentLength, int64(5))
		eq(t, "TransferEncoding", len(s.r.TransferEncoding), 0)
		eq(t, "Content-Length header", s.r.Header.Get("Content-Length"), "5")
		eq(t, "body", s.body, "hello")
		eq(t, "body error", s.bodyErr, error(nil))
		g.response(sid)
	})
	t.Run("chunked", func(t *testing.T) {
		sid := g.request(req{method: "PUT", body: protocol.BodyFollows,
			headers: [][2]string{{"host", "h"}, {"trailer", "x-checksum, X-Other"}}})
		g.body(sid, []byte("abc"), 0, false)
		g.send(&protocol.Frame{Type: protocol.End, Stream: sid, Headers: []protocol.Header{
			{Name: []byte("x-checksum"), Value: []byte("c1")}, {Name: []byte("x-other"), Value: []byte("o")}}})
		s := within(t, ch, "the handler")
		eq(t, "ContentLength", s.r.ContentLength, int64(-1))
		eq(t, "TransferEncoding", s.r.TransferEncoding, []string{"chunked"})
		eq(t, "body", s.body, "abc")
		eq(t, "Trailer before EOF", s.trailer, http.Header{"X-Checksum": nil, "X-Other": nil})
		eq(t, "Trailer after EOF", s.trailerAt, http.Header{"X-Checksum": {"c1"}, "X-Other": {"o"}})
		g.response(sid)
	})
	t.Run("HTTP/2 without length", func(t *testing.T) {
		sid := g.request(req{method: "POST", version: 20, body: protocol.BodyFollows})
		g.body(sid, []byte("h2"), 0, true)
		s := within(t, ch, "the handler")
		eq(t, "ContentLength", s.r.ContentLength, int64(-1))
		eq(t, "TransferEncoding", len(s.r.TransferEncoding), 0)
		eq(t, "body", s.body, "h2")
		g.response(sid)
	})
	t.Run("undeclared trailers", func(t *testing.T) {
		// net/http fills r.Trailer with the trailers received even when no
		// Trailer header announced them
		sid := g.request(req{method: "POST", body: protocol.BodyFollows})
		g.send(&protocol.Frame{Type: protocol.End, Stream: sid, Headers: []protocol.Header{
			{Name: []byte("grpc-status"), Value: []byte("0")}}})
		s := within(t, ch, "the handler")
		eq(t, "Trailer before EOF", s.trailer, http.Header(nil))
		eq(t, "Trailer after EOF", s.trailerAt, http.Header{"Grpc-Status": {"0"}})
		g.response(sid)
	})
}

func TestBadTargetIs400(t *testing.T) {
	called := make(chan bool, 1)
	g := startGW(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { called <- true }), gwOpts{})
	sid := g.request(req{target: "no-slash"})
	r := g.response(sid)
	if r.status != 400 || len(called) != 0 {
		t.Errorf("status %d, handler called %v", r.status, len(called) != 0)
	}
}

func TestSetBodyLimitOutsideSluice(t *testing.T) {
	r, _ := http.NewRequestWithContext(context.Background(), "POST", "/", nil)
	if err := sluice.SetBodyLimit(r, 10); err == nil {
		t.Errorf("SetBodyLimit accepted a request that did not come through sluice")
	}
}
