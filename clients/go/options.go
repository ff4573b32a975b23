package sluice

import (
	"fmt"
	"log"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"sluice.dev/go/protocol"
)

// Lib is what the worker announces as HELLO "lib".
const Lib = "sluice-go/0.1.0"

// Defaults of the options below.
const (
	DefaultMaxStreams       = 4096
	DefaultWindow           = 256 << 10
	DefaultInitialWindow    = 16 << 10
	DefaultBodyBudget       = 16 << 20
	DefaultMaxFrame         = protocol.DefaultFrame
	DefaultHandshakeTimeout = 10 * time.Second
	DefaultShutdownTimeout  = 30 * time.Second
)

// config is what the options set; see the With* functions for the meaning.
type config struct {
	socket           string
	token            string
	maxStreams       int
	window           int
	initialWindow    int
	bodyBudget       int64
	maxBody          int64 // -1: the gateway's limit
	maxFrame         int
	handshakeTimeout time.Duration
	shutdownTimeout  time.Duration
	signals          bool
	exit             bool
	websocket        bool
	errorLog         *log.Logger
}

// An Option changes one setting of Serve or NewWorker.
type Option func(*config)

// WithSocket sets the gateway address (default $SLUICE_SOCKET): PATH,
// unix:PATH, tcp:HOST:PORT or tcp:[V6]:PORT.
func WithSocket(addr string) Option { return func(c *config) { c.socket = addr } }

// WithToken sets the token sent in HELLO (default $SLUICE_TOKEN), for a
// worker attached over TCP.
func WithToken(token string) Option { return func(c *config) { c.token = token } }

// WithMaxStreams sets how many requests this worker serves at once, one
// goroutine each (default 4096; announced in HELLO, the gateway may lower it).
func WithMaxStreams(n int) Option { return func(c *config) { c.maxStreams = n } }

// WithWindow sets the most request-body bytes buffered or in flight for one
// stream while its handler reads the body (default 256 KiB).
func WithWindow(n int) Option { return func(c *config) { c.window = n } }

// WithInitialWindow sets the request-body bytes per stream the gateway may
// send before the handler reads (the HELLO window, default 16 KiB, at most
// the window).
func WithInitialWindow(n int) Option { return func(c *config) { c.initialWindow = n } }

// WithBodyBudget bounds the request-body credit of the whole link beyond the
// initial windows (default 16 MiB): streams past it read with the initial
// window only.
func WithBodyBudget(n int64) Option { return func(c *config) { c.bodyBudget = n } }

// WithMaxBody sends LIMIT n for every request with a body, replacing the
// gateway's --max-body (default: leave the gateway's limit).
func WithMaxBody(n int64) Option { return func(c *config) { c.maxBody = n } }

// WithMaxFrame sets the largest frame accepted from the gateway (default 1 MiB).
func WithMaxFrame(n int) Option { return func(c *config) { c.maxFrame = n } }

// WithHandshakeTimeout bounds connecting plus the HELLO exchange (default 10 s).
func WithHandshakeTimeout(d time.Duration) Option {
	return func(c *config) { c.handshakeTimeout = d }
}

// WithShutdownTimeout bounds a graceful shutdown (SIGTERM, Shutdown) before
// the link is closed with requests still open (default 30 s).
func WithShutdownTimeout(d time.Duration) Option {
	return func(c *config) { c.shutdownTimeout = d }
}

// WithSignals sets whether Serve handles SIGTERM and SIGINT (default true):
// the first retires the worker gracefully, a second closes the link at once.
func WithSignals(on bool) Option { return func(c *config) { c.signals = on } }

// WithExit sets whether the package-level Serve and ListenAndServe end the
// process with status 0 after an orderly close (default true), so that
// log.Fatal(sluice.Serve(h)) exits 0 when the gateway drains the worker and
// 1 on an error, as PROTOCOL.md 10.5 asks. With false they return nil.
func WithExit(on bool) Option { return func(c *config) { c.exit = on } }

