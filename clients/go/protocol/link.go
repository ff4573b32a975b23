package protocol

import "strconv"

// Role is the side of a link a Link plays.
type Role uint8

// Roles.
const (
	RoleWorker  Role = 1
	RoleGateway Role = 2
)

func (r Role) String() string {
	switch r {
	case RoleWorker:
		return "worker"
	case RoleGateway:
		return "gateway"
	}
	return "role " + strconv.Itoa(int(r))
}

const (
	stateNew uint8 = iota
	stateReady
	stateDraining
	stateFailed
)

// Request side of a stream.
const (
	reqOpen uint8 = iota
	reqEnded
)

// Response side of a stream.
const (
	respWaiting uint8 = iota
	respSending
	respEnded
	respWS // RESPONSE 101: MESSAGE frames until CLOSE
)

// WebSocket condition of a stream.
const (
	wsNone    uint8 = iota // an ordinary stream (or a refused WebSocket)
	wsWaiting              // REQUEST body=3, no RESPONSE yet
	wsOpen                 // accepted (RESPONSE 101)
)

// Stream is the protocol state of one open stream. Its accessors are read-only;
// the state changes through Link.Recv and Link.Send.
type Stream struct {
	id               uint64
	sendWin, recvWin int64
	req, resp, ws    uint8
	bodyMode         uint8
	msgIn, msgOut    int8 // text bit (0/1) of the message being received/sent; -1 between messages
	closed           bool
	hasLimit         bool
	limit            uint64
	reqBytes         uint64
	respBytes        uint64
	user             any
}

// SetUser attaches v to the stream (a runtime's own per-stream state), so
// that one lookup finds both; User returns it.
func (s *Stream) SetUser(v any) { s.user = v }

// User returns what SetUser attached, or nil.
func (s *Stream) User() any { return s.user }

// ID returns the stream id.
func (s *Stream) ID() uint64 { return s.id }

// SendWindow returns the body (or message) bytes this side may still send.
func (s *Stream) SendWindow() int64 { return s.sendWin }

// RecvWindow returns the body (or message) bytes the peer may still send.
func (s *Stream) RecvWindow() int64 { return s.recvWin }

// RequestEnded reports whether the request side is ENDED (REQUEST body=0, or END).
func (s *Stream) RequestEnded() bool { return s.req == reqEnded }

// ResponseStarted reports whether the RESPONSE was sent (worker) or received (gateway).
func (s *Stream) ResponseStarted() bool { return s.resp != respWaiting }

// WebSocketOpen reports whether the stream is an accepted WebSocket (after RESPONSE 101).
func (s *Stream) WebSocketOpen() bool { return s.ws == wsOpen }

// WebSocketWaiting reports whether the stream is a WebSocket handshake (REQUEST
// body=3) not yet answered.
func (s *Stream) WebSocketWaiting() bool { return s.ws == wsWaiting }

// BodyMode returns the REQUEST's body mode.
func (s *Stream) BodyMode() uint64 { return uint64(s.bodyMode) }

// Limit returns the last LIMIT max_body sent or received on the stream.
func (s *Stream) Limit() (uint64, bool) { return s.limit, s.hasLimit }

// RequestBytes returns the request body (or gateway → worker message) bytes
// that passed so far.
func (s *Stream) RequestBytes() uint64 { return s.reqBytes }

// ResponseBytes returns the response body (or worker → gateway message) bytes
// that passed so far.
func (s *Stream) ResponseBytes() uint64 { return s.respBytes }

// Closed reports whether the stream has closed (it is then no longer in the link's table).
func (s *Stream) Closed() bool { return s.closed }

// Link is the link state machine of PROTOCOL.md 4-7 for either role: the
// handshake, the stream table, each stream's state and its credit. It is not
// safe for concurrent use.
type Link struct {
	role      Role
	gw        bool
	cap       int
	state     uint8
	local     Settings
	peer      Settings
	hasLocal  bool
	hasPeer   bool
	retiring  bool
	drain     bool
	websocket bool
	maxOpen   int
	highest   uint64
	streams   map[uint64]*Stream
	recycle   bool
	free      []*Stream // closed streams' structs, reused when recycle is set
	failed    error
}

