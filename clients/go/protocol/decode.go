package protocol

import (
	"encoding/binary"
	"strconv"
)

// Decoding is a single strict pass over one payload with a cursor. Every read
// returns a Code (0 = ok): the first failure in the order of the fields is the
// error of PROTOCOL.md 2's precedence, except that a payload which is not
// well-formed MessagePack as a whole is malformed whatever failed first; that
// is checked (by a second, skipping pass) only when the first pass fails.

type reader struct {
	b    []byte
	p    int
	left int // frame array elements not yet read
}

// uint reads a spec `uint`: positive fixint, uint 8..64, int 8..64 holding a
// value >= 0; anything above 2^53-1 or negative is field_value.
func (r *reader) uint() (uint64, Code) {
	b := r.b
	p := r.p
	if p >= len(b) {
		return 0, Malformed
	}
	c := b[p]
	if c <= 0x7f {
		r.p = p + 1
		return uint64(c), 0
	}
	if c >= 0xe0 { // negative fixint
		r.p = p + 1
		return 0, FieldValue
	}
	var n int
	signed := false
	switch c {
	case 0xcc:
		n = 1
	case 0xcd:
		n = 2
	case 0xce:
		n = 4
	case 0xcf:
		n = 8
	case 0xd0:
		n, signed = 1, true
	case 0xd1:
		n, signed = 2, true
	case 0xd2:
		n, signed = 4, true
	case 0xd3:
		n, signed = 8, true
	case 0xc1:
		return 0, Malformed
	default:
		return 0, FieldType
	}
	if len(b)-p < n+1 {
		return 0, Malformed
	}
	q := b[p+1 : p+1+n]
	r.p = p + 1 + n
	var x uint64
	switch n {
	case 1:
		x = uint64(q[0])
		if signed && x >= 0x80 {
			return 0, FieldValue
		}
	case 2:
		x = uint64(binary.BigEndian.Uint16(q))
		if signed && x >= 0x8000 {
			return 0, FieldValue
		}
	case 4:
		x = uint64(binary.BigEndian.Uint32(q))
		if signed && x >= 0x80000000 {
			return 0, FieldValue
		}
	default:
		x = binary.BigEndian.Uint64(q)
		if x > MaxID { // negative (signed) or above 2^53-1
			return 0, FieldValue
		}
	}
	return x, 0
}

func (r *reader) uintRange(lo, hi uint64) (uint64, Code) {
	v, c := r.uint()
	if c != 0 {
		return 0, c
	}
	if v < lo || v > hi {
		return 0, FieldValue
	}
	return v, 0
}

func (r *reader) bool() (bool, Code) {
	if r.p >= len(r.b) {
		return false, Malformed
	}
	switch r.b[r.p] {
	case 0xc2:
		r.p++
		return false, 0
	case 0xc3:
		r.p++
		return true, 0
	case 0xc1:
		return false, Malformed
	}
	return false, FieldType
}

// raw reads a str (text) value, or with allowBin also a bin (bytes) value,
// and returns its content, aliasing the payload (capacity capped).
func (r *reader) raw(allowBin bool) ([]byte, Code) {
	b := r.b
	p := r.p
	if p >= len(b) {
		return nil, Malformed
	}
	c := b[p]
	var n, hl int
	if c&0xe0 == 0xa0 {
		n, hl = int(c&0x1f), 1
	} else {
		var w int
		switch c {
		case 0xd9:
			w = 1
		case 0xda:
			w = 2
		case 0xdb:
			w = 4
		case 0xc4, 0xc5, 0xc6:
			if !allowBin {
				return nil, FieldType
			}
			w = 1 << (c - 0xc4)
		case 0xc1:
			return nil, Malformed
		default:
			return nil, FieldType
		}
		if len(b)-p < w+1 {
			return nil, Malformed
		}
		switch w {
		case 1:
			n = int(b[p+1])
		case 2:
			n = int(binary.BigEndian.Uint16(b[p+1:]))
		default:
			n = int(binary.BigEndian.Uint32(b[p+1:]))
		}
		hl = w + 1
	}
	s := p + hl
	if len(b)-s < n {
		return nil, Malformed
	}
	r.p = s + n
	return b[s : s+n : s+n], 0
}

