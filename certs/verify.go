package certs

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/jonboulle/clockwork"
)

// Peer rejection reasons: stable short codes for events and logs.
const (
	ReasonNoCertificate   = "no_certificate"
	ReasonUntrusted       = "untrusted"
	ReasonExpired         = "expired"
	ReasonNotAllowed      = "not_allowed"
	ReasonLifetimeTooLong = "lifetime_too_long"
	ReasonLocked          = "locked"
	ReasonBadIdentity     = "bad_identity"
	// ReasonIntermediate: the chain does not pass through a pinned
	// issuing intermediate (PeerPolicy.Intermediates).
	ReasonIntermediate = "intermediate_not_pinned"
)

// DefaultMaxPeerLifetime is used when PeerPolicy.MaxLifetime is zero.
const DefaultMaxPeerLifetime = 24 * time.Hour

// LifetimeSlack is tolerated above PeerPolicy.MaxLifetime: CAs backdate
// NotBefore (step-ca by 1 minute), so a "12h" certificate spans 12h1m.
const LifetimeSlack = 5 * time.Minute

// PeerPolicy says which peers a listener (or a client) accepts.
type PeerPolicy struct {
	// TrustDomain of the identities accepted. Empty accepts the trust
	// domain the certificate names, leaving it to the Allow patterns (which
	// name a trust domain, or "*") to pin it.
	TrustDomain string
	// Allow lists the identity patterns admitted. Empty admits nobody.
	Allow []Pattern
	// MaxLifetime refuses certificates whose NotAfter-NotBefore is longer
	// than MaxLifetime+LifetimeSlack. Zero means DefaultMaxPeerLifetime.
	MaxLifetime time.Duration
	// Locked, if set, is asked last; true refuses the peer with the reason
	// it returns (e.g. "locked by security until ...").
	Locked func(Identity) (bool, string)
	// Usage is the extended key usage required of the leaf; zero value
	// (x509.ExtKeyUsageAny) accepts any.
	Usage x509.ExtKeyUsage
	// Intermediates, when not empty, pins the issuing CA: a verified chain
	// must pass through an intermediate whose SHA-256 fingerprint
	// (lowercase hex, no colons) is listed. Empty: any intermediate under
	// a trusted root.
	Intermediates []string
}

// PeerError is returned by Verify when a peer is refused. Reason is one of
// the Reason* codes; Identity is set when it was known; Err is the cause.
type PeerError struct {
	Reason   string
	Identity Identity
	Err      error
}

func (e *PeerError) Error() string {
	if e.Identity.URI != "" {
		return fmt.Sprintf("peer %s refused (%s): %v", e.Identity.URI, e.Reason, e.Err)
	}
	return fmt.Sprintf("peer refused (%s): %v", e.Reason, e.Err)
}

func (e *PeerError) Unwrap() error { return e.Err }

// PeerReason returns the Reason of a *PeerError in err's chain, or "".
func PeerReason(err error) string {
	var pe *PeerError
	if errors.As(err, &pe) {
		return pe.Reason
	}
	return ""
}

// Verifier verifies peer certificate chains against a Bundle at the time of
// an injected clock. Safe for concurrent use; bundle updates apply to the
// next verification.
type Verifier struct {
	bundle *Bundle
	clock  clockwork.Clock
}

// NewVerifier returns a verifier trusting bundle. A nil clock means the
// real clock.
func NewVerifier(bundle *Bundle, clock clockwork.Clock) *Verifier {
	if clock == nil {
		clock = clockwork.NewRealClock()
	}
	return &Verifier{bundle: bundle, clock: clock}
}

// Bundle returns the verifier's trust bundle.
func (v *Verifier) Bundle() *Bundle { return v.bundle }

// ClientCAs returns the bundle's roots as a pool for tls.Config.ClientCAs
// (the CA names sent to clients). Take it again after a roots change.
func (v *Verifier) ClientCAs() *x509.CertPool { return v.bundle.Pool() }

// Verify checks chain (leaf first, then intermediates, as in
// tls.ConnectionState.PeerCertificates) against the bundle at the clock's
// time and then the policy, in this order: certificate present, trusted,
// within validity, a valid identity in p.TrustDomain, allowed by p.Allow,
// lifetime not above the maximum, not locked. Refusals are *PeerError.
func (v *Verifier) Verify(chain []*x509.Certificate, p PeerPolicy) (Identity, error) {
	return v.VerifyAt(chain, p, v.clock.Now())
}

