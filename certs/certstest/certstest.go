// Package certstest gives other packages' tests a development PKI: a
// certs.DevCA with helpers that mint gateway, vendor, service and approver
// certificates (P-256, made at run time) and write them as PEM files for
// real tools (openssl, curl, mosquitto). Safe for concurrent use.
package certstest

import (
	"crypto"
	"crypto/tls"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/wardgate/wardgate/certs"
)

// PKI is a development CA under one trust domain.
type PKI struct {
	CA          *certs.DevCA
	TrustDomain string
	Clock       clockwork.Clock
}

// New returns a PKI on the real clock; leaves live 1 h by default.
func New(t testing.TB, trustDomain string) *PKI {
	return NewWithClock(t, trustDomain, clockwork.NewRealClock())
}

// NewWithClock returns a PKI whose certificates start at clk's now.
func NewWithClock(t testing.TB, trustDomain string, clk clockwork.Clock) *PKI {
	t.Helper()
	ca, err := certs.NewDevCA(certs.DevCAOptions{Clock: clk, Lifetime: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return &PKI{CA: ca, TrustDomain: trustDomain, Clock: clk}
}

// Bundle returns a new trust bundle with the CA's root.
func (p *PKI) Bundle() *certs.Bundle { return p.CA.Bundle() }

// Verifier returns a verifier trusting the CA on the PKI's clock.
func (p *PKI) Verifier() *certs.Verifier { return certs.NewVerifier(p.CA.Bundle(), p.Clock) }

// Issue mints a leaf (see certs.IssueOptions).
func (p *PKI) Issue(t testing.TB, o certs.IssueOptions) tls.Certificate {
	t.Helper()
	c, err := p.CA.Issue(o)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Gateway mints spiffe://TD/gateway/ID, valid for localhost, 127.0.0.1,
// ::1, ID and dnsNames (so it serves loopback tests).
func (p *PKI) Gateway(t testing.TB, id string, dnsNames ...string) tls.Certificate {
	t.Helper()
	return p.Issue(t, certs.IssueOptions{
		URI:      certs.GatewayURI(p.TrustDomain, id),
		DNSNames: append([]string{"localhost", id}, dnsNames...),
		IPs:      []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	})
}

// Vendor mints spiffe://TD/vendor/ORG/PERSON.
func (p *PKI) Vendor(t testing.TB, org, person string) tls.Certificate {
	t.Helper()
	return p.Issue(t, certs.IssueOptions{URI: certs.VendorURI(p.TrustDomain, org, person)})
}

// Service mints spiffe://TD/svc/NAME.
func (p *PKI) Service(t testing.TB, name string) tls.Certificate {
	t.Helper()
	return p.Issue(t, certs.IssueOptions{URI: certs.ServiceURI(p.TrustDomain, name)})
}

// Approver mints spiffe://TD/approver/ROLE/PERSON.
func (p *PKI) Approver(t testing.TB, role, person string) tls.Certificate {
	t.Helper()
	return p.Issue(t, certs.IssueOptions{URI: certs.ApproverURI(p.TrustDomain, role, person)})
}

// Server mints a plain server certificate (no SPIFFE URI) for loopback,
// e.g. for an MQTT broker.
func (p *PKI) Server(t testing.TB, name string) tls.Certificate {
	t.Helper()
	return p.Issue(t, certs.IssueOptions{CommonName: name, DNSNames: []string{"localhost", name},
		IPs: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}})
}

// WriteRoot writes the root as DIR/root.crt and returns its path.
func (p *PKI) WriteRoot(t testing.TB, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "root.crt")
	if err := os.WriteFile(path, p.CA.Bundle().PEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// WritePEM writes c as DIR/NAME.crt (chain) and DIR/NAME.key (PKCS#8,
// 0600) and returns both paths.
func (p *PKI) WritePEM(t testing.TB, dir, name string, c tls.Certificate) (certFile, keyFile string) {
	t.Helper()
	certFile, keyFile = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	var chainPEM []byte
	for _, der := range c.Certificate {
		chainPEM = append(chainPEM, pemCert(der)...)
	}
	keyPEM, err := certs.EncodeKeyPEM(c.PrivateKey.(crypto.Signer))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, chainPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}