// container reads an array (or map) header and returns its element (pair) count.
func (r *reader) container(isMap bool) (int, Code) {
	b := r.b
	p := r.p
	if p >= len(b) {
		return 0, Malformed
	}
	c := b[p]
	var fix, c16, c32 byte = 0x90, 0xdc, 0xdd
	if isMap {
		fix, c16, c32 = 0x80, 0xde, 0xdf
	}
	if c >= fix && c <= fix+0x0f {
		r.p = p + 1
		return int(c & 0x0f), 0
	}
	var w int
	switch c {
	case c16:
		w = 2
	case c32:
		w = 4
	case 0xc1:
		return 0, Malformed
	default:
		return 0, FieldType
	}
	if len(b)-p < w+1 {
		return 0, Malformed
	}
	var n int
	if w == 2 {
		n = int(binary.BigEndian.Uint16(b[p+1:]))
	} else {
		n = int(binary.BigEndian.Uint32(b[p+1:]))
	}
	r.p = p + 1 + w
	return n, 0
}

// skip skips one well-formed value at nesting depth (the frame array is 1).
func (r *reader) skip(depth int) Code {
	b := r.b
	p := r.p
	if p >= len(b) {
		return Malformed
	}
	c := b[p]
	if c <= 0x7f || c >= 0xe0 || c == 0xc0 || c == 0xc2 || c == 0xc3 {
		r.p = p + 1
		return 0
	}
	var n int // bytes after the header
	switch {
	case c >= 0xa0 && c <= 0xbf: // fixstr
		n = int(c & 0x1f)
		p++
	case c >= 0x80 && c <= 0x9f, c >= 0xdc && c <= 0xdf: // containers
		isMap := c <= 0x8f || c >= 0xde
		if depth > MaxDepth {
			return Malformed
		}
		cnt, code := r.container(isMap)
		if code != 0 {
			return code
		}
		items := cnt
		if isMap {
			items *= 2
		}
		for i := 0; i < items; i++ {
			if code := r.skip(depth + 1); code != 0 {
				return code
			}
		}
		return 0
	default:
		fixed, lw := 0, 0
		switch c {
		case 0xcc, 0xd0:
			fixed = 1
		case 0xcd, 0xd1:
			fixed = 2
		case 0xce, 0xd2, 0xca:
			fixed = 4
		case 0xcf, 0xd3, 0xcb:
			fixed = 8
		case 0xd4: // fixext: type byte + data
			fixed = 2
		case 0xd5:
			fixed = 3
		case 0xd6:
			fixed = 5
		case 0xd7:
			fixed = 9
		case 0xd8:
			fixed = 17
		case 0xc4, 0xd9, 0xc7:
			lw = 1
		case 0xc5, 0xda, 0xc8:
			lw = 2
		case 0xc6, 0xdb, 0xc9:
			lw = 4
		default: // 0xc1
			return Malformed
		}
		if fixed > 0 {
			if len(b)-p < fixed+1 {
				return Malformed
			}
			r.p = p + 1 + fixed
			return 0
		}
		if len(b)-p < lw+1 {
			return Malformed
		}
		switch lw {
		case 1:
			n = int(b[p+1])
		case 2:
			n = int(binary.BigEndian.Uint16(b[p+1:]))
		default:
			n = int(binary.BigEndian.Uint32(b[p+1:]))
		}
		if c == 0xc7 || c == 0xc8 || c == 0xc9 {
			n++ // ext type byte
		}
		p += lw + 1
	}
	if len(b)-p < n {
		return Malformed
	}
	r.p = p + n
	return 0
}

// field claims the next element of the frame array: field_type when missing.
func (r *reader) field() Code {
	if r.left == 0 {
		return FieldType
	}
	r.left--
	return 0
}