// NewLink returns a fresh link (nothing sent or received yet) for role.
// maxStreams is the local stream table size: for a worker the max_streams of
// its HELLO, for a gateway its own cap (MaxStreams for none); 0 means MaxStreams.
func NewLink(role Role, maxStreams int) *Link {
	if role != RoleWorker && role != RoleGateway {
		panic("protocol: NewLink: invalid role")
	}
	if maxStreams == 0 {
		maxStreams = MaxStreams
	}
	if maxStreams < 1 || maxStreams > MaxStreams {
		panic("protocol: NewLink: maxStreams " + strconv.Itoa(maxStreams) + " out of range")
	}
	hint := maxStreams
	if hint > 64 {
		hint = 64
	}
	return &Link{
		role:    role,
		gw:      role == RoleGateway,
		cap:     maxStreams,
		maxOpen: maxStreams,
		streams: make(map[uint64]*Stream, hint),
	}
}

// Role returns the link's role.
func (l *Link) Role() Role { return l.role }

// Ready reports whether both HELLOs were exchanged.
func (l *Link) Ready() bool { return l.hasLocal && l.hasPeer }

// Failed returns the link error (received, sent as ERROR, or found by Recv), or nil.
func (l *Link) Failed() error { return l.failed }

// LocalHello returns the settings of the HELLO this side sent, nil until sent.
func (l *Link) LocalHello() *Settings {
	if !l.hasLocal {
		return nil
	}
	return &l.local
}

// PeerHello returns the settings of the HELLO the peer sent, nil until received.
func (l *Link) PeerHello() *Settings {
	if !l.hasPeer {
		return nil
	}
	return &l.peer
}

// WebSocket reports whether both HELLOs announced websocket.
func (l *Link) WebSocket() bool { return l.websocket }

// Draining reports whether DRAIN was sent or received.
func (l *Link) Draining() bool { return l.drain }

// Retired reports whether RETIRE was sent or received.
func (l *Link) Retired() bool { return l.retiring }

// OpenStreams returns the number of open streams.
func (l *Link) OpenStreams() int { return len(l.streams) }

// MaxOpen returns how many streams may be open at once: the smaller of the
// local table size and the max_streams of the HELLOs exchanged so far.
func (l *Link) MaxOpen() int { return l.maxOpen }

// PeerMaxFrame returns the peer's max_frame (DefaultFrame until its HELLO says otherwise).
func (l *Link) PeerMaxFrame() int {
	if l.hasPeer && l.peer.Has&KeyMaxFrame != 0 {
		return int(l.peer.MaxFrame)
	}
	return DefaultFrame
}

// LocalMaxFrame returns this side's max_frame (DefaultFrame unless its HELLO says otherwise).
func (l *Link) LocalMaxFrame() int {
	if l.hasLocal && l.local.Has&KeyMaxFrame != 0 {
		return int(l.local.MaxFrame)
	}
	return DefaultFrame
}

// Stream returns the open stream sid, or nil.
func (l *Link) Stream(sid uint64) *Stream { return l.streams[sid] }

// EachStream calls fn for every open stream (in no particular order) until fn
// returns false. fn must not call Recv or Send.
func (l *Link) EachStream(fn func(*Stream) bool) {
	for _, s := range l.streams {
		if !fn(s) {
			return
		}
	}
}

// HighestID returns the largest stream id opened on the link so far.
func (l *Link) HighestID() uint64 { return l.highest }

// CanOpen reports whether a gateway may send a REQUEST now (the link is ready,
// neither draining nor retired, and below its stream limit).
func (l *Link) CanOpen() bool {
	return l.gw && l.state == stateReady && !l.retiring && len(l.streams) < l.maxOpen && l.highest < MaxID
}

// Fail marks the link failed with err (for example after an I/O error or a
// timeout found by the runtime) unless it already failed.
func (l *Link) Fail(err *LinkError) {
	l.state = stateFailed
	if l.failed == nil {
		l.failed = err
	}
}

