package envelope

import "errors"

// Sentinel errors, matched with errors.Is.
var (
	// ErrMalformed: the bytes are not a valid message (bad CBOR, a limit was
	// exceeded, a duplicate key, an indefinite length, a wrong type).
	ErrMalformed = errors.New("malformed telemetry message")
	// ErrTooLarge: the message is larger than MaxMessageSize.
	ErrTooLarge = errors.New("telemetry message too large")
	// ErrUnsupported: a version, kind or algorithm this build does not know.
	ErrUnsupported = errors.New("unsupported telemetry message")
	// ErrSignature: the COSE signature does not verify with the leaf
	// certificate's key.
	ErrSignature = errors.New("telemetry signature invalid")
	// ErrUntrusted: the signer chain does not verify against the trust
	// bundle, or names another gateway.
	ErrUntrusted = errors.New("telemetry signer not trusted")
)
