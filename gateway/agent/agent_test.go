package agent

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
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wardgate/wardgate/certs"
	"github.com/wardgate/wardgate/config"
	"github.com/wardgate/wardgate/gateway/access"
	"github.com/wardgate/wardgate/wire/command"
)

// env is a running agent on loopback with a development CA.
type env struct {
	t      testing.TB
	dir    string
	ca     *certs.DevCA
	a      *Agent
	pre    map[string]net.Listener
	addrs  map[string]string // name -> address
	echo   net.Listener
	svc    net.Listener // the device's vendor service port (echo too)
	logger *slog.Logger // nil: discard
	extra  string       // appended to the configuration text (top-level sections)
	cancel context.CancelFunc
	done   chan error
}

func newEnv(t testing.TB) *env {
	t.Helper()
	ca, err := certs.NewDevCA(certs.DevCAOptions{Name: "agent test"})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, dir: t.TempDir(), ca: ca, pre: map[string]net.Listener{}, addrs: map[string]string{}}
	for _, n := range []string{"vendor", "pump", "pump2", "mon", "broker"} {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		e.pre[l.Addr().String()] = l
		e.addrs[n] = l.Addr().String()
		t.Cleanup(func() { l.Close() })
	}
	e.pre[e.addrs["broker"]].Close() // nothing answers there: telemetry queues
	// The device: an echo server on the "isolated segment" for the
	// clinical port, and another for its vendor service port.
	echo := func() net.Listener {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				go func() { defer c.Close(); io.Copy(c, c) }()
			}
		}()
		t.Cleanup(func() { l.Close() })
		return l
	}
	e.echo, e.svc = echo(), echo()
	return e
}

func (e *env) config(pumpAllow string) *config.Config {
	e.t.Helper()
	cfg, err := config.Parse("test.yaml", []byte(e.configText(pumpAllow)), time.Now())
	if err != nil {
		e.t.Fatal(err)
	}
	return cfg
}

// configText is the test configuration's text.
func (e *env) configText(pumpAllow string) string {
	return fmt.Sprintf(`version: 1
gateway: {id: gw-t, site: lab, trust_domain: hospital.example, state_dir: %[1]s/state,
          vendor_listen: %[2]q, admin_socket: %[1]s/admin.sock, drain_timeout: 1s}
identity: {ca: dev}
mqtt: {broker: "mqtts://%[3]s"}
hal: {driver: sim}
vendors:
  - {org: acme-medical, identities: ["spiffe://hospital.example/vendor/acme-medical/*"], max_cert_lifetime: 12h}
devices:
  - id: pump-07
    owner: ce/icu
    link: {tcp: %[4]q}
    clinical: {listen: %[5]q, allow: [%[6]q]}
    vendor: {org: acme-medical, host: 127.0.0.1, ports: [%[7]s], approval: [local, central]}
  - id: pump-08
    owner: ce/icu
    link: {tcp: %[4]q}
    clinical: {listen: %[8]q, allow: ["spiffe://hospital.example/svc/pump-server"]}
`, e.dir, e.addrs["vendor"], e.addrs["broker"], e.echo.Addr().String(), e.addrs["pump"], pumpAllow,
		strings.Split(e.svc.Addr().String(), ":")[1], e.addrs["pump2"]) + e.extra
}

func (e *env) start(cfg *config.Config) {
	e.t.Helper()
	e.startWith(Options{Config: cfg})
}

// startWith starts the agent with o; DevCA, Logger, Listen and Ready are
// the env's.
func (e *env) startWith(o Options) {
	e.t.Helper()
	ready := make(chan struct{})
	var once sync.Once
	logger := e.logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	o.DevCA, o.Logger = e.ca, logger
	o.Listen = func(network, addr string) (net.Listener, error) {
		if l, ok := e.pre[addr]; ok {
			delete(e.pre, addr)
			return l, nil
		}
		return net.Listen(network, addr)
	}
	o.Ready = func() { once.Do(func() { close(ready) }) }
	a, err := New(o)
	if err != nil {
		e.t.Fatal(err)
	}
	e.a = a
	ctx, cancel := context.WithCancel(context.Background())
	e.cancel, e.done = cancel, make(chan error, 1)
	go func() { e.done <- a.Run(ctx) }()
	select {
	case <-ready:
	case err := <-e.done:
		e.t.Fatalf("agent stopped: %v", err)
	}
	e.t.Cleanup(func() {
		cancel()
		if err := <-e.done; err != nil {
			e.t.Errorf("Run: %v", err)
		}
		a.Close()
	})
}