// VerifyAt is Verify at time at instead of the clock's: for signatures
// checked after the signer's certificate expired, at the time they were
// made (wire/lockset uses it with central's endorsement).
func (v *Verifier) VerifyAt(chain []*x509.Certificate, p PeerPolicy, now time.Time) (Identity, error) {
	if len(chain) == 0 || chain[0] == nil {
		return Identity{}, &PeerError{Reason: ReasonNoCertificate, Err: errors.New("no client certificate presented")}
	}
	leaf := chain[0]
	chains, err := v.verifyChain(chain, now, p.Usage)
	if err != nil {
		return Identity{}, err
	}
	if len(p.Intermediates) > 0 && !throughPinned(chains, p.Intermediates) {
		return Identity{}, &PeerError{Reason: ReasonIntermediate, Err: fmt.Errorf("certificate %q is not issued by a pinned intermediate CA", leaf.Subject.CommonName)}
	}
	td := p.TrustDomain
	if td == "" {
		td = certTrustDomain(leaf)
	}
	id, err := IdentityFromCert(leaf, td)
	if err != nil {
		return Identity{}, &PeerError{Reason: ReasonBadIdentity, Err: err}
	}
	if !MatchAny(p.Allow, id.URI) {
		return id, &PeerError{Reason: ReasonNotAllowed, Identity: id, Err: fmt.Errorf("identity %s is not in the allowed list", id.URI)}
	}
	maxLife := p.MaxLifetime
	if maxLife <= 0 {
		maxLife = DefaultMaxPeerLifetime
	}
	if life := leaf.NotAfter.Sub(leaf.NotBefore); life > maxLife+LifetimeSlack {
		return id, &PeerError{Reason: ReasonLifetimeTooLong, Identity: id,
			Err: fmt.Errorf("certificate lifetime %s is longer than the allowed %s: use a short-lived certificate", life.Round(time.Second), maxLife)}
	}
	if p.Locked != nil {
		if locked, why := p.Locked(id); locked {
			return id, &PeerError{Reason: ReasonLocked, Identity: id, Err: fmt.Errorf("identity is locked: %s", why)}
		}
	}
	return id, nil
}

// throughPinned reports whether one of chains holds, between leaf and
// root, a certificate with one of the pinned fingerprints.
func throughPinned(chains [][]*x509.Certificate, pinned []string) bool {
	for _, ch := range chains {
		for i := 1; i < len(ch)-1; i++ {
			for _, fp := range pinned {
				if Fingerprint(ch[i]) == fp {
					return true
				}
			}
		}
	}
	return false
}

func (v *Verifier) verifyChain(chain []*x509.Certificate, now time.Time, usage x509.ExtKeyUsage) ([][]*x509.Certificate, error) {
	leaf := chain[0]
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	opts := x509.VerifyOptions{
		Roots:         v.bundle.Pool(),
		Intermediates: inter,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{usage},
	}
	chains, err := leaf.Verify(opts)
	if err == nil {
		return chains, nil
	}
	var inv x509.CertificateInvalidError
	if errors.As(err, &inv) && inv.Reason == x509.Expired && (now.After(leaf.NotAfter) || now.Before(leaf.NotBefore)) && v.issuedByTrusted(chain, now) {
		return nil, &PeerError{Reason: ReasonExpired, Err: fmt.Errorf("certificate %q valid from %s to %s, now is %s",
			leaf.Subject.CommonName, leaf.NotBefore.UTC().Format(time.RFC3339), leaf.NotAfter.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))}
	}
	return nil, &PeerError{Reason: ReasonUntrusted, Err: fmt.Errorf("certificate %q does not chain to a trusted root: %w", leaf.Subject.CommonName, err)}
}

// certTrustDomain returns the host of the certificate's first spiffe URI.
func certTrustDomain(c *x509.Certificate) string {
	for _, u := range c.URIs {
		if u.Scheme == "spiffe" {
			return u.Host
		}
	}
	return ""
}

