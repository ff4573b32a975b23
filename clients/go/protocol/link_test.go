package protocol

import (
	"errors"
	"runtime"
	"testing"
)

var (
	workerHello  = Settings{MaxStreams: 4, Window: 1000, Lib: "sluice-go/test", Has: KeyMaxStreams | KeyWindow | KeyLib | KeyWebSocket, WebSocket: true}
	gatewayHello = Settings{Window: 2000, MaxFrame: 65536, WorkerID: 1, Has: KeyWindow | KeyMaxFrame | KeyWorkerID | KeyWebSocket, WebSocket: true}
)

func mustOK(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func mustReject(t *testing.T, l *Link, f *Frame) {
	t.Helper()
	err := l.Send(f)
	if !errors.Is(err, ErrRejected) {
		t.Fatalf("Send %v: %v, want rejected", f.Type, err)
	}
}

func recvOK(t *testing.T, l *Link, f *Frame) {
	t.Helper()
	ignored, err := l.Recv(f)
	if err != nil || ignored {
		t.Fatalf("Recv %v: ignored %v, %v", f.Type, ignored, err)
	}
}

// readyWorker returns a worker link after both HELLOs.
func readyWorker(t *testing.T) *Link {
	l := NewLink(RoleWorker, 4)
	if l.PeerMaxFrame() != DefaultFrame || l.Ready() || l.LocalHello() != nil || l.PeerHello() != nil {
		t.Fatal("a fresh link")
	}
	mustOK(t, l.Send(&Frame{Type: Hello, Version: Version, Settings: workerHello}))
	recvOK(t, l, &Frame{Type: Hello, Version: Version, Settings: gatewayHello})
	if !l.Ready() || !l.WebSocket() || l.PeerMaxFrame() != 65536 || l.LocalMaxFrame() != DefaultFrame {
		t.Fatal("handshake")
	}
	return l
}

func readyGateway(t *testing.T) *Link {
	l := NewLink(RoleGateway, 0)
	recvOK(t, l, &Frame{Type: Hello, Version: Version, Settings: workerHello})
	mustOK(t, l.Send(&Frame{Type: Hello, Version: Version, Settings: gatewayHello}))
	if !l.Ready() || l.MaxOpen() != 4 || !l.CanOpen() {
		t.Fatal("handshake")
	}
	return l
}

func TestLinkWorkerExchange(t *testing.T) {
	l := readyWorker(t)
	req := sampleRequest(2)
	req.BodyMode = BodyFollows
	recvOK(t, l, req)
	s := l.Stream(1)
	if s == nil || s.ID() != 1 || s.RecvWindow() != 1000 || s.SendWindow() != 2000 || s.RequestEnded() || s.ResponseStarted() {
		t.Fatalf("stream after REQUEST: %+v", s)
	}
	recvOK(t, l, &Frame{Type: Body, Stream: 1, Data: make([]byte, 600)})
	if s.RecvWindow() != 400 || s.RequestBytes() != 600 {
		t.Fatalf("recv window %d", s.RecvWindow())
	}
	mustOK(t, l.Send(&Frame{Type: Credit, Stream: 1, Increment: 600}))
	if s.RecvWindow() != 1000 {
		t.Fatalf("recv window after CREDIT %d", s.RecvWindow())
	}
	mustOK(t, l.Send(&Frame{Type: Limit, Stream: 1, MaxBody: 1 << 30}))
	if v, ok := s.Limit(); !ok || v != 1<<30 {
		t.Fatal("limit")
	}
	recvOK(t, l, &Frame{Type: End, Stream: 1})
	if !s.RequestEnded() {
		t.Fatal("request not ended")
	}
	mustOK(t, l.Send(&Frame{Type: Response, Stream: 1, Status: 200, BodyMode: BodyFollows}))
	if !s.ResponseStarted() {
		t.Fatal("response not started")
	}
	// BODY beyond the window is rejected and changes nothing.
	mustReject(t, l, &Frame{Type: Body, Stream: 1, Data: make([]byte, 2001)})
	if s.SendWindow() != 2000 || s.ResponseBytes() != 0 {
		t.Fatal("a rejected BODY changed the state")
	}
	mustOK(t, l.Send(&Frame{Type: Body, Stream: 1, Data: make([]byte, 2000)}))
	mustReject(t, l, &Frame{Type: Body, Stream: 1, Data: []byte{1}})
	mustOK(t, l.Send(&Frame{Type: Body, Stream: 1})) // empty BODY: window 0 is fine
	recvOK(t, l, &Frame{Type: Credit, Stream: 1, Increment: 10})
	if s.SendWindow() != 10 {
		t.Fatal("send window after CREDIT")
	}
	mustOK(t, l.Send(&Frame{Type: End, Stream: 1}))
	if l.Stream(1) != nil || !s.Closed() || l.OpenStreams() != 0 {
		t.Fatal("the stream did not close on END")
	}
	// Late frames for the closed stream are ignored; unused ids are stream_state.
	if ignored, err := l.Recv(&Frame{Type: Credit, Stream: 1, Increment: 5}); !ignored || err != nil {
		t.Fatalf("late CREDIT: %v %v", ignored, err)
	}
	mustReject(t, l, &Frame{Type: Body, Stream: 1})
	_, err := l.Recv(&Frame{Type: Body, Stream: 9})
	if errName(err) != "stream_state" || l.Failed() != err {
		t.Fatalf("BODY for an unused stream: %v", err)
	}
	mustReject(t, l, &Frame{Type: Ping})
}

func TestLinkGatewayWebSocket(t *testing.T) {
	l := readyGateway(t)
	mustOK(t, l.Send(&Frame{Type: Request, Stream: 5, Method: []byte("GET"), Target: []byte("/ws"), Version: 11, Scheme: "http", BodyMode: BodyWebSocket}))
	s := l.Stream(5)
	if !s.WebSocketWaiting() || s.WebSocketOpen() || s.BodyMode() != BodyWebSocket {
		t.Fatal("websocket stream")
	}
	mustReject(t, l, &Frame{Type: Request, Stream: 5, Method: []byte("GET"), Target: []byte("/"), Version: 11})
	mustReject(t, l, &Frame{Type: Message, Stream: 5, Flags: MsgText, Data: []byte("x")})
	recvOK(t, l, &Frame{Type: Response, Stream: 5, Status: 101})
	if !s.WebSocketOpen() {
		t.Fatal("not open after 101")
	}
	mustOK(t, l.Send(&Frame{Type: Message, Stream: 5, Flags: MsgText | MsgMore, Data: []byte("he")}))
	mustReject(t, l, &Frame{Type: Message, Stream: 5, Flags: MsgBinary, Data: []byte("llo")}) // text bit changes
	mustOK(t, l.Send(&Frame{Type: Message, Stream: 5, Flags: MsgText, Data: []byte("llo")}))
	mustReject(t, l, &Frame{Type: Message, Stream: 5, Flags: MsgPing}) // a gateway sends no PING
	if s.SendWindow() != 995 {
		t.Fatalf("send window %d", s.SendWindow())
	}
	recvOK(t, l, &Frame{Type: Message, Stream: 5, Flags: MsgPing, Data: make([]byte, PingMax)})
	mustOK(t, l.Send(&Frame{Type: Close, Stream: 5, Code: 1000}))
	if !s.Closed() {
		t.Fatal("CLOSE did not close")
	}
	// A PING above 125 bytes is field_value even for a closed stream.
	_, err := l.Recv(&Frame{Type: Message, Stream: 5, Flags: MsgPing, Data: make([]byte, PingMax+1)})
	if errName(err) != "field_value" {
		t.Fatalf("long PING: %v", err)
	}
	if _, again := l.Recv(&Frame{Type: Ping}); again != err {
		t.Fatal("a failed link's Recv does not return its error")
	}
	mustReject(t, l, &Frame{Type: Pong})
	mustOK(t, l.Send(&Frame{Type: Error, Code: uint64(FieldValue), Message: "x"})) // ERROR: always
}

func TestLinkReceivedError(t *testing.T) {
	l := readyWorker(t)
	recvOK(t, l, &Frame{Type: Error, Code: uint64(Auth), Message: "bad token", HasMessage: true})
	var le *LinkError
	if !errors.As(l.Failed(), &le) || le.Code != Auth {
		t.Fatalf("Failed() = %v", l.Failed())
	}
	if _, err := l.Recv(&Frame{Type: Ping}); err != l.Failed() {
		t.Fatalf("Recv after ERROR: %v", err)
	}
	mustReject(t, l, &Frame{Type: Pong})
}

func TestLinkSendChecksFields(t *testing.T) {
	l := NewLink(RoleWorker, 4)
	mustReject(t, l, &Frame{Type: Hello, Version: 2, Settings: workerHello})
	bad := workerHello
	bad.MaxStreams = 0
	mustReject(t, l, &Frame{Type: Hello, Version: 1, Settings: bad})
	bad = workerHello
	bad.Has &^= KeyWindow
	mustReject(t, l, &Frame{Type: Hello, Version: 1, Settings: bad})
	mustReject(t, l, &Frame{Type: Ping}) // before HELLO
	if l.LocalHello() != nil {
		t.Fatal("a rejected HELLO was recorded")
	}
	l = readyWorker(t)
	recvOK(t, l, sampleRequest(1))
	mustReject(t, l, &Frame{Type: Response, Stream: 1, Status: 600})
	mustReject(t, l, &Frame{Type: Response, Stream: 1, Status: 200, BodyMode: 2})
	mustReject(t, l, &Frame{Type: Response, Stream: 1, Status: 200, Headers: []Header{{Name: nil, Value: []byte("v")}}})
	mustReject(t, l, &Frame{Type: Response, Stream: 1, Status: 101}) // not a WebSocket stream
	mustReject(t, l, &Frame{Type: Credit, Stream: 1, Increment: 0})
	mustReject(t, l, &Frame{Type: Credit, Stream: 1, Increment: MaxWindow + 1})
	mustReject(t, l, &Frame{Type: Limit, Stream: 1, MaxBody: MaxID + 1})
	mustReject(t, l, &Frame{Type: Request, Stream: 2}) // the gateway's frame
	mustReject(t, l, &Frame{Type: Cancel, Stream: 1})
	mustOK(t, l.Send(&Frame{Type: Retire}))
	if !l.Retired() {
		t.Fatal("not retired")
	}
	recvOK(t, l, &Frame{Type: Drain, TimeoutMs: 1000})
	if !l.Draining() {
		t.Fatal("not draining")
	}
	mustOK(t, l.Send(&Frame{Type: Response, Stream: 1, Status: 204}))
	if l.OpenStreams() != 0 {
		t.Fatal("RESPONSE body=0 did not close")
	}
}

func TestLinkEachStream(t *testing.T) {
	l := readyGateway(t)
	for id := uint64(1); id <= 3; id++ {
		mustOK(t, l.Send(&Frame{Type: Request, Stream: id * 2, Method: []byte("GET"), Target: []byte("/"), Version: 20, Scheme: "https", BodyMode: BodyOnCredit}))
	}
	if l.HighestID() != 6 || l.Stream(4).SendWindow() != 0 || l.Stream(4).RecvWindow() != 2000 {
		t.Fatal("gateway streams")
	}
	sum := uint64(0)
	l.EachStream(func(s *Stream) bool { sum += s.ID(); return true })
	if sum != 12 {
		t.Fatalf("EachStream: %d", sum)
	}
	mustOK(t, l.Send(&Frame{Type: Request, Stream: 7, Method: []byte("GET"), Target: []byte("/"), Version: 20, Scheme: "https"}))
	mustReject(t, l, &Frame{Type: Request, Stream: 8, Method: []byte("GET"), Target: []byte("/"), Version: 20, Scheme: "https"}) // 4 open
	if l.CanOpen() {
		t.Fatal("CanOpen at the limit")
	}
}

func TestLinkZeroAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts under the race detector")
	}
	w := readyWorker(t)
	req := sampleRequest(2)
	req.BodyMode = BodyFollows
	recvOK(t, w, req)
	mustOK(t, w.Send(&Frame{Type: Response, Stream: 1, Status: 200, BodyMode: BodyFollows}))
	body := &Frame{Type: Body, Stream: 1, Data: make([]byte, 10)}
	credit := &Frame{Type: Credit, Stream: 1, Increment: 10}
	allocs := testing.AllocsPerRun(200, func() {
		if _, err := w.Recv(body); err != nil {
			t.Fatal(err)
		}
		if err := w.Send(credit); err != nil {
			t.Fatal(err)
		}
		if err := w.Send(body); err != nil {
			t.Fatal(err)
		}
		if _, err := w.Recv(credit); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("BODY/CREDIT: %v allocations", allocs)
	}
	end := &Frame{Type: End, Stream: 1}
	if a := mallocs(func() { recvOK(t, w, end) }); a != 0 {
		t.Errorf("Recv END: %v allocations", a)
	}
	if a := mallocs(func() { mustOK(t, w.Send(end)) }); a != 0 {
		t.Errorf("Send END: %v allocations", a)
	}
}

// mallocs counts the heap allocations of one call of fn (which cannot be
// repeated, unlike what testing.AllocsPerRun needs).
func mallocs(fn func()) uint64 {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	var a, b runtime.MemStats
	runtime.ReadMemStats(&a)
	fn()
	runtime.ReadMemStats(&b)
	return b.Mallocs - a.Mallocs
}