func (e *env) cert(uri string, life time.Duration) tls.Certificate {
	c, err := e.ca.Issue(certs.IssueOptions{URI: uri, Lifetime: life})
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

func (e *env) dial(addr string, cert tls.Certificate) (*tls.Conn, *bufio.Reader, error) {
	roots := x509.NewCertPool()
	roots.AddCert(e.ca.Root())
	c, err := tls.Dial("tcp", addr, &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: roots, ServerName: "gw-t"})
	if err != nil {
		return nil, nil, err
	}
	return c, bufio.NewReader(c), nil
}

// roundTrip writes a line and reads the echo.
func roundTrip(c net.Conn, r *bufio.Reader, s string) error {
	c.SetDeadline(time.Now().Add(5 * time.Second))
	defer c.SetDeadline(time.Time{})
	if _, err := io.WriteString(c, s+"\n"); err != nil {
		return err
	}
	got, err := r.ReadString('\n')
	if err != nil {
		return err
	}
	if strings.TrimSpace(got) != s {
		return fmt.Errorf("echo %q, want %q", got, s)
	}
	return nil
}

const pumpServer = "spiffe://hospital.example/svc/pump-server"

func TestReloadKeepsUnchangedDevices(t *testing.T) {
	e := newEnv(t)
	e.start(e.config(pumpServer))
	cert := e.cert(pumpServer, time.Hour)
	c1, r1, err := e.dial(e.addrs["pump"], cert)
	if err != nil {
		t.Fatal(err)
	}
	defer c1.Close()
	c2, r2, err := e.dial(e.addrs["pump2"], cert)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if err := errors.Join(roundTrip(c1, r1, "a"), roundTrip(c2, r2, "b")); err != nil {
		t.Fatal(err)
	}
	// pump-07's allow list changes; pump-08 does not.
	if err := e.a.Reload(e.config("spiffe://hospital.example/svc/other")); err != nil {
		t.Fatal(err)
	}
	if err := roundTrip(c2, r2, "still here"); err != nil {
		t.Errorf("unchanged device lost its session: %v", err)
	}
	if err := roundTrip(c1, r1, "gone"); err == nil {
		t.Error("changed device kept its session")
	}
	if _, r, err := e.dial(e.addrs["pump"], cert); err == nil {
		if c, _, _ := e.dial(e.addrs["pump"], cert); c != nil {
			err = roundTrip(c, r, "x")
			c.Close()
		}
		if err == nil {
			t.Error("identity no longer allowed still gets through")
		}
	}
	// Changes only a restart can apply are refused, and nothing changes.
	bad := e.config(pumpServer)
	bad.Gateway.ID = "gw-other"
	if err := e.a.Reload(bad); err == nil || !strings.Contains(err.Error(), "needs a restart") {
		t.Errorf("gateway id change: %v", err)
	}
	if err := roundTrip(c2, r2, "after refused reload"); err != nil {
		t.Errorf("refused reload disturbed a session: %v", err)
	}
}

