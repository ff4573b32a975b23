package sluice

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"sluice.dev/go/protocol"
)

// Message types of ReadMessage and WriteMessage (the values gorilla/websocket
// uses, so code moving from it keeps its constants' meaning).
const (
	TextMessage   = 1
	BinaryMessage = 2
)

// WebSocket close codes (RFC 6455 section 7.4.1).
const (
	CloseNormalClosure    = 1000
	CloseGoingAway        = 1001
	CloseProtocolError    = 1002
	CloseUnsupportedData  = 1003
	CloseNoStatusReceived = 1005
	CloseAbnormalClosure  = 1006
	CloseInvalidPayload   = 1007
	ClosePolicyViolation  = 1008
	CloseMessageTooBig    = 1009
	CloseInternalError    = 1011
)

// ErrNotWebSocket is what Accept returns for a request that is not a
// WebSocket opening handshake (it has then answered 426 Upgrade Required).
var ErrNotWebSocket = errors.New("sluice: not a WebSocket handshake")

// CloseError is how a WebSocket ended: ReadMessage and WriteMessage return
// it once the WebSocket is closed. Code is the client's close code (1005:
// it sent none), 1006 when the connection was lost without a close frame
// (or the gateway cancelled the stream, or the link was lost), or the code
// this side closed with.
type CloseError struct {
	Code int
	Text string
}

func (e *CloseError) Error() string {
	if e.Text != "" {
		return fmt.Sprintf("websocket: close %d: %s", e.Code, e.Text)
	}
	return fmt.Sprintf("websocket: close %d", e.Code)
}

// Is makes errors.Is(err, ErrStreamClosed) true for a closed WebSocket.
func (e *CloseError) Is(target error) bool { return target == ErrStreamClosed }

// AcceptOptions tune Accept; the zero value is fine.
type AcceptOptions struct {
	// Subprotocols the server speaks, in its order of preference; the first
	// one the client offered is chosen (Subprotocol reports it).
	Subprotocols []string
	// ReadLimit is the largest message taken from the client (sent to the
	// gateway as the stream's LIMIT: a larger message closes the WebSocket
	// with 1009). 0: the gateway's --ws-max-message (1 MiB by default).
	ReadLimit int64
}

// IsWebSocket reports whether r is a WebSocket opening handshake the gateway
// has checked and handed to this worker (HTTP/1.1 Upgrade or HTTP/2 extended
// CONNECT alike).
func IsWebSocket(r *http.Request) bool {
	s, _ := r.Context().Value(streamKey{}).(*stream)
	return s != nil && s.bodyMode == protocol.BodyWebSocket
}

// A WebSocket is one accepted WebSocket. The gateway does the RFC 6455
// framing (masking, fragments, UTF-8 checks, the client's pings, the
// closing handshake); this side sends and receives whole messages, within
// the stream's credit in both directions. One goroutine may read while
// another writes; writes are serialised.
type WebSocket struct {
	s           *stream
	subprotocol string

	// guarded by the worker's mu
	partial  []byte
	text     bool
	msgs     []wsMsg
	credit   int64 // bytes taken (read, or buffered in a partial message) not yet credited
	closeErr error // set once the WebSocket is over
	onPong   func(data []byte)

	writeMu sync.Mutex
}

type wsMsg struct {
	typ  int // TextMessage, BinaryMessage, or 0 for a pong
	data []byte
	owed int // bytes of it not yet credited
}

// Accept accepts the WebSocket handshake r (answering 101, or HTTP/2's 200)
// with the headers set on w so far (Set-Cookie...). The WebSocket lives as
// long as the handler: when the handler returns, it is closed with 1000 if
// it is still open. For a request that is not a WebSocket handshake Accept
// answers 426 Upgrade Required and returns ErrNotWebSocket.
func Accept(w http.ResponseWriter, r *http.Request, opts *AcceptOptions) (*WebSocket, error) {
	s, _ := r.Context().Value(streamKey{}).(*stream)
	if s == nil || s.bodyMode != protocol.BodyWebSocket {
		w.Header().Set("Upgrade", "websocket")
		w.Header().Set("Sec-WebSocket-Version", "13")
		http.Error(w, "426 Upgrade Required: this endpoint takes WebSockets", http.StatusUpgradeRequired)
		return nil, ErrNotWebSocket
	}
	if opts == nil {
		opts = &AcceptOptions{}
	}
	ws := &WebSocket{s: s}
	if len(opts.Subprotocols) > 0 {
		offered := offeredProtocols(r.Header["Sec-Websocket-Protocol"])
	pick:
		for _, p := range opts.Subprotocols {
			for _, o := range offered {
				if o == p {
					ws.subprotocol = p
					break pick
				}
			}
		}
	}
	wk := s.w
	wk.mu.Lock()
	defer wk.mu.Unlock()
	rw := &s.rw
	if s.err != nil {
		return nil, s.err
	}
	if rw.committed || rw.wroteHeader {
		return nil, errors.New("sluice: Accept after the response was started")
	}
	if ws.subprotocol != "" {
		rw.header.Set("Sec-WebSocket-Protocol", ws.subprotocol)
	} else {
		rw.header.Del("Sec-WebSocket-Protocol")
	}
	if opts.ReadLimit > 0 {
		f := &s.w.f
		f.Reset()
		f.Type, f.Stream, f.MaxBody = protocol.Limit, s.id, uint64(opts.ReadLimit)
		if err := s.sendLocked(f); err != nil {
			return nil, err
		}
	}
	head, n := appendHeaders(nil, rw.header)
	f := &s.w.f
	f.Reset()
	f.Type, f.Stream, f.Status, f.BodyMode = protocol.Response, s.id, 101, protocol.BodyNone
	if err := wk.link.Send(f); err != nil {
		return nil, err
	}
	out, at := wk.beginResponse(s.id, http.StatusSwitchingProtocols, n, len(head))
	wk.endResponse(append(out, head...), at, protocol.BodyNone)
	rw.wroteHeader, rw.committed, rw.ended, rw.status = true, true, true, http.StatusSwitchingProtocols
	s.ws = ws
	return ws, nil
}

