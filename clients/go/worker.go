package sluice

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"sluice.dev/go/protocol"
)

// ErrLinkClosed is returned by Serve when the gateway closed the link
// without DRAIN (it died or was killed): the worker should exit with an
// error status (PROTOCOL.md 10.5).
var ErrLinkClosed = errors.New("sluice: the gateway closed the link without DRAIN")

// ErrStreamClosed is what a handler's Read, Write or Flush returns once its
// stream is gone: the gateway cancelled it (the client went away, a timeout)
// or the link was lost. The request's context is cancelled with the reason.
var ErrStreamClosed = errors.New("sluice: stream closed")

// A Worker serves an http.Handler on its links to the gateway: one link
// to one Unix socket (what a spawned worker gets), or in remote mode one
// link to every gateway listed (PROTOCOL.md 10.6). Most programs call
// Serve instead of using a Worker directly.
type Worker struct {
	cfg     *config
	handler http.Handler
	srv     *http.Server // for http.ServerContextKey only
	single  *glink       // the one link outside remote mode

	work chan *stream // to idle handler goroutines (shared by the links)
	idle atomic.Int32
	open atomic.Int64 // streams open across all links (PROTOCOL.md 10.6, 4)

	mu       sync.Mutex
	links    map[*glink]struct{} // remote mode: the links connecting or up
	slots    map[string]*slot    // remote mode: by address
	wg       sync.WaitGroup      // remote mode: the slots and the resolver
	stopping bool                // remote mode: retiring (signal, Shutdown, auth)
	closeNow bool                // remote mode: Close or a second signal
	authErr  error               // remote mode: the ERROR auth that stopped the worker
	stopCtx  context.Context     // remote mode: cancelled when stopping
	stopFn   context.CancelFunc
	done     chan struct{}
}

// glink is one link to a gateway: its connection, protocol state, output
// queue and writer.
type glink struct {
	owner   *Worker
	cfg     *config
	handler http.Handler
	srv     *http.Server
	addr    string // where it goes, for the log
	conn    net.Conn
	dec     *protocol.Decoder

	mu       sync.Mutex
	link     *protocol.Link
	f        protocol.Frame // scratch frame for the streams' sends (mu held)
	extra    int64          // request-body credit granted beyond the initial windows
	maxChunk int            // largest BODY data the gateway accepts in one frame
	counted  int            // this link's share of owner.open
	onReady  func()         // called (mu held) when the handshake completes
	pinging  bool           // remote mode: liveness (PROTOCOL.md 10.6, 8)
	lastRecv atomic.Int64   // when pinging: the last read's time (UnixNano)
	hsEnd    time.Time      // when pinging: the handshake's deadline
	ended    chan struct{}  // closed when run returns
	pings    uint64         // PINGs sent

	// output, guarded by mu: frames are appended to out; segs holds what
	// goes before out[outMark:] (earlier frames and zero-copy body slices)
	out     []byte
	outMark int
	segs    net.Buffers
	sealed  [][]byte  // full output chunks queued (returned to chunkPool once written)
	handed  []*[]byte // response buffers queued as they are (back to bufPool once written)
	enq     uint64    // bytes queued so far
	flushed uint64    // bytes written so far
	wcond   sync.Cond
	fcond   sync.Cond
	werr    error // the link can no longer be written
	closing bool  // the writer closes the connection once the queue is empty
	orderly bool  // the close follows DRAIN (Serve returns nil)
	dropped bool  // closed before or during its handshake (remote mode stopping)

	draining bool
	retiring bool
	timer    *time.Timer // DRAIN or shutdown deadline
	deadline time.Time
	closeErr error // why the worker closed the link itself before DRAIN
	addrs    [256]struct {
		host string
		port uint16
		s    string
	} // remoteAddr's cache
}

