package protocol

import (
	"bytes"
	"encoding/hex"
	"strings"
	"testing"
)

func TestAppendUint(t *testing.T) {
	cases := []struct {
		v    uint64
		want string
	}{
		{0, "00"},
		{1, "01"},
		{0x7f, "7f"},
		{0x80, "cc80"},
		{0xff, "ccff"},
		{0x100, "cd0100"},
		{0xffff, "cdffff"},
		{0x10000, "ce00010000"},
		{0xffffffff, "ceffffffff"},
		{0x100000000, "cf0000000100000000"},
		{MaxID, "cf001fffffffffffff"},
		{1<<64 - 1, "cfffffffffffffffff"},
	}
	for _, c := range cases {
		got := hex.EncodeToString(AppendUint(nil, c.v))
		if got != c.want {
			t.Errorf("AppendUint(%#x) = %s, want %s", c.v, got, c.want)
		}
		if c.v > MaxID {
			continue
		}
		r := reader{b: AppendUint(nil, c.v)}
		if v, code := r.uint(); code != 0 || v != c.v || r.p != len(r.b) {
			t.Errorf("reading back %#x: %#x, %v", c.v, v, code)
		}
	}
}

func TestAppendContainerHeaders(t *testing.T) {
	cases := []struct {
		n          int
		arr, mapHd string
	}{
		{0, "90", "80"},
		{1, "91", "81"},
		{15, "9f", "8f"},
		{16, "dc0010", "de0010"},
		{0xffff, "dcffff", "deffff"},
		{0x10000, "dd00010000", "df00010000"},
		{0x7fffffff, "dd7fffffff", "df7fffffff"},
	}
	for _, c := range cases {
		if got := hex.EncodeToString(AppendArrayHeader(nil, c.n)); got != c.arr {
			t.Errorf("AppendArrayHeader(%d) = %s, want %s", c.n, got, c.arr)
		}
		if got := hex.EncodeToString(AppendMapHeader(nil, c.n)); got != c.mapHd {
			t.Errorf("AppendMapHeader(%d) = %s, want %s", c.n, got, c.mapHd)
		}
	}
}

func TestAppendBinAndStr(t *testing.T) {
	binCases := []struct {
		n    int
		head string
	}{
		{0, "c400"}, {1, "c401"}, {255, "c4ff"}, {256, "c50100"}, {0xffff, "c5ffff"},
		{0x10000, "c600010000"},
	}
	for _, c := range binCases {
		if got := hex.EncodeToString(AppendBinHeader(nil, c.n)); got != c.head {
			t.Errorf("AppendBinHeader(%d) = %s, want %s", c.n, got, c.head)
		}
		data := bytes.Repeat([]byte{0xab}, c.n)
		want := append(mustHex(t, c.head), data...)
		if got := AppendBin(nil, data); !bytes.Equal(got, want) {
			t.Errorf("AppendBin(%d bytes) = %x...", c.n, got[:min(len(got), 8)])
		}
		if got := AppendBinString(nil, string(data)); !bytes.Equal(got, want) {
			t.Errorf("AppendBinString(%d bytes) = %x...", c.n, got[:min(len(got), 8)])
		}
		r := reader{b: want}
		if b, code := r.raw(true); code != 0 || !bytes.Equal(b, data) || r.p != len(want) {
			t.Errorf("reading back a bin of %d bytes: %v", c.n, code)
		}
	}
	strCases := []struct {
		n    int
		head string
	}{
		{0, "a0"}, {1, "a1"}, {31, "bf"}, {32, "d920"}, {255, "d9ff"}, {256, "da0100"},
		{0xffff, "daffff"}, {0x10000, "db00010000"},
	}
	for _, c := range strCases {
		s := strings.Repeat("x", c.n)
		want := append(mustHex(t, c.head), s...)
		if got := AppendStr(nil, s); !bytes.Equal(got, want) {
			t.Errorf("AppendStr(%d bytes) = %x...", c.n, got[:min(len(got), 8)])
		}
		if got := AppendStrBytes(nil, []byte(s)); !bytes.Equal(got, want) {
			t.Errorf("AppendStrBytes(%d bytes) = %x...", c.n, got[:min(len(got), 8)])
		}
		r := reader{b: want}
		if b, code := r.raw(false); code != 0 || string(b) != s {
			t.Errorf("reading back a str of %d bytes: %v", c.n, code)
		}
	}
	if got := hex.EncodeToString(AppendBool(AppendBool(nil, true), false)); got != "c3c2" {
		t.Errorf("AppendBool: %s", got)
	}
}

