package sluice

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
	"unsafe"

	"sluice.dev/go/protocol"
)

const (
	// A response whose handler returns having written at most this much
	// gets a Content-Length, as from net/http (its bufferBeforeChunkingSize).
	bufferBeforeCommit = 2048
	// Small writes after the head are gathered up to this size before they
	// go out as one BODY frame (net/http buffers 4 KiB similarly): fewer,
	// larger frames cost the gateway less per byte. Flush sends them at once.
	coalesceSize = 32 << 10
	// A gathered buffer at least this full is handed to the writer as it
	// is (and replaced by a fresh one) rather than copied.
	handoffMin = 4 << 10
)

// response is the handler's http.ResponseWriter. It also implements
// http.Flusher, io.StringWriter and what http.ResponseController looks for
// (FlushError, SetReadDeadline, SetWriteDeadline, EnableFullDuplex, Hijack).
type response struct {
	s             *stream
	req           *http.Request
	header        http.Header
	status        int
	wroteHeader   bool
	committed     bool // RESPONSE sent
	ended         bool // END or RESET sent (or RESPONSE without a body)
	isHead        bool
	buf           []byte
	written       int64
	contentLength int64 // declared by the handler, -1 if none

	// the head as it was at WriteHeader: encoded header entries and what
	// the commit needs to know about them (net/http snapshots it too)
	head         []byte
	headCount    int
	pooled       *[]byte
	haveType     bool
	haveEncoding bool
	trailerNames []string
	// http.TrailerPrefix keys, found once the handler has returned
	prefixKeys    []string
	prefixScanned bool
	headArr       [96]byte // rw.head's first backing array
}

// bufPool holds the buffers responses gather small writes in.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, coalesceSize); return &b }}

func (rw *response) getBuf() {
	if rw.buf == nil {
		rw.pooled = bufPool.Get().(*[]byte)
		rw.buf = (*rw.pooled)[:0]
	}
}

// putBuf returns the buffer once the response is over.
func (rw *response) putBuf() {
	if rw.pooled != nil && cap(rw.buf) == coalesceSize {
		*rw.pooled = rw.buf[:0]
		bufPool.Put(rw.pooled)
	}
	rw.pooled, rw.buf = nil, nil
}

func (rw *response) init(s *stream, req *http.Request) {
	rw.s, rw.req, rw.header, rw.contentLength, rw.isHead = s, req, make(http.Header), -1, req.Method == "HEAD"
}

func (rw *response) Header() http.Header { return rw.header }

func (rw *response) WriteHeader(code int) {
	checkWriteHeaderCode(code)
	rw.s.w.mu.Lock()
	defer rw.s.w.mu.Unlock()
	if rw.wroteHeader {
		_, file, line, _ := runtime.Caller(1)
		rw.s.w.cfg.errorLog.Printf("http: superfluous response.WriteHeader call from %s:%d", file, line)
		return
	}
	rw.writeHeaderLocked(code)
}

func checkWriteHeaderCode(code int) {
	// net/http panics the same way: a programming error, not a runtime one
	if code < 100 || code > 999 {
		panic(fmt.Sprintf("invalid WriteHeader code %v", code))
	}
}

func bodyAllowedForStatus(status int) bool {
	switch {
	case status >= 100 && status <= 199:
		return false
	case status == 204, status == 304:
		return false
	}
	return true
}

// writeHeaderLocked records the status and snapshots the header.
func (rw *response) writeHeaderLocked(code int) {
	if code >= 100 && code <= 199 {
		// informational responses (103 Early Hints...) have no frame in
		// protocol v1: they are dropped, the final response follows
		return
	}
	rw.wroteHeader = true
	rw.status = code
	if v := rw.header.Get("Content-Length"); v != "" {
		n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if err == nil && n >= 0 {
			rw.contentLength = n
		} else {
			rw.s.w.cfg.errorLog.Printf("http: invalid Content-Length of %q", v)
			rw.header.Del("Content-Length")
		}
	}
	for _, line := range rw.header["Trailer"] {
		for _, name := range strings.Split(line, ",") {
			if name = strings.TrimSpace(name); name != "" {
				rw.trailerNames = append(rw.trailerNames, http.CanonicalHeaderKey(name))
			}
		}
	}
	_, rw.haveType = rw.header["Content-Type"]
	rw.haveEncoding = rw.header.Get("Content-Encoding") != ""
	if rw.head == nil {
		rw.head = rw.headArr[:0]
	}
	rw.head, rw.headCount = appendHeaders(rw.head[:0], rw.header)
}