// NewWorker makes a worker serving h with the given options; Serve connects it.
func NewWorker(h http.Handler, opts ...Option) (*Worker, error) {
	cfg, err := newConfig(opts)
	if err != nil {
		return nil, err
	}
	if h == nil {
		h = http.DefaultServeMux
	}
	w := &Worker{
		cfg:     cfg,
		handler: h,
		done:    make(chan struct{}),
		links:   map[*glink]struct{}{},
	}
	w.srv = &http.Server{Handler: h, ErrorLog: cfg.errorLog}
	w.work = make(chan *stream)
	w.stopCtx, w.stopFn = context.WithCancel(context.Background())
	if !cfg.remote && cfg.addrErr == nil {
		w.single = w.newLink(cfg.endpoints[0].String())
	}
	return w, nil
}

func (w *Worker) newLink(addr string) *glink {
	l := &glink{
		owner:   w,
		cfg:     w.cfg,
		handler: w.handler,
		srv:     w.srv,
		addr:    addr,
		dec:     protocol.NewDecoder(w.cfg.maxFrame),
		link:    protocol.NewLink(protocol.RoleWorker, w.cfg.maxStreams),
		pinging: w.cfg.remote,
		ended:   make(chan struct{}),
	}
	l.link.SetRecycle(true) // the runtime never keeps a *protocol.Stream
	l.wcond.L = &l.mu
	l.fcond.L = &l.mu
	l.maxChunk = protocol.DefaultFrame - protocol.DataOverhead
	l.out = getChunk()
	return l
}

// Serve connects to the gateway at $SLUICE_SOCKET (or WithSocket), and serves
// h until the gateway drains the link. After that orderly close it ends the
// process with status 0, once the handlers have finished (WithExit(false)
// returns nil instead). Otherwise it returns ErrLinkClosed when the gateway
// went away without DRAIN, or the link error: a spawned worker then exits
// with status 1, which log.Fatal(sluice.Serve(h)) does.
//
// Unless WithSignals(false), SIGTERM or SIGINT retires the worker
// gracefully (RETIRE, then in-flight requests finish), and a second one
// closes the link at once.
//
// In remote mode (several addresses, or a tcp: or tls: one; PROTOCOL.md
// 10.6) it attaches to every gateway, reconnects lost links, and returns
// only after a stop (a signal, Shutdown, Close): nil once every link is
// drained, the ERROR auth when a gateway refused the token.
func Serve(h http.Handler, opts ...Option) error {
	w, err := NewWorker(h, opts...)
	if err != nil {
		return err
	}
	if err := w.Serve(); err != nil || !w.cfg.exit {
		return err
	}
	os.Exit(0)
	return nil
}

// ListenAndServe serves h through the gateway when SLUICE_SOCKET is set (the
// gateway started this process), and otherwise as a plain net/http server on
// addr: the same binary runs behind sluice or on its own.
func ListenAndServe(addr string, h http.Handler, opts ...Option) error {
	if os.Getenv("SLUICE_SOCKET") == "" {
		return http.ListenAndServe(addr, h)
	}
	return Serve(h, opts...)
}

// Serve connects and serves; see the package-level Serve.
func (w *Worker) Serve() error {
	defer func() {
		close(w.done)
		close(w.work) // idle handler goroutines end
	}()
	if w.cfg.addrErr != nil {
		return w.cfg.addrErr
	}
	if w.cfg.remote {
		return w.serveRemote()
	}
	ep := w.cfg.endpoints[0]
	d := net.Dialer{Timeout: w.cfg.handshakeTimeout}
	conn, err := d.Dial("unix", ep.path)
	if err != nil {
		return fmt.Errorf("sluice: connect to the gateway: %w", err)
	}
	if w.cfg.signals {
		defer w.handleSignals()()
	}
	return w.single.run(conn)
}

// handleSignals watches SIGTERM and SIGINT until the returned func is called.
func (w *Worker) handleSignals() func() {
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, syscall.SIGTERM, syscall.SIGINT)
	stop := make(chan struct{})
	go w.watchSignals(ch, stop)
	return func() { signal.Stop(ch); close(stop) }
}

