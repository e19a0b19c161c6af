package certs

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jonboulle/clockwork"
)

// EnrollOptions configures Enroll.
type EnrollOptions struct {
	// CAURL is the step-ca URL; empty takes it from the token's audience.
	CAURL string
	// RootFingerprint is the SHA-256 of the CA root (hex). Required.
	RootFingerprint string
	// Token is the one-time token (`step ca token NAME --san ...`). Required.
	Token string
	// Dir is the identity directory (STATE_DIR/identity). Required.
	Dir string
	// Lifetime requested; zero leaves the CA's default.
	Lifetime time.Duration
	// NotBefore is the build time: Enroll refuses to run before it.
	NotBefore time.Time
	// Force replaces a stored identity that is still valid.
	Force   bool
	Clock   clockwork.Clock
	Timeout time.Duration
	Logger  *slog.Logger
}

// Enroll obtains the first identity: it fetches and pins the CA root by
// fingerprint, makes a P-256 key and a CSR whose subject and SANs come from
// the token's claims, has the CA sign it with the token, and stores key,
// chain and roots in o.Dir. It returns the new leaf. It refuses to replace
// a valid stored identity unless o.Force is set.
func Enroll(ctx context.Context, o EnrollOptions) (*x509.Certificate, error) {
	if o.Clock == nil {
		o.Clock = clockwork.NewRealClock()
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	log := o.Logger.With("component", "certs")
	now := o.Clock.Now()
	if !o.NotBefore.IsZero() && now.Before(o.NotBefore) {
		return nil, fmt.Errorf("%w (clock %s, build %s)", ErrClockInsane, now.UTC().Format(time.RFC3339), o.NotBefore.UTC().Format(time.RFC3339))
	}
	if o.Dir == "" {
		return nil, errors.New("enroll: no identity directory")
	}
	claims, err := ParseTokenClaims(o.Token)
	if err != nil {
		return nil, err
	}
	if !claims.Expiry.IsZero() && now.After(claims.Expiry) {
		return nil, fmt.Errorf("%w: it expired at %s (tokens are valid for minutes): ask the CA operator for a new one", ErrTokenInvalid, claims.Expiry.UTC().Format(time.RFC3339))
	}
	caURL := o.CAURL
	if caURL == "" {
		caURL = CAURLFromAudience(claims.Audience)
		if caURL == "" {
			return nil, errors.New("enroll: no CA URL: set identity.ca_url")
		}
	}
	store := NewStore(o.Dir)
	if store.Exists() && !o.Force {
		if _, chain, err := store.Load(); err == nil && now.Before(chain[0].NotAfter) {
			return nil, fmt.Errorf("enroll: %s already holds an identity (%s, valid until %s); the agent renews it by itself. To replace it anyway, remove %s first",
				o.Dir, chain[0].Subject.CommonName, chain[0].NotAfter.UTC().Format(time.RFC3339), o.Dir)
		}
	}
	root, err := FetchRoot(ctx, caURL, o.RootFingerprint, o.Clock, o.Timeout)
	if err != nil {
		return nil, fmt.Errorf("enroll: %w", err)
	}
	bundle := NewBundle(root)
	client, err := NewStepClient(StepClientOptions{URL: caURL, Bundle: bundle, Clock: o.Clock, Timeout: o.Timeout, Logger: o.Logger})
	if err != nil {
		return nil, err
	}
	key, err := GenerateKey()
	if err != nil {
		return nil, err
	}
	csr, err := NewCSR(claims.Subject, claims.SANs, key)
	if err != nil {
		return nil, err
	}
	chain, err := client.Sign(ctx, csr, o.Token, o.Lifetime)
	if err != nil {
		return nil, fmt.Errorf("enroll: %w", err)
	}
	if !keyMatches(key, chain[0]) {
		return nil, fmt.Errorf("enroll: %w: certificate is not for our key", ErrCABadResponse)
	}
	roots := []*x509.Certificate{root}
	if all, err := client.Roots(ctx); err == nil {
		roots = all
	} else {
		log.Warn("could not fetch all roots; storing the pinned one", "err", err.Error())
	}
	if err := store.Save(key, chain); err != nil {
		return nil, fmt.Errorf("enroll: %w", err)
	}
	if err := store.SaveRoots(roots); err != nil {
		return nil, fmt.Errorf("enroll: %w", err)
	}
	log.Info("enrolled", "subject", chain[0].Subject.CommonName, "serial", chain[0].SerialNumber.Text(16),
		"not_after", chain[0].NotAfter.UTC().Format(time.RFC3339), "dir", o.Dir)
	return chain[0], nil
}