// wellformed reports whether payload is exactly one well-formed MessagePack
// array within the depth limit.
func wellformed(payload []byte) bool {
	if len(payload) == 0 {
		return false
	}
	c := payload[0]
	if !(c >= 0x90 && c <= 0x9f || c == 0xdc || c == 0xdd) {
		return false
	}
	r := reader{b: payload}
	return r.skip(1) == 0 && r.p == len(payload)
}

// Decoder decodes frames strictly (PROTOCOL.md 2). It keeps a small cache of
// short strings so that repeated hosts, messages and settings texts do not
// allocate. A Decoder is not safe for concurrent use.
type Decoder struct {
	maxFrame   int
	maxHeaders int
	intern     [internSize]string
}

const (
	internSize = 256
	internMax  = 32 // longest string kept in the cache
)

// NewDecoder returns a decoder accepting frame lengths up to maxFrame
// (MinFrame .. MaxFrame; 0 means DefaultFrame). It accepts MaxHeaders
// header entries per list unless SetMaxHeaders says otherwise.
func NewDecoder(maxFrame int) *Decoder {
	if maxFrame == 0 {
		maxFrame = DefaultFrame
	}
	if maxFrame < MinFrame || maxFrame > MaxFrame {
		panic("protocol: NewDecoder: maxFrame " + strconv.Itoa(maxFrame) + " out of range")
	}
	return &Decoder{maxFrame: maxFrame, maxHeaders: MaxHeaders}
}

// SetMaxHeaders sets the largest number of entries accepted in one header
// list (too_many_headers beyond). The spec requires at least 1024.
func (d *Decoder) SetMaxHeaders(n int) { d.maxHeaders = n }

// MaxFrame returns the largest frame length the decoder accepts.
func (d *Decoder) MaxFrame() int { return d.maxFrame }

// str returns b as a string, from the cache when it is short and was seen before.
func (d *Decoder) str(b []byte) string {
	n := len(b)
	if n == 0 {
		return ""
	}
	if n > internMax {
		return string(b)
	}
	h := uint32(n)
	for _, c := range b {
		h = h*31 + uint32(c)
	}
	h ^= h >> 13
	e := &d.intern[h&(internSize-1)]
	if *e == string(b) {
		return *e
	}
	s := string(b)
	*e = s
	return s
}

func (d *Decoder) text(r *reader) (string, Code) {
	b, c := r.raw(false)
	if c != 0 {
		return "", c
	}
	return d.str(b), 0
}

func (d *Decoder) headers(r *reader, h []Header) ([]Header, Code) {
	n, c := r.container(false)
	if c != 0 {
		return h, c
	}
	if n > d.maxHeaders {
		return h, TooManyHeaders
	}
	for i := 0; i < n; i++ {
		m, c := r.container(false)
		if c != 0 {
			return h, c
		}
		if m != 2 {
			return h, FieldType
		}
		name, c := r.raw(true)
		if c != 0 {
			return h, c
		}
		if len(name) == 0 {
			return h, FieldValue
		}
		value, c := r.raw(true)
		if c != 0 {
			return h, c
		}
		h = append(h, Header{Name: name, Value: value})
	}
	return h, 0
}

func (d *Decoder) addr(r *reader, a *Addr) Code {
	if c := r.field(); c != 0 {
		return c
	}
	n, c := r.container(false)
	if c != 0 {
		return c
	}
	if n != 2 {
		return FieldType
	}
	if a.Host, c = d.text(r); c != 0 {
		return c
	}
	port, c := r.uintRange(0, 65535)
	a.Port = uint16(port)
	return c
}

