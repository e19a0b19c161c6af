package certs

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"time"

	"golang.org/x/crypto/cryptobyte"
	"golang.org/x/crypto/cryptobyte/asn1"
)

// The gateway speaks exactly two JWT dialects with step-ca: it reads the
// claims of a one-time enrollment token (never verifying it: the CA does),
// and it signs an ES256 x5cInsecure token to renew an expired certificate.
// Both are a few lines of RFC 7515 compact serialization, written here
// rather than linking a general JOSE library into the gateway binary
// (about 0.4 MB). The tests check both against go.step.sm/crypto/jose, the
// JOSE implementation step-ca itself uses.

// TokenClaims are the claims of a step-ca one-time enrollment token that
// the enrollment uses: the CSR takes Subject and SANs from them, as step's
// own CLI does, so the CA operator who minted the token decides the names.
type TokenClaims struct {
	Subject  string
	SANs     []string
	Audience []string
	Issuer   string // the provisioner's name
	Expiry   time.Time
	ID       string
}

// jwtClaims are the registered claims (RFC 7519) the gateway reads and
// writes, plus step's "sans".
type jwtClaims struct {
	Issuer    string   `json:"iss,omitempty"`
	Subject   string   `json:"sub,omitempty"`
	Audience  audience `json:"aud,omitempty"`
	Expiry    *float64 `json:"exp,omitempty"`
	NotBefore *float64 `json:"nbf,omitempty"`
	IssuedAt  *float64 `json:"iat,omitempty"`
	ID        string   `json:"jti,omitempty"`
	SANs      []string `json:"sans,omitempty"`
}

// audience is "aud": one string or an array of strings (RFC 7519 4.1.3).
type audience []string

func (a *audience) UnmarshalJSON(b []byte) error {
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		*a = audience{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return errors.New(`"aud" is neither a string nor an array of strings`)
	}
	*a = many
	return nil
}

func numericDate(t time.Time) *float64 {
	v := float64(t.Unix())
	return &v
}

// ParseTokenClaims reads the claims of a one-time token WITHOUT verifying
// its signature (the CA does that). It fails with ErrTokenInvalid when the
// token is not a JWT with a subject.
func ParseTokenClaims(token string) (TokenClaims, error) {
	token = strings.TrimSpace(token)
	if token == "" {
		return TokenClaims{}, fmt.Errorf("%w: empty token", ErrTokenInvalid)
	}
	p, err := jwtPayload(token)
	if err != nil {
		return TokenClaims{}, fmt.Errorf("%w: not a JWT (copy the whole output of `step ca token`): %w", ErrTokenInvalid, err)
	}
	var claims jwtClaims
	if err := json.Unmarshal(p, &claims); err != nil {
		return TokenClaims{}, fmt.Errorf("%w: unreadable claims: %w", ErrTokenInvalid, err)
	}
	if claims.Subject == "" {
		return TokenClaims{}, fmt.Errorf("%w: token has no subject", ErrTokenInvalid)
	}
	c := TokenClaims{Subject: claims.Subject, SANs: claims.SANs, Audience: claims.Audience, Issuer: claims.Issuer, ID: claims.ID}
	if claims.Expiry != nil {
		c.Expiry = time.Unix(int64(*claims.Expiry), 0)
	}
	if len(c.SANs) == 0 {
		c.SANs = []string{c.Subject}
	}
	return c, nil
}

// jwtPayload returns the decoded payload of a compact JWS after checking
// that it has three parts and a JSON header naming an algorithm.
func jwtPayload(token string) ([]byte, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return nil, fmt.Errorf("a JWT has 3 dot-separated parts, this has %d", len(parts))
	}
	h, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil {
		return nil, fmt.Errorf("header: %w", err)
	}
	var header struct {
		Alg string `json:"alg"`
	}
	if err := json.Unmarshal(h, &header); err != nil || header.Alg == "" {
		return nil, errors.New("header is not JSON with an \"alg\"")
	}
	if _, err := base64.RawURLEncoding.DecodeString(parts[2]); err != nil {
		return nil, fmt.Errorf("signature: %w", err)
	}
	p, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil, fmt.Errorf("payload: %w", err)
	}
	return p, nil
}

