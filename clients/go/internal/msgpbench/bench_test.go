package msgpbench

// The same frames decoded and encoded three ways:
//
//   sluice       the protocol package (strict, canonical, zero-copy)
//   vmihailenco  github.com/vmihailenco/msgpack/v5: a payload decoded into
//                []interface{} then read into a protocol.Frame; frames
//                encoded from values (compact ints, so the bytes are canonical)
//   tinylib      github.com/tinylib/msgp's low-level primitives (ReadArrayHeaderBytes,
//                ReadUint64Bytes, ReadBytesZC...): a hand-written best-effort
//                equivalent without the protocol's checks
//
// cd clients/go/internal/msgpbench && go test -run '^$' -bench . -benchmem -count=5

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/tinylib/msgp/msgp"
	"github.com/vmihailenco/msgpack/v5"

	"sluice.dev/go/protocol"
)

const sid = 12345

func request() *protocol.Frame {
	f := &protocol.Frame{Type: protocol.Request, Stream: sid, Method: []byte("GET"),
		Target: []byte("/index.html?q=1"), Version: 11, Client: protocol.Addr{Host: "127.0.0.1", Port: 54321},
		Server: protocol.Addr{Host: "127.0.0.1", Port: 8080}, Scheme: "http", BodyMode: protocol.BodyNone}
	names := []string{"host", "user-agent", "accept", "accept-language", "accept-encoding",
		"cookie", "referer", "cache-control", "x-request-id", "x-forwarded-for"}
	for i, n := range names {
		f.Headers = append(f.Headers, protocol.Header{Name: []byte(n), Value: []byte("value-" + strings.Repeat("v", 2*i))})
	}
	return f
}

func response() *protocol.Frame {
	return &protocol.Frame{Type: protocol.Response, Stream: sid, Status: 200, BodyMode: protocol.BodyFollows,
		Headers: []protocol.Header{
			{Name: []byte("content-type"), Value: []byte("text/html; charset=utf-8")},
			{Name: []byte("content-length"), Value: []byte("16384")},
			{Name: []byte("cache-control"), Value: []byte("no-cache")},
			{Name: []byte("set-cookie"), Value: []byte("session=0123456789abcdef; Path=/; HttpOnly")},
		}}
}

const bodySize = 16384

var (
	requestWire = protocol.AppendFrame(nil, request())
	bodyWire    = protocol.AppendFrame(nil, &protocol.Frame{Type: protocol.Body, Stream: sid, Data: bytes.Repeat([]byte{'b'}, bodySize)})
)

/* ---- (b) vmihailenco/msgpack: generic values ----------------------------- */

func toUint(v interface{}) (uint64, bool) {
	switch x := v.(type) {
	case int8:
		return uint64(x), x >= 0
	case int16:
		return uint64(x), x >= 0
	case int32:
		return uint64(x), x >= 0
	case int64:
		return uint64(x), x >= 0
	case uint8:
		return uint64(x), true
	case uint16:
		return uint64(x), true
	case uint32:
		return uint64(x), true
	case uint64:
		return x, true
	}
	return 0, false
}

func toBytes(v interface{}) ([]byte, bool) {
	switch x := v.(type) {
	case []byte:
		return x, true
	case string:
		return []byte(x), true
	}
	return nil, false
}

var errShape = errors.New("unexpected frame shape")

func addrOf(v interface{}) (protocol.Addr, error) {
	a, ok := v.([]interface{})
	if !ok || len(a) != 2 {
		return protocol.Addr{}, errShape
	}
	host, ok1 := a[0].(string)
	port, ok2 := toUint(a[1])
	if !ok1 || !ok2 {
		return protocol.Addr{}, errShape
	}
	return protocol.Addr{Host: host, Port: uint16(port)}, nil
}

