package certs

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"sync/atomic"
	"time"

	"github.com/jonboulle/clockwork"
	"go.step.sm/crypto/randutil"
)

// DevCAOptions configures a development CA.
type DevCAOptions struct {
	// Name prefixes the root and intermediate names. Default "wardgate dev".
	Name string
	// Clock is the CA's time. Default the real clock.
	Clock clockwork.Clock
	// Lifetime of issued and renewed certificates. Default 1h.
	Lifetime time.Duration
	// AllowRenewalAfterExpiry lets RenewExpired renew expired certificates
	// (as step-ca's allowRenewalAfterExpiry claim).
	AllowRenewalAfterExpiry bool
	// ValidFor is how long the root and intermediate stay valid from now
	// (default 30 days); they are valid from 24 h before now, so tests may
	// move a fake clock back.
	ValidFor time.Duration
}

// DevCA is an in-process development CA: a P-256 root and intermediate valid from 24 h before creation for
// DevCAOptions.ValidFor, signing P-256 leaves. For `wardgate demo`, labs
// and tests only. Safe for concurrent use.
type DevCA struct {
	ca       *devKeys
	clock    clockwork.Clock
	lifetime atomic.Int64
	allowExp atomic.Bool
}

// NewDevCA creates a development CA with fresh keys.
func NewDevCA(o DevCAOptions) (*DevCA, error) {
	if o.Name == "" {
		o.Name = "wardgate dev"
	}
	if o.Clock == nil {
		o.Clock = clockwork.NewRealClock()
	}
	if o.Lifetime <= 0 {
		o.Lifetime = time.Hour
	}
	if o.ValidFor <= 0 {
		o.ValidFor = 30 * 24 * time.Hour
	}
	ca, err := newMiniCA(o.Name, o.Clock.Now(), o.ValidFor)
	if err != nil {
		return nil, fmt.Errorf("create development CA: %w", err)
	}
	d := &DevCA{ca: ca, clock: o.Clock}
	d.lifetime.Store(int64(o.Lifetime))
	d.allowExp.Store(o.AllowRenewalAfterExpiry)
	return d, nil
}

// Root returns the CA's root certificate.
func (d *DevCA) Root() *x509.Certificate { return d.ca.Root }

// Intermediate returns the CA's intermediate certificate.
func (d *DevCA) Intermediate() *x509.Certificate { return d.ca.Intermediate }

// Bundle returns a new trust bundle holding the CA's root.
func (d *DevCA) Bundle() *Bundle { return NewBundle(d.ca.Root) }

// SetLifetime changes the lifetime of certificates issued from now on.
func (d *DevCA) SetLifetime(l time.Duration) { d.lifetime.Store(int64(l)) }

// SetAllowRenewalAfterExpiry changes whether RenewExpired succeeds.
func (d *DevCA) SetAllowRenewalAfterExpiry(v bool) { d.allowExp.Store(v) }

// IssueOptions describes a leaf certificate for Issue.
type IssueOptions struct {
	// URI is the SPIFFE identity (optional).
	URI string
	// CommonName defaults to the URI's last path segment.
	CommonName string
	// DNSNames and IPs are extra SANs.
	DNSNames []string
	IPs      []net.IP
	// Lifetime defaults to the CA's lifetime. It may be anything, so tests
	// can make too-long-lived certificates.
	Lifetime time.Duration
	// NotBefore defaults to the CA clock's now; set it in the past to make
	// an expired certificate.
	NotBefore time.Time
	// Key is the leaf's key; a new P-256 key when nil.
	Key crypto.Signer
	// ExtKeyUsage defaults to serverAuth and clientAuth.
	ExtKeyUsage []x509.ExtKeyUsage
}

