package certstest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Sign issues tmpl from p's intermediate with a new P-256 key, valid from
// nb to na: for tests that need a certificate shaped by hand (key usages,
// lifetimes, names).
func (p *MiniPKI) Sign(t testing.TB, tmpl *x509.Certificate, nb, na time.Time) (*x509.Certificate, crypto.Signer) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl.PublicKey = key.Public()
	tmpl.NotBefore, tmpl.NotAfter = nb, na
	cert, err := p.CA.Sign(tmpl)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}

// Cred is a client credential: PEM files for openssl and curl (leaf +
// intermediate in CertFile, the intermediate alone in ChainFile, the
// PKCS#8 key in KeyFile) and a TLS client configuration.
type Cred struct {
	CertFile, KeyFile, ChainFile string
	Cert                         tls.Certificate
	TLS                          *tls.Config
}

// ClientCred issues a client-auth certificate for uri valid from nb to na,
// writes it into dir as NAME.crt, NAME.key and NAME.chain.crt, and returns
// it with a client TLS configuration trusting roots for server "localhost".
func (p *MiniPKI) ClientCred(t testing.TB, dir, name, uri string, roots *x509.CertPool, nb, na time.Time) Cred {
	t.Helper()
	u, err := url.Parse(uri)
	if err != nil {
		t.Fatal(err)
	}
	leaf, key := p.Sign(t, &x509.Certificate{URIs: []*url.URL{u}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}, nb, na)
	c := Cred{CertFile: filepath.Join(dir, name+".crt"), KeyFile: filepath.Join(dir, name+".key"), ChainFile: filepath.Join(dir, name+".chain.crt")}
	WritePEMFile(t, c.CertFile, "CERTIFICATE", leaf.Raw, p.CA.Intermediate.Raw)
	WritePEMFile(t, c.ChainFile, "CERTIFICATE", p.CA.Intermediate.Raw)
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	WritePEMFile(t, c.KeyFile, "PRIVATE KEY", der)
	c.Cert = tls.Certificate{Certificate: [][]byte{leaf.Raw, p.CA.Intermediate.Raw}, PrivateKey: key, Leaf: leaf}
	c.TLS = &tls.Config{RootCAs: roots, ServerName: "localhost", Certificates: []tls.Certificate{c.Cert}, MinVersion: tls.VersionTLS12}
	return c
}

// WritePEMFile writes ders as PEM blocks of type typ to path (mode 0600).
func WritePEMFile(t testing.TB, path, typ string, ders ...[]byte) {
	t.Helper()
	var b []byte
	for _, d := range ders {
		b = append(b, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: d})...)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}
