package clinical

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/wardgate/wardgate/certs/certstest"
	"github.com/wardgate/wardgate/gateway/authority"
)

const (
	td        = "hospital.example"
	pumpSrv   = "spiffe://" + td + "/svc/pump-server"
	otherSvc  = "spiffe://" + td + "/svc/billing"
	maxLife   = 24 * time.Hour
	devicePmp = "pump-07"
)

// pki is a run-time CA (and a foreign one) with PEM files for openssl/curl
// (certs/certstest).
type pki struct {
	ca, wrong *certstest.MiniPKI
	dir       string
	pool      *x509.CertPool
	server    tls.Certificate
	rootFile  string
}

func newPKI(t testing.TB) *pki {
	t.Helper()
	ca, wrong := certstest.NewMini(t), certstest.NewMini(t)
	p := &pki{ca: ca, wrong: wrong, dir: t.TempDir(), pool: ca.Roots()}
	p.rootFile = ca.WriteRoot(t, p.dir)
	leaf, key := ca.Sign(t, &x509.Certificate{
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		URIs:        []*url.URL{mustURL("spiffe://" + td + "/gateway/gw-test")},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, time.Now().Add(-time.Minute), time.Now().Add(4*time.Hour))
	p.server = tls.Certificate{Certificate: [][]byte{leaf.Raw, ca.CA.Intermediate.Raw}, PrivateKey: key, Leaf: leaf}
	return p
}

func mustURL(s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		panic(err)
	}
	return u
}

// cred is a client credential: PEM files for openssl/curl and a tls.Config.
type cred struct {
	certFile, keyFile, chainFile string
	tls                          *tls.Config
}

func (p *pki) client(t testing.TB, name, uri string, ca *certstest.MiniPKI, nb, na time.Time) cred {
	t.Helper()
	c := ca.ClientCred(t, p.dir, name, uri, p.pool, nb, na)
	return cred{certFile: c.CertFile, keyFile: c.KeyFile, chainFile: c.ChainFile, tls: c.TLS}
}

// good returns an allowed, short-lived credential.
func (p *pki) good(t testing.TB) cred {
	return p.client(t, "pump-server", pumpSrv, p.ca, time.Now().Add(-time.Minute), time.Now().Add(time.Hour))
}

// policy is the tests' Authorize: chain against the pool, URI allow-list,
// lifetime, locks, each with a reason code like the certs package's.
type policy struct {
	pool   atomic.Pointer[x509.CertPool]
	allow  map[string]bool
	clock  clockwork.Clock
	mu     sync.Mutex
	locked map[string]bool
	auth   *authority.Authority
}

func newPolicy(p *pki, allow ...string) *policy {
	pol := &policy{allow: map[string]bool{}, clock: clockwork.NewRealClock(), locked: map[string]bool{}}
	pol.pool.Store(p.pool)
	for _, a := range allow {
		pol.allow[a] = true
	}
	return pol
}

func (p *policy) lock(id string) {
	p.mu.Lock()
	p.locked[id] = true
	p.mu.Unlock()
}

func (p *policy) authorize(_ string, chain []*x509.Certificate) (string, string, error) {
	leaf := chain[0]
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	now := p.clock.Now()
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: p.pool.Load(), Intermediates: inter, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		var inv x509.CertificateInvalidError
		if errors.As(err, &inv) && inv.Reason == x509.Expired {
			return "", "expired", err
		}
		return "", "untrusted", err
	}
	if len(leaf.URIs) == 0 {
		return "", "bad_identity", errors.New("no URI SAN")
	}
	id := leaf.URIs[0].String()
	if !p.allow[id] {
		return id, "not_allowed", errors.New("identity not allowed")
	}
	if leaf.NotAfter.Sub(leaf.NotBefore) > maxLife {
		return id, "lifetime_too_long", errors.New("certificate lifetime too long")
	}
	p.mu.Lock()
	locked := p.locked[id]
	p.mu.Unlock()
	if p.auth != nil {
		if l, _ := p.auth.Locked(id); l {
			locked = true
		}
	}
	if locked {
		return id, "locked", errors.New("identity locked")
	}
	return id, "", nil
}

// events collects server events.
type events struct {
	mu  sync.Mutex
	evs []Event
	ch  chan struct{}
}

func newEvents() *events { return &events{ch: make(chan struct{}, 1)} }

func (e *events) add(ev Event) {
	e.mu.Lock()
	e.evs = append(e.evs, ev)
	e.mu.Unlock()
	select {
	case e.ch <- struct{}{}:
	default:
	}
}

func (e *events) all() []Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]Event(nil), e.evs...)
}