// vmDecode decodes a frame (REQUEST or BODY) through []interface{}.
func vmDecode(wire []byte, f *protocol.Frame) error {
	var v []interface{}
	if err := msgpack.Unmarshal(wire[4:], &v); err != nil {
		return err
	}
	if len(v) < 2 {
		return errShape
	}
	t, ok1 := toUint(v[0])
	s, ok2 := toUint(v[1])
	if !ok1 || !ok2 {
		return errShape
	}
	f.Reset()
	f.Type, f.Stream = protocol.Type(t), s
	var ok bool
	switch f.Type {
	case protocol.Body:
		if len(v) < 3 {
			return errShape
		}
		if f.Data, ok = toBytes(v[2]); !ok {
			return errShape
		}
	case protocol.Request:
		if len(v) < 10 {
			return errShape
		}
		if f.Method, ok = toBytes(v[2]); !ok {
			return errShape
		}
		if f.Target, ok = toBytes(v[3]); !ok {
			return errShape
		}
		if f.Version, ok = toUint(v[4]); !ok {
			return errShape
		}
		hs, ok := v[5].([]interface{})
		if !ok {
			return errShape
		}
		for _, h := range hs {
			e, ok := h.([]interface{})
			if !ok || len(e) != 2 {
				return errShape
			}
			name, ok1 := toBytes(e[0])
			value, ok2 := toBytes(e[1])
			if !ok1 || !ok2 {
				return errShape
			}
			f.Headers = append(f.Headers, protocol.Header{Name: name, Value: value})
		}
		var err error
		if f.Client, err = addrOf(v[6]); err != nil {
			return err
		}
		if f.Server, err = addrOf(v[7]); err != nil {
			return err
		}
		if f.Scheme, ok = v[8].(string); !ok {
			return errShape
		}
		if f.BodyMode, ok = toUint(v[9]); !ok {
			return errShape
		}
	default:
		return errShape
	}
	return nil
}

type vmEncoder struct {
	buf bytes.Buffer
	enc *msgpack.Encoder
}

func newVMEncoder() *vmEncoder {
	e := &vmEncoder{}
	e.enc = msgpack.NewEncoder(&e.buf)
	e.enc.UseCompactInts(true)
	return e
}

var zero4 = []byte{0, 0, 0, 0}

// response encodes a RESPONSE from generic values.
func (e *vmEncoder) response(f *protocol.Frame) ([]byte, error) {
	e.buf.Reset()
	e.buf.Write(zero4)
	hs := make([]interface{}, len(f.Headers))
	for i, h := range f.Headers {
		hs[i] = []interface{}{h.Name, h.Value}
	}
	if err := e.enc.Encode([]interface{}{uint64(protocol.Response), f.Stream, f.Status, hs, f.BodyMode}); err != nil {
		return nil, err
	}
	b := e.buf.Bytes()
	binary.BigEndian.PutUint32(b, uint32(len(b)-4))
	return b, nil
}

// dataHeader encodes a BODY frame's header with the encoder's primitives.
func (e *vmEncoder) dataHeader(s uint64, n int) ([]byte, error) {
	e.buf.Reset()
	e.buf.Write(zero4)
	if err := e.enc.EncodeArrayLen(3); err != nil {
		return nil, err
	}
	if err := e.enc.EncodeUint(uint64(protocol.Body)); err != nil {
		return nil, err
	}
	if err := e.enc.EncodeUint(s); err != nil {
		return nil, err
	}
	if err := e.enc.EncodeBytesLen(n); err != nil {
		return nil, err
	}
	b := e.buf.Bytes()
	binary.BigEndian.PutUint32(b, uint32(len(b)-4+n))
	return b, nil
}

/* ---- (c) tinylib/msgp: low-level primitives ------------------------------ */

func msgpAddr(b []byte, a *protocol.Addr) ([]byte, error) {
	n, b, err := msgp.ReadArrayHeaderBytes(b)
	if err != nil {
		return b, err
	}
	if n != 2 {
		return b, errShape
	}
	if a.Host, b, err = msgp.ReadStringBytes(b); err != nil {
		return b, err
	}
	var port uint16
	port, b, err = msgp.ReadUint16Bytes(b)
	a.Port = port
	return b, err
}

