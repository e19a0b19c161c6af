package envelope

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"time"

	"github.com/veraison/go-cose"
)

// MaxChain bounds the number of certificates in the x5chain header.
const MaxChain = 8

// coseTag18 is the first byte of a tagged COSE_Sign1 (tag 18).
const coseTag18 = 0xd2

// Sign wraps payload in a tagged COSE_Sign1 signed with ES256 by signer,
// whose certificate chain (leaf first) goes in the unprotected x5chain
// header. signer must hold a P-256 ECDSA key matching chain[0].
func Sign(signer crypto.Signer, chain []*x509.Certificate, payload []byte) ([]byte, error) {
	if signer == nil || len(chain) == 0 {
		return nil, fmt.Errorf("sign telemetry: no signing key or certificate yet")
	}
	pub, ok := signer.Public().(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		return nil, fmt.Errorf("sign telemetry: %w: key must be ECDSA P-256 for ES256", ErrUnsupported)
	}
	s, err := cose.NewSigner(cose.AlgorithmES256, signer)
	if err != nil {
		return nil, fmt.Errorf("sign telemetry: %w", err)
	}
	msg := cose.NewSign1Message()
	msg.Headers.Protected.SetAlgorithm(cose.AlgorithmES256)
	msg.Headers.Unprotected[cose.HeaderLabelX5Chain] = chainDER(chain)
	msg.Payload = payload
	if err := msg.Sign(rand.Reader, nil, s); err != nil {
		return nil, fmt.Errorf("sign telemetry: %w", err)
	}
	out, err := msg.MarshalCBOR()
	if err != nil {
		return nil, fmt.Errorf("sign telemetry: encode: %w", err)
	}
	return out, nil
}

func chainDER(chain []*x509.Certificate) any {
	if len(chain) == 1 {
		return chain[0].Raw
	}
	ders := make([][]byte, len(chain))
	for i, c := range chain {
		ders[i] = c.Raw
	}
	return ders
}

// Signed is a parsed, not yet trusted, COSE_Sign1 message.
type Signed struct {
	// Payload is the attached payload bytes.
	Payload []byte
	// Chain is the signer chain from the x5chain header, leaf first. The
	// certificates may be shared with other messages of the same signer
	// (parsed once, see certCache): treat them as read-only.
	Chain []*x509.Certificate
	msg   *cose.Sign1Message
}

// Parse strictly decodes a tagged COSE_Sign1 with an attached payload,
// ES256 in the protected header and an x5chain in the unprotected header.
// It does not verify anything; use (*Signed).VerifySignature or Verify.
func Parse(data []byte) (*Signed, error) {
	if err := checkWellFormed(data); err != nil {
		return nil, err
	}
	if data[0] != coseTag18 {
		return nil, fmt.Errorf("%w: not a tagged COSE_Sign1 (tag 18)", ErrMalformed)
	}
	var msg cose.Sign1Message
	if err := msg.UnmarshalCBOR(data); err != nil {
		return nil, fmt.Errorf("%w: cose: %w", ErrMalformed, err)
	}
	alg, err := msg.Headers.Protected.Algorithm()
	if err != nil || alg != cose.AlgorithmES256 {
		return nil, fmt.Errorf("%w: algorithm must be ES256 in the protected header", ErrUnsupported)
	}
	if msg.Payload == nil {
		return nil, fmt.Errorf("%w: detached payload", ErrMalformed)
	}
	chain, err := parseChain(msg.Headers.Unprotected[cose.HeaderLabelX5Chain])
	if err != nil {
		return nil, err
	}
	return &Signed{Payload: msg.Payload, Chain: chain, msg: &msg}, nil
}

