// Package protocol is the sans-I/O core of the sluice worker protocol,
// version 1 (protocol/PROTOCOL.md in the sluice repository): a strict
// frame decoder with the exact error precedence of the spec, the canonical
// encoder, and the link state machine for either role (worker or gateway).
//
// Nothing here does I/O, starts goroutines or keeps timers: bytes in,
// frames out; frames in, bytes out. The codec is hand-written rather than
// built on a generic MessagePack library because the protocol needs what
// such libraries do not give: the first failing check named with its link
// error code in a fixed precedence, a nesting-depth limit, str values taken
// as raw bytes, canonical (shortest) output, and zero-copy aliasing of the
// input (see internal/msgpbench for the measurements).
package protocol

import (
	"errors"
	"strconv"
)

// Protocol limits (PROTOCOL.md 9).
const (
	Version      = 1
	MinFrame     = 16384
	MaxFrame     = 16777215
	DefaultFrame = 1048576
	HelloMax     = 16384
	MaxWindow    = 1<<31 - 1
	MaxStreams   = 65535
	MaxID        = 1<<53 - 1
	MaxHeaders   = 1024
	MaxDepth     = 8
	PingMax      = 125

	// CloseMin and CloseMax bound a CLOSE code (PROTOCOL.md 3.15).
	CloseMin = 1000
	CloseMax = 4999
)

// Type is a frame type (PROTOCOL.md 3).
type Type uint8

// Frame types.
const (
	Hello Type = iota + 1
	Request
	Response
	Body
	End
	Credit
	Cancel
	Reset
	Limit
	Ping
	Pong
	Drain
	Retire
	Error
	Message
	Close
)

// typeMax is the largest frame type of version 1.
const typeMax = Close

var typeNames = [...]string{"", "HELLO", "REQUEST", "RESPONSE", "BODY", "END", "CREDIT",
	"CANCEL", "RESET", "LIMIT", "PING", "PONG", "DRAIN", "RETIRE", "ERROR", "MESSAGE", "CLOSE"}

// String returns the frame type's name as in the spec ("HELLO", "REQUEST", ...).
func (t Type) String() string {
	if t >= 1 && t <= typeMax {
		return typeNames[t]
	}
	return "type " + strconv.Itoa(int(t))
}

// TypeByName returns the frame type named name ("HELLO", ...).
func TypeByName(name string) (Type, bool) {
	for i := 1; i < len(typeNames); i++ {
		if typeNames[i] == name {
			return Type(i), true
		}
	}
	return 0, false
}

// linkFrame: the frame types whose stream id is 0.
var linkFrame = [typeMax + 1]bool{Hello: true, Ping: true, Pong: true, Drain: true, Retire: true, Error: true}

// IsLinkFrame reports whether frames of type t carry stream id 0.
func (t Type) IsLinkFrame() bool { return t <= typeMax && linkFrame[t] }

// Code is a link error code (PROTOCOL.md 8).
type Code uint8

// Link error codes.
const (
	Malformed Code = iota + 1
	FrameSize
	UnknownType
	FieldType
	FieldValue
	TooManyHeaders
	UnexpectedFrame
	StreamState
	FlowControl
	TooManyStreams
	VersionMismatch
	Auth
	Truncated
	Internal
	Timeout
)

var codeNames = [...]string{"", "malformed", "frame_size", "unknown_type", "field_type",
	"field_value", "too_many_headers", "unexpected_frame", "stream_state", "flow_control",
	"too_many_streams", "version", "auth", "truncated", "internal", "timeout"}

// String returns the code's name as in the spec ("malformed", ..., "timeout");
// an unknown code is "code N".
func (c Code) String() string {
	if c >= 1 && int(c) < len(codeNames) {
		return codeNames[c]
	}
	return "code " + strconv.Itoa(int(c))
}

// CodeByName returns the link error code named name ("malformed", ...).
func CodeByName(name string) (Code, bool) {
	for i := 1; i < len(codeNames); i++ {
		if codeNames[i] == name {
			return Code(i), true
		}
	}
	return 0, false
}

// CodeOf turns a wire error code (an ERROR frame's code) into a Code;
// a value beyond the range of Code is Internal (receivers accept unknown codes).
func CodeOf(v uint64) Code {
	if v == 0 || v > 255 {
		return Internal
	}
	return Code(v)
}

// LinkError is a link error (PROTOCOL.md 8).
type LinkError struct {
	Code Code
	Msg  string
}

// Error returns "<name>: <msg>" (or just the name without a message).
func (e *LinkError) Error() string {
	if e.Msg == "" {
		return e.Code.String()
	}
	return e.Code.String() + ": " + e.Msg
}