func (d *Decoder) hello(r *reader, f *Frame) Code {
	var c Code
	if c = r.field(); c != 0 {
		return c
	}
	if f.Version, c = r.uint(); c != 0 {
		return c
	}
	if c = r.field(); c != 0 {
		return c
	}
	n, c := r.container(true)
	if c != 0 {
		return c
	}
	s := &f.Settings
	for i := 0; i < n; i++ {
		save := r.p
		key, c := r.raw(false)
		if c == FieldType { // not a text key: unknown, skip it and its value
			r.p = save
			if c = r.skip(3); c != 0 {
				return c
			}
			if c = r.skip(3); c != 0 {
				return c
			}
			continue
		}
		if c != 0 {
			return c
		}
		var k Key
		switch string(key) {
		case "pid":
			k = KeyPid
			s.Pid, c = r.uint()
		case "lib":
			k = KeyLib
			s.Lib, c = d.text(r)
		case "max_streams":
			k = KeyMaxStreams
			s.MaxStreams, c = r.uintRange(1, MaxStreams)
		case "window":
			k = KeyWindow
			s.Window, c = r.uintRange(0, MaxWindow)
		case "max_frame":
			k = KeyMaxFrame
			s.MaxFrame, c = r.uintRange(MinFrame, MaxFrame)
		case "token":
			k = KeyToken
			s.Token, c = d.text(r)
		case "worker_id":
			k = KeyWorkerID
			s.WorkerID, c = r.uint()
		case "pool":
			k = KeyPool
			s.Pool, c = d.text(r)
		case "server":
			k = KeyServer
			s.Server, c = d.text(r)
		case "websocket":
			k = KeyWebSocket
			s.WebSocket, c = r.bool()
		default:
			c = r.skip(3)
		}
		if c != 0 {
			return c
		}
		s.Has |= k
	}
	return 0
}

// optText reads an optional trailing text field into f.Message.
func (d *Decoder) optText(r *reader, f *Frame) Code {
	if r.left == 0 {
		return 0
	}
	r.left--
	var c Code
	f.Message, c = d.text(r)
	f.HasMessage = c == 0
	return c
}

func (d *Decoder) scheme(r *reader) (string, Code) {
	b, c := r.raw(false)
	if c != 0 {
		return "", c
	}
	switch string(b) {
	case "http":
		return "http", 0
	case "https":
		return "https", 0
	}
	return d.str(b), 0
}