func TestAppendNoAllocWithRoom(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts under the race detector")
	}
	buf := make([]byte, 0, 4096)
	data := make([]byte, 100)
	hdrs := []Header{{[]byte("content-type"), []byte("text/plain")}, {[]byte("x"), nil}}
	resp := &Frame{Type: Response, Stream: 7, Status: 200, Headers: hdrs, BodyMode: 1}
	allocs := testing.AllocsPerRun(100, func() {
		b := AppendUint(buf[:0], MaxID)
		b = AppendArrayHeader(b, 20)
		b = AppendMapHeader(b, 3)
		b = AppendBin(b, data)
		b = AppendBinString(b, "hello")
		b = AppendStr(b, "world")
		b = AppendBool(b, true)
		b = AppendDataHeader(b, Body, 1, 0, 10)
		b = AppendFrame(b, resp)
		b, at := BeginFrame(b)
		b = EndFrame(b, at)
		_ = b
	})
	if allocs != 0 {
		t.Errorf("%v allocations with room in dst", allocs)
	}
}

func TestBeginEndFrame(t *testing.T) {
	b := []byte{1, 2}
	b, at := BeginFrame(b)
	if at != 2 || len(b) != 6 {
		t.Fatalf("BeginFrame: at %d len %d", at, len(b))
	}
	b = append(b, 0x92, 0x05, 0x01)
	b = EndFrame(b, at)
	if got := hex.EncodeToString(b); got != "0102000000039205"+"01" {
		t.Fatalf("EndFrame: %s", got)
	}
	if AppendFrame(nil, &Frame{Type: End, Stream: 1}) == nil {
		t.Fatal("AppendFrame")
	}
	if !bytes.Equal(b[2:], AppendFrame(nil, &Frame{Type: End, Stream: 1})) {
		t.Fatalf("BeginFrame/EndFrame differ from AppendFrame")
	}
}

func TestAppendDataHeader(t *testing.T) {
	sizes := []int{0, 1, 255, 256, 0xffff, 0x10000, 1 << 20}
	sids := []uint64{1, 0x7f, 0x80, 0xffffffff, 0x100000000, MaxID}
	for _, n := range sizes {
		data := bytes.Repeat([]byte{'d'}, n)
		for _, sid := range sids {
			for _, fr := range []*Frame{
				{Type: Body, Stream: sid, Data: data},
				{Type: Message, Stream: sid, Flags: MsgText | MsgMore, Data: data},
			} {
				hdr := AppendDataHeader(nil, fr.Type, sid, fr.Flags, n)
				whole := AppendFrame(nil, fr)
				if !bytes.Equal(append(hdr, data...), whole) {
					t.Fatalf("%v sid %d n %d: header %x, frame %x...", fr.Type, sid, n, hdr, whole[:len(hdr)])
				}
				if len(hdr)-4 > DataOverhead-3 { // the payload overhead, what max_frame limits
					t.Fatalf("%v sid %d: %d header bytes", fr.Type, sid, len(hdr))
				}
			}
		}
	}
	// n = maxFrame - DataOverhead always fits max_frame.
	for _, mf := range []int{MinFrame, DefaultFrame, MaxFrame} {
		n := mf - DataOverhead
		for _, typ := range []Type{Body, Message} {
			hdr := AppendDataHeader(nil, typ, MaxID, MsgMore, n)
			if FrameLength(hdr) > mf {
				t.Errorf("%v of %d bytes: frame length %d above %d", typ, n, FrameLength(hdr), mf)
			}
		}
	}
}

func TestAppendFrameOptionalFields(t *testing.T) {
	cases := []struct {
		f    Frame
		want string
	}{
		{Frame{Type: End, Stream: 1, Headers: []Header{}}, "00000003920501"},
		{Frame{Type: Cancel, Stream: 1, Reason: 1, HasMessage: true}, "00000004930701" + "01"},
		{Frame{Type: Reset, Stream: 1, Code: 2, Message: "x"}, "00000006940801" + "02a178"},
		{Frame{Type: Retire, HasMessage: true}, "00000003920d00"},
		{Frame{Type: Retire, Message: "bye"}, "00000007930d00a3627965"},
		{Frame{Type: Error, Code: 4}, "00000005940e0004a0"},
		{Frame{Type: Close, Stream: 3, Code: 1000}, "000000069310" + "03cd03e8"},
		{Frame{Type: Ping, Stream: 9, Opaque: 3}, "00000004930a0003"},
		{Frame{Type: Hello, Version: 1, Settings: Settings{Window: 8, WebSocket: false, Has: KeyWindow | KeyWebSocket}},
			"0000000d94010001" + "81a6" + "77696e646f77" + "08"},
	}
	for _, c := range cases {
		if got := hex.EncodeToString(AppendFrame(nil, &c.f)); got != c.want {
			t.Errorf("%v: %s, want %s", c.f.Type, got, c.want)
		}
	}
}

func TestAppendFrameUnknownTypePanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("no panic")
		}
	}()
	AppendFrame(nil, &Frame{Type: 17})
}