// ErrRejected is what a Link's Send returns (wrapped, with the reason) when the
// local side may not send a frame now: a caller mistake. errors.Is(err, ErrRejected)
// holds for such errors.
var ErrRejected = errors.New("rejected")

type rejectError struct{ msg string }

func (e *rejectError) Error() string        { return "rejected: " + e.msg }
func (e *rejectError) Is(target error) bool { return target == ErrRejected }
func (e *rejectError) Unwrap() error        { return ErrRejected }

func rejected(msg string) error { return &rejectError{msg} }

// REQUEST body modes (RESPONSE uses BodyNone and BodyFollows).
const (
	BodyNone      = 0
	BodyFollows   = 1
	BodyOnCredit  = 2
	BodyWebSocket = 3
)

// CANCEL reasons (PROTOCOL.md 3.7); receivers treat unknown ones as CancelInternal.
const (
	CancelClientClosed = iota + 1
	CancelTimeout
	CancelShutdown
	CancelBodyTooLarge
	CancelBadBody
	CancelBodyTimeout
	CancelInvalidResponse
	CancelInternal
)

// RESET codes (PROTOCOL.md 3.8); receivers treat unknown ones as ResetInternal.
const (
	ResetInternal   = 1
	ResetRefused    = 2
	ResetOverloaded = 3
)

// MESSAGE flags (PROTOCOL.md 3.14): bit 0 text, bit 1 more; 4 PING, 8 PONG.
const (
	MsgBinary = 0
	MsgText   = 1
	MsgMore   = 2
	MsgPing   = 4
	MsgPong   = 8
)

// validMsgFlags: the MESSAGE flags values of version 1.
func validMsgFlags(v uint64) bool { return v <= 4 || v == 8 }

// Header is one header (or trailer) field: [name, value] on the wire.
type Header struct{ Name, Value []byte }

// Addr is an address: [host, port] on the wire.
type Addr struct {
	Host string
	Port uint16
}

// Key is a set of HELLO settings keys.
type Key uint16

// HELLO settings keys, in canonical order.
const (
	KeyPid Key = 1 << iota
	KeyLib
	KeyMaxStreams
	KeyWindow
	KeyMaxFrame
	KeyToken
	KeyWorkerID
	KeyPool
	KeyServer
	KeyWebSocket
)

// Settings are a HELLO's settings. Has records which keys were present
// (decoded) or are to be sent (encoded); WebSocket is sent only when true.
type Settings struct {
	Pid, MaxStreams, Window, MaxFrame, WorkerID uint64
	Lib, Token, Pool, Server                    string
	WebSocket                                   bool
	Has                                         Key
}

// Frame is one frame, a flat union: only the fields of Type are meaningful.
//
// Field use by type: HELLO Version, Settings; REQUEST Method, Target, Version
// (10, 11, 20), Headers, Client, Server, Scheme, BodyMode; RESPONSE Status,
// Headers, BodyMode; BODY Data; END Headers (trailers); CREDIT Increment;
// CANCEL Reason, Message; RESET Code, Message; LIMIT MaxBody; PING and PONG
// Opaque; DRAIN TimeoutMs; RETIRE Message (its reason); ERROR Code, Message;
// MESSAGE Flags, Data; CLOSE Code, Message (its reason).
type Frame struct {
	Type     Type
	Stream   uint64
	Version  uint64   // HELLO version; REQUEST HTTP version (10, 11, 20)
	Settings Settings // HELLO

	Method, Target []byte   // REQUEST
	Headers        []Header // REQUEST, RESPONSE headers; END trailers (nil/empty = none)
	Client, Server Addr     // REQUEST
	Scheme         string   // REQUEST
	BodyMode       uint64   // REQUEST body, RESPONSE body
	Status         uint64   // RESPONSE
	Data           []byte   // BODY, MESSAGE
	Flags          uint64   // MESSAGE
	Increment      uint64   // CREDIT
	Reason         uint64   // CANCEL reason
	Code           uint64   // RESET code, ERROR code, CLOSE code
	MaxBody        uint64   // LIMIT
	Opaque         uint64   // PING, PONG
	TimeoutMs      uint64   // DRAIN
	Message        string   // CANCEL/RESET message, RETIRE reason, ERROR message, CLOSE reason
	HasMessage     bool     // the optional text is present (ERROR: always true when decoded)
}

// Reset zeroes f but keeps the capacity of Headers.
func (f *Frame) Reset() {
	h := f.Headers[:0]
	*f = Frame{}
	f.Headers = h
}
