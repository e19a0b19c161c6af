package certs

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"sync/atomic"
)

// Bundle is the set of trusted root certificates. Several roots are trusted
// at once (CA rollover); Set replaces them atomically. The zero Bundle
// trusts nothing. Safe for concurrent use.
type Bundle struct {
	state atomic.Pointer[bundleState]
}

type bundleState struct {
	roots []*x509.Certificate
	pool  *x509.CertPool
}

// NewBundle returns a bundle trusting roots.
func NewBundle(roots ...*x509.Certificate) *Bundle {
	b := &Bundle{}
	b.Set(roots)
	return b
}

// Set replaces the trusted roots (duplicates removed) and reports whether
// the set changed.
func (b *Bundle) Set(roots []*x509.Certificate) (changed bool) {
	st := &bundleState{pool: x509.NewCertPool()}
	seen := map[[32]byte]bool{}
	for _, r := range roots {
		if r == nil {
			continue
		}
		sum := sha256.Sum256(r.Raw)
		if seen[sum] {
			continue
		}
		seen[sum] = true
		st.roots = append(st.roots, r)
		st.pool.AddCert(r)
	}
	old := b.state.Swap(st)
	return !sameRoots(old, st)
}

func sameRoots(a, b *bundleState) bool {
	var ar, br []*x509.Certificate
	if a != nil {
		ar = a.roots
	}
	if b != nil {
		br = b.roots
	}
	if len(ar) != len(br) {
		return false
	}
	set := map[[32]byte]bool{}
	for _, r := range ar {
		set[sha256.Sum256(r.Raw)] = true
	}
	for _, r := range br {
		if !set[sha256.Sum256(r.Raw)] {
			return false
		}
	}
	return true
}

// Roots returns a copy of the trusted roots.
func (b *Bundle) Roots() []*x509.Certificate {
	st := b.state.Load()
	if st == nil {
		return nil
	}
	return append([]*x509.Certificate(nil), st.roots...)
}

// Pool returns the roots as a pool (a fresh snapshot; do not modify).
func (b *Bundle) Pool() *x509.CertPool {
	st := b.state.Load()
	if st == nil {
		return x509.NewCertPool()
	}
	return st.pool
}

// PEM returns the roots PEM encoded.
func (b *Bundle) PEM() []byte { return EncodeCertsPEM(b.Roots()) }

// Fingerprint returns the SHA-256 fingerprint of a certificate, lowercase
// hex, as `step certificate fingerprint` prints it.
func Fingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return hex.EncodeToString(sum[:])
}

// EncodeCertsPEM encodes certificates as consecutive CERTIFICATE blocks.
func EncodeCertsPEM(certs []*x509.Certificate) []byte {
	var buf bytes.Buffer
	for _, c := range certs {
		_ = pem.Encode(&buf, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	return buf.Bytes()
}

// ParseCertsPEM parses every CERTIFICATE block of data; other blocks are
// errors. It fails when data holds no certificate.
func ParseCertsPEM(data []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	rest := data
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("unexpected PEM block %q, want CERTIFICATE", block.Type)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parse certificate: %w", err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no PEM certificate found")
	}
	return out, nil
}
