package protocol

import "encoding/binary"

// Canonical encoding (PROTOCOL.md 2.1). Every Append* function appends to
// dst and returns the extended slice; none allocates when dst has room.

// AppendUint appends v in the shortest unsigned form.
func AppendUint(dst []byte, v uint64) []byte {
	switch {
	case v < 0x80:
		return append(dst, byte(v))
	case v <= 0xff:
		return append(dst, 0xcc, byte(v))
	case v <= 0xffff:
		return append(dst, 0xcd, byte(v>>8), byte(v))
	case v <= 0xffffffff:
		return append(dst, 0xce, byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
	}
	return append(dst, 0xcf, byte(v>>56), byte(v>>48), byte(v>>40), byte(v>>32),
		byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
}

// AppendArrayHeader appends the shortest array header for n elements.
func AppendArrayHeader(dst []byte, n int) []byte {
	switch {
	case n < 16:
		return append(dst, 0x90|byte(n))
	case n <= 0xffff:
		return append(dst, 0xdc, byte(n>>8), byte(n))
	}
	return append(dst, 0xdd, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
}

// AppendMapHeader appends the shortest map header for n pairs.
func AppendMapHeader(dst []byte, n int) []byte {
	switch {
	case n < 16:
		return append(dst, 0x80|byte(n))
	case n <= 0xffff:
		return append(dst, 0xde, byte(n>>8), byte(n))
	}
	return append(dst, 0xdf, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
}

// AppendBinHeader appends the shortest bin header for n bytes (the bytes
// themselves follow).
func AppendBinHeader(dst []byte, n int) []byte {
	switch {
	case n <= 0xff:
		return append(dst, 0xc4, byte(n))
	case n <= 0xffff:
		return append(dst, 0xc5, byte(n>>8), byte(n))
	}
	return append(dst, 0xc6, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
}

// AppendBin appends b as the shortest bin.
func AppendBin(dst []byte, b []byte) []byte {
	return append(AppendBinHeader(dst, len(b)), b...)
}

// AppendBinString appends s as the shortest bin (no conversion allocation).
func AppendBinString(dst []byte, s string) []byte {
	return append(AppendBinHeader(dst, len(s)), s...)
}

func appendStrHeader(dst []byte, n int) []byte {
	switch {
	case n < 32:
		return append(dst, 0xa0|byte(n))
	case n <= 0xff:
		return append(dst, 0xd9, byte(n))
	case n <= 0xffff:
		return append(dst, 0xda, byte(n>>8), byte(n))
	}
	return append(dst, 0xdb, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
}

// AppendStr appends s as the shortest str.
func AppendStr(dst []byte, s string) []byte {
	return append(appendStrHeader(dst, len(s)), s...)
}

// AppendStrBytes appends b as the shortest str.
func AppendStrBytes(dst []byte, b []byte) []byte {
	return append(appendStrHeader(dst, len(b)), b...)
}

// AppendBool appends true or false.
func AppendBool(dst []byte, b bool) []byte {
	if b {
		return append(dst, 0xc3)
	}
	return append(dst, 0xc2)
}

// AppendHeaders appends a header list: an array of [name: bin, value: bin].
func AppendHeaders(dst []byte, h []Header) []byte {
	dst = AppendArrayHeader(dst, len(h))
	for i := range h {
		dst = append(dst, 0x92)
		dst = AppendBin(dst, h[i].Name)
		dst = AppendBin(dst, h[i].Value)
	}
	return dst
}

// BeginFrame reserves the 4-byte length prefix of a frame; it returns the
// extended slice and the offset to pass to EndFrame once the payload is appended.
func BeginFrame(dst []byte) ([]byte, int) {
	return append(dst, 0, 0, 0, 0), len(dst)
}

// EndFrame patches the length prefix of the frame begun at offset at.
func EndFrame(dst []byte, at int) []byte {
	binary.BigEndian.PutUint32(dst[at:], uint32(len(dst)-at-4))
	return dst
}

// helloKeys: the settings keys in canonical order.
var helloKeys = [...]struct {
	k    Key
	name string
}{
	{KeyPid, "pid"}, {KeyLib, "lib"}, {KeyMaxStreams, "max_streams"}, {KeyWindow, "window"},
	{KeyMaxFrame, "max_frame"}, {KeyToken, "token"}, {KeyWorkerID, "worker_id"},
	{KeyPool, "pool"}, {KeyServer, "server"}, {KeyWebSocket, "websocket"},
}

// keys returns the keys a HELLO carries: Has, but websocket only when true.
func (s *Settings) keys() Key {
	k := s.Has
	if !s.WebSocket {
		k &^= KeyWebSocket
	}
	return k
}

// AppendSettings appends the settings map of a HELLO in canonical order.
func AppendSettings(dst []byte, s *Settings) []byte {
	keys := s.keys()
	n := 0
	for _, e := range helloKeys {
		if keys&e.k != 0 {
			n++
		}
	}
	dst = AppendMapHeader(dst, n)
	for _, e := range helloKeys {
		if keys&e.k == 0 {
			continue
		}
		dst = AppendStr(dst, e.name)
		switch e.k {
		case KeyPid:
			dst = AppendUint(dst, s.Pid)
		case KeyLib:
			dst = AppendStr(dst, s.Lib)
		case KeyMaxStreams:
			dst = AppendUint(dst, s.MaxStreams)
		case KeyWindow:
			dst = AppendUint(dst, s.Window)
		case KeyMaxFrame:
			dst = AppendUint(dst, s.MaxFrame)
		case KeyToken:
			dst = AppendStr(dst, s.Token)
		case KeyWorkerID:
			dst = AppendUint(dst, s.WorkerID)
		case KeyPool:
			dst = AppendStr(dst, s.Pool)
		case KeyServer:
			dst = AppendStr(dst, s.Server)
		case KeyWebSocket:
			dst = AppendBool(dst, true)
		}
	}
	return dst
}

func appendAddr(dst []byte, a *Addr) []byte {
	dst = append(dst, 0x92)
	dst = AppendStr(dst, a.Host)
	return AppendUint(dst, uint64(a.Port))
}

// AppendFrame appends the canonical encoding of f, length prefix included.
// Optional trailing fields are omitted when absent or empty (END without
// trailers; an empty CANCEL/RESET message, RETIRE reason or CLOSE reason);
// ERROR always carries its message. Link frames are written with stream id 0.
// HELLO is written with f.Version as given (normally Version).
// It panics on a type that is not one of the 16 frame types.
func AppendFrame(dst []byte, f *Frame) []byte {
	dst, at := BeginFrame(dst)
	t := f.Type
	sid := f.Stream
	if t.IsLinkFrame() {
		sid = 0
	}
	switch t {
	case Hello:
		dst = append(dst, 0x94, byte(Hello), 0)
		dst = AppendUint(dst, f.Version)
		dst = AppendSettings(dst, &f.Settings)
	case Request:
		dst = append(dst, 0x9a, byte(Request))
		dst = AppendUint(dst, sid)
		dst = AppendBin(dst, f.Method)
		dst = AppendBin(dst, f.Target)
		dst = AppendUint(dst, f.Version)
		dst = AppendHeaders(dst, f.Headers)
		dst = appendAddr(dst, &f.Client)
		dst = appendAddr(dst, &f.Server)
		dst = AppendStr(dst, f.Scheme)
		dst = AppendUint(dst, f.BodyMode)
	case Response:
		dst = append(dst, 0x95, byte(Response))
		dst = AppendUint(dst, sid)
		dst = AppendUint(dst, f.Status)
		dst = AppendHeaders(dst, f.Headers)
		dst = AppendUint(dst, f.BodyMode)
	case Body:
		dst = append(dst, 0x93, byte(Body))
		dst = AppendUint(dst, sid)
		dst = AppendBin(dst, f.Data)
	case End:
		if len(f.Headers) > 0 {
			dst = append(dst, 0x93, byte(End))
			dst = AppendUint(dst, sid)
			dst = AppendHeaders(dst, f.Headers)
		} else {
			dst = append(dst, 0x92, byte(End))
			dst = AppendUint(dst, sid)
		}
	case Credit:
		dst = append(dst, 0x93, byte(Credit))
		dst = AppendUint(dst, sid)
		dst = AppendUint(dst, f.Increment)
	case Cancel, Reset, Close:
		v := f.Code
		if t == Cancel {
			v = f.Reason
		}
		if f.Message != "" {
			dst = append(dst, 0x94, byte(t))
		} else {
			dst = append(dst, 0x93, byte(t))
		}
		dst = AppendUint(dst, sid)
		dst = AppendUint(dst, v)
		if f.Message != "" {
			dst = AppendStr(dst, f.Message)
		}
	case Limit:
		dst = append(dst, 0x93, byte(Limit))
		dst = AppendUint(dst, sid)
		dst = AppendUint(dst, f.MaxBody)
	case Ping, Pong:
		dst = append(dst, 0x93, byte(t), 0)
		dst = AppendUint(dst, f.Opaque)
	case Drain:
		dst = append(dst, 0x93, byte(Drain), 0)
		dst = AppendUint(dst, f.TimeoutMs)
	case Retire:
		if f.Message != "" {
			dst = append(dst, 0x93, byte(Retire), 0)
			dst = AppendStr(dst, f.Message)
		} else {
			dst = append(dst, 0x92, byte(Retire), 0)
		}
	case Error:
		dst = append(dst, 0x94, byte(Error), 0)
		dst = AppendUint(dst, f.Code)
		dst = AppendStr(dst, f.Message)
	case Message:
		dst = append(dst, 0x94, byte(Message))
		dst = AppendUint(dst, sid)
		dst = AppendUint(dst, f.Flags)
		dst = AppendBin(dst, f.Data)
	default:
		panic("protocol: AppendFrame: unknown frame type " + t.String())
	}
	return EndFrame(dst, at)
}

// DataOverhead bounds what AppendDataHeader adds to n data bytes, so that a
// sender can size data to fit the peer's max_frame: a BODY or MESSAGE frame
// with n <= maxFrame - DataOverhead data bytes always fits. (The header is at
// most 20 bytes with its length prefix for BODY, 21 for a MESSAGE whose
// stream id needs 8 bytes; the payload, which max_frame limits, at most 17.)
const DataOverhead = 20

// AppendDataHeader appends the length prefix and everything of a BODY frame
// ([4, sid, bin]) or MESSAGE frame ([15, sid, flags, bin]) except the n data
// bytes themselves, which the caller writes right after (for example with
// writev): zero-copy bodies. flags is ignored for BODY. It panics for other types.
func AppendDataHeader(dst []byte, t Type, sid uint64, flags uint64, n int) []byte {
	dst, at := BeginFrame(dst)
	switch t {
	case Body:
		dst = append(dst, 0x93, byte(Body))
		dst = AppendUint(dst, sid)
	case Message:
		dst = append(dst, 0x94, byte(Message))
		dst = AppendUint(dst, sid)
		dst = AppendUint(dst, flags)
	default:
		panic("protocol: AppendDataHeader: " + t.String() + " is not BODY or MESSAGE")
	}
	dst = AppendBinHeader(dst, n)
	binary.BigEndian.PutUint32(dst[at:], uint32(len(dst)-at-4+n))
	return dst
}
