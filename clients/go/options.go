package sluice

import (
	"context"
	"crypto/tls"
	"crypto/x509"
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
	DefaultResolveInterval  = 10 * time.Second
	DefaultPingInterval     = 5 * time.Second
)

// config is what the options set; see the With* functions for the meaning.
type config struct {
	sockets          []string
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

	tlsUser         *tls.Config // WithTLS
	tlsCA           string
	tlsCert         string
	tlsKey          string
	tlsServerName   string
	resolveInterval time.Duration
	pingInterval    time.Duration
	lookup          func(ctx context.Context, host string) ([]net.IPAddr, error)

	// derived
	endpoints []endpoint
	addrErr   error // a bad address: Serve returns it
	remote    bool
	tls       *tls.Config // the base of every TLS link's
}

// An Option changes one setting of Serve or NewWorker.
type Option func(*config)

// WithSocket sets the gateway addresses (default $SLUICE_SOCKET): PATH,
// unix:PATH, tcp:HOST:PORT, tcp:[V6]:PORT, tls:HOST:PORT or tls:[V6]:PORT.
// Each argument may itself be a comma-separated list. More than one
// address, or a tcp: or tls: one, is remote mode (PROTOCOL.md 10.6): the
// worker attaches to every gateway and reconnects lost links.
func WithSocket(addrs ...string) Option {
	return func(c *config) { c.sockets = append([]string(nil), addrs...) }
}

// WithToken sets the token sent in HELLO (default $SLUICE_TOKEN), for a
// worker attached over TCP or TLS.
func WithToken(token string) Option { return func(c *config) { c.token = token } }

// WithMaxStreams sets how many requests this worker serves at once, one
// goroutine each (default $SLUICE_MAX_STREAMS, else 4096; announced in
// HELLO, the gateway may lower it).
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

// WithHandshakeTimeout bounds connecting plus the HELLO exchange (default
// 10 s; in remote mode also at most three ping intervals).
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

// WithTLS sets the TLS configuration of tls: links, replacing the one
// made from the TLS options and $SLUICE_TLS_*. The worker fills in what it
// leaves empty: ServerName (WithTLSServerName, else the address's HOST),
// NextProtos ("sluice/1") and MinVersion (TLS 1.2). InsecureSkipVerify is
// refused.
func WithTLS(c *tls.Config) Option { return func(cfg *config) { cfg.tlsUser = c } }

// WithTLSCA sets the PEM file of the certificate authorities a gateway's
// certificate must chain to (default $SLUICE_TLS_CA; none: the system's).
func WithTLSCA(file string) Option { return func(c *config) { c.tlsCA = file } }

// WithTLSCert sets the client certificate (PEM, its chain after it) and
// its unencrypted key presented to gateways over TLS (default
// $SLUICE_TLS_CERT and $SLUICE_TLS_KEY; both or neither).
func WithTLSCert(certFile, keyFile string) Option {
	return func(c *config) { c.tlsCert, c.tlsKey = certFile, keyFile }
}

// WithTLSServerName sets the name sent as SNI and checked against every
// gateway's certificate, instead of each address's HOST (default
// $SLUICE_TLS_SERVER_NAME).
func WithTLSServerName(name string) Option { return func(c *config) { c.tlsServerName = name } }

// WithResolveInterval sets how often the host names of the addresses are
// resolved again (default $SLUICE_RESOLVE_INTERVAL seconds, else 10 s; at
// least 1 s).
func WithResolveInterval(d time.Duration) Option {
	return func(c *config) { c.resolveInterval = d }
}

// WithPingInterval sets how often the worker PINGs each link in remote
// mode (default $SLUICE_PING_INTERVAL seconds, else 5 s; at least 1 s). A
// link silent for three intervals is closed and opened again, and
// connecting plus the TLS and HELLO handshakes are bounded by three
// intervals too.
func WithPingInterval(d time.Duration) Option { return func(c *config) { c.pingInterval = d } }