// msgpDecode decodes a frame (REQUEST or BODY) with msgp's primitives,
// byte fields zero-copy, without the protocol's checks.
func msgpDecode(wire []byte, f *protocol.Frame) error {
	b := wire[4:]
	n, b, err := msgp.ReadArrayHeaderBytes(b)
	if err != nil {
		return err
	}
	if n < 2 {
		return errShape
	}
	f.Reset()
	var t uint64
	if t, b, err = msgp.ReadUint64Bytes(b); err != nil {
		return err
	}
	if f.Stream, b, err = msgp.ReadUint64Bytes(b); err != nil {
		return err
	}
	f.Type = protocol.Type(t)
	read := uint32(2)
	switch f.Type {
	case protocol.Body:
		if f.Data, b, err = msgp.ReadBytesZC(b); err != nil {
			return err
		}
		read++
	case protocol.Request:
		if f.Method, b, err = msgp.ReadBytesZC(b); err != nil {
			return err
		}
		if f.Target, b, err = msgp.ReadBytesZC(b); err != nil {
			return err
		}
		if f.Version, b, err = msgp.ReadUint64Bytes(b); err != nil {
			return err
		}
		var nh uint32
		if nh, b, err = msgp.ReadArrayHeaderBytes(b); err != nil {
			return err
		}
		for i := uint32(0); i < nh; i++ {
			var m uint32
			if m, b, err = msgp.ReadArrayHeaderBytes(b); err != nil {
				return err
			}
			if m != 2 {
				return errShape
			}
			var h protocol.Header
			if h.Name, b, err = msgp.ReadBytesZC(b); err != nil {
				return err
			}
			if h.Value, b, err = msgp.ReadBytesZC(b); err != nil {
				return err
			}
			f.Headers = append(f.Headers, h)
		}
		if b, err = msgpAddr(b, &f.Client); err != nil {
			return err
		}
		if b, err = msgpAddr(b, &f.Server); err != nil {
			return err
		}
		var scheme []byte
		if scheme, b, err = msgp.ReadStringZC(b); err != nil {
			return err
		}
		switch string(scheme) { // interned, as the protocol package does
		case "http":
			f.Scheme = "http"
		case "https":
			f.Scheme = "https"
		default:
			f.Scheme = string(scheme)
		}
		if f.BodyMode, b, err = msgp.ReadUint64Bytes(b); err != nil {
			return err
		}
		read += 8
	default:
		return errShape
	}
	for ; read < n; read++ {
		if b, err = msgp.Skip(b); err != nil {
			return err
		}
	}
	if len(b) != 0 {
		return errShape
	}
	return nil
}

func msgpResponse(dst []byte, f *protocol.Frame) []byte {
	dst, at := protocol.BeginFrame(dst)
	dst = msgp.AppendArrayHeader(dst, 5)
	dst = msgp.AppendUint64(dst, uint64(protocol.Response))
	dst = msgp.AppendUint64(dst, f.Stream)
	dst = msgp.AppendUint64(dst, f.Status)
	dst = msgp.AppendArrayHeader(dst, uint32(len(f.Headers)))
	for _, h := range f.Headers {
		dst = msgp.AppendArrayHeader(dst, 2)
		dst = msgp.AppendBytes(dst, h.Name)
		dst = msgp.AppendBytes(dst, h.Value)
	}
	dst = msgp.AppendUint64(dst, f.BodyMode)
	return protocol.EndFrame(dst, at)
}

func msgpDataHeader(dst []byte, s uint64, n int) []byte {
	at := len(dst)
	dst = append(dst, 0, 0, 0, 0)
	dst = msgp.AppendArrayHeader(dst, 3)
	dst = msgp.AppendUint64(dst, uint64(protocol.Body))
	dst = msgp.AppendUint64(dst, s)
	dst = msgp.AppendBytesHeader(dst, uint32(n))
	binary.BigEndian.PutUint32(dst[at:], uint32(len(dst)-at-4+n))
	return dst
}

/* ---- the three agree ------------------------------------------------------ */

func same(a, b *protocol.Frame) error {
	if a.Type != b.Type || a.Stream != b.Stream || !bytes.Equal(a.Data, b.Data) ||
		!bytes.Equal(a.Method, b.Method) || !bytes.Equal(a.Target, b.Target) || a.Version != b.Version ||
		a.Client != b.Client || a.Server != b.Server || a.Scheme != b.Scheme || a.BodyMode != b.BodyMode ||
		len(a.Headers) != len(b.Headers) {
		return fmt.Errorf("frames differ:\n%+v\n%+v", a, b)
	}
	for i := range a.Headers {
		if !bytes.Equal(a.Headers[i].Name, b.Headers[i].Name) || !bytes.Equal(a.Headers[i].Value, b.Headers[i].Value) {
			return fmt.Errorf("header %d differs", i)
		}
	}
	return nil
}

func TestSameResults(t *testing.T) {
	d := protocol.NewDecoder(protocol.DefaultFrame)
	for _, wire := range [][]byte{requestWire, bodyWire} {
		var want, got protocol.Frame
		if _, err := d.Parse(wire, &want); err != nil {
			t.Fatal(err)
		}
		if err := vmDecode(wire, &got); err != nil {
			t.Fatal(err)
		}
		if err := same(&want, &got); err != nil {
			t.Fatalf("vmihailenco: %v", err)
		}
		if err := msgpDecode(wire, &got); err != nil {
			t.Fatal(err)
		}
		if err := same(&want, &got); err != nil {
			t.Fatalf("tinylib: %v", err)
		}
	}
	resp := response()
	want := protocol.AppendFrame(nil, resp)
	vm := newVMEncoder()
	if got, err := vm.response(resp); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("vmihailenco RESPONSE: %x, %v\nwant %x", got, err, want)
	}
	if got := msgpResponse(nil, resp); !bytes.Equal(got, want) {
		t.Fatalf("tinylib RESPONSE: %x\nwant %x", got, want)
	}
	want = protocol.AppendDataHeader(nil, protocol.Body, sid, 0, bodySize)
	if got, err := vm.dataHeader(sid, bodySize); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("vmihailenco BODY header: %x, %v\nwant %x", got, err, want)
	}
	if got := msgpDataHeader(nil, sid, bodySize); !bytes.Equal(got, want) {
		t.Fatalf("tinylib BODY header: %x\nwant %x", got, want)
	}
}