// wait returns the first event of kind matching pred, failing after 10s.
func (e *events) wait(t testing.TB, kind string, pred func(Event) bool) Event {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		for _, ev := range e.all() {
			if ev.Kind == kind && (pred == nil || pred(ev)) {
				return ev
			}
		}
		select {
		case <-e.ch:
		case <-deadline:
			t.Fatalf("no %s event; have %+v", kind, e.all())
		}
	}
}

// backend is a device on loopback: handler serves each connection.
type backend struct {
	ln    net.Listener
	wg    sync.WaitGroup
	mu    sync.Mutex
	conns int
}

func newBackend(t testing.TB, handler func(net.Conn)) *backend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &backend{ln: ln}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b.mu.Lock()
			b.conns++
			b.mu.Unlock()
			b.wg.Add(1)
			go func() {
				defer b.wg.Done()
				defer c.Close()
				handler(c)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		b.wg.Wait()
	})
	return b
}

func (b *backend) addr() string { return b.ln.Addr().String() }

func (b *backend) count() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.conns
}

// echo copies back with half-close.
func echo(c net.Conn) {
	_, _ = io.Copy(c, c)
	if cw, ok := c.(closeWriter); ok {
		_ = cw.CloseWrite()
	}
	_, _ = io.Copy(io.Discard, c)
}

// pong answers one line with "PONG <line>" and closes.
func pong(c net.Conn) {
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return
	}
	_, _ = io.WriteString(c, "PONG "+line)
}

// env is a running server with one TCP device.
type env struct {
	t    testing.TB
	p    *pki
	pol  *policy
	auth *authority.Authority
	ev   *events
	s    *Server
	be   *backend
	dev  DeviceOptions
}

func newEnv(t testing.TB, handler func(net.Conn), mod func(*Options, *DeviceOptions)) *env {
	t.Helper()
	p := newPKI(t)
	e := &env{t: t, p: p, pol: newPolicy(p, pumpSrv), ev: newEvents()}
	auth, err := authority.Open(authority.Options{Path: filepath.Join(t.TempDir(), "authority.db"), TrustDomain: td})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { auth.Close() })
	e.auth = auth
	e.pol.auth = auth
	if handler != nil {
		e.be = newBackend(t, handler)
	}
	o := Options{
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &p.server, nil },
		ClientCAs:      func() *x509.CertPool { return p.pool },
		Authorize:      e.pol.authorize,
		Locks:          auth,
		Events:         e.ev.add,
	}
	e.dev = DeviceOptions{ID: devicePmp, Listen: "127.0.0.1:0", Allow: []string{pumpSrv}, MaxCertLifetime: maxLife}
	if e.be != nil {
		e.dev.TCP = e.be.addr()
	}
	if mod != nil {
		mod(&o, &e.dev)
	}
	s, err := New(o, []DeviceOptions{e.dev})
	if err != nil {
		t.Fatal(err)
	}
	e.s = s
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return e
}

func (e *env) addr() string {
	e.t.Helper()
	return e.addrOf(devicePmp)
}

func (e *env) addrOf(id string) string {
	e.t.Helper()
	a, err := e.s.Addr(id)
	if err != nil {
		e.t.Fatal(err)
	}
	return a.String()
}

// dial completes a TLS handshake as c.
func dial(t testing.TB, addr string, c cred) *tls.Conn {
	t.Helper()
	tc, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, c.tls)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	return tc
}

// roundTrip writes msg and reads len(msg) bytes back.
func roundTrip(t testing.TB, c net.Conn, msg string) {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, msg); err != nil {
		t.Fatalf("write: %v", err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("read: %v", err)
	}
	if string(got) != msg {
		t.Fatalf("got %q, want %q", got, msg)
	}
	_ = c.SetDeadline(time.Time{})
}

// needTool returns the path of an external tool: Fatal under CI, Skip
// otherwise when it is missing.
func needTool(t testing.TB, name string) string {
	t.Helper()
	if testing.Short() {
		// -short is the unit-test run (make test-arm under qemu-user).
		t.Skipf("%s integration test skipped in -short mode", name)
	}
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is required (scripts/deps.sh installs it)", name)
		}
		t.Skipf("%s not installed", name)
	}
	return p
}

// waitClosed reads c until it ends, returning how long it took.
func waitClosed(t testing.TB, c net.Conn, max time.Duration) (time.Duration, error) {
	t.Helper()
	start := time.Now()
	_ = c.SetReadDeadline(start.Add(max))
	_, err := io.Copy(io.Discard, c)
	return time.Since(start), err
}
