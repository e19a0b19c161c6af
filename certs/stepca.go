package certs

import (
	"bytes"
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/jonboulle/clockwork"
)

// maxResponse bounds what is read from the CA.
const maxResponse = 1 << 20

// StepClientOptions configures a StepClient.
type StepClientOptions struct {
	// URL is the CA's base URL, https://HOST:PORT. Required.
	URL string
	// Bundle holds the roots trusted for the CA's TLS certificate. Required.
	Bundle *Bundle
	Clock  clockwork.Clock
	// Timeout bounds each request (default 30s).
	Timeout time.Duration
	Logger  *slog.Logger
}

// StepClient speaks the step-ca HTTP API: /root/{sha256}, /roots,
// /1.0/sign, /1.0/renew (mTLS, or an x5cInsecure bearer token after
// expiry), /1.0/rekey (mTLS). Safe for concurrent use. Every request uses a
// fresh connection, so a renewal always authenticates with the certificate
// it was given.
type StepClient struct {
	base   *url.URL
	bundle *Bundle
	clock  clockwork.Clock
	to     time.Duration
	log    *slog.Logger
}

// NewStepClient returns a client for the CA at o.URL.
func NewStepClient(o StepClientOptions) (*StepClient, error) {
	u, err := parseCAURL(o.URL)
	if err != nil {
		return nil, err
	}
	if o.Bundle == nil {
		return nil, errors.New("step CA client: no trust bundle")
	}
	if o.Clock == nil {
		o.Clock = clockwork.NewRealClock()
	}
	if o.Timeout <= 0 {
		o.Timeout = 30 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &StepClient{base: u, bundle: o.Bundle, clock: o.Clock, to: o.Timeout, log: o.Logger.With("component", "certs")}, nil
}

func parseCAURL(s string) (*url.URL, error) {
	u, err := url.Parse(strings.TrimRight(s, "/"))
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("CA URL %q: want https://HOST:PORT (identity.ca_url)", s)
	}
	u.Path = strings.TrimRight(u.Path, "/")
	return u, nil
}

// URL returns the CA's base URL.
func (c *StepClient) URL() string { return c.base.String() }

// NormalizeFingerprint lowercases a SHA-256 fingerprint and removes ':'
// and '-' separators; it fails unless 64 hex digits remain.
func NormalizeFingerprint(fp string) (string, error) {
	s := strings.ToLower(strings.NewReplacer(":", "", "-", "", " ", "").Replace(strings.TrimSpace(fp)))
	if b, err := hex.DecodeString(s); err != nil || len(b) != 32 {
		return "", fmt.Errorf("root fingerprint %q: want the 64 hex digits of the root's SHA-256 (step certificate fingerprint root_ca.crt)", fp)
	}
	return s, nil
}

// FetchRoot downloads the root with the given SHA-256 fingerprint from the
// CA (GET /root/{sha256}, TLS not yet trusted) and returns it only if its
// fingerprint matches and the CA's own TLS chain verifies against it;
// otherwise the error wraps ErrFingerprintMismatch.
func FetchRoot(ctx context.Context, caURL, fingerprint string, clock clockwork.Clock, timeout time.Duration) (*x509.Certificate, error) {
	u, err := parseCAURL(caURL)
	if err != nil {
		return nil, err
	}
	fp, err := NormalizeFingerprint(fingerprint)
	if err != nil {
		return nil, err
	}
	if clock == nil {
		clock = clockwork.NewRealClock()
	}
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	var peer []*x509.Certificate
	tcfg := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		InsecureSkipVerify: true, // the chain is checked below against the root pinned by fingerprint
		VerifyConnection: func(cs tls.ConnectionState) error {
			peer = cs.PeerCertificates
			return nil
		},
	}
	var resp struct {
		CA string `json:"ca"`
	}
	err = doJSON(ctx, u, tcfg, timeout, http.MethodGet, "/root/"+fp, nil, "", &resp)
	var re *caError
	if errors.As(err, &re) && re.status == http.StatusNotFound {
		return nil, fmt.Errorf("%w: the CA at %s has no root with fingerprint %s: check identity.root_fingerprint", ErrFingerprintMismatch, u, fp)
	}
	if err != nil {
		return nil, err
	}
	root, err := parseOnePEM(resp.CA)
	if err != nil {
		return nil, fmt.Errorf("%w: root: %w", ErrCABadResponse, err)
	}
	if got := Fingerprint(root); got != fp {
		return nil, fmt.Errorf("%w: the CA at %s sent a root with fingerprint %s, configured %s: check identity.root_fingerprint or whether something intercepts the connection", ErrFingerprintMismatch, u, got, fp)
	}
	if len(peer) == 0 {
		return nil, fmt.Errorf("%w: no TLS certificate from %s", ErrCABadResponse, u)
	}
	pool := x509.NewCertPool()
	pool.AddCert(root)
	inter := x509.NewCertPool()
	for _, c := range peer[1:] {
		inter.AddCert(c)
	}
	if _, err := peer[0].Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, CurrentTime: clock.Now(), DNSName: u.Hostname()}); err != nil {
		return nil, fmt.Errorf("%w: the TLS certificate of %s is not issued under the configured root: %w", ErrFingerprintMismatch, u, err)
	}
	return root, nil
}

