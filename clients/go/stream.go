package sluice

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"time"

	"sluice.dev/go/protocol"
)

// CancelError is the cause of a request context the gateway cancelled
// (context.Cause(r.Context())): the client went away, a timeout, shutdown...
type CancelError struct {
	Reason  uint64 // protocol.CancelClientClosed, ...
	Message string
}

var cancelNames = [...]string{"", "client_closed", "timeout", "shutdown", "body_too_large",
	"bad_body", "body_timeout", "invalid_response", "internal"}

func (e *CancelError) Error() string {
	name := "internal"
	if e.Reason < uint64(len(cancelNames)) && e.Reason > 0 {
		name = cancelNames[e.Reason]
	}
	if e.Message != "" {
		return fmt.Sprintf("sluice: stream cancelled by the gateway: %s (%s)", name, e.Message)
	}
	return "sluice: stream cancelled by the gateway: " + name
}

// Is makes errors.Is(err, ErrStreamClosed) true for a cancelled stream.
func (e *CancelError) Is(target error) bool { return target == ErrStreamClosed }

// stream is one request/response exchange; its fields are guarded by the
// worker's mu.
type stream struct {
	w        *glink
	id       uint64
	cond     sync.Cond
	ctx      reqCtx
	req      *http.Request
	rw       response
	body     body
	server   protocol.Addr
	ws       *WebSocket // after Accept
	bodyMode uint64
	err      error // set once the stream is gone (cancelled, link lost)

	// request body: chunks received and not yet read
	queue     [][]byte
	queued    int
	reqEnded  bool
	trailers  []hpair
	started   bool  // the handler has read (credit beyond the initial window flows)
	target    int64 // request-body bytes this stream may hold (window)
	extra     int64 // share of the worker's body budget
	bodyDone  bool  // the handler closed the body
	readDL    time.Time
	writeDL   time.Time
	rdTimer   *time.Timer
	wrTimer   *time.Timer
	respEnded bool // END or RESET sent: the link closed the stream
}

type hpair struct{ name, value string }

func copyHeaders(hs []protocol.Header) []hpair {
	out := make([]hpair, len(hs))
	for i, h := range hs {
		out[i] = hpair{string(h.Name), string(h.Value)}
	}
	return out
}

type streamKey struct{}

func (w *glink) newStream(f *protocol.Frame) *stream {
	s := &stream{w: w, id: f.Stream, bodyMode: f.BodyMode, target: int64(w.cfg.initialWindow)}
	s.cond.L = &w.mu
	s.reqEnded = f.BodyMode == protocol.BodyNone
	return s
}

// push queues request-body bytes (a copy: the read buffer is reused).
func (s *stream) push(data []byte) {
	if s.bodyDone {
		return
	}
	c := make([]byte, len(data))
	copy(c, data)
	s.queue = append(s.queue, c)
	s.queued += len(c)
	s.cond.Broadcast()
}

// kill ends the stream from the gateway's side or the link's (mu held).
func (s *stream) kill(err error) {
	if s.err != nil {
		return
	}
	s.err = err
	s.queue, s.queued = nil, 0
	if s.ws != nil {
		s.ws.closed(&CloseError{Code: CloseAbnormalClosure, Text: err.Error()})
	}
	s.ctx.cancelLocked(err, true)
	s.cond.Broadcast()
}

// sendLocked checks a frame with the link and queues it (mu held).
func (s *stream) sendLocked(f *protocol.Frame) error {
	if s.err != nil {
		return s.err
	}
	if s.respEnded {
		return ErrStreamClosed
	}
	if err := s.w.link.Send(f); err != nil {
		return err
	}
	s.w.emit(f)
	if f.Type == protocol.End || f.Type == protocol.Reset || (f.Type == protocol.Response && f.BodyMode == protocol.BodyNone) {
		s.closedLocked()
	}
	return nil
}

// closedLocked: the link closed the stream on our side (END, RESET).
func (s *stream) closedLocked() {
	s.respEnded = true
	s.queue, s.queued = nil, 0
	w := s.w
	w.syncOpen()
	w.maybeFinishDrain()
}

// credit tops the gateway's window up to the stream's target once the
// handler has consumed half of it (PROTOCOL.md 6: batched grants).
func (s *stream) credit(force bool) {
	if s.reqEnded || s.err != nil || s.respEnded || s.bodyDone {
		return
	}
	ls := s.w.link.Stream(s.id)
	if ls == nil {
		return
	}
	avail := ls.RecvWindow() + int64(s.queued)
	gap := s.target - avail
	if gap <= 0 || (!force && gap < s.target/2) {
		return
	}
	f := &s.w.f
	f.Reset()
	f.Type, f.Stream, f.Increment = protocol.Credit, s.id, uint64(gap)
	if s.w.link.Send(f) == nil {
		s.w.emit(f)
	}
}