func (l *Link) ready() bool { return l.state == stateReady || l.state == stateDraining }

func (l *Link) fail(c Code, msg string) error {
	l.state = stateFailed
	l.failed = &LinkError{c, msg}
	return l.failed
}

// maySend: the frame types each role sends.
func maySend(gw bool, t Type) bool {
	switch t {
	case Request, Cancel, Drain:
		return gw
	case Response, Reset, Limit, Retire:
		return !gw
	}
	return t >= 1 && t <= typeMax
}

func roleName(gw bool) string {
	if gw {
		return "gateway"
	}
	return "worker"
}

func helloWS(s *Settings) bool { return s.Has&KeyWebSocket != 0 && s.WebSocket }

// wsOnly: frames that exist only on links with WebSockets (PROTOCOL.md 5.2).
func wsOnly(f *Frame) bool {
	switch f.Type {
	case Message, Close:
		return true
	case Request:
		return f.BodyMode == BodyWebSocket
	case Response:
		return f.Status == 101
	}
	return false
}

// msgFlagsFor: the MESSAGE flags a sender (gateway or not) may use.
func msgFlagsFor(gw bool, flags uint64) bool {
	switch flags {
	case MsgPing:
		return !gw
	case MsgPong:
		return gw
	}
	return flags <= MsgText|MsgMore
}

func (l *Link) updateHellos() {
	m := l.cap
	if l.hasLocal && l.local.Has&KeyMaxStreams != 0 && l.local.MaxStreams < uint64(m) {
		m = int(l.local.MaxStreams)
	}
	if l.hasPeer && l.peer.Has&KeyMaxStreams != 0 && l.peer.MaxStreams < uint64(m) {
		m = int(l.peer.MaxStreams)
	}
	l.maxOpen = m
	l.websocket = l.hasLocal && l.hasPeer && helloWS(&l.local) && helloWS(&l.peer)
}

func (l *Link) workerHello() *Settings {
	if l.gw {
		return &l.peer
	}
	return &l.local
}

func (l *Link) gatewayHello() *Settings {
	if l.gw {
		return &l.local
	}
	return &l.peer
}

// SetRecycle makes the link reuse the Stream of a closed stream for a new
// one (no allocation per stream). A *Stream from Stream is then valid only
// until that stream closes: look it up again rather than keep it.
func (l *Link) SetRecycle(on bool) { l.recycle = on }

func (l *Link) open(id uint64, bodyMode uint64) {
	var s *Stream
	if n := len(l.free); n > 0 {
		s = l.free[n-1]
		l.free = l.free[:n-1]
		*s = Stream{id: id, bodyMode: uint8(bodyMode), msgIn: -1, msgOut: -1}
	} else {
		s = &Stream{id: id, bodyMode: uint8(bodyMode), msgIn: -1, msgOut: -1}
	}
	var reqWin int64
	if bodyMode != BodyOnCredit {
		reqWin = int64(l.workerHello().Window)
	}
	respWin := int64(l.gatewayHello().Window)
	// A WebSocket stream has no request body, but its request side counts as
	// OPEN until the stream closes, so that CREDIT and LIMIT apply (5.2).
	if bodyMode == BodyNone {
		s.req = reqEnded
	}
	if bodyMode == BodyWebSocket {
		s.ws = wsWaiting
	}
	if l.gw {
		s.sendWin, s.recvWin = reqWin, respWin
	} else {
		s.sendWin, s.recvWin = respWin, reqWin
	}
	l.streams[id] = s
	if id > l.highest {
		l.highest = id
	}
}

func (l *Link) close(s *Stream) {
	s.closed = true
	delete(l.streams, s.id)
	if l.recycle && len(l.free) < 1024 {
		l.free = append(l.free, s)
	}
}