// parse decodes one payload into f (already reset).
func (d *Decoder) parse(payload []byte, f *Frame) Code {
	r := reader{b: payload}
	n, c := r.container(false)
	if c != 0 {
		return c // reported as malformed: not an array
	}
	if n < 2 {
		return Malformed
	}
	r.left = n - 2
	t, c := r.uint()
	if c == Malformed {
		return Malformed
	}
	if c != 0 || t < 1 || t > uint64(typeMax) {
		return UnknownType
	}
	f.Type = Type(t)
	sid, c := r.uint()
	if c != 0 {
		return c
	}
	if linkFrame[t] != (sid == 0) {
		return FieldValue
	}
	f.Stream = sid
	switch f.Type {
	case Body:
		if c = r.field(); c != 0 {
			return c
		}
		if f.Data, c = r.raw(true); c != 0 {
			return c
		}
	case Credit:
		if c = r.field(); c != 0 {
			return c
		}
		if f.Increment, c = r.uintRange(1, MaxWindow); c != 0 {
			return c
		}
	case End:
		if r.left > 0 {
			r.left--
			if f.Headers, c = d.headers(&r, f.Headers[:0]); c != 0 {
				return c
			}
		}
	case Request:
		if c = r.field(); c != 0 {
			return c
		}
		if f.Method, c = r.raw(true); c != 0 {
			return c
		}
		if len(f.Method) == 0 {
			return FieldValue
		}
		if c = r.field(); c != 0 {
			return c
		}
		if f.Target, c = r.raw(true); c != 0 {
			return c
		}
		if len(f.Target) == 0 {
			return FieldValue
		}
		if c = r.field(); c != 0 {
			return c
		}
		if f.Version, c = r.uint(); c != 0 {
			return c
		}
		if f.Version != 10 && f.Version != 11 && f.Version != 20 {
			return FieldValue
		}
		if c = r.field(); c != 0 {
			return c
		}
		if f.Headers, c = d.headers(&r, f.Headers[:0]); c != 0 {
			return c
		}
		if c = d.addr(&r, &f.Client); c != 0 {
			return c
		}
		if c = d.addr(&r, &f.Server); c != 0 {
			return c
		}
		if c = r.field(); c != 0 {
			return c
		}
		if f.Scheme, c = d.scheme(&r); c != 0 {
			return c
		}
		if c = r.field(); c != 0 {
			return c
		}
		if f.BodyMode, c = r.uintRange(0, BodyWebSocket); c != 0 {
			return c
		}
	case Response:
		if c = r.field(); c != 0 {
			return c
		}
		if f.Status, c = r.uintRange(101, 599); c != 0 {
			return c
		}
		if f.Status < 200 && f.Status != 101 {
			return FieldValue
		}
		if c = r.field(); c != 0 {
			return c
		}
		if f.Headers, c = d.headers(&r, f.Headers[:0]); c != 0 {
			return c
		}
		if c = r.field(); c != 0 {
			return c
		}
		if f.BodyMode, c = r.uintRange(0, BodyFollows); c != 0 {
			return c
		}
	case Cancel, Reset:
		if c = r.field(); c != 0 {
			return c
		}
		var v uint64
		if v, c = r.uint(); c != 0 {
			return c
		}
		if f.Type == Cancel {
			f.Reason = v
		} else {
			f.Code = v
		}
		if c = d.optText(&r, f); c != 0 {
			return c
		}
	case Limit:
		if c = r.field(); c != 0 {
			return c
		}
		if f.MaxBody, c = r.uint(); c != 0 {
			return c
		}
	case Ping, Pong:
		if c = r.field(); c != 0 {
			return c
		}
		if f.Opaque, c = r.uint(); c != 0 {
			return c
		}
	case Drain:
		if c = r.field(); c != 0 {
			return c
		}
		if f.TimeoutMs, c = r.uint(); c != 0 {
			return c
		}
	case Retire:
		if c = d.optText(&r, f); c != 0 {
			return c
		}
	case Error:
		if c = r.field(); c != 0 {
			return c
		}
		if f.Code, c = r.uint(); c != 0 {
			return c
		}
		if c = r.field(); c != 0 {
			return c
		}
		if f.Message, c = d.text(&r); c != 0 {
			return c
		}
		f.HasMessage = true
	case Message:
		if c = r.field(); c != 0 {
			return c
		}
		if f.Flags, c = r.uint(); c != 0 {
			return c
		}
		if !validMsgFlags(f.Flags) {
			return FieldValue
		}
		if c = r.field(); c != 0 {
			return c
		}
		if f.Data, c = r.raw(true); c != 0 {
			return c
		}
	case Close:
		if c = r.field(); c != 0 {
			return c
		}
		if f.Code, c = r.uintRange(CloseMin, CloseMax); c != 0 {
			return c
		}
		if c = d.optText(&r, f); c != 0 {
			return c
		}
	case Hello:
		if c = d.hello(&r, f); c != 0 {
			return c
		}
	}
	// Forward compatibility: later elements are skipped, but must be well-formed.
	for ; r.left > 0; r.left-- {
		if c = r.skip(2); c != 0 {
			return c
		}
	}
	if r.p != len(payload) {
		return Malformed
	}
	return 0
}

// FrameLength returns the payload length announced by the first 4 bytes of buf,
// or -1 when buf holds fewer than 4 bytes.
func FrameLength(buf []byte) int {
	if len(buf) < 4 {
		return -1
	}
	return int(binary.BigEndian.Uint32(buf))
}

