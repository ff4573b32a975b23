package sluice_test

import (
	"bytes"
	"errors"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	sluice "sluice.dev/go"
	"sluice.dev/go/protocol"
)

var okHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) })

func TestHelloCarriesSettingsCanonically(t *testing.T) {
	cases := []struct {
		name string
		opts []sluice.Option
		want protocol.Settings
		noWS bool
	}{
		{"defaults", nil, protocol.Settings{MaxStreams: sluice.DefaultMaxStreams, Window: sluice.DefaultInitialWindow}, false},
		{"set", []sluice.Option{sluice.WithMaxStreams(7), sluice.WithInitialWindow(1234), sluice.WithToken("s3cret"),
			sluice.WithMaxFrame(32768)},
			protocol.Settings{MaxStreams: 7, Window: 1234, Token: "s3cret", MaxFrame: 32768,
				Has: protocol.KeyToken | protocol.KeyMaxFrame}, false},
		// the initial window is capped by the window
		{"capped", []sluice.Option{sluice.WithWindow(500), sluice.WithInitialWindow(1000)},
			protocol.Settings{MaxStreams: sluice.DefaultMaxStreams, Window: 500}, false},
		// WebSockets are announced by default, not with WithWebSocket(false)
		{"no-websocket", []sluice.Option{sluice.WithWebSocket(false)},
			protocol.Settings{MaxStreams: sluice.DefaultMaxStreams, Window: sluice.DefaultInitialWindow}, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := startGW(t, okHandler, gwOpts{}, c.opts...)
			want := protocol.Frame{Type: protocol.Hello, Version: protocol.Version, Settings: c.want}
			st := &want.Settings
			st.Pid, st.Lib = uint64(os.Getpid()), sluice.Lib
			st.Has |= protocol.KeyPid | protocol.KeyLib | protocol.KeyMaxStreams | protocol.KeyWindow
			if !c.noWS {
				st.WebSocket = true
				st.Has |= protocol.KeyWebSocket
			}
			if !strings.HasPrefix(g.hello.Settings.Lib, "sluice-go/") {
				t.Errorf("lib %q", g.hello.Settings.Lib)
			}
			if g.hello.Settings != *st {
				t.Errorf("settings %+v, want %+v", g.hello.Settings, *st)
			}
			if wb := protocol.AppendFrame(nil, &want); !bytes.Equal(g.hello.raw, wb) {
				t.Errorf("HELLO bytes\n%x, want the canonical\n%x", g.hello.raw, wb)
			}
			// and the link works
			sid := g.get("/")
			if r := g.response(sid); r.status != 200 || string(r.body) != "ok" {
				t.Errorf("response %d %q", r.status, r.body)
			}
		})
	}
}

// handshakeFails sends the gateway's side of a failing handshake (raw
// bytes; nil: nothing) and checks the worker's ERROR and Serve's error.
func handshakeFails(t *testing.T, raw []byte, want protocol.Code, opts ...sluice.Option) {
	t.Helper()
	g := startGW(t, okHandler, gwOpts{noHello: true}, opts...)
	if raw != nil {
		g.sendRaw(raw)
	}
	f := g.recv()
	if f.Type != protocol.Error || protocol.Code(f.Code) != want {
		t.Fatalf("got %v, want ERROR %v", f, want)
	}
	g.waitClosed()
	err := g.serveResult()
	var le *protocol.LinkError
	if !errors.As(err, &le) || le.Code != want {
		t.Fatalf("Serve returned %v (%T), want a *protocol.LinkError %v", err, err, want)
	}
	if !strings.Contains(g.log.String(), "link error") {
		t.Errorf("nothing logged: %q", g.log.String())
	}
}

func TestHelloWithoutWindowIsFieldType(t *testing.T) {
	f := protocol.Frame{Type: protocol.Hello, Version: protocol.Version}
	f.Settings.Server, f.Settings.Has = "fakegw", protocol.KeyServer
	handshakeFails(t, protocol.AppendFrame(nil, &f), protocol.FieldType)
}

func TestHelloVersionMismatch(t *testing.T) {
	f := protocol.Frame{Type: protocol.Hello, Version: 2}
	f.Settings.Window, f.Settings.Has = 1000, protocol.KeyWindow
	handshakeFails(t, protocol.AppendFrame(nil, &f), protocol.VersionMismatch)
}

func TestHandshakeTimeout(t *testing.T) {
	start := time.Now()
	handshakeFails(t, nil, protocol.Timeout, sluice.WithHandshakeTimeout(150*time.Millisecond))
	if d := time.Since(start); d < 150*time.Millisecond {
		t.Errorf("gave up after %v", d)
	}
}

func TestFrameBeforeHelloIsUnexpected(t *testing.T) {
	handshakeFails(t, protocol.AppendFrame(nil, &protocol.Frame{Type: protocol.Ping, Opaque: 1}), protocol.UnexpectedFrame)
}

func TestGatewayErrorEndsServe(t *testing.T) {
	g := startGW(t, okHandler, gwOpts{})
	g.send(&protocol.Frame{Type: protocol.Error, Code: uint64(protocol.Auth), Message: "no"})
	g.waitClosed()
	var le *protocol.LinkError
	if err := g.serveResult(); !errors.As(err, &le) || le.Code != protocol.Auth {
		t.Fatalf("Serve returned %v, want the gateway's auth error", err)
	}
}

func TestWorkerOptionsAreChecked(t *testing.T) {
	for _, opts := range [][]sluice.Option{
		{sluice.WithSocket("")},
		{sluice.WithSocket("x"), sluice.WithMaxStreams(0)},
		{sluice.WithSocket("x"), sluice.WithMaxStreams(70000)},
		{sluice.WithSocket("x"), sluice.WithWindow(-1)},
		{sluice.WithSocket("x"), sluice.WithMaxFrame(100)},
	} {
		if _, err := sluice.NewWorker(okHandler, opts...); err == nil {
			t.Errorf("NewWorker accepted bad options")
		}
	}
	t.Setenv("SLUICE_SOCKET", "")
	if err := sluice.Serve(okHandler); err == nil || !strings.Contains(err.Error(), "SLUICE_SOCKET") {
		t.Errorf("Serve without a socket: %v", err)
	}
}
