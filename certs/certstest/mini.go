package certstest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.step.sm/crypto/minica"
)

// MiniTrustDomain is the trust domain of MiniPKI identities.
const MiniTrustDomain = "hospital.example"

// MiniPKI is a bare test CA (root + intermediate from minica) that hands out
// keys and chains as Identity values: the shape COSE signing and MQTT
// client tests need. Use PKI for certs-level identities.
type MiniPKI struct {
	CA *minica.CA
}

// NewMini makes a CA (root + intermediate).
func NewMini(t testing.TB) *MiniPKI {
	t.Helper()
	ca, err := minica.New(minica.WithName("wardgate test"))
	if err != nil {
		t.Fatal(err)
	}
	return &MiniPKI{CA: ca}
}

// Roots returns a pool with the root.
func (p *MiniPKI) Roots() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(p.CA.Root)
	return pool
}

// Identity is a key and its chain (leaf, intermediate).
type Identity struct {
	Key   crypto.Signer
	Chain []*x509.Certificate
}

// IdentityOf is the inverse of TLS: the key and parsed chain of c.
func IdentityOf(t testing.TB, c tls.Certificate) *Identity {
	t.Helper()
	id := &Identity{Key: c.PrivateKey.(crypto.Signer)}
	for _, der := range c.Certificate {
		x, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		id.Chain = append(id.Chain, x)
	}
	return id
}

// TLS returns the identity as a tls.Certificate.
func (id *Identity) TLS() tls.Certificate {
	c := tls.Certificate{PrivateKey: id.Key, Leaf: id.Chain[0]}
	for _, x := range id.Chain {
		c.Certificate = append(c.Certificate, x.Raw)
	}
	return c
}

// Issue signs a leaf with common name cn and URI SAN uri ("" for none),
// valid from an hour ago for a day.
func (p *MiniPKI) Issue(t testing.TB, cn, uri string, dns ...string) *Identity {
	t.Helper()
	return p.IssueFor(t, cn, uri, time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour), dns...)
}

// IssueFor is Issue valid from nb to na (a certificate that expires
// within a test, or is already expired). The mini CA itself is valid from
// its creation, so nb must not be earlier.
func (p *MiniPKI) IssueFor(t testing.TB, cn, uri string, nb, na time.Time, dns ...string) *Identity {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: cn},
		PublicKey:   key.Public(),
		NotBefore:   nb,
		NotAfter:    na,
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
		DNSNames:    dns,
	}
	if len(dns) > 0 {
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
	}
	if uri != "" {
		u, err := url.Parse(uri)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.URIs = []*url.URL{u}
	}
	leaf, err := p.CA.Sign(tmpl)
	if err != nil {
		t.Fatal(err)
	}
	return &Identity{Key: key, Chain: []*x509.Certificate{leaf, p.CA.Intermediate}}
}

// Gateway issues spiffe://TD/gateway/ID with CN = id.
func (p *MiniPKI) Gateway(t testing.TB, id string) *Identity {
	return p.Issue(t, id, "spiffe://"+MiniTrustDomain+"/gateway/"+id)
}

// Approver issues spiffe://TD/approver/ROLE/PERSON.
func (p *MiniPKI) Approver(t testing.TB, role, person string) *Identity {
	return p.Issue(t, person, "spiffe://"+MiniTrustDomain+"/approver/"+role+"/"+person)
}

// Server issues a TLS server certificate for localhost / 127.0.0.1.
func (p *MiniPKI) Server(t testing.TB) *Identity {
	return p.Issue(t, "localhost", "", "localhost")
}

// WriteFiles writes the identity's chain and key as PEM into dir and
// returns the paths (cert, key).
func (id *Identity) WriteFiles(t testing.TB, dir, name string) (string, string) {
	t.Helper()
	var certPEM []byte
	for _, c := range id.Chain {
		certPEM = append(certPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	der, err := x509.MarshalPKCS8PrivateKey(id.Key)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	cp, kp := filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	if err := os.WriteFile(cp, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(kp, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return cp, kp
}

// WriteRoot writes the root certificate as PEM and returns its path.
func (p *MiniPKI) WriteRoot(t testing.TB, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "root.crt")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: p.CA.Root.Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// ClientTLS returns a client tls.Config for id trusting the PKI's root.
func (p *MiniPKI) ClientTLS(id *Identity) *tls.Config {
	c := id.TLS()
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		RootCAs:      p.Roots(),
		Certificates: []tls.Certificate{c},
		ServerName:   "localhost",
	}
}
