package sluice_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	sluice "sluice.dev/go"
)

// testCA is a certificate authority made for one test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	file string // its PEM
}

var serial int64

func newCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial++
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	file := filepath.Join(t.TempDir(), name+".pem")
	if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return &testCA{cert, key, file}
}

// issue makes a certificate for cn (with these SANs) and writes it and
// its key as PEM files.
func (ca *testCA) issue(t *testing.T, cn string, client bool, dns []string, ips ...string) (tls.Certificate, string, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial++
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, DNSNames: dns,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if client {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	for _, ip := range ips {
		tmpl.IPAddresses = append(tmpl.IPAddresses, net.ParseIP(ip))
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
	dir := t.TempDir()
	cf, kf := filepath.Join(dir, cn+".crt"), filepath.Join(dir, cn+".key")
	os.WriteFile(cf, certPEM, 0o600)
	os.WriteFile(kf, keyPEM, 0o600)
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return pair, cf, kf
}

// hellos records what the workers' TLS ClientHellos offered.
type hellos struct {
	mu  sync.Mutex
	sni []string
	alp [][]string
}

func (h *hellos) last() (string, []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.sni) == 0 {
		return "", nil
	}
	return h.sni[len(h.sni)-1], h.alp[len(h.alp)-1]
}

// serverTLS is a gateway's TLS configuration: cert, ALPN sluice/1, and
// the client certificates of clientCA required when set.
func serverTLS(cert tls.Certificate, clientCA *testCA, rec *hellos) *tls.Config {
	c := &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"sluice/1"}, MinVersion: tls.VersionTLS12}
	if clientCA != nil {
		c.ClientCAs = x509.NewCertPool()
		c.ClientCAs.AddCert(clientCA.cert)
		c.ClientAuth = tls.RequireAndVerifyClientCert
	}
	c.GetConfigForClient = func(ch *tls.ClientHelloInfo) (*tls.Config, error) {
		rec.mu.Lock()
		rec.sni = append(rec.sni, ch.ServerName)
		rec.alp = append(rec.alp, ch.SupportedProtos)
		rec.mu.Unlock()
		return nil, nil
	}
	return c
}

// TestTLSVerified: a gateway certificate for its IP is verified against
// SLUICE_TLS_CA, the client certificate of SLUICE_TLS_CERT/KEY is
// presented, ALPN sluice/1 is offered and chosen, no SNI for an address.
func TestTLSVerified(t *testing.T) {
	ca := newCA(t, "ca")
	srv, _, _ := ca.issue(t, "gw", false, []string{"gw.test"}, "127.0.0.1")
	_, cf, kf := ca.issue(t, "worker", true, nil)
	rec := &hellos{}
	g := newMGW(t, "tcp", "", serverTLS(srv, ca, rec))
	t.Setenv("SLUICE_TLS_CA", ca.file)
	t.Setenv("SLUICE_TLS_CERT", cf)
	t.Setenv("SLUICE_TLS_KEY", kf)
	t.Setenv("SLUICE_TOKEN", "tok")
	r := remoteWorker(t, okHandler, sluice.WithSocket(g.addr))
	l := g.attach()
	if _, body, _ := l.answer(l.get("/")); body != "ok" {
		t.Fatalf("body %q", body)
	}
	eq(t, "token", l.hello.Settings.Token, "tok")
	eq(t, "ALPN", l.tls.NegotiatedProtocol, "sluice/1")
	if l.tls.Version < tls.VersionTLS12 {
		t.Errorf("TLS version %x", l.tls.Version)
	}
	if len(l.tls.PeerCertificates) == 0 || l.tls.PeerCertificates[0].Subject.CommonName != "worker" {
		t.Errorf("no client certificate presented")
	}
	sni, alpn := rec.last()
	eq(t, "SNI", sni, "")
	eq(t, "ALPN offered", strings.Join(alpn, ","), "sluice/1")
	r.running()
}