// run serves the link on conn until it closes; nil after an orderly close
// following DRAIN.
func (w *glink) run(conn net.Conn) error {
	defer close(w.ended)
	w.mu.Lock()
	w.conn = conn
	dropped := w.dropped
	w.mu.Unlock()
	if dropped {
		conn.Close()
		return errDropped
	}
	if w.hsEnd.IsZero() {
		_ = conn.SetReadDeadline(time.Now().Add(w.cfg.handshakeTimeout))
	} else {
		_ = conn.SetReadDeadline(w.hsEnd)
	}

	hello := protocol.Frame{Type: protocol.Hello, Version: protocol.Version}
	st := &hello.Settings
	st.Pid, st.Lib = uint64(os.Getpid()), Lib
	st.MaxStreams, st.Window = uint64(w.cfg.maxStreams), uint64(w.cfg.initialWindow)
	st.Has = protocol.KeyPid | protocol.KeyLib | protocol.KeyMaxStreams | protocol.KeyWindow
	if w.cfg.maxFrame != protocol.DefaultFrame {
		st.MaxFrame = uint64(w.cfg.maxFrame)
		st.Has |= protocol.KeyMaxFrame
	}
	if w.cfg.token != "" {
		st.Token = w.cfg.token
		st.Has |= protocol.KeyToken
	}
	if w.cfg.websocket {
		st.WebSocket = true
		st.Has |= protocol.KeyWebSocket
	}
	w.mu.Lock()
	if err := w.link.Send(&hello); err != nil {
		w.mu.Unlock()
		conn.Close()
		return err
	}
	w.emit(&hello)
	w.mu.Unlock()

	writerDone := make(chan struct{})
	go func() { w.writeLoop(); close(writerDone) }()

	err := w.readLoop()
	w.mu.Lock()
	if err == nil && !w.orderly {
		err = ErrLinkClosed
	}
	if err == ErrLinkClosed && w.closeErr != nil {
		err = w.closeErr
	}
	w.lose(err)
	w.owner.open.Add(int64(-w.counted))
	w.counted = 0
	w.closing = true // the writer sends what is queued (an ERROR), then closes
	w.wcond.Broadcast()
	if w.timer != nil {
		w.timer.Stop()
	}
	w.mu.Unlock()
	_ = conn.SetWriteDeadline(time.Now().Add(2 * time.Second))
	select {
	case <-writerDone:
	case <-time.After(3 * time.Second):
	}
	conn.Close()
	<-writerDone
	return err
}

