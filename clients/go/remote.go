package sluice

// Remote mode (PROTOCOL.md 10.6): one link to every gateway address,
// host names resolved again and again, lost links reconnected with
// backoff, TLS links.

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"sluice.dev/go/protocol"
)

// ALPN is the protocol a worker offers on tls: links.
const ALPN = "sluice/1"

// Reconnection delays (PROTOCOL.md 10.6, 3).
const (
	backoffMin = 100 * time.Millisecond
	backoffMax = 2 * time.Second
)

// errDropped: the link was abandoned before its handshake completed,
// because the worker is stopping.
var errDropped = errors.New("sluice: link dropped: the worker is stopping")

// errClosedNow is what Serve returns in remote mode after Close (or a
// second signal) closed the links at once.
var errClosedNow = errors.New("sluice: the links were closed at once")

// An endpoint is one entry of the address list.
type endpoint struct {
	scheme string // "unix", "tcp" or "tls"
	path   string // unix
	host   string // tcp, tls: without brackets
	port   string
	ip     bool // host is an IP literal (no resolution)
}

func (e endpoint) String() string {
	if e.scheme == "unix" {
		return e.path
	}
	return e.scheme + ":" + net.JoinHostPort(e.host, e.port)
}

// parseEndpoints turns address lists (comma-separated, PROTOCOL.md 10.2)
// into endpoints: PATH, unix:PATH, tcp:HOST:PORT, tcp:[V6]:PORT, and the
// same with tls:.
func parseEndpoints(lists []string) ([]endpoint, error) {
	var eps []endpoint
	for _, list := range lists {
		for _, s := range strings.Split(list, ",") {
			s = strings.TrimSpace(s)
			if s == "" {
				continue
			}
			ep, err := parseEndpoint(s)
			if err != nil {
				return nil, err
			}
			eps = append(eps, ep)
		}
	}
	if len(eps) == 0 {
		return nil, fmt.Errorf("sluice: empty socket path")
	}
	return eps, nil
}

func parseEndpoint(s string) (endpoint, error) {
	for _, scheme := range []string{"tcp", "tls"} {
		if !strings.HasPrefix(s, scheme+":") {
			continue
		}
		host, port, err := net.SplitHostPort(s[len(scheme)+1:])
		if err != nil {
			return endpoint{}, fmt.Errorf("sluice: bad address %q: %v", s, err)
		}
		p, err := strconv.Atoi(port)
		if err != nil || p < 1 || p > 65535 || host == "" {
			return endpoint{}, fmt.Errorf("sluice: bad address %q: want %s:HOST:PORT with PORT in 1..65535", s, scheme)
		}
		_, err = netip.ParseAddr(host)
		return endpoint{scheme: scheme, host: host, port: strconv.Itoa(p), ip: err == nil}, nil
	}
	s = strings.TrimPrefix(s, "unix:")
	if s == "" {
		return endpoint{}, fmt.Errorf("sluice: empty socket path")
	}
	return endpoint{scheme: "unix", path: s}, nil
}

// isRemote: more than one address, or any tcp: or tls: one.
func isRemote(eps []endpoint) bool {
	return len(eps) > 1 || len(eps) == 1 && eps[0].scheme != "unix"
}

// A target is one address links go to: an endpoint's path or IP, or one
// of the addresses its host name resolved to.
type target struct {
	ep      endpoint
	network string // for net.Dial
	addr    string
}

// key identifies a link's address: an address listed twice (or resolved
// from two names) is one link.
func (t target) key() string { return t.ep.scheme + ":" + t.addr }

func (t target) String() string {
	if t.ep.scheme == "unix" || t.ep.ip {
		return t.ep.String()
	}
	return t.ep.String() + " (" + t.addr + ")"
}

// A slot keeps one address linked: it connects, serves, and reconnects.
// Its fields but removed belong to its goroutine.
type slot struct {
	t       target
	removed bool // guarded by Worker.mu: its address is gone from DNS
	failing bool // a failure was logged; quiet until attached again
	delay   time.Duration
}

// backoffWait is the wait before the next attempt after a failure, and the
// delay after that: uniformly in [delay/2, delay], doubling up to 2 s.
func backoffWait(delay time.Duration, rnd func() float64) (wait, next time.Duration) {
	wait = delay/2 + time.Duration(rnd()*float64(delay-delay/2))
	return wait, min(2*delay, backoffMax)
}

