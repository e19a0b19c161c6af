package certs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"time"
)

// CA issues and renews the gateway's certificate. StepClient (a step-ca
// server) and DevCA (in-process) implement it. Every method returns the
// new chain, leaf first; implementations are safe for concurrent use.
type CA interface {
	// Sign enrolls: it signs csr authorised by a one-time token. A zero
	// lifetime leaves the CA's default.
	Sign(ctx context.Context, csr *x509.CertificateRequest, token string, lifetime time.Duration) ([]*x509.Certificate, error)
	// Renew returns a new certificate for the same key, authenticated by
	// cur (mTLS), which must not have expired.
	Renew(ctx context.Context, cur *tls.Certificate) ([]*x509.Certificate, error)
	// Rekey returns a new certificate for csr's key, authenticated by cur.
	Rekey(ctx context.Context, cur *tls.Certificate, csr *x509.CertificateRequest) ([]*x509.Certificate, error)
	// RenewExpired renews an expired cur (step-ca: x5cInsecure token). It
	// fails with ErrRenewAfterExpiryNotAllowed when the CA does not allow it.
	RenewExpired(ctx context.Context, cur *tls.Certificate) ([]*x509.Certificate, error)
	// Roots returns every root the CA currently trusts (rollover).
	Roots(ctx context.Context) ([]*x509.Certificate, error)
}
