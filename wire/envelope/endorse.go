package envelope

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"time"
)

// ErrEndorsement: an endorsement is missing, not central's, or does not
// stand behind this message.
var ErrEndorsement = errors.New("endorsement invalid")

// Endorsement is what central signs to stand behind a signed message
// (a lock set, a restrictive command) after its signers' short-lived
// certificates expired: the SHA-256 of the message's payload and when
// central endorsed it. Kind names the kind of message, so that an
// endorsement of one kind never vouches for another.
type Endorsement struct {
	Kind   string `cbor:"1,keyasint"`
	Digest []byte `cbor:"2,keyasint"`
	At     int64  `cbor:"3,keyasint"` // ms since epoch
}

// Endorse signs an endorsement of kind for payload at at with central's
// key and chain, as a COSE_Sign1.
func Endorse(key crypto.Signer, chain []*x509.Certificate, kind string, payload []byte, at time.Time) ([]byte, error) {
	digest := sha256.Sum256(payload)
	b, err := Marshal(Endorsement{Kind: kind, Digest: digest[:], At: at.UnixMilli()})
	if err != nil {
		return nil, fmt.Errorf("endorse: %w", err)
	}
	return Sign(key, chain, b)
}

// Endorsed is a parsed, not yet trusted, endorsement.
type Endorsed struct {
	Signed      *Signed
	Endorsement Endorsement
}

// ParseEndorsement parses s as an endorsement of kind; false when it is
// not one (another payload, another kind).
func ParseEndorsement(s *Signed, kind string) (*Endorsed, bool) {
	var e Endorsement
	if Unmarshal(s.Payload, &e) != nil || e.Kind != kind {
		return nil, false
	}
	return &Endorsed{Signed: s, Endorsement: e}, true
}

// Verify checks that e stands behind payload, issued at issued: its
// signature, that central (a hook: spiffe://TD/svc/central, valid at now)
// signed it, that it covers payload's digest, and that it was made after
// the message was issued and not in the future (skew allowed both ways).
func (e *Endorsed) Verify(payload []byte, issued, now time.Time, skew time.Duration, central func([]*x509.Certificate, time.Time) (string, error)) error {
	if err := e.Signed.VerifySignature(); err != nil {
		return fmt.Errorf("%w: %w", ErrEndorsement, err)
	}
	if _, err := central(e.Signed.Chain, now); err != nil {
		return fmt.Errorf("%w: endorser: %w", ErrEndorsement, err)
	}
	digest := sha256.Sum256(payload)
	switch {
	case !bytes.Equal(e.Endorsement.Digest, digest[:]):
		return fmt.Errorf("%w: it endorses another message", ErrEndorsement)
	case e.Endorsement.At < issued.Add(-skew).UnixMilli():
		return fmt.Errorf("%w: endorsed before the message was issued", ErrEndorsement)
	case e.Endorsement.At > now.Add(skew).UnixMilli():
		return fmt.Errorf("%w: endorsed in the future", ErrEndorsement)
	}
	return nil
}