// serveRemote runs remote mode until the worker has stopped and every link
// is closed.
func (w *Worker) serveRemote() error {
	if w.cfg.signals {
		defer w.handleSignals()()
	}
	answers := make([][]target, len(w.cfg.endpoints))
	names := false
	for i, ep := range w.cfg.endpoints {
		if ep.scheme == "unix" || ep.ip {
			answers[i] = w.resolve(context.Background(), ep)
		} else {
			names = true
		}
	}
	if names {
		w.resolveNames(answers)
	}
	w.mu.Lock()
	w.slots = map[string]*slot{}
	w.mu.Unlock()
	w.refresh(answers)
	if names {
		w.mu.Lock()
		if !w.stopping {
			w.wg.Add(1)
			go w.resolveLoop(answers)
		}
		w.mu.Unlock()
	}
	<-w.stopCtx.Done()
	w.wg.Wait()
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.authErr != nil {
		return w.authErr
	}
	if w.closeNow {
		return errClosedNow
	}
	return nil
}

// resolve returns the targets of ep (nil and an error when its host name
// does not resolve).
func (w *Worker) resolve(ctx context.Context, ep endpoint) []target {
	switch {
	case ep.scheme == "unix":
		return []target{{ep, "unix", ep.path}}
	case ep.ip:
		return []target{{ep, "tcp", net.JoinHostPort(ep.host, ep.port)}}
	}
	ctx, cancel := context.WithTimeout(ctx, w.cfg.handshakeTimeout)
	defer cancel()
	ips, err := w.cfg.lookup(ctx, ep.host)
	if err == nil && len(ips) == 0 {
		err = errors.New("no address")
	}
	if err != nil {
		if w.stopCtx.Err() == nil {
			w.cfg.errorLog.Printf("resolving %s: %v (keeping the last answer)", ep.host, err)
		}
		return nil
	}
	var ts []target
	seen := map[string]bool{}
	for _, ip := range ips {
		a := net.JoinHostPort(ip.String(), ep.port)
		if !seen[a] {
			seen[a] = true
			ts = append(ts, target{ep, "tcp", a})
		}
	}
	return ts
}

// resolveNames resolves every host name in answers again; a failure keeps
// the last answer.
func (w *Worker) resolveNames(answers [][]target) {
	for i, ep := range w.cfg.endpoints {
		if ep.scheme != "unix" && !ep.ip {
			if ts := w.resolve(w.stopCtx, ep); ts != nil {
				answers[i] = ts
			}
		}
	}
}

func (w *Worker) resolveLoop(answers [][]target) {
	defer w.wg.Done()
	t := time.NewTicker(w.cfg.resolveInterval)
	defer t.Stop()
	for {
		select {
		case <-w.stopCtx.Done():
			return
		case <-t.C:
		}
		w.resolveNames(answers)
		w.refresh(answers)
	}
}

// refresh starts a slot for every new address and marks those of the
// addresses gone, whose links are not reconnected once they close.
func (w *Worker) refresh(answers [][]target) {
	want := map[string]target{}
	for _, ts := range answers {
		for _, t := range ts {
			if _, ok := want[t.key()]; !ok {
				want[t.key()] = t
			}
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopping {
		return
	}
	for k, s := range w.slots {
		_, listed := want[k]
		s.removed = !listed // a link up stays until it closes
	}
	for k, t := range want {
		if w.slots[k] == nil {
			s := &slot{t: t, delay: backoffMin}
			w.slots[k] = s
			w.wg.Add(1)
			go w.runSlot(s)
		}
	}
}

// runSlot keeps s's address linked until the worker stops or the address
// is gone.
func (w *Worker) runSlot(s *slot) {
	defer w.wg.Done()
	for {
		w.mu.Lock()
		if w.stopping || s.removed {
			delete(w.slots, s.t.key())
			w.mu.Unlock()
			return
		}
		l := w.newLink(s.t.String())
		w.links[l] = struct{}{}
		w.mu.Unlock()

		attached := false
		l.onReady = func() { // on this goroutine (the reader), l.mu held
			attached = true
			st := l.link.PeerHello()
			w.cfg.errorLog.Printf("attached to the gateway at %s (worker id %d)", s.t, st.WorkerID)
			s.failing = false
			s.delay = backoffMin
		}
		// connecting, TLS and HELLO within three ping intervals (10.6, 8)
		l.hsEnd = time.Now().Add(min(3*w.cfg.pingInterval, w.cfg.handshakeTimeout))
		conn, err := w.connect(s.t, l.hsEnd)
		if err == nil {
			err = l.run(conn)
		}
		w.mu.Lock()
		delete(w.links, l)
		var le *protocol.LinkError
		if errors.As(err, &le) && le.Code == protocol.Auth {
			w.cfg.errorLog.Printf("the gateway at %s refused the token (auth): %v; stopping", s.t, err)
			if w.authErr == nil {
				w.authErr = le
			}
			w.stopLocked()
		}
		stopping, removed := w.stopping, s.removed
		w.mu.Unlock()

		switch {
		case stopping || errors.Is(err, errDropped):
		case attached && err == nil:
			w.cfg.errorLog.Printf("the gateway at %s drained the link; reconnecting", s.t)
		case attached:
			w.cfg.errorLog.Printf("lost the link to the gateway at %s: %v; reconnecting", s.t, err)
		case !s.failing:
			w.cfg.errorLog.Printf("cannot attach to the gateway at %s: %v; retrying (quietly until attached)", s.t, err)
			s.failing = true
		}
		if stopping || removed {
			continue // the check above ends the slot
		}
		var wait time.Duration
		wait, s.delay = backoffWait(s.delay, rand.Float64)
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-w.stopCtx.Done():
			t.Stop()
		}
	}
}

// connect opens a connection to t, with TLS for tls: addresses; stopping
// abandons it.
func (w *Worker) connect(t target, deadline time.Time) (net.Conn, error) {
	ctx, cancel := context.WithDeadline(w.stopCtx, deadline)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, t.network, t.addr)
	if err != nil {
		if w.stopCtx.Err() != nil {
			return nil, errDropped
		}
		return nil, err
	}
	if t.ep.scheme != "tls" {
		return conn, nil
	}
	tc := tls.Client(conn, w.tlsConfig(t.ep))
	if err := tc.HandshakeContext(ctx); err != nil {
		conn.Close()
		if w.stopCtx.Err() != nil {
			return nil, errDropped
		}
		return nil, fmt.Errorf("TLS handshake: %w", err)
	}
	return tc, nil
}