func parseChain(v any) ([]*x509.Certificate, error) {
	var ders [][]byte
	switch x := v.(type) {
	case nil:
		return nil, fmt.Errorf("%w: x5chain header missing", ErrMalformed)
	case []byte:
		ders = [][]byte{x}
	case []any:
		if len(x) == 0 || len(x) > MaxChain {
			return nil, fmt.Errorf("%w: x5chain has %d certificates (1..%d)", ErrMalformed, len(x), MaxChain)
		}
		for _, e := range x {
			b, ok := e.([]byte)
			if !ok {
				return nil, fmt.Errorf("%w: x5chain element is not a byte string", ErrMalformed)
			}
			ders = append(ders, b)
		}
	default:
		return nil, fmt.Errorf("%w: x5chain has type %T", ErrMalformed, v)
	}
	chain := make([]*x509.Certificate, 0, len(ders))
	for _, d := range ders {
		c, err := parseCert(d)
		if err != nil {
			return nil, fmt.Errorf("%w: x5chain: %w", ErrMalformed, err)
		}
		chain = append(chain, c)
	}
	return chain, nil
}

// VerifySignature checks the COSE signature with the leaf certificate's
// public key. It says nothing about whether the leaf is trusted.
func (s *Signed) VerifySignature() error {
	pub, ok := s.Chain[0].PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		return fmt.Errorf("%w: signer key is not ECDSA P-256", ErrSignature)
	}
	v, err := cose.NewVerifier(cose.AlgorithmES256, pub)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrSignature, err)
	}
	if err := s.msg.Verify(nil, v); err != nil {
		return fmt.Errorf("%w: %w", ErrSignature, err)
	}
	return nil
}

// ChainVerifier decides whether a signer chain (leaf first) is trusted at
// now. It returns the identity it vouches for (for example a SPIFFE URI).
type ChainVerifier func(chain []*x509.Certificate, now time.Time) (identity string, err error)

// RootsVerifier returns a ChainVerifier that verifies the chain against
// roots (any extended key usage) and returns the leaf's first URI SAN, or
// its common name when it has none.
func RootsVerifier(roots *x509.CertPool) ChainVerifier {
	return func(chain []*x509.Certificate, now time.Time) (string, error) {
		inter := x509.NewCertPool()
		for _, c := range chain[1:] {
			inter.AddCert(c)
		}
		_, err := chain[0].Verify(x509.VerifyOptions{
			Roots:         roots,
			Intermediates: inter,
			CurrentTime:   now,
			KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
		})
		if err != nil {
			return "", fmt.Errorf("%w: %w", ErrUntrusted, err)
		}
		if len(chain[0].URIs) > 0 {
			return chain[0].URIs[0].String(), nil
		}
		return chain[0].Subject.CommonName, nil
	}
}

// Message is a verified telemetry message.
type Message struct {
	Envelope
	// Signer is the identity the ChainVerifier returned.
	Signer string
	// Chain is the signer chain, leaf first.
	Chain []*x509.Certificate
}

// Verify parses data, verifies the signature and the chain with verify at
// now, decodes the envelope, and checks that the leaf certificate names the
// envelope's gateway (URI SAN ending in /gateway/ID, or CN = ID).
func Verify(data []byte, verify ChainVerifier, now time.Time) (*Message, error) {
	s, err := Parse(data)
	if err != nil {
		return nil, err
	}
	if err := s.VerifySignature(); err != nil {
		return nil, err
	}
	id, err := verify(s.Chain, now)
	if err != nil {
		return nil, err
	}
	env, err := DecodePayload(s.Payload)
	if err != nil {
		return nil, err
	}
	if !CertNamesGateway(s.Chain[0], env.Gateway) {
		return nil, fmt.Errorf("%w: certificate %q does not name gateway %q", ErrUntrusted, id, env.Gateway)
	}
	return &Message{Envelope: *env, Signer: id, Chain: s.Chain}, nil
}

// CertNamesGateway reports whether cert is the certificate of gateway id:
// a URI SAN spiffe://TD/gateway/ID, or (without URI SANs) CN = ID.
func CertNamesGateway(cert *x509.Certificate, id string) bool {
	suffix := []byte("/gateway/" + id)
	for _, u := range cert.URIs {
		if u.Scheme == "spiffe" && bytes.Equal([]byte(u.Path), suffix) {
			return true
		}
	}
	if len(cert.URIs) == 0 {
		return cert.Subject.CommonName == id
	}
	return false
}