// Recv applies a received, decoded frame. ignored is true when the frame is
// well-formed but dropped (a frame for a closed stream, a CREDIT or LIMIT the
// gateway receives after the request side ended). A non-nil err is a
// *LinkError: the link is failed from then on and further calls return the
// same error. A received ERROR is accepted (nil) and fails the link: Failed
// then reports the peer's code.
func (l *Link) Recv(f *Frame) (ignored bool, err error) {
	if l.failed != nil {
		return false, l.failed
	}
	t := f.Type
	if !maySend(!l.gw, t) {
		return false, l.fail(UnexpectedFrame, t.String()+" from the "+roleName(!l.gw))
	}
	switch t {
	case Error:
		l.Fail(&LinkError{CodeOf(f.Code), "the " + roleName(!l.gw) + " sent ERROR: " + f.Message})
		return false, nil
	case Hello:
		return false, l.recvHello(f)
	}
	if !l.ready() {
		return false, l.fail(UnexpectedFrame, t.String()+" before the handshake")
	}
	if !l.websocket && wsOnly(f) {
		return false, l.fail(UnexpectedFrame, t.String()+" of a WebSocket on a link without websocket")
	}
	// MESSAGE flags by direction and the PING size are field checks
	// (PROTOCOL.md 3.14), made before the stream's state.
	if t == Message && (!msgFlagsFor(!l.gw, f.Flags) || f.Flags == MsgPing && len(f.Data) > PingMax) {
		return false, l.fail(FieldValue, "MESSAGE flags "+strconv.FormatUint(f.Flags, 10)+" with "+
			strconv.Itoa(len(f.Data))+" bytes from the "+roleName(!l.gw))
	}
	switch t {
	case Ping, Pong:
		return false, nil
	case Drain:
		if l.drain {
			return false, l.fail(UnexpectedFrame, "a second DRAIN")
		}
		l.drain = true
		l.state = stateDraining
		return false, nil
	case Retire:
		l.retiring = true
		return false, nil
	}
	return l.recvStream(f)
}

func (l *Link) recvHello(f *Frame) error {
	if l.hasPeer {
		return l.fail(UnexpectedFrame, "a second HELLO")
	}
	if !l.gw && !l.hasLocal {
		return l.fail(UnexpectedFrame, "the gateway spoke first")
	}
	if f.Version != Version {
		return l.fail(VersionMismatch, "version "+strconv.FormatUint(f.Version, 10)+"; this side speaks 1")
	}
	need := KeyWindow
	if l.gw {
		need |= KeyMaxStreams
	}
	if f.Settings.Has&need != need {
		return l.fail(FieldType, "HELLO lacks a required key (window, max_streams)")
	}
	l.peer = f.Settings
	l.hasPeer = true
	l.updateHellos()
	if !l.gw {
		l.state = stateReady
	}
	return nil
}

