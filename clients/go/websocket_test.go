package sluice_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	sluice "sluice.dev/go"
	"sluice.dev/go/protocol"
)

// wsReq sends a WebSocket handshake REQUEST (body = 3).
func (g *fakeGW) wsReq(headers ...[2]string) uint64 {
	g.t.Helper()
	hs := append([][2]string{{"host", "example.test"}, {"sec-websocket-version", "13"}}, headers...)
	return g.request(req{headers: hs, body: protocol.BodyWebSocket})
}

func (g *fakeGW) msg(sid uint64, flags uint64, data string) *protocol.Frame {
	return &protocol.Frame{Type: protocol.Message, Stream: sid, Flags: flags, Data: []byte(data)}
}

// wsMessage reads one whole message from the worker (pieces joined).
func (g *fakeGW) wsMessage(sid uint64) (uint64, string, int) {
	g.t.Helper()
	var data []byte
	pieces := 0
	for {
		f := g.recvFor(sid)
		if f.Type != protocol.Message {
			g.t.Fatalf("stream %d: %v, want MESSAGE", sid, f)
		}
		data = append(data, f.Data...)
		pieces++
		if f.Flags&protocol.MsgMore == 0 {
			return f.Flags, string(data), pieces
		}
	}
}

// echo is a WebSocket echo handler that reports how the WebSocket ended.
func echo(ended chan<- error, opts *sluice.AcceptOptions) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Set-Cookie", "a=1")
		ws, err := sluice.Accept(w, r, opts)
		if err != nil {
			ended <- err
			return
		}
		for {
			t, data, err := ws.ReadMessage()
			if err != nil {
				ended <- err
				return
			}
			if err := ws.WriteMessage(t, data); err != nil {
				ended <- err
				return
			}
		}
	}
}

func TestWebSocketEchoPiecesSubprotocolAndClose(t *testing.T) {
	ended := make(chan error, 1)
	seen := make(chan [2]bool, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen <- [2]bool{r.Header.Get("Upgrade") == "websocket" && r.Header.Get("Connection") == "Upgrade",
			sluice.IsWebSocket(r)}
		echo(ended, &sluice.AcceptOptions{Subprotocols: []string{"v2", "v1"}})(w, r)
	})
	g := startGW(t, h, gwOpts{websocket: true})
	sid := g.wsReq([2]string{"sec-websocket-protocol", "v1, v2"})
	r := g.recvFor(sid)
	if r.Type != protocol.Response || r.Status != 101 || r.BodyMode != 0 {
		t.Fatalf("answer %v, want RESPONSE 101", r)
	}
	if got := hvals(r.Headers, "sec-websocket-protocol"); len(got) != 1 || got[0] != "v2" {
		t.Errorf("subprotocol %q, want the server's preference v2", got)
	}
	if got := hvals(r.Headers, "set-cookie"); len(got) != 1 || got[0] != "a=1" {
		t.Errorf("set-cookie %q", got)
	}
	if v := within(t, seen, "the handler"); !v[0] || !v[1] {
		t.Errorf("handler saw upgrade headers %v, IsWebSocket %v", v[0], v[1])
	}
	// a text message in three pieces (split inside a UTF-8 sequence), then a binary one
	g.send(g.msg(sid, protocol.MsgText|protocol.MsgMore, "h\xc3"), g.msg(sid, protocol.MsgText|protocol.MsgMore, "\xa9l"),
		g.msg(sid, protocol.MsgText, "lo"), g.msg(sid, protocol.MsgBinary, "\x00\x01"))
	if fl, data, _ := g.wsMessage(sid); fl != protocol.MsgText || data != "héllo" {
		t.Errorf("echo %d %q", fl, data)
	}
	if fl, data, _ := g.wsMessage(sid); fl != protocol.MsgBinary || data != "\x00\x01" {
		t.Errorf("echo %d %q", fl, data)
	}
	// the client closes: ReadMessage reports its code and reason
	g.send(&protocol.Frame{Type: protocol.Close, Stream: sid, Code: 4001, Message: "bye", HasMessage: true})
	err := within(t, ended, "the handler's end")
	var ce *sluice.CloseError
	if !errors.As(err, &ce) || ce.Code != 4001 || ce.Text != "bye" || !errors.Is(err, sluice.ErrStreamClosed) {
		t.Errorf("ReadMessage after CLOSE: %v", err)
	}
	g.quiet(sid, 20*time.Millisecond) // nothing more on a closed stream
}

