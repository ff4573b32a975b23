package sluice_test

import (
	"bytes"
	"net/http"
	"strings"
	"testing"

	"sluice.dev/go/protocol"
)

type respCase struct {
	name    string
	method  string
	handler func(t *testing.T, w http.ResponseWriter, r *http.Request)
	check   func(t *testing.T, r *reply, log string)
}

// runResp serves each case's handler once behind a fresh fake gateway and
// checks what the gateway got.
func runResp(t *testing.T, cases []respCase) {
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := startGW(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { c.handler(t, w, r) }), gwOpts{})
			sid := g.request(req{method: c.method})
			r := g.response(sid)
			g.sync()
			c.check(t, r, g.log.String())
		})
	}
}

// full checks a complete response: status, body, and Content-Length and
// Content-Type ("-": absent).
func full(t *testing.T, r *reply, status int, body, cl, ct string) {
	t.Helper()
	if r.reset != nil {
		t.Fatalf("stream reset: %v", r.reset)
	}
	if !r.ended {
		t.Fatalf("no END")
	}
	eq(t, "status", r.status, status)
	eq(t, "body", string(r.body), body)
	for _, h := range []struct{ name, want string }{{"Content-Length", cl}, {"Content-Type", ct}} {
		switch {
		case h.want == "-" && r.has(h.name):
			t.Errorf("%s: %q, want none", h.name, r.header(h.name))
		case h.want != "-" && r.header(h.name) != h.want:
			t.Errorf("%s: %q, want %q", h.name, r.header(h.name), h.want)
		}
	}
	if len(hvals(r.headers, "Content-Length")) > 1 || len(hvals(r.headers, "Content-Type")) > 1 {
		t.Errorf("repeated framing headers: %s", fmtHeaders(r.headers))
	}
}

func write(t *testing.T, w http.ResponseWriter, s string) {
	t.Helper()
	if n, err := w.Write([]byte(s)); n != len(s) || err != nil {
		t.Errorf("Write(%d bytes) = %d, %v", len(s), n, err)
	}
}

const textPlain = "text/plain; charset=utf-8"

func TestResponseFraming(t *testing.T) {
	big := strings.Repeat("x", 3000)
	runResp(t, []respCase{
		{"nothing written", "", func(t *testing.T, w http.ResponseWriter, r *http.Request) {},
			func(t *testing.T, r *reply, _ string) {
				full(t, r, 200, "", "-", "-")
				eq(t, "body mode", r.bodyMode, uint64(protocol.BodyNone))
			}},
		{"small body gets a length", "", func(t *testing.T, w http.ResponseWriter, r *http.Request) {
			write(t, w, "hello ")
			write(t, w, "world")
		}, func(t *testing.T, r *reply, _ string) {
			full(t, r, 200, "hello world", "11", textPlain)
			eq(t, "BODY frames", len(r.bodyFrames), 1)
		}},
		{"2048 bytes still get a length", "", func(t *testing.T, w http.ResponseWriter, r *http.Request) {
			write(t, w, big[:2048])
		}, func(t *testing.T, r *reply, _ string) { full(t, r, 200, big[:2048], "2048", textPlain) }},
		{"WriteString", "", func(t *testing.T, w http.ResponseWriter, r *http.Request) {
			if n, err := w.(interface{ WriteString(string) (int, error) }).WriteString("str"); n != 3 || err != nil {
				t.Errorf("WriteString: %d, %v", n, err)
			}
		}, func(t *testing.T, r *reply, _ string) { full(t, r, 200, "str", "3", textPlain) }},
		{"flushed: no length", "", func(t *testing.T, w http.ResponseWriter, r *http.Request) {
			write(t, w, "a")
			w.(http.Flusher).Flush()
			write(t, w, "b")
		}, func(t *testing.T, r *reply, _ string) { full(t, r, 200, "ab", "-", textPlain) }},
		{"more than 2048 bytes: no length", "", func(t *testing.T, w http.ResponseWriter, r *http.Request) {
			write(t, w, big)
		}, func(t *testing.T, r *reply, _ string) { full(t, r, 200, big, "-", textPlain) }},
		{"many small writes past 2048: no length", "", func(t *testing.T, w http.ResponseWriter, r *http.Request) {
			for i := 0; i < 30; i++ {
				write(t, w, big[:100])
			}
		}, func(t *testing.T, r *reply, _ string) { full(t, r, 200, big[:3000], "-", textPlain) }},
		{"trailers declared: no length", "", func(t *testing.T, w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Trailer", "X-Sum")
			write(t, w, "abc")
			w.Header().Set("X-Sum", "s1")
		}, func(t *testing.T, r *reply, _ string) {
			full(t, r, 200, "abc", "-", textPlain)
			eq(t, "Trailer header", r.header("Trailer"), "X-Sum")
			eq(t, "trailers", fmtHeaders(r.trailers), `[X-Sum="s1"]`)
		}},
		{"TrailerPrefix: no length", "", func(t *testing.T, w http.ResponseWriter, r *http.Request) {
			write(t, w, "abc")
			w.Header().Set(http.TrailerPrefix+"X-Late", "l1")
		}, func(t *testing.T, r *reply, _ string) {
			full(t, r, 200, "abc", "-", textPlain)
			eq(t, "trailers", fmtHeaders(r.trailers), `[X-Late="l1"]`)
			for _, h := range r.headers {
				if strings.Contains(string(h.Name), "Late") || strings.HasPrefix(string(h.Name), http.TrailerPrefix) {
					t.Errorf("trailer in the head: %s", fmtHeaders(r.headers))
				}
			}
		}},
		{"TrailerPrefix without a body", "", func(t *testing.T, w http.ResponseWriter, r *http.Request) {
			w.Header().Set(http.TrailerPrefix+"Grpc-Status", "0")
		}, func(t *testing.T, r *reply, _ string) {
			full(t, r, 200, "", "-", "-")
			eq(t, "trailers", fmtHeaders(r.trailers), `[Grpc-Status="0"]`)
		}},
		{"declared length kept", "", func(t *testing.T, w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "3")
			write(t, w, "abc")
		}, func(t *testing.T, r *reply, _ string) { full(t, r, 200, "abc", "3", textPlain) }},
		{"declared length, large body", "", func(t *testing.T, w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "3000")
			write(t, w, big)
		}, func(t *testing.T, r *reply, _ string) { full(t, r, 200, big, "3000", textPlain) }},
	})
}