func (l *Link) recvStream(f *Frame) (bool, error) {
	id := f.Stream
	t := f.Type
	if t == Request { // worker side
		if l.state == stateDraining {
			return false, l.fail(UnexpectedFrame, "REQUEST after DRAIN")
		}
		if id <= l.highest {
			return false, l.fail(StreamState, "REQUEST for stream "+strconv.FormatUint(id, 10)+
				", not above "+strconv.FormatUint(l.highest, 10))
		}
		if len(l.streams) >= l.maxOpen {
			return false, l.fail(TooManyStreams, "more than "+strconv.Itoa(l.maxOpen)+" open streams")
		}
		l.open(id, f.BodyMode)
		return false, nil
	}
	s := l.streams[id]
	if s == nil {
		if id <= l.highest { // closed: a late frame, crossed on the wire
			return true, nil
		}
		return false, l.fail(StreamState, t.String()+" for unused stream "+strconv.FormatUint(id, 10))
	}
	gw := l.gw
	switch t {
	case Response:
		if s.resp != respWaiting {
			return false, l.fail(StreamState, "RESPONSE twice")
		}
		if f.Status == 101 {
			if s.ws != wsWaiting || f.BodyMode != BodyNone {
				return false, l.fail(StreamState, "RESPONSE 101 on a stream that is not a waiting WebSocket, or with a body")
			}
			s.resp = respWS
			s.ws = wsOpen
			return false, nil
		}
		s.ws = wsNone // a refusal is an ordinary response
		if f.BodyMode == BodyNone {
			s.resp = respEnded
			l.close(s)
		} else {
			s.resp = respSending
		}
	case Body:
		n := int64(len(f.Data))
		if gw && s.resp != respSending || !gw && (s.req != reqOpen || s.bodyMode == BodyWebSocket) {
			return false, l.fail(StreamState, "BODY on stream "+strconv.FormatUint(id, 10)+" in the wrong state")
		}
		if n > s.recvWin {
			return false, l.fail(FlowControl, "BODY of "+strconv.FormatInt(n, 10)+" bytes, window "+strconv.FormatInt(s.recvWin, 10))
		}
		s.recvWin -= n
		if gw {
			s.respBytes += uint64(n)
		} else {
			s.reqBytes += uint64(n)
		}
	case End:
		if gw {
			if s.resp != respSending {
				return false, l.fail(StreamState, "END before RESPONSE or after END")
			}
			s.resp = respEnded
			l.close(s)
		} else {
			if s.req != reqOpen || s.bodyMode == BodyWebSocket {
				return false, l.fail(StreamState, "END of an ended request or on a WebSocket")
			}
			s.req = reqEnded
		}
	case Message:
		if s.ws != wsOpen {
			return false, l.fail(StreamState, "MESSAGE on stream "+strconv.FormatUint(id, 10)+" before RESPONSE 101 or not a WebSocket")
		}
		fl := f.Flags
		if fl >= MsgPing {
			return false, nil // control: no credit, not part of a message
		}
		n := int64(len(f.Data))
		if s.msgIn >= 0 && int8(fl&MsgText) != s.msgIn {
			return false, l.fail(StreamState, "MESSAGE piece with a different text bit")
		}
		if n > s.recvWin {
			return false, l.fail(FlowControl, "MESSAGE of "+strconv.FormatInt(n, 10)+" bytes, window "+strconv.FormatInt(s.recvWin, 10))
		}
		s.recvWin -= n
		s.msgIn = nextMsg(fl)
		if gw {
			s.respBytes += uint64(n)
		} else {
			s.reqBytes += uint64(n)
		}
	case Close:
		if s.ws != wsOpen {
			return false, l.fail(StreamState, "CLOSE on stream "+strconv.FormatUint(id, 10)+" before RESPONSE 101 or not a WebSocket")
		}
		l.close(s)
	case Credit:
		if gw && s.req == reqEnded {
			return true, nil
		}
		if f.Increment > uint64(MaxWindow-s.sendWin) {
			return false, l.fail(FlowControl, "CREDIT above 2^31-1")
		}
		s.sendWin += int64(f.Increment)
	case Limit:
		if s.req == reqEnded {
			return true, nil
		}
		s.limit, s.hasLimit = f.MaxBody, true
	case Cancel, Reset:
		l.close(s)
	default:
		return false, l.fail(UnexpectedFrame, t.String())
	}
	return false, nil
}

// nextMsg: the text bit of the message still going on after a data piece with flags fl, or -1.
func nextMsg(fl uint64) int8 {
	if fl&MsgMore != 0 {
		return int8(fl & MsgText)
	}
	return -1
}

// Send checks and applies a frame this side is about to send (the caller
// encodes and writes it). It returns an error wrapping ErrRejected when the
// frame is illegal now (a caller mistake: a frame before the handshake allows
// it, a frame of the other role, BODY beyond the send window, a frame for a
// stream that is not open, a field out of its range...); the state is then
// unchanged. Sending ERROR is always allowed and fails the link.
func (l *Link) Send(f *Frame) error {
	t := f.Type
	if t == Error {
		l.Fail(&LinkError{CodeOf(f.Code), "this side sent ERROR: " + f.Message})
		return nil
	}
	if l.failed != nil {
		return rejected("the link has failed")
	}
	if !maySend(l.gw, t) {
		return rejected("a " + roleName(l.gw) + " does not send " + t.String())
	}
	if msg := checkFields(f); msg != "" {
		return rejected(t.String() + ": " + msg)
	}
	if t == Hello {
		return l.sendHello(f)
	}
	if !l.ready() {
		return rejected(t.String() + " before the handshake is complete")
	}
	if !l.websocket && wsOnly(f) {
		return rejected(t.String() + " of a WebSocket on a link without websocket")
	}
	switch t {
	case Ping, Pong:
		return nil
	case Drain:
		if l.drain {
			return rejected("DRAIN twice")
		}
		l.drain = true
		l.state = stateDraining
		return nil
	case Retire:
		l.retiring = true
		return nil
	}
	return l.sendStream(f)
}