// tlsConfig is the configuration of a TLS link to ep: verified against
// the server name option, or the HOST written in the entry (even when
// connecting to one of the addresses it resolved to).
func (w *Worker) tlsConfig(ep endpoint) *tls.Config {
	c := w.cfg.tls.Clone()
	if c.ServerName == "" {
		c.ServerName = ep.host
	}
	if len(c.NextProtos) == 0 {
		c.NextProtos = []string{ALPN}
	}
	if c.MinVersion < tls.VersionTLS12 {
		c.MinVersion = tls.VersionTLS12
	}
	return c
}

// pingLoop PINGs the link every ping interval while it is up, and closes
// it when nothing has arrived for three intervals (PROTOCOL.md 10.6, 8).
func (w *glink) pingLoop() {
	iv := w.cfg.pingInterval
	t := time.NewTicker(iv)
	defer t.Stop()
	for {
		select {
		case <-w.ended:
			return
		case <-t.C:
		}
		w.mu.Lock()
		if w.closing || w.werr != nil {
			w.mu.Unlock()
			return
		}
		if silent := time.Since(time.Unix(0, w.lastRecv.Load())); silent >= 3*iv {
			w.cfg.errorLog.Printf("the gateway at %s sent nothing for %v: closing the link", w.addr, silent.Round(time.Millisecond))
			f := protocol.Frame{Type: protocol.Error, Code: uint64(protocol.Timeout), Message: "no frame from the gateway in time", HasMessage: true}
			w.emit(&f)
			w.closeErr = &protocol.LinkError{Code: protocol.Timeout, Msg: "no frame from the gateway in time"}
			w.closeLocked(false)
			// a dead peer may never take the ERROR nor close: bound both ends
			_ = w.conn.SetDeadline(time.Now().Add(time.Second))
			w.mu.Unlock()
			return
		}
		w.pings++
		f := protocol.Frame{Type: protocol.Ping, Opaque: w.pings}
		if w.link.Send(&f) == nil {
			w.emit(&f)
		}
		w.mu.Unlock()
	}
}

// stopLocked stops remote mode (w.mu held): no more connecting or
// resolving, links in their handshake dropped, RETIRE on those that are
// up (each closes after its DRAIN and its streams, or at the shutdown
// timeout).
func (w *Worker) stopLocked() {
	if w.stopping {
		return
	}
	w.stopping = true
	w.stopFn()
	for l := range w.links {
		l.mu.Lock()
		if l.link.Ready() {
			if !l.retiring && l.werr == nil {
				l.retiring = true
				l.sendRetireLocked()
			}
		} else {
			l.dropped = true
			if l.conn != nil {
				l.conn.Close()
			}
		}
		l.mu.Unlock()
	}
}

// linkList returns the links connecting or up (w.mu held).
func (w *Worker) linkList() []*glink {
	ls := make([]*glink, 0, len(w.links))
	for l := range w.links {
		ls = append(ls, l)
	}
	return ls
}

// drop closes the link at once, or makes sure it never starts.
func (w *glink) drop() {
	w.mu.Lock()
	w.dropped = true
	conn := w.conn
	w.mu.Unlock()
	if conn != nil {
		conn.Close()
	}
}