// CAURLFromAudience returns the CA's base URL from a sign audience
// ("https://ca:9000/1.0/sign" -> "https://ca:9000").
func CAURLFromAudience(aud []string) string {
	for _, a := range aud {
		for _, suffix := range []string{"/1.0/sign", "/sign"} {
			if strings.HasPrefix(a, "https://") && strings.HasSuffix(a, suffix) {
				return strings.TrimSuffix(a, suffix)
			}
		}
	}
	return ""
}

// signJWT signs claims as a compact ES256 JWS with key (an ECDSA P-256
// key; gateway keys are, see GenerateKey), adding extra headers.
func signJWT(key crypto.Signer, claims any, headers map[string]any) (string, error) {
	pub, ok := key.Public().(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		return "", fmt.Errorf("sign token: ES256 needs an ECDSA P-256 key, not %T", key.Public())
	}
	h := map[string]any{"alg": "ES256", "typ": "JWT"}
	for k, v := range headers {
		h[k] = v
	}
	hj, err := json.Marshal(h)
	if err != nil {
		return "", fmt.Errorf("sign token: header: %w", err)
	}
	cj, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("sign token: claims: %w", err)
	}
	input := base64.RawURLEncoding.EncodeToString(hj) + "." + base64.RawURLEncoding.EncodeToString(cj)
	digest := sha256.Sum256([]byte(input))
	der, err := key.Sign(rand.Reader, digest[:], crypto.SHA256)
	if err != nil {
		return "", fmt.Errorf("sign token: %w", err)
	}
	sig, err := rawECDSASignature(der, 32)
	if err != nil {
		return "", fmt.Errorf("sign token: %w", err)
	}
	return input + "." + base64.RawURLEncoding.EncodeToString(sig), nil
}

// rawECDSASignature turns an ASN.1 ECDSA signature into the fixed-width
// r||s that JWS uses (RFC 7518 3.4).
func rawECDSASignature(der []byte, size int) ([]byte, error) {
	var r, s big.Int
	var inner cryptobyte.String
	in := cryptobyte.String(der)
	if !in.ReadASN1(&inner, asn1.SEQUENCE) || !in.Empty() ||
		!inner.ReadASN1Integer(&r) || !inner.ReadASN1Integer(&s) || !inner.Empty() {
		return nil, errors.New("the key returned a malformed ECDSA signature")
	}
	if r.Sign() <= 0 || s.Sign() <= 0 || r.BitLen() > size*8 || s.BitLen() > size*8 {
		return nil, errors.New("the key returned an ECDSA signature out of range")
	}
	out := make([]byte, 2*size)
	r.FillBytes(out[:size])
	s.FillBytes(out[size:])
	return out, nil
}

// renewToken makes an x5cInsecure token: a JWT signed with the (possibly
// expired) certificate's key, carrying its chain, for POST /1.0/renew with
// "Authorization: Bearer".
func renewToken(key crypto.Signer, chain []*x509.Certificate, aud string, now time.Time) (string, error) {
	jti := make([]byte, 32)
	if _, err := rand.Read(jti); err != nil {
		return "", err
	}
	x5c := make([]string, len(chain))
	for i, c := range chain {
		x5c[i] = base64.StdEncoding.EncodeToString(c.Raw)
	}
	claims := jwtClaims{
		ID:        hex.EncodeToString(jti),
		Issuer:    "step-ca-client/1.0",
		Subject:   chain[0].Subject.CommonName,
		Audience:  audience{aud},
		IssuedAt:  numericDate(now),
		NotBefore: numericDate(now),
		Expiry:    numericDate(now.Add(5 * time.Minute)),
	}
	return signJWT(key, claims, map[string]any{"x5cInsecure": x5c})
}