func (l *Link) sendHello(f *Frame) error {
	if l.hasLocal {
		return rejected("HELLO twice")
	}
	if l.gw && !l.hasPeer {
		return rejected("the gateway's HELLO before the worker's")
	}
	s := &f.Settings
	need := KeyWindow
	if !l.gw {
		need |= KeyMaxStreams
	}
	if s.Has&need != need {
		return rejected("HELLO lacks a required key (window, max_streams)")
	}
	// The gateway answers websocket only to a worker that announced it (5.2).
	if l.gw && helloWS(s) && !helloWS(&l.peer) {
		return rejected("HELLO websocket: true to a worker that did not announce it")
	}
	l.local = *s
	l.hasLocal = true
	l.updateHellos()
	if l.gw {
		l.state = stateReady
	}
	return nil
}

func (l *Link) sendStream(f *Frame) error {
	id := f.Stream
	gw := l.gw
	t := f.Type
	if t == Request {
		if !l.CanOpen() {
			return rejected("REQUEST not allowed now (draining, retired, or at the stream limit)")
		}
		if id <= l.highest {
			return rejected("REQUEST for stream " + strconv.FormatUint(id, 10) + ", not above " + strconv.FormatUint(l.highest, 10))
		}
		l.open(id, f.BodyMode)
		return nil
	}
	s := l.streams[id]
	if s == nil {
		return rejected(t.String() + ": stream " + strconv.FormatUint(id, 10) + " is not open")
	}
	switch t {
	case Response:
		if s.resp != respWaiting {
			return rejected("RESPONSE twice")
		}
		if f.Status == 101 {
			if s.ws != wsWaiting || f.BodyMode != BodyNone {
				return rejected("RESPONSE 101 only accepts a WebSocket stream, without body")
			}
			s.resp = respWS
			s.ws = wsOpen
			return nil
		}
		s.ws = wsNone
		if f.BodyMode == BodyNone {
			s.resp = respEnded
			l.close(s)
		} else {
			s.resp = respSending
		}
	case Body:
		n := int64(len(f.Data))
		if gw && (s.req != reqOpen || s.bodyMode == BodyWebSocket) || !gw && s.resp != respSending {
			return rejected("BODY not allowed now")
		}
		if n > s.sendWin {
			return rejected("BODY of " + strconv.FormatInt(n, 10) + " bytes beyond the window (" + strconv.FormatInt(s.sendWin, 10) + ")")
		}
		s.sendWin -= n
		if gw {
			s.reqBytes += uint64(n)
		} else {
			s.respBytes += uint64(n)
		}
	case End:
		if gw {
			if s.req != reqOpen || s.bodyMode == BodyWebSocket {
				return rejected("END not allowed now")
			}
			s.req = reqEnded
		} else {
			if s.resp != respSending {
				return rejected("END not allowed now")
			}
			s.resp = respEnded
			l.close(s)
		}
	case Message:
		fl := f.Flags
		n := int64(len(f.Data))
		if s.ws != wsOpen {
			return rejected("MESSAGE on a stream that is not an open WebSocket")
		}
		if !msgFlagsFor(gw, fl) {
			return rejected("MESSAGE flags " + strconv.FormatUint(fl, 10) + " not sent by a " + roleName(gw))
		}
		if fl >= MsgPing {
			if fl == MsgPing && n > PingMax {
				return rejected("MESSAGE PING of " + strconv.FormatInt(n, 10) + " bytes")
			}
			return nil
		}
		if s.msgOut >= 0 && int8(fl&MsgText) != s.msgOut {
			return rejected("MESSAGE piece with a different text bit")
		}
		if n > s.sendWin {
			return rejected("MESSAGE of " + strconv.FormatInt(n, 10) + " bytes beyond the window (" + strconv.FormatInt(s.sendWin, 10) + ")")
		}
		s.sendWin -= n
		s.msgOut = nextMsg(fl)
		if gw {
			s.reqBytes += uint64(n)
		} else {
			s.respBytes += uint64(n)
		}
	case Close:
		if s.ws != wsOpen {
			return rejected("CLOSE on a stream that is not an open WebSocket")
		}
		l.close(s)
	case Credit:
		if f.Increment > uint64(MaxWindow-s.recvWin) {
			return rejected("CREDIT would take the window above 2^31-1")
		}
		s.recvWin += int64(f.Increment)
	case Limit:
		s.limit, s.hasLimit = f.MaxBody, true
	case Cancel, Reset:
		l.close(s)
	default:
		return rejected(t.String())
	}
	return nil
}