func TestResponseContentType(t *testing.T) {
	runResp(t, []respCase{
		{"html sniffed", "", func(t *testing.T, w http.ResponseWriter, r *http.Request) {
			write(t, w, "<!DOCTYPE html><html><body>hi</body></html>")
		}, func(t *testing.T, r *reply, _ string) {
			full(t, r, 200, "<!DOCTYPE html><html><body>hi</body></html>", "43", "text/html; charset=utf-8")
		}},
		{"binary sniffed", "", func(t *testing.T, w http.ResponseWriter, r *http.Request) {
			write(t, w, "\x00\x01\x02\x03")
		}, func(t *testing.T, r *reply, _ string) {
			full(t, r, 200, "\x00\x01\x02\x03", "4", "application/octet-stream")
		}},
		{"sniffed from a large first write", "", func(t *testing.T, w http.ResponseWriter, r *http.Request) {
			write(t, w, "<html>"+strings.Repeat(" ", 5000))
		}, func(t *testing.T, r *reply, _ string) {
			full(t, r, 200, "<html>"+strings.Repeat(" ", 5000), "-", "text/html; charset=utf-8")
		}},
		{"set by the handler", "", func(t *testing.T, w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			write(t, w, "<html>")
		}, func(t *testing.T, r *reply, _ string) { full(t, r, 200, "<html>", "6", "application/json") }},
		{"key set to nil: none", "", func(t *testing.T, w http.ResponseWriter, r *http.Request) {
			w.Header()["Content-Type"] = nil
			write(t, w, "<html>")
		}, func(t *testing.T, r *reply, _ string) { full(t, r, 200, "<html>", "6", "-") }},
		{"Content-Encoding: none", "", func(t *testing.T, w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Encoding", "gzip")
			write(t, w, "\x1f\x8b\x08")
		}, func(t *testing.T, r *reply, _ string) {
			full(t, r, 200, "\x1f\x8b\x08", "3", "-")
			eq(t, "Content-Encoding", r.header("Content-Encoding"), "gzip")
		}},
		{"error status still sniffed", "", func(t *testing.T, w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(404)
			write(t, w, "nope")
		}, func(t *testing.T, r *reply, _ string) { full(t, r, 404, "nope", "4", textPlain) }},
	})
}