// appendHeaders encodes the header's entries (sorted by name, as net/http
// writes them), skipping trailers and invalid names; values have CR and LF
// replaced by spaces, as net/http does.
func appendHeaders(dst []byte, h http.Header) ([]byte, int) {
	var keysBuf [32]string
	keys := keysBuf[:0]
	for k := range h {
		if strings.HasPrefix(k, http.TrailerPrefix) || !validFieldName(k) {
			continue
		}
		keys = append(keys, k)
	}
	if len(keys) > 1 {
		sort.Strings(keys)
	}
	n := 0
	for _, k := range keys {
		for _, v := range h[k] {
			dst = protocol.AppendArrayHeader(dst, 2)
			dst = protocol.AppendBinString(dst, k)
			if strings.ContainsAny(v, "\r\n") {
				v = strings.NewReplacer("\r", " ", "\n", " ").Replace(v)
			}
			dst = protocol.AppendBinString(dst, strings.TrimSpace(v))
			n++
		}
	}
	return dst, n
}

// tokenChar marks the bytes of an HTTP token (RFC 9110 5.6.2).
var tokenChar = func() (t [256]bool) {
	for c := '!'; c <= '~'; c++ {
		t[c] = !strings.ContainsRune("\"(),/:;<=>?@[\\]{}", c)
	}
	return
}()

func validFieldName(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		if !tokenChar[k[i]] {
			return false
		}
	}
	return true
}

func (rw *response) Write(p []byte) (int, error) {
	w := rw.s.w
	w.mu.Lock()
	defer w.mu.Unlock()
	return rw.writeLocked(p)
}

// WriteString writes s without copying it to a []byte first.
func (rw *response) WriteString(s string) (int, error) {
	return rw.Write(unsafe.Slice(unsafe.StringData(s), len(s)))
}

