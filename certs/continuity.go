package certs

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// ErrRootNotContinuous: a CA offered a root that no trusted root
// cross-signed and the operator did not pin (identity.extra_roots).
var ErrRootNotContinuous = errors.New("new root neither cross-signed by a trusted root nor pinned")

// AcceptRoots decides which roots to trust after a CA's /roots answered
// offered. offered may hold self-signed roots and cross-certificates (a
// new root's subject and key, signed by an older root). The result is the
// self-signed roots of offered when every one of them is already trusted,
// cross-signed by a trusted root (a cross-certificate in offered, valid at
// now, with the new root's subject and key and a signature of a trusted
// root), or pinned by its SHA-256 fingerprint (lowercase hex, no colons).
// Otherwise the error wraps ErrRootNotContinuous and names the roots; the
// caller keeps the trusted set. With nothing trusted yet (first fetch after
// enrollment pinned the root by fingerprint) every offered root is taken.
// Roots missing from offered are dropped: a CA may retire a root.
func AcceptRoots(trusted, offered []*x509.Certificate, pinned []string, now time.Time) ([]*x509.Certificate, error) {
	var roots, cross []*x509.Certificate
	for _, c := range offered {
		if c == nil || !c.IsCA {
			continue
		}
		if bytes.Equal(c.RawSubject, c.RawIssuer) && c.CheckSignatureFrom(c) == nil {
			roots = append(roots, c)
		} else {
			cross = append(cross, c)
		}
	}
	if len(roots) == 0 {
		return nil, fmt.Errorf("%w: the CA offered no self-signed root", ErrCABadResponse)
	}
	if len(trusted) == 0 {
		return roots, nil
	}
	known := map[[32]byte]bool{}
	for _, t := range trusted {
		known[sha256.Sum256(t.Raw)] = true
	}
	var bad []string
	for _, r := range roots {
		if known[sha256.Sum256(r.Raw)] || slices.Contains(pinned, Fingerprint(r)) || crossSigned(r, cross, trusted, now) {
			continue
		}
		bad = append(bad, fmt.Sprintf("%q (sha256 %s)", r.Subject.CommonName, Fingerprint(r)))
	}
	if len(bad) > 0 {
		return nil, fmt.Errorf("%w: %s; the old roots stay trusted: if the root change is planned, have the CA serve a cross-certificate from the current root or add the fingerprint to identity.extra_roots",
			ErrRootNotContinuous, strings.Join(bad, ", "))
	}
	return roots, nil
}

// crossSigned reports whether one of cross names root's subject and key
// and carries a valid signature of a trusted root.
func crossSigned(root *x509.Certificate, cross, trusted []*x509.Certificate, now time.Time) bool {
	for _, c := range cross {
		if !bytes.Equal(c.RawSubject, root.RawSubject) || !bytes.Equal(c.RawSubjectPublicKeyInfo, root.RawSubjectPublicKeyInfo) ||
			now.Before(c.NotBefore) || now.After(c.NotAfter) {
			continue
		}
		for _, t := range trusted {
			if bytes.Equal(c.RawIssuer, t.RawSubject) && c.CheckSignatureFrom(t) == nil {
				return true
			}
		}
	}
	return false
}