// checkFields checks the ranges of a frame's fields as a receiver's decoder
// would (PROTOCOL.md 3), so that a frame the link accepts for sending is one
// the peer can decode. It returns "" when they are fine.
func checkFields(f *Frame) string {
	switch f.Type {
	case Hello:
		s := &f.Settings
		switch {
		case f.Version > MaxID:
			return "version above 2^53-1"
		case f.Version != Version:
			return "version " + strconv.FormatUint(f.Version, 10) + "; this side speaks 1"
		case s.Has&KeyPid != 0 && s.Pid > MaxID, s.Has&KeyWorkerID != 0 && s.WorkerID > MaxID:
			return "pid or worker_id above 2^53-1"
		case s.Has&KeyMaxStreams != 0 && (s.MaxStreams < 1 || s.MaxStreams > MaxStreams):
			return "max_streams out of 1..65535"
		case s.Has&KeyWindow != 0 && s.Window > MaxWindow:
			return "window above 2^31-1"
		case s.Has&KeyMaxFrame != 0 && (s.MaxFrame < MinFrame || s.MaxFrame > MaxFrame):
			return "max_frame out of 16384..16777215"
		}
	case Request:
		switch {
		case f.Stream == 0 || f.Stream > MaxID:
			return "stream id out of 1..2^53-1"
		case len(f.Method) == 0 || len(f.Target) == 0:
			return "empty method or target"
		case f.Version != 10 && f.Version != 11 && f.Version != 20:
			return "HTTP version " + strconv.FormatUint(f.Version, 10)
		case f.BodyMode > BodyWebSocket:
			return "body mode " + strconv.FormatUint(f.BodyMode, 10)
		}
		return checkHeaders(f.Headers)
	case Response:
		switch {
		case f.Status != 101 && (f.Status < 200 || f.Status > 599):
			return "status " + strconv.FormatUint(f.Status, 10)
		case f.BodyMode > BodyFollows:
			return "body mode " + strconv.FormatUint(f.BodyMode, 10)
		}
		return checkHeaders(f.Headers)
	case End:
		return checkHeaders(f.Headers)
	case Credit:
		if f.Increment < 1 || f.Increment > MaxWindow {
			return "increment out of 1..2^31-1"
		}
	case Cancel:
		if f.Reason > MaxID {
			return "reason above 2^53-1"
		}
	case Reset, Error:
		if f.Code > MaxID {
			return "code above 2^53-1"
		}
	case Limit:
		if f.MaxBody > MaxID {
			return "max_body above 2^53-1"
		}
	case Ping, Pong:
		if f.Opaque > MaxID {
			return "opaque above 2^53-1"
		}
	case Drain:
		if f.TimeoutMs > MaxID {
			return "timeout_ms above 2^53-1"
		}
	case Message:
		if !validMsgFlags(f.Flags) {
			return "flags " + strconv.FormatUint(f.Flags, 10)
		}
	case Close:
		if f.Code < CloseMin || f.Code > CloseMax {
			return "code out of 1000..4999"
		}
	}
	return ""
}

func checkHeaders(h []Header) string {
	for i := range h {
		if len(h[i].Name) == 0 {
			return "empty header name"
		}
	}
	return ""
}
