package certs

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"strings"
	"time"

	"go.step.sm/crypto/jose"
	"go.step.sm/crypto/randutil"
)

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

type tokenPayload struct {
	jose.Claims
	SANs []string `json:"sans,omitempty"`
}

// ParseTokenClaims reads the claims of a one-time token WITHOUT verifying
// its signature (the CA does that). It fails with ErrTokenInvalid when the
// token is not a JWT with a subject.
func ParseTokenClaims(token string) (TokenClaims, error) {
	token = strings.TrimSpace(token)
	if token == "" {
		return TokenClaims{}, fmt.Errorf("%w: empty token", ErrTokenInvalid)
	}
	jwt, err := jose.ParseSigned(token)
	if err != nil {
		return TokenClaims{}, fmt.Errorf("%w: not a JWT (copy the whole output of `step ca token`): %w", ErrTokenInvalid, err)
	}
	var p tokenPayload
	if err := jwt.UnsafeClaimsWithoutVerification(&p); err != nil {
		return TokenClaims{}, fmt.Errorf("%w: unreadable claims: %w", ErrTokenInvalid, err)
	}
	if p.Subject == "" {
		return TokenClaims{}, fmt.Errorf("%w: token has no subject", ErrTokenInvalid)
	}
	c := TokenClaims{Subject: p.Subject, SANs: p.SANs, Audience: p.Audience, Issuer: p.Issuer, ID: p.ID}
	if p.Expiry != nil {
		c.Expiry = p.Expiry.Time()
	}
	if len(c.SANs) == 0 {
		c.SANs = []string{c.Subject}
	}
	return c, nil
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

// signJWT signs claims with key, adding extra headers.
func signJWT(key crypto.Signer, claims any, headers map[string]any) (string, error) {
	so := new(jose.SignerOptions)
	so.WithType("JWT")
	for k, v := range headers {
		so.WithHeader(jose.HeaderKey(k), v)
	}
	var sk jose.SigningKey
	switch k := key.(type) {
	case *ecdsa.PrivateKey:
		sk = jose.SigningKey{Algorithm: jose.ES256, Key: k}
	default:
		sk = jose.SigningKey{Algorithm: jose.ES256, Key: jose.NewOpaqueSigner(key)}
	}
	signer, err := jose.NewSigner(sk, so)
	if err != nil {
		return "", fmt.Errorf("create token signer: %w", err)
	}
	tok, err := jose.Signed(signer).Claims(claims).Serialize()
	if err != nil {
		return "", fmt.Errorf("sign token: %w", err)
	}
	return tok, nil
}

// renewToken makes an x5cInsecure token: a JWT signed with the (possibly
// expired) certificate's key, carrying its chain, for POST /1.0/renew with
// "Authorization: Bearer".
func renewToken(key crypto.Signer, chain []*x509.Certificate, audience string, now time.Time) (string, error) {
	jti, err := randutil.Hex(32)
	if err != nil {
		return "", err
	}
	x5c := make([]string, len(chain))
	for i, c := range chain {
		x5c[i] = base64.StdEncoding.EncodeToString(c.Raw)
	}
	claims := jose.Claims{
		ID:        jti,
		Issuer:    "step-ca-client/1.0",
		Subject:   chain[0].Subject.CommonName,
		Audience:  jose.Audience{audience},
		IssuedAt:  jose.NewNumericDate(now),
		NotBefore: jose.NewNumericDate(now),
		Expiry:    jose.NewNumericDate(now.Add(5 * time.Minute)),
	}
	return signJWT(key, claims, map[string]any{jose.X5cInsecureKey: x5c})
}