func TestWebSocketHandlerReturnClosesWith1000(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := sluice.Accept(w, r, nil)
		if err != nil {
			t.Error(err)
			return
		}
		ws.WriteMessage(sluice.TextMessage, []byte("hi"))
	})
	g := startGW(t, h, gwOpts{websocket: true})
	sid := g.wsReq()
	if r := g.recvFor(sid); r.Status != 101 {
		t.Fatalf("%v", r)
	}
	if _, data, _ := g.wsMessage(sid); data != "hi" {
		t.Errorf("message %q", data)
	}
	if f := g.recvFor(sid); f.Type != protocol.Close || f.Code != 1000 {
		t.Errorf("%v, want CLOSE 1000", f)
	}
}

func TestWebSocketCloseWithCodeAndPing(t *testing.T) {
	pong := make(chan string, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, _ := sluice.Accept(w, r, nil)
		ws.SetPongHandler(func(b []byte) { pong <- string(b) })
		if err := ws.Ping([]byte("p1")); err != nil {
			t.Error(err)
		}
		if err := ws.Ping(make([]byte, 126)); err == nil {
			t.Error("Ping with 126 bytes accepted")
		}
		if _, _, err := ws.ReadMessage(); err != nil { // the pong runs the handler, then this message
			t.Error(err)
		}
		ws.Close(4002, "done")
		if err := ws.WriteMessage(sluice.TextMessage, []byte("late")); err == nil {
			t.Error("WriteMessage after Close succeeded")
		}
		if err := ws.WriteMessage(sluice.TextMessage, []byte("\xff")); err == nil {
			t.Error("invalid UTF-8 text accepted")
		}
	})
	g := startGW(t, h, gwOpts{websocket: true})
	sid := g.wsReq()
	g.recvFor(sid) // 101
	if f := g.recvFor(sid); f.Type != protocol.Message || f.Flags != protocol.MsgPing || string(f.Data) != "p1" {
		t.Fatalf("%v, want MESSAGE PING p1", f)
	}
	g.send(g.msg(sid, protocol.MsgPong, "p1"), g.msg(sid, protocol.MsgText, "x"))
	if got := within(t, pong, "the pong handler"); got != "p1" {
		t.Errorf("pong %q", got)
	}
	if f := g.recvFor(sid); f.Type != protocol.Close || f.Code != 4002 || f.Message != "done" {
		t.Errorf("%v, want CLOSE 4002 done", f)
	}
}

func TestWebSocketRefusalAndNotAHandshake(t *testing.T) {
	notWS := make(chan error, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/plain" {
			_, err := sluice.Accept(w, r, nil)
			notWS <- err
			return
		}
		http.Error(w, "go away", http.StatusForbidden) // a refusal is any response
	})
	g := startGW(t, h, gwOpts{websocket: true})
	sid := g.wsReq()
	if r := g.response(sid); r.status != 403 || string(r.body) != "go away\n" {
		t.Errorf("refusal %d %q", r.status, r.body)
	}
	sid = g.get("/plain")
	if r := g.response(sid); r.status != 426 || r.header("upgrade") != "websocket" {
		t.Errorf("plain request to Accept: %d %v", r.status, r.headers)
	}
	if err := within(t, notWS, "Accept"); !errors.Is(err, sluice.ErrNotWebSocket) {
		t.Errorf("Accept: %v", err)
	}
}

