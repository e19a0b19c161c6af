package access

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/wardgate/wardgate/certs/certstest"
	"github.com/wardgate/wardgate/gateway/access/recording"
	"github.com/wardgate/wardgate/gateway/authority"
)

const (
	td       = "hospital.example"
	joURI    = "spiffe://" + td + "/vendor/acme-medical/jo"
	maxLife  = 12 * time.Hour
	pumpHost = "pump-07.seg"
)

// pki holds a run-time CA (and a foreign one) and PEM files for curl
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
	}, time.Now().Add(-time.Minute), time.Now().Add(time.Hour))
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

// vendor is a vendor credential: files for curl and a tls.Config for Client.
type vendor struct {
	certFile, keyFile string
	tls               *tls.Config
}

func (p *pki) vendor(t testing.TB, name, uri string, ca *certstest.MiniPKI, nb, na time.Time) vendor {
	t.Helper()
	c := ca.ClientCred(t, p.dir, name, uri, p.pool, nb, na)
	c.TLS.ServerName = "" // the Client names the gateway it dials
	return vendor{certFile: c.CertFile, keyFile: c.KeyFile, tls: c.TLS}
}

func writePEM(t testing.TB, path, typ string, ders ...[]byte) {
	t.Helper()
	certstest.WritePEMFile(t, path, typ, ders...)
}

// events collects broker events.
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

// wait returns the first event (from index from on) of kind matching pred.
func (e *events) wait(t testing.TB, kind string, pred func(Event) bool) Event {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		e.mu.Lock()
		for _, ev := range e.evs {
			if ev.Kind == kind && (pred == nil || pred(ev)) {
				e.mu.Unlock()
				return ev
			}
		}
		e.mu.Unlock()
		select {
		case <-e.ch:
		case <-deadline:
			t.Fatalf("no %s event; have %+v", kind, e.all())
		}
	}
}

func (e *events) all() []Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]Event(nil), e.evs...)
}

func (e *events) count(kind string) int {
	n := 0
	for _, ev := range e.all() {
		if ev.Kind == kind {
			n++
		}
	}
	return n
}

// leds records LED hook calls.
type leds struct {
	mu    sync.Mutex
	calls []LEDState
	ch    chan struct{}
}

func (l *leds) set(s LEDState) {
	l.mu.Lock()
	l.calls = append(l.calls, s)
	l.mu.Unlock()
	select {
	case l.ch <- struct{}{}:
	default:
	}
}

// wait awaits the LED showing want: the hook runs after the event that a
// test awaits.
func (l *leds) wait(t testing.TB, want LEDState) {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for l.last() != want {
		select {
		case <-l.ch:
		case <-deadline:
			t.Fatalf("LED %+v, want %+v", l.last(), want)
		}
	}
}

func (l *leds) last() LEDState {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.calls) == 0 {
		return LEDState{}
	}
	return l.calls[len(l.calls)-1]
}

// env is a running broker with an echo device.
type env struct {
	t       testing.TB
	pki     *pki
	clock   *clockwork.FakeClock
	store   *Store
	auth    *authority.Authority
	rec     *recording.Store
	recOpts recording.StoreOptions
	endSeq  atomic.Uint64 // telemetry seq handed to rec.Ended, as the agent does
	b       *Broker
	ev      *events
	led     *leds
	addr    string // vendor listener
	dir     string
	echo    string // backend address
	opts    Options
	cancel  context.CancelFunc
	runDone chan error
	jo      vendor
	authEv  chan authority.Event // the authority's events (dropped when full)
}

func testDevices() []Device {
	return []Device{
		{ID: "pump-07", Org: "acme-medical", Ports: []int{23, 8080}, Approval: []string{KindLocal}, MaxSession: time.Hour, Host: pumpHost, ClinicalPort: 7001},
		{ID: "pump-09", Org: "acme-medical", Ports: []int{23}, Approval: []string{KindCentral}, MaxSession: time.Hour, Host: pumpHost},
		{ID: "pump-11", Org: "acme-medical", Ports: []int{23}, Approval: []string{KindLocal, KindCentral}, MaxSession: 30 * time.Minute, Host: pumpHost},
		{ID: "mon-02", Org: "other-medical", Ports: []int{22}, Approval: []string{KindLocal}, MaxSession: time.Hour, Host: "mon-02.seg"},
	}
}