// envSeconds reads a duration in seconds from the environment variable
// name into *d (unset: *d stays).
func envSeconds(name string, d *time.Duration) error {
	v := os.Getenv(name)
	if v == "" {
		return nil
	}
	secs, err := strconv.ParseFloat(v, 64)
	if err != nil || secs != secs {
		return fmt.Errorf("sluice: %s=%q: want seconds", name, v)
	}
	*d = time.Duration(min(secs, 1e6) * float64(time.Second))
	return nil
}

func newConfig(opts []Option) (*config, error) {
	c := &config{
		sockets:          []string{os.Getenv("SLUICE_SOCKET")},
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
		tlsCA:            os.Getenv("SLUICE_TLS_CA"),
		tlsCert:          os.Getenv("SLUICE_TLS_CERT"),
		tlsKey:           os.Getenv("SLUICE_TLS_KEY"),
		tlsServerName:    os.Getenv("SLUICE_TLS_SERVER_NAME"),
		resolveInterval:  DefaultResolveInterval,
		pingInterval:     DefaultPingInterval,
		lookup:           net.DefaultResolver.LookupIPAddr,
	}
	if err := envSeconds("SLUICE_RESOLVE_INTERVAL", &c.resolveInterval); err != nil {
		return nil, err
	}
	if err := envSeconds("SLUICE_PING_INTERVAL", &c.pingInterval); err != nil {
		return nil, err
	}
	// PROTOCOL.md 10.2: the operator sizes a worker without touching its code
	if v := strings.TrimSpace(os.Getenv("SLUICE_MAX_STREAMS")); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > protocol.MaxStreams {
			return nil, fmt.Errorf("sluice: SLUICE_MAX_STREAMS=%q: want 1..%d", v, protocol.MaxStreams)
		}
		c.maxStreams = n
	}
	for _, o := range opts {
		o(c)
	}
	if strings.TrimSpace(strings.ReplaceAll(strings.Join(c.sockets, ""), ",", "")) == "" {
		return nil, fmt.Errorf("sluice: no gateway address: set SLUICE_SOCKET or use WithSocket")
	}
	c.endpoints, c.addrErr = parseEndpoints(c.sockets)
	c.remote = c.addrErr == nil && isRemote(c.endpoints)
	c.resolveInterval = max(c.resolveInterval, time.Second)
	c.pingInterval = max(c.pingInterval, time.Second)
	if err := c.makeTLS(); err != nil {
		return nil, err
	}
	switch {
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

// makeTLS checks the TLS options and loads their files.
func (c *config) makeTLS() error {
	if (c.tlsCert == "") != (c.tlsKey == "") {
		return fmt.Errorf("sluice: a TLS client certificate needs both SLUICE_TLS_CERT and SLUICE_TLS_KEY (WithTLSCert)")
	}
	if c.tlsUser != nil {
		if c.tlsUser.InsecureSkipVerify {
			return fmt.Errorf("sluice: WithTLS: InsecureSkipVerify is not allowed: gateways are always verified")
		}
		c.tls = c.tlsUser.Clone()
	} else {
		c.tls = &tls.Config{}
		if c.tlsCA != "" {
			pem, err := os.ReadFile(c.tlsCA)
			if err != nil {
				return fmt.Errorf("sluice: TLS CA: %w", err)
			}
			c.tls.RootCAs = x509.NewCertPool()
			if !c.tls.RootCAs.AppendCertsFromPEM(pem) {
				return fmt.Errorf("sluice: TLS CA %s: no PEM certificate in it", c.tlsCA)
			}
		}
		if c.tlsCert != "" {
			cert, err := tls.LoadX509KeyPair(c.tlsCert, c.tlsKey)
			if err != nil {
				return fmt.Errorf("sluice: TLS client certificate: %w", err)
			}
			c.tls.Certificates = []tls.Certificate{cert}
		}
	}
	if c.tls.ServerName == "" {
		c.tls.ServerName = c.tlsServerName
	}
	return nil
}