// Shutdown retires the worker as SIGTERM does: RETIRE, then the requests in
// flight finish and the gateway drains the link (every link, in remote
// mode). It returns when Serve has returned, or with ctx's error.
func (w *Worker) Shutdown(ctx context.Context) error {
	w.retire()
	select {
	case <-w.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close closes the link (every link, in remote mode) at once: open streams
// are lost (their clients get 502 or a cut response).
func (w *Worker) Close() error {
	if w.single != nil {
		return w.single.closeConn()
	}
	w.mu.Lock()
	w.closeNow = true
	w.stopLocked()
	ls := w.linkList()
	w.mu.Unlock()
	for _, l := range ls {
		l.drop()
	}
	return nil
}

// closeConn closes the link's connection, if it has one yet.
func (w *glink) closeConn() error {
	w.mu.Lock()
	conn := w.conn
	w.mu.Unlock()
	if conn != nil {
		return conn.Close()
	}
	return nil
}

func (w *Worker) watchSignals(ch chan os.Signal, stop chan struct{}) {
	select {
	case <-ch:
		w.retire()
	case <-stop:
		return
	}
	select {
	case <-ch:
		w.cfg.errorLog.Printf("second signal: closing the link now")
		w.Close()
	case <-stop:
	}
}

// retire stops the worker gracefully: RETIRE on its link, or in remote
// mode on every link that is up (the others are dropped).
func (w *Worker) retire() {
	if w.single != nil {
		w.single.retire()
		return
	}
	w.mu.Lock()
	w.stopLocked()
	w.mu.Unlock()
}

// retire sends RETIRE (PROTOCOL.md 10.4, 2) and bounds the wait for DRAIN
// and the streams by the shutdown timeout.
func (w *glink) retire() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.retiring || w.werr != nil {
		return
	}
	w.retiring = true
	if !w.link.Ready() {
		return // RETIRE goes out when the gateway's HELLO arrives
	}
	w.sendRetireLocked()
}

// sendRetireLocked sends RETIRE (unless draining already) and bounds the
// wait for DRAIN and the open streams by the shutdown timeout.
func (w *glink) sendRetireLocked() {
	if !w.draining {
		f := protocol.Frame{Type: protocol.Retire, Message: "shutdown", HasMessage: true}
		if w.link.Send(&f) == nil {
			w.emit(&f)
		}
	}
	w.armTimer(w.cfg.shutdownTimeout, "shutdown timeout")
}

// armTimer bounds the wait for the open streams: the earliest of the
// deadlines set (shutdown timeout, DRAIN's timeout) wins.
func (w *glink) armTimer(d time.Duration, why string) {
	deadline := time.Now().Add(d)
	if w.timer != nil && !deadline.Before(w.deadline) {
		return
	}
	if w.timer != nil {
		w.timer.Stop()
	}
	w.deadline = deadline
	w.timer = time.AfterFunc(d, func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		if n := w.openStreams(); n > 0 {
			w.cfg.errorLog.Printf("%s: closing the link with %d request(s) open", why, n)
		}
		if !w.draining {
			w.closeErr = fmt.Errorf("sluice: %s: closed the link before the gateway's DRAIN", why)
		}
		w.closeLocked(w.draining)
	})
}

// closeLocked makes the writer close the connection once everything queued
// is out; the reader then ends.
func (w *glink) closeLocked(orderly bool) {
	w.orderly = w.orderly || orderly
	w.closing = true
	w.wcond.Signal()
}

func (w *glink) maybeFinishDrain() {
	if w.draining && w.openStreams() == 0 {
		w.closeLocked(true)
	}
}

// ---- reading ----

func (w *glink) readLoop() error {
	buf := make([]byte, 64<<10)
	start, end := 0, 0
	var f protocol.Frame
	for {
		for start < end {
			n, err := w.dec.Parse(buf[start:end], &f)
			if err != nil {
				return w.fail(err)
			}
			if n == 0 {
				break
			}
			start += n
			if err := w.handle(&f); err != nil {
				return err
			}
		}
		if start == end {
			start, end = 0, 0
		}
		// room for the pending frame: its length is known (and checked
		// against max_frame by Parse) once 4 bytes are in
		need := 4096
		if end-start >= 4 {
			need = 4 + int(binary.BigEndian.Uint32(buf[start:])) - (end - start)
		}
		if len(buf)-end < need {
			if start > 0 && len(buf)-(end-start) >= need+(end-start) && end-start < len(buf)/2 {
				copy(buf, buf[start:end])
			} else {
				size := 2 * len(buf)
				for size-(end-start) < need {
					size *= 2
				}
				nb := make([]byte, size)
				copy(nb, buf[start:end])
				buf = nb
			}
			end -= start
			start = 0
		}
		n, err := w.conn.Read(buf[end:])
		end += n
		if w.pinging && n > 0 {
			w.lastRecv.Store(time.Now().UnixNano())
		}
		if err != nil {
			if n > 0 {
				continue // parse what came with the error first
			}
			w.mu.Lock()
			orderly, closing := w.orderly, w.closing
			w.mu.Unlock()
			if closing {
				if orderly {
					return nil
				}
				return ErrLinkClosed
			}
			if errors.Is(err, os.ErrDeadlineExceeded) && !w.ready() {
				return w.fail(&protocol.LinkError{Code: protocol.Timeout, Msg: "no HELLO from the gateway in time"})
			}
			if end > start {
				return &protocol.LinkError{Code: protocol.Truncated, Msg: "the link ended inside a frame"}
			}
			if err == io.EOF {
				return ErrLinkClosed
			}
			return fmt.Errorf("sluice: reading the link: %w", err)
		}
	}
}