// issuedByTrusted tells an out-of-validity leaf of a trusted issuer from an
// untrusted one: the leaf's signature checks against a root, or against an
// intermediate of chain that itself verifies at now.
func (v *Verifier) issuedByTrusted(chain []*x509.Certificate, now time.Time) bool {
	leaf := chain[0]
	for _, r := range v.bundle.Roots() {
		if leaf.CheckSignatureFrom(r) == nil {
			return true
		}
	}
	for i, ic := range chain[1:] {
		if leaf.CheckSignatureFrom(ic) != nil {
			continue
		}
		inter := x509.NewCertPool()
		for j, c := range chain[1:] {
			if j != i {
				inter.AddCert(c)
			}
		}
		if _, err := ic.Verify(x509.VerifyOptions{Roots: v.bundle.Pool(), Intermediates: inter, CurrentTime: now,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err == nil {
			return true
		}
	}
	return false
}

// VerifyConnection returns a hook for tls.Config.VerifyConnection that runs
// Verify on the peer's certificates. onResult, if not nil, is called with
// the identity and the error (nil when accepted) of every handshake, e.g. to
// put the refusal reason into an event. Use it with
// ClientAuth: tls.RequireAnyClientCert (the hook does the verification at
// the injected time), or see ServerTLSConfig.
func (v *Verifier) VerifyConnection(p PeerPolicy, onResult func(Identity, error)) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		id, err := v.Verify(cs.PeerCertificates, p)
		if onResult != nil {
			onResult(id, err)
		}
		return err
	}
}

// VerifyServer checks a server's chain against the bundle at the clock's
// time and, when serverName is not empty, that the leaf is valid for it.
func (v *Verifier) VerifyServer(chain []*x509.Certificate, serverName string) error {
	if len(chain) == 0 {
		return &PeerError{Reason: ReasonNoCertificate, Err: errors.New("server presented no certificate")}
	}
	if _, err := v.verifyChain(chain, v.clock.Now(), x509.ExtKeyUsageServerAuth); err != nil {
		return err
	}
	if serverName != "" {
		if err := chain[0].VerifyHostname(serverName); err != nil {
			return &PeerError{Reason: ReasonUntrusted, Err: err}
		}
	}
	return nil
}

// CertSource supplies the local certificate for handshakes (the Manager).
type CertSource interface {
	GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error)
	GetClientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error)
}

// ServerTLSConfig returns a TLS 1.2+ server config presenting src's current
// certificate and admitting only clients that pass Verify with p. The
// client CA names are taken from the bundle at each handshake.
func (v *Verifier) ServerTLSConfig(src CertSource, p PeerPolicy, onResult func(Identity, error)) *tls.Config {
	base := &tls.Config{
		MinVersion:       tls.VersionTLS12,
		GetCertificate:   src.GetCertificate,
		ClientAuth:       tls.RequireAnyClientCert,
		VerifyConnection: v.VerifyConnection(p, onResult),
		Time:             v.clock.Now,
	}
	base.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		c := base.Clone()
		c.GetConfigForClient = nil
		c.ClientCAs = v.bundle.Pool()
		return c, nil
	}
	return base
}

// ClientTLSConfig returns a TLS 1.2+ client config presenting src's current
// certificate and checking the server's chain against the bundle at the
// clock's time, and its name against serverName (when not empty).
func (v *Verifier) ClientTLSConfig(src CertSource, serverName string) *tls.Config {
	return &tls.Config{
		MinVersion:           tls.VersionTLS12,
		ServerName:           serverName,
		GetClientCertificate: src.GetClientCertificate,
		InsecureSkipVerify:   true, // verified by VerifyConnection below at the injected time
		VerifyConnection: func(cs tls.ConnectionState) error {
			return v.VerifyServer(cs.PeerCertificates, serverName)
		},
		Time: v.clock.Now,
	}
}

// ClientTLSConfigPolicy returns a TLS 1.2+ client config presenting src's
// certificate and admitting only a server whose certificate passes Verify
// with p (its SPIFFE identity, e.g. a gateway), whatever its host name.
func (v *Verifier) ClientTLSConfigPolicy(src CertSource, p PeerPolicy, onResult func(Identity, error)) *tls.Config {
	return &tls.Config{
		MinVersion:           tls.VersionTLS12,
		GetClientCertificate: src.GetClientCertificate,
		InsecureSkipVerify:   true, // verified by VerifyConnection at the injected time
		VerifyConnection:     v.VerifyConnection(p, onResult),
		Time:                 v.clock.Now,
	}
}

// Static returns a CertSource that always presents tc (certificates loaded
// from files, e.g. by `wardgate connect`).
func Static(tc *tls.Certificate) CertSource { return staticCert{tc} }

type staticCert struct{ c *tls.Certificate }

func (s staticCert) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) { return s.c, nil }
func (s staticCert) GetClientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	return s.c, nil
}
