package receipt

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/wardgate/wardgate/wire/envelope"
)

// ErrInvalid: the receipt does not verify or does not bind what it should.
var ErrInvalid = errors.New("invalid archive receipt")

// Receipt binds an archived recording.
type Receipt struct {
	Gateway string `cbor:"1,keyasint"`
	Session string `cbor:"2,keyasint"`
	Head    []byte `cbor:"3,keyasint"`
	Size    int64  `cbor:"4,keyasint"`
	Stored  int64  `cbor:"5,keyasint"` // ms since epoch
}

// Sign signs r with central's key (chain leaf first).
func Sign(key crypto.Signer, chain []*x509.Certificate, r Receipt) ([]byte, error) {
	b, err := envelope.Marshal(&r)
	if err != nil {
		return nil, fmt.Errorf("sign receipt: %w", err)
	}
	return envelope.Sign(key, chain, b)
}

// Verify checks data's signature and chain (verify; the identity must be a
// service, spiffe://TD/svc/...) and that it binds gateway, session, head
// and size. It returns the receipt and the signer's identity.
func Verify(data []byte, verify envelope.ChainVerifier, now time.Time, gateway, session string, head []byte, size int64) (*Receipt, string, error) {
	s, err := envelope.Parse(data)
	if err != nil {
		return nil, "", fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if err := s.VerifySignature(); err != nil {
		return nil, "", fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	who, err := verify(s.Chain, now)
	if err != nil {
		return nil, "", fmt.Errorf("%w: signer: %w", ErrInvalid, err)
	}
	if !strings.Contains(who, "/svc/") {
		return nil, "", fmt.Errorf("%w: signed by %s, not central's service identity", ErrInvalid, who)
	}
	var r Receipt
	if err := envelope.Unmarshal(s.Payload, &r); err != nil {
		return nil, "", fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	switch {
	case r.Gateway != gateway, r.Session != session:
		return nil, "", fmt.Errorf("%w: for %s/%s, expected %s/%s", ErrInvalid, r.Gateway, r.Session, gateway, session)
	case !bytes.Equal(r.Head, head):
		return nil, "", fmt.Errorf("%w: binds head %x, the recording ends in %x", ErrInvalid, r.Head, head)
	case r.Size != size:
		return nil, "", fmt.Errorf("%w: binds %d bytes, the recording has %d", ErrInvalid, r.Size, size)
	}
	return &r, who, nil
}