// echoServer serves an echo on loopback; a line "bye" makes it close.
func echoServer(t testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				sc := bufio.NewScanner(c)
				for sc.Scan() {
					if sc.Text() == "bye" {
						return
					}
					if strings.HasPrefix(sc.Text(), "GET ") {
						// minimal HTTP for curl -p http://...
						for sc.Scan() && sc.Text() != "" && sc.Text() != "\r" {
						}
						fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: 9\r\nConnection: close\r\n\r\npump ok\r\n")
						return
					}
					fmt.Fprintf(c, "echo: %s\n", sc.Text())
				}
			}()
		}
	}()
	return ln.Addr().String()
}

func newEnv(t testing.TB, mod ...func(*Options)) *env {
	t.Helper()
	return newEnvRec(t, recording.StoreOptions{}, mod...)
}

// newEnvRec is newEnv with the recording store opened with ro (its Clock
// is the env's).
func newEnvRec(t testing.TB, ro recording.StoreOptions, mod ...func(*Options)) *env {
	t.Helper()
	e := &env{t: t, pki: newPKI(t), clock: clockwork.NewFakeClockAt(time.Now()), ev: newEvents(), led: &leds{ch: make(chan struct{}, 1)}, dir: t.TempDir(),
		authEv: make(chan authority.Event, 100)}
	ro.Clock = e.clock
	ro.Logger = slog.New(slog.DiscardHandler)
	e.recOpts = ro
	e.openAuthority()
	t.Cleanup(func() { e.auth.Close() })
	e.echo = echoServer(t)
	e.jo = e.pki.vendor(t, "jo", joURI, e.pki.ca, time.Now().Add(-time.Minute), time.Now().Add(4*time.Hour))
	e.opts = Options{
		Devices:        testDevices(),
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &e.pki.server, nil },
		ClientCAs:      func() *x509.CertPool { return e.pki.pool },
		Authorize:      e.authorize,
		Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			host, _, _ := net.SplitHostPort(addr)
			if host != pumpHost {
				return nil, errors.New("no route to " + addr)
			}
			var d net.Dialer
			return d.DialContext(ctx, network, e.echo)
		},
		Events:    e.onEvent,
		LED:       e.led.set,
		Clock:     e.clock,
		Logger:    slog.New(slog.DiscardHandler),
		Authority: e.auth,
	}
	for _, m := range mod {
		m(&e.opts)
	}
	e.start()
	t.Cleanup(e.stop)
	return e
}

// authorize does what the identity package's verifier will: vendor URI,
// configured org, lifetime no longer than the org's max_cert_lifetime, not
// locked.
func (e *env) authorize(chain []*x509.Certificate) (VendorIdentity, string, error) {
	leaf := chain[0]
	var v VendorIdentity
	var err error = errors.New("no URI SAN")
	for _, u := range leaf.URIs {
		if v, err = ParseVendorURI(u); err == nil {
			break
		}
	}
	if err != nil {
		return v, "certificate carries no vendor identity", err
	}
	if v.Org != "acme-medical" && v.Org != "other-medical" {
		return v, "vendor org " + v.Org + " is not configured on this gateway", errors.New("unknown org")
	}
	if life := leaf.NotAfter.Sub(leaf.NotBefore); life > maxLife {
		msg := fmt.Sprintf("certificate lifetime %s exceeds the %s allowed for %s: use a short-lived certificate", life.Round(time.Minute), maxLife, v.Org)
		return v, msg, errors.New("lifetime")
	}
	if locked, why := e.auth.Locked(v.URI); locked {
		return v, why, errors.New("locked")
	}
	return v, "", nil
}

func (e *env) openAuthority() {
	auth, err := authority.Open(authority.Options{Path: filepath.Join(e.dir, "authority.db"), TrustDomain: td, Clock: e.clock,
		Events: func(ev authority.Event) {
			select {
			case e.authEv <- ev:
			default:
			}
		}})
	if err != nil {
		e.t.Fatal(err)
	}
	e.auth = auth
}

// authWait awaits the authority's next event of kind.
func (e *env) authWait(kind string) authority.Event {
	e.t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case ev := <-e.authEv:
			if ev.Kind == kind {
				return ev
			}
		case <-deadline:
			e.t.Fatalf("no authority event %s", kind)
		}
	}
}

// restartAt stops the broker and the authority and starts both again on a
// clock showing at (a restart with a different clock).
func (e *env) restartAt(at time.Time) {
	e.stop()
	e.auth.Close()
	e.clock = clockwork.NewFakeClockAt(at)
	e.opts.Clock, e.recOpts.Clock = e.clock, e.clock
	e.openAuthority()
	e.opts.Authority = e.auth
	e.ev = newEvents()
	e.start()
}