func (rw *response) writeLocked(p []byte) (int, error) {
	if rw.ended && !rw.isHead {
		return 0, ErrStreamClosed // a write after the response ended
	}
	if !rw.wroteHeader {
		rw.writeHeaderLocked(http.StatusOK)
	}
	if !bodyAllowedForStatus(rw.status) {
		return 0, http.ErrBodyNotAllowed
	}
	if rw.contentLength != -1 && rw.written+int64(len(p)) > rw.contentLength {
		return 0, http.ErrContentLength // not counted: finish sees the short body
	}
	rw.written += int64(len(p))
	if err := rw.s.err; err != nil {
		return 0, err
	}
	rw.getBuf()
	if !rw.committed {
		if len(rw.buf)+len(p) <= bufferBeforeCommit {
			rw.buf = append(rw.buf, p...)
			return len(p), nil
		}
		if err := rw.commitLocked(false, p); err != nil {
			return 0, err
		}
	}
	if rw.isHead || rw.ended {
		return len(p), nil // HEAD: the body is counted, never sent
	}
	if len(rw.buf)+len(p) <= coalesceSize {
		rw.buf = append(rw.buf, p...)
		return len(p), nil
	}
	if err := rw.flushBufLocked(); err != nil {
		return 0, err
	}
	if len(p) < coalesceSize {
		rw.getBuf() // the last one may have been handed to the writer
		rw.buf = append(rw.buf, p...)
		return len(p), nil
	}
	if err := rw.sendBodyLocked(p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// commitLocked sends RESPONSE. final: the handler has returned, so a body
// that fit the buffer gets a Content-Length. more: data being written that
// did not fit the buffer (for Content-Type sniffing).
func (rw *response) commitLocked(final bool, more []byte) error {
	s := rw.s
	if s.err != nil {
		return s.err
	}
	rw.committed = true
	allowed := bodyAllowedForStatus(rw.status)
	trailers := len(rw.trailerNames) > 0 || (final && rw.hasPrefixTrailers())
	var ctype string
	if !rw.haveType && !rw.haveEncoding && allowed && len(rw.buf)+len(more) > 0 {
		sniff := rw.buf
		if len(sniff) < 512 && len(more) > 0 {
			sniff = append(sniff[:len(sniff):len(sniff)], more[:min(len(more), 512-len(sniff))]...)
		}
		ctype = http.DetectContentType(sniff)
	}
	addCL := final && !trailers && rw.contentLength == -1 && allowed && (!rw.isHead || len(rw.buf) > 0)
	bodyMode := uint64(protocol.BodyFollows)
	if !allowed || rw.isHead || (final && len(rw.buf) == 0 && !trailers && rw.contentLength <= 0) {
		bodyMode = protocol.BodyNone
	}

	n := rw.headCount
	if ctype != "" {
		n++
	}
	if addCL && bodyMode == protocol.BodyFollows || addCL && rw.isHead {
		n++
	} else {
		addCL = false
	}
	f := &s.w.f
	f.Reset()
	f.Type, f.Stream, f.Status, f.BodyMode = protocol.Response, s.id, uint64(rw.status), bodyMode
	w := s.w
	if err := w.link.Send(f); err != nil {
		return err
	}
	out, at := w.beginResponse(s.id, rw.status, n, len(rw.head)+len(ctype))
	out = append(out, rw.head...)
	if ctype != "" {
		out = protocol.AppendArrayHeader(out, 2)
		out = protocol.AppendBinString(out, "Content-Type")
		out = protocol.AppendBinString(out, ctype)
	}
	if addCL {
		out = protocol.AppendArrayHeader(out, 2)
		out = protocol.AppendBinString(out, "Content-Length")
		out = protocol.AppendBinHeader(out, decimalLen(len(rw.buf)))
		out = strconv.AppendInt(out, int64(len(rw.buf)), 10)
	}
	w.endResponse(out, at, bodyMode)
	if bodyMode == protocol.BodyNone {
		rw.ended = true
		rw.buf = rw.buf[:0]
		s.closedLocked()
	}
	return nil
}

// beginResponse starts a RESPONSE frame in the output queue up to its
// header list of n entries, which the caller appends (entries encoded
// ahead, at WriteHeader, plus any added at the commit); room: their size.
func (w *glink) beginResponse(sid uint64, status, n, room int) ([]byte, int) {
	w.reserve(64 + room)
	out, at := protocol.BeginFrame(w.out)
	out = protocol.AppendArrayHeader(out, 5)
	out = protocol.AppendUint(out, uint64(protocol.Response))
	out = protocol.AppendUint(out, sid)
	out = protocol.AppendUint(out, uint64(status))
	return protocol.AppendArrayHeader(out, n), at
}

// endResponse ends the frame beginResponse started and queues it.
func (w *glink) endResponse(out []byte, at int, bodyMode uint64) {
	out = protocol.AppendUint(out, bodyMode)
	out = protocol.EndFrame(out, at)
	n := len(out) - len(w.out)
	w.out = out
	w.queued(n)
}

func decimalLen(n int) int {
	d := 1
	for ; n >= 10; n /= 10 {
		d++
	}
	return d
}

// hasPrefixTrailers scans the header once for http.TrailerPrefix keys
// (the handler has returned by then, so they cannot change) and remembers
// them for the END.
func (rw *response) hasPrefixTrailers() bool {
	if !rw.prefixScanned {
		rw.prefixScanned = true
		for k := range rw.header {
			if strings.HasPrefix(k, http.TrailerPrefix) && len(k) > len(http.TrailerPrefix) {
				rw.prefixKeys = append(rw.prefixKeys, k)
			}
		}
	}
	return len(rw.prefixKeys) > 0
}

// flushBufLocked sends the gathered bytes as one BODY frame.
func (rw *response) flushBufLocked() error {
	if len(rw.buf) == 0 || rw.ended {
		return nil
	}
	if len(rw.buf) >= handoffMin && rw.pooled != nil {
		s, w := rw.s, rw.s.w
		if s.err != nil {
			return s.err
		}
		ls := w.link.Stream(s.id)
		if ls != nil && w.werr == nil && ls.SendWindow() >= int64(len(rw.buf)) && len(rw.buf) <= w.maxChunk {
			f := &s.w.f
			f.Reset()
			f.Type, f.Stream, f.Data = protocol.Body, s.id, rw.buf
			if err := w.link.Send(f); err != nil {
				return err
			}
			*rw.pooled = rw.buf[:0]
			w.emitOwned(s.id, rw.buf, rw.pooled)
			rw.pooled, rw.buf = nil, nil
			return nil
		}
	}
	err := rw.sendBodyLocked(rw.buf)
	rw.buf = rw.buf[:0]
	return err
}

// sendBodyLocked sends p as BODY frames within the stream's credit,
// waiting for CREDIT when the window is used up (a slow client slows the
// handler). Large slices are written from p itself, so it waits until
// they are out.
func (rw *response) sendBodyLocked(p []byte) error {
	s := rw.s
	w := s.w
	for len(p) > 0 {
		if s.err != nil {
			return s.err
		}
		ls := w.link.Stream(s.id)
		if ls == nil || w.werr != nil {
			return ErrStreamClosed
		}
		win := ls.SendWindow()
		if win <= 0 {
			if err := s.wait(s.writeDL, &s.wrTimer); err != nil {
				// the body is cut short: an END would pass it off as
				// complete (net/http's connection breaks likewise)
				rw.resetLocked(protocol.ResetInternal, "write deadline exceeded")
				return err
			}
			continue
		}
		n := min(int64(len(p)), win, int64(w.maxChunk))
		f := &s.w.f
		f.Reset()
		f.Type, f.Stream, f.Data = protocol.Body, s.id, p[:n]
		if err := w.link.Send(f); err != nil {
			return err
		}
		if seq := w.emitData(s.id, p[:n]); seq != 0 {
			if err := w.waitFlushed(seq); err != nil {
				return err
			}
		}
		p = p[n:]
	}
	return nil
}

func (rw *response) endLocked() {
	s := rw.s
	f := &s.w.f
	f.Reset()
	f.Type, f.Stream = protocol.End, s.id
	for _, name := range rw.trailerNames {
		for _, v := range rw.header[name] {
			f.Headers = append(f.Headers, protocol.Header{Name: []byte(name), Value: []byte(v)})
		}
	}
	rw.hasPrefixTrailers()
	for _, k := range rw.prefixKeys {
		for _, v := range rw.header[k] {
			f.Headers = append(f.Headers, protocol.Header{Name: []byte(k[len(http.TrailerPrefix):]), Value: []byte(v)})
		}
	}
	rw.ended = true
	if err := s.sendLocked(f); err != nil {
		s.closedLocked()
	}
	f.Headers = f.Headers[:0]
}

func (rw *response) resetLocked(code uint64, msg string) {
	s := rw.s
	rw.ended = true
	if s.err != nil || s.respEnded {
		return
	}
	f := &s.w.f
	f.Reset()
	f.Type, f.Stream, f.Code, f.Message, f.HasMessage = protocol.Reset, s.id, code, msg, true
	if err := s.sendLocked(f); err != nil {
		s.closedLocked()
	}
}

// finish completes the response after the handler returned: RESPONSE (with
// a Content-Length when the whole body was buffered), what is left of the
// body, and END with the trailers, in one write to the link when possible.
func (rw *response) finish() {
	w := rw.s.w
	w.mu.Lock()
	defer w.mu.Unlock()
	if ws := rw.s.ws; ws != nil {
		ws.closeLocked(CloseNormalClosure, "") // the WebSocket lives as long as its handler
		return
	}
	if rw.ended || rw.s.err != nil {
		return
	}
	if !rw.wroteHeader {
		rw.writeHeaderLocked(http.StatusOK)
	}
	if !rw.committed {
		if err := rw.commitLocked(true, nil); err != nil || rw.ended {
			return
		}
	}
	if err := rw.flushBufLocked(); err != nil {
		return
	}
	if rw.contentLength >= 0 && rw.written < rw.contentLength && !rw.isHead && bodyAllowedForStatus(rw.status) {
		w.cfg.errorLog.Printf("%s %s: handler wrote %d of its Content-Length %d; resetting the stream",
			rw.req.Method, rw.req.RequestURI, rw.written, rw.contentLength)
		rw.resetLocked(protocol.ResetInternal, "short body")
		return
	}
	rw.endLocked()
}

// Flush sends the head and the gathered body bytes now (http.Flusher).
func (rw *response) Flush() { _ = rw.FlushError() }

// FlushError is Flush returning the error (http.ResponseController).
func (rw *response) FlushError() error {
	w := rw.s.w
	w.mu.Lock()
	defer w.mu.Unlock()
	if rw.s.err != nil {
		return rw.s.err
	}
	if rw.ended {
		return nil
	}
	if !rw.wroteHeader {
		rw.writeHeaderLocked(http.StatusOK)
	}
	if !rw.committed {
		if err := rw.commitLocked(false, nil); err != nil {
			return err
		}
	}
	return rw.flushBufLocked()
}

// SetReadDeadline bounds the handler's body reads (http.ResponseController).
func (rw *response) SetReadDeadline(t time.Time) error {
	rw.s.w.mu.Lock()
	rw.s.readDL = t
	rw.s.cond.Broadcast()
	rw.s.w.mu.Unlock()
	return nil
}

// SetWriteDeadline bounds the handler's writes waiting for credit
// (http.ResponseController).
func (rw *response) SetWriteDeadline(t time.Time) error {
	rw.s.w.mu.Lock()
	rw.s.writeDL = t
	rw.s.cond.Broadcast()
	rw.s.w.mu.Unlock()
	return nil
}

// EnableFullDuplex: a sluice stream is always full duplex (the body can be
// read while the response is written), so there is nothing to enable.
func (rw *response) EnableFullDuplex() error { return nil }

// Hijack is not possible behind the gateway: it owns the client connection.
func (rw *response) Hijack() (net.Conn, *bufio.ReadWriter, error) { return nil, nil, errHijack }
