package protocol

import (
	"errors"
	"strings"
	"testing"
	"unsafe"
)

func sampleRequest(nHeaders int) *Frame {
	f := &Frame{Type: Request, Stream: 1, Method: []byte("GET"), Target: []byte("/index.html?q=1"),
		Version: 11, Client: Addr{"127.0.0.1", 54321}, Server: Addr{"127.0.0.1", 8080},
		Scheme: "http", BodyMode: BodyNone}
	names := []string{"host", "user-agent", "accept", "accept-language", "accept-encoding",
		"cookie", "referer", "cache-control", "x-request-id", "x-forwarded-for"}
	for i := 0; i < nHeaders; i++ {
		f.Headers = append(f.Headers, Header{[]byte(names[i%len(names)]), []byte("value-" + strings.Repeat("v", i))})
	}
	return f
}

func TestParsePartialInput(t *testing.T) {
	d := NewDecoder(DefaultFrame)
	frames := []*Frame{
		sampleRequest(10),
		{Type: Body, Stream: 1, Data: []byte("hello")},
		{Type: End, Stream: 1},
		{Type: Hello, Version: 1, Settings: Settings{MaxStreams: 4, Window: 65536, Lib: "x", Has: KeyMaxStreams | KeyWindow | KeyLib}},
	}
	for _, fr := range frames {
		enc := AppendFrame(nil, fr)
		var f Frame
		for i := 0; i < len(enc); i++ {
			n, err := d.Parse(enc[:i], &f)
			if n != 0 || err != nil {
				t.Fatalf("%v: Parse of %d of %d bytes: %d, %v", fr.Type, i, len(enc), n, err)
			}
		}
		// A complete frame followed by part of the next: exactly one frame.
		two := append(append([]byte(nil), enc...), enc[:5]...)
		n, err := d.Parse(two, &f)
		if err != nil || n != len(enc) {
			t.Fatalf("%v: Parse of a frame and a bit: %d, %v", fr.Type, n, err)
		}
		if f.Type != fr.Type || f.Stream != fr.Stream {
			t.Fatalf("%v: decoded %v %d", fr.Type, f.Type, f.Stream)
		}
	}
}

func TestParseFrameSizeEarly(t *testing.T) {
	d := NewDecoder(MinFrame)
	var f Frame
	if n, err := d.Parse([]byte{0, 0, 0x40}, &f); n != 0 || err != nil {
		t.Fatalf("3 bytes: %d %v", n, err)
	}
	for _, prefix := range [][]byte{{0, 0, 0, 0}, {0, 0, 0x40, 1}, {0xff, 0xff, 0xff, 0xff}} {
		n, err := d.Parse(prefix, &f)
		var le *LinkError
		if n != 0 || !errors.As(err, &le) || le.Code != FrameSize {
			t.Fatalf("prefix %x: %d %v", prefix, n, err)
		}
	}
	if n, err := d.Parse([]byte{0, 0, 0x40, 0}, &f); n != 0 || err != nil {
		t.Fatalf("max length, no payload yet: %d %v", n, err)
	}
}

func TestParseAliasesAndCopies(t *testing.T) {
	d := NewDecoder(DefaultFrame)
	var f Frame
	buf := AppendFrame(nil, &Frame{Type: Body, Stream: 3, Data: []byte("abcdef")})
	if _, err := d.Parse(buf, &f); err != nil {
		t.Fatal(err)
	}
	if &f.Data[0] != &buf[len(buf)-6] {
		t.Fatal("BODY data does not alias the input")
	}
	if cap(f.Data) != 6 {
		t.Fatalf("BODY data capacity %d, want 6 (capped)", cap(f.Data))
	}

	buf = AppendFrame(nil, &Frame{Type: Cancel, Stream: 3, Reason: 2, Message: "gone away"})
	if _, err := d.Parse(buf, &f); err != nil {
		t.Fatal(err)
	}
	copy(buf[len(buf)-9:], "XXXXXXXXX")
	if f.Message != "gone away" || !f.HasMessage {
		t.Fatalf("the message changed with the input: %q", f.Message)
	}

	req := sampleRequest(3)
	buf = AppendFrame(nil, req)
	if _, err := d.Parse(buf, &f); err != nil {
		t.Fatal(err)
	}
	inBuf := func(b []byte) bool {
		p := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
		s := uintptr(unsafe.Pointer(&buf[0]))
		return p >= s && p < s+uintptr(len(buf))
	}
	if !inBuf(f.Method) || !inBuf(f.Target) || !inBuf(f.Headers[0].Name) || !inBuf(f.Headers[2].Value) {
		t.Fatal("REQUEST byte fields do not alias the input")
	}
	if f.Scheme != "http" || f.Client != req.Client || f.Server != req.Server {
		t.Fatalf("REQUEST: %q %v %v", f.Scheme, f.Client, f.Server)
	}
	// Headers reuse their capacity.
	h0 := &f.Headers[0]
	if _, err := d.Parse(buf, &f); err != nil || &f.Headers[0] != h0 {
		t.Fatal("Headers did not reuse their capacity")
	}
}