func TestResponseStatusRules(t *testing.T) {
	runResp(t, []respCase{
		{"superfluous WriteHeader ignored", "", func(t *testing.T, w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(201)
			w.WriteHeader(500)
			write(t, w, "x")
		}, func(t *testing.T, r *reply, log string) {
			full(t, r, 201, "x", "1", textPlain)
			if !strings.Contains(log, "superfluous response.WriteHeader call from") || !strings.Contains(log, "response_test.go") {
				t.Errorf("log %q", log)
			}
		}},
		{"Write then WriteHeader", "", func(t *testing.T, w http.ResponseWriter, r *http.Request) {
			write(t, w, "x")
			w.WriteHeader(500)
		}, func(t *testing.T, r *reply, log string) {
			full(t, r, 200, "x", "1", textPlain)
			if !strings.Contains(log, "superfluous") {
				t.Errorf("log %q", log)
			}
		}},
		{"1xx dropped", "", func(t *testing.T, w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Link", "</style.css>; rel=preload")
			w.WriteHeader(103)
			w.WriteHeader(100)
			w.WriteHeader(202)
			write(t, w, "x")
		}, func(t *testing.T, r *reply, log string) {
			full(t, r, 202, "x", "1", textPlain)
			eq(t, "Link", r.header("Link"), "</style.css>; rel=preload")
			if log != "" {
				t.Errorf("log %q", log)
			}
		}},
		{"1xx then implicit 200", "", func(t *testing.T, w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(103)
			write(t, w, "x")
		}, func(t *testing.T, r *reply, _ string) { full(t, r, 200, "x", "1", textPlain) }},
		{"204 has no body", "", func(t *testing.T, w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(204)
			if n, err := w.Write([]byte("x")); n != 0 || err != http.ErrBodyNotAllowed {
				t.Errorf("Write on 204: %d, %v", n, err)
			}
		}, func(t *testing.T, r *reply, _ string) {
			full(t, r, 204, "", "-", "-")
			eq(t, "body mode", r.bodyMode, uint64(protocol.BodyNone))
		}},
		{"304 has no body", "", func(t *testing.T, w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Etag", `"v1"`)
			w.WriteHeader(304)
			if _, err := w.Write([]byte("x")); err != http.ErrBodyNotAllowed {
				t.Errorf("Write on 304: %v", err)
			}
			w.(http.Flusher).Flush()
		}, func(t *testing.T, r *reply, _ string) {
			full(t, r, 304, "", "-", "-")
			eq(t, "body mode", r.bodyMode, uint64(protocol.BodyNone))
			eq(t, "Etag", r.header("Etag"), `"v1"`)
		}},
	})
	t.Run("bad code panics as in net/http", func(t *testing.T) {
		g := startGW(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(99) }), gwOpts{})
		r := g.response(g.get("/"))
		eq(t, "status", r.status, 500)
	})
}

func TestResponseHead(t *testing.T) {
	runResp(t, []respCase{
		{"small body: length, no body", "HEAD", func(t *testing.T, w http.ResponseWriter, r *http.Request) {
			write(t, w, "hello")
		}, func(t *testing.T, r *reply, _ string) {
			full(t, r, 200, "", "5", textPlain)
			eq(t, "body mode", r.bodyMode, uint64(protocol.BodyNone))
		}},
		{"nothing written: no length", "HEAD", func(t *testing.T, w http.ResponseWriter, r *http.Request) {},
			func(t *testing.T, r *reply, _ string) {
				full(t, r, 200, "", "-", "-")
				eq(t, "body mode", r.bodyMode, uint64(protocol.BodyNone))
			}},
		{"large body: no length", "HEAD", func(t *testing.T, w http.ResponseWriter, r *http.Request) {
			write(t, w, strings.Repeat("y", 5000))
			write(t, w, "more")
			w.(http.Flusher).Flush()
		}, func(t *testing.T, r *reply, _ string) {
			full(t, r, 200, "", "-", textPlain)
			eq(t, "body mode", r.bodyMode, uint64(protocol.BodyNone))
		}},
		{"declared length kept", "HEAD", func(t *testing.T, w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "1000")
		}, func(t *testing.T, r *reply, log string) {
			full(t, r, 200, "", "1000", "-")
			if log != "" {
				t.Errorf("log %q", log)
			}
		}},
	})
}

