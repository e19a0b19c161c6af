package certs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
)

func TestVerifyReasons(t *testing.T) {
	clk := clockwork.NewFakeClockAt(time.Now())
	ca := newDevCA(t, clk, time.Hour)
	other := newDevCA(t, clk, time.Hour)
	v := NewVerifier(ca.Bundle(), clk)
	vendor := VendorURI(testTD, "acme-medical", "jane")
	issue := func(o IssueOptions) []*x509.Certificate {
		tc, err := ca.Issue(o)
		if err != nil {
			t.Fatal(err)
		}
		return leafChain(t, tc)
	}
	good := issue(IssueOptions{URI: vendor, Lifetime: time.Hour})
	untrusted, err := other.Issue(IssueOptions{URI: vendor, Lifetime: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	locked := func(id Identity) (bool, string) { return id.Person == "mallory", "by security" }
	policy := PeerPolicy{TrustDomain: testTD, Allow: []Pattern{MustCompilePattern("spiffe://hospital.example/vendor/acme-medical/*")}, MaxLifetime: 12 * time.Hour, Locked: locked}

	tests := []struct {
		name   string
		chain  []*x509.Certificate
		policy PeerPolicy
		reason string
	}{
		{"accepted", good, policy, ""},
		{"no certificate", nil, policy, ReasonNoCertificate},
		{"untrusted", leafChain(t, untrusted), policy, ReasonUntrusted},
		{"expired", issue(IssueOptions{URI: vendor, NotBefore: clk.Now().Add(-2 * time.Hour), Lifetime: time.Hour}), policy, ReasonExpired},
		{"not yet valid", issue(IssueOptions{URI: vendor, NotBefore: clk.Now().Add(time.Hour), Lifetime: time.Hour}), policy, ReasonExpired},
		{"other org", issue(IssueOptions{URI: VendorURI(testTD, "evil", "jane")}), policy, ReasonNotAllowed},
		{"empty allow list", good, PeerPolicy{TrustDomain: testTD}, ReasonNotAllowed},
		{"too long lived", issue(IssueOptions{URI: vendor, Lifetime: 13 * time.Hour}), policy, ReasonLifetimeTooLong},
		{"max lifetime plus step-ca backdate", issue(IssueOptions{URI: vendor, Lifetime: 12*time.Hour + time.Minute}), policy, ""},
		{"max lifetime plus more than the slack", issue(IssueOptions{URI: vendor, Lifetime: 12*time.Hour + LifetimeSlack + time.Second}), policy, ReasonLifetimeTooLong},
		{"default max lifetime", issue(IssueOptions{URI: vendor, Lifetime: 25 * time.Hour}), PeerPolicy{TrustDomain: testTD, Allow: policy.Allow}, ReasonLifetimeTooLong},
		{"locked", issue(IssueOptions{URI: VendorURI(testTD, "acme-medical", "mallory")}), policy, ReasonLocked},
		{"no spiffe uri", issue(IssueOptions{CommonName: "plain"}), policy, ReasonBadIdentity},
		{"other trust domain", issue(IssueOptions{URI: VendorURI("other.example", "acme-medical", "jane")}), policy, ReasonBadIdentity},
		{"server usage required", good, PeerPolicy{TrustDomain: testTD, Allow: policy.Allow, Usage: x509.ExtKeyUsageServerAuth}, ""},
		{"trust domain from the pattern", good, PeerPolicy{Allow: policy.Allow}, ""},
		{"other trust domain, no policy domain", issue(IssueOptions{URI: VendorURI("other.example", "acme-medical", "jane")}), PeerPolicy{Allow: policy.Allow}, ReasonNotAllowed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, err := v.Verify(tt.chain, tt.policy)
			if got := PeerReason(err); got != tt.reason {
				t.Fatalf("reason %q, want %q (err %v)", got, tt.reason, err)
			}
			if tt.reason == "" && id.Kind != KindVendor {
				t.Fatalf("identity %+v", id)
			}
			var pe *PeerError
			if err != nil && (!errors.As(err, &pe) || pe.Error() == "") {
				t.Fatalf("not a PeerError: %v", err)
			}
		})
	}
}

func TestVerifyBundleRollover(t *testing.T) {
	clk := clockwork.NewFakeClockAt(time.Now())
	oldCA, newCA := newDevCA(t, clk, time.Hour), newDevCA(t, clk, time.Hour)
	b := NewBundle(oldCA.Root())
	v := NewVerifier(b, clk)
	p := PeerPolicy{TrustDomain: testTD, Allow: []Pattern{MustCompilePattern("spiffe://hospital.example/svc/*")}}
	a, _ := oldCA.Issue(IssueOptions{URI: ServiceURI(testTD, "a")})
	n, _ := newCA.Issue(IssueOptions{URI: ServiceURI(testTD, "b")})
	if _, err := v.Verify(leafChain(t, n), p); PeerReason(err) != ReasonUntrusted {
		t.Fatalf("new root trusted before rollover: %v", err)
	}
	if !b.Set([]*x509.Certificate{oldCA.Root(), newCA.Root(), newCA.Root()}) {
		t.Fatal("Set did not report a change")
	}
	if b.Set([]*x509.Certificate{newCA.Root(), oldCA.Root()}) {
		t.Fatal("same set reported as changed")
	}
	if len(b.Roots()) != 2 {
		t.Fatalf("roots %d", len(b.Roots()))
	}
	for _, c := range []tls.Certificate{a, n} {
		if _, err := v.Verify(leafChain(t, c), p); err != nil {
			t.Fatal(err)
		}
	}
	b.Set([]*x509.Certificate{newCA.Root()})
	if _, err := v.Verify(leafChain(t, a), p); PeerReason(err) != ReasonUntrusted {
		t.Fatalf("old root still trusted: %v", err)
	}
	roots, err := ParseCertsPEM(b.PEM())
	if err != nil || len(roots) != 1 {
		t.Fatalf("PEM round trip: %v", err)
	}
}

// TestServerTLSConfig runs real handshakes through ServerTLSConfig and
// ClientTLSConfig and checks the reason hook.
func TestServerTLSConfig(t *testing.T) {
	clk := clockwork.NewRealClock()
	ca := newDevCA(t, clk, time.Hour)
	v := NewVerifier(ca.Bundle(), clk)
	srvCert, _ := ca.Issue(IssueOptions{URI: GatewayURI(testTD, "gw-01"), IPs: []net.IP{net.ParseIP("127.0.0.1")}})
	srv := staticSource(&srvCert)
	reasons := make(chan string, 10)
	p := PeerPolicy{TrustDomain: testTD, Allow: []Pattern{MustCompilePattern("spiffe://hospital.example/svc/*")}}
	cfg := v.ServerTLSConfig(srv, p, func(_ Identity, err error) { reasons <- PeerReason(err) })
	l, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				_ = c.(*tls.Conn).Handshake()
				_, _ = c.Write([]byte("x"))
				c.Close()
			}()
		}
	}()
	dial := func(cert tls.Certificate) error {
		cc := v.ClientTLSConfig(staticSource(&cert), "127.0.0.1")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c, err := (&tls.Dialer{Config: cc}).DialContext(ctx, "tcp", l.Addr().String())
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Read(make([]byte, 1))
		return err
	}
	okCert, _ := ca.Issue(IssueOptions{URI: ServiceURI(testTD, "pump-server")})
	if err := dial(okCert); err != nil {
		t.Fatalf("allowed client: %v", err)
	}
	if r := <-reasons; r != "" {
		t.Fatalf("reason %q", r)
	}
	// A client that checks the gateway by its SPIFFE identity.
	gwPolicy := PeerPolicy{Allow: []Pattern{MustCompilePattern(GatewayURI(testTD, "gw-01"))}}
	pc := v.ClientTLSConfigPolicy(staticSource(&okCert), gwPolicy, nil)
	if c, err := tls.Dial("tcp", l.Addr().String(), pc); err != nil {
		t.Fatalf("policy client: %v", err)
	} else {
		c.Close()
	}
	<-reasons
	gwPolicy.Allow = []Pattern{MustCompilePattern(GatewayURI(testTD, "gw-02"))}
	if c, err := tls.Dial("tcp", l.Addr().String(), v.ClientTLSConfigPolicy(staticSource(&okCert), gwPolicy, nil)); err == nil {
		c.Close()
		t.Fatal("policy client accepted the wrong gateway")
	}
	// (TLS 1.3: the client aborts before sending its certificate, so the
	// server's hook does not run for this one.)
	badCert, _ := ca.Issue(IssueOptions{URI: VendorURI(testTD, "acme", "x")})
	if err := dial(badCert); err == nil {
		t.Fatal("refused client got through")
	}
	if r := <-reasons; r != ReasonNotAllowed {
		t.Fatalf("reason %q", r)
	}
}

func staticSource(tc *tls.Certificate) CertSource { return Static(tc) }