func TestFrameReset(t *testing.T) {
	f := sampleRequest(5)
	f.Data = []byte("x")
	f.Message = "m"
	f.HasMessage = true
	f.Settings.Has = KeyPid
	c := cap(f.Headers)
	p := &f.Headers[:1][0]
	f.Reset()
	if len(f.Headers) != 0 || cap(f.Headers) != c || &f.Headers[:1][0] != p {
		t.Fatal("Reset did not keep the Headers' capacity")
	}
	h := f.Headers
	f.Headers = nil
	if !(f.Type == 0 && f.Stream == 0 && f.Method == nil && f.Data == nil && f.Message == "" &&
		!f.HasMessage && f.Settings == (Settings{}) && f.Client == (Addr{}) && f.Scheme == "") {
		t.Fatalf("Reset left %+v", f)
	}
	f.Headers = h
	var z Frame
	z.Reset() // nil Headers
	if z.Headers != nil {
		t.Fatal("Reset of a zero frame")
	}
}

func TestParseZeroAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts under the race detector")
	}
	d := NewDecoder(DefaultFrame)
	cases := []*Frame{
		{Type: Body, Stream: 1, Data: make([]byte, 16384)},
		{Type: Credit, Stream: 1, Increment: 65536},
		{Type: End, Stream: 1},
		{Type: Ping, Opaque: 42},
		{Type: Pong, Opaque: 42},
		{Type: Cancel, Stream: 1, Reason: CancelClientClosed},
		{Type: Cancel, Stream: 1, Reason: CancelTimeout, Message: "response timeout"}, // interned after the first
		{Type: Reset, Stream: 1, Code: ResetRefused},
		{Type: Message, Stream: 1, Flags: MsgText, Data: []byte("hi")},
		{Type: End, Stream: 1, Headers: []Header{{[]byte("grpc-status"), []byte("0")}}},
		sampleRequest(10), // headers' capacity reused, hosts and scheme interned
		{Type: Response, Stream: 1, Status: 200, Headers: []Header{{[]byte("a"), []byte("b")}}, BodyMode: 1},
	}
	var f Frame
	for _, c := range cases {
		buf := AppendFrame(nil, c)
		if _, err := d.Parse(buf, &f); err != nil {
			t.Fatal(err)
		}
		allocs := testing.AllocsPerRun(100, func() {
			if _, err := d.Parse(buf, &f); err != nil {
				t.Fatal(err)
			}
		})
		if allocs != 0 {
			t.Errorf("Parse %v: %v allocations", c.Type, allocs)
		}
	}
}