// Issue signs a leaf (for serverAuth and clientAuth unless o says) and returns it with its
// key and chain (leaf, intermediate).
func (d *DevCA) Issue(o IssueOptions) (tls.Certificate, error) {
	key := o.Key
	if key == nil {
		var err error
		if key, err = GenerateKey(); err != nil {
			return tls.Certificate{}, err
		}
	}
	tmpl := &x509.Certificate{
		DNSNames:    o.DNSNames,
		IPAddresses: o.IPs,
		PublicKey:   key.Public(),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: o.ExtKeyUsage,
	}
	if tmpl.ExtKeyUsage == nil {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	}
	cn := o.CommonName
	if o.URI != "" {
		u, err := url.Parse(o.URI)
		if err != nil {
			return tls.Certificate{}, fmt.Errorf("issue: bad URI %q: %w", o.URI, err)
		}
		tmpl.URIs = []*url.URL{u}
		if cn == "" {
			cn = u.Path[lastSlash(u.Path)+1:]
		}
	}
	tmpl.Subject = pkix.Name{CommonName: cn}
	chain, err := d.sign(tmpl, o.NotBefore, o.Lifetime)
	if err != nil {
		return tls.Certificate{}, err
	}
	tc, err := TLSCertificate(key, chain)
	if err != nil {
		return tls.Certificate{}, err
	}
	return *tc, nil
}

// devKeys is the development CA's root and intermediate with their keys.
type devKeys struct {
	Root, Intermediate *x509.Certificate
	RootSigner, Signer crypto.Signer
}

// Sign issues tmpl (which carries the leaf's public key) from the
// intermediate.
func (k *devKeys) Sign(tmpl *x509.Certificate) (*x509.Certificate, error) {
	der, err := x509.CreateCertificate(rand.Reader, tmpl, k.Intermediate, tmpl.PublicKey, k.Signer)
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}

// newMiniCA makes the root and intermediate, valid from a day before now
// for validFor (a demo may run long and tests move clocks).
func newMiniCA(name string, now time.Time, validFor time.Duration) (*devKeys, error) {
	mk := func(cn string, parent *x509.Certificate, parentKey, key crypto.Signer, pathLen int) (*x509.Certificate, error) {
		sn, err := randSerial()
		if err != nil {
			return nil, err
		}
		tmpl := &x509.Certificate{
			SerialNumber:          sn,
			Subject:               pkix.Name{CommonName: cn},
			NotBefore:             now.Add(-24 * time.Hour),
			NotAfter:              now.Add(validFor),
			KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
			BasicConstraintsValid: true,
			IsCA:                  true,
			MaxPathLen:            pathLen,
			MaxPathLenZero:        pathLen == 0,
		}
		if parent == nil {
			parent, parentKey = tmpl, key
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), parentKey)
		if err != nil {
			return nil, err
		}
		return x509.ParseCertificate(der)
	}
	rootKey, err := GenerateKey()
	if err != nil {
		return nil, err
	}
	intKey, err := GenerateKey()
	if err != nil {
		return nil, err
	}
	root, err := mk(name+" Root CA", nil, nil, rootKey, 1)
	if err != nil {
		return nil, err
	}
	inter, err := mk(name+" Intermediate CA", root, rootKey, intKey, 0)
	if err != nil {
		return nil, err
	}
	return &devKeys{Root: root, RootSigner: rootKey, Intermediate: inter, Signer: intKey}, nil
}

func lastSlash(s string) int {
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == '/' {
			return i
		}
	}
	return -1
}

func (d *DevCA) sign(tmpl *x509.Certificate, notBefore time.Time, lifetime time.Duration) ([]*x509.Certificate, error) {
	if notBefore.IsZero() {
		notBefore = d.clock.Now()
	}
	if lifetime <= 0 {
		lifetime = time.Duration(d.lifetime.Load())
	}
	tmpl.NotBefore = notBefore.Truncate(time.Second)
	tmpl.NotAfter = tmpl.NotBefore.Add(lifetime)
	sn, err := randSerial()
	if err != nil {
		return nil, err
	}
	tmpl.SerialNumber = sn
	leaf, err := d.ca.Sign(tmpl)
	if err != nil {
		return nil, fmt.Errorf("development CA: sign: %w", err)
	}
	return []*x509.Certificate{leaf, d.ca.Intermediate}, nil
}

func randSerial() (*big.Int, error) {
	b, err := randutil.Salt(16)
	if err != nil {
		return nil, err
	}
	b[0] &= 0x7f
	return new(big.Int).SetBytes(b), nil
}

// Sign implements CA: it signs the CSR's names; the token is ignored (the
// development CA trusts its caller).
func (d *DevCA) Sign(_ context.Context, csr *x509.CertificateRequest, _ string, lifetime time.Duration) ([]*x509.Certificate, error) {
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("%w: invalid CSR: %w", ErrCARefused, err)
	}
	return d.sign(templateFrom(csr.Subject.CommonName, csr.DNSNames, csr.IPAddresses, csr.EmailAddresses, csr.URIs, csr.PublicKey), time.Time{}, lifetime)
}