func TestLockCutsClinicalWithinASecond(t *testing.T) {
	e := newEnv(t)
	e.start(e.config(pumpServer))
	c, r, err := e.dial(e.addrs["pump"], e.cert(pumpServer, time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := roundTrip(c, r, "hello"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := e.a.auth.AddLock("spiffe://hospital.example/svc/*", time.Time{}, "test", access.Actor{Kind: access.KindLocal, Via: "admin"}); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := r.ReadByte(); err == nil {
		t.Fatal("read succeeded after lock")
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("cut after %v, want within 1s", d)
	}
	if c2, r2, err := e.dial(e.addrs["pump"], e.cert(pumpServer, time.Hour)); err == nil {
		if roundTrip(c2, r2, "x") == nil {
			t.Error("locked identity reconnected")
		}
		c2.Close()
	}
}

func TestClinicalPolicy(t *testing.T) {
	e := newEnv(t)
	e.start(e.config(pumpServer))
	serverOnly, err := e.ca.Issue(certs.IssueOptions{URI: pumpServer, Lifetime: time.Hour, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		cert tls.Certificate
		ok   bool
	}{
		{"allowed", e.cert(pumpServer, time.Hour), true},
		{"other identity", e.cert("spiffe://hospital.example/svc/billing", time.Hour), false},
		{"vendor on the clinical port", e.cert("spiffe://hospital.example/vendor/acme-medical/jane", time.Hour), false},
		{"longer-lived than allowed", e.cert(pumpServer, 48*time.Hour), false},
		{"not for client authentication", serverOnly, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, r, err := e.dial(e.addrs["pump"], tc.cert)
			if err == nil {
				err = roundTrip(c, r, "ping")
				c.Close()
			}
			if (err == nil) != tc.ok {
				t.Errorf("got %v, want ok=%v", err, tc.ok)
			}
		})
	}
}

func TestCentralCommands(t *testing.T) {
	e := newEnv(t)
	e.start(e.config(pumpServer))
	approver := "spiffe://hospital.example/approver/security/alice"
	// A vendor asks: the request needs local and central approval.
	vendor := e.cert("spiffe://hospital.example/vendor/acme-medical/jane", time.Hour)
	roots := x509.NewCertPool()
	roots.AddCert(e.ca.Root())
	port := strings.Split(e.svc.Addr().String(), ":")[1]
	cl := &access.Client{Gateway: e.addrs["vendor"], Target: "pump-07:" + port,
		TLS: &tls.Config{Certificates: []tls.Certificate{vendor}, RootCAs: roots, ServerName: "gw-t"}}
	_, err := cl.DialTunnel(context.Background())
	var re *access.RefusedError
	if !errors.As(err, &re) || re.Request == "" {
		t.Fatalf("want a recorded request, got %v", err)
	}
	run := func(name string, args ...string) (string, error) {
		return e.a.command(context.Background(), command.Command{Payload: command.Payload{Name: name, Args: args}, Approver: approver})
	}
	if res, err := run(command.Approve, re.Request); err != nil || !strings.Contains(res, "still needs") {
		t.Fatalf("central approval: %q %v", res, err)
	}
	if _, err := e.a.access.Approve(re.Request, access.Actor{Kind: access.KindLocal, Via: "admin"}); err != nil {
		t.Fatal(err)
	}
	tun, err := cl.DialTunnel(context.Background())
	if err != nil {
		t.Fatalf("after dual approval: %v", err)
	}
	defer tun.Close()
	if _, err := run(command.Lock, "spiffe://hospital.example/vendor/acme-medical/*", "1h", "incident"); err != nil {
		t.Fatal(err)
	}
	tun.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := tun.Read(make([]byte, 1)); err == nil {
		t.Error("tunnel survived an org-wide lock")
	}
	if _, err := run(command.ClearTamper); err != nil {
		t.Errorf("clear-tamper without tamper: %v", err)
	}
	if _, err := run("reboot"); err == nil {
		t.Error("unknown command accepted")
	}
	// The approver policy: only approver identities of the trust domain.
	ok := e.cert(approver, time.Hour)
	chain := func(c tls.Certificate) []*x509.Certificate {
		var out []*x509.Certificate
		for _, der := range c.Certificate {
			x, _ := x509.ParseCertificate(der)
			out = append(out, x)
		}
		return out
	}
	if _, err := e.a.verifier.Verify(chain(ok), e.a.pol.Load().approver); err != nil {
		t.Errorf("approver refused: %v", err)
	}
	if _, err := e.a.verifier.Verify(chain(vendor), e.a.pol.Load().approver); err == nil {
		t.Error("a vendor was accepted as an approver")
	}
	// The central policy: exactly spiffe://TD/svc/central (which the
	// publisher accepts for rebirth and inventory only).
	central := e.cert("spiffe://hospital.example/svc/central", time.Hour)
	if _, err := e.a.verifier.Verify(chain(central), e.a.pol.Load().central); err != nil {
		t.Errorf("central refused: %v", err)
	}
	if _, err := e.a.verifier.Verify(chain(central), e.a.pol.Load().approver); err == nil {
		t.Error("central was accepted as an approver")
	}
	for _, c := range []tls.Certificate{ok, vendor, e.cert("spiffe://hospital.example/svc/central-2", time.Hour)} {
		if _, err := e.a.verifier.Verify(chain(c), e.a.pol.Load().central); err == nil {
			t.Errorf("%s accepted as central", chain(c)[0].URIs[0])
		}
	}
}

func TestStatusAndRenew(t *testing.T) {
	e := newEnv(t)
	e.start(e.config(pumpServer))
	before := e.a.Status()
	if before.Gateway.ID != "gw-t" || len(before.Devices) != 2 || before.Identity.URI != "spiffe://hospital.example/gateway/gw-t" {
		t.Fatalf("status: %+v", before)
	}
	if before.Gateway.State != "degraded" { // the broker is unreachable
		t.Errorf("state %q, want degraded", before.Gateway.State)
	}
	serial, err := e.a.renewNow(context.Background(), true)
	if err != nil {
		t.Fatal(err)
	}
	if serial == before.Identity.Serial {
		t.Error("re-key kept the serial")
	}
	if got := fmt.Sprintf("%x", e.a.ident.Chain()[0].SerialNumber); got != serial {
		t.Errorf("current serial %s, want %s", got, serial)
	}
	if filepath.Base(e.a.cfg().Gateway.AdminSocket) != "admin.sock" {
		t.Error("admin socket path")
	}
}