// Parse decodes the first frame of buf (length prefix and payload) into f.
// It returns the number of bytes consumed; 0 with a nil error means buf does
// not yet hold a complete frame. A frame_size error is returned as soon as the
// 4 length bytes are known. Errors are *LinkError.
//
// f's []byte fields (Method, Target, the Headers' names and values, Data)
// alias buf: they are valid as long as buf's bytes are. f.Headers reuses its
// capacity across calls. Strings (Message, hosts, settings texts) are copies.
func (d *Decoder) Parse(buf []byte, f *Frame) (int, error) {
	if len(buf) < 4 {
		return 0, nil
	}
	n := int(binary.BigEndian.Uint32(buf))
	if n == 0 || n > d.maxFrame {
		return 0, &LinkError{FrameSize, "frame length " + strconv.Itoa(n) + " (max " + strconv.Itoa(d.maxFrame) + ")"}
	}
	if len(buf)-4 < n {
		return 0, nil
	}
	payload := buf[4 : 4+n : 4+n]
	f.Reset()
	// Fast path for the canonical BODY, the most frequent frame: anything
	// unusual about it takes the general path, which finds the error.
	if n > 3 && payload[0] == 0x93 && payload[1] == byte(Body) {
		r := reader{b: payload, p: 2}
		if sid, c := r.uint(); c == 0 && sid != 0 {
			if data, c := r.raw(true); c == 0 && r.p == n {
				f.Type, f.Stream, f.Data = Body, sid, data
				return 4 + n, nil
			}
		}
	}
	if c := d.parse(payload, f); c != 0 {
		// A payload that is not well-formed as a whole is malformed, whatever failed first.
		if c != Malformed && !wellformed(payload) {
			c = Malformed
		}
		msg := "in a frame payload"
		if f.Type != 0 && c != Malformed && c != UnknownType {
			msg = "in a " + f.Type.String() + " frame"
		}
		f.Reset()
		return 0, &LinkError{c, msg}
	}
	return 4 + n, nil
}

// StreamDecoder is a convenience decoder over a byte stream: Feed appends
// input (copied), Next yields the frames, Finish reports truncated when the
// input stopped inside a frame. A frame's []byte fields alias the decoder's
// buffer and are valid until the next Feed. Errors are sticky.
type StreamDecoder struct {
	d   *Decoder
	buf []byte
	off int
	err error
}

// NewStreamDecoder returns a stream decoder accepting frame lengths up to maxFrame.
func NewStreamDecoder(maxFrame int) *StreamDecoder {
	return &StreamDecoder{d: NewDecoder(maxFrame)}
}

// Decoder returns the underlying frame decoder (for SetMaxHeaders).
func (s *StreamDecoder) Decoder() *Decoder { return s.d }

// Feed appends p to the input.
func (s *StreamDecoder) Feed(p []byte) {
	if s.err != nil {
		return
	}
	if s.off > 0 {
		k := copy(s.buf, s.buf[s.off:])
		s.buf = s.buf[:k]
		s.off = 0
	}
	s.buf = append(s.buf, p...)
}

// Next decodes the next complete frame into f: true when it did, false (with
// a nil error) when more input is needed.
func (s *StreamDecoder) Next(f *Frame) (bool, error) {
	if s.err != nil {
		return false, s.err
	}
	n, err := s.d.Parse(s.buf[s.off:], f)
	if err != nil {
		s.err = err
		return false, err
	}
	if n == 0 {
		return false, nil
	}
	s.off += n
	return true, nil
}

// Buffered returns the number of input bytes not yet decoded.
func (s *StreamDecoder) Buffered() int { return len(s.buf) - s.off }

// Finish is called at the end of the input: it returns the truncated error
// when the input stopped inside a frame (part of a length prefix or of a
// payload), the sticky error if there was one, else nil.
func (s *StreamDecoder) Finish() error {
	if s.err != nil {
		return s.err
	}
	rest := s.buf[s.off:]
	if len(rest) == 0 {
		return nil
	}
	if n := FrameLength(rest); n >= 0 && len(rest)-4 >= n {
		return nil // a complete frame is still buffered: Next yields it
	}
	s.err = &LinkError{Truncated, "the input ended inside a frame"}
	return s.err
}