// WithWebSocket sets whether the worker takes WebSocket streams (default
// true): the gateway then hands it WebSocket handshakes, which a handler
// accepts with Accept or refuses with any ordinary response. With false
// the gateway serves them as plain requests over HTTP/1.1 (without the
// Upgrade header) and answers 501 over HTTP/2.
func WithWebSocket(on bool) Option { return func(c *config) { c.websocket = on } }

// WithErrorLog sets the logger for handler panics and link errors (default:
// standard error, each line prefixed with "[worker N pid P]").
func WithErrorLog(l *log.Logger) Option { return func(c *config) { c.errorLog = l } }

func newConfig(opts []Option) (*config, error) {
	c := &config{
		socket:           os.Getenv("SLUICE_SOCKET"),
		token:            os.Getenv("SLUICE_TOKEN"),
		maxStreams:       DefaultMaxStreams,
		window:           DefaultWindow,
		initialWindow:    DefaultInitialWindow,
		bodyBudget:       DefaultBodyBudget,
		maxBody:          -1,
		maxFrame:         DefaultMaxFrame,
		handshakeTimeout: DefaultHandshakeTimeout,
		shutdownTimeout:  DefaultShutdownTimeout,
		signals:          true,
		exit:             true,
		websocket:        true,
	}
	for _, o := range opts {
		o(c)
	}
	switch {
	case c.socket == "":
		return nil, fmt.Errorf("sluice: no gateway address: set SLUICE_SOCKET or use WithSocket")
	case c.maxStreams < 1 || c.maxStreams > protocol.MaxStreams:
		return nil, fmt.Errorf("sluice: max streams %d outside 1..%d", c.maxStreams, protocol.MaxStreams)
	case c.window < 0 || c.window > protocol.MaxWindow:
		return nil, fmt.Errorf("sluice: window %d outside 0..%d", c.window, protocol.MaxWindow)
	case c.initialWindow < 0 || c.initialWindow > protocol.MaxWindow:
		return nil, fmt.Errorf("sluice: initial window %d outside 0..%d", c.initialWindow, protocol.MaxWindow)
	case c.maxFrame < protocol.MinFrame || c.maxFrame > protocol.MaxFrame:
		return nil, fmt.Errorf("sluice: max frame %d outside %d..%d", c.maxFrame, protocol.MinFrame, protocol.MaxFrame)
	case c.maxBody > protocol.MaxID:
		return nil, fmt.Errorf("sluice: max body %d above %d", c.maxBody, int64(protocol.MaxID))
	}
	if c.initialWindow > c.window {
		c.initialWindow = c.window
	}
	if c.errorLog == nil {
		prefix := fmt.Sprintf("[worker %s pid %d] ", os.Getenv("SLUICE_WORKER_ID"), os.Getpid())
		if os.Getenv("SLUICE_WORKER_ID") == "" {
			prefix = fmt.Sprintf("[worker pid %d] ", os.Getpid())
		}
		c.errorLog = log.New(os.Stderr, prefix, log.LstdFlags)
	}
	return c, nil
}

// parseAddress turns a SLUICE_SOCKET value into a network and address for
// net.Dial: PATH, unix:PATH, tcp:HOST:PORT, tcp:[V6]:PORT (PROTOCOL.md 10.2).
func parseAddress(s string) (network, addr string, err error) {
	switch {
	case strings.HasPrefix(s, "tcp:"):
		hp := s[len("tcp:"):]
		host, port, err := net.SplitHostPort(hp)
		if err != nil {
			return "", "", fmt.Errorf("sluice: bad address %q: %v", s, err)
		}
		p, err := strconv.Atoi(port)
		if err != nil || p < 1 || p > 65535 || host == "" {
			return "", "", fmt.Errorf("sluice: bad address %q: want tcp:HOST:PORT with PORT in 1..65535", s)
		}
		return "tcp", net.JoinHostPort(host, port), nil
	case strings.HasPrefix(s, "unix:"):
		s = s[len("unix:"):]
	}
	if s == "" {
		return "", "", fmt.Errorf("sluice: empty socket path")
	}
	return "unix", s, nil
}
