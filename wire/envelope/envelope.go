package envelope

import (
	"fmt"
	"regexp"

	"github.com/fxamacker/cbor/v2"
)

// Version is the envelope version this build writes and reads.
const Version = 1

// Kind names what a message's body is. It is also the last topic segment.
type Kind string

// Message kinds.
const (
	KindBirth     Kind = "birth"
	KindDeath     Kind = "death"
	KindStatus    Kind = "status"
	KindMetrics   Kind = "metrics"
	KindEvent     Kind = "event"
	KindInventory Kind = "inventory"
	KindReply     Kind = "reply"
)

// Kinds lists every kind, in schema order.
var Kinds = []Kind{KindBirth, KindDeath, KindStatus, KindMetrics, KindEvent, KindInventory, KindReply}

// Valid reports whether k is a known kind.
func (k Kind) Valid() bool {
	for _, x := range Kinds {
		if k == x {
			return true
		}
	}
	return false
}

// Envelope is the signed payload of every telemetry message.
//
//	envelope = {1: 1, 2: gateway, 3: session, 4: seq, 5: time-ms,
//	            6: kind, 7: historical, 8: body}
type Envelope struct {
	Version    int    `cbor:"1,keyasint"`
	Gateway    string `cbor:"2,keyasint"`
	Session    uint64 `cbor:"3,keyasint"`
	Seq        uint64 `cbor:"4,keyasint"`
	Time       int64  `cbor:"5,keyasint"` // milliseconds since the Unix epoch
	Kind       Kind   `cbor:"6,keyasint"`
	Historical bool   `cbor:"7,keyasint"`
	// Body is the kind-specific CBOR item (a SenML pack for metrics).
	Body cbor.RawMessage `cbor:"8,keyasint"`
}

var gatewayIDRe = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// ValidGatewayID reports whether id is a DNS label, as gateway ids are.
func ValidGatewayID(id string) bool { return gatewayIDRe.MatchString(id) }

// Validate checks the fields a consumer relies on.
func (e *Envelope) Validate() error {
	switch {
	case e.Version != Version:
		return fmt.Errorf("%w: envelope version %d (this build reads %d)", ErrUnsupported, e.Version, Version)
	case !ValidGatewayID(e.Gateway):
		return fmt.Errorf("%w: gateway id %q is not a DNS label", ErrMalformed, e.Gateway)
	case !e.Kind.Valid():
		return fmt.Errorf("%w: kind %q", ErrUnsupported, e.Kind)
	case e.Time < 0:
		return fmt.Errorf("%w: negative time", ErrMalformed)
	case len(e.Body) == 0:
		return fmt.Errorf("%w: missing body", ErrMalformed)
	}
	return nil
}

// EncodePayload validates e and encodes it deterministically. Body must
// already be deterministic CBOR (use Marshal).
func EncodePayload(e *Envelope) ([]byte, error) {
	if err := e.Validate(); err != nil {
		return nil, err
	}
	if err := checkWellFormed(e.Body); err != nil {
		return nil, fmt.Errorf("envelope body: %w", err)
	}
	return encMode.Marshal(e)
}

// DecodePayload strictly decodes and validates an envelope. Unknown keys
// and missing keys are errors.
func DecodePayload(data []byte) (*Envelope, error) {
	if err := checkWellFormed(data); err != nil {
		return nil, err
	}
	var raw map[int64]cbor.RawMessage
	if err := decMode.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("%w: envelope: %w", ErrMalformed, err)
	}
	for k := int64(1); k <= 8; k++ {
		if _, ok := raw[k]; !ok {
			return nil, fmt.Errorf("%w: envelope key %d missing", ErrMalformed, k)
		}
	}
	var e Envelope
	if err := decMode.Unmarshal(data, &e); err != nil {
		return nil, fmt.Errorf("%w: envelope: %w", ErrMalformed, err)
	}
	if err := e.Validate(); err != nil {
		return nil, err
	}
	return &e, nil
}