func offeredProtocols(lines []string) []string {
	var out []string
	for _, line := range lines {
		for _, p := range strings.Split(line, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
	}
	return out
}

// Subprotocol is the subprotocol chosen by Accept ("" for none).
func (ws *WebSocket) Subprotocol() string { return ws.subprotocol }

// Request is the handshake request's context-carrying *http.Request.
func (ws *WebSocket) Request() *http.Request { return ws.s.req }

// SetPongHandler sets a function called (from ReadMessage) with the data
// of each pong that answers a Ping.
func (ws *WebSocket) SetPongHandler(h func(data []byte)) {
	ws.s.w.mu.Lock()
	ws.onPong = h
	ws.s.w.mu.Unlock()
}

// SetReadDeadline bounds ReadMessage (zero: no deadline); past it,
// ReadMessage returns os.ErrDeadlineExceeded and the WebSocket stays open.
func (ws *WebSocket) SetReadDeadline(t time.Time) error {
	s := ws.s
	s.w.mu.Lock()
	s.readDL = t
	s.cond.Broadcast()
	s.w.mu.Unlock()
	return nil
}

// SetWriteDeadline bounds a WriteMessage waiting for credit (zero: none).
func (ws *WebSocket) SetWriteDeadline(t time.Time) error {
	s := ws.s
	s.w.mu.Lock()
	s.writeDL = t
	s.cond.Broadcast()
	s.w.mu.Unlock()
	return nil
}

// ReadMessage returns the next whole message: its type (TextMessage or
// BinaryMessage) and data (valid UTF-8 for text: the gateway checks). Once
// the WebSocket is closed it returns a *CloseError. Reading grants the
// gateway credit for more: a handler that stops reading stops the client.
func (ws *WebSocket) ReadMessage() (int, []byte, error) {
	s := ws.s
	w := s.w
	w.mu.Lock()
	for {
		for len(ws.msgs) == 0 {
			if ws.closeErr != nil {
				err := ws.closeErr
				w.mu.Unlock()
				return 0, nil, err
			}
			if err := s.wait(s.readDL, &s.rdTimer); err != nil {
				w.mu.Unlock()
				return 0, nil, err
			}
		}
		m := ws.msgs[0]
		ws.msgs[0] = wsMsg{}
		ws.msgs = ws.msgs[1:]
		ws.grantLocked(int64(m.owed))
		if m.typ != 0 {
			w.mu.Unlock()
			return m.typ, m.data, nil
		}
		if h := ws.onPong; h != nil {
			w.mu.Unlock()
			h(m.data)
			w.mu.Lock()
		}
	}
}

// recv takes one MESSAGE piece from the reader (mu held; data is copied).
func (ws *WebSocket) recv(flags uint64, data []byte) {
	if ws.closeErr != nil {
		return
	}
	if flags == protocol.MsgPong {
		ws.msgs = append(ws.msgs, wsMsg{data: append([]byte(nil), data...)})
		ws.s.cond.Broadcast()
		return
	}
	if len(ws.partial) == 0 {
		ws.text = flags&protocol.MsgText != 0
	}
	if flags&protocol.MsgMore != 0 {
		// a piece of a longer message: taken now, so that a message larger
		// than the window can complete (PROTOCOL.md 5.2)
		ws.partial = append(ws.partial, data...)
		ws.grantLocked(int64(len(data)))
		return
	}
	var msg []byte
	if len(ws.partial) == 0 {
		msg = append(make([]byte, 0, len(data)), data...)
	} else {
		msg = append(ws.partial, data...)
		ws.partial = nil
	}
	typ := BinaryMessage
	if ws.text {
		typ = TextMessage
	}
	ws.msgs = append(ws.msgs, wsMsg{typ: typ, data: msg, owed: len(data)})
	ws.s.cond.Broadcast()
}

// grantLocked credits n taken bytes, batched to half the window.
func (ws *WebSocket) grantLocked(n int64) {
	ws.credit += n
	s := ws.s
	win := int64(s.w.cfg.initialWindow)
	if ws.credit == 0 || ws.credit < win/2 || ws.closeErr != nil {
		return
	}
	f := &s.w.f
	f.Reset()
	f.Type, f.Stream, f.Increment = protocol.Credit, s.id, uint64(ws.credit)
	if s.w.link.Send(f) == nil {
		s.w.emit(f)
	}
	ws.credit = 0
}

// WriteMessage sends one message (TextMessage data must be valid UTF-8:
// the gateway closes the WebSocket with 1011 otherwise). It waits for credit
// when the client is not taking the bytes; data may be reused on return.
func (ws *WebSocket) WriteMessage(messageType int, data []byte) error {
	var flags uint64
	switch messageType {
	case TextMessage:
		if !utf8.Valid(data) {
			return errors.New("sluice: WriteMessage: text message is not valid UTF-8")
		}
		flags = protocol.MsgText
	case BinaryMessage:
	default:
		return fmt.Errorf("sluice: WriteMessage: message type %d is neither TextMessage nor BinaryMessage", messageType)
	}
	ws.writeMu.Lock()
	defer ws.writeMu.Unlock()
	s := ws.s
	w := s.w
	w.mu.Lock()
	defer w.mu.Unlock()
	for first := true; first || len(data) > 0; first = false {
		if ws.closeErr != nil {
			return ws.closeErr
		}
		ls := w.link.Stream(s.id)
		if ls == nil || w.werr != nil {
			return ErrStreamClosed
		}
		n := int64(len(data))
		if n > 0 {
			win := ls.SendWindow()
			if win <= 0 {
				if err := s.wait(s.writeDL, &s.wrTimer); err != nil {
					return err
				}
				first = true // nothing sent yet in this round
				continue
			}
			n = min(n, win, int64(w.maxChunk))
		}
		fl := flags
		if n < int64(len(data)) {
			fl |= protocol.MsgMore
		}
		f := &s.w.f
		f.Reset()
		f.Type, f.Stream, f.Flags, f.Data = protocol.Message, s.id, fl, data[:n]
		if err := w.link.Send(f); err != nil {
			return err
		}
		if seq := w.emitPiece(protocol.Message, s.id, fl, data[:n]); seq != 0 {
			if err := w.waitFlushed(seq); err != nil {
				return err
			}
		}
		data = data[n:]
	}
	return nil
}

// Ping asks the gateway to ping the client with data (at most 125 bytes);
// the client's pong reaches the pong handler. The gateway pings idle
// clients itself (--ws-ping-interval), so most programs need not.
func (ws *WebSocket) Ping(data []byte) error {
	if len(data) > protocol.PingMax {
		return fmt.Errorf("sluice: Ping: %d bytes of data, at most %d", len(data), protocol.PingMax)
	}
	s := ws.s
	s.w.mu.Lock()
	defer s.w.mu.Unlock()
	if ws.closeErr != nil {
		return ws.closeErr
	}
	f := &s.w.f
	f.Reset()
	f.Type, f.Stream, f.Flags, f.Data = protocol.Message, s.id, protocol.MsgPing, data
	if err := s.w.link.Send(f); err != nil {
		return err
	}
	s.w.emitPiece(protocol.Message, s.id, protocol.MsgPing, data)
	return nil
}

// Close closes the WebSocket with code (1000..4999) and reason (at most 123
// bytes of UTF-8): the gateway sends the client a close frame after the
// messages written before, and completes the closing handshake. Closing
// twice is harmless.
func (ws *WebSocket) Close(code int, reason string) error {
	if code < protocol.CloseMin || code > protocol.CloseMax {
		return fmt.Errorf("sluice: Close: code %d outside 1000..4999", code)
	}
	s := ws.s
	s.w.mu.Lock()
	defer s.w.mu.Unlock()
	return ws.closeLocked(code, reason)
}

func (ws *WebSocket) closeLocked(code int, reason string) error {
	if ws.closeErr != nil {
		return nil
	}
	s := ws.s
	ws.closeErr = &CloseError{Code: code, Text: reason}
	ws.msgs, ws.partial = nil, nil
	s.cond.Broadcast()
	if s.err != nil || s.respEnded {
		return nil
	}
	if len(reason) > 123 {
		reason = reason[:123]
		for !utf8.ValidString(reason) {
			reason = reason[:len(reason)-1]
		}
	}
	f := &s.w.f
	f.Reset()
	f.Type, f.Stream, f.Code = protocol.Close, s.id, uint64(code)
	if reason != "" {
		f.Message, f.HasMessage = reason, true
	}
	err := s.w.link.Send(f)
	if err == nil {
		s.w.emit(f)
	}
	s.closedLocked()
	return err
}

// closed: the gateway closed the WebSocket (CLOSE), cancelled the stream or
// the link went away (mu held).
func (ws *WebSocket) closed(err error) {
	if ws.closeErr == nil {
		ws.closeErr = err
	}
	ws.partial = nil
	ws.s.cond.Broadcast()
}
