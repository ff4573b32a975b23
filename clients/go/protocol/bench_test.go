package protocol

import "testing"

// go test -run '^$' -bench . -benchmem ./protocol/

func benchParse(b *testing.B, fr *Frame) {
	buf := AppendFrame(nil, fr)
	d := NewDecoder(DefaultFrame)
	var f Frame
	b.ReportAllocs()
	b.SetBytes(int64(len(buf)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if n, err := d.Parse(buf, &f); err != nil || n != len(buf) {
			b.Fatal(n, err)
		}
	}
}

func BenchmarkParseRequest(b *testing.B) { benchParse(b, sampleRequest(10)) }

func BenchmarkParseBody(b *testing.B) {
	benchParse(b, &Frame{Type: Body, Stream: 12345, Data: make([]byte, 16384)})
}

func BenchmarkParseCredit(b *testing.B) {
	benchParse(b, &Frame{Type: Credit, Stream: 12345, Increment: 65536})
}

func BenchmarkParseEnd(b *testing.B) { benchParse(b, &Frame{Type: End, Stream: 12345}) }

func BenchmarkParsePing(b *testing.B) { benchParse(b, &Frame{Type: Ping, Opaque: 1 << 40}) }

func BenchmarkParseCancel(b *testing.B) {
	benchParse(b, &Frame{Type: Cancel, Stream: 12345, Reason: CancelClientClosed})
}

func BenchmarkParseHello(b *testing.B) {
	benchParse(b, &Frame{Type: Hello, Version: 1, Settings: Settings{Window: 1 << 20, MaxFrame: 1 << 20,
		WorkerID: 3, Pool: "app", Server: "sluice/0.1.0", Has: KeyWindow | KeyMaxFrame | KeyWorkerID | KeyPool | KeyServer}})
}

func sampleResponse() *Frame {
	return &Frame{Type: Response, Stream: 12345, Status: 200, BodyMode: BodyFollows, Headers: []Header{
		{[]byte("content-type"), []byte("text/html; charset=utf-8")},
		{[]byte("content-length"), []byte("16384")},
		{[]byte("cache-control"), []byte("no-cache")},
		{[]byte("set-cookie"), []byte("session=0123456789abcdef; Path=/; HttpOnly")},
	}}
}

func BenchmarkAppendResponse(b *testing.B) {
	f := sampleResponse()
	buf := make([]byte, 0, 1024)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		buf = AppendFrame(buf[:0], f)
	}
	b.SetBytes(int64(len(buf)))
}

func BenchmarkAppendDataHeader(b *testing.B) {
	buf := make([]byte, 0, 64)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		buf = AppendDataHeader(buf[:0], Body, 12345, 0, 16384)
	}
}

// BenchmarkLinkBodyCredit: one round of a worker's steady state, per iteration
// a received BODY, the CREDIT granting it back, a sent BODY and the CREDIT
// received for it.
func BenchmarkLinkBodyCredit(b *testing.B) {
	l := NewLink(RoleWorker, 16)
	if err := l.Send(&Frame{Type: Hello, Version: Version, Settings: Settings{MaxStreams: 16, Window: 1 << 20, Has: KeyMaxStreams | KeyWindow}}); err != nil {
		b.Fatal(err)
	}
	if _, err := l.Recv(&Frame{Type: Hello, Version: Version, Settings: Settings{Window: 1 << 20, Has: KeyWindow}}); err != nil {
		b.Fatal(err)
	}
	for id := uint64(1); id <= 16; id++ {
		req := sampleRequest(2)
		req.Stream = id
		req.BodyMode = BodyFollows
		if _, err := l.Recv(req); err != nil {
			b.Fatal(err)
		}
		if err := l.Send(&Frame{Type: Response, Stream: id, Status: 200, BodyMode: BodyFollows}); err != nil {
			b.Fatal(err)
		}
	}
	body := &Frame{Type: Body, Data: make([]byte, 16384)}
	credit := &Frame{Type: Credit, Increment: 16384}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		sid := uint64(i&15) + 1
		body.Stream, credit.Stream = sid, sid
		if _, err := l.Recv(body); err != nil {
			b.Fatal(err)
		}
		if err := l.Send(credit); err != nil {
			b.Fatal(err)
		}
		if err := l.Send(body); err != nil {
			b.Fatal(err)
		}
		if _, err := l.Recv(credit); err != nil {
			b.Fatal(err)
		}
	}
}
