package telemetry

import (
	"bytes"
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wardgate/wardgate/wire"

	"github.com/wardgate/wardgate/certs/certstest"
	"github.com/wardgate/wardgate/wire/envelope"
)

func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("TELEMETRY_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

func approverHook(pki *certstest.MiniPKI) func([]*x509.Certificate, time.Time) (string, error) {
	roots := envelope.RootsVerifier(pki.Roots())
	return func(chain []*x509.Certificate, now time.Time) (string, error) {
		id, err := roots(chain, now)
		if err != nil {
			return "", err
		}
		if !strings.HasPrefix(id, "spiffe://"+certstest.MiniTrustDomain+"/approver/") {
			return "", errors.New("not an approver identity")
		}
		return id, nil
	}
}

// centralID is central's identity in the mini PKI.
const centralID = "spiffe://" + certstest.MiniTrustDomain + "/svc/central"

// centralHook accepts central's identity only (VerifyCentral).
func centralHook(pki *certstest.MiniPKI) func([]*x509.Certificate, time.Time) (string, error) {
	roots := envelope.RootsVerifier(pki.Roots())
	return func(chain []*x509.Certificate, now time.Time) (string, error) {
		id, err := roots(chain, now)
		if err != nil || id != centralID {
			return "", errors.New("not central")
		}
		return id, nil
	}
}

// gatewayOptions returns publisher options for gateway id using identity
// idn, with hooks shaped as the lead wires them.
func gatewayOptions(t testing.TB, pki *certstest.MiniPKI, brokerURL, id string, idn *certstest.Identity, dir string) Options {
	cert := idn.TLS()
	return Options{
		GatewayID: id, Site: "st-test", Version: "test", ConfigHash: "00",
		Brokers: []string{brokerURL},
		TLSConfig: func(string) *tls.Config {
			return &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pki.Roots(), ServerName: "localhost",
				GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }}
		},
		Signer:         func() (crypto.Signer, []*x509.Certificate) { return idn.Key, idn.Chain },
		Logger:         testLogger(t),
		OutboxPath:     filepath.Join(dir, "telemetry.db"),
		BackoffMin:     50 * time.Millisecond,
		BackoffMax:     500 * time.Millisecond,
		Timeout:        5 * time.Second,
		KeepAlive:      5 * time.Second,
		VerifyApprover: approverHook(pki),
	}
}

// runPublisher starts p.Run; the returned stop cancels it and waits.
func runPublisher(t testing.TB, p *Publisher) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(30 * time.Second):
				t.Errorf("Run did not return")
			}
			p.Close()
		})
	}
	t.Cleanup(stop)
	return stop
}

// consumer is a tail collecting lines.
type consumer struct {
	out   lockedBuffer // the JSON lines Tail wrote
	mu    sync.Mutex
	lines []wire.Line
	byGW  map[string]map[uint64]wire.Line
	ch    chan wire.Line
}

func (c *consumer) add(l wire.Line) {
	c.mu.Lock()
	c.lines = append(c.lines, l)
	if l.Alert == "" {
		if c.byGW[l.Gateway] == nil {
			c.byGW[l.Gateway] = map[uint64]wire.Line{}
		}
		c.byGW[l.Gateway][l.Seq] = l
	}
	c.mu.Unlock()
	select {
	case c.ch <- l:
	default:
	}
}

func (c *consumer) has(gw string, seq uint64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.byGW[gw][seq]
	return ok
}

func (c *consumer) get(gw string, seq uint64) (wire.Line, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	l, ok := c.byGW[gw][seq]
	return l, ok
}

func (c *consumer) alerts() []wire.Line {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []wire.Line
	for _, l := range c.lines {
		if l.Alert != "" {
			out = append(out, l)
		}
	}
	return out
}

// waitFor waits until cond holds or the deadline passes.
func (c *consumer) waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(d)
	for !cond() {
		select {
		case <-c.ch:
		case <-time.After(100 * time.Millisecond):
		case <-deadline:
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
	}
}

// startConsumer runs Tail as "central" with a persistent session.
func startConsumer(t testing.TB, pki *certstest.MiniPKI, brokerURL, gateway string) *consumer {
	central := pki.Issue(t, "central", "spiffe://"+certstest.MiniTrustDomain+"/svc/central")
	c := &consumer{byGW: map[string]map[uint64]wire.Line{}, ch: make(chan wire.Line, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- Tail(ctx, TailOptions{
			BrokerURL: brokerURL, TLSConfig: pki.ClientTLS(central), Verify: envelope.RootsVerifier(pki.Roots()),
			Gateway: gateway, ClientID: "central-" + strings.ReplaceAll(t.Name(), "/", "-"), Persistent: true,
			Out: &c.out, OnLine: c.add, Ready: ready, Logger: testLogger(t),
		})
	}()
	select {
	case <-ready:
	case <-time.After(30 * time.Second):
		t.Fatal("tail did not subscribe")
	}
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Tail: %v", err)
		}
	})
	return c
}

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func sampleMetrics() wire.Metrics {
	temp := 48.5
	return wire.Metrics{
		Devices: []wire.DeviceMetrics{
			{ID: "pump-07", BytesIn: 123456, BytesOut: 65432, Connections: 12, HandshakeFailures: 1, AuthFailures: 2, LinkUp: true},
			{ID: "monitor-3", BytesIn: 9876543, BytesOut: 12345, Connections: 3, LinkUp: false},
		},
		CPUPercent: 12.5, MemoryUsedBytes: 412 << 20, MemoryTotalBytes: 1 << 30,
		DiskUsedBytes: 3 << 30, DiskTotalBytes: 16 << 30, TemperatureC: &temp,
		CertExpiresIn: 3 * time.Hour, OutboxDepth: 17, OutboxAge: 42 * time.Second,
		ListeningPorts: []int{8443, 7001, 7002},
	}
}

func day(s string) time.Time {
	t, err := time.Parse("2006-01-02", s)
	if err != nil {
		panic(err)
	}
	return t
}

func sampleInventory() wire.Inventory {
	return wire.Inventory{Devices: []wire.Device{{
		ID: "pump-07", Kind: "infusion-pump", Manufacturer: "Acme Medical", Model: "AP-200", Serial: "AP2-0042",
		Firmware: "3.1.4", Owner: "clinical-engineering/icu", Location: "ICU-3 bed 12", Link: "tcp",
		VendorOrg: "acme-medical", VendorPorts: []int{23, 8080}, Approval: []string{"local"},
		Accounts: []wire.Account{
			{ID: "acme-svc", Type: "shared-password", Owner: "clinical-engineering/icu", Vendor: "acme-medical",
				RotateEvery: 90 * 24 * time.Hour, LastRotated: day("2026-09-01")},
			{ID: "fresh", Type: "api-key", Owner: "it/ops", RotateEvery: 90 * 24 * time.Hour, LastRotated: day("2026-11-01")},
		},
		Exceptions: []wire.Exception{
			{ID: "EX-2026-014", Control: "PR.PS-02", Reason: "vendor has not validated OS patches",
				Compensating: []string{"segmentation"}, ApprovedBy: "ciso/jdoe", Expires: day("2026-12-15")},
			{ID: "EX-2026-001", Control: "PR.AA-01", Reason: "shared account", ApprovedBy: "ciso/jdoe", Expires: day("2026-11-01")},
			{ID: "EX-2027-002", Control: "PR.DS-01", Reason: "plaintext", ApprovedBy: "ciso/jdoe", Expires: day("2027-06-01")},
		},
	}}}
}