// signResponse is step-ca's answer to sign, renew and rekey.
type signResponse struct {
	Crt       string   `json:"crt"`
	CA        string   `json:"ca"`
	CertChain []string `json:"certChain"`
}

func (r *signResponse) chain() ([]*x509.Certificate, error) {
	var pems []string
	if len(r.CertChain) > 0 {
		pems = r.CertChain
	} else {
		pems = []string{r.Crt}
		if r.CA != "" {
			pems = append(pems, r.CA)
		}
	}
	out := make([]*x509.Certificate, 0, len(pems))
	for _, p := range pems {
		c, err := parseOnePEM(p)
		if err != nil {
			return nil, fmt.Errorf("%w: certificate chain: %w", ErrCABadResponse, err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: no certificate in answer", ErrCABadResponse)
	}
	return out, nil
}

// ParseSignResponse parses the JSON body of a step-ca sign/renew/rekey
// answer into a chain, leaf first.
func ParseSignResponse(body []byte) ([]*x509.Certificate, error) {
	var r signResponse
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCABadResponse, err)
	}
	return r.chain()
}

func parseOnePEM(s string) (*x509.Certificate, error) {
	block, _ := pem.Decode([]byte(s))
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("not a PEM certificate")
	}
	return x509.ParseCertificate(block.Bytes)
}

func csrPEM(csr *x509.CertificateRequest) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr.Raw}))
}

func (c *StepClient) tlsConfig(client *tls.Certificate) *tls.Config {
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS12,
		RootCAs:    c.bundle.Pool(),
		ServerName: c.base.Hostname(),
		Time:       c.clock.Now,
	}
	if client != nil {
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return client, nil }
	}
	return cfg
}

// Sign implements CA: POST /1.0/sign {csr, ott[, notAfter]}.
func (c *StepClient) Sign(ctx context.Context, csr *x509.CertificateRequest, token string, lifetime time.Duration) ([]*x509.Certificate, error) {
	body := map[string]any{"csr": csrPEM(csr), "ott": strings.TrimSpace(token)}
	if lifetime > 0 {
		body["notAfter"] = lifetime.String()
	}
	var r signResponse
	err := doJSON(ctx, c.base, c.tlsConfig(nil), c.to, http.MethodPost, "/1.0/sign", body, "", &r)
	var re *caError
	if errors.As(err, &re) && re.status == http.StatusUnauthorized {
		if strings.Contains(strings.ToLower(re.msg), "already used") {
			return nil, fmt.Errorf("%w (%s)", ErrTokenUsed, re.msg)
		}
		return nil, fmt.Errorf("%w (CA answered %d: %s)", ErrTokenRefused, re.status, re.msg)
	}
	if errors.As(err, &re) && re.status == http.StatusForbidden {
		return nil, fmt.Errorf("%w: the CA accepted the token but would not sign (%s): check identity.lifetime against the provisioner's limits and the names in the token", ErrCARefused, re.msg)
	}
	if err != nil {
		return nil, err
	}
	return r.chain()
}

// Renew implements CA: POST /1.0/renew over mTLS with cur.
func (c *StepClient) Renew(ctx context.Context, cur *tls.Certificate) ([]*x509.Certificate, error) {
	var r signResponse
	if err := doJSON(ctx, c.base, c.tlsConfig(cur), c.to, http.MethodPost, "/1.0/renew", nil, "", &r); err != nil {
		return nil, err
	}
	return r.chain()
}

// Rekey implements CA: POST /1.0/rekey {csr} over mTLS with cur.
func (c *StepClient) Rekey(ctx context.Context, cur *tls.Certificate, csr *x509.CertificateRequest) ([]*x509.Certificate, error) {
	var r signResponse
	if err := doJSON(ctx, c.base, c.tlsConfig(cur), c.to, http.MethodPost, "/1.0/rekey", map[string]any{"csr": csrPEM(csr)}, "", &r); err != nil {
		return nil, err
	}
	return r.chain()
}

// RenewExpired implements CA: POST /1.0/renew without a client
// certificate, authorised by an x5cInsecure token signed with cur's key.
// The CA allows it only for provisioners with allowRenewalAfterExpiry.
func (c *StepClient) RenewExpired(ctx context.Context, cur *tls.Certificate) ([]*x509.Certificate, error) {
	chain, err := chainOf(cur)
	if err != nil {
		return nil, err
	}
	key, ok := cur.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("renew expired: key cannot sign")
	}
	tok, err := renewToken(key, chain, c.base.String()+"/1.0/renew", c.clock.Now())
	if err != nil {
		return nil, err
	}
	var r signResponse
	err = doJSON(ctx, c.base, c.tlsConfig(nil), c.to, http.MethodPost, "/1.0/renew", nil, tok, &r)
	var re *caError
	if errors.As(err, &re) && (re.status == http.StatusUnauthorized || re.status == http.StatusForbidden) {
		return nil, fmt.Errorf("%w (CA: %d %s)", ErrRenewAfterExpiryNotAllowed, re.status, re.msg)
	}
	if err != nil {
		return nil, err
	}
	return r.chain()
}