// ready reports whether the handshake is complete (it takes mu).
func (w *glink) ready() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.link.Ready()
}

// fail reports a link error to the gateway (ERROR) and closes the link.
func (w *glink) fail(err error) error {
	var le *protocol.LinkError
	if !errors.As(err, &le) {
		le = &protocol.LinkError{Code: protocol.Internal, Msg: err.Error()}
	}
	w.mu.Lock()
	f := protocol.Frame{Type: protocol.Error, Code: uint64(le.Code), Message: le.Msg, HasMessage: true}
	w.emit(&f)
	w.closeLocked(false)
	w.mu.Unlock()
	w.cfg.errorLog.Printf("link error: %v", le)
	return le
}

// handle applies one received frame; f's bytes alias the read buffer, so
// whatever is kept is copied here.
func (w *glink) handle(f *protocol.Frame) error {
	w.mu.Lock()
	var s *stream // looked up first: CANCEL and CLOSE close it in the link
	if f.Stream != 0 && f.Type != protocol.Request {
		s = w.lookup(f.Stream)
	}
	ignored, err := w.link.Recv(f)
	if err != nil {
		w.mu.Unlock()
		return w.fail(err)
	}
	if ignored {
		w.mu.Unlock()
		return nil
	}
	switch f.Type {
	case protocol.Hello:
		w.maxChunk = w.link.PeerMaxFrame() - protocol.DataOverhead
		_ = w.conn.SetReadDeadline(time.Time{})
		if w.onReady != nil {
			w.onReady()
		}
		if w.pinging {
			w.lastRecv.Store(time.Now().UnixNano())
			go w.pingLoop()
		}
		if w.retiring { // a signal came during the handshake
			w.sendRetireLocked()
		}
	case protocol.Request:
		w.counted++
		if w.owner.open.Add(1) > int64(w.cfg.maxStreams) {
			// the other links hold the worker's capacity (PROTOCOL.md 10.6, 4)
			r := protocol.Frame{Type: protocol.Reset, Stream: f.Stream, Code: protocol.ResetOverloaded,
				Message: "the worker is serving max_streams requests", HasMessage: true}
			if w.link.Send(&r) == nil {
				w.emit(&r)
			}
			w.syncOpen()
			w.mu.Unlock()
			return nil
		}
		s := w.newStream(f)
		w.link.Stream(s.id).SetUser(s)
		w.mu.Unlock()
		s.req = w.buildRequest(f, s)
		w.dispatch(s)
		return nil
	case protocol.Body:
		if s != nil && len(f.Data) > 0 {
			s.push(f.Data)
		}
	case protocol.End:
		if s != nil {
			s.reqEnded = true
			if len(f.Headers) > 0 {
				s.trailers = copyHeaders(f.Headers)
			}
			s.cond.Broadcast()
		}
	case protocol.Credit:
		if s != nil {
			s.cond.Broadcast()
		}
	case protocol.Cancel:
		if s != nil {
			s.kill(&CancelError{Reason: f.Reason, Message: f.Message})
			w.maybeFinishDrain()
		}
	case protocol.Message:
		if s != nil && s.ws != nil {
			s.ws.recv(f.Flags, f.Data)
		}
	case protocol.Close:
		if s != nil {
			ce := &CloseError{Code: int(f.Code), Text: f.Message}
			if s.ws != nil {
				s.ws.closed(ce)
			}
			s.kill(ce)
			w.maybeFinishDrain()
		}
	case protocol.Ping:
		pong := protocol.Frame{Type: protocol.Pong, Opaque: f.Opaque}
		if w.link.Send(&pong) == nil {
			w.emit(&pong)
		}
	case protocol.Drain:
		w.draining = true
		w.armTimer(time.Duration(f.TimeoutMs)*time.Millisecond+2*time.Second, "drain timeout")
		w.maybeFinishDrain()
	case protocol.Error:
		// nothing more may be sent (PROTOCOL.md 3.13): drop what is queued
		le := &protocol.LinkError{Code: protocol.Code(f.Code), Msg: "from the gateway: " + f.Message}
		w.werr = le
		w.wcond.Broadcast()
		w.fcond.Broadcast()
		w.mu.Unlock()
		return le
	}
	w.syncOpen()
	w.mu.Unlock()
	return nil
}