// TestGenericDecodersMissRules shows a few inputs the protocol rejects with a
// precise link error that a generic decoder takes without complaint: the
// error code and precedence have to be written by hand either way.
func TestGenericDecodersMissRules(t *testing.T) {
	// [4, 1, bin "", [[[[[[[[0]]]]]]]]]: an ignored trailing element nested
	// 9 deep, the frame's own array counting as depth 1.
	deep := []byte{0x94, 0x04, 0x01, 0xc4, 0x00}
	for i := 0; i < 8; i++ {
		deep = append(deep, 0x91)
	}
	deep = append(deep, 0x00)
	cases := []struct {
		name    string
		payload []byte
		want    string
	}{
		{"depth 9 in a trailing element", deep, "malformed"},
		{"CREDIT 0", []byte{0x93, 0x06, 0x01, 0x00}, "field_value"},
		{"stream id 2^53", []byte{0x93, 0x04, 0xcf, 0x00, 0x20, 0, 0, 0, 0, 0, 0, 0xc4, 0x00}, "field_value"},
		{"BODY on stream 0", []byte{0x93, 0x04, 0x00, 0xc4, 0x00}, "field_value"},
	}
	d := protocol.NewDecoder(protocol.DefaultFrame)
	for _, c := range cases {
		wire := binary.BigEndian.AppendUint32(nil, uint32(len(c.payload)))
		wire = append(wire, c.payload...)
		var f protocol.Frame
		_, err := d.Parse(wire, &f)
		var le *protocol.LinkError
		if !errors.As(err, &le) || le.Code.String() != c.want {
			t.Errorf("%s: protocol says %v, want %s", c.name, err, c.want)
		}
		var v []interface{}
		vmErr := msgpack.Unmarshal(c.payload, &v)
		_, msgpErr := msgp.Skip(c.payload)
		t.Logf("%s: protocol %v; vmihailenco error %v; tinylib Skip error %v", c.name, err, vmErr, msgpErr)
	}
}

/* ---- benchmarks ------------------------------------------------------------ */

func BenchmarkDecodeRequest(b *testing.B) { benchDecode(b, requestWire) }
func BenchmarkDecodeBody(b *testing.B)    { benchDecode(b, bodyWire) }

func benchDecode(b *testing.B, wire []byte) {
	b.Run("sluice", func(b *testing.B) {
		d := protocol.NewDecoder(protocol.DefaultFrame)
		var f protocol.Frame
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if _, err := d.Parse(wire, &f); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("vmihailenco", func(b *testing.B) {
		var f protocol.Frame
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if err := vmDecode(wire, &f); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("tinylib", func(b *testing.B) {
		var f protocol.Frame
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if err := msgpDecode(wire, &f); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkEncodeResponse(b *testing.B) {
	f := response()
	b.Run("sluice", func(b *testing.B) {
		buf := make([]byte, 0, 1024)
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			buf = protocol.AppendFrame(buf[:0], f)
		}
	})
	b.Run("vmihailenco", func(b *testing.B) {
		e := newVMEncoder()
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if _, err := e.response(f); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("tinylib", func(b *testing.B) {
		buf := make([]byte, 0, 1024)
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			buf = msgpResponse(buf[:0], f)
		}
	})
}

func BenchmarkEncodeBodyHeader(b *testing.B) {
	b.Run("sluice", func(b *testing.B) {
		buf := make([]byte, 0, 64)
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			buf = protocol.AppendDataHeader(buf[:0], protocol.Body, sid, 0, bodySize)
		}
	})
	b.Run("vmihailenco", func(b *testing.B) {
		e := newVMEncoder()
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if _, err := e.dataHeader(sid, bodySize); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("tinylib", func(b *testing.B) {
		buf := make([]byte, 0, 64)
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			buf = msgpDataHeader(buf[:0], sid, bodySize)
		}
	})
}