func TestStreamDecoder(t *testing.T) {
	var in []byte
	in = AppendFrame(in, &Frame{Type: Ping, Opaque: 1})
	in = AppendFrame(in, &Frame{Type: Body, Stream: 2, Data: []byte("xyz")})
	in = AppendFrame(in, &Frame{Type: End, Stream: 2})

	sd := NewStreamDecoder(DefaultFrame)
	var f Frame
	var got []Type
	sd.Feed(in[:7])
	for {
		ok, err := sd.Next(&f)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		got = append(got, f.Type)
	}
	if len(got) != 0 || sd.Buffered() != 7 { // the PING is 8 bytes
		t.Fatalf("from 7 bytes: %v, %d buffered", got, sd.Buffered())
	}
	if err := sd.Finish(); err == nil || errName(err) != "truncated" {
		t.Fatalf("Finish inside a frame: %v", err)
	}
	// Sticky.
	if _, err := sd.Next(&f); errName(err) != "truncated" {
		t.Fatalf("after Finish: %v", err)
	}

	sd = NewStreamDecoder(DefaultFrame)
	got = got[:0]
	for i := range in {
		sd.Feed(in[i : i+1])
		for {
			ok, err := sd.Next(&f)
			if err != nil {
				t.Fatal(err)
			}
			if !ok {
				break
			}
			got = append(got, f.Type)
			if f.Type == Body && string(f.Data) != "xyz" {
				t.Fatalf("BODY %q", f.Data)
			}
		}
	}
	if len(got) != 3 || got[0] != Ping || got[1] != Body || got[2] != End {
		t.Fatalf("frames %v", got)
	}
	if err := sd.Finish(); err != nil {
		t.Fatalf("Finish between frames: %v", err)
	}

	// A complete frame still buffered is not truncation.
	sd = NewStreamDecoder(DefaultFrame)
	sd.Feed(in)
	if err := sd.Finish(); err != nil {
		t.Fatalf("Finish with whole frames buffered: %v", err)
	}

	// Errors are sticky; later input is ignored.
	sd = NewStreamDecoder(DefaultFrame)
	sd.Feed([]byte{0, 0, 0, 0})
	if _, err := sd.Next(&f); errName(err) != "frame_size" {
		t.Fatalf("length 0: %v", err)
	}
	sd.Feed(in)
	if _, err := sd.Next(&f); errName(err) != "frame_size" {
		t.Fatalf("after an error: %v", err)
	}
	if err := sd.Finish(); errName(err) != "frame_size" {
		t.Fatalf("Finish after an error: %v", err)
	}
}

func TestNames(t *testing.T) {
	for c := Malformed; c <= Timeout; c++ {
		got, ok := CodeByName(c.String())
		if !ok || got != c {
			t.Errorf("CodeByName(%q) = %v %v", c.String(), got, ok)
		}
	}
	if VersionMismatch.String() != "version" || Timeout.String() != "timeout" || Code(99).String() != "code 99" {
		t.Error("Code.String")
	}
	if _, ok := CodeByName("nope"); ok {
		t.Error("CodeByName of an unknown name")
	}
	for ty := Hello; ty <= Close; ty++ {
		got, ok := TypeByName(ty.String())
		if !ok || got != ty {
			t.Errorf("TypeByName(%q)", ty.String())
		}
	}
	if Hello.String() != "HELLO" || Close.String() != "CLOSE" || Type(0).String() != "type 0" {
		t.Error("Type.String")
	}
	e := &LinkError{FieldValue, "status 600"}
	if e.Error() != "field_value: status 600" || (&LinkError{Code: Auth}).Error() != "auth" {
		t.Errorf("LinkError.Error: %q", e.Error())
	}
	if CodeOf(4) != FieldType || CodeOf(0) != Internal || CodeOf(1000) != Internal || CodeOf(200).String() != "code 200" {
		t.Error("CodeOf")
	}
}

func TestDecoderLimits(t *testing.T) {
	for _, bad := range []int{1, MinFrame - 1, MaxFrame + 1} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("NewDecoder(%d) did not panic", bad)
				}
			}()
			NewDecoder(bad)
		}()
	}
	if NewDecoder(0).MaxFrame() != DefaultFrame {
		t.Error("NewDecoder(0)")
	}
	d := NewDecoder(0)
	d.SetMaxHeaders(2)
	var f Frame
	_, err := d.Parse(AppendFrame(nil, sampleRequest(3)), &f)
	if errName(err) != "too_many_headers" {
		t.Fatalf("3 headers with a limit of 2: %v", err)
	}
	if _, err := d.Parse(AppendFrame(nil, sampleRequest(2)), &f); err != nil {
		t.Fatal(err)
	}
	// Error messages name the frame type once it is known.
	if !strings.Contains(err.Error(), "REQUEST") {
		t.Errorf("error message %q", err)
	}
}