// syncOpen brings the worker's count of open streams (all links) up to
// date with this link's (mu held).
func (w *glink) syncOpen() {
	if n := w.link.OpenStreams(); n != w.counted {
		w.owner.open.Add(int64(n - w.counted))
		w.counted = n
	}
}

// lose ends every stream after the link went away.
func (w *glink) lose(err error) {
	if err == nil {
		err = ErrLinkClosed
	}
	var open []*stream
	w.link.EachStream(func(ls *protocol.Stream) bool {
		if s, _ := ls.User().(*stream); s != nil {
			open = append(open, s)
			ls.SetUser(nil)
		}
		return true
	})
	for _, s := range open {
		s.kill(&streamLost{err})
	}
}

// lookup returns the runtime's state of an open stream (mu held).
func (w *glink) lookup(sid uint64) *stream {
	if ls := w.link.Stream(sid); ls != nil {
		s, _ := ls.User().(*stream)
		return s
	}
	return nil
}

// openStreams counts the streams open in the link (mu held).
func (w *glink) openStreams() int { return w.link.OpenStreams() }

// streamLost is why the streams of a lost link ended: ErrStreamClosed for
// their handlers' Read, Write and Flush (as documented), unwrapping to the
// link's error (ErrLinkClosed...), which is also their context's cause.
type streamLost struct{ err error }

func (e *streamLost) Error() string        { return e.err.Error() }
func (e *streamLost) Is(target error) bool { return target == ErrStreamClosed }
func (e *streamLost) Unwrap() error        { return e.err }

// ---- writing ----

// Output is gathered in chunks of outChunk bytes: a full one is sealed
// and a fresh one started, so a large batch is never copied to grow a
// buffer, and chunks are reused once written.
const outChunk = 64 << 10

var chunkPool = sync.Pool{New: func() any { b := make([]byte, 0, outChunk); return &b }}

func getChunk() []byte { return (*chunkPool.Get().(*[]byte))[:0] }

func putChunk(b []byte) {
	if cap(b) == outChunk {
		b = b[:0]
		chunkPool.Put(&b)
	}
}

// reserve seals the current chunk when n more bytes would not fit in it
// (appending would copy it into a larger one) and starts a fresh chunk.
func (w *glink) reserve(n int) {
	if len(w.out)+n <= cap(w.out) || len(w.out) == 0 {
		return
	}
	if len(w.out) > w.outMark {
		w.segs = append(w.segs, w.out[w.outMark:])
	}
	w.sealed = append(w.sealed, w.out)
	w.out, w.outMark = getChunk(), 0
}

// queued notes n more bytes queued and wakes the writer.
func (w *glink) queued(n int) {
	w.enq += uint64(n)
	w.wcond.Signal()
}

// emit appends one frame to the output queue (mu held).
func (w *glink) emit(f *protocol.Frame) {
	w.reserve(256)
	n := len(w.out)
	w.out = protocol.AppendFrame(w.out, f)
	w.queued(len(w.out) - n)
}

// emitData queues a BODY frame for data; a large slice is written from the
// caller's memory (no copy), and the returned sequence number tells when it
// has been written (0: it was copied).
func (w *glink) emitData(sid uint64, data []byte) uint64 {
	return w.emitPiece(protocol.Body, sid, 0, data)
}