func TestResponseDeclaredLength(t *testing.T) {
	runResp(t, []respCase{
		{"exceeded", "", func(t *testing.T, w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "3")
			write(t, w, "ab")
			if n, err := w.Write([]byte("cd")); n != 0 || err != http.ErrContentLength {
				t.Errorf("Write beyond the length: %d, %v", n, err)
			}
		}, func(t *testing.T, r *reply, _ string) {
			// 2 of 3 bytes: the client must not see a complete response
			if r.reset == nil || r.reset.Code != protocol.ResetInternal {
				t.Fatalf("short body ended without RESET: body %q ended %v", r.body, r.ended)
			}
		}},
		{"exact, then one byte more", "", func(t *testing.T, w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "3")
			write(t, w, "abc")
			if _, err := w.Write([]byte("d")); err != http.ErrContentLength {
				t.Errorf("Write beyond the length: %v", err)
			}
		}, func(t *testing.T, r *reply, _ string) { full(t, r, 200, "abc", "3", textPlain) }},
		{"short body", "", func(t *testing.T, w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "10")
			write(t, w, "abc")
		}, func(t *testing.T, r *reply, log string) {
			if r.reset == nil || r.reset.Code != protocol.ResetInternal {
				t.Fatalf("no RESET: %+v", r)
			}
			if !strings.Contains(log, "wrote 3 of its Content-Length 10") {
				t.Errorf("log %q", log)
			}
		}},
		{"short body after a flush", "", func(t *testing.T, w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "10")
			write(t, w, "abc")
			w.(http.Flusher).Flush()
		}, func(t *testing.T, r *reply, _ string) {
			eq(t, "status", r.status, 200)
			eq(t, "body", string(r.body), "abc")
			if r.reset == nil {
				t.Fatalf("no RESET")
			}
		}},
		{"invalid length dropped", "", func(t *testing.T, w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "x1")
			write(t, w, "abc")
		}, func(t *testing.T, r *reply, log string) {
			full(t, r, 200, "abc", "3", textPlain)
			if !strings.Contains(log, "invalid Content-Length") {
				t.Errorf("log %q", log)
			}
		}},
	})
}

func TestResponseHeaders(t *testing.T) {
	runResp(t, []respCase{
		{"snapshot at WriteHeader", "", func(t *testing.T, w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-Early", "1")
			w.Header().Set("Trailer", "X-T")
			w.WriteHeader(200)
			w.Header().Set("X-Early", "2")
			w.Header().Set("X-Late", "1")
			w.Header().Set("Content-Type", "text/html")
			w.Header().Set("X-T", "t1") // a declared trailer: read at the end
			write(t, w, "x")
		}, func(t *testing.T, r *reply, _ string) {
			full(t, r, 200, "x", "-", textPlain)
			eq(t, "X-Early", r.header("X-Early"), "1")
			eq(t, "X-Late", r.has("X-Late"), false)
			eq(t, "trailers", fmtHeaders(r.trailers), `[X-T="t1"]`)
		}},
		{"values and names cleaned", "", func(t *testing.T, w http.ResponseWriter, r *http.Request) {
			h := w.Header()
			h.Set("X-Crlf", "a\r\nb\nc")
			h.Set("X-Space", "  padded  ")
			h["Bad Name"] = []string{"1"}
			h["X:Colon"] = []string{"1"}
			h[""] = []string{"1"}
			h["X-\x7f"] = []string{"1"}
			h["X-Multi"] = []string{"1", "2"}
			write(t, w, "x")
		}, func(t *testing.T, r *reply, _ string) {
			full(t, r, 200, "x", "1", textPlain)
			eq(t, "X-Crlf", r.header("X-Crlf"), "a  b c")
			eq(t, "X-Space", r.header("X-Space"), "padded")
			eq(t, "X-Multi", hvals(r.headers, "X-Multi"), []string{"1", "2"})
			for _, h := range r.headers {
				if bytes.ContainsAny(h.Name, " :\x7f") || len(h.Name) == 0 {
					t.Errorf("invalid name passed: %q", h.Name)
				}
			}
			eq(t, "header count", len(r.headers), 6) // Crlf, Space, Multi x2, Content-Type, Content-Length
		}},
	})
}

// TestResponseWriteAfterEnd: writes after the stream ended fail and send nothing.
func TestResponseWriteAfterEnd(t *testing.T) {
	done := make(chan error, 1)
	g := startGW(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(204)
		w.(http.Flusher).Flush()
		_, err := w.Write([]byte("late"))
		done <- err
	}), gwOpts{})
	sid := g.get("/")
	r := g.response(sid)
	eq(t, "status", r.status, 204)
	// net/http says http.ErrBodyNotAllowed here; any error will do
	if err := within(t, done, "the handler"); err == nil {
		t.Errorf("late write accepted")
	}
	g.quiet(sid, 0)
}