func (e *env) start() {
	t := e.t
	var err error
	if e.store, err = OpenStore(filepath.Join(e.dir, "access.db")); err != nil {
		t.Fatal(err)
	}
	e.opts.Store = e.store
	// A fresh recording store each start, as after a restart of the process.
	if e.rec, err = recording.OpenStore(e.recDir(), e.recOpts); err != nil {
		t.Fatal(err)
	}
	e.opts.Recordings = e.rec
	if e.b, err = New(e.opts); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.addr = ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	e.cancel = cancel
	e.runDone = make(chan error, 1)
	go func() { e.runDone <- e.b.Run(ctx, ln) }()
}

func (e *env) recDir() string { return filepath.Join(e.dir, "recordings") }

// onEvent collects ev and, like the agent, records the end of a session in
// the recording store once its end event is published.
func (e *env) onEvent(ev Event) {
	if ev.Kind == EvSessionEnd {
		if err := e.rec.Ended(ev.Session, e.endSeq.Add(1)); err != nil {
			e.t.Errorf("Ended(%s): %v", ev.Session, err)
		}
	}
	e.ev.add(ev)
}

func (e *env) stop() {
	if e.cancel == nil {
		return
	}
	e.cancel()
	if err := <-e.runDone; err != nil {
		e.t.Errorf("Run: %v", err)
	}
	if err := e.b.Close(); err != nil {
		e.t.Error(err)
	}
	if err := e.b.Close(); err != nil {
		e.t.Error(err)
	}
	if err := e.store.Close(); err != nil {
		e.t.Error(err)
	}
	e.cancel = nil
}

// lastSource numbers the loopback source addresses of env clients.
var lastSource atomic.Uint32

// client connects from a loopback address of its own (127.0.x.y), so that
// the broker's folding of refusal events per source never hides a
// refusal a test awaits; TestRefusalFloodIsBounded tests the folding.
func (e *env) client(v vendor, target string) *Client {
	n := lastSource.Add(1)%(1<<16-2) + 1
	src := &net.TCPAddr{IP: net.IPv4(127, 0, byte(n>>8), byte(n))}
	d := net.Dialer{LocalAddr: src}
	return &Client{Gateway: e.addr, Target: target, TLS: v.tls, Reason: "alarm E42 on pump", Dial: d.DialContext}
}

func (e *env) dial(v vendor, target string) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return e.client(v, target).DialTunnel(ctx)
}

func (e *env) refused(v vendor, target string) *RefusedError {
	e.t.Helper()
	c, err := e.dial(v, target)
	if err == nil {
		c.Close()
		e.t.Fatalf("CONNECT %s succeeded", target)
	}
	var re *RefusedError
	if !errors.As(err, &re) {
		e.t.Fatalf("CONNECT %s: %v", target, err)
	}
	return re
}

// pendingID makes jo ask for target and returns the request id.
func (e *env) request(v vendor, target string) string {
	e.t.Helper()
	re := e.refused(v, target)
	if re.Code != CodeNoGrant && re.Code != CodeExpired || re.Request == "" {
		e.t.Fatalf("want a new request, got %+v", re)
	}
	return re.Request
}

// tunnel opens an approved tunnel and checks it echoes.
func (e *env) tunnel(v vendor, target string) net.Conn {
	e.t.Helper()
	c, err := e.dial(v, target)
	if err != nil {
		e.t.Fatalf("CONNECT %s: %v", target, err)
	}
	e.roundTrip(c, "hello")
	return c
}

func (e *env) roundTrip(c net.Conn, s string) {
	e.t.Helper()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := fmt.Fprintf(c, "%s\n", s); err != nil {
		e.t.Fatal(err)
	}
	buf := make([]byte, len("echo: ")+len(s)+1)
	if _, err := io.ReadFull(c, buf); err != nil {
		e.t.Fatalf("read echo: %v", err)
	}
	if string(buf) != "echo: "+s+"\n" {
		e.t.Fatalf("echo %q", buf)
	}
	_ = c.SetDeadline(time.Time{})
}

// waitCut asserts that the tunnel is closed by the gateway within 1 s.
func waitCut(t *testing.T, c net.Conn) {
	t.Helper()
	start := time.Now()
	_ = c.SetReadDeadline(time.Now().Add(time.Second))
	buf := make([]byte, 64)
	for {
		_, err := c.Read(buf)
		if err == nil {
			continue
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("tunnel still open after %s", time.Since(start))
		}
		return
	}
}
