package envelope

import (
	"fmt"

	"github.com/fxamacker/cbor/v2"
)

// Decoding limits applied to every received message.
const (
	// MaxMessageSize bounds a whole COSE_Sign1 message in bytes. It also
	// bounds every byte and text string inside it.
	MaxMessageSize = 256 << 10
	// MaxNesting bounds array/map/tag nesting.
	MaxNesting = 16
	// MaxArrayElements bounds any array (SenML packs, x5chain, args).
	MaxArrayElements = 4096
	// MaxMapPairs bounds any map.
	MaxMapPairs = 1024
)

var (
	encMode cbor.EncMode
	// decMode is the strict mode used for anything received.
	decMode cbor.DecMode
)

func init() {
	var err error
	encMode, err = cbor.CoreDetEncOptions().EncMode()
	if err != nil {
		panic(err)
	}
	decMode, err = cbor.DecOptions{
		DupMapKey:         cbor.DupMapKeyEnforcedAPF,
		IndefLength:       cbor.IndefLengthForbidden,
		MaxNestedLevels:   MaxNesting,
		MaxArrayElements:  MaxArrayElements,
		MaxMapPairs:       MaxMapPairs,
		ExtraReturnErrors: cbor.ExtraDecErrorUnknownField,
		UTF8:              cbor.UTF8RejectInvalid,
	}.DecMode()
	if err != nil {
		panic(err)
	}
}

// Marshal encodes v with core deterministic encoding.
func Marshal(v any) ([]byte, error) { return encMode.Marshal(v) }

// Unmarshal decodes data into v with the strict limits of this package. It
// first checks that data is a single well-formed item within the limits
// and without duplicate map keys.
func Unmarshal(data []byte, v any) error {
	if err := checkWellFormed(data); err != nil {
		return err
	}
	if err := decMode.Unmarshal(data, v); err != nil {
		return fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	return nil
}

// checkWellFormed validates data against the size limit and checks that it
// is one well-formed item within the nesting, array and map limits,
// without indefinite lengths, before anything decodes it. Duplicate map
// keys are refused by the decode itself (DupMapKeyEnforcedAPF), at every
// map it decodes: a target type that left a map undecoded would need its
// own Unmarshal of those bytes, which checks them again.
func checkWellFormed(data []byte) error {
	if len(data) == 0 {
		return fmt.Errorf("%w: empty", ErrMalformed)
	}
	if len(data) > MaxMessageSize {
		return fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(data), MaxMessageSize)
	}
	if err := decMode.Wellformed(data); err != nil {
		return fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	return nil
}
