package certs

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"

	"go.step.sm/crypto/keyutil"
	"go.step.sm/crypto/pemutil"
	"go.step.sm/crypto/x509util"
)

// GenerateKey returns a new ECDSA P-256 private key.
func GenerateKey() (crypto.Signer, error) {
	k, err := keyutil.GenerateKey("EC", "P-256", 0)
	if err != nil {
		return nil, fmt.Errorf("generate P-256 key: %w", err)
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("generate P-256 key: unexpected key type %T", k)
	}
	return s, nil
}

// NewCSR returns a certificate request for commonName and sans (DNS names,
// IP addresses, e-mails and URIs, told apart as step's CLI does) signed by key.
func NewCSR(commonName string, sans []string, key crypto.Signer) (*x509.CertificateRequest, error) {
	csr, err := x509util.CreateCertificateRequest(commonName, sans, key)
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
	block, err := pemutil.Serialize(key, pemutil.WithPKCS8(true))
	if err != nil {
		return nil, fmt.Errorf("serialise key: %w", err)
	}
	return pem.EncodeToMemory(block), nil
}

// ParseKeyPEM parses a PEM private key (PKCS#8, SEC1 or PKCS#1).
func ParseKeyPEM(data []byte) (crypto.Signer, error) {
	k, err := pemutil.ParseKey(data)
	if err != nil {
		return nil, fmt.Errorf("parse key: %w", err)
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("parse key: %T is not a signing key", k)
	}
	return s, nil
}

// keyMatches reports whether key is the private key of cert.
func keyMatches(key crypto.Signer, cert *x509.Certificate) bool {
	return keyutil.Equal(key.Public(), cert.PublicKey)
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