func TestWebSocketCreditBothWays(t *testing.T) {
	got := make(chan []byte, 4)
	release := make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, _ := sluice.Accept(w, r, &sluice.AcceptOptions{ReadLimit: 1 << 20})
		// out: 3000 bytes through a 1000-byte window
		if err := ws.WriteMessage(sluice.BinaryMessage, bytes.Repeat([]byte("o"), 3000)); err != nil {
			t.Error(err)
		}
		<-release
		for i := 0; i < 2; i++ {
			_, data, err := ws.ReadMessage()
			if err != nil {
				t.Error(err)
				return
			}
			got <- data
		}
		ws.Close(1000, "")
	})
	g := startGW(t, h, gwOpts{websocket: true, window: 1000}, sluice.WithInitialWindow(4096))
	sid := g.wsReq()
	if f := g.recvFor(sid); f.Type != protocol.Limit || f.MaxBody != 1<<20 {
		t.Fatalf("%v, want LIMIT 1 MiB before the 101", f)
	}
	g.recvFor(sid) // 101
	f := g.recvFor(sid)
	if f.Type != protocol.Message || len(f.Data) != 1000 || f.Flags != protocol.MsgMore {
		t.Fatalf("%v, want a 1000-byte piece with more", f)
	}
	g.quiet(sid, 30*time.Millisecond) // the window is used up
	g.send(&protocol.Frame{Type: protocol.Credit, Stream: sid, Increment: 5000})
	if _, data, _ := g.wsMessage(sid); len(data) != 2000 {
		t.Errorf("rest of the message: %d bytes", len(data))
	}
	// in: a 20000-byte message in pieces through a 4096-byte window: the
	// pieces of an incomplete message are credited, so it completes while
	// the handler is not reading yet
	big := bytes.Repeat([]byte("i"), 20000)
	for off := 0; off < len(big); {
		n := 1024
		fl := uint64(protocol.MsgMore)
		if off+n >= len(big) {
			n, fl = len(big)-off, protocol.MsgBinary
		}
		for {
			g.mu.Lock()
			win := g.link.Stream(sid).SendWindow()
			g.mu.Unlock()
			if win >= int64(n) {
				break
			}
			time.Sleep(time.Millisecond)
		}
		g.send(g.msg(sid, fl, string(big[off:off+n])))
		off += n
	}
	// a second, small message is buffered: the last piece of the first and
	// this one are not credited until the handler reads them
	g.send(g.msg(sid, protocol.MsgText, "tail"))
	g.sync()
	before, _ := g.creditOf(sid)
	if before < 20000-1024-4096 || before > 20000 {
		t.Errorf("credit before reading: %d", before)
	}
	close(release)
	if d := within(t, got, "first message"); !bytes.Equal(d, big) {
		t.Errorf("first message: %d bytes", len(d))
	}
	if d := within(t, got, "second message"); string(d) != "tail" {
		t.Errorf("second message %q", d)
	}
	if f := g.recvFor(sid); f.Type != protocol.Close {
		t.Errorf("%v, want CLOSE", f)
	}
}

func TestWebSocketCancelEndsItWith1006(t *testing.T) {
	ended := make(chan error, 1)
	ctxDone := make(chan error, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		go func() { <-r.Context().Done(); ctxDone <- context.Cause(r.Context()) }()
		echo(ended, nil)(w, r)
	})
	g := startGW(t, h, gwOpts{websocket: true})
	sid := g.wsReq()
	g.recvFor(sid)
	g.send(&protocol.Frame{Type: protocol.Cancel, Stream: sid, Reason: protocol.CancelClientClosed})
	var ce *sluice.CloseError
	if err := within(t, ended, "ReadMessage"); !errors.As(err, &ce) || ce.Code != 1006 {
		t.Errorf("ReadMessage after CANCEL: %v", err)
	}
	if err := within(t, ctxDone, "the context"); err == nil {
		t.Error("context not cancelled")
	}
	g.quiet(sid, 20*time.Millisecond)
}