func templateFrom(cn string, dns []string, ips []net.IP, emails []string, uris []*url.URL, pub crypto.PublicKey) *x509.Certificate {
	return &x509.Certificate{
		Subject:        pkix.Name{CommonName: cn},
		DNSNames:       dns,
		IPAddresses:    ips,
		EmailAddresses: emails,
		URIs:           uris,
		PublicKey:      pub,
		KeyUsage:       x509.KeyUsageDigitalSignature,
		ExtKeyUsage:    []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
}

func (d *DevCA) checkOwn(cur *tls.Certificate, allowExpired bool) (*x509.Certificate, error) {
	if cur == nil || len(cur.Certificate) == 0 {
		return nil, fmt.Errorf("%w: no certificate", ErrCARefused)
	}
	chain, err := chainOf(cur)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCARefused, err)
	}
	leaf := chain[0]
	if err := leaf.CheckSignatureFrom(d.ca.Intermediate); err != nil {
		return nil, fmt.Errorf("%w: certificate not issued by this CA", ErrCARefused)
	}
	now := d.clock.Now()
	if now.After(leaf.NotAfter) && !allowExpired {
		return nil, fmt.Errorf("%w: certificate expired on %s", ErrCARefused, leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	return leaf, nil
}

// Renew implements CA.
func (d *DevCA) Renew(_ context.Context, cur *tls.Certificate) ([]*x509.Certificate, error) {
	leaf, err := d.checkOwn(cur, false)
	if err != nil {
		return nil, err
	}
	return d.sign(templateFrom(leaf.Subject.CommonName, leaf.DNSNames, leaf.IPAddresses, leaf.EmailAddresses, leaf.URIs, leaf.PublicKey), time.Time{}, 0)
}

// Rekey implements CA.
func (d *DevCA) Rekey(_ context.Context, cur *tls.Certificate, csr *x509.CertificateRequest) ([]*x509.Certificate, error) {
	leaf, err := d.checkOwn(cur, false)
	if err != nil {
		return nil, err
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("%w: invalid CSR: %w", ErrCARefused, err)
	}
	return d.sign(templateFrom(leaf.Subject.CommonName, leaf.DNSNames, leaf.IPAddresses, leaf.EmailAddresses, leaf.URIs, csr.PublicKey), time.Time{}, 0)
}

// RenewExpired implements CA.
func (d *DevCA) RenewExpired(ctx context.Context, cur *tls.Certificate) ([]*x509.Certificate, error) {
	if !d.allowExp.Load() {
		if _, err := d.checkOwn(cur, true); err != nil {
			return nil, err
		}
		return nil, ErrRenewAfterExpiryNotAllowed
	}
	leaf, err := d.checkOwn(cur, true)
	if err != nil {
		return nil, err
	}
	return d.sign(templateFrom(leaf.Subject.CommonName, leaf.DNSNames, leaf.IPAddresses, leaf.EmailAddresses, leaf.URIs, leaf.PublicKey), time.Time{}, 0)
}

// Roots implements CA.
func (d *DevCA) Roots(context.Context) ([]*x509.Certificate, error) {
	return []*x509.Certificate{d.ca.Root}, nil
}

var _ CA = (*DevCA)(nil)

// DevCAFrom wraps an existing CA (root, intermediate and the
// intermediate's signer) as a DevCA, so that a test can share one CA
// between an agent's development identity and other test tooling (a
// broker's certificates). o.Name and o.ValidFor are ignored.
func DevCAFrom(root, intermediate *x509.Certificate, signer crypto.Signer, o DevCAOptions) *DevCA {
	if o.Clock == nil {
		o.Clock = clockwork.NewRealClock()
	}
	if o.Lifetime <= 0 {
		o.Lifetime = time.Hour
	}
	d := &DevCA{ca: &devKeys{Root: root, Intermediate: intermediate, Signer: signer}, clock: o.Clock}
	d.lifetime.Store(int64(o.Lifetime))
	d.allowExp.Store(o.AllowRenewalAfterExpiry)
	return d
}