// emitPiece is emitData for BODY or MESSAGE (with its flags).
func (w *glink) emitPiece(t protocol.Type, sid uint64, flags uint64, data []byte) uint64 {
	if len(data) < zeroCopyMin {
		w.reserve(protocol.DataOverhead + 1 + len(data))
	}
	n := len(w.out)
	w.out = protocol.AppendDataHeader(w.out, t, sid, flags, len(data))
	if len(data) < zeroCopyMin {
		w.out = append(w.out, data...)
		w.queued(len(w.out) - n)
		return 0
	}
	w.segs = append(w.segs, w.out[w.outMark:])
	w.outMark = len(w.out)
	w.segs = append(w.segs, data)
	w.queued(len(w.out) - n + len(data))
	return w.enq
}

// emitOwned queues a BODY frame whose data is a pooled response buffer
// handed over as it is: no copy, no wait; the writer returns it to the pool.
func (w *glink) emitOwned(sid uint64, data []byte, pooled *[]byte) {
	w.reserve(protocol.DataOverhead)
	n := len(w.out)
	w.out = protocol.AppendDataHeader(w.out, protocol.Body, sid, 0, len(data))
	w.segs = append(w.segs, w.out[w.outMark:])
	w.outMark = len(w.out)
	w.segs = append(w.segs, data)
	w.handed = append(w.handed, pooled)
	w.queued(len(w.out) - n + len(data))
}

const zeroCopyMin = 32<<10 + 1 // above coalesceSize: a full gathered buffer is handed over, not waited for

// batchMin: below this much queued output the writer yields once before
// writing, so that handlers about to finish join the same write.
const batchMin = 64 << 10

// waitFlushed waits until the first seq bytes queued have been written.
func (w *glink) waitFlushed(seq uint64) error {
	for w.flushed < seq && w.werr == nil {
		w.fcond.Wait()
	}
	if w.flushed < seq {
		return ErrStreamClosed
	}
	return nil
}

func (w *glink) writeLoop() {
	var back net.Buffers // reused backing array of the segments written
	var owned [][]byte   // the chunks being written
	var handed []*[]byte // the response buffers being written
	w.mu.Lock()
	for {
		for w.werr == nil && len(w.segs) == 0 && len(w.out) == w.outMark && !w.closing {
			w.wcond.Wait()
		}
		if w.enq-w.flushed < batchMin && w.werr == nil && !w.closing {
			// let the handlers that are ready to run add their frames
			// first: one write for many responses rather than one each
			w.mu.Unlock()
			runtime.Gosched()
			w.mu.Lock()
		}
		if w.werr != nil {
			break
		}
		if len(w.segs) == 0 && len(w.out) == w.outMark { // closing, all written
			w.werr = net.ErrClosed
			w.conn.Close()
			break
		}
		if len(w.out) > w.outMark {
			w.segs = append(w.segs, w.out[w.outMark:])
		}
		bufs := append(back[:0], w.segs...)
		back = bufs
		for i := range w.segs {
			w.segs[i] = nil
		}
		w.segs = w.segs[:0]
		owned = append(append(owned[:0], w.sealed...), w.out)
		clear(w.sealed)
		w.sealed = w.sealed[:0]
		handed = append(handed[:0], w.handed...)
		clear(w.handed)
		w.handed = w.handed[:0]
		w.out, w.outMark = getChunk(), 0
		total := w.enq - w.flushed
		w.mu.Unlock()

		_, err := bufs.WriteTo(w.conn)
		clear(back)

		w.mu.Lock()
		if err != nil {
			w.werr = err
			w.conn.Close() // the reader ends too
			break
		}
		w.flushed += total
		for i, b := range owned {
			putChunk(b)
			owned[i] = nil
		}
		for i, p := range handed {
			bufPool.Put(p)
			handed[i] = nil
		}
		w.fcond.Broadcast()
	}
	w.fcond.Broadcast()
	w.mu.Unlock()
}