// Roots implements CA: GET /roots.
func (c *StepClient) Roots(ctx context.Context) ([]*x509.Certificate, error) {
	var r struct {
		Crts []string `json:"crts"`
	}
	if err := doJSON(ctx, c.base, c.tlsConfig(nil), c.to, http.MethodGet, "/roots", nil, "", &r); err != nil {
		return nil, err
	}
	if len(r.Crts) == 0 {
		return nil, fmt.Errorf("%w: /roots listed no root", ErrCABadResponse)
	}
	out := make([]*x509.Certificate, 0, len(r.Crts))
	for _, p := range r.Crts {
		cert, err := parseOnePEM(p)
		if err != nil {
			return nil, fmt.Errorf("%w: /roots: %w", ErrCABadResponse, err)
		}
		out = append(out, cert)
	}
	return out, nil
}

// Health checks GET /health.
func (c *StepClient) Health(ctx context.Context) error {
	var r struct {
		Status string `json:"status"`
	}
	if err := doJSON(ctx, c.base, c.tlsConfig(nil), c.to, http.MethodGet, "/health", nil, "", &r); err != nil {
		return err
	}
	if r.Status != "ok" {
		return fmt.Errorf("%w: health %q", ErrCABadResponse, r.Status)
	}
	return nil
}

// caError is an error status from the CA with its message.
type caError struct {
	status int
	msg    string
}

func (e *caError) Error() string { return fmt.Sprintf("CA answered %d: %s", e.status, e.msg) }
func (e *caError) Unwrap() error { return ErrCARefused }

func doJSON(ctx context.Context, base *url.URL, tcfg *tls.Config, timeout time.Duration, method, path string, in any, bearer string, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, base.String()+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	tr := &http.Transport{
		TLSClientConfig:     tcfg,
		DisableKeepAlives:   true,
		TLSHandshakeTimeout: timeout,
		DialContext:         (&net.Dialer{Timeout: timeout}).DialContext,
		ForceAttemptHTTP2:   false,
	}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: timeout}).Do(req)
	if err != nil {
		var certErr *tls.CertificateVerificationError
		if errors.As(err, &certErr) {
			return fmt.Errorf("%w: the TLS certificate of %s is not trusted (%v): check the stored roots (re-enroll if the CA's root changed)", ErrCABadResponse, base, certErr.Err)
		}
		return fmt.Errorf("%w: %s %s: %w: check identity.ca_url, that the CA runs, and the network", ErrCAUnreachable, method, base.String()+path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if err != nil {
		return fmt.Errorf("%w: %s %s: reading answer: %w", ErrCAUnreachable, method, path, err)
	}
	if resp.StatusCode >= 300 {
		var e struct {
			Status  int    `json:"status"`
			Message string `json:"message"`
		}
		if json.Unmarshal(data, &e) != nil || e.Message == "" {
			return fmt.Errorf("%w: %s %s: status %d and no step-ca error body (is identity.ca_url a step-ca?)", ErrCABadResponse, method, path, resp.StatusCode)
		}
		return fmt.Errorf("%s %s: %w", method, path, &caError{status: resp.StatusCode, msg: e.Message})
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("%w: %s %s: %w (is identity.ca_url a step-ca?)", ErrCABadResponse, method, path, err)
	}
	return nil
}

var _ CA = (*StepClient)(nil)

// Revocation reason codes (RFC 5280, 5.3.1) used by Revoke.
const (
	ReasonUnspecified          = 0
	ReasonCessationOfOperation = 5
)

// Revoke revokes cur at the CA: POST /1.0/revoke {serial, reasonCode,
// reason, passive: true}, authenticated over mTLS by cur itself (step-ca
// accepts a certificate's own revocation without a token). step-ca only
// implements passive revocation: the certificate can no longer be renewed
// and stays valid until it expires.
func (c *StepClient) Revoke(ctx context.Context, cur *tls.Certificate, reasonCode int, reason string) error {
	leaf := cur.Leaf
	if leaf == nil {
		chain, err := chainOf(cur)
		if err != nil {
			return err
		}
		leaf = chain[0]
	}
	body := map[string]any{"serial": leaf.SerialNumber.String(), "reasonCode": reasonCode, "reason": reason, "passive": true}
	var r struct {
		Status string `json:"status"`
	}
	if err := doJSON(ctx, c.base, c.tlsConfig(cur), c.to, http.MethodPost, "/1.0/revoke", body, "", &r); err != nil {
		return fmt.Errorf("revoke certificate %s: %w", leaf.SerialNumber.Text(16), err)
	}
	return nil
}
