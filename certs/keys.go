package certs

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
)

// GenerateKey returns a new ECDSA P-256 private key.
func GenerateKey() (crypto.Signer, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate P-256 key: %w", err)
	}
	return k, nil
}

// NewCSR returns a certificate request for commonName and sans (DNS names,
// IP addresses, e-mails and URIs, told apart as step's CLI does) signed by key.
func NewCSR(commonName string, sans []string, key crypto.Signer) (*x509.CertificateRequest, error) {
	tmpl := &x509.CertificateRequest{Subject: pkix.Name{CommonName: commonName}}
	for _, san := range sans {
		if ip := net.ParseIP(san); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if u, err := url.Parse(san); err == nil && u.Scheme != "" {
			tmpl.URIs = append(tmpl.URIs, u)
		} else if strings.Contains(san, "@") {
			tmpl.EmailAddresses = append(tmpl.EmailAddresses, san)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, san)
		}
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		return nil, fmt.Errorf("create CSR: %w", err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, fmt.Errorf("create CSR: %w", err)
	}
	return csr, nil
}

// CSRFromCert returns a CSR with the names of cert (CN and every SAN)
// signed by key: what re-keying sends.
func CSRFromCert(cert *x509.Certificate, key crypto.Signer) (*x509.CertificateRequest, error) {
	return NewCSR(cert.Subject.CommonName, SANsOf(cert), key)
}

// SANsOf lists a certificate's SANs as strings.
func SANsOf(c *x509.Certificate) []string {
	var sans []string
	sans = append(sans, c.DNSNames...)
	for _, ip := range c.IPAddresses {
		sans = append(sans, ip.String())
	}
	sans = append(sans, c.EmailAddresses...)
	for _, u := range c.URIs {
		sans = append(sans, u.String())
	}
	return sans
}

// EncodeKeyPEM serialises a private key as PKCS#8 PEM.
func EncodeKeyPEM(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("serialise key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// ParseKeyPEM parses the first PEM private key in data: PKCS#8 ("PRIVATE
// KEY"), SEC1 ("EC PRIVATE KEY", what `step certificate create` writes) or
// PKCS#1 ("RSA PRIVATE KEY"). Encrypted keys are refused: decrypt them
// first (`step crypto change-pass --no-password` or `openssl pkey`).
func ParseKeyPEM(data []byte) (crypto.Signer, error) {
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return nil, errors.New("parse key: no PEM private key found")
		}
		var k any
		var err error
		switch block.Type {
		case "PRIVATE KEY":
			k, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		case "EC PRIVATE KEY":
			k, err = x509.ParseECPrivateKey(block.Bytes)
		case "RSA PRIVATE KEY":
			k, err = x509.ParsePKCS1PrivateKey(block.Bytes)
		case "ENCRYPTED PRIVATE KEY":
			return nil, errors.New("parse key: the key is encrypted; store it decrypted with mode 0600")
		default:
			continue // e.g. EC PARAMETERS before the key
		}
		if _, enc := block.Headers["DEK-Info"]; enc {
			return nil, errors.New("parse key: the key is encrypted; store it decrypted with mode 0600")
		}
		if err != nil {
			return nil, fmt.Errorf("parse key: %w", err)
		}
		s, ok := k.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("parse key: %T is not a signing key", k)
		}
		return s, nil
	}
}

// keyMatches reports whether key is the private key of cert.
func keyMatches(key crypto.Signer, cert *x509.Certificate) bool {
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	return ok && pub.Equal(cert.PublicKey)
}

// TLSCertificate builds a tls.Certificate from a key and a chain (leaf
// first), with Leaf set. It fails when the key does not match the leaf.
func TLSCertificate(key crypto.Signer, chain []*x509.Certificate) (*tls.Certificate, error) {
	if len(chain) == 0 {
		return nil, fmt.Errorf("empty certificate chain")
	}
	if !keyMatches(key, chain[0]) {
		return nil, fmt.Errorf("private key does not match certificate %q", chain[0].Subject.CommonName)
	}
	tc := &tls.Certificate{PrivateKey: key, Leaf: chain[0]}
	for _, c := range chain {
		tc.Certificate = append(tc.Certificate, c.Raw)
	}
	return tc, nil
}

// chainOf returns the parsed chain of a tls.Certificate.
func chainOf(tc *tls.Certificate) ([]*x509.Certificate, error) {
	out := make([]*x509.Certificate, 0, len(tc.Certificate))
	for i, der := range tc.Certificate {
		if i == 0 && tc.Leaf != nil {
			out = append(out, tc.Leaf)
			continue
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

// ChainOf returns the parsed chain of a tls.Certificate, leaf first.
func ChainOf(tc *tls.Certificate) ([]*x509.Certificate, error) { return chainOf(tc) }