// TestTLSServerName: SLUICE_TLS_SERVER_NAME (or WithTLSServerName) is the
// SNI and the name verified, for a gateway reached by address whose
// certificate carries only a name.
func TestTLSServerName(t *testing.T) {
	ca := newCA(t, "ca")
	srv, _, _ := ca.issue(t, "gw", false, []string{"gw.test"})
	rec := &hellos{}
	g := newMGW(t, "tcp", "", serverTLS(srv, nil, rec))
	t.Run("env", func(t *testing.T) {
		t.Setenv("SLUICE_TLS_SERVER_NAME", "gw.test")
		remoteWorker(t, okHandler, sluice.WithSocket(g.addr), sluice.WithTLSCA(ca.file))
		l := g.attach()
		if _, body, _ := l.answer(l.get("/")); body != "ok" {
			t.Fatalf("body %q", body)
		}
		sni, _ := rec.last()
		eq(t, "SNI", sni, "gw.test")
	})
	t.Run("option", func(t *testing.T) {
		remoteWorker(t, okHandler, sluice.WithSocket(g.addr), sluice.WithTLSCA(ca.file), sluice.WithTLSServerName("gw.test"))
		g.attach()
	})
	t.Run("none: the address does not match", func(t *testing.T) {
		r := remoteWorker(t, okHandler, sluice.WithSocket(g.addr), sluice.WithTLSCA(ca.file))
		g.noLink(500 * time.Millisecond)
		if !strings.Contains(r.log.String(), "127.0.0.1") {
			t.Errorf("log: %s", r.log.String())
		}
	})
}

// TestTLSHostName: tls:NAME:PORT resolved to an address still verifies
// (and sends as SNI) NAME; WithTLS supplies the trust.
func TestTLSHostName(t *testing.T) {
	ca := newCA(t, "ca")
	srv, _, _ := ca.issue(t, "gw", false, []string{"gw.test"})
	rec := &hellos{}
	g := newMGW(t, "tcp", "", serverTLS(srv, nil, rec))
	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)
	lookup := func(ctx context.Context, host string) ([]net.IPAddr, error) {
		return []net.IPAddr{{IP: net.ParseIP("127.0.0.1")}}, nil
	}
	remoteWorker(t, okHandler, sluice.WithSocket("tls:gw.test:"+g.port()), sluice.WithLookup(lookup),
		sluice.WithTLS(&tls.Config{RootCAs: pool}))
	l := g.attach()
	if _, body, _ := l.answer(l.get("/")); body != "ok" {
		t.Fatalf("body %q", body)
	}
	sni, _ := rec.last()
	eq(t, "SNI", sni, "gw.test")
}

// TestTLSWrongCA: a gateway certificate from another CA fails the
// handshake; the worker is not attached, retries, and logs it once.
func TestTLSWrongCA(t *testing.T) {
	ca, other := newCA(t, "ca"), newCA(t, "other")
	srv, _, _ := other.issue(t, "gw", false, nil, "127.0.0.1")
	rec := &hellos{}
	g := newMGW(t, "tcp", "", serverTLS(srv, nil, rec))
	r := remoteWorker(t, okHandler, sluice.WithSocket(g.addr), sluice.WithTLSCA(ca.file))
	for i := 0; i < 3; i++ { // retried
		select {
		case <-g.hsErrs:
		case <-time.After(waitTimeout):
			t.Fatalf("%d handshakes", i)
		}
	}
	g.noLink(100 * time.Millisecond)
	logs := r.log.String()
	if strings.Count(logs, "TLS handshake") != 1 {
		t.Errorf("want one TLS handshake failure line:\n%s", logs)
	}
	r.running()
}

// TestTLSConfigErrors: both or neither of the client certificate files;
// no skipping verification; an unreadable CA.
func TestTLSConfigErrors(t *testing.T) {
	ca := newCA(t, "ca")
	_, cf, kf := ca.issue(t, "worker", true, nil)
	t.Run("cert without key", func(t *testing.T) {
		t.Setenv("SLUICE_TLS_CERT", cf)
		if _, err := sluice.NewWorker(okHandler, sluice.WithSocket("tls:127.0.0.1:1")); err == nil ||
			!strings.Contains(err.Error(), "SLUICE_TLS_KEY") {
			t.Errorf("NewWorker: %v", err)
		}
	})
	for name, opt := range map[string]sluice.Option{
		"insecure":   sluice.WithTLS(&tls.Config{InsecureSkipVerify: true}),
		"missing CA": sluice.WithTLSCA(filepath.Join(t.TempDir(), "none.pem")),
		"CA not PEM": sluice.WithTLSCA(kf),
	} {
		if _, err := sluice.NewWorker(okHandler, sluice.WithSocket("tls:127.0.0.1:1"), opt); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