// startReading: the handler's first read widens the window to the
// configured one within the link's budget, and for a body held back
// (Expect: 100-continue) grants the first credit.
func (s *stream) startReading() {
	s.started = true
	w := s.w
	want := int64(w.cfg.window) - int64(w.cfg.initialWindow)
	if want > 0 && w.extra+want <= w.cfg.bodyBudget {
		w.extra += want
		s.extra = want
		s.target += want
	}
	if s.target == 0 {
		s.target = 1 << 10 // a zero window still lets the body through, slowly
	}
	s.credit(true)
}

// release gives back the stream's share of the body budget (mu held).
func (s *stream) release() {
	s.w.extra -= s.extra
	s.extra = 0
	for _, t := range []*time.Timer{s.rdTimer, s.wrTimer} {
		if t != nil {
			t.Stop()
		}
	}
}

// wait blocks on the stream's condition until woken, honouring deadline dl
// (zero: none; *t is the timer that wakes it). It returns
// os.ErrDeadlineExceeded once dl has passed.
func (s *stream) wait(dl time.Time, t **time.Timer) error {
	if !dl.IsZero() {
		d := time.Until(dl)
		if d <= 0 {
			return os.ErrDeadlineExceeded
		}
		if *t == nil {
			*t = time.AfterFunc(d, func() {
				s.w.mu.Lock()
				s.cond.Broadcast()
				s.w.mu.Unlock()
			})
		} else {
			(*t).Reset(d)
		}
	}
	s.cond.Wait()
	if !dl.IsZero() && !time.Now().Before(dl) {
		return os.ErrDeadlineExceeded
	}
	return nil
}

// body is the request's Body: reading it grants credit.
type body struct {
	s   *stream
	req *http.Request
}

func (b *body) Read(p []byte) (int, error) {
	s := b.s
	w := s.w
	w.mu.Lock()
	defer w.mu.Unlock()
	if s.bodyDone {
		return 0, http.ErrBodyReadAfterClose
	}
	if !s.started && !s.reqEnded {
		s.startReading()
	}
	for s.queued == 0 {
		if s.err != nil {
			return 0, s.err
		}
		if s.reqEnded {
			b.fillTrailers()
			return 0, io.EOF
		}
		if s.respEnded {
			return 0, ErrStreamClosed
		}
		if len(p) == 0 {
			return 0, nil
		}
		if err := s.wait(s.readDL, &s.rdTimer); err != nil {
			return 0, err
		}
	}
	n := 0
	for n < len(p) && len(s.queue) > 0 {
		c := copy(p[n:], s.queue[0])
		n += c
		if c == len(s.queue[0]) {
			s.queue[0] = nil
			s.queue = s.queue[1:]
		} else {
			s.queue[0] = s.queue[0][c:]
		}
	}
	s.queued -= n
	s.credit(false)
	return n, nil
}

func (b *body) fillTrailers() {
	if len(b.s.trailers) == 0 {
		return
	}
	r := b.req
	if r.Trailer == nil {
		r.Trailer = make(http.Header, len(b.s.trailers))
	}
	for _, t := range b.s.trailers {
		k := http.CanonicalHeaderKey(t.name)
		r.Trailer[k] = append(r.Trailer[k], t.value)
	}
	b.s.trailers = nil
}

// Close stops the body: nothing more is read or credited.
func (b *body) Close() error {
	s := b.s
	s.w.mu.Lock()
	s.bodyDone = true
	s.queue, s.queued = nil, 0
	s.cond.Broadcast()
	s.w.mu.Unlock()
	return nil
}

// SetBodyLimit sends LIMIT for r's stream: the gateway then accepts a request
// body of up to n bytes (replacing its --max-body for this request; it may
// cap the value). Call it before reading the body. It fails for a request
// that did not come through sluice.
func SetBodyLimit(r *http.Request, n int64) error {
	s, _ := r.Context().Value(streamKey{}).(*stream)
	if s == nil {
		return fmt.Errorf("sluice: SetBodyLimit: not a sluice request")
	}
	if n < 0 || n > protocol.MaxID {
		return fmt.Errorf("sluice: SetBodyLimit: %d outside 0..2^53-1", n)
	}
	s.w.mu.Lock()
	defer s.w.mu.Unlock()
	if s.reqEnded {
		return nil // ignored after the request side ended (PROTOCOL.md 3.9)
	}
	f := &s.w.f
	f.Reset()
	f.Type, f.Stream, f.MaxBody = protocol.Limit, s.id, uint64(n)
	return s.sendLocked(f)
}
